//! Writes: SERIALIZABLE transactions, retried on conflict, and this node's group commit.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use deadpool_postgres::Transaction;
use tokio_postgres::IsolationLevel;
use tokio_postgres::error::SqlState;

use super::handoff::{self, Handed};
use super::pipelined::{Expect, Param, Rerun, WriteBatch};
use super::shared_cache::ANNOUNCE_SQL;
use super::txn::{Failure, PgTxn};
use super::{PostgresStore, describe_error};
use crate::lend::{Job, Member, WriteFn, lend_handing};
use crate::{Handoff, StoreError, StoreResult};

/// Conflicting writes are retried at most this often and this long before
/// the caller gets an error.
pub(super) const MAX_WRITE_ATTEMPTS: u32 = 100;
pub(super) const WRITE_RETRY_BUDGET: Duration = Duration::from_secs(30);

/// How one write attempt ended.
pub(super) enum Attempt {
    /// The closure succeeded; the transaction is to be committed.
    Committed,
    /// PostgreSQL aborted the transaction to keep transactions serializable; run it again.
    Conflicted,
    /// Done, with this result (nothing was committed).
    Finished(StoreResult<()>),
}

/// The most writes one PostgreSQL group commit carries (see `write_grouped`).
pub(super) const PG_BATCH_MAX: usize = 48;

/// How one attempt at a batch of lent writes ended.
pub(super) enum BatchAttempt {
    /// Committed or rolled back: how each member ended, in order.
    Done(Vec<Member>),
    /// PostgreSQL aborted the transaction to keep transactions serializable; run it again.
    Conflicted,
    /// A statement of a member already judged failed (see `pipelined`): run it again,
    /// one member's statements at a time.
    Carefully,
}

impl PostgresStore {
    /// Group commit: the write is queued, and whoever of this node's writers has the
    /// turn runs every queued write in one SERIALIZABLE transaction (a failing one leaves
    /// nothing: see `batch_attempt`), commits them with one round trip and one WAL flush,
    /// and answers each. A conflict with another node reruns the batch.
    /// `handoff`: what the call's read scope looked up, for the member to start from
    /// (guarded), if this store made it.
    pub(super) fn write_grouped(&self, handoff: Handoff, f: &mut WriteFn<'_>) -> StoreResult<()> {
        let handed = handoff::opened(self, handoff)
            .map(|handed| Box::new(handed) as Box<dyn std::any::Any + Send>);
        lend_handing(f, handed, |job, answer| {
            self.queue.lock().unwrap_or_else(PoisonError::into_inner).push(job);
            while !answer.ready() {
                // A poisoned lock only means a closure panicked; its work was rolled back.
                let _turn = self.writers.lock().unwrap_or_else(PoisonError::into_inner);
                if answer.ready() {
                    // Answered by the writer that had the turn before.
                    break;
                }
                let batch = {
                    let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                    // A bounded batch: past 64 subtransactions a PostgreSQL backend's
                    // cache of them overflows, which slows every snapshot in the cluster.
                    let taken = queue.len().min(PG_BATCH_MAX);
                    let rest = queue.split_off(taken);
                    std::mem::replace(&mut *queue, rest)
                };
                self.run_batch(batch);
            }
            Ok(())
        })
    }

