//! The in-memory store behind `--dev`: everything in one locked structure, lost on exit.
//!
//! A write transaction works on the live state and records an undo log; if the
//! closure fails (or panics) the log is replayed backwards, so a failed write
//! leaves no trace without the cost of copying the whole state up front.
//! Listing walks ordered indexes kept per scope, so the first page of
//! ListSecrets costs the same with a hundred secrets or a hundred thousand.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use coffer_core::model::{Millis, Scope, SecretMeta, VersionMeta};

use crate::{
    Cursor, CursorKey, ListQuery, ReadTxn, SealedValue, SnapshotItem, SortBy, Store, StoreError,
    StoreResult, WriteTxn,
};

/// A store that keeps everything in process memory.
pub struct MemoryStore {
    state: RwLock<State>,
}

impl MemoryStore {
    pub fn new() -> Self {
        MemoryStore { state: RwLock::new(State::default()) }
    }

    /// A panic inside a write closure poisons the lock, but the transaction's
    /// drop guard has already undone its changes, so the state is sound to reuse.
    fn read_state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemoryStore")
    }
}

impl Store for MemoryStore {
    fn read(&self, f: &mut dyn FnMut(&dyn ReadTxn) -> StoreResult<()>) -> StoreResult<()> {
        let state = self.read_state();
        f(&*state)
    }

    fn write(
        &self,
        f: &mut (dyn FnMut(&mut dyn WriteTxn) -> StoreResult<()> + Send),
    ) -> StoreResult<()> {
        let mut state = self.write_state();
        let mut txn = MemTxn::new(&mut state);
        let result = f(&mut txn);
        if result.is_ok() {
            txn.commit();
        }
        // On failure, dropping the transaction replays its undo log.
        drop(txn);
        result
    }

    fn latency(&self) -> crate::Latency {
        crate::Latency::Memory
    }

    fn describe(&self) -> String {
        "memory".to_owned()
    }

    fn export(&self, visit: &mut dyn FnMut(SnapshotItem) -> StoreResult<()>) -> StoreResult<()> {
        let state = self.read_state();
        let mut secrets: Vec<&SecretMeta> = state.secrets.values().collect();
        secrets.sort_by_key(|meta| meta.seq);
        for meta in &secrets {
            visit(SnapshotItem::Secret((*meta).clone()))?;
        }
        for meta in &secrets {
            for version in state.versions.get(&meta.arn).map(Vec::as_slice).unwrap_or_default() {
                visit(SnapshotItem::Version {
                    arn: meta.arn.clone(),
                    meta: version.meta.clone(),
                    value: version.value.clone(),
                })?;
            }
        }
        let sorted = |map: &HashMap<String, Vec<u8>>| {
            let mut pairs: Vec<(String, Vec<u8>)> =
                map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            pairs.sort();
            pairs
        };
        for (key_id, wrapped) in sorted(&state.wrapped_keys) {
            visit(SnapshotItem::WrappedKey { key_id, wrapped })?;
        }
        for (name, value) in sorted(&state.settings) {
            visit(SnapshotItem::Setting { name, value })?;
        }
        for (kind, records) in &state.records {
            for (key, value) in records {
                visit(SnapshotItem::Record {
                    kind: kind.clone(),
                    key: key.clone(),
                    value: value.clone(),
                })?;
            }
        }
        Ok(())
    }

    fn import_from(&self, produce: &mut crate::ImportProducer<'_>) -> StoreResult<()> {
        let mut state = self.write_state();
        let empty = state.secrets.is_empty()
            && state.wrapped_keys.is_empty()
            && state.settings.is_empty()
            && state.records.is_empty();
        if !empty {
            return Err(crate::not_empty());
        }
        let mut txn = MemTxn::new(&mut state);
        let result = crate::import_items(&mut txn, produce);
        if result.is_ok() {
            txn.commit();
        }
        drop(txn);
        result
    }
}

/// One version of a secret with its sealed value.
#[derive(Clone)]
struct Version {
    meta: VersionMeta,
    value: SealedValue,
}

