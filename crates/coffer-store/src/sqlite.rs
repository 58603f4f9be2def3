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
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use coffer_core::model::{Millis, Scope, SecretMeta, VersionMeta};
use rusqlite::{
    Connection, ErrorCode, OpenFlags, OptionalExtension, Row, ToSql, TransactionBehavior, ffi,
    params,
};

use crate::lend::{Job, Member, lend};
use crate::read_cache::{self, Entry, ReadCache, Touched};
use crate::{
    CursorKey, ListQuery, ReadTxn, SealedValue, SnapshotItem, SortBy, Store, StoreError,
    StoreResult, WriteTxn, cursor_of,
};

/// The schema migrations, in order. Migration `i` (counting from 1) brings the
/// database from `user_version` `i - 1` to `i`. Never edit a released step:
/// append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    //
    // `seq` is the rowid, and AUTOINCREMENT keeps it from ever being reused,
    // so it is a stable insertion order. Every index on `secrets` carries it
    // last (the unique name index implicitly, as every index ends with the
    // rowid), which makes each one serve a sort order with its tie-breaker.
    // `accessed_sort_ms` is the LastAccessedDate sort position: the date, or
    // i64::MIN when never accessed, as `cursor_of` says. It is a plain column
    // rather than an expression because SQLite only walks an index by a
    // row-value range like `(key, seq) > (?, ?)` on real columns.
    r#"
    CREATE TABLE secrets (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        arn TEXT NOT NULL UNIQUE,
        account TEXT NOT NULL,
        region TEXT NOT NULL,
        name TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        last_changed_ms INTEGER NOT NULL,
        accessed_sort_ms INTEGER NOT NULL,
        deletion_ms INTEGER,
        meta TEXT NOT NULL
    );
    CREATE UNIQUE INDEX secrets_by_name ON secrets (account, region, name);
    CREATE INDEX secrets_by_created ON secrets (account, region, created_ms, seq);
    CREATE INDEX secrets_by_changed ON secrets (account, region, last_changed_ms, seq);
    CREATE INDEX secrets_by_accessed ON secrets (account, region, accessed_sort_ms, seq);
    CREATE INDEX secrets_by_deletion ON secrets (deletion_ms) WHERE deletion_ms IS NOT NULL;

    CREATE TABLE versions (
        arn TEXT NOT NULL REFERENCES secrets (arn) ON DELETE CASCADE,
        version_id TEXT NOT NULL,
        ord INTEGER NOT NULL,
        created_ms INTEGER NOT NULL,
        meta TEXT NOT NULL,
        value BLOB NOT NULL,
        PRIMARY KEY (arn, version_id)
    );
    CREATE INDEX versions_by_ord ON versions (arn, ord);

    CREATE TABLE wrapped_keys (
        key_id TEXT PRIMARY KEY NOT NULL,
        wrapped BLOB NOT NULL
    );

    CREATE TABLE settings (
        name TEXT PRIMARY KEY NOT NULL,
        value BLOB NOT NULL
    );
    "#,
    // Version 2: records of other subsystems (KMS keys and aliases, principals).
    r#"
    CREATE TABLE records (
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        value BLOB NOT NULL,
        PRIMARY KEY (kind, key)
    ) WITHOUT ROWID;
    "#,
    // Version 3: records in an ordinary (rowid) table. Audit events are records of a
    // few KiB, and a WITHOUT ROWID table keeps only ~1 KiB of a row in its B-tree page,
    // so every event cost an overflow page and rebalancing; a rowid table appends whole
    // events to its last page, and the primary key index stays small.
    r#"
    CREATE TABLE records_v3 (
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        value BLOB NOT NULL,
        PRIMARY KEY (kind, key)
    );
    INSERT INTO records_v3 (kind, key, value) SELECT kind, key, value FROM records;
    DROP TABLE records;
    ALTER TABLE records_v3 RENAME TO records;
    "#,
    // Version 4: versions split into small metadata rows clustered by secret and their
    // sealed values apart. In one rowid table, a secret's versions lay wherever each was
    // appended, so reading them (every PutSecretValue does) visited a page per version,
    // and moving staging labels rewrote rows on as many scattered pages; now they share
    // a page or a few, and each new value is appended to the end of `version_values`.
    r#"
    CREATE TABLE version_values (
        id INTEGER PRIMARY KEY,
        value BLOB NOT NULL
    );
    CREATE TABLE version_meta (
        arn TEXT NOT NULL REFERENCES secrets (arn) ON DELETE CASCADE,
        version_id TEXT NOT NULL,
        ord INTEGER NOT NULL,
        created_ms INTEGER NOT NULL,
        value_id INTEGER NOT NULL,
        meta TEXT NOT NULL,
        PRIMARY KEY (arn, version_id)
    ) WITHOUT ROWID;
    INSERT INTO version_values (id, value) SELECT rowid, value FROM versions;
    INSERT INTO version_meta (arn, version_id, ord, created_ms, value_id, meta)
        SELECT arn, version_id, ord, created_ms, rowid, meta FROM versions;
    DROP TABLE versions;
    "#,
];

/// The schema version this build creates and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// How long a connection waits for a lock held by another process before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The most read connections open at once; further readers wait for one to come back.
const MAX_READERS: usize = 8;

/// Listing reads this many rows in its first query and doubles up to the
/// maximum, so a short first page stays cheap and a long walk takes few queries.
const FIRST_CHUNK: i64 = 64;
const MAX_CHUNK: i64 = 1024;

/// Enough prepared statements for every query this module issues, listing variants included.
const STATEMENT_CACHE: usize = 64;

/// The `accessed_sort_ms` column of a secret: its position under
/// [`SortBy::LastAccessedDate`], as [`crate::cursor_of`] defines it.
fn accessed_sort_ms(meta: &SecretMeta) -> Millis {
    meta.last_accessed_ms.unwrap_or(i64::MIN)
}

/// A batch stops taking new members once it has this many...
const BATCH_MAX_MEMBERS: usize = 256;

/// ...or is this old, so waiting for a shared commit stays short.
const BATCH_MAX_AGE: Duration = Duration::from_millis(2);

/// How often the background thread copies the WAL back into the database.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(200);

/// A WAL this large is started over (and its file truncated to this size): it
/// bounds the disk the WAL holds and the time opening the database takes to replay it.
const WAL_RESTART_BYTES: u64 = 16 * 1024 * 1024;

