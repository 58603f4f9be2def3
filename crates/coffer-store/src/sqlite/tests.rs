//! Tests of the SQLite store's internals: connection settings, query plans, the shared read.

use rusqlite::{Connection, ToSql};

use super::SqliteStore;
use super::txn::listing_sql;
use crate::{SortBy, Store};

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

fn put(store: &SqliteStore, value: &[u8]) {
    store.write(&mut |tx| tx.put_record("test", "k", value)).unwrap();
}

fn get(store: &SqliteStore) -> Option<Vec<u8>> {
    let mut out = None;
    store
        .read(&mut |tx| {
            out = tx.record("test", "k")?;
            Ok(())
        })
        .unwrap();
    out
}

fn idle_readers(store: &SqliteStore) -> usize {
    store.readers.as_ref().unwrap().state.lock().unwrap().idle.len()
}

#[test]
fn a_write_ends_a_read_scope_until_write_and_gives_the_reader_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("coffer.db")).unwrap();
    put(&store, b"one");
    let (mut before, mut later, mut held, mut after) = (None, None, 0, 0);
    store.read_scope_until_write(&mut || {
        before = get(&store);
        // The scope holds its reader until a write, which gives it back before it
        // waits for its commit, so a batch's writers never hold the pool's readers.
        held = idle_readers(&store);
        put(&store, b"two");
        after = idle_readers(&store);
        later = get(&store);
    });
    assert_eq!(before.as_deref(), Some(&b"one"[..]));
    assert_eq!(after, held + 1, "the write gave the scope's reader back");
    assert_eq!(later.as_deref(), Some(&b"two"[..]), "later reads see the write");
    assert_eq!(get(&store).as_deref(), Some(&b"two"[..]));
}

#[test]
fn a_write_inside_a_shared_read_leaves_that_read_its_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("coffer.db")).unwrap();
    put(&store, b"one");
    let mut seen = Vec::new();
    store.read_scope_until_write(&mut || {
        store
            .read(&mut |tx| {
                seen.push(tx.record("test", "k")?);
                put(&store, b"two");
                // Still the scope's snapshot: the transaction was not ended under it.
                seen.push(tx.record("test", "k")?);
                Ok(())
            })
            .unwrap();
        seen.push(get(&store));
    });
    assert_eq!(seen[0].as_deref(), Some(&b"one"[..]));
    assert_eq!(seen[1].as_deref(), Some(&b"one"[..]));
    assert_eq!(get(&store).as_deref(), Some(&b"two"[..]));
}
