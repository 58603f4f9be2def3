//! The records the key service keeps: keys (with their wrapped material versions and tags) and aliases.

use coffer_core::Scope;
use coffer_core::model::Millis;
use serde::{Deserialize, Serialize};

/// The key spec of symmetric keys (AES-256-GCM), and the default of CreateKey.
pub const SYMMETRIC_DEFAULT: &str = "SYMMETRIC_DEFAULT";
/// The key usage of symmetric keys, and the default of CreateKey.
pub const ENCRYPT_DECRYPT: &str = "ENCRYPT_DECRYPT";

fn symmetric_default() -> String {
    SYMMETRIC_DEFAULT.to_string()
}

fn encrypt_decrypt() -> String {
    ENCRYPT_DECRYPT.to_string()
}
/// Where Coffer's key material comes from: its own CSPRNG.
pub const ORIGIN_AWS_KMS: &str = "AWS_KMS";
/// Key material the customer imports (ImportKeyMaterial).
pub const ORIGIN_EXTERNAL: &str = "EXTERNAL";

fn aws_kms() -> String {
    ORIGIN_AWS_KMS.to_string()
}

/// The key states Coffer's keys can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyState {
    Enabled,
    Disabled,
    PendingDeletion,
    /// A key of origin EXTERNAL without (or no longer with) its imported material.
    PendingImport,
    /// A multi-Region primary scheduled for deletion while it still has replicas: its
    /// waiting period starts when the last replica is deleted.
    PendingReplicaDeletion,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Enabled => "Enabled",
            KeyState::Disabled => "Disabled",
            KeyState::PendingDeletion => "PendingDeletion",
            KeyState::PendingImport => "PendingImport",
            KeyState::PendingReplicaDeletion => "PendingReplicaDeletion",
        }
    }
}

/// Who manages a key: the customer, or AWS (the service keys such as `aws/secretsmanager`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyManager {
    #[serde(rename = "CUSTOMER")]
    Customer,
    #[serde(rename = "AWS")]
    Aws,
}

impl KeyManager {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyManager::Customer => "CUSTOMER",
            KeyManager::Aws => "AWS",
        }
    }
}

/// How a material version came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RotationType {
    #[serde(rename = "AUTOMATIC")]
    Automatic,
    #[serde(rename = "ON_DEMAND")]
    OnDemand,
}

/// One version of a key's material, stored only wrapped under the master key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Material {
    /// 1 for the material the key was created with, one more for each rotation.
    pub version: u32,
    /// KMS's `KeyMaterialId`: 64 hex digits, random, unique to this material.
    pub id: String,
    /// The material wrapped by the master key (base64), with the key ARN and version as context.
    pub wrapped: String,
    pub created_ms: Millis,
    /// `None` for the original material.
    pub rotation: Option<RotationType>,
    /// For asymmetric and HMAC keys: the private key (PKCS #8 DER) or HMAC key, sealed
    /// (base64) under this version's material with the key ARN as context. The material
    /// itself stays wrapped by the master key, so a master-key rewrap covers this too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<String>,
    /// The master-key generation that wrapped it ([`coffer_crypto::MasterKey::generation_of`]
    /// of the store's check value); `None` for material wrapped before generations were
    /// recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<String>,
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Material")
            .field("version", &self.version)
            .field("id", &self.id)
            .field("wrapped", &"***")
            .field("sealed", &self.sealed.as_ref().map(|_| "***"))
            .field("generation", &self.generation)
            .finish()
    }
}

