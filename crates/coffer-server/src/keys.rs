//! The key ring: the master key's check value and the key service every secret is sealed with.
//!
//! The master key wraps every KMS key material (see `coffer-kms`). A check value sealed under
//! it is recorded at first start; a different master key later stops the server at start, so
//! a wrong key never serves garbage. [`rotate_master_key`] re-wraps every material under a
//! new master key and replaces the check value in one transaction.

use coffer_crypto::MasterKey;
use coffer_kms::Kms;
use coffer_store::{Store, StoreError};

/// The setting that proves which master key the data was written with.
const MASTER_CHECK_SETTING: &str = "master-key-check";

pub struct KeyRing {
    kms: Kms,
}

/// Why a master key cannot be used with a store.
#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error(
        "the master key does not match the key this data was encrypted with; refusing to start"
    )]
    Mismatch,
    #[error("could not read or record the master key check value: {0}")]
    Store(#[from] StoreError),
    #[error("could not re-wrap the key material: {0}")]
    Rewrap(String),
}

/// What [`rotate_master_key`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MasterKeyRotation {
    /// Every material was re-wrapped (this many) and the check value replaced, in one commit.
    Rotated { materials: usize },
    /// The store was already bound to the new key (an earlier run committed): nothing to do.
    AlreadyRotated,
}

fn read_check(store: &dyn Store) -> Result<Option<Vec<u8>>, StoreError> {
    let mut existing = None;
    store.read(&mut |tx| {
        existing = tx.setting(MASTER_CHECK_SETTING)?;
        Ok(())
    })?;
    Ok(existing)
}

impl KeyRing {
    /// Binds `master` to `store`: records its check value on first use and
    /// refuses a different key afterwards, so a wrong key never serves garbage.
    pub fn open(master: MasterKey, store: &dyn Store) -> Result<KeyRing, MasterKeyError> {
        match read_check(store)? {
            Some(check) if !master.verify_check_value(&check) => {
                return Err(MasterKeyError::Mismatch);
            }
            Some(_) => {}
            None => {
                let check = master.check_value();
                store.write(&mut |tx| tx.put_setting(MASTER_CHECK_SETTING, &check))?;
            }
        }
        Ok(KeyRing { kms: Kms::new(master) })
    }

    /// True when the store already holds a master-key check value (data was written before).
    pub fn store_has_data(store: &dyn Store) -> Result<bool, StoreError> {
        Ok(read_check(store)?.is_some())
    }

    /// The key service.
    pub fn kms(&self) -> &Kms {
        &self.kms
    }
}

/// Re-wraps every KMS key material from `old` to `new` and records `new`'s check value, in
/// one store transaction: either everything moves to the new key or nothing does. Secret
/// values and ciphertext blobs are not touched (they are sealed under the KMS keys, whose
/// material does not change). Running it again after a commit is a no-op.
pub fn rotate_master_key(
    store: &dyn Store,
    old: &MasterKey,
    new: &MasterKey,
) -> Result<MasterKeyRotation, MasterKeyError> {
    let mut outcome = None;
    let mut failure = None;
    let result = store.write(&mut |tx| {
        let check = tx.setting(MASTER_CHECK_SETTING)?;
        match &check {
            Some(check) if !old.verify_check_value(check) => {
                if new.verify_check_value(check) {
                    outcome = Some(MasterKeyRotation::AlreadyRotated);
                    return Ok(());
                }
                failure = Some(MasterKeyError::Mismatch);
                return Err(StoreError::Aborted);
            }
            _ => {}
        }
        match Kms::rewrap_all(tx, old, new) {
            Ok(materials) => {
                tx.put_setting(MASTER_CHECK_SETTING, &new.check_value())?;
                outcome = Some(MasterKeyRotation::Rotated { materials });
                Ok(())
            }
            Err(e) => {
                failure = Some(MasterKeyError::Rewrap(e.to_string()));
                Err(StoreError::Aborted)
            }
        }
    });
    match (result, failure, outcome) {
        (Err(StoreError::Aborted), Some(failure), _) => Err(failure),
        (Err(e), _, _) => Err(MasterKeyError::Store(e)),
        (Ok(()), _, Some(outcome)) => Ok(outcome),
        (Ok(()), _, None) => Err(MasterKeyError::Rewrap("the transaction did not run".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_store::MemoryStore;

    fn same(key: &MasterKey) -> MasterKey {
        MasterKey::from_text(&key.to_text()).unwrap()
    }

    #[test]
    fn a_different_master_key_is_refused_at_open() {
        let store = MemoryStore::new();
        let first = MasterKey::generate();
        KeyRing::open(same(&first), &store).unwrap();
        assert!(KeyRing::store_has_data(&store).unwrap());
        assert!(matches!(
            KeyRing::open(MasterKey::generate(), &store),
            Err(MasterKeyError::Mismatch)
        ));
        KeyRing::open(first, &store).unwrap();
    }

    #[test]
    fn master_key_rotation_moves_the_check_value_and_is_idempotent() {
        let store = MemoryStore::new();
        let old = MasterKey::generate();
        let new = MasterKey::generate();
        KeyRing::open(same(&old), &store).unwrap();
        assert_eq!(
            rotate_master_key(&store, &old, &new).unwrap(),
            MasterKeyRotation::Rotated { materials: 0 }
        );
        assert!(matches!(KeyRing::open(same(&old), &store), Err(MasterKeyError::Mismatch)));
        KeyRing::open(same(&new), &store).unwrap();
        assert_eq!(
            rotate_master_key(&store, &old, &new).unwrap(),
            MasterKeyRotation::AlreadyRotated
        );
        let stranger = MasterKey::generate();
        assert!(matches!(
            rotate_master_key(&store, &stranger, &old),
            Err(MasterKeyError::Mismatch)
        ));
    }
}
