//! IAM's own checks of an identity or trust policy document before the IAM API stores it,
//! in IAM's words (`MalformedPolicyDocument`): the order IAM checks in and the message of
//! the first check that fails. Secrets Manager's and KMS's policies keep Coffer's parser's
//! own wording ([`super::malformed_message`]); this only serves the IAM API.
//!
//! IAM checks in stages, each with one message: the grammar ("Syntax errors in policy."),
//! the version of a managed policy, a "legacy" parse (exact `Effect` case, dates in
//! date conditions, resources with the wrong number of colons), unique statement ids,
//! statements without actions, the resources' ARN format, the actions' vendor prefixes,
//! and for an identity policy statements without resources. The rules and texts follow
//! AWS's answers as moto's IAM tests record them (marked as checked against AWS).

use serde_json::{Map, Value};

/// What a document is attached as, which decides the checks IAM adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IamDocument {
    /// A customer managed policy (CreatePolicy, CreatePolicyVersion): version 2012-10-17.
    Managed,
    /// An inline policy of a user, group or role (Put*Policy). IAM still accepts these
    /// without a `Version` (the 2008-10-17 language), as CloudFormation's inline policies
    /// without one show.
    Inline,
    /// A role's trust policy: IAM's trust-policy rules come on top (`check_trust_policy`
    /// in coffer-iam); it names principals and no resource.
    Trust,
}

/// The message IAM refuses `text` with, or `None` when IAM accepts it.
pub fn iam_refusal(text: &str, kind: IamDocument) -> Option<String> {
    let Ok(doc) = serde_json::from_str::<Value>(text) else {
        return Some(SYNTAX.to_string());
    };
    let Some((top, statements)) = grammar(&doc) else {
        return Some(SYNTAX.to_string());
    };
    if kind == IamDocument::Managed && top.get("Version").and_then(Value::as_str) != Some(V2012) {
        return Some("Policy document must be version 2012-10-17 or greater.".to_string());
    }
    let resource_problem = match legacy_parse(&statements) {
        Ok(problem) => problem,
        Err(LegacyFailure) => return Some("The policy failed legacy parsing".to_string()),
    };
    if !statement_ids_are_unique(&statements) {
        return Some("Statement IDs (SID) in a single policy must be unique.".to_string());
    }
    if !statements.iter().all(|s| names_some(s, "Action", "NotAction")) {
        return Some("Policy statement must contain actions.".to_string());
    }
    if let Some(problem) = resource_problem {
        return Some(problem);
    }
    if let Some(problem) = action_prefix_problem(&statements) {
        return Some(problem);
    }
    if kind != IamDocument::Trust
        && !statements.iter().all(|s| names_some(s, "Resource", "NotResource"))
    {
        return Some("Policy statement must contain resources.".to_string());
    }
    None
}

const SYNTAX: &str = "Syntax errors in policy.";
const V2012: &str = "2012-10-17";

/// How many characters of a resource or vendor a message quotes: IAM quotes them whole,
/// Coffer at most this much, so a message keeps its own words within the 512 characters
/// an error may echo (twice this for the partition message, which quotes two values).
const QUOTED_CHARS: usize = 200;

fn quoted(value: &str) -> std::borrow::Cow<'_, str> {
    crate::sigv4::echo_at_most(value, QUOTED_CHARS)
}

const STATEMENT_ELEMENTS: &[&str] = &[
    "Sid",
    "Effect",
    "Principal",
    "NotPrincipal",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Condition",
];

const CONDITION_OPERATORS: &[&str] = &[
    "StringEquals",
    "StringNotEquals",
    "StringEqualsIgnoreCase",
    "StringNotEqualsIgnoreCase",
    "StringLike",
    "StringNotLike",
    "NumericEquals",
    "NumericNotEquals",
    "NumericLessThan",
    "NumericLessThanEquals",
    "NumericGreaterThan",
    "NumericGreaterThanEquals",
    "DateEquals",
    "DateNotEquals",
    "DateLessThan",
    "DateLessThanEquals",
    "DateGreaterThan",
    "DateGreaterThanEquals",
    "Bool",
    "BinaryEquals",
    "IpAddress",
    "NotIpAddress",
    "ArnEquals",
    "ArnLike",
    "ArnNotEquals",
    "ArnNotLike",
    "Null",
];

