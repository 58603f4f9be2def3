//! The KMS operations (`X-Amz-Target: TrentService.<Op>`): one function per operation, each
//! decoding its wire shape, running the key service in one store transaction and encoding
//! KMS's answer. Every arm of the dispatch table has that shape (`run`); imported key
//! material, multi-Region keys, custom key stores and GetKeyLastUsage are in `kms_rest`.

use crate::auth::KmsCall;
use crate::kms_families as families;
use crate::policies::bind_user_principals;
use crate::{App, RequestContext, clock};
use coffer_auth::policy::{Policy, PolicyKind};
use coffer_core::validation::Violation;
use coffer_core::{AwsError, ErrorCode, Scope};
use coffer_kms::asymmetric;
use coffer_kms::{
    Accepts, DRY_RUN_MESSAGE, EncryptionContext, KeyRecord, KeyState, KmsError, ListedAlias,
    NewKey, Tag, check_algorithm, data_key_length, generate_random,
};
use coffer_wire::kms as wire;
use coffer_wire::operation::KmsOp;
use coffer_wire::protocol::{SensitiveBlob, decode_request, encode_response, epoch_seconds};
use serde_json::Value;

const SYMMETRIC_DEFAULT: &str = "SYMMETRIC_DEFAULT";

/// Runs a KMS operation; `None` when Coffer does not implement it.
pub fn dispatch(
    app: &App,
    ctx: &RequestContext,
    op: KmsOp,
    body: Value,
) -> Option<Result<Vec<u8>, AwsError>> {
    let scope = &ctx.scope;
    let result = match op {
        KmsOp::CreateKey => run(body, |r| create_key(app, ctx, r)),
        KmsOp::DescribeKey => run(body, |r| describe_key(app, scope, r)),
        KmsOp::ListKeys => run(body, |r| list_keys(app, scope, r)),
        KmsOp::EnableKey => run(body, |r| enable_key(app, ctx, r)),
        KmsOp::DisableKey => run(body, |r| disable_key(app, ctx, r)),
        KmsOp::ScheduleKeyDeletion => run(body, |r| schedule_key_deletion(app, ctx, r)),
        KmsOp::CancelKeyDeletion => run(body, |r| cancel_key_deletion(app, ctx, r)),
        KmsOp::CreateAlias => run(body, |r| create_alias(app, ctx, r)),
        KmsOp::UpdateAlias => run(body, |r| update_alias(app, ctx, r)),
        KmsOp::DeleteAlias => run(body, |r| delete_alias(app, ctx, r)),
        KmsOp::ListAliases => run(body, |r| list_aliases(app, scope, r)),
        KmsOp::Encrypt => run(body, |r| encrypt(app, scope, r)),
        KmsOp::Decrypt => run(body, |r| decrypt(app, ctx, r)),
        KmsOp::ReEncrypt => run(body, |r| re_encrypt(app, ctx, r)),
        KmsOp::GenerateDataKey => run(body, |r| generate_data_key(app, scope, r, true)),
        KmsOp::GenerateDataKeyWithoutPlaintext => {
            run(body, |r| generate_data_key(app, scope, r, false))
        }
        KmsOp::GenerateRandom => run(body, generate_random_bytes),
        KmsOp::EnableKeyRotation => run(body, |r| enable_key_rotation(app, ctx, r)),
        KmsOp::DisableKeyRotation => run(body, |r| disable_key_rotation(app, ctx, r)),
        KmsOp::GetKeyRotationStatus => run(body, |r| get_key_rotation_status(app, scope, r)),
        KmsOp::RotateKeyOnDemand => run(body, |r| rotate_key_on_demand(app, ctx, r)),
        KmsOp::TagResource => run(body, |r| tag_resource(app, ctx, r)),
        KmsOp::UntagResource => run(body, |r| untag_resource(app, ctx, r)),
        KmsOp::ListResourceTags => run(body, |r| list_resource_tags(app, scope, r)),
        KmsOp::Sign => run(body, |r| families::sign(app, scope, r)),
        KmsOp::Verify => run(body, |r| families::verify(app, scope, r)),
        KmsOp::GetPublicKey => run(body, |r| families::get_public_key(app, scope, r)),
        KmsOp::GenerateMac => run(body, |r| families::generate_mac(app, scope, r)),
        KmsOp::VerifyMac => run(body, |r| families::verify_mac(app, scope, r)),
        KmsOp::DeriveSharedSecret => run(body, |r| families::derive_shared_secret(app, scope, r)),
        KmsOp::GenerateDataKeyPair => {
            run(body, |r| families::generate_data_key_pair(app, scope, r, true))
        }
        KmsOp::GenerateDataKeyPairWithoutPlaintext => {
            run(body, |r| families::generate_data_key_pair(app, scope, r, false))
        }
        KmsOp::CreateGrant => run(body, |r| families::create_grant(app, ctx, r)),
        KmsOp::ListGrants => run(body, |r| families::list_grants(app, scope, r)),
        KmsOp::ListRetirableGrants => run(body, |r| families::list_retirable_grants(app, scope, r)),
        KmsOp::RetireGrant => run(body, |r| families::retire_grant(app, ctx, r)),
        KmsOp::RevokeGrant => run(body, |r| families::revoke_grant(app, ctx, r)),
        KmsOp::GetKeyPolicy => run(body, |r| families::get_key_policy(app, scope, r)),
        KmsOp::PutKeyPolicy => run(body, |r| families::put_key_policy(app, ctx, r)),
        KmsOp::ListKeyPolicies => run(body, |r| families::list_key_policies(app, scope, r)),
        KmsOp::UpdateKeyDescription => run(body, |r| families::update_key_description(app, ctx, r)),
        KmsOp::ListKeyRotations => run(body, |r| families::list_key_rotations(app, scope, r)),
        KmsOp::ConnectCustomKeyStore
        | KmsOp::CreateCustomKeyStore
        | KmsOp::DeleteCustomKeyStore
        | KmsOp::DeleteImportedKeyMaterial
        | KmsOp::DescribeCustomKeyStores
        | KmsOp::DisconnectCustomKeyStore
        | KmsOp::GetKeyLastUsage
        | KmsOp::GetParametersForImport
        | KmsOp::ImportKeyMaterial
        | KmsOp::ReplicateKey
        | KmsOp::UpdateCustomKeyStore
        | KmsOp::UpdatePrimaryRegion => crate::kms_rest::dispatch(app, ctx, op, body)?,
    };
    // KMS reports its own internal failures as KMSInternalException.
    Some(result.map_err(|e| match e.code {
        ErrorCode::InternalServiceError => AwsError::new(ErrorCode::KmsInternal, e.message),
        _ => e,
    }))
}

