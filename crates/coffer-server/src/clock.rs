//! The service clock: wall time in milliseconds that never repeats or goes back.
//!
//! AWS compares LastChangedDate at sub-second precision and two quick updates
//! must compare strictly, so every reading is at least one millisecond after
//! the previous one, even if the wall clock stalls or steps back.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static LAST: AtomicI64 = AtomicI64::new(0);

/// Milliseconds since the epoch, strictly increasing across calls in this process.
pub fn now_ms() -> i64 {
    let wall =
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = wall.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn readings_strictly_increase() {
        let a = super::now_ms();
        let b = super::now_ms();
        assert!(b > a);
    }
}
