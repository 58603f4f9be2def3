//! When each access key was last used, for GetAccessKeyLastUsed: the time, the service it
//! was signed for and the region, in an `iam-access-key-use` record per key id.
//!
//! A signed request must not wait for a write, nor write once per request: each node
//! writes a key's use at most once per [`KEY_USE_RESOLUTION_MS`] (AWS too says its
//! last-used information may lag), on a thread of its own, outside the request's read
//! transaction. The record is not an IAM change: it does not bump the IAM generation, so
//! no cached lookup is dropped for it.

use crate::{ACCESS_KEY_KIND, Iam, IamError, decode, encode, read, write};
use coffer_store::Store;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

pub const KEY_USE_KIND: &str = "iam-access-key-use";

/// How stale a key's recorded use may get: one write per key, node and hour at most.
pub const KEY_USE_RESOLUTION_MS: i64 = 3_600_000;

/// How many keys a node remembers writing the use of; past it, it starts over (a few
/// more writes, never an unbounded map).
const REMEMBERED_KEYS: usize = 65_536;

/// A key's last recorded use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyUse {
    pub last_used_ms: i64,
    /// The signing name of the service called (`iam`, `secretsmanager`, `kms`, `sts`).
    pub service: String,
    pub region: String,
}

/// When this node last wrote each key's use.
#[derive(Debug, Default)]
pub(crate) struct KeyUseWrites(Mutex<HashMap<String, i64>>);

impl KeyUseWrites {
    /// Whether `id`'s use at `now_ms` is to be written; if so, it is taken as written.
    fn due(&self, id: &str, now_ms: i64) -> bool {
        let mut written = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if written.get(id).is_some_and(|&at| now_ms - at < KEY_USE_RESOLUTION_MS) {
            return false;
        }
        if written.len() >= REMEMBERED_KEYS {
            written.clear();
        }
        written.insert(id.to_string(), now_ms);
        true
    }
}

impl Iam {
    /// Notes that long-term key `id` signed a request: written on a thread of its own when
    /// this node has not written the key's use for [`KEY_USE_RESOLUTION_MS`].
    pub fn note_key_use(&self, store: &Arc<dyn Store>, id: &str, used: KeyUse) {
        if !self.key_use_writes.due(id, used.last_used_ms) {
            return;
        }
        let (store, id) = (store.clone(), id.to_string());
        let spawned = std::thread::Builder::new().name("key-use".into()).spawn(move || {
            if let Err(e) = record_key_use(store.as_ref(), &id, &used) {
                tracing::warn!(access_key_id = %id, error = %e, "could not record an access key's use");
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start the thread recording an access key's use");
        }
    }

    /// The last recorded use of key `id`, if any.
    pub fn key_last_used(&self, store: &dyn Store, id: &str) -> Result<Option<KeyUse>, IamError> {
        Ok(read(store, |tx| tx.record(KEY_USE_KIND, id)?.map(|b| decode(&b)).transpose())?)
    }
}

/// Writes `used` for key `id` if the key still exists (a use noted as the key was being
/// deleted leaves nothing behind).
pub fn record_key_use(store: &dyn Store, id: &str, used: &KeyUse) -> Result<(), IamError> {
    write(store, |tx| {
        if tx.record(ACCESS_KEY_KIND, id)?.is_some() {
            tx.put_record(KEY_USE_KIND, id, &encode(used))?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keys_use_is_due_once_per_resolution() {
        let writes = KeyUseWrites::default();
        assert!(writes.due("AKIA1", 0));
        assert!(!writes.due("AKIA1", KEY_USE_RESOLUTION_MS - 1));
        assert!(writes.due("AKIA2", 1));
        assert!(writes.due("AKIA1", KEY_USE_RESOLUTION_MS));
    }
}
