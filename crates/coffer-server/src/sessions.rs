//! Temporary credentials on the server side: STS's AssumeRole and GetSessionToken
//! (query protocol, answered next to GetCallerIdentity), and the authentication of a
//! request signed with a session's `ASIA...` key and `X-Amz-Security-Token`.
//!
//! AssumeRole evaluates the role's trust policy as a resource policy for the caller
//! (with `sts:ExternalId`, `sts:RoleSessionName`, `aws:RequestTag/*` and the caller's
//! `aws:PrincipalTag/*`), then `coffer-iam` issues the session: its secret sealed, its
//! token kept only as a hash. The session's permissions are the role's policies
//! intersected with the session policy given (see `auth::decide`). Credentials never
//! reach the audit trail: STS events carry no response elements.
//!
//! `--dev` answers both with the same validation and answer shape, authorizing nothing:
//! its sessions are `dev_sessions`' (docs/design/iam-and-sessions.md, `--dev`).

use crate::auth::{self, AuthFailure, Authenticated, RawRequest};
use crate::iam::directory::{Tag, role_arn_parts, same_tag_key};
use crate::iam::sessions::{Expired, IssuedSession, SessionRequest, Subject};
use crate::iam::{Iam, IamError, KnownKey};
use crate::sts::FormValues;
use crate::{App, RequestContext, dev_sessions};
use coffer_auth::policy::{Policy, PolicyKind};
use coffer_auth::principal::stored_iam_arn;
use coffer_auth::sigv4::SigV4Error;
use coffer_auth::time::format_iso8601;
use coffer_core::Partition;
use coffer_core::validation::{Constraint, Violation};
use coffer_wire::operation::{Service, StsOp};
use serde_json::{Value, json};
use std::sync::Arc;

/// AssumeRole's bounds and default, in seconds.
const MIN_DURATION: i64 = 900;
const DEFAULT_DURATION: i64 = 3600;
/// A role session assuming another role (role chaining) lasts at most an hour.
const CHAINED_MAX: i64 = 3600;
/// GetSessionToken's default and maximum.
const USER_SESSION_DEFAULT: i64 = 43_200;
const USER_SESSION_MAX: i64 = 129_600;
/// An account root's GetSessionToken and GetFederationToken sessions last at most an hour, a
/// longer one being cut to an hour (AWS's references of both).
pub(crate) const ROOT_SESSION_MAX: i64 = 3600;
/// `--dev`: the most a session of a role without a record may last: the highest
/// MaxSessionDuration a role can have, as its own is not known.
pub(crate) const UNRECORDED_ROLE_MAX: i64 = 43_200;
/// The most session tags a session may carry.
const MAX_SESSION_TAGS: usize = 50;
/// The compact length, in bytes, of session policy and tags that PackedPolicySize reports
/// as 100%: AWS's limit on an inline session policy.
const PACKED_ALLOWANCE: u64 = 2048;

/// Finds the caller behind temporary credentials; a missing or wrong token is an unknown
/// client, an ended session `ExpiredToken`.
pub fn lookup(
    app: &App,
    iam: &Iam,
    access_key_id: &str,
    token: Option<&str>,
) -> Result<Option<Arc<KnownKey>>, AuthFailure> {
    let Some(token) = token else {
        return Err(AuthFailure::Signature(SigV4Error::UnrecognizedClient));
    };
    let now = crate::clock::now_ms();
    match iam
        .lookup_session(app.store.as_ref(), access_key_id, token, now)
        .map_err(AuthFailure::Internal)?
    {
        Ok(found) => Ok(found),
        Err(Expired) => Err(AuthFailure::Signature(SigV4Error::ExpiredToken)),
    }
}

/// The kind of temporary credentials a call was signed with: what AWS lets each call
/// (`sts::temporary_credentials_refusal`, `iam_api::handle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Temporary {
    /// A role's session (AssumeRole, AssumeRoleWithWebIdentity).
    Role,
    /// GetSessionToken's: the user (or root) itself, without MFA.
    User,
    /// GetFederationToken's: a federated user.
    Federated,
}

impl Temporary {
    /// The kind of the credentials `access_key_id` that act as `principal`; `None` for a
    /// long-term key.
    pub(crate) fn of(
        access_key_id: &str,
        principal: &coffer_auth::principal::Principal,
    ) -> Option<Temporary> {
        if principal.is_assumed_role() {
            Some(Temporary::Role)
        } else if principal.is_federated_user() {
            Some(Temporary::Federated)
        } else if access_key_id.starts_with("ASIA") {
            Some(Temporary::User)
        } else {
            None
        }
    }
}

