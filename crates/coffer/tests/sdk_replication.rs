//! Multi-region replication (issue 16) through the official Rust SDK, on SQLite and on
//! PostgreSQL: every operation, refused writes on a replica, a replica key of its own
//! region (a disabled one fails the region), ForceOverwrite, propagation, the filter,
//! deletion rules and promotion.

mod common;

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use aws_sdk_secretsmanager::types::{
    Filter, FilterNameStringType, ReplicaRegionType, StatusType, Tag,
};
use coffer_store::testing::TestPostgres;
use common::{Server, client_for, kms_client_in};

const PRIMARY: &str = "us-east-1";
const EU: &str = "eu-west-1";
const AP: &str = "ap-south-1";
const KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
const MASTER_KEY: &str = "cmVwbGljYXRpb24tdGVzdHMtbWFzdGVyLWtleS0zMiE=";
const REFUSAL: &str =
    "Operation not permitted on a replica secret. Call must be made in primary secret's region.";

fn region(name: &str) -> ReplicaRegionType {
    ReplicaRegionType::builder().region(name).build()
}

fn in_region(arn: &str, region: &str) -> String {
    let mut parts: Vec<&str> = arn.splitn(5, ':').collect();
    parts[3] = region;
    parts.join(":")
}

async fn value(client: &Client, id: &str) -> String {
    let out = client.get_secret_value().secret_id(id).send().await.unwrap();
    out.secret_string().unwrap().to_string()
}

/// Description, tags and each version's labels and value, as `client` reads them.
async fn state(client: &Client, id: &str) -> (Option<String>, Vec<(String, String)>, Vec<String>) {
    let d = client.describe_secret().secret_id(id).send().await.unwrap();
    let mut tags: Vec<(String, String)> = d
        .tags()
        .iter()
        .map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string()))
        .collect();
    tags.sort();
    let mut versions = Vec::new();
    for (vid, labels) in d.version_ids_to_stages().into_iter().flatten() {
        let v = client.get_secret_value().secret_id(id).version_id(vid).send().await.unwrap();
        let mut labels = labels.clone();
        labels.sort();
        versions.push(format!("{vid}={labels:?}={}", v.secret_string().unwrap_or("")));
    }
    versions.sort();
    (d.description().map(str::to_string), tags, versions)
}

