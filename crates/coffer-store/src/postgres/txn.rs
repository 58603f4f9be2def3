//! The PostgreSQL transaction, its statements and its reads (`ReadTxn`), listings included.

use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;

use coffer_core::model::{Millis, Scope, SecretMeta, VersionMeta};
use deadpool_postgres::Transaction;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Statement};

use super::handoff::{Handed, Witness};
use super::known::KnownRecords;
use super::pipelined::{Expect, Param, UPSERT_RECORDS_SQL, WriteBatch};
use super::read::LazyRead;
use super::shared_cache::{ANNOUNCE_SQL, Epoch, GENERATION_SETTING, SecretEntry, SharedCache};
use super::writer::is_retryable;
use super::{backend, get, unreadable};
use crate::read_cache::{arn_key, name_key};
use crate::{
    CursorKey, ListQuery, ReadTxn, SealedValue, SortBy, StoreError, StoreResult, cursor_of,
};

/// Listing reads this many rows in its first query and doubles up to the maximum.
pub(super) const FIRST_CHUNK: i64 = 64;
pub(super) const MAX_CHUNK: i64 = 1024;

/// The `accessed_sort_ms` column: the LastAccessedDate sort position.
pub(super) fn accessed_sort_ms(meta: &SecretMeta) -> Millis {
    meta.last_accessed_ms.unwrap_or(i64::MIN)
}

/// What went wrong inside a transaction. Any failed statement aborts a
/// PostgreSQL transaction, so the store must know even if the closure
/// swallowed the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    None,
    /// A serialization failure or deadlock: roll back and run the closure again.
    Retry,
    /// Anything else: nothing more can succeed in this transaction.
    Fatal,
}

/// Where a transaction's statements go.
pub(super) enum Conn<'a, 't> {
    /// A transaction begun before the first statement (writes, exports).
    Tx(&'a Transaction<'t>),
    /// A read-only transaction begun by its first statement, if it needs one (`read.rs`).
    Lazy(&'a LazyRead<'a>),
}

/// A read or write transaction on one pooled connection.
pub(super) struct PgTxn<'a, 't> {
    pub(super) rt: &'a tokio::runtime::Runtime,
    pub(super) conn: Conn<'a, 't>,
    pub(super) failure: Cell<Failure>,
    /// Secrets already looked up, by name and by ARN, in a read-only transaction: its
    /// snapshot does not change, and a call looks its secret up twice (authorization,
    /// then the handler), each a round trip. `None` in write transactions.
    pub(super) seen: Option<std::cell::RefCell<HashMap<String, Option<SecretMeta>>>>,
    /// What a read-only transaction's secret lookups brought along (see
    /// [`SECRET_AND_VERSIONS_BY_NAME_SQL`]); always empty in write transactions.
    pub(super) prefetched: std::cell::RefCell<Prefetched>,
    /// Records put and not yet sent (see [`PgTxn::flush`]); empty in read transactions.
    pub(super) pending: std::cell::RefCell<PendingRecords>,
    /// The node's cache of rarely changed records (`shared_cache`), if it keeps one.
    pub(super) shared: Option<&'a SharedCache>,
    /// In a read-only transaction, the cache's epoch noted before the snapshot, while the
    /// cache may be used.
    pub(super) shared_epoch: Option<Epoch>,
    /// A write put or deleted something the cache holds (see `announce_shared_change`).
    pub(super) shared_touched: Cell<bool>,
    /// A write's deferred statements and record memo (`pipelined`); `None` in reads.
    pub(super) batch: Option<&'a WriteBatch>,
    /// In a group-commit member, the secrets the caller's read scope looked up
    /// (`handoff`), answered from there with a guard; `None` elsewhere.
    pub(super) handed: Option<&'a Handed>,
    /// A write changed a secret or its versions (announced on this node's generation row).
    pub(super) secrets_touched: Cell<bool>,
    /// In a group-commit member's first (not careful) attempt, the records this node's
    /// last committed writes left, answered with a guard (`known`); `None` elsewhere.
    pub(super) known: Option<&'a KnownRecords>,
}

