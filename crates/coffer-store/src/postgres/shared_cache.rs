//! A per-node cache of the records and settings every call reads and almost nothing
//! changes (IAM users and access keys, the IAM generation, KMS keys and aliases), kept
//! coherent across every node on the database within [`STALE_BOUND`].
//!
//! Why: on PostgreSQL each of those reads is a round trip, and round trips are nearly all
//! of a read call's cost (docs/design/postgres-performance.md).
//!
//! How a change reaches every node:
//! - A write transaction that puts or deletes a cached record or setting also bumps the
//!   setting [`GENERATION_SETTING`] and calls `pg_notify` on [`CHANNEL`], in that
//!   transaction: PostgreSQL delivers the notification only if and when it commits.
//! - Each node keeps one connection of its own (the *watcher*) that `LISTEN`s on the
//!   channel and empties the cache on every notification (typically milliseconds after the
//!   commit), and that also reads the generation row every [`POLL_EVERY`], emptying the
//!   cache when it moved. A notification lost with its connection is thus still seen. A
//!   poll that does not answer within [`POLL_TIMEOUT`] drops the connection and makes a
//!   new one (a half-open connection would otherwise hold the watcher until TCP gives up,
//!   and the cache unused all that time).
//! - Entries are used only while the last poll that *began* less than [`STALE_BOUND`] ago
//!   has confirmed the generation. A poll that begins after a commit sees it; so if no
//!   poll begun after the commit completes (the watcher's connection is down, the
//!   database is slow), the cache stops being used at most [`STALE_BOUND`] after the
//!   commit and every read goes to the database, as without a cache. Hence: a change
//!   committed at time t is seen by every node's reads from t + [`STALE_BOUND`] on.
//! - A node's own writes empty its cache before they commit and again after, and nothing
//!   is cached while one is in flight, so its own readers see its changes at once (the
//!   rules of `crate::read_cache`).
//! - Absent records and settings are not cached, so something created on one node is
//!   found by the next read on every other node.
//!
//! Only read-only transactions use the cache; a write always reads the database. Values
//! are cached as stored (access keys' secrets stay sealed).
//!
//! Secrets are cached too when the store caches anything: a secret looked up by name or
//! ARN, its versions and its current version's sealed value ([`SecretEntry`]), read in one
//! statement. A write that changes a secret or its versions announces itself like a write
//! of a cached record, except that it bumps this node's own generation row
//! ([`SharedCache::node_setting`]) rather than the shared one: writes of secrets on two
//! nodes then never meet on a row they both write, and the watcher's poll reads every
//! node's row, so the bound is the same.
//!
//! Two epochs (tenth session): a write that changed secrets alone announces so (its
//! notification's payload is [`SECRETS_ONLY`], its bump is of a node's row), and it
//! empties only the cached secrets, on every node: the IAM and KMS records and the IAM
//! generation the next call's authorization reads stay cached (before, every put emptied
//! them, and the next read scope re-read them). A change of a cached record or setting,
//! a setting read with a value the node had not seen, a full cache, a lost watcher and
//! any notification without that payload (an older node's) still empty everything.
//!
//! Each process that writes secrets makes a row of its own, and every node's poll reads
//! them all, so a row no process bumps any more is deleted by the watchers once its value
//! has stood still for [`PRUNE_AFTER`] (a live node's row then comes back with its next
//! write). A row starts at the database's clock in microseconds, not at 1, so a row
//! deleted and made again never shows a poll the value it had before.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio_postgres::AsyncMessage;

use super::txn::Announce;

/// The notification channel of changes to cached records and settings.
pub(super) const CHANNEL: &str = "coffer_changes";

/// The setting every write of a cached record or setting increments.
pub const GENERATION_SETTING: &str = "coffer-cache-generation";

/// The prefix of each node's own generation row, which its writes of secrets increment.
pub(super) const NODE_GENERATION_PREFIX: &str = "coffer-cache-generation/";

/// What the watcher's poll reads: the shared generation and every node's, as one text.
/// The shared generation and every node's, apart: a change of the shared one empties
/// the whole cache, one of a node's only the secrets.
pub(super) const POLL_SQL: &str = "SELECT \
     (SELECT encode(value, 'hex') FROM settings WHERE name = $1), \
     (SELECT string_agg(name || '=' || encode(value, 'hex'), ',' ORDER BY name) \
     FROM settings WHERE starts_with(name, $2))";

