//! A memo of the KMS decisions Secrets Manager makes for a caller on a key (every
//! GetSecretValue decides `kms:Decrypt` on the key that sealed its version, every write
//! `kms:GenerateDataKey`), and of parsed key policies.
//!
//! A remembered decision is an Allow reached by the policies alone (never by a grant,
//! which is a record of its own), kept only when every policy that took part (the caller's
//! identity policies, its session policy, the key policy) reads no condition key but
//! those [`is_stable_key`] names: each of them is fixed by the caller's record, the key's
//! record or the call's region. The memo is keyed by those three:
//! - the caller as [`coffer_iam::Iam::lookup`] hands it out, an immutable `Arc` built
//!   anew whenever the IAM records change (a policy, a tag, a session);
//! - the key record as the key service decoded it from its stored bytes, an immutable
//!   `Arc` replaced whenever the bytes change (a disabled key, a changed key policy or
//!   tags), so the memo follows exactly the invalidation of the store's record cache
//!   (at once on SQLite and in memory; within PostgreSQL's cache bound across nodes);
//! - the action and the region the call was signed for (`aws:RequestedRegion`).
//!
//! Each entry holds a `Weak` of both, so an address it compares can never be reused by
//! another caller or key record while the entry lives (a `Weak` keeps the allocation,
//! not its contents). It keeps neither alive: callers are built anew whenever the IAM
//! generation moves (and a session's was, before the thirteenth session, for every call),
//! so many entries are never asked again, and holding the `Arc`s kept 4,096 callers'
//! parsed policies and key records (a key policy may be 32 KiB) in memory (review 12,
//! finding 03). A session's caller now comes from the IAM lookup cache, the same `Arc`
//! from call to call, so its decisions are remembered as a user's are. Authentication (signature, session expiry)
//! and the key's state (checked by the key service before every use) are not decisions
//! and are never skipped.
use coffer_auth::policy::{Policy, PolicyKind};
use coffer_iam::Caller;
use coffer_kms::KeyRecord;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, PoisonError, RwLock, Weak};

/// Past this many remembered decisions the memo starts over.
const MAX_ENTRIES: usize = 4096;
/// Past this many parsed key policies their memo starts over (a key policy may be 32 KiB
/// of text: at most 16 MiB of texts kept).
const MAX_POLICIES: usize = 512;

/// Whether a (lower-case) condition key's value is fixed by the caller, the key record
/// and the call's region, as [`crate::auth`] builds a Secrets Manager call's KMS context:
/// the principal's keys and tags, `aws:RequestedRegion`, `kms:CallerAccount`,
/// `kms:ViaService` (the key's region), `kms:EncryptionAlgorithm` (always
/// `SYMMETRIC_DEFAULT` there), and the key's tags, spec and usage. Everything else
/// (time, source address, transport, encryption context, aliases, request members)
/// may differ between two calls and makes a decision unmemoizable.
pub(crate) fn is_stable_key(key: &str) -> bool {
    matches!(
        key,
        "aws:principalarn"
            | "aws:principaltype"
            | "aws:username"
            | "aws:principalaccount"
            | "aws:userid"
            | "aws:requestedregion"
            | "kms:calleraccount"
            | "kms:viaservice"
            | "kms:encryptionalgorithm"
            | "kms:keyspec"
            | "kms:keyusage"
    ) || key.starts_with("aws:principaltag/")
        || key.starts_with("aws:resourcetag/")
}

/// Whether a decision made with these policies may be remembered (see the module
/// documentation): each of them reads stable condition keys only.
pub(crate) fn may_remember(caller: &Caller, key_policy: Option<&Policy>) -> bool {
    crate::auth::policies_read_only(caller, key_policy, is_stable_key)
}

struct Entry {
    /// Weak: only the allocation is kept, so its address stays this caller's (see the
    /// module documentation).
    caller: Weak<Caller>,
    key: Weak<KeyRecord>,
    action: String,
    region: String,
}

type Entries = HashMap<(usize, usize), Vec<Entry>>;

fn entries() -> &'static RwLock<Entries> {
    static ENTRIES: OnceLock<RwLock<Entries>> = OnceLock::new();
    ENTRIES.get_or_init(Default::default)
}

fn slot(caller: &Arc<Caller>, key: &Arc<KeyRecord>) -> (usize, usize) {
    (Arc::as_ptr(caller) as usize, Arc::as_ptr(key) as usize)
}

/// Whether `action` by `caller` on `key` in `region` was allowed before, by policies that
/// read nothing else.
pub(crate) fn allowed(
    caller: &Arc<Caller>,
    key: &Arc<KeyRecord>,
    action: &str,
    region: &str,
) -> bool {
    let entries = entries().read().unwrap_or_else(PoisonError::into_inner);
    entries.get(&slot(caller, key)).is_some_and(|found| {
        found.iter().any(|e| {
            std::ptr::eq(e.caller.as_ptr(), Arc::as_ptr(caller))
                && std::ptr::eq(e.key.as_ptr(), Arc::as_ptr(key))
                && e.action == action
                && e.region == region
        })
    })
}