/// Which generation row a write's announcement bumps (see `shared_cache`); the greater
/// of two writes' covers both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Announce {
    /// Secrets alone: this node's own row, so that no row is written by two nodes'
    /// secret writes. The watcher's poll reads every node's row and the shared one.
    Node,
    /// Cached records or settings (and perhaps secrets): the shared row.
    Shared,
}

impl Announce {
    pub(super) fn setting(self, cache: &SharedCache) -> &str {
        match self {
            Announce::Node => cache.node_setting(),
            Announce::Shared => GENERATION_SETTING,
        }
    }

    /// The notification's payload: what the nodes must drop (see `shared_cache`).
    pub(super) fn payload(self) -> &'static str {
        match self {
            Announce::Node => super::shared_cache::SECRETS_ONLY,
            Announce::Shared => "",
        }
    }
}

/// A secret's versions and its current version's value, read with the secret in one
/// statement instead of three: one snapshot holds them all, so they stay right for the
/// rest of the read transaction.
#[derive(Default)]
pub(super) struct Prefetched {
    pub(super) versions: HashMap<String, Vec<VersionMeta>>,
    /// Sealed values by ARN and version id.
    values: HashMap<(String, String), Vec<u8>>,
    /// What the secret's rows were when read, by ARN (`handoff`).
    pub(super) witnesses: HashMap<String, Witness>,
}

/// Upserts of records, sent together as one statement: the audit appender puts hundreds
/// of events in one transaction, and one round trip each was most of its cost.
#[derive(Default)]
pub(super) struct PendingRecords {
    /// (kind, key, value), each (kind, key) once: a later put replaces the earlier value,
    /// as it would have one statement at a time (and one `INSERT ... ON CONFLICT` cannot
    /// touch a row twice).
    rows: Vec<(String, String, Vec<u8>)>,
    index: HashMap<(String, String), usize>,
}

impl Prefetched {
    /// Drops what was read of `arn`'s versions: a write changed them.
    pub(super) fn forget(&mut self, arn: &str) {
        self.versions.remove(arn);
        self.values.retain(|(of, _), _| of != arn);
        self.witnesses.remove(arn);
    }
}

impl PendingRecords {
    pub(super) fn put(&mut self, kind: &str, key: &str, value: &[u8]) {
        let id = (kind.to_owned(), key.to_owned());
        match self.index.get(&id) {
            Some(&at) => self.rows[at].2 = value.to_vec(),
            None => {
                self.index.insert(id, self.rows.len());
                self.rows.push((kind.to_owned(), key.to_owned(), value.to_vec()));
            }
        }
    }
}

impl<'a, 't> PgTxn<'a, 't> {
    pub(super) fn new(rt: &'a tokio::runtime::Runtime, tx: &'a Transaction<'t>) -> Self {
        PgTxn::on(rt, Conn::Tx(tx))
    }

    fn on(rt: &'a tokio::runtime::Runtime, conn: Conn<'a, 't>) -> Self {
        PgTxn {
            rt,
            conn,
            failure: Cell::new(Failure::None),
            seen: None,
            prefetched: Default::default(),
            pending: Default::default(),
            shared: None,
            shared_epoch: None,
            shared_touched: Cell::new(false),
            batch: None,
            handed: None,
            secrets_touched: Cell::new(false),
            known: None,
        }
    }

    /// The transaction begun before the first statement (exports only use those).
    pub(super) fn tx(&self) -> &'a Transaction<'t> {
        match self.conn {
            Conn::Tx(tx) => tx,
            Conn::Lazy(_) => unreachable!("exports run in a transaction begun beforehand"),
        }
    }

    /// A write transaction (a member of `batch`) of a store that keeps `shared` (it then
    /// announces changes).
    pub(super) fn writing(
        rt: &'a tokio::runtime::Runtime,
        tx: &'a Transaction<'t>,
        shared: Option<&'a SharedCache>,
        batch: &'a WriteBatch,
        handed: Option<&'a Handed>,
    ) -> Self {
        PgTxn { shared, batch: Some(batch), handed, ..PgTxn::new(rt, tx) }
    }

