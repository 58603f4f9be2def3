//! Several `coffer serve` processes on one PostgreSQL database, driven by the
//! official Rust SDK: concurrent writers through both nodes, one node killed
//! mid-load, and the background work moving to the survivor.
//!
//! The database is a throwaway server started from the installed PostgreSQL
//! binaries; without them these tests fail, never skip.

mod common;

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use coffer_store::testing::{TestDatabase, TestPostgres};
use coffer_store::{PostgresStore, Store};
use common::{Server, all_versions, client_for, count_label};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// A node on `url`, working in the background every second (so a lease lasts three).
fn node(url: &str, dir: &Path) -> Server {
    Server::on_postgres(url, dir, &["--sweep-interval", "1"])
}

fn client(server: &Server) -> Client {
    client_for(&server.url, "AKIAIOSFODNN7EXAMPLE", "us-east-1")
}

/// A fresh database; created off the async workers, as it blocks.
async fn database() -> TestDatabase {
    tokio::task::spawn_blocking(|| TestPostgres::shared().create_database()).await.unwrap()
}

/// The pid in a lease holder's name (`host:pid:tag`).
fn holder_pid(holder: &str) -> u32 {
    holder.split(':').nth(1).and_then(|pid| pid.parse().ok()).expect("host:pid:tag")
}

