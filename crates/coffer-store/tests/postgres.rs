//! Runs the store conformance suite against PostgreSQL, plus what only a
//! shared database has: migrations, TLS, leases and writers on several nodes.
//!
//! Every test gets a fresh database on one throwaway server started from the
//! installed PostgreSQL binaries. Without them these tests fail; they never skip.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use coffer_store::fixtures::{scope, secret, version};
use coffer_store::postgres::SCHEMA_VERSION;
use coffer_store::testing::{TestDatabase, TestPostgres};
use coffer_store::{PostgresStore, SealedValue, Store, StoreError, WriteTxn};

/// A store on a database of its own; the database is dropped after the store.
struct Fixture {
    store: PostgresStore,
    _database: TestDatabase,
}

impl Fixture {
    fn new() -> Fixture {
        let database = TestPostgres::shared().create_database();
        let store = PostgresStore::open(&database.url).expect("the test database opens");
        Fixture { store, _database: database }
    }
}

impl AsRef<dyn Store> for Fixture {
    fn as_ref(&self) -> &(dyn Store + 'static) {
        &self.store
    }
}

coffer_store::conformance_tests!(Fixture::new());

#[test]
fn opening_applies_every_migration_once_and_reopening_changes_nothing() {
    let database = TestPostgres::shared().create_database();
    let store = PostgresStore::connect(&database.url).unwrap();
    let first = store.migrate().unwrap();
    assert_eq!((first.from, first.to), (0, SCHEMA_VERSION));
    let again = store.migrate().unwrap();
    assert_eq!((again.from, again.to), (SCHEMA_VERSION, SCHEMA_VERSION));
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    drop(store);
    let reopened = PostgresStore::open(&database.url).unwrap();
    assert_eq!(reopened.schema_version().unwrap(), SCHEMA_VERSION);
}

