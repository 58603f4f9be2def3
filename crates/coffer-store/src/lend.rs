//! Lending a write closure to another thread for as long as its caller waits: how a
//! store runs the writes of many callers back to back in one transaction (group commit).
//! A job may instead own its closure and answer through a callback ([`submit`]): its
//! caller then waits for nothing (an async task awaits the callback's answer).

use std::any::Any;
use std::panic::resume_unwind;
use std::sync::mpsc;

use crate::{OwnedWrite, StoreError, StoreResult, WriteDone, WriteEnded, WriteTxn};

/// A closure as [`crate::Store::write`] takes it.
pub(crate) type WriteFn<'f> = dyn FnMut(&mut dyn WriteTxn) -> StoreResult<()> + Send + 'f;

/// How one lent closure ended.
pub(crate) enum Member {
    Done(StoreResult<()>),
    /// The closure panicked; the panic continues in its caller.
    Panicked(Box<dyn Any + Send>),
}

/// A write closure lent by a caller that waits for the answer (see [`lend`]), or one
/// the job owns, answered through a callback (see [`submit`]).
pub(crate) struct Job {
    closure: Closure,
    /// `None` once answered.
    reply: Option<Reply>,
    /// What the caller hands along to whoever runs the closure (the PostgreSQL store's
    /// read-scope lookups, `postgres::handoff`), taken once by that thread.
    handed: Option<Box<dyn Any + Send>>,
}

/// The closure a job runs.
enum Closure {
    /// The caller's closure with its lifetime erased.
    Lent(*mut WriteFn<'static>),
    /// A closure the job owns; replaced by one that holds nothing once the job is answered,
    /// so that whatever it held is dropped before its caller hears the answer.
    Owned(OwnedWrite),
}

/// Where a job's answer goes.
enum Reply {
    /// To a caller blocked in [`lend`].
    Waiting(mpsc::SyncSender<Member>),
    /// To the callback [`submit`] was given.
    Callback(WriteDone),
}

// SAFETY: the closure is only called (through `Job::closure`) while its caller is blocked
// in `lend` waiting for the answer, which is sent (or the job dropped) only after the
// call returned; the caller's thread does not touch the closure meanwhile, so lending it
// to one other thread at a time is sound, as a scoped thread's borrow is. The closure
// is `Send` (`WriteFn`), so nothing it holds is bound to its caller's thread.
unsafe impl Send for Job {}

impl Job {
    /// The lent closure.
    ///
    /// # Safety
    /// Only until [`Job::answer`] is called or the job is dropped.
    pub(crate) unsafe fn closure(&mut self) -> &mut WriteFn<'static> {
        match &mut self.closure {
            // SAFETY: see `Job`; the caller keeps the closure alive until answered.
            Closure::Lent(closure) => unsafe { &mut **closure },
            Closure::Owned(closure) => &mut **closure,
        }
    }

    /// What the caller handed along with the closure, taken (`None` the second time).
    pub(crate) fn take_handed(&mut self) -> Option<Box<dyn Any + Send>> {
        self.handed.take()
    }

    /// Tells the caller how its closure ended; the closure is not used again.
    pub(crate) fn answer(mut self, member: Member) {
        self.tell(member);
    }

    /// Drops an owned closure (what it holds is its caller's again once answered), then
    /// answers.
    fn tell(&mut self, member: Member) {
        if let Closure::Owned(closure) = &mut self.closure {
            // A closure that captures nothing: boxing it allocates nothing.
            *closure = Box::new(|_| Ok(()));
        }
        match self.reply.take() {
            Some(Reply::Waiting(reply)) => {
                let _ = reply.send(member);
            }
            Some(Reply::Callback(done)) => done(member.into()),
            None => {}
        }
    }
}

impl Drop for Job {
    /// A job dropped unanswered (its thread stopped, or it never reached one) failed: a
    /// lent closure's caller learns it from the closed channel, a callback is told here.
    fn drop(&mut self) {
        if matches!(self.reply, Some(Reply::Callback(_))) {
            self.tell(Member::Done(Err(stopped())));
        }
    }
}

impl From<Member> for WriteEnded {
    fn from(member: Member) -> WriteEnded {
        match member {
            Member::Done(result) => WriteEnded::Done(result),
            Member::Panicked(payload) => WriteEnded::Panicked(payload),
        }
    }
}

fn stopped() -> StoreError {
    StoreError::Backend("the store's writer has stopped".to_owned())
}

/// Makes a job that owns `f` and answers `done`, and hands it to `run`, which sends it to
/// whoever will call it. If `run` cannot, or the job is dropped unanswered, `done` is told
/// the write failed. Returns at once.
pub(crate) fn submit(f: OwnedWrite, done: WriteDone, run: impl FnOnce(Job) -> Result<(), Job>) {
    let job = Job { closure: Closure::Owned(f), reply: Some(Reply::Callback(done)), handed: None };
    // A job `run` gives back is dropped, which answers it.
    let _ = run(job);
}

/// The answer to a lent closure, as its caller waits for it.
pub(crate) struct Answer {
    replied: mpsc::Receiver<Member>,
    early: std::cell::Cell<Option<Member>>,
}

