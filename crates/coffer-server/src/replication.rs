//! Multi-region replication: ReplicateSecretToRegions, RemoveRegionsFromReplication,
//! StopReplicationToReplica, CreateSecret's `AddReplicaRegions`, and the hooks that keep
//! replicas equal to their primary.
//!
//! A replica is a real secret of its own region: same account and name, the primary's ARN
//! with only the region changed, each version sealed under a key of that region (the one
//! named, or that region's `aws/secretsmanager`) with the replica's ARN in its encryption
//! context. Replication is synchronous: every change to a primary reaches its replicas in
//! the same store transaction ([`propagate`]), so a replica never shows a state its
//! primary did not commit, and a crash leaves both as they were or both changed.
//!
//! [`propagate`] brings each replica to the primary's whole state (metadata, versions and
//! their labels) rather than replaying the one change a call made, so any writer of a
//! primary, including a future rotation adding versions and moving labels, needs only
//! this one hook after its last write to the primary.
//!
//! A region that cannot take the replica (name taken there, key unusable or refused)
//! is reported in `ReplicationStatus` as `Failed` with a message; the call succeeds, as on
//! AWS. Every change to a replica leaves a service event in the replica's region's trail.

use crate::{App, RequestContext, Txn, audit, auth::Gate, clock, secrets, store_error};
use coffer_core::model::{ReplicaState, Replication, SecretMeta, VersionMeta};
use coffer_core::{AwsError, ErrorCode, Scope, names};
use coffer_store::WriteTxn;
use coffer_wire::protocol::epoch_seconds;
use coffer_wire::secretsmanager as wire;
use std::collections::BTreeMap;

/// AWS's answer to any write sent to a replica (InvalidParameterException, as moto and
/// the callers that match on it in the wild have it).
pub const REPLICA_REFUSAL: &str =
    "Operation not permitted on a replica secret. Call must be made in primary secret's region.";
const IN_SYNC: &str = "InSync";
const FAILED: &str = "Failed";
const SUCCEEDED: &str = "Replication succeeded";
const NAME_TAKEN: &str = "Secret with this name already exists in this region";
const SECRETS_MANAGER: &str = "secretsmanager.amazonaws.com";
/// How the default key is named in `ReplicationStatus`.
const DEFAULT_KEY: &str = "alias/aws/secretsmanager";

/// Refuses a write to a replica (hook of every mutating handler's secret lookup).
pub fn refuse_on_replica(meta: &SecretMeta) -> Result<(), AwsError> {
    if meta.is_replica() { Err(AwsError::invalid_parameter(REPLICA_REFUSAL)) } else { Ok(()) }
}

/// DeleteSecret's rule: not on a replica, and not on a primary that still has replicas.
pub fn check_delete(meta: &SecretMeta, secret_id: &str) -> Result<(), AwsError> {
    refuse_on_replica(meta)?;
    let regions: Vec<&str> = meta.replication.replicas.iter().map(|r| r.region.as_str()).collect();
    if regions.is_empty() {
        return Ok(());
    }
    Err(AwsError::invalid_parameter(format!(
        "You can't delete secret {secret_id} that still has replica regions [{}]",
        regions.join(",")
    )))
}

/// Whether `region` is one a replica of `primary` can be made in: a region Coffer knows, in
/// the primary's partition. AWS replicates only within a partition (its partitions share
/// no account, key or endpoint); a region of another one does not exist from the
/// primary's, so its replica fails as in a region that is not enabled.
fn region_exists_for(primary: &SecretMeta, region: &str) -> bool {
    crate::auth::is_known_region(region)
        && coffer_core::Partition::of_region(region) == primary.scope.partition()
}

/// The ARN of `arn`'s secret in `region`: only the region changes.
pub fn arn_in_region(arn: &str, region: &str) -> String {
    let mut parts: Vec<&str> = arn.splitn(5, ':').collect();
    if parts.len() == 5 {
        parts[3] = region;
    }
    parts.join(":")
}

/// `ReplicationStatus` of a primary; `None` for a replica or a secret never replicated.
pub fn status_of(meta: &SecretMeta) -> Option<Vec<wire::ReplicationStatus>> {
    if meta.is_replica() || meta.replication.primary_region.is_none() {
        return None;
    }
    Some(statuses(meta))
}

