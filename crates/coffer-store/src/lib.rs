//! Storage of secrets behind one trait, with in-memory, SQLite and PostgreSQL implementations.
//!
//! Architecture invariant: only this crate knows SQL. Values arrive here already
//! sealed by `coffer-crypto`; the store never sees a plaintext secret value.
//!
//! Every operation runs inside a transaction: [`Store::read`] for lookups and
//! [`Store::write`] for changes. A write closure either returns `Ok` and its
//! changes are committed (and synced to disk, for durable stores) before
//! `write` returns, or returns an error and nothing it did is kept. A store may
//! run the closure more than once (to retry a serialization conflict), so it
//! must not have side effects outside the transaction.
//!
//! What a call's read scope looked up reaches its write as a value ([`Handoff`]), from
//! [`Store::read_scope`] to [`Store::write_after`], not through a thread-local.

use std::time::Duration;

use coffer_core::model::{Millis, Scope, SecretMeta, VersionMeta};

mod carried;
#[cfg(feature = "testing")]
pub mod conformance;
#[cfg(feature = "testing")]
pub mod fixtures;
mod lend;
pub mod memory;
mod memory_held;
pub mod observe;
pub mod pages;
pub mod postgres;
mod read_cache;
pub mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

pub use carried::Handoff;
pub use memory::MemoryStore;
pub use pages::RecordPages;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Errors from a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken (a name already used in the scope, a version id reused).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The closure asked to abandon the transaction; the caller holds the reason.
    #[error("transaction aborted by caller")]
    Aborted,
    /// The database failed or holds something unreadable.
    #[error("storage backend failure: {0}")]
    Backend(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A write closure that owns everything it uses, for [`Store::submit_write`]: it may run
/// on another thread after its caller has moved on, and (as every write closure) more
/// than once.
pub type OwnedWrite = Box<dyn FnMut(&mut dyn WriteTxn) -> StoreResult<()> + Send + 'static>;

/// How a submitted write ended: its result once committed (or not), or the panic of its
/// closure, which the store caught.
pub enum WriteEnded {
    Done(StoreResult<()>),
    Panicked(Box<dyn std::any::Any + Send>),
}

/// What [`Store::submit_write`] calls once the write has ended, from whichever thread
/// ended it; it should only pass the answer on.
pub type WriteDone = Box<dyn FnOnce(WriteEnded) + Send + 'static>;

// A sealed value and a snapshot item are plain data, defined in coffer-core so that the
// backup file's reader (fuzzed) builds without the store.
pub use coffer_core::snapshot::{SealedValue, SnapshotItem};

/// The orders ListSecrets can return secrets in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    CreatedDate,
    LastAccessedDate,
    LastChangedDate,
    Name,
}

/// Where a listing resumes: strictly after the secret with this sort position.
/// Keyset paging keeps pages correct while secrets are added or removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The sort value of the last secret returned: a date (missing dates sort
    /// first, as `i64::MIN`) or, for [`SortBy::Name`], the name.
    pub key: CursorKey,
    /// The secret's [`SecretMeta::seq`], breaking ties between equal keys.
    pub seq: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CursorKey {
    Date(Millis),
    Name(String),
}

/// What to list: order and starting point. Filtering is the caller's job.
#[derive(Debug, Clone)]
pub struct ListQuery {
    pub sort_by: SortBy,
    pub descending: bool,
    pub after: Option<Cursor>,
    /// How many secrets the caller expects to visit (a page and one more, to
    /// know whether another page follows), so a store can fetch them in one go.
    /// Only a hint: the visit goes on for as long as the visitor asks.
    pub expected: Option<usize>,
}

/// Whether the calling thread runs in a multi-threaded tokio runtime's context, where a
/// store that may wait can leave an async worker by itself (`block_in_place`, which
/// panics on a current-thread runtime): see [`Store::reads_wait_off_the_workers`].
pub fn in_multi_threaded_runtime() -> bool {
    use tokio::runtime::{Handle, RuntimeFlavor};
    Handle::try_current().is_ok_and(|handle| handle.runtime_flavor() == RuntimeFlavor::MultiThread)
}

