//! Prometheus metrics, served as OpenMetrics text on `GET /metrics` (on the main listener,
//! or only on `--metrics-listen` when given).
//!
//! The crate is `prometheus-client`, the Prometheus project's own Rust client: a registry of
//! typed metrics and a text encoder, no global macros, few dependencies. Labels are fixed
//! names only (a service's signing name, an operation's wire name from
//! `coffer_wire::operation`, an outcome class), never anything a client sent: no metric can
//! carry a secret's name or value, and the number of series is bounded.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

/// Latency buckets in seconds: from a cached read (well under a millisecond) to a call that
/// waited on a slow database.
const LATENCY_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    service: &'static str,
    operation: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    service: &'static str,
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    commit: String,
}

type LatencyFamily = Family<OperationLabels, Histogram, fn() -> Histogram>;

/// Sizes of batches (store group commits, audit appender batches): powers of two up to the
/// largest batch either takes (256 and 512 members).
const BATCH_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

struct Metrics {
    requests: Family<RequestLabels, Counter>,
    latency: LatencyFamily,
    connections: Gauge,
    connections_accepted: Counter,
    tls_handshake_failures: Counter,
    store_commit_seconds: Histogram,
    store_commit_members: Histogram,
    appender_queue: Gauge,
    appender_batch: Histogram,
    appender_wait: Histogram,
    audit_write_failures: Counter,
    audit_archived: Counter,
    audit_events_stored: Gauge,
    audit_log_queued: Gauge,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    requests: Family::default(),
    latency: Family::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS)),
    connections: Gauge::default(),
    connections_accepted: Counter::default(),
    tls_handshake_failures: Counter::default(),
    store_commit_seconds: Histogram::new(LATENCY_BUCKETS),
    store_commit_members: Histogram::new(BATCH_BUCKETS),
    appender_queue: Gauge::default(),
    appender_batch: Histogram::new(BATCH_BUCKETS),
    appender_wait: Histogram::new(LATENCY_BUCKETS),
    audit_write_failures: Counter::default(),
    audit_archived: Counter::default(),
    audit_events_stored: Gauge::default(),
    audit_log_queued: Gauge::default(),
});

/// The files the store keeps its data in (SQLite: the database and its WAL), whose size
/// `/metrics` reports; none for the memory store and PostgreSQL (whose size is the
/// database server's `pg_database_size`).
static STORE_FILES: OnceLock<Vec<std::path::PathBuf>> = OnceLock::new();

/// Names the store's files, once, at start.
pub fn set_store_files(files: Vec<std::path::PathBuf>) {
    let _ = STORE_FILES.set(files);
}

/// The version and commit the binary was built from, set once at start (`coffer serve`).
static BUILD: OnceLock<(String, String)> = OnceLock::new();

/// Records the build for `coffer_build_info`.
pub fn set_build_info(version: &str, commit: &str) {
    let _ = BUILD.set((version.to_string(), commit.to_string()));
}

/// Counts one answered request and its latency. `status` is the HTTP status sent.
pub fn observe_request(
    service: &'static str,
    operation: &'static str,
    status: u16,
    elapsed: Duration,
) {
    let outcome = match status {
        200..=299 => "success",
        400..=499 => "client_error",
        _ => "server_error",
    };
    RESOLVED.with_borrow_mut(|resolved| {
        let found = resolved
            .iter()
            .position(|h| h.operation == operation && h.outcome == outcome && h.service == service);
        let handles = match found {
            Some(i) => &resolved[i],
            None => {
                let metrics = &*METRICS;
                resolved.push(Resolved {
                    service,
                    operation,
                    outcome,
                    requests: metrics
                        .requests
                        .get_or_create(&RequestLabels { service, operation, outcome })
                        .clone(),
                    latency: metrics
                        .latency
                        .get_or_create(&OperationLabels { service, operation })
                        .clone(),
                });
                resolved.last().expect("just pushed")
            }
        };
        handles.requests.inc();
        handles.latency.observe(elapsed.as_secs_f64());
    });
}

/// The series of one (service, operation, outcome), resolved from the families once per
/// thread: a family's lookup takes its read lock and hashes the label set, per request
/// twice; the handles share their series with the family, so `/metrics` reads the same
/// counts. The labels are fixed names, so each thread's list stays small and bounded.
struct Resolved {
    service: &'static str,
    operation: &'static str,
    outcome: &'static str,
    requests: Counter,
    latency: Histogram,
}

