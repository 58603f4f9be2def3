//! The KMS operations of asymmetric keys, HMAC keys and data key pairs: Sign, Verify,
//! GetPublicKey, GenerateMac, VerifyMac, DeriveSharedSecret and GenerateDataKeyPair
//! (with and without plaintext). Each names its key by `KeyId`, so the request is
//! authorized (`kms:<Op>` on that key, with its key policy) before the handler runs,
//! like every other KMS operation; the key service does the cryptography.

use crate::App;
use crate::kms_api::{dry_run, refuse_recipient};
use coffer_core::ErrorCode;
use coffer_core::{AwsError, Scope};
use coffer_kms::asymmetric::{encryption_algorithms, key_agreement_algorithms, signing_algorithms};
use coffer_kms::key_admin;
use coffer_kms::{Accepts, KeyRecord, KmsError};
use coffer_wire::kms::Blob;
use coffer_wire::kms_families as wire;
use coffer_wire::protocol::SensitiveBlob;

fn kms(e: KmsError) -> AwsError {
    AwsError::from(e)
}

fn strings(list: Vec<&'static str>) -> Vec<String> {
    list.into_iter().map(str::to_string).collect()
}

/// The key a request names, in any form KMS accepts (aliases included).
fn key(app: &App, scope: &Scope, key_id: &str) -> Result<KeyRecord, AwsError> {
    app.read(|tx| app.keys.kms().find_key(tx, scope, key_id, Accepts::KeyOrAlias).map_err(kms))
}

pub fn sign(
    app: &App,
    scope: &Scope,
    req: wire::SignRequest,
) -> Result<wire::SignResponse, AwsError> {
    let key = key(app, scope, &req.key_id)?;
    let signature = app
        .keys
        .kms()
        .sign(&key, &req.signing_algorithm, req.message.expose(), req.message_type.as_deref())
        .map_err(kms)?;
    dry_run(
        req.dry_run,
        wire::SignResponse {
            key_id: key.arn,
            signature: Blob(signature),
            signing_algorithm: req.signing_algorithm,
        },
    )
}

pub fn verify(
    app: &App,
    scope: &Scope,
    req: wire::VerifyRequest,
) -> Result<wire::VerifyResponse, AwsError> {
    let key = key(app, scope, &req.key_id)?;
    let valid = app
        .keys
        .kms()
        .verify(
            &key,
            &req.signing_algorithm,
            req.message.expose(),
            req.message_type.as_deref(),
            &req.signature.0,
        )
        .map_err(kms)?;
    if !valid {
        // KMS answers an invalid signature with an error, not `SignatureValid: false`.
        return Err(AwsError::new(ErrorCode::KmsInvalidSignature, ""));
    }
    dry_run(
        req.dry_run,
        wire::VerifyResponse {
            key_id: key.arn,
            signature_valid: true,
            signing_algorithm: req.signing_algorithm,
        },
    )
}

pub fn get_public_key(
    app: &App,
    scope: &Scope,
    req: wire::GetPublicKeyRequest,
) -> Result<wire::GetPublicKeyResponse, AwsError> {
    let key = key(app, scope, &req.key_id)?;
    if key.state == coffer_kms::KeyState::Disabled {
        return Err(kms(KmsError::disabled(&key.arn)));
    }
    if key.state == coffer_kms::KeyState::PendingDeletion {
        return Err(kms(KmsError::pending_deletion(&key.arn)));
    }
    let public = app.keys.kms().public_key(&key).map_err(kms)?;
    Ok(wire::GetPublicKeyResponse {
        key_id: key.arn.clone(),
        public_key: Blob(public),
        customer_master_key_spec: key.key_spec.clone(),
        key_spec: key.key_spec.clone(),
        key_usage: key.key_usage.clone(),
        encryption_algorithms: strings(
            encryption_algorithms(&key).into_iter().filter(|a| *a != "SYMMETRIC_DEFAULT").collect(),
        ),
        signing_algorithms: strings(signing_algorithms(&key)),
        key_agreement_algorithms: strings(key_agreement_algorithms(&key)),
    })
}