    /// Runs `jobs` in one transaction, again while it conflicts, and answers each.
    pub(super) fn run_batch(&self, mut jobs: Vec<Job>) {
        if jobs.is_empty() {
            return;
        }
        // Other callers' closures run here: none may read through this thread's read
        // scope, if its call has one (`SharedReadSetAside`).
        let _scope_aside = super::read::SharedReadSetAside::new();
        let started = Instant::now();
        let mut attempt = 0u32;
        // What each member's caller handed along (`handoff`), kept for the reruns.
        let handed: Vec<Option<Box<dyn std::any::Any + Send>>> =
            jobs.iter_mut().map(Job::take_handed).collect();
        let handed: Vec<Option<&Handed>> =
            handed.iter().map(|h| h.as_ref().and_then(|h| h.downcast_ref())).collect();
        // Members are judged before their last statements answered (`pipelined`), until
        // a failure among those makes the batch run again one member at a time.
        let mut careful = false;
        loop {
            attempt += 1;
            let conflicted = match self.batch_attempt(&mut jobs, &handed, careful) {
                BatchAttempt::Done(members) => {
                    crate::observe::group_committed(jobs.len(), started.elapsed());
                    for (job, member) in jobs.into_iter().zip(members) {
                        job.answer(member);
                    }
                    return;
                }
                BatchAttempt::Conflicted => true,
                BatchAttempt::Carefully => false,
            };
            if attempt >= MAX_WRITE_ATTEMPTS || started.elapsed() >= WRITE_RETRY_BUDGET {
                let message = format!(
                    "a write kept conflicting with concurrent writes and was given up after {attempt} attempts"
                );
                for job in jobs {
                    job.answer(Member::Done(Err(StoreError::Backend(message.clone()))));
                }
                return;
            }
            if conflicted {
                tracing::debug!(attempt, "retrying writes after a serialization conflict");
                std::thread::sleep(backoff(attempt));
            } else {
                careful = true;
            }
        }
    }

