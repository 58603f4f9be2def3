//! A stopping server and the calls whose write is with the store (`submitted`): each ends
//! whole, its audit-log line written once its write committed and its event once it
//! failed, however long the store takes to answer, as a call on the blocking pool does
//! (the runtime waits for those threads as it stops).

use crate::connections::{Limits, serve_with_tls};
use crate::test_store_wrappers::BusyWriter;
use crate::{App, Config, KeyRing};
use coffer_crypto::MasterKey;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

/// Sends a `--dev` call of `operation` with `body` to `addr`; the connection stays open
/// for its answer.
fn send(addr: SocketAddr, operation: &str, body: &str) -> TcpStream {
    let auth = "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20260101/us-east-1/\
                secretsmanager/aws4_request, SignedHeaders=host, Signature=00";
    let mut stream = TcpStream::connect(addr).unwrap();
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nX-Amz-Target: secretsmanager.{operation}\r\n\
         Content-Type: application/x-amz-json-1.1\r\nAuthorization: {auth}\r\n\
         Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    stream
}

/// What the server answered on `stream` (it closes the connection after the answer).
fn answer(mut stream: TcpStream) -> String {
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

/// The audit log's events of `operation`: (its token, its error code if it failed).
fn logged(log: &std::path::Path, operation: &str) -> Vec<(String, Option<String>)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|event| event["eventName"] == operation)
        .map(|event| {
            let token = event["requestParameters"]["clientRequestToken"].as_str();
            (token.unwrap_or_default().to_owned(), event["errorCode"].as_str().map(str::to_owned))
        })
        .collect()
}

/// A server stopping with two puts whose writes are with a busy store (their connections
/// past the shutdown grace): the one that commits gets its audit-log line and the one
/// that fails its event, once the store answers them, before the server has stopped. The
/// rest of each call ran in a task the stopping runtime dropped: the store committed the
/// first put with no line, and the second's failure was recorded nowhere.
#[test]
fn a_stopping_server_ends_the_calls_whose_writes_are_with_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let (store, writes) = BusyWriter::new();
    let keys = KeyRing::open(MasterKey::generate(), store.as_ref()).unwrap();
    let mut config = Config::default();
    config.audit.log = Some(log.clone());
    let app = App::new(store.clone(), keys, config);

    let (bound, addr) = mpsc::channel();
    let (stop, stopping) = tokio::sync::oneshot::channel::<()>();
    let (served, done_serving) = mpsc::channel();
    let server = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            bound.send(listener.local_addr().unwrap()).unwrap();
            let limits = Limits {
                max_connections: 16,
                header_timeout: Duration::from_secs(30),
                shutdown_grace: Duration::ZERO,
            };
            let router = crate::http::router(app.clone());
            let shutdown = async move {
                let _ = stopping.await;
            };
            serve_with_tls(listener, router, Some(app), limits, None, shutdown).await.unwrap();
        });
        // As `coffer serve` ends: the runtime goes, with whatever tasks it still holds.
        drop(runtime);
        let _ = served.send(());
    });
    let addr = addr.recv().unwrap();

    let created = send(
        addr,
        "CreateSecret",
        r#"{"Name":"s","SecretString":"v0","ClientRequestToken":"00000000-0000-4000-8000-000000000000"}"#,
    );
    store.run(writes.recv().unwrap());
    assert!(answer(created).starts_with("HTTP/1.1 200"));

    // A new version, and a token already used with another value (refused in the write).
    let committing = send(
        addr,
        "PutSecretValue",
        r#"{"SecretId":"s","SecretString":"v1","ClientRequestToken":"00000000-0000-4000-8000-000000000001"}"#,
    );
    let failing = send(
        addr,
        "PutSecretValue",
        r#"{"SecretId":"s","SecretString":"v2","ClientRequestToken":"00000000-0000-4000-8000-000000000000"}"#,
    );
    // Both writes are with the store, which answers neither yet.
    let with_the_store = [writes.recv().unwrap(), writes.recv().unwrap()];
    stop.send(()).unwrap();
    // The server stops accepting, and its grace for open connections is over at once; a
    // server that stops without ending the two calls has stopped (its runtime gone) by now.
    let _ = done_serving.recv_timeout(Duration::from_secs(2));
    for write in with_the_store {
        store.run(write);
    }
    server.join().unwrap();
    drop((committing, failing));

    let mut puts = logged(&log, "PutSecretValue");
    puts.sort();
    assert_eq!(
        puts,
        [
            (
                "00000000-0000-4000-8000-000000000000".to_owned(),
                Some("ResourceExistsException".into())
            ),
            ("00000000-0000-4000-8000-000000000001".to_owned(), None),
        ]
    );
}