/// The shape of every arm of the dispatch table: decode the request (the model checked it
/// and authorization ran before), run its handler, encode the answer.
pub(crate) fn run<R: serde::de::DeserializeOwned, T: serde::Serialize>(
    body: Value,
    handler: impl FnOnce(R) -> Result<T, AwsError>,
) -> Result<Vec<u8>, AwsError> {
    decode_request(body).and_then(handler).map(|response| encode_response(&response))
}

fn kms(e: KmsError) -> AwsError {
    AwsError::from(e)
}

pub(crate) fn metadata(key: &KeyRecord) -> wire::KeyMetadata {
    wire::KeyMetadata {
        aws_account_id: key.scope.account.clone(),
        key_id: key.key_id.clone(),
        arn: key.arn.clone(),
        creation_date: epoch_seconds(key.created_ms),
        enabled: key.state == KeyState::Enabled,
        description: key.description.clone(),
        key_usage: key.key_usage.clone(),
        key_state: key.state.as_str().to_string(),
        deletion_date: key.deletion_ms.map(epoch_seconds),
        origin: key.origin.clone(),
        key_manager: key.manager.as_str().to_string(),
        customer_master_key_spec: key.key_spec.clone(),
        key_spec: key.key_spec.clone(),
        encryption_algorithms: names(asymmetric::encryption_algorithms(key)),
        signing_algorithms: names(asymmetric::signing_algorithms(key)),
        mac_algorithms: names(asymmetric::mac_algorithms(key)),
        key_agreement_algorithms: names(asymmetric::key_agreement_algorithms(key)),
        multi_region: key.multi_region.is_some(),
        multi_region_configuration: crate::kms_rest::multi_region_configuration(key),
        current_key_material_id: key.current_material().map(|m| m.id.clone()),
        expiration_model: key.imported.as_ref().and_then(|i| i.expiration_model.clone()),
        valid_to: key.imported.as_ref().and_then(|i| i.valid_to_ms).map(epoch_seconds),
    }
}

fn names(list: Vec<&'static str>) -> Vec<String> {
    list.into_iter().map(str::to_string).collect()
}

fn context(context: Option<std::collections::BTreeMap<String, String>>) -> EncryptionContext {
    context.unwrap_or_default()
}

