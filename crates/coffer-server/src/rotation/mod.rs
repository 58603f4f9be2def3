//! Secret rotation: RotateSecret and CancelRotateSecret, the AWSPENDING placeholder, the
//! rotation members of DescribeSecret/ListSecrets, and the hooks other writes call.
//!
//! A rotation is a record on the secret (`RotationConfig::in_flight`) plus a version
//! labelled AWSPENDING. RotateSecret only stores both (one transaction) and answers;
//! the four steps run afterwards, off the request thread ([`runner`]), as on AWS, where
//! RotateSecret is asynchronous. Because the record is in the store, a rotation cut short
//! by a crash is found again and resumed by whichever node does background work.
//! See docs/design/rotation.md.

pub mod builtin;
pub mod lambda;
mod managed;
pub mod runner;

use crate::secrets::{self, refuse_if_scheduled, resolve_for_write};
use crate::{App, RequestContext, Txn, clock, store_error};
use coffer_core::model::{
    AWSCURRENT, AWSPENDING, InFlight, Millis, RotationConfig, RotationRules, SecretMeta,
    VersionMeta,
};
use coffer_core::schedule::Plan;
use coffer_core::{AwsError, ErrorCode, names, staging};
use coffer_store::{SealedValue, WriteTxn};
use coffer_wire::protocol::epoch_seconds;
use coffer_wire::secretsmanager as wire;
use std::collections::BTreeSet;

pub use runner::Hub;

/// The four steps, by their wire names (camelCase, as every AWS template dispatches).
pub const STEPS: [&str; 4] = ["createSecret", "setSecret", "testSecret", "finishSecret"];
/// The index of testSecret, the only step of a RotateImmediately=false rotation.
pub const TEST_STEP: u8 = 2;

/// Where the rotation record of a secret is indexed for the scheduler: kind and key = ARN,
/// value = the time (ms, decimal) the secret next needs attention.
pub(crate) const DUE_KIND: &str = "rotation-due";

const NO_LAMBDA: &str = "No Lambda rotation function ARN is associated with this secret.";
const CANNOT_INVOKE: &str = "Secrets Manager cannot invoke the specified Lambda function. Ensure that the function policy grants access to the principal secretsmanager.amazonaws.com.";
const PREVIOUS_NOT_COMPLETE: &str =
    "A previous rotation isn't complete. That rotation will be reattempted.";
const TOKEN_REQUIRED: &str =
    "You must provide a ClientRequestToken value. We recommend a UUID-type value.";

/// The service events of a rotation (CloudTrail `AwsServiceEvent`s).
pub(crate) fn event_name(test_only: bool, what: &str) -> String {
    if test_only { format!("TestRotation{what}") } else { format!("Rotation{what}") }
}

/// The version holding AWSPENDING that is not also AWSCURRENT: an unfinished rotation.
pub(crate) fn pending_version(versions: &[VersionMeta]) -> Option<&VersionMeta> {
    versions.iter().find(|v| v.stages.contains(AWSPENDING) && !v.stages.contains(AWSCURRENT))
}

/// When the schedule opens the secret's next window: from its last rotation or manual
/// value change (AWS counts a PutSecretValue/UpdateSecret as a rotation).
pub(crate) fn next_window(
    config: &RotationConfig,
    versions: &[VersionMeta],
) -> Option<coffer_core::schedule::Window> {
    let plan = Plan::parse(config.rules.as_ref()?).ok()?;
    Some(plan.next_window(schedule_base(config, versions)))
}

fn schedule_base(config: &RotationConfig, versions: &[VersionMeta]) -> Millis {
    let current = versions.iter().find(|v| v.stages.contains(AWSCURRENT)).map(|v| v.created_ms);
    [Some(config.configured_ms), config.last_rotated_ms, current]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(0)
}

/// Writes `meta` and keeps the scheduler's index of it right.
pub(crate) fn save(
    tx: &mut dyn WriteTxn,
    meta: &SecretMeta,
    versions: &[VersionMeta],
) -> Result<(), AwsError> {
    tx.update_secret(meta).map_err(store_error)?;
    index(tx, meta, versions)
}

