//! Coffer's IAM: users, access keys and inline policies, persisted as store records, and
//! the lookup that turns an access key id into a verified caller. No HTTP here: the
//! server authenticates through [`Iam::lookup`], and `coffer admin` makes its changes
//! through the same [`Iam`] on any store (SQLite, PostgreSQL), so both seal, bind and
//! count generations the same way.
//!
//! Records: `iam-user` under `<account>/<name>` (the user and its inline policies) and
//! `iam-access-key` under the access key id (owner, status and the secret access key
//! sealed under the credentials key). The credentials key is a random key wrapped by the
//! master key and stored as the wrapped key `iam-credentials-kek`; secret access keys
//! never reach the store in plaintext, and SigV4 needs the secret itself, so a hash
//! would not do.
//!
//! A sealed secret is bound (in its AES-GCM additional data) to its account, user name,
//! user id and key id, so a record moved to another user (an edited backup pointing a
//! reader's key at `admin`) opens for nobody. Records sealed by older builds, bound to the
//! key id only, are re-sealed once, when this version first opens the store
//! ([`Iam::open`]); after that, a record in the old format is refused.
//!
//! Every signed request needs its access key's owner, policies and opened secret, so
//! [`Iam::lookup`] keeps them in a small cache. Every IAM write also increments the
//! store's IAM generation (the setting [`GENERATION_SETTING`]) in its own transaction, in
//! whichever process makes it (this server, another node on the same PostgreSQL
//! database, `coffer admin` on the data directory), so a cached entry is confirmed by
//! reading that one setting instead of the key, the user and the sealed secret.

use coffer_auth::policy::Policy;
use coffer_auth::principal::{
    ID_RANDOM_LEN, Principal, SECRET_KEY_LEN, SecretAccessKey, access_key_id, secret_access_key,
};
use coffer_auth::sigv4::SigningKeyCache;
use coffer_core::AwsError;
use coffer_core::validation::{Constraint, Violation};
use coffer_crypto::{KeyMaterial, MasterKey, random_bytes};
use coffer_store::{ReadTxn, Store, StoreError, WriteTxn};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

pub mod aws_managed;
pub mod directory;
pub mod key_use;
pub mod oidc;
pub mod rename;
pub mod sessions;

pub const USER_KIND: &str = "iam-user";
pub const ACCESS_KEY_KIND: &str = "iam-access-key";
/// The wrapped-key id of the key that seals secret access keys.
pub const CREDENTIALS_KEY_ID: &str = "iam-credentials-kek";
const CREDENTIALS_KEY_CONTEXT: &[u8] = b"coffer iam credentials key";
/// Set once the first administrator was created, so it is never silently re-created.
const BOOTSTRAP_SETTING: &str = "iam-admin-bootstrapped";
/// Set once every access key was re-sealed bound to its user; from then on, records
/// sealed in the old format (bound to the key id only) are refused.
const BOUND_SETTING: &str = "iam-access-keys-bound";
/// The `seal_version` of secrets bound to account, user and key ([`bound_secret_aad`]).
const BOUND_SEAL: u32 = 2;

/// How many access keys a user may have, as in AWS.
pub const MAX_ACCESS_KEYS: usize = 2;

/// The administrator `coffer serve` creates on first start.
pub const ADMIN_USER: &str = "admin";
pub const ADMIN_POLICY_NAME: &str = "AdministratorAccess";
pub const ADMIN_POLICY: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;

/// An IAM user and its inline policies, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserRecord {
    pub account: String,
    pub name: String,
    pub user_id: String,
    pub created_ms: i64,
    /// Inline policy documents by name, as given.
    #[serde(default)]
    pub policies: BTreeMap<String, String>,
    /// The IAM path (`/` unless given).
    #[serde(default = "directory::root_path")]
    pub path: String,
    #[serde(default)]
    pub tags: Vec<directory::Tag>,
    /// ARNs of the managed policies attached to the user.
    #[serde(default)]
    pub attached: BTreeSet<String>,
    /// Names of the groups the user is a member of (the group records list them too).
    #[serde(default)]
    pub groups: BTreeSet<String>,
}

impl UserRecord {
    /// The user as requests are evaluated: its ARN carries its IAM path, as IAM shows it,
    /// so policies naming the path (`user/contractors/*`) match it.
    pub fn principal(&self) -> Principal {
        Principal::user_at(&self.account, &self.path, &self.name, &self.user_id)
    }
}

/// An access key as stored: the secret only sealed.
#[derive(Clone, Serialize, Deserialize)]
pub struct AccessKeyRecord {
    pub access_key_id: String,
    pub account: String,
    pub user_name: String,
    /// `Active` or `Inactive`; only active keys authenticate.
    pub status: String,
    pub created_ms: i64,
    /// The secret access key sealed under the credentials key (base64).
    sealed_secret: String,
    /// How the secret is bound: [`BOUND_SEAL`], or absent (0) for the old format.
    #[serde(default)]
    seal_version: u32,
}

impl fmt::Debug for AccessKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessKeyRecord")
            .field("access_key_id", &self.access_key_id)
            .field("account", &self.account)
            .field("user_name", &self.user_name)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// The owner of an access key id ([`Iam::key_owner`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOwner {
    pub account: String,
    /// The user of a long-term key; `None` for temporary credentials.
    pub user_name: Option<String>,
}

/// What an administrative IAM change can fail with.
#[derive(Debug, thiserror::Error)]
pub enum IamError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Exists(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Crypto(String),
    /// A quota is reached (IAM's `LimitExceeded`).
    #[error("{0}")]
    Limit(String),
    /// The entity is still in use (IAM's `DeleteConflict`).
    #[error("{0}")]
    Conflict(String),
    /// A policy document does not parse (IAM's `MalformedPolicyDocument`).
    #[error("{0}")]
    Malformed(String),
    /// A request IAM refuses as `InvalidInput` (rather than a `ValidationError`).
    #[error("{0}")]
    InvalidInput(String),
}

/// True for an AWS account id: exactly 12 ASCII digits. Every store key of a scope starts
/// with `<account>/<region>/`, and only a fixed-shape account keeps one scope's keys from
/// being a prefix of another's.
pub fn is_account_id(account: &str) -> bool {
    account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())
}

/// AWS's validation message for an account id that is not 12 digits.
pub fn account_id_error(account: &str) -> String {
    Violation::value(account, "accountId", Constraint::Pattern("^\\d{12}$")).message()
}

/// Maps a store failure to the error a client sees: internal, its cause logged, never
/// sent (as the server does for its own store failures).
fn store_error(e: StoreError) -> AwsError {
    if !matches!(e, StoreError::Aborted) {
        tracing::error!(error = %e, "store failure");
    }
    AwsError::internal()
}

/// A new access key: its id and secret, random, not yet stored
/// ([`Iam::create_access_key_as`]).
pub fn new_access_key() -> (String, SecretAccessKey) {
    let id_random: [u8; ID_RANDOM_LEN] =
        random_bytes(ID_RANDOM_LEN).try_into().expect("requested length");
    let secret_random: Zeroizing<Vec<u8>> = Zeroizing::new(random_bytes(SECRET_KEY_LEN));
    let secret_random: &[u8; SECRET_KEY_LEN] =
        secret_random[..].try_into().expect("requested length");
    (access_key_id(&id_random), secret_access_key(secret_random))
}

fn user_key(account: &str, name: &str) -> String {
    format!("{account}/{name}")
}

/// The additional data of secrets sealed by older builds: the key id only, so a record
/// could be moved to another user. Read only to migrate them.
fn legacy_secret_aad(access_key_id: &str) -> Vec<u8> {
    format!("coffer iam secret access key\0{access_key_id}").into_bytes()
}

/// The additional data of a sealed secret: its account, user name, user id (a user
/// deleted and made again under the same name is another user) and key id. The fields
/// cannot contain NUL (account digits, IAM user names, ids), so the encoding is unique.
fn bound_secret_aad(account: &str, user_name: &str, user_id: &str, access_key_id: &str) -> Vec<u8> {
    format!("coffer iam secret access key v2\0{account}\0{user_name}\0{user_id}\0{access_key_id}")
        .into_bytes()
}

/// Seals `secret` for access key `id` of `user`.
fn seal_secret(key: &KeyMaterial, user: &UserRecord, id: &str, secret: &[u8]) -> String {
    use base64::Engine;
    let aad = bound_secret_aad(&user.account, &user.name, &user.user_id, id);
    base64::engine::general_purpose::STANDARD.encode(coffer_crypto::seal(key, secret, &aad))
}

