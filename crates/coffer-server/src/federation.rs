//! STS GetFederationToken: an IAM user's long-term key buys credentials for a federated
//! user (`arn:aws:sts::<account>:federated-user/<name>`, user id `<account>:<name>`), who
//! acts with the user's identity policies (as they are at each request) intersected with
//! the session policy passed; without one, with no permission at all, as AWS documents,
//! bar what a resource policy naming the federated user grants (`auth::session_allows`).
//! The session is an ordinary `coffer-iam` session (`Subject::Federated`), so lookup,
//! caching, expiry and the IAM API's refusal of session credentials are the same code.
//!
//! `--dev` answers with the same validation and shape, authorizing nothing: credentials
//! that act as the federated user (`dev_sessions`).

use crate::auth::{Authenticated, RawRequest};
use crate::iam::Iam;
use crate::iam::sessions::{SessionRequest, Subject};
use crate::sessions::{self, Failure};
use crate::sts::FormValues;
use crate::{App, RequestContext, dev_sessions};
use coffer_auth::principal::Principal;
use coffer_core::AwsError;
use coffer_core::validation::{Constraint, Violation};
use coffer_wire::operation::Service;

const ACTION: &str = "GetFederationToken";
/// GetFederationToken's default and maximum duration, in seconds.
const DEFAULT_DURATION: i64 = 43_200;
const MAX_DURATION: i64 = 129_600;

/// Answers GetFederationToken: `Ok(the XML answer)` or the error as STS names it.
pub fn answer(
    app: &App,
    ctx: &RequestContext,
    who: Option<&Authenticated>,
    raw: &RawRequest,
    form: &FormValues<'_>,
) -> Result<Vec<u8>, AwsError> {
    let failure = |Failure(code, message, status)| crate::query::failure(code, message, status);
    let (body, elements) = match (who, app.iam.as_ref()) {
        (Some(who), Some(iam)) => federate(app, iam, who, raw, form)?,
        (None, None) if app.dev_iam.is_some() => dev_federate(app, ctx, form).map_err(failure)?,
        _ => {
            return Err(failure(Failure(
                "InternalFailure",
                "An internal error occurred.".into(),
                500,
            )));
        }
    };
    ctx.audit.set_response(&elements);
    Ok(crate::query::response(Service::Sts, ACTION, &body, &ctx.request_id))
}

/// What the form asks, checked in the order and words of AWS's validation.
struct FederationRequest {
    name: String,
    policy: Option<String>,
    policy_arns: Vec<String>,
    tags: Vec<crate::iam::directory::Tag>,
}

fn federation_request(form: &FormValues<'_>) -> Result<FederationRequest, Failure> {
    let Some(name) = form.value("Name") else {
        return Err(Failure("ValidationError", Violation::null("name").message(), 400));
    };
    check_name(&name)?;
    let policy = form.value("Policy");
    if let Some(doc) = policy.as_deref() {
        crate::iam::sessions::check_session_policy_length(doc)?;
    }
    let policy_arns = sessions::policy_arns(form)?;
    sessions::check_session_policies_plaintext(policy.as_deref(), &policy_arns)?;
    let tags = sessions::session_tags(form)?;
    Ok(FederationRequest { name, policy, policy_arns, tags })
}

/// The model's constraints on `Name` (2 to 32 of `[\w+=,.@-]`), length first.
fn check_name(name: &str) -> Result<(), Failure> {
    let len = name.chars().count();
    let constraint = if len < 2 {
        Constraint::MinLength(2)
    } else if len > 32 {
        Constraint::MaxLength(32)
    } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b)) {
        Constraint::Pattern("[\\w+=,.@-]*")
    } else {
        return Ok(());
    };
    Err(Failure("ValidationError", Violation::value(name, "name", constraint).message(), 400))
}

/// Session credentials (a role's, GetSessionToken's, a federated user's) cannot federate:
/// AWS's answer.
fn session_credentials_refused() -> Failure {
    Failure("AccessDenied", "Cannot call GetFederationToken with session credentials".into(), 403)
}

