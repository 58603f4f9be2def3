//! Two nodes on one PostgreSQL database, each caching IAM and KMS key records
//! (`PostgresStore::cache_records`, as `coffer serve` opens it): a cached read needs no
//! statement, and a change committed through one node is seen by the other's reads from
//! `STALE_BOUND` after the commit on (usually within milliseconds, by notification).
//!
//! The database is a throwaway server started from the installed PostgreSQL binaries;
//! without them these tests fail, never skip.

mod common;

use common::kms_client;

use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use coffer_core::model::SecretMeta;
use coffer_crypto::MasterKey;
use coffer_iam::Iam;
use coffer_store::fixtures::{scope, secret, version};
use coffer_store::postgres::{STALE_BOUND, statements_on_this_thread};
use coffer_store::testing::TestPostgres;
use coffer_store::{PostgresStore, SealedValue, Store, StoreResult, WriteTxn};
use std::time::{Duration, Instant};

/// The kinds and settings `coffer`'s store selection caches on PostgreSQL.
const KINDS: [&str; 4] =
    [coffer_iam::USER_KIND, coffer_iam::ACCESS_KEY_KIND, "kms-key", "kms-alias"];

fn node(url: &str) -> PostgresStore {
    PostgresStore::open(url).unwrap().cache_records(&KINDS, &[coffer_iam::GENERATION_SETTING])
}

/// How many statements `f` ran on this thread.
fn statements<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let before = statements_on_this_thread();
    let out = f();
    (out, statements_on_this_thread() - before)
}

/// Repeats `f` until it runs no statement (the node's watcher has confirmed its cache
/// and the entries are cached); fails after 10 s.
fn until_cached(mut f: impl FnMut()) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while statements(&mut f).1 != 0 {
        assert!(Instant::now() < deadline, "the cache was never used");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sleeps until `STALE_BOUND` after `committed`.
fn wait_out_the_bound(committed: Instant) {
    std::thread::sleep((committed + STALE_BOUND).saturating_duration_since(Instant::now()));
}

fn record(store: &PostgresStore, kind: &str, key: &str) -> Option<Vec<u8>> {
    let mut found = None;
    store
        .read(&mut |tx| {
            found = tx.record(kind, key)?;
            Ok(())
        })
        .unwrap();
    found
}

#[test]
fn a_removed_policy_and_a_deleted_access_key_are_refused_on_the_other_node_within_the_bound() {
    let database = TestPostgres::shared().create_database();
    let (a, b) = (node(&database.url), node(&database.url));
    let master = MasterKey::generate();
    let (iam_a, iam_b) = (Iam::open(&master, &a).unwrap(), Iam::open(&master, &b).unwrap());
    iam_a.create_user(&a, "111122223333", "reader", 0).unwrap();
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"*"}]}"#;
    iam_a.put_user_policy(&a, "111122223333", "reader", "read", policy).unwrap();
    let (id, _) = iam_a.create_access_key(&a, "111122223333", "reader", 0).unwrap();

    // Created on A, found on B at once (absent records are never cached) ...
    let policies = |iam: &Iam, store: &PostgresStore| {
        iam.lookup(store, &id).unwrap().map(|key| key.caller.policies.len())
    };
    assert_eq!(policies(&iam_b, &b), Some(1));
    // ... and then served from B's memory, without a statement.
    until_cached(|| assert_eq!(policies(&iam_b, &b), Some(1)));

    iam_a.delete_user_policy(&a, "111122223333", "reader", "read").unwrap();
    let committed = Instant::now();
    wait_out_the_bound(committed);
    assert_eq!(policies(&iam_b, &b), Some(0), "B still allows what A's policy did");

    until_cached(|| assert_eq!(policies(&iam_b, &b), Some(0)));
    iam_a.delete_access_key(&a, &id).unwrap();
    let committed = Instant::now();
    wait_out_the_bound(committed);
    assert_eq!(policies(&iam_b, &b), None, "B still accepts a key deleted on A");
}

#[test]
fn a_kms_key_disabled_on_one_node_is_read_as_disabled_on_the_other_within_the_bound() {
    let database = TestPostgres::shared().create_database();
    let (a, b) = (node(&database.url), node(&database.url));
    a.write(&mut |tx| tx.put_record("kms-key", "k1", b"Enabled")).unwrap();
    assert_eq!(record(&b, "kms-key", "k1").as_deref(), Some(&b"Enabled"[..]));
    until_cached(|| assert_eq!(record(&b, "kms-key", "k1").as_deref(), Some(&b"Enabled"[..])));

    a.write(&mut |tx| tx.put_record("kms-key", "k1", b"Disabled")).unwrap();
    let committed = Instant::now();
    // The writing node sees its own change at once.
    assert_eq!(record(&a, "kms-key", "k1").as_deref(), Some(&b"Disabled"[..]));
    wait_out_the_bound(committed);
    assert_eq!(record(&b, "kms-key", "k1").as_deref(), Some(&b"Disabled"[..]));

    // Records of kinds not cached are read every time.
    a.write(&mut |tx| tx.put_record("other", "k", b"1")).unwrap();
    let (_, ran) = statements(|| record(&b, "other", "k"));
    assert_eq!(ran, 1);
}

