//! The `Condition` element: operators, `...IfExists`, `ForAllValues:`/`ForAnyValue:`, and
//! AWS's rules for keys missing from the request.

use super::Effect;
use super::eval::Context;
use super::wildcard::wildcard_match;
use crate::time::parse_policy_date;
use serde_json::Value;
use std::borrow::Cow;
use std::net::IpAddr;

/// A condition operator, without its `IfExists` suffix or set qualifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionOp {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    NumericEquals,
    NumericNotEquals,
    NumericLessThan,
    NumericLessThanEquals,
    NumericGreaterThan,
    NumericGreaterThanEquals,
    DateEquals,
    DateNotEquals,
    DateLessThan,
    DateLessThanEquals,
    DateGreaterThan,
    DateGreaterThanEquals,
    Bool,
    BinaryEquals,
    IpAddress,
    NotIpAddress,
    ArnEquals,
    ArnLike,
    ArnNotEquals,
    ArnNotLike,
    Null,
}

const OPERATORS: &[(&str, ConditionOp)] = &[
    ("StringEquals", ConditionOp::StringEquals),
    ("StringNotEquals", ConditionOp::StringNotEquals),
    ("StringEqualsIgnoreCase", ConditionOp::StringEqualsIgnoreCase),
    ("StringNotEqualsIgnoreCase", ConditionOp::StringNotEqualsIgnoreCase),
    ("StringLike", ConditionOp::StringLike),
    ("StringNotLike", ConditionOp::StringNotLike),
    ("NumericEquals", ConditionOp::NumericEquals),
    ("NumericNotEquals", ConditionOp::NumericNotEquals),
    ("NumericLessThan", ConditionOp::NumericLessThan),
    ("NumericLessThanEquals", ConditionOp::NumericLessThanEquals),
    ("NumericGreaterThan", ConditionOp::NumericGreaterThan),
    ("NumericGreaterThanEquals", ConditionOp::NumericGreaterThanEquals),
    ("DateEquals", ConditionOp::DateEquals),
    ("DateNotEquals", ConditionOp::DateNotEquals),
    ("DateLessThan", ConditionOp::DateLessThan),
    ("DateLessThanEquals", ConditionOp::DateLessThanEquals),
    ("DateGreaterThan", ConditionOp::DateGreaterThan),
    ("DateGreaterThanEquals", ConditionOp::DateGreaterThanEquals),
    ("Bool", ConditionOp::Bool),
    ("BinaryEquals", ConditionOp::BinaryEquals),
    ("IpAddress", ConditionOp::IpAddress),
    ("NotIpAddress", ConditionOp::NotIpAddress),
    ("ArnEquals", ConditionOp::ArnEquals),
    ("ArnLike", ConditionOp::ArnLike),
    ("ArnNotEquals", ConditionOp::ArnNotEquals),
    ("ArnNotLike", ConditionOp::ArnNotLike),
    ("Null", ConditionOp::Null),
];

impl ConditionOp {
    /// The positive operator a negated one is the complement of.
    fn negation_of(self) -> Option<ConditionOp> {
        use ConditionOp::*;
        Some(match self {
            StringNotEquals => StringEquals,
            StringNotEqualsIgnoreCase => StringEqualsIgnoreCase,
            StringNotLike => StringLike,
            NumericNotEquals => NumericEquals,
            DateNotEquals => DateEquals,
            NotIpAddress => IpAddress,
            ArnNotEquals => ArnEquals,
            ArnNotLike => ArnLike,
            _ => return None,
        })
    }
}

/// How a condition treats a key with several values (`aws:TagKeys`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetQualifier {
    /// Every value must satisfy the operator; true when the key is missing.
    ForAllValues,
    /// Some value must satisfy the operator; false when the key is missing.
    ForAnyValue,
}

/// One operator, key and value list of a `Condition` block.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub op: ConditionOp,
    pub qualifier: Option<SetQualifier>,
    pub if_exists: bool,
    /// The key as written (`aws:ResourceTag/Env`); looked up without regard to case.
    pub key: String,
    pub values: Vec<String>,
}

