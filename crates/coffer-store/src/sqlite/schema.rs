//! The SQLite schema: its numbered migrations and how they are applied.

use rusqlite::{Connection, TransactionBehavior};

use crate::{StoreError, StoreResult};

/// The schema migrations, in order. Migration `i` (counting from 1) brings the
/// database from `user_version` `i - 1` to `i`. Never edit a released step:
/// append a new one.
pub(super) const MIGRATIONS: &[&str] = &[
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
    // Version 5: the records' key index in descending key order. Audit event keys
    // decrease (newest first), so each new event went to the left edge of an ascending
    // index, whose pages split half full: the index took ~128 bytes per event for ~65 of
    // entry. In descending order, new keys append at the right edge and pages fill.
    // Reads are unchanged (SQLite walks the index either way, ORDER BY key included).
    r#"
    CREATE TABLE records_v5 (
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        value BLOB NOT NULL,
        PRIMARY KEY (kind, key DESC)
    );
    INSERT INTO records_v5 (kind, key, value) SELECT kind, key, value FROM records ORDER BY rowid;
    DROP TABLE records;
    ALTER TABLE records_v5 RENAME TO records;
    "#,
    // Version 6: whether a version carries a staging label, beside its metadata. Every
    // PutSecretValue looks up its secret's labelled versions and counts all of them, on
    // the one writer thread; without the column it read and parsed the metadata of every
    // deprecated version too (up to a hundred per secret: at twenty, more than a fifth of
    // the writer's work per put). Only a version whose metadata holds an empty list of
    // stages is unlabelled; any other (including one whose list could not be read here)
    // stays marked labelled, and is then read and checked as before.
    r#"
    ALTER TABLE version_meta ADD COLUMN labelled INTEGER NOT NULL DEFAULT 1;
    UPDATE version_meta SET labelled = 0 WHERE CASE WHEN json_valid(meta)
        THEN json_type(meta, '$.stages') = 'array' AND json_array_length(meta, '$.stages') = 0
        ELSE 0 END;
    "#,
];

/// The schema version this build creates and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Applies the migrations the database has not seen yet, all in one transaction.
pub(super) fn migrate(conn: &mut Connection) -> StoreResult<()> {
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
