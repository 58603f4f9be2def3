//! AWS's query protocol, as STS and the IAM API speak it: the pipeline's decode and encode
//! stages for those services. A request is a form (`Action=...&Version=...&...`, in the body
//! or the query string) whose `Action` names the operation; an answer is
//! `<{Action}Response>` XML, and an error `<ErrorResponse>` with the code named without the
//! JSON protocol's `Exception` suffix. [`Form::parse`] and [`operation`] are the parsers a
//! client reaches before it is authenticated (fuzzed as such): they are in
//! `coffer_wire::query_form`, re-exported here.

use coffer_auth::sigv4::SigV4Error;
use coffer_core::{AwsError, ErrorCode};
use coffer_wire::operation::Service;
// The form and the operation it names are parsed in coffer-wire (pure, and fuzzed
// there without the server); the server uses them from here.
pub use coffer_wire::query_form::{
    Form, MAX_ECHOED_ACTION, failure, invalid_action, operation, version,
};

/// Whether `service` speaks the query protocol (else AWS JSON 1.1).
pub fn speaks_query(service: Service) -> bool {
    match service {
        Service::Sts | Service::Iam => true,
        Service::SecretsManager | Service::Kms | Service::CloudTrail => false,
    }
}

/// A signature failure as the query protocol reports it: 403 with its own codes
/// (`SignatureDoesNotMatch`, `InvalidClientTokenId`, ...).
pub fn signature_error(e: &SigV4Error) -> AwsError {
    failure(e.query_code(), e.query_message(), 403)
}

/// Any error of a call in the query protocol's terms, which both its answer and its
/// event use: a code without the `Exception` suffix (`Throttling`, `RequestTimeout`), an
/// authorization refusal 403, an internal error as the service names it.
pub fn in_query_terms(service: Service, e: AwsError) -> AwsError {
    let AwsError { code, message } = e;
    match code {
        ErrorCode::Query { .. } => AwsError { code, message },
        ErrorCode::AccessDenied => failure("AccessDenied", message, 403),
        code if code.http_status() >= 500 => match service {
            Service::Iam => failure("ServiceFailure", "An internal error occurred.", 500),
            _ => failure("InternalFailure", "An internal error occurred.", 500),
        },
        code => failure(code.as_str().trim_end_matches("Exception"), message, code.http_status()),
    }
}

/// The XML namespace of a query-protocol service's answers.
pub fn xmlns(service: Service) -> &'static str {
    match service {
        Service::Iam => "https://iam.amazonaws.com/doc/2010-05-08/",
        _ => "https://sts.amazonaws.com/doc/2011-06-15/",
    }
}

/// The answer to `action`: its result (XML, possibly empty) and the request id.
pub fn response(service: Service, action: &str, result: &str, request_id: &str) -> Vec<u8> {
    let result = if result.is_empty() {
        String::new()
    } else {
        format!("  <{action}Result>{result}</{action}Result>\n")
    };
    format!(
        "<{action}Response xmlns=\"{}\">\n{result}  <ResponseMetadata>\n    <RequestId>{}</RequestId>\n  </ResponseMetadata>\n</{action}Response>\n",
        xmlns(service),
        escape(request_id)
    )
    .into_bytes()
}

/// The error body of `e` (in query terms) and its HTTP status.
pub fn error_body(service: Service, e: &AwsError, request_id: &str) -> (u16, Vec<u8>) {
    let e = in_query_terms(service, e.clone());
    let status = e.code.http_status();
    error_xml(xmlns(service), e.code.as_str(), &e.message, request_id, status)
}

/// An error body of a query-protocol service (`xmlns` names it) and its HTTP status.
/// The most characters of an error message a query-protocol answer carries: room for a
/// message of AWS's wording with two quoted values of 512 characters each.
const MAX_MESSAGE_CHARS: usize = 2048;

pub fn error_xml(
    xmlns: &str,
    code: &str,
    message: &str,
    request_id: &str,
    status: u16,
) -> (u16, Vec<u8>) {
    let kind = if status >= 500 { "Receiver" } else { "Sender" };
    // A backstop: each message quotes at most 512 characters of what the client sent
    // (`sigv4::echo`), but a message written later that forgets to must not echo a
    // megabyte back either.
    let message = coffer_auth::sigv4::echo_at_most(message, MAX_MESSAGE_CHARS);
    let body = format!(
        "<ErrorResponse xmlns=\"{xmlns}\">\n  <Error>\n    <Type>{kind}</Type>\n    <Code>{}</Code>\n    <Message>{}</Message>\n  </Error>\n  <RequestId>{}</RequestId>\n</ErrorResponse>\n",
        escape(code),
        escape(&message),
        escape(request_id)
    );
    (status, body.into_bytes())
}

/// `s` escaped for XML text and attribute values.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_message_is_cut_whatever_it_quotes() {
        let long = format!("User: {} is not authorized", "é".repeat(100_000));
        let (status, body) = error_xml("urn:x", "AccessDenied", &long, "req", 403);
        let body = String::from_utf8(body).unwrap();
        assert_eq!(status, 403);
        assert!(body.len() < 2 * MAX_MESSAGE_CHARS + 400, "{} bytes", body.len());
        assert!(body.contains("...</Message>"));
        let (_, short) =
            error_xml("urn:x", "AccessDenied", "User: x is not authorized", "req", 403);
        let short = String::from_utf8(short).unwrap();
        assert!(short.contains("<Message>User: x is not authorized</Message>"), "{short}");
    }

    #[test]
    fn errors_take_the_query_protocols_codes() {
        let throttled = in_query_terms(Service::Sts, AwsError::throttled());
        assert_eq!((throttled.code.as_str(), throttled.code.http_status()), ("Throttling", 400));
        assert_eq!(throttled.message, "Rate exceeded");
        let internal = in_query_terms(Service::Iam, AwsError::internal());
        assert_eq!((internal.code.as_str(), internal.code.http_status()), ("ServiceFailure", 500));
        let internal = in_query_terms(Service::Sts, AwsError::internal());
        assert_eq!(internal.code.as_str(), "InternalFailure");
        let denied = in_query_terms(Service::Iam, AwsError::new(ErrorCode::AccessDenied, "no"));
        assert_eq!((denied.code.as_str(), denied.code.http_status()), ("AccessDenied", 403));
        let mismatch = signature_error(&SigV4Error::SignatureMismatch);
        assert_eq!(
            (mismatch.code.as_str(), mismatch.code.http_status()),
            ("SignatureDoesNotMatch", 403)
        );
        let (status, body) = error_body(Service::Sts, &throttled, "r-1");
        let body = String::from_utf8(body).unwrap();
        assert_eq!(status, 400);
        assert!(body.contains("<Type>Sender</Type>") && body.contains("<Code>Throttling</Code>"));
        assert!(body.contains("<RequestId>r-1</RequestId>"));
    }
}
