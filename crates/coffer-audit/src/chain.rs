//! The hash chain that makes the trail tamper-evident, and its verifier.
//!
//! Events are chained per account and region. Each stored [`Record`] carries its
//! sequence number (1, 2, ...), its time, the previous record's hash and its own hash
//! over a domain tag, the sequence number, the time, the previous hash and the
//! canonical JSON of the event (keys sorted at every depth). A [`Head`] per chain
//! holds the newest sequence number and hash, so that removing the newest events is
//! seen too.
//!
//! Two formats share one chain. Version 1 records (written before chains were keyed)
//! carry a plain SHA-256, which anyone with the database can recompute: dropping the
//! newest events and rewriting the head went unseen. Version 2 records (`"v":2`) carry
//! an HMAC-SHA256 under the [`ChainKey`], a random key wrapped by the master key, and
//! the head carries an HMAC too (binding the chain id, the newest sequence number and
//! hash). Without the key, no event can be added, changed or dropped and no head
//! rewritten without `coffer audit verify` seeing it. A chain switches once: the first
//! keyed event links to the last unkeyed one's hash, and an unkeyed event after a keyed
//! one is a downgrade, reported as such. Events before the switch still verify as the
//! unkeyed format, protected by the keyed events and the keyed head after them.
//!
//! Records are stored under keys that sort newest first (`<account>/<region>/<u64::MAX -
//! seq>`), because LookupEvents answers newest first and the store lists keys in
//! ascending order. [`Verifier`] therefore walks a chain newest first, in constant
//! memory, and reports the oldest problem it met: the first event, in time order, that
//! was changed, removed or reordered.

use crate::event::Event;
use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::{digest, hmac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// The store record kind of events.
pub const EVENT_KIND: &str = "audit.event";
/// The store record kind of chain heads.
pub const HEAD_KIND: &str = "audit.head";
/// The previous hash of the first event of a chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const DOMAIN: &str = "coffer-audit-chain-v1";
/// The domain tag of keyed (version 2) records.
const KEYED_DOMAIN: &str = "coffer-audit-chain-v2";
/// The domain tag of a keyed head's MAC.
const HEAD_DOMAIN: &str = "coffer-audit-head-v2";
/// The format version of keyed records.
pub const KEYED: u8 = 2;

/// The key that authenticates keyed records and heads (HMAC-SHA256). It is a random key
/// wrapped by the master key in the store; the server holds it, and `coffer audit
/// verify` unwraps it with the master key.
#[derive(Clone)]
pub struct ChainKey(pub(crate) hmac::Key);

impl ChainKey {
    /// A chain key from its 32 random bytes.
    pub fn new(bytes: &[u8]) -> ChainKey {
        ChainKey(hmac::Key::new(hmac::HMAC_SHA256, bytes))
    }
}

impl fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChainKey(***)")
    }
}

pub(crate) fn hex_into(bytes: &[u8], hex: &mut String) {
    for byte in bytes {
        hex.push(char::from_digit(u32::from(byte >> 4), 16).expect("a nibble"));
        hex.push(char::from_digit(u32::from(byte & 0xf), 16).expect("a nibble"));
    }
}

/// Whether `hex` is the lowercase hex of `expected`, compared in constant time.
pub(crate) fn hex_matches(hex: &str, expected: &str) -> bool {
    verify_slices_are_equal(hex.as_bytes(), expected.as_bytes()).is_ok()
}

fn one() -> u8 {
    1
}

fn is_one(v: &u8) -> bool {
    *v == 1
}

/// The key prefix of one chain's events, and the key of its head.
pub fn chain_id(account: &str, region: &str) -> String {
    format!("{account}/{region}")
}

/// What separates a scope from a node in a node's chain id (`<account>/<region>@<node>`).
/// It sorts after `/`, so the events of a scope's single-node chain
/// (`<account>/<region>/...`) keep their own contiguous key range, and each node's chain
/// has one too.
pub const NODE_SEPARATOR: char = '@';

/// The chain a node appends to in one scope: the scope's own chain
/// (`<account>/<region>`, single-node stores and every event written before chains were
/// per node) when `node` is `None`, else `<account>/<region>@<node>`. With one chain per
/// node, nodes never write the same head row, so they never conflict over the trail.
pub fn node_chain_id(account: &str, region: &str, node: Option<&str>) -> String {
    match node {
        None => chain_id(account, region),
        Some(node) => format!("{account}/{region}{NODE_SEPARATOR}{node}"),
    }
}

/// A node name usable in a chain id and a store key: ASCII letters, digits, `.`, `-`,
/// `_` and `:` kept, anything else (a `/` or the separator above) replaced by `-`.
pub fn node_tag(name: &str) -> String {
    let tag: String = name
        .chars()
        .take(64)
        .map(|c| if c.is_ascii_alphanumeric() || ".-_:".contains(c) { c } else { '-' })
        .collect();
    if tag.is_empty() { "node".to_string() } else { tag }
}

/// Whether `chain` is a chain of the scope `account`/`region`: its own or a node's.
pub fn is_chain_of(chain: &str, account: &str, region: &str) -> bool {
    let base = chain_id(account, region);
    chain == base
        || chain.strip_prefix(base.as_str()).is_some_and(|rest| {
            rest.strip_prefix(NODE_SEPARATOR).is_some_and(|node| !node.is_empty())
        })
}

/// The key prefix under which the events of chain `chain` are stored.
pub fn chain_event_prefix(chain: &str) -> String {
    format!("{chain}/")
}

/// The key of event `seq` of chain `chain`: newest events sort first.
pub fn chain_event_key(chain: &str, seq: u64) -> String {
    format!("{chain}/{:020}", u64::MAX - seq)
}

/// The key prefix under which one chain's events are stored.
pub fn event_prefix(account: &str, region: &str) -> String {
    format!("{account}/{region}/")
}

/// The key of event `seq` of a chain: newest events sort first.
pub fn event_key(account: &str, region: &str, seq: u64) -> String {
    format!("{account}/{region}/{:020}", u64::MAX - seq)
}

/// The sequence number a key encodes, if it is an event key.
pub fn seq_of_key(key: &str) -> Option<u64> {
    let digits = key.rsplit('/').next()?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok().map(|inverted| u64::MAX - inverted)
}

/// The newest record of a chain: what the next event links to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub seq: u64,
    pub hash: String,
    /// HMAC-SHA256 (hex) under the [`ChainKey`] of the chain id, `seq` and `hash`:
    /// absent on heads written before chains were keyed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

impl Head {
    /// The MAC of a head of `chain` at `seq` and `hash`.
    fn compute_mac(key: &ChainKey, chain: &str, seq: u64, hash: &str) -> String {
        let mut ctx = hmac::Context::with_key(&key.0);
        ctx.update(format!("{HEAD_DOMAIN}\n{chain}\n{seq}\n{hash}").as_bytes());
        let mut hex = String::with_capacity(64);
        hex_into(ctx.sign().as_ref(), &mut hex);
        hex
    }

    /// This head with its MAC for `chain` under `key`, as it is stored.
    pub fn sealed(mut self, chain: &str, key: &ChainKey) -> Head {
        self.mac = Some(Head::compute_mac(key, chain, self.seq, &self.hash));
        self
    }

