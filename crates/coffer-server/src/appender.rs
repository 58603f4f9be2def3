//! Commits the audit events that are not part of a change (read-only calls, failed
//! calls) in batches: concurrent calls hand their event to a shared queue, and a write
//! transaction takes every event waiting and appends them, so a thousand reads cost a
//! few commits instead of a thousand. A call is answered only once the transaction
//! holding its event committed (fail-closed stays as it was), and an async caller
//! waits without holding a thread.
//!
//! The events are taken from the queue by the transaction itself, when the store runs
//! it, not before it is handed to the store: while one batch's write waits for the store
//! (the SQLite writer busy with the batch before, PostgreSQL's round trips), the events
//! arriving meanwhile are taken by the next write, which is already waiting in the store
//! behind it. On SQLite that write joins the open group commit when it is handed over
//! before its COMMIT, so an event waits for one commit, not for the one in flight and
//! then its own. Several threads (each blocked in its own write) keep one write always
//! waiting in the store while events do; at most one write that has not yet taken its
//! events waits at a time, so no write runs empty.
//!
//! On a local disk, commits are cheap enough that few events wait when a write runs: with
//! many callers, nearly every event paid a commit of its own (its statements' framing, the
//! chain head's page and a few more WAL frames, an `fsync`, the hand-offs between threads).
//! So when events have been arriving fast, a write that runs waits a little (at most
//! [`GATHER`]) for as many as are expected meanwhile before taking them, as PostgreSQL's
//! `commit_delay` does; events arriving slower than that never wait (see [`gather_target`]).
//!
//! On a store that runs writes on a thread of its own (SQLite's writer,
//! [`Store::submits_writes`]), no appender thread stands between the caller and the
//! writer: the call that finds no write pending hands the store a write of its own
//! ([`Store::submit_write`]), which takes the events waiting when the writer runs it, and
//! the writer tells each caller once its group committed. Before, each batch woke an
//! appender thread to hand the write over and again to pass the answers on: two context
//! switches per batch, a quarter of the SQLite writer's on a GetSecretValue load (twentieth
//! session, BENCHMARKS.md). With `--audit-log`, whose lines are written before callers are
//! told, the threads stay, so the log's file writes never run on the writer thread.
//!
//! Chaining is unchanged: each batch reads its chains' heads inside its own
//! transaction, so a batch that ran after another in the same transaction continues its
//! events, and one in a later transaction continues what was committed (a failed batch's
//! events are not in the chain, and neither is anything chained on them, since a failed
//! commit fails every batch in it).

use crate::App;
use crate::audit::Unwritten;
use crate::audit_file::Lines;
use coffer_core::AwsError;
use coffer_store::{Handoff, Store, StoreError, StoreResult, WriteEnded, WriteTxn};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The most events committed in one batch.
const MAX_BATCH: usize = 512;

/// Threads that hand batches to the store: one whose write is waiting for the store to
/// run it, the others waiting for the commit of the writes already run (on SQLite
/// several run in one group commit).
const WRITERS: usize = 3;

/// The longest a write that runs waits for more events, on a store whose commits are cheap
/// (a local disk). Measured on a tmpfs at 64 connections (BENCHMARKS.md, fifteenth session):
/// 1.6-2.0 events per commit and 150-170 µs of CPU per GetSecretValue without it, 5.8-9.8
/// and 88-130 µs with 500 µs. On a quiet machine whose disk syncs in ~0.1 ms (seventeenth
/// session) the CPU per answer was the same from 100 to 1,000 µs (31-35 µs), but a longer
/// wait left the cores idle while every connection waited for a commit: 500 µs 35,200
/// answers/s (26% of the machine idle), 250 µs 37,300-37,500/s (18%), 0 µs 38,500-41,000/s
/// (9-11%) with p99 at 4.9-5.1 ms against 4.3-4.6 ms at 250 µs.
pub(crate) const GATHER: Duration = Duration::from_micros(250);