thread_local! {
    static RESOLVED: std::cell::RefCell<Vec<Resolved>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// One connection more (`true`) or fewer (`false`) being served.
pub fn connection(opened: bool) {
    if opened {
        METRICS.connections.inc();
        METRICS.connections_accepted.inc();
    } else {
        METRICS.connections.dec();
    }
}

/// A TLS handshake that failed or timed out (a client certificate refused among them).
pub fn tls_handshake_failed() {
    METRICS.tls_handshake_failures.inc();
}

/// One store group commit (the store's commit hook, `coffer_store::observe`): how many
/// write transactions it carried and how long it took.
pub fn store_commit(members: usize, elapsed: Duration) {
    METRICS.store_commit_seconds.observe(elapsed.as_secs_f64());
    METRICS.store_commit_members.observe(members as f64);
}

/// Events handed to the audit appender (`n > 0`) or taken by it (`n < 0`).
pub fn appender_queue(n: i64) {
    METRICS.appender_queue.inc_by(n);
}

/// One batch of events the audit appender committed (or failed to).
pub fn appender_batch(events: usize) {
    METRICS.appender_batch.observe(events as f64);
}

/// How long one event waited in the audit appender, from its hand-over to its caller
/// being told it was committed (or not): the part of a read's latency that is its
/// durable record.
pub fn appender_wait(waited: Duration) {
    METRICS.appender_wait.observe(waited.as_secs_f64());
}

/// Audit events that could not be written (to the store or the audit log).
pub fn audit_write_failures(events: u64) {
    METRICS.audit_write_failures.inc_by(events);
}

/// Audit events moved from the store to archive files by retention.
pub fn audit_archived(events: u64) {
    METRICS.audit_archived.inc_by(events);
}

/// Audit events in the store now (every chain's head minus its archived part).
pub fn audit_events_stored(events: u64) {
    METRICS.audit_events_stored.set(i64::try_from(events).unwrap_or(i64::MAX));
}

/// Committed events' `--audit-log` lines waiting to be written (the log failed a write).
pub fn audit_log_queued(lines: usize) {
    METRICS.audit_log_queued.set(i64::try_from(lines).unwrap_or(i64::MAX));
}

/// The OpenMetrics text of every metric.
pub fn render() -> String {
    let metrics = &*METRICS;
    let mut registry = Registry::with_prefix("coffer");
    registry.register(
        "requests",
        "Requests answered, by service, operation and outcome (success, client_error, server_error)",
        metrics.requests.clone(),
    );
    registry.register(
        "request_duration_seconds",
        "Time from a request's arrival to its answer, by service and operation",
        metrics.latency.clone(),
    );
    registry.register("connections_open", "Connections being served", metrics.connections.clone());
    registry.register(
        "connections_accepted",
        "Connections accepted since start",
        metrics.connections_accepted.clone(),
    );
    registry.register(
        "tls_handshake_failures",
        "TLS handshakes that failed or timed out (refused client certificates included)",
        metrics.tls_handshake_failures.clone(),
    );
    registry.register(
        "store_commit_duration_seconds",
        "Time from a store group commit's start to its durable end",
        metrics.store_commit_seconds.clone(),
    );
    registry.register(
        "store_commit_batch_size",
        "Write transactions carried by one store group commit",
        metrics.store_commit_members.clone(),
    );
    registry.register(
        "audit_appender_queue_depth",
        "Audit events waiting for the appender",
        metrics.appender_queue.clone(),
    );
    registry.register(
        "audit_appender_batch_size",
        "Audit events committed by the appender in one transaction",
        metrics.appender_batch.clone(),
    );
    registry.register(
        "audit_appender_wait_seconds",
        "Time from an audit event's hand-over to the appender to its caller being told it committed",
        metrics.appender_wait.clone(),
    );
    registry.register(
        "audit_write_failures",
        "Audit events that could not be written to the store or the audit log",
        metrics.audit_write_failures.clone(),
    );
    registry.register(
        "audit_events_archived",
        "Audit events moved from the store to archive files by retention",
        metrics.audit_archived.clone(),
    );
    registry.register(
        "audit_events_stored",
        "Audit events held in the store (not yet archived), as of the last background round",
        metrics.audit_events_stored.clone(),
    );
    registry.register(
        "audit_log_queued_lines",
        "Committed audit events whose --audit-log line waits to be written",
        metrics.audit_log_queued.clone(),
    );
    if let Some(files) = STORE_FILES.get().filter(|f| !f.is_empty()) {
        // Read at scrape time: one stat per file.
        let bytes: u64 =
            files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
        let gauge: Gauge = Gauge::default();
        gauge.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        registry.register(
            "store_file_bytes",
            "Bytes of the store's files on disk (SQLite: the database and its WAL)",
            gauge,
        );
    }
    let (version, commit) = BUILD
        .get()
        .cloned()
        .unwrap_or_else(|| (env!("CARGO_PKG_VERSION").into(), "unknown".into()));
    registry.register(
        "build",
        "The version and commit being run",
        Info::new(BuildLabels { version, commit }),
    );
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)
        .expect("writing to a String cannot fail");
    out
}

/// `GET /metrics`.
pub async fn serve_metrics() -> axum::response::Response {
    axum::response::Response::builder()
        .header(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
        .header(axum::http::header::CACHE_CONTROL, "no-store")
        .body(axum::body::Body::from(render()))
        .expect("static response parts are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Requests counted through the per-thread handles land in the families `/metrics`
    /// renders, one series per outcome, from any thread.
    #[test]
    fn resolved_handles_count_into_the_rendered_families() {
        let op = "DevcpuTestOperation";
        observe_request("secretsmanager", op, 200, Duration::from_millis(1));
        observe_request("secretsmanager", op, 200, Duration::from_millis(1));
        observe_request("secretsmanager", op, 404, Duration::from_millis(1));
        std::thread::spawn(move || observe_request("secretsmanager", op, 200, Duration::ZERO))
            .join()
            .unwrap();
        let text = render();
        let line = |prefix: &str| {
            text.lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix} in {text}"))
                .rsplit(' ')
                .next()
                .unwrap()
                .to_owned()
        };
        let labels = format!("service=\"secretsmanager\",operation=\"{op}\"");
        assert_eq!(line(&format!("coffer_requests_total{{{labels},outcome=\"success\"}}")), "3");
        assert_eq!(
            line(&format!("coffer_requests_total{{{labels},outcome=\"client_error\"}}")),
            "1"
        );
        assert_eq!(line(&format!("coffer_request_duration_seconds_count{{{labels}}}")), "4");
    }
}
