//! Readers: the pool of read-only connections, the read a scope shares, the read cache wiring.

use std::cell::Cell;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use coffer_core::model::{Millis, Scope, SecretMeta, VersionMeta};
use rusqlite::{Connection, OpenFlags};

use super::SqliteStore;
use super::open::configure;
use super::txn::SqlTxn;
use crate::read_cache::{self, Entry, ReadCache};
use crate::{ListQuery, ReadTxn, SealedValue, StoreResult};

/// The most read connections open at once; further readers wait for one to come back.
pub(super) const MAX_READERS: usize = 8;

thread_local! {
    /// The read transaction a [`Store::read_scope`] holds open on this thread: the
    /// store it belongs to and the connection it is open on.
    pub(super) static SHARED_READ: Cell<Option<SharedRead>> = const { Cell::new(None) };
}

/// A read transaction shared by a scope: its store, its connection, and the cache
/// generation noted when its snapshot was taken.
#[derive(Clone, Copy)]
pub(super) struct SharedRead {
    pub(super) store: *const SqliteStore,
    pub(super) conn: *const Connection,
    pub(super) generation: u64,
}

/// Clears [`SHARED_READ`] when the scope ends, also by a panic.
pub(super) struct SharedReadGuard;

impl Drop for SharedReadGuard {
    fn drop(&mut self) {
        SHARED_READ.with(|shared| shared.set(None));
    }
}

impl SqliteStore {
    /// The connection of this thread's shared read transaction on this store, if one
    /// is open, and the cache generation of its snapshot.
    pub(super) fn shared_read(&self) -> Option<(&Connection, u64)> {
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
    pub(super) fn read_on(
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
    pub(super) fn read_in(
        &self,
        conn: &Connection,
        generation: u64,
        f: &mut dyn FnMut(&dyn ReadTxn) -> StoreResult<()>,
    ) -> StoreResult<()> {
        let sql = SqlTxn::new(conn, None);
        match &self.cache {
            Some(cache) => f(&CachedTxn { sql, cache, generation }),
            None => f(&sql),
        }
    }
}

/// Begins a read transaction on `conn` and takes its snapshot at once, returning the
/// cache generation noted just before (0 without a cache): cached entries may serve
/// the transaction only while the generation stays that one (see `read_cache`).
pub(super) fn begin_snapshot(conn: &Connection, cache: Option<&ReadCache>) -> StoreResult<u64> {
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

/// Read connections to a database file, lent out one per read transaction.
pub(super) struct ReaderPool {
    pub(super) path: PathBuf,
    pub(super) state: Mutex<PoolState>,
    pub(super) returned: Condvar,
}

pub(super) struct PoolState {
    pub(super) idle: Vec<Connection>,
    /// Connections in existence, idle or lent out.
    pub(super) open: usize,
    /// Readers blocked in [`ReaderPool::take`] for a connection to come back. A
    /// connection given back wakes one only when there is one: the condition variable's
    /// notification is a system call even with nobody waiting, and it was 2% of a
    /// GetSecretValue's CPU (every read gives its connection back).
    pub(super) waiting: usize,
}

impl ReaderPool {
    pub(super) fn new(path: PathBuf) -> Self {
        ReaderPool {
            path,
            state: Mutex::new(PoolState { idle: Vec::new(), open: 0, waiting: 0 }),
            returned: Condvar::new(),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An idle connection, a new one if fewer than [`MAX_READERS`] exist, or
    /// else the next one given back.
    pub(super) fn take(&self) -> StoreResult<PooledReader<'_>> {
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
            state.waiting += 1;
            state = self.returned.wait(state).unwrap_or_else(PoisonError::into_inner);
            state.waiting -= 1;
        }
    }

    pub(super) fn connect(&self) -> StoreResult<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags)?;
        configure(&conn)?;
        Ok(conn)
    }

    pub(super) fn give_back(&self, conn: Connection) {
        let mut state = self.lock();
        state.idle.push(conn);
        self.wake_one(state);
    }

    /// Frees the place of a connection that was closed instead of given back.
    pub(super) fn forget_one(&self) {
        let mut state = self.lock();
        state.open -= 1;
        self.wake_one(state);
    }

    /// Wakes one reader waiting in [`ReaderPool::take`], if any, after releasing `state`.
    /// A waiter counts itself under the lock before it sleeps, so one that found the pool
    /// empty before this change of `state` is counted here and woken.
    fn wake_one(&self, state: MutexGuard<'_, PoolState>) {
        let waiting = state.waiting > 0;
        drop(state);
        if waiting {
            self.returned.notify_one();
        }
    }
}

/// A read connection on loan; it goes back to the pool when dropped.
pub(super) struct PooledReader<'p> {
    pub(super) pool: &'p ReaderPool,
    pub(super) conn: Option<Connection>,
}

impl PooledReader<'_> {
    pub(super) fn conn(&self) -> &Connection {
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

/// A read transaction that answers the lookups every call repeats from the read cache
/// while its snapshot's generation is current, and fills the cache from the database.
pub(super) struct CachedTxn<'c> {
    pub(super) sql: SqlTxn<'c>,
    pub(super) cache: &'c ReadCache,
    pub(super) generation: u64,
}

impl CachedTxn<'_> {
    pub(super) fn secret(
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
