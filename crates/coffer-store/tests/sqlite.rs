//! Runs the store conformance suite against SQLite, plus what only a durable store must do.

use std::path::Path;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use coffer_core::model::{SecretMeta, VersionMeta};
use coffer_store::fixtures::{self, scope};
use coffer_store::sqlite::SCHEMA_VERSION;
use coffer_store::{
    Handoff, ReadTxn, SealedValue, SqliteStore, Store, StoreError, StoreResult, WriteEnded,
    WriteTxn,
};
use tempfile::TempDir;

/// A store on a file in a directory that is removed with it.
struct FileFixture {
    store: SqliteStore,
    _dir: TempDir,
}

impl AsRef<dyn Store> for FileFixture {
    fn as_ref(&self) -> &(dyn Store + 'static) {
        &self.store
    }
}

fn file_fixture() -> FileFixture {
    let dir = tempfile::tempdir().expect("temporary directory");
    // The suite's records are of these kinds, so the read cache serves them too.
    let store = SqliteStore::open(&dir.path().join("coffer.db"))
        .expect("open the store")
        .cache_records(&["kms-key", "kms-alias"]);
    FileFixture { store, _dir: dir }
}

/// The suite on a database file, which exercises the pool of read connections.
mod file {
    use super::file_fixture;

    coffer_store::conformance_tests!(file_fixture());
}

/// The suite on a private in-memory database, which reads through the writer.
mod in_memory {
    use coffer_store::{SqliteStore, Store};

    coffer_store::conformance_tests!(Box::new(
        SqliteStore::open_in_memory().expect("open the store")
    ) as Box<dyn Store>);
}

/// The fixtures' secret with a description and an empty tag list.
fn secret(name: &str) -> SecretMeta {
    SecretMeta {
        description: Some(format!("the {name} secret")),
        tags: Some(vec![]),
        ..fixtures::secret(name)
    }
}

fn version(id: &str) -> VersionMeta {
    fixtures::version(id, &["AWSCURRENT"])
}

fn read<T>(store: &dyn Store, mut f: impl FnMut(&dyn ReadTxn) -> StoreResult<T>) -> T {
    let mut out = None;
    store
        .read(&mut |txn| {
            out = Some(f(txn)?);
            Ok(())
        })
        .expect("read");
    out.unwrap()
}

fn write(store: &dyn Store, mut f: impl FnMut(&mut dyn WriteTxn) -> StoreResult<()> + Send) {
    store.write(&mut |txn| f(txn)).expect("write");
}

fn count_secrets(txn: &dyn ReadTxn) -> StoreResult<usize> {
    let mut count = 0;
    let query = coffer_store::ListQuery {
        sort_by: coffer_store::SortBy::CreatedDate,
        descending: false,
        after: None,
        expected: None,
    };
    txn.visit_secrets(&scope(), &query, &mut |_| {
        count += 1;
        true
    })?;
    Ok(count)
}

fn user_version(path: &Path) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("PRAGMA user_version", [], |row| row.get(0)).unwrap()
}

#[test]
fn data_survives_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("coffer.db");
    let stored = {
        let store = SqliteStore::open(&path).unwrap();
        let mut stored = secret("kept");
        write(&store, |txn| {
            stored.seq = txn.insert_secret(&stored)?;
            txn.insert_version(&stored.arn, &version("v1"), &SealedValue(b"sealed".to_vec()))?;
            txn.put_wrapped_key("account/111111111111", b"wrapped")?;
            txn.put_setting("check", b"value")
        });
        // A failed write just before closing must not surface after reopening.
        let result = store.write(&mut |txn| {
            txn.insert_secret(&secret("abandoned"))?;
            Err(StoreError::Aborted)
        });
        assert!(matches!(result, Err(StoreError::Aborted)));
        stored
    };
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(read(&store, |txn| txn.secret_by_arn(&stored.arn)), Some(stored.clone()));
    assert_eq!(read(&store, |txn| txn.versions(&stored.arn)), [version("v1")]);
    assert_eq!(
        read(&store, |txn| txn.version_value(&stored.arn, "v1")),
        Some(SealedValue(b"sealed".to_vec()))
    );
    assert_eq!(
        read(&store, |txn| txn.wrapped_key("account/111111111111")),
        Some(b"wrapped".to_vec())
    );
    assert_eq!(read(&store, |txn| txn.setting("check")), Some(b"value".to_vec()));
    assert_eq!(read(&store, |txn| txn.secret_by_name(&scope(), "abandoned")), None);
    // Sequence numbers keep increasing across restarts.
    let mut next = secret("next");
    write(&store, |txn| {
        next.seq = txn.insert_secret(&next)?;
        Ok(())
    });
    assert!(next.seq > stored.seq);
}

#[test]
fn reopened_database_keeps_its_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("coffer.db");
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    write(&store, |txn| txn.insert_secret(&secret("s")).map(drop));
    drop(store);
    assert_eq!(user_version(&path), SCHEMA_VERSION);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert!(read(&store, |txn| txn.secret_by_name(&scope(), "s")).is_some());
}

#[test]
fn database_from_a_newer_build_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("coffer.db");
    drop(SqliteStore::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
    drop(conn);
    match SqliteStore::open(&path) {
        Err(StoreError::Backend(message)) => assert!(message.contains("newer"), "{message}"),
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    }
    // Refusing left the database as it was.
    assert_eq!(user_version(&path), SCHEMA_VERSION + 1);
}

#[test]
fn database_file_is_left_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("coffer.db");
    let store = SqliteStore::open(&path).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0)).unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(store.describe(), format!("sqlite:{}", path.display()));
}

#[test]
fn opening_in_a_missing_directory_fails_as_a_backend_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-directory").join("coffer.db");
    assert!(matches!(SqliteStore::open(&path), Err(StoreError::Backend(_))));
}