/// AWS's partitions: a resource ARN naming another is refused.
const PARTITIONS: &[&str] =
    &["aws", "aws-cn", "aws-us-gov", "aws-iso", "aws-iso-b", "aws-iso-e", "aws-iso-f", "aws-eusc"];

/// What an IAM resource path may start with.
const IAM_RESOURCE_TYPES: &[&str] = &[
    "user/",
    "federated-user/",
    "role/",
    "group/",
    "instance-profile/",
    "mfa/",
    "server-certificate/",
    "policy/",
    "sms-mfa/",
    "saml-provider/",
    "oidc-provider/",
    "report/",
    "access-report/",
];

type JsonObject = Map<String, Value>;

/// The document's top level and statements when its grammar holds, `None` for IAM's
/// "Syntax errors in policy.".
fn grammar(doc: &Value) -> Option<(&Map<String, Value>, Vec<&JsonObject>)> {
    let top = doc.as_object()?;
    if !top.keys().all(|k| matches!(k.as_str(), "Version" | "Id" | "Statement")) {
        return None;
    }
    if top.get("Version").is_some_and(|v| !matches!(v.as_str(), Some("2008-10-17" | V2012))) {
        return None;
    }
    if top.get("Id").is_some_and(|id| !id.is_string()) {
        return None;
    }
    let raw: Vec<&Value> = match top.get("Statement")? {
        Value::Array(list) if !list.is_empty() => list.iter().collect(),
        one @ Value::Object(_) => vec![one],
        _ => return None,
    };
    let statements: Vec<&Map<String, Value>> =
        raw.into_iter().map(Value::as_object).collect::<Option<_>>()?;
    statements.iter().all(|s| statement_grammar_holds(s)).then_some((top, statements))
}

fn statement_grammar_holds(s: &Map<String, Value>) -> bool {
    let exclusive = |a: &str, b: &str| !(s.contains_key(a) && s.contains_key(b));
    s.keys().all(|k| STATEMENT_ELEMENTS.contains(&k.as_str()))
        && exclusive("Resource", "NotResource")
        && exclusive("Action", "NotAction")
        && s.get("Effect")
            .and_then(Value::as_str)
            .is_some_and(|e| e.eq_ignore_ascii_case("Allow") || e.eq_ignore_ascii_case("Deny"))
        && ["Action", "NotAction", "Resource", "NotResource"]
            .iter()
            .all(|k| s.get(*k).is_none_or(is_string_or_list_of_strings))
        && s.get("Condition").is_none_or(condition_grammar_holds)
        && s.get("Sid").is_none_or(Value::is_string)
}

/// A string, or a list whose items are strings (or null, which IAM lets through here).
fn is_string_or_list_of_strings(v: &Value) -> bool {
    match v {
        Value::String(_) => true,
        Value::Array(items) => items.iter().all(|i| i.is_string() || i.is_null()),
        _ => false,
    }
}

/// `{operator: {key: value}}` with string, number, boolean or list values; an operator
/// IAM does not know is let through only with no keys.
fn condition_grammar_holds(block: &Value) -> bool {
    let Some(block) = block.as_object() else { return false };
    block.iter().all(|(operator, keys)| {
        let Some(keys) = keys.as_object() else { return false };
        // The policy grammar allows numbers as condition values besides strings and
        // booleans (AWS's "IAM JSON policy grammar").
        let values_hold = keys.values().all(|v| {
            matches!(v, Value::Bool(_) | Value::Array(_) | Value::String(_) | Value::Number(_))
        });
        values_hold && (CONDITION_OPERATORS.contains(&bare_operator(operator)) || keys.is_empty())
    })
}

/// The operator without one `ForAnyValue:`/`ForAllValues:` qualifier and one `IfExists`.
fn bare_operator(operator: &str) -> &str {
    let unqualified = operator
        .strip_prefix("ForAnyValue:")
        .or_else(|| operator.strip_prefix("ForAllValues:"))
        .unwrap_or(operator);
    unqualified.strip_suffix("IfExists").unwrap_or(unqualified)
}

/// IAM's "legacy" parse failed ("The policy failed legacy parsing").
struct LegacyFailure;

