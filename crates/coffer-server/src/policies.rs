//! Resource policies (Put/Get/Delete/ValidateResourcePolicy). Policies are parsed and checked (grammar, public access, lock-out) with
//! `coffer-auth` here; `auth` enforces them on every call. Put, Get and Delete refuse a secret
//! scheduled for deletion, as AWS does (the Terraform provider matches that answer from Get
//! and Delete; Put follows the other writes), after the policy's own checks.

use crate::iam::{USER_KIND, UserRecord};
use crate::secrets::{
    refuse_if_scheduled, resolve_for_read, resolve_for_write, resolve_secret_id_checked,
};
use crate::{App, RequestContext, store_error};
use coffer_auth::policy::{
    Policy, PolicyKind, is_unique_id, malformed_message, map_aws_principals, user_arn_parts,
    validate_resource_policy as findings,
};
use coffer_auth::principal::{STORED, stored_iam_arn};
use coffer_core::{AwsError, ErrorCode, Partition, names};
use coffer_store::ReadTxn;
use coffer_wire::secretsmanager as wire;

const PUBLIC_POLICY: &str = "This resource policy contains a public policy, which is blocked by the BlockPublicPolicy parameter.";
const UNSUPPORTED_PRINCIPAL: &str = "This resource policy contains an unsupported principal.";

/// The stored text of a resource policy: IAM user ARNs among its principals replaced by
/// the users' unique ids, as AWS stores them, so that a user deleted and recreated under
/// the same name (a new unique id) does not inherit the grant. A user ARN that names no
/// user is refused, or a user created later under that name would be granted. The text is
/// kept as given when it names no user. Without IAM (`--dev`) nothing is enforced and
/// nothing is bound. `unknown_user` is the MalformedPolicyDocumentException message for
/// an ARN that names no user (Secrets Manager and KMS word it differently). CreateKey binds
/// key policies the same way. IAM ARNs are read in `partition`, the request's: one of
/// another partition names no user or role here.
pub(crate) fn bind_user_principals(
    app: &App,
    tx: &dyn ReadTxn,
    text: &str,
    unknown_user: &str,
    partition: Partition,
) -> Result<String, AwsError> {
    if app.iam.is_none() {
        return Ok(text.to_string());
    }
    bind_principals(tx, text, unknown_user, partition)
}

/// [`bind_user_principals`] in any mode: also `--dev`'s IAM API binds a role's trust
/// policy, as IAM checks that the principals it names exist.
pub(crate) fn bind_principals(
    tx: &dyn ReadTxn,
    text: &str,
    unknown_user: &str,
    partition: Partition,
) -> Result<String, AwsError> {
    let mut doc: serde_json::Value = serde_json::from_str(text).map_err(|_| {
        malformed("This resource policy contains a syntax error: it is not valid JSON.".into())
    })?;
    let changed = map_aws_principals(&mut doc, &mut |given| {
        // Looked up as IAM's records keep ARNs; a user or role ARN of another partition
        // names no one here, as one that does not exist.
        let Some(id) = stored_iam_arn(given, partition) else {
            let named = STORED.rewrite(given);
            let names_entity = crate::iam::directory::role_arn_parts(&named).is_some()
                || user_arn_parts(&named).is_some();
            return if names_entity { Err(malformed(unknown_user.to_string())) } else { Ok(None) };
        };
        let id = id.as_str();
        if id.contains(":role/") {
            // Role ARNs are bound to the role's unique id the same way.
            return match crate::iam::directory::bound_role_id(tx, id).map_err(store_error)? {
                Some(role_id) => Ok(Some(role_id)),
                None if crate::iam::directory::role_arn_parts(id).is_some() => {
                    Err(malformed(unknown_user.to_string()))
                }
                None => Ok(None),
            };
        }
        let Some((account, name)) = user_arn_parts(id) else { return Ok(None) };
        let record = tx.record(USER_KIND, &format!("{account}/{name}")).map_err(store_error)?;
        let user: Option<UserRecord> = record.and_then(|bytes| serde_json::from_slice(&bytes).ok());
        // The ARN must be the user's own, path included.
        match user.filter(|u| u.principal().arn == id) {
            Some(user) => Ok(Some(user.user_id)),
            None => Err(malformed(unknown_user.to_string())),
        }
    })?;
    if !changed {
        return Ok(text.to_string());
    }
    serde_json::to_string(&doc).map_err(|_| AwsError::internal())
}

