//! `sts:GetCallerIdentity` on Coffer's endpoint, in the AWS query protocol STS speaks:
//! a form-encoded `Action=GetCallerIdentity&Version=2011-06-15` request and an XML answer,
//! so `aws sts get-caller-identity --endpoint-url ...` works against Coffer.

use coffer_auth::sigv4::SigV4Error;

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

pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// An STS error body and its HTTP status.
pub fn error(code: &str, message: &str, request_id: &str, status: u16) -> (u16, Vec<u8>) {
    query_error(XMLNS, code, message, request_id, status)
}

/// An error body of a query-protocol service (`xmlns` names it) and its HTTP status.
pub(crate) fn query_error(
    xmlns: &str,
    code: &str,
    message: &str,
    request_id: &str,
    status: u16,
) -> (u16, Vec<u8>) {
    let kind = if status >= 500 { "Receiver" } else { "Sender" };
    let body = format!(
        "<ErrorResponse xmlns=\"{xmlns}\">\n  <Error>\n    <Type>{kind}</Type>\n    <Code>{}</Code>\n    <Message>{}</Message>\n  </Error>\n  <RequestId>{}</RequestId>\n</ErrorResponse>\n",
        escape(code),
        escape(message),
        escape(request_id)
    );
    (status, body.into_bytes())
}

/// A signature failure as STS reports it: 403 with the query protocol's codes.
pub fn signature_error(e: &SigV4Error, request_id: &str) -> (u16, Vec<u8>) {
    error(e.query_code(), &e.query_message(), request_id, 403)
}

/// Answers a query-protocol request whose form parameters are in `form`.
pub fn answer(form: &str, identity: &Identity, request_id: &str) -> (u16, Vec<u8>) {
    let action = form_value(form, "Action").unwrap_or_default();
    if action != "GetCallerIdentity" {
        return error(
            "InvalidAction",
            &format!("Could not find operation {action} for version {VERSION}"),
            request_id,
            400,
        );
    }
    let body = format!(
        "<GetCallerIdentityResponse xmlns=\"{XMLNS}\">\n  <GetCallerIdentityResult>\n    <Arn>{}</Arn>\n    <UserId>{}</UserId>\n    <Account>{}</Account>\n  </GetCallerIdentityResult>\n  <ResponseMetadata>\n    <RequestId>{}</RequestId>\n  </ResponseMetadata>\n</GetCallerIdentityResponse>\n",
        escape(&identity.arn),
        escape(&identity.user_id),
        escape(&identity.account),
        escape(request_id)
    );
    (200, body.into_bytes())
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
    fn get_caller_identity_answers_in_xml_and_other_actions_are_invalid() {
        let id = Identity {
            arn: "arn:aws:iam::000000000000:user/admin".into(),
            user_id: "AIDAEXAMPLE".into(),
            account: "000000000000".into(),
        };
        let (status, body) = answer("Action=GetCallerIdentity&Version=2011-06-15", &id, "r-1");
        let body = String::from_utf8(body).unwrap();
        assert_eq!(status, 200);
        assert!(body.contains("<Arn>arn:aws:iam::000000000000:user/admin</Arn>"));
        assert!(body.contains("<Account>000000000000</Account>"));
        let (status, body) = answer("Action=AssumeRole", &id, "r-2");
        assert_eq!(status, 400);
        assert!(String::from_utf8(body).unwrap().contains("<Code>InvalidAction</Code>"));
    }
}
