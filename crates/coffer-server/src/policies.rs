//! Resource policies (Put/Get/Delete/ValidateResourcePolicy) and RotateSecret's
//! refusals. Policies are parsed and checked (grammar, public access, lock-out) with
//! `coffer-auth` here; `auth` enforces them on every call.

use crate::secrets::{resolve_existing, resolve_secret_id_checked};
use crate::{App, RequestContext, store_error};
use coffer_auth::policy::{
    Policy, PolicyKind, malformed_message, validate_resource_policy as findings,
};
use coffer_core::{AwsError, ErrorCode, names};
use coffer_wire::secretsmanager as wire;

const PUBLIC_POLICY: &str = "This resource policy contains a public policy, which is blocked by the BlockPublicPolicy parameter.";

fn malformed(message: String) -> AwsError {
    AwsError::new(ErrorCode::MalformedPolicyDocument, message)
}

pub fn put_resource_policy(
    app: &App,
    ctx: &RequestContext,
    req: wire::PutResourcePolicyRequest,
) -> Result<wire::SecretRefResponse, AwsError> {
    names::validate_secret_id(&req.secret_id)?;
    let policy = Policy::parse(&req.resource_policy, PolicyKind::Resource)
        .map_err(|problems| malformed(malformed_message(&problems)))?;
    if req.block_public_policy.unwrap_or(false) && policy.grants_public_access() {
        return Err(AwsError::new(ErrorCode::PublicPolicy, PUBLIC_POLICY));
    }
    app.write(|tx| {
        let mut meta = resolve_existing(tx, &ctx.scope, &req.secret_id)?;
        meta.resource_policy = Some(req.resource_policy.clone());
        tx.update_secret(&meta).map_err(store_error)?;
        Ok(wire::SecretRefResponse { arn: meta.arn, name: meta.name, ..Default::default() })
    })
}

pub fn get_resource_policy(
    app: &App,
    ctx: &RequestContext,
    req: wire::SecretIdRequest,
) -> Result<wire::GetResourcePolicyResponse, AwsError> {
    names::validate_secret_id(&req.secret_id)?;
    app.read(|tx| {
        let meta = resolve_existing(tx, &ctx.scope, &req.secret_id)?;
        Ok(wire::GetResourcePolicyResponse {
            arn: meta.arn,
            name: meta.name,
            resource_policy: meta.resource_policy,
        })
    })
}

pub fn delete_resource_policy(
    app: &App,
    ctx: &RequestContext,
    req: wire::SecretIdRequest,
) -> Result<wire::SecretRefResponse, AwsError> {
    names::validate_secret_id(&req.secret_id)?;
    app.write(|tx| {
        let mut meta = resolve_existing(tx, &ctx.scope, &req.secret_id)?;
        if meta.resource_policy.take().is_some() {
            tx.update_secret(&meta).map_err(store_error)?;
        }
        Ok(wire::SecretRefResponse { arn: meta.arn, name: meta.name, ..Default::default() })
    })
}

pub fn validate_resource_policy(
    app: &App,
    ctx: &RequestContext,
    req: wire::ValidateResourcePolicyRequest,
) -> Result<wire::ValidateResourcePolicyResponse, AwsError> {
    if let Some(id) = &req.secret_id {
        resolve_secret_id_checked(app, ctx, id)?;
    }
    if serde_json::from_str::<serde_json::Value>(&req.resource_policy).is_err() {
        return Err(malformed(
            "This resource policy contains a syntax error: it is not valid JSON.".to_string(),
        ));
    }
    let errors: Vec<wire::ValidationErrorsEntry> = findings(&req.resource_policy)
        .into_iter()
        .map(|f| wire::ValidationErrorsEntry {
            check_name: f.check.to_string(),
            error_message: f.message,
        })
        .collect();
    Ok(wire::ValidateResourcePolicyResponse {
        policy_validation_passed: errors.is_empty(),
        validation_errors: errors,
    })
}

/// RotateSecret. Coffer has no Lambda service to invoke, so a rotation function
/// can never be called: AWS answers that case with AccessDeniedException and
/// records no rotation settings, and so does Coffer. Built-in rotators come later.
pub fn rotate_secret(
    app: &App,
    ctx: &RequestContext,
    req: wire::RotateSecretRequest,
) -> Result<wire::SecretRefResponse, AwsError> {
    names::validate_secret_id(&req.secret_id)?;
    if req.client_request_token.is_none() {
        return Err(AwsError::invalid_parameter(
            "You must provide a ClientRequestToken value. We recommend a UUID-type value.",
        ));
    }
    app.read(|tx| {
        let meta = resolve_existing(tx, &ctx.scope, &req.secret_id)?;
        if meta.is_scheduled_for_deletion() {
            return Err(AwsError::marked_for_deletion());
        }
        match &req.rotation_lambda_arn {
            None => Err(AwsError::invalid_request("No Lambda rotation function ARN is associated with this secret.")),
            Some(_) => Err(AwsError::new(
                ErrorCode::AccessDenied,
                "Secrets Manager cannot invoke the specified Lambda function. Ensure that the function policy grants access to the principal secretsmanager.amazonaws.com.",
            )),
        }
    })
}
