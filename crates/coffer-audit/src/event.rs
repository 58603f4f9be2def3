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
    // ImportKeyMaterial's wrapped material and GetParametersForImport's token (which
    // carries the wrapping private key): CloudTrail records neither.
    "EncryptedKeyMaterial",
    "ImportToken",
    // IAM's and STS's credentials (their events are built from forms and handlers'
    // values, not a model's shapes): a secret access key, a session token (CloudTrail
    // records it; Coffer keeps only its hash anywhere it stores it, so not in the trail
    // either), a web identity token or SAML assertion, passwords, private keys, MFA codes.
    "SecretAccessKey",
    "SessionToken",
    "WebIdentityToken",
    "SAMLAssertion",
    "Password",
    "OldPassword",
    "NewPassword",
    "PrivateKey",
    "AddPrivateKey",
    "TokenCode",
    "TradeInToken",
    "ServicePassword",
    "ServiceCredentialSecret",
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
    /// For a federated user: the IAM user that issued its session (`sessionIssuer`) and
    /// when (`attributes`), in CloudTrail's shape.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub session_context: Option<serde_json::Value>,
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
    /// `"true"` on a call made through the console, as CloudTrail marks one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub session_credential_from_console: Option<String>,
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

    /// Every name a ResourceName lookup matches: the names of the resources LookupEvents
    /// lists for the event (`listed::listed_resources`: the ARNs in `resources`, and the
    /// users, roles, policies, access keys and keys of IAM, STS and KMS events), the
    /// identifiers named in the request parameters and response elements, and those of
    /// the IAM entity a call created or answered (`user`, `role`, `group`, `policy`).
    pub fn resource_names(&self) -> BTreeSet<String> {
        let mut names: BTreeSet<String> =
            crate::listed::listed_resources(self).into_iter().map(|r| r.name).collect();
        let mut add = |doc: &Value| {
            if let Value::Object(map) = doc {
                for key in RESOURCE_MEMBERS {
                    if let Some(Value::String(s)) = map.get(*key) {
                        names.insert(s.clone());
                    }
                }
            }
        };
        for doc in [&self.request_parameters, &self.response_elements] {
            add(doc);
        }
        if let Value::Object(map) = &self.response_elements {
            for entity in IAM_ENTITY_ELEMENTS {
                if let Some(member) = map.get(*entity) {
                    add(member);
                }
            }
        }
        names
    }
}

/// Request and response members (after camel-casing) that name the resource a call is on:
/// Secrets Manager's and KMS's, and IAM's and STS's users, roles, groups, policies and
/// OIDC providers, which CloudTrail records as an IAM call's resources (sts15: an IAM
/// call was found by none of them).
const RESOURCE_MEMBERS: &[&str] = &[
    "secretId",
    "name",
    "arn",
    "aRN",
    "keyId",
    "targetKeyId",
    "aliasName",
    "userName",
    "roleName",
    "groupName",
    "policyArn",
    "roleArn",
    "openIDConnectProviderArn",
];

