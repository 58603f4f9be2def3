//! The write transaction `App::write` hands its closure: the store's transaction and the
//! `--audit-log` lines of the running attempt, passed together so that an event appended
//! inside it (a service event) has its line written once the write commits, and only then.

use crate::audit_file::Lines;
use coffer_core::model::{Millis, Scope, SecretMeta, VersionMeta};
use coffer_store::{ListQuery, ReadTxn, SealedValue, StoreResult, WriteTxn};
use std::ops::{Deref, DerefMut};

/// One attempt of an `App::write` transaction. It is a [`WriteTxn`] (every method passed
/// to the store's) and derefs to the store's, so code that only reads and writes records
/// takes `&mut dyn WriteTxn` (or `&dyn ReadTxn`) as before and is handed the `&mut Txn`;
/// code that appends audit events takes the `&mut Txn` itself.
pub struct Txn<'a> {
    pub(crate) tx: &'a mut dyn WriteTxn,
    /// The log lines of the events this attempt appends (see [`Lines`]).
    pub(crate) lines: &'a mut Lines,
}

impl<'a> Txn<'a> {
    /// The attempt running in `tx`, its events' lines kept in `lines`.
    pub(crate) fn new(tx: &'a mut dyn WriteTxn, lines: &'a mut Lines) -> Txn<'a> {
        Txn { tx, lines }
    }
}

// Methods called on a `Txn` where the store traits are not in scope.
impl<'a> Deref for Txn<'a> {
    type Target = dyn WriteTxn + 'a;
    fn deref(&self) -> &Self::Target {
        &*self.tx
    }
}

impl DerefMut for Txn<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut *self.tx
    }
}

// Every method is passed on, those with a default too: a store's own version of a
// default (PostgreSQL's batched `versions_of`, its `note_material_overwritten`) must not
// be replaced by the default here.
impl ReadTxn for Txn<'_> {
    fn secret_by_name(&self, scope: &Scope, name: &str) -> StoreResult<Option<SecretMeta>> {
        self.tx.secret_by_name(scope, name)
    }
    fn secret_by_arn(&self, arn: &str) -> StoreResult<Option<SecretMeta>> {
        self.tx.secret_by_arn(arn)
    }
    fn versions(&self, arn: &str) -> StoreResult<Vec<VersionMeta>> {
        self.tx.versions(arn)
    }
    fn labelled_versions(&self, arn: &str, also: &str) -> StoreResult<(Vec<VersionMeta>, usize)> {
        self.tx.labelled_versions(arn, also)
    }
    fn prefetch_secrets(&self, names: &[(&Scope, &str)], arns: &[&str]) -> StoreResult<()> {
        self.tx.prefetch_secrets(names, arns)
    }
    fn versions_of(&self, arns: &[&str]) -> StoreResult<Vec<Vec<VersionMeta>>> {
        self.tx.versions_of(arns)
    }
    fn version_value(&self, arn: &str, version_id: &str) -> StoreResult<Option<SealedValue>> {
        self.tx.version_value(arn, version_id)
    }
    fn visit_secrets(
        &self,
        scope: &Scope,
        query: &ListQuery,
        visit: &mut dyn FnMut(&SecretMeta) -> bool,
    ) -> StoreResult<()> {
        self.tx.visit_secrets(scope, query, visit)
    }
    fn secrets_due_for_deletion(&self, now: Millis) -> StoreResult<Vec<String>> {
        self.tx.secrets_due_for_deletion(now)
    }
    fn wrapped_key(&self, key_id: &str) -> StoreResult<Option<Vec<u8>>> {
        self.tx.wrapped_key(key_id)
    }
    fn setting(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        self.tx.setting(name)
    }
    fn record(&self, kind: &str, key: &str) -> StoreResult<Option<Vec<u8>>> {
        self.tx.record(kind, key)
    }
    fn records(
        &self,
        kind: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<(String, Vec<u8>)>> {
        self.tx.records(kind, prefix, after, limit)
    }
}

impl WriteTxn for Txn<'_> {
    fn insert_secret(&mut self, meta: &SecretMeta) -> StoreResult<i64> {
        self.tx.insert_secret(meta)
    }
    fn update_secret(&mut self, meta: &SecretMeta) -> StoreResult<()> {
        self.tx.update_secret(meta)
    }
    fn delete_secret(&mut self, arn: &str) -> StoreResult<()> {
        self.tx.delete_secret(arn)
    }
    fn insert_version(
        &mut self,
        arn: &str,
        meta: &VersionMeta,
        value: &SealedValue,
    ) -> StoreResult<()> {
        self.tx.insert_version(arn, meta, value)
    }
    fn update_version(&mut self, arn: &str, meta: &VersionMeta) -> StoreResult<()> {
        self.tx.update_version(arn, meta)
    }
    fn replace_version_value(
        &mut self,
        arn: &str,
        version_id: &str,
        value: &SealedValue,
    ) -> StoreResult<()> {
        self.tx.replace_version_value(arn, version_id, value)
    }
    fn delete_version(&mut self, arn: &str, version_id: &str) -> StoreResult<()> {
        self.tx.delete_version(arn, version_id)
    }
    fn put_wrapped_key(&mut self, key_id: &str, wrapped: &[u8]) -> StoreResult<()> {
        self.tx.put_wrapped_key(key_id, wrapped)
    }
    fn put_setting(&mut self, name: &str, value: &[u8]) -> StoreResult<()> {
        self.tx.put_setting(name, value)
    }
    fn put_record(&mut self, kind: &str, key: &str, value: &[u8]) -> StoreResult<()> {
        self.tx.put_record(kind, key, value)
    }
    fn delete_record(&mut self, kind: &str, key: &str) -> StoreResult<()> {
        self.tx.delete_record(kind, key)
    }
    fn note_material_overwritten(&mut self) -> StoreResult<()> {
        self.tx.note_material_overwritten()
    }
}
