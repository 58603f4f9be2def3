//! The Secrets Manager operations: one function per operation, each running in
//! one store transaction.
//!
//! Order of checks follows AWS: model validation (done before we get here), then
//! name and ClientRequestToken checks, then existence, then state.

use crate::auth::{Gate, sealing_key};
use crate::paging;
use crate::submitted::OwnedCall;
use crate::txn::Txn;
use crate::{App, RequestContext, clock, store_error};
use coffer_core::filters::{Filter, FilterKey, Filters};
use coffer_core::model::{
    AWSCURRENT, AWSPENDING, AWSPREVIOUS, DAY_MS, SecretMeta, Tag, VersionMeta, truncate_to_day,
};
use coffer_core::names::{self, SecretRef};
use coffer_core::password::{PasswordSpec, generate_password};
use coffer_core::{AwsError, ErrorCode, Scope, staging};
use coffer_crypto::SecretBytes;
use coffer_kms::{EncryptionContext, KeyRecord, KmsError};
use coffer_store::{ListQuery, ReadTxn, SealedValue, SortBy, WriteTxn, cursor_of};
use coffer_wire::operation::SecretsManagerOp;
use coffer_wire::protocol::{SensitiveBlob, SensitiveString, epoch_seconds};
use coffer_wire::secretsmanager as wire;
use coffer_wire::validate::{MAX_SECRET_TAGS, TOO_MANY_SECRET_TAGS};
use std::collections::BTreeMap;
use std::sync::Arc;

const TOKEN_REQUIRED: &str =
    "You must provide a ClientRequestToken value. We recommend a UUID-type value.";
const BOTH_VALUES: &str =
    "You can't specify both a binary secret value and a string secret value in the same secret.";
const ALREADY_MARKED: &str =
    "You tried to perform the operation on a secret that's currently marked deleted.";
const DEFAULT_KMS_KEY_LABEL: &str = "DefaultEncryptionKey";

/// A secret value as given by a caller: exactly one of string or binary.
pub enum NewValue<'a> {
    String(&'a SensitiveString),
    Binary(&'a SensitiveBlob),
}

impl NewValue<'_> {
    /// Picks the value out of a request, refusing both at once. `None` when neither is given.
    fn from_request<'a>(
        string: &'a Option<SensitiveString>,
        binary: &'a Option<SensitiveBlob>,
    ) -> Result<Option<NewValue<'a>>, AwsError> {
        match (string, binary) {
            (Some(_), Some(_)) => Err(AwsError::invalid_parameter(BOTH_VALUES)),
            (Some(s), None) => Ok(Some(NewValue::String(s))),
            (None, Some(b)) => Ok(Some(NewValue::Binary(b))),
            (None, None) => Ok(None),
        }
    }

    /// The plaintext as stored: a kind byte (`s` or `b`) and the bytes.
    fn to_plaintext(&self) -> SecretBytes {
        let (kind, bytes) = match self {
            NewValue::String(s) => (b's', s.expose().as_bytes()),
            NewValue::Binary(b) => (b'b', b.expose()),
        };
        let mut out = Vec::with_capacity(bytes.len() + 1);
        out.push(kind);
        out.extend_from_slice(bytes);
        SecretBytes::new(out)
    }
}

/// The encryption context of a version's value, as Secrets Manager gives KMS: it binds the
/// value to its secret and version, so a sealed value cannot be moved elsewhere.
pub(crate) fn secret_context(arn: &str, version_id: &str) -> EncryptionContext {
    [
        ("SecretARN".to_string(), arn.to_string()),
        ("SecretVersionId".to_string(), version_id.to_string()),
    ]
    .into()
}

/// A key service failure while sealing: `EncryptionFailure` with KMS's reason.
fn encryption_failure(e: KmsError) -> AwsError {
    kms_failure(
        e,
        ErrorCode::EncryptionFailure,
        "Secrets Manager can't encrypt the protected secret text using the provided KMS key.",
    )
}

/// A key service failure while opening: `DecryptionFailure` with KMS's reason.
fn decryption_failure(e: KmsError) -> AwsError {
    kms_failure(
        e,
        ErrorCode::DecryptionFailure,
        "Secrets Manager can't decrypt the protected secret text using the provided KMS key.",
    )
}

fn kms_failure(e: KmsError, code: ErrorCode, sentence: &str) -> AwsError {
    match e {
        KmsError::Rejected { message, .. } if message.is_empty() => AwsError::new(code, sentence),
        KmsError::Rejected { message, .. } => AwsError::new(code, format!("{sentence} {message}")),
        KmsError::Store(e) => store_error(e),
        KmsError::Internal(cause) => {
            tracing::error!(error = %cause, "key service failure");
            AwsError::new(code, sentence)
        }
    }
}

/// Checks the form of a non-empty KmsKeyId before anything is looked up.
fn validate_kms_key_id(key: &Option<Option<String>>) -> Result<(), AwsError> {
    if let Some(Some(id)) = key
        && coffer_kms::parse_key_ref(id).is_err()
    {
        return Err(AwsError::invalid_parameter(format!(
            "The KmsKeyId {id} is not a key id, key ARN, alias name or alias ARN."
        )));
    }
    Ok(())
}

/// The KMS key a write to `meta` seals under (its KmsKeyId, or `aws/secretsmanager`).
pub(crate) fn key_for(
    app: &App,
    tx: &mut dyn WriteTxn,
    meta: &SecretMeta,
    now: i64,
) -> Result<Arc<KeyRecord>, AwsError> {
    app.keys
        .kms()
        .key_for_secret(tx, &meta.scope, meta.kms_key_id.as_deref(), now)
        .map_err(encryption_failure)
}

pub(crate) fn seal_value(
    app: &App,
    key: &KeyRecord,
    arn: &str,
    version_id: &str,
    plaintext: &[u8],
) -> Result<SealedValue, AwsError> {
    let encrypted = app
        .keys
        .kms()
        .encrypt_under(key, plaintext, &secret_context(arn, version_id))
        .map_err(encryption_failure)?;
    Ok(SealedValue(encrypted.blob))
}

fn require_token(token: &Option<String>) -> Result<&str, AwsError> {
    token.as_deref().ok_or_else(|| AwsError::invalid_request(TOKEN_REQUIRED))
}

/// The value a CreateSecret or UpdateSecret gives, if any, and then its required token.
fn value_and_token<'a>(
    string: &'a Option<SensitiveString>,
    binary: &'a Option<SensitiveBlob>,
    token: &'a Option<String>,
) -> Result<(Option<NewValue<'a>>, Option<&'a str>), AwsError> {
    let value = NewValue::from_request(string, binary)?;
    let token = if value.is_some() { Some(require_token(token)?) } else { None };
    Ok((value, token))
}

/// Looks up a SecretId in `scope` (authorization and handlers alike).
pub(crate) fn resolve(
    tx: &dyn ReadTxn,
    scope: &Scope,
    secret_id: &str,
) -> Result<Option<SecretMeta>, AwsError> {
    let found = match names::parse_secret_id(secret_id, scope) {
        SecretRef::Name(name) => tx.secret_by_name(scope, &name),
        SecretRef::Arn(arn) => tx.secret_by_arn(&arn),
        SecretRef::Foreign => return Ok(None),
    };
    let found = found.map_err(store_error)?;
    Ok(found.filter(|m| &m.scope == scope))
}

pub(crate) fn resolve_existing(
    tx: &dyn ReadTxn,
    scope: &Scope,
    secret_id: &str,
) -> Result<SecretMeta, AwsError> {
    resolve(tx, scope, secret_id)?.ok_or_else(AwsError::secret_not_found)
}

/// The secret a read-only call names: the one authorization resolved, in the same read
/// snapshot (read-only calls run in one `read_scope`), else looked up.
pub(crate) fn resolve_for_read(
    tx: &dyn ReadTxn,
    ctx: &RequestContext,
    secret_id: &str,
) -> Result<SecretMeta, AwsError> {
    let meta = match ctx.gate.as_deref().and_then(|gate| gate.resolved(&ctx.scope, secret_id)) {
        Some(meta) => meta.clone(),
        None => resolve_existing(tx, &ctx.scope, secret_id)?,
    };
    ctx.audit.resolved_secret(&meta.arn);
    Ok(meta)
}

/// The secret a mutating call names, as its write transaction sees it, with the call's
/// authorization confirmed on it there (decided again if it changed since).
pub(crate) fn resolve_for_write(
    tx: &dyn ReadTxn,
    ctx: &RequestContext,
    secret_id: &str,
) -> Result<SecretMeta, AwsError> {
    let meta = resolve_existing(tx, &ctx.scope, secret_id)?;
    if let Some(gate) = ctx.gate.as_deref() {
        gate.confirm(&meta)?;
    }
    crate::replication::refuse_on_replica(&meta)?;
    ctx.audit.resolved_secret(&meta.arn);
    Ok(meta)
}

/// Validates a SecretId and checks that it names an existing secret of the caller.
pub(crate) fn resolve_secret_id_checked(
    app: &App,
    ctx: &RequestContext,
    secret_id: &str,
) -> Result<SecretMeta, AwsError> {
    names::validate_secret_id(secret_id)?;
    let meta = app.read(|tx| resolve_existing(tx, &ctx.scope, secret_id))?;
    ctx.audit.resolved_secret(&meta.arn);
    Ok(meta)
}

pub(crate) fn refuse_if_scheduled(meta: &SecretMeta) -> Result<(), AwsError> {
    if meta.is_scheduled_for_deletion() { Err(AwsError::marked_for_deletion()) } else { Ok(()) }
}

fn refuse_if_managed(meta: &SecretMeta) -> Result<(), AwsError> {
    match &meta.owning_service {
        Some(service) => Err(AwsError::invalid_request(format!(
            "You can't modify secret {} because it's managed by {service}. Use {service} to update it.",
            meta.name
        ))),
        None => Ok(()),
    }
}

