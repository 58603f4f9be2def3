//! Integrity of what lies outside the server's memory, through the real binary: a backup
//! edited to move an access key to `admin`, or with any line changed, is refused on
//! restore; dropping the newest audit events and rewriting the chain head is reported by
//! `coffer audit verify`; a restore into PostgreSQL that fails names the record; and
//! `coffer backup --out` never follows or replaces a symlink.

mod common;

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use coffer_store::{SqliteStore, Store};
use common::Server;
use std::path::Path;
use std::process::{Command, Output};

fn client(url: &str, id: &str, secret: &str) -> Client {
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .retry_config(aws_sdk_secretsmanager::config::retry::RetryConfig::disabled())
        .credentials_provider(Credentials::new(id, secret, None, None, "test"))
        .build();
    Client::from_conf(config)
}

/// `aws_access_key_id` and `aws_secret_access_key` of a credentials-file text.
fn parse_credentials(text: &str) -> (String, String) {
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.split_once('=').filter(|(k, _)| k.trim() == name))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| panic!("{name} in {text}"))
    };
    (value("aws_access_key_id"), value("aws_secret_access_key"))
}

/// Runs `coffer <args>` with the master key of `key_dir` in `COFFER_MASTER_KEY`.
fn coffer(args: &[&str], key_dir: &Path) -> Output {
    let key = std::fs::read_to_string(key_dir.join("master.key")).unwrap();
    Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(args)
        .env("COFFER_MASTER_KEY", key.trim())
        .output()
        .unwrap()
}

