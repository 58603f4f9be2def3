//! The shared store for several Coffer nodes: one PostgreSQL database, reached
//! through a pool of (optionally TLS) connections.
//!
//! Concurrency is the database's job, never the nodes'. Every write runs in a
//! `SERIALIZABLE` transaction, so its closure sees a state no concurrent write
//! changes under it, exactly as with the single-writer SQLite store. When
//! PostgreSQL detects that two transactions could not have run one after the
//! other (a serialization failure or a deadlock), it aborts one of them; the
//! store then rolls that one back and runs its closure again from the start,
//! with a short random back-off, which the [`Store`] contract allows.
//! Uniqueness (names, ARNs, version ids) is enforced by constraints, and an
//! insert that would break one reports a [`StoreError::Conflict`] without
//! aborting the transaction (`ON CONFLICT DO NOTHING`), so a closure can
//! recover from it as it can on the other stores.
//!
//! Reads run in `REPEATABLE READ READ ONLY` transactions: one snapshot for the
//! whole closure, no locks, never a serialization failure.
//!
//! The [`Store`] trait is synchronous. The store owns a small tokio runtime
//! that drives its connections (tokio-postgres with a deadpool pool); each
//! call blocks on it. Call the store from ordinary or blocking threads, or from
//! an async task of a multi-threaded tokio runtime: wherever the store waits (a
//! statement, a connection, a write's group commit) it first hands that worker's
//! other tasks to another thread (`off_the_workers`), so a read answered from
//! the node's cache (`shared_cache`) costs no thread hand-off and one that is
//! not holds up no other task (the server runs read-only calls so). Never from
//! a current-thread runtime's task.
//!
//! The schema is created and upgraded by numbered migrations, recorded in
//! `coffer_schema_migrations` and applied under an advisory lock, so nodes
//! starting together do not race. Leases (table `leases`) elect the one node
//! that does background work, with expiry judged by the database's clock.

use std::cell::Cell;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::FromSql;

use crate::lend::Job;
use crate::{Handoff, ReadTxn, SnapshotItem, Store, StoreError, StoreResult, WriteTxn};

mod connect;
mod export;
#[cfg(test)]
mod group_tests;
mod handoff;
#[cfg(test)]
mod handoff_tests;
mod known;
mod lease;
mod pipelined;
mod read;
mod schema;
mod scrub;
mod shared_cache;
#[cfg(test)]
mod tests;
mod tls;
mod txn;
mod write_txn;
mod writer;

use read::{LazyRead, SHARED_READ, SharedReadGuard};
pub use schema::{Migration, SCHEMA_VERSION};
pub use shared_cache::{GENERATION_SETTING as CACHE_GENERATION_SETTING, STALE_BOUND};
use txn::{Failure, PgTxn};
pub use txn::{SECRET_AND_VERSIONS_BY_NAME_SQL, SECRET_BY_NAME_SQL, statements_on_this_thread};

/// A store in one PostgreSQL database, shared by any number of nodes.
pub struct PostgresStore {
    pool: Pool,
    /// This node's writes take turns. Every write of the server appends to an audit
    /// chain (one head row per account and region), so concurrent SERIALIZABLE
    /// writes of one node almost always conflict and rerun; in turn they do not.
    /// Writes of other nodes still conflict and are rerun.
    writers: std::sync::Mutex<()>,
    /// Writes of this node waiting for their turn: whoever has the turn runs all of
    /// them in one transaction (group commit, see `write_grouped`).
    queue: std::sync::Mutex<Vec<Job>>,
    /// Drives the connections; `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
    description: String,
    /// The records and settings this node caches across transactions, and the kinds
    /// whose writes it announces to the others (`shared_cache`); `None`: neither.
    shared: Option<std::sync::Arc<shared_cache::SharedCache>>,
    /// How the watcher connects: the pool's configuration and TLS.
    watcher_config: (tokio_postgres::Config, Option<tokio_postgres_rustls::MakeRustlsConnect>),
    /// The scrub of destroyed rows (`scrub.rs`).
    scrub: scrub::ScrubState,
    /// Which store this is, in the handoffs its read scopes make (`handoff`).
    id: u64,
    /// Records as this node's last committed group left them (`known`).
    known: known::KnownRecords,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").field("database", &self.description).finish_non_exhaustive()
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.pool.close();
        // Shutting down in the background never blocks, so a store may be
        // dropped anywhere, even inside another runtime's task.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Store for PostgresStore {
    /// One `REPEATABLE READ` transaction (one pooled connection, one snapshot) for every
    /// read `f` makes on this thread, instead of one each. A write inside `f` takes a
    /// second connection, so callers keep writes out of scopes (see the server's
    /// `deferring_access_records`).
    fn read_scope(&self, f: &mut dyn FnMut()) -> Handoff {
        if SHARED_READ.with(Cell::get).is_some() {
            // The outer scope's lookups, this one's among them, are the outer's to hand.
            f();
            return Handoff::none();
        }
        let lazy = LazyRead::new(self);
        let txn = PgTxn::reading_cached(self.rt(), &lazy, self.shared.as_deref());
        let _guard = SharedReadGuard;
        let erased = &txn as *const PgTxn<'_, '_> as *const ();
        SHARED_READ.with(|shared| shared.set(Some((self as *const _, erased))));
        f();
        // The secrets it looked up, for the write that usually follows (a mutating call
        // authorizes in the scope, then writes): see `handoff`.
        if txn.failure.get() != Failure::None {
            return Handoff::none();
        }
        handoff::hand(self, &txn)
    }

