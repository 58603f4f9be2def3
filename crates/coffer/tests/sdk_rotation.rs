//! Rotation through the official Rust SDK: RotateSecret with the built-in random-password
//! rotator, the rotation members of DescribeSecret, re-rotation from the stored
//! configuration, the in-progress refusal, CancelRotateSecret and bad rules.

mod common;

use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use aws_sdk_secretsmanager::types::RotationRulesType;
use common::Server;
use std::time::{Duration, Instant};

const BUILTIN: &str =
    "arn:aws:lambda:us-east-1:000000000000:function:coffer-builtin-random-password";

async fn wait_current(client: &aws_sdk_secretsmanager::Client, name: &str, version: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let d = client.describe_secret().secret_id(name).send().await.unwrap();
        let stages = d.version_ids_to_stages().cloned().unwrap_or_default();
        if stages.get(version).is_some_and(|s| s.iter().any(|l| l == "AWSCURRENT")) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{version} never became AWSCURRENT");
}

#[tokio::test]
async fn rotation_with_the_builtin_rotator_through_the_sdk() {
    let server = Server::dev();
    let client = server.client();
    client
        .create_secret()
        .name("sdk-rot")
        .secret_string(r#"{"username":"u","password":"p"}"#)
        .send()
        .await
        .unwrap();
    let never = client.describe_secret().secret_id("sdk-rot").send().await.unwrap();
    assert_eq!(never.rotation_enabled(), None);
    assert!(never.rotation_rules().is_none() && never.next_rotation_date().is_none());

    let rules =
        RotationRulesType::builder().schedule_expression("rate(10 days)").duration("4h").build();
    let first = client
        .rotate_secret()
        .secret_id("sdk-rot")
        .rotation_lambda_arn(BUILTIN)
        .rotation_rules(rules)
        .send()
        .await
        .unwrap();
    let first_version = first.version_id().unwrap().to_string();
    wait_current(&client, "sdk-rot", &first_version).await;
    let d = client.describe_secret().secret_id("sdk-rot").send().await.unwrap();
    assert_eq!(d.rotation_enabled(), Some(true));
    assert_eq!(d.rotation_lambda_arn(), Some(BUILTIN));
    let rules = d.rotation_rules().unwrap();
    assert_eq!(rules.automatically_after_days(), Some(10));
    assert_eq!(rules.schedule_expression(), Some("rate(10 days)"));
    assert_eq!(rules.duration(), Some("4h"));
    assert!(d.last_rotated_date().is_some());
    // rate(10 days) from today, a 4-hour window from 00:00 UTC: its last second is 03:59:59.
    let next = d.next_rotation_date().unwrap().secs();
    assert_eq!(next.rem_euclid(86_400), 4 * 3600 - 1);
    let value = client.get_secret_value().secret_id("sdk-rot").send().await.unwrap();
    let json: serde_json::Value = serde_json::from_str(value.secret_string().unwrap()).unwrap();
    assert_eq!(json["username"], "u");
    assert_ne!(json["password"], "p");

    // Again from the stored configuration.
    let second = client.rotate_secret().secret_id("sdk-rot").send().await.unwrap();
    wait_current(&client, "sdk-rot", second.version_id().unwrap()).await;

    // A version pending elsewhere blocks rotation.
    client
        .put_secret_value()
        .secret_id("sdk-rot")
        .secret_string("half-done")
        .version_stages("AWSPENDING")
        .send()
        .await
        .unwrap();
    let err = client.rotate_secret().secret_id("sdk-rot").send().await.unwrap_err();
    assert_eq!(err.code(), Some("InvalidRequestException"));
    assert_eq!(
        err.message(),
        Some("A previous rotation isn't complete. That rotation will be reattempted.")
    );

    let cancelled = client.cancel_rotate_secret().secret_id("sdk-rot").send().await.unwrap();
    assert_eq!(cancelled.name(), Some("sdk-rot"));
    let d = client.describe_secret().secret_id("sdk-rot").send().await.unwrap();
    assert_eq!(d.rotation_enabled(), Some(false));
    assert_eq!(d.rotation_lambda_arn(), Some(BUILTIN));
    assert!(d.next_rotation_date().is_none());

    let bad = RotationRulesType::builder().schedule_expression("cron(30 4 * * ? *)").build();
    let err =
        client.rotate_secret().secret_id("sdk-rot").rotation_rules(bad).send().await.unwrap_err();
    assert_eq!(err.code(), Some("InvalidParameterException"));
}

/// The roles the PostgreSQL rotation tests make, which must log in with their password.
const PG_ROLES: &str = "sdk_single,sdk_app,sdk_app_clone,sdk_master";

/// A throwaway PostgreSQL whose test roles log in with passwords (it trusts everyone else).
fn postgres_with_passwords() -> coffer_store::testing::TestPostgres {
    let pg = coffer_store::testing::TestPostgres::start();
    let hba = pg.admin_query("SHOW hba_file")[0][0].clone().unwrap();
    let text = std::fs::read_to_string(&hba).unwrap();
    let lines = format!(
        "host all {PG_ROLES} 127.0.0.1/32 scram-sha-256\nhost all {PG_ROLES} ::1/128 scram-sha-256\n"
    );
    std::fs::write(&hba, format!("{lines}{text}")).unwrap();
    pg.admin_query("SELECT pg_reload_conf()");
    pg
}

async fn logs_in(value: &str) -> bool {
    let secret = coffer_rotation::postgres::DbSecret::parse(value.as_bytes()).unwrap();
    coffer_rotation::postgres::test_login(&secret).await.is_ok()
}

async fn current_value(client: &aws_sdk_secretsmanager::Client, name: &str) -> String {
    let out = client.get_secret_value().secret_id(name).send().await.unwrap();
    out.secret_string().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn builtin_postgres_rotators_change_real_credentials() {
    let pg = tokio::task::spawn_blocking(postgres_with_passwords).await.unwrap();
    let port = pg.port();
    let admin = |sql: &'static str| {
        let pg = &pg;
        pg.admin_query(sql);
    };
    admin("CREATE ROLE sdk_single LOGIN PASSWORD 'single-old'");
    admin("CREATE ROLE sdk_master LOGIN CREATEROLE PASSWORD 'master-pass'");
    admin("CREATE ROLE sdk_app LOGIN PASSWORD 'app-old'");
    admin("GRANT sdk_app TO sdk_master WITH ADMIN OPTION");
    let value = |user: &str, password: &str, extra: &str| {
        format!(
            r#"{{"engine":"postgres","host":"127.0.0.1","port":{port},"username":"{user}","password":"{password}","dbname":"postgres"{extra}}}"#
        )
    };
    let server = Server::dev();
    let client = server.client();

    // Single user: the new password logs in, the old one no longer does.
    let old = value("sdk_single", "single-old", "");
    assert!(logs_in(&old).await);
    client.create_secret().name("pg-single").secret_string(&old).send().await.unwrap();
    let arn = "arn:aws:lambda:us-east-1:000000000000:function:coffer-builtin-postgres-single-user";
    let rotated = client
        .rotate_secret()
        .secret_id("pg-single")
        .rotation_lambda_arn(arn)
        .send()
        .await
        .unwrap();
    wait_current(&client, "pg-single", rotated.version_id().unwrap()).await;
    let new = current_value(&client, "pg-single").await;
    assert_ne!(new, old);
    assert!(logs_in(&new).await, "AWSCURRENT logs in");
    assert!(!logs_in(&old).await, "the old password no longer logs in");

    // Alternating users: the clone is created; both users log in.
    let master = client
        .create_secret()
        .name("pg-master")
        .secret_string(value("sdk_master", "master-pass", ""))
        .send()
        .await
        .unwrap();
    let old = value("sdk_app", "app-old", &format!(r#","masterarn":"{}""#, master.arn().unwrap()));
    client.create_secret().name("pg-app").secret_string(&old).send().await.unwrap();
    let arn =
        "arn:aws:lambda:us-east-1:000000000000:function:coffer-builtin-postgres-alternating-users";
    let rotated =
        client.rotate_secret().secret_id("pg-app").rotation_lambda_arn(arn).send().await.unwrap();
    wait_current(&client, "pg-app", rotated.version_id().unwrap()).await;
    let new = current_value(&client, "pg-app").await;
    let parsed: serde_json::Value = serde_json::from_str(&new).unwrap();
    assert_eq!(parsed["username"], "sdk_app_clone");
    assert!(logs_in(&new).await, "AWSCURRENT (the clone) logs in");
    assert!(logs_in(&old).await, "the previous user still logs in");
    let roles =
        pg.admin_query("SELECT rolname FROM pg_roles WHERE rolname LIKE 'sdk_app%' ORDER BY 1");
    assert_eq!(roles.len(), 2);
    tokio::task::spawn_blocking(move || drop(pg)).await.unwrap();
}

/// Two nodes on one PostgreSQL database: rotations started on a node that is then killed
/// are carried out by the other, each exactly once (one AWSCURRENT, one new version).
#[tokio::test(flavor = "multi_thread")]
async fn rotations_of_a_killed_node_complete_once_on_the_other_node() {
    const MASTER_KEY: &str = "c2hhcmVkLW1hc3Rlci1rZXktZm9yLWFsbC1ub2RlcyE=";
    let database = tokio::task::spawn_blocking(|| {
        coffer_store::testing::TestPostgres::shared().create_database()
    })
    .await
    .unwrap();
    let node = |dir: &std::path::Path| {
        Server::start(
            &[
                "serve",
                "--dev",
                "--listen",
                "127.0.0.1:0",
                "--store",
                &database.url,
                "--data-dir",
                dir.to_str().unwrap(),
                "--sweep-interval",
                "1",
            ],
            &[("COFFER_MASTER_KEY", MASTER_KEY)],
        )
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = node(dir_a.path());
    let b = node(dir_b.path());
    let (client_a, client_b) = (a.client(), b.client());
    let mut tokens = Vec::new();
    for i in 0..8 {
        let name = format!("two-nodes-{i}");
        client_b.create_secret().name(&name).secret_string("v").send().await.unwrap();
        let out = client_a
            .rotate_secret()
            .secret_id(&name)
            .rotation_lambda_arn(BUILTIN)
            .send()
            .await
            .unwrap();
        tokens.push((name, out.version_id().unwrap().to_string()));
    }
    a.kill();
    for (name, token) in &tokens {
        // A claim of the dead node runs out after three background rounds.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let d = client_b.describe_secret().secret_id(name).send().await.unwrap();
            let stages = d.version_ids_to_stages().cloned().unwrap_or_default();
            let current: Vec<_> =
                stages.iter().filter(|(_, s)| s.iter().any(|l| l == "AWSCURRENT")).collect();
            assert_eq!(current.len(), 1, "{name}: {stages:?}");
            if current[0].0 == token {
                assert_eq!(stages.len(), 2, "{name}: one new version only: {stages:?}");
                break;
            }
            assert!(Instant::now() < deadline, "{name} was never rotated: {stages:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    drop(b);
}