fn statuses(meta: &SecretMeta) -> Vec<wire::ReplicationStatus> {
    meta.replication
        .replicas
        .iter()
        .map(|r| wire::ReplicationStatus {
            region: r.region.clone(),
            kms_key_id: Some(r.kms_key_id.clone().unwrap_or_else(|| DEFAULT_KEY.to_string())),
            status: r.status.clone(),
            status_message: r.status_message.clone(),
            last_accessed_date: r.last_accessed_ms.map(epoch_seconds),
        })
        .collect()
}

/// Checks the regions a call asks to replicate to, before anything changes: the primary's
/// own region cannot hold its replica, and an entry without a `Region` (the model does not
/// require the member; it decodes as `""`, which the model's pattern refuses when sent)
/// names no region at all. AWS's answer to the latter is not recorded: it gets the same
/// words, rather than a replica of region `""` marked Failed.
pub fn check_regions(scope: &Scope, regions: &[wire::ReplicaRegionType]) -> Result<(), AwsError> {
    if regions.iter().any(|r| r.region.is_empty() || r.region == scope.region) {
        return Err(AwsError::invalid_parameter("Invalid replica region."));
    }
    Ok(())
}

/// CreateSecret's hook, in its transaction once the secret and its first version exist.
pub fn on_create(
    app: &App,
    tx: &mut Txn,
    meta: &mut SecretMeta,
    regions: Option<&[wire::ReplicaRegionType]>,
    force: bool,
    gate: Option<&Gate>,
) -> Result<Option<Vec<wire::ReplicationStatus>>, AwsError> {
    match regions {
        Some(regions) if !regions.is_empty() => {
            Ok(Some(add_regions(app, tx, meta, regions, force, gate)?))
        }
        _ => Ok(None),
    }
}

/// Records a GetSecretValue of a replica on its primary's `ReplicationStatus`
/// (LastAccessedDate per region). Hook of the access-date write, in its transaction.
pub fn note_access(
    tx: &mut dyn WriteTxn,
    replica: &SecretMeta,
    today: i64,
) -> Result<(), AwsError> {
    let Some(primary_region) = replica.replication.primary_region.as_deref() else {
        return Ok(());
    };
    if !replica.is_replica() {
        return Ok(());
    }
    let primary_arn = arn_in_region(&replica.arn, primary_region);
    let Some(mut primary) = tx.secret_by_arn(&primary_arn).map_err(store_error)? else {
        return Ok(());
    };
    let region = &replica.scope.region;
    let Some(state) = primary.replication.replicas.iter_mut().find(|r| &r.region == region) else {
        return Ok(());
    };
    if state.last_accessed_ms != Some(today) {
        state.last_accessed_ms = Some(today);
        tx.update_secret(&primary).map_err(store_error)?;
    }
    Ok(())
}

/// The hook after every change to a secret: if it is a primary, brings each of its
/// replicas to its state in this transaction. Work Secrets Manager does for the caller
/// (not under the caller's permissions, as AWS replicates with its own), so no `Gate`.
pub fn propagate(app: &App, tx: &mut Txn, primary: &SecretMeta) -> Result<(), AwsError> {
    if primary.is_replica() || primary.replication.replicas.is_empty() {
        return Ok(());
    }
    let mut updated = primary.clone();
    let mut changed = false;
    for i in 0..updated.replication.replicas.len() {
        let state = updated.replication.replicas[i].clone();
        let replica_arn = arn_in_region(&primary.arn, &state.region);
        // A region whose replica was never made is retried by ReplicateSecretToRegions only.
        let Some(replica) = tx.secret_by_arn(&replica_arn).map_err(store_error)? else {
            continue;
        };
        // The replica stays under the key it is sealed under: only ReplicateSecretToRegions,
        // with the caller's permissions on both keys, changes it (attack 16, finding 01).
        let state = ReplicaState { kms_key_id: replica.kms_key_id.clone(), ..state };
        let outcome = sync_replica(app, tx, primary, &state, None, Mode::Update)?;
        let new_state = state_after(&state, outcome);
        if new_state != updated.replication.replicas[i] {
            updated.replication.replicas[i] = new_state;
            changed = true;
        }
    }
    if changed {
        tx.update_secret(&updated).map_err(store_error)?;
    }
    Ok(())
}

/// How a sync treats what it finds in the replica region.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A replica being added: the name must be free, or (with ForceOverwriteReplicaSecret)
    /// held by a standalone secret, which is replaced.
    Add { force: bool },
    /// An existing replica brought up to date.
    Update,
}

