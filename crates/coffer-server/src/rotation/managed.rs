//! Rotation without a Lambda function: secrets managed by another service (`OwningService`,
//! AWS's *managed rotation*) and managed external secrets (a partner `Type`, with
//! `ExternalSecretRotationRoleArn` and `ExternalSecretRotationMetadata`).
//!
//! On AWS the owning service or Secrets Manager's partner integration carries these
//! rotations out; neither exists inside Coffer. So Coffer does what can be done faithfully:
//! it checks the members, stores the configuration (RotationEnabled, RotationRules, the
//! external role and metadata) and reports it in DescribeSecret/ListSecrets as AWS does (no
//! RotationLambdaARN), when the caller asks only for that (`RotateImmediately=false`). A
//! rotation now is refused with an InvalidRequestException saying why, and changes nothing;
//! the scheduler never starts one (no NextRotationDate is reported, as none will happen).
//! See docs/design/rotation.md.

use crate::secrets::{refuse_if_scheduled, resolve_for_write};
use crate::{App, RequestContext, clock, store_error};
use coffer_core::AwsError;
use coffer_core::model::{RotationRules, SecretMeta};
use coffer_wire::secretsmanager as wire;

const NOT_EXTERNAL: &str = "ExternalSecretRotationRoleArn and ExternalSecretRotationMetadata apply only to a managed external secret (a secret created with a Type).";
const BOTH: &str = "You can't specify both RotationLambdaARN and ExternalSecretRotationRoleArn or ExternalSecretRotationMetadata.";
const ROLE_FORM: &str = "ExternalSecretRotationRoleArn must be the ARN of an IAM role.";
const ROLE_REQUIRED: &str =
    "ExternalSecretRotationRoleArn is required to rotate a managed external secret.";

/// The external members of a RotateSecret request, checked.
pub(super) struct External {
    pub role_arn: Option<String>,
    pub metadata: Option<Vec<(String, String)>>,
}

/// Checks the external members against the secret (the model already bounded their
/// lengths): only on a secret with a partner Type, never with a Lambda function, and the
/// role must be an IAM role ARN.
pub(super) fn check_external(
    req: &wire::RotateSecretRequest,
    stored: &SecretMeta,
) -> Result<External, AwsError> {
    let given = req.external_secret_rotation_role_arn.is_some()
        || req.external_secret_rotation_metadata.is_some();
    if !given {
        return Ok(External { role_arn: None, metadata: None });
    }
    if stored.secret_type.as_deref().is_none_or(str::is_empty) {
        return Err(AwsError::invalid_parameter(NOT_EXTERNAL));
    }
    if req.rotation_lambda_arn.as_deref().is_some_and(|a| !a.is_empty()) {
        return Err(AwsError::invalid_parameter(BOTH));
    }
    if let Some(role) = &req.external_secret_rotation_role_arn
        && !is_role_arn(role)
    {
        return Err(AwsError::invalid_parameter(ROLE_FORM));
    }
    let metadata = match &req.external_secret_rotation_metadata {
        None => None,
        Some(value) => {
            let bad = || AwsError::invalid_parameter("Invalid ExternalSecretRotationMetadata.");
            let items = value.as_array().ok_or_else(bad)?;
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let key = item.get("Key").and_then(|v| v.as_str()).ok_or_else(bad)?;
                let value = item.get("Value").and_then(|v| v.as_str()).ok_or_else(bad)?;
                out.push((key.to_string(), value.to_string()));
            }
            Some(out)
        }
    };
    Ok(External { role_arn: req.external_secret_rotation_role_arn.clone(), metadata })
}

/// `arn:<partition>:iam::<12-digit account>:role/<path and name>`.
fn is_role_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    matches!(parts.as_slice(), ["arn", partition, "iam", "", account, resource]
        if !partition.is_empty()
            && account.len() == 12
            && account.bytes().all(|b| b.is_ascii_digit())
            && resource.strip_prefix("role/").is_some_and(|name| !name.is_empty()))
}

/// Whether a RotateSecret without any Lambda function (in the request or stored) is a
/// managed or managed-external rotation rather than the "No Lambda …" error.
pub(super) fn is_managed(stored: &SecretMeta) -> bool {
    stored.owning_service.is_some() || stored.secret_type.as_deref().is_some_and(|t| !t.is_empty())
}