/// Re-seals every access key sealed in the old format bound to its user, in `tx`, and
/// records that it was done; a no-op once done. Returns how many were re-sealed.
fn bind_legacy_keys(tx: &mut dyn WriteTxn, key: &KeyMaterial) -> Result<usize, IamError> {
    if tx.setting(BOUND_SETTING)?.is_some() {
        return Ok(0);
    }
    use base64::Engine;
    let mut bound = 0;
    for (id, bytes) in all_records(tx, ACCESS_KEY_KIND)? {
        let mut record: AccessKeyRecord = decode(&bytes)?;
        if record.seal_version == BOUND_SEAL {
            continue;
        }
        // A key whose user is gone cannot authenticate anyway; it stays as it is.
        let Some(user) = load_user(tx, &record.account, &record.user_name)? else { continue };
        let sealed =
            base64::engine::general_purpose::STANDARD.decode(&record.sealed_secret).map_err(
                |_| IamError::Crypto(format!("access key {id} holds no readable sealed secret")),
            )?;
        let opened = coffer_crypto::open(key, &sealed, &legacy_secret_aad(&id)).map_err(|e| {
            IamError::Crypto(format!("cannot open the secret of access key {id}: {e}"))
        })?;
        record.sealed_secret = seal_secret(key, &user, &id, opened.expose());
        record.seal_version = BOUND_SEAL;
        tx.put_record(ACCESS_KEY_KIND, &id, &encode(&record))?;
        bound += 1;
    }
    tx.put_setting(BOUND_SETTING, b"1")?;
    Ok(bound)
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Backend(format!("unreadable IAM record: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("IAM records serialize")
}

fn load_user(
    tx: &dyn ReadTxn,
    account: &str,
    name: &str,
) -> Result<Option<UserRecord>, StoreError> {
    tx.record(USER_KIND, &user_key(account, name))?.map(|b| decode(&b)).transpose()
}

fn no_such_user(account: &str, name: &str) -> IamError {
    let _ = account;
    let name = coffer_auth::sigv4::echo(name);
    IamError::NotFound(format!("The user with name {name} cannot be found."))
}

/// Runs `f` in a write transaction, carrying its own error out.
fn write<T: Send>(
    store: &dyn Store,
    mut f: impl FnMut(&mut dyn WriteTxn) -> Result<T, IamError> + Send,
) -> Result<T, IamError> {
    let mut out = None;
    let result = store.write(&mut |tx| match f(tx) {
        Ok(v) => {
            out = Some(Ok(v));
            Ok(())
        }
        Err(e) => {
            out = Some(Err(e));
            Err(StoreError::Aborted)
        }
    });
    match (result, out) {
        (Ok(()), Some(Ok(v))) => Ok(v),
        (Err(StoreError::Aborted), Some(Err(e))) => Err(e),
        (Err(e), _) => Err(IamError::Store(e)),
        (Ok(()), _) => Err(IamError::Store(StoreError::Backend("write did not run".into()))),
    }
}

fn read<T>(
    store: &dyn Store,
    mut f: impl FnMut(&dyn ReadTxn) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut out = None;
    store.read(&mut |tx| {
        out = Some(f(tx)?);
        Ok(())
    })?;
    out.ok_or_else(|| StoreError::Backend("read did not run".into()))
}

/// A verified caller's identity and the identity policies that apply to it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub policies: Vec<Policy>,
    /// A session's own policies (its inline session policy and managed session
    /// policies): the session may do only what they, together, allow too. `None`: not
    /// bounded by session policies (a long-term key, or a session given none).
    pub session_policies: Option<Vec<Policy>>,
    /// `aws:PrincipalTag/<key>`: the user's tags, or the role's under a session's tags.
    pub principal_tags: BTreeMap<String, String>,
    /// When the caller's temporary credentials (a session from STS) were issued, in Unix
    /// milliseconds; `None` for a long-term access key. AWS's request context tells it by
    /// `aws:TokenIssueTime` and `aws:MultiFactorAuthPresent` (`false` here: Coffer verifies
    /// no MFA device), neither of which a long-term key carries.
    pub session_issued_ms: Option<i64>,
    /// The caller as requests of a partition other than `aws` see it, made by the first
    /// such request and kept with the cached caller ([`Caller::in_partition`]).
    partitioned: OnceLock<Arc<Caller>>,
    /// The IAM user whose GetFederationToken issued the caller's session (a federated
    /// user's): CloudTrail's `sessionContext.sessionIssuer`.
    pub session_issuer: Option<Principal>,
}

impl Caller {
    /// A caller with identity policies only (a user's access key).
    pub fn new(principal: Principal, policies: Vec<Policy>) -> Caller {
        Caller {
            principal,
            policies,
            session_policies: None,
            principal_tags: BTreeMap::new(),
            session_issued_ms: None,
            partitioned: OnceLock::new(),
            session_issuer: None,
        }
    }

    /// About how many characters of policy text the caller holds parsed: the patterns and
    /// condition values of every statement, which is what grows with a document's size.
    pub fn policy_chars(&self) -> usize {
        self.policies.iter().chain(self.session_policies.iter().flatten()).map(policy_chars).sum()
    }

    /// The caller with every IAM or STS ARN its policies' Deny statements name written in
    /// `partition` ([`Policy::with_global_arns_in`]): how a decision on an IAM or STS
    /// resource, which a request names in its own partition, reads them.
    pub fn with_global_arns_in(&self, partition: coffer_core::Partition) -> Caller {
        Caller {
            policies: self.policies.iter().map(|p| p.with_global_arns_in(partition)).collect(),
            session_policies: self
                .session_policies
                .as_ref()
                .map(|all| all.iter().map(|p| p.with_global_arns_in(partition)).collect()),
            partitioned: OnceLock::new(),
            ..self.clone()
        }
    }

    /// The caller as a request signed for a region of `partition` sees it (IAM is global:
    /// its ARNs take the request's partition). The cached caller itself, unchanged, in
    /// the partition IAM's records are kept in.
    pub fn in_partition(self: &Arc<Caller>, partition: coffer_core::Partition) -> Arc<Caller> {
        if self.principal.partition() == partition {
            return Arc::clone(self);
        }
        // Its policies' Deny statements read IAM and STS ARNs in that partition too: one IAM
        // serves every partition, so a Deny naming the caller (or a role, a user) by its
        // `arn:aws:` ARN holds whichever partition a request is signed for (review 15,
        // finding 02; `Policy::with_global_arns_in`).
        let copy = || {
            let principal = self.principal.in_partition(partition);
            Arc::new(Caller { principal, ..self.with_global_arns_in(partition) })
        };
        // A deployment serves one partition besides `aws` at most, as a rule: that one is
        // kept, so its requests share one caller (and its remembered KMS decisions).
        let kept = self.partitioned.get_or_init(copy);
        if kept.principal.partition() == partition { Arc::clone(kept) } else { copy() }
    }
}

fn policy_chars(policy: &Policy) -> usize {
    let patterns = |p: &coffer_auth::policy::Patterns| match p {
        coffer_auth::policy::Patterns::Only(list) | coffer_auth::policy::Patterns::AllBut(list) => {
            list.iter().map(String::len).sum::<usize>()
        }
    };
    policy
        .statements
        .iter()
        .map(|s| {
            let conditions: usize = s
                .conditions
                .iter()
                .map(|c| c.key.len() + c.values.iter().map(String::len).sum::<usize>())
                .sum();
            s.sid.as_ref().map_or(0, String::len)
                + patterns(&s.action)
                + s.resource.as_ref().map_or(0, patterns)
                + conditions
        })
        .sum()
}

/// What a cached lookup weighs against [`LOOKUP_CACHE_MAX_CHARS`]: the policy text its
/// caller holds.
trait Weighed {
    fn weight(&self) -> usize;
}

impl Weighed for Arc<KnownKey> {
    fn weight(&self) -> usize {
        self.caller.policy_chars()
    }
}

/// An active access key as authentication needs it: who owns it, the owner's identity
/// policies (parsed) and the opened secret, which is wiped when the last holder drops it
/// and prints as `***`.
#[derive(Debug)]
pub struct KnownKey {
    pub caller: Arc<Caller>,
    secret: SecretAccessKey,
}

impl KnownKey {
    pub fn secret(&self) -> &SecretAccessKey {
        &self.secret
    }
}

/// The setting holding the store's IAM generation, a decimal counter that every IAM
/// write made through an [`Iam`] increments in the write's own transaction.
pub const GENERATION_SETTING: &str = "iam-generation";

/// How long, by default, a cached [`Iam::lookup`] is used without even reading the
/// store's IAM generation: zero, so a change made by any process (a second node on the
/// same PostgreSQL database, `coffer admin` on a running server's SQLite data
/// directory) takes effect on the very next request. A non-zero value
/// ([`Iam::with_lookup_ttl`]) spares each request that one small read transaction;
/// changes made through the same [`Iam`] still invalidate at once, and changes made
/// elsewhere then take effect within that long.
pub const LOOKUP_CACHE_TTL: Duration = Duration::ZERO;

/// A cached key is read again in full at least this often, whatever the generation
/// says, so a record changed without an [`Iam`] (by hand, by a future tool) cannot be
/// served from memory forever.
pub const LOOKUP_MAX_AGE: Duration = Duration::from_secs(60);

/// At most this many access keys are cached; a full cache is emptied, which only costs
/// one store read per key in use.
const LOOKUP_CACHE_MAX: usize = 4096;

/// At most about this many characters of policy text are held parsed by one cache's
/// entries (32 Mi: some 45 MB parsed); past it the cache is emptied, as when full. Callers
/// of a few KiB each never reach it before [`LOOKUP_CACHE_MAX`] entries.
const LOOKUP_CACHE_MAX_CHARS: usize = 32 << 20;

/// Reads the store's IAM generation (0 before the first IAM write).
fn store_generation(tx: &dyn ReadTxn) -> Result<u64, StoreError> {
    let Some(bytes) = tx.setting(GENERATION_SETTING)? else { return Ok(0) };
    std::str::from_utf8(&bytes)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| StoreError::Backend(format!("unreadable setting {GENERATION_SETTING}")))
}