#[test]
fn reads_do_not_wait_for_a_running_write() {
    let fixture = Arc::new(file_fixture());
    write(&fixture.store, |txn| txn.insert_secret(&secret("before")).map(drop));
    let (done, finished) = mpsc::channel();
    // The closure may run on the store's writer thread, so what it uses must be shareable.
    let finished = std::sync::Mutex::new(finished);
    fixture
        .store
        .write(&mut |txn| {
            txn.insert_secret(&secret("during"))?;
            let reader = Arc::clone(&fixture);
            let done = done.clone();
            std::thread::spawn(move || {
                let seen = read(&reader.store, |txn| {
                    Ok((
                        txn.secret_by_name(&scope(), "before")?,
                        txn.secret_by_name(&scope(), "during")?,
                    ))
                });
                done.send((seen.0.is_some(), seen.1.is_some())).unwrap();
            });
            // The writer holds its transaction open until the reader is done.
            let seen = finished.lock().unwrap().recv_timeout(Duration::from_secs(20));
            assert_eq!(
                seen,
                Ok((true, false)),
                "the read must finish, without the uncommitted secret"
            );
            Ok(())
        })
        .unwrap();
    assert!(read(&fixture.store, |txn| txn.secret_by_name(&scope(), "during")).is_some());
}

#[test]
fn a_read_keeps_its_snapshot_while_writes_commit() {
    let fixture = Arc::new(file_fixture());
    write(&fixture.store, |txn| txn.insert_secret(&secret("first")).map(drop));
    let (done, finished) = mpsc::channel();
    let mut counts = Vec::new();
    fixture
        .store
        .read(&mut |txn| {
            counts.push(count_secrets(txn)?);
            let writer = Arc::clone(&fixture);
            let done = done.clone();
            std::thread::spawn(move || {
                write(&writer.store, |txn| txn.insert_secret(&secret("second")).map(drop));
                done.send(()).unwrap();
            });
            finished.recv_timeout(Duration::from_secs(20)).expect("the write must not wait");
            counts.push(count_secrets(txn)?);
            counts.push(usize::from(txn.secret_by_name(&scope(), "second")?.is_some()));
            Ok(())
        })
        .unwrap();
    assert_eq!(counts, [1, 1, 0]);
    assert_eq!(read(&fixture.store, count_secrets), 2);
}

#[test]
fn two_stores_on_one_file_never_lose_an_insert() {
    // Two stores on one file behave like two processes: their writers contend
    // for SQLite's lock and must wait for each other instead of failing.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("coffer.db");
    let stores = [SqliteStore::open(&path).unwrap(), SqliteStore::open(&path).unwrap()];
    let target = secret("contended");
    write(&stores[0], |txn| txn.insert_secret(&target).map(drop));
    std::thread::scope(|threads| {
        for t in 0..8 {
            let store = &stores[t % 2];
            let arn = target.arn.clone();
            threads.spawn(move || {
                for i in 0..50 {
                    let meta = version(&format!("t{t}-v{i}"));
                    write(store, |txn| {
                        txn.insert_version(&arn, &meta, &SealedValue(vec![t as u8, i as u8]))
                    });
                }
            });
        }
    });
    for store in &stores {
        let all = read(store, |txn| txn.versions(&target.arn));
        assert_eq!(all.len(), 400);
        for t in 0..8 {
            let prefix = format!("t{t}-");
            let mine = all.iter().filter(|v| v.version_id.starts_with(&prefix));
            let ids: Vec<&str> = mine.map(|v| v.version_id.as_str()).collect();
            let expected: Vec<String> = (0..50).map(|i| format!("t{t}-v{i}")).collect();
            assert_eq!(ids, expected);
        }
    }
}

/// Group commit: many concurrent writers, some failing, one panicking. Every
/// successful write is kept, every failed one leaves nothing, and the writers
/// shared commits.
#[test]
fn concurrent_writers_share_commits_and_failures_stay_their_own() {
    let fixture = Arc::new(file_fixture());
    let threads: Vec<_> = (0..32)
        .map(|t| {
            let fixture = fixture.clone();
            std::thread::spawn(move || {
                for i in 0..20 {
                    let name = format!("s-{t}-{i}");
                    let fails = (t + i) % 5 == 0;
                    let result = fixture.store.write(&mut |txn| {
                        txn.insert_secret(&secret(&name))?;
                        if fails { Err(StoreError::Aborted) } else { Ok(()) }
                    });
                    assert_eq!(result.is_ok(), !fails, "{name}: {result:?}");
                }
            })
        })
        .collect();
    let panicking = {
        let fixture = fixture.clone();
        std::thread::spawn(move || {
            let _ = fixture.store.write(&mut |txn| {
                txn.insert_secret(&secret("panicked"))?;
                panic!("a closure panics in the middle of a batch");
            });
        })
    };
    for thread in threads {
        thread.join().unwrap();
    }
    assert!(panicking.join().is_err(), "the panic reaches its own caller");
    let store: &dyn Store = &fixture.store;
    for t in 0..32 {
        for i in 0..20 {
            let name = format!("s-{t}-{i}");
            let found = read(store, |txn| txn.secret_by_name(&scope(), &name));
            assert_eq!(found.is_some(), (t + i) % 5 != 0, "{name}");
        }
    }
    assert!(read(store, |txn| txn.secret_by_name(&scope(), "panicked")).is_none());
    assert_eq!(read(store, count_secrets), 32 * 20 * 4 / 5);
    let commits = fixture.store.commits();
    assert!(commits < 32 * 20 * 4 / 5, "{commits} commits for {} writes", 32 * 20 * 4 / 5);
    // The store goes on working after all that.
    write(store, |txn| txn.insert_secret(&secret("after")).map(|_| ()));
    assert!(read(store, |txn| txn.secret_by_name(&scope(), "after")).is_some());
}

