//! Temporary credentials: the sessions STS issues (AssumeRole, AssumeRoleWithWebIdentity,
//! GetSessionToken) and their lookup when a request signs with one.
//!
//! A session is an `iam-session` record under its access key id (`ASIA...`): whose
//! session it is (a role, or a user for GetSessionToken), when it ends, its session
//! policy and tags, the SHA-256 of its session token and its secret access key sealed
//! under the credentials key. Neither the secret nor the token is stored in plaintext:
//! the token is random (256 bits), so its hash is enough to recognise it and useless to
//! whoever reads the store; the secret must be opened to verify signatures, so it is
//! sealed like an access key's, bound to the key id, the subject's unique id and the
//! token hash, so a record edited to point at another role opens for nobody.
//!
//! A session's lookup is cached as an access key's is (the crate's lookup cache, confirmed
//! by the store-wide IAM generation every IAM write bumps), so a session's calls reuse
//! one parsed caller (and the KMS decisions remembered for it) instead of reading the
//! session and its role and parsing the role's policies on every call. What makes a
//! session refused is either an IAM write (its role or user deleted, or made again under
//! the same name with another id; a policy or tag changed), which moves the generation,
//! or its expiry and token, which every use checks against the cached entry: so a session
//! ends at its expiry on the very next request, and one of a deleted role stops at once
//! (within the watcher's 1 s on another PostgreSQL node). Issuing a session is not an IAM
//! write, and a session record never changes once written (only ended ones are purged).

use super::{Caller, IamError, KnownKey, decode, encode, load_user, store_error, write};
use crate::Iam;
use crate::directory::{Tag, identity_documents, role_documents, role_in, same_tag_key};
use coffer_auth::policy::{Policy, PolicyKind};
use coffer_auth::principal::{ID_RANDOM_LEN, Principal, SECRET_KEY_LEN, SecretAccessKey};
use coffer_core::AwsError;
use coffer_core::validation::{Constraint, Violation};
use coffer_crypto::random_bytes;
use coffer_store::{ReadTxn, Store, StoreError, WriteTxn};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use zeroize::Zeroizing;

pub const SESSION_KIND: &str = "iam-session";
/// The sessions issued to a user (GetSessionToken's and GetFederationToken's), one empty
/// record each under `<account>/<user id>/<access key id>`: a rename finds the user's
/// sessions through it instead of reading every session of the store (sts15).
const USER_SESSION_KIND: &str = "iam-session-of-user";
/// Bytes of randomness in a session token.
const TOKEN_BYTES: usize = 32;
/// At most this many ended sessions are removed by each new one, so issuing stays cheap
/// and the records of ended sessions do not pile up.
const PURGE_BATCH: usize = 64;

/// Whose session it is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type")]
pub enum Subject {
    /// An assumed role: its name and the unique id it had when assumed.
    Role { name: String, role_id: String, session_name: String },
    /// GetSessionToken: the user, with its unique id.
    User { name: String, user_id: String },
    /// GetFederationToken: the federated user `federated` of the user `name` (unique id
    /// `user_id`), who acts with the user's current policies intersected with the session
    /// policy; without a session policy, with no permission at all (as AWS documents).
    Federated { name: String, user_id: String, federated: String },
}

impl Subject {
    /// The unique id of the user the session was issued to, for a user's or federated
    /// session.
    fn user_id(&self) -> Option<&str> {
        match self {
            Subject::User { user_id, .. } | Subject::Federated { user_id, .. } => Some(user_id),
            Subject::Role { .. } => None,
        }
    }

    fn unique_id(&self) -> &str {
        match self {
            Subject::Role { role_id, .. } => role_id,
            Subject::User { user_id, .. } | Subject::Federated { user_id, .. } => user_id,
        }
    }
}

#[derive(Clone, Serialize, Deserialize)]
struct SessionRecord {
    access_key_id: String,
    account: String,
    subject: Subject,
    created_ms: i64,
    expires_ms: i64,
    /// Hex SHA-256 of the session token.
    token_hash: String,
    /// The secret access key sealed under the credentials key (base64).
    sealed_secret: String,
    /// The session policy, as given: the session may do only what it also allows.
    #[serde(default)]
    session_policy: Option<String>,
    /// Managed session policies (PolicyArns, as IAM's records keep ARNs): the session may
    /// do only what the session policies together allow. Their documents are read at each
    /// lookup, as the policies are then (AWS packs only their ARNs into the token).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    policy_arns: Vec<String>,
    /// Session tags (`aws:PrincipalTag/<key>`), over the role's own tags.
    #[serde(default)]
    tags: Vec<Tag>,
    /// The keys of `tags` that pass to every session this one assumes (TransitiveTagKeys,
    /// and those it inherited itself), which such a session may not set again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    transitive: Vec<String>,
}

/// Where the user session index keeps session `id` of the user `user_id` of `account`.
fn user_session_key(account: &str, user_id: &str, id: &str) -> String {
    format!("{account}/{user_id}/{id}")
}