    /// A read-only transaction, begun by its first statement, that may use `shared`.
    pub(super) fn reading_cached(
        rt: &'a tokio::runtime::Runtime,
        lazy: &'a LazyRead<'a>,
        shared: Option<&'a SharedCache>,
    ) -> Self {
        // Noted before the transaction's first statement, which takes its snapshot.
        let shared_epoch = shared.and_then(|cache| cache.begin_read(std::time::Instant::now()));
        PgTxn {
            shared,
            shared_epoch,
            seen: Some(Default::default()),
            ..PgTxn::on(rt, Conn::Lazy(lazy))
        }
    }

    /// Notes a write of a secret or its versions (announced on commit, see `shared_cache`).
    pub(super) fn note_secret_write(&self) {
        self.secrets_touched.set(true);
    }

    /// Notes a write of `kind` (`None`: a setting) `key`, announced before commit if cached.
    pub(super) fn note_shared_write(&self, kind: Option<&str>, key: &str) {
        if let Some(cache) = self.shared {
            let cached = match kind {
                Some(kind) => cache.caches_kind(kind),
                None => cache.caches_setting(key),
            };
            if cached {
                self.shared_touched.set(true);
            }
        }
    }

    /// What this write must announce before it commits, if it changed cached records or
    /// settings, or secrets (see `shared_cache`).
    pub(super) fn announcement(&self) -> Option<Announce> {
        self.shared?;
        if self.shared_touched.get() {
            Some(Announce::Shared)
        } else if self.secrets_touched.get() {
            Some(Announce::Node)
        } else {
            None
        }
    }

    /// Called once the write's work is done and before it commits: if it changed cached
    /// records or settings, bumps the cache generation and notifies every node, in this
    /// transaction (delivered on commit), and empties this node's cache. Returns whether
    /// what it announced, in which case `SharedCache::commit_ended` must follow the commit.
    /// (A group commit announces once for all its members instead: `batch_attempt`.)
    pub(super) fn announce_shared_change(&self) -> StoreResult<Option<Announce>> {
        let (Some(cache), Some(what)) = (self.shared, self.announcement()) else {
            return Ok(None);
        };
        let generation = what.setting(cache);
        cache.commit_begins(what);
        if let Err(e) = self.execute(ANNOUNCE_SQL, &[&generation, &what.payload()]) {
            cache.commit_ended(what);
            return Err(e);
        }
        Ok(Some(what))
    }

    /// A cached record or setting, read from the database (and cached) if not held.
    fn shared_read(
        &self,
        kind: Option<&str>,
        key: &str,
        read: impl FnOnce() -> StoreResult<Option<Vec<u8>>>,
    ) -> StoreResult<Option<Vec<u8>>> {
        let (Some(cache), Some(epoch)) = (self.shared, self.shared_epoch) else { return read() };
        let cached = match kind {
            Some(kind) => cache.caches_kind(kind),
            None => cache.caches_setting(key),
        };
        if !cached {
            return read();
        }
        if let Some(value) = cache.get(epoch, kind, key) {
            return Ok(Some(value));
        }
        let found = read()?;
        if let Some(value) = &found {
            cache.put(epoch, kind, key, value);
        }
        Ok(found)
    }

