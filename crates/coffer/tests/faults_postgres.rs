//! Faults of PostgreSQL under two `coffer serve` nodes (issue 19, item 3), driven by the
//! official Rust SDK: connections terminated mid-transaction (`pg_terminate_backend`), the
//! server restarted, the postmaster SIGKILLed and recovering from its WAL, and the
//! database gone for a while. Through all of it no acknowledged write is lost, each secret
//! keeps exactly one AWSCURRENT, the nodes recover by themselves, and the background-work
//! lease is held by a live node. Each test runs its own throwaway server (the faults would
//! disturb other tests sharing one); without PostgreSQL installed they fail, never skip.

mod common;

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use coffer_store::PostgresStore;
use coffer_store::testing::{TestDatabase, TestPostgres};
use common::{Server, all_versions, client_for, count_label};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn node(url: &str, dir: &Path) -> Server {
    Server::on_postgres(url, dir, &["--sweep-interval", "1"])
}

fn client(server: &Server) -> Client {
    client_for(&server.url, "AKIAIOSFODNN7EXAMPLE", "us-east-1")
}

/// A server of its own (started off the async workers, as it blocks) and a database on it
/// whose default is not to wait for a commit's WAL (`synchronous_commit = off`, as a DBA
/// may set it for speed): Coffer's sessions must commit durably all the same, or a
/// SIGKILLed server forgets what was acknowledged (it did, before they did).
async fn own_server() -> (Arc<TestPostgres>, TestDatabase) {
    tokio::task::spawn_blocking(|| {
        let server = Arc::new(TestPostgres::start());
        let database = server.create_database();
        server.admin_query(&format!(
            "ALTER DATABASE \"{}\" SET synchronous_commit = off",
            database.name
        ));
        (server, database)
    })
    .await
    .unwrap()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// Writers through both nodes, each op retried with its token until acknowledged, while
/// `faults` runs; then every acknowledged version is checked.
async fn load_through_faults(
    server: Arc<TestPostgres>,
    database: &TestDatabase,
    faults: impl FnOnce(&TestPostgres, &str, &AtomicUsize, usize) + Send + 'static,
) -> (Server, Server, tempfile::TempDir) {
    const SECRETS: usize = 3;
    const WRITERS: usize = 6;
    const OPS: usize = 30;
    let dir = tempfile::tempdir().unwrap();
    let a = node(&database.url, dir.path());
    let b = node(&database.url, dir.path());
    for s in 0..SECRETS {
        client(&a).create_secret().name(format!("f-{s}")).secret_string("v0").send().await.unwrap();
    }
    let urls = [a.url.clone(), b.url.clone()];
    let acknowledged: Arc<Mutex<Vec<(usize, String)>>> = Arc::default();
    let done = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (urls, acknowledged, done) = (urls.clone(), acknowledged.clone(), done.clone());
        writers.push(tokio::spawn(async move {
            for i in 0..OPS {
                let secret = (w + i) % SECRETS;
                let token = format!("{w:08x}-0000-4000-8000-{i:012x}");
                let value = format!("value-{token}");
                let deadline = Instant::now() + Duration::from_secs(120);
                for attempt in 0usize.. {
                    assert!(Instant::now() < deadline, "writer {w} op {i} never succeeded");
                    let client =
                        client_for(&urls[(w + attempt) % 2], "AKIAIOSFODNN7EXAMPLE", "us-east-1");
                    let sent = client
                        .put_secret_value()
                        .secret_id(format!("f-{secret}"))
                        .secret_string(&value)
                        .client_request_token(&token)
                        .send()
                        .await;
                    match sent {
                        Ok(out) => {
                            assert_eq!(out.version_id(), Some(token.as_str()));
                            acknowledged.lock().unwrap().push((secret, token.clone()));
                            break;
                        }
                        Err(e) => {
                            // Whatever failed is the service's own error, or the
                            // connection: never a wrong answer.
                            let code = e.code().unwrap_or("no code");
                            assert!(
                                matches!(code, "InternalServiceError" | "no code"),
                                "writer {w} op {i}: {code}: {e:?}"
                            );
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let name = database.name.clone();
    let (faulty, counter) = (server.clone(), done.clone());
    let faults =
        tokio::task::spawn_blocking(move || faults(&faulty, &name, &counter, WRITERS * OPS));
    for writer in writers {
        writer.await.unwrap();
    }
    faults.await.unwrap();

    let acknowledged = acknowledged.lock().unwrap().clone();
    assert_eq!(acknowledged.len(), WRITERS * OPS);
    let reader = client(&a);
    for s in 0..SECRETS {
        let id = format!("f-{s}");
        let versions = all_versions(&reader, &id).await;
        let mine: HashSet<&String> =
            acknowledged.iter().filter(|(secret, _)| *secret == s).map(|(_, t)| t).collect();
        let mut seen: HashMap<&String, usize> = HashMap::new();
        for (version, _) in &versions {
            *seen.entry(version).or_default() += 1;
        }
        for token in &mine {
            assert_eq!(seen.get(token), Some(&1), "{id}: acknowledged version {token} lost");
        }
        assert_eq!(versions.len(), 1 + mine.len(), "{id}: {versions:?}");
        assert_eq!(count_label(&versions, "AWSCURRENT"), 1, "{id}: {versions:?}");
        assert!(count_label(&versions, "AWSPREVIOUS") <= 1, "{id}: {versions:?}");
        for token in mine {
            let got =
                reader.get_secret_value().secret_id(&id).version_id(token).send().await.unwrap();
            assert_eq!(got.secret_string(), Some(format!("value-{token}").as_str()));
        }
    }
    (a, b, dir)
}

/// Waits until `done` reaches `at`.
fn wait_for(done: &AtomicUsize, at: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while done.load(Ordering::Relaxed) < at {
        assert!(Instant::now() < deadline, "the load stalled at {}", done.load(Ordering::Relaxed));
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The holder of the background-work lease, once one holds it, must be one of `nodes`.
async fn lease_is_held_by_one_of(database: &TestDatabase, nodes: &[&Server]) {
    let url = database.url.clone();
    let store = blocking(move || PostgresStore::open(&url).unwrap()).await;
    let store = Arc::new(store);
    let pids: Vec<u32> = nodes.iter().map(|n| n.child.id()).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = store.clone();
        let holder = blocking(move || s.lease_holder("background-work").unwrap()).await;
        if let Some(holder) = holder {
            let pid: u32 =
                holder.split(':').nth(1).and_then(|p| p.parse().ok()).expect("host:pid:tag");
            if pids.contains(&pid) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "no live node holds the background-work lease");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_terminated_mid_transaction_lose_no_acknowledged_write() {
    let (server, database) = own_server().await;
    let (a, b, _dir) = load_through_faults(server.clone(), &database, |pg, name, done, total| {
        let mut terminated = 0;
        for step in 1..=8 {
            wait_for(done, total * step / 10);
            terminated += pg.terminate_connections(name);
        }
        assert!(terminated > 0, "no connection was there to terminate");
    })
    .await;
    lease_is_held_by_one_of(&database, &[&a, &b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_and_a_sigkilled_server_lose_no_acknowledged_write() {
    let (server, database) = own_server().await;
    let (a, b, _dir) = load_through_faults(server.clone(), &database, |pg, _, done, total| {
        wait_for(done, total / 4);
        pg.restart();
        wait_for(done, total / 2);
        pg.crash();
        wait_for(done, total * 3 / 4);
        pg.crash();
    })
    .await;
    lease_is_held_by_one_of(&database, &[&a, &b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_loses_its_database_answers_with_an_error_and_recovers_by_itself() {
    let (server, database) = own_server().await;
    let dir = tempfile::tempdir().unwrap();
    let a = node(&database.url, dir.path());
    let sm = client(&a);
    sm.create_secret().name("kept").secret_string("v0").send().await.unwrap();

    let pg = server.clone();
    blocking(move || pg.stop()).await;
    let started = Instant::now();
    let err = sm
        .put_secret_value()
        .secret_id("kept")
        .secret_string("while down")
        .client_request_token("00000000-0000-4000-8000-000000000001")
        .send()
        .await
        .expect_err("a write with no database was acknowledged");
    assert_eq!(err.code(), Some("InternalServiceError"), "{err:?}");
    assert_eq!(err.message(), Some("An error occurred on the server side."));
    let read = sm.get_secret_value().secret_id("kept").send().await;
    assert_eq!(read.expect_err("a read with no database").code(), Some("InternalServiceError"));
    // It answers instead of hanging (the SDK's own retries are part of this).
    assert!(started.elapsed() < Duration::from_secs(60), "{:?}", started.elapsed());

    let pg = server.clone();
    blocking(move || pg.start_again()).await;
    // No restart of the node: the same request goes through once the database is back.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let sent = sm
            .put_secret_value()
            .secret_id("kept")
            .secret_string("while down")
            .client_request_token("00000000-0000-4000-8000-000000000001")
            .send()
            .await;
        match sent {
            Ok(_) => break,
            Err(e) => {
                assert!(Instant::now() < deadline, "the node did not recover: {e:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let got = sm.get_secret_value().secret_id("kept").send().await.unwrap();
    assert_eq!(got.secret_string(), Some("while down"));
    let versions = all_versions(&sm, "kept").await;
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert_eq!(count_label(&versions, "AWSCURRENT"), 1);
    lease_is_held_by_one_of(&database, &[&a]).await;
}
