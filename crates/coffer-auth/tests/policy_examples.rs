//! A table of policy documents from AWS's documented examples for Secrets Manager
//! (identity-based and resource-based policies), each checked against requests with
//! the decision AWS documents for them.

use coffer_auth::policy::{Context, Decision, Policy, PolicyKind, Request, evaluate};
use coffer_auth::principal::Principal;

const ACCOUNT: &str = "123456789012";
const OTHER: &str = "111122223333";
const REGION: &str = "us-east-1";

fn secret(account: &str, name: &str) -> String {
    format!("arn:aws:secretsmanager:{REGION}:{account}:secret:{name}-AbCdEf")
}

/// One request of a row: who, what, on which secret (or `*`), with which context keys.
struct Ask {
    user: (&'static str, &'static str),
    action: &'static str,
    /// `None` for actions on no resource (`*`).
    secret: Option<(&'static str, &'static str)>,
    context: &'static [(&'static str, &'static [&'static str])],
    expect: Decision,
}

struct Row {
    example: &'static str,
    identity: &'static [&'static str],
    resource: Option<&'static str>,
    asks: &'static [Ask],
}

use Decision::{Allow, ExplicitDeny, NoAllow};
use PolicyKind::{Identity as Id, Resource as Res};

const ROWS: &[Row] = &[
    Row {
        example: "Permission to retrieve individual secret values",
        identity: &[
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"arn:aws:secretsmanager:us-east-1:123456789012:secret:SecretName-AbCdEf"}]}"#,
        ],
        resource: None,
        asks: &[
            Ask {
                user: (ACCOUNT, "app"),
                action: "secretsmanager:GetSecretValue",
                secret: Some((ACCOUNT, "SecretName")),
                context: &[],
                expect: Allow,
            },
            Ask {
                user: (ACCOUNT, "app"),
                action: "secretsmanager:PutSecretValue",
                secret: Some((ACCOUNT, "SecretName")),
                context: &[],
                expect: NoAllow(Id),
            },
            Ask {
                user: (ACCOUNT, "app"),
                action: "secretsmanager:GetSecretValue",
                secret: Some((ACCOUNT, "Other")),
                context: &[],
                expect: NoAllow(Id),
            },
        ],
    },
    Row {
        example: "Wildcards: read every secret under a path",
        identity: &[
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["secretsmanager:GetSecretValue","secretsmanager:DescribeSecret"],"Resource":"arn:aws:secretsmanager:us-east-1:123456789012:secret:TestEnv/*"}]}"#,
        ],
        resource: None,
        asks: &[
            Ask {
                user: (ACCOUNT, "app"),
                action: "secretsmanager:DescribeSecret",
                secret: Some((ACCOUNT, "TestEnv/db")),
                context: &[],
                expect: Allow,
            },
            Ask {
                user: (ACCOUNT, "app"),
                action: "secretsmanager:GetSecretValue",
                secret: Some((ACCOUNT, "ProdEnv/db")),
                context: &[],
                expect: NoAllow(Id),
            },
        ],
    },
    Row {
        example: "Retrieve a group of secret values in a batch",
        identity: &[
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"secretsmanager:BatchGetSecretValue","Resource":"*"},{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":["arn:aws:secretsmanager:us-east-1:123456789012:secret:a-AbCdEf","arn:aws:secretsmanager:us-east-1:123456789012:secret:b-AbCdEf"]}]}"#,
        ],
        resource: None,
        asks: &[
            Ask {
                user: (ACCOUNT, "app"),
                action: "secretsmanager:BatchGetSecretValue",
                secret: None,
                context: &[],
                expect: Allow,
            },
            Ask {
                user: (ACCOUNT, "app"),
                action: "secretsmanager:GetSecretValue",
                secret: Some((ACCOUNT, "b")),
                context: &[],
                expect: Allow,
            },
            Ask {
                user: (ACCOUNT, "app"),
                action: "secretsmanager:GetSecretValue",
                secret: Some((ACCOUNT, "c")),
                context: &[],
                expect: NoAllow(Id),
            },
        ],
    },
    Row {
        example: "Permission to create secrets only with a given tag (aws:RequestTag, aws:TagKeys)",
        identity: &[
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"secretsmanager:CreateSecret","Resource":"*","Condition":{"StringEquals":{"aws:RequestTag/Team":"Security"},"ForAllValues:StringEquals":{"aws:TagKeys":["Team","Owner"]}}}]}"#,
        ],
        resource: None,
        asks: &[
            Ask {
                user: (ACCOUNT, "dev"),
                action: "secretsmanager:CreateSecret",
                secret: Some((ACCOUNT, "new")),
                context: &[("aws:RequestTag/Team", &["Security"]), ("aws:TagKeys", &["Team"])],
                expect: Allow,
            },
            Ask {
                user: (ACCOUNT, "dev"),
                action: "secretsmanager:CreateSecret",
                secret: Some((ACCOUNT, "new")),
                context: &[("aws:RequestTag/Team", &["Sales"]), ("aws:TagKeys", &["Team"])],
                expect: NoAllow(Id),
            },
            Ask {
                user: (ACCOUNT, "dev"),
                action: "secretsmanager:CreateSecret",
                secret: Some((ACCOUNT, "new")),
                context: &[
                    ("aws:RequestTag/Team", &["Security"]),
                    ("aws:TagKeys", &["Team", "CostCenter"]),
                ],
                expect: NoAllow(Id),
            },
            Ask {
                user: (ACCOUNT, "dev"),
                action: "secretsmanager:CreateSecret",
                secret: Some((ACCOUNT, "new")),
                context: &[],
                expect: NoAllow(Id),
            },
        ],
    },
    Row {
        example: "Deny access to secrets with a tag: explicit Deny beats Allow",
        identity: &[
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"secretsmanager:*","Resource":"*"}}"#,
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Deny","Action":"secretsmanager:GetSecretValue","Resource":"*","Condition":{"StringEquals":{"secretsmanager:ResourceTag/Classification":"Restricted"}}}}"#,
        ],
        resource: None,
        asks: &[
            Ask {
                user: (ACCOUNT, "ops"),
                action: "secretsmanager:GetSecretValue",
                secret: Some((ACCOUNT, "payroll")),
                context: &[("secretsmanager:ResourceTag/Classification", &["Restricted"])],
                expect: ExplicitDeny(Id),
            },
            Ask {
                user: (ACCOUNT, "ops"),
                action: "secretsmanager:GetSecretValue",
                secret: Some((ACCOUNT, "wiki")),
                context: &[("secretsmanager:ResourceTag/Classification", &["Public"])],
                expect: Allow,
            },
            Ask {
                user: (ACCOUNT, "ops"),
                action: "secretsmanager:DescribeSecret",
                secret: Some((ACCOUNT, "payroll")),
                context: &[("secretsmanager:ResourceTag/Classification", &["Restricted"])],
                expect: Allow,
            },
        ],
    },
    Row {
        example: "Attribute-based access: tag value from a policy variable",
        identity: &[
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"*","Condition":{"StringEquals":{"secretsmanager:ResourceTag/Owner":"${aws:username}"}}}}"#,
        ],
        resource: None,
        asks: &[
            Ask {
                user: (ACCOUNT, "alice"),
                action: "secretsmanager:GetSecretValue",
                secret: Some((ACCOUNT, "mine")),
                context: &[
                    ("secretsmanager:ResourceTag/Owner", &["alice"]),
                    ("aws:username", &["alice"]),
                ],
                expect: Allow,
            },
            Ask {
                user: (ACCOUNT, "bob"),
                action: "secretsmanager:GetSecretValue",
                secret: Some((ACCOUNT, "mine")),
                context: &[
                    ("secretsmanager:ResourceTag/Owner", &["alice"]),
                    ("aws:username", &["bob"]),
                ],
                expect: NoAllow(Id),
            },
        ],
    },
    Row {
        example: "Only the AWSCURRENT version (secretsmanager:VersionStage)",
        identity: &[
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"*","Condition":{"ForAnyValue:StringEquals":{"secretsmanager:VersionStage":"AWSCURRENT"}}}}"#,
        ],
        resource: None,
        asks: &[
            Ask {
                user: (ACCOUNT, "app"),
                action: "secretsmanager:GetSecretValue",
                secret: Some((ACCOUNT, "s")),
                context: &[("secretsmanager:VersionStage", &["AWSCURRENT"])],
                expect: Allow,
            },
            Ask {
                user: (ACCOUNT, "app"),
                action: "secretsmanager:GetSecretValue",
                secret: Some((ACCOUNT, "s")),
                context: &[("secretsmanager:VersionStage", &["AWSPREVIOUS"])],
                expect: NoAllow(Id),
            },
        ],
    },
    Row {
        example: "NotAction and NotResource: everything except deletion, everywhere except prod",
        identity: &[
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","NotAction":"secretsmanager:Delete*","NotResource":"arn:aws:secretsmanager:*:*:secret:prod/*"}}"#,
        ],
        resource: None,
        asks: &[
            Ask {
                user: (ACCOUNT, "dev"),
                action: "secretsmanager:PutSecretValue",
                secret: Some((ACCOUNT, "dev/db")),
                context: &[],
                expect: Allow,
            },
            Ask {
                user: (ACCOUNT, "dev"),
                action: "secretsmanager:DeleteSecret",
                secret: Some((ACCOUNT, "dev/db")),
                context: &[],
                expect: NoAllow(Id),
            },
            Ask {
                user: (ACCOUNT, "dev"),
                action: "secretsmanager:PutSecretValue",
                secret: Some((ACCOUNT, "prod/db")),
                context: &[],
                expect: NoAllow(Id),
            },
        ],
    },
    Row {
        example: "Resource policy: give one role/user access to a single secret",
        identity: &[],
        resource: Some(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:user/reader"},"Action":"secretsmanager:GetSecretValue","Resource":"*"}]}"#,
        ),
        asks: &[
            Ask {
                user: (ACCOUNT, "reader"),
                action: "secretsmanager:GetSecretValue",
                secret: Some((ACCOUNT, "s")),
                context: &[],
                expect: Allow,
            },
            Ask {
                user: (ACCOUNT, "writer"),
                action: "secretsmanager:GetSecretValue",
                secret: Some((ACCOUNT, "s")),
                context: &[],
                expect: NoAllow(Id),
            },
            Ask {
                user: (ACCOUNT, "reader"),
                action: "secretsmanager:PutSecretValue",
                secret: Some((ACCOUNT, "s")),
                context: &[],
                expect: NoAllow(Id),
            },
        ],
    },
    Row {
        example: "Resource policy naming the account root delegates to the account's identity policies",
        identity: &[],
        resource: Some(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"secretsmanager:GetSecretValue","Resource":"*"}]}"#,
        ),
        asks: &[Ask {
            user: (ACCOUNT, "anyone"),
            action: "secretsmanager:GetSecretValue",
            secret: Some((ACCOUNT, "s")),
            context: &[],
            expect: NoAllow(Id),
        }],
    },
    Row {
        example: "Cross-account access: the resource policy in the owner's account and an identity policy in the caller's",
        identity: &[
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"arn:aws:secretsmanager:us-east-1:123456789012:secret:shared/*"}}"#,
        ],
        resource: Some(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"secretsmanager:GetSecretValue","Resource":"*"}}"#,
        ),
        asks: &[
            Ask {
                user: (OTHER, "partner"),
                action: "secretsmanager:GetSecretValue",
                secret: Some((ACCOUNT, "shared/api")),
                context: &[],
                expect: Allow,
            },
            Ask {
                user: (OTHER, "partner"),
                action: "secretsmanager:DescribeSecret",
                secret: Some((ACCOUNT, "shared/api")),
                context: &[],
                expect: NoAllow(Res),
            },
            Ask {
                user: ("444455556666", "stranger"),
                action: "secretsmanager:GetSecretValue",
                secret: Some((ACCOUNT, "shared/api")),
                context: &[],
                expect: NoAllow(Res),
            },
        ],
    },
    Row {
        example: "Cross-account access without the caller's identity policy is refused",
        identity: &[],
        resource: Some(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/partner"},"Action":"secretsmanager:GetSecretValue","Resource":"*"}}"#,
        ),
        asks: &[Ask {
            user: (OTHER, "partner"),
            action: "secretsmanager:GetSecretValue",
            secret: Some((ACCOUNT, "shared/api")),
            context: &[],
            expect: NoAllow(Id),
        }],
    },
    Row {
        example: "Resource policy: deny everyone except one principal (aws:PrincipalArn)",
        identity: &[
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"secretsmanager:*","Resource":"*"}}"#,
        ],
        resource: Some(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Deny","Principal":"*","Action":"secretsmanager:GetSecretValue","Resource":"*","Condition":{"StringNotEquals":{"aws:PrincipalArn":"arn:aws:iam::123456789012:user/app"}}}}"#,
        ),
        asks: &[
            Ask {
                user: (ACCOUNT, "app"),
                action: "secretsmanager:GetSecretValue",
                secret: Some((ACCOUNT, "s")),
                context: &[("aws:PrincipalArn", &["arn:aws:iam::123456789012:user/app"])],
                expect: Allow,
            },
            Ask {
                user: (ACCOUNT, "admin"),
                action: "secretsmanager:GetSecretValue",
                secret: Some((ACCOUNT, "s")),
                context: &[("aws:PrincipalArn", &["arn:aws:iam::123456789012:user/admin"])],
                expect: ExplicitDeny(Res),
            },
        ],
    },
    Row {
        example: "Resource policy: restrict access to an IP range (aws:SourceIp)",
        identity: &[
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"*"}}"#,
        ],
        resource: Some(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Deny","Principal":{"AWS":"*"},"Action":"secretsmanager:*","Resource":"*","Condition":{"NotIpAddress":{"aws:SourceIp":["192.0.2.0/24","203.0.113.0/24"]}}}}"#,
        ),
        asks: &[
            Ask {
                user: (ACCOUNT, "app"),
                action: "secretsmanager:GetSecretValue",
                secret: Some((ACCOUNT, "s")),
                context: &[("aws:SourceIp", &["192.0.2.17"])],
                expect: Allow,
            },
            Ask {
                user: (ACCOUNT, "app"),
                action: "secretsmanager:GetSecretValue",
                secret: Some((ACCOUNT, "s")),
                context: &[("aws:SourceIp", &["198.51.100.1"])],
                expect: ExplicitDeny(Res),
            },
        ],
    },
    Row {
        example: "Deny access after a date (aws:CurrentTime)",
        identity: &[
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"*"},{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"DateGreaterThan":{"aws:CurrentTime":"2030-01-01T00:00:00Z"}}}]}"#,
        ],
        resource: None,
        asks: &[
            Ask {
                user: (ACCOUNT, "temp"),
                action: "secretsmanager:GetSecretValue",
                secret: Some((ACCOUNT, "s")),
                context: &[("aws:CurrentTime", &["2029-06-01T00:00:00Z"])],
                expect: Allow,
            },
            Ask {
                user: (ACCOUNT, "temp"),
                action: "secretsmanager:GetSecretValue",
                secret: Some((ACCOUNT, "s")),
                context: &[("aws:CurrentTime", &["2030-06-01T00:00:00Z"])],
                expect: ExplicitDeny(Id),
            },
        ],
    },
    Row {
        example: "Only secrets with a name prefix may be created (secretsmanager:Name)",
        identity: &[
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"secretsmanager:CreateSecret","Resource":"*","Condition":{"StringLike":{"secretsmanager:Name":"team-a/*"}}}}"#,
        ],
        resource: None,
        asks: &[
            Ask {
                user: (ACCOUNT, "a"),
                action: "secretsmanager:CreateSecret",
                secret: Some((ACCOUNT, "team-a/x")),
                context: &[("secretsmanager:Name", &["team-a/x"])],
                expect: Allow,
            },
            Ask {
                user: (ACCOUNT, "a"),
                action: "secretsmanager:CreateSecret",
                secret: Some((ACCOUNT, "team-b/x")),
                context: &[("secretsmanager:Name", &["team-b/x"])],
                expect: NoAllow(Id),
            },
        ],
    },
    Row {
        example: "Restrict by secret ARN in a condition (secretsmanager:SecretId) and caller account (aws:PrincipalAccount)",
        identity: &[
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"secretsmanager:DescribeSecret","Resource":"*","Condition":{"ArnLike":{"secretsmanager:SecretId":"arn:aws:secretsmanager:us-east-1:123456789012:secret:app/*"},"StringEquals":{"aws:PrincipalAccount":"123456789012"}}}}"#,
        ],
        resource: None,
        asks: &[
            Ask {
                user: (ACCOUNT, "a"),
                action: "secretsmanager:DescribeSecret",
                secret: Some((ACCOUNT, "app/x")),
                context: &[
                    (
                        "secretsmanager:SecretId",
                        &["arn:aws:secretsmanager:us-east-1:123456789012:secret:app/x-AbCdEf"],
                    ),
                    ("aws:PrincipalAccount", &[ACCOUNT]),
                ],
                expect: Allow,
            },
            Ask {
                user: (ACCOUNT, "a"),
                action: "secretsmanager:DescribeSecret",
                secret: Some((ACCOUNT, "web/x")),
                context: &[
                    (
                        "secretsmanager:SecretId",
                        &["arn:aws:secretsmanager:us-east-1:123456789012:secret:web/x-AbCdEf"],
                    ),
                    ("aws:PrincipalAccount", &[ACCOUNT]),
                ],
                expect: NoAllow(Id),
            },
        ],
    },
    Row {
        example: "KMS: customer managed key permissions for Secrets Manager calls",
        identity: &[
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":["kms:Decrypt","kms:GenerateDataKey"],"Resource":"arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"}}"#,
        ],
        resource: None,
        asks: &[Ask {
            user: (ACCOUNT, "app"),
            action: "kms:Decrypt",
            secret: None,
            context: &[],
            expect: NoAllow(Id),
        }],
    },
];

fn policies(texts: &[&str], kind: PolicyKind) -> Vec<Policy> {
    texts.iter().map(|t| Policy::parse(t, kind).unwrap_or_else(|e| panic!("{t}: {e:?}"))).collect()
}

#[test]
fn documented_examples_decide_as_aws_documents() {
    for row in ROWS {
        let identity = policies(row.identity, PolicyKind::Identity);
        let resource = row.resource.map(|t| Policy::parse(t, PolicyKind::Resource).unwrap());
        for (i, ask) in row.asks.iter().enumerate() {
            let principal = Principal::user(ask.user.0, ask.user.1, "AIDAEXAMPLE");
            let mut context = Context::default();
            for (k, vs) in ask.context {
                context.set_all(k, vs.iter().map(|v| v.to_string()).collect());
            }
            let (resource_arn, owner) = match ask.secret {
                Some((account, name)) => (secret(account, name), account),
                None => ("*".to_string(), ask.user.0),
            };
            let req = Request {
                principal: &principal,
                action: ask.action,
                resource: &resource_arn,
                resource_account: owner,
                context: &context,
            };
            let got = evaluate(&req, &identity, resource.as_ref());
            assert_eq!(got, ask.expect, "{} (request {})", row.example, i + 1);
        }
    }
}

#[test]
fn a_kms_key_grant_allows_exactly_that_key() {
    let identity = policies(ROWS.last().unwrap().identity, PolicyKind::Identity);
    let principal = Principal::user(ACCOUNT, "app", "AIDAEXAMPLE");
    let ctx = Context::default();
    let key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let ask = |action, resource| {
        evaluate(
            &Request {
                principal: &principal,
                action,
                resource,
                resource_account: ACCOUNT,
                context: &ctx,
            },
            &identity,
            None,
        )
    };
    assert_eq!(ask("kms:Decrypt", key), Decision::Allow);
    assert_eq!(ask("kms:GenerateDataKey", key), Decision::Allow);
    assert_eq!(ask("kms:Encrypt", key), Decision::NoAllow(PolicyKind::Identity));
    assert_eq!(
        ask("kms:Decrypt", "arn:aws:kms:us-east-1:123456789012:key/other"),
        Decision::NoAllow(PolicyKind::Identity)
    );
}
