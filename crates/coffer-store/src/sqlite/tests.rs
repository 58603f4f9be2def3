//! Tests of the SQLite store's internals: connection settings and query plans.

use rusqlite::{Connection, ToSql};

use super::SqliteStore;
use super::txn::listing_sql;
use crate::SortBy;

fn plan(conn: &Connection, sql: &str, params: &[&dyn ToSql]) -> String {
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    let rows = stmt.query_map(params, |row| row.get::<_, String>(3)).unwrap();
    rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
}

#[test]
fn writer_connection_syncs_fully_and_enforces_foreign_keys() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("coffer.db")).unwrap();
    let writer = store.lock_writer();
    let conn = &writer.conn;
    let synchronous: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
    let foreign_keys: i64 = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0)).unwrap();
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!((synchronous, foreign_keys, mode.as_str()), (2, 1, "wal"));
}

#[test]
fn every_listing_query_walks_an_index_without_sorting() {
    let store = SqliteStore::open_in_memory().unwrap();
    let writer = store.lock_writer();
    let conn = &writer.conn;
    let sorts = [SortBy::CreatedDate, SortBy::LastAccessedDate, SortBy::LastChangedDate];
    for sort_by in sorts.into_iter().chain([SortBy::Name]) {
        let key: &dyn ToSql = if sort_by == SortBy::Name { &"name" } else { &0i64 };
        for descending in [false, true] {
            for resuming in [false, true] {
                let sql = listing_sql(sort_by, descending, resuming);
                let params: Vec<&dyn ToSql> = if resuming {
                    vec![&"a", &"r", &10i64, key, &1i64]
                } else {
                    vec![&"a", &"r", &10i64]
                };
                let plan = plan(conn, &sql, &params);
                let context = format!("{sort_by:?} {descending} {resuming}: {plan}");
                assert!(plan.contains("USING INDEX secrets_by_"), "{context}");
                assert!(!plan.contains("TEMP B-TREE"), "{context}");
                if resuming {
                    assert!(plan.contains(">") || plan.contains("<"), "{context}");
                }
            }
        }
    }
}

#[test]
fn due_deletions_and_versions_use_their_indexes() {
    let store = SqliteStore::open_in_memory().unwrap();
    let writer = store.lock_writer();
    let conn = &writer.conn;
    let due = plan(
        conn,
        "SELECT arn FROM secrets WHERE deletion_ms IS NOT NULL AND deletion_ms <= ?1 \
         ORDER BY deletion_ms, seq",
        &[&0i64],
    );
    assert!(due.contains("secrets_by_deletion"), "{due}");
    let versions =
        plan(conn, "SELECT version_id, meta, ord FROM version_meta WHERE arn = ?1", &[&"arn"]);
    assert!(versions.contains("USING PRIMARY KEY (arn=?)"), "{versions}");
    let value = plan(
        conn,
        "SELECT v.value FROM version_meta m JOIN version_values v ON v.id = m.value_id \
         WHERE m.arn = ?1 AND m.version_id = ?2",
        &[&"arn", &"id"],
    );
    assert!(
        value.contains("USING PRIMARY KEY (arn=? AND version_id=?)")
            && value.contains("USING INTEGER PRIMARY KEY (rowid=?)"),
        "{value}"
    );
}

/// The WAL's size on disk.
fn wal_bytes(db: &std::path::Path) -> u64 {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0)
}

/// Some frames in the WAL: one committed transaction of `rows` rows.
fn commit_rows(conn: &Connection, from: i64, rows: i64) {
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    for k in from..from + rows {
        conn.execute("INSERT INTO t VALUES (?1, zeroblob(500))", [k]).unwrap();
    }
    conn.execute_batch("COMMIT").unwrap();
}

/// The writer's periodic restart of a WAL grown past its bound starts it over in place:
/// the next commit writes over the old frames from the file's start, so the file neither
/// grows nor is cut to nothing and extended again (a `TRUNCATE` there kept every write
/// waiting for the truncation, the p99.9 stalls of the ninth session's measurements).
#[test]
fn the_writers_restart_of_the_wal_reuses_the_file_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wal.db");
    let store = SqliteStore::open(&db).unwrap();
    let writer = store.lock_writer();
    let conn = &writer.conn;
    conn.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)").unwrap();
    for round in 0..20 {
        commit_rows(conn, round * 50, 50);
    }
    let grown = wal_bytes(&db);
    assert!(grown > 200_000, "{grown}");
    assert!(super::writer::start_wal_over(conn));
    commit_rows(conn, 10_000, 50);
    assert_eq!(wal_bytes(&db), grown, "the file is kept and written from its start");
    // A scrub's truncation still empties the file.
    assert!(super::writer::restart_wal(conn));
    assert_eq!(wal_bytes(&db), 0);
}

/// A reader that finds every connection lent out waits, and is handed the first one given
/// back (the pool wakes waiters only when there are some, so this guards that it still
/// wakes them), also when several wait at once.
#[test]
fn readers_waiting_for_a_full_pool_get_the_connections_given_back() {
    use super::read::{MAX_READERS, ReaderPool};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pool.db");
    drop(crate::SqliteStore::open(&path).unwrap());
    let pool = ReaderPool::new(path);
    let lent: Vec<_> = (0..MAX_READERS).map(|_| pool.take().unwrap()).collect();
    let served = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                let reader = pool.take().unwrap();
                served.fetch_add(1, Ordering::SeqCst);
                drop(reader);
            });
        }
        // Every waiter is blocked until a connection comes back.
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert_eq!(served.load(Ordering::SeqCst), 0);
        drop(lent);
    });
    assert_eq!(served.load(Ordering::SeqCst), 3);
    let state = pool.lock();
    assert_eq!(state.open, MAX_READERS);
    assert_eq!(state.idle.len(), MAX_READERS);
}