/// A cached lookup: `V` is what was read (an access key's [`KnownKey`], or a session's
/// with what each use must still check).
#[derive(Clone)]
struct CachedKey<V> {
    /// This process's generation when the store read began: the entry is dead once an
    /// IAM write through this [`Iam`] moves it on.
    local: u64,
    /// The store's IAM generation the key was read under (in the same transaction, and
    /// before the key's records).
    stored: u64,
    /// When the store read that loaded the entry began.
    loaded: Instant,
    /// When `stored` was last confirmed against the store.
    checked: Instant,
    /// The key's [`Weighed::weight`], taken once when it was read.
    weight: usize,
    key: V,
}

/// What the store read of a lookup found.
enum Read<V> {
    /// The cached entry is still what the store holds.
    Confirmed,
    /// The key as read now (`None`: unknown or inactive) and the generation read with it.
    Loaded(u64, Option<V>),
}

/// Reads a key in the lookup's transaction, bypassing the cache (`None`: not to be used).
type Loader<'a, V> = dyn FnMut(&dyn ReadTxn) -> Result<Option<V>, AwsError> + 'a;

/// Makes room for an entry of `weight` when the cache is at one of its bounds: drops the
/// entries least recently confirmed against the store (with no TTL, least recently used)
/// down to three quarters of both bounds, so the next inserts find room without sorting
/// again. Emptying the whole cache instead let one tenant minting sessions evict every
/// other tenant's callers at each fill.
fn evict_least_recently_checked<V>(
    entries: &mut HashMap<String, CachedKey<V>>,
    access_key_id: &str,
    mut held: usize,
    weight: usize,
) {
    let keep_count = LOOKUP_CACHE_MAX * 3 / 4;
    let keep_chars = (LOOKUP_CACHE_MAX_CHARS * 3 / 4).saturating_sub(weight);
    let mut oldest_first: Vec<(Instant, String, usize)> = entries
        .iter()
        .filter(|(id, _)| id.as_str() != access_key_id)
        .map(|(id, e)| (e.checked, id.clone(), e.weight))
        .collect();
    oldest_first.sort_unstable_by_key(|(checked, _, _)| *checked);
    for (_, id, dropped) in oldest_first {
        if entries.len() < keep_count && held <= keep_chars {
            break;
        }
        entries.remove(&id);
        held -= dropped;
    }
}

/// Access key id -> what its lookup read. An entry is used while this process's
/// generation is the one it was read under and (once `ttl` has passed since its last
/// check) the store's IAM generation still is too.
struct LookupCache<V> {
    generation: AtomicU64,
    ttl: Duration,
    clock: Arc<dyn Fn() -> Instant + Send + Sync>,
    entries: RwLock<HashMap<String, CachedKey<V>>>,
}

impl<V: Clone + Weighed> LookupCache<V> {
    fn new(ttl: Duration) -> Self {
        LookupCache {
            generation: AtomicU64::new(0),
            ttl,
            clock: Arc::new(Instant::now),
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// Makes every entry cached so far unusable.
    fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    fn current(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// The entry of `access_key_id` if it is neither from before an IAM write through
    /// this process nor older than [`LOOKUP_MAX_AGE`].
    fn get(&self, access_key_id: &str, local: u64, now: Instant) -> Option<CachedKey<V>> {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.get(access_key_id)?;
        let alive =
            entry.local == local && now.saturating_duration_since(entry.loaded) < LOOKUP_MAX_AGE;
        alive.then(|| entry.clone())
    }

    /// Remembers an entry read from the store after `entry.local` was observed, unless
    /// an IAM write through this process moved the generation on since: the read may
    /// then predate that write, and caching it could resurrect a revoked key.
    fn insert(&self, access_key_id: &str, entry: CachedKey<V>) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if self.current() != entry.local {
            return;
        }
        let full = entries.len() >= LOOKUP_CACHE_MAX && !entries.contains_key(access_key_id);
        // Each caller holds its policies parsed: a few large ones must not hold what
        // 4,096 small ones would (review 14, finding 01). Summed only when an entry is
        // read from the store, at most 4,096 numbers.
        let held: usize = entries
            .iter()
            .filter(|(id, _)| id.as_str() != access_key_id)
            .map(|(_, e)| e.weight)
            .sum();
        if full || held + entry.weight > LOOKUP_CACHE_MAX_CHARS {
            evict_least_recently_checked(&mut entries, access_key_id, held, entry.weight);
        }
        entries.insert(access_key_id.to_string(), entry);
    }

    /// Drops every entry too old to be used again ([`LOOKUP_MAX_AGE`]), so the opened
    /// secret of a key deleted or deactivated elsewhere, and never presented again,
    /// leaves memory.
    fn prune(&self, now: Instant) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        entries.retain(|_, entry| now.saturating_duration_since(entry.loaded) < LOOKUP_MAX_AGE);
    }

    /// Drops a key the store no longer holds as active, so its secret leaves memory.
    /// Looks first under the shared lock: unknown keys (typos, probes) are never cached
    /// and should not serialize requests on the exclusive one.
    fn remove(&self, access_key_id: &str) {
        if self.entries.read().unwrap_or_else(PoisonError::into_inner).contains_key(access_key_id) {
            self.entries.write().unwrap_or_else(PoisonError::into_inner).remove(access_key_id);
        }
    }

    fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Finds `access_key_id` through the cache: a live entry is used as it is while its
    /// last check is younger than the TTL, else confirmed by one read of the store's IAM
    /// generation; anything else is read by `load` in the same transaction, after the
    /// generation, and cached unless `None`.
    fn lookup(
        &self,
        store: &dyn Store,
        access_key_id: &str,
        load: &mut Loader<'_, V>,
    ) -> Result<Option<V>, AwsError> {
        // Both are taken before the store is read, so an entry is never trusted longer
        // than the TTL after its check began, nor kept across a write that raced it.
        let local = self.current();
        let now = (self.clock)();
        let cached = self.get(access_key_id, local, now);
        if let Some(entry) = &cached
            && now.saturating_duration_since(entry.checked) < self.ttl
        {
            return Ok(Some(entry.key.clone()));
        }
        let mut outcome = None;
        store
            .read(&mut |tx| {
                outcome = Some(read_key(tx, cached.as_ref(), &mut *load));
                Ok(())
            })
            .map_err(store_error)?;
        match outcome.ok_or_else(AwsError::internal)?? {
            Read::Confirmed => {
                let entry = cached.ok_or_else(AwsError::internal)?;
                let key = entry.key.clone();
                if !self.ttl.is_zero() {
                    self.insert(access_key_id, CachedKey { checked: now, ..entry });
                }
                Ok(Some(key))
            }
            Read::Loaded(_, None) => {
                self.remove(access_key_id);
                Ok(None)
            }
            Read::Loaded(stored, Some(key)) => {
                let weight = key.weight();
                let entry = CachedKey {
                    local,
                    stored,
                    loaded: now,
                    checked: now,
                    weight,
                    key: key.clone(),
                };
                self.insert(access_key_id, entry);
                Ok(Some(key))
            }
        }
    }
}

/// The store read of a cached lookup: confirms `cached` if the store's IAM generation has
/// not moved since it was read, else reads the key with `load`. The generation is read
/// first, so the records read after it are at least that new.
fn read_key<V>(
    tx: &dyn ReadTxn,
    cached: Option<&CachedKey<V>>,
    load: &mut Loader<'_, V>,
) -> Result<Read<V>, AwsError> {
    let stored = store_generation(tx).map_err(store_error)?;
    if cached.is_some_and(|entry| entry.stored == stored) {
        return Ok(Read::Confirmed);
    }
    Ok(Read::Loaded(stored, load(tx)?))
}

/// Users, access keys and the key that seals their secrets, with the caches that spare
/// every signed request a store read, an AES-GCM open and a SigV4 key derivation.
pub struct Iam {
    credentials_key: KeyMaterial,
    lookups: LookupCache<Arc<KnownKey>>,
    /// Sessions (`ASIA...`) apart from access keys, so neither lookup can ever be answered
    /// with the other's entry (a session's needs its token checked on every use).
    sessions: LookupCache<Arc<sessions::CachedSession>>,
    signing_keys: SigningKeyCache,
    /// When this node last wrote each key's use (`key_use`).
    key_use_writes: key_use::KeyUseWrites,
}

impl fmt::Debug for Iam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Iam(***)")
    }
}

