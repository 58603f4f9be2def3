//! Coffer's server: HTTP front end and the operation handlers behind it.
//!
//! A request flows `http` (parse target, find the caller's scope, read and
//! validate the body) -> `dispatch` (one exhaustive match from operation to
//! handler) -> a handler in `secrets` or `kms_api` (one store transaction) -> `http` (encode
//! the response or the AWS error). Handlers are synchronous, like the stores. Where
//! they run depends on the store's [`Latency`]: on the async workers when nothing
//! waits for a disk (the memory store; reads on SQLite), else on tokio's blocking pool.
//!
//! Architecture invariant: only this crate knows HTTP; plaintext values exist
//! here only between `coffer-crypto` and the response encoder.

mod appender;
pub mod audit;
mod audit_file;
pub mod audit_retention;
pub mod auth;
pub mod background;
pub mod clock;
pub mod connections;
mod cross_account;
pub mod dev_sessions;
mod dev_web_identity;
mod dispatch;
mod federation;
#[cfg(test)]
mod handoff_tests;
pub mod http;
pub mod hygiene;
pub mod iam_api;
#[cfg(test)]
mod inline_tests;
#[cfg(test)]
mod inline_write_turn_tests;
pub mod jwks_file;
pub mod keys;
pub mod kms_api;
mod kms_decisions;
mod kms_elements;
pub mod kms_families;
pub mod kms_last_use;
pub mod kms_rest;
pub mod metrics;
pub mod oidc_outbound;
mod paging;
pub mod pipeline;
pub mod policies;
pub mod probes;
pub mod query;
pub mod quotas;
pub mod replication;
pub mod rotation;
#[cfg(test)]
mod scripted_store;
pub mod secrets;
pub mod sessions;
pub mod sts;
mod submitted;
#[cfg(test)]
mod submitted_tests;
#[cfg(test)]
mod test_store_wrappers;
pub mod tls;
mod txn;
pub mod web_identity;

use coffer_core::{AwsError, Scope};
use coffer_store::{Handoff, Latency, ReadTxn, Store, StoreError};
use std::sync::Arc;

/// Users, access keys and policies live in their own crate, shared with `coffer admin`.
pub use coffer_iam as iam;
pub use keys::{KeyRing, MasterKeyError, MasterKeyRotation, rotate_master_key};
pub use txn::Txn;

/// Record kinds that only the serving process changes (KMS keys and aliases), which a
/// store may therefore cache in memory across reads. IAM records are not among them:
/// `coffer admin` changes those while the server runs.
pub const RECORDS_ONLY_THE_SERVER_CHANGES: &[&str] =
    &[coffer_kms::service::KEY_KIND, coffer_kms::service::ALIAS_KIND];

/// Settings of a running server.
#[derive(Debug, Clone)]
pub struct Config {
    /// The account used when an access key id is not a 12-digit account number.
    pub default_account: String,
    /// The largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// How long a request's body may take to arrive once its headers have.
    pub body_timeout: std::time::Duration,
    /// How the audit trail is kept.
    pub audit: audit::Settings,
    /// Whether the main listener serves `GET /metrics` (not when `--metrics-listen` gives
    /// the metrics a listener of their own).
    pub metrics_on_main_listener: bool,
    /// Request quotas (off unless enabled).
    pub quotas: quotas::Settings,
    /// How long audit events stay in the store before they are archived (off unless set).
    pub audit_retention: audit_retention::Settings,
    /// Where rotation functions are invoked; `None`: only built-in rotators.
    pub lambda: Option<rotation::lambda::LambdaSettings>,
    /// The only directory an OIDC provider's `coffer:jwks-file` tag may name a file in
    /// (`--jwks-dir`); `None`: the tag is refused.
    pub jwks_dir: Option<std::path::PathBuf>,
    /// Networks outbound OIDC fetches may connect to beside public addresses
    /// (`--oidc-allow-net`); empty: public addresses only.
    pub oidc_allow_nets: Vec<ipnet::IpNet>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            default_account: "000000000000".to_string(),
            max_body_bytes: 1024 * 1024,
            body_timeout: std::time::Duration::from_secs(60),
            audit: audit::Settings::default(),
            metrics_on_main_listener: true,
            quotas: quotas::Settings::default(),
            audit_retention: audit_retention::Settings::default(),
            lambda: None,
            jwks_dir: None,
            oidc_allow_nets: Vec::new(),
        }
    }
}