fn to_tags(tags: Vec<wire::Tag>) -> Vec<Tag> {
    tags.into_iter().map(|t| Tag { key: t.tag_key, value: t.tag_value }).collect()
}

pub(crate) fn dry_run<T>(requested: Option<bool>, result: T) -> Result<T, AwsError> {
    if requested == Some(true) {
        Err(AwsError::new(ErrorCode::KmsDryRunOperation, DRY_RUN_MESSAGE))
    } else {
        Ok(result)
    }
}

pub(crate) fn refuse_recipient(recipient: &Option<Value>) -> Result<(), AwsError> {
    match recipient {
        Some(_) => Err(AwsError::new(
            ErrorCode::KmsUnsupportedOperation,
            "Recipient (Nitro Enclaves attestation) is not supported by Coffer.",
        )),
        None => Ok(()),
    }
}

/// A page size: the requested `Limit` or the operation's default, at most `max`.
fn limit(requested: Option<i32>, default: usize, max: usize) -> usize {
    requested.map_or(default, |l| usize::try_from(l).unwrap_or(default)).clamp(1, max)
}

/// KMS's policy lockout safety check refusal.
pub(crate) fn lockout() -> AwsError {
    AwsError::new(
        ErrorCode::MalformedPolicyDocument,
        "The new key policy will not allow you to update the key policy in the future.",
    )
}

pub(crate) const INVALID_PRINCIPALS: &str =
    "Policy contains a statement with one or more invalid principals.";

/// Refuses a key policy that is a JSON object but not a valid policy, as KMS does with
/// MalformedPolicyDocumentException. Authorization reads the stored policy with the same
/// parser, so a policy accepted here is one it can enforce (a typo such as `StringNotEqual`
/// must never be stored and then read as "no policy"). Text that is not a JSON object is
/// left to the key service, which answers it in KMS's words.
pub(crate) fn check_key_policy(text: &str) -> Result<(), AwsError> {
    if !matches!(serde_json::from_str::<Value>(text), Ok(Value::Object(_))) {
        return Ok(());
    }
    let Err(problems) = Policy::parse(text, PolicyKind::Resource) else { return Ok(()) };
    // The parser words principal problems as "Statement <n>: Principal..." (or NotPrincipal).
    let about_principal = |p: &String| p.contains(": Principal") || p.contains(": NotPrincipal");
    let message = if problems.iter().any(about_principal) {
        INVALID_PRINCIPALS.to_string()
    } else {
        format!("The key policy contains an error: {}", problems.first().map_or("", String::as_str))
    };
    Err(AwsError::new(ErrorCode::MalformedPolicyDocument, message))
}

pub fn create_key(
    app: &App,
    ctx: &RequestContext,
    req: wire::CreateKeyRequest,
) -> Result<wire::KeyMetadataResponse, AwsError> {
    let scope = &ctx.scope;
    if let Some(text) = &req.policy {
        check_key_policy(text)?;
    }
    let request = NewKey {
        description: req.description,
        key_usage: req.key_usage,
        key_spec: req.key_spec,
        customer_master_key_spec: req.customer_master_key_spec,
        origin: req.origin,
        custom_key_store_id: req.custom_key_store_id,
        xks_key_id: req.xks_key_id,
        multi_region: req.multi_region.unwrap_or(false),
        policy: req.policy,
        tags: to_tags(req.tags.unwrap_or_default()),
    };
    let key = app.write(ctx, |tx| {
        let mut request = request.clone();
        // IAM users named in the key policy are bound to their unique ids, as for resource
        // policies: a user recreated under the same name is not the one the policy names.
        if let Some(text) = &request.policy
            && matches!(serde_json::from_str::<Value>(text), Ok(Value::Object(_)))
        {
            let bound =
                bind_user_principals(app, &*tx, text, INVALID_PRINCIPALS, scope.partition())?;
            request.policy = Some(bound);
        }
        let key = app.keys.kms().create_key(tx, scope, request, clock::now_ms()).map_err(kms)?;
        if req.bypass_policy_lockout_safety_check != Some(true)
            && let (Some(gate), Some(text)) = (&ctx.gate, &key.policy)
            && !gate.key_policy_keeps_caller(text, &key)
        {
            return Err(lockout());
        }
        Ok(key)
    })?;
    Ok(wire::KeyMetadataResponse { key_metadata: metadata(&key) })
}

