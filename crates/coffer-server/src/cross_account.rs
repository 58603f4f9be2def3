//! Calls on another account's secret: how `--dev` reaches one (through its resource policy,
//! as AWS does), and AWS's refusal to read or write across accounts a value sealed with
//! the AWS managed key.

use crate::{App, RequestContext, auth, secrets};
use coffer_core::model::SecretMeta;
use coffer_core::{AwsError, Scope};
use coffer_kms::{Accepts, KeyManager};
use coffer_store::ReadTxn;
use coffer_wire::operation::{Operation, SecretsManagerOp as Sm};
use serde_json::Value;

/// AWS's answer to GetSecretValue or PutSecretValue from another account on a secret the
/// AWS managed key seals: that key's policy admits only callers of the owner's account.
const DEFAULT_KEY_ACROSS_ACCOUNTS: &str = "You can't access a secret from a different AWS account if you encrypt the secret with the default KMS service key.";

/// `--dev`: the scope a Secrets Manager call acts in when its SecretId is the ARN of
/// another account's secret (`None`: the caller's own, `ctx.scope`). The secret's resource
/// policy must allow the call, as on AWS ([`allow_in_dev`]); without `--dev` authorization
/// decides this (`auth::authorize`).
///
/// The secret is looked up here and again by the handler: deciding before any handler
/// runs keeps every operation covered, and the lookup happens only for another account's
/// ARN (a hash lookup on `--dev`'s memory store, whose reads share no snapshot, so the
/// handler could not safely reuse what this read found).
pub(crate) fn dev_owner(
    app: &App,
    ctx: &RequestContext,
    op: Operation,
    request: &Value,
) -> Result<Option<Scope>, AwsError> {
    let Operation::SecretsManager(op) = op else { return Ok(None) };
    if op == Sm::CreateSecret {
        return Ok(None);
    }
    let Some(id) = request.get("SecretId").and_then(Value::as_str) else { return Ok(None) };
    if !id.starts_with("arn:") {
        // A name is always the caller's own: nothing to parse on the common path.
        return Ok(None);
    }
    let owner = auth::lookup_scope(id, &ctx.scope);
    if owner == ctx.scope {
        return Ok(None);
    }
    let meta = app.read(|tx| secrets::resolve(tx, &owner, id))?;
    allow_in_dev(ctx, &owner, id, meta.as_ref(), op.iam_action())?;
    Ok(Some(owner))
}

/// `--dev`'s one decision on a call of `ctx`'s caller reaching `id` (as given) in
/// `owner`'s account, `meta` the secret found there (or none): the caller's own account
/// needs none, and another's is reached only through the secret's resource policy
/// allowing `action`, as on AWS. The single-secret calls are decided here before their
/// handler ([`dev_owner`]); each foreign secret of a batch is decided as it is read, by
/// the same account-root `Gate` that then also decides the keys that seal it (review 13).
/// Calls that authorization decided (a `Gate`) are not decided again here.
pub(crate) fn allow_in_dev(
    ctx: &RequestContext,
    owner: &Scope,
    id: &str,
    meta: Option<&SecretMeta>,
    action: &str,
) -> Result<(), AwsError> {
    if ctx.gate.is_some() || owner.account == ctx.caller_account {
        return Ok(());
    }
    auth::dev_cross_account(&ctx.caller_account, &owner.region, action, owner, id, meta)
}

/// Refuses to open or seal a value of `meta` for a caller of another account when the AWS
/// managed key seals it (AWS's InvalidRequestException, after the resource policy let the
/// call in, and before any version is looked at), however the secret names that key.
pub(crate) fn refuse_default_key(
    app: &App,
    tx: &dyn ReadTxn,
    ctx: &RequestContext,
    meta: &SecretMeta,
) -> Result<(), AwsError> {
    if meta.scope.account != ctx.caller_account && sealed_by_managed_key(app, tx, meta) {
        return Err(AwsError::invalid_request(DEFAULT_KEY_ACROSS_ACCOUNTS));
    }
    Ok(())
}

/// Whether the AWS managed key seals `meta`'s values: it names none (the default), the
/// key's alias, or the key itself by id or ARN (the key's record says who manages it).
fn sealed_by_managed_key(app: &App, tx: &dyn ReadTxn, meta: &SecretMeta) -> bool {
    let key = meta.kms_key_id.as_deref();
    names_managed_key_alias(key)
        || key.is_some_and(|key| {
            let found = app.keys.kms().find_key_shared(tx, &meta.scope, key, Accepts::KeyOrAlias);
            found.is_ok_and(|record| record.manager == KeyManager::Aws)
        })
}

/// Whether a secret's KmsKeyId names the AWS managed key without a lookup: none (the
/// default), or its alias.
fn names_managed_key_alias(key: Option<&str>) -> bool {
    key.is_none_or(auth::is_aws_managed_key)
}

#[cfg(test)]
mod tests {
    use super::names_managed_key_alias;

    #[test]
    fn the_managed_key_is_the_default_or_its_alias() {
        assert!(names_managed_key_alias(None));
        assert!(names_managed_key_alias(Some("alias/aws/secretsmanager")));
        assert!(names_managed_key_alias(Some(
            "arn:aws:kms:us-east-1:000000000000:alias/aws/secretsmanager"
        )));
        assert!(!names_managed_key_alias(Some("alias/mine")));
        assert!(!names_managed_key_alias(Some(
            "arn:aws:kms:us-east-1:000000000000:key/1234abcd-12ab-34cd-56ef-1234567890ab"
        )));
    }
}
