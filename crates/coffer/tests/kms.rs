//! The KMS API through the official Rust SDK (`aws-sdk-kms`) against the real binary, and
//! its effect on Secrets Manager: every operation, durability across a restart, key states
//! and secret reads and writes, re-encryption on a key change, bad input, and the
//! `coffer admin rotate-master-key` command.

mod common;

use common::kms_client;

use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{DataKeySpec, KeyManagerType, KeyState, Tag};
use common::Server;
use std::process::Command;

const REGION: &str = "us-east-1";

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().tag_key(key).tag_value(value).build().unwrap()
}

/// Creates a customer key and returns (key id, key ARN).
async fn create_key(kms: &aws_sdk_kms::Client) -> (String, String) {
    let created = kms.create_key().description("test key").send().await.unwrap();
    let meta = created.key_metadata().unwrap();
    (meta.key_id().to_string(), meta.arn().unwrap().to_string())
}

async fn key_state(kms: &aws_sdk_kms::Client, key_id: &str) -> KeyState {
    let described = kms.describe_key().key_id(key_id).send().await.unwrap();
    described.key_metadata().unwrap().key_state().unwrap().clone()
}

fn token(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

async fn put(sm: &aws_sdk_secretsmanager::Client, secret: &str, n: u32, value: &str) {
    sm.put_secret_value()
        .secret_id(secret)
        .client_request_token(token(n))
        .secret_string(value)
        .send()
        .await
        .unwrap();
}

async fn value_of(
    sm: &aws_sdk_secretsmanager::Client,
    secret: &str,
    stage: &str,
) -> Result<String, String> {
    match sm.get_secret_value().secret_id(secret).version_stage(stage).send().await {
        Ok(out) => Ok(out.secret_string().unwrap().to_string()),
        Err(e) => Err(e.code().unwrap_or("none").to_string()),
    }
}

#[tokio::test]
async fn every_key_management_operation_works_through_the_sdk() {
    let server = Server::dev();
    let kms = kms_client(&server.url);

    let created =
        kms.create_key().description("app key").tags(tag("team", "payments")).send().await.unwrap();
    let meta = created.key_metadata().unwrap();
    let key_id = meta.key_id().to_string();
    let arn = meta.arn().unwrap().to_string();
    assert_eq!(arn, format!("arn:aws:kms:{REGION}:000000000000:key/{key_id}"));
    assert_eq!(meta.key_state(), Some(&KeyState::Enabled));
    assert_eq!(meta.key_manager(), Some(&KeyManagerType::Customer));
    assert_eq!(meta.description(), Some("app key"));
    assert!(meta.enabled());

    let listed = kms.list_keys().send().await.unwrap();
    assert!(listed.keys().iter().any(|k| k.key_id() == Some(key_id.as_str())));
    assert!(!listed.truncated());

    // Aliases: create, find by alias, list (all and per key), retarget, delete.
    kms.create_alias().alias_name("alias/app").target_key_id(&key_id).send().await.unwrap();
    let by_alias = kms.describe_key().key_id("alias/app").send().await.unwrap();
    assert_eq!(by_alias.key_metadata().unwrap().key_id(), key_id);
    let aliases = kms.list_aliases().key_id(&key_id).send().await.unwrap();
    let names: Vec<_> = aliases.aliases().iter().filter_map(|a| a.alias_name()).collect();
    assert_eq!(names, ["alias/app"]);
    assert_eq!(
        aliases.aliases()[0].alias_arn(),
        Some(format!("arn:aws:kms:{REGION}:000000000000:alias/app").as_str())
    );
    let (other_id, other_arn) = create_key(&kms).await;
    kms.update_alias().alias_name("alias/app").target_key_id(&other_arn).send().await.unwrap();
    let retargeted = kms.describe_key().key_id("alias/app").send().await.unwrap();
    assert_eq!(retargeted.key_metadata().unwrap().key_id(), other_id);
    kms.delete_alias().alias_name("alias/app").send().await.unwrap();
    let err = kms.describe_key().key_id("alias/app").send().await.unwrap_err();
    assert_eq!(err.code(), Some("NotFoundException"));

    // Tags.
    kms.tag_resource().key_id(&arn).tags(tag("env", "prod")).send().await.unwrap();
    kms.untag_resource().key_id(&key_id).tag_keys("team").send().await.unwrap();
    let tags = kms.list_resource_tags().key_id(&key_id).send().await.unwrap();
    let pairs: Vec<_> = tags.tags().iter().map(|t| (t.tag_key(), t.tag_value())).collect();
    assert_eq!(pairs, [("env", "prod")]);

    // Rotation: automatic flag and on-demand rotation with a new material.
    let status = kms.get_key_rotation_status().key_id(&key_id).send().await.unwrap();
    assert!(!status.key_rotation_enabled());
    kms.enable_key_rotation().key_id(&key_id).rotation_period_in_days(180).send().await.unwrap();
    let status = kms.get_key_rotation_status().key_id(&key_id).send().await.unwrap();
    assert!(status.key_rotation_enabled());
    assert_eq!(status.rotation_period_in_days(), Some(180));
    assert!(status.next_rotation_date().is_some());
    kms.disable_key_rotation().key_id(&key_id).send().await.unwrap();
    assert!(
        !kms.get_key_rotation_status().key_id(&key_id).send().await.unwrap().key_rotation_enabled()
    );

    let before = kms.encrypt().key_id(&key_id).plaintext(Blob::new("v1")).send().await.unwrap();
    let material_before = kms.describe_key().key_id(&key_id).send().await.unwrap();
    let material_before =
        material_before.key_metadata().unwrap().current_key_material_id().unwrap().to_string();
    kms.rotate_key_on_demand().key_id(&key_id).send().await.unwrap();
    let material_after = kms.describe_key().key_id(&key_id).send().await.unwrap();
    let material_after =
        material_after.key_metadata().unwrap().current_key_material_id().unwrap().to_string();
    assert_ne!(material_before, material_after);
    let after = kms.encrypt().key_id(&key_id).plaintext(Blob::new("v2")).send().await.unwrap();
    let old = kms
        .decrypt()
        .ciphertext_blob(before.ciphertext_blob().unwrap().clone())
        .send()
        .await
        .unwrap();
    assert_eq!(old.plaintext().unwrap().as_ref(), b"v1");
    assert_eq!(old.key_material_id(), Some(material_before.as_str()));
    let new = kms
        .decrypt()
        .ciphertext_blob(after.ciphertext_blob().unwrap().clone())
        .send()
        .await
        .unwrap();
    assert_eq!(new.plaintext().unwrap().as_ref(), b"v2");
    assert_eq!(new.key_material_id(), Some(material_after.as_str()));

    // States: disable, enable, schedule deletion, cancel (back to Disabled), enable.
    kms.disable_key().key_id(&key_id).send().await.unwrap();
    assert_eq!(key_state(&kms, &key_id).await, KeyState::Disabled);
    kms.enable_key().key_id(&key_id).send().await.unwrap();
    assert_eq!(key_state(&kms, &key_id).await, KeyState::Enabled);
    let scheduled =
        kms.schedule_key_deletion().key_id(&key_id).pending_window_in_days(7).send().await.unwrap();
    assert_eq!(scheduled.key_state(), Some(&KeyState::PendingDeletion));
    assert_eq!(scheduled.pending_window_in_days(), Some(7));
    assert_eq!(scheduled.key_id(), Some(arn.as_str()));
    let described = kms.describe_key().key_id(&key_id).send().await.unwrap();
    assert!(described.key_metadata().unwrap().deletion_date().is_some());
    let cancelled = kms.cancel_key_deletion().key_id(&key_id).send().await.unwrap();
    assert_eq!(cancelled.key_id(), Some(arn.as_str()));
    assert_eq!(key_state(&kms, &key_id).await, KeyState::Disabled);
    kms.enable_key().key_id(&key_id).send().await.unwrap();
}

#[tokio::test]
async fn every_cryptographic_operation_works_through_the_sdk() {
    let server = Server::dev();
    let kms = kms_client(&server.url);
    let (key_id, arn) = create_key(&kms).await;
    let (other_id, other_arn) = create_key(&kms).await;
    kms.create_alias().alias_name("alias/crypto").target_key_id(&key_id).send().await.unwrap();

    let encrypted = kms
        .encrypt()
        .key_id("alias/crypto")
        .plaintext(Blob::new("attack at dawn"))
        .encryption_context("purpose", "test")
        .send()
        .await
        .unwrap();
    assert_eq!(encrypted.key_id(), Some(arn.as_str()));
    let blob = encrypted.ciphertext_blob().unwrap().clone();
    assert!(!common::contains_bytes(blob.as_ref(), b"attack at dawn"));
    // The blob names its key: no KeyId is needed to decrypt.
    let decrypted = kms
        .decrypt()
        .ciphertext_blob(blob.clone())
        .encryption_context("purpose", "test")
        .send()
        .await
        .unwrap();
    assert_eq!(decrypted.plaintext().unwrap().as_ref(), b"attack at dawn");
    assert_eq!(decrypted.key_id(), Some(arn.as_str()));

    let moved = kms
        .re_encrypt()
        .ciphertext_blob(blob.clone())
        .source_encryption_context("purpose", "test")
        .destination_key_id(&other_id)
        .destination_encryption_context("purpose", "moved")
        .send()
        .await
        .unwrap();
    assert_eq!(moved.source_key_id(), Some(arn.as_str()));
    assert_eq!(moved.key_id(), Some(other_arn.as_str()));
    let back = kms
        .decrypt()
        .ciphertext_blob(moved.ciphertext_blob().unwrap().clone())
        .encryption_context("purpose", "moved")
        .send()
        .await
        .unwrap();
    assert_eq!(back.plaintext().unwrap().as_ref(), b"attack at dawn");
    assert_eq!(back.key_id(), Some(other_arn.as_str()));

    let data_key =
        kms.generate_data_key().key_id(&key_id).key_spec(DataKeySpec::Aes256).send().await.unwrap();
    assert_eq!(data_key.plaintext().unwrap().as_ref().len(), 32);
    let opened = kms
        .decrypt()
        .ciphertext_blob(data_key.ciphertext_blob().unwrap().clone())
        .send()
        .await
        .unwrap();
    assert_eq!(opened.plaintext().unwrap().as_ref(), data_key.plaintext().unwrap().as_ref());
    let without = kms
        .generate_data_key_without_plaintext()
        .key_id(&arn)
        .number_of_bytes(64)
        .send()
        .await
        .unwrap();
    let opened = kms
        .decrypt()
        .ciphertext_blob(without.ciphertext_blob().unwrap().clone())
        .send()
        .await
        .unwrap();
    assert_eq!(opened.plaintext().unwrap().as_ref().len(), 64);

    let random = kms.generate_random().number_of_bytes(48).send().await.unwrap();
    let again = kms.generate_random().number_of_bytes(48).send().await.unwrap();
    assert_eq!(random.plaintext().unwrap().as_ref().len(), 48);
    assert_ne!(random.plaintext().unwrap().as_ref(), again.plaintext().unwrap().as_ref());

    // DryRun checks everything and answers DryRunOperationException.
    let err = kms
        .encrypt()
        .key_id(&key_id)
        .plaintext(Blob::new("x"))
        .dry_run(true)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("DryRunOperationException"));
}

