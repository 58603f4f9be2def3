//! STS on Coffer's endpoint, in the AWS query protocol STS speaks: a form-encoded
//! `Action=GetCallerIdentity&Version=2011-06-15` request and an XML answer, so
//! `aws sts get-caller-identity --endpoint-url ...` works against Coffer. Its calls run
//! through the pipeline like every other (`pipeline::call_query`); this module is its
//! handler ([`handle`]), the credential-issuing actions being in `sessions` and
//! AssumeRoleWithWebIdentity (unsigned) in `web_identity`.

use crate::auth::{Authenticated, RawRequest};
use crate::query::Form;
use crate::{App, RequestContext};
use coffer_core::AwsError;
use coffer_core::validation::{Constraint, Violation};
use coffer_wire::operation::{Service, StsOp};

const XMLNS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
pub const VERSION: &str = coffer_wire::query_form::STS_VERSION;
// The form parsing is pure and lives in coffer-wire (fuzzed there without the server).
pub use coffer_wire::query_form::{FormValues, form_value, is_query_request, percent_encode};

/// The identity GetCallerIdentity reports.
#[derive(Debug, Clone)]
pub struct Identity {
    pub arn: String,
    pub user_id: String,
    pub account: String,
}

pub(crate) use crate::query::escape;

/// An STS error body and its HTTP status.
pub fn error(code: &str, message: &str, request_id: &str, status: u16) -> (u16, Vec<u8>) {
    crate::query::error_xml(XMLNS, code, message, request_id, status)
}

/// Runs one STS call, its caller identified, audited and counted by the pipeline:
/// `Ok(the XML answer)`, or the error in STS's terms. GetCallerIdentity needs no
/// permission (as in AWS); AssumeRole is decided on the role's trust policy and the
/// caller's policies (`sessions`).
pub fn handle(
    app: &App,
    ctx: &RequestContext,
    who: Option<&Authenticated>,
    raw: &RawRequest,
    op: StsOp,
    form: &Form,
) -> Result<Vec<u8>, AwsError> {
    if let Some(refusal) = temporary_credentials_refusal(ctx, who, op, form) {
        return Err(refusal);
    }
    match op {
        StsOp::GetCallerIdentity => {
            let identity = match who {
                Some(Authenticated { caller, .. }) => Identity {
                    arn: caller.principal.arn.clone(),
                    user_id: caller.principal.user_id.clone(),
                    account: caller.principal.account.clone(),
                },
                // `--dev`: who credentials STS issued in `--dev` act as, else the root
                // of the account the access key maps to.
                None => match &ctx.dev_caller {
                    Some(p) => Identity {
                        arn: p.arn.clone(),
                        user_id: p.user_id.clone(),
                        account: p.account.clone(),
                    },
                    None => Identity {
                        arn: coffer_auth::principal::account_root_arn(
                            ctx.scope.partition(),
                            &ctx.scope.account,
                        ),
                        user_id: ctx.scope.account.clone(),
                        account: ctx.scope.account.clone(),
                    },
                },
            };
            Ok(caller_identity(&identity, &ctx.request_id))
        }
        StsOp::AssumeRole | StsOp::GetSessionToken => {
            crate::sessions::answer(app, ctx, who, raw, op, &FormValues::parse(form.text()))
                .map_err(|(code, message, status)| crate::query::failure(code, message, status))
        }
        StsOp::GetAccessKeyInfo => access_key_info(app, ctx, who, raw, form),
        StsOp::GetFederationToken => {
            crate::federation::answer(app, ctx, who, raw, &FormValues::parse(form.text()))
        }
        // Unsigned (the token is the credential), so answered by `web_identity` before
        // the pipeline; a request never reaches here with it.
        StsOp::AssumeRoleWithWebIdentity => Err(AwsError::internal()),
    }
}

/// What AWS refuses the temporary credentials that signed a call (sts15): those of
/// GetFederationToken call no STS operation but GetCallerIdentity; those of GetSessionToken
/// (which Coffer issues without MFA) only AssumeRole and GetCallerIdentity (the
/// "Permissions" sections of AWS's GetFederationToken and GetSessionToken references).
/// GetSessionToken and GetFederationToken refuse every session's credentials in their own
/// words, further on; a role session's may call everything else. No source gives AWS's
/// words for these refusals: they take AWS's documented form of an STS refusal (`User:
/// <arn> is not authorized to perform: <action> on resource: <resource>`, 403). Enforcing
/// mode and `--dev` alike: it is a rule of the credentials, not an authorization outcome.
fn temporary_credentials_refusal(
    ctx: &RequestContext,
    who: Option<&Authenticated>,
    op: StsOp,
    form: &Form,
) -> Option<AwsError> {
    let (access_key_id, principal, partition) = match who {
        Some(who) => (&who.access_key_id, &who.caller.principal, None),
        None => (&ctx.access_key_id, &**ctx.dev_caller.as_ref()?, Some(ctx.scope.partition())),
    };
    let kind = crate::sessions::Temporary::of(access_key_id, principal)?;
    let resource = match op {
        StsOp::AssumeRole if kind == crate::sessions::Temporary::Federated => {
            coffer_auth::sigv4::echo(form.get("RoleArn").unwrap_or_default()).to_string()
        }
        StsOp::GetAccessKeyInfo if kind != crate::sessions::Temporary::Role => "*".to_string(),
        _ => return None,
    };
    let arn = partition.map_or_else(|| principal.arn.clone(), |p| p.rewrite(&principal.arn));
    let message = format!(
        "User: {arn} is not authorized to perform: sts:{} on resource: {resource}",
        op.name()
    );
    Some(crate::query::failure("AccessDenied", message, 403))
}

