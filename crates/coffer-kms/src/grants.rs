//! Grants: a key's permissions given to a principal (its grantee) for some operations,
//! optionally bound to an encryption context, until retired or revoked. Authorization
//! reads them alongside the key policy ([`GrantRecord::allows`]).
//!
//! A grant is a store record `<account>/<region>/<key id>/<grant id>`; its grant token
//! names the key and grant and carries a random part the record keeps, so RetireGrant
//! by token finds the grant without a scan and a guessed token matches nothing.

use crate::ciphertext::EncryptionContext;
use crate::error::KmsError;
use crate::ids::KeyRef;
use crate::model::{KeyRecord, Page};
use crate::service::{Accepts, Kms};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coffer_core::model::Millis;
use coffer_core::{ErrorCode, Partition, Scope};
use coffer_store::{ReadTxn, WriteTxn};
use serde::{Deserialize, Serialize};

/// Store record kind of grants.
pub const GRANT_KIND: &str = "kms-grant";

/// A grant's encryption context constraint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantConstraints {
    /// The request's context must contain these pairs.
    pub encryption_context_subset: Option<EncryptionContext>,
    /// The request's context must be exactly these pairs.
    pub encryption_context_equals: Option<EncryptionContext>,
}

/// A grant on a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRecord {
    pub grant_id: String,
    pub key_id: String,
    pub key_arn: String,
    pub name: Option<String>,
    pub created_ms: Millis,
    pub grantee_principal: String,
    pub retiring_principal: Option<String>,
    /// `arn:<partition>:iam::<account>:root` of the account that created the grant.
    pub issuing_account: String,
    /// Operation names without the `kms:` prefix (`Decrypt`, `Sign`, ...).
    pub operations: Vec<String>,
    pub constraints: Option<GrantConstraints>,
    /// The random part of the grant's token.
    token_secret: String,
    /// The unique id of the IAM user the grantee ARN named when the grant was made: a
    /// user deleted and recreated under that name (a new id) does not inherit the grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grantee_user_id: Option<String>,
    /// The same, for the retiring principal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retiring_user_id: Option<String>,
}

/// What CreateGrant asks for.
#[derive(Debug, Clone, Default)]
pub struct NewGrant {
    pub grantee_principal: String,
    pub retiring_principal: Option<String>,
    pub operations: Vec<String>,
    pub constraints: Option<GrantConstraints>,
    pub name: Option<String>,
    /// The unique ids of the IAM users the grantee and retiring principal name, if any.
    pub grantee_user_id: Option<String>,
    pub retiring_user_id: Option<String>,
}

