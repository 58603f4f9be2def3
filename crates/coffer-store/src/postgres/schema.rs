//! The PostgreSQL schema: its numbered migrations, applied under an advisory lock.

use super::{PostgresStore, backend, get};
use crate::{StoreError, StoreResult};

/// The schema migrations, in order. Migration `i` (counting from 1) brings the
/// database from version `i - 1` to `i`. Never edit a released step: append a
/// new one.
pub(super) const MIGRATIONS: &[&str] = &[
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
    // 2: the destructive deletions the scrub has not destroyed in the files yet
    // (docs/design/postgres-scrub.md).
    super::scrub::MIGRATION,
    // 3: room in every new page of versions for rewritten rows. A put moves the labels
    // of one or two older versions, which rewrites their rows without changing an
    // indexed column; with room on the row's page PostgreSQL rewrites it in place (a
    // HOT update: no new entry in either index, a third of the WAL), while on a full
    // page, and versions are appended so their pages fill, the copy goes to another
    // page with an entry in each index. Pages filled before keep their rows.
    // (docs/design/postgres-performance.md, "Fifteenth session").
    "ALTER TABLE versions SET (fillfactor = 70)",
];

/// The schema version this build creates and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The advisory lock that serializes migrations across nodes ("CofferM1").
pub(super) const MIGRATION_LOCK: i64 = 0x436f_6666_6572_4d31;

/// What [`PostgresStore::migrate`] found and left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    pub from: i64,
    pub to: i64,
}

impl PostgresStore {
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
}
