//! Every operation of every service Coffer speaks, as a type: one table, written once,
//! gives each its service, wire name, IAM action, whether it only reads, its CloudTrail
//! event source and its SigV4 signing name. Everything else matches on [`Operation`];
//! no operation name is compared as a string outside this table.
//!
//! The Secrets Manager and KMS lists are the operations of the embedded service models
//! (a test holds them equal), so an operation Coffer does not implement yet is still
//! known: it answers `NotImplemented`, never `UnknownOperation`.

/// A service reachable on Coffer's endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    SecretsManager,
    Kms,
    CloudTrail,
    Sts,
    Iam,
}

impl Service {
    /// The name SigV4 credential scopes and IAM actions use (`secretsmanager`, `kms`, ...).
    pub fn signing_name(self) -> &'static str {
        match self {
            Service::SecretsManager => "secretsmanager",
            Service::Kms => "kms",
            Service::CloudTrail => "cloudtrail",
            Service::Sts => "sts",
            Service::Iam => "iam",
        }
    }

    /// CloudTrail's `eventSource` of the service's calls.
    pub fn event_source(self) -> &'static str {
        match self {
            Service::SecretsManager => "secretsmanager.amazonaws.com",
            Service::Kms => "kms.amazonaws.com",
            Service::CloudTrail => "cloudtrail.amazonaws.com",
            Service::Sts => "sts.amazonaws.com",
            Service::Iam => "iam.amazonaws.com",
        }
    }
}

/// Whether an operation changes anything (CloudTrail's `readOnly`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
}

macro_rules! operations {
    ($(
        $(#[$doc:meta])*
        $service:ident, $iam:literal => $enum:ident { $($op:ident: $access:ident),* $(,)? }
    )*) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
            pub enum $enum { $($op),* }

            impl $enum {
                /// Every operation of the service, in the table's order.
                pub const ALL: &'static [$enum] = &[$($enum::$op),*];

                /// The wire name (`X-Amz-Target`'s operation, the query protocol's `Action`).
                pub fn name(self) -> &'static str {
                    match self { $($enum::$op => stringify!($op)),* }
                }

                /// The IAM action that authorizes it.
                pub fn iam_action(self) -> &'static str {
                    match self { $($enum::$op => concat!($iam, ":", stringify!($op))),* }
                }

                /// Whether it only reads (CloudTrail's `readOnly`).
                pub fn read_only(self) -> bool {
                    match self { $($enum::$op => Access::$access == Access::Read),* }
                }

                /// The operation a wire name names, if the service has it.
                pub fn from_name(name: &str) -> Option<$enum> {
                    match name { $(stringify!($op) => Some($enum::$op),)* _ => None }
                }
            }

            impl From<$enum> for Operation {
                fn from(op: $enum) -> Operation {
                    Operation::$service(op)
                }
            }
        )*

        /// One operation of one service.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Operation { $($service($enum)),* }

        impl Operation {
            pub fn service(self) -> Service {
                match self { $(Operation::$service(_) => Service::$service),* }
            }

            pub fn name(self) -> &'static str {
                match self { $(Operation::$service(op) => op.name()),* }
            }

            pub fn iam_action(self) -> &'static str {
                match self { $(Operation::$service(op) => op.iam_action()),* }
            }

            pub fn read_only(self) -> bool {
                match self { $(Operation::$service(op) => op.read_only()),* }
            }

            /// The operation `name` names in `service`.
            pub fn from_name(service: Service, name: &str) -> Option<Operation> {
                match service { $(Service::$service => $enum::from_name(name).map(Operation::$service)),* }
            }
        }
    };
}

impl Operation {
    pub fn event_source(self) -> &'static str {
        self.service().event_source()
    }

    pub fn signing_name(self) -> &'static str {
        self.service().signing_name()
    }
}

