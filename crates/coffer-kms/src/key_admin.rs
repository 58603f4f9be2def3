//! Key administration beyond states and rotation: PutKeyPolicy and UpdateKeyDescription.
//! (GetKeyPolicy reads [`crate::KeyRecord::policy`]; the caller shows the default policy
//! for a key created without one.)

use crate::error::KmsError;
use crate::model::{KeyManager, KeyRecord, KeyState};
use crate::service::{Accepts, Kms, save_key};
use coffer_core::{ErrorCode, Scope};
use coffer_store::WriteTxn;

/// KMS's only key policy name.
pub const DEFAULT_POLICY_NAME: &str = "default";

/// The key policy KMS gives a key created without one in `scope`: the account's IAM
/// policies decide (its root named in the partition of the key's region).
pub fn default_key_policy(scope: &Scope) -> String {
    let root = scope.partition().arn("iam", "", &scope.account, "root");
    format!(
        r#"{{"Version":"2012-10-17","Id":"key-default-1","Statement":[{{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{{"AWS":"{root}"}},"Action":"kms:*","Resource":"*"}}]}}"#
    )
}

/// Refuses a policy name other than `default`, as KMS does.
pub fn check_policy_name(name: Option<&str>) -> Result<(), KmsError> {
    match name {
        None | Some(DEFAULT_POLICY_NAME) => Ok(()),
        Some(other) => Err(KmsError::rejected(
            ErrorCode::KmsNotFound,
            format!("No such policy exists: {other}"),
        )),
    }
}

/// A customer managed key not pending deletion, for a change of its policy or description.
fn changeable(key: &KeyRecord, action: &str) -> Result<(), KmsError> {
    if key.manager == KeyManager::Aws {
        return Err(KmsError::rejected(
            ErrorCode::AccessDenied,
            format!(
                "kms:{action} is not allowed on {}: it is an AWS managed key, which only AWS can change.",
                key.arn
            ),
        ));
    }
    if key.state == KeyState::PendingDeletion {
        return Err(KmsError::pending_deletion(&key.arn));
    }
    Ok(())
}

impl Kms {
    /// PutKeyPolicy: `policy` was already checked (parsed and principals bound) by the
    /// caller; text that is not a JSON object is refused here, never stored.
    pub fn put_key_policy(
        &self,
        tx: &mut dyn WriteTxn,
        scope: &Scope,
        key_id: &str,
        policy: &str,
    ) -> Result<(), KmsError> {
        let mut key = self.find_key(tx, scope, key_id, Accepts::KeyOnly)?;
        changeable(&key, "PutKeyPolicy")?;
        if !matches!(serde_json::from_str(policy), Ok(serde_json::Value::Object(_))) {
            return Err(KmsError::rejected(
                ErrorCode::MalformedPolicyDocument,
                "The new key policy will not allow you to update the key policy in the future.",
            ));
        }
        key.policy = Some(policy.to_string());
        save_key(tx, &key)
    }

    /// UpdateKeyDescription.
    pub fn update_key_description(
        &self,
        tx: &mut dyn WriteTxn,
        scope: &Scope,
        key_id: &str,
        description: &str,
    ) -> Result<(), KmsError> {
        let mut key = self.find_key(tx, scope, key_id, Accepts::KeyOnly)?;
        changeable(&key, "UpdateKeyDescription")?;
        key.description = description.to_string();
        save_key(tx, &key)
    }
}