    /// The secret under `key`, looked up by `lookup` unless this read already did.
    pub(super) fn remembered(
        &self,
        key: String,
        lookup: impl FnOnce() -> StoreResult<Option<SecretMeta>>,
    ) -> StoreResult<Option<SecretMeta>> {
        let Some(seen) = &self.seen else { return lookup() };
        if let Some(found) = seen.borrow().get(&key) {
            return Ok(found.clone());
        }
        if let (Some(cache), Some(epoch)) = (self.shared, self.shared_epoch)
            && let Some(entry) = cache.secret(epoch, &key)
        {
            return Ok(Some(self.adopt(&entry)));
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

pub(super) const SECRET_COLUMNS: &str = "seq, arn, account, region, name, meta";

/// The lookup of a secret by scope and name (parameters: account, region, name).
///
/// The row comparison repeats the equalities so that only `secrets_by_name` can serve
/// all of them: before the table has statistics (a new database, until autovacuum first
/// analyzes it), PostgreSQL rated every index on `(account, region)` the same and could
/// cache a plan that reads every secret of the account to find one.
pub const SECRET_BY_NAME_SQL: &str = "SELECT seq, arn, account, region, name, meta FROM secrets \
     WHERE account = $1 AND region = $2 AND name = $3 AND (account, region, name) >= ($1, $2, $3)";

/// What a read-only lookup of a secret adds to the secret's row: its versions' ids and
/// metadata in order, and the id and sealed value of the version labelled AWSCURRENT
/// (found by the label's JSON text: a version that merely mentions it costs one value
/// read too much, never a wrong one, since values are remembered by version id).
macro_rules! with_versions {
    () => {
        concat!(
            "SELECT s.seq, s.arn, s.account, s.region, s.name, s.meta, \
     vs.ids, vs.metas, cur.version_id, cur.value, s.xmin::text, vs.xmins FROM secrets s",
            versions_of_s!()
        )
    };
}

/// The two `LATERAL` subqueries of [`with_versions!`], over a row source named `s`.
macro_rules! versions_of_s {
    () => {
        " LEFT JOIN LATERAL (SELECT array_agg(v.version_id ORDER BY v.ord) AS ids, \
     array_agg(v.meta ORDER BY v.ord) AS metas, \
     string_agg(v.xmin::text, ',' ORDER BY v.ord) AS xmins FROM versions v WHERE v.arn = s.arn) vs ON true \
     LEFT JOIN LATERAL (SELECT v.version_id, v.value FROM versions v WHERE v.arn = s.arn \
     AND strpos(v.meta, '\"AWSCURRENT\"') > 0 ORDER BY v.ord DESC LIMIT 1) cur ON true"
    };
}

/// [`SECRET_BY_NAME_SQL`] with the secret's versions and current value, in one statement.
pub const SECRET_AND_VERSIONS_BY_NAME_SQL: &str = concat!(
    with_versions!(),
    " WHERE s.account = $1 AND s.region = $2 AND s.name = $3 \
     AND (s.account, s.region, s.name) >= ($1, $2, $3)"
);

/// The same by ARN (parameter: the ARN).
const SECRET_AND_VERSIONS_BY_ARN_SQL: &str = concat!(with_versions!(), " WHERE s.arn = $1");

/// Many secrets with their versions and current values in one statement: by ARN
/// (`$1`) and by account, region and name (`$2`, `$3`, `$4`, one entry per name). The
/// name join repeats its equalities as a row comparison for the reason given at
/// [`SECRET_BY_NAME_SQL`].
pub(super) const SECRETS_AND_VERSIONS_SQL: &str = concat!(
    "SELECT s.seq, s.arn, s.account, s.region, s.name, s.meta, \
     vs.ids, vs.metas, cur.version_id, cur.value, NULL::text, vs.xmins FROM (\
     SELECT * FROM secrets WHERE arn = ANY($1) UNION ALL \
     SELECT t.* FROM unnest($2::text[], $3::text[], $4::text[]) AS k(account, region, name) \
     JOIN secrets t ON t.account = k.account AND t.region = k.region AND t.name = k.name \
     AND (t.account, t.region, t.name) >= (k.account, k.region, k.name)) s",
    versions_of_s!()
);

thread_local! {
    /// Round trips this thread made through a [`PgTxn`] (a write's deferred statements
    /// travel with one, see `pipelined`).
    pub(super) static STATEMENTS: Cell<u64> = const { Cell::new(0) };
}

thread_local! {
    /// Group commits this thread ended with a `COMMIT` in a round trip of its own (not
    /// travelling with the group's last statements, see `writer::commit_with_deferred`).
    pub(super) static COMMITS_ALONE: Cell<u64> = const { Cell::new(0) };
}

/// How many group commits this thread ended with a `COMMIT` awaited on its own.
#[cfg(test)]
pub(super) fn commits_alone_on_this_thread() -> u64 {
    COMMITS_ALONE.with(Cell::get)
}

/// How many statements this thread has run in PostgreSQL transactions (for tests that
/// hold a call to a fixed number of round trips).
pub fn statements_on_this_thread() -> u64 {
    STATEMENTS.with(Cell::get)
}

/// A `secrets` row, with its identity taken from the columns, which are the
/// authority: `seq` is assigned on insertion and the name and scope never change.
pub(super) fn decode_secret(row: &Row) -> StoreResult<SecretMeta> {
    let json: &str = get(row, 5)?;
    let mut meta: SecretMeta =
        serde_json::from_str(json).map_err(|e| unreadable("secret metadata", &e))?;
    meta.seq = get(row, 0)?;
    meta.arn = get(row, 1)?;
    meta.scope = Scope { account: get(row, 2)?, region: get(row, 3)? };
    meta.name = get(row, 4)?;
    Ok(meta)
}

pub(super) fn decode_version(version_id: String, json: &str) -> StoreResult<VersionMeta> {
    let mut meta: VersionMeta =
        serde_json::from_str(json).map_err(|e| unreadable("version metadata", &e))?;
    meta.version_id = version_id;
    Ok(meta)
}

/// The column a listing sorts on.
pub(super) fn sort_key_sql(sort_by: SortBy) -> &'static str {
    match sort_by {
        SortBy::CreatedDate => "created_ms",
        SortBy::LastChangedDate => "last_changed_ms",
        SortBy::LastAccessedDate => "accessed_sort_ms",
        SortBy::Name => "name",
    }
}

/// The query for one chunk of a listing. Parameters: account, region, limit,
/// then, when resuming, the cursor's key and seq.
pub(super) fn listing_sql(sort_by: SortBy, descending: bool, resuming: bool) -> String {
    let key = sort_key_sql(sort_by);
    let (after, direction) = if descending { ("<", "DESC") } else { (">", "ASC") };
    let resume =
        if resuming { format!(" AND ({key}, seq) {after} ($4, $5)") } else { String::new() };
    format!(
        "SELECT {SECRET_COLUMNS} FROM secrets WHERE account = $1 AND region = $2{resume} \
         ORDER BY {key} {direction}, seq {direction} LIMIT $3"
    )
}

pub(super) type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

/// What a statement answers, and how: tokio-postgres's `query`, `query_opt`, `query_one`
/// or `execute` on a transaction begun beforehand, or taken from the rows of a lazily
/// begun read (which runs every statement as a query: it changes nothing).
trait Answer: Sized {
    async fn run(
        tx: &Transaction<'_>,
        statement: &Statement,
        params: Params<'_>,
    ) -> Result<Self, tokio_postgres::Error>;

    fn from_rows(txn: &PgTxn<'_, '_>, rows: Vec<Row>) -> StoreResult<Self>;
}

impl Answer for Vec<Row> {
    async fn run(
        tx: &Transaction<'_>,
        statement: &Statement,
        params: Params<'_>,
    ) -> Result<Self, tokio_postgres::Error> {
        tx.query(statement, params).await
    }

    fn from_rows(_: &PgTxn<'_, '_>, rows: Vec<Row>) -> StoreResult<Self> {
        Ok(rows)
    }
}

impl Answer for Option<Row> {
    async fn run(
        tx: &Transaction<'_>,
        statement: &Statement,
        params: Params<'_>,
    ) -> Result<Self, tokio_postgres::Error> {
        tx.query_opt(statement, params).await
    }

    fn from_rows(txn: &PgTxn<'_, '_>, mut rows: Vec<Row>) -> StoreResult<Self> {
        match rows.len() {
            0 | 1 => Ok(rows.pop()),
            _ => Err(txn.lazy_failed("a query returned more than one row")),
        }
    }
}

impl Answer for Row {
    async fn run(
        tx: &Transaction<'_>,
        statement: &Statement,
        params: Params<'_>,
    ) -> Result<Self, tokio_postgres::Error> {
        tx.query_one(statement, params).await
    }

    fn from_rows(txn: &PgTxn<'_, '_>, rows: Vec<Row>) -> StoreResult<Self> {
        Option::<Row>::from_rows(txn, rows)?
            .ok_or_else(|| txn.lazy_failed("a query returned no row"))
    }
}

impl Answer for u64 {
    async fn run(
        tx: &Transaction<'_>,
        statement: &Statement,
        params: Params<'_>,
    ) -> Result<Self, tokio_postgres::Error> {
        tx.execute(statement, params).await
    }

    /// Read-only: nothing to change, and nothing executes there.
    fn from_rows(_: &PgTxn<'_, '_>, rows: Vec<Row>) -> StoreResult<Self> {
        Ok(rows.len() as u64)
    }
}

impl PgTxn<'_, '_> {
    /// Blocks on one database call, noting a failure for the end of the transaction.
    pub(super) fn run<T>(
        &self,
        call: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> StoreResult<T> {
        STATEMENTS.with(|n| n.set(n.get() + 1));
        if let Some(batch) = self.batch.filter(|batch| batch.has_deferred()) {
            return self.run_pipelined(batch, call);
        }
        super::off_the_workers(|| self.rt.block_on(call)).map_err(|e| self.failed(&e))
    }

    pub(super) fn failed(&self, e: &tokio_postgres::Error) -> StoreError {
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

    /// Rows of a statement.
    pub(super) fn query(&self, sql: &str, params: Params<'_>) -> StoreResult<Vec<Row>> {
        self.statement(sql, params)
    }

    /// The row of a statement that returns at most one.
    pub(super) fn query_opt(&self, sql: &str, params: Params<'_>) -> StoreResult<Option<Row>> {
        self.statement(sql, params)
    }

    /// The row of a statement that returns exactly one.
    pub(super) fn query_one(&self, sql: &str, params: Params<'_>) -> StoreResult<Row> {
        self.statement(sql, params)
    }

    /// The rows a statement changed.
    pub(super) fn execute(&self, sql: &str, params: Params<'_>) -> StoreResult<u64> {
        self.statement(sql, params)
    }

    /// Every statement's one path: on a lazily begun read, sent (with `BEGIN` if it is the
    /// first) and its rows taken as `A`; on a transaction begun beforehand, the records put
    /// so far sent first, then the statement prepared from the connection's cache and run
    /// as `A` asks (with a write's deferred statements ahead of it, see [`PgTxn::run`]).
    fn statement<A: Answer>(&self, sql: &str, params: Params<'_>) -> StoreResult<A> {
        let tx = match self.conn {
            Conn::Tx(tx) => tx,
            Conn::Lazy(lazy) => {
                let rows = self.lazy_query(lazy, sql, params)?;
                return A::from_rows(self, rows);
            }
        };
        self.flush()?;
        if let Some(batch) = self.batch {
            // A member that fails after this, if it changes rows, reruns its attempt.
            batch.sending(sql);
        }
        self.run(async {
            let statement = tx.prepare_cached(sql).await?;
            A::run(tx, &statement, params).await
        })
    }

    /// One statement of a lazily begun read (see `LazyRead::query`).
    fn lazy_query(
        &self,
        lazy: &LazyRead<'_>,
        sql: &str,
        params: Params<'_>,
    ) -> StoreResult<Vec<Row>> {
        STATEMENTS.with(|n| n.set(n.get() + 1));
        lazy.query(sql, params).map_err(|e| match e {
            super::read::LazyError::Postgres(e) => self.failed(&e),
            super::read::LazyError::Store(e) => {
                if self.failure.get() == Failure::None {
                    self.failure.set(Failure::Fatal);
                }
                e
            }
        })
    }

    fn lazy_failed(&self, why: &str) -> StoreError {
        if self.failure.get() == Failure::None {
            self.failure.set(Failure::Fatal);
        }
        StoreError::Backend(format!("postgres: {why}"))
    }

    /// Sends the records put since the last statement, as one statement. Every other
    /// statement calls it first, so the transaction reads and changes exactly what it
    /// would have one statement at a time; the store calls it once more before a write
    /// ends (before its savepoint is released or its commit).
    pub(super) fn flush(&self) -> StoreResult<()> {
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        if pending.rows.is_empty() {
            return Ok(());
        }
        if let Some(batch) = self.batch {
            // Sent ahead of the write's next statement, or before it is judged or commits.
            let mut params = (Vec::new(), Vec::new(), Vec::new());
            for (kind, key, value) in pending.rows {
                params.0.push(kind);
                params.1.push(key);
                params.2.push(value);
            }
            let params: Vec<Param> =
                vec![Box::new(params.0), Box::new(params.1), Box::new(params.2)];
            batch.defer(UPSERT_RECORDS_SQL, Some(params), Expect::Done);
            return Ok(());
        }
        let kinds: Vec<&str> = pending.rows.iter().map(|(kind, _, _)| kind.as_str()).collect();
        let keys: Vec<&str> = pending.rows.iter().map(|(_, key, _)| key.as_str()).collect();
        let values: Vec<&[u8]> =
            pending.rows.iter().map(|(_, _, value)| value.as_slice()).collect();
        let tx = self.tx();
        self.run(async {
            let statement = tx.prepare_cached(UPSERT_RECORDS_SQL).await?;
            tx.execute(&statement, &[&kinds, &keys, &values]).await
        })?;
        Ok(())
    }

    /// The secret `sql` finds with `params`; in a read-only transaction, with its
    /// versions and current value remembered for the rest of the transaction.
    fn lookup_secret(
        &self,
        plain_sql: &str,
        with_versions_sql: &str,
        params: Params<'_>,
    ) -> StoreResult<Option<SecretMeta>> {
        // A write reads the versions with the secret too (forgotten when it changes them).
        if self.seen.is_none() && self.batch.is_none() {
            let row = self.query_opt(plain_sql, params)?;
            return row.as_ref().map(decode_secret).transpose();
        }
        let Some(row) = self.query_opt(with_versions_sql, params)? else { return Ok(None) };
        self.take_secret_row(&row).map(Some)
    }

    /// A row of [`with_versions!`]: the secret, with its versions and current value
    /// remembered for the rest of the transaction and offered to the node's cache.
    fn take_secret_row(&self, row: &Row) -> StoreResult<SecretMeta> {
        let meta = decode_secret(row)?;
        let ids: Option<Vec<String>> = get(row, 6)?;
        let metas: Option<Vec<&str>> = get(row, 7)?;
        let versions = match (ids, metas) {
            (Some(ids), Some(metas)) if ids.len() == metas.len() => ids
                .into_iter()
                .zip(metas)
                .map(|(id, json)| decode_version(id, json))
                .collect::<StoreResult<Vec<_>>>()?,
            (None, None) => Vec::new(),
            _ => {
                return Err(StoreError::Backend(
                    "a secret's versions were read inconsistently".to_owned(),
                ));
            }
        };
        let current: Option<String> = get(row, 8)?;
        let value: Option<Vec<u8>> = get(row, 9)?;
        let current = current.zip(value);
        // The batch lookup (`SECRETS_AND_VERSIONS_SQL`) reads no `xmin` of the secret.
        let witness = get::<Option<String>>(row, 10)?
            .map(|secret| Ok::<_, StoreError>(Witness { secret, versions: get(row, 11)? }))
            .transpose()?;
        if let (Some(cache), Some(epoch)) = (self.shared, self.shared_epoch) {
            let keys = [arn_key(&meta.arn), name_key(&meta.scope, &meta.name)];
            let entry = SecretEntry {
                meta: meta.clone(),
                versions: versions.clone(),
                current: current.clone(),
                witness: witness.clone(),
            };
            cache.put_secret(epoch, keys, entry);
        }
        let mut prefetched = self.prefetched.borrow_mut();
        match witness {
            Some(witness) => prefetched.witnesses.insert(meta.arn.clone(), witness),
            None => prefetched.witnesses.remove(&meta.arn),
        };
        if let Some((id, value)) = current {
            prefetched.values.insert((meta.arn.clone(), id), value);
        }
        prefetched.versions.insert(meta.arn.clone(), versions);
        Ok(meta)
    }

    /// Takes a cached secret into this read: it is then remembered, with its versions
    /// and current value, as if this transaction had looked it up.
    fn adopt(&self, entry: &SecretEntry) -> SecretMeta {
        let meta = entry.meta.clone();
        if let Some(seen) = &self.seen {
            let mut seen = seen.borrow_mut();
            seen.insert(arn_key(&meta.arn), Some(meta.clone()));
            seen.insert(name_key(&meta.scope, &meta.name), Some(meta.clone()));
        }
        let mut prefetched = self.prefetched.borrow_mut();
        if let Some((id, value)) = &entry.current {
            prefetched.values.insert((meta.arn.clone(), id.clone()), value.clone());
        }
        prefetched.versions.insert(meta.arn.clone(), entry.versions.clone());
        match &entry.witness {
            Some(witness) => prefetched.witnesses.insert(meta.arn.clone(), witness.clone()),
            None => prefetched.witnesses.remove(&meta.arn),
        };
        meta
    }
}

impl PgTxn<'_, '_> {
    /// One chunk of a listing, strictly after `after` when given.
    pub(super) fn listing_chunk(
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
        let key = name_key(scope, name);
        if let Some(meta) = self.handed_secret(&key)? {
            return Ok(Some(meta));
        }
        self.remembered(key, || {
            self.lookup_secret(
                SECRET_BY_NAME_SQL,
                SECRET_AND_VERSIONS_BY_NAME_SQL,
                &[&scope.account, &scope.region, &name],
            )
        })
    }

    fn secret_by_arn(&self, arn: &str) -> StoreResult<Option<SecretMeta>> {
        let key = arn_key(arn);
        if let Some(meta) = self.handed_secret(&key)? {
            return Ok(Some(meta));
        }
        self.remembered(key, || {
            let plain = format!("SELECT {SECRET_COLUMNS} FROM secrets WHERE arn = $1");
            self.lookup_secret(&plain, SECRET_AND_VERSIONS_BY_ARN_SQL, &[&arn])
        })
    }

    /// One statement for every secret named that this read has not seen and the node's
    /// cache does not hold: a batch is then a fixed number of round trips.
    fn prefetch_secrets(&self, names: &[(&Scope, &str)], arns: &[&str]) -> StoreResult<()> {
        let Some(seen) = &self.seen else { return Ok(()) };
        let wanted = |key: &String| {
            if seen.borrow().contains_key(key) {
                return false;
            }
            let cached = self
                .shared
                .zip(self.shared_epoch)
                .and_then(|(cache, epoch)| cache.secret(epoch, key));
            match cached {
                Some(entry) => {
                    self.adopt(&entry);
                    false
                }
                None => true,
            }
        };
        let mut keys = Vec::new();
        let (mut accounts, mut regions, mut wanted_names) = (Vec::new(), Vec::new(), Vec::new());
        for (scope, name) in names {
            let key = name_key(scope, name);
            if wanted(&key) && !keys.contains(&key) {
                keys.push(key);
                accounts.push(scope.account.as_str());
                regions.push(scope.region.as_str());
                wanted_names.push(*name);
            }
        }
        let mut wanted_arns = Vec::new();
        for arn in arns {
            let key = arn_key(arn);
            if wanted(&key) && !keys.contains(&key) {
                keys.push(key);
                wanted_arns.push(*arn);
            }
        }
        if keys.is_empty() {
            return Ok(());
        }
        let rows = self
            .query(SECRETS_AND_VERSIONS_SQL, &[&wanted_arns, &accounts, &regions, &wanted_names])?;
        for row in &rows {
            let meta = self.take_secret_row(row)?;
            let mut seen = seen.borrow_mut();
            seen.insert(arn_key(&meta.arn), Some(meta.clone()));
            seen.insert(name_key(&meta.scope, &meta.name), Some(meta));
        }
        // What was not found is not there, in this snapshot.
        let mut seen = seen.borrow_mut();
        for key in keys {
            seen.entry(key).or_insert(None);
        }
        Ok(())
    }

    fn versions(&self, arn: &str) -> StoreResult<Vec<VersionMeta>> {
        if let Some(versions) = self.prefetched.borrow().versions.get(arn) {
            return Ok(versions.clone());
        }
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
        let id = (arn.to_owned(), version_id.to_owned());
        if let Some(value) = self.prefetched.borrow().values.get(&id) {
            return Ok(Some(SealedValue(value.clone())));
        }
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
        self.shared_read(None, name, || {
            let row = self.query_opt("SELECT value FROM settings WHERE name = $1", &[&name])?;
            row.map(|row| get(&row, 0)).transpose()
        })
    }

    fn record(&self, kind: &str, key: &str) -> StoreResult<Option<Vec<u8>>> {
        if let Some(batch) = self.batch {
            return self.record_remembered(batch, kind, key);
        }
        self.shared_read(Some(kind), key, || {
            let row = self.query_opt(
                "SELECT value FROM records WHERE kind = $1 AND key = $2",
                &[&kind, &key],
            )?;
            row.map(|row| get(&row, 0)).transpose()
        })
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
