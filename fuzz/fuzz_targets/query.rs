//! The STS and IAM query-protocol parsers: any bytes as a form-encoded body or query
//! string, as `sts` (is_query_request, form_value) and the IAM API
//! (`coffer_server::iam_api::Form`: parameters, `Name.member.N` lists and tags) read them.
//! Must never panic.
#![no_main]

use coffer_server::iam_api::Form;
use coffer_server::sts;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let form = Form::parse(data);
    for name in ["Action", "Version", "UserName", "PolicyDocument", "RoleName"] {
        let _ = form.get(name);
    }
    let _ = form.list("PolicyArns");
    let _ = form.list("UserNames");
    let _ = form.tags();
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = sts::is_query_request(Some("application/x-www-form-urlencoded"), text);
    let _ = sts::is_query_request(None, text);
    for name in ["Action", "Version", "RoleArn", "RoleSessionName", "DurationSeconds"] {
        if let Some(value) = sts::form_value(text, name) {
            // What an answer echoes is encoded again; it must round-trip through the decoder.
            let encoded = sts::percent_encode(&value);
            assert_eq!(
                sts::form_value(&format!("{name}={encoded}"), name).as_deref(),
                Some(value.as_str())
            );
        }
    }
});