    /// Whether this head carries the MAC of `chain` under `key`.
    pub fn mac_is_valid(&self, chain: &str, key: &ChainKey) -> bool {
        self.mac.as_deref().is_some_and(|mac| {
            hex_matches(mac, &Head::compute_mac(key, chain, self.seq, &self.hash))
        })
    }
}

/// One stored event with its place in the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// The format: 1 (unkeyed SHA-256, not written out) or [`KEYED`].
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub v: u8,
    pub seq: u64,
    pub time_ms: i64,
    pub prev_hash: String,
    pub hash: String,
    /// The event as stored; kept as JSON so that verification hashes exactly what is
    /// stored, fields unknown to this version included.
    pub event: Value,
}

/// JSON with object keys sorted at every depth and no insignificant whitespace: the
/// form that is hashed, independent of how a serializer orders keys.
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::new();
    write_canonical(value, &mut out);
    String::from_utf8(out).expect("JSON is UTF-8")
}

/// Writes [`canonical_json`] of `value` into `out`. Strings and scalars are written
/// by serde_json's compact serializer, so escaping is exactly JSON's.
fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(out, key);
                out.push(b':');
                write_canonical(item, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar).expect("scalars serialize"),
    }
}

/// The unkeyed (version 1) hash of a record with these contents, as lowercase hex.
pub fn hash_record(seq: u64, time_ms: i64, prev_hash: &str, event: &Value) -> String {
    let mut canonical = Vec::with_capacity(2048);
    write_canonical(event, &mut canonical);
    hash_canonical(None, seq, time_ms, prev_hash, &canonical)
}

/// The keyed (version 2) hash of a record with these contents, as lowercase hex.
pub fn mac_record(
    key: &ChainKey,
    seq: u64,
    time_ms: i64,
    prev_hash: &str,
    event: &Value,
) -> String {
    let mut canonical = Vec::with_capacity(2048);
    write_canonical(event, &mut canonical);
    hash_canonical(Some(key), seq, time_ms, prev_hash, &canonical)
}

/// The hash of an event already in canonical JSON: HMAC-SHA256 under `key` (version 2)
/// or, without a key, SHA-256 (version 1). Both cost about one pass of SHA-256 over the
/// event; the HMAC's key schedule is computed once, when the [`ChainKey`] is made.
fn hash_canonical(
    key: Option<&ChainKey>,
    seq: u64,
    time_ms: i64,
    prev_hash: &str,
    canonical: &[u8],
) -> String {
    let mut hex = String::with_capacity(64);
    match key {
        Some(key) => {
            let mut ctx = hmac::Context::with_key(&key.0);
            ctx.update(format!("{KEYED_DOMAIN}\n{seq}\n{time_ms}\n{prev_hash}\n").as_bytes());
            ctx.update(canonical);
            hex_into(ctx.sign().as_ref(), &mut hex);
        }
        None => {
            let mut ctx = digest::Context::new(&digest::SHA256);
            ctx.update(format!("{DOMAIN}\n{seq}\n{time_ms}\n{prev_hash}\n").as_bytes());
            ctx.update(canonical);
            hex_into(ctx.finish().as_ref(), &mut hex);
        }
    }
    hex
}

/// The members of one JSON object as [`write_event_canonical`] writes them: the caller
/// names them in sorted order.
struct Members<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Members<'a> {
    fn open(out: &'a mut Vec<u8>) -> Members<'a> {
        out.push(b'{');
        Members { out, first: true }
    }

    fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        write_string(self.out, key);
        self.out.push(b':');
        self.out
    }

    fn string(&mut self, key: &str, value: &str) {
        let out = self.key(key);
        write_string(out, value);
    }

    fn optional(&mut self, key: &str, value: &Option<String>) {
        if let Some(value) = value {
            self.string(key, value);
        }
    }

    fn boolean(&mut self, key: &str, value: bool) {
        let out = self.key(key);
        out.extend_from_slice(if value { b"true" } else { b"false" });
    }

    fn value(&mut self, key: &str, value: &Value) {
        let out = self.key(key);
        write_canonical(value, out);
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("strings serialize");
}

/// Writes [`canonical_json`] of `event`'s JSON form without building that form: the
/// fields are written by name, in sorted order, as its `Serialize` names them (with the
/// same fields left out when empty). A test holds the two to the same bytes; a field
/// added to [`Event`] must be added here too.
fn write_event_canonical(event: &Event, out: &mut Vec<u8>) {
    let mut m = Members::open(out);
    m.string("awsRegion", &event.aws_region);
    m.optional("errorCode", &event.error_code);
    m.optional("errorMessage", &event.error_message);
    m.string("eventCategory", &event.event_category);
    m.string("eventID", &event.event_id);
    m.string("eventName", &event.event_name);
    m.string("eventSource", &event.event_source);
    m.string("eventTime", &event.event_time);
    m.string("eventType", &event.event_type);
    m.string("eventVersion", &event.event_version);
    m.boolean("managementEvent", event.management_event);
    m.boolean("readOnly", event.read_only);
    m.string("recipientAccountId", &event.recipient_account_id);
    m.optional("requestID", &event.request_id);
    m.value("requestParameters", &event.request_parameters);
    if !event.resources.is_empty() {
        let out = m.key("resources");
        out.push(b'[');
        for (i, resource) in event.resources.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let mut r = Members::open(out);
            r.string("ARN", &resource.arn);
            r.optional("accountId", &resource.account_id);
            r.string("type", &resource.kind);
            r.close();
        }
        out.push(b']');
    }
    m.value("responseElements", &event.response_elements);
    m.optional("sessionCredentialFromConsole", &event.session_credential_from_console);
    m.string("sourceIPAddress", &event.source_ip_address);
    m.string("userAgent", &event.user_agent);
    let who = &event.user_identity;
    let mut u = Members::open(m.key("userIdentity"));
    u.optional("accessKeyId", &who.access_key_id);
    u.optional("accountId", &who.account_id);
    u.optional("arn", &who.arn);
    u.optional("invokedBy", &who.invoked_by);
    u.optional("principalId", &who.principal_id);
    if let Some(context) = &who.session_context {
        u.value("sessionContext", context);
    }
    u.string("type", &who.kind);
    u.optional("userName", &who.user_name);
    u.close();
    m.close();
}

/// The JSON form of a record whose event is already in canonical JSON: the bytes of
/// [`Record::to_bytes`] (the same fields in the same order, the event in canonical JSON,
/// which is also how serde_json writes a `Value`).
fn json_bytes(
    v: u8,
    seq: u64,
    time_ms: i64,
    prev_hash: &str,
    hash: &str,
    canonical: &[u8],
) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(canonical.len() + 200);
    let version = if v == 1 { "{" } else { r#"{"v":2,"# };
    bytes.extend_from_slice(
        format!(
            r#"{version}"seq":{seq},"timeMs":{time_ms},"prevHash":"{prev_hash}","hash":"{hash}","event":"#
        )
        .as_bytes(),
    );
    bytes.extend_from_slice(canonical);
    bytes.push(b'}');
    bytes
}

/// Seals `event` as the record following `prev` (or as the first of its chain), straight
/// to its stored bytes and the chain's new head: the bytes of [`Record::to_stored_bytes`]
/// of [`Record::seal`] (the compact form of [`crate::stored`]), at a fraction of the cost,
/// since the event is serialized once instead of three times. Every call's event goes
/// through here.
/// With `key`, the record is keyed (version 2); the head returned carries no MAC yet:
/// the caller seals it ([`Head::sealed`]) once per transaction, when it stores it.
pub fn seal_to_bytes(
    prev: Option<&Head>,
    time_ms: i64,
    event: &Event,
    key: Option<&ChainKey>,
) -> (Vec<u8>, Head) {
    seal_to_bytes_as(StoredForm::Compact, prev, time_ms, event, key)
}