fn state_after(state: &ReplicaState, outcome: Result<(), String>) -> ReplicaState {
    let (status, message) = match outcome {
        Ok(()) => (IN_SYNC, SUCCEEDED.to_string()),
        Err(message) => (FAILED, message),
    };
    ReplicaState { status: status.to_string(), status_message: Some(message), ..state.clone() }
}

fn failed(reason: &str) -> String {
    let reason = reason.trim();
    if reason.is_empty() {
        "Replication failed.".to_string()
    } else {
        format!("Replication failed: {reason}")
    }
}

/// One version the replica lacks, sealed for it.
struct NewVersion {
    meta: VersionMeta,
    sealed: coffer_store::SealedValue,
}

/// Makes the replica of `primary` in `state.region` equal to the primary, in `tx`.
/// `Ok(Err(message))` is a replication failure (nothing of this replica changed);
/// `Err` fails the whole call (a store failure).
fn sync_replica(
    app: &App,
    tx: &mut Txn,
    primary: &SecretMeta,
    state: &ReplicaState,
    gate: Option<&Gate>,
    mode: Mode,
) -> Result<Result<(), String>, AwsError> {
    let now = clock::now_ms();
    let scope = Scope::new(&primary.scope.account, &state.region);
    let arn = arn_in_region(&primary.arn, &state.region);
    let primary_region = primary.scope.region.clone();
    let holder = tx.secret_by_name(&scope, &primary.name).map_err(store_error)?;
    let ours = |m: &SecretMeta| {
        m.arn == arn && m.replication.primary_region.as_deref() == Some(&primary_region)
    };
    let (existing, overwrite) = match holder {
        Some(m) if ours(&m) => (Some(m), None),
        Some(m) => {
            let standalone = !m.is_replica() && m.replication.replicas.is_empty();
            match mode {
                Mode::Add { force: true } if standalone => (None, Some(m)),
                _ if m.is_replica() => {
                    return Ok(Err(failed(&format!(
                        "Secret name {} is currently replicated to {} with a different arn",
                        primary.name, state.region
                    ))));
                }
                _ => return Ok(Err(NAME_TAKEN.to_string())),
            }
        }
        None if mode == Mode::Update => return Ok(Err(failed("the replica secret is gone"))),
        None => (None, None),
    };
    // Overwriting deletes a secret of the replica region: the caller must be allowed to
    // delete that secret itself (its identity policies and that secret's resource policy,
    // explicit denials included), or a caller denied everything there could replace it.
    // The deletion is immediate, without a recovery window: a Deny on
    // `ForceDeleteWithoutRecovery` holds here too (attack 16, finding 04).
    if let (Some(victim), Some(gate)) = (&overwrite, gate) {
        let at_once = [("secretsmanager:ForceDeleteWithoutRecovery", "true")];
        gate.secret_as_if(
            "secretsmanager:DeleteSecret",
            &scope,
            &victim.arn,
            Some(victim),
            &at_once,
        )?;
    }
    // The replica region's key: named there, or its aws/secretsmanager.
    let key = match app.keys.kms().key_for_secret(tx, &scope, state.kms_key_id.as_deref(), now) {
        Ok(key) => key,
        Err(coffer_kms::KmsError::Rejected { message, .. }) => return Ok(Err(failed(&message))),
        Err(coffer_kms::KmsError::Store(e)) => return Err(store_error(e)),
        Err(coffer_kms::KmsError::Internal(cause)) => {
            tracing::error!(error = %cause, "key service failure while replicating");
            return Ok(Err(failed("")));
        }
    };
    let primary_versions = tx.versions(&primary.arn).map_err(store_error)?;
    let replica_versions = match &existing {
        Some(m) => tx.versions(&m.arn).map_err(store_error)?,
        None => Vec::new(),
    };
    let have: BTreeMap<&str, &VersionMeta> =
        replica_versions.iter().map(|v| (v.version_id.as_str(), v)).collect();
    // A replica whose key changes (ReplicateSecretToRegions naming another key of its
    // region) has its labelled versions sealed again under the new key, as UpdateSecret's
    // KmsKeyId does on a primary: what DescribeSecret names is then what opens the value.
    let rekey = existing.as_ref().is_some_and(|m| m.kms_key_id != state.kms_key_id);
    // Everything is opened and sealed before anything is written, so a failure leaves
    // this replica exactly as it was.
    let mut new_versions = Vec::new();
    let mut rekeyed: BTreeMap<&str, Option<coffer_store::SealedValue>> = BTreeMap::new();
    for version in &primary_versions {
        let id = version.version_id.as_str();
        if have.contains_key(id) {
            if rekey && secrets::carries_a_reencrypted_label(version) {
                let resealed = match secrets::sealed_under(tx, &arn, id, &key)? {
                    true => None,
                    false => match seal_for_replica(app, tx, primary, &arn, id, &key, gate)? {
                        Ok(sealed) => Some(sealed),
                        Err(message) => return Ok(Err(message)),
                    },
                };
                rekeyed.insert(id, resealed);
            }
            continue;
        }
        // RotateSecret's AWSPENDING placeholder has no value yet: it is copied once filled.
        let value = tx.version_value(&primary.arn, id).map_err(store_error)?;
        if value.is_some_and(|v| crate::rotation::is_placeholder(&v)) {
            continue;
        }
        let sealed = match seal_for_replica(app, tx, primary, &arn, id, &key, gate)? {
            Ok(sealed) => sealed,
            Err(message) => return Ok(Err(message)),
        };
        let meta = VersionMeta {
            last_accessed_ms: None,
            kms_key_id: state.kms_key_id.clone(),
            ..version.clone()
        };
        new_versions.push(NewVersion { meta, sealed });
    }
    let mut replica = SecretMeta {
        scope: scope.clone(),
        arn: arn.clone(),
        name: primary.name.clone(),
        seq: 0,
        description: primary.description.clone(),
        kms_key_id: state.kms_key_id.clone(),
        tags: primary.tags.clone(),
        created_ms: now,
        last_changed_ms: primary.last_changed_ms,
        last_accessed_ms: None,
        deletion_ms: None,
        owning_service: primary.owning_service.clone(),
        secret_type: primary.secret_type.clone(),
        resource_policy: primary.resource_policy.clone(),
        replication: Replication { primary_region: Some(primary_region.clone()), replicas: vec![] },
        rotation: None,
    };
    let mut changed = !new_versions.is_empty();
    if let Some(old) = &overwrite {
        tx.delete_secret(&old.arn).map_err(store_error)?;
        audit::record_service_event(
            app,
            tx,
            &scope,
            SECRETS_MANAGER,
            "DeleteSecret",
            &old.arn,
            now,
        )?;
    }
    match &existing {
        Some(old) => {
            replica.seq = old.seq;
            replica.created_ms = old.created_ms;
            replica.last_accessed_ms = old.last_accessed_ms;
            if &replica != old {
                tx.update_secret(&replica).map_err(store_error)?;
                changed = true;
            }
        }
        None => {
            replica.seq = tx.insert_secret(&replica).map_err(store_error)?;
            changed = true;
        }
    }
    // Versions the primary no longer has go; labels and keys follow the primary's.
    for version in &replica_versions {
        match primary_versions.iter().find(|p| p.version_id == version.version_id) {
            None => {
                tx.delete_version(&arn, &version.version_id).map_err(store_error)?;
                changed = true;
            }
            Some(p) => {
                let rekeyed = rekeyed.remove(version.version_id.as_str());
                if let Some(Some(sealed)) = &rekeyed {
                    tx.replace_version_value(&arn, &version.version_id, sealed)
                        .map_err(store_error)?;
                    changed = true;
                }
                let kms_key_id = match rekeyed {
                    Some(_) => state.kms_key_id.clone(),
                    None => version.kms_key_id.clone(),
                };
                if p.stages != version.stages
                    || p.created_ms != version.created_ms
                    || kms_key_id != version.kms_key_id
                {
                    let meta = VersionMeta {
                        stages: p.stages.clone(),
                        created_ms: p.created_ms,
                        kms_key_id,
                        ..version.clone()
                    };
                    tx.update_version(&arn, &meta).map_err(store_error)?;
                    changed = true;
                }
            }
        }
    }
    for version in &new_versions {
        tx.insert_version(&arn, &version.meta, &version.sealed).map_err(store_error)?;
    }
    if changed {
        let name = if existing.is_none() { "ReplicationStarted" } else { "ReplicationSucceeded" };
        audit::record_service_event(app, tx, &scope, SECRETS_MANAGER, name, &arn, now)?;
    }
    Ok(Ok(()))
}

