//! The PostgreSQL transaction's changes (`WriteTxn`).

use coffer_core::model::{SecretMeta, VersionMeta};

use super::pipelined::Expect;
use super::scrub::{KMS_KEY_KIND, MASTER_CHECK_SETTING, REWRAPPED, Table};
use super::txn::{PgTxn, accessed_sort_ms};
use super::{get, to_json};
use crate::{SealedValue, StoreError, StoreResult, WriteTxn};

/// A new version, numbered after the secret's last one. DO NOTHING on a taken id keeps
/// the transaction usable, so the caller can recover from the conflict (a conflict with
/// a concurrent, uncommitted insert is a serialization failure instead).
const INSERT_VERSION_SQL: &str = "INSERT INTO versions (arn, version_id, ord, created_ms, meta, value) \
     VALUES ($1, $2, (SELECT COALESCE(MAX(ord), 0) + 1 FROM versions WHERE arn = $1), $3, $4, $5) \
     ON CONFLICT (arn, version_id) DO NOTHING";

const VERSION_TAKEN: &str = "the secret already has a version with this id";

impl WriteTxn for PgTxn<'_, '_> {
    fn insert_secret(&mut self, meta: &SecretMeta) -> StoreResult<i64> {
        self.note_secret_write();
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
        self.note_secret_write();
        let json = to_json("secret metadata", meta)?;
        // Nothing waits for its answer: sent with the write's next round trip.
        self.defer(
            "UPDATE secrets SET created_ms = $2, last_changed_ms = $3, accessed_sort_ms = $4, \
             deletion_ms = $5, meta = $6 WHERE arn = $1",
            vec![
                Box::new(meta.arn.clone()),
                Box::new(meta.created_ms),
                Box::new(meta.last_changed_ms),
                Box::new(accessed_sort_ms(meta)),
                Box::new(meta.deletion_ms),
                Box::new(json),
            ],
            Expect::Changed("no secret has that ARN"),
        )
    }

    fn delete_secret(&mut self, arn: &str) -> StoreResult<()> {
        self.note_secret_write();
        self.prefetched.borrow_mut().forget(arn);
        // The versions go with it through ON DELETE CASCADE.
        if self.execute("DELETE FROM secrets WHERE arn = $1", &[&arn])? > 0 {
            self.note_destroyed(&[Table::Versions])?;
        }
        Ok(())
    }

    fn insert_version(
        &mut self,
        arn: &str,
        meta: &VersionMeta,
        value: &SealedValue,
    ) -> StoreResult<()> {
        self.note_secret_write();
        let json = to_json("version metadata", meta)?;
        self.prefetched.borrow_mut().forget(arn);
        if self.batch.is_some_and(|batch| !batch.careful) {
            // Nothing waits for its answer: sent with the write's next round trip. A
            // taken version id (which a closure that read the versions never meets) then
            // reruns the attempt carefully, where the closure is told at once, as here.
            return self.defer(
                INSERT_VERSION_SQL,
                vec![
                    Box::new(arn.to_owned()),
                    Box::new(meta.version_id.clone()),
                    Box::new(meta.created_ms),
                    Box::new(json),
                    Box::new(value.0.clone()),
                ],
                Expect::Inserted(VERSION_TAKEN),
            );
        }
        let inserted = self.execute(
            INSERT_VERSION_SQL,
            &[&arn, &meta.version_id, &meta.created_ms, &json, &value.0],
        )?;
        match inserted {
            0 => Err(StoreError::Conflict(VERSION_TAKEN.to_owned())),
            _ => Ok(()),
        }
    }

    fn update_version(&mut self, arn: &str, meta: &VersionMeta) -> StoreResult<()> {
        self.note_secret_write();
        self.prefetched.borrow_mut().forget(arn);
        let json = to_json("version metadata", meta)?;
        // Nothing waits for its answer: sent with the write's next round trip.
        self.defer(
            "UPDATE versions SET created_ms = $3, meta = $4 WHERE arn = $1 AND version_id = $2",
            vec![
                Box::new(arn.to_owned()),
                Box::new(meta.version_id.clone()),
                Box::new(meta.created_ms),
                Box::new(json),
            ],
            Expect::Changed("the secret has no version with that id"),
        )
    }