fn grant_prefix(scope: &Scope, key_id: &str) -> String {
    format!("{}/{}/{key_id}/", scope.account, scope.region)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn grant_not_found(grant_id: &str) -> KmsError {
    KmsError::rejected(ErrorCode::KmsNotFound, format!("Grant ID {grant_id} not found"))
}

fn invalid_token() -> KmsError {
    KmsError::rejected(ErrorCode::KmsInvalidGrantToken, "Invalid grant token")
}

impl GrantRecord {
    /// The grant token CreateGrant answers.
    pub fn token(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}/{}/{}", self.key_id, self.grant_id, self.token_secret))
    }

    /// Whether the grant names the caller (`arn`, unique id `user_id`) as its grantee.
    pub fn is_grantee(&self, arn: &str, user_id: &str) -> bool {
        if self.grantee_principal == arn {
            return self.grantee_user_id.as_deref().is_none_or(|id| id == user_id);
        }
        // A grant to a role applies to the role's sessions, as at AWS: the session ARN
        // names the role (without its path) and its user id begins with the role's id.
        session_of_role(arn, user_id, &self.grantee_principal, self.grantee_user_id.as_deref())
    }

    /// Whether the grant names the caller as its retiring principal.
    pub fn is_retiring(&self, arn: &str, user_id: &str) -> bool {
        self.retiring_principal.as_deref() == Some(arn)
            && self.retiring_user_id.as_deref().is_none_or(|id| id == user_id)
    }

    /// Whether the grant lets the caller (`arn`, `user_id`) do `action` (`kms:Decrypt`)
    /// with `context`.
    pub fn allows(
        &self,
        arn: &str,
        user_id: &str,
        action: &str,
        context: Option<&EncryptionContext>,
    ) -> bool {
        let Some(operation) = action.strip_prefix("kms:") else { return false };
        if !self.is_grantee(arn, user_id) || !self.operations.iter().any(|o| o == operation) {
            return false;
        }
        let Some(constraints) = &self.constraints else { return true };
        let empty = EncryptionContext::new();
        let context = context.unwrap_or(&empty);
        let subset_ok = constraints
            .encryption_context_subset
            .as_ref()
            .is_none_or(|want| want.iter().all(|(k, v)| context.get(k) == Some(v)));
        let equals_ok =
            constraints.encryption_context_equals.as_ref().is_none_or(|want| want == context);
        subset_ok && equals_ok
    }

    /// Whether the grant lets the caller create a grant of `operations` with
    /// `constraints`: as KMS allows a grant-authorized CreateGrant, only when this grant
    /// includes CreateGrant, the new one asks for no operation this grant lacks, and its
    /// constraints are at least as strict as this grant's (every encryption context the
    /// new grant accepts, this grant accepts too).
    pub fn allows_create_grant(
        &self,
        arn: &str,
        user_id: &str,
        operations: &[String],
        constraints: Option<&GrantConstraints>,
    ) -> bool {
        if !self.is_grantee(arn, user_id) || !self.operations.iter().any(|o| o == "CreateGrant") {
            return false;
        }
        if !operations.iter().all(|o| self.operations.contains(o)) {
            return false;
        }
        let Some(mine) = &self.constraints else { return true };
        let asked = constraints.cloned().unwrap_or_default();
        // Exactly these pairs: the new grant must require exactly them too.
        let equals_ok = mine
            .encryption_context_equals
            .as_ref()
            .is_none_or(|want| asked.encryption_context_equals.as_ref() == Some(want));
        // At least these pairs: every context the new grant accepts must hold them, so
        // its exact context, or else its own required pairs, must include them.
        let subset_ok = mine.encryption_context_subset.as_ref().is_none_or(|want| {
            let holds = |have: &EncryptionContext| want.iter().all(|(k, v)| have.get(k) == Some(v));
            match (&asked.encryption_context_equals, &asked.encryption_context_subset) {
                (Some(exact), _) => holds(exact),
                (None, Some(at_least)) => holds(at_least),
                (None, None) => false,
            }
        });
        equals_ok && subset_ok
    }
}

/// Whether `session_arn` (`arn:<partition>:sts::<account>:assumed-role/<role>/<session>`,
/// unique id `<role id>:<session>`) is a session of the role `role_arn`
/// (`arn:<partition>:iam::<account>:role[/path]/<role>`, the same partition), bound to
/// unique id `role_id` if known.
fn session_of_role(
    session_arn: &str,
    session_user_id: &str,
    role_arn: &str,
    role_id: Option<&str>,
) -> bool {
    let Some(partition) = Partition::of_arn(session_arn) else { return false };
    let head = |service: &str| format!("arn:{partition}:{service}::");
    let Some(session) = session_arn.strip_prefix(&head("sts")) else { return false };
    let Some(role) = role_arn.strip_prefix(&head("iam")) else { return false };
    let (Some((session_account, session_rest)), Some((role_account, role_rest))) =
        (session.split_once(':'), role.split_once(':'))
    else {
        return false;
    };
    let Some(session_role) =
        session_rest.strip_prefix("assumed-role/").and_then(|r| r.split_once('/')).map(|p| p.0)
    else {
        return false;
    };
    let Some(role_name) = role_rest.strip_prefix("role/").and_then(|r| r.rsplit('/').next()) else {
        return false;
    };
    session_account == role_account
        && session_role == role_name
        && role_id.is_none_or(|id| {
            session_user_id.strip_prefix(id).is_some_and(|rest| rest.starts_with(':'))
        })
}

