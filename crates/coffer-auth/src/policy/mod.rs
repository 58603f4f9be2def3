//! IAM policy documents: parsing into typed statements, grammar findings for
//! ValidateResourcePolicy and MalformedPolicyDocumentException, the public-access
//! check behind `BlockPublicPolicy`, and evaluation (`eval`).

mod condition;
mod eval;
mod iam_words;
mod wildcard;

pub use condition::{Condition, ConditionOp};
pub use eval::{Context, Decision, Request, evaluate, evaluate_key_policy};
pub use iam_words::{IamDocument, iam_refusal};
pub use wildcard::wildcard_match;

use serde_json::Value;
use std::sync::Arc;

/// Where a policy is attached, which decides its grammar: identity policies name no
/// principal, resource policies must.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    Identity,
    Resource,
}

impl PolicyKind {
    /// How AWS's denial messages name this kind of policy.
    pub fn describe(self) -> &'static str {
        match self {
            PolicyKind::Identity => "identity-based",
            PolicyKind::Resource => "resource-based",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// A list of patterns that is either matched (`Action`) or must not match (`NotAction`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Patterns {
    Only(Vec<String>),
    AllBut(Vec<String>),
}

/// The principals a resource-policy statement names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Principals {
    /// `"*"` or `{"AWS": "*"}`: every principal.
    pub everyone: bool,
    /// `AWS` entries: account ids, root ARNs, user and role ARNs.
    pub aws: Vec<String>,
    /// `Service`, `Federated` and `CanonicalUser` entries: never an IAM user of Coffer.
    pub other: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub sid: Option<String>,
    pub effect: Effect,
    pub principal: Option<Principals>,
    pub not_principal: Option<Principals>,
    pub action: Patterns,
    /// `None` only in a resource policy, where it means the resource the policy is on.
    pub resource: Option<Patterns>,
    pub conditions: Vec<Condition>,
}

/// A parsed policy document.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub kind: PolicyKind,
    /// `2012-10-17` enables policy variables; `2008-10-17` (or none) leaves `${...}` literal.
    pub variables: bool,
    /// Shared: a policy every caller holds the same (an AWS managed one, parsed once) is
    /// cloned by reference; a change (`into_global_arns_in`) copies it first.
    pub statements: Arc<Vec<Statement>>,
}

/// A problem found in a policy document, as ValidateResourcePolicy reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The check that found it: `SYNTAX_CHECK`, `BROAD_ACCESS_CHECK` or `LOCKOUT_CHECK`.
    pub check: &'static str,
    pub message: String,
}

pub const SYNTAX_CHECK: &str = "SYNTAX_CHECK";
pub const BROAD_ACCESS_CHECK: &str = "BROAD_ACCESS_CHECK";
pub const LOCKOUT_CHECK: &str = "LOCKOUT_CHECK";

struct Parser {
    findings: Vec<String>,
    /// Identity policies: what IAM accepts and evaluation reads safely is let through
    /// (`IAM_LENIENCY`).
    lenient: bool,
}

// IAM_LENIENCY: IAM stores identity policies whose actions and resources no request can
// match (`iam: a b`, `arn:aws:fdsasf`), condition keys without a prefix, operators it does
// not know with no keys, empty value lists and nulls in lists (moto's valid documents,
// checked against AWS). Each only ever matches nothing, so evaluation stays as strict:
// resource and key policies keep Coffer's stricter grammar.

impl Parser {
    fn error(&mut self, message: impl Into<String>) {
        self.findings.push(message.into());
    }

