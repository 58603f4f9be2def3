//! The audit trail: one CloudTrail event per call, chained per account and region in the
//! store, optionally streamed as JSON lines; and CloudTrail's LookupEvents over it.
//!
//! A call's event is prepared by [`CallRecord::begin`] (on the thread that runs the call)
//! and kept in the call's [`CallRecord`] (its `RequestContext`) until the call ends. A mutating call's event is appended
//! by `App::write` inside the transaction that makes the change (`in_transaction`), so
//! the change and its record commit together or not at all. Read-only calls, failures
//! and calls that changed nothing get their event written when the call ends
//! ([`CallRecord::finish`], or [`CallRecord::conclude`] then [`write_async`]): on a durable store by the
//! appender (`crate::appender`), which commits the events of concurrent calls
//! together. When an event cannot be written the call fails with
//! InternalServiceError and, for a mutating call, changes nothing (fail-closed), unless
//! `Settings::fail_open` is set, in which case the failure is only logged.

use crate::Txn;
use crate::audit_file::{AuditFile, Lines};
use crate::auth::{Authenticated, RawRequest};
use crate::{App, RequestContext, clock};
use coffer_audit::chain::{self, ChainKey, EVENT_KIND, HEAD_KIND, Head, Record, StoredForm};
use coffer_audit::event::{self, EVENT_VERSION, Event, Resource, UserIdentity};
use coffer_audit::lookup::{self, LookupError, Query};
use coffer_core::{AwsError, ErrorCode, Scope};
use coffer_store::{Latency, ReadTxn, StoreError, WriteTxn};
use coffer_wire::cloudtrail::{LookupEventsRequest, LookupEventsResponse};
use coffer_wire::model::ServiceModel;
use coffer_wire::operation::{Operation, SecretsManagerOp, Service, StsOp};
use coffer_wire::secretsmanager as sm;
use serde_json::Value;
use std::any::Any;
use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// How the trail is kept.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Serve calls whose event could not be written (logging the failure) instead of
    /// failing them. Off by default: no audit, no access.
    pub fail_open: bool,
    /// Also stream every event as one JSON line to this file (`-`: standard output).
    pub log: Option<PathBuf>,
    /// Rotate the file once it would grow past this many bytes.
    pub log_max_bytes: u64,
    /// How many rotated files (`FILE.1` newest ... `FILE.N`) are kept.
    pub log_keep: usize,
    /// Keep only this many newest events per chain in the store (`None`: all). Set for the
    /// in-memory `--dev` store, whose trail is for looking at, not for `audit verify`.
    pub retain_events: Option<u64>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            fail_open: false,
            log: None,
            log_max_bytes: 100 * 1024 * 1024,
            log_keep: 5,
            retain_events: None,
        }
    }
}

/// The server's audit state: its settings, the JSON-lines sink, and the recent failed
/// signatures of each known access key.
pub struct Auditor {
    settings: Settings,
    /// The `--audit-log` copy, written after each commit (`crate::audit_file`).
    file: AuditFile,
    /// The key of the chains ([`open_chain_key`]); without it events are chained unkeyed.
    chain_key: std::sync::OnceLock<ChainKey>,
    /// This node's name in its chains' ids ([`chain::node_chain_id`]), on stores several
    /// nodes share: each node then appends to a chain of its own per scope, so no head row
    /// is written by two nodes. Without it, one chain per scope.
    chain_node: std::sync::OnceLock<String>,
    /// The form records are stored in: compact on disk, JSON in `--dev`'s memory
    /// ([`Auditor::for_store`]).
    form: StoredForm,
    failures: Mutex<HashMap<String, FailureWindow>>,
    /// The keyed heads this process stored last, per chain ([`SealedHeads`]).
    sealed_heads: SealedHeads,
}

/// The chains' heads as this process last stored them under the chain key: each chain's
/// stored bytes and the head they hold. A head read back with exactly these bytes carries
/// the MAC this process computed for that chain under the key (the key is set once and
/// never changes; the chain id is the map's key and part of the MAC), so its MAC need not
/// be checked again nor its JSON parsed: one HMAC and one parse less per appended event.
/// Any other bytes (another node's head, a head rewritten by anyone, or the bytes of a
/// transaction that rolled back) are parsed and checked as before.
///
/// It also keeps, per chain, the highest sequence number of a head this process knows
/// committed ([`Lines::committed`] reports it once the store acknowledged the commit). A
/// stored head below it is an older head put back, its MAC genuine, with the newest events
/// removed: neither the MAC nor `coffer audit verify` can tell, so the chain is not
/// continued from it (review 11). Only while this process runs: a restart forgets.
#[derive(Default)]
struct SealedHeads(Mutex<Known>);

#[derive(Default)]
struct Known {
    /// Per chain: the bytes last stored here and the head they hold.
    bytes: HashMap<String, (Vec<u8>, Head)>,
    /// Per chain: the highest sequence number of a head this process committed.
    committed: HashMap<String, u64>,
}

/// Chains remembered at most: past it the memory starts over (heads are then checked
/// again once each), so a server with many scopes keeps a bounded map.
const SEALED_HEADS_KEPT: usize = 4096;

/// Chains whose committed sequence number is remembered at most (a few MiB): more than the
/// heads' bytes, since a floor forgotten is a rollback no longer seen. Past it one floor
/// is forgotten for each new chain, not all of them.
const COMMITTED_FLOORS_KEPT: usize = 65_536;

impl SealedHeads {
    fn lock(&self) -> std::sync::MutexGuard<'_, Known> {
        // Nothing here is left half-changed by a panic: a poisoned lock is still good.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The head stored as `bytes` in chain `id`, if these are the bytes last stored here.
    fn known(&self, id: &str, bytes: &[u8]) -> Option<Head> {
        let known = self.lock();
        known
            .bytes
            .get(id)
            .filter(|(stored, _)| stored.as_slice() == bytes)
            .map(|(_, head)| head.clone())
    }

    /// Remembers the heads just stored (sealed under the chain key) as `(chain, bytes, head)`.
    fn remember(&self, stored: Vec<(String, Vec<u8>, Head)>) {
        let mut known = self.lock();
        for (id, bytes, head) in stored {
            if known.bytes.len() >= SEALED_HEADS_KEPT && !known.bytes.contains_key(&id) {
                known.bytes.clear();
            }
            known.bytes.insert(id, (bytes, head));
        }
    }

    /// Notes heads whose transaction committed, as `(chain, seq)`.
    fn committed(&self, heads: &[(String, u64)]) {
        let mut known = self.lock();
        for (id, seq) in heads {
            if known.committed.len() >= COMMITTED_FLOORS_KEPT
                && !known.committed.contains_key(id)
                && let Some(gone) = known.committed.keys().next().cloned()
            {
                known.committed.remove(&gone);
            }
            let floor = known.committed.entry(id.clone()).or_default();
            *floor = (*floor).max(*seq);
        }
    }

    /// The highest sequence number of chain `id` this process committed, if known.
    fn committed_seq(&self, id: &str) -> Option<u64> {
        self.lock().committed.get(id).copied()
    }
}

/// The window over which failed signatures of one access key are counted.
const FAILURE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Events recorded per access key and [`FAILURE_INTERVAL`] for failed signatures: enough to
/// see an attack in the trail, too few for anyone who knows a key id to fill the trail.
const FAILURE_EVENTS_PER_INTERVAL: u32 = 10;

/// Failed signatures of one access key in the current interval.
#[derive(Debug)]
struct FailureWindow {
    started: std::time::Instant,
    /// Whether this interval's log line has been written.
    logged: bool,
    /// Events recorded in this interval.
    audited: u32,
    /// Failures since the last log line, and those not recorded as events.
    not_logged: u64,
    not_audited: u64,
}

/// What to do about one failed signature of a known access key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureNotice {
    /// Record an event in the key owner's trail.
    pub audit: bool,
    /// Write a warning line: `Some((failures since the last line, failures since then not
    /// recorded as events))`.
    pub log: Option<(u64, u64)>,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auditor").field("settings", &self.settings).finish()
    }
}

impl Auditor {
    pub fn new(settings: Settings) -> Auditor {
        Auditor {
            file: AuditFile::new(&settings),
            settings,
            failures: Mutex::new(HashMap::new()),
            chain_key: std::sync::OnceLock::new(),
            chain_node: std::sync::OnceLock::new(),
            form: StoredForm::Compact,
            sealed_heads: SealedHeads::default(),
        }
    }

    /// The auditor of an app over a store of this latency: the in-memory store keeps its
    /// records in the JSON form, since compressing each event (a few µs of every call)
    /// would only save memory the store drops soon (its trail is bounded), and every
    /// reader reads both forms.
    pub(crate) fn for_store(settings: Settings, latency: Latency) -> Auditor {
        let form = match latency {
            Latency::Memory => StoredForm::Json,
            Latency::LocalDisk | Latency::Network => StoredForm::Compact,
        };
        Auditor { form, ..Auditor::new(settings) }
    }

    /// Appends every event from now on to this node's own chain of each scope (set once,
    /// at start, before serving; see [`chain::node_tag`] for the characters kept).
    pub fn set_chain_node(&self, node: &str) {
        let _ = self.chain_node.set(chain::node_tag(node));
    }

    /// The node name of this server's chains, if it has its own.
    pub fn chain_node(&self) -> Option<&str> {
        self.chain_node.get().map(String::as_str)
    }