/// How long the writer waits for readers to leave the WAL when starting it over.
const RESTART_WAIT: Duration = Duration::from_millis(2);

/// How soon the writer tries again when readers kept it from starting the WAL over.
const RESTART_RETRY: Duration = Duration::from_millis(20);

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
    restart_wal: Arc<AtomicBool>,
    /// Lookups kept across commits (file databases only: an in-memory one reads
    /// through the writer, whose page cache no commit empties).
    cache: Option<Arc<ReadCache>>,
    /// Held while the store is [`SqliteStore::exclusive`].
    exclusive: Option<std::fs::File>,
}

/// The writer connection.
struct Writer {
    conn: Connection,
    /// Transactions committed on this connection.
    commits: u64,
    /// The read cache this writer keeps coherent, and what the open batch changed in it.
    cache: Option<Arc<ReadCache>>,
    touched: Touched,
}

impl Writer {
    /// Ends the open batch: commits it if `keep`, else rolls it back.
    fn end_batch(&mut self, keep: bool) -> StoreResult<()> {
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
            let committed = self.conn.execute_batch("COMMIT").map_err(StoreError::from);
            if let Some(cache) = cache {
                cache.commit_ended(&touched);
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
fn run_writer(writer: &Mutex<Writer>, jobs: &mpsc::Receiver<Job>, restart: &AtomicBool) {
    // When the last try to start the WAL over found readers in it.
    let mut last_try: Option<Instant> = None;
    while let Ok(first) = jobs.recv() {
        let mut writer = writer.lock().unwrap_or_else(PoisonError::into_inner);
        // Asked for by the checkpoint thread, and tried again every RESTART_RETRY until
        // it succeeds: under steady reads a try often finds a reader in the WAL.
        let due = last_try.is_none_or(|at| at.elapsed() >= RESTART_RETRY);
        if due && restart.load(Ordering::SeqCst) {
            if restart_wal(&writer.conn) {
                restart.store(false, Ordering::SeqCst);
                last_try = None;
            } else {
                last_try = Some(Instant::now());
            }
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
        while let Some(mut job) = next.take() {
            let w = &mut *writer;
            let track = w.cache.as_deref().map(|c| (&mut w.touched, c));
            // SAFETY: the job is answered below, after its last use here.
            let own = run_in_savepoint(&w.conn, track, unsafe { job.closure() });
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
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> StoreResult<Self> {
        make_private(path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut writer = Connection::open_with_flags(path, flags)?;
        configure(&writer)?;
        let mode: String = writer.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!(
                "the database could not be switched to WAL mode (it reports {mode})"
            )));
        }
        // `temp_store = MEMORY` keeps the journal of each writer's savepoint (group
        // commit) in memory instead of spilling it to a temporary file.
        writer.execute_batch(
            "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;",
        )?;
        migrate(&mut writer)?;
        // Checkpoints move to a thread of their own (below), so no acknowledged
        // write waits for one.
        writer.execute_batch(&format!(
            "PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = {WAL_RESTART_BYTES};"
        ))?;
        let restart_wal = Arc::new(AtomicBool::new(false));
        let checkpointer = start_checkpointer(path, restart_wal.clone())?;
        tracing::debug!(path = %path.display(), "opened SQLite store");
        let cache = Some(Arc::new(ReadCache::new(Vec::new())));
        let writer =
            Writer { conn: writer, commits: 0, cache: cache.clone(), touched: Touched::default() };
        let mut store = SqliteStore {
            writer: Arc::new(Mutex::new(writer)),
            jobs: None,
            writer_thread: None,
            readers: Some(ReaderPool::new(path.to_owned())),
            path: Some(path.to_owned()),
            _checkpointer: Some(checkpointer),
            restart_wal,
            cache,
            exclusive: None,
        };
        store.start_writer()?;
        Ok(store)
    }

    /// Takes the database for this process alone among the processes that change it
    /// through a store (servers, restores): an exclusive lock on `<file>.lock`, held as
    /// long as the store. The read cache needs it, being kept coherent by this
    /// process's writer only; `coffer admin` (which changes IAM records, never cached),
    /// backups and `audit verify` do not take it. A second server on the same file
    /// is refused instead of serving what the other one changed from a stale cache.
    pub fn exclusive(mut self) -> StoreResult<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let Some(path) = &self.path else { return Ok(self) };
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| StoreError::Backend(format!("cannot open the lock file: {e}")))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Backend(format!(
                    "another process (a coffer serve or restore) is using {}",
                    path.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(StoreError::Backend(format!("cannot lock the database: {e}")));
            }
        }
        self.exclusive = Some(file);
        Ok(self)
    }

    /// Starts the writer thread (see [`run_writer`]).
    fn start_writer(&mut self) -> StoreResult<()> {
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

    /// Also caches records of these kinds in memory across reads (secrets, versions
    /// and values always are). The caller promises that only this store changes them:
    /// a change made by another process would not be seen until the cache drops the
    /// entry. KMS keys qualify; IAM records, which `coffer admin` changes while the
    /// server runs, do not.
    pub fn cache_records(mut self, kinds: &[&str]) -> Self {
        if self.cache.is_some() {
            let cache = Arc::new(ReadCache::new(kinds.iter().map(|k| k.to_string()).collect()));
            self.lock_writer().cache = Some(cache.clone());
            self.cache = Some(cache);
        }
        self
    }

    /// A private database that lives as long as the store; for tests.
    pub fn open_in_memory() -> StoreResult<Self> {
        let mut conn = Connection::open_in_memory()?;
        configure(&conn)?;
        conn.execute_batch("PRAGMA foreign_keys = ON;")?;
        migrate(&mut conn)?;
        let writer = Writer { conn, commits: 0, cache: None, touched: Touched::default() };
        let mut store = SqliteStore {
            writer: Arc::new(Mutex::new(writer)),
            jobs: None,
            writer_thread: None,
            readers: None,
            path: None,
            _checkpointer: None,
            restart_wal: Arc::default(),
            cache: None,
            exclusive: None,
        };
        store.start_writer()?;
        Ok(store)
    }

    /// The schema version recorded in the database.
    pub fn schema_version(&self) -> StoreResult<i64> {
        let writer = self.lock_writer();
        Ok(writer.conn.query_row("PRAGMA user_version", [], |row| row.get(0))?)
    }

    /// How many transactions `write` has committed since the store was opened.
    /// With concurrent writers this is less than the writes acknowledged: they
    /// shared commits.
    pub fn commits(&self) -> u64 {
        self.lock_writer().commits
    }

    /// Takes the writer connection between batches (the writer thread holds it for a
    /// whole batch, so no transaction is open on it here).
    fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Makes the database at `path` readable by its owner alone, whatever the umask: creates
/// it empty with mode 0600 (SQLite takes an empty file for a new database) if it does not
/// exist, and takes group and other access away from it, its `-wal` and `-shm` (as an older
/// version may have left them). SQLite creates the `-wal` and `-shm` files with the mode
/// of the database file, so they are private from then on too.
fn make_private(path: &Path) -> StoreResult<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let created = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path);
    match created {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(StoreError::Backend(format!(
                "cannot create the database {}: {e}",
                path.display()
            )));
        }
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let file = PathBuf::from(file);
        let Ok(meta) = std::fs::metadata(&file) else { continue };
        let mode = meta.permissions().mode() & 0o7777;
        if !meta.is_file() || mode & 0o077 == 0 {
            continue;
        }
        match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode & 0o700)) {
            Ok(()) => tracing::warn!(
                file = %file.display(),
                was = format!("{mode:04o}"),
                "the database file was readable by others; it is now private (0600)"
            ),
            Err(error) => tracing::warn!(
                file = %file.display(),
                mode = format!("{mode:04o}"),
                %error,
                "the database file is readable by others and could not be made private"
            ),
        }
    }
    Ok(())
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
/// WAL over (see [`restart_wal`]).
fn start_checkpointer(path: &Path, restart_wal: Arc<AtomicBool>) -> StoreResult<SyncSender<()>> {
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
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_INTERVAL) {
                if let Err(error) = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE);") {
                    tracing::warn!(%error, "could not checkpoint the SQLite WAL");
                }
                // Under steady writes the copy is never complete when looked at, so the
                // size alone decides; the writer finishes the copy with no writes coming.
                let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
                if size > WAL_RESTART_BYTES {
                    restart_wal.store(true, Ordering::SeqCst);
                }
            }
        })
        .map_err(|e| StoreError::Backend(format!("cannot start the checkpoint thread: {e}")))?;
    Ok(stop)
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

