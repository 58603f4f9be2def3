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
//! call blocks on it. Call the store from ordinary or blocking threads (the
//! server runs handlers on tokio's blocking pool), never from inside an async
//! task.
//!
//! The schema is created and upgraded by numbered migrations, recorded in
//! `coffer_schema_migrations` and applied under an advisory lock, so nodes
//! starting together do not race. Leases (table `leases`) elect the one node
//! that does background work, with expiry judged by the database's clock.

use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use coffer_core::model::{Millis, Scope, SecretMeta, VersionMeta};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Transaction};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres::{IsolationLevel, NoTls, Row};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::lend::{Job, Member, WriteFn, lend};
use crate::read_cache::{arn_key, name_key};
use crate::{
    CursorKey, ListQuery, ReadTxn, SealedValue, SnapshotItem, SortBy, Store, StoreError,
    StoreResult, WriteTxn, cursor_of,
};

/// The schema migrations, in order. Migration `i` (counting from 1) brings the
/// database from version `i - 1` to `i`. Never edit a released step: append a
/// new one.
const MIGRATIONS: &[&str] = &[
    // 1: the initial schema, the same tables as the SQLite store plus leases.
    //
    // Text that is sorted or compared uses the "C" collation, so names order
    // by their bytes as on the other stores, whatever the database's locale.
    // `seq` comes from an identity sequence, which never hands a number out
    // twice. `accessed_sort_ms` is the LastAccessedDate sort position (the
    // date, or i64::MIN when never accessed, as `cursor_of` says).
    r#"
    CREATE TABLE secrets (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        arn TEXT COLLATE "C" NOT NULL UNIQUE,
        account TEXT COLLATE "C" NOT NULL,
        region TEXT COLLATE "C" NOT NULL,
        name TEXT COLLATE "C" NOT NULL,
        created_ms BIGINT NOT NULL,
        last_changed_ms BIGINT NOT NULL,
        accessed_sort_ms BIGINT NOT NULL,
        deletion_ms BIGINT,
        meta TEXT NOT NULL
    );
    CREATE UNIQUE INDEX secrets_by_name ON secrets (account, region, name);
    CREATE INDEX secrets_by_created ON secrets (account, region, created_ms, seq);
    CREATE INDEX secrets_by_changed ON secrets (account, region, last_changed_ms, seq);
    CREATE INDEX secrets_by_accessed ON secrets (account, region, accessed_sort_ms, seq);
    CREATE INDEX secrets_by_deletion ON secrets (deletion_ms, seq) WHERE deletion_ms IS NOT NULL;

    CREATE TABLE versions (
        arn TEXT COLLATE "C" NOT NULL REFERENCES secrets (arn) ON DELETE CASCADE,
        version_id TEXT COLLATE "C" NOT NULL,
        ord BIGINT NOT NULL,
        created_ms BIGINT NOT NULL,
        meta TEXT NOT NULL,
        value BYTEA NOT NULL,
        PRIMARY KEY (arn, version_id),
        UNIQUE (arn, ord)
    );

    CREATE TABLE wrapped_keys (
        key_id TEXT COLLATE "C" PRIMARY KEY,
        wrapped BYTEA NOT NULL
    );

    CREATE TABLE settings (
        name TEXT COLLATE "C" PRIMARY KEY,
        value BYTEA NOT NULL
    );

    CREATE TABLE records (
        kind TEXT COLLATE "C" NOT NULL,
        key TEXT COLLATE "C" NOT NULL,
        value BYTEA NOT NULL,
        PRIMARY KEY (kind, key)
    );

    CREATE TABLE leases (
        name TEXT COLLATE "C" PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL
    );
    "#,
];

/// The schema version this build creates and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The advisory lock that serializes migrations across nodes ("CofferM1").
const MIGRATION_LOCK: i64 = 0x436f_6666_6572_4d31;

/// Connections in the pool unless the URL says `pool_max_size=N`.
const DEFAULT_POOL_SIZE: usize = 16;

/// How long a call waits for a free pooled connection, and for a new one.
const POOL_WAIT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A transaction left idle this long (a frozen node) is ended by the server,
/// so its locks cannot block the other nodes for good.
const IDLE_IN_TRANSACTION_TIMEOUT_MS: u64 = 60_000;

/// Conflicting writes are retried at most this often and this long before
/// the caller gets an error.
const MAX_WRITE_ATTEMPTS: u32 = 100;
const WRITE_RETRY_BUDGET: Duration = Duration::from_secs(30);

/// Listing reads this many rows in its first query and doubles up to the maximum.
const FIRST_CHUNK: i64 = 64;
const MAX_CHUNK: i64 = 1024;

/// Rows fetched per round trip while exporting.
const EXPORT_CHUNK: i32 = 512;

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
}

/// What [`PostgresStore::migrate`] found and left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    pub from: i64,
    pub to: i64,
}

impl PostgresStore {
    /// Connects to the database at `url`, brings its schema up to date and
    /// returns the store. The URL is libpq's (`postgres://user:password@host:port/db?...`);
    /// `sslmode` takes `disable`, `prefer` (the default), `require`,
    /// `verify-ca` and `verify-full`, with `sslrootcert=<PEM file>` or
    /// `sslrootcert=system` for the trusted roots; `pool_max_size=N` sizes the
    /// connection pool.
    pub fn open(url: &str) -> StoreResult<Self> {
        let store = Self::connect(url)?;
        let migration = store.migrate()?;
        if migration.from != migration.to {
            tracing::info!(
                from = migration.from,
                to = migration.to,
                store = %store.description,
                "migrated the PostgreSQL schema"
            );
        }
        Ok(store)
    }