/// The ordered indexes of one scope. Each maps a sort position to an ARN;
/// the position ends with `seq`, which is unique, so entries never collide.
#[derive(Default)]
struct ScopeIndex {
    by_name: BTreeMap<(String, i64), String>,
    by_created: BTreeMap<(Millis, i64), String>,
    by_changed: BTreeMap<(Millis, i64), String>,
    by_accessed: BTreeMap<(Millis, i64), String>,
}

impl ScopeIndex {
    fn add(&mut self, meta: &SecretMeta) {
        let seq = meta.seq;
        self.by_name.insert((meta.name.clone(), seq), meta.arn.clone());
        self.by_created.insert((meta.created_ms, seq), meta.arn.clone());
        self.by_changed.insert((meta.last_changed_ms, seq), meta.arn.clone());
        self.by_accessed.insert((accessed_key(meta), seq), meta.arn.clone());
    }

    fn remove(&mut self, meta: &SecretMeta) {
        let seq = meta.seq;
        self.by_name.remove(&(meta.name.clone(), seq));
        self.by_created.remove(&(meta.created_ms, seq));
        self.by_changed.remove(&(meta.last_changed_ms, seq));
        self.by_accessed.remove(&(accessed_key(meta), seq));
    }

    /// Moves the entries of `old` whose sort key differs in `new` (the same secret, ARN
    /// and scope): what [`ScopeIndex::remove`] then [`ScopeIndex::add`] would leave.
    fn replace(&mut self, old: &SecretMeta, new: &SecretMeta) {
        fn moved<K: Ord>(map: &mut BTreeMap<K, String>, old: K, new: K, arn: &str) {
            if old != new {
                map.remove(&old);
                map.insert(new, arn.to_owned());
            }
        }
        let arn = new.arn.as_str();
        if (&old.name, old.seq) != (&new.name, new.seq) {
            self.by_name.remove(&(old.name.clone(), old.seq));
            self.by_name.insert((new.name.clone(), new.seq), arn.to_owned());
        }
        moved(&mut self.by_created, (old.created_ms, old.seq), (new.created_ms, new.seq), arn);
        moved(
            &mut self.by_changed,
            (old.last_changed_ms, old.seq),
            (new.last_changed_ms, new.seq),
            arn,
        );
        moved(
            &mut self.by_accessed,
            (accessed_key(old), old.seq),
            (accessed_key(new), new.seq),
            arn,
        );
    }

    fn is_empty(&self) -> bool {
        self.by_created.is_empty()
    }

    /// The ARN of the secret called `name`; names are unique in a scope, so at most one matches.
    fn arn_of_name(&self, name: &str) -> Option<&String> {
        let from = (name.to_owned(), i64::MIN);
        self.by_name
            .range(from..)
            .next()
            .filter(|((found, _), _)| found == name)
            .map(|(_, arn)| arn)
    }
}

/// A missing last-access date sorts first, as [`crate::cursor_of`] says.
fn accessed_key(meta: &SecretMeta) -> Millis {
    meta.last_accessed_ms.unwrap_or(i64::MIN)
}

#[derive(Default)]
struct State {
    secrets: HashMap<String, SecretMeta>,
    scopes: HashMap<Scope, ScopeIndex>,
    /// Versions per ARN, oldest first.
    versions: HashMap<String, Vec<Version>>,
    wrapped_keys: HashMap<String, Vec<u8>>,
    settings: HashMap<String, Vec<u8>>,
    /// Records of other subsystems, by kind and key, in key order for prefix scans. Kept
    /// per kind so that a lookup borrows its kind and key instead of allocating a copy of
    /// both (every call's audit event reads and writes a few records).
    records: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// The last `seq` handed out; the next secret gets one more.
    last_seq: i64,
}

