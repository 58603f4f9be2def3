//! Model-driven validation of request bodies: AWS's error codes and messages, to the letter.

use coffer_core::{AwsError, ErrorCode};
use coffer_wire::model::{ServiceModel, compile_java_pattern};
use coffer_wire::validate::validate_input;
use serde_json::{Value, json};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

fn sm(operation: &str, body: Value) -> Result<(), AwsError> {
    validate_input(ServiceModel::secretsmanager(), operation, &body)
}

fn kms(operation: &str, body: Value) -> Result<(), AwsError> {
    validate_input(ServiceModel::kms(), operation, &body)
}

/// The message of a ValidationException; fails the test on any other outcome.
fn validation_message(result: Result<(), AwsError>) -> String {
    let err = result.expect_err("expected a ValidationException");
    assert_eq!(err.code, ErrorCode::Validation, "{err}");
    err.message
}

fn serialization_message(result: Result<(), AwsError>) -> String {
    let err = result.expect_err("expected a SerializationException");
    assert_eq!(err.code, ErrorCode::Serialization, "{err}");
    err.message
}

#[test]
fn create_secret_with_a_513_character_name_is_rejected() {
    let name = "n".repeat(513);
    assert_eq!(
        validation_message(sm("CreateSecret", json!({ "Name": name }))),
        format!(
            "1 validation error detected: Value '{name}' at 'name' failed to satisfy constraint: \
             Member must have length less than or equal to 512"
        )
    );
}

#[test]
fn create_secret_with_a_512_character_name_passes() {
    sm("CreateSecret", json!({ "Name": "n".repeat(512) })).unwrap();
}

#[test]
fn create_secret_with_an_empty_name_is_rejected() {
    assert_eq!(
        validation_message(sm("CreateSecret", json!({ "Name": "" }))),
        "1 validation error detected: Value '' at 'name' failed to satisfy constraint: \
         Member must have length greater than or equal to 1"
    );
}

#[test]
fn string_length_counts_code_points_not_bytes() {
    // 512 two-byte characters are 1024 bytes but within the 512 limit.
    sm("CreateSecret", json!({ "Name": "é".repeat(512) })).unwrap();
}

#[test]
fn create_secret_with_a_31_character_client_request_token_is_rejected() {
    let token = "t".repeat(31);
    assert_eq!(
        validation_message(sm("CreateSecret", json!({ "Name": "a", "ClientRequestToken": token }))),
        format!(
            "1 validation error detected: Value '{token}' at 'clientRequestToken' failed to \
             satisfy constraint: Member must have length greater than or equal to 32"
        )
    );
}

#[test]
fn an_oversized_secret_string_is_rejected_without_echoing_it() {
    let secret = "s".repeat(65537);
    let message =
        validation_message(sm("CreateSecret", json!({ "Name": "a", "SecretString": secret })));
    assert_eq!(
        message,
        "1 validation error detected: Value '*** Sensitive Data Redacted ***' at 'secretString' \
         failed to satisfy constraint: Member must have length less than or equal to 65536"
    );
    assert!(!message.contains("sss"));
}

#[test]
fn a_description_of_2049_characters_is_rejected() {
    let description = "d".repeat(2049);
    assert_eq!(
        validation_message(sm("CreateSecret", json!({ "Name": "a", "Description": description }))),
        format!(
            "1 validation error detected: Value '{description}' at 'description' failed to \
             satisfy constraint: Member must have length less than or equal to 2048"
        )
    );
}

#[test]
fn several_violations_are_reported_together_in_model_order() {
    let body = json!({ "Description": "d".repeat(2049), "Name": "" });
    assert_eq!(
        validation_message(sm("CreateSecret", body)),
        format!(
            "2 validation errors detected: Value '' at 'name' failed to satisfy constraint: \
             Member must have length greater than or equal to 1; Value '{}' at 'description' \
             failed to satisfy constraint: Member must have length less than or equal to 2048",
            "d".repeat(2049)
        )
    );
}

