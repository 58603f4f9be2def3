//! The master key's lifecycle against the real binary: a rotation cannot interleave with a
//! serving process, keeps the old key file until the operator deletes it, works on
//! PostgreSQL with several nodes, and two first starts racing on one database cannot bind
//! it to two master keys.

mod common;

use common::kms_client;

use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::primitives::Blob;
use common::{Server, client_for};
use std::path::Path;
use std::process::{Command, Output};

const ACCESS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
const REGION: &str = "us-east-1";

async fn value_of(sm: &aws_sdk_secretsmanager::Client, name: &str) -> Result<String, String> {
    sm.get_secret_value()
        .secret_id(name)
        .send()
        .await
        .map(|v| v.secret_string().unwrap_or_default().to_owned())
        .map_err(|e| {
            use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
            e.code().unwrap_or("no code").to_owned()
        })
}

/// `coffer admin rotate-master-key` on `data_dir` with `extra` arguments.
fn rotate(data_dir: &Path, new_key: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_coffer"));
    command
        .args(["admin", "rotate-master-key", "--data-dir"])
        .arg(data_dir)
        .arg("--new-master-key-file")
        .arg(new_key)
        .args(extra)
        .env_remove("COFFER_MASTER_KEY")
        .env_remove("COFFER_STORE");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn a_master_key_rotation_is_refused_while_a_server_runs_and_keeps_the_old_key() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let new_key = dir.path().join("new.key");
    let server = Server::with_data_dir(&data_dir);
    let sm = server.client();
    sm.create_secret().name("before").secret_string("v1").send().await.unwrap();
    let old_key = std::fs::read_to_string(data_dir.join("master.key")).unwrap();

    let refused = rotate(&data_dir, &new_key, &[], &[]);
    assert!(!refused.status.success(), "{}", text(&refused.stdout));
    let stderr = text(&refused.stderr);
    assert!(stderr.contains("stop the server"), "{stderr}");
    assert_eq!(std::fs::read_to_string(data_dir.join("master.key")).unwrap(), old_key);

    // The server goes on wrapping new material (a new key, its rotation, a secret under
    // it), all of which must still open after the rotation that follows a stop.
    let kms = kms_client(&server.url);
    let key = kms.create_key().send().await.unwrap();
    let key_id = key.key_metadata().unwrap().key_id().to_owned();
    kms.rotate_key_on_demand().key_id(&key_id).send().await.unwrap();
    sm.create_secret().name("after").kms_key_id(&key_id).secret_string("v2").send().await.unwrap();
    server.kill();

    let done = rotate(&data_dir, &new_key, &[], &[]);
    assert!(done.status.success(), "{}", text(&done.stderr));
    let stdout = text(&done.stdout);
    assert!(stdout.contains("re-wrapped 3 KMS key materials"), "{stdout}");
    // The old key file is kept (0600), and the tool says so before replacing it.
    let kept: Vec<_> = std::fs::read_dir(&data_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("master.key.old-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(std::fs::read_to_string(&kept[0]).unwrap(), old_key);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&kept[0]).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let kept_at = stdout.find("master.key.old-").expect("the kept file is named");
    let installed_at = stdout.find("installed the new master key").unwrap();
    assert!(kept_at < installed_at, "{stdout}");

    let server = Server::with_data_dir(&data_dir);
    let sm = server.client();
    assert_eq!(value_of(&sm, "before").await.unwrap(), "v1");
    assert_eq!(value_of(&sm, "after").await.unwrap(), "v2");
}

#[test]
fn two_first_starts_racing_on_an_empty_postgres_database_bind_it_to_one_master_key() {
    use coffer_store::testing::TestPostgres;
    use coffer_store::{PostgresStore, Store};
    use std::sync::Barrier;
    for round in 0..8 {
        let database = TestPostgres::shared().create_database();
        let stores = [
            PostgresStore::open(&database.url).unwrap(),
            PostgresStore::open(&database.url).unwrap(),
        ];
        let barrier = Barrier::new(2);
        let started: Vec<bool> = std::thread::scope(|s| {
            let handles: Vec<_> = stores
                .iter()
                .map(|store| {
                    let barrier = &barrier;
                    s.spawn(move || {
                        let key = coffer_crypto::MasterKey::generate();
                        barrier.wait();
                        coffer_server::KeyRing::open(key, store as &dyn Store).is_ok()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(
            started.iter().filter(|ok| **ok).count(),
            1,
            "round {round}: exactly one of two different master keys may bind the store"
        );
    }
}

/// The master key the PostgreSQL nodes start with (base64 of 32 bytes).
const OLD_MASTER_KEY: &str = common::SHARED_MASTER_KEY;

/// A `coffer serve --dev` node on the PostgreSQL database `url`.
fn node(url: &str, dir: &Path, key: &[(&str, &str)], args: &[&str]) -> Server {
    Server::start(&common::postgres_node_args(url, dir, args), key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_key_rotation_on_postgres_with_two_running_nodes_loses_nothing() {
    use coffer_store::testing::TestPostgres;
    let database =
        tokio::task::spawn_blocking(|| TestPostgres::shared().create_database()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let old = [("COFFER_MASTER_KEY", OLD_MASTER_KEY)];
    let a = node(&database.url, dir.path(), &old, &[]);
    let b = node(&database.url, dir.path(), &old, &[]);
    let (kms_a, kms_b) = (kms_client(&a.url), kms_client(&b.url));
    let sm_a = client_for(&a.url, ACCESS_KEY, REGION);
    let sm_b = client_for(&b.url, ACCESS_KEY, REGION);
    let key = kms_a.create_key().send().await.unwrap();
    let key_id = key.key_metadata().unwrap().key_id().to_owned();
    sm_a.create_secret().name("keyed").kms_key_id(&key_id).secret_string("k").send().await.unwrap();
    sm_a.create_secret().name("default").secret_string("d").send().await.unwrap();
    let blob = kms_a.encrypt().key_id(&key_id).plaintext(Blob::new("blob")).send().await.unwrap();
    let blob = blob.ciphertext_blob().unwrap().clone();

    let new_key = dir.path().join("new.key");
    let url = database.url.clone();
    let done = rotate(dir.path(), &new_key, &["--store", &url], &old);
    assert!(done.status.success(), "{}", text(&done.stderr));
    let stdout = text(&done.stdout);
    assert!(stdout.contains("re-wrapped 2 KMS key materials"), "{stdout}");
    assert!(stdout.contains("restart every node"), "{stdout}");

    // Neither running node wraps anything under the old key any more.
    for kms in [&kms_a, &kms_b] {
        let err = kms.create_key().send().await.unwrap_err();
        assert_eq!(err.code(), Some("KMSInternalException"), "{err:?}");
        let err = kms.rotate_key_on_demand().key_id(&key_id).send().await.unwrap_err();
        assert_eq!(err.code(), Some("KMSInternalException"), "{err:?}");
    }
    // Node b never unwrapped the key's material: what is now wrapped under the new
    // generation does not open with the old key, and fails instead of answering garbage.
    assert!(value_of(&sm_b, "keyed").await.is_err());

    // A node started with the new key reads everything and wraps new material.
    let new_text = std::fs::read_to_string(&new_key).unwrap();
    let c = node(&database.url, dir.path(), &[("COFFER_MASTER_KEY", new_text.trim())], &[]);
    let (kms_c, sm_c) = (kms_client(&c.url), client_for(&c.url, ACCESS_KEY, REGION));
    assert_eq!(value_of(&sm_c, "keyed").await.unwrap(), "k");
    assert_eq!(value_of(&sm_c, "default").await.unwrap(), "d");
    let plain = kms_c.decrypt().ciphertext_blob(blob).send().await.unwrap();
    assert_eq!(plain.plaintext().unwrap().as_ref(), b"blob");
    kms_c.create_key().send().await.unwrap();
    kms_c.rotate_key_on_demand().key_id(&key_id).send().await.unwrap();
    sm_c.create_secret().name("later").secret_string("l").send().await.unwrap();

    // A node restarted with the old key refuses to start.
    a.kill();
    b.kill();
    let output = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(["serve", "--dev", "--listen", "127.0.0.1:0", "--store", &database.url])
        .arg("--data-dir")
        .arg(dir.path())
        .env("COFFER_MASTER_KEY", OLD_MASTER_KEY)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains("master key does not match"));
}

/// Every file under `dir` holding `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    common::files_under(dir)
        .into_iter()
        .filter(|f| common::contains_bytes(&std::fs::read(f).unwrap_or_default(), needle))
        .collect()
}

#[tokio::test]
async fn a_deleted_key_material_and_a_force_deleted_value_leave_no_bytes_in_the_sqlite_files() {
    use base64::Engine;
    use coffer_store::Store;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let serve = || {
        Server::start(
            &[
                "serve",
                "--dev",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                &data,
                "--sweep-interval",
                "1",
            ],
            &[],
        )
    };
    let server = serve();
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
    let forced = sm
        .create_secret()
        .name("forced")
        .secret_string("a value that must be destroyed")
        .send()
        .await
        .unwrap();
    let (arn, version) =
        (forced.arn().unwrap().to_owned(), forced.version_id().unwrap().to_owned());

    // What the deletions must destroy, read from the store as it is now.
    let record_key = format!("000000000000/{REGION}/{key_id}");
    let (mut wrapped, mut sealed) = (String::new(), Vec::new());
    coffer_store::SqliteStore::open(&dir.path().join("coffer.db"))
        .unwrap()
        .read(&mut |tx| {
            let record = tx.record("kms-key", &record_key)?.expect("the key is stored");
            let record: serde_json::Value = serde_json::from_slice(&record).unwrap();
            wrapped = record["materials"][0]["wrapped"].as_str().unwrap().to_owned();
            sealed = tx.version_value(&arn, &version)?.expect("the value is stored").0;
            Ok(())
        })
        .unwrap();
    let wrapped_bytes = base64::engine::general_purpose::STANDARD.decode(&wrapped).unwrap();
    assert!(!files_holding(dir.path(), wrapped.as_bytes()).is_empty(), "the probe finds it");

    kms.schedule_key_deletion().key_id(&key_id).pending_window_in_days(7).send().await.unwrap();
    sm.delete_secret()
        .secret_id("forced")
        .force_delete_without_recovery(true)
        .send()
        .await
        .unwrap();
    server.kill();
    // The deletion date passes while the server is down.
    coffer_store::SqliteStore::open(&dir.path().join("coffer.db"))
        .unwrap()
        .write(&mut |tx| {
            let bytes = tx.record("kms-key", &record_key)?.expect("the key is stored");
            let mut record: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            record["deletion_ms"] = serde_json::json!(1);
            tx.put_record("kms-key", &record_key, &serde_json::to_vec(&record).unwrap())
        })
        .unwrap();

    let server = serve();
    let kms = kms_client(&server.url);
    let mut deleted = false;
    for _ in 0..100 {
        if let Err(e) = kms.describe_key().key_id(&key_id).send().await
            && e.code() == Some("NotFoundException")
        {
            deleted = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(deleted, "the key deletion was carried out");
    // Every request writes an audit event, so the WAL is watched without sending any.
    let mut gone = false;
    for _ in 0..100 {
        let wal = std::fs::metadata(dir.path().join("coffer.db-wal")).map(|m| m.len()).unwrap_or(0);
        if wal == 0 {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(gone, "the key deletion was carried out and the WAL started over");
    server.kill();
    for needle in
        [wrapped.as_bytes(), &wrapped_bytes[..], &sealed[..], &sealed[sealed.len() - 32..]]
    {
        let holding = files_holding(dir.path(), needle);
        assert!(holding.is_empty(), "deleted bytes are still in {holding:?}");
    }
}

#[test]
fn admin_refuses_an_account_that_is_not_twelve_digits_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    drop(Server::with_data_dir(dir.path()));
    let admin = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_coffer"))
            .arg("admin")
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .env_remove("COFFER_MASTER_KEY")
            .output()
            .unwrap()
    };
    for account in ["000000000000/us-east-1", "12345678901", "1234567890123", "00000000000a", ""] {
        let out = admin(&["create-user", "--account", account, "bob"]);
        assert!(!out.status.success(), "{account}: {}", text(&out.stdout));
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("failed to satisfy constraint: Member must satisfy regular expression pattern: ^\\d{12}$"),
            "{account}: {stderr}"
        );
    }
    let listed = admin(&["list-users"]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    assert!(!text(&listed.stdout).contains("bob"), "{}", text(&listed.stdout));
    let out = admin(&["create-user", "--account", "111122223333", "bob"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[tokio::test]
async fn the_master_key_leaves_the_process_environment_once_read() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let server = Server::start(
        &["serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir", &data],
        &[("COFFER_MASTER_KEY", OLD_MASTER_KEY)],
    );
    // The key was used: the server serves from the data directory it encrypts.
    server.client().create_secret().name("s").secret_string("v").send().await.unwrap();
    let environ = std::fs::read(format!("/proc/{}/environ", server.child.id())).unwrap();
    assert!(!common::contains_bytes(&environ, OLD_MASTER_KEY.as_bytes()));
    assert!(!common::contains_bytes(&environ, &OLD_MASTER_KEY.as_bytes()[..16]));
}

#[tokio::test]
async fn after_a_master_key_rotation_no_wrapping_under_the_old_key_is_left_in_the_files() {
    use coffer_store::Store;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let server = Server::with_data_dir(&data_dir);
    let kms = kms_client(&server.url);
    let key = kms.create_key().send().await.unwrap();
    let key_id = key.key_metadata().unwrap().key_id().to_owned();
    kms.rotate_key_on_demand().key_id(&key_id).send().await.unwrap();
    server.client().create_secret().name("s").secret_string("v").send().await.unwrap();
    server.kill();
    let wrappings = || {
        let mut found = Vec::new();
        coffer_store::SqliteStore::open(&data_dir.join("coffer.db"))
            .unwrap()
            .read(&mut |tx| {
                for (_, bytes) in tx.records("kms-key", "", None, 100)? {
                    let record: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                    for material in record["materials"].as_array().unwrap() {
                        found.push(material["wrapped"].as_str().unwrap().to_owned());
                    }
                }
                Ok(())
            })
            .unwrap();
        found
    };
    let old = wrappings();
    assert_eq!(old.len(), 3);
    let done = rotate(&data_dir, &dir.path().join("new.key"), &[], &[]);
    assert!(done.status.success(), "{}", text(&done.stderr));
    let new = wrappings();
    for wrapped in &old {
        assert!(!new.contains(wrapped));
        let holding: Vec<_> = files_holding(&data_dir, wrapped.as_bytes());
        assert!(holding.is_empty(), "an old wrapping is still in {holding:?}");
    }
}

#[tokio::test]
async fn rekeying_kms_material_at_rotation_keeps_old_ciphertext_readable_and_encrypts_anew() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let server = Server::with_data_dir(&data_dir);
    let kms = kms_client(&server.url);
    let key = kms.create_key().send().await.unwrap();
    let key_id = key.key_metadata().unwrap().key_id().to_owned();
    server.client().create_secret().name("s").secret_string("v").send().await.unwrap();
    let blob = kms.encrypt().key_id(&key_id).plaintext(Blob::new("old")).send().await.unwrap();
    let blob = blob.ciphertext_blob().unwrap().clone();
    let material = kms.describe_key().key_id(&key_id).send().await.unwrap();
    let material = material.key_metadata().unwrap().current_key_material_id().unwrap().to_owned();
    server.kill();
    let done = rotate(&data_dir, &dir.path().join("new.key"), &["--rekey-kms-material"], &[]);
    assert!(done.status.success(), "{}", text(&done.stderr));
    assert!(
        text(&done.stdout).contains("gave 2 KMS keys new key material"),
        "{}",
        text(&done.stdout)
    );

    let server = Server::with_data_dir(&data_dir);
    let kms = kms_client(&server.url);
    assert_eq!(value_of(&server.client(), "s").await.unwrap(), "v");
    let plain = kms.decrypt().ciphertext_blob(blob).send().await.unwrap();
    assert_eq!(plain.plaintext().unwrap().as_ref(), b"old");
    let now = kms.describe_key().key_id(&key_id).send().await.unwrap();
    let now = now.key_metadata().unwrap().current_key_material_id().unwrap().to_owned();
    assert_ne!(now, material, "new ciphertext uses the new material");
}