impl Iam {
    /// Loads the credentials key (wrapped under `master`), creating it on first use. Call
    /// after the master key was checked against the store.
    /// Access keys sealed by older builds are re-sealed bound to their user here, in the
    /// same transaction, the first time this version opens the store.
    pub fn open(master: &MasterKey, store: &dyn Store) -> Result<Iam, IamError> {
        let (key, bound) = write(store, |tx| {
            let key = match tx.wrapped_key(CREDENTIALS_KEY_ID)? {
                Some(wrapped) => {
                    master.unwrap_key(&wrapped, CREDENTIALS_KEY_CONTEXT).map_err(|e| {
                        IamError::Crypto(format!("cannot unwrap the IAM credentials key: {e}"))
                    })?
                }
                None => {
                    let key = KeyMaterial::generate();
                    tx.put_wrapped_key(
                        CREDENTIALS_KEY_ID,
                        &master.wrap_key(&key, CREDENTIALS_KEY_CONTEXT),
                    )?;
                    key
                }
            };
            let bound = bind_legacy_keys(tx, &key)?;
            Ok((key, bound))
        })?;
        if bound > 0 {
            tracing::info!(keys = bound, "re-sealed access keys bound to their users");
        }
        Ok(Iam {
            credentials_key: key,
            lookups: LookupCache::new(LOOKUP_CACHE_TTL),
            sessions: LookupCache::new(LOOKUP_CACHE_TTL),
            signing_keys: SigningKeyCache::new(),
            key_use_writes: key_use::KeyUseWrites::default(),
        })
    }

    /// Sets how long a cached lookup is used without reading the store's IAM generation
    /// (default [`LOOKUP_CACHE_TTL`], zero: every lookup reads it). With a non-zero
    /// value, an IAM change made by another process takes effect within that long.
    pub fn with_lookup_ttl(mut self, ttl: Duration) -> Iam {
        self.lookups.ttl = ttl;
        self.sessions.ttl = ttl;
        self
    }

    /// Replaces the clock the lookup cache ages entries with (tests).
    #[cfg(test)]
    fn with_lookup_clock(mut self, clock: impl Fn() -> Instant + Send + Sync + 'static) -> Iam {
        let clock: Arc<dyn Fn() -> Instant + Send + Sync> = Arc::new(clock);
        self.lookups.clock = clock.clone();
        self.sessions.clock = clock;
        self
    }

    /// The derived SigV4 signing keys of recent requests.
    pub fn signing_keys(&self) -> &SigningKeyCache {
        &self.signing_keys
    }

    /// Runs an IAM write. It increments the store's IAM generation in the same
    /// transaction, which every process's cache checks. This process's cache is also
    /// invalidated before the transaction commits, so no request here uses an entry the
    /// write may change once it is visible, and again after it committed, so a lookup
    /// that read the store just before the commit cannot cache what it read.
    fn write<T: Send>(
        &self,
        store: &dyn Store,
        mut f: impl FnMut(&mut dyn WriteTxn) -> Result<T, IamError> + Send,
    ) -> Result<T, IamError> {
        let result = write(store, |tx| {
            let out = f(tx)?;
            let next = store_generation(tx)? + 1;
            tx.put_setting(GENERATION_SETTING, next.to_string().as_bytes())?;
            self.invalidate_lookups();
            Ok(out)
        });
        self.invalidate_lookups();
        result
    }

    /// Makes every cached lookup, of access keys and of sessions, unusable.
    fn invalidate_lookups(&self) {
        self.lookups.invalidate();
        self.sessions.invalidate();
    }

    /// Creates a user with no policies, at path `/` and without tags.
    pub fn create_user(
        &self,
        store: &dyn Store,
        account: &str,
        name: &str,
        now_ms: i64,
    ) -> Result<UserRecord, IamError> {
        self.create_user_with(store, account, name, "/", Vec::new(), now_ms)
    }

    /// Removes a user with its access keys and policies. Returns the removed key ids.
    pub fn delete_user(
        &self,
        store: &dyn Store,
        account: &str,
        name: &str,
    ) -> Result<Vec<String>, IamError> {
        self.write(store, |tx| {
            if load_user(tx, account, name)?.is_none() {
                return Err(no_such_user(account, name));
            }
            let keys: Vec<String> =
                keys_of(tx, account, name)?.into_iter().map(|k| k.access_key_id).collect();
            for id in &keys {
                tx.delete_record(ACCESS_KEY_KIND, id)?;
                tx.delete_record(key_use::KEY_USE_KIND, id)?;
            }
            directory::leave_groups(tx, account, name)?;
            tx.delete_record(USER_KIND, &user_key(account, name))?;
            Ok(keys.clone())
        })
    }

    /// Every user of every account, with their access key ids.
    pub fn list_users(
        &self,
        store: &dyn Store,
    ) -> Result<Vec<(UserRecord, Vec<String>)>, IamError> {
        Ok(read(store, |tx| {
            let users: Vec<UserRecord> = all_records(tx, USER_KIND)?
                .iter()
                .map(|(_, b)| decode(b))
                .collect::<Result<_, _>>()?;
            let keys: Vec<AccessKeyRecord> = all_records(tx, ACCESS_KEY_KIND)?
                .iter()
                .map(|(_, b)| decode(b))
                .collect::<Result<_, _>>()?;
            Ok(users
                .into_iter()
                .map(|u| {
                    let ids = keys
                        .iter()
                        .filter(|k| k.account == u.account && k.user_name == u.name)
                        .map(|k| k.access_key_id.clone())
                        .collect();
                    (u, ids)
                })
                .collect())
        })?)
    }

    /// Creates an access key for a user. The secret is returned once and stored only sealed.
    pub fn create_access_key(
        &self,
        store: &dyn Store,
        account: &str,
        name: &str,
        now_ms: i64,
    ) -> Result<(String, SecretAccessKey), IamError> {
        let (id, secret) = new_access_key();
        self.create_access_key_as(store, account, name, (&id, &secret), now_ms)?;
        Ok((id, secret))
    }

    /// [`Iam::create_access_key`] with a key made beforehand ([`new_access_key`]), so the
    /// caller knows its id before the transaction that stores it (the IAM API's event,
    /// written in that transaction, records it).
    pub fn create_access_key_as(
        &self,
        store: &dyn Store,
        account: &str,
        name: &str,
        (id, secret): (&str, &SecretAccessKey),
        now_ms: i64,
    ) -> Result<(), IamError> {
        self.write(store, |tx| {
            let user = load_user(tx, account, name)?.ok_or_else(|| no_such_user(account, name))?;
            if keys_of(tx, account, name)?.len() >= MAX_ACCESS_KEYS {
                return Err(IamError::Limit(format!(
                    "Cannot exceed quota for AccessKeysPerUser: {MAX_ACCESS_KEYS}"
                )));
            }
            let record = AccessKeyRecord {
                access_key_id: id.to_string(),
                account: account.to_string(),
                user_name: name.to_string(),
                status: "Active".to_string(),
                created_ms: now_ms,
                sealed_secret: seal_secret(
                    &self.credentials_key,
                    &user,
                    id,
                    secret.expose().as_bytes(),
                ),
                seal_version: BOUND_SEAL,
            };
            if tx.record(ACCESS_KEY_KIND, id)?.is_some() {
                return Err(IamError::Exists(format!("access key {id} already exists")));
            }
            tx.put_record(ACCESS_KEY_KIND, id, &encode(&record))?;
            Ok(())
        })
    }

    /// Whose access key `id` is: GetAccessKeyInfo and GetAccessKeyLastUsed. A long-term
    /// key names its user; temporary credentials (`ASIA...`) only their account.
    pub fn key_owner(&self, store: &dyn Store, id: &str) -> Result<Option<KeyOwner>, IamError> {
        Ok(read(store, |tx| {
            if let Some(bytes) = tx.record(ACCESS_KEY_KIND, id)? {
                let key: AccessKeyRecord = decode(&bytes)?;
                return Ok(Some(KeyOwner { account: key.account, user_name: Some(key.user_name) }));
            }
            Ok(sessions::session_account(tx, id)?
                .map(|account| KeyOwner { account, user_name: None }))
        })?)
    }

