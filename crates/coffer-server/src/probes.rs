//! Health probes for load balancers and orchestrators: `GET /health` (liveness: the
//! process answers HTTP) and `GET /ready` (readiness: the store answers a read
//! transaction, and the audit log file, if one is configured, can be opened for appending
//! and has no committed event's line waiting to be written).
//!
//! Both are unauthenticated and carry no data (a word of plain text and a status code), so
//! they reveal nothing a port scan would not. AWS clients only ever `POST /`, so these
//! paths cannot shadow an API call.

use crate::App;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::Response;
use std::sync::Arc;
use std::time::Duration;

/// How long `/ready` waits for the store before calling it unreachable: a probe must
/// answer quickly even when the database hangs (a stopped PostgreSQL, a full pool).
const READY_DEADLINE: Duration = Duration::from_secs(2);

/// The setting `/ready` reads: any name works; a real query reaches the database.
const PROBE_SETTING: &str = "coffer.ready-probe";

/// `GET /health`: the process is up and its HTTP stack answers.
pub async fn health() -> Response {
    plain(StatusCode::OK, "ok\n")
}

/// `GET /ready`: 200 once the store answers a read, still takes writes, and the audit log
/// file can be written, else 503 (the cause is logged, not sent).
pub async fn ready(State(app): State<Arc<App>>) -> Response {
    let check = {
        let app = app.clone();
        tokio::task::spawn_blocking(move || store_and_audit_ready(&app))
    };
    match tokio::time::timeout(READY_DEADLINE, check).await {
        Ok(Ok(Ok(()))) => plain(StatusCode::OK, "ready\n"),
        Ok(Ok(Err(cause))) => {
            tracing::warn!(%cause, "not ready");
            plain(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
        }
        Ok(Err(_)) => plain(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        Err(_) => {
            tracing::warn!("not ready: the store did not answer within the probe's deadline");
            plain(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
        }
    }
}

/// The checks behind `/ready`. The store opened (and migrated its schema) at start, so a
/// read that succeeds now means it is reachable with the expected schema.
fn store_and_audit_ready(app: &App) -> Result<(), String> {
    app.store.read(&mut |tx| tx.setting(PROBE_SETTING).map(|_| ())).map_err(|e| e.to_string())?;
    if let Some(why) = app.store.refusing_writes() {
        return Err(why);
    }
    let settings = app.audit.settings();
    if let Some(path) = &settings.log
        && path.as_os_str() != "-"
        && !settings.fail_open
    {
        // Opening for append (never creating) is cheap and fails as writes would: a
        // read-only file system, a removed directory, lost permissions.
        // A file just rotated away is created again by the next event: not a failure.
        match std::fs::OpenOptions::new().append(true).open(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("the audit log {} is not writable: {e}", path.display())),
        }
    }
    // Committed events whose lines could not be written yet: calls that would add events
    // fail until they are (`audit_file`). Written here if the log takes them again: a node
    // out of service receives no call that would.
    let queued = app.audit.log_file().retry_queued();
    if queued > 0 && !settings.fail_open {
        return Err(format!("{queued} audit log lines are waiting to be written"));
    }
    Ok(())
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from(text))
        .expect("static response parts are valid")
}