thread_local! {
    /// The read transaction a [`Store::read_scope`] holds open on this thread: the
    /// store it belongs to and the connection it is open on.
    static SHARED_READ: Cell<Option<SharedRead>> = const { Cell::new(None) };
}

/// A read transaction shared by a scope: its store, its connection, and the cache
/// generation noted when its snapshot was taken.
#[derive(Clone, Copy)]
struct SharedRead {
    store: *const SqliteStore,
    conn: *const Connection,
    generation: u64,
}

/// Clears [`SHARED_READ`] when the scope ends, also by a panic.
struct SharedReadGuard;

impl Drop for SharedReadGuard {
    fn drop(&mut self) {
        SHARED_READ.with(|shared| shared.set(None));
    }
}

impl SqliteStore {
    /// The connection of this thread's shared read transaction on this store, if one
    /// is open, and the cache generation of its snapshot.
    fn shared_read(&self) -> Option<(&Connection, u64)> {
        let shared = SHARED_READ.with(Cell::get)?;
        if !std::ptr::eq(shared.store, self) {
            return None;
        }
        // SAFETY: the pointer was set by `read_scope` on this thread from a connection
        // that scope owns for as long as the pointer is set (its guard clears it before
        // the connection goes back to the pool), and it is only used on this thread.
        Some((unsafe { &*shared.conn }, shared.generation))
    }

    /// Runs `f` in a read transaction of its own on `conn`: one snapshot for every
    /// lookup in `f`, ended with a rollback (nothing was written, so nothing is lost).
    fn read_on(
        &self,
        conn: &Connection,
        f: &mut dyn FnMut(&dyn ReadTxn) -> StoreResult<()>,
    ) -> StoreResult<()> {
        let generation = begin_snapshot(conn, self.cache.as_deref())?;
        let result = self.read_in(conn, generation, f);
        let ended = conn.prepare_cached("ROLLBACK").and_then(|mut s| s.execute([]));
        result?;
        Ok(ended.map(|_| ())?)
    }

    /// Runs `f` over `conn`'s open read transaction, through the cache when there is one.
    fn read_in(
        &self,
        conn: &Connection,
        generation: u64,
        f: &mut dyn FnMut(&dyn ReadTxn) -> StoreResult<()>,
    ) -> StoreResult<()> {
        let sql = SqlTxn { conn, track: None };
        match &self.cache {
            Some(cache) => f(&CachedTxn { sql, cache, generation }),
            None => f(&sql),
        }
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
        self.restart_wal.store(true, Ordering::SeqCst);
        Ok(())
    }