/// Concurrent writes that read and increment one counter, where some fail before changing
/// anything and some after (their batch is then rolled back and run again, each member in
/// a savepoint): no increment is lost or counted twice, only the successful writes' rows
/// are kept, and no write's closure runs more than twice. When no write fails after
/// changing rows, every closure runs exactly once.
#[test]
fn writes_failing_before_or_after_their_changes_leave_only_the_successful_ones() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    for fail_after_changes in [false, true] {
        let fixture = Arc::new(file_fixture());
        write(&fixture.store, |txn| txn.put_setting("counter", &0u64.to_le_bytes()));
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let fixture = fixture.clone();
                std::thread::spawn(move || {
                    let mut most_runs = 0;
                    for i in 0..25 {
                        let name = format!("s-{t}-{i}");
                        let fails = (t + i) % 4 == 0;
                        let runs = AtomicUsize::new(0);
                        let result = fixture.store.write(&mut |txn| {
                            runs.fetch_add(1, Ordering::SeqCst);
                            if fails && !fail_after_changes {
                                return Err(StoreError::Aborted);
                            }
                            let bytes = txn.setting("counter")?.expect("the counter");
                            let n = u64::from_le_bytes(bytes.try_into().expect("8 bytes"));
                            txn.put_setting("counter", &(n + 1).to_le_bytes())?;
                            txn.insert_secret(&secret(&name))?;
                            if fails { Err(StoreError::Aborted) } else { Ok(()) }
                        });
                        assert_eq!(result.is_ok(), !fails, "{name}: {result:?}");
                        most_runs = most_runs.max(runs.load(Ordering::SeqCst));
                    }
                    most_runs
                })
            })
            .collect();
        let most_runs = threads.into_iter().map(|t| t.join().unwrap()).max().unwrap();
        let store: &dyn Store = &fixture.store;
        let kept = 16 * 25 - 16 * 25 / 4;
        let counter = read(store, |txn| txn.setting("counter")).unwrap();
        assert_eq!(u64::from_le_bytes(counter.try_into().unwrap()), kept as u64);
        assert_eq!(read(store, count_secrets), kept);
        for t in 0..16 {
            for i in 0..25 {
                let name = format!("s-{t}-{i}");
                let found = read(store, |txn| txn.secret_by_name(&scope(), &name));
                assert_eq!(found.is_some(), (t + i) % 4 != 0, "{name}");
            }
        }
        if fail_after_changes {
            assert!(most_runs <= 2, "a closure ran {most_runs} times");
        } else {
            assert_eq!(most_runs, 1, "a closure ran again although nothing had to be undone");
        }
    }
}

/// Submits `f` (as an async caller does, `Store::submit_write`) with a callback that
/// sends `(i, whether f was dropped before the answer, the answer)` on `tell`.
fn submit_noting(
    store: &dyn Store,
    i: usize,
    tell: mpsc::Sender<(usize, bool, WriteEnded)>,
    mut f: impl FnMut(&mut dyn WriteTxn) -> StoreResult<()> + Send + 'static,
) {
    let held = Arc::new(());
    let gone = Arc::downgrade(&held);
    store.submit_write(
        Handoff::none(),
        Box::new(move |txn| {
            let _ = Arc::strong_count(&held);
            f(txn)
        }),
        Box::new(move |ended| {
            let _ = tell.send((i, gone.upgrade().is_none(), ended));
        }),
    );
}

/// Submitted writes share batches with lent ones (`Store::write`): each is answered once,
/// through its callback, with its own outcome, its closure dropped first. One that fails
/// after changing rows has its batch run again (no closure runs more than twice, no
/// increment is lost or counted twice); a panic is handed to its callback, and the writer
/// goes on.
#[test]
fn submitted_writes_share_batches_and_each_is_answered_once_with_its_own_outcome() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let fixture = Arc::new(file_fixture());
    write(&fixture.store, |txn| txn.put_setting("counter", &0u64.to_le_bytes()));
    let increment = |txn: &mut dyn WriteTxn| -> StoreResult<()> {
        let bytes = txn.setting("counter")?.expect("the counter");
        let n = u64::from_le_bytes(bytes.try_into().expect("8 bytes"));
        txn.put_setting("counter", &(n + 1).to_le_bytes())
    };
    let lent: Vec<_> = (0..4)
        .map(|t| {
            let fixture = fixture.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    let name = format!("lent-{t}-{i}");
                    fixture
                        .store
                        .write(&mut |txn| {
                            increment(txn)?;
                            txn.insert_secret(&secret(&name)).map(|_| ())
                        })
                        .expect("a lent write");
                }
            })
        })
        .collect();
    const SUBMITTED: usize = 300;
    let fails = |i: usize| i % 7 == 3;
    let panics = |i: usize| i == 150;
    let runs: Arc<Vec<AtomicUsize>> =
        Arc::new((0..SUBMITTED).map(|_| AtomicUsize::new(0)).collect());
    let (tell, told) = mpsc::channel();
    for i in 0..SUBMITTED {
        let runs = runs.clone();
        submit_noting(&fixture.store, i, tell.clone(), move |txn| {
            runs[i].fetch_add(1, Ordering::SeqCst);
            increment(txn)?;
            txn.insert_secret(&secret(&format!("submitted-{i}")))?;
            if panics(i) {
                panic!("a submitted closure panics in the middle of a batch");
            }
            if fails(i) { Err(StoreError::Aborted) } else { Ok(()) }
        });
    }
    drop(tell);
    let mut answered = vec![0; SUBMITTED];
    for (i, dropped_first, ended) in told.iter() {
        answered[i] += 1;
        assert!(dropped_first, "{i}: its closure outlived its answer");
        match ended {
            WriteEnded::Done(Ok(())) => assert!(!fails(i) && !panics(i), "{i} succeeded"),
            WriteEnded::Done(Err(StoreError::Aborted)) => assert!(fails(i), "{i} failed"),
            WriteEnded::Done(Err(e)) => panic!("{i}: {e}"),
            WriteEnded::Panicked(_) => assert!(panics(i), "{i} panicked"),
        }
    }
    assert!(answered.iter().all(|&n| n == 1), "answers per write: {answered:?}");
    for thread in lent {
        thread.join().unwrap();
    }
    let kept = (0..SUBMITTED).filter(|&i| !fails(i) && !panics(i)).count();
    let store: &dyn Store = &fixture.store;
    let counter = read(store, |txn| txn.setting("counter")).unwrap();
    assert_eq!(u64::from_le_bytes(counter.try_into().unwrap()), (kept + 100) as u64);
    assert_eq!(read(store, count_secrets), kept + 100);
    for i in 0..SUBMITTED {
        let found = read(store, |txn| txn.secret_by_name(&scope(), &format!("submitted-{i}")));
        assert_eq!(found.is_some(), !fails(i) && !panics(i), "submitted-{i}");
    }
    let most_runs = runs.iter().map(|r| r.load(Ordering::SeqCst)).max().unwrap();
    assert!(most_runs <= 2, "a closure ran {most_runs} times");
    write(store, |txn| txn.insert_secret(&secret("after")).map(|_| ()));
    assert!(read(store, |txn| txn.secret_by_name(&scope(), "after")).is_some());
}