/// Empty KmsKeyId means the default key, which AWS reports by omitting it.
fn normalize_kms_key(key: &Option<String>) -> Option<Option<String>> {
    key.as_ref().map(|k| if k.is_empty() { None } else { Some(k.clone()) })
}

/// Opens a stored value. Returns the kind byte and the bytes. The caller must be
/// allowed `kms:Decrypt` on the key that sealed this very version: not the key the
/// secret names now, nor what an alias points to now.
pub(crate) fn open_value(
    app: &App,
    tx: &dyn ReadTxn,
    meta: &SecretMeta,
    version_id: &str,
    gate: Option<&Gate>,
) -> Result<SecretBytes, AwsError> {
    let sealed = tx
        .version_value(&meta.arn, version_id)
        .map_err(store_error)?
        .ok_or_else(AwsError::internal)?;
    if crate::rotation::is_placeholder(&sealed) {
        // RotateSecret's AWSPENDING placeholder: a version without a value yet.
        return Err(AwsError::new(
            ErrorCode::ResourceNotFound,
            format!(
                "Secrets Manager can't find the specified secret value for VersionId: {version_id}"
            ),
        ));
    }
    let context = secret_context(&meta.arn, version_id);
    let kms = app.keys.kms();
    let opened = match sealing_key(app, tx, &meta.scope, &sealed.0) {
        // The key decided on is the one that opens the value, read once.
        Some(key) => {
            if let Some(gate) = gate {
                gate.kms_via_secrets_manager((app, tx), "kms:Decrypt", &key, &context)?;
            }
            kms.decrypt_under(key, &sealed.0, &context)
        }
        None => kms.decrypt(tx, &meta.scope, &sealed.0, &context, None),
    };
    opened.map(|opened| opened.plaintext).map_err(decryption_failure)
}

/// Whether the stored value of `version_id` is sealed under `key`: true for RotateSecret's
/// placeholder, which holds no value.
pub(crate) fn sealed_under(
    tx: &dyn ReadTxn,
    arn: &str,
    version_id: &str,
    key: &KeyRecord,
) -> Result<bool, AwsError> {
    let sealed = tx.version_value(arn, version_id).map_err(store_error)?;
    Ok(match sealed {
        None => false,
        Some(sealed) if crate::rotation::is_placeholder(&sealed) => true,
        Some(sealed) => sealed_by(&sealed, key),
    })
}

/// Whether `sealed`'s ciphertext names `key` as the key that sealed it.
fn sealed_by(sealed: &SealedValue, key: &KeyRecord) -> bool {
    coffer_kms::ciphertext::parse(&sealed.0).is_ok_and(|(header, _)| header.key_id == key.key_id)
}

/// Seals `plaintext` as version `version_id` of `arn` under `key` for the caller behind
/// `gate` (none: the service itself), who must be allowed `kms:GenerateDataKey` on it
/// through Secrets Manager.
pub(crate) fn seal_for_caller(
    app: &App,
    tx: &dyn ReadTxn,
    gate: Option<&Gate>,
    key: &Arc<KeyRecord>,
    arn: &str,
    version_id: &str,
    plaintext: &[u8],
) -> Result<SealedValue, AwsError> {
    if let Some(gate) = gate {
        let context = secret_context(arn, version_id);
        gate.kms_via_secrets_manager((app, tx), "kms:GenerateDataKey", key, &context)?;
    }
    seal_value(app, key, arn, version_id, plaintext)
}

/// Whether `version` carries a label whose value a change of key re-encrypts
/// (AWSCURRENT, AWSPENDING or AWSPREVIOUS), on a primary or a replica.
pub(crate) fn carries_a_reencrypted_label(version: &VersionMeta) -> bool {
    [AWSCURRENT, AWSPENDING, AWSPREVIOUS].iter().any(|l| version.stages.iter().any(|s| s == l))
}

/// Re-encrypts the versions labelled AWSCURRENT, AWSPENDING or AWSPREVIOUS under `key`
/// (UpdateSecret with a new KmsKeyId); other versions keep the key they were sealed with.
fn reencrypt_labelled_versions(
    app: &App,
    tx: &mut dyn WriteTxn,
    meta: &SecretMeta,
    key: &Arc<KeyRecord>,
    gate: Option<&Gate>,
) -> Result<(), AwsError> {
    let versions = tx.versions(&meta.arn).map_err(store_error)?;
    for version in versions {
        if !carries_a_reencrypted_label(&version) {
            continue;
        }
        let sealed = tx
            .version_value(&meta.arn, &version.version_id)
            .map_err(store_error)?
            .ok_or_else(AwsError::internal)?;
        if crate::rotation::is_placeholder(&sealed) {
            continue; // RotateSecret's placeholder: nothing to re-encrypt
        }
        if !sealed_by(&sealed, key) {
            let plaintext = open_value(app, tx, meta, &version.version_id, gate)?;
            let (arn, id) = (&meta.arn, &version.version_id);
            let resealed = seal_for_caller(app, &*tx, gate, key, arn, id, plaintext.expose())?;
            tx.replace_version_value(&meta.arn, &version.version_id, &resealed)
                .map_err(store_error)?;
        }
        if version.kms_key_id != meta.kms_key_id {
            tx.update_version(
                &meta.arn,
                &VersionMeta { kms_key_id: meta.kms_key_id.clone(), ..version },
            )
            .map_err(store_error)?;
        }
    }
    Ok(())
}

/// When a ClientRequestToken names an existing version: same value means the call
/// already happened (answer as before); a different value is an error.
///
/// The comparison answers whether a guessed value is the stored one, so it is made only
/// for a caller who may read that version (GetSecretValue on the secret, with its
/// resource policy, and kms:Decrypt on the key that sealed it); anyone else gets
/// `refused()` whatever the guess: for CreateSecret the answer a random token gets, so
/// that neither the value nor the version ids nor the ARN are told.
#[allow(clippy::too_many_arguments)]
fn replay_of_existing_version(
    app: &App,
    tx: &dyn ReadTxn,
    meta: &SecretMeta,
    existing: Option<&VersionMeta>,
    token: &str,
    value: &NewValue<'_>,
    gate: Option<&Gate>,
    refused: impl Fn() -> AwsError,
) -> Result<Option<VersionMeta>, AwsError> {
    let Some(existing) = existing.filter(|v| v.version_id == token) else {
        return Ok(None);
    };
    if tx
        .version_value(&meta.arn, token)
        .map_err(store_error)?
        .is_some_and(|v| crate::rotation::is_placeholder(&v))
    {
        // The AWSPENDING placeholder is filled by PutSecretValue (put_secret_value), and
        // is no value to compare with for other writes.
        return Err(token_in_use(token, meta));
    }
    let in_use = || token_in_use(token, meta);
    let denied = |e: AwsError| if e.code == ErrorCode::AccessDenied { refused() } else { e };
    if let Some(gate) = gate {
        gate.secret("secretsmanager:GetSecretValue", &meta.scope, &meta.arn, Some(meta))
            .map_err(denied)?;
    }
    let stored = open_value(app, tx, meta, token, gate).map_err(denied)?;
    if stored.ct_eq(value.to_plaintext().expose()) {
        Ok(Some(existing.clone()))
    } else {
        Err(in_use())
    }
}

/// What adding a version decides on: a secret's versions that carry labels (a deprecated
/// version has none to move and adds nothing to the label count, so leaving it out
/// changes no outcome of `staging::add_version`), the version of the new version's id if
/// it exists (a replay), and how many versions the secret has in all, which decides
/// whether the old ones must be read to be pruned. A put thus copies the two or three
/// labelled versions, not every version (up to 100).
struct Labelled {
    versions: Vec<VersionMeta>,
    count: usize,
}

impl Labelled {
    /// The labelled versions of the secret `arn` as `tx` has them, and `token`'s.
    fn read(tx: &dyn ReadTxn, arn: &str, token: &str) -> Result<Labelled, AwsError> {
        let (versions, count) = tx.labelled_versions(arn, token).map_err(store_error)?;
        Ok(Labelled { versions, count })
    }

    /// The version `version_id`, if it exists (with labels, or the one read with them).
    fn version(&self, version_id: &str) -> Option<&VersionMeta> {
        self.versions.iter().find(|v| v.version_id == version_id)
    }

    /// A secret without versions (one being created).
    fn none() -> Labelled {
        Labelled { versions: Vec::new(), count: 0 }
    }

    /// After the version `version_id` was deleted.
    fn forget(&mut self, version_id: &str) {
        self.versions.retain(|v| v.version_id != version_id);
        self.count = self.count.saturating_sub(1);
    }
}

