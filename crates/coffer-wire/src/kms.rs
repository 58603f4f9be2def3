//! Request and response shapes of the KMS operations Coffer serves (`TrentService.*`).
//!
//! Requests are decoded only after [`crate::validate`] has checked them against the KMS
//! model. Plaintexts (data keys, Encrypt input, Decrypt output) are [`SensitiveBlob`]s:
//! zeroized on drop and never printed. Optional response members are omitted, never `null`.

use crate::protocol::SensitiveBlob;
use base64::Engine;
use base64::alphabet::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

/// Standard base64, padding optional on input, as the SDKs send blobs.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A non-secret blob (a ciphertext), base64 on the wire.
#[derive(Default, Clone, PartialEq, Eq)]
pub struct Blob(pub Vec<u8>);

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Blob({} bytes)", self.0.len())
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        BASE64
            .decode(text.trim())
            .map(Blob)
            .map_err(|_| serde::de::Error::custom("blob is not valid base64"))
    }
}

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&BASE64.encode(&self.0))
    }
}

/// A key tag as KMS spells it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct Tag {
    #[serde(rename = "TagKey")]
    pub tag_key: String,
    #[serde(rename = "TagValue")]
    pub tag_value: String,
}

/// `{"KeyId": ...}`: the input of EnableKey, DisableKey, CancelKeyDeletion, DescribeKey,
/// DisableKeyRotation, GetKeyRotationStatus and RotateKeyOnDemand.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct KeyIdRequest {
    pub key_id: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateKeyRequest {
    pub policy: Option<String>,
    pub description: Option<String>,
    pub key_usage: Option<String>,
    pub customer_master_key_spec: Option<String>,
    pub key_spec: Option<String>,
    pub origin: Option<String>,
    pub custom_key_store_id: Option<String>,
    pub bypass_policy_lockout_safety_check: Option<bool>,
    pub tags: Option<Vec<Tag>>,
    pub multi_region: Option<bool>,
    pub xks_key_id: Option<String>,
}

