//! Policy evaluation with AWS's logic: an explicit Deny anywhere wins; otherwise an
//! Allow is needed, from the caller's identity policies or the resource policy when
//! caller and resource share an account, and from both when they do not.

use super::wildcard::wildcard_match;
use super::{Effect, Patterns, Policy, PolicyKind, Principals, Statement};
use crate::principal::{Principal, account_root_arn};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The request context: condition keys (matched without regard to case) and their values.
///
/// Setting a key that is already set keeps every value, never just the last: tag keys are
/// case-sensitive on a secret but condition keys are not, so tags `class=restricted` and
/// `Class=public` are both `aws:ResourceTag/class`, and dropping either would let one tag
/// hide the other from a policy. A single-valued key that ends up with several values is
/// *ambiguous*, and conditions on it fail closed (see [`Context::is_ambiguous`]).
///
/// A context may be laid over a shared base ([`Context::over`]): the keys every decision
/// of one call shares (who, from where, when) are then built once and read through, not
/// copied into each decision's context. A key set on top starts from the base's values,
/// so it reads exactly as if the base had been copied.
#[derive(Debug, Clone, Default)]
pub struct Context {
    base: Option<Arc<Context>>,
    values: BTreeMap<String, Vec<String>>,
    ambiguous: BTreeSet<String>,
}

/// `key` as stored (condition keys match without regard to case): borrowed when it has
/// no upper-case letter, as the keys Coffer sets and most policies name have not. Beyond
/// ASCII (a tag key in `aws:RequestTag/<key>`, `aws:PrincipalTag/<key>`, ...) by its
/// lower-case form, as IAM tells a user's or role's tag keys apart and as
/// `StringEqualsIgnoreCase` compares: folded in ASCII only, `aws:RequestTag/CAFÉ` was not
/// `aws:RequestTag/café` though IAM took `CAFÉ` for the key `café`, so a Deny on tagging
/// `café` let `CAFÉ` replace it (review 18, finding 03).
fn folded(key: &str) -> Cow<'_, str> {
    if key.is_ascii() {
        if key.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(key.to_ascii_lowercase())
        } else {
            Cow::Borrowed(key)
        }
    } else {
        let lower = key.to_lowercase();
        if lower == key { Cow::Borrowed(key) } else { Cow::Owned(lower) }
    }
}

impl Context {
    /// An empty context laid over `base`, whose keys it reads as its own.
    pub fn over(base: Arc<Context>) -> Context {
        Context { base: Some(base), ..Context::default() }
    }

    /// This context, built without a base, laid over `base`: for keys `base` does not
    /// hold (a request's own condition keys over the caller's), it reads as if its keys
    /// had been set over `base`, without building `base` before they were set.
    pub fn laid_over(self, base: Arc<Context>) -> Context {
        debug_assert!(self.base.is_none(), "a context is laid over one base");
        Context { base: Some(base), ..self }
    }

    /// The values of `key` (folded) as this context holds them, to be extended: seeded
    /// with the base's values (and ambiguity) the first time the key is set on top.
    fn own_values(&mut self, key: Cow<'_, str>) -> (&mut Vec<String>, &mut BTreeSet<String>) {
        let Context { base, values, ambiguous } = self;
        // Most keys are set once, on a context with no base or whose base lacks them: one
        // search of the map when the key is already there, and no copy of the key to
        // look it up (this runs a dozen times per decision).
        if !values.contains_key(key.as_ref()) {
            let inherited = match base.as_deref() {
                Some(b) => {
                    if b.ambiguous_folded(&key) {
                        ambiguous.insert(key.to_string());
                    }
                    b.lookup(&key).map(<[String]>::to_vec).unwrap_or_default()
                }
                None => Vec::new(),
            };
            return (values.entry(key.into_owned()).or_insert(inherited), ambiguous);
        }
        let list = values.get_mut(key.as_ref()).expect("present");
        (list, ambiguous)
    }

