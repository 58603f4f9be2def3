//! The plain data a store holds and a backup file carries: a sealed value and the items
//! of a snapshot. Defined here, not in `coffer-store` (which re-exports them), so the
//! backup file's reader builds without the store (the fuzz target `backup`).

use crate::model::{SecretMeta, VersionMeta};

/// A version's value as `coffer-crypto` sealed it. Opaque to the store.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedValue(pub Vec<u8>);

impl std::fmt::Debug for SealedValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealedValue({} bytes)", self.0.len())
    }
}

/// One piece of a store's contents, as backup writes it and restore reads it.
/// Nothing here is plaintext: values are sealed and keys wrapped.
// Secrets are as many as versions in a snapshot: boxing the larger variant would only add
// an allocation per secret.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotItem {
    /// A secret with the `seq` its store gave it; an importing store assigns its own.
    Secret(SecretMeta),
    /// A version of the secret with this ARN, and its sealed value.
    Version {
        arn: String,
        meta: VersionMeta,
        value: SealedValue,
    },
    WrappedKey {
        key_id: String,
        wrapped: Vec<u8>,
    },
    Setting {
        name: String,
        value: Vec<u8>,
    },
    Record {
        kind: String,
        key: String,
        value: Vec<u8>,
    },
}
