//! STS AssumeRoleWithWebIdentity: a workload trades an OIDC token (a Kubernetes service
//! account's projected token, a CI job's token) for a role's temporary credentials,
//! with no static key. The call is not signed; the token is the credential.
//!
//! The token is a JWT, verified before anything else is believed: its issuer must be an
//! OIDC provider registered in the role's account (`CreateOpenIDConnectProvider`), its
//! signature must verify (RS256 or ES256) against one of the provider's keys, its `aud`
//! must be one of the provider's client ids, and it must be within `nbf`..`exp`. The
//! provider's keys come from the issuer's discovery document (`/.well-known/
//! openid-configuration` -> `jwks_uri`, over HTTPS or HTTP, connecting to public addresses
//! only unless the operator allows a network with `--oidc-allow-net`: `oidc_outbound`) or
//! from the JWKS file its `coffer:jwks-file` tag names. Keys are cached for five minutes;
//! an unknown `kid` refetches at most every 30 seconds.
//!
//! Then the role's trust policy decides, for the provider as `Federated` principal, with
//! `<issuer host/path>:sub`, `:aud` and `sts:RoleSessionName` as condition keys.

use crate::auth::RawRequest;
use crate::iam::Iam;
use crate::iam::directory::role_arn_parts;
use crate::iam::oidc::{OidcProvider, host_path, provider_in};
use crate::iam::sessions::{SessionRequest, Subject};
use crate::sts::FormValues;
use crate::{App, RequestContext, sts};
use aws_lc_rs::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use base64::Engine;
use coffer_auth::Principal;
use coffer_auth::policy::{Context, Policy, PolicyKind, Request, evaluate_key_policy};
use coffer_auth::time::format_iso8601;
use coffer_core::validation::{Constraint, Violation};
use coffer_core::{Partition, Scope};
use coffer_wire::operation::{Service, StsOp};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub(crate) const ACTION: &str = "AssumeRoleWithWebIdentity";
const XMLNS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
/// The region web identity calls are recorded in: the call carries no credential scope.
pub(crate) const REGION: &str = "us-east-1";
const KEYS_TTL: Duration = Duration::from_secs(300);
const REFETCH_AFTER: Duration = Duration::from_secs(30);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_DOCUMENT: usize = 256 * 1024;
/// Tokens longer than AWS accepts are refused before they are decoded.
pub(crate) const MAX_TOKEN: usize = 20_000;
/// Clock skew allowed on `nbf` and `iat`.
pub(crate) const SKEW_SECS: i64 = 300;