/// The form in which a store keeps its records. Every reader reads both
/// ([`Record::from_bytes`]), so a chain may mix them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredForm {
    /// [`crate::stored`]: about a third of the JSON form's bytes, for stores on disk.
    Compact,
    /// The JSON form ([`Record::to_bytes`]): for the in-memory `--dev` store, where
    /// compressing each event (~3.5 µs) would buy nothing but memory it soon drops
    /// (its trail keeps a bounded number of events).
    Json,
}

/// [`seal_to_bytes`] in the form `form`: the same record, chain and head either way.
pub fn seal_to_bytes_as(
    form: StoredForm,
    prev: Option<&Head>,
    time_ms: i64,
    event: &Event,
    key: Option<&ChainKey>,
) -> (Vec<u8>, Head) {
    seal_canonical_as(form, prev, time_ms, &canonical_event(event), key)
}

/// An event's canonical JSON, the bytes its record's hash covers: written before the
/// chain's head is known (a store's lock need not be held for it).
pub fn canonical_event(event: &Event) -> Vec<u8> {
    let mut canonical = Vec::with_capacity(1536);
    write_event_canonical(event, &mut canonical);
    canonical
}

/// [`seal_to_bytes_as`] of an event already written as [`canonical_event`].
pub fn seal_canonical_as(
    form: StoredForm,
    prev: Option<&Head>,
    time_ms: i64,
    canonical: &[u8],
    key: Option<&ChainKey>,
) -> (Vec<u8>, Head) {
    let (seq, prev_hash) = match prev {
        Some(h) => (h.seq + 1, h.hash.as_str()),
        None => (1, GENESIS),
    };
    let hash = hash_canonical(key, seq, time_ms, prev_hash, canonical);
    let v = if key.is_some() { KEYED } else { 1 };
    let compact = match form {
        StoredForm::Compact => crate::stored::encode(v, seq, time_ms, prev_hash, &hash, canonical),
        StoredForm::Json => None,
    };
    let bytes = compact.unwrap_or_else(|| json_bytes(v, seq, time_ms, prev_hash, &hash, canonical));
    (bytes, Head { seq, hash, mac: None })
}

/// An event's canonical JSON and, for the compact form, its zstd frame: the part of its
/// record that does not depend on its place in the chain. Made by the call before the
/// write that appends the event, so that SQLite's one writer thread, which runs every
/// write in turn, only hashes it into the chain ([`seal_prepared`]).
#[derive(Debug)]
pub struct Prepared {
    canonical: Vec<u8>,
    frame: Option<Vec<u8>>,
}

impl Prepared {
    /// `event` prepared for a store that keeps records in `form`.
    pub fn new(form: StoredForm, event: &Event) -> Prepared {
        let canonical = canonical_event(event);
        let frame = match form {
            StoredForm::Compact => crate::stored::frame(&canonical),
            StoredForm::Json => None,
        };
        Prepared { canonical, frame }
    }
}

/// [`seal_canonical_as`] of a [`Prepared`] event: the same record and head, without
/// compressing the event again when it was prepared for the compact form.
pub fn seal_prepared(
    form: StoredForm,
    prev: Option<&Head>,
    time_ms: i64,
    prepared: &Prepared,
    key: Option<&ChainKey>,
) -> (Vec<u8>, Head) {
    let Some(frame) = prepared.frame.as_deref().filter(|_| form == StoredForm::Compact) else {
        return seal_canonical_as(form, prev, time_ms, &prepared.canonical, key);
    };
    let (seq, prev_hash) = match prev {
        Some(h) => (h.seq + 1, h.hash.as_str()),
        None => (1, GENESIS),
    };
    let hash = hash_canonical(key, seq, time_ms, prev_hash, &prepared.canonical);
    let v = if key.is_some() { KEYED } else { 1 };
    let bytes = crate::stored::encode_framed(v, seq, time_ms, prev_hash, &hash, frame)
        .unwrap_or_else(|| json_bytes(v, seq, time_ms, prev_hash, &hash, &prepared.canonical));
    (bytes, Head { seq, hash, mac: None })
}

impl Record {
    /// Seals `event` as the record following `prev` (or as the first of its chain), keyed
    /// when `key` is given.
    pub fn seal(
        prev: Option<&Head>,
        time_ms: i64,
        event: &Event,
        key: Option<&ChainKey>,
    ) -> Record {
        let event = serde_json::to_value(event).expect("events serialize");
        let (seq, prev_hash) = match prev {
            Some(h) => (h.seq + 1, h.hash.clone()),
            None => (1, GENESIS.to_string()),
        };
        let (v, hash) = match key {
            Some(key) => (KEYED, mac_record(key, seq, time_ms, &prev_hash, &event)),
            None => (1, hash_record(seq, time_ms, &prev_hash, &event)),
        };
        Record { v, seq, time_ms, prev_hash, hash, event }
    }

    /// The head a chain has once this record is its newest (without its MAC).
    pub fn head(&self) -> Head {
        Head { seq: self.seq, hash: self.hash.clone(), mac: None }
    }

    /// The JSON form: what archives hold, one record a line, and what the store held
    /// before the compact form.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("records serialize")
    }

    /// The compact form the store holds ([`crate::stored`]), or the JSON form when a hash
    /// is not lowercase hex SHA-256.
    pub fn to_stored_bytes(&self) -> Vec<u8> {
        let canonical = canonical_json(&self.event);
        crate::stored::encode(
            self.v,
            self.seq,
            self.time_ms,
            &self.prev_hash,
            &self.hash,
            canonical.as_bytes(),
        )
        .unwrap_or_else(|| self.to_bytes())
    }

    /// Reads a record in either form: compact ([`crate::stored`]) or JSON.
    pub fn from_bytes(bytes: &[u8]) -> Option<Record> {
        if crate::stored::is_compact(bytes) {
            return crate::stored::decode(bytes);
        }
        serde_json::from_slice(bytes).ok()
    }

    /// The event, typed; `None` if the stored JSON is not an event.
    pub fn typed_event(&self) -> Option<Event> {
        serde_json::from_value(self.event.clone()).ok()
    }

    pub fn event_id(&self) -> Option<&str> {
        self.event.get("eventID").and_then(Value::as_str)
    }

    /// Whether the stored hash is the hash of the stored contents: an unkeyed record's
    /// SHA-256, or a keyed record's HMAC under `key` (never valid without the key).
    pub fn hash_is_valid(&self, key: Option<&ChainKey>) -> bool {
        match (self.v, key) {
            (1, _) => {
                hash_record(self.seq, self.time_ms, &self.prev_hash, &self.event) == self.hash
            }
            (KEYED, Some(key)) => hex_matches(
                &self.hash,
                &mac_record(key, self.seq, self.time_ms, &self.prev_hash, &self.event),
            ),
            _ => false,
        }
    }
}