/// How many events a write waits for within `gather`, when events have been arriving at
/// `per_second`: those expected meanwhile, if that is at least two (a write runs because
/// one waits already), else none. So a lone caller, or a few, never wait.
pub(crate) fn gather_target(per_second: f64, gather: Duration) -> usize {
    let expected = (per_second * gather.as_secs_f64()) as usize;
    if expected >= 2 { expected.min(MAX_BATCH) } else { 0 }
}

/// Whether an event was committed (or the trail is fail-open): `false` fails its call.
type Written = oneshot::Sender<bool>;

/// An event waiting to be written, whom to tell, and since when it waits.
struct Job {
    event: Unwritten,
    written: Written,
    since: Instant,
}

/// The events waiting for a write, and whether a write that will take them is already
/// waiting in the store.
struct State {
    waiting: Vec<Job>,
    /// A write was handed to the store and has not yet taken its events (its ticket).
    pending: Option<u64>,
    tickets: u64,
    /// Events handed over per second, averaged over the last takes, and the last take.
    arriving: f64,
    last_take: Option<Instant>,
    /// A write waits for this many events to gather ([`Shared::gather`]): the arrival
    /// that brings the queue to it wakes the write, the ones before do not (each wake-up
    /// is a context switch on the writer thread, for nothing until the count is reached).
    gathering: Option<usize>,
    /// The appender was dropped: the threads end once the queue is empty.
    closed: bool,
}

impl State {
    /// Notes that a new write is about to be handed to the store for the events waiting,
    /// and returns its ticket.
    fn pend(&mut self) -> u64 {
        self.tickets += 1;
        self.pending = Some(self.tickets);
        self.tickets
    }
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when events arrive, a pending write took its events, or on close.
    changed: Condvar,
    /// Signalled when an event arrives while a write gathers.
    arrived: Condvar,
    /// How long a write may wait for events to gather (zero: never).
    gather: Duration,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the events waiting (up to [`MAX_BATCH`]) for the write holding `ticket`, and
    /// lets another write be handed to the store for the events that come next.
    fn take(&self, ticket: u64) -> Vec<Job> {
        let mut state = self.gather(self.lock());
        if state.pending == Some(ticket) {
            state.pending = None;
        }
        state.last_take = Some(Instant::now());
        let cut = state.waiting.len().min(MAX_BATCH);
        let rest = state.waiting.split_off(cut);
        let batch = std::mem::replace(&mut state.waiting, rest);
        drop(state);
        self.changed.notify_all();
        crate::metrics::appender_queue(-(batch.len() as i64));
        crate::metrics::appender_batch(batch.len());
        batch
    }
}

impl Shared {
    /// Notes the arrival rate since the last take and, when events have been arriving
    /// fast enough to fill a write, waits (at most [`Shared::gather`]) for as many as are
    /// expected meanwhile. It runs inside the store's write, on SQLite on the writer
    /// thread: other writes wait behind it as long, as they would behind a larger batch.
    fn gather<'a>(&'a self, mut state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        let now = Instant::now();
        if let Some(last) = state.last_take {
            let since = now.saturating_duration_since(last).as_secs_f64().max(1e-6);
            let rate = state.waiting.len() as f64 / since;
            state.arriving = 0.7 * state.arriving + 0.3 * rate;
        }
        let target = gather_target(state.arriving, self.gather);
        if state.waiting.len() >= target {
            return state;
        }
        let until = now + self.gather;
        state.gathering = Some(target);
        while state.waiting.len() < target && !state.closed {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state =
                self.arrived.wait_timeout(state, left).unwrap_or_else(PoisonError::into_inner).0;
        }
        state.gathering = None;
        state
    }
}

/// How batches reach the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handing {
    /// Appender threads ([`WRITERS`]) hand each batch's write to the store and wait for it.
    Threads,
    /// The caller that finds no write pending hands the store one ([`Store::submit_write`]),
    /// and the store tells the callers: for a store that runs writes on a thread of its own.
    ToTheStore,
}

