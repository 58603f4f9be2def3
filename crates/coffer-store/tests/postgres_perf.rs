//! The PostgreSQL store's cost per call (issue 20): which index a name lookup uses before
//! the database has statistics, and how many statements a GetSecretValue-shaped read and
//! the audit appender's batch run. Each statement is a round trip and most of a call's CPU.

use coffer_core::model::{AWSCURRENT, Scope};
use coffer_store::fixtures::{scope, secret, version};
use coffer_store::postgres::{
    SECRET_AND_VERSIONS_BY_NAME_SQL, SECRET_BY_NAME_SQL, statements_on_this_thread,
};
use coffer_store::testing::{TestDatabase, TestPostgres};
use coffer_store::{PostgresStore, SealedValue, Store};

fn open() -> (PostgresStore, TestDatabase) {
    let database = TestPostgres::shared().create_database();
    let store = PostgresStore::open(&database.url).expect("the test database opens");
    (store, database)
}

/// The plan PostgreSQL caches for the name lookup (a generic plan, as a pooled
/// connection's prepared statement ends up with), as text.
fn generic_plan(database: &TestDatabase, sql: &str) -> String {
    let rows = database.query(&format!(
        "SET plan_cache_mode = force_generic_plan; \
         PREPARE lookup(text, text, text) AS {sql}; \
         EXPLAIN EXECUTE lookup('111111111111', 'us-east-1', 's0007'); DEALLOCATE lookup"
    ));
    rows.into_iter()
        .filter_map(|row| row.into_iter().next().flatten())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_name_lookup_uses_the_name_index_before_and_after_statistics_exist() {
    let (store, database) = open();
    // No statistics until this test asks for them: a fresh database's state, which
    // lasts until autovacuum first analyzes the table.
    database.execute("ALTER TABLE secrets SET (autovacuum_enabled = off)");
    store
        .write(&mut |tx| {
            for i in 0..300 {
                tx.insert_secret(&secret(&format!("s{i:04}")))?;
            }
            Ok(())
        })
        .unwrap();
    // Any other index on (account, region) reads every secret of the account.
    let by_name_only = |plan: &str| {
        plan.contains("Index Scan using secrets_by_name")
            && !["secrets_by_created", "secrets_by_changed", "secrets_by_accessed", "Seq Scan"]
                .iter()
                .any(|other| plan.contains(other))
    };
    for analyzed in [false, true] {
        if analyzed {
            database.execute("ANALYZE secrets");
        }
        for sql in [SECRET_BY_NAME_SQL, SECRET_AND_VERSIONS_BY_NAME_SQL] {
            let plan = generic_plan(&database, sql);
            assert!(by_name_only(&plan), "analyzed: {analyzed}\n{plan}");
        }
    }
}

/// A secret with three versions: AWSCURRENT, AWSPREVIOUS and one without a label.
fn seed(store: &PostgresStore) -> String {
    let meta = secret("app");
    store
        .write(&mut |tx| {
            tx.insert_secret(&meta)?;
            tx.insert_version(&meta.arn, &version("v1", &[]), &SealedValue(b"one".to_vec()))?;
            tx.insert_version(
                &meta.arn,
                &version("v2", &["AWSPREVIOUS"]),
                &SealedValue(b"two".to_vec()),
            )?;
            tx.insert_version(
                &meta.arn,
                &version("v3", &[AWSCURRENT]),
                &SealedValue(b"three".to_vec()),
            )?;
            Ok(())
        })
        .unwrap();
    meta.arn
}

#[test]
fn reading_a_secret_its_versions_and_current_value_is_one_statement() {
    let (store, _database) = open();
    let arn = seed(&store);
    for by_arn in [false, true] {
        let before = statements_on_this_thread();
        store
            .read(&mut |tx| {
                let meta = if by_arn {
                    tx.secret_by_arn(&arn)?
                } else {
                    tx.secret_by_name(&scope(), "app")?
                };
                let meta = meta.expect("the secret exists");
                let versions = tx.versions(&meta.arn)?;
                let ids: Vec<&str> = versions.iter().map(|v| v.version_id.as_str()).collect();
                assert_eq!(ids, ["v1", "v2", "v3"]);
                let current = versions.iter().find(|v| v.stages.contains(AWSCURRENT)).unwrap();
                let value = tx.version_value(&meta.arn, &current.version_id)?.unwrap();
                assert_eq!(value.0, b"three");
                Ok(())
            })
            .unwrap();
        assert_eq!(statements_on_this_thread() - before, 1, "by ARN: {by_arn}");
    }
    // Versions that are not current, and secrets that do not exist, still read right.
    store
        .read(&mut |tx| {
            let meta = tx.secret_by_name(&scope(), "app")?.unwrap();
            assert_eq!(tx.version_value(&meta.arn, "v2")?.unwrap().0, b"two");
            assert_eq!(tx.version_value(&meta.arn, "v1")?.unwrap().0, b"one");
            assert!(tx.version_value(&meta.arn, "v9")?.is_none());
            assert!(tx.secret_by_name(&scope(), "missing")?.is_none());
            assert!(tx.versions("arn:missing")?.is_empty());
            Ok(())
        })
        .unwrap();
}

#[test]
fn a_write_sees_its_own_records_and_stores_a_batch_of_them_in_one_statement() {
    let (store, _database) = open();
    let before = statements_on_this_thread();
    store
        .write(&mut |tx| {
            for i in 0..100 {
                tx.put_record("audit.event", &format!("k{i:03}"), format!("event {i}").as_bytes())?;
            }
            // The same key twice in one batch: the last value wins, as it would one by one.
            tx.put_record("audit.event", "k000", b"replaced")?;
            Ok(())
        })
        .unwrap();
    assert_eq!(statements_on_this_thread() - before, 1);
    store
        .write(&mut |tx| {
            tx.put_record("audit.head", "h", b"1")?;
            // A read in the same transaction sees what was put before it.
            assert_eq!(tx.record("audit.head", "h")?.as_deref(), Some(&b"1"[..]));
            tx.put_record("audit.head", "h", b"2")?;
            tx.delete_record("audit.event", "k001")?;
            Ok(())
        })
        .unwrap();
    store
        .read(&mut |tx| {
            assert_eq!(tx.record("audit.event", "k000")?.as_deref(), Some(&b"replaced"[..]));
            assert_eq!(tx.record("audit.event", "k099")?.as_deref(), Some(&b"event 99"[..]));
            assert!(tx.record("audit.event", "k001")?.is_none());
            assert_eq!(tx.record("audit.head", "h")?.as_deref(), Some(&b"2"[..]));
            Ok(())
        })
        .unwrap();
    // A write that fails keeps none of its records.
    let failed = store.write(&mut |tx| {
        tx.put_record("audit.event", "lost", b"x")?;
        Err(coffer_store::StoreError::Aborted)
    });
    assert!(failed.is_err());
    store
        .read(&mut |tx| {
            assert!(tx.record("audit.event", "lost")?.is_none());
            Ok(())
        })
        .unwrap();
}

/// BatchGetSecretValue's reads: every secret of a batch, with its versions and current
/// value, in one statement whatever the batch's size, by name or by ARN, missing ones too.
#[test]
fn a_batch_of_secrets_is_looked_up_in_one_statement_whatever_its_size() {
    let (store, _database) = open();
    let mut arns = Vec::new();
    store
        .write(&mut |tx| {
            for i in 0..40 {
                let meta = secret(&format!("b{i:02}"));
                tx.insert_secret(&meta)?;
                let value = SealedValue(format!("value {i}").into_bytes());
                tx.insert_version(&meta.arn, &version("v1", &[AWSCURRENT]), &value)?;
            }
            Ok(())
        })
        .unwrap();
    arns.extend((0..40).map(|i| secret(&format!("b{i:02}")).arn));
    for size in [2usize, 20, 40] {
        let before = statements_on_this_thread();
        store
            .read(&mut |tx| {
                // Half by name, half by ARN, and one that does not exist.
                let scope = scope();
                let names: Vec<String> = (0..size / 2).map(|i| format!("b{i:02}")).collect();
                let mut by_name: Vec<(&Scope, &str)> =
                    names.iter().map(|name| (&scope, name.as_str())).collect();
                by_name.push((&scope, "missing"));
                let by_arn: Vec<&str> = arns[size / 2..size].iter().map(String::as_str).collect();
                tx.prefetch_secrets(&by_name, &by_arn)?;
                for (i, name) in names.iter().enumerate() {
                    let meta = tx.secret_by_name(&scope, name)?.unwrap();
                    assert_eq!(tx.versions(&meta.arn)?.len(), 1);
                    let value = tx.version_value(&meta.arn, "v1")?.unwrap();
                    assert_eq!(value.0, format!("value {i}").into_bytes());
                }
                for (i, arn) in by_arn.iter().enumerate() {
                    let meta = tx.secret_by_arn(arn)?.unwrap();
                    let value = tx.version_value(&meta.arn, "v1")?.unwrap();
                    assert_eq!(value.0, format!("value {}", size / 2 + i).into_bytes());
                }
                assert!(tx.secret_by_name(&scope, "missing")?.is_none());
                Ok(())
            })
            .unwrap();
        assert_eq!(statements_on_this_thread() - before, 1, "a batch of {size}");
    }
}
