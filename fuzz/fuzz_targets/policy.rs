//! IAM policy documents: parsed as identity and as resource policies, checked as a resource
//! policy is before it is stored, and evaluated for a fixed request. Must never panic.
#![no_main]

use coffer_auth::policy::{
    Context, Policy, PolicyKind, Request, evaluate, validate_resource_policy,
};
use coffer_auth::principal::Principal;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = validate_resource_policy(text);
    let identity = Policy::parse(text, PolicyKind::Identity);
    let resource = Policy::parse(text, PolicyKind::Resource);
    let principal = Principal::user("111122223333", "alice", "AIDAEXAMPLEEXAMPLE01");
    let mut context = Context::default();
    context.set("aws:username", "alice");
    context.set("secretsmanager:ResourceTag/env", "prod");
    let request = Request {
        principal: &principal,
        action: "secretsmanager:GetSecretValue",
        resource: "arn:aws:secretsmanager:us-east-1:111122223333:secret:db-AbCdEf",
        resource_account: "111122223333",
        context: &context,
    };
    let identity: Vec<Policy> = identity.into_iter().collect();
    let _ = evaluate(&request, &identity, resource.as_ref().ok());
});
