//! Accepting connections: at most a bounded number at once, each given a deadline for its
//! request headers, so that clients that connect and send nothing (or half a request) cannot
//! take every file the process may open and stop it answering.
//!
//! axum's own `serve` has neither a header timeout nor a connection cap, so the loop is here,
//! on hyper's HTTP/1 connection builder (whose header-read timer also bounds the wait for
//! the next request on an idle keep-alive connection). The body has its own deadline, applied
//! where it is read (`http::read_body`).

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower_service::Service;

/// Files kept for the process itself whatever the limit (standard streams, the runtime,
/// the database, its WAL and readers, the audit log, pooled PostgreSQL connections).
const RESERVED_FILES: u64 = 32;

/// The longest pause after a failed accept (out of files, out of memory).
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// How connections are bounded.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Time a connection has to deliver a request's headers, from when it is accepted or
    /// from the end of its previous response (so also the keep-alive idle timeout).
    pub header_timeout: Duration,
    /// How long a stopping server lets open connections finish their requests before it
    /// drops them (idle keep-alive connections are closed at once).
    pub shutdown_grace: Duration,
}

/// The number of connections to serve at once: `requested`, but no more than the open-file
/// limit leaves once the process's own files are set aside. Raises the soft limit to the
/// hard one first, as most servers do. Returns the cap and the soft limit in force.
pub fn connection_cap(requested: usize) -> (usize, Option<u64>) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if let (Some(current), Some(max)) = (limit.current, limit.maximum)
        && current < max
    {
        let raised = rustix::process::Rlimit { current: Some(max), maximum: Some(max) };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            limit = raised;
        }
    }
    let Some(soft) = limit.current else { return (requested.max(1), None) };
    let reserve = RESERVED_FILES + soft / 8;
    let room = usize::try_from(soft.saturating_sub(reserve)).unwrap_or(usize::MAX).max(1);
    (requested.clamp(1, room), Some(soft))
}

/// Marks a request that arrived over TLS (a request extension): `aws:SecureTransport`.
#[derive(Debug, Clone, Copy)]
pub struct SecureTransport;

/// Serves `router` on `listener` within `limits` until `shutdown` completes, then lets open
/// connections finish (for at most `limits.shutdown_grace`).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    serve_with_tls(listener, router, None, limits, None, shutdown).await
}

/// [`serve`], speaking TLS on every connection when `tls` is given. The handshake runs in
/// the connection's own task, within the header timeout, so a client that stalls in it
/// holds only its own slot.
///
/// With `api`, a call of the API (`POST /`, which no route of `http::router` matches, so its
/// fallback would answer it) goes straight to that fallback: routing cost ~4,600
/// instructions per call, a sixth of the whole HTTP front's.
pub async fn serve_with_tls(
    listener: TcpListener,
    router: Router,
    api: Option<Arc<crate::App>>,
    limits: Limits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    tokio::pin!(shutdown);
    let mut backoff = Duration::ZERO;
    loop {
        // At the cap, stop accepting: new connections wait in the kernel's backlog, holding
        // none of this process's files, until a connection ends.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => {
                backoff = Duration::ZERO;
                accepted
            }
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of files or memory: wait for connections to end instead of spinning
                // on an accept that cannot succeed, longer each time it fails again.
                backoff = (backoff * 2).clamp(Duration::from_millis(10), MAX_ACCEPT_BACKOFF);
                tracing::warn!(error = %e, pause_ms = backoff.as_millis() as u64, "accept failed");
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        // Answers go out at once rather than waiting on Nagle's algorithm for more.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let router = router.clone();
        let secure = tls.is_some();
        // The peer address feeds the `aws:SourceIp` condition key, the transport
        // `aws:SecureTransport`.
        let api = api.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo::<SocketAddr>(remote));
            if secure {
                request.extensions_mut().insert(SecureTransport);
            }
            let (mut router, api) = (router.clone(), api.clone());
            async move {
                match api {
                    Some(app) if crate::http::is_api_call(&request) => {
                        Ok(crate::http::api_call(app, request).await)
                    }
                    _ => router.call(request).await,
                }
            }
        });
        // Watched from before the handshake, so a stopping server waits for it too.
        let watcher = graceful.watcher();
        let http = http.clone();
        let tls = tls.clone();
        let handshake_timeout = limits.header_timeout;
        tokio::spawn(async move {
            crate::metrics::connection(true);
            let served = match tls {
                None => watcher.watch(http.serve_connection(TokioIo::new(stream), service)).await,
                Some(acceptor) => {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            watcher
                                .watch(http.serve_connection(TokioIo::new(stream), service))
                                .await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, %remote, "TLS handshake failed");
                            crate::metrics::tls_handshake_failed();
                            Ok(())
                        }
                        Err(_) => {
                            tracing::debug!(%remote, "TLS handshake timed out");
                            crate::metrics::tls_handshake_failed();
                            Ok(())
                        }
                    }
                }
            };
            if let Err(e) = served {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            crate::metrics::connection(false);
            drop(slot);
        });
    }
    // Closing the listener refuses new connections at once (a load balancer moves on).
    drop(listener);
    let open = graceful.count();
    if open > 0 {
        tracing::info!(
            open,
            grace_seconds = limits.shutdown_grace.as_secs_f64(),
            "stopped accepting; letting open connections finish"
        );
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!("connections still open after the shutdown grace period: dropped");
        }
    }
    // A call whose write is with the store ends whole, its connection open or not: what is
    // left of it runs on this runtime, which goes once serving has ended.
    if let Some(app) = &api {
        app.submitted_calls_ended().await;
    }
    Ok(())
}

/// Errors of one incoming connection (it went away before it was accepted), not of the
/// listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_stays_below_the_file_limit_and_is_at_least_one() {
        let (cap, soft) = connection_cap(usize::MAX);
        let soft = soft.expect("Linux has an open-file limit");
        assert!((cap as u64) < soft);
        assert!(cap >= 1);
        assert_eq!(connection_cap(1).0, 1);
        assert_eq!(connection_cap(0).0, 1);
    }
}
