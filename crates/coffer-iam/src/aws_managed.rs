//! AWS managed policies: a small, curated set of the `arn:aws:iam::aws:policy/...` policies
//! that exist in every account and partition, with AWS's documents, default version ids,
//! descriptions, paths, ids and dates. Test code and Terraform written for AWS (and for
//! moto or LocalStack, which ship AWS's managed policies) attach them, read them and name
//! them as session policies; an unknown one is still `NoSuchEntity`.
//!
//! They are never stored: [`named`] gives one by its ARN as IAM's records keep ARNs (in
//! `aws`), and the directory's policy lookup (`directory::load_policy`) answers it for
//! every account, so attaching one, counting its attachments in an account, reading it
//! (GetPolicy, GetPolicyVersion) and deciding requests with it (the default version's
//! document, through the evaluator like any customer managed policy's) take the same code.
//! They are read-only: the IAM API refuses changes to them (`iam_api`), and the
//! directory's own changes never find them.
//!
//! Where the data comes from (cited per policy below):
//! - the documents, default version ids, paths and dates: moto 5.2.1's
//!   `moto/iam/aws_managed_policies.py` (its import of AWS's GetPolicy/GetPolicyVersion
//!   answers), checked against the AWS Managed Policy Reference page of each policy
//!   (`docs.aws.amazon.com/aws-managed-policy/latest/reference/<Name>.html`: version,
//!   creation and edit times, document) where the search tool had the page;
//! - the descriptions: those reference pages ("Description: ...", AWS's words as written,
//!   typo included);
//! - the policy ids (`ANPA...`): GetPolicy answers recorded in public repositories
//!   (tenchi-security/camp `policies/<Name>/metadata.json`; for IAMReadOnlyAccess a
//!   recorded ListPolicies answer). A policy's id never changes with its versions.
//!
//! Each document is kept whole, as AWS serves it (statements' members in the reference
//! pages' order): one may name actions of services Coffer lacks, which match no request
//! here, as policy evaluation ignores them. Only the default version is served; the older
//! versions AWS keeps are not (GetPolicyVersion of one answers `NoSuchEntity`).

use crate::directory::{ManagedPolicy, PolicyVersion};
use coffer_auth::policy::{Policy, PolicyKind};
use coffer_auth::principal::STORED;
use std::sync::OnceLock;

/// The account part of an AWS managed policy's ARN.
pub const AWS_ACCOUNT: &str = "aws";

/// One AWS managed policy, as AWS's GetPolicy and GetPolicyVersion show it.
#[derive(Debug)]
pub struct AwsManagedPolicy {
    pub name: &'static str,
    /// `/` or `/service-role/`: part of the ARN.
    pub path: &'static str,
    pub policy_id: &'static str,
    pub default_version: &'static str,
    pub description: &'static str,
    pub created_ms: i64,
    /// When the default version was made (AWS's UpdateDate, and that version's CreateDate).
    pub updated_ms: i64,
    pub document: &'static str,
    /// The document parsed, once per process: every caller it applies to shares its
    /// statements (ReadOnlyAccess names ~3,000 actions: ~5M instructions to parse).
    parsed: OnceLock<Policy>,
}

impl AwsManagedPolicy {
    /// The ARN as IAM's records keep it (in `aws`; a request shows it in its partition).
    pub fn arn(&self) -> String {
        STORED.arn("iam", "", AWS_ACCOUNT, &format!("policy{}{}", self.path, self.name))
    }

    /// The document as stored policies are read (`sessions::parse_stored`): parsed once,
    /// its statements shared.
    pub fn policy(&self) -> Policy {
        self.parsed
            .get_or_init(|| {
                Policy::parse(self.document, PolicyKind::Identity)
                    .expect("AWS's managed policies parse (tested)")
                    .into_global_arns_in(STORED)
            })
            .clone()
    }

    /// The policy in the shape of a customer managed one, holding its default version
    /// only: what the IAM API shows and the evaluator reads.
    pub fn as_managed_policy(&self) -> ManagedPolicy {
        ManagedPolicy {
            account: AWS_ACCOUNT.to_string(),
            name: self.name.to_string(),
            path: self.path.to_string(),
            policy_id: self.policy_id.to_string(),
            description: self.description.to_string(),
            created_ms: self.created_ms,
            updated_ms: self.updated_ms,
            default_version: self.default_version.to_string(),
            versions: vec![PolicyVersion {
                id: self.default_version.to_string(),
                document: self.document.to_string(),
                created_ms: self.updated_ms,
            }],
            tags: Vec::new(),
        }
    }
}