/// An STS error: code, message, status.
pub(crate) struct Failure(pub &'static str, pub String, pub u16);

impl Failure {
    fn invalid(message: impl Into<String>) -> Failure {
        Failure("ValidationError", message.into(), 400)
    }
}

impl From<IamError> for Failure {
    fn from(e: IamError) -> Failure {
        match e {
            IamError::Malformed(m) => Failure("MalformedPolicyDocument", m, 400),
            IamError::Invalid(m) | IamError::InvalidInput(m) => Failure::invalid(m),
            IamError::Limit(m) => Failure("PackedPolicyTooLarge", m, 400),
            IamError::NotFound(m) | IamError::Exists(m) | IamError::Conflict(m) => {
                Failure::invalid(m)
            }
            IamError::Store(e) => {
                tracing::error!(error = %e, "store failure");
                Failure("InternalFailure", "An internal error occurred.".into(), 500)
            }
            IamError::Crypto(e) => {
                tracing::error!(error = %e, "session crypto failure");
                Failure("InternalFailure", "An internal error occurred.".into(), 500)
            }
        }
    }
}

/// Answers the STS actions that issue credentials, AssumeRole and GetSessionToken
/// (`sts::handle` answers the others): `Ok(the XML answer)`, or the error as STS names it
/// (code, message, HTTP status), which the pipeline encodes and records.
pub fn answer(
    app: &App,
    ctx: &RequestContext,
    who: Option<&Authenticated>,
    raw: &RawRequest,
    op: StsOp,
    form: &FormValues<'_>,
) -> Result<Vec<u8>, (&'static str, String, u16)> {
    let action = op.name();
    let internal = || Err(Failure("InternalFailure", "An internal error occurred.".into(), 500));
    let result = match (who, app.iam.as_ref(), app.dev_iam.as_ref()) {
        (Some(who), Some(iam), _) => match op {
            StsOp::AssumeRole => assume_role(app, iam, who, raw, form),
            StsOp::GetSessionToken => session_token(app, iam, who, form),
            StsOp::GetCallerIdentity
            | StsOp::GetAccessKeyInfo
            | StsOp::GetFederationToken
            | StsOp::AssumeRoleWithWebIdentity => internal(),
        },
        // `--dev`: the same validation and answers, with nothing authorized.
        (None, None, Some(directory)) => match op {
            StsOp::AssumeRole => dev_assume_role(app, directory, ctx, form),
            StsOp::GetSessionToken => dev_session_token(app, ctx, form),
            StsOp::GetCallerIdentity
            | StsOp::GetAccessKeyInfo
            | StsOp::GetFederationToken
            | StsOp::AssumeRoleWithWebIdentity => internal(),
        },
        // An app without a directory has nobody to issue credentials to.
        _ => Err(Failure(
            "InvalidAction",
            format!("{action} needs authentication: it is not served with --dev."),
            400,
        )),
    };
    match result {
        Ok(Issued { xml, elements }) => {
            ctx.audit.set_response(&elements);
            Ok(crate::query::response(Service::Sts, action, &xml, &ctx.request_id))
        }
        Err(Failure(code, message, status)) => Err((code, message, status)),
    }
}

/// What a call that issues credentials answers (XML) and records as its event's response
/// elements (never the secret access key or the session token).
struct Issued {
    xml: String,
    elements: Value,
}

/// The `credentials` CloudTrail records of credentials issued: their access key id and
/// expiry. CloudTrail records the session token too; Coffer keeps only its hash wherever
/// it stores it (`coffer-iam::sessions`), and a trail is read by more people than may act
/// with it, so it is left out.
pub(crate) fn credential_elements(access_key_id: &str, expires_ms: i64) -> Value {
    json!({
        "AccessKeyId": access_key_id,
        "Expiration": coffer_audit::format_response_date(expires_ms),
    })
}

/// AssumeRole's response elements.
fn assumed_elements(credentials: Value, assumed_id: &str, arn: &str, packed: Option<u64>) -> Value {
    let mut elements = json!({
        "Credentials": credentials,
        "AssumedRoleUser": {"AssumedRoleId": assumed_id, "Arn": arn},
    });
    if let Some(packed) = packed {
        elements["PackedPolicySize"] = json!(packed);
    }
    elements
}

pub(crate) fn credentials_xml(issued: &IssuedSession) -> String {
    credentials_parts_xml(&issued.access_key_id, &issued.secret, &issued.token, issued.expires_ms)
}

pub(crate) fn dev_credentials_xml(issued: &dev_sessions::Issued) -> String {
    credentials_parts_xml(&issued.access_key_id, &issued.secret, &issued.token, issued.expires_ms)
}

fn credentials_parts_xml(
    access_key_id: &str,
    secret: &coffer_auth::principal::SecretAccessKey,
    token: &str,
    expires_ms: i64,
) -> String {
    use crate::iam_api::escape;
    format!(
        "<Credentials><AccessKeyId>{}</AccessKeyId><SecretAccessKey>{}</SecretAccessKey><SessionToken>{}</SessionToken><Expiration>{}</Expiration></Credentials>",
        escape(access_key_id),
        escape(secret.expose()),
        escape(token),
        format_iso8601(expires_ms)
    )
}

pub(crate) fn duration(
    form: &FormValues<'_>,
    default: i64,
    max: i64,
    role_max: bool,
) -> Result<i64, Failure> {
    let Some(text) = form.value("DurationSeconds") else { return Ok(default) };
    let secs: i64 = text.parse().map_err(|_| {
        let text = coffer_auth::sigv4::echo(&text);
        Failure::invalid(format!("Invalid value for DurationSeconds: {text}"))
    })?;
    if secs < MIN_DURATION {
        return Err(Failure::invalid(
            Violation::number(secs, "durationSeconds", Constraint::MinValue(MIN_DURATION))
                .message(),
        ));
    }
    if secs > max {
        return Err(Failure::invalid(if role_max {
            "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."
                .to_string()
        } else {
            Violation::number(secs, "durationSeconds", Constraint::MaxValue(max)).message()
        }));
    }
    Ok(secs)
}

pub(crate) fn session_tags(form: &FormValues<'_>) -> Result<Vec<Tag>, Failure> {
    // One past the bound is enough to refuse the list (see `policy_arns`).
    let tags: Vec<Tag> = (1..=MAX_SESSION_TAGS + 1)
        .map_while(|i| {
            let key = form.value(&format!("Tags.member.{i}.Key"))?;
            let value = form.value(&format!("Tags.member.{i}.Value")).unwrap_or_default();
            Some(Tag { key, value })
        })
        .collect();
    // One key in two spellings, by IAM's rule for tag keys (`same_tag_key`: beyond ASCII,
    // keys that fold to one condition key are one key; compared in ASCII only, `CAFÉ` and
    // `café` gave `aws:PrincipalTag/café` two values, review 18, left).
    let duplicate = tags
        .iter()
        .enumerate()
        .any(|(i, t)| tags[..i].iter().any(|u| same_tag_key(&u.key, &t.key)));
    if duplicate {
        return Err(Failure(
            "InvalidParameterValue",
            "Duplicate tag keys found. Please note that Tag keys are case insensitive.".into(),
            400,
        ));
    }
    if tags.len() > MAX_SESSION_TAGS {
        return Err(Failure::invalid(
            Violation::unnamed("tags", Constraint::MaxLength(MAX_SESSION_TAGS as i64)).message(),
        ));
    }
    Ok(tags)
}

/// The most managed session policies a request may pass (AWS's references: "up to 10").
const MAX_POLICY_ARNS: usize = 10;

/// The managed session policies a request passes (`PolicyArns.member.N.arn`), checked
/// against the model (each ARN 20 to 2,048 characters) and AWS's count, in the validation
/// message's words.
pub(crate) fn policy_arns(form: &FormValues<'_>) -> Result<Vec<String>, Failure> {
    // One past the bound is enough to refuse the list. Each member was once found by a
    // scan of the whole form, so reading every member a large form names cost its square
    // (8,000 members held a worker 17 s, before any authorization; review 15b, finding
    // 02); lookups are now in a `FormValues` read once, and the bound still keeps a list
    // from being read further than it can be accepted.
    let arns: Vec<String> = (1..=MAX_POLICY_ARNS + 1)
        .map_while(|i| form.value(&format!("PolicyArns.member.{i}.arn")))
        .collect();
    for (i, arn) in arns.iter().enumerate() {
        let constraint = match arn.chars().count() {
            n if n < 20 => Constraint::MinLength(20),
            n if n > 2048 => Constraint::MaxLength(2048),
            _ => continue,
        };
        let member = format!("policyArns.{}.member.arn", i + 1);
        return Err(Failure::invalid(Violation::value(arn, &member, constraint).message()));
    }
    if arns.len() > MAX_POLICY_ARNS {
        return Err(Failure::invalid(
            Violation::unnamed("policyArns", Constraint::MaxLength(MAX_POLICY_ARNS as i64))
                .message(),
        ));
    }
    Ok(arns)
}

/// AWS's bound on the plain text of a request's session policies: the inline policy and
/// the managed policies' ARNs together at most 2,048 characters ("The plaintext that you
/// use for both inline and managed session policies can't exceed 2,048 characters"). The
/// inline policy alone is bounded before (`check_session_policy_length`); past the bound
/// together, AWS's packed-policy refusal, with the share of the allowance used.
pub(crate) fn check_session_policies_plaintext(
    policy: Option<&str>,
    arns: &[String],
) -> Result<(), Failure> {
    let chars = policy.map_or(0, |p| p.chars().count())
        + arns.iter().map(|a| a.chars().count()).sum::<usize>();
    if chars as u64 <= PACKED_ALLOWANCE {
        return Ok(());
    }
    let share = (chars as u64 * 100).div_ceil(PACKED_ALLOWANCE);
    // AWS's words for a packed policy past its allowance (its `PackedPolicyTooLarge`).
    Err(Failure(
        "PackedPolicyTooLarge",
        format!(
            "Packed policy consumes {share}% of allotted space, please use smaller policy for \
             this request."
        ),
        400,
    ))
}

/// The managed session policies `given` (as the request names them, in its partition), as
/// IAM's records keep them: each must name a customer managed policy of `account`, the
/// account of the role or of the federating user, as AWS requires, or one of the AWS
/// managed policies Coffer has (`arn:aws:iam::aws:policy/...`, `iam::aws_managed`). No source gives AWS's answer to an
/// ARN that names none: it is refused with the modelled `MalformedPolicyDocument` and
/// IAM's words for an ARN naming no attachable policy (accepting it would leave a session
/// bounded by a policy that does not exist).
pub(crate) fn resolve_policy_arns(
    iam: &Iam,
    app: &App,
    account: &str,
    given: &[String],
    partition: Partition,
) -> Result<Vec<String>, Failure> {
    let unknown = |arn: &str| {
        let arn = coffer_auth::sigv4::echo(arn);
        Failure(
            "MalformedPolicyDocument",
            format!("Policy {arn} does not exist or is not attachable."),
            400,
        )
    };
    let mut stored = Vec::with_capacity(given.len());
    for arn in given {
        match stored_iam_arn(arn, partition) {
            Some(s)
                if crate::iam::directory::policy_arn_parts(&s).is_some()
                    || crate::iam::aws_managed::is_aws_managed_arn(&s) =>
            {
                stored.push(s)
            }
            _ => return Err(unknown(arn)),
        }
    }
    match iam.first_unknown_policy(app.store.as_ref(), account, &stored)? {
        Some(i) => Err(unknown(&given[i])),
        None => Ok(stored),
    }
}

/// What AssumeRole's form asks, checked in the order and words of AWS's validation,
/// before any role is looked at (in enforcing mode and `--dev` alike).
struct AssumeRequest {
    role_arn: String,
    session_name: String,
    session_policy: Option<String>,
    policy_arns: Vec<String>,
    tags: Vec<Tag>,
    transitive: Vec<String>,
}

fn assume_request(form: &FormValues<'_>) -> Result<AssumeRequest, Failure> {
    let required = |name: &str, member: &str| {
        form.value(name).ok_or_else(|| Failure::invalid(Violation::null(member).message()))
    };
    let role_arn = required("RoleArn", "roleArn")?;
    let session_name = required("RoleSessionName", "roleSessionName")?;
    check_session_name(&session_name)?;
    // A RoleArn that is not an ARN at all is invalid input (as AWS answers it); one that is
    // an ARN but names no role the caller may assume is a refusal, further down.
    if !is_arn(&role_arn) {
        let role_arn = coffer_auth::sigv4::echo(&role_arn);
        return Err(Failure::invalid(format!("{role_arn} is invalid")));
    }
    let session_policy = form.value("Policy");
    let policy_arns = policy_arns(form)?;
    let tags = session_tags(form)?;
    let transitive = transitive_keys(form, &tags)?;
    Ok(AssumeRequest { role_arn, session_name, session_policy, policy_arns, tags, transitive })
}

fn assume_role(
    app: &App,
    iam: &Iam,
    who: &Authenticated,
    raw: &RawRequest,
    form: &FormValues<'_>,
) -> Result<Issued, Failure> {
    let AssumeRequest { role_arn, session_name, session_policy, policy_arns, tags, transitive } =
        assume_request(form)?;
    // A session's transitive tags pass to the session it assumes, which may not set them
    // again (review 13, finding 02: they were ignored, so a chained session set the very
    // tag a broker had fixed for the whole chain).
    let asked_transitive = transitive.clone();
    let (tags, transitive) = with_inherited(iam, app, who, tags, transitive)?;
    // Session tags become the session's aws:PrincipalTag/*: passing them (or naming
    // transitive ones) needs sts:TagSession too, from the trust policy and the caller's
    // identity policies, as on AWS; otherwise a role's ABAC tags could be overridden by
    // whoever may assume it. Inherited tags count: they are the new session's tags too.
    let tagging = !tags.is_empty() || !transitive.is_empty();
    let refused = |action: &str| {
        Failure(
            "AccessDenied",
            format!(
                "User: {} is not authorized to perform: {action} on resource: {}",
                who.caller.principal.arn,
                coffer_auth::sigv4::echo(&role_arn)
            ),
            403,
        )
    };
    let denied = || refused("sts:AssumeRole");
    if let Some(refusal) = refused_whatever_the_policies(&who.caller.principal, denied) {
        return Err(refusal);
    }
    // An unknown role is answered as a refusal, as AWS does: it reveals no more. So is a
    // role named in another partition than the request's, where it cannot be.
    let partition = Partition::of_region(&who.region);
    let Some(stored) = stored_iam_arn(&role_arn, partition) else { return Err(denied()) };
    let Some((account, name)) = role_arn_parts(&stored) else { return Err(denied()) };
    let role = match iam.get_role(app.store.as_ref(), account, name) {
        Ok(role) if role.arn() == stored => role,
        Ok(_) | Err(IamError::NotFound(_)) => return Err(denied()),
        Err(e) => return Err(e.into()),
    };
    let Ok(trust) = Policy::parse(&role.trust_policy, PolicyKind::Resource) else {
        return Err(denied());
    };
    let mut extra = vec![("sts:RoleSessionName".to_string(), session_name.clone())];
    if let Some(external) = form.value("ExternalId") {
        extra.push(("sts:ExternalId".to_string(), external));
    }
    for tag in &tags {
        extra.push((format!("aws:RequestTag/{}", tag.key), tag.value.clone()));
        extra.push(("aws:TagKeys".to_string(), tag.key.clone()));
    }
    // The role's own tags (`aws:ResourceTag/<key>`, `iam:ResourceTag/<key>`), as AWS gives
    // them to sts:AssumeRole: a Deny protecting tagged roles holds (review 16, finding 04).
    for tag in &role.tags {
        extra.push((format!("aws:ResourceTag/{}", tag.key), tag.value.clone()));
        extra.push((format!("iam:ResourceTag/{}", tag.key), tag.value.clone()));
    }
    // The keys the request sets as transitive (what a trust policy may limit).
    for key in asked_transitive {
        extra.push(("sts:TransitiveTagKeys".to_string(), key));
    }
    let assume = |action: &str| {
        auth::authorize_assume(who, raw, action, &role_arn, account, &trust, &extra)
            .map_err(|_| refused(action))
    };
    assume("sts:AssumeRole")?;
    if tagging {
        assume("sts:TagSession")?;
    }
    let max = if who.caller.principal.is_assumed_role() {
        role.max_session_secs.min(CHAINED_MAX)
    } else {
        role.max_session_secs
    };
    let secs = duration(form, DEFAULT_DURATION.min(max), max, true)?;
    if let Some(doc) = session_policy.as_deref() {
        crate::iam::sessions::check_session_policy_length(doc)?;
    }
    check_session_policies_plaintext(session_policy.as_deref(), &policy_arns)?;
    let policy_arns = resolve_policy_arns(iam, app, account, &policy_arns, partition)?;
    // AWS reports PackedPolicySize only when the session carries a policy or tags.
    let packed_size = packed_policy_size(session_policy.as_deref(), &policy_arns, &tags);
    let packed = packed_size
        .map(|p| format!("<PackedPolicySize>{p}</PackedPolicySize>"))
        .unwrap_or_default();
    let issued = iam.issue_session(
        app.store.as_ref(),
        SessionRequest {
            account,
            subject: Subject::Role {
                name: role.name.clone(),
                role_id: role.role_id.clone(),
                session_name: session_name.clone(),
            },
            duration_secs: secs,
            session_policy: session_policy.as_deref(),
            policy_arns,
            tags,
            transitive,
            now_ms: crate::clock::now_ms(),
        },
    )?;
    let xml = format!(
        "{}<AssumedRoleUser><AssumedRoleId>{}</AssumedRoleId><Arn>{}</Arn></AssumedRoleUser>{packed}",
        credentials_xml(&issued),
        crate::iam_api::escape(&issued.assumed_id),
        crate::iam_api::escape(&partition.rewrite(&issued.arn))
    );
    let arn = partition.rewrite(&issued.arn);
    let credentials = credential_elements(&issued.access_key_id, issued.expires_ms);
    let elements = assumed_elements(credentials, &issued.assumed_id, &arn, packed_size);
    Ok(Issued { xml, elements })
}

/// The callers AssumeRole refuses before any role is looked at, whatever the policies
/// say, with AWS's answer (`denied` is the ordinary refusal naming the caller and role):
/// a federated user (GetFederationToken's credentials) may call no STS operation but
/// GetCallerIdentity, as AWS documents; a trust policy naming its ARN would otherwise
/// hand a role to whoever may mint that name (review 15, finding 01). An account's root
/// (its GetSessionToken sessions too) may not assume roles: AWS's words. Enforcing mode
/// issues no root credentials today; `--dev`, which takes every key without credentials
/// of its own as its account's root and gives no authorization outcome, refuses nothing.
fn refused_whatever_the_policies(
    p: &coffer_auth::principal::Principal,
    denied: impl FnOnce() -> Failure,
) -> Option<Failure> {
    if p.is_account_root() {
        return Some(Failure(
            "AccessDenied",
            "Roles may not be assumed by root accounts.".to_string(),
            403,
        ));
    }
    if p.is_federated_user() {
        return Some(denied());
    }
    None
}

/// `--dev`'s AssumeRole: AWS's validation and answer, nothing authorized. A role that has
/// no record is assumed all the same (AWS refuses it as AccessDenied, an authorization
/// outcome, which `--dev` never gives; moto and LocalStack assume any role ARN): its
/// sessions share an id derived from its ARN (`dev_sessions::unrecorded_role_id`). Nor is
/// the account's root refused, as AWS refuses it ("Roles may not be assumed by root
/// accounts."): `--dev` takes every key without credentials of its own as its account's
/// root, and the suites it serves assume roles with such keys.
fn dev_assume_role(
    app: &App,
    directory: &Iam,
    ctx: &RequestContext,
    form: &FormValues<'_>,
) -> Result<Issued, Failure> {
    let AssumeRequest { role_arn, session_name, session_policy, policy_arns, tags, .. } =
        assume_request(form)?;
    let caller = dev_caller(ctx);
    // An ARN that names no role gives no role session; AWS's answer, as in enforcing mode
    // (so does a role ARN of another partition than the request's).
    let partition = ctx.scope.partition();
    let stored = stored_iam_arn(&role_arn, partition);
    let Some((account, name)) = stored.as_deref().and_then(role_arn_parts) else {
        return Err(Failure(
            "AccessDenied",
            format!(
                "User: {} is not authorized to perform: sts:AssumeRole on resource: {}",
                partition.rewrite(&caller.arn),
                coffer_auth::sigv4::echo(&role_arn)
            ),
            403,
        ));
    };
    let (role_id, max) = match directory.get_role(app.store.as_ref(), account, name) {
        Ok(role) if Some(role.arn()) == stored => (role.role_id, role.max_session_secs),
        Ok(_) | Err(IamError::NotFound(_)) => (
            dev_sessions::unrecorded_role_id(stored.as_deref().unwrap_or(&role_arn)),
            UNRECORDED_ROLE_MAX,
        ),
        Err(e) => return Err(e.into()),
    };
    let max = if caller.is_assumed_role() { max.min(CHAINED_MAX) } else { max };
    let secs = duration(form, DEFAULT_DURATION.min(max), max, true)?;
    if let Some(doc) = session_policy.as_deref() {
        // The bound enforcing mode's sessions keep (review 14, finding 03).
        crate::iam::sessions::check_session_policy_length(doc)?;
        crate::iam::directory::check_policy(doc)?;
    }
    // Managed session policies are checked for their shape only: `--dev` bounds nothing
    // by them, and test code names policies it never created (AWS managed ones too), as
    // it names roles.
    check_session_policies_plaintext(session_policy.as_deref(), &policy_arns)?;
    let packed_size = packed_policy_size(session_policy.as_deref(), &policy_arns, &tags);
    let packed = packed_size
        .map(|p| format!("<PackedPolicySize>{p}</PackedPolicySize>"))
        .unwrap_or_default();
    let stored_role = stored.as_deref().unwrap_or(&role_arn);
    let principal = coffer_auth::principal::Principal::assumed_role(
        account,
        name,
        stored_role,
        &role_id,
        &session_name,
    );
    let issued = dev_sessions::issue(app, &principal, secs, crate::clock::now_ms())
        .map_err(|_| Failure("InternalFailure", "An internal error occurred.".into(), 500))?;
    let xml = format!(
        "{}<AssumedRoleUser><AssumedRoleId>{}</AssumedRoleId><Arn>{}</Arn></AssumedRoleUser>{packed}",
        dev_credentials_xml(&issued),
        crate::iam_api::escape(&principal.user_id),
        crate::iam_api::escape(&partition.rewrite(&principal.arn))
    );
    let arn = partition.rewrite(&principal.arn);
    let credentials = credential_elements(&issued.access_key_id, issued.expires_ms);
    let elements = assumed_elements(credentials, &principal.user_id, &arn, packed_size);
    Ok(Issued { xml, elements })
}

/// `--dev`'s GetSessionToken: credentials that act as the caller, a user of `--dev`'s
/// directory or its account's root (whose sessions last at most an hour, as on AWS). A
/// session's own credentials are refused, as on AWS.
fn dev_session_token(
    app: &App,
    ctx: &RequestContext,
    form: &FormValues<'_>,
) -> Result<Issued, Failure> {
    if ctx.dev_caller.is_some() && ctx.access_key_id.starts_with("ASIA") {
        return Err(Failure(
            "AccessDenied",
            "Cannot call GetSessionToken with session credentials".to_string(),
            403,
        ));
    }
    let secs = duration(form, USER_SESSION_DEFAULT, USER_SESSION_MAX, false)?;
    let caller = dev_caller(ctx);
    let secs = if ctx.dev_caller.is_none() { secs.min(ROOT_SESSION_MAX) } else { secs };
    let issued = dev_sessions::issue(app, &caller, secs, crate::clock::now_ms())
        .map_err(|_| Failure("InternalFailure", "An internal error occurred.".into(), 500))?;
    let credentials = credential_elements(&issued.access_key_id, issued.expires_ms);
    Ok(Issued { xml: dev_credentials_xml(&issued), elements: json!({"Credentials": credentials}) })
}

/// Who a `--dev` call acts as: the principal of the credentials STS or the IAM API issued
/// it, else the root of its account.
pub(crate) fn dev_caller(ctx: &RequestContext) -> coffer_auth::principal::Principal {
    match &ctx.dev_caller {
        // Kept as IAM's records are (the request's partition is given to it again on
        // each use).
        Some(p) => p.in_partition(coffer_auth::principal::STORED),
        None => dev_sessions::account_root(&ctx.scope.account),
    }
}

/// The session name's constraints, in the order and words of AWS's validation: length,
/// then the pattern.
pub(crate) fn check_session_name(name: &str) -> Result<(), Failure> {
    let len = name.chars().count();
    let broken = if len < 2 {
        Some(Constraint::MinLength(2))
    } else if len > 64 {
        Some(Constraint::MaxLength(64))
    } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b)) {
        Some(Constraint::Pattern("[\\w+=,.@-]*"))
    } else {
        None
    };
    match broken {
        None => Ok(()),
        Some(constraint) => {
            Err(Failure::invalid(Violation::value(name, "roleSessionName", constraint).message()))
        }
    }
}

