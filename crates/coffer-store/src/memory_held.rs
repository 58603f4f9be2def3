//! Which of a memory store's two locks this thread holds, so that a transaction begun
//! inside another of the same store panics at once, naming the hazard, instead of
//! deadlocking (debug builds; release builds keep nothing and check nothing).
//!
//! The memory store's locks are not re-entrant (docs/design/memory-trail.md):
//! - a read nested in a read that touched the trail waits forever for the trail's lock,
//!   which its own thread holds;
//! - a read nested in any read waits forever as soon as a writer is queued between the
//!   two (the state's `RwLock` lets no new reader in while a writer waits, and the writer
//!   waits for the outer read);
//! - a read or write inside a write, or a trail-only write inside a transaction that
//!   holds the trail, waits for itself.
//!
//! None of these exists today, and the ones that need a queued writer would deadlock only
//! under load: this check makes each fail on its first run in any debug test instead
//! (every Python test runs the debug binary on `--dev`), whoever else is waiting.
//! Only the hold of the same lock of the same store, or the state's after the trail's
//! (against the store's order, state then trail), is refused; nested transactions of two
//! different stores are fine.

/// One of a memory store's two locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lock {
    /// The secrets and every record kind but the trail's (`RwLock<State>`).
    State,
    /// The audit trail's records (`Mutex<Records>`).
    Trail,
}

/// A note that this thread holds (or is about to take) a lock of a store; dropping it
/// (when the lock is released, or the holder unwinds) removes the note.
#[must_use = "the note lasts as long as the lock it stands for"]
pub(crate) struct Held {
    #[cfg(debug_assertions)]
    note: (usize, Lock),
}