/// The primary's value of `version_id`, sealed for the replica under `key` with the
/// replica's encryption context. `Ok(Err(message))` is a replication failure (the caller
/// may not use a key, or a key refuses); `Err` a store failure.
fn seal_for_replica(
    app: &App,
    tx: &Txn,
    primary: &SecretMeta,
    replica_arn: &str,
    version_id: &str,
    key: &std::sync::Arc<coffer_kms::KeyRecord>,
    gate: Option<&Gate>,
) -> Result<Result<coffer_store::SealedValue, String>, AwsError> {
    let context = secrets::secret_context(replica_arn, version_id);
    if let Some(gate) = gate {
        for action in ["kms:GenerateDataKey", "kms:Encrypt"] {
            if let Err(e) = gate.kms_via_secrets_manager((app, tx), action, key, &context) {
                return Ok(Err(failed(&e.message)));
            }
        }
    }
    let plaintext = match secrets::open_value(app, tx, primary, version_id, gate) {
        Ok(p) => p,
        Err(e) if e.code == ErrorCode::InternalServiceError => return Err(e),
        Err(e) => return Ok(Err(failed(&e.message))),
    };
    match app.keys.kms().encrypt_under(key, plaintext.expose(), &context) {
        Ok(encrypted) => Ok(Ok(coffer_store::SealedValue(encrypted.blob))),
        Err(coffer_kms::KmsError::Store(e)) => Err(store_error(e)),
        Err(e) => Ok(Err(failed(&e.to_string()))),
    }
}