#[test]
fn get_secret_value_without_secret_id_is_rejected() {
    assert_eq!(
        validation_message(sm("GetSecretValue", json!({}))),
        "1 validation error detected: Value null at 'secretId' failed to satisfy constraint: \
         Member must not be null"
    );
}

#[test]
fn a_null_member_counts_as_absent() {
    assert_eq!(
        validation_message(sm("GetSecretValue", json!({ "SecretId": null }))),
        "1 validation error detected: Value null at 'secretId' failed to satisfy constraint: \
         Member must not be null"
    );
    sm("ListSecrets", json!({ "MaxResults": null, "Filters": null })).unwrap();
}

#[test]
fn list_secrets_max_results_must_be_between_1_and_100() {
    assert_eq!(
        validation_message(sm("ListSecrets", json!({ "MaxResults": 0 }))),
        "1 validation error detected: Value '0' at 'maxResults' failed to satisfy constraint: \
         Member must have value greater than or equal to 1"
    );
    assert_eq!(
        validation_message(sm("ListSecrets", json!({ "MaxResults": 101 }))),
        "1 validation error detected: Value '101' at 'maxResults' failed to satisfy constraint: \
         Member must have value less than or equal to 100"
    );
    sm("ListSecrets", json!({ "MaxResults": 1 })).unwrap();
    sm("ListSecrets", json!({ "MaxResults": 100 })).unwrap();
}

#[test]
fn a_sort_order_outside_the_enum_is_rejected() {
    assert_eq!(
        validation_message(sm("ListSecrets", json!({ "SortOrder": "sideways" }))),
        "1 validation error detected: Value 'sideways' at 'sortOrder' failed to satisfy \
         constraint: Member must satisfy enum value set: [asc, desc]"
    );
}

#[test]
fn a_filter_value_with_a_star_fails_the_pattern() {
    let body = json!({ "Filters": [{ "Key": "name", "Values": ["good", "bad*value"] }] });
    assert_eq!(
        validation_message(sm("ListSecrets", body)),
        concat!(
            "1 validation error detected: Value 'bad*value' at 'filters.1.member.values.2.member' ",
            r"failed to satisfy constraint: Member must satisfy regular expression pattern: ",
            r"^\!?[a-zA-Z0-9 :_@\/\+\=\.\-\!]*$"
        )
    );
}

#[test]
fn filter_values_allowed_by_the_pattern_pass() {
    let body =
        json!({ "Filters": [{ "Key": "all", "Values": ["!prod", "a b:c_d@e/f+g=h.i-j", ""] }] });
    sm("ListSecrets", body).unwrap();
}

#[test]
fn a_filter_key_outside_the_enum_is_rejected() {
    let body = json!({ "Filters": [{ "Key": "colour", "Values": ["red"] }] });
    assert_eq!(
        validation_message(sm("ListSecrets", body)),
        "1 validation error detected: Value 'colour' at 'filters.1.member.key' failed to \
         satisfy constraint: Member must satisfy enum value set: \
         [description, name, tag-key, tag-value, primary-region, owning-service, all]"
    );
}

#[test]
fn eleven_filters_are_too_many() {
    let filters: Vec<Value> = (0..11).map(|_| json!({ "Key": "name", "Values": ["x"] })).collect();
    let rendered = ["{Key: name, Values: [x]}"; 11].join(", ");
    assert_eq!(
        validation_message(sm("ListSecrets", json!({ "Filters": filters }))),
        format!(
            "1 validation error detected: Value '[{rendered}]' at 'filters' failed to satisfy \
             constraint: Member must have length less than or equal to 10"
        )
    );
}

#[test]
fn violations_inside_list_items_use_one_based_member_paths() {
    let body =
        json!({ "Name": "a", "Tags": [{ "Key": "ok", "Value": "" }, { "Key": "", "Value": "v" }] });
    assert_eq!(
        validation_message(sm("CreateSecret", body)),
        "1 validation error detected: Value '' at 'tags.2.member.key' failed to satisfy \
         constraint: Member must have length greater than or equal to 1"
    );
}

