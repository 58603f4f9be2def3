//! Unix milliseconds rendered the way CloudTrail writes `eventTime`.

/// Year, month and day of a count of days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Formats Unix milliseconds as `2024-05-01T12:00:00Z`, CloudTrail's `eventTime` form
/// (whole seconds, UTC).
pub fn format_iso8601(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    format!("{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z", t / 3600, t / 60 % 60, t % 60)
}

/// Formats Unix milliseconds as `Jul 19, 2019, 4:27:48 PM` (UTC): the form in which
/// CloudTrail records the dates of IAM's and STS's response elements (a credential's
/// `expiration`, an entity's `createDate`), unlike `eventTime`.
pub fn format_response_date(ms: i64) -> String {
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let secs = ms.div_euclid(1000);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    let (hour, half) = (t / 3600, if t < 12 * 3600 { "AM" } else { "PM" });
    let hour12 = if hour % 12 == 0 { 12 } else { hour % 12 };
    let month = MONTHS[usize::try_from(mo - 1).unwrap_or(0)];
    format!("{month} {d}, {y}, {hour12}:{:02}:{:02} {half}", t / 60 % 60, t % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_times_are_utc_whole_seconds() {
        assert_eq!(format_iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_iso8601(1_714_564_800_999), "2024-05-01T12:00:00Z");
        assert_eq!(format_iso8601(951_782_400_000), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn response_dates_take_cloudtrails_twelve_hour_form() {
        assert_eq!(format_response_date(1_563_553_668_000), "Jul 19, 2019, 4:27:48 PM");
        assert_eq!(format_response_date(0), "Jan 1, 1970, 12:00:00 AM");
        assert_eq!(format_response_date(951_825_599_000), "Feb 29, 2000, 11:59:59 AM");
        assert_eq!(format_response_date(951_825_600_000), "Feb 29, 2000, 12:00:00 PM");
    }
}
