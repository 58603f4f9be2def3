//! The read scope's lookups handed to the write after it (`handoff`): the round trip it
//! saves, and that nothing stale is ever written over a concurrent change (one node or
//! two racing on one secret).

use std::sync::Arc;

use coffer_core::model::SecretMeta;

use super::PostgresStore;
use super::txn::statements_on_this_thread;
use crate::fixtures::{scope, secret, version};
use crate::testing::{TestDatabase, TestPostgres};
use crate::{Handoff, SealedValue, Store, WriteTxn};

fn node(database: &TestDatabase) -> Arc<PostgresStore> {
    Arc::new(PostgresStore::open(&database.url).unwrap().cache_records(&["kms-key"], &[]))
}

/// What the server's mutating calls do before their write: authorize in a read scope,
/// which looks the secret up (with its versions). Returns what the scope hands the call's
/// write.
fn authorize(store: &PostgresStore, name: &str) -> Handoff {
    store.read_scope(&mut || {
        store
            .read(&mut |tx| {
                let meta = tx.secret_by_name(&scope(), name)?.expect("seeded");
                tx.versions(&meta.arn)?;
                Ok(())
            })
            .unwrap();
    })
}

fn read_secret(store: &PostgresStore, name: &str) -> SecretMeta {
    let mut found = None;
    store
        .read(&mut |tx| {
            found = tx.secret_by_name(&scope(), name)?;
            Ok(())
        })
        .unwrap();
    found.expect("stored")
}

/// One more millisecond on the secret, from what the write reads of it.
fn bump(tx: &mut dyn WriteTxn, name: &str, by: i64) -> crate::StoreResult<()> {
    let mut meta = tx.secret_by_name(&scope(), name)?.expect("seeded");
    tx.versions(&meta.arn)?;
    meta.last_changed_ms += by;
    tx.update_secret(&meta)
}

/// A write after its read scope looks nothing up: its lookup of the secret (and of the
/// versions) is answered from the scope's, and the guard travels with its changes, so
/// the whole write is the one round trip before COMMIT. Before: 2 (the lookup awaited).
#[test]
fn a_write_after_its_read_scope_awaits_no_lookup() {
    let database = TestPostgres::shared().create_database();
    let store = node(&database);
    store.write(&mut |tx| tx.insert_secret(&secret("a")).map(drop)).unwrap();
    let handoff = authorize(&store, "a");
    assert!(!handoff.is_empty());
    let before = statements_on_this_thread();
    store.write_after(handoff, &mut |tx| bump(tx, "a", 1)).unwrap();
    assert_eq!(statements_on_this_thread() - before, 1);
    assert_eq!(read_secret(&store, "a").last_changed_ms, crate::fixtures::T0 + 1);
    // Moved into that write: the next write looks the secret up itself.
    let before = statements_on_this_thread();
    store.write(&mut |tx| bump(tx, "a", 1)).unwrap();
    assert_eq!(statements_on_this_thread() - before, 2);
    assert_eq!(read_secret(&store, "a").last_changed_ms, crate::fixtures::T0 + 2);
}

/// A read scope's lookups go only to the write of the call that made the scope (it is a
/// value the call keeps): another call's write on the same thread, which made no scope,
/// looks its secret up itself, and another call's scope does not replace it.
#[test]
fn a_handoff_is_not_used_by_another_calls_write() {
    let database = TestPostgres::shared().create_database();
    let store = node(&database);
    store.write(&mut |tx| tx.insert_secret(&secret("a")).map(drop)).unwrap();
    let handoff = authorize(&store, "a");
    // Another call's write on this thread, which made no read scope.
    let before = statements_on_this_thread();
    store.write(&mut |tx| bump(tx, "a", 1)).unwrap();
    assert_eq!(statements_on_this_thread() - before, 2);
    assert_eq!(read_secret(&store, "a").last_changed_ms, crate::fixtures::T0 + 1);
    // Another call's scope, which looked nothing up, hands nothing, and leaves the first
    // call's handoff to it: that call's write still awaits no lookup (the guard finds the
    // row the other call's write changed, and the write runs again, reading it).
    assert!(store.read_scope(&mut || {}).is_empty());
    let before = statements_on_this_thread();
    store.write_after(handoff, &mut |tx| bump(tx, "a", 1)).unwrap();
    assert_eq!(read_secret(&store, "a").last_changed_ms, crate::fixtures::T0 + 2);
    assert!(statements_on_this_thread() - before >= 2, "the stale handoff was rerun");
    // Fresh, it is one round trip again.
    let handoff = authorize(&store, "a");
    let before = statements_on_this_thread();
    store.write_after(handoff, &mut |tx| bump(tx, "a", 1)).unwrap();
    assert_eq!(statements_on_this_thread() - before, 1);
}

/// A store opens only the handoffs it made: another store's write (here on the same
/// database, another node) given one looks its secret up itself.
#[test]
fn a_handoff_is_not_used_by_another_store() {
    let database = TestPostgres::shared().create_database();
    let (one, two) = (node(&database), node(&database));
    one.write(&mut |tx| tx.insert_secret(&secret("a")).map(drop)).unwrap();
    let handoff = authorize(&one, "a");
    let before = statements_on_this_thread();
    two.write_after(handoff, &mut |tx| bump(tx, "a", 1)).unwrap();
    assert_eq!(statements_on_this_thread() - before, 2);
    assert_eq!(read_secret(&two, "a").last_changed_ms, crate::fixtures::T0 + 1);
}

