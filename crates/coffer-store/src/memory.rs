//! The in-memory store behind `--dev`: secrets and records under one lock, the audit
//! trail under a lock of its own, all lost on exit.
//!
//! The trail (the records of [`TRAIL_KINDS`]: events, chain heads, archive checkpoints
//! and KMS key last uses) is kept apart so that a read's event, appended by
//! [`Store::write_trail`] under the trail's lock alone, never makes a reader of secrets
//! wait. A write that changes secrets takes the state's lock, then the trail's when it
//! first touches a trail record, and holds both until it commits or is undone: nobody
//! sees its change without its event, nor its event without its change. The locks are
//! always taken in that order (state, then trail), and a trail-only write never asks for
//! the state's, so no two transactions can wait for each other.
//!
//! A write transaction works on the live state and records an undo log; if the
//! closure fails (or panics) the log is replayed backwards, so a failed write
//! leaves no trace without the cost of copying the whole state up front.
//! Listing walks ordered indexes kept per scope, so the first page of
//! ListSecrets costs the same with a hundred secrets or a hundred thousand.

use std::cell::OnceCell;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::memory_held::{Held, Lock, taking};

use coffer_core::model::{Millis, Scope, SecretMeta, VersionMeta};

use crate::{
    Cursor, CursorKey, ListQuery, ReadTxn, SealedValue, SnapshotItem, SortBy, Store, StoreError,
    StoreResult, WriteTxn,
};

/// The record kinds kept in the memory store's trail, apart from the secrets: the audit
/// events and chain heads (`coffer_audit::chain`), the retention archives' checkpoints
/// (`coffer_audit::archive`), and the KMS keys' last uses written with the events that
/// used them (the server's `kms_last_use`). Only these may be touched by
/// [`Store::write_trail`].
pub const TRAIL_KINDS: [&str; 4] = ["audit.event", "audit.head", "audit.base", "kms.last_use"];

/// Whether records of `kind` are kept in the trail.
fn in_trail(kind: &str) -> bool {
    TRAIL_KINDS.contains(&kind)
}

/// A store that keeps everything in process memory.
pub struct MemoryStore {
    state: RwLock<State>,
    /// The records of [`TRAIL_KINDS`]; taken after `state` when both are.
    trail: Mutex<Records>,
}

impl MemoryStore {
    pub fn new() -> Self {
        MemoryStore { state: RwLock::new(State::default()), trail: Mutex::new(Records::default()) }
    }

    /// The trail. A panic inside a write closure poisons it as it does the state, after
    /// the transaction's undo log restored it.
    fn lock_trail(&self) -> TrailGuard<'_> {
        lock_trail(&self.trail)
    }

    /// Notes that this thread takes the state's lock (see [`crate::memory_held`]).
    fn taking_state(&self) -> Held {
        taking(store_key(&self.trail), Lock::State)
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
        let _held = self.taking_state();
        let state = self.read_state();
        f(&MemRead { state: &state, trail_lock: &self.trail, trail: OnceCell::new() })
    }

    fn write(
        &self,
        f: &mut (dyn FnMut(&mut dyn WriteTxn) -> StoreResult<()> + Send),
    ) -> StoreResult<()> {
        let _held = self.taking_state();
        let mut state = self.write_state();
        run(MemTxn::new(Some(&mut state), &self.trail), f)
    }

    /// Takes the trail's lock alone: readers and writers of secrets go on meanwhile. A
    /// closure that touches anything but the records of [`TRAIL_KINDS`] gets an error
    /// (taking the state's lock here, after the trail's, could deadlock).
    fn write_trail(
        &self,
        f: &mut (dyn FnMut(&mut dyn WriteTxn) -> StoreResult<()> + Send),
    ) -> StoreResult<()> {
        run(MemTxn::new(None, &self.trail), f)
    }

    fn latency(&self) -> crate::Latency {
        crate::Latency::Memory
    }

    fn describe(&self) -> String {
        "memory".to_owned()
    }

    fn export(&self, visit: &mut dyn FnMut(SnapshotItem) -> StoreResult<()>) -> StoreResult<()> {
        let _held = self.taking_state();
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
        // Both maps' kinds in one order, as when they were one map.
        let trail = self.lock_trail();
        let mut kinds: Vec<(&String, &BTreeMap<String, Vec<u8>>)> =
            state.records.0.iter().chain(trail.0.iter()).collect();
        kinds.sort_by(|a, b| a.0.cmp(b.0));
        for (kind, records) in kinds {
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
        let _held = self.taking_state();
        let mut state = self.write_state();
        let empty = state.secrets.is_empty()
            && state.wrapped_keys.is_empty()
            && state.settings.is_empty()
            && state.records.0.is_empty()
            && self.lock_trail().0.is_empty();
        if !empty {
            return Err(crate::not_empty());
        }
        run(MemTxn::new(Some(&mut state), &self.trail), &mut |txn| {
            crate::import_items(txn, produce)
        })
    }
}

