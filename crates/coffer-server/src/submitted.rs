//! Mutating calls whose write is handed to the store whole (`Store::submit_write`), for
//! the front door on a store that runs writes on a thread of its own (SQLite's writer):
//! the call's stages before its write run on the async worker (its reads are a local
//! file's), its write goes to the writer owning everything it needs, and the task awaits
//! the answer without holding a thread. The usual path (`pipeline::call` on the blocking
//! pool, the write lent to the writer while that thread waits) cost four context switches
//! per PutSecretValue; this one two (see `docs/design/request-path.md`).
//!
//! Only operations that implement [`OwnedCall`] take it, each a type; every other call
//! takes the usual path.

use crate::audit;
use crate::audit_file::Lines;
use crate::pipeline::{self, Caller, Outcome};
use crate::secrets::{CreateSecret, PutSecretValue, UpdateSecret};
use crate::{App, RequestContext, Txn};
use coffer_core::AwsError;
use coffer_store::{StoreError, WriteEnded, WriteTxn};
use coffer_wire::operation::{Operation, SecretsManagerOp as Sm};
use coffer_wire::protocol::encode_response;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

/// A mutating call whose write can be handed to the store whole: its request checked as
/// far as it can be before the write ([`OwnedCall::admit`]), then its write, which the
/// store may run on another thread, and (as every write) more than once.
pub trait OwnedCall: Sized + Send + Sync + 'static {
    type Request: DeserializeOwned;
    type Response: Serialize + Send + 'static;
    /// Checks the decoded request of the call `ctx`, refusing it as the handler would
    /// before its write.
    fn admit(request: Self::Request, ctx: &RequestContext) -> Result<Self, AwsError>;
    /// The call's write in `tx`: one attempt of its transaction.
    fn write(
        &self,
        app: &App,
        ctx: &RequestContext,
        tx: &mut Txn<'_>,
    ) -> Result<Self::Response, AwsError>;

    /// The whole call on a thread that may wait for its commit (`dispatch`: the blocking
    /// pool, the console, `--dev`): the same checks and write as the submitted path.
    fn call(
        app: &App,
        ctx: &RequestContext,
        request: Self::Request,
    ) -> Result<Self::Response, AwsError> {
        let call = Self::admit(request, ctx)?;
        app.write(ctx, |tx| call.write(app, ctx, tx))
    }
}

/// How many submitted calls have not ended: counted from their submission until what is
/// left of them (`Finishing`, awaited or in a task of its own) has ended or was dropped.
/// The audit appender's writes handed to the store count too, until the store answered.
#[derive(Default)]
pub(crate) struct Unfinished(tokio::sync::watch::Sender<usize>);

impl Unfinished {
    pub(crate) fn began(&self) {
        self.0.send_modify(|calls| *calls += 1);
    }

    pub(crate) fn ended(&self) {
        self.0.send_modify(|calls| *calls = calls.saturating_sub(1));
    }

    /// Once no submitted call is left (at once if none is).
    pub(crate) async fn none_left(&self) {
        let mut calls = self.0.subscribe();
        let left = *calls.borrow();
        if left > 0 {
            tracing::info!(calls = left, "waiting for the calls whose writes are with the store");
        }
        // The sender lives as long as `self`.
        let _ = calls.wait_for(|calls| *calls == 0).await;
    }
}

/// Where [`stage`] left a call.
pub(crate) enum Staged {
    /// It ended before its write: its outcome, its event still to write (boxed: an
    /// `Outcome` is large, and a refusal is the rare case).
    Ended(Box<Outcome>),
    /// Its write is with the store: the rest of the call, to await.
    Writing(Finishing),
}

/// Runs every stage of `op` up to its write, and hands the write to the store, when `op`
/// is one whose write can be handed whole; gives `body` back for any other.
pub(crate) fn stage(
    app: &Arc<App>,
    caller: &Caller,
    op: Operation,
    body: Vec<u8>,
) -> Result<Staged, Vec<u8>> {
    match op {
        Operation::SecretsManager(Sm::PutSecretValue) => {
            Ok(pipeline::stage::<PutSecretValue>(app, caller, op, body))
        }
        Operation::SecretsManager(Sm::UpdateSecret) => {
            Ok(pipeline::stage::<UpdateSecret>(app, caller, op, body))
        }
        Operation::SecretsManager(Sm::CreateSecret) => {
            Ok(pipeline::stage::<CreateSecret>(app, caller, op, body))
        }
        _ => Err(body),
    }
}

/// A call's write on its way to the store, and what its answer is built from.
struct Submitted<C: OwnedCall> {
    app: Arc<App>,
    ctx: RequestContext,
    call: C,
    /// The call's event, to commit with its change (`CallRecord::for_write`).
    event: Option<audit::ForWrite>,
    /// The last attempt's answer and audit-log lines, from the writer to the task.
    attempt: Mutex<Attempt<C::Response>>,
}

