//! The single writer: its thread, group commit of batches in savepoints, WAL checkpoints.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use super::SqliteStore;
use super::open::{BUSY_TIMEOUT, configure};
use super::txn::SqlTxn;
use crate::lend::{Job, Member};
use crate::read_cache::{ReadCache, Touched};
use crate::{StoreError, StoreResult, WriteTxn};

/// A batch stops taking new members once it has this many...
pub(super) const BATCH_MAX_MEMBERS: usize = 256;

/// ...or is this old, so waiting for a shared commit stays short.
pub(super) const BATCH_MAX_AGE: Duration = Duration::from_millis(2);

/// How often the background thread copies the WAL back into the database.
pub(super) const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(200);

/// A WAL this large is started over (and its file truncated to this size): it
/// bounds the disk the WAL holds and the time opening the database takes to replay it.
pub(super) const WAL_RESTART_BYTES: u64 = 16 * 1024 * 1024;

/// What the writer is asked to do with the WAL before its next batch (the store's
/// `restart_wal`): nothing, start it over in place (the checkpoint thread, when it is past
/// [`WAL_RESTART_BYTES`]), or truncate it (a scrub of deleted rows that readers delayed).
pub(super) const WAL_KEEP: u8 = 0;
pub(super) const WAL_START_OVER: u8 = 1;
pub(super) const WAL_TRUNCATE: u8 = 2;

/// How long the writer waits for readers to leave the WAL when starting it over.
pub(super) const RESTART_WAIT: Duration = Duration::from_millis(2);

/// How soon the writer tries again when readers kept it from starting the WAL over.
pub(super) const RESTART_RETRY: Duration = Duration::from_millis(20);

/// The writer connection.
pub(super) struct Writer {
    pub(super) conn: Connection,
    /// Transactions committed on this connection.
    pub(super) commits: u64,
    /// The read cache this writer keeps coherent, and what the open batch changed in it.
    pub(super) cache: Option<Arc<ReadCache>>,
    pub(super) touched: Touched,
    /// Why this writer stopped accepting writes: a commit failed with an I/O error
    /// (a failed sync of the WAL), after which the page cache may hold what the disk
    /// does not. Only reopening the store, which reads the WAL back from the file and
    /// checks every frame's checksum, ends it (see `docs/design/faults.md`).
    pub(super) fenced: Option<String>,
}

/// Whether a failed COMMIT leaves the files in a state this process cannot vouch for:
/// an I/O error (above all a failed `fsync`: Linux reports it once, then marks the
/// pages clean, so a later sync succeeding proves nothing) or corruption. A full disk
/// does not: SQLite rolled the transaction back before anything claimed to be durable.
fn fences(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::SystemIoFailure | rusqlite::ErrorCode::DatabaseCorrupt)
    )
}

impl Writer {
    /// Ends the open batch: commits it if `keep`, else rolls it back.
    pub(super) fn end_batch(&mut self, keep: bool) -> StoreResult<()> {
        let touched = std::mem::take(&mut self.touched);
        let result = if !keep {
            // Nothing succeeded in this batch: nothing to keep, nothing to sync.
            self.conn.execute_batch("ROLLBACK").map_err(StoreError::from)
        } else {
            // Cached entries the batch changed go before the commit makes the change
            // visible, and again once it is done (see `read_cache`).
            let cache = self.cache.as_deref().filter(|_| !touched.is_empty());
            if let Some(cache) = cache {
                cache.commit_begins(&touched);
            }
            let committed = run_cached(&self.conn, "COMMIT");
            if let Err(error) = &committed
                && fences(error)
            {
                tracing::error!(
                    %error,
                    "a SQLite commit failed with an I/O error; the store accepts no more \
                     writes until it is reopened (restart the server once the disk is sound)"
                );
                self.fenced = Some(format!(
                    "the store stopped accepting writes after a commit failed ({error}); \
                     restart once the disk is sound"
                ));
            }
            let committed = committed.map_err(StoreError::from);
            if let Some(cache) = cache {
                cache.commit_ended(&touched, committed.is_ok());
            }
            self.commits += u64::from(committed.is_ok());
            committed
        };
        if !self.conn.is_autocommit() {
            // A failed COMMIT can leave the transaction open; end it so the
            // next write starts clean.
            if let Err(error) = self.conn.execute_batch("ROLLBACK") {
                tracing::error!(%error, "could not roll back a failed SQLite transaction");
            }
        }
        result
    }
}