    /// Sets a single-valued key. Set again (under a name equal but for case) with another
    /// value, the key keeps both and becomes ambiguous.
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        let key = folded(key);
        let value = value.into();
        let (list, ambiguous) = self.own_values(Cow::Borrowed(key.as_ref()));
        push_new(list, value);
        if list.len() > 1 && !ambiguous.contains(key.as_ref()) {
            ambiguous.insert(key.into_owned());
        }
    }

    /// Sets `key` to `value` alone, whatever it held or the base holds for it: for a key
    /// whose value depends on the decision, not the caller (`aws:ViaAWSService`, false
    /// in the caller's context and true where a service uses a key for the caller).
    pub fn replace(&mut self, key: &str, value: impl Into<String>) {
        let key = folded(key).into_owned();
        self.ambiguous.remove(&key);
        self.values.insert(key, vec![value.into()]);
    }

    /// Sets a multi-valued key (`aws:TagKeys`); an empty list counts as absent. Values set
    /// before are kept, so the key holds the union.
    pub fn set_all(&mut self, key: &str, values: Vec<String>) {
        let (list, _) = self.own_values(folded(key));
        for value in values {
            push_new(list, value);
        }
    }

    pub fn get(&self, key: &str) -> Option<&[String]> {
        self.lookup(&folded(key))
    }

    fn lookup(&self, folded: &str) -> Option<&[String]> {
        match self.values.get(folded) {
            Some(list) => Some(list),
            None => self.base.as_deref()?.lookup(folded),
        }
    }

    /// True when a single-valued key was given several values. A condition on it is read
    /// once per value: an Allow needs it to hold on every reading, a Deny applies when it
    /// holds on any.
    pub fn is_ambiguous(&self, key: &str) -> bool {
        self.ambiguous_folded(&folded(key))
    }

    fn ambiguous_folded(&self, folded: &str) -> bool {
        if self.values.contains_key(folded) {
            return self.ambiguous.contains(folded);
        }
        self.base.as_deref().is_some_and(|b| b.ambiguous_folded(folded))
    }
}

/// Past this many values a key is no longer searched for the one being added.
const SEARCHED_VALUES: usize = 16;

/// Adds `value` to a key's values unless a short list holds it already. A request sets as
/// many values of one key as it names tags (no model bounds a tag list; the services
/// refuse past 50 in their handlers, after authorization), and searching every value set
/// before cost the square of their number: 20,000 tags of a caller allowed nothing held a
/// worker for seconds (review 16, finding 06). A list that long holds many distinct values
/// (so a single-valued key is ambiguous already), and a value kept twice reads as it does
/// once (conditions test any or every value), so past the bound values are only added.
fn push_new(list: &mut Vec<String>, value: String) {
    let searched = list.len() < SEARCHED_VALUES;
    #[cfg(test)]
    COMPARED.with(|c| c.set(c.get() + if searched { list.len() } else { 0 }));
    if !searched || !list.contains(&value) {
        list.push(value);
    }
}

#[cfg(test)]
thread_local! {
    /// How many values [`push_new`] compared, on this thread (what the tests bound).
    static COMPARED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// One authorization question: may `principal` perform `action` on `resource`?
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub principal: &'a Principal,
    /// `secretsmanager:GetSecretValue`.
    pub action: &'a str,
    /// The resource ARN, or `*` for actions on no particular resource.
    pub resource: &'a str,
    /// The account that owns the resource; the caller's own for `*`.
    pub resource_account: &'a str,
    pub context: &'a Context,
}

/// The outcome, with enough detail to word AWS's denial message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// A Deny statement of this kind of policy matched.
    ExplicitDeny(PolicyKind),
    /// No Allow where one was needed: in the caller's identity policies, or (across
    /// accounts) in the resource policy.
    NoAllow(PolicyKind),
}

impl Decision {
    pub fn is_allowed(self) -> bool {
        self == Decision::Allow
    }