pub fn describe_key(
    app: &App,
    scope: &Scope,
    req: wire::KeyIdRequest,
) -> Result<wire::KeyMetadataResponse, AwsError> {
    let key = app.read(|tx| {
        app.keys.kms().find_key(tx, scope, &req.key_id, Accepts::KeyOrAlias).map_err(kms)
    })?;
    Ok(wire::KeyMetadataResponse { key_metadata: metadata(&key) })
}

pub fn list_keys(
    app: &App,
    scope: &Scope,
    req: wire::ListRequest,
) -> Result<wire::ListKeysResponse, AwsError> {
    let limit = limit(req.limit, 100, 1000);
    let page = app.read(|tx| {
        app.keys.kms().list_keys(tx, scope, req.marker.as_deref(), limit).map_err(kms)
    })?;
    Ok(wire::ListKeysResponse {
        keys: page
            .items
            .iter()
            .map(|k| wire::KeyListEntry { key_id: k.key_id.clone(), key_arn: k.arn.clone() })
            .collect(),
        truncated: page.next_marker.is_some(),
        next_marker: page.next_marker,
    })
}

pub fn enable_key(
    app: &App,
    ctx: &RequestContext,
    req: wire::KeyIdRequest,
) -> Result<wire::EmptyResponse, AwsError> {
    let scope = &ctx.scope;
    app.write(ctx, |tx| app.keys.kms().enable_key(tx, scope, &req.key_id).map_err(kms))?;
    Ok(wire::EmptyResponse {})
}

pub fn disable_key(
    app: &App,
    ctx: &RequestContext,
    req: wire::KeyIdRequest,
) -> Result<wire::EmptyResponse, AwsError> {
    let scope = &ctx.scope;
    app.write(ctx, |tx| app.keys.kms().disable_key(tx, scope, &req.key_id).map_err(kms))?;
    Ok(wire::EmptyResponse {})
}

pub fn schedule_key_deletion(
    app: &App,
    ctx: &RequestContext,
    req: wire::ScheduleKeyDeletionRequest,
) -> Result<wire::ScheduleKeyDeletionResponse, AwsError> {
    let scope = &ctx.scope;
    let key = app.write(ctx, |tx| {
        app.keys
            .kms()
            .schedule_key_deletion(
                tx,
                scope,
                &req.key_id,
                req.pending_window_in_days,
                clock::now_ms(),
            )
            .map_err(kms)
    })?;
    Ok(wire::ScheduleKeyDeletionResponse {
        key_id: key.arn.clone(),
        deletion_date: key.deletion_ms.map(epoch_seconds),
        key_state: key.state.as_str().to_string(),
        pending_window_in_days: key.pending_window_days.unwrap_or(30),
    })
}

pub fn cancel_key_deletion(
    app: &App,
    ctx: &RequestContext,
    req: wire::KeyIdRequest,
) -> Result<wire::KeyIdResponse, AwsError> {
    let scope = &ctx.scope;
    let key = app
        .write(ctx, |tx| app.keys.kms().cancel_key_deletion(tx, scope, &req.key_id).map_err(kms))?;
    Ok(wire::KeyIdResponse { key_id: key.arn })
}

fn alias_entry(scope: &Scope, listed: &ListedAlias) -> wire::AliasListEntry {
    let stored = match listed {
        ListedAlias::Stored(alias) => Some(alias),
        ListedAlias::Predefined(_) => None,
    };
    wire::AliasListEntry {
        alias_name: listed.name().to_owned(),
        alias_arn: coffer_kms::alias_arn(scope, listed.name()),
        target_key_id: stored.map(|alias| alias.target_key_id.clone()),
        creation_date: stored.map(|alias| epoch_seconds(alias.created_ms)),
        last_updated_date: stored.map(|alias| epoch_seconds(alias.updated_ms)),
    }
}

fn target_key_id(req: &wire::AliasRequest) -> Result<&str, AwsError> {
    req.target_key_id
        .as_deref()
        .ok_or_else(|| AwsError::validation(Violation::null("targetKeyId").message()))
}

pub fn create_alias(
    app: &App,
    ctx: &RequestContext,
    req: wire::AliasRequest,
) -> Result<wire::EmptyResponse, AwsError> {
    let scope = &ctx.scope;
    let target = target_key_id(&req)?;
    app.write(ctx, |tx| {
        app.keys
            .kms()
            .create_alias(tx, scope, &req.alias_name, target, clock::now_ms())
            .map_err(kms)
    })?;
    Ok(wire::EmptyResponse {})
}