/// The scheduler's index entry of `meta`: when it needs attention next, if ever.
pub(crate) fn index(
    tx: &mut dyn WriteTxn,
    meta: &SecretMeta,
    versions: &[VersionMeta],
) -> Result<(), AwsError> {
    let due = meta.rotation.as_ref().and_then(|r| match &r.in_flight {
        Some(f) => Some(f.not_before_ms.max(f.claimed_until_ms)),
        // Without a function (managed rotation) Coffer has nothing to run on a schedule.
        None if r.enabled && r.lambda_arn.is_some() => {
            next_window(r, versions).map(|w| w.moment(&meta.arn))
        }
        None => None,
    });
    match due {
        Some(due) => tx.put_record(DUE_KIND, &meta.arn, due.to_string().as_bytes()),
        None => tx.delete_record(DUE_KIND, &meta.arn),
    }
    .map_err(store_error)
}

/// Applies label changes to the stored versions.
pub(crate) fn apply_labels(
    tx: &mut dyn WriteTxn,
    arn: &str,
    versions: &[VersionMeta],
    labels: &staging::Labels,
) -> Result<(), AwsError> {
    for v in versions {
        if let Some(stages) = labels.get(&v.version_id)
            && stages != &v.stages
        {
            tx.update_version(arn, &VersionMeta { stages: stages.clone(), ..v.clone() })
                .map_err(store_error)?;
        }
    }
    Ok(())
}

/// Whether a stored value is the placeholder RotateSecret creates (no value yet).
pub fn is_placeholder(value: &SealedValue) -> bool {
    value.0.is_empty()
}

/// Creates version `token` labelled AWSPENDING: without a value (a rotation), or with a copy
/// of the current value (RotateImmediately=false: AWS tests with the current value).
#[allow(clippy::too_many_arguments)]
fn create_pending(
    app: &App,
    tx: &mut dyn WriteTxn,
    meta: &SecretMeta,
    versions: &[VersionMeta],
    token: &str,
    copy_current: bool,
    now: Millis,
    gate: Option<&crate::auth::Gate>,
) -> Result<(), AwsError> {
    let mut labels = staging::labels_of(versions);
    staging::add_version(&mut labels, token, Some(&[AWSPENDING.to_string()]))?;
    apply_labels(tx, &meta.arn, versions, &labels)?;
    let version = VersionMeta {
        version_id: token.to_string(),
        stages: BTreeSet::from([AWSPENDING.to_string()]),
        created_ms: now,
        last_accessed_ms: None,
        kms_key_id: meta.kms_key_id.clone(),
    };
    let current = versions.iter().find(|v| v.stages.contains(AWSCURRENT));
    let sealed = match current {
        Some(current) if copy_current => {
            // The copy is made for the caller, who is here: it opens AWSCURRENT and seals
            // the copy with the caller's permissions on both keys, as a write would. As the
            // service, it moved a value from a key the caller may not use into the
            // secret's, readable as AWSPENDING (attack 16, finding 03).
            let plaintext = secrets::open_value(app, tx, meta, &current.version_id, gate)?;
            if plaintext.expose().is_empty() {
                SealedValue(Vec::new())
            } else {
                let key = secrets::key_for(app, tx, meta, now)?;
                let arn = &meta.arn;
                secrets::seal_for_caller(app, &*tx, gate, &key, arn, token, plaintext.expose())?
            }
        }
        _ => SealedValue(Vec::new()),
    };
    tx.insert_version(&meta.arn, &version, &sealed).map_err(store_error)
}

/// Reads RotationRules from the request (already checked against the model).
fn rules_of(value: &serde_json::Value) -> Result<RotationRules, AwsError> {
    let obj =
        value.as_object().ok_or_else(|| AwsError::invalid_parameter("Invalid RotationRules."))?;
    Ok(RotationRules {
        automatically_after_days: obj.get("AutomaticallyAfterDays").and_then(|v| v.as_i64()),
        duration: obj.get("Duration").and_then(|v| v.as_str()).map(str::to_owned),
        schedule_expression: obj
            .get("ScheduleExpression")
            .and_then(|v| v.as_str())
            .map(str::to_owned),
    })
}

