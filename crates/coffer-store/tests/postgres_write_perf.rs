//! The PostgreSQL store's round trips per write (issue 20): a PutSecretValue-shaped write
//! sends the statements whose answers it does not need with the next one it does, reads
//! the versions with the secret, and reads a record once per transaction; and what that
//! must not change: a write that fails, or whose deferred statement failed, keeps
//! nothing, and the members of one group commit each see the others' records.

use std::sync::Arc;

use coffer_core::model::{AWSCURRENT, AWSPREVIOUS, SecretMeta};
use coffer_store::fixtures::{scope, secret, version};
use coffer_store::postgres::statements_on_this_thread;
use coffer_store::testing::{TestDatabase, TestPostgres};
use coffer_store::{PostgresStore, SealedValue, Store, StoreError};

fn open() -> (Arc<PostgresStore>, TestDatabase) {
    let database = TestPostgres::shared().create_database();
    let store = PostgresStore::open(&database.url).expect("the test database opens");
    (Arc::new(store), database)
}

/// A secret with AWSCURRENT and AWSPREVIOUS, a KMS key record and an audit head.
fn seed(store: &PostgresStore, name: &str) -> SecretMeta {
    let meta = secret(name);
    store
        .write(&mut |tx| {
            tx.insert_secret(&meta)?;
            tx.insert_version(
                &meta.arn,
                &version("v1", &[AWSPREVIOUS]),
                &SealedValue(b"1".to_vec()),
            )?;
            tx.insert_version(
                &meta.arn,
                &version("v2", &[AWSCURRENT]),
                &SealedValue(b"2".to_vec()),
            )?;
            tx.put_record("kms-key", "key", b"material")?;
            tx.put_record("audit.head", "head", b"0")?;
            Ok(())
        })
        .unwrap();
    meta
}

/// What PutSecretValue's handler and its audit event do in their write transaction.
fn put_shaped(store: &PostgresStore, name: &str, new_id: &str) -> StoreResult {
    store.write(&mut |tx| {
        let mut meta = tx.secret_by_name(&scope(), name)?.expect("the secret exists");
        let versions = tx.versions(&meta.arn)?;
        for v in &versions {
            let stages: &[&str] = if v.stages.contains(AWSCURRENT) { &[AWSPREVIOUS] } else { &[] };
            tx.update_version(&meta.arn, &version(&v.version_id, stages))?;
        }
        assert_eq!(tx.record("kms-key", "key")?.as_deref(), Some(&b"material"[..]));
        tx.insert_version(
            &meta.arn,
            &version(new_id, &[AWSCURRENT]),
            &SealedValue(b"new".to_vec()),
        )?;
        meta.last_changed_ms += 1;
        tx.update_secret(&meta)?;
        let head = tx.record("audit.head", "head")?.expect("the head exists");
        let next = (String::from_utf8(head).unwrap().parse::<u64>().unwrap() + 1).to_string();
        tx.put_record("audit.event", &format!("event-{next}"), b"event")?;
        tx.put_record("audit.head", "head", next.as_bytes())?;
        Ok(())
    })
}

type StoreResult = Result<(), StoreError>;

#[test]
fn a_put_shaped_write_takes_four_round_trips() {
    let (store, _database) = open();
    seed(&store, "app");
    let before = statements_on_this_thread();
    put_shaped(&store, "app", "v3").unwrap();
    // The secret with its versions (and the savepoint), the KMS key record (and the two
    // label updates), the audit head (and the new version and the secret's update), and
    // the event and head upserts with the savepoint's release before COMMIT. One statement
    // and one round trip each, it was 9 round trips and the savepoint's 2; then 5, the
    // new version awaited on its own.
    assert_eq!(statements_on_this_thread() - before, 4);
    store
        .read(&mut |tx| {
            let meta = tx.secret_by_name(&scope(), "app")?.unwrap();
            assert_eq!(meta.last_changed_ms, 1_700_000_000_001);
            let stages: Vec<(String, Vec<String>)> = tx
                .versions(&meta.arn)?
                .into_iter()
                .map(|v| (v.version_id, v.stages.into_iter().collect()))
                .collect();
            assert_eq!(
                stages,
                [
                    ("v1".to_owned(), vec![]),
                    ("v2".to_owned(), vec![AWSPREVIOUS.to_owned()]),
                    ("v3".to_owned(), vec![AWSCURRENT.to_owned()]),
                ]
            );
            assert_eq!(tx.record("audit.head", "head")?.as_deref(), Some(&b"1"[..]));
            assert!(tx.record("audit.event", "event-1")?.is_some());
            Ok(())
        })
        .unwrap();
}

/// As `coffer` opens it: caching records, so each write of a secret is announced to the
/// other nodes (a bump of this node's generation row and a notification) before it commits.
fn open_caching() -> (Arc<PostgresStore>, TestDatabase) {
    let database = TestPostgres::shared().create_database();
    let store = PostgresStore::open(&database.url)
        .expect("the test database opens")
        .cache_records(&["kms-key"], &[]);
    (Arc::new(store), database)
}