impl State {
    /// Puts `meta` in place of whatever secret has its ARN, keeping the indexes in step.
    /// Returns the secret it replaced.
    fn put_secret(&mut self, meta: SecretMeta) -> Option<SecretMeta> {
        // Replacing a secret in its own scope (every update, and every undo of one) moves
        // only the index entries whose sort key changed, in place: a PutSecretValue
        // changes the last-changed date alone, so one of the four entries moves, and
        // neither the ARN key nor the scope is copied again.
        if let Some(existing) = self.secrets.get_mut(&meta.arn)
            && existing.scope == meta.scope
            && let Some(index) = self.scopes.get_mut(&meta.scope)
        {
            index.replace(existing, &meta);
            return Some(std::mem::replace(existing, meta));
        }
        let old = self.take_secret(&meta.arn);
        self.scopes.entry(meta.scope.clone()).or_default().add(&meta);
        self.secrets.insert(meta.arn.clone(), meta);
        old
    }

    /// Removes a secret (not its versions) and its index entries.
    fn take_secret(&mut self, arn: &str) -> Option<SecretMeta> {
        let old = self.secrets.remove(arn)?;
        if let Some(index) = self.scopes.get_mut(&old.scope) {
            index.remove(&old);
            if index.is_empty() {
                self.scopes.remove(&old.scope);
            }
        }
        Some(old)
    }

    /// Removes a record, and its kind's map once empty (so `records` holds no empty kind).
    fn remove_record(&mut self, kind: &str, key: &str) -> Option<Vec<u8>> {
        let records = self.records.get_mut(kind)?;
        let previous = records.remove(key);
        if records.is_empty() {
            self.records.remove(kind);
        }
        previous
    }

    fn version_position(&self, arn: &str, version_id: &str) -> Option<usize> {
        self.versions.get(arn)?.iter().position(|v| v.meta.version_id == version_id)
    }

    fn undo(&mut self, step: Undo) {
        match step {
            Undo::Secret { arn, previous } => match previous {
                Some(meta) => {
                    self.put_secret(*meta);
                }
                None => {
                    self.take_secret(&arn);
                }
            },
            Undo::Versions { arn, previous } => match previous {
                Some(list) => {
                    self.versions.insert(arn, list);
                }
                None => {
                    self.versions.remove(&arn);
                }
            },
            Undo::VersionAppended { arn } => {
                if let Some(list) = self.versions.get_mut(&arn) {
                    list.pop();
                    if list.is_empty() {
                        self.versions.remove(&arn);
                    }
                }
            }
            Undo::VersionMeta { arn, position, previous } => {
                if let Some(version) = self.versions.get_mut(&arn).and_then(|l| l.get_mut(position))
                {
                    version.meta = previous;
                }
            }
            Undo::VersionValue { arn, position, previous } => {
                if let Some(version) = self.versions.get_mut(&arn).and_then(|l| l.get_mut(position))
                {
                    version.value = previous;
                }
            }
            Undo::VersionRemoved { arn, position, version } => {
                let list = self.versions.entry(arn).or_default();
                list.insert(position.min(list.len()), version);
            }
            Undo::WrappedKey { key_id, previous } => match previous {
                Some(wrapped) => {
                    self.wrapped_keys.insert(key_id, wrapped);
                }
                None => {
                    self.wrapped_keys.remove(&key_id);
                }
            },
            Undo::Setting { name, previous } => match previous {
                Some(value) => {
                    self.settings.insert(name, value);
                }
                None => {
                    self.settings.remove(&name);
                }
            },
            Undo::Record { kind, key, previous } => match previous {
                Some(value) => {
                    self.records.entry(kind).or_default().insert(key, value);
                }
                None => {
                    self.remove_record(&kind, &key);
                }
            },
            Undo::LastSeq(previous) => self.last_seq = previous,
        }
    }
}

impl ReadTxn for State {
    fn secret_by_name(&self, scope: &Scope, name: &str) -> StoreResult<Option<SecretMeta>> {
        let arn = self.scopes.get(scope).and_then(|index| index.arn_of_name(name));
        Ok(arn.and_then(|arn| self.secrets.get(arn)).cloned())
    }

    fn secret_by_arn(&self, arn: &str) -> StoreResult<Option<SecretMeta>> {
        Ok(self.secrets.get(arn).cloned())
    }

    fn versions(&self, arn: &str) -> StoreResult<Vec<VersionMeta>> {
        let list = self.versions.get(arn).map(Vec::as_slice).unwrap_or_default();
        Ok(list.iter().map(|v| v.meta.clone()).collect())
    }