/// A tag on a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// A KMS key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub key_id: String,
    pub scope: Scope,
    pub arn: String,
    pub description: String,
    pub manager: KeyManager,
    pub state: KeyState,
    pub created_ms: Millis,
    /// When a scheduled deletion is carried out (state `PendingDeletion`).
    pub deletion_ms: Option<Millis>,
    pub pending_window_days: Option<i32>,
    pub rotation_enabled: bool,
    /// The automatic rotation period, while rotation is enabled.
    pub rotation_period_days: Option<i32>,
    /// When the next automatic rotation is due, while rotation is enabled.
    pub next_rotation_ms: Option<Millis>,
    /// How many on-demand rotations were made (KMS allows a limited number).
    pub on_demand_rotations: u32,
    /// Every material version, oldest first; the last one encrypts.
    pub materials: Vec<Material>,
    pub tags: Vec<Tag>,
    /// The key policy as given at creation (stored; Coffer does not evaluate key policies).
    pub policy: Option<String>,
    /// `SYMMETRIC_DEFAULT`, `RSA_2048`, `ECC_NIST_P256`, `HMAC_256`, ... (records written
    /// before asymmetric keys existed are symmetric).
    #[serde(default = "symmetric_default")]
    pub key_spec: String,
    /// `ENCRYPT_DECRYPT`, `SIGN_VERIFY`, `GENERATE_VERIFY_MAC` or `KEY_AGREEMENT`.
    #[serde(default = "encrypt_decrypt")]
    pub key_usage: String,
    /// The public key of an asymmetric key (X.509 SubjectPublicKeyInfo DER, base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// `AWS_KMS` (Coffer made the material) or `EXTERNAL` (imported).
    #[serde(default = "aws_kms")]
    pub origin: String,
    /// For keys of origin EXTERNAL: what was imported, and until when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported: Option<Imported>,
    /// For multi-Region keys (`mrk-` ids): the primary's region and the replicas' regions,
    /// the same in every key of the set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_region: Option<MultiRegion>,
}

/// The imported material of a key of origin EXTERNAL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Imported {
    /// The material's id, derived from the material itself, so a reimport is checked to be
    /// the same material (KMS accepts no other) without keeping the material once deleted.
    pub material_id: String,
    /// `KEY_MATERIAL_EXPIRES` or `KEY_MATERIAL_DOES_NOT_EXPIRE`; `None` while none is imported.
    pub expiration_model: Option<String>,
    /// When the material expires (the key goes back to PendingImport).
    pub valid_to_ms: Option<Millis>,
}

/// A multi-Region key's set: where its primary is and where its replicas are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MultiRegion {
    pub primary_region: String,
    /// Replica regions in the order they were made.
    pub replica_regions: Vec<String>,
}

impl KeyRecord {
    /// The material new ciphertext is sealed with.
    pub fn current_material(&self) -> Option<&Material> {
        self.materials.last()
    }

    pub fn material(&self, version: u32) -> Option<&Material> {
        self.materials.iter().find(|m| m.version == version)
    }

    /// True for a symmetric encryption key (the only kind that seals ciphertext blobs).
    pub fn is_symmetric(&self) -> bool {
        self.key_spec == SYMMETRIC_DEFAULT
    }

    /// True for a key whose material was imported (origin EXTERNAL).
    pub fn is_external(&self) -> bool {
        self.origin == ORIGIN_EXTERNAL
    }
}

/// An alias: a friendly name pointing at one key of the same account and region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasRecord {
    /// With its `alias/` prefix.
    pub name: String,
    pub target_key_id: String,
    pub created_ms: Millis,
    pub updated_ms: Millis,
}

/// What CreateKey asks for, already decoded from the wire.
#[derive(Debug, Clone, Default)]
pub struct NewKey {
    pub description: Option<String>,
    pub key_usage: Option<String>,
    pub key_spec: Option<String>,
    pub customer_master_key_spec: Option<String>,
    pub origin: Option<String>,
    pub custom_key_store_id: Option<String>,
    pub xks_key_id: Option<String>,
    pub multi_region: bool,
    pub policy: Option<String>,
    pub tags: Vec<Tag>,
}

/// One page of a listing.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Where the next page starts; `None` on the last page.
    pub next_marker: Option<String>,
}
