//! Authentication and authorization of every request in `coffer serve` (not `--dev`).
//!
//! [`authenticate`] verifies the SigV4 signature with `coffer-auth` after looking the
//! access key up in the IAM records (through [`Iam::lookup`]'s cache, so a known key
//! costs one read of the IAM generation instead of its records and an AES-GCM open,
//! and with the signing key cached for the day). [`authorize`] then names the action
//! (`secretsmanager:<Op>`, `kms:<Op>`) and the resource (the secret's ARN, resolved;
//! the ARN being created for CreateSecret; `*` for calls on no secret), builds the
//! request context (tags, SecretId, VersionStage, caller, time, source address, ...)
//! and evaluates the caller's identity policies together with the secret's resource
//! policy. What only the handler knows is authorized there, through the call's [`Gate`]:
//! the key that actually sealed each version a handler opens (never the key the secret
//! names now, nor an alias as it points now), the key a write seals under, each secret of
//! a BatchGetSecretValue before its value is opened, the secret a replayed
//! ClientRequestToken names before its value is compared, and the key a KMS ciphertext
//! names. A stored policy that does not parse denies everything.
use crate::App;
use crate::iam::{Caller, Iam};
use coffer_auth::policy::{
    Context, Decision, Policy, PolicyKind, Request, evaluate, evaluate_key_policy,
};
use coffer_auth::sigv4::{Expectation, RequestParts, SigV4Error, prevalidate};
use coffer_auth::time::format_iso8601;
use coffer_core::model::SecretMeta;
use coffer_core::names;
use coffer_core::{AwsError, ErrorCode, Partition, Scope};
use coffer_kms::{Accepts, KeyManager, KeyRecord};
use coffer_store::ReadTxn;
use coffer_wire::operation::{KmsOp, Operation, SecretsManagerOp as Sm};
use serde::Deserialize;
use serde::de::IgnoredAny;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, OnceLock, RwLock};

/// The owned parts of an HTTP request that authentication needs.
#[derive(Debug, Clone)]
pub struct RawRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub source_ip: Option<IpAddr>,
    /// Whether it arrived over TLS (`aws:SecureTransport`).
    pub secure: bool,
}

/// Maps a signature failure to the AWS JSON error a client sees.
pub fn json_error(e: &SigV4Error) -> AwsError {
    let code = match e {
        SigV4Error::MissingAuthenticationToken => ErrorCode::MissingAuthenticationToken,
        SigV4Error::Incomplete(_) | SigV4Error::PresignedUrlNotSupported => {
            ErrorCode::IncompleteSignature
        }
        SigV4Error::UnrecognizedClient => ErrorCode::UnrecognizedClient,
        SigV4Error::ExpiredToken => ErrorCode::ExpiredToken,
        SigV4Error::SignatureMismatch | SigV4Error::InvalidSignature(_) => {
            ErrorCode::InvalidSignature
        }
    };
    AwsError::new(code, e.message())
}

/// Why authentication failed: a signature problem (worded per protocol by the caller) or
/// an internal failure.
#[derive(Debug)]
pub enum AuthFailure {
    Signature(SigV4Error),
    Internal(AwsError),
}

impl AuthFailure {
    pub fn into_json(self) -> AwsError {
        match self {
            AuthFailure::Signature(e) => json_error(&e),
            AuthFailure::Internal(e) => e,
        }
    }
}

/// A verified request: who sent it and the region its credential scope names.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// Shared with the lookup cache, so a request does not copy the caller's policies.
    pub caller: Arc<Caller>,
    pub access_key_id: String,
    pub region: String,
}

/// The regions a credential scope may name: AWS's public, China and GovCloud regions.
pub const REGIONS: &[&str] = &[
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "cn-north-1",
    "cn-northwest-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-gov-east-1",
    "us-gov-west-1",
    "us-west-1",
    "us-west-2",
];

pub fn is_known_region(region: &str) -> bool {
    REGIONS.contains(&region)
}

/// Verifies a request's signature for `service` (`secretsmanager`, `kms`, `sts`).
pub fn authenticate(
    app: &App,
    iam: &Iam,
    req: &RawRequest,
    body: &[u8],
    service: &str,
    now_secs: i64,
) -> Result<Authenticated, AuthFailure> {
    let headers: Vec<(&str, &[u8])> =
        req.headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
    let parts = RequestParts {
        method: &req.method,
        path: &req.path,
        query: &req.query,
        headers: &headers,
        body,
    };
    let expect = Expectation { service, now_secs, region_is_valid: &is_known_region };
    let pre = prevalidate(&parts, &expect).map_err(AuthFailure::Signature)?;
    // Temporary credentials (`ASIA...`) need their session token; long-term keys take none.
    let found = if pre.access_key_id().starts_with("ASIA") {
        crate::sessions::lookup(app, iam, pre.access_key_id(), pre.session_token.as_deref())?
    } else {
        if pre.session_token.is_some() {
            return Err(AuthFailure::Signature(SigV4Error::UnrecognizedClient));
        }
        iam.lookup(app.store.as_ref(), pre.access_key_id()).map_err(AuthFailure::Internal)?
    };
    let Some(key) = found else {
        return Err(AuthFailure::Signature(SigV4Error::UnrecognizedClient));
    };
    pre.verify_cached(&parts, key.secret().expose().as_bytes(), iam.signing_keys())
        .map_err(AuthFailure::Signature)?;
    if !pre.access_key_id().starts_with("ASIA") {
        // GetAccessKeyLastUsed's answer: written apart from this request, at most hourly.
        let used = crate::iam::key_use::KeyUse {
            last_used_ms: now_secs * 1000,
            service: service.to_string(),
            region: pre.scope().region.clone(),
        };
        iam.note_key_use(&app.store, pre.access_key_id(), used);
    }
    Ok(Authenticated {
        caller: key.caller.in_partition(Partition::of_region(&pre.scope().region)),
        access_key_id: pre.access_key_id().to_string(),
        region: pre.scope().region.clone(),
    })
}

/// The secret (or `*`) a call acts on.
struct Target {
    arn: String,
    /// The account owning the resource.
    account: String,
    meta: Option<SecretMeta>,
}

/// The members of a request that authorization reads, typed: the resource it names and
/// the values its condition keys take. Decoded once from the validated body; a secret value
/// is only noted as present (`IgnoredAny`), never copied.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Requested {
    secret_id: Option<String>,
    name: Option<String>,
    description: Option<String>,
    kms_key_id: Option<String>,
    version_id: Option<String>,
    version_stage: Option<String>,
    version_stages: Option<Vec<String>>,
    force_delete_without_recovery: Option<bool>,
    recovery_window_in_days: Option<i64>,
    block_public_policy: Option<bool>,
    #[serde(rename = "RotationLambdaARN")]
    rotation_lambda_arn: Option<String>,
    rotate_immediately: Option<bool>,
    force_overwrite_replica_secret: Option<bool>,
    add_replica_regions: Option<Vec<ReplicaRegion>>,
    tags: Option<Vec<RequestTag>>,
    tag_keys: Option<Vec<String>>,
    secret_string: Option<IgnoredAny>,
    secret_binary: Option<IgnoredAny>,
    key_id: Option<String>,
    encryption_context: Option<BTreeMap<String, String>>,
    source_encryption_context: Option<BTreeMap<String, String>>,
    destination_encryption_context: Option<BTreeMap<String, String>>,
    pending_window_in_days: Option<i64>,
    target_key_id: Option<String>,
    alias_name: Option<String>,
    source_key_id: Option<String>,
    destination_key_id: Option<String>,
    // KMS's request condition keys (kms:Grant*, kms:*Algorithm, kms:KeySpec, ...).
    grantee_principal: Option<String>,
    retiring_principal: Option<String>,
    operations: Option<Vec<String>>,
    constraints: Option<RequestedConstraints>,
    encryption_algorithm: Option<String>,
    source_encryption_algorithm: Option<String>,
    destination_encryption_algorithm: Option<String>,
    signing_algorithm: Option<String>,
    message_type: Option<String>,
    mac_algorithm: Option<String>,
    key_spec: Option<String>,
    customer_master_key_spec: Option<String>,
    key_usage: Option<String>,
    key_pair_spec: Option<String>,
    // Multi-Region keys: where ReplicateKey replicates (`kms:ReplicaRegion`) and where
    // UpdatePrimaryRegion moves the primary (`kms:PrimaryRegion`).
    replica_region: Option<String>,
    primary_region: Option<String>,
}

/// CreateGrant's `Constraints`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RequestedConstraints {
    encryption_context_subset: Option<BTreeMap<String, String>>,
    encryption_context_equals: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ReplicaRegion {
    region: Option<String>,
}

/// A tag as Secrets Manager (`Key`, `Value`) or KMS (`TagKey`, `TagValue`) sends it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RequestTag {
    #[serde(alias = "TagKey")]
    key: Option<String>,
    #[serde(alias = "TagValue")]
    value: Option<String>,
}

impl Requested {
    fn has_value(&self) -> bool {
        self.secret_string.is_some() || self.secret_binary.is_some()
    }
}

/// The scope a SecretId is looked up in: the caller's, or for a full or partial ARN of
/// another account in the same region, that account's (a cross-account call, which the
/// owner's resource policy must allow).
pub(crate) fn lookup_scope(id: &str, caller_scope: &Scope) -> Scope {
    let parts: Vec<&str> = id.splitn(7, ':').collect();
    let foreign_account = parts.len() == 7
        && parts[0] == "arn"
        && parts[2] == "secretsmanager"
        && parts[3] == caller_scope.region
        && parts[4] != caller_scope.account
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit());
    if foreign_account { Scope::new(parts[4], &caller_scope.region) } else { caller_scope.clone() }
}