/// Adds a version carrying `value`, moving labels and pruning old versions.
/// Returns the new version's labels.
#[allow(clippy::too_many_arguments)]
fn add_version(
    app: &App,
    tx: &mut dyn WriteTxn,
    meta: &SecretMeta,
    known: &Labelled,
    version_id: &str,
    value: &NewValue<'_>,
    requested_stages: Option<&[String]>,
    now: i64,
    gate: Option<&Gate>,
) -> Result<Vec<String>, AwsError> {
    let mut labels: staging::Labels = known
        .versions
        .iter()
        .filter(|v| !v.is_deprecated())
        .map(|v| (v.version_id.clone(), v.stages.clone()))
        .collect();
    let stages = staging::add_version(&mut labels, version_id, requested_stages)?;
    let new_version = VersionMeta {
        version_id: version_id.to_string(),
        stages: stages.clone(),
        created_ms: now,
        last_accessed_ms: None,
        kms_key_id: meta.kms_key_id.clone(),
    };
    let unlabelled = std::collections::BTreeSet::new();
    let stages_after = |v: &VersionMeta| labels.get(&v.version_id).unwrap_or(&unlabelled);
    // Pruning is decided on every version with its labels after the move, which is only
    // worth reading and building once the new version passes the quota.
    let (pruned, every) = if known.count < staging::MAX_VERSIONS {
        (Vec::new(), None)
    } else {
        let every = tx.versions(&meta.arn).map_err(store_error)?;
        let mut after: Vec<VersionMeta> = every
            .iter()
            .map(|v| VersionMeta { stages: stages_after(v).clone(), ..v.clone() })
            .collect();
        after.push(new_version.clone());
        (staging::versions_to_prune(&after, now)?, Some(every))
    };
    // The sealing key is found and authorized before any row changes: a refusal then
    // leaves the writer's batch nothing to undo (SQLite runs its members without
    // savepoints and re-runs a batch whose member failed after writing).
    let key = key_for(app, tx, meta, now)?;
    if let Some(gate) = gate {
        let context = secret_context(&meta.arn, version_id);
        gate.kms_via_secrets_manager((app, &*tx), "kms:GenerateDataKey", &key, &context)?;
    }
    // A version left out of `known` is deprecated and stays so (no label moves to it):
    // only those in it can change, unless some are pruned.
    for before in every.as_deref().unwrap_or(&known.versions) {
        let stages = stages_after(before);
        if pruned.contains(&before.version_id) {
            tx.delete_version(&meta.arn, &before.version_id).map_err(store_error)?;
        } else if before.stages != *stages {
            let changed = VersionMeta { stages: stages.clone(), ..before.clone() };
            tx.update_version(&meta.arn, &changed).map_err(store_error)?;
        }
    }
    let sealed = seal_value(app, &key, &meta.arn, version_id, value.to_plaintext().expose())?;
    tx.insert_version(&meta.arn, &new_version, &sealed).map_err(|e| match e {
        coffer_store::StoreError::Conflict(_) => AwsError::new(
            ErrorCode::ResourceExists,
            "A resource with the ID you requested already exists.",
        ),
        other => store_error(other),
    })?;
    Ok(stages.into_iter().collect())
}

fn already_exists(name: &str) -> AwsError {
    AwsError::new(
        ErrorCode::ResourceExists,
        format!("The operation failed because the secret {name} already exists."),
    )
}

/// The answer to a replayed ClientRequestToken whose value may not be compared.
fn token_in_use(token: &str, meta: &SecretMeta) -> AwsError {
    AwsError::new(
        ErrorCode::ResourceExists,
        format!(
            "You can't use ClientRequestToken {token} because that value is already in use for a version of secret {}.",
            meta.arn
        ),
    )
}

pub fn create_secret(
    app: &App,
    ctx: &RequestContext,
    req: wire::CreateSecretRequest,
) -> Result<wire::CreateSecretResponse, AwsError> {
    CreateSecret::call(app, ctx, req)
}

/// A CreateSecret request checked as far as it can be before its write (see
/// [`PutSecretValue`]).
pub struct CreateSecret {
    req: wire::CreateSecretRequest,
    tags: Option<Vec<Tag>>,
    kms_key_id: Option<Option<String>>,
}

impl OwnedCall for CreateSecret {
    type Request = wire::CreateSecretRequest;
    type Response = wire::CreateSecretResponse;

    fn admit(req: wire::CreateSecretRequest, ctx: &RequestContext) -> Result<Self, AwsError> {
        names::validate_name(&req.name)?;
        value_and_token(&req.secret_string, &req.secret_binary, &req.client_request_token)?;
        let replicas = req.add_replica_regions.as_deref();
        crate::replication::check_regions(&ctx.scope, replicas.unwrap_or_default())?;
        require_tag_keys(req.tags.as_deref().unwrap_or_default())?;
        let tags = req.tags.as_ref().map(|tags| merge_tags(&[], tags)).transpose()?;
        let kms_key_id = normalize_kms_key(&req.kms_key_id);
        validate_kms_key_id(&kms_key_id)?;
        Ok(CreateSecret { req, tags, kms_key_id })
    }

    fn write(
        &self,
        app: &App,
        ctx: &RequestContext,
        tx: &mut Txn<'_>,
    ) -> Result<wire::CreateSecretResponse, AwsError> {
        let CreateSecret { req, tags, kms_key_id } = self;
        // Checked by `admit`.
        let (value, token) =
            value_and_token(&req.secret_string, &req.secret_binary, &req.client_request_token)?;
        let replicas = req.add_replica_regions.as_deref();
        let scope = &ctx.scope;
        if let Some(existing) = tx.secret_by_name(scope, &req.name).map_err(store_error)? {
            if existing.is_scheduled_for_deletion() {
                return Err(AwsError::invalid_request(
                    "You can't create this secret because a secret with this name is already scheduled for deletion.",
                ));
            }
            if let (Some(token), Some(value)) = (token, &value) {
                let known = Labelled::read(&*tx, &existing.arn, token)?;
                let exists = || already_exists(&req.name);
                let replay = replay_of_existing_version(
                    app,
                    tx,
                    &existing,
                    known.version(token),
                    token,
                    value,
                    ctx.gate.as_deref(),
                    exists,
                )?;
                if let Some(v) = replay {
                    let secret = wire::SecretRefResponse {
                        arn: existing.arn,
                        name: existing.name,
                        version_id: Some(v.version_id),
                        version_stages: None,
                    };
                    return Ok(wire::CreateSecretResponse { secret, replication_status: None });
                }
            }
            return Err(already_exists(&req.name));
        }
        let now = clock::now_ms();
        let mut meta = SecretMeta {
            scope: scope.clone(),
            arn: names::new_secret_arn(scope, &req.name, &mut rand::rng()),
            name: req.name.clone(),
            seq: 0,
            description: req.description.clone().filter(|d| !d.is_empty()),
            kms_key_id: kms_key_id.clone().flatten(),
            tags: tags.clone(),
            created_ms: now,
            last_changed_ms: now,
            last_accessed_ms: None,
            deletion_ms: None,
            owning_service: None,
            secret_type: req.secret_type.clone().filter(|t| !t.is_empty()),
            resource_policy: None,
            rotation: None,
            replication: Default::default(),
        };
        meta.seq = tx.insert_secret(&meta).map_err(store_error)?;
        let mut version_id = None;
        if let (Some(token), Some(value)) = (token, &value) {
            let none = Labelled::none();
            add_version(app, tx, &meta, &none, token, value, None, now, ctx.gate.as_deref())?;
            version_id = Some(token.to_string());
        } else if meta.kms_key_id.is_some() {
            // No value to seal yet, but a named key must exist and be usable now.
            key_for(app, tx, &meta, now)?;
        }
        let force = req.force_overwrite_replica_secret.unwrap_or(false);
        let gate = ctx.gate.as_deref();
        let replication_status =
            crate::replication::on_create(app, tx, &mut meta, replicas, force, gate)?;
        let secret = wire::SecretRefResponse {
            arn: meta.arn,
            name: meta.name,
            version_id,
            version_stages: None,
        };
        Ok(wire::CreateSecretResponse { secret, replication_status })
    }
}

pub fn update_secret(
    app: &App,
    ctx: &RequestContext,
    req: wire::UpdateSecretRequest,
) -> Result<wire::SecretRefResponse, AwsError> {
    UpdateSecret::call(app, ctx, req)
}

/// An UpdateSecret request checked as far as it can be before its write (see
/// [`PutSecretValue`]).
pub struct UpdateSecret {
    req: wire::UpdateSecretRequest,
    new_kms_key_id: Option<Option<String>>,
}

impl OwnedCall for UpdateSecret {
    type Request = wire::UpdateSecretRequest;
    type Response = wire::SecretRefResponse;

    fn admit(req: wire::UpdateSecretRequest, _: &RequestContext) -> Result<Self, AwsError> {
        names::validate_secret_id(&req.secret_id)?;
        value_and_token(&req.secret_string, &req.secret_binary, &req.client_request_token)?;
        let new_kms_key_id = normalize_kms_key(&req.kms_key_id);
        validate_kms_key_id(&new_kms_key_id)?;
        Ok(UpdateSecret { req, new_kms_key_id })
    }

    fn write(
        &self,
        app: &App,
        ctx: &RequestContext,
        tx: &mut Txn<'_>,
    ) -> Result<wire::SecretRefResponse, AwsError> {
        let UpdateSecret { req, new_kms_key_id } = self;
        // Checked by `admit`.
        let (value, token) =
            value_and_token(&req.secret_string, &req.secret_binary, &req.client_request_token)?;
        let mut meta = resolve_for_write(tx, ctx, &req.secret_id)?;
        if value.is_some() {
            // A new value is sealed as PutSecretValue's is, with the same refusal.
            crate::cross_account::refuse_default_key(app, &*tx, ctx, &meta)?;
        }
        refuse_if_scheduled(&meta)?;
        refuse_if_managed(&meta)?;
        let now = clock::now_ms();
        if let Some(description) = &req.description {
            meta.description = Some(description.clone()).filter(|d| !d.is_empty());
        }
        if let Some(kms) = &new_kms_key_id {
            meta.kms_key_id = kms.clone();
        }
        if let Some(kind) = &req.secret_type {
            meta.secret_type = Some(kind.clone()).filter(|t| !t.is_empty());
        }
        let mut version_id = None;
        if let (Some(token), Some(value)) = (token, &value) {
            let known = Labelled::read(&*tx, &meta.arn, token)?;
            let gate = ctx.gate.as_deref();
            if let Some(v) = replay_of_existing_version(
                app,
                tx,
                &meta,
                known.version(token),
                token,
                value,
                gate,
                || token_in_use(token, &meta),
            )? {
                return Ok(wire::SecretRefResponse {
                    arn: meta.arn,
                    name: meta.name,
                    version_id: Some(v.version_id),
                    version_stages: None,
                });
            }
            let stages = add_version(app, tx, &meta, &known, token, value, None, now, gate)?;
            crate::rotation::after_value_written(app, tx, &mut meta, token, &stages, now)?;
            version_id = Some(token.to_string());
        }
        if new_kms_key_id.is_some() {
            let key = key_for(app, tx, &meta, now)?;
            reencrypt_labelled_versions(app, tx, &meta, &key, ctx.gate.as_deref())?;
        }
        meta.last_changed_ms = now;
        tx.update_secret(&meta).map_err(store_error)?;
        crate::replication::propagate(app, tx, &meta)?;
        Ok(wire::SecretRefResponse {
            arn: meta.arn,
            name: meta.name,
            version_id,
            version_stages: None,
        })
    }
}