#[test]
fn nodes_starting_together_migrate_the_schema_exactly_once() {
    let database = TestPostgres::shared().create_database();
    let url = database.url.clone();
    let outcomes: Vec<_> = std::thread::scope(|threads| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let url = url.clone();
                threads.spawn(move || PostgresStore::connect(&url).unwrap().migrate().unwrap())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let fresh = outcomes.iter().filter(|m| m.from == 0).count();
    assert_eq!(fresh, 1, "{outcomes:?}");
    assert!(outcomes.iter().all(|m| m.to == SCHEMA_VERSION));
}

#[test]
fn a_database_from_a_newer_build_is_refused() {
    let database = TestPostgres::shared().create_database();
    drop(PostgresStore::open(&database.url).unwrap());
    database.execute(&format!(
        "INSERT INTO coffer_schema_migrations (version) VALUES ({})",
        SCHEMA_VERSION + 1
    ));
    match PostgresStore::open(&database.url) {
        Err(StoreError::Backend(message)) => assert!(message.contains("newer"), "{message}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn an_unreachable_database_fails_at_open_with_the_reason_and_no_password() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("postgres://coffer:hunter2@127.0.0.1:{port}/nowhere?connect_timeout=2");
    match PostgresStore::open(&url) {
        Err(StoreError::Backend(message)) => {
            assert!(message.contains("cannot connect"), "{message}");
            assert!(!message.contains("hunter2"), "{message}");
        }
        other => panic!("expected a connection failure, got {other:?}"),
    }
}

/// Every pooled connection of the store named `application` uses TLS, and there is at least one.
fn connections_use_tls(server: &TestPostgres, application: &str) -> bool {
    let rows = server.admin_query(&format!(
        "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a ON a.pid = s.pid \
         WHERE a.application_name = '{application}'"
    ));
    assert!(!rows.is_empty(), "the store {application} has no connection");
    rows.iter().all(|row| row[0].as_deref() == Some("t"))
}

#[test]
fn tls_modes_encrypt_and_verify_as_libpq_does() {
    let server = TestPostgres::shared();
    let database = server.create_database();
    let ca = server.ca_certificate();
    let other_ca = server.unrelated_ca_certificate();
    let ca = ca.display();
    let other_ca = other_ca.display();
    let cases = [
        ("127.0.0.1", "sslmode=require".to_owned(), true),
        ("127.0.0.1", "sslmode=prefer".to_owned(), true),
        ("localhost", format!("sslmode=verify-full&sslrootcert={ca}"), true),
        ("127.0.0.1", format!("sslmode=verify-ca&sslrootcert={ca}"), true),
        ("127.0.0.1", "sslmode=disable".to_owned(), false),
    ];
    for (i, (host, query, encrypted)) in cases.iter().enumerate() {
        let application = format!("coffer-tls-{}-{i}", std::process::id());
        let url =
            server.url(host, &database.name, &format!("?{query}&application_name={application}"));
        let store = PostgresStore::open(&url).unwrap_or_else(|e| panic!("{query}: {e}"));
        store.write(&mut |txn| txn.put_setting("tls", b"on")).unwrap();
        assert_eq!(connections_use_tls(server, &application), *encrypted, "{query}");
    }
    // The certificate names localhost, not 127.0.0.1, and comes from `ca`, not `other_ca`.
    for (host, query) in [
        ("127.0.0.1", format!("sslmode=verify-full&sslrootcert={ca}")),
        ("localhost", format!("sslmode=verify-full&sslrootcert={other_ca}")),
        ("localhost", format!("sslmode=verify-ca&sslrootcert={other_ca}")),
        ("localhost", format!("sslmode=require&sslrootcert={other_ca}")),
    ] {
        let url = server.url(host, &database.name, &format!("?{query}&connect_timeout=5"));
        match PostgresStore::open(&url) {
            Err(StoreError::Backend(message)) => {
                assert!(message.contains("cannot connect"), "{message}")
            }
            other => panic!("{host} {query}: expected a refused certificate, got {other:?}"),
        }
    }
}

#[test]
fn a_lease_has_one_holder_until_it_expires_or_is_released() {
    let fixture = Fixture::new();
    let store = &fixture.store;
    let long = Duration::from_secs(60);
    assert!(store.try_acquire_lease("sweeper", "node-a", long).unwrap());
    assert!(!store.try_acquire_lease("sweeper", "node-b", long).unwrap());
    assert!(store.try_acquire_lease("sweeper", "node-a", long).unwrap(), "the holder renews");
    assert!(
        store.try_acquire_lease("other-work", "node-b", long).unwrap(),
        "leases are independent"
    );
    assert_eq!(store.lease_holder("sweeper").unwrap().as_deref(), Some("node-a"));

    // node-b may not release what node-a holds; node-a may.
    store.release_lease("sweeper", "node-b").unwrap();
    assert_eq!(store.lease_holder("sweeper").unwrap().as_deref(), Some("node-a"));
    store.release_lease("sweeper", "node-a").unwrap();
    assert_eq!(store.lease_holder("sweeper").unwrap(), None);
    assert!(store.try_acquire_lease("sweeper", "node-b", Duration::from_millis(300)).unwrap());
    assert!(!store.try_acquire_lease("sweeper", "node-a", long).unwrap());

    // node-b stops renewing (it died): its lease runs out and node-a takes over.
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(store.lease_holder("sweeper").unwrap(), None);
    assert!(store.try_acquire_lease("sweeper", "node-a", long).unwrap());
    assert!(!store.try_acquire_lease("sweeper", "node-b", long).unwrap());
}

#[test]
fn nodes_racing_for_a_lease_elect_exactly_one() {
    let fixture = Fixture::new();
    let url = fixture._database.url.clone();
    let nodes: Vec<PostgresStore> = (0..4).map(|_| PostgresStore::open(&url).unwrap()).collect();
    for round in 0..10 {
        let name = format!("race-{round}");
        let winners = AtomicUsize::new(0);
        std::thread::scope(|threads| {
            for (i, node) in nodes.iter().enumerate() {
                let (name, winners) = (&name, &winners);
                threads.spawn(move || {
                    let holder = format!("node-{i}");
                    if node.try_acquire_lease(name, &holder, Duration::from_secs(60)).unwrap() {
                        winners.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        assert_eq!(winners.load(Ordering::Relaxed), 1, "round {round}");
    }
}

/// The read-modify-write of a counter on two stores (two nodes) sharing a
/// database: serializable transactions with retries lose no increment.
#[test]
fn writers_on_two_nodes_never_lose_an_update() {
    const THREADS_PER_NODE: usize = 4;
    const EACH: usize = 25;
    let fixture = Fixture::new();
    let second = PostgresStore::open(&fixture._database.url).unwrap();
    let arn = secret("shared").arn;
    fixture.store.write(&mut |txn| txn.insert_secret(&secret("shared")).map(drop)).unwrap();
    let nodes: [&PostgresStore; 2] = [&fixture.store, &second];
    std::thread::scope(|threads| {
        for (n, node) in nodes.iter().enumerate() {
            for t in 0..THREADS_PER_NODE {
                let arn = arn.clone();
                threads.spawn(move || {
                    for i in 0..EACH {
                        let id = format!("n{n}-t{t}-v{i}");
                        node.write(&mut |txn: &mut dyn WriteTxn| {
                            let count = txn.versions(&arn)?.len() as u32;
                            txn.put_setting("count", &(count + 1).to_be_bytes())?;
                            txn.insert_version(
                                &arn,
                                &version(&id, &[]),
                                &SealedValue(id.clone().into_bytes()),
                            )
                        })
                        .expect("a contended write eventually commits");
                    }
                });
            }
        }
    });
    let total = 2 * THREADS_PER_NODE * EACH;
    let mut seen = None;
    second
        .read(&mut |txn| {
            seen = Some((txn.versions(&arn)?.len(), txn.setting("count")?));
            Ok(())
        })
        .unwrap();
    let (versions, count) = seen.unwrap();
    assert_eq!(versions, total);
    assert_eq!(count, Some((total as u32).to_be_bytes().to_vec()));
}

#[test]
fn a_closure_that_swallows_a_failed_statement_does_not_commit() {
    let fixture = Fixture::new();
    let result = fixture.store.write(&mut |txn| {
        txn.put_setting("before", b"x")?;
        // A version for a secret that does not exist breaks a foreign key,
        // which aborts the PostgreSQL transaction; ignoring the error must not
        // turn the abandoned transaction into a success.
        let ignored = txn.insert_version("arn:missing", &version("v1", &[]), &SealedValue(vec![1]));
        assert!(ignored.is_err());
        Ok(())
    });
    assert!(matches!(result, Err(StoreError::Backend(_))), "{result:?}");
    let mut before = Some(Vec::new());
    fixture
        .store
        .read(&mut |txn| {
            before = txn.setting("before")?;
            Ok(())
        })
        .unwrap();
    assert_eq!(before, None);
}

#[test]
fn a_store_can_be_dropped_inside_an_async_task() {
    let fixture = Fixture::new();
    let store = Arc::new(PostgresStore::open(&fixture._database.url).unwrap());
    store.write(&mut |txn| txn.put_setting("k", b"v")).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(async move { drop(store) });
}

/// Reads inside a read scope share one transaction and its snapshot: a write made
/// meanwhile (on another connection) is not seen until the scope ends. Nested scopes
/// join the outer one, and a panic inside a scope leaves the store working.
#[test]
fn reads_in_a_read_scope_share_one_snapshot() {
    let fixture = Fixture::new();
    let store: &dyn Store = &fixture.store;
    let insert = |name: &str| {
        let meta = secret(name);
        store.write(&mut |txn| txn.insert_secret(&meta).map(drop)).unwrap();
    };
    let count = || {
        let mut n = 0;
        store
            .read(&mut |txn| {
                n = 0;
                txn.visit_secrets(
                    &scope(),
                    &coffer_store::ListQuery {
                        sort_by: coffer_store::SortBy::Name,
                        descending: false,
                        after: None,
                        expected: None,
                    },
                    &mut |_| {
                        n += 1;
                        true
                    },
                )
            })
            .unwrap();
        n
    };
    insert("before");
    let mut seen = Vec::new();
    store.read_scope(&mut || {
        seen.push(count());
        insert("during");
        seen.push(count());
        store.read_scope(&mut || seen.push(count()));
    });
    seen.push(count());
    assert_eq!(seen, [1, 1, 1, 2]);
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        store.read_scope(&mut || {
            count();
            panic!("a request panics while its read transaction is shared");
        })
    }));
    assert!(panicked.is_err());
    insert("after");
    assert_eq!(count(), 3);
}
