//! Deletion that destroys on PostgreSQL (issue 24.3): the rows a destructive deletion
//! removed must leave the database's files, not only its tables.
//!
//! PostgreSQL never overwrites a row in place: a DELETE or UPDATE leaves the old row in the
//! table file as a dead tuple until VACUUM reuses its space (which does not zero it), and
//! the row's bytes stay in every WAL segment written since it was inserted. So:
//!
//! 1. A transaction that destroys something (a secret's or version's value, a KMS key's
//!    record with its wrapped material, a wrapping superseded by a master-key rotation)
//!    also inserts a row into `scrub_pending` naming the tables to rewrite and its own
//!    transaction id (`note_destroyed`). Plain inserts of fresh rows, so concurrent
//!    SERIALIZABLE writers never conflict over them.
//! 2. The background lease holder calls `PostgresStore::scrub` every round. It waits
//!    until the oldest pending row is `scrub_delay` old (one scrub per delay covers every
//!    deletion made in it: the batching). It then takes every pending deletion that no
//!    snapshot, prepared transaction or replication slot can still see (VACUUM FULL would
//!    copy rows still visible to one, as "recently dead", into the new file); younger
//!    ones wait for a later scrub.
//! 3. `VACUUM FULL` of those tables writes them (and their TOAST tables and indexes) to
//!    new files holding only live rows; the old files are truncated at commit and unlinked
//!    at the next checkpoint.
//! 4. `CHECKPOINT`, `pg_switch_wal()`, `CHECKPOINT`: the last checkpoint's redo point lies
//!    in a segment written after the rewrite, so every older segment, all that ever held
//!    the rows, is removed (removed, not renamed for reuse, only with `wal_recycle = off`).
//! 5. Only then are the batch's pending rows deleted and the rows called destroyed.
//!    Whatever stops a step (a privilege the role lacks, a server setting that keeps old
//!    segments) is an error naming it; the pending rows stay, and the scrub is tried
//!    again after the delay.
//!
//! What the server needs is in docs/design/postgres-scrub.md.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;

use super::txn::PgTxn;
use super::{PostgresStore, backend, describe_error, get};
use crate::{StoreError, StoreResult};

/// How long the first deletion waits for others to share its scrub, unless the store URL
/// says `scrub_delay=<seconds>`.
pub(super) const DEFAULT_SCRUB_DELAY: Duration = Duration::from_secs(300);

/// How long the rewrite waits for the tables' exclusive lock before it gives up until the
/// next try: every read and write of the table queues behind a waiting VACUUM FULL.
const LOCK_TIMEOUT: &str = "5s";

/// A failed scrub is tried again after this long at the earliest (or the delay, if longer),
/// so a role that lacks a privilege does not rewrite the tables every round.
const MIN_RETRY: Duration = Duration::from_secs(10);

/// The tables that can hold destroyed bytes. Table names reach SQL only from this list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Table {
    /// Secret versions' sealed values.
    Versions,
    /// KMS key records, which hold every wrapped material version of a key.
    Records,
    /// Wrapped keys (the IAM credentials key, the audit chain key).
    WrappedKeys,
    /// Settings (the master key's check value).
    Settings,
}

impl Table {
    const ALL: [Table; 4] = [Table::Versions, Table::Records, Table::WrappedKeys, Table::Settings];