    /// The heads of one transaction's appends: this node's chains, keyed.
    pub(crate) fn heads(&self) -> Heads<'_> {
        Heads {
            moved: HashMap::new(),
            key: self.chain_key(),
            node: self.chain_node(),
            form: self.form,
            sealed: Some(&self.sealed_heads),
            lines: None,
            last_uses: Default::default(),
        }
    }

    /// Keys every event appended from now on (set once, at start, before serving).
    pub fn set_chain_key(&self, key: ChainKey) {
        let _ = self.chain_key.set(key);
    }

    pub(crate) fn chain_key(&self) -> Option<&ChainKey> {
        self.chain_key.get()
    }

    /// Counts a failed signature of the known access key `key_id` and says whether to
    /// audit and log it: at most `FAILURE_EVENTS_PER_INTERVAL` events and one log line per
    /// key per `FAILURE_INTERVAL`, the line counting what was left out since the last.
    pub fn note_failed_signature(&self, key_id: &str) -> FailureNotice {
        self.note_failed_signature_at(key_id, std::time::Instant::now())
    }

    fn note_failed_signature_at(&self, key_id: &str, now: std::time::Instant) -> FailureNotice {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        // Only known keys are counted, but forget quiet ones so the map stays small.
        if failures.len() >= 4096 {
            failures.retain(|_, w| now.saturating_duration_since(w.started) < FAILURE_INTERVAL);
        }
        let window = failures.entry(key_id.to_string()).or_insert(FailureWindow {
            started: now,
            logged: false,
            audited: 0,
            not_logged: 0,
            not_audited: 0,
        });
        if now.saturating_duration_since(window.started) >= FAILURE_INTERVAL {
            window.started = now;
            window.logged = false;
            window.audited = 0;
        }
        let audit = window.audited < FAILURE_EVENTS_PER_INTERVAL;
        if audit {
            window.audited += 1;
        } else {
            window.not_audited += 1;
        }
        let log = if window.logged {
            window.not_logged += 1;
            None
        } else {
            window.logged = true;
            let counts = (window.not_logged, window.not_audited);
            (window.not_logged, window.not_audited) = (0, 0);
            Some(counts)
        };
        FailureNotice { audit, log }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Opens the JSON-lines file now, so that a bad path stops the server at start.
    pub fn open_sink(&self) -> std::io::Result<()> {
        self.file.open()
    }

    /// The `--audit-log` copy of the trail.
    pub(crate) fn log_file(&self) -> &AuditFile {
        &self.file
    }

    /// Called as the server stops: writes the `--audit-log` lines still queued if the log
    /// takes them now, and says how many committed events are left without a line if not
    /// (they are in the store's trail: LookupEvents, `coffer audit`).
    pub fn flush_log_at_exit(&self) {
        let left = self.file.retry_queued();
        if left > 0 {
            tracing::error!(
                lost = left,
                "stopping with committed events whose audit log lines could not be written; \
                 they are in the store's trail (LookupEvents, coffer audit verify)"
            );
        }
    }

    /// Notes the chain heads `(chain, seq)` of a write the store acknowledged
    /// ([`SealedHeads::committed`]).
    pub(crate) fn heads_committed(&self, heads: &[(String, u64)]) {
        if !heads.is_empty() {
            self.sealed_heads.committed(heads);
        }
    }
}

/// The event of the call running on this thread, until it is written.
struct Pending {
    scope: Scope,
    time_ms: i64,
    event: Event,
    sensitive: Arc<BTreeSet<String>>,
    /// The model whose input shape says which request members are recorded (`None`:
    /// CloudTrail's LookupEvents, whose shape `coffer-wire::cloudtrail` knows, or a call
    /// with no JSON body).
    model: Option<&'static ServiceModel>,
    /// Set once the event committed with the call's change.
    committed: bool,
    /// Secrets a batch call read, each recorded with an event of its own
    /// ([`add_secret_event`]) when the call succeeds.
    secrets_read: Vec<(SecretsManagerOp, String)>,
    /// The secret owner's scope, when another account's call acts there ([`deliver_also_to`]).
    also: Option<Scope>,
    /// The ARN of the secret the call resolved ([`CallRecord::resolved_secret`]), listed in
    /// the event's `resources` if the call succeeds.
    resolved: Option<String>,
}

/// The audit record of one call. Begun once the caller is known ([`CallRecord::begin`]),
/// completed as the call goes (its request, the secrets a batch read, the owner's trail),
/// then written with the change it records (`App::write`, through `CallRecord::for_write`)
/// or once the call ends ([`CallRecord::conclude`]). It travels in the call's
/// `RequestContext`, so every stage that adds to it takes it as an argument. The lock is
/// never contended: a call runs on one thread at a time; it only lets the context cross to
/// the store's writer thread.
#[derive(Default)]
pub struct CallRecord(Mutex<Option<Box<Pending>>>);

impl std::fmt::Debug for CallRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallRecord")
    }
}

/// Where a call came from, as its event records it.
#[derive(Debug, Clone, Default)]
pub struct Source {
    pub ip: Option<IpAddr>,
    pub user_agent: String,
    /// Made through the console: marked as CloudTrail marks console calls.
    pub console: bool,
}

impl Source {
    /// The source of a request that came over the wire.
    pub fn of(raw: &RawRequest) -> Source {
        Source {
            ip: raw.source_ip,
            user_agent: header(raw, "user-agent").unwrap_or("").to_string(),
            console: false,
        }
    }
}

/// `userIdentity` of a verified caller, or (with `--dev`, where nothing is verified)
/// the root identity of the account the access key maps to.
pub fn identity(who: Option<&Authenticated>, ctx: &RequestContext) -> UserIdentity {
    // `--dev`: credentials STS issued in `--dev` are recorded as the principal they act as.
    if let (None, Some(p)) = (who, &ctx.dev_caller) {
        return principal_identity(p, &ctx.access_key_id);
    }
    match who {
        Some(who) => UserIdentity {
            session_context: session_context(&who.caller),
            ..principal_identity(&who.caller.principal, &who.access_key_id)
        },
        None => UserIdentity {
            kind: "Root".to_string(),
            principal_id: Some(ctx.scope.account.clone()),
            arn: Some(coffer_auth::principal::account_root_arn(
                ctx.scope.partition(),
                &ctx.scope.account,
            )),
            account_id: Some(ctx.scope.account.clone()),
            access_key_id: Some(ctx.access_key_id.clone()),
            user_name: None,
            invoked_by: None,
            session_context: None,
        },
    }
}

/// CloudTrail's `sessionContext` of a federated user: the IAM user whose
/// GetFederationToken issued the session, and when.
fn session_context(caller: &crate::iam::Caller) -> Option<serde_json::Value> {
    let issuer = caller.session_issuer.as_ref()?;
    let mut context = serde_json::json!({
        "sessionIssuer": {
            "type": "IAMUser",
            "principalId": issuer.user_id,
            "arn": issuer.arn,
            "accountId": issuer.account,
            "userName": issuer.name,
        },
        "attributes": {"mfaAuthenticated": "false"},
    });
    if let Some(issued_ms) = caller.session_issued_ms {
        context["attributes"]["creationDate"] =
            serde_json::Value::String(coffer_auth::time::format_iso8601(issued_ms));
    }
    Some(context)
}

/// How CloudTrail names `p` signing with `access_key_id`: an assumed role, an account's
/// root or an IAM user.
fn principal_identity(p: &coffer_auth::principal::Principal, access_key_id: &str) -> UserIdentity {
    let root = p.is_account_root();
    let kind = if p.is_assumed_role() {
        "AssumedRole"
    } else if p.is_federated_user() {
        "FederatedUser"
    } else if root {
        "Root"
    } else {
        "IAMUser"
    };
    UserIdentity {
        kind: kind.to_string(),
        principal_id: Some(p.user_id.clone()),
        arn: Some(p.arn.clone()),
        account_id: Some(p.account.clone()),
        access_key_id: Some(access_key_id.to_string()),
        user_name: (!root && !p.is_assumed_role() && !p.is_federated_user())
            .then(|| p.name.clone()),
        invoked_by: None,
        session_context: None,
    }
}

fn header<'a>(raw: &'a RawRequest, name: &str) -> Option<&'a str> {
    raw.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}

fn source_ip(ip: Option<IpAddr>) -> String {
    ip.map(|ip| ip.to_string()).unwrap_or_else(|| "unknown".to_string())
}

/// What an event says was called: an [`Operation`], or (for a query-protocol request
/// naming an action no service has) the name as it was sent, recorded and never matched.
struct EventName<'a> {
    source: &'a str,
    name: &'a str,
    read_only: bool,
}

impl CallRecord {
    /// Starts the record of a call of `op` by `identity` in the caller's scope.
    pub fn begin(
        scope: &Scope,
        request_id: &str,
        identity: UserIdentity,
        source: &Source,
        op: Operation,
        model: Option<&ServiceModel>,
    ) -> CallRecord {
        let name =
            EventName { source: op.event_source(), name: op.name(), read_only: op.read_only() };
        CallRecord::begin_named(scope, request_id, identity, source, name, model)
    }

    /// Starts the record of a query-protocol call naming an action `service` does not
    /// have: recorded under the name as sent (cut by the caller), never matched.
    pub fn begin_unknown(
        scope: &Scope,
        request_id: &str,
        identity: UserIdentity,
        from: &Source,
        service: Service,
        action: &str,
    ) -> CallRecord {
        let name = EventName { source: service.event_source(), name: action, read_only: false };
        CallRecord::begin_named(scope, request_id, identity, from, name, None)
    }

    fn begin_named(
        scope: &Scope,
        request_id: &str,
        identity: UserIdentity,
        from: &Source,
        EventName { source, name: op, read_only }: EventName<'_>,
        model: Option<&ServiceModel>,
    ) -> CallRecord {
        let now = clock::now_ms();
        let event = Event {
            event_version: EVENT_VERSION.to_string(),
            user_identity: identity,
            event_time: coffer_audit::format_iso8601(now),
            event_source: source.to_string(),
            event_name: op.to_string(),
            aws_region: scope.region.clone(),
            source_ip_address: source_ip(from.ip),
            // CloudTrail records a console call's agent as "AWS Internal".
            user_agent: if from.console {
                "AWS Internal".to_string()
            } else {
                event::cap_string(from.user_agent.clone())
            },
            error_code: None,
            error_message: None,
            request_parameters: Value::Null,
            response_elements: Value::Null,
            request_id: Some(request_id.to_string()),
            event_id: uuid::Uuid::new_v4().to_string(),
            read_only,
            resources: Vec::new(),
            event_type: "AwsApiCall".to_string(),
            management_event: true,
            recipient_account_id: scope.account.clone(),
            session_credential_from_console: from.console.then(|| "true".to_string()),
            event_category: "Management".to_string(),
        };
        let sensitive = model.map(|m| m.sensitive_set(op)).unwrap_or_default();
        // The embedded models are 'static; which one is named by the event source.
        let model = model.and_then(|_| match source {
            "secretsmanager.amazonaws.com" => Some(ServiceModel::secretsmanager()),
            "kms.amazonaws.com" => Some(ServiceModel::kms()),
            _ => None,
        });
        let pending = Pending {
            scope: scope.clone(),
            time_ms: now,
            event,
            sensitive,
            model,
            committed: false,
            secrets_read: Vec::new(),
            also: None,
            resolved: None,
        };
        CallRecord(Mutex::new(Some(Box::new(pending))))
    }
}

