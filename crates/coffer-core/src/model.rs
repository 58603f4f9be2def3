//! The records a secret is made of: its metadata and the metadata of its versions.
//!
//! Values themselves are not here: they live sealed in the store and are only
//! opened by `coffer-crypto` on the way out of GetSecretValue.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Milliseconds since the Unix epoch. AWS compares dates at sub-second precision.
pub type Millis = i64;

/// One day in milliseconds: LastAccessedDate is truncated to it.
pub const DAY_MS: Millis = 86_400_000;

/// The staging label every readable secret has on exactly one version.
pub const AWSCURRENT: &str = "AWSCURRENT";
/// The label AWSCURRENT leaves behind when it moves.
pub const AWSPREVIOUS: &str = "AWSPREVIOUS";
/// The label rotation puts on the version it is preparing.
pub const AWSPENDING: &str = "AWSPENDING";

/// An account and region: the namespace every secret lives in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Scope {
    pub account: String,
    pub region: String,
}

impl Scope {
    pub fn new(account: impl Into<String>, region: impl Into<String>) -> Self {
        Scope { account: account.into(), region: region.into() }
    }

    /// The partition of the scope's region.
    pub fn partition(&self) -> crate::Partition {
        crate::Partition::of_region(&self.region)
    }

    /// The ARN of `resource` of `service` in this account and region, in its partition.
    pub fn arn(&self, service: &str, resource: &str) -> String {
        self.partition().arn(service, &self.region, &self.account, resource)
    }
}

/// A tag as AWS stores it. Keys are unique per secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// Everything about a secret except its versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretMeta {
    pub scope: Scope,
    pub arn: String,
    pub name: String,
    /// Insertion order inside the store; breaks ties between equal creation times.
    #[serde(default)]
    pub seq: i64,
    pub description: Option<String>,
    /// The key as the caller named it; `None` means the default `aws/secretsmanager`.
    pub kms_key_id: Option<String>,
    /// `None` until the secret is first tagged; `Some(vec![])` once every tag is removed.
    pub tags: Option<Vec<Tag>>,
    pub created_ms: Millis,
    pub last_changed_ms: Millis,
    /// Day-truncated time of the last GetSecretValue.
    pub last_accessed_ms: Option<Millis>,
    /// When a scheduled deletion will be carried out; `None` when not scheduled.
    pub deletion_ms: Option<Millis>,
    /// The AWS service that manages this secret, if any; such secrets refuse updates.
    pub owning_service: Option<String>,
    /// The external-secret partner type (`Type`), when one was given.
    pub secret_type: Option<String>,
    /// The resource policy document, as given.
    pub resource_policy: Option<String>,
    /// Rotation: `None` until RotateSecret first succeeds, so the rotation members of
    /// DescribeSecret stay absent on a secret whose rotation was never configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<Box<RotationConfig>>,
    /// Where the secret stands in multi-region replication; empty for a secret never
    /// replicated. Defaulted so metadata stored before replication existed still reads.
    #[serde(default, skip_serializing_if = "Replication::is_empty")]
    pub replication: Replication,
}

/// `RotationRules` as the caller gave them (checked by `schedule::Schedule::parse`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationRules {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automatically_after_days: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_expression: Option<String>,
}

/// A secret's rotation configuration and the state of its rotation, if one is running.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationConfig {
    /// False after CancelRotateSecret; the rest stays visible, as on AWS.
    pub enabled: bool,
    /// The rotation function (a Lambda ARN, or a built-in rotator's reserved ARN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda_arn: Option<String>,
    /// `None` when RotateSecret never gave rules (rotation only on demand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<RotationRules>,
    /// When the last rotation finished (LastRotatedDate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotated_ms: Option<Millis>,
    /// When rotation was (re)configured: the schedule's base before any rotation.
    #[serde(default)]
    pub configured_ms: Millis,
    /// The rotation being carried out, if any: survives a restart, so a rotation cut
    /// short by a crash is resumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<InFlight>,
    /// Managed external secrets: the role Secrets Manager assumes at the partner
    /// (`ExternalSecretRotationRoleArn`), stored and reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_role_arn: Option<String>,
    /// Managed external secrets: the partner's `ExternalSecretRotationMetadata`, (Key, Value)
    /// in the caller's order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_metadata: Option<Vec<(String, String)>>,
}

/// A rotation in progress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    /// The AWSPENDING version (the ClientRequestToken of the rotation).
    pub token: String,
    /// RotateImmediately=false: only testSecret, on a copy of the current value.
    #[serde(default)]
    pub test_only: bool,
    /// The index (0..4) of the next step to run.
    #[serde(default)]
    pub next_step: u8,
    /// Failed attempts of the whole rotation so far.
    #[serde(default)]
    pub attempts: u32,
    /// Not to be (re)tried before this time (backoff after a failure).
    #[serde(default)]
    pub not_before_ms: Millis,
    /// The node carrying it out and until when it holds it: another node (or this one
    /// after a restart) takes over once the claim has expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_by: Option<String>,
    #[serde(default)]
    pub claimed_until_ms: Millis,
}

/// A secret's part in replication: a primary names its replicas, a replica its primary's
/// region. A replica is a secret of its own region (ARN = the primary's with the region
/// changed), sealed under a key of that region.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replication {
    /// Set once the secret took part in replication: a primary's own region, or the
    /// region of a replica's primary. `None`: never replicated (no `PrimaryRegion` shown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_region: Option<String>,
    /// On a primary, each replica region in the order it was added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ReplicaState>,
}

impl Replication {
    pub fn is_empty(&self) -> bool {
        self.primary_region.is_none() && self.replicas.is_empty()
    }
}

/// What a primary knows of one of its replicas (its `ReplicationStatus` entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaState {
    pub region: String,
    /// The key as the caller named it; `None` is that region's `aws/secretsmanager`.
    pub kms_key_id: Option<String>,
    /// `InSync` or `Failed`: replication is synchronous here, so never `InProgress`.
    pub status: String,
    pub status_message: Option<String>,
    /// Day-truncated time of the last GetSecretValue of the replica.
    #[serde(default)]
    pub last_accessed_ms: Option<Millis>,
}

impl SecretMeta {
    pub fn is_scheduled_for_deletion(&self) -> bool {
        self.deletion_ms.is_some()
    }

    /// A replica of a secret in another region: it refuses every write.
    pub fn is_replica(&self) -> bool {
        self.replication.primary_region.as_deref().is_some_and(|p| p != self.scope.region)
    }
}

/// A version of a secret, without its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionMeta {
    pub version_id: String,
    /// Staging labels, kept sorted as AWS reports them. Empty means deprecated.
    pub stages: BTreeSet<String>,
    pub created_ms: Millis,
    /// Day-truncated time of the last GetSecretValue of this version.
    pub last_accessed_ms: Option<Millis>,
    /// The key that protects this version's value, as the caller named it; `None` is the default key.
    pub kms_key_id: Option<String>,
}

impl VersionMeta {
    /// A version with no staging label is deprecated: hidden unless asked for, and prunable.
    pub fn is_deprecated(&self) -> bool {
        self.stages.is_empty()
    }
}

/// Truncates a time to the start of its UTC day, as AWS does for LastAccessedDate.
pub fn truncate_to_day(ms: Millis) -> Millis {
    ms - ms.rem_euclid(DAY_MS)
}
