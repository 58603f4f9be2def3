//! GetKeyLastUsage's records: the last successful tracked use of each KMS key, one record
//! per key and node, written in the transaction of the event that used the key.
//!
//! The answer used to be found by scanning the scope's trail newest first, so a key used
//! before the scope's newest 2,500 events (or whose event retention had dropped) was
//! answered as never used. Now `audit::Heads` collects the uses of a transaction's events
//! ([`LastUses::note`]) and stores them with the chain heads ([`LastUses::store`]): a use
//! is recorded iff its event committed, and each node writes only its own `<arn>@<node>`
//! record, so two nodes never write one row. Keys that have no record and were created
//! before tracking started ([`start_tracking`]) are still answered from the trail scan.

use coffer_audit::event::{Event, Resource};
use coffer_core::Scope;
use coffer_store::{ReadTxn, StoreError, WriteTxn};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The record kind: key `<key ARN>@<node>` (`<node>` empty on single-chain stores).
pub const KIND: &str = "kms.last_use";

/// The record (same kind) holding when this store started keeping last uses. Its key
/// cannot begin a key ARN, so a range read of one key's records never meets it.
const SINCE_KEY: &str = "~since";

const KMS_SOURCE: &str = "kms.amazonaws.com";

/// The operations KMS tracks for GetKeyLastUsage.
pub const TRACKED: &[&str] = &[
    "Decrypt",
    "DeriveSharedSecret",
    "Encrypt",
    "GenerateDataKey",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "GenerateDataKeyWithoutPlaintext",
    "GenerateMac",
    "ReEncrypt",
    "Sign",
    "Verify",
    "VerifyMac",
];

/// The members of an event's request parameters or response elements that name a key.
const KEY_MEMBERS: &[&str] = &["keyId", "sourceKeyId", "destinationKeyId"];

/// One use of a key: what GetKeyLastUsage answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastUse {
    pub operation: String,
    pub time_ms: i64,
    pub event_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// The key ARNs a successful tracked KMS operation used, appended to `out`; none for
/// any other event. Keys are named by ARN (in `resources`, or in the key members of the
/// request and response) or by bare key id, taken to be in `scope`; an alias names no key
/// here (resolving it would need a read; the event itself records the alias).
pub fn keys_used(scope: &Scope, event: &Event, out: &mut Vec<String>) {
    // The one comparison every non-KMS event pays.
    if event.event_source != KMS_SOURCE {
        return;
    }
    if event.error_code.is_some() || !TRACKED.contains(&event.event_name.as_str()) {
        return;
    }
    let mut add = |arn: String| {
        if !out.contains(&arn) {
            out.push(arn);
        }
    };
    for resource in &event.resources {
        if let Some(arn) = key_arn(scope, &resource.arn) {
            add(arn);
        }
    }
    for doc in [&event.request_parameters, &event.response_elements] {
        for member in KEY_MEMBERS {
            if let Some(arn) =
                doc.get(*member).and_then(|v| v.as_str()).and_then(|s| key_arn(scope, s))
            {
                add(arn);
            }
        }
    }
}

/// Names the keys a successful tracked KMS call used as its event's resources, as
/// CloudTrail's KMS events do, from the call's response: every tracked operation answers
/// `KeyId` (the key ARN), ReEncrypt also `SourceKeyId`. So a Decrypt whose ciphertext
/// named the key, or a call naming the key by alias, is a use of the key (and found by a
/// LookupEvents of the key ARN). Only these calls' responses are read.
pub fn add_key_resources(event: &mut Event, response: &[u8]) {
    if event.event_source != KMS_SOURCE
        || event.error_code.is_some()
        || !TRACKED.contains(&event.event_name.as_str())
    {
        return;
    }
    /// The members naming keys; serde skips the rest (ciphertexts, plaintexts) unread
    /// into values.
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Named {
        #[serde(default)]
        source_key_id: Option<String>,
        #[serde(default)]
        key_id: Option<String>,
    }
    let Ok(named) = serde_json::from_slice::<Named>(response) else { return };
    for arn in [named.source_key_id, named.key_id].into_iter().flatten() {
        // A key ARN's fifth field is its account.
        let Some(account) = arn.split(':').nth(4).filter(|_| key_arn_of(&arn)) else { continue };
        if !event.resources.iter().any(|r| r.arn == arn) {
            let account_id = Some(account.to_string());
            event.resources.push(Resource { arn, account_id, kind: KEY_TYPE.to_string() });
        }
    }
}