    fn read_scope(&self, f: &mut dyn FnMut()) {
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

    fn read(&self, f: &mut dyn FnMut(&dyn ReadTxn) -> StoreResult<()>) -> StoreResult<()> {
        if let Some((conn, generation)) = self.shared_read() {
            return self.read_in(conn, generation, f);
        }
        match &self.readers {
            Some(pool) => self.read_on(pool.take()?.conn(), f),
            None => self.read_on(&self.lock_writer().conn, f),
        }
    }

    /// Group commit: the closure is lent to the writer thread (see [`run_writer`]),
    /// which runs it in a savepoint of a batch transaction, so a failing closure undoes
    /// only its own work, and answers once the batch's commit is synced. If the commit
    /// fails, every member fails. A panic in the closure continues here.
    fn write(
        &self,
        f: &mut (dyn FnMut(&mut dyn WriteTxn) -> StoreResult<()> + Send),
    ) -> StoreResult<()> {
        let jobs = self.jobs.as_ref();
        lend(f, |job, _| match jobs {
            Some(jobs) => jobs.send(job).map_err(|e| e.0),
            None => Err(job),
        })
    }

    fn latency(&self) -> crate::Latency {
        match &self.path {
            Some(_) => crate::Latency::LocalDisk,
            None => crate::Latency::Memory,
        }
    }

    fn describe(&self) -> String {
        match &self.path {
            Some(path) => format!("sqlite:{}", path.display()),
            None => "sqlite::memory:".to_owned(),
        }
    }

    fn export(&self, visit: &mut dyn FnMut(SnapshotItem) -> StoreResult<()>) -> StoreResult<()> {
        // One read transaction (a WAL snapshot) for everything, so a backup
        // taken while the server runs is still one consistent state.
        let mut run = |conn: &Connection| -> StoreResult<()> {
            let tx = conn.unchecked_transaction()?;
            let result = export_from(&tx, visit);
            let ended = tx.rollback();
            result?;
            Ok(ended?)
        };
        match &self.readers {
            Some(pool) => run(pool.take()?.conn()),
            None => run(&self.lock_writer().conn),
        }
    }

    fn import_from(&self, produce: &mut crate::ImportProducer<'_>) -> StoreResult<()> {
        let mut writer = self.lock_writer();
        // Everything may change: the cache starts over, with the generation bumped
        // before the commit and after it, as for any batch (see `read_cache`).
        let mut everything = Touched::default();
        everything.everything();
        if let Some(cache) = &self.cache {
            cache.commit_begins(&everything);
        }
        let conn = &mut writer.conn;
        let result = (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let occupied: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM secrets) OR EXISTS (SELECT 1 FROM wrapped_keys) \
                 OR EXISTS (SELECT 1 FROM settings) OR EXISTS (SELECT 1 FROM records)",
                [],
                |row| row.get(0),
            )?;
            if occupied {
                return Err(crate::not_empty());
            }
            crate::import_items(&mut SqlTxn { conn: &tx, track: None }, produce)?;
            Ok(tx.commit()?)
        })();
        if let Some(cache) = &self.cache {
            cache.commit_ended(&everything);
        }
        if !conn.is_autocommit()
            && let Err(error) = conn.execute_batch("ROLLBACK")
        {
            tracing::error!(%error, "could not roll back a failed SQLite import");
        }
        result
    }
}

/// Streams the whole database to `visit`, inside the caller's transaction.
fn export_from(
    conn: &Connection,
    visit: &mut dyn FnMut(SnapshotItem) -> StoreResult<()>,
) -> StoreResult<()> {
    let sql = format!("SELECT {SECRET_COLUMNS} FROM secrets ORDER BY seq");
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        visit(SnapshotItem::Secret(SecretRow::from_row(row)?.decode()?))?;
    }
    let mut stmt = conn.prepare(
        "SELECT m.arn, m.version_id, m.meta, v.value FROM version_meta m \
         JOIN secrets s ON s.arn = m.arn JOIN version_values v ON v.id = m.value_id \
         ORDER BY s.seq, m.ord",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let json: String = row.get(2)?;
        let mut meta: VersionMeta =
            serde_json::from_str(&json).map_err(|e| unreadable("version metadata", &e))?;
        meta.version_id = row.get(1)?;
        visit(SnapshotItem::Version { arn: row.get(0)?, meta, value: SealedValue(row.get(3)?) })?;
    }
    let mut stmt = conn.prepare("SELECT key_id, wrapped FROM wrapped_keys ORDER BY key_id")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        visit(SnapshotItem::WrappedKey { key_id: row.get(0)?, wrapped: row.get(1)? })?;
    }
    let mut stmt = conn.prepare("SELECT name, value FROM settings ORDER BY name")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        visit(SnapshotItem::Setting { name: row.get(0)?, value: row.get(1)? })?;
    }
    let mut stmt = conn.prepare("SELECT kind, key, value FROM records ORDER BY kind, key")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        visit(SnapshotItem::Record { kind: row.get(0)?, key: row.get(1)?, value: row.get(2)? })?;
    }
    Ok(())
}

/// Settings every connection gets.
fn configure(conn: &Connection) -> StoreResult<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // Deleted rows (a deleted secret's sealed values, a deleted KMS key's wrapped
    // material, superseded wrappings after a master-key rotation) are overwritten with
    // zeros instead of lingering in free space and on the freelist. Their older copies in
    // the WAL go when it starts over: see `SqliteStore::scrub_deleted`.
    let on: i64 = conn.query_row("PRAGMA secure_delete = ON", [], |row| row.get(0))?;
    if on != 1 {
        return Err(StoreError::Backend(
            "this SQLite build does not support secure_delete".to_owned(),
        ));
    }
    Ok(())
}

/// Applies the migrations the database has not seen yet, all in one transaction.
fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::Backend(format!(
            "the database has schema version {found}, newer than the {SCHEMA_VERSION} this build knows"
        )));
    }
    if found < 0 {
        return Err(StoreError::Backend(format!("the database has schema version {found}")));
    }
    for (done, step) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", done as i64 + 1)?;
    }
    tx.commit()?;
    if found < SCHEMA_VERSION {
        tracing::info!(from = found, to = SCHEMA_VERSION, "migrated the SQLite schema");
    }
    Ok(())
}

/// Begins a read transaction on `conn` and takes its snapshot at once, returning the
/// cache generation noted just before (0 without a cache): cached entries may serve
/// the transaction only while the generation stays that one (see `read_cache`).
fn begin_snapshot(conn: &Connection, cache: Option<&ReadCache>) -> StoreResult<u64> {
    conn.prepare_cached("BEGIN")?.execute([])?;
    let Some(cache) = cache else { return Ok(0) };
    let generation = cache.generation();
    // A deferred transaction takes its snapshot at its first read of a table; this is
    // one. (With `PRAGMA schema_version` instead, the WAL test failed more often under
    // CPU contention: 1 run in 3 against 1 in 5.)
    let taken: rusqlite::Result<i64> = conn
        .prepare_cached("SELECT count(*) FROM settings WHERE 0")?
        .query_row([], |row| row.get(0));
    if let Err(error) = taken {
        let _ = conn.prepare_cached("ROLLBACK").and_then(|mut s| s.execute([]));
        return Err(error.into());
    }
    Ok(generation)
}

/// Starts the WAL over from the writer, between batches: copies what is left of it
/// into the database, waits, at most [`RESTART_WAIT`], for readers that began before
/// the copy to finish (later ones read the database file only), and truncates the
/// file; the next batch writes from its start. The wait is short because every write
/// waits meanwhile, and a reader of this process may itself be waiting for the writer.
/// If readers stay, the writer tries again [`RESTART_RETRY`] later. (`RESTART`, which
/// leaves the truncation to the next commit through `journal_size_limit`, sometimes
/// left the file at its size under CPU contention although it reported success.)
fn restart_wal(conn: &Connection) -> bool {
    let _ = conn.busy_timeout(RESTART_WAIT);
    let restarted =
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get::<_, i64>(0));
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