/// What is wrong at the first bad place of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokenKind {
    /// The stored bytes are not a record.
    Unreadable,
    /// The record's contents do not match its hash, or its hash is not the one the next
    /// record links to: the event was changed.
    Changed,
    /// Events are missing: before this one (a gap or a missing start), or after it (the
    /// chain ends before its head says).
    Removed { missing_from: u64, missing_to: u64 },
    /// The record stored at this position is another event of the chain.
    Reordered { found_seq: u64 },
    /// The chain's head is missing or does not match its newest event.
    HeadMismatch,
    /// The chain's head carries no valid MAC: it was written without the chain key.
    HeadForged,
    /// An unkeyed event follows a keyed one: the chain was rewritten in the old format.
    Downgraded,
    /// The event is keyed and no chain key was given to check it.
    NoKey,
    /// The chain's base (the checkpoint of its latest cut to an archive) carries no valid
    /// MAC, or the oldest event kept does not follow it.
    CutForged,
}

/// The first event (in time order) of a chain found changed, removed or reordered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// The chain (`<account>/<region>`).
    pub chain: String,
    /// The position in the chain where the problem is.
    pub seq: u64,
    /// The id of the event found there, when it could be read.
    pub event_id: Option<String>,
    pub kind: BrokenKind,
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = self.event_id.as_deref().unwrap_or("(unreadable)");
        let at = format!("chain {} event #{} (eventID {id})", self.chain, self.seq);
        match &self.kind {
            BrokenKind::Unreadable => write!(f, "{at}: the stored record cannot be read"),
            BrokenKind::Changed => write!(f, "{at}: the event was changed"),
            BrokenKind::Removed { missing_from, missing_to } if missing_from == missing_to => {
                write!(f, "{at}: event #{missing_from} next to it was removed")
            }
            BrokenKind::Removed { missing_from, missing_to } => {
                write!(f, "{at}: events #{missing_from} to #{missing_to} next to it were removed")
            }
            BrokenKind::Reordered { found_seq } => write!(
                f,
                "{at}: the events were reordered (event #{found_seq} is stored in this place)"
            ),
            BrokenKind::HeadMismatch => {
                write!(f, "{at}: the chain head does not match its newest event")
            }
            BrokenKind::HeadForged => write!(
                f,
                "{at}: the chain head's MAC does not verify under the audit chain key (the head was rewritten, or newest events dropped)"
            ),
            BrokenKind::Downgraded => write!(
                f,
                "{at}: an unkeyed event follows a keyed one (the chain was rewritten without the key)"
            ),
            BrokenKind::NoKey => {
                write!(f, "{at}: the event is keyed but the audit chain key is not available")
            }
            BrokenKind::CutForged => write!(
                f,
                "{at}: the chain's archive checkpoint does not verify under the audit chain key, or the oldest event kept does not follow it"
            ),
        }
    }
}

/// Walks one chain newest first (the order its keys sort in) and remembers the oldest
/// problem seen, which is the first bad event in time order.
#[derive(Debug)]
pub struct Verifier {
    chain: String,
    head: Option<Head>,
    /// The chain key: with it, the head must carry a valid MAC and keyed records are
    /// checked; without it (a store whose chains were never keyed), neither can be.
    key: Option<ChainKey>,
    /// The record visited before (one newer): its key's seq, its prev_hash, its event id,
    /// whether it was readable and in its place (only then does its link count), and
    /// whether it was keyed.
    newer: Option<(u64, String, Option<String>, bool, bool)>,
    worst: Option<Broken>,
    count: u64,
    /// Where the chain was last cut to an archive ([`crate::archive`]): its oldest event
    /// kept must follow this checkpoint instead of the genesis.
    base: Option<crate::archive::Checkpoint>,
}

impl Verifier {
    pub fn new(chain: &str, head: Option<Head>, key: Option<ChainKey>) -> Verifier {
        Verifier {
            chain: chain.to_string(),
            head,
            key,
            newer: None,
            worst: None,
            count: 0,
            base: None,
        }
    }

    /// The checkpoint of the chain's latest cut to an archive, if it was ever cut: the
    /// oldest event kept must follow it, and its MAC must verify.
    pub fn with_base(mut self, base: Option<crate::archive::Checkpoint>) -> Verifier {
        self.base = base;
        self
    }

    /// Whether the head's MAC verifies, when a key is given (without one, not checked).
    fn head_authentic(&self) -> bool {
        match (&self.key, &self.head) {
            (None, _) => true,
            (Some(key), Some(head)) => head.mac_is_valid(&self.chain, key),
            (Some(_), None) => false,
        }
    }

    fn broken(&mut self, seq: u64, event_id: Option<String>, kind: BrokenKind) {
        self.worst = Some(Broken { chain: self.chain.clone(), seq, event_id, kind });
    }

    /// Visits the next record (one older than the previous one).
    pub fn push(&mut self, key: &str, bytes: &[u8]) {
        self.count += 1;
        let key_seq = seq_of_key(key).unwrap_or(0);
        let Some(record) = Record::from_bytes(bytes) else {
            self.broken(key_seq, None, BrokenKind::Unreadable);
            self.newer = Some((key_seq, String::new(), None, false, false));
            return;
        };
        let id = record.event_id().map(str::to_string);
        let keyed = record.v != 1;
        match &self.newer {
            None => {
                // The newest record must be the one the head names, and the head must be
                // authentic: else the newest events may have been dropped with it.
                let head_ok = self
                    .head
                    .as_ref()
                    .is_some_and(|h| h.seq == record.seq && h.hash == record.hash);
                let authentic = self.head_authentic();
                match &self.head {
                    Some(_) if !authentic => {
                        self.broken(key_seq, id.clone(), BrokenKind::HeadForged)
                    }
                    Some(h) if h.seq > key_seq => self.broken(
                        key_seq,
                        id.clone(),
                        BrokenKind::Removed { missing_from: key_seq + 1, missing_to: h.seq },
                    ),
                    _ if !head_ok => self.broken(key_seq, id.clone(), BrokenKind::HeadMismatch),
                    _ => {}
                }
            }
            Some((newer_seq, newer_prev, newer_id, newer_in_place, newer_keyed)) => {
                let (newer_seq, newer_prev, newer_id, newer_in_place, newer_keyed) = (
                    *newer_seq,
                    newer_prev.clone(),
                    newer_id.clone(),
                    *newer_in_place,
                    *newer_keyed,
                );
                if keyed && !newer_keyed && newer_in_place && key_seq + 1 == newer_seq {
                    self.broken(newer_seq, newer_id.clone(), BrokenKind::Downgraded);
                }
                if key_seq + 1 != newer_seq {
                    // Keys between this one and the newer one are gone.
                    self.broken(
                        newer_seq,
                        newer_id,
                        BrokenKind::Removed {
                            missing_from: key_seq + 1,
                            missing_to: newer_seq - 1,
                        },
                    );
                } else if newer_in_place && record.seq == key_seq && newer_prev != record.hash {
                    // Contents and hash rewritten consistently: only the link shows it.
                    self.broken(key_seq, id.clone(), BrokenKind::Changed);
                }
            }
        }
        if record.seq != key_seq {
            self.broken(key_seq, id.clone(), BrokenKind::Reordered { found_seq: record.seq });
        } else if keyed && self.key.is_none() {
            self.broken(key_seq, id.clone(), BrokenKind::NoKey);
        } else if !record.hash_is_valid(self.key.as_ref()) {
            self.broken(key_seq, id.clone(), BrokenKind::Changed);
        }
        let in_place = record.seq == key_seq;
        self.newer = Some((key_seq, record.prev_hash.clone(), id, in_place, keyed));
    }