impl Answer {
    /// Whether the job has been answered (or dropped) already.
    pub(crate) fn ready(&self) -> bool {
        if let Some(member) = self.early.take() {
            self.early.set(Some(member));
            return true;
        }
        match self.replied.try_recv() {
            Ok(member) => {
                self.early.set(Some(member));
                true
            }
            Err(mpsc::TryRecvError::Empty) => false,
            Err(mpsc::TryRecvError::Disconnected) => true,
        }
    }

    fn wait(self) -> Option<Member> {
        self.early.take().or_else(|| self.replied.recv().ok())
    }
}

/// Makes a job of `f` for `run`, which hands it to whoever will call it (it may run
/// it itself, and may look at the answer meanwhile), then waits for the answer and
/// returns it, continuing a panic of `f` here. If the job is dropped unanswered (its
/// thread stopped), the write failed.
pub(crate) fn lend(
    f: &mut WriteFn<'_>,
    run: impl FnOnce(Job, &Answer) -> Result<(), Job>,
) -> StoreResult<()> {
    lend_handing(f, None, run)
}

/// [`lend`], with `handed` for the thread that runs `f` ([`Job::take_handed`]).
pub(crate) fn lend_handing(
    f: &mut WriteFn<'_>,
    handed: Option<Box<dyn Any + Send>>,
    run: impl FnOnce(Job, &Answer) -> Result<(), Job>,
) -> StoreResult<()> {
    let f: *mut WriteFn<'_> = f;
    // SAFETY: only the lifetime bound changes (same pointer layout). The closure stays
    // borrowed until this function returns, which it does only once the job has been
    // answered or dropped, after which the closure is no longer used (see `Job`).
    let closure = unsafe { std::mem::transmute::<*mut WriteFn<'_>, *mut WriteFn<'static>>(f) };
    let (reply, replied) = mpsc::sync_channel(1);
    let answer = Answer { replied, early: std::cell::Cell::new(None) };
    let job = Job { closure: Closure::Lent(closure), reply: Some(Reply::Waiting(reply)), handed };
    if run(job, &answer).is_err() {
        return Err(stopped());
    }
    match answer.wait() {
        Some(Member::Done(result)) => result,
        Some(Member::Panicked(payload)) => resume_unwind(payload),
        None => Err(stopped()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;
    use std::sync::Arc;

    /// A job that owns a marker, and a callback that reports how the job ended and whether
    /// the marker was already dropped when it was told.
    fn owned_job() -> (OwnedWrite, WriteDone, mpsc::Receiver<(bool, WriteEnded)>) {
        let held = Arc::new(());
        let gone = Arc::downgrade(&held);
        let (tell, told) = mpsc::channel();
        let f: OwnedWrite = Box::new(move |_| {
            let _ = Arc::strong_count(&held);
            Ok(())
        });
        let done: WriteDone = Box::new(move |ended| {
            tell.send((gone.upgrade().is_none(), ended)).expect("the test waits");
        });
        (f, done, told)
    }

    fn stopped_answer(ended: WriteEnded) -> bool {
        matches!(ended, WriteEnded::Done(Err(StoreError::Backend(m))) if m.contains("stopped"))
    }

    #[test]
    fn a_submitted_job_no_thread_takes_is_answered_that_the_writer_stopped() {
        let (f, done, told) = owned_job();
        submit(f, done, Err);
        let (dropped_first, ended) = told.try_recv().expect("answered at once");
        assert!(dropped_first, "the closure outlived its answer");
        assert!(stopped_answer(ended));
    }

    #[test]
    fn a_submitted_job_dropped_unanswered_is_answered_that_the_writer_stopped() {
        let (f, done, told) = owned_job();
        let mut taken = None;
        submit(f, done, |job| {
            taken = Some(job);
            Ok(())
        });
        assert!(told.try_recv().is_err(), "answered before the job ended");
        drop(taken);
        let (dropped_first, ended) = told.try_recv().expect("answered when dropped");
        assert!(dropped_first, "the closure outlived its answer");
        assert!(stopped_answer(ended));
    }

    #[test]
    fn a_submitted_job_is_answered_once_with_its_own_outcome_after_its_closure_is_dropped() {
        let (f, done, told) = owned_job();
        let mut taken = None;
        submit(f, done, |job| {
            taken = Some(job);
            Ok(())
        });
        let mut job = taken.expect("the job");
        // Run in a memory store's transaction, as a writer would run it in its own.
        let store = crate::MemoryStore::new();
        // SAFETY: an owned closure; the job is answered after this call.
        let ran = store.write(&mut |tx| unsafe { job.closure() }(tx));
        assert!(ran.is_ok());
        job.answer(Member::Done(Err(StoreError::Aborted)));
        let (dropped_first, ended) = told.try_recv().expect("answered");
        assert!(dropped_first, "the closure outlived its answer");
        assert!(matches!(ended, WriteEnded::Done(Err(StoreError::Aborted))));
        assert!(told.try_recv().is_err(), "answered twice");
    }
}