    /// AWS's AccessDeniedException message for this decision; `None` when allowed.
    pub fn denial_message(self, req: &Request<'_>) -> Option<String> {
        // Written only for a denial: every allowed call asks too.
        let head = || {
            format!(
                "User: {} is not authorized to perform: {} on resource: {}",
                req.principal.arn, req.action, req.resource
            )
        };
        match self {
            Decision::Allow => None,
            Decision::ExplicitDeny(kind) => {
                Some(format!("{} with an explicit deny in {} policy", head(), article(kind)))
            }
            Decision::NoAllow(kind) => Some(format!(
                "{} because no {} policy allows the {} action",
                head(),
                kind.describe(),
                req.action
            )),
        }
    }
}

fn article(kind: PolicyKind) -> String {
    match kind {
        PolicyKind::Identity => "an identity-based".to_string(),
        PolicyKind::Resource => "a resource-based".to_string(),
    }
}

/// How a resource-policy statement's principal covers the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Reach {
    /// The caller's account is named (by id or root ARN): the account's own identity
    /// policies must also allow, as AWS delegates to the account.
    Account,
    /// The caller is named (by ARN) or everyone is: enough on its own in the same account.
    Direct,
}

/// Whether a principal entry names the caller itself: by ARN, or by unique id, which is
/// how a stored resource policy names an IAM user (bound when the policy was put, so a
/// user recreated under the same name, with a new id, is not named).
/// A session of a role is named by its role's ARN too (or, bound, by the role's id).
fn names_caller(id: &str, caller: &Principal) -> bool {
    id == caller.arn
        || (!caller.user_id.is_empty() && id == caller.user_id)
        || caller.role_arn.as_deref() == Some(id)
        || (caller.is_assumed_role() && caller.user_id.split(':').next() == Some(id))
}

fn principal_reach(p: &Principals, caller: &Principal) -> Option<Reach> {
    if p.everyone || p.aws.iter().any(|id| names_caller(id, caller)) {
        return Some(Reach::Direct);
    }
    // A web identity caller is its OIDC provider, which trust policies name as
    // `Federated`; no IAM user or role has such an ARN.
    if caller.arn.contains(":oidc-provider/") && p.other.iter().any(|id| id == &caller.arn) {
        return Some(Reach::Direct);
    }
    let root = account_root_arn(caller.partition(), &caller.account);
    p.aws.iter().any(|id| id == &caller.account || id == &root).then_some(Reach::Account)
}

/// Substitutes `${key}` policy variables from the context. `None` when a variable has
/// no single value: the pattern then matches nothing.
fn expand<'p>(pattern: &'p str, ctx: &Context, enabled: bool) -> Option<Cow<'p, str>> {
    // Borrowed when there is nothing to substitute: every pattern of every statement
    // decided on comes through here.
    if !enabled || !pattern.contains("${") {
        return Some(Cow::Borrowed(pattern));
    }
    let mut out = String::with_capacity(pattern.len());
    let mut rest = pattern;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}')?;
        let name = after[..end].trim();
        match name {
            "*" | "?" | "$" => out.push_str(name),
            _ => match ctx.get(name) {
                Some([single]) => out.push_str(single),
                _ => return None,
            },
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Some(Cow::Owned(out))
}

fn any_matches(
    patterns: &[String],
    value: &str,
    ignore_case: bool,
    ctx: &Context,
    vars: bool,
) -> bool {
    // Actions take no variables: a long action list is only matched.
    if !vars {
        return patterns.iter().any(|p| wildcard_match(p, value, ignore_case));
    }
    patterns
        .iter()
        .filter_map(|p| expand(p, ctx, vars))
        .any(|p| wildcard_match(&p, value, ignore_case))
}

