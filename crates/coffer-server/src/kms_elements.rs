//! What CloudTrail records of a KMS write that Coffer's generic path cannot read from the
//! write's result: CreateKey's `keyMetadata`, ScheduleKeyDeletion's answer, and for the key
//! operations whose answer is empty (DisableKey, EnableKey, TagResource, ...) the key ARN
//! in `responseElements.keyId`, which CloudTrail has recorded since December 2022 "even
//! though this operation does not return the key ARN"; each lists the key in the record's
//! own `resources`, as the KMS Developer Guide's example records do. Sources and the rule
//! for the cases no source settles: `docs/design/audit.md`, "KMS and Secrets Manager
//! records".

use coffer_audit::event::{self, Event, Resource};
use coffer_audit::format_response_date;
use coffer_core::Scope;
use coffer_kms::KeyRecord;
use serde_json::{Map, Value, json};
use std::any::Any;
use std::collections::BTreeSet;

const KMS_SOURCE: &str = "kms.amazonaws.com";
const KEY_TYPE: &str = "AWS::KMS::Key";

/// The KMS writes whose record holds the affected key's ARN in `responseElements.keyId`
/// (their answers are empty or hold the key id alone).
const KEY_ID_ELEMENTS: &[&str] = &[
    "CancelKeyDeletion",
    "CreateAlias",
    "DisableKey",
    "DisableKeyRotation",
    "EnableKey",
    "EnableKeyRotation",
    "PutKeyPolicy",
    "RotateKeyOnDemand",
    "TagResource",
    "UntagResource",
    "UpdateAlias",
    "UpdateKeyDescription",
];

/// Completes the record of a successful KMS write in its transaction: its response elements
/// and its key in `resources`, from the key record the write returned or, when it returned
/// none (tags, policies, aliases), from the key id or key ARN the request named (these
/// operations take no alias). Leaves any other event as it is.
pub(crate) fn complete_kms_write(event: &mut Event, result: &dyn Any, scope: &Scope) {
    if event.event_source != KMS_SOURCE || event.error_code.is_some() {
        return;
    }
    let name = event.event_name.as_str();
    let key = result.downcast_ref::<KeyRecord>();
    let arn = match key {
        Some(key) => Some(key.arn.clone()),
        None if KEY_ID_ELEMENTS.contains(&name) => ["keyId", "targetKeyId"]
            .iter()
            .filter_map(|member| event.request_parameters.get(*member).and_then(Value::as_str))
            .find_map(|named| coffer_audit::listed::key_arn(event, named)),
        None => None,
    };
    let Some(arn) = arn else { return };
    let elements = match (name, key) {
        ("CreateKey", Some(key)) => json!({ "keyMetadata": key_metadata(key) }),
        ("ScheduleKeyDeletion", Some(key)) => scheduled_deletion(key),
        (name, _) if KEY_ID_ELEMENTS.contains(&name) => json!({ "keyId": arn }),
        // A write this module does not describe (ReplicateKey, imports): unchanged.
        _ => return,
    };
    event.response_elements = elements;
    if !event.resources.iter().any(|r| r.arn == arn) {
        // A key ARN's fifth field is its account (the caller's own for a key it created).
        let account = arn.split(':').nth(4).map(str::to_string).or(Some(scope.account.clone()));
        event.resources.push(Resource { arn, account_id: account, kind: KEY_TYPE.to_string() });
    }
}

/// CreateKey's `keyMetadata` as CloudTrail records it: the answer's members in lower camel
/// case but `AWSAccountId` (as the KMS Developer Guide's CreateKey record spells it), dates
/// as `Aug 10, 2022, 10:38:27 PM`. Key metadata holds no key material and no secret.
fn key_metadata(key: &KeyRecord) -> Value {
    let answer = serde_json::to_value(crate::kms_api::metadata(key)).unwrap_or(Value::Null);
    let Value::Object(members) = event::redact_parameters(&answer, &BTreeSet::new()) else {
        return Value::Null;
    };
    let mut out = Map::new();
    for (name, value) in members {
        match name.as_str() {
            "aWSAccountId" => {
                out.insert("AWSAccountId".to_string(), value);
            }
            "creationDate" | "deletionDate" | "validTo" => {
                out.insert(name, date_of_seconds(&value));
            }
            _ => {
                out.insert(name, value);
            }
        }
    }
    Value::Object(out)
}

/// An answer's epoch seconds as CloudTrail writes a response date.
fn date_of_seconds(value: &Value) -> Value {
    match value.as_f64() {
        // Whole milliseconds of a date after 1970: the cast cannot overflow.
        #[allow(clippy::cast_possible_truncation)]
        Some(seconds) => Value::String(format_response_date((seconds * 1000.0).round() as i64)),
        None => value.clone(),
    }
}

/// ScheduleKeyDeletion's answer as CloudTrail records it: the key ARN, the deletion date
/// (absent while a multi-Region primary waits for its replicas), the state and window.
fn scheduled_deletion(key: &KeyRecord) -> Value {
    let mut out = Map::new();
    out.insert("keyId".to_string(), Value::String(key.arn.clone()));
    if let Some(ms) = key.deletion_ms {
        out.insert("deletionDate".to_string(), Value::String(format_response_date(ms)));
    }
    out.insert("keyState".to_string(), Value::String(key.state.as_str().to_string()));
    let window = key.pending_window_days.unwrap_or(30);
    out.insert("pendingWindowInDays".to_string(), Value::from(window));
    Value::Object(out)
}
