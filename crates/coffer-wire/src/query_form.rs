//! AWS's query protocol, as STS and the IAM API speak it, on the way in: the form a
//! request carries (`Action=...&Version=...&...`, in the body or the query string) and the
//! operation its `Action` names. These are the parsers a client reaches before it is
//! authenticated; they live here, apart from the server (which re-exports them from
//! `coffer_server::query` and `coffer_server::sts`), so the fuzz target `query` builds
//! without the store and the server. The answers' XML stays in the server.

use crate::operation::{Operation, Service};
use coffer_core::{AwsError, ErrorCode};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

/// The API version STS's forms name.
pub const STS_VERSION: &str = "2011-06-15";

/// The API version the IAM API's forms name.
pub const IAM_VERSION: &str = "2010-05-08";

/// The most characters of an unknown action's name an error or an event repeats.
pub const MAX_ECHOED_ACTION: usize = 128;

/// The form parameters of a request, decoded, with the text they came from (STS's
/// handlers read it with [`form_value`]).
#[derive(Debug, Default)]
pub struct Form {
    text: String,
    fields: BTreeMap<String, String>,
}

impl Form {
    /// Parses a form (`application/x-www-form-urlencoded`): names and values percent- and
    /// `+`-decoded; a name given twice keeps its first value. Never fails: what does not
    /// decode is kept as sent (invalid UTF-8 replaced).
    ///
    /// Every name reads as [`form_value`] and [`FormValues`] read it (same decoding, the
    /// first of a repeated name): STS's handlers read their members from `FormValues`
    /// while the trail records them from this `Form` (`query_params`), so a rule of its
    /// own let a signed `RoleArn=<assumed>&RoleArn=<decoy>` assume one role and record
    /// the other (review 17, finding 01).
    pub fn parse(text: &[u8]) -> Form {
        let text = String::from_utf8_lossy(text).into_owned();
        let mut fields = BTreeMap::new();
        for pair in text.split('&') {
            let (k, v) = split_pair(pair);
            fields.entry(percent_decode(k)).or_insert_with(|| percent_decode(v));
        }
        Form { text, fields }
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

/// The API version a query-protocol service's forms name.
pub fn version(service: Service) -> &'static str {
    match service {
        Service::Iam => IAM_VERSION,
        _ => STS_VERSION,
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

/// The value of `name` in a form-encoded string: the first one when the name repeats.
/// Each call scans the form: a handler that reads several values reads them from
/// [`FormValues`], which scans it once.
pub fn form_value(form: &str, name: &str) -> Option<String> {
    form.split('&').find_map(|pair| {
        let (k, v) = split_pair(pair);
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

/// A form's pair as sent: its name and value, still encoded (a pair without `=` has an
/// empty value).
fn split_pair(pair: &str) -> (&str, &str) {
    pair.split_once('=').unwrap_or((pair, ""))
}

/// A form's values by name, read once, as [`form_value`] reads each: decoded the same way,
/// the first value of a repeated name kept. STS's handlers read a request's members from
/// it, so a member list read one index at a time costs a lookup per member rather than a
/// scan of the whole form (review 15b, finding 02, bounded those scans; the bounds stay).
/// IAM's handlers and the trail read [`Form`], which reads every name the same way.
///
/// It borrows the form: a name with nothing to decode is kept as sent, and a value is
/// decoded only when it is looked up, so reading a large form costs one pass and little
/// more than its pairs' count in allocations.
#[derive(Debug, Default, Clone)]
pub struct FormValues<'a> {
    /// Each decoded name's first value, still encoded.
    values: HashMap<Cow<'a, str>, &'a str>,
}

impl<'a> FormValues<'a> {
    /// Reads every pair of `form` (form-encoded), in one pass.
    pub fn parse(form: &'a str) -> FormValues<'a> {
        let mut values = HashMap::new();
        for pair in form.split('&') {
            let (k, v) = split_pair(pair);
            values.entry(decoded(k)).or_insert(v);
        }
        FormValues { values }
    }

    /// The value of `name`, as [`form_value`] gives it.
    pub fn value(&self, name: &str) -> Option<String> {
        self.values.get(name).map(|v| percent_decode(v))
    }
}

/// `s` decoded as [`percent_decode`] decodes it, borrowed when there is nothing to decode
/// (no `%` or `+`: the decoding of valid UTF-8 without them is itself).
fn decoded(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b == b'%' || b == b'+') {
        Cow::Owned(percent_decode(s))
    } else {
        Cow::Borrowed(s)
    }
}

/// `s` percent-encoded as RFC 3986 wants (every byte but `A-Za-z0-9-_.~`).
pub fn percent_encode(s: &str) -> String {
    const RFC3986: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    percent_encoding::utf8_percent_encode(s, RFC3986).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operation::{IamOp, StsOp};

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
    fn form_values_are_decoded() {
        let form = "Action=GetCallerIdentity&Version=2011-06-15&X=a%2Fb+c";
        assert_eq!(form_value(form, "Action").as_deref(), Some("GetCallerIdentity"));
        assert_eq!(form_value(form, "X").as_deref(), Some("a/b c"));
        assert_eq!(form_value(form, "Missing"), None);
        assert!(is_query_request(Some("application/x-www-form-urlencoded; charset=utf-8"), ""));
        assert!(is_query_request(None, "Action=GetCallerIdentity"));
        assert!(!is_query_request(Some("application/x-amz-json-1.1"), ""));
    }

    /// Every name, present or not, reads the same from [`FormValues`] as by
    /// [`form_value`]: the first of a repeated name, empty and valueless pairs, encoded
    /// names, malformed escapes.
    #[test]
    fn form_values_read_as_form_value_reads() {
        let forms = [
            "",
            "A=1&A=2&B=&C&=x&&D=%41%2",
            "Tags.member.1.Key=k&Tags%2Emember%2E1%2EKey=other&Tags.member.1.Value=a+b%2Bc",
            "X=%zz%+5%&Y=%C3%A9%FF&X=last",
        ];
        let names =
            ["", "A", "B", "C", "D", "X", "Y", "Z", "Tags.member.1.Key", "Tags.member.1.Value"];
        for form in forms {
            let values = FormValues::parse(form);
            for name in names {
                assert_eq!(values.value(name), form_value(form, name), "{name:?} in {form:?}");
            }
        }
        let values = FormValues::parse("A=1&A=2");
        assert_eq!(values.value("A").as_deref(), Some("1"));
    }

    /// [`Form`] (IAM's handlers, the trail's request parameters) reads every name as
    /// [`form_value`] does, so what STS acts on is what its event records.
    #[test]
    fn a_form_reads_as_form_value_reads() {
        let forms = [
            "",
            "A=1&A=2&B=&C&=x&&D=%41%2",
            "Tags.member.1.Key=k&Tags%2Emember%2E1%2EKey=other&Tags.member.1.Value=a+b%2Bc",
            "X=%zz%+5%&Y=%C3%A9%FF&X=last",
            "RoleArn=arn%3Aassumed&RoleArn=arn%3Adecoy",
        ];
        let names = [
            "",
            "A",
            "B",
            "C",
            "D",
            "X",
            "Y",
            "Z",
            "Tags.member.1.Key",
            "Tags.member.1.Value",
            "RoleArn",
        ];
        for text in forms {
            let form = Form::parse(text.as_bytes());
            for name in names {
                assert_eq!(
                    form.get(name),
                    form_value(text, name).as_deref(),
                    "{name:?} in {text:?}"
                );
            }
        }
        let form = Form::parse(b"RoleArn=arn%3Aassumed&RoleArn=arn%3Adecoy");
        assert_eq!(form.get("RoleArn"), Some("arn:assumed"));
    }

    #[test]
    fn an_encoded_value_decodes_to_itself() {
        for value in ["a/b c", "100%", "x+y=z&w", "é ☃", ""] {
            let text = format!("V={}", percent_encode(value));
            assert_eq!(form_value(&text, "V").as_deref(), Some(value));
        }
    }
}
