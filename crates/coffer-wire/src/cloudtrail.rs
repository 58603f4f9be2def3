//! CloudTrail's LookupEvents on the wire (AWS JSON 1.1, target prefix
//! `com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.` or `CloudTrail_20131101.`),
//! written by hand after botocore's public cloudtrail model, as no model file for it is
//! embedded here.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// The `X-Amz-Target` prefix of CloudTrail operations, as botocore and the CLI write it.
pub const TARGET_PREFIX: &str = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.";

/// The prefix the Smithy-generated SDKs (JavaScript v3, Go v2, Rust, Kotlin)
/// write: the service shape's name alone. AWS answers both, as those SDKs work against it.
pub const SMITHY_TARGET_PREFIX: &str = "CloudTrail_20131101.";

/// The CloudTrail operation a target names, if it names one.
pub fn operation(target: &str) -> Option<&str> {
    target
        .strip_prefix(TARGET_PREFIX)
        .or_else(|| target.strip_prefix(SMITHY_TARGET_PREFIX))
        .filter(|op| !op.is_empty())
}

/// A `LookupAttribute`: one key (EventId, EventName, ReadOnly, Username, ResourceType,
/// ResourceName, EventSource, AccessKeyId) and the value it must have.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LookupAttribute {
    pub attribute_key: String,
    pub attribute_value: String,
}

/// The `LookupEventsRequest` shape.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LookupEventsRequest {
    pub lookup_attributes: Option<Vec<LookupAttribute>>,
    /// Epoch milliseconds; the wire carries epoch seconds (a number) or ISO 8601.
    #[serde(default, deserialize_with = "timestamp_ms")]
    pub start_time: Option<i64>,
    #[serde(default, deserialize_with = "timestamp_ms")]
    pub end_time: Option<i64>,
    pub event_category: Option<String>,
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
}

/// The `LookupEventsResponse` shape. Each event is CloudTrail's `Event` structure
/// (EventId, EventName, ReadOnly, AccessKeyId, EventTime, EventSource, Username,
/// Resources, and CloudTrailEvent: the whole record as a JSON string).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LookupEventsResponse {
    pub events: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// `body` with only the members of the `LookupEventsRequest` shape (the audit trail
/// records nothing else of a request; see `ServiceModel::input_members_only`).
pub fn input_members_only(body: &Value) -> Value {
    const SCALARS: &[&str] = &["StartTime", "EndTime", "EventCategory", "MaxResults", "NextToken"];
    let Value::Object(object) = body else { return Value::Null };
    let scalar = |v: &Value| !matches!(v, Value::Object(_) | Value::Array(_));
    let mut out = serde_json::Map::new();
    for name in SCALARS {
        if let Some(v) = object.get(*name).filter(|v| scalar(v)) {
            out.insert((*name).to_string(), v.clone());
        }
    }
    if let Some(Value::Array(items)) = object.get("LookupAttributes") {
        let attributes = items
            .iter()
            .filter_map(Value::as_object)
            .map(|item| {
                let kept = ["AttributeKey", "AttributeValue"]
                    .iter()
                    .filter_map(|k| {
                        Some(((*k).to_string(), item.get(*k).filter(|v| scalar(v))?.clone()))
                    })
                    .collect();
                Value::Object(kept)
            })
            .collect();
        out.insert("LookupAttributes".to_string(), Value::Array(attributes));
    }
    Value::Object(out)
}

/// A CloudTrail error body. CloudTrail's JSON errors name the exception in `__type`.
pub fn error_body(code: &str, message: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "__type": code, "Message": message }))
        .expect("error body serializes")
}

pub(crate) fn timestamp_ms<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let value = Option::<Value>::deserialize(d)?;
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|secs| (MIN_SECONDS..=MAX_SECONDS).contains(secs))
            .map(|secs| Some((secs * 1000.0).round() as i64))
            .ok_or_else(|| serde::de::Error::custom("timestamp out of range")),
        Some(Value::String(s)) => parse_iso8601(&s)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom("timestamp is not ISO 8601")),
        Some(_) => Err(serde::de::Error::custom("timestamp must be a number or a string")),
    }
}