/// The resource type of a KMS key in an event.
const KEY_TYPE: &str = "AWS::KMS::Key";

/// Whether `s` is a key ARN.
fn key_arn_of(s: &str) -> bool {
    let scope = Scope { account: String::new(), region: String::new() };
    s.starts_with("arn:") && key_arn(&scope, s).is_some()
}

/// The key ARN `named` denotes: a key ARN itself, or a bare key id in `scope`.
fn key_arn(scope: &Scope, named: &str) -> Option<String> {
    if let Some(rest) = named.strip_prefix("arn:") {
        // arn:<partition>:kms:<region>:<account>:key/<id>
        let mut parts = rest.splitn(5, ':');
        let (_partition, service) = (parts.next()?, parts.next()?);
        let resource = parts.nth(2)?;
        return (service == "kms"
            && coffer_core::names::is_kms_key_id(resource.strip_prefix("key/")?))
        .then(|| named.to_string());
    }
    coffer_core::names::is_kms_key_id(named).then(|| scope.arn("kms", &format!("key/{named}")))
}

/// The last uses of one transaction's events: newest per key.
#[derive(Debug, Default)]
pub struct LastUses(HashMap<String, LastUse>);

impl LastUses {
    /// Notes the uses of `event`, appended to `scope`'s chain at `time_ms`.
    pub fn note(&mut self, scope: &Scope, time_ms: i64, event: &Event) {
        if event.event_source != KMS_SOURCE {
            return;
        }
        let mut keys = Vec::new();
        keys_used(scope, event, &mut keys);
        for arn in keys {
            let newer = self.0.get(&arn).is_none_or(|known| time_ms >= known.time_ms);
            if newer {
                let used = LastUse {
                    operation: event.event_name.clone(),
                    time_ms,
                    event_id: event.event_id.clone(),
                    request_id: event.request_id.clone(),
                };
                self.0.insert(arn, used);
            }
        }
    }

    /// Writes one record per key used, this node's (`node`: the chain node, if any). The
    /// record is overwritten without being read: the transaction committing last wins,
    /// and commits of one node follow its calls to within the appender's batching.
    pub fn store(self, tx: &mut dyn WriteTxn, node: Option<&str>) -> Result<(), StoreError> {
        for (arn, used) in self.0 {
            let bytes = serde_json::to_vec(&used).expect("last uses serialize");
            tx.put_record(KIND, &record_key(&arn, node), &bytes)?;
        }
        Ok(())
    }
}

fn record_key(arn: &str, node: Option<&str>) -> String {
    format!("{arn}@{}", node.unwrap_or_default())
}

/// How many nodes' records of one key are read at most.
const MAX_NODES: usize = 256;

/// What the store knows of `arn`'s last use: `Some(use)`, or `Some(None)` when it knows
/// the key was never used since tracking started, or `None` when it cannot tell (the
/// key was created before this store kept last uses, and has no record since).
pub fn last_use(
    tx: &dyn ReadTxn,
    arn: &str,
    created_ms: i64,
) -> Result<Option<Option<LastUse>>, StoreError> {
    let newest = tx
        .records(KIND, &format!("{arn}@"), None, MAX_NODES)?
        .into_iter()
        .filter_map(|(_, bytes)| serde_json::from_slice::<LastUse>(&bytes).ok())
        .max_by_key(|used| used.time_ms);
    if newest.is_some() {
        return Ok(Some(newest));
    }
    let since = tx
        .record(KIND, SINCE_KEY)?
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.parse::<i64>().ok());
    Ok(since.filter(|since| created_ms >= *since).map(|_| None))
}