/// Four such writes as one group commit: one round trip for the group (the last sync
/// before COMMIT, with every member's statements), where each member's lookup was one.
/// Before: 5.
#[test]
fn a_group_of_writes_after_their_read_scopes_is_one_round_trip() {
    let database = TestPostgres::shared().create_database();
    let store = node(&database);
    let names: [&'static str; 4] = ["a", "b", "c", "d"];
    super::group_tests::seed_secrets(&store, &names);
    let round_trips = super::group_tests::one_group_of(&store, &names, |store, name| {
        let handoff = authorize(store, name);
        store.write_after(handoff, &mut |tx| bump(tx, name, 1))
    });
    assert_eq!(round_trips, 1);
    for name in names {
        assert_eq!(read_secret(&store, name).last_changed_ms, crate::fixtures::T0 + 1);
    }
}

/// The secret's row changed (on another node) between the read scope and the write: the
/// guard finds it, and the write runs again on what the row is now, so the other
/// node's change is kept (+100, then +1), not written over (+1 on what the scope read).
#[test]
fn a_secret_changed_after_the_read_scope_is_read_again() {
    let database = TestPostgres::shared().create_database();
    let (one, two) = (node(&database), node(&database));
    one.write(&mut |tx| tx.insert_secret(&secret("a")).map(drop)).unwrap();
    let handoff = authorize(&one, "a");
    std::thread::scope(|s| s.spawn(|| two.write(&mut |tx| bump(tx, "a", 100))).join())
        .unwrap()
        .unwrap();
    one.write_after(handoff, &mut |tx| bump(tx, "a", 1)).unwrap();
    assert_eq!(read_secret(&one, "a").last_changed_ms, crate::fixtures::T0 + 101);
}

/// The same for the secret's versions alone (a version added without touching the
/// secret's row): the write sees the version added since its read scope.
#[test]
fn versions_changed_after_the_read_scope_are_read_again() {
    let database = TestPostgres::shared().create_database();
    let (one, two) = (node(&database), node(&database));
    let arn = secret("a").arn;
    one.write(&mut |tx| tx.insert_secret(&secret("a")).map(drop)).unwrap();
    let handoff = authorize(&one, "a");
    std::thread::scope(|s| {
        s.spawn(|| {
            two.write(&mut |tx| {
                tx.insert_version(&arn, &version("v1", &["AWSCURRENT"]), &SealedValue(vec![1]))
            })
        })
        .join()
    })
    .unwrap()
    .unwrap();
    one.write_after(handoff, &mut |tx| {
        let mut meta = tx.secret_by_name(&scope(), "a")?.expect("seeded");
        let versions = tx.versions(&meta.arn)?;
        meta.description = Some(format!("{} versions", versions.len()));
        tx.update_secret(&meta)
    })
    .unwrap();
    assert_eq!(read_secret(&one, "a").description.as_deref(), Some("1 versions"));
}

/// Two nodes, four writers each, racing puts on one secret (each a read scope, then a
/// write that adds a version and moves AWSCURRENT and AWSPREVIOUS from what it read):
/// every put's version is there, and the labels are where serial puts leave them, the
/// newest version AWSCURRENT and the one before AWSPREVIOUS, every other none.
#[test]
fn two_nodes_racing_puts_on_one_secret_lose_nothing() {
    const WRITERS: usize = 4;
    const PUTS: usize = 6;
    let database = TestPostgres::shared().create_database();
    let nodes = [node(&database), node(&database)];
    let arn = secret("a").arn;
    nodes[0]
        .write(&mut |tx| {
            tx.insert_secret(&secret("a"))?;
            tx.insert_version(&arn, &version("v-0", &["AWSCURRENT"]), &SealedValue(vec![0]))
        })
        .unwrap();
    std::thread::scope(|s| {
        for w in 0..2 * WRITERS {
            let store = &nodes[w % 2];
            s.spawn(move || {
                for p in 0..PUTS {
                    let id = format!("v-{w}-{p}");
                    let handoff = authorize(store, "a");
                    store.write_after(handoff, &mut |tx| put(tx, &id)).unwrap();
                }
            });
        }
    });
    let mut versions = Vec::new();
    nodes[1]
        .read(&mut |tx| {
            versions = tx.versions(&arn)?;
            Ok(())
        })
        .unwrap();
    assert_eq!(versions.len(), 1 + 2 * WRITERS * PUTS);
    let labelled: Vec<_> =
        versions.iter().filter(|v| !v.stages.is_empty()).map(|v| v.version_id.clone()).collect();
    let n = versions.len();
    assert_eq!(labelled, [versions[n - 2].version_id.clone(), versions[n - 1].version_id.clone()]);
    assert!(versions[n - 1].stages.contains("AWSCURRENT"));
    assert!(versions[n - 2].stages.contains("AWSPREVIOUS"));
    assert_eq!(versions[n - 1].stages.len() + versions[n - 2].stages.len(), 2);
}

/// A PutSecretValue's changes: a new version labelled AWSCURRENT, the one that held it
/// AWSPREVIOUS, the one that held that none, the secret's row updated.
fn put(tx: &mut dyn WriteTxn, id: &str) -> crate::StoreResult<()> {
    let mut meta = tx.secret_by_name(&scope(), "a")?.expect("seeded");
    for mut v in tx.versions(&meta.arn)? {
        let was_current = v.stages.remove("AWSCURRENT");
        let was_previous = v.stages.remove("AWSPREVIOUS");
        if was_current {
            v.stages.insert("AWSPREVIOUS".to_owned());
        }
        if was_current || was_previous {
            tx.update_version(&meta.arn, &v)?;
        }
    }
    tx.insert_version(&meta.arn, &version(id, &["AWSCURRENT"]), &SealedValue(vec![2]))?;
    meta.last_changed_ms += 1;
    tx.update_secret(&meta)
}