    /// Deletes an access key.
    pub fn delete_access_key(
        &self,
        store: &dyn Store,
        access_key_id: &str,
    ) -> Result<AccessKeyRecord, IamError> {
        self.write(store, |tx| {
            let record: AccessKeyRecord = match tx.record(ACCESS_KEY_KIND, access_key_id)? {
                Some(b) => decode(&b)?,
                None => {
                    return Err(IamError::NotFound(format!(
                        "The Access Key with id {} cannot be found.",
                        coffer_auth::sigv4::echo(access_key_id)
                    )));
                }
            };
            tx.delete_record(ACCESS_KEY_KIND, access_key_id)?;
            tx.delete_record(key_use::KEY_USE_KIND, access_key_id)?;
            Ok(record)
        })
    }

    /// Attaches (or replaces) a named inline identity policy, after checking its grammar.
    pub fn put_user_policy(
        &self,
        store: &dyn Store,
        account: &str,
        name: &str,
        policy_name: &str,
        document: &str,
    ) -> Result<(), IamError> {
        directory::validate_name(policy_name, "policyName", 128)?;
        directory::check_inline_policy(document)?;
        self.write(store, |tx| {
            let mut user =
                load_user(tx, account, name)?.ok_or_else(|| no_such_user(account, name))?;
            user.policies.insert(policy_name.to_string(), document.to_string());
            tx.put_record(USER_KIND, &user_key(account, name), &encode(&user))?;
            Ok(())
        })
    }

    /// Detaches a named inline policy.
    pub fn delete_user_policy(
        &self,
        store: &dyn Store,
        account: &str,
        name: &str,
        policy_name: &str,
    ) -> Result<(), IamError> {
        self.write(store, |tx| {
            let mut user =
                load_user(tx, account, name)?.ok_or_else(|| no_such_user(account, name))?;
            if user.policies.remove(policy_name).is_none() {
                return Err(IamError::NotFound(format!(
                    "The user policy with name {} cannot be found.",
                    coffer_auth::sigv4::echo(policy_name)
                )));
            }
            tx.put_record(USER_KIND, &user_key(account, name), &encode(&user))?;
            Ok(())
        })
    }

    /// Creates the first administrator (user `admin` with `AdministratorAccess`) and an
    /// access key for it, unless one was ever created in this store. `publish` receives
    /// the key before anything is committed (it writes the credentials file); if it fails,
    /// nothing is kept.
    pub fn bootstrap_admin(
        &self,
        store: &dyn Store,
        account: &str,
        now_ms: i64,
        publish: &mut dyn FnMut(&str, &SecretAccessKey) -> Result<(), String>,
    ) -> Result<Option<UserRecord>, IamError> {
        if read(store, |tx| tx.setting(BOOTSTRAP_SETTING))?.is_some() {
            return Ok(None);
        }
        let user = match self.create_user(store, account, ADMIN_USER, now_ms) {
            Ok(user) => user,
            Err(IamError::Exists(_)) => read(store, |tx| load_user(tx, account, ADMIN_USER))?
                .ok_or_else(|| no_such_user(account, ADMIN_USER))?,
            Err(e) => return Err(e),
        };
        self.put_user_policy(store, account, ADMIN_USER, ADMIN_POLICY_NAME, ADMIN_POLICY)?;
        let (id, secret) = self.create_access_key(store, account, ADMIN_USER, now_ms)?;
        if let Err(e) = publish(&id, &secret) {
            self.delete_access_key(store, &id)?;
            return Err(IamError::Invalid(e));
        }
        self.write(store, |tx| Ok(tx.put_setting(BOOTSTRAP_SETTING, b"1")?))?;
        Ok(Some(user))
    }

    /// Drops cached lookups too old to be used again (see [`LOOKUP_MAX_AGE`]); called by
    /// the background work every round, on every node.
    pub fn prune_cache(&self) {
        self.lookups.prune((self.lookups.clock)());
        self.sessions.prune((self.sessions.clock)());
    }

    /// How many access keys and sessions are cached.
    pub fn cached_keys(&self) -> usize {
        self.lookups.len() + self.sessions.len()
    }

    /// Finds the caller behind an access key: `None` for unknown or inactive keys.
    ///
    /// A key looked up before is served from the cache after one small read of the
    /// store's IAM generation, which any IAM write by any process increments (with a
    /// non-zero [`Iam::with_lookup_ttl`], without even that read for that long, unless an
    /// IAM write went through this [`Iam`]). Otherwise the key is read with
    /// [`Iam::load`] in the same transaction and, if active, cached. Unknown and inactive
    /// keys are not cached, so a key created by another process works at once.
    pub fn lookup(
        &self,
        store: &dyn Store,
        access_key_id: &str,
    ) -> Result<Option<Arc<KnownKey>>, AwsError> {
        self.lookups
            .lookup(store, access_key_id, &mut |tx| Ok(self.load(tx, access_key_id)?.map(Arc::new)))
    }

    /// Reads the caller behind an access key in `tx`, bypassing the cache: `None` for
    /// unknown or inactive keys. The secret is opened only to verify a signature and is
    /// wiped when dropped.
    pub fn load(
        &self,
        tx: &dyn ReadTxn,
        access_key_id: &str,
    ) -> Result<Option<KnownKey>, AwsError> {
        let Some(bytes) = tx.record(ACCESS_KEY_KIND, access_key_id).map_err(store_error)? else {
            return Ok(None);
        };
        let key: AccessKeyRecord = decode(&bytes).map_err(store_error)?;
        if key.status != "Active" {
            return Ok(None);
        }
        let Some(user) = load_user(tx, &key.account, &key.user_name).map_err(store_error)? else {
            return Ok(None);
        };
        use base64::Engine;
        let sealed =
            base64::engine::general_purpose::STANDARD.decode(&key.sealed_secret).map_err(|_| {
                tracing::error!(access_key_id, "access key record holds no readable sealed secret");
                AwsError::internal()
            })?;
        // The record's key id, account and user must be those it was sealed for: a record
        // in the old format, or moved to another user or key id, is an unknown key.
        if key.seal_version != BOUND_SEAL || key.access_key_id != access_key_id {
            tracing::error!(
                access_key_id,
                "access key record is not bound to its user (old format or edited); refused"
            );
            return Ok(None);
        }
        let aad = bound_secret_aad(&key.account, &key.user_name, &user.user_id, access_key_id);
        let Ok(opened) = coffer_crypto::open(&self.credentials_key, &sealed, &aad) else {
            tracing::error!(
                access_key_id,
                "access key record does not match its sealed secret (moved to another user?); refused"
            );
            return Ok(None);
        };
        let text = std::str::from_utf8(opened.expose()).map_err(|_| AwsError::internal())?;
        let secret = SecretAccessKey::new(Zeroizing::new(text.to_string()));
        let documents = directory::identity_documents(tx, &user).map_err(store_error)?;
        let policies = documents
            .iter()
            .filter_map(|(name, doc)| match sessions::parse_stored(name, doc) {
                Ok(p) => Some(p),
                Err(problems) => {
                    tracing::error!(user = %user.name, policy = %name, ?problems, "stored policy does not parse; ignored");
                    None
                }
            })
            .collect();
        Ok(Some(KnownKey {
            caller: Arc::new(Caller {
                principal: user.principal(),
                policies,
                session_policies: None,
                principal_tags: user
                    .tags
                    .iter()
                    .map(|t| (t.key.clone(), t.value.clone()))
                    .collect(),
                session_issued_ms: None,
                partitioned: OnceLock::new(),
                session_issuer: None,
            }),
            secret,
        }))
    }
}

/// Re-wraps the credentials key from `old` to `new` master key (master-key rotation must
/// do this next to re-wrapping the KMS materials, or access keys stop verifying).
/// Idempotent: a key already wrapped under `new` is left alone, so an interrupted
/// rotation can simply be run again. Returns whether anything changed.
pub fn rewrap_credentials_key(
    store: &dyn Store,
    old: &MasterKey,
    new: &MasterKey,
) -> Result<bool, IamError> {
    write(store, |tx| rewrap_credentials_key_in(tx, old, new))
}

