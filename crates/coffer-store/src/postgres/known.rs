//! Records as this node's last committed write left them, answered in the next write with
//! a guard instead of a read (fourteenth session).
//!
//! Every group commit of the audit appender, and every group of the server's writes, reads
//! the chain head it appends after (and a write group the KMS key and alias it seals
//! under) as its first awaited round trip. On one node those records change almost only
//! through that node's own writes, so the value its last committed group left is almost
//! always still the stored one. A write member that asks for such a record is answered
//! with that value at once, and a guard is deferred in its place, at the same point of the
//! transaction (`GUARD_SQL`): it reads the same row in the same SERIALIZABLE snapshot, so
//! the transaction has read exactly what the closure was given, with the same predicate
//! locks, or the guard raises an error. The error aborts the transaction (a `COMMIT` sent
//! behind it becomes a rollback), and the attempt is run again carefully, where nothing
//! remembered here is used and every record is read from the database.
//!
//! What is kept: what a committed group's transaction read or wrote of its records (the
//! memo of `pipelined`), learnt only once its `COMMIT` was acknowledged; forgotten when a
//! guard failed or a commit's outcome is unknown. Bounded: past `MAX_KNOWN` records it
//! starts over.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// A record of the given value, or an error (division by zero): never an empty answer, so
/// a failed guard cannot be committed behind, even when it travels with `COMMIT`.
pub(super) const GUARD_SQL: &str = "SELECT 1 / count(*)::int FROM records \
     WHERE kind = $1 AND key = $2 AND value = $3";

/// What a failed guard reports (never shown: the attempt is run again).
pub(super) const GUARD_FAILED: &str = "a record changed since this node last committed it";

/// The most records remembered; past it, the memory starts over.
const MAX_KNOWN: usize = 4096;

/// Records by their memo id (`kind\0key`), as this node's last committed write left them.
#[derive(Default)]
pub(super) struct KnownRecords {
    records: Mutex<HashMap<String, Vec<u8>>>,
}

impl KnownRecords {
    /// The value of the record `id` this node committed or read last, if it is remembered.
    pub(super) fn get(&self, id: &str) -> Option<Vec<u8>> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner).get(id).cloned()
    }

    /// Learns what a committed transaction read or wrote (`None`: absent or deleted).
    pub(super) fn learn(&self, records: impl IntoIterator<Item = (String, Option<Vec<u8>>)>) {
        let mut known = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        for (id, value) in records {
            match value {
                Some(value) => {
                    if known.len() >= MAX_KNOWN && !known.contains_key(&id) {
                        known.clear();
                    }
                    known.insert(id, value);
                }
                None => {
                    known.remove(&id);
                }
            }
        }
    }

    /// Forgets everything: a guard failed, or a commit's outcome is unknown.
    pub(super) fn forget(&self) {
        self.records.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}