/// With its watcher's connection gone, a node stops using its cache within the bound
/// (every read goes to the database) and resumes once it reconnected.
#[test]
fn a_node_whose_watcher_lost_its_connection_reads_the_database() {
    let database = TestPostgres::shared().create_database();
    let (a, b) = (node(&database.url), node(&database.url));
    a.write(&mut |tx| tx.put_record("kms-key", "k1", b"Enabled")).unwrap();
    until_cached(|| assert!(record(&b, "kms-key", "k1").is_some()));
    // Every connection to the database goes, the watchers' too; pools reconnect.
    TestPostgres::shared().terminate_connections(&database.name);
    // A pooled connection may fail once before the pool replaces it.
    let mut tries = 0;
    while a.write(&mut |tx| tx.put_record("kms-key", "k1", b"Disabled")).is_err() {
        tries += 1;
        assert!(tries < 10, "the write never succeeded");
    }
    let committed = Instant::now();
    wait_out_the_bound(committed);
    let read = || loop {
        if let Ok(found) = try_record(&b, "kms-key", "k1") {
            return found;
        }
    };
    assert_eq!(read().as_deref(), Some(&b"Disabled"[..]));
    until_cached(|| assert_eq!(read().as_deref(), Some(&b"Disabled"[..])));
}

fn try_record(store: &PostgresStore, kind: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
    let mut found = None;
    store
        .read(&mut |tx| {
            found = tx.record(kind, key)?;
            Ok(())
        })
        .map_err(|e| e.to_string())?;
    Ok(found)
}

/// A `--dev` node of `coffer serve` on `url` (as in `postgres_nodes.rs`).
fn server(url: &str, dir: &std::path::Path) -> common::Server {
    common::Server::on_postgres(url, dir, &[])
}

/// Through two `coffer serve` nodes: a secret under a KMS key is read through node B
/// (which caches the key's record), the key is disabled through node A, and node B
/// refuses the secret, as A does, once the bound has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kms_key_disabled_through_one_server_refuses_its_secrets_on_the_other_within_the_bound() {
    let database =
        tokio::task::spawn_blocking(|| TestPostgres::shared().create_database()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (server(&database.url, dir.path()), server(&database.url, dir.path()));
    let kms_a = kms_client(&a.url);
    let key = kms_a.create_key().send().await.unwrap();
    let key_id = key.key_metadata().unwrap().key_id().to_owned();
    let (sm_a, sm_b) = (
        common::client_for(&a.url, "AKIAIOSFODNN7EXAMPLE", "us-east-1"),
        common::client_for(&b.url, "AKIAIOSFODNN7EXAMPLE", "us-east-1"),
    );
    sm_a.create_secret().name("db").kms_key_id(&key_id).secret_string("v").send().await.unwrap();
    for _ in 0..3 {
        let got = sm_b.get_secret_value().secret_id("db").send().await.unwrap();
        assert_eq!(got.secret_string(), Some("v"));
    }

    kms_a.disable_key().key_id(&key_id).send().await.unwrap();
    let committed = Instant::now();
    let on_a = sm_a.get_secret_value().secret_id("db").send().await.unwrap_err();
    let code = on_a.into_service_error().code().map(str::to_owned);
    assert!(code.is_some());
    tokio::time::sleep((committed + STALE_BOUND).saturating_duration_since(Instant::now())).await;
    let on_b = sm_b.get_secret_value().secret_id("db").send().await.unwrap_err();
    assert_eq!(on_b.into_service_error().code().map(str::to_owned), code);
}

/// Creates secret `meta` with `value` as its AWSCURRENT version `id`.
fn create(tx: &mut dyn WriteTxn, meta: &SecretMeta, id: &str, value: &[u8]) -> StoreResult<()> {
    tx.insert_secret(meta)?;
    tx.insert_version(&meta.arn, &version(id, &["AWSCURRENT"]), &SealedValue(value.to_vec()))
}

/// Puts `value` as version `id`, which takes AWSCURRENT from version `previous` (as
/// PutSecretValue does).
fn put(
    tx: &mut dyn WriteTxn,
    arn: &str,
    id: &str,
    value: &[u8],
    previous: &str,
) -> StoreResult<()> {
    tx.insert_version(arn, &version(id, &["AWSCURRENT"]), &SealedValue(value.to_vec()))?;
    tx.update_version(arn, &version(previous, &["AWSPREVIOUS"]))
}

