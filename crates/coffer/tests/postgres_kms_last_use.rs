//! GetKeyLastUsage on two `coffer serve` nodes sharing one PostgreSQL database: each node
//! writes only its own last-use record of a key (`<key ARN>@<node>`), so no row is written
//! by both, and either node answers the newest use of the two.
//!
//! The database is a throwaway server started from the installed PostgreSQL binaries;
//! without them this test fails, never skips.

mod common;

use common::kms_client;

use aws_sdk_kms::primitives::Blob;
use coffer_store::testing::TestPostgres;
use coffer_store::{PostgresStore, Store};

#[test]
fn each_node_keeps_its_own_last_use_record_and_both_answer_the_newest() {
    let database = TestPostgres::shared().create_database();
    let dir = tempfile::tempdir().unwrap();
    let a = common::Server::on_postgres(&database.url, dir.path(), &[]);
    let b = common::Server::on_postgres(&database.url, dir.path(), &[]);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let arn = runtime.block_on(async {
        let (kms_a, kms_b) = (kms_client(&a.url), kms_client(&b.url));
        let key = kms_a.create_key().send().await.unwrap();
        let arn = key.key_metadata().unwrap().arn().unwrap().to_string();
        let sealed = kms_a.encrypt().key_id(&arn).plaintext(Blob::new("x")).send().await.unwrap();
        let blob = sealed.ciphertext_blob().unwrap().clone();
        kms_b.decrypt().ciphertext_blob(blob).send().await.unwrap();
        for kms in [&kms_a, &kms_b] {
            let usage = kms.get_key_last_usage().key_id(&arn).send().await.unwrap();
            let last = usage.key_last_usage().expect("a last use");
            assert_eq!(last.operation().map(|o| o.as_str()), Some("Decrypt"));
        }
        arn
    });
    drop((a, b));

    let store = PostgresStore::open(&database.url).unwrap();
    let mut records = Vec::new();
    store
        .read(&mut |tx| {
            records = tx.records("kms.last_use", &format!("{arn}@"), None, 10)?;
            Ok(())
        })
        .unwrap();
    let nodes: Vec<&str> =
        records.iter().map(|(key, _)| key.strip_prefix(&format!("{arn}@")).unwrap()).collect();
    assert_eq!(nodes.len(), 2, "one record per node: {nodes:?}");
    assert!(nodes.iter().all(|node| !node.is_empty()), "{nodes:?}");
}
