//! Hostile bodies for the JSON 1.1 decoder and the model validator, and ListSecrets filters
//! (issue 19, item 4): the property-based half of the fuzzing, run by every `cargo test`;
//! the coverage-guided half is `fuzz/` (`scripts/fuzz.sh`). Whatever the body, validation
//! answers with a client error and never panics, and a body it accepts decodes or is
//! refused with SerializationException.

use coffer_core::ErrorCode;
use coffer_wire::model::ServiceModel;
use coffer_wire::validate::validate_input;
use proptest::prelude::*;
use serde_json::{Value, json};

mod support {
    pub mod list_filters;
}

/// Member names the two models use, so generated bodies reach past the top level.
const MEMBERS: &[&str] = &[
    "Name",
    "SecretId",
    "SecretString",
    "SecretBinary",
    "Description",
    "KmsKeyId",
    "Tags",
    "Key",
    "Value",
    "Values",
    "Filters",
    "MaxResults",
    "NextToken",
    "VersionId",
    "VersionStage",
    "VersionStages",
    "ClientRequestToken",
    "RecoveryWindowInDays",
    "ForceDeleteWithoutRecovery",
    "SecretIdList",
    "ResourcePolicy",
    "KeyId",
    "Plaintext",
    "CiphertextBlob",
    "EncryptionContext",
    "GrantTokens",
    "KeySpec",
    "NumberOfBytes",
    "AliasName",
    "TargetKeyId",
    "Policy",
    "PasswordLength",
    "ExcludeCharacters",
    "SortOrder",
    "IncludePlannedDeletion",
    "MoveToVersionId",
    "RemoveFromVersionId",
    "AddReplicaRegions",
    "Region",
    "PendingWindowInDays",
    "Bogus",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        Just(json!(1e300)),
        Just(json!(-1)),
        ".{0,40}".prop_map(Value::from),
        "[A-Za-z0-9+/=]{0,40}".prop_map(Value::from),
        Just(Value::from("a".repeat(70_000))),
        Just(json!("arn:aws:secretsmanager:us-east-1:111122223333:secret:x-AbCdEf")),
        Just(json!("alias/aws/secretsmanager")),
    ]
}

fn body() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![prop::sample::select(MEMBERS).prop_map(str::to_owned), ".{0,10}"],
                inner,
                0..6,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn every_operation() -> Vec<(&'static ServiceModel, String)> {
    [ServiceModel::secretsmanager(), ServiceModel::kms()]
        .into_iter()
        .flat_map(|m| m.operation_names().map(move |op| (m, op.to_owned())).collect::<Vec<_>>())
        .collect()
}

/// What validation may answer: the client's fault, in AWS's words, never a server fault.
fn client_error(code: ErrorCode) -> bool {
    !matches!(code, ErrorCode::InternalServiceError | ErrorCode::UnknownOperation)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn any_body_for_any_operation_is_validated_without_panicking(value in body(), pick in any::<usize>()) {
        let operations = every_operation();
        let (model, operation) = &operations[pick % operations.len()];
        if let Err(e) = validate_input(model, operation, &value) {
            prop_assert!(client_error(e.code), "{operation}: {:?} {}", e.code, e.message);
        }
    }

    #[test]
    fn any_bytes_as_a_body_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300), pick in any::<usize>()) {
        let operations = every_operation();
        let (model, operation) = &operations[pick % operations.len()];
        if let Ok(value) = serde_json::from_slice::<Value>(&bytes) {
            let _ = validate_input(model, operation, &value);
        }
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let _ = coffer_wire::protocol::parse_target(text);
        }
    }

    #[test]
    fn list_secrets_filters_validate_decode_and_match_without_panicking(
        filters in prop::collection::vec(
            (
                prop_oneof![
                    prop::sample::select(vec!["name", "description", "tag-key", "tag-value", "primary-region", "owning-service", "all"]).prop_map(str::to_owned),
                    ".{0,12}",
                ],
                prop::collection::vec(prop_oneof![".{0,12}", "!?[a-z/_+=.@-]{0,12}"], 0..4),
            ),
            0..5,
        ),
    ) {
        let value = json!({
            "Filters": filters.iter().map(|(k, v)| json!({"Key": k, "Values": v})).collect::<Vec<_>>()
        });
        support::list_filters::validate_decode_and_match(value);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// STS's handlers read a form through `FormValues` (parsed once): whatever the form,
    /// every name reads as `form_value` (a scan per lookup) reads it.
    #[test]
    fn form_values_parsed_once_read_as_a_scan_per_name_reads(
        form in "[AB.=&%+4a1zé]{0,40}",
        names in prop::collection::vec("[AB.=%+4a1é]{0,3}", 1..6),
    ) {
        use coffer_wire::query_form::{Form, FormValues, form_value};
        let values = FormValues::parse(&form);
        // The trail's request parameters and IAM's handlers read `Form`: the same values.
        let parsed = Form::parse(form.as_bytes());
        for name in &names {
            prop_assert_eq!(values.value(name), form_value(&form, name), "{:?} in {:?}", name, form);
            prop_assert_eq!(parsed.get(name).map(str::to_string), form_value(&form, name), "{:?} in {:?}", name, form);
        }
    }
}