pub fn update_alias(
    app: &App,
    ctx: &RequestContext,
    req: wire::AliasRequest,
) -> Result<wire::EmptyResponse, AwsError> {
    let scope = &ctx.scope;
    let target = target_key_id(&req)?;
    app.write(ctx, |tx| {
        app.keys
            .kms()
            .update_alias(tx, scope, &req.alias_name, target, clock::now_ms())
            .map_err(kms)
    })?;
    Ok(wire::EmptyResponse {})
}

pub fn delete_alias(
    app: &App,
    ctx: &RequestContext,
    req: wire::AliasRequest,
) -> Result<wire::EmptyResponse, AwsError> {
    let scope = &ctx.scope;
    app.write(ctx, |tx| app.keys.kms().delete_alias(tx, scope, &req.alias_name).map_err(kms))?;
    Ok(wire::EmptyResponse {})
}

pub fn list_aliases(
    app: &App,
    scope: &Scope,
    req: wire::ListRequest,
) -> Result<wire::ListAliasesResponse, AwsError> {
    let limit = limit(req.limit, 50, 1000);
    let page = app.read(|tx| {
        app.keys
            .kms()
            .list_aliases_with_predefined(
                tx,
                scope,
                req.key_id.as_deref(),
                req.marker.as_deref(),
                limit,
            )
            .map_err(kms)
    })?;
    Ok(wire::ListAliasesResponse {
        aliases: page.items.iter().map(|a| alias_entry(scope, a)).collect(),
        truncated: page.next_marker.is_some(),
        next_marker: page.next_marker,
    })
}

pub fn encrypt(
    app: &App,
    scope: &Scope,
    req: wire::EncryptRequest,
) -> Result<wire::EncryptResponse, AwsError> {
    let context = context(req.encryption_context.clone());
    let (blob, key_arn, algorithm) = app.read(|tx| {
        let kms = app.keys.kms();
        let key = kms.find_key(tx, scope, &req.key_id, Accepts::KeyOrAlias).map_err(self::kms)?;
        if families::is_asymmetric(&key) {
            // A signing or MAC key is refused for its usage before any algorithm is looked at.
            asymmetric::require_usable_for(&key, coffer_kms::model::ENCRYPT_DECRYPT, "Encrypt")
                .map_err(self::kms)?;
            // RSAES-OAEP under the key's public key: the blob is the raw RSA ciphertext.
            let algorithm =
                families::asymmetric_algorithm(req.encryption_algorithm.as_deref(), &key)?;
            families::refuse_context(&req.encryption_context)?;
            let blob = kms
                .asymmetric_encrypt(&key, algorithm, req.plaintext.expose())
                .map_err(self::kms)?;
            return Ok((blob, key.arn.clone(), algorithm.to_string()));
        }
        check_algorithm(req.encryption_algorithm.as_deref(), &key).map_err(self::kms)?;
        let encrypted =
            kms.encrypt_under(&key, req.plaintext.expose(), &context).map_err(self::kms)?;
        Ok((encrypted.blob, encrypted.key_arn, SYMMETRIC_DEFAULT.to_string()))
    })?;
    dry_run(
        req.dry_run,
        wire::EncryptResponse {
            ciphertext_blob: wire::Blob(blob),
            key_id: key_arn,
            encryption_algorithm: algorithm,
        },
    )
}

/// Authorizes `action` on the key a ciphertext names (which the request need not name):
/// the key's policy and the caller's denials on that key apply to every route to it.
fn authorize_blob_key(
    app: &App,
    ctx: &RequestContext,
    tx: &dyn coffer_store::ReadTxn,
    blob: &[u8],
    action: &str,
    call: &KmsCall<'_>,
) -> Result<(), AwsError> {
    if let Some(gate) = &ctx.gate
        && let Some(key) = crate::auth::sealing_key(app, tx, &ctx.scope, blob)
    {
        gate.kms_direct((app, tx), action, &key, call)?;
    }
    Ok(())
}

