//! An in-process cache of the lookups every read call repeats (a secret by name or ARN,
//! its versions, a version's sealed value, KMS key records), kept coherent with the one
//! writer connection that changes them.
//!
//! Why: every commit (and the audit appender commits every millisecond or two) makes
//! SQLite drop the page cache of every read connection, so each lookup re-read its pages
//! from the operating system. Entries here survive commits that do not touch them.
//!
//! Coherence rests on three rules, checked under one mutex:
//! - A commit that changes cached keys removes them and bumps the *generation* twice:
//!   before its `COMMIT` (and marks a commit in flight) and after it. Nothing is cached
//!   while a commit is in flight.
//! - A read transaction notes the generation just before it takes its SQLite snapshot.
//!   It uses entries only while the generation is still that one: then no commit began
//!   since the snapshot, so every entry present equals what the snapshot holds (a commit
//!   already in flight had removed its keys, and nothing was cached since).
//! - It adds entries only under the same condition, with no commit in flight, so an
//!   entry never holds a state older than the newest commit.
//!
//! This holds because every change to what is cached goes through this process's writer.
//! Record kinds are cached only when named by `SqliteStore::cache_records`, whose caller
//! promises that (IAM records, which `coffer admin` changes from another process, are not).
//! Values stay sealed here, as in the database.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use coffer_core::model::{Scope, SecretMeta, VersionMeta};

use crate::SealedValue;

/// Past this many bytes (roughly counted) the cache starts over empty: it is a cache
/// of the hot set, and memory must not grow with the number of secrets stored.
const MAX_BYTES: usize = 8 * 1024 * 1024;

/// What one cache key holds.
#[derive(Clone)]
pub(crate) enum Entry {
    /// A secret looked up by name or by ARN; `None` when there is none.
    Secret(Option<Arc<SecretMeta>>),
    /// Every version of a secret, oldest first.
    Versions(Arc<Vec<VersionMeta>>),
    /// A record; `None` when there is none.
    Record(Option<Arc<Vec<u8>>>),
}

/// What the writer knows of one secret's versions: those that carry a staging label (with
/// their `ord`, oldest first), how many it has in all, and the newest's `ord` (0: none).
/// Enough to answer `ReadTxn::labelled_versions` but for the version asked about,
/// without SQLite walking every version of the secret (see [`ReadCache::labelled`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct KnownVersions {
    pub(crate) labelled: Vec<(i64, VersionMeta)>,
    pub(crate) count: usize,
    pub(crate) newest: i64,
    /// A hash of every version's id ([`version_id_hash`]): an id whose hash is not here
    /// is not a version of the secret (a new ClientRequestToken, nearly always), and is
    /// not looked up.
    pub(crate) ids: Vec<u64>,
}

/// The hash of a version id that [`KnownVersions::ids`] holds (two ids may share one:
/// a shared hash only costs a lookup).
pub(crate) fn version_id_hash(version_id: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    version_id.hash(&mut hasher);
    hasher.finish()
}

/// At most this many secrets' [`KnownVersions`] are kept; past it they start over.
const MAX_KNOWN_VERSIONS: usize = 4096;

/// The keys a batch of writes changed, to be dropped from the cache when it commits.
#[derive(Debug, Default)]
pub(crate) struct Touched {
    /// A set, since the writer asks it of every lookup it makes (see [`Touched::covers`]).
    keys: HashSet<String>,
    /// Secrets' ARNs, whose sealed values are dropped too.
    arns: Vec<String>,
    /// A secret whose name is not known changed (it was deleted): every name entry goes.
    all_names: bool,
    /// Everything changed (a restore): the cache starts over.
    all: bool,
    /// What the batch's members that succeeded left of the versions of each secret whose
    /// versions they changed (`None`: not known), to be kept once the batch commits.
    /// (A map: a batch has up to 256 members.)
    known_versions: HashMap<String, Option<KnownVersions>>,
}