#[test]
fn a_put_shaped_write_on_a_caching_store_takes_four_round_trips() {
    let (store, _database) = open_caching();
    seed(&store, "app");
    let before = statements_on_this_thread();
    put_shaped(&store, "app", "v3").unwrap();
    // The secret with its versions (and the savepoint), the KMS key record (and the two
    // label updates), the audit head (and the new version and the secret's update), and
    // the upserts, the announcement and the savepoint's release before COMMIT. The new
    // version and the announcement were each a round trip of their own: 6.
    assert_eq!(statements_on_this_thread() - before, 4);
    store
        .read(&mut |tx| {
            let meta = tx.secret_by_name(&scope(), "app")?.unwrap();
            assert_eq!(meta.last_changed_ms, 1_700_000_000_001);
            let ids: Vec<String> =
                tx.versions(&meta.arn)?.into_iter().map(|v| v.version_id).collect();
            assert_eq!(ids, ["v1", "v2", "v3"]);
            assert_eq!(tx.version_value(&meta.arn, "v3")?.unwrap().0, b"new");
            assert_eq!(tx.record("audit.head", "head")?.as_deref(), Some(&b"1"[..]));
            Ok(())
        })
        .unwrap();
}

/// A version insert sent with the next round trip still refuses a version id the secret
/// has, as a conflict, and keeps nothing of the write; and one for a missing secret fails.
#[test]
fn a_deferred_version_insert_still_reports_a_reused_id_as_a_conflict() {
    let (store, _database) = open_caching();
    let meta = seed(&store, "app");
    let result = store.write(&mut |tx| {
        tx.put_record("audit.event", "lost", b"x")?;
        tx.insert_version(&meta.arn, &version("v2", &[]), &SealedValue(b"again".to_vec()))?;
        tx.record("audit.head", "head")?;
        Ok(())
    });
    assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");
    // The closure that looks at the error gets it itself, as a conflict.
    let mut seen = None;
    let result = store.write(&mut |tx| {
        tx.insert_version(&meta.arn, &version("v2", &[]), &SealedValue(b"again".to_vec()))
            .inspect_err(|e| seen = Some(matches!(e, StoreError::Conflict(_))))?;
        tx.record("audit.head", "head")?;
        Ok(())
    });
    assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");
    assert_eq!(seen, Some(true));
    let ghost = secret("ghost");
    let result = store.write(&mut |tx| {
        tx.insert_version(&ghost.arn, &version("v1", &[]), &SealedValue(b"x".to_vec()))
    });
    assert!(result.is_err(), "{result:?}");
    store
        .read(&mut |tx| {
            assert!(tx.record("audit.event", "lost")?.is_none());
            assert_eq!(tx.version_value(&meta.arn, "v2")?.unwrap().0, b"2");
            assert!(tx.versions(&ghost.arn)?.is_empty());
            Ok(())
        })
        .unwrap();
}

#[test]
fn a_write_reads_a_record_once_and_sees_its_own_changes() {
    let (store, _database) = open();
    seed(&store, "app");
    let before = statements_on_this_thread();
    store
        .write(&mut |tx| {
            assert_eq!(tx.record("audit.head", "head")?.as_deref(), Some(&b"0"[..]));
            assert_eq!(tx.record("audit.head", "head")?.as_deref(), Some(&b"0"[..]));
            tx.put_record("audit.head", "head", b"1")?;
            assert_eq!(tx.record("audit.head", "head")?.as_deref(), Some(&b"1"[..]));
            assert!(tx.record("audit.head", "missing")?.is_none());
            tx.put_record("audit.head", "missing", b"now here")?;
            assert_eq!(tx.record("audit.head", "missing")?.as_deref(), Some(&b"now here"[..]));
            tx.delete_record("audit.head", "missing")?;
            assert!(tx.record("audit.head", "missing")?.is_none());
            // Never read before: read from the database after the put was sent.
            tx.put_record("audit.event", "fresh", b"x")?;
            assert_eq!(tx.record("audit.event", "fresh")?.as_deref(), Some(&b"x"[..]));
            Ok(())
        })
        .unwrap();
    // head, missing, the delete, fresh (with the upsert before it), then COMMIT alone
    // (counted apart): nothing is left to send with it since the nineteenth session, when
    // a group's first attempt stopped wrapping each member in a savepoint (its `RELEASE`
    // had travelled with COMMIT).
    assert_eq!(statements_on_this_thread() - before, 4);
    store
        .read(&mut |tx| {
            assert_eq!(tx.record("audit.head", "head")?.as_deref(), Some(&b"1"[..]));
            assert!(tx.record("audit.head", "missing")?.is_none());
            assert_eq!(tx.record("audit.event", "fresh")?.as_deref(), Some(&b"x"[..]));
            Ok(())
        })
        .unwrap();
}

