//! Authentication and authorization through the official Rust SDK against the real
//! binary without `--dev`: the first administrator's credentials file, users and
//! policies made with `coffer admin`, resource policies across accounts, and every
//! signature failure answered with AWS's exact error.

mod common;

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_secretsmanager::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents,
};
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use aws_sdk_secretsmanager::types::Tag;
use common::Server;
use std::process::Command;
use std::time::{Duration, SystemTime};

const ADMIN_ACCOUNT: &str = "000000000000";
const PARTNER_ACCOUNT: &str = "111122223333";
const MISMATCH: &str = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";

/// A non-dev server on a fresh data directory, with the administrator's key.
struct Secured {
    server: Server,
    dir: tempfile::TempDir,
    admin: (String, String),
}

/// Reads `aws_access_key_id` and `aws_secret_access_key` of a credentials-file text.
fn parse_credentials(text: &str) -> (String, String) {
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.split_once('=').filter(|(k, _)| k.trim() == name))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| panic!("{name} in {text}"))
    };
    (value("aws_access_key_id"), value("aws_secret_access_key"))
}

impl Secured {
    fn start() -> Secured {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(
            &["serve", "--listen", "127.0.0.1:0", "--data-dir", dir.path().to_str().unwrap()],
            &[],
        );
        let text = std::fs::read_to_string(dir.path().join("admin-credentials")).unwrap();
        let admin = parse_credentials(&text);
        Secured { server, dir, admin }
    }

    fn admin(&self) -> Client {
        client(&self.server.url, &self.admin.0, &self.admin.1, "us-east-1")
    }