fn find_secret(app: &App, scope: &Scope, id: &str) -> Result<Option<SecretMeta>, AwsError> {
    app.read(|tx| crate::secrets::resolve(tx, scope, id))
}

/// The ARN authorization names for a SecretId in `owner`'s scope: the secret's own, or
/// for one that does not exist the ARN it would have, so a caller who may not read
/// learns nothing.
fn target_of(owner: &Scope, id: &str, meta: Option<SecretMeta>) -> Target {
    let arn = match &meta {
        Some(m) => m.arn.clone(),
        None if id.starts_with("arn:") => id.to_string(),
        None => owner.arn("secretsmanager", &format!("secret:{id}")),
    };
    Target { arn, account: owner.account.clone(), meta }
}

fn secret_target(
    app: &App,
    scope: &Scope,
    op: Sm,
    requested: &Requested,
) -> Result<(Target, Scope), AwsError> {
    let anything = || Target { arn: "*".to_string(), account: scope.account.clone(), meta: None };
    if op == Sm::CreateSecret {
        let Some(name) = &requested.name else { return Ok((anything(), scope.clone())) };
        let arn = names::new_secret_arn(scope, name, &mut rand::rng());
        return Ok((Target { arn, account: scope.account.clone(), meta: None }, scope.clone()));
    }
    let Some(id) = requested.secret_id.as_deref() else {
        return Ok((anything(), scope.clone()));
    };
    let owner = lookup_scope(id, scope);
    let meta = find_secret(app, &owner, id)?;
    Ok((target_of(&owner, id, meta), owner))
}

/// `--dev` authorizes nothing within an account, but another account's secret is reached
/// only as on AWS: through its resource policy (`action` on the secret `id` names in
/// `owner`). The caller is its account's root, whose identity allows everything, so the
/// owner's resource policy alone decides; a denial quotes `id` as given.
pub(crate) fn dev_cross_account(
    caller_account: &str,
    region: &str,
    action: &str,
    owner: &Scope,
    id: &str,
    meta: Option<&SecretMeta>,
) -> Result<(), AwsError> {
    Gate::account_root(caller_account, region).secret(action, owner, id, meta)
}

/// The request context every call shares: who is calling, from where, and when.
fn base_context(
    caller: &Caller,
    region: &str,
    source_ip: Option<IpAddr>,
    secure: bool,
    now_ms: i64,
) -> Context {
    let p = &caller.principal;
    let mut ctx = Context::default();
    match &p.role_arn {
        // A role's session: AWS sets the role's ARN as aws:PrincipalArn, no username.
        Some(role_arn) => {
            ctx.set("aws:PrincipalArn", role_arn.clone());
            ctx.set("aws:PrincipalType", "AssumedRole");
        }
        // A federated user (GetFederationToken): its own ARN, no username (AWS's global
        // condition keys: aws:username is absent for federated users).
        None if p.is_federated_user() => {
            ctx.set("aws:PrincipalArn", p.arn.clone());
            ctx.set("aws:PrincipalType", "FederatedUser");
        }
        None => {
            ctx.set("aws:PrincipalArn", p.arn.clone());
            ctx.set("aws:PrincipalType", "User");
            ctx.set("aws:username", p.name.clone());
        }
    }
    ctx.set("aws:PrincipalAccount", p.account.clone());
    ctx.set("aws:userid", p.user_id.clone());
    // The caller calls us itself; where Secrets Manager uses a key for it, `kms_context`
    // says true (review 13, finding 05: without the key, a Deny on `Bool aws:ViaAWSService
    // false`, AWS's way of keeping a key for use through services, never applied).
    ctx.set("aws:ViaAWSService", "false");
    if let Some(issued_ms) = caller.session_issued_ms {
        // What AWS's context holds for temporary credentials, and a long-term key's lacks
        // (review 13, finding 03): MFA absent (Coffer verifies no MFA device), so a Deny
        // on `Bool aws:MultiFactorAuthPresent false` refuses sessions; and when they were
        // issued, so AWS's way of revoking a role's sessions (a Deny on
        // `DateLessThan aws:TokenIssueTime`) refuses the older ones.
        ctx.set("aws:MultiFactorAuthPresent", "false");
        ctx.set("aws:TokenIssueTime", format_iso8601(issued_ms));
    }
    for (k, v) in &caller.principal_tags {
        ctx.set(&format!("aws:PrincipalTag/{k}"), v.clone());
    }
    ctx.set("aws:CurrentTime", format_iso8601(now_ms));
    ctx.set("aws:EpochTime", (now_ms / 1000).to_string());
    ctx.set("aws:RequestedRegion", region);
    ctx.set("aws:SecureTransport", if secure { "true" } else { "false" });
    if let Some(ip) = source_ip {
        ctx.set("aws:SourceIp", ip.to_string());
    }
    ctx
}

/// Adds the condition keys of the secret a call acts on (its ARN, tags and type).
fn resource_context(ctx: &mut Context, id_given: Option<&str>, target: &Target) {
    if let Some(meta) = &target.meta {
        ctx.set("secretsmanager:SecretId", meta.arn.clone());
        for tag in meta.tags.iter().flatten() {
            ctx.set(&format!("secretsmanager:ResourceTag/{}", tag.key), tag.value.clone());
            ctx.set(&format!("aws:ResourceTag/{}", tag.key), tag.value.clone());
        }
        if let Some(kind) = &meta.secret_type {
            ctx.set("secretsmanager:resource/Type", kind.clone());
        }
    } else if let Some(id) = id_given {
        ctx.set("secretsmanager:SecretId", id);
    }
    if target.arn != "*" {
        ctx.set("aws:ResourceAccount", target.account.clone());
    }
}

/// Adds the Secrets Manager condition keys a request carries.
fn request_context(ctx: &mut Context, requested: &Requested) {
    let r = requested;
    let texts = [
        ("secretsmanager:Name", &r.name),
        ("secretsmanager:Description", &r.description),
        ("secretsmanager:KmsKeyId", &r.kms_key_id),
        ("secretsmanager:VersionId", &r.version_id),
        ("secretsmanager:RotationLambdaARN", &r.rotation_lambda_arn),
    ];
    for (key, value) in texts {
        if let Some(v) = value {
            ctx.set(key, v.clone());
        }
    }
    let flags = [
        ("secretsmanager:ForceDeleteWithoutRecovery", r.force_delete_without_recovery),
        ("secretsmanager:BlockPublicPolicy", r.block_public_policy),
        ("secretsmanager:RotateImmediately", r.rotate_immediately),
        ("secretsmanager:ForceOverwriteReplicaSecret", r.force_overwrite_replica_secret),
    ];
    for (key, value) in flags {
        if let Some(v) = value {
            ctx.set(key, v.to_string());
        }
    }
    if let Some(days) = r.recovery_window_in_days {
        ctx.set("secretsmanager:RecoveryWindowInDays", days.to_string());
    }
    if let Some(key) = r.kms_key_id.as_deref().filter(|k| k.starts_with("arn:")) {
        ctx.set("secretsmanager:KmsKeyArn", key);
    }
    let stages: Vec<String> =
        r.version_stage.iter().chain(r.version_stages.iter().flatten()).cloned().collect();
    if !stages.is_empty() {
        ctx.set_all("secretsmanager:VersionStage", stages);
    }
    if let Some(regions) = &r.add_replica_regions {
        let list = regions.iter().filter_map(|r| r.region.clone()).collect();
        ctx.set_all("secretsmanager:AddReplicaRegions", list);
    }
    if let Some(tags) = &r.tags {
        let mut keys = Vec::new();
        for tag in tags {
            // A tag without `Value` is stored with the empty value (Secrets Manager's model
            // does not require it): it is that tag to every condition, or a Deny on its key
            // passed a request that overwrote the tag (review 16, finding 01). One without
            // `Key` is refused before any change.
            if let Some(k) = &tag.key {
                ctx.set(&format!("aws:RequestTag/{k}"), tag.value.clone().unwrap_or_default());
                keys.push(k.clone());
            }
        }
        ctx.set_all("aws:TagKeys", keys);
    }
    if let Some(keys) = &r.tag_keys {
        ctx.set_all("aws:TagKeys", keys.clone());
    }
}

/// A policy that denies every action to everyone: what a stored policy that no longer
/// parses is taken for. Failing open (ignoring it, or applying a default) would turn a
/// typo into a grant.
fn deny_everything() -> Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY
        .get_or_init(|| {
            Policy::parse(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":"*","Action":"*","Resource":"*"}]}"#,
                PolicyKind::Resource,
            )
            .expect("the deny-everything policy parses")
        })
        .clone()
}

/// Parses a stored resource or key policy; one that does not parse denies everything.
fn stored_policy(text: &str, what: &str) -> Policy {
    match Policy::parse(text, PolicyKind::Resource) {
        Ok(p) => p,
        Err(problems) => {
            tracing::error!(?problems, "a stored {what} does not parse; it denies every request");
            deny_everything()
        }
    }
}

fn resource_policy(meta: Option<&SecretMeta>) -> Option<Policy> {
    let text = meta?.resource_policy.as_deref()?;
    Some(stored_policy(text, "resource policy"))
}

