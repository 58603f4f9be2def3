//! The `--audit-log` copy on PostgreSQL: two nodes write the same secrets at once, so their
//! transactions conflict and PostgreSQL runs them again; each node's log still has exactly
//! one line per committed event, none for a call that failed to commit its change.
//!
//! The database is a throwaway server started from the installed PostgreSQL binaries;
//! without them this test fails, never skips.

mod common;

use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use coffer_store::testing::TestPostgres;
use common::{Server, client_for, postgres_node_args};
use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;

/// A node logging its events to `log` and its store's debug lines (which name each
/// transaction run again after a serialization conflict) to `stderr`.
fn node(url: &str, dir: &Path, log: &Path, stderr: &Path) -> Server {
    let log = log.to_str().unwrap();
    let args = postgres_node_args(url, dir, &["--audit-log", log]);
    Server::start_with_stderr(
        &args,
        &[
            ("COFFER_MASTER_KEY", common::SHARED_MASTER_KEY),
            ("COFFER_LOG", "info,coffer::request=warn,coffer_store=debug"),
        ],
        Stdio::from(std::fs::File::create(stderr).unwrap()),
    )
}

/// `(eventName, eventID, errorCode)` of each line of `log`, in order.
fn lines(log: &Path) -> Vec<(String, String, Option<String>)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            let field = |name: &str| event[name].as_str().map(str::to_string);
            (field("eventName").unwrap(), field("eventID").unwrap(), field("errorCode"))
        })
        .collect()
}

fn reruns(stderr: &Path) -> usize {
    std::fs::read_to_string(stderr).unwrap_or_default().matches("serialization conflict").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transaction_run_again_after_a_conflict_has_its_log_line_once() {
    const SECRETS: usize = 2;
    const WRITERS: usize = 8;
    const OPS: usize = 15;
    let (_server, database) = tokio::task::spawn_blocking(|| {
        let server = TestPostgres::start();
        let database = server.create_database();
        (server, database)
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let a = node(&database.url, dir.path(), &path("a.jsonl"), &path("a.err"));
    let b = node(&database.url, dir.path(), &path("b.jsonl"), &path("b.err"));
    let urls = [a.url.clone(), b.url.clone()];
    for s in 0..SECRETS {
        let client = client_for(&urls[0], "AKIAIOSFODNN7EXAMPLE", "us-east-1");
        client.create_secret().name(format!("c-{s}")).secret_string("v").send().await.unwrap();
    }
    // Rounds of writes on both nodes to the same secrets, until some were run again.
    let mut acknowledged = 0;
    for _round in 0..5 {
        let mut writers = Vec::new();
        for w in 0..WRITERS {
            let client = client_for(&urls[w % 2], "AKIAIOSFODNN7EXAMPLE", "us-east-1");
            writers.push(tokio::spawn(async move {
                let mut ok = 0;
                for i in 0..OPS {
                    let sent = client
                        .put_secret_value()
                        .secret_id(format!("c-{}", (w + i) % SECRETS))
                        .secret_string(format!("v-{w}-{i}"))
                        .send()
                        .await;
                    match sent {
                        Ok(_) => ok += 1,
                        // A write given up after conflicting too often fails as the
                        // service's own error; it changed nothing.
                        Err(e) => assert_eq!(e.code(), Some("InternalServiceError"), "{e:?}"),
                    }
                }
                ok
            }));
        }
        for writer in writers {
            acknowledged += writer.await.unwrap();
        }
        if reruns(&path("a.err")) + reruns(&path("b.err")) > 0 {
            break;
        }
    }
    assert!(
        reruns(&path("a.err")) + reruns(&path("b.err")) > 0,
        "no transaction was run again: the test proves nothing"
    );
    // The lines of a call's commit are written before it is answered.
    let all: Vec<_> = lines(&path("a.jsonl")).into_iter().chain(lines(&path("b.jsonl"))).collect();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (_, id, _) in &all {
        *seen.entry(id.as_str()).or_default() += 1;
    }
    let repeated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "event ids logged more than once: {repeated:?}");
    let committed_puts =
        all.iter().filter(|(name, _, error)| name == "PutSecretValue" && error.is_none()).count();
    assert_eq!(committed_puts, acknowledged, "one line per acknowledged PutSecretValue");
}