pub fn put_secret_value(
    app: &App,
    ctx: &RequestContext,
    req: wire::PutSecretValueRequest,
) -> Result<wire::SecretRefResponse, AwsError> {
    PutSecretValue::call(app, ctx, req)
}

/// A PutSecretValue request checked as far as it can be before its write: what the write
/// needs, owned, so that it can also be handed to the store whole (`submitted`).
pub struct PutSecretValue {
    req: wire::PutSecretValueRequest,
}

/// A PutSecretValue's value and token, both required (in this order of refusals).
fn put_value_and_token(
    req: &wire::PutSecretValueRequest,
) -> Result<(NewValue<'_>, &str), AwsError> {
    let value = NewValue::from_request(&req.secret_string, &req.secret_binary)?;
    let token = require_token(&req.client_request_token)?;
    let value = value.ok_or_else(|| {
        AwsError::invalid_request("You must provide either SecretString or SecretBinary.")
    })?;
    Ok((value, token))
}

impl OwnedCall for PutSecretValue {
    type Request = wire::PutSecretValueRequest;
    type Response = wire::SecretRefResponse;

    fn admit(req: wire::PutSecretValueRequest, _: &RequestContext) -> Result<Self, AwsError> {
        names::validate_secret_id(&req.secret_id)?;
        put_value_and_token(&req)?;
        Ok(PutSecretValue { req })
    }

    fn write(
        &self,
        app: &App,
        ctx: &RequestContext,
        tx: &mut Txn<'_>,
    ) -> Result<wire::SecretRefResponse, AwsError> {
        let req = &self.req;
        // Checked by `admit`.
        let (value, token) = put_value_and_token(req)?;
        let mut meta = resolve_for_write(tx, ctx, &req.secret_id)?;
        crate::cross_account::refuse_default_key(app, &*tx, ctx, &meta)?;
        refuse_if_scheduled(&meta)?;
        refuse_if_managed(&meta)?;
        let labels_pending =
            req.version_stages.as_ref().is_some_and(|s| s.iter().any(|s| s == AWSPENDING));
        crate::rotation::builtin::refuse_pending_label(&meta, labels_pending)?;
        let mut known = Labelled::read(&*tx, &meta.arn, token)?;
        let gate = ctx.gate.as_deref();
        // PutSecretValue with the token of RotateSecret's placeholder fills it (the
        // templates' createSecret): the empty version is replaced by the real one.
        if known.version(token).is_some()
            && tx
                .version_value(&meta.arn, token)
                .map_err(store_error)?
                .is_some_and(|v| crate::rotation::is_placeholder(&v))
        {
            // Unless a built-in database rotator fills it: no caller has to, and one who may
            // write but not read would choose the password it then sets on the database
            // (attack13 finding 02). Answered as any other write reusing the token.
            if crate::rotation::builtin::fills_placeholder(&meta, token) {
                return Err(token_in_use(token, &meta));
            }
            tx.delete_version(&meta.arn, token).map_err(store_error)?;
            known.forget(token);
        }
        let in_use = || token_in_use(token, &meta);
        let replay = replay_of_existing_version(
            app,
            tx,
            &meta,
            known.version(token),
            token,
            &value,
            gate,
            in_use,
        )?;
        if let Some(v) = replay {
            return Ok(wire::SecretRefResponse {
                arn: meta.arn,
                name: meta.name,
                version_id: Some(v.version_id),
                version_stages: Some(v.stages.into_iter().collect()),
            });
        }
        let now = clock::now_ms();
        let stages = add_version(
            app,
            tx,
            &meta,
            &known,
            token,
            &value,
            req.version_stages.as_deref(),
            now,
            gate,
        )?;
        crate::rotation::after_value_written(app, tx, &mut meta, token, &stages, now)?;
        meta.last_changed_ms = now;
        tx.update_secret(&meta).map_err(store_error)?;
        crate::replication::propagate(app, tx, &meta)?;
        Ok(wire::SecretRefResponse {
            arn: meta.arn,
            name: meta.name,
            version_id: Some(token.to_string()),
            version_stages: Some(stages),
        })
    }
}

/// Picks the version GetSecretValue asks for, with AWS's errors.
fn select_version<'a>(
    versions: &'a [VersionMeta],
    version_id: Option<&str>,
    version_stage: Option<&str>,
) -> Result<&'a VersionMeta, AwsError> {
    match (version_id, version_stage) {
        (Some(id), stage) => {
            let version = versions.iter().find(|v| v.version_id == id).ok_or_else(|| {
                AwsError::new(
                    ErrorCode::ResourceNotFound,
                    format!(
                        "Secrets Manager can't find the specified secret value for VersionId: {id}"
                    ),
                )
            })?;
            if let Some(stage) = stage
                && !version.stages.contains(stage)
            {
                return Err(AwsError::invalid_request(
                    "You provided a VersionStage that is not associated to the provided VersionId.",
                ));
            }
            Ok(version)
        }
        (None, stage) => {
            let stage = stage.unwrap_or(AWSCURRENT);
            versions.iter().find(|v| v.stages.contains(stage)).ok_or_else(|| {
                AwsError::new(
                    ErrorCode::ResourceNotFound,
                    format!("Secrets Manager can't find the specified secret value for staging label: {stage}"),
                )
            })
        }
    }
}

/// Reads one value of a resolved secret; reports whether LastAccessedDate must be recorded.
fn read_value(
    app: &App,
    tx: &dyn ReadTxn,
    meta: SecretMeta,
    version_id: Option<&str>,
    version_stage: Option<&str>,
    today: i64,
    gate: Option<&Gate>,
) -> Result<(wire::GetSecretValueResponse, Option<(String, String)>), AwsError> {
    refuse_if_scheduled(&meta)?;
    let versions = tx.versions(&meta.arn).map_err(store_error)?;
    let version = select_version(&versions, version_id, version_stage)?;
    let plaintext =
        open_value(app, tx, &meta, &version.version_id, gate).map_err(|e| match version_id {
            None if e.code == ErrorCode::ResourceNotFound => AwsError::new(
                ErrorCode::ResourceNotFound,
                format!(
                    "Secrets Manager can't find the specified secret value for staging label: {}",
                    version_stage.unwrap_or(AWSCURRENT)
                ),
            ),
            _ => e,
        })?;
    let (kind, bytes) = plaintext.expose().split_first().ok_or_else(AwsError::internal)?;
    let (secret_string, secret_binary) = match kind {
        b's' => {
            let text = std::str::from_utf8(bytes).map_err(|_| AwsError::internal())?;
            (Some(SensitiveString::new(text.to_string())), None)
        }
        _ => (None, Some(SensitiveBlob::new(bytes.to_vec()))),
    };
    let stale = meta.last_accessed_ms != Some(today) || version.last_accessed_ms != Some(today);
    let touch = stale.then(|| (meta.arn.clone(), version.version_id.clone()));
    Ok((
        wire::GetSecretValueResponse {
            arn: meta.arn.clone(),
            name: meta.name.clone(),
            version_id: version.version_id.clone(),
            secret_binary,
            secret_string,
            version_stages: version.stages.iter().cloned().collect(),
            created_date: epoch_seconds(version.created_ms),
        },
        touch,
    ))
}

/// The LastAccessedDate updates of one call: written at once, or, for a read-only call
/// inside a shared read transaction, put off until that transaction is over
/// ([`AccessRecords::deferred`]): a write inside the read would hold a second pooled
/// connection, or block a reader on the writer. It travels in the call's
/// `RequestContext`; the lock is never contended.
#[derive(Debug, Default)]
pub struct AccessRecords(std::sync::Mutex<Option<Vec<(String, String, i64)>>>);

impl AccessRecords {
    /// Updates written as they happen.
    pub fn immediate() -> AccessRecords {
        AccessRecords(std::sync::Mutex::new(None))
    }

    /// Updates kept until [`AccessRecords::write_deferred`].
    pub fn deferred() -> AccessRecords {
        AccessRecords(std::sync::Mutex::new(Some(Vec::new())))
    }

    /// Writes the updates put off, all in one transaction. An update that cannot be
    /// written (a full disk) is logged and the read still answered: the date is
    /// bookkeeping, and the call's audit event is what must be stored (issue 19).
    pub fn write_deferred(&self, app: &App, ctx: &RequestContext) -> Result<(), AwsError> {
        let deferred = self.0.lock().ok().and_then(|mut list| list.take()).unwrap_or_default();
        if !deferred.is_empty() {
            write_access_or_log(app, ctx, &deferred);
        }
        Ok(())
    }
}

/// Records LastAccessedDate (day precision), at most one write per secret and day; put
/// off until the end of the call when its context defers them.
fn record_access(
    app: &App,
    ctx: &RequestContext,
    arn: &str,
    version_id: &str,
    today: i64,
) -> Result<(), AwsError> {
    let entry = (arn.to_owned(), version_id.to_owned(), today);
    let mut entry = Some(entry);
    if let Ok(mut list) = ctx.access.0.lock()
        && let Some(list) = list.as_mut()
    {
        list.extend(entry.take());
    }
    if let Some(entry) = entry {
        write_access_or_log(app, ctx, &[entry]);
    }
    Ok(())
}

/// [`write_access`], whose failure does not fail the read that asked for it.
fn write_access_or_log(app: &App, ctx: &RequestContext, accesses: &[(String, String, i64)]) {
    if let Err(error) = write_access(app, ctx, accesses) {
        tracing::warn!(code = ?error.code, "could not record LastAccessedDate; the read is answered");
    }
}

