//! Authentication and authorization of every request in `coffer serve` (not `--dev`).
//!
//! [`authenticate`] verifies the SigV4 signature with `coffer-auth` after looking the
//! access key up in the IAM records (through [`Iam::lookup`]'s cache, so a known key
//! costs one read of the IAM generation instead of its records and an AES-GCM open,
//! and with the signing key cached for the day). [`authorize`] then names the action
//! (`secretsmanager:<Op>`, `kms:<Op>`) and the resource (the secret's ARN, resolved;
//! the ARN being created for CreateSecret; `*` for calls on no secret), builds the
//! request context (tags, SecretId, VersionStage, caller, time, source address, ...)
//! and evaluates the caller's identity policies together with the secret's resource
//! policy. Calls that seal or open a value under a customer managed KMS key also need
//! the kms permissions on that key ([`kms_key_checks`]), resolved with the key service and
//! decided with the key's policy. BatchGetSecretValue is
//! authorized as a whole and then per secret ([`filter_batch`]), as AWS reports
//! unreadable secrets in its `Errors` list.

use crate::iam::{Caller, Iam};
use crate::{App, RequestContext};
use coffer_auth::policy::{Context, Policy, PolicyKind, Request, evaluate, evaluate_key_policy};
use coffer_auth::sigv4::{Expectation, RequestParts, SigV4Error, prevalidate};
use coffer_auth::time::format_iso8601;
use coffer_core::model::SecretMeta;
use coffer_core::names::{self, SecretRef};
use coffer_core::{AwsError, ErrorCode, Scope};
use coffer_kms::KeyManager;
use coffer_wire::protocol::Service;
use serde_json::Value;
use std::net::IpAddr;
use std::sync::Arc;

/// The owned parts of an HTTP request that authentication needs.
#[derive(Debug, Clone)]
pub struct RawRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub source_ip: Option<IpAddr>,
}

/// Maps a signature failure to the AWS JSON error a client sees.
pub fn json_error(e: &SigV4Error) -> AwsError {
    let code = match e {
        SigV4Error::MissingAuthenticationToken => ErrorCode::MissingAuthenticationToken,
        SigV4Error::Incomplete(_) | SigV4Error::PresignedUrlNotSupported => {
            ErrorCode::IncompleteSignature
        }
        SigV4Error::UnrecognizedClient => ErrorCode::UnrecognizedClient,
        SigV4Error::SignatureMismatch | SigV4Error::InvalidSignature(_) => {
            ErrorCode::InvalidSignature
        }
    };
    AwsError::new(code, e.message())
}

/// Why authentication failed: a signature problem (worded per protocol by the caller) or
/// an internal failure.
#[derive(Debug)]
pub enum AuthFailure {
    Signature(SigV4Error),
    Internal(AwsError),
}

impl AuthFailure {
    pub fn into_json(self) -> AwsError {
        match self {
            AuthFailure::Signature(e) => json_error(&e),
            AuthFailure::Internal(e) => e,
        }
    }
}

/// A verified request: who sent it and the region its credential scope names.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// Shared with the lookup cache, so a request does not copy the caller's policies.
    pub caller: Arc<Caller>,
    pub access_key_id: String,
    pub region: String,
}

/// The regions a credential scope may name: AWS's public, China and GovCloud regions.
pub const REGIONS: &[&str] = &[
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "cn-north-1",
    "cn-northwest-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-gov-east-1",
    "us-gov-west-1",
    "us-west-1",
    "us-west-2",
];

pub fn is_known_region(region: &str) -> bool {
    REGIONS.contains(&region)
}