/// The writer thread: takes the next write, begins a transaction, runs it and every
/// write that is waiting (up to [`BATCH_MAX_MEMBERS`], for at most [`BATCH_MAX_AGE`])
/// each in a savepoint, commits them with one sync, and only then answers each caller.
/// Writes that arrive during a commit form the next batch, so batches grow with the
/// load, and the writes of a batch run back to back on one thread instead of handing
/// a lock from thread to thread.
pub(super) fn run_writer(writer: &Mutex<Writer>, jobs: &mpsc::Receiver<Job>, restart: &AtomicU8) {
    // When the last try to start the WAL over found readers in it.
    let mut last_try: Option<Instant> = None;
    while let Ok(first) = jobs.recv() {
        let mut writer = writer.lock().unwrap_or_else(PoisonError::into_inner);
        // Asked for by the checkpoint thread, and tried again every RESTART_RETRY until
        // it succeeds: under steady reads a try often finds a reader in the WAL.
        let due = last_try.is_none_or(|at| at.elapsed() >= RESTART_RETRY);
        let asked = restart.load(Ordering::SeqCst);
        if due && asked != WAL_KEEP {
            let ok = if asked == WAL_TRUNCATE {
                restart_wal(&writer.conn)
            } else {
                start_wal_over(&writer.conn)
            };
            if ok {
                // Unless a truncation was asked for meanwhile.
                let _ =
                    restart.compare_exchange(asked, WAL_KEEP, Ordering::SeqCst, Ordering::SeqCst);
                last_try = None;
            } else {
                last_try = Some(Instant::now());
            }
        }
        if let Some(reason) = &writer.fenced {
            // Nothing more is written on top of a state that may not be on disk.
            first.answer(Member::Done(Err(StoreError::Backend(reason.clone()))));
            continue;
        }
        if let Err(error) =
            writer.conn.prepare_cached("BEGIN IMMEDIATE").and_then(|mut s| s.execute([]))
        {
            first.answer(Member::Done(Err(error.into())));
            continue;
        }
        let opened = Instant::now();
        let mut done: Vec<(Job, Member)> = Vec::new();
        let mut next = Some(first);
        let mut rolled_back = false;
        // Whether the batch's members run each in a savepoint: only once one failed after
        // changing rows (see `run_unguarded`).
        let mut guarded = false;
        while let Some(mut job) = next.take() {
            let w = &mut *writer;
            let track = w.cache.as_deref().map(|c| (&mut w.touched, c));
            // SAFETY: the job is answered below, after its last use here.
            let closure = unsafe { job.closure() };
            let own = if guarded {
                run_in_savepoint(&w.conn, track, closure)
            } else {
                match run_unguarded(&w.conn, track, closure) {
                    Unguarded::Ended(own) => own,
                    Unguarded::LeftChanges(own) => {
                        // Nothing but the transaction's rollback undoes its changes: the
                        // batch so far runs again from its start, each member in a
                        // savepoint, this one too (no member has been answered yet).
                        done.push((job, own));
                        guarded = true;
                        if !run_again_guarded(w, &mut done) {
                            rolled_back = true;
                            break;
                        }
                        if done.len() < BATCH_MAX_MEMBERS && opened.elapsed() < BATCH_MAX_AGE {
                            next = jobs.try_recv().ok();
                        }
                        continue;
                    }
                }
            };
            done.push((job, own));
            if writer.conn.is_autocommit() {
                // SQLite rolled the whole transaction back (an I/O error, a full
                // disk): every member's work is gone, and nothing it did was seen.
                rolled_back = true;
                break;
            }
            if done.len() < BATCH_MAX_MEMBERS && opened.elapsed() < BATCH_MAX_AGE {
                next = jobs.try_recv().ok();
            }
        }
        let committed = if rolled_back {
            writer.touched.clear();
            Err("the database rolled back the transaction after an error".to_owned())
        } else {
            let keep = done.iter().any(|(_, own)| matches!(own, Member::Done(Ok(()))));
            writer.end_batch(keep).map_err(|e| e.to_string())
        };
        drop(writer);
        crate::observe::group_committed(done.len(), opened.elapsed());
        for (job, own) in done {
            let reply = match (own, &committed) {
                (Member::Done(Ok(())), Err(message)) => {
                    Member::Done(Err(StoreError::Backend(message.clone())))
                }
                (own, _) => own,
            };
            job.answer(reply);
        }
    }
}