/// Remembers that `action` by `caller` on `key` in `region` was allowed by policies that
/// [`may_remember`] accepted.
pub(crate) fn remember(caller: &Arc<Caller>, key: &Arc<KeyRecord>, action: &str, region: &str) {
    let mut entries = entries().write().unwrap_or_else(PoisonError::into_inner);
    if entries.len() >= MAX_ENTRIES {
        entries.clear();
    }
    let found = entries.entry(slot(caller, key)).or_default();
    if found.len() >= 16 {
        found.clear();
    }
    found.push(Entry {
        caller: Arc::downgrade(caller),
        key: Arc::downgrade(key),
        action: action.to_string(),
        region: region.to_string(),
    });
}

/// A stored key policy parsed once per text (a key policy is parsed for every decision on
/// a customer managed key otherwise). `None` for a text that does not parse, which the
/// caller turns into a policy that denies everything.
pub(crate) fn key_policy(text: &str) -> Option<Arc<Policy>> {
    type Parsed = HashMap<String, Option<Arc<Policy>>>;
    static PARSED: OnceLock<RwLock<Parsed>> = OnceLock::new();
    let parsed = PARSED.get_or_init(Default::default);
    if let Some(found) = parsed.read().unwrap_or_else(PoisonError::into_inner).get(text) {
        return found.clone();
    }
    let policy = Policy::parse(text, PolicyKind::Resource).ok().map(Arc::new);
    let mut map = parsed.write().unwrap_or_else(PoisonError::into_inner);
    if map.len() >= MAX_POLICIES {
        map.clear();
    }
    map.insert(text.to_string(), policy.clone());
    policy
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_auth::Principal;

    fn caller(policy: &str) -> Arc<Caller> {
        let principal = Principal::user("111122223333", "app", "AIDAEXAMPLE");
        Arc::new(Caller::new(principal, vec![Policy::parse(policy, PolicyKind::Identity).unwrap()]))
    }

    const ADMIN: &str =
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#;

    #[test]
    fn a_policy_on_a_per_request_key_is_never_remembered() {
        let by_address = caller(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"127.0.0.1/32"}}}}"#,
        );
        assert!(!may_remember(&by_address, None));
        let by_context = caller(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringEquals":{"kms:EncryptionContext:SecretARN":"x"}}}}"#,
        );
        assert!(!may_remember(&by_context, None));
        let admin = caller(ADMIN);
        assert!(may_remember(&admin, None));
        let timed = Policy::parse(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":"*","Action":"*","Resource":"*","Condition":{"DateLessThan":{"aws:CurrentTime":"2100-01-01T00:00:00Z"}}}}"#,
            PolicyKind::Resource,
        )
        .unwrap();
        assert!(!may_remember(&admin, Some(&timed)));
        let mut session = Caller::clone(&admin);
        session.session_policies = Some(vec![timed]);
        assert!(!may_remember(&session, None));
    }

    /// An enabled customer managed key record `key_id`, as the key cache shares it.
    fn key_record(key_id: &str) -> Arc<KeyRecord> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "key_id": key_id, "scope": {"account": "111122223333", "region": "us-east-1"},
                "arn": format!("arn:aws:kms:us-east-1:111122223333:key/{key_id}"), "description": "",
                "manager": "CUSTOMER", "state": "Enabled", "created_ms": 0, "deletion_ms": null,
                "pending_window_days": null, "rotation_enabled": false,
                "rotation_period_days": null, "next_rotation_ms": null, "on_demand_rotations": 0,
                "materials": [], "tags": [], "policy": null
            }))
            .unwrap(),
        )
    }

    #[test]
    fn a_remembered_decision_holds_only_for_the_same_caller_key_action_and_region() {
        let me = caller(ADMIN);
        let key = key_record("k");
        remember(&me, &key, "kms:Decrypt", "us-east-1");
        assert!(allowed(&me, &key, "kms:Decrypt", "us-east-1"));
        assert!(!allowed(&me, &key, "kms:GenerateDataKey", "us-east-1"));
        assert!(!allowed(&me, &key, "kms:Decrypt", "eu-west-1"));
        // The same record decoded again (its bytes changed: a new `Arc`) is another key.
        let changed = Arc::new(KeyRecord::clone(&key));
        assert!(!allowed(&me, &changed, "kms:Decrypt", "us-east-1"));
        // The same principal looked up again (its IAM records changed) is another caller.
        let again = Arc::new(Caller::clone(&me));
        assert!(!allowed(&again, &key, "kms:Decrypt", "us-east-1"));
    }

    /// A session's caller is built anew for every call (and a key record for every change of
    /// its bytes), so most remembered decisions are never asked again: an entry must not
    /// keep the caller's policies or the key record (a 32 KiB key policy) alive, or 4,096
    /// of them stay in memory, as much as a role's policies times 4,096 (review 12,
    /// finding 03). Only the decision's own address is kept.
    #[test]
    fn a_remembered_decision_keeps_neither_the_caller_nor_the_key_record_alive() {
        let me = caller(ADMIN);
        let key = key_record("k2");
        remember(&me, &key, "kms:Decrypt", "us-east-1");
        assert!(allowed(&me, &key, "kms:Decrypt", "us-east-1"));
        assert_eq!(Arc::strong_count(&me), 1, "the memo keeps the caller alive");
        assert_eq!(Arc::strong_count(&key), 1, "the memo keeps the key record alive");
        // Once dropped, no caller built later can take its place in the memo.
        drop(me);
        for _ in 0..64 {
            let other = caller(ADMIN);
            assert!(!allowed(&other, &key, "kms:Decrypt", "us-east-1"));
        }
    }
}