/// Decides `action` on `resource`; a denial quotes `quoted` (the SecretId as the caller
/// gave it, so the message tells nothing of whether or where the secret exists).
fn decide(
    caller: &Caller,
    action: &str,
    resource: &str,
    resource_account: &str,
    context: &Context,
    resource_policy: Option<&Policy>,
    quoted: &str,
) -> Result<(), AwsError> {
    let req = Request { principal: &caller.principal, action, resource, resource_account, context };
    let decision = evaluate(&req, &caller.policies, resource_policy);
    match decision.denial_message(&Request { resource: quoted, ..req }) {
        None => match session_allows(caller, &Request { resource: quoted, ..req }, &req) {
            Err(refused) if names_federated_session(caller, &req, resource_policy) => {
                // AWS: a resource policy naming a federated user session's ARN grants it
                // after the session policy is applied, unlimited by it (an explicit deny
                // in the session policy still refuses).
                match session_denies(caller, &req) {
                    true => Err(refused),
                    false => Ok(()),
                }
            }
            decided => decided,
        },
        Some(message) => Err(AwsError::new(ErrorCode::AccessDenied, message)),
    }
}

/// Whether `resource_policy` allows the request to the federated user the caller is,
/// named by its own ARN (not its account, nor anyone).
fn names_federated_session(
    caller: &Caller,
    req: &Request<'_>,
    resource_policy: Option<&Policy>,
) -> bool {
    let (Some(policy), true) = (resource_policy, caller.principal.is_federated_user()) else {
        return false;
    };
    // Matched as a principal known only by its ARN (no unique id) and with no identity
    // policy: a statement naming its account only would need an identity Allow, so only
    // one naming the federated user (or everyone) allows.
    let by_arn =
        coffer_auth::principal::Principal { user_id: String::new(), ..caller.principal.clone() };
    let allows = |principal: &coffer_auth::principal::Principal| {
        let req = Request { principal, ..*req };
        matches!(evaluate(&req, &[], Some(policy)), coffer_auth::policy::Decision::Allow)
    };
    // A statement for everyone (`*`) allows another federated user as well: only one that
    // names this one grants past its session policy.
    let someone_else = coffer_auth::principal::Principal {
        arn: format!("{}\u{0}other", by_arn.arn),
        ..by_arn.clone()
    };
    allows(&by_arn) && !allows(&someone_else)
}

/// Whether the caller's session policy explicitly denies the request.
fn session_denies(caller: &Caller, req: &Request<'_>) -> bool {
    let Some(session) = &caller.session_policies else { return false };
    let req = Request { resource_account: &caller.principal.account, ..*req };
    matches!(evaluate(&req, session, None), coffer_auth::policy::Decision::ExplicitDeny(_))
}

/// A session's permissions are its identity's intersected with its session policies: what
/// the policies allowed must be allowed by one of the session policies too (inline or
/// managed, evaluated together: any explicit deny among them refuses).
fn session_allows(
    caller: &Caller,
    quoted: &Request<'_>,
    req: &Request<'_>,
) -> Result<(), AwsError> {
    let Some(session) = &caller.session_policies else { return Ok(()) };
    let req = Request { resource_account: &caller.principal.account, ..*req };
    match evaluate(&req, session, None) {
        coffer_auth::policy::Decision::Allow => Ok(()),
        coffer_auth::policy::Decision::ExplicitDeny(_) => Err(AwsError::new(
            ErrorCode::AccessDenied,
            format!(
                "User: {} is not authorized to perform: {} on resource: {} with an explicit deny in a session policy",
                quoted.principal.arn, quoted.action, quoted.resource
            ),
        )),
        coffer_auth::policy::Decision::NoAllow(_) => Err(AwsError::new(
            ErrorCode::AccessDenied,
            format!(
                "User: {} is not authorized to perform: {} on resource: {} because no session policy allows the {} action",
                quoted.principal.arn, quoted.action, quoted.resource, quoted.action
            ),
        )),
    }
}

/// The authorization a handler still owes once it knows what it touches (see the module
/// documentation). `None` in a call's context means `--dev`: nothing is authorized.
pub struct Gate {
    caller: Arc<Caller>,
    /// The condition keys every decision of the call shares (who, from where, when),
    /// built once, on the first decision whose policies read a condition key (a call
    /// whose policies read none, and whose KMS decisions are remembered, builds none).
    /// Each decision's context is laid over it ([`Context::over`]) rather than copying it.
    base: OnceLock<Arc<Context>>,
    /// What [`Gate::base`] is built from.
    origin: Origin,
    /// What was decided about the secret the request names, if it names one.
    secret: Option<SecretDecision>,
}

/// The decision on the secret a request names, kept so that the handler uses the secret
/// authorization resolved ([`Gate::resolved`], in the same read snapshot) and decides again
/// when its write transaction sees the secret otherwise ([`Gate::confirm`]): a resource
/// policy or tag changed between authorization and the write cannot be missed.
struct SecretDecision {
    action: &'static str,
    owner: Scope,
    id: String,
    /// The request's own condition keys (its members), without the base (caller, time,
    /// place: [`Gate::base`]) and without the secret's, which are added from the secret as
    /// it is decided on.
    request: Context,
    meta: Option<SecretMeta>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate").field("caller", &self.caller.principal.arn).finish()
    }
}

/// The request's part of the base context: the region it was signed for, where it came
/// from and when.
struct Origin {
    region: String,
    source_ip: Option<IpAddr>,
    secure: bool,
    now_ms: i64,
}

/// Whether any of the policies a decision evaluates reads a condition key (a condition,
/// or a policy variable): when none does, the decision is the same whatever the context
/// holds, and none needs building.
fn reads_context(caller: &Caller, resource_policy: Option<&Policy>) -> bool {
    !policies_read_only(caller, resource_policy, |_| false)
}

/// Whether every policy a decision evaluates (the caller's identity policies, its session
/// policy, and `other`: the resource's or the key's) reads only the condition keys
/// `allowed` accepts, and no policy variable.
pub(crate) fn policies_read_only(
    caller: &Caller,
    other: Option<&Policy>,
    allowed: impl Fn(&str) -> bool,
) -> bool {
    caller
        .policies
        .iter()
        .chain(caller.session_policies.iter().flatten())
        .chain(other)
        .all(|p| p.reads_only(&allowed))
}

impl Gate {
    /// `--dev`: the gate of a call the root of `account` makes on another account's secret
    /// (its resource policy let the call in, `dev_cross_account`). The root's identity
    /// allows everything, so what the call opens or seals is decided by the policy of the
    /// key that seals it, as on AWS: a key policy that does not name the caller's account
    /// (the AWS managed key's, whose `kms:CallerAccount` is the owner's) keeps it out, on
    /// every route (an old version, a batch, UpdateSecret re-encrypting under a new key).
    /// No source address or transport is known here: conditions on them do not match.
    pub(crate) fn account_root(account: &str, region: &str) -> Gate {
        static ROOT: OnceLock<Policy> = OnceLock::new();
        let root = ROOT.get_or_init(|| {
            let text = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
            Policy::parse(text, PolicyKind::Identity).expect("the allow-everything policy parses")
        });
        let principal = coffer_auth::principal::Principal {
            arn: coffer_auth::principal::account_root_arn(Partition::of_region(region), account),
            account: account.to_string(),
            user_id: account.to_string(),
            name: "root".to_string(),
            role_arn: None,
        };
        let origin = Origin {
            region: region.to_string(),
            source_ip: None,
            secure: false,
            now_ms: crate::clock::now_ms(),
        };
        Gate {
            caller: Arc::new(Caller::new(principal, vec![root.clone()])),
            base: OnceLock::new(),
            origin,
            secret: None,
        }
    }

    /// The base context, built on first use.
    fn base(&self) -> &Arc<Context> {
        self.base.get_or_init(|| {
            let o = &self.origin;
            Arc::new(base_context(&self.caller, &o.region, o.source_ip, o.secure, o.now_ms))
        })
    }

    /// The caller's ARN and unique id (KMS grants name their grantee and retiring
    /// principal by them).
    pub fn caller_ids(&self) -> (&str, &str) {
        (&self.caller.principal.arn, &self.caller.principal.user_id)
    }

    fn context(&self) -> Context {
        Context::over(self.base().clone())
    }

    /// `kms:<action>` on `key` when Secrets Manager uses it for the caller, with the
    /// encryption context it uses (`SecretARN`, `SecretVersionId`): so `kms:ViaService`
    /// and `kms:EncryptionContext:*` conditions hold as on AWS.
    pub fn kms_via_secrets_manager(
        &self,
        (app, tx): (&App, &dyn ReadTxn),
        action: &str,
        key: &Arc<KeyRecord>,
        encryption_context: &BTreeMap<String, String>,
    ) -> Result<(), AwsError> {
        // The call's region (`aws:RequestedRegion`), the one value of the memo's key that
        // is the request's rather than the caller's or the key's.
        let region = self.origin.region.as_str();
        if crate::kms_decisions::allowed(&self.caller, key, action, region) {
            return Ok(());
        }
        let context = kms_context(self.context(), &self.caller, Some(&key.scope.region));
        let call = KmsCall {
            encryption_context: Some(encryption_context),
            algorithm: Some(SYMMETRIC_DEFAULT),
            ..KmsCall::default()
        };
        let seen = KmsKey::seen_by(&self.caller, app, tx, key);
        let memo = crate::kms_decisions::may_remember(&self.caller, seen.policy.as_deref());
        let grants = Grants::In(tx, key);
        let allowed =
            decide_kms_by(&self.caller, action, &seen, &key.scope.account, context, &call, grants)?;
        if memo && allowed == Allowed::ByPolicy {
            crate::kms_decisions::remember(&self.caller, key, action, region);
        }
        Ok(())
    }

