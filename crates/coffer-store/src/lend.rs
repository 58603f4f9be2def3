//! Lending a write closure to another thread for as long as its caller waits: how a
//! store runs the writes of many callers back to back in one transaction (group commit).

use std::any::Any;
use std::panic::resume_unwind;
use std::sync::mpsc;

use crate::{StoreError, StoreResult, WriteTxn};

/// A closure as [`crate::Store::write`] takes it.
pub(crate) type WriteFn<'f> = dyn FnMut(&mut dyn WriteTxn) -> StoreResult<()> + Send + 'f;

/// How one lent closure ended.
pub(crate) enum Member {
    Done(StoreResult<()>),
    /// The closure panicked; the panic continues in its caller.
    Panicked(Box<dyn Any + Send>),
}

/// A write closure lent by a caller that waits for the answer (see [`lend`]).
pub(crate) struct Job {
    /// The caller's closure with its lifetime erased.
    closure: *mut WriteFn<'static>,
    reply: mpsc::SyncSender<Member>,
    /// What the caller hands along to whoever runs the closure (the PostgreSQL store's
    /// read-scope lookups, `postgres::handoff`), taken once by that thread.
    handed: Option<Box<dyn Any + Send>>,
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
        // SAFETY: see `Job`; the caller keeps the closure alive until answered.
        unsafe { &mut *self.closure }
    }

    /// What the caller handed along with the closure, taken (`None` the second time).
    pub(crate) fn take_handed(&mut self) -> Option<Box<dyn Any + Send>> {
        self.handed.take()
    }

    /// Tells the caller how its closure ended; the closure is not used again.
    pub(crate) fn answer(self, member: Member) {
        let _ = self.reply.send(member);
    }
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
    let stopped = || StoreError::Backend("the store's writer has stopped".to_owned());
    let f: *mut WriteFn<'_> = f;
    // SAFETY: only the lifetime bound changes (same pointer layout). The closure stays
    // borrowed until this function returns, which it does only once the job has been
    // answered or dropped, after which the closure is no longer used (see `Job`).
    let closure = unsafe { std::mem::transmute::<*mut WriteFn<'_>, *mut WriteFn<'static>>(f) };
    let (reply, replied) = mpsc::sync_channel(1);
    let answer = Answer { replied, early: std::cell::Cell::new(None) };
    if run(Job { closure, reply, handed }, &answer).is_err() {
        return Err(stopped());
    }
    match answer.wait() {
        Some(Member::Done(result)) => result,
        Some(Member::Panicked(payload)) => resume_unwind(payload),
        None => Err(stopped()),
    }
}
