//! Secret and version metadata for tests (feature `testing`): the one plain secret and
//! version most store tests start from, so that a field added to `SecretMeta` or
//! `VersionMeta` is written in one place and not in every test file's literal.

use coffer_core::model::{Millis, Scope, SecretMeta, VersionMeta};

/// The creation time the fixtures use when a test does not name one.
pub const T0: Millis = 1_700_000_000_000;

/// The scope of most tests: account `111111111111` in `us-east-1`.
pub fn scope() -> Scope {
    Scope::new("111111111111", "us-east-1")
}

/// The ARN of secret `name` in `scope`, with the fixed suffix `-AbCdEf`.
pub fn arn(scope: &Scope, name: &str) -> String {
    format!("arn:aws:secretsmanager:{}:{}:secret:{name}-AbCdEf", scope.region, scope.account)
}

/// A plain secret `name` in `scope` created (and last changed) at `created_ms`; `seq`
/// is left at zero for the store to assign.
pub fn secret_in(scope: &Scope, name: &str, created_ms: Millis) -> SecretMeta {
    SecretMeta {
        scope: scope.clone(),
        arn: arn(scope, name),
        name: name.to_owned(),
        seq: 0,
        description: None,
        kms_key_id: None,
        tags: None,
        created_ms,
        last_changed_ms: created_ms,
        last_accessed_ms: None,
        deletion_ms: None,
        owning_service: None,
        secret_type: None,
        resource_policy: None,
        rotation: None,
        replication: Default::default(),
    }
}

/// A plain secret `name` in [`scope`], created at [`T0`].
pub fn secret(name: &str) -> SecretMeta {
    secret_in(&scope(), name, T0)
}

/// Version `id` holding `stages`, created at `created_ms`.
pub fn version_at(id: &str, stages: &[&str], created_ms: Millis) -> VersionMeta {
    VersionMeta {
        version_id: id.to_owned(),
        stages: stages.iter().map(|s| (*s).to_owned()).collect(),
        created_ms,
        last_accessed_ms: None,
        kms_key_id: None,
    }
}

/// Version `id` holding `stages`, created at [`T0`].
pub fn version(id: &str, stages: &[&str]) -> VersionMeta {
    version_at(id, stages, T0)
}
