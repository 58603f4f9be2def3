//! The key service itself: every KMS operation Coffer serves, over a store transaction.
//!
//! Functions take the caller's transaction, so a key operation and the secret write that
//! needed it (creating `aws/secretsmanager`, re-encrypting versions) commit or roll back
//! together. Nothing here knows HTTP or JSON wire shapes; times are passed in by the caller.

use crate::asymmetric;
use crate::ciphertext::{self, EncryptionContext};
use crate::error::{CIPHERTEXT_KEY_UNKNOWN, KmsError};
use crate::ids::{KeyRef, alias_arn, key_arn, parse_key_ref};
use crate::model::{
    AliasRecord, ENCRYPT_DECRYPT, KeyManager, KeyRecord, KeyState, Material, NewKey,
    ORIGIN_AWS_KMS, ORIGIN_EXTERNAL, Page, RotationType, SYMMETRIC_DEFAULT, Tag,
};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use coffer_core::model::{DAY_MS, Millis};
use coffer_core::validation::{Constraint, Violation};
use coffer_core::{ErrorCode, Partition, Scope};
use coffer_crypto::{KeyMaterial, MasterKey, SecretBytes};
use coffer_store::{ReadTxn, WriteTxn};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// Store record kind of keys; record key `<account>/<region>/<key id>`.
pub const KEY_KIND: &str = "kms-key";
/// Store record kind of aliases; record key `<account>/<region>/<alias name>`.
pub const ALIAS_KIND: &str = "kms-alias";
/// The AWS managed key of Secrets Manager.
pub const SECRETS_MANAGER_ALIAS: &str = "alias/aws/secretsmanager";
/// Description KMS gives the Secrets Manager managed key.
pub const SECRETS_MANAGER_KEY_DESCRIPTION: &str =
    "Default key that protects my Secrets Manager data when no other key is defined";
/// Tags per key, as KMS allows.
pub const MAX_TAGS: usize = 50;
/// On-demand rotations per key, as KMS allows.
pub const MAX_ON_DEMAND_ROTATIONS: u32 = 10;
/// Default automatic rotation period, and the period of AWS managed keys.
pub const DEFAULT_ROTATION_DAYS: i32 = 365;
/// How many unwrapped materials are kept in memory before the cache is emptied.
const MAX_CACHED: usize = 4096;
/// How long an unwrapped material stays in memory after it was unwrapped. A key deleted
/// by another node (which this one learns of only by reading its record) or one this
/// node no longer uses leaves memory within this long ([`Kms::prune_cache`]); a key in
/// use costs one master-key unwrap per period.
pub const MATERIAL_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(300);
/// The setting holding the check value of the master key the store's material is wrapped
/// under. It changes at every master-key rotation, so its [`MasterKey::generation_of`] names
/// the master-key generation the store expects new wraps to use.
pub const MASTER_CHECK_SETTING: &str = "master-key-check";
/// The DryRun answer.
pub const DRY_RUN_MESSAGE: &str = "The request would have succeeded, but the DryRun option is set.";

/// A blob produced by Encrypt or GenerateDataKey.
#[derive(Debug, Clone)]
pub struct Encrypted {
    pub blob: Vec<u8>,
    pub key_arn: String,
    pub material_id: String,
}

/// What Decrypt recovered. The plaintext is zeroized on drop.
#[derive(Debug)]
pub struct Decrypted {
    pub plaintext: SecretBytes,
    /// The key record as the key service keeps it (shared, not copied per call).
    pub key: Arc<KeyRecord>,
    pub material_id: String,
}

/// A fresh data key: its plaintext (zeroized on drop) and the blob that protects it.
#[derive(Debug)]
pub struct DataKey {
    pub plaintext: SecretBytes,
    pub encrypted: Encrypted,
}

/// The result of ReEncrypt.
#[derive(Debug)]
pub struct ReEncrypted {
    pub source_key_arn: String,
    pub source_material_id: String,
    pub encrypted: Encrypted,
}

/// What a sweep carried out: the scope and ARN of each key deleted or rotated,
/// so the caller can record a service event for each.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DueWork {
    pub deleted: Vec<(Scope, String)>,
    pub rotated: Vec<(Scope, String)>,
    /// Keys whose imported material expired (now PendingImport).
    pub expired: Vec<(Scope, String)>,
}

impl DueWork {
    pub fn is_empty(&self) -> bool {
        self.deleted.is_empty() && self.rotated.is_empty() && self.expired.is_empty()
    }
}

/// The kinds of key reference an operation takes in its `KeyId` (AWS's operations differ:
/// Encrypt takes an alias, EnableKey does not), so a lookup reads as what it accepts:
/// `find_key(tx, scope, id, Accepts::KeyOrAlias)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepts {
    /// A key id, key ARN, alias name or alias ARN.
    KeyOrAlias,
    /// A key id or key ARN; an alias is answered `NotFoundException: Invalid keyId`.
    KeyOnly,
}

/// The key service: the master key that wraps every key material, and a zeroizing cache of
/// unwrapped materials keyed by their unique material id.
pub struct Kms {
    master: MasterKey,
    /// The master-key generation this service was started with ([`Kms::bound`]); `None`
    /// for a service not bound to a store's check value (unit tests), which checks nothing.
    generation: Option<String>,
    cache: RwLock<HashMap<String, (Arc<KeyMaterial>, Instant)>>,
    /// How long a cached material is used: [`MATERIAL_CACHE_TTL`] unless set.
    material_ttl: Duration,
    /// Key records as last decoded, with the bytes they were decoded from: a record
    /// read again with the same bytes is not parsed again (every secret read and write
    /// loads its key). Keyed by record key; bounded by [`MAX_DECODED_KEYS`].
    decoded: Mutex<HashMap<String, DecodedKey>>,
    /// The time now, for what stored times decide on every read of a key (imported
    /// material's ValidTo): the wall clock unless set ([`Kms::with_clock`], tests).
    clock: fn() -> Millis,
}

/// A key record's stored bytes and what they decode to.
type DecodedKey = (Vec<u8>, Arc<KeyRecord>);

/// Past this many decoded key records the memo starts over.
const MAX_DECODED_KEYS: usize = 1024;

impl std::fmt::Debug for Kms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kms(***)")
    }
}

fn scope_prefix(scope: &Scope) -> String {
    format!("{}/{}/", scope.account, scope.region)
}

fn key_record_key(scope: &Scope, key_id: &str) -> String {
    format!("{}{key_id}", scope_prefix(scope))
}

fn alias_record_key(scope: &Scope, alias: &str) -> String {
    format!("{}{alias}", scope_prefix(scope))
}

/// The context a material is wrapped with: the key ARN and the material version, so a
/// wrapped material cannot be moved to another key or version.
pub(crate) fn material_context(arn: &str, version: u32) -> Vec<u8> {
    format!("coffer kms key material\0{arn}\0{version}").into_bytes()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, KmsError> {
    serde_json::from_slice(bytes).map_err(|e| KmsError::Internal(format!("unreadable {what}: {e}")))
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialize")
}

impl Kms {
    /// The key record `key_id` of `scope` as `tx` sees it, decoded once per version of
    /// its stored bytes (the memo is checked against them, so it is never stale) and
    /// shared: every secret read loads its key, and a copy of the record per call was
    /// issue 20's "key record parse" share. The same bytes give the same `Arc`, so its
    /// address names one version of the record (the server's decision memo keys on it).
    fn load_key(
        &self,
        tx: &dyn ReadTxn,
        scope: &Scope,
        key_id: &str,
    ) -> Result<Option<Arc<KeyRecord>>, KmsError> {
        let record_key = key_record_key(scope, key_id);
        let Some(bytes) = tx.record(KEY_KIND, &record_key)? else { return Ok(None) };
        let mut decoded = self.decoded.lock().unwrap_or_else(PoisonError::into_inner);
        let key = match decoded.get(&record_key) {
            Some((seen, key)) if *seen == bytes => key.clone(),
            _ => {
                let key: Arc<KeyRecord> = Arc::new(decode("key record", &bytes)?);
                if decoded.len() >= MAX_DECODED_KEYS {
                    decoded.clear();
                }
                decoded.insert(record_key, (bytes, key.clone()));
                key
            }
        };
        drop(decoded);
        // Imported material's ValidTo is decided on the clock, not on the bytes: a key it
        // changes is a copy of its own (a new `Arc`), never the memo's.
        if key.imported.is_some() {
            let mut copy = KeyRecord::clone(&key);
            crate::import::expire_if_due(&mut copy, (self.clock)());
            if copy != *key {
                return Ok(Some(Arc::new(copy)));
            }
        }
        Ok(Some(key))
    }
}

/// The wall clock, in milliseconds since the epoch.
fn wall_clock_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX))
}