    /// Runs `coffer admin <args> --data-dir <dir>` and returns its standard output.
    fn coffer_admin(&self, args: &[&str], stdin: Option<&str>) -> String {
        let mut command = Command::new(env!("CARGO_BIN_EXE_coffer"));
        command
            .arg("admin")
            .args(args)
            .args(["--data-dir", self.dir.path().to_str().unwrap()])
            .env_remove("COFFER_MASTER_KEY");
        let output = match stdin {
            None => command.output().unwrap(),
            Some(text) => {
                use std::io::Write;
                let mut child = command
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
                child.wait_with_output().unwrap()
            }
        };
        assert!(
            output.status.success(),
            "coffer admin {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Creates a user in `account` with one policy and an access key; returns a client.
    fn user(&self, account: &str, name: &str, policy: &str) -> Client {
        self.coffer_admin(&["create-user", name, "--account", account], None);
        self.coffer_admin(
            &["attach-policy", name, "--name", "p", "--file", "-", "--account", account],
            Some(policy),
        );
        let printed = self.coffer_admin(&["create-access-key", name, "--account", account], None);
        let (id, secret) = parse_credentials(&printed);
        client(&self.server.url, &id, &secret, "us-east-1")
    }
}

fn config(
    url: &str,
    id: &str,
    secret: &str,
    region: &str,
) -> aws_sdk_secretsmanager::config::Builder {
    aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .endpoint_url(url)
        .retry_config(aws_sdk_secretsmanager::config::retry::RetryConfig::disabled())
        .credentials_provider(Credentials::new(id, secret, None, None, "test"))
}

fn client(url: &str, id: &str, secret: &str, region: &str) -> Client {
    Client::from_conf(config(url, id, secret, region).build())
}

/// The code and message of a failed call.
fn failure<E: ProvideErrorMetadata>(err: E) -> (String, String) {
    (err.code().unwrap_or_default().to_string(), err.message().unwrap_or_default().to_string())
}

fn denied(user: &str, action: &str, resource: &str, why: &str) -> (String, String) {
    (
        "AccessDeniedException".to_string(),
        format!(
            "User: arn:aws:iam::{user} is not authorized to perform: secretsmanager:{action} on resource: {resource} {why}"
        ),
    )
}

async fn create(client: &Client, name: &str, value: &str, tags: &[(&str, &str)]) -> String {
    let tags: Vec<Tag> =
        tags.iter().map(|(k, v)| Tag::builder().key(*k).value(*v).build()).collect();
    let out = client
        .create_secret()
        .name(name)
        .secret_string(value)
        .set_tags((!tags.is_empty()).then_some(tags))
        .send()
        .await
        .unwrap();
    out.arn().unwrap().to_string()
}

#[tokio::test]
async fn first_start_writes_admin_credentials_once_with_mode_0600_and_they_work() {
    let secured = Secured::start();
    let path = secured.dir.path().join("admin-credentials");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\n[coffer]\n"), "{text}");
    assert!(secured.admin.0.starts_with("AKIA") && secured.admin.0.len() == 20);
    assert_eq!(secured.admin.1.len(), 40);
    let admin = secured.admin();
    create(&admin, "first", "v", &[]).await;
    assert_eq!(
        admin.get_secret_value().secret_id("first").send().await.unwrap().secret_string(),
        Some("v")
    );
    // The secret access key is stored only sealed.
    for file in common::files_under(secured.dir.path()) {
        if file != path {
            let bytes = std::fs::read(&file).unwrap();
            assert!(
                !common::contains_bytes(&bytes, secured.admin.1.as_bytes()),
                "{}",
                file.display()
            );
        }
    }
    // A restart neither re-creates the administrator nor rewrites the file, and the key
    // keeps working.
    let Secured { server, dir, admin: keys } = secured;
    drop(server);
    let server = Server::start(
        &["serve", "--listen", "127.0.0.1:0", "--data-dir", dir.path().to_str().unwrap()],
        &[],
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    assert_eq!(parse_credentials(&text), keys);
    let again = client(&server.url, &keys.0, &keys.1, "us-east-1");
    assert_eq!(
        again.get_secret_value().secret_id("first").send().await.unwrap().secret_string(),
        Some("v")
    );
}

#[tokio::test]
async fn a_user_allowed_only_get_secret_value_on_prod_reads_prod_db_and_nothing_else() {
    let secured = Secured::start();
    let admin = secured.admin();
    let prod = create(&admin, "prod/db", "prod-password", &[]).await;
    let dev = create(&admin, "dev/db", "dev-password", &[]).await;
    let reader = secured.user(
        ADMIN_ACCOUNT,
        "reader",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"arn:aws:secretsmanager:*:*:secret:prod/*"}]}"#,
    );
    let value = reader.get_secret_value().secret_id("prod/db").send().await.unwrap();
    assert_eq!(value.secret_string(), Some("prod-password"));
    let why = "because no identity-based policy allows the secretsmanager:GetSecretValue action";
    // Denials quote the SecretId as given, never the resolved ARN (no existence oracle).
    let err = reader.get_secret_value().secret_id("dev/db").send().await.unwrap_err();
    assert_eq!(failure(err), denied("000000000000:user/reader", "GetSecretValue", "dev/db", why));
    let err = reader.get_secret_value().secret_id(&dev).send().await.unwrap_err();
    assert_eq!(failure(err), denied("000000000000:user/reader", "GetSecretValue", &dev, why));
    let err = reader.describe_secret().secret_id(&prod).send().await.unwrap_err();
    let why = "because no identity-based policy allows the secretsmanager:DescribeSecret action";
    assert_eq!(failure(err), denied("000000000000:user/reader", "DescribeSecret", &prod, why));
    let err =
        reader.put_secret_value().secret_id("prod/db").secret_string("x").send().await.unwrap_err();
    assert_eq!(failure(err).0, "AccessDeniedException");
    let err = reader.list_secrets().send().await.unwrap_err();
    let why = "because no identity-based policy allows the secretsmanager:ListSecrets action";
    assert_eq!(failure(err), denied("000000000000:user/reader", "ListSecrets", "*", why));
    // A secret that does not exist is refused, not reported missing, to a caller who may
    // not read it; one who may gets ResourceNotFoundException.
    let err = reader.get_secret_value().secret_id("nope").send().await.unwrap_err();
    assert_eq!(failure(err).0, "AccessDeniedException");
    let err = reader.get_secret_value().secret_id("prod/nope").send().await.unwrap_err();
    assert_eq!(failure(err).0, "ResourceNotFoundException");
    // BatchGetSecretValue needs its own permission.
    let err = reader.batch_get_secret_value().secret_id_list("prod/db").send().await.unwrap_err();
    assert_eq!(failure(err).0, "AccessDeniedException");
    assert_eq!(
        admin.get_secret_value().secret_id("prod/db").send().await.unwrap().secret_string(),
        Some("prod-password")
    );
}

