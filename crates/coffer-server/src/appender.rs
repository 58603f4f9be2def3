//! Commits the audit events that are not part of a change (read-only calls, failed
//! calls) in batches: concurrent calls hand their event to one thread, which appends
//! every event waiting in one write transaction, so a thousand reads cost a few
//! commits instead of a thousand. A call is answered only once its batch committed
//! (fail-closed stays as it was), and an async caller waits without holding a thread.

use crate::App;
use crate::audit::Unwritten;
use coffer_core::AwsError;
use coffer_store::StoreError;
use std::sync::Weak;
use std::sync::mpsc::{self, Receiver, Sender};
use tokio::sync::oneshot;

/// The most events committed in one transaction.
const MAX_BATCH: usize = 512;

/// Whether an event was committed (or the trail is fail-open): `false` fails its call.
type Written = oneshot::Sender<bool>;

/// The sending side of the appender thread; dropping it stops the thread.
pub struct Appender {
    jobs: Sender<(Unwritten, Written)>,
}

impl std::fmt::Debug for Appender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Appender")
    }
}

impl Appender {
    /// Starts the thread appending to `app`'s store. It holds `app` weakly, so the
    /// app can be dropped; the thread ends when its `Appender` is.
    pub fn start(app: Weak<App>) -> Appender {
        let (jobs, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("coffer-audit-appender".to_owned())
            .spawn(move || run(&app, &queue))
            .expect("the audit appender thread starts");
        Appender { jobs }
    }

    fn submit(&self, event: Unwritten) -> oneshot::Receiver<bool> {
        let (written, receiver) = oneshot::channel();
        // If the thread is gone, `written` is dropped with the job and the
        // caller sees the event unwritten.
        if self.jobs.send((event, written)).is_ok() {
            crate::metrics::appender_queue(1);
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

/// The appender thread: takes whatever events are waiting (up to [`MAX_BATCH`]),
/// appends them in one transaction, tells each caller, and starts over. Events that
/// arrive during a commit form the next batch, so batches grow with the load.
fn run(app: &Weak<App>, queue: &Receiver<(Unwritten, Written)>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        crate::metrics::appender_queue(-(batch.len() as i64));
        crate::metrics::appender_batch(batch.len());
        let Some(app) = app.upgrade() else { return };
        let committed = app.store.write(&mut |tx| {
            let mut heads = app.audit.heads();
            for (event, _) in &batch {
                crate::audit::append_unwritten(&app, tx, &mut heads, event)
                    .map_err(|_| StoreError::Aborted)?;
            }
            heads.store(tx)
        });
        let written = match committed {
            Ok(()) => true,
            Err(error) => {
                tracing::error!(%error, events = batch.len(), "could not commit audit events");
                crate::metrics::audit_write_failures(batch.len() as u64);
                app.audit.settings().fail_open
            }
        };
        drop(app);
        for (_, caller) in batch {
            let _ = caller.send(written);
        }
    }
}