#[tokio::test]
async fn bad_input_gets_kms_errors() {
    let server = Server::dev();
    let kms = kms_client(&server.url);
    let (key_id, _) = create_key(&kms).await;
    let encrypt = |id: &str| kms.encrypt().key_id(id).plaintext(Blob::new("x")).send();

    for malformed in ["not-a-key", "alias/", "arn:aws:kms:us-east-1:000000000000:key/nope"] {
        let err = encrypt(malformed).await.unwrap_err();
        assert_eq!(err.code(), Some("NotFoundException"), "{malformed}");
        assert_eq!(err.message(), Some(format!("Invalid keyId '{malformed}'").as_str()));
    }
    let foreign = format!("arn:aws:kms:us-east-1:111122223333:key/{key_id}");
    let err = encrypt(&foreign).await.unwrap_err();
    assert_eq!(err.code(), Some("NotFoundException"));
    assert_eq!(err.message(), Some(format!("Key '{foreign}' does not exist").as_str()));
    let err = encrypt("alias/missing").await.unwrap_err();
    assert_eq!(
        err.message(),
        Some("Alias arn:aws:kms:us-east-1:000000000000:alias/missing is not found.")
    );
    let unknown = "0c1f4a5e-0000-4000-8000-000000000000";
    let err = kms.describe_key().key_id(unknown).send().await.unwrap_err();
    assert_eq!(
        err.message(),
        Some(
            format!("Key 'arn:aws:kms:us-east-1:000000000000:key/{unknown}' does not exist")
                .as_str()
        )
    );

    let blob = kms
        .encrypt()
        .key_id(&key_id)
        .plaintext(Blob::new("secret"))
        .encryption_context("k", "v")
        .send()
        .await
        .unwrap()
        .ciphertext_blob()
        .unwrap()
        .as_ref()
        .to_vec();
    let decrypt = |bytes: Vec<u8>, context: Option<(&str, &str)>| {
        let mut request = kms.decrypt().ciphertext_blob(Blob::new(bytes));
        if let Some((k, v)) = context {
            request = request.encryption_context(k, v);
        }
        request.send()
    };
    for (bytes, context) in [
        (blob[..blob.len() - 1].to_vec(), Some(("k", "v"))),
        (blob[..10].to_vec(), Some(("k", "v"))),
        (blob.clone(), None),
        (blob.clone(), Some(("k", "other"))),
        (
            blob.iter()
                .enumerate()
                .map(|(i, b)| if i == blob.len() - 5 { b ^ 1 } else { *b })
                .collect(),
            Some(("k", "v")),
        ),
    ] {
        let err = decrypt(bytes, context).await.unwrap_err();
        assert_eq!(err.code(), Some("InvalidCiphertextException"));
    }
    let (other, _) = create_key(&kms).await;
    let err = kms
        .decrypt()
        .ciphertext_blob(Blob::new(blob.clone()))
        .encryption_context("k", "v")
        .key_id(&other)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("IncorrectKeyException"));

    let err = kms
        .schedule_key_deletion()
        .key_id(&key_id)
        .pending_window_in_days(6)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ValidationException"));
    assert_eq!(key_state(&kms, &key_id).await, KeyState::Enabled, "nothing was half-written");
    let err = kms.cancel_key_deletion().key_id(&key_id).send().await.unwrap_err();
    assert_eq!(err.code(), Some("KMSInvalidStateException"));
    let err = kms
        .create_key()
        .key_spec(aws_sdk_kms::types::KeySpec::Sm2)
        .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("UnsupportedOperationException"));
    kms.create_alias().alias_name("alias/once").target_key_id(&key_id).send().await.unwrap();
    let err =
        kms.create_alias().alias_name("alias/once").target_key_id(&other).send().await.unwrap_err();
    assert_eq!(err.code(), Some("AlreadyExistsException"));
    let err = kms
        .create_alias()
        .alias_name("alias/aws/mine")
        .target_key_id(&key_id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidAliasNameException"));
    let described = kms.describe_key().key_id("alias/once").send().await.unwrap();
    assert_eq!(
        described.key_metadata().unwrap().key_id(),
        key_id,
        "the failed alias changed nothing"
    );
}

