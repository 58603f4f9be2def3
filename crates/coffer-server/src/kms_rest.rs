//! The KMS operations of imported key material (GetParametersForImport, ImportKeyMaterial,
//! DeleteImportedKeyMaterial), multi-Region keys (ReplicateKey, UpdatePrimaryRegion),
//! custom key stores and GetKeyLastUsage. Each names its key by `KeyId` (or names no key),
//! so the request is authorized before the handler runs, like every other KMS operation.
//!
//! Custom key stores: Coffer has none, so DescribeCustomKeyStores lists none, an operation
//! naming a store finds none (CustomKeyStoreNotFoundException) and creating a CloudHSM or
//! external key store is UnsupportedOperationException.
//!
//! GetKeyLastUsage answers the key's last-use records (`kms_last_use`, written with the
//! events of its uses); a key created before those were kept, with no record since, is
//! answered from the audit trail (newest first, down to the key's creation).

use crate::kms_api::{metadata, run};
use crate::{App, RequestContext, clock};
use coffer_core::{AwsError, ErrorCode, Scope};
use coffer_kms::import::ImportRequest;
use coffer_kms::multi_region::NewReplica;
use coffer_kms::{Accepts, KeyRecord, KmsError, Tag, key_admin};
use coffer_wire::cloudtrail::LookupEventsRequest;
use coffer_wire::kms::{Blob, KeyMetadata};
use coffer_wire::kms_rest as wire;
use coffer_wire::operation::KmsOp;
use coffer_wire::protocol::epoch_seconds;
use serde_json::Value;

fn kms(e: KmsError) -> AwsError {
    AwsError::from(e)
}

/// Runs one of this module's operations; `None` for any other.
pub fn dispatch(
    app: &App,
    ctx: &RequestContext,
    op: KmsOp,
    body: Value,
) -> Option<Result<Vec<u8>, AwsError>> {
    let scope = &ctx.scope;
    Some(match op {
        KmsOp::GetParametersForImport => run(body, |r| get_parameters_for_import(app, scope, r)),
        KmsOp::ImportKeyMaterial => run(body, |r| import_key_material(app, ctx, r)),
        KmsOp::DeleteImportedKeyMaterial => {
            run(body, |r| delete_imported_key_material(app, ctx, r))
        }
        KmsOp::ReplicateKey => run(body, |r| replicate_key(app, ctx, r)),
        KmsOp::UpdatePrimaryRegion => run(body, |r| update_primary_region(app, ctx, r)),
        KmsOp::DescribeCustomKeyStores => run(body, describe_custom_key_stores),
        KmsOp::ConnectCustomKeyStore
        | KmsOp::DisconnectCustomKeyStore
        | KmsOp::DeleteCustomKeyStore
        | KmsOp::UpdateCustomKeyStore => {
            run::<wire::CustomKeyStoreRequest, ()>(body, no_such_store)
        }
        KmsOp::CreateCustomKeyStore => Err(AwsError::new(
            ErrorCode::KmsUnsupportedOperation,
            "Custom key stores (AWS CloudHSM and external key stores) are not supported by Coffer.",
        )),
        KmsOp::GetKeyLastUsage => run(body, |r| get_key_last_usage(app, scope, r)),
        _ => return None,
    })
}

// --- Imported key material --------------------------------------------------------------------

pub fn get_parameters_for_import(
    app: &App,
    scope: &Scope,
    req: wire::GetParametersForImportRequest,
) -> Result<wire::GetParametersForImportResponse, AwsError> {
    let params = app.read(|tx| {
        app.keys
            .kms()
            .parameters_for_import(
                tx,
                scope,
                &req.key_id,
                &req.wrapping_algorithm,
                &req.wrapping_key_spec,
                clock::now_ms(),
            )
            .map_err(kms)
    })?;
    Ok(wire::GetParametersForImportResponse {
        key_id: params.key_arn,
        import_token: Blob(params.import_token),
        public_key: Blob(params.public_key),
        parameters_valid_to: epoch_seconds(params.valid_to_ms),
    })
}

pub fn import_key_material(
    app: &App,
    ctx: &RequestContext,
    req: wire::ImportKeyMaterialRequest,
) -> Result<wire::KeyMaterialResponse, AwsError> {
    if req.import_type.as_deref() == Some("NEW_KEY_MATERIAL") {
        return Err(AwsError::new(
            ErrorCode::KmsUnsupportedOperation,
            "ImportType NEW_KEY_MATERIAL (rotation of imported material) is not supported by Coffer.",
        ));
    }
    let key = app.write(ctx, |tx| {
        let request = ImportRequest {
            import_token: &req.import_token.0,
            encrypted_key_material: &req.encrypted_key_material.0,
            expiration_model: req.expiration_model.as_deref(),
            valid_to_ms: req.valid_to,
        };
        app.keys
            .kms()
            .import_key_material(tx, &ctx.scope, &req.key_id, &request, clock::now_ms())
            .map_err(kms)
    })?;
    Ok(wire::KeyMaterialResponse {
        key_id: key.arn.clone(),
        key_material_id: key.current_material().map(|m| m.id.clone()),
    })
}