#[test]
fn an_empty_list_below_its_minimum_renders_as_brackets() {
    let body =
        json!({ "SecretId": "a", "VersionStage": "AWSCURRENT", "RemoveFromVersionId": null });
    sm("UpdateSecretVersionStage", body).unwrap();
    assert_eq!(
        validation_message(sm(
            "RemoveRegionsFromReplication",
            json!({ "SecretId": "a", "RemoveReplicaRegions": [] })
        )),
        "1 validation error detected: Value '[]' at 'removeReplicaRegions' failed to satisfy \
         constraint: Member must have length greater than or equal to 1"
    );
}

#[test]
fn tags_given_as_an_object_are_a_serialization_error() {
    let message = serialization_message(sm(
        "CreateSecret",
        json!({ "Name": "a", "Tags": { "Key": "k", "Value": "v" } }),
    ));
    assert_eq!(message, "Expected a list at 'tags', found an object");
}

#[test]
fn secret_binary_that_is_not_base64_is_a_serialization_error() {
    let message = serialization_message(sm(
        "CreateSecret",
        json!({ "Name": "a", "SecretBinary": "not base64!" }),
    ));
    assert_eq!(message, "Invalid base64 value at 'secretBinary'");
}

#[test]
fn secret_binary_accepts_base64_with_or_without_padding() {
    sm("CreateSecret", json!({ "Name": "a", "SecretBinary": "AAEC/w==" })).unwrap();
    sm("CreateSecret", json!({ "Name": "a", "SecretBinary": "AAEC/w" })).unwrap();
}

#[test]
fn secret_binary_length_counts_decoded_bytes() {
    // 65536 bytes encode to 87384 base64 characters, yet are within the limit.
    use base64::Engine;
    let at_limit = base64::engine::general_purpose::STANDARD.encode(vec![7u8; 65536]);
    sm("CreateSecret", json!({ "Name": "a", "SecretBinary": at_limit })).unwrap();
    let over = base64::engine::general_purpose::STANDARD.encode(vec![7u8; 65537]);
    let message =
        validation_message(sm("CreateSecret", json!({ "Name": "a", "SecretBinary": over })));
    assert_eq!(
        message,
        "1 validation error detected: Value '*** Sensitive Data Redacted ***' at 'secretBinary' \
         failed to satisfy constraint: Member must have length less than or equal to 65536"
    );
}

#[test]
fn a_number_for_secret_id_is_a_serialization_error() {
    let message = serialization_message(sm("GetSecretValue", json!({ "SecretId": 42 })));
    assert_eq!(message, "Expected a string at 'secretId', found a number");
}

#[test]
fn a_sensitive_member_of_the_wrong_type_is_not_echoed() {
    let message = serialization_message(sm(
        "PutSecretValue",
        json!({ "SecretId": "a", "SecretString": 123456789 }),
    ));
    assert!(!message.contains("123456789"), "{message}");
}

#[test]
fn integers_must_be_whole_numbers_within_range() {
    for bad in [json!(1.5), json!(2147483648_i64), json!("5"), json!(true)] {
        serialization_message(sm("ListSecrets", json!({ "MaxResults": bad })));
    }
    // A long accepts values beyond the i32 range (and the range check then applies).
    let message =
        validation_message(sm("GetRandomPassword", json!({ "PasswordLength": 4_000_000_000_i64 })));
    assert!(message.ends_with("Member must have value less than or equal to 4096"), "{message}");
}

#[test]
fn booleans_must_be_json_booleans() {
    let message =
        serialization_message(sm("ListSecrets", json!({ "IncludePlannedDeletion": "true" })));
    assert_eq!(message, "Expected a boolean at 'includePlannedDeletion', found a string");
}