#[tokio::test]
async fn an_encryption_decrypts_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::with_data_dir(dir.path());
    let kms = kms_client(&server.url);
    let (key_id, _) = create_key(&kms).await;
    kms.create_alias().alias_name("alias/durable").target_key_id(&key_id).send().await.unwrap();
    let blob = kms
        .encrypt()
        .key_id("alias/durable")
        .plaintext(Blob::new("kept across restarts"))
        .send()
        .await
        .unwrap()
        .ciphertext_blob()
        .unwrap()
        .clone();
    server.kill();

    // Key material is on disk only wrapped: the plaintext of a blob never is, in any file.
    for file in common::files_under(dir.path()) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(!common::contains_bytes(&bytes, b"kept across restarts"), "{}", file.display());
    }

    let server = Server::with_data_dir(dir.path());
    let kms = kms_client(&server.url);
    let decrypted = kms.decrypt().ciphertext_blob(blob).send().await.unwrap();
    assert_eq!(decrypted.plaintext().unwrap().as_ref(), b"kept across restarts");
    let described = kms.describe_key().key_id("alias/durable").send().await.unwrap();
    assert_eq!(described.key_metadata().unwrap().key_id(), key_id);
}

#[tokio::test]
async fn secrets_use_aws_secretsmanager_by_default_and_report_keys_as_aws_does() {
    let server = Server::dev();
    let kms = kms_client(&server.url);
    let sm = server.client();
    let err = kms.describe_key().key_id("alias/aws/secretsmanager").send().await.unwrap_err();
    assert_eq!(err.code(), Some("NotFoundException"), "created only on first use");

    sm.create_secret().name("default-key").secret_string("v").send().await.unwrap();
    let managed = kms.describe_key().key_id("alias/aws/secretsmanager").send().await.unwrap();
    let managed = managed.key_metadata().unwrap();
    assert_eq!(managed.key_manager(), Some(&KeyManagerType::Aws));
    let described = sm.describe_secret().secret_id("default-key").send().await.unwrap();
    assert_eq!(described.kms_key_id(), None);
    let versions = sm.list_secret_version_ids().secret_id("default-key").send().await.unwrap();
    assert_eq!(versions.versions()[0].kms_key_ids(), ["DefaultEncryptionKey"]);

    // Every documented form of KmsKeyId names the same key.
    let (key_id, arn) = create_key(&kms).await;
    kms.create_alias().alias_name("alias/secrets").target_key_id(&key_id).send().await.unwrap();
    let alias_arn = "arn:aws:kms:us-east-1:000000000000:alias/secrets".to_string();
    for (i, form) in
        [key_id.clone(), arn.clone(), "alias/secrets".into(), alias_arn].iter().enumerate()
    {
        let name = format!("form-{i}");
        sm.create_secret().name(&name).kms_key_id(form).secret_string("v").send().await.unwrap();
        assert_eq!(
            sm.describe_secret().secret_id(&name).send().await.unwrap().kms_key_id(),
            Some(form.as_str())
        );
        let versions = sm.list_secret_version_ids().secret_id(&name).send().await.unwrap();
        assert_eq!(versions.versions()[0].kms_key_ids(), std::slice::from_ref(form));
        assert_eq!(value_of(&sm, &name, "AWSCURRENT").await.unwrap(), "v");
    }
    // Disabling the key makes all of them unreadable: they really are sealed under it.
    kms.disable_key().key_id(&key_id).send().await.unwrap();
    for i in 0..4 {
        assert_eq!(
            value_of(&sm, &format!("form-{i}"), "AWSCURRENT").await.unwrap_err(),
            "DecryptionFailure"
        );
    }
    assert_eq!(value_of(&sm, "default-key", "AWSCURRENT").await.unwrap(), "v");
}