/// Names the user with unique id `user_id` `new_name` in its GetSessionToken and
/// GetFederationToken sessions (UpdateUser): a session is bound to the unique id, which a
/// rename keeps, so it goes on working under the new name. The user's sessions are found
/// through the user session index, a page at a time (ended ones are few, being purged as
/// new sessions are issued). A session issued before the index existed is not found, and
/// ends with the rename (its user is looked up by the old name): fail closed.
pub(crate) fn rename_user_sessions(
    tx: &mut dyn WriteTxn,
    account: &str,
    user_id: &str,
    new_name: &str,
) -> Result<(), StoreError> {
    let mut renamed = Vec::new();
    let prefix = user_session_key(account, user_id, "");
    let mut pages = coffer_store::RecordPages::new(USER_SESSION_KIND, &prefix, 256);
    while let Some(page) = pages.next_page(tx)? {
        for (key, _) in page {
            let id = &key[prefix.len()..];
            let Some(bytes) = tx.record(SESSION_KIND, id)? else { continue };
            let mut record: SessionRecord = decode(&bytes)?;
            // A federated user's session names its user too, and goes on as well.
            let (Subject::User { name, user_id: id }
            | Subject::Federated { name, user_id: id, .. }) = &mut record.subject
            else {
                continue;
            };
            if record.account == account && id == user_id {
                *name = new_name.to_string();
                renamed.push(record);
            }
        }
    }
    for record in renamed {
        tx.put_record(SESSION_KIND, &record.access_key_id, &encode(&record))?;
    }
    Ok(())
}

/// The account of the temporary credentials with key id `id`, if they exist.
pub(crate) fn session_account(tx: &dyn ReadTxn, id: &str) -> Result<Option<String>, StoreError> {
    let Some(bytes) = tx.record(SESSION_KIND, id)? else { return Ok(None) };
    Ok(Some(decode::<SessionRecord>(&bytes)?.account))
}

/// A session's lookup as cached: the caller and opened secret, with what each use must
/// still check (the token presented, the expiry).
pub(crate) struct CachedSession {
    key: Arc<KnownKey>,
    /// Hex SHA-256 of the session token.
    token_hash: String,
    expires_ms: i64,
}

impl crate::Weighed for Arc<CachedSession> {
    fn weight(&self) -> usize {
        self.key.caller.policy_chars()
    }
}

impl CachedSession {
    /// Whether `hash` (of the token presented) is this session's, compared in constant time.
    fn token_matches(&self, hash: &str) -> bool {
        tokens_match(hash, &self.token_hash)
    }
}

fn tokens_match(presented: &str, stored: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(presented.as_bytes(), stored.as_bytes())
        .is_ok()
}

/// Temporary credentials as issued: shown once, then only their hash and sealed secret
/// remain.
pub struct IssuedSession {
    pub access_key_id: String,
    pub secret: SecretAccessKey,
    pub token: Zeroizing<String>,
    pub expires_ms: i64,
    /// `arn:aws:sts::<account>:assumed-role/<role>/<session>` (roles) or the user's ARN.
    pub arn: String,
    /// `<role id>:<session>` (roles) or the user's id.
    pub assumed_id: String,
}

impl std::fmt::Debug for IssuedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedSession")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// What a new session is for.
pub struct SessionRequest<'a> {
    pub account: &'a str,
    pub subject: Subject,
    pub duration_secs: i64,
    pub session_policy: Option<&'a str>,
    /// Managed session policies: customer managed policies of `account`, as IAM's records
    /// keep their ARNs (the caller found each with [`Iam::first_unknown_policy`]).
    pub policy_arns: Vec<String>,
    pub tags: Vec<Tag>,
    /// The keys of `tags` set as transitive (the caller checked each is one of them).
    pub transitive: Vec<String>,
    pub now_ms: i64,
}