    /// `kms:<action>` on `key` called through the KMS API, with the request's own kms keys.
    pub fn kms_direct(
        &self,
        (app, tx): (&App, &dyn ReadTxn),
        action: &str,
        key: &KeyRecord,
        call: &KmsCall<'_>,
    ) -> Result<(), AwsError> {
        let context = kms_context(self.context(), &self.caller, None);
        let seen = KmsKey::seen_by(&self.caller, app, tx, key);
        let grants = Grants::In(tx, key);
        decide_kms(&self.caller, action, &seen, &key.scope.account, context, call, grants)
    }

    /// KMS's policy lockout safety check: whether the key policy `text` (as it will be
    /// stored) on `key` would still let the caller call PutKeyPolicy on it. A policy that
    /// does not parse is left to the policy checks, which refuse it in their own words.
    ///
    /// A session's own policy is not part of it: AWS documents the check as the key
    /// policy allowing "the calling principal", for the key to stay manageable, and a
    /// session policy narrows only that one session: the role (its other sessions, or
    /// this one's successor) can still manage the key, so the key is not locked out. No
    /// source says AWS counts the session policy; counting it would refuse, without
    /// BypassPolicyLockoutSafetyCheck, every custom key policy a narrowed session makes.
    pub fn key_policy_keeps_caller(&self, text: &str, key: &KeyRecord) -> bool {
        let Ok(policy) = Policy::parse(text, PolicyKind::Resource) else { return true };
        let context = kms_context(self.context(), &self.caller, None);
        let req = Request {
            principal: &self.caller.principal,
            action: "kms:PutKeyPolicy",
            resource: &key.arn,
            resource_account: &key.scope.account,
            context: &context,
        };
        evaluate_key_policy(&req, &self.caller.policies, Some(&policy)).is_allowed()
    }

    /// `secretsmanager:<action>` on the secret `id` names in `owner`'s scope (`meta` when
    /// it exists), with the secret's resource policy and tags.
    pub fn secret(
        &self,
        action: &str,
        owner: &Scope,
        id: &str,
        meta: Option<&SecretMeta>,
    ) -> Result<(), AwsError> {
        self.secret_as_if(action, owner, id, meta, &[])
    }

    /// [`Gate::secret`] for an action the call carries out on another secret than the one
    /// it names, with the request keys the same action would carry if called for it
    /// (`request`): ReplicateSecretToRegions' overwrite deletes a secret at once, which is
    /// DeleteSecret with `ForceDeleteWithoutRecovery`, so a Deny on that holds there too.
    pub fn secret_as_if(
        &self,
        action: &str,
        owner: &Scope,
        id: &str,
        meta: Option<&SecretMeta>,
        request: &[(&str, &str)],
    ) -> Result<(), AwsError> {
        let target = target_of(owner, id, meta.cloned());
        let policy = resource_policy(target.meta.as_ref());
        let mut context = Context::default();
        if reads_context(&self.caller, policy.as_ref()) {
            context = self.context();
            resource_context(&mut context, Some(id), &target);
            for (key, value) in request {
                context.set(key, *value);
            }
        }
        decide(&self.caller, action, &target.arn, &target.account, &context, policy.as_ref(), id)
    }

    /// The secret authorization resolved for the SecretId `id` in `scope`; the handler of a
    /// read-only call runs in the same snapshot, so it need not look the secret up again.
    pub fn resolved(&self, scope: &Scope, id: &str) -> Option<&SecretMeta> {
        let decided = self.secret.as_ref()?;
        (decided.id == id && &decided.owner == scope).then_some(decided.meta.as_ref()).flatten()
    }

    /// Decides the call's action again on `meta` as a write transaction sees it, unless it
    /// is the secret authorization decided on: the decision then holds in the snapshot the
    /// change is made in.
    pub fn confirm(&self, meta: &SecretMeta) -> Result<(), AwsError> {
        let Some(decided) = &self.secret else { return Ok(()) };
        if decided.meta.as_ref() == Some(meta) {
            return Ok(());
        }
        let target = target_of(&decided.owner, &decided.id, Some(meta.clone()));
        let mut context = decided.request.clone().laid_over(self.base().clone());
        resource_context(&mut context, Some(&decided.id), &target);
        let policy = resource_policy(target.meta.as_ref());
        let (arn, account) = (&target.arn, &target.account);
        decide(&self.caller, decided.action, arn, account, &context, policy.as_ref(), &decided.id)
    }

    /// `action` on a resource of another service (a Lambda function), from identity
    /// policies alone: RotateSecret needs `lambda:InvokeFunction` on its function.
    pub fn resource(&self, action: &str, arn: &str) -> Result<(), AwsError> {
        let context = self.context();
        let account = arn.split(':').nth(4).filter(|a| !a.is_empty());
        let account =
            account.map(str::to_owned).unwrap_or_else(|| self.caller.principal.account.clone());
        decide(&self.caller, action, arn, &account, &context, None, arn)
    }

    /// `action` on no particular resource (`*`), from identity policies alone.
    pub fn anything(&self, action: &str) -> Result<(), AwsError> {
        let context = self.context();
        let account = self.caller.principal.account.clone();
        decide(&self.caller, action, "*", &account, &context, None, "*")
    }
}

/// What authorization grants a call: the scope its handler acts in (the secret owner's,
/// for an allowed cross-account call) and the [`Gate`] the handler decides the rest with
/// (the keys of what it opens or seals, each secret of a batch).
pub struct Authorized {
    pub scope: Scope,
    pub gate: Arc<Gate>,
}

/// Authorizes `action` on `resource` (an ARN of the caller's own account: IAM's users,
/// roles and policies) from the caller's identity policies, with the base request
/// context and `extra` condition keys (`iam:PolicyARN`, ...).
pub fn authorize_action(
    who: &Authenticated,
    action: &str,
    resource: &str,
    raw: &RawRequest,
    extra: &[(&str, String)],
) -> Result<(), AwsError> {
    let now_ms = crate::clock::now_ms();
    let mut context = base_context(&who.caller, &who.region, raw.source_ip, raw.secure, now_ms);
    // aws:TagKeys holds every tag key of the request (a multi-valued key): set as one list,
    // not as a single-valued key given twice (which fails closed as ambiguous).
    let mut tag_keys = Vec::new();
    for (key, value) in extra {
        if key.eq_ignore_ascii_case("aws:TagKeys") {
            tag_keys.push(value.clone());
        } else {
            context.set(key, value.clone());
        }
    }
    if !tag_keys.is_empty() {
        context.set_all("aws:TagKeys", tag_keys);
    }
    let account = &who.caller.principal.account;
    // The resource is built from the names the request gave, unvalidated yet: its denial
    // quotes it cut, as every error quotes what the client sent (review 8, finding 04).
    let quoted = coffer_auth::sigv4::echo(resource);
    // The caller's Deny statements already read IAM and STS ARNs in the request's
    // partition (`Caller::in_partition`; review 15, finding 02).
    decide(&who.caller, action, resource, account, &context, None, &quoted)
}

/// Decides whether the caller may assume a role: `action` (`sts:AssumeRole`, and
/// `sts:TagSession` when session tags are passed) on the role, from the
/// caller's identity policies and the role's trust policy (as a resource policy: a
/// trust policy naming the caller or its role lets it in alone within the account; one
/// naming the account, or another account's caller, needs an identity Allow too).
pub fn authorize_assume(
    who: &Authenticated,
    raw: &RawRequest,
    action: &str,
    role_arn: &str,
    role_account: &str,
    trust: &Policy,
    extra: &[(String, String)],
) -> Result<(), AwsError> {
    let now_ms = crate::clock::now_ms();
    let mut context = base_context(&who.caller, &who.region, raw.source_ip, raw.secure, now_ms);
    // aws:TagKeys holds every tag key of the request (a multi-valued key), not the last;
    // so does sts:TransitiveTagKeys every key the request sets as transitive (review 13,
    // finding 02: it was missing, so a trust policy's limit on them never applied).
    const MULTI_VALUED: [&str; 2] = ["aws:TagKeys", "sts:TransitiveTagKeys"];
    let mut multi: [Vec<String>; 2] = Default::default();
    for (key, value) in extra {
        match MULTI_VALUED.iter().position(|m| key.eq_ignore_ascii_case(m)) {
            Some(i) => multi[i].push(value.clone()),
            None => context.set(key, value.clone()),
        }
    }
    for (key, values) in MULTI_VALUED.into_iter().zip(multi) {
        if !values.is_empty() {
            context.set_all(key, values);
        }
    }
    // The role is global: the Deny statements of the trust policy, as the caller's (read so
    // by `Caller::in_partition`), read IAM and STS ARNs in the partition the request names
    // it in (review 15, finding 02).
    let caller = &who.caller;
    let trust = trust.with_global_arns_in(caller.principal.partition());
    // A trust policy is mandatory, as a key policy is: without its Allow nobody gets in,
    // whatever the caller's identity policies say.
    let req = Request {
        principal: &caller.principal,
        action,
        resource: role_arn,
        resource_account: role_account,
        context: &context,
    };
    match evaluate_key_policy(&req, &caller.policies, Some(&trust)).denial_message(&req) {
        None => session_allows(caller, &req, &req),
        Some(message) => Err(AwsError::new(ErrorCode::AccessDenied, message)),
    }
}

