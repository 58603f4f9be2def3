//! One exhaustive table from operation name to handler.

use crate::{App, RequestContext, kms_api, policies, secrets};
use coffer_core::{AwsError, ErrorCode};
use coffer_wire::model::ServiceModel;
use coffer_wire::protocol::{Service, decode_request, encode_response};
use serde_json::Value;

/// Runs one validated request and returns the response body.
pub fn dispatch(
    app: &App,
    ctx: &RequestContext,
    service: Service,
    op: &str,
    body: Value,
) -> Result<Vec<u8>, AwsError> {
    match service {
        Service::SecretsManager => secretsmanager(app, ctx, op, body),
        Service::Kms => kms_api::dispatch(app, ctx, op, body)
            .unwrap_or_else(|| Err(not_implemented(&format!("The KMS operation {op}")))),
    }
}

fn not_implemented(what: &str) -> AwsError {
    AwsError::new(ErrorCode::NotImplemented, format!("{what} is not implemented by Coffer yet."))
}

fn secretsmanager(
    app: &App,
    ctx: &RequestContext,
    op: &str,
    body: Value,
) -> Result<Vec<u8>, AwsError> {
    let out = match op {
        "CreateSecret" => {
            encode_response(&secrets::create_secret(app, ctx, decode_request(body)?)?)
        }
        "UpdateSecret" => {
            encode_response(&secrets::update_secret(app, ctx, decode_request(body)?)?)
        }
        "PutSecretValue" => {
            encode_response(&secrets::put_secret_value(app, ctx, decode_request(body)?)?)
        }
        "GetSecretValue" => {
            encode_response(&secrets::get_secret_value(app, ctx, decode_request(body)?)?)
        }
        "BatchGetSecretValue" => {
            encode_response(&secrets::batch_get_secret_value(app, ctx, decode_request(body)?)?)
        }
        "DescribeSecret" => {
            encode_response(&secrets::describe_secret(app, ctx, decode_request(body)?)?)
        }
        "ListSecrets" => encode_response(&secrets::list_secrets(app, ctx, decode_request(body)?)?),
        "ListSecretVersionIds" => {
            encode_response(&secrets::list_secret_version_ids(app, ctx, decode_request(body)?)?)
        }
        "UpdateSecretVersionStage" => {
            encode_response(&secrets::update_secret_version_stage(app, ctx, decode_request(body)?)?)
        }
        "DeleteSecret" => {
            encode_response(&secrets::delete_secret(app, ctx, decode_request(body)?)?)
        }
        "RestoreSecret" => {
            encode_response(&secrets::restore_secret(app, ctx, decode_request(body)?)?)
        }
        "TagResource" => encode_response(&secrets::tag_resource(app, ctx, decode_request(body)?)?),
        "UntagResource" => {
            encode_response(&secrets::untag_resource(app, ctx, decode_request(body)?)?)
        }
        "PutResourcePolicy" => {
            encode_response(&policies::put_resource_policy(app, ctx, decode_request(body)?)?)
        }
        "GetResourcePolicy" => {
            encode_response(&policies::get_resource_policy(app, ctx, decode_request(body)?)?)
        }
        "DeleteResourcePolicy" => {
            encode_response(&policies::delete_resource_policy(app, ctx, decode_request(body)?)?)
        }
        "ValidateResourcePolicy" => {
            encode_response(&policies::validate_resource_policy(app, ctx, decode_request(body)?)?)
        }
        "RotateSecret" => {
            encode_response(&policies::rotate_secret(app, ctx, decode_request(body)?)?)
        }
        "GetRandomPassword" => {
            encode_response(&secrets::get_random_password(decode_request(body)?)?)
        }
        other if ServiceModel::secretsmanager().has_operation(other) => {
            return Err(not_implemented(&format!("The operation {other}")));
        }
        other => {
            return Err(AwsError::new(
                ErrorCode::UnknownOperation,
                format!("Unknown operation {other}"),
            ));
        }
    };
    Ok(out)
}