/// Whether `arn` has an ARN's shape: `arn:partition:service:region:account:resource`
/// with partition, service and resource present (region and account may be empty).
fn is_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    matches!(parts.as_slice(), ["arn", partition, service, _, _, resource]
        if !partition.is_empty() && !service.is_empty() && !resource.is_empty())
}

/// The TransitiveTagKeys given: each must name one of the session's tags (tag keys are
/// case-insensitive, by `same_tag_key`), as AWS requires.
fn transitive_keys(form: &FormValues<'_>, tags: &[Tag]) -> Result<Vec<String>, Failure> {
    // One past the model's bound (50) is enough to refuse the list (see `policy_arns`).
    let keys: Vec<String> = (1..=MAX_SESSION_TAGS + 1)
        .map_while(|i| form.value(&format!("TransitiveTagKeys.member.{i}")))
        .collect();
    if keys.len() > MAX_SESSION_TAGS {
        return Err(Failure::invalid(
            Violation::unnamed("transitiveTagKeys", Constraint::MaxLength(MAX_SESSION_TAGS as i64))
                .message(),
        ));
    }
    if keys.iter().any(|k| !tags.iter().any(|t| same_tag_key(&t.key, k))) {
        return Err(Failure(
            "InvalidParameterValue",
            "The specified transitive tag key must be included in the requested tags.".into(),
            400,
        ));
    }
    Ok(keys)
}

