//! Request and response shapes of the Secrets Manager operations Coffer serves.
//!
//! Requests are decoded only after [`crate::validate`] has checked them against
//! the model, so the types here can be plain. Optional response members are
//! omitted, never sent as `null`, because clients test for their presence.

use crate::protocol::{SensitiveBlob, SensitiveString};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The model requires neither member. A tag without `Value` decodes with an empty value
/// (the model allows one, and the CLI's `Key=k` shorthand sends none); one without `Key`
/// decodes with `""`, which the model's length refuses when sent, so the handler can tell
/// it apart and refuse it ([`Tag::has_key`]).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub value: String,
}

impl Tag {
    /// Whether the request gave this tag a key (an explicit `""` never gets past validation).
    pub fn has_key(&self) -> bool {
        !self.key.is_empty()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Filter {
    /// Not required by the model: a filter without a key decodes as `""` (an explicit
    /// `""` fails the model's enum first), and the handler refuses it as AWS does.
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub values: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateSecretRequest {
    pub name: String,
    pub client_request_token: Option<String>,
    pub description: Option<String>,
    pub kms_key_id: Option<String>,
    pub secret_binary: Option<SensitiveBlob>,
    pub secret_string: Option<SensitiveString>,
    pub tags: Option<Vec<Tag>>,
    pub add_replica_regions: Option<Vec<ReplicaRegionType>>,
    pub force_overwrite_replica_secret: Option<bool>,
    #[serde(rename = "Type")]
    pub secret_type: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct UpdateSecretRequest {
    pub secret_id: String,
    pub client_request_token: Option<String>,
    pub description: Option<String>,
    pub kms_key_id: Option<String>,
    pub secret_binary: Option<SensitiveBlob>,
    pub secret_string: Option<SensitiveString>,
    #[serde(rename = "Type")]
    pub secret_type: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PutSecretValueRequest {
    pub secret_id: String,
    pub client_request_token: Option<String>,
    pub secret_binary: Option<SensitiveBlob>,
    pub secret_string: Option<SensitiveString>,
    pub version_stages: Option<Vec<String>>,
    pub rotation_token: Option<SensitiveString>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct GetSecretValueRequest {
    pub secret_id: String,
    pub version_id: Option<String>,
    pub version_stage: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct BatchGetSecretValueRequest {
    pub secret_id_list: Option<Vec<String>>,
    pub filters: Option<Vec<Filter>>,
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SecretIdRequest {
    pub secret_id: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ListSecretsRequest {
    pub include_planned_deletion: Option<bool>,
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
    pub filters: Option<Vec<Filter>>,
    pub sort_order: Option<String>,
    pub sort_by: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ListSecretVersionIdsRequest {
    pub secret_id: String,
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
    pub include_deprecated: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct UpdateSecretVersionStageRequest {
    pub secret_id: String,
    pub version_stage: String,
    pub remove_from_version_id: Option<String>,
    pub move_to_version_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeleteSecretRequest {
    pub secret_id: String,
    pub recovery_window_in_days: Option<i64>,
    pub force_delete_without_recovery: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TagResourceRequest {
    pub secret_id: String,
    pub tags: Vec<Tag>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct UntagResourceRequest {
    pub secret_id: String,
    pub tag_keys: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct GetRandomPasswordRequest {
    pub password_length: Option<i64>,
    pub exclude_characters: Option<String>,
    pub exclude_numbers: Option<bool>,
    pub exclude_punctuation: Option<bool>,
    pub exclude_uppercase: Option<bool>,
    pub exclude_lowercase: Option<bool>,
    pub include_space: Option<bool>,
    pub require_each_included_type: Option<bool>,
}

/// `{ARN, Name}` plus, when a version was made, `VersionId` (and for PutSecretValue `VersionStages`).
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SecretRefResponse {
    #[serde(rename = "ARN")]
    pub arn: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_stages: Option<Vec<String>>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteSecretResponse {
    #[serde(rename = "ARN")]
    pub arn: String,
    pub name: String,
    pub deletion_date: f64,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetSecretValueResponse {
    #[serde(rename = "ARN")]
    pub arn: String,
    pub name: String,
    pub version_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_binary: Option<SensitiveBlob>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_string: Option<SensitiveString>,
    /// Absent, not `[]`, for a version without labels (read by VersionId): the model's
    /// list has at least one member, and AWS leaves the key out for such a version.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub version_stages: Vec<String>,
    pub created_date: f64,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ApiError {
    pub secret_id: String,
    pub error_code: String,
    pub message: String,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct BatchGetSecretValueResponse {
    pub secret_values: Vec<GetSecretValueResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    pub errors: Vec<ApiError>,
}

/// DescribeSecret's answer, also one entry of ListSecrets (which names the stage map differently).
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SecretDescription {
    #[serde(rename = "ARN")]
    pub arn: String,
    pub name: String,
    #[serde(rename = "Type", skip_serializing_if = "Option::is_none")]
    pub secret_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    pub last_changed_date: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_accessed_date: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_date: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<Tag>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_ids_to_stages: Option<BTreeMap<String, Vec<String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_versions_to_stages: Option<BTreeMap<String, Vec<String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owning_service: Option<String>,
    pub created_date: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation_enabled: Option<bool>,
    #[serde(rename = "RotationLambdaARN", skip_serializing_if = "Option::is_none")]
    pub rotation_lambda_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation_rules: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_rotated_date: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_rotation_date: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_secret_rotation_role_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_secret_rotation_metadata: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replication_status: Option<Vec<ReplicationStatus>>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListSecretsResponse {
    pub secret_list: Vec<SecretDescription>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VersionEntry {
    pub version_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_stages: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_accessed_date: Option<f64>,
    pub created_date: f64,
    pub kms_key_ids: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListSecretVersionIdsResponse {
    pub versions: Vec<VersionEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    #[serde(rename = "ARN")]
    pub arn: String,
    pub name: String,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetRandomPasswordResponse {
    pub random_password: SensitiveString,
}

/// TagResource and UntagResource answer `{}`.
#[derive(Debug, Default, Serialize)]
pub struct EmptyResponse {}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PutResourcePolicyRequest {
    pub secret_id: String,
    pub resource_policy: String,
    pub block_public_policy: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ValidateResourcePolicyRequest {
    pub secret_id: Option<String>,
    pub resource_policy: String,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetResourcePolicyResponse {
    #[serde(rename = "ARN")]
    pub arn: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_policy: Option<String>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ValidationErrorsEntry {
    pub check_name: String,
    pub error_message: String,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ValidateResourcePolicyResponse {
    pub policy_validation_passed: bool,
    pub validation_errors: Vec<ValidationErrorsEntry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RotateSecretRequest {
    pub secret_id: String,
    pub client_request_token: Option<String>,
    #[serde(rename = "RotationLambdaARN")]
    pub rotation_lambda_arn: Option<String>,
    pub rotation_rules: Option<serde_json::Value>,
    pub rotate_immediately: Option<bool>,
    pub external_secret_rotation_metadata: Option<serde_json::Value>,
    pub external_secret_rotation_role_arn: Option<String>,
}

/// A region to replicate to, and the key of that region to seal the replica under.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ReplicaRegionType {
    pub region: String,
    pub kms_key_id: Option<String>,
}

/// One replica's entry of `ReplicationStatus`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReplicationStatus {
    pub region: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_accessed_date: Option<f64>,
}

/// CreateSecret's answer: the usual `{ARN, Name, VersionId}` and, with replicas, their status.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateSecretResponse {
    #[serde(flatten)]
    pub secret: SecretRefResponse,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replication_status: Option<Vec<ReplicationStatus>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ReplicateSecretToRegionsRequest {
    pub secret_id: String,
    pub add_replica_regions: Vec<ReplicaRegionType>,
    pub force_overwrite_replica_secret: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RemoveRegionsFromReplicationRequest {
    pub secret_id: String,
    pub remove_replica_regions: Vec<String>,
}

/// ReplicateSecretToRegions' and RemoveRegionsFromReplication's answer: the primary's ARN.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReplicationResponse {
    #[serde(rename = "ARN")]
    pub arn: String,
    pub replication_status: Vec<ReplicationStatus>,
}

/// StopReplicationToReplica's answer: the ARN of the secret promoted.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ArnResponse {
    #[serde(rename = "ARN")]
    pub arn: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::decode_request;
    use serde_json::json;

    /// Members the model does not require decode when absent, so that the handler (not
    /// serde's "missing field" text) decides what their absence means.
    #[test]
    fn members_the_model_does_not_require_may_be_absent() {
        let create: CreateSecretRequest = decode_request(json!({
            "Name": "n",
            "Tags": [{"Key": "k"}, {"Value": "v"}],
            "AddReplicaRegions": [{}],
        }))
        .unwrap();
        let tags = create.tags.unwrap();
        assert_eq!(tags[0], Tag { key: "k".into(), value: String::new() });
        assert!(tags[0].has_key() && !tags[1].has_key());
        assert_eq!(create.add_replica_regions.unwrap()[0].region, "");
        let tag: TagResourceRequest =
            decode_request(json!({"SecretId": "s", "Tags": [{"Value": "v"}]})).unwrap();
        assert!(!tag.tags[0].has_key());
    }
}
