//! What the tests' stores that wrap a `MemoryStore` (in a field named `inner`) pass on to
//! it unchanged, written once: each wrapper then says only what it does differently. And
//! one such wrapper several modules' tests share: [`BusyWriter`].

use coffer_store::{Handoff, Latency, MemoryStore, OwnedWrite, Store, WriteDone, WriteEnded};
use std::sync::{Arc, Mutex, PoisonError, mpsc};

/// The `Store` methods a test's wrapper passes to its `inner` store as they are: `read`,
/// `export` and `import_from`.
macro_rules! pass_reads_and_snapshots_to_inner {
    () => {
        fn read(
            &self,
            f: &mut dyn FnMut(&dyn coffer_store::ReadTxn) -> coffer_store::StoreResult<()>,
        ) -> coffer_store::StoreResult<()> {
            self.inner.read(f)
        }

        fn export(
            &self,
            visit: &mut dyn FnMut(coffer_store::SnapshotItem) -> coffer_store::StoreResult<()>,
        ) -> coffer_store::StoreResult<()> {
            self.inner.export(visit)
        }

        fn import_from(
            &self,
            produce: &mut coffer_store::ImportProducer<'_>,
        ) -> coffer_store::StoreResult<()> {
            self.inner.import_from(produce)
        }
    };
}

/// `write`, passed to the `inner` store as it is, for a wrapper that changes nothing of it.
macro_rules! pass_writes_to_inner {
    () => {
        fn write(
            &self,
            f: &mut (
                     dyn FnMut(&mut dyn coffer_store::WriteTxn) -> coffer_store::StoreResult<()>
                         + Send
                 ),
        ) -> coffer_store::StoreResult<()> {
            self.inner.write(f)
        }
    };
}

pub(crate) use {pass_reads_and_snapshots_to_inner, pass_writes_to_inner};

/// A write submitted to a [`BusyWriter`], waiting for the test to run it.
pub(crate) type ParkedWrite = (OwnedWrite, WriteDone);

/// A store on a local disk whose writer is busy: a submitted write waits until the test
/// runs it, as one waits behind a long batch, a slow sync or a database another process
/// holds locked.
pub(crate) struct BusyWriter {
    inner: MemoryStore,
    parked: Mutex<mpsc::Sender<ParkedWrite>>,
}

impl Store for BusyWriter {
    fn latency(&self) -> Latency {
        Latency::LocalDisk
    }

    pass_reads_and_snapshots_to_inner!();

    pass_writes_to_inner!();

    fn submits_writes(&self) -> bool {
        true
    }

    fn submit_write(&self, handoff: Handoff, f: OwnedWrite, done: WriteDone) {
        drop(handoff);
        let parked = self.parked.lock().unwrap_or_else(PoisonError::into_inner);
        parked.send((f, done)).expect("the test takes every parked write");
    }

    fn describe(&self) -> String {
        "busy writer".to_owned()
    }
}

impl BusyWriter {
    /// A busy writer over an empty memory store, and the writes submitted to it.
    pub(crate) fn new() -> (Arc<BusyWriter>, mpsc::Receiver<ParkedWrite>) {
        let (parked, writes) = mpsc::channel();
        (Arc::new(BusyWriter { inner: MemoryStore::new(), parked: Mutex::new(parked) }), writes)
    }

    /// Runs a parked write as the store's writer would, and answers it.
    pub(crate) fn run(&self, (mut f, done): ParkedWrite) {
        let result = self.inner.write(&mut *f);
        drop(f);
        done(WriteEnded::Done(result));
    }
}