#[test]
fn a_deferred_update_of_nothing_fails_the_write_even_if_its_error_was_ignored() {
    let (store, _database) = open();
    let meta = seed(&store, "app");
    let ghost = secret("ghost");
    let result = store.write(&mut |tx| {
        tx.put_record("audit.event", "lost", b"x")?;
        // An update of a row that does not exist: the write must not commit, whatever
        // the closure made of the error (it may not see one until later).
        let _ = tx.update_secret(&ghost);
        let _ = tx.update_version(&meta.arn, &version("v9", &[]));
        Ok(())
    });
    assert!(result.is_err(), "{result:?}");
    store
        .read(&mut |tx| {
            assert!(tx.record("audit.event", "lost")?.is_none());
            Ok(())
        })
        .unwrap();
    // The one that notices it at once still gets the error itself.
    let result = store.write(&mut |tx| {
        tx.update_secret(&ghost)?;
        tx.record("audit.head", "head")?;
        Ok(())
    });
    assert!(
        matches!(&result, Err(StoreError::Backend(message)) if message.contains("no secret has that ARN")),
        "{result:?}"
    );
}

/// Writers on many threads, so that the node's group commit runs several in one
/// transaction: each reads a counter record and puts it back incremented (as every
/// call's audit event moves the chain head), and some fail after their increment, one
/// by an update of no row that it ignored. The counter must count exactly the writes
/// that succeeded: each member saw the previous members' records, and a failed one's
/// were undone.
#[test]
fn group_commit_members_see_each_others_records_and_failed_ones_leave_nothing() {
    let (store, _database) = open();
    let meta = seed(&store, "app");
    let ghost = secret("ghost");
    store.write(&mut |tx| tx.put_record("counter", "n", b"0")).unwrap();
    let threads = 8;
    let per_thread = 25;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = Arc::clone(&store);
            let (arn, ghost) = (meta.arn.clone(), ghost.clone());
            std::thread::spawn(move || {
                let mut succeeded = 0u64;
                for i in 0..per_thread {
                    let result = store.write(&mut |tx| {
                        let n: u64 = String::from_utf8(tx.record("counter", "n")?.unwrap())
                            .unwrap()
                            .parse()
                            .unwrap();
                        tx.put_record("counter", "n", (n + 1).to_string().as_bytes())?;
                        // Every write also changes a row, as a put's version labels do.
                        tx.update_version(&arn, &version("v1", &[AWSPREVIOUS]))?;
                        match (t + i) % 7 {
                            3 => {
                                Err(StoreError::Conflict("refused after its increment".to_owned()))
                            }
                            5 if t == 0 => {
                                let _ = tx.update_secret(&ghost);
                                Ok(())
                            }
                            _ => Ok(()),
                        }
                    });
                    if result.is_ok() {
                        succeeded += 1;
                    }
                }
                succeeded
            })
        })
        .collect();
    let succeeded: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let expected_failures = (0..threads)
        .flat_map(|t| (0..per_thread).map(move |i| (t, i)))
        .filter(|(t, i)| (t + i) % 7 == 3 || ((t + i) % 7 == 5 && *t == 0))
        .count() as u64;
    assert_eq!(succeeded, (threads * per_thread) as u64 - expected_failures);
    store
        .read(&mut |tx| {
            let n = String::from_utf8(tx.record("counter", "n")?.unwrap()).unwrap();
            assert_eq!(n, succeeded.to_string());
            Ok(())
        })
        .unwrap();
}

/// The page of each version row, by secret name and version id.
fn version_pages(database: &TestDatabase) -> std::collections::BTreeMap<String, String> {
    database
        .query(
            "SELECT arn || ' ' || version_id, (ctid::text::point)[0]::bigint::text FROM versions",
        )
        .into_iter()
        .map(|row| (row[0].clone().unwrap(), row[1].clone().unwrap()))
        .collect()
}

#[test]
fn a_put_moves_its_labels_without_moving_the_version_rows() {
    // A label move rewrites a version row without changing an indexed column: PostgreSQL
    // updates it in place (HOT: no new index entries, a third of the WAL) when the row's
    // page has room for the new copy. Versions are appended, so a full page has none,
    // and under load the copies it could reclaim are still visible to a snapshot in
    // flight: held here by a reader on another connection.
    let (store, database) = open();
    let names: Vec<String> = (0..200).map(|i| format!("app-{i:03}")).collect();
    for name in &names {
        seed(&store, name);
    }
    let before = version_pages(&database);
    let reader = PostgresStore::open(&database.url).unwrap();
    reader
        .read(&mut |tx| {
            assert!(tx.secret_by_name(&scope(), "app-000")?.is_some());
            std::thread::scope(|s| {
                s.spawn(|| {
                    for name in &names {
                        put_shaped(&store, name, "v3").unwrap();
                    }
                });
            });
            Ok(())
        })
        .unwrap();
    let after = version_pages(&database);
    let kept = before.iter().filter(|(row, page)| after.get(*row) == Some(page)).count();
    // Each put rewrote both older versions of its secret (400 rows).
    assert!(kept * 4 >= before.len(), "{kept} of {} version rows kept their page", before.len());
}