/// The legacy parse: `Effect` exactly `Allow` or `Deny`, dates of date conditions, then
/// each statement's resources (their ARN format, then, while none was malformed, the
/// legacy colon rules). `Ok` carries the message of the malformed resource IAM reports,
/// which it reports only after the statement-id and action checks: the last one found.
fn legacy_parse(statements: &[&Map<String, Value>]) -> Result<Option<String>, LegacyFailure> {
    for s in statements {
        if !matches!(s.get("Effect").and_then(Value::as_str), Some("Allow" | "Deny")) {
            return Err(LegacyFailure);
        }
        let conditions = s.get("Condition").and_then(Value::as_object).into_iter().flatten();
        for (operator, keys) in conditions {
            if !bare_operator(operator).starts_with("Date") {
                continue;
            }
            for value in keys.as_object().into_iter().flat_map(|k| k.values()) {
                if !date_values_parse(value) {
                    return Err(LegacyFailure);
                }
            }
        }
    }
    let mut problem = None;
    for element in ["Resource", "NotResource"] {
        for s in statements {
            let Some(value) = s.get(element) else { continue };
            let resources: Vec<&str> = match value {
                Value::String(one) => vec![one.as_str()],
                // Null and empty items are skipped; IAM looks at the rest in reverse
                // order, and reports the last malformed one it meets.
                Value::Array(items) => {
                    let mut list: Vec<&str> =
                        items.iter().filter_map(Value::as_str).filter(|r| !r.is_empty()).collect();
                    list.sort_unstable_by(|a, b| b.cmp(a));
                    list
                }
                _ => Vec::new(),
            };
            for r in &resources {
                if let Some(p) = resource_format_problem(r) {
                    problem = Some(p);
                }
            }
            if problem.is_none() && !legacy_resources_hold(value) {
                return Err(LegacyFailure);
            }
        }
    }
    Ok(problem)
}

/// A date condition's value: an ISO 8601 date-time or epoch seconds, one or a list.
fn date_values_parse(value: &Value) -> bool {
    match value {
        Value::String(s) => date_parses(s),
        Value::Array(items) => items.iter().all(|i| i.as_str().is_some_and(date_parses)),
        _ => false,
    }
}

fn date_parses(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    if lower.contains('t') || lower.contains('-') {
        iso_8601_parses(&lower).is_some()
    } else {
        value.parse::<u64>().is_ok_and(|n| n <= i64::MAX as u64)
    }
}

fn int_within(text: &str, low: i64, high: i64) -> Option<()> {
    text.parse::<i64>().ok().filter(|n| (low..=high).contains(n)).map(|_| ())
}

/// The loose ISO 8601 IAM accepts (already lower-cased): `[-]year[-month[-day]]` then an
/// optional `t` and `hours[:minutes[:seconds[.fraction][z|+hh[:mm]]]]`.
fn iso_8601_parses(value: &str) -> Option<()> {
    let (date, time) = value.split_once('t').unwrap_or((value, ""));
    let (negative, date) = match date.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, date),
    };
    let parts: Vec<&str> = date.split('-').collect();
    let year = if negative { format!("-{}", parts[0]) } else { parts[0].to_string() };
    int_within(&year, -292_275_054, 292_278_993)?;
    if let Some(month) = parts.get(1) {
        int_within(month, 1, 12)?;
    }
    if let Some(day) = parts.get(2) {
        int_within(day, 1, 31)?;
    }
    if parts.len() > 3 {
        return None;
    }
    let times: Vec<&str> = time.split(':').collect();
    if !times[0].is_empty() {
        int_within(times[0], 0, 23)?;
    }
    if let Some(minutes) = times.get(1) {
        int_within(minutes, 0, 59)?;
    }
    let Some(third) = times.get(2) else { return Some(()) };
    let seconds = if let Some((seconds, after)) = third.split_once('z') {
        after.is_empty().then_some(())?;
        seconds
    } else if let Some((seconds, zone)) = third.split_once('+') {
        let (hours, minutes) = match zone.split_once(':') {
            Some((h, m)) => (h, Some(m)),
            None => (zone, None),
        };
        (hours.len() == 2).then_some(())?;
        int_within(hours, 0, 23)?;
        if let Some(m) = minutes {
            (m.len() == 2).then_some(())?;
            int_within(m, 0, 59)?;
        }
        seconds
    } else {
        third
    };
    let (whole, fraction) = match seconds.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (seconds, None),
    };
    int_within(whole, 0, 59)?;
    if let Some(f) = fraction {
        int_within(f, 0, 999_999_999)?;
    }
    Some(())
}