/// One call as its handler sees it: who is calling and where (from the request's SigV4
/// credential scope, or the console session), what the handler still authorizes itself,
/// and what the call records as it goes.
#[derive(Debug)]
pub struct RequestContext {
    pub scope: Scope,
    /// The caller's own account: `scope`'s, unless a resource policy let the call into
    /// another account's secret (`scope` is then the owner's).
    pub caller_account: String,
    pub access_key_id: String,
    pub request_id: String,
    /// What the handler still authorizes itself (keys that sealed what it opens, each
    /// secret of a batch); `None` with `--dev`, where nothing is authorized.
    pub gate: Option<std::sync::Arc<auth::Gate>>,
    /// The call's audit record, written with its change ([`App::write`]) or after it.
    pub audit: audit::CallRecord,
    /// The call's LastAccessedDate updates, when they are put off until its read is over.
    pub access: secrets::AccessRecords,
    /// What the call's read scope looked up (`Store::read_scope`), for its first write
    /// ([`App::write`]) to start from: kept with the call, so no other call's write gets it.
    pub handoff: std::sync::Mutex<Handoff>,
    /// `--dev`: who the call's credentials act as, when STS (`dev_sessions`) or the IAM
    /// API issued them in `--dev`; `None`: the root of `scope`'s account, as ever in `--dev`.
    pub dev_caller: Option<Arc<coffer_auth::principal::Principal>>,
}

impl RequestContext {
    /// The context of a call in `scope` that records nothing yet.
    pub fn new(scope: Scope, access_key_id: String, request_id: String) -> RequestContext {
        RequestContext {
            caller_account: scope.account.clone(),
            scope,
            access_key_id,
            request_id,
            gate: None,
            audit: audit::CallRecord::none(),
            access: secrets::AccessRecords::immediate(),
            handoff: std::sync::Mutex::default(),
            dev_caller: None,
        }
    }

    /// Keeps what the call's read scope handed, for its write.
    pub fn hand(&mut self, handoff: Handoff) {
        *self.handoff.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner) = handoff;
    }

    /// What the call's read scope handed, taken (its first write uses it; any later one
    /// would find its own changes missing from it, and gets nothing).
    fn take_handoff(&self) -> Handoff {
        let mut handoff = self.handoff.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        std::mem::take(&mut *handoff)
    }
}

/// Everything a handler needs.
pub struct App {
    pub store: Arc<dyn Store>,
    pub keys: KeyRing,
    pub config: Config,
    /// Users and access keys; `None` with `--dev`, where any credentials are accepted
    /// and nothing is authorized.
    pub iam: Option<iam::Iam>,
    /// `--dev`'s IAM directory: users, roles and policies the IAM API manages, and the
    /// sealing of the access keys it creates, with nothing authenticated or authorized
    /// (`iam_api`, `sessions`). `None` without `--dev`, where [`App::iam`] serves.
    pub dev_iam: Option<iam::Iam>,
    /// `--dev`: whether its directory may hold access keys (some were in the store at
    /// start, or its IAM API made one since). Until then no long-term key id is looked
    /// up, so `--dev` calls read nothing more for the keys test code makes up.
    dev_access_keys: std::sync::atomic::AtomicBool,
    /// The audit trail's settings and sink.
    pub audit: audit::Auditor,
    /// Commits the audit events of calls that changed nothing, in batches.
    appender: appender::Appender,
    /// The request-rate limiters, per account, region and quota group.
    pub quotas: quotas::Quotas,
    /// The rotations this process carries out.
    pub rotation: rotation::Hub,
    /// The calls whose write was handed to the store whole and that have not ended yet
    /// (`submitted`), which a stopping server waits for ([`App::submitted_calls_ended`]).
    unfinished: submitted::Unfinished,
    /// The turn of the mutating calls that run on the async workers (a store in memory,
    /// [`App::writes_inline`]): awaited, so a write waiting for another's holds no worker
    /// (see [`App::inline_write_turn`]).
    inline_writes: tokio::sync::Mutex<()>,
}

/// Maps a store failure to the error a client sees. Conflicts that reach here
/// are unexpected (handlers check first under the write lock), so both kinds are
/// internal; the cause is logged, never sent.
pub(crate) fn store_error(e: StoreError) -> AwsError {
    if !matches!(e, StoreError::Aborted) {
        tracing::error!(error = %e, "store failure");
    }
    AwsError::internal()
}

impl App {
    pub fn new(store: Arc<dyn Store>, keys: KeyRing, config: Config) -> Arc<App> {
        App::build(store, keys, config, None, None)
    }