/// The events of the secrets a successful batch call read, made from the call's own.
fn secret_events(call: &Event, secrets_read: Vec<(SecretsManagerOp, String)>) -> Vec<Event> {
    secrets_read
        .into_iter()
        .map(|(name, arn)| {
            let mut event = call.clone();
            event.event_name = name.name().to_string();
            event.read_only = name.read_only();
            event.event_id = uuid::Uuid::new_v4().to_string();
            event.request_parameters = serde_json::json!({ "secretId": arn });
            event.response_elements = Value::Null;
            event.resources = Vec::new();
            add_resources(&mut event);
            event
        })
        .collect()
}

/// Appends `event` to the chain of `scope` and, when `also` names another scope, a copy
/// addressed to that account to its chain (same event id).
#[allow(clippy::too_many_arguments)] // the event, where it goes, and its prepared JSON
fn append_delivered(
    app: &App,
    tx: &mut dyn WriteTxn,
    heads: &mut Heads,
    scope: &Scope,
    also: Option<&Scope>,
    time_ms: i64,
    event: &Event,
    canonical: Option<&chain::Prepared>,
) -> Result<(), AwsError> {
    append_and_stream(app, tx, heads, scope, time_ms, event, canonical)?;
    if let Some(owner) = also.filter(|owner| *owner != scope) {
        let mut copy = event.clone();
        copy.recipient_account_id = owner.account.clone();
        append_and_stream(app, tx, heads, owner, time_ms, &copy, None)?;
    }
    Ok(())
}

/// Redacted parameters; an empty object is written as `null`, as CloudTrail does.
fn parameters(body: &Value, sensitive: &BTreeSet<String>) -> Value {
    match event::redact_parameters(body, sensitive) {
        Value::Object(m) if m.is_empty() => Value::Null,
        v => v,
    }
}

/// Response elements a mutating call built itself (the IAM API's, read in the transaction
/// of its change: `iam_api::elements`), under the answer's member names; redacted and
/// capped like any. A type of its own, so no other write's result is taken for them.
#[derive(serde::Serialize)]
#[serde(transparent)]
pub(crate) struct ResponseElements(pub Value);

/// The response elements of a mutating call, from the value its write transaction
/// produced, when that value is the operation's response.
fn response_of(result: &dyn Any, sensitive: &BTreeSet<String>) -> Value {
    fn as_json<T: serde::Serialize + 'static>(r: &dyn Any) -> Option<Value> {
        r.downcast_ref::<T>().and_then(|v| serde_json::to_value(v).ok())
    }
    let found = as_json::<sm::SecretRefResponse>(result)
        .or_else(|| as_json::<sm::DeleteSecretResponse>(result))
        .or_else(|| as_json::<sm::EmptyResponse>(result))
        .or_else(|| as_json::<sm::CreateSecretResponse>(result))
        .or_else(|| as_json::<sm::ReplicationResponse>(result))
        .or_else(|| as_json::<sm::ArnResponse>(result))
        .or_else(|| as_json::<ResponseElements>(result).filter(|v| !v.is_null()));
    found
        .map(|v| event::cap_parameters(parameters(&v, sensitive), event::MAX_PARAMETERS_BYTES))
        .unwrap_or(Value::Null)
}

/// Whether `s` is a Secrets Manager ARN, in any partition.
fn is_secret_arn(s: &str) -> bool {
    coffer_core::Partition::of_arn(s)
        .is_some_and(|p| s[4 + p.as_str().len()..].starts_with(":secretsmanager:"))
}

/// Adds the secret an event names to its `resources`.
fn add_resources(event: &mut Event) {
    let arn = [&event.response_elements, &event.request_parameters].into_iter().find_map(|doc| {
        ["aRN", "arn", "secretId"]
            .iter()
            .find_map(|k| doc.get(k).and_then(Value::as_str))
            .filter(|s| is_secret_arn(s))
            .map(str::to_string)
    });
    if let Some(arn) = arn {
        add_secret_resource(event, arn);
    }
}

/// Lists the secret `arn` in the event's `resources`, once.
fn add_secret_resource(event: &mut Event, arn: String) {
    if !event.resources.iter().any(|r| r.arn == arn) {
        let account = arn.split(':').nth(4).map(str::to_string);
        event.resources.push(Resource {
            arn,
            account_id: account,
            kind: "AWS::SecretsManager::Secret".to_string(),
        });
    }
}

/// The error code CloudTrail records: `AccessDenied` for authorization failures, the
/// exception name otherwise.
fn error_code(e: &AwsError) -> String {
    match e.code {
        ErrorCode::AccessDenied => "AccessDenied".to_string(),
        code => code.as_str().to_string(),
    }
}

/// The chain heads a transaction has moved, stored once when it is done: a batch of
/// events reads and writes each chain's head once instead of once per event (and, with
/// a chain key, checks and computes each head's MAC once).
pub(crate) struct Heads<'k> {
    moved: HashMap<String, Head>,
    key: Option<&'k ChainKey>,
    /// The node whose chains these are (`None`: each scope's single chain).
    node: Option<&'k str>,
    /// The form of the records appended.
    form: StoredForm,
    /// The keyed heads this process stored last (`None`: none remembered).
    sealed: Option<&'k SealedHeads>,
    /// Where the `--audit-log` lines of the events appended go until the write commits
    /// (`None`: the write collects none, and each line is written at once).
    lines: Option<&'k mut Lines>,
    /// The KMS keys the appended events used, stored with the heads (`kms_last_use`).
    last_uses: crate::kms_last_use::LastUses,
}

impl<'k> Heads<'k> {
    /// Heads keyed with `key` (the app's chain key, if it has one).
    #[cfg(test)]
    pub(crate) fn new(key: Option<&'k ChainKey>) -> Heads<'k> {
        Heads {
            moved: HashMap::new(),
            key,
            node: None,
            form: StoredForm::Compact,
            sealed: None,
            lines: None,
            last_uses: Default::default(),
        }
    }

    /// These heads, keeping the log lines of the events appended in `lines` (the running
    /// attempt's), to be written once the write commits.
    pub(crate) fn collecting<'a>(self, lines: &'a mut Lines) -> Heads<'a>
    where
        'k: 'a,
    {
        Heads { lines: Some(lines), ..self }
    }

    /// The chain these heads append to in `scope`.
    fn chain_of(&self, scope: &Scope) -> String {
        chain::node_chain_id(&scope.account, &scope.region, self.node)
    }

    /// The head of chain `id` as this transaction has left it.
    ///
    /// With a chain key, a stored head must carry its MAC: a head rewritten without the
    /// key (newest events dropped) is never continued, since the next keyed event and
    /// head would launder the cut. The call then fails closed, like any audit failure.
    fn current(&mut self, tx: &dyn WriteTxn, id: &str) -> Result<Option<Head>, StoreError> {
        if let Some(head) = self.moved.get(id) {
            return Ok(Some(head.clone()));
        }
        let stored = tx.record(HEAD_KIND, id)?;
        let head = self.stored_head(tx, id, stored)?;
        // Behind a head this process committed: an older head (its MAC genuine) put back,
        // or the chain removed, with the newest events. Continuing would hide the cut.
        let committed = self.sealed.and_then(|sealed| sealed.committed_seq(id));
        if let Some(committed) = committed
            && head.as_ref().is_none_or(|head| head.seq < committed)
        {
            return Err(StoreError::Backend(format!(
                "the audit chain head of {id} is behind the head this server committed (event {committed}): \
                 its newest events were removed; refusing to continue the chain (run `coffer audit verify`)"
            )));
        }
        Ok(head)
    }

    /// The head of chain `id` stored as `stored`, checked as [`Heads::current`] says.
    fn stored_head(
        &self,
        tx: &dyn WriteTxn,
        id: &str,
        stored: Option<Vec<u8>>,
    ) -> Result<Option<Head>, StoreError> {
        let forged = || {
            StoreError::Backend(format!(
                "the audit chain head of {id} does not verify under the chain key; refusing to continue the chain (run `coffer audit verify`)"
            ))
        };
        // The bytes this process sealed last for this chain: their MAC is known good.
        if let (Some(bytes), Some(sealed), Some(_)) = (&stored, self.sealed, self.key)
            && let Some(head) = sealed.known(id, bytes)
        {
            return Ok(Some(head));
        }
        if let Some(bytes) = stored
            && let Ok(head) = serde_json::from_slice::<Head>(&bytes)
        {
            if let Some(key) = self.key
                && !head.mac_is_valid(id, key)
            {
                return Err(forged());
            }
            return Ok(Some(head));
        }
        // Without a head (never written, or removed), continue after the newest stored
        // event rather than overwrite the chain from its start; with a chain key, a chain
        // that has events but lost its head is refused as above.
        let prefix = chain::chain_event_prefix(id);
        let newest = tx
            .records(EVENT_KIND, &prefix, None, 1)?
            .first()
            .and_then(|(_, bytes)| Record::from_bytes(bytes))
            .map(|r| r.head());
        if newest.is_some() && self.key.is_some() {
            return Err(forged());
        }
        Ok(newest)
    }

    /// Stores every moved head, with its MAC when keyed.
    pub(crate) fn store(self, tx: &mut dyn WriteTxn) -> Result<(), StoreError> {
        self.last_uses.store(tx, self.node)?;
        let mut sealed = Vec::new();
        let mut moved = Vec::new();
        for (id, head) in self.moved {
            moved.push((id.clone(), head.seq));
            let head = match self.key {
                Some(key) => head.sealed(&id, key),
                None => head,
            };
            let bytes = serde_json::to_vec(&head).expect("heads serialize");
            tx.put_record(HEAD_KIND, &id, &bytes)?;
            if self.key.is_some() && self.sealed.is_some() {
                sealed.push((id, bytes, head));
            }
        }
        // Remembered before the commit: if the transaction rolls back, the stored bytes
        // differ from these and are checked in full when next read.
        if let Some(known) = self.sealed
            && !sealed.is_empty()
        {
            known.remember(sealed);
        }
        // Their sequence numbers count once the store acknowledged the commit (a head of a
        // transaction that rolled back is no floor): the lines report them then. Heads
        // without lines learn no floor at all: here, before the commit, a floor from a
        // transaction that then rolls back would refuse the chain's genuine head for good.
        if let Some(lines) = self.lines {
            lines.keep_heads(moved);
        }
        Ok(())
    }
}

/// The wrapped-key id of the audit chain key.
pub const CHAIN_KEY_ID: &str = "audit-chain-key";
const CHAIN_KEY_CONTEXT: &[u8] = b"coffer audit chain key v2";