/// The session tags and transitive keys of a new session of `who`: the request's, and
/// the transitive tags of the session `who` calls with (role chaining), which the request
/// may not set again, in any case (`same_tag_key`, beyond ASCII too).
fn with_inherited(
    iam: &Iam,
    app: &App,
    who: &Authenticated,
    mut tags: Vec<Tag>,
    mut transitive: Vec<String>,
) -> Result<(Vec<Tag>, Vec<String>), Failure> {
    if !who.access_key_id.starts_with("ASIA") {
        return Ok((tags, transitive));
    }
    let inherited = iam.transitive_tags(app.store.as_ref(), &who.access_key_id)?;
    let clash = |t: &Tag| inherited.iter().any(|i| same_tag_key(&i.key, &t.key));
    if tags.iter().any(clash) {
        return Err(Failure(
            "InvalidParameterValue",
            "One of the specified transitive tag keys can't be set because it conflicts with \
             a transitive tag key from the calling session."
                .into(),
            400,
        ));
    }
    transitive.extend(inherited.iter().map(|t| t.key.clone()));
    tags.extend(inherited);
    Ok((tags, transitive))
}

/// The percentage of AWS's packed-policy allowance the session policy and tags use (AWS
/// compresses them in a format of its own, so this is an estimate from their compact
/// length); `None` when there is neither, as AWS then leaves the member out.
pub(crate) fn packed_policy_size(
    policy: Option<&str>,
    policy_arns: &[String],
    tags: &[Tag],
) -> Option<u64> {
    if policy.is_none() && policy_arns.is_empty() && tags.is_empty() {
        return None;
    }
    let policy_len = policy
        .map(|p| match serde_json::from_str::<serde_json::Value>(p) {
            Ok(v) => v.to_string().len(),
            Err(_) => p.len(),
        })
        .unwrap_or(0);
    let tags_len: usize = tags.iter().map(|t| t.key.len() + t.value.len()).sum();
    // AWS packs the managed policies' ARNs, not their documents.
    let arns_len: usize = policy_arns.iter().map(String::len).sum();
    let packed = (policy_len + arns_len + tags_len) as u64;
    Some(((packed * 100).div_ceil(PACKED_ALLOWANCE)).clamp(1, 100))
}