#[test]
fn a_body_that_is_not_an_object_is_a_serialization_error() {
    for body in [json!([]), json!("x"), json!(1), json!(null)] {
        serialization_message(sm("ListSecrets", body));
    }
}

#[test]
fn a_null_list_item_is_a_serialization_error() {
    serialization_message(sm("ListSecrets", json!({ "Filters": [null] })));
}

#[test]
fn unknown_members_are_ignored() {
    sm("GetSecretValue", json!({ "SecretId": "a", "Bogus": [1, 2, 3], "secretId": 7 })).unwrap();
}

#[test]
fn a_fully_valid_create_secret_passes() {
    let body = json!({
        "Name": "prod/db/password",
        "ClientRequestToken": TOKEN,
        "Description": "The database password",
        "KmsKeyId": "alias/aws/secretsmanager",
        "SecretString": "{\"password\":\"hunter2\"}",
        "Tags": [{ "Key": "team", "Value": "infra" }, { "Key": "env", "Value": "" }],
        "AddReplicaRegions": [{ "Region": "eu-west-1", "KmsKeyId": "k" }],
        "ForceOverwriteReplicaSecret": false
    });
    sm("CreateSecret", body).unwrap();
}

#[test]
fn timestamps_accept_epoch_seconds_or_strings() {
    // Timestamps appear only in responses of Secrets Manager; KMS takes one in input.
    let model = ServiceModel::kms();
    assert!(model.has_operation("ImportKeyMaterial"));
    let body = |valid_to: Value| {
        json!({
            "KeyId": "k",
            "ImportToken": "AAAA",
            "EncryptedKeyMaterial": "AAAA",
            "ValidTo": valid_to
        })
    };
    kms("ImportKeyMaterial", body(json!(1_700_000_000.5))).unwrap();
    kms("ImportKeyMaterial", body(json!("2030-01-01T00:00:00Z"))).unwrap();
    serialization_message(kms("ImportKeyMaterial", body(json!([1]))));
}

#[test]
fn an_unknown_operation_is_reported_as_such() {
    let err = sm("FrobnicateSecret", json!({})).unwrap_err();
    assert_eq!(err.code, ErrorCode::UnknownOperation);
}

#[test]
fn kms_encrypt_with_more_than_4096_bytes_of_plaintext_is_rejected_without_echoing_it() {
    use base64::Engine;
    let plaintext = base64::engine::general_purpose::STANDARD.encode(vec![b'p'; 4097]);
    let message =
        validation_message(kms("Encrypt", json!({ "KeyId": "k", "Plaintext": plaintext })));
    assert_eq!(
        message,
        // KMS names no value at all for a sensitive member, as the real service answers.
        "1 validation error detected: Value at 'plaintext' \
         failed to satisfy constraint: Member must have length less than or equal to 4096"
    );
    assert!(!message.contains(&plaintext[..16]));
}

#[test]
fn kms_encrypt_with_a_too_long_key_id_and_no_plaintext_reports_both() {
    let key_id = "k".repeat(2049);
    assert_eq!(
        validation_message(kms("Encrypt", json!({ "KeyId": key_id }))),
        format!(
            "2 validation errors detected: Value '{key_id}' at 'keyId' failed to satisfy \
             constraint: Member must have length less than or equal to 2048; Value null at \
             'plaintext' failed to satisfy constraint: Member must not be null"
        )
    );
}

#[test]
fn kms_encryption_context_is_a_map_of_strings() {
    kms("Encrypt", json!({ "KeyId": "k", "Plaintext": "AA==", "EncryptionContext": { "a": "b" } }))
        .unwrap();
    serialization_message(kms(
        "Encrypt",
        json!({ "KeyId": "k", "Plaintext": "AA==", "EncryptionContext": { "a": 1 } }),
    ));
}

