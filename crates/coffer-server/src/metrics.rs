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

struct Metrics {
    requests: Family<RequestLabels, Counter>,
    latency: LatencyFamily,
    connections: Gauge,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    requests: Family::default(),
    latency: Family::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS)),
    connections: Gauge::default(),
});

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
    let metrics = &*METRICS;
    metrics.requests.get_or_create(&RequestLabels { service, operation, outcome }).inc();
    metrics
        .latency
        .get_or_create(&OperationLabels { service, operation })
        .observe(elapsed.as_secs_f64());
}

/// One connection more (`true`) or fewer (`false`) being served.
pub fn connection(opened: bool) {
    if opened {
        METRICS.connections.inc();
    } else {
        METRICS.connections.dec();
    }
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