    fn strings(&mut self, where_: &str, v: &Value) -> Vec<String> {
        match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(items) if !items.is_empty() => {
                let out: Vec<String> =
                    items.iter().filter_map(|i| i.as_str().map(str::to_string)).collect();
                let nulls = items.iter().filter(|i| i.is_null()).count();
                if out.len() != items.len() && !(self.lenient && out.len() + nulls == items.len()) {
                    self.error(format!("{where_} must hold only strings."));
                }
                out
            }
            _ => {
                self.error(format!("{where_} must be a string or a non-empty list of strings."));
                Vec::new()
            }
        }
    }

    fn actions(&mut self, where_: &str, v: &Value) -> Vec<String> {
        let actions = self.strings(where_, v);
        for a in &actions {
            let valid = a == "*"
                || a.split_once(':').is_some_and(|(service, name)| {
                    !service.is_empty()
                        && service.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                        && !name.is_empty()
                        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"*?".contains(&b))
                });
            let accepted = valid || (self.lenient && iam_words::action_is_accepted(a));
            if !accepted {
                self.error(format!(
                    "{where_}: '{a}' is not a valid action; write <service>:<action>, for example secretsmanager:GetSecretValue."
                ));
            }
        }
        actions
    }

    fn resources(&mut self, where_: &str, v: &Value) -> Vec<String> {
        let resources = self.strings(where_, v);
        for r in &resources {
            let arn = r == "*" || (r.starts_with("arn:") && r.splitn(6, ':').count() == 6);
            let accepted = arn || (self.lenient && iam_words::resource_is_accepted(r));
            if !accepted {
                self.error(format!(
                    "{where_}: '{r}' is not a valid resource; write \"*\" or an ARN (arn:partition:service:region:account:resource)."
                ));
            }
        }
        resources
    }

    fn principals(&mut self, where_: &str, v: &Value) -> Principals {
        let mut out = Principals::default();
        match v {
            Value::String(s) if s == "*" => out.everyone = true,
            Value::Object(map) if !map.is_empty() => {
                for (kind, ids) in map {
                    let ids = self.strings(&format!("{where_}.{kind}"), ids);
                    match kind.as_str() {
                        "AWS" => {
                            for id in ids {
                                if id == "*" {
                                    out.everyone = true;
                                } else if is_aws_principal(&id) {
                                    out.aws.push(id);
                                } else {
                                    self.error(format!(
                                        "{where_}: '{id}' is not a valid AWS principal; write an account id, an IAM ARN or \"*\"."
                                    ));
                                }
                            }
                        }
                        "Service" | "Federated" | "CanonicalUser" => out.other.extend(ids),
                        other => self.error(format!(
                            "{where_}: unknown principal type '{other}'; use AWS, Service, Federated or CanonicalUser."
                        )),
                    }
                }
            }
            _ => self.error(format!(
                "{where_} must be \"*\" or an object such as {{\"AWS\": \"arn:aws:iam::123456789012:root\"}}."
            )),
        }
        out
    }

    fn statement(&mut self, n: usize, v: &Value, kind: PolicyKind) -> Option<Statement> {
        let Some(s) = v.as_object() else {
            self.error(format!("Statement {n} must be an object."));
            return None;
        };
        for key in s.keys() {
            if !matches!(
                key.as_str(),
                "Sid"
                    | "Effect"
                    | "Principal"
                    | "NotPrincipal"
                    | "Action"
                    | "NotAction"
                    | "Resource"
                    | "NotResource"
                    | "Condition"
            ) {
                self.error(format!("Statement {n} has an unknown element '{key}'."));
            }
        }
        let sid = match s.get("Sid") {
            None => None,
            Some(Value::String(sid)) => Some(sid.clone()),
            Some(_) => {
                self.error(format!("Statement {n}: Sid must be a string."));
                None
            }
        };
        let effect = match s.get("Effect").and_then(Value::as_str) {
            Some("Allow") => Some(Effect::Allow),
            Some("Deny") => Some(Effect::Deny),
            _ => {
                self.error(format!("Statement {n} must have Effect \"Allow\" or \"Deny\"."));
                None
            }
        };
        let action = match (s.get("Action"), s.get("NotAction")) {
            (Some(a), None) => {
                Some(Patterns::Only(self.actions(&format!("Statement {n}: Action"), a)))
            }
            (None, Some(a)) => {
                Some(Patterns::AllBut(self.actions(&format!("Statement {n}: NotAction"), a)))
            }
            _ => {
                self.error(format!("Statement {n} must have exactly one of Action or NotAction."));
                None
            }
        };
        let resource = match (s.get("Resource"), s.get("NotResource")) {
            (Some(r), None) => {
                Some(Patterns::Only(self.resources(&format!("Statement {n}: Resource"), r)))
            }
            (None, Some(r)) => {
                Some(Patterns::AllBut(self.resources(&format!("Statement {n}: NotResource"), r)))
            }
            (None, None) if kind == PolicyKind::Resource => None,
            _ => {
                self.error(format!(
                    "Statement {n} must have exactly one of Resource or NotResource."
                ));
                None
            }
        };
        let (principal, not_principal) = match (s.get("Principal"), s.get("NotPrincipal")) {
            (Some(_), Some(_)) => {
                self.error(format!("Statement {n} cannot have both Principal and NotPrincipal."));
                (None, None)
            }
            (p, np) if kind == PolicyKind::Identity => {
                if p.is_some() || np.is_some() {
                    self.error(format!(
                        "Statement {n}: an identity-based policy cannot name a Principal or NotPrincipal."
                    ));
                }
                (None, None)
            }
            (Some(p), None) => {
                (Some(self.principals(&format!("Statement {n}: Principal"), p)), None)
            }
            (None, Some(p)) => {
                (None, Some(self.principals(&format!("Statement {n}: NotPrincipal"), p)))
            }
            (None, None) => {
                self.error(format!(
                    "Statement {n} must have a Principal or NotPrincipal in a resource policy."
                ));
                (None, None)
            }
        };
        let conditions = match s.get("Condition") {
            None => Vec::new(),
            Some(c) => match condition::parse_block(c, self.lenient) {
                Ok(list) => list,
                Err(problems) => {
                    for p in problems {
                        self.error(format!("Statement {n}: {p}"));
                    }
                    Vec::new()
                }
            },
        };
        Some(Statement {
            sid,
            effect: effect?,
            principal,
            not_principal,
            action: action?,
            resource,
            conditions,
        })
    }
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_aws_principal(id: &str) -> bool {
    if is_account_id(id) || is_unique_id(id) {
        return true;
    }
    let parts: Vec<&str> = id.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && matches!(parts[2], "iam" | "sts")
        && is_account_id(parts[4])
        && !parts[5].is_empty()
}

