//! Rotation schedules: `RotationRules` checked with AWS's restrictions, and the rotation
//! windows they define, in UTC.
//!
//! AWS's rules (Secrets Manager user guide, "Rotation schedules"): `AutomaticallyAfterDays`
//! or `rate(N days)` open a window at 00:00 UTC of the day N days after the last rotation
//! (or manual value change); `rate(N hours)` windows start at midnight and every N hours
//! (at least 4); `cron()` is EventBridge's six-field form with minutes `0` and year `*`.
//! A window lasts `Duration` ("Nh"), by default to the end of the UTC day for daily
//! schedules and one hour for hourly ones, and may run neither into the next window nor
//! into the next UTC day. `NextRotationDate` is the last second of the next window.
//!
//! No AWS capture gives the messages for bad rules, so they are Coffer's own, worded like
//! AWS's other InvalidParameterException messages.

use crate::AwsError;
use crate::model::{DAY_MS, Millis, RotationRules};

const HOUR_MS: Millis = 3_600_000;
/// Secrets Manager rotates at most every four hours.
const MIN_INTERVAL_HOURS: u32 = 4;
/// How far ahead a cron expression is searched for its next day (leap days included).
const CRON_SEARCH_DAYS: i64 = 366 * 8;

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Every N days (`AutomaticallyAfterDays` or `rate(N days)`), counted from the last rotation.
    Days(u32),
    /// Every N hours from midnight UTC, reset daily.
    Hours(u32),
    Cron(Box<Cron>),
}

/// A parsed rotation schedule with its window length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub schedule: Schedule,
    /// The window length in hours as given (`Duration`), `None` for the default.
    pub duration_hours: Option<u32>,
}

/// A rotation window: `[start_ms, end_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start_ms: Millis,
    pub end_ms: Millis,
}

impl Window {
    /// NextRotationDate: "on or before this date", the last second of the window.
    pub fn next_rotation_date(&self) -> Millis {
        self.end_ms - 1000
    }

    /// The moment in this window at which the secret named by `seed` (its ARN) rotates.
    ///
    /// AWS rotates "at a random time within the window"; Coffer picks a whole second
    /// uniformly in `[start_ms, next_rotation_date()]` from a hash of `seed` and the
    /// window's start, so every node (and every restart) computes the same moment without
    /// storing it, secrets sharing a schedule spread over the window instead of all
    /// rotating at its first second, and the moment is never past NextRotationDate.
    pub fn moment(&self, seed: &str) -> Millis {
        let seconds = (self.end_ms - self.start_ms) / 1000;
        if seconds <= 0 {
            return self.start_ms;
        }
        let h = stable_hash(seed.as_bytes(), self.start_ms);
        self.start_ms + (h % seconds as u64) as Millis * 1000
    }
}

