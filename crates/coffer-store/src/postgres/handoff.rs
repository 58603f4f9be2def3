//! A read scope's secret lookups handed to the write of the same call, guarded, so that
//! a PutSecretValue looks its secret up once instead of twice.
//!
//! A mutating call authorizes in a read scope (which looks the secret up, with its
//! versions, to decide), then writes: before this module the write member looked the
//! same secret up again inside the group's transaction, an awaited round trip of the
//! ~2.3 a put cost. Now the scope, as it ends, returns what it looked up (with each row's
//! `xmin`: the witness) as a [`Handoff`], a value the call keeps (the server, in its
//! `RequestContext`) and gives its write ([`crate::Store::write_after`]), which takes it
//! along to whichever writer runs its group (`lend::Job`); the member answers its lookups
//! from it. Nothing travels through the thread, so no other call's write can pick it up,
//! and a store opens only the handoffs it made itself. Nothing read that way is trusted:
//! the member defers, in the same round trip as its changes, a guard statement
//! ([`GUARD_SQL`]) that finds the secret's row and its versions' rows still the very ones
//! read (same `xmin`s, same versions in the same order). If they are not (another writer,
//! on this node or another, changed them in between), the guard finds no row, the whole
//! attempt is rolled back and run again carefully, where no member uses what it was
//! handed: the member then reads the secret inside its own transaction as before. So a
//! stale read is never written over a concurrent change; the guard reads the same rows
//! the lookup read, inside the same SERIALIZABLE transaction, so PostgreSQL's conflict
//! detection covers them as it did.
//!
//! A handed secret is used only until the member writes a secret (after which its own
//! writes would be missing from it), and sealed values are never handed (only metadata).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use coffer_core::model::{SecretMeta, VersionMeta};

use super::PostgresStore;
use super::pipelined::Expect;
use super::txn::PgTxn;
use crate::{Handoff, StoreResult};

/// What a secret's rows were when read: the `secrets` row's `xmin`, and its versions'
/// `xmin`s in version order (`None`: no version). A row keeps its `xmin` until it is
/// updated or deleted, so equal witnesses mean the rows were not changed in between.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Witness {
    pub(super) secret: String,
    pub(super) versions: Option<String>,
}

/// Finds the secret `$1` only if its row's `xmin` is `$2` and its versions' are `$3`
/// (see [`Witness`]): one row while the rows read are unchanged, none otherwise.
const GUARD_SQL: &str = "SELECT 1 FROM secrets s WHERE s.arn = $1 AND s.xmin::text = $2 \
     AND (SELECT string_agg(v.xmin::text, ',' ORDER BY v.ord) FROM versions v \
     WHERE v.arn = $1) IS NOT DISTINCT FROM $3";

/// What [`GUARD_SQL`] reports when it finds the rows changed (never shown to a caller:
/// the attempt is run again, carefully).
const CHANGED_SINCE_READ: &str = "the secret changed after the read it was handed from";

/// The secrets a read scope looked up, moved out of its transaction as it ends (nothing
/// is copied): by the keys it looked them up by (`read_cache`'s name and ARN keys), and
/// their versions and witnesses by ARN.
#[derive(Default)]
pub(super) struct Handed {
    /// The store whose read scope made it ([`store_id`]): only that store's writes use it.
    store: u64,
    seen: HashMap<String, Option<SecretMeta>>,
    versions: HashMap<String, Vec<VersionMeta>>,
    witnesses: HashMap<String, Witness>,
}

impl Handed {
    /// The secret under `key` with its versions and witness, if it was read with them.
    fn get(&self, key: &str) -> Option<(&SecretMeta, &Vec<VersionMeta>, &Witness)> {
        let meta = self.seen.get(key)?.as_ref()?;
        Some((meta, self.versions.get(&meta.arn)?, self.witnesses.get(&meta.arn)?))
    }

    pub(super) fn is_empty(&self) -> bool {
        self.witnesses.is_empty()
    }
}

/// A number no other store of this process has (an address could be a dropped store's).
pub(super) fn store_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// What `txn` (a read scope's transaction on `store`, ending now) looked up, for the
/// write of the call that made the scope.
pub(super) fn hand(store: &PostgresStore, txn: &PgTxn<'_, '_>) -> Handoff {
    let handed = txn.handed_over(store.id);
    if handed.is_empty() { Handoff::none() } else { Handoff::new(handed) }
}

/// What `handoff` hands a write of `store`: nothing unless `store` made it.
pub(super) fn opened(store: &PostgresStore, handoff: Handoff) -> Option<Handed> {
    handoff.open::<Handed>().filter(|handed| handed.store == store.id)
}

impl PgTxn<'_, '_> {
    /// A read transaction's lookups, moved out of it (it ends): its secrets, their
    /// versions and witnesses; not the sealed values it read.
    fn handed_over(&self, store: u64) -> Handed {
        let Some(seen) = &self.seen else { return Handed::default() };
        let mut prefetched = self.prefetched.borrow_mut();
        Handed {
            store,
            seen: std::mem::take(&mut *seen.borrow_mut()),
            versions: std::mem::take(&mut prefetched.versions),
            witnesses: std::mem::take(&mut prefetched.witnesses),
        }
    }

    /// The secret under `key` as the write was handed it, if it was and may use it: with
    /// its versions remembered for the rest of the member, and the guard deferred.
    pub(super) fn handed_secret(&self, key: &str) -> StoreResult<Option<SecretMeta>> {
        let Some(handed) = self.handed else { return Ok(None) };
        // After a write of a secret the handed state lacks the member's own changes.
        if self.secrets_touched.get() {
            return Ok(None);
        }
        let Some((meta, versions, witness)) = handed.get(key) else { return Ok(None) };
        self.defer(
            GUARD_SQL,
            vec![
                Box::new(meta.arn.clone()),
                Box::new(witness.secret.clone()),
                Box::new(witness.versions.clone()),
            ],
            Expect::Current(CHANGED_SINCE_READ),
        )?;
        self.prefetched.borrow_mut().versions.insert(meta.arn.clone(), versions.clone());
        Ok(Some(meta.clone()))
    }
}