    /// A `--dev` app that serves STS and the IAM API on `iam`'s directory, authenticating
    /// and authorizing no one.
    pub fn dev(store: Arc<dyn Store>, keys: KeyRing, config: Config, iam: iam::Iam) -> Arc<App> {
        let app = App::build(store, keys, config, None, Some(iam));
        let mut stored = false;
        let read = app.store.read(&mut |tx| {
            stored = !tx.records(iam::ACCESS_KEY_KIND, "", None, 1)?.is_empty();
            Ok(())
        });
        // A store that cannot be read now has its keys looked up, to be safe.
        if stored || read.is_err() {
            app.note_dev_access_key();
        }
        app
    }

    /// `--dev`: its directory holds an access key from now on, which identifies its user.
    pub fn note_dev_access_key(&self) {
        self.dev_access_keys.store(true, std::sync::atomic::Ordering::Release);
    }

    /// `--dev`: whether a long-term access key id may name a user of its directory.
    pub fn dev_access_keys_exist(&self) -> bool {
        self.dev_access_keys.load(std::sync::atomic::Ordering::Acquire)
    }

    /// An app that authenticates and authorizes every request with `iam`.
    pub fn enforcing(
        store: Arc<dyn Store>,
        keys: KeyRing,
        config: Config,
        iam: iam::Iam,
    ) -> Arc<App> {
        App::build(store, keys, config, Some(iam), None)
    }

    fn build(
        store: Arc<dyn Store>,
        keys: KeyRing,
        config: Config,
        iam: Option<iam::Iam>,
        dev_iam: Option<iam::Iam>,
    ) -> Arc<App> {
        let latency = store.latency();
        let audit = audit::Auditor::for_store(config.audit.clone(), latency);
        let quotas = quotas::Quotas::new(&config.quotas);
        let handing = appender::Handing::for_store(store.as_ref(), config.audit.log.is_some());
        Arc::new_cyclic(|app| App {
            quotas,
            store,
            keys,
            config,
            iam,
            dev_iam,
            dev_access_keys: std::sync::atomic::AtomicBool::new(false),
            audit,
            // Only commits on a local disk are cheap enough for events to arrive one per
            // commit; a PostgreSQL write's round trips already gather them.
            appender: appender::Appender::start(
                app.clone(),
                match latency {
                    Latency::LocalDisk => appender::GATHER,
                    Latency::Memory | Latency::Network => std::time::Duration::ZERO,
                },
                handing,
            ),
            rotation: rotation::Hub::new(app.clone()),
            unfinished: submitted::Unfinished::default(),
            inline_writes: tokio::sync::Mutex::new(()),
        })
    }

    /// Waits until every call whose write was handed to the store whole (`submitted`) has
    /// ended: its write answered, its audit-log lines or its event written. A stopping
    /// server's last wait before its runtime goes (`connections::serve_with_tls`), as the
    /// runtime itself waits for the blocking pool's calls: a task the runtime drops would
    /// leave a committed write without its audit-log line, or a failed one without its
    /// event (review 19). The appender's writes handed to the store are counted too. The
    /// store answers every write it was given (SQLite's writer, within its busy timeout
    /// and its commit).
    pub async fn submitted_calls_ended(&self) {
        self.unfinished.none_left().await;
    }

