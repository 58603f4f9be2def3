//! `--dev`'s AssumeRoleWithWebIdentity: test code for IRSA and other OIDC flows (moto's,
//! LocalStack's users') trades a token it made for a role's credentials. `--dev`
//! authenticates nothing, so the token is taken as it is if it is a well-formed JWT (three
//! base64url parts, a JSON header and JSON claims with `iss`, `sub`, `aud`, a future `exp`):
//! its signature is not verified and its issuer needs no registered provider. Everything
//! else is enforcing mode's: the same validation, in the same order and words, the same
//! answer (`SubjectFromWebIdentityToken`, `Audience`, `Provider` from the claims), and
//! credentials that act as the assumed role, as `--dev`'s AssumeRole gives (`dev_sessions`).

use crate::auth::RawRequest;
use crate::sessions as sts_sessions;
use crate::sts::FormValues;
use crate::web_identity::{
    Claims, Failure, Header, MAX_TOKEN, REGION, SKEW_SECS, b64url, check_session_name, envelope,
    internal, invalid_token, required,
};
use crate::{App, RequestContext, dev_sessions, sts};
use coffer_auth::principal::Principal;
use coffer_core::Scope;
use coffer_core::validation::{Constraint, Violation};
use std::sync::Arc;

/// Answers the call: the status and body.
pub async fn answer(
    app: &Arc<App>,
    raw: &RawRequest,
    form: &str,
    request_id: &str,
) -> (u16, Vec<u8>) {
    let (app, raw, form, id) = (app.clone(), raw.clone(), form.to_string(), request_id.to_string());
    let answered = tokio::task::spawn_blocking(move || {
        let values = FormValues::parse(&form);
        let answered = assume(&app, &values);
        let null = serde_json::Value::Null;
        let elements = answered.as_ref().map_or(&null, |(_, elements)| elements);
        let error = answered
            .as_ref()
            .err()
            .map(|Failure(code, message, _)| (code.to_string(), message.clone()));
        // Recorded as enforcing mode records a call whose token named an account: as the
        // web identity user, in the role's account; a token too broken to name one is not.
        if let Some(who) = audited(&values) {
            let ctx =
                RequestContext::new(Scope::new(who.account, REGION), String::new(), id.clone());
            let identity = coffer_audit::event::UserIdentity {
                kind: "WebIdentityUser".to_string(),
                principal_id: Some(who.principal_id),
                arn: None,
                account_id: None,
                access_key_id: None,
                user_name: Some(who.subject),
                invoked_by: None,
                session_context: None,
            };
            let parsed = coffer_wire::query_form::Form::parse(form.as_bytes());
            let params = (&parsed, elements);
            if crate::audit::record_sts_call(&app, &ctx, identity, &raw, params, error).is_err() {
                return Err(internal());
            }
        }
        answered.map(|(body, _)| envelope(&body, &id))
    })
    .await
    .unwrap_or_else(|_| Err(internal()));
    match answered {
        Ok(body) => (200, body),
        Err(Failure(code, message, status)) => sts::error(code, &message, request_id, status),
    }
}

/// Who the event of a call names: the role's account, the token's subject.
struct Audited {
    account: String,
    principal_id: String,
    subject: String,
}

fn audited(form: &FormValues<'_>) -> Option<Audited> {
    let role_arn = form.value("RoleArn")?;
    let (account, _) = crate::iam::directory::role_arn_parts(&role_arn)?;
    let token = form.value("WebIdentityToken")?;
    let claims = claims_of(&token).ok()?;
    let subject = claims.sub.clone().unwrap_or_default();
    let aud = claims.aud.values().first().copied().unwrap_or("").to_string();
    let provider = provider_arn(account, &claims.iss);
    Some(Audited {
        account: account.to_string(),
        principal_id: format!("{provider}:{aud}:{subject}"),
        subject,
    })
}

fn provider_arn(account: &str, iss: &str) -> String {
    format!("arn:aws:iam::{account}:oidc-provider/{}", crate::iam::oidc::host_path(iss))
}

/// The token's claims, if it is a well-formed JWT: AWS's checks of shape, in enforcing
/// mode's words (the signature part must be base64url, though it is not verified).
fn claims_of(token: &str) -> Result<Claims, Failure> {
    if token.len() > MAX_TOKEN {
        return Err(invalid_token("The web identity token is too long."));
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return Err(invalid_token("The web identity token is not a JWT."));
    };
    b64url(header)
        .and_then(|b| serde_json::from_slice::<Header>(&b).ok())
        .ok_or_else(|| invalid_token("The web identity token has no readable header."))?;
    let claims: Claims = b64url(claims)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| invalid_token("The web identity token has no readable claims."))?;
    b64url(signature)
        .ok_or_else(|| invalid_token("The web identity token has no readable signature."))?;
    Ok(claims)
}

