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
pub const VERSION: &str = "2011-06-15";

/// The identity GetCallerIdentity reports.
#[derive(Debug, Clone)]
pub struct Identity {
    pub arn: String,
    pub user_id: String,
    pub account: String,
}

/// True when a request without `X-Amz-Target` is a query-protocol call: a form body,
/// or an `Action` in the query string.
pub fn is_query_request(content_type: Option<&str>, query: &str) -> bool {
    content_type.is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
        || form_value(query, "Action").is_some()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(
                    std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or(""),
                    16,
                ) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of `name` in a form-encoded string.
pub fn form_value(form: &str, name: &str) -> Option<String> {
    form.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

/// `s` percent-encoded as RFC 3986 wants (every byte but `A-Za-z0-9-_.~`).
pub fn percent_encode(s: &str) -> String {
    const RFC3986: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    percent_encoding::utf8_percent_encode(s, RFC3986).to_string()
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
                // `--dev`: the root of the account the access key maps to.
                None => Identity {
                    arn: format!("arn:aws:iam::{}:root", ctx.scope.account),
                    user_id: ctx.scope.account.clone(),
                    account: ctx.scope.account.clone(),
                },
            };
            Ok(caller_identity(&identity, &ctx.request_id))
        }
        StsOp::AssumeRole | StsOp::GetSessionToken => {
            crate::sessions::answer(app, who, raw, op, form.text(), &ctx.request_id)
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
    fn form_values_are_decoded() {
        let form = "Action=GetCallerIdentity&Version=2011-06-15&X=a%2Fb+c";
        assert_eq!(form_value(form, "Action").as_deref(), Some("GetCallerIdentity"));
        assert_eq!(form_value(form, "X").as_deref(), Some("a/b c"));
        assert_eq!(form_value(form, "Missing"), None);
        assert!(is_query_request(Some("application/x-www-form-urlencoded; charset=utf-8"), ""));
        assert!(is_query_request(None, "Action=GetCallerIdentity"));
        assert!(!is_query_request(Some("application/x-amz-json-1.1"), ""));
    }

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
