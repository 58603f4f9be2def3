//! Export and import of a whole PostgreSQL store (backups and migration between stores).

use tokio_postgres::{IsolationLevel, Row};

use super::read::end_read;
use super::txn::{Failure, PgTxn, SECRET_COLUMNS, decode_secret, decode_version};
use super::{PostgresStore, get};
use crate::{SealedValue, SnapshotItem, StoreError, StoreResult};

/// Rows fetched per round trip while exporting.
pub(super) const EXPORT_CHUNK: i32 = 512;

impl PgTxn<'_, '_> {
    /// Streams the rows of `sql` to `each` through a portal, a chunk at a time.
    pub(super) fn stream(
        &self,
        sql: &str,
        each: &mut dyn FnMut(&Row) -> StoreResult<()>,
    ) -> StoreResult<()> {
        let portal = self.run(async {
            let statement = self.tx().prepare(sql).await?;
            self.tx().bind(&statement, &[]).await
        })?;
        loop {
            let rows = self.run(self.tx().query_portal(&portal, EXPORT_CHUNK))?;
            for row in &rows {
                each(row)?;
            }
            if rows.len() < EXPORT_CHUNK as usize {
                return Ok(());
            }
        }
    }

    pub(super) fn export_all(
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
}

impl PostgresStore {
    pub(super) fn export_snapshot(
        &self,
        visit: &mut dyn FnMut(SnapshotItem) -> StoreResult<()>,
    ) -> StoreResult<()> {
        let rt = self.rt();
        let (result, failure) =
            self.in_transaction(IsolationLevel::RepeatableRead, true, &mut |tx| {
                let txn = PgTxn::new(rt, &tx);
                let result = txn.export_all(visit);
                let failure = txn.failure.get();
                end_read(tx);
                (result, failure)
            })?;
        match (result, failure) {
            (Err(e), _) => Err(e),
            (Ok(()), Failure::None) => Ok(()),
            (Ok(()), _) => Err(StoreError::Backend("a statement failed during export".to_owned())),
        }
    }

    pub(super) fn import_snapshot(
        &self,
        produce: &mut crate::ImportProducer<'_>,
    ) -> StoreResult<()> {
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
}