#[tokio::test]
async fn an_explicit_deny_on_a_tag_wins_over_an_allow() {
    let secured = Secured::start();
    let admin = secured.admin();
    let payroll = create(&admin, "payroll", "p", &[("Classification", "Restricted")]).await;
    create(&admin, "wiki", "w", &[("Classification", "Public")]).await;
    let ops = secured.user(
        ADMIN_ACCOUNT,
        "ops",
        r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Action":"secretsmanager:*","Resource":"*"},
            {"Effect":"Deny","Action":"secretsmanager:GetSecretValue","Resource":"*",
             "Condition":{"StringEquals":{"secretsmanager:ResourceTag/Classification":"Restricted"}}}]}"#,
    );
    assert_eq!(
        ops.get_secret_value().secret_id("wiki").send().await.unwrap().secret_string(),
        Some("w")
    );
    let err = ops.get_secret_value().secret_id(&payroll).send().await.unwrap_err();
    let why = "with an explicit deny in an identity-based policy";
    assert_eq!(failure(err), denied("000000000000:user/ops", "GetSecretValue", &payroll, why));
    ops.describe_secret().secret_id("payroll").send().await.unwrap();
    // In a batch, the denied secret moves to Errors and the readable one is returned.
    let batch = ops
        .batch_get_secret_value()
        .secret_id_list("wiki")
        .secret_id_list("payroll")
        .send()
        .await
        .unwrap();
    let names: Vec<&str> = batch.secret_values().iter().filter_map(|v| v.name()).collect();
    assert_eq!(names, vec!["wiki"]);
    assert_eq!(batch.errors().len(), 1);
    assert_eq!(batch.errors()[0].error_code(), Some("AccessDeniedException"));
    assert_eq!(batch.errors()[0].secret_id(), Some("payroll"));
}

#[tokio::test]
async fn a_resource_policy_grants_a_second_account_read_access() {
    let secured = Secured::start();
    let admin = secured.admin();
    // Reads from another account need a customer managed key that account may use.
    let key = kms_client(&secured.server.url, &secured.admin)
        .create_key()
        .policy(
            r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:root"},"Action":"kms:*","Resource":"*"},
            {"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:Decrypt","Resource":"*"}]}"#,
        )
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .to_string();
    let arn = admin
        .create_secret()
        .name("shared/api")
        .secret_string("shared-value")
        .kms_key_id(&key)
        .send()
        .await
        .unwrap()
        .arn()
        .unwrap()
        .to_string();
    let partner = secured.user(
        PARTNER_ACCOUNT,
        "partner",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["secretsmanager:GetSecretValue","secretsmanager:DescribeSecret","kms:Decrypt"],"Resource":["arn:aws:secretsmanager:us-east-1:000000000000:secret:shared/*","arn:aws:kms:us-east-1:000000000000:key/*"]}]}"#,
    );
    let err = partner.get_secret_value().secret_id(&arn).send().await.unwrap_err();
    let why = "because no resource-based policy allows the secretsmanager:GetSecretValue action";
    assert_eq!(failure(err), denied("111122223333:user/partner", "GetSecretValue", &arn, why));
    admin
        .put_resource_policy()
        .secret_id("shared/api")
        .resource_policy(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"secretsmanager:GetSecretValue","Resource":"*"}]}"#,
        )
        .block_public_policy(true)
        .send()
        .await
        .unwrap();
    let value = partner.get_secret_value().secret_id(&arn).send().await.unwrap();
    assert_eq!(value.secret_string(), Some("shared-value"));
    assert_eq!(value.arn(), Some(arn.as_str()));
    // The policy grants reading only; describing needs both sides too.
    let err = partner.describe_secret().secret_id(&arn).send().await.unwrap_err();
    let why = "because no resource-based policy allows the secretsmanager:DescribeSecret action";
    assert_eq!(failure(err), denied("111122223333:user/partner", "DescribeSecret", &arn, why));
    // A name resolves in the caller's own account, where there is no such secret.
    let err = partner.get_secret_value().secret_id("shared/api").send().await.unwrap_err();
    assert_eq!(failure(err).0, "AccessDeniedException");
}

#[tokio::test]
async fn public_resource_policies_are_blocked_and_validate_reports_real_findings() {
    let secured = Secured::start();
    let admin = secured.admin();
    create(&admin, "guarded", "v", &[]).await;
    let public = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"secretsmanager:GetSecretValue","Resource":"*"}]}"#;
    let err = admin
        .put_resource_policy()
        .secret_id("guarded")
        .resource_policy(public)
        .block_public_policy(true)
        .send()
        .await
        .unwrap_err();
    assert_eq!(failure(err).0, "PublicPolicyException");
    let report = admin
        .validate_resource_policy()
        .secret_id("guarded")
        .resource_policy(public)
        .send()
        .await
        .unwrap();
    assert!(!report.policy_validation_passed());
    assert_eq!(report.validation_errors()[0].check_name(), Some("BROAD_ACCESS_CHECK"));
    let typo = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"GetSecretValue","Resource":"*"}]}"#;
    let err = admin
        .put_resource_policy()
        .secret_id("guarded")
        .resource_policy(typo)
        .send()
        .await
        .unwrap_err();
    let (code, message) = failure(err);
    assert_eq!(code, "MalformedPolicyDocumentException");
    assert!(message.contains("'GetSecretValue' is not a valid action"), "{message}");
}