/// The position of `meta` under `sort_by`, for building the next [`Cursor`].
pub fn cursor_of(meta: &SecretMeta, sort_by: SortBy) -> Cursor {
    let key = match sort_by {
        SortBy::CreatedDate => CursorKey::Date(meta.created_ms),
        SortBy::LastChangedDate => CursorKey::Date(meta.last_changed_ms),
        SortBy::LastAccessedDate => CursorKey::Date(meta.last_accessed_ms.unwrap_or(i64::MIN)),
        SortBy::Name => CursorKey::Name(meta.name.clone()),
    };
    Cursor { key, seq: meta.seq }
}

/// Lookups, available in both read and write transactions.
pub trait ReadTxn {
    fn secret_by_name(&self, scope: &Scope, name: &str) -> StoreResult<Option<SecretMeta>>;
    fn secret_by_arn(&self, arn: &str) -> StoreResult<Option<SecretMeta>>;
    /// Every version of a secret, deprecated ones included, oldest first.
    fn versions(&self, arn: &str) -> StoreResult<Vec<VersionMeta>>;
    /// The versions of a secret that carry a staging label and the version `also`
    /// whatever its labels (if the secret has it), oldest first, and how many versions it
    /// has in all, deprecated ones included: what adding version `also` decides on (is it
    /// a replay? which labels move?) in one lookup, without copying the deprecated
    /// versions (up to a hundred) that a store holding them in memory would otherwise copy
    /// on every PutSecretValue.
    fn labelled_versions(&self, arn: &str, also: &str) -> StoreResult<(Vec<VersionMeta>, usize)> {
        let all = self.versions(arn)?;
        let count = all.len();
        let kept = all.into_iter().filter(|v| !v.is_deprecated() || v.version_id == also);
        Ok((kept.collect(), count))
    }
    /// Looks up together, where the store can, the secrets a call is about to look up
    /// one at a time (by name in a scope, or by ARN), so that those lookups are answered
    /// from what this read remembers: a batch is then a fixed number of round trips.
    /// Stores for which a lookup is not a round trip do nothing.
    fn prefetch_secrets(&self, _names: &[(&Scope, &str)], _arns: &[&str]) -> StoreResult<()> {
        Ok(())
    }
    /// [`ReadTxn::versions`] of each of `arns`, in their order (an empty list for a
    /// secret without versions or a missing one). A page of ListSecrets describes a
    /// hundred secrets: a store whose every query is a round trip answers in one.
    fn versions_of(&self, arns: &[&str]) -> StoreResult<Vec<Vec<VersionMeta>>> {
        arns.iter().map(|arn| self.versions(arn)).collect()
    }
    fn version_value(&self, arn: &str, version_id: &str) -> StoreResult<Option<SealedValue>>;
    /// Visits the secrets of `scope` in the query's order, starting after its
    /// cursor, until `visit` returns `false` or none are left. Secrets scheduled
    /// for deletion are included.
    fn visit_secrets(
        &self,
        scope: &Scope,
        query: &ListQuery,
        visit: &mut dyn FnMut(&SecretMeta) -> bool,
    ) -> StoreResult<()>;
    /// ARNs of secrets (in any scope) whose scheduled deletion is due at `now`.
    fn secrets_due_for_deletion(&self, now: Millis) -> StoreResult<Vec<String>>;
    /// A wrapped key by its id (account keys and later KMS key material).
    fn wrapped_key(&self, key_id: &str) -> StoreResult<Option<Vec<u8>>>;
    /// A small named setting (for example the master-key check value).
    fn setting(&self, name: &str) -> StoreResult<Option<Vec<u8>>>;
    /// A record of another subsystem (KMS keys and aliases, IAM principals, ...):
    /// opaque bytes under a `kind` and a `key`.
    fn record(&self, kind: &str, key: &str) -> StoreResult<Option<Vec<u8>>>;
    /// Records of `kind` whose key starts with `prefix`, in key order, strictly
    /// after `after` when given, at most `limit` of them.
    fn records(
        &self,
        kind: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<(String, Vec<u8>)>>;
}

/// Changes, only inside [`Store::write`].
pub trait WriteTxn: ReadTxn {
    /// Adds a secret. Its `seq` is assigned by the store (the value passed is
    /// ignored) and returned. Fails with [`StoreError::Conflict`] when the name
    /// is taken in its scope or the ARN exists.
    fn insert_secret(&mut self, meta: &SecretMeta) -> StoreResult<i64>;
    /// Replaces the metadata of an existing secret (matched by ARN; name and scope never change).
    fn update_secret(&mut self, meta: &SecretMeta) -> StoreResult<()>;
    /// Removes a secret and all its versions. Removing a missing secret is not an error.
    fn delete_secret(&mut self, arn: &str) -> StoreResult<()>;
    /// Adds a version. Fails with [`StoreError::Conflict`] if the id exists for that secret.
    fn insert_version(
        &mut self,
        arn: &str,
        meta: &VersionMeta,
        value: &SealedValue,
    ) -> StoreResult<()>;
    /// Replaces a version's metadata (labels, last access, key); its value is untouched.
    fn update_version(&mut self, arn: &str, meta: &VersionMeta) -> StoreResult<()>;
    /// Replaces a version's sealed value (re-encryption under another key).
    fn replace_version_value(
        &mut self,
        arn: &str,
        version_id: &str,
        value: &SealedValue,
    ) -> StoreResult<()>;
    fn delete_version(&mut self, arn: &str, version_id: &str) -> StoreResult<()>;
    fn put_wrapped_key(&mut self, key_id: &str, wrapped: &[u8]) -> StoreResult<()>;
    fn put_setting(&mut self, name: &str, value: &[u8]) -> StoreResult<()>;
    /// Adds or replaces a record.
    fn put_record(&mut self, kind: &str, key: &str, value: &[u8]) -> StoreResult<()>;
    /// Removes a record; removing a missing one is not an error.
    fn delete_record(&mut self, kind: &str, key: &str) -> StoreResult<()>;
    /// Says that a record put in this transaction overwrote key material that must now be
    /// destroyed (imported KMS material deleted or expired). Stores that overwrite in place
    /// (SQLite with `secure_delete`, memory) have nothing to do; PostgreSQL notes the table
    /// for its scrub, as for any other destroying write (docs/design/postgres-scrub.md).
    fn note_material_overwritten(&mut self) -> StoreResult<()> {
        Ok(())
    }
}

/// How long a transaction can keep the calling thread: where the server may run
/// one (on its async workers, or on threads that may wait).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Latency {
    /// Reads and writes finish in microseconds (nothing waits for a disk).
    Memory,
    /// Reads finish in microseconds; writes wait for a local disk's sync.
    LocalDisk,
    /// Every transaction waits for a database across the network.
    Network,
}