impl SqliteStore {
    /// Starts the writer thread (see [`run_writer`]).
    pub(super) fn start_writer(&mut self) -> StoreResult<()> {
        let (jobs, queue) = mpsc::channel();
        let (writer, restart) = (self.writer.clone(), self.restart_wal.clone());
        let thread = std::thread::Builder::new()
            .name("coffer-sqlite-writer".to_owned())
            .spawn(move || run_writer(&writer, &queue, &restart))
            .map_err(|e| StoreError::Backend(format!("cannot start the writer thread: {e}")))?;
        self.jobs = Some(jobs);
        self.writer_thread = Some(thread);
        Ok(())
    }

    /// Takes the writer connection between batches (the writer thread holds it for a
    /// whole batch, so no transaction is open on it here).
    pub(super) fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Starts the thread that checkpoints the WAL of the database at `path` every
/// [`CHECKPOINT_INTERVAL`], until the returned sender is dropped. A passive
/// checkpoint never blocks readers or the writer.
///
/// A passive checkpoint copies frames but cannot start the WAL over while readers
/// and the writer keep it in use, which under steady load is always: the file would
/// grow without end, and opening the database replays all of it. So once the WAL is
/// past [`WAL_RESTART_BYTES`], the thread raises `restart_wal`, and
/// the writer finishes the copy before its next batch, which lets SQLite start the
/// WAL over (see [`start_wal_over`]).
pub(super) fn start_checkpointer(
    path: &Path,
    restart_wal: Arc<AtomicU8>,
) -> StoreResult<SyncSender<()>> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    configure(&conn)?;
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let wal = PathBuf::from(wal);
    let (stop, stopped) = mpsc::sync_channel::<()>(0);
    std::thread::Builder::new()
        .name("coffer-sqlite-checkpoint".to_owned())
        .spawn(move || {
            // Consecutive checks that found the WAL past its bound.
            let mut checks_over = 0u32;
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_INTERVAL) {
                if let Err(error) = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE);") {
                    tracing::warn!(%error, "could not checkpoint the SQLite WAL");
                }
                // Under steady writes the copy is never complete when looked at, so the
                // size alone decides; the writer finishes the copy with no writes coming.
                let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
                checks_over = if size > WAL_RESTART_BYTES { checks_over + 1 } else { 0 };
                let asked = wal_request(checks_over);
                if asked != WAL_KEEP {
                    restart_wal.fetch_max(asked, Ordering::SeqCst);
                }
            }
        })
        .map_err(|e| StoreError::Backend(format!("cannot start the checkpoint thread: {e}")))?;
    Ok(stop)
}

/// How many consecutive checks ([`CHECKPOINT_INTERVAL`] apart) may find the WAL past its
/// bound before starting it over in place gives way to truncating it.
const CHECKS_BEFORE_TRUNCATE: u32 = 5;

/// What the checkpoint thread asks of the writer after `checks_over` consecutive checks
/// found the WAL past [`WAL_RESTART_BYTES`]: nothing, then a start over in place
/// (`RESTART`, cheap), and a truncation once that has not brought the file back within
/// [`CHECKS_BEFORE_TRUNCATE`] checks. A `RESTART` can report success and still leave the
/// file at its size: the next commit writes from the WAL's start (and `journal_size_limit`
/// cuts the file) only if no reader holds a read mark in it when that commit begins, which
/// steady reads on a loaded machine prevented for 20 s in a test run; a truncation cuts
/// the file itself.
fn wal_request(checks_over: u32) -> u8 {
    match checks_over {
        0 => WAL_KEEP,
        n if n < CHECKS_BEFORE_TRUNCATE => WAL_START_OVER,
        _ => WAL_TRUNCATE,
    }
}