/// Verifies a request's signature for `service` (`secretsmanager`, `kms`, `sts`).
pub fn authenticate(
    app: &App,
    iam: &Iam,
    req: &RawRequest,
    body: &[u8],
    service: &str,
    now_secs: i64,
) -> Result<Authenticated, AuthFailure> {
    let headers: Vec<(&str, &[u8])> =
        req.headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
    let parts = RequestParts {
        method: &req.method,
        path: &req.path,
        query: &req.query,
        headers: &headers,
        body,
    };
    let expect = Expectation { service, now_secs, region_is_valid: &is_known_region };
    let pre = prevalidate(&parts, &expect).map_err(AuthFailure::Signature)?;
    if pre.session_token.is_some() {
        return Err(AuthFailure::Signature(SigV4Error::UnrecognizedClient));
    }
    let found =
        iam.lookup(app.store.as_ref(), pre.access_key_id()).map_err(AuthFailure::Internal)?;
    let Some(key) = found else {
        return Err(AuthFailure::Signature(SigV4Error::UnrecognizedClient));
    };
    pre.verify_cached(&parts, key.secret().expose().as_bytes(), iam.signing_keys())
        .map_err(AuthFailure::Signature)?;
    Ok(Authenticated {
        caller: key.caller.clone(),
        access_key_id: pre.access_key_id().to_string(),
        region: pre.scope().region.clone(),
    })
}

/// The secret (or `*`) a call acts on.
struct Target {
    arn: String,
    /// The account owning the resource.
    account: String,
    meta: Option<SecretMeta>,
}

fn str_field<'a>(body: &'a Value, name: &str) -> Option<&'a str> {
    body.get(name).and_then(Value::as_str)
}

/// The scope a SecretId is looked up in: the caller's, or for a full or partial ARN of
/// another account in the same region, that account's (a cross-account call, which the
/// owner's resource policy must allow).
fn lookup_scope(id: &str, caller_scope: &Scope) -> Scope {
    let parts: Vec<&str> = id.splitn(7, ':').collect();
    let foreign_account = parts.len() == 7
        && parts[0] == "arn"
        && parts[2] == "secretsmanager"
        && parts[3] == caller_scope.region
        && parts[4] != caller_scope.account
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit());
    if foreign_account { Scope::new(parts[4], &caller_scope.region) } else { caller_scope.clone() }
}

fn find_secret(app: &App, scope: &Scope, id: &str) -> Result<Option<SecretMeta>, AwsError> {
    app.read(|tx| {
        let found = match names::parse_secret_id(id, scope) {
            SecretRef::Name(name) => tx.secret_by_name(scope, &name),
            SecretRef::Arn(arn) => tx.secret_by_arn(&arn),
            SecretRef::Foreign => return Ok(None),
        };
        Ok(found.map_err(crate::store_error)?.filter(|m| &m.scope == scope))
    })
}

fn secret_target(
    app: &App,
    scope: &Scope,
    op: &str,
    body: &Value,
) -> Result<(Target, Scope), AwsError> {
    let anything = || Target { arn: "*".to_string(), account: scope.account.clone(), meta: None };
    if op == "CreateSecret" {
        let Some(name) = str_field(body, "Name") else { return Ok((anything(), scope.clone())) };
        let arn = names::new_secret_arn(scope, name, &mut rand::rng());
        return Ok((Target { arn, account: scope.account.clone(), meta: None }, scope.clone()));
    }
    let Some(id) = str_field(body, "SecretId") else { return Ok((anything(), scope.clone())) };
    let owner = lookup_scope(id, scope);
    let meta = find_secret(app, &owner, id)?;
    let arn = match &meta {
        Some(m) => m.arn.clone(),
        None if id.starts_with("arn:") => id.to_string(),
        None => format!("arn:aws:secretsmanager:{}:{}:secret:{id}", owner.region, owner.account),
    };
    Ok((Target { arn, account: owner.account.clone(), meta }, owner))
}

