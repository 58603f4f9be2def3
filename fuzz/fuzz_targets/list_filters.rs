//! ListSecrets filters: any body validated as ListSecrets input, its filters taken as the
//! server takes them, compiled and matched against a secret. Must never panic. The path
//! is crates/coffer-wire/tests/support/list_filters.rs, compiled here in place and shared
//! with the property test in crates/coffer-wire/tests/fuzz_props.rs.
#![no_main]

#[path = "../../crates/coffer-wire/tests/support/list_filters.rs"]
mod list_filters;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    list_filters::validate_decode_and_match(value);
});
