//! `coffer admin` on every store a server runs on: the SQLite file of a data directory,
//! a PostgreSQL database (`--store postgres://...`), and a `--dev` server's data
//! directory. Each test starts `coffer serve`, manages a user, a policy and an access key
//! with `coffer admin` while the server runs, and checks through the official Rust SDK
//! that every change takes effect on the very next request.
//!
//! The PostgreSQL database is a throwaway server started from the installed binaries;
//! without them the test fails, never skips.

mod common;

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use coffer_store::testing::TestPostgres;
use common::Server;
use std::process::{Command, Output, Stdio};

/// Everything on secrets, nothing on KMS or IAM.
const SECRETS_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"secretsmanager:*","Resource":"*"}]}"#;

/// Runs `coffer admin <args> <store>`, feeding `stdin` if given.
fn admin(args: &[&str], store: &[String], stdin: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_coffer"));
    command
        .arg("admin")
        .args(args)
        .args(store)
        .env_remove("COFFER_MASTER_KEY")
        .env_remove("COFFER_STORE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("coffer starts");
    let mut input = child.stdin.take().expect("stdin is piped");
    if let Some(text) = stdin {
        use std::io::Write;
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

/// [`admin`] that must succeed; returns its standard output.
fn admin_ok(args: &[&str], store: &[String], stdin: Option<&str>) -> String {
    let output = admin(args, store, stdin);
    assert!(
        output.status.success(),
        "coffer admin {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // On PostgreSQL a running server caches IAM records, and a change reaches it by
    // notification (usually at once) and at the latest `STALE_BOUND` after its commit.
    if store.iter().any(|arg| arg.starts_with("postgres")) {
        std::thread::sleep(coffer_store::postgres::STALE_BOUND);
    }
    String::from_utf8(output.stdout).unwrap()
}

/// The key id and secret of a credentials-file section.
fn parse_credentials(text: &str) -> (String, String) {
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.split_once('=').filter(|(k, _)| k.trim() == name))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| panic!("{name} in {text}"))
    };
    (value("aws_access_key_id"), value("aws_secret_access_key"))
}

fn client(url: &str, (id, secret): &(String, String)) -> Client {
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .retry_config(aws_sdk_secretsmanager::config::retry::RetryConfig::disabled())
        .credentials_provider(Credentials::new(id, secret, None, None, "test"))
        .build();
    Client::from_conf(config)
}

async fn list_code(client: &Client) -> Result<usize, String> {
    client
        .list_secrets()
        .send()
        .await
        .map(|out| out.secret_list().len())
        .map_err(|e| e.into_service_error().code().unwrap_or_default().to_string())
}

/// Starts `coffer serve <store>` (enforcing), then drives every IAM command of
/// `coffer admin <store>` against it while it runs.
async fn every_admin_command_takes_effect_at_once(store: &[String]) {
    let mut serve = vec!["serve", "--listen", "127.0.0.1:0"];
    serve.extend(store.iter().map(String::as_str));
    let server = Server::start(&serve, &[]);

    admin_ok(&["create-user", "app"], store, None);
    let key = parse_credentials(&admin_ok(&["create-access-key", "app"], store, None));
    let app = client(&server.url, &key);
    // A user without a policy is known but may do nothing.
    assert_eq!(list_code(&app).await, Err("AccessDeniedException".into()));
    admin_ok(
        &["attach-policy", "app", "--name", "secrets", "--file", "-"],
        store,
        Some(SECRETS_POLICY),
    );
    assert_eq!(list_code(&app).await, Ok(0));
    app.create_secret().name("db").secret_string("s3cret").send().await.unwrap();
    let got = app.get_secret_value().secret_id("db").send().await.unwrap();
    assert_eq!(got.secret_string(), Some("s3cret"));

    let listed = admin_ok(&["list-users"], store, None);
    let line = listed.lines().find(|l| l.contains(":user/app")).expect("app is listed");
    assert!(line.contains(&key.0) && line.contains("secrets"), "{listed}");

    admin_ok(&["detach-policy", "app", "--name", "secrets"], store, None);
    assert_eq!(list_code(&app).await, Err("AccessDeniedException".into()));
    admin_ok(
        &["attach-policy", "app", "--name", "secrets", "--file", "-"],
        store,
        Some(SECRETS_POLICY),
    );
    assert_eq!(list_code(&app).await, Ok(1));

    admin_ok(&["delete-access-key", &key.0], store, None);
    assert_eq!(list_code(&app).await, Err("UnrecognizedClientException".into()));

    let second = parse_credentials(&admin_ok(&["create-access-key", "app"], store, None));
    assert_eq!(list_code(&client(&server.url, &second)).await, Ok(1));
    admin_ok(&["delete-user", "app"], store, None);
    assert_eq!(
        list_code(&client(&server.url, &second)).await,
        Err("UnrecognizedClientException".into())
    );
    assert!(!admin_ok(&["list-users"], store, None).contains(":user/app"));
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_works_on_a_sqlite_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store = vec!["--data-dir".to_string(), dir.path().to_str().unwrap().to_string()];
    every_admin_command_takes_effect_at_once(&store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_works_on_a_named_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("elsewhere.db");
    // The master key sits beside the file, as `coffer serve --store sqlite:` keeps it.
    let store = vec!["--store".to_string(), format!("sqlite:{}", file.display())];
    every_admin_command_takes_effect_at_once(&store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_works_on_postgres() {
    let database =
        tokio::task::spawn_blocking(|| TestPostgres::shared().create_database()).await.unwrap();
    // The data directory holds only the master key, as `coffer serve` keeps it.
    let dir = tempfile::tempdir().unwrap();
    let store = vec![
        "--store".to_string(),
        database.url.clone(),
        "--data-dir".to_string(),
        dir.path().to_str().unwrap().to_string(),
    ];
    every_admin_command_takes_effect_at_once(&store).await;
    // The master key may also come from a file named on the command line.
    let key_file = dir.path().join("master.key").to_str().unwrap().to_string();
    let elsewhere = tempfile::tempdir().unwrap();
    let by_file = [
        "--store".to_string(),
        database.url.clone(),
        "--data-dir".to_string(),
        elsewhere.path().to_str().unwrap().to_string(),
        "--master-key-file".to_string(),
        key_file,
    ];
    admin_ok(&["create-user", "ops"], &by_file, None);
    assert!(admin_ok(&["list-users"], &store, None).contains(":user/ops"));
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_refuses_a_postgres_database_no_server_has_started_on() {
    let database =
        tokio::task::spawn_blocking(|| TestPostgres::shared().create_database()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("master.key"), "c2hhcmVkLW1hc3Rlci1rZXktZm9yLWFsbC1ub2RlcyE=")
        .unwrap();
    let store = [
        "--store".to_string(),
        database.url.clone(),
        "--data-dir".to_string(),
        dir.path().to_str().unwrap().to_string(),
    ];
    let output = admin(&["create-user", "app"], &store, None);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("once first"), "{stderr}");
    assert!(!stderr.contains(&database.url), "the URL may hold a password: {stderr}");
}

/// A `--dev` server accepts any credentials, but with a data directory it persists to
/// SQLite: `coffer admin` manages that directory's users while it runs, and a server
/// started on it later without `--dev` authenticates them.
#[tokio::test(flavor = "multi_thread")]
async fn admin_works_on_a_dev_server_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap().to_string();
    let store = vec!["--data-dir".to_string(), data_dir.clone()];
    let dev =
        Server::start(&["serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir", &data_dir], &[]);
    admin_ok(&["create-user", "app"], &store, None);
    admin_ok(
        &["attach-policy", "app", "--name", "secrets", "--file", "-"],
        &store,
        Some(SECRETS_POLICY),
    );
    let key = parse_credentials(&admin_ok(&["create-access-key", "app"], &store, None));
    let doomed = parse_credentials(&admin_ok(&["create-access-key", "app"], &store, None));
    admin_ok(&["delete-access-key", &doomed.0], &store, None);
    let listed = admin_ok(&["list-users"], &store, None);
    assert!(listed.contains(&key.0) && !listed.contains(&doomed.0), "{listed}");
    assert_eq!(list_code(&client(&dev.url, &key)).await, Ok(0));
    drop(dev);

    let server = Server::start(&["serve", "--listen", "127.0.0.1:0", "--data-dir", &data_dir], &[]);
    assert_eq!(list_code(&client(&server.url, &key)).await, Ok(0));
    assert_eq!(
        list_code(&client(&server.url, &doomed)).await,
        Err("UnrecognizedClientException".into())
    );
}