/// The request context every call shares: who is calling, from where, and when.
fn base_context(caller: &Caller, region: &str, source_ip: Option<IpAddr>, now_ms: i64) -> Context {
    let p = &caller.principal;
    let mut ctx = Context::default();
    ctx.set("aws:PrincipalArn", p.arn.clone());
    ctx.set("aws:PrincipalAccount", p.account.clone());
    ctx.set("aws:PrincipalType", "User");
    ctx.set("aws:username", p.name.clone());
    ctx.set("aws:userid", p.user_id.clone());
    ctx.set("aws:CurrentTime", format_iso8601(now_ms));
    ctx.set("aws:EpochTime", (now_ms / 1000).to_string());
    ctx.set("aws:RequestedRegion", region);
    ctx.set("aws:SecureTransport", "false");
    if let Some(ip) = source_ip {
        ctx.set("aws:SourceIp", ip.to_string());
    }
    ctx
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Adds the Secrets Manager condition keys a request carries.
fn secret_context(ctx: &mut Context, id_given: Option<&str>, target: &Target, body: &Value) {
    if let Some(meta) = &target.meta {
        ctx.set("secretsmanager:SecretId", meta.arn.clone());
        for tag in meta.tags.iter().flatten() {
            ctx.set(&format!("secretsmanager:ResourceTag/{}", tag.key), tag.value.clone());
            ctx.set(&format!("aws:ResourceTag/{}", tag.key), tag.value.clone());
        }
        if let Some(kind) = &meta.secret_type {
            ctx.set("secretsmanager:resource/Type", kind.clone());
        }
    } else if let Some(id) = id_given {
        ctx.set("secretsmanager:SecretId", id);
    }
    if target.arn != "*" {
        ctx.set("aws:ResourceAccount", target.account.clone());
    }
    for (key, field) in [
        ("secretsmanager:Name", "Name"),
        ("secretsmanager:Description", "Description"),
        ("secretsmanager:KmsKeyId", "KmsKeyId"),
        ("secretsmanager:VersionId", "VersionId"),
        ("secretsmanager:ForceDeleteWithoutRecovery", "ForceDeleteWithoutRecovery"),
        ("secretsmanager:RecoveryWindowInDays", "RecoveryWindowInDays"),
        ("secretsmanager:BlockPublicPolicy", "BlockPublicPolicy"),
        ("secretsmanager:RotationLambdaARN", "RotationLambdaARN"),
        ("secretsmanager:RotateImmediately", "RotateImmediately"),
        ("secretsmanager:ForceOverwriteReplicaSecret", "ForceOverwriteReplicaSecret"),
    ] {
        if let Some(v) = body.get(field).and_then(scalar) {
            ctx.set(key, v);
        }
    }
    if let Some(key) = str_field(body, "KmsKeyId").filter(|k| k.starts_with("arn:")) {
        ctx.set("secretsmanager:KmsKeyArn", key);
    }
    let mut stages: Vec<String> = Vec::new();
    if let Some(s) = str_field(body, "VersionStage") {
        stages.push(s.to_string());
    }
    if let Some(list) = body.get("VersionStages").and_then(Value::as_array) {
        stages.extend(list.iter().filter_map(|v| v.as_str().map(str::to_string)));
    }
    if !stages.is_empty() {
        ctx.set_all("secretsmanager:VersionStage", stages);
    }
    if let Some(regions) = body.get("AddReplicaRegions").and_then(Value::as_array) {
        let list = regions.iter().filter_map(|r| str_field(r, "Region").map(str::to_string));
        ctx.set_all("secretsmanager:AddReplicaRegions", list.collect());
    }
    if let Some(tags) = body.get("Tags").and_then(Value::as_array) {
        let mut keys = Vec::new();
        for tag in tags {
            if let (Some(k), Some(v)) = (str_field(tag, "Key"), str_field(tag, "Value")) {
                ctx.set(&format!("aws:RequestTag/{k}"), v);
                keys.push(k.to_string());
            }
        }
        ctx.set_all("aws:TagKeys", keys);
    }
    if let Some(keys) = body.get("TagKeys").and_then(Value::as_array) {
        let keys = keys.iter().filter_map(|k| k.as_str().map(str::to_string)).collect();
        ctx.set_all("aws:TagKeys", keys);
    }
}

fn resource_policy(meta: Option<&SecretMeta>) -> Option<Policy> {
    let text = meta?.resource_policy.as_deref()?;
    match Policy::parse(text, PolicyKind::Resource) {
        Ok(p) => Some(p),
        Err(problems) => {
            tracing::error!(?problems, "a stored resource policy does not parse; ignored");
            None
        }
    }
}

fn decide(
    caller: &Caller,
    action: &str,
    resource: &str,
    resource_account: &str,
    context: &Context,
    resource_policy: Option<&Policy>,
) -> Result<(), AwsError> {
    let req = Request { principal: &caller.principal, action, resource, resource_account, context };
    let decision = evaluate(&req, &caller.policies, resource_policy);
    match decision.denial_message(&req) {
        None => Ok(()),
        Some(message) => Err(AwsError::new(ErrorCode::AccessDenied, message)),
    }
}

/// Authorizes a validated request and returns the context its handler runs in (the
/// secret owner's scope for an allowed cross-account call).
pub fn authorize(
    app: &App,
    who: &Authenticated,
    ctx: RequestContext,
    service: Service,
    op: &str,
    body: &Value,
    source_ip: Option<IpAddr>,
) -> Result<RequestContext, AwsError> {
    let now_ms = crate::clock::now_ms();
    let mut context = base_context(&who.caller, &who.region, source_ip, now_ms);
    match service {
        Service::SecretsManager => {
            let (target, owner) = secret_target(app, &ctx.scope, op, body)?;
            secret_context(&mut context, str_field(body, "SecretId"), &target, body);
            let policy = resource_policy(target.meta.as_ref());
            let action = format!("secretsmanager:{op}");
            decide(&who.caller, &action, &target.arn, &target.account, &context, policy.as_ref())?;
            for (key, actions) in kms_key_checks(op, body, target.meta.as_ref()) {
                let key = resolve_kms_key(app, &owner, &key)?;
                if key.customer_managed {
                    for action in actions {
                        decide_kms(&who.caller, action, &key, &owner.account, &context)?;
                    }
                }
            }
            Ok(RequestContext { scope: owner, ..ctx })
        }
        Service::Kms => {
            let action = format!("kms:{op}");
            match str_field(body, "KeyId").or(str_field(body, "TargetKeyId")) {
                Some(key) => {
                    let key = resolve_kms_key(app, &ctx.scope, key)?;
                    decide_kms(&who.caller, &action, &key, &ctx.scope.account, &context)?;
                }
                None => decide(&who.caller, &action, "*", &ctx.scope.account, &context, None)?,
            }
            Ok(ctx)
        }
    }
}

/// The name and ARN forms of the AWS managed key, which needs no kms permission.
fn is_aws_managed_key(key: &str) -> bool {
    key.is_empty()
        || key == "alias/aws/secretsmanager"
        || (key.starts_with("arn:") && key.ends_with(":alias/aws/secretsmanager"))
}

/// The customer managed key a call seals or opens under, and the kms actions that need,
/// as AWS documents them per operation: reading needs `kms:Decrypt`; writing a value
/// `kms:GenerateDataKey` and `kms:Decrypt`; UpdateSecret (which may re-encrypt under a new
/// key) `kms:GenerateDataKey`, `kms:Encrypt` and `kms:Decrypt`.
fn kms_key_checks(
    op: &str,
    body: &Value,
    meta: Option<&SecretMeta>,
) -> Vec<(String, &'static [&'static str])> {
    const READ: &[&str] = &["kms:Decrypt"];
    const WRITE: &[&str] = &["kms:GenerateDataKey", "kms:Decrypt"];
    const UPDATE: &[&str] = &["kms:GenerateDataKey", "kms:Encrypt", "kms:Decrypt"];
    let has_value = body.get("SecretString").is_some() || body.get("SecretBinary").is_some();
    let existing = meta.and_then(|m| m.kms_key_id.clone());
    let requested = str_field(body, "KmsKeyId").map(str::to_string);
    let (key, actions) = match op {
        "GetSecretValue" => (existing, READ),
        "PutSecretValue" => (existing, WRITE),
        "CreateSecret" if has_value => (requested, WRITE),
        "UpdateSecret" if has_value || requested.is_some() => (requested.or(existing), UPDATE),
        _ => (None, READ),
    };
    key.filter(|k| !is_aws_managed_key(k)).map(|k| (k, actions)).into_iter().collect()
}