impl Handing {
    /// Threads unless `store` runs writes on its own thread and no audit log file is
    /// written (its lines are written before callers are told, which would then be done
    /// on the store's writer thread).
    pub(crate) fn for_store(store: &dyn Store, audit_log: bool) -> Handing {
        if store.submits_writes() && !audit_log { Handing::ToTheStore } else { Handing::Threads }
    }
}

/// The sending side of the appender; dropping it stops its threads once the events
/// already handed over are written.
pub struct Appender {
    shared: Arc<Shared>,
    /// With [`Handing::ToTheStore`], the app whose store the callers hand writes to.
    handing_to: Option<Weak<App>>,
}

impl std::fmt::Debug for Appender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Appender")
    }
}

impl Drop for Appender {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.changed.notify_all();
        self.shared.arrived.notify_all();
    }
}

impl Appender {
    /// Starts appending to `app`'s store, with threads of its own ([`Handing::Threads`])
    /// or none. Both hold `app` weakly, so the app can be dropped; the threads end when
    /// their `Appender` is.
    pub(crate) fn start(app: Weak<App>, gather: Duration, handing: Handing) -> Appender {
        let shared = Arc::new(Shared {
            arrived: Condvar::new(),
            gather,
            state: Mutex::new(State {
                waiting: Vec::new(),
                pending: None,
                tickets: 0,
                arriving: 0.0,
                last_take: None,
                gathering: None,
                closed: false,
            }),
            changed: Condvar::new(),
        });
        if handing == Handing::ToTheStore {
            return Appender { shared, handing_to: Some(app) };
        }
        for _ in 0..WRITERS {
            let (app, shared) = (app.clone(), shared.clone());
            std::thread::Builder::new()
                .name("coffer-audit-appender".to_owned())
                .spawn(move || run(&app, &shared))
                .expect("the audit appender thread starts");
        }
        Appender { shared, handing_to: None }
    }

    fn submit(&self, event: Unwritten) -> oneshot::Receiver<bool> {
        let (written, receiver) = oneshot::channel();
        let mut state = self.shared.lock();
        state.waiting.push(Job { event, written, since: Instant::now() });
        // Only a new write can act on it, and only when no write is pending already; or
        // the write gathering events, once they reach its count.
        let wake = state.pending.is_none();
        let gathered = state.gathering.is_some_and(|target| state.waiting.len() >= target);
        let ticket = match (&self.handing_to, wake) {
            (Some(_), true) => Some(state.pend()),
            _ => None,
        };
        drop(state);
        crate::metrics::appender_queue(1);
        if gathered {
            self.shared.arrived.notify_one();
        }
        match (&self.handing_to, ticket) {
            (Some(app), Some(ticket)) => hand_to_the_store(app, &self.shared, ticket),
            (None, _) if wake => self.shared.changed.notify_one(),
            _ => {}
        }
        receiver
    }

    /// Appends `event` and waits for its batch to commit, without blocking a thread.
    pub async fn append(&self, event: Unwritten) -> Result<(), AwsError> {
        outcome(self.submit(event).await)
    }

    /// Appends `event` and waits for its batch to commit, from a thread that may block
    /// (never from an async task).
    pub fn append_blocking(&self, event: Unwritten) -> Result<(), AwsError> {
        outcome(self.submit(event).blocking_recv())
    }
}

fn outcome(written: Result<bool, oneshot::error::RecvError>) -> Result<(), AwsError> {
    match written {
        Ok(true) => Ok(()),
        _ => Err(AwsError::internal()),
    }
}

