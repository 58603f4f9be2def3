//! The JSON 1.1 decoder and model validator: any bytes, as the body of any operation of
//! Secrets Manager or KMS, and any text as `X-Amz-Target`. Must never panic.
#![no_main]

use coffer_wire::model::ServiceModel;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let model =
        if selector & 1 == 0 { ServiceModel::secretsmanager() } else { ServiceModel::kms() };
    let names: Vec<&str> = model.operation_names().collect();
    let operation = names[usize::from(selector >> 1) % names.len()];
    if let Ok(text) = std::str::from_utf8(body) {
        let _ = coffer_wire::protocol::parse_target(text);
    }
    // As the server does: an empty body is `{}`, anything else must parse as JSON.
    let value = if body.is_empty() {
        serde_json::json!({})
    } else {
        match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(value) => value,
            Err(_) => return,
        }
    };
    let _ = coffer_wire::validate::validate_input(model, operation, &value);
});
