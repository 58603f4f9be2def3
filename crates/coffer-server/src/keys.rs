//! The key ring: the master key and the per-scope key-encryption keys it wraps.
//!
//! Each account and region gets its own key-encryption key the first time a
//! value is sealed there. It is stored wrapped under the master key, with the
//! scope as authenticated context, and cached unwrapped (zeroizing) in memory.

use coffer_core::{AwsError, Scope};
use coffer_crypto::{KeyMaterial, MasterKey};
use coffer_store::{ReadTxn, Store, StoreError, WriteTxn};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// The setting that proves which master key the data was written with.
const MASTER_CHECK_SETTING: &str = "master-key-check";

pub struct KeyRing {
    master: MasterKey,
    cache: RwLock<HashMap<Scope, Arc<KeyMaterial>>>,
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
}

fn key_id(scope: &Scope) -> String {
    format!("scope-kek/{}/{}", scope.account, scope.region)
}

fn context(scope: &Scope) -> Vec<u8> {
    format!("coffer scope key {}:{}", scope.account, scope.region).into_bytes()
}

impl KeyRing {
    /// Binds `master` to `store`: records its check value on first use and
    /// refuses a different key afterwards, so a wrong key never serves garbage.
    pub fn open(master: MasterKey, store: &dyn Store) -> Result<KeyRing, MasterKeyError> {
        let mut existing = None;
        store.read(&mut |tx| {
            existing = tx.setting(MASTER_CHECK_SETTING)?;
            Ok(())
        })?;
        match existing {
            Some(check) if !master.verify_check_value(&check) => {
                return Err(MasterKeyError::Mismatch);
            }
            Some(_) => {}
            None => {
                let check = master.check_value();
                store.write(&mut |tx| tx.put_setting(MASTER_CHECK_SETTING, &check))?;
            }
        }
        Ok(KeyRing { master, cache: RwLock::new(HashMap::new()) })
    }

    /// True when the store already holds a master-key check value (data was written before).
    pub fn store_has_data(store: &dyn Store) -> Result<bool, StoreError> {
        let mut found = false;
        store.read(&mut |tx| {
            found = tx.setting(MASTER_CHECK_SETTING)?.is_some();
            Ok(())
        })?;
        Ok(found)
    }

    fn cached(&self, scope: &Scope) -> Option<Arc<KeyMaterial>> {
        self.cache.read().expect("key cache lock").get(scope).cloned()
    }

    fn unwrap_stored(&self, scope: &Scope, wrapped: &[u8]) -> Result<Arc<KeyMaterial>, AwsError> {
        let key = self.master.unwrap_key(wrapped, &context(scope)).map_err(|e| {
            tracing::error!(error = %e, "cannot unwrap a scope key");
            AwsError::new(
                coffer_core::ErrorCode::DecryptionFailure,
                "Secrets Manager can't decrypt the protected secret text using the provided KMS key.",
            )
        })?;
        let key = Arc::new(key);
        self.cache.write().expect("key cache lock").insert(scope.clone(), key.clone());
        Ok(key)
    }

    /// The scope's key for opening values; `None` when nothing was ever sealed there.
    pub fn key_for_reading(
        &self,
        tx: &dyn ReadTxn,
        scope: &Scope,
    ) -> Result<Arc<KeyMaterial>, AwsError> {
        if let Some(key) = self.cached(scope) {
            return Ok(key);
        }
        match tx.wrapped_key(&key_id(scope)).map_err(crate::store_error)? {
            Some(wrapped) => self.unwrap_stored(scope, &wrapped),
            None => Err(AwsError::new(
                coffer_core::ErrorCode::DecryptionFailure,
                "Secrets Manager can't decrypt the protected secret text using the provided KMS key.",
            )),
        }
    }

    /// The scope's key for sealing, created (inside the caller's transaction) on first use.
    pub fn key_for_writing(
        &self,
        tx: &mut dyn WriteTxn,
        scope: &Scope,
    ) -> Result<Arc<KeyMaterial>, AwsError> {
        if let Some(key) = self.cached(scope) {
            return Ok(key);
        }
        if let Some(wrapped) = tx.wrapped_key(&key_id(scope)).map_err(crate::store_error)? {
            return self.unwrap_stored(scope, &wrapped);
        }
        let key = KeyMaterial::generate();
        let wrapped = self.master.wrap_key(&key, &context(scope));
        tx.put_wrapped_key(&key_id(scope), &wrapped).map_err(crate::store_error)?;
        // Not cached yet: the transaction may still roll back. The next use unwraps it from the store.
        Ok(Arc::new(key))
    }
}