    /// Connects without touching the schema; [`PostgresStore::migrate`] is
    /// then the only thing to call before using the store.
    pub fn connect(url: &str) -> StoreResult<Self> {
        let options = ConnectOptions::parse(url)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("coffer-postgres")
            .enable_all()
            .build()
            .map_err(|e| {
                StoreError::Backend(format!("cannot start the PostgreSQL runtime: {e}"))
            })?;
        let manager_config = ManagerConfig { recycling_method: RecyclingMethod::Fast };
        let manager = match options.tls {
            None => Manager::from_config(options.config, NoTls, manager_config),
            Some(tls) => Manager::from_config(options.config, tls, manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Backend(format!("cannot build the connection pool: {e}")))?;
        let store = PostgresStore {
            pool,
            writers: std::sync::Mutex::new(()),
            queue: std::sync::Mutex::default(),
            runtime: Some(runtime),
            description: options.description,
        };
        // Fail now, with the reason, rather than at the first request.
        drop(store.checkout().map_err(|e| {
            StoreError::Backend(format!("cannot connect to {}: {e}", store.description))
        })?);
        Ok(store)
    }

    /// Applies the migrations the database has not seen yet, in one
    /// transaction, under an advisory lock that other nodes wait for.
    pub fn migrate(&self) -> StoreResult<Migration> {
        let rt = self.rt();
        let mut client = self.checkout()?;
        rt.block_on(async {
            let tx = client.transaction().await?;
            // "already exists, skipping" notices on every start are noise.
            tx.batch_execute("SET LOCAL client_min_messages = warning").await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS coffer_schema_migrations (\
                 version BIGINT PRIMARY KEY, \
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
            )
            .await?;
            let found: i64 = tx
                .query_one("SELECT COALESCE(MAX(version), 0) FROM coffer_schema_migrations", &[])
                .await?
                .get(0);
            if !(0..=SCHEMA_VERSION).contains(&found) {
                return Ok(Err(StoreError::Backend(format!(
                    "the database has schema version {found}, newer than the {SCHEMA_VERSION} this build knows"
                ))));
            }
            for (done, step) in MIGRATIONS.iter().enumerate().skip(found as usize) {
                tx.batch_execute(step).await?;
                tx.execute(
                    "INSERT INTO coffer_schema_migrations (version) VALUES ($1)",
                    &[&(done as i64 + 1)],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(Ok(Migration { from: found, to: SCHEMA_VERSION }))
        })
        .map_err(|e: tokio_postgres::Error| backend(&e))?
    }

    /// The schema version recorded in the database.
    pub fn schema_version(&self) -> StoreResult<i64> {
        let client = self.checkout()?;
        let row =
            self.rt()
                .block_on(client.query_one(
                    "SELECT COALESCE(MAX(version), 0) FROM coffer_schema_migrations",
                    &[],
                ))
                .map_err(|e| backend(&e))?;
        get(&row, 0)
    }

    /// Who holds the lease `name` now, if anyone (for operators and tests).
    pub fn lease_holder(&self, name: &str) -> StoreResult<Option<String>> {
        let client = self.checkout()?;
        let row = self
            .rt()
            .block_on(client.query_opt(
                "SELECT holder FROM leases WHERE name = $1 AND expires_at > clock_timestamp()",
                &[&name],
            ))
            .map_err(|e| backend(&e))?;
        row.map(|row| get(&row, 0)).transpose()
    }

    fn rt(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("the runtime lives as long as the store")
    }

    /// A pooled connection. A connection the server closed while it sat in
    /// the pool is noticed by the pool (or at `BEGIN`, see `begin`) and replaced.
    fn checkout(&self) -> StoreResult<Object> {
        self.rt()
            .block_on(self.pool.get())
            .map_err(|e| StoreError::Backend(format!("no PostgreSQL connection could be had: {e}")))
    }

    /// Runs `f` in one transaction of the given kind on a pooled connection.
    /// A connection found dead at `BEGIN` (the server restarted, a network
    /// blip) is replaced once: nothing had been sent on it yet.
    fn in_transaction<T>(
        &self,
        isolation: IsolationLevel,
        read_only: bool,
        f: &mut dyn FnMut(Transaction<'_>) -> T,
    ) -> StoreResult<T> {
        let rt = self.rt();
        let mut retried = false;
        loop {
            let mut client = self.checkout()?;
            let begun = rt.block_on(
                client.build_transaction().isolation_level(isolation).read_only(read_only).start(),
            );
            match begun {
                Ok(tx) => return Ok(f(tx)),
                Err(e) if e.is_closed() && !retried => {
                    tracing::warn!("a pooled PostgreSQL connection was closed; reconnecting");
                    retried = true;
                }
                Err(e) => return Err(backend(&e)),
            }
        }
    }
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

/// How one write attempt ended.
enum Attempt {
    /// The closure succeeded; the transaction is to be committed.
    Committed,
    /// PostgreSQL aborted the transaction to keep transactions serializable; run it again.
    Conflicted,
    /// Done, with this result (nothing was committed).
    Finished(StoreResult<()>),
}

thread_local! {
    /// The read transaction a [`Store::read_scope`] holds open on this thread: the store
    /// it belongs to and its `PgTxn`, type-erased (see `PostgresStore::shared_read`).
    static SHARED_READ: Cell<Option<(*const PostgresStore, *const ())>> =
        const { Cell::new(None) };
}

/// Clears [`SHARED_READ`] when the scope ends, also by a panic.
struct SharedReadGuard;

impl Drop for SharedReadGuard {
    fn drop(&mut self) {
        SHARED_READ.with(|shared| shared.set(None));
    }
}

impl PostgresStore {
    /// Runs `f` over this thread's shared read transaction on this store, if one is
    /// open and no statement has failed in it (PostgreSQL ignores every later statement
    /// of a transaction once one fails, so the caller then reads on its own).
    fn read_shared(
        &self,
        f: &mut dyn FnMut(&dyn ReadTxn) -> StoreResult<()>,
    ) -> Option<StoreResult<()>> {
        let (store, txn) = SHARED_READ.with(Cell::get)?;
        if !std::ptr::eq(store, self) {
            return None;
        }
        // SAFETY: set by `read_scope` on this thread from a `PgTxn` that lives, with
        // the transaction it borrows, for as long as the pointer is set (its guard
        // clears it first), and only used on this thread.
        let txn = unsafe { &*(txn as *const PgTxn<'_, '_>) };
        if txn.failure.get() != Failure::None {
            return None;
        }
        let result = f(txn);
        Some(match (result, txn.failure.get()) {
            (Err(e), _) => Err(e),
            (Ok(()), Failure::None) => Ok(()),
            (Ok(()), _) => Err(StoreError::Backend(
                "a statement failed inside the read transaction".to_owned(),
            )),
        })
    }
}

impl Store for PostgresStore {
    /// One `REPEATABLE READ` transaction (one pooled connection, one snapshot) for every
    /// read `f` makes on this thread, instead of one each. A write inside `f` takes a
    /// second connection, so callers keep writes out of scopes (see the server's
    /// `deferring_access_records`).
    fn read_scope(&self, f: &mut dyn FnMut()) {
        if SHARED_READ.with(Cell::get).is_some() {
            return f();
        }
        let rt = self.rt();
        let mut ran = false;
        let opened = self.in_transaction(IsolationLevel::RepeatableRead, true, &mut |tx| {
            let txn = PgTxn::reading(rt, &tx);
            {
                let _guard = SharedReadGuard;
                let erased = &txn as *const PgTxn<'_, '_> as *const ();
                SHARED_READ.with(|shared| shared.set(Some((self as *const _, erased))));
                ran = true;
                f();
            }
            end_read(rt, tx);
        });
        if opened.is_err() && !ran {
            // No transaction could be had: the reads open their own (and report why).
            f();
        }
    }

    fn read(&self, f: &mut dyn FnMut(&dyn ReadTxn) -> StoreResult<()>) -> StoreResult<()> {
        if let Some(result) = self.read_shared(f) {
            return result;
        }
        let rt = self.rt();
        let (result, failure) =
            self.in_transaction(IsolationLevel::RepeatableRead, true, &mut |tx| {
                let txn = PgTxn::reading(rt, &tx);
                let result = f(&txn);
                let failure = txn.failure.get();
                end_read(rt, tx);
                (result, failure)
            })?;
        match (result, failure) {
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
        self.write_grouped(f)
    }

    fn latency(&self) -> crate::Latency {
        crate::Latency::Network
    }

    fn describe(&self) -> String {
        self.description.clone()
    }

    fn export(&self, visit: &mut dyn FnMut(SnapshotItem) -> StoreResult<()>) -> StoreResult<()> {
        let rt = self.rt();
        let (result, failure) =
            self.in_transaction(IsolationLevel::RepeatableRead, true, &mut |tx| {
                let txn = PgTxn::new(rt, &tx);
                let result = txn.export_all(visit);
                let failure = txn.failure.get();
                end_read(rt, tx);
                (result, failure)
            })?;
        match (result, failure) {
            (Err(e), _) => Err(e),
            (Ok(()), Failure::None) => Ok(()),
            (Ok(()), _) => Err(StoreError::Backend("a statement failed during export".to_owned())),
        }
    }

    fn import_from(&self, produce: &mut crate::ImportProducer<'_>) -> StoreResult<()> {
        self.write_pg(&mut |txn| {
            let occupied: bool = get(
                &txn.query_one(
                    "SELECT EXISTS (SELECT 1 FROM secrets) OR EXISTS (SELECT 1 FROM wrapped_keys) \
                     OR EXISTS (SELECT 1 FROM settings) OR EXISTS (SELECT 1 FROM records)",
                    &[],
                )?,
                0,
            )?;
            if occupied {
                return Err(crate::not_empty());
            }
            crate::import_items(txn, produce)
        })
    }

    fn try_acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> StoreResult<bool> {
        // One statement, atomic under READ COMMITTED: it takes a free or
        // expired lease, renews one this holder has, and otherwise changes
        // nothing and returns no row. Expiry is judged by the database's
        // clock, so the nodes' clocks do not need to agree.
        let rt = self.rt();
        let seconds = ttl.as_secs_f64();
        let rows = self.in_transaction(IsolationLevel::ReadCommitted, false, &mut |tx| {
            rt.block_on(async {
                let rows = tx
                    .query(
                        "INSERT INTO leases AS l (name, holder, expires_at) \
                         VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3)) \
                         ON CONFLICT (name) DO UPDATE \
                         SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at \
                         WHERE l.holder = EXCLUDED.holder OR l.expires_at <= clock_timestamp() \
                         RETURNING l.holder",
                        &[&name, &holder, &seconds],
                    )
                    .await?;
                tx.commit().await?;
                Ok::<_, tokio_postgres::Error>(rows.len())
            })
        })?;
        Ok(rows.map_err(|e| backend(&e))? == 1)
    }

    fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()> {
        let client = self.checkout()?;
        self.rt()
            .block_on(
                client.execute(
                    "DELETE FROM leases WHERE name = $1 AND holder = $2",
                    &[&name, &holder],
                ),
            )
            .map_err(|e| backend(&e))?;
        Ok(())
    }
}

/// The most writes one PostgreSQL group commit carries (see `write_grouped`).
const PG_BATCH_MAX: usize = 48;

/// How one attempt at a batch of lent writes ended.
enum BatchAttempt {
    /// Committed or rolled back: how each member ended, in order.
    Done(Vec<Member>),
    /// PostgreSQL aborted the transaction to keep transactions serializable; run it again.
    Conflicted,
}

impl PostgresStore {
    /// Group commit: the write is queued, and whoever of this node's writers has the
    /// turn runs every queued write in one SERIALIZABLE transaction, each in a savepoint
    /// (a failing one undoes only its own work), commits them with one round trip and
    /// one WAL flush, and answers each. A conflict with another node reruns the batch.
    fn write_grouped(&self, f: &mut WriteFn<'_>) -> StoreResult<()> {
        lend(f, |job, answer| {
            self.queue.lock().unwrap_or_else(PoisonError::into_inner).push(job);
            while !answer.ready() {
                // A poisoned lock only means a closure panicked; its work was rolled back.
                let _turn = self.writers.lock().unwrap_or_else(PoisonError::into_inner);
                if answer.ready() {
                    // Answered by the writer that had the turn before.
                    break;
                }
                let batch = {
                    let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                    // A bounded batch: past 64 subtransactions a PostgreSQL backend's
                    // cache of them overflows, which slows every snapshot in the cluster.
                    let taken = queue.len().min(PG_BATCH_MAX);
                    let rest = queue.split_off(taken);
                    std::mem::replace(&mut *queue, rest)
                };
                self.run_batch(batch);
            }
            Ok(())
        })
    }

    /// Runs `jobs` in one transaction, again while it conflicts, and answers each.
    fn run_batch(&self, mut jobs: Vec<Job>) {
        if jobs.is_empty() {
            return;
        }
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self.batch_attempt(&mut jobs) {
                BatchAttempt::Done(members) => {
                    for (job, member) in jobs.into_iter().zip(members) {
                        job.answer(member);
                    }
                    return;
                }
                BatchAttempt::Conflicted => {
                    if attempt >= MAX_WRITE_ATTEMPTS || started.elapsed() >= WRITE_RETRY_BUDGET {
                        let message = format!(
                            "a write kept conflicting with concurrent writes and was given up after {attempt} attempts"
                        );
                        for job in jobs {
                            job.answer(Member::Done(Err(StoreError::Backend(message.clone()))));
                        }
                        return;
                    }
                    tracing::debug!(attempt, "retrying writes after a serialization conflict");
                    std::thread::sleep(backoff(attempt));
                }
            }
        }
    }

    /// One attempt at a batch, ended with COMMIT when a member succeeded and with
    /// ROLLBACK otherwise.
    fn batch_attempt(&self, jobs: &mut [Job]) -> BatchAttempt {
        let rt = self.rt();
        let count = jobs.len();
        let every = |result: &dyn Fn() -> StoreResult<()>| {
            BatchAttempt::Done((0..count).map(|_| Member::Done(result())).collect())
        };
        let outcome = self.in_transaction(IsolationLevel::Serializable, false, &mut |tx| {
            let mut members = Vec::with_capacity(jobs.len());
            let mut broken = None;
            for job in jobs.iter_mut() {
                if let Err(e) = rt.block_on(tx.batch_execute("SAVEPOINT coffer_member")) {
                    broken = Some(e);
                    break;
                }
                let mut txn = PgTxn::new(rt, &tx);
                // SAFETY: every job is answered only after this batch (`run_batch`).
                let closure = unsafe { job.closure() };
                let ran = catch_unwind(AssertUnwindSafe(|| closure(&mut txn)));
                let failure = txn.failure.get();
                if failure == Failure::Retry {
                    members.clear();
                    break;
                }
                let member = match ran {
                    Ok(Ok(())) if failure == Failure::None => Member::Done(Ok(())),
                    Ok(Ok(())) => Member::Done(Err(StoreError::Backend(
                        "a statement failed inside the transaction, so PostgreSQL abandoned \
                         it; nothing was written"
                            .to_owned(),
                    ))),
                    Ok(Err(e)) => Member::Done(Err(e)),
                    Err(payload) => Member::Panicked(payload),
                };
                // A savepoint rolled back to is still open: released too, so the next
                // member's does not nest inside it.
                let end = if matches!(member, Member::Done(Ok(()))) {
                    "RELEASE SAVEPOINT coffer_member"
                } else {
                    "ROLLBACK TO SAVEPOINT coffer_member; RELEASE SAVEPOINT coffer_member"
                };
                members.push(member);
                if let Err(e) = rt.block_on(tx.batch_execute(end)) {
                    broken = Some(e);
                    break;
                }
            }
            let conflicted = members.len() < jobs.len() && broken.is_none();
            if conflicted || broken.is_some() {
                if let Err(e) = rt.block_on(tx.rollback()) {
                    tracing::warn!(error = %describe_error(&e), "could not roll back a PostgreSQL transaction");
                }
                return match broken {
                    Some(e) if !is_retryable(&e) => {
                        let message = describe_error(&e);
                        every(&|| Err(StoreError::Backend(message.clone())))
                    }
                    _ => BatchAttempt::Conflicted,
                };
            }
            if !members.iter().any(|m| matches!(m, Member::Done(Ok(())))) {
                if let Err(e) = rt.block_on(tx.rollback()) {
                    tracing::warn!(error = %describe_error(&e), "could not roll back a PostgreSQL transaction");
                }
                return BatchAttempt::Done(members);
            }
            match rt.block_on(tx.commit()) {
                Ok(()) => BatchAttempt::Done(members),
                Err(e) if is_retryable(&e) => BatchAttempt::Conflicted,
                // The connection may have died after the server committed: the outcome
                // is unknown, and the callers must be told so rather than told it failed
                // cleanly.
                Err(e) => {
                    let message = format!(
                        "the commit did not complete, so the write may or may not have been kept: {}",
                        describe_error(&e)
                    );
                    BatchAttempt::Done(
                        members
                            .into_iter()
                            .map(|m| match m {
                                Member::Done(Ok(())) => {
                                    Member::Done(Err(StoreError::Backend(message.clone())))
                                }
                                other => other,
                            })
                            .collect(),
                    )
                }
            }
        });
        match outcome {
            Ok(attempt) => attempt,
            Err(e) => {
                let message = e.to_string();
                every(&|| Err(StoreError::Backend(message.clone())))
            }
        }
    }

    /// A write transaction on the concrete transaction type, retried while
    /// PostgreSQL reports serialization conflicts.
    fn write_pg(
        &self,
        f: &mut dyn FnMut(&mut PgTxn<'_, '_>) -> StoreResult<()>,
    ) -> StoreResult<()> {
        // A poisoned lock only means a closure panicked; its transaction was rolled back.
        let _turn = self.writers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self.write_attempt_and_commit(f) {
                Attempt::Finished(result) => return result,
                Attempt::Committed => return Ok(()),
                Attempt::Conflicted => {
                    if attempt >= MAX_WRITE_ATTEMPTS || started.elapsed() >= WRITE_RETRY_BUDGET {
                        return Err(StoreError::Backend(format!(
                            "a write kept conflicting with concurrent writes and was given up after {attempt} attempts"
                        )));
                    }
                    tracing::debug!(attempt, "retrying a write after a serialization conflict");
                    std::thread::sleep(backoff(attempt));
                }
            }
        }
    }

    /// One attempt, ended with COMMIT when the closure succeeded and with
    /// ROLLBACK otherwise.
    fn write_attempt_and_commit(
        &self,
        f: &mut dyn FnMut(&mut PgTxn<'_, '_>) -> StoreResult<()>,
    ) -> Attempt {
        let rt = self.rt();
        let outcome = self.in_transaction(IsolationLevel::Serializable, false, &mut |tx| {
            let mut txn = PgTxn::new(rt, &tx);
            let result = f(&mut txn);
            let failure = txn.failure.get();
            let attempt = match (failure, result) {
                (Failure::Retry, _) => Attempt::Conflicted,
                (Failure::Fatal, Ok(())) => Attempt::Finished(Err(StoreError::Backend(
                    "a statement failed inside the transaction, so PostgreSQL abandoned it; \
                     nothing was written"
                        .to_owned(),
                ))),
                (_, Err(e)) => Attempt::Finished(Err(e)),
                (Failure::None, Ok(())) => {
                    return match rt.block_on(tx.commit()) {
                        Ok(()) => Attempt::Committed,
                        Err(e) if is_retryable(&e) => Attempt::Conflicted,
                        // The connection may have died after the server
                        // committed: the outcome is unknown, and the caller
                        // must be told so rather than told it failed cleanly.
                        Err(e) => Attempt::Finished(Err(StoreError::Backend(format!(
                            "the commit did not complete, so the write may or may not have been kept: {}",
                            describe_error(&e)
                        )))),
                    };
                }
            };
            if let Err(e) = rt.block_on(tx.rollback()) {
                tracing::warn!(error = %describe_error(&e), "could not roll back a PostgreSQL transaction");
            }
            attempt
        });
        match outcome {
            Ok(attempt) => attempt,
            Err(e) => Attempt::Finished(Err(e)),
        }
    }
}

/// Ends a read transaction. It wrote nothing, so a rollback loses nothing,
/// and a failure to end it only costs the connection, which the pool drops.
fn end_read(rt: &tokio::runtime::Runtime, tx: Transaction<'_>) {
    if let Err(e) = rt.block_on(tx.rollback()) {
        tracing::debug!(error = %describe_error(&e), "could not end a PostgreSQL read transaction");
    }
}

/// A random wait before retry `attempt + 1`: exponential with full jitter, capped.
fn backoff(attempt: u32) -> Duration {
    let cap_ms = 2u64.saturating_pow(attempt.min(6)).min(64);
    Duration::from_micros(rand::random_range(0..=cap_ms * 1000))
}

/// True for the errors PostgreSQL raises to keep transactions serializable:
/// the transaction did nothing wrong and succeeds when run again.
fn is_retryable(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(code) if *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
    )
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

/// The `accessed_sort_ms` column: the LastAccessedDate sort position.
fn accessed_sort_ms(meta: &SecretMeta) -> Millis {
    meta.last_accessed_ms.unwrap_or(i64::MIN)
}

/// What went wrong inside a transaction. Any failed statement aborts a
/// PostgreSQL transaction, so the store must know even if the closure
/// swallowed the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    None,
    /// A serialization failure or deadlock: roll back and run the closure again.
    Retry,
    /// Anything else: nothing more can succeed in this transaction.
    Fatal,
}

/// A read or write transaction on one pooled connection.
struct PgTxn<'a, 't> {
    rt: &'a tokio::runtime::Runtime,
    tx: &'a Transaction<'t>,
    failure: Cell<Failure>,
    /// Secrets already looked up, by name and by ARN, in a read-only transaction: its
    /// snapshot does not change, and a call looks its secret up twice (authorization,
    /// then the handler), each a round trip. `None` in write transactions.
    seen: Option<std::cell::RefCell<HashMap<String, Option<SecretMeta>>>>,
}

impl<'a, 't> PgTxn<'a, 't> {
    fn new(rt: &'a tokio::runtime::Runtime, tx: &'a Transaction<'t>) -> Self {
        PgTxn { rt, tx, failure: Cell::new(Failure::None), seen: None }
    }

    /// A read-only transaction's, which remembers the secrets it looked up.
    fn reading(rt: &'a tokio::runtime::Runtime, tx: &'a Transaction<'t>) -> Self {
        PgTxn { seen: Some(Default::default()), ..PgTxn::new(rt, tx) }
    }

    /// The secret under `key`, looked up by `lookup` unless this read already did.
    fn remembered(
        &self,
        key: String,
        lookup: impl FnOnce() -> StoreResult<Option<SecretMeta>>,
    ) -> StoreResult<Option<SecretMeta>> {
        let Some(seen) = &self.seen else { return lookup() };
        if let Some(found) = seen.borrow().get(&key) {
            return Ok(found.clone());
        }
        let found = lookup()?;
        let mut seen = seen.borrow_mut();
        if let Some(meta) = &found {
            seen.insert(arn_key(&meta.arn), found.clone());
            seen.insert(name_key(&meta.scope, &meta.name), found.clone());
        }
        seen.insert(key, found.clone());
        Ok(found)
    }
}

const SECRET_COLUMNS: &str = "seq, arn, account, region, name, meta";

/// A `secrets` row, with its identity taken from the columns, which are the
/// authority: `seq` is assigned on insertion and the name and scope never change.
fn decode_secret(row: &Row) -> StoreResult<SecretMeta> {
    let json: &str = get(row, 5)?;
    let mut meta: SecretMeta =
        serde_json::from_str(json).map_err(|e| unreadable("secret metadata", &e))?;
    meta.seq = get(row, 0)?;
    meta.arn = get(row, 1)?;
    meta.scope = Scope { account: get(row, 2)?, region: get(row, 3)? };
    meta.name = get(row, 4)?;
    Ok(meta)
}

fn decode_version(version_id: String, json: &str) -> StoreResult<VersionMeta> {
    let mut meta: VersionMeta =
        serde_json::from_str(json).map_err(|e| unreadable("version metadata", &e))?;
    meta.version_id = version_id;
    Ok(meta)
}

/// The column a listing sorts on.
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
        if resuming { format!(" AND ({key}, seq) {after} ($4, $5)") } else { String::new() };
    format!(
        "SELECT {SECRET_COLUMNS} FROM secrets WHERE account = $1 AND region = $2{resume} \
         ORDER BY {key} {direction}, seq {direction} LIMIT $3"
    )
}

type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

impl PgTxn<'_, '_> {
    /// Blocks on one database call, noting a failure for the end of the transaction.
    fn run<T>(
        &self,
        call: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> StoreResult<T> {
        self.rt.block_on(call).map_err(|e| self.failed(&e))
    }

    fn failed(&self, e: &tokio_postgres::Error) -> StoreError {
        if is_retryable(e) {
            // The closure must stop, and `Aborted` is the error that makes the
            // server's handlers stop quietly; the store then runs the closure again.
            self.failure.set(Failure::Retry);
            return StoreError::Aborted;
        }
        if self.failure.get() == Failure::None {
            self.failure.set(Failure::Fatal);
        }
        backend(e)
    }

    fn query(&self, sql: &str, params: Params<'_>) -> StoreResult<Vec<Row>> {
        self.run(async {
            let statement = self.tx.prepare_cached(sql).await?;
            self.tx.query(&statement, params).await
        })
    }

    fn query_opt(&self, sql: &str, params: Params<'_>) -> StoreResult<Option<Row>> {
        self.run(async {
            let statement = self.tx.prepare_cached(sql).await?;
            self.tx.query_opt(&statement, params).await
        })
    }

    fn query_one(&self, sql: &str, params: Params<'_>) -> StoreResult<Row> {
        self.run(async {
            let statement = self.tx.prepare_cached(sql).await?;
            self.tx.query_one(&statement, params).await
        })
    }

    fn execute(&self, sql: &str, params: Params<'_>) -> StoreResult<u64> {
        self.run(async {
            let statement = self.tx.prepare_cached(sql).await?;
            self.tx.execute(&statement, params).await
        })
    }

    /// Streams the rows of `sql` to `each` through a portal, a chunk at a time.
    fn stream(&self, sql: &str, each: &mut dyn FnMut(&Row) -> StoreResult<()>) -> StoreResult<()> {
        let portal = self.run(async {
            let statement = self.tx.prepare(sql).await?;
            self.tx.bind(&statement, &[]).await
        })?;
        loop {
            let rows = self.run(self.tx.query_portal(&portal, EXPORT_CHUNK))?;
            for row in &rows {
                each(row)?;
            }
            if rows.len() < EXPORT_CHUNK as usize {
                return Ok(());
            }
        }
    }

    fn export_all(
        &self,
        visit: &mut dyn FnMut(SnapshotItem) -> StoreResult<()>,
    ) -> StoreResult<()> {
        let secrets = format!("SELECT {SECRET_COLUMNS} FROM secrets ORDER BY seq");
        self.stream(&secrets, &mut |row| visit(SnapshotItem::Secret(decode_secret(row)?)))?;
        self.stream(
            "SELECT v.arn, v.version_id, v.meta, v.value FROM versions v \
             JOIN secrets s ON s.arn = v.arn ORDER BY s.seq, v.ord",
            &mut |row| {
                let meta = decode_version(get(row, 1)?, get(row, 2)?)?;
                visit(SnapshotItem::Version {
                    arn: get(row, 0)?,
                    meta,
                    value: SealedValue(get(row, 3)?),
                })
            },
        )?;
        self.stream("SELECT key_id, wrapped FROM wrapped_keys ORDER BY key_id", &mut |row| {
            visit(SnapshotItem::WrappedKey { key_id: get(row, 0)?, wrapped: get(row, 1)? })
        })?;
        self.stream("SELECT name, value FROM settings ORDER BY name", &mut |row| {
            visit(SnapshotItem::Setting { name: get(row, 0)?, value: get(row, 1)? })
        })?;
        self.stream("SELECT kind, key, value FROM records ORDER BY kind, key", &mut |row| {
            visit(SnapshotItem::Record {
                kind: get(row, 0)?,
                key: get(row, 1)?,
                value: get(row, 2)?,
            })
        })
    }

    /// One chunk of a listing, strictly after `after` when given.
    fn listing_chunk(
        &self,
        scope: &Scope,
        query: &ListQuery,
        after: Option<&crate::Cursor>,
        limit: i64,
    ) -> StoreResult<Vec<Row>> {
        let sql = listing_sql(query.sort_by, query.descending, after.is_some());
        match after {
            None => self.query(&sql, &[&scope.account, &scope.region, &limit]),
            Some(cursor) => {
                let key: &(dyn ToSql + Sync) = match (&cursor.key, query.sort_by) {
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
                self.query(&sql, &[&scope.account, &scope.region, &limit, key, &cursor.seq])
            }
        }
    }
}

impl ReadTxn for PgTxn<'_, '_> {
    fn secret_by_name(&self, scope: &Scope, name: &str) -> StoreResult<Option<SecretMeta>> {
        self.remembered(name_key(scope, name), || {
            let sql = format!(
                "SELECT {SECRET_COLUMNS} FROM secrets WHERE account = $1 AND region = $2 AND name = $3"
            );
            let row = self.query_opt(&sql, &[&scope.account, &scope.region, &name])?;
            row.as_ref().map(decode_secret).transpose()
        })
    }

    fn secret_by_arn(&self, arn: &str) -> StoreResult<Option<SecretMeta>> {
        self.remembered(arn_key(arn), || {
            let sql = format!("SELECT {SECRET_COLUMNS} FROM secrets WHERE arn = $1");
            let row = self.query_opt(&sql, &[&arn])?;
            row.as_ref().map(decode_secret).transpose()
        })
    }

    fn versions(&self, arn: &str) -> StoreResult<Vec<VersionMeta>> {
        let rows = self
            .query("SELECT version_id, meta FROM versions WHERE arn = $1 ORDER BY ord", &[&arn])?;
        rows.iter().map(|row| decode_version(get(row, 0)?, get(row, 1)?)).collect()
    }

    fn versions_of(&self, arns: &[&str]) -> StoreResult<Vec<Vec<VersionMeta>>> {
        let rows = self.query(
            "SELECT arn, version_id, meta FROM versions WHERE arn = ANY($1) ORDER BY arn, ord",
            &[&arns],
        )?;
        let mut by_arn: HashMap<String, Vec<VersionMeta>> = HashMap::new();
        for row in &rows {
            let version = decode_version(get(row, 1)?, get(row, 2)?)?;
            by_arn.entry(get(row, 0)?).or_default().push(version);
        }
        Ok(arns.iter().map(|arn| by_arn.get(*arn).cloned().unwrap_or_default()).collect())
    }

    fn version_value(&self, arn: &str, version_id: &str) -> StoreResult<Option<SealedValue>> {
        let row = self.query_opt(
            "SELECT value FROM versions WHERE arn = $1 AND version_id = $2",
            &[&arn, &version_id],
        )?;
        row.map(|row| get(&row, 0).map(SealedValue)).transpose()
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
            for row in &rows {
                let meta = decode_secret(row)?;
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
        let rows = self.query(
            "SELECT arn FROM secrets WHERE deletion_ms IS NOT NULL AND deletion_ms <= $1 \
             ORDER BY deletion_ms, seq",
            &[&now],
        )?;
        rows.iter().map(|row| get(row, 0)).collect()
    }

    fn wrapped_key(&self, key_id: &str) -> StoreResult<Option<Vec<u8>>> {
        let row =
            self.query_opt("SELECT wrapped FROM wrapped_keys WHERE key_id = $1", &[&key_id])?;
        row.map(|row| get(&row, 0)).transpose()
    }

    fn setting(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        let row = self.query_opt("SELECT value FROM settings WHERE name = $1", &[&name])?;
        row.map(|row| get(&row, 0)).transpose()
    }

    fn record(&self, kind: &str, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let row = self
            .query_opt("SELECT value FROM records WHERE kind = $1 AND key = $2", &[&kind, &key])?;
        row.map(|row| get(&row, 0)).transpose()
    }

    fn records(
        &self,
        kind: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<(String, Vec<u8>)>> {
        // `key >= prefix` lets the primary key index start at the prefix;
        // `starts_with` then ends the range.
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.query(
            "SELECT key, value FROM records WHERE kind = $1 AND key >= $2 \
             AND starts_with(key, $2) AND ($3::text IS NULL OR key > $3) ORDER BY key LIMIT $4",
            &[&kind, &prefix, &after, &limit],
        )?;
        rows.iter().map(|row| Ok((get(row, 0)?, get(row, 1)?))).collect()
    }
}

impl WriteTxn for PgTxn<'_, '_> {
    fn insert_secret(&mut self, meta: &SecretMeta) -> StoreResult<i64> {
        let json = to_json("secret metadata", meta)?;
        // DO NOTHING instead of an error keeps the transaction usable, so the
        // caller can recover from the conflict as on the other stores. A
        // conflict with a concurrent, uncommitted insert is a serialization
        // failure instead, and the write is run again.
        let row = self.query_opt(
            "INSERT INTO secrets (arn, account, region, name, created_ms, last_changed_ms, \
             accessed_sort_ms, deletion_ms, meta) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT DO NOTHING RETURNING seq",
            &[
                &meta.arn,
                &meta.scope.account,
                &meta.scope.region,
                &meta.name,
                &meta.created_ms,
                &meta.last_changed_ms,
                &accessed_sort_ms(meta),
                &meta.deletion_ms,
                &json,
            ],
        )?;
        match row {
            Some(row) => get(&row, 0),
            None => Err(StoreError::Conflict(
                "a secret with this name or ARN already exists".to_owned(),
            )),
        }
    }

    fn update_secret(&mut self, meta: &SecretMeta) -> StoreResult<()> {
        let json = to_json("secret metadata", meta)?;
        let changed = self.execute(
            "UPDATE secrets SET created_ms = $2, last_changed_ms = $3, accessed_sort_ms = $4, \
             deletion_ms = $5, meta = $6 WHERE arn = $1",
            &[
                &meta.arn,
                &meta.created_ms,
                &meta.last_changed_ms,
                &accessed_sort_ms(meta),
                &meta.deletion_ms,
                &json,
            ],
        )?;
        if changed == 0 {
            return Err(StoreError::Backend("no secret has that ARN".to_owned()));
        }
        Ok(())
    }

    fn delete_secret(&mut self, arn: &str) -> StoreResult<()> {
        // The versions go with it through ON DELETE CASCADE.
        self.execute("DELETE FROM secrets WHERE arn = $1", &[&arn])?;
        Ok(())
    }

    fn insert_version(
        &mut self,
        arn: &str,
        meta: &VersionMeta,
        value: &SealedValue,
    ) -> StoreResult<()> {
        let json = to_json("version metadata", meta)?;
        let row = self.query_opt(
            "INSERT INTO versions (arn, version_id, ord, created_ms, meta, value) VALUES \
             ($1, $2, (SELECT COALESCE(MAX(ord), 0) + 1 FROM versions WHERE arn = $1), $3, $4, $5) \
             ON CONFLICT (arn, version_id) DO NOTHING RETURNING ord",
            &[&arn, &meta.version_id, &meta.created_ms, &json, &value.0],
        )?;
        match row {
            Some(_) => Ok(()),
            None => Err(StoreError::Conflict(
                "the secret already has a version with this id".to_owned(),
            )),
        }
    }

    fn update_version(&mut self, arn: &str, meta: &VersionMeta) -> StoreResult<()> {
        let json = to_json("version metadata", meta)?;
        let changed = self.execute(
            "UPDATE versions SET created_ms = $3, meta = $4 WHERE arn = $1 AND version_id = $2",
            &[&arn, &meta.version_id, &meta.created_ms, &json],
        )?;
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
        let changed = self.execute(
            "UPDATE versions SET value = $3 WHERE arn = $1 AND version_id = $2",
            &[&arn, &version_id, &value.0],
        )?;
        if changed == 0 {
            return Err(StoreError::Backend("the secret has no version with that id".to_owned()));
        }
        Ok(())
    }

    fn delete_version(&mut self, arn: &str, version_id: &str) -> StoreResult<()> {
        self.execute(
            "DELETE FROM versions WHERE arn = $1 AND version_id = $2",
            &[&arn, &version_id],
        )?;
        Ok(())
    }

    fn put_wrapped_key(&mut self, key_id: &str, wrapped: &[u8]) -> StoreResult<()> {
        self.execute(
            "INSERT INTO wrapped_keys (key_id, wrapped) VALUES ($1, $2) \
             ON CONFLICT (key_id) DO UPDATE SET wrapped = EXCLUDED.wrapped",
            &[&key_id, &wrapped],
        )?;
        Ok(())
    }

    fn put_setting(&mut self, name: &str, value: &[u8]) -> StoreResult<()> {
        self.execute(
            "INSERT INTO settings (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
            &[&name, &value],
        )?;
        Ok(())
    }

    fn put_record(&mut self, kind: &str, key: &str, value: &[u8]) -> StoreResult<()> {
        self.execute(
            "INSERT INTO records (kind, key, value) VALUES ($1, $2, $3) \
             ON CONFLICT (kind, key) DO UPDATE SET value = EXCLUDED.value",
            &[&kind, &key, &value],
        )?;
        Ok(())
    }

    fn delete_record(&mut self, kind: &str, key: &str) -> StoreResult<()> {
        self.execute("DELETE FROM records WHERE kind = $1 AND key = $2", &[&kind, &key])?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Connection options: the URL, TLS and the pool.

/// Everything [`PostgresStore::connect`] takes from a URL.
struct ConnectOptions {
    config: tokio_postgres::Config,
    /// `None` for `sslmode=disable`.
    tls: Option<MakeRustlsConnect>,
    pool_size: usize,
    /// The database for logs and errors, without the password.
    description: String,
}

/// How far the server's certificate is checked, as libpq's `sslmode` says.
enum Verification {
    /// Encrypt but accept any certificate (`prefer` and `require` without a root certificate).
    None,
    /// The chain must lead to a trusted root; the host name is not checked (`verify-ca`).
    Chain(RootCertStore),
    /// The chain and the host name are checked (`verify-full`).
    Full(RootCertStore),
}

impl ConnectOptions {
    fn parse(url: &str) -> StoreResult<Self> {
        let invalid =
            |why: String| StoreError::Backend(format!("the PostgreSQL URL is not valid: {why}"));
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(invalid("it must start with postgres:// or postgresql://".to_owned()));
        }
        // tokio-postgres knows only three TLS modes and no root certificate
        // option, so those (and the pool size, which is ours) are taken out
        // of the query string before it parses the rest.
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut kept = Vec::new();
        let (mut sslmode, mut sslrootcert, mut pool_size) = (None, None, None);
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value =
                percent_decode(value).ok_or_else(|| invalid(format!("bad escape in `{key}`")))?;
            match key {
                "sslmode" => sslmode = Some(value),
                "sslrootcert" => sslrootcert = Some(value),
                "pool_max_size" => {
                    let size: usize = value.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        invalid("pool_max_size must be a positive number".to_owned())
                    })?;
                    pool_size = Some(size);
                }
                "sslcert" | "sslkey" | "sslpassword" | "sslcrl" => {
                    return Err(invalid(format!("`{key}` (client certificates) is not supported")));
                }
                _ => kept.push(pair),
            }
        }
        let rest =
            if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
        let mut config: tokio_postgres::Config =
            rest.parse().map_err(|e: tokio_postgres::Error| invalid(e.to_string()))?;

        let (mode, verification) = match sslmode.as_deref().unwrap_or("prefer") {
            "disable" => (SslMode::Disable, None),
            // As libpq: a root certificate given with these modes is used to check the chain.
            mode @ ("allow" | "prefer" | "require") => {
                let ssl = if mode == "require" { SslMode::Require } else { SslMode::Prefer };
                let verification = match &sslrootcert {
                    Some(source) => Verification::Chain(load_roots(source)?),
                    None => Verification::None,
                };
                (ssl, Some(verification))
            }
            "verify-ca" => (
                SslMode::Require,
                Some(Verification::Chain(load_roots(&default_roots(sslrootcert)?)?)),
            ),
            "verify-full" => (
                SslMode::Require,
                Some(Verification::Full(load_roots(&default_roots(sslrootcert)?)?)),
            ),
            other => return Err(invalid(format!("unknown sslmode `{other}`"))),
        };
        config.ssl_mode(mode);
        let tls = verification.map(tls_connector).transpose()?;

        if config.get_application_name().is_none() {
            config.application_name("coffer");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.keepalives_idle(Duration::from_secs(30));
        let timeout =
            format!("-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_TIMEOUT_MS}");
        let options = match config.get_options() {
            Some(given) => format!("{given} {timeout}"),
            None => timeout,
        };
        config.options(&options);

        let description = describe_config(&config);
        Ok(ConnectOptions {
            config,
            tls,
            pool_size: pool_size.unwrap_or(DEFAULT_POOL_SIZE),
            description,
        })
    }
}

/// `postgres://user@host:port/db`, never the password.
fn describe_config(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("");
    let db = config.get_dbname().unwrap_or(user);
    format!("postgres://{user}@{host}:{port}/{db}")
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The roots for the verifying modes: `sslrootcert`, or libpq's default file.
fn default_roots(sslrootcert: Option<String>) -> StoreResult<String> {
    if let Some(given) = sslrootcert {
        return Ok(given);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    match home.map(|home| home.join(".postgresql/root.crt")) {
        Some(path) if path.is_file() => Ok(path.display().to_string()),
        _ => Err(StoreError::Backend(
            "sslmode=verify-ca and verify-full need trusted roots: add sslrootcert=<PEM file> \
             (or sslrootcert=system) to the URL, or put them in ~/.postgresql/root.crt"
                .to_owned(),
        )),
    }
}

/// Trusted roots from a PEM file, or the system's with `system`.
fn load_roots(source: &str) -> StoreResult<RootCertStore> {
    let mut roots = RootCertStore::empty();
    if source == "system" {
        let found = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            return Err(StoreError::Backend(
                "no system root certificates could be loaded".to_owned(),
            ));
        }
        return Ok(roots);
    }
    let unreadable = |e: &dyn std::fmt::Display| {
        StoreError::Backend(format!("cannot read the root certificates in {source}: {e}"))
    };
    for cert in CertificateDer::pem_file_iter(source).map_err(|e| unreadable(&e))? {
        roots.add(cert.map_err(|e| unreadable(&e))?).map_err(|e| unreadable(&e))?;
    }
    if roots.is_empty() {
        return Err(StoreError::Backend(format!("{source} holds no certificate")));
    }
    Ok(roots)
}

fn tls_connector(verification: Verification) -> StoreResult<MakeRustlsConnect> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls_error =
        |e: &dyn std::fmt::Display| StoreError::Backend(format!("TLS setup failed: {e}"));
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(&e))?;
    let config = match verification {
        Verification::Full(roots) => builder.with_root_certificates(roots).with_no_client_auth(),
        Verification::Chain(roots) => {
            let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| tls_error(&e))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly(inner)))
                .with_no_client_auth()
        }
        Verification::None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
    };
    Ok(MakeRustlsConnect::new(config))
}

/// `sslmode=prefer`/`require` without roots, as libpq: the connection is
/// encrypted and the handshake signature checked, but any certificate is taken.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `sslmode=verify-ca`: the full check minus the host name.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The verifier checks the chain before the name, so a name error
        // means the chain was good.
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_options_of_ours_are_taken_out_before_tokio_postgres_parses_the_rest() {
        let options = ConnectOptions::parse(
            "postgres://coffer:s3cret@db.example:6543/vault?sslmode=disable&pool_max_size=3&connect_timeout=4",
        )
        .unwrap();
        assert_eq!(options.pool_size, 3);
        assert!(options.tls.is_none());
        assert_eq!(options.config.get_ssl_mode(), SslMode::Disable);
        assert_eq!(options.config.get_connect_timeout(), Some(&Duration::from_secs(4)));
        assert_eq!(options.config.get_application_name(), Some("coffer"));
        assert_eq!(options.description, "postgres://coffer@db.example:6543/vault");
        assert!(!options.description.contains("s3cret"));
    }

