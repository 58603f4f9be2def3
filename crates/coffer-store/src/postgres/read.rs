//! Reads: the one read transaction a read scope shares, begun by its first statement
//! (with `BEGIN` in the same flight), and how a read transaction ends.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::pin;
use std::task::Poll;

use deadpool_postgres::{Object, Transaction};
use tokio_postgres::Row;

use super::PostgresStore;
use super::txn::{Failure, Params, PgTxn};
use crate::{ReadTxn, StoreError, StoreResult};

/// How a lazily begun read begins: one snapshot for all its statements, no locks.
const BEGIN_READ: &str = "START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY";

/// A read-only transaction that takes a pooled connection and begins only when its
/// first statement is sent, with `BEGIN` sent in the same flight as that statement
/// (tokio-postgres sends requests in the order they are first polled and reads the
/// answers in that order). A read served wholly from the node's cache (`shared_cache`)
/// thus costs no round trip and holds no connection; one that is not saves the round
/// trip `BEGIN` took on its own.
pub(super) struct LazyRead<'s> {
    store: &'s PostgresStore,
    client: RefCell<Option<Object>>,
    /// `BEGIN` was sent on `client`: a `ROLLBACK` is owed when the read ends.
    begun: Cell<bool>,
}

/// Why a lazily begun read's statement failed.
pub(super) enum LazyError {
    Postgres(tokio_postgres::Error),
    Store(StoreError),
}

impl<'s> LazyRead<'s> {
    pub(super) fn new(store: &'s PostgresStore) -> Self {
        LazyRead { store, client: RefCell::new(None), begun: Cell::new(false) }
    }

    /// Runs one statement, beginning the transaction with it if it is the first. A
    /// connection found closed by that first flight (the server restarted while it sat
    /// in the pool) is replaced once: nothing had run on it.
    pub(super) fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, LazyError> {
        let rt = self.store.rt();
        let mut retried = false;
        loop {
            if self.client.borrow().is_none() {
                let client = self.store.checkout().map_err(LazyError::Store)?;
                *self.client.borrow_mut() = Some(client);
            }
            let first = !self.begun.get();
            let guard = self.client.borrow();
            let client = guard.as_ref().expect("checked out above");
            let result = super::off_the_workers(|| {
                rt.block_on(async {
                    let statement = async {
                        let prepared = client.prepare_cached(sql).await?;
                        client.query(&prepared, params).await
                    };
                    if !first {
                        return statement.await;
                    }
                    self.begun.set(true);
                    let (begun, rows) = join(client.batch_execute(BEGIN_READ), statement).await;
                    begun?;
                    rows
                })
            });
            drop(guard);
            match result {
                Err(e) if first && e.is_closed() && !retried => {
                    tracing::warn!("a pooled PostgreSQL connection was closed; reconnecting");
                    retried = true;
                    self.begun.set(false);
                    // Dropped, not returned: the pool's recycling discards a closed one.
                    self.client.borrow_mut().take();
                }
                result => return result.map_err(LazyError::Postgres),
            }
        }
    }
}

impl Drop for LazyRead<'_> {
    /// Ends the read without waiting, as `end_read` does, if it ever began.
    fn drop(&mut self) {
        if let Some(client) = self.client.get_mut().take()
            && self.begun.get()
        {
            // What tokio-postgres's `Transaction` does when dropped: the ROLLBACK is
            // queued on the connection, and its next user's statements queue behind it.
            client.__private_api_rollback(None);
        }
    }
}

/// Polls `a` then `b` (so `a`'s request is sent first) until both are done.
async fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let (mut a, mut b) = (pin!(a), pin!(b));
    let (mut a_out, mut b_out) = (None, None);
    std::future::poll_fn(|cx| {
        if a_out.is_none()
            && let Poll::Ready(out) = a.as_mut().poll(cx)
        {
            a_out = Some(out);
        }
        if b_out.is_none()
            && let Poll::Ready(out) = b.as_mut().poll(cx)
        {
            b_out = Some(out);
        }
        if a_out.is_some() && b_out.is_some() { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
    (a_out.expect("done"), b_out.expect("done"))
}

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

/// Sets this thread's shared read aside until dropped, also by a panic, then has it back:
/// the writer with the turn runs other callers' write closures on its own thread, and a
/// closure reading through `Store::read` there would read through the leader's call's
/// scope (another call's transaction and snapshot). With it aside, such a read is a read
/// of its own (review 18, left).
pub(super) struct SharedReadSetAside(Option<(*const PostgresStore, *const ())>);

impl SharedReadSetAside {
    pub(super) fn new() -> Self {
        SharedReadSetAside(SHARED_READ.with(Cell::take))
    }
}

impl Drop for SharedReadSetAside {
    fn drop(&mut self) {
        SHARED_READ.with(|shared| shared.set(self.0));
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