/// A hash that is the same on every build and platform (FNV-1a, then SplitMix64's
/// finaliser to spread the low bits): the nodes of a cluster must agree on it, which
/// `std`'s unspecified `DefaultHasher` does not promise. It needs no secrecy: it only
/// spreads rotations over their windows.
fn stable_hash(bytes: &[u8], salt: Millis) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes.iter().chain(salt.to_le_bytes().iter()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

fn bad(message: impl Into<String>) -> AwsError {
    AwsError::invalid_parameter(message)
}

impl Plan {
    /// Checks `rules` as RotateSecret receives them (the model already bounded their
    /// lengths, patterns and AutomaticallyAfterDays' range).
    pub fn parse(rules: &RotationRules) -> Result<Plan, AwsError> {
        let schedule = match (&rules.automatically_after_days, &rules.schedule_expression) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    "You can't specify both AutomaticallyAfterDays and ScheduleExpression in RotationRules.",
                ));
            }
            (Some(days), None) => {
                if !(1..=1000).contains(days) {
                    return Err(bad("RotationRules.AutomaticallyAfterDays must be within 1-1000."));
                }
                Schedule::Days(*days as u32)
            }
            (None, Some(expr)) => parse_expression(expr)?,
            (None, None) => {
                return Err(bad(
                    "RotationRules must contain either AutomaticallyAfterDays or ScheduleExpression.",
                ));
            }
        };
        let duration_hours = match &rules.duration {
            None => None,
            Some(d) => Some(parse_duration(d)?),
        };
        let plan = Plan { schedule, duration_hours };
        plan.check_duration()?;
        Ok(plan)
    }

    /// The window must end by the end of its UTC day and before the next window starts.
    fn check_duration(&self) -> Result<(), AwsError> {
        let Some(hours) = self.duration_hours else { return Ok(()) };
        let too_long = || {
            bad(format!(
                "The rotation window Duration {hours}h is too long: a window can't extend into the next rotation window or the next UTC day."
            ))
        };
        match &self.schedule {
            Schedule::Days(_) if hours > 24 => Err(too_long()),
            Schedule::Hours(n) if hours > *n || hours > 24 => Err(too_long()),
            Schedule::Cron(c) => {
                let hours_of_day: Vec<u32> = (0..24).filter(|h| c.hours[*h as usize]).collect();
                let last = *hours_of_day.last().unwrap_or(&0);
                let min_gap = hours_of_day.windows(2).map(|w| w[1] - w[0]).min().unwrap_or(24);
                if last + hours > 24 || hours > min_gap { Err(too_long()) } else { Ok(()) }
            }
            _ => Ok(()),
        }
    }

    /// The window length in milliseconds for a window starting at `start_ms`.
    fn window_len(&self, start_ms: Millis) -> Millis {
        if let Some(h) = self.duration_hours {
            return h as Millis * HOUR_MS;
        }
        let to_end_of_day = DAY_MS - start_ms.rem_euclid(DAY_MS);
        match &self.schedule {
            Schedule::Days(_) => to_end_of_day,
            Schedule::Hours(_) => HOUR_MS,
            // One rotation a day: the day's rest; several: an hour each, as for rate(hours).
            Schedule::Cron(c) if c.hours.iter().filter(|h| **h).count() == 1 => to_end_of_day,
            Schedule::Cron(_) => HOUR_MS,
        }
    }

    /// The first window after a rotation (or value change) at `base_ms`.
    pub fn next_window(&self, base_ms: Millis) -> Window {
        let start_ms = match &self.schedule {
            Schedule::Days(n) => day_start(base_ms) + *n as Millis * DAY_MS,
            Schedule::Hours(n) => {
                let step = *n as Millis * HOUR_MS;
                let mut day = day_start(base_ms);
                loop {
                    let mut t = day;
                    while t < day + DAY_MS {
                        if t > base_ms {
                            break;
                        }
                        t += step;
                    }
                    if t < day + DAY_MS {
                        break t;
                    }
                    day += DAY_MS;
                }
            }
            Schedule::Cron(c) => c.next_after(base_ms).unwrap_or(Millis::MAX / 2),
        };
        Window { start_ms, end_ms: start_ms + self.window_len(start_ms) }
    }

    /// AutomaticallyAfterDays as DescribeSecret reports it for a schedule expression
    /// ("calculated from the rotation schedule"): the whole days between the first two
    /// windows after `base_ms`, at least 1.
    pub fn computed_days(&self, base_ms: Millis) -> i64 {
        match &self.schedule {
            Schedule::Days(n) => *n as i64,
            Schedule::Hours(_) => 1,
            Schedule::Cron(_) => {
                let first = self.next_window(base_ms);
                let second = self.next_window(first.start_ms);
                ((second.start_ms - first.start_ms) / DAY_MS).max(1)
            }
        }
    }
}

fn day_start(ms: Millis) -> Millis {
    ms - ms.rem_euclid(DAY_MS)
}

fn parse_duration(d: &str) -> Result<u32, AwsError> {
    let invalid = || bad(format!("The rotation window Duration {d} is not valid: use 1h to 24h."));
    let hours: u32 = d.strip_suffix('h').and_then(|n| n.parse().ok()).ok_or_else(invalid)?;
    if (1..=24).contains(&hours) { Ok(hours) } else { Err(invalid()) }
}