    #[test]
    fn the_default_sslmode_prefers_tls_like_libpq() {
        let options = ConnectOptions::parse("postgres://u@h/db").unwrap();
        assert_eq!(options.config.get_ssl_mode(), SslMode::Prefer);
        assert!(options.tls.is_some());
        assert_eq!(options.pool_size, DEFAULT_POOL_SIZE);
    }

    #[test]
    fn bad_urls_and_unsupported_options_are_refused_with_a_reason() {
        for (url, expected) in [
            ("mysql://u@h/db", "postgres://"),
            ("postgres://u@h/db?sslmode=sometimes", "unknown sslmode"),
            ("postgres://u@h/db?pool_max_size=0", "pool_max_size"),
            ("postgres://u@h/db?sslcert=/x.pem", "client certificates"),
            (
                "postgres://u@h/db?sslmode=verify-full&sslrootcert=/nonexistent.pem",
                "/nonexistent.pem",
            ),
        ] {
            match ConnectOptions::parse(url) {
                Err(StoreError::Backend(message)) => {
                    assert!(message.contains(expected), "{url}: {message}")
                }
                Err(other) => panic!("{url}: unexpected error {other:?}"),
                Ok(_) => panic!("{url} was accepted"),
            }
        }
    }

    #[test]
    fn percent_escapes_in_option_values_are_decoded() {
        assert_eq!(percent_decode("%2Ftmp%2Fca.pem").as_deref(), Some("/tmp/ca.pem"));
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%2"), None);
    }

    #[test]
    fn retry_waits_grow_but_stay_capped() {
        for attempt in 1..200 {
            assert!(backoff(attempt) <= Duration::from_millis(64));
        }
    }
}