/// The ARN a key reference names in `scope`: key and alias ARNs as given, key ids and
/// alias names expanded.
fn kms_key_arn(scope: &Scope, key: &str) -> String {
    if key.starts_with("arn:") {
        key.to_string()
    } else if key.starts_with("alias/") {
        format!("arn:aws:kms:{}:{}:{key}", scope.region, scope.account)
    } else {
        format!("arn:aws:kms:{}:{}:key/{key}", scope.region, scope.account)
    }
}

/// A KMS key as authorization sees it.
struct KmsKey {
    /// The key's ARN (an alias resolved to its key), as policies and messages name it.
    arn: String,
    /// AWS managed keys (`aws/secretsmanager`) need no kms permission from the caller.
    customer_managed: bool,
    /// The key policy given at creation; `None` behaves as AWS's default key policy.
    policy: Option<Policy>,
}

/// Resolves a key reference (id, ARN, alias name or alias ARN) in `scope` with the key
/// service. An unknown key is named by the ARN the reference spells; its handler answers
/// NotFoundException once the caller may use it.
fn resolve_kms_key(app: &App, scope: &Scope, key: &str) -> Result<KmsKey, AwsError> {
    let found = app.read(|tx| Ok(app.keys.kms().find_key(tx, scope, key, true).ok()))?;
    Ok(match found {
        Some(record) => KmsKey {
            arn: record.arn.clone(),
            customer_managed: record.manager == KeyManager::Customer,
            policy: record.policy.as_deref().and_then(|text| {
                match Policy::parse(text, PolicyKind::Resource) {
                    Ok(p) => Some(p),
                    Err(problems) => {
                        tracing::error!(key = %record.arn, ?problems, "a key policy does not parse; the default policy applies");
                        None
                    }
                }
            }),
        },
        None => KmsKey {
            arn: kms_key_arn(scope, key),
            customer_managed: !is_aws_managed_key(key),
            policy: None,
        },
    })
}