fn decode(bytes: &[u8]) -> Result<GrantRecord, KmsError> {
    serde_json::from_slice(bytes).map_err(|e| KmsError::Internal(format!("unreadable grant: {e}")))
}

fn save(tx: &mut dyn WriteTxn, scope: &Scope, grant: &GrantRecord) -> Result<(), KmsError> {
    let key = format!("{}{}", grant_prefix(scope, &grant.key_id), grant.grant_id);
    tx.put_record(GRANT_KIND, &key, &serde_json::to_vec(grant).expect("grants serialize"))?;
    Ok(())
}

/// Every grant on `key`, oldest id first.
pub fn grants_of(tx: &dyn ReadTxn, key: &KeyRecord) -> Result<Vec<GrantRecord>, KmsError> {
    let rows = tx.records(GRANT_KIND, &grant_prefix(&key.scope, &key.key_id), None, usize::MAX)?;
    rows.iter().map(|(_, bytes)| decode(bytes)).collect()
}

/// Deletes every grant on `key` (the key itself is being deleted).
pub(crate) fn delete_grants_of(tx: &mut dyn WriteTxn, key: &KeyRecord) -> Result<(), KmsError> {
    let prefix = grant_prefix(&key.scope, &key.key_id);
    for (record_key, _) in tx.records(GRANT_KIND, &prefix, None, usize::MAX)? {
        tx.delete_record(GRANT_KIND, &record_key)?;
    }
    Ok(())
}

/// Operations any grant may carry, whatever its key.
const ANY_KEY_OPERATIONS: &[&str] = &["CreateGrant", "DescribeKey", "RetireGrant"];

/// The most pairs one encryption context constraint may hold, and the most characters (its
/// keys and values together), as the model's `Constraints` documentation gives them.
const MAX_CONSTRAINT_PAIRS: usize = 8;
const MAX_CONSTRAINT_CHARS: usize = 384;

/// The grant operations a key can do, beyond [`ANY_KEY_OPERATIONS`]: KMS's table of grant
/// operations by key type (symmetric encryption, asymmetric encryption, signing, HMAC, key
/// agreement).
fn operations_of(key: &KeyRecord) -> &'static [&'static str] {
    match key.key_usage.as_str() {
        "ENCRYPT_DECRYPT" if key.key_spec == "SYMMETRIC_DEFAULT" => &[
            "Decrypt",
            "Encrypt",
            "GenerateDataKey",
            "GenerateDataKeyPair",
            "GenerateDataKeyPairWithoutPlaintext",
            "GenerateDataKeyWithoutPlaintext",
            "ReEncryptFrom",
            "ReEncryptTo",
        ],
        "ENCRYPT_DECRYPT" => {
            &["Decrypt", "Encrypt", "GetPublicKey", "ReEncryptFrom", "ReEncryptTo"]
        }
        "SIGN_VERIFY" => &["GetPublicKey", "Sign", "Verify"],
        "GENERATE_VERIFY_MAC" => &["GenerateMac", "VerifyMac"],
        "KEY_AGREEMENT" => &["DeriveSharedSecret", "GetPublicKey"],
        _ => &[],
    }
}

