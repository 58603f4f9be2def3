//! `RecordedStore` forwards every `Store` method, those with a default too: a forgotten
//! one would silently run the trait's default instead of the server's store (a
//! PostgreSQL write's handoff dropped, a lease always granted, `/ready` never told).

use super::RecordedStore;
use crate::{App, Config, KeyRing};
use coffer_core::Partition;
use coffer_crypto::MasterKey;
use coffer_store::{Handoff, Latency, MemoryStore, SnapshotItem, Store, StoreResult, WriteTxn};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A memory store that notes each call of a method the trait gives a default, and
/// answers each as no default would.
#[derive(Default)]
struct Noting {
    inner: MemoryStore,
    seen: Mutex<Vec<String>>,
}

impl Noting {
    fn note(&self, what: impl Into<String>) {
        self.seen.lock().unwrap().push(what.into());
    }
}

impl Store for Noting {
    fn latency(&self) -> Latency {
        Latency::Network
    }

    crate::test_store_wrappers::pass_reads_and_snapshots_to_inner!();

    fn read_scope(&self, f: &mut dyn FnMut()) -> Handoff {
        f();
        self.note("read_scope");
        Handoff::new(5u64)
    }

    crate::test_store_wrappers::pass_writes_to_inner!();

    fn write_after(
        &self,
        handoff: Handoff,
        f: &mut (dyn FnMut(&mut dyn WriteTxn) -> StoreResult<()> + Send),
    ) -> StoreResult<()> {
        self.note(format!("write_after {:?}", handoff.open::<u64>()));
        self.inner.write(f)
    }

    fn write_trail(
        &self,
        f: &mut (dyn FnMut(&mut dyn WriteTxn) -> StoreResult<()> + Send),
    ) -> StoreResult<()> {
        self.note("write_trail");
        self.inner.write_trail(f)
    }

    fn describe(&self) -> String {
        "noting".into()
    }

    fn refusing_writes(&self) -> Option<String> {
        Some("noted".into())
    }

    fn import(&self, items: &[SnapshotItem]) -> StoreResult<()> {
        self.note("import");
        self.inner.import(items)
    }

    fn try_acquire_lease(&self, name: &str, holder: &str, _ttl: Duration) -> StoreResult<bool> {
        self.note(format!("try_acquire_lease {name} {holder}"));
        Ok(false)
    }

    fn scrub_deleted(&self) -> StoreResult<()> {
        self.note("scrub_deleted");
        Ok(())
    }

    fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()> {
        self.note(format!("release_lease {name} {holder}"));
        Ok(())
    }
}

#[test]
fn every_store_method_reaches_the_servers_store() {
    let store = Arc::new(Noting::default());
    let keys = KeyRing::open(MasterKey::generate(), store.as_ref()).unwrap();
    let app = App::new(store.clone(), keys, Config::default());
    store.seen.lock().unwrap().clear();
    let recorded = RecordedStore::new(app, None, Partition::Aws);
    let put = |tx: &mut dyn WriteTxn| tx.put_record("test", "k", b"v");

    assert_eq!(recorded.read_scope(&mut || {}).open::<u64>(), Some(5));
    recorded.write_after(Handoff::new(7u64), &mut |tx| put(tx)).unwrap();
    recorded.write_trail(&mut |tx| tx.put_record("audit.event", "k", b"v")).unwrap();
    assert_eq!(recorded.refusing_writes().as_deref(), Some("noted"));
    recorded.import(&[]).unwrap_err();
    assert!(!recorded.try_acquire_lease("lease", "node", Duration::from_secs(1)).unwrap());
    recorded.scrub_deleted().unwrap();
    recorded.release_lease("lease", "node").unwrap();
    assert_eq!(
        *store.seen.lock().unwrap(),
        [
            "read_scope",
            "write_after Some(7)",
            "write_trail",
            "import",
            "try_acquire_lease lease node",
            "scrub_deleted",
            "release_lease lease node",
        ]
    );
}