/// Every AWS managed policy Coffer serves, by name.
pub static POLICIES: [AwsManagedPolicy; 9] = [
    // Reference page: AdministratorAccess (v1, created and edited 2015-02-06 18:39 UTC).
    AwsManagedPolicy {
        name: "AdministratorAccess",
        path: "/",
        policy_id: "ANPAIWMBCKSKIEE64ZLYK",
        default_version: "v1",
        description: "Provides full access to AWS services and resources.",
        created_ms: 1_423_247_986_000, // 2015-02-06T18:39:46Z
        updated_ms: 1_423_247_986_000,
        parsed: OnceLock::new(),
        document: include_str!("aws_managed/AdministratorAccess.json"),
    },
    // Reference page: AWSKeyManagementServicePowerUser (v2, edited 2017-03-07 00:55 UTC).
    AwsManagedPolicy {
        name: "AWSKeyManagementServicePowerUser",
        path: "/",
        policy_id: "ANPAJNPP7PPPPMJRV2SA4",
        default_version: "v2",
        description: "Provides access to AWS Key Management Service (KMS).",
        created_ms: 1_423_248_040_000, // 2015-02-06T18:40:40Z
        updated_ms: 1_488_848_111_000, // 2017-03-07T00:55:11Z
        parsed: OnceLock::new(),
        document: include_str!("aws_managed/AWSKeyManagementServicePowerUser.json"),
    },
    // Reference page: AWSLambdaBasicExecutionRole (v1). The execution role AWS's rotation
    // function templates give a rotation Lambda.
    AwsManagedPolicy {
        name: "AWSLambdaBasicExecutionRole",
        path: "/service-role/",
        policy_id: "ANPAJNCQGXC42545SKXIK",
        default_version: "v1",
        description: "Provides write permissions to CloudWatch Logs.",
        created_ms: 1_428_591_823_000, // 2015-04-09T15:03:43Z
        updated_ms: 1_428_591_823_000,
        parsed: OnceLock::new(),
        document: include_str!("aws_managed/AWSLambdaBasicExecutionRole.json"),
    },
    // Reference page: AWSLambdaVPCAccessExecutionRole (v3, edited 2024-01-05 22:38 UTC):
    // a rotation Lambda that reaches its database inside a VPC.
    AwsManagedPolicy {
        name: "AWSLambdaVPCAccessExecutionRole",
        path: "/service-role/",
        policy_id: "ANPAJVTME3YLVNL72YR2K",
        default_version: "v3",
        description: "Provides minimum permissions for a Lambda function to execute while \
                      accessing a resource within a VPC - create, describe, delete network \
                      interfaces and write permissions to CloudWatch Logs.",
        created_ms: 1_455_232_526_000, // 2016-02-11T23:15:26Z
        updated_ms: 1_704_494_306_000, // 2024-01-05T22:38:26Z
        parsed: OnceLock::new(),
        document: include_str!("aws_managed/AWSLambdaVPCAccessExecutionRole.json"),
    },
    // Reference page: IAMFullAccess (v2).
    AwsManagedPolicy {
        name: "IAMFullAccess",
        path: "/",
        policy_id: "ANPAI7XKCFMBPM3QQRRVQ",
        default_version: "v2",
        description: "Provides full access to IAM via the AWS Management Console.",
        created_ms: 1_423_248_038_000, // 2015-02-06T18:40:38Z
        updated_ms: 1_561_146_000_000, // 2019-06-21T19:40:00Z
        parsed: OnceLock::new(),
        document: include_str!("aws_managed/IAMFullAccess.json"),
    },
    // Reference page: IAMReadOnlyAccess (v4, edited 2018-01-25 19:11 UTC).
    AwsManagedPolicy {
        name: "IAMReadOnlyAccess",
        path: "/",
        policy_id: "ANPAJKSO7NDY4T57MWDSQ",
        default_version: "v4",
        description: "Provides read only access to IAM via the AWS Management Console.",
        created_ms: 1_423_248_039_000, // 2015-02-06T18:40:39Z
        updated_ms: 1_516_907_487_000, // 2018-01-25T19:11:27Z
        parsed: OnceLock::new(),
        document: include_str!("aws_managed/IAMReadOnlyAccess.json"),
    },
    // Reference page: PowerUserAccess (v12, edited 2026-02-12 17:59 UTC).
    AwsManagedPolicy {
        name: "PowerUserAccess",
        path: "/",
        policy_id: "ANPAJYRXTHIB4FOVS3ZXS",
        default_version: "v12",
        description: "Provides full access to AWS services and resources, but does not allow \
                      management of Users and groups.",
        created_ms: 1_423_247_987_000, // 2015-02-06T18:39:47Z
        updated_ms: 1_770_919_154_000, // 2026-02-12T17:59:14Z
        parsed: OnceLock::new(),
        document: include_str!("aws_managed/PowerUserAccess.json"),
    },
    // moto 5.2.1: ReadOnlyAccess v182 (2026-04-03). Of Coffer's services it allows
    // secretsmanager:Describe*, GetResourcePolicy and List* (not GetSecretValue), kms:
    // Describe*, Get*, List* (not Decrypt), iam:Generate*, Get*, List*, Simulate*,
    // cloudtrail:LookupEvents and sts:GetAccessKeyInfo, GetCallerIdentity, GetSessionToken.
    AwsManagedPolicy {
        name: "ReadOnlyAccess",
        path: "/",
        policy_id: "ANPAILL3HVNFSB6DCOWYQ",
        default_version: "v182",
        description: "Provides read-only access to AWS services and resources.",
        created_ms: 1_423_247_988_000, // 2015-02-06T18:39:48Z
        updated_ms: 1_775_230_032_000, // 2026-04-03T15:27:12Z
        parsed: OnceLock::new(),
        document: include_str!("aws_managed/ReadOnlyAccess.json"),
    },
    // Reference page: SecretsManagerReadWrite (v5, edited 2024-02-22 18:12 UTC).
    AwsManagedPolicy {
        name: "SecretsManagerReadWrite",
        path: "/",
        policy_id: "ANPAI3VG7CI5BIQZQ6G2E",
        default_version: "v5",
        description: "Provides read/write access to AWS Secrets Manager via the AWS Management \
                      Console. Note: this exludes IAM actions, so combine with IAMFullAccess \
                      if rotation configuration is required.",
        created_ms: 1_522_865_129_000, // 2018-04-04T18:05:29Z
        updated_ms: 1_708_625_526_000, // 2024-02-22T18:12:06Z
        parsed: OnceLock::new(),
        document: include_str!("aws_managed/SecretsManagerReadWrite.json"),
    },
];