pub fn delete_imported_key_material(
    app: &App,
    ctx: &RequestContext,
    req: wire::DeleteImportedKeyMaterialRequest,
) -> Result<wire::KeyMaterialResponse, AwsError> {
    let (key, deleted) = app.write(ctx, |tx| {
        app.keys
            .kms()
            .delete_imported_key_material(
                tx,
                &ctx.scope,
                &req.key_id,
                req.key_material_id.as_deref(),
            )
            .map_err(kms)
    })?;
    Ok(wire::KeyMaterialResponse { key_id: key.arn, key_material_id: deleted })
}

// --- Multi-Region keys --------------------------------------------------------------------------

/// DescribeKey's MultiRegionConfiguration of a multi-Region key.
pub fn multi_region_configuration(key: &KeyRecord) -> Option<wire::MultiRegionConfiguration> {
    let set = key.multi_region.as_ref()?;
    let member = |region: &str| wire::MultiRegionKey {
        arn: coffer_kms::key_arn(&Scope::new(&key.scope.account, region), &key.key_id),
        region: region.to_string(),
    };
    Some(wire::MultiRegionConfiguration {
        multi_region_key_type: if set.primary_region == key.scope.region {
            "PRIMARY"
        } else {
            "REPLICA"
        }
        .to_string(),
        primary_key: member(&set.primary_region),
        replica_keys: set.replica_regions.iter().map(|r| member(r)).collect(),
    })
}

pub fn replicate_key(
    app: &App,
    ctx: &RequestContext,
    req: wire::ReplicateKeyRequest,
) -> Result<wire::ReplicateKeyResponse, AwsError> {
    if let Some(text) = &req.policy {
        crate::kms_api::check_key_policy(text)?;
    }
    let tags: Vec<Tag> = req
        .tags
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|t| Tag { key: t.tag_key, value: t.tag_value })
        .collect();
    let replica = app.write(ctx, |tx| {
        let mut policy = req.policy.clone();
        if let Some(text) = &policy
            && matches!(serde_json::from_str::<Value>(text), Ok(Value::Object(_)))
        {
            let invalid = crate::kms_api::INVALID_PRINCIPALS;
            let partition = ctx.scope.partition();
            policy =
                Some(crate::policies::bind_user_principals(app, &*tx, text, invalid, partition)?);
        } else if policy.is_some() {
            return Err(crate::kms_api::lockout());
        }
        let request =
            NewReplica { description: req.description.clone(), policy, tags: tags.clone() };
        let replica = app
            .keys
            .kms()
            .replicate_key(
                tx,
                &ctx.scope,
                &req.key_id,
                &req.replica_region,
                request,
                clock::now_ms(),
            )
            .map_err(kms)?;
        if req.bypass_policy_lockout_safety_check != Some(true)
            && let (Some(gate), Some(text)) = (&ctx.gate, &replica.policy)
            && !gate.key_policy_keeps_caller(text, &replica)
        {
            return Err(crate::kms_api::lockout());
        }
        Ok(replica)
    })?;
    let policy = match &replica.policy {
        Some(text) => app.read(|tx| {
            crate::policies::show_user_principals(tx, text.clone(), ctx.scope.partition())
        })?,
        None => key_admin::default_key_policy(&replica.scope),
    };
    Ok(wire::ReplicateKeyResponse {
        replica_key_metadata: as_just_made(metadata(&replica)),
        replica_policy: policy,
        replica_tags: replica
            .tags
            .iter()
            .map(|t| coffer_wire::kms::Tag { tag_key: t.key.clone(), tag_value: t.value.clone() })
            .collect(),
    })
}

/// A replica's metadata as ReplicateKey answers it: AWS makes a replica in the transient
/// `Creating` state, which becomes `Enabled` (or `PendingImport`) once the replication is
/// done, often after ReplicateKey has answered. Coffer's replica is done when the answer
/// is sent, so the answer says `Creating` as AWS's does, and the replica is stored in its
/// final state: a DescribeKey right after (what a caller waiting for the replica polls)
/// sees it done, and no test waits on a timer.
fn as_just_made(mut metadata: KeyMetadata) -> KeyMetadata {
    metadata.key_state = "Creating".to_string();
    metadata.enabled = false;
    metadata
}

pub fn update_primary_region(
    app: &App,
    ctx: &RequestContext,
    req: wire::UpdatePrimaryRegionRequest,
) -> Result<coffer_wire::kms::EmptyResponse, AwsError> {
    app.write(ctx, |tx| {
        app.keys
            .kms()
            .update_primary_region(tx, &ctx.scope, &req.key_id, &req.primary_region)
            .map_err(kms)
    })?;
    Ok(coffer_wire::kms::EmptyResponse {})
}

