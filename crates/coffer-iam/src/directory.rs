//! The rest of IAM's directory, as the IAM API manages it: user paths and tags, access
//! key status, managed policies and their attachments, groups and their members, and
//! roles with their trust policies. Each change is one IAM write (`Iam::write`), so it
//! bumps the store's IAM generation and every node's lookup cache sees it on the next
//! request.
//!
//! Records (besides `iam-user` and `iam-access-key`, see the crate root): `iam-policy`,
//! `iam-group` and `iam-role`, each under `<account>/<name>`. Users, groups and roles
//! share the shape of their policies (`policies`: inline documents by name; `attached`:
//! managed policy ARNs), so the inline/attached operations are written once over
//! [`Entity`]. A user's groups are kept on both sides (the group's `members`, the user's
//! `groups`) in the same transaction, so authentication reads a user's group policies
//! without scanning groups.
//!
//! Messages are IAM's own (`The user with name bob cannot be found.`), as the IAM API
//! answers them.

use super::{
    AccessKeyRecord, IamError, UserRecord, decode, encode, keys_of, load_user, no_such_user, read,
    user_key,
};
use crate::{ACCESS_KEY_KIND, Iam, USER_KIND};
use coffer_auth::policy::{IamDocument, Policy, PolicyKind};
use coffer_auth::principal::{ID_RANDOM_LEN, STORED, user_id};
use coffer_auth::sigv4::{echo, echo_at_most};
use coffer_core::validation::{Constraint, Violation};
use coffer_crypto::random_bytes;
use coffer_store::{ReadTxn, Store, StoreError, WriteTxn};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

pub const POLICY_KIND: &str = "iam-policy";
pub const GROUP_KIND: &str = "iam-group";
pub const ROLE_KIND: &str = "iam-role";

/// IAM's quotas that the API enforces.
pub const MAX_TAGS: usize = 50;
pub const MAX_ATTACHED: usize = 10;
pub const MAX_GROUPS_PER_USER: usize = 10;
pub const MAX_POLICY_VERSIONS: usize = 5;
/// AWS's per-account IAM quotas. Enforcing them also bounds every scan of an account's
/// users, groups, roles or policies (listings, name checks, attachment counts).
pub const MAX_USERS: usize = 5000;
pub const MAX_GROUPS: usize = 300;
pub const MAX_ROLES: usize = 1000;
pub const MAX_POLICIES: usize = 1500;

/// IAM's limits on policy text, counted in characters other than whitespace as IAM counts
/// them: a customer managed policy's document, and the aggregate of an entity's inline
/// policies. Besides fidelity they bound what every cached caller holds: a session's
/// caller keeps its role's parsed policies, once per session (review 14, finding 01).
pub const MANAGED_POLICY_MAX_CHARS: usize = 6144;

/// IAM's default quota on a role's trust policy (`ACLSizePerRole`), counted as the other
/// policy limits are (whitespace not counted).
pub const TRUST_POLICY_MAX_CHARS: usize = 2048;

/// The most characters of inline policy text `entity` may hold, all its policies together.
fn inline_policy_max_chars(entity: Entity) -> usize {
    match entity {
        Entity::User => 2048,
        Entity::Group => 5120,
        Entity::Role => 10_240,
    }
}

/// A policy's size as IAM counts it against its limits (whitespace not counted).
fn policy_chars(document: &str) -> usize {
    document.chars().filter(|c| !c.is_whitespace()).count()
}

/// Refuses a managed policy document past IAM's size limit, before it is parsed.
fn check_managed_policy_size(document: &str) -> Result<(), IamError> {
    if policy_chars(document) > MANAGED_POLICY_MAX_CHARS {
        return Err(IamError::Limit(format!(
            "Cannot exceed quota for PolicySize: {MANAGED_POLICY_MAX_CHARS}"
        )));
    }
    Ok(())
}

/// Refuses inline policies of `entity` `name` whose text together passes IAM's limit.
fn check_inline_policies_size<'a>(
    entity: Entity,
    name: &str,
    documents: impl IntoIterator<Item = &'a str>,
) -> Result<(), IamError> {
    let max = inline_policy_max_chars(entity);
    if documents.into_iter().map(policy_chars).sum::<usize>() > max {
        return Err(IamError::Limit(format!(
            "Maximum policy size of {max} bytes exceeded for {} {}",
            entity.noun(),
            echo(name)
        )));
    }
    Ok(())
}

fn account_quota(existing: usize, max: usize, what: &str) -> Result<(), IamError> {
    if existing >= max {
        return Err(IamError::Limit(format!("Cannot exceed quota for {what}: {max}")));
    }
    Ok(())
}
/// A role's session may last 1 to 12 hours; 1 hour unless set.
pub const DEFAULT_MAX_SESSION_SECS: i64 = 3600;

pub(crate) fn root_path() -> String {
    "/".to_string()
}

/// A tag on a user or role, in the order given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// One version of a managed policy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyVersion {
    /// `v1`, `v2`, ...
    pub id: String,
    pub document: String,
    pub created_ms: i64,
}

/// A customer managed policy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManagedPolicy {
    pub account: String,
    pub name: String,
    pub path: String,
    pub policy_id: String,
    #[serde(default)]
    pub description: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub default_version: String,
    pub versions: Vec<PolicyVersion>,
    /// Tags given at creation (records stored before policies kept tags have none).
    #[serde(default)]
    pub tags: Vec<Tag>,
}

impl ManagedPolicy {
    pub fn arn(&self) -> String {
        STORED.arn("iam", "", &self.account, &format!("policy{}{}", self.path, self.name))
    }

    /// The document of the default version.
    pub fn document(&self) -> Option<&str> {
        self.versions.iter().find(|v| v.id == self.default_version).map(|v| v.document.as_str())
    }
}

/// An IAM group: its members and policies.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupRecord {
    pub account: String,
    pub name: String,
    pub path: String,
    pub group_id: String,
    pub created_ms: i64,
    #[serde(default)]
    pub policies: BTreeMap<String, String>,
    #[serde(default)]
    pub attached: BTreeSet<String>,
    #[serde(default)]
    pub members: BTreeSet<String>,
}

impl GroupRecord {
    pub fn arn(&self) -> String {
        STORED.arn("iam", "", &self.account, &format!("group{}{}", self.path, self.name))
    }
}

/// An IAM role: who may assume it (the trust policy) and what its sessions may do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoleRecord {
    pub account: String,
    pub name: String,
    pub path: String,
    pub role_id: String,
    pub created_ms: i64,
    /// The trust (assume-role) policy document, as given.
    pub trust_policy: String,
    #[serde(default)]
    pub description: String,
    pub max_session_secs: i64,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(default)]
    pub policies: BTreeMap<String, String>,
    #[serde(default)]
    pub attached: BTreeSet<String>,
}

impl RoleRecord {
    pub fn arn(&self) -> String {
        STORED.arn("iam", "", &self.account, &format!("role{}{}", self.path, self.name))
    }
}

/// The users, groups and roles a managed policy is attached to (ListEntitiesForPolicy).
#[derive(Debug, Default)]
pub struct PolicyEntities {
    pub users: Vec<UserRecord>,
    pub groups: Vec<GroupRecord>,
    pub roles: Vec<RoleRecord>,
}

/// The kinds of identity that carry policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    User,
    Group,
    Role,
}

impl Entity {
    fn kind(self) -> &'static str {
        match self {
            Entity::User => USER_KIND,
            Entity::Group => GROUP_KIND,
            Entity::Role => ROLE_KIND,
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Entity::User => "user",
            Entity::Group => "group",
            Entity::Role => "role",
        }
    }

    pub fn not_found(self, name: &str) -> IamError {
        let name = echo(name);
        IamError::NotFound(format!("The {} with name {name} cannot be found.", self.noun()))
    }

    /// How many of this kind an account may hold, and the quota's name in IAM's error.
    fn quota(self) -> (usize, &'static str) {
        match self {
            Entity::User => (MAX_USERS, "UsersPerAccount"),
            Entity::Group => (MAX_GROUPS, "GroupsPerAccount"),
            Entity::Role => (MAX_ROLES, "RolesPerAccount"),
        }
    }

    pub(crate) fn exists(self, name: &str) -> IamError {
        let title = match self {
            Entity::User => "User",
            Entity::Group => "Group",
            Entity::Role => "Role",
        };
        let name = echo(name);
        IamError::Exists(format!("{title} with name {name} already exists."))
    }
}

/// Stores `record`, a new `entity` called `name`, in `account`. IAM refuses a name that
/// another of its kind in the account has, without regard to case, and one past the
/// account's quota.
fn insert_new<T: Serialize + serde::de::DeserializeOwned>(
    tx: &mut dyn WriteTxn,
    entity: Entity,
    account: &str,
    name: &str,
    record: &T,
    name_of: fn(&T) -> &str,
) -> Result<(), IamError> {
    let all: Vec<T> = records_in(tx, entity.kind(), account)?;
    if all.iter().any(|r| name_of(r).eq_ignore_ascii_case(name)) {
        return Err(entity.exists(name));
    }
    let (max, quota) = entity.quota();
    account_quota(all.len(), max, quota)?;
    put(tx, entity.kind(), account, name, record)?;
    Ok(())
}

/// The policies of a user, group or role, read from its record.
#[derive(Debug, Default, Deserialize)]
struct Policies {
    #[serde(default)]
    policies: BTreeMap<String, String>,
    #[serde(default)]
    attached: BTreeSet<String>,
}

/// A fresh unique id with IAM's prefix for the kind (`AGPA` groups, `AROA` roles,
/// `ANPA` policies).
fn unique_id(prefix: &str) -> String {
    let random: [u8; ID_RANDOM_LEN] =
        random_bytes(ID_RANDOM_LEN).try_into().expect("requested length");
    format!("{prefix}{}", &user_id(&random)[4..])
}

/// IAM's validation message for a member that does not satisfy its pattern.
fn validation(value: &str, member: &str, pattern: &str) -> IamError {
    invalid(Violation::value(value, member, Constraint::Pattern(pattern)))
}

/// IAM's `ValidationError` for one violation.
fn invalid(violation: Violation<'_>) -> IamError {
    IamError::Invalid(violation.message())
}