/// Loads the audit chain key (wrapped under `master`), creating it on first use. When it
/// is created, the heads of chains written before chains were keyed are sealed under it,
/// in the same transaction: that is the one moment an unkeyed head is trusted, so a head
/// rewritten later without the key is never sealed. Returns the key and how many heads
/// were sealed. Call after the master key was checked against the store.
pub fn open_chain_key(
    master: &coffer_crypto::MasterKey,
    store: &dyn coffer_store::Store,
) -> Result<(ChainKey, usize), String> {
    let mut out = None;
    let mut failure = None;
    store
        .write(&mut |tx| {
            if let Some(wrapped) = tx.wrapped_key(CHAIN_KEY_ID)? {
                match master.unwrap_key(&wrapped, CHAIN_KEY_CONTEXT) {
                    Ok(key) => out = Some((ChainKey::new(key.expose()), 0)),
                    Err(e) => {
                        failure = Some(format!("cannot unwrap the audit chain key: {e}"));
                        return Err(StoreError::Aborted);
                    }
                }
                return Ok(());
            }
            let material = coffer_crypto::KeyMaterial::generate();
            tx.put_wrapped_key(CHAIN_KEY_ID, &master.wrap_key(&material, CHAIN_KEY_CONTEXT))?;
            let key = ChainKey::new(material.expose());
            let mut sealed = 0;
            // A page of heads is read, then its unkeyed ones rewritten, before the next.
            let mut pages = coffer_store::RecordPages::new(HEAD_KIND, "", 500);
            while let Some(page) = pages.next_page(&*tx)? {
                for (id, bytes) in page {
                    if let Ok(head) = serde_json::from_slice::<Head>(&bytes)
                        && head.mac.is_none()
                    {
                        let head = head.sealed(&id, &key);
                        tx.put_record(
                            HEAD_KIND,
                            &id,
                            &serde_json::to_vec(&head).expect("heads serialize"),
                        )?;
                        sealed += 1;
                    }
                }
            }
            out = Some((key, sealed));
            Ok(())
        })
        .map_err(|e| {
            failure.take().unwrap_or_else(|| format!("cannot open the audit chain key: {e}"))
        })?;
    out.ok_or_else(|| "the audit chain key transaction did not run".to_string())
}

#[cfg(test)]
mod chain_key_sealing_tests {
    use super::*;
    use coffer_store::{MemoryStore, Store};

    /// Making the chain key seals every unkeyed head, on every page of heads (500 a page).
    #[test]
    fn every_unkeyed_head_is_sealed_when_the_chain_key_is_made() {
        let store = MemoryStore::new();
        let ids: Vec<String> = (0..1234).map(|n| format!("1/r@n{n:04}")).collect();
        store
            .write(&mut |tx| {
                for id in &ids {
                    let head = Head { seq: 1, hash: chain::GENESIS.to_string(), mac: None };
                    tx.put_record(HEAD_KIND, id, &serde_json::to_vec(&head).unwrap())?;
                }
                Ok(())
            })
            .unwrap();
        let master = coffer_crypto::MasterKey::generate();
        let (key, sealed) = open_chain_key(&master, &store).unwrap();
        assert_eq!(sealed, ids.len());
        store
            .read(&mut |tx| {
                for id in &ids {
                    let head: Head = serde_json::from_slice(&tx.record(HEAD_KIND, id)?.unwrap())
                        .expect("a head");
                    assert!(head.mac_is_valid(id, &key), "{id} was not sealed");
                }
                Ok(())
            })
            .unwrap();
        // Once made, the key is only opened: nothing is sealed again.
        assert_eq!(open_chain_key(&master, &store).unwrap().1, 0);
    }
}

/// The audit chain key of a store, read only (for `coffer audit verify`): `None` when the
/// store has none (its chains were never keyed).
pub fn load_chain_key(
    master: &coffer_crypto::MasterKey,
    tx: &dyn ReadTxn,
) -> Result<Option<ChainKey>, String> {
    let wrapped =
        tx.wrapped_key(CHAIN_KEY_ID).map_err(|e| format!("cannot read the store: {e}"))?;
    wrapped
        .map(|wrapped| {
            master
                .unwrap_key(&wrapped, CHAIN_KEY_CONTEXT)
                .map(|key| ChainKey::new(key.expose()))
                .map_err(|e| format!("cannot unwrap the audit chain key with this master key: {e}"))
        })
        .transpose()
}

/// Re-wraps the audit chain key from `old` to `new` master key, in the transaction of a
/// master-key rotation (`crate::rotate_master_key`), so the chains keep verifying.
/// Returns whether anything changed; a no-op when already done or when there is no key.
pub(crate) fn rewrap_chain_key_in(
    tx: &mut dyn WriteTxn,
    old: &coffer_crypto::MasterKey,
    new: &coffer_crypto::MasterKey,
) -> Result<bool, String> {
    let Some(wrapped) = tx.wrapped_key(CHAIN_KEY_ID).map_err(|e| e.to_string())? else {
        return Ok(false);
    };
    if new.unwrap_key(&wrapped, CHAIN_KEY_CONTEXT).is_ok() {
        return Ok(false);
    }
    let key = old
        .unwrap_key(&wrapped, CHAIN_KEY_CONTEXT)
        .map_err(|e| format!("cannot unwrap the audit chain key: {e}"))?;
    tx.put_wrapped_key(CHAIN_KEY_ID, &new.wrap_key(&key, CHAIN_KEY_CONTEXT))
        .map_err(|e| e.to_string())?;
    Ok(true)
}

/// `rewrap_chain_key_in` in a transaction of its own.
pub fn rewrap_chain_key(
    store: &dyn coffer_store::Store,
    old: &coffer_crypto::MasterKey,
    new: &coffer_crypto::MasterKey,
) -> Result<bool, String> {
    let mut outcome = Ok(false);
    store
        .write(&mut |tx| {
            outcome = rewrap_chain_key_in(tx, old, new);
            if outcome.is_err() { Err(StoreError::Aborted) } else { Ok(()) }
        })
        .or_else(
            |e| if outcome.is_err() { Ok(()) } else { Err(format!("the store failed: {e}")) },
        )?;
    outcome
}

#[cfg(test)]
mod chain_key_tests {
    use super::*;
    use coffer_crypto::MasterKey;
    use coffer_store::{MemoryStore, Store};

    fn scope() -> Scope {
        Scope::new("111122223333", "us-east-1")
    }

    fn put_head(store: &dyn Store, head: &Head) {
        let id = chain::chain_id("111122223333", "us-east-1");
        store
            .write(&mut |tx| tx.put_record(HEAD_KIND, &id, &serde_json::to_vec(head).unwrap()))
            .unwrap();
    }

    fn current(store: &dyn Store, key: Option<&ChainKey>) -> Result<Option<Head>, StoreError> {
        let id = chain::chain_id("111122223333", "us-east-1");
        let mut out = None;
        let result = store.write(&mut |tx| {
            out = Some(Heads::new(key).current(tx, &id));
            Ok(())
        });
        result.unwrap();
        out.unwrap()
    }

    #[test]
    fn the_chain_key_seals_existing_heads_once_when_it_is_created() {
        let store = MemoryStore::new();
        let master = MasterKey::generate();
        let legacy = Head { seq: 3, hash: "ab".repeat(32), mac: None };
        put_head(&store, &legacy);
        let (key, sealed) = open_chain_key(&master, &store).unwrap();
        assert_eq!(sealed, 1);
        let head = current(&store, Some(&key)).unwrap().unwrap();
        assert!(head.mac_is_valid("111122223333/us-east-1", &key));
        // Later, a head written without the key is never sealed, and never continued.
        put_head(&store, &legacy);
        let (again, sealed) = open_chain_key(&master, &store).unwrap();
        assert_eq!(sealed, 0);
        let refused = current(&store, Some(&again)).unwrap_err();
        assert!(refused.to_string().contains("does not verify"), "{refused}");
        // Another master key cannot open it.
        assert!(open_chain_key(&MasterKey::generate(), &store).is_err());
    }

    #[test]
    fn the_chain_key_moves_with_a_master_key_rotation() {
        let store = MemoryStore::new();
        let (old, new) = (MasterKey::generate(), MasterKey::generate());
        let (key, _) = open_chain_key(&old, &store).unwrap();
        assert!(rewrap_chain_key(&store, &old, &new).unwrap());
        assert!(!rewrap_chain_key(&store, &old, &new).unwrap());
        let (moved, _) = open_chain_key(&new, &store).unwrap();
        let head = Head { seq: 1, hash: "x".into(), mac: None }.sealed("c", &key);
        assert!(head.mac_is_valid("c", &moved));
    }

    #[test]
    fn a_keyed_chain_that_lost_its_head_is_not_continued() {
        let store = MemoryStore::new();
        let (key, _) = open_chain_key(&MasterKey::generate(), &store).unwrap();
        assert_eq!(current(&store, Some(&key)).unwrap(), None);
        store
            .write(&mut |tx| {
                let mut heads = Heads::new(Some(&key));
                let event = service_event(&scope(), "secretsmanager", "RotationStarted", "arn", 0);
                append_in(tx, &mut heads, &scope(), 0, &event, None)?;
                heads.store(tx)
            })
            .unwrap();
        assert_eq!(current(&store, Some(&key)).unwrap().unwrap().seq, 1);
        let id = chain::chain_id("111122223333", "us-east-1");
        store.write(&mut |tx| tx.delete_record(HEAD_KIND, &id)).unwrap();
        assert!(current(&store, Some(&key)).is_err());
        // Without a key (an unkeyed store), the chain continues after its newest event.
        assert_eq!(current(&store, None).unwrap().unwrap().seq, 1);
    }

