//! The secret lifecycle driven through the official Rust SDK against a real server.

mod common;

use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use aws_sdk_secretsmanager::primitives::Blob;
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType, Tag};
use common::Server;

fn token(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

#[tokio::test]
async fn seed_update_secret_examples_work_through_the_sdk() {
    let server = Server::dev();
    let client = server.client();
    let created = client
        .create_secret()
        .name("MyTestDatabaseSecret")
        .secret_string("v1")
        .send()
        .await
        .unwrap();

    // Example 1: description only makes no version and answers ARN and Name.
    let out = client
        .update_secret()
        .secret_id("MyTestDatabaseSecret")
        .client_request_token("EXAMPLE1-90ab-cdef-fedc-ba987EXAMPLE")
        .description("This is a new description for the secret.")
        .send()
        .await
        .unwrap();
    assert_eq!(out.arn(), created.arn());
    assert_eq!(out.name(), Some("MyTestDatabaseSecret"));
    assert_eq!(out.version_id(), None);

    // Example 2: a KMS key made with CreateKey is stored and reported (an unknown key is refused).
    let created_key = common::kms_client(&server.url).create_key().send().await.unwrap();
    let key = created_key.key_metadata().unwrap().arn().unwrap();
    let out = client
        .update_secret()
        .secret_id("MyTestDatabaseSecret")
        .kms_key_id(key)
        .send()
        .await
        .unwrap();
    assert_eq!(out.version_id(), None);
    let described =
        client.describe_secret().secret_id("MyTestDatabaseSecret").send().await.unwrap();
    assert_eq!(described.kms_key_id(), Some(key));
    assert_eq!(described.description(), Some("This is a new description for the secret."));
    assert_eq!(described.version_ids_to_stages().unwrap().len(), 1);

    // Example 3: a new value makes a version that takes AWSCURRENT.
    let out = client
        .update_secret()
        .secret_id("MyTestDatabaseSecret")
        .secret_string("{JSON STRING WITH CREDENTIALS}")
        .send()
        .await
        .unwrap();
    let new_version = out.version_id().expect("a version was made").to_string();
    let value = client.get_secret_value().secret_id("MyTestDatabaseSecret").send().await.unwrap();
    assert_eq!(value.secret_string(), Some("{JSON STRING WITH CREDENTIALS}"));
    assert_eq!(value.version_id(), Some(new_version.as_str()));
    let previous = client
        .get_secret_value()
        .secret_id("MyTestDatabaseSecret")
        .version_stage("AWSPREVIOUS")
        .send()
        .await
        .unwrap();
    assert_eq!(previous.secret_string(), Some("v1"));
    assert_eq!(previous.version_id(), created.version_id());
}

#[tokio::test]
async fn client_request_token_is_the_version_id_and_idempotent() {
    let server = Server::dev();
    let client = server.client();
    client
        .create_secret()
        .name("idem")
        .secret_string("a")
        .client_request_token(token(1))
        .send()
        .await
        .unwrap();
    let first = client
        .update_secret()
        .secret_id("idem")
        .secret_string("b")
        .client_request_token(token(2))
        .send()
        .await
        .unwrap();
    assert_eq!(first.version_id(), Some(token(2).as_str()));
    let again = client
        .update_secret()
        .secret_id("idem")
        .secret_string("b")
        .client_request_token(token(2))
        .send()
        .await
        .unwrap();
    assert_eq!(again.version_id(), Some(token(2).as_str()));
    let versions = client.list_secret_version_ids().secret_id("idem").send().await.unwrap();
    assert_eq!(versions.versions().len(), 2, "the replay made no version");
    let err = client
        .update_secret()
        .secret_id("idem")
        .secret_string("different")
        .client_request_token(token(2))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ResourceExistsException"));
}

#[tokio::test]
async fn put_secret_value_and_update_secret_version_stage_move_labels() {
    let server = Server::dev();
    let client = server.client();
    client
        .create_secret()
        .name("stages")
        .secret_string("v1")
        .client_request_token(token(1))
        .send()
        .await
        .unwrap();
    let put = client
        .put_secret_value()
        .secret_id("stages")
        .secret_string("v2")
        .client_request_token(token(2))
        .version_stages("AWSPENDING")
        .send()
        .await
        .unwrap();
    assert_eq!(put.version_stages(), ["AWSPENDING"]);
    let current = client.get_secret_value().secret_id("stages").send().await.unwrap();
    assert_eq!(current.secret_string(), Some("v1"), "AWSPENDING does not move AWSCURRENT");

    client
        .update_secret_version_stage()
        .secret_id("stages")
        .version_stage("AWSCURRENT")
        .remove_from_version_id(token(1))
        .move_to_version_id(token(2))
        .send()
        .await
        .unwrap();
    let described = client.describe_secret().secret_id("stages").send().await.unwrap();
    let map = described.version_ids_to_stages().unwrap();
    assert_eq!(map[&token(1)], ["AWSPREVIOUS"]);
    assert_eq!(map[&token(2)], ["AWSCURRENT", "AWSPENDING"]);
    let current = client.get_secret_value().secret_id("stages").send().await.unwrap();
    assert_eq!(current.secret_string(), Some("v2"));
}

#[tokio::test]
async fn binary_values_round_trip_any_bytes() {
    let server = Server::dev();
    let client = server.client();
    let bytes = vec![0u8, 1, 2, 0xff, 0x80, 0x7f];
    client
        .create_secret()
        .name("bin")
        .secret_binary(Blob::new(bytes.clone()))
        .send()
        .await
        .unwrap();
    let value = client.get_secret_value().secret_id("bin").send().await.unwrap();
    assert_eq!(value.secret_binary().unwrap().as_ref(), bytes.as_slice());
    assert_eq!(value.secret_string(), None);
}

#[tokio::test]
async fn delete_restore_and_force_delete_follow_aws() {
    let server = Server::dev();
    let client = server.client();
    let created = client.create_secret().name("gone").secret_string("x").send().await.unwrap();
    let deleted =
        client.delete_secret().secret_id("gone").recovery_window_in_days(7).send().await.unwrap();
    assert!(deleted.deletion_date().is_some());
    let err = client.get_secret_value().secret_id("gone").send().await.unwrap_err();
    assert_eq!(err.code(), Some("InvalidRequestException"));
    let err = client.create_secret().name("gone").secret_string("y").send().await.unwrap_err();
    assert_eq!(
        err.message(),
        Some(
            "You can't create this secret because a secret with this name is already scheduled for deletion."
        )
    );
    client.restore_secret().secret_id("gone").send().await.unwrap();
    assert_eq!(
        client.get_secret_value().secret_id("gone").send().await.unwrap().secret_string(),
        Some("x")
    );

    client
        .delete_secret()
        .secret_id("gone")
        .force_delete_without_recovery(true)
        .send()
        .await
        .unwrap();
    let err = client.describe_secret().secret_id("gone").send().await.unwrap_err();
    assert_eq!(err.code(), Some("ResourceNotFoundException"));
    let recreated = client.create_secret().name("gone").secret_string("z").send().await.unwrap();
    assert_ne!(recreated.arn(), created.arn(), "a re-created secret gets a new ARN suffix");
}

#[tokio::test]
async fn tags_list_filters_batch_get_and_random_password_work_through_the_sdk() {
    let server = Server::dev();
    let client = server.client();
    for i in 0..5 {
        client
            .create_secret()
            .name(format!("app/{i}"))
            .secret_string(format!("value-{i}"))
            .tags(Tag::builder().key("team").value(if i % 2 == 0 { "red" } else { "blue" }).build())
            .send()
            .await
            .unwrap();
    }
    client.create_secret().name("other").secret_string("o").send().await.unwrap();
    let red = client
        .list_secrets()
        .filters(Filter::builder().key(FilterNameStringType::TagValue).values("red").build())
        .send()
        .await
        .unwrap();
    let names: Vec<&str> = red.secret_list().iter().filter_map(|s| s.name()).collect();
    assert_eq!(names, ["app/0", "app/2", "app/4"]);

    let mut seen = Vec::new();
    let mut next = None;
    loop {
        let page = client.list_secrets().max_results(2).set_next_token(next).send().await.unwrap();
        seen.extend(page.secret_list().iter().filter_map(|s| s.name().map(str::to_string)));
        next = page.next_token().map(str::to_string);
        if next.is_none() {
            break;
        }
    }
    assert_eq!(seen.len(), 6);

    let batch = client
        .batch_get_secret_value()
        .secret_id_list("app/1")
        .secret_id_list("missing")
        .send()
        .await
        .unwrap();
    assert_eq!(batch.secret_values().len(), 1);
    assert_eq!(batch.secret_values()[0].secret_string(), Some("value-1"));
    assert_eq!(batch.errors()[0].error_code(), Some("ResourceNotFoundException"));

    client.untag_resource().secret_id("app/1").tag_keys("team").send().await.unwrap();
    let described = client.describe_secret().secret_id("app/1").send().await.unwrap();
    assert_eq!(described.tags(), &[] as &[Tag]);

    let password = client
        .get_random_password()
        .password_length(40)
        .exclude_punctuation(true)
        .send()
        .await
        .unwrap();
    let password = password.random_password().unwrap();
    assert_eq!(password.len(), 40);
    assert!(password.chars().all(|c| c.is_ascii_alphanumeric()));
}

#[tokio::test]
async fn accounts_and_regions_are_isolated() {
    let server = Server::dev();
    let default = server.client();
    let other_region = common::client_for(&server.url, "AKIAIOSFODNN7EXAMPLE", "eu-west-1");
    let other_account = common::client_for(&server.url, "111122223333", "us-east-1");
    default.create_secret().name("shared-name").secret_string("default").send().await.unwrap();
    other_region.create_secret().name("shared-name").secret_string("region").send().await.unwrap();
    let created = other_account
        .create_secret()
        .name("shared-name")
        .secret_string("account")
        .send()
        .await
        .unwrap();
    assert!(
        created
            .arn()
            .unwrap()
            .starts_with("arn:aws:secretsmanager:us-east-1:111122223333:secret:shared-name-")
    );
    for (client, expected) in
        [(&default, "default"), (&other_region, "region"), (&other_account, "account")]
    {
        let value = client.get_secret_value().secret_id("shared-name").send().await.unwrap();
        assert_eq!(value.secret_string(), Some(expected));
    }
}