/// A transactional store of secrets.
pub trait Store: Send + Sync + 'static {
    /// How long this store's transactions keep the calling thread.
    fn latency(&self) -> Latency;
    /// Whether reads may be made on an async worker of a multi-threaded tokio runtime
    /// although the store's [`Latency`] says they can wait: it answers most of them from
    /// memory, and before it waits it hands the worker's other tasks to another thread
    /// itself (`tokio::task::block_in_place`). PostgreSQL does, with its node cache.
    fn reads_wait_off_the_workers(&self) -> bool {
        false
    }
    /// Runs `f` in a read transaction that sees one consistent state.
    fn read(&self, f: &mut dyn FnMut(&dyn ReadTxn) -> StoreResult<()>) -> StoreResult<()>;
    /// Runs `f` with every [`Store::read`] it makes on this thread sharing one read
    /// transaction, where the store can: one snapshot and one transaction's cost for a
    /// request that reads several times. Writes inside `f` are not seen by its later
    /// reads. `f` must not wait for other threads' reads. Stores that cannot share
    /// simply run `f`.
    ///
    /// Returns what the scope looked up that the call's write may start from, for
    /// [`Store::write_after`] (a PostgreSQL write then awaits no lookup of its secret);
    /// the caller keeps it with the call, so no other call's write gets it. Empty from a
    /// scope inside another, and from stores whose lookups cost no round trip.
    fn read_scope(&self, f: &mut dyn FnMut()) -> Handoff {
        f();
        Handoff::none()
    }
    /// Runs `f` in a write transaction; commits (durably) iff `f` returns `Ok`.
    /// Writes are serialized per store, so `f` sees no concurrent change. A store may
    /// run `f` on another thread while the caller waits (hence `Send`), so `f` must not
    /// depend on its caller's thread either (thread-locals).
    fn write(
        &self,
        f: &mut (dyn FnMut(&mut dyn WriteTxn) -> StoreResult<()> + Send),
    ) -> StoreResult<()>;
    /// [`Store::write`] for the call whose read scope returned `handoff`: `f`'s lookups
    /// may be answered from what that scope read, where the store proves it unchanged in
    /// the write's own transaction (else `f` runs again reading everything itself), so
    /// `f` sees exactly what [`Store::write`] would show it. A handoff made by another
    /// store is ignored, as every store but PostgreSQL ignores them all.
    fn write_after(
        &self,
        handoff: Handoff,
        f: &mut (dyn FnMut(&mut dyn WriteTxn) -> StoreResult<()> + Send),
    ) -> StoreResult<()> {
        drop(handoff);
        self.write(f)
    }

    /// Whether [`Store::submit_write`] returns before the write has run, handing it to a
    /// thread of the store's own (SQLite's writer): an async caller then awaits the answer
    /// without holding a thread while the write waits for its commit. False for stores
    /// that run it on the caller's thread.
    fn submits_writes(&self) -> bool {
        false
    }

    /// [`Store::write_after`] of a closure that owns what it uses, answered through `done`
    /// (exactly once, with the closure dropped first): with the same group commit, reruns
    /// and errors as `write_after`, a panic of `f` handed to `done`, a store that stopped
    /// writing answered with an error. Where [`Store::submits_writes`], it returns at once;
    /// by default it runs the write here, then calls `done`.
    fn submit_write(&self, handoff: Handoff, mut f: OwnedWrite, done: WriteDone) {
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.write_after(handoff, &mut *f)
        }));
        drop(f);
        done(match ran {
            Ok(result) => WriteEnded::Done(result),
            Err(payload) => WriteEnded::Panicked(payload),
        });
    }

    /// [`Store::write`] of a closure that touches only the audit trail's records (events,
    /// chain heads: [`memory::TRAIL_KINDS`]), e.g. a read's event. A store may then leave
    /// readers and writers of secrets free meanwhile: the memory store takes only its
    /// trail's lock, so a read's event never makes another read wait. Durable stores
    /// write it as any other write.
    fn write_trail(
        &self,
        f: &mut (dyn FnMut(&mut dyn WriteTxn) -> StoreResult<()> + Send),
    ) -> StoreResult<()> {
        self.write(f)
    }
    /// A short name for logs: `memory`, `sqlite:<path>` or `postgres://user@host:port/db`.
    fn describe(&self) -> String;

    /// Why the store takes no more writes, once it has stopped taking them (SQLite after
    /// a commit failed with an I/O error, see `docs/design/faults.md`); `None` while it
    /// takes them. `/ready` reports it.
    fn refusing_writes(&self) -> Option<String> {
        None
    }

    /// Visits everything the store holds, in one read transaction, so that the
    /// items are one consistent state even while writers go on. Every secret
    /// comes before its versions, secrets in insertion (`seq`) order and each
    /// secret's versions oldest first, which is the order [`Store::import`]
    /// needs to rebuild the same listing and version order. Values and keys
    /// stay sealed and wrapped.
    fn export(&self, visit: &mut dyn FnMut(SnapshotItem) -> StoreResult<()>) -> StoreResult<()>;

    /// Loads `items` (as [`Store::export`] produced them) in one write
    /// transaction. Fails with [`StoreError::Conflict`], changing nothing,
    /// unless the store is empty: no secret, key, setting or record. Secrets
    /// get new `seq` numbers in the order they come.
    fn import(&self, items: &[SnapshotItem]) -> StoreResult<()> {
        self.import_from(&mut |sink| items.iter().try_for_each(&mut *sink))
    }

    /// [`Store::import`] of items streamed by `produce`, so a snapshot is never
    /// held in memory whole: `produce` hands each item, in export order, to the
    /// sink it is given, which writes it in the import's one transaction. An
    /// error from `produce` (or the sink) aborts the import, changing nothing;
    /// so `produce` can check what it reads (a backup's MAC) up to its last
    /// byte before anything is committed. `produce` may be called again from
    /// the start when the transaction is retried, and must then produce the
    /// same items.
    fn import_from(&self, produce: &mut ImportProducer<'_>) -> StoreResult<()>;

    /// Tries to become, or stay, the holder of the lease `name` for `ttl`:
    /// true when `holder` now holds it. A lease held by another holder is
    /// free again once its time has run out, so a node that died is replaced
    /// within `ttl`. Several nodes sharing one database use this to elect the
    /// one that does background work; a store that only one process uses
    /// grants every lease.
    fn try_acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> StoreResult<bool> {
        let _ = (name, holder, ttl);
        Ok(true)
    }

    /// Removes from the store's files what deleted rows left behind, where the store can:
    /// the SQLite store truncates its WAL (its rows are zeroed on deletion by
    /// `secure_delete`). Called after deletions are carried out. The PostgreSQL store
    /// rewrites the tables that hold destroyed rows and has the WAL segments that held them
    /// removed, batched and only once due (docs/design/postgres-scrub.md); an error says
    /// what is not destroyed yet.
    fn scrub_deleted(&self) -> StoreResult<()> {
        Ok(())
    }

    /// Gives up a lease that `holder` holds (on shutdown), so that another
    /// node can take it at once instead of after its time runs out.
    fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()> {
        let _ = (name, holder);
        Ok(())
    }
}

