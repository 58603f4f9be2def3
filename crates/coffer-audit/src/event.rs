//! The CloudTrail event format, and the redaction that keeps secret values out of it.
//!
//! Field names and their casing follow CloudTrail's record format (`eventVersion`,
//! `sourceIPAddress`, `requestID`, ...). Request parameters and response elements are
//! written as CloudTrail writes them: member names in lower camel case (`SecretId` ->
//! `secretId`, `ARN` -> `aRN`), with every sensitive member removed first.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// The version of the record format written, as CloudTrail numbers it.
pub const EVENT_VERSION: &str = "1.08";

/// Members never written to the trail whatever a model says: secret values, plaintexts,
/// generated passwords and ciphertexts. The models mark most of them sensitive already;
/// this list keeps them out even of shapes a model does not describe.
pub const ALWAYS_REDACTED: &[&str] = &[
    "SecretString",
    "SecretBinary",
    "Plaintext",
    "RandomPassword",
    "CiphertextBlob",
    "CiphertextForRecipient",
    "KeyMaterial",
    "PrivateKeyPlaintext",
    "PrivateKeyCiphertextBlob",
];

/// Who made a call (CloudTrail's `userIdentity`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct UserIdentity {
    /// `IAMUser`, `Root`, `AWSAccount` (unverified callers in `--dev`) or `AWSService`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub principal_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub account_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub access_key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub user_name: Option<String>,
    /// The service acting, for events of background work.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub invoked_by: Option<String>,
}

/// A resource an event refers to (CloudTrail's `resources` entries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    #[serde(rename = "ARN")]
    pub arn: String,
    #[serde(rename = "accountId", skip_serializing_if = "Option::is_none", default)]
    pub account_id: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
}

/// One CloudTrail event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub event_version: String,
    pub user_identity: UserIdentity,
    pub event_time: String,
    pub event_source: String,
    pub event_name: String,
    pub aws_region: String,
    #[serde(rename = "sourceIPAddress")]
    pub source_ip_address: String,
    pub user_agent: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error_message: Option<String>,
    /// Redacted request parameters; `null` when the call had none.
    pub request_parameters: Value,
    /// Redacted response elements; `null` for reads and failures, as CloudTrail writes.
    pub response_elements: Value,
    #[serde(rename = "requestID", skip_serializing_if = "Option::is_none", default)]
    pub request_id: Option<String>,
    #[serde(rename = "eventID")]
    pub event_id: String,
    pub read_only: bool,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub resources: Vec<Resource>,
    /// `AwsApiCall` for calls, `AwsServiceEvent` for background work.
    pub event_type: String,
    pub management_event: bool,
    pub recipient_account_id: String,
    pub event_category: String,
}

impl Event {
    /// The name LookupEvents reports as `Username`: the IAM user's name, `root` for an
    /// account's root identity, else the access key id (unverified callers in `--dev`).
    pub fn username(&self) -> Option<String> {
        let who = &self.user_identity;
        if let Some(name) = &who.user_name {
            return Some(name.clone());
        }
        match who.kind.as_str() {
            "Root" => Some("root".to_string()),
            "AWSService" => who.invoked_by.clone(),
            _ => who.access_key_id.clone(),
        }
    }

    /// Every name a ResourceName lookup matches: the ARNs in `resources` and the
    /// identifiers named in the request parameters and response elements.
    pub fn resource_names(&self) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = self.resources.iter().map(|r| r.arn.clone()).collect();
        for doc in [&self.request_parameters, &self.response_elements] {
            if let Value::Object(map) = doc {
                for key in RESOURCE_MEMBERS {
                    if let Some(Value::String(s)) = map.get(*key) {
                        names.insert(s.clone());
                    }
                }
            }
        }
        names
    }
}

/// Request and response members (after camel-casing) that name the resource a call is on.
const RESOURCE_MEMBERS: &[&str] =
    &["secretId", "name", "arn", "aRN", "keyId", "targetKeyId", "aliasName"];