/// A key's metadata as DescribeKey and CreateKey report it.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyMetadata {
    #[serde(rename = "AWSAccountId")]
    pub aws_account_id: String,
    pub key_id: String,
    pub arn: String,
    pub creation_date: f64,
    pub enabled: bool,
    pub description: String,
    pub key_usage: String,
    pub key_state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletion_date: Option<f64>,
    pub origin: String,
    pub key_manager: String,
    pub customer_master_key_spec: String,
    pub key_spec: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub encryption_algorithms: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub signing_algorithms: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mac_algorithms: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub key_agreement_algorithms: Vec<String>,
    pub multi_region: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multi_region_configuration: Option<crate::kms_rest::MultiRegionConfiguration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_key_material_id: Option<String>,
    /// For imported material: `KEY_MATERIAL_EXPIRES` or `KEY_MATERIAL_DOES_NOT_EXPIRE`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration_model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_to: Option<f64>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyMetadataResponse {
    pub key_metadata: KeyMetadata,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ListRequest {
    pub key_id: Option<String>,
    pub limit: Option<i32>,
    pub marker: Option<String>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyListEntry {
    pub key_id: String,
    pub key_arn: String,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListKeysResponse {
    pub keys: Vec<KeyListEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
    pub truncated: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ScheduleKeyDeletionRequest {
    pub key_id: String,
    pub pending_window_in_days: Option<i32>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScheduleKeyDeletionResponse {
    pub key_id: String,
    /// Absent while a multi-Region primary waits for its replicas' deletion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletion_date: Option<f64>,
    pub key_state: String,
    pub pending_window_in_days: i32,
}

/// `{"KeyId": ...}` answers (CancelKeyDeletion, RotateKeyOnDemand).
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyIdResponse {
    pub key_id: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AliasRequest {
    pub alias_name: String,
    pub target_key_id: Option<String>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AliasListEntry {
    pub alias_name: String,
    pub alias_arn: String,
    /// Absent (with the dates) for a predefined AWS alias whose managed key does not exist.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creation_date: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_updated_date: Option<f64>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListAliasesResponse {
    pub aliases: Vec<AliasListEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
    pub truncated: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EncryptRequest {
    pub key_id: String,
    pub plaintext: SensitiveBlob,
    pub encryption_context: Option<BTreeMap<String, String>>,
    pub grant_tokens: Option<Vec<String>>,
    pub encryption_algorithm: Option<String>,
    pub dry_run: Option<bool>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EncryptResponse {
    pub ciphertext_blob: Blob,
    pub key_id: String,
    pub encryption_algorithm: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DecryptRequest {
    pub ciphertext_blob: Blob,
    pub encryption_context: Option<BTreeMap<String, String>>,
    pub grant_tokens: Option<Vec<String>>,
    pub key_id: Option<String>,
    pub encryption_algorithm: Option<String>,
    pub recipient: Option<serde_json::Value>,
    pub dry_run: Option<bool>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DecryptResponse {
    pub key_id: String,
    pub plaintext: SensitiveBlob,
    pub encryption_algorithm: String,
    /// Absent for asymmetric keys.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub key_material_id: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ReEncryptRequest {
    pub ciphertext_blob: Blob,
    pub source_encryption_context: Option<BTreeMap<String, String>>,
    pub source_key_id: Option<String>,
    pub destination_key_id: String,
    pub destination_encryption_context: Option<BTreeMap<String, String>>,
    pub source_encryption_algorithm: Option<String>,
    pub destination_encryption_algorithm: Option<String>,
    pub grant_tokens: Option<Vec<String>>,
    pub dry_run: Option<bool>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReEncryptResponse {
    pub ciphertext_blob: Blob,
    pub source_key_id: String,
    pub key_id: String,
    pub source_encryption_algorithm: String,
    pub destination_encryption_algorithm: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub source_key_material_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub destination_key_material_id: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct GenerateDataKeyRequest {
    pub key_id: String,
    pub encryption_context: Option<BTreeMap<String, String>>,
    pub number_of_bytes: Option<i32>,
    pub key_spec: Option<String>,
    pub grant_tokens: Option<Vec<String>>,
    pub recipient: Option<serde_json::Value>,
    pub dry_run: Option<bool>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GenerateDataKeyResponse {
    pub ciphertext_blob: Blob,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plaintext: Option<SensitiveBlob>,
    pub key_id: String,
    pub key_material_id: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct GenerateRandomRequest {
    pub number_of_bytes: Option<i32>,
    pub custom_key_store_id: Option<String>,
    pub recipient: Option<serde_json::Value>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GenerateRandomResponse {
    pub plaintext: SensitiveBlob,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EnableKeyRotationRequest {
    pub key_id: String,
    pub rotation_period_in_days: Option<i32>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetKeyRotationStatusResponse {
    pub key_rotation_enabled: bool,
    pub key_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation_period_in_days: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_rotation_date: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TagResourceRequest {
    pub key_id: String,
    pub tags: Vec<Tag>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct UntagResourceRequest {
    pub key_id: String,
    pub tag_keys: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListResourceTagsResponse {
    pub tags: Vec<Tag>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
    pub truncated: bool,
}

/// The empty answer of operations that return nothing (`{}`).
#[derive(Debug, Default, Serialize)]
pub struct EmptyResponse {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_accept_unpadded_base64_and_print_only_their_length() {
        let blob: Blob = serde_json::from_str("\"AQID\"").unwrap();
        assert_eq!(blob.0, vec![1, 2, 3]);
        let unpadded: Blob = serde_json::from_str("\"AQ\"").unwrap();
        assert_eq!(unpadded.0, vec![1]);
        assert_eq!(serde_json::to_string(&Blob(vec![1])).unwrap(), "\"AQ==\"");
        assert_eq!(format!("{:?}", Blob(vec![9; 5])), "Blob(5 bytes)");
        assert!(serde_json::from_str::<Blob>("\"not base64!\"").is_err());
    }

    #[test]
    fn decrypt_responses_never_print_the_plaintext() {
        let response = DecryptResponse {
            key_id: "k".into(),
            plaintext: SensitiveBlob::new(b"hunter2".to_vec()),
            encryption_algorithm: "SYMMETRIC_DEFAULT".into(),
            key_material_id: "m".into(),
        };
        assert!(!format!("{response:?}").contains("hunter2"));
        let json = serde_json::to_string(&response).unwrap();
        assert!(json.contains("\"Plaintext\":\"aHVudGVyMg==\""), "{json}");
    }

    #[test]
    fn optional_members_are_omitted_not_null() {
        let json = serde_json::to_value(GetKeyRotationStatusResponse {
            key_rotation_enabled: false,
            key_id: "k".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(json, serde_json::json!({"KeyRotationEnabled": false, "KeyId": "k"}));
    }
}