    fn version_value(&self, arn: &str, version_id: &str) -> StoreResult<Option<SealedValue>> {
        let position = self.version_position(arn, version_id);
        Ok(position.map(|i| self.versions[arn][i].value.clone()))
    }

    fn visit_secrets(
        &self,
        scope: &Scope,
        query: &ListQuery,
        visit: &mut dyn FnMut(&SecretMeta) -> bool,
    ) -> StoreResult<()> {
        let Some(index) = self.scopes.get(scope) else {
            return Ok(());
        };
        let mut visit_arn = |arn: &String| match self.secrets.get(arn) {
            Some(meta) => visit(meta),
            None => true,
        };
        match query.sort_by {
            SortBy::Name => {
                let after = match &query.after {
                    None => None,
                    Some(Cursor { key: CursorKey::Name(name), seq }) => Some((name.clone(), *seq)),
                    Some(_) => return Err(mismatched_cursor()),
                };
                walk(&index.by_name, after, query.descending, &mut visit_arn);
            }
            SortBy::CreatedDate | SortBy::LastChangedDate | SortBy::LastAccessedDate => {
                let map = match query.sort_by {
                    SortBy::CreatedDate => &index.by_created,
                    SortBy::LastChangedDate => &index.by_changed,
                    _ => &index.by_accessed,
                };
                let after = match &query.after {
                    None => None,
                    Some(Cursor { key: CursorKey::Date(ms), seq }) => Some((*ms, *seq)),
                    Some(_) => return Err(mismatched_cursor()),
                };
                walk(map, after, query.descending, &mut visit_arn);
            }
        }
        Ok(())
    }

    fn secrets_due_for_deletion(&self, now: Millis) -> StoreResult<Vec<String>> {
        let mut due: Vec<&SecretMeta> = self
            .secrets
            .values()
            .filter(|meta| meta.deletion_ms.is_some_and(|at| at <= now))
            .collect();
        due.sort_by_key(|meta| (meta.deletion_ms, meta.seq));
        Ok(due.into_iter().map(|meta| meta.arn.clone()).collect())
    }

    fn wrapped_key(&self, key_id: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.wrapped_keys.get(key_id).cloned())
    }

    fn setting(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.settings.get(name).cloned())
    }

    fn record(&self, kind: &str, key: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.records.get(kind).and_then(|records| records.get(key)).cloned())
    }

    fn records(
        &self,
        kind: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<(String, Vec<u8>)>> {
        let Some(records) = self.records.get(kind) else {
            return Ok(Vec::new());
        };
        // The keys with `prefix` are contiguous: start at the prefix, or just after `after`
        // when that is further on.
        let from = match after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        Ok(records
            .range::<str, _>((from, Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .take(limit)
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect())
    }
}

fn mismatched_cursor() -> StoreError {
    StoreError::Backend("the listing cursor does not match the sort order".to_owned())
}

/// Visits `map` in key order (or reverse) strictly after `after`, until `visit` says stop.
fn walk<K: Ord>(
    map: &BTreeMap<K, String>,
    after: Option<K>,
    descending: bool,
    visit: &mut dyn FnMut(&String) -> bool,
) {
    let arns: Box<dyn Iterator<Item = &String>> = match (after, descending) {
        (None, false) => Box::new(map.values()),
        (None, true) => Box::new(map.values().rev()),
        (Some(after), false) => {
            Box::new(map.range((Bound::Excluded(after), Bound::Unbounded)).map(|(_, arn)| arn))
        }
        (Some(after), true) => Box::new(
            map.range((Bound::Unbounded, Bound::Excluded(after))).rev().map(|(_, arn)| arn),
        ),
    };
    for arn in arns {
        if !visit(arn) {
            break;
        }
    }
}

/// How to take back one change of a write transaction.
enum Undo {
    /// Restore the secret at `arn` to `previous` (`None`: it did not exist).
    Secret {
        arn: String,
        /// Boxed: a secret's metadata is far larger than the other steps.
        previous: Option<Box<SecretMeta>>,
    },
    /// Restore a secret's whole version list (used when deleting a secret moves it out).
    Versions {
        arn: String,
        previous: Option<Vec<Version>>,
    },
    VersionAppended {
        arn: String,
    },
    VersionMeta {
        arn: String,
        position: usize,
        previous: VersionMeta,
    },
    VersionValue {
        arn: String,
        position: usize,
        previous: SealedValue,
    },
    VersionRemoved {
        arn: String,
        position: usize,
        version: Version,
    },
    WrappedKey {
        key_id: String,
        previous: Option<Vec<u8>>,
    },
    Setting {
        name: String,
        previous: Option<Vec<u8>>,
    },
    Record {
        kind: String,
        key: String,
        previous: Option<Vec<u8>>,
    },
    LastSeq(i64),
}

/// A write transaction over the live state. Unless committed, dropping it undoes every change.
struct MemTxn<'a> {
    state: &'a mut State,
    undo: Vec<Undo>,
}

impl<'a> MemTxn<'a> {
    fn new(state: &'a mut State) -> Self {
        MemTxn { state, undo: Vec::new() }
    }

    fn commit(&mut self) {
        self.undo.clear();
    }

    fn missing_secret() -> StoreError {
        StoreError::Backend("no secret has that ARN".to_owned())
    }

    fn missing_version() -> StoreError {
        StoreError::Backend("the secret has no version with that id".to_owned())
    }
}

impl Drop for MemTxn<'_> {
    fn drop(&mut self) {
        while let Some(step) = self.undo.pop() {
            self.state.undo(step);
        }
    }
}

