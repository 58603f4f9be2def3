//! Runs the store conformance suite against the in-memory store.

use coffer_store::{MemoryStore, Store};

coffer_store::conformance_tests!(Box::new(MemoryStore::new()) as Box<dyn Store>);

#[test]
fn run_all_passes_on_the_memory_store() {
    coffer_store::conformance::run_all(&|| Box::new(MemoryStore::new()));
}