/// GetAccessKeyInfo: the account an access key id belongs to, for a caller allowed
/// `sts:GetAccessKeyInfo`. AWS reads the account out of the key id itself, so it answers
/// for any key; Coffer's key ids are random, so it answers for the keys it issued (long-term
/// and temporary, of any account, as AWS does) and refuses others.
fn access_key_info(
    app: &App,
    ctx: &RequestContext,
    who: Option<&Authenticated>,
    raw: &RawRequest,
    form: &Form,
) -> Result<Vec<u8>, AwsError> {
    let id = form.get("AccessKeyId").unwrap_or_default();
    if let Some(problem) = access_key_id_problem(form.get("AccessKeyId")) {
        return Err(crate::query::failure("ValidationError", problem, 400));
    }
    let (Some(who), Some(iam)) = (who, app.iam.as_ref()) else {
        // `--dev` takes the account of a request from its key id: a 12-digit id is the
        // account, any other the default one, and an id given here is at least 16 long;
        // but the keys `--dev`'s IAM API and STS issued act in their own account.
        let account =
            dev_key_account(app, id).unwrap_or_else(|| app.config.default_account.clone());
        let body = format!("<Account>{}</Account>", escape(&account));
        return Ok(crate::query::response(
            Service::Sts,
            "GetAccessKeyInfo",
            &body,
            &ctx.request_id,
        ));
    };
    crate::auth::authorize_action(who, "sts:GetAccessKeyInfo", "*", raw, &[])?;
    let owner = iam.key_owner(&*app.store, id).map_err(|e| {
        tracing::error!(error = %e, "GetAccessKeyInfo: the store failed");
        AwsError::internal()
    })?;
    let Some(owner) = owner else {
        let id = coffer_auth::sigv4::echo(id);
        let message = format!("The access key ID {id} was not issued by this service.");
        return Err(crate::query::failure("InvalidParameterValue", message, 400));
    };
    let body = format!("<Account>{}</Account>", escape(&owner.account));
    Ok(crate::query::response(Service::Sts, "GetAccessKeyInfo", &body, &ctx.request_id))
}

/// `--dev`: the account of a key its IAM API or STS issued (ended sessions too, as AWS
/// answers for any key it issued); `None` for any other.
fn dev_key_account(app: &App, id: &str) -> Option<String> {
    let directory = app.dev_iam.as_ref()?;
    if id.starts_with("ASIA") {
        return crate::dev_sessions::account_of(app, id);
    }
    directory.key_owner(&*app.store, id).ok().flatten().map(|owner| owner.account)
}

/// The model's constraints on `AccessKeyId` (16 to 128 word characters), in the
/// validation message's words.
fn access_key_id_problem(id: Option<&str>) -> Option<String> {
    let Some(id) = id else {
        return Some(Violation::null("accessKeyId").message());
    };
    let constraint = match id.chars().count() {
        n if n < 16 => Constraint::MinLength(16),
        n if n > 128 => Constraint::MaxLength(128),
        _ if !id.chars().all(|c| c.is_alphanumeric() || c == '_') => Constraint::Pattern("[\\w]*"),
        _ => return None,
    };
    Some(Violation::value(id, "accessKeyId", constraint).message())
}

/// GetCallerIdentity's answer.
pub fn caller_identity(identity: &Identity, request_id: &str) -> Vec<u8> {
    format!(
        "<GetCallerIdentityResponse xmlns=\"{XMLNS}\">\n  <GetCallerIdentityResult>\n    <Arn>{}</Arn>\n    <UserId>{}</UserId>\n    <Account>{}</Account>\n  </GetCallerIdentityResult>\n  <ResponseMetadata>\n    <RequestId>{}</RequestId>\n  </ResponseMetadata>\n</GetCallerIdentityResponse>\n",
        escape(&identity.arn),
        escape(&identity.user_id),
        escape(&identity.account),
        escape(request_id)
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_caller_identity_answers_in_xml() {
        let id = Identity {
            arn: "arn:aws:iam::000000000000:user/admin".into(),
            user_id: "AIDAEXAMPLE".into(),
            account: "000000000000".into(),
        };
        let body = String::from_utf8(caller_identity(&id, "r-1")).unwrap();
        assert!(body.contains("<Arn>arn:aws:iam::000000000000:user/admin</Arn>"));
        assert!(body.contains("<Account>000000000000</Account>"));
        assert!(body.contains("<RequestId>r-1</RequestId>"));
    }
}