#[tokio::test]
async fn signature_failures_are_refused_with_the_exact_aws_errors() {
    let secured = Secured::start();
    let url = &secured.server.url;
    let (id, secret) = (&secured.admin.0, &secured.admin.1);
    secured.admin().create_secret().name("s").secret_string("v").send().await.unwrap();

    let mut wrong = secret.clone();
    wrong.replace_range(0..1, if wrong.starts_with('A') { "B" } else { "A" });
    let err = client(url, id, &wrong, "us-east-1").list_secrets().send().await.unwrap_err();
    assert_eq!(failure(err), ("InvalidSignatureException".into(), MISMATCH.into()));

    let err = client(url, "AKIAIOSFODNN7EXAMPLE", secret, "us-east-1")
        .list_secrets()
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        failure(err),
        (
            "UnrecognizedClientException".into(),
            "The security token included in the request is invalid.".into()
        )
    );

    let err = client(url, id, secret, "us-east-7").list_secrets().send().await.unwrap_err();
    assert_eq!(
        failure(err),
        (
            "InvalidSignatureException".into(),
            "Credential should be scoped to a valid region, not 'us-east-7'. ".into()
        )
    );

    let six_minutes_ago = SystemTime::now() - Duration::from_secs(360);
    let old = Client::from_conf(
        config(url, id, secret, "us-east-1")
            .time_source(aws_smithy_async::time::StaticTimeSource::new(six_minutes_ago))
            .build(),
    );
    let (code, message) = failure(old.list_secrets().send().await.unwrap_err());
    assert_eq!(code, "InvalidSignatureException");
    let signed = coffer_auth::time::format_amz_date(
        six_minutes_ago.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64,
    );
    assert!(
        message.starts_with(&format!("Signature expired: {signed} is now earlier than ")),
        "{message}"
    );
    assert!(message.ends_with(" - 5 min.)"), "{message}");

    let tampered = |tamper: Tamper| {
        Client::from_conf(config(url, id, secret, "us-east-1").interceptor(tamper).build())
    };
    let err = tampered(Tamper::Body).get_secret_value().secret_id("s").send().await.unwrap_err();
    assert_eq!(failure(err), ("InvalidSignatureException".into(), MISMATCH.into()));
    let err = tampered(Tamper::Target).get_secret_value().secret_id("s").send().await.unwrap_err();
    assert_eq!(failure(err), ("InvalidSignatureException".into(), MISMATCH.into()));
    let err =
        tampered(Tamper::Unsigned).get_secret_value().secret_id("s").send().await.unwrap_err();
    assert_eq!(
        failure(err),
        ("MissingAuthenticationTokenException".into(), "Missing Authentication Token".into())
    );
    // The secret is untouched: the tampered DeleteSecret never ran.
    secured.admin().describe_secret().secret_id("s").send().await.unwrap();
}

fn kms_client(url: &str, key: &(String, String)) -> aws_sdk_kms::Client {
    let config = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .retry_config(aws_sdk_kms::config::retry::RetryConfig::disabled())
        .credentials_provider(Credentials::new(&key.0, &key.1, None, None, "test"))
        .build();
    aws_sdk_kms::Client::from_conf(config)
}