async fn lease_holder(store: &Arc<PostgresStore>) -> Option<String> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.lease_holder("background-work").unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_two_nodes_lose_nothing_even_when_one_is_killed_mid_load() {
    const SECRETS: usize = 3;
    const WRITERS: usize = 8;
    const OPS: usize = 12;
    let database = database().await;
    let dir = tempfile::tempdir().unwrap();
    let a = node(&database.url, dir.path());
    let b = node(&database.url, dir.path());
    for s in 0..SECRETS {
        client(&a)
            .create_secret()
            .name(format!("shared-{s}"))
            .secret_string("v0")
            .send()
            .await
            .unwrap();
    }

    let alive = Arc::new(RwLock::new(vec![a.url.clone(), b.url.clone()]));
    let acknowledged: Arc<Mutex<Vec<(usize, String)>>> = Arc::default();
    let done = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (alive, acknowledged, done) = (alive.clone(), acknowledged.clone(), done.clone());
        writers.push(tokio::spawn(async move {
            for i in 0..OPS {
                let secret = (w + i) % SECRETS;
                let token = format!("{w:08x}-0000-4000-8000-{i:012x}");
                let value = format!("value-{token}");
                let deadline = Instant::now() + Duration::from_secs(90);
                // Until acknowledged: after a failure the same request (same
                // token) goes to another live node, as a client behind a load
                // balancer would retry.
                for attempt in 0usize.. {
                    assert!(Instant::now() < deadline, "writer {w} op {i} never succeeded");
                    let url = {
                        let alive = alive.read().unwrap();
                        alive[(w + attempt) % alive.len()].clone()
                    };
                    let client = client_for(&url, "AKIAIOSFODNN7EXAMPLE", "us-east-1");
                    let id = format!("shared-{secret}");
                    let sent = if i % 2 == 0 {
                        client
                            .update_secret()
                            .secret_id(&id)
                            .secret_string(&value)
                            .client_request_token(&token)
                            .send()
                            .await
                            .map(|out| out.version_id().map(str::to_owned))
                            .map_err(|e| e.to_string())
                    } else {
                        client
                            .put_secret_value()
                            .secret_id(&id)
                            .secret_string(&value)
                            .client_request_token(&token)
                            .send()
                            .await
                            .map(|out| out.version_id().map(str::to_owned))
                            .map_err(|e| e.to_string())
                    };
                    match sent {
                        Ok(version) => {
                            assert_eq!(version.as_deref(), Some(token.as_str()));
                            acknowledged.lock().unwrap().push((secret, token.clone()));
                            break;
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    // Kill node b (SIGKILL: no goodbye to the database) once a third of the work is acknowledged.
    while done.load(Ordering::Relaxed) < WRITERS * OPS / 3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    alive.write().unwrap().retain(|url| *url != b.url);
    b.kill();
    for writer in writers {
        writer.await.unwrap();
    }

    let acknowledged = acknowledged.lock().unwrap().clone();
    assert_eq!(acknowledged.len(), WRITERS * OPS);
    let reader = client(&a);
    for s in 0..SECRETS {
        let id = format!("shared-{s}");
        let versions = all_versions(&reader, &id).await;
        let mine: HashSet<&String> =
            acknowledged.iter().filter(|(secret, _)| *secret == s).map(|(_, t)| t).collect();
        let mut seen: HashMap<&String, usize> = HashMap::new();
        for (version, _) in &versions {
            *seen.entry(version).or_default() += 1;
        }
        for token in &mine {
            assert_eq!(seen.get(token), Some(&1), "{id}: acknowledged version {token}");
        }
        // The initial version plus the acknowledged ones, and nothing else:
        // a request retried on the other node after the first one died did
        // not make a second version.
        assert_eq!(versions.len(), 1 + mine.len(), "{id}: {versions:?}");
        assert_eq!(count_label(&versions, "AWSCURRENT"), 1, "{id}: {versions:?}");
        assert!(count_label(&versions, "AWSPREVIOUS") <= 1, "{id}: {versions:?}");
        for token in mine {
            let got =
                reader.get_secret_value().secret_id(&id).version_id(token).send().await.unwrap();
            assert_eq!(got.secret_string(), Some(format!("value-{token}").as_str()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_racing_to_create_one_name_make_exactly_one_secret() {
    let database = database().await;
    let dir = tempfile::tempdir().unwrap();
    let nodes = [node(&database.url, dir.path()), node(&database.url, dir.path())];
    for round in 0..8 {
        let name = format!("race-{round}");
        let mut calls = Vec::new();
        for i in 0..6 {
            let client = client(&nodes[i % 2]);
            let name = name.clone();
            calls.push(tokio::spawn(async move {
                client.create_secret().name(name).secret_string(format!("by-{i}")).send().await
            }));
        }
        let mut created = 0;
        for call in calls {
            match call.await.unwrap() {
                Ok(_) => created += 1,
                Err(e) => assert_eq!(e.code(), Some("ResourceExistsException"), "{e:?}"),
            }
        }
        assert_eq!(created, 1, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_surviving_node_takes_over_background_work_from_a_killed_one() {
    let database = database().await;
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = vec![node(&database.url, dir.path()), node(&database.url, dir.path())];
    let url = database.url.clone();
    let store = Arc::new(
        tokio::task::spawn_blocking(move || PostgresStore::open(&url).unwrap()).await.unwrap(),
    );

    // One node takes the lease and keeps it while it lives.
    let deadline = Instant::now() + Duration::from_secs(20);
    let holder = loop {
        if let Some(holder) = lease_holder(&store).await {
            break holder;
        }
        assert!(Instant::now() < deadline, "no node took the background-work lease");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(lease_holder(&store).await.as_deref(), Some(holder.as_str()));
    }
    let leader = nodes.iter().position(|n| n.child.id() == holder_pid(&holder)).unwrap();
    nodes.remove(leader).kill();
    let survivor = &nodes[0];

    // A deletion falls due after the leader died: only the survivor can carry it out.
    let client = client(survivor);
    client.create_secret().name("expiring").secret_string("x").send().await.unwrap();
    client.create_secret().name("staying").secret_string("y").send().await.unwrap();
    client.delete_secret().secret_id("expiring").recovery_window_in_days(7).send().await.unwrap();
    let due = store.clone();
    tokio::task::spawn_blocking(move || {
        due.write(&mut |tx| {
            let scope = coffer_core::Scope::new("000000000000", "us-east-1");
            let mut meta = tx.secret_by_name(&scope, "expiring")?.expect("scheduled");
            meta.deletion_ms = Some(1);
            tx.update_secret(&meta)
        })
        .unwrap()
    })
    .await
    .unwrap();

    let mut gone = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match client.describe_secret().secret_id("expiring").send().await {
            Err(e) if e.code() == Some("ResourceNotFoundException") => {
                gone = true;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    assert!(gone, "the survivor did not carry out the due deletion");
    client.describe_secret().secret_id("staying").send().await.unwrap();
    let now = lease_holder(&store).await.expect("the survivor holds the lease");
    assert_eq!(holder_pid(&now), survivor.child.id());
}