/// `submit_write` hands the write over and returns: the writer runs it while its caller
/// goes on (here, to let the write proceed), and the callback tells when it committed.
#[test]
fn a_submitted_write_runs_on_the_writer_while_its_caller_goes_on() {
    let fixture = file_fixture();
    let (go, gone) = mpsc::channel::<()>();
    let (tell, told) = mpsc::channel();
    submit_noting(&fixture.store, 0, tell, move |txn| {
        // A synchronous `submit_write` would wait here for the caller, which waits for it.
        gone.recv_timeout(Duration::from_secs(30)).map_err(|_| StoreError::Aborted)?;
        txn.insert_secret(&secret("released")).map(|_| ())
    });
    go.send(()).expect("the write waits for this");
    let (_, dropped_first, ended) = told.recv().expect("answered");
    assert!(dropped_first);
    assert!(matches!(ended, WriteEnded::Done(Ok(()))));
    let store: &dyn Store = &fixture.store;
    assert!(read(store, |txn| txn.secret_by_name(&scope(), "released")).is_some());
}

/// Every acknowledged write survives reopening the database, batched or not.
#[test]
fn batched_writes_are_durable_across_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("coffer.db");
    {
        let store = Arc::new(SqliteStore::open(&path).unwrap());
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for i in 0..25 {
                        let name = format!("d-{t}-{i}");
                        store
                            .write(&mut |txn| txn.insert_secret(&secret(&name)).map(|_| ()))
                            .unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(read(&store, count_secrets), 16 * 25);
}

/// A database of schema version 2 (records in a WITHOUT ROWID table) is brought up
/// to date on opening, its records kept.
#[test]
fn records_of_a_version_2_database_survive_the_migration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("coffer.db");
    drop(SqliteStore::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    versions_as_in_version_3(&conn);
    conn.execute_batch(
        "DROP TABLE records;
         CREATE TABLE records (kind TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
             PRIMARY KEY (kind, key)) WITHOUT ROWID;
         INSERT INTO records VALUES ('audit', 'e1', x'0102'), ('kms-key', 'k', x'03');
         PRAGMA user_version = 2;",
    )
    .unwrap();
    drop(conn);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(read(&store, |txn| txn.record("audit", "e1")), Some(vec![1, 2]));
    assert_eq!(read(&store, |txn| txn.record("kms-key", "k")), Some(vec![3]));
    let conn = rusqlite::Connection::open(&path).unwrap();
    let sql: String = conn
        .query_row("SELECT sql FROM sqlite_schema WHERE name = 'records'", [], |row| row.get(0))
        .unwrap();
    assert!(!sql.contains("WITHOUT ROWID"), "{sql}");
}

/// A database of schema version 4 (the records' key index ascending) gets the
/// descending index on opening, its records kept and still listed in ascending key order.
#[test]
fn records_of_a_version_4_database_survive_the_descending_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("coffer.db");
    drop(SqliteStore::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "DROP TABLE records;
         CREATE TABLE records (kind TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
             PRIMARY KEY (kind, key));
         INSERT INTO records VALUES ('audit.event', 'c/3', x'03'), ('audit.event', 'c/1', x'01'),
             ('audit.event', 'c/2', x'02'), ('audit.head', 'c', x'09');
         ALTER TABLE version_meta DROP COLUMN labelled;
         PRAGMA user_version = 4;",
    )
    .unwrap();
    drop(conn);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    let listed = read(&store, |txn| txn.records("audit.event", "c/", None, 10));
    let keys: Vec<&str> = listed.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["c/1", "c/2", "c/3"]);
    let after = read(&store, |txn| txn.records("audit.event", "c/", Some("c/1"), 1));
    assert_eq!(after, vec![("c/2".to_string(), vec![2])]);
    assert_eq!(read(&store, |txn| txn.record("audit.head", "c")), Some(vec![9]));
    // Upserts still find the key through the descending index.
    write(&store, |txn| txn.put_record("audit.head", "c", &[8]));
    assert_eq!(read(&store, |txn| txn.record("audit.head", "c")), Some(vec![8]));
    let conn = rusqlite::Connection::open(&path).unwrap();
    let sql: String = conn
        .query_row("SELECT sql FROM sqlite_schema WHERE name = 'records'", [], |row| row.get(0))
        .unwrap();
    assert!(sql.contains("key DESC"), "{sql}");
}

/// Puts back the `versions` table of schema versions 1 to 3 in place of the current ones.
fn versions_as_in_version_3(conn: &rusqlite::Connection) {
    conn.execute_batch(
        "DROP TABLE version_meta;
         DROP TABLE version_values;
         CREATE TABLE versions (
             arn TEXT NOT NULL REFERENCES secrets (arn) ON DELETE CASCADE,
             version_id TEXT NOT NULL,
             ord INTEGER NOT NULL,
             created_ms INTEGER NOT NULL,
             meta TEXT NOT NULL,
             value BLOB NOT NULL,
             PRIMARY KEY (arn, version_id));
         CREATE INDEX versions_by_ord ON versions (arn, ord);",
    )
    .unwrap();
}

/// A database of the current schema in `dir` holding one secret, `old`, without versions,
/// for a test to take back to an older schema.
fn database_with_secret_old(dir: &TempDir) -> (std::path::PathBuf, SecretMeta) {
    let path = dir.path().join("coffer.db");
    let meta = secret("old");
    let store = SqliteStore::open(&path).unwrap();
    write(&store, |txn| txn.insert_secret(&meta).map(drop));
    (path, meta)
}