    /// Waits for the turn of a mutating call that runs on an async worker, without holding
    /// the worker. The store's lock lets one write in at a time: a write that found it
    /// taken blocked its worker thread until the other ended, and with two workers a
    /// second put put one of them to sleep (a futex wait and a wake-up per put), while
    /// other calls waited to be served. A write that has the turn meets no other write at
    /// the store's lock.
    pub async fn inline_write_turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.inline_writes.lock().await
    }

    /// Whether a read-only call can run on an async worker: its store reads take
    /// microseconds (its audit event is then committed by the appender, awaited), or the
    /// store answers most from memory and leaves the worker itself when it must wait
    /// (PostgreSQL: [`coffer_store::Store::reads_wait_off_the_workers`]), which only a
    /// multi-threaded runtime allows. On PostgreSQL a hand-off to the blocking pool and
    /// back cost more than the rest of a cached GetSecretValue (BENCHMARKS.md,
    /// seventeenth session).
    pub fn reads_inline(&self) -> bool {
        match self.store.latency() {
            Latency::Memory | Latency::LocalDisk => true,
            Latency::Network => {
                self.store.reads_wait_off_the_workers() && coffer_store::in_multi_threaded_runtime()
            }
        }
    }

    /// Whether a mutating call's write can be handed to the store whole, for an async
    /// caller to await (`submitted`): the store runs writes on a thread of its own (SQLite
    /// on a file), instead of on a thread that then waits for the commit.
    pub fn submits_writes(&self) -> bool {
        self.store.latency() == Latency::LocalDisk && self.store.submits_writes()
    }

    /// Whether every call can run on an async worker: nothing waits for a disk.
    pub fn writes_inline(&self) -> bool {
        self.store.latency() == Latency::Memory
    }

    /// Runs `f` in a read transaction, carrying its AWS error out.
    pub fn read<T>(
        &self,
        mut f: impl FnMut(&dyn ReadTxn) -> Result<T, AwsError>,
    ) -> Result<T, AwsError> {
        let mut out = None;
        let result = self.store.read(&mut |tx| match f(tx) {
            Ok(v) => {
                out = Some(Ok(v));
                Ok(())
            }
            Err(e) => {
                out = Some(Err(e));
                Err(StoreError::Aborted)
            }
        });
        finish(result, out)
    }

    /// Runs `f` in a write transaction for the call `ctx`: committed durably iff `f`
    /// returns `Ok`.
    ///
    /// The call's audit event (a mutating call's) is appended in the same transaction, so
    /// the change and its record commit together; if the event cannot be written, nothing
    /// is committed (unless the trail is fail-open).
    pub fn write<T: Send + 'static>(
        &self,
        ctx: &RequestContext,
        f: impl FnMut(&mut Txn<'_>) -> Result<T, AwsError> + Send,
    ) -> Result<T, AwsError> {
        self.write_recorded(&ctx.audit, ctx.take_handoff(), f)
    }

    /// Runs `f` in a write transaction that no call's event goes with: work the service
    /// does by itself, which records its own events inside `f`.
    pub fn write_unrecorded<T: Send + 'static>(
        &self,
        f: impl FnMut(&mut Txn<'_>) -> Result<T, AwsError> + Send,
    ) -> Result<T, AwsError> {
        self.write_recorded(&audit::CallRecord::none(), Handoff::none(), f)
    }

    fn write_recorded<T: Send + 'static>(
        &self,
        record: &audit::CallRecord,
        handoff: Handoff,
        mut f: impl FnMut(&mut Txn<'_>) -> Result<T, AwsError> + Send,
    ) -> Result<T, AwsError> {
        let mut out = None;
        let event = record.for_write();
        // The audit log's lines of the attempt that commits, written once it has.
        let mut lines = audit_file::Lines::default();
        let result = self.store.write_after(handoff, &mut |tx| {
            self.attempt(record, event.as_ref(), &mut lines, tx, &mut f, &mut out)
        });
        self.written(record, result, out, lines)
    }

    /// One attempt of a call's write in `tx`: `f`, then the call's event (`event`, from
    /// `record.for_write()`) in the same transaction; `f`'s answer (or refusal) in `out`.
    fn attempt<T: Send + 'static>(
        &self,
        record: &audit::CallRecord,
        event: Option<&audit::ForWrite>,
        lines: &mut audit_file::Lines,
        tx: &mut dyn coffer_store::WriteTxn,
        f: &mut dyn FnMut(&mut Txn<'_>) -> Result<T, AwsError>,
        out: &mut Option<Result<T, AwsError>>,
    ) -> Result<(), StoreError> {
        let mut txn = Txn::new(tx, lines.attempt());
        match f(&mut txn) {
            Ok(v) => {
                match audit::in_transaction(self, &mut txn, &v, event, record.secret_resolved()) {
                    Ok(()) => {
                        *out = Some(Ok(v));
                        Ok(())
                    }
                    Err(e) => {
                        *out = Some(Err(e));
                        Err(StoreError::Aborted)
                    }
                }
            }
            Err(e) => {
                *out = Some(Err(e));
                Err(StoreError::Aborted)
            }
        }
    }

    /// The answer of a call's write that ended with `result` (its last attempt's answer in
    /// `out`): once committed, the attempt's audit-log lines are written and the call's
    /// event counts as written.
    fn written<T>(
        &self,
        record: &audit::CallRecord,
        result: Result<(), StoreError>,
        out: Option<Result<T, AwsError>>,
        lines: audit_file::Lines,
    ) -> Result<T, AwsError> {
        if result.is_ok() {
            lines.committed(&self.audit);
        }
        let done = finish(result, out);
        if done.is_ok() {
            record.committed();
        }
        done
    }
}

fn finish<T>(
    result: Result<(), StoreError>,
    out: Option<Result<T, AwsError>>,
) -> Result<T, AwsError> {
    match (result, out) {
        (Ok(()), Some(Ok(v))) => Ok(v),
        (Err(StoreError::Aborted), Some(Err(e))) => Err(e),
        (Err(e), _) => Err(store_error(e)),
        (Ok(()), _) => Err(AwsError::internal()),
    }
}