/// True when `arn` (as IAM's records keep ARNs) is in AWS's namespace of managed policies
/// (`arn:aws:iam::aws:policy/...`), whether or not Coffer has that policy.
pub fn is_aws_managed_arn(arn: &str) -> bool {
    crate::directory::strip_stored_iam_prefix(arn)
        .and_then(|rest| rest.strip_prefix("aws:policy/"))
        .is_some()
}

/// The AWS managed policy `arn` names (as IAM's records keep ARNs), if Coffer has it.
pub fn named(arn: &str) -> Option<&'static AwsManagedPolicy> {
    let rest = crate::directory::strip_stored_iam_prefix(arn)?.strip_prefix("aws:policy")?;
    POLICIES.iter().find(|p| rest.strip_prefix(p.path) == Some(p.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_document_parses_as_an_identity_policy_and_names_are_unique() {
        for p in &POLICIES {
            Policy::parse(p.document, PolicyKind::Identity)
                .unwrap_or_else(|e| panic!("{}: {e:?}", p.name));
            assert!(p.policy_id.starts_with("ANPA") && p.policy_id.len() == 21, "{}", p.name);
            assert!(p.default_version.starts_with('v'));
            assert!(p.created_ms <= p.updated_ms);
            assert_eq!(POLICIES.iter().filter(|q| q.name == p.name).count(), 1);
        }
    }

    #[test]
    fn policies_are_found_by_their_arn_with_its_path_only() {
        let admin = named("arn:aws:iam::aws:policy/AdministratorAccess").unwrap();
        assert_eq!(admin.arn(), "arn:aws:iam::aws:policy/AdministratorAccess");
        let lambda = named("arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole");
        assert_eq!(lambda.unwrap().path, "/service-role/");
        assert!(named("arn:aws:iam::aws:policy/AWSLambdaBasicExecutionRole").is_none());
        assert!(named("arn:aws:iam::aws:policy/Nope").is_none());
        assert!(named("arn:aws:iam::123456789012:policy/AdministratorAccess").is_none());
        assert!(is_aws_managed_arn("arn:aws:iam::aws:policy/Nope"));
        assert!(!is_aws_managed_arn("arn:aws:iam::123456789012:policy/AdministratorAccess"));
        let (once, again) = (admin.policy(), admin.policy());
        assert!(std::sync::Arc::ptr_eq(&once.statements, &again.statements), "parsed once");
        let shown = admin.as_managed_policy();
        assert_eq!(shown.arn(), admin.arn());
        assert_eq!(shown.document(), Some(admin.document));
    }
}
