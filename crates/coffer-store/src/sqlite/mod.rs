//! The durable default store: one SQLite file in WAL mode, synced on every commit.
//!
//! Writes go through a single writer connection, driven by a writer thread to which
//! every write closure is lent (group commit, see [`SqliteStore::write`]): waiting
//! writes each run in a `SAVEPOINT` of one `BEGIN IMMEDIATE` transaction, back to
//! back, and one `COMMIT` (one fsync) makes the whole batch durable before any member
//! is answered. Reads use a small pool of read-only connections, so in WAL mode they
//! see a consistent snapshot and never wait for a writer, and an in-process cache of
//! the lookups every call repeats (`read_cache`), kept coherent by the writer. WAL
//! checkpoints run on a background thread, off the path of acknowledged writes. The
//! schema is created and upgraded by numbered migrations recorded in `PRAGMA user_version`.

use std::cell::Cell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex};

use rusqlite::{ErrorCode, ffi};

use crate::lend::{Job, lend, submit};
use crate::read_cache::ReadCache;
use crate::{ReadTxn, SnapshotItem, Store, StoreError, StoreResult, WriteTxn};

mod export;
#[cfg(feature = "testing")]
pub mod faults;
mod open;
mod read;
mod schema;
#[cfg(test)]
mod tests;
mod txn;
mod write_txn;
mod writer;

use read::{ReaderPool, SHARED_READ, SharedRead, SharedReadGuard, begin_snapshot};
pub use schema::SCHEMA_VERSION;
use writer::{RESTART_RETRY, Writer, restart_wal};

/// A store in one SQLite database file.
pub struct SqliteStore {
    /// The writer connection: the writer thread holds it for a batch, other uses
    /// (schema version, restore, reads of an in-memory database) between batches.
    writer: Arc<Mutex<Writer>>,
    /// Write closures on their way to the writer thread; `None` once dropping.
    jobs: Option<mpsc::Sender<Job>>,
    writer_thread: Option<std::thread::JoinHandle<()>>,
    /// Read connections for a file database; `None` for an in-memory one,
    /// which has nothing to share and reads through the writer.
    readers: Option<ReaderPool>,
    path: Option<PathBuf>,
    /// Dropping this stops the checkpoint thread.
    _checkpointer: Option<SyncSender<()>>,
    /// Raised by the checkpoint thread when the WAL should start over.
    restart_wal: Arc<AtomicU8>,
    /// Lookups kept across commits (file databases only: an in-memory one reads
    /// through the writer, whose page cache no commit empties).
    cache: Option<Arc<ReadCache>>,
    /// Held while the store is [`SqliteStore::exclusive`].
    exclusive: Option<std::fs::File>,
}