/// A database of schema version 3 (versions and their values in one table) is brought up
/// to date on opening: every version keeps its metadata, value and place in the order,
/// and the migrated versions can be changed and removed like new ones.
#[test]
fn versions_of_a_version_3_database_survive_the_migration() {
    let dir = tempfile::tempdir().unwrap();
    let (path, meta) = database_with_secret_old(&dir);
    let conn = rusqlite::Connection::open(&path).unwrap();
    versions_as_in_version_3(&conn);
    // Version ids out of creation order, so the order must come from `ord`.
    for (ord, id) in ["v-b", "v-c", "v-a"].iter().enumerate() {
        let json = serde_json::to_string(&version(id)).unwrap();
        conn.execute(
            "INSERT INTO versions (arn, version_id, ord, created_ms, meta, value) \
             VALUES (?1, ?2, ?3, 5, ?4, ?5)",
            rusqlite::params![meta.arn, id, ord as i64 + 1, json, vec![ord as u8; 3]],
        )
        .unwrap();
    }
    conn.execute_batch("PRAGMA user_version = 3;").unwrap();
    drop(conn);

    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    let ids = |store: &SqliteStore| -> Vec<String> {
        read(store, |txn| txn.versions(&meta.arn)).into_iter().map(|v| v.version_id).collect()
    };
    assert_eq!(ids(&store), ["v-b", "v-c", "v-a"]);
    for (n, id) in ["v-b", "v-c", "v-a"].iter().enumerate() {
        let value = read(&store, |txn| txn.version_value(&meta.arn, id));
        assert_eq!(value, Some(SealedValue(vec![n as u8; 3])), "{id}");
    }
    write(&store, |txn| {
        txn.insert_version(&meta.arn, &version("v-new"), &SealedValue(vec![9]))?;
        txn.delete_version(&meta.arn, "v-c")
    });
    assert_eq!(ids(&store), ["v-b", "v-a", "v-new"]);
    let values = |path: &Path| -> i64 {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.query_row("SELECT count(*) FROM version_values", [], |row| row.get(0)).unwrap()
    };
    // A refused duplicate in a write that goes on leaves no value behind.
    write(&store, |txn| {
        match txn.insert_version(&meta.arn, &version("v-a"), &SealedValue(vec![7])) {
            Err(StoreError::Conflict(_)) => Ok(()),
            other => panic!("expected a conflict, got {other:?}"),
        }
    });
    assert_eq!(values(&path), 3);
    write(&store, |txn| txn.delete_secret(&meta.arn));
    assert_eq!(values(&path), 0, "values left behind by a deleted secret");
}

/// A database of schema version 5 (no `labelled` column) is brought up to date on
/// opening: a version is marked unlabelled only when its metadata lists no stage, and what
/// adding a version reads in a write (from SQL on the writer) is what it was.
#[test]
fn versions_of_a_version_5_database_are_marked_labelled_by_their_stages() {
    let dir = tempfile::tempdir().unwrap();
    let (path, meta) = database_with_secret_old(&dir);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("ALTER TABLE version_meta DROP COLUMN labelled;").unwrap();
    let stages: [(&str, &[&str]); 4] = [
        ("v-old", &[]),
        ("v-prev", &["AWSPREVIOUS"]),
        ("v-gone", &[]),
        ("v-cur", &["AWSCURRENT", "mine"]),
    ];
    for (ord, (id, stages)) in stages.iter().enumerate() {
        let json = serde_json::to_string(&fixtures::version(id, stages)).unwrap();
        conn.execute(
            "INSERT INTO version_values (id, value) VALUES (?1, x'00')",
            rusqlite::params![ord as i64 + 1],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO version_meta (arn, version_id, ord, created_ms, value_id, meta) \
             VALUES (?1, ?2, ?3, 5, ?3, ?4)",
            rusqlite::params![meta.arn, id, ord as i64 + 1, json],
        )
        .unwrap();
    }
    conn.execute_batch("PRAGMA user_version = 5;").unwrap();
    drop(conn);

    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let marks: Vec<(String, bool)> = conn
        .prepare("SELECT version_id, labelled FROM version_meta ORDER BY ord")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let want = [("v-old", false), ("v-prev", true), ("v-gone", false), ("v-cur", true)];
    assert_eq!(marks, want.map(|(id, labelled)| (id.to_string(), labelled)));
    let (tx, rx) = mpsc::channel();
    write(&store, |txn| {
        let (kept, count) = txn.labelled_versions(&meta.arn, "v-gone")?;
        let ids: Vec<String> = kept.into_iter().map(|v| v.version_id).collect();
        tx.send((ids, count)).unwrap();
        Ok(())
    });
    assert_eq!(rx.recv().unwrap(), (vec!["v-prev".into(), "v-gone".into(), "v-cur".into()], 4));
}

/// Reads inside a read scope share one snapshot: a write made meanwhile is not seen
/// until the scope ends. Nested scopes and a panic inside one leave reads working.
#[test]
fn reads_in_a_read_scope_share_one_snapshot() {
    let fixture = file_fixture();
    let store: &dyn Store = &fixture.store;
    write(store, |txn| txn.insert_secret(&secret("before")).map(drop));
    let mut seen = Vec::new();
    store.read_scope(&mut || {
        seen.push(read(store, count_secrets));
        write(store, |txn| txn.insert_secret(&secret("during")).map(drop));
        seen.push(read(store, count_secrets));
        store.read_scope(&mut || seen.push(read(store, count_secrets)));
        seen.push(read(store, |txn| txn.secret_by_name(&scope(), "during")).is_some() as usize);
    });
    seen.push(read(store, count_secrets));
    assert_eq!(seen, [1, 1, 1, 0, 2]);
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        store.read_scope(&mut || {
            read(store, count_secrets);
            panic!("a request panics while its read transaction is shared");
        })
    }));
    assert!(panicked.is_err());
    write(store, |txn| txn.insert_secret(&secret("after")).map(drop));
    assert_eq!(read(store, count_secrets), 3);
}

/// A read scope on one store does not capture the reads of another.
#[test]
fn a_read_scope_belongs_to_its_store() {
    let (one, other) = (file_fixture(), file_fixture());
    let mut counts = Vec::new();
    one.store.read_scope(&mut || {
        counts.push(read(&one.store, count_secrets));
        write(&other.store, |txn| txn.insert_secret(&secret("elsewhere")).map(drop));
        counts.push(read(&other.store, count_secrets));
    });
    assert_eq!(counts, [0, 1]);
}

/// Under steady reads a passive checkpoint never lets the WAL start over, so without
/// truncation it would grow without end (and opening the database would replay it
/// all). After writing far more than the limit, the WAL file is back under it.
#[test]
fn the_wal_is_truncated_once_it_grows_past_its_limit_under_steady_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("coffer.db");
    let wal = dir.path().join("coffer.db-wal");
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            // Short reads back to back, as a server's: a loop that never leaves its
            // read transaction would, on a loaded machine, be preempted inside one
            // and hold the WAL in use for as long as it stays off the CPU.
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                read(&*store, |txn| txn.record("blob", "0"));
                std::thread::sleep(Duration::from_micros(50));
            }
        })
    };
    let blob = vec![7u8; 16 * 1024];
    for i in 0..3_000 {
        write(&*store, |txn| txn.put_record("blob", &i.to_string(), &blob));
    }
    let wal_bytes = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    let limit = 16 * 1024 * 1024;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while wal_bytes() > limit && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        write(&*store, |txn| txn.put_record("tick", "tick", b"x"));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    reader.join().unwrap();
    assert!(wal_bytes() <= limit, "the WAL holds {} bytes", wal_bytes());
    assert_eq!(read(&*store, |txn| txn.record("blob", "2999")), Some(blob));
}