pub fn rotate_secret(
    app: &App,
    ctx: &RequestContext,
    req: wire::RotateSecretRequest,
) -> Result<wire::SecretRefResponse, AwsError> {
    names::validate_secret_id(&req.secret_id)?;
    // RotateSecret answers a missing token with InvalidParameterException (not
    // InvalidRequestException as the other writes do), before looking the secret up.
    let token = req
        .client_request_token
        .clone()
        .ok_or_else(|| AwsError::invalid_parameter(TOKEN_REQUIRED))?;
    let rules = match &req.rotation_rules {
        Some(value) => {
            let rules = rules_of(value)?;
            Plan::parse(&rules)?;
            Some(rules)
        }
        None => None,
    };
    if let Some(arn) = &req.rotation_lambda_arn
        && arn.len() > 2048
    {
        return Err(AwsError::invalid_parameter("RotationLambdaARN must <= 2048 characters long."));
    }
    let immediately = req.rotate_immediately.unwrap_or(true);
    // Which function: the request's, else the stored one. Looked up outside the write so
    // that the function can be checked (a network call) before anything is stored.
    let stored = app.read(|tx| {
        let meta = secrets::resolve_for_read(tx, ctx, &req.secret_id)?;
        Ok(meta)
    })?;
    crate::replication::refuse_on_replica(&stored)?;
    refuse_if_scheduled(&stored)?;
    let external = managed::check_external(&req, &stored)?;
    let function = req
        .rotation_lambda_arn
        .clone()
        .filter(|a| !a.is_empty())
        .or_else(|| stored.rotation.as_ref().and_then(|r| r.lambda_arn.clone()));
    // No function for a secret another service or a partner rotates: managed rotation.
    if function.is_none() && managed::is_managed(&stored) {
        return managed::rotate(app, ctx, &req, &stored, rules, external);
    }
    let function = function.ok_or_else(|| AwsError::invalid_request(NO_LAMBDA))?;
    if let Some(gate) = ctx.gate.as_deref() {
        // AWS requires lambda:InvokeFunction on the function from whoever calls RotateSecret.
        gate.resource("lambda:InvokeFunction", &builtin::function_arn(&function, &stored.arn))?;
    }
    // A function that cannot be invoked is AccessDeniedException, and nothing is stored.
    if builtin::builtin_kind(&function, &stored.arn).is_none()
        && !lambda::can_invoke(app, &function)
    {
        return Err(AwsError::new(ErrorCode::AccessDenied, CANNOT_INVOKE));
    }
    let result = app.write(ctx, |tx| {
        let mut meta = resolve_for_write(tx, ctx, &req.secret_id)?;
        crate::replication::refuse_on_replica(&meta)?;
        refuse_if_scheduled(&meta)?;
        let versions = tx.versions(&meta.arn).map_err(store_error)?;
        let response = |meta: &SecretMeta| wire::SecretRefResponse {
            arn: meta.arn.clone(),
            name: meta.name.clone(),
            version_id: Some(token.clone()),
            version_stages: None,
        };
        if let Some(pending) = pending_version(&versions) {
            // The same call again (an SDK retry) is answered as the first was.
            if pending.version_id == token {
                return Ok((response(&meta), false));
            }
            return Err(AwsError::invalid_request(PREVIOUS_NOT_COMPLETE));
        }
        if versions.iter().any(|v| v.version_id == token) {
            return Err(AwsError::new(
                ErrorCode::ResourceExists,
                format!(
                    "You can't use ClientRequestToken {token} because that value is already in use for a version of secret {}.",
                    meta.arn
                ),
            ));
        }
        let now = clock::now_ms();
        let mut config = meta.rotation.clone().unwrap_or_default();
        config.enabled = true;
        config.lambda_arn = Some(function.clone());
        if rules.is_some() {
            config.rules = rules.clone();
            config.configured_ms = now;
        } else if config.configured_ms == 0 {
            config.configured_ms = now;
        }
        config.in_flight = Some(InFlight {
            token: token.clone(),
            test_only: !immediately,
            next_step: if immediately { 0 } else { TEST_STEP },
            attempts: 0,
            not_before_ms: now,
            claimed_by: None,
            claimed_until_ms: 0,
        });
        create_pending(app, tx, &meta, &versions, &token, !immediately, now, ctx.gate.as_deref())?;
        meta.rotation = Some(config);
        meta.last_changed_ms = now;
        let versions = tx.versions(&meta.arn).map_err(store_error)?;
        save(tx, &meta, &versions)?;
        let name = event_name(!immediately, "Started");
        crate::audit::record_rotation_event(app, tx, &meta.scope, &name, &meta.arn, None, now)?;
        Ok((response(&meta), true))
    });
    let (response, started) = result?;
    if started {
        app.rotation.kick(&response.arn);
    }
    Ok(response)
}