#[tokio::test]
async fn a_customer_managed_key_needs_the_kms_permissions_the_seeds_list() {
    let secured = Secured::start();
    let kms = kms_client(&secured.server.url, &secured.admin);
    let key = kms.create_key().send().await.unwrap().key_metadata.unwrap();
    let key_arn = key.arn().unwrap().to_string();
    kms.create_alias().alias_name("alias/app").target_key_id(key.key_id()).send().await.unwrap();
    let admin = secured.admin();
    admin
        .create_secret()
        .name("cmk/db")
        .secret_string("sealed")
        .kms_key_id("alias/app")
        .send()
        .await
        .unwrap();
    create(&admin, "default/db", "plain", &[]).await;

    let secrets_only = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"secretsmanager:*","Resource":"*"}]}"#;
    let app = secured.user(ADMIN_ACCOUNT, "app", secrets_only);
    // The AWS managed key needs no kms permission; the customer managed one does.
    app.get_secret_value().secret_id("default/db").send().await.unwrap();
    let err = app.get_secret_value().secret_id("cmk/db").send().await.unwrap_err();
    assert_eq!(
        failure(err),
        (
            "AccessDeniedException".to_string(),
            format!(
                "User: arn:aws:iam::000000000000:user/app is not authorized to perform: kms:Decrypt on resource: {key_arn} because no identity-based policy allows the kms:Decrypt action"
            )
        )
    );
    let err = app
        .create_secret()
        .name("cmk/new")
        .secret_string("v")
        .kms_key_id(&key_arn)
        .send()
        .await
        .unwrap_err();
    assert!(failure(err).1.contains("kms:GenerateDataKey on resource"));

    let with_kms = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"secretsmanager:*","Resource":"*"}},{{"Effect":"Allow","Action":["kms:Decrypt","kms:GenerateDataKey"],"Resource":"{key_arn}"}}]}}"#
    );
    let reader = secured.user(ADMIN_ACCOUNT, "reader", &with_kms);
    let value = reader.get_secret_value().secret_id("cmk/db").send().await.unwrap();
    assert_eq!(value.secret_string(), Some("sealed"));
    reader.put_secret_value().secret_id("cmk/db").secret_string("v2").send().await.unwrap();
    // UpdateSecret may re-encrypt under the key, so it also needs kms:Encrypt (the seeds).
    let err =
        reader.update_secret().secret_id("cmk/db").secret_string("v3").send().await.unwrap_err();
    assert!(failure(err).1.contains("kms:Encrypt on resource"));

    // The KMS API itself is authorized with kms:<Operation> on the resolved key.
    let reader_key = {
        let printed = secured.coffer_admin(&["create-access-key", "reader"], None);
        parse_credentials(&printed)
    };
    let reader_kms = kms_client(&secured.server.url, &reader_key);
    let err = reader_kms.describe_key().key_id("alias/app").send().await.unwrap_err();
    assert_eq!(
        failure(err).1,
        format!(
            "User: arn:aws:iam::000000000000:user/reader is not authorized to perform: kms:DescribeKey on resource: {key_arn} because no identity-based policy allows the kms:DescribeKey action"
        )
    );
    let blob = reader_kms.generate_data_key().key_id("alias/app").number_of_bytes(32).send().await;
    assert!(blob.is_ok(), "{blob:?}");
}

#[tokio::test]
async fn deleting_an_access_key_or_user_revokes_it_at_once() {
    let secured = Secured::start();
    let policy = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"secretsmanager:ListSecrets","Resource":"*"}}"#;
    let lister = secured.user(ADMIN_ACCOUNT, "lister", policy);
    lister.list_secrets().send().await.unwrap();
    let listed = secured.coffer_admin(&["list-users"], None);
    let line = listed.lines().find(|l| l.contains("user/lister")).unwrap();
    let key = line.split("keys: ").nth(1).unwrap().split('\t').next().unwrap().to_string();
    assert!(line.contains("policies: p"), "{line}");
    secured.coffer_admin(&["detach-policy", "lister", "--name", "p"], None);
    assert_eq!(failure(lister.list_secrets().send().await.unwrap_err()).0, "AccessDeniedException");
    secured.coffer_admin(&["delete-access-key", &key], None);
    assert_eq!(
        failure(lister.list_secrets().send().await.unwrap_err()).0,
        "UnrecognizedClientException"
    );
    secured.coffer_admin(&["delete-user", "lister"], None);
    assert!(!secured.coffer_admin(&["list-users"], None).contains("user/lister"));
}

/// Changes a request after the SDK signed it.
#[derive(Debug, Clone, Copy)]
enum Tamper {
    /// One character of the JSON body.
    Body,
    /// The operation in the signed `X-Amz-Target` header.
    Target,
    /// Drops the Authorization header.
    Unsigned,
}

impl Intercept for Tamper {
    fn name(&self) -> &'static str {
        "Tamper"
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let request = context.request_mut();
        match self {
            Tamper::Body => {
                let body = request.body().bytes().unwrap_or_default().to_vec();
                let text = String::from_utf8(body).unwrap().replace("\"s\"", "\"t\"");
                *request.body_mut() = text.into();
            }
            Tamper::Target => {
                request.headers_mut().insert("x-amz-target", "secretsmanager.DeleteSecret");
            }
            Tamper::Unsigned => {
                request.headers_mut().remove("authorization");
            }
        }
        Ok(())
    }
}
