//! The SQLite transaction's changes (`WriteTxn`), each noting what it touched for the read cache.

use coffer_core::model::{SecretMeta, VersionMeta};
use rusqlite::params;

use super::to_json;
use super::txn::{SqlTxn, accessed_sort_ms};
use crate::read_cache::{KnownVersions, version_id_hash};
use crate::{SealedValue, StoreError, StoreResult, WriteTxn};

impl WriteTxn for SqlTxn<'_> {
    fn insert_secret(&mut self, meta: &SecretMeta) -> StoreResult<i64> {
        self.touch_secret(&meta.arn, Some((&meta.scope, &meta.name)));
        let json = to_json("secret metadata", meta)?;
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO secrets (arn, account, region, name, created_ms, last_changed_ms, \
             accessed_sort_ms, deletion_ms, meta) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        stmt.execute(params![
            meta.arn,
            meta.scope.account,
            meta.scope.region,
            meta.name,
            meta.created_ms,
            meta.last_changed_ms,
            accessed_sort_ms(meta),
            meta.deletion_ms,
            json,
        ])?;
        // A new secret has no version yet: its first goes first.
        self.note_newest_ord(&meta.arn, Some(0));
        self.set_known_versions(&meta.arn, Some(KnownVersions::default()));
        Ok(self.conn.last_insert_rowid())
    }

    fn update_secret(&mut self, meta: &SecretMeta) -> StoreResult<()> {
        self.touch_secret(&meta.arn, Some((&meta.scope, &meta.name)));
        let json = to_json("secret metadata", meta)?;
        // SQLite rewrites the entries of every index on a column the UPDATE sets, whether
        // or not its value changed. Most updates (every PutSecretValue, UpdateSecret,
        // label moves) change only the metadata and LastChangedDate: this statement,
        // which applies only when the other indexed columns hold these values already,
        // leaves their three indexes alone (fewer B-tree operations and pages to write at
        // the commit, on the one writer thread). Otherwise the full update runs.
        let update = |sql: &str| {
            self.conn.prepare_cached(sql)?.execute(params![
                meta.arn,
                meta.created_ms,
                meta.last_changed_ms,
                accessed_sort_ms(meta),
                meta.deletion_ms,
                json,
            ])
        };
        let changed = update(
            "UPDATE secrets SET last_changed_ms = ?3, meta = ?6 WHERE arn = ?1 \
             AND created_ms = ?2 AND accessed_sort_ms = ?4 AND deletion_ms IS ?5",
        )?;
        if changed == 1 {
            return Ok(());
        }
        let changed = update(
            "UPDATE secrets SET created_ms = ?2, last_changed_ms = ?3, accessed_sort_ms = ?4, \
             deletion_ms = ?5, meta = ?6 WHERE arn = ?1",
        )?;
        if changed == 0 {
            return Err(StoreError::Backend("no secret has that ARN".to_owned()));
        }
        Ok(())
    }

    fn delete_secret(&mut self, arn: &str) -> StoreResult<()> {
        self.touch_secret(arn, None);
        self.note_newest_ord(arn, None);
        self.set_known_versions(arn, None);
        // The versions' metadata goes with the secret through ON DELETE CASCADE; their
        // values, which no key ties to the secret, go first.
        self.conn
            .prepare_cached(
                "DELETE FROM version_values WHERE id IN \
                 (SELECT value_id FROM version_meta WHERE arn = ?1)",
            )?
            .execute(params![arn])?;
        let mut stmt = self.conn.prepare_cached("DELETE FROM secrets WHERE arn = ?1")?;
        stmt.execute(params![arn])?;
        Ok(())
    }

    fn insert_version(
        &mut self,
        arn: &str,
        meta: &VersionMeta,
        value: &SealedValue,
    ) -> StoreResult<()> {
        self.touch_versions(arn);
        let json = to_json("version metadata", meta)?;
        // The new version's place after the newest: known when this transaction read the
        // secret's versions (every PutSecretValue does) or created the secret, else asked
        // of SQLite (before the value is stored, so a failure leaves nothing behind).
        let ord = match self.newest_ord_of(arn) {
            Some(newest) => newest + 1,
            None => self
                .conn
                .prepare_cached(
                    "SELECT COALESCE(MAX(ord), 0) + 1 FROM version_meta WHERE arn = ?1",
                )?
                .query_row(params![arn], |row| row.get::<_, i64>(0))?,
        };
        self.conn
            .prepare_cached("INSERT INTO version_values (value) VALUES (?1)")?
            .execute(params![value.0])?;
        let value_id = self.conn.last_insert_rowid();
        let labelled = !meta.stages.is_empty();
        let inserted = self
            .conn
            .prepare_cached(
                "INSERT INTO version_meta \
                 (arn, version_id, ord, created_ms, value_id, meta, labelled) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    arn,
                    meta.version_id,
                    ord,
                    meta.created_ms,
                    value_id,
                    json,
                    labelled
                ])
            });
        self.note_newest_ord(arn, inserted.is_ok().then_some(ord));
        if inserted.is_ok() {
            self.versions_changed(arn, |known| {
                known.count += 1;
                known.newest = ord;
                known.ids.push(version_id_hash(&meta.version_id));
                if !meta.stages.is_empty() {
                    known.labelled.push((ord, meta.clone()));
                }
                true
            });
        }
        if let Err(error) = inserted {
            // The id is taken (or the secret is gone): the value must not stay behind
            // should the caller go on with the transaction.
            self.conn
                .prepare_cached("DELETE FROM version_values WHERE id = ?1")?
                .execute(params![value_id])?;
            return Err(error.into());
        }
        Ok(())
    }

    fn update_version(&mut self, arn: &str, meta: &VersionMeta) -> StoreResult<()> {
        self.touch_versions(arn);
        let json = to_json("version metadata", meta)?;
        let mut stmt = self.conn.prepare_cached(
            "UPDATE version_meta SET created_ms = ?3, meta = ?4, labelled = ?5 \
             WHERE arn = ?1 AND version_id = ?2",
        )?;
        let labelled = !meta.stages.is_empty();
        let changed =
            stmt.execute(params![arn, meta.version_id, meta.created_ms, json, labelled])?;
        if changed == 0 {
            return Err(StoreError::Backend("the secret has no version with that id".to_owned()));
        }
        self.versions_changed(arn, |known| {
            let at = known.labelled.iter().position(|(_, v)| v.version_id == meta.version_id);
            match at {
                Some(at) if meta.stages.is_empty() => {
                    known.labelled.remove(at);
                }
                Some(at) => known.labelled[at].1 = meta.clone(),
                // A deprecated version that stays so.
                None if meta.stages.is_empty() => {}
                // A deprecated version that gets a label: its place (`ord`) is not known.
                None => return false,
            }
            true
        });
        Ok(())
    }

    fn replace_version_value(
        &mut self,
        arn: &str,
        version_id: &str,
        value: &SealedValue,
    ) -> StoreResult<()> {
        self.touch_versions(arn);
        let mut stmt = self.conn.prepare_cached(
            "UPDATE version_values SET value = ?3 WHERE id = \
             (SELECT value_id FROM version_meta WHERE arn = ?1 AND version_id = ?2)",
        )?;
        let changed = stmt.execute(params![arn, version_id, value.0])?;
        if changed == 0 {
            return Err(StoreError::Backend("the secret has no version with that id".to_owned()));
        }
        Ok(())
    }

    fn delete_version(&mut self, arn: &str, version_id: &str) -> StoreResult<()> {
        self.touch_versions(arn);
        self.note_newest_ord(arn, None);
        self.set_known_versions(arn, None);
        self.conn
            .prepare_cached(
                "DELETE FROM version_values WHERE id = \
                 (SELECT value_id FROM version_meta WHERE arn = ?1 AND version_id = ?2)",
            )?
            .execute(params![arn, version_id])?;
        let mut stmt = self
            .conn
            .prepare_cached("DELETE FROM version_meta WHERE arn = ?1 AND version_id = ?2")?;
        stmt.execute(params![arn, version_id])?;
        Ok(())
    }

    fn put_wrapped_key(&mut self, key_id: &str, wrapped: &[u8]) -> StoreResult<()> {
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO wrapped_keys (key_id, wrapped) VALUES (?1, ?2) \
             ON CONFLICT (key_id) DO UPDATE SET wrapped = excluded.wrapped",
        )?;
        stmt.execute(params![key_id, wrapped])?;
        Ok(())
    }

    fn put_record(&mut self, kind: &str, key: &str, value: &[u8]) -> StoreResult<()> {
        self.touch_record(kind, key);
        self.conn
            .prepare_cached(
                "INSERT INTO records (kind, key, value) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![kind, key, value])?;
        Ok(())
    }

    fn delete_record(&mut self, kind: &str, key: &str) -> StoreResult<()> {
        self.touch_record(kind, key);
        self.conn
            .prepare_cached("DELETE FROM records WHERE kind = ?1 AND key = ?2")?
            .execute(params![kind, key])?;
        Ok(())
    }

    fn put_setting(&mut self, name: &str, value: &[u8]) -> StoreResult<()> {
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO settings (name, value) VALUES (?1, ?2) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        )?;
        stmt.execute(params![name, value])?;
        Ok(())
    }
}
