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
use coffer_wire::operation::StsOp;

const XMLNS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
pub const VERSION: &str = coffer_wire::query_form::STS_VERSION;
// The form parsing is pure and lives in coffer-wire (fuzzed there without the server).
pub use coffer_wire::query_form::{form_value, is_query_request, percent_encode};

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
                        arn: format!("arn:aws:iam::{}:root", ctx.scope.account),
                        user_id: ctx.scope.account.clone(),
                        account: ctx.scope.account.clone(),
                    },
                },
            };
            Ok(caller_identity(&identity, &ctx.request_id))
        }
        StsOp::AssumeRole | StsOp::GetSessionToken => {
            crate::sessions::answer(app, ctx, who, raw, op, form.text())
                .map_err(|(code, message, status)| crate::query::failure(code, message, status))
        }
        // Unsigned (the token is the credential), so answered by `web_identity` before
        // the pipeline; a request never reaches here with it.
        StsOp::AssumeRoleWithWebIdentity => Err(AwsError::internal()),
    }
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
