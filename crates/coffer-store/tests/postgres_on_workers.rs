//! The PostgreSQL store called from an async task of a multi-threaded tokio runtime, as the
//! server calls it for read-only calls (`App::reads_inline`): where it waits for the
//! database it leaves the worker first, so the runtime's other tasks go on meanwhile, and
//! its writes work there too.
//!
//! The database is a throwaway server started from the installed PostgreSQL binaries;
//! without them these tests fail, never skip.

use coffer_core::model::AWSCURRENT;
use coffer_store::fixtures::{self, scope, version};
use coffer_store::testing::TestPostgres;
use coffer_store::{PostgresStore, SealedValue, Store};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One worker: a task that held it while waiting would hold up every other task.
fn one_worker() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap()
}

/// The current value of the fixtures' secret `app`, read in one read transaction.
fn current_value(store: &PostgresStore) -> Option<Vec<u8>> {
    let mut value = None;
    store
        .read(&mut |tx| {
            let Some(meta) = tx.secret_by_name(&scope(), "app")? else { return Ok(()) };
            let versions = tx.versions(&meta.arn)?;
            let current = versions.iter().find(|v| v.stages.contains(AWSCURRENT)).unwrap();
            value = tx.version_value(&meta.arn, &current.version_id)?.map(|v| v.0);
            Ok(())
        })
        .unwrap();
    value
}

#[test]
fn a_read_waiting_for_the_database_on_an_async_worker_leaves_it_to_the_other_tasks() {
    let database = TestPostgres::shared().create_database();
    // No cache: every read runs its statements.
    let store = Arc::new(PostgresStore::open(&database.url).unwrap());
    let runtime = one_worker();

    // A write made on the worker (it waits for its commit there).
    let writer = store.clone();
    let written = runtime.spawn(async move {
        let meta = fixtures::secret("app");
        writer.write(&mut |tx| {
            tx.insert_secret(&meta)?;
            let v1 = version("v1", &[AWSCURRENT]);
            tx.insert_version(&meta.arn, &v1, &SealedValue(b"one".into()))
        })
    });
    runtime.block_on(written).expect("a write on an async worker runs").unwrap();

    // Another session holds the secrets table, so the read below waits for it.
    let holder = runtime.block_on(async {
        let (client, connection) =
            tokio_postgres::connect(&database.url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client.batch_execute("BEGIN; LOCK TABLE secrets IN ACCESS EXCLUSIVE MODE").await.unwrap();
        client
    });
    let reader = store.clone();
    let read = runtime.spawn(async move { current_value(&reader) });
    let deadline = Instant::now() + Duration::from_secs(30);
    while database
        .query("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()")
        .first()
        .and_then(|row| row[0].clone())
        .as_deref()
        == Some("0")
    {
        assert!(!read.is_finished(), "the read ended before it waited: {:?}", runtime.block_on(read));
        assert!(Instant::now() < deadline, "the read never waited for the lock");
        std::thread::sleep(Duration::from_millis(10));
    }

    // While the read waits, the one worker still runs other tasks.
    let other = runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), tokio::spawn(async { 42 })).await
    });
    assert_eq!(other.expect("another task ran while the read waited").unwrap(), 42);
    assert!(!read.is_finished(), "the read did not wait for the lock");

    runtime.block_on(holder.batch_execute("COMMIT")).unwrap();
    let value = runtime.block_on(read).expect("a read on an async worker runs");
    assert_eq!(value.as_deref(), Some(&b"one"[..]));
}