#[tokio::test]
async fn update_secret_kms_key_id_re_encrypts_the_labelled_versions_only() {
    let server = Server::dev();
    let kms = kms_client(&server.url);
    let sm = server.client();
    let (old_key, _) = create_key(&kms).await;
    let (_, new_arn) = create_key(&kms).await;
    sm.create_secret()
        .name("moving")
        .kms_key_id(&old_key)
        .client_request_token(token(1))
        .secret_string("first")
        .send()
        .await
        .unwrap();
    put(&sm, "moving", 2, "second").await;
    put(&sm, "moving", 3, "third").await;
    // Version 1 has no label now; 2 is AWSPREVIOUS and 3 AWSCURRENT.

    // The seed's second example, with a key made by CreateKey.
    let updated = sm.update_secret().secret_id("moving").kms_key_id(&new_arn).send().await.unwrap();
    assert_eq!(updated.name(), Some("moving"));
    assert_eq!(updated.version_id(), None);
    let described = sm.describe_secret().secret_id("moving").send().await.unwrap();
    assert_eq!(described.kms_key_id(), Some(new_arn.as_str()));
    let versions = sm
        .list_secret_version_ids()
        .secret_id("moving")
        .include_deprecated(true)
        .send()
        .await
        .unwrap();
    for v in versions.versions() {
        let expected = if v.version_id() == Some(token(1).as_str()) { &old_key } else { &new_arn };
        assert_eq!(v.kms_key_ids(), std::slice::from_ref(expected), "{:?}", v.version_id());
    }

    // With the old key disabled, the re-encrypted versions stay readable; the unlabelled one does not.
    kms.disable_key().key_id(&old_key).send().await.unwrap();
    assert_eq!(value_of(&sm, "moving", "AWSCURRENT").await.unwrap(), "third");
    assert_eq!(value_of(&sm, "moving", "AWSPREVIOUS").await.unwrap(), "second");
    let err =
        sm.get_secret_value().secret_id("moving").version_id(token(1)).send().await.unwrap_err();
    assert_eq!(err.code(), Some("DecryptionFailure"));
    kms.enable_key().key_id(&old_key).send().await.unwrap();
    let first =
        sm.get_secret_value().secret_id("moving").version_id(token(1)).send().await.unwrap();
    assert_eq!(first.secret_string(), Some("first"));

    // New versions are sealed under the new key.
    put(&sm, "moving", 4, "fourth").await;
    kms.disable_key().key_id(&old_key).send().await.unwrap();
    assert_eq!(value_of(&sm, "moving", "AWSCURRENT").await.unwrap(), "fourth");
}