/// A request quota: the bucket an operation's calls are counted in, per account and region.
///
/// Secrets Manager counts several operations together (its published quotas are combined
/// rates); KMS counts its cryptographic operations together and every other operation on
/// its own. The defaults are AWS's published per-second quotas (docs/design/operations.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaGroup {
    /// GetSecretValue and DescribeSecret.
    SecretsManagerGet,
    /// PutSecretValue, UpdateSecret, UpdateSecretVersionStage and the replication calls.
    SecretsManagerUpdate,
    /// Delete/Get/Put/ValidateResourcePolicy.
    SecretsManagerResourcePolicy,
    SecretsManagerCreate,
    SecretsManagerDelete,
    SecretsManagerRestore,
    /// TagResource and UntagResource.
    SecretsManagerTag,
    SecretsManagerList,
    SecretsManagerListVersions,
    /// RotateSecret and CancelRotateSecret.
    SecretsManagerRotate,
    SecretsManagerRandomPassword,
    SecretsManagerBatchGet,
    /// Every KMS cryptographic operation, shared.
    KmsCryptographic,
    /// A KMS operation that is not cryptographic: its own quota.
    Kms(KmsOp),
    /// Every STS operation, shared (AWS's STS request quota counts them together).
    Sts,
    /// Every IAM API operation, shared (AWS publishes no IAM rates; see `default_rate`).
    Iam,
}

impl QuotaGroup {
    /// Every group, for `--quota` parsing and listings: those the operations count in, each
    /// once, in the order of the operation table.
    pub fn all() -> impl Iterator<Item = QuotaGroup> {
        let mut seen = Vec::new();
        SecretsManagerOp::ALL
            .iter()
            .map(|op| op.quota_group())
            .chain(KmsOp::ALL.iter().map(|op| op.quota_group()))
            .chain([QuotaGroup::Sts, QuotaGroup::Iam])
            .filter(move |group| {
                let new = !seen.contains(group);
                seen.push(*group);
                new
            })
    }

    /// The name `--quota NAME=RATE` uses: `secretsmanager-create`, `kms-cryptographic`,
    /// `kms-CreateKey` (a KMS operation's own quota is named after it).
    pub fn name(self) -> std::borrow::Cow<'static, str> {
        use QuotaGroup::*;
        std::borrow::Cow::Borrowed(match self {
            SecretsManagerGet => "secretsmanager-get",
            SecretsManagerUpdate => "secretsmanager-update",
            SecretsManagerResourcePolicy => "secretsmanager-resource-policy",
            SecretsManagerCreate => "secretsmanager-create",
            SecretsManagerDelete => "secretsmanager-delete",
            SecretsManagerRestore => "secretsmanager-restore",
            SecretsManagerTag => "secretsmanager-tag",
            SecretsManagerList => "secretsmanager-list",
            SecretsManagerListVersions => "secretsmanager-list-versions",
            SecretsManagerRotate => "secretsmanager-rotate",
            SecretsManagerRandomPassword => "secretsmanager-random-password",
            SecretsManagerBatchGet => "secretsmanager-batch-get",
            KmsCryptographic => "kms-cryptographic",
            Sts => "sts",
            Iam => "iam",
            Kms(op) => return std::borrow::Cow::Owned(format!("kms-{}", op.name())),
        })
    }

    /// The group `--quota` names, if any.
    pub fn from_name(name: &str) -> Option<QuotaGroup> {
        QuotaGroup::all().find(|g| g.name() == name)
    }

    /// AWS's default quota, in requests per second.
    pub fn default_rate(self) -> u32 {
        use QuotaGroup::*;
        match self {
            SecretsManagerGet => 10_000,
            SecretsManagerList | SecretsManagerBatchGet => 100,
            SecretsManagerUpdate
            | SecretsManagerResourcePolicy
            | SecretsManagerCreate
            | SecretsManagerDelete
            | SecretsManagerRestore
            | SecretsManagerTag
            | SecretsManagerListVersions
            | SecretsManagerRotate
            | SecretsManagerRandomPassword => 50,
            KmsCryptographic => 5_500,
            Kms(op) => op.own_quota(),
            // AWS STS's default request quota per account and region.
            Sts => 600,
            // AWS throttles its IAM API without publishing the rates; Coffer's default is
            // that of Secrets Manager's listings, ample for automation (Terraform, CI).
            Iam => 100,
        }
    }
}