/// Whether a statement applies to the request; for resource policies, how far its
/// principal reaches.
fn applies(s: &Statement, req: &Request<'_>, vars: bool) -> Option<Reach> {
    let reach = match (&s.principal, &s.not_principal) {
        (Some(p), _) => principal_reach(p, req.principal)?,
        (None, Some(np)) => {
            if np.everyone || np.aws.iter().any(|id| names_caller(id, req.principal)) {
                return None;
            }
            Reach::Direct
        }
        (None, None) => Reach::Direct,
    };
    let action_hit = match &s.action {
        Patterns::Only(list) => any_matches(list, req.action, true, req.context, false),
        Patterns::AllBut(list) => !any_matches(list, req.action, true, req.context, false),
    };
    if !action_hit {
        return None;
    }
    let resource_hit = match &s.resource {
        None => true,
        Some(Patterns::Only(list)) => any_matches(list, req.resource, false, req.context, vars),
        Some(Patterns::AllBut(list)) => !any_matches(list, req.resource, false, req.context, vars),
    };
    if !resource_hit {
        return None;
    }
    let expand_value: &super::condition::Expand<'_> = &|v: &str| expand(v, req.context, vars);
    s.conditions.iter().all(|c| c.holds(s.effect, req.context, expand_value)).then_some(reach)
}

/// What the statements of one kind of policy say about a request.
#[derive(Default)]
struct Verdict {
    deny: bool,
    allow: Option<Reach>,
}

fn verdict<'p>(policies: impl IntoIterator<Item = &'p Policy>, req: &Request<'_>) -> Verdict {
    let mut v = Verdict::default();
    for policy in policies {
        for s in policy.statements.iter() {
            if let Some(reach) = applies(s, req, policy.variables) {
                match s.effect {
                    Effect::Deny => v.deny = true,
                    Effect::Allow => v.allow = v.allow.max(Some(reach)),
                }
            }
        }
    }
    v
}

/// Decides a request from the caller's identity policies and the resource's policy.
pub fn evaluate(req: &Request<'_>, identity: &[Policy], resource: Option<&Policy>) -> Decision {
    let id = verdict(identity, req);
    let res = verdict(resource, req);
    if id.deny {
        return Decision::ExplicitDeny(PolicyKind::Identity);
    }
    if res.deny {
        return Decision::ExplicitDeny(PolicyKind::Resource);
    }
    let same_account = req.principal.account == req.resource_account;
    if same_account {
        if id.allow.is_some() || res.allow == Some(Reach::Direct) {
            Decision::Allow
        } else {
            Decision::NoAllow(PolicyKind::Identity)
        }
    } else if res.allow.is_none() {
        Decision::NoAllow(PolicyKind::Resource)
    } else if id.allow.is_none() {
        Decision::NoAllow(PolicyKind::Identity)
    } else {
        Decision::Allow
    }
}