#[tokio::test]
async fn key_states_decide_whether_secrets_can_be_read_and_written() {
    let server = Server::dev();
    let kms = kms_client(&server.url);
    let sm = server.client();
    let (key_id, _) = create_key(&kms).await;
    sm.create_secret()
        .name("guarded")
        .kms_key_id(&key_id)
        .client_request_token(token(1))
        .secret_string("v1")
        .send()
        .await
        .unwrap();
    let update = |n: u32| {
        sm.update_secret()
            .secret_id("guarded")
            .client_request_token(token(n))
            .secret_string(format!("v{n}"))
            .send()
    };
    let version_count = || async {
        sm.list_secret_version_ids().secret_id("guarded").send().await.unwrap().versions().len()
    };

    kms.disable_key().key_id(&key_id).send().await.unwrap();
    assert_eq!(value_of(&sm, "guarded", "AWSCURRENT").await.unwrap_err(), "DecryptionFailure");
    let err = update(2).await.unwrap_err();
    assert_eq!(err.code(), Some("EncryptionFailure"));
    assert!(err.message().unwrap().ends_with("is disabled."), "{:?}", err.message());
    assert_eq!(version_count().await, 1, "a refused write adds no version");

    kms.enable_key().key_id(&key_id).send().await.unwrap();
    assert_eq!(value_of(&sm, "guarded", "AWSCURRENT").await.unwrap(), "v1");
    update(3).await.unwrap();

    kms.schedule_key_deletion().key_id(&key_id).pending_window_in_days(7).send().await.unwrap();
    assert_eq!(value_of(&sm, "guarded", "AWSCURRENT").await.unwrap_err(), "DecryptionFailure");
    let err = update(4).await.unwrap_err();
    assert_eq!(err.code(), Some("EncryptionFailure"));
    assert!(err.message().unwrap().ends_with("is pending deletion."), "{:?}", err.message());

    kms.cancel_key_deletion().key_id(&key_id).send().await.unwrap();
    // Cancelling leaves the key Disabled, as KMS does.
    assert_eq!(value_of(&sm, "guarded", "AWSCURRENT").await.unwrap_err(), "DecryptionFailure");
    assert_eq!(update(5).await.unwrap_err().code(), Some("EncryptionFailure"));

    kms.enable_key().key_id(&key_id).send().await.unwrap();
    assert_eq!(value_of(&sm, "guarded", "AWSCURRENT").await.unwrap(), "v3");
    update(6).await.unwrap();
    assert_eq!(value_of(&sm, "guarded", "AWSCURRENT").await.unwrap(), "v6");
    assert_eq!(version_count().await, 2);
}

