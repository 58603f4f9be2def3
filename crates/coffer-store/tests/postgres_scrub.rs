//! Which writes the PostgreSQL store notes for its scrub (docs/design/postgres-scrub.md):
//! those that leave destroyed bytes in dead rows, and no others. What the scrub then does
//! to the files is tested end to end in crates/coffer/tests/pg_scrub.rs.

use coffer_core::model::{Scope, SecretMeta};
use coffer_store::fixtures::{secret_in, version_at};
use coffer_store::testing::TestPostgres;
use coffer_store::{PostgresStore, SealedValue, Store, StoreResult, WriteTxn};

fn pending(store: &PostgresStore) -> i64 {
    store.scrub_pending().unwrap()
}

#[test]
fn destructive_writes_are_noted_for_the_scrub_and_others_are_not() {
    let database = TestPostgres::shared().create_database();
    let store = PostgresStore::open(&database.url).unwrap();
    let scope = Scope::new("111111111111", "us-east-1");
    // Under the short ARN the writes below name.
    let meta = SecretMeta { arn: "arn:s".to_owned(), ..secret_in(&scope, "s", 1) };
    let version = version_at("v1", &["AWSCURRENT"], 1);
    let write =
        |f: &mut (dyn FnMut(&mut dyn WriteTxn) -> StoreResult<()> + Send)| store.write(f).unwrap();

    // Creating things destroys nothing.
    write(&mut |tx| {
        tx.insert_secret(&meta)?;
        tx.insert_version("arn:s", &version, &SealedValue(b"sealed".to_vec()))?;
        tx.put_wrapped_key("k", b"wrapped")?;
        tx.put_setting("master-key-check", b"check")?;
        tx.put_record("kms-key", "a/b/key", b"{}")?;
        tx.put_record("other-kind", "x", b"1")
    });
    assert_eq!(pending(&store), 0);
    // Nor do overwrites that keep the material, or deleting records of other kinds.
    write(&mut |tx| {
        tx.put_record("kms-key", "a/b/key", b"{\"tags\":1}")?;
        tx.put_setting("other", b"1")?;
        tx.put_setting("other", b"2")?;
        tx.delete_record("other-kind", "x")
    });
    assert_eq!(pending(&store), 0);

    // A master-key rotation's new check value and re-wrapped key, a deleted key record,
    // a re-sealed value and a deleted secret each leave destroyed bytes behind.
    write(&mut |tx| tx.put_setting("master-key-check", b"new check"));
    assert_eq!(pending(&store), 1);
    write(&mut |tx| tx.put_wrapped_key("k", b"rewrapped"));
    assert_eq!(pending(&store), 2);
    write(&mut |tx| tx.delete_record("kms-key", "a/b/key"));
    assert_eq!(pending(&store), 3);
    write(&mut |tx| tx.replace_version_value("arn:s", "v1", &SealedValue(b"again".to_vec())));
    assert_eq!(pending(&store), 4);
    write(&mut |tx| tx.delete_secret("arn:s"));
    assert_eq!(pending(&store), 5);
    // Deleting what is not there destroys nothing.
    write(&mut |tx| tx.delete_record("kms-key", "a/b/key"));
    write(&mut |tx| tx.delete_secret("arn:s"));
    assert_eq!(pending(&store), 5);
    // A key record overwritten without its imported material (deleted or expired).
    write(&mut |tx| {
        tx.put_record("kms-key", "a/b/key", b"{}")?;
        tx.note_material_overwritten()
    });
    assert_eq!(pending(&store), 6);
}
