//! Where read-only calls run (`App::reads_inline`): on the async workers for a store
//! whose reads take microseconds, and for a store across a network only when it says it
//! leaves a worker itself before it waits, and only on a runtime that allows it (one
//! with several workers).

use crate::{App, Config, KeyRing};
use coffer_crypto::MasterKey;
use coffer_store::{Latency, MemoryStore, Store};
use std::sync::Arc;

/// A memory store that says its transactions cross a network, and whether its reads
/// leave an async worker before they wait.
struct Remote {
    inner: MemoryStore,
    waits_off_the_workers: bool,
}

impl Store for Remote {
    fn latency(&self) -> Latency {
        Latency::Network
    }

    fn reads_wait_off_the_workers(&self) -> bool {
        self.waits_off_the_workers
    }

    crate::test_store_wrappers::pass_reads_and_snapshots_to_inner!();

    crate::test_store_wrappers::pass_writes_to_inner!();

    fn describe(&self) -> String {
        "remote".to_owned()
    }
}

fn app(waits_off_the_workers: bool) -> Arc<App> {
    let store = Arc::new(Remote { inner: MemoryStore::default(), waits_off_the_workers });
    let keys = KeyRing::open(MasterKey::generate(), store.as_ref()).unwrap();
    App::new(store, keys, Config::default())
}

/// Whether `app` runs reads inline: outside any runtime, on a current-thread runtime,
/// and on a multi-threaded one.
fn inline_where(app: &App) -> (bool, bool, bool) {
    let current = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let multi = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
    (
        app.reads_inline(),
        current.block_on(async { app.reads_inline() }),
        multi.block_on(async { app.reads_inline() }),
    )
}

#[test]
fn reads_of_a_store_that_leaves_the_workers_to_wait_run_inline_on_a_multi_threaded_runtime() {
    assert_eq!(inline_where(&app(true)), (false, false, true));
}

#[test]
fn reads_of_a_store_across_a_network_that_waits_where_it_is_called_never_run_inline() {
    assert_eq!(inline_where(&app(false)), (false, false, false));
}