#[tokio::test]
async fn unknown_disabled_or_malformed_keys_are_refused_and_nothing_is_written() {
    let server = Server::dev();
    let kms = kms_client(&server.url);
    let sm = server.client();
    let (key_id, _) = create_key(&kms).await;
    let unknown = "arn:aws:kms:us-east-1:000000000000:key/0c1f4a5e-0000-4000-8000-000000000000";
    let foreign = format!("arn:aws:kms:us-east-1:111122223333:key/{key_id}");
    for (key, code) in [
        (unknown.to_string(), "EncryptionFailure"),
        (foreign.clone(), "EncryptionFailure"),
        ("alias/nothing".to_string(), "EncryptionFailure"),
        ("garbage".to_string(), "InvalidParameterException"),
    ] {
        let err = sm
            .create_secret()
            .name("never")
            .kms_key_id(&key)
            .secret_string("v")
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(code), "{key}");
        let err = sm.describe_secret().secret_id("never").send().await.unwrap_err();
        assert_eq!(
            err.code(),
            Some("ResourceNotFoundException"),
            "{key}: the secret was not created"
        );
    }

    sm.create_secret().name("kept").kms_key_id(&key_id).secret_string("v").send().await.unwrap();
    let err = sm.update_secret().secret_id("kept").kms_key_id(unknown).send().await.unwrap_err();
    assert_eq!(err.code(), Some("EncryptionFailure"));
    let described = sm.describe_secret().secret_id("kept").send().await.unwrap();
    assert_eq!(
        described.kms_key_id(),
        Some(key_id.as_str()),
        "the key change was not half-written"
    );
    assert_eq!(value_of(&sm, "kept", "AWSCURRENT").await.unwrap(), "v");

    // Moving away from a disabled key needs to decrypt under it: refused, nothing changes.
    let (other, _) = create_key(&kms).await;
    kms.disable_key().key_id(&key_id).send().await.unwrap();
    let err = sm.update_secret().secret_id("kept").kms_key_id(&other).send().await.unwrap_err();
    assert_eq!(err.code(), Some("DecryptionFailure"));
    kms.enable_key().key_id(&key_id).send().await.unwrap();
    let described = sm.describe_secret().secret_id("kept").send().await.unwrap();
    assert_eq!(described.kms_key_id(), Some(key_id.as_str()));
}

#[tokio::test]
async fn rotating_the_master_key_keeps_every_value_and_is_safe_to_repeat() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let server = Server::with_data_dir(&data_dir);
    let kms = kms_client(&server.url);
    let sm = server.client();
    let (key_id, _) = create_key(&kms).await;
    sm.create_secret().name("by-default").secret_string("default value").send().await.unwrap();
    sm.create_secret()
        .name("by-key")
        .kms_key_id(&key_id)
        .secret_string("keyed value")
        .send()
        .await
        .unwrap();
    kms.rotate_key_on_demand().key_id(&key_id).send().await.unwrap();
    let blob = kms.encrypt().key_id(&key_id).plaintext(Blob::new("blob")).send().await.unwrap();
    let blob = blob.ciphertext_blob().unwrap().clone();
    server.kill();

    let old_key = std::fs::read_to_string(data_dir.join("master.key")).unwrap();
    let secrets_before = std::fs::read(data_dir.join("coffer.db")).unwrap();
    let new_key_file = dir.path().join("new.key");
    let rotate = || {
        Command::new(env!("CARGO_BIN_EXE_coffer"))
            .args(["admin", "rotate-master-key", "--data-dir"])
            .arg(&data_dir)
            .arg("--new-master-key-file")
            .arg(&new_key_file)
            .env_remove("COFFER_MASTER_KEY")
            .output()
            .unwrap()
    };
    let first = rotate();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let stdout = String::from_utf8_lossy(&first.stdout);
    // Two materials of the customer key and one of aws/secretsmanager.
    assert!(stdout.contains("re-wrapped 3 KMS key materials"), "{stdout}");
    let installed = std::fs::read_to_string(data_dir.join("master.key")).unwrap();
    assert_ne!(installed.trim(), old_key.trim());
    assert_eq!(installed.trim(), std::fs::read_to_string(&new_key_file).unwrap().trim());
    assert!(!secrets_before.is_empty());

    // An interruption between the commit and the key file install leaves the old key file
    // in place: running again notices the database is already re-wrapped and installs the key.
    std::fs::write(data_dir.join("master.key"), &old_key).unwrap();
    let second = rotate();
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    assert!(
        String::from_utf8_lossy(&second.stdout).contains("already bound to the new master key")
    );
    assert_eq!(
        std::fs::read_to_string(data_dir.join("master.key")).unwrap().trim(),
        installed.trim()
    );
    // Once finished, another run has nothing to do.
    let third = rotate();
    assert!(third.status.success(), "{}", String::from_utf8_lossy(&third.stderr));
    assert!(String::from_utf8_lossy(&third.stdout).contains("nothing to do"));

    let server = Server::with_data_dir(&data_dir);
    let kms = kms_client(&server.url);
    let sm = server.client();
    assert_eq!(value_of(&sm, "by-default", "AWSCURRENT").await.unwrap(), "default value");
    assert_eq!(value_of(&sm, "by-key", "AWSCURRENT").await.unwrap(), "keyed value");
    let decrypted = kms.decrypt().ciphertext_blob(blob).send().await.unwrap();
    assert_eq!(decrypted.plaintext().unwrap().as_ref(), b"blob");
    server.kill();

    // The old master key no longer opens this data: the server refuses to start with it.
    let output = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data_dir)
        .env("COFFER_MASTER_KEY", old_key.trim())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("master key does not match"));
}