/// One appender thread: waits until events wait and no other write is pending, hands
/// the store a write that takes the events waiting when it runs, appends them in that
/// transaction, and tells each caller once it committed (or failed).
fn run(app: &Weak<App>, shared: &Shared) {
    loop {
        let ticket = {
            let mut state = shared.lock();
            loop {
                if state.pending.is_none() && !state.waiting.is_empty() {
                    break;
                }
                if state.closed && state.waiting.is_empty() {
                    return;
                }
                state = shared.changed.wait(state).unwrap_or_else(PoisonError::into_inner);
            }
            state.pend()
        };
        let Some(app) = app.upgrade() else {
            // No store to write to: whatever waits is failed (the senders dropped).
            drop(shared.take(ticket));
            continue;
        };
        // Taken on the closure's first run; a store that runs it again (PostgreSQL after
        // a serialization conflict) appends the same events again.
        let mut batch: Option<Vec<Job>> = None;
        // The audit log's lines of the attempt that commits, written before the callers
        // are told their events are durable.
        let mut lines = crate::audit_file::Lines::default();
        let committed = app.store.write(&mut |tx| {
            let events = batch.get_or_insert_with(|| shared.take(ticket));
            append_batch(&app, tx, &mut lines, events)
        });
        // A store that failed without running the write: the events it was for fail.
        let batch = batch.unwrap_or_else(|| shared.take(ticket));
        tell(app, committed, lines, batch);
    }
}

/// Appends `events` in `tx`, each continuing its chain, the attempt's audit-log lines
/// (if any) noted in `lines`.
fn append_batch(
    app: &App,
    tx: &mut dyn WriteTxn,
    lines: &mut Lines,
    events: &[Job],
) -> StoreResult<()> {
    let mut heads = app.audit.heads().collecting(lines.attempt());
    for job in events {
        crate::audit::append_unwritten(app, tx, &mut heads, &job.event)
            .map_err(|_| StoreError::Aborted)?;
    }
    heads.store(tx)
}

/// Tells the callers of `batch` whether their events were written, once `committed`
/// says how the write holding them ended (the log's lines written first). `app` is
/// dropped before: a caller told may drop the last other handle on the app, and the app
/// must not end on this thread (the store's writer, which its store's drop joins).
fn tell(app: Arc<App>, committed: StoreResult<()>, lines: Lines, batch: Vec<Job>) {
    let written = match committed {
        Ok(()) => {
            lines.committed(&app.audit);
            true
        }
        Err(error) => {
            tracing::error!(%error, events = batch.len(), "could not commit audit events");
            crate::metrics::audit_write_failures(batch.len() as u64);
            app.audit.settings().fail_open
        }
    };
    drop(app);
    let now = Instant::now();
    for job in batch {
        crate::metrics::appender_wait(now.saturating_duration_since(job.since));
        let _ = job.written.send(written);
    }
}

/// A write handed to the store whole: the events it took when it ran, and its attempt's
/// audit-log lines, shared by the write and what the store calls once it ended.
#[derive(Default)]
struct Handed {
    events: Option<Vec<Job>>,
    lines: Lines,
}