/// The payload of a notification of a change of secrets alone (see the module's
/// documentation); any other payload means anything may have changed.
pub(super) const SECRETS_ONLY: &str = "secrets";

/// A cached secret: what a read-only lookup reads in one statement (the secret, its
/// versions in order and, when one is labelled AWSCURRENT, that version's id and sealed
/// value). Values stay sealed, as in the database.
pub(super) struct SecretEntry {
    pub(super) meta: coffer_core::model::SecretMeta,
    pub(super) versions: Vec<coffer_core::model::VersionMeta>,
    pub(super) current: Option<(String, Vec<u8>)>,
    /// What its rows were when read (`handoff`), when the lookup read it.
    pub(super) witness: Option<super::handoff::Witness>,
}

impl SecretEntry {
    /// Roughly what it holds, to bound the cache's memory.
    fn weight(&self) -> usize {
        let value = self.current.as_ref().map_or(0, |(_, v)| v.len());
        512 + 256 * self.versions.len() + value
    }
}

/// Past this many bytes (roughly counted) of cached secrets the secrets start over.
const MAX_SECRET_BYTES: usize = 32 * 1024 * 1024;

/// A change committed on any node is seen by every node's reads at most this long after.
pub const STALE_BOUND: Duration = Duration::from_secs(1);

/// How often the watcher reads the generation row (a quarter of the bound, so a poll or
/// two may fail or be slow without the cache falling back to the database).
pub(super) const POLL_EVERY: Duration = Duration::from_millis(250);

/// A node's generation row whose value has not moved for this long is deleted (see the
/// module documentation). Seconds in the crate's own tests, so that they can see it.
const PRUNE_AFTER: Duration =
    if cfg!(test) { Duration::from_secs(2) } else { Duration::from_secs(3600) };

/// The deletion of a node's generation row, if it still has the value it stood still at.
const PRUNE_SQL: &str = "DELETE FROM settings WHERE name = $1 AND encode(value, 'hex') = $2";

/// A watcher's connection, `LISTEN` or poll that takes longer is given up and made anew:
/// past the bound the cache is unused anyway, and a half-open connection never answers.
pub(super) const POLL_TIMEOUT: Duration = STALE_BOUND;

/// At most this many entries; a full cache starts over (the hot set is small: the access
/// keys and KMS keys in use).
const MAX_ENTRIES: usize = 16 * 1024;

/// The bump of a generation row (`$1`) and the notification (payload `$2`: what
/// changed, see [`SECRETS_ONLY`]), in one statement.
pub(super) const ANNOUNCE_SQL: &str = "WITH bumped AS (\
     INSERT INTO settings (name, value) VALUES ($1, convert_to(\
     (extract(epoch FROM clock_timestamp()) * 1000000)::bigint::text, 'UTF8')) \
     ON CONFLICT (name) DO UPDATE SET value = \
     convert_to((convert_from(settings.value, 'UTF8')::bigint + 1)::text, 'UTF8') \
     RETURNING 1) SELECT pg_notify('coffer_changes', $2::text) FROM bumped";

/// The epochs a read notes before its snapshot: records and settings are used while the
/// first has not moved, secrets while the second has not. Whatever moves the first moves
/// the second too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Epoch {
    records: u64,
    secrets: u64,
}

/// Cache key: a record (kind, key) or a setting (`None`, name).
type Key = (Option<String>, String);

/// See the module documentation.
pub(super) struct SharedCache {
    kinds: Vec<String>,
    settings: Vec<String>,
    /// This node's generation row, `NODE_GENERATION_PREFIX` and a random id.
    node_setting: String,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Moves on whenever entries may have become stale; an entry read under an older
    /// epoch is never cached.
    epoch: Epoch,
    /// This node's writes of cached records or settings between their two invalidations.
    committing: usize,
    /// ... and its writes of secrets alone.
    committing_secrets: usize,
    /// When the last poll that confirmed the generation began; `None`: not confirmed.
    confirmed: Option<Instant>,
    /// The shared generation and the nodes' generations that poll read.
    generation: Option<Generations>,
    entries: HashMap<Key, Arc<Vec<u8>>>,
    /// Secrets by `read_cache::name_key` and `read_cache::arn_key`.
    secrets: HashMap<String, Arc<SecretEntry>>,
    secret_bytes: usize,
    /// The value each cached setting was last read with, whatever the epoch.
    settings_seen: HashMap<String, Vec<u8>>,
}