pub fn generate_mac(
    app: &App,
    scope: &Scope,
    req: wire::GenerateMacRequest,
) -> Result<wire::GenerateMacResponse, AwsError> {
    let key = key(app, scope, &req.key_id)?;
    let mac =
        app.keys.kms().generate_mac(&key, &req.mac_algorithm, req.message.expose()).map_err(kms)?;
    dry_run(
        req.dry_run,
        wire::GenerateMacResponse {
            mac: Blob(mac),
            mac_algorithm: req.mac_algorithm,
            key_id: key.arn,
        },
    )
}

pub fn verify_mac(
    app: &App,
    scope: &Scope,
    req: wire::VerifyMacRequest,
) -> Result<wire::VerifyMacResponse, AwsError> {
    let key = key(app, scope, &req.key_id)?;
    let valid = app
        .keys
        .kms()
        .verify_mac(&key, &req.mac_algorithm, req.message.expose(), &req.mac.0)
        .map_err(kms)?;
    if !valid {
        return Err(AwsError::new(ErrorCode::KmsInvalidMac, ""));
    }
    dry_run(
        req.dry_run,
        wire::VerifyMacResponse {
            key_id: key.arn,
            mac_valid: true,
            mac_algorithm: req.mac_algorithm,
        },
    )
}

pub fn derive_shared_secret(
    app: &App,
    scope: &Scope,
    req: wire::DeriveSharedSecretRequest,
) -> Result<wire::DeriveSharedSecretResponse, AwsError> {
    refuse_recipient(&req.recipient)?;
    let key = key(app, scope, &req.key_id)?;
    let secret = app
        .keys
        .kms()
        .derive_shared_secret(&key, &req.key_agreement_algorithm, &req.public_key.0)
        .map_err(kms)?;
    dry_run(
        req.dry_run,
        wire::DeriveSharedSecretResponse {
            key_id: key.arn,
            shared_secret: SensitiveBlob::new(secret.expose().to_vec()),
            key_agreement_algorithm: req.key_agreement_algorithm,
            key_origin: "AWS_KMS".to_string(),
        },
    )
}

pub fn generate_data_key_pair(
    app: &App,
    scope: &Scope,
    req: wire::GenerateDataKeyPairRequest,
    with_plaintext: bool,
) -> Result<wire::GenerateDataKeyPairResponse, AwsError> {
    refuse_recipient(&req.recipient)?;
    let key = key(app, scope, &req.key_id)?;
    let context = req.encryption_context.clone().unwrap_or_default();
    let pair =
        app.keys.kms().generate_data_key_pair(&key, &req.key_pair_spec, &context).map_err(kms)?;
    dry_run(
        req.dry_run,
        wire::GenerateDataKeyPairResponse {
            private_key_ciphertext_blob: Blob(pair.encrypted.blob.clone()),
            private_key_plaintext: with_plaintext
                .then(|| SensitiveBlob::new(pair.private_plaintext.expose().to_vec())),
            public_key: Blob(pair.public_key.clone()),
            key_id: pair.encrypted.key_arn.clone(),
            key_pair_spec: req.key_pair_spec,
            key_material_id: pair.encrypted.material_id.clone(),
        },
    )
}

/// The encryption algorithm an asymmetric Encrypt/Decrypt uses: the one asked for, which
/// an RSA key requires (its default would be SYMMETRIC_DEFAULT, which it does not support).
pub fn asymmetric_algorithm<'a>(
    requested: Option<&'a str>,
    key: &KeyRecord,
) -> Result<&'a str, AwsError> {
    match requested {
        Some(a) if a != "SYMMETRIC_DEFAULT" => Ok(a),
        other => Err(kms(KmsError::rejected(
            ErrorCode::KmsInvalidKeyUsage,
            format!(
                "{} does not support the encryption algorithm {}.",
                key.arn,
                other.unwrap_or("SYMMETRIC_DEFAULT")
            ),
        ))),
    }
}

/// Asymmetric keys take no encryption context (it is authenticated data of symmetric
/// ciphertext only).
pub fn refuse_context(
    context: &Option<std::collections::BTreeMap<String, String>>,
) -> Result<(), AwsError> {
    match context {
        Some(c) if !c.is_empty() => Err(AwsError::validation(
            "EncryptionContext is not supported with asymmetric KMS keys.",
        )),
        _ => Ok(()),
    }
}