async fn exercise(url: &str) {
    let primary = client_for(url, KEY_ID, PRIMARY);
    let eu = client_for(url, KEY_ID, EU);
    let ap = client_for(url, KEY_ID, AP);

    // CreateSecret with replicas: one in-sync replica per region, the primary's ARN moved.
    let created = primary
        .create_secret()
        .name("app/db")
        .secret_string("one")
        .description("first")
        .add_replica_regions(region(EU))
        .add_replica_regions(region(AP))
        .send()
        .await
        .unwrap();
    let arn = created.arn().unwrap().to_string();
    let statuses: Vec<_> =
        created.replication_status().iter().map(|s| s.status().cloned()).collect();
    assert_eq!(statuses, vec![Some(StatusType::InSync), Some(StatusType::InSync)]);
    let replica = eu.describe_secret().secret_id("app/db").send().await.unwrap();
    assert_eq!(replica.arn(), Some(in_region(&arn, EU).as_str()));
    assert_eq!(replica.primary_region(), Some(PRIMARY));
    assert_eq!(value(&ap, "app/db").await, "one");

    // Every write to a replica is refused with AWS's message.
    let err =
        eu.put_secret_value().secret_id("app/db").secret_string("no").send().await.unwrap_err();
    assert_eq!(err.code(), Some("InvalidParameterException"));
    assert_eq!(err.message(), Some(REFUSAL));
    let err = ap
        .tag_resource()
        .secret_id(in_region(&arn, AP))
        .tags(Tag::builder().key("k").value("v").build())
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.message(), Some(REFUSAL));

    // Changes to the primary reach both replicas.
    primary.put_secret_value().secret_id("app/db").secret_string("two").send().await.unwrap();
    primary
        .tag_resource()
        .secret_id("app/db")
        .tags(Tag::builder().key("team").value("x").build())
        .send()
        .await
        .unwrap();
    primary.update_secret().secret_id("app/db").description("second").send().await.unwrap();
    let expected = state(&primary, "app/db").await;
    assert_eq!(state(&eu, "app/db").await, expected);
    assert_eq!(state(&ap, "app/db").await, expected);

    // The primary-region filter selects the replica in its region.
    eu.create_secret().name("eu/local").secret_string("l").send().await.unwrap();
    let listed = eu
        .list_secrets()
        .filters(Filter::builder().key(FilterNameStringType::PrimaryRegion).values(PRIMARY).build())
        .send()
        .await
        .unwrap();
    let names: Vec<_> = listed.secret_list().iter().filter_map(|s| s.name()).collect();
    assert_eq!(names, vec!["app/db"]);

    // A disabled key in the replica region fails that region; the call succeeds.
    let us_west = client_for(url, KEY_ID, "us-west-2");
    us_west.create_secret().name("app/db").secret_string("theirs").send().await.unwrap();
    let key = kms_client_in(url, "us-west-2").create_key().send().await.unwrap();
    let key = key.key_metadata().unwrap().arn().unwrap().to_string();
    kms_client_in(url, "us-west-2").disable_key().key_id(&key).send().await.unwrap();
    let out = primary
        .replicate_secret_to_regions()
        .secret_id("app/db")
        .add_replica_regions(
            ReplicaRegionType::builder().region("us-west-2").kms_key_id(&key).build(),
        )
        .force_overwrite_replica_secret(true)
        .send()
        .await
        .unwrap();
    let west = out.replication_status().iter().find(|s| s.region() == Some("us-west-2")).unwrap();
    assert_eq!(west.status(), Some(&StatusType::Failed));
    assert_eq!(value(&us_west, "app/db").await, "theirs");
    // With the region's default key, ForceOverwrite replaces the standalone secret.
    let out = primary
        .replicate_secret_to_regions()
        .secret_id("app/db")
        .add_replica_regions(region("us-west-2"))
        .force_overwrite_replica_secret(true)
        .send()
        .await
        .unwrap();
    assert!(out.replication_status().iter().all(|s| s.status() == Some(&StatusType::InSync)));
    assert_eq!(value(&us_west, "app/db").await, "two");

    // Deletion: refused while replicas remain; RemoveRegionsFromReplication deletes them.
    let err = primary
        .delete_secret()
        .secret_id("app/db")
        .force_delete_without_recovery(true)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidParameterException"));
    let out = primary
        .remove_regions_from_replication()
        .secret_id("app/db")
        .remove_replica_regions("us-west-2")
        .remove_replica_regions(AP)
        .send()
        .await
        .unwrap();
    assert_eq!(out.arn(), Some(arn.as_str()));
    assert_eq!(out.replication_status().len(), 1);
    let gone = ap.describe_secret().secret_id("app/db").send().await.unwrap_err();
    assert_eq!(gone.code(), Some("ResourceNotFoundException"));

    // Promotion, called in the replica's region.
    let out = eu.stop_replication_to_replica().secret_id("app/db").send().await.unwrap();
    assert_eq!(out.arn(), Some(in_region(&arn, EU).as_str()));
    eu.put_secret_value().secret_id("app/db").secret_string("own").send().await.unwrap();
    assert_eq!(value(&eu, "app/db").await, "own");
    assert_eq!(value(&primary, "app/db").await, "two");
    primary
        .delete_secret()
        .secret_id("app/db")
        .force_delete_without_recovery(true)
        .send()
        .await
        .unwrap();
    assert_eq!(value(&eu, "app/db").await, "own");
}

#[tokio::test]
async fn replication_through_the_sdk_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::with_data_dir(dir.path());
    exercise(&server.url).await;
}

#[tokio::test]
async fn replication_through_the_sdk_on_postgres() {
    let database =
        tokio::task::spawn_blocking(|| TestPostgres::shared().create_database()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &[
            "serve",
            "--dev",
            "--listen",
            "127.0.0.1:0",
            "--store",
            &database.url,
            "--data-dir",
            dir.path().to_str().unwrap(),
        ],
        &[("COFFER_MASTER_KEY", MASTER_KEY)],
    );
    exercise(&server.url).await;
}