/// Runs `f` in `txn` and commits it if `f` succeeds; on failure, dropping the transaction
/// replays its undo log (the trail's lock, if taken, is released with it).
fn run(
    mut txn: MemTxn<'_>,
    f: &mut (dyn FnMut(&mut dyn WriteTxn) -> StoreResult<()> + '_),
) -> StoreResult<()> {
    let result = f(&mut txn);
    if result.is_ok() {
        txn.commit();
    }
    drop(txn);
    result
}

/// Takes the trail's lock, noting that this thread holds it (see [`crate::memory_held`]).
fn lock_trail(trail: &Mutex<Records>) -> TrailGuard<'_> {
    let held = taking(store_key(trail), Lock::Trail);
    TrailGuard {
        records: trail.lock().unwrap_or_else(|poisoned| poisoned.into_inner()),
        _held: held,
    }
}

/// Identifies a store to [`crate::memory_held`]: the address of its trail's lock, which
/// cannot be another store's while a lock of this one is held (the store is borrowed).
fn store_key(trail: &Mutex<Records>) -> usize {
    std::ptr::from_ref(trail) as usize
}

/// The trail's lock, with this thread's note that it holds it. The lock is released
/// before the note is removed (fields drop in order).
struct TrailGuard<'a> {
    records: MutexGuard<'a, Records>,
    _held: Held,
}

impl std::ops::Deref for TrailGuard<'_> {
    type Target = Records;

    fn deref(&self) -> &Records {
        &self.records
    }
}

impl std::ops::DerefMut for TrailGuard<'_> {
    fn deref_mut(&mut self) -> &mut Records {
        &mut self.records
    }
}

/// Records of other subsystems, by kind and key, in key order for prefix scans. Kept per
/// kind so that a lookup borrows its kind and key instead of allocating a copy of both
/// (every call's audit event reads and writes a few records).
#[derive(Default)]
struct Records(BTreeMap<String, BTreeMap<String, Vec<u8>>>);

impl Records {
    fn get(&self, kind: &str, key: &str) -> Option<&Vec<u8>> {
        self.0.get(kind).and_then(|records| records.get(key))
    }

    /// Sets a record, returning the value it replaced.
    fn put(&mut self, kind: &str, key: String, value: Vec<u8>) -> Option<Vec<u8>> {
        let records = match self.0.get_mut(kind) {
            Some(records) => records,
            None => self.0.entry(kind.to_owned()).or_default(),
        };
        records.insert(key, value)
    }

    /// Removes a record, and its kind's map once empty (so no empty kind is kept).
    fn remove(&mut self, kind: &str, key: &str) -> Option<Vec<u8>> {
        let records = self.0.get_mut(kind)?;
        let previous = records.remove(key);
        if records.is_empty() {
            self.0.remove(kind);
        }
        previous
    }

    /// Puts back what a record held before a change (`None`: it did not exist).
    fn restore(&mut self, kind: String, key: String, previous: Option<Vec<u8>>) {
        match previous {
            Some(value) => {
                self.0.entry(kind).or_default().insert(key, value);
            }
            None => {
                self.remove(&kind, &key);
            }
        }
    }