impl Touched {
    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.arns.is_empty() && !self.all
    }

    /// A secret's metadata, versions or values changed. Its name key is dropped when
    /// known; a deleted secret whose name is unknown drops every name entry.
    pub(crate) fn secret(&mut self, arn: &str, scope_and_name: Option<(&Scope, &str)>) {
        self.keys.insert(arn_key(arn));
        self.keys.insert(versions_key(arn));
        self.arns.push(arn.to_owned());
        match scope_and_name {
            Some((scope, name)) => {
                self.keys.insert(name_key(scope, name));
            }
            None => self.all_names = true,
        }
    }

    /// A secret's versions or values changed (its metadata did not).
    pub(crate) fn versions(&mut self, arn: &str) {
        self.keys.insert(versions_key(arn));
        self.arns.push(arn.to_owned());
    }

    pub(crate) fn record(&mut self, kind: &str, key: &str) {
        self.keys.insert(record_key(kind, key));
    }

    /// Whether the open batch may have changed what is cached under `key` (a member
    /// whose savepoint was rolled back counts too: it is dropped all the same).
    pub(crate) fn covers(&self, key: &str) -> bool {
        self.all || (self.all_names && key.starts_with("n\0")) || self.keys.contains(key)
    }

    pub(crate) fn everything(&mut self) {
        self.all = true;
    }

    pub(crate) fn clear(&mut self) {
        self.keys.clear();
        self.arns.clear();
        self.all_names = false;
        self.all = false;
        self.known_versions.clear();
    }

    /// A member of the batch succeeded, leaving the versions of `arn` as `known` says
    /// (`None`: changed in ways not followed).
    pub(crate) fn versions_left(&mut self, arn: String, known: Option<KnownVersions>) {
        self.known_versions.insert(arn, known);
    }

    /// The batch was rolled back to run again: what its members left is undone, and
    /// they note it anew as they run again.
    pub(crate) fn forget_versions_left(&mut self) {
        self.known_versions.clear();
    }
}

pub(crate) fn name_key(scope: &Scope, name: &str) -> String {
    format!("n\0{}\0{}\0{name}", scope.account, scope.region)
}

pub(crate) fn arn_key(arn: &str) -> String {
    format!("a\0{arn}")
}

pub(crate) fn versions_key(arn: &str) -> String {
    format!("v\0{arn}")
}

pub(crate) fn record_key(kind: &str, key: &str) -> String {
    format!("r\0{kind}\0{key}")
}

/// The cache; see the module documentation for its rules.
pub(crate) struct ReadCache {
    state: Mutex<State>,
    record_kinds: Vec<String>,
    /// The writer's own: each secret's [`KnownVersions`] as the newest commit left them,
    /// for the secrets whose versions the writer read or changed. Readers never use it.
    /// A batch consults it only for secrets it has not touched ([`Touched::covers`]);
    /// a commit replaces the entries of the secrets it changed with what its members
    /// left ([`Touched::versions_left`]), or drops them when that is not known; a commit
    /// that fails, or a restore, empties it.
    known_versions: Mutex<HashMap<String, KnownVersions>>,
}

#[derive(Default)]
struct State {
    generation: u64,
    /// Batches between their first and second invalidation (0 or 1: one writer).
    committing: usize,
    entries: HashMap<String, Entry>,
    /// Sealed values by secret ARN, then version id (dropped per ARN).
    values: HashMap<String, HashMap<String, SealedValue>>,
    bytes: usize,
}

impl State {
    fn drop_touched(&mut self, touched: &Touched) {
        if touched.all {
            self.entries.clear();
            self.values.clear();
            self.bytes = 0;
            return;
        }
        for key in &touched.keys {
            if let Some(entry) = self.entries.remove(key) {
                self.bytes -= entry_bytes(key, &entry);
            }
        }
        for arn in &touched.arns {
            if let Some(versions) = self.values.remove(arn) {
                self.bytes -= versions.iter().map(|(id, v)| value_bytes(arn, id, v)).sum::<usize>();
            }
        }
        if touched.all_names {
            let mut freed = 0;
            self.entries.retain(|key, entry| {
                let name = key.starts_with("n\0");
                if name {
                    freed += entry_bytes(key, entry);
                }
                !name
            });
            self.bytes -= freed;
        }
    }