    fn name(self) -> &'static str {
        match self {
            Table::Versions => "versions",
            Table::Records => "records",
            Table::WrappedKeys => "wrapped_keys",
            Table::Settings => "settings",
        }
    }

    fn named(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// The record kind holding KMS key material (`coffer_kms::KEY_KIND`; this crate sits below
/// coffer-kms and cannot name it).
pub(super) const KMS_KEY_KIND: &str = "kms-key";

/// The setting a master-key rotation changes (`coffer_kms::MASTER_CHECK_SETTING`): when it
/// is overwritten, every wrapping under the old key became a dead row.
pub(super) const MASTER_CHECK_SETTING: &str = "master-key-check";

/// The tables a master-key rotation leaves old wrappings in.
pub(super) const REWRAPPED: &[Table] = &[Table::Records, Table::WrappedKeys, Table::Settings];

/// What the scrub remembers between rounds (one per store, used only by the lease holder).
#[derive(Debug)]
pub(super) struct ScrubState {
    pub(super) delay: Duration,
    retry_after: std::sync::Mutex<Option<Instant>>,
}

impl ScrubState {
    pub(super) fn new(delay: Duration) -> ScrubState {
        ScrubState { delay, retry_after: std::sync::Mutex::new(None) }
    }
}

/// The migration that creates the pending table (appended to `schema::MIGRATIONS`).
pub(super) const MIGRATION: &str = r#"
    CREATE TABLE scrub_pending (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        tables TEXT COLLATE "C" NOT NULL,
        xid BIGINT NOT NULL DEFAULT txid_current(),
        noted_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
"#;

impl PgTxn<'_, '_> {
    /// Records, in this write transaction, that it destroys rows of `tables`.
    pub(super) fn note_destroyed(&self, tables: &[Table]) -> StoreResult<()> {
        let names: Vec<&str> = tables.iter().map(|t| t.name()).collect();
        self.execute("INSERT INTO scrub_pending (tables) VALUES ($1)", &[&names.join(",")])?;
        Ok(())
    }
}

/// What stands between the rewritten tables and the removal of every older WAL segment.
const WAL_SETTINGS: &str = "SELECT current_setting('wal_recycle'), current_setting('archive_mode'), \
     pg_size_bytes(current_setting('wal_keep_size')), \
     coalesce(current_setting('vacuum_defer_cleanup_age', true), '0')";

/// Every pending deletion, with whether it is due (`$1`: the delay in seconds), how long
/// it has waited, and whether no snapshot can still see the rows it deleted: none of the
/// sessions (in any database; walsenders with hot_standby_feedback count for all),
/// prepared transactions and replication slots has an xmin or xid at or before its
/// transaction. VACUUM FULL would copy rows some snapshot still sees into the new file.
/// (`age` compares transaction ids across wraparound; the stored id is 64-bit.)
const PENDING: &str = "WITH h AS (SELECT max(a) AS oldest FROM ( \
       SELECT greatest(age(backend_xmin), age(backend_xid)) AS a FROM pg_stat_activity \
       WHERE pid <> pg_backend_pid() \
       UNION ALL SELECT age(transaction) FROM pg_prepared_xacts \
       UNION ALL SELECT age(xmin) FROM pg_replication_slots) s) \
     SELECT id, tables, noted_at <= now() - make_interval(secs => $1), \
       extract(epoch FROM now() - noted_at)::float8, \
       h.oldest IS NULL OR age(((xid % 4294967296)::text)::xid) > h.oldest \
     FROM scrub_pending, h ORDER BY id";

impl PostgresStore {
    /// One round of the scrub: see the module's documentation. `Ok` when there was nothing
    /// to do, nothing due yet, or everything pending was destroyed; an error says what was
    /// not destroyed and why.
    pub(super) fn scrub(&self) -> StoreResult<()> {
        let state = &self.scrub;
        {
            let retry = state.retry_after.lock().unwrap_or_else(|e| e.into_inner());
            if retry.is_some_and(|at| Instant::now() < at) {
                return Ok(());
            }
        }
        let client = self.checkout()?;
        let result = self.rt().block_on(scrub_round(&client, state.delay));
        if result.is_err() {
            let wait = state.delay.max(MIN_RETRY);
            *state.retry_after.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(Instant::now() + wait);
        }
        result
    }

    /// How many destructive deletions wait for the scrub (for operators and tests).
    pub fn scrub_pending(&self) -> StoreResult<i64> {
        let client = self.checkout()?;
        let row = self
            .rt()
            .block_on(client.query_one("SELECT count(*) FROM scrub_pending", &[]))
            .map_err(|e| backend(&e))?;
        get(&row, 0)
    }
}

/// Why the scrub stopped: the error callers log. It always says the rows are not destroyed.
fn not_destroyed(why: String) -> StoreError {
    StoreError::Backend(format!("deleted rows are NOT yet destroyed on PostgreSQL: {why}"))
}

/// A failed statement, with a hint when the cause is a privilege the role lacks.
fn failed(step: &str, e: &tokio_postgres::Error, hint: &str) -> StoreError {
    if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
        return not_destroyed(format!("{step} is not allowed for this role: {hint}"));
    }
    not_destroyed(format!("{step} failed: {}", describe_error(e)))
}

async fn scrub_round(client: &tokio_postgres::Client, delay: Duration) -> StoreResult<()> {
    let rows = client
        .query(PENDING, &[&delay.as_secs_f64()])
        .await
        .map_err(|e| failed("reading scrub_pending", &e, "it must own the table"))?;
    let (mut due, mut waited) = (false, 0f64);
    let (mut batch, mut tables) = (Vec::new(), BTreeSet::new());
    for row in &rows {
        due |= get::<bool>(row, 2)?;
        waited = waited.max(get(row, 3)?);
        // Deletions some snapshot still predates wait for a later scrub, so that fresh
        // deletions under load never hold back the ones before them.
        if get::<bool>(row, 4)? {
            batch.push(get::<i64>(row, 0)?);
            tables.extend(get::<&str>(row, 1)?.split(',').filter_map(Table::named));
        }
    }
    if !due {
        return Ok(());
    }
    if batch.is_empty() {
        let message = "deleted rows wait for older transactions, prepared transactions or \
                       replication slots to end before they can be destroyed";
        if waited > delay.as_secs_f64() + 600.0 {
            tracing::warn!(pending = rows.len(), waited_s = waited as u64, "{message}");
        } else {
            tracing::debug!(pending = rows.len(), "{message}");
        }
        return Ok(());
    }

    let settings = client
        .query_one(WAL_SETTINGS, &[])
        .await
        .map_err(|e| failed("reading the WAL settings", &e, ""))?;
    let defer: String = get(&settings, 3)?;
    if defer.trim() != "0" {
        return Err(not_destroyed(format!(
            "vacuum_defer_cleanup_age is {defer}: VACUUM keeps recently deleted rows; set it to 0"
        )));
    }

    if !tables.is_empty() {
        rewrite(client, &tables).await?;
        // Done once, even if the WAL step fails now and is tried again later.
        client
            .execute("UPDATE scrub_pending SET tables = '' WHERE id = ANY($1)", &[&batch])
            .await
            .map_err(|e| failed("recording the rewrite", &e, ""))?;
    }
    let archive = remove_old_wal(client, &settings).await?;
    client
        .execute("DELETE FROM scrub_pending WHERE id = ANY($1)", &[&batch])
        .await
        .map_err(|e| failed("clearing scrub_pending", &e, ""))?;
    let names: Vec<&str> = tables.iter().map(|t| t.name()).collect();
    if archive {
        tracing::warn!(
            deletions = batch.len(),
            tables = ?names,
            "destroyed deleted rows in the database's files (tables rewritten, older WAL \
             segments removed), but archive_mode is on: the WAL archive still holds them"
        );
    } else {
        tracing::info!(
            deletions = batch.len(),
            tables = ?names,
            "destroyed deleted rows: tables rewritten, older WAL segments removed"
        );
    }
    Ok(())
}

/// `VACUUM FULL` of `tables`, after checking that the role may: PostgreSQL skips a table
/// the role may not vacuum with only a warning.
async fn rewrite(client: &tokio_postgres::Client, tables: &BTreeSet<Table>) -> StoreResult<()> {
    let names: Vec<&str> = tables.iter().map(|t| t.name()).collect();
    let refused = client
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_database d \
             ON d.datname = current_database() \
             WHERE c.oid = ANY(SELECT to_regclass(n)::oid FROM unnest($1::text[]) AS n) \
             AND NOT (pg_has_role(c.relowner, 'USAGE') OR pg_has_role(d.datdba, 'USAGE'))",
            &[&names],
        )
        .await
        .map_err(|e| failed("checking table ownership", &e, ""))?;
    if !refused.is_empty() {
        let refused: Vec<String> = refused.iter().filter_map(|r| r.try_get(0).ok()).collect();
        return Err(not_destroyed(format!(
            "VACUUM FULL of {} needs the role to own them (or the database)",
            refused.join(", ")
        )));
    }
    client
        .batch_execute(&format!("SET lock_timeout = '{LOCK_TIMEOUT}'"))
        .await
        .map_err(|e| failed("setting lock_timeout", &e, ""))?;
    let vacuumed = client.batch_execute(&format!("VACUUM FULL {}", names.join(", "))).await;
    let _ = client.batch_execute("RESET lock_timeout").await;
    vacuumed.map_err(|e| {
        if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) {
            not_destroyed(format!(
                "VACUUM FULL did not get the tables' lock within {LOCK_TIMEOUT}; tried again later"
            ))
        } else {
            failed("VACUUM FULL", &e, "it must own the tables")
        }
    })
}