fn ok(output: Output) -> String {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

fn failed(output: Output) -> String {
    assert!(!output.status.success(), "succeeded: {}", String::from_utf8_lossy(&output.stdout));
    String::from_utf8(output.stderr).unwrap()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Rewrites the lines of a backup file that `edit` changes.
fn edit_backup(file: &Path, out: &Path, mut edit: impl FnMut(&str) -> Option<String>) -> usize {
    let text = std::fs::read_to_string(file).unwrap();
    let mut changed = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|line| match edit(line) {
            Some(new) => {
                changed += 1;
                new
            }
            None => line.to_string(),
        })
        .collect();
    std::fs::write(out, lines.join("\n") + "\n").unwrap();
    changed
}

#[tokio::test(flavor = "multi_thread")]
async fn an_access_key_moved_to_admin_in_a_backup_is_refused() {
    let source = tempfile::tempdir().unwrap();
    let server = Server::start(
        &["serve", "--listen", "127.0.0.1:0", "--data-dir", path(source.path())],
        &[],
    );
    let admin = parse_credentials(
        &std::fs::read_to_string(source.path().join("admin-credentials")).unwrap(),
    );
    let admin_client = client(&server.url, &admin.0, &admin.1);
    admin_client.create_secret().name("crown-jewels").secret_string("v").send().await.unwrap();
    let data_dir = ["--data-dir", path(source.path())];
    ok(coffer(&[&["admin", "create-user", "reader"][..], &data_dir].concat(), source.path()));
    let printed = ok(coffer(
        &[&["admin", "create-access-key", "reader"][..], &data_dir].concat(),
        source.path(),
    ));
    let reader = parse_credentials(&printed);
    // The reader has no permission at all.
    let denied = client(&server.url, &reader.0, &reader.1).list_secrets().send().await;
    assert!(denied.is_err());
    drop(server);

    let work = tempfile::tempdir().unwrap();
    let backup = work.path().join("snap.jsonl");
    ok(coffer(
        &["backup", "--data-dir", path(source.path()), "--out", path(&backup)],
        source.path(),
    ));
    // The reader's access key record, pointed at the administrator.
    let edited = work.path().join("edited.jsonl");
    let changed = edit_backup(&backup, &edited, |line| {
        let mut value: serde_json::Value = serde_json::from_str(line).ok()?;
        let record = value.get_mut("record")?;
        if record["kind"] != "iam-access-key" || record["key"] != reader.0.as_str() {
            return None;
        }
        let mut stored: serde_json::Value =
            serde_json::from_slice(&B64.decode(record["value"].as_str()?).ok()?).ok()?;
        stored["user_name"] = "admin".into();
        record["value"] = B64.encode(serde_json::to_vec(&stored).unwrap()).into();
        Some(value.to_string())
    });
    assert_eq!(changed, 1);

    let target = tempfile::tempdir().unwrap();
    let message = failed(coffer(
        &["restore", "--data-dir", path(target.path()), "--in", path(&edited)],
        source.path(),
    ));
    assert!(message.contains("was changed"), "{message}");
    assert!(!target.path().join("coffer.db").exists() || store_is_empty(target.path()));

    // Passed off as a file of an older build (no MAC) and forced through, the moved key
    // still does not act as the administrator.
    let unauthenticated = work.path().join("unauthenticated.jsonl");
    edit_backup(&edited, &unauthenticated, |line| {
        let mut value: serde_json::Value = serde_json::from_str(line).ok()?;
        if let Some(header) = value.get_mut("header") {
            header["version"] = 1.into();
        } else if let Some(end) = value.get_mut("end") {
            end.as_object_mut()?.remove("mac");
        } else {
            return None;
        }
        Some(value.to_string())
    });
    let message = failed(coffer(
        &["restore", "--data-dir", path(target.path()), "--in", path(&unauthenticated)],
        source.path(),
    ));
    assert!(message.contains("--allow-unauthenticated"), "{message}");
    let forced = tempfile::tempdir().unwrap();
    ok(coffer(
        &[
            "restore",
            "--data-dir",
            path(forced.path()),
            "--in",
            path(&unauthenticated),
            "--allow-unauthenticated",
        ],
        source.path(),
    ));
    std::fs::copy(source.path().join("master.key"), forced.path().join("master.key")).unwrap();
    let server = Server::start(
        &["serve", "--listen", "127.0.0.1:0", "--data-dir", path(forced.path())],
        &[],
    );
    let listed = client(&server.url, &reader.0, &reader.1).list_secrets().send().await;
    assert!(listed.is_err(), "the moved key listed: {listed:?}");
    // The untouched administrator key still works.
    client(&server.url, &admin.0, &admin.1).list_secrets().send().await.unwrap();
}

fn store_is_empty(dir: &Path) -> bool {
    let store = SqliteStore::open(&dir.join("coffer.db")).unwrap();
    let mut items = 0;
    store
        .export(&mut |_| {
            items += 1;
            Ok(())
        })
        .unwrap();
    items == 0
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_with_any_line_changed_is_refused_and_restores_nothing() {
    let source = tempfile::tempdir().unwrap();
    let server = Server::with_data_dir(source.path());
    server.client().create_secret().name("tamper-me").secret_string("v").send().await.unwrap();
    drop(server);
    let work = tempfile::tempdir().unwrap();
    let backup = work.path().join("snap.jsonl");
    ok(coffer(
        &["backup", "--data-dir", path(source.path()), "--out", path(&backup)],
        source.path(),
    ));

    // The untouched file restores.
    let fine = tempfile::tempdir().unwrap();
    ok(coffer(&["restore", "--data-dir", path(fine.path()), "--in", path(&backup)], source.path()));

    let edited = work.path().join("edited.jsonl");
    let changed = edit_backup(&backup, &edited, |line| {
        let mut value: serde_json::Value = serde_json::from_str(line).ok()?;
        let secret = value.get_mut("secret")?;
        secret["description"] = "forged".into();
        Some(value.to_string())
    });
    assert_eq!(changed, 1);
    let target = tempfile::tempdir().unwrap();
    let message = failed(coffer(
        &["restore", "--data-dir", path(target.path()), "--in", path(&edited)],
        source.path(),
    ));
    assert!(message.contains("was changed"), "{message}");
    assert!(!target.path().join("coffer.db").exists() || store_is_empty(target.path()));
    // The same into PostgreSQL: refused, and the database stays empty (a restore of the
    // untouched file then succeeds).
    let database = coffer_store::testing::TestPostgres::shared().create_database();
    let message = failed(coffer(
        &["restore", "--store", &database.url, "--in", path(&edited)],
        source.path(),
    ));
    assert!(message.contains("was changed"), "{message}");
    ok(coffer(&["restore", "--store", &database.url, "--in", path(&backup)], source.path()));
}

#[tokio::test(flavor = "multi_thread")]
async fn dropping_the_newest_audit_events_and_rewriting_the_head_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::with_data_dir(dir.path());
    for i in 0..4 {
        server
            .client()
            .create_secret()
            .name(format!("s{i}"))
            .secret_string("v")
            .send()
            .await
            .unwrap();
    }
    drop(server);
    let intact = ok(coffer(&["audit", "verify", "--data-dir", path(dir.path())], dir.path()));
    assert!(intact.contains("intact"), "{intact}");

    // With the database but not the master key: drop the two newest events of the chain
    // and point its head at the newest event left.
    let store = SqliteStore::open(&dir.path().join("coffer.db")).unwrap();
    store
        .write(&mut |tx| {
            let heads = tx.records("audit.head", "", None, 100)?;
            let (chain, _) = heads.first().expect("a chain head").clone();
            let events = tx.records("audit.event", &format!("{chain}/"), None, 100)?;
            assert!(events.len() >= 4);
            for (key, _) in &events[..2] {
                tx.delete_record("audit.event", key)?;
            }
            let newest = coffer_audit::Record::from_bytes(&events[2].1).unwrap();
            let head = serde_json::json!({"seq": newest.seq, "hash": newest.hash});
            tx.put_record("audit.head", &chain, &serde_json::to_vec(&head).unwrap())
        })
        .unwrap();
    drop(store);
    let message = failed(coffer(&["audit", "verify", "--data-dir", path(dir.path())], dir.path()));
    assert!(message.contains("tampered"), "{message}");
    assert!(message.contains("head"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_into_postgres_that_fails_names_the_record() {
    use coffer_core::model::VersionMeta;
    use coffer_store::SealedValue;
    let source = tempfile::tempdir().unwrap();
    let server = Server::with_data_dir(source.path());
    let arn = server
        .client()
        .create_secret()
        .name("has-a-nul")
        .secret_string("v")
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    drop(server);
    // A version id with a NUL, as older builds accepted through ClientRequestToken.
    let store = SqliteStore::open(&source.path().join("coffer.db")).unwrap();
    store
        .write(&mut |tx| {
            let meta = VersionMeta {
                version_id: "bad\0id-0000000000000000000000000000".into(),
                stages: Default::default(),
                created_ms: 1,
                last_accessed_ms: None,
                kms_key_id: None,
            };
            tx.insert_version(&arn, &meta, &SealedValue(vec![1, 2, 3]))
        })
        .unwrap();
    drop(store);
    let work = tempfile::tempdir().unwrap();
    let backup = work.path().join("snap.jsonl");
    ok(coffer(
        &["backup", "--data-dir", path(source.path()), "--out", path(&backup)],
        source.path(),
    ));

    let database = coffer_store::testing::TestPostgres::shared().create_database();
    let message = failed(coffer(
        &["restore", "--store", &database.url, "--in", path(&backup)],
        source.path(),
    ));
    assert!(message.contains(&arn), "{message}");
    assert!(message.contains("bad\\u0000id"), "{message}");
    assert!(message.contains("line "), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_never_follows_or_replaces_a_symlink_at_out() {
    let source = tempfile::tempdir().unwrap();
    drop(Server::with_data_dir(source.path()));
    let work = tempfile::tempdir().unwrap();
    let target = work.path().join("elsewhere.jsonl");
    let link = work.path().join("snap.jsonl");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let message = failed(coffer(
        &["backup", "--data-dir", path(source.path()), "--out", path(&link)],
        source.path(),
    ));
    assert!(message.contains("already exists"), "{message}");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert!(!target.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_trail_still_verifies_after_a_master_key_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::with_data_dir(dir.path());
    server.client().create_secret().name("before").secret_string("v").send().await.unwrap();
    drop(server);
    let new_key = dir.path().join("new.key");
    let rotated = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(["admin", "rotate-master-key", "--data-dir", path(dir.path())])
        .args(["--new-master-key-file", path(&new_key)])
        .env_remove("COFFER_MASTER_KEY")
        .output()
        .unwrap();
    ok(rotated);
    ok(coffer(&["audit", "verify", "--data-dir", path(dir.path())], dir.path()));
    let server = Server::with_data_dir(dir.path());
    server.client().create_secret().name("after").secret_string("v").send().await.unwrap();
    drop(server);
    let intact = ok(coffer(&["audit", "verify", "--data-dir", path(dir.path())], dir.path()));
    assert!(intact.contains("intact"), "{intact}");
}