fn token_hash(token: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn session_aad(account: &str, id: &str, subject: &Subject, hash: &str) -> Vec<u8> {
    format!("coffer iam session v1\0{account}\0{}\0{id}\0{hash}", subject.unique_id()).into_bytes()
}

/// The most characters of plain text a session policy may have, as AWS documents it.
const MAX_SESSION_POLICY_CHARS: usize = 2048;

/// Refuses a session policy longer than AWS takes (review 13, finding 04: any size up to
/// the request body was kept with the session and parsed on each of its calls). AWS's
/// model no longer bounds the member, so the words are those of its bound elsewhere; the
/// value is quoted short enough for the message to stay within 512 characters.
pub fn check_session_policy_length(doc: &str) -> Result<(), IamError> {
    if doc.chars().count() <= MAX_SESSION_POLICY_CHARS {
        return Ok(());
    }
    let constraint = Constraint::MaxLength(MAX_SESSION_POLICY_CHARS as i64);
    Err(IamError::Invalid(Violation::value_at_most(doc, 256, "policy", constraint).message()))
}

/// A temporary access key id: `ASIA` and 16 base-32 characters.
fn session_key_id() -> String {
    let random: [u8; ID_RANDOM_LEN] =
        random_bytes(ID_RANDOM_LEN).try_into().expect("requested length");
    let id = coffer_auth::principal::access_key_id(&random);
    format!("ASIA{}", &id[4..])
}

impl Iam {
    /// Issues temporary credentials. The caller has already decided that the session may
    /// be had (trust policy, web identity token); this records it.
    pub fn issue_session(
        &self,
        store: &dyn Store,
        req: SessionRequest<'_>,
    ) -> Result<IssuedSession, IamError> {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        if let Some(doc) = req.session_policy {
            check_session_policy_length(doc)?;
            crate::directory::check_policy(doc)?;
        }
        let id = session_key_id();
        let secret_random: Zeroizing<Vec<u8>> = Zeroizing::new(random_bytes(SECRET_KEY_LEN));
        let secret_random: &[u8; SECRET_KEY_LEN] =
            secret_random[..].try_into().expect("requested length");
        let secret = coffer_auth::principal::secret_access_key(secret_random);
        let token_random = Zeroizing::new(random_bytes(TOKEN_BYTES));
        // Shaped like AWS's tokens (base64, starting `IQo`), so clients that look at it
        // are content; only its hash is kept.
        let token = Zeroizing::new(format!("IQoJb3JpZ2luX2Vj{}", b64.encode(&token_random[..])));
        let hash = token_hash(&token);
        let expires_ms = req.now_ms + req.duration_secs * 1000;
        let aad = session_aad(req.account, &id, &req.subject, &hash);
        let sealed = b64.encode(coffer_crypto::seal(
            &self.credentials_key,
            secret.expose().as_bytes(),
            &aad,
        ));
        let record = SessionRecord {
            access_key_id: id.clone(),
            account: req.account.to_string(),
            subject: req.subject.clone(),
            created_ms: req.now_ms,
            expires_ms,
            token_hash: hash,
            sealed_secret: sealed,
            session_policy: req.session_policy.map(str::to_string),
            policy_arns: req.policy_arns,
            tags: req.tags,
            transitive: req.transitive,
        };
        let now = req.now_ms;
        // Not an IAM write: a new session changes nothing any cached lookup holds.
        let user_path = write(store, |tx| {
            let ended: Vec<(String, SessionRecord)> = tx
                .records(SESSION_KIND, "", None, 4 * PURGE_BATCH)?
                .into_iter()
                .filter_map(|(k, b)| {
                    let r: SessionRecord = decode(&b).ok()?;
                    (r.expires_ms <= now).then_some((k, r))
                })
                .take(PURGE_BATCH)
                .collect();
            for (k, r) in ended {
                tx.delete_record(SESSION_KIND, &k)?;
                if let Some(user_id) = r.subject.user_id() {
                    tx.delete_record(
                        USER_SESSION_KIND,
                        &user_session_key(&r.account, user_id, &k),
                    )?;
                }
            }
            tx.put_record(SESSION_KIND, &id, &encode(&record))?;
            if let Some(user_id) = req.subject.user_id() {
                tx.put_record(
                    USER_SESSION_KIND,
                    &user_session_key(req.account, user_id, &id),
                    b"",
                )?;
            }
            // A user's session is named as the user is, with its IAM path.
            Ok(match &req.subject {
                Subject::User { name, .. } => load_user(tx, req.account, name)?.map(|u| u.path),
                Subject::Role { .. } | Subject::Federated { .. } => None,
            })
        })?;
        let (arn, assumed_id) = match &req.subject {
            Subject::Role { name, role_id, session_name } => (
                assumed_role_arn(req.account, name, session_name),
                format!("{role_id}:{session_name}"),
            ),
            Subject::User { name, user_id } => (
                coffer_auth::principal::user_arn_at(
                    req.account,
                    user_path.as_deref().unwrap_or("/"),
                    name,
                ),
                user_id.clone(),
            ),
            Subject::Federated { federated, .. } => {
                let p = Principal::federated_user(req.account, federated);
                (p.arn, p.user_id)
            }
        };
        Ok(IssuedSession { access_key_id: id, secret, token, expires_ms, arn, assumed_id })
    }

    /// The index of the first of `arns` (as IAM's records keep ARNs) that names no
    /// customer managed policy of `account` and no AWS managed policy, if any: a managed
    /// session policy must be a policy of the session's account (AWS: "The policies must
    /// exist in the same account as the role", or as the IAM user that federates), and AWS
    /// managed policies exist in every account.
    pub fn first_unknown_policy(
        &self,
        store: &dyn Store,
        account: &str,
        arns: &[String],
    ) -> Result<Option<usize>, IamError> {
        let mut unknown = None;
        store
            .read(&mut |tx| {
                unknown = None;
                for (i, arn) in arns.iter().enumerate() {
                    if crate::directory::load_policy(tx, account, arn)?.is_none() {
                        unknown = Some(i);
                        break;
                    }
                }
                Ok(())
            })
            .map_err(IamError::Store)?;
        Ok(unknown)
    }

    /// The caller behind temporary credentials: `Ok(None)` for an unknown key, a wrong
    /// token or a session whose role or user is gone; `Ok(Err(Expired))` past its expiry.
    /// Served from the lookup cache while the store's IAM generation has not moved; the
    /// token and the expiry are checked on every use, cached or not.
    pub fn lookup_session(
        &self,
        store: &dyn Store,
        access_key_id: &str,
        token: &str,
        now_ms: i64,
    ) -> Result<Result<Option<Arc<KnownKey>>, Expired>, AwsError> {
        let hash = token_hash(token);
        let mut expired = false;
        let found = self.sessions.lookup(store, access_key_id, &mut |tx| {
            expired = false;
            match self.load_session(tx, access_key_id, &hash, now_ms)? {
                Ok(found) => Ok(found.map(Arc::new)),
                Err(Expired) => {
                    expired = true;
                    Ok(None)
                }
            }
        })?;
        if expired {
            return Ok(Err(Expired));
        }
        let Some(session) = found else { return Ok(Ok(None)) };
        // A wrong token leaves the entry alone: whoever merely knows the key id (it is in
        // logs and the trail) must not be able to evict it.
        if !session.token_matches(&hash) {
            return Ok(Ok(None));
        }
        if session.expires_ms <= now_ms {
            self.sessions.remove(access_key_id);
            return Ok(Err(Expired));
        }
        Ok(Ok(Some(session.key.clone())))
    }

    /// The transitive session tags of the session `access_key_id` (none for a long-term
    /// key, or a session without any): the tags a role it assumes inherits. The caller
    /// was authenticated with that session, whose record never changes.
    pub fn transitive_tags(
        &self,
        store: &dyn Store,
        access_key_id: &str,
    ) -> Result<Vec<Tag>, IamError> {
        let mut found = Vec::new();
        store
            .read(&mut |tx| {
                found.clear();
                let Some(bytes) = tx.record(SESSION_KIND, access_key_id)? else { return Ok(()) };
                let record: SessionRecord = decode(&bytes)?;
                let transitive =
                    |t: &&Tag| record.transitive.iter().any(|k| same_tag_key(k, &t.key));
                found = record.tags.iter().filter(transitive).cloned().collect();
                Ok(())
            })
            .map_err(IamError::Store)?;
        Ok(found)
    }

    /// The ARN a session acts as, for the request log line of a call it already made
    /// (nothing is verified here: the call was authenticated before).
    pub fn session_arn(&self, store: &dyn Store, access_key_id: &str) -> Option<String> {
        let now = (self.sessions.clock)();
        if let Some(entry) = self.sessions.get(access_key_id, self.sessions.current(), now) {
            return Some(entry.key.key.caller.principal.arn.clone());
        }
        let mut found = None;
        store
            .read(&mut |tx| {
                found = None;
                let Some(bytes) = tx.record(SESSION_KIND, access_key_id)? else { return Ok(()) };
                let Ok(record) = decode::<SessionRecord>(&bytes) else { return Ok(()) };
                // A user's session is named as the user is, with its IAM path (review 10).
                let path = match &record.subject {
                    Subject::User { name, .. } => {
                        load_user(tx, &record.account, name)?.map(|u| u.path)
                    }
                    Subject::Role { .. } | Subject::Federated { .. } => None,
                };
                found = Some((record, path));
                Ok(())
            })
            .ok()?;
        let (record, path) = found?;
        Some(match record.subject {
            Subject::Role { name, session_name, .. } => {
                assumed_role_arn(&record.account, &name, &session_name)
            }
            Subject::User { name, .. } => coffer_auth::principal::user_arn_at(
                &record.account,
                path.as_deref().unwrap_or("/"),
                &name,
            ),
            Subject::Federated { federated, .. } => {
                Principal::federated_user(&record.account, &federated).arn
            }
        })
    }

    /// Reads a session and its subject in `tx`, bypassing the cache: `Ok(None)` for an
    /// unknown key, a token whose hash is not `hash`, or a subject that is gone.
    fn load_session(
        &self,
        tx: &dyn ReadTxn,
        access_key_id: &str,
        hash: &str,
        now_ms: i64,
    ) -> Result<Result<Option<CachedSession>, Expired>, AwsError> {
        let Some(bytes) = tx.record(SESSION_KIND, access_key_id).map_err(store_error)? else {
            return Ok(Ok(None));
        };
        let record: SessionRecord = decode(&bytes).map_err(store_error)?;
        if record.access_key_id != access_key_id || !tokens_match(hash, &record.token_hash) {
            return Ok(Ok(None));
        }
        if record.expires_ms <= now_ms {
            return Ok(Err(Expired));
        }
        let mut issuer = None;
        let (principal, documents, mut tags) = match &record.subject {
            Subject::Role { name, role_id, session_name } => {
                let Some(role) = role_in(tx, &record.account, name).map_err(store_error)? else {
                    return Ok(Ok(None));
                };
                if &role.role_id != role_id {
                    return Ok(Ok(None));
                }
                let docs = role_documents(tx, &role).map_err(store_error)?;
                let principal = Principal::assumed_role(
                    &record.account,
                    name,
                    &role.arn(),
                    role_id,
                    session_name,
                );
                let tags: BTreeMap<String, String> =
                    role.tags.iter().map(|t| (t.key.clone(), t.value.clone())).collect();
                (principal, docs, tags)
            }
            Subject::User { name, user_id } => {
                let Some((user, docs, tags)) = issuing_user(tx, &record.account, name, user_id)?
                else {
                    return Ok(Ok(None));
                };
                (user.principal(), docs, tags)
            }
            Subject::Federated { name, user_id, federated } => {
                // The user's policies as they are now decide, as AWS evaluates them on each
                // request; a deleted user (or one made again, with another id) ends it.
                let Some((user, docs, tags)) = issuing_user(tx, &record.account, name, user_id)?
                else {
                    return Ok(Ok(None));
                };
                issuer = Some(user.principal());
                (Principal::federated_user(&record.account, federated), docs, tags)
            }
        };
        for t in &record.tags {
            // A session tag replaces the role's or user's tag of its key, keys compared as
            // IAM compares them (a role's `Team` and a session's `team` are one key).
            tags.retain(|key, _| !same_tag_key(key, &t.key));
            tags.insert(t.key.clone(), t.value.clone());
        }
        use base64::Engine;
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(&record.sealed_secret)
            .map_err(|_| AwsError::internal())?;
        let aad = session_aad(&record.account, access_key_id, &record.subject, &record.token_hash);
        let Ok(opened) = coffer_crypto::open(&self.credentials_key, &sealed, &aad) else {
            tracing::error!(
                access_key_id,
                "session record does not match its sealed secret; refused"
            );
            return Ok(Ok(None));
        };
        let text = std::str::from_utf8(opened.expose()).map_err(|_| AwsError::internal())?;
        let secret = SecretAccessKey::new(Zeroizing::new(text.to_string()));
        let policies = parse_all(&documents);
        let mut session_policies = session_policies_of(tx, &record).map_err(store_error)?;
        // A federated user without a session policy has no permissions (AWS: "If you do not
        // pass a policy to this operation, the resulting federated user session has no
        // permissions"), but for resource policies that name it.
        if session_policies.is_none() && matches!(record.subject, Subject::Federated { .. }) {
            session_policies = Some(vec![allows_nothing()]);
        }
        let key = KnownKey {
            caller: Arc::new(Caller {
                session_policies,
                principal_tags: tags,
                session_issued_ms: Some(record.created_ms),
                session_issuer: issuer,
                ..Caller::new(principal, policies)
            }),
            secret,
        };
        Ok(Ok(Some(CachedSession {
            key: Arc::new(key),
            token_hash: record.token_hash,
            expires_ms: record.expires_ms,
        })))
    }
}

/// The session policies of a session, parsed: its inline one and the current default
/// version of each managed one, which together bound what it may do (AWS: a session's
/// permissions are the intersection of its identity's policies and the session
/// policies); `None` when it was given none. An inline policy that no longer parses
/// allows nothing, and a managed one since deleted adds nothing, so a session given
/// session policies never does more than they allowed (fail closed).
fn session_policies_of(
    tx: &dyn ReadTxn,
    record: &SessionRecord,
) -> Result<Option<Vec<Policy>>, StoreError> {
    if record.session_policy.is_none() && record.policy_arns.is_empty() {
        return Ok(None);
    }
    let mut policies: Vec<Policy> = record
        .session_policy
        .iter()
        .map(|doc| {
            // Read like the stored policies (`parse_all`): a Deny's IAM and STS ARNs in the
            // records' partition, so `Caller::in_partition` reads them in a request's.
            Policy::parse(doc, PolicyKind::Identity)
                .unwrap_or_else(|_| deny_nothing_allowed())
                .into_global_arns_in(coffer_auth::principal::STORED)
        })
        .collect();
    let arns: std::collections::BTreeSet<String> = record.policy_arns.iter().cloned().collect();
    let mut managed = Vec::new();
    crate::directory::attached_documents(tx, &record.account, &arns, &mut managed)?;
    policies.extend(parse_all(&managed));
    Ok(Some(policies))
}

/// Temporary credentials past their expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expired;

/// A stored policy document (`label` names where it came from: an attached policy's ARN,
/// an inline policy's name) as requests are decided on it. IAM's records are kept in
/// `aws`: a Deny written in another partition's ARNs reads in it (`Caller::in_partition`
/// reads them in a request's). An AWS managed policy is parsed once per process and
/// shared.
pub(crate) fn parse_stored(label: &str, document: &str) -> Result<Policy, Vec<String>> {
    if let Some(aws) = crate::aws_managed::named(label)
        && aws.document == document
    {
        return Ok(aws.policy());
    }
    Policy::parse(document, PolicyKind::Identity)
        .map(|p| p.into_global_arns_in(coffer_auth::principal::STORED))
}

pub(crate) fn parse_all(documents: &[(String, String)]) -> Vec<Policy> {
    documents
        .iter()
        .filter_map(|(name, doc)| match parse_stored(name, doc) {
            Ok(p) => Some(p),
            Err(problems) => {
                tracing::error!(policy = %name, ?problems, "stored policy does not parse; ignored");
                None
            }
        })
        .collect()
}

/// A session policy that allows no action (and denies none explicitly): what a federated
/// user without a session policy may do, so a denial says no session policy allows it.
fn allows_nothing() -> Policy {
    Policy::parse(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"coffer:NoAction","Resource":"*"}]}"#,
        PolicyKind::Identity,
    )
    .expect("fixed policy parses")
}

