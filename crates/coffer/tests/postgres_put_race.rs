//! Two `coffer serve` nodes on one PostgreSQL database, many writers racing
//! PutSecretValue on one secret through the official Rust SDK: a put's write takes
//! the secret its authorization read (`coffer_store`'s `postgres/handoff.rs`), and
//! must never write that read over a concurrent put. Every put's version is there,
//! and the labels are where serial puts leave them. The nodes enforce (SigV4 and
//! policies), so each put authorizes, reading its secret, before its write.

mod common;

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
use coffer_store::testing::TestPostgres;
use common::{SHARED_MASTER_KEY, Server, all_versions, count_label};
use std::process::{Command, Stdio};

const SECRETS_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"secretsmanager:*","Resource":"*"}]}"#;

/// `coffer admin <args> --store <url> --data-dir <dir>`, fed `stdin`: its output.
fn admin(args: &[&str], url: &str, dir: &str, stdin: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .arg("admin")
        .args(args)
        .args(["--store", url, "--data-dir", dir])
        .env("COFFER_MASTER_KEY", SHARED_MASTER_KEY)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("coffer starts");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

fn client_of(url: &str, credentials: &str) -> Client {
    let value = |name: &str| {
        credentials
            .lines()
            .find_map(|l| l.split_once('=').filter(|(k, _)| k.trim() == name))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| panic!("{name} in {credentials}"))
    };
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(Credentials::new(
            value("aws_access_key_id"),
            value("aws_secret_access_key"),
            None,
            None,
            "test",
        ))
        .build();
    Client::from_conf(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_racing_puts_on_one_secret_keep_every_version_and_the_labels() {
    const WRITERS: usize = 16;
    const PUTS: usize = 5;
    let database =
        tokio::task::spawn_blocking(|| TestPostgres::shared().create_database()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().to_str().unwrap();
    let serve = ["serve", "--listen", "127.0.0.1:0", "--store", &database.url, "--data-dir", dir];
    let env = [("COFFER_MASTER_KEY", SHARED_MASTER_KEY)];
    let nodes = [Server::start(&serve, &env), Server::start(&serve, &env)];
    admin(&["create-user", "app"], &database.url, dir, "");
    let credentials = admin(&["create-access-key", "app"], &database.url, dir, "");
    admin(
        &["attach-policy", "app", "--name", "secrets", "--file", "-"],
        &database.url,
        dir,
        SECRETS_POLICY,
    );
    // The nodes cache IAM records: a change reaches them within the bound.
    std::thread::sleep(coffer_store::postgres::STALE_BOUND);
    let client = |n: usize| client_of(&nodes[n % 2].url, &credentials);
    client(0).create_secret().name("raced").secret_string("v0").send().await.unwrap();

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let client = client(w);
        writers.push(tokio::spawn(async move {
            let mut tokens = Vec::new();
            for p in 0..PUTS {
                let token = format!("{w:08x}-0000-4000-8000-{p:012x}");
                let out = client
                    .put_secret_value()
                    .secret_id("raced")
                    .secret_string(format!("value-{token}"))
                    .client_request_token(&token)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(out.version_id(), Some(token.as_str()));
                tokens.push(token);
            }
            tokens
        }));
    }
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.unwrap());
    }

    let reader = client(1);
    let versions = all_versions(&reader, "raced").await;
    assert_eq!(versions.len(), 1 + WRITERS * PUTS, "{versions:?}");
    for token in &acknowledged {
        assert!(versions.iter().any(|(id, _)| id == token), "version {token} is missing");
    }
    // Serial puts leave one AWSCURRENT, one AWSPREVIOUS and no other label; a put that
    // wrote a stale read of the labels over another's would leave two of one of them.
    assert_eq!(count_label(&versions, "AWSCURRENT"), 1, "{versions:?}");
    assert_eq!(count_label(&versions, "AWSPREVIOUS"), 1, "{versions:?}");
    assert_eq!(versions.iter().filter(|(_, stages)| !stages.is_empty()).count(), 2);
    let current = reader.get_secret_value().secret_id("raced").send().await.unwrap();
    let id = current.version_id().unwrap();
    assert_eq!(current.secret_string(), Some(format!("value-{id}").as_str()));
}
