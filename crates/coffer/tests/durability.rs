//! Durability and encryption at rest, through the real binary on a data directory.

mod common;

use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use common::{Server, all_versions, client_for, contains_bytes, count_label, files_under};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

#[tokio::test]
async fn acknowledged_writes_survive_sigkill_and_values_are_never_stored_in_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::with_data_dir(dir.path());
    let client = server.client();
    let marker = "plaintext-marker-7f3a9c-do-not-store";
    client.create_secret().name("durable").secret_string(marker).send().await.unwrap();
    client
        .put_secret_value()
        .secret_id("durable")
        .secret_binary(aws_sdk_secretsmanager::primitives::Blob::new(format!("{marker}-binary")))
        .send()
        .await
        .unwrap();
    server.kill();

    for file in files_under(dir.path()) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !contains_bytes(&bytes, marker.as_bytes()),
            "{} holds a secret value in plaintext",
            file.display()
        );
    }
    let key_file = dir.path().join("master.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);

    let server = Server::with_data_dir(dir.path());
    let client = server.client();
    let value = client
        .get_secret_value()
        .secret_id("durable")
        .version_stage("AWSPREVIOUS")
        .send()
        .await
        .unwrap();
    assert_eq!(value.secret_string(), Some(marker));
    let value = client.get_secret_value().secret_id("durable").send().await.unwrap();
    assert_eq!(value.secret_binary().unwrap().as_ref(), format!("{marker}-binary").as_bytes());
}

#[test]
fn a_wrong_master_key_stops_the_server_at_start() {
    let dir = tempfile::tempdir().unwrap();
    drop(Server::with_data_dir(dir.path()));
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", dir.path().to_str().unwrap()])
        .env("COFFER_MASTER_KEY", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("master key does not match"), "stderr: {stderr}");
    assert!(!String::from_utf8_lossy(&output.stdout).contains("listening on"));
}

#[test]
fn a_missing_master_key_file_stops_the_server_instead_of_making_a_new_key() {
    let dir = tempfile::tempdir().unwrap();
    drop(Server::with_data_dir(dir.path()));
    std::fs::remove_file(dir.path().join("master.key")).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", dir.path().to_str().unwrap()])
        .env_remove("COFFER_MASTER_KEY")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("master key file"));
    assert!(!dir.path().join("master.key").exists());
}

#[tokio::test]
async fn concurrent_updates_of_one_secret_lose_no_version_and_keep_one_awscurrent() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::with_data_dir(dir.path());
    let client = server.client();
    client.create_secret().name("contended").secret_string("v0").send().await.unwrap();
    let mut tasks = Vec::new();
    for writer in 0..8 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut made = Vec::new();
            for i in 0..10 {
                let out = client
                    .update_secret()
                    .secret_id("contended")
                    .secret_string(format!("w{writer}-{i}"))
                    .send()
                    .await
                    .unwrap();
                made.push(out.version_id().unwrap().to_string());
            }
            made
        }));
    }
    let mut acknowledged = HashSet::new();
    for task in tasks {
        acknowledged.extend(task.await.unwrap());
    }
    let versions = all_versions(&client, "contended").await;
    let stored: HashSet<String> = versions.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(versions.len(), 81);
    assert!(acknowledged.is_subset(&stored));
    assert_eq!(count_label(&versions, "AWSCURRENT"), 1);
    assert_eq!(count_label(&versions, "AWSPREVIOUS"), 1);
}

/// Writers hammer UpdateSecret while the server is SIGKILLed and restarted; every
/// acknowledged version must be there afterwards, with consistent labels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_update_is_lost_across_repeated_sigkills() {
    const WRITERS: usize = 4;
    const MAX_PER_SECRET: usize = 90;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::with_data_dir(dir.path());
    for w in 0..WRITERS {
        server
            .client()
            .create_secret()
            .name(format!("crash-{w}"))
            .secret_string("start")
            .send()
            .await
            .unwrap();
    }
    let url = Arc::new(RwLock::new(server.url.clone()));
    let acknowledged: Arc<Mutex<Vec<(usize, String)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (url, acknowledged, stop) = (url.clone(), acknowledged.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut done = 0;
            let mut attempt = 0;
            while done < MAX_PER_SECRET && !stop.load(std::sync::atomic::Ordering::Relaxed) {
                attempt += 1;
                let current_url = url.read().unwrap().clone();
                let client = client_for(&current_url, "AKIAIOSFODNN7EXAMPLE", "us-east-1");
                let token = format!("{w:08}-0000-4000-8000-{attempt:012}");
                let sent = client
                    .update_secret()
                    .secret_id(format!("crash-{w}"))
                    .secret_string(format!("value-{token}"))
                    .client_request_token(&token)
                    .send();
                match tokio::time::timeout(Duration::from_secs(5), sent).await {
                    Ok(Ok(_)) => {
                        acknowledged.lock().unwrap().push((w, token));
                        done += 1;
                    }
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }));
    }
    let mut server = server;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        server.kill();
        server = Server::with_data_dir(dir.path());
        *url.write().unwrap() = server.url.clone();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    server.kill();

    let server = Server::with_data_dir(dir.path());
    let client = server.client();
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(!acknowledged.is_empty(), "some writes were acknowledged");
    for w in 0..WRITERS {
        let versions = all_versions(&client, &format!("crash-{w}")).await;
        let stored: HashSet<&str> = versions.iter().map(|(id, _)| id.as_str()).collect();
        for (_, token) in acknowledged.iter().filter(|(writer, _)| *writer == w) {
            assert!(
                stored.contains(token.as_str()),
                "acknowledged version {token} of crash-{w} was lost"
            );
            let value = client
                .get_secret_value()
                .secret_id(format!("crash-{w}"))
                .version_id(token)
                .send()
                .await
                .unwrap();
            assert_eq!(value.secret_string(), Some(format!("value-{token}").as_str()));
        }
        assert_eq!(count_label(&versions, "AWSCURRENT"), 1, "crash-{w} has one AWSCURRENT");
        assert!(count_label(&versions, "AWSPREVIOUS") <= 1);
    }
}

#[tokio::test]
async fn a_deletion_that_fell_due_while_the_server_was_down_is_carried_out_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::with_data_dir(dir.path());
    let client = server.client();
    client.create_secret().name("expiring").secret_string("x").send().await.unwrap();
    client.create_secret().name("staying").secret_string("y").send().await.unwrap();
    client.delete_secret().secret_id("expiring").recovery_window_in_days(7).send().await.unwrap();
    server.kill();

    // Seven days pass while the server is down: move the scheduled date into the past.
    let store = coffer_store::SqliteStore::open(&dir.path().join("coffer.db")).unwrap();
    use coffer_store::Store;
    store
        .write(&mut |tx| {
            let scope = coffer_core::Scope::new("000000000000", "us-east-1");
            let mut meta = tx.secret_by_name(&scope, "expiring")?.expect("still scheduled");
            meta.deletion_ms = Some(1);
            tx.update_secret(&meta)
        })
        .unwrap();
    drop(store);

    let server = Server::with_data_dir(dir.path());
    let client = server.client();
    let mut gone = false;
    for _ in 0..50 {
        match client.describe_secret().secret_id("expiring").send().await {
            Err(e) if e.code() == Some("ResourceNotFoundException") => {
                gone = true;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert!(gone, "the due deletion was carried out");
    client.describe_secret().secret_id("staying").send().await.unwrap();
    // The name is free again.
    client.create_secret().name("expiring").secret_string("new").send().await.unwrap();
}