/// The read cache never lets one read mix two states: a writer keeps changing a secret's
/// metadata, its version's metadata, its value and a cached record to the same number in
/// one transaction, while readers (plain and in read scopes, which take their snapshot
/// before the cache answers) check that every lookup of one read agrees. Without the
/// cache's invalidation before the commit, a reader served an entry from before a commit
/// while its snapshot came after it.
#[test]
fn cached_reads_never_mix_two_committed_states() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqliteStore::open(&dir.path().join("coffer.db")).unwrap().cache_records(&["kms-key"]),
    );
    let base = secret("raced");
    let stamped = |n: u64| {
        let meta = SecretMeta { description: Some(n.to_string()), ..base.clone() };
        let ver = VersionMeta { created_ms: n as i64, ..version("v1") };
        (meta, ver, SealedValue(n.to_be_bytes().to_vec()), n.to_string().into_bytes())
    };
    store
        .write(&mut |txn| {
            let (meta, ver, value, record) = stamped(0);
            txn.insert_secret(&meta)?;
            txn.insert_version(&meta.arn, &ver, &value)?;
            txn.put_record("kms-key", "k", &record)
        })
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let observe = |txn: &dyn ReadTxn| -> StoreResult<Vec<String>> {
        let meta = txn.secret_by_name(&scope(), "raced")?.expect("the secret");
        let by_arn = txn.secret_by_arn(&meta.arn)?.expect("the secret by ARN");
        let versions = txn.versions(&meta.arn)?;
        let value = txn.version_value(&meta.arn, "v1")?.expect("the value");
        let record = txn.record("kms-key", "k")?.expect("the record");
        Ok(vec![
            meta.description.unwrap(),
            by_arn.description.unwrap(),
            versions[0].created_ms.to_string(),
            u64::from_be_bytes(value.0.try_into().unwrap()).to_string(),
            String::from_utf8(record).unwrap(),
        ])
    };
    let readers: Vec<_> = (0..3)
        .map(|r| {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut seen = Vec::new();
                    let mut check = || {
                        store
                            .read(&mut |txn| {
                                seen.push(observe(txn)?);
                                Ok(())
                            })
                            .unwrap();
                    };
                    if r == 0 {
                        check();
                    } else {
                        // Two reads in one scope share one snapshot, so they agree too.
                        store.read_scope(&mut || {
                            check();
                            check();
                        });
                    }
                    let first = &seen[0];
                    for observed in &seen {
                        assert!(observed.iter().all(|v| v == &first[0]), "mixed states: {seen:?}");
                    }
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for n in 1..=600u64 {
        store
            .write(&mut |txn| {
                let (meta, ver, value, record) = stamped(n);
                txn.update_secret(&meta)?;
                txn.update_version(&meta.arn, &ver)?;
                txn.replace_version_value(&meta.arn, "v1", &value)?;
                txn.put_record("kms-key", "k", &record)
            })
            .unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(reads > 100, "only {reads} reads raced the writer");
    // Once the writer is done, every read sees its last state.
    let last = read(&*store, |txn| observe(txn));
    assert!(last.iter().all(|v| v == "600"), "{last:?}");
}

/// A database taken exclusively (a server's) refuses a second exclusive opener, while
/// plain opens (`coffer admin`, backups) still work; the lock goes with the store.
#[test]
fn an_exclusive_store_refuses_a_second_exclusive_opener_until_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("coffer.db");
    let first = SqliteStore::open(&path).unwrap().exclusive().unwrap();
    match SqliteStore::open(&path).unwrap().exclusive() {
        Err(StoreError::Backend(message)) => {
            assert!(message.contains("another process"), "{message}")
        }
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    }
    let plain = SqliteStore::open(&path).unwrap();
    write(&plain, |txn| txn.put_setting("by-admin", b"1"));
    drop(plain);
    drop(first);
    SqliteStore::open(&path).unwrap().exclusive().unwrap();
}

/// The description of the secret `name`, as `txn` sees it.
fn description_in(txn: &dyn ReadTxn, name: &str) -> StoreResult<String> {
    Ok(txn.secret_by_name(&scope(), name)?.expect("the secret").description.unwrap_or_default())
}

/// The writer answers a lookup of a key its batch has not touched from the read cache
/// (a PutSecretValue's secret and KMS key, read on the one writer thread). Seen here by
/// changing the row behind the store's back, which a server never does (its store is
/// exclusive): the write still sees what the cache holds.
#[test]
fn the_writers_lookups_of_keys_its_batch_has_not_touched_come_from_the_read_cache() {
    let fixture = file_fixture();
    let store = &fixture.store;
    let meta = secret("cached");
    write(store, |txn| {
        txn.insert_secret(&meta)?;
        txn.put_record("kms-key", "k", b"before")
    });
    // A read caches both.
    read(store, |txn| {
        txn.secret_by_name(&scope(), "cached")?;
        txn.record("kms-key", "k")
    });
    let behind = rusqlite::Connection::open(fixture._dir.path().join("coffer.db")).unwrap();
    behind
        .execute_batch(
            "UPDATE secrets SET meta = json_set(meta, '$.description', 'behind'); \
             UPDATE records SET value = CAST('behind' AS BLOB) WHERE kind = 'kms-key';",
        )
        .unwrap();
    let mut seen = Vec::new();
    write(store, |txn| {
        seen = vec![
            description_in(&*txn, "cached")?,
            String::from_utf8(txn.record("kms-key", "k")?.unwrap()).unwrap(),
        ];
        Ok(())
    });
    assert_eq!(seen, ["the cached secret", "before"]);
}

/// What a batch changed is never answered from the read cache: a write sees its own
/// changes, and the changes of a write whose savepoint was rolled back are gone for
/// the next one, though the cache held the key before either.
#[test]
fn a_write_sees_its_own_changes_and_not_a_failed_writes_over_the_read_cache() {
    let fixture = file_fixture();
    let store = &fixture.store;
    let meta = secret("mine");
    write(store, |txn| {
        txn.insert_secret(&meta)?;
        txn.insert_version(&meta.arn, &version("v1"), &SealedValue(vec![1]))?;
        txn.put_record("kms-key", "k", b"1")
    });
    let cache_everything = |txn: &dyn ReadTxn| {
        txn.secret_by_name(&scope(), "mine")?;
        txn.secret_by_arn(&meta.arn)?;
        txn.versions(&meta.arn)?;
        txn.record("kms-key", "k")
    };
    read(store, cache_everything);
    let mut seen = Vec::new();
    write(store, |txn| {
        cache_everything(&*txn)?;
        let changed = SecretMeta { description: Some("2".into()), ..meta.clone() };
        txn.update_secret(&changed)?;
        txn.insert_version(&meta.arn, &fixtures::version("v2", &[]), &SealedValue(vec![2]))?;
        txn.put_record("kms-key", "k", b"2")?;
        seen = vec![
            description_in(&*txn, "mine")?,
            txn.secret_by_arn(&meta.arn)?.unwrap().description.unwrap(),
            txn.versions(&meta.arn)?.len().to_string(),
            String::from_utf8(txn.record("kms-key", "k")?.unwrap()).unwrap(),
        ];
        Ok(())
    });
    assert_eq!(seen, ["2", "2", "2", "2"]);
    read(store, cache_everything);
    let failed = store.write(&mut |txn| {
        let changed = SecretMeta { description: Some("failed".into()), ..meta.clone() };
        txn.update_secret(&changed)?;
        txn.put_record("kms-key", "k", b"failed")?;
        Err(StoreError::Aborted)
    });
    assert!(failed.is_err());
    write(store, |txn| {
        seen = vec![
            description_in(&*txn, "mine")?,
            String::from_utf8(txn.record("kms-key", "k")?.unwrap()).unwrap(),
        ];
        Ok(())
    });
    assert_eq!(seen, ["2", "2"]);
}

/// Concurrent read-modify-write calls on one secret, many sharing a batch, with readers
/// filling the cache meanwhile, lose no update: each writer's read of the counter sees
/// every write committed or earlier in its batch.
#[test]
fn concurrent_increments_through_the_writers_cache_lose_no_update() {
    let fixture = Arc::new(file_fixture());
    write(&fixture.store, |txn| {
        txn.insert_secret(&SecretMeta { description: Some("0".into()), ..secret("counter") })
            .map(|_| ())
    });
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let fixture = fixture.clone();
            std::thread::spawn(move || {
                for _ in 0..100 {
                    write(&fixture.store, |txn| {
                        let meta = txn.secret_by_name(&scope(), "counter")?.unwrap();
                        let n: u64 = meta.description.as_deref().unwrap().parse().unwrap();
                        txn.update_secret(&SecretMeta {
                            description: Some((n + 1).to_string()),
                            ..meta
                        })
                    });
                    read(&fixture.store, |txn| description_in(txn, "counter"));
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    assert_eq!(read(&fixture.store, |txn| description_in(txn, "counter")), "400");
}

/// A batch run again after a member failed having changed rows (review 18) leaves every
/// secret as its committed writes made it, in SQL and in the read cache alike: each write
/// moves AWSCURRENT from its secret's newest version to a new one (the put's reads and
/// writes: `labelled_versions`, `update_version`, `insert_version` at the newest `ord`
/// known), every third after its changes fails, and readers keep the cache warm
/// meanwhile. Afterwards the versions read through the cache are the committed ones in
/// their order, one labelled, and the rows' `ord` and `labelled` agree with them.
#[test]
fn a_batch_run_again_leaves_versions_their_order_labels_and_the_cache_as_committed() {
    const THREADS: usize = 8;
    const WRITES: usize = 20;
    let fixture = Arc::new(file_fixture());
    let arns: Vec<String> = (0..THREADS)
        .map(|t| {
            let meta = secret(&format!("rerun-{t}"));
            write(&fixture.store, |txn| {
                txn.insert_secret(&meta)?;
                txn.insert_version(&meta.arn, &version("v0"), &SealedValue(b"0".to_vec()))
            });
            meta.arn
        })
        .collect();
    let versions_of = |store: &dyn Store, arn: &str| read(store, |txn| txn.versions(arn));
    for arn in &arns {
        versions_of(&fixture.store, arn);
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (fixture, arns, stop) = (fixture.clone(), arns.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    for arn in &arns {
                        let _ = read(&fixture.store, |txn| txn.versions(arn));
                    }
                }
            })
        })
        .collect();
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (fixture, arn) = (fixture.clone(), arns[t].clone());
            std::thread::spawn(move || {
                let mut kept = vec!["v0".to_string()];
                for i in 0..WRITES {
                    let id = format!("v{t}-{i}");
                    let fails = (t + i) % 3 == 0;
                    let result = fixture.store.write(&mut |txn| {
                        let (labelled, _) = txn.labelled_versions(&arn, &id)?;
                        for mut old in labelled {
                            old.stages.clear();
                            txn.update_version(&arn, &old)?;
                        }
                        txn.insert_version(&arn, &version(&id), &SealedValue(id.clone().into()))?;
                        if fails { Err(StoreError::Aborted) } else { Ok(()) }
                    });
                    assert_eq!(result.is_ok(), !fails, "{id}: {result:?}");
                    if !fails {
                        kept.push(id);
                    }
                }
                kept
            })
        })
        .collect();
    let kept: Vec<Vec<String>> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    readers.into_iter().for_each(|r| r.join().unwrap());
    let conn = rusqlite::Connection::open(fixture._dir.path().join("coffer.db")).unwrap();
    for (arn, kept) in arns.iter().zip(&kept) {
        let cached = versions_of(&fixture.store, arn);
        let ids: Vec<&str> = cached.iter().map(|v| v.version_id.as_str()).collect();
        assert_eq!(ids, kept.iter().map(String::as_str).collect::<Vec<_>>(), "{arn}");
        let labelled: Vec<&str> =
            cached.iter().filter(|v| !v.stages.is_empty()).map(|v| v.version_id.as_str()).collect();
        assert_eq!(labelled, [kept.last().unwrap().as_str()], "{arn}");
        let rows: Vec<(String, i64, bool)> = conn
            .prepare(
                "SELECT version_id, ord, labelled FROM version_meta WHERE arn = ?1 ORDER BY ord",
            )
            .unwrap()
            .query_map([arn], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let ords: Vec<i64> = rows.iter().map(|(_, ord, _)| *ord).collect();
        assert!(ords.windows(2).all(|w| w[0] < w[1]), "{arn}: ords {ords:?}");
        let marks: Vec<(String, bool)> =
            rows.into_iter().map(|(id, _, labelled)| (id, labelled)).collect();
        let want: Vec<(String, bool)> =
            kept.iter().map(|id| (id.clone(), id == kept.last().unwrap())).collect();
        assert_eq!(marks, want, "{arn}");
    }
}