    /// The heads an auditor stored itself are not checked again, but any other bytes in
    /// their place are: a head rewritten without the key is refused even right after this
    /// process stored the chain's head.
    #[test]
    fn a_rewritten_head_is_refused_after_the_auditor_stored_its_own() {
        let store = MemoryStore::new();
        let (key, _) = open_chain_key(&MasterKey::generate(), &store).unwrap();
        let auditor = Auditor::new(Settings::default());
        auditor.set_chain_key(key.clone());
        let id = chain::chain_id("111122223333", "us-east-1");
        let append = |auditor: &Auditor| {
            store.write(&mut |tx| {
                let mut heads = auditor.heads();
                let event = service_event(&scope(), "secretsmanager", "RotationStarted", "arn", 0);
                append_in(tx, &mut heads, &scope(), 0, &event, None)?;
                heads.store(tx)
            })
        };
        append(&auditor).unwrap();
        append(&auditor).unwrap();
        let stored = current(&store, Some(&key)).unwrap().unwrap();
        assert_eq!(stored.seq, 2);
        // The newest event dropped and the head moved back without the key: its MAC is
        // the old head's (seq 2), or none.
        let cut = Head { seq: 1, ..stored.clone() };
        put_head(&store, &cut);
        assert!(append(&auditor).is_err(), "a head with another's MAC was continued");
        put_head(&store, &Head { mac: None, ..cut });
        assert!(append(&auditor).is_err(), "a head without a MAC was continued");
        // Its own head, put back byte for byte, is continued.
        put_head(&store, &stored);
        append(&auditor).unwrap();
        let mut out = None;
        store
            .write(&mut |tx| {
                out = Some(auditor.heads().current(tx, &id));
                Ok(())
            })
            .unwrap();
        assert_eq!(out.unwrap().unwrap().unwrap().seq, 3);
    }

    /// An older head of the chain, genuine (its MAC is good: this process stored it), put
    /// back with the events after it removed, would drop the chain's newest events where
    /// neither the MAC nor `coffer audit verify` can see it (review 11, finding 01). A
    /// server that committed a later head refuses to continue the chain from it; a
    /// transaction that rolled back moves nothing.
    #[test]
    fn an_older_genuine_head_put_back_is_refused() {
        let store = MemoryStore::new();
        let (key, _) = open_chain_key(&MasterKey::generate(), &store).unwrap();
        let auditor = Auditor::new(Settings::default());
        auditor.set_chain_key(key.clone());
        let id = chain::chain_id("111122223333", "us-east-1");
        // One append as production makes it: lines collected, committed after the store.
        let append = |auditor: &Auditor, fail: bool| {
            let mut lines = Lines::default();
            let written = store.write(&mut |tx| {
                let mut heads = auditor.heads().collecting(lines.attempt());
                let event = service_event(&scope(), "secretsmanager", "RotationStarted", "arn", 0);
                append_in(tx, &mut heads, &scope(), 0, &event, None)?;
                heads.store(tx)?;
                if fail { Err(StoreError::Aborted) } else { Ok(()) }
            });
            if written.is_ok() {
                lines.committed(auditor);
            }
            written
        };
        let head_bytes = || {
            let mut out = None;
            store
                .read(&mut |tx| {
                    out = tx.record(HEAD_KIND, &id)?;
                    Ok(())
                })
                .unwrap();
            out.unwrap()
        };
        append(&auditor, false).unwrap();
        let first = head_bytes();
        // A transaction that rolls back after storing its head moves nothing.
        assert!(append(&auditor, true).is_err());
        append(&auditor, false).unwrap();
        append(&auditor, false).unwrap();
        // Events 2 and 3 removed, the head of event 1 put back byte for byte.
        store
            .write(&mut |tx| {
                for seq in [2, 3] {
                    tx.delete_record(EVENT_KIND, &chain::chain_event_key(&id, seq))?;
                }
                tx.put_record(HEAD_KIND, &id, &first)
            })
            .unwrap();
        assert!(append(&auditor, false).is_err(), "the chain was continued after a rollback");
        // The whole chain removed (head and events): not started again from its genesis.
        store
            .write(&mut |tx| {
                tx.delete_record(EVENT_KIND, &chain::chain_event_key(&id, 1))?;
                tx.delete_record(HEAD_KIND, &id)
            })
            .unwrap();
        assert!(append(&auditor, false).is_err(), "a removed chain was started again");
        // Another process (a restart) has no memory of it: the limit of the check.
        let restarted = Auditor::new(Settings::default());
        restarted.set_chain_key(key);
        append(&restarted, false).unwrap();
    }

    /// Heads stored without a line collector cannot know whether their transaction
    /// commits, so they learn no floor: one learnt before a rollback would refuse the
    /// chain's genuine head from then on.
    #[test]
    fn heads_without_lines_learn_no_floor_from_a_rolled_back_write() {
        let store = MemoryStore::new();
        let (key, _) = open_chain_key(&MasterKey::generate(), &store).unwrap();
        let auditor = Auditor::new(Settings::default());
        auditor.set_chain_key(key);
        let append = |fail: bool| {
            store.write(&mut |tx| {
                let mut heads = auditor.heads();
                let event = service_event(&scope(), "secretsmanager", "RotationStarted", "arn", 0);
                append_in(tx, &mut heads, &scope(), 0, &event, None)?;
                heads.store(tx)?;
                if fail { Err(StoreError::Aborted) } else { Ok(()) }
            })
        };
        append(false).unwrap();
        assert!(append(true).is_err());
        append(false).expect("the chain's genuine head was refused after a rolled-back write");
    }
}

/// Appends `event` to its chain in `tx` after the chain's head, which is kept in `heads`
/// to be stored by the caller. Returns the event's sequence number in that chain.
/// `canonical`: the event's canonical JSON (and compressed form), when the caller made
/// it before the transaction ([`chain::Prepared`]). The call paths use
/// [`append_retiring`]; this form is the tests'.
#[cfg(test)]
fn append_in(
    tx: &mut dyn WriteTxn,
    heads: &mut Heads,
    scope: &Scope,
    time_ms: i64,
    event: &Event,
    canonical: Option<&chain::Prepared>,
) -> Result<u64, StoreError> {
    append_retiring(tx, heads, scope, time_ms, event, canonical, None).map(|(seq, _)| seq)
}

/// Appends `event` as `append_in` (the tests' form) says, and gives the key of the event
/// that falls out of a retention limit of `keep` events (if one does), made from the chain
/// id at hand.
#[allow(clippy::too_many_arguments)] // append_in's, and the retention limit
fn append_retiring(
    tx: &mut dyn WriteTxn,
    heads: &mut Heads,
    scope: &Scope,
    time_ms: i64,
    event: &Event,
    canonical: Option<&chain::Prepared>,
    keep: Option<u64>,
) -> Result<(u64, Option<String>), StoreError> {
    let id = heads.chain_of(scope);
    let head = heads.current(tx, &id)?;
    let (bytes, head) = match canonical {
        Some(prepared) => {
            chain::seal_prepared(heads.form, head.as_ref(), time_ms, prepared, heads.key)
        }
        None => chain::seal_to_bytes_as(heads.form, head.as_ref(), time_ms, event, heads.key),
    };
    let seq = head.seq;
    tx.put_record(EVENT_KIND, &chain::chain_event_key(&id, seq), &bytes)?;
    let retired =
        keep.filter(|keep| seq > *keep).map(|keep| chain::chain_event_key(&id, seq - keep));
    heads.moved.insert(id, head);
    heads.last_uses.note(scope, time_ms, event);
    Ok((seq, retired))
}

/// Appends to the store inside `tx` and keeps the event's log line for after the commit.
/// A failure (of the store, or of the log's check) is an error (aborting the transaction)
/// unless the trail is fail-open.
fn append_and_stream(
    app: &App,
    tx: &mut dyn WriteTxn,
    heads: &mut Heads,
    scope: &Scope,
    time_ms: i64,
    event: &Event,
    canonical: Option<&chain::Prepared>,
) -> Result<(), AwsError> {
    let fail = |what: &str, cause: String| {
        tracing::error!(event_id = %event.event_id, cause = %cause, "could not write the audit event to the {what}");
        crate::metrics::audit_write_failures(1);
        if app.audit.settings.fail_open { Ok(()) } else { Err(AwsError::internal()) }
    };
    // With a retention limit, each new event retires the one that falls out of it.
    let keep = app.audit.settings.retain_events;
    match append_retiring(tx, heads, scope, time_ms, event, canonical, keep) {
        Ok((_, retired)) => {
            if let Some(old) = retired
                && let Err(e) = tx.delete_record(EVENT_KIND, &old)
            {
                return fail("store", e.to_string());
            }
        }
        // The store asked for the transaction to be run again (a serialization conflict on
        // PostgreSQL): not a failure of the trail, and never committed without the event.
        Err(StoreError::Aborted) => return Err(crate::store_error(StoreError::Aborted)),
        Err(e) => return fail("store", e.to_string()),
    }
    // The line is written once the transaction commits (the `Lines` the heads carry);
    // here the log is only checked, so that a log that cannot take it stops the call
    // unchanged.
    let file = app.audit.log_file();
    if file.enabled() {
        let line = serde_json::to_vec(event).expect("events serialize");
        if let Err(e) = file.check(line.len() as u64 + 1) {
            fail("audit log", e.to_string())?;
        }
        match heads.lines.as_deref_mut() {
            Some(lines) => lines.keep(line),
            // Appended by a write that does not collect lines: written now.
            None => file.write_committed(vec![line]),
        }
    }
    Ok(())
}

/// [`append_and_stream`] of one event, its chain head stored at once, its log line kept
/// with `tx`'s attempt.
fn append_alone(
    app: &App,
    tx: &mut Txn,
    scope: &Scope,
    time_ms: i64,
    event: &Event,
) -> Result<(), AwsError> {
    let mut heads = app.audit.heads().collecting(tx.lines);
    append_and_stream(app, tx.tx, &mut heads, scope, time_ms, event, None)?;
    heads.store(tx.tx).map_err(crate::store_error)
}

/// The event a mutating call's write transaction must append, taken from the thread
/// running the call before the transaction starts: the store may run the transaction on
/// a thread of its own.
pub(crate) struct ForWrite {
    scope: Scope,
    time_ms: i64,
    /// Completed in place by each attempt of the transaction ([`in_transaction`]), which
    /// sets its response and resources anew: one copy of the event per call, not one more
    /// per attempt. The lock is never contended (one transaction at a time uses it); it
    /// lets the store's writer thread borrow it.
    event: Mutex<Event>,
    /// The resources the event named before the transaction (kept by every attempt).
    resources_before: usize,
    sensitive: Arc<BTreeSet<String>>,
    also: Option<Scope>,
}