/// Whether `key` is an asymmetric key (its ciphertexts are raw RSAES-OAEP).
pub fn is_asymmetric(key: &KeyRecord) -> bool {
    !key.is_symmetric()
}

/// Whether a ciphertext given with this key named is raw RSA ciphertext of the key: only an
/// asymmetric key for encryption makes such ciphertext. Named with any other key (a
/// signing, MAC or key agreement key) the ciphertext is taken as a symmetric blob, whose
/// own key then differs from the named one: IncorrectKeyException, as KMS answers.
pub fn decrypts_raw(key: &KeyRecord) -> bool {
    is_asymmetric(key) && key.key_usage == coffer_kms::model::ENCRYPT_DECRYPT
}

// --- Grants ----------------------------------------------------------------------------------

fn grant_entry(grant: &coffer_kms::grants::GrantRecord) -> wire::GrantListEntry {
    wire::GrantListEntry {
        key_id: grant.key_arn.clone(),
        grant_id: grant.grant_id.clone(),
        name: grant.name.clone(),
        creation_date: coffer_wire::protocol::epoch_seconds(grant.created_ms),
        grantee_principal: grant.grantee_principal.clone(),
        retiring_principal: grant.retiring_principal.clone(),
        issuing_account: grant.issuing_account.clone(),
        operations: grant.operations.clone(),
        constraints: grant.constraints.as_ref().map(|c| wire::GrantConstraints {
            encryption_context_subset: c.encryption_context_subset.clone(),
            encryption_context_equals: c.encryption_context_equals.clone(),
        }),
    }
}

/// Runs `f` in a write transaction; with DryRun the checks run and nothing is kept.
fn write_unless_dry_run<T: Send + 'static>(
    app: &App,
    ctx: &crate::RequestContext,
    dry: Option<bool>,
    mut f: impl FnMut(&mut dyn coffer_store::WriteTxn) -> Result<T, AwsError> + Send,
) -> Result<T, AwsError> {
    app.write(ctx, |tx| {
        let value = f(tx)?;
        dry_run(dry, value)
    })
}

pub fn create_grant(
    app: &App,
    ctx: &crate::RequestContext,
    req: wire::CreateGrantRequest,
) -> Result<wire::CreateGrantResponse, AwsError> {
    let request = coffer_kms::grants::NewGrant {
        grantee_principal: req.grantee_principal.clone(),
        retiring_principal: req.retiring_principal.clone(),
        operations: req.operations.clone(),
        constraints: req.constraints.as_ref().map(|c| coffer_kms::grants::GrantConstraints {
            encryption_context_subset: c.encryption_context_subset.clone(),
            encryption_context_equals: c.encryption_context_equals.clone(),
        }),
        name: req.name.clone(),
        grantee_user_id: None,
        retiring_user_id: None,
    };
    let partition = ctx.scope.partition();
    let grant = write_unless_dry_run(app, ctx, req.dry_run, |tx| {
        let mut request = request.clone();
        // IAM users are bound by unique id, as key policies bind them.
        request.grantee_user_id =
            crate::policies::user_id_of(app, &*tx, &request.grantee_principal, partition)?;
        if let Some(retiring) = &request.retiring_principal {
            request.retiring_user_id = crate::policies::user_id_of(app, &*tx, retiring, partition)?;
        }
        app.keys
            .kms()
            .create_grant(tx, &ctx.scope, &req.key_id, request, crate::clock::now_ms())
            .map_err(kms)
    })?;
    Ok(wire::CreateGrantResponse { grant_token: grant.token(), grant_id: grant.grant_id })
}

fn limit(requested: Option<i32>) -> usize {
    requested.and_then(|l| usize::try_from(l).ok()).unwrap_or(50).clamp(1, 100)
}

pub fn list_grants(
    app: &App,
    scope: &Scope,
    req: wire::ListGrantsRequest,
) -> Result<wire::ListGrantsResponse, AwsError> {
    let page = app.read(|tx| {
        app.keys
            .kms()
            .list_grants(
                tx,
                scope,
                &req.key_id,
                req.grant_id.as_deref(),
                req.grantee_principal.as_deref(),
                req.marker.as_deref(),
                limit(req.limit),
            )
            .map_err(kms)
    })?;
    Ok(wire::ListGrantsResponse {
        grants: page.items.iter().map(grant_entry).collect(),
        truncated: page.next_marker.is_some(),
        next_marker: page.next_marker,
    })
}

