//! Deletion destroys on PostgreSQL too (issue 24.3): once a KMS key's deletion completes
//! and a secret is deleted with ForceDeleteWithoutRecovery, the background scrub rewrites
//! the tables that held them and has the WAL segments that held them removed, so no file
//! of the PostgreSQL data directory (heap files, WAL, anything) still holds the wrapped
//! material or the sealed value. A role that may not scrub is told so in the log, and
//! nothing claims the rows destroyed.

mod common;

use common::kms_client;

use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::primitives::Blob;
use base64::Engine;
use coffer_store::testing::TestPostgres;
use coffer_store::{PostgresStore, Store};
use common::Server;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const REGION: &str = "us-east-1";
const MASTER_KEY: &str = common::SHARED_MASTER_KEY;

/// How long the scrub may take to show in the files (the node works every second and the
/// store URL asks for a one-second batching delay).
const SCRUB_WAIT: Duration = Duration::from_secs(90);

/// A server of its own, set as the scrub needs it: WAL segments are removed, not recycled
/// under new names with their old contents.
fn server_without_wal_recycling() -> TestPostgres {
    let server = TestPostgres::start();
    server.admin_query("ALTER SYSTEM SET wal_recycle = off");
    server.admin_query("SELECT pg_reload_conf()");
    server
}

fn data_directory(server: &TestPostgres) -> PathBuf {
    let rows = server.admin_query("SHOW data_directory");
    PathBuf::from(rows[0][0].clone().expect("the server names its data directory"))
}

/// Byte search without quadratic worst cases on megabytes of WAL.
fn holds(haystack: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else { return true };
    let mut at = 0;
    while let Some(found) = haystack[at..].iter().position(|&b| b == first) {
        let start = at + found;
        if haystack[start + 1..].starts_with(rest) {
            return true;
        }
        at = start + 1;
    }
    false
}

/// Every file under `dir` holding any of `needles`, with the needle's index.
fn files_holding(dir: &Path, needles: &[&[u8]]) -> Vec<(PathBuf, usize)> {
    let mut found = Vec::new();
    for file in common::files_under(dir) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        for (i, needle) in needles.iter().enumerate() {
            if holds(&bytes, needle) {
                found.push((file.clone(), i));
            }
        }
    }
    found
}

/// `coffer serve --dev` on the PostgreSQL database `url`, working every second.
fn node(url: &str, dir: &Path, stderr: std::process::Stdio) -> Server {
    Server::start_with_stderr(
        &common::postgres_node_args(url, dir, &["--sweep-interval", "1"]),
        &[("COFFER_MASTER_KEY", MASTER_KEY)],
        stderr,
    )
}

/// What the deletions must destroy: the key's wrapped material (as stored, base64 in the
/// key's record, and raw) and the force-deleted secret's sealed value (whole and its tail).
struct Doomed {
    key_id: String,
    needles: Vec<Vec<u8>>,
}

