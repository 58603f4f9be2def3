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