/// Starts the WAL over from the writer, between batches, when the checkpoint thread
/// finds it past [`WAL_RESTART_BYTES`]: copies the few frames written since that thread's
/// last passive checkpoint into the database, waits, at most [`RESTART_WAIT`], for readers
/// that began before the copy, and has the next commit write the WAL from its start,
/// over the old frames (`RESTART`), the file cut back to [`WAL_RESTART_BYTES`] by
/// `journal_size_limit`. Unlike [`restart_wal`]'s `TRUNCATE`, it leaves the file in place:
/// cutting a 16 MiB file to nothing on every turn of the WAL kept every write waiting
/// 15-140 ms (the truncation's own file system work on a busy disk), about every 1-3 s
/// under load, which made SQLite's p99.9 (see BENCHMARKS.md, "Ninth session"), and the
/// commits after it extended the file again. The file stays bounded all the same, and
/// opening the database replays only the frames since the restart. Returns whether the
/// WAL will start over.
pub(super) fn start_wal_over(conn: &Connection) -> bool {
    checkpoint_between_batches(conn, "PRAGMA wal_checkpoint(RESTART)")
}

/// Starts the WAL over from the writer, between batches: copies what is left of it
/// into the database, waits, at most [`RESTART_WAIT`], for readers that began before
/// the copy to finish (later ones read the database file only), and truncates the
/// file; the next batch writes from its start. The wait is short because every write
/// waits meanwhile, and a reader of this process may itself be waiting for the writer.
/// If readers stay, the writer tries again [`RESTART_RETRY`] later. (`RESTART`, which
/// leaves the truncation to the next commit through `journal_size_limit`, sometimes
/// left the file at its size under CPU contention although it reported success.)
/// [`SqliteStore::scrub_deleted`] uses it, since only a truncation takes the frames of
/// deleted rows out of the file at once.
pub(super) fn restart_wal(conn: &Connection) -> bool {
    checkpoint_between_batches(conn, "PRAGMA wal_checkpoint(TRUNCATE)")
}

/// Runs the checkpoint `pragma` on the writer connection with the short [`RESTART_WAIT`]
/// for readers; true when it completed (no reader kept it from the WAL's end).
fn checkpoint_between_batches(conn: &Connection, pragma: &str) -> bool {
    let _ = conn.busy_timeout(RESTART_WAIT);
    let restarted = conn.query_row(pragma, [], |row| row.get::<_, i64>(0));
    if let Err(error) = conn.busy_timeout(BUSY_TIMEOUT) {
        tracing::warn!(%error, "could not restore the SQLite busy timeout");
    }
    match restarted {
        Ok(0) => true,
        Ok(_) => {
            tracing::debug!("readers still use the WAL; trying again shortly");
            false
        }
        Err(error) => {
            tracing::warn!(%error, "could not checkpoint the SQLite WAL");
            false
        }
    }
}

/// Runs one statement of the batch's framing (`SAVEPOINT`, `RELEASE`, `COMMIT`) through
/// the connection's statement cache: every write runs two of them and every batch one
/// more, and `execute_batch` would parse each anew (about 1% of a PutSecretValue's CPU).
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// How a batch member run without a savepoint ([`run_unguarded`]) ended.
enum Unguarded {
    /// It succeeded, or it failed having changed no row: its outcome stands.
    Ended(Member),
    /// It failed (or panicked) after changing rows, which only rolling back the whole
    /// transaction undoes.
    LeftChanges(Member),
}

/// Runs `f` in the open transaction without a savepoint of its own. A savepoint per
/// member made SQLite copy every page the member first changed into the savepoint's
/// journal (in 1 KiB chunks, each allocated), and run two more statements, for every
/// write, although writes seldom fail, and most that do fail before changing anything
/// (a missing secret, a refused request, a token in use). Whether `f` changed a row is
/// read from the connection's count of changed rows, which counts every row an
/// `INSERT`, `UPDATE` or `DELETE` of `f` changed (a statement that failed has had its
/// own changes undone by SQLite and counts none); the `WriteTxn` methods change rows
/// through such statements only.
fn run_unguarded(
    conn: &Connection,
    track: Option<(&mut Touched, &ReadCache)>,
    f: &mut (dyn FnMut(&mut dyn WriteTxn) -> StoreResult<()> + Send),
) -> Unguarded {
    let before = conn.total_changes();
    let mut txn = SqlTxn::new(conn, track);
    let ran = catch_unwind(AssertUnwindSafe(|| f(&mut txn)));
    let failed = !matches!(ran, Ok(Ok(())));
    if !failed {
        txn.succeeded();
    }
    let own = match ran {
        Ok(result) => Member::Done(result),
        Err(payload) => Member::Panicked(payload),
    };
    if failed && conn.total_changes() != before {
        Unguarded::LeftChanges(own)
    } else {
        Unguarded::Ended(own)
    }
}