/// The legacy colon rules of a `Resource`/`NotResource` value: an ARN with an empty
/// field (`::`) needs all six of its parts, and a single resource needs a third part.
fn legacy_resources_hold(value: &Value) -> bool {
    let colons_hold = |r: &str| r.matches(':').count() >= 5 || !r.contains("::");
    match value {
        Value::String(r) if r == "*" => true,
        Value::String(r) => colons_hold(r) && r.split(':').nth(2).is_some_and(|p| !p.is_empty()),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .filter(|r| !r.is_empty() && *r != "*")
            .all(|r| colons_hold(r) && r.chars().count() > 2),
        _ => true,
    }
}

/// IAM's complaint about one resource's ARN format, if any.
fn resource_format_problem(resource: &str) -> Option<String> {
    if resource == "*" {
        return None;
    }
    let Some((_, rest)) = resource.split_once(':') else {
        return Some(format!("Resource {} must be in ARN format or \"*\".", quoted(resource)));
    };
    let (partition, after_partition) = match rest.split_once(':') {
        Some((p, after)) => (p, Some(after)),
        None => (rest, None),
    };
    if partition != "*" && !PARTITIONS.contains(&partition) {
        return Some(unknown_partition(partition, after_partition.unwrap_or("")));
    }
    let Some(after_partition) = after_partition else {
        return Some(
            "Resource vendor must be fully qualified and cannot contain regexes.".to_string(),
        );
    };
    let (service, after_service) = after_partition.split_once(':').unwrap_or((after_partition, ""));
    // What follows the region and the account: the resource's own part.
    let resource_id = after_service
        .split_once(':')
        .and_then(|(_, after_region)| after_region.split_once(':'))
        .map_or("", |(_, id)| id);
    let has_region = !after_service.starts_with(':');
    match service {
        "iam" if has_region => {
            return Some(format!(
                "IAM resource {} cannot contain region information.",
                quoted(resource)
            ));
        }
        "s3" if has_region && !resource_id.starts_with("accesspoint/") => {
            return Some(format!(
                "Resource {} can not contain region information.",
                quoted(resource)
            ));
        }
        "iam" if !IAM_RESOURCE_TYPES.iter().any(|t| resource_id.starts_with(t)) => {
            return Some(format!(
                "IAM resource path must either be \"*\" or start with {}.",
                IAM_RESOURCE_TYPES.join(", ")
            ));
        }
        _ => {}
    }
    None
}

/// `Partition "<p>" is not valid for resource "arn:<p>:<service>:<region>:<account>:<id>"`,
/// the fields IAM could not find shown as `*`.
fn unknown_partition(partition: &str, after: &str) -> String {
    let parts: Vec<&str> = after.split(':').collect();
    let field = |i: usize| parts.get(i).copied().unwrap_or("*");
    let service = if parts[0].is_empty() && parts.len() == 1 { "*" } else { parts[0] };
    let id = if parts.len() > 3 { parts[3..].join(":") } else { "*".to_string() };
    let arn = format!("arn:{partition}:{service}:{}:{}:{id}", field(1), field(2));
    format!("Partition \"{}\" is not valid for resource \"{}\".", quoted(partition), quoted(&arn))
}

/// Whether IAM accepts `action` (a `vendor:name` or `*`): Coffer's identity-policy grammar
/// lets it through ([`super::Parser`]'s leniency).
pub(super) fn action_is_accepted(action: &str) -> bool {
    action_problem(action).is_none()
}

/// Whether IAM accepts `resource` in an identity policy.
pub(super) fn resource_is_accepted(resource: &str) -> bool {
    !resource.is_empty()
        && resource_format_problem(resource).is_none()
        && legacy_resources_hold(&Value::String(resource.to_string()))
}

fn statement_ids_are_unique(statements: &[&Map<String, Value>]) -> bool {
    let mut seen = std::collections::HashSet::new();
    statements
        .iter()
        .filter_map(|s| s.get("Sid").and_then(Value::as_str))
        .filter(|sid| !sid.is_empty())
        .all(|sid| seen.insert(sid))
}