fn parse_expression(expr: &str) -> Result<Schedule, AwsError> {
    let invalid = |why: &str| bad(format!("The ScheduleExpression {expr} is not valid: {why}"));
    if let Some(inner) = expr.strip_prefix("rate(").and_then(|s| s.strip_suffix(')')) {
        let mut parts = inner.split(' ');
        let (Some(n), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(invalid("use rate(N days) or rate(N hours)."));
        };
        let n: u32 = n.parse().map_err(|_| invalid("the rate must be a whole number."))?;
        return match unit {
            "day" | "days" if (1..=999).contains(&n) => Ok(Schedule::Days(n)),
            "day" | "days" => Err(invalid("a rate in days must be between 1 and 999.")),
            "hour" | "hours" if (MIN_INTERVAL_HOURS..=999 * 24).contains(&n) => {
                if n >= 24 && n.is_multiple_of(24) {
                    Ok(Schedule::Days(n / 24))
                } else if n < 24 {
                    Ok(Schedule::Hours(n))
                } else {
                    Err(invalid("a rate of a day or more must be given in whole days."))
                }
            }
            "hour" | "hours" => {
                Err(invalid("Secrets Manager rotates a secret at most every four hours."))
            }
            _ => Err(invalid("the unit must be hours or days.")),
        };
    }
    if let Some(inner) = expr.strip_prefix("cron(").and_then(|s| s.strip_suffix(')')) {
        return Cron::parse(inner)
            .map(|c| Schedule::Cron(Box::new(c)))
            .map_err(|why| invalid(&why));
    }
    Err(invalid("it must be a rate() or cron() expression."))
}

/// The day-of-month field.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DayOfMonth {
    Any,
    Days([bool; 32]),
    Last,
}

/// The day-of-week field (1 = SUN .. 7 = SAT).
#[derive(Debug, Clone, PartialEq, Eq)]
enum DayOfWeek {
    Any,
    Days([bool; 8]),
    /// The last such weekday of the month (`5L`).
    Last(u32),
    /// The nth such weekday of the month (`2#1`).
    Nth(u32, u32),
}

/// An AWS cron expression: `cron(0 hours day-of-month month day-of-week *)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    hours: [bool; 24],
    dom: DayOfMonth,
    months: [bool; 13],
    dow: DayOfWeek,
}

const MONTHS: [&str; 12] =
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// Parses a list field (`*`, `a`, `a-b`, `a/n`, `*/n`, `a-b/n`, comma lists) into a set of
/// values in `lo..=hi`, with `names` for `lo..` (month and weekday names).
fn parse_set(
    field: &str,
    lo: u32,
    hi: u32,
    names: &[&str],
    what: &str,
) -> Result<Vec<u32>, String> {
    let value = |s: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(lo + i as u32);
        }
        match s.parse::<u32>() {
            Ok(v) if (lo..=hi).contains(&v) => Ok(v),
            _ => Err(format!("{what} must be between {lo} and {hi}.")),
        }
    };
    let mut out = Vec::new();
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let s: u32 = s.parse().map_err(|_| format!("bad increment in {what}."))?;
                if s == 0 {
                    return Err(format!("bad increment in {what}."));
                }
                (r, s)
            }
            None => (part, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else if part.contains('/') {
            (value(range)?, hi)
        } else {
            let v = value(range)?;
            (v, v)
        };
        if a > b {
            return Err(format!("bad range in {what}."));
        }
        out.extend((a..=b).step_by(step as usize));
    }
    Ok(out)
}