/// [`rewrap_credentials_key`] in the caller's transaction, so a master-key rotation moves
/// the KMS materials and the credentials key in one commit.
pub fn rewrap_credentials_key_in(
    tx: &mut dyn WriteTxn,
    old: &MasterKey,
    new: &MasterKey,
) -> Result<bool, IamError> {
    let Some(wrapped) = tx.wrapped_key(CREDENTIALS_KEY_ID)? else { return Ok(false) };
    if new.unwrap_key(&wrapped, CREDENTIALS_KEY_CONTEXT).is_ok() {
        return Ok(false);
    }
    let key = old
        .unwrap_key(&wrapped, CREDENTIALS_KEY_CONTEXT)
        .map_err(|e| IamError::Crypto(format!("cannot unwrap the IAM credentials key: {e}")))?;
    tx.put_wrapped_key(CREDENTIALS_KEY_ID, &new.wrap_key(&key, CREDENTIALS_KEY_CONTEXT))?;
    Ok(true)
}

fn all_records(tx: &dyn ReadTxn, kind: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut pages = coffer_store::RecordPages::new(kind, "", 256);
    while let Some(page) = pages.next_page(tx)? {
        out.extend(page);
    }
    Ok(out)
}

fn keys_of(
    tx: &dyn ReadTxn,
    account: &str,
    name: &str,
) -> Result<Vec<AccessKeyRecord>, StoreError> {
    let all: Vec<AccessKeyRecord> = all_records(tx, ACCESS_KEY_KIND)?
        .iter()
        .map(|(_, b)| decode(b))
        .collect::<Result<_, _>>()?;
    Ok(all.into_iter().filter(|k| k.account == account && k.user_name == name).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_store::MemoryStore;

    fn iam(store: &dyn Store) -> (Iam, MasterKey) {
        let master = MasterKey::generate();
        (Iam::open(&master, store).unwrap(), master)
    }

    #[test]
    fn a_caller_is_seen_in_the_requests_partition_one_copy_per_cached_caller() {
        use coffer_core::Partition;
        let store = MemoryStore::new();
        let (iam, _) = iam(&store);
        iam.create_user(&store, "111122223333", "alice", 1).unwrap();
        let (id, _) = iam.create_access_key(&store, "111122223333", "alice", 2).unwrap();
        let cached = iam.lookup(&store, &id).unwrap().unwrap().caller.clone();
        assert!(Arc::ptr_eq(&cached.in_partition(Partition::Aws), &cached));
        let cn = cached.in_partition(Partition::AwsCn);
        assert_eq!(cn.principal.arn, "arn:aws-cn:iam::111122223333:user/alice");
        assert_eq!(cn.principal.user_id, cached.principal.user_id);
        assert!(Arc::ptr_eq(&cn, &cached.in_partition(Partition::AwsCn)));
        let gov = cached.in_partition(Partition::AwsUsGov);
        assert_eq!(gov.principal.arn, "arn:aws-us-gov:iam::111122223333:user/alice");
        assert_eq!(cached.principal.arn, "arn:aws:iam::111122223333:user/alice");
    }

    /// Review 15, finding 02: one IAM serves every partition, so a Deny naming an IAM ARN
    /// in any partition reads in the request's (an Allow as written).
    #[test]
    fn a_callers_denies_read_iam_arns_in_the_requests_partition() {
        use coffer_auth::policy::Patterns;
        use coffer_core::Partition;
        let store = MemoryStore::new();
        let (iam, _) = iam(&store);
        iam.create_user(&store, "111122223333", "alice", 1).unwrap();
        let doc = r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Action":"sts:AssumeRole","Resource":"arn:aws-cn:iam::111122223333:role/a"},
            {"Effect":"Deny","Action":"sts:AssumeRole","Resource":"arn:aws-cn:iam::111122223333:role/b"}]}"#;
        iam.put_user_policy(&store, "111122223333", "alice", "p", doc).unwrap();
        let (id, _) = iam.create_access_key(&store, "111122223333", "alice", 2).unwrap();
        let cached = iam.lookup(&store, &id).unwrap().unwrap().caller.clone();
        let resource =
            |caller: &Caller, i: usize| caller.policies[0].statements[i].resource.clone();
        let only = |arn: &str| Some(Patterns::Only(vec![arn.to_string()]));
        assert_eq!(resource(&cached, 0), only("arn:aws-cn:iam::111122223333:role/a"));
        assert_eq!(resource(&cached, 1), only("arn:aws:iam::111122223333:role/b"));
        let gov = cached.in_partition(Partition::AwsUsGov);
        assert_eq!(resource(&gov, 0), only("arn:aws-cn:iam::111122223333:role/a"));
        assert_eq!(resource(&gov, 1), only("arn:aws-us-gov:iam::111122223333:role/b"));
    }

    #[test]
    fn an_access_key_looks_up_its_user_and_policies_and_the_secret_is_stored_sealed() {
        let store = MemoryStore::new();
        let (iam, _) = iam(&store);
        iam.create_user(&store, "111122223333", "alice", 1).unwrap();
        iam.put_user_policy(&store, "111122223333", "alice", "read", ADMIN_POLICY).unwrap();
        let (id, secret) = iam.create_access_key(&store, "111122223333", "alice", 2).unwrap();
        assert_eq!(secret.expose().len(), 40);
        let raw = read(&store, |tx| tx.record(ACCESS_KEY_KIND, &id)).unwrap().unwrap();
        assert!(!String::from_utf8_lossy(&raw).contains(secret.expose()));
        let known = iam.lookup(&store, &id).unwrap().unwrap();
        assert_eq!(known.secret().expose(), secret.expose());
        assert_eq!(format!("{known:?}").matches(secret.expose()).count(), 0);
        assert_eq!(known.caller.principal.arn, "arn:aws:iam::111122223333:user/alice");
        assert_eq!(known.caller.policies.len(), 1);
        assert!(iam.lookup(&store, "AKIANOTAKEY").unwrap().is_none());
    }

    /// Edits the stored record of access key `id` as someone with the store (or a backup)
    /// but not the master key could.
    fn edit_key_record(store: &dyn Store, id: &str, edit: impl Fn(&mut serde_json::Value)) {
        let raw = read(store, |tx| tx.record(ACCESS_KEY_KIND, id)).unwrap().unwrap();
        let mut record: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        edit(&mut record);
        let bytes = serde_json::to_vec(&record).unwrap();
        store.write(&mut |tx| tx.put_record(ACCESS_KEY_KIND, id, &bytes)).unwrap();
    }

    /// Reads access key `id` from the store itself (no cache), as a fresh process would.
    fn opens(iam: &Iam, store: &dyn Store, id: &str) -> Option<KnownKey> {
        read(store, |tx| Ok(iam.load(tx, id).unwrap())).unwrap()
    }

    /// The attack of a backup edited to point a reader's key at `admin`: the sealed
    /// secret is bound to its account, user and user id, so the moved key opens for nobody.
    #[test]
    fn an_access_key_record_moved_to_another_user_does_not_authenticate() {
        let store = MemoryStore::new();
        let (iam, _) = iam(&store);
        iam.create_user(&store, "111122223333", "admin", 1).unwrap();
        iam.put_user_policy(&store, "111122223333", "admin", "all", ADMIN_POLICY).unwrap();
        iam.create_user(&store, "111122223333", "reader", 1).unwrap();
        iam.create_user(&store, "444455556666", "reader", 1).unwrap();
        let (id, _) = iam.create_access_key(&store, "111122223333", "reader", 2).unwrap();
        assert!(opens(&iam, &store, &id).is_some());
        edit_key_record(&store, &id, |r| r["user_name"] = "admin".into());
        assert!(opens(&iam, &store, &id).is_none());
        edit_key_record(&store, &id, |r| {
            r["user_name"] = "reader".into();
            r["account"] = "444455556666".into();
        });
        assert!(opens(&iam, &store, &id).is_none());
        edit_key_record(&store, &id, |r| r["account"] = "111122223333".into());
        assert!(opens(&iam, &store, &id).is_some());
        // A user deleted and made again under the same name is another user.
        let (other, _) = iam.create_access_key(&store, "111122223333", "reader", 2).unwrap();
        let kept = read(&store, |tx| tx.record(ACCESS_KEY_KIND, &other)).unwrap().unwrap();
        iam.delete_user(&store, "111122223333", "reader").unwrap();
        iam.create_user(&store, "111122223333", "reader", 3).unwrap();
        store.write(&mut |tx| tx.put_record(ACCESS_KEY_KIND, &other, &kept)).unwrap();
        assert!(opens(&iam, &store, &other).is_none());
    }

    /// Records sealed before the binding (only to the key id) are re-sealed once, when the
    /// store is first opened by this version; a legacy record appearing later is refused.
    #[test]
    fn legacy_sealed_keys_are_migrated_at_open_and_refused_afterwards() {
        use base64::Engine;
        let store = MemoryStore::new();
        let master = MasterKey::generate();
        let iam = Iam::open(&master, &store).unwrap();
        iam.create_user(&store, "111122223333", "alice", 1).unwrap();
        let (id, secret) = iam.create_access_key(&store, "111122223333", "alice", 2).unwrap();
        // Rewrite the record as an older build sealed it, and forget the migration.
        let legacy = |iam: &Iam| {
            let sealed = coffer_crypto::seal(
                &iam.credentials_key,
                secret.expose().as_bytes(),
                &legacy_secret_aad(&id),
            );
            let text = base64::engine::general_purpose::STANDARD.encode(sealed);
            edit_key_record(&store, &id, |r| {
                r["sealed_secret"] = text.clone().into();
                r.as_object_mut().unwrap().remove("seal_version");
            });
        };
        legacy(&iam);
        // The store as an older build left it: without the migration's setting.
        let mut items = Vec::new();
        store
            .export(&mut |item| {
                if !matches!(&item, coffer_store::SnapshotItem::Setting { name, .. } if name == BOUND_SETTING)
                {
                    items.push(item);
                }
                Ok(())
            })
            .unwrap();
        let store = MemoryStore::new();
        store.import(&items).unwrap();
        let legacy = |iam: &Iam| {
            let sealed = coffer_crypto::seal(
                &iam.credentials_key,
                secret.expose().as_bytes(),
                &legacy_secret_aad(&id),
            );
            let text = base64::engine::general_purpose::STANDARD.encode(sealed);
            edit_key_record(&store, &id, |r| {
                r["sealed_secret"] = text.clone().into();
                r.as_object_mut().unwrap().remove("seal_version");
            });
        };
        let reopened = Iam::open(&master, &store).unwrap();
        let raw = read(&store, |tx| tx.record(ACCESS_KEY_KIND, &id)).unwrap().unwrap();
        let record: AccessKeyRecord = decode(&raw).unwrap();
        assert_eq!(record.seal_version, BOUND_SEAL);
        let known = reopened.lookup(&store, &id).unwrap().unwrap();
        assert_eq!(known.secret().expose(), secret.expose());
        // Once migrated, a record in the old format is never trusted again.
        legacy(&reopened);
        let again = Iam::open(&master, &store).unwrap();
        assert!(again.lookup(&store, &id).unwrap().is_none());
    }

    #[test]
    fn deleting_a_user_removes_its_keys_and_malformed_policies_are_refused() {
        let store = MemoryStore::new();
        let (iam, _) = iam(&store);
        iam.create_user(&store, "111122223333", "bob", 1).unwrap();
        assert!(matches!(
            iam.create_user(&store, "111122223333", "bob", 1),
            Err(IamError::Exists(_))
        ));
        let bad = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*"}}"#;
        assert!(matches!(
            iam.put_user_policy(&store, "111122223333", "bob", "p", bad),
            Err(IamError::Malformed(_))
        ));
        let (id, _) = iam.create_access_key(&store, "111122223333", "bob", 2).unwrap();
        assert_eq!(iam.delete_user(&store, "111122223333", "bob").unwrap(), vec![id.clone()]);
        assert!(iam.lookup(&store, &id).unwrap().is_none());
    }

    #[test]
    fn the_admin_is_created_once_and_a_failed_publish_keeps_no_key() {
        let store = MemoryStore::new();
        let (iam, master) = iam(&store);
        let err =
            iam.bootstrap_admin(&store, "000000000000", 1, &mut |_, _| Err("disk full".into()));
        assert!(err.is_err());
        assert!(iam.list_users(&store).unwrap()[0].1.is_empty());
        let mut published = None;
        let admin = iam
            .bootstrap_admin(&store, "000000000000", 1, &mut |id, _| {
                published = Some(id.to_string());
                Ok(())
            })
            .unwrap()
            .unwrap();
        assert_eq!(admin.principal().arn, "arn:aws:iam::000000000000:user/admin");
        assert!(
            iam.bootstrap_admin(&store, "000000000000", 2, &mut |_, _| panic!("again"))
                .unwrap()
                .is_none()
        );
        // Rotating the master key keeps the credentials readable under the new key.
        let new = MasterKey::generate();
        assert!(rewrap_credentials_key(&store, &master, &new).unwrap());
        assert!(!rewrap_credentials_key(&store, &master, &new).unwrap());
        let reopened = Iam::open(&new, &store).unwrap();
        let id = published.unwrap();
        assert!(read(&store, |tx| Ok(reopened.load(tx, &id).unwrap())).unwrap().is_some());
    }

    /// A test clock that only moves when told to.
    #[derive(Clone)]
    struct Clock(Arc<std::sync::Mutex<Instant>>);

    impl Clock {
        fn new() -> Clock {
            Clock(Arc::new(std::sync::Mutex::new(Instant::now())))
        }

        fn now(&self) -> Instant {
            *self.0.lock().unwrap()
        }

        fn advance(&self, by: Duration) {
            *self.0.lock().unwrap() += by;
        }
    }

    /// Alice (one inline policy, one access key) in a store, seen through an IAM on a
    /// clock the test controls, and a second IAM on the same store standing for another
    /// process (a second node, `coffer admin`).
    struct World {
        store: MemoryStore,
        iam: Iam,
        elsewhere: Iam,
        clock: Clock,
        id: String,
    }

    const ACCOUNT: &str = "111122223333";
    const READ_ONLY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"*"}]}"#;

    fn alice(ttl: Duration) -> World {
        let store = MemoryStore::new();
        let master = MasterKey::generate();
        let clock = Clock::new();
        let ticking = clock.clone();
        let iam = Iam::open(&master, &store)
            .unwrap()
            .with_lookup_ttl(ttl)
            .with_lookup_clock(move || ticking.now());
        let elsewhere = Iam::open(&master, &store).unwrap();
        iam.create_user(&store, ACCOUNT, "alice", 1).unwrap();
        iam.put_user_policy(&store, ACCOUNT, "alice", "all", ADMIN_POLICY).unwrap();
        let (id, _) = iam.create_access_key(&store, ACCOUNT, "alice", 2).unwrap();
        World { store, iam, elsewhere, clock, id }
    }

    impl World {
        fn lookup(&self) -> Option<Arc<KnownKey>> {
            self.iam.lookup(&self.store, &self.id).unwrap()
        }

        fn policies(&self) -> usize {
            self.lookup().unwrap().caller.policies.len()
        }

        /// Rewrites the key's record without any Iam, as a tool writing the store by
        /// hand would: nothing increments the IAM generation.
        fn set_status_by_hand(&self, status: &str) {
            let raw = read(&self.store, |tx| tx.record(ACCESS_KEY_KIND, &self.id)).unwrap();
            let mut record: AccessKeyRecord = decode(&raw.unwrap()).unwrap();
            record.status = status.to_string();
            let bytes = encode(&record);
            write(&self.store, |tx| Ok(tx.put_record(ACCESS_KEY_KIND, &self.id, &bytes)?)).unwrap();
        }
    }

    /// Whether `lookup` answers from the cache without any store read: a store that
    /// holds nothing at all cannot have answered it.
    fn served_from_memory(iam: &Iam, id: &str) -> bool {
        iam.lookup(&MemoryStore::new(), id).unwrap().is_some()
    }

    #[test]
    fn a_repeated_lookup_reuses_the_cached_caller_and_secret() {
        let w = alice(LOOKUP_CACHE_TTL);
        let first = w.lookup().unwrap();
        let second = w.lookup().unwrap();
        assert!(Arc::ptr_eq(&first, &second), "confirmed, not read again");
        assert_eq!(second.secret().expose().len(), 40);
        assert_eq!(format!("{:?}", second.secret()), "***");
        assert!(!format!("{second:?}").contains(second.secret().expose()));
        // By default even a hit reads the store's generation: an empty store does not
        // confirm it.
        assert!(!served_from_memory(&w.iam, &w.id));
    }

    #[test]
    fn a_key_deleted_through_iam_is_refused_on_the_very_next_lookup() {
        let w = alice(Duration::from_secs(1));
        assert!(w.lookup().is_some());
        w.iam.delete_access_key(&w.store, &w.id).unwrap();
        assert!(w.lookup().is_none());
        assert!(w.iam.lookups.entries.read().unwrap().is_empty(), "the secret left memory");
        // Deleting the user revokes its other keys just as promptly.
        let (other, _) = w.iam.create_access_key(&w.store, ACCOUNT, "alice", 3).unwrap();
        assert!(w.iam.lookup(&w.store, &other).unwrap().is_some());
        w.iam.delete_user(&w.store, ACCOUNT, "alice").unwrap();
        assert!(w.iam.lookup(&w.store, &other).unwrap().is_none());
        // A user re-created under the same name does not inherit anything cached.
        w.iam.create_user(&w.store, ACCOUNT, "alice", 4).unwrap();
        assert!(w.iam.lookup(&w.store, &other).unwrap().is_none());
    }

    #[test]
    fn a_policy_change_through_iam_is_seen_on_the_next_lookup() {
        let w = alice(Duration::from_secs(1));
        assert_eq!(w.policies(), 1);
        w.iam.put_user_policy(&w.store, ACCOUNT, "alice", "read", READ_ONLY).unwrap();
        assert_eq!(w.policies(), 2);
        w.iam.delete_user_policy(&w.store, ACCOUNT, "alice", "all").unwrap();
        assert_eq!(w.policies(), 1);
        let left = w.lookup().unwrap();
        assert_eq!(
            left.caller.policies[0],
            Policy::parse(READ_ONLY, coffer_auth::policy::PolicyKind::Identity).unwrap()
        );
        // A write that fails changes nothing and leaves the cache right.
        assert!(w.iam.delete_user_policy(&w.store, ACCOUNT, "alice", "missing").is_err());
        assert_eq!(w.policies(), 1);
    }

    #[test]
    fn a_change_made_by_another_process_is_seen_on_the_very_next_lookup() {
        let w = alice(LOOKUP_CACHE_TTL);
        assert_eq!(w.policies(), 1);
        w.elsewhere.put_user_policy(&w.store, ACCOUNT, "alice", "read", READ_ONLY).unwrap();
        assert_eq!(w.policies(), 2);
        w.elsewhere.delete_access_key(&w.store, &w.id).unwrap();
        assert!(w.lookup().is_none());
    }

    #[test]
    fn with_a_ttl_a_cached_entry_needs_no_store_read_until_it_expires() {
        let ttl = Duration::from_secs(1);
        let w = alice(ttl);
        assert!(!served_from_memory(&w.iam, &w.id), "nothing is cached before a lookup");
        assert!(w.lookup().is_some());
        assert!(served_from_memory(&w.iam, &w.id));
        // Another process disables the key: this Iam cannot know before the TTL ends.
        w.elsewhere.delete_user_policy(&w.store, ACCOUNT, "alice", "all").unwrap();
        w.clock.advance(ttl - Duration::from_millis(1));
        assert_eq!(w.policies(), 1, "still within the TTL");
        w.clock.advance(Duration::from_millis(1));
        assert_eq!(w.policies(), 0, "checked against the store after the TTL");
        assert!(served_from_memory(&w.iam, &w.id), "and cached again");
        // A confirmed entry is trusted for another TTL from its check.
        w.clock.advance(ttl);
        assert_eq!(w.policies(), 0);
        assert!(served_from_memory(&w.iam, &w.id));
        w.clock.advance(ttl);
        assert!(!served_from_memory(&w.iam, &w.id));
    }

    #[test]
    fn an_entry_older_than_the_maximum_age_is_read_again_in_full() {
        let w = alice(LOOKUP_CACHE_TTL);
        assert!(w.lookup().is_some());
        // A change that bypasses every Iam does not move the generation: the cached
        // entry is confirmed until it reaches the maximum age.
        w.set_status_by_hand("Inactive");
        w.clock.advance(LOOKUP_MAX_AGE - Duration::from_millis(1));
        assert!(w.lookup().is_some());
        w.clock.advance(Duration::from_millis(1));
        assert!(w.lookup().is_none());
    }

    #[test]
    fn unknown_keys_are_not_cached_so_a_key_created_elsewhere_works_at_once() {
        let w = alice(Duration::from_secs(1));
        // The key is unknown (inactive) when first looked up, then becomes active
        // without any Iam seeing the change.
        w.set_status_by_hand("Inactive");
        assert!(w.lookup().is_none());
        w.set_status_by_hand("Active");
        assert!(w.lookup().is_some());
    }

    /// A weightless stand-in for a cached caller.
    #[derive(Clone)]
    struct Light;
    impl Weighed for Light {
        fn weight(&self) -> usize {
            0
        }
    }

    #[test]
    fn a_full_cache_drops_its_least_recently_used_entries_not_all_of_them() {
        let cache: LookupCache<Light> = LookupCache::new(Duration::ZERO);
        let start = Instant::now();
        let entry = |age: u64| {
            let at = start + Duration::from_millis(age);
            CachedKey { local: 0, stored: 0, loaded: at, checked: at, weight: 0, key: Light }
        };
        // One tenant's caller, used last, and a fill of other sessions used before it.
        for i in 0..LOOKUP_CACHE_MAX - 1 {
            cache.insert(&format!("ASIAFILL{i}"), entry(i as u64));
        }
        cache.insert("AKIAINUSE", entry(LOOKUP_CACHE_MAX as u64));
        assert_eq!(cache.len(), LOOKUP_CACHE_MAX);
        cache.insert("ASIANEW", entry(LOOKUP_CACHE_MAX as u64 + 1));
        let entries = cache.entries.read().unwrap();
        assert!(entries.contains_key("AKIAINUSE"), "the caller in use survives the fill");
        assert!(entries.contains_key("ASIANEW"));
        assert!(!entries.contains_key("ASIAFILL0"), "the least recently used went first");
        assert!(entries.contains_key(&format!("ASIAFILL{}", LOOKUP_CACHE_MAX - 2)));
        assert_eq!(entries.len(), LOOKUP_CACHE_MAX * 3 / 4, "room made for the next inserts");
    }

    #[test]
    fn a_lookup_that_read_before_a_write_committed_is_not_cached() {
        let w = alice(Duration::from_secs(1));
        let (iam, id) = (&w.iam, &w.id);
        let entry = |local: u64| {
            let (stored, key) = read(&w.store, |tx| {
                Ok((store_generation(tx)?, iam.load(tx, id).unwrap().unwrap()))
            })
            .unwrap();
            let now = w.clock.now();
            CachedKey { local, stored, loaded: now, checked: now, weight: 0, key: Arc::new(key) }
        };
        // What `lookup` does, with an IAM write landing between its store read and its
        // insert: the generation observed before the read is stale by then.
        let stale = entry(iam.lookups.current());
        iam.put_user_policy(&w.store, ACCOUNT, "alice", "read", READ_ONLY).unwrap();
        iam.lookups.insert(id, stale);
        assert!(!iam.lookups.entries.read().unwrap().contains_key(id), "not even stored");
        assert_eq!(w.policies(), 2);
        // An entry inserted just before a write's first bump is refused when used.
        let fresh = entry(iam.lookups.current());
        iam.lookups.insert(id, fresh);
        assert!(served_from_memory(iam, id));
        iam.lookups.invalidate();
        assert!(!served_from_memory(iam, id));
    }

    #[test]
    fn every_iam_write_moves_the_store_generation() {
        let w = alice(LOOKUP_CACHE_TTL);
        let generation = || read(&w.store, |tx| store_generation(tx)).unwrap();
        let mut last = generation();
        assert_eq!(last, 3, "create_user, put_user_policy, create_access_key");
        let mut moved = |what: &str| {
            let now = generation();
            assert!(now > last, "{what}");
            last = now;
        };
        w.elsewhere.create_user(&w.store, ACCOUNT, "bob", 1).unwrap();
        moved("create_user");
        w.elsewhere.put_user_policy(&w.store, ACCOUNT, "bob", "p", READ_ONLY).unwrap();
        moved("put_user_policy");
        let (id, _) = w.elsewhere.create_access_key(&w.store, ACCOUNT, "bob", 2).unwrap();
        moved("create_access_key");
        w.elsewhere.delete_user_policy(&w.store, ACCOUNT, "bob", "p").unwrap();
        moved("delete_user_policy");
        w.elsewhere.delete_access_key(&w.store, &id).unwrap();
        moved("delete_access_key");
        w.elsewhere.delete_user(&w.store, ACCOUNT, "bob").unwrap();
        moved("delete_user");
        w.iam.bootstrap_admin(&w.store, ACCOUNT, 3, &mut |_, _| Ok(())).unwrap();
        moved("bootstrap_admin");
    }

    #[test]
    fn the_opened_secret_of_a_key_deleted_elsewhere_leaves_memory_without_another_request() {
        let w = alice(LOOKUP_CACHE_TTL);
        assert!(w.lookup().is_some());
        assert_eq!(w.iam.cached_keys(), 1);
        w.elsewhere.delete_access_key(&w.store, &w.id).unwrap();
        // Nobody presents the deleted key again: the background round prunes it once it
        // is too old to be used, on every node.
        w.iam.prune_cache();
        assert_eq!(w.iam.cached_keys(), 1, "still young: it would be checked before use");
        w.clock.advance(LOOKUP_MAX_AGE);
        w.iam.prune_cache();
        assert_eq!(w.iam.cached_keys(), 0);
        assert!(w.lookup().is_none());
    }
}