/// CHECKPOINT, pg_switch_wal(), CHECKPOINT, then checks that no segment written before
/// the switch is left. Returns whether archive_mode is on (the archive keeps copies).
async fn remove_old_wal(
    client: &tokio_postgres::Client,
    settings: &tokio_postgres::Row,
) -> StoreResult<bool> {
    let (recycle, archive, keep): (String, String, i64) =
        (get(settings, 0)?, get(settings, 1)?, get(settings, 2)?);
    let mut kept_by = Vec::new();
    if recycle == "on" {
        kept_by.push(
            "wal_recycle is on, so old WAL segments are renamed for reuse with their contents \
             instead of removed (set wal_recycle = off)"
                .to_owned(),
        );
    }
    if keep > 0 {
        kept_by.push("wal_keep_size keeps old WAL segments (set it to 0)".to_owned());
    }
    // Nothing of the rows can be in WAL written after this point.
    let written: String = client
        .query_one("SELECT pg_walfile_name(pg_current_wal_insert_lsn())", &[])
        .await
        .map_err(|e| failed("reading the WAL position", &e, ""))
        .and_then(|row| get(&row, 0))?;
    let checkpoint_hint = "grant it pg_checkpoint (PostgreSQL 15 and later; a superuser before)";
    client
        .batch_execute("CHECKPOINT")
        .await
        .map_err(|e| failed("CHECKPOINT", &e, checkpoint_hint))?;
    client.query_one("SELECT pg_switch_wal()", &[]).await.map_err(|e| {
        failed("pg_switch_wal()", &e, "GRANT EXECUTE ON FUNCTION pg_switch_wal() TO the role")
    })?;
    client
        .batch_execute("CHECKPOINT")
        .await
        .map_err(|e| failed("CHECKPOINT", &e, checkpoint_hint))?;

    let slots = client
        .query_one(
            "SELECT count(*) FROM pg_replication_slots \
             WHERE restart_lsn IS NOT NULL AND pg_walfile_name(restart_lsn) <= $1",
            &[&written],
        )
        .await
        .map_err(|e| failed("reading the replication slots", &e, ""))
        .and_then(|row| get::<i64>(&row, 0))?;
    if slots > 0 {
        kept_by.push(format!("{slots} replication slot(s) keep old WAL segments"));
    }
    // The segments themselves, where the role may list them (pg_monitor).
    match client
        .query_one(
            "SELECT count(*) FROM pg_ls_waldir() \
             WHERE name ~ '^[0-9A-F]{24}$' AND name <= $1",
            &[&written],
        )
        .await
    {
        Ok(row) => {
            let left: i64 = get(&row, 0)?;
            if left > 0 {
                kept_by.push(format!(
                    "{left} WAL segment(s) up to {written} are still in pg_wal (archiving not \
                     done yet, or max_slot_wal_keep_size)"
                ));
            }
        }
        Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {
            tracing::debug!("pg_ls_waldir() is not allowed: WAL removal judged by the settings");
        }
        Err(e) => return Err(failed("listing pg_wal", &e, "")),
    }
    if !kept_by.is_empty() {
        return Err(not_destroyed(format!(
            "the tables were rewritten, but the WAL still holds the deleted rows: {}",
            kept_by.join("; ")
        )));
    }
    Ok(archive != "off")
}