/// After a member failed having changed rows ([`Unguarded::LeftChanges`]): rolls the
/// transaction back, begins it again and runs every member of `done` again, in order,
/// each in a savepoint, as a store that reruns a transaction does (PostgreSQL after a
/// serialization conflict; every write closure may be run again). A member that panicked
/// keeps its panic and is not run again. Each member runs at most twice, so a batch
/// costs at most twice its work whatever fails in it. Returns false when the
/// transaction could not be begun again or SQLite rolled it back meanwhile (every
/// member then fails, as in any batch that ends so).
fn run_again_guarded(writer: &mut Writer, done: &mut [(Job, Member)]) -> bool {
    let restarted = run_cached(&writer.conn, "ROLLBACK")
        .and_then(|()| run_cached(&writer.conn, "BEGIN IMMEDIATE"));
    if let Err(error) = restarted {
        tracing::error!(%error, "could not begin a SQLite batch again after a member failed");
        if !writer.conn.is_autocommit()
            && let Err(error) = writer.conn.execute_batch("ROLLBACK")
        {
            tracing::error!(%error, "could not roll back a SQLite transaction");
        }
        for (_, own) in done.iter_mut() {
            if let Member::Done(result) = own {
                *result = Err(StoreError::Backend(format!(
                    "the batch could not be run again after a failure ({error})"
                )));
            }
        }
        return false;
    }
    // What the members left of their secrets' versions was rolled back with them.
    writer.touched.forget_versions_left();
    for (job, own) in done.iter_mut() {
        if matches!(own, Member::Panicked(_)) {
            continue;
        }
        let w = &mut *writer;
        let track = w.cache.as_deref().map(|c| (&mut w.touched, c));
        // SAFETY: the job is answered by the writer loop, after its last use here.
        *own = run_in_savepoint(&w.conn, track, unsafe { job.closure() });
        if w.conn.is_autocommit() {
            return false;
        }
    }
    true
}

/// Runs `f` in a savepoint of the open transaction: kept if it succeeds,
/// undone (alone) if it fails or panics.
pub(super) fn run_in_savepoint(
    conn: &Connection,
    track: Option<(&mut Touched, &ReadCache)>,
    f: &mut (dyn FnMut(&mut dyn WriteTxn) -> StoreResult<()> + Send),
) -> Member {
    if let Err(error) = run_cached(conn, "SAVEPOINT coffer_write") {
        return Member::Done(Err(error.into()));
    }
    let mut txn = SqlTxn::new(conn, track);
    let ran = catch_unwind(AssertUnwindSafe(|| f(&mut txn)));
    let keep = matches!(ran, Ok(Ok(())));
    if keep {
        txn.succeeded();
    }
    let ended = if keep {
        run_cached(conn, "RELEASE coffer_write")
    } else {
        conn.execute_batch("ROLLBACK TO coffer_write; RELEASE coffer_write")
    };
    if let Err(error) = ended
        && !conn.is_autocommit()
    {
        // The savepoint cannot be ended, so the batch is in an unknown state:
        // give it up whole (the caller sees the transaction gone).
        tracing::error!(%error, "could not end a SQLite savepoint; rolling the batch back");
        if let Err(error) = conn.execute_batch("ROLLBACK") {
            tracing::error!(%error, "could not roll back a SQLite transaction");
        }
    }
    match ran {
        Ok(result) => Member::Done(result),
        Err(payload) => Member::Panicked(payload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wal_past_its_bound_is_started_over_then_truncated_if_that_did_not_bring_it_back() {
        assert_eq!(wal_request(0), WAL_KEEP);
        for checks in 1..CHECKS_BEFORE_TRUNCATE {
            assert_eq!(wal_request(checks), WAL_START_OVER, "after {checks} checks");
        }
        assert_eq!(wal_request(CHECKS_BEFORE_TRUNCATE), WAL_TRUNCATE);
        assert_eq!(wal_request(u32::MAX), WAL_TRUNCATE);
    }
}