/// What streams a snapshot into [`Store::import_from`]: it calls the sink once
/// per item.
pub type ImportProducer<'a> =
    dyn FnMut(&mut dyn FnMut(&SnapshotItem) -> StoreResult<()>) -> StoreResult<()> + 'a;

/// Writes the items `produce` streams through `tx`, for [`Store::import_from`]
/// implementations once they have checked that the store is empty.
pub(crate) fn import_items(
    tx: &mut dyn WriteTxn,
    produce: &mut ImportProducer<'_>,
) -> StoreResult<()> {
    produce(&mut |item| {
        match item {
            SnapshotItem::Secret(meta) => {
                tx.insert_secret(meta)?;
            }
            SnapshotItem::Version { arn, meta, value } => tx.insert_version(arn, meta, value)?,
            SnapshotItem::WrappedKey { key_id, wrapped } => tx.put_wrapped_key(key_id, wrapped)?,
            SnapshotItem::Setting { name, value } => tx.put_setting(name, value)?,
            SnapshotItem::Record { kind, key, value } => tx.put_record(kind, key, value)?,
        }
        Ok(())
    })
}

/// The error of an import into a store that already holds something.
pub(crate) fn not_empty() -> StoreError {
    StoreError::Conflict("a restore needs an empty store, and this one holds data".to_owned())
}