fn session_token(
    app: &App,
    iam: &Iam,
    who: &Authenticated,
    form: &FormValues<'_>,
) -> Result<Issued, Failure> {
    let p = &who.caller.principal;
    if p.is_assumed_role() || who.access_key_id.starts_with("ASIA") {
        return Err(Failure(
            "AccessDenied",
            "Cannot call GetSessionToken with session credentials".to_string(),
            403,
        ));
    }
    let secs = duration(form, USER_SESSION_DEFAULT, USER_SESSION_MAX, false)?;
    let issued = iam.issue_session(
        app.store.as_ref(),
        SessionRequest {
            account: &p.account,
            subject: Subject::User { name: p.name.clone(), user_id: p.user_id.clone() },
            duration_secs: secs,
            session_policy: None,
            policy_arns: Vec::new(),
            tags: Vec::new(),
            transitive: Vec::new(),
            now_ms: crate::clock::now_ms(),
        },
    )?;
    let credentials = credential_elements(&issued.access_key_id, issued.expires_ms);
    Ok(Issued { xml: credentials_xml(&issued), elements: json!({"Credentials": credentials}) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns_name_account_and_role() {
        assert_eq!(
            role_arn_parts("arn:aws:iam::111122223333:role/team/reader"),
            Some(("111122223333", "reader"))
        );
        assert_eq!(role_arn_parts("arn:aws:iam::111122223333:user/reader"), None);
    }

    /// AWS: "You cannot use AWS account root user credentials to call AssumeRole", answered
    /// `AccessDenied: Roles may not be assumed by root accounts.` (403), whatever the trust
    /// policy says; a root's GetSessionToken session acts as the root and is refused too.
    /// Enforcing mode issues no root credentials (its administrator is an IAM user), so
    /// this holds should it ever serve one; `--dev`, whose every key without credentials of
    /// its own is its account's root, refuses nothing (`dev_assume_role`).
    #[test]
    fn an_account_root_may_not_assume_a_role() {
        use coffer_auth::principal::{Principal, STORED, account_root_arn};
        let denied = || Failure("AccessDenied", "denied".into(), 403);
        let root = Principal {
            arn: account_root_arn(STORED, "111122223333"),
            account: "111122223333".into(),
            user_id: "111122223333".into(),
            name: "root".into(),
            role_arn: None,
        };
        for p in [root.clone(), root.in_partition(Partition::AwsCn)] {
            let Some(Failure(code, message, status)) = refused_whatever_the_policies(&p, denied)
            else {
                panic!("{} may assume a role", p.arn)
            };
            assert_eq!(
                (code, message.as_str(), status),
                ("AccessDenied", "Roles may not be assumed by root accounts.", 403)
            );
        }
        let federated = Principal::federated_user("111122223333", "fed");
        assert_eq!(refused_whatever_the_policies(&federated, denied).unwrap().1, "denied");
        for p in [
            Principal::user("111122223333", "root", "AIDAX"),
            Principal::assumed_role(
                "111122223333",
                "r",
                "arn:aws:iam::111122223333:role/r",
                "AROAX",
                "root",
            ),
        ] {
            assert!(refused_whatever_the_policies(&p, denied).is_none(), "{}", p.arn);
        }
    }
}
