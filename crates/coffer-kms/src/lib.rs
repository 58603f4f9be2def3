//! Coffer's key service: KMS-compatible symmetric keys, aliases, key states, rotation and
//! ciphertext blobs, over the `coffer-store` records and `coffer-crypto`.
//!
//! Key material comes from the system CSPRNG, is stored only wrapped under the master key
//! (context: key ARN and material version) and lives unwrapped only in zeroizing
//! [`coffer_crypto::KeyMaterial`] values, in a cache keyed by the material's unique id.
//! Rotation adds a material version; every version is kept for decryption and the newest
//! encrypts. Ciphertext blobs name their key and material version (see [`ciphertext`]).
//!
//! Architecture invariant: no HTTP and no JSON wire shapes here; callers pass the time.

pub mod asymmetric;
pub mod ciphertext;
pub mod error;
pub mod grants;
pub mod ids;
pub mod import;
pub mod key_admin;
pub mod model;
pub mod multi_region;
pub mod predefined;
pub mod service;

pub use ciphertext::EncryptionContext;
pub use error::KmsError;
pub use ids::{KeyRef, alias_arn, key_arn, parse_key_ref};
pub use model::{
    AliasRecord, KeyManager, KeyRecord, KeyState, Material, NewKey, Page, RotationType, Tag,
};
pub use predefined::{ListedAlias, PREDEFINED_ALIASES};
pub use service::{
    Accepts, DRY_RUN_MESSAGE, DataKey, Decrypted, DueWork, Encrypted, Kms, MASTER_CHECK_SETTING,
    ReEncrypted, SECRETS_MANAGER_ALIAS, check_algorithm, data_key_length, generate_random,
    refuse_rotation_of_key_pairs,
};

#[cfg(test)]
mod tests;