    /// One attempt at a batch, ended with COMMIT when a member succeeded and with
    /// ROLLBACK otherwise. `careful`: each member runs in a savepoint (a failing one is
    /// rolled back to it) and its statements have all answered before it is judged (see
    /// `pipelined`). A first attempt (not `careful`) has no savepoints, as SQLite's
    /// batches have none: a member that fails before anything it sent could change a row
    /// leaves only its reads (and its guards, still checked), while one that fails after
    /// makes the attempt roll back and run carefully; every closure then runs at most
    /// twice, conflicts aside.
    /// `handed`: what each member's caller handed along, used unless `careful`.
    pub(super) fn batch_attempt(
        &self,
        jobs: &mut [Job],
        handed: &[Option<&Handed>],
        careful: bool,
    ) -> BatchAttempt {
        let rt = self.rt();
        let count = jobs.len();
        let every = |result: &dyn Fn() -> StoreResult<()>| {
            BatchAttempt::Done((0..count).map(|_| Member::Done(result())).collect())
        };
        // The group's announcement, once made: its commit has begun for the cache.
        let mut announced = None;
        let mut attempt = |tx: Transaction<'_>| {
            let batch = WriteBatch::of_group(careful);
            let mut members = Vec::with_capacity(jobs.len());
            let mut broken = None;
            // What the kept members changed, announced once for them all before COMMIT.
            let mut to_announce = None;
            for (at, job) in jobs.iter_mut().enumerate() {
                batch.begin_member();
                if careful {
                    // Sent with the member's first statement.
                    batch.defer("SAVEPOINT coffer_member", None, Expect::Done);
                }
                // A careful attempt follows a fault, perhaps a guard's: nothing handed.
                let handed = if careful { None } else { handed.get(at).copied().flatten() };
                let mut txn = PgTxn::writing(rt, &tx, self.shared.as_deref(), &batch, handed);
                // A careful attempt reads every record: a guard may have failed.
                txn.known = (!careful).then_some(&self.known);
                // SAFETY: every job is answered only after this batch (`run_batch`).
                let closure = unsafe { job.closure() };
                let ran = catch_unwind(AssertUnwindSafe(|| closure(&mut txn)));
                let mut settled = Ok(());
                if matches!(ran, Ok(Ok(()))) {
                    // A failure is noted in `txn.failure`, read next.
                    let _ = txn.flush();
                    if careful {
                        settled = txn.settle();
                    }
                }
                let failure = txn.failure.get();
                if failure == Failure::Retry {
                    members.clear();
                    break;
                }
                let member = match ran {
                    Ok(Ok(())) if failure == Failure::None => Member::Done(Ok(())),
                    // What the member's last deferred statements reported.
                    Ok(Ok(())) if settled.is_err() => Member::Done(settled),
                    Ok(Ok(())) => Member::Done(Err(StoreError::Backend(
                        "a statement failed inside the transaction, so PostgreSQL abandoned \
                         it; nothing was written"
                            .to_owned(),
                    ))),
                    Ok(Err(e)) => Member::Done(Err(e)),
                    Err(payload) => Member::Panicked(payload),
                };
                let kept = matches!(member, Member::Done(Ok(())));
                if kept {
                    to_announce = to_announce.max(txn.announcement());
                }
                drop(txn);
                if !careful && !kept {
                    // A first attempt has no savepoints (as SQLite's batches have none): a
                    // member that failed having sent nothing that changes a row (most
                    // failures refuse before writing) leaves only its reads, and what it
                    // deferred is dropped; one that sent a change, or whose statement
                    // failed (PostgreSQL then abandoned the transaction), has the attempt
                    // rolled back and run again carefully, each member in a savepoint.
                    if batch.member_sent_changes() || failure != Failure::None {
                        batch.rerun_carefully();
                        break;
                    }
                    batch.forget_member_changes();
                }
                batch.judge_member(kept);
                members.push(member);
                if careful {
                    // A savepoint rolled back to is still open: released too, so the next
                    // member's does not nest inside it.
                    let end = if kept {
                        "RELEASE SAVEPOINT coffer_member"
                    } else {
                        "ROLLBACK TO SAVEPOINT coffer_member; RELEASE SAVEPOINT coffer_member"
                    };
                    batch.defer(end, None, Expect::Done);
                    if let Some(fault) = batch.sync(rt, &tx) {
                        broken = Some(fault);
                        break;
                    }
                }
            }
            let complete = broken.is_none() && members.len() == jobs.len();
            // One announcement for the group (one bump, one notification, delivered on
            // commit), deferred like the members' last statements: if it fails, nothing
            // is committed and the attempt is rerun carefully, then refused as a whole.
            if complete && let (Some(what), Some(cache)) = (to_announce, self.shared.as_deref()) {
                cache.commit_begins(what);
                announced = Some(what);
                let generation: Param = Box::new(what.setting(cache).to_owned());
                let payload: Param = Box::new(what.payload());
                batch.defer(ANNOUNCE_SQL, Some(vec![generation, payload]), Expect::Done);
            }
            // What is still deferred and only has to succeed travels with COMMIT: one
            // round trip fewer per group (every group of the audit appender's).
            let kept_any = members.iter().any(|m| matches!(m, Member::Done(Ok(()))));
            if complete
                && kept_any
                && batch.rerun().is_none()
                && batch.has_deferred()
                && batch.expects_only_success()
            {
                let kept = batch.records_kept();
                let attempt = commit_with_deferred(rt, tx, &batch, members);
                self.learn_from(&attempt, kept);
                return attempt;
            }
            // Otherwise what is still deferred is answered before COMMIT is sent, so COMMIT
            // never follows a statement that failed without an error (see `pipelined`).
            if complete && batch.has_deferred() {
                broken = batch.sync(rt, &tx);
            }
            let rerun = batch.rerun();
            let conflicted = members.len() < jobs.len() && broken.is_none();
            if conflicted || broken.is_some() || rerun.is_some() {
                if let Err(e) = rt.block_on(tx.rollback()) {
                    tracing::warn!(error = %describe_error(&e), "could not roll back a PostgreSQL transaction");
                }
                return match (rerun, broken) {
                    (Some(Rerun::Carefully), _) => BatchAttempt::Carefully,
                    (Some(Rerun::AsBefore), _) => BatchAttempt::Conflicted,
                    (None, Some(fault)) if !fault.retryable() => {
                        let message = fault.describe();
                        every(&|| Err(StoreError::Backend(message.clone())))
                    }
                    _ => BatchAttempt::Conflicted,
                };
            }
            if !members.iter().any(|m| matches!(m, Member::Done(Ok(())))) {
                if let Err(e) = rt.block_on(tx.rollback()) {
                    tracing::warn!(error = %describe_error(&e), "could not roll back a PostgreSQL transaction");
                }
                return BatchAttempt::Done(members);
            }
            super::txn::COMMITS_ALONE.with(|n| n.set(n.get() + 1));
            let kept = batch.records_kept();
            let attempt = match rt.block_on(tx.commit()) {
                Ok(()) => BatchAttempt::Done(members),
                Err(e) if is_retryable(&e) => BatchAttempt::Conflicted,
                // The connection may have died after the server committed: the outcome
                // is unknown, and the callers must be told so rather than told it failed
                // cleanly.
                Err(e) => unknown_outcome(members, &e),
            };
            self.learn_from(&attempt, kept);
            attempt
        };
        let outcome = self.in_transaction(IsolationLevel::Serializable, false, &mut attempt);
        self.shared_commits_ended(announced);
        match outcome {
            Ok(attempt) => attempt,
            Err(e) => {
                let message = e.to_string();
                every(&|| Err(StoreError::Backend(message.clone())))
            }
        }
    }

    /// A write transaction on the concrete transaction type, retried while
    /// PostgreSQL reports serialization conflicts.
    pub(super) fn write_pg(
        &self,
        f: &mut dyn FnMut(&mut PgTxn<'_, '_>) -> StoreResult<()>,
    ) -> StoreResult<()> {
        // A poisoned lock only means a closure panicked; its transaction was rolled back.
        let _turn = self.writers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self.write_attempt_and_commit(f) {
                Attempt::Finished(result) => return result,
                Attempt::Committed => return Ok(()),
                Attempt::Conflicted => {
                    if attempt >= MAX_WRITE_ATTEMPTS || started.elapsed() >= WRITE_RETRY_BUDGET {
                        return Err(StoreError::Backend(format!(
                            "a write kept conflicting with concurrent writes and was given up after {attempt} attempts"
                        )));
                    }
                    tracing::debug!(attempt, "retrying a write after a serialization conflict");
                    std::thread::sleep(backoff(attempt));
                }
            }
        }
    }

    /// One attempt, ended with COMMIT when the closure succeeded and with
    /// ROLLBACK otherwise.
    pub(super) fn write_attempt_and_commit(
        &self,
        f: &mut dyn FnMut(&mut PgTxn<'_, '_>) -> StoreResult<()>,
    ) -> Attempt {
        let rt = self.rt();
        let mut announced = None;
        let outcome = self.in_transaction(IsolationLevel::Serializable, false, &mut |tx| {
            // One member, whose statements have all answered before it commits.
            let batch = WriteBatch::new(true);
            batch.begin_member();
            let mut txn = PgTxn::writing(rt, &tx, self.shared.as_deref(), &batch, None);
            let mut result = f(&mut txn);
            if result.is_ok() {
                // A failure is noted in `txn.failure`, read next.
                if let Ok(Some(what)) = txn.announce_shared_change() {
                    announced = Some(what);
                }
                result = txn.settle();
            }
            let failure = txn.failure.get();
            let attempt = match (failure, result) {
                (Failure::Retry, _) => Attempt::Conflicted,
                (Failure::Fatal, Ok(())) => Attempt::Finished(Err(StoreError::Backend(
                    "a statement failed inside the transaction, so PostgreSQL abandoned it; \
                     nothing was written"
                        .to_owned(),
                ))),
                (_, Err(e)) => Attempt::Finished(Err(e)),
                (Failure::None, Ok(())) => {
                    return match rt.block_on(tx.commit()) {
                        Ok(()) => Attempt::Committed,
                        Err(e) if is_retryable(&e) => Attempt::Conflicted,
                        // The connection may have died after the server
                        // committed: the outcome is unknown, and the caller
                        // must be told so rather than told it failed cleanly.
                        Err(e) => Attempt::Finished(Err(StoreError::Backend(format!(
                            "the commit did not complete, so the write may or may not have been kept: {}",
                            describe_error(&e)
                        )))),
                    };
                }
            };
            if let Err(e) = rt.block_on(tx.rollback()) {
                tracing::warn!(error = %describe_error(&e), "could not roll back a PostgreSQL transaction");
            }
            attempt
        });
        self.shared_commits_ended(announced);
        match outcome {
            Ok(attempt) => attempt,
            Err(e) => Attempt::Finished(Err(e)),
        }
    }

    /// What a group's attempt teaches the node's memory of records (`known`): the records
    /// its transaction read or wrote, once its `COMMIT` was acknowledged; nothing after a
    /// conflict; and to forget all after a failed guard (the attempt then runs carefully)
    /// or a commit whose outcome is unknown (each member then holds an error).
    fn learn_from(&self, attempt: &BatchAttempt, kept: Vec<(String, Option<Vec<u8>>)>) {
        match attempt {
            BatchAttempt::Done(members)
                if members.iter().any(|m| matches!(m, Member::Done(Ok(())))) =>
            {
                self.known.learn(kept)
            }
            BatchAttempt::Conflicted => {}
            BatchAttempt::Done(_) | BatchAttempt::Carefully => self.known.forget(),
        }
    }

    /// Ends, for this node's cache, the commit `announce_shared_change` began.
    fn shared_commits_ended(&self, announced: Option<super::txn::Announce>) {
        if let (Some(cache), Some(what)) = (&self.shared, announced) {
            cache.commit_ended(what);
        }
    }
}