#[tokio::test]
async fn a_master_key_rotation_interrupted_before_its_commit_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let server = Server::with_data_dir(&data_dir);
    server.client().create_secret().name("s").secret_string("value").send().await.unwrap();
    server.kill();
    let old_key = std::fs::read_to_string(data_dir.join("master.key")).unwrap();
    // A rotation that fails (the wrong current key) must leave the data and key file as they were.
    let wrong = dir.path().join("wrong.key");
    std::fs::write(&wrong, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(["admin", "rotate-master-key", "--data-dir"])
        .arg(&data_dir)
        .arg("--master-key-file")
        .arg(&wrong)
        .arg("--new-master-key-file")
        .arg(dir.path().join("new.key"))
        .env_remove("COFFER_MASTER_KEY")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("does not match"));
    assert_eq!(std::fs::read_to_string(data_dir.join("master.key")).unwrap(), old_key);
    let server = Server::with_data_dir(&data_dir);
    assert_eq!(value_of(&server.client(), "s", "AWSCURRENT").await.unwrap(), "value");
}

/// Edits a stored key record as if time had passed while the server was down.
fn age_key_record(data_dir: &std::path::Path, key_id: &str, field: &str) {
    use coffer_store::Store;
    let store = coffer_store::SqliteStore::open(&data_dir.join("coffer.db")).unwrap();
    let record_key = format!("000000000000/{REGION}/{key_id}");
    store
        .write(&mut |tx| {
            let bytes = tx.record("kms-key", &record_key)?.expect("the key is stored");
            let mut record: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            record[field] = serde_json::json!(1);
            tx.put_record("kms-key", &record_key, &serde_json::to_vec(&record).unwrap())
        })
        .unwrap();
}