    /// Up to `limit` records of `kind` whose key starts with `prefix`, after `after`.
    fn scan(
        &self,
        kind: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Vec<(String, Vec<u8>)> {
        let Some(records) = self.0.get(kind) else {
            return Vec::new();
        };
        // The keys with `prefix` are contiguous: start at the prefix, or just after `after`
        // when that is further on.
        let from = match after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        records
            .range::<str, _>((from, Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .take(limit)
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    }
}

/// One version of a secret with its sealed value.
#[derive(Clone)]
struct Version {
    meta: VersionMeta,
    value: SealedValue,
    /// [`id_tag`] of the version's id, which never changes: a search for a version (every
    /// PutSecretValue looks its id up among up to a hundred, to find none) compares tags
    /// held in the list itself, and reads an id's heap bytes only when its tag matches.
    tag: u64,
}

impl Version {
    fn new(meta: VersionMeta, value: SealedValue) -> Version {
        let tag = id_tag(&meta.version_id);
        Version { meta, value, tag }
    }
}

/// A version id's first eight bytes and its length: ids are UUIDs (or a client's token),
/// which differ within their first characters, so two ids' tags seldom match.
fn id_tag(id: &str) -> u64 {
    let mut head = [0u8; 8];
    let n = id.len().min(8);
    head[..n].copy_from_slice(&id.as_bytes()[..n]);
    u64::from_le_bytes(head) ^ (id.len() as u64).rotate_left(56)
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
    /// Records of other subsystems but the trail's ([`TRAIL_KINDS`]).
    records: Records,
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

    fn version_position(&self, arn: &str, version_id: &str) -> Option<usize> {
        let tag = id_tag(version_id);
        self.versions.get(arn)?.iter().position(|v| v.tag == tag && v.meta.version_id == version_id)
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
            Undo::Record { kind, key, previous } => self.records.restore(kind, key, previous),
            Undo::TrailRecord { .. } => unreachable!("trail steps are undone on the trail"),
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

    /// Copies only the versions with labels (two or three) and `also`, not the
    /// deprecated ones.
    fn labelled_versions(&self, arn: &str, also: &str) -> StoreResult<(Vec<VersionMeta>, usize)> {
        let list = self.versions.get(arn).map(Vec::as_slice).unwrap_or_default();
        let tag = id_tag(also);
        let kept = list
            .iter()
            .filter(|v| !v.meta.is_deprecated() || (v.tag == tag && v.meta.version_id == also))
            .map(|v| v.meta.clone());
        Ok((kept.collect(), list.len()))
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

    /// The state's records alone (never a trail kind: [`MemRead`] and [`MemTxn`] route those).
    fn record(&self, kind: &str, key: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.records.get(kind, key).cloned())
    }

    fn records(
        &self,
        kind: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<(String, Vec<u8>)>> {
        Ok(self.records.scan(kind, prefix, after, limit))
    }
}

/// A read transaction: the state's read lock, and the trail's lock from the first trail
/// record read to the end (so that one read sees one trail: a head and its events). Taken
/// in the store's order, state then trail; a trail-only write, the trail's other holder
/// besides writes of secrets (excluded by the state's lock), never waits for the state.
struct MemRead<'a> {
    state: &'a State,
    trail_lock: &'a Mutex<Records>,
    trail: OnceCell<TrailGuard<'a>>,
}

impl MemRead<'_> {
    fn trail(&self) -> &Records {
        self.trail.get_or_init(|| lock_trail(self.trail_lock))
    }
}

impl ReadTxn for MemRead<'_> {
    fn secret_by_name(&self, scope: &Scope, name: &str) -> StoreResult<Option<SecretMeta>> {
        self.state.secret_by_name(scope, name)
    }

    fn secret_by_arn(&self, arn: &str) -> StoreResult<Option<SecretMeta>> {
        self.state.secret_by_arn(arn)
    }

    fn versions(&self, arn: &str) -> StoreResult<Vec<VersionMeta>> {
        self.state.versions(arn)
    }

    fn labelled_versions(&self, arn: &str, also: &str) -> StoreResult<(Vec<VersionMeta>, usize)> {
        self.state.labelled_versions(arn, also)
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
        if in_trail(kind) {
            return Ok(self.trail().get(kind, key).cloned());
        }
        self.state.record(kind, key)
    }

    fn records(
        &self,
        kind: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<(String, Vec<u8>)>> {
        if in_trail(kind) {
            return Ok(self.trail().scan(kind, prefix, after, limit));
        }
        self.state.records(kind, prefix, after, limit)
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
    /// A record of the trail ([`TRAIL_KINDS`]).
    TrailRecord {
        kind: String,
        key: String,
        previous: Option<Vec<u8>>,
    },
    LastSeq(i64),
}

/// A write transaction over the live state. Unless committed, dropping it undoes every change.
///
/// It holds the state's write lock (`state`; `None` in a trail-only write,
/// [`Store::write_trail`]) and takes the trail's lock when it first touches a trail
/// record, keeping it until it is dropped, after its changes were kept or undone.
struct MemTxn<'a> {
    state: Option<&'a mut State>,
    trail_lock: &'a Mutex<Records>,
    trail: OnceCell<TrailGuard<'a>>,
    undo: Vec<Undo>,
}

impl<'a> MemTxn<'a> {
    fn new(state: Option<&'a mut State>, trail_lock: &'a Mutex<Records>) -> Self {
        MemTxn { state, trail_lock, trail: OnceCell::new(), undo: Vec::new() }
    }

    fn commit(&mut self) {
        self.undo.clear();
    }

    /// The state, which a trail-only write does not hold.
    fn state(&self) -> StoreResult<&State> {
        self.state.as_deref().ok_or_else(outside_trail)
    }

    fn state_mut(&mut self) -> StoreResult<&mut State> {
        self.state.as_deref_mut().ok_or_else(outside_trail)
    }

    /// The trail, its lock taken on first use (a read too: the head a write reads is the
    /// head it moves) and kept to the end; after the state's, if this write has it.
    fn trail(&self) -> &Records {
        self.trail.get_or_init(|| lock_trail(self.trail_lock))
    }

    fn trail_mut(&mut self) -> &mut Records {
        self.trail();
        self.trail.get_mut().expect("the trail's lock was just taken")
    }

    fn missing_secret() -> StoreError {
        StoreError::Backend("no secret has that ARN".to_owned())
    }

    fn missing_version() -> StoreError {
        StoreError::Backend("the secret has no version with that id".to_owned())
    }
}

/// The error of a trail-only write that touched the state.
fn outside_trail() -> StoreError {
    StoreError::Backend("a write of the audit trail touched more than the trail".to_owned())
}

impl Drop for MemTxn<'_> {
    fn drop(&mut self) {
        while let Some(step) = self.undo.pop() {
            match step {
                Undo::TrailRecord { kind, key, previous } => {
                    // A trail step was made under the trail's guard, still held.
                    if let Some(trail) = self.trail.get_mut() {
                        trail.restore(kind, key, previous);
                    }
                }
                step => {
                    if let Some(state) = self.state.as_mut() {
                        state.undo(step);
                    }
                }
            }
        }
    }
}

impl ReadTxn for MemTxn<'_> {
    fn secret_by_name(&self, scope: &Scope, name: &str) -> StoreResult<Option<SecretMeta>> {
        self.state()?.secret_by_name(scope, name)
    }

    fn secret_by_arn(&self, arn: &str) -> StoreResult<Option<SecretMeta>> {
        self.state()?.secret_by_arn(arn)
    }

    fn versions(&self, arn: &str) -> StoreResult<Vec<VersionMeta>> {
        self.state()?.versions(arn)
    }

    fn labelled_versions(&self, arn: &str, also: &str) -> StoreResult<(Vec<VersionMeta>, usize)> {
        self.state()?.labelled_versions(arn, also)
    }

    fn version_value(&self, arn: &str, version_id: &str) -> StoreResult<Option<SealedValue>> {
        self.state()?.version_value(arn, version_id)
    }

    fn visit_secrets(
        &self,
        scope: &Scope,
        query: &ListQuery,
        visit: &mut dyn FnMut(&SecretMeta) -> bool,
    ) -> StoreResult<()> {
        self.state()?.visit_secrets(scope, query, visit)
    }

    fn secrets_due_for_deletion(&self, now: Millis) -> StoreResult<Vec<String>> {
        self.state()?.secrets_due_for_deletion(now)
    }

    fn wrapped_key(&self, key_id: &str) -> StoreResult<Option<Vec<u8>>> {
        self.state()?.wrapped_key(key_id)
    }

    fn setting(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        self.state()?.setting(name)
    }

    fn record(&self, kind: &str, key: &str) -> StoreResult<Option<Vec<u8>>> {
        if in_trail(kind) {
            return Ok(self.trail().get(kind, key).cloned());
        }
        self.state()?.record(kind, key)
    }

    fn records(
        &self,
        kind: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<(String, Vec<u8>)>> {
        if in_trail(kind) {
            return Ok(self.trail().scan(kind, prefix, after, limit));
        }
        self.state()?.records(kind, prefix, after, limit)
    }
}

impl WriteTxn for MemTxn<'_> {
    fn insert_secret(&mut self, meta: &SecretMeta) -> StoreResult<i64> {
        let state = self.state_mut()?;
        if state.secrets.contains_key(&meta.arn) {
            return Err(StoreError::Conflict("a secret with this ARN already exists".to_owned()));
        }
        let name_taken = state
            .scopes
            .get(&meta.scope)
            .is_some_and(|index| index.arn_of_name(&meta.name).is_some());
        if name_taken {
            return Err(StoreError::Conflict(
                "a secret with this name already exists in its scope".to_owned(),
            ));
        }
        let previous_seq = state.last_seq;
        state.last_seq += 1;
        let seq = state.last_seq;
        let mut stored = meta.clone();
        stored.seq = seq;
        state.put_secret(stored);
        self.undo.push(Undo::LastSeq(previous_seq));
        self.undo.push(Undo::Secret { arn: meta.arn.clone(), previous: None });
        Ok(seq)
    }

    fn update_secret(&mut self, meta: &SecretMeta) -> StoreResult<()> {
        let state = self.state_mut()?;
        let Some(existing) = state.secrets.get(&meta.arn) else {
            return Err(Self::missing_secret());
        };
        // The identity of a secret (scope, name, seq) is fixed at insertion.
        let mut stored = meta.clone();
        stored.scope = existing.scope.clone();
        stored.name = existing.name.clone();
        stored.seq = existing.seq;
        let previous = state.put_secret(stored);
        self.undo.push(Undo::Secret { arn: meta.arn.clone(), previous: previous.map(Box::new) });
        Ok(())
    }

    fn delete_secret(&mut self, arn: &str) -> StoreResult<()> {
        let state = self.state_mut()?;
        let Some(previous) = state.take_secret(arn) else {
            return Ok(());
        };
        let versions = state.versions.remove(arn);
        self.undo.push(Undo::Secret { arn: arn.to_owned(), previous: Some(Box::new(previous)) });
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
        let state = self.state_mut()?;
        if !state.secrets.contains_key(arn) {
            return Err(Self::missing_secret());
        }
        if state.version_position(arn, &meta.version_id).is_some() {
            return Err(StoreError::Conflict(
                "the secret already has a version with this id".to_owned(),
            ));
        }
        let version = Version::new(meta.clone(), value.clone());
        // The ARN is copied only for a secret's first version.
        match state.versions.get_mut(arn) {
            Some(list) => list.push(version),
            None => {
                state.versions.insert(arn.to_owned(), vec![version]);
            }
        }
        self.undo.push(Undo::VersionAppended { arn: arn.to_owned() });
        Ok(())
    }

    fn update_version(&mut self, arn: &str, meta: &VersionMeta) -> StoreResult<()> {
        let state = self.state_mut()?;
        let position =
            state.version_position(arn, &meta.version_id).ok_or_else(Self::missing_version)?;
        let version = &mut state.versions.get_mut(arn).expect("position found")[position];
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
        let state = self.state_mut()?;
        let position = state.version_position(arn, version_id).ok_or_else(Self::missing_version)?;
        let version = &mut state.versions.get_mut(arn).expect("position found")[position];
        let previous = std::mem::replace(&mut version.value, value.clone());
        self.undo.push(Undo::VersionValue { arn: arn.to_owned(), position, previous });
        Ok(())
    }

    fn delete_version(&mut self, arn: &str, version_id: &str) -> StoreResult<()> {
        let state = self.state_mut()?;
        let Some(position) = state.version_position(arn, version_id) else {
            return Ok(());
        };
        let list = state.versions.get_mut(arn).expect("position found");
        let version = list.remove(position);
        if list.is_empty() {
            state.versions.remove(arn);
        }
        self.undo.push(Undo::VersionRemoved { arn: arn.to_owned(), position, version });
        Ok(())
    }

    fn put_wrapped_key(&mut self, key_id: &str, wrapped: &[u8]) -> StoreResult<()> {
        let previous = self.state_mut()?.wrapped_keys.insert(key_id.to_owned(), wrapped.to_vec());
        self.undo.push(Undo::WrappedKey { key_id: key_id.to_owned(), previous });
        Ok(())
    }

    fn put_setting(&mut self, name: &str, value: &[u8]) -> StoreResult<()> {
        let previous = self.state_mut()?.settings.insert(name.to_owned(), value.to_vec());
        self.undo.push(Undo::Setting { name: name.to_owned(), previous });
        Ok(())
    }

    fn put_record(&mut self, kind: &str, key: &str, value: &[u8]) -> StoreResult<()> {
        let (value, undo_key) = (value.to_vec(), key.to_owned());
        if in_trail(kind) {
            let previous = self.trail_mut().put(kind, key.to_owned(), value);
            self.undo.push(Undo::TrailRecord { kind: kind.to_owned(), key: undo_key, previous });
        } else {
            let previous = self.state_mut()?.records.put(kind, key.to_owned(), value);
            self.undo.push(Undo::Record { kind: kind.to_owned(), key: undo_key, previous });
        }
        Ok(())
    }

    fn delete_record(&mut self, kind: &str, key: &str) -> StoreResult<()> {
        if in_trail(kind) {
            if let Some(previous) = self.trail_mut().remove(kind, key) {
                let (kind, key) = (kind.to_owned(), key.to_owned());
                self.undo.push(Undo::TrailRecord { kind, key, previous: Some(previous) });
            }
        } else if let Some(previous) = self.state_mut()?.records.remove(kind, key) {
            let (kind, key) = (kind.to_owned(), key.to_owned());
            self.undo.push(Undo::Record { kind, key, previous: Some(previous) });
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

    /// A read's event appended through `write_trail` holds the trail's lock alone: a
    /// reader of secrets, started while such a write is held open mid-closure, completes.
    /// With one lock for everything it would wait for the write (the test would hang; the
    /// watchdog below turns that into a failure instead, and is no timing threshold: a
    /// read that completes answers at once).
    #[test]
    fn a_reader_of_secrets_is_not_blocked_by_a_held_trail_write() {
        use std::sync::mpsc;
        let store = std::sync::Arc::new(MemoryStore::new());
        store.write(&mut |tx| tx.insert_secret(&secret("a")).map(|_| ())).unwrap();
        let (inside, is_inside) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let released = std::sync::Mutex::new(released);
        let writer = {
            let store = store.clone();
            std::thread::spawn(move || {
                store.write_trail(&mut |tx| {
                    tx.put_record("audit.event", "chain/1", b"event")?;
                    tx.put_record("audit.head", "chain", b"head")?;
                    inside.send(()).unwrap();
                    released.lock().unwrap().recv().unwrap();
                    Ok(())
                })
            })
        };
        is_inside.recv().unwrap();
        let (read, was_read) = mpsc::channel();
        let reader = {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut found = None;
                store
                    .read(&mut |tx| {
                        found = tx.secret_by_name(&scope(), "a")?;
                        Ok(())
                    })
                    .unwrap();
                read.send(found.is_some()).unwrap();
            })
        };
        let outcome = was_read.recv_timeout(std::time::Duration::from_secs(60));
        release.send(()).unwrap();
        writer.join().unwrap().unwrap();
        reader.join().unwrap();
        assert_eq!(outcome, Ok(true), "the read waited for the trail's write");
        // The trail's write committed, and a reader of the trail sees it.
        store
            .read(&mut |tx| {
                assert_eq!(tx.record("audit.head", "chain")?.as_deref(), Some(&b"head"[..]));
                Ok(())
            })
            .unwrap();
    }

    /// A write of secrets that appends an event holds the trail's lock from its first
    /// trail record to its end, and a failed one takes back both its change and its event.
    #[test]
    fn a_failed_write_takes_back_its_change_and_its_event_together() {
        let store = MemoryStore::new();
        let failed = store.write(&mut |tx| {
            tx.insert_secret(&secret("a"))?;
            tx.put_record("audit.event", "chain/1", b"event")?;
            tx.put_record("audit.head", "chain", b"head")?;
            tx.put_record("iam-user", "u", b"user")?;
            Err(StoreError::Aborted)
        });
        assert!(failed.is_err());
        store
            .read(&mut |tx| {
                assert!(tx.secret_by_name(&scope(), "a")?.is_none());
                assert!(tx.record("audit.head", "chain")?.is_none());
                assert!(tx.records("audit.event", "", None, 10)?.is_empty());
                assert!(tx.record("iam-user", "u")?.is_none());
                Ok(())
            })
            .unwrap();
        assert!(store.lock_trail().0.is_empty(), "an empty kind was left in the trail");
        // The same, committed: both visible, and exported in kind order with the rest.
        store
            .write(&mut |tx| {
                tx.insert_secret(&secret("a"))?;
                tx.put_record("audit.head", "chain", b"head")?;
                tx.put_record("iam-user", "u", b"user")?;
                tx.put_record("kms-key", "k", b"key")
            })
            .unwrap();
        let mut kinds = Vec::new();
        store
            .export(&mut |item| {
                if let SnapshotItem::Record { kind, .. } = item {
                    kinds.push(kind);
                }
                Ok(())
            })
            .unwrap();
        assert_eq!(kinds, ["audit.head", "iam-user", "kms-key"]);
    }

    /// A trail-only write that touches a secret or another record is refused and leaves
    /// nothing, not even its trail records.
    #[test]
    fn a_trail_write_that_touches_more_than_the_trail_is_refused() {
        let store = MemoryStore::new();
        let refused = store.write_trail(&mut |tx| {
            tx.put_record("audit.event", "chain/1", b"event")?;
            tx.insert_secret(&secret("a")).map(|_| ())
        });
        assert!(refused.is_err());
        let refused = store.write_trail(&mut |tx| tx.put_record("iam-user", "u", b"user"));
        assert!(refused.is_err());
        let refused = store.write_trail(&mut |tx| tx.secret_by_name(&scope(), "a").map(|_| ()));
        assert!(refused.is_err());
        assert!(store.lock_trail().0.is_empty());
        assert!(store.read_state().records.0.is_empty());
    }

    /// Ids alike in their first eight bytes and their length (the same tag) are still
    /// told apart by every lookup by id; the labelled versions are those with labels, the
    /// count is every version's.
    #[test]
    fn versions_with_the_same_tag_are_told_apart_and_only_labelled_ones_are_copied() {
        use crate::fixtures::version;
        let (a, b, c) = ("00000000-aaaa", "00000000-bbbb", "00000000-cccc");
        assert_eq!(id_tag(a), id_tag(b));
        let store = MemoryStore::new();
        let arn = secret("s").arn;
        store
            .write(&mut |tx| {
                tx.insert_secret(&secret("s"))?;
                tx.insert_version(&arn, &version(a, &[]), &SealedValue(b"a".to_vec()))?;
                tx.insert_version(&arn, &version(b, &["AWSCURRENT"]), &SealedValue(b"b".to_vec()))?;
                tx.insert_version(&arn, &version(c, &[]), &SealedValue(b"c".to_vec()))?;
                tx.update_version(&arn, &version(a, &["AWSPREVIOUS"]))
            })
            .unwrap();
        let duplicate = store.write(&mut |tx| {
            tx.insert_version(&arn, &version(b, &[]), &SealedValue(b"again".to_vec()))
        });
        assert!(matches!(duplicate, Err(StoreError::Conflict(_))));
        store
            .read(&mut |tx| {
                assert_eq!(tx.version_value(&arn, c)?.unwrap().0, b"c");
                assert_eq!(tx.version_value(&arn, a)?.unwrap().0, b"a");
                let ids = |also: &str| {
                    let (kept, count) = tx.labelled_versions(&arn, also).unwrap();
                    let ids: Vec<String> = kept.into_iter().map(|v| v.version_id).collect();
                    (ids, count)
                };
                assert_eq!(ids("00000000-dddd"), (vec![a.to_owned(), b.to_owned()], 3));
                assert_eq!(ids(c), (vec![a.to_owned(), b.to_owned(), c.to_owned()], 3));
                assert_eq!(ids(b), (vec![a.to_owned(), b.to_owned()], 3));
                Ok(())
            })
            .unwrap();
    }

    fn current_in(tx: &dyn WriteTxn, name: &str) -> SecretMeta {
        tx.secret_by_name(&scope(), name).unwrap().unwrap()
    }
}