/// RotateSecret on a managed or managed-external secret without a Lambda function.
pub(super) fn rotate(
    app: &App,
    ctx: &RequestContext,
    req: &wire::RotateSecretRequest,
    stored: &SecretMeta,
    rules: Option<RotationRules>,
    external: External,
) -> Result<wire::SecretRefResponse, AwsError> {
    let config = stored.rotation.as_deref();
    let is_external = stored.owning_service.is_none();
    if is_external
        && external.role_arn.is_none()
        && config.and_then(|c| c.external_role_arn.as_ref()).is_none()
    {
        return Err(AwsError::invalid_parameter(ROLE_REQUIRED));
    }
    if req.rotate_immediately.unwrap_or(true) {
        let message = match (&stored.owning_service, &stored.secret_type) {
            (Some(service), _) => format!(
                "Secrets Manager can't rotate secret {} here: it's managed by {service}, which carries out its rotation. Call RotateSecret with RotateImmediately set to false to change its rotation schedule.",
                stored.name
            ),
            (None, kind) => format!(
                "Secrets Manager can't rotate the managed external secret {} here: Coffer has no integration with the partner {}. Call RotateSecret with RotateImmediately set to false to store the rotation configuration, and write new values with PutSecretValue.",
                stored.name,
                kind.as_deref().unwrap_or_default()
            ),
        };
        return Err(AwsError::invalid_request(message));
    }
    app.write(ctx, |tx| {
        let mut meta = resolve_for_write(tx, ctx, &req.secret_id)?;
        crate::replication::refuse_on_replica(&meta)?;
        refuse_if_scheduled(&meta)?;
        let versions = tx.versions(&meta.arn).map_err(store_error)?;
        let now = clock::now_ms();
        let mut config = meta.rotation.clone().unwrap_or_default();
        config.enabled = true;
        if rules.is_some() {
            config.rules = rules.clone();
            config.configured_ms = now;
        } else if config.configured_ms == 0 {
            config.configured_ms = now;
        }
        if external.role_arn.is_some() {
            config.external_role_arn = external.role_arn.clone();
        }
        if external.metadata.is_some() {
            config.external_metadata = external.metadata.clone();
        }
        meta.rotation = Some(config);
        meta.last_changed_ms = now;
        super::save(tx, &meta, &versions)?;
        Ok(wire::SecretRefResponse {
            arn: meta.arn,
            name: meta.name,
            version_id: None,
            version_stages: None,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, KeyRing};
    use coffer_core::{ErrorCode, Scope};
    use coffer_crypto::MasterKey;
    use coffer_store::MemoryStore;
    use coffer_wire::protocol::SensitiveString;
    use std::sync::Arc;

    fn ctx() -> RequestContext {
        RequestContext::new(
            Scope::new("000000000000", "us-east-1"),
            "AKIDEXAMPLE".into(),
            "test".into(),
        )
    }

    fn rotate_req(
        immediately: Option<bool>,
        rules: Option<serde_json::Value>,
    ) -> wire::RotateSecretRequest {
        wire::RotateSecretRequest {
            secret_id: "rds!db-1".into(),
            client_request_token: Some(uuid::Uuid::new_v4().to_string()),
            rotation_rules: rules,
            rotate_immediately: immediately,
            ..Default::default()
        }
    }

    /// A secret owned by RDS (AWS's managed rotation): no Lambda; the schedule is stored
    /// and reported, a rotation now is refused, the scheduler never starts one.
    #[test]
    fn a_service_managed_secret_keeps_its_schedule_and_is_never_rotated_here() {
        let store = Arc::new(MemoryStore::new());
        let keys = KeyRing::open(MasterKey::generate(), store.as_ref()).unwrap();
        let app = App::new(store, keys, Config::default());
        crate::secrets::create_secret(
            &app,
            &ctx(),
            wire::CreateSecretRequest {
                name: "rds!db-1".into(),
                client_request_token: Some(uuid::Uuid::new_v4().to_string()),
                secret_string: Some(SensitiveString::new("{\"password\":\"p\"}".into())),
                ..Default::default()
            },
        )
        .unwrap();
        app.write_unrecorded(|tx| {
            let mut meta = tx.secret_by_name(&ctx().scope, "rds!db-1").unwrap().unwrap();
            meta.owning_service = Some("rds".into());
            tx.update_secret(&meta).map_err(store_error)
        })
        .unwrap();
        let rules = serde_json::json!({"ScheduleExpression": "rate(7 days)", "Duration": "2h"});
        let err =
            crate::rotation::rotate_secret(&app, &ctx(), rotate_req(None, Some(rules.clone())))
                .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidRequest);
        assert!(err.message.contains("managed by rds"), "{}", err.message);
        let describe = || {
            crate::secrets::describe_secret(
                &app,
                &ctx(),
                wire::SecretIdRequest { secret_id: "rds!db-1".into() },
            )
            .unwrap()
        };
        assert_eq!(describe().rotation_enabled, None, "the refusal stored nothing");

        let out =
            crate::rotation::rotate_secret(&app, &ctx(), rotate_req(Some(false), Some(rules)))
                .unwrap();
        assert_eq!(out.version_id, None);
        let d = describe();
        assert_eq!(d.rotation_enabled, Some(true));
        assert_eq!(d.rotation_lambda_arn, None);
        assert_eq!(
            d.rotation_rules,
            Some(
                serde_json::json!({"AutomaticallyAfterDays": 7, "Duration": "2h", "ScheduleExpression": "rate(7 days)"})
            )
        );
        assert_eq!(d.next_rotation_date, None);
        let far = clock::now_ms() + 400 * coffer_core::model::DAY_MS;
        assert_eq!(crate::rotation::runner::sweep(&app, far).unwrap(), 0);
        assert_eq!(describe().version_ids_to_stages.unwrap().len(), 1);
    }

    #[test]
    fn role_arns_are_recognised() {
        assert!(is_role_arn("arn:aws:iam::000000000000:role/partner"));
        assert!(is_role_arn("arn:aws-cn:iam::123456789012:role/path/to/r"));
        for bad in [
            "arn:aws:iam::000000000000:user/u",
            "arn:aws:iam::000000000000:role/",
            "arn:aws:iam::00000000000:role/r",
            "arn:aws:iam:us-east-1:000000000000:role/r",
            "arn:aws:sts::000000000000:role/r",
            "role/r",
        ] {
            assert!(!is_role_arn(bad), "{bad}");
        }
    }
}