pub fn list_retirable_grants(
    app: &App,
    scope: &Scope,
    req: wire::ListRetirableGrantsRequest,
) -> Result<wire::ListGrantsResponse, AwsError> {
    let page = app.read(|tx| {
        app.keys
            .kms()
            .list_retirable_grants(
                tx,
                scope,
                &req.retiring_principal,
                req.marker.as_deref(),
                limit(req.limit),
            )
            .map_err(kms)
    })?;
    Ok(wire::ListGrantsResponse {
        grants: page.items.iter().map(grant_entry).collect(),
        truncated: page.next_marker.is_some(),
        next_marker: page.next_marker,
    })
}

/// RetireGrant: the grant's retiring principal, or its grantee when the grant includes
/// RetireGrant, may retire it (KMS decides this by the grant, not by policies).
pub fn retire_grant(
    app: &App,
    ctx: &crate::RequestContext,
    req: wire::RetireGrantRequest,
) -> Result<wire::EmptyResponse, AwsError> {
    let scope = &ctx.scope;
    write_unless_dry_run(app, ctx, req.dry_run, |tx| {
        let kms_service = app.keys.kms();
        let grant = kms_service
            .grant_to_retire(
                &*tx,
                scope,
                req.grant_token.as_deref(),
                req.key_id.as_deref(),
                req.grant_id.as_deref(),
            )
            .map_err(kms)?;
        if let Some(gate) = &ctx.gate {
            let (caller, user_id) = gate.caller_ids();
            let retiring = grant.is_retiring(caller, user_id);
            let grantee_may = grant.is_grantee(caller, user_id)
                && grant.operations.iter().any(|o| o == "RetireGrant");
            if !retiring && !grantee_may {
                return Err(AwsError::new(
                    ErrorCode::AccessDenied,
                    format!(
                        "User: {caller} is not authorized to perform: kms:RetireGrant on resource: {}",
                        grant.key_arn
                    ),
                ));
            }
        }
        kms_service.delete_grant(tx, scope, &grant).map_err(kms)?;
        Ok(wire::EmptyResponse {})
    })
}

pub fn revoke_grant(
    app: &App,
    ctx: &crate::RequestContext,
    req: wire::RevokeGrantRequest,
) -> Result<wire::EmptyResponse, AwsError> {
    write_unless_dry_run(app, ctx, req.dry_run, |tx| {
        app.keys.kms().revoke_grant(tx, &ctx.scope, &req.key_id, &req.grant_id).map_err(kms)?;
        Ok(wire::EmptyResponse {})
    })
}

// --- Key policies and description -------------------------------------------------------------

pub fn get_key_policy(
    app: &App,
    scope: &Scope,
    req: wire::KeyPolicyRequest,
) -> Result<wire::GetKeyPolicyResponse, AwsError> {
    key_admin::check_policy_name(req.policy_name.as_deref()).map_err(kms)?;
    let policy = app.read(|tx| {
        let key = app.keys.kms().find_key(tx, scope, &req.key_id, Accepts::KeyOnly).map_err(kms)?;
        if key.manager == coffer_kms::KeyManager::Aws {
            return Ok(crate::auth::aws_managed_key_policy_text(&key.scope));
        }
        match key.policy {
            Some(text) => crate::policies::show_user_principals(tx, text, scope.partition()),
            None => Ok(key_admin::default_key_policy(&key.scope)),
        }
    })?;
    Ok(wire::GetKeyPolicyResponse {
        policy,
        policy_name: key_admin::DEFAULT_POLICY_NAME.to_string(),
    })
}