/// The call has ended once nothing holds it: the writer dropped its closure before it
/// answered, and what was left of the call (`finish`) has ended or was dropped.
impl<C: OwnedCall> Drop for Submitted<C> {
    fn drop(&mut self) {
        self.app.unfinished.ended();
    }
}

struct Attempt<T> {
    out: Option<Result<T, AwsError>>,
    lines: Lines,
}

impl<C: OwnedCall> Submitted<C> {
    /// One attempt of the write, as `App::write` makes it.
    fn run(&self, tx: &mut dyn WriteTxn) -> Result<(), StoreError> {
        let mut attempt = self.attempt.lock().unwrap_or_else(PoisonError::into_inner);
        let Attempt { out, lines } = &mut *attempt;
        let (app, ctx) = (&*self.app, &self.ctx);
        let mut write = |tx: &mut Txn<'_>| self.call.write(app, ctx, tx);
        app.attempt(&ctx.audit, self.event.as_ref(), lines, tx, &mut write, out)
    }
}

/// Hands `call`'s write (for the call `ctx`, admitted) to the store, and returns the rest
/// of the call: awaiting the write's answer, then the call's answer and event, as
/// `App::write` and `pipeline::run` make them.
pub(crate) fn submit<C: OwnedCall>(app: &Arc<App>, ctx: RequestContext, call: C) -> Finishing {
    let handoff = ctx.take_handoff();
    let event = ctx.audit.for_write();
    let attempt = Mutex::new(Attempt { out: None, lines: Lines::default() });
    // Counted until `Submitted` is dropped (a stopping server waits for it to end).
    app.unfinished.began();
    let submitted = Arc::new(Submitted { app: app.clone(), ctx, call, event, attempt });
    let (tell, answer) = tokio::sync::oneshot::channel();
    let running = submitted.clone();
    app.store.submit_write(
        handoff,
        Box::new(move |tx| running.run(tx)),
        Box::new(move |ended| {
            // A task that is gone has handed its rest to another (`Finishing`'s drop).
            let _ = tell.send(ended);
        }),
    );
    Finishing(Some(Box::pin(finish(submitted, answer))))
}

/// The rest of a submitted call once the store answers.
async fn finish<C: OwnedCall>(
    submitted: Arc<Submitted<C>>,
    answer: tokio::sync::oneshot::Receiver<WriteEnded>,
) -> Result<Vec<u8>, AwsError> {
    let result = match answer.await {
        Ok(WriteEnded::Done(result)) => result,
        // As a panic on the blocking pool is answered (`http::through_pipeline`).
        Ok(WriteEnded::Panicked(_)) | Err(_) => {
            tracing::error!("handler panicked");
            return Err(AwsError::internal());
        }
    };
    let Attempt { out, lines } = {
        let mut attempt = submitted.attempt.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::replace(&mut *attempt, Attempt { out: None, lines: Lines::default() })
    };
    let (app, record) = (&submitted.app, &submitted.ctx.audit);
    let result = app.written(record, result, out, lines).map(|answer| encode_response(&answer));
    let unwritten = record.conclude(&result);
    audit::write_async(app, unwritten).await?;
    result
}

/// The rest of a submitted call. Hyper drops a connection's task when its client goes
/// away; dropped before it ended, the rest runs on in a task of its own, so a write the
/// store runs anyway still has its audit-log lines written once committed, and a failed
/// call its event: the call ends whole whether or not anyone awaits its answer.
pub(crate) struct Finishing(Option<Rest>);

/// What is left of a call once its write is with the store.
type Rest = Pin<Box<dyn Future<Output = Result<Vec<u8>, AwsError>> + Send>>;

impl Future for Finishing {
    type Output = Result<Vec<u8>, AwsError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(rest) = self.0.as_mut() else { return Poll::Ready(Err(AwsError::internal())) };
        // A panic is answered as one on the blocking pool is (`http::through_pipeline`).
        let polled =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rest.as_mut().poll(cx)))
                .unwrap_or_else(|_| {
                    tracing::error!("handler panicked");
                    Poll::Ready(Err(AwsError::internal()))
                });
        if polled.is_ready() {
            self.0 = None;
        }
        polled
    }
}

impl Drop for Finishing {
    fn drop(&mut self) {
        let Some(rest) = self.0.take() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(rest);
            }
            // Outside a runtime (none drops it there today): on a thread of its own.
            Err(_) => {
                let _ = std::thread::Builder::new().name("coffer-finishing".to_owned()).spawn(
                    move || {
                        let runtime = tokio::runtime::Builder::new_current_thread().build();
                        if let Ok(runtime) = runtime {
                            let _ = runtime.block_on(rest);
                        }
                    },
                );
            }
        }
    }
}