fn federate(
    app: &App,
    iam: &Iam,
    who: &Authenticated,
    raw: &RawRequest,
    form: &FormValues<'_>,
) -> Result<(String, serde_json::Value), AwsError> {
    let failure = |Failure(code, message, status)| crate::query::failure(code, message, status);
    let p = &who.caller.principal;
    if who.access_key_id.starts_with("ASIA") || p.is_assumed_role() || p.is_federated_user() {
        return Err(failure(session_credentials_refused()));
    }
    let FederationRequest { name, policy, policy_arns, tags } =
        federation_request(form).map_err(failure)?;
    let secs = sessions::duration(form, DEFAULT_DURATION, MAX_DURATION, false).map_err(failure)?;
    let secs = if p.is_account_root() { secs.min(sessions::ROOT_SESSION_MAX) } else { secs };
    let federated = Principal::federated_user(&p.account, &name);
    let request_tags: Vec<(String, &String)> =
        tags.iter().map(|t| (format!("aws:RequestTag/{}", t.key), &t.value)).collect();
    let mut extra: Vec<(&str, String)> = Vec::new();
    for (tag, (request_tag, value)) in tags.iter().zip(&request_tags) {
        extra.push(("aws:TagKeys", tag.key.clone()));
        extra.push((request_tag.as_str(), (*value).clone()));
    }
    // IAM and STS are global: the request's partition shows (and policies name) the ARN.
    let seen = p.partition().rewrite(&federated.arn);
    crate::auth::authorize_action(who, "sts:GetFederationToken", &seen, raw, &extra)?;
    // Session tags become the federated user's `aws:PrincipalTag/<key>`, over its user's:
    // passing them needs sts:TagSession too, as for AssumeRole (AWS: "In addition to the
    // action that matches the API operation, you must have ... sts:TagSession"). Without
    // it a user allowed GetFederationToken gave its federated user any team's tag and
    // read what that team's ABAC policies allow (review 16, finding 05).
    if !tags.is_empty() {
        crate::auth::authorize_action(who, "sts:TagSession", &seen, raw, &extra)?;
    }
    // The user's account's policies (AWS: "The policies must exist in the same account as
    // the IAM user that is requesting federated access").
    let partition = p.partition();
    let policy_arns = sessions::resolve_policy_arns(iam, app, &p.account, &policy_arns, partition)
        .map_err(failure)?;
    let packed = sessions::packed_policy_size(policy.as_deref(), &policy_arns, &tags);
    let issued = iam
        .issue_session(
            app.store.as_ref(),
            SessionRequest {
                account: &p.account,
                subject: Subject::Federated {
                    name: p.name.clone(),
                    user_id: p.user_id.clone(),
                    federated: name,
                },
                duration_secs: secs,
                session_policy: policy.as_deref(),
                policy_arns,
                tags,
                transitive: Vec::new(),
                now_ms: crate::clock::now_ms(),
            },
        )
        .map_err(|e| failure(e.into()))?;
    let xml = answer_xml(&sessions::credentials_xml(&issued), &federated, p.partition(), packed);
    let (key_id, expires_ms) = (&issued.access_key_id, issued.expires_ms);
    Ok((xml, elements(key_id, expires_ms, &federated, p.partition(), packed)))
}

/// `--dev`: the same validation and answer, nothing authorized; the credentials act as
/// the federated user of the caller's account (a root caller's last at most an hour).
fn dev_federate(
    app: &App,
    ctx: &RequestContext,
    form: &FormValues<'_>,
) -> Result<(String, serde_json::Value), Failure> {
    if ctx.access_key_id.starts_with("ASIA") && ctx.dev_caller.is_some() {
        return Err(session_credentials_refused());
    }
    // Managed session policies are checked for their shape only, as `--dev`'s AssumeRole
    // checks them: nothing is bounded by them here.
    let FederationRequest { name, policy, policy_arns, tags } = federation_request(form)?;
    let secs = sessions::duration(form, DEFAULT_DURATION, MAX_DURATION, false)?;
    let caller = sessions::dev_caller(ctx);
    let secs = if caller.is_account_root() { secs.min(sessions::ROOT_SESSION_MAX) } else { secs };
    if let Some(doc) = policy.as_deref() {
        crate::iam::directory::check_policy(doc)?;
    }
    let federated = Principal::federated_user(&caller.account, &name);
    let issued = dev_sessions::issue(app, &federated, secs, crate::clock::now_ms())
        .map_err(|_| Failure("InternalFailure", "An internal error occurred.".into(), 500))?;
    let packed = sessions::packed_policy_size(policy.as_deref(), &policy_arns, &tags);
    let partition = caller.partition();
    let xml = answer_xml(&sessions::dev_credentials_xml(&issued), &federated, partition, packed);
    let (key_id, expires_ms) = (&issued.access_key_id, issued.expires_ms);
    Ok((xml, elements(key_id, expires_ms, &federated, partition, packed)))
}

/// What the event records of the answer: the credentials' key id and expiry (never their
/// secret or token), the federated user and the packed size.
fn elements(
    access_key_id: &str,
    expires_ms: i64,
    federated: &Principal,
    partition: coffer_core::Partition,
    packed: Option<u64>,
) -> serde_json::Value {
    let mut elements = serde_json::json!({
        "Credentials": sessions::credential_elements(access_key_id, expires_ms),
        "FederatedUser": {
            "FederatedUserId": federated.user_id,
            "Arn": partition.rewrite(&federated.arn),
        },
    });
    if let Some(packed) = packed {
        elements["PackedPolicySize"] = serde_json::json!(packed);
    }
    elements
}

fn answer_xml(
    credentials: &str,
    federated: &Principal,
    partition: coffer_core::Partition,
    packed: Option<u64>,
) -> String {
    use crate::iam_api::escape;
    let packed =
        packed.map(|p| format!("<PackedPolicySize>{p}</PackedPolicySize>")).unwrap_or_default();
    format!(
        "{credentials}<FederatedUser><FederatedUserId>{}</FederatedUserId><Arn>{}</Arn></FederatedUser>{packed}",
        escape(&federated.user_id),
        escape(&partition.rewrite(&federated.arn))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_for_length_then_pattern() {
        assert!(check_name("bo").is_ok());
        assert!(check_name(&"n".repeat(32)).is_ok());
        let Err(Failure(_, short, _)) = check_name("b") else { panic!() };
        assert!(short.ends_with("greater than or equal to 2"));
        let Err(Failure(_, long, _)) = check_name(&"n n".repeat(11)) else { panic!() };
        assert!(long.ends_with("less than or equal to 32"));
        let Err(Failure(_, pattern, _)) = check_name("a b") else { panic!() };
        assert!(pattern.ends_with("[\\w+=,.@-]*"));
    }
}