/// The answer's body and what the event records of it (never the secret or the token).
fn assume(app: &App, form: &FormValues<'_>) -> Result<(String, serde_json::Value), Failure> {
    let role_arn = required(form, "RoleArn", "roleArn")?;
    let session_name = required(form, "RoleSessionName", "roleSessionName")?;
    let token = required(form, "WebIdentityToken", "webIdentityToken")?;
    check_session_name(&session_name)?;
    let claims = claims_of(&token)?;
    let Some((account, role_name)) = crate::iam::directory::role_arn_parts(&role_arn) else {
        let role_arn = coffer_auth::sigv4::echo(&role_arn);
        return Err(Failure("ValidationError", format!("{role_arn} is invalid"), 400));
    };
    let now = crate::clock::now_ms() / 1000;
    let exp =
        claims.exp.ok_or_else(|| invalid_token("The web identity token has no exp claim."))?;
    if exp <= now {
        return Err(Failure(
            "ExpiredTokenException",
            format!(
                "Token expired: current date/time {now} must be before the expiration date/time {exp}"
            ),
            400,
        ));
    }
    if claims.nbf.is_some_and(|nbf| nbf > now + SKEW_SECS)
        || claims.iat.is_some_and(|iat| iat > now + SKEW_SECS)
    {
        return Err(invalid_token("The web identity token is not valid yet."));
    }
    // No provider holds client ids to match: the token's first audience is taken.
    let Some(audience) = claims.aud.values().first().map(|a| a.to_string()) else {
        return Err(invalid_token("Incorrect token audience"));
    };
    let Some(sub) = claims.sub.clone().filter(|s| !s.is_empty()) else {
        return Err(invalid_token("The web identity token has no sub claim."));
    };
    let duration = match form.value("DurationSeconds") {
        None => None,
        Some(v) => Some(v.parse::<i64>().map_err(|_| {
            let v = coffer_auth::sigv4::echo(&v);
            Failure("ValidationError", format!("Invalid value for DurationSeconds: {v}"), 400)
        })?),
    };
    // Checked for their shape only, as `--dev`'s AssumeRole checks them.
    let policy_arns = sts_sessions::policy_arns(form)?;
    sts_sessions::check_session_policies_plaintext(form.value("Policy").as_deref(), &policy_arns)?;
    // A role with a record gives its id and maximum; one without is assumed all the same,
    // as `--dev`'s AssumeRole assumes it.
    let directory = app.dev_iam.as_ref().ok_or_else(internal)?;
    let (role_id, max) = match directory.get_role(app.store.as_ref(), account, role_name) {
        Ok(role) if role.arn() == role_arn => (role.role_id, role.max_session_secs),
        Ok(_) | Err(crate::iam::IamError::NotFound(_)) => {
            (dev_sessions::unrecorded_role_id(&role_arn), sts_sessions::UNRECORDED_ROLE_MAX)
        }
        Err(_) => return Err(internal()),
    };
    let secs = duration.unwrap_or(3600.min(max));
    if secs < 900 {
        return Err(Failure(
            "ValidationError",
            Violation::number(secs, "durationSeconds", Constraint::MinValue(900)).message(),
            400,
        ));
    }
    if secs > max {
        return Err(Failure(
            "ValidationError",
            "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."
                .into(),
            400,
        ));
    }
    if let Some(doc) = form.value("Policy") {
        let malformed = |e: crate::iam::IamError| match e {
            crate::iam::IamError::Malformed(m) => Failure("MalformedPolicyDocument", m, 400),
            crate::iam::IamError::Invalid(m) | crate::iam::IamError::InvalidInput(m) => {
                Failure("ValidationError", m, 400)
            }
            _ => internal(),
        };
        crate::iam::sessions::check_session_policy_length(&doc).map_err(malformed)?;
        crate::iam::directory::check_policy(&doc).map_err(malformed)?;
    }
    let principal = Principal::assumed_role(account, role_name, &role_arn, &role_id, &session_name);
    let issued = dev_sessions::issue(app, &principal, secs, crate::clock::now_ms())
        .map_err(|_| internal())?;
    use crate::iam_api::escape;
    let hp = crate::iam::oidc::host_path(&claims.iss);
    let elements = serde_json::json!({
        "Credentials": crate::sessions::credential_elements(&issued.access_key_id, issued.expires_ms),
        "SubjectFromWebIdentityToken": sub,
        "AssumedRoleUser": {"AssumedRoleId": principal.user_id, "Arn": principal.arn},
        "Provider": hp,
        "Audience": audience,
    });
    let body = format!(
        "{}<SubjectFromWebIdentityToken>{}</SubjectFromWebIdentityToken><AssumedRoleUser><AssumedRoleId>{}</AssumedRoleId><Arn>{}</Arn></AssumedRoleUser><Provider>{}</Provider><Audience>{}</Audience><PackedPolicySize>0</PackedPolicySize>",
        crate::sessions::dev_credentials_xml(&issued),
        escape(&sub),
        escape(&principal.user_id),
        escape(&principal.arn),
        escape(hp),
        escape(&audience),
    );
    Ok((body, elements))
}