/// Creates a key, a secret under it, an Encrypt blob, and a secret to force-delete, and
/// reads what the deletions must destroy from the database.
async fn create(server: &Server, url: &str) -> Doomed {
    let kms = kms_client(&server.url);
    let sm = server.client();
    let key = kms.create_key().send().await.unwrap();
    let key_id = key.key_metadata().unwrap().key_id().to_owned();
    sm.create_secret()
        .name("on-doomed")
        .kms_key_id(&key_id)
        .secret_string("x")
        .send()
        .await
        .unwrap();
    kms.encrypt().key_id(&key_id).plaintext(Blob::new("blob")).send().await.unwrap();
    let forced = sm
        .create_secret()
        .name("forced")
        .secret_string("a value that must be destroyed")
        .send()
        .await
        .unwrap();
    let (arn, version) =
        (forced.arn().unwrap().to_owned(), forced.version_id().unwrap().to_owned());
    let record_key = format!("000000000000/{REGION}/{key_id}");
    let url = url.to_owned();
    let (wrapped, sealed) = tokio::task::spawn_blocking(move || {
        let (mut wrapped, mut sealed) = (String::new(), Vec::new());
        PostgresStore::open(&url)
            .unwrap()
            .read(&mut |tx| {
                let record = tx.record("kms-key", &record_key)?.expect("the key is stored");
                let record: serde_json::Value = serde_json::from_slice(&record).unwrap();
                wrapped = record["materials"][0]["wrapped"].as_str().unwrap().to_owned();
                sealed = tx.version_value(&arn, &version)?.expect("the value is stored").0;
                Ok(())
            })
            .unwrap();
        (wrapped, sealed)
    })
    .await
    .unwrap();
    let wrapped_bytes = base64::engine::general_purpose::STANDARD.decode(&wrapped).unwrap();
    let needles = vec![
        wrapped.as_bytes().to_vec(),
        wrapped_bytes,
        sealed.clone(),
        sealed[sealed.len() - 32..].to_vec(),
    ];
    Doomed { key_id, needles }
}

