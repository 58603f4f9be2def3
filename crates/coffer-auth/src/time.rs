//! Dates as SigV4 and policy conditions write them, converted to and from Unix time
//! without a calendar dependency (proleptic Gregorian, UTC only).

/// Days since 1970-01-01 of a civil date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01 (Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn digits(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn from_parts(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64) -> Option<i64> {
    let valid = (1..=12).contains(&mo)
        && (1..=31).contains(&d)
        && (0..=23).contains(&h)
        && (0..=59).contains(&mi)
        && (0..=60).contains(&s);
    valid.then(|| days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s)
}

/// Parses SigV4's basic ISO 8601 form `YYYYMMDDTHHMMSSZ` into Unix seconds.
pub fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    // ASCII first: the slices below are by byte, and a multi-byte character straddling
    // one of their ends would panic.
    if !s.is_ascii() || b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    from_parts(
        digits(&s[0..4])?,
        digits(&s[4..6])?,
        digits(&s[6..8])?,
        digits(&s[9..11])?,
        digits(&s[11..13])?,
        digits(&s[13..15])?,
    )
}

/// Formats Unix seconds as `YYYYMMDDTHHMMSSZ`.
pub fn format_amz_date(secs: i64) -> String {
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    format!("{y:04}{mo:02}{d:02}T{:02}{:02}{:02}Z", t / 3600, t / 60 % 60, t % 60)
}

/// Formats Unix milliseconds as extended ISO 8601 (`2024-05-01T12:00:00Z`), the form of
/// `aws:CurrentTime`.
pub fn format_iso8601(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    format!("{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z", t / 3600, t / 60 % 60, t % 60)
}

/// Parses a date as IAM's date condition operators accept it, into Unix milliseconds:
/// extended ISO 8601 (`2024-05-01`, `2024-05-01T12:00:00Z`, with fractional seconds or a
/// `+hh:mm` offset) or epoch seconds.
pub fn parse_policy_date(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Some(secs) = digits(s) {
        return secs.checked_mul(1000);
    }
    let (date, rest) = match s.split_once('T') {
        Some((d, r)) => (d, Some(r)),
        None => (s, None),
    };
    let mut parts = date.split('-');
    let (y, mo, d) = (digits(parts.next()?)?, digits(parts.next()?)?, digits(parts.next()?)?);
    if parts.next().is_some() {
        return None;
    }
    let Some(rest) = rest else {
        return Some(from_parts(y, mo, d, 0, 0, 0)? * 1000);
    };
    // Split off the zone designator: `Z`, `+hh:mm` or `-hh:mm`.
    let (clock, offset_secs) = if let Some(c) = rest.strip_suffix('Z') {
        (c, 0)
    } else if let Some(pos) = rest.rfind(['+', '-']) {
        let (c, zone) = rest.split_at(pos);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let (zh, zm) = zone[1..].split_once(':').unwrap_or((&zone[1..], "0"));
        (c, sign * (digits(zh)? * 3600 + digits(zm)? * 60))
    } else {
        (rest, 0)
    };
    let (clock, millis) = match clock.split_once('.') {
        Some((c, frac)) => {
            let frac3: String = frac.chars().chain("000".chars()).take(3).collect();
            (c, digits(&frac3)?)
        }
        None => (clock, 0),
    };
    let mut hms = clock.split(':');
    let h = digits(hms.next()?)?;
    let mi = hms.next().map(digits).unwrap_or(Some(0))?;
    let sec = hms.next().map(digits).unwrap_or(Some(0))?;
    Some((from_parts(y, mo, d, h, mi, sec)? - offset_secs) * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amz_dates_round_trip_through_unix_seconds() {
        let secs = parse_amz_date("20150830T123600Z").unwrap();
        assert_eq!(secs, 1_440_938_160);
        assert_eq!(format_amz_date(secs), "20150830T123600Z");
        assert_eq!(format_amz_date(0), "19700101T000000Z");
        assert_eq!(parse_amz_date("20240229T235959Z"), Some(1_709_251_199));
    }

    #[test]
    fn malformed_amz_dates_are_rejected() {
        for bad in [
            "",
            "20150830T123600",
            "2015-08-30T12:36:00Z",
            "20151330T123600Z",
            "2015083OT123600Z",
            // 16 bytes with `T` and `Z` in place, but an `é` across bytes 5 and 6.
            "20261é5T000000Z",
            "2015é830T12360Z",
            "201508\u{301}0T1236Z",
        ] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn policy_dates_accept_iso8601_forms_and_epoch_seconds() {
        let noon = 1_714_564_800_000;
        assert_eq!(parse_policy_date("2024-05-01T12:00:00Z"), Some(noon));
        assert_eq!(parse_policy_date("2024-05-01T12:00:00.250Z"), Some(noon + 250));
        assert_eq!(parse_policy_date("2024-05-01T14:00:00+02:00"), Some(noon));
        assert_eq!(parse_policy_date("2024-05-01"), Some(noon - 12 * 3_600_000));
        assert_eq!(parse_policy_date("1714564800"), Some(noon));
        assert_eq!(parse_policy_date("yesterday"), None);
        assert_eq!(format_iso8601(noon + 999), "2024-05-01T12:00:00Z");
    }
}
