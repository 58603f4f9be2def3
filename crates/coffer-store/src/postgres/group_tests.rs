//! Group commit on a test server, with the writes of one group chosen by the test: what
//! a whole group sends, which the per-thread counts of the integration tests cannot see
//! (the group runs on whichever writer has the turn).

use std::sync::{Arc, PoisonError};

use super::PostgresStore;
use super::txn::statements_on_this_thread;
use crate::Store;
use crate::fixtures::{T0, scope, secret};
use crate::testing::TestPostgres;

/// This node's generation row, as a number (how many announcements it counts).
fn node_generation(store: &PostgresStore) -> u64 {
    let name = store.shared.as_ref().expect("caching").node_setting().to_owned();
    let mut value = None;
    store
        .read(&mut |tx| {
            value = tx.setting(&name)?;
            Ok(())
        })
        .unwrap();
    String::from_utf8(value.expect("announced before")).unwrap().parse().unwrap()
}

/// Stores a secret under each of `names`, in one write.
pub(super) fn seed_secrets(store: &PostgresStore, names: &[&'static str]) {
    store
        .write(&mut |tx| {
            for &name in names {
                tx.insert_secret(&secret(name))?;
            }
            Ok(())
        })
        .unwrap();
}

/// Runs `each(store, name)` on a thread per name while this thread holds the writers'
/// turn, so their writes queue up, then runs the whole queue here as one group commit:
/// the round trips that group took (every writer has its answer when this returns).
pub(super) fn one_group_of(
    store: &Arc<PostgresStore>,
    names: &[&'static str],
    each: fn(&PostgresStore, &'static str) -> crate::StoreResult<()>,
) -> u64 {
    let (round_trips, results) = one_group_answering(store, names, each);
    for result in results {
        result.unwrap();
    }
    round_trips
}

/// [`one_group_of`], with each writer's result, in the order of `names`.
fn one_group_answering(
    store: &Arc<PostgresStore>,
    names: &[&'static str],
    each: fn(&PostgresStore, &'static str) -> crate::StoreResult<()>,
) -> (u64, Vec<crate::StoreResult<()>>) {
    let turn = store.writers.lock().unwrap_or_else(PoisonError::into_inner);
    let writers: Vec<_> = names
        .iter()
        .map(|&name| {
            let store = Arc::clone(store);
            std::thread::spawn(move || each(&store, name))
        })
        .collect();
    let jobs = loop {
        let mut queue = store.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if queue.len() == names.len() {
            break std::mem::take(&mut *queue);
        }
        drop(queue);
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    let before = statements_on_this_thread();
    store.run_batch(jobs);
    let round_trips = statements_on_this_thread() - before;
    drop(turn);
    (round_trips, writers.into_iter().map(|writer| writer.join().unwrap()).collect())
}

/// Four writes of secrets run as one group commit: one announcement of their change
/// (one bump of the node's generation row, sent with the last round trip before COMMIT),
/// not one per write, each awaited.
#[test]
fn a_group_of_secret_writes_announces_its_change_once() {
    let database = TestPostgres::shared().create_database();
    let store =
        Arc::new(PostgresStore::open(&database.url).unwrap().cache_records(&["kms-key"], &[]));
    let names: [&'static str; 4] = ["a", "b", "c", "d"];
    seed_secrets(&store, &names);
    let first = node_generation(&store);
    let round_trips = one_group_of(&store, &names, |store, name| {
        store.write(&mut |tx| {
            let mut meta = tx.secret_by_name(&scope(), name)?.expect("seeded");
            meta.last_changed_ms += 1;
            tx.update_secret(&meta)
        })
    });
    // One per member (its lookup, with what the member before it left deferred), and
    // the last sync before COMMIT. With an announcement awaited per member: 9.
    assert_eq!(round_trips, 5);
    assert_eq!(node_generation(&store), first + 1);
    store
        .read(&mut |tx| {
            for name in names {
                let meta = tx.secret_by_name(&scope(), name)?.unwrap();
                assert_eq!(meta.last_changed_ms, 1_700_000_000_001);
            }
            Ok(())
        })
        .unwrap();
}

/// Reads record `key` of the test kind.
fn test_record(store: &PostgresStore, key: &str) -> Option<Vec<u8>> {
    let mut value = None;
    store
        .read(&mut |tx| {
            value = tx.record("test", key)?;
            Ok(())
        })
        .unwrap();
    value
}

/// Thirteenth session: a group whose last statements only have to succeed (record
/// upserts and savepoint releases, as every batch of the audit appender) sends `COMMIT`
/// with them, in one round trip: before, the last statements were synced, then `COMMIT`
/// sent alone (one round trip more per group, on the path of every read's event).
#[test]
fn a_group_of_record_writes_commits_with_its_last_statements() {
    let database = TestPostgres::shared().create_database();
    let store = Arc::new(PostgresStore::open(&database.url).unwrap());
    let names: [&'static str; 3] = ["a", "b", "c"];
    let alone = super::txn::commits_alone_on_this_thread();
    let round_trips = one_group_of(&store, &names, |store, name| {
        store.write(&mut |tx| tx.put_record("test", name, name.as_bytes()))
    });
    assert_eq!(round_trips, 1, "the members' statements and COMMIT, in one flight");
    assert_eq!(super::txn::commits_alone_on_this_thread() - alone, 0);
    for name in names {
        assert_eq!(test_record(&store, name).as_deref(), Some(name.as_bytes()));
    }
}

/// Nineteenth session: a group's first attempt runs its members without savepoints (as
/// SQLite's batches do), so a member's statements are its own and nothing else: no
/// `SAVEPOINT` before them and no `RELEASE` after (one message and one subtransaction per
/// member before; the fourteenth session had merged a `RELEASE` and the next `SAVEPOINT`
/// into one message).
#[test]
fn a_groups_first_attempt_sends_no_savepoints() {
    let database = TestPostgres::shared().create_database();
    let store = Arc::new(PostgresStore::open(&database.url).unwrap());
    let names: [&'static str; 3] = ["a", "b", "c"];
    let before = super::pipelined::deferred_sent_on_this_thread();
    one_group_of(&store, &names, |store, name| {
        store.write(&mut |tx| tx.put_record("test", name, name.as_bytes()))
    });
    // The three upserts (then COMMIT). With savepoints: SAVEPOINT, upsert, RELEASE and
    // SAVEPOINT, upsert, RELEASE and SAVEPOINT, upsert, RELEASE: 7.
    assert_eq!(super::pipelined::deferred_sent_on_this_thread() - before, 3);
    for name in names {
        assert_eq!(test_record(&store, name).as_deref(), Some(name.as_bytes()));
    }
}

/// A secret's `last_changed_ms`, as stored.
fn last_changed(store: &PostgresStore, name: &str) -> i64 {
    let mut changed = None;
    store
        .read(&mut |tx| {
            changed = tx.secret_by_name(&scope(), name)?.map(|meta| meta.last_changed_ms);
            Ok(())
        })
        .unwrap();
    changed.expect("seeded")
}

/// Moves the secret `name`'s `last_changed_ms` on by one (an update deferred to the next
/// round trip), then, for the secret "bad", reads a record from the database (a round
/// trip that sends the update ahead of it) and fails.
fn change_then_fail_after_sending(
    store: &PostgresStore,
    name: &'static str,
) -> crate::StoreResult<()> {
    store.write(&mut |tx| {
        let mut meta = tx.secret_by_name(&scope(), name)?.expect("seeded");
        meta.last_changed_ms += 1;
        tx.update_secret(&meta)?;
        if name == "bad" {
            tx.record("test", "never-written")?;
            return Err(crate::StoreError::Conflict("refused after its change".to_owned()));
        }
        Ok(())
    })
}

/// Nineteenth session: without savepoints, a member that fails after its change reached
/// the server cannot be undone alone: the attempt is rolled back and run again carefully
/// (each member in a savepoint), so the failing member changes nothing, gets its own
/// error, and the others commit once.
#[test]
fn a_member_failing_after_its_change_was_sent_leaves_nothing_and_the_others_commit() {
    let database = TestPostgres::shared().create_database();
    let store = Arc::new(PostgresStore::open(&database.url).unwrap());
    let names: [&'static str; 3] = ["a", "bad", "c"];
    seed_secrets(&store, &names);
    let (_, results) = one_group_answering(&store, &names, change_then_fail_after_sending);
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    assert!(
        matches!(&results[1], Err(crate::StoreError::Conflict(m)) if m == "refused after its change"),
        "{results:?}"
    );
    assert_eq!(last_changed(&store, "a"), T0 + 1);
    assert_eq!(last_changed(&store, "c"), T0 + 1);
    assert_eq!(last_changed(&store, "bad"), T0, "the failed member's change kept");
}

/// ... and one that fails before anything it changed left (its update still deferred)
/// needs no rerun: what it deferred is dropped, and the group commits the others in the
/// same attempt (a lookup per member, then the final sync).
#[test]
fn a_member_failing_before_its_change_left_is_dropped_without_a_rerun() {
    fn change_then_fail(store: &PostgresStore, name: &'static str) -> crate::StoreResult<()> {
        store.write(&mut |tx| {
            let mut meta = tx.secret_by_name(&scope(), name)?.expect("seeded");
            meta.last_changed_ms += 1;
            tx.update_secret(&meta)?;
            if name == "bad" {
                return Err(crate::StoreError::Conflict("refused after its change".to_owned()));
            }
            Ok(())
        })
    }
    let database = TestPostgres::shared().create_database();
    let store = Arc::new(PostgresStore::open(&database.url).unwrap());
    let names: [&'static str; 3] = ["a", "bad", "c"];
    seed_secrets(&store, &names);
    let (round_trips, results) = one_group_answering(&store, &names, change_then_fail);
    assert!(results[0].is_ok() && results[2].is_ok() && results[1].is_err(), "{results:?}");
    assert_eq!(round_trips, 4, "run again");
    assert_eq!(last_changed(&store, "a"), T0 + 1);
    assert_eq!(last_changed(&store, "c"), T0 + 1);
    assert_eq!(last_changed(&store, "bad"), T0, "the failed member's change kept");
}

/// ... and a statement among them that the server refuses (a key PostgreSQL cannot store:
/// a NUL in text) rolls the whole transaction back with that `COMMIT`: the attempt runs
/// again carefully, the failing member alone gets the error, and the others are committed.
#[test]
fn a_refused_last_statement_rolls_back_the_commit_that_travelled_with_it() {
    let database = TestPostgres::shared().create_database();
    let store = Arc::new(PostgresStore::open(&database.url).unwrap());
    let names: [&'static str; 3] = ["a", "b", "bad\0"];
    let (_, results) = one_group_answering(&store, &names, |store, name| {
        store.write(&mut |tx| tx.put_record("test", name, b"v"))
    });
    let results: Vec<bool> = results.iter().map(Result::is_ok).collect();
    // Whatever the members' order in the queue, the one with the NUL alone fails.
    assert_eq!(results, [true, true, false]);
    assert_eq!(test_record(&store, "a").as_deref(), Some(&b"v"[..]));
    assert_eq!(test_record(&store, "b").as_deref(), Some(&b"v"[..]));
}

/// Tenth session: a node's generation row that no process bumps any more (its process
/// ended) is deleted by the watchers once it has stood still for `PRUNE_AFTER` (seconds
/// in these tests); before, every process that wrote left one for good, and every node's
/// poll read them all. A live node's own row stays.
#[test]
fn a_dead_nodes_generation_row_is_pruned() {
    use super::shared_cache::NODE_GENERATION_PREFIX;

    let database = TestPostgres::shared().create_database();
    let store =
        Arc::new(PostgresStore::open(&database.url).unwrap().cache_records(&["kms-key"], &[]));
    store.write(&mut |tx| tx.insert_secret(&secret("a")).map(drop)).unwrap();
    let own = store.shared.as_ref().expect("caching").node_setting().to_owned();
    let dead = format!("{NODE_GENERATION_PREFIX}00000000deadbeef");
    database.execute(&format!(
        "INSERT INTO settings (name, value) VALUES ('{dead}', convert_to('7', 'UTF8'))"
    ));
    let setting = |name: &str| {
        let mut value = None;
        store
            .read(&mut |tx| {
                value = tx.setting(name)?;
                Ok(())
            })
            .unwrap();
        value
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while setting(&dead).is_some() {
        assert!(std::time::Instant::now() < deadline, "the dead node's row was never pruned");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(setting(&own).is_some(), "the node's own row was pruned");
}

/// What the audit appender's members do: read the chain head, append after it, move it.
fn append_after_head(store: &PostgresStore, name: &'static str) -> crate::StoreResult<()> {
    store.write(&mut |tx| {
        let head = tx.record("audit.head", "chain")?.unwrap_or_else(|| b"0".to_vec());
        let next = String::from_utf8(head).unwrap().parse::<u64>().unwrap() + 1;
        tx.put_record("audit.event", &format!("{next:08}-{name}"), name.as_bytes())?;
        tx.put_record("audit.head", "chain", next.to_string().as_bytes())
    })
}

/// The head as stored, as a number.
fn stored_head(store: &PostgresStore) -> u64 {
    let mut value = None;
    store
        .read(&mut |tx| {
            value = tx.record("audit.head", "chain")?;
            Ok(())
        })
        .unwrap();
    String::from_utf8(value.expect("a head")).unwrap().parse().unwrap()
}

/// Fourteenth session: a group whose members read the chain head this node committed last
/// (every appender batch after the first) takes it from the node's memory with a guard
/// deferred with the events, instead of awaiting its read: the whole group is one flight,
/// `COMMIT` included. Before: the head's read, then the flight with `COMMIT` (2).
#[test]
fn a_group_reading_the_head_this_node_committed_last_is_one_flight() {
    let database = TestPostgres::shared().create_database();
    let store = Arc::new(PostgresStore::open(&database.url).unwrap());
    let names: [&'static str; 3] = ["a", "b", "c"];
    // The first group reads the head from the database (nothing is known of it yet).
    assert_eq!(one_group_of(&store, &names, append_after_head), 2);
    let alone = super::txn::commits_alone_on_this_thread();
    assert_eq!(one_group_of(&store, &names, append_after_head), 1, "guard, events and COMMIT");
    assert_eq!(super::txn::commits_alone_on_this_thread() - alone, 0);
    assert_eq!(stored_head(&store), 6);
}

/// ... and a head that moved behind the node's back (another process of the same name, a
/// restore) fails the guard: the attempt is rolled back and run again reading the head, so
/// every event follows the head as stored, with no sequence number used twice.
#[test]
fn a_head_moved_by_another_writer_fails_the_guard_and_is_read_again() {
    let database = TestPostgres::shared().create_database();
    let store = Arc::new(PostgresStore::open(&database.url).unwrap());
    let names: [&'static str; 3] = ["a", "b", "c"];
    one_group_of(&store, &names, append_after_head);
    assert_eq!(stored_head(&store), 3);
    database.execute(
        "UPDATE records SET value = convert_to('10', 'UTF8') WHERE kind = 'audit.head' AND key = 'chain'",
    );
    one_group_of(&store, &names, append_after_head);
    assert_eq!(stored_head(&store), 13);
    let mut events = Vec::new();
    store
        .read(&mut |tx| {
            events = tx.records("audit.event", "", None, 100)?;
            Ok(())
        })
        .unwrap();
    let numbers: Vec<&str> = events.iter().map(|(key, _)| &key[..8]).collect();
    assert_eq!(numbers, ["00000001", "00000002", "00000003", "00000011", "00000012", "00000013"]);
    // The next group starts from what the careful attempt read and committed: one flight.
    assert_eq!(one_group_of(&store, &names, append_after_head), 1);
}

/// ... and a member that failed on the head it was given (rolled back to its savepoint,
/// its guard's error undone with it) still makes the attempt run again, before anything
/// is committed: the other members' increments count once, not twice, and the failing
/// member gets the answer the stored head gives.
#[test]
fn a_member_that_failed_on_a_stale_head_is_rerun_and_the_others_commit_once() {
    fn check_or_count(store: &PostgresStore, name: &'static str) -> crate::StoreResult<()> {
        store.write(&mut |tx| {
            if name == "check" {
                let head = tx.record("audit.head", "chain")?.unwrap();
                if head != b"10" {
                    return Err(crate::StoreError::Conflict("the head is not 10".to_owned()));
                }
                return tx.put_record("test", "checked", &head);
            }
            let n = tx.record("test", "n")?.map_or(0, |n| n[0]);
            tx.put_record("test", "n", &[n + 1])
        })
    }
    let database = TestPostgres::shared().create_database();
    let store = Arc::new(PostgresStore::open(&database.url).unwrap());
    one_group_of(&store, &["a", "b"], append_after_head);
    one_group_of(&store, &["count1", "count2"], check_or_count);
    database.execute(
        "UPDATE records SET value = convert_to('10', 'UTF8') WHERE kind = 'audit.head' AND key = 'chain'",
    );
    // Every record read is known: the whole group, the failing member included, is one
    // flight, which must not carry COMMIT.
    let (_, results) = one_group_answering(&store, &["check", "count1", "count2"], check_or_count);
    for result in results {
        result.unwrap();
    }
    assert_eq!(test_record(&store, "n").as_deref(), Some(&[4u8][..]));
    assert_eq!(test_record(&store, "checked").as_deref(), Some(&b"10"[..]));
}

/// The writer with the turn (the group's leader) runs the other callers' write closures
/// on its own thread. Called inside its own call's read scope (`Store::read_scope`), a
/// member's `Store::read` went through that scope: another call's transaction and
/// snapshot (review 18, left). The leader sets its scope aside while it runs the group,
/// and has it back after: here the member reads what was committed, the scope still its
/// snapshot.
#[test]
fn a_leader_in_a_read_scope_runs_other_callers_writes_outside_it() {
    let database = TestPostgres::shared().create_database();
    let store = Arc::new(PostgresStore::open(&database.url).unwrap());
    store.write(&mut |tx| tx.put_record("test", "r", b"before")).unwrap();
    let mut member_read = None;
    store.read_scope(&mut || {
        // The scope's first read takes its snapshot; a write committed after is not in it.
        assert_eq!(test_record(&store, "r").as_deref(), Some(&b"before"[..]));
        let elsewhere = Arc::clone(&store);
        std::thread::spawn(move || {
            elsewhere.write(&mut |tx| tx.put_record("test", "r", b"after")).unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(test_record(&store, "r").as_deref(), Some(&b"before"[..]));
        // Another caller's write, run here by this thread as the group's leader.
        let turn = store.writers.lock().unwrap_or_else(PoisonError::into_inner);
        let caller = Arc::clone(&store);
        let member = std::thread::spawn(move || {
            let mut seen = None;
            caller
                .write(&mut |tx| {
                    seen = test_record(&caller, "r");
                    tx.put_record("test", "m", b"written")
                })
                .map(|()| seen)
        });
        let jobs = loop {
            let mut queue = store.queue.lock().unwrap_or_else(PoisonError::into_inner);
            if queue.len() == 1 {
                break std::mem::take(&mut *queue);
            }
            drop(queue);
            std::thread::sleep(std::time::Duration::from_millis(1));
        };
        store.run_batch(jobs);
        drop(turn);
        member_read = Some(member.join().unwrap().unwrap());
        assert_eq!(test_record(&store, "r").as_deref(), Some(&b"before"[..]), "scope restored");
    });
    assert_eq!(member_read, Some(Some(b"after".to_vec())), "read outside the leader's scope");
    assert_eq!(test_record(&store, "m").as_deref(), Some(&b"written"[..]));
}

/// The leader has its scope back however the group ends, a panic included (a member's
/// own panic is caught with the member; this is whatever else may unwind).
#[test]
fn a_read_scope_set_aside_is_had_back_after_a_panic() {
    use super::read::{SHARED_READ, SharedReadSetAside};
    let scope = Some((std::ptr::dangling::<PostgresStore>(), std::ptr::dangling::<()>()));
    SHARED_READ.with(|shared| shared.set(scope));
    let unwound = std::panic::catch_unwind(|| {
        let _aside = SharedReadSetAside::new();
        assert_eq!(SHARED_READ.with(std::cell::Cell::get), None);
        panic!("unwinding through the group");
    });
    assert!(unwound.is_err());
    assert_eq!(SHARED_READ.with(std::cell::Cell::get), scope);
    SHARED_READ.with(|shared| shared.set(None));
}