/// Schedules the key's deletion, force-deletes the secret, moves the key's deletion date
/// into the past and waits until the node has carried the key deletion out.
async fn delete(server: &Server, url: &str, doomed: &Doomed) {
    let kms = kms_client(&server.url);
    let key_id = doomed.key_id.clone();
    kms.schedule_key_deletion().key_id(&key_id).pending_window_in_days(7).send().await.unwrap();
    server
        .client()
        .delete_secret()
        .secret_id("forced")
        .force_delete_without_recovery(true)
        .send()
        .await
        .unwrap();
    let record_key = format!("000000000000/{REGION}/{key_id}");
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        PostgresStore::open(&url)
            .unwrap()
            .write(&mut |tx| {
                let bytes = tx.record("kms-key", &record_key)?.expect("the key is stored");
                let mut record: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                record["deletion_ms"] = serde_json::json!(1);
                tx.put_record("kms-key", &record_key, &serde_json::to_vec(&record).unwrap())
            })
            .unwrap();
    })
    .await
    .unwrap();
    let mut deleted = false;
    for _ in 0..200 {
        if let Err(e) = kms.describe_key().key_id(&key_id).send().await
            && e.code() == Some("NotFoundException")
        {
            deleted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(deleted, "the key deletion was carried out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_key_material_and_a_force_deleted_value_leave_no_bytes_in_the_postgres_files() {
    let pg = server_without_wal_recycling();
    let data = data_directory(&pg);
    let database = pg.create_database();
    let url = format!("{}&scrub_delay=1", database.url);
    let dir = tempfile::tempdir().unwrap();
    let server = node(&url, dir.path(), std::process::Stdio::inherit());

    let doomed = create(&server, &url).await;
    let needles: Vec<&[u8]> = doomed.needles.iter().map(Vec::as_slice).collect();
    // With a checkpoint the rows are in the table files too, not only in the WAL: the
    // probe finds both, and the scrub must clean both.
    pg.admin_query("CHECKPOINT");
    let found = files_holding(&data, &needles);
    // The material is stored base64 inside the key's JSON record, so its raw bytes (needle
    // 1, searched for anyway) are not expected.
    for i in [0, 2, 3] {
        assert!(found.iter().any(|(_, n)| *n == i), "the probe finds needle {i}: {found:?}");
    }
    let in_tables = |found: &[(PathBuf, usize)]| {
        found.iter().any(|(f, _)| f.strip_prefix(&data).is_ok_and(|p| p.starts_with("base")))
    };
    let in_wal = |found: &[(PathBuf, usize)]| {
        found.iter().any(|(f, _)| f.strip_prefix(&data).is_ok_and(|p| p.starts_with("pg_wal")))
    };
    assert!(in_tables(&found) && in_wal(&found), "{found:?}");

    delete(&server, &url, &doomed).await;
    let deadline = Instant::now() + SCRUB_WAIT;
    let mut holding = files_holding(&data, &needles);
    while !holding.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(2)).await;
        holding = files_holding(&data, &needles);
    }
    assert!(
        holding.is_empty(),
        "key {}: deleted bytes are still in {holding:?} after {SCRUB_WAIT:?}",
        doomed.key_id
    );
    // The secret under the deleted key stays, and its value no longer opens.
    assert!(server.client().get_secret_value().secret_id("on-doomed").send().await.is_err());
    drop(server);
    drop(database);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_that_may_not_checkpoint_is_told_so_and_nothing_is_called_destroyed() {
    let pg = server_without_wal_recycling();
    let data = data_directory(&pg);
    let database = pg.create_database();
    // The role owns its database and so its tables (VACUUM FULL is allowed), but is
    // neither a superuser nor a member of pg_checkpoint.
    pg.admin_query("CREATE ROLE scrubless LOGIN");
    pg.admin_query(&format!("ALTER DATABASE \"{}\" OWNER TO scrubless", database.name));
    let url = format!(
        "postgres://scrubless@127.0.0.1:{}/{}?sslmode=disable&scrub_delay=1",
        pg.port(),
        database.name
    );
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let server = node(&url, dir.path(), std::process::Stdio::from(log));

    let doomed = create(&server, &url).await;
    delete(&server, &url, &doomed).await;
    let said = "CHECKPOINT is not allowed for this role: grant it pg_checkpoint";
    let deadline = Instant::now() + SCRUB_WAIT;
    let mut text = String::new();
    while !text.contains(said) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        text = std::fs::read_to_string(&log_path).unwrap_or_default();
    }
    assert!(text.contains(said), "the log names the missing privilege:\n{text}");
    assert!(text.contains("deleted rows are NOT yet destroyed"), "{text}");
    assert!(!text.contains("destroyed deleted rows"), "nothing claims destruction:\n{text}");
    // The deletions stay pending, and the WAL does hold the value still.
    let pending = tokio::task::spawn_blocking(move || {
        PostgresStore::open(&url).unwrap().scrub_pending().unwrap()
    })
    .await
    .unwrap();
    assert!(pending > 0);
    let needles: Vec<&[u8]> = doomed.needles.iter().map(Vec::as_slice).collect();
    let found = files_holding(&data.join("pg_wal"), &needles);
    assert!(found.iter().any(|(_, n)| *n == 2), "{found:?}");
    drop(server);
    drop(database);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_master_key_rotation_on_postgres_no_old_wrapping_is_left_in_the_files() {
    let pg = server_without_wal_recycling();
    let data = data_directory(&pg);
    let database = pg.create_database();
    let url = format!("{}&scrub_delay=1", database.url);
    let dir = tempfile::tempdir().unwrap();
    let server = node(&url, dir.path(), std::process::Stdio::inherit());
    let doomed = create(&server, &url).await;
    let old_wrapping = doomed.needles[0].clone();
    pg.admin_query("CHECKPOINT");
    assert!(!files_holding(&data, &[&old_wrapping]).is_empty(), "the probe finds it");

    let new_key = dir.path().join("new.key");
    let rotated = std::process::Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(["admin", "rotate-master-key", "--store", &url, "--data-dir"])
        .arg(dir.path())
        .arg("--new-master-key-file")
        .arg(&new_key)
        .env("COFFER_MASTER_KEY", MASTER_KEY)
        .output()
        .unwrap();
    assert!(rotated.status.success(), "{}", String::from_utf8_lossy(&rotated.stderr));

    // The running node's scrub (it needs no master key) destroys the old wrappings.
    let deadline = Instant::now() + SCRUB_WAIT;
    let mut holding = files_holding(&data, &[&old_wrapping]);
    while !holding.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(2)).await;
        holding = files_holding(&data, &[&old_wrapping]);
    }
    assert!(holding.is_empty(), "the old wrapping is still in {holding:?}");
    drop(server);
    drop(database);
}