/// Called by `App::write` inside its transaction once the closure succeeded: appends
/// the event of the mutating call (taken by [`for_write`]), if any, its log line kept with
/// `tx`'s attempt.
pub(crate) fn in_transaction(
    app: &App,
    tx: &mut Txn,
    result: &dyn Any,
    pending: Option<&ForWrite>,
    resolved: Option<String>,
) -> Result<(), AwsError> {
    let Some(pending) = pending else { return Ok(()) };
    let mut event = pending.event.lock().map_err(|_| AwsError::internal())?;
    event.response_elements = response_of(result, &pending.sensitive);
    event.resources.truncate(pending.resources_before);
    add_resources(&mut event);
    if let Some(arn) = resolved {
        add_secret_resource(&mut event, arn);
    }
    crate::kms_elements::complete_kms_write(&mut event, result, &pending.scope);
    let mut heads = app.audit.heads().collecting(tx.lines);
    let also = pending.also.as_ref();
    let tx = &mut *tx.tx;
    append_delivered(app, tx, &mut heads, &pending.scope, also, pending.time_ms, &event, None)?;
    heads.store(tx).map_err(crate::store_error)
}

impl CallRecord {
    /// A record of nothing: for work no client asked for, whose events are written
    /// where it happens (`record_service_event`).
    pub fn none() -> CallRecord {
        CallRecord::default()
    }

    /// The record, also behind a lock a panic poisoned: the call it records may still
    /// answer (the panic caught further up), and a record taken for "no event" would let
    /// that answer out unrecorded (review 10).
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Box<Pending>>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn with(&self, f: impl FnOnce(&mut Pending)) {
        if let Some(pending) = self.lock().as_mut() {
            f(pending);
        }
    }

    /// Notes that the call (BatchGetSecretValue) read the secret `arn` as `name`
    /// (GetSecretValue) would: the secret gets an event of its own, as AWS records one per
    /// secret a batch returns, findable by the secret's ARN.
    pub fn add_secret_event(&self, name: SecretsManagerOp, arn: &str) {
        self.with(|pending| pending.secrets_read.push((name, arn.to_string())));
    }

    /// Also delivers the event to the trail of `owner`, when that is not the caller's
    /// scope: a call another account makes on a secret (through its resource policy) is
    /// recorded in both accounts with one event id, as CloudTrail delivers it, and the
    /// owner's copy names the owner as `recipientAccountId`.
    pub fn deliver_also_to(&self, owner: &Scope) {
        self.with(|pending| {
            if pending.scope != *owner {
                pending.also = Some(owner.clone());
            }
        });
    }

    /// Notes that the call resolved the secret `arn` (it may have named it by name or by a
    /// partial ARN): a successful call lists it in its event's `resources`, so LookupEvents
    /// finds the call by the secret's ARN (`docs/design/audit.md`, "KMS and Secrets
    /// Manager records"). A failed call lists only what its request named: a denied caller
    /// learns no ARN from its own trail.
    pub fn resolved_secret(&self, arn: &str) {
        self.with(|pending| {
            if pending.resolved.as_deref() != Some(arn) {
                pending.resolved = Some(arn.to_string());
            }
        });
    }

    /// The secret the call resolved so far ([`CallRecord::resolved_secret`]).
    pub(crate) fn secret_resolved(&self) -> Option<String> {
        self.lock().as_ref().and_then(|pending| pending.resolved.clone())
    }

    /// Records the request parameters: only the members of the operation's input shape
    /// (the request is not validated yet, and anything else in it is the caller's to fill),
    /// redacted, and capped (`event::cap_parameters`).
    pub fn set_request(&self, body: &Value) {
        self.with(|pending| {
            let known = match pending.model {
                Some(model) => model.input_members_only(&pending.event.event_name, body),
                None if pending.event.event_source == "cloudtrail.amazonaws.com" => {
                    coffer_wire::cloudtrail::input_members_only(body)
                }
                None => Value::Null,
            };
            pending.event.request_parameters = event::cap_parameters(
                parameters(&known, &pending.sensitive),
                event::MAX_PARAMETERS_BYTES,
            );
        });
    }

    /// Records the request parameters of a query-protocol call (STS, the IAM API): the
    /// form's members of the operation's input shape in CloudTrail's JSON shapes, never a
    /// sensitive one (`coffer_wire::query_params`), redacted and capped as any call's.
    pub fn set_query_request(&self, op: Operation, form: &coffer_wire::query_form::Form) {
        let known = coffer_wire::query_params::request_parameters(op, form);
        self.with(|pending| {
            pending.event.request_parameters = event::cap_parameters(
                parameters(&known, &pending.sensitive),
                event::MAX_PARAMETERS_BYTES,
            );
        });
    }

    /// Records the response elements of a call whose answer is not JSON (STS's credentials):
    /// `elements` under the model's member names, redacted (no secret access key or session
    /// token, whatever a caller passes) and capped. Written only if the call succeeds.
    pub fn set_response(&self, elements: &Value) {
        self.with(|pending| {
            pending.event.response_elements = event::cap_parameters(
                parameters(elements, &pending.sensitive),
                event::MAX_PARAMETERS_BYTES,
            );
        });
    }

    /// What [`in_transaction`] will need: the event of a mutating call, unless it has
    /// been committed already. Taken before the transaction starts: the store may run
    /// the transaction on a thread of its own.
    pub(crate) fn for_write(&self) -> Option<ForWrite> {
        let guard = self.lock();
        let pending = guard.as_ref()?;
        if pending.committed || pending.event.read_only {
            return None;
        }
        Some(ForWrite {
            scope: pending.scope.clone(),
            time_ms: pending.time_ms,
            event: Mutex::new(pending.event.clone()),
            resources_before: pending.event.resources.len(),
            sensitive: pending.sensitive.clone(),
            also: pending.also.clone(),
        })
    }

    /// Called by `App::write` once its transaction committed with the event.
    pub(crate) fn committed(&self) {
        self.with(|pending| {
            if !pending.event.read_only {
                pending.committed = true;
            }
        });
    }

    /// Ends the call: writes its event unless it committed with the change, and turns
    /// the call into InternalServiceError if that fails (fail-closed).
    pub fn finish(
        &self,
        app: &App,
        result: Result<Vec<u8>, AwsError>,
    ) -> Result<Vec<u8>, AwsError> {
        if let Some(unwritten) = self.conclude(&result) {
            write_unwritten(app, unwritten)?;
        }
        result
    }

    /// Ends the call and returns its event, when it was not committed with a change and
    /// still has to be written.
    pub fn conclude(&self, result: &Result<Vec<u8>, AwsError>) -> Option<Unwritten> {
        let outcome = match result {
            Ok(bytes) => Ok(bytes.as_slice()),
            Err(e) => Err((error_code(e), e.message.clone())),
        };
        self.take_unwritten(outcome)
    }

    /// [`CallRecord::finish`] for calls whose errors are not `AwsError`s: `Ok(response
    /// body)` or `Err((error code, message))`.
    pub fn finish_outcome(
        &self,
        app: &App,
        outcome: Result<&[u8], (String, String)>,
    ) -> Result<(), AwsError> {
        match self.take_unwritten(outcome) {
            Some(unwritten) => write_unwritten(app, unwritten),
            None => Ok(()),
        }
    }

    /// Completes the event with the call's outcome, unless it committed with the change.
    fn take_unwritten(&self, outcome: Result<&[u8], (String, String)>) -> Option<Unwritten> {
        let pending = *self.lock().take()?;
        if pending.committed {
            return None;
        }
        let mut event = pending.event;
        let succeeded = outcome.is_ok();
        let secret_events = match outcome {
            Ok(_) => secret_events(&event, pending.secrets_read),
            Err(_) => Vec::new(),
        };
        match outcome {
            Ok(bytes) if !event.read_only => {
                event.response_elements = serde_json::from_slice::<Value>(bytes)
                    .map(|v| {
                        event::cap_parameters(
                            parameters(&v, &pending.sensitive),
                            event::MAX_PARAMETERS_BYTES,
                        )
                    })
                    .unwrap_or(Value::Null);
            }
            Ok(bytes) => crate::kms_last_use::add_key_resources(&mut event, bytes),
            Err((code, message)) => {
                // A refused call is kept small: its parameters under a tighter cap, and its
                // message (a ValidationException quotes the values it refused) cut.
                event.request_parameters = event::cap_parameters(
                    std::mem::take(&mut event.request_parameters),
                    event::MAX_FAILED_PARAMETERS_BYTES,
                );
                event.error_code = Some(event::cap_string(code));
                event.error_message = Some(event::cap_string(message));
            }
        }
        add_resources(&mut event);
        if succeeded && let Some(arn) = pending.resolved {
            add_secret_resource(&mut event, arn);
        }
        Some(Unwritten {
            scope: pending.scope,
            time_ms: pending.time_ms,
            event,
            secret_events,
            also: pending.also,
            prepared: None,
        })
    }
}

/// Writes the event [`CallRecord::conclude`] returned, for an async caller: into a memory store
/// at once, else through the appender while the task waits without holding a thread.
pub async fn write_async(app: &App, unwritten: Option<Unwritten>) -> Result<(), AwsError> {
    match unwritten {
        None => Ok(()),
        Some(unwritten) => match app.store.latency() {
            Latency::Memory => write_own(app, &unwritten),
            Latency::LocalDisk | Latency::Network => {
                app.appender.append(unwritten.prepared(app.audit.form)).await
            }
        },
    }
}

/// An event still to be written in a transaction of its own: a read-only call's, a
/// failed call's, or one that changed nothing.
pub struct Unwritten {
    scope: Scope,
    time_ms: i64,
    event: Event,
    /// One event per secret a batch call returned (see [`add_secret_event`]).
    secret_events: Vec<Event>,
    also: Option<Scope>,
    /// The event's record made ready before its write ([`Unwritten::prepared`]).
    prepared: Option<chain::Prepared>,
}

impl Unwritten {
    /// With its event's canonical JSON and compressed form made on the caller's thread:
    /// the appender's write then only chains it (SQLite runs every write on one thread).
    fn prepared(mut self, form: StoredForm) -> Unwritten {
        self.prepared = Some(chain::Prepared::new(form, &self.event));
        self
    }
}

/// Writes an event from a thread that may block: directly into a memory store, else
/// through the appender, which commits it with those of concurrent calls.
pub(crate) fn write_unwritten(app: &App, unwritten: Unwritten) -> Result<(), AwsError> {
    match app.store.latency() {
        Latency::Memory => write_own(app, &unwritten),
        Latency::LocalDisk | Latency::Network => {
            app.appender.append_blocking(unwritten.prepared(app.audit.form))
        }
    }
}

/// Appends an unwritten event inside `tx` (the appender's batch transaction), moving
/// the chain heads in `heads`, which the caller stores once the batch is appended.
pub(crate) fn append_unwritten(
    app: &App,
    tx: &mut dyn WriteTxn,
    heads: &mut Heads,
    unwritten: &Unwritten,
) -> Result<(), AwsError> {
    append_unwritten_with(app, tx, heads, unwritten, unwritten.prepared.as_ref())
}