/// Writes LastAccessedDate of each (secret ARN, version id, day), all in one transaction:
/// the first BatchGetSecretValue of a day touches up to twenty secrets, which made as
/// many commits, each waiting for its own sync.
fn write_access(
    app: &App,
    ctx: &RequestContext,
    accesses: &[(String, String, i64)],
) -> Result<(), AwsError> {
    app.write(ctx, |tx| {
        for (arn, version_id, today) in accesses {
            let today = *today;
            let Some(mut meta) = tx.secret_by_arn(arn).map_err(store_error)? else { continue };
            if meta.last_accessed_ms != Some(today) {
                meta.last_accessed_ms = Some(today);
                tx.update_secret(&meta).map_err(store_error)?;
                crate::replication::note_access(tx, &meta, today)?;
            }
            let versions = tx.versions(arn).map_err(store_error)?;
            if let Some(v) = versions.into_iter().find(|v| &v.version_id == version_id)
                && v.last_accessed_ms != Some(today)
            {
                tx.update_version(arn, &VersionMeta { last_accessed_ms: Some(today), ..v })
                    .map_err(store_error)?;
            }
        }
        Ok(())
    })
}

pub fn get_secret_value(
    app: &App,
    ctx: &RequestContext,
    req: wire::GetSecretValueRequest,
) -> Result<wire::GetSecretValueResponse, AwsError> {
    names::validate_secret_id(&req.secret_id)?;
    let today = truncate_to_day(clock::now_ms());
    let (response, touch) = app.read(|tx| {
        let meta = resolve_for_read(tx, ctx, &req.secret_id)?;
        crate::cross_account::refuse_default_key(app, tx, ctx, &meta)?;
        read_value(
            app,
            tx,
            meta,
            req.version_id.as_deref(),
            req.version_stage.as_deref(),
            today,
            ctx.gate.as_deref(),
        )
    })?;
    if let Some((arn, version_id)) = touch {
        record_access(app, ctx, &arn, &version_id, today)?;
    }
    Ok(response)
}

/// A request's filters, checked and compiled once for the whole listing.
fn parse_filters(filters: &[wire::Filter]) -> Result<Filters, AwsError> {
    let filters = filters
        .iter()
        .map(|f| {
            // The model requires neither member; AWS refuses a filter lacking either one
            // (a key outside the enum never gets here: the model check answers it).
            let key = FilterKey::parse(&f.key)
                .ok_or_else(|| AwsError::invalid_parameter("Invalid filter key"))?;
            if f.values.is_empty() {
                return Err(AwsError::invalid_parameter(format!(
                    "Invalid filter values for key: {}",
                    f.key
                )));
            }
            Ok(Filter { key, values: f.values.clone() })
        })
        .collect::<Result<Vec<Filter>, AwsError>>()?;
    Ok(Filters::compile(&filters))
}

pub fn batch_get_secret_value(
    app: &App,
    ctx: &RequestContext,
    req: wire::BatchGetSecretValueRequest,
) -> Result<wire::BatchGetSecretValueResponse, AwsError> {
    let today = truncate_to_day(clock::now_ms());
    match (&req.secret_id_list, &req.filters) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(AwsError::invalid_parameter(
                "Either 'SecretIdList' or 'Filters' must be provided, but not both.",
            ));
        }
        (Some(_), None) if req.max_results.is_some() => {
            return Err(AwsError::invalid_parameter(
                "'Filters' not specified. 'Filters' must also be specified when 'MaxResults' is provided.",
            ));
        }
        _ => {}
    }
    let gate = ctx.gate.as_deref();
    if let (Some(gate), Some(_)) = (gate, &req.filters) {
        // Filters list secrets by name: AWS requires ListSecrets for them.
        gate.anything("secretsmanager:ListSecrets")?;
    }
    let mut response = wire::BatchGetSecretValueResponse::default();
    let mut touches = Vec::new();
    let mut collect = |tx: &dyn ReadTxn,
                       secret_id: &str,
                       response: &mut wire::BatchGetSecretValueResponse|
     -> Result<(), AwsError> {
        // Each secret is authorized (with its resource policy) before it is looked at
        // further: a denied secret answers the same whether or not it exists, and its
        // value is never opened.
        let result = names::validate_secret_id(secret_id).and_then(|_| {
            let owner = crate::auth::lookup_scope(secret_id, &ctx.scope);
            let meta = resolve(tx, &owner, secret_id)?;
            // `--dev`: another account's secret only through its resource policy, and its
            // value only through the policy of the key that sealed it, as for the caller's
            // account root on AWS (review 13, finding 01).
            let foreign = (gate.is_none() && owner != ctx.scope)
                .then(|| crate::auth::Gate::account_root(&ctx.caller_account, &owner.region));
            let gate = gate.or(foreign.as_ref());
            if let Some(gate) = gate {
                gate.secret("secretsmanager:GetSecretValue", &owner, secret_id, meta.as_ref())?;
            }
            let meta = meta.ok_or_else(AwsError::secret_not_found)?;
            crate::cross_account::refuse_default_key(app, tx, ctx, &meta)?;
            read_value(app, tx, meta, None, None, today, gate)
        });
        match result {
            Ok((value, touch)) => {
                ctx.audit.add_secret_event(SecretsManagerOp::GetSecretValue, &value.arn);
                response.secret_values.push(value);
                touches.extend(touch);
            }
            Err(e) if e.code == ErrorCode::InternalServiceError => return Err(e),
            Err(e) => response.errors.push(wire::ApiError {
                secret_id: secret_id.to_string(),
                error_code: e.code.as_str().to_string(),
                message: e.message,
            }),
        }
        Ok(())
    };
    if let Some(ids) = &req.secret_id_list {
        app.read(|tx| {
            prefetch(tx, ctx, ids)?;
            for id in ids {
                collect(tx, id, &mut response)?;
            }
            Ok(())
        })?;
    } else if let Some(filters) = &req.filters {
        let filters = parse_filters(filters)?;
        let max = req.max_results.unwrap_or(20) as usize;
        app.read(|tx| {
            let page = list_page(
                tx,
                ctx,
                &filters,
                SortBy::CreatedDate,
                false,
                false,
                max,
                req.next_token.as_deref(),
            )?;
            response.next_token = page.next_token;
            let arns: Vec<&str> = page.secrets.iter().map(|meta| meta.arn.as_str()).collect();
            tx.prefetch_secrets(&[], &arns).map_err(store_error)?;
            for meta in &page.secrets {
                collect(tx, &meta.arn, &mut response)?;
            }
            Ok(())
        })?;
    }
    for (arn, version_id) in touches {
        record_access(app, ctx, &arn, &version_id, today)?;
    }
    Ok(response)
}

/// Has the store look up a batch's secrets together (one round trip on PostgreSQL)
/// before `resolve` looks each one up, as `resolve` would name them.
fn prefetch(tx: &dyn ReadTxn, ctx: &RequestContext, ids: &[String]) -> Result<(), AwsError> {
    let mut names = Vec::new();
    let mut arns = Vec::new();
    for id in ids.iter().filter(|id| names::validate_secret_id(id).is_ok()) {
        let owner = crate::auth::lookup_scope(id, &ctx.scope);
        match names::parse_secret_id(id, &owner) {
            SecretRef::Name(name) => names.push((owner, name)),
            SecretRef::Arn(arn) => arns.push(arn),
            SecretRef::Foreign => {}
        }
    }
    let names: Vec<(&Scope, &str)> =
        names.iter().map(|(scope, name)| (scope, name.as_ref())).collect();
    let arns: Vec<&str> = arns.iter().map(|arn| arn.as_ref()).collect();
    tx.prefetch_secrets(&names, &arns).map_err(store_error)
}

fn stage_map(versions: &[VersionMeta]) -> Option<BTreeMap<String, Vec<String>>> {
    let map: BTreeMap<String, Vec<String>> = versions
        .iter()
        .filter(|v| !v.is_deprecated())
        .map(|v| (v.version_id.clone(), v.stages.iter().cloned().collect()))
        .collect();
    if map.is_empty() { None } else { Some(map) }
}

fn describe(
    meta: &SecretMeta,
    versions: &[VersionMeta],
    for_list: bool,
) -> wire::SecretDescription {
    let stages = stage_map(versions);
    let (version_ids_to_stages, secret_versions_to_stages) =
        if for_list { (None, stages) } else { (stages, None) };
    let mut d = wire::SecretDescription {
        arn: meta.arn.clone(),
        name: meta.name.clone(),
        secret_type: meta.secret_type.clone(),
        description: meta.description.clone().filter(|d| !d.is_empty()),
        kms_key_id: meta.kms_key_id.clone(),
        last_changed_date: epoch_seconds(meta.last_changed_ms),
        last_accessed_date: meta.last_accessed_ms.map(epoch_seconds),
        deleted_date: meta.deletion_ms.map(epoch_seconds),
        tags: meta.tags.as_ref().map(|tags| {
            tags.iter().map(|t| wire::Tag { key: t.key.clone(), value: t.value.clone() }).collect()
        }),
        version_ids_to_stages,
        secret_versions_to_stages,
        owning_service: meta.owning_service.clone(),
        created_date: epoch_seconds(meta.created_ms),
        primary_region: meta.replication.primary_region.clone(),
        // ListSecrets entries have no ReplicationStatus in their shape.
        replication_status: if for_list { None } else { crate::replication::status_of(meta) },
        rotation_enabled: None,
        rotation_lambda_arn: None,
        rotation_rules: None,
        last_rotated_date: None,
        next_rotation_date: None,
        external_secret_rotation_role_arn: None,
        external_secret_rotation_metadata: None,
    };
    crate::rotation::describe_into(&mut d, meta, versions);
    d
}

pub fn describe_secret(
    app: &App,
    ctx: &RequestContext,
    req: wire::SecretIdRequest,
) -> Result<wire::SecretDescription, AwsError> {
    names::validate_secret_id(&req.secret_id)?;
    app.read(|tx| {
        let meta = resolve_for_read(tx, ctx, &req.secret_id)?;
        let versions = tx.versions(&meta.arn).map_err(store_error)?;
        Ok(describe(&meta, &versions, false))
    })
}