/// What a poll reads: the shared generation row and every node's, as text.
pub(super) type Generations = (Option<String>, Option<String>);

impl State {
    /// Anything may have changed: everything goes, and both epochs move.
    fn invalidate(&mut self) {
        self.entries.clear();
        self.epoch.records += 1;
        self.invalidate_secrets();
    }

    /// Secrets alone may have changed.
    fn invalidate_secrets(&mut self) {
        self.secrets.clear();
        self.secret_bytes = 0;
        self.epoch.secrets += 1;
    }

    fn confirmed(&self) -> bool {
        self.confirmed.is_some_and(|at| at.elapsed() < STALE_BOUND)
    }
}

impl SharedCache {
    pub(super) fn new(kinds: &[&str], settings: &[&str]) -> SharedCache {
        SharedCache {
            kinds: kinds.iter().map(|k| k.to_string()).collect(),
            settings: settings.iter().map(|s| s.to_string()).collect(),
            node_setting: format!("{NODE_GENERATION_PREFIX}{:016x}", rand::random::<u64>()),
            state: Mutex::default(),
        }
    }

    /// The generation row this node's writes of secrets increment.
    pub(super) fn node_setting(&self) -> &str {
        &self.node_setting
    }

    /// The secret cached under `key`, if it may be used by a read that noted `epoch`.
    pub(super) fn secret(&self, epoch: Epoch, key: &str) -> Option<Arc<SecretEntry>> {
        let state = self.lock();
        if state.epoch.secrets != epoch.secrets || !state.confirmed() {
            return None;
        }
        state.secrets.get(key).cloned()
    }