/// What a GetSecretValue reads of secret `name` (in a read scope, as the server does):
/// the id of its AWSCURRENT version and that version's sealed value, or `None` when there
/// is no such secret.
fn try_current_value(
    store: &PostgresStore,
    name: &str,
) -> Result<Option<(String, Vec<u8>)>, String> {
    let mut found = None;
    let mut outcome = Ok(());
    store.read_scope(&mut || {
        outcome = store.read(&mut |tx| {
            let Some(meta) = tx.secret_by_name(&scope(), name)? else {
                found = None;
                return Ok(());
            };
            let versions = tx.versions(&meta.arn)?;
            let current = versions.iter().find(|v| v.stages.contains("AWSCURRENT")).unwrap();
            let value = tx.version_value(&meta.arn, &current.version_id)?.unwrap();
            found = Some((current.version_id.clone(), value.0));
            Ok(())
        });
    });
    outcome.map_err(|e| e.to_string())?;
    Ok(found)
}

fn current_value(store: &PostgresStore, name: &str) -> Option<(String, Vec<u8>)> {
    try_current_value(store, name).unwrap()
}

/// Secrets are cached per node too: a value put, a label moved and a secret deleted on
/// node A are read by A at once and by node B from `STALE_BOUND` after the commit on,
/// after B had served the secret from memory.
#[test]
fn a_secret_changed_on_one_node_is_read_as_changed_on_the_other_within_the_bound() {
    let database = TestPostgres::shared().create_database();
    let (a, b) = (node(&database.url), node(&database.url));
    let meta = secret("app");
    a.write(&mut |tx| create(tx, &meta, "v1", b"one")).unwrap();
    let v1 = Some(("v1".to_owned(), b"one".to_vec()));
    assert_eq!(current_value(&b, "app"), v1);
    until_cached(|| assert_eq!(current_value(&b, "app"), v1));
    until_cached(|| assert_eq!(current_value(&a, "app"), v1));

    // A value put on A (a new version takes AWSCURRENT).
    a.write(&mut |tx| put(tx, &meta.arn, "v2", b"two", "v1")).unwrap();
    let committed = Instant::now();
    let v2 = Some(("v2".to_owned(), b"two".to_vec()));
    assert_eq!(current_value(&a, "app"), v2, "A reads its own write at once");
    wait_out_the_bound(committed);
    assert_eq!(current_value(&b, "app"), v2, "B still reads the old value");

    // AWSCURRENT moved back to v1 on A.
    until_cached(|| assert_eq!(current_value(&b, "app"), v2));
    a.write(&mut |tx| {
        tx.update_version(&meta.arn, &version("v1", &["AWSCURRENT"]))?;
        tx.update_version(&meta.arn, &version("v2", &["AWSPREVIOUS"]))
    })
    .unwrap();
    let committed = Instant::now();
    assert_eq!(current_value(&a, "app"), v1);
    wait_out_the_bound(committed);
    assert_eq!(current_value(&b, "app"), v1, "B still reads the label where it was");

    // The secret deleted on A.
    until_cached(|| assert_eq!(current_value(&b, "app"), v1));
    a.write(&mut |tx| tx.delete_secret(&meta.arn)).unwrap();
    let committed = Instant::now();
    assert_eq!(current_value(&a, "app"), None);
    wait_out_the_bound(committed);
    assert_eq!(current_value(&b, "app"), None, "B still reads a deleted secret");
}

/// A node whose watcher lost its connection reads secrets from the database (within the
/// bound), so a value put meanwhile on another node is read.
#[test]
fn a_node_whose_watcher_lost_its_connection_reads_secrets_from_the_database() {
    let database = TestPostgres::shared().create_database();
    let (a, b) = (node(&database.url), node(&database.url));
    let meta = secret("app");
    a.write(&mut |tx| create(tx, &meta, "v1", b"one")).unwrap();
    until_cached(|| assert!(current_value(&b, "app").is_some()));
    TestPostgres::shared().terminate_connections(&database.name);
    let mut tries = 0;
    while a.write(&mut |tx| put(tx, &meta.arn, "v2", b"two", "v1")).is_err() {
        tries += 1;
        assert!(tries < 10, "the write never succeeded");
    }
    let committed = Instant::now();
    wait_out_the_bound(committed);
    let v2 = Some(("v2".to_owned(), b"two".to_vec()));
    let read = || loop {
        if let Ok(found) = try_current_value(&b, "app") {
            return found;
        }
    };
    assert_eq!(read(), v2);
    until_cached(|| assert_eq!(read(), v2));
}