/// Names of users, groups, roles and policies: 1 to `max` of `[\w+=,.@-]`.
pub fn validate_name(name: &str, member: &str, max: usize) -> Result<(), IamError> {
    let ok = !name.is_empty()
        && name.len() <= max
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b));
    if ok {
        return Ok(());
    }
    if name.len() > max {
        return Err(invalid(Violation::value(name, member, Constraint::MaxLength(max as i64))));
    }
    Err(validation(name, member, "[\\w+=,.@-]+"))
}

/// Role and policy descriptions: at most 1000 characters (the models' bound).
pub fn validate_description(description: &str) -> Result<(), IamError> {
    if description.chars().count() <= 1000 {
        return Ok(());
    }
    // Quoted shorter than other values, so the whole message stays within the 512
    // characters an error may carry and keeps the constraint it names.
    let constraint = Constraint::MaxLength(1000);
    Err(invalid(Violation::value_at_most(description, 256, "description", constraint)))
}

/// Paths: `/` or `/` ... `/`, printable ASCII, at most 512 characters.
pub fn validate_path(path: &str) -> Result<(), IamError> {
    let ok = path.len() <= 512
        && path.starts_with('/')
        && path.ends_with('/')
        && path.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if ok {
        Ok(())
    } else {
        Err(validation(path, "path", "(\\u002F)|(\\u002F[\\u0021-\\u007E]+\\u002F)"))
    }
}

/// Checks an identity policy document as IAM does before storing it.
pub fn check_policy(document: &str) -> Result<Policy, IamError> {
    check_document(document, PolicyKind::Identity)
}

/// Checks an inline policy (Put*Policy) as IAM does, in IAM's words, then as Coffer
/// evaluates it.
pub fn check_inline_policy(document: &str) -> Result<Policy, IamError> {
    refused_in_iam_words(document, IamDocument::Inline)?;
    check_policy(document)
}

/// Checks a customer managed policy's document (CreatePolicy, CreatePolicyVersion) as
/// IAM does, in IAM's words (version 2012-10-17 required), then as Coffer evaluates it.
pub fn check_managed_policy(document: &str) -> Result<Policy, IamError> {
    refused_in_iam_words(document, IamDocument::Managed)?;
    check_policy(document)
}

/// IAM's own refusal of a document, if it has one. A document IAM accepts may still be
/// refused by Coffer's parser (in its own words) when Coffer could not evaluate it.
fn refused_in_iam_words(document: &str, kind: IamDocument) -> Result<(), IamError> {
    match coffer_auth::policy::iam_refusal(document, kind) {
        Some(message) => Err(IamError::Malformed(message)),
        None => Ok(()),
    }
}

/// Checks a role's trust policy (it names principals, as resource policies do), with the
/// rules IAM adds for trust policies and its words for them: a document that is not JSON,
/// a statement naming a resource, an action outside STS.
pub fn check_trust_policy(document: &str) -> Result<Policy, IamError> {
    // Before it is parsed, as the other size limits (sts15: any size up to the request
    // body was stored, and parsed whenever the role was assumed).
    if policy_chars(document) > TRUST_POLICY_MAX_CHARS {
        return Err(IamError::Limit(format!(
            "Cannot exceed quota for ACLSizePerRole: {TRUST_POLICY_MAX_CHARS}"
        )));
    }
    let Ok(parsed) = serde_json::from_str::<serde_json::Value>(document) else {
        return Err(IamError::Malformed("This policy contains invalid Json".into()));
    };
    let statements = match parsed.get("Statement") {
        Some(serde_json::Value::Array(all)) => all.iter().collect(),
        Some(one) => vec![one],
        None => Vec::new(),
    };
    for statement in &statements {
        if statement.get("Resource").is_some() || statement.get("NotResource").is_some() {
            return Err(IamError::Malformed("Has prohibited field Resource".into()));
        }
    }
    // Only STS's own actions (`sts:AssumeRole`, `sts:TagSession`, ... or a wildcard over
    // them) mean anything in a trust policy.
    let sts_action = |a: &serde_json::Value| {
        a.as_str().is_some_and(|a| {
            a == "*" || a.get(..4).is_some_and(|prefix| prefix.eq_ignore_ascii_case("sts:"))
        })
    };
    for statement in &statements {
        let actions = match statement.get("Action") {
            Some(serde_json::Value::Array(all)) => all.iter().collect(),
            Some(one) => vec![one],
            None => Vec::new(),
        };
        if !actions.into_iter().all(sts_action) {
            return Err(IamError::Malformed(
                "AssumeRole policy may only specify STS AssumeRole actions.".into(),
            ));
        }
    }
    refused_in_iam_words(document, IamDocument::Trust)?;
    check_document(document, PolicyKind::Resource)
}

fn check_document(document: &str, kind: PolicyKind) -> Result<Policy, IamError> {
    Policy::parse(document, kind).map_err(|problems| {
        IamError::Malformed(match problems.first() {
            Some(p) if p == "The policy is not valid JSON." => "Syntax errors in policy.".into(),
            Some(p) => p.clone(),
            None => "Syntax errors in policy.".into(),
        })
    })
}

fn check_tags(tags: &[Tag]) -> Result<(), IamError> {
    if tags.len() > MAX_TAGS {
        return Err(IamError::Limit(format!("Cannot exceed quota for TagsPerEntity: {MAX_TAGS}")));
    }
    for tag in tags {
        if tag.key.is_empty() || tag.key.chars().count() > 128 {
            return Err(validation(&tag.key, "tags.member.key", "[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]+"));
        }
        if tag.value.chars().count() > 256 {
            let constraint = Constraint::MaxLength(256);
            return Err(invalid(Violation::value(&tag.value, "tags.member.value", constraint)));
        }
    }
    Ok(())
}

/// Whether two tag keys of a user or role are one key. IAM compares them without regard to
/// case and keeps the case it was given ("Tag key values for IAM users and roles are not
/// case sensitive, but case is preserved", the User Guide's *Tagging IAM resources*; for
/// its other resource types keys are case sensitive). The key pattern allows any letter:
/// beyond ASCII, keys are compared by their lower-case forms, exactly as the policy engine
/// compares strings without regard to case (`StringEqualsIgnoreCase`, the case-blind
/// reading of `aws:TagKeys`). Two keys this takes for one must be one key to every
/// guardrail too: comparing characters by their upper-case forms as well made `reſtricted`
/// (long s, upper case `S`) and `restrıcted` (dotless i) the key `restricted`, which a Deny
/// on that key under `StringEqualsIgnoreCase` did not see, so a user denied the key
/// replaced or removed it (review 18, finding 01). The engine folds whole strings
/// (`StringEqualsIgnoreCase`, condition key names) and, matching `StringLike`, character by
/// character; these differ where a character's lower case depends on its place (a final
/// `Σ` is `ς` in a word, `σ` alone), so keys are one only when both say so. Session tag
/// keys (STS) are compared by the same rule.
pub fn same_tag_key(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(b);
    }
    a.to_lowercase() == b.to_lowercase()
        && a.chars().count() == b.chars().count()
        && a.chars().zip(b.chars()).all(|(x, y)| x.to_lowercase().eq(y.to_lowercase()))
}

/// IAM's answer to a request giving one key twice, in whatever case (CreateRole and
/// TagRole as users of the API have reported it: `InvalidInput`, 400).
fn duplicate_tag_keys() -> IamError {
    IamError::InvalidInput(
        "Duplicate tag keys found. Please note that Tag keys are case insensitive.".into(),
    )
}

/// Adds `new` tags to a user's or role's `tags`: a key it holds already, in any case, is
/// replaced, key and value, as IAM does (`Test` tagged `test` is listed as `test`); a key
/// the request gives twice, in any case, is refused (`duplicate_tag_keys`). The quota is on
/// the result. The merge stops once the result passes the quota for good (each tag searched
/// every tag merged before it, and 15,000 tags cost their square before the quota refused
/// them, review 16, left): now no search covers more than the quota's tags, one, and the
/// older spellings below.
///
/// A record kept before keys were compared without regard to case may hold one key in
/// several spellings (`Team=a`, `team=c`), which the policy engine reads as two values of
/// `aws:PrincipalTag/team`, so a Deny on either applies. Only the keys the request names
/// are changed: a key named replaces every spelling of it (where the first stood), and the
/// others stay as stored. Making them one at any tagging (the later kept) let a caller
/// allowed to tag only `env` lift a Deny on `team=a` (review 18, left). The result shrinks
/// only by such spellings, so the merge may stop once it passes the quota by more than
/// their count.
fn merge_tags(tags: &mut Vec<Tag>, new: Vec<Tag>) -> Result<(), IamError> {
    let mut older_spellings = older_spellings(tags);
    // Which of `tags` this request gave.
    let mut given = vec![false; tags.len()];
    for tag in new {
        #[cfg(test)]
        TAGS_COMPARED.with(|c| c.set(c.get() + tags.len()));
        match tags.iter().position(|t| same_tag_key(&t.key, &tag.key)) {
            Some(i) if given[i] => return Err(duplicate_tag_keys()),
            Some(i) => {
                let mut j = i + 1;
                while j < tags.len() {
                    if same_tag_key(&tags[j].key, &tag.key) {
                        tags.remove(j);
                        given.remove(j);
                        older_spellings -= 1;
                    } else {
                        j += 1;
                    }
                }
                (tags[i], given[i]) = (tag, true);
            }
            None => {
                tags.push(tag);
                given.push(true);
            }
        }
        if tags.len() > MAX_TAGS + older_spellings {
            break;
        }
    }
    check_tags(tags)
}

/// How many of a stored record's tags spell a key an earlier tag holds (none, unless the
/// record was kept before keys were compared without regard to case). A stored record
/// holds at most the quota's tags.
fn older_spellings(tags: &[Tag]) -> usize {
    (1..tags.len())
        .filter(|&i| {
            #[cfg(test)]
            TAGS_COMPARED.with(|c| c.set(c.get() + i));
            tags[..i].iter().any(|t| same_tag_key(&t.key, &tags[i].key))
        })
        .count()
}

/// The tags a new user or role is created with: as TagUser and TagRole would leave them on
/// an entity without tags (a key given twice, in any case, is refused).
fn new_entity_tags(tags: Vec<Tag>) -> Result<Vec<Tag>, IamError> {
    let mut merged = Vec::with_capacity(tags.len().min(MAX_TAGS + 1));
    merge_tags(&mut merged, tags)?;
    Ok(merged)
}

