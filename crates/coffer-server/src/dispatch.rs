//! One exhaustive table from operation to handler.

use crate::auth::{Authenticated, RawRequest};
use crate::query::Form;
use crate::{App, RequestContext, iam_api, kms_api, policies, replication, rotation, secrets, sts};
use coffer_core::{AwsError, ErrorCode};
use coffer_wire::operation::{CloudTrailOp, Operation, SecretsManagerOp as Sm};
use coffer_wire::protocol::{decode_request, encode_response};
use serde_json::Value;
use std::sync::Arc;

/// Runs one validated request and returns the response body.
pub fn dispatch(
    app: &App,
    ctx: &RequestContext,
    op: Operation,
    body: Value,
) -> Result<Vec<u8>, AwsError> {
    match op {
        Operation::SecretsManager(op) => secretsmanager(app, ctx, op, body),
        Operation::Kms(op) => kms_api::dispatch(app, ctx, op, body)
            .unwrap_or_else(|| Err(not_implemented(&format!("The KMS operation {}", op.name())))),
        Operation::CloudTrail(CloudTrailOp::LookupEvents) => lookup_events(app, ctx, body),
        // STS and IAM speak the query protocol: `dispatch_query`.
        Operation::Sts(_) | Operation::Iam(_) => Err(AwsError::internal()),
    }
}

/// Runs one query-protocol call (STS, IAM) and returns its XML answer. Their handlers
/// authorize what they do themselves, on the entity the form names (read from the store)
/// or, for AssumeRole, on the role's trust policy: they need the caller and the request's
/// source.
pub fn dispatch_query(
    app: &Arc<App>,
    ctx: &RequestContext,
    who: Option<&Authenticated>,
    raw: &RawRequest,
    op: Operation,
    form: &Form,
) -> Result<Vec<u8>, AwsError> {
    match op {
        Operation::Sts(op) => sts::handle(app, ctx, who, raw, op, form),
        Operation::Iam(op) => iam_api::handle(app, ctx, who, raw, op, form),
        // The JSON services: `dispatch`.
        Operation::SecretsManager(_) | Operation::Kms(_) | Operation::CloudTrail(_) => {
            Err(AwsError::internal())
        }
    }
}

fn not_implemented(what: &str) -> AwsError {
    AwsError::new(ErrorCode::NotImplemented, format!("{what} is not implemented by Coffer yet."))
}

fn secretsmanager(
    app: &App,
    ctx: &RequestContext,
    op: Sm,
    body: Value,
) -> Result<Vec<u8>, AwsError> {
    let out = match op {
        Sm::CreateSecret => {
            encode_response(&secrets::create_secret(app, ctx, decode_request(body)?)?)
        }
        Sm::UpdateSecret => {
            encode_response(&secrets::update_secret(app, ctx, decode_request(body)?)?)
        }
        Sm::PutSecretValue => {
            encode_response(&secrets::put_secret_value(app, ctx, decode_request(body)?)?)
        }
        Sm::GetSecretValue => {
            encode_response(&secrets::get_secret_value(app, ctx, decode_request(body)?)?)
        }
        Sm::BatchGetSecretValue => {
            encode_response(&secrets::batch_get_secret_value(app, ctx, decode_request(body)?)?)
        }
        Sm::DescribeSecret => {
            encode_response(&secrets::describe_secret(app, ctx, decode_request(body)?)?)
        }
        Sm::ListSecrets => {
            encode_response(&secrets::list_secrets(app, ctx, decode_request(body)?)?)
        }
        Sm::ListSecretVersionIds => {
            encode_response(&secrets::list_secret_version_ids(app, ctx, decode_request(body)?)?)
        }
        Sm::UpdateSecretVersionStage => {
            encode_response(&secrets::update_secret_version_stage(app, ctx, decode_request(body)?)?)
        }
        Sm::DeleteSecret => {
            encode_response(&secrets::delete_secret(app, ctx, decode_request(body)?)?)
        }
        Sm::RestoreSecret => {
            encode_response(&secrets::restore_secret(app, ctx, decode_request(body)?)?)
        }
        Sm::TagResource => {
            encode_response(&secrets::tag_resource(app, ctx, decode_request(body)?)?)
        }
        Sm::UntagResource => {
            encode_response(&secrets::untag_resource(app, ctx, decode_request(body)?)?)
        }
        Sm::PutResourcePolicy => {
            encode_response(&policies::put_resource_policy(app, ctx, decode_request(body)?)?)
        }
        Sm::GetResourcePolicy => {
            encode_response(&policies::get_resource_policy(app, ctx, decode_request(body)?)?)
        }
        Sm::DeleteResourcePolicy => {
            encode_response(&policies::delete_resource_policy(app, ctx, decode_request(body)?)?)
        }
        Sm::ValidateResourcePolicy => {
            encode_response(&policies::validate_resource_policy(app, ctx, decode_request(body)?)?)
        }
        Sm::RotateSecret => {
            encode_response(&rotation::rotate_secret(app, ctx, decode_request(body)?)?)
        }
        Sm::CancelRotateSecret => {
            encode_response(&rotation::cancel_rotate_secret(app, ctx, decode_request(body)?)?)
        }
        Sm::GetRandomPassword => {
            encode_response(&secrets::get_random_password(decode_request(body)?)?)
        }
        Sm::ReplicateSecretToRegions => encode_response(&replication::replicate_secret_to_regions(
            app,
            ctx,
            decode_request(body)?,
        )?),
        Sm::RemoveRegionsFromReplication => encode_response(
            &replication::remove_regions_from_replication(app, ctx, decode_request(body)?)?,
        ),
        Sm::StopReplicationToReplica => encode_response(&replication::stop_replication_to_replica(
            app,
            ctx,
            decode_request(body)?,
        )?),
    };
    Ok(out)
}

/// CloudTrail's LookupEvents over the trail of the caller's scope.
fn lookup_events(app: &App, ctx: &RequestContext, body: Value) -> Result<Vec<u8>, AwsError> {
    let request = serde_json::from_value(body).map_err(|e| {
        AwsError::new(
            ErrorCode::Serialization,
            format!("The request does not match LookupEvents ({e})."),
        )
    })?;
    let response = crate::audit::lookup_events(app, &ctx.scope, request)
        .map_err(|e| AwsError::new(ErrorCode::CloudTrail(e.code), e.message))?;
    serde_json::to_vec(&response).map_err(|_| AwsError::internal())
}
