//! Reads: the one read transaction a read scope shares, and how a read transaction ends.

use std::cell::Cell;

use deadpool_postgres::Transaction;

use super::txn::{Failure, PgTxn};
use super::{PostgresStore, describe_error};
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

/// Ends a read transaction. It wrote nothing, so a rollback loses nothing,
/// and a failure to end it only costs the connection, which the pool drops.
pub(super) fn end_read(rt: &tokio::runtime::Runtime, tx: Transaction<'_>) {
    if let Err(e) = rt.block_on(tx.rollback()) {
        tracing::debug!(error = %describe_error(&e), "could not end a PostgreSQL read transaction");
    }
}
