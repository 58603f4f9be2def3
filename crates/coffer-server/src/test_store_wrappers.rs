//! What the tests' stores that wrap a `MemoryStore` (in a field named `inner`) pass on to
//! it unchanged, written once: each wrapper then says only what it does differently.

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
