//! A write transaction's statements sent without waiting for their answers, and the
//! records it has read or written, remembered for the rest of it.
//!
//! On PostgreSQL a write's CPU is mostly round trips (each wakes the caller, the store's
//! runtime thread and a backend, on both ends of a socket), not the statements. Many of
//! a write's statements need no answer before the next one is sent: the buffered upsert
//! of its records, the updates of a secret's row and of its versions' labels, a careful
//! attempt's `SAVEPOINT` and `RELEASE` around each member. Those are *deferred*: queued
//! in order, and sent in the same round trip as the next statement whose answer the
//! write does need (or before the transaction commits), ahead of it on the same
//! connection, so PostgreSQL runs everything in exactly the order the write made it.
//!
//! Their answers are still checked, in order, before the answer of the statement they
//! travelled with is used: an error (or an update that changed no row) fails the write
//! as it would have failed at once. One thing changes: a group-commit member is judged
//! (released, its answer decided) before its last deferred statements have come back;
//! they travel with the next member's first statement, or with the final sync before
//! `COMMIT`. If one of them then fails, the whole attempt is rolled back and run again
//! *carefully* (each member's statements all answered before it is judged, as before
//! this module), so a member is never answered on a failure it did not see; a
//! serialization failure among them reruns the attempt as any conflict does. `COMMIT`
//! itself is only sent once every deferred statement has answered without a fault, so a
//! deferred statement that failed without aborting the transaction (an update of no
//! row) is never committed.
//!
//! The record memo: within one transaction a record reads the same until the
//! transaction writes it (one snapshot), so a record read or written once is answered
//! from memory for the rest of the transaction: the audit chain head and the KMS key
//! record, read by every member of a group, are read from the database once per group.
//! What a member read or wrote is kept apart until the member is judged, and dropped if
//! it failed, since its writes are then undone (rolled back to its savepoint, dropped
//! unsent, or the attempt run again: see `writer::batch_attempt`).

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use deadpool_postgres::Transaction;
use tokio_postgres::Error;
use tokio_postgres::types::ToSql;

use super::known::{GUARD_FAILED, GUARD_SQL};
use super::txn::{Failure, PgTxn, STATEMENTS};
use super::writer::is_retryable;
use super::{describe_error, get};
use crate::{StoreError, StoreResult};

thread_local! {
    /// Deferred statements this thread sent, each its own message and answer (for tests
    /// that count what a group sends).
    static DEFERRED_SENT: Cell<u64> = const { Cell::new(0) };
}

/// How many deferred statements this thread has sent.
#[cfg(test)]
pub(super) fn deferred_sent_on_this_thread() -> u64 {
    DEFERRED_SENT.with(Cell::get)
}

/// An owned statement parameter.
pub(super) type Param = Box<dyn ToSql + Sync + Send>;