/// Whether a Secrets Manager call may scan many secrets (up to `SCAN_BUDGET`): a
/// ListSecrets or BatchGetSecretValue whose body names `Filters`. `http` runs those on the
/// blocking pool even where reads otherwise run on the async workers (SQLite). A byte
/// search, before parsing: a false positive only costs a thread hand-off.
pub fn may_scan(secrets_manager: bool, op: &str, body: &[u8]) -> bool {
    const FILTERS: &[u8] = b"\"Filters\"";
    secrets_manager
        && matches!(op, "ListSecrets" | "BatchGetSecretValue")
        && body.windows(FILTERS.len()).any(|w| w == FILTERS)
}

/// One page of a listing and the token of the next, if any.
struct Page {
    secrets: Vec<SecretMeta>,
    next_token: Option<String>,
    /// How many stored secrets the page looked at (at most [`SCAN_BUDGET`]).
    #[cfg_attr(not(test), allow(dead_code))]
    examined: usize,
}

/// How many stored secrets one ListSecrets (or BatchGetSecretValue with Filters) call
/// examines at most. A call that runs out answers the matches it found, maybe none, with a
/// NextToken that resumes after the last secret examined, as AWS may answer fewer than
/// MaxResults with a NextToken. Without it a filter that matches nothing read and matched
/// every secret of the account in one call, whatever MaxResults said.
pub(crate) const SCAN_BUDGET: usize = 1000;

/// How much matching work one listing call does at most, in (filter value, attribute
/// string) comparisons (`Filters::cost`): with ten filters of ten values over secrets
/// with fifty tags each, about 25 secrets per call instead of 1000.
pub(crate) const MATCH_BUDGET: usize = 250_000;

/// One page of secrets matching `filters`, in the requested order, read in `tx`, looking
/// at no more than [`SCAN_BUDGET`] secrets and [`MATCH_BUDGET`] of matching work. Its token
/// is sealed and bound to the caller's scope, the filters and the order (`paging`).
#[allow(clippy::too_many_arguments)]
fn list_page(
    tx: &dyn ReadTxn,
    ctx: &RequestContext,
    filters: &Filters,
    sort_by: SortBy,
    descending: bool,
    include_planned_deletion: bool,
    max: usize,
    next_token: Option<&str>,
) -> Result<Page, AwsError> {
    let binding = paging::binding(&[
        "ListSecrets",
        &ctx.scope.account,
        &ctx.scope.region,
        &filters.canonical(),
        if include_planned_deletion { "planned" } else { "" },
    ]);
    let after = match next_token {
        Some(token) => Some(paging::decode_list_token(token, sort_by, descending, &binding)?),
        None => None,
    };
    // One more than a page: whether it exists says if another page follows.
    let expected = (max + 1).min(SCAN_BUDGET + 1);
    let query = ListQuery { sort_by, descending, after, expected: Some(expected) };
    let mut secrets = Vec::new();
    let mut more = false;
    let mut examined = 0;
    let mut work = 0;
    let mut last_examined = None;
    let mut out_of_budget = false;
    tx.visit_secrets(&ctx.scope, &query, &mut |meta| {
        if examined == SCAN_BUDGET || work >= MATCH_BUDGET {
            // Another secret exists past the budget: stop, and resume here next time.
            out_of_budget = true;
            return false;
        }
        let wanted = (include_planned_deletion || !meta.is_scheduled_for_deletion())
            && filters.matches(meta);
        if wanted && secrets.len() == max {
            more = true;
            return false;
        }
        examined += 1;
        work += filters.cost(meta);
        if wanted {
            secrets.push(meta.clone());
        }
        last_examined = Some(cursor_of(meta, sort_by));
        true
    })
    .map_err(store_error)?;
    let resume = if out_of_budget || more { last_examined } else { None };
    let next_token =
        resume.map(|cursor| paging::encode_list_token(&cursor, sort_by, descending, &binding));
    Ok(Page { secrets, next_token, examined })
}

pub fn list_secrets(
    app: &App,
    ctx: &RequestContext,
    req: wire::ListSecretsRequest,
) -> Result<wire::ListSecretsResponse, AwsError> {
    let filters = parse_filters(req.filters.as_deref().unwrap_or(&[]))?;
    let sort_by = match req.sort_by.as_deref() {
        None | Some("created-date") => SortBy::CreatedDate,
        Some("last-accessed-date") => SortBy::LastAccessedDate,
        Some("last-changed-date") => SortBy::LastChangedDate,
        Some("name") => SortBy::Name,
        Some(other) => return Err(AwsError::invalid_parameter(format!("Invalid SortBy: {other}"))),
    };
    let descending = req.sort_order.as_deref() == Some("desc");
    let max = req.max_results.unwrap_or(100) as usize;
    // The page and its secrets' versions come from one read: one consistent state.
    app.read(|tx| {
        let page = list_page(
            tx,
            ctx,
            &filters,
            sort_by,
            descending,
            req.include_planned_deletion.unwrap_or(false),
            max,
            req.next_token.as_deref(),
        )?;
        let arns: Vec<&str> = page.secrets.iter().map(|meta| meta.arn.as_str()).collect();
        let versions = tx.versions_of(&arns).map_err(store_error)?;
        let secret_list = page
            .secrets
            .iter()
            .zip(&versions)
            .map(|(meta, versions)| describe(meta, versions, true))
            .collect();
        Ok(wire::ListSecretsResponse { secret_list, next_token: page.next_token.clone() })
    })
}

pub fn list_secret_version_ids(
    app: &App,
    ctx: &RequestContext,
    req: wire::ListSecretVersionIdsRequest,
) -> Result<wire::ListSecretVersionIdsResponse, AwsError> {
    names::validate_secret_id(&req.secret_id)?;
    let include_deprecated = req.include_deprecated.unwrap_or(false);
    let max = req.max_results.unwrap_or(100) as usize;
    app.read(|tx| {
        let meta = resolve_for_read(tx, ctx, &req.secret_id)?;
        // The token is sealed and bound to this secret and to the IncludeDeprecated flag.
        let binding = paging::binding(&[
            "ListSecretVersionIds",
            &meta.arn,
            if include_deprecated { "deprecated" } else { "" },
        ]);
        let start = match &req.next_token {
            Some(token) => paging::decode_offset_token(token, &binding)?,
            None => 0,
        };
        let versions: Vec<VersionMeta> = tx
            .versions(&meta.arn)
            .map_err(store_error)?
            .into_iter()
            .filter(|v| include_deprecated || !v.is_deprecated())
            .collect();
        let page: Vec<wire::VersionEntry> = versions
            .iter()
            .skip(start)
            .take(max)
            .map(|v| wire::VersionEntry {
                version_id: v.version_id.clone(),
                version_stages: (!v.is_deprecated()).then(|| v.stages.iter().cloned().collect()),
                last_accessed_date: v.last_accessed_ms.map(epoch_seconds),
                created_date: epoch_seconds(v.created_ms),
                kms_key_ids: vec![
                    v.kms_key_id.clone().unwrap_or_else(|| DEFAULT_KMS_KEY_LABEL.to_string()),
                ],
            })
            .collect();
        let end = start + page.len();
        let next_token = (end < versions.len()).then(|| paging::encode_offset_token(end, &binding));
        Ok(wire::ListSecretVersionIdsResponse {
            versions: page,
            next_token,
            arn: meta.arn,
            name: meta.name,
        })
    })
}

pub fn update_secret_version_stage(
    app: &App,
    ctx: &RequestContext,
    req: wire::UpdateSecretVersionStageRequest,
) -> Result<wire::SecretRefResponse, AwsError> {
    names::validate_secret_id(&req.secret_id)?;
    app.write(ctx, |tx| {
        let mut meta = resolve_for_write(tx, ctx, &req.secret_id)?;
        refuse_if_scheduled(&meta)?;
        let labels_pending = req.version_stage == AWSPENDING && req.move_to_version_id.is_some();
        crate::rotation::builtin::refuse_pending_label(&meta, labels_pending)?;
        let versions = tx.versions(&meta.arn).map_err(store_error)?;
        let mut labels = staging::labels_of(&versions);
        staging::move_label(
            &mut labels,
            &req.version_stage,
            req.remove_from_version_id.as_deref(),
            req.move_to_version_id.as_deref(),
        )?;
        for version in &versions {
            let stages = &labels[&version.version_id];
            if stages != &version.stages {
                tx.update_version(
                    &meta.arn,
                    &VersionMeta { stages: stages.clone(), ..version.clone() },
                )
                .map_err(store_error)?;
            }
        }
        meta.last_changed_ms = clock::now_ms();
        tx.update_secret(&meta).map_err(store_error)?;
        crate::replication::propagate(app, tx, &meta)?;
        Ok(wire::SecretRefResponse {
            arn: meta.arn,
            name: meta.name,
            version_id: None,
            version_stages: None,
        })
    })
}

pub fn delete_secret(
    app: &App,
    ctx: &RequestContext,
    req: wire::DeleteSecretRequest,
) -> Result<wire::DeleteSecretResponse, AwsError> {
    names::validate_secret_id(&req.secret_id)?;
    let force = req.force_delete_without_recovery.unwrap_or(false);
    if let Some(days) = req.recovery_window_in_days {
        // AWS checks the window's range first: a forced delete with an out-of-range window
        // gets the range error, and only an in-range one the "in conjunction" error.
        if !(7..=30).contains(&days) {
            return Err(AwsError::invalid_parameter(
                "The RecoveryWindowInDays value must be between 7 and 30 days (inclusive).",
            ));
        }
        if force {
            return Err(AwsError::invalid_parameter(
                "You can't use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays.",
            ));
        }
    }
    let days = req.recovery_window_in_days.unwrap_or(30);
    app.write(ctx, |tx| {
        let now = clock::now_ms();
        let found = resolve(tx, &ctx.scope, &req.secret_id)?;
        if let (Some(gate), Some(meta)) = (ctx.gate.as_deref(), &found) {
            gate.confirm(meta)?;
        }
        let Some(mut meta) = found else {
            if force {
                // AWS answers a forced delete of an unknown secret as if it had existed.
                let name = match names::parse_secret_id(&req.secret_id, &ctx.scope) {
                    SecretRef::Name(name) => name,
                    _ => req.secret_id.clone(),
                };
                return Ok(wire::DeleteSecretResponse {
                    arn: names::new_secret_arn(&ctx.scope, &name, &mut rand::rng()),
                    name,
                    deletion_date: epoch_seconds(now),
                });
            }
            return Err(AwsError::secret_not_found());
        };
        crate::replication::check_delete(&meta, &req.secret_id)?;
        if force {
            tx.delete_secret(&meta.arn).map_err(store_error)?;
            return Ok(wire::DeleteSecretResponse {
                arn: meta.arn,
                name: meta.name,
                deletion_date: epoch_seconds(now),
            });
        }
        if meta.is_scheduled_for_deletion() {
            return Err(AwsError::invalid_request(ALREADY_MARKED));
        }
        let deletion = now + days * DAY_MS;
        meta.deletion_ms = Some(deletion);
        tx.update_secret(&meta).map_err(store_error)?;
        Ok(wire::DeleteSecretResponse {
            arn: meta.arn,
            name: meta.name,
            deletion_date: epoch_seconds(deletion),
        })
    })
}