// --- Custom key stores ------------------------------------------------------------------------

fn store_not_found() -> AwsError {
    AwsError::new(
        ErrorCode::KmsCustomKeyStoreNotFound,
        "Custom key store does not exist in this account and region.",
    )
}

pub fn describe_custom_key_stores(
    req: wire::DescribeCustomKeyStoresRequest,
) -> Result<wire::DescribeCustomKeyStoresResponse, AwsError> {
    if req.custom_key_store_id.is_some() || req.custom_key_store_name.is_some() {
        return Err(store_not_found());
    }
    if req.marker.is_some() {
        return Err(AwsError::new(ErrorCode::KmsInvalidMarker, "Invalid marker"));
    }
    Ok(wire::DescribeCustomKeyStoresResponse { custom_key_stores: Vec::new(), truncated: false })
}

fn no_such_store(_req: wire::CustomKeyStoreRequest) -> Result<(), AwsError> {
    Err(store_not_found())
}

// --- GetKeyLastUsage -----------------------------------------------------------------------------

/// Pages of the trail GetKeyLastUsage reads at most (each examines at most
/// `coffer_audit::lookup::SCAN_BUDGET` events): the answer's cost is bounded.
const MAX_PAGES: usize = 50;

/// Whether a trail entry is a successful tracked KMS operation on `key`.
fn used(entry: &Value, key: &KeyRecord) -> bool {
    let Some(text) = entry.get("CloudTrailEvent").and_then(Value::as_str) else { return false };
    let Ok(event) = serde_json::from_str::<Value>(text) else { return false };
    let field = |name: &str| event.get(name).and_then(Value::as_str);
    if field("eventSource") != Some("kms.amazonaws.com")
        || event.get("errorCode").is_some_and(|c| !c.is_null())
        || !field("eventName").is_some_and(|n| crate::kms_last_use::TRACKED.contains(&n))
    {
        return false;
    }
    let names_key = |v: Option<&Value>| {
        v.and_then(Value::as_str).is_some_and(|s| s == key.arn || s == key.key_id)
    };
    let in_resources = event
        .get("resources")
        .and_then(Value::as_array)
        .is_some_and(|rs| rs.iter().any(|r| names_key(r.get("ARN")) || names_key(r.get("arn"))));
    in_resources
        || ["requestParameters", "responseElements"].iter().any(|doc| {
            event.get(*doc).is_some_and(|d| {
                names_key(d.get("keyId"))
                    || names_key(d.get("sourceKeyId"))
                    || names_key(d.get("destinationKeyId"))
            })
        })
}

pub fn get_key_last_usage(
    app: &App,
    scope: &Scope,
    req: wire::GetKeyLastUsageRequest,
) -> Result<wire::GetKeyLastUsageResponse, AwsError> {
    let (key, recorded) = app.read(|tx| {
        let key = app.keys.kms().find_key(tx, scope, &req.key_id, Accepts::KeyOnly).map_err(kms)?;
        let recorded = crate::kms_last_use::last_use(tx, &key.arn, key.created_ms)
            .map_err(crate::store_error)?;
        Ok((key, recorded))
    })?;
    let last = match recorded {
        Some(recorded) => recorded.map(|used| wire::KeyLastUsageData {
            operation: used.operation,
            timestamp: epoch_seconds(used.time_ms),
            cloud_trail_event_id: used.event_id,
            kms_request_id: used.request_id,
        }),
        None => scan_for_last_use(app, scope, &key)?,
    };
    Ok(wire::GetKeyLastUsageResponse {
        key_id: key.arn.clone(),
        key_last_usage: last,
        tracking_start_date: epoch_seconds(key.created_ms),
        key_creation_date: epoch_seconds(key.created_ms),
    })
}

/// The last use of a key created before last uses were recorded, found in the trail.
fn scan_for_last_use(
    app: &App,
    scope: &Scope,
    key: &KeyRecord,
) -> Result<Option<wire::KeyLastUsageData>, AwsError> {
    let mut last = None;
    let mut next_token = None;
    for _ in 0..MAX_PAGES {
        let page = crate::audit::lookup_events(
            app,
            scope,
            LookupEventsRequest {
                start_time: Some(key.created_ms),
                max_results: Some(50),
                next_token: next_token.take(),
                ..Default::default()
            },
        )
        .map_err(|e| AwsError::new(ErrorCode::KmsInternal, e.message))?;
        if let Some(entry) = page.events.iter().find(|e| used(e, key)) {
            last = Some(wire::KeyLastUsageData {
                operation: entry["EventName"].as_str().unwrap_or_default().to_string(),
                timestamp: entry["EventTime"].as_f64().unwrap_or_default(),
                cloud_trail_event_id: entry["EventId"].as_str().unwrap_or_default().to_string(),
                kms_request_id: None,
            });
            break;
        }
        match page.next_token {
            Some(token) => next_token = Some(token),
            None => break,
        }
    }
    Ok(last)
}