/// Authorizes a validated request of `who` in `scope`; `secure` says whether it came over
/// TLS (`aws:SecureTransport`).
pub fn authorize(
    app: &App,
    who: &Authenticated,
    scope: &Scope,
    op: Operation,
    requested: &Requested,
    source_ip: Option<IpAddr>,
    secure: bool,
) -> Result<Authorized, AwsError> {
    let now_ms = crate::clock::now_ms();
    let origin = Origin { region: who.region.clone(), source_ip, secure, now_ms };
    let mut gate = Gate { caller: who.caller.clone(), base: OnceLock::new(), origin, secret: None };
    match op {
        Operation::SecretsManager(op) => {
            let (target, owner) = secret_target(app, scope, op, requested)?;
            let id_given = requested.secret_id.as_deref();
            // The request's own keys, apart from the base (their names never meet: see
            // `Context::laid_over`), kept for `Gate::confirm`.
            let mut request_only = Context::default();
            request_context(&mut request_only, requested);
            let policy = resource_policy(target.meta.as_ref());
            // Policies that read no condition key decide alike on any context: the
            // common identity policy without conditions builds none.
            let context = if reads_context(&who.caller, policy.as_ref()) {
                let mut context = request_only.clone().laid_over(gate.base().clone());
                resource_context(&mut context, id_given, &target);
                context
            } else {
                Context::default()
            };
            let quoted = id_given.unwrap_or(&target.arn);
            decide(
                &who.caller,
                op.iam_action(),
                &target.arn,
                &target.account,
                &context,
                policy.as_ref(),
                quoted,
            )?;
            for action in implied_actions(op, requested) {
                let (arn, account) = (&target.arn, &target.account);
                decide(&who.caller, action, arn, account, &context, policy.as_ref(), quoted)?;
            }
            let kms_checks = kms_key_checks(op, requested, target.meta.as_ref());
            if !kms_checks.is_empty() {
                let via = kms_context(gate.context(), &who.caller, Some(&owner.region));
                for (reference, actions) in kms_checks {
                    let key = resolve_kms_key(app, &who.caller, &owner, &reference)?;
                    let call = KmsCall::naming(&reference, None);
                    if key.customer_managed {
                        for action in actions {
                            decide_kms(
                                &who.caller,
                                action,
                                &key,
                                &owner.account,
                                via.clone(),
                                &call,
                                key.grants(app),
                            )?;
                        }
                    }
                }
            }
            gate.secret = id_given.map(|id| SecretDecision {
                action: op.iam_action(),
                owner: owner.clone(),
                id: id.to_string(),
                request: request_only,
                meta: target.meta,
            });
            Ok(Authorized { scope: owner, gate: Arc::new(gate) })
        }
        Operation::Kms(op) => {
            let mut context = kms_context(gate.context(), &who.caller, None);
            request_context(&mut context, requested);
            kms_request_context(&mut context, op, requested);
            if let Some(days) = requested.pending_window_in_days {
                context.set("kms:ScheduleKeyDeletionPendingWindowInDays", days.to_string());
            }
            authorize_kms(app, who, scope, op, requested, &context)?;
            // The handler decides again on the key a ciphertext names: with the same keys.
            gate.base = OnceLock::from(Arc::new(context));
            Ok(Authorized { scope: scope.clone(), gate: Arc::new(gate) })
        }
        // LookupEvents names no resource; STS's GetCallerIdentity needs no permission.
        Operation::CloudTrail(_) => {
            let context = gate.context();
            decide(&who.caller, op.iam_action(), "*", &scope.account, &context, None, "*")?;
            Ok(Authorized { scope: scope.clone(), gate: Arc::new(gate) })
        }
        Operation::Sts(_) => Ok(Authorized { scope: scope.clone(), gate: Arc::new(gate) }),
        // Authorized where it is answered (`iam_api`).
        Operation::Iam(_) => Err(AwsError::internal()),
    }
}

/// The KMS condition keys a request carries that hold for every key it names (AWS's
/// "KMS condition keys"): the grant CreateGrant asks for (`kms:GrantOperations`,
/// `kms:GranteePrincipal`, `kms:RetiringPrincipal`, `kms:GrantConstraintType`,
/// `kms:GrantIsForAWSResource`), the algorithms and message type of Sign/Verify and
/// GenerateMac/VerifyMac, the spec and usage CreateKey asks for, and
/// GenerateDataKeyPair's `kms:DataKeyPairSpec`. Left unset, a condition on them could
/// never match: an Allow with `ForAllValues` would hold vacuously, a Deny never apply.
/// (`kms:EncryptionAlgorithm` is per key: [`KmsCall::algorithm`].)
fn kms_request_context(ctx: &mut Context, op: KmsOp, r: &Requested) {
    if op == KmsOp::CreateGrant {
        ctx.set_all("kms:GrantOperations", r.operations.clone().unwrap_or_default());
        if let Some(grantee) = &r.grantee_principal {
            ctx.set("kms:GranteePrincipal", grantee.clone());
        }
        if let Some(retiring) = &r.retiring_principal {
            ctx.set("kms:RetiringPrincipal", retiring.clone());
        }
        let types: Vec<String> = r
            .constraints
            .iter()
            .flat_map(|c| {
                [
                    c.encryption_context_equals.as_ref().map(|_| "EncryptionContextEquals"),
                    c.encryption_context_subset.as_ref().map(|_| "EncryptionContextSubset"),
                ]
            })
            .flatten()
            .map(str::to_string)
            .collect();
        if !types.is_empty() {
            ctx.set_all("kms:GrantConstraintType", types);
        }
    }
    // Coffer's services never make grants for a caller: every grant is the caller's own.
    if matches!(op, KmsOp::CreateGrant | KmsOp::ListGrants | KmsOp::RevokeGrant) {
        ctx.set("kms:GrantIsForAWSResource", "false");
    }
    if matches!(op, KmsOp::Sign | KmsOp::Verify) {
        if let Some(algorithm) = &r.signing_algorithm {
            ctx.set("kms:SigningAlgorithm", algorithm.clone());
        }
        ctx.set("kms:MessageType", r.message_type.clone().unwrap_or_else(|| "RAW".into()));
    }
    if matches!(op, KmsOp::GenerateMac | KmsOp::VerifyMac)
        && let Some(algorithm) = &r.mac_algorithm
    {
        ctx.set("kms:MacAlgorithm", algorithm.clone());
    }
    if op == KmsOp::CreateKey {
        let spec = r.key_spec.as_ref().or(r.customer_master_key_spec.as_ref());
        ctx.set("kms:KeySpec", spec.cloned().unwrap_or_else(|| "SYMMETRIC_DEFAULT".into()));
        ctx.set("kms:KeyUsage", r.key_usage.clone().unwrap_or_else(|| "ENCRYPT_DECRYPT".into()));
    }
    if op == KmsOp::ReplicateKey
        && let Some(region) = &r.replica_region
    {
        ctx.set("kms:ReplicaRegion", region.clone());
    }
    if op == KmsOp::UpdatePrimaryRegion
        && let Some(region) = &r.primary_region
    {
        ctx.set("kms:PrimaryRegion", region.clone());
    }
    if matches!(op, KmsOp::GenerateDataKeyPair | KmsOp::GenerateDataKeyPairWithoutPlaintext)
        && let Some(spec) = &r.key_pair_spec
    {
        ctx.set("kms:DataKeyPairSpec", spec.clone());
    }
}

/// The encryption algorithm a request of `op` uses, as `kms:EncryptionAlgorithm` sees it:
/// the one it names, or `SYMMETRIC_DEFAULT`, the default of every operation that takes one
/// (so a Deny on it is not escaped by leaving the parameter out). `None` for operations
/// that encrypt nothing.
fn encryption_algorithm(op: KmsOp, named: Option<&str>) -> Option<String> {
    let encrypts = matches!(
        op,
        KmsOp::Encrypt
            | KmsOp::Decrypt
            | KmsOp::ReEncrypt
            | KmsOp::GenerateDataKey
            | KmsOp::GenerateDataKeyWithoutPlaintext
            | KmsOp::GenerateDataKeyPair
            | KmsOp::GenerateDataKeyPairWithoutPlaintext
    );
    encrypts.then(|| named.unwrap_or(SYMMETRIC_DEFAULT).to_string())
}

/// `kms:EncryptionAlgorithm`'s value when a request leaves it out.
pub const SYMMETRIC_DEFAULT: &str = "SYMMETRIC_DEFAULT";

/// The grant a CreateGrant request asks for, as a grant that allows CreateGrant must
/// cover it (only the same or fewer operations, equally strict or stricter constraints).
#[derive(Debug, Clone, Copy)]
pub struct GrantAsk<'a> {
    pub operations: &'a [String],
    pub constraints: Option<&'a coffer_kms::grants::GrantConstraints>,
}

/// The request's condition keys that concern a KMS key: the encryption context it uses and
/// the alias it named the key by (`kms:EncryptionContext:*`, `kms:EncryptionContextKeys`,
/// `kms:RequestAlias`), the encryption algorithm it uses with this key, and the grant it
/// asks for (CreateGrant).
#[derive(Debug, Default, Clone, Copy)]
pub struct KmsCall<'a> {
    pub encryption_context: Option<&'a BTreeMap<String, String>>,
    pub alias: Option<&'a str>,
    /// `kms:EncryptionAlgorithm`, for the operations that take one.
    pub algorithm: Option<&'a str>,
    /// CreateGrant's grant: a grant allows CreateGrant only for a grant it covers.
    pub new_grant: Option<GrantAsk<'a>>,
}