impl SecretsManagerOp {
    /// The quota the operation's calls count against.
    pub fn quota_group(self) -> QuotaGroup {
        use QuotaGroup as Q;
        use SecretsManagerOp::*;
        match self {
            GetSecretValue | DescribeSecret => Q::SecretsManagerGet,
            PutSecretValue
            | UpdateSecret
            | UpdateSecretVersionStage
            | RemoveRegionsFromReplication
            | ReplicateSecretToRegions
            | StopReplicationToReplica => Q::SecretsManagerUpdate,
            DeleteResourcePolicy
            | GetResourcePolicy
            | PutResourcePolicy
            | ValidateResourcePolicy => Q::SecretsManagerResourcePolicy,
            CreateSecret => Q::SecretsManagerCreate,
            DeleteSecret => Q::SecretsManagerDelete,
            RestoreSecret => Q::SecretsManagerRestore,
            TagResource | UntagResource => Q::SecretsManagerTag,
            ListSecrets => Q::SecretsManagerList,
            ListSecretVersionIds => Q::SecretsManagerListVersions,
            RotateSecret | CancelRotateSecret => Q::SecretsManagerRotate,
            GetRandomPassword => Q::SecretsManagerRandomPassword,
            BatchGetSecretValue => Q::SecretsManagerBatchGet,
        }
    }
}

impl KmsOp {
    /// The quota the operation's calls count against: the shared cryptographic one, or
    /// its own.
    pub fn quota_group(self) -> QuotaGroup {
        use KmsOp::*;
        match self {
            Decrypt
            | DeriveSharedSecret
            | Encrypt
            | GenerateDataKey
            | GenerateDataKeyPair
            | GenerateDataKeyPairWithoutPlaintext
            | GenerateDataKeyWithoutPlaintext
            | GenerateMac
            | GenerateRandom
            | ReEncrypt
            | Sign
            | Verify
            | VerifyMac => QuotaGroup::KmsCryptographic,
            _ => QuotaGroup::Kms(self),
        }
    }

    /// AWS's default per-second quota of a non-cryptographic operation (KMS developer
    /// guide, "Request quotas").
    fn own_quota(self) -> u32 {
        use KmsOp::*;
        match self {
            DescribeKey | GetPublicKey => 2_000,
            GetKeyPolicy | GetKeyRotationStatus | GetKeyLastUsage => 1_000,
            ListAliases | ListGrants | ListKeyPolicies | ListKeyRotations | ListKeys
            | ListResourceTags | ListRetirableGrants => 100,
            CreateKey | CreateGrant => 50,
            RetireGrant | RevokeGrant => 30,
            PutKeyPolicy => 15,
            TagResource => 10,
            GetParametersForImport => 1,
            CancelKeyDeletion
            | ConnectCustomKeyStore
            | CreateAlias
            | CreateCustomKeyStore
            | DeleteAlias
            | DeleteCustomKeyStore
            | DeleteImportedKeyMaterial
            | DescribeCustomKeyStores
            | DisableKey
            | DisableKeyRotation
            | DisconnectCustomKeyStore
            | EnableKey
            | EnableKeyRotation
            | ImportKeyMaterial
            | ReplicateKey
            | RotateKeyOnDemand
            | ScheduleKeyDeletion
            | UntagResource
            | UpdateAlias
            | UpdateCustomKeyStore
            | UpdateKeyDescription
            | UpdatePrimaryRegion => 5,
            // The cryptographic operations share the cryptographic quota instead.
            Decrypt
            | DeriveSharedSecret
            | Encrypt
            | GenerateDataKey
            | GenerateDataKeyPair
            | GenerateDataKeyPairWithoutPlaintext
            | GenerateDataKeyWithoutPlaintext
            | GenerateMac
            | GenerateRandom
            | ReEncrypt
            | Sign
            | Verify
            | VerifyMac => QuotaGroup::KmsCryptographic.default_rate(),
        }
    }
}