/// Whether a statement names `element` or `not_element`, a list of them not empty.
fn names_some(s: &Map<String, Value>, element: &str, not_element: &str) -> bool {
    match s.get(element).or_else(|| s.get(not_element)) {
        None => false,
        Some(Value::Array(items)) => !items.is_empty(),
        Some(_) => true,
    }
}

/// IAM's complaint about an action's `vendor:` prefix: every statement's `Action` is
/// looked at first, then every `NotAction`.
fn action_prefix_problem(statements: &[&Map<String, Value>]) -> Option<String> {
    for element in ["Action", "NotAction"] {
        for s in statements {
            let actions: Vec<&str> = match s.get(element) {
                Some(Value::String(a)) => vec![a.as_str()],
                Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if let Some(problem) = actions.into_iter().find_map(action_problem) {
                return Some(problem);
            }
        }
    }
    None
}

fn action_problem(action: &str) -> Option<String> {
    let parts: Vec<&str> = action.split(':').collect();
    if parts.len() == 1 && action != "*" {
        return Some(
            "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc."
                .to_string(),
        );
    }
    if parts.len() > 2 {
        return Some("Actions/Condition can contain only one colon.".to_string());
    }
    let vendor = parts[0];
    let vendor_is_valid =
        vendor == "*" || vendor.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b));
    (!vendor_is_valid).then(|| format!("Vendor {} is not valid", quoted(vendor)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(statement: Value) -> Option<String> {
        let text = serde_json::json!({"Version": V2012, "Statement": statement}).to_string();
        iam_refusal(&text, IamDocument::Managed)
    }

    #[test]
    fn dates_are_read_as_iam_reads_them() {
        for ok in
            ["2019-07-01T13:20:15Z", "2016-12-13T21:20:37.593194+00:00", "01T", "-292275054", "0"]
        {
            assert!(date_parses(ok), "{ok}");
        }
        for bad in ["sdfdsf", "234-13", "2016-12-13t2:00:00.593194+1", "9223372036854775808", ""] {
            assert!(!date_parses(bad), "{bad}");
        }
    }

    #[test]
    fn a_long_resource_is_quoted_cut_and_the_message_keeps_its_words() {
        let long = "y".repeat(5000);
        let message =
            refusal(serde_json::json!({"Effect": "Allow", "Action": "s3:Get", "Resource": long}))
                .unwrap();
        assert!(message.ends_with(" must be in ARN format or \"*\"."), "{message}");
        assert!(message.len() < 300, "{}", message.len());
        let partition = refusal(serde_json::json!({
            "Effect": "Allow", "Action": "s3:Get", "Resource": format!("a:{long}:{long}")
        }))
        .unwrap();
        assert!(partition.ends_with("\"."), "{partition}");
        assert!(partition.len() < 512, "{}", partition.len());
    }

    #[test]
    fn inline_and_trust_documents_need_no_version_and_trust_needs_no_resource() {
        let text = r#"{"Statement":{"Effect":"Allow","Action":"sts:AssumeRole","Principal":"*"}}"#;
        assert_eq!(iam_refusal(text, IamDocument::Trust), None);
        assert_eq!(
            iam_refusal(text, IamDocument::Inline).as_deref(),
            Some("Policy statement must contain resources.")
        );
        assert_eq!(
            iam_refusal(text, IamDocument::Managed).as_deref(),
            Some("Policy document must be version 2012-10-17 or greater.")
        );
    }

    #[test]
    fn what_iam_lets_through_an_identity_policy_matches_no_request() {
        use crate::policy::{Policy, PolicyKind};
        let text = serde_json::json!({"Version": V2012, "Statement": [{
            "Effect": "Allow",
            "Action": ["secretsmanager: GetSecretValue", "s3.s:Get"],
            "Resource": ["arn:aws:fdsasf", null],
            "Condition": {"x": {}, "StringEquals": {"a": []}}
        }]})
        .to_string();
        assert_eq!(iam_refusal(&text, IamDocument::Managed), None);
        let policy = Policy::parse(&text, PolicyKind::Identity).unwrap();
        assert_eq!(policy.statements[0].conditions.len(), 1);
        // Resource and key policies keep the stricter grammar.
        assert!(
            Policy::parse(
                &text.replace("\"Effect\"", "\"Principal\":\"*\",\"Effect\""),
                PolicyKind::Resource
            )
            .is_err()
        );
    }
}