pub fn restore_secret(
    app: &App,
    ctx: &RequestContext,
    req: wire::SecretIdRequest,
) -> Result<wire::SecretRefResponse, AwsError> {
    names::validate_secret_id(&req.secret_id)?;
    app.write(ctx, |tx| {
        let mut meta = resolve_for_write(tx, ctx, &req.secret_id)?;
        if meta.deletion_ms.take().is_some() {
            meta.last_changed_ms = clock::now_ms();
            tx.update_secret(&meta).map_err(store_error)?;
            crate::replication::propagate(app, tx, &meta)?;
        }
        Ok(wire::SecretRefResponse {
            arn: meta.arn,
            name: meta.name,
            version_id: None,
            version_stages: None,
        })
    })
}

/// Refuses a tag without a key, before anything changes. The model does not require `Key`,
/// so this is the service's check, not the model's; no recording of AWS's answer was found,
/// so the code is the one Secrets Manager gives for a bad parameter, in words of our own.
fn require_tag_keys(tags: &[wire::Tag]) -> Result<(), AwsError> {
    if tags.iter().all(wire::Tag::has_key) {
        Ok(())
    } else {
        Err(AwsError::invalid_parameter("You must specify a key for each tag."))
    }
}

/// Adds or replaces tags by key, keeping the order in which keys first appeared; refused
/// once the result holds more than [`MAX_SECRET_TAGS`], AWS's limit on a secret's tags
/// after the merge. The merge stops there, since a result never shrinks: each tag searched
/// every tag merged before it, and a request of 20,000 tags cost their square before the
/// limit refused it (review 16, left). Now no search covers more than the limit's tags and
/// one (those the secret held, bounded the same way when they were stored).
fn merge_tags(existing: &[Tag], new: &[wire::Tag]) -> Result<Vec<Tag>, AwsError> {
    let too_many = || AwsError::new(ErrorCode::LimitExceeded, TOO_MANY_SECRET_TAGS);
    let mut tags = existing.to_vec();
    for tag in new {
        #[cfg(test)]
        TAGS_COMPARED.with(|c| c.set(c.get() + tags.len()));
        match tags.iter_mut().find(|t| t.key == tag.key) {
            Some(t) => t.value = tag.value.clone(),
            None => tags.push(Tag { key: tag.key.clone(), value: tag.value.clone() }),
        }
        if tags.len() > MAX_SECRET_TAGS {
            return Err(too_many());
        }
    }
    if tags.len() > MAX_SECRET_TAGS {
        return Err(too_many());
    }
    Ok(tags)
}

