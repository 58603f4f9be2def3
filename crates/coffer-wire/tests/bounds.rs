//! Issue 23: control characters in identifiers and tokens, the tag quota of CreateSecret,
//! and which request members the audit trail may record (`input_members_only`).

use coffer_core::ErrorCode;
use coffer_wire::model::ServiceModel;
use coffer_wire::validate::{TOO_MANY_SECRET_TAGS, validate_input};
use serde_json::{Value, json};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

fn sm(operation: &str, body: Value) -> Result<(), coffer_core::AwsError> {
    validate_input(ServiceModel::secretsmanager(), operation, &body)
}

#[test]
fn control_characters_in_tokens_ids_labels_and_names_are_validation_errors() {
    let nul = format!("{}\u{0}", &TOKEN[..31]);
    let bodies = [
        ("CreateSecret", json!({"Name": "a", "ClientRequestToken": nul})),
        ("CreateSecret", json!({"Name": "a\u{1}"})),
        ("PutSecretValue", json!({"SecretId": "a", "VersionStages": ["L\u{7f}"]})),
        ("GetSecretValue", json!({"SecretId": "a", "VersionId": format!("{TOKEN}\n")})),
        ("ListSecrets", json!({"NextToken": "\u{0}"})),
        ("ListSecretVersionIds", json!({"SecretId": "a", "NextToken": "x\u{1f}"})),
        ("TagResource", json!({"SecretId": "a", "Tags": [{"Key": "k", "Value": "v\u{0}"}]})),
        ("UpdateSecret", json!({"SecretId": "a", "Description": "nul \u{0} inside"})),
    ];
    for (op, body) in bodies {
        let err = sm(op, body.clone()).expect_err(&body.to_string());
        assert_eq!(err.code, ErrorCode::Validation, "{op} {err}");
        assert!(err.message.contains("failed to satisfy constraint"), "{}", err.message);
    }
    // Free text keeps its newlines and tabs; only a NUL is refused there.
    sm("UpdateSecret", json!({"SecretId": "a", "Description": "two\nlines\tand a tab"})).unwrap();
    // Secret values are never checked nor echoed.
    sm("PutSecretValue", json!({"SecretId": "a", "SecretString": "nul \u{0} ok"})).unwrap();
    // KMS key ids and markers.
    let kms = ServiceModel::kms();
    for (op, body) in [
        ("DescribeKey", json!({"KeyId": "alias/x\u{0}"})),
        ("ListAliases", json!({"Marker": "m\u{0}"})),
    ] {
        let err = validate_input(kms, op, &body).unwrap_err();
        assert_eq!(err.code, ErrorCode::Validation, "{op} {err}");
    }
}

#[test]
fn create_secret_refuses_more_than_fifty_tags() {
    let tags = |n: usize| -> Vec<Value> {
        (0..n).map(|i| json!({"Key": format!("k{i}"), "Value": "v"})).collect()
    };
    sm("CreateSecret", json!({"Name": "a", "Tags": tags(50)})).unwrap();
    let err = sm("CreateSecret", json!({"Name": "a", "Tags": tags(51)})).unwrap_err();
    assert_eq!(err.code, ErrorCode::LimitExceeded);
    assert_eq!(err.message, TOO_MANY_SECRET_TAGS);
}

#[test]
fn only_members_of_the_input_shape_are_kept_for_the_trail() {
    let model = ServiceModel::secretsmanager();
    let body = json!({
        "Name": "db",
        "SecretString": "kept here, redacted later",
        "secretString": "unknown: dropped",
        "Padding": "x".repeat(10_000),
        "Tags": [{"Key": "k", "Value": "v", "Extra": "dropped"}, "not a tag"],
        "Description": {"an": "object where a string belongs"},
    });
    let kept = model.input_members_only("CreateSecret", &body);
    assert_eq!(
        kept,
        json!({"Name": "db", "SecretString": "kept here, redacted later",
               "Tags": [{"Key": "k", "Value": "v"}]})
    );
    assert_eq!(model.input_members_only("NoSuchOperation", &body), Value::Null);
    assert_eq!(
        coffer_wire::cloudtrail::input_members_only(&json!({
            "MaxResults": 5, "Junk": "x",
            "LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": "A", "More": 1}]
        })),
        json!({"MaxResults": 5,
               "LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": "A"}]})
    );
}

/// Authorization reads its request condition keys from the operation's own members only
/// (review 17, finding 03): a member the operation does not take is removed, in place, at
/// any depth; what it takes is kept as sent.
#[test]
fn only_an_operations_own_members_are_kept_for_authorization() {
    let model = ServiceModel::secretsmanager();
    let mut body = json!({
        "SecretId": "db",
        "VersionStage": "AWSCURRENT",
        "Tags": [{"Key": "team", "Value": "ops"}],
        "Name": "dev/x",
        "ForceDeleteWithoutRecovery": true,
    });
    model.keep_input_members("GetSecretValue", &mut body);
    assert_eq!(body, json!({"SecretId": "db", "VersionStage": "AWSCURRENT"}));
    // At every depth (review 18, finding 02): a tag keeps its shape's members only, so
    // KMS's spelling of a tag's value does not reach a Secrets Manager authorization.
    let mut body = json!({"Name": "db", "Tags": [{"Key": "team", "TagValue": "ops", "X": 1}],
        "AddReplicaRegions": [{"Region": "eu-west-1", "KmsKeyId": "k", "Y": [1]}]});
    model.keep_input_members("CreateSecret", &mut body);
    assert_eq!(
        body,
        json!({"Name": "db", "Tags": [{"Key": "team"}],
        "AddReplicaRegions": [{"Region": "eu-west-1", "KmsKeyId": "k"}]})
    );
    let mut body = json!({"KeyId": "k", "Tags": [{"TagKey": "a", "TagValue": "b", "Key": "c"}],
        "Constraints": {"EncryptionContextSubset": {"x": "y"}, "Other": {"z": "w"}}});
    ServiceModel::kms().keep_input_members("CreateGrant", &mut body);
    assert_eq!(body, json!({"KeyId": "k", "Constraints": {"EncryptionContextSubset": {"x": "y"}}}));
    let mut body = json!({"KeyId": "k", "Tags": [{"TagKey": "a", "TagValue": "b", "Key": "c"}]});
    ServiceModel::kms().keep_input_members("TagResource", &mut body);
    assert_eq!(body, json!({"KeyId": "k", "Tags": [{"TagKey": "a", "TagValue": "b"}]}));
    let mut body =
        json!({"KeyId": "k", "Operations": ["Decrypt"], "EncryptionContext": {"a": "b"}});
    ServiceModel::kms().keep_input_members("DescribeKey", &mut body);
    assert_eq!(body, json!({"KeyId": "k"}));
    let mut body = json!({"SecretId": "db"});
    model.keep_input_members("NoSuchOperation", &mut body);
    assert_eq!(body, json!({}));
}