#[test]
fn kms_patterns_use_java_ascii_word_characters() {
    // AliasNameType is `^[a-zA-Z0-9:/_-]+$`; KMS account ids are `[0-9]{12}`, matched whole.
    let message = validation_message(kms(
        "CreateAlias",
        json!({ "AliasName": "alias/é", "TargetKeyId": "k" }),
    ));
    assert!(
        message.ends_with(
            "at 'aliasName' failed to satisfy constraint: \
             Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$"
        ),
        "{message}"
    );
    let word = compile_java_pattern(r"[\w]+").unwrap();
    assert!(word.is_match("abc_09"));
    assert!(!word.is_match("abcé"), "Java's \\w is ASCII-only");
    let account = compile_java_pattern("[0-9]{12}").unwrap();
    assert!(account.is_match("123456789012"));
    assert!(!account.is_match("x123456789012"), "AWS matches the whole value");
}

#[test]
fn java_escapes_of_punctuation_are_literals() {
    let re = compile_java_pattern(r"^\!?[a-zA-Z0-9 :_@\/\+\=\.\-\!]*$").unwrap();
    assert!(re.is_match("!a-b.c=d/e+f"));
    assert!(!re.is_match("a*b"));
    assert!(!re.is_match("!!a\\"));
    let angle = compile_java_pattern(r"\<a\>").unwrap();
    assert!(angle.is_match("<a>"));
    let ranges = compile_java_pattern(r"[\u0020-\u00FF]*").unwrap();
    assert!(ranges.is_match("ÿ ~"));
    assert!(!ranges.is_match("\u{100}"));
}

#[test]
fn every_pattern_in_both_models_compiles() {
    for (file, model) in [
        ("secretsmanager-2017-10-17.service-2.json", ServiceModel::secretsmanager()),
        ("kms-2014-11-01.service-2.json", ServiceModel::kms()),
    ] {
        let path = format!("{}/models/{file}", env!("CARGO_MANIFEST_DIR"));
        let raw: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let raw_patterns: Vec<&str> = raw["shapes"]
            .as_object()
            .unwrap()
            .values()
            .filter_map(|shape| shape["pattern"].as_str())
            .collect();
        assert!(!raw_patterns.is_empty());
        for pattern in &raw_patterns {
            if let Err(e) = compile_java_pattern(pattern) {
                panic!("{file}: pattern {pattern} does not compile: {e}");
            }
        }
        let loaded: Vec<_> = model.patterns().collect();
        assert_eq!(loaded.len(), raw_patterns.len(), "{file}");
        assert!(loaded.iter().all(|&(_, compiled)| compiled), "{file}");
    }
}

#[test]
fn both_models_know_their_operations() {
    let sm_model = ServiceModel::secretsmanager();
    assert!(sm_model.has_operation("GetSecretValue"));
    assert!(!sm_model.has_operation("Encrypt"));
    assert_eq!(sm_model.operation_names().count(), 23);
    let names: Vec<&str> = sm_model.operation_names().collect();
    assert!(names.is_sorted());
    assert!(ServiceModel::kms().has_operation("GenerateDataKey"));
}

#[test]
fn sensitive_members_include_values_tokens_and_nested_members() {
    let sm_model = ServiceModel::secretsmanager();
    assert_eq!(
        sm_model.sensitive_members("PutSecretValue"),
        ["RotationToken", "SecretBinary", "SecretString"]
    );
    assert_eq!(sm_model.sensitive_members("GetRandomPassword"), ["RandomPassword"]);
    assert!(sm_model.sensitive_members("BatchGetSecretValue").contains(&"SecretString".into()));
    assert!(sm_model.sensitive_members("DescribeSecret").is_empty());
    assert!(sm_model.sensitive_members("NoSuchOperation").is_empty());
    let kms_model = ServiceModel::kms();
    assert_eq!(kms_model.sensitive_members("Encrypt"), ["Plaintext"]);
    assert_eq!(kms_model.sensitive_members("GenerateDataKey"), ["Plaintext"]);
}
