//! Rotation schedules: any `ScheduleExpression` (`rate(...)`, `cron(...)`, anything) and
//! `Duration`, or a JSON `RotationRules` object, checked as RotateSecret checks them; a
//! schedule that is accepted then computes its windows from a few base times. Must never
//! panic, and every window must end after it starts.
#![no_main]

use coffer_core::model::RotationRules;
use coffer_core::schedule::Plan;
use libfuzzer_sys::fuzz_target;

/// 2024-02-29 00:00 UTC and other base times worth starting from: a leap day, an epoch
/// edge, a moment inside a day, and far ahead.
const BASES: [i64; 5] =
    [1_709_164_800_000, 0, 1_709_164_800_000 + 13 * 3_600_000 + 1, 4_102_444_800_000, 86_399_999];

fuzz_target!(|data: &[u8]| {
    let rules = match serde_json::from_slice::<RotationRules>(data) {
        Ok(rules) => rules,
        Err(_) => {
            let Ok(text) = std::str::from_utf8(data) else { return };
            // `expression` or `expression|duration`.
            let (expr, duration) = match text.split_once('|') {
                Some((e, d)) => (e, Some(d.to_owned())),
                None => (text, None),
            };
            RotationRules {
                automatically_after_days: None,
                duration,
                schedule_expression: Some(expr.to_owned()),
            }
        }
    };
    let Ok(plan) = Plan::parse(&rules) else { return };
    for base in BASES {
        let window = plan.next_window(base);
        assert!(window.end_ms > window.start_ms, "{rules:?} from {base}: {window:?}");
        let _ = window.next_rotation_date();
        let _ = plan.computed_days(base);
        // The window after this one starts after it (no schedule stands still).
        let next = plan.next_window(window.start_ms);
        assert!(next.start_ms > window.start_ms, "{rules:?} from {base}: {window:?} then {next:?}");
    }
});
