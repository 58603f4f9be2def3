//! AWS's query protocol, as STS and the IAM API speak it: the pipeline's decode and encode
//! stages for those services. A request is a form (`Action=...&Version=...&...`, in the body
//! or the query string) whose `Action` names the operation; an answer is
//! `<{Action}Response>` XML, and an error `<ErrorResponse>` with the code named without the
//! JSON protocol's `Exception` suffix. [`Form::parse`] and [`operation`] are the parsers a
//! client reaches before it is authenticated (fuzzed as such).

use coffer_auth::sigv4::SigV4Error;
use coffer_core::{AwsError, ErrorCode};
use coffer_wire::operation::{Operation, Service};
use std::collections::BTreeMap;

/// The most characters of an unknown action's name an error or an event repeats.
pub const MAX_ECHOED_ACTION: usize = 128;

/// Whether `service` speaks the query protocol (else AWS JSON 1.1).
pub fn speaks_query(service: Service) -> bool {
    match service {
        Service::Sts | Service::Iam => true,
        Service::SecretsManager | Service::Kms | Service::CloudTrail => false,
    }
}

/// The form parameters of a request, decoded, with the text they came from (STS's
/// handlers read it with `sts::form_value`).
#[derive(Debug, Default)]
pub struct Form {
    text: String,
    fields: BTreeMap<String, String>,
}

impl Form {
    /// Parses a form (`application/x-www-form-urlencoded`): names and values percent- and
    /// `+`-decoded; a name given twice keeps its last value. Never fails: what does not
    /// decode is kept as sent (invalid UTF-8 replaced).
    pub fn parse(text: &[u8]) -> Form {
        Form {
            text: String::from_utf8_lossy(text).into_owned(),
            fields: form_urlencoded::parse(text).into_owned().collect(),
        }
    }

    /// The form of a request: its query string when that names the `Action`, else its body.
    pub fn of_request(query: &str, body: &[u8]) -> Form {
        if query.contains("Action=") { Form::parse(query.as_bytes()) } else { Form::parse(body) }
    }

    /// The form as it was sent (still encoded).
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    /// `Name.member.1`, `Name.member.2`, ... in order, up to the first gap.
    pub fn list(&self, name: &str) -> Vec<String> {
        (1..).map_while(|i| self.get(&format!("{name}.member.{i}")).map(str::to_string)).collect()
    }
}

/// The operation the form's `Action` names in `service`, or the error an unknown action
/// gets (`InvalidAction`, the name cut to [`MAX_ECHOED_ACTION`] characters) with that cut
/// name, which its event records.
pub fn operation(service: Service, form: &Form) -> Result<Operation, (AwsError, String)> {
    let action = form.get("Action").unwrap_or_default();
    if let Some(op) = Operation::from_name(service, action) {
        return Ok(op);
    }
    let shown: String = action.chars().take(MAX_ECHOED_ACTION).collect();
    Err((invalid_action(service, &shown), shown))
}

/// The refusal of an action `service` does not have (`shown`: its name, cut).
pub fn invalid_action(service: Service, shown: &str) -> AwsError {
    let message = format!("Could not find operation {shown} for version {}", version(service));
    failure("InvalidAction", message, 400)
}

/// A query-protocol error: the service's own code and the HTTP status it is answered with.
pub fn failure(code: &'static str, message: impl Into<String>, status: u16) -> AwsError {
    AwsError::new(ErrorCode::Query { code, status }, message)
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

/// The API version a query-protocol service's forms name.
pub fn version(service: Service) -> &'static str {
    match service {
        Service::Iam => crate::iam_api::VERSION,
        _ => crate::sts::VERSION,
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
pub fn error_xml(
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

/// `s` escaped for XML text and attribute values.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_wire::operation::{IamOp, StsOp};

    #[test]
    fn a_form_names_its_operation() {
        let form = Form::parse(b"Action=GetCallerIdentity&Version=2011-06-15");
        assert_eq!(operation(Service::Sts, &form).unwrap(), StsOp::GetCallerIdentity.into());
        let form = Form::of_request("Action=ListUsers&Version=2010-05-08", b"ignored");
        assert_eq!(operation(Service::Iam, &form).unwrap(), IamOp::ListUsers.into());
        // An STS action is no IAM operation.
        let form = Form::parse(b"Action=GetCallerIdentity");
        let (e, shown) = operation(Service::Iam, &form).unwrap_err();
        assert_eq!(shown, "GetCallerIdentity");
        assert_eq!(e.code.as_str(), "InvalidAction");
        assert_eq!(e.message, "Could not find operation GetCallerIdentity for version 2010-05-08");
    }

    #[test]
    fn an_unknown_action_is_echoed_at_most_128_characters() {
        let long = "A".repeat(10_000);
        let (e, shown) =
            operation(Service::Sts, &Form::parse(format!("Action={long}").as_bytes())).unwrap_err();
        assert_eq!(shown.len(), MAX_ECHOED_ACTION);
        assert!(e.message.len() < 200);
        let (_, shown) = operation(Service::Sts, &Form::parse(b"Version=1")).unwrap_err();
        assert_eq!(shown, "");
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
