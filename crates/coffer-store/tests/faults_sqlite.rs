//! Faults on the SQLite store (issue 19, item 2): a commit whose WAL sync fails, injected
//! through the fault-injection VFS (`coffer_store::sqlite::faults`), is never acknowledged,
//! and the store then takes no more writes until it is reopened. What is promised is in
//! `docs/design/faults.md`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use coffer_store::sqlite::faults;
use coffer_store::{SqliteStore, Store, StoreResult};

/// The fault switch is one per process: the tests that use it take turns.
static SWITCH: Mutex<()> = Mutex::new(());

const KIND: &str = "fault-test";

fn put(store: &dyn Store, key: &str, value: &[u8]) -> StoreResult<()> {
    store.write(&mut |tx| tx.put_record(KIND, key, value))
}

fn get(store: &dyn Store, key: &str) -> Option<Vec<u8>> {
    let mut found = None;
    store
        .read(&mut |tx| {
            found = tx.record(KIND, key)?;
            Ok(())
        })
        .expect("reads work");
    found
}

fn integrity_ok(path: &Path) {
    let conn = rusqlite::Connection::open(path).expect("open for the check");
    let result: String =
        conn.query_row("PRAGMA integrity_check", [], |row| row.get(0)).expect("integrity_check");
    assert_eq!(result, "ok");
}

#[test]
fn a_commit_whose_wal_sync_fails_is_not_acknowledged_and_no_write_follows_until_reopened() {
    let _turn = SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("coffer.db");
    let store = SqliteStore::open_with_faults(&path).expect("open the store");
    for i in 0..10 {
        put(&store, &format!("acked-{i}"), format!("value-{i}").as_bytes())
            .expect("a healthy write");
    }

    assert_eq!(store.refusing_writes(), None);
    let failed_before = faults::failed_wal_syncs();
    faults::fail_wal_syncs(1);
    let failed = put(&store, "unacknowledged", b"never promised");
    faults::fail_wal_syncs(0);
    assert_eq!(
        faults::failed_wal_syncs(),
        failed_before + 1,
        "the commit's sync was the one failed"
    );
    assert!(failed.is_err(), "a commit whose sync failed was acknowledged");

    // The disk answers again, but this process cannot tell what of it holds: no write.
    let refused = put(&store, "after", b"x").expect_err("a write after a failed sync was taken");
    assert!(refused.to_string().contains("stopped accepting writes"), "{refused}");
    // `/ready` says so.
    assert!(store.refusing_writes().is_some_and(|why| why.contains("stopped accepting writes")));
    // Reads go on, and show what was acknowledged.
    for i in 0..10 {
        assert_eq!(get(&store, &format!("acked-{i}")), Some(format!("value-{i}").into_bytes()));
    }
    assert_eq!(get(&store, "unacknowledged"), None, "the rolled back commit is not read");
    assert_eq!(get(&store, "after"), None);
    drop(store);

    // Reopening reads the WAL back from the file: every acknowledged write is there, the
    // refused one is not, and writes are taken again.
    integrity_ok(&path);
    let store = SqliteStore::open(&path).expect("reopen the store");
    for i in 0..10 {
        assert_eq!(get(&store, &format!("acked-{i}")), Some(format!("value-{i}").into_bytes()));
    }
    assert_eq!(get(&store, "after"), None);
    // The unacknowledged write may or may not have reached the disk (that is what a failed
    // sync means); if it did, it is there whole.
    let maybe = get(&store, "unacknowledged");
    assert!(maybe.is_none() || maybe.as_deref() == Some(&b"never promised"[..]));
    put(&store, "after", b"y").expect("a reopened store takes writes");
    assert_eq!(get(&store, "after"), Some(b"y".to_vec()));
    drop(store);
    integrity_ok(&path);
}

#[test]
fn under_group_commit_no_member_of_a_batch_whose_sync_failed_is_acknowledged() {
    let _turn = SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("coffer.db");
    let store = Arc::new(SqliteStore::open_with_faults(&path).expect("open the store"));
    // Writers share commits; the sync of one of them fails while they run.
    let acked: Arc<Mutex<BTreeMap<String, Vec<u8>>>> = Arc::default();
    let failures = Arc::new(Mutex::new(0usize));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (store, acked, failures) = (store.clone(), acked.clone(), failures.clone());
            std::thread::spawn(move || {
                for i in 0..200 {
                    let (key, value) = (format!("w{t}-{i}"), format!("value {t} {i}").into_bytes());
                    match put(store.as_ref(), &key, &value) {
                        Ok(()) => {
                            acked.lock().unwrap().insert(key, value);
                        }
                        Err(_) => *failures.lock().unwrap() += 1,
                    }
                    if i == 50 && t == 0 {
                        faults::fail_wal_syncs(1);
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("writer thread");
    }
    faults::fail_wal_syncs(0);
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    let failures = *failures.lock().unwrap();
    assert!(failures > 0, "no write failed");
    assert_eq!(acked.len() + failures, 8 * 200);
    drop(Arc::into_inner(store).expect("the last reference"));

    integrity_ok(&path);
    let store = SqliteStore::open(&path).expect("reopen the store");
    for (key, value) in &acked {
        assert_eq!(get(&store, key).as_ref(), Some(value), "acknowledged write {key} lost");
    }
}

/// Submits a write of `key` (as an async caller does) and waits for its callback.
fn submitted_put(store: &dyn Store, key: &str, value: &[u8]) -> StoreResult<()> {
    let (key, value) = (key.to_owned(), value.to_vec());
    let (tell, told) = std::sync::mpsc::channel();
    store.submit_write(
        coffer_store::Handoff::none(),
        Box::new(move |tx| tx.put_record(KIND, &key, &value)),
        Box::new(move |ended| {
            let _ = tell.send(ended);
        }),
    );
    match told.recv().expect("the callback is called") {
        coffer_store::WriteEnded::Done(result) => result,
        coffer_store::WriteEnded::Panicked(_) => panic!("the write panicked"),
    }
}

/// A submitted write (an async caller's) whose commit's sync fails is answered with the
/// failure, and once the store stopped taking writes, a submitted write is refused.
#[test]
fn a_submitted_write_whose_sync_fails_is_not_acknowledged_nor_any_after_it() {
    let _turn = SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("coffer.db");
    let store = SqliteStore::open_with_faults(&path).expect("open the store");
    submitted_put(&store, "acked", b"v").expect("a healthy submitted write");
    faults::fail_wal_syncs(1);
    let failed = submitted_put(&store, "unacknowledged", b"never promised");
    faults::fail_wal_syncs(0);
    assert!(failed.is_err(), "a commit whose sync failed was acknowledged");
    let refused = submitted_put(&store, "after", b"x").expect_err("a write after a failed sync");
    assert!(refused.to_string().contains("stopped accepting writes"), "{refused}");
    assert_eq!(get(&store, "acked"), Some(b"v".to_vec()));
    assert_eq!(get(&store, "after"), None);
}