#[tokio::test]
async fn a_key_deletion_and_a_rotation_that_fell_due_while_down_are_carried_out_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::with_data_dir(dir.path());
    let kms = kms_client(&server.url);
    let sm = server.client();
    let (doomed, doomed_arn) = create_key(&kms).await;
    let (rotating, rotating_arn) = create_key(&kms).await;
    kms.create_alias().alias_name("alias/doomed").target_key_id(&doomed).send().await.unwrap();
    sm.create_secret()
        .name("on-doomed")
        .kms_key_id(&doomed)
        .secret_string("v")
        .send()
        .await
        .unwrap();
    // A use: its GetKeyLastUsage record must go with the key.
    kms.encrypt().key_id(&doomed).plaintext(Blob::new("used")).send().await.unwrap();
    kms.schedule_key_deletion().key_id(&doomed).pending_window_in_days(7).send().await.unwrap();
    kms.enable_key_rotation().key_id(&rotating).send().await.unwrap();
    let old_blob =
        kms.encrypt().key_id(&rotating).plaintext(Blob::new("old")).send().await.unwrap();
    let described = kms.describe_key().key_id(&rotating).send().await.unwrap();
    let material = described.key_metadata().unwrap().current_key_material_id().unwrap().to_string();
    server.kill();

    // The deletion date and the rotation date pass while the server is down.
    age_key_record(dir.path(), &doomed, "deletion_ms");
    age_key_record(dir.path(), &rotating, "next_rotation_ms");

    let server = Server::with_data_dir(dir.path());
    let kms = kms_client(&server.url);
    let sm = server.client();
    let mut deleted = false;
    for _ in 0..50 {
        match kms.describe_key().key_id(&doomed).send().await {
            Err(e) if e.code() == Some("NotFoundException") => {
                deleted = true;
                break;
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    assert!(deleted, "the due key deletion was carried out");
    let aliases = kms.list_aliases().send().await.unwrap();
    assert!(aliases.aliases().iter().all(|a| a.alias_name() != Some("alias/doomed")));
    let err = sm.get_secret_value().secret_id("on-doomed").send().await.unwrap_err();
    assert_eq!(err.code(), Some("DecryptionFailure"), "the key material is gone for good");

    let described = kms.describe_key().key_id(&rotating).send().await.unwrap();
    let rotated = described.key_metadata().unwrap().current_key_material_id().unwrap();
    assert_ne!(rotated, material, "the due automatic rotation made new material");
    let status = kms.get_key_rotation_status().key_id(&rotating).send().await.unwrap();
    let next = status.next_rotation_date().unwrap().secs();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!(next > now as i64, "the next rotation is scheduled ahead");
    let old =
        kms.decrypt().ciphertext_blob(old_blob.ciphertext_blob().unwrap().clone()).send().await;
    assert_eq!(old.unwrap().plaintext().unwrap().as_ref(), b"old");
    server.kill();

    // Both were recorded as KMS service events in the audit trail.
    let store = coffer_store::SqliteStore::open(&dir.path().join("coffer.db")).unwrap();
    let mut service_events = Vec::new();
    let mut last_uses = Vec::new();
    coffer_store::Store::read(&store, &mut |tx| {
        last_uses = tx.records("kms.last_use", &format!("{doomed_arn}@"), None, 10)?;
        for (_, bytes) in tx.records("audit.event", "", None, 10_000)? {
            let record = coffer_audit::Record::from_bytes(&bytes).unwrap();
            let event = &record.event;
            if event["eventType"] == "AwsServiceEvent" {
                service_events.push((
                    event["eventSource"].as_str().unwrap_or("").to_string(),
                    event["eventName"].as_str().unwrap_or("").to_string(),
                    event["resources"][0]["ARN"].as_str().unwrap_or("").to_string(),
                ));
            }
        }
        Ok(())
    })
    .unwrap();
    assert!(last_uses.is_empty(), "the deleted key's last-use records went with it");
    assert!(
        service_events.contains(&("kms.amazonaws.com".into(), "DeleteKey".into(), doomed_arn)),
        "{service_events:?}"
    );
    assert!(
        service_events.contains(&("kms.amazonaws.com".into(), "RotateKey".into(), rotating_arn)),
        "{service_events:?}"
    );
}

/// Issue 22: asymmetric signing, RSA encryption, HMAC and data key pairs through the Rust SDK.
#[tokio::test]
async fn asymmetric_hmac_and_data_key_pair_operations_work_through_the_sdk() {
    use aws_sdk_kms::types::{
        DataKeyPairSpec, EncryptionAlgorithmSpec, KeySpec, KeyUsageType, MacAlgorithmSpec,
        MessageType, SigningAlgorithmSpec,
    };
    let server = Server::dev();
    let kms = kms_client(&server.url);
    let create = |spec: KeySpec, usage: KeyUsageType| {
        kms.create_key().key_spec(spec).key_usage(usage).send()
    };
    let signing = create(KeySpec::EccNistP256, KeyUsageType::SignVerify).await.unwrap();
    let signing = signing.key_metadata().unwrap().key_id().to_string();
    let signed = kms
        .sign()
        .key_id(&signing)
        .message(Blob::new("m"))
        .message_type(MessageType::Raw)
        .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
        .send()
        .await
        .unwrap();
    let verified = kms
        .verify()
        .key_id(&signing)
        .message(Blob::new("m"))
        .signature(signed.signature().unwrap().clone())
        .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
        .send()
        .await
        .unwrap();
    assert!(verified.signature_valid());
    let err = kms
        .verify()
        .key_id(&signing)
        .message(Blob::new("n"))
        .signature(signed.signature().unwrap().clone())
        .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("KMSInvalidSignatureException"));
    let public = kms.get_public_key().key_id(&signing).send().await.unwrap();
    assert_eq!(public.key_spec(), Some(&KeySpec::EccNistP256));
    assert!(public.public_key().is_some());

    let rsa = create(KeySpec::Rsa2048, KeyUsageType::EncryptDecrypt).await.unwrap();
    let rsa = rsa.key_metadata().unwrap().key_id().to_string();
    let blob = kms
        .encrypt()
        .key_id(&rsa)
        .plaintext(Blob::new("secret"))
        .encryption_algorithm(EncryptionAlgorithmSpec::RsaesOaepSha256)
        .send()
        .await
        .unwrap();
    let plain = kms
        .decrypt()
        .key_id(&rsa)
        .ciphertext_blob(blob.ciphertext_blob().unwrap().clone())
        .encryption_algorithm(EncryptionAlgorithmSpec::RsaesOaepSha256)
        .send()
        .await
        .unwrap();
    assert_eq!(plain.plaintext().unwrap().as_ref(), b"secret");

    let hmac = create(KeySpec::Hmac256, KeyUsageType::GenerateVerifyMac).await.unwrap();
    let hmac = hmac.key_metadata().unwrap().key_id().to_string();
    let mac = kms
        .generate_mac()
        .key_id(&hmac)
        .message(Blob::new("m"))
        .mac_algorithm(MacAlgorithmSpec::HmacSha256)
        .send()
        .await
        .unwrap();
    let ok = kms
        .verify_mac()
        .key_id(&hmac)
        .message(Blob::new("m"))
        .mac(mac.mac().unwrap().clone())
        .mac_algorithm(MacAlgorithmSpec::HmacSha256)
        .send()
        .await
        .unwrap();
    assert!(ok.mac_valid());

    let (symmetric, _) = create_key(&kms).await;
    let pair = kms
        .generate_data_key_pair()
        .key_id(&symmetric)
        .key_pair_spec(DataKeyPairSpec::EccNistP384)
        .send()
        .await
        .unwrap();
    let opened = kms
        .decrypt()
        .ciphertext_blob(pair.private_key_ciphertext_blob().unwrap().clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        opened.plaintext().unwrap().as_ref(),
        pair.private_key_plaintext().unwrap().as_ref()
    );
    let bare = kms
        .generate_data_key_pair_without_plaintext()
        .key_id(&symmetric)
        .key_pair_spec(DataKeyPairSpec::Rsa2048)
        .send()
        .await
        .unwrap();
    assert!(bare.public_key().is_some());
}