    /// Ends the walk: the number of events checked, or the first bad one.
    pub fn finish(mut self) -> Result<u64, Broken> {
        let base = self.base.clone().unwrap_or_else(crate::archive::Checkpoint::genesis);
        let base_authentic = base.is_authentic(&self.chain, self.key.as_ref());
        match self.newer.clone() {
            None if self.count == 0 && !base.is_genesis() => {
                // Every event was archived: the head must be the cut.
                let head_ok = self.head.as_ref().is_some_and(|h| {
                    h.seq == base.seq && h.hash == base.hash && self.head_authentic()
                });
                if !base_authentic || !head_ok {
                    self.broken(base.seq, None, BrokenKind::CutForged);
                }
            }
            None if self.count == 0 => {
                if let Some(h) = self.head.clone() {
                    let kind = if self.head_authentic() {
                        BrokenKind::Removed { missing_from: 1, missing_to: h.seq }
                    } else {
                        BrokenKind::HeadForged
                    };
                    self.broken(h.seq, None, kind);
                }
            }
            None => {}
            Some((oldest_seq, oldest_prev, oldest_id, oldest_in_place, _)) => {
                let first = base.seq + 1;
                if !base_authentic || oldest_seq < first {
                    self.broken(oldest_seq, oldest_id, BrokenKind::CutForged);
                } else if oldest_seq != first {
                    self.broken(
                        oldest_seq,
                        oldest_id,
                        BrokenKind::Removed { missing_from: first, missing_to: oldest_seq - 1 },
                    );
                } else if oldest_in_place && oldest_prev != base.hash {
                    self.broken(oldest_seq, oldest_id, BrokenKind::Changed);
                }
            }
        }
        match self.worst {
            Some(b) => Err(b),
            None => Ok(self.count),
        }
    }
}