/// Whether `id` is an IAM unique id (`AIDA...` for a user, `AROA...` for a role). A stored
/// resource policy names users this way (see [`map_aws_principals`]), as AWS rewrites them.
pub fn is_unique_id(id: &str) -> bool {
    (id.starts_with("AIDA") || id.starts_with("AROA"))
        && (16..=128).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// The account and name of an IAM user ARN (`arn:<partition>:iam::<account>:user/<name>`),
/// as a resource policy may name a principal; `None` for anything else.
pub fn user_arn_parts(id: &str) -> Option<(&str, &str)> {
    let parts: Vec<&str> = id.splitn(6, ':').collect();
    if parts.len() != 6 || parts[0] != "arn" || parts[2] != "iam" || !parts[3].is_empty() {
        return None;
    }
    // A user ARN may carry an IAM path (`user/a/b/name`): the name is the last segment
    // (callers compare the whole ARN with the user's own).
    let name = parts[5].strip_prefix("user/")?.rsplit('/').next()?;
    (is_account_id(parts[4]) && !name.is_empty()).then_some((parts[4], name))
}

/// Replaces, in a policy document, every `AWS` principal of a `Principal` or `NotPrincipal`
/// for which `map` answers `Some`. `map` may refuse a principal with `Err`. Returns whether
/// anything was replaced.
///
/// PutResourcePolicy uses it to bind IAM user ARNs to the users' unique ids, as AWS does: a
/// user deleted and recreated under the same name gets a new unique id, so it does not
/// inherit what the policy granted the old one. GetResourcePolicy maps ids of users that
/// still exist back to their ARNs.
pub fn map_aws_principals<E>(
    doc: &mut Value,
    map: &mut dyn FnMut(&str) -> Result<Option<String>, E>,
) -> Result<bool, E> {
    let mut changed = false;
    let statements: Vec<&mut Value> = match doc.get_mut("Statement") {
        Some(Value::Array(list)) => list.iter_mut().collect(),
        Some(single @ Value::Object(_)) => vec![single],
        _ => return Ok(false),
    };
    for statement in statements {
        for element in ["Principal", "NotPrincipal"] {
            let Some(aws) = statement.get_mut(element).and_then(|p| p.get_mut("AWS")) else {
                continue;
            };
            let ids: Vec<&mut Value> = match aws {
                Value::Array(items) => items.iter_mut().collect(),
                single => vec![single],
            };
            for id in ids {
                let Some(text) = id.as_str() else { continue };
                if let Some(new) = map(text)? {
                    *id = Value::String(new);
                    changed = true;
                }
            }
        }
    }
    Ok(changed)
}

/// `value` written in `partition` if it is an IAM or STS ARN (`arn:<partition>:iam:...`,
/// `arn:<partition>:sts:...`); `None` for anything else.
fn global_arn_in(partition: coffer_core::Partition, value: &str) -> Option<String> {
    let known = coffer_core::Partition::of_arn(value)?;
    let global = matches!(value.split(':').nth(2), Some("iam" | "sts"));
    (global && known != partition).then(|| partition.rewrite(value))
}

/// The condition keys whose value, in a request, is an IAM or STS ARN written in the
/// request's partition (the caller, a policy, a grantee, an identity provider), compared
/// without regard to case as condition keys are.
const GLOBAL_ARN_KEYS: &[&str] = &[
    "aws:PrincipalArn",
    "aws:FederatedProvider",
    "iam:PolicyARN",
    "kms:GranteePrincipal",
    "kms:RetiringPrincipal",
];

/// Whether condition key `key` names IAM or STS ARNs in the request's partition.
fn names_global_arns(key: &str) -> bool {
    GLOBAL_ARN_KEYS.iter().any(|k| k.eq_ignore_ascii_case(key))
}

impl Policy {
    /// The policy with every IAM or STS ARN its Deny statements name (in `Resource` and
    /// `NotResource`, principals, and the values of the condition keys that hold such ARNs,
    /// `GLOBAL_ARN_KEYS`) written in `partition`. IAM and STS are global: one user, role
    /// or federated user, which a request signed for a region of another partition names by
    /// that partition's ARNs (`arn:aws-cn:iam::...`).
    /// A decision on such a resource reads the policy this way, so a Deny written in any
    /// partition's ARNs refuses the same entity (review 15, finding 02: a Deny on
    /// `arn:aws:iam::..:role/admin` did not match the role a cn request names, and the
    /// Allow on `*` did). An Allow is read as written: an ARN of another partition in it
    /// names nothing, as the fourteenth session decided (never wider than written).
    pub fn with_global_arns_in(&self, partition: coffer_core::Partition) -> Policy {
        self.clone().into_global_arns_in(partition)
    }

    /// [`Policy::with_global_arns_in`], taking the policy.
    pub fn into_global_arns_in(self, partition: coffer_core::Partition) -> Policy {
        let mut policy = self;
        let rewrite = |value: &mut String| {
            if let Some(rewritten) = global_arn_in(partition, value) {
                *value = rewritten;
            }
        };
        // Only Deny statements are rewritten: a policy without one stays shared.
        if !policy.statements.iter().any(|s| s.effect == Effect::Deny) {
            return policy;
        }
        let statements = Arc::make_mut(&mut policy.statements);
        for statement in statements.iter_mut().filter(|s| s.effect == Effect::Deny) {
            if let Some(Patterns::Only(list) | Patterns::AllBut(list)) = &mut statement.resource {
                list.iter_mut().for_each(rewrite);
            }
            let principals = [&mut statement.principal, &mut statement.not_principal];
            for named in principals.into_iter().flatten() {
                named.aws.iter_mut().chain(named.other.iter_mut()).for_each(rewrite);
            }
            // Only the keys whose request value is an IAM or STS ARN named in the request's
            // partition: other keys hold data (tags, encryption context, names), which no
            // partition rewrites, so a Deny on an ARN written in them reads as written
            // (review 15b, finding 01: a Deny on a tag holding `arn:aws:iam::...` passed in
            // cn-north-1).
            for condition in statement.conditions.iter_mut().filter(|c| names_global_arns(&c.key)) {
                condition.values.iter_mut().for_each(rewrite);
            }
        }
        policy
    }

    /// Whether any statement has a condition on `key` (compared without regard to case):
    /// lets a caller skip computing a costly condition key no policy reads.
    pub fn uses_condition_key(&self, key: &str) -> bool {
        self.statements.iter().flat_map(|s| &s.conditions).any(|c| c.key.eq_ignore_ascii_case(key))
    }

    /// Whether every request-context key this policy can read is one `stable` accepts:
    /// each condition's key, and no policy variable (`${...}`, which reads a key named
    /// at evaluation) anywhere in a statement of a policy that enables them. A decision
    /// made from such policies depends on nothing of the context but those keys, so a
    /// caller may keep it for as long as their values and the policies stay the same.
    pub fn reads_only(&self, stable: impl Fn(&str) -> bool) -> bool {
        let has_variable = |patterns: &[String]| patterns.iter().any(|p| p.contains("${"));
        let patterns = |p: &Patterns| match p {
            Patterns::Only(v) | Patterns::AllBut(v) => has_variable(v),
        };
        self.statements.iter().all(|s| {
            let conditions_stable = s.conditions.iter().all(|c| {
                stable(&c.key.to_ascii_lowercase()) && !(self.variables && has_variable(&c.values))
            });
            let names_variable = self.variables
                && (patterns(&s.action)
                    || s.resource.as_ref().is_some_and(patterns)
                    || [&s.principal, &s.not_principal]
                        .into_iter()
                        .flatten()
                        .any(|p| has_variable(&p.aws) || has_variable(&p.other)));
            conditions_stable && !names_variable
        })
    }

    /// Parses a policy document. `Err` holds every grammar problem, in document order.
    pub fn parse(text: &str, kind: PolicyKind) -> Result<Policy, Vec<String>> {
        let doc: Value = serde_json::from_str(text)
            .map_err(|_| vec!["The policy is not valid JSON.".to_string()])?;
        Policy::from_value(&doc, kind)
    }

    /// Parses an already decoded policy document.
    pub fn from_value(doc: &Value, kind: PolicyKind) -> Result<Policy, Vec<String>> {
        let mut p = Parser { findings: Vec::new(), lenient: kind == PolicyKind::Identity };
        let Some(obj) = doc.as_object() else {
            return Err(vec!["The policy must be a JSON object.".to_string()]);
        };
        for key in obj.keys() {
            if !matches!(key.as_str(), "Version" | "Id" | "Statement") {
                p.error(format!("The policy has an unknown element '{key}'."));
            }
        }
        let variables = match obj.get("Version") {
            None => false,
            Some(v) => match v.as_str() {
                Some("2012-10-17") => true,
                Some("2008-10-17") => false,
                _ => {
                    p.error("Version must be \"2012-10-17\" or \"2008-10-17\".");
                    false
                }
            },
        };
        let raw: Vec<&Value> = match obj.get("Statement") {
            Some(Value::Array(list)) if !list.is_empty() => list.iter().collect(),
            Some(single @ Value::Object(_)) => vec![single],
            _ => {
                p.error("The policy must have a Statement: an object or a non-empty list.");
                Vec::new()
            }
        };
        let statements: Vec<Statement> =
            raw.iter().enumerate().filter_map(|(i, s)| p.statement(i + 1, s, kind)).collect();
        if p.findings.is_empty() {
            Ok(Policy { kind, variables, statements: Arc::new(statements) })
        } else {
            Err(p.findings)
        }
    }

    /// True when the policy allows access to principals outside any named account:
    /// an Allow for `*` (or with NotPrincipal) whose conditions do not pin the caller to
    /// an account, organization or ARN. This is what `BlockPublicPolicy` refuses and what
    /// BROAD_ACCESS_CHECK reports. A condition pins only with fixed values: a wildcard in
    /// the account part (`arn:aws:iam::*:user/*`, `0*`...`9*`) or IP ranges that add up to
    /// more than a /8 still match everyone (`Condition::restricts_principal`).
    pub fn grants_public_access(&self) -> bool {
        self.statements.iter().any(|s| {
            s.effect == Effect::Allow
                && (s.principal.as_ref().is_some_and(|p| p.everyone) || s.not_principal.is_some())
                && !s.conditions.iter().any(Condition::restricts_principal)
        })
    }

    /// True when the policy denies every action to every principal unconditionally,
    /// which would leave nobody able to manage the resource again.
    fn locks_everyone_out(&self) -> bool {
        self.statements.iter().any(|s| {
            s.effect == Effect::Deny
                && s.principal.as_ref().is_some_and(|p| p.everyone)
                && s.conditions.is_empty()
                && matches!(&s.action, Patterns::Only(a) if a.iter().any(|a| a == "*" || a.eq_ignore_ascii_case("secretsmanager:*")))
                && matches!(&s.resource, None | Some(Patterns::Only(_)))
                && s.resource.as_ref().is_none_or(
                    |r| matches!(r, Patterns::Only(list) if list.iter().any(|r| r == "*")),
                )
        })
    }
}

/// Every finding ValidateResourcePolicy reports for a resource policy: grammar errors
/// (which make PutResourcePolicy fail), broad access and lock-out.
pub fn validate_resource_policy(text: &str) -> Vec<Finding> {
    match Policy::parse(text, PolicyKind::Resource) {
        Err(problems) => {
            problems.into_iter().map(|message| Finding { check: SYNTAX_CHECK, message }).collect()
        }
        Ok(policy) => {
            let mut out = Vec::new();
            if policy.grants_public_access() {
                out.push(Finding {
                    check: BROAD_ACCESS_CHECK,
                    message: "The policy grants access to every principal (Principal \"*\" or NotPrincipal) without a condition that limits it to an account, organization or principal ARN.".to_string(),
                });
            }
            if policy.locks_everyone_out() {
                out.push(Finding {
                    check: LOCKOUT_CHECK,
                    message: "The policy denies every action to every principal without a condition, so nobody, the secret's own account included, could read or change the secret or its policy afterwards.".to_string(),
                });
            }
            out
        }
    }
}

/// A MalformedPolicyDocumentException message for the first grammar problem.
pub fn malformed_message(problems: &[String]) -> String {
    match problems.first() {
        Some(p) if p == "The policy is not valid JSON." => {
            "This resource policy contains a syntax error: it is not valid JSON.".to_string()
        }
        Some(p) => format!("This resource policy contains an error: {p}"),
        None => "This resource policy contains an error.".to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_deny_statements_read_iam_and_sts_arns_in_the_requests_partition() {
        use coffer_core::Partition;
        let text = r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"sts:AssumeRole","Resource":"arn:aws:iam::111122223333:role/a"},
            {"Effect":"Deny","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"sts:AssumeRole","NotResource":["arn:aws:iam::111122223333:role/a","arn:aws:secretsmanager:us-east-1:111122223333:secret:x"],
             "Condition":{"ArnEquals":{"aws:PrincipalArn":"arn:aws:sts::111122223333:federated-user/f"}}}]}"#;
        let policy = super::Policy::parse(text, super::PolicyKind::Resource).unwrap();
        let cn = policy.with_global_arns_in(Partition::AwsCn);
        assert_eq!(cn.statements[0], policy.statements[0], "an Allow is read as written");
        let deny = &cn.statements[1];
        assert_eq!(deny.principal.as_ref().unwrap().aws, ["arn:aws-cn:iam::111122223333:root"]);
        assert_eq!(
            deny.resource,
            Some(super::Patterns::AllBut(vec![
                "arn:aws-cn:iam::111122223333:role/a".into(),
                // A regional ARN is another resource in another partition: as written.
                "arn:aws:secretsmanager:us-east-1:111122223333:secret:x".into(),
            ]))
        );
        assert_eq!(deny.conditions[0].values, ["arn:aws-cn:sts::111122223333:federated-user/f"]);
        assert_eq!(cn.with_global_arns_in(Partition::Aws), policy);
    }

    /// Review 15b, finding 01: a condition key that holds data (a tag, an encryption
    /// context) keeps the ARN a Deny compares it with as written; one that holds the
    /// request's IAM ARNs (`aws:PrincipalArn`) reads it in the request's partition.
    #[test]
    fn a_denys_condition_on_data_keeps_its_arns_as_written() {
        use coffer_core::Partition;
        let text = r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Deny","Action":"*","Resource":"*","Condition":{
             "StringEquals":{"aws:ResourceTag/owner":"arn:aws:iam::111122223333:user/bob"},
             "ArnEquals":{"AWS:PRINCIPALARN":"arn:aws:iam::111122223333:user/bob"}}}]}"#;
        let policy = super::Policy::parse(text, super::PolicyKind::Identity).unwrap();
        let cn = policy.with_global_arns_in(Partition::AwsCn);
        let value = |key: &str| {
            let found =
                cn.statements[0].conditions.iter().find(|c| c.key.eq_ignore_ascii_case(key));
            found.unwrap().values.clone()
        };
        assert_eq!(value("aws:ResourceTag/owner"), ["arn:aws:iam::111122223333:user/bob"]);
        assert_eq!(value("aws:PrincipalArn"), ["arn:aws-cn:iam::111122223333:user/bob"]);
    }

    use super::*;

    #[test]
    fn reads_only_sees_every_condition_key_and_every_policy_variable() {
        let stable = |k: &str| k == "kms:calleraccount" || k.starts_with("aws:principaltag/");
        let parse = |text: &str| Policy::parse(text, PolicyKind::Resource).unwrap();
        let fixed = parse(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"StringEquals":{"kms:CallerAccount":"1","aws:PrincipalTag/Team":"a"}}}]}"#,
        );
        assert!(fixed.reads_only(stable));
        let per_request = parse(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"StringEquals":{"kms:CallerAccount":"1"},"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}]}"#,
        );
        assert!(!per_request.reads_only(stable));
        let variable_in_value = parse(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"StringEquals":{"kms:CallerAccount":"${aws:SourceIp}"}}}]}"#,
        );
        assert!(!variable_in_value.reads_only(stable));
        let variable_in_resource = parse(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"arn:aws:kms:*:*:key/${aws:username}"}]}"#,
        );
        assert!(!variable_in_resource.reads_only(stable));
        // Without variables enabled, `${...}` is literal text and reads nothing.
        let literal = parse(
            r#"{"Version":"2008-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"arn:aws:kms:*:*:key/${aws:username}"}]}"#,
        );
        assert!(literal.reads_only(stable));
    }

    const GOOD: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"secretsmanager:GetSecretValue","Resource":"*"}]}"#;

    #[test]
    fn a_well_formed_resource_policy_parses_and_is_not_public() {
        let policy = Policy::parse(GOOD, PolicyKind::Resource).unwrap();
        assert!(!policy.grants_public_access());
        assert!(validate_resource_policy(GOOD).is_empty());
    }

    #[test]
    fn grammar_problems_are_reported_with_their_statement() {
        assert_eq!(
            Policy::parse("{not json", PolicyKind::Resource).unwrap_err(),
            vec!["The policy is not valid JSON."]
        );
        let no_effect = r#"{"Statement":[{"Principal":"*","Action":"*","Resource":"*"}]}"#;
        let problems = Policy::parse(no_effect, PolicyKind::Resource).unwrap_err();
        assert_eq!(problems, vec!["Statement 1 must have Effect \"Allow\" or \"Deny\"."]);
        let no_principal = r#"{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
        assert!(
            Policy::parse(no_principal, PolicyKind::Resource).unwrap_err()[0].contains("Principal")
        );
        let bad_action =
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"GetSecretValue"}}"#;
        assert!(
            Policy::parse(bad_action, PolicyKind::Resource).unwrap_err()[0]
                .contains("not a valid action")
        );
        let bad_operator = r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"*","Condition":{"StringEqual":{"aws:PrincipalAccount":"1"}}}}"#;
        assert!(
            Policy::parse(bad_operator, PolicyKind::Resource).unwrap_err()[0]
                .contains("StringEqual")
        );
        let typo = r#"{"Statement":{"Effect":"Allow","Principal":"*","Actions":"*"}}"#;
        let problems = Policy::parse(typo, PolicyKind::Resource).unwrap_err();
        assert!(problems.iter().any(|p| p.contains("unknown element 'Actions'")), "{problems:?}");
    }

    #[test]
    fn identity_policies_need_a_resource_and_no_principal() {
        let with_principal = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":"*","Action":"*","Resource":"*"}}"#;
        assert!(Policy::parse(with_principal, PolicyKind::Identity).is_err());
        let no_resource = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*"}}"#;
        assert!(Policy::parse(no_resource, PolicyKind::Identity).is_err());
        assert!(
            Policy::parse(
                no_resource.replacen('}', r#","Resource":"*"}"#, 1).as_str(),
                PolicyKind::Identity
            )
            .is_ok()
        );
    }

    #[test]
    fn a_wildcard_principal_is_public_unless_a_condition_pins_the_account() {
        let public = GOOD.replace(r#"{"AWS":"arn:aws:iam::111122223333:root"}"#, r#""*""#);
        let policy = Policy::parse(&public, PolicyKind::Resource).unwrap();
        assert!(policy.grants_public_access());
        assert_eq!(validate_resource_policy(&public)[0].check, BROAD_ACCESS_CHECK);
        let pinned = public.replace(
            r#""Resource":"*""#,
            r#""Resource":"*","Condition":{"StringEquals":{"aws:PrincipalAccount":"111122223333"}}"#,
        );
        assert!(!Policy::parse(&pinned, PolicyKind::Resource).unwrap().grants_public_access());
        // A condition that does not name who is calling still leaves it open to everyone.
        let unpinned = public.replace(
            r#""Resource":"*""#,
            r#""Resource":"*","Condition":{"StringEquals":{"secretsmanager:VersionStage":"AWSCURRENT"}}"#,
        );
        assert!(Policy::parse(&unpinned, PolicyKind::Resource).unwrap().grants_public_access());
        let wildcard_pin = public.replace(
            r#""Resource":"*""#,
            r#""Resource":"*","Condition":{"StringLike":{"aws:PrincipalArn":"*"}}"#,
        );
        assert!(Policy::parse(&wildcard_pin, PolicyKind::Resource).unwrap().grants_public_access());
    }

    #[test]
    fn denying_everything_to_everyone_is_a_lockout_finding() {
        let deny_all = r#"{"Version":"2012-10-17","Statement":{"Effect":"Deny","Principal":"*","Action":"secretsmanager:*","Resource":"*"}}"#;
        let findings = validate_resource_policy(deny_all);
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].check, LOCKOUT_CHECK);
    }

    /// A `Principal: "*"` Allow of GetSecretValue with `condition` (a JSON object).
    fn public_with(condition: &str) -> Policy {
        let text = format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":"*","Action":"secretsmanager:GetSecretValue","Resource":"*","Condition":{condition}}}]}}"#
        );
        Policy::parse(&text, PolicyKind::Resource).unwrap()
    }

    #[test]
    fn conditions_that_still_match_everyone_leave_a_policy_public() {
        let everyone = [
            r#"{"StringLike":{"aws:PrincipalArn":"arn:*"}}"#,
            r#"{"StringLike":{"aws:PrincipalArn":"arn:aws:iam::*"}}"#,
            r#"{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::*:user/*"}}"#,
            r#"{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::1111222233?3:root"}}"#,
            r#"{"StringLike":{"aws:PrincipalArn":"arn:*:iam::111122223333:user/x"}}"#,
            r#"{"StringLike":{"aws:PrincipalAccount":["0*","1*","2*","3*","4*","5*","6*","7*","8*","9*"]}}"#,
            r#"{"StringLike":{"aws:PrincipalAccount":"11112222333?"}}"#,
            r#"{"IpAddress":{"aws:SourceIp":["0.0.0.0/1","128.0.0.0/1"]}}"#,
            r#"{"IpAddress":{"aws:SourceIp":["10.0.0.0/8","11.0.0.0/8"]}}"#,
            r#"{"IpAddress":{"aws:SourceIp":"2000::/3"}}"#,
            r#"{"IpAddress":{"aws:SourceIp":"::ffff:0:0/96"}}"#,
            r#"{"IpAddress":{"aws:SourceIp":"::/64"}}"#,
            r#"{"IpAddress":{"aws:SourceIp":["::ffff:0.0.0.0/97","::ffff:128.0.0.0/97"]}}"#,
            r#"{"IpAddress":{"aws:SourceIp":"not-an-ip"}}"#,
            r#"{"StringLike":{"aws:SourceIp":"1*"}}"#,
            r#"{"StringLike":{"aws:userid":"A*"}}"#,
            r#"{"StringLike":{"aws:userid":"AIDA*:x"}}"#,
            r#"{"StringLike":{"aws:PrincipalOrgID":"o-*"}}"#,
            r#"{"StringEquals":{"aws:PrincipalAccount":"${aws:PrincipalAccount}"}}"#,
            r#"{"StringEquals":{"aws:PrincipalArn":"arn:aws:iam::${aws:PrincipalAccount}:root"}}"#,
            r#"{"StringLike":{"aws:SourceArn":"arn:aws:s3:::*"}}"#,
        ];
        for condition in everyone {
            assert!(public_with(condition).grants_public_access(), "{condition}");
            let text = serde_json::to_string(&serde_json::json!({
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*",
                               "Condition": serde_json::from_str::<Value>(condition).unwrap()}],
            }))
            .unwrap();
            let findings = validate_resource_policy(&text);
            assert!(findings.iter().any(|f| f.check == BROAD_ACCESS_CHECK), "{condition}");
        }
    }

    #[test]
    fn conditions_naming_concrete_callers_pin_a_wildcard_principal() {
        let pinned = [
            r#"{"StringEquals":{"aws:PrincipalAccount":"111122223333"}}"#,
            r#"{"StringEquals":{"aws:PrincipalAccount":["111122223333","444455556666"]}}"#,
            r#"{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::111122223333:user/*"}}"#,
            r#"{"StringLike":{"aws:PrincipalArn":"arn:aws:iam::111122223333:*"}}"#,
            r#"{"ArnEquals":{"aws:PrincipalArn":"arn:aws:iam::111122223333:role/ops"}}"#,
            r#"{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}"#,
            r#"{"IpAddress":{"aws:SourceIp":"::ffff:10.0.0.0/104"}}"#,
            r#"{"IpAddress":{"aws:SourceIp":["192.0.2.0/24","198.51.100.7","2001:db8::/32"]}}"#,
            r#"{"StringEquals":{"aws:userid":"AIDAEXAMPLEUSERID"}}"#,
            r#"{"StringLike":{"aws:userid":"AROAEXAMPLEROLEID:*"}}"#,
            r#"{"StringEquals":{"aws:PrincipalOrgID":"o-a1b2c3d4e5"}}"#,
            r#"{"ForAnyValue:StringLike":{"aws:PrincipalOrgPaths":"o-a1b2c3d4e5/r-ab12/*"}}"#,
            r#"{"StringEquals":{"aws:SourceArn":"arn:aws:s3:::my-bucket"}}"#,
            r#"{"StringEquals":{"aws:SourceVpce":"vpce-1a2b3c4d"}}"#,
        ];
        for condition in pinned {
            assert!(!public_with(condition).grants_public_access(), "{condition}");
        }
    }

    #[test]
    fn user_principals_map_to_unique_ids_and_back() {
        let text = r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Principal":{"AWS":["arn:aws:iam::111122223333:user/bob","111122223333"]},"Action":"*"},
            {"Effect":"Deny","NotPrincipal":{"AWS":"arn:aws:iam::111122223333:user/eve"},"Action":"*"}]}"#;
        let mut doc: Value = serde_json::from_str(text).unwrap();
        let mut seen = Vec::new();
        let changed = map_aws_principals::<()>(&mut doc, &mut |id| {
            seen.push(id.to_string());
            Ok(user_arn_parts(id).map(|(_, name)| format!("AIDA{}", name.to_uppercase().repeat(6))))
        })
        .unwrap();
        assert!(changed);
        assert_eq!(seen.len(), 3);
        let stored = serde_json::to_string(&doc).unwrap();
        assert!(stored.contains("AIDABOBBOBBOBBOBBOBBOB") && stored.contains("AIDAEVEEVE"));
        let policy = Policy::parse(&stored, PolicyKind::Resource).unwrap();
        assert!(policy.statements[0].principal.as_ref().unwrap().aws[0].starts_with("AIDA"));
        assert_eq!(user_arn_parts("arn:aws:iam::111122223333:root"), None);
        assert_eq!(user_arn_parts("arn:aws:sts::111122223333:user/x"), None);
        assert_eq!(
            user_arn_parts("arn:aws:iam::111122223333:user/bob"),
            Some(("111122223333", "bob"))
        );
        assert_eq!(
            user_arn_parts("arn:aws:iam::111122223333:user/contractors/bob"),
            Some(("111122223333", "bob"))
        );
        let refused = map_aws_principals(&mut doc, &mut |_| Err("no"));
        assert_eq!(refused, Err("no"));
    }
}