/// Adds (or retries) `regions` as replicas of `primary`, which is updated in `tx`.
fn add_regions(
    app: &App,
    tx: &mut Txn,
    primary: &mut SecretMeta,
    regions: &[wire::ReplicaRegionType],
    force: bool,
    gate: Option<&Gate>,
) -> Result<Vec<wire::ReplicationStatus>, AwsError> {
    check_regions(&primary.scope, regions)?;
    primary.replication.primary_region = Some(primary.scope.region.clone());
    let now = clock::now_ms();
    for region in regions {
        let named = region.kms_key_id.clone().filter(|k| !k.is_empty());
        // The key of a replica that exists, which a failed attempt must leave recorded.
        let mut kept_key = None;
        let state = match primary.replication.replicas.iter().find(|r| r.region == region.region) {
            // Asking again retries the region with the key named now. Naming none keeps the
            // key of a replica that exists (nothing in the call asks to change it); a region
            // whose replica was never made has no key to keep and takes the default.
            Some(old) => {
                let replica_arn = arn_in_region(&primary.arn, &region.region);
                let made = tx.secret_by_arn(&replica_arn).map_err(store_error)?;
                if let Some(replica) = &made {
                    kept_key = Some(replica.kms_key_id.clone());
                }
                let kms_key_id = match named {
                    None if made.is_some() => old.kms_key_id.clone(),
                    named => named,
                };
                ReplicaState { kms_key_id, ..old.clone() }
            }
            None => ReplicaState {
                region: region.region.clone(),
                kms_key_id: named,
                status: IN_SYNC.to_string(),
                status_message: None,
                last_accessed_ms: None,
            },
        };
        let exists = region_exists_for(primary, &region.region);
        let outcome = if exists {
            sync_replica(app, tx, primary, &state, gate, Mode::Add { force })?
        } else {
            Err(failed(&format!("the region {} is not enabled", region.region)))
        };
        if outcome.is_err() && exists {
            let scope = Scope::new(&primary.scope.account, &region.region);
            let arn = arn_in_region(&primary.arn, &region.region);
            let name = "ReplicationFailed";
            audit::record_service_event(app, tx, &scope, SECRETS_MANAGER, name, &arn, now)?;
        }
        // A refused change of an existing replica's key leaves the key recorded as it was:
        // `propagate` seals under the recorded key without the caller's permissions, so
        // recording the refused key would have the next write on the primary carry out
        // the re-key this caller was denied (attack 16, finding 01).
        let state = match (&outcome, kept_key) {
            (Err(_), Some(kept)) => ReplicaState { kms_key_id: kept, ..state },
            _ => state,
        };
        let state = state_after(&state, outcome);
        match primary.replication.replicas.iter_mut().find(|r| r.region == state.region) {
            Some(slot) => *slot = state,
            None => primary.replication.replicas.push(state),
        }
    }
    tx.update_secret(primary).map_err(store_error)?;
    Ok(statuses(primary))
}