#[cfg(test)]
thread_local! {
    /// How many stored tags [`merge_tags`] may have compared, on this thread (what the
    /// tests bound).
    static TAGS_COMPARED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

pub fn tag_resource(
    app: &App,
    ctx: &RequestContext,
    req: wire::TagResourceRequest,
) -> Result<wire::EmptyResponse, AwsError> {
    names::validate_secret_id(&req.secret_id)?;
    require_tag_keys(&req.tags)?;
    app.write(ctx, |tx| {
        let mut meta = resolve_for_write(tx, ctx, &req.secret_id)?;
        refuse_if_scheduled(&meta)?;
        let tags = merge_tags(meta.tags.as_deref().unwrap_or(&[]), &req.tags)?;
        meta.tags = Some(tags);
        tx.update_secret(&meta).map_err(store_error)?;
        crate::replication::propagate(app, tx, &meta)?;
        Ok(wire::EmptyResponse {})
    })
}

pub fn untag_resource(
    app: &App,
    ctx: &RequestContext,
    req: wire::UntagResourceRequest,
) -> Result<wire::EmptyResponse, AwsError> {
    names::validate_secret_id(&req.secret_id)?;
    app.write(ctx, |tx| {
        let mut meta = resolve_for_write(tx, ctx, &req.secret_id)?;
        refuse_if_scheduled(&meta)?;
        if let Some(tags) = &mut meta.tags {
            tags.retain(|t| !req.tag_keys.contains(&t.key));
            tx.update_secret(&meta).map_err(store_error)?;
            crate::replication::propagate(app, tx, &meta)?;
        }
        Ok(wire::EmptyResponse {})
    })
}

pub fn get_random_password(
    req: wire::GetRandomPasswordRequest,
) -> Result<wire::GetRandomPasswordResponse, AwsError> {
    let defaults = PasswordSpec::default();
    let spec = PasswordSpec {
        length: req.password_length.map(|l| l.max(0) as u64).unwrap_or(defaults.length),
        exclude_characters: req.exclude_characters.unwrap_or_default(),
        exclude_numbers: req.exclude_numbers.unwrap_or(false),
        exclude_punctuation: req.exclude_punctuation.unwrap_or(false),
        exclude_uppercase: req.exclude_uppercase.unwrap_or(false),
        exclude_lowercase: req.exclude_lowercase.unwrap_or(false),
        include_space: req.include_space.unwrap_or(false),
        require_each_included_type: req
            .require_each_included_type
            .unwrap_or(defaults.require_each_included_type),
    };
    let password = generate_password(&spec, &mut rand::rng())?;
    Ok(wire::GetRandomPasswordResponse { random_password: SensitiveString::new(password) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, KeyRing};
    use coffer_crypto::MasterKey;
    use coffer_store::MemoryStore;
    use std::sync::Arc;

    fn app() -> Arc<App> {
        let store = Arc::new(MemoryStore::new());
        let keys = KeyRing::open(MasterKey::generate(), store.as_ref()).unwrap();
        App::new(store, keys, Config::default())
    }

    fn ctx() -> RequestContext {
        let scope = Scope::new("000000000000", "us-east-1");
        RequestContext::new(scope, "AKIDEXAMPLE".into(), "test".into())
    }

    fn create(app: &App, name: &str) {
        let req = wire::CreateSecretRequest {
            name: name.into(),
            client_request_token: Some("00000000-0000-4000-8000-000000000001".into()),
            secret_string: Some(SensitiveString::new("value".into())),
            ..Default::default()
        };
        create_secret(app, &ctx(), req).unwrap();
    }

    fn tags_of(app: &App, name: &str) -> Vec<(String, String)> {
        let meta = app.read(|tx| tx.secret_by_name(&ctx().scope, name).map_err(store_error));
        let tags = meta.unwrap().unwrap().tags.unwrap_or_default();
        tags.into_iter().map(|t| (t.key, t.value)).collect()
    }

    fn tag(key: &str, value: &str) -> wire::Tag {
        wire::Tag { key: key.into(), value: value.into() }
    }

    /// TagResource merges a request's tags into the secret's by key, a key given again
    /// taking its last value, before the 50-tag limit is checked on the result. Each tag
    /// searched all those merged before: 20,000 tags cost their square (about 2 s of a
    /// debug build's worker, review 16, left). The merge stops once the result passes the
    /// limit (it never shrinks), so no search covers more than 51 tags: comparisons grow
    /// with the request, not its square. Counted, not timed.
    #[test]
    fn many_tags_are_merged_in_linear_time_and_refused() {
        const MANY: usize = 4_000;
        let app = app();
        create(&app, "tagged");
        let req = |tags| wire::TagResourceRequest { secret_id: "tagged".into(), tags };
        tag_resource(&app, &ctx(), req(vec![tag("a", "1"), tag("b", "2"), tag("a", "3")])).unwrap();
        let kept = [("a".to_string(), "3".to_string()), ("b".to_string(), "2".to_string())];
        assert_eq!(tags_of(&app, "tagged"), kept);
        TAGS_COMPARED.with(|c| c.set(0));
        let many = (0..MANY).map(|i| tag(&format!("k{i}"), "v")).collect();
        let err = tag_resource(&app, &ctx(), req(many)).unwrap_err();
        assert_eq!(err.code, ErrorCode::LimitExceeded);
        assert_eq!(err.message, coffer_wire::validate::TOO_MANY_SECRET_TAGS);
        let compared = TAGS_COMPARED.with(std::cell::Cell::get);
        assert!(compared <= 51 * MANY, "{compared} tags compared for {MANY} tags");
        assert_eq!(tags_of(&app, "tagged"), kept, "a refused request changes nothing");
        // Fifty keys, each given twice: the result holds fifty and is accepted.
        let twice = (0..100).map(|i| tag(&format!("t{}", i % 48), &i.to_string())).collect();
        tag_resource(&app, &ctx(), req(twice)).unwrap();
        let tags = tags_of(&app, "tagged");
        assert_eq!(tags.len(), 50);
        assert_eq!(tags[2], ("t0".to_string(), "96".to_string()));
    }

    /// A caller authorized with an allow-everything identity policy, as `http` would.
    fn authorized(
        app: &App,
        op: coffer_wire::operation::SecretsManagerOp,
        body: serde_json::Value,
    ) -> Result<RequestContext, AwsError> {
        use coffer_auth::{Policy, PolicyKind, Principal};
        let policy = Policy::parse(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#,
            PolicyKind::Identity,
        )
        .unwrap();
        let principal = Principal::user("000000000000", "writer", "AIDAWRITEREXAMPLE");
        let who = crate::auth::Authenticated {
            caller: Arc::new(crate::iam::Caller::new(principal, vec![policy])),
            access_key_id: "AKIDEXAMPLE".into(),
            region: "us-east-1".into(),
        };
        let requested: crate::auth::Requested = serde_json::from_value(body).unwrap();
        let authorized =
            crate::auth::authorize(app, &who, &ctx().scope, op.into(), &requested, None, false)?;
        Ok(RequestContext { scope: authorized.scope, gate: Some(authorized.gate), ..ctx() })
    }

    /// A resource policy put between a write's authorization and its transaction is not
    /// missed: the write decides again on the secret as its transaction sees it.
    #[test]
    fn a_policy_changed_after_authorization_still_decides_the_write() {
        use coffer_wire::operation::SecretsManagerOp as Sm;
        let app = app();
        create(&app, "raced");
        let body = serde_json::json!({"SecretId": "raced", "SecretString": "new"});
        let authorized_ctx = authorized(&app, Sm::PutSecretValue, body).unwrap();
        let deny = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":{"AWS":"*"},"Action":"secretsmanager:PutSecretValue","Resource":"*"}]}"#;
        app.write_unrecorded(|tx| {
            let mut meta = tx.secret_by_name(&ctx().scope, "raced").unwrap().unwrap();
            meta.resource_policy = Some(deny.into());
            tx.update_secret(&meta).map_err(store_error)
        })
        .unwrap();
        let req = wire::PutSecretValueRequest {
            secret_id: "raced".into(),
            client_request_token: Some("00000000-0000-4000-8000-000000000099".into()),
            secret_string: Some(SensitiveString::new("new".into())),
            ..Default::default()
        };
        let err = put_secret_value(&app, &authorized_ctx, req).unwrap_err();
        assert_eq!(err.code, ErrorCode::AccessDenied);
        assert!(
            err.message.contains("explicit deny in a resource-based policy"),
            "{}",
            err.message
        );
        let value = get_secret_value(
            &app,
            &ctx(),
            wire::GetSecretValueRequest { secret_id: "raced".into(), ..Default::default() },
        )
        .unwrap();
        assert_eq!(value.secret_string.unwrap().expose(), "value");
        // Unchanged, the decision stands without being made again.
        let body = serde_json::json!({"SecretId": "kept", "Description": "d"});
        create(&app, "kept");
        let ctx_kept = authorized(&app, Sm::UpdateSecret, body).unwrap();
        let update = wire::UpdateSecretRequest {
            secret_id: "kept".into(),
            description: Some("d".into()),
            ..Default::default()
        };
        update_secret(&app, &ctx_kept, update).unwrap();
    }

    #[test]
    fn scheduled_deletions_are_carried_out_only_once_due() {
        let app = app();
        create(&app, "doomed");
        create(&app, "kept");
        let deleted = delete_secret(
            &app,
            &ctx(),
            wire::DeleteSecretRequest {
                secret_id: "doomed".into(),
                recovery_window_in_days: Some(7),
                ..Default::default()
            },
        )
        .unwrap();
        let due = (deleted.deletion_date * 1000.0) as i64;
        // The sweep the server runs (with its service event), not a copy of it.
        assert_eq!(crate::audit::purge_due_deletions(&app, due - 1).unwrap(), 0);
        assert_eq!(crate::audit::purge_due_deletions(&app, due + 1).unwrap(), 1);
        let gone =
            describe_secret(&app, &ctx(), wire::SecretIdRequest { secret_id: "doomed".into() });
        assert_eq!(gone.unwrap_err().code, ErrorCode::ResourceNotFound);
        describe_secret(&app, &ctx(), wire::SecretIdRequest { secret_id: "kept".into() }).unwrap();
    }

    #[test]
    fn a_managed_secret_refuses_updates() {
        let app = app();
        create(&app, "managed");
        app.write_unrecorded(|tx| {
            let mut meta = tx.secret_by_name(&ctx().scope, "managed").unwrap().unwrap();
            meta.owning_service = Some("rds".into());
            tx.update_secret(&meta).map_err(store_error)
        })
        .unwrap();
        let err = update_secret(
            &app,
            &ctx(),
            wire::UpdateSecretRequest {
                secret_id: "managed".into(),
                description: Some("new".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn more_than_a_hundred_young_versions_is_refused_and_changes_nothing() {
        let app = app();
        create(&app, "busy");
        for i in 2..=100 {
            let req = wire::PutSecretValueRequest {
                secret_id: "busy".into(),
                client_request_token: Some(format!("00000000-0000-4000-8000-{i:012}")),
                secret_string: Some(SensitiveString::new(format!("v{i}"))),
                ..Default::default()
            };
            put_secret_value(&app, &ctx(), req).unwrap();
        }
        let req = wire::PutSecretValueRequest {
            secret_id: "busy".into(),
            client_request_token: Some("00000000-0000-4000-8000-999999999999".into()),
            secret_string: Some(SensitiveString::new("one too many".into())),
            ..Default::default()
        };
        let err = put_secret_value(&app, &ctx(), req).unwrap_err();
        assert_eq!(err.code, ErrorCode::LimitExceeded);
        let current = get_secret_value(
            &app,
            &ctx(),
            wire::GetSecretValueRequest { secret_id: "busy".into(), ..Default::default() },
        )
        .unwrap();
        assert_eq!(current.secret_string.unwrap().expose(), "v100");
    }

    /// Issue 23.2: 2,000 secrets with 50 tags each and ten filters that match nothing. One
    /// ListSecrets call looks at no more than the scan budget and pages on with a NextToken;
    /// following the tokens covers every secret exactly once.
    #[test]
    fn a_listing_with_filters_that_match_nothing_is_bounded_by_the_scan_budget() {
        let app = app();
        let tags: Vec<wire::Tag> = (0..50)
            .map(|i| wire::Tag { key: format!("TeamKey{i}"), value: format!("some-Value.{i}") })
            .collect();
        app.write_unrecorded(|tx| {
            for i in 0..2000 {
                let name = format!("bulk/s{i:05}");
                let meta = SecretMeta {
                    scope: ctx().scope,
                    arn: format!(
                        "arn:aws:secretsmanager:us-east-1:000000000000:secret:{name}-AbCdEf"
                    ),
                    name,
                    seq: 0,
                    description: Some("a long description of the secret".into()),
                    kms_key_id: None,
                    tags: Some(
                        tags.iter()
                            .map(|t| Tag { key: t.key.clone(), value: t.value.clone() })
                            .collect(),
                    ),
                    created_ms: i,
                    last_changed_ms: i,
                    last_accessed_ms: None,
                    deletion_ms: None,
                    owning_service: None,
                    secret_type: None,
                    resource_policy: None,
                    rotation: None,
                    replication: Default::default(),
                };
                tx.insert_secret(&meta).map_err(store_error)?;
            }
            Ok(())
        })
        .unwrap();
        let wire_filters: Vec<wire::Filter> = (0..10)
            .map(|i| wire::Filter {
                key: "all".into(),
                values: (0..10).map(|j| format!("nomatch{i}x{j}")).collect(),
            })
            .collect();
        let filters = parse_filters(&wire_filters).unwrap();
        let mut token: Option<String> = None;
        let mut calls = 0;
        let mut examined = 0;
        loop {
            let page = app
                .read(|tx| {
                    list_page(
                        tx,
                        &ctx(),
                        &filters,
                        SortBy::CreatedDate,
                        false,
                        false,
                        100,
                        token.as_deref(),
                    )
                })
                .unwrap();
            calls += 1;
            assert!(page.secrets.is_empty());
            assert!(page.examined <= SCAN_BUDGET, "{} secrets examined", page.examined);
            // Ten filters of ten values against 102 attribute strings: 10,200 per secret.
            assert!(page.examined <= MATCH_BUDGET / 10_200 + 1, "{}", page.examined);
            examined += page.examined;
            token = page.next_token;
            if token.is_none() {
                break;
            }
        }
        assert_eq!(examined, 2000);
        assert_eq!(calls, 2000usize.div_ceil(MATCH_BUDGET.div_ceil(10_200)));
        // Through the handler: an empty page with a NextToken.
        let req =
            wire::ListSecretsRequest { filters: Some(wire_filters.clone()), ..Default::default() };
        let first = list_secrets(&app, &ctx(), req).unwrap();
        assert!(first.secret_list.is_empty());
        let next = first.next_token.expect("a NextToken after the scan budget");
        // The token belongs to this account, region and these filters only.
        let elsewhere = RequestContext { scope: Scope::new("111111111111", "us-east-1"), ..ctx() };
        let req = wire::ListSecretsRequest {
            filters: Some(wire_filters.clone()),
            next_token: Some(next.clone()),
            ..Default::default()
        };
        assert_eq!(
            list_secrets(&app, &elsewhere, req).unwrap_err().code,
            ErrorCode::InvalidNextToken
        );
        let req = wire::ListSecretsRequest {
            filters: Some(wire_filters[..9].to_vec()),
            next_token: Some(next),
            ..Default::default()
        };
        assert_eq!(list_secrets(&app, &ctx(), req).unwrap_err().code, ErrorCode::InvalidNextToken);
        // A filter that matches pages through all its matches across budgets.
        let hits =
            parse_filters(&[wire::Filter { key: "name".into(), values: vec!["bulk/s019".into()] }])
                .unwrap();
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = app
                .read(|tx| {
                    list_page(tx, &ctx(), &hits, SortBy::Name, true, false, 7, token.as_deref())
                })
                .unwrap();
            found.extend(page.secrets.iter().map(|m| m.name.clone()));
            token = page.next_token;
            if token.is_none() {
                break;
            }
        }
        let expected: Vec<String> = (1900..2000).rev().map(|i| format!("bulk/s{i:05}")).collect();
        assert_eq!(found, expected);
    }
}