    fn read(&self, f: &mut dyn FnMut(&dyn ReadTxn) -> StoreResult<()>) -> StoreResult<()> {
        if let Some(result) = self.read_shared(f) {
            return result;
        }
        let lazy = LazyRead::new(self);
        let txn = PgTxn::reading_cached(self.rt(), &lazy, self.shared.as_deref());
        let result = f(&txn);
        match (result, txn.failure.get()) {
            (Err(e), _) => Err(e),
            (Ok(()), Failure::None) => Ok(()),
            (Ok(()), _) => Err(StoreError::Backend(
                "a statement failed inside the read transaction".to_owned(),
            )),
        }
    }

    fn write(
        &self,
        f: &mut (dyn FnMut(&mut dyn WriteTxn) -> StoreResult<()> + Send),
    ) -> StoreResult<()> {
        off_the_workers(|| self.write_grouped(Handoff::none(), f))
    }

    /// The write's member starts from the lookups of its call's read scope, guarded
    /// (`handoff`), if this store made `handoff`.
    fn write_after(
        &self,
        handoff: Handoff,
        f: &mut (dyn FnMut(&mut dyn WriteTxn) -> StoreResult<()> + Send),
    ) -> StoreResult<()> {
        off_the_workers(|| self.write_grouped(handoff, f))
    }

    fn latency(&self) -> crate::Latency {
        crate::Latency::Network
    }

    /// Reads wait only for what the node's cache does not hold, and then off the
    /// async workers (`off_the_workers`).
    fn reads_wait_off_the_workers(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        self.description.clone()
    }

    fn export(&self, visit: &mut dyn FnMut(SnapshotItem) -> StoreResult<()>) -> StoreResult<()> {
        off_the_workers(|| self.export_snapshot(visit))
    }

    fn import_from(&self, produce: &mut crate::ImportProducer<'_>) -> StoreResult<()> {
        off_the_workers(|| self.import_snapshot(produce))
    }

    fn try_acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> StoreResult<bool> {
        off_the_workers(|| self.acquire_lease(name, holder, ttl))
    }

    fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()> {
        off_the_workers(|| self.give_up_lease(name, holder))
    }

    /// Rewrites the tables that hold destroyed rows and has the WAL segments that held
    /// them removed, batched: see `scrub.rs`.
    fn scrub_deleted(&self) -> StoreResult<()> {
        off_the_workers(|| self.scrub())
    }
}

/// Runs `f`, which may wait for the database or for this node's other writers, so that
/// it holds up no async task: on a worker of a multi-threaded tokio runtime (the server
/// runs read-only calls there, since most are answered from the node's cache), the
/// worker's other tasks are first handed to another thread (`block_in_place`), which
/// costs about what a hand-off to the blocking pool would, and only when the store
/// waits. Anywhere else (a blocking thread, an ordinary one, inside an outer
/// `off_the_workers`) `f` just runs. A current-thread runtime's task cannot be left
/// so: the store's `block_on` refuses to run there, as it always has.
pub(super) fn off_the_workers<R>(f: impl FnOnce() -> R) -> R {
    if crate::in_multi_threaded_runtime() { tokio::task::block_in_place(f) } else { f() }
}

/// An error's code and message, never its detail: PostgreSQL's details quote
/// the values of the row concerned.
fn describe_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

/// The one place PostgreSQL errors become store errors.
fn backend(e: &tokio_postgres::Error) -> StoreError {
    if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        return StoreError::Conflict(describe_error(e));
    }
    StoreError::Backend(format!("postgres: {}", describe_error(e)))
}

/// A column of a row, with a type mismatch as a store error rather than a panic.
fn get<'r, T: FromSql<'r>>(row: &'r Row, index: usize) -> StoreResult<T> {
    row.try_get(index)
        .map_err(|e| StoreError::Backend(format!("postgres: unexpected column value: {e}")))
}

/// Stored JSON that does not parse. serde_json's message can quote the text,
/// so only the position is kept.
fn unreadable(what: &str, error: &serde_json::Error) -> StoreError {
    StoreError::Backend(format!(
        "stored {what} is unreadable (line {}, column {})",
        error.line(),
        error.column()
    ))
}

fn to_json<T: serde::Serialize>(what: &str, value: &T) -> StoreResult<String> {
    serde_json::to_string(value)
        .map_err(|_| StoreError::Backend(format!("{what} could not be encoded")))
}
