//! Export and import of a whole SQLite store (backups and migration between stores).

use coffer_core::model::VersionMeta;
use rusqlite::{Connection, TransactionBehavior};

use super::txn::{SECRET_COLUMNS, SecretRow, SqlTxn};
use super::{SqliteStore, unreadable};
use crate::read_cache::Touched;
use crate::{SealedValue, SnapshotItem, StoreResult};

/// Streams the whole database to `visit`, inside the caller's transaction.
pub(super) fn export_from(
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

impl SqliteStore {
    pub(super) fn export_snapshot(
        &self,
        visit: &mut dyn FnMut(SnapshotItem) -> StoreResult<()>,
    ) -> StoreResult<()> {
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

    pub(super) fn import_snapshot(
        &self,
        produce: &mut crate::ImportProducer<'_>,
    ) -> StoreResult<()> {
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
            crate::import_items(&mut SqlTxn::new(&tx, None), produce)?;
            Ok(tx.commit()?)
        })();
        if let Some(cache) = &self.cache {
            cache.commit_ended(&everything, result.is_ok());
        }
        if !conn.is_autocommit()
            && let Err(error) = conn.execute_batch("ROLLBACK")
        {
            tracing::error!(%error, "could not roll back a failed SQLite import");
        }
        result
    }
}
