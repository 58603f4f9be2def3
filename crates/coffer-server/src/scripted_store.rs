//! A test store whose writes commit, fail their commit or rerun as a script says: the
//! failures a durable store's group commit meets, on a memory store (tests only).

use coffer_store::{Handoff, MemoryStore, Store, StoreError, StoreResult, WriteTxn};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// What the store does with a write.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Next {
    /// Runs it once and commits.
    Commit,
    /// Runs it, then fails its commit (rolled back, as a failed COMMIT leaves nothing).
    FailCommit,
    /// Runs it, rolls it back and runs it again, then commits: PostgreSQL's rerun after a
    /// serialization conflict.
    Rerun,
}

/// A memory store on "disk" (so that events of calls that change nothing go through the
/// appender) whose writes follow a script: each write takes the script's next step, and a
/// repeating script puts the step back at its end; an empty script commits.
pub(crate) struct Scripted {
    inner: MemoryStore,
    script: Mutex<VecDeque<Next>>,
    repeat: bool,
    /// Writes handed to the store so far, whatever their step did.
    writes: AtomicU64,
}

impl Scripted {
    /// A store whose writes commit until [`Scripted::then`] says otherwise.
    pub(crate) fn new() -> Scripted {
        Scripted {
            inner: MemoryStore::new(),
            script: Mutex::new(VecDeque::new()),
            repeat: false,
            writes: AtomicU64::new(0),
        }
    }

    /// A store whose writes go through `steps` in turn, over and over.
    pub(crate) fn repeating(steps: &[Next]) -> Scripted {
        let store = Scripted { repeat: true, ..Scripted::new() };
        store.then(steps);
        store
    }

    /// The next writes take `steps`, after what the script already holds.
    pub(crate) fn then(&self, steps: &[Next]) {
        self.script.lock().unwrap().extend(steps.iter().copied());
    }

    /// How many writes were handed to the store so far (a rerun write counts once, as
    /// the one transaction it is): what a group commit's tests count batches by.
    pub(crate) fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    fn next(&self) -> Next {
        let mut script = self.script.lock().unwrap();
        let next = script.pop_front().unwrap_or(Next::Commit);
        if self.repeat {
            script.push_back(next);
        }
        next
    }
}

/// `write_trail` is left to the trait's default on purpose: it goes through `write`, so
/// the script decides the fate of events' writes too (what the appender's tests need).
/// `read_scope` and `write_after` are forwarded, so a handoff reaches the inner store.
impl Store for Scripted {
    fn latency(&self) -> coffer_store::Latency {
        coffer_store::Latency::LocalDisk
    }
    fn read(
        &self,
        f: &mut dyn FnMut(&dyn coffer_store::ReadTxn) -> StoreResult<()>,
    ) -> StoreResult<()> {
        self.inner.read(f)
    }
    fn read_scope(&self, f: &mut dyn FnMut()) -> Handoff {
        self.inner.read_scope(f)
    }
    fn write(
        &self,
        f: &mut (dyn FnMut(&mut dyn WriteTxn) -> StoreResult<()> + Send),
    ) -> StoreResult<()> {
        self.write_after(Handoff::none(), f)
    }
    fn write_after(
        &self,
        handoff: Handoff,
        f: &mut (dyn FnMut(&mut dyn WriteTxn) -> StoreResult<()> + Send),
    ) -> StoreResult<()> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        match self.next() {
            Next::Commit => self.inner.write_after(handoff, f),
            Next::FailCommit => self.inner.write_after(handoff, &mut |tx| {
                f(tx)?;
                Err(StoreError::Backend("the commit failed".into()))
            }),
            // The rolled-back run reads for itself; the handoff goes to the run that counts.
            Next::Rerun => {
                let _ = self.inner.write(&mut |tx| {
                    f(tx)?;
                    Err(StoreError::Aborted)
                });
                self.inner.write_after(handoff, f)
            }
        }
    }
    fn describe(&self) -> String {
        "scripted".into()
    }
    fn export(
        &self,
        visit: &mut dyn FnMut(coffer_store::SnapshotItem) -> StoreResult<()>,
    ) -> StoreResult<()> {
        self.inner.export(visit)
    }
    fn import_from(&self, produce: &mut coffer_store::ImportProducer<'_>) -> StoreResult<()> {
        self.inner.import_from(produce)
    }
}