/// Parses a `Condition` block; `Err` lists every problem. `lenient` (identity policies)
/// lets through what IAM accepts and evaluation can read safely: an operator IAM does not
/// know with no keys (no condition), a key without a `prefix:` (never in a request, so
/// missing), an empty list of values (matching nothing).
pub(crate) fn parse_block(v: &Value, lenient: bool) -> Result<Vec<Condition>, Vec<String>> {
    let Some(block) = v.as_object() else {
        return Err(vec!["Condition must be an object.".to_string()]);
    };
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for (operator, keys) in block {
        let (qualifier, rest) = if let Some(r) = operator.strip_prefix("ForAllValues:") {
            (Some(SetQualifier::ForAllValues), r)
        } else if let Some(r) = operator.strip_prefix("ForAnyValue:") {
            (Some(SetQualifier::ForAnyValue), r)
        } else {
            (None, operator.as_str())
        };
        let (name, if_exists) = match rest.strip_suffix("IfExists") {
            Some(n) => (n, true),
            None => (rest, false),
        };
        let Some(&(_, op)) = OPERATORS.iter().find(|(n, _)| *n == name) else {
            if lenient && keys.as_object().is_some_and(|k| k.is_empty()) {
                continue;
            }
            problems.push(format!(
                "Condition operator '{operator}' is not a valid IAM condition operator."
            ));
            continue;
        };
        let Some(keys) = keys.as_object() else {
            problems
                .push(format!("Condition operator '{operator}' must map to an object of keys."));
            continue;
        };
        for (key, values) in keys {
            let valid_key = key.split_once(':').is_some_and(|(prefix, name)| {
                !prefix.is_empty() && !name.is_empty() && !key.contains(char::is_whitespace)
            });
            if !valid_key && !lenient {
                problems.push(format!("Condition key '{key}' is not valid; write <prefix>:<name>, for example aws:PrincipalAccount."));
                continue;
            }
            let scalar = |v: &Value| match v {
                Value::String(s) => Some(s.clone()),
                Value::Bool(b) => Some(b.to_string()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            };
            let values: Option<Vec<String>> = match values {
                Value::Array(items) if !items.is_empty() || lenient => {
                    items.iter().map(scalar).collect()
                }
                other => scalar(other).map(|s| vec![s]),
            };
            match values {
                Some(values) => out.push(Condition {
                    op,
                    qualifier,
                    if_exists,
                    key: key.clone(),
                    values,
                }),
                None => problems.push(format!(
                    "Condition key '{key}' must have a string, number, boolean or a non-empty list of them."
                )),
            }
        }
    }
    if problems.is_empty() { Ok(out) } else { Err(problems) }
}

fn parse_cidr(s: &str) -> Option<(IpAddr, u32)> {
    let (addr, bits) = match s.split_once('/') {
        Some((a, b)) => (a.parse::<IpAddr>().ok()?, Some(b.parse::<u32>().ok()?)),
        None => (s.parse::<IpAddr>().ok()?, None),
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let bits = bits.unwrap_or(max);
    (bits <= max).then_some((addr, bits))
}

fn ip_in(ip: &str, cidr: &str) -> bool {
    let (Ok(ip), Some((net, bits))) = (ip.parse::<IpAddr>(), parse_cidr(cidr)) else {
        return false;
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Whether one request value satisfies a positive operator against one policy value.
/// `fold_case` compares strings without regard to case (the second reading of tag keys).
fn positive(op: ConditionOp, actual: &str, wanted: &str, fold_case: bool) -> bool {
    use ConditionOp::*;
    let numbers = || Some((actual.trim().parse::<f64>().ok()?, wanted.trim().parse::<f64>().ok()?));
    let dates = || Some((parse_policy_date(actual)?, parse_policy_date(wanted)?));
    match op {
        StringEquals if fold_case => actual.to_lowercase() == wanted.to_lowercase(),
        StringEquals | BinaryEquals => actual == wanted,
        StringEqualsIgnoreCase => actual.to_lowercase() == wanted.to_lowercase(),
        StringLike => wildcard_match(wanted, actual, fold_case),
        ArnEquals | ArnLike => actual.starts_with("arn:") && wildcard_match(wanted, actual, false),
        Bool => actual.eq_ignore_ascii_case(wanted),
        IpAddress => ip_in(actual, wanted),
        NumericEquals => numbers().is_some_and(|(a, w)| a == w),
        NumericLessThan => numbers().is_some_and(|(a, w)| a < w),
        NumericLessThanEquals => numbers().is_some_and(|(a, w)| a <= w),
        NumericGreaterThan => numbers().is_some_and(|(a, w)| a > w),
        NumericGreaterThanEquals => numbers().is_some_and(|(a, w)| a >= w),
        DateEquals => dates().is_some_and(|(a, w)| a == w),
        DateLessThan => dates().is_some_and(|(a, w)| a < w),
        DateLessThanEquals => dates().is_some_and(|(a, w)| a <= w),
        DateGreaterThan => dates().is_some_and(|(a, w)| a > w),
        DateGreaterThanEquals => dates().is_some_and(|(a, w)| a >= w),
        // Negated operators and Null are resolved by the caller.
        _ => false,
    }
}

/// Condition keys whose values are tag keys. Tag keys are case-sensitive on a secret, but
/// `aws:ResourceTag/<key>` is not, so `Class` is the same tag as `class` to a policy: these
/// values are also compared without regard to case, and the reading that fails closed wins.
const TAG_KEY_VALUED: &[&str] = &["aws:tagkeys"];

/// Substitutes policy variables in a policy value: borrowed when there are none, `None`
/// when a variable has no value (that policy value then matches nothing).
pub type Expand<'a> = dyn Fn(&str) -> Option<Cow<'_, str>> + 'a;

impl Condition {
    /// Evaluates the condition against the request context. `expand` substitutes policy
    /// variables in a policy value (`None` when a variable has no value: that policy value
    /// then matches nothing).
    pub fn matches(&self, ctx: &Context, expand: &Expand<'_>) -> bool {
        self.matches_values(ctx.get(&self.key), expand, false)
    }

    /// Whether the condition holds for a statement of `effect`, failing closed where the
    /// request leaves room for more than one reading: a single-valued key given several
    /// values ([`Context::is_ambiguous`], read once per value) and string comparisons of tag
    /// keys (read as written and without regard to case). An Allow needs the condition on
    /// every reading; a Deny applies when it holds on any.
    pub fn holds(&self, effect: Effect, ctx: &Context, expand: &Expand<'_>) -> bool {
        let present = ctx.get(&self.key);
        // Whether the condition held on every reading, and on any.
        let (mut every, mut some) = (true, false);
        let mut reading = |held: bool| {
            every &= held;
            some |= held;
        };
        match present {
            Some(values) if values.len() > 1 && ctx.is_ambiguous(&self.key) => {
                for value in values {
                    reading(self.matches_values(Some(std::slice::from_ref(value)), expand, false));
                }
            }
            _ => reading(self.matches_values(present, expand, false)),
        }
        if TAG_KEY_VALUED.iter().any(|key| key.eq_ignore_ascii_case(&self.key)) {
            reading(self.matches_values(present, expand, true));
        }
        match effect {
            Effect::Allow => every,
            Effect::Deny => some,
        }
    }

    fn matches_values(
        &self,
        present: Option<&[String]>,
        expand: &Expand<'_>,
        fold_case: bool,
    ) -> bool {
        let present = present.filter(|v| !v.is_empty());
        if self.op == ConditionOp::Null {
            return self.values.iter().any(|v| match v.to_ascii_lowercase().as_str() {
                "true" => present.is_none(),
                "false" => present.is_some(),
                _ => false,
            });
        }
        let negated = self.op.negation_of();
        let Some(actual) = present else {
            return self.if_exists
                || match self.qualifier {
                    Some(SetQualifier::ForAllValues) => true,
                    Some(SetQualifier::ForAnyValue) => false,
                    None => negated.is_some(),
                };
        };
        let wanted: Vec<Cow<'_, str>> = self.values.iter().filter_map(|v| expand(v)).collect();
        let base = negated.unwrap_or(self.op);
        let satisfied = |value: &String| {
            let hit = wanted.iter().any(|w| positive(base, value, w, fold_case));
            if negated.is_some() { !hit } else { hit }
        };
        match (self.qualifier, negated) {
            (Some(SetQualifier::ForAllValues), _) | (None, Some(_)) => actual.iter().all(satisfied),
            (Some(SetQualifier::ForAnyValue), _) | (None, None) => actual.iter().any(satisfied),
        }
    }

    /// True when the condition confines a statement to named callers, so that it is not
    /// public even with `Principal: "*"`. The rule follows S3's "fixed values" (Block Public
    /// Access) and IAM Access Analyzer: a positive operator (no `IfExists`, no
    /// `ForAllValues`, which both hold for a missing key) on a key that names the caller,
    /// where every value is fixed: no wildcard and no policy variable in the part that names
    /// the account or principal. See [`fixed_caller_value`] and [`narrow_ip_ranges`].
    pub(crate) fn restricts_principal(&self) -> bool {
        use ConditionOp::*;
        if self.if_exists || self.qualifier == Some(SetQualifier::ForAllValues) {
            return false;
        }
        let key = self.key.to_ascii_lowercase();
        if key == "aws:sourceip" {
            return self.op == IpAddress && narrow_ip_ranges(&self.values);
        }
        let string_op = matches!(
            self.op,
            StringEquals | StringEqualsIgnoreCase | StringLike | ArnEquals | ArnLike
        );
        string_op && self.values.iter().all(|v| fixed_caller_value(&key, v))
    }
}

/// The most IPv4 addresses, summed over all listed ranges, that still count as "a set of
/// CIDRs" rather than everyone: one /8 (2^24 addresses).
const MAX_PINNED_V4: u128 = 1 << 24;
/// The IPv6 counterpart: one /32, the size of a typical registry allocation (2^96).
const MAX_PINNED_V6: u128 = 1 << 96;

/// True when `values` are all valid CIDRs (or addresses) and their sizes, summed per address
/// family, stay within [`MAX_PINNED_V4`] and [`MAX_PINNED_V6`]. Summing overlapping ranges
/// overcounts, which can only make a policy count as public, never the reverse. IPv6 ranges
/// reaching into the IPv4-mapped block (`::ffff:0:0/96`) also count, for that part, as IPv4:
/// a dual-stack listener sees IPv4 clients at such addresses.
fn narrow_ip_ranges(values: &[String]) -> bool {
    const MAPPED: u128 = 0xffff_0000_0000;
    let mask = |bits: u32| if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
    let (mut v4, mut v6) = (0u128, 0u128);
    for v in values {
        let Some((addr, bits)) = parse_cidr(v) else { return false };
        match addr {
            IpAddr::V4(_) => v4 = v4.saturating_add(1u128 << (32 - bits)),
            IpAddr::V6(a) => {
                let size = if bits == 0 { u128::MAX } else { 1u128 << (128 - bits) };
                v6 = v6.saturating_add(size);
                let net = u128::from(a) & mask(bits);
                let mapped = if bits <= 96 {
                    (MAPPED & mask(bits) == net).then_some(1u128 << 32)
                } else {
                    (net & mask(96) == MAPPED).then_some(size)
                };
                v4 = v4.saturating_add(mapped.unwrap_or(0));
            }
        }
    }
    v4 <= MAX_PINNED_V4 && v6 <= MAX_PINNED_V6
}

/// Whether `s` is literal: no `*` or `?` wildcard and no `${...}` policy variable.
fn literal(s: &str) -> bool {
    !s.contains(['*', '?']) && !s.contains("${")
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `value` of caller-naming condition key `key` (lower case) names concrete
/// callers. The part that says who is calling must be literal; what follows it may hold
/// wildcards (`arn:aws:iam::111122223333:user/*` is one account's users).
fn fixed_caller_value(key: &str, value: &str) -> bool {
    match key {
        "aws:principalaccount" | "aws:sourceaccount" | "aws:sourceowner" => is_account_id(value),
        // Literal up to and including the account field, which must be an account id; an
        // ARN with no account (an S3 bucket's) must be literal throughout. The prefix must
        // be literal too, or a `*` there could stretch over another account's ARN.
        "aws:principalarn" | "aws:sourcearn" => {
            let fields: Vec<&str> = value.splitn(6, ':').collect();
            if fields.len() != 6 || fields[0] != "arn" || !fields[..5].iter().all(|f| literal(f)) {
                return false;
            }
            if fields[4].is_empty() { literal(value) } else { is_account_id(fields[4]) }
        }
        // A unique id, or `AROAROLEID:*` for any session of one role (S3's exception).
        "aws:userid" => {
            let id = value.split_once(':').map_or(value, |(id, _)| id);
            !id.is_empty() && literal(id) && (value.contains(':') || literal(value))
        }
        "aws:principalorgid" | "aws:sourcevpc" | "aws:sourcevpce" => {
            !value.is_empty() && literal(value)
        }
        // `o-xxxx/r-xxxx/ou-...`: the organization must be literal.
        "aws:principalorgpaths" => {
            let org = value.split('/').next().unwrap_or("");
            !org.is_empty() && literal(org) && value.contains('/')
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(json: &str) -> Condition {
        let v: Value = serde_json::from_str(json).unwrap();
        let mut list = parse_block(&v, false).unwrap();
        assert_eq!(list.len(), 1);
        list.remove(0)
    }

    fn ctx(pairs: &[(&str, &[&str])]) -> Context {
        let mut c = Context::default();
        for (k, vs) in pairs {
            c.set_all(k, vs.iter().map(|s| s.to_string()).collect());
        }
        c
    }

    fn eval(c: &Condition, context: &Context) -> bool {
        c.matches(context, &|v| Some(Cow::Borrowed(v)))
    }

    #[test]
    fn string_operators_follow_case_and_wildcard_rules() {
        let c = cond(r#"{"StringEquals":{"secretsmanager:ResourceTag/Env":["prod","stage"]}}"#);
        assert!(eval(&c, &ctx(&[("secretsmanager:resourcetag/env", &["prod"])])));
        assert!(!eval(&c, &ctx(&[("secretsmanager:ResourceTag/Env", &["Prod"])])));
        assert!(!eval(&c, &ctx(&[])));
        let c = cond(r#"{"StringEqualsIgnoreCase":{"k:x":"PROD"}}"#);
        assert!(eval(&c, &ctx(&[("k:x", &["prod"])])));
        let c = cond(r#"{"StringLike":{"secretsmanager:Name":"prod/*"}}"#);
        assert!(eval(&c, &ctx(&[("secretsmanager:Name", &["prod/db"])])));
        assert!(!eval(&c, &ctx(&[("secretsmanager:Name", &["dev/db"])])));
    }

    #[test]
    fn negated_operators_are_true_for_missing_keys_and_need_every_value_to_differ() {
        let c = cond(r#"{"StringNotEquals":{"aws:PrincipalAccount":"111122223333"}}"#);
        assert!(eval(&c, &ctx(&[])));
        assert!(eval(&c, &ctx(&[("aws:PrincipalAccount", &["444455556666"])])));
        assert!(!eval(&c, &ctx(&[("aws:PrincipalAccount", &["111122223333"])])));
        let c = cond(r#"{"StringNotLike":{"aws:TagKeys":"sys*"}}"#);
        assert!(!eval(&c, &ctx(&[("aws:TagKeys", &["team", "system"])])));
    }

    #[test]
    fn if_exists_and_set_qualifiers_handle_absent_and_multiple_values() {
        let c = cond(r#"{"StringEqualsIfExists":{"secretsmanager:VersionStage":"AWSCURRENT"}}"#);
        assert!(eval(&c, &ctx(&[])));
        assert!(!eval(&c, &ctx(&[("secretsmanager:VersionStage", &["AWSPREVIOUS"])])));
        let all = cond(r#"{"ForAllValues:StringEquals":{"aws:TagKeys":["Env","Team"]}}"#);
        assert!(eval(&all, &ctx(&[("aws:TagKeys", &["Env"])])));
        assert!(!eval(&all, &ctx(&[("aws:TagKeys", &["Env", "Owner"])])));
        assert!(eval(&all, &ctx(&[])));
        let any = cond(r#"{"ForAnyValue:StringEquals":{"aws:TagKeys":["Env","Team"]}}"#);
        assert!(eval(&any, &ctx(&[("aws:TagKeys", &["Owner", "Team"])])));
        assert!(!eval(&any, &ctx(&[])));
    }

    #[test]
    fn null_checks_presence() {
        let c = cond(r#"{"Null":{"aws:RequestTag/Env":"true"}}"#);
        assert!(eval(&c, &ctx(&[])));
        assert!(!eval(&c, &ctx(&[("aws:RequestTag/Env", &["x"])])));
        let c = cond(r#"{"Null":{"aws:RequestTag/Env":false}}"#);
        assert!(eval(&c, &ctx(&[("aws:RequestTag/Env", &["x"])])));
    }

    #[test]
    fn numeric_date_bool_ip_and_arn_operators_compare_by_type() {
        let c = cond(r#"{"NumericLessThanEquals":{"secretsmanager:RecoveryWindowInDays":7}}"#);
        assert!(eval(&c, &ctx(&[("secretsmanager:RecoveryWindowInDays", &["7"])])));
        assert!(!eval(&c, &ctx(&[("secretsmanager:RecoveryWindowInDays", &["30"])])));
        let c = cond(r#"{"DateLessThan":{"aws:CurrentTime":"2030-01-01T00:00:00Z"}}"#);
        assert!(eval(&c, &ctx(&[("aws:CurrentTime", &["2029-12-31T23:59:59Z"])])));
        assert!(!eval(&c, &ctx(&[("aws:CurrentTime", &["2030-01-01T00:00:00Z"])])));
        let c = cond(r#"{"Bool":{"secretsmanager:ForceDeleteWithoutRecovery":"true"}}"#);
        assert!(eval(&c, &ctx(&[("secretsmanager:ForceDeleteWithoutRecovery", &["true"])])));
        let c = cond(r#"{"IpAddress":{"aws:SourceIp":["10.0.0.0/8","2001:db8::/32"]}}"#);
        assert!(eval(&c, &ctx(&[("aws:SourceIp", &["10.1.2.3"])])));
        assert!(eval(&c, &ctx(&[("aws:SourceIp", &["2001:db8::1"])])));
        assert!(!eval(&c, &ctx(&[("aws:SourceIp", &["127.0.0.1"])])));
        let c = cond(r#"{"NotIpAddress":{"aws:SourceIp":"127.0.0.0/8"}}"#);
        assert!(!eval(&c, &ctx(&[("aws:SourceIp", &["127.0.0.1"])])));
        let c = cond(r#"{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::111122223333:user/ops-*"}}"#);
        assert!(eval(
            &c,
            &ctx(&[("aws:PrincipalArn", &["arn:aws:iam::111122223333:user/ops-amy"])])
        ));
        assert!(!eval(&c, &ctx(&[("aws:PrincipalArn", &["arn:aws:iam::111122223333:user/dev"])])));
    }

    #[test]
    fn unknown_operators_and_malformed_keys_are_grammar_errors() {
        let v: Value =
            serde_json::from_str(r#"{"StringEqualz":{"a:b":"c"},"Bool":{"nokey":"x"}}"#).unwrap();
        let problems = parse_block(&v, false).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
    }
}
