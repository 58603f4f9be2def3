//! Tenth session (issue 20, `pgput10`): what a write of a secret costs the node's cache of
//! records and settings (`shared_cache`) on PostgreSQL. A PutSecretValue changes a secret
//! and its versions, never an IAM or KMS record: the IAM generation, users and KMS keys the
//! next call's read scope needs stay cached, on this node and on the others. A change of a
//! cached record still empties every cached secret as before.
//!
//! The database is a throwaway server started from the installed PostgreSQL binaries;
//! without them these tests fail, never skip.

use coffer_core::model::{AWSCURRENT, AWSPREVIOUS};
use coffer_store::fixtures::{scope, secret, version};
use coffer_store::postgres::{STALE_BOUND, statements_on_this_thread};
use coffer_store::testing::TestPostgres;
use coffer_store::{PostgresStore, SealedValue, Store};
use std::time::{Duration, Instant};

fn node(url: &str) -> PostgresStore {
    PostgresStore::open(url).unwrap().cache_records(&["iam-user", "kms-key"], &["iam-generation"])
}

/// Round trips of a read of the IAM generation, a user and a KMS key (what a call's
/// authorization and a put's encryption read).
fn read_records(store: &PostgresStore) -> u64 {
    let before = statements_on_this_thread();
    store
        .read(&mut |tx| {
            assert_eq!(tx.setting("iam-generation")?.as_deref(), Some(&b"1"[..]));
            assert!(tx.record("iam-user", "111111111111/u")?.is_some());
            assert!(tx.record("kms-key", "key")?.is_some());
            Ok(())
        })
        .unwrap();
    statements_on_this_thread() - before
}

/// Round trips of a read of the secret `app` (its current value).
fn read_secret(store: &PostgresStore) -> (String, u64) {
    let before = statements_on_this_thread();
    let mut current = String::new();
    store
        .read(&mut |tx| {
            let meta = tx.secret_by_name(&scope(), "app")?.unwrap();
            let versions = tx.versions(&meta.arn)?;
            let v = versions.iter().find(|v| v.stages.contains(AWSCURRENT)).unwrap();
            current =
                String::from_utf8(tx.version_value(&meta.arn, &v.version_id)?.unwrap().0).unwrap();
            Ok(())
        })
        .unwrap();
    (current, statements_on_this_thread() - before)
}

/// Runs `read` on `store` until it is served from the node's cache (no round trip).
fn until_cached(what: &str, mut read: impl FnMut() -> u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while read() != 0 {
        assert!(Instant::now() < deadline, "{what} was never served from the cache");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A put: a new AWSCURRENT, the old one AWSPREVIOUS, the secret's row updated.
fn put(store: &PostgresStore, id: &str, previous: &str) {
    store
        .write(&mut |tx| {
            let mut meta = tx.secret_by_name(&scope(), "app")?.unwrap();
            tx.update_version(&meta.arn, &version(previous, &[AWSPREVIOUS]))?;
            tx.insert_version(
                &meta.arn,
                &version(id, &[AWSCURRENT]),
                &SealedValue(id.as_bytes().to_vec()),
            )?;
            meta.last_changed_ms += 1;
            tx.update_secret(&meta)
        })
        .unwrap();
}

/// Two nodes on `url`, and through the first an IAM generation, a user, a KMS key and the
/// secret `app` with its AWSCURRENT `v1`; returned once the bound has passed, so each
/// node's watcher has seen the seed's bump of the shared generation (and emptied its cache
/// for it) before the cache is used again.
fn two_seeded_nodes(url: &str) -> (PostgresStore, PostgresStore) {
    let (a, b) = (node(url), node(url));
    let meta = secret("app");
    a.write(&mut |tx| {
        tx.put_setting("iam-generation", b"1")?;
        tx.put_record("iam-user", "111111111111/u", b"user")?;
        tx.put_record("kms-key", "key", b"material")?;
        tx.insert_secret(&meta)?;
        tx.insert_version(&meta.arn, &version("v1", &[AWSCURRENT]), &SealedValue(b"v1".into()))
    })
    .unwrap();
    std::thread::sleep(STALE_BOUND);
    (a, b)
}

#[test]
fn a_secret_write_keeps_the_cached_iam_and_kms_records_on_every_node() {
    let database = TestPostgres::shared().create_database();
    let (a, b) = two_seeded_nodes(&database.url);
    for store in [&a, &b] {
        until_cached("the records", || read_records(store));
    }
    put(&a, "v2", "v1");
    // Past the bound every node's watcher has polled since the commit (and its
    // notification has come): the secret is read anew, then cached again.
    std::thread::sleep(STALE_BOUND);
    for store in [&a, &b] {
        assert_eq!(read_secret(store).0, "v2");
        until_cached("the secret", || read_secret(store).1);
        // Before: every secret commit emptied the whole cache of every node.
        assert_eq!(read_records(store), 0, "a secret write emptied the cached records");
    }
}

#[test]
fn a_record_write_still_empties_the_cached_secrets_on_every_node() {
    let database = TestPostgres::shared().create_database();
    let (a, b) = two_seeded_nodes(&database.url);
    for store in [&a, &b] {
        until_cached("the secret", || read_secret(store).1);
    }
    // A KMS key's change (a disabled key, say): a secret cached beside it must go too.
    a.write(&mut |tx| tx.put_record("kms-key", "key", b"disabled")).unwrap();
    std::thread::sleep(STALE_BOUND);
    for store in [&a, &b] {
        let (_, ran) = read_secret(store);
        assert!(ran > 0, "a secret cached before a record's change outlived the bound");
    }
}