impl ReadTxn for MemTxn<'_> {
    fn secret_by_name(&self, scope: &Scope, name: &str) -> StoreResult<Option<SecretMeta>> {
        self.state.secret_by_name(scope, name)
    }

    fn secret_by_arn(&self, arn: &str) -> StoreResult<Option<SecretMeta>> {
        self.state.secret_by_arn(arn)
    }

    fn versions(&self, arn: &str) -> StoreResult<Vec<VersionMeta>> {
        self.state.versions(arn)
    }

    fn version_value(&self, arn: &str, version_id: &str) -> StoreResult<Option<SealedValue>> {
        self.state.version_value(arn, version_id)
    }

    fn visit_secrets(
        &self,
        scope: &Scope,
        query: &ListQuery,
        visit: &mut dyn FnMut(&SecretMeta) -> bool,
    ) -> StoreResult<()> {
        self.state.visit_secrets(scope, query, visit)
    }

    fn secrets_due_for_deletion(&self, now: Millis) -> StoreResult<Vec<String>> {
        self.state.secrets_due_for_deletion(now)
    }

    fn wrapped_key(&self, key_id: &str) -> StoreResult<Option<Vec<u8>>> {
        self.state.wrapped_key(key_id)
    }

    fn setting(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        self.state.setting(name)
    }

    fn record(&self, kind: &str, key: &str) -> StoreResult<Option<Vec<u8>>> {
        self.state.record(kind, key)
    }

    fn records(
        &self,
        kind: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<(String, Vec<u8>)>> {
        self.state.records(kind, prefix, after, limit)
    }
}