pub fn decrypt(
    app: &App,
    ctx: &RequestContext,
    req: wire::DecryptRequest,
) -> Result<wire::DecryptResponse, AwsError> {
    refuse_recipient(&req.recipient)?;
    let scope = &ctx.scope;
    let context = context(req.encryption_context.clone());
    // A ciphertext of an asymmetric key is raw RSA: the request names its key (which was
    // authorized before the handler), and the key decrypts it.
    if let Some(key_id) = req.key_id.as_deref() {
        let key = app.read(|tx| {
            app.keys.kms().find_key(tx, scope, key_id, Accepts::KeyOrAlias).map_err(kms)
        })?;
        if families::decrypts_raw(&key) {
            let algorithm =
                families::asymmetric_algorithm(req.encryption_algorithm.as_deref(), &key)?;
            families::refuse_context(&req.encryption_context)?;
            let plaintext = app
                .keys
                .kms()
                .asymmetric_decrypt(&key, algorithm, &req.ciphertext_blob.0)
                .map_err(kms)?;
            return dry_run(
                req.dry_run,
                wire::DecryptResponse {
                    key_id: key.arn.clone(),
                    plaintext: SensitiveBlob::new(plaintext.expose().to_vec()),
                    encryption_algorithm: algorithm.to_string(),
                    key_material_id: String::new(),
                },
            );
        }
    }
    let decrypted = app.read(|tx| {
        let call = KmsCall {
            encryption_context: req.encryption_context.as_ref(),
            algorithm: Some(req.encryption_algorithm.as_deref().unwrap_or(SYMMETRIC_DEFAULT)),
            ..KmsCall::default()
        };
        authorize_blob_key(app, ctx, tx, &req.ciphertext_blob.0, "kms:Decrypt", &call)?;
        let opened = app
            .keys
            .kms()
            .decrypt(tx, scope, &req.ciphertext_blob.0, &context, req.key_id.as_deref())
            .map_err(kms)?;
        check_algorithm(req.encryption_algorithm.as_deref(), &opened.key).map_err(kms)?;
        Ok(opened)
    })?;
    dry_run(
        req.dry_run,
        wire::DecryptResponse {
            key_id: decrypted.key.arn.clone(),
            plaintext: SensitiveBlob::new(decrypted.plaintext.expose().to_vec()),
            encryption_algorithm: SYMMETRIC_DEFAULT.to_string(),
            key_material_id: decrypted.material_id.clone(),
        },
    )
}

pub fn re_encrypt(
    app: &App,
    ctx: &RequestContext,
    req: wire::ReEncryptRequest,
) -> Result<wire::ReEncryptResponse, AwsError> {
    let scope = &ctx.scope;
    let source_context = context(req.source_encryption_context.clone());
    let destination_context = context(req.destination_encryption_context.clone());
    let moved = app.read(|tx| {
        let kms = app.keys.kms();
        let destination = kms
            .find_key(tx, scope, &req.destination_key_id, Accepts::KeyOrAlias)
            .map_err(self::kms)?;
        let from = KmsCall {
            encryption_context: req.source_encryption_context.as_ref(),
            algorithm: Some(
                req.source_encryption_algorithm.as_deref().unwrap_or(SYMMETRIC_DEFAULT),
            ),
            ..KmsCall::default()
        };
        authorize_blob_key(app, ctx, tx, &req.ciphertext_blob.0, "kms:ReEncryptFrom", &from)?;
        if let Some(gate) = &ctx.gate {
            let context = req.destination_encryption_context.as_ref();
            let algorithm = req.destination_encryption_algorithm.as_deref();
            let to = KmsCall {
                algorithm: Some(algorithm.unwrap_or(SYMMETRIC_DEFAULT)),
                ..KmsCall::naming(&req.destination_key_id, context)
            };
            gate.kms_direct((app, tx), "kms:ReEncryptTo", &destination, &to)?;
        }
        // A source named by an asymmetric key is raw RSA ciphertext of that key (the
        // request names it, so it was authorized before the handler).
        let asymmetric_source = match req.source_key_id.as_deref() {
            Some(id) => Some(kms.find_key(tx, scope, id, Accepts::KeyOrAlias).map_err(self::kms)?)
                .filter(families::decrypts_raw),
            None => None,
        };
        let (plaintext, source_arn, source_material, source_algorithm) = match &asymmetric_source {
            Some(source) => {
                families::refuse_context(&req.source_encryption_context)?;
                let algorithm = families::asymmetric_algorithm(
                    req.source_encryption_algorithm.as_deref(),
                    source,
                )?;
                let plaintext = kms
                    .asymmetric_decrypt(source, algorithm, &req.ciphertext_blob.0)
                    .map_err(self::kms)?;
                (plaintext, source.arn.clone(), String::new(), algorithm.to_string())
            }
            None => {
                let source = kms
                    .decrypt(
                        tx,
                        scope,
                        &req.ciphertext_blob.0,
                        &source_context,
                        req.source_key_id.as_deref(),
                    )
                    .map_err(self::kms)?;
                check_algorithm(req.source_encryption_algorithm.as_deref(), &source.key)
                    .map_err(self::kms)?;
                let arn = source.key.arn.clone();
                (source.plaintext, arn, source.material_id, SYMMETRIC_DEFAULT.to_string())
            }
        };
        // KMS names a problem with the source before one with the destination, and a
        // destination of the wrong usage by its usage (for ReEncrypt), before any algorithm.
        let destination_algorithm = if families::is_asymmetric(&destination) {
            asymmetric::require_usable_for(
                &destination,
                coffer_kms::model::ENCRYPT_DECRYPT,
                "ReEncrypt",
            )
            .map_err(self::kms)?;
            families::refuse_context(&req.destination_encryption_context)?;
            families::asymmetric_algorithm(
                req.destination_encryption_algorithm.as_deref(),
                &destination,
            )?
            .to_string()
        } else {
            check_algorithm(req.destination_encryption_algorithm.as_deref(), &destination)
                .map_err(self::kms)?;
            SYMMETRIC_DEFAULT.to_string()
        };
        let (blob, key_arn, destination_material) = if families::is_asymmetric(&destination) {
            let blob = kms
                .asymmetric_encrypt(&destination, &destination_algorithm, plaintext.expose())
                .map_err(self::kms)?;
            (blob, destination.arn.clone(), String::new())
        } else {
            let encrypted = kms
                .encrypt_under(&destination, plaintext.expose(), &destination_context)
                .map_err(self::kms)?;
            (encrypted.blob, encrypted.key_arn, encrypted.material_id)
        };
        Ok(wire::ReEncryptResponse {
            ciphertext_blob: wire::Blob(blob),
            source_key_id: source_arn,
            key_id: key_arn,
            source_encryption_algorithm: source_algorithm,
            destination_encryption_algorithm: destination_algorithm,
            source_key_material_id: source_material,
            destination_key_material_id: destination_material,
        })
    })?;
    dry_run(req.dry_run, moved)
}

