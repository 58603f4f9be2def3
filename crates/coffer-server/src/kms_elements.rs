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
/// (their answers are empty or hold the key id alone). The KMS Developer Guide says so of
/// DisableKey, EnableKey, EnableKeyRotation and UpdateAlias; its examples of the others
/// predate December 2022, and the same rule is taken for them.
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

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_audit::event::{EVENT_VERSION, UserIdentity};

    const KEY: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";
    const ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    fn event(source: &str, name: &str, request: Value) -> Event {
        Event {
            event_version: EVENT_VERSION.into(),
            user_identity: UserIdentity::default(),
            event_time: "2026-01-01T00:00:00Z".into(),
            event_source: source.into(),
            event_name: name.into(),
            aws_region: "us-east-1".into(),
            source_ip_address: "127.0.0.1".into(),
            user_agent: "test".into(),
            error_code: None,
            error_message: None,
            request_parameters: request,
            response_elements: Value::Null,
            request_id: None,
            event_id: "e".into(),
            read_only: false,
            resources: vec![],
            event_type: "AwsApiCall".into(),
            management_event: true,
            recipient_account_id: "111122223333".into(),
            session_credential_from_console: None,
            event_category: "Management".into(),
        }
    }

    fn scope() -> Scope {
        Scope { account: "111122223333".into(), region: "us-east-1".into() }
    }

    #[test]
    fn a_key_operation_without_a_key_record_takes_the_key_the_request_named() {
        for (name, member, named) in [
            ("TagResource", "keyId", KEY),
            ("UpdateKeyDescription", "keyId", ARN),
            ("CreateAlias", "targetKeyId", KEY),
        ] {
            let mut e = event(KMS_SOURCE, name, json!({ member: named }));
            complete_kms_write(&mut e, &(), &scope());
            assert_eq!(e.response_elements, json!({ "keyId": ARN }), "{name}");
            assert_eq!(e.resources.len(), 1, "{name}");
            assert_eq!(
                (e.resources[0].arn.as_str(), e.resources[0].kind.as_str()),
                (ARN, KEY_TYPE)
            );
            assert_eq!(e.resources[0].account_id.as_deref(), Some("111122223333"));
        }
    }

    #[test]
    fn an_alias_an_unlisted_write_or_another_service_is_left_as_it_is() {
        let cases = [
            event(KMS_SOURCE, "TagResource", json!({ "keyId": "alias/mine" })),
            event(KMS_SOURCE, "DeleteAlias", json!({ "aliasName": "alias/mine" })),
            event(KMS_SOURCE, "ReplicateKey", json!({ "keyId": KEY })),
            event("secretsmanager.amazonaws.com", "TagResource", json!({ "keyId": KEY })),
        ];
        for mut e in cases {
            let before = e.clone();
            complete_kms_write(&mut e, &(), &scope());
            assert_eq!(e, before, "{}", e.event_name);
        }
    }

    #[test]
    fn a_refused_write_gets_no_elements() {
        let mut e = event(KMS_SOURCE, "DisableKey", json!({ "keyId": KEY }));
        e.error_code = Some("NotFoundException".into());
        complete_kms_write(&mut e, &(), &scope());
        assert_eq!(e.response_elements, Value::Null);
        assert!(e.resources.is_empty());
    }

    #[test]
    fn answer_dates_take_cloudtrails_response_form() {
        assert_eq!(date_of_seconds(&json!(1_660_171_107.0)), json!("Aug 10, 2022, 10:38:27 PM"));
        assert_eq!(date_of_seconds(&json!("x")), json!("x"));
    }
}