impl Cron {
    fn parse(inner: &str) -> Result<Cron, String> {
        let fields: Vec<&str> = inner.split(' ').collect();
        let [minutes, hours, dom, month, dow, year] = fields[..] else {
            return Err("a cron expression has six fields: minutes hours day-of-month month day-of-week year.".into());
        };
        if minutes != "0" {
            return Err("the minutes field must be 0.".into());
        }
        if year != "*" {
            return Err("the year field must be *.".into());
        }
        let mut hour_set = [false; 24];
        for h in parse_set(hours, 0, 23, &[], "hours")? {
            hour_set[h as usize] = true;
        }
        let fire: Vec<u32> = (0..24).filter(|h| hour_set[*h as usize]).collect();
        if fire.windows(2).any(|w| w[1] - w[0] < MIN_INTERVAL_HOURS) {
            return Err("Secrets Manager rotates a secret at most every four hours.".into());
        }
        let mut months = [false; 13];
        for m in parse_set(month, 1, 12, &MONTHS, "month")? {
            months[m as usize] = true;
        }
        let dom = match dom {
            "?" => DayOfMonth::Any,
            "L" => DayOfMonth::Last,
            field => {
                let mut days = [false; 32];
                for d in parse_set(field, 1, 31, &[], "day-of-month")? {
                    days[d as usize] = true;
                }
                DayOfMonth::Days(days)
            }
        };
        let weekday = |s: &str| parse_set(s, 1, 7, &WEEKDAYS, "day-of-week").map(|v| v[0]);
        let dow = match dow {
            "?" => DayOfWeek::Any,
            field if field.len() > 1 && field.ends_with('L') => {
                DayOfWeek::Last(weekday(&field[..field.len() - 1])?)
            }
            field if field.contains('#') => {
                let (d, n) = field.split_once('#').unwrap_or_default();
                let n: u32 = n.parse().map_err(|_| "bad # in day-of-week.".to_string())?;
                if !(1..=5).contains(&n) {
                    return Err("the # in day-of-week must be between 1 and 5.".into());
                }
                DayOfWeek::Nth(weekday(d)?, n)
            }
            field => {
                let mut days = [false; 8];
                for d in parse_set(field, 1, 7, &WEEKDAYS, "day-of-week")? {
                    days[d as usize] = true;
                }
                DayOfWeek::Days(days)
            }
        };
        // EventBridge's rule: one of day-of-month and day-of-week must be `?`.
        let dom_any = dom == DayOfMonth::Any;
        let dow_any = dow == DayOfWeek::Any;
        if dom_any == dow_any {
            return Err("one of day-of-month and day-of-week must be ?, and only one.".into());
        }
        let cron = Cron { hours: hour_set, dom, months, dow };
        if cron.next_after(0).is_none() {
            return Err("the expression never matches a day.".into());
        }
        Ok(cron)
    }

    fn matches_day(&self, days_since_epoch: i64) -> bool {
        let (y, m, d) = civil_from_days(days_since_epoch);
        if !self.months[m as usize] {
            return false;
        }
        let month_len = days_in_month(y, m);
        // 1970-01-01 was a Thursday (5 in cron's 1 = Sunday numbering).
        let weekday = ((days_since_epoch + 4).rem_euclid(7) + 1) as u32;
        let dom_ok = match &self.dom {
            DayOfMonth::Any => true,
            DayOfMonth::Days(days) => days[d as usize],
            DayOfMonth::Last => d == month_len,
        };
        let dow_ok = match &self.dow {
            DayOfWeek::Any => true,
            DayOfWeek::Days(days) => days[weekday as usize],
            DayOfWeek::Last(w) => *w == weekday && d + 7 > month_len,
            DayOfWeek::Nth(w, n) => *w == weekday && (d - 1) / 7 + 1 == *n,
        };
        dom_ok && dow_ok
    }

    /// The first firing strictly after `ms`.
    fn next_after(&self, ms: Millis) -> Option<Millis> {
        let first_day = ms.div_euclid(DAY_MS);
        for day in first_day..first_day + CRON_SEARCH_DAYS {
            if !self.matches_day(day) {
                continue;
            }
            for h in 0..24 {
                let t = day * DAY_MS + h as Millis * HOUR_MS;
                if self.hours[h] && t > ms {
                    return Some(t);
                }
            }
        }
        None
    }
}

