//! Reads: the one read transaction a read scope shares, and how a read transaction ends.

use std::cell::Cell;

use deadpool_postgres::Transaction;

use super::PostgresStore;
use super::txn::{Failure, PgTxn};
use crate::{ReadTxn, StoreError, StoreResult};

thread_local! {
    /// The read transaction a [`Store::read_scope`] holds open on this thread: the store
    /// it belongs to and its `PgTxn`, type-erased (see `PostgresStore::shared_read`).
    pub(super) static SHARED_READ: Cell<Option<(*const PostgresStore, *const ())>> =
        const { Cell::new(None) };
}

/// Clears [`SHARED_READ`] when the scope ends, also by a panic.
pub(super) struct SharedReadGuard;

impl Drop for SharedReadGuard {
    fn drop(&mut self) {
        SHARED_READ.with(|shared| shared.set(None));
    }
}

impl PostgresStore {
    /// Runs `f` over this thread's shared read transaction on this store, if one is
    /// open and no statement has failed in it (PostgreSQL ignores every later statement
    /// of a transaction once one fails, so the caller then reads on its own).
    pub(super) fn read_shared(
        &self,
        f: &mut dyn FnMut(&dyn ReadTxn) -> StoreResult<()>,
    ) -> Option<StoreResult<()>> {
        let (store, txn) = SHARED_READ.with(Cell::get)?;
        if !std::ptr::eq(store, self) {
            return None;
        }
        // SAFETY: set by `read_scope` on this thread from a `PgTxn` that lives, with
        // the transaction it borrows, for as long as the pointer is set (its guard
        // clears it first), and only used on this thread.
        let txn = unsafe { &*(txn as *const PgTxn<'_, '_>) };
        if txn.failure.get() != Failure::None {
            return None;
        }
        let result = f(txn);
        Some(match (result, txn.failure.get()) {
            (Err(e), _) => Err(e),
            (Ok(()), Failure::None) => Ok(()),
            (Ok(()), _) => Err(StoreError::Backend(
                "a statement failed inside the read transaction".to_owned(),
            )),
        })
    }
}

/// Ends a read transaction without waiting for it to end: dropping it queues a ROLLBACK
/// on its connection, sent without awaiting the answer (tokio-postgres's `Drop`), and the
/// statements of the connection's next user queue behind it, in order. The read wrote
/// nothing, so nothing needs to wait for the rollback, and each read saves a round trip.
/// A connection that broke meanwhile is found at its next `BEGIN` and replaced.
pub(super) fn end_read(tx: Transaction<'_>) {
    drop(tx);
}