pub fn generate_data_key(
    app: &App,
    scope: &Scope,
    req: wire::GenerateDataKeyRequest,
    with_plaintext: bool,
) -> Result<wire::GenerateDataKeyResponse, AwsError> {
    refuse_recipient(&req.recipient)?;
    let length = data_key_length(req.number_of_bytes, req.key_spec.as_deref()).map_err(kms)?;
    let context = context(req.encryption_context.clone());
    let data_key = app.read(|tx| {
        app.keys.kms().generate_data_key(tx, scope, &req.key_id, length, &context).map_err(kms)
    })?;
    dry_run(
        req.dry_run,
        wire::GenerateDataKeyResponse {
            ciphertext_blob: wire::Blob(data_key.encrypted.blob.clone()),
            plaintext: with_plaintext
                .then(|| SensitiveBlob::new(data_key.plaintext.expose().to_vec())),
            key_id: data_key.encrypted.key_arn.clone(),
            key_material_id: data_key.encrypted.material_id.clone(),
        },
    )
}

pub fn generate_random_bytes(
    req: wire::GenerateRandomRequest,
) -> Result<wire::GenerateRandomResponse, AwsError> {
    refuse_recipient(&req.recipient)?;
    if let Some(store) = req.custom_key_store_id {
        return Err(AwsError::new(
            ErrorCode::KmsCustomKeyStoreNotFound,
            format!("Custom key store {store} does not exist."),
        ));
    }
    let n =
        req.number_of_bytes.ok_or_else(|| AwsError::validation("NumberOfBytes is required."))?;
    // The model bounds NumberOfBytes to 1..=1024 before we get here.
    let bytes = generate_random(usize::try_from(n).unwrap_or(0));
    Ok(wire::GenerateRandomResponse { plaintext: SensitiveBlob::new(bytes.expose().to_vec()) })
}

pub fn enable_key_rotation(
    app: &App,
    ctx: &RequestContext,
    req: wire::EnableKeyRotationRequest,
) -> Result<wire::EmptyResponse, AwsError> {
    let scope = &ctx.scope;
    app.write(ctx, |tx| {
        app.keys
            .kms()
            .enable_key_rotation(
                tx,
                scope,
                &req.key_id,
                req.rotation_period_in_days,
                clock::now_ms(),
            )
            .map_err(kms)
    })?;
    Ok(wire::EmptyResponse {})
}