/// CreateGrant's checks of what a grant asks for, against its key. The model's
/// documentation says each is a ValidationException ("the operation must be supported on
/// the KMS key ... If you try, KMS returns a ValidationError exception"; "You cannot use an
/// encryption context grant constraint ... with asymmetric KMS keys or HMAC KMS keys";
/// "up to 8 encryption context pairs", "cannot exceed 384 characters"). Only the
/// CreateGrant-only text is AWS's own, quoted from a real answer (ansible PR 31960); the
/// other texts are ours.
fn check_grant_terms(
    key: &KeyRecord,
    operations: &[String],
    constraints: Option<&GrantConstraints>,
) -> Result<(), KmsError> {
    if operations.iter().all(|op| op == "CreateGrant") {
        return Err(KmsError::validation(
            "Grants must not contain only the CreateGrant operation.",
        ));
    }
    let supported = operations_of(key);
    let unsupported: Vec<&str> = operations
        .iter()
        .map(String::as_str)
        .filter(|op| !ANY_KEY_OPERATIONS.contains(op) && !supported.contains(op))
        .collect();
    if !unsupported.is_empty() {
        return Err(KmsError::validation(format!(
            "Grant operations [{}] are not supported for a KMS key with KeyUsage {} and KeySpec {}.",
            unsupported.join(", "),
            key.key_usage,
            key.key_spec
        )));
    }
    let Some(constraints) = constraints else { return Ok(()) };
    let contexts = [&constraints.encryption_context_subset, &constraints.encryption_context_equals];
    let constrained = contexts.iter().any(|c| c.as_ref().is_some_and(|c| !c.is_empty()));
    if constrained && key.key_spec != "SYMMETRIC_DEFAULT" {
        return Err(KmsError::validation(format!(
            "Encryption context grant constraints are not supported for a KMS key with KeySpec {}.",
            key.key_spec
        )));
    }
    for context in contexts.into_iter().flatten() {
        if context.len() > MAX_CONSTRAINT_PAIRS {
            return Err(KmsError::validation(format!(
                "A grant constraint can include at most {MAX_CONSTRAINT_PAIRS} encryption context pairs."
            )));
        }
        let chars: usize = context.iter().map(|(k, v)| k.chars().count() + v.chars().count()).sum();
        if chars > MAX_CONSTRAINT_CHARS {
            return Err(KmsError::validation(format!(
                "The encryption context of a grant constraint cannot exceed {MAX_CONSTRAINT_CHARS} characters."
            )));
        }
    }
    Ok(())
}

impl Kms {
    /// CreateGrant. A grant with the same name and the same terms as an existing one is
    /// that grant, as KMS answers a retried call.
    pub fn create_grant(
        &self,
        tx: &mut dyn WriteTxn,
        scope: &Scope,
        key_id: &str,
        request: NewGrant,
        now: Millis,
    ) -> Result<GrantRecord, KmsError> {
        // Real KMS refuses an alias here by its form, in words of its own (see
        // `KmsError::aliases_not_supported`); the other key-only operations keep
        // NotFoundException, as moto's tests of them expect and no recording contradicts.
        let reference = match crate::ids::parse_key_ref(key_id)? {
            KeyRef::AliasName(_) | KeyRef::AliasArn { .. } => {
                return Err(KmsError::aliases_not_supported());
            }
            reference @ (KeyRef::KeyId(_) | KeyRef::KeyArn { .. }) => reference,
        };
        let key = self.find_key_referenced(tx, scope, key_id, reference)?;
        // AWS's key-state table: a grant is made only on a key that could be used
        // (DisabledException for a disabled key, KMSInvalidStateException pending import,
        // deletion or replica deletion).
        crate::service::require_enabled(&key)?;
        if request.operations.is_empty() {
            return Err(KmsError::validation("Operations must not be empty."));
        }
        check_grant_terms(&key, &request.operations, request.constraints.as_ref())?;
        let existing = grants_of(tx, &key)?;
        if request.name.is_some()
            && let Some(same) = existing.into_iter().find(|g| {
                g.name == request.name
                    && g.grantee_principal == request.grantee_principal
                    && g.retiring_principal == request.retiring_principal
                    && g.operations == request.operations
                    && g.constraints == request.constraints
            })
        {
            return Ok(same);
        }
        let grant = GrantRecord {
            grant_id: hex(&coffer_crypto::random_bytes(32)),
            key_id: key.key_id.clone(),
            key_arn: key.arn.clone(),
            name: request.name,
            created_ms: now,
            grantee_principal: request.grantee_principal,
            retiring_principal: request.retiring_principal,
            issuing_account: scope.partition().arn("iam", "", &scope.account, "root"),
            operations: request.operations,
            constraints: request.constraints,
            token_secret: hex(&coffer_crypto::random_bytes(16)),
            grantee_user_id: request.grantee_user_id,
            retiring_user_id: request.retiring_user_id,
        };
        save(tx, scope, &grant)?;
        Ok(grant)
    }