/// Lower camel case as CloudTrail writes member names: the first letter is lowered, so
/// `SecretId` becomes `secretId`; an all-capital name is lowered whole (`ARN` -> `arn`, as
/// Secrets Manager writes it since 2024, where it once wrote `aRN`).
fn lower_camel(name: &str) -> String {
    if name.chars().all(|c| c.is_ascii_uppercase()) {
        return name.to_ascii_lowercase();
    }
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `value` as CloudTrail records it: every member named in `sensitive` or in
/// [`ALWAYS_REDACTED`] removed at any depth (inside structures, lists and maps), and the
/// remaining member names in lower camel case. `null` stays `null`.
pub fn redact_parameters(value: &Value, sensitive: &BTreeSet<String>) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                if sensitive.contains(k) || ALWAYS_REDACTED.contains(&k.as_str()) {
                    continue;
                }
                out.insert(lower_camel(k), redact_parameters(v, sensitive));
            }
            Value::Object(out)
        }
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| redact_parameters(v, sensitive)).collect())
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Event {
        Event {
            event_version: EVENT_VERSION.into(),
            user_identity: UserIdentity {
                kind: "IAMUser".into(),
                principal_id: Some("AIDAEXAMPLE".into()),
                arn: Some("arn:aws:iam::111122223333:user/alice".into()),
                account_id: Some("111122223333".into()),
                access_key_id: Some("AKIAEXAMPLE".into()),
                user_name: Some("alice".into()),
                invoked_by: None,
            },
            event_time: "2024-05-01T12:00:00Z".into(),
            event_source: "secretsmanager.amazonaws.com".into(),
            event_name: "GetSecretValue".into(),
            aws_region: "us-east-1".into(),
            source_ip_address: "127.0.0.1".into(),
            user_agent: "aws-cli/2".into(),
            error_code: None,
            error_message: None,
            request_parameters: json!({"secretId": "db"}),
            response_elements: Value::Null,
            request_id: Some("r1".into()),
            event_id: "e1".into(),
            read_only: true,
            resources: vec![],
            event_type: "AwsApiCall".into(),
            management_event: true,
            recipient_account_id: "111122223333".into(),
            event_category: "Management".into(),
        }
    }

    #[test]
    fn the_record_uses_cloudtrail_field_names() {
        let v = serde_json::to_value(sample()).unwrap();
        for key in [
            "eventVersion",
            "userIdentity",
            "eventTime",
            "eventSource",
            "eventName",
            "awsRegion",
            "sourceIPAddress",
            "userAgent",
            "requestParameters",
            "responseElements",
            "requestID",
            "eventID",
            "readOnly",
            "eventType",
            "managementEvent",
            "recipientAccountId",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["userIdentity"]["type"], "IAMUser");
        assert_eq!(v["userIdentity"]["accessKeyId"], "AKIAEXAMPLE");
        assert!(v.get("errorCode").is_none());
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, sample());
    }

    #[test]
    fn sensitive_members_are_removed_at_any_depth() {
        let sensitive: BTreeSet<String> = ["Secret".to_string()].into();
        let request = json!({
            "SecretId": "db",
            "SecretString": "hunter2",
            "Nested": {"SecretBinary": "aGk=", "Keep": 1, "Secret": "x"},
            "List": [{"Plaintext": "p", "ARN": "arn"}, {"RandomPassword": "pw"}],
        });
        let out = redact_parameters(&request, &sensitive);
        assert_eq!(
            out,
            json!({"secretId": "db", "nested": {"keep": 1}, "list": [{"arn": "arn"}, {}]})
        );
        let text = out.to_string();
        for secret in ["hunter2", "aGk=", "\"p\"", "pw", "\"x\""] {
            assert!(!text.contains(secret), "{secret} leaked");
        }
        assert_eq!(redact_parameters(&Value::Null, &sensitive), Value::Null);
    }

    #[test]
    fn usernames_and_resource_names_come_from_the_identity_and_parameters() {
        let mut e = sample();
        assert_eq!(e.username().as_deref(), Some("alice"));
        e.user_identity.user_name = None;
        assert_eq!(e.username().as_deref(), Some("AKIAEXAMPLE"));
        e.user_identity.kind = "Root".into();
        assert_eq!(e.username().as_deref(), Some("root"));
        e.response_elements = json!({"arn": "arn:aws:secretsmanager:us-east-1:1:secret:db-x"});
        let names = e.resource_names();
        assert!(names.contains("db"));
        assert!(names.contains("arn:aws:secretsmanager:us-east-1:1:secret:db-x"));
    }
}