/// The secret a replication call on a primary names, as its transaction sees it.
fn primary_for_write(
    tx: &dyn coffer_store::ReadTxn,
    ctx: &RequestContext,
    secret_id: &str,
) -> Result<SecretMeta, AwsError> {
    let meta = secrets::resolve_for_write(tx, ctx, secret_id)?;
    if meta.is_scheduled_for_deletion() {
        return Err(AwsError::marked_for_deletion());
    }
    Ok(meta)
}

pub fn replicate_secret_to_regions(
    app: &App,
    ctx: &RequestContext,
    req: wire::ReplicateSecretToRegionsRequest,
) -> Result<wire::ReplicationResponse, AwsError> {
    names::validate_secret_id(&req.secret_id)?;
    check_regions(&ctx.scope, &req.add_replica_regions)?;
    let force = req.force_overwrite_replica_secret.unwrap_or(false);
    app.write(ctx, |tx| {
        let mut meta = primary_for_write(tx, ctx, &req.secret_id)?;
        let gate = ctx.gate.as_deref();
        let replication_status =
            add_regions(app, tx, &mut meta, &req.add_replica_regions, force, gate)?;
        Ok(wire::ReplicationResponse { arn: meta.arn, replication_status })
    })
}

pub fn remove_regions_from_replication(
    app: &App,
    ctx: &RequestContext,
    req: wire::RemoveRegionsFromReplicationRequest,
) -> Result<wire::ReplicationResponse, AwsError> {
    names::validate_secret_id(&req.secret_id)?;
    app.write(ctx, |tx| {
        let mut meta = primary_for_write(tx, ctx, &req.secret_id)?;
        let now = clock::now_ms();
        for region in &req.remove_replica_regions {
            let Some(at) = meta.replication.replicas.iter().position(|r| &r.region == region)
            else {
                // Not a replica region: nothing to remove, as moto answers.
                continue;
            };
            meta.replication.replicas.remove(at);
            let arn = arn_in_region(&meta.arn, region);
            let ours = tx.secret_by_arn(&arn).map_err(store_error)?.filter(|m| {
                m.replication.primary_region.as_deref() == Some(meta.scope.region.as_str())
            });
            if ours.is_some() {
                tx.delete_secret(&arn).map_err(store_error)?;
                let scope = Scope::new(&meta.scope.account, region);
                audit::record_service_event(
                    app,
                    tx,
                    &scope,
                    SECRETS_MANAGER,
                    "ReplicationDeleted",
                    &arn,
                    now,
                )?;
            }
        }
        tx.update_secret(&meta).map_err(store_error)?;
        Ok(wire::ReplicationResponse { arn: meta.arn.clone(), replication_status: statuses(&meta) })
    })
}

pub fn stop_replication_to_replica(
    app: &App,
    ctx: &RequestContext,
    req: wire::SecretIdRequest,
) -> Result<wire::ArnResponse, AwsError> {
    names::validate_secret_id(&req.secret_id)?;
    app.write(ctx, |tx| {
        let mut meta = secrets::resolve_existing(tx, &ctx.scope, &req.secret_id)?;
        if let Some(gate) = ctx.gate.as_deref() {
            gate.confirm(&meta)?;
        }
        if !meta.is_replica() {
            return Err(AwsError::invalid_parameter(
                "StopReplicationToReplica must be called on a replica secret, in the replica's region.",
            ));
        }
        let primary_region = meta.replication.primary_region.take().unwrap_or_default();
        meta.last_changed_ms = clock::now_ms();
        tx.update_secret(&meta).map_err(store_error)?;
        let primary_arn = arn_in_region(&meta.arn, &primary_region);
        if let Some(mut primary) = tx.secret_by_arn(&primary_arn).map_err(store_error)? {
            let region = &meta.scope.region;
            primary.replication.replicas.retain(|r| &r.region != region);
            tx.update_secret(&primary).map_err(store_error)?;
            let scope = primary.scope.clone();
            let now = clock::now_ms();
            audit::record_service_event(
                app,
                tx,
                &scope,
                SECRETS_MANAGER,
                "StopReplicationToReplica",
                &primary.arn,
                now,
            )?;
        }
        Ok(wire::ArnResponse { arn: meta.arn })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_arn_differs_from_its_primary_only_in_region() {
        let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:a:b/c-AbCdEf";
        assert_eq!(
            arn_in_region(arn, "eu-west-3"),
            "arn:aws:secretsmanager:eu-west-3:123456789012:secret:a:b/c-AbCdEf"
        );
    }
}