    /// ListGrants: the key's grants, optionally only one grant id or one grantee.
    #[allow(clippy::too_many_arguments)]
    pub fn list_grants(
        &self,
        tx: &dyn ReadTxn,
        scope: &Scope,
        key_id: &str,
        grant_id: Option<&str>,
        grantee: Option<&str>,
        marker: Option<&str>,
        limit: usize,
    ) -> Result<Page<GrantRecord>, KmsError> {
        let key = self.find_key(tx, scope, key_id, Accepts::KeyOnly)?;
        let all: Vec<GrantRecord> = grants_of(tx, &key)?
            .into_iter()
            .filter(|g| grant_id.is_none_or(|id| g.grant_id == id))
            .filter(|g| grantee.is_none_or(|p| g.grantee_principal == p))
            .collect();
        page(all, marker, limit)
    }

    /// ListRetirableGrants: every grant of the scope `principal` may retire.
    pub fn list_retirable_grants(
        &self,
        tx: &dyn ReadTxn,
        scope: &Scope,
        principal: &str,
        marker: Option<&str>,
        limit: usize,
    ) -> Result<Page<GrantRecord>, KmsError> {
        let prefix = format!("{}/{}/", scope.account, scope.region);
        let rows = tx.records(GRANT_KIND, &prefix, None, usize::MAX)?;
        let mut all = Vec::new();
        for (_, bytes) in rows {
            let grant = decode(&bytes)?;
            if grant.retiring_principal.as_deref() == Some(principal) {
                all.push(grant);
            }
        }
        page(all, marker, limit)
    }

    /// The grant a RetireGrant names, by token or by key and grant id.
    pub fn grant_to_retire(
        &self,
        tx: &dyn ReadTxn,
        scope: &Scope,
        token: Option<&str>,
        key_id: Option<&str>,
        grant_id: Option<&str>,
    ) -> Result<GrantRecord, KmsError> {
        if let Some(token) = token {
            let text = URL_SAFE_NO_PAD
                .decode(token)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(invalid_token)?;
            let mut parts = text.splitn(3, '/');
            let (Some(key), Some(id), Some(secret)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(invalid_token());
            };
            let record = tx.record(GRANT_KIND, &format!("{}{id}", grant_prefix(scope, key)))?;
            let grant = record.map(|b| decode(&b)).transpose()?.ok_or_else(invalid_token)?;
            if !coffer_crypto::SecretBytes::new(grant.token_secret.clone().into_bytes())
                .ct_eq(secret.as_bytes())
            {
                return Err(invalid_token());
            }
            return Ok(grant);
        }
        let (Some(key_id), Some(grant_id)) = (key_id, grant_id) else {
            return Err(KmsError::validation(
                "Either GrantToken or both KeyId and GrantId must be specified.",
            ));
        };
        let key = self.find_key(tx, scope, key_id, Accepts::KeyOnly)?;
        let record =
            tx.record(GRANT_KIND, &format!("{}{grant_id}", grant_prefix(scope, &key.key_id)))?;
        record.map(|b| decode(&b)).transpose()?.ok_or_else(|| grant_not_found(grant_id))
    }

    /// Deletes a grant (RetireGrant once the caller may, RevokeGrant).
    pub fn delete_grant(
        &self,
        tx: &mut dyn WriteTxn,
        scope: &Scope,
        grant: &GrantRecord,
    ) -> Result<(), KmsError> {
        let key = format!("{}{}", grant_prefix(scope, &grant.key_id), grant.grant_id);
        tx.delete_record(GRANT_KIND, &key)?;
        Ok(())
    }

    /// RevokeGrant: the key's grant `grant_id`.
    pub fn revoke_grant(
        &self,
        tx: &mut dyn WriteTxn,
        scope: &Scope,
        key_id: &str,
        grant_id: &str,
    ) -> Result<(), KmsError> {
        let grant = self.grant_to_retire(tx, scope, None, Some(key_id), Some(grant_id))?;
        self.delete_grant(tx, scope, &grant)
    }
}