pub fn disable_key_rotation(
    app: &App,
    ctx: &RequestContext,
    req: wire::KeyIdRequest,
) -> Result<wire::EmptyResponse, AwsError> {
    let scope = &ctx.scope;
    app.write(ctx, |tx| app.keys.kms().disable_key_rotation(tx, scope, &req.key_id).map_err(kms))?;
    Ok(wire::EmptyResponse {})
}

pub fn get_key_rotation_status(
    app: &App,
    scope: &Scope,
    req: wire::KeyIdRequest,
) -> Result<wire::GetKeyRotationStatusResponse, AwsError> {
    let key =
        app.read(|tx| app.keys.kms().key_rotation_status(tx, scope, &req.key_id).map_err(kms))?;
    // While a key is pending deletion its rotation status reads false (KMS does not rotate
    // it); the stored setting is kept, so canceling the deletion brings it back.
    let enabled = key.rotation_enabled && key.state != KeyState::PendingDeletion;
    Ok(wire::GetKeyRotationStatusResponse {
        key_rotation_enabled: enabled,
        key_id: key.arn.clone(),
        rotation_period_in_days: key.rotation_period_days.filter(|_| enabled),
        next_rotation_date: key.next_rotation_ms.filter(|_| enabled).map(epoch_seconds),
    })
}

pub fn rotate_key_on_demand(
    app: &App,
    ctx: &RequestContext,
    req: wire::KeyIdRequest,
) -> Result<wire::KeyIdResponse, AwsError> {
    let scope = &ctx.scope;
    let key = app.write(ctx, |tx| {
        app.keys.kms().rotate_key_on_demand(tx, scope, &req.key_id, clock::now_ms()).map_err(kms)
    })?;
    Ok(wire::KeyIdResponse { key_id: key.arn })
}

pub fn tag_resource(
    app: &App,
    ctx: &RequestContext,
    req: wire::TagResourceRequest,
) -> Result<wire::EmptyResponse, AwsError> {
    let scope = &ctx.scope;
    let tags = to_tags(req.tags);
    app.write(ctx, |tx| app.keys.kms().tag_resource(tx, scope, &req.key_id, &tags).map_err(kms))?;
    Ok(wire::EmptyResponse {})
}

pub fn untag_resource(
    app: &App,
    ctx: &RequestContext,
    req: wire::UntagResourceRequest,
) -> Result<wire::EmptyResponse, AwsError> {
    let scope = &ctx.scope;
    app.write(ctx, |tx| {
        app.keys.kms().untag_resource(tx, scope, &req.key_id, &req.tag_keys).map_err(kms)
    })?;
    Ok(wire::EmptyResponse {})
}

pub fn list_resource_tags(
    app: &App,
    scope: &Scope,
    req: wire::ListRequest,
) -> Result<wire::ListResourceTagsResponse, AwsError> {
    let key_id = req.key_id.clone().unwrap_or_default();
    let limit = limit(req.limit, 50, 50);
    let page = app.read(|tx| {
        app.keys
            .kms()
            .list_resource_tags(tx, scope, &key_id, req.marker.as_deref(), limit)
            .map_err(kms)
    })?;
    Ok(wire::ListResourceTagsResponse {
        tags: page
            .items
            .into_iter()
            .map(|t| wire::Tag { tag_key: t.key, tag_value: t.value })
            .collect(),
        truncated: page.next_marker.is_some(),
        next_marker: page.next_marker,
    })
}

/// Carries out due key deletions and rotations (called by the background sweeper), each
/// with its KMS service event (`DeleteKey`, `RotateKey`) in the same transaction.
pub fn carry_out_due(app: &App, now: i64) -> Result<coffer_kms::DueWork, AwsError> {
    app.write_unrecorded(|tx| {
        let work = app.keys.kms().carry_out_due(tx, now).map_err(kms)?;
        for (scope, arn) in &work.deleted {
            crate::kms_last_use::forget(tx, arn).map_err(crate::store_error)?;
            crate::audit::record_service_event(app, tx, scope, KMS_SERVICE, "DeleteKey", arn, now)?;
        }
        for (scope, arn) in &work.rotated {
            crate::audit::record_service_event(app, tx, scope, KMS_SERVICE, "RotateKey", arn, now)?;
        }
        for (scope, arn) in &work.expired {
            let event = "DeleteExpiredKeyMaterial";
            crate::audit::record_service_event(app, tx, scope, KMS_SERVICE, event, arn, now)?;
        }
        Ok(work)
    })
}

const KMS_SERVICE: &str = "kms.amazonaws.com";