pub fn cancel_rotate_secret(
    app: &App,
    ctx: &RequestContext,
    req: wire::SecretIdRequest,
) -> Result<wire::SecretRefResponse, AwsError> {
    names::validate_secret_id(&req.secret_id)?;
    app.write(ctx, |tx| {
        let mut meta = resolve_for_write(tx, ctx, &req.secret_id)?;
        crate::replication::refuse_on_replica(&meta)?;
        refuse_if_scheduled(&meta)?;
        let versions = tx.versions(&meta.arn).map_err(store_error)?;
        let Some(mut config) = meta.rotation.clone() else {
            // Never configured (AWS's behaviour not captured; moto's wording, from the model).
            return Err(AwsError::invalid_request(
                "You tried to enable rotation on a secret that doesn't already have a Lambda function ARN configured and you didn't include such an ARN as a parameter in this call.",
            ));
        };
        // The version of an interrupted rotation is reported so that the caller can take
        // AWSPENDING off it; the label itself stays, as on AWS.
        let version_id = pending_version(&versions).map(|v| v.version_id.clone());
        config.enabled = false;
        config.in_flight = None;
        meta.rotation = Some(config);
        meta.last_changed_ms = clock::now_ms();
        save(tx, &meta, &versions)?;
        Ok(wire::SecretRefResponse { arn: meta.arn, name: meta.name, version_id, version_stages: None })
    })
}

/// Adds the rotation members to a DescribeSecret/ListSecrets entry: all absent when
/// rotation was never configured; dates absent while it is off.
pub fn describe_into(d: &mut wire::SecretDescription, meta: &SecretMeta, versions: &[VersionMeta]) {
    let Some(config) = &meta.rotation else { return };
    d.rotation_enabled = Some(config.enabled);
    d.rotation_lambda_arn = config.lambda_arn.clone();
    if let Some(rules) = &config.rules {
        let mut out = serde_json::Map::new();
        let plan = Plan::parse(rules).ok();
        let days = match (rules.automatically_after_days, &plan) {
            (Some(days), _) => Some(days),
            (None, Some(plan)) => Some(plan.computed_days(schedule_base(config, versions))),
            (None, None) => None,
        };
        if let Some(days) = days {
            out.insert("AutomaticallyAfterDays".into(), days.into());
        }
        if let Some(d) = &rules.duration {
            out.insert("Duration".into(), d.clone().into());
        }
        if let Some(e) = &rules.schedule_expression {
            out.insert("ScheduleExpression".into(), e.clone().into());
        }
        d.rotation_rules = Some(serde_json::Value::Object(out));
    }
    d.external_secret_rotation_role_arn = config.external_role_arn.clone();
    d.external_secret_rotation_metadata = config.external_metadata.as_ref().map(|items| {
        items.iter().map(|(k, v)| serde_json::json!({"Key": k, "Value": v})).collect()
    });
    // NextRotationDate only when Coffer itself will rotate (a function is configured).
    if config.enabled && config.lambda_arn.is_none() {
        d.last_rotated_date = config.last_rotated_ms.map(epoch_seconds);
        return;
    }
    if config.enabled {
        d.last_rotated_date = config.last_rotated_ms.map(epoch_seconds);
        d.next_rotation_date =
            next_window(config, versions).map(|w| epoch_seconds(w.next_rotation_date()));
    }
}

/// Hook of PutSecretValue/UpdateSecret after a new version `new_version` was added with
/// `stages`: a new AWSCURRENT written while a rotation is pending abandons that rotation
/// (AWS takes AWSPENDING off its version and records RotationAbandoned). Also re-indexes
/// the schedule, which counts a manual value change as a rotation.
pub fn after_value_written(
    app: &App,
    tx: &mut Txn,
    meta: &mut SecretMeta,
    new_version: &str,
    stages: &[String],
    now: Millis,
) -> Result<(), AwsError> {
    let Some(config) = meta.rotation.as_mut() else { return Ok(()) };
    let versions = tx.versions(&meta.arn).map_err(store_error)?;
    if stages.iter().any(|s| s == AWSCURRENT)
        && let Some(pending) = pending_version(&versions).filter(|p| p.version_id != new_version)
    {
        let (arn, pending_id) = (meta.arn.clone(), pending.version_id.clone());
        let mut labels = staging::labels_of(&versions);
        staging::move_label(&mut labels, AWSPENDING, Some(&pending_id), None)?;
        apply_labels(tx, &arn, &versions, &labels)?;
        let test_only = config.in_flight.as_ref().is_some_and(|f| f.test_only);
        config.in_flight = None;
        let name = event_name(test_only, "Abandoned");
        crate::audit::record_rotation_event(app, tx, &meta.scope, &name, &arn, None, now)?;
    }
    let versions = tx.versions(&meta.arn).map_err(store_error)?;
    index(tx, meta, &versions)
}