/// Runs `f` in a savepoint of the open transaction: kept if it succeeds,
/// undone (alone) if it fails or panics.
fn run_in_savepoint(
    conn: &Connection,
    track: Option<(&mut Touched, &ReadCache)>,
    f: &mut (dyn FnMut(&mut dyn WriteTxn) -> StoreResult<()> + Send),
) -> Member {
    if let Err(error) = conn.execute_batch("SAVEPOINT coffer_write") {
        return Member::Done(Err(error.into()));
    }
    let ran = catch_unwind(AssertUnwindSafe(|| f(&mut SqlTxn { conn, track })));
    let keep = matches!(ran, Ok(Ok(())));
    let ended = if keep {
        conn.execute_batch("RELEASE coffer_write")
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

/// Read connections to a database file, lent out one per read transaction.
struct ReaderPool {
    path: PathBuf,
    state: Mutex<PoolState>,
    returned: Condvar,
}

struct PoolState {
    idle: Vec<Connection>,
    /// Connections in existence, idle or lent out.
    open: usize,
}

impl ReaderPool {
    fn new(path: PathBuf) -> Self {
        ReaderPool {
            path,
            state: Mutex::new(PoolState { idle: Vec::new(), open: 0 }),
            returned: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An idle connection, a new one if fewer than [`MAX_READERS`] exist, or
    /// else the next one given back.
    fn take(&self) -> StoreResult<PooledReader<'_>> {
        let mut state = self.lock();
        loop {
            if let Some(conn) = state.idle.pop() {
                return Ok(PooledReader { pool: self, conn: Some(conn) });
            }
            if state.open < MAX_READERS {
                state.open += 1;
                drop(state);
                return match self.connect() {
                    Ok(conn) => Ok(PooledReader { pool: self, conn: Some(conn) }),
                    Err(error) => {
                        self.forget_one();
                        Err(error)
                    }
                };
            }
            state = self.returned.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn connect(&self) -> StoreResult<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags)?;
        configure(&conn)?;
        Ok(conn)
    }

    fn give_back(&self, conn: Connection) {
        self.lock().idle.push(conn);
        self.returned.notify_one();
    }

    /// Frees the place of a connection that was closed instead of given back.
    fn forget_one(&self) {
        self.lock().open -= 1;
        self.returned.notify_one();
    }
}

/// A read connection on loan; it goes back to the pool when dropped.
struct PooledReader<'p> {
    pool: &'p ReaderPool,
    conn: Option<Connection>,
}

impl PooledReader<'_> {
    fn conn(&self) -> &Connection {
        self.conn.as_ref().expect("a pooled reader holds its connection until dropped")
    }
}

impl Drop for PooledReader<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // A read whose transaction could not be ended (or that panicked) left it
            // open: a connection stuck on an old snapshot must not serve the next reader.
            if conn.is_autocommit() {
                self.pool.give_back(conn);
            } else {
                self.pool.forget_one();
            }
        }
    }
}

/// A read or write transaction on one connection.
struct SqlTxn<'c> {
    conn: &'c Connection,
    /// In a write transaction of a store with a read cache: where the cached keys
    /// this transaction changes are noted, and the cache (which says which record
    /// kinds it holds).
    track: Option<(&'c mut Touched, &'c ReadCache)>,
}

impl SqlTxn<'_> {
    fn touch_secret(&mut self, arn: &str, scope_and_name: Option<(&Scope, &str)>) {
        if let Some((touched, _)) = &mut self.track {
            touched.secret(arn, scope_and_name);
        }
    }

    fn touch_versions(&mut self, arn: &str) {
        if let Some((touched, _)) = &mut self.track {
            touched.versions(arn);
        }
    }

    fn touch_record(&mut self, kind: &str, key: &str) {
        if let Some((touched, cache)) = &mut self.track
            && cache.caches_kind(kind)
        {
            touched.record(kind, key);
        }
    }
}

const SECRET_COLUMNS: &str = "seq, arn, account, region, name, meta";

/// A `secrets` row as read, before its JSON is parsed.
struct SecretRow {
    seq: i64,
    arn: String,
    account: String,
    region: String,
    name: String,
    meta: String,
}

impl SecretRow {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(SecretRow {
            seq: row.get(0)?,
            arn: row.get(1)?,
            account: row.get(2)?,
            region: row.get(3)?,
            name: row.get(4)?,
            meta: row.get(5)?,
        })
    }

    /// The metadata, with its identity taken from the columns, which are the
    /// authority: `seq` is assigned on insertion and the name and scope never change.
    fn decode(self) -> StoreResult<SecretMeta> {
        let mut meta: SecretMeta =
            serde_json::from_str(&self.meta).map_err(|e| unreadable("secret metadata", &e))?;
        meta.seq = self.seq;
        meta.arn = self.arn;
        meta.scope = Scope { account: self.account, region: self.region };
        meta.name = self.name;
        Ok(meta)
    }
}

/// The SQL expression a listing sorts on.
fn sort_key_sql(sort_by: SortBy) -> &'static str {
    match sort_by {
        SortBy::CreatedDate => "created_ms",
        SortBy::LastChangedDate => "last_changed_ms",
        SortBy::LastAccessedDate => "accessed_sort_ms",
        SortBy::Name => "name",
    }
}

/// The query for one chunk of a listing. Parameters: account, region, limit,
/// then, when resuming, the cursor's key and seq.
fn listing_sql(sort_by: SortBy, descending: bool, resuming: bool) -> String {
    let key = sort_key_sql(sort_by);
    let (after, direction) = if descending { ("<", "DESC") } else { (">", "ASC") };
    let resume =
        if resuming { format!(" AND ({key}, seq) {after} (?4, ?5)") } else { String::new() };
    format!(
        "SELECT {SECRET_COLUMNS} FROM secrets WHERE account = ?1 AND region = ?2{resume} \
         ORDER BY {key} {direction}, seq {direction} LIMIT ?3"
    )
}