/// A session policy that allows nothing.
fn deny_nothing_allowed() -> Policy {
    Policy::parse(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}"#,
        PolicyKind::Identity,
    )
    .expect("fixed policy parses")
}

/// The ARN of a role session, as IAM's records keep it (`arn:aws:sts::`; answers show it
/// in the request's partition).
fn assumed_role_arn(account: &str, role: &str, session_name: &str) -> String {
    let resource = format!("assumed-role/{role}/{session_name}");
    coffer_auth::principal::STORED.arn("sts", "", account, &resource)
}

/// A session's user record, its identity policy documents and its tags.
type IssuingUser = (crate::UserRecord, Vec<(String, String)>, BTreeMap<String, String>);

/// The user a session was issued to, as it is now, with its identity policies and tags:
/// `None` once it is deleted or made again (another unique id), which ends the session.
fn issuing_user(
    tx: &dyn ReadTxn,
    account: &str,
    name: &str,
    user_id: &str,
) -> Result<Option<IssuingUser>, AwsError> {
    let Some(user) = load_user(tx, account, name).map_err(store_error)? else {
        return Ok(None);
    };
    if user.user_id != user_id {
        return Ok(None);
    }
    let docs = identity_documents(tx, &user).map_err(store_error)?;
    let tags = user.tags.iter().map(|t| (t.key.clone(), t.value.clone())).collect();
    Ok(Some((user, docs, tags)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::Entity;
    use coffer_crypto::MasterKey;
    use coffer_store::MemoryStore;

    const ACCOUNT: &str = "111122223333";
    const TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"sts:AssumeRole"}]}"#;
    const READ: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"*"}]}"#;

    /// A 900-second session of `subject` in `ACCOUNT`, issued at 1 s, without tags.
    fn request(subject: Subject, session_policy: Option<&str>) -> SessionRequest<'_> {
        SessionRequest {
            account: ACCOUNT,
            subject,
            duration_secs: 900,
            session_policy,
            policy_arns: Vec::new(),
            tags: Vec::new(),
            transitive: Vec::new(),
            now_ms: 1_000,
        }
    }

    /// A document of about `chars` characters granting `secretsmanager:GetSecretValue` on
    /// made-up secrets.
    fn sized_policy(chars: usize, tag: &str) -> String {
        let resources: Vec<String> = (0..chars / 70)
            .map(|i| format!("\"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:{tag}-{i:06}\""))
            .collect();
        format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":[{}]}}]}}"#,
            resources.join(",")
        )
    }

    /// Each cached session holds its role's policies parsed: the cache is bounded by the
    /// policy text its entries hold, not only by their number, so sessions of a role with
    /// as much policy as IAM allows cannot fill memory 4,096 times over (review 14,
    /// finding 01: about 1 MB per session of a role of 0.8 MB of policy text).
    #[test]
    fn cached_sessions_hold_a_bounded_amount_of_policy_text() {
        let store = MemoryStore::new();
        let iam = Iam::open(&MasterKey::generate(), &store).unwrap();
        let role =
            iam.create_role(&store, ACCOUNT, "big", "/", TRUST, "", None, Vec::new(), 0).unwrap();
        iam.put_inline_policy(
            &store,
            Entity::Role,
            ACCOUNT,
            "big",
            "i",
            &sized_policy(10_000, "i"),
        )
        .unwrap();
        for n in 0..crate::directory::MAX_ATTACHED {
            let doc = sized_policy(6_000, &format!("m{n}"));
            let name = format!("m{n}");
            let p =
                iam.create_policy(&store, ACCOUNT, &name, "/", &doc, "", Vec::new(), 0).unwrap();
            iam.attach_policy(&store, Entity::Role, ACCOUNT, "big", &p.arn()).unwrap();
        }
        let sessions = 800;
        for n in 0..sessions {
            let subject = Subject::Role {
                name: "big".into(),
                role_id: role.role_id.clone(),
                session_name: format!("s{n}"),
            };
            let request = request(subject, None);
            let issued = iam.issue_session(&store, request).unwrap();
            let found = iam.lookup_session(&store, &issued.access_key_id, &issued.token, 2_000);
            assert!(found.unwrap().unwrap().is_some());
        }
        let cached = iam.cached_keys();
        assert!(cached < sessions, "{cached} sessions of about 70,000 characters each cached");
        assert!(cached > 0);
    }

    #[test]
    fn a_session_authenticates_until_it_expires_and_stops_when_its_role_is_deleted() {
        let store = MemoryStore::new();
        let iam = Iam::open(&MasterKey::generate(), &store).unwrap();
        let role = iam
            .create_role(&store, ACCOUNT, "reader", "/", TRUST, "", None, Vec::new(), 0)
            .unwrap();
        iam.put_inline_policy(&store, Entity::Role, ACCOUNT, "reader", "read", READ).unwrap();
        let subject = Subject::Role {
            name: "reader".into(),
            role_id: role.role_id.clone(),
            session_name: "s1".into(),
        };
        let issued = iam.issue_session(&store, request(subject, None)).unwrap();
        assert!(issued.access_key_id.starts_with("ASIA"));
        assert_eq!(issued.arn, "arn:aws:sts::111122223333:assumed-role/reader/s1");
        // Neither the token nor the secret is in the stored record.
        let mut raw = Vec::new();
        store
            .read(&mut |tx| {
                raw = tx.record(SESSION_KIND, &issued.access_key_id)?.unwrap();
                Ok(())
            })
            .unwrap();
        let raw = String::from_utf8(raw).unwrap();
        assert!(!raw.contains(issued.token.as_str()) && !raw.contains(issued.secret.expose()));
        let found =
            iam.lookup_session(&store, &issued.access_key_id, &issued.token, 2_000).unwrap();
        let key = found.unwrap().unwrap();
        assert_eq!(key.secret().expose(), issued.secret.expose());
        assert_eq!(
            key.caller.principal.role_arn.as_deref(),
            Some("arn:aws:iam::111122223333:role/reader")
        );
        assert_eq!(key.caller.policies.len(), 1);
        let wrong = iam.lookup_session(&store, &issued.access_key_id, "IQoWRONG", 2_000).unwrap();
        assert!(matches!(wrong, Ok(None)));
        let late =
            iam.lookup_session(&store, &issued.access_key_id, &issued.token, 901_000).unwrap();
        assert_eq!(late.err(), Some(Expired));
        iam.delete_inline_policy(&store, Entity::Role, ACCOUNT, "reader", "read").unwrap();
        iam.delete_role(&store, ACCOUNT, "reader").unwrap();
        let gone = iam.lookup_session(&store, &issued.access_key_id, &issued.token, 2_000).unwrap();
        assert!(matches!(gone, Ok(None)));
    }

    /// A role `reader` (one inline policy) and a session of it issued at 1 s for 900 s,
    /// seen through an IAM and, standing for another process (a second node, `coffer
    /// admin`), a second IAM on the same store.
    struct Assumed {
        store: MemoryStore,
        iam: Iam,
        elsewhere: Iam,
        issued: IssuedSession,
    }

    fn assumed() -> Assumed {
        let store = MemoryStore::new();
        let master = MasterKey::generate();
        let iam = Iam::open(&master, &store).unwrap();
        let elsewhere = Iam::open(&master, &store).unwrap();
        let role = iam
            .create_role(&store, ACCOUNT, "reader", "/", TRUST, "", None, Vec::new(), 0)
            .unwrap();
        iam.put_inline_policy(&store, Entity::Role, ACCOUNT, "reader", "read", READ).unwrap();
        let subject = Subject::Role {
            name: "reader".into(),
            role_id: role.role_id.clone(),
            session_name: "s1".into(),
        };
        let request = request(subject, None);
        let issued = iam.issue_session(&store, request).unwrap();
        Assumed { store, iam, elsewhere, issued }
    }

    impl Assumed {
        /// The session's lookup at `now_ms` with `token`, through `self.iam`.
        fn with_token(&self, token: &str, now_ms: i64) -> Result<Option<Arc<Caller>>, Expired> {
            let found =
                self.iam.lookup_session(&self.store, &self.issued.access_key_id, token, now_ms);
            found.unwrap().map(|key| key.map(|key| key.caller.clone()))
        }

        fn at(&self, now_ms: i64) -> Result<Option<Arc<Caller>>, Expired> {
            self.with_token(&self.issued.token, now_ms)
        }

        fn policies(&self) -> Option<usize> {
            self.at(2_000).unwrap().map(|caller| caller.policies.len())
        }
    }

    /// A session's calls share one caller (one parse of its role's policies, and the KMS
    /// decisions remembered for it) while nothing changed.
    #[test]
    fn a_repeated_session_lookup_reuses_the_cached_caller() {
        let s = assumed();
        let first = s.at(2_000).unwrap().unwrap();
        let second = s.at(3_000).unwrap().unwrap();
        assert!(Arc::ptr_eq(&first, &second), "confirmed, not read again");
        assert_eq!(s.iam.cached_keys(), 1);
        // The request log line's ARN comes from the cache too.
        assert_eq!(
            s.iam.session_arn(&MemoryStore::new(), &s.issued.access_key_id).as_deref(),
            Some("arn:aws:sts::111122223333:assumed-role/reader/s1")
        );
    }

    /// The token and the expiry are checked on every use of a cached session; a wrong
    /// token does not evict it (whoever knows only the key id cannot flush it).
    #[test]
    fn a_cached_session_checks_its_token_and_ends_at_its_expiry() {
        let s = assumed();
        let first = s.at(2_000).unwrap().unwrap();
        assert!(matches!(s.with_token("IQoWRONG", 2_000), Ok(None)));
        assert!(matches!(s.with_token("", 2_000), Ok(None)));
        assert!(Arc::ptr_eq(&first, &s.at(900_999).unwrap().unwrap()), "still cached");
        assert_eq!(s.at(901_000).err(), Some(Expired));
        assert_eq!(s.iam.cached_keys(), 0, "an ended session's secret leaves memory");
        assert_eq!(s.at(901_001).err(), Some(Expired));
        // A wrong token past the expiry is an unknown client, as before the cache.
        assert!(matches!(s.with_token("IQoWRONG", 901_001), Ok(None)));
    }

    /// A change to the role through this IAM, or through another process, reaches a
    /// cached session on its very next lookup.
    #[test]
    fn a_cached_session_sees_its_roles_changes_at_once() {
        let s = assumed();
        assert_eq!(s.policies(), Some(1));
        s.iam.put_inline_policy(&s.store, Entity::Role, ACCOUNT, "reader", "more", READ).unwrap();
        assert_eq!(s.policies(), Some(2));
        s.elsewhere
            .delete_inline_policy(&s.store, Entity::Role, ACCOUNT, "reader", "more")
            .unwrap();
        assert_eq!(s.policies(), Some(1));
        let blue = vec![Tag { key: "team".into(), value: "blue".into() }];
        s.elsewhere.tag_entity(&s.store, Entity::Role, ACCOUNT, "reader", blue).unwrap();
        let caller = s.at(2_000).unwrap().unwrap();
        assert_eq!(caller.principal_tags.get("team").map(String::as_str), Some("blue"));
        s.elsewhere
            .delete_inline_policy(&s.store, Entity::Role, ACCOUNT, "reader", "read")
            .unwrap();
        s.elsewhere.delete_role(&s.store, ACCOUNT, "reader").unwrap();
        assert!(matches!(s.at(2_000), Ok(None)));
        assert_eq!(s.iam.cached_keys(), 0);
        // Made again under the same name, the role has another id: the session stays dead.
        s.elsewhere
            .create_role(&s.store, ACCOUNT, "reader", "/", TRUST, "", None, Vec::new(), 0)
            .unwrap();
        assert!(matches!(s.at(2_000), Ok(None)));
    }

    /// GetFederationToken's session acts as the federated user with the user's current
    /// policies; without a session policy it allows nothing; it ends at its expiry and
    /// with its user (sts14).
    #[test]
    fn a_federated_session_acts_as_the_federated_user_within_its_users_life() {
        let store = MemoryStore::new();
        let iam = Iam::open(&MasterKey::generate(), &store).unwrap();
        let user = iam.create_user_with(&store, ACCOUNT, "alice", "/", Vec::new(), 0).unwrap();
        iam.put_inline_policy(&store, Entity::User, ACCOUNT, "alice", "read", READ).unwrap();
        let issue = |policy: Option<&str>| {
            let subject = Subject::Federated {
                name: "alice".into(),
                user_id: user.user_id.clone(),
                federated: "bob".into(),
            };
            let request = request(subject, policy);
            iam.issue_session(&store, request).unwrap()
        };
        let bare = issue(None);
        assert_eq!(bare.arn, "arn:aws:sts::111122223333:federated-user/bob");
        assert_eq!(bare.assumed_id, "111122223333:bob");
        let look =
            |s: &IssuedSession, now| iam.lookup_session(&store, &s.access_key_id, &s.token, now);
        let caller = look(&bare, 2_000).unwrap().unwrap().unwrap().caller.clone();
        assert!(caller.principal.is_federated_user());
        assert_eq!(caller.policies.len(), 1, "the user's policies");
        assert_eq!(caller.session_issuer.as_ref().map(|p| p.name.as_str()), Some("alice"));
        let nothing = caller.session_policies.as_ref().expect("no session policy allows nothing");
        let request = coffer_auth::policy::Request {
            principal: &caller.principal,
            action: "secretsmanager:GetSecretValue",
            resource: "arn:aws:secretsmanager:us-east-1:111122223333:secret:x",
            resource_account: ACCOUNT,
            context: &coffer_auth::policy::Context::default(),
        };
        let decided = coffer_auth::policy::evaluate(&request, nothing, None);
        assert!(!decided.is_allowed());
        let with_policy = issue(Some(READ));
        assert_eq!(look(&with_policy, 901_000).unwrap().err(), Some(Expired));
        iam.delete_inline_policy(&store, Entity::User, ACCOUNT, "alice", "read").unwrap();
        iam.delete_user(&store, ACCOUNT, "alice").unwrap();
        assert!(matches!(look(&with_policy, 2_000), Ok(Ok(None))));
    }

    /// GetSessionToken's session acts as its user, path included: the ARN it is issued
    /// with and the one the request log names are the user's own (`user/<path>/<name>`),
    /// as policies and long-term keys see it (review 10, finding 02).
    #[test]
    fn a_user_session_is_named_with_the_users_path() {
        let store = MemoryStore::new();
        let iam = Iam::open(&MasterKey::generate(), &store).unwrap();
        let user =
            iam.create_user_with(&store, ACCOUNT, "alice", "/team/ops/", Vec::new(), 0).unwrap();
        let issued = iam
            .issue_session(
                &store,
                request(
                    Subject::User { name: "alice".into(), user_id: user.user_id.clone() },
                    None,
                ),
            )
            .unwrap();
        let expected = "arn:aws:iam::111122223333:user/team/ops/alice";
        assert_eq!(issued.arn, expected);
        assert_eq!(iam.session_arn(&store, &issued.access_key_id).as_deref(), Some(expected));
        let key = iam
            .lookup_session(&store, &issued.access_key_id, &issued.token, 2_000)
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(key.caller.principal.arn, expected);
    }

    /// A rename finds its user's sessions (GetSessionToken's and GetFederationToken's)
    /// through the user session index, not by reading every session, and names them as
    /// the renamed user; another user's sessions are left alone; an ended session's index
    /// entry goes with it.
    #[test]
    fn a_rename_moves_the_users_sessions_found_through_its_index() {
        let store = MemoryStore::new();
        let iam = Iam::open(&MasterKey::generate(), &store).unwrap();
        let alice = iam.create_user_with(&store, ACCOUNT, "alice", "/", Vec::new(), 0).unwrap();
        let bob = iam.create_user_with(&store, ACCOUNT, "bob", "/", Vec::new(), 0).unwrap();
        let issue = |subject: Subject| iam.issue_session(&store, request(subject, None)).unwrap();
        let user = issue(Subject::User { name: "alice".into(), user_id: alice.user_id.clone() });
        let federated = issue(Subject::Federated {
            name: "alice".into(),
            user_id: alice.user_id.clone(),
            federated: "fed".into(),
        });
        let other = issue(Subject::User { name: "bob".into(), user_id: bob.user_id.clone() });
        let indexed = |user_id: &str| {
            let mut keys = 0;
            store
                .read(&mut |tx| {
                    let prefix = user_session_key(ACCOUNT, user_id, "");
                    keys = tx.records(USER_SESSION_KIND, &prefix, None, 100)?.len();
                    Ok(())
                })
                .unwrap();
            keys
        };
        assert_eq!((indexed(&alice.user_id), indexed(&bob.user_id)), (2, 1));
        let new = crate::rename::NewNameAndPath { name: Some("carol"), path: None };
        iam.update_user(&store, ACCOUNT, "alice", new).unwrap();
        let caller = |s: &IssuedSession| {
            iam.lookup_session(&store, &s.access_key_id, &s.token, 2_000)
                .unwrap()
                .unwrap()
                .expect("the session goes on")
                .caller
                .clone()
        };
        assert_eq!(caller(&user).principal.name, "carol");
        assert_eq!(caller(&federated).session_issuer.as_ref().unwrap().name, "carol");
        assert_eq!(caller(&other).principal.name, "bob");
        // Issued past the others' end: its issue purges them, index entries too.
        let later = SessionRequest {
            now_ms: 2_000_000,
            ..request(Subject::User { name: "bob".into(), user_id: bob.user_id.clone() }, None)
        };
        iam.issue_session(&store, later).unwrap();
        assert_eq!((indexed(&alice.user_id), indexed(&bob.user_id)), (0, 1));
    }
}