/// Decides a kms action on a key with its key policy, in AWS KMS's words when denied.
fn decide_kms(
    caller: &Caller,
    action: &str,
    key: &KmsKey,
    key_account: &str,
    context: &Context,
) -> Result<(), AwsError> {
    let req = Request {
        principal: &caller.principal,
        action,
        resource: &key.arn,
        resource_account: key_account,
        context,
    };
    match evaluate_key_policy(&req, &caller.policies, key.policy.as_ref()).denial_message(&req) {
        None => Ok(()),
        Some(message) => Err(AwsError::new(ErrorCode::AccessDenied, message)),
    }
}

/// BatchGetSecretValue answers with the secrets the caller may read
/// (`secretsmanager:GetSecretValue`, and kms:Decrypt for a customer managed key); every
/// other one moves to `Errors` as AccessDeniedException, as AWS reports it.
pub fn filter_batch(
    app: &App,
    who: &Authenticated,
    ctx: &RequestContext,
    response: Vec<u8>,
    source_ip: Option<IpAddr>,
) -> Result<Vec<u8>, AwsError> {
    let mut response = zeroize::Zeroizing::new(response);
    let mut doc: Value = serde_json::from_slice(&response).map_err(|_| AwsError::internal())?;
    let now_ms = crate::clock::now_ms();
    let entries = match doc.get_mut("SecretValues").and_then(Value::as_array_mut) {
        Some(list) => std::mem::take(list),
        None => return Ok(std::mem::take(&mut *response)),
    };
    let mut kept = Vec::with_capacity(entries.len());
    let mut denied = Vec::new();
    for entry in entries {
        let arn = str_field(&entry, "ARN").unwrap_or_default().to_string();
        let meta = find_secret(app, &ctx.scope, &arn)?;
        let target = Target { arn: arn.clone(), account: ctx.scope.account.clone(), meta };
        let mut context = base_context(&who.caller, &who.region, source_ip, now_ms);
        let asked = serde_json::json!({ "SecretId": arn });
        secret_context(&mut context, Some(&arn), &target, &asked);
        let policy = resource_policy(target.meta.as_ref());
        let mut verdict = decide(
            &who.caller,
            "secretsmanager:GetSecretValue",
            &arn,
            &target.account,
            &context,
            policy.as_ref(),
        );
        for (key, actions) in kms_key_checks("GetSecretValue", &asked, target.meta.as_ref()) {
            let key = resolve_kms_key(app, &ctx.scope, &key)?;
            for action in actions.iter().filter(|_| key.customer_managed) {
                verdict = verdict.and_then(|()| {
                    decide_kms(&who.caller, action, &key, &target.account, &context)
                });
            }
        }
        match verdict {
            Ok(()) => kept.push(entry),
            Err(e) => denied.push(serde_json::json!({
                "SecretId": arn,
                "ErrorCode": e.code.as_str(),
                "Message": e.message,
            })),
        }
    }
    doc["SecretValues"] = Value::Array(kept);
    if !denied.is_empty() {
        match doc.get_mut("Errors").and_then(Value::as_array_mut) {
            Some(errors) => errors.extend(denied),
            None => doc["Errors"] = Value::Array(denied),
        }
    }
    serde_json::to_vec(&doc).map_err(|_| AwsError::internal())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_arn_of_another_account_in_the_same_region_is_looked_up_there() {
        let mine = Scope::new("111122223333", "us-east-1");
        let arn = "arn:aws:secretsmanager:us-east-1:444455556666:secret:shared-AbCdEf";
        assert_eq!(lookup_scope(arn, &mine), Scope::new("444455556666", "us-east-1"));
        let other_region = "arn:aws:secretsmanager:eu-west-1:444455556666:secret:shared-AbCdEf";
        assert_eq!(lookup_scope(other_region, &mine), mine);
        assert_eq!(lookup_scope("shared", &mine), mine);
    }

    #[test]
    fn only_customer_managed_keys_need_kms_permissions() {
        let body = serde_json::json!({"Name": "x", "SecretString": "v", "KmsKeyId": "alias/aws/secretsmanager"});
        assert!(kms_key_checks("CreateSecret", &body, None).is_empty());
        let body = serde_json::json!({"Name": "x", "SecretString": "v", "KmsKeyId": "alias/app"});
        let checks = kms_key_checks("CreateSecret", &body, None);
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[0].1, &["kms:GenerateDataKey", "kms:Decrypt"]);
        let update = serde_json::json!({"SecretId": "x", "KmsKeyId": "1234abcd-12ab-34cd-56ef-1234567890ab"});
        assert_eq!(kms_key_checks("UpdateSecret", &update, None)[0].1.len(), 3);
        assert!(kms_key_checks("DescribeSecret", &update, None).is_empty());
        let scope = Scope::new("111122223333", "us-east-1");
        assert_eq!(
            kms_key_arn(&scope, "alias/app"),
            "arn:aws:kms:us-east-1:111122223333:alias/app"
        );
        assert_eq!(kms_key_arn(&scope, "k1"), "arn:aws:kms:us-east-1:111122223333:key/k1");
    }
}