/// The unique id of the IAM user `arn` names, for a grant's grantee or retiring principal
/// (`None` for other principals, or without IAM). A user ARN that names no user is
/// refused: a user created later under that name must not get the grant.
pub(crate) fn user_id_of(
    app: &App,
    tx: &dyn ReadTxn,
    given: &str,
    partition: Partition,
) -> Result<Option<String>, AwsError> {
    if app.iam.is_none() {
        return Ok(None);
    }
    // An ARN of another partition than the request's names no one here.
    let Some(arn) = stored_iam_arn(given, partition) else {
        return Err(AwsError::validation(format!("Invalid principal: {given} does not exist.")));
    };
    let arn = arn.as_str();
    // A role is bound to its unique id too: its sessions get the grant, a role made
    // again under the same name does not.
    if crate::iam::directory::role_arn_parts(arn).is_some() {
        return match crate::iam::directory::bound_role_id(tx, arn).map_err(store_error)? {
            Some(role_id) => Ok(Some(role_id)),
            None => Err(AwsError::validation(format!("Invalid principal: {arn} does not exist."))),
        };
    }
    let Some((account, name)) = coffer_auth::policy::user_arn_parts(arn) else { return Ok(None) };
    let record = tx.record(USER_KIND, &format!("{account}/{name}")).map_err(store_error)?;
    let user: Option<UserRecord> = record.and_then(|bytes| serde_json::from_slice(&bytes).ok());
    match user.filter(|u| u.principal().arn == arn) {
        Some(user) => Ok(Some(user.user_id)),
        None => Err(AwsError::validation(format!("Invalid principal: {arn} does not exist."))),
    }
}

/// A stored resource policy as GetResourcePolicy shows it: unique ids of users that still
/// exist shown as their ARNs again; those of deleted users stay ids, as AWS shows them.
/// They are shown in `partition`, the request's.
pub(crate) fn show_user_principals(
    tx: &dyn ReadTxn,
    text: String,
    partition: Partition,
) -> Result<String, AwsError> {
    if !text.contains("AIDA") && !text.contains("AROA") {
        return Ok(text);
    }
    let Ok(mut doc) = serde_json::from_str::<serde_json::Value>(&text) else { return Ok(text) };
    let mut users: Option<Vec<UserRecord>> = None;
    let changed = map_aws_principals(&mut doc, &mut |id| {
        if !is_unique_id(id) {
            return Ok(None);
        }
        if id.starts_with("AROA") {
            let arn = crate::iam::directory::role_arn_of_id(tx, id).map_err(store_error)?;
            return Ok(arn.map(|arn| partition.rewrite(&arn)));
        }
        if users.is_none() {
            users = Some(all_users(tx)?);
        }
        let found = users.iter().flatten().find(|u| u.user_id == id);
        Ok::<_, AwsError>(found.map(|u| partition.rewrite(&u.principal().arn)))
    })?;
    if !changed {
        return Ok(text);
    }
    serde_json::to_string(&doc).map_err(|_| AwsError::internal())
}

/// Every IAM user record (of every account: a policy may name users of others).
fn all_users(tx: &dyn ReadTxn) -> Result<Vec<UserRecord>, AwsError> {
    let mut out: Vec<UserRecord> = Vec::new();
    let mut pages = coffer_store::RecordPages::new(USER_KIND, "", 256);
    while let Some(page) = pages.next_page(tx).map_err(store_error)? {
        out.extend(page.iter().filter_map(|(_, bytes)| serde_json::from_slice(bytes).ok()));
    }
    Ok(out)
}

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
    app.write(ctx, |tx| {
        let mut meta = resolve_for_write(tx, ctx, &req.secret_id)?;
        refuse_if_scheduled(&meta)?;
        meta.resource_policy = Some(bind_user_principals(
            app,
            &*tx,
            &req.resource_policy,
            UNSUPPORTED_PRINCIPAL,
            ctx.scope.partition(),
        )?);
        tx.update_secret(&meta).map_err(store_error)?;
        crate::replication::propagate(app, tx, &meta)?;
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
        let meta = resolve_for_read(tx, ctx, &req.secret_id)?;
        refuse_if_scheduled(&meta)?;
        let partition = ctx.scope.partition();
        let resource_policy = meta
            .resource_policy
            .map(|text| show_user_principals(tx, text, partition))
            .transpose()?;
        Ok(wire::GetResourcePolicyResponse { arn: meta.arn, name: meta.name, resource_policy })
    })
}

pub fn delete_resource_policy(
    app: &App,
    ctx: &RequestContext,
    req: wire::SecretIdRequest,
) -> Result<wire::SecretRefResponse, AwsError> {
    names::validate_secret_id(&req.secret_id)?;
    app.write(ctx, |tx| {
        let mut meta = resolve_for_write(tx, ctx, &req.secret_id)?;
        refuse_if_scheduled(&meta)?;
        if meta.resource_policy.take().is_some() {
            tx.update_secret(&meta).map_err(store_error)?;
            crate::replication::propagate(app, tx, &meta)?;
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