pub(crate) fn save_key(tx: &mut dyn WriteTxn, key: &KeyRecord) -> Result<(), KmsError> {
    tx.put_record(KEY_KIND, &key_record_key(&key.scope, &key.key_id), &encode(key))?;
    Ok(())
}

fn load_alias(
    tx: &dyn ReadTxn,
    scope: &Scope,
    alias: &str,
) -> Result<Option<AliasRecord>, KmsError> {
    match tx.record(ALIAS_KIND, &alias_record_key(scope, alias))? {
        Some(bytes) => Ok(Some(decode("alias record", &bytes)?)),
        None => Ok(None),
    }
}

fn save_alias(tx: &mut dyn WriteTxn, scope: &Scope, alias: &AliasRecord) -> Result<(), KmsError> {
    tx.put_record(ALIAS_KIND, &alias_record_key(scope, &alias.name), &encode(alias))?;
    Ok(())
}

/// The key name a ciphertext's AAD binds: the key ARN, or for a multi-Region key the ARN
/// without its region, so every key of the set opens what any of them sealed.
fn sealing_identity(key: &KeyRecord) -> std::borrow::Cow<'_, str> {
    match key.multi_region {
        // In the partition the key's ARN was made in (not its region's today): the bytes
        // its set sealed under stay bound to the same name.
        Some(_) => Partition::of_arn(&key.arn)
            .unwrap_or(Partition::Aws)
            .arn("kms", "", &key.scope.account, &format!("key/{}", key.key_id))
            .into(),
        None => std::borrow::Cow::Borrowed(&key.arn),
    }
}

/// Refuses a key that cannot be used for cryptography in its current state.
pub(crate) fn require_enabled(key: &KeyRecord) -> Result<(), KmsError> {
    match key.state {
        KeyState::Enabled => Ok(()),
        KeyState::Disabled => Err(KmsError::disabled(&key.arn)),
        KeyState::PendingDeletion => Err(KmsError::pending_deletion(&key.arn)),
        KeyState::PendingImport => Err(KmsError::rejected(
            ErrorCode::KmsInvalidState,
            format!("{} is pending import.", key.arn),
        )),
        KeyState::PendingReplicaDeletion => Err(KmsError::rejected(
            ErrorCode::KmsInvalidState,
            format!("{} is pending replica deletion.", key.arn),
        )),
    }
}

fn refuse_pending_deletion(key: &KeyRecord) -> Result<(), KmsError> {
    match key.state {
        KeyState::PendingDeletion => Err(KmsError::pending_deletion(&key.arn)),
        KeyState::PendingReplicaDeletion => require_enabled(key),
        _ => Ok(()),
    }
}

/// AWS managed keys are managed by AWS only: their state, tags and aliases cannot be changed.
fn refuse_aws_managed(key: &KeyRecord, action: &str) -> Result<(), KmsError> {
    if key.manager == KeyManager::Aws {
        Err(KmsError::rejected(
            ErrorCode::AccessDenied,
            format!(
                "kms:{action} is not allowed on {}: it is an AWS managed key, which only AWS can change.",
                key.arn
            ),
        ))
    } else {
        Ok(())
    }
}

fn refuse_rotation_change(key: &KeyRecord) -> Result<(), KmsError> {
    refuse_rotation_of_key_pairs(key)?;
    // Imported material is the customer's: Coffer cannot make more of it.
    if key.is_external() {
        return Err(KmsError::rejected(
            ErrorCode::KmsUnsupportedOperation,
            format!("{} origin is {} which is not valid for this operation.", key.arn, key.origin),
        ));
    }
    // A multi-Region set rotates through its primary, which shares the new material.
    if let Some(set) = &key.multi_region
        && set.primary_region != key.scope.region
    {
        return Err(KmsError::rejected(
            ErrorCode::KmsUnsupportedOperation,
            format!(
                "{} is a multi-Region replica key: rotation is managed by its primary key in {}.",
                key.arn, set.primary_region
            ),
        ));
    }
    if key.manager == KeyManager::Aws {
        Err(KmsError::rejected(
            ErrorCode::KmsUnsupportedOperation,
            format!(
                "{} is an AWS managed key: KMS rotates it every year and its rotation cannot be changed.",
                key.arn
            ),
        ))
    } else {
        Ok(())
    }
}

/// Asymmetric and HMAC keys have no rotation in KMS (their key pair or HMAC key is fixed).
pub fn refuse_rotation_of_key_pairs(key: &KeyRecord) -> Result<(), KmsError> {
    if key.is_symmetric() {
        Ok(())
    } else {
        Err(KmsError::rejected(
            ErrorCode::KmsUnsupportedOperation,
            format!(
                "{} key spec is {} which does not support key rotation.",
                key.arn, key.key_spec
            ),
        ))
    }
}

pub(crate) fn encode_marker(position: &str) -> String {
    URL_SAFE_NO_PAD.encode(position)
}

pub(crate) fn decode_marker(marker: &str) -> Result<String, KmsError> {
    URL_SAFE_NO_PAD
        .decode(marker)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| KmsError::rejected(ErrorCode::KmsInvalidMarker, "Invalid marker"))
}

/// Lists records of `kind` under `prefix` from `marker` on, keeping those `keep` maps to
/// `Some`, until `limit` are collected or none are left.
fn list_records<T>(
    tx: &dyn ReadTxn,
    kind: &str,
    prefix: &str,
    marker: Option<&str>,
    limit: usize,
    mut keep: impl FnMut(&[u8]) -> Result<Option<T>, KmsError>,
) -> Result<Page<T>, KmsError> {
    let mut after = match marker {
        Some(m) => Some(format!("{prefix}{}", decode_marker(m)?)),
        None => None,
    };
    let mut items = Vec::new();
    loop {
        let rows = tx.records(kind, prefix, after.as_deref(), limit.max(1) + 1)?;
        let exhausted = rows.len() <= limit.max(1);
        for (key, value) in rows {
            if items.len() == limit {
                // Another row exists past a full page: the page ends at the previous row.
                let last = after.as_deref().unwrap_or(prefix);
                return Ok(Page { items, next_marker: Some(encode_marker(&last[prefix.len()..])) });
            }
            if let Some(item) = keep(&value)? {
                items.push(item);
            }
            after = Some(key);
        }
        if exhausted {
            return Ok(Page { items, next_marker: None });
        }
    }
}

/// Plaintext of `n` random bytes from the system CSPRNG (GenerateRandom).
pub fn generate_random(n: usize) -> SecretBytes {
    SecretBytes::new(coffer_crypto::random_bytes(n))
}

/// The data key length GenerateDataKey is asked for: exactly one of the two parameters.
pub fn data_key_length(
    number_of_bytes: Option<i32>,
    key_spec: Option<&str>,
) -> Result<usize, KmsError> {
    match (number_of_bytes, key_spec) {
        (Some(n), None) if (1..=1024).contains(&n) => Ok(n as usize),
        (None, Some("AES_256")) => Ok(32),
        (None, Some("AES_128")) => Ok(16),
        _ => Err(KmsError::validation("Please specify either number of bytes or key spec.")),
    }
}