impl SqlTxn<'_> {
    /// One chunk of a listing, strictly after `after` when given.
    fn listing_chunk(
        &self,
        scope: &Scope,
        query: &ListQuery,
        after: Option<&crate::Cursor>,
        limit: i64,
    ) -> StoreResult<Vec<SecretRow>> {
        let sql = listing_sql(query.sort_by, query.descending, after.is_some());
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = match after {
            None => {
                stmt.query_map(params![scope.account, scope.region, limit], SecretRow::from_row)
            }
            Some(cursor) => {
                let key: &dyn ToSql = match (&cursor.key, query.sort_by) {
                    (CursorKey::Name(name), SortBy::Name) => name,
                    (CursorKey::Date(ms), SortBy::CreatedDate)
                    | (CursorKey::Date(ms), SortBy::LastChangedDate)
                    | (CursorKey::Date(ms), SortBy::LastAccessedDate) => ms,
                    _ => {
                        return Err(StoreError::Backend(
                            "the listing cursor does not match the sort order".to_owned(),
                        ));
                    }
                };
                stmt.query_map(
                    params![scope.account, scope.region, limit, key, cursor.seq],
                    SecretRow::from_row,
                )
            }
        }?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }
}

impl ReadTxn for SqlTxn<'_> {
    fn secret_by_name(&self, scope: &Scope, name: &str) -> StoreResult<Option<SecretMeta>> {
        let sql = format!(
            "SELECT {SECRET_COLUMNS} FROM secrets WHERE account = ?1 AND region = ?2 AND name = ?3"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let row = stmt
            .query_row(params![scope.account, scope.region, name], SecretRow::from_row)
            .optional()?;
        row.map(SecretRow::decode).transpose()
    }

    fn secret_by_arn(&self, arn: &str) -> StoreResult<Option<SecretMeta>> {
        let sql = format!("SELECT {SECRET_COLUMNS} FROM secrets WHERE arn = ?1");
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let row = stmt.query_row(params![arn], SecretRow::from_row).optional()?;
        row.map(SecretRow::decode).transpose()
    }

    fn versions(&self, arn: &str) -> StoreResult<Vec<VersionMeta>> {
        // The rows come in version id order (the table's key); the few of one secret
        // are put in creation order here rather than by a sort in SQLite.
        let mut stmt = self
            .conn
            .prepare_cached("SELECT version_id, meta, ord FROM version_meta WHERE arn = ?1")?;
        let mut rows = stmt
            .query_map(params![arn], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, i64>(2)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.sort_unstable_by_key(|(_, _, ord)| *ord);
        rows.into_iter()
            .map(|(version_id, json, _)| {
                let mut meta: VersionMeta =
                    serde_json::from_str(&json).map_err(|e| unreadable("version metadata", &e))?;
                meta.version_id = version_id;
                Ok(meta)
            })
            .collect()
    }

    fn version_value(&self, arn: &str, version_id: &str) -> StoreResult<Option<SealedValue>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT v.value FROM version_meta m JOIN version_values v ON v.id = m.value_id \
             WHERE m.arn = ?1 AND m.version_id = ?2",
        )?;
        let value = stmt.query_row(params![arn, version_id], |row| row.get(0)).optional()?;
        Ok(value.map(SealedValue))
    }

    fn visit_secrets(
        &self,
        scope: &Scope,
        query: &ListQuery,
        visit: &mut dyn FnMut(&SecretMeta) -> bool,
    ) -> StoreResult<()> {
        let mut after = query.after.clone();
        // The first chunk is what the caller expects to need (usually one query
        // for a whole page); later ones double.
        let mut limit = query.expected.map_or(FIRST_CHUNK, |n| (n as i64).clamp(1, MAX_CHUNK));
        loop {
            let rows = self.listing_chunk(scope, query, after.as_ref(), limit)?;
            let complete = (rows.len() as i64) < limit;
            let mut last = None;
            for row in rows {
                let meta = row.decode()?;
                if !visit(&meta) {
                    return Ok(());
                }
                last = Some(meta);
            }
            match last {
                Some(meta) if !complete => after = Some(cursor_of(&meta, query.sort_by)),
                _ => return Ok(()),
            }
            limit = (limit * 2).min(MAX_CHUNK);
        }
    }

    fn secrets_due_for_deletion(&self, now: Millis) -> StoreResult<Vec<String>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT arn FROM secrets WHERE deletion_ms IS NOT NULL AND deletion_ms <= ?1 \
             ORDER BY deletion_ms, seq",
        )?;
        let arns = stmt.query_map(params![now], |row| row.get(0))?;
        Ok(arns.collect::<rusqlite::Result<Vec<String>>>()?)
    }

    fn wrapped_key(&self, key_id: &str) -> StoreResult<Option<Vec<u8>>> {
        let mut stmt =
            self.conn.prepare_cached("SELECT wrapped FROM wrapped_keys WHERE key_id = ?1")?;
        Ok(stmt.query_row(params![key_id], |row| row.get(0)).optional()?)
    }

    fn record(&self, kind: &str, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let mut stmt =
            self.conn.prepare_cached("SELECT value FROM records WHERE kind = ?1 AND key = ?2")?;
        Ok(stmt.query_row(params![kind, key], |row| row.get(0)).optional()?)
    }

    fn records(
        &self,
        kind: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<(String, Vec<u8>)>> {
        // Keys are compared as strings: a prefix range is `key >= prefix`, checked with
        // `substr` so that no LIKE escaping is needed. Without `after`, every key
        // counts, the empty one included.
        let mut stmt = self.conn.prepare_cached(
            "SELECT key, value FROM records WHERE kind = ?1 AND key >= ?2 \
             AND (?3 IS NULL OR key > ?3) \
             AND substr(key, 1, length(?2)) = ?2 ORDER BY key LIMIT ?4",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![kind, prefix, after, limit], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn setting(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        let mut stmt = self.conn.prepare_cached("SELECT value FROM settings WHERE name = ?1")?;
        Ok(stmt.query_row(params![name], |row| row.get(0)).optional()?)
    }
}

/// A read transaction that answers the lookups every call repeats from the read cache
/// while its snapshot's generation is current, and fills the cache from the database.
struct CachedTxn<'c> {
    sql: SqlTxn<'c>,
    cache: &'c ReadCache,
    generation: u64,
}

impl CachedTxn<'_> {
    fn secret(
        &self,
        key: String,
        lookup: impl FnOnce() -> StoreResult<Option<SecretMeta>>,
    ) -> StoreResult<Option<SecretMeta>> {
        if let Some(Entry::Secret(found)) = self.cache.get(&key, self.generation) {
            return Ok(found.map(|meta| (*meta).clone()));
        }
        let found = lookup()?;
        let entry = Entry::Secret(found.clone().map(Arc::new));
        self.cache.put(key, entry, self.generation);
        Ok(found)
    }
}