    /// Makes room for `size` more bytes, starting over when full.
    fn reserve(&mut self, size: usize) {
        if self.bytes + size > MAX_BYTES {
            self.entries.clear();
            self.values.clear();
            self.bytes = 0;
        }
        self.bytes += size;
    }
}

impl ReadCache {
    pub(crate) fn new(record_kinds: Vec<String>) -> ReadCache {
        ReadCache { state: Mutex::default(), record_kinds, known_versions: Mutex::default() }
    }

    /// What the newest commit left of the versions of `arn`, if the writer knows it.
    pub(crate) fn known_versions(&self, arn: &str) -> Option<KnownVersions> {
        self.known_versions.lock().unwrap_or_else(PoisonError::into_inner).get(arn).cloned()
    }

    /// After a batch's commit: keeps what its members left of the versions they changed
    /// if it `committed`, else forgets everything (the files' state is not known).
    fn versions_committed(&self, touched: &Touched, committed: bool) {
        let mut map = self.known_versions.lock().unwrap_or_else(PoisonError::into_inner);
        if !committed || touched.all {
            map.clear();
            return;
        }
        // Every secret whose versions changed, whether or not a member said what it left.
        for arn in &touched.arns {
            map.remove(arn);
        }
        for (arn, known) in &touched.known_versions {
            if let Some(known) = known {
                if map.len() >= MAX_KNOWN_VERSIONS {
                    map.clear();
                }
                map.insert(arn.clone(), known.clone());
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether records of `kind` are cached.
    pub(crate) fn caches_kind(&self, kind: &str) -> bool {
        self.record_kinds.iter().any(|k| k == kind)
    }

    /// The generation a read transaction notes before taking its snapshot.
    pub(crate) fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// The entry under `key`, if present and the generation is still `generation`.
    pub(crate) fn get(&self, key: &str, generation: u64) -> Option<Entry> {
        let state = self.lock();
        if state.generation != generation {
            return None;
        }
        state.entries.get(key).cloned()
    }

    /// The entry under `key` for the writer, between its commits: with no commit in
    /// flight every entry holds what the newest commit holds, which is what the writer's
    /// open batch sees of every key it has not touched ([`Touched::covers`]).
    pub(crate) fn latest(&self, key: &str) -> Option<Entry> {
        let state = self.lock();
        if state.committing > 0 {
            return None;
        }
        state.entries.get(key).cloned()
    }

    /// Caches what the writer read of a key its open batch has not touched: the newest
    /// commit's state, so it may serve readers of the current generation. Should the
    /// batch touch the key later, its commit drops the entry as any other.
    pub(crate) fn put_latest(&self, key: String, entry: Entry) {
        let generation = self.lock().generation;
        self.put(key, entry, generation);
    }

    /// Caches what a read transaction that began at `generation` found, unless a commit
    /// began since or is in flight.
    pub(crate) fn put(&self, key: String, entry: Entry, generation: u64) {
        let mut state = self.lock();
        if state.generation != generation || state.committing > 0 {
            return;
        }
        let size = entry_bytes(&key, &entry);
        if let Some(old) = state.entries.remove(&key) {
            state.bytes -= entry_bytes(&key, &old);
        }
        state.reserve(size);
        state.entries.insert(key, entry);
    }

    pub(crate) fn value(
        &self,
        arn: &str,
        version_id: &str,
        generation: u64,
    ) -> Option<SealedValue> {
        let state = self.lock();
        if state.generation != generation {
            return None;
        }
        state.values.get(arn)?.get(version_id).cloned()
    }

    pub(crate) fn put_value(
        &self,
        arn: &str,
        version_id: &str,
        value: SealedValue,
        generation: u64,
    ) {
        let mut state = self.lock();
        if state.generation != generation || state.committing > 0 {
            return;
        }
        let replaced = state.values.get_mut(arn).and_then(|versions| versions.remove(version_id));
        if let Some(old) = replaced {
            state.bytes -= value_bytes(arn, version_id, &old);
        }
        state.reserve(value_bytes(arn, version_id, &value));
        state.values.entry(arn.to_owned()).or_default().insert(version_id.to_owned(), value);
    }

    /// Called just before a batch that changed `touched` commits.
    pub(crate) fn commit_begins(&self, touched: &Touched) {
        let mut state = self.lock();
        state.drop_touched(touched);
        state.generation += 1;
        state.committing += 1;
    }

    /// Called once that commit has ended, whether it succeeded (`committed`) or not.
    pub(crate) fn commit_ended(&self, touched: &Touched, committed: bool) {
        self.versions_committed(touched, committed);
        let mut state = self.lock();
        state.drop_touched(touched);
        state.generation += 1;
        state.committing -= 1;
    }

    /// Roughly how many bytes the entries hold; for tests.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

/// The bytes an entry is counted for: what it adds when cached, and frees when dropped.
fn entry_bytes(key: &str, entry: &Entry) -> usize {
    const META: usize = 256;
    key.len()
        + match entry {
            Entry::Secret(None) | Entry::Record(None) => 16,
            Entry::Secret(Some(meta)) => META + meta.arn.len() + meta.name.len(),
            Entry::Versions(versions) => 16 + versions.len() * 128,
            Entry::Record(Some(bytes)) => 16 + bytes.len(),
        }
}

/// [`entry_bytes`] of a cached sealed value.
fn value_bytes(arn: &str, version_id: &str, value: &SealedValue) -> usize {
    arn.len() + version_id.len() + value.0.len() + 64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u8) -> Entry {
        Entry::Record(Some(Arc::new(vec![n; 100])))
    }

    fn held(cache: &ReadCache, key: &str, generation: u64) -> Option<Vec<u8>> {
        match cache.get(key, generation)? {
            Entry::Record(bytes) => bytes.map(|b| b.to_vec()),
            _ => None,
        }
    }

    #[test]
    fn an_entry_is_used_only_by_readers_of_the_generation_it_was_cached_in() {
        let cache = ReadCache::new(vec!["k".into()]);
        let before = cache.generation();
        cache.put(record_key("k", "1"), record(1), before);
        assert_eq!(held(&cache, &record_key("k", "1"), before), Some(vec![1; 100]));

        let mut touched = Touched::default();
        touched.record("k", "2");
        cache.commit_begins(&touched);
        // A reader whose snapshot may predate the commit uses nothing any more.
        assert_eq!(held(&cache, &record_key("k", "1"), before), None);
        cache.commit_ended(&touched, true);
        let after = cache.generation();
        assert_eq!(held(&cache, &record_key("k", "1"), after), Some(vec![1; 100]));
    }

    #[test]
    fn nothing_is_cached_while_a_commit_is_in_flight_or_after_one_began() {
        let cache = ReadCache::new(vec!["k".into()]);
        let old = cache.generation();
        let mut touched = Touched::default();
        touched.record("k", "1");
        cache.commit_begins(&touched);
        let during = cache.generation();
        cache.put(record_key("k", "1"), record(1), old);
        cache.put(record_key("k", "1"), record(2), during);
        assert!(held(&cache, &record_key("k", "1"), during).is_none());
        cache.commit_ended(&touched, true);
        let after = cache.generation();
        cache.put(record_key("k", "1"), record(3), during);
        assert!(held(&cache, &record_key("k", "1"), after).is_none());
        cache.put(record_key("k", "1"), record(4), after);
        assert_eq!(held(&cache, &record_key("k", "1"), after), Some(vec![4; 100]));
    }

    #[test]
    fn a_commit_drops_the_keys_it_touched_and_keeps_the_others() {
        let cache = ReadCache::new(vec!["k".into()]);
        let scope = Scope { account: "1".into(), region: "r".into() };
        let generation = cache.generation();
        cache.put(name_key(&scope, "a"), Entry::Secret(None), generation);
        cache.put(versions_key("arn:a"), Entry::Versions(Arc::default()), generation);
        cache.put_value("arn:a", "v1", SealedValue(vec![1]), generation);
        cache.put(record_key("k", "other"), record(9), generation);
        let mut touched = Touched::default();
        touched.secret("arn:a", Some((&scope, "a")));
        cache.commit_begins(&touched);
        cache.commit_ended(&touched, true);
        let now = cache.generation();
        assert!(cache.get(&name_key(&scope, "a"), now).is_none());
        assert!(cache.get(&versions_key("arn:a"), now).is_none());
        assert!(cache.value("arn:a", "v1", now).is_none());
        assert_eq!(held(&cache, &record_key("k", "other"), now), Some(vec![9; 100]));
    }

    #[test]
    fn deleting_a_secret_of_unknown_name_drops_every_name_entry() {
        let cache = ReadCache::new(Vec::new());
        let scope = Scope { account: "1".into(), region: "r".into() };
        let generation = cache.generation();
        cache.put(name_key(&scope, "a"), Entry::Secret(None), generation);
        cache.put(name_key(&scope, "b"), Entry::Secret(None), generation);
        let mut touched = Touched::default();
        touched.secret("arn:a", None);
        cache.commit_begins(&touched);
        cache.commit_ended(&touched, true);
        let now = cache.generation();
        assert!(cache.get(&name_key(&scope, "a"), now).is_none());
        assert!(cache.get(&name_key(&scope, "b"), now).is_none());
    }

    /// Entries dropped by commits free their bytes: under write churn the cache keeps
    /// its hot entries instead of starting over every few megabytes of turnover.
    #[test]
    fn dropped_and_replaced_entries_give_their_bytes_back() {
        let cache = ReadCache::new(vec!["k".into()]);
        let scope = Scope { account: "1".into(), region: "r".into() };
        let generation = cache.generation();
        cache.put(record_key("k", "kept"), record(1), generation);
        let kept = cache.bytes();
        for n in 0..100_000 {
            let generation = cache.generation();
            let arn = format!("arn:{n}");
            let name = format!("s{n}");
            cache.put(name_key(&scope, &name), Entry::Secret(None), generation);
            cache.put(versions_key(&arn), Entry::Versions(Arc::default()), generation);
            cache.put(versions_key(&arn), Entry::Versions(Arc::default()), generation);
            cache.put_value(&arn, "v1", SealedValue(vec![0; 1024]), generation);
            cache.put_value(&arn, "v1", SealedValue(vec![0; 1024]), generation);
            let mut touched = Touched::default();
            touched.secret(&arn, Some((&scope, &name)));
            cache.commit_begins(&touched);
            cache.commit_ended(&touched, true);
        }
        assert_eq!(cache.bytes(), kept);
        let now = cache.generation();
        assert_eq!(held(&cache, &record_key("k", "kept"), now), Some(vec![1; 100]));

        cache.put(name_key(&scope, "gone"), Entry::Secret(None), now);
        let mut touched = Touched::default();
        touched.secret("arn:unknown-name", None);
        cache.commit_begins(&touched);
        cache.commit_ended(&touched, true);
        assert_eq!(cache.bytes(), kept);
    }

    #[test]
    fn the_cache_starts_over_instead_of_growing_past_its_bound() {
        let cache = ReadCache::new(vec!["k".into()]);
        let generation = cache.generation();
        for n in 0..200_000 {
            cache.put_value(&format!("arn:{n}"), "v", SealedValue(vec![0; 1024]), generation);
            assert!(cache.bytes() <= MAX_BYTES);
        }
        assert!(cache.value("arn:199999", "v", generation).is_some());
    }
}