    /// Caches a secret a read that noted `epoch` found, under `keys`, unless secrets may
    /// have changed since.
    pub(super) fn put_secret(&self, epoch: Epoch, keys: [String; 2], entry: SecretEntry) {
        let mut state = self.lock();
        if state.epoch.secrets != epoch.secrets
            || state.committing > 0
            || state.committing_secrets > 0
        {
            return;
        }
        let weight = entry.weight();
        if state.secret_bytes + weight > MAX_SECRET_BYTES {
            state.secrets.clear();
            state.secret_bytes = 0;
        }
        state.secret_bytes += weight;
        let entry = Arc::new(entry);
        for key in keys {
            state.secrets.insert(key, entry.clone());
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn caches_kind(&self, kind: &str) -> bool {
        self.kinds.iter().any(|k| k == kind)
    }

    pub(super) fn caches_setting(&self, name: &str) -> bool {
        self.settings.iter().any(|s| s == name)
    }

    /// The epoch a read transaction notes before its snapshot, if the cache may be used.
    pub(super) fn begin_read(&self, now: Instant) -> Option<Epoch> {
        let state = self.lock();
        let confirmed = state.confirmed?;
        (now.saturating_duration_since(confirmed) < STALE_BOUND).then_some(state.epoch)
    }

    pub(super) fn get(&self, epoch: Epoch, kind: Option<&str>, key: &str) -> Option<Vec<u8>> {
        let state = self.lock();
        if state.epoch.records != epoch.records || !state.confirmed() {
            return None;
        }
        state.entries.get(&(kind.map(str::to_owned), key.to_owned())).map(|v| v.to_vec())
    }

    /// Caches what a read that noted `epoch` found, unless anything moved since.
    ///
    /// A cached setting is a generation (the IAM generation): every change of the records
    /// it counts moves it in the same commit. A read that finds it moved (read from the
    /// database, the entry having been dropped) has seen a change whose notification may
    /// not have arrived, and records cached before that change would be older than it:
    /// the epoch moves, so that read and every later one take them from the database.
    /// `coffer_iam` reads the generation first and trusts the records read after it to be
    /// at least as new, for as long as the generation does not move (review 9).
    pub(super) fn put(&self, epoch: Epoch, kind: Option<&str>, key: &str, value: &[u8]) {
        let mut state = self.lock();
        if state.epoch.records != epoch.records || state.committing > 0 {
            return;
        }
        if kind.is_none() && state.settings_seen.get(key).is_none_or(|seen| seen != value) {
            state.settings_seen.insert(key.to_owned(), value.to_vec());
            state.invalidate();
            return;
        }
        if state.entries.len() >= MAX_ENTRIES {
            // Starting over moves the epoch, as any invalidation: within one epoch every
            // entry kept was read no earlier than those dropped, so a reader never finds
            // an older record beside a newer setting (the IAM generation is trusted to be
            // read no later than the records read after it).
            state.invalidate();
            return;
        }
        state.entries.insert((kind.map(str::to_owned), key.to_owned()), Arc::new(value.to_vec()));
    }

    /// A write of this node that changed cached things (`what`) is about to commit.
    pub(super) fn commit_begins(&self, what: Announce) {
        let mut state = self.lock();
        match what {
            Announce::Shared => {
                state.invalidate();
                state.committing += 1;
            }
            Announce::Node => {
                state.invalidate_secrets();
                state.committing_secrets += 1;
            }
        }
    }

    /// ... and has ended, committed or not.
    pub(super) fn commit_ended(&self, what: Announce) {
        let mut state = self.lock();
        match what {
            Announce::Shared => {
                state.invalidate();
                state.committing = state.committing.saturating_sub(1);
            }
            Announce::Node => {
                state.invalidate_secrets();
                state.committing_secrets = state.committing_secrets.saturating_sub(1);
            }
        }
    }

    /// A poll that began at `started` read `generation` (the shared row, the nodes' rows).
    pub(super) fn observed(&self, started: Instant, generation: Generations) {
        let mut state = self.lock();
        let (shared_same, nodes_same) = match &state.generation {
            Some((shared, nodes)) => (*shared == generation.0, *nodes == generation.1),
            None => (false, false),
        };
        if !shared_same || state.confirmed.is_none() {
            state.invalidate();
        } else if !nodes_same {
            state.invalidate_secrets();
        }
        state.generation = Some(generation);
        if state.confirmed.is_none_or(|at| at < started) {
            state.confirmed = Some(started);
        }
    }

    /// Another node (or this one) committed a change; `payload` says what changed.
    pub(super) fn notified(&self, payload: &str) {
        let mut state = self.lock();
        if payload == SECRETS_ONLY {
            state.invalidate_secrets();
        } else {
            state.invalidate();
        }
    }

    /// The watcher lost its connection: nothing is used until a poll confirms again.
    pub(super) fn lost(&self) {
        let mut state = self.lock();
        state.confirmed = None;
        state.invalidate();
    }
}

/// The watcher: forever, a connection that listens on [`CHANNEL`] and polls the
/// generation; reconnects after [`POLL_EVERY`] when it is lost.
pub(super) async fn watch<T>(cache: Arc<SharedCache>, config: tokio_postgres::Config, tls: T)
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket> + Clone + Send + 'static,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as tokio_postgres::tls::TlsConnect<tokio_postgres::Socket>>::Future: Send,
{
    // Each other node's row: its value and since when this watcher has seen it so.
    let mut rows: HashMap<String, (String, Instant)> = HashMap::new();
    loop {
        let connected = tokio::time::timeout(POLL_TIMEOUT, config.connect(tls.clone())).await;
        if let Ok(Ok((client, mut connection))) = connected {
            let notified = cache.clone();
            let driver = tokio::spawn(async move {
                while let Some(message) =
                    std::future::poll_fn(|cx| connection.poll_message(cx)).await
                {
                    match message {
                        Ok(AsyncMessage::Notification(n)) => notified.notified(n.payload()),
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
                notified.lost();
            });
            let listen = format!("LISTEN {CHANNEL}");
            let listening = client.batch_execute(&listen);
            if let Ok(Ok(())) = tokio::time::timeout(POLL_TIMEOUT, listening).await {
                loop {
                    let started = Instant::now();
                    let poll =
                        client.query_one(POLL_SQL, &[&GENERATION_SETTING, &NODE_GENERATION_PREFIX]);
                    // A poll that does not answer (a half-open connection) ends this
                    // connection: the cache is unused from the bound on, until a new one
                    // confirms the generation again.
                    let generations = match tokio::time::timeout(POLL_TIMEOUT, poll).await {
                        Ok(Ok(row)) => (
                            row.try_get::<_, Option<String>>(0).ok().flatten(),
                            row.try_get::<_, Option<String>>(1).ok().flatten(),
                        ),
                        Ok(Err(_)) | Err(_) => break,
                    };
                    let stale =
                        stale_rows(&mut rows, generations.1.as_deref(), cache.node_setting());
                    cache.observed(started, generations);
                    for (name, value) in stale {
                        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
                            [&name, &value];
                        let prune = client.execute(PRUNE_SQL, &params);
                        if !matches!(tokio::time::timeout(POLL_TIMEOUT, prune).await, Ok(Ok(_))) {
                            break;
                        }
                        rows.remove(&name);
                    }
                    tokio::time::sleep(POLL_EVERY).await;
                }
            }
            driver.abort();
        }
        cache.lost();
        tracing::debug!("the PostgreSQL cache watcher is reconnecting");
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Notes what a poll read of the nodes' rows (`name=hex,...`), and returns the rows,
/// other than `own`, whose value has not moved for [`PRUNE_AFTER`].
fn stale_rows(
    rows: &mut HashMap<String, (String, Instant)>,
    read: Option<&str>,
    own: &str,
) -> Vec<(String, String)> {
    let now = Instant::now();
    let mut present = std::collections::HashSet::new();
    for pair in read.unwrap_or_default().split(',').filter(|pair| !pair.is_empty()) {
        let Some((name, value)) = pair.split_once('=') else { continue };
        present.insert(name);
        match rows.get_mut(name) {
            Some(seen) if seen.0 == value => {}
            Some(seen) => *seen = (value.to_owned(), now),
            None => {
                rows.insert(name.to_owned(), (value.to_owned(), now));
            }
        }
    }
    rows.retain(|name, _| present.contains(name.as_str()));
    rows.iter()
        .filter(|(name, (_, since))| name.as_str() != own && since.elapsed() >= PRUNE_AFTER)
        .map(|(name, (value, _))| (name.clone(), value.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a poll reads when the shared generation is `g` and no node has a row.
    fn shared(g: &str) -> Generations {
        (Some(g.to_owned()), None)
    }

    fn confirmed_cache() -> (SharedCache, Instant) {
        let cache = SharedCache::new(&["k"], &["s"]);
        let now = Instant::now();
        cache.observed(now, shared("1"));
        (cache, now)
    }

    #[test]
    fn nothing_is_used_before_a_poll_confirms_or_once_the_bound_has_passed() {
        let cache = SharedCache::new(&["k"], &[]);
        assert_eq!(cache.begin_read(Instant::now()), None);
        let now = Instant::now();
        cache.observed(now, (None, None));
        assert!(cache.begin_read(now).is_some());
        assert_eq!(cache.begin_read(now + STALE_BOUND), None);
    }

    #[test]
    fn a_moved_generation_a_notification_or_a_lost_watcher_empty_the_cache() {
        let (cache, now) = confirmed_cache();
        let changes: [fn(&SharedCache); 3] =
            [|c| c.observed(Instant::now(), shared("2")), |c| c.notified(""), |c| c.lost()];
        for change in changes {
            cache.observed(Instant::now(), shared("1"));
            let epoch = cache.begin_read(now).unwrap();
            cache.put(epoch, Some("k"), "a", b"v");
            assert_eq!(cache.get(epoch, Some("k"), "a"), Some(b"v".to_vec()));
            change(&cache);
            let later = cache.begin_read(Instant::now());
            assert!(later.is_none_or(|e| cache.get(e, Some("k"), "a").is_none()));
            // A read that began before the change caches nothing.
            cache.put(epoch, Some("k"), "a", b"old");
            cache.observed(Instant::now(), shared("2"));
            let now = cache.begin_read(Instant::now()).unwrap();
            assert_eq!(cache.get(now, Some("k"), "a"), None);
        }
    }

    fn entry(value: &[u8]) -> SecretEntry {
        let meta: coffer_core::model::SecretMeta = serde_json::from_value(serde_json::json!({
            "scope": {"account": "111111111111", "region": "us-east-1"},
            "arn": "arn:s", "name": "s", "seq": 1, "created_ms": 0, "last_changed_ms": 0
        }))
        .unwrap();
        SecretEntry {
            meta,
            versions: Vec::new(),
            current: Some(("v".to_owned(), value.to_vec())),
            witness: None,
        }
    }

    #[test]
    fn secrets_follow_the_same_rules_as_records() {
        let (cache, _) = confirmed_cache();
        let keys = || ["arn".to_owned(), "name".to_owned()];
        let epoch = cache.begin_read(Instant::now()).unwrap();
        cache.put_secret(epoch, keys(), entry(b"one"));
        for key in keys() {
            let found = cache.secret(epoch, &key).unwrap();
            assert_eq!(found.current.as_ref().unwrap().1, b"one");
        }
        // A local commit empties them, and a read that began before it caches nothing.
        cache.commit_begins(Announce::Shared);
        assert!(cache.secret(epoch, "arn").is_none());
        let during = cache.begin_read(Instant::now()).unwrap();
        cache.put_secret(during, keys(), entry(b"old"));
        cache.commit_ended(Announce::Shared);
        cache.put_secret(during, keys(), entry(b"old"));
        let after = cache.begin_read(Instant::now()).unwrap();
        assert!(cache.secret(after, "arn").is_none());
        // A notification (another node's commit) empties them too.
        cache.put_secret(after, keys(), entry(b"two"));
        assert!(cache.secret(after, "name").is_some());
        cache.notified("");
        let now = cache.begin_read(Instant::now()).unwrap();
        assert!(cache.secret(now, "name").is_none());
        // Each node announces secrets on a row of its own.
        let other = SharedCache::new(&[], &[]);
        assert!(cache.node_setting().starts_with(NODE_GENERATION_PREFIX));
        assert_ne!(cache.node_setting(), other.node_setting());
    }

    #[test]
    fn nothing_is_cached_while_a_local_commit_is_in_flight() {
        let (cache, _) = confirmed_cache();
        cache.commit_begins(Announce::Shared);
        let during = cache.begin_read(Instant::now()).unwrap();
        cache.put(during, None, "s", b"old");
        assert_eq!(cache.get(during, None, "s"), None);
        cache.commit_ended(Announce::Shared);
        let after = cache.begin_read(Instant::now()).unwrap();
        assert_eq!(cache.get(after, None, "s"), None);
        // A setting's new value moves the epoch where it is first read (see the next test),
        // and the read after caches it.
        cache.put(after, None, "s", b"new");
        let next = cache.begin_read(Instant::now()).unwrap();
        cache.put(next, None, "s", b"new");
        assert_eq!(cache.get(next, None, "s"), Some(b"new".to_vec()));
    }

    /// Review 9: a setting (the IAM generation) read from the database with a value the
    /// node had not seen was cached beside records cached before the change that moved
    /// it, while that change's notification was on its way; `coffer_iam` then kept the old
    /// records under the new generation (a revoked policy for up to a minute). The epoch
    /// now moves instead: the records go, and reads begun before cache nothing more.
    #[test]
    fn a_setting_read_with_a_new_value_moves_the_epoch() {
        let (cache, _) = confirmed_cache();
        let first = cache.begin_read(Instant::now()).unwrap();
        cache.put(first, None, "s", b"1");
        let epoch = cache.begin_read(Instant::now()).unwrap();
        cache.put(epoch, None, "s", b"1");
        cache.put(epoch, Some("k"), "user", b"before the change");
        assert_eq!(cache.get(epoch, None, "s"), Some(b"1".to_vec()));
        // The same value again changes nothing.
        cache.put(epoch, None, "s", b"1");
        assert!(cache.get(epoch, Some("k"), "user").is_some());
        // A read of the new generation (its entry dropped meanwhile, say by a full cache).
        let slow = cache.begin_read(Instant::now()).unwrap();
        cache.put(slow, None, "s", b"2");
        assert!(cache.get(slow, Some("k"), "user").is_none(), "an older record beside it");
        // A read begun before, with the old records, caches nothing now.
        cache.put(slow, Some("k"), "user", b"before the change");
        let now = cache.begin_read(Instant::now()).unwrap();
        assert!(cache.get(now, Some("k"), "user").is_none());
        cache.put(now, None, "s", b"2");
        assert_eq!(cache.get(now, None, "s"), Some(b"2".to_vec()));
    }

    /// Review 9: a full cache emptied its records and kept caching in the same epoch, so
    /// a record cached just after (read before another node's change) could sit beside a
    /// setting read after that change, before its notification arrived. `coffer_iam`
    /// reads the IAM generation first and trusts records read after it to be at least as
    /// new: with a stale user beside a fresh generation it kept a revoked policy for up to
    /// `LOOKUP_MAX_AGE`, past the bound. Starting over now moves the epoch.
    #[test]
    fn a_full_cache_starts_over_in_a_new_epoch() {
        let (cache, _) = confirmed_cache();
        let epoch = cache.begin_read(Instant::now()).unwrap();
        cache.put(epoch, None, "s", b"generation 1");
        for i in 0..MAX_ENTRIES {
            cache.put(epoch, Some("k"), &format!("r{i}"), b"old");
        }
        assert_eq!(cache.get(epoch, None, "s"), None);
        let kept = (0..MAX_ENTRIES)
            .filter(|i| cache.get(epoch, Some("k"), &format!("r{i}")).is_some())
            .count();
        cache.put(epoch, None, "s", b"generation 2");
        assert!(
            kept == 0 || cache.get(epoch, None, "s").is_none(),
            "{kept} record(s) read before the setting are cached beside it in one epoch"
        );
    }

    /// Tenth session: a change of secrets alone (a local commit, a notification or a
    /// node's row that moved) empties the secrets and keeps the records and settings; a
    /// change of the shared generation still empties both.
    #[test]
    fn a_change_of_secrets_alone_keeps_the_records() {
        let (cache, _) = confirmed_cache();
        let keys = || ["arn".to_owned(), "name".to_owned()];
        let nodes = |g: &str| (Some("1".to_owned()), Some(format!("n={g}")));
        cache.observed(Instant::now(), nodes("1"));
        let changes: [fn(&SharedCache); 3] = [
            |c| {
                c.commit_begins(Announce::Node);
                c.commit_ended(Announce::Node);
            },
            |c| c.notified(SECRETS_ONLY),
            |c| c.observed(Instant::now(), (Some("1".to_owned()), Some("n=2".to_owned()))),
        ];
        for change in changes {
            let epoch = cache.begin_read(Instant::now()).unwrap();
            cache.put(epoch, Some("k"), "a", b"v");
            cache.put_secret(epoch, keys(), entry(b"one"));
            assert!(cache.secret(epoch, "arn").is_some());
            change(&cache);
            let now = cache.begin_read(Instant::now()).unwrap();
            assert!(cache.secret(now, "arn").is_none(), "a changed secret is kept");
            assert_eq!(cache.get(now, Some("k"), "a"), Some(b"v".to_vec()));
            // A read begun before the change caches no secret (it may have read the old).
            cache.put_secret(epoch, keys(), entry(b"old"));
            assert!(cache.secret(now, "arn").is_none());
        }
        // While a local write of secrets is in flight no secret is cached; records are.
        cache.commit_begins(Announce::Node);
        let during = cache.begin_read(Instant::now()).unwrap();
        cache.put_secret(during, keys(), entry(b"old"));
        cache.put(during, Some("k"), "b", b"w");
        assert!(cache.secret(during, "arn").is_none());
        assert_eq!(cache.get(during, Some("k"), "b"), Some(b"w".to_vec()));
        cache.commit_ended(Announce::Node);
        // The shared generation moving empties both.
        let epoch = cache.begin_read(Instant::now()).unwrap();
        cache.put_secret(epoch, keys(), entry(b"two"));
        cache.observed(Instant::now(), (Some("2".to_owned()), Some("n=2".to_owned())));
        let now = cache.begin_read(Instant::now()).unwrap();
        assert!(cache.secret(now, "arn").is_none());
        assert_eq!(cache.get(now, Some("k"), "a"), None);
        // And so does a notification that does not say secrets alone changed (an older
        // node's, or a record's change).
        cache.put(now, Some("k"), "a", b"v");
        cache.put_secret(now, keys(), entry(b"three"));
        cache.notified("");
        let later = cache.begin_read(Instant::now()).unwrap();
        assert!(cache.secret(later, "arn").is_none());
        assert_eq!(cache.get(later, Some("k"), "a"), None);
    }
}