impl<'a> KmsCall<'a> {
    /// The alias a key reference names (`alias/x` or an alias ARN), if it names one.
    pub(crate) fn naming(
        reference: &'a str,
        encryption_context: Option<&'a BTreeMap<String, String>>,
    ) -> Self {
        let alias = reference.find("alias/").map(|at| &reference[at..]);
        KmsCall { encryption_context, alias, ..KmsCall::default() }
    }
}

/// The context of a decision on a KMS key: the caller's keys, `kms:CallerAccount` and,
/// when Secrets Manager uses the key for the caller, `kms:ViaService`. Never the keys of a
/// secret: a key's decision sees the key's tags, not the secret's.
fn kms_context(
    mut context: Context,
    caller: &Caller,
    via_secrets_manager_in: Option<&str>,
) -> Context {
    context.set("kms:CallerAccount", caller.principal.account.clone());
    if let Some(region) = via_secrets_manager_in {
        context.set("kms:ViaService", format!("secretsmanager.{region}.amazonaws.com"));
        // Secrets Manager uses the key with the caller's credentials (AWS's forward access
        // session): the one place the caller's own `false` does not hold.
        context.replace("aws:ViaAWSService", "true");
    }
    context
}

/// The KMS API's checks before its handler runs: `kms:<Op>` on the key a request names,
/// with that key's policy. Alias operations are also checked on the alias (identity
/// policies) and on every key they touch: the new target and, for UpdateAlias and
/// DeleteAlias, the key the alias leaves. ReEncrypt needs `kms:ReEncryptFrom` on its
/// source and `kms:ReEncryptTo` on its destination. Decrypt and ReEncrypt are checked
/// again in their handlers on the key the ciphertext names, which the request need not.
fn authorize_kms(
    app: &App,
    who: &Authenticated,
    scope: &Scope,
    op: KmsOp,
    requested: &Requested,
    context: &Context,
) -> Result<(), AwsError> {
    let account = &scope.account;
    let constraints =
        requested.constraints.as_ref().map(|c| coffer_kms::grants::GrantConstraints {
            encryption_context_subset: c.encryption_context_subset.clone(),
            encryption_context_equals: c.encryption_context_equals.clone(),
        });
    let new_grant = (op == KmsOp::CreateGrant).then(|| GrantAsk {
        operations: requested.operations.as_deref().unwrap_or_default(),
        constraints: constraints.as_ref(),
    });
    let on_key_in = |scope: &Scope,
                     context: &Context,
                     action: &str,
                     reference: &str,
                     encryption_context,
                     algorithm: Option<String>|
     -> Result<KmsKey, AwsError> {
        let key = resolve_kms_key(app, &who.caller, scope, reference)?;
        let call = KmsCall {
            algorithm: algorithm.as_deref(),
            new_grant,
            ..KmsCall::naming(reference, encryption_context)
        };
        decide_kms(&who.caller, action, &key, account, context.clone(), &call, key.grants(app))?;
        Ok(key)
    };
    let on_key = |action: &str,
                  reference: &str,
                  encryption_context,
                  algorithm: Option<String>|
     -> Result<(), AwsError> {
        on_key_in(scope, context, action, reference, encryption_context, algorithm).map(|_| ())
    };
    let action = op.iam_action();
    match op {
        KmsOp::CreateAlias | KmsOp::UpdateAlias | KmsOp::DeleteAlias => {
            if let Some(alias) = requested.alias_name.as_deref() {
                let alias_arn = kms_key_arn(scope, alias);
                decide(&who.caller, action, &alias_arn, account, context, None, &alias_arn)?;
                if op != KmsOp::CreateAlias {
                    let current = app.read(|tx| {
                        Ok(app.keys.kms().find_key(tx, scope, alias, Accepts::KeyOrAlias).ok())
                    })?;
                    if let Some(current) = current {
                        let key =
                            app.read(|tx| Ok(KmsKey::seen_by(&who.caller, app, tx, &current)))?;
                        let call = KmsCall::default();
                        let grants = Grants::Read(app, &current);
                        decide_kms(
                            &who.caller,
                            action,
                            &key,
                            account,
                            context.clone(),
                            &call,
                            grants,
                        )?;
                    }
                }
            }
            if let Some(target) = requested.target_key_id.as_deref() {
                on_key(action, target, None, None)?;
            }
            Ok(())
        }
        // The grant decides who may retire it (its retiring principal, or its grantee when
        // it includes RetireGrant): the handler checks that.
        KmsOp::RetireGrant => Ok(()),
        KmsOp::ReplicateKey => {
            let (Some(reference), Some(region)) =
                (requested.key_id.as_deref(), requested.replica_region.as_deref())
            else {
                return Ok(());
            };
            let primary = on_key_in(scope, context, action, reference, None, None)?;
            authorize_replica(who, scope, region, &primary, requested, context)
        }
        KmsOp::CreateKey => {
            decide(&who.caller, action, "*", account, context, None, "*")?;
            // AWS: "To use the Tags parameter, kms:TagResource (IAM policy)" (attack 16,
            // finding 07), as ReplicateKey's replica (`authorize_replica`).
            if requested.tags.as_ref().is_some_and(|tags| !tags.is_empty()) {
                decide(&who.caller, "kms:TagResource", "*", account, context, None, "*")?;
            }
            Ok(())
        }
        KmsOp::UpdatePrimaryRegion => {
            let (Some(reference), Some(region)) =
                (requested.key_id.as_deref(), requested.primary_region.as_deref())
            else {
                return Ok(());
            };
            let primary = on_key_in(scope, context, action, reference, None, None)?;
            // AWS decides it on the replica that becomes primary as well, with that key's
            // own policy: a replica's policy is not overruled by its primary's.
            match member_reference(&primary, region) {
                Some(replica) => {
                    let there = Scope::new(&scope.account, region);
                    on_key_in(&there, context, action, &replica, None, None).map(|_| ())
                }
                None => Ok(()),
            }
        }
        KmsOp::ReEncrypt => {
            if let Some(source) = requested.source_key_id.as_deref() {
                let algorithm =
                    encryption_algorithm(op, requested.source_encryption_algorithm.as_deref());
                let context = requested.source_encryption_context.as_ref();
                on_key("kms:ReEncryptFrom", source, context, algorithm)?;
            }
            match requested.destination_key_id.as_deref() {
                Some(destination) => on_key(
                    "kms:ReEncryptTo",
                    destination,
                    requested.destination_encryption_context.as_ref(),
                    encryption_algorithm(op, requested.destination_encryption_algorithm.as_deref()),
                ),
                None => Ok(()),
            }
        }
        _ => match requested.key_id.as_deref() {
            Some(key) => on_key(
                action,
                key,
                requested.encryption_context.as_ref(),
                encryption_algorithm(op, requested.encryption_algorithm.as_deref()),
            ),
            // The ciphertext names the key: the handler decides on it.
            None if op == KmsOp::Decrypt => Ok(()),
            None => decide(&who.caller, action, "*", account, context, None, "*"),
        },
    }
}

/// ReplicateKey's checks in the replica Region, as AWS documents them: `kms:CreateKey` (and
/// `kms:TagResource` when it passes `Tags`) in an IAM policy there, since the replica is a
/// new key whose policy the caller chooses; without them, `kms:ReplicateKey` alone would
/// give a key of the caller's own over every ciphertext of the set (review 8, finding 01).
fn authorize_replica(
    who: &Authenticated,
    scope: &Scope,
    region: &str,
    primary: &KmsKey,
    requested: &Requested,
    context: &Context,
) -> Result<(), AwsError> {
    let account = &scope.account;
    let mut there = context.clone();
    there.set("aws:RequestedRegion", region);
    there.set("kms:MultiRegion", "true");
    if let Some((spec, usage)) = &primary.spec {
        there.set("kms:KeySpec", spec.clone());
        there.set("kms:KeyUsage", usage.clone());
    }
    decide(&who.caller, "kms:CreateKey", "*", account, &there, None, "*")?;
    if requested.tags.as_ref().is_some_and(|t| !t.is_empty()) {
        let arn = member_reference(primary, region).unwrap_or_else(|| "*".to_string());
        decide(&who.caller, "kms:TagResource", &arn, account, &there, None, &arn)?;
    }
    Ok(())
}

/// The ARN of the key of `key`'s multi-Region set in `region` (whether or not it exists);
/// `None` when `key` is not named by a key ARN.
fn member_reference(key: &KmsKey, region: &str) -> Option<String> {
    let (head, id) = key.arn.split_once(":key/")?;
    let account = head.rsplit(':').next()?;
    Some(Partition::of_region(region).arn("kms", region, account, &format!("key/{id}")))
}

/// The key a KMS ciphertext names, found in `scope`; `None` when the blob does not parse
/// or names no key there (opening it then fails with KMS's own error).
pub fn sealing_key(
    app: &App,
    tx: &dyn ReadTxn,
    scope: &Scope,
    blob: &[u8],
) -> Option<Arc<KeyRecord>> {
    let (header, _) = coffer_kms::ciphertext::parse(blob).ok()?;
    app.keys.kms().find_key_shared(tx, scope, &header.key_id, Accepts::KeyOnly).ok()
}