#[cfg(debug_assertions)]
thread_local! {
    /// The (store, lock) pairs this thread holds, innermost last. A lock's bookkeeping,
    /// not a call's data: nothing reads it but [`taking`].
    static HELD: std::cell::RefCell<Vec<(usize, Lock)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Notes that this thread takes `lock` of the store identified by `store` (an address
/// that stays the store's while any of its locks is held). Call it before taking the
/// lock: in debug builds it panics if the lock could wait for this very thread.
#[cfg_attr(not(debug_assertions), inline(always))]
pub(crate) fn taking(store: usize, lock: Lock) -> Held {
    #[cfg(debug_assertions)]
    {
        HELD.with(|held| {
            let mut held = held.borrow_mut();
            let clash = held
                .iter()
                .find(|(s, l)| *s == store && (*l == lock || *l == Lock::Trail))
                .map(|&(_, holding)| holding);
            if let Some(holding) = clash {
                // Release the RefCell before unwinding: the notes' drops borrow it.
                drop(held);
                panic!(
                    "memory store: a transaction begun inside another of the same store on \
                     the same thread (taking its {lock:?} lock while holding its {holding:?} \
                     lock) would deadlock; finish the outer transaction first \
                     (docs/design/memory-trail.md)"
                );
            }
            held.push((store, lock));
        });
        Held { note: (store, lock) }
    }
    #[cfg(not(debug_assertions))]
    {
        let _ = (store, lock);
        Held {}
    }
}

#[cfg(debug_assertions)]
impl Drop for Held {
    fn drop(&mut self) {
        // `try_with`: a note dropped while the thread's locals are torn down has no list.
        let _ = HELD.try_with(|held| {
            let mut held = held.borrow_mut();
            if let Some(at) = held.iter().rposition(|note| *note == self.note) {
                held.remove(at);
            }
        });
    }
}

#[cfg(all(test, debug_assertions))]
mod tests {
    use crate::{MemoryStore, Store};
    use std::sync::Arc;
    use std::sync::mpsc;
    use std::time::Duration;

    const EVENT: &str = "audit.event";

    /// Runs `f` on a thread of its own: `Ok(())` if it returns, `Err(message)` if it
    /// panics, `Err("deadlocked")` if it neither returns nor panics within 10 s (the thread
    /// is then left waiting: the test fails anyway).
    fn outcome(f: impl FnOnce() + Send + 'static) -> Result<(), String> {
        let (done, finished) = mpsc::channel();
        std::thread::spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let _ = done.send(result.map_err(|cause| {
                cause
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| cause.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            }));
        });
        finished.recv_timeout(Duration::from_secs(10)).unwrap_or_else(|_| Err("deadlocked".into()))
    }

    fn refused(result: Result<(), String>) {
        let message = result.expect_err("the nested transaction ran");
        assert!(message.contains("would deadlock"), "{message}");
    }

    #[test]
    fn a_read_nested_in_a_read_that_touched_the_trail_panics_instead_of_deadlocking() {
        let store = Arc::new(MemoryStore::new());
        let inner = store.clone();
        refused(outcome(move || {
            store
                .read(&mut |tx| {
                    tx.record(EVENT, "k")?;
                    inner.read(&mut |tx| tx.record(EVENT, "k").map(drop))
                })
                .unwrap();
        }));
    }

    /// The state's lock lets no new reader in while a writer waits, so a nested read
    /// deadlocks once a writer queues between the two, trail or not: refused, and the
    /// writer gets its turn once the outer read unwound.
    #[test]
    fn a_read_nested_in_a_read_panics_even_when_no_trail_is_read() {
        let store = Arc::new(MemoryStore::new());
        let (outer, inner, writer) = (store.clone(), store.clone(), store.clone());
        let (queued, wait_for_writer) = mpsc::channel();
        refused(outcome(move || {
            outer
                .read(&mut |_| {
                    let (queued, writer) = (queued.clone(), writer.clone());
                    std::thread::spawn(move || {
                        queued.send(()).unwrap();
                        writer.write(&mut |tx| tx.put_setting("s", b"1")).unwrap();
                    });
                    wait_for_writer.recv().unwrap();
                    // Time for the writer to queue on the state's lock.
                    std::thread::sleep(Duration::from_millis(100));
                    inner.read(&mut |tx| tx.setting("s").map(drop))
                })
                .unwrap();
        }));
        let written = || {
            let mut value = None;
            store
                .read(&mut |tx| {
                    value = tx.setting("s")?;
                    Ok(())
                })
                .unwrap();
            value.is_some()
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !written() {
            assert!(std::time::Instant::now() < deadline, "the writer never ran");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_transaction_inside_a_write_or_a_trail_write_inside_a_trail_holder_panics() {
        let store = Arc::new(MemoryStore::new());
        let inner = store.clone();
        refused(outcome(move || {
            store.write(&mut |_| inner.read(&mut |_| Ok(()))).unwrap();
        }));
        let store = Arc::new(MemoryStore::new());
        let inner = store.clone();
        refused(outcome(move || {
            store
                .read(&mut |tx| {
                    tx.record(EVENT, "k")?;
                    inner.write_trail(&mut |tx| tx.put_record(EVENT, "k", b"v"))
                })
                .unwrap();
        }));
        let store = Arc::new(MemoryStore::new());
        let inner = store.clone();
        refused(outcome(move || {
            store
                .write_trail(&mut |tx| {
                    tx.put_record(EVENT, "k", b"v")?;
                    inner.read(&mut |_| Ok(()))
                })
                .unwrap();
        }));
    }

    /// Only the same store's locks are refused; a refused transaction leaves nothing
    /// noted behind it; a trail-only write inside a read that has not touched the trail
    /// keeps the store's order (state, then trail) and runs.
    #[test]
    fn other_stores_nest_and_a_refusal_leaves_the_store_usable() {
        let (one, two) = (Arc::new(MemoryStore::new()), Arc::new(MemoryStore::new()));
        let (a, b) = (one.clone(), two.clone());
        outcome(move || {
            a.read(&mut |tx| {
                tx.record(EVENT, "k")?;
                b.read(&mut |tx| tx.record(EVENT, "k").map(drop))
            })
            .unwrap();
        })
        .unwrap();
        let (a, inner) = (one.clone(), one.clone());
        outcome(move || {
            a.read(&mut |_| inner.write_trail(&mut |tx| tx.put_record(EVENT, "k", b"v"))).unwrap();
        })
        .unwrap();
        let (a, inner) = (one.clone(), one.clone());
        outcome(move || {
            let nested = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                a.read(&mut |_| inner.read(&mut |_| Ok(()))).unwrap();
            }));
            assert!(nested.is_err(), "the nested read was refused");
            // Same thread, after the refusal unwound: nothing is noted as held any more.
            a.read(&mut |tx| tx.record(EVENT, "k").map(drop)).unwrap();
            a.write(&mut |tx| tx.put_setting("s", b"1")).unwrap();
        })
        .unwrap();
        one.read(&mut |tx| {
            assert_eq!(tx.record(EVENT, "k")?.as_deref(), Some(&b"v"[..]));
            assert_eq!(tx.setting("s")?.as_deref(), Some(&b"1"[..]));
            Ok(())
        })
        .unwrap();
    }
}