/// One page of `all` from the position `marker` names.
fn page(
    all: Vec<GrantRecord>,
    marker: Option<&str>,
    limit: usize,
) -> Result<Page<GrantRecord>, KmsError> {
    let start = match marker {
        Some(m) => URL_SAFE_NO_PAD
            .decode(m)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.parse::<usize>().ok())
            .ok_or_else(|| KmsError::rejected(ErrorCode::KmsInvalidMarker, "Invalid marker"))?,
        None => 0,
    };
    let total = all.len();
    let items: Vec<GrantRecord> = all.into_iter().skip(start).take(limit).collect();
    let end = start + items.len();
    let next_marker = (end < total).then(|| URL_SAFE_NO_PAD.encode(end.to_string()));
    Ok(Page { items, next_marker })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(constraints: Option<GrantConstraints>) -> GrantRecord {
        GrantRecord {
            grant_id: "g".into(),
            key_id: "k".into(),
            key_arn: "arn".into(),
            name: None,
            created_ms: 0,
            grantee_principal: "arn:aws:iam::111122223333:user/app".into(),
            retiring_principal: None,
            issuing_account: "arn:aws:iam::111122223333:root".into(),
            operations: vec!["Decrypt".into()],
            constraints,
            token_secret: "s".into(),
            grantee_user_id: Some("AIDAAPP".into()),
            retiring_user_id: None,
        }
    }

    #[test]
    fn a_grant_allows_its_grantee_its_operations_within_its_constraints() {
        let me = "arn:aws:iam::111122223333:user/app";
        let ctx = |pairs: &[(&str, &str)]| -> EncryptionContext {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        assert!(grant(None).allows(me, "AIDAAPP", "kms:Decrypt", None));
        assert!(!grant(None).allows(me, "AIDAAPP", "kms:Encrypt", None));
        assert!(!grant(None).allows(
            "arn:aws:iam::111122223333:user/other",
            "AIDAAPP",
            "kms:Decrypt",
            None
        ));
        // The same name with another unique id is another user.
        assert!(!grant(None).allows(me, "AIDARECREATED", "kms:Decrypt", None));
        // A grant to a role reaches its sessions, bound to the role's id.
        let role = "arn:aws:iam::111122223333:role/team/app-role";
        let session = "arn:aws:sts::111122223333:assumed-role/app-role/s1";
        assert!(session_of_role(session, "AROAAPP:s1", role, Some("AROAAPP")));
        assert!(session_of_role(session, "AROAAPP:s1", role, None));
        assert!(!session_of_role(session, "AROARECREATED:s1", role, Some("AROAAPP")));
        assert!(!session_of_role(session, "AROAAPPX:s1", role, Some("AROAAPP")));
        let other_role = "arn:aws:sts::111122223333:assumed-role/app-role2/s1";
        assert!(!session_of_role(other_role, "AROAAPP:s1", role, None));
        let other_account = "arn:aws:sts::444455556666:assumed-role/app-role/s1";
        assert!(!session_of_role(other_account, "AROAAPP:s1", role, None));
        // Both in one partition, whichever it is.
        let cn_role = "arn:aws-cn:iam::111122223333:role/team/app-role";
        let cn_session = "arn:aws-cn:sts::111122223333:assumed-role/app-role/s1";
        assert!(session_of_role(cn_session, "AROAAPP:s1", cn_role, Some("AROAAPP")));
        assert!(!session_of_role(cn_session, "AROAAPP:s1", role, Some("AROAAPP")));
        assert!(!session_of_role(session, "AROAAPP:s1", cn_role, Some("AROAAPP")));
        assert!(!session_of_role(me, "AIDAAPP", role, None));
        let subset = GrantConstraints {
            encryption_context_subset: Some(ctx(&[("a", "1")])),
            ..Default::default()
        };
        assert!(grant(Some(subset.clone())).allows(
            me,
            "AIDAAPP",
            "kms:Decrypt",
            Some(&ctx(&[("a", "1"), ("b", "2")]))
        ));
        assert!(!grant(Some(subset)).allows(
            me,
            "AIDAAPP",
            "kms:Decrypt",
            Some(&ctx(&[("a", "2")]))
        ));
        let equals = GrantConstraints {
            encryption_context_equals: Some(ctx(&[("a", "1")])),
            ..Default::default()
        };
        assert!(grant(Some(equals.clone())).allows(
            me,
            "AIDAAPP",
            "kms:Decrypt",
            Some(&ctx(&[("a", "1")]))
        ));
        assert!(!grant(Some(equals)).allows(
            me,
            "AIDAAPP",
            "kms:Decrypt",
            Some(&ctx(&[("a", "1"), ("b", "2")]))
        ));
    }
}