/// What a write sees of a secret's labelled versions (the writer answers from what it
/// knows of them since its last commit), and what the database file holds, read with a
/// connection of its own (a second store would answer from a read cache of its own, which
/// the first store's writes do not keep up to date).
fn labelled_in_write_and_in_file(
    store: &dyn Store,
    path: &Path,
    arn: &str,
    also: &str,
) -> ((Vec<VersionMeta>, usize), (Vec<VersionMeta>, usize)) {
    let (tx, rx) = mpsc::channel();
    write(store, |txn| {
        tx.send(txn.labelled_versions(arn, also)?).unwrap();
        Ok(())
    });
    let in_write = rx.recv().unwrap();
    let conn = rusqlite::Connection::open(path).unwrap();
    let every: Vec<VersionMeta> = conn
        .prepare("SELECT version_id, meta FROM version_meta WHERE arn = ?1 ORDER BY ord")
        .unwrap()
        .query_map([arn], |row| {
            let meta: VersionMeta = serde_json::from_str(&row.get::<_, String>(1)?).unwrap();
            Ok(VersionMeta { version_id: row.get(0)?, ..meta })
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let count = every.len();
    let kept = every.into_iter().filter(|v| !v.is_deprecated() || v.version_id == also);
    (in_write, (kept.collect(), count))
}

/// A PutSecretValue as the server makes it: reads the labelled versions, moves
/// AWSCURRENT to the new version and AWSPREVIOUS to the old current one, adds the
/// version.
fn put_version(txn: &mut dyn WriteTxn, arn: &str, id: &str) -> StoreResult<()> {
    let (kept, _) = txn.labelled_versions(arn, id)?;
    if kept.iter().any(|v| v.version_id == id) {
        return Ok(());
    }
    for before in kept {
        let mut after = before.clone();
        if after.stages.remove("AWSPREVIOUS") | after.stages.remove("AWSCURRENT") {
            if before.stages.contains("AWSCURRENT") {
                after.stages.insert("AWSPREVIOUS".to_owned());
            }
            txn.update_version(arn, &after)?;
        }
    }
    txn.insert_version(arn, &version(id), &SealedValue(id.as_bytes().to_vec()))
}

/// The writer answers a put's lookup of labelled versions from what it knows of them since
/// its last commit: what it answers is what SQL holds, after label moves, a deprecated
/// version relabelled, a replayed old version id, a removed version, failed writes (before
/// and after their changes) and concurrent writes in shared batches, some run again.
#[test]
fn the_writers_known_versions_are_what_sql_holds() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    let fixture = Arc::new(file_fixture());
    let store: &dyn Store = &fixture.store;
    let path = fixture._dir.path().join("coffer.db");
    let arns: Vec<String> = (0..4)
        .map(|n| {
            let meta = secret(&format!("known-{n}"));
            write(store, |txn| txn.insert_secret(&meta).map(drop));
            meta.arn
        })
        .collect();
    let same = |arn: &str, also: &str| {
        let (in_write, in_read) = labelled_in_write_and_in_file(store, &path, arn, also);
        assert_eq!(in_write, in_read, "{arn}, asked for {also}");
    };
    let arn = arns[0].as_str();
    for n in 0..5 {
        write(store, |txn| put_version(txn, arn, &format!("v{n}")));
        same(arn, "new");
    }
    // A deprecated version asked for by id (a replayed token), then given a label.
    same(arn, "v1");
    write(store, |txn| {
        txn.labelled_versions(arn, "v1")?;
        txn.update_version(arn, &fixtures::version("v1", &["mine"]))
    });
    same(arn, "new");
    same(arn, "v1");
    // A write failing after its changes, and one failing before them.
    let failed = store.write(&mut |txn| {
        put_version(txn, arn, "v-failed")?;
        Err(StoreError::Aborted)
    });
    assert!(failed.is_err());
    same(arn, "v-failed");
    assert!(store.write(&mut |_| Err(StoreError::Aborted)).is_err());
    // A removed version, then more puts.
    write(store, |txn| {
        txn.labelled_versions(arn, "v0")?;
        txn.delete_version(arn, "v0")
    });
    same(arn, "v0");
    for n in 5..8 {
        write(store, |txn| put_version(txn, arn, &format!("v{n}")));
        same(arn, "new");
    }

    // Concurrent puts on a few secrets, in shared batches, where every fifth write fails
    // after its changes and others fail only when run again (after such a failure).
    let runs = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (fixture, arns, runs) = (fixture.clone(), arns.clone(), runs.clone());
            std::thread::spawn(move || {
                for i in 0..40 {
                    let arn = &arns[(t + i) % arns.len()];
                    let id = format!("c-{t}-{i}");
                    let (mut run, mut meant_to_fail) = (0, false);
                    let result = fixture.store.write(&mut |txn| {
                        run += 1;
                        runs.fetch_add(1, Ordering::Relaxed);
                        // A put failing by itself would come of the writer's knowing
                        // wrong labels (a label moved from a version that is not there).
                        meant_to_fail = false;
                        put_version(txn, arn, &id)?;
                        meant_to_fail = (t * 40 + i) % 5 == 0 || (run > 1 && i % 2 == 0);
                        if meant_to_fail { Err(StoreError::Aborted) } else { Ok(()) }
                    });
                    assert_eq!(result.is_err(), meant_to_fail, "{id}: {result:?}");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert!(runs.load(Ordering::Relaxed) > 8 * 40, "some batches ran again");
    for arn in &arns {
        same(arn, "new");
        same(arn, "c-0-0");
        write(store, |txn| put_version(txn, arn, "last"));
        same(arn, "new");
    }
}
