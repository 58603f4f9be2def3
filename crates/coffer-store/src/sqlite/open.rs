//! Opening a SQLite store: the file and its permissions, the exclusive lock, connection settings.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU8;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::SqliteStore;
use super::read::ReaderPool;
use super::schema::migrate;
use super::writer::{WAL_KEEP, WAL_RESTART_BYTES, Writer, start_checkpointer};
use crate::read_cache::{ReadCache, Touched};
use crate::{StoreError, StoreResult};

/// How long a connection waits for a lock held by another process before failing.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Enough prepared statements for every query this module issues, listing variants included.
pub(super) const STATEMENT_CACHE: usize = 64;

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> StoreResult<Self> {
        Self::open_through(path, None)
    }

    /// [`SqliteStore::open`] with the writer's files opened through the fault-injection
    /// VFS ([`super::faults`]), whose WAL syncs a test can make fail.
    #[cfg(feature = "testing")]
    pub fn open_with_faults(path: &Path) -> StoreResult<Self> {
        Self::open_through(path, Some(super::faults::register()))
    }

    /// Opens the store, its writer connection through `vfs` (default: SQLite's own).
    fn open_through(path: &Path, vfs: Option<&str>) -> StoreResult<Self> {
        make_private(path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut writer = match vfs {
            Some(vfs) => Connection::open_with_flags_and_vfs(path, flags, vfs)?,
            None => Connection::open_with_flags(path, flags)?,
        };
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
        let restart_wal = Arc::new(AtomicU8::new(WAL_KEEP));
        let checkpointer = start_checkpointer(path, restart_wal.clone())?;
        tracing::debug!(path = %path.display(), "opened SQLite store");
        let cache = Some(Arc::new(ReadCache::new(Vec::new())));
        let writer = Writer {
            conn: writer,
            commits: 0,
            cache: cache.clone(),
            touched: Touched::default(),
            fenced: None,
        };
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
        let writer =
            Writer { conn, commits: 0, cache: None, touched: Touched::default(), fenced: None };
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
}

/// Makes the database at `path` readable by its owner alone, whatever the umask: creates
/// it empty with mode 0600 (SQLite takes an empty file for a new database) if it does not
/// exist, and takes group and other access away from it, its `-wal` and `-shm` (as an older
/// version may have left them). SQLite creates the `-wal` and `-shm` files with the mode
/// of the database file, so they are private from then on too.
pub(super) fn make_private(path: &Path) -> StoreResult<()> {
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

/// Settings every connection gets.
pub(super) fn configure(conn: &Connection) -> StoreResult<()> {
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
