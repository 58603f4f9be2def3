//! Calls on another account's secret: how `--dev` reaches one (through its resource policy,
//! as AWS does), and AWS's refusal to read or write across accounts a value sealed with
//! the AWS managed key.

use crate::{App, RequestContext, auth, secrets};
use coffer_core::model::SecretMeta;
use coffer_core::{AwsError, Scope};
use coffer_wire::operation::{Operation, SecretsManagerOp as Sm};
use serde_json::Value;

/// AWS's answer to GetSecretValue or PutSecretValue from another account on a secret the
/// AWS managed key seals: that key's policy admits only callers of the owner's account.
const DEFAULT_KEY_ACROSS_ACCOUNTS: &str = "You can't access a secret from a different AWS account if you encrypt the secret with the default KMS service key.";

/// `--dev`: the scope a Secrets Manager call acts in when its SecretId is the ARN of
/// another account's secret (`None`: the caller's own). The secret's resource policy must
/// allow the call, as on AWS; without `--dev` authorization decides this (`auth::authorize`).
pub(crate) fn dev_owner(
    app: &App,
    caller: &Scope,
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
    let owner = auth::lookup_scope(id, caller);
    if owner == *caller {
        return Ok(None);
    }
    let meta = app.read(|tx| secrets::resolve(tx, &owner, id))?;
    auth::dev_cross_account(
        &caller.account,
        &caller.region,
        op.iam_action(),
        &owner,
        id,
        meta.as_ref(),
    )?;
    Ok(Some(owner))
}

/// Refuses to open or seal a value of `meta` for a caller of another account when the AWS
/// managed key seals it (AWS's InvalidRequestException, after the resource policy let the
/// call in, and before any version is looked at).
pub(crate) fn refuse_default_key(ctx: &RequestContext, meta: &SecretMeta) -> Result<(), AwsError> {
    if meta.scope.account != ctx.caller_account && sealed_by_managed_key(meta.kms_key_id.as_deref())
    {
        return Err(AwsError::invalid_request(DEFAULT_KEY_ACROSS_ACCOUNTS));
    }
    Ok(())
}

/// Whether a secret's KmsKeyId names the AWS managed key: none (the default), or its alias.
fn sealed_by_managed_key(key: Option<&str>) -> bool {
    key.is_none_or(auth::is_aws_managed_key)
}

#[cfg(test)]
mod tests {
    use super::sealed_by_managed_key;

    #[test]
    fn the_managed_key_is_the_default_or_its_alias() {
        assert!(sealed_by_managed_key(None));
        assert!(sealed_by_managed_key(Some("alias/aws/secretsmanager")));
        assert!(sealed_by_managed_key(Some(
            "arn:aws:kms:us-east-1:000000000000:alias/aws/secretsmanager"
        )));
        assert!(!sealed_by_managed_key(Some("alias/mine")));
        assert!(!sealed_by_managed_key(Some(
            "arn:aws:kms:us-east-1:000000000000:key/1234abcd-12ab-34cd-56ef-1234567890ab"
        )));
    }
}
