//! SigV4: the `Authorization` header parser and the canonical-request pieces built from
//! what the client sent (path, query string). Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = coffer_auth::sigv4::parse_authorization(text);
    let (path, query) = text.split_once('?').unwrap_or((text, ""));
    let _ = coffer_auth::sigv4::canonical_uri(path);
    let _ = coffer_auth::sigv4::canonical_query(query);
    let _ = coffer_auth::sigv4::echo(text);
});