/// [`append_unwritten`], the call's own event already prepared.
fn append_unwritten_with(
    app: &App,
    tx: &mut dyn WriteTxn,
    heads: &mut Heads,
    unwritten: &Unwritten,
    canonical: Option<&chain::Prepared>,
) -> Result<(), AwsError> {
    let (scope, also) = (&unwritten.scope, unwritten.also.as_ref());
    append_delivered(app, tx, heads, scope, also, unwritten.time_ms, &unwritten.event, canonical)?;
    for event in &unwritten.secret_events {
        append_delivered(app, tx, heads, scope, also, unwritten.time_ms, event, None)?;
    }
    Ok(())
}

/// Writes one event in a transaction of its own, which touches only the trail
/// (`Store::write_trail`): on the memory store it takes the trail's lock alone, so readers
/// of secrets never wait for it. The event's canonical JSON (all of its record but the
/// chain's part) is made before, outside the lock.
fn write_own(app: &App, unwritten: &Unwritten) -> Result<(), AwsError> {
    let canonical = chain::Prepared::new(app.audit.form, &unwritten.event);
    let mut lines = Lines::default();
    let written = app.store.write_trail(&mut |tx| {
        let mut heads = app.audit.heads().collecting(lines.attempt());
        append_unwritten_with(app, tx, &mut heads, unwritten, Some(&canonical))
            .map_err(|_| StoreError::Aborted)
            .and_then(|()| heads.store(tx))
    });
    match written {
        Ok(()) => {
            lines.committed(&app.audit);
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %e, "could not commit the audit event");
            if app.audit.settings.fail_open { Ok(()) } else { Err(AwsError::internal()) }
        }
    }
}

/// Records a call answered before the pipeline: AssumeRoleWithWebIdentity, which is not
/// signed (its token is the credential, and names the account only once verified), with
/// the form's parameters (never the token) and, when it succeeded, `elements` (the
/// credentials' key id and expiry, never their secrets). Its event goes in a transaction
/// of its own; an error means the call must fail (fail-closed).
pub fn record_sts_call(
    app: &App,
    ctx: &RequestContext,
    identity: UserIdentity,
    raw: &RawRequest,
    (form, elements): (&coffer_wire::query_form::Form, &Value),
    error: Option<(String, String)>,
) -> Result<(), AwsError> {
    let (scope, id, from) = (&ctx.scope, &ctx.request_id, &Source::of(raw));
    let op = Operation::from(StsOp::AssumeRoleWithWebIdentity);
    let record = CallRecord::begin(scope, id, identity, from, op, None);
    record.set_query_request(op, form);
    if error.is_none() {
        record.set_response(elements);
    }
    record.finish_outcome(app, error.map_or(Ok(&[][..]), Err))
}

/// The most scheduled deletions one sweep transaction carries out: a backlog (many
/// secrets falling due at once, or a server down for long) is worked off in
/// transactions of this size, so the sweep never holds the store's write lock, or
/// builds a transaction, in proportion to the backlog.
const SWEEP_BATCH: usize = 256;

/// Carries out every scheduled secret deletion due at `now`, each with its
/// `DeleteSecret` service event in the same transaction, as Secrets Manager records
/// the end of a recovery window, in transactions of at most `SWEEP_BATCH`
/// secrets. Returns how many secrets were removed.
pub fn purge_due_deletions(app: &App, now: i64) -> Result<usize, AwsError> {
    let mut total = 0;
    loop {
        let (deleted, more) = purge_due_batch(app, now, SWEEP_BATCH)?;
        total += deleted;
        if !more {
            return Ok(total);
        }
    }
}

/// One transaction of [`purge_due_deletions`]: carries out at most `max` due deletions.
/// Returns how many, and whether more were due.
fn purge_due_batch(app: &App, now: i64, max: usize) -> Result<(usize, bool), AwsError> {
    app.write_unrecorded(move |tx| {
        let due = tx.secrets_due_for_deletion(now).map_err(crate::store_error)?;
        let batch = &due[..due.len().min(max)];
        for arn in batch {
            let Some(meta) = tx.secret_by_arn(arn).map_err(crate::store_error)? else { continue };
            tx.delete_secret(arn).map_err(crate::store_error)?;
            record_service_event(
                app,
                tx,
                &meta.scope,
                SECRETS_MANAGER_SERVICE,
                "DeleteSecret",
                arn,
                now,
            )?;
        }
        Ok((batch.len(), due.len() > batch.len()))
    })
}

#[cfg(test)]
mod sweep_tests {
    use super::*;
    use crate::{Config, KeyRing};
    use coffer_core::model::SecretMeta;
    use coffer_crypto::MasterKey;
    use coffer_store::{MemoryStore, Store};

    /// The review could not tell whether the sweep bounds its transactions: it did not,
    /// deleting every due secret in one. Now one transaction deletes at most its batch.
    #[test]
    fn the_deletion_sweep_works_off_a_backlog_in_bounded_transactions() {
        let store = Arc::new(MemoryStore::new());
        let keys = KeyRing::open(MasterKey::generate(), store.as_ref()).unwrap();
        let scope = Scope::new("111122223333", "us-east-1");
        store
            .write(&mut |tx| {
                for i in 0..5 {
                    tx.insert_secret(&SecretMeta {
                        scope: scope.clone(),
                        arn: format!(
                            "arn:aws:secretsmanager:us-east-1:111122223333:secret:s{i}-AbCdEf"
                        ),
                        name: format!("s{i}"),
                        seq: 0,
                        description: None,
                        kms_key_id: None,
                        tags: None,
                        created_ms: 1,
                        last_changed_ms: 1,
                        last_accessed_ms: None,
                        deletion_ms: Some(10),
                        owning_service: None,
                        secret_type: None,
                        resource_policy: None,
                        rotation: None,
                        replication: Default::default(),
                    })?;
                }
                Ok(())
            })
            .unwrap();
        let app = crate::App::new(store.clone(), keys, Config::default());
        let due = |store: &MemoryStore| {
            let mut n = 0;
            store
                .read(&mut |tx| {
                    n = tx.secrets_due_for_deletion(100)?.len();
                    Ok(())
                })
                .unwrap();
            n
        };
        assert_eq!(purge_due_batch(&app, 100, 2).unwrap(), (2, true));
        assert_eq!(due(&store), 3);
        assert_eq!(purge_due_batch(&app, 100, 2).unwrap(), (2, true));
        assert_eq!(purge_due_batch(&app, 100, 2).unwrap(), (1, false));
        assert_eq!(due(&store), 0);
        assert_eq!(purge_due_deletions(&app, 100).unwrap(), 0);
    }
}

/// An event of work Secrets Manager does by itself (`AwsServiceEvent`).
const SECRETS_MANAGER_SERVICE: &str = "secretsmanager.amazonaws.com";

/// Appends, inside `tx`, the event of work a service did by itself on `arn` (its log line
/// kept with `tx`'s attempt, written once the write commits).
pub fn record_service_event(
    app: &App,
    tx: &mut Txn,
    scope: &Scope,
    service: &str,
    name: &str,
    arn: &str,
    now: i64,
) -> Result<(), AwsError> {
    let event = service_event(scope, service, name, arn, now);
    append_alone(app, tx, scope, now, &event)
}

/// Appends, inside `tx`, a rotation's service event (`RotationStarted`, `RotationFailed`
/// with AWS's "Error when executing lambda ... during `<step>` step", ...).
pub fn record_rotation_event(
    app: &App,
    tx: &mut Txn,
    scope: &Scope,
    name: &str,
    arn: &str,
    error_message: Option<String>,
    now: i64,
) -> Result<(), AwsError> {
    let mut event = service_event(scope, SECRETS_MANAGER_SERVICE, name, arn, now);
    event.error_message = error_message;
    append_alone(app, tx, scope, now, &event)
}

/// Records a console sign-in as CloudTrail records one: `ConsoleLogin` from
/// `signin.amazonaws.com` (event type `AwsConsoleSignIn`), `responseElements.ConsoleLogin`
/// `Success` or `Failure` (then `errorMessage` "Failed authentication"), in the trail of the
/// key's owner in the region chosen at sign-in, in a transaction of its own. Nothing of
/// the secret that was tried is recorded.
pub fn record_console_login(
    app: &App,
    who: &Authenticated,
    ip: Option<IpAddr>,
    user_agent: &str,
    success: bool,
) -> Result<(), AwsError> {
    let now = clock::now_ms();
    let scope = Scope::new(who.caller.principal.account.clone(), who.region.clone());
    let ctx = RequestContext::new(scope.clone(), who.access_key_id.clone(), String::new());
    let outcome = if success { "Success" } else { "Failure" };
    let event = Event {
        event_version: EVENT_VERSION.to_string(),
        user_identity: identity(Some(who), &ctx),
        event_time: coffer_audit::format_iso8601(now),
        event_source: "signin.amazonaws.com".to_string(),
        event_name: "ConsoleLogin".to_string(),
        aws_region: scope.region.clone(),
        source_ip_address: source_ip(ip),
        user_agent: user_agent.to_string(),
        error_code: None,
        error_message: (!success).then(|| "Failed authentication".to_string()),
        request_parameters: Value::Null,
        response_elements: serde_json::json!({ "ConsoleLogin": outcome }),
        request_id: None,
        event_id: uuid::Uuid::new_v4().to_string(),
        read_only: false,
        resources: Vec::new(),
        event_type: "AwsConsoleSignIn".to_string(),
        management_event: true,
        recipient_account_id: scope.account.clone(),
        session_credential_from_console: None,
        event_category: "Management".to_string(),
    };
    app.write_unrecorded(move |tx| append_alone(app, tx, &scope, now, &event))
}