/// Verifies a whole chain given its records newest first.
pub fn verify<'a>(
    chain: &str,
    head: Option<Head>,
    key: Option<ChainKey>,
    records_newest_first: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Result<u64, Broken> {
    let mut v = Verifier::new(chain, head, key);
    for (key, bytes) in records_newest_first {
        v.push(key, bytes);
    }
    v.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, UserIdentity};

    fn event(n: u64) -> Event {
        Event {
            event_version: "1.08".into(),
            user_identity: UserIdentity { kind: "Root".into(), ..Default::default() },
            event_time: "2024-05-01T12:00:00Z".into(),
            event_source: "secretsmanager.amazonaws.com".into(),
            event_name: "CreateSecret".into(),
            aws_region: "us-east-1".into(),
            source_ip_address: "127.0.0.1".into(),
            user_agent: "test".into(),
            error_code: None,
            error_message: None,
            request_parameters: serde_json::json!({"name": format!("s{n}")}),
            response_elements: Value::Null,
            request_id: None,
            event_id: format!("event-{n}"),
            read_only: false,
            resources: vec![],
            event_type: "AwsApiCall".into(),
            management_event: true,
            recipient_account_id: "111122223333".into(),
            session_credential_from_console: None,
            event_category: "Management".into(),
        }
    }

    /// Events with every optional field set and with none, resources, nested and unsorted
    /// parameters and characters JSON escapes.
    fn varied_events() -> Vec<Event> {
        let mut full = event(7);
        full.error_code = Some("AccessDenied".into());
        full.error_message = Some("quote \" back \\ tab \t é \u{1} </>".into());
        full.request_id = Some("req-1".into());
        full.session_credential_from_console = Some("true".into());
        full.read_only = true;
        full.management_event = false;
        full.request_parameters = serde_json::json!({"z": {"b": 1, "a": [true, null, 2.5]},
            "secretId": "x", "A": -3, "empty": {}});
        full.response_elements = serde_json::json!({"aRN": "arn:1", "versionIdsToStages": {}});
        full.resources = vec![
            crate::event::Resource {
                arn: "arn:aws:secretsmanager:us-east-1:1:secret:a".into(),
                account_id: Some("1".into()),
                kind: "AWS::SecretsManager::Secret".into(),
            },
            crate::event::Resource { arn: "arn:2".into(), account_id: None, kind: "t".into() },
        ];
        full.user_identity = UserIdentity {
            kind: "IAMUser".into(),
            principal_id: Some("AIDA".into()),
            arn: Some("arn:aws:iam::1:user/u".into()),
            account_id: Some("1".into()),
            access_key_id: Some("AKIA".into()),
            user_name: Some("u".into()),
            invoked_by: Some("secretsmanager.amazonaws.com".into()),
            session_context: Some(serde_json::json!({
                "sessionIssuer": {"type": "IAMUser", "userName": "u"},
                "attributes": {"mfaAuthenticated": "false"}})),
        };
        vec![event(1), full]
    }

    /// A prepared event seals to the very record and head [`seal_to_bytes_as`] gives, in
    /// either form, keyed or not, first of its chain or not, and whatever form it was
    /// prepared for.
    #[test]
    fn a_prepared_event_seals_to_the_same_record() {
        let key = test_key();
        let prev = Head { seq: 41, hash: "ab".repeat(32), mac: None };
        for e in varied_events() {
            for form in [StoredForm::Compact, StoredForm::Json] {
                for made_for in [StoredForm::Compact, StoredForm::Json] {
                    let prepared = Prepared::new(made_for, &e);
                    for (p, k) in [(None, None), (Some(&prev), Some(&key))] {
                        let want = seal_to_bytes_as(form, p, 1_700_000_000_123, &e, k);
                        let got = seal_prepared(form, p, 1_700_000_000_123, &prepared, k);
                        assert_eq!(
                            (got.0, got.1.seq, got.1.hash),
                            (want.0, want.1.seq, want.1.hash)
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn an_event_is_written_canonically_without_building_its_json_value() {
        for e in varied_events() {
            let mut direct = Vec::new();
            write_event_canonical(&e, &mut direct);
            let value = serde_json::to_value(&e).unwrap();
            assert_eq!(String::from_utf8(direct).unwrap(), canonical_json(&value));
        }
    }

    #[test]
    fn sealing_to_bytes_gives_the_bytes_and_head_of_a_sealed_record() {
        let prev = Head { seq: 41, hash: "ab".repeat(32), mac: None };
        for e in varied_events() {
            for prev in [None, Some(&prev)] {
                for key in [None, Some(&test_key())] {
                    let (bytes, head) = seal_to_bytes(prev, 1_700_000_000_123, &e, key);
                    let record = Record::seal(prev, 1_700_000_000_123, &e, key);
                    assert_eq!(bytes, record.to_stored_bytes());
                    let (as_json, json_head) =
                        seal_to_bytes_as(StoredForm::Json, prev, 1_700_000_000_123, &e, key);
                    assert_eq!(as_json, record.to_bytes());
                    assert_eq!(json_head, head);
                    assert!(crate::stored::is_compact(&bytes));
                    let canonical = canonical_json(&record.event);
                    let json = json_bytes(
                        record.v,
                        record.seq,
                        record.time_ms,
                        &record.prev_hash,
                        &record.hash,
                        canonical.as_bytes(),
                    );
                    assert_eq!(json, record.to_bytes());
                    assert_eq!(Record::from_bytes(&json).unwrap(), record);
                    assert_eq!(head, record.head());
                    let read = Record::from_bytes(&bytes).unwrap();
                    assert_eq!(read, record);
                    assert!(read.hash_is_valid(key));
                    assert_eq!(read.v, if key.is_some() { KEYED } else { 1 });
                }
            }
        }
    }

    /// The cost of each form, by hand: `FORM_COSTS_N=20000 cargo test --release -p
    /// coffer-audit -- --nocapture each_form_costs`. Prints; asserts nothing about time
    /// (in the suite it runs each form a few hundred times, as a smoke test of them all).
    #[test]
    fn each_form_costs() {
        let e = &varied_events()[1];
        let (bytes, _) = seal_to_bytes(None, 1_700_000_000_123, e, Some(&test_key()));
        let r = Record::from_bytes(&bytes).unwrap();
        let canonical = canonical_json(&r.event);
        let json = r.to_bytes();
        let n: u32 = std::env::var("FORM_COSTS_N").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
        // `ONLY=<name>` runs one of them, to count its instructions with `perf stat`.
        let only = std::env::var("ONLY").ok();
        let time = |what: &str, f: &mut dyn FnMut()| {
            if only.as_deref().is_some_and(|o| o != what) {
                return;
            }
            let start = std::time::Instant::now();
            for _ in 0..n {
                f();
            }
            println!("{what}: {:.2} µs", start.elapsed().as_secs_f64() * 1e6 / f64::from(n));
        };
        time("encode json", &mut || {
            std::hint::black_box(json_bytes(
                2,
                r.seq,
                r.time_ms,
                &r.prev_hash,
                &r.hash,
                canonical.as_bytes(),
            ));
        });
        time("encode compact", &mut || {
            std::hint::black_box(crate::stored::encode(
                2,
                r.seq,
                r.time_ms,
                &r.prev_hash,
                &r.hash,
                canonical.as_bytes(),
            ));
        });
        time("seal_to_bytes (compact)", &mut || {
            std::hint::black_box(seal_to_bytes(None, 1_700_000_000_123, e, Some(&test_key())));
        });
        time("read json", &mut || {
            std::hint::black_box(Record::from_bytes(&json));
        });
        time("read compact", &mut || {
            std::hint::black_box(Record::from_bytes(&bytes));
        });
        println!("bytes: json {} compact {}", json.len(), bytes.len());
    }

    const CHAIN: &str = "111122223333/us-east-1";

    fn test_key() -> ChainKey {
        ChainKey::new(&[9; 32])
    }

    /// A chain of `n` records as the store holds them: (key, bytes) newest first, and its head.
    fn chain(n: u64) -> (Vec<(String, Vec<u8>)>, Head) {
        mixed_chain(n, 0, None)
    }

    /// A chain of `unkeyed` unkeyed records followed by `keyed` records keyed under
    /// `key`, and its head (sealed under `key` when given).
    fn mixed_chain(
        unkeyed: u64,
        keyed: u64,
        key: Option<&ChainKey>,
    ) -> (Vec<(String, Vec<u8>)>, Head) {
        let mut head: Option<Head> = None;
        let mut out = Vec::new();
        for i in 1..=unkeyed + keyed {
            let r = Record::seal(
                head.as_ref(),
                1000 * i as i64,
                &event(i),
                key.filter(|_| i > unkeyed),
            );
            head = Some(r.head());
            out.push((event_key("111122223333", "us-east-1", r.seq), r.to_bytes()));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        let head = head.unwrap();
        (
            out,
            match key {
                Some(key) => head.sealed(CHAIN, key),
                None => head,
            },
        )
    }

    /// The same records in the compact stored form, from `from` (an index) on: older
    /// records stay in the JSON form, as in a store written before the compact form.
    fn compacted(records: &[(String, Vec<u8>)], upto: usize) -> Vec<(String, Vec<u8>)> {
        records
            .iter()
            .enumerate()
            .map(|(i, (k, v))| {
                let bytes = if i < upto {
                    Record::from_bytes(v).unwrap().to_stored_bytes()
                } else {
                    v.clone()
                };
                (k.clone(), bytes)
            })
            .collect()
    }

    #[test]
    fn compact_chains_and_chains_compact_after_json_records_verify() {
        let key = test_key();
        let (records, head) = mixed_chain(3, 4, Some(&key));
        // Newest first: all compact, the newest 2 compact, none.
        for upto in [records.len(), 2, 0] {
            let stored = compacted(&records, upto);
            assert_eq!(check_with(&stored, Some(head.clone()), Some(key.clone())), Ok(7));
            for ((_, json), (_, compact)) in records.iter().zip(&stored) {
                assert_eq!(Record::from_bytes(json), Record::from_bytes(compact));
            }
        }
        let (records, head) = chain(5);
        assert_eq!(check(&compacted(&records, 5), Some(head)), Ok(5));
    }

    #[test]
    fn a_compact_record_is_under_a_third_of_its_json_form() {
        let (records, _) = mixed_chain(0, 3, Some(&test_key()));
        for (_, json) in &records {
            let compact = Record::from_bytes(json).unwrap().to_stored_bytes();
            assert!(compact.len() * 3 < json.len(), "{} vs {}", compact.len(), json.len());
        }
    }

    #[test]
    fn a_changed_compact_record_is_named() {
        let key = test_key();
        let (records, head) = mixed_chain(0, 5, Some(&key));
        let records = compacted(&records, 5);
        // The event rewritten (and re-encoded) without the key, under its old hash.
        let mut edited = records.clone();
        let mut r = Record::from_bytes(&edited[2].1).unwrap();
        r.event["requestParameters"]["name"] = "forged".into();
        edited[2].1 = r.to_stored_bytes();
        let broken = check_with(&edited, Some(head.clone()), Some(key.clone())).unwrap_err();
        assert_eq!((broken.seq, broken.kind), (3, BrokenKind::Changed));
        assert_eq!(broken.event_id.as_deref(), Some("event-3"));
        // Any byte flipped: the record is changed or unreadable, or it still reads as
        // exactly the same record. LZ77 is not a canonical encoding: a match may copy the
        // same bytes from another place of the dictionary, so some offset bits can be
        // flipped without changing the event (about 0.5% of a frame's bits, in every
        // real event's frame, with dictionary 1 as with 2). What every reader sees, and
        // what the hash covers, is the decoded record: that never passes changed.
        let original = Record::from_bytes(&records[2].1).unwrap();
        for at in 0..records[2].1.len() {
            let mut flipped = records.clone();
            flipped[2].1[at] ^= 0x01;
            let broken = check_with(&flipped, Some(head.clone()), Some(key.clone()));
            if broken.is_ok() {
                let read = Record::from_bytes(&flipped[2].1).unwrap();
                assert_eq!(read.to_bytes(), original.to_bytes(), "byte {at} flipped passed");
                assert!(at >= 3 + 1 + 6 + 64, "byte {at} of the header flipped passed");
            }
        }
    }

    fn check(records: &[(String, Vec<u8>)], head: Option<Head>) -> Result<u64, Broken> {
        check_with(records, head, None)
    }

    fn check_with(
        records: &[(String, Vec<u8>)],
        head: Option<Head>,
        key: Option<ChainKey>,
    ) -> Result<u64, Broken> {
        verify(CHAIN, head, key, records.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
    }

    #[test]
    fn a_chain_cut_to_an_archive_verifies_from_its_base_and_only_from_it() {
        use crate::archive::Checkpoint;
        let key = test_key();
        let (records, head) = mixed_chain(0, 10, Some(&key));
        // Newest first: records[6..] are events 4..1.
        let cut = Record::from_bytes(&records[6].1).unwrap();
        let base = Checkpoint::sealed(CHAIN, cut.seq, &cut.hash, &key);
        let kept = &records[..6];
        let run = |records: &[(String, Vec<u8>)], base: Option<Checkpoint>| {
            let mut v = Verifier::new(CHAIN, Some(head.clone()), Some(key.clone())).with_base(base);
            for (k, b) in records {
                v.push(k, b);
            }
            v.finish()
        };
        assert_eq!(run(kept, Some(base.clone())), Ok(6));
        // Without the base, the cut is a removal.
        assert_eq!(
            run(kept, None).unwrap_err().kind,
            BrokenKind::Removed { missing_from: 1, missing_to: 4 }
        );
        // One more event removed below the kept part.
        assert_eq!(
            run(&kept[..5], Some(base.clone())).unwrap_err().kind,
            BrokenKind::Removed { missing_from: 5, missing_to: 5 }
        );
        // A base moved forward without the key (hiding a removal) or with another key.
        let five = Record::from_bytes(&records[5].1).unwrap();
        for forged in [
            Checkpoint { seq: 5, hash: five.hash.clone(), mac: None },
            Checkpoint::sealed(CHAIN, 5, &five.hash, &ChainKey::new(&[1; 32])),
            Checkpoint {
                mac: base.mac.clone(),
                ..Checkpoint { seq: 5, hash: five.hash.clone(), mac: None }
            },
        ] {
            assert_eq!(run(&kept[..5], Some(forged)).unwrap_err().kind, BrokenKind::CutForged);
        }
        // Everything archived: the head must be the cut.
        let all = Checkpoint::sealed(CHAIN, head.seq, &head.hash, &key);
        assert_eq!(run(&[], Some(all)), Ok(0));
        assert_eq!(run(&[], Some(base)).unwrap_err().kind, BrokenKind::CutForged);
    }

    #[test]
    fn a_keyed_chain_and_a_chain_keyed_after_unkeyed_events_verify() {
        let key = test_key();
        let (records, head) = mixed_chain(0, 5, Some(&key));
        assert_eq!(check_with(&records, Some(head), Some(key.clone())), Ok(5));
        let (records, head) = mixed_chain(3, 2, Some(&key));
        assert_eq!(check_with(&records, Some(head), Some(key.clone())), Ok(5));
        // An unkeyed chain whose head was sealed when the key was made.
        let (records, head) = mixed_chain(3, 0, None);
        assert_eq!(check_with(&records, Some(head.sealed(CHAIN, &key)), Some(key)), Ok(3));
    }

    /// The attack the unkeyed chain missed: with the database but not the key, drop the
    /// newest events and point the head at the newest one left.
    #[test]
    fn dropping_the_newest_events_and_rewriting_the_head_is_seen_without_the_key() {
        let key = test_key();
        for unkeyed in [0, 3] {
            let (mut records, _) = mixed_chain(unkeyed, 5 - unkeyed, Some(&key));
            records.drain(..2);
            let newest = Record::from_bytes(&records[0].1).unwrap();
            for head in [newest.head(), newest.head().sealed(CHAIN, &ChainKey::new(&[1; 32]))] {
                let broken = check_with(&records, Some(head), Some(key.clone())).unwrap_err();
                assert_eq!((broken.seq, broken.kind.clone()), (3, BrokenKind::HeadForged));
                assert!(broken.to_string().contains("head"), "{broken}");
            }
            // Removing the head altogether is seen too.
            let broken = check_with(&records, None, Some(key.clone())).unwrap_err();
            assert_eq!(broken.kind, BrokenKind::HeadMismatch);
        }
        // The unkeyed chain's blind spot, for the record: without a key it passes.
        let (mut records, _) = chain(5);
        records.drain(..2);
        let newest = Record::from_bytes(&records[0].1).unwrap();
        assert_eq!(check(&records, Some(newest.head())), Ok(3));
    }

    #[test]
    fn a_keyed_event_rewritten_with_any_other_hash_is_changed() {
        let key = test_key();
        let (mut records, head) = mixed_chain(0, 5, Some(&key));
        let mut r = Record::from_bytes(&records[2].1).unwrap();
        r.event["requestParameters"]["name"] = "forged".into();
        // Recomputed as an unkeyed hash, or as a keyed one under another key.
        for hash in [
            hash_record(r.seq, r.time_ms, &r.prev_hash, &r.event),
            mac_record(&ChainKey::new(&[1; 32]), r.seq, r.time_ms, &r.prev_hash, &r.event),
        ] {
            r.hash = hash;
            records[2].1 = r.to_bytes();
            let broken = check_with(&records, Some(head.clone()), Some(key.clone())).unwrap_err();
            assert_eq!((broken.seq, broken.kind), (3, BrokenKind::Changed));
        }
    }

    #[test]
    fn an_unkeyed_event_edited_before_the_switch_is_seen_by_the_first_keyed_one() {
        let key = test_key();
        let (mut records, head) = mixed_chain(3, 2, Some(&key));
        // Rewrite the whole unkeyed part consistently: only the keyed link shows it.
        let mut prev: Option<Head> = None;
        for index in (2..5).rev() {
            let mut r = Record::from_bytes(&records[index].1).unwrap();
            r.event["requestParameters"]["name"] = "forged".into();
            r.prev_hash = prev.as_ref().map_or(GENESIS.to_string(), |h| h.hash.clone());
            r.hash = hash_record(r.seq, r.time_ms, &r.prev_hash, &r.event);
            prev = Some(r.head());
            records[index].1 = r.to_bytes();
        }
        let broken = check_with(&records, Some(head), Some(key)).unwrap_err();
        assert_eq!((broken.seq, broken.kind), (3, BrokenKind::Changed));
    }

    #[test]
    fn an_unkeyed_event_after_a_keyed_one_is_a_downgrade() {
        let key = test_key();
        let mut head: Option<Head> = None;
        let mut records = Vec::new();
        for i in 1..=4u64 {
            let r =
                Record::seal(head.as_ref(), 1000 * i as i64, &event(i), (i < 4).then_some(&key));
            head = Some(r.head());
            records.push((event_key("111122223333", "us-east-1", r.seq), r.to_bytes()));
        }
        records.sort_by(|a, b| a.0.cmp(&b.0));
        let head = head.unwrap().sealed(CHAIN, &key);
        let broken = check_with(&records, Some(head), Some(key)).unwrap_err();
        assert_eq!((broken.seq, broken.kind), (4, BrokenKind::Downgraded));
    }

    #[test]
    fn keyed_events_without_the_key_are_reported_not_passed() {
        let key = test_key();
        let (records, head) = mixed_chain(0, 2, Some(&key));
        let broken = check_with(&records, Some(head), None).unwrap_err();
        assert_eq!(broken.kind, BrokenKind::NoKey);
    }

    #[test]
    fn a_head_mac_binds_its_chain() {
        let key = test_key();
        let head = Head { seq: 3, hash: "ab".repeat(32), mac: None }.sealed(CHAIN, &key);
        assert!(head.mac_is_valid(CHAIN, &key));
        assert!(!head.mac_is_valid("111122223333/eu-west-1", &key));
        assert!(!Head { seq: 4, ..head.clone() }.mac_is_valid(CHAIN, &key));
        assert!(!head.mac_is_valid(CHAIN, &ChainKey::new(&[1; 32])));
        // A head serializes as before when it has no MAC.
        let plain = Head { seq: 1, hash: "x".into(), mac: None };
        assert_eq!(serde_json::to_string(&plain).unwrap(), r#"{"seq":1,"hash":"x"}"#);
    }

    #[test]
    fn node_chains_have_their_own_key_ranges_next_to_the_scope_chain() {
        let base = chain_id("1", "us-east-1");
        let a = node_chain_id("1", "us-east-1", Some("host-a:8080"));
        let b = node_chain_id("1", "us-east-1", Some("host-b:8080"));
        assert_eq!(node_chain_id("1", "us-east-1", None), base);
        assert_eq!(a, "1/us-east-1@host-a:8080");
        for chain in [&base, &a, &b] {
            assert!(is_chain_of(chain, "1", "us-east-1"));
            assert_eq!(seq_of_key(&chain_event_key(chain, 9)), Some(9));
            assert!(chain_event_key(chain, 9).starts_with(&chain_event_prefix(chain)));
        }
        assert!(!is_chain_of("1/us-east-10", "1", "us-east-1"));
        assert!(!is_chain_of("1/us-east-1@", "1", "us-east-1"));
        assert!(!is_chain_of("2/us-east-1@a", "1", "us-east-1"));
        // The scope chain's keys are what they always were, and no node chain's key falls
        // inside its range (nor inside another node's).
        assert_eq!(chain_event_key(&base, 3), event_key("1", "us-east-1", 3));
        let node_key = chain_event_key(&a, 1);
        assert!(!node_key.starts_with(&event_prefix("1", "us-east-1")));
        assert!(!node_key.starts_with(&chain_event_prefix(&b)));
        assert!(node_key > chain_event_key(&base, 1));
        assert_eq!(node_tag("h/x@y z"), "h-x-y-z");
        assert_eq!(node_tag(""), "node");
    }

    #[test]
    fn keys_sort_newest_first_and_round_trip() {
        let a = event_key("1", "r", 1);
        let b = event_key("1", "r", 2);
        assert!(b < a);
        assert_eq!(seq_of_key(&a), Some(1));
        assert_eq!(seq_of_key(&b), Some(2));
        assert!(a.starts_with(&event_prefix("1", "r")));
        assert_eq!(seq_of_key("1/r/abc"), None);
    }

    /// Pins the bytes hashed, so chains written by earlier builds still verify: escapes
    /// and non-ASCII as JSON's compact form writes them, the hash in lowercase hex.
    #[test]
    fn a_record_hash_is_the_sha256_of_its_header_and_canonical_json() {
        let v = serde_json::json!({"t": true, "n": -1.5, "a\n\u{1}": "\"é</"});
        assert_eq!(canonical_json(&v), r#"{"a\n\u0001":"\"é</","n":-1.5,"t":true}"#);
        assert_eq!(
            hash_record(7, 1_700_000_000_000, "abc", &v),
            "3c116a949ed84c23571f5c390d621eb1f1a9396102b4c8b23845e219a092de8c"
        );
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let v = serde_json::json!({"b": 1, "a": {"d": [1, {"z": 1, "y": "x"}], "c": null}});
        assert_eq!(canonical_json(&v), r#"{"a":{"c":null,"d":[1,{"y":"x","z":1}]},"b":1}"#);
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let (records, head) = chain(5);
        assert_eq!(check(&records, Some(head)), Ok(5));
        assert_eq!(check(&[], None), Ok(0));
    }

    #[test]
    fn an_edited_event_is_named() {
        let (mut records, head) = chain(5);
        // Event 3 sits at index 2 from the newest end (5, 4, 3, ...).
        let text = String::from_utf8(records[2].1.clone()).unwrap().replace("s3", "s9");
        records[2].1 = text.into_bytes();
        let broken = check(&records, Some(head)).unwrap_err();
        assert_eq!(broken.seq, 3);
        assert_eq!(broken.kind, BrokenKind::Changed);
        assert_eq!(broken.event_id.as_deref(), Some("event-3"));
        assert!(broken.to_string().contains("event-3"));
    }

    #[test]
    fn an_edit_with_a_recomputed_hash_is_still_named() {
        let (mut records, head) = chain(5);
        let mut r = Record::from_bytes(&records[2].1).unwrap();
        r.event["requestParameters"]["name"] = "forged".into();
        r.hash = hash_record(r.seq, r.time_ms, &r.prev_hash, &r.event);
        records[2].1 = r.to_bytes();
        let broken = check(&records, Some(head)).unwrap_err();
        assert_eq!((broken.seq, broken.kind), (3, BrokenKind::Changed));
    }

    #[test]
    fn a_removed_event_is_named_by_its_successor() {
        let (mut records, head) = chain(5);
        records.remove(2);
        let broken = check(&records, Some(head)).unwrap_err();
        assert_eq!(broken.seq, 4);
        assert_eq!(broken.kind, BrokenKind::Removed { missing_from: 3, missing_to: 3 });
        assert!(broken.to_string().contains("#3"));
    }

    #[test]
    fn removing_the_first_or_the_newest_events_is_seen() {
        let (mut records, head) = chain(5);
        records.pop();
        let broken = check(&records, Some(head.clone())).unwrap_err();
        assert_eq!(broken.kind, BrokenKind::Removed { missing_from: 1, missing_to: 1 });
        let (mut records, _) = chain(5);
        records.remove(0);
        let broken = check(&records, Some(head.clone())).unwrap_err();
        assert_eq!(broken.kind, BrokenKind::Removed { missing_from: 5, missing_to: 5 });
        assert_eq!(broken.seq, 4);
        let broken = check(&[], Some(head)).unwrap_err();
        assert_eq!(broken.kind, BrokenKind::Removed { missing_from: 1, missing_to: 5 });
    }

    #[test]
    fn swapped_events_are_named_at_the_first_place() {
        let (mut records, head) = chain(5);
        let (a, b) = (records[2].1.clone(), records[3].1.clone());
        records[2].1 = b;
        records[3].1 = a;
        let broken = check(&records, Some(head)).unwrap_err();
        assert_eq!(broken.seq, 2);
        assert_eq!(broken.kind, BrokenKind::Reordered { found_seq: 3 });
        assert_eq!(broken.event_id.as_deref(), Some("event-3"));
    }

    #[test]
    fn a_missing_or_wrong_head_is_reported() {
        let (records, head) = chain(3);
        let broken = check(&records, None).unwrap_err();
        assert_eq!(broken.kind, BrokenKind::HeadMismatch);
        let wrong = Head { seq: 3, hash: GENESIS.into(), mac: None };
        assert_eq!(check(&records, Some(wrong)).unwrap_err().kind, BrokenKind::HeadMismatch);
        assert_eq!(check(&records, Some(head)), Ok(3));
    }

    #[test]
    fn unreadable_bytes_are_reported() {
        let (mut records, head) = chain(3);
        records[1].1 = b"not json".to_vec();
        let broken = check(&records, Some(head)).unwrap_err();
        assert_eq!((broken.seq, broken.kind), (2, BrokenKind::Unreadable));
    }
}