/// The customer managed key a call seals or opens under, and the kms actions that need,
/// as AWS documents them per operation: writing a value `kms:GenerateDataKey` and
/// `kms:Decrypt`; UpdateSecret (which may re-encrypt under a new key)
/// `kms:GenerateDataKey`, `kms:Encrypt` and `kms:Decrypt`. Reads are decided by the
/// handler on the key that sealed the version it opens.
fn kms_key_checks(
    op: Sm,
    requested: &Requested,
    meta: Option<&SecretMeta>,
) -> Vec<(String, &'static [&'static str])> {
    const WRITE: &[&str] = &["kms:GenerateDataKey", "kms:Decrypt"];
    const UPDATE: &[&str] = &["kms:GenerateDataKey", "kms:Encrypt", "kms:Decrypt"];
    // Naming a key without sealing anything yet still looks the key up: the caller must be
    // allowed to see it, or the answer would tell whether the alias exists and its state.
    const DESCRIBE: &[&str] = &["kms:DescribeKey"];
    let has_value = requested.has_value();
    let existing = meta.and_then(|m| m.kms_key_id.clone());
    let named = requested.kms_key_id.clone();
    let (key, actions) = match op {
        Sm::PutSecretValue => (existing, WRITE),
        Sm::CreateSecret if has_value => (named, WRITE),
        Sm::CreateSecret => (named, DESCRIBE),
        Sm::UpdateSecret if has_value || named.is_some() => (named.or(existing), UPDATE),
        _ => (None, WRITE),
    };
    key.filter(|k| !is_aws_managed_key(k)).map(|k| (k, actions)).into_iter().collect()
}

/// The other Secrets Manager actions a call needs for what it does besides its own, as
/// AWS documents them for CreateSecret: "If you include tags in the secret, you also need
/// secretsmanager:TagResource. To add replica Regions, you must also have
/// secretsmanager:ReplicateSecretToRegions." Without them a Deny on tagging (ABAC's guard
/// on a tag key) or on replication (a Region kept out) did not hold for a secret being
/// created (attack 16, finding 05). ValidateResourcePolicy: "secretsmanager:
/// ValidateResourcePolicy and secretsmanager:PutResourcePolicy" (finding 06).
fn implied_actions(op: Sm, requested: &Requested) -> Vec<&'static str> {
    let mut actions = Vec::new();
    if op == Sm::ValidateResourcePolicy {
        actions.push("secretsmanager:PutResourcePolicy");
    }
    if op == Sm::CreateSecret {
        if requested.tags.as_ref().is_some_and(|tags| !tags.is_empty()) {
            actions.push("secretsmanager:TagResource");
        }
        if requested.add_replica_regions.as_ref().is_some_and(|regions| !regions.is_empty()) {
            actions.push("secretsmanager:ReplicateSecretToRegions");
        }
    }
    actions
}

/// The name and ARN forms of the AWS managed key, which needs no kms permission.
pub(crate) fn is_aws_managed_key(key: &str) -> bool {
    key.is_empty()
        || key == "alias/aws/secretsmanager"
        || (key.starts_with("arn:") && key.ends_with(":alias/aws/secretsmanager"))
}

/// The ARN a key reference names in `scope`: key and alias ARNs as given, key ids and
/// alias names expanded.
fn kms_key_arn(scope: &Scope, key: &str) -> String {
    if key.starts_with("arn:") {
        key.to_string()
    } else if key.starts_with("alias/") {
        scope.arn("kms", key)
    } else {
        scope.arn("kms", &format!("key/{key}"))
    }
}

/// A KMS key as authorization sees it.
struct KmsKey {
    /// The key's ARN (an alias resolved to its key), as policies and messages name it.
    arn: String,
    /// AWS managed keys (`aws/secretsmanager`) are decided by their fixed key policy.
    customer_managed: bool,
    /// The key policy; `None` behaves as AWS's default key policy.
    policy: Option<Arc<Policy>>,
    /// The key's tags (`aws:ResourceTag/*`).
    tags: Vec<(String, String)>,
    /// The aliases that point at the key (`kms:ResourceAliases`), read only when a policy
    /// that decides uses that key.
    aliases: Vec<String>,
    /// The key's record when it exists, for its grants ([`KmsKey::grants`]).
    record: Option<KeyRecord>,
    /// The key's spec and usage (`kms:KeySpec`, `kms:KeyUsage`), when it exists.
    spec: Option<(String, String)>,
}

impl KmsKey {
    fn of(record: &KeyRecord) -> KmsKey {
        let customer_managed = record.manager == KeyManager::Customer;
        let policy = if customer_managed {
            // Parsed once per text, not per decision.
            record.policy.as_deref().map(|text| {
                crate::kms_decisions::key_policy(text)
                    .unwrap_or_else(|| Arc::new(stored_policy(text, "key policy")))
            })
        } else {
            Some(aws_managed_key_policy(&record.scope))
        };
        let tags = record.tags.iter().map(|t| (t.key.clone(), t.value.clone())).collect();
        KmsKey {
            arn: record.arn.clone(),
            customer_managed,
            policy,
            tags,
            aliases: Vec::new(),
            record: None,
            spec: Some((record.key_spec.clone(), record.key_usage.clone())),
        }
    }

    /// Where a decision outside a transaction reads this key's grants: in a read of its
    /// own, only if the policies do not allow (an unknown key has none).
    fn grants<'a>(&'a self, app: &'a App) -> Grants<'a> {
        match &self.record {
            Some(record) => Grants::Read(app, record),
            None => Grants::None,
        }
    }

    /// [`KmsKey::of`], with the key's aliases when the caller's policies (its session
    /// policy too) or the key's policy have a condition on `kms:ResourceAliases` (listing
    /// aliases costs a scan). Its grants are not read here: see [`Grants`].
    fn seen_by(caller: &Caller, app: &App, tx: &dyn ReadTxn, record: &KeyRecord) -> KmsKey {
        const ALIASES: &str = "kms:ResourceAliases";
        let mut key = KmsKey::of(record);
        // Every policy the decision evaluates: a session policy's Deny on the aliases must
        // see them as much as an identity policy's (review 12, finding 01).
        let used = caller
            .policies
            .iter()
            .chain(caller.session_policies.iter().flatten())
            .any(|p| p.uses_condition_key(ALIASES))
            || key.policy.as_ref().is_some_and(|p| p.uses_condition_key(ALIASES));
        if used {
            let kms = app.keys.kms();
            let page = kms.list_aliases(tx, &record.scope, Some(&record.key_id), None, 1000);
            key.aliases =
                page.map(|p| p.items.into_iter().map(|a| a.name).collect()).unwrap_or_default();
        }
        key
    }
}

/// The key policy of the AWS managed key `aws/secretsmanager`, as AWS writes it: any
/// principal of the account may use it through Secrets Manager in the key's region
/// (`kms:ViaService`, `kms:CallerAccount`), and read its metadata directly; no one may
/// use it through the KMS API or from another account. Parsed once per scope.
fn aws_managed_key_policy(scope: &Scope) -> Arc<Policy> {
    static POLICIES: OnceLock<RwLock<HashMap<Scope, Arc<Policy>>>> = OnceLock::new();
    let policies = POLICIES.get_or_init(Default::default);
    if let Some(found) = policies.read().ok().and_then(|m| m.get(scope).cloned()) {
        return found;
    }
    let text = aws_managed_key_policy_text(scope);
    let policy = Arc::new(stored_policy(&text, "AWS managed key policy"));
    if let Ok(mut map) = policies.write() {
        map.insert(scope.clone(), policy.clone());
    }
    policy
}

/// The text of the AWS managed key policy of `scope` (GetKeyPolicy shows it).
pub(crate) fn aws_managed_key_policy_text(scope: &Scope) -> String {
    let (account, region) = (&scope.account, &scope.region);
    let root = coffer_auth::principal::account_root_arn(scope.partition(), account);
    format!(
        r#"{{"Version":"2012-10-17","Id":"auto-secretsmanager-2","Statement":[
{{"Sid":"Allow access through AWS Secrets Manager for all principals in the account that are authorized to use AWS Secrets Manager","Effect":"Allow","Principal":{{"AWS":"*"}},"Action":["kms:Encrypt","kms:Decrypt","kms:ReEncrypt*","kms:CreateGrant","kms:DescribeKey"],"Resource":"*","Condition":{{"StringEquals":{{"kms:CallerAccount":"{account}","kms:ViaService":"secretsmanager.{region}.amazonaws.com"}}}}}},
{{"Sid":"Allow access through AWS Secrets Manager for all principals in the account that are authorized to use AWS Secrets Manager","Effect":"Allow","Principal":{{"AWS":"*"}},"Action":"kms:GenerateDataKey*","Resource":"*","Condition":{{"StringEquals":{{"kms:CallerAccount":"{account}"}},"StringLike":{{"kms:ViaService":"secretsmanager.{region}.amazonaws.com"}}}}}},
{{"Sid":"Allow direct access to key metadata to the account","Effect":"Allow","Principal":{{"AWS":"{root}"}},"Action":["kms:Describe*","kms:Get*","kms:List*","kms:RevokeGrant"],"Resource":"*"}}]}}"#
    )
}

/// Resolves a key reference (id, ARN, alias name or alias ARN) in `scope` with the key
/// service. An unknown key is named by the ARN the reference spells; its handler answers
/// NotFoundException once the caller may use it.
fn resolve_kms_key(
    app: &App,
    caller: &Caller,
    scope: &Scope,
    key: &str,
) -> Result<KmsKey, AwsError> {
    let found = app.read(|tx| {
        let record = app.keys.kms().find_key(tx, scope, key, Accepts::KeyOrAlias).ok();
        Ok(record.map(|record| {
            let mut seen = KmsKey::seen_by(caller, app, tx, &record);
            seen.record = Some(record);
            seen
        }))
    })?;
    Ok(match found {
        Some(key) => key,
        None => KmsKey {
            arn: kms_key_arn(scope, key),
            customer_managed: !is_aws_managed_key(key),
            policy: None,
            tags: Vec::new(),
            aliases: Vec::new(),
            record: None,
            spec: None,
        },
    })
}