/// The response elements (after camel-casing) that hold the IAM entity a call created or
/// answered, whose name and ARN name the call's resource too (CreatePolicy's policy is
/// named only there).
const IAM_ENTITY_ELEMENTS: &[&str] = &["user", "role", "group", "policy"];

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
///
/// Names compare without regard to case (`secretString` is removed like `SecretString`):
/// what reaches here should already be the members of the model only
/// (`ServiceModel::input_members_only`), and this keeps a miss there from being a leak.
pub fn redact_parameters(value: &Value, sensitive: &BTreeSet<String>) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                if is_redacted(k, sensitive) {
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

/// Whether member `name` is never recorded: sensitive in the model or always redacted,
/// compared without regard to case.
fn is_redacted(name: &str, sensitive: &BTreeSet<String>) -> bool {
    sensitive.contains(name)
        || ALWAYS_REDACTED.iter().any(|r| r.eq_ignore_ascii_case(name))
        || sensitive.iter().any(|s| s.eq_ignore_ascii_case(name))
}

/// The longest string (in bytes) an event records of one request parameter; longer ones
/// are cut at a character boundary and end with [`TRUNCATED`].
pub const MAX_PARAMETER_BYTES: usize = 1024;
/// The most bytes an event's request parameters take, as JSON, for a call that ran.
pub const MAX_PARAMETERS_BYTES: usize = 10 * 1024;
/// The same for a call that failed (denied, invalid, not found): what it asked for
/// matters less than that it was refused, and a refused call costs its caller nothing.
pub const MAX_FAILED_PARAMETERS_BYTES: usize = 2 * 1024;
/// Ends a string cut to [`MAX_PARAMETER_BYTES`].
pub const TRUNCATED: &str = "...(truncated)";
/// The member that lists the top-level parameters left out to keep an event within its cap.
pub const OMITTED_MEMBER: &str = "omittedParameters";

/// Request parameters bounded for the trail: every string (map keys too) at most
/// [`MAX_PARAMETER_BYTES`], then whole top-level members left out, largest first, until
/// the JSON is at most `max_bytes` (their names listed under [`OMITTED_MEMBER`]). Members
/// that name the resource (`secretId`, `name`, `keyId`, ...) are kept: LookupEvents finds
/// events by them, and each is one capped string. Any caller can make a request as large
/// as the body limit, so without this one denied call would write a megabyte to the trail.
pub fn cap_parameters(value: Value, max_bytes: usize) -> Value {
    let value = cap_strings(value);
    let Value::Object(mut map) = value else {
        return if json_len(&value) <= max_bytes { value } else { Value::Null };
    };
    let mut omitted = Vec::new();
    while json_len_map(&map) > max_bytes {
        let largest = map
            .iter()
            .filter(|(k, _)| {
                !RESOURCE_MEMBERS.contains(&k.as_str()) && k.as_str() != OMITTED_MEMBER
            })
            .max_by_key(|(_, v)| json_len(v))
            .map(|(k, _)| k.clone());
        let Some(largest) = largest else { break };
        map.remove(&largest);
        omitted.push(Value::String(largest));
        map.insert(OMITTED_MEMBER.to_string(), Value::Array(omitted.clone()));
    }
    Value::Object(map)
}

fn cap_strings(mut value: Value) -> Value {
    cap_strings_in_place(&mut value);
    value
}

/// [`cap_strings`] in place: nearly every string is short already, so only an object
/// with a key to cut is rebuilt (as before, keys cut alike are merged, the later kept).
fn cap_strings_in_place(value: &mut Value) {
    match value {
        Value::String(s) if s.len() > MAX_PARAMETER_BYTES => *s = cap_string(std::mem::take(s)),
        Value::Array(items) => items.iter_mut().for_each(cap_strings_in_place),
        Value::Object(map) if map.keys().any(|k| k.len() > MAX_PARAMETER_BYTES) => {
            *map = std::mem::take(map)
                .into_iter()
                .map(|(k, mut v)| {
                    cap_strings_in_place(&mut v);
                    (cap_string(k), v)
                })
                .collect();
        }
        Value::Object(map) => map.values_mut().for_each(cap_strings_in_place),
        _ => {}
    }
}

/// `s` cut to [`MAX_PARAMETER_BYTES`] at a character boundary, ending with [`TRUNCATED`]
/// when cut. Also for error messages, which may quote what the caller sent.
pub fn cap_string(mut s: String) -> String {
    if s.len() <= MAX_PARAMETER_BYTES {
        return s;
    }
    let mut end = MAX_PARAMETER_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push_str(TRUNCATED);
    s
}

fn json_len(value: &Value) -> usize {
    json_len_of(value)
}

fn json_len_map(map: &Map<String, Value>) -> usize {
    json_len_of(map)
}

/// The length of `value`'s compact JSON, counted as it is written rather than written
/// into a buffer only to be measured.
fn json_len_of(value: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value).map_or(usize::MAX, |()| count.0)
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
                session_context: None,
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
            session_credential_from_console: None,
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
    fn redaction_ignores_case() {
        let sensitive: BTreeSet<String> = ["SecretString".to_string()].into();
        let request =
            json!({"secretString": "a", "SECRETBINARY": "b", "plaintext": "c", "Name": "n"});
        assert_eq!(redact_parameters(&request, &sensitive), json!({"name": "n"}));
    }

    #[test]
    fn parameters_are_capped_per_string_and_in_total() {
        let long = "é".repeat(2000);
        let capped = cap_parameters(json!({"secretId": long, "list": [long.clone()]}), 1 << 20);
        let id = capped["secretId"].as_str().unwrap();
        assert!(id.len() <= MAX_PARAMETER_BYTES + TRUNCATED.len() && id.ends_with(TRUNCATED));
        assert!(capped["list"][0].as_str().unwrap().ends_with(TRUNCATED));
        // Too large as a whole: the largest members go first, identifiers stay.
        let many: Vec<Value> =
            (0..100).map(|i| json!({"key": format!("k{i}"), "value": "v".repeat(500)})).collect();
        let big = json!({"name": "db", "description": "short", "tags": many});
        let capped = cap_parameters(big, 2048);
        assert!(serde_json::to_vec(&capped).unwrap().len() <= 2048);
        assert_eq!(capped["name"], "db");
        assert_eq!(capped["description"], "short");
        assert_eq!(capped[OMITTED_MEMBER], json!(["tags"]));
        assert_eq!(cap_parameters(Value::Null, 10), Value::Null);
        // Map keys are strings too.
        let key = "k".repeat(5000);
        let capped = cap_parameters(json!({"encryptionContext": {key: "v"}}), 1 << 20);
        let kept = capped["encryptionContext"].as_object().unwrap();
        assert!(kept.keys().all(|k| k.len() <= MAX_PARAMETER_BYTES + TRUNCATED.len()));
    }

    /// The capped size is the length of the JSON written, escapes and multi-byte
    /// characters included; short strings and keys come through unchanged.
    #[test]
    fn the_measured_length_is_the_written_length_and_short_parameters_are_kept() {
        let v = json!({"a\"b": ["é\n\u{1}", 1.5, null, {"k": true}], "name": "x"});
        assert_eq!(json_len(&v), serde_json::to_vec(&v).unwrap().len());
        assert_eq!(json_len_map(v.as_object().unwrap()), serde_json::to_vec(&v).unwrap().len());
        assert_eq!(cap_parameters(v.clone(), 1 << 20), v);
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