/// Ends a group's transaction by sending its last deferred statements (each of which only
/// has to succeed) and `COMMIT` together (`WriteBatch::commit_with_deferred`), and says how
/// the attempt ended, exactly as a sync followed by a `COMMIT` of its own would have: a
/// statement that failed (PostgreSQL then rolled the transaction back) is handled as
/// `batch_attempt` handles a fault found by the sync, and a `COMMIT` that failed as it
/// handles one that failed alone.
fn commit_with_deferred(
    rt: &tokio::runtime::Runtime,
    tx: Transaction<'_>,
    batch: &WriteBatch,
    members: Vec<Member>,
) -> BatchAttempt {
    let count = members.len();
    let (fault, committed) = batch.commit_with_deferred(rt, tx);
    let rolled_back = |fault: super::pipelined::Fault| match batch.rerun() {
        Some(Rerun::Carefully) => BatchAttempt::Carefully,
        Some(Rerun::AsBefore) => BatchAttempt::Conflicted,
        None if !fault.retryable() => {
            let message = fault.describe();
            let failed = || Member::Done(Err(StoreError::Backend(message.clone())));
            BatchAttempt::Done((0..count).map(|_| failed()).collect())
        }
        None => BatchAttempt::Conflicted,
    };
    match (fault, committed) {
        (None, Some(Ok(()))) => BatchAttempt::Done(members),
        (None, Some(Err(e))) if is_retryable(&e) => BatchAttempt::Conflicted,
        // An error from the server aborted the transaction: the COMMIT behind it, if sent,
        // rolled it back.
        (Some(fault), Some(Ok(()))) => rolled_back(fault),
        (Some(fault), _) if fault.is_server_error() => rolled_back(fault),
        // Refused before it was sent (COMMIT then held back): the transaction was dropped
        // with a ROLLBACK queued, and nothing committed.
        (Some(fault), None) => rolled_back(fault),
        // The connection failed with the COMMIT in flight: the outcome is unknown, and
        // the callers must be told so rather than told it failed cleanly.
        (_, Some(Err(e))) => unknown_outcome(members, &e),
        (None, None) => unreachable!("COMMIT is held back only behind a refused statement"),
    }
}

/// Each kept member of a group whose `COMMIT` did not complete: told the write may or may
/// not have been kept.
fn unknown_outcome(members: Vec<Member>, e: &tokio_postgres::Error) -> BatchAttempt {
    let message = format!(
        "the commit did not complete, so the write may or may not have been kept: {}",
        describe_error(e)
    );
    BatchAttempt::Done(
        members
            .into_iter()
            .map(|m| match m {
                Member::Done(Ok(())) => Member::Done(Err(StoreError::Backend(message.clone()))),
                other => other,
            })
            .collect(),
    )
}

/// A random wait before retry `attempt + 1`: exponential with full jitter, capped.
pub(super) fn backoff(attempt: u32) -> Duration {
    let cap_ms = 2u64.saturating_pow(attempt.min(6)).min(64);
    Duration::from_micros(rand::random_range(0..=cap_ms * 1000))
}

/// True for the errors PostgreSQL raises to keep transactions serializable:
/// the transaction did nothing wrong and succeeds when run again.
pub(super) fn is_retryable(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(code) if *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
    )
}