    fn replace_version_value(
        &mut self,
        arn: &str,
        version_id: &str,
        value: &SealedValue,
    ) -> StoreResult<()> {
        self.note_secret_write();
        self.prefetched.borrow_mut().forget(arn);
        let changed = self.execute(
            "UPDATE versions SET value = $3 WHERE arn = $1 AND version_id = $2",
            &[&arn, &version_id, &value.0],
        )?;
        if changed == 0 {
            return Err(StoreError::Backend("the secret has no version with that id".to_owned()));
        }
        // The value it replaced stays in a dead row.
        self.note_destroyed(&[Table::Versions])
    }

    fn delete_version(&mut self, arn: &str, version_id: &str) -> StoreResult<()> {
        self.note_secret_write();
        self.prefetched.borrow_mut().forget(arn);
        let deleted = self.execute(
            "DELETE FROM versions WHERE arn = $1 AND version_id = $2",
            &[&arn, &version_id],
        )?;
        if deleted > 0 {
            self.note_destroyed(&[Table::Versions])?;
        }
        Ok(())
    }

    fn put_wrapped_key(&mut self, key_id: &str, wrapped: &[u8]) -> StoreResult<()> {
        // `xmax <> 0` only on a row that was updated: the old wrapping is then a dead row.
        let replaced: bool = get(
            &self.query_one(
                "INSERT INTO wrapped_keys AS w (key_id, wrapped) VALUES ($1, $2) \
                 ON CONFLICT (key_id) DO UPDATE SET wrapped = EXCLUDED.wrapped \
                 RETURNING w.xmax::text <> '0'",
                &[&key_id, &wrapped],
            )?,
            0,
        )?;
        if replaced {
            self.note_destroyed(&[Table::WrappedKeys])?;
        }
        Ok(())
    }

    fn put_setting(&mut self, name: &str, value: &[u8]) -> StoreResult<()> {
        self.note_shared_write(None, name);
        if name == MASTER_CHECK_SETTING {
            // A new check value over an old one is a master-key rotation: every wrapping
            // under the old key is now a dead row (`xmax <> 0` only on an updated row).
            let replaced: bool = get(
                &self.query_one(
                    "INSERT INTO settings AS s (name, value) VALUES ($1, $2) \
                     ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value \
                     RETURNING s.xmax::text <> '0'",
                    &[&name, &value],
                )?,
                0,
            )?;
            if replaced {
                self.note_destroyed(REWRAPPED)?;
            }
            return Ok(());
        }
        self.execute(
            "INSERT INTO settings (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
            &[&name, &value],
        )?;
        Ok(())
    }

    fn put_record(&mut self, kind: &str, key: &str, value: &[u8]) -> StoreResult<()> {
        self.note_shared_write(Some(kind), key);
        if let Some(batch) = self.batch {
            batch.wrote(kind, key, Some(value));
        }
        // Sent with the next statement's turn, together with every record put before it.
        self.pending.borrow_mut().put(kind, key, value);
        Ok(())
    }

    fn note_material_overwritten(&mut self) -> StoreResult<()> {
        // The old row version (and its WAL) still holds the material until the scrub.
        self.note_destroyed(&[Table::Records])
    }

    fn delete_record(&mut self, kind: &str, key: &str) -> StoreResult<()> {
        self.note_shared_write(Some(kind), key);
        let deleted =
            self.execute("DELETE FROM records WHERE kind = $1 AND key = $2", &[&kind, &key])?;
        if let Some(batch) = self.batch {
            batch.wrote(kind, key, None);
        }
        if deleted > 0 && kind == KMS_KEY_KIND {
            // The key's record holds every wrapped material version of the key.
            self.note_destroyed(&[Table::Records])?;
        }
        Ok(())
    }
}