/// Notes, once per store, when it started keeping last uses (`now_ms`), so that keys
/// created after that are never answered from the trail scan.
pub fn start_tracking(store: &dyn coffer_store::Store, now_ms: i64) -> Result<(), String> {
    // Every start after the first finds the note: a read, not a write transaction (on
    // PostgreSQL a serializable one beside the other nodes' starts).
    let mut noted = false;
    store
        .read(&mut |tx| {
            noted = tx.record(KIND, SINCE_KEY)?.is_some();
            Ok(())
        })
        .map_err(|e| format!("cannot read the start of KMS key last-use tracking: {e}"))?;
    if noted {
        return Ok(());
    }
    store
        .write(&mut |tx| {
            if tx.record(KIND, SINCE_KEY)?.is_none() {
                tx.put_record(KIND, SINCE_KEY, now_ms.to_string().as_bytes())?;
            }
            Ok(())
        })
        .map_err(|e| format!("cannot note the start of KMS key last-use tracking: {e}"))
}

/// Deletes every record of the key `arn` (its deletion was carried out).
pub fn forget(tx: &mut dyn WriteTxn, arn: &str) -> Result<(), StoreError> {
    let keys: Vec<String> = tx
        .records(KIND, &format!("{arn}@"), None, MAX_NODES)?
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    for key in keys {
        tx.delete_record(KIND, &key)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_store::{MemoryStore, SnapshotItem, Store};
    use serde_json::{Value, json};

    const ID: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";
    const ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    fn scope() -> Scope {
        Scope { account: "111122223333".to_string(), region: "us-east-1".to_string() }
    }

    /// Only a key's own id forms (a UUID, `mrk-` and 32 hex digits, or their ARN) name a
    /// key whose last use is kept; any other word in a key's place names none.
    #[test]
    fn only_key_ids_and_key_arns_name_a_key() {
        let mrk = "mrk-1234abcd12ab34cd56ef1234567890ab";
        assert_eq!(key_arn(&scope(), ID).as_deref(), Some(ARN));
        assert_eq!(key_arn(&scope(), ARN).as_deref(), Some(ARN));
        assert!(key_arn(&scope(), mrk).is_some());
        for other in ["foo", "alias/aws/secretsmanager", "1234abcd", "mrk-12", "key-1234"] {
            assert_eq!(key_arn(&scope(), other), None, "{other}");
            let arn = format!("arn:aws:kms:us-east-1:111122223333:key/{other}");
            assert_eq!(key_arn(&scope(), &arn), None, "{arn}");
        }
    }

    fn event(source: &str, name: &str, request: Value) -> Event {
        serde_json::from_value(json!({
            "eventVersion": "1.08", "userIdentity": {"type": "Root"},
            "eventTime": "2026-12-05T00:00:00Z", "eventSource": source, "eventName": name,
            "awsRegion": "us-east-1", "sourceIPAddress": "127.0.0.1", "userAgent": "test",
            "requestParameters": request, "responseElements": null,
            "requestID": format!("req-{name}"), "eventID": format!("ev-{name}"),
            "readOnly": true, "eventType": "AwsApiCall", "managementEvent": true,
            "recipientAccountId": "111122223333", "eventCategory": "Management"
        }))
        .unwrap()
    }

    fn used(event: &Event) -> Vec<String> {
        let mut out = Vec::new();
        keys_used(&scope(), event, &mut out);
        out
    }

    #[test]
    fn a_tracked_kms_call_uses_the_key_it_names_by_id_or_arn() {
        let kms = "kms.amazonaws.com";
        assert_eq!(used(&event(kms, "Encrypt", json!({"keyId": ID}))), [ARN]);
        assert_eq!(used(&event(kms, "Sign", json!({"keyId": ARN}))), [ARN]);
        let other = "arn:aws:kms:us-east-1:111122223333:key/mrk-0123456789abcdef0123456789abcdef";
        let both = event(kms, "ReEncrypt", json!({"sourceKeyId": ID, "destinationKeyId": other}));
        assert_eq!(used(&both), [ARN, other]);
    }

    #[test]
    fn other_events_failures_aliases_and_untracked_calls_use_no_key() {
        let kms = "kms.amazonaws.com";
        assert!(
            used(&event("secretsmanager.amazonaws.com", "Encrypt", json!({"keyId": ID})))
                .is_empty()
        );
        assert!(used(&event(kms, "DescribeKey", json!({"keyId": ID}))).is_empty());
        assert!(used(&event(kms, "Encrypt", json!({"keyId": "alias/mine"}))).is_empty());
        let alias_arn = "arn:aws:kms:us-east-1:111122223333:alias/mine";
        assert!(used(&event(kms, "Encrypt", json!({"keyId": alias_arn}))).is_empty());
        let mut failed = event(kms, "Encrypt", json!({"keyId": ID}));
        failed.error_code = Some("DisabledException".to_string());
        assert!(used(&failed).is_empty());
    }

    fn note(uses: &mut LastUses, name: &str, time_ms: i64) {
        uses.note(&scope(), time_ms, &event("kms.amazonaws.com", name, json!({"keyId": ID})));
    }

    fn answer(store: &MemoryStore, created_ms: i64) -> Option<Option<LastUse>> {
        let mut out = None;
        store
            .read(&mut |tx| {
                out = Some(last_use(tx, ARN, created_ms)?);
                Ok(())
            })
            .unwrap();
        out.unwrap()
    }

    fn store_uses(store: &MemoryStore, node: Option<&str>, uses: &[(&str, i64)]) {
        let uses = uses.to_vec();
        let node = node.map(str::to_string);
        store
            .write(&mut |tx| {
                let mut last = LastUses::default();
                for (name, at) in &uses {
                    note(&mut last, name, *at);
                }
                last.store(tx, node.as_deref())
            })
            .unwrap();
    }

    #[test]
    fn a_transaction_writes_one_record_per_key_and_node_with_its_newest_use() {
        let store = MemoryStore::new();
        store_uses(&store, None, &[("Encrypt", 10), ("Decrypt", 30), ("Sign", 20)]);
        let found = answer(&store, 0).unwrap().unwrap();
        assert_eq!((found.operation.as_str(), found.time_ms), ("Decrypt", 30));
        assert_eq!(found.event_id, "ev-Decrypt");
        assert_eq!(found.request_id.as_deref(), Some("req-Decrypt"));
        // Each node its own record; the newest of them answers.
        store_uses(&store, Some("b"), &[("GenerateMac", 40)]);
        store_uses(&store, Some("a"), &[("Verify", 35)]);
        let mut keys = Vec::new();
        store
            .read(&mut |tx| {
                keys = tx.records(KIND, "", None, 10)?.into_iter().map(|(k, _)| k).collect();
                Ok(())
            })
            .unwrap();
        assert_eq!(keys, [format!("{ARN}@"), format!("{ARN}@a"), format!("{ARN}@b")]);
        assert_eq!(answer(&store, 0).unwrap().unwrap().operation, "GenerateMac");
    }

    #[test]
    fn a_use_in_a_rolled_back_transaction_records_nothing() {
        let store = MemoryStore::new();
        let result = store.write(&mut |tx| {
            let mut last = LastUses::default();
            note(&mut last, "Encrypt", 10);
            last.store(tx, None)?;
            Err(StoreError::Aborted)
        });
        assert!(result.is_err());
        assert_eq!(answer(&store, 0), None);
    }

    #[test]
    fn without_a_record_only_keys_created_since_tracking_started_are_known_unused() {
        let store = MemoryStore::new();
        assert_eq!(answer(&store, 100), None, "no start noted: scan the trail");
        start_tracking(&store, 50).unwrap();
        start_tracking(&store, 70).unwrap(); // a later start keeps the first
        assert_eq!(answer(&store, 49), None, "created before: scan the trail");
        assert_eq!(answer(&store, 50), Some(None));
        assert_eq!(answer(&store, 60), Some(None));
    }

    #[test]
    fn the_records_go_with_the_key_and_travel_in_a_backup() {
        let store = MemoryStore::new();
        start_tracking(&store, 0).unwrap();
        store_uses(&store, Some("a"), &[("Encrypt", 10)]);
        store_uses(&store, Some("b"), &[("Decrypt", 20)]);
        let mut items = Vec::new();
        store
            .export(&mut |item| {
                items.push(item);
                Ok(())
            })
            .unwrap();
        let copied = MemoryStore::new();
        copied.import(&items).unwrap();
        assert_eq!(answer(&copied, 0).unwrap().unwrap().operation, "Decrypt");
        assert!(
            items.iter().any(|i| matches!(i, SnapshotItem::Record { kind, .. } if kind == KIND))
        );
        store.write(&mut |tx| forget(tx, ARN)).unwrap();
        assert_eq!(answer(&store, 0), Some(None));
    }
}