impl Operation {
    /// The request quota the call counts against; `None` for the service Coffer does
    /// not throttle (its own CloudTrail's LookupEvents).
    pub fn quota_group(self) -> Option<QuotaGroup> {
        match self {
            Operation::SecretsManager(op) => Some(op.quota_group()),
            Operation::Kms(op) => Some(op.quota_group()),
            Operation::Sts(_) => Some(QuotaGroup::Sts),
            Operation::Iam(_) => Some(QuotaGroup::Iam),
            Operation::CloudTrail(_) => None,
        }
    }
}

operations! {
    /// The Secrets Manager API (`secretsmanager.<Op>`).
    SecretsManager, "secretsmanager" => SecretsManagerOp {
        BatchGetSecretValue: Read,
        CancelRotateSecret: Write,
        CreateSecret: Write,
        DeleteResourcePolicy: Write,
        DeleteSecret: Write,
        DescribeSecret: Read,
        GetRandomPassword: Read,
        GetResourcePolicy: Read,
        GetSecretValue: Read,
        ListSecretVersionIds: Read,
        ListSecrets: Read,
        PutResourcePolicy: Write,
        PutSecretValue: Write,
        RemoveRegionsFromReplication: Write,
        ReplicateSecretToRegions: Write,
        RestoreSecret: Write,
        RotateSecret: Write,
        StopReplicationToReplica: Write,
        TagResource: Write,
        UntagResource: Write,
        UpdateSecret: Write,
        UpdateSecretVersionStage: Write,
        ValidateResourcePolicy: Read,
    }

    /// The KMS API (`TrentService.<Op>`). The cryptographic operations change no
    /// resource, so CloudTrail counts them as reads.
    Kms, "kms" => KmsOp {
        CancelKeyDeletion: Write,
        ConnectCustomKeyStore: Write,
        CreateAlias: Write,
        CreateCustomKeyStore: Write,
        CreateGrant: Write,
        CreateKey: Write,
        Decrypt: Read,
        DeleteAlias: Write,
        DeleteCustomKeyStore: Write,
        DeleteImportedKeyMaterial: Write,
        DeriveSharedSecret: Read,
        DescribeCustomKeyStores: Read,
        DescribeKey: Read,
        DisableKey: Write,
        DisableKeyRotation: Write,
        DisconnectCustomKeyStore: Write,
        EnableKey: Write,
        EnableKeyRotation: Write,
        Encrypt: Read,
        GenerateDataKey: Read,
        GenerateDataKeyPair: Read,
        GenerateDataKeyPairWithoutPlaintext: Read,
        GenerateDataKeyWithoutPlaintext: Read,
        GenerateMac: Read,
        GenerateRandom: Read,
        GetKeyLastUsage: Read,
        GetKeyPolicy: Read,
        GetKeyRotationStatus: Read,
        GetParametersForImport: Read,
        GetPublicKey: Read,
        ImportKeyMaterial: Write,
        ListAliases: Read,
        ListGrants: Read,
        ListKeyPolicies: Read,
        ListKeyRotations: Read,
        ListKeys: Read,
        ListResourceTags: Read,
        ListRetirableGrants: Read,
        PutKeyPolicy: Write,
        ReEncrypt: Read,
        ReplicateKey: Write,
        RetireGrant: Write,
        RevokeGrant: Write,
        RotateKeyOnDemand: Write,
        ScheduleKeyDeletion: Write,
        Sign: Read,
        TagResource: Write,
        UntagResource: Write,
        UpdateAlias: Write,
        UpdateCustomKeyStore: Write,
        UpdateKeyDescription: Write,
        UpdatePrimaryRegion: Write,
        Verify: Read,
        VerifyMac: Read,
    }

    /// CloudTrail, over Coffer's own trail.
    CloudTrail, "cloudtrail" => CloudTrailOp {
        LookupEvents: Read,
    }

    /// STS (query protocol).
    Sts, "sts" => StsOp {
        AssumeRole: Read,
        AssumeRoleWithWebIdentity: Read,
        GetAccessKeyInfo: Read,
        GetCallerIdentity: Read,
        GetFederationToken: Read,
        GetSessionToken: Read,
    }

    /// IAM (query protocol, `Version=2010-05-08`): the operations Coffer implements.
    Iam, "iam" => IamOp {
        AddUserToGroup: Write,
        AttachGroupPolicy: Write,
        AttachRolePolicy: Write,
        AttachUserPolicy: Write,
        CreateAccessKey: Write,
        CreateGroup: Write,
        CreateOpenIDConnectProvider: Write,
        CreatePolicy: Write,
        CreatePolicyVersion: Write,
        CreateRole: Write,
        CreateUser: Write,
        DeleteAccessKey: Write,
        DeleteGroup: Write,
        DeleteGroupPolicy: Write,
        DeleteOpenIDConnectProvider: Write,
        DeletePolicy: Write,
        DeletePolicyVersion: Write,
        DeleteRole: Write,
        DeleteRolePolicy: Write,
        DeleteUser: Write,
        DeleteUserPolicy: Write,
        DetachGroupPolicy: Write,
        DetachRolePolicy: Write,
        DetachUserPolicy: Write,
        GetAccessKeyLastUsed: Read,
        GetGroup: Read,
        GetGroupPolicy: Read,
        GetOpenIDConnectProvider: Read,
        GetPolicy: Read,
        GetPolicyVersion: Read,
        GetRole: Read,
        GetRolePolicy: Read,
        GetUser: Read,
        GetUserPolicy: Read,
        ListAccessKeys: Read,
        ListAttachedGroupPolicies: Read,
        ListAttachedRolePolicies: Read,
        ListAttachedUserPolicies: Read,
        ListEntitiesForPolicy: Read,
        ListGroupPolicies: Read,
        ListGroups: Read,
        ListGroupsForUser: Read,
        ListOpenIDConnectProviders: Read,
        ListPolicies: Read,
        ListPolicyVersions: Read,
        ListRolePolicies: Read,
        ListRoleTags: Read,
        ListRoles: Read,
        ListUserPolicies: Read,
        ListUserTags: Read,
        ListUsers: Read,
        PutGroupPolicy: Write,
        PutRolePolicy: Write,
        PutUserPolicy: Write,
        RemoveUserFromGroup: Write,
        SetDefaultPolicyVersion: Write,
        TagRole: Write,
        TagUser: Write,
        UntagRole: Write,
        UntagUser: Write,
        UpdateAccessKey: Write,
        UpdateAssumeRolePolicy: Write,
        UpdateGroup: Write,
        UpdateRole: Write,
        UpdateRoleDescription: Write,
        UpdateUser: Write,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ServiceModel;

    #[test]
    fn the_table_holds_exactly_the_operations_of_the_embedded_models() {
        for (model, names) in [
            (
                ServiceModel::secretsmanager(),
                SecretsManagerOp::ALL.iter().map(|op| op.name()).collect::<Vec<_>>(),
            ),
            (ServiceModel::kms(), KmsOp::ALL.iter().map(|op| op.name()).collect()),
        ] {
            for name in &names {
                assert!(model.has_operation(name), "{name} is not in the model");
            }
            assert_eq!(model.operation_names().count(), names.len());
        }
    }

    #[test]
    fn every_quota_group_has_a_unique_name_that_parses_back_and_a_rate() {
        let groups: Vec<_> = QuotaGroup::all().collect();
        let names: std::collections::HashSet<_> = groups.iter().map(|g| g.name()).collect();
        assert_eq!(names.len(), groups.len());
        for g in groups {
            assert_eq!(QuotaGroup::from_name(&g.name()), Some(g));
            assert!(g.default_rate() > 0);
        }
        assert_eq!(QuotaGroup::from_name("secretsmanager-nothing"), None);
    }

    #[test]
    fn operations_count_against_aws_published_quotas() {
        use QuotaGroup as Q;
        let sm = |op: SecretsManagerOp| op.quota_group();
        assert_eq!(sm(SecretsManagerOp::GetSecretValue), sm(SecretsManagerOp::DescribeSecret));
        assert_eq!(sm(SecretsManagerOp::GetSecretValue).default_rate(), 10_000);
        assert_eq!(sm(SecretsManagerOp::UpdateSecret), Q::SecretsManagerUpdate);
        assert_eq!(sm(SecretsManagerOp::CreateSecret).default_rate(), 50);
        assert_eq!(sm(SecretsManagerOp::ListSecrets).default_rate(), 100);
        assert_eq!(KmsOp::Encrypt.quota_group(), KmsOp::GenerateDataKey.quota_group());
        assert_eq!(KmsOp::Decrypt.quota_group().default_rate(), 5_500);
        assert_eq!(KmsOp::CreateKey.quota_group().name(), "kms-CreateKey");
        assert_eq!(KmsOp::DescribeKey.quota_group().default_rate(), 2_000);
        assert_eq!(KmsOp::CreateAlias.quota_group().default_rate(), 5);
        let lookup = Operation::from(CloudTrailOp::LookupEvents);
        assert_eq!(lookup.quota_group(), None);
        // STS and the IAM API are counted too, each service in one bucket.
        let sts = Operation::from(StsOp::GetCallerIdentity).quota_group();
        assert_eq!(sts, Operation::from(StsOp::AssumeRole).quota_group());
        assert_eq!(
            sts.map(|g| (g.name().into_owned(), g.default_rate())),
            Some(("sts".into(), 600))
        );
        let iam = Operation::from(IamOp::CreateUser).quota_group();
        assert_eq!(iam, Operation::from(IamOp::ListUsers).quota_group());
        assert_eq!(iam.map(|g| g.name().into_owned()), Some("iam".into()));
        assert_eq!(QuotaGroup::from_name("iam"), Some(QuotaGroup::Iam));
    }

    #[test]
    fn an_operation_knows_its_action_access_and_service() {
        let get = Operation::from_name(Service::SecretsManager, "GetSecretValue").unwrap();
        assert_eq!(get, Operation::SecretsManager(SecretsManagerOp::GetSecretValue));
        assert_eq!(get.iam_action(), "secretsmanager:GetSecretValue");
        assert!(get.read_only());
        assert_eq!(get.event_source(), "secretsmanager.amazonaws.com");
        let tag = Operation::from_name(Service::Kms, "TagResource").unwrap();
        assert_eq!(tag, Operation::Kms(KmsOp::TagResource));
        assert_eq!(tag.iam_action(), "kms:TagResource");
        assert!(!tag.read_only());
        assert_eq!(tag.signing_name(), "kms");
        assert!(Operation::from_name(Service::Kms, "GetSecretValue").is_none());
        assert!(Operation::from_name(Service::SecretsManager, "getSecretValue").is_none());
        let lookup = Operation::from(CloudTrailOp::LookupEvents);
        assert_eq!(lookup.iam_action(), "cloudtrail:LookupEvents");
        assert!(Operation::from(StsOp::GetCallerIdentity).read_only());
    }

    #[test]
    fn reads_and_writes_match_cloudtrail() {
        for op in ["GetSecretValue", "ListSecrets", "BatchGetSecretValue", "ValidateResourcePolicy"]
        {
            assert!(SecretsManagerOp::from_name(op).unwrap().read_only(), "{op}");
        }
        for op in ["CreateSecret", "PutSecretValue", "DeleteSecret", "TagResource"] {
            assert!(!SecretsManagerOp::from_name(op).unwrap().read_only(), "{op}");
        }
        for op in ["DescribeKey", "Decrypt", "GenerateDataKey", "ReEncrypt", "Sign"] {
            assert!(KmsOp::from_name(op).unwrap().read_only(), "{op}");
        }
        for op in ["CreateKey", "ScheduleKeyDeletion", "PutKeyPolicy", "CreateGrant"] {
            assert!(!KmsOp::from_name(op).unwrap().read_only(), "{op}");
        }
    }
}