#[cfg(test)]
thread_local! {
    /// How many tags [`merge_tags`] may have compared, on this thread (what the tests
    /// bound).
    static TAGS_COMPARED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The rest of an IAM ARN after `arn:aws:iam::`, the partition IAM's records are kept in
/// (an ARN a request gives is first brought there: `coffer_auth::principal::stored_iam_arn`).
pub(crate) fn strip_stored_iam_prefix(arn: &str) -> Option<&str> {
    arn.strip_prefix("arn:")?.strip_prefix(STORED.as_str())?.strip_prefix(":iam::")
}

/// Splits a customer managed policy ARN into account and name; `None` for anything else
/// (an AWS managed policy's ARN among them: `aws_managed::named`).
pub fn policy_arn_parts(arn: &str) -> Option<(&str, &str)> {
    let rest = strip_stored_iam_prefix(arn)?;
    let (account, rest) = rest.split_once(':')?;
    let path_name = rest.strip_prefix("policy/")?;
    let name = path_name.rsplit('/').next()?;
    (crate::is_account_id(account) && !name.is_empty()).then_some((account, name))
}

fn policy_not_found(arn: &str) -> IamError {
    let arn = echo(arn);
    IamError::NotFound(format!("Policy {arn} was not found."))
}

fn no_such_version(arn: &str, version: &str) -> IamError {
    // Two quoted values: each cut shorter, so that together they stay within the cap.
    let (arn, version) = (echo_at_most(arn, 256), echo_at_most(version, 256));
    IamError::NotFound(format!(
        "Policy {arn} version {version} does not exist or is not attachable."
    ))
}

/// A policy version id as the model allows it (`v[1-9][0-9]*(\.[A-Za-z0-9-]*)?`); IAM's
/// message for one that is not quotes no value.
pub fn validate_version_id(version: &str) -> Result<(), IamError> {
    let (number, suffix) = match version.strip_prefix('v') {
        Some(rest) => rest.split_once('.').map_or((rest, None), |(n, s)| (n, Some(s))),
        None => ("", None),
    };
    let ok = number.bytes().next().is_some_and(|b| (b'1'..=b'9').contains(&b))
        && number.bytes().all(|b| b.is_ascii_digit())
        && suffix.is_none_or(|s| s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if ok {
        return Ok(());
    }
    let pattern = Constraint::Pattern("v[1-9][0-9]*(\\.[A-Za-z0-9-]*)?");
    Err(invalid(Violation::unnamed("versionId", pattern)))
}

fn not_attachable(arn: &str) -> IamError {
    let arn = echo(arn);
    IamError::NotFound(format!("Policy {arn} does not exist or is not attachable."))
}

/// The managed policy an ARN names, if it exists in `account`: a customer managed policy
/// of the account, or an AWS managed one, which exists in every account.
pub(crate) fn load_policy(
    tx: &dyn ReadTxn,
    account: &str,
    arn: &str,
) -> Result<Option<ManagedPolicy>, StoreError> {
    if let Some(aws) = crate::aws_managed::named(arn) {
        return Ok(Some(aws.as_managed_policy()));
    }
    load_customer_policy(tx, account, arn)
}

/// The customer managed policy an ARN names, if it exists in `account`: what the changes
/// to a policy find, so an AWS managed one is never changed.
fn load_customer_policy(
    tx: &dyn ReadTxn,
    account: &str,
    arn: &str,
) -> Result<Option<ManagedPolicy>, StoreError> {
    let Some((owner, name)) = policy_arn_parts(arn) else { return Ok(None) };
    if owner != account {
        return Ok(None);
    }
    let Some(bytes) = tx.record(POLICY_KIND, &user_key(account, name))? else { return Ok(None) };
    let policy: ManagedPolicy = decode(&bytes)?;
    Ok((policy.arn() == arn).then_some(policy))
}

pub(crate) fn load_entity<T: serde::de::DeserializeOwned>(
    tx: &dyn ReadTxn,
    entity: Entity,
    account: &str,
    name: &str,
) -> Result<Option<T>, StoreError> {
    tx.record(entity.kind(), &user_key(account, name))?.map(|b| decode(&b)).transpose()
}

/// A user's, group's or role's record as `tx` sees it: for the audit trail, which reads
/// back what a call created in the transaction that created it.
pub fn entity_in<T: serde::de::DeserializeOwned>(
    tx: &dyn ReadTxn,
    entity: Entity,
    account: &str,
    name: &str,
) -> Result<Option<T>, StoreError> {
    load_entity(tx, entity, account, name)
}

/// The managed policy named `name` in `account` as `tx` sees it (see [`entity_in`]).
pub fn policy_named_in(
    tx: &dyn ReadTxn,
    account: &str,
    name: &str,
) -> Result<Option<ManagedPolicy>, StoreError> {
    tx.record(POLICY_KIND, &user_key(account, name))?.map(|b| decode(&b)).transpose()
}

fn load_group(tx: &dyn ReadTxn, account: &str, name: &str) -> Result<GroupRecord, IamError> {
    load_entity(tx, Entity::Group, account, name)?.ok_or_else(|| Entity::Group.not_found(name))
}

fn load_role(tx: &dyn ReadTxn, account: &str, name: &str) -> Result<RoleRecord, IamError> {
    load_entity(tx, Entity::Role, account, name)?.ok_or_else(|| Entity::Role.not_found(name))
}

/// What must go before an entity with these policies is deleted: its inline policies,
/// then its attached managed policies.
fn policies_first(
    inline: &BTreeMap<String, String>,
    attached: &BTreeSet<String>,
) -> Option<&'static str> {
    if !inline.is_empty() {
        Some("delete policies")
    } else if !attached.is_empty() {
        Some("detach all policies")
    } else {
        None
    }
}

pub(crate) fn put<T: Serialize>(
    tx: &mut dyn WriteTxn,
    kind: &str,
    account: &str,
    name: &str,
    record: &T,
) -> Result<(), StoreError> {
    tx.put_record(kind, &user_key(account, name), &encode(record))
}

/// Every record of `kind` in `account`.
pub(crate) fn records_in<T: serde::de::DeserializeOwned>(
    tx: &dyn ReadTxn,
    kind: &str,
    account: &str,
) -> Result<Vec<T>, StoreError> {
    let prefix = format!("{account}/");
    let mut out: Vec<T> = Vec::new();
    let mut pages = coffer_store::RecordPages::new(kind, &prefix, 256);
    while let Some(page) = pages.next_page(tx)? {
        for (_, bytes) in &page {
            out.push(decode(bytes)?);
        }
    }
    Ok(out)
}

/// The policy documents that apply to `user`: its inline policies, the default versions
/// of its attached managed policies, and those of each of its groups. Labels name where
/// each came from, for the log line of one that does not parse.
pub(crate) fn identity_documents(
    tx: &dyn ReadTxn,
    user: &UserRecord,
) -> Result<Vec<(String, String)>, StoreError> {
    let mut out: Vec<(String, String)> =
        user.policies.iter().map(|(n, d)| (n.clone(), d.clone())).collect();
    attached_documents(tx, &user.account, &user.attached, &mut out)?;
    for group in &user.groups {
        let Some(g) = load_entity::<GroupRecord>(tx, Entity::Group, &user.account, group)? else {
            continue;
        };
        out.extend(g.policies.iter().map(|(n, d)| (format!("group {group}: {n}"), d.clone())));
        attached_documents(tx, &user.account, &g.attached, &mut out)?;
    }
    Ok(out)
}

/// The documents of a role's inline and attached policies.
pub fn role_documents(
    tx: &dyn ReadTxn,
    role: &RoleRecord,
) -> Result<Vec<(String, String)>, StoreError> {
    let mut out: Vec<(String, String)> =
        role.policies.iter().map(|(n, d)| (n.clone(), d.clone())).collect();
    attached_documents(tx, &role.account, &role.attached, &mut out)?;
    Ok(out)
}

pub(crate) fn attached_documents(
    tx: &dyn ReadTxn,
    account: &str,
    arns: &BTreeSet<String>,
    out: &mut Vec<(String, String)>,
) -> Result<(), StoreError> {
    for arn in arns {
        if let Some(policy) = load_policy(tx, account, arn)?
            && let Some(doc) = policy.document()
        {
            out.push((arn.clone(), doc.to_string()));
        }
    }
    Ok(())
}

/// Removes user `name` from every group it is in (when the user is deleted).
pub(crate) fn leave_groups(
    tx: &mut dyn WriteTxn,
    account: &str,
    name: &str,
) -> Result<(), StoreError> {
    let Some(user) = load_user(tx, account, name)? else { return Ok(()) };
    for group in &user.groups {
        if let Some(mut g) = load_entity::<GroupRecord>(tx, Entity::Group, account, group)? {
            g.members.remove(name);
            put(tx, GROUP_KIND, account, group, &g)?;
        }
    }
    Ok(())
}

/// How many users, groups and roles of `account` have `arn` attached.
fn attachment_count(tx: &dyn ReadTxn, account: &str, arn: &str) -> Result<usize, StoreError> {
    let mut count = 0;
    for kind in [USER_KIND, GROUP_KIND, ROLE_KIND] {
        let all: Vec<Policies> = records_in(tx, kind, account)?;
        count += all.iter().filter(|p| p.attached.contains(arn)).count();
    }
    Ok(count)
}

/// Reads and rewrites the policies of one user, group or role in `tx`.
fn edit_policies<T>(
    tx: &mut dyn WriteTxn,
    entity: Entity,
    account: &str,
    name: &str,
    f: impl FnOnce(&mut BTreeMap<String, String>, &mut BTreeSet<String>) -> Result<T, IamError>,
) -> Result<T, IamError> {
    let key = user_key(account, name);
    let bytes = tx.record(entity.kind(), &key)?.ok_or_else(|| entity.not_found(name))?;
    let mut value: serde_json::Value = decode(&bytes)?;
    let mut current: Policies = serde_json::from_value(value.clone()).unwrap_or_default();
    let out = f(&mut current.policies, &mut current.attached)?;
    value["policies"] = serde_json::to_value(&current.policies).expect("serializes");
    value["attached"] = serde_json::to_value(&current.attached).expect("serializes");
    tx.put_record(entity.kind(), &key, &encode(&value))?;
    Ok(out)
}

impl Iam {
    /// Creates a user with a path and tags.
    pub fn create_user_with(
        &self,
        store: &dyn Store,
        account: &str,
        name: &str,
        path: &str,
        tags: Vec<Tag>,
        now_ms: i64,
    ) -> Result<UserRecord, IamError> {
        if !crate::is_account_id(account) {
            return Err(IamError::Invalid(crate::account_id_error(account)));
        }
        validate_name(name, "userName", 64)?;
        validate_path(path)?;
        let tags = new_entity_tags(tags)?;
        let id_random: [u8; ID_RANDOM_LEN] =
            random_bytes(ID_RANDOM_LEN).try_into().expect("requested length");
        let user = UserRecord {
            account: account.to_string(),
            name: name.to_string(),
            user_id: user_id(&id_random),
            created_ms: now_ms,
            policies: BTreeMap::new(),
            path: path.to_string(),
            tags,
            attached: BTreeSet::new(),
            groups: BTreeSet::new(),
        };
        self.write(store, |tx| {
            insert_new(tx, Entity::User, account, name, &user, |u: &UserRecord| &u.name)
        })?;
        Ok(user)
    }

    pub fn get_user(
        &self,
        store: &dyn Store,
        account: &str,
        name: &str,
    ) -> Result<UserRecord, IamError> {
        read(store, |tx| load_user(tx, account, name))?.ok_or_else(|| no_such_user(account, name))
    }

    /// The users of `account` whose path starts with `path_prefix`, by name.
    pub fn users_in(
        &self,
        store: &dyn Store,
        account: &str,
        path_prefix: &str,
    ) -> Result<Vec<UserRecord>, IamError> {
        let all: Vec<UserRecord> = read(store, |tx| records_in(tx, USER_KIND, account))?;
        Ok(all.into_iter().filter(|u| u.path.starts_with(path_prefix)).collect())
    }

    /// The user of `account` with unique id `user_id`, whatever it is named now.
    pub fn user_with_id(
        &self,
        store: &dyn Store,
        account: &str,
        user_id: &str,
    ) -> Result<Option<UserRecord>, IamError> {
        let all: Vec<UserRecord> = read(store, |tx| records_in(tx, USER_KIND, account))?;
        Ok(all.into_iter().find(|u| u.user_id == user_id))
    }

    /// DeleteUser as IAM does it: refused while the user has access keys, policies or
    /// groups.
    pub fn delete_user_checked(
        &self,
        store: &dyn Store,
        account: &str,
        name: &str,
    ) -> Result<(), IamError> {
        self.delete_detached(store, Entity::User, account, name, |tx, user: &UserRecord| {
            Ok(if !keys_of(tx, account, name)?.is_empty() {
                Some("delete access keys")
            } else {
                policies_first(&user.policies, &user.attached)
                    .or((!user.groups.is_empty()).then_some("remove user from all groups"))
            })
        })
    }

    /// Deletes a user, group or role as IAM does, in one transaction: loads it
    /// (`NoSuchEntity` if it is not there), refuses with `DeleteConflict` while anything is
    /// still attached to it (`attached` names the first such thing as what must be done
    /// first, "delete policies"), then deletes its record.
    fn delete_detached<T: serde::de::DeserializeOwned>(
        &self,
        store: &dyn Store,
        entity: Entity,
        account: &str,
        name: &str,
        attached: impl Fn(&dyn ReadTxn, &T) -> Result<Option<&'static str>, IamError> + Sync,
    ) -> Result<(), IamError> {
        self.write(store, |tx| {
            let record: T =
                load_entity(tx, entity, account, name)?.ok_or_else(|| entity.not_found(name))?;
            if let Some(what) = attached(tx, &record)? {
                return Err(IamError::Conflict(format!(
                    "Cannot delete entity, must {what} first."
                )));
            }
            tx.delete_record(entity.kind(), &user_key(account, name))?;
            Ok(())
        })
    }

    pub fn tag_user(
        &self,
        store: &dyn Store,
        account: &str,
        name: &str,
        tags: Vec<Tag>,
    ) -> Result<(), IamError> {
        self.tag_entity(store, Entity::User, account, name, tags)
    }

    pub fn untag_user(
        &self,
        store: &dyn Store,
        account: &str,
        name: &str,
        keys: &[String],
    ) -> Result<(), IamError> {
        self.untag_entity(store, Entity::User, account, name, keys)
    }

    /// The access keys of a user (no secrets: they are never shown again).
    pub fn access_keys_of(
        &self,
        store: &dyn Store,
        account: &str,
        name: &str,
    ) -> Result<Vec<AccessKeyRecord>, IamError> {
        read(store, |tx| {
            load_user(tx, account, name)?.map(|_| keys_of(tx, account, name)).transpose()
        })?
        .ok_or_else(|| no_such_user(account, name))
    }

    /// The access key `id` if it belongs to `user` of `account`.
    fn key_of(
        tx: &dyn ReadTxn,
        account: &str,
        user: &str,
        id: &str,
    ) -> Result<AccessKeyRecord, IamError> {
        if load_user(tx, account, user)?.is_none() {
            return Err(no_such_user(account, user));
        }
        let record: Option<AccessKeyRecord> =
            tx.record(ACCESS_KEY_KIND, id)?.map(|b| decode(&b)).transpose()?;
        record.filter(|k| k.account == account && k.user_name == user).ok_or_else(|| {
            let id = echo(id);
            IamError::NotFound(format!("The Access Key with id {id} cannot be found."))
        })
    }

    /// Sets an access key `Active` or `Inactive`; an inactive key does not authenticate.
    pub fn update_access_key(
        &self,
        store: &dyn Store,
        account: &str,
        user: &str,
        id: &str,
        status: &str,
    ) -> Result<(), IamError> {
        if !matches!(status, "Active" | "Inactive") {
            let statuses = Constraint::OneOf(&["Active", "Inactive"]);
            return Err(invalid(Violation::value(status, "status", statuses)));
        }
        self.write(store, |tx| {
            let mut record = Self::key_of(tx, account, user, id)?;
            record.status = status.to_string();
            tx.put_record(ACCESS_KEY_KIND, id, &encode(&record))?;
            Ok(())
        })
    }

    /// Deletes access key `id` of `user`.
    pub fn delete_access_key_of(
        &self,
        store: &dyn Store,
        account: &str,
        user: &str,
        id: &str,
    ) -> Result<(), IamError> {
        self.write(store, |tx| {
            Self::key_of(tx, account, user, id)?;
            tx.delete_record(ACCESS_KEY_KIND, id)?;
            tx.delete_record(crate::key_use::KEY_USE_KIND, id)?;
            Ok(())
        })
    }

    /// Puts (or replaces) an inline policy of a user, group or role.
    pub fn put_inline_policy(
        &self,
        store: &dyn Store,
        entity: Entity,
        account: &str,
        name: &str,
        policy_name: &str,
        document: &str,
    ) -> Result<(), IamError> {
        validate_name(policy_name, "policyName", 128)?;
        // A document past the limit alone is refused before it is parsed.
        check_inline_policies_size(entity, name, [document])?;
        check_inline_policy(document)?;
        self.write(store, |tx| {
            edit_policies(tx, entity, account, name, |inline, _| {
                inline.insert(policy_name.to_string(), document.to_string());
                check_inline_policies_size(entity, name, inline.values().map(String::as_str))
            })
        })
    }

    /// An inline policy's document.
    pub fn inline_policy(
        &self,
        store: &dyn Store,
        entity: Entity,
        account: &str,
        name: &str,
        policy_name: &str,
    ) -> Result<String, IamError> {
        let p = self.policies_of(store, entity, account, name)?;
        p.0.get(policy_name).cloned().ok_or_else(|| {
            IamError::NotFound(format!(
                "The {} policy with name {} cannot be found.",
                entity.noun(),
                echo(policy_name)
            ))
        })
    }

    /// The inline policies (by name) and attached policy ARNs of a user, group or role.
    pub fn policies_of(
        &self,
        store: &dyn Store,
        entity: Entity,
        account: &str,
        name: &str,
    ) -> Result<(BTreeMap<String, String>, BTreeSet<String>), IamError> {
        let found: Option<Policies> = read(store, |tx| load_entity(tx, entity, account, name))?;
        let p = found.ok_or_else(|| entity.not_found(name))?;
        Ok((p.policies, p.attached))
    }

    pub fn delete_inline_policy(
        &self,
        store: &dyn Store,
        entity: Entity,
        account: &str,
        name: &str,
        policy_name: &str,
    ) -> Result<(), IamError> {
        self.write(store, |tx| {
            edit_policies(tx, entity, account, name, |inline, _| {
                inline.remove(policy_name).map(|_| ()).ok_or_else(|| {
                    IamError::NotFound(format!(
                        "The {} policy with name {} cannot be found.",
                        entity.noun(),
                        echo(policy_name)
                    ))
                })
            })
        })
    }

    /// Attaches a customer managed policy of the same account.
    pub fn attach_policy(
        &self,
        store: &dyn Store,
        entity: Entity,
        account: &str,
        name: &str,
        arn: &str,
    ) -> Result<(), IamError> {
        self.write(store, |tx| {
            // The entity first: IAM names a missing user before a missing policy.
            load_entity::<Policies>(tx, entity, account, name)?
                .ok_or_else(|| entity.not_found(name))?;
            load_policy(tx, account, arn)?.ok_or_else(|| not_attachable(arn))?;
            edit_policies(tx, entity, account, name, |_, attached| {
                if !attached.contains(arn) && attached.len() >= MAX_ATTACHED {
                    return Err(IamError::Limit(
                        format!("Cannot exceed quota for PoliciesPerUser: {MAX_ATTACHED}").replace(
                            "PerUser",
                            match entity {
                                Entity::User => "PerUser",
                                Entity::Group => "PerGroup",
                                Entity::Role => "PerRole",
                            },
                        ),
                    ));
                }
                attached.insert(arn.to_string());
                Ok(())
            })
        })
    }

    pub fn detach_policy(
        &self,
        store: &dyn Store,
        entity: Entity,
        account: &str,
        name: &str,
        arn: &str,
    ) -> Result<(), IamError> {
        self.write(store, |tx| {
            edit_policies(tx, entity, account, name, |_, attached| {
                if attached.remove(arn) { Ok(()) } else { Err(policy_not_found(arn)) }
            })
        })
    }

    /// Creates a customer managed policy (version `v1`, the default).
    #[allow(clippy::too_many_arguments)]
    pub fn create_policy(
        &self,
        store: &dyn Store,
        account: &str,
        name: &str,
        path: &str,
        document: &str,
        description: &str,
        tags: Vec<Tag>,
        now_ms: i64,
    ) -> Result<ManagedPolicy, IamError> {
        validate_name(name, "policyName", 128)?;
        validate_path(path)?;
        validate_description(description)?;
        check_tags(&tags)?;
        check_managed_policy_size(document)?;
        check_managed_policy(document)?;
        let policy = ManagedPolicy {
            account: account.to_string(),
            name: name.to_string(),
            path: path.to_string(),
            policy_id: unique_id("ANPA"),
            description: description.to_string(),
            created_ms: now_ms,
            updated_ms: now_ms,
            default_version: "v1".to_string(),
            versions: vec![PolicyVersion {
                id: "v1".to_string(),
                document: document.to_string(),
                created_ms: now_ms,
            }],
            tags,
        };
        self.write(store, |tx| {
            if tx.record(POLICY_KIND, &user_key(account, name))?.is_some() {
                return Err(IamError::Exists(format!(
                    "A policy called {name} already exists. Duplicate names are not allowed."
                )));
            }
            let existing = records_in::<serde_json::Value>(tx, POLICY_KIND, account)?.len();
            account_quota(existing, MAX_POLICIES, "PoliciesPerAccount")?;
            put(tx, POLICY_KIND, account, name, &policy)?;
            Ok(())
        })?;
        Ok(policy)
    }

    /// A managed policy and how many entities it is attached to.
    pub fn get_policy(
        &self,
        store: &dyn Store,
        account: &str,
        arn: &str,
    ) -> Result<(ManagedPolicy, usize), IamError> {
        read(store, |tx| {
            let Some(policy) = load_policy(tx, account, arn)? else { return Ok(None) };
            Ok(Some((policy, attachment_count(tx, account, arn)?)))
        })?
        .ok_or_else(|| policy_not_found(arn))
    }

    /// The customer managed policies of `account` and their attachment counts.
    pub fn policies_in(
        &self,
        store: &dyn Store,
        account: &str,
    ) -> Result<Vec<(ManagedPolicy, usize)>, IamError> {
        self.policies_of_scope(store, account, false)
    }

    /// The AWS managed policies (the same in every account) and their attachment counts
    /// in `account`.
    pub fn aws_managed_policies_in(
        &self,
        store: &dyn Store,
        account: &str,
    ) -> Result<Vec<(ManagedPolicy, usize)>, IamError> {
        self.policies_of_scope(store, account, true)
    }

    fn policies_of_scope(
        &self,
        store: &dyn Store,
        account: &str,
        aws_managed: bool,
    ) -> Result<Vec<(ManagedPolicy, usize)>, IamError> {
        Ok(read(store, |tx| {
            let all: Vec<ManagedPolicy> = if aws_managed {
                crate::aws_managed::POLICIES.iter().map(|p| p.as_managed_policy()).collect()
            } else {
                records_in(tx, POLICY_KIND, account)?
            };
            // One pass over the account's users, groups and roles counts every policy.
            let mut counts: BTreeMap<String, usize> = BTreeMap::new();
            for kind in [USER_KIND, GROUP_KIND, ROLE_KIND] {
                let holders: Vec<Policies> = records_in(tx, kind, account)?;
                for arn in holders.iter().flat_map(|h| &h.attached) {
                    *counts.entry(arn.clone()).or_default() += 1;
                }
            }
            Ok(all
                .into_iter()
                .map(|p| {
                    let n = counts.get(&p.arn()).copied().unwrap_or(0);
                    (p, n)
                })
                .collect())
        })?)
    }

    /// The users, groups and roles of `account` that `arn` (a customer managed policy of
    /// the account, or an AWS managed one) is attached to, each sorted by name
    /// (ListEntitiesForPolicy). Bounded by the account's quotas, as the attachment counts.
    pub fn entities_for_policy(
        &self,
        store: &dyn Store,
        account: &str,
        arn: &str,
    ) -> Result<PolicyEntities, IamError> {
        read(store, |tx| {
            if load_policy(tx, account, arn)?.is_none() {
                return Ok(None);
            }
            let users: Vec<UserRecord> = records_in(tx, USER_KIND, account)?;
            let groups: Vec<GroupRecord> = records_in(tx, GROUP_KIND, account)?;
            let roles: Vec<RoleRecord> = records_in(tx, ROLE_KIND, account)?;
            Ok(Some(PolicyEntities {
                users: users.into_iter().filter(|u| u.attached.contains(arn)).collect(),
                groups: groups.into_iter().filter(|g| g.attached.contains(arn)).collect(),
                roles: roles.into_iter().filter(|r| r.attached.contains(arn)).collect(),
            }))
        })?
        .ok_or_else(|| policy_not_found(arn))
    }

    /// Deletes a managed policy that is attached to nothing.
    pub fn delete_policy(
        &self,
        store: &dyn Store,
        account: &str,
        arn: &str,
    ) -> Result<(), IamError> {
        self.write(store, |tx| {
            let policy =
                load_customer_policy(tx, account, arn)?.ok_or_else(|| policy_not_found(arn))?;
            if attachment_count(tx, account, arn)? > 0 {
                return Err(IamError::Conflict(
                    "Cannot delete a policy attached to entities.".to_string(),
                ));
            }
            if policy.versions.len() > 1 {
                return Err(IamError::Conflict(
                    "This policy has more than one version. Before you delete a policy, you must \
                     delete the policy's versions. The default version is deleted with the policy."
                        .to_string(),
                ));
            }
            tx.delete_record(POLICY_KIND, &user_key(account, &policy.name))?;
            Ok(())
        })
    }

    /// Adds a version to a managed policy (at most [`MAX_POLICY_VERSIONS`]), optionally
    /// making it the default.
    pub fn create_policy_version(
        &self,
        store: &dyn Store,
        account: &str,
        arn: &str,
        document: &str,
        set_default: bool,
        now_ms: i64,
    ) -> Result<PolicyVersion, IamError> {
        check_managed_policy_size(document)?;
        check_managed_policy(document)?;
        self.write(store, |tx| {
            let mut policy =
                load_customer_policy(tx, account, arn)?.ok_or_else(|| policy_not_found(arn))?;
            if policy.versions.len() >= MAX_POLICY_VERSIONS {
                return Err(IamError::Limit(
                    "A managed policy can have up to 5 versions. Before you create a new version, \
                     you must delete an existing version."
                        .to_string(),
                ));
            }
            let next = policy
                .versions
                .iter()
                .filter_map(|v| v.id.strip_prefix('v')?.parse::<u32>().ok())
                .max()
                .unwrap_or(0)
                + 1;
            let version = PolicyVersion {
                id: format!("v{next}"),
                document: document.to_string(),
                created_ms: now_ms,
            };
            policy.versions.push(version.clone());
            if set_default {
                policy.default_version = version.id.clone();
            }
            policy.updated_ms = now_ms;
            put(tx, POLICY_KIND, account, &policy.name, &policy)?;
            Ok(version)
        })
    }

    /// Deletes a version that is not the default.
    pub fn delete_policy_version(
        &self,
        store: &dyn Store,
        account: &str,
        arn: &str,
        version: &str,
    ) -> Result<(), IamError> {
        self.write(store, |tx| {
            let mut policy =
                load_customer_policy(tx, account, arn)?.ok_or_else(|| policy_not_found(arn))?;
            if policy.default_version == version {
                return Err(IamError::Conflict(
                    "Cannot delete the default version of a policy.".to_string(),
                ));
            }
            let before = policy.versions.len();
            policy.versions.retain(|v| v.id != version);
            if policy.versions.len() == before {
                return Err(no_such_version(arn, version));
            }
            put(tx, POLICY_KIND, account, &policy.name, &policy)?;
            Ok(())
        })
    }

    /// Makes an existing version the default: it is what applies from the next request.
    pub fn set_default_policy_version(
        &self,
        store: &dyn Store,
        account: &str,
        arn: &str,
        version: &str,
        now_ms: i64,
    ) -> Result<(), IamError> {
        self.write(store, |tx| {
            // A policy that does not exist is answered as its version not existing, as IAM
            // words it.
            let mut policy = load_customer_policy(tx, account, arn)?
                .ok_or_else(|| no_such_version(arn, version))?;
            if !policy.versions.iter().any(|v| v.id == version) {
                return Err(no_such_version(arn, version));
            }
            policy.default_version = version.to_string();
            policy.updated_ms = now_ms;
            put(tx, POLICY_KIND, account, &policy.name, &policy)?;
            Ok(())
        })
    }

    /// Adds or replaces tags of a user or role.
    pub fn tag_entity(
        &self,
        store: &dyn Store,
        entity: Entity,
        account: &str,
        name: &str,
        tags: Vec<Tag>,
    ) -> Result<(), IamError> {
        self.edit_tags(store, entity, account, name, |current| merge_tags(current, tags.clone()))
    }

    /// Removes tags of a user or role by key, in whatever case it is given.
    pub fn untag_entity(
        &self,
        store: &dyn Store,
        entity: Entity,
        account: &str,
        name: &str,
        keys: &[String],
    ) -> Result<(), IamError> {
        self.edit_tags(store, entity, account, name, |current| {
            current.retain(|t| !keys.iter().any(|k| same_tag_key(k, &t.key)));
            Ok(())
        })
    }

    fn edit_tags(
        &self,
        store: &dyn Store,
        entity: Entity,
        account: &str,
        name: &str,
        f: impl Fn(&mut Vec<Tag>) -> Result<(), IamError> + Send + Sync,
    ) -> Result<(), IamError> {
        self.write(store, |tx| {
            let key = user_key(account, name);
            let bytes = tx.record(entity.kind(), &key)?.ok_or_else(|| entity.not_found(name))?;
            let mut value: serde_json::Value = decode(&bytes)?;
            let mut tags: Vec<Tag> =
                serde_json::from_value(value.get("tags").cloned().unwrap_or_default())
                    .unwrap_or_default();
            f(&mut tags)?;
            value["tags"] = serde_json::to_value(&tags).expect("serializes");
            tx.put_record(entity.kind(), &key, &encode(&value))?;
            Ok(())
        })
    }

    pub fn create_group(
        &self,
        store: &dyn Store,
        account: &str,
        name: &str,
        path: &str,
        now_ms: i64,
    ) -> Result<GroupRecord, IamError> {
        validate_name(name, "groupName", 128)?;
        validate_path(path)?;
        let group = GroupRecord {
            account: account.to_string(),
            name: name.to_string(),
            path: path.to_string(),
            group_id: unique_id("AGPA"),
            created_ms: now_ms,
            policies: BTreeMap::new(),
            attached: BTreeSet::new(),
            members: BTreeSet::new(),
        };
        self.write(store, |tx| {
            insert_new(tx, Entity::Group, account, name, &group, |g: &GroupRecord| &g.name)
        })?;
        Ok(group)
    }

    /// A group and its members.
    pub fn get_group(
        &self,
        store: &dyn Store,
        account: &str,
        name: &str,
    ) -> Result<(GroupRecord, Vec<UserRecord>), IamError> {
        read(store, |tx| {
            let Some(group) = load_entity::<GroupRecord>(tx, Entity::Group, account, name)? else {
                return Ok(None);
            };
            let mut users = Vec::new();
            for member in &group.members {
                if let Some(u) = load_user(tx, account, member)? {
                    users.push(u);
                }
            }
            Ok(Some((group, users)))
        })?
        .ok_or_else(|| Entity::Group.not_found(name))
    }

    pub fn groups_in(
        &self,
        store: &dyn Store,
        account: &str,
    ) -> Result<Vec<GroupRecord>, IamError> {
        Ok(read(store, |tx| records_in(tx, GROUP_KIND, account))?)
    }

    /// The groups `user` is a member of.
    pub fn groups_of(
        &self,
        store: &dyn Store,
        account: &str,
        user: &str,
    ) -> Result<Vec<GroupRecord>, IamError> {
        read(store, |tx| {
            let Some(u) = load_user(tx, account, user)? else { return Ok(None) };
            let mut out = Vec::new();
            for g in &u.groups {
                if let Some(group) = load_entity(tx, Entity::Group, account, g)? {
                    out.push(group);
                }
            }
            Ok(Some(out))
        })?
        .ok_or_else(|| no_such_user(account, user))
    }

    /// DeleteGroup: refused while it has members or policies.
    pub fn delete_group(
        &self,
        store: &dyn Store,
        account: &str,
        name: &str,
    ) -> Result<(), IamError> {
        self.delete_detached(store, Entity::Group, account, name, |_, group: &GroupRecord| {
            Ok(if !group.members.is_empty() {
                Some("remove users from group")
            } else {
                policies_first(&group.policies, &group.attached)
            })
        })
    }

    /// Adds or removes a member, on both records in one transaction.
    pub fn set_membership(
        &self,
        store: &dyn Store,
        account: &str,
        group: &str,
        user: &str,
        member: bool,
    ) -> Result<(), IamError> {
        self.write(store, |tx| {
            // The user is looked up first: when neither exists, IAM names the user.
            let mut u = load_user(tx, account, user)?.ok_or_else(|| no_such_user(account, user))?;
            let mut g = load_group(tx, account, group)?;
            if member {
                if !u.groups.contains(group) && u.groups.len() >= MAX_GROUPS_PER_USER {
                    return Err(IamError::Limit(format!(
                        "Cannot exceed quota for GroupsPerUser: {MAX_GROUPS_PER_USER}"
                    )));
                }
                g.members.insert(user.to_string());
                u.groups.insert(group.to_string());
            } else {
                // Removing a user who is not a member succeeds and changes nothing, as on
                // AWS.
                if !g.members.remove(user) {
                    return Ok(());
                }
                u.groups.remove(group);
            }
            put(tx, GROUP_KIND, account, group, &g)?;
            tx.put_record(USER_KIND, &user_key(account, user), &encode(&u))?;
            Ok(())
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub fn create_role(
        &self,
        store: &dyn Store,
        account: &str,
        name: &str,
        path: &str,
        trust_policy: &str,
        description: &str,
        max_session_secs: Option<i64>,
        tags: Vec<Tag>,
        now_ms: i64,
    ) -> Result<RoleRecord, IamError> {
        validate_name(name, "roleName", 64)?;
        validate_path(path)?;
        validate_description(description)?;
        check_trust_policy(trust_policy)?;
        let tags = new_entity_tags(tags)?;
        let max = max_session_secs.unwrap_or(DEFAULT_MAX_SESSION_SECS);
        check_max_session(max)?;
        let role = RoleRecord {
            account: account.to_string(),
            name: name.to_string(),
            path: path.to_string(),
            role_id: unique_id("AROA"),
            created_ms: now_ms,
            trust_policy: trust_policy.to_string(),
            description: description.to_string(),
            max_session_secs: max,
            tags,
            policies: BTreeMap::new(),
            attached: BTreeSet::new(),
        };
        self.write(store, |tx| {
            insert_new(tx, Entity::Role, account, name, &role, |r: &RoleRecord| &r.name)
        })?;
        Ok(role)
    }

    pub fn get_role(
        &self,
        store: &dyn Store,
        account: &str,
        name: &str,
    ) -> Result<RoleRecord, IamError> {
        read(store, |tx| Ok(load_role(tx, account, name)))?
    }

    pub fn roles_in(&self, store: &dyn Store, account: &str) -> Result<Vec<RoleRecord>, IamError> {
        Ok(read(store, |tx| records_in(tx, ROLE_KIND, account))?)
    }

    /// DeleteRole: refused while it has policies. Its sessions stop working at once
    /// (authentication reads the role with each session).
    pub fn delete_role(
        &self,
        store: &dyn Store,
        account: &str,
        name: &str,
    ) -> Result<(), IamError> {
        self.delete_detached(store, Entity::Role, account, name, |_, role: &RoleRecord| {
            Ok(policies_first(&role.policies, &role.attached))
        })
    }

    pub fn update_trust_policy(
        &self,
        store: &dyn Store,
        account: &str,
        name: &str,
        document: &str,
    ) -> Result<(), IamError> {
        check_trust_policy(document)?;
        self.write(store, |tx| {
            let mut role = load_role(tx, account, name)?;
            role.trust_policy = document.to_string();
            put(tx, ROLE_KIND, account, name, &role)?;
            Ok(())
        })
    }
}

pub(crate) fn check_max_session(secs: i64) -> Result<(), IamError> {
    if (3600..=43200).contains(&secs) {
        Ok(())
    } else {
        let constraint =
            if secs < 3600 { Constraint::MinValue(3600) } else { Constraint::MaxValue(43200) };
        Err(invalid(Violation::number(secs, "maxSessionDuration", constraint)))
    }
}

/// `arn:aws:iam::<account>:role[/path]/<name>` -> (account, name).
pub fn role_arn_parts(arn: &str) -> Option<(&str, &str)> {
    let rest = strip_stored_iam_prefix(arn)?;
    let (account, rest) = rest.split_once(':')?;
    let name = rest.strip_prefix("role/")?.rsplit('/').next()?;
    (crate::is_account_id(account) && !name.is_empty()).then_some((account, name))
}

/// The unique id of the role a role ARN names, as a resource policy is stored with it
/// (so a role deleted and made again under the same name is not granted); `None` when
/// no such role exists.
pub fn bound_role_id(tx: &dyn ReadTxn, arn: &str) -> Result<Option<String>, StoreError> {
    let Some((account, name)) = role_arn_parts(arn) else { return Ok(None) };
    Ok(role_in(tx, account, name)?.filter(|r| r.arn() == arn).map(|r| r.role_id))
}

/// The ARN of the role with unique id `id`, if it still exists (any account).
pub fn role_arn_of_id(tx: &dyn ReadTxn, id: &str) -> Result<Option<String>, StoreError> {
    let mut pages = coffer_store::RecordPages::new(ROLE_KIND, "", 256);
    while let Some(page) = pages.next_page(tx)? {
        for (_, bytes) in &page {
            let role: RoleRecord = decode(bytes)?;
            if role.role_id == id {
                return Ok(Some(role.arn()));
            }
        }
    }
    Ok(None)
}

/// Loads a role in a read transaction (authentication of its sessions).
pub fn role_in(
    tx: &dyn ReadTxn,
    account: &str,
    name: &str,
) -> Result<Option<RoleRecord>, StoreError> {
    load_entity(tx, Entity::Role, account, name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_crypto::MasterKey;
    use coffer_store::MemoryStore;

    const ACCOUNT: &str = "111122223333";
    const READ_ALL: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"*"}]}"#;

    fn setup() -> (MemoryStore, Iam) {
        let store = MemoryStore::new();
        let iam = Iam::open(&MasterKey::generate(), &store).unwrap();
        (store, iam)
    }

    fn policies_seen(iam: &Iam, store: &dyn Store, key: &str) -> usize {
        let mut n = 0;
        store
            .read(&mut |tx| {
                n = iam.load(tx, key).unwrap().unwrap().caller.policies.len();
                Ok(())
            })
            .unwrap();
        n
    }

    /// TagUser and TagRole merge a request's tags into the entity's by key before the
    /// 50-tag quota is checked on the result. Each tag searched every tag merged before it:
    /// 15,000 tags cost their square (review 16, left). The merge stops once the result
    /// passes the quota (it never shrinks), so no search covers more than 51 tags. Counted,
    /// not timed.
    #[test]
    fn many_tags_are_merged_in_linear_time_and_refused() {
        const MANY: usize = 4_000;
        let (store, iam) = setup();
        iam.create_user(&store, ACCOUNT, "tagged", 0).unwrap();
        let tag = |key: String, value: &str| Tag { key, value: value.to_string() };
        let tags_of = || iam.get_user(&store, ACCOUNT, "tagged").unwrap().tags;
        let given = vec![tag("a".into(), "1"), tag("b".into(), "2")];
        iam.tag_user(&store, ACCOUNT, "tagged", given).unwrap();
        iam.tag_user(&store, ACCOUNT, "tagged", vec![tag("a".into(), "3")]).unwrap();
        let kept = vec![tag("a".into(), "3"), tag("b".into(), "2")];
        assert_eq!(tags_of(), kept);
        TAGS_COMPARED.with(|c| c.set(0));
        let many = (0..MANY).map(|i| tag(format!("k{i}"), "v")).collect();
        match iam.tag_user(&store, ACCOUNT, "tagged", many) {
            Err(IamError::Limit(m)) => assert_eq!(m, "Cannot exceed quota for TagsPerEntity: 50"),
            other => panic!("{other:?}"),
        }
        let compared = TAGS_COMPARED.with(std::cell::Cell::get);
        assert!(compared <= (MAX_TAGS + 1) * MANY, "{compared} tags compared for {MANY} tags");
        assert_eq!(tags_of(), kept, "a refused request changes nothing");
        // 48 keys more and one given again: fifty in all, accepted.
        let more = (0..48).map(|i| tag(format!("t{i}"), "v")).chain([tag("b".into(), "4")]);
        iam.tag_user(&store, ACCOUNT, "tagged", more.collect()).unwrap();
        let tags = tags_of();
        assert_eq!(
            (tags.len(), &tags[1], &tags[2]),
            (50, &tag("b".into(), "4"), &tag("t0".into(), "v"))
        );
    }

    /// A user's or role's tag keys are one key whatever their case, the case given last
    /// kept (IAM: "not case sensitive, but case is preserved"; `Test` tagged `test` is
    /// listed as `test`); a request giving one key twice, in any case, is refused whole.
    #[test]
    fn tag_keys_differing_only_in_case_are_one_key() {
        let (store, iam) = setup();
        let tag = |key: &str, value: &str| Tag { key: key.into(), value: value.into() };
        let duplicate = |r: Result<_, IamError>| match r {
            Err(IamError::InvalidInput(m)) => assert_eq!(
                m,
                "Duplicate tag keys found. Please note that Tag keys are case insensitive."
            ),
            other => panic!("{other:?}"),
        };
        let user = |tags| iam.create_user_with(&store, ACCOUNT, "u", "/", tags, 0);
        duplicate(user(vec![tag("Team", "a"), tag("team", "b")]).map(drop));
        duplicate(user(vec![tag("env", "a"), tag("env", "a")]).map(drop));
        assert!(matches!(iam.get_user(&store, ACCOUNT, "u"), Err(IamError::NotFound(_))));
        user(vec![tag("Team", "blue"), tag("env", "prod")]).unwrap();
        let tags_of = || iam.get_user(&store, ACCOUNT, "u").unwrap().tags;

        iam.tag_user(&store, ACCOUNT, "u", vec![tag("TEAM", "red")]).unwrap();
        assert_eq!(tags_of(), vec![tag("TEAM", "red"), tag("env", "prod")]);
        duplicate(iam.tag_user(&store, ACCOUNT, "u", vec![tag("x", "1"), tag("X", "2")]));
        duplicate(iam.tag_user(&store, ACCOUNT, "u", vec![tag("team", "1"), tag("Team", "2")]));
        assert_eq!(tags_of(), vec![tag("TEAM", "red"), tag("env", "prod")], "refused whole");
        // Beyond ASCII: the Kelvin sign is a `k`, and `É` an `é`.
        iam.tag_user(&store, ACCOUNT, "u", vec![tag("\u{212A}ey", "1"), tag("café", "2")]).unwrap();
        iam.tag_user(&store, ACCOUNT, "u", vec![tag("KEY", "3"), tag("CAFÉ", "4")]).unwrap();
        let keys: Vec<String> = tags_of().into_iter().map(|t| t.key).collect();
        assert_eq!(keys, ["TEAM", "env", "KEY", "CAFÉ"]);

        iam.untag_user(&store, ACCOUNT, "u", &["team".into(), "Café".into()]).unwrap();
        assert_eq!(tags_of(), vec![tag("env", "prod"), tag("KEY", "3")]);

        let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"sts:AssumeRole"}]}"#;
        let role = |tags| iam.create_role(&store, ACCOUNT, "r", "/", trust, "", None, tags, 0);
        duplicate(role(vec![tag("Name", "a"), tag("name", "b")]).map(drop));
        role(vec![tag("Name", "a")]).unwrap();
        iam.tag_entity(&store, Entity::Role, ACCOUNT, "r", vec![tag("name", "b")]).unwrap();
        let role_tags = || iam.get_role(&store, ACCOUNT, "r").unwrap().tags;
        assert_eq!(role_tags(), vec![tag("name", "b")]);
        iam.untag_entity(&store, Entity::Role, ACCOUNT, "r", &["NAME".into()]).unwrap();
        assert_eq!(role_tags(), Vec::new());
    }

    /// Tag keys are one key exactly when the policy engine, comparing without regard to
    /// case, reads them as one (lower-case forms): a key whose upper-case form alone meets
    /// another's (long s, dotless i) is a key of its own, so a guardrail on `restricted`
    /// under `StringEqualsIgnoreCase` sees every spelling that replaces or removes it
    /// (review 18, finding 01).
    #[test]
    fn tag_keys_are_one_key_exactly_when_their_lower_case_forms_are() {
        for (a, b) in [("Team", "tEAM"), ("\u{212A}ey", "key"), ("CAFÉ", "café")] {
            assert!(same_tag_key(a, b), "{a} {b}");
            assert_eq!(a.to_lowercase() == b.to_lowercase(), same_tag_key(a, b));
        }
        for (a, b) in [("re\u{17F}tricted", "restricted"), ("restr\u{131}cted", "restricted")] {
            assert!(!same_tag_key(a, b), "{a} {b}");
            assert_eq!(a.to_lowercase() == b.to_lowercase(), same_tag_key(a, b));
        }
        // One to a whole-string fold (final sigma), two to `StringLike`'s per character.
        assert_eq!("ΟΔΟΣ".to_lowercase(), "οδος");
        assert!(!same_tag_key("ΟΔΟΣ", "οδος"));
        assert!(same_tag_key("ΑΒΓ", "αβγ"));
    }

    /// A record kept before keys were compared without regard to case (fidelity17) may
    /// hold `Team` and `team`, which the policy engine reads as two values of one condition
    /// key (so a Deny on either applies). A tagging call changes only the keys it names:
    /// tagging `env` leaves both spellings as stored, where making them one (the later
    /// kept) let a caller allowed to tag only `env` lift a Deny on `team=a` (review 18,
    /// left). Naming the key, in any case, replaces or removes every spelling of it.
    #[test]
    fn a_tagging_call_leaves_an_older_records_spellings_of_keys_it_does_not_name() {
        let (store, iam) = setup();
        let tag = |key: &str, value: &str| Tag { key: key.into(), value: value.into() };
        let older = vec![tag("Team", "a"), tag("env", "b"), tag("team", "c"), tag("TEAM", "d")];
        let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"sts:AssumeRole"}]}"#;
        iam.create_user(&store, ACCOUNT, "u", 0).unwrap();
        iam.create_role(&store, ACCOUNT, "r", "/", trust, "", None, Vec::new(), 0).unwrap();
        // As an older build stored them: the record's tags written as given.
        let keep_as_older = |kind: &str| {
            store
                .write(&mut |tx| {
                    let key = user_key(ACCOUNT, if kind == USER_KIND { "u" } else { "r" });
                    let mut value: serde_json::Value = decode(&tx.record(kind, &key)?.unwrap())?;
                    value["tags"] = serde_json::to_value(&older).unwrap();
                    tx.put_record(kind, &key, &encode(&value))
                })
                .unwrap()
        };
        keep_as_older(USER_KIND);
        keep_as_older(ROLE_KIND);
        let user_tags = || iam.get_user(&store, ACCOUNT, "u").unwrap().tags;
        let role_tags = || iam.get_role(&store, ACCOUNT, "r").unwrap().tags;
        assert_eq!(user_tags(), older, "listed as stored");

        iam.tag_user(&store, ACCOUNT, "u", vec![tag("env", "e"), tag("x", "1")]).unwrap();
        iam.tag_entity(&store, Entity::Role, ACCOUNT, "r", vec![tag("ENV", "e")]).unwrap();
        let kept = |env: Tag, more: &[Tag]| {
            let mut tags = vec![tag("Team", "a"), env, tag("team", "c"), tag("TEAM", "d")];
            tags.extend_from_slice(more);
            tags
        };
        assert_eq!(user_tags(), kept(tag("env", "e"), &[tag("x", "1")]));
        assert_eq!(role_tags(), kept(tag("ENV", "e"), &[]));
        // A key given twice in the request is refused, however the record spells it.
        match iam.tag_user(&store, ACCOUNT, "u", vec![tag("team", "1"), tag("tEAM", "2")]) {
            Err(IamError::InvalidInput(_)) => {}
            other => panic!("{other:?}"),
        }
        // Naming the key replaces every spelling, where the first stood.
        iam.tag_user(&store, ACCOUNT, "u", vec![tag("tEAM", "f")]).unwrap();
        assert_eq!(user_tags(), vec![tag("tEAM", "f"), tag("env", "e"), tag("x", "1")]);
        iam.untag_entity(&store, Entity::Role, ACCOUNT, "r", &["team".into()]).unwrap();
        assert_eq!(role_tags(), vec![tag("ENV", "e")]);
    }

    /// Users, groups and roles take a name no other of their kind in the account has,
    /// without regard to case, up to the account's quota; another account or kind may
    /// use the name.
    #[test]
    fn a_new_user_group_or_role_needs_a_free_name_and_room_in_the_quota() {
        let (store, iam) = setup();
        let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"sts:AssumeRole"}]}"#;
        let role = |account: &str, name: &str| {
            iam.create_role(&store, account, name, "/", trust, "", None, Vec::new(), 0).map(drop)
        };
        let exists = |e: IamError| match e {
            IamError::Exists(m) => m,
            other => panic!("{other:?}"),
        };
        iam.create_user(&store, ACCOUNT, "ops", 0).unwrap();
        iam.create_group(&store, ACCOUNT, "ops", "/", 0).unwrap();
        role(ACCOUNT, "ops").unwrap();
        let user = iam.create_user(&store, ACCOUNT, "OPS", 0).unwrap_err();
        assert_eq!(exists(user), "User with name OPS already exists.");
        let group = iam.create_group(&store, ACCOUNT, "Ops", "/", 0).unwrap_err();
        assert_eq!(exists(group), "Group with name Ops already exists.");
        assert_eq!(exists(role(ACCOUNT, "oPs").unwrap_err()), "Role with name oPs already exists.");
        iam.create_user(&store, "444455556666", "OPS", 0).unwrap();
        iam.create_group(&store, "444455556666", "Ops", "/", 0).unwrap();
        role("444455556666", "oPs").unwrap();

        for i in 1..MAX_GROUPS {
            iam.create_group(&store, ACCOUNT, &format!("g{i}"), "/", 0).unwrap();
        }
        let full = iam.create_group(&store, ACCOUNT, "one-more", "/", 0).unwrap_err();
        assert!(
            matches!(&full, IamError::Limit(m) if m == "Cannot exceed quota for GroupsPerAccount: 300"),
            "{full:?}"
        );
    }

    #[test]
    fn a_third_access_key_is_refused_and_inactive_keys_do_not_authenticate() {
        let (store, iam) = setup();
        iam.create_user(&store, ACCOUNT, "bob", 0).unwrap();
        let (first, _) = iam.create_access_key(&store, ACCOUNT, "bob", 0).unwrap();
        iam.create_access_key(&store, ACCOUNT, "bob", 0).unwrap();
        let third = iam.create_access_key(&store, ACCOUNT, "bob", 0).unwrap_err();
        assert!(
            matches!(&third, IamError::Limit(m) if m == "Cannot exceed quota for AccessKeysPerUser: 2")
        );
        iam.update_access_key(&store, ACCOUNT, "bob", &first, "Inactive").unwrap();
        assert!(iam.lookup(&store, &first).unwrap().is_none());
        iam.update_access_key(&store, ACCOUNT, "bob", &first, "Active").unwrap();
        assert!(iam.lookup(&store, &first).unwrap().is_some());
        let other = iam.update_access_key(&store, ACCOUNT, "carol", &first, "Active").unwrap_err();
        assert!(matches!(other, IamError::NotFound(_)));
    }

    #[test]
    fn managed_and_group_policies_apply_to_the_caller() {
        let (store, iam) = setup();
        iam.create_user(&store, ACCOUNT, "bob", 0).unwrap();
        let (key, _) = iam.create_access_key(&store, ACCOUNT, "bob", 0).unwrap();
        assert_eq!(policies_seen(&iam, &store, &key), 0);
        let policy =
            iam.create_policy(&store, ACCOUNT, "read", "/", READ_ALL, "", Vec::new(), 0).unwrap();
        iam.attach_policy(&store, Entity::User, ACCOUNT, "bob", &policy.arn()).unwrap();
        assert_eq!(policies_seen(&iam, &store, &key), 1);
        iam.create_group(&store, ACCOUNT, "ops", "/", 0).unwrap();
        iam.put_inline_policy(&store, Entity::Group, ACCOUNT, "ops", "g", READ_ALL).unwrap();
        iam.set_membership(&store, ACCOUNT, "ops", "bob", true).unwrap();
        assert_eq!(policies_seen(&iam, &store, &key), 2);
        let conflict = iam.delete_policy(&store, ACCOUNT, &policy.arn()).unwrap_err();
        assert!(matches!(conflict, IamError::Conflict(_)));
        assert_eq!(iam.get_policy(&store, ACCOUNT, &policy.arn()).unwrap().1, 1);
        iam.detach_policy(&store, Entity::User, ACCOUNT, "bob", &policy.arn()).unwrap();
        iam.delete_policy(&store, ACCOUNT, &policy.arn()).unwrap();
        assert!(matches!(iam.delete_group(&store, ACCOUNT, "ops"), Err(IamError::Conflict(_))));
        iam.set_membership(&store, ACCOUNT, "ops", "bob", false).unwrap();
        assert_eq!(policies_seen(&iam, &store, &key), 0);
    }

    #[test]
    fn aws_managed_policies_exist_in_every_account_and_are_never_changed() {
        let (store, iam) = setup();
        let read_only = "arn:aws:iam::aws:policy/ReadOnlyAccess";
        for account in [ACCOUNT, "444455556666"] {
            iam.create_user(&store, account, "bob", 0).unwrap();
        }
        let (key, _) = iam.create_access_key(&store, ACCOUNT, "bob", 0).unwrap();
        iam.attach_policy(&store, Entity::User, ACCOUNT, "bob", read_only).unwrap();
        assert_eq!(policies_seen(&iam, &store, &key), 1);
        // Counted in the account that attached it only.
        assert_eq!(iam.get_policy(&store, ACCOUNT, read_only).unwrap().1, 1);
        assert_eq!(iam.get_policy(&store, "444455556666", read_only).unwrap().1, 0);
        let entities = iam.entities_for_policy(&store, ACCOUNT, read_only).unwrap();
        assert_eq!(entities.users.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(), ["bob"]);
        assert_eq!(
            iam.first_unknown_policy(&store, ACCOUNT, &[read_only.to_string()]).unwrap(),
            None
        );
        // The directory's changes look for customer policies only.
        let missing = |r: Result<(), IamError>| matches!(r, Err(IamError::NotFound(_)));
        assert!(missing(iam.delete_policy(&store, ACCOUNT, read_only)));
        assert!(missing(iam.set_default_policy_version(&store, ACCOUNT, read_only, "v182", 1)));
        assert!(missing(iam.delete_policy_version(&store, ACCOUNT, read_only, "v1")));
        assert!(matches!(
            iam.create_policy_version(&store, ACCOUNT, read_only, READ_ALL, true, 1),
            Err(IamError::NotFound(_))
        ));
        assert_eq!(iam.get_policy(&store, ACCOUNT, read_only).unwrap().0.default_version, "v182");
        // One Coffer has not got is no policy.
        let nope = "arn:aws:iam::aws:policy/Nope";
        assert!(matches!(
            iam.attach_policy(&store, Entity::User, ACCOUNT, "bob", nope),
            Err(IamError::NotFound(_))
        ));
        iam.detach_policy(&store, Entity::User, ACCOUNT, "bob", read_only).unwrap();
        assert_eq!(policies_seen(&iam, &store, &key), 0);
    }

    #[test]
    fn users_groups_and_roles_are_deleted_only_once_nothing_is_attached_in_iams_order() {
        let (store, iam) = setup();
        let conflict = |r: Result<(), IamError>| match r {
            Err(IamError::Conflict(m)) => m,
            other => panic!("not a conflict: {other:?}"),
        };
        let policy =
            iam.create_policy(&store, ACCOUNT, "read", "/", READ_ALL, "", Vec::new(), 0).unwrap();
        let arn = policy.arn();
        // A user: keys, then inline policies, then managed ones, then groups.
        iam.create_user(&store, ACCOUNT, "bob", 0).unwrap();
        iam.create_group(&store, ACCOUNT, "ops", "/", 0).unwrap();
        iam.set_membership(&store, ACCOUNT, "ops", "bob", true).unwrap();
        iam.attach_policy(&store, Entity::User, ACCOUNT, "bob", &arn).unwrap();
        iam.put_inline_policy(&store, Entity::User, ACCOUNT, "bob", "p", READ_ALL).unwrap();
        let (key, _) = iam.create_access_key(&store, ACCOUNT, "bob", 0).unwrap();
        let user = || iam.delete_user_checked(&store, ACCOUNT, "bob");
        assert_eq!(conflict(user()), "Cannot delete entity, must delete access keys first.");
        iam.delete_access_key_of(&store, ACCOUNT, "bob", &key).unwrap();
        assert_eq!(conflict(user()), "Cannot delete entity, must delete policies first.");
        iam.delete_inline_policy(&store, Entity::User, ACCOUNT, "bob", "p").unwrap();
        assert_eq!(conflict(user()), "Cannot delete entity, must detach all policies first.");
        iam.detach_policy(&store, Entity::User, ACCOUNT, "bob", &arn).unwrap();
        assert_eq!(
            conflict(user()),
            "Cannot delete entity, must remove user from all groups first."
        );
        // A group: members first.
        iam.put_inline_policy(&store, Entity::Group, ACCOUNT, "ops", "g", READ_ALL).unwrap();
        let group = || iam.delete_group(&store, ACCOUNT, "ops");
        assert_eq!(conflict(group()), "Cannot delete entity, must remove users from group first.");
        iam.set_membership(&store, ACCOUNT, "ops", "bob", false).unwrap();
        assert_eq!(conflict(group()), "Cannot delete entity, must delete policies first.");
        iam.delete_inline_policy(&store, Entity::Group, ACCOUNT, "ops", "g").unwrap();
        group().unwrap();
        user().unwrap();
        // A role: its policies.
        let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"sts:AssumeRole"}]}"#;
        iam.create_role(&store, ACCOUNT, "r", "/", trust, "", None, Vec::new(), 0).unwrap();
        iam.attach_policy(&store, Entity::Role, ACCOUNT, "r", &arn).unwrap();
        let role = || iam.delete_role(&store, ACCOUNT, "r");
        assert_eq!(conflict(role()), "Cannot delete entity, must detach all policies first.");
        iam.detach_policy(&store, Entity::Role, ACCOUNT, "r", &arn).unwrap();
        role().unwrap();
        // Gone, each answered as IAM answers a missing entity.
        assert_eq!(role().unwrap_err().to_string(), "The role with name r cannot be found.");
        assert_eq!(group().unwrap_err().to_string(), "The group with name ops cannot be found.");
        assert_eq!(user().unwrap_err().to_string(), "The user with name bob cannot be found.");
    }

    #[test]
    fn delete_user_is_refused_while_the_user_has_keys() {
        let (store, iam) = setup();
        iam.create_user(&store, ACCOUNT, "bob", 0).unwrap();
        let (key, _) = iam.create_access_key(&store, ACCOUNT, "bob", 0).unwrap();
        let e = iam.delete_user_checked(&store, ACCOUNT, "bob").unwrap_err();
        assert_eq!(e.to_string(), "Cannot delete entity, must delete access keys first.");
        iam.delete_access_key_of(&store, ACCOUNT, "bob", &key).unwrap();
        iam.delete_user_checked(&store, ACCOUNT, "bob").unwrap();
        assert_eq!(
            iam.get_user(&store, ACCOUNT, "bob").unwrap_err().to_string(),
            "The user with name bob cannot be found."
        );
    }

    #[test]
    fn policy_arns_name_account_and_policy() {
        assert_eq!(
            policy_arn_parts("arn:aws:iam::111122223333:policy/team/read"),
            Some(("111122223333", "read"))
        );
        assert_eq!(policy_arn_parts("arn:aws:iam::aws:policy/AdministratorAccess"), None);
    }
}