pub fn put_key_policy(
    app: &App,
    ctx: &crate::RequestContext,
    req: wire::KeyPolicyRequest,
) -> Result<wire::EmptyResponse, AwsError> {
    key_admin::check_policy_name(req.policy_name.as_deref()).map_err(kms)?;
    let text = req.policy.clone().unwrap_or_default();
    // The same checks as CreateKey: a policy that does not parse is refused, never stored.
    crate::kms_api::check_key_policy(&text)?;
    let scope = &ctx.scope;
    app.write(ctx, |tx| {
        let mut policy = text.clone();
        if matches!(
            serde_json::from_str::<serde_json::Value>(&policy),
            Ok(serde_json::Value::Object(_))
        ) {
            policy = crate::policies::bind_user_principals(
                app,
                &*tx,
                &policy,
                crate::kms_api::INVALID_PRINCIPALS,
                scope.partition(),
            )?;
        }
        if req.bypass_policy_lockout_safety_check != Some(true)
            && let Some(gate) = &ctx.gate
        {
            let key =
                app.keys.kms().find_key(&*tx, scope, &req.key_id, Accepts::KeyOnly).map_err(kms)?;
            if !gate.key_policy_keeps_caller(&policy, &key) {
                return Err(crate::kms_api::lockout());
            }
        }
        app.keys.kms().put_key_policy(tx, scope, &req.key_id, &policy).map_err(kms)
    })?;
    Ok(wire::EmptyResponse {})
}

pub fn list_key_policies(
    app: &App,
    scope: &Scope,
    req: wire::KeyPolicyRequest,
) -> Result<wire::ListKeyPoliciesResponse, AwsError> {
    app.read(|tx| app.keys.kms().find_key(tx, scope, &req.key_id, Accepts::KeyOnly).map_err(kms))?;
    Ok(wire::ListKeyPoliciesResponse {
        policy_names: vec![key_admin::DEFAULT_POLICY_NAME.to_string()],
        truncated: false,
    })
}

pub fn update_key_description(
    app: &App,
    ctx: &crate::RequestContext,
    req: wire::UpdateKeyDescriptionRequest,
) -> Result<wire::EmptyResponse, AwsError> {
    app.write(ctx, |tx| {
        let kms_service = app.keys.kms();
        kms_service
            .update_key_description(tx, &ctx.scope, &req.key_id, &req.description)
            .map_err(kms)
    })?;
    Ok(wire::EmptyResponse {})
}

// --- Rotations ---------------------------------------------------------------------------------

/// ListKeyRotations: the material versions rotation made (with `ALL_KEY_MATERIAL`, the
/// original material too), oldest first; the newest is `CURRENT`.
pub fn list_key_rotations(
    app: &App,
    scope: &Scope,
    req: wire::ListKeyRotationsRequest,
) -> Result<wire::ListKeyRotationsResponse, AwsError> {
    let key = app.read(|tx| {
        app.keys.kms().find_key(tx, scope, &req.key_id, Accepts::KeyOnly).map_err(kms)
    })?;
    coffer_kms::refuse_rotation_of_key_pairs(&key).map_err(kms)?;
    let all = req.include_key_material.as_deref() == Some("ALL_KEY_MATERIAL");
    let current = key.current_material().map(|m| m.id.clone());
    let entries: Vec<wire::RotationsListEntry> = key
        .materials
        .iter()
        .filter(|m| all || m.rotation.is_some())
        .map(|m| wire::RotationsListEntry {
            key_id: key.arn.clone(),
            key_material_id: m.id.clone(),
            key_material_state: if Some(&m.id) == current.as_ref() {
                "CURRENT"
            } else {
                "NON_CURRENT"
            }
            .to_string(),
            rotation_date: m.rotation.map(|_| coffer_wire::protocol::epoch_seconds(m.created_ms)),
            rotation_type: m.rotation.map(|r| {
                match r {
                    coffer_kms::RotationType::Automatic => "AUTOMATIC",
                    coffer_kms::RotationType::OnDemand => "ON_DEMAND",
                }
                .to_string()
            }),
        })
        .collect();
    let start = match req.marker.as_deref() {
        Some(m) => m
            .parse::<usize>()
            .ok()
            .filter(|&n| n <= entries.len())
            .ok_or_else(|| AwsError::new(ErrorCode::KmsInvalidMarker, "Invalid marker"))?,
        None => 0,
    };
    let limit = limit(req.limit);
    let end = (start + limit).min(entries.len());
    let next_marker = (end < entries.len()).then(|| end.to_string());
    Ok(wire::ListKeyRotationsResponse {
        rotations: entries.into_iter().skip(start).take(limit).collect(),
        truncated: next_marker.is_some(),
        next_marker,
    })
}