impl WriteTxn for MemTxn<'_> {
    fn insert_secret(&mut self, meta: &SecretMeta) -> StoreResult<i64> {
        if self.state.secrets.contains_key(&meta.arn) {
            return Err(StoreError::Conflict("a secret with this ARN already exists".to_owned()));
        }
        let name_taken = self
            .state
            .scopes
            .get(&meta.scope)
            .is_some_and(|index| index.arn_of_name(&meta.name).is_some());
        if name_taken {
            return Err(StoreError::Conflict(
                "a secret with this name already exists in its scope".to_owned(),
            ));
        }
        self.undo.push(Undo::LastSeq(self.state.last_seq));
        self.state.last_seq += 1;
        let seq = self.state.last_seq;
        let mut stored = meta.clone();
        stored.seq = seq;
        self.undo.push(Undo::Secret { arn: meta.arn.clone(), previous: None });
        self.state.put_secret(stored);
        Ok(seq)
    }

    fn update_secret(&mut self, meta: &SecretMeta) -> StoreResult<()> {
        let Some(existing) = self.state.secrets.get(&meta.arn) else {
            return Err(Self::missing_secret());
        };
        // The identity of a secret (scope, name, seq) is fixed at insertion.
        let mut stored = meta.clone();
        stored.scope = existing.scope.clone();
        stored.name = existing.name.clone();
        stored.seq = existing.seq;
        let previous = self.state.put_secret(stored);
        self.undo.push(Undo::Secret { arn: meta.arn.clone(), previous: previous.map(Box::new) });
        Ok(())
    }

    fn delete_secret(&mut self, arn: &str) -> StoreResult<()> {
        let Some(previous) = self.state.take_secret(arn) else {
            return Ok(());
        };
        self.undo.push(Undo::Secret { arn: arn.to_owned(), previous: Some(Box::new(previous)) });
        let versions = self.state.versions.remove(arn);
        if versions.is_some() {
            self.undo.push(Undo::Versions { arn: arn.to_owned(), previous: versions });
        }
        Ok(())
    }

    fn insert_version(
        &mut self,
        arn: &str,
        meta: &VersionMeta,
        value: &SealedValue,
    ) -> StoreResult<()> {
        if !self.state.secrets.contains_key(arn) {
            return Err(Self::missing_secret());
        }
        if self.state.version_position(arn, &meta.version_id).is_some() {
            return Err(StoreError::Conflict(
                "the secret already has a version with this id".to_owned(),
            ));
        }
        let version = Version { meta: meta.clone(), value: value.clone() };
        self.state.versions.entry(arn.to_owned()).or_default().push(version);
        self.undo.push(Undo::VersionAppended { arn: arn.to_owned() });
        Ok(())
    }

    fn update_version(&mut self, arn: &str, meta: &VersionMeta) -> StoreResult<()> {
        let position =
            self.state.version_position(arn, &meta.version_id).ok_or_else(Self::missing_version)?;
        let version = &mut self.state.versions.get_mut(arn).expect("position found")[position];
        let previous = std::mem::replace(&mut version.meta, meta.clone());
        self.undo.push(Undo::VersionMeta { arn: arn.to_owned(), position, previous });
        Ok(())
    }

    fn replace_version_value(
        &mut self,
        arn: &str,
        version_id: &str,
        value: &SealedValue,
    ) -> StoreResult<()> {
        let position =
            self.state.version_position(arn, version_id).ok_or_else(Self::missing_version)?;
        let version = &mut self.state.versions.get_mut(arn).expect("position found")[position];
        let previous = std::mem::replace(&mut version.value, value.clone());
        self.undo.push(Undo::VersionValue { arn: arn.to_owned(), position, previous });
        Ok(())
    }

    fn delete_version(&mut self, arn: &str, version_id: &str) -> StoreResult<()> {
        let Some(position) = self.state.version_position(arn, version_id) else {
            return Ok(());
        };
        let list = self.state.versions.get_mut(arn).expect("position found");
        let version = list.remove(position);
        if list.is_empty() {
            self.state.versions.remove(arn);
        }
        self.undo.push(Undo::VersionRemoved { arn: arn.to_owned(), position, version });
        Ok(())
    }

    fn put_wrapped_key(&mut self, key_id: &str, wrapped: &[u8]) -> StoreResult<()> {
        let previous = self.state.wrapped_keys.insert(key_id.to_owned(), wrapped.to_vec());
        self.undo.push(Undo::WrappedKey { key_id: key_id.to_owned(), previous });
        Ok(())
    }

    fn put_setting(&mut self, name: &str, value: &[u8]) -> StoreResult<()> {
        let previous = self.state.settings.insert(name.to_owned(), value.to_vec());
        self.undo.push(Undo::Setting { name: name.to_owned(), previous });
        Ok(())
    }

    fn put_record(&mut self, kind: &str, key: &str, value: &[u8]) -> StoreResult<()> {
        let records = match self.state.records.get_mut(kind) {
            Some(records) => records,
            None => self.state.records.entry(kind.to_owned()).or_default(),
        };
        let previous = records.insert(key.to_owned(), value.to_vec());
        self.undo.push(Undo::Record { kind: kind.to_owned(), key: key.to_owned(), previous });
        Ok(())
    }

    fn delete_record(&mut self, kind: &str, key: &str) -> StoreResult<()> {
        let previous = self.state.remove_record(kind, key);
        if previous.is_some() {
            self.undo.push(Undo::Record { kind: kind.to_owned(), key: key.to_owned(), previous });
        }
        Ok(())
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;
    use crate::fixtures::{scope, secret};

    /// Each of a scope's four indexes holds exactly one entry per secret, at the secret's
    /// current sort keys: what `put_secret`'s in-place move must keep, through updates that
    /// change each key, and through the undo of a failed write.
    fn assert_indexed(store: &MemoryStore) {
        let state = store.read_state();
        let index = &state.scopes[&scope()];
        let mut expected: Vec<(String, i64, i64, i64, i64, String)> = state
            .secrets
            .values()
            .map(|m| {
                let accessed = accessed_key(m);
                (m.name.clone(), m.seq, m.created_ms, m.last_changed_ms, accessed, m.arn.clone())
            })
            .collect();
        expected.sort();
        let mut by_name: Vec<_> =
            index.by_name.iter().map(|((n, s), a)| (n.clone(), *s, a.clone())).collect();
        by_name.sort();
        let want: Vec<_> = expected.iter().map(|e| (e.0.clone(), e.1, e.5.clone())).collect();
        assert_eq!(by_name, want);
        for (map, pick) in
            [(&index.by_created, 2usize), (&index.by_changed, 3), (&index.by_accessed, 4)]
        {
            let mut got: Vec<_> = map.iter().map(|((k, s), a)| (*k, *s, a.clone())).collect();
            got.sort();
            let mut want: Vec<_> =
                expected.iter().map(|e| ([e.2, e.3, e.4][pick - 2], e.1, e.5.clone())).collect();
            want.sort();
            assert_eq!(got, want, "index {pick}");
        }
    }

    #[test]
    fn updates_and_their_undo_keep_one_index_entry_per_secret_at_its_keys() {
        let store = MemoryStore::new();
        store
            .write(&mut |tx| {
                for name in ["a", "b", "c"] {
                    tx.insert_secret(&secret(name))?;
                }
                Ok(())
            })
            .unwrap();
        assert_indexed(&store);
        let current = |name: &str| {
            store.read_state().secrets.values().find(|m| m.name == name).cloned().unwrap()
        };
        // Each sort key changed in turn, and one update that changes none.
        let mut b = current("b");
        b.last_changed_ms += 10;
        store.write(&mut |tx| tx.update_secret(&b)).unwrap();
        assert_indexed(&store);
        b.last_accessed_ms = Some(b.created_ms + 86_400_000);
        store.write(&mut |tx| tx.update_secret(&b)).unwrap();
        assert_indexed(&store);
        b.created_ms -= 5;
        store.write(&mut |tx| tx.update_secret(&b)).unwrap();
        assert_indexed(&store);
        b.description = Some("same keys".to_owned());
        store.write(&mut |tx| tx.update_secret(&b)).unwrap();
        assert_indexed(&store);
        // A failed write's updates are undone, the indexes with them.
        let before = (current("a"), current("b"));
        let failed = store.write(&mut |tx| {
            let mut a = current_in(tx, "a");
            a.last_changed_ms += 7;
            a.last_accessed_ms = Some(1);
            tx.update_secret(&a)?;
            a.last_changed_ms += 7;
            tx.update_secret(&a)?;
            let mut b = current_in(tx, "b");
            b.last_accessed_ms = None;
            tx.update_secret(&b)?;
            Err(StoreError::Aborted)
        });
        assert!(failed.is_err());
        assert_eq!((current("a"), current("b")), before);
        assert_indexed(&store);
    }

    fn current_in(tx: &dyn WriteTxn, name: &str) -> SecretMeta {
        tx.secret_by_name(&scope(), name).unwrap().unwrap()
    }
}