/// What a deferred statement must have done for the write to go on.
#[derive(Debug, Clone, Copy)]
pub(super) enum Expect {
    /// Anything but an error.
    Done,
    /// Changed at least one row; otherwise the write fails with this message (as a
    /// statement run at once would have reported it).
    Changed(&'static str),
    /// Inserted its row (`ON CONFLICT DO NOTHING`); otherwise the row's key was taken, a
    /// conflict the closure may recover from, which it can only do if told at once: the
    /// attempt is run again carefully, where such an insert is not deferred.
    Inserted(&'static str),
    /// A guard (`handoff`): found its row, else what the write was handed is stale and the
    /// attempt is run again carefully, where nothing handed is used (the message is
    /// never shown).
    Current(&'static str),
    /// A guard that raises an error when it does not hold (`known`): it only has to
    /// succeed, so it may travel with `COMMIT`; if it fails, what the write was given is
    /// stale and the attempt is run again carefully (the message is never shown).
    Holds(&'static str),
}

/// A statement sent with the next one that needs an answer.
struct Deferred {
    sql: Cow<'static, str>,
    /// `None`: sent as a simple query (`SAVEPOINT` and the like, without parameters).
    params: Option<Vec<Param>>,
    expect: Expect,
    /// The group-commit member that made it (see [`WriteBatch::begin_member`]).
    member: u32,
}

/// What went wrong among deferred statements, the first fault in order (any later one
/// follows from it: PostgreSQL refuses every statement of a transaction after an error).
pub(super) struct Fault {
    /// The attempt must be run again (see [`Rerun`]): the member that made the failed
    /// statement was judged already, or the statement was an insert whose conflict its
    /// closure was not told of in time.
    pub(super) rerun: bool,
    pub(super) kind: FaultKind,
}

pub(super) enum FaultKind {
    /// PostgreSQL's error.
    Error(Error),
    /// The statement ran but changed no row; the message says what was missing.
    Unchanged(&'static str),
    /// The insert found its key taken; the message says which.
    NotInserted(&'static str),
}

impl Fault {
    /// What went wrong, without the detail of PostgreSQL's error (it can quote values).
    pub(super) fn describe(&self) -> String {
        match &self.kind {
            FaultKind::Error(e) => describe_error(e),
            FaultKind::Unchanged(missing) | FaultKind::NotInserted(missing) => {
                (*missing).to_owned()
            }
        }
    }

    /// An error the server sent: the transaction it happened in is aborted, and can no
    /// longer commit.
    pub(super) fn is_server_error(&self) -> bool {
        matches!(&self.kind, FaultKind::Error(e) if e.as_db_error().is_some())
    }

    /// A serialization failure or deadlock: the attempt succeeds when run again as it is.
    pub(super) fn retryable(&self) -> bool {
        matches!(&self.kind, FaultKind::Error(e) if is_retryable(e))
    }
}

/// The state one write transaction's members share: the deferred statements and the
/// record memo. One per attempt: a rerun starts from nothing.
#[derive(Default)]
pub(super) struct WriteBatch {
    deferred: RefCell<Vec<Deferred>>,
    memo: RefCell<Memo>,
    /// The member running now (numbered from 1; 0 before the first).
    member: Cell<u32>,
    /// Every member up to this one has been judged.
    judged: Cell<u32>,
    /// A judged member's deferred statement failed: the attempt is to be run again,
    /// carefully unless the failure was a serialization failure.
    rerun: Cell<Option<Rerun>>,
    /// Each member's deferred statements are answered before it is judged.
    pub(super) careful: bool,
    /// A member rolled back to its savepoint left statements deferred: an error among them
    /// is undone by the `ROLLBACK TO SAVEPOINT`, so a `COMMIT` sent behind them would
    /// commit the others, and they must be answered before it is sent.
    undone: Cell<bool>,
    /// The current member has sent a statement that may change a row ([`changes_rows`]):
    /// in a first attempt, which has no savepoints, its failure then reruns the attempt
    /// carefully (see `writer::batch_attempt`).
    member_sent_changes: Cell<bool>,
    /// In a group commit, the records written without being remembered (`Memo`), which
    /// the node's memory of records must forget once the group commits (`known`).
    unremembered: RefCell<Option<std::collections::HashSet<String>>>,
}

/// How an attempt whose judged member's statement failed is run again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rerun {
    /// As it was: a serialization failure, which a rerun resolves.
    AsBefore,
    /// One member's statements at a time, so the failure reaches the member it belongs to.
    Carefully,
}

impl WriteBatch {
    pub(super) fn new(careful: bool) -> WriteBatch {
        WriteBatch { careful, ..WriteBatch::default() }
    }

    /// A group commit's batch: what it writes is learnt or forgotten by the node (`known`).
    pub(super) fn of_group(careful: bool) -> WriteBatch {
        WriteBatch {
            unremembered: RefCell::new(Some(Default::default())),
            ..WriteBatch::new(careful)
        }
    }

    /// Starts the next member: its statements, reads and writes are its own from here.
    pub(super) fn begin_member(&self) {
        self.member.set(self.member.get() + 1);
        self.member_sent_changes.set(false);
        self.memo.borrow_mut().member.clear();
    }

    /// The current member is judged: its records become the transaction's if `kept`
    /// (released), and are forgotten otherwise (rolled back to its savepoint in a careful
    /// attempt; in a first attempt it has sent nothing that changes a row, and what it
    /// left deferred is dropped, see [`WriteBatch::forget_member_changes`]).
    pub(super) fn judge_member(&self, kept: bool) {
        self.judged.set(self.member.get());
        if !kept
            && self.careful
            && self.deferred.borrow().iter().any(|item| item.member == self.member.get())
        {
            self.undone.set(true);
        }
        let mut memo = self.memo.borrow_mut();
        let member = std::mem::take(&mut memo.member);
        if kept {
            memo.transaction.extend(member);
        }
    }

    /// Whether the attempt must be run again (see [`Rerun`]).
    pub(super) fn rerun(&self) -> Option<Rerun> {
        self.rerun.get()
    }

    /// The attempt is to be run again carefully: a member of a first attempt failed after
    /// sending a statement that may have changed a row, which only rolling the whole
    /// transaction back undoes (it has no savepoint).
    pub(super) fn rerun_carefully(&self) {
        self.rerun.set(Some(Rerun::Carefully));
    }

    /// Whether the current member has sent a statement that may change a row (or is
    /// about to: noted before it leaves).
    pub(super) fn member_sent_changes(&self) -> bool {
        self.member_sent_changes.get()
    }

    /// Notes that the current member sends `sql` now, if it may change a row.
    pub(super) fn sending(&self, sql: &str) {
        if changes_rows(sql) {
            self.member_sent_changes.set(true);
        }
    }

    /// Drops the statements the current member (failed, in a first attempt, having sent
    /// nothing that changes a row) left deferred, but its guards: what it was given is
    /// still checked, so that a failure decided on a stale value reruns the attempt as a
    /// success would (a guard reads; it changes nothing). Nothing of the member is then
    /// left in the transaction but its reads.
    pub(super) fn forget_member_changes(&self) {
        let member = self.member.get();
        self.deferred.borrow_mut().retain(|item| item.member != member || !changes_rows(&item.sql));
    }

    /// Queues `sql` (with `params`; `None` for a simple query) for the next round trip.
    pub(super) fn defer(
        &self,
        sql: impl Into<Cow<'static, str>>,
        params: Option<Vec<Param>>,
        expect: Expect,
    ) {
        let member = self.member.get();
        let mut deferred = self.deferred.borrow_mut();
        // Simple queries in a row (a member's `RELEASE SAVEPOINT`, the next one's
        // `SAVEPOINT`) go as one: one message, one answer. PostgreSQL runs them in order
        // and skips the rest after an error, as it refuses every statement after one. The
        // first statement's member owns the merged one, so an error in it is a judged
        // member's (the attempt is run again).
        if let (None, Some(last)) = (&params, deferred.last_mut())
            && last.params.is_none()
            && matches!((last.expect, expect), (Expect::Done, Expect::Done))
        {
            last.sql = format!("{}; {}", last.sql, sql.into()).into();
            return;
        }
        deferred.push(Deferred { sql: sql.into(), params, expect, member });
    }

    pub(super) fn has_deferred(&self) -> bool {
        !self.deferred.borrow().is_empty()
    }

    /// Sends every deferred statement and then `call`, in order, in one round trip, and
    /// returns the first fault among the deferred statements (noting a rerun if it was a
    /// judged member's) and `call`'s own answer.
    pub(super) fn send_with<T>(
        &self,
        rt: &tokio::runtime::Runtime,
        tx: &Transaction<'_>,
        call: impl Future<Output = Result<T, Error>>,
    ) -> (Option<Fault>, Result<T, Error>) {
        let items = std::mem::take(&mut *self.deferred.borrow_mut());
        DEFERRED_SENT.with(|n| n.set(n.get() + items.len() as u64));
        let member = self.member.get();
        if items.iter().any(|item| item.member == member && changes_rows(&item.sql)) {
            self.member_sent_changes.set(true);
        }
        let (answers, answer) = rt.block_on(send_in_order(tx, &items, call));
        (self.first_fault(&items, answers), answer)
    }

    /// The first fault among the answers to `items` (noting a rerun if it was a judged
    /// member's), as [`WriteBatch::send_with`] reports it.
    fn first_fault(&self, items: &[Deferred], answers: Vec<Result<u64, Error>>) -> Option<Fault> {
        let mut fault = None;
        for (item, answered) in items.iter().zip(answers) {
            let kind = match (answered, item.expect) {
                (Err(e), _) => FaultKind::Error(e),
                (
                    Ok(0),
                    Expect::Changed(missing) | Expect::Current(missing) | Expect::Holds(missing),
                ) => FaultKind::Unchanged(missing),
                (Ok(0), Expect::Inserted(taken)) => FaultKind::NotInserted(taken),
                (Ok(_), _) => continue,
            };
            let judged = item.member <= self.judged.get();
            // Its member must not be told (nor judged on) it: the attempt is run again.
            let rerun_anyway =
                matches!(item.expect, Expect::Inserted(_) | Expect::Current(_) | Expect::Holds(_));
            // A careful batch's caller handles its judged members' faults itself, and
            // defers no insert and no guard.
            let found = Fault { rerun: (judged || rerun_anyway) && !self.careful, kind };
            if found.rerun {
                let rerun = if found.retryable() { Rerun::AsBefore } else { Rerun::Carefully };
                self.rerun.set(Some(rerun));
            }
            fault = Some(found);
            break;
        }
        fault
    }

    /// Sends every deferred statement and waits for their answers: the first fault, if any.
    pub(super) fn sync(&self, rt: &tokio::runtime::Runtime, tx: &Transaction<'_>) -> Option<Fault> {
        if !self.has_deferred() {
            return None;
        }
        STATEMENTS.with(|n| n.set(n.get() + 1));
        self.send_with(rt, tx, async { Ok(()) }).0
    }

    /// Whether every deferred statement only has to succeed (none is judged on the rows it
    /// changed): then PostgreSQL itself refuses a `COMMIT` sent behind one that failed,
    /// and the two can travel together ([`WriteBatch::commit_with_deferred`]). Not when a
    /// member rolled back to its savepoint left some: its `ROLLBACK TO` would undo their
    /// error, and the `COMMIT` behind it commit the others on an attempt about to rerun.
    pub(super) fn expects_only_success(&self) -> bool {
        !self.undone.get()
            && self
                .deferred
                .borrow()
                .iter()
                .all(|item| matches!(item.expect, Expect::Done | Expect::Holds(_)))
    }

    /// What the transaction's kept members read or wrote of records (`None`: absent or
    /// deleted), by memo id: learnt by the node once the transaction committed (`known`).
    /// Records written without being remembered come as `None` (to be forgotten), unless
    /// a later read remembered them.
    pub(super) fn records_kept(&self) -> Vec<(String, Option<Vec<u8>>)> {
        let memo = self.memo.borrow();
        let mut kept: Vec<_> =
            memo.transaction.iter().map(|(id, value)| (id.clone(), value.clone())).collect();
        if let Some(unremembered) = self.unremembered.borrow().as_ref() {
            let forgotten = unremembered.iter().filter(|id| !memo.transaction.contains_key(*id));
            kept.extend(forgotten.map(|id| (id.clone(), None)));
        }
        kept
    }

    /// Sends every deferred statement and then `COMMIT`, in one round trip, ending `tx`:
    /// the first fault among the deferred statements (as [`WriteBatch::sync`] reports it)
    /// and the answer to `COMMIT`, `None` when it was not sent.
    ///
    /// Only for statements that [`WriteBatch::expects_only_success`]: their one way to fail
    /// is an error, after which PostgreSQL ends the transaction with a rollback whatever
    /// follows (a `COMMIT` in an aborted transaction rolls it back). So with a fault,
    /// nothing was committed when the `COMMIT`'s answer arrived; without one, exactly what
    /// a sync then a `COMMIT` would have committed is. A statement refused before it left
    /// (a parameter that cannot be encoded, a closed connection) holds the `COMMIT` back.
    pub(super) fn commit_with_deferred(
        &self,
        rt: &tokio::runtime::Runtime,
        tx: Transaction<'_>,
    ) -> (Option<Fault>, Option<Result<(), Error>>) {
        debug_assert!(self.expects_only_success());
        STATEMENTS.with(|n| n.set(n.get() + 1));
        let items = std::mem::take(&mut *self.deferred.borrow_mut());
        DEFERRED_SENT.with(|n| n.set(n.get() + items.len() as u64));
        let (answers, committed) = rt.block_on(send_then_commit(&tx, &items));
        let fault = self.first_fault(&items, answers);
        if committed.is_some() {
            // `COMMIT` (or the rollback it became) ended the transaction on the server.
            ended(tx);
        }
        (fault, committed)
    }

    /// The record (`kind`, `key`) as this transaction last read or wrote it, if it did:
    /// `Some(None)` when it is known not to exist.
    pub(super) fn remembered(&self, kind: &str, key: &str) -> Option<Option<Vec<u8>>> {
        let memo = self.memo.borrow();
        let id = record_id(kind, key);
        memo.member.get(&id).or_else(|| memo.transaction.get(&id)).cloned()
    }

    /// Notes a record read from the database by the current member.
    pub(super) fn read(&self, kind: &str, key: &str, value: Option<&[u8]>) {
        self.memo.borrow_mut().member.insert(record_id(kind, key), value.map(<[u8]>::to_vec));
    }

    /// Notes a record the current member put (`Some`) or deleted (`None`). Only records
    /// already remembered are kept: one never read is read from the database if asked
    /// for, after the write was sent, so a transaction that writes many records and reads
    /// none (an import) holds none of them in memory.
    pub(super) fn wrote(&self, kind: &str, key: &str, value: Option<&[u8]>) {
        let mut memo = self.memo.borrow_mut();
        let id = record_id(kind, key);
        if memo.member.contains_key(&id) || memo.transaction.contains_key(&id) {
            memo.member.insert(id, value.map(<[u8]>::to_vec));
        } else if let Some(unremembered) = self.unremembered.borrow_mut().as_mut() {
            unremembered.insert(id);
        }
    }
}

/// Records by (kind, key): what the transaction's judged and kept members left, and what
/// the current member read or wrote.
#[derive(Default)]
struct Memo {
    transaction: HashMap<String, Option<Vec<u8>>>,
    member: HashMap<String, Option<Vec<u8>>>,
}

/// Whether `sql`, one of the store's own statements, may change a row: every statement
/// but a `SELECT` (the store's `SELECT`s read, guards included; its writes begin with
/// `INSERT`, `UPDATE`, `DELETE` or `WITH`, and `SAVEPOINT` and the like count too).
pub(super) fn changes_rows(sql: &str) -> bool {
    !sql.trim_start().starts_with("SELECT ")
}

pub(super) fn record_id(kind: &str, key: &str) -> String {
    // A kind never holds a NUL (they are the store's own names).
    format!("{kind}\0{key}")
}

type Answer<'a> = Pin<Box<dyn Future<Output = Result<u64, Error>> + 'a>>;

/// Sends `items`, then `call`, without waiting in between, and waits for every answer.
///
/// tokio-postgres puts a request on the connection when its future is first polled,
/// and each statement is its own Bind/Execute/Sync (or simple query), so polling the
/// futures in order pipelines them in that order, and an error in one fails only those
/// after it (PostgreSQL refuses them: the transaction is aborted). The statements are
/// prepared first (from the connection's cache; a statement not yet prepared on it costs
/// one round trip, once), so no `Parse` lands between them.
async fn send_in_order<T>(
    tx: &Transaction<'_>,
    items: &[Deferred],
    call: impl Future<Output = Result<T, Error>>,
) -> (Vec<Result<u64, Error>>, Result<T, Error>) {
    let mut sends = sends_of(tx, items).await;
    let mut answers: Vec<Option<Result<u64, Error>>> = (0..sends.len()).map(|_| None).collect();
    let mut call = std::pin::pin!(call);
    let mut answer = None;
    let mut sent = false;
    std::future::poll_fn(|cx| {
        let mut waiting = poll_each(&mut sends, &mut answers, &mut sent, cx);
        if answer.is_none() {
            match call.as_mut().poll(cx) {
                Poll::Ready(result) => answer = Some(result),
                Poll::Pending => waiting = true,
            }
        }
        if waiting { Poll::Pending } else { Poll::Ready(()) }
    })
    .await;
    let answers = answers.into_iter().map(|a| a.expect("every answer arrived")).collect();
    (answers, answer.expect("the answer arrived"))
}

/// Sends `items`, then `COMMIT` if every one of them left (none was refused before it was
/// sent: a request leaves when its future is first polled, and one refused before that
/// is answered at once), without waiting in between, and waits for every answer.
async fn send_then_commit(
    tx: &Transaction<'_>,
    items: &[Deferred],
) -> (Vec<Result<u64, Error>>, Option<Result<(), Error>>) {
    let mut sends = sends_of(tx, items).await;
    let mut answers: Vec<Option<Result<u64, Error>>> = (0..sends.len()).map(|_| None).collect();
    let mut commit: Option<Answer<'_>> = None;
    let mut committed = None;
    let mut sent = false;
    std::future::poll_fn(|cx| {
        let mut waiting = poll_each(&mut sends, &mut answers, &mut sent, cx);
        // Only on the first poll, when every item was just sent or refused.
        if commit.is_none() && committed.is_none() {
            let refused = answers.iter().any(|a| matches!(a, Some(Err(_))));
            if refused {
                return if waiting { Poll::Pending } else { Poll::Ready(()) };
            }
            commit = Some(Box::pin(async { tx.batch_execute("COMMIT").await.map(|()| 0) }));
        }
        if let Some(sent) = commit.as_mut() {
            match sent.as_mut().poll(cx) {
                Poll::Ready(result) => {
                    committed = Some(result.map(drop));
                    commit = None;
                }
                Poll::Pending => waiting = true,
            }
        }
        if waiting { Poll::Pending } else { Poll::Ready(()) }
    })
    .await;
    let answers = answers.into_iter().map(|a| a.expect("every answer arrived")).collect();
    (answers, committed)
}

/// Polls the sends not yet answered, noting answers: whether one is still waiting.
///
/// The first time (`sent` false), every send is polled, which puts each request on the
/// connection, in order. After that, answers arrive in the order the requests left (one
/// connection), so polling stops at the first send still waiting: the ones behind it
/// cannot have been answered before it, and each wakes the caller when it is. Polling
/// them all on every wake-up (one per answer, as PostgreSQL sends each with its own
/// flush) cost a flight of N statements N²/2 polls: ~45,000 for a group of 300.
fn poll_each(
    sends: &mut [Answer<'_>],
    answers: &mut [Option<Result<u64, Error>>],
    sent: &mut bool,
    cx: &mut std::task::Context<'_>,
) -> bool {
    let first = !std::mem::replace(sent, true);
    let mut waiting = false;
    for (send, slot) in sends.iter_mut().zip(answers.iter_mut()) {
        if slot.is_none() {
            match send.as_mut().poll(cx) {
                Poll::Ready(result) => *slot = Some(result),
                Poll::Pending if first => waiting = true,
                Poll::Pending => return true,
            }
        }
    }
    waiting
}

/// The futures that send `items`, each prepared first (from the connection's cache; a
/// statement not yet prepared on it costs one round trip, once), so no `Parse` lands
/// between them.
async fn sends_of<'a>(tx: &'a Transaction<'_>, items: &'a [Deferred]) -> Vec<Answer<'a>> {
    let mut prepared = Vec::with_capacity(items.len());
    for item in items {
        prepared.push(match &item.params {
            Some(_) => Some(tx.prepare_cached(&item.sql).await),
            None => None,
        });
    }
    let mut sends: Vec<Answer<'_>> = Vec::with_capacity(items.len());
    for (item, statement) in items.iter().zip(prepared) {
        sends.push(match (statement, &item.params) {
            (Some(Ok(statement)), Some(params)) => Box::pin(async move {
                let params: Vec<&(dyn ToSql + Sync)> =
                    params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
                tx.execute(&statement, &params).await
            }),
            (Some(Err(e)), _) => Box::pin(std::future::ready(Err(e))),
            _ => Box::pin(async move { tx.batch_execute(&item.sql).await.map(|()| 0) }),
        });
    }
    sends
}

/// Disposes of a transaction that a `COMMIT` sent as a statement ended, without the
/// `ROLLBACK` its `Drop` would queue (which the server would answer with a warning in
/// its log: no transaction in progress).
fn ended(tx: Transaction<'_>) {
    let tx = std::mem::ManuallyDrop::new(tx);
    // SAFETY: the statement cache's handle is read out once and dropped here, and `tx` is
    // never used or dropped again; what else it holds (a borrow of the pooled client and,
    // for a transaction that is not a savepoint, no savepoint name) owns nothing.
    drop(unsafe { std::ptr::read(&tx.statement_cache) });
}

/// The upsert of a write's buffered records, all in one statement (`PgTxn::flush`).
pub(super) const UPSERT_RECORDS_SQL: &str = "INSERT INTO records (kind, key, value) \
     SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[]) \
     ON CONFLICT (kind, key) DO UPDATE SET value = EXCLUDED.value";

impl PgTxn<'_, '_> {
    /// `call`, sent after the deferred statements of `batch` in the same round trip.
    pub(super) fn run_pipelined<T>(
        &self,
        batch: &WriteBatch,
        call: impl Future<Output = Result<T, Error>>,
    ) -> StoreResult<T> {
        let (fault, answer) = batch.send_with(self.rt, self.tx(), call);
        match fault {
            Some(fault) => Err(self.faulted(fault)),
            None => answer.map_err(|e| self.failed(&e)),
        }
    }

    /// Sends what is deferred, and waits for it: the write then knows whether all of its
    /// statements succeeded.
    pub(super) fn settle(&self) -> StoreResult<()> {
        self.flush()?;
        match self.batch {
            Some(batch) if batch.has_deferred() => self.run(async { Ok(()) }),
            _ => Ok(()),
        }
    }

    /// Sends `sql` with the write's next round trip instead of now (see the module's
    /// documentation). Records put before it are sent before it.
    pub(super) fn defer(
        &self,
        sql: &'static str,
        params: Vec<Param>,
        expect: Expect,
    ) -> StoreResult<()> {
        self.flush()?;
        match self.batch {
            Some(batch) => {
                batch.defer(sql, Some(params), expect);
                Ok(())
            }
            None => {
                let params: Vec<&(dyn ToSql + Sync)> =
                    params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
                let changed = self.execute(sql, &params)?;
                match expect {
                    Expect::Changed(missing)
                    | Expect::Current(missing)
                    | Expect::Holds(missing)
                        if changed == 0 =>
                    {
                        Err(StoreError::Backend(missing.to_owned()))
                    }
                    Expect::Inserted(taken) if changed == 0 => {
                        Err(StoreError::Conflict(taken.to_owned()))
                    }
                    _ => Ok(()),
                }
            }
        }
    }

    /// What a fault among deferred statements means for the statement it travelled with.
    fn faulted(&self, fault: Fault) -> StoreError {
        if fault.rerun {
            // An earlier member's, or a deferred insert's: the attempt is rerun
            // (`WriteBatch::rerun`), and the closure stops as it does on a conflict.
            self.failure.set(Failure::Retry);
            return StoreError::Aborted;
        }
        match fault.kind {
            FaultKind::Error(e) => self.failed(&e),
            FaultKind::Unchanged(missing) => {
                // Not an error to PostgreSQL, but the write must not commit.
                if self.failure.get() == Failure::None {
                    self.failure.set(Failure::Fatal);
                }
                StoreError::Backend(missing.to_owned())
            }
            // Only in a careful attempt, which defers no insert; as one run at once.
            FaultKind::NotInserted(taken) => StoreError::Conflict(taken.to_owned()),
        }
    }

    /// A record in a write transaction: from the memo when this transaction read or
    /// wrote it already, else from the database (and remembered).
    pub(super) fn record_remembered(
        &self,
        batch: &WriteBatch,
        kind: &str,
        key: &str,
    ) -> StoreResult<Option<Vec<u8>>> {
        if let Some(known) = batch.remembered(kind, key) {
            return Ok(known);
        }
        if let Some(value) = self.known.and_then(|known| known.get(&record_id(kind, key))) {
            // Given at once; the guard, in its place, reads the row in this snapshot.
            let params: Vec<Param> =
                vec![Box::new(kind.to_owned()), Box::new(key.to_owned()), Box::new(value.clone())];
            self.defer(GUARD_SQL, params, Expect::Holds(GUARD_FAILED))?;
            batch.read(kind, key, Some(&value));
            return Ok(Some(value));
        }
        let row = self
            .query_opt("SELECT value FROM records WHERE kind = $1 AND key = $2", &[&kind, &key])?;
        let value: Option<Vec<u8>> = row.map(|row| get(&row, 0)).transpose()?;
        batch.read(kind, key, value.as_deref());
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    /// Nineteenth session: a flight's answers arrive one by one, in order, each waking the
    /// caller; each wake-up polled every send still waiting, so a flight of N statements
    /// cost about N²/2 polls (here 20,300 for 200). Now the first poll sends them all and
    /// each later one stops at the first send still waiting: a send is polled once to
    /// leave, once when answered, and at most once more while first in line, so at most 3N.
    #[test]
    fn a_flights_answers_cost_a_poll_or_two_each_not_one_per_statement_still_waiting() {
        let n = 200;
        let arrived = Rc::new(Cell::new(0usize));
        let polls = Rc::new(Cell::new(0usize));
        let mut sends: Vec<Answer<'_>> = (0..n)
            .map(|i| {
                let (arrived, polls) = (arrived.clone(), polls.clone());
                Box::pin(std::future::poll_fn(move |_| {
                    polls.set(polls.get() + 1);
                    if arrived.get() > i { Poll::Ready(Ok(1u64)) } else { Poll::Pending }
                })) as Answer<'_>
            })
            .collect();
        let mut answers: Vec<Option<Result<u64, Error>>> = (0..n).map(|_| None).collect();
        let mut sent = false;
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(poll_each(&mut sends, &mut answers, &mut sent, &mut cx), "nothing answered yet");
        for answer in 1..=n {
            arrived.set(answer);
            let waiting = poll_each(&mut sends, &mut answers, &mut sent, &mut cx);
            assert_eq!(waiting, answer < n);
        }
        assert!(answers.iter().all(|a| matches!(a, Some(Ok(1)))));
        assert!(polls.get() <= 3 * n, "{} polls for {n} statements", polls.get());
    }
}