/// The earliest and latest times accepted, in epoch seconds: years 1 to 9999, what
/// CloudTrail's timestamps can say. Anything beyond is refused, not saturated or wrapped.
const MIN_SECONDS: f64 = -62_135_596_800.0;
const MAX_SECONDS: f64 = 253_402_300_799.0;

/// Parses `YYYY-MM-DDTHH:MM:SS[.fff]Z` (or without a time) into epoch milliseconds; `None`
/// for a field out of its range (years 1 to 9999), so no arithmetic below can overflow.
fn parse_iso8601(s: &str) -> Option<i64> {
    let num = |t: &str, range: std::ops::RangeInclusive<i64>| {
        t.parse::<i64>().ok().filter(|n| range.contains(n))
    };
    let (date, time) = s.split_once('T').unwrap_or((s, "00:00:00Z"));
    let mut d = date.splitn(3, '-');
    let (y, mo, day) =
        (num(d.next()?, 1..=9999)?, num(d.next()?, 1..=12)?, num(d.next()?, 1..=31)?);
    let time = time.trim_end_matches('Z');
    let mut t = time.splitn(3, ':');
    let (h, mi) = (num(t.next()?, 0..=23)?, num(t.next()?, 0..=59)?);
    let secs: f64 = t.next().unwrap_or("0").parse().ok().filter(|s| (0.0..61.0).contains(s))?;
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + mi * 60) * 1000 + (secs * 1000.0).round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_cloudtrail_targets_name_an_operation() {
        assert_eq!(
            operation("com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents"),
            Some("LookupEvents")
        );
        assert_eq!(operation("CloudTrail_20131101.LookupEvents"), Some("LookupEvents"));
        assert_eq!(operation("secretsmanager.GetSecretValue"), None);
        assert_eq!(operation("cloudtrail_20131101.LookupEvents"), None);
        assert_eq!(operation(TARGET_PREFIX), None);
        assert_eq!(operation(SMITHY_TARGET_PREFIX), None);
    }

    #[test]
    fn requests_decode_with_numeric_or_iso_times() {
        let body = serde_json::json!({
            "LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": "CreateSecret"}],
            "StartTime": 1714564800,
            "EndTime": "2024-05-01T12:00:01.5Z",
            "MaxResults": 5
        });
        let req: LookupEventsRequest = serde_json::from_value(body).unwrap();
        assert_eq!(req.start_time, Some(1_714_564_800_000));
        assert_eq!(req.end_time, Some(1_714_564_801_500));
        assert_eq!(req.lookup_attributes.unwrap()[0].attribute_value, "CreateSecret");
        for bad in [
            serde_json::json!({"StartTime": 1e300}),
            serde_json::json!({"EndTime": -1e300}),
            serde_json::json!({"StartTime": 9.3e15}),
            serde_json::json!({"StartTime": "99999999999-01-01T00:00:00Z"}),
            serde_json::json!({"StartTime": "2024-13-01T00:00:00Z"}),
            serde_json::json!({"EndTime": "2024-01-01T25:00:00Z"}),
        ] {
            assert!(serde_json::from_value::<LookupEventsRequest>(bad.clone()).is_err(), "{bad}");
        }
        let last: LookupEventsRequest =
            serde_json::from_value(serde_json::json!({"EndTime": "9999-12-31T23:59:59Z"})).unwrap();
        assert_eq!(last.end_time, Some(253_402_300_799_000));
        let empty: LookupEventsRequest = serde_json::from_value(serde_json::json!({})).unwrap();
        assert!(empty.start_time.is_none() && empty.next_token.is_none());
    }

    #[test]
    fn responses_leave_out_a_missing_token() {
        let r = LookupEventsResponse { events: vec![], next_token: None };
        assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"Events":[]}"#);
    }
}