/// Refuses an encryption algorithm a symmetric key does not support.
pub fn check_algorithm(algorithm: Option<&str>, key: &KeyRecord) -> Result<(), KmsError> {
    match algorithm {
        None | Some(SYMMETRIC_DEFAULT) => Ok(()),
        Some(other) => Err(KmsError::rejected(
            ErrorCode::KmsInvalidKeyUsage,
            format!("{} does not support the encryption algorithm {other}.", key.arn),
        )),
    }
}

fn check_tags(existing: &[Tag], new: &[Tag]) -> Result<Vec<Tag>, KmsError> {
    let mut seen = std::collections::HashSet::new();
    if !new.iter().all(|t| seen.insert(t.key.as_str())) {
        return Err(KmsError::tag("Duplicate tag keys"));
    }
    // KMS reserves the prefix in any case (`AWS:` too).
    if new.iter().any(|t| t.key.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws:"))) {
        return Err(KmsError::tag("Tags beginning with aws: are reserved"));
    }
    let mut tags = existing.to_vec();
    for tag in new {
        #[cfg(test)]
        TAGS_COMPARED.with(|c| c.set(c.get() + tags.len()));
        match tags.iter_mut().find(|t| t.key == tag.key) {
            Some(t) => t.value = tag.value.clone(),
            None => tags.push(tag.clone()),
        }
        // The result never shrinks: past the quota, no further tag need be searched for
        // (each searched every tag merged before it, the square of the request before the
        // quota refused it, review 16's left merges).
        if tags.len() > MAX_TAGS {
            break;
        }
    }
    if tags.len() > MAX_TAGS {
        return Err(KmsError::tag("Too many tags"));
    }
    Ok(tags)
}

#[cfg(test)]
thread_local! {
    /// How many tags [`check_tags`] may have compared, on this thread (what the tests
    /// bound).
    static TAGS_COMPARED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The tag rules of a new key's tags (ReplicateKey's too).
pub(crate) fn check_new_tags(tags: &[Tag]) -> Result<Vec<Tag>, KmsError> {
    check_tags(&[], tags)
}

fn check_alias_name(alias: &str) -> Result<(), KmsError> {
    if !alias.starts_with("alias/") {
        return Err(KmsError::validation(
            "Alias must start with the prefix \"alias/\". Please see https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html",
        ));
    }
    // KMS answers a colon with a plain ValidationException (the model's pattern allows it).
    if alias.contains(':') {
        return Err(KmsError::validation(format!(
            "{alias} contains invalid characters for an alias"
        )));
    }
    if alias == "alias/" {
        return Err(KmsError::rejected(
            ErrorCode::KmsInvalidAliasName,
            format!("{alias} contains invalid characters for an alias"),
        ));
    }
    if alias.starts_with("alias/aws/") {
        return Err(KmsError::rejected(
            ErrorCode::KmsInvalidAliasName,
            format!(
                "{alias} is reserved: alias names beginning with alias/aws/ belong to AWS managed keys."
            ),
        ));
    }
    Ok(())
}

impl Kms {
    /// A service that checks no master-key generation (tests of the key service alone).
    pub fn new(master: MasterKey) -> Kms {
        Kms {
            master,
            generation: None,
            cache: RwLock::new(HashMap::new()),
            material_ttl: MATERIAL_CACHE_TTL,
            decoded: Mutex::default(),
            clock: wall_clock_ms,
        }
    }

    /// Replaces the clock key reads judge stored times by (tests with fixed times).
    pub fn with_clock(mut self, clock: fn() -> Millis) -> Kms {
        self.clock = clock;
        self
    }

    /// A service bound to the master-key generation whose check value `check` the store
    /// held when this node started. New material is wrapped only while the store still
    /// holds that check value, read in the wrapping transaction: after a master-key
    /// rotation by another process, this node refuses to wrap under the old key (which
    /// the store no longer expects) instead of writing material nobody can open later.
    pub fn bound(master: MasterKey, check: &[u8]) -> Kms {
        Kms { generation: Some(MasterKey::generation_of(check)), ..Kms::new(master) }
    }

    /// Sets how long an unwrapped material is kept ([`MATERIAL_CACHE_TTL`] by default).
    pub fn with_material_ttl(mut self, ttl: Duration) -> Kms {
        self.material_ttl = ttl;
        self
    }

    /// Drops every unwrapped material older than the cache's time to live, so keys
    /// deleted elsewhere or no longer used leave memory without another request. The
    /// background work calls it every round, on every node.
    pub fn prune_cache(&self) {
        let ttl = self.material_ttl;
        let mut cache = self.cache.write().expect("material cache lock");
        cache.retain(|_, (_, unwrapped_at)| unwrapped_at.elapsed() < ttl);
    }

    /// How many unwrapped materials are in memory.
    pub fn cached_materials(&self) -> usize {
        self.cache.read().expect("material cache lock").len()
    }

    /// The master-key generation this service wraps under, if bound.
    pub fn generation(&self) -> Option<&str> {
        self.generation.as_deref()
    }

    /// The master key (imported material and import tokens are wrapped under it).
    pub(crate) fn master_key(&self) -> &MasterKey {
        &self.master
    }

    /// Refuses to wrap unless the store still expects this node's master-key generation.
    pub(crate) fn check_generation(&self, tx: &dyn ReadTxn) -> Result<(), KmsError> {
        let Some(mine) = &self.generation else { return Ok(()) };
        let stored = tx.setting(MASTER_CHECK_SETTING)?.map(|c| MasterKey::generation_of(&c));
        if stored.as_deref() == Some(mine.as_str()) {
            return Ok(());
        }
        tracing::error!(
            node_generation = %mine,
            store_generation = stored.as_deref().unwrap_or("none"),
            "the master key was rotated since this node started: it refuses to wrap new key \
             material under the old master key; restart it with the new master key"
        );
        Err(KmsError::Internal(format!(
            "the master key was rotated since this node started (store generation {}, this \
             node {mine}); restart it with the new master key",
            stored.as_deref().unwrap_or("none")
        )))
    }

    fn new_material(
        &self,
        tx: &dyn ReadTxn,
        arn: &str,
        version: u32,
        now: Millis,
        rotation: Option<RotationType>,
    ) -> Result<Material, KmsError> {
        self.check_generation(tx)?;
        let material = KeyMaterial::generate();
        let wrapped = self.master.wrap_key(&material, &material_context(arn, version));
        // Not cached: the transaction creating it may still roll back. The first use unwraps it.
        Ok(Material {
            version,
            id: hex(&coffer_crypto::random_bytes(32)),
            wrapped: STANDARD.encode(wrapped),
            created_ms: now,
            rotation,
            sealed: None,
            generation: self.generation.clone(),
        })
    }

    fn unwrap_material(
        &self,
        key: &KeyRecord,
        material: &Material,
    ) -> Result<Arc<KeyMaterial>, KmsError> {
        self.unwrap_for(&key.arn, material)
    }

    /// The unwrapped material `material` of the key `arn` (from the cache when there).
    pub(crate) fn unwrap_for(
        &self,
        arn: &str,
        material: &Material,
    ) -> Result<Arc<KeyMaterial>, KmsError> {
        if let Some((found, at)) = self.cache.read().expect("material cache lock").get(&material.id)
            && at.elapsed() < self.material_ttl
        {
            return Ok(found.clone());
        }
        if let (Some(mine), Some(theirs)) = (&self.generation, &material.generation)
            && mine != theirs
        {
            tracing::error!(
                key = %arn,
                node_generation = %mine,
                material_generation = %theirs,
                "key material is wrapped under another master-key generation than this \
                 node's: restart the node with the store's current master key"
            );
            return Err(KmsError::Internal(format!(
                "material {} of {} is wrapped under master-key generation {theirs}, this node \
                 holds {mine}: restart it with the current master key",
                material.version, arn
            )));
        }
        let wrapped = STANDARD.decode(&material.wrapped).map_err(|_| {
            KmsError::Internal(format!("material {} of {} is not base64", material.version, arn))
        })?;
        let unwrapped = self
            .master
            .unwrap_key(&wrapped, &material_context(arn, material.version))
            .map_err(|e| {
                KmsError::Internal(format!(
                    "material {} of {} does not unwrap: {e}",
                    material.version, arn
                ))
            })?;
        let unwrapped = Arc::new(unwrapped);
        let mut cache = self.cache.write().expect("material cache lock");
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(material.id.clone(), (unwrapped.clone(), Instant::now()));
        Ok(unwrapped)
    }