/// Where [`decide_kms`] reads a key's grants, which it does only when the key's policies
/// do not allow: a grant can only add an Allow (never over an explicit Deny), and reading
/// the grants is a scan of the key's grant records, which every opened value would
/// otherwise pay (issue 20's measurements: it doubled the CPU of a GetSecretValue).
enum Grants<'a> {
    /// In the transaction the caller decides in (a handler opening or sealing a value).
    In(&'a dyn ReadTxn, &'a KeyRecord),
    /// In a read of its own (authorization, before the handler's transaction).
    Read(&'a App, &'a KeyRecord),
    /// A key that does not exist has none.
    None,
}

impl Grants<'_> {
    /// The grants; one that cannot be read grants nothing (fails closed).
    fn load(self) -> Vec<coffer_kms::grants::GrantRecord> {
        use coffer_kms::grants::grants_of;
        match self {
            Grants::In(tx, record) => grants_of(tx, record).unwrap_or_default(),
            Grants::Read(app, record) => {
                app.read(|tx| Ok(grants_of(tx, record).unwrap_or_default())).unwrap_or_default()
            }
            Grants::None => Vec::new(),
        }
    }
}

/// Decides a kms action on a key with its key policy, in AWS KMS's words when denied. The
/// key's tags and the request's kms keys (`call`) join `context` for this decision.
fn decide_kms(
    caller: &Caller,
    action: &str,
    key: &KmsKey,
    key_account: &str,
    context: Context,
    call: &KmsCall<'_>,
    grants: Grants<'_>,
) -> Result<(), AwsError> {
    decide_kms_by(caller, action, key, key_account, context, call, grants).map(|_| ())
}

/// What allowed a kms action: the policies, or a grant (a record of its own, which can be
/// retired or revoked without the key's record changing: never memoized).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Allowed {
    ByPolicy,
    ByGrant,
}

/// [`decide_kms`], saying what allowed.
fn decide_kms_by(
    caller: &Caller,
    action: &str,
    key: &KmsKey,
    key_account: &str,
    mut context: Context,
    call: &KmsCall<'_>,
    grants: Grants<'_>,
) -> Result<Allowed, AwsError> {
    for (k, v) in &key.tags {
        context.set(&format!("aws:ResourceTag/{k}"), v.clone());
    }
    if let Some(pairs) = call.encryption_context {
        for (k, v) in pairs {
            context.set(&format!("kms:EncryptionContext:{k}"), v.clone());
        }
        context.set_all("kms:EncryptionContextKeys", pairs.keys().cloned().collect());
    }
    if let Some(alias) = call.alias {
        context.set("kms:RequestAlias", alias);
    }
    if let Some(algorithm) = call.algorithm {
        context.set("kms:EncryptionAlgorithm", algorithm);
    }
    // The key's own spec and usage (CreateKey's request sets them for the key it asks for).
    if let Some((spec, usage)) = &key.spec {
        context.set("kms:KeySpec", spec.clone());
        context.set("kms:KeyUsage", usage.clone());
    }
    if !key.aliases.is_empty() {
        context.set_all("kms:ResourceAliases", key.aliases.clone());
    }
    let context = &context;
    let req = Request {
        principal: &caller.principal,
        action,
        resource: &key.arn,
        resource_account: key_account,
        context,
    };
    let mut decision = evaluate_key_policy(&req, &caller.policies, key.policy.as_deref());
    // KMS evaluates grants alongside the policies: a grant allows what no policy allows,
    // but never what a policy explicitly denies.
    let p = &caller.principal;
    let granted = |g: &coffer_kms::grants::GrantRecord| match call.new_grant {
        // A grant's CreateGrant hands on only what the grant itself holds.
        Some(ask) if action == "kms:CreateGrant" => {
            g.allows_create_grant(&p.arn, &p.user_id, ask.operations, ask.constraints)
        }
        _ => g.allows(&p.arn, &p.user_id, action, call.encryption_context),
    };
    let mut allowed = Allowed::ByPolicy;
    if matches!(decision, Decision::NoAllow(_)) && grants.load().iter().any(granted) {
        decision = Decision::Allow;
        allowed = Allowed::ByGrant;
    }
    match decision.denial_message(&req) {
        None => session_allows(caller, &req, &req).map(|()| allowed),
        Some(message) => Err(AwsError::new(ErrorCode::AccessDenied, message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_arn_of_another_account_in_the_same_region_is_looked_up_there() {
        let mine = Scope::new("111122223333", "us-east-1");
        let arn = "arn:aws:secretsmanager:us-east-1:444455556666:secret:shared-AbCdEf";
        assert_eq!(lookup_scope(arn, &mine), Scope::new("444455556666", "us-east-1"));
        let other_region = "arn:aws:secretsmanager:eu-west-1:444455556666:secret:shared-AbCdEf";
        assert_eq!(lookup_scope(other_region, &mine), mine);
        assert_eq!(lookup_scope("shared", &mine), mine);
    }

    #[test]
    fn only_customer_managed_keys_need_kms_permissions() {
        let body = serde_json::from_value::<Requested>(serde_json::json!({"Name": "x", "SecretString": "v", "KmsKeyId": "alias/aws/secretsmanager"})).unwrap();
        assert!(kms_key_checks(Sm::CreateSecret, &body, None).is_empty());
        let body = serde_json::from_value::<Requested>(
            serde_json::json!({"Name": "x", "SecretString": "v", "KmsKeyId": "alias/app"}),
        )
        .unwrap();
        let checks = kms_key_checks(Sm::CreateSecret, &body, None);
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[0].1, &["kms:GenerateDataKey", "kms:Decrypt"]);
        let update = serde_json::from_value::<Requested>(serde_json::json!({"SecretId": "x", "KmsKeyId": "1234abcd-12ab-34cd-56ef-1234567890ab"})).unwrap();
        assert_eq!(kms_key_checks(Sm::UpdateSecret, &update, None)[0].1.len(), 3);
        assert!(kms_key_checks(Sm::DescribeSecret, &update, None).is_empty());
        let scope = Scope::new("111122223333", "us-east-1");
        assert_eq!(
            kms_key_arn(&scope, "alias/app"),
            "arn:aws:kms:us-east-1:111122223333:alias/app"
        );
        assert_eq!(kms_key_arn(&scope, "k1"), "arn:aws:kms:us-east-1:111122223333:key/k1");
    }

    fn decision(
        policy: &Policy,
        caller: &coffer_auth::Principal,
        action: &str,
        ctx: &Context,
    ) -> bool {
        let req = Request {
            principal: caller,
            action,
            resource: "arn:aws:kms:us-east-1:111122223333:key/k",
            resource_account: "111122223333",
            context: ctx,
        };
        evaluate_key_policy(&req, &[], Some(policy)).is_allowed()
    }

    #[test]
    fn a_stored_policy_that_does_not_parse_denies_everything() {
        let typo = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"*","Resource":"*","Condition":{"StringNotEqual":{"aws:username":"x"}}}]}"#;
        assert!(Policy::parse(typo, PolicyKind::Resource).is_err());
        let policy = stored_policy(typo, "key policy");
        let me = coffer_auth::Principal::user("111122223333", "app", "AIDAEXAMPLE");
        let admin = [Policy::parse(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#,
            PolicyKind::Identity,
        )
        .unwrap()];
        let ctx = Context::default();
        let req = Request {
            principal: &me,
            action: "secretsmanager:GetSecretValue",
            resource: "arn:aws:secretsmanager:us-east-1:111122223333:secret:s-AbCdEf",
            resource_account: "111122223333",
            context: &ctx,
        };
        assert!(!evaluate(&req, &admin, Some(&policy)).is_allowed());
        assert!(!evaluate_key_policy(&req, &admin, Some(&policy)).is_allowed());
    }

    #[test]
    fn the_aws_managed_key_serves_only_secrets_manager_in_its_own_account() {
        let scope = Scope::new("111122223333", "us-east-1");
        let policy = aws_managed_key_policy(&scope);
        let me = coffer_auth::Principal::user("111122223333", "app", "AIDAEXAMPLE");
        let stranger = coffer_auth::Principal::user("444455556666", "x", "AIDAOTHER");
        let mut via = Context::default();
        via.set("kms:ViaService", "secretsmanager.us-east-1.amazonaws.com");
        via.set("kms:CallerAccount", "111122223333");
        assert!(decision(&policy, &me, "kms:Decrypt", &via));
        assert!(decision(&policy, &me, "kms:GenerateDataKey", &via));
        let mut direct = Context::default();
        direct.set("kms:CallerAccount", "111122223333");
        assert!(!decision(&policy, &me, "kms:Decrypt", &direct));
        assert!(!decision(&policy, &me, "kms:Encrypt", &direct));
        let mut other_region = via.clone();
        other_region.set("kms:ViaService", "secretsmanager.eu-west-1.amazonaws.com");
        assert!(!decision(&policy, &me, "kms:Decrypt", &other_region));
        let mut foreign = via.clone();
        foreign.set("kms:CallerAccount", "444455556666");
        assert!(!decision(&policy, &stranger, "kms:Decrypt", &foreign));
    }
}