fn service_event(scope: &Scope, service: &str, name: &str, arn: &str, now: i64) -> Event {
    let resource_type = if service == SECRETS_MANAGER_SERVICE {
        "AWS::SecretsManager::Secret"
    } else {
        "AWS::KMS::Key"
    };
    Event {
        event_version: EVENT_VERSION.to_string(),
        user_identity: UserIdentity {
            kind: "AWSService".to_string(),
            account_id: Some(scope.account.clone()),
            invoked_by: Some(service.to_string()),
            session_context: None,
            ..Default::default()
        },
        event_time: coffer_audit::format_iso8601(now),
        event_source: service.to_string(),
        event_name: name.to_string(),
        aws_region: scope.region.clone(),
        source_ip_address: service.to_string(),
        user_agent: service.to_string(),
        error_code: None,
        error_message: None,
        request_parameters: Value::Null,
        response_elements: Value::Null,
        request_id: None,
        event_id: uuid::Uuid::new_v4().to_string(),
        read_only: false,
        resources: vec![Resource {
            arn: arn.to_string(),
            account_id: Some(scope.account.clone()),
            kind: resource_type.to_string(),
        }],
        event_type: "AwsServiceEvent".to_string(),
        management_event: true,
        recipient_account_id: scope.account.clone(),
        session_credential_from_console: None,
        event_category: "Management".to_string(),
    }
}

/// Answers LookupEvents over the chain of `scope`, newest event first.
pub fn lookup_events(
    app: &App,
    scope: &Scope,
    req: LookupEventsRequest,
) -> Result<LookupEventsResponse, LookupError> {
    if let Some(category) = &req.event_category {
        if category != "insight" {
            return Err(LookupError {
                code: "InvalidEventCategoryException",
                message: format!("The event category {category} is not valid."),
            });
        }
        // Coffer records no Insights events.
        return Ok(LookupEventsResponse { events: Vec::new(), next_token: None });
    }
    let attributes: Vec<(String, String)> = req
        .lookup_attributes
        .unwrap_or_default()
        .into_iter()
        .map(|a| (a.attribute_key, a.attribute_value))
        .collect();
    let query = Query::new(
        &attributes,
        req.start_time,
        req.end_time,
        req.max_results,
        req.next_token.as_deref(),
    )?;
    let mut page = None;
    let read =
        app.store.read(&mut |tx: &dyn ReadTxn| {
            // The scope's chains: its own (events of single-node stores, and those written
            // before chains were per node) and one per node that appended to it.
            let base = chain::chain_id(&scope.account, &scope.region);
            // Every one of them, a page of heads at a time: a chain left out would have its
            // events never shown.
            let mut chains = vec![base.clone()];
            let mut heads = coffer_store::RecordPages::new(HEAD_KIND, &base, HEADS_PAGE);
            while let Some(page) = heads.next_page(tx)? {
                chains.extend(page.into_iter().map(|(id, _)| id).filter(|id| {
                    *id != base && chain::is_chain_of(id, &scope.account, &scope.region)
                }));
            }
            let found = lookup::run_chains(
                &scope.account,
                &scope.region,
                &chains,
                &query,
                |prefix, after, limit| tx.records(EVENT_KIND, prefix, after, limit),
            )?;
            page = Some(found);
            Ok(())
        });
    match (read, page) {
        (Ok(()), Some(page)) => {
            Ok(LookupEventsResponse { events: page.events, next_token: page.next_token })
        }
        (result, _) => {
            if let Err(e) = result {
                tracing::error!(error = %e, "LookupEvents could not read the trail");
            }
            Err(LookupError {
                code: "InternalFailure",
                message: "An internal error occurred.".to_string(),
            })
        }
    }
}

/// Heads LookupEvents lists at a time to find a scope's chains (one per node that ever
/// appended to the scope; each costs a read per page).
const HEADS_PAGE: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_signatures_are_logged_once_and_audited_a_bounded_number_of_times_per_interval() {
        let auditor = Auditor::new(Settings::default());
        let start = std::time::Instant::now();
        let notices: Vec<FailureNotice> =
            (0..25).map(|_| auditor.note_failed_signature_at("AKIA1", start)).collect();
        assert_eq!(notices[0], FailureNotice { audit: true, log: Some((0, 0)) });
        assert!(notices[1..].iter().all(|n| n.log.is_none()));
        let audited = notices.iter().filter(|n| n.audit).count();
        assert_eq!(audited, FAILURE_EVENTS_PER_INTERVAL as usize);
        // Another key has its own window.
        assert_eq!(auditor.note_failed_signature_at("AKIA2", start).log, Some((0, 0)));
        // The next interval's line counts what the last one left out.
        let later = start + FAILURE_INTERVAL;
        let next = auditor.note_failed_signature_at("AKIA1", later);
        assert_eq!(next, FailureNotice { audit: true, log: Some((24, 15)) });
        assert_eq!(auditor.note_failed_signature_at("AKIA1", later).log, None);
    }

    /// A read's event is written with `Store::write_trail`, which the memory store refuses
    /// for any record outside its trail: every kind that write touches must be listed.
    #[test]
    fn the_memory_stores_trail_holds_every_kind_a_reads_event_writes() {
        let kinds = coffer_store::memory::TRAIL_KINDS;
        for kind in
            [EVENT_KIND, HEAD_KIND, coffer_audit::archive::BASE_KIND, crate::kms_last_use::KIND]
        {
            assert!(kinds.contains(&kind), "{kind} is not in the memory store's trail");
        }
    }
}

#[cfg(test)]
mod stored_form_tests {
    use super::*;
    use crate::{Config, KeyRing};
    use coffer_crypto::MasterKey;
    use coffer_store::{MemoryStore, SqliteStore};

    /// The stored bytes of the one event appended through an app over `store`.
    fn appended_bytes(store: Arc<dyn coffer_store::Store>) -> Vec<u8> {
        let keys = KeyRing::open(MasterKey::generate(), store.as_ref()).unwrap();
        let app = crate::App::new(store.clone(), keys, Config::default());
        let scope = Scope::new("111122223333", "us-east-1");
        app.write_unrecorded(|tx| {
            record_service_event(&app, tx, &scope, "secretsmanager.amazonaws.com", "X", "a", 5)
        })
        .unwrap();
        let mut out = Vec::new();
        store
            .read(&mut |tx| {
                out = tx.records(EVENT_KIND, "", None, 10)?;
                Ok(())
            })
            .unwrap();
        assert_eq!(out.len(), 1);
        out.pop().unwrap().1
    }

    /// `--dev`'s memory store keeps its records in the JSON form (compressing each event
    /// would cost CPU on every call to save memory it soon drops); stores on disk keep the
    /// compact form. Both read back as the same record.
    #[test]
    fn the_memory_store_keeps_json_records_and_a_durable_store_compact_ones() {
        let json = appended_bytes(Arc::new(MemoryStore::new()));
        assert_eq!(json.first(), Some(&b'{'), "{}", String::from_utf8_lossy(&json));
        let dir = tempfile::tempdir().unwrap();
        let sqlite = SqliteStore::open(&dir.path().join("coffer.db")).unwrap();
        let compact = appended_bytes(Arc::new(sqlite));
        assert!(coffer_audit::stored::is_compact(&compact));
        let (a, b) = (Record::from_bytes(&json).unwrap(), Record::from_bytes(&compact).unwrap());
        assert_eq!((a.seq, a.event["eventName"].clone()), (b.seq, b.event["eventName"].clone()));
    }
}

#[cfg(test)]
mod node_chain_lookup_tests {
    use super::*;
    use crate::{Config, KeyRing};
    use coffer_crypto::MasterKey;
    use coffer_store::{MemoryStore, Store};

    /// Review 9: LookupEvents listed at most 256 heads of a scope, so the events of every
    /// chain past the 256th (nodes whose names change on each start, such as containers
    /// without COFFER_AUDIT_NODE, leave one chain per start) were silently never shown.
    /// Every chain of the scope is read, and a token is refused for none of them.
    #[test]
    fn lookup_events_shows_the_events_of_every_node_chain_of_the_scope() {
        let store = Arc::new(MemoryStore::new());
        let keys = KeyRing::open(MasterKey::generate(), store.as_ref()).unwrap();
        let app = crate::App::new(store.clone(), keys, Config::default());
        let scope = Scope::new("111122223333", "us-east-1");
        let chains = 300;
        store
            .write(&mut |tx| {
                for n in 0..chains {
                    let chain = chain::node_chain_id(
                        "111122223333",
                        "us-east-1",
                        Some(&format!("host-{n:03}:8080")),
                    );
                    let mut event = service_event(
                        &scope,
                        "secretsmanager.amazonaws.com",
                        "X",
                        "arn:x",
                        1_000 + n,
                    );
                    event.event_id = format!("event-{n}");
                    let record = Record::seal(None, 1_000 + n, &event, None);
                    tx.put_record(
                        EVENT_KIND,
                        &chain::chain_event_key(&chain, record.seq),
                        &record.to_stored_bytes(),
                    )?;
                    tx.put_record(HEAD_KIND, &chain, &serde_json::to_vec(&record.head()).unwrap())?;
                }
                Ok(())
            })
            .unwrap();
        let mut seen = std::collections::BTreeSet::new();
        let mut token = None;
        for _ in 0..100 {
            let request = LookupEventsRequest {
                lookup_attributes: None,
                start_time: None,
                end_time: None,
                event_category: None,
                max_results: Some(50),
                next_token: token.take(),
            };
            let page = lookup_events(&app, &scope, request).map_err(|e| e.message).unwrap();
            for event in &page.events {
                assert!(seen.insert(event["EventId"].as_str().unwrap().to_owned()), "repeated");
            }
            match page.next_token {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        assert_eq!(seen.len(), chains as usize, "events of some node chains were never shown");
    }
}

#[cfg(test)]
mod poison_tests {
    use super::*;
    use coffer_audit::event::UserIdentity;
    use coffer_wire::operation::{Operation, SecretsManagerOp};

    /// Review 10: a call's record behind a poisoned lock (a panic while it was held, caught
    /// further up) was taken for "no event to write", so the call's answer, a secret value
    /// for GetSecretValue, went out with no event. The record is still the call's: its
    /// event is written, or the call fails.
    #[test]
    fn a_poisoned_record_still_yields_its_event() {
        let scope = Scope::new("111122223333", "us-east-1");
        let source = Source { ip: None, user_agent: "test".into(), console: false };
        let op = Operation::SecretsManager(SecretsManagerOp::GetSecretValue);
        let record = CallRecord::begin(&scope, "r", UserIdentity::default(), &source, op, None);
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            record.with(|_| panic!("a panic while the record is held"));
        }));
        assert!(panicked.is_err());
        assert!(record.0.is_poisoned());
        record.add_secret_event(SecretsManagerOp::GetSecretValue, "arn:aws:secretsmanager:x");
        let unwritten = record.conclude(&Ok(b"{}".to_vec()));
        let unwritten = unwritten.expect("the event of a read that answered is written");
        assert_eq!(unwritten.event.event_name, "GetSecretValue");
    }
}