/// An STS error: code, message, status.
pub(crate) struct Failure(pub &'static str, pub String, pub u16);

/// The checks AssumeRole's and AssumeRoleWithWebIdentity's share (`sessions`) answer in
/// the same terms.
impl From<crate::sessions::Failure> for Failure {
    fn from(crate::sessions::Failure(code, message, status): crate::sessions::Failure) -> Self {
        Failure(code, message, status)
    }
}

pub(crate) fn invalid_token(message: impl Into<String>) -> Failure {
    Failure("InvalidIdentityToken", message.into(), 400)
}

fn idp_error() -> Failure {
    Failure(
        "IDPCommunicationError",
        "Couldn't retrieve verification key from your identity provider, please reference \
         AssumeRoleWithWebIdentity documentation for requirements"
            .into(),
        400,
    )
}

pub(crate) fn internal() -> Failure {
    Failure("InternalFailure", "An internal error occurred.".into(), 500)
}

/// Answers AssumeRoleWithWebIdentity, which is not signed; `None` for every other action.
pub async fn intercept(
    app: &Arc<App>,
    raw: &RawRequest,
    body: &[u8],
    request_id: &str,
) -> Option<(u16, Vec<u8>)> {
    let form = crate::query::Form::of_request(&raw.query, body);
    // The operation comes from the one table (`query::operation`), never a string compare.
    if crate::query::operation(Service::Sts, &form).ok()
        != Some(StsOp::AssumeRoleWithWebIdentity.into())
    {
        return None;
    }
    if app.iam.is_none() {
        // `--dev` takes a well-formed token without verifying it (`dev_web_identity`).
        if app.dev_iam.is_some() {
            return Some(crate::dev_web_identity::answer(app, raw, form.text(), request_id).await);
        }
        let message = format!("{ACTION} is not served with --dev.");
        return Some(sts::error("InvalidAction", &message, request_id, 400));
    };
    let answered = match prepare(app, &FormValues::parse(form.text())).await {
        Err(refusal) => Err(refusal),
        Ok(mut prepared) => {
            prepared.source_ip = raw.source_ip;
            let app = app.clone();
            tokio::task::spawn_blocking(move || match app.iam.as_ref() {
                Some(iam) => finish(&app, iam, prepared),
                None => Err((internal(), None)),
            })
            .await
            .unwrap_or_else(|_| Err((internal(), None)))
        }
    };
    let (status, body, audit, error) = match answered {
        Ok((body, audit)) => (200, envelope(&body, request_id), Some(audit), None),
        Err((Failure(code, message, status), audit)) => {
            let (status, body) = sts::error(code, &message, request_id, status);
            (status, body, audit.map(|a| *a), Some((code.to_string(), message)))
        }
    };
    // The call is not signed, so anyone who knows a registered issuer's URL (they are
    // public) can have it refused: like failed signatures of a known access key, a token
    // refused for itself (not verified, expired, wrong audience) is audited at most ten
    // times and logged once per provider and minute, or whoever sends forged tokens would
    // write synced events at their own rate (review 8, finding 06). A valid token the trust
    // policy refuses is an authenticated call, audited every time.
    let audit = match (audit, &error) {
        (Some(audit), Some((code, _))) if code != "AccessDenied" => {
            let notice =
                app.audit.note_failed_signature(&format!("web identity {}", audit.provider));
            if let Some((not_logged, not_audited)) = notice.log {
                tracing::warn!(
                    provider = %audit.provider,
                    code = %code,
                    source_ip = %raw.source_ip.map_or_else(|| "unknown".to_string(), |ip| ip.to_string()),
                    earlier_failures_not_logged = not_logged,
                    earlier_failures_not_audited = not_audited,
                    "failed web identity call for a registered provider (at most one line per provider per minute)"
                );
            }
            notice.audit.then_some(audit)
        }
        (audit, _) => audit,
    };
    // A call whose token named no registered provider has no account to be audited in.
    if let Some(audit) = audit {
        let (app, raw, id) = (app.clone(), raw.clone(), request_id.to_string());
        let recorded = tokio::task::spawn_blocking(move || {
            let scope = Scope::new(audit.account.clone(), REGION);
            let ctx = RequestContext::new(scope, String::new(), id);
            let identity = coffer_audit::event::UserIdentity {
                kind: "WebIdentityUser".to_string(),
                principal_id: Some(audit.principal_id),
                arn: None,
                account_id: None,
                access_key_id: None,
                user_name: Some(audit.subject),
                invoked_by: None,
                session_context: None,
            };
            let params = (&form, &audit.elements);
            crate::audit::record_sts_call(&app, &ctx, identity, &raw, params, error)
        })
        .await;
        if !matches!(recorded, Ok(Ok(()))) {
            return Some(sts::error(
                "InternalFailure",
                "An internal error occurred.",
                request_id,
                500,
            ));
        }
    }
    Some((status, body))
}

/// A successful answer around its result `body`.
pub(crate) fn envelope(body: &str, request_id: &str) -> Vec<u8> {
    format!(
        "<{ACTION}Response xmlns=\"{XMLNS}\">\n  <{ACTION}Result>{body}</{ACTION}Result>\n  <ResponseMetadata>\n    <RequestId>{}</RequestId>\n  </ResponseMetadata>\n</{ACTION}Response>\n",
        crate::iam_api::escape(request_id)
    )
    .into_bytes()
}

/// Who the audit event names.
struct Audited {
    account: String,
    principal_id: String,
    subject: String,
    /// The provider the token named, whose refusals are counted together.
    provider: String,
    /// The response elements of a call that issued credentials (`Null` for a refusal).
    elements: serde_json::Value,
}

/// A token whose signature was verified, with the call's other parameters.
struct Prepared {
    role_arn: String,
    role_account: String,
    role_name: String,
    session_name: String,
    duration: Option<i64>,
    session_policy: Option<String>,
    /// Managed session policies, as the request names them.
    policy_arns: Vec<String>,
    provider: OidcProvider,
    claims: Claims,
    audience: String,
    source_ip: Option<std::net::IpAddr>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Claims {
    pub(crate) iss: String,
    pub(crate) sub: Option<String>,
    #[serde(default)]
    pub(crate) aud: Audience,
    pub(crate) exp: Option<i64>,
    pub(crate) nbf: Option<i64>,
    pub(crate) iat: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(untagged)]
pub(crate) enum Audience {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub(crate) fn values(&self) -> Vec<&str> {
        match self {
            Audience::None => Vec::new(),
            Audience::One(a) => vec![a.as_str()],
            Audience::Many(list) => list.iter().map(String::as_str).collect(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct Header {
    alg: String,
    kid: Option<String>,
}

pub(crate) fn b64url(part: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()
}

pub(crate) fn required(form: &FormValues<'_>, name: &str, member: &str) -> Result<String, Failure> {
    form.value(name)
        .ok_or_else(|| Failure("ValidationError", Violation::null(member).message(), 400))
}

type Refusal = (Failure, Option<Box<Audited>>);

/// RoleSessionName's length and pattern, in AWS's words (enforcing mode and `--dev`):
/// AssumeRole's own check, so both calls refuse a name in the same words (this one named
/// the pattern for a name too short or too long; review 17).
pub(crate) fn check_session_name(session_name: &str) -> Result<(), Failure> {
    crate::sessions::check_session_name(session_name).map_err(Failure::from)
}

/// Everything up to and including the signature check (it may fetch the keys).
async fn prepare(app: &Arc<App>, form: &FormValues<'_>) -> Result<Prepared, Refusal> {
    let no_audit = |f: Failure| (f, None);
    let role_arn = required(form, "RoleArn", "roleArn").map_err(no_audit)?;
    let session_name = required(form, "RoleSessionName", "roleSessionName").map_err(no_audit)?;
    let token = required(form, "WebIdentityToken", "webIdentityToken").map_err(no_audit)?;
    check_session_name(&session_name).map_err(no_audit)?;
    if token.len() > MAX_TOKEN {
        return Err(no_audit(invalid_token("The web identity token is too long.")));
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [header_b64, claims_b64, signature_b64] = parts[..] else {
        return Err(no_audit(invalid_token("The web identity token is not a JWT.")));
    };
    let header: Header = b64url(header_b64)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| no_audit(invalid_token("The web identity token has no readable header.")))?;
    let claims: Claims = b64url(claims_b64)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| no_audit(invalid_token("The web identity token has no readable claims.")))?;
    let signature_bytes = b64url(signature_b64).ok_or_else(|| {
        no_audit(invalid_token("The web identity token has no readable signature."))
    })?;
    // Unsigned, so no signing region: the role ARN's partition is the request's. IAM's
    // records are looked up as they are kept.
    let stored_role = coffer_auth::principal::STORED.rewrite(&role_arn);
    let Some((role_account, role_name)) = role_arn_parts(&stored_role) else {
        // Quoted cut, as every error quotes what the client sent (this one before any check).
        let role_arn = coffer_auth::sigv4::echo(&role_arn);
        return Err(no_audit(Failure("ValidationError", format!("{role_arn} is invalid"), 400)));
    };
    let (role_account, role_name) = (role_account.to_string(), role_name.to_string());
    // The provider is looked up in the role's account, by the (not yet trusted) issuer.
    let hp = host_path(&claims.iss).to_string();
    let lookup = {
        let (app, account, hp) = (app.clone(), role_account.clone(), hp.clone());
        tokio::task::spawn_blocking(move || {
            let mut found = None;
            app.store
                .read(&mut |tx| {
                    found = Some(provider_in(tx, &account, &hp));
                    Ok(())
                })
                .map(|_| found)
        })
        .await
    };
    let provider = match lookup {
        Ok(Ok(Some(Ok(Some(p))))) if iss_matches(&p.url, &claims.iss) => p,
        Ok(Ok(Some(Ok(_)))) => {
            let shown: String = claims.iss.chars().take(256).collect();
            return Err(no_audit(invalid_token(format!(
                "No OpenIDConnect provider found in your account for {shown}"
            ))));
        }
        _ => return Err(no_audit(internal())),
    };
    let audit = |claims: &Claims| Audited {
        account: role_account.clone(),
        provider: provider.arn(),
        principal_id: format!(
            "{}:{}:{}",
            provider.arn(),
            claims.aud.values().first().copied().unwrap_or(""),
            claims.sub.as_deref().unwrap_or("")
        ),
        subject: claims.sub.clone().unwrap_or_default(),
        elements: serde_json::Value::Null,
    };
    let keys = provider_keys(app, &provider, header.kid.as_deref())
        .await
        .map_err(|f| (f, Some(Box::new(audit(&claims)))))?;
    let signed = format!("{header_b64}.{claims_b64}");
    let verified = keys
        .iter()
        .filter(|k| header.kid.is_none() || k.kid == header.kid)
        .any(|k| k.verify(&header.alg, signed.as_bytes(), &signature_bytes));
    if !verified {
        return Err((
            invalid_token(
                "The web identity token's signature does not verify with the provider's keys.",
            ),
            Some(Box::new(audit(&claims))),
        ));
    }
    let now = crate::clock::now_ms() / 1000;
    let exp = claims.exp.ok_or_else(|| {
        (invalid_token("The web identity token has no exp claim."), Some(Box::new(audit(&claims))))
    })?;
    if exp <= now {
        return Err((
            Failure(
                "ExpiredTokenException",
                format!(
                    "Token expired: current date/time {now} must be before the expiration date/time {exp}"
                ),
                400,
            ),
            Some(Box::new(audit(&claims))),
        ));
    }
    if claims.nbf.is_some_and(|nbf| nbf > now + SKEW_SECS)
        || claims.iat.is_some_and(|iat| iat > now + SKEW_SECS)
    {
        return Err((
            invalid_token("The web identity token is not valid yet."),
            Some(Box::new(audit(&claims))),
        ));
    }
    let Some(audience) =
        claims.aud.values().into_iter().find(|a| provider.client_ids.iter().any(|c| c == a))
    else {
        return Err((invalid_token("Incorrect token audience"), Some(Box::new(audit(&claims)))));
    };
    let audience = audience.to_string();
    if claims.sub.as_deref().is_none_or(str::is_empty) {
        return Err((
            invalid_token("The web identity token has no sub claim."),
            Some(Box::new(audit(&claims))),
        ));
    }
    let duration = match form.value("DurationSeconds") {
        None => None,
        Some(v) => Some(v.parse::<i64>().map_err(|_| {
            let v = coffer_auth::sigv4::echo(&v);
            (
                Failure("ValidationError", format!("Invalid value for DurationSeconds: {v}"), 400),
                Some(Box::new(audit(&claims))),
            )
        })?),
    };
    let policy_arns = crate::sessions::policy_arns(form)
        .map_err(|f| (f.into(), Some(Box::new(audit(&claims)))))?;
    Ok(Prepared {
        role_arn,
        role_account,
        role_name,
        session_name,
        duration,
        session_policy: form.value("Policy"),
        policy_arns,
        provider,
        claims,
        audience,
        source_ip: None,
    })
}

fn iss_matches(url: &str, iss: &str) -> bool {
    url.trim_end_matches('/') == iss.trim_end_matches('/')
}

/// The trust decision and the session, on a blocking thread.
fn finish(app: &App, iam: &Iam, p: Prepared) -> Result<(String, Audited), Refusal> {
    let sub = p.claims.sub.clone().unwrap_or_default();
    let audited = || Audited {
        account: p.role_account.clone(),
        provider: p.provider.arn(),
        principal_id: format!("{}:{}:{sub}", p.provider.arn(), p.audience),
        subject: sub.clone(),
        elements: serde_json::Value::Null,
    };
    let denied = || {
        (
            Failure("AccessDenied", format!("Not authorized to perform sts:{ACTION}"), 403),
            Some(Box::new(audited())),
        )
    };
    let role = match iam.get_role(app.store.as_ref(), &p.role_account, &p.role_name) {
        Ok(role) if role.arn() == coffer_auth::principal::STORED.rewrite(&p.role_arn) => role,
        Ok(_) | Err(crate::iam::IamError::NotFound(_)) => return Err(denied()),
        Err(_) => return Err((internal(), Some(Box::new(audited())))),
    };
    let Ok(trust) = Policy::parse(&role.trust_policy, PolicyKind::Resource) else {
        return Err(denied());
    };
    // Trust policies name the provider in the partition the role is named in.
    let partition = Partition::of_arn(&p.role_arn).unwrap_or(Partition::Aws);
    let provider_arn = partition.rewrite(&p.provider.arn());
    let principal = Principal {
        arn: provider_arn.clone(),
        account: p.role_account.clone(),
        user_id: format!("{}:{}:{sub}", p.provider.host_path(), p.audience),
        name: sub.clone(),
        role_arn: None,
    };
    let hp = p.provider.host_path();
    let now_ms = crate::clock::now_ms();
    let mut context = Context::default();
    context.set(&format!("{hp}:sub"), sub.clone());
    context.set(&format!("{hp}:aud"), p.audience.clone());
    context.set("aws:FederatedProvider", provider_arn.clone());
    context.set("sts:RoleSessionName", p.session_name.clone());
    context.set("aws:CurrentTime", format_iso8601(now_ms));
    context.set("aws:EpochTime", (now_ms / 1000).to_string());
    if let Some(ip) = p.source_ip {
        context.set("aws:SourceIp", ip.to_string());
    }
    let req = Request {
        principal: &principal,
        action: "sts:AssumeRoleWithWebIdentity",
        resource: &p.role_arn,
        resource_account: &p.role_account,
        context: &context,
    };
    if !evaluate_key_policy(&req, &[], Some(&trust)).is_allowed() {
        return Err(denied());
    }
    let max = role.max_session_secs;
    let secs = p.duration.unwrap_or(3600.min(max));
    if secs < 900 || secs > max {
        return Err((
            Failure(
                "ValidationError",
                if secs > max {
                    "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.".into()
                } else {
                    Violation::number(secs, "durationSeconds", Constraint::MinValue(900)).message()
                },
                400,
            ),
            Some(Box::new(audited())),
        ));
    }
    // The role's account's managed policies, as AssumeRole's (`sessions`).
    let policy_arns = crate::sessions::check_session_policies_plaintext(
        p.session_policy.as_deref(),
        &p.policy_arns,
    )
    .and_then(|()| {
        crate::sessions::resolve_policy_arns(iam, app, &p.role_account, &p.policy_arns, partition)
    })
    .map_err(|f| (f.into(), Some(Box::new(audited()))))?;
    let issued = iam
        .issue_session(
            app.store.as_ref(),
            SessionRequest {
                account: &p.role_account,
                subject: Subject::Role {
                    name: role.name.clone(),
                    role_id: role.role_id.clone(),
                    session_name: p.session_name.clone(),
                },
                duration_secs: secs,
                session_policy: p.session_policy.as_deref(),
                policy_arns,
                tags: Vec::new(),
                transitive: Vec::new(),
                now_ms,
            },
        )
        .map_err(|e| {
            let f = match e {
                crate::iam::IamError::Malformed(m) => Failure("MalformedPolicyDocument", m, 400),
                _ => internal(),
            };
            (f, Some(Box::new(audited())))
        })?;
    use crate::iam_api::escape;
    let body = format!(
        "<Credentials><AccessKeyId>{}</AccessKeyId><SecretAccessKey>{}</SecretAccessKey><SessionToken>{}</SessionToken><Expiration>{}</Expiration></Credentials><SubjectFromWebIdentityToken>{}</SubjectFromWebIdentityToken><AssumedRoleUser><AssumedRoleId>{}</AssumedRoleId><Arn>{}</Arn></AssumedRoleUser><Provider>{}</Provider><Audience>{}</Audience><PackedPolicySize>0</PackedPolicySize>",
        escape(&issued.access_key_id),
        escape(issued.secret.expose()),
        escape(&issued.token),
        format_iso8601(issued.expires_ms),
        escape(&sub),
        escape(&issued.assumed_id),
        escape(&partition.rewrite(&issued.arn)),
        escape(hp),
        escape(&p.audience),
    );
    // What CloudTrail records of the answer: no secret access key, no session token.
    let elements = serde_json::json!({
        "Credentials": crate::sessions::credential_elements(&issued.access_key_id, issued.expires_ms),
        "SubjectFromWebIdentityToken": sub,
        "AssumedRoleUser": {"AssumedRoleId": issued.assumed_id, "Arn": partition.rewrite(&issued.arn)},
        "Provider": hp,
        "Audience": p.audience,
    });
    Ok((body, Audited { elements, ..audited() }))
}

/// One public key of a provider.
#[derive(Debug, Clone)]
struct Jwk {
    kid: Option<String>,
    key: KeyMaterial,
}

#[derive(Debug, Clone)]
enum KeyMaterial {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// An uncompressed P-256 point (`04 || x || y`).
    P256(Vec<u8>),
}

impl Jwk {
    fn verify(&self, alg: &str, message: &[u8], sig: &[u8]) -> bool {
        match (&self.key, alg) {
            (KeyMaterial::Rsa { n, e }, "RS256") => RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, sig)
                .is_ok(),
            (KeyMaterial::P256(point), "ES256") => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, sig)
                    .is_ok()
            }
            // `none`, HMAC (a shared secret is no public key) and the rest: refused.
            _ => false,
        }
    }
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<serde_json::Value>,
}

/// Reads the RSA and P-256 signing keys of a JWKS document; others are skipped.
fn parse_jwks(bytes: &[u8]) -> Option<Vec<Jwk>> {
    let set: JwkSet = serde_json::from_slice(bytes).ok()?;
    let text =
        |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    Some(
        set.keys
            .iter()
            .filter(|k| text(k, "use").is_none_or(|u| u == "sig"))
            .filter_map(|k| {
                let kid = text(k, "kid");
                let key = match text(k, "kty")?.as_str() {
                    "RSA" => {
                        KeyMaterial::Rsa { n: b64url(&text(k, "n")?)?, e: b64url(&text(k, "e")?)? }
                    }
                    "EC" if text(k, "crv").as_deref() == Some("P-256") => {
                        let (x, y) = (b64url(&text(k, "x")?)?, b64url(&text(k, "y")?)?);
                        if x.len() != 32 || y.len() != 32 {
                            return None;
                        }
                        let mut point = vec![4u8];
                        point.extend(x);
                        point.extend(y);
                        KeyMaterial::P256(point)
                    }
                    _ => return None,
                };
                Some(Jwk { kid, key })
            })
            .collect(),
    )
}

struct Cached {
    keys: Arc<Vec<Jwk>>,
    fetched: Instant,
}

fn cache() -> &'static Mutex<HashMap<String, Cached>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Cached>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The provider's keys, from the cache while fresh and holding `kid`.
async fn provider_keys(
    app: &App,
    provider: &OidcProvider,
    kid: Option<&str>,
) -> Result<Arc<Vec<Jwk>>, Failure> {
    let source = match provider.jwks_file() {
        Some(path) => format!("file:{path}"),
        None => provider.url.clone(),
    };
    {
        let cache = cache().lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(entry) = cache.get(&source) {
            let age = entry.fetched.elapsed();
            let has_kid =
                kid.is_none_or(|kid| entry.keys.iter().any(|k| k.kid.as_deref() == Some(kid)));
            if age < KEYS_TTL && (has_kid || age < REFETCH_AFTER) {
                return Ok(entry.keys.clone());
            }
        }
    }
    // A fetch that failed is not tried again for REFETCH_AFTER: the call is not signed,
    // so otherwise anyone could have Coffer send requests to the issuer (each up to
    // FETCH_TIMEOUT) at the rate they send tokens (review 8, finding 07).
    {
        let failed = failures().lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if failed.get(&source).is_some_and(|at| at.elapsed() < REFETCH_AFTER) {
            return Err(idp_error());
        }
    }
    let keys = load_keys(app, provider).await;
    let mut failed = failures().lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    match keys {
        Err(failure) => {
            if failed.len() >= 1024 {
                failed.retain(|_, at| at.elapsed() < REFETCH_AFTER);
            }
            failed.insert(source, Instant::now());
            Err(failure)
        }
        Ok(keys) => {
            failed.remove(&source);
            drop(failed);
            cache()
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(source, Cached { keys: keys.clone(), fetched: Instant::now() });
            Ok(keys)
        }
    }
}

/// When a provider's keys last failed to load, by source (URL or file).
fn failures() -> &'static Mutex<HashMap<String, Instant>> {
    static FAILURES: OnceLock<Mutex<HashMap<String, Instant>>> = OnceLock::new();
    FAILURES.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Reads or fetches a provider's key set.
async fn load_keys(app: &App, provider: &OidcProvider) -> Result<Arc<Vec<Jwk>>, Failure> {
    let bytes = match provider.jwks_file() {
        Some(path) => {
            // Only a regular file, bounded, inside the operator's --jwks-dir (a provider
            // made before the directory was set or moved is refused here, not read).
            let path = path.to_string();
            let dir = app.config.jwks_dir.clone();
            tokio::task::spawn_blocking(move || crate::jwks_file::read(dir.as_deref(), &path))
                .await
                .map_err(|_| internal())?
                .map_err(|e| {
                    tracing::warn!(provider = %provider.arn(), error = %e, "cannot read the provider's JWKS file");
                    idp_error()
                })?
        }
        None => {
            let discovery = format!("{}/.well-known/openid-configuration", provider.url);
            let policy = crate::oidc_outbound::Policy::new(&app.config.oidc_allow_nets);
            let document = fetch(&discovery, &policy).await?;
            let jwks_uri = serde_json::from_slice::<serde_json::Value>(&document)
                .ok()
                .and_then(|v| v.get("jwks_uri").and_then(|u| u.as_str()).map(str::to_string))
                .ok_or_else(idp_error)?;
            fetch(&jwks_uri, &policy).await?
        }
    };
    let keys = Arc::new(parse_jwks(&bytes).ok_or_else(|| {
        tracing::warn!(provider = %provider.arn(), "the provider's key set is not a JWKS document");
        idp_error()
    })?);
    Ok(keys)
}

/// GETs a small document over HTTPS (system roots) or HTTP, within [`FETCH_TIMEOUT`],
/// connecting only to the addresses `policy` lets through (`oidc_outbound`): a refused
/// address fails as an unreachable provider does. Redirects are not followed.
async fn fetch(url: &str, policy: &crate::oidc_outbound::Policy) -> Result<Vec<u8>, Failure> {
    use http_body_util::{BodyExt, Empty, Limited};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let uri: axum::http::Uri = url.parse().map_err(|_| idp_error())?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| {
            tracing::warn!(error = %e, "no TLS roots to reach an OIDC provider");
            idp_error()
        })?
        .https_or_http()
        .enable_http1()
        .wrap_connector(crate::oidc_outbound::GuardedConnector::new(policy.clone()));
    let client: Client<_, Empty<axum::body::Bytes>> =
        Client::builder(TokioExecutor::new()).build(connector);
    let work = async {
        let response = client.get(uri).await.map_err(|e| {
            tracing::warn!(url, error = %e, "cannot reach an OIDC provider");
            idp_error()
        })?;
        if !response.status().is_success() {
            tracing::warn!(url, status = %response.status(), "an OIDC provider refused a request");
            return Err(idp_error());
        }
        let body = Limited::new(response.into_body(), MAX_DOCUMENT)
            .collect()
            .await
            .map_err(|_| idp_error())?;
        Ok(body.to_bytes().to_vec())
    };
    tokio::time::timeout(FETCH_TIMEOUT, work).await.map_err(|_| idp_error())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_documents_yield_rsa_and_p256_keys() {
        let doc = br#"{"keys":[
            {"kty":"RSA","kid":"r1","n":"AQAB","e":"AQAB"},
            {"kty":"EC","crv":"P-256","kid":"e1","x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","y":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
            {"kty":"oct","k":"c2VjcmV0"},
            {"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB"}]}"#;
        let keys = parse_jwks(doc).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].kid.as_deref(), Some("r1"));
        // Algorithms other than RS256/ES256 never verify, whatever the key.
        assert!(!keys[0].verify("none", b"m", b""));
        assert!(!keys[0].verify("HS256", b"m", b"x"));
    }

    #[test]
    fn issuers_match_with_or_without_a_trailing_slash() {
        assert!(iss_matches("https://issuer.example/a", "https://issuer.example/a/"));
        assert!(!iss_matches("https://issuer.example/a", "https://issuer.example/b"));
    }
}