/// Decides a request on a KMS key, whose key policy must itself allow: identity policies
/// count only when the key policy delegates to the caller's account (as the default key
/// policy does, naming the account root), and a key without a policy behaves as one with
/// the default policy.
pub fn evaluate_key_policy(
    req: &Request<'_>,
    identity: &[Policy],
    key_policy: Option<&Policy>,
) -> Decision {
    let Some(key_policy) = key_policy else {
        return evaluate(req, identity, None);
    };
    let id = verdict(identity, req);
    let key = verdict([key_policy], req);
    if id.deny {
        return Decision::ExplicitDeny(PolicyKind::Identity);
    }
    if key.deny {
        return Decision::ExplicitDeny(PolicyKind::Resource);
    }
    let same_account = req.principal.account == req.resource_account;
    match key.allow {
        None => Decision::NoAllow(PolicyKind::Resource),
        Some(Reach::Direct) if same_account => Decision::Allow,
        Some(_) if id.allow.is_some() => Decision::Allow,
        Some(_) => Decision::NoAllow(PolicyKind::Identity),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sets the same keys on a copy of `base` and on a context laid over it.
    fn both(base: &Context, change: impl Fn(&mut Context)) -> (Context, Context) {
        let mut copied = base.clone();
        change(&mut copied);
        let mut layered = Context::over(Arc::new(base.clone()));
        change(&mut layered);
        (copied, layered)
    }

    #[test]
    fn a_context_over_a_base_reads_as_a_copy_of_it() {
        let mut base = Context::default();
        base.set("aws:username", "alice");
        base.set("aws:PrincipalTag/team", "a");
        base.set("aws:principaltag/Team", "b");
        base.set_all("aws:TagKeys", vec!["x".into()]);
        let (copied, layered) = both(&base, |c| {
            c.set("AWS:UserName", "bob");
            c.set("aws:ResourceTag/env", "prod");
            c.set_all("aws:tagkeys", vec!["y".into(), "x".into()]);
            c.set("aws:principaltag/team", "a");
        });
        for key in [
            "aws:username",
            "AWS:USERNAME",
            "aws:principaltag/team",
            "aws:tagkeys",
            "aws:resourcetag/env",
            "aws:SourceIp",
        ] {
            assert_eq!(copied.get(key), layered.get(key), "{key}");
            assert_eq!(copied.is_ambiguous(key), layered.is_ambiguous(key), "{key}");
        }
        assert!(layered.is_ambiguous("aws:username"));
        assert!(layered.is_ambiguous("aws:PrincipalTag/team"));
        assert_eq!(layered.get("aws:TagKeys").unwrap(), ["x", "y"]);
        // The base itself is untouched.
        let (_, untouched) = both(&base, |_| {});
        assert_eq!(untouched.get("aws:username").unwrap(), ["alice"]);
        assert!(!untouched.is_ambiguous("aws:username"));
    }

    /// A request names as many tags as its body holds (no model bounds Secrets Manager's,
    /// KMS's or IAM's tag lists; the services refuse past 50 only in their handlers, after
    /// authorization): each set key and value must cost about the same, not a scan of all
    /// the values before it (review 16, finding 06: 20,000 tags of one request took seconds
    /// of a worker, before any decision, for a caller allowed nothing). The values are all
    /// kept and the key reads the same: several distinct values make it ambiguous, and
    /// the conditions read each.
    #[test]
    fn many_values_of_one_key_are_set_in_linear_time_and_all_kept() {
        const MANY: usize = 4_000;
        COMPARED.with(|c| c.set(0));
        let values: Vec<String> = (0..MANY).map(|i| format!("v{i}")).collect();
        let mut c = Context::default();
        c.set_all("aws:TagKeys", values.clone());
        c.set_all("aws:TagKeys", vec!["v0".into(), "new".into()]);
        for v in &values {
            c.set("aws:RequestTag/k", v.clone());
        }
        let keys = c.get("aws:TagKeys").unwrap();
        assert!(keys.contains(&"new".to_string()));
        let distinct: BTreeSet<&String> = keys.iter().collect();
        assert_eq!(distinct.len(), MANY + 1, "every distinct value is kept");
        let tags = c.get("aws:RequestTag/k").unwrap();
        assert_eq!(tags.iter().collect::<BTreeSet<_>>().len(), MANY);
        assert!(c.is_ambiguous("aws:RequestTag/k"));
        // About as many comparisons as values set (each scans a short list at most), not
        // each value against all before it (16 million here).
        let compared = COMPARED.with(std::cell::Cell::get);
        assert!(compared <= 3 * MANY * 16, "{compared} comparisons for {} values", 3 * MANY);
        // A short list still keeps each value once: a key set twice to one value is not
        // ambiguous.
        let mut short = Context::default();
        short.set("aws:username", "alice");
        short.set("aws:username", "alice");
        short.set_all("aws:TagKeys", vec!["a".into(), "a".into()]);
        assert_eq!(short.get("aws:username").unwrap(), ["alice"]);
        assert!(!short.is_ambiguous("aws:username"));
        assert_eq!(short.get("aws:TagKeys").unwrap(), ["a"]);
    }

    /// `replace` gives a key one value over whatever the base held (a decision's own
    /// `aws:ViaAWSService` over the caller's), on a copy and on a layered context alike.
    #[test]
    fn a_replaced_key_holds_only_its_new_value() {
        let mut base = Context::default();
        base.set("aws:ViaAWSService", "false");
        base.set("aws:username", "alice");
        base.set("aws:username", "bob");
        let (copied, layered) = both(&base, |c| {
            c.replace("aws:viaawsservice", "true");
            c.replace("AWS:UserName", "carol");
        });
        for c in [&copied, &layered] {
            assert_eq!(c.get("aws:ViaAWSService").unwrap(), ["true"]);
            assert_eq!(c.get("aws:username").unwrap(), ["carol"]);
            assert!(!c.is_ambiguous("aws:username"));
        }
        assert_eq!(base.get("aws:viaawsservice").unwrap(), ["false"]);
    }

    #[test]
    fn policy_variables_expand_from_the_context() {
        let mut ctx = Context::default();
        ctx.set("aws:username", "alice");
        assert_eq!(
            expand("arn:x:secret:home/${aws:username}/*", &ctx, true).unwrap(),
            "arn:x:secret:home/alice/*"
        );
        assert_eq!(expand("${aws:username}", &ctx, false).unwrap(), "${aws:username}");
        assert_eq!(expand("a${*}b", &ctx, true).unwrap(), "a*b");
        assert_eq!(expand("${aws:userid}", &ctx, true), None);
    }

    #[test]
    fn a_key_policy_must_allow_and_delegates_to_identity_policies_through_the_account() {
        let p = Principal::user("111122223333", "app", "AIDAEXAMPLE");
        let ctx = Context::default();
        let key = "arn:aws:kms:us-east-1:111122223333:key/k";
        let req = Request {
            principal: &p,
            action: "kms:Decrypt",
            resource: key,
            resource_account: "111122223333",
            context: &ctx,
        };
        let allow_all = Policy::parse(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"kms:*","Resource":"*"}}"#,
            PolicyKind::Identity,
        )
        .unwrap();
        let root = Policy::parse(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}}"#,
            PolicyKind::Resource,
        )
        .unwrap();
        let other = Policy::parse(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/ops"},"Action":"kms:*","Resource":"*"}}"#,
            PolicyKind::Resource,
        )
        .unwrap();
        let both = std::slice::from_ref(&allow_all);
        assert_eq!(evaluate_key_policy(&req, both, None), Decision::Allow);
        assert_eq!(evaluate_key_policy(&req, &[], None), Decision::NoAllow(PolicyKind::Identity));
        assert_eq!(evaluate_key_policy(&req, both, Some(&root)), Decision::Allow);
        assert_eq!(
            evaluate_key_policy(&req, &[], Some(&root)),
            Decision::NoAllow(PolicyKind::Identity)
        );
        // A key policy that names someone else shuts out even an identity-allowed caller.
        assert_eq!(
            evaluate_key_policy(&req, both, Some(&other)),
            Decision::NoAllow(PolicyKind::Resource)
        );
    }

    #[test]
    fn denial_messages_follow_aws_wording() {
        let p = Principal::user("111122223333", "bob", "AIDAEXAMPLE");
        let ctx = Context::default();
        let req = Request {
            principal: &p,
            action: "secretsmanager:GetSecretValue",
            resource: "arn:aws:secretsmanager:us-east-1:111122223333:secret:x-AbCdEf",
            resource_account: "111122223333",
            context: &ctx,
        };
        assert_eq!(
            Decision::NoAllow(PolicyKind::Identity).denial_message(&req).unwrap(),
            "User: arn:aws:iam::111122223333:user/bob is not authorized to perform: secretsmanager:GetSecretValue on resource: arn:aws:secretsmanager:us-east-1:111122223333:secret:x-AbCdEf because no identity-based policy allows the secretsmanager:GetSecretValue action"
        );
        assert!(
            Decision::ExplicitDeny(PolicyKind::Resource)
                .denial_message(&req)
                .unwrap()
                .ends_with("x-AbCdEf with an explicit deny in a resource-based policy")
        );
        assert_eq!(Decision::Allow.denial_message(&req), None);
    }

    /// Decides GetSecretValue for a same-account user with `identity` on a secret whose
    /// tags are set in order into the context, as the server does.
    fn decide_tagged(identity: &str, tags: &[(&str, &str)]) -> Decision {
        let p = Principal::user("111122223333", "u", "AIDAEXAMPLE");
        let mut ctx = Context::default();
        for (k, v) in tags {
            ctx.set(&format!("secretsmanager:ResourceTag/{k}"), *v);
            ctx.set(&format!("aws:ResourceTag/{k}"), *v);
        }
        let req = Request {
            principal: &p,
            action: "secretsmanager:GetSecretValue",
            resource: "arn:aws:secretsmanager:us-east-1:111122223333:secret:s-AbCdEf",
            resource_account: "111122223333",
            context: &ctx,
        };
        let policy = Policy::parse(identity, PolicyKind::Identity).unwrap();
        evaluate(&req, std::slice::from_ref(&policy), None)
    }

    #[test]
    fn tags_differing_only_in_case_keep_every_value_and_fail_closed() {
        let deny_restricted = r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Action":"secretsmanager:*","Resource":"*"},
            {"Effect":"Deny","Action":"secretsmanager:GetSecretValue","Resource":"*",
             "Condition":{"StringEquals":{"secretsmanager:ResourceTag/class":"restricted"}}}]}"#;
        let restricted = [("class", "restricted")];
        let both = [("class", "restricted"), ("Class", "public")];
        let both_reversed = [("Class", "public"), ("class", "restricted")];
        assert!(!decide_tagged(deny_restricted, &restricted).is_allowed());
        assert!(!decide_tagged(deny_restricted, &both).is_allowed());
        assert!(!decide_tagged(deny_restricted, &both_reversed).is_allowed());
        assert!(decide_tagged(deny_restricted, &[("Class", "public")]).is_allowed());
        // "Deny unless public" must still deny when one of the values is not public.
        let deny_unless_public = deny_restricted
            .replace("StringEquals", "StringNotEquals")
            .replace("\"restricted\"", "\"public\"");
        assert!(!decide_tagged(&deny_unless_public, &both).is_allowed());
        assert!(decide_tagged(&deny_unless_public, &[("CLASS", "public")]).is_allowed());
        // An Allow on one value must hold for every value of the key.
        let allow_public = r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"*",
             "Condition":{"StringEquals":{"aws:ResourceTag/class":"public"}}}]}"#;
        assert!(decide_tagged(allow_public, &[("Class", "public")]).is_allowed());
        assert!(
            decide_tagged(allow_public, &[("Class", "public"), ("class", "public")]).is_allowed()
        );
        assert!(!decide_tagged(allow_public, &both).is_allowed());
        assert!(!decide_tagged(allow_public, &both_reversed).is_allowed());
        let allow_not_restricted = allow_public
            .replace("StringEquals", "StringNotEquals")
            .replace("\"public\"", "\"restricted\"");
        assert!(!decide_tagged(&allow_not_restricted, &both).is_allowed());
        assert!(decide_tagged(&allow_not_restricted, &[("Class", "public")]).is_allowed());
    }

    /// A condition key names a tag key beyond ASCII as IAM tells tag keys apart, by its
    /// lower-case form (review 18, finding 03): `CAFÉ` is `café`, a Deny on either sees a
    /// resource tagged with the other, and the two spellings on one resource fail closed.
    #[test]
    fn condition_keys_beyond_ascii_match_without_regard_to_case() {
        let deny_cafe = r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Action":"secretsmanager:*","Resource":"*"},
            {"Effect":"Deny","Action":"secretsmanager:GetSecretValue","Resource":"*",
             "Condition":{"StringEquals":{"aws:ResourceTag/café":"true"}}}]}"#;
        assert!(!decide_tagged(deny_cafe, &[("CAFÉ", "true")]).is_allowed());
        assert!(!decide_tagged(deny_cafe, &[("Café", "true")]).is_allowed());
        assert!(
            !decide_tagged(&deny_cafe.replace("café", "CAFÉ"), &[("café", "true")]).is_allowed()
        );
        assert!(!decide_tagged(deny_cafe, &[("CAFÉ", "false"), ("café", "true")]).is_allowed());
        assert!(decide_tagged(deny_cafe, &[("CAFÉ", "false")]).is_allowed());
        let mut ctx = Context::default();
        ctx.set("aws:RequestTag/ÉQUIPE", "x");
        assert_eq!(ctx.get("aws:requesttag/équipe"), Some(&["x".to_string()][..]));
    }

    #[test]
    fn a_tag_keys_deny_sees_keys_that_differ_only_in_case() {
        let p = Principal::user("111122223333", "u", "AIDAEXAMPLE");
        let identity = Policy::parse(
            r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Action":"secretsmanager:*","Resource":"*",
             "Condition":{"ForAllValues:StringEquals":{"aws:TagKeys":["team","class"]}}},
            {"Effect":"Deny","Action":"secretsmanager:TagResource","Resource":"*",
             "Condition":{"ForAnyValue:StringEquals":{"aws:TagKeys":"class"}}}]}"#,
            PolicyKind::Identity,
        )
        .unwrap();
        let decide = |keys: &[&str]| {
            let mut ctx = Context::default();
            ctx.set_all("aws:TagKeys", keys.iter().map(|k| k.to_string()).collect());
            let req = Request {
                principal: &p,
                action: "secretsmanager:TagResource",
                resource: "arn:aws:secretsmanager:us-east-1:111122223333:secret:s-AbCdEf",
                resource_account: "111122223333",
                context: &ctx,
            };
            evaluate(&req, std::slice::from_ref(&identity), None)
        };
        assert_eq!(decide(&["team"]), Decision::Allow);
        assert_eq!(decide(&["class"]), Decision::ExplicitDeny(PolicyKind::Identity));
        assert_eq!(decide(&["Class"]), Decision::ExplicitDeny(PolicyKind::Identity));
        assert_eq!(decide(&["team", "CLASS"]), Decision::ExplicitDeny(PolicyKind::Identity));
        // The Allow's list is exact: a case variant of an allowed key is not allowed.
        assert_eq!(decide(&["Team"]), Decision::NoAllow(PolicyKind::Identity));
    }

    #[test]
    fn a_resource_policy_naming_a_unique_id_reaches_only_that_user() {
        let policy = Policy::parse(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"AWS":"AIDAAAAAAAAAAAAAAAAA"},"Action":"secretsmanager:GetSecretValue"}}"#,
            PolicyKind::Resource,
        )
        .unwrap();
        let ctx = Context::default();
        let decide = |user_id: &str| {
            let p = Principal::user("111122223333", "bob", user_id);
            let req = Request {
                principal: &p,
                action: "secretsmanager:GetSecretValue",
                resource: "arn:aws:secretsmanager:us-east-1:111122223333:secret:s-AbCdEf",
                resource_account: "111122223333",
                context: &ctx,
            };
            evaluate(&req, &[], Some(&policy))
        };
        assert_eq!(decide("AIDAAAAAAAAAAAAAAAAA"), Decision::Allow);
        // The same name and ARN, recreated with another id.
        assert_eq!(decide("AIDABBBBBBBBBBBBBBBB"), Decision::NoAllow(PolicyKind::Identity));
    }
}