impl Drop for SqliteStore {
    /// Stops the writer thread once it has answered every write sent to it.
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.writer_thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the SQLite writer thread panicked");
        }
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Store for SqliteStore {
    /// Copies the WAL into the database and truncates it, so that the frames holding rows
    /// deleted since (written before their deletion) leave the files; `secure_delete` has
    /// zeroed the rows themselves. Readers in the WAL can delay it: after a few tries the
    /// writer is asked to finish it before its next batch.
    fn scrub_deleted(&self) -> StoreResult<()> {
        let Some(path) = &self.path else { return Ok(()) };
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        if std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) == 0 {
            return Ok(());
        }
        for _ in 0..50 {
            if restart_wal(&self.lock_writer().conn) {
                return Ok(());
            }
            std::thread::sleep(RESTART_RETRY);
        }
        self.restart_wal.fetch_max(writer::WAL_TRUNCATE, Ordering::SeqCst);
        Ok(())
    }

    /// Hands nothing: a lookup in SQLite's write is no round trip.
    fn read_scope(&self, f: &mut dyn FnMut()) -> crate::Handoff {
        self.share_reads(f);
        crate::Handoff::none()
    }

    fn read(&self, f: &mut dyn FnMut(&dyn ReadTxn) -> StoreResult<()>) -> StoreResult<()> {
        if let Some((conn, generation)) = self.shared_read() {
            return self.read_in(conn, generation, f);
        }
        match &self.readers {
            Some(pool) => self.read_on(pool.take()?.conn(), f),
            None => self.read_on(&self.lock_writer().conn, f),
        }
    }

    /// Group commit: the closure is lent to the writer thread (see `writer::run_writer`),
    /// which runs it in a savepoint of a batch transaction, so a failing closure undoes
    /// only its own work, and answers once the batch's commit is synced. If the commit
    /// fails, every member fails. A panic in the closure continues here.
    fn write(
        &self,
        f: &mut (dyn FnMut(&mut dyn WriteTxn) -> StoreResult<()> + Send),
    ) -> StoreResult<()> {
        lend(f, |job, _| self.send_job(job))
    }

    /// Its writer thread runs it.
    fn submits_writes(&self) -> bool {
        true
    }

    /// The closure goes to the writer thread as [`Store::write`]'s does, in the same
    /// batches, and `done` is called there once its batch has committed (or failed).
    /// Nothing is handed: SQLite's read scope hands nothing.
    fn submit_write(&self, handoff: crate::Handoff, f: crate::OwnedWrite, done: crate::WriteDone) {
        drop(handoff);
        submit(f, done, |job| self.send_job(job));
    }

    fn latency(&self) -> crate::Latency {
        match &self.path {
            Some(_) => crate::Latency::LocalDisk,
            None => crate::Latency::Memory,
        }
    }

    fn refusing_writes(&self) -> Option<String> {
        self.lock_writer().fenced.clone()
    }

    fn describe(&self) -> String {
        match &self.path {
            Some(path) => format!("sqlite:{}", path.display()),
            None => "sqlite::memory:".to_owned(),
        }
    }

    fn export(&self, visit: &mut dyn FnMut(SnapshotItem) -> StoreResult<()>) -> StoreResult<()> {
        self.export_snapshot(visit)
    }

    fn import_from(&self, produce: &mut crate::ImportProducer<'_>) -> StoreResult<()> {
        self.import_snapshot(produce)
    }
}

impl SqliteStore {
    /// Sends a write job to the writer thread; gives it back if the writer has stopped.
    fn send_job(&self, job: Job) -> Result<(), Job> {
        match &self.jobs {
            Some(jobs) => jobs.send(job).map_err(|e| e.0),
            None => Err(job),
        }
    }

    /// [`Store::read_scope`]: one reader's snapshot for every read `f` makes on this thread.
    fn share_reads(&self, f: &mut dyn FnMut()) {
        let Some(pool) = &self.readers else { return f() };
        if SHARED_READ.with(Cell::get).is_some() {
            return f();
        }
        let Ok(reader) = pool.take() else { return f() };
        let Ok(generation) = begin_snapshot(reader.conn(), self.cache.as_deref()) else {
            return f();
        };
        {
            let _guard = SharedReadGuard;
            let shared = SharedRead { store: self, conn: reader.conn(), generation };
            SHARED_READ.with(|cell| cell.set(Some(shared)));
            f();
        }
        // Nothing was written, so ending with a rollback loses nothing. If it fails,
        // dropping the reader keeps the connection out of the pool.
        let _ = reader.conn().prepare_cached("ROLLBACK").and_then(|mut s| s.execute([]));
    }
}

/// The one place SQLite errors become store errors. Messages from SQLite name
/// tables, columns and constraints but never the values bound to a statement.
impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        if let rusqlite::Error::SqliteFailure(failure, message) = &error
            && failure.code == ErrorCode::ConstraintViolation
            && matches!(
                failure.extended_code,
                ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            )
        {
            let detail = message.as_deref().unwrap_or("unique constraint failed");
            return StoreError::Conflict(detail.to_owned());
        }
        StoreError::Backend(format!("sqlite: {error}"))
    }
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
