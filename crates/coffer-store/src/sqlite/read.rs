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

    /// How many reads of this thread are running in its shared read transaction: a
    /// write ends that transaction early only when none is (see
    /// [`SqliteStore::end_shared_read`]).
    static READS_IN_SHARED: Cell<usize> = const { Cell::new(0) };
}

/// A read transaction shared by a scope: its store, its connection, and the cache
/// generation noted when its snapshot was taken.
#[derive(Clone, Copy)]
pub(super) struct SharedRead {
    pub(super) store: *const SqliteStore,
    pub(super) conn: *const Connection,
    pub(super) generation: u64,
    /// The scope's reader, which the scope owns; a write takes it through this pointer
    /// to end the transaction and give the connection back before it waits for its
    /// commit (see [`SqliteStore::end_shared_read`]).
    pub(super) reader: *mut Option<PooledReader<'static>>,
    /// Whether a write ends it (`read_scope_until_write`), or it lasts the whole scope.
    pub(super) ends_at_write: bool,
}

/// Counts a read running in the shared read transaction while it lives.
struct InShared;

impl InShared {
    fn enter() -> InShared {
        READS_IN_SHARED.with(|n| n.set(n.get() + 1));
        InShared
    }
}

impl Drop for InShared {
    fn drop(&mut self) {
        READS_IN_SHARED.with(|n| n.set(n.get() - 1));
    }
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

    /// Runs `f` in this thread's shared read transaction, counted so that a write `f`
    /// makes does not end the transaction under it.
    pub(super) fn read_shared(
        &self,
        conn: &Connection,
        generation: u64,
        f: &mut dyn FnMut(&dyn ReadTxn) -> StoreResult<()>,
    ) -> StoreResult<()> {
        let _counted = InShared::enter();
        self.read_in(conn, generation, f)
    }

    /// Ends this thread's shared read transaction on this store, when a
    /// `read_scope_until_write` holds it and no read runs in it, and gives its connection
    /// back to the pool: called by a write before it waits for its commit. Holding the
    /// snapshot through that wait would keep a pooled connection from other readers for
    /// the length of a group commit (the pool has [`MAX_READERS`]) and the WAL from being
    /// started over; the scope's later reads take transactions of their own, which see
    /// the write.
    pub(super) fn end_shared_read(&self) {
        let Some(shared) = SHARED_READ.with(Cell::get) else { return };
        if !shared.ends_at_write
            || !std::ptr::eq(shared.store, self)
            || READS_IN_SHARED.with(Cell::get) > 0
        {
            return;
        }
        SHARED_READ.with(|cell| cell.set(None));
        // SAFETY: `read_scope` set the pointer on this thread to the reader it owns and
        // does not touch until its closure has returned; no read runs in the transaction
        // (counted above), so nothing borrows the connection; and the pointer was
        // cleared just now, so it is not used again.
        let reader = unsafe { (*shared.reader).take() };
        if let Some(reader) = reader {
            // Dropped after the rollback: back to the pool, or closed if it failed.
            let _ = reader.conn().prepare_cached("ROLLBACK").and_then(|mut s| s.execute([]));
        }
    }

    /// `read_scope` (`ends_at_write` false) and `read_scope_until_write` (true): `f`'s
    /// reads on this thread share one read transaction on a pooled connection.
    pub(super) fn shared_scope(&self, f: &mut dyn FnMut(), ends_at_write: bool) {
        let Some(pool) = &self.readers else { return f() };
        if SHARED_READ.with(Cell::get).is_some() {
            return f();
        }
        let Ok(reader) = pool.take() else { return f() };
        let Ok(generation) = begin_snapshot(reader.conn(), self.cache.as_deref()) else {
            return f();
        };
        // The reader is reached only through this pointer until `f` has returned: a write
        // in `f` may take it out of the slot (`conn` points into the slot, and is used
        // only while SHARED_READ names it, which the write clears first).
        let mut slot = Some(reader);
        let reader_ptr: *mut Option<PooledReader<'_>> = &mut slot;
        // SAFETY: the slot was just filled, and nothing else refers to it.
        let conn: *const rusqlite::Connection = unsafe { (*reader_ptr).as_ref() }
            .map_or(std::ptr::null(), |reader| reader.conn() as *const _);
        {
            let _guard = SharedReadGuard;
            let reader = reader_ptr.cast();
            let shared = SharedRead { store: self, conn, generation, reader, ends_at_write };
            SHARED_READ.with(|cell| cell.set(Some(shared)));
            f();
        }
        // SAFETY: the guard cleared SHARED_READ, so the pointer is no longer used.
        let left = unsafe { (*reader_ptr).take() };
        if let Some(reader) = left {
            // Nothing was written, so ending with a rollback loses nothing. If it fails,
            // dropping the reader keeps the connection out of the pool.
            let _ = reader.conn().prepare_cached("ROLLBACK").and_then(|mut s| s.execute([]));
        }
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
        let sql = SqlTxn { conn, track: None };
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
}

impl ReaderPool {
    pub(super) fn new(path: PathBuf) -> Self {
        ReaderPool {
            path,
            state: Mutex::new(PoolState { idle: Vec::new(), open: 0 }),
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
            state = self.returned.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
    }

    pub(super) fn connect(&self) -> StoreResult<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags)?;
        configure(&conn)?;
        Ok(conn)
    }

    pub(super) fn give_back(&self, conn: Connection) {
        self.lock().idle.push(conn);
        self.returned.notify_one();
    }

    /// Frees the place of a connection that was closed instead of given back.
    pub(super) fn forget_one(&self) {
        self.lock().open -= 1;
        self.returned.notify_one();
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