#[cfg(test)]
mod create_grant_through_a_grant {
    use super::*;

    const ME: &str = "arn:aws:iam::111122223333:user/app";

    fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn ops(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn holding(operations: &[&str], constraints: Option<GrantConstraints>) -> GrantRecord {
        GrantRecord {
            grant_id: "g".into(),
            key_id: "k".into(),
            key_arn: "arn".into(),
            name: None,
            created_ms: 0,
            grantee_principal: ME.into(),
            retiring_principal: None,
            issuing_account: "arn:aws:iam::111122223333:root".into(),
            operations: ops(operations),
            constraints,
            token_secret: "s".into(),
            grantee_user_id: Some("AIDAAPP".into()),
            retiring_user_id: None,
        }
    }

    #[test]
    fn only_the_same_or_fewer_operations() {
        let g = holding(&["Encrypt", "CreateGrant"], None);
        assert!(g.allows_create_grant(ME, "AIDAAPP", &ops(&["Encrypt"]), None));
        assert!(g.allows_create_grant(ME, "AIDAAPP", &ops(&["Encrypt", "CreateGrant"]), None));
        assert!(!g.allows_create_grant(ME, "AIDAAPP", &ops(&["Decrypt"]), None));
        assert!(!g.allows_create_grant(ME, "AIDAAPP", &ops(&["Encrypt", "Decrypt"]), None));
        assert!(!g.allows_create_grant(ME, "AIDAOTHER", &ops(&["Encrypt"]), None));
        let without = holding(&["Encrypt", "Decrypt"], None);
        assert!(!without.allows_create_grant(ME, "AIDAAPP", &ops(&["Encrypt"]), None));
    }

    #[test]
    fn only_equally_strict_or_stricter_constraints() {
        let subset = |pairs| GrantConstraints {
            encryption_context_subset: Some(ctx(pairs)),
            ..Default::default()
        };
        let equals = |pairs| GrantConstraints {
            encryption_context_equals: Some(ctx(pairs)),
            ..Default::default()
        };
        let d = ops(&["Decrypt"]);
        let g = holding(&["Decrypt", "CreateGrant"], Some(subset(&[("app", "a")])));
        assert!(!g.allows_create_grant(ME, "AIDAAPP", &d, None));
        assert!(!g.allows_create_grant(ME, "AIDAAPP", &d, Some(&subset(&[("other", "b")]))));
        assert!(g.allows_create_grant(ME, "AIDAAPP", &d, Some(&subset(&[("app", "a")]))));
        let more = subset(&[("app", "a"), ("env", "prod")]);
        assert!(g.allows_create_grant(ME, "AIDAAPP", &d, Some(&more)));
        assert!(g.allows_create_grant(ME, "AIDAAPP", &d, Some(&equals(&[("app", "a")]))));
        assert!(!g.allows_create_grant(ME, "AIDAAPP", &d, Some(&equals(&[("app", "b")]))));
        let exact = holding(&["Decrypt", "CreateGrant"], Some(equals(&[("app", "a")])));
        assert!(exact.allows_create_grant(ME, "AIDAAPP", &d, Some(&equals(&[("app", "a")]))));
        assert!(!exact.allows_create_grant(ME, "AIDAAPP", &d, Some(&subset(&[("app", "a")]))));
        assert!(!exact.allows_create_grant(ME, "AIDAAPP", &d, None));
    }
}