impl ReadTxn for CachedTxn<'_> {
    fn secret_by_name(&self, scope: &Scope, name: &str) -> StoreResult<Option<SecretMeta>> {
        self.secret(read_cache::name_key(scope, name), || self.sql.secret_by_name(scope, name))
    }

    fn secret_by_arn(&self, arn: &str) -> StoreResult<Option<SecretMeta>> {
        self.secret(read_cache::arn_key(arn), || self.sql.secret_by_arn(arn))
    }

    fn versions(&self, arn: &str) -> StoreResult<Vec<VersionMeta>> {
        let key = read_cache::versions_key(arn);
        if let Some(Entry::Versions(versions)) = self.cache.get(&key, self.generation) {
            return Ok(versions.to_vec());
        }
        let versions = self.sql.versions(arn)?;
        self.cache.put(key, Entry::Versions(Arc::new(versions.clone())), self.generation);
        Ok(versions)
    }

    fn version_value(&self, arn: &str, version_id: &str) -> StoreResult<Option<SealedValue>> {
        if let Some(value) = self.cache.value(arn, version_id, self.generation) {
            return Ok(Some(value));
        }
        let value = self.sql.version_value(arn, version_id)?;
        if let Some(value) = &value {
            self.cache.put_value(arn, version_id, value.clone(), self.generation);
        }
        Ok(value)
    }

    fn visit_secrets(
        &self,
        scope: &Scope,
        query: &ListQuery,
        visit: &mut dyn FnMut(&SecretMeta) -> bool,
    ) -> StoreResult<()> {
        self.sql.visit_secrets(scope, query, visit)
    }

    fn secrets_due_for_deletion(&self, now: Millis) -> StoreResult<Vec<String>> {
        self.sql.secrets_due_for_deletion(now)
    }

    fn wrapped_key(&self, key_id: &str) -> StoreResult<Option<Vec<u8>>> {
        self.sql.wrapped_key(key_id)
    }

    fn setting(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        self.sql.setting(name)
    }

    fn record(&self, kind: &str, key: &str) -> StoreResult<Option<Vec<u8>>> {
        if !self.cache.caches_kind(kind) {
            return self.sql.record(kind, key);
        }
        let cache_key = read_cache::record_key(kind, key);
        if let Some(Entry::Record(found)) = self.cache.get(&cache_key, self.generation) {
            return Ok(found.map(|bytes| bytes.to_vec()));
        }
        let found = self.sql.record(kind, key)?;
        let entry = Entry::Record(found.clone().map(Arc::new));
        self.cache.put(cache_key, entry, self.generation);
        Ok(found)
    }

    fn records(
        &self,
        kind: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<(String, Vec<u8>)>> {
        self.sql.records(kind, prefix, after, limit)
    }
}