/// Hands `app`'s store a write (holding `ticket`) that takes the events waiting when the
/// store runs it; once it ended, the store's thread tells their callers, and hands
/// another write over if events are left waiting with none pending (a batch holds at
/// most [`MAX_BATCH`]). A caller never waits on a thread of the appender's.
fn hand_to_the_store(app: &Weak<App>, shared: &Arc<Shared>, ticket: u64) {
    let Some(strong) = app.upgrade() else {
        // No store to write to: whatever waits is failed (the senders dropped).
        drop(shared.take(ticket));
        return;
    };
    // Counted until it ended: a stopping server waits for it (`App::submitted_calls_ended`).
    strong.unfinished.began();
    let handed = Arc::new(Mutex::new(Handed::default()));
    let (running, ending) = (handed.clone(), handed);
    let (app_running, shared_running) = (app.clone(), shared.clone());
    let (app_ending, shared_ending) = (app.clone(), shared.clone());
    strong.store.submit_write(
        Handoff::none(),
        Box::new(move |tx| {
            let Some(app) = app_running.upgrade() else { return Err(StoreError::Aborted) };
            let mut handed = running.lock().unwrap_or_else(PoisonError::into_inner);
            let Handed { events, lines } = &mut *handed;
            // Taken on the first run; a rerun appends the same events again.
            let events = events.get_or_insert_with(|| shared_running.take(ticket));
            append_batch(&app, tx, lines, events)
        }),
        Box::new(move |ended| {
            let committed = match ended {
                WriteEnded::Done(result) => result,
                WriteEnded::Panicked(_) => {
                    Err(StoreError::Backend("the audit events' write panicked".to_owned()))
                }
            };
            let Handed { events, lines } =
                std::mem::take(&mut *ending.lock().unwrap_or_else(PoisonError::into_inner));
            // A store that failed without running the write: the events it was for fail.
            let events = events.unwrap_or_else(|| shared_ending.take(ticket));
            let app = app_ending.upgrade();
            // The next write is handed over (and counted) before this one stops counting,
            // so a stopping server never sees none left while events still wait.
            let next = {
                let mut state = shared_ending.lock();
                (state.pending.is_none() && !state.waiting.is_empty()).then(|| state.pend())
            };
            if let Some(ticket) = next {
                hand_to_the_store(&app_ending, &shared_ending, ticket);
            }
            match app {
                Some(app) => {
                    app.unfinished.ended();
                    tell(app, committed, lines, events);
                }
                // The senders dropped: the calls fail.
                None => drop(events),
            }
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{CallRecord, Source};
    use crate::scripted_store::{Next, Scripted};
    use crate::test_store_wrappers::{BusyWriter, ParkedWrite};
    use crate::{Config, KeyRing};
    use coffer_audit::chain::{self, ChainKey, EVENT_KIND, HEAD_KIND, Head};
    use coffer_audit::event::UserIdentity;
    use coffer_core::Scope;
    use coffer_crypto::MasterKey;
    use coffer_wire::operation::{Operation, SecretsManagerOp};
    use std::sync::mpsc;

    /// A store whose writes, in turn: commit; fail after running (rolled back, as a
    /// failed COMMIT leaves nothing); run once, are rolled back and run again (as
    /// PostgreSQL reruns a transaction after a serialization conflict), then commit.
    fn flaky() -> Scripted {
        Scripted::repeating(&[Next::Commit, Next::FailCommit, Next::Rerun])
    }

    fn read_event(scope: &Scope) -> Unwritten {
        let source = Source { ip: None, user_agent: "test".into(), console: false };
        let op = Operation::SecretsManager(SecretsManagerOp::GetSecretValue);
        let record = CallRecord::begin(scope, "r", UserIdentity::default(), &source, op, None);
        record.conclude(&Ok(b"{}".to_vec())).expect("a read's event is written apart")
    }

    /// The events stored in `scope`'s chain, verified from its head under `key`.
    fn verified(store: &dyn Store, scope: &Scope, key: &ChainKey) -> Result<u64, String> {
        let id = chain::chain_id(&scope.account, &scope.region);
        let mut result = Err(String::new());
        store
            .read(&mut |tx| {
                let head: Option<Head> =
                    tx.record(HEAD_KIND, &id)?.and_then(|b| serde_json::from_slice(&b).ok());
                let records =
                    tx.records(EVENT_KIND, &chain::chain_event_prefix(&id), None, 10_000)?;
                let newest_first = records.iter().map(|(k, b)| (k.as_str(), b.as_slice()));
                result = chain::verify(&id, head, Some(key.clone()), newest_first)
                    .map_err(|b| b.to_string());
                Ok(())
            })
            .unwrap();
        result
    }

    /// Concurrent reads whose batches commit, fail, or are run twice: exactly the calls
    /// told "written" have their event in the chain (a failed batch fails every call in
    /// it, a rerun batch appends its events once), and the chain verifies, each batch
    /// continuing what was committed before it.
    #[test]
    fn only_committed_events_are_answered_and_the_chain_verifies_across_failed_and_rerun_batches() {
        committed_events_are_answered_and_chained(Handing::Threads);
    }

    /// The same, with each batch's write handed to the store by a caller (as on SQLite,
    /// whose writer thread runs it): the store's own thread tells the callers.
    #[test]
    fn writes_handed_to_the_store_answer_only_committed_events_and_chain_them() {
        committed_events_are_answered_and_chained(Handing::ToTheStore);
    }

    fn committed_events_are_answered_and_chained(handing: Handing) {
        let store = Arc::new(flaky());
        let keys = KeyRing::open(MasterKey::generate(), store.as_ref()).unwrap();
        let app = crate::App::new(store.clone(), keys, Config::default());
        let appender = Appender::start(Arc::downgrade(&app), Duration::ZERO, handing);
        let key = ChainKey::new(&[7; 32]);
        app.audit.set_chain_key(key.clone());
        let scope = Scope::new("111122223333", "us-east-1");
        let answered = std::thread::scope(|s| {
            let callers: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        (0..40)
                            .map(|_| appender.append_blocking(read_event(&scope)))
                            .map(|r| (u64::from(r.is_ok()), u64::from(r.is_err())))
                            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
                    })
                })
                .collect();
            callers
                .into_iter()
                .map(|c| c.join().unwrap())
                .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
        });
        let (ok, failed) = answered;
        assert_eq!(ok + failed, 320);
        assert!(ok > 0 && failed > 0, "both outcomes are exercised: {ok} ok, {failed} failed");
        assert_eq!(verified(store.as_ref(), &scope, &key), Ok(ok));
    }

    /// Many callers in closed loops (as the benchmark's 64 connections) on a store whose
    /// commits are instant: each write takes the events waiting when it runs, and on such
    /// a store few wait, so without gathering nearly every event paid a commit of its own
    /// (1.6-2.0 events per commit on a tmpfs, BENCHMARKS.md, fifteenth session). With
    /// events arriving this fast, a write waits for more before taking them.
    #[test]
    fn a_write_gathers_events_that_arrive_fast_instead_of_committing_each_alone() {
        let store = Arc::new(Scripted::new());
        let keys = KeyRing::open(MasterKey::generate(), store.as_ref()).unwrap();
        let app = crate::App::new(store.clone(), keys, Config::default());
        let scope = Scope::new("111122223333", "us-east-1");
        let (callers, each) = (16, 60);
        // An appender of its own, gathering for longer than `GATHER`: how fast events arrive
        // here depends on how fast this machine hands them between threads, and on a slow
        // one (a Firecracker guest waking idle vCPUs) they arrived slower than `GATHER`
        // waits for two, so no write gathered. The mechanism is what is tested.
        let appender =
            Appender::start(Arc::downgrade(&app), Duration::from_millis(5), Handing::Threads);
        // Only the appender writes from here on: the store counts its batches' commits.
        let before = store.writes();
        std::thread::scope(|s| {
            for _ in 0..callers {
                s.spawn(|| {
                    for _ in 0..each {
                        appender.append_blocking(read_event(&scope)).unwrap();
                    }
                });
            }
        });
        let writes = store.writes() - before;
        let events = (callers * each) as u64;
        assert!(
            writes * 4 <= events,
            "{events} events in {writes} writes: fewer than 4 events a write"
        );
    }

    /// A lone caller, or a few, never wait; many fast callers wait for those expected
    /// within the gathering time, at most a write's worth.
    #[test]
    fn only_events_arriving_faster_than_two_per_gathering_time_are_waited_for() {
        assert_eq!(gather_target(0.0, GATHER), 0);
        assert_eq!(gather_target(6_000.0, GATHER), 0);
        assert_eq!(gather_target(8_000.0, GATHER), 2);
        assert_eq!(gather_target(40_000.0, GATHER), 10);
        assert_eq!(gather_target(1e9, GATHER), MAX_BATCH);
        assert_eq!(gather_target(1e9, Duration::ZERO), 0);
    }

    /// An app on a [`BusyWriter`], whose appender hands its writes to the store, and the
    /// writes it parks.
    fn app_on_a_busy_writer() -> (Arc<App>, Arc<BusyWriter>, mpsc::Receiver<ParkedWrite>) {
        let (store, writes) = BusyWriter::new();
        let keys = KeyRing::open(MasterKey::generate(), store.as_ref()).unwrap();
        let app = crate::App::new(store.clone(), keys, Config::default());
        assert!(app.appender.handing_to.is_some(), "no appender thread on such a store");
        (app, store, writes)
    }

    /// Runs the next parked write as the store's writer would, and answers it.
    fn run_parked(store: &BusyWriter, writes: &mpsc::Receiver<ParkedWrite>) {
        let write = writes
            .recv_timeout(Duration::from_secs(5))
            .expect("a write was handed to the store for the events waiting");
        store.run(write);
    }

    /// More events wait than one batch takes, and no more arrive: the write that ended
    /// hands the store another for the rest, so none is left waiting for a caller that
    /// never comes.
    #[test]
    fn events_left_over_a_full_batch_get_a_write_of_their_own() {
        let (app, store, writes) = app_on_a_busy_writer();
        let key = ChainKey::new(&[9; 32]);
        app.audit.set_chain_key(key.clone());
        let scope = Scope::new("111122223333", "us-east-1");
        let events = MAX_BATCH + 88;
        let waiting: Vec<_> =
            (0..events).map(|_| app.appender.submit(read_event(&scope))).collect();
        run_parked(&store, &writes);
        run_parked(&store, &writes);
        for receiver in waiting {
            assert_eq!(receiver.blocking_recv(), Ok(true));
        }
        assert_eq!(verified(store.as_ref(), &scope, &key), Ok(events as u64));
        assert!(writes.try_recv().is_err(), "no write is handed over for nothing");
    }

    /// A stopping server waits for the appender's writes that are with the store, as for
    /// the calls whose write is (`App::submitted_calls_ended`).
    #[test]
    fn a_stopping_server_waits_for_the_events_handed_to_the_store() {
        let (app, store, writes) = app_on_a_busy_writer();
        let scope = Scope::new("111122223333", "us-east-1");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let waiting = app.appender.submit(read_event(&scope));
        let ended = |app: &Arc<App>| {
            runtime.block_on(async {
                tokio::time::timeout(Duration::from_millis(200), app.submitted_calls_ended())
                    .await
                    .is_ok()
            })
        };
        assert!(!ended(&app), "the write is still with the store");
        run_parked(&store, &writes);
        assert_eq!(waiting.blocking_recv(), Ok(true));
        assert!(ended(&app));
    }

    /// SQLite's writer is handed the batches itself, unless an audit log file is written
    /// (its lines would then be written on the writer thread); the memory store never
    /// submits writes, so it keeps the threads (which `--dev` never uses).
    #[test]
    fn only_a_store_with_a_writer_thread_and_no_audit_log_is_handed_batches_directly() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = coffer_store::SqliteStore::open(&dir.path().join("coffer.db")).unwrap();
        assert_eq!(Handing::for_store(&sqlite, false), Handing::ToTheStore);
        assert_eq!(Handing::for_store(&sqlite, true), Handing::Threads);
        let memory = coffer_store::MemoryStore::new();
        assert_eq!(Handing::for_store(&memory, false), Handing::Threads);
    }

    /// Events handed over while the appender is dropped are still written (or failed),
    /// never left waiting.
    #[test]
    fn every_event_handed_over_is_answered() {
        let store = Arc::new(flaky());
        let keys = KeyRing::open(MasterKey::generate(), store.as_ref()).unwrap();
        let app = crate::App::new(store.clone(), keys, Config::default());
        let scope = Scope::new("111122223333", "us-east-1");
        let waiting: Vec<_> = (0..50).map(|_| app.appender.submit(read_event(&scope))).collect();
        drop(app);
        for receiver in waiting {
            // Written, failed, or dropped with the app: never left hanging.
            let _ = receiver.blocking_recv();
        }
    }
}