/// (year, month 1..12, day 1..31) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-02-03T17:45:00Z
    const LAB: Millis = 1_770_140_700_000;

    fn rules(days: Option<i64>, expr: Option<&str>, duration: Option<&str>) -> RotationRules {
        RotationRules {
            automatically_after_days: days,
            schedule_expression: expr.map(str::to_owned),
            duration: duration.map(str::to_owned),
        }
    }

    fn plan(expr: &str) -> Plan {
        Plan::parse(&rules(None, Some(expr), None)).unwrap()
    }

    fn iso(ms: Millis) -> String {
        let (y, m, d) = civil_from_days(ms.div_euclid(DAY_MS));
        let s = ms.rem_euclid(DAY_MS) / 1000;
        format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", s / 3600, s / 60 % 60, s % 60)
    }

    #[test]
    fn thirty_days_after_a_change_ends_at_the_last_second_of_that_day() {
        // The real observation in the reference: AutomaticallyAfterDays=30, value changed
        // 2026-02-03 ~17:4x UTC -> NextRotationDate 2026-03-05T23:59:59Z.
        let p = Plan::parse(&rules(Some(30), None, None)).unwrap();
        let w = p.next_window(LAB);
        assert_eq!(iso(w.start_ms), "2026-03-05T00:00:00Z");
        assert_eq!(iso(w.next_rotation_date()), "2026-03-05T23:59:59Z");
        assert_eq!(p.computed_days(LAB), 30);
    }

    #[test]
    fn rate_in_days_is_automatically_after_days_and_duration_shortens_the_window() {
        let p = Plan::parse(&rules(None, Some("rate(10 days)"), Some("3h"))).unwrap();
        let w = p.next_window(LAB);
        assert_eq!(iso(w.start_ms), "2026-02-13T00:00:00Z");
        assert_eq!(iso(w.next_rotation_date()), "2026-02-13T02:59:59Z");
        assert_eq!(p.computed_days(LAB), 10);
    }

    #[test]
    fn rate_in_hours_starts_at_midnight_and_resets_daily() {
        let p = plan("rate(5 hours)");
        // 17:45 -> windows at 0,5,10,15,20: next 20:00, one hour long.
        let w = p.next_window(LAB);
        assert_eq!(iso(w.start_ms), "2026-02-03T20:00:00Z");
        assert_eq!(iso(w.next_rotation_date()), "2026-02-03T20:59:59Z");
        // After 20:00 the next window is the next day's midnight, not 01:00.
        assert_eq!(iso(p.next_window(w.start_ms).start_ms), "2026-02-04T00:00:00Z");
    }

    #[test]
    fn cron_fires_at_its_hours_on_its_days() {
        let p = plan("cron(0 16 1,15 * ? *)");
        let w = p.next_window(LAB);
        assert_eq!(iso(w.start_ms), "2026-02-15T16:00:00Z");
        assert_eq!(iso(w.next_rotation_date()), "2026-02-15T23:59:59Z");
        let p = Plan::parse(&rules(None, Some("cron(0 16 1,15 * ? *)"), Some("2h"))).unwrap();
        assert_eq!(iso(p.next_window(LAB).next_rotation_date()), "2026-02-15T17:59:59Z");
        // Every 8 hours from 0 on Mondays (2026-02-09 is a Monday).
        let p = plan("cron(0 */8 ? * MON *)");
        assert_eq!(iso(p.next_window(LAB).start_ms), "2026-02-09T00:00:00Z");
        assert_eq!(iso(p.next_window(LAB + 7 * DAY_MS).start_ms), "2026-02-16T00:00:00Z");
        // The first Sunday of the month, the last Friday, the last day.
        assert_eq!(
            iso(plan("cron(0 4 ? * 1#1 *)").next_window(LAB).start_ms),
            "2026-03-01T04:00:00Z"
        );
        assert_eq!(
            iso(plan("cron(0 4 ? * 6L *)").next_window(LAB).start_ms),
            "2026-02-27T04:00:00Z"
        );
        assert_eq!(
            iso(plan("cron(0 4 L * ? *)").next_window(LAB).start_ms),
            "2026-02-28T04:00:00Z"
        );
        assert_eq!(
            iso(plan("cron(0 4 29 FEB ? *)").next_window(LAB).start_ms),
            "2028-02-29T04:00:00Z"
        );
    }

    #[test]
    fn aws_restrictions_are_enforced() {
        for bad in [
            "rate(3 hours)",
            "rate(0 days)",
            "rate(1000 days)",
            "rate(5 minutes)",
            "rate(5days)",
            "cron(5 16 * * ? *)",
            "cron(0 16 * * ? 2027)",
            "cron(0 16 * * * *)",
            "cron(0 16 ? * ? *)",
            "cron(0 1,3 * * ? *)",
            "cron(0 */2 * * ? *)",
            "cron(0 24 * * ? *)",
            "cron(0 4 30 FEB ? *)",
            "cron(0 4 * *)",
            "every day",
        ] {
            let e = Plan::parse(&rules(None, Some(bad), None)).unwrap_err();
            assert_eq!(e.code, crate::ErrorCode::InvalidParameter, "{bad}");
            assert!(e.message.contains(bad), "{bad}: {}", e.message);
        }
        assert!(Plan::parse(&rules(Some(1), Some("rate(1 days)"), None)).is_err());
        assert!(Plan::parse(&rules(None, None, Some("2h"))).is_err());
        assert!(Plan::parse(&rules(Some(0), None, None)).is_err());
        assert!(Plan::parse(&rules(Some(1001), None, None)).is_err());
        // Windows may run into neither the next day nor the next window.
        assert!(Plan::parse(&rules(Some(1), None, Some("25h"))).is_err());
        assert!(Plan::parse(&rules(Some(1), None, Some("0h"))).is_err());
        assert!(Plan::parse(&rules(None, Some("rate(4 hours)"), Some("5h"))).is_err());
        assert!(Plan::parse(&rules(None, Some("cron(0 20 * * ? *)"), Some("5h"))).is_err());
        assert!(Plan::parse(&rules(None, Some("cron(0 0,12 * * ? *)"), Some("13h"))).is_err());
        assert!(Plan::parse(&rules(None, Some("cron(0 20 * * ? *)"), Some("4h"))).is_ok());
        assert!(Plan::parse(&rules(Some(1), None, Some("24h"))).is_ok());
    }

    #[test]
    fn the_rotation_moment_is_fixed_per_secret_and_window_and_spread_over_it() {
        let p = Plan::parse(&rules(Some(30), None, Some("4h"))).unwrap();
        let w = p.next_window(LAB);
        let arn = "arn:aws:secretsmanager:us-east-1:000000000000:secret:db-AbCdEf";
        // The same on every call (every node computes it alone), a whole second, and
        // within [start, NextRotationDate].
        assert_eq!(w.moment(arn), w.moment(arn));
        assert_eq!(w.moment(arn) % 1000, 0);
        assert!((w.start_ms..=w.next_rotation_date()).contains(&w.moment(arn)));
        // A pinned value: the hash must not change between builds or nodes would disagree.
        assert_eq!(iso(w.moment(arn)), "2026-03-05T00:48:23Z");
        // Another window of the same secret gets another moment (not always the same offset).
        let next = p.next_window(w.start_ms);
        let offsets: std::collections::BTreeSet<Millis> = (0..20)
            .map(|i| {
                let w = p.next_window(LAB + i * 31 * DAY_MS);
                w.moment(arn) - w.start_ms
            })
            .collect();
        assert!(offsets.len() > 10, "{offsets:?}");
        assert!(next.start_ms > w.start_ms);
        // Many secrets on one schedule spread over the whole window: every hour of a 4h
        // window is used, none starts all at the first second.
        let mut per_hour = [0u32; 4];
        for i in 0..400 {
            let m = w.moment(&format!("{arn}-{i}"));
            per_hour[((m - w.start_ms) / HOUR_MS) as usize] += 1;
        }
        assert!(per_hour.iter().all(|n| *n > 50), "{per_hour:?}");
        // A degenerate window is its start.
        assert_eq!(Window { start_ms: 5000, end_ms: 5000 }.moment(arn), 5000);
    }

    proptest::proptest! {
        #[test]
        fn the_moment_never_leaves_its_window(
            seed in ".{0,80}",
            base in 0i64..4_000_000_000_000,
            days in 1i64..1000,
            hours in proptest::option::of(1u32..=24),
        ) {
            let duration = hours.map(|h| format!("{h}h"));
            let p = Plan::parse(&rules(Some(days), None, duration.as_deref())).unwrap();
            let w = p.next_window(base);
            let m = w.moment(&seed);
            proptest::prop_assert!(m >= w.start_ms && m <= w.next_rotation_date());
            proptest::prop_assert!(m < w.end_ms);
            proptest::prop_assert_eq!(m, w.moment(&seed));
        }

        #[test]
        fn the_moment_of_schedule_expressions_stays_in_the_window(
            seed in "[a-z0-9:-]{1,60}",
            base in 0i64..4_000_000_000_000,
            expr in proptest::sample::select(vec![
                "rate(4 hours)", "rate(6 hours)", "rate(7 days)", "cron(0 4 * * ? *)",
                "cron(0 0/6 * * ? *)", "cron(0 16 1,15 * ? *)", "cron(0 4 ? * 6L *)",
            ]),
        ) {
            let w = plan(expr).next_window(base);
            let m = w.moment(&seed);
            proptest::prop_assert!(m >= w.start_ms && m <= w.next_rotation_date());
        }
    }
}
