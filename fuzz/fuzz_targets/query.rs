//! The STS and IAM query-protocol parsers: any bytes as a form-encoded body or query
//! string, as `sts` (is_query_request, form_value, FormValues) and the IAM API (`Form`: parameters,
//! `Name.member.N` lists, tags; and the `Action` that names the operation) read them:
//! `coffer_wire::query_form`, which the server's `query` and `sts` modules re-export.
//! Must never panic.
#![no_main]

use coffer_wire::operation::Service;
use coffer_wire::query_form::{self, Form};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let form = Form::parse(data);
    for name in ["Action", "Version", "UserName", "PolicyDocument", "RoleName"] {
        let _ = form.get(name);
    }
    let _ = form.list("PolicyArns");
    let _ = form.list("UserNames");
    for i in 1..=3 {
        let _ = form.get(&format!("Tags.member.{i}.Key"));
    }
    let _ = query_form::operation(Service::Sts, &form);
    let _ = query_form::operation(Service::Iam, &form);
    let _ = Form::of_request(std::str::from_utf8(data).unwrap_or(""), data);
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = query_form::is_query_request(Some("application/x-www-form-urlencoded"), text);
    let _ = query_form::is_query_request(None, text);
    // STS's handlers read their members from one pass over the form (`FormValues`): every
    // name reads as a scan for it does.
    let values = query_form::FormValues::parse(text);
    for name in ["Action", "Version", "RoleArn", "RoleSessionName", "DurationSeconds"] {
        assert_eq!(values.value(name), query_form::form_value(text, name));
        // The trail records what STS acts on: `Form` reads every name the same way.
        assert_eq!(form.get(name).map(str::to_string), query_form::form_value(text, name));
        if let Some(value) = query_form::form_value(text, name) {
            // What an answer echoes is encoded again; it must round-trip through the decoder.
            let encoded = query_form::percent_encode(&value);
            assert_eq!(
                query_form::form_value(&format!("{name}={encoded}"), name).as_deref(),
                Some(value.as_str())
            );
        }
    }
});