    pub(crate) fn forget_materials(&self, key: &KeyRecord) {
        self.forget(key);
    }

    fn forget(&self, key: &KeyRecord) {
        let mut cache = self.cache.write().expect("material cache lock");
        for material in &key.materials {
            cache.remove(&material.id);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn new_key_record(
        &self,
        tx: &dyn ReadTxn,
        scope: &Scope,
        key_id: String,
        description: String,
        manager: KeyManager,
        tags: Vec<Tag>,
        policy: Option<String>,
        now: Millis,
    ) -> Result<KeyRecord, KmsError> {
        let arn = key_arn(scope, &key_id);
        let material = self.new_material(tx, &arn, 1, now, None)?;
        let aws = manager == KeyManager::Aws;
        Ok(KeyRecord {
            key_id,
            scope: scope.clone(),
            arn,
            description,
            manager,
            state: KeyState::Enabled,
            created_ms: now,
            deletion_ms: None,
            pending_window_days: None,
            rotation_enabled: aws,
            rotation_period_days: aws.then_some(DEFAULT_ROTATION_DAYS),
            next_rotation_ms: aws.then_some(now + i64::from(DEFAULT_ROTATION_DAYS) * DAY_MS),
            on_demand_rotations: 0,
            materials: vec![material],
            tags,
            policy,
            key_spec: SYMMETRIC_DEFAULT.to_string(),
            key_usage: ENCRYPT_DECRYPT.to_string(),
            public_key: None,
            origin: ORIGIN_AWS_KMS.to_string(),
            imported: None,
            multi_region: None,
        })
    }

    /// Finds the key `key_id` names, in a form the operation `accepts`.
    pub fn find_key(
        &self,
        tx: &dyn ReadTxn,
        scope: &Scope,
        key_id: &str,
        accepts: Accepts,
    ) -> Result<KeyRecord, KmsError> {
        self.find_key_shared(tx, scope, key_id, accepts).map(Arc::unwrap_or_clone)
    }

    /// [`Kms::find_key`] without copying the record: the decoded record as the key
    /// service keeps it for these bytes (the hot path of every secret read and write).
    pub fn find_key_shared(
        &self,
        tx: &dyn ReadTxn,
        scope: &Scope,
        key_id: &str,
        accepts: Accepts,
    ) -> Result<Arc<KeyRecord>, KmsError> {
        let reference = parse_key_ref(key_id)?;
        if reference.is_alias() && accepts == Accepts::KeyOnly {
            return Err(KmsError::invalid_key_id(key_id));
        }
        self.find_key_referenced(tx, scope, key_id, reference)
    }

    /// The key `reference` names, `reference` being `key_id` as [`parse_key_ref`] read it:
    /// for an operation that answers some kind of reference in its own words before any
    /// key is looked up (CreateGrant's alias), without reading `key_id` twice.
    pub(crate) fn find_key_referenced(
        &self,
        tx: &dyn ReadTxn,
        scope: &Scope,
        key_id: &str,
        reference: KeyRef,
    ) -> Result<Arc<KeyRecord>, KmsError> {
        match reference {
            KeyRef::KeyId(id) => self
                .load_key(tx, scope, &id)?
                .ok_or_else(|| KmsError::key_not_found(&key_arn(scope, &id))),
            KeyRef::KeyArn { scope: named, key_id: id } => {
                if named.region != scope.region {
                    return Err(KmsError::invalid_arn_region(&named.region));
                }
                if &named != scope {
                    return Err(KmsError::key_not_found(key_id));
                }
                self.load_key(tx, scope, &id)?.ok_or_else(|| KmsError::key_not_found(key_id))
            }
            KeyRef::AliasName(alias) => self.alias_target(tx, scope, &alias),
            KeyRef::AliasArn { scope: named, alias } => {
                if named.region != scope.region {
                    return Err(KmsError::invalid_arn_region(&named.region));
                }
                if &named != scope {
                    return Err(KmsError::alias_not_found(key_id));
                }
                self.alias_target(tx, scope, &alias)
            }
        }
    }

    fn alias_target(
        &self,
        tx: &dyn ReadTxn,
        scope: &Scope,
        alias: &str,
    ) -> Result<Arc<KeyRecord>, KmsError> {
        let not_found = || KmsError::alias_not_found(&alias_arn(scope, alias));
        let record = load_alias(tx, scope, alias)?.ok_or_else(not_found)?;
        self.load_key(tx, scope, &record.target_key_id)?.ok_or_else(not_found)
    }

    /// CreateKey: a symmetric encryption key with fresh material.
    pub fn create_key(
        &self,
        tx: &mut dyn WriteTxn,
        scope: &Scope,
        request: NewKey,
        now: Millis,
    ) -> Result<KeyRecord, KmsError> {
        if request.key_spec.is_some() && request.customer_master_key_spec.is_some() {
            return Err(KmsError::validation(
                "You cannot specify KeySpec and CustomerMasterKeySpec in the same request. CustomerMasterKeySpec is deprecated.",
            ));
        }
        let spec = request.key_spec.as_deref().or(request.customer_master_key_spec.as_deref());
        let unsupported =
            |what: String| Err(KmsError::rejected(ErrorCode::KmsUnsupportedOperation, what));
        let spec = spec.unwrap_or(SYMMETRIC_DEFAULT);
        let (family, usage) = asymmetric::check_new_key(spec, request.key_usage.as_deref())?;
        if let Some(store) = &request.custom_key_store_id {
            return Err(KmsError::rejected(
                ErrorCode::KmsCustomKeyStoreNotFound,
                format!("Custom key store {store} does not exist."),
            ));
        }
        let external = match request.origin.as_deref() {
            None | Some(ORIGIN_AWS_KMS) => false,
            Some(ORIGIN_EXTERNAL) if family == asymmetric::Family::Symmetric => true,
            Some(ORIGIN_EXTERNAL) => {
                return unsupported(format!(
                    "Origin EXTERNAL is supported by Coffer for SYMMETRIC_DEFAULT keys only, not {spec}."
                ));
            }
            Some(origin) => {
                return unsupported(format!(
                    "Origin {origin} needs a custom key store, which Coffer does not have."
                ));
            }
        };
        if request.xks_key_id.is_some() {
            return unsupported(
                "XksKeyId requires an external key store, which Coffer does not have.".into(),
            );
        }
        if request.multi_region && family != asymmetric::Family::Symmetric {
            return unsupported(format!(
                "Multi-Region keys are supported by Coffer for SYMMETRIC_DEFAULT keys only, not {spec}."
            ));
        }
        if let Some(policy) = &request.policy {
            let parsed: Result<serde_json::Value, _> = serde_json::from_str(policy);
            if !matches!(parsed, Ok(serde_json::Value::Object(_))) {
                return Err(KmsError::rejected(
                    ErrorCode::MalformedPolicyDocument,
                    "The new key policy will not allow you to update the key policy in the future.",
                ));
            }
        }
        let tags = check_tags(&[], &request.tags)?;
        let key_id = if request.multi_region {
            format!("mrk-{}", uuid::Uuid::new_v4().simple())
        } else {
            uuid::Uuid::new_v4().hyphenated().to_string()
        };
        let mut key = self.new_key_record(
            tx,
            scope,
            key_id,
            request.description.unwrap_or_default(),
            KeyManager::Customer,
            tags,
            request.policy,
            now,
        )?;
        if family != asymmetric::Family::Symmetric {
            key.key_spec = spec.to_string();
            key.key_usage = usage;
            self.attach_key_pair(&mut key, family)?;
        }
        if external {
            // No material until ImportKeyMaterial.
            key.origin = ORIGIN_EXTERNAL.to_string();
            key.materials.clear();
            key.state = KeyState::PendingImport;
        }
        if request.multi_region {
            key.multi_region = Some(crate::model::MultiRegion {
                primary_region: scope.region.clone(),
                replica_regions: Vec::new(),
            });
        }
        save_key(tx, &key)?;
        Ok(key)
    }

    /// ListKeys: every key of the scope (AWS managed ones too), in key id order.
    pub fn list_keys(
        &self,
        tx: &dyn ReadTxn,
        scope: &Scope,
        marker: Option<&str>,
        limit: usize,
    ) -> Result<Page<KeyRecord>, KmsError> {
        list_records(tx, KEY_KIND, &scope_prefix(scope), marker, limit, |bytes| {
            decode("key record", bytes).map(Some)
        })
    }

    /// EnableKey: Disabled -> Enabled (a no-op when already enabled).
    pub fn enable_key(
        &self,
        tx: &mut dyn WriteTxn,
        scope: &Scope,
        key_id: &str,
    ) -> Result<KeyRecord, KmsError> {
        self.set_key_state(tx, scope, key_id, KeyState::Enabled, "EnableKey")
    }

    /// DisableKey: Enabled -> Disabled (a no-op when already disabled).
    pub fn disable_key(
        &self,
        tx: &mut dyn WriteTxn,
        scope: &Scope,
        key_id: &str,
    ) -> Result<KeyRecord, KmsError> {
        self.set_key_state(tx, scope, key_id, KeyState::Disabled, "DisableKey")
    }

    /// Moves a customer managed key that is not pending deletion to `state`.
    fn set_key_state(
        &self,
        tx: &mut dyn WriteTxn,
        scope: &Scope,
        key_id: &str,
        state: KeyState,
        operation: &str,
    ) -> Result<KeyRecord, KmsError> {
        let mut key = self.find_key(tx, scope, key_id, Accepts::KeyOnly)?;
        refuse_aws_managed(&key, operation)?;
        refuse_pending_deletion(&key)?;
        // A key without its imported material stays PendingImport until it is imported.
        if key.state == KeyState::PendingImport {
            require_enabled(&key)?;
        }
        if key.state != state {
            key.state = state;
            save_key(tx, &key)?;
        }
        Ok(key)
    }

    /// ScheduleKeyDeletion: the key becomes unusable now and is deleted after 7 to 30 days.
    pub fn schedule_key_deletion(
        &self,
        tx: &mut dyn WriteTxn,
        scope: &Scope,
        key_id: &str,
        days: Option<i32>,
        now: Millis,
    ) -> Result<KeyRecord, KmsError> {
        let days = days.unwrap_or(30);
        if !(7..=30).contains(&days) {
            let constraint =
                if days < 7 { Constraint::MinValue(7) } else { Constraint::MaxValue(30) };
            return Err(KmsError::validation(
                Violation::number(days.into(), "pendingWindowInDays", constraint).message(),
            ));
        }
        let mut key = self.find_key(tx, scope, key_id, Accepts::KeyOnly)?;
        refuse_aws_managed(&key, "ScheduleKeyDeletion")?;
        refuse_pending_deletion(&key)?;
        key.pending_window_days = Some(days);
        // A multi-Region primary waits for its replicas: its window starts after them.
        let waits_for_replicas = key.multi_region.as_ref().is_some_and(|set| {
            set.primary_region == key.scope.region && !set.replica_regions.is_empty()
        });
        if waits_for_replicas {
            key.state = KeyState::PendingReplicaDeletion;
            key.deletion_ms = None;
        } else {
            key.state = KeyState::PendingDeletion;
            key.deletion_ms = Some(now + i64::from(days) * DAY_MS);
        }
        save_key(tx, &key)?;
        Ok(key)
    }

    /// CancelKeyDeletion: PendingDeletion -> Disabled, as KMS does.
    pub fn cancel_key_deletion(
        &self,
        tx: &mut dyn WriteTxn,
        scope: &Scope,
        key_id: &str,
    ) -> Result<KeyRecord, KmsError> {
        let mut key = self.find_key(tx, scope, key_id, Accepts::KeyOnly)?;
        refuse_aws_managed(&key, "CancelKeyDeletion")?;
        if !matches!(key.state, KeyState::PendingDeletion | KeyState::PendingReplicaDeletion) {
            return Err(KmsError::rejected(
                ErrorCode::KmsInvalidState,
                format!("{} is not pending deletion.", key.arn),
            ));
        }
        key.state = if key.is_external() && key.materials.is_empty() {
            KeyState::PendingImport
        } else {
            KeyState::Disabled
        };
        key.deletion_ms = None;
        key.pending_window_days = None;
        save_key(tx, &key)?;
        Ok(key)
    }

    /// The target of CreateAlias/UpdateAlias: a customer key by id or ARN, not pending deletion.
    fn alias_target_for_write(
        &self,
        tx: &dyn ReadTxn,
        scope: &Scope,
        target: &str,
        action: &str,
    ) -> Result<KeyRecord, KmsError> {
        if parse_key_ref(target).is_ok_and(|r| r.is_alias()) {
            return Err(KmsError::validation("Aliases must refer to keys. Not aliases"));
        }
        let key = self.find_key(tx, scope, target, Accepts::KeyOnly)?;
        refuse_aws_managed(&key, action)?;
        refuse_pending_deletion(&key)?;
        Ok(key)
    }

    /// CreateAlias.
    pub fn create_alias(
        &self,
        tx: &mut dyn WriteTxn,
        scope: &Scope,
        alias: &str,
        target: &str,
        now: Millis,
    ) -> Result<(), KmsError> {
        check_alias_name(alias)?;
        let key = self.alias_target_for_write(tx, scope, target, "CreateAlias")?;
        if load_alias(tx, scope, alias)?.is_some() {
            return Err(KmsError::rejected(
                ErrorCode::KmsAlreadyExists,
                format!("An alias with the name {} already exists", alias_arn(scope, alias)),
            ));
        }
        let record = AliasRecord {
            name: alias.to_string(),
            target_key_id: key.key_id,
            created_ms: now,
            updated_ms: now,
        };
        save_alias(tx, scope, &record)
    }

    /// UpdateAlias: points an existing alias at another key.
    pub fn update_alias(
        &self,
        tx: &mut dyn WriteTxn,
        scope: &Scope,
        alias: &str,
        target: &str,
        now: Millis,
    ) -> Result<(), KmsError> {
        check_alias_name(alias)?;
        let mut record = load_alias(tx, scope, alias)?
            .ok_or_else(|| KmsError::alias_not_found(&alias_arn(scope, alias)))?;
        let key = self.alias_target_for_write(tx, scope, target, "UpdateAlias")?;
        record.target_key_id = key.key_id;
        record.updated_ms = now;
        save_alias(tx, scope, &record)
    }

    /// DeleteAlias: the key is untouched.
    pub fn delete_alias(
        &self,
        tx: &mut dyn WriteTxn,
        scope: &Scope,
        alias: &str,
    ) -> Result<(), KmsError> {
        check_alias_name(alias)?;
        if load_alias(tx, scope, alias)?.is_none() {
            return Err(KmsError::alias_not_found(&alias_arn(scope, alias)));
        }
        tx.delete_record(ALIAS_KIND, &alias_record_key(scope, alias))?;
        Ok(())
    }

    /// ListAliases: every alias of the scope, or only those of one key, in name order.
    pub fn list_aliases(
        &self,
        tx: &dyn ReadTxn,
        scope: &Scope,
        key_id: Option<&str>,
        marker: Option<&str>,
        limit: usize,
    ) -> Result<Page<AliasRecord>, KmsError> {
        let only = match key_id {
            Some(id) => Some(self.find_key(tx, scope, id, Accepts::KeyOnly)?.key_id),
            None => None,
        };
        list_records(tx, ALIAS_KIND, &scope_prefix(scope), marker, limit, |bytes| {
            let alias: AliasRecord = decode("alias record", bytes)?;
            Ok(only.as_ref().is_none_or(|id| *id == alias.target_key_id).then_some(alias))
        })
    }

    /// Encrypt under a key found by any form.
    pub fn encrypt(
        &self,
        tx: &dyn ReadTxn,
        scope: &Scope,
        key_id: &str,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Encrypted, KmsError> {
        let key = self.find_key(tx, scope, key_id, Accepts::KeyOrAlias)?;
        self.encrypt_under(&key, plaintext, context)
    }

    /// Encrypts with the newest material of `key`, which must be enabled.
    pub fn encrypt_under(
        &self,
        key: &KeyRecord,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Encrypted, KmsError> {
        require_enabled(key)?;
        asymmetric::require_symmetric(key, "Encrypt")?;
        let material = key
            .current_material()
            .ok_or_else(|| KmsError::Internal(format!("{} has no key material", key.arn)))?;
        let unwrapped = self.unwrap_material(key, material)?;
        let mut blob = ciphertext::header(&key.key_id, material.version)?;
        let aad = ciphertext::aad(&blob, &sealing_identity(key), material.version, context);
        blob.extend_from_slice(&coffer_crypto::seal(&unwrapped, plaintext, &aad));
        Ok(Encrypted { blob, key_arn: key.arn.clone(), material_id: material.id.clone() })
    }

    /// Decrypt: the blob names its key; `key_id`, when given, must name the same key.
    pub fn decrypt(
        &self,
        tx: &dyn ReadTxn,
        scope: &Scope,
        blob: &[u8],
        context: &EncryptionContext,
        key_id: Option<&str>,
    ) -> Result<Decrypted, KmsError> {
        let (header, _) = ciphertext::parse(blob)?;
        if let Some(id) = key_id {
            let named = self.find_key(tx, scope, id, Accepts::KeyOrAlias)?;
            if named.key_id != header.key_id {
                return Err(KmsError::rejected(
                    ErrorCode::KmsIncorrectKey,
                    "The key ID in the request does not identify a CMK that can perform this operation.",
                ));
            }
        }
        let key = self
            .load_key(tx, scope, &header.key_id)?
            .ok_or_else(|| KmsError::rejected(ErrorCode::AccessDenied, CIPHERTEXT_KEY_UNKNOWN))?;
        self.decrypt_under(key, blob, context)
    }

    /// [`Kms::decrypt`] with the record of the key `blob` names, read by the caller in the
    /// same transaction (Secrets Manager reads it first to authorize `kms:Decrypt` on it):
    /// the record is not read and decoded a second time. A key that is not the one the
    /// blob names cannot open it.
    pub fn decrypt_under(
        &self,
        key: Arc<KeyRecord>,
        blob: &[u8],
        context: &EncryptionContext,
    ) -> Result<Decrypted, KmsError> {
        let (header, envelope) = ciphertext::parse(blob)?;
        if header.key_id != key.key_id {
            return Err(KmsError::rejected(ErrorCode::AccessDenied, CIPHERTEXT_KEY_UNKNOWN));
        }
        require_enabled(&key)?;
        let material =
            key.material(header.material_version).ok_or_else(KmsError::invalid_ciphertext)?;
        let unwrapped = self.unwrap_material(&key, material)?;
        let plaintext = coffer_crypto::open(
            &unwrapped,
            envelope,
            &ciphertext::aad(
                &blob[..ciphertext::HEADER_LEN],
                &sealing_identity(&key),
                material.version,
                context,
            ),
        )
        .map_err(|_| KmsError::invalid_ciphertext())?;
        let material_id = material.id.clone();
        Ok(Decrypted { plaintext, key, material_id })
    }

    /// GenerateDataKey (and, dropping the plaintext, GenerateDataKeyWithoutPlaintext).
    pub fn generate_data_key(
        &self,
        tx: &dyn ReadTxn,
        scope: &Scope,
        key_id: &str,
        length: usize,
        context: &EncryptionContext,
    ) -> Result<DataKey, KmsError> {
        let key = self.find_key(tx, scope, key_id, Accepts::KeyOrAlias)?;
        require_enabled(&key)?;
        asymmetric::require_symmetric(&key, "GenerateDataKey")?;
        let plaintext = generate_random(length);
        let encrypted = self.encrypt_under(&key, plaintext.expose(), context)?;
        Ok(DataKey { plaintext, encrypted })
    }

    /// ReEncrypt: decrypts under the blob's key and encrypts under the destination key,
    /// without the plaintext leaving the service.
    #[allow(clippy::too_many_arguments)]
    pub fn re_encrypt(
        &self,
        tx: &dyn ReadTxn,
        scope: &Scope,
        blob: &[u8],
        source_context: &EncryptionContext,
        source_key_id: Option<&str>,
        destination_key_id: &str,
        destination_context: &EncryptionContext,
    ) -> Result<ReEncrypted, KmsError> {
        let destination = self.find_key(tx, scope, destination_key_id, Accepts::KeyOrAlias)?;
        let source = self.decrypt(tx, scope, blob, source_context, source_key_id)?;
        let encrypted =
            self.encrypt_under(&destination, source.plaintext.expose(), destination_context)?;
        Ok(ReEncrypted {
            source_key_arn: source.key.arn.clone(),
            source_material_id: source.material_id.clone(),
            encrypted,
        })
    }

    /// EnableKeyRotation: automatic rotation every `period_days` (default 365).
    pub fn enable_key_rotation(
        &self,
        tx: &mut dyn WriteTxn,
        scope: &Scope,
        key_id: &str,
        period_days: Option<i32>,
        now: Millis,
    ) -> Result<KeyRecord, KmsError> {
        let mut key = self.find_key(tx, scope, key_id, Accepts::KeyOnly)?;
        refuse_rotation_change(&key)?;
        require_enabled(&key)?;
        let period = period_days.unwrap_or(DEFAULT_ROTATION_DAYS);
        if !key.rotation_enabled || key.rotation_period_days != Some(period) {
            key.rotation_enabled = true;
            key.rotation_period_days = Some(period);
            key.next_rotation_ms = Some(now + i64::from(period) * DAY_MS);
            save_key(tx, &key)?;
        }
        Ok(key)
    }

    /// DisableKeyRotation.
    pub fn disable_key_rotation(
        &self,
        tx: &mut dyn WriteTxn,
        scope: &Scope,
        key_id: &str,
    ) -> Result<KeyRecord, KmsError> {
        let mut key = self.find_key(tx, scope, key_id, Accepts::KeyOnly)?;
        refuse_rotation_change(&key)?;
        require_enabled(&key)?;
        if key.rotation_enabled {
            key.rotation_enabled = false;
            key.rotation_period_days = None;
            key.next_rotation_ms = None;
            save_key(tx, &key)?;
        }
        Ok(key)
    }

    /// GetKeyRotationStatus: the key, whose rotation fields the caller reports.
    pub fn key_rotation_status(
        &self,
        tx: &dyn ReadTxn,
        scope: &Scope,
        key_id: &str,
    ) -> Result<KeyRecord, KmsError> {
        let key = self.find_key(tx, scope, key_id, Accepts::KeyOnly)?;
        // A key pending deletion answers (its status reads false until the deletion is
        // canceled, as the model documents); one pending replica deletion does not.
        if key.state == KeyState::PendingReplicaDeletion {
            require_enabled(&key)?;
        }
        refuse_rotation_of_key_pairs(&key)?;
        Ok(key)
    }

    fn rotate(
        &self,
        tx: &mut dyn WriteTxn,
        key: &mut KeyRecord,
        rotation: RotationType,
        now: Millis,
    ) -> Result<(), KmsError> {
        let version = key.materials.iter().map(|m| m.version).max().unwrap_or(0) + 1;
        let material = self.new_material(tx, &key.arn, version, now, Some(rotation))?;
        // A multi-Region primary's replicas get the same new material.
        self.share_material(tx, key, &material)?;
        key.materials.push(material);
        Ok(())
    }

    /// RotateKeyOnDemand: new material now; older material stays for decryption.
    pub fn rotate_key_on_demand(
        &self,
        tx: &mut dyn WriteTxn,
        scope: &Scope,
        key_id: &str,
        now: Millis,
    ) -> Result<KeyRecord, KmsError> {
        let mut key = self.find_key(tx, scope, key_id, Accepts::KeyOnly)?;
        refuse_rotation_change(&key)?;
        require_enabled(&key)?;
        if key.on_demand_rotations >= MAX_ON_DEMAND_ROTATIONS {
            return Err(KmsError::rejected(
                ErrorCode::LimitExceeded,
                format!(
                    "The on-demand rotations limit has been reached for the given keyId. No more \
                     on-demand rotations can be performed for this key: {}",
                    key.arn
                ),
            ));
        }
        self.rotate(tx, &mut key, RotationType::OnDemand, now)?;
        key.on_demand_rotations += 1;
        save_key(tx, &key)?;
        Ok(key)
    }

    /// TagResource: adds tags or replaces their values.
    pub fn tag_resource(
        &self,
        tx: &mut dyn WriteTxn,
        scope: &Scope,
        key_id: &str,
        tags: &[Tag],
    ) -> Result<(), KmsError> {
        let mut key = self.find_key(tx, scope, key_id, Accepts::KeyOnly)?;
        refuse_aws_managed(&key, "TagResource")?;
        refuse_pending_deletion(&key)?;
        key.tags = check_tags(&key.tags, tags)?;
        save_key(tx, &key)
    }

    /// UntagResource: removing a tag that is not there is not an error.
    pub fn untag_resource(
        &self,
        tx: &mut dyn WriteTxn,
        scope: &Scope,
        key_id: &str,
        tag_keys: &[String],
    ) -> Result<(), KmsError> {
        let mut key = self.find_key(tx, scope, key_id, Accepts::KeyOnly)?;
        refuse_aws_managed(&key, "UntagResource")?;
        refuse_pending_deletion(&key)?;
        key.tags.retain(|t| !tag_keys.contains(&t.key));
        save_key(tx, &key)
    }

    /// ListResourceTags, in the order the tags were first added.
    pub fn list_resource_tags(
        &self,
        tx: &dyn ReadTxn,
        scope: &Scope,
        key_id: &str,
        marker: Option<&str>,
        limit: usize,
    ) -> Result<Page<Tag>, KmsError> {
        let key = self.find_key(tx, scope, key_id, Accepts::KeyOnly)?;
        let start = match marker {
            Some(m) => decode_marker(m)?
                .parse::<usize>()
                .map_err(|_| KmsError::rejected(ErrorCode::KmsInvalidMarker, "Invalid marker"))?,
            None => 0,
        };
        let items: Vec<Tag> = key.tags.iter().skip(start).take(limit).cloned().collect();
        let end = start + items.len();
        let next_marker = (end < key.tags.len()).then(|| encode_marker(&end.to_string()));
        Ok(Page { items, next_marker })
    }

    /// The AWS managed key `aws/secretsmanager` of the scope, created with its alias on first use.
    pub fn secrets_manager_key(
        &self,
        tx: &mut dyn WriteTxn,
        scope: &Scope,
        now: Millis,
    ) -> Result<KeyRecord, KmsError> {
        self.secrets_manager_key_shared(tx, scope, now).map(Arc::unwrap_or_clone)
    }

    /// [`Kms::secrets_manager_key`] without copying the record once it exists.
    fn secrets_manager_key_shared(
        &self,
        tx: &mut dyn WriteTxn,
        scope: &Scope,
        now: Millis,
    ) -> Result<Arc<KeyRecord>, KmsError> {
        if let Some(alias) = load_alias(tx, scope, SECRETS_MANAGER_ALIAS)?
            && let Some(key) = self.load_key(tx, scope, &alias.target_key_id)?
        {
            return Ok(key);
        }
        let key = self.new_key_record(
            tx,
            scope,
            uuid::Uuid::new_v4().hyphenated().to_string(),
            SECRETS_MANAGER_KEY_DESCRIPTION.to_string(),
            KeyManager::Aws,
            Vec::new(),
            None,
            now,
        )?;
        save_key(tx, &key)?;
        let alias = AliasRecord {
            name: SECRETS_MANAGER_ALIAS.to_string(),
            target_key_id: key.key_id.clone(),
            created_ms: now,
            updated_ms: now,
        };
        save_alias(tx, scope, &alias)?;
        Ok(Arc::new(key))
    }

    /// The key a Secrets Manager write seals under: `None` or `""` is `aws/secretsmanager`
    /// (created on first use), anything else is resolved in every KMS form. The key must be enabled.
    pub fn key_for_secret(
        &self,
        tx: &mut dyn WriteTxn,
        scope: &Scope,
        given: Option<&str>,
        now: Millis,
    ) -> Result<Arc<KeyRecord>, KmsError> {
        let given = given.filter(|g| !g.is_empty());
        let managed = match given {
            None => true,
            Some(id) => match parse_key_ref(id)? {
                KeyRef::AliasName(alias) => alias == SECRETS_MANAGER_ALIAS,
                KeyRef::AliasArn { scope: named, alias } => {
                    &named == scope && alias == SECRETS_MANAGER_ALIAS
                }
                _ => false,
            },
        };
        let key = match given {
            Some(id) if !managed => self.find_key_shared(tx, scope, id, Accepts::KeyOrAlias)?,
            _ => self.secrets_manager_key_shared(tx, scope, now)?,
        };
        require_enabled(&key)?;
        // Secrets are sealed under symmetric keys only, as AWS refuses the others.
        asymmetric::require_symmetric(&key, "GenerateDataKey")?;
        Ok(key)
    }

    /// Carries out due work in every scope: deletes keys whose deletion date has passed
    /// (with their aliases) and rotates keys whose automatic rotation is due.
    pub fn carry_out_due(&self, tx: &mut dyn WriteTxn, now: Millis) -> Result<DueWork, KmsError> {
        let mut work = DueWork::default();
        let mut keys: Vec<KeyRecord> = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let rows = tx.records(KEY_KIND, "", after.as_deref(), 256)?;
            let done = rows.len() < 256;
            for (record_key, bytes) in rows {
                let key: KeyRecord = decode("key record", &bytes)?;
                let deletion_due = key.state == KeyState::PendingDeletion
                    && key.deletion_ms.is_some_and(|d| d <= now);
                let rotation_due = key.state == KeyState::Enabled
                    && key.rotation_enabled
                    && key.next_rotation_ms.is_some_and(|r| r <= now);
                let expiry_due = !key.materials.is_empty()
                    && key.state != KeyState::PendingDeletion
                    && key.imported.as_ref().and_then(|i| i.valid_to_ms).is_some_and(|t| t <= now);
                if deletion_due || rotation_due || expiry_due {
                    keys.push(key);
                }
                after = Some(record_key);
            }
            if done {
                break;
            }
        }
        for mut key in keys {
            if key.state == KeyState::PendingDeletion {
                self.delete_key(tx, &key, now)?;
                work.deleted.push((key.scope.clone(), key.arn.clone()));
            } else if key.imported.as_ref().and_then(|i| i.valid_to_ms).is_some_and(|t| t <= now) {
                self.drop_material(&mut key);
                save_key(tx, &key)?;
                tx.note_material_overwritten()?;
                work.expired.push((key.scope.clone(), key.arn.clone()));
            } else {
                let period = i64::from(key.rotation_period_days.unwrap_or(DEFAULT_ROTATION_DAYS));
                self.rotate(tx, &mut key, RotationType::Automatic, now)?;
                let mut next = key.next_rotation_ms.unwrap_or(now);
                // A server that was down for several periods rotates once, then schedules ahead.
                while next <= now {
                    next += period * DAY_MS;
                }
                key.next_rotation_ms = Some(next);
                save_key(tx, &key)?;
                work.rotated.push((key.scope.clone(), key.arn.clone()));
            }
        }
        Ok(work)
    }

    /// Deletes a key, its material and the aliases that point at it.
    fn delete_key(
        &self,
        tx: &mut dyn WriteTxn,
        key: &KeyRecord,
        now: Millis,
    ) -> Result<(), KmsError> {
        let prefix = scope_prefix(&key.scope);
        let aliases = tx.records(ALIAS_KIND, &prefix, None, usize::MAX)?;
        for (record_key, bytes) in aliases {
            let alias: AliasRecord = decode("alias record", &bytes)?;
            if alias.target_key_id == key.key_id {
                tx.delete_record(ALIAS_KIND, &record_key)?;
            }
        }
        crate::grants::delete_grants_of(tx, key)?;
        self.leave_set(tx, key, now)?;
        tx.delete_record(KEY_KIND, &key_record_key(&key.scope, &key.key_id))?;
        self.forget(key);
        Ok(())
    }

    /// Re-wraps every key material from `old` to `new` master key, in the caller's
    /// transaction, stamping each with the generation of `new_check` (the check value the
    /// caller records for `new` in the same transaction). Ciphertext (secret values, blobs)
    /// is untouched: only the wrapping of the materials changes. Returns how many materials
    /// were re-wrapped.
    pub fn rewrap_all(
        tx: &mut dyn WriteTxn,
        old: &MasterKey,
        new: &MasterKey,
        new_check: &[u8],
    ) -> Result<usize, KmsError> {
        let generation = MasterKey::generation_of(new_check);
        let mut rewrapped = 0;
        let mut after: Option<String> = None;
        loop {
            let rows = tx.records(KEY_KIND, "", after.as_deref(), 256)?;
            let done = rows.len() < 256;
            for (record_key, bytes) in rows {
                let mut key: KeyRecord = decode("key record", &bytes)?;
                for material in &mut key.materials {
                    let context = material_context(&key.arn, material.version);
                    let wrapped = STANDARD.decode(&material.wrapped).map_err(|_| {
                        KmsError::Internal(format!(
                            "material {} of {} is not base64",
                            material.version, key.arn
                        ))
                    })?;
                    let unwrapped = old.unwrap_key(&wrapped, &context).map_err(|e| {
                        KmsError::Internal(format!(
                            "material {} of {} does not unwrap with the current master key: {e}",
                            material.version, key.arn
                        ))
                    })?;
                    material.wrapped = STANDARD.encode(new.wrap_key(&unwrapped, &context));
                    material.generation = Some(generation.clone());
                    rewrapped += 1;
                }
                tx.put_record(KEY_KIND, &record_key, &encode(&key))?;
                after = Some(record_key);
            }
            if done {
                break;
            }
        }
        Ok(rewrapped)
    }

    /// Gives every symmetric key not pending deletion a new material version wrapped under `new`
    /// (stamped with the generation of `new_check`), in the caller's transaction, so that
    /// what is encrypted from now on is under material the old master key never wrapped.
    /// Earlier versions stay (their ciphertexts must still decrypt), and nothing is
    /// re-encrypted: a copy of the store taken before, with the old master key, still opens
    /// every ciphertext made before. Such versions are on-demand rotations that do not
    /// count toward the on-demand limit. Returns how many keys got new material.
    pub fn rekey_all(
        tx: &mut dyn WriteTxn,
        new: &MasterKey,
        new_check: &[u8],
        now: Millis,
    ) -> Result<usize, KmsError> {
        let generation = MasterKey::generation_of(new_check);
        let mut rekeyed = 0;
        let mut after: Option<String> = None;
        // The keys of a multi-Region set get the same new material (each wrapped with its
        // own ARN), so each still opens what the others seal.
        let mut shared: HashMap<(String, String), (u32, Arc<KeyMaterial>, String)> = HashMap::new();
        loop {
            let rows = tx.records(KEY_KIND, "", after.as_deref(), 256)?;
            let done = rows.len() < 256;
            for (record_key, bytes) in rows {
                let mut key: KeyRecord = decode("key record", &bytes)?;
                // Asymmetric and HMAC keys keep their one key pair or HMAC key: a new
                // material version would have no private key to seal.
                // Imported material is the customer's: no other material is made for it.
                if key.state != KeyState::PendingDeletion
                    && key.is_symmetric()
                    && !key.is_external()
                {
                    let version = key.materials.iter().map(|m| m.version).max().unwrap_or(0) + 1;
                    let fresh = || {
                        (
                            version,
                            Arc::new(KeyMaterial::generate()),
                            hex(&coffer_crypto::random_bytes(32)),
                        )
                    };
                    let (version, material, id) = match key.multi_region {
                        Some(_) => shared
                            .entry((key.scope.account.clone(), key.key_id.clone()))
                            .or_insert_with(fresh)
                            .clone(),
                        None => fresh(),
                    };
                    let wrapped = new.wrap_key(&material, &material_context(&key.arn, version));
                    key.materials.push(Material {
                        version,
                        id,
                        wrapped: STANDARD.encode(wrapped),
                        created_ms: now,
                        rotation: Some(RotationType::OnDemand),
                        sealed: None,
                        generation: Some(generation.clone()),
                    });
                    tx.put_record(KEY_KIND, &record_key, &encode(&key))?;
                    rekeyed += 1;
                }
                after = Some(record_key);
            }
            if done {
                break;
            }
        }
        Ok(rekeyed)
    }
}

#[cfg(test)]
mod tag_tests {
    use super::*;

    fn tag(key: String, value: &str) -> Tag {
        Tag { key, value: value.to_string() }
    }

    /// TagResource and CreateKey merge a request's tags into the key's by key before the
    /// 50-tag quota is checked on the result. Each tag searched every tag merged before
    /// it, so many tags cost their square before the quota refused them (review 16, left,
    /// as Secrets Manager's and IAM's merges). The merge stops once the result passes the
    /// quota (it never shrinks), so no search covers more than 51 tags. Counted, not
    /// timed.
    #[test]
    fn many_tags_are_merged_in_linear_time_and_refused() {
        const MANY: usize = 4_000;
        let existing = vec![tag("a".into(), "1"), tag("b".into(), "2")];
        TAGS_COMPARED.with(|c| c.set(0));
        let many: Vec<Tag> = (0..MANY).map(|i| tag(format!("k{i}"), "v")).collect();
        let refused = check_tags(&existing, &many).unwrap_err();
        assert_eq!(
            (refused.code(), format!("{refused:?}").contains("Too many tags")),
            (Some(ErrorCode::KmsTag), true)
        );
        let compared = TAGS_COMPARED.with(std::cell::Cell::get);
        assert!(compared <= (MAX_TAGS + 1) * MANY, "{compared} tags compared for {MANY} tags");
        // A key given again replaces its value, in place; fifty in all are kept.
        let more: Vec<Tag> =
            [tag("a".into(), "3")].into_iter().chain(many[..48].iter().cloned()).collect();
        let merged = check_tags(&existing, &more).unwrap();
        assert_eq!((merged.len(), &merged[0], &merged[2]), (50, &more[0], &many[0]));
    }
}
