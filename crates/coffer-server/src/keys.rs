//! The key ring: the master key's check value and the key service every secret is sealed with.
//!
//! The master key wraps every KMS key material (see `coffer-kms`) and the IAM credentials
//! key. A check value sealed under it is recorded at first start, compare-and-set in one
//! write transaction (so two nodes starting together on an empty database cannot bind it to
//! two keys); a different master key later stops the server at start, so a wrong key never
//! serves garbage. The check value also names the master-key *generation*: every wrapped
//! material records it, and a node refuses to wrap new material once the store's check value
//! is no longer the one it started with (a rotation happened behind its back).
//! [`rotate_master_key`] re-wraps every material and the credentials key under a new master
//! key and replaces the check value in one transaction.

use coffer_crypto::MasterKey;
use coffer_kms::{Kms, MASTER_CHECK_SETTING};
use coffer_store::{Store, StoreError};

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
    /// Every material (this many) and the IAM credentials key (if `credentials`) were
    /// re-wrapped and the check value replaced, in one commit.
    Rotated { materials: usize, credentials: bool, rekeyed: usize },
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
    /// Binds `master` to `store`: records its check value on first use and refuses a
    /// different key afterwards, so a wrong key never serves garbage. The read and the
    /// first write are one write transaction (SERIALIZABLE on PostgreSQL, the single writer
    /// on SQLite): of two nodes starting at once on an empty database with different keys,
    /// one records its check value and the other sees it and refuses to start.
    pub fn open(master: MasterKey, store: &dyn Store) -> Result<KeyRing, MasterKeyError> {
        let mut bound: Option<Result<Vec<u8>, MasterKeyError>> = None;
        let result = store.write(&mut |tx| {
            bound = None;
            match tx.setting(MASTER_CHECK_SETTING)? {
                Some(check) if master.verify_check_value(&check) => bound = Some(Ok(check)),
                Some(_) => {
                    bound = Some(Err(MasterKeyError::Mismatch));
                    return Err(StoreError::Aborted);
                }
                None => {
                    let check = master.check_value();
                    tx.put_setting(MASTER_CHECK_SETTING, &check)?;
                    bound = Some(Ok(check));
                }
            }
            Ok(())
        });
        let check = match (result, bound) {
            (Ok(()), Some(Ok(check))) => check,
            (Err(StoreError::Aborted), Some(Err(e))) => return Err(e),
            (Err(e), _) => return Err(MasterKeyError::Store(e)),
            (Ok(()), _) => {
                return Err(MasterKeyError::Store(StoreError::Backend(
                    "the check value transaction did not run".into(),
                )));
            }
        };
        crate::paging::install_key(master.derive_key(crate::paging::KEY_PURPOSE.as_bytes()));
        Ok(KeyRing { kms: Kms::bound(master, &check) })
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

/// Re-wraps every KMS key material and the IAM credentials key from `old` to `new` and
/// records a check value of `new`, in one store transaction: either everything moves to the
/// new key or nothing does. Secret values and ciphertext blobs are not touched (they are
/// sealed under the KMS keys, whose material does not change). Running it again after a
/// commit is a no-op.
///
/// The new check value starts a new master-key generation: nodes still running with the
/// old key refuse to wrap new material from then on and must be restarted with `new`.
///
/// With `rekey_at` (the current time), every KMS key not pending deletion also gets a new
/// material version under `new` in the same transaction ([`Kms::rekey_all`]), for when the
/// old master key may be compromised: new ciphertext is then out of its reach, while
/// ciphertext made before stays readable to anyone holding it and an older copy of the store.
pub fn rotate_master_key(
    store: &dyn Store,
    old: &MasterKey,
    new: &MasterKey,
    rekey_at: Option<i64>,
) -> Result<MasterKeyRotation, MasterKeyError> {
    let mut outcome = None;
    let mut failure = None;
    let result = store.write(&mut |tx| {
        (outcome, failure) = (None, None);
        let check = tx.setting(MASTER_CHECK_SETTING)?;
        match &check {
            Some(check) if !old.verify_check_value(check) => {
                if new.verify_check_value(check) {
                    // Committed by an earlier run. A rotation by an older Coffer re-wrapped
                    // the credentials key in a second transaction: finish that if needed.
                    match crate::iam::rewrap_credentials_key_in(tx, old, new)
                        .map_err(|e| e.to_string())
                        .and_then(|_| crate::audit::rewrap_chain_key_in(tx, old, new))
                    {
                        Ok(_) => outcome = Some(MasterKeyRotation::AlreadyRotated),
                        Err(e) => {
                            failure = Some(MasterKeyError::Rewrap(e.to_string()));
                            return Err(StoreError::Aborted);
                        }
                    }
                    return Ok(());
                }
                failure = Some(MasterKeyError::Mismatch);
                return Err(StoreError::Aborted);
            }
            _ => {}
        }
        let new_check = new.check_value();
        let rewrapped = Kms::rewrap_all(tx, old, new, &new_check)
            .map_err(|e| e.to_string())
            .and_then(|materials| {
                crate::iam::rewrap_credentials_key_in(tx, old, new)
                    .map(|credentials| (materials, credentials))
                    .map_err(|e| e.to_string())
            })
            // The audit chain key moves with them, so the chains keep verifying.
            .and_then(|done| crate::audit::rewrap_chain_key_in(tx, old, new).map(|_| done))
            .and_then(|(materials, credentials)| match rekey_at {
                Some(now) => Kms::rekey_all(tx, new, &new_check, now)
                    .map(|rekeyed| (materials, credentials, rekeyed))
                    .map_err(|e| e.to_string()),
                None => Ok((materials, credentials, 0)),
            });
        match rewrapped {
            Ok((materials, credentials, rekeyed)) => {
                tx.put_setting(MASTER_CHECK_SETTING, &new_check)?;
                outcome = Some(MasterKeyRotation::Rotated { materials, credentials, rekeyed });
                Ok(())
            }
            Err(e) => {
                failure = Some(MasterKeyError::Rewrap(e));
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
            rotate_master_key(&store, &old, &new, None).unwrap(),
            MasterKeyRotation::Rotated { materials: 0, credentials: false, rekeyed: 0 }
        );
        assert!(matches!(KeyRing::open(same(&old), &store), Err(MasterKeyError::Mismatch)));
        KeyRing::open(same(&new), &store).unwrap();
        assert_eq!(
            rotate_master_key(&store, &old, &new, None).unwrap(),
            MasterKeyRotation::AlreadyRotated
        );
        let stranger = MasterKey::generate();
        assert!(matches!(
            rotate_master_key(&store, &stranger, &old, None),
            Err(MasterKeyError::Mismatch)
        ));
    }

    #[test]
    fn the_credentials_key_moves_in_the_same_transaction_as_the_materials() {
        let store = MemoryStore::new();
        let old = MasterKey::generate();
        let new = MasterKey::generate();
        KeyRing::open(same(&old), &store).unwrap();
        crate::iam::Iam::open(&old, &store).unwrap();
        assert_eq!(
            rotate_master_key(&store, &old, &new, None).unwrap(),
            MasterKeyRotation::Rotated { materials: 0, credentials: true, rekeyed: 0 }
        );
        crate::iam::Iam::open(&new, &store).unwrap();
        assert!(crate::iam::Iam::open(&old, &store).is_err());
    }

    #[test]
    fn a_rotation_starts_a_new_generation_that_old_nodes_cannot_wrap_under() {
        let store = MemoryStore::new();
        let old = MasterKey::generate();
        let new = MasterKey::generate();
        let ring = KeyRing::open(same(&old), &store).unwrap();
        let scope = coffer_core::Scope::new("111122223333", "us-east-1");
        let create = |ring: &KeyRing| {
            let mut failed = None;
            let _ = store.write(&mut |tx| {
                match ring.kms().create_key(tx, &scope, Default::default(), 0) {
                    Ok(_) => failed = Some(false),
                    Err(_) => failed = Some(true),
                }
                Err(StoreError::Aborted)
            });
            failed.unwrap()
        };
        assert!(!create(&ring));
        rotate_master_key(&store, &old, &new, None).unwrap();
        assert!(create(&ring), "a node with the old key refuses to wrap after the rotation");
        let restarted = KeyRing::open(same(&new), &store).unwrap();
        assert!(!create(&restarted));
        assert_ne!(ring.kms().generation(), restarted.kms().generation());
    }
}