impl WriteTxn for SqlTxn<'_> {
    fn insert_secret(&mut self, meta: &SecretMeta) -> StoreResult<i64> {
        self.touch_secret(&meta.arn, Some((&meta.scope, &meta.name)));
        let json = to_json("secret metadata", meta)?;
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO secrets (arn, account, region, name, created_ms, last_changed_ms, \
             accessed_sort_ms, deletion_ms, meta) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        stmt.execute(params![
            meta.arn,
            meta.scope.account,
            meta.scope.region,
            meta.name,
            meta.created_ms,
            meta.last_changed_ms,
            accessed_sort_ms(meta),
            meta.deletion_ms,
            json,
        ])?;
        Ok(self.conn.last_insert_rowid())
    }

    fn update_secret(&mut self, meta: &SecretMeta) -> StoreResult<()> {
        self.touch_secret(&meta.arn, Some((&meta.scope, &meta.name)));
        let json = to_json("secret metadata", meta)?;
        let mut stmt = self.conn.prepare_cached(
            "UPDATE secrets SET created_ms = ?2, last_changed_ms = ?3, accessed_sort_ms = ?4, \
             deletion_ms = ?5, meta = ?6 WHERE arn = ?1",
        )?;
        let changed = stmt.execute(params![
            meta.arn,
            meta.created_ms,
            meta.last_changed_ms,
            accessed_sort_ms(meta),
            meta.deletion_ms,
            json,
        ])?;
        if changed == 0 {
            return Err(StoreError::Backend("no secret has that ARN".to_owned()));
        }
        Ok(())
    }

    fn delete_secret(&mut self, arn: &str) -> StoreResult<()> {
        self.touch_secret(arn, None);
        // The versions' metadata goes with the secret through ON DELETE CASCADE; their
        // values, which no key ties to the secret, go first.
        self.conn
            .prepare_cached(
                "DELETE FROM version_values WHERE id IN \
                 (SELECT value_id FROM version_meta WHERE arn = ?1)",
            )?
            .execute(params![arn])?;
        let mut stmt = self.conn.prepare_cached("DELETE FROM secrets WHERE arn = ?1")?;
        stmt.execute(params![arn])?;
        Ok(())
    }

    fn insert_version(
        &mut self,
        arn: &str,
        meta: &VersionMeta,
        value: &SealedValue,
    ) -> StoreResult<()> {
        self.touch_versions(arn);
        let json = to_json("version metadata", meta)?;
        self.conn
            .prepare_cached("INSERT INTO version_values (value) VALUES (?1)")?
            .execute(params![value.0])?;
        let value_id = self.conn.last_insert_rowid();
        let inserted = self
            .conn
            .prepare_cached(
                "INSERT INTO version_meta (arn, version_id, ord, created_ms, value_id, meta) \
                 VALUES (?1, ?2, (SELECT COALESCE(MAX(ord), 0) + 1 FROM version_meta \
                 WHERE arn = ?1), ?3, ?4, ?5)",
            )
            .and_then(|mut s| {
                s.execute(params![arn, meta.version_id, meta.created_ms, value_id, json])
            });
        if let Err(error) = inserted {
            // The id is taken (or the secret is gone): the value must not stay behind
            // should the caller go on with the transaction.
            self.conn
                .prepare_cached("DELETE FROM version_values WHERE id = ?1")?
                .execute(params![value_id])?;
            return Err(error.into());
        }
        Ok(())
    }

    fn update_version(&mut self, arn: &str, meta: &VersionMeta) -> StoreResult<()> {
        self.touch_versions(arn);
        let json = to_json("version metadata", meta)?;
        let mut stmt = self.conn.prepare_cached(
            "UPDATE version_meta SET created_ms = ?3, meta = ?4 \
             WHERE arn = ?1 AND version_id = ?2",
        )?;
        let changed = stmt.execute(params![arn, meta.version_id, meta.created_ms, json])?;
        if changed == 0 {
            return Err(StoreError::Backend("the secret has no version with that id".to_owned()));
        }
        Ok(())
    }

    fn replace_version_value(
        &mut self,
        arn: &str,
        version_id: &str,
        value: &SealedValue,
    ) -> StoreResult<()> {
        self.touch_versions(arn);
        let mut stmt = self.conn.prepare_cached(
            "UPDATE version_values SET value = ?3 WHERE id = \
             (SELECT value_id FROM version_meta WHERE arn = ?1 AND version_id = ?2)",
        )?;
        let changed = stmt.execute(params![arn, version_id, value.0])?;
        if changed == 0 {
            return Err(StoreError::Backend("the secret has no version with that id".to_owned()));
        }
        Ok(())
    }

    fn delete_version(&mut self, arn: &str, version_id: &str) -> StoreResult<()> {
        self.touch_versions(arn);
        self.conn
            .prepare_cached(
                "DELETE FROM version_values WHERE id = \
                 (SELECT value_id FROM version_meta WHERE arn = ?1 AND version_id = ?2)",
            )?
            .execute(params![arn, version_id])?;
        let mut stmt = self
            .conn
            .prepare_cached("DELETE FROM version_meta WHERE arn = ?1 AND version_id = ?2")?;
        stmt.execute(params![arn, version_id])?;
        Ok(())
    }

    fn put_wrapped_key(&mut self, key_id: &str, wrapped: &[u8]) -> StoreResult<()> {
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO wrapped_keys (key_id, wrapped) VALUES (?1, ?2) \
             ON CONFLICT (key_id) DO UPDATE SET wrapped = excluded.wrapped",
        )?;
        stmt.execute(params![key_id, wrapped])?;
        Ok(())
    }

    fn put_record(&mut self, kind: &str, key: &str, value: &[u8]) -> StoreResult<()> {
        self.touch_record(kind, key);
        self.conn
            .prepare_cached(
                "INSERT INTO records (kind, key, value) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![kind, key, value])?;
        Ok(())
    }

    fn delete_record(&mut self, kind: &str, key: &str) -> StoreResult<()> {
        self.touch_record(kind, key);
        self.conn
            .prepare_cached("DELETE FROM records WHERE kind = ?1 AND key = ?2")?
            .execute(params![kind, key])?;
        Ok(())
    }

    fn put_setting(&mut self, name: &str, value: &[u8]) -> StoreResult<()> {
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO settings (name, value) VALUES (?1, ?2) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        )?;
        stmt.execute(params![name, value])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(conn: &Connection, sql: &str, params: &[&dyn ToSql]) -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt.query_map(params, |row| row.get::<_, String>(3)).unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
    }

    #[test]
    fn writer_connection_syncs_fully_and_enforces_foreign_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("coffer.db")).unwrap();
        let writer = store.lock_writer();
        let conn = &writer.conn;
        let synchronous: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
        let foreign_keys: i64 = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0)).unwrap();
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!((synchronous, foreign_keys, mode.as_str()), (2, 1, "wal"));
    }

    #[test]
    fn every_listing_query_walks_an_index_without_sorting() {
        let store = SqliteStore::open_in_memory().unwrap();
        let writer = store.lock_writer();
        let conn = &writer.conn;
        let sorts = [SortBy::CreatedDate, SortBy::LastAccessedDate, SortBy::LastChangedDate];
        for sort_by in sorts.into_iter().chain([SortBy::Name]) {
            let key: &dyn ToSql = if sort_by == SortBy::Name { &"name" } else { &0i64 };
            for descending in [false, true] {
                for resuming in [false, true] {
                    let sql = listing_sql(sort_by, descending, resuming);
                    let params: Vec<&dyn ToSql> = if resuming {
                        vec![&"a", &"r", &10i64, key, &1i64]
                    } else {
                        vec![&"a", &"r", &10i64]
                    };
                    let plan = plan(conn, &sql, &params);
                    let context = format!("{sort_by:?} {descending} {resuming}: {plan}");
                    assert!(plan.contains("USING INDEX secrets_by_"), "{context}");
                    assert!(!plan.contains("TEMP B-TREE"), "{context}");
                    if resuming {
                        assert!(plan.contains(">") || plan.contains("<"), "{context}");
                    }
                }
            }
        }
    }

    #[test]
    fn due_deletions_and_versions_use_their_indexes() {
        let store = SqliteStore::open_in_memory().unwrap();
        let writer = store.lock_writer();
        let conn = &writer.conn;
        let due = plan(
            conn,
            "SELECT arn FROM secrets WHERE deletion_ms IS NOT NULL AND deletion_ms <= ?1 \
             ORDER BY deletion_ms, seq",
            &[&0i64],
        );
        assert!(due.contains("secrets_by_deletion"), "{due}");
        let versions =
            plan(conn, "SELECT version_id, meta, ord FROM version_meta WHERE arn = ?1", &[&"arn"]);
        assert!(versions.contains("USING PRIMARY KEY (arn=?)"), "{versions}");
        let value = plan(
            conn,
            "SELECT v.value FROM version_meta m JOIN version_values v ON v.id = m.value_id \
             WHERE m.arn = ?1 AND m.version_id = ?2",
            &[&"arn", &"id"],
        );
        assert!(
            value.contains("USING PRIMARY KEY (arn=? AND version_id=?)")
                && value.contains("USING INTEGER PRIMARY KEY (rowid=?)"),
            "{value}"
        );
    }
}
