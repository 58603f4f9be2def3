//! Unit tests of the key service over the in-memory store.

use crate::ciphertext::{EncryptionContext, HEADER_LEN};
use crate::service::{ALIAS_KIND, KEY_KIND, MAX_ON_DEMAND_ROTATIONS};
use crate::*;
use coffer_core::model::DAY_MS;
use coffer_core::{ErrorCode, Scope};
use coffer_crypto::MasterKey;
use coffer_store::{MemoryStore, ReadTxn, Store, StoreError, WriteTxn};

const NOW: i64 = 1_700_000_000_000;

fn scope() -> Scope {
    Scope::new("111122223333", "us-east-1")
}

struct Fixture {
    store: MemoryStore,
    kms: Kms,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            store: MemoryStore::new(),
            kms: Kms::new(MasterKey::generate()).with_clock(|| NOW),
        }
    }

    fn write<T: Send>(
        &self,
        mut f: impl FnMut(&Kms, &mut dyn WriteTxn) -> Result<T, KmsError> + Send,
    ) -> Result<T, KmsError> {
        let mut out = None;
        let result = self.store.write(&mut |tx| match f(&self.kms, tx) {
            Ok(v) => {
                out = Some(Ok(v));
                Ok(())
            }
            Err(e) => {
                out = Some(Err(e));
                Err(StoreError::Aborted)
            }
        });
        match (result, out) {
            (_, Some(r)) => r,
            (Err(e), None) => Err(KmsError::Store(e)),
            (Ok(()), None) => unreachable!("the closure ran"),
        }
    }

    fn read<T>(
        &self,
        mut f: impl FnMut(&Kms, &dyn ReadTxn) -> Result<T, KmsError>,
    ) -> Result<T, KmsError> {
        let mut out = None;
        self.store
            .read(&mut |tx| {
                out = Some(f(&self.kms, tx));
                Ok(())
            })
            .unwrap();
        out.unwrap()
    }

    fn create(&self) -> KeyRecord {
        self.write(|kms, tx| kms.create_key(tx, &scope(), NewKey::default(), NOW)).unwrap()
    }

    fn encrypt(
        &self,
        key_id: &str,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Encrypted, KmsError> {
        self.read(|kms, tx| kms.encrypt(tx, &scope(), key_id, plaintext, context))
    }

    fn decrypt(&self, blob: &[u8], context: &EncryptionContext) -> Result<Decrypted, KmsError> {
        self.read(|kms, tx| kms.decrypt(tx, &scope(), blob, context, None))
    }
}

fn context(pairs: &[(&str, &str)]) -> EncryptionContext {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn code<T: std::fmt::Debug>(result: Result<T, KmsError>) -> ErrorCode {
    result.unwrap_err().code().expect("a client error")
}

#[test]
fn a_new_key_is_an_enabled_symmetric_customer_key_with_one_material() {
    let f = Fixture::new();
    let key = f.create();
    assert_eq!(key.state, KeyState::Enabled);
    assert_eq!(key.manager, KeyManager::Customer);
    assert_eq!(key.arn, format!("arn:aws:kms:us-east-1:111122223333:key/{}", key.key_id));
    assert!(ids::is_key_id(&key.key_id));
    assert_eq!(key.materials.len(), 1);
    assert_eq!(key.materials[0].id.len(), 64);
    assert!(!key.rotation_enabled);
}

#[test]
fn encrypt_then_decrypt_returns_the_plaintext_and_names_the_key() {
    let f = Fixture::new();
    let key = f.create();
    let ctx = context(&[("purpose", "test"), ("tenant", "a")]);
    let encrypted = f.encrypt(&key.key_id, b"attack at dawn", &ctx).unwrap();
    assert_eq!(encrypted.key_arn, key.arn);
    let decrypted = f.decrypt(&encrypted.blob, &ctx).unwrap();
    assert_eq!(decrypted.plaintext.expose(), b"attack at dawn");
    assert_eq!(decrypted.key.key_id, key.key_id);
    assert_eq!(decrypted.material_id, key.materials[0].id);
}

#[test]
fn every_key_form_encrypts_with_the_same_key() {
    let f = Fixture::new();
    let key = f.create();
    f.write(|kms, tx| kms.create_alias(tx, &scope(), "alias/app", &key.key_id, NOW)).unwrap();
    for form in [
        key.key_id.clone(),
        key.arn.clone(),
        "alias/app".to_string(),
        "arn:aws:kms:us-east-1:111122223333:alias/app".to_string(),
    ] {
        let encrypted = f.encrypt(&form, b"x", &EncryptionContext::new()).unwrap();
        assert_eq!(encrypted.key_arn, key.arn, "{form}");
    }
}

#[test]
fn a_wrong_or_missing_encryption_context_is_invalid_ciphertext() {
    let f = Fixture::new();
    let key = f.create();
    let ctx = context(&[("a", "1")]);
    let blob = f.encrypt(&key.key_id, b"secret", &ctx).unwrap().blob;
    for wrong in
        [EncryptionContext::new(), context(&[("a", "2")]), context(&[("a", "1"), ("b", "2")])]
    {
        assert_eq!(code(f.decrypt(&blob, &wrong)), ErrorCode::KmsInvalidCiphertext);
    }
}

#[test]
fn every_truncation_and_every_flipped_byte_fails_without_panicking() {
    let f = Fixture::new();
    let key = f.create();
    let blob = f.encrypt(&key.key_id, b"some plaintext", &EncryptionContext::new()).unwrap().blob;
    for len in 0..blob.len() {
        assert!(f.decrypt(&blob[..len], &EncryptionContext::new()).is_err(), "len {len}");
    }
    for i in 0..blob.len() {
        let mut tampered = blob.clone();
        tampered[i] ^= 0x01;
        let err = f.decrypt(&tampered, &EncryptionContext::new()).unwrap_err();
        let expected = if (1..17).contains(&i) {
            // The key id changed: the blob now names a key that does not exist.
            ErrorCode::AccessDenied
        } else {
            ErrorCode::KmsInvalidCiphertext
        };
        assert_eq!(err.code(), Some(expected), "byte {i}");
    }
    assert!(blob.len() > HEADER_LEN);
}

#[test]
fn decrypt_with_another_key_id_is_incorrect_key() {
    let f = Fixture::new();
    let key = f.create();
    let other = f.create();
    let blob = f.encrypt(&key.key_id, b"x", &EncryptionContext::new()).unwrap().blob;
    let err = f.read(|kms, tx| {
        kms.decrypt(tx, &scope(), &blob, &EncryptionContext::new(), Some(&other.key_id))
    });
    assert_eq!(code(err), ErrorCode::KmsIncorrectKey);
    let ok = f.read(|kms, tx| {
        kms.decrypt(tx, &scope(), &blob, &EncryptionContext::new(), Some(&key.arn))
    });
    assert_eq!(ok.unwrap().plaintext.expose(), b"x");
}

#[test]
fn another_scope_cannot_decrypt_or_name_the_key() {
    let f = Fixture::new();
    let key = f.create();
    let blob = f.encrypt(&key.key_id, b"x", &EncryptionContext::new()).unwrap().blob;
    let foreign = Scope::new("444455556666", "us-east-1");
    let err = f.read(|kms, tx| kms.decrypt(tx, &foreign, &blob, &EncryptionContext::new(), None));
    assert_eq!(code(err), ErrorCode::AccessDenied);
    let err =
        f.read(|kms, tx| kms.encrypt(tx, &foreign, &key.arn, b"x", &EncryptionContext::new()));
    let err = err.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::KmsNotFound));
    assert_eq!(err.client_message(), format!("Key '{}' does not exist", key.arn));
}

#[test]
fn disabled_and_pending_deletion_keys_refuse_cryptography_until_restored() {
    let f = Fixture::new();
    let key = f.create();
    let blob = f.encrypt(&key.key_id, b"x", &EncryptionContext::new()).unwrap().blob;
    f.write(|kms, tx| kms.disable_key(tx, &scope(), &key.key_id)).unwrap();
    let err = f.decrypt(&blob, &EncryptionContext::new()).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::KmsDisabled));
    assert_eq!(err.client_message(), format!("{} is disabled.", key.arn));
    assert_eq!(
        code(f.encrypt(&key.key_id, b"x", &EncryptionContext::new())),
        ErrorCode::KmsDisabled
    );

    f.write(|kms, tx| kms.schedule_key_deletion(tx, &scope(), &key.key_id, Some(7), NOW)).unwrap();
    let err = f.decrypt(&blob, &EncryptionContext::new()).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::KmsInvalidState));
    assert_eq!(err.client_message(), format!("{} is pending deletion.", key.arn));
    assert_eq!(
        code(f.write(|kms, tx| kms.enable_key(tx, &scope(), &key.key_id))),
        ErrorCode::KmsInvalidState
    );

    let cancelled = f.write(|kms, tx| kms.cancel_key_deletion(tx, &scope(), &key.key_id)).unwrap();
    assert_eq!(cancelled.state, KeyState::Disabled);
    assert_eq!(
        code(f.write(|kms, tx| kms.cancel_key_deletion(tx, &scope(), &key.key_id))),
        ErrorCode::KmsInvalidState
    );
    f.write(|kms, tx| kms.enable_key(tx, &scope(), &key.key_id)).unwrap();
    assert_eq!(f.decrypt(&blob, &EncryptionContext::new()).unwrap().plaintext.expose(), b"x");
}

#[test]
fn deletion_windows_outside_seven_to_thirty_days_are_refused() {
    let f = Fixture::new();
    let key = f.create();
    for days in [1, 6, 31, 365] {
        let err = f
            .write(|kms, tx| kms.schedule_key_deletion(tx, &scope(), &key.key_id, Some(days), NOW));
        assert_eq!(code(err), ErrorCode::Validation, "{days}");
    }
    let scheduled =
        f.write(|kms, tx| kms.schedule_key_deletion(tx, &scope(), &key.key_id, None, NOW)).unwrap();
    assert_eq!(scheduled.deletion_ms, Some(NOW + 30 * DAY_MS));
}

#[test]
fn a_due_deletion_removes_the_key_and_its_aliases_and_only_when_due() {
    let f = Fixture::new();
    let key = f.create();
    let kept = f.create();
    f.write(|kms, tx| kms.create_alias(tx, &scope(), "alias/doomed", &key.key_id, NOW)).unwrap();
    f.write(|kms, tx| kms.create_alias(tx, &scope(), "alias/kept", &kept.key_id, NOW)).unwrap();
    let blob = f.encrypt(&key.key_id, b"x", &EncryptionContext::new()).unwrap().blob;
    f.write(|kms, tx| kms.schedule_key_deletion(tx, &scope(), &key.key_id, Some(7), NOW)).unwrap();
    let due = NOW + 7 * DAY_MS;
    assert_eq!(f.write(|kms, tx| kms.carry_out_due(tx, due - 1)).unwrap(), DueWork::default());
    assert_eq!(f.write(|kms, tx| kms.carry_out_due(tx, due)).unwrap().deleted.len(), 1);
    assert_eq!(
        code(f.read(|kms, tx| kms.find_key(tx, &scope(), &key.key_id, Accepts::KeyOrAlias))),
        ErrorCode::KmsNotFound
    );
    assert_eq!(code(f.decrypt(&blob, &EncryptionContext::new())), ErrorCode::AccessDenied);
    let aliases = f.read(|kms, tx| kms.list_aliases(tx, &scope(), None, None, 50)).unwrap();
    let names: Vec<_> = aliases.items.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["alias/kept"]);
}

#[test]
fn rotation_keeps_old_material_for_decryption_and_encrypts_with_the_newest() {
    let f = Fixture::new();
    let key = f.create();
    let old = f.encrypt(&key.key_id, b"before", &EncryptionContext::new()).unwrap();
    let rotated =
        f.write(|kms, tx| kms.rotate_key_on_demand(tx, &scope(), &key.key_id, NOW)).unwrap();
    assert_eq!(rotated.materials.len(), 2);
    assert_eq!(rotated.materials[1].rotation, Some(RotationType::OnDemand));
    let new = f.encrypt(&key.key_id, b"after", &EncryptionContext::new()).unwrap();
    assert_eq!(old.material_id, key.materials[0].id);
    assert_eq!(new.material_id, rotated.materials[1].id);
    assert_eq!(
        f.decrypt(&old.blob, &EncryptionContext::new()).unwrap().plaintext.expose(),
        b"before"
    );
    assert_eq!(
        f.decrypt(&new.blob, &EncryptionContext::new()).unwrap().plaintext.expose(),
        b"after"
    );
}

#[test]
fn on_demand_rotations_are_limited() {
    let f = Fixture::new();
    let key = f.create();
    for _ in 0..MAX_ON_DEMAND_ROTATIONS {
        f.write(|kms, tx| kms.rotate_key_on_demand(tx, &scope(), &key.key_id, NOW)).unwrap();
    }
    let err = f.write(|kms, tx| kms.rotate_key_on_demand(tx, &scope(), &key.key_id, NOW));
    let err = err.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::LimitExceeded));
    assert_eq!(
        err.client_message(),
        format!(
            "The on-demand rotations limit has been reached for the given keyId. No more \
             on-demand rotations can be performed for this key: {}",
            key.arn
        )
    );
}

#[test]
fn automatic_rotation_happens_when_due_and_is_rescheduled() {
    let f = Fixture::new();
    let key = f.create();
    let enabled = f
        .write(|kms, tx| kms.enable_key_rotation(tx, &scope(), &key.key_id, Some(90), NOW))
        .unwrap();
    assert_eq!(enabled.next_rotation_ms, Some(NOW + 90 * DAY_MS));
    let due = NOW + 90 * DAY_MS;
    assert_eq!(f.write(|kms, tx| kms.carry_out_due(tx, due - 1)).unwrap().rotated.len(), 0);
    assert_eq!(f.write(|kms, tx| kms.carry_out_due(tx, due)).unwrap().rotated.len(), 1);
    let after =
        f.read(|kms, tx| kms.find_key(tx, &scope(), &key.key_id, Accepts::KeyOnly)).unwrap();
    assert_eq!(after.materials.len(), 2);
    assert_eq!(after.materials[1].rotation, Some(RotationType::Automatic));
    assert_eq!(after.next_rotation_ms, Some(due + 90 * DAY_MS));
    let disabled = f.write(|kms, tx| kms.disable_key_rotation(tx, &scope(), &key.key_id)).unwrap();
    assert!(!disabled.rotation_enabled);
    assert_eq!(f.write(|kms, tx| kms.carry_out_due(tx, due * 2)).unwrap().rotated.len(), 0);
}

#[test]
fn aliases_are_unique_reserved_names_are_refused_and_updates_retarget() {
    let f = Fixture::new();
    let a = f.create();
    let b = f.create();
    f.write(|kms, tx| kms.create_alias(tx, &scope(), "alias/app", &a.key_id, NOW)).unwrap();
    let err =
        f.write(|kms, tx| kms.create_alias(tx, &scope(), "alias/app", &b.key_id, NOW)).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::KmsAlreadyExists));
    assert_eq!(
        err.client_message(),
        "An alias with the name arn:aws:kms:us-east-1:111122223333:alias/app already exists"
    );
    for (name, expected) in [
        ("app", ErrorCode::Validation),
        ("alias/aws/mine", ErrorCode::KmsInvalidAliasName),
        ("alias/", ErrorCode::KmsInvalidAliasName),
        ("alias/my:alias", ErrorCode::Validation),
    ] {
        assert_eq!(
            code(f.write(|kms, tx| kms.create_alias(tx, &scope(), name, &a.key_id, NOW))),
            expected,
            "{name}"
        );
    }
    let err = f.write(|kms, tx| kms.create_alias(tx, &scope(), "alias/two", "alias/app", NOW));
    assert_eq!(code(err), ErrorCode::Validation);
    f.write(|kms, tx| kms.update_alias(tx, &scope(), "alias/app", &b.arn, NOW + 1)).unwrap();
    assert_eq!(f.encrypt("alias/app", b"x", &EncryptionContext::new()).unwrap().key_arn, b.arn);
    f.write(|kms, tx| kms.delete_alias(tx, &scope(), "alias/app")).unwrap();
    let err = f.encrypt("alias/app", b"x", &EncryptionContext::new()).unwrap_err();
    assert_eq!(
        err.client_message(),
        "Alias arn:aws:kms:us-east-1:111122223333:alias/app is not found."
    );
    assert_eq!(
        code(f.write(|kms, tx| kms.delete_alias(tx, &scope(), "alias/app"))),
        ErrorCode::KmsNotFound
    );
}

#[test]
fn key_management_operations_take_no_aliases() {
    let f = Fixture::new();
    let key = f.create();
    f.write(|kms, tx| kms.create_alias(tx, &scope(), "alias/app", &key.key_id, NOW)).unwrap();
    // NotFoundException, as moto's tests of key-only operations expect (see
    // `KmsError::aliases_not_supported`); CreateGrant alone has real KMS's own words.
    for alias in ["alias/app", "alias/none", "arn:aws:kms:us-east-1:111122223333:alias/app"] {
        let err = f.write(|kms, tx| kms.disable_key(tx, &scope(), alias)).unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::KmsNotFound));
        assert_eq!(err.client_message(), format!("Invalid keyId '{alias}'"));
    }
}

#[test]
fn create_grant_refuses_aliases_by_their_form_and_takes_key_ids_and_key_arns() {
    let f = Fixture::new();
    let key = f.create();
    f.write(|kms, tx| kms.create_alias(tx, &scope(), "alias/app", &key.key_id, NOW)).unwrap();
    let grant = || crate::grants::NewGrant {
        grantee_principal: "arn:aws:iam::111122223333:role/app".into(),
        operations: vec!["Encrypt".into()],
        ..Default::default()
    };
    // An alias is refused in CreateGrant's own words whether or not it names a key.
    for alias in [
        "alias/app",
        "alias/none",
        "arn:aws:kms:us-east-1:111122223333:alias/app",
        "arn:aws:kms:us-east-1:111122223333:alias/none",
    ] {
        let err =
            f.write(|kms, tx| kms.create_grant(tx, &scope(), alias, grant(), NOW)).unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::KmsInvalidArn), "{alias}");
        assert_eq!(err.client_message(), "Key Aliases are not supported for this operation.");
    }
    // What is no key reference at all keeps the parser's answer.
    let err =
        f.write(|kms, tx| kms.create_grant(tx, &scope(), "alias/", grant(), NOW)).unwrap_err();
    assert_eq!(err.client_message(), "Invalid keyId 'alias/'");
    for reference in [key.key_id.as_str(), key.arn.as_str()] {
        let made = f.write(|kms, tx| kms.create_grant(tx, &scope(), reference, grant(), NOW));
        assert_eq!(made.unwrap().key_id, key.key_id);
    }
    let missing = key_arn(&scope(), "1234abcd-12ab-34cd-56ef-1234567890ab");
    let err =
        f.write(|kms, tx| kms.create_grant(tx, &scope(), &missing, grant(), NOW)).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::KmsNotFound));
}

#[test]
fn the_secrets_manager_key_is_created_once_per_scope_as_an_aws_managed_key() {
    let f = Fixture::new();
    let first = f.write(|kms, tx| kms.key_for_secret(tx, &scope(), None, NOW)).unwrap();
    assert_eq!(first.manager, KeyManager::Aws);
    assert!(first.rotation_enabled);
    for given in [Some(""), Some("alias/aws/secretsmanager"), None] {
        let again = f.write(|kms, tx| kms.key_for_secret(tx, &scope(), given, NOW)).unwrap();
        assert_eq!(again.key_id, first.key_id);
    }
    let other_region = Scope::new("111122223333", "eu-west-1");
    let other = f.write(|kms, tx| kms.key_for_secret(tx, &other_region, None, NOW)).unwrap();
    assert_ne!(other.key_id, first.key_id);
    let described = f
        .read(|kms, tx| kms.find_key(tx, &scope(), "alias/aws/secretsmanager", Accepts::KeyOrAlias))
        .unwrap();
    assert_eq!(described.key_id, first.key_id);
    assert_eq!(
        code(f.write(|kms, tx| kms.disable_key(tx, &scope(), &first.key_id))),
        ErrorCode::AccessDenied
    );
    assert_eq!(
        code(f.write(|kms, tx| kms.schedule_key_deletion(tx, &scope(), &first.key_id, None, NOW))),
        ErrorCode::AccessDenied
    );
}

#[test]
fn key_for_secret_refuses_unknown_disabled_and_pending_keys() {
    let f = Fixture::new();
    let key = f.create();
    assert_eq!(
        code(f.write(|kms, tx| kms.key_for_secret(tx, &scope(), Some("alias/none"), NOW))),
        ErrorCode::KmsNotFound
    );
    assert_eq!(
        code(f.write(|kms, tx| kms.key_for_secret(tx, &scope(), Some("nonsense"), NOW))),
        ErrorCode::KmsNotFound
    );
    f.write(|kms, tx| kms.disable_key(tx, &scope(), &key.key_id)).unwrap();
    assert_eq!(
        code(f.write(|kms, tx| kms.key_for_secret(tx, &scope(), Some(&key.arn), NOW))),
        ErrorCode::KmsDisabled
    );
}

#[test]
fn listings_page_with_opaque_markers() {
    let f = Fixture::new();
    let mut ids: Vec<String> = (0..5).map(|_| f.create().key_id).collect();
    ids.sort();
    let mut seen = Vec::new();
    let mut marker = None;
    loop {
        let page = f.read(|kms, tx| kms.list_keys(tx, &scope(), marker.as_deref(), 2)).unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.iter().map(|k| k.key_id.clone()));
        match page.next_marker {
            Some(m) => marker = Some(m),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    let err = f.read(|kms, tx| kms.list_keys(tx, &scope(), Some("!!not a marker!!"), 2));
    assert_eq!(code(err), ErrorCode::KmsInvalidMarker);
}

#[test]
fn tags_merge_by_key_refuse_the_aws_prefix_and_page() {
    let f = Fixture::new();
    let key = f.create();
    let tag = |k: &str, v: &str| Tag { key: k.into(), value: v.into() };
    f.write(|kms, tx| kms.tag_resource(tx, &scope(), &key.key_id, &[tag("a", "1"), tag("b", "2")]))
        .unwrap();
    f.write(|kms, tx| kms.tag_resource(tx, &scope(), &key.arn, &[tag("a", "3")])).unwrap();
    let page =
        f.read(|kms, tx| kms.list_resource_tags(tx, &scope(), &key.key_id, None, 1)).unwrap();
    assert_eq!(page.items, vec![tag("a", "3")]);
    let rest = f
        .read(|kms, tx| {
            kms.list_resource_tags(tx, &scope(), &key.key_id, page.next_marker.as_deref(), 5)
        })
        .unwrap();
    assert_eq!(rest.items, vec![tag("b", "2")]);
    assert!(rest.next_marker.is_none());
    let err = f.write(|kms, tx| kms.tag_resource(tx, &scope(), &key.key_id, &[tag("aws:x", "1")]));
    assert_eq!(code(err), ErrorCode::KmsTag);
    f.write(|kms, tx| {
        kms.untag_resource(tx, &scope(), &key.key_id, &["a".to_string(), "zz".to_string()])
    })
    .unwrap();
    let left =
        f.read(|kms, tx| kms.list_resource_tags(tx, &scope(), &key.key_id, None, 50)).unwrap();
    assert_eq!(left.items, vec![tag("b", "2")]);
    let many: Vec<Tag> = (0..51).map(|i| tag(&format!("k{i}"), "v")).collect();
    let err = f.write(|kms, tx| kms.tag_resource(tx, &scope(), &key.key_id, &many)).unwrap_err();
    assert_eq!((err.code(), err.client_message()), (Some(ErrorCode::KmsTag), "Too many tags"));
}

#[test]
fn tag_rules_are_kms_own() {
    let f = Fixture::new();
    let key = f.create();
    let tag = |k: &str, v: &str| Tag { key: k.into(), value: v.into() };
    let refused = |tags: &[Tag]| {
        let err = f.write(|kms, tx| kms.tag_resource(tx, &scope(), &key.key_id, tags)).unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::KmsTag));
        err.client_message().to_string()
    };
    assert_eq!(refused(&[tag("a", "1"), tag("a", "2")]), "Duplicate tag keys");
    for reserved in ["aws:x", "AWS:x", "aWs:"] {
        assert_eq!(refused(&[tag(reserved, "1")]), "Tags beginning with aws: are reserved");
    }
    // "aws" without the colon, or a multi-byte first character, is an ordinary key.
    f.write(|kms, tx| kms.tag_resource(tx, &scope(), &key.key_id, &[tag("awsx", "1")])).unwrap();
    f.write(|kms, tx| kms.tag_resource(tx, &scope(), &key.key_id, &[tag("é:x", "1")])).unwrap();
    let fifty: Vec<Tag> = (0..48).map(|i| tag(&format!("k{i}"), "v")).collect();
    f.write(|kms, tx| kms.tag_resource(tx, &scope(), &key.key_id, &fifty)).unwrap();
    assert_eq!(refused(&[tag("one-more", "v")]), "Too many tags");
    let request = NewKey { tags: vec![tag("d", "1"), tag("d", "1")], ..NewKey::default() };
    let err = f.write(|kms, tx| kms.create_key(tx, &scope(), request.clone(), NOW)).unwrap_err();
    assert_eq!(err.client_message(), "Duplicate tag keys");
}

#[test]
fn not_found_texts_are_kms_own() {
    let f = Fixture::new();
    let key = f.create();
    let find = |id: &str| {
        f.read(|kms, tx| kms.find_key(tx, &scope(), id, Accepts::KeyOrAlias))
            .unwrap_err()
            .client_message()
            .to_string()
    };
    let other_region = key.arn.replace("us-east-1", "eu-west-1");
    assert_eq!(find(&other_region), "Invalid arn eu-west-1");
    assert_eq!(find("arn:aws:kms:eu-west-1:111122223333:alias/x"), "Invalid arn eu-west-1");
    let mrk = "mrk-1234abcd12ab34cd56ef1234567890ab";
    assert_eq!(
        find(mrk),
        format!("Key 'arn:aws:kms:us-east-1:111122223333:key/{mrk}' does not exist")
    );
    assert_eq!(find("nope"), "Invalid keyId 'nope'");
}

#[test]
fn create_key_refuses_what_coffer_cannot_make() {
    let f = Fixture::new();
    let cases = [
        (
            NewKey { key_spec: Some("SM2".into()), ..Default::default() },
            ErrorCode::KmsUnsupportedOperation,
        ),
        (
            NewKey { key_usage: Some("SIGN_VERIFY".into()), ..Default::default() },
            ErrorCode::Validation,
        ),
        (
            NewKey {
                origin: Some("EXTERNAL".into()),
                key_spec: Some("RSA_2048".into()),
                key_usage: Some("SIGN_VERIFY".into()),
                ..Default::default()
            },
            ErrorCode::KmsUnsupportedOperation,
        ),
        (
            NewKey { origin: Some("AWS_CLOUDHSM".into()), ..Default::default() },
            ErrorCode::KmsUnsupportedOperation,
        ),
        (
            NewKey {
                multi_region: true,
                key_spec: Some("HMAC_256".into()),
                key_usage: Some("GENERATE_VERIFY_MAC".into()),
                ..Default::default()
            },
            ErrorCode::KmsUnsupportedOperation,
        ),
        (
            NewKey {
                key_spec: Some("SYMMETRIC_DEFAULT".into()),
                customer_master_key_spec: Some("SYMMETRIC_DEFAULT".into()),
                ..Default::default()
            },
            ErrorCode::Validation,
        ),
        (
            NewKey { policy: Some("not json".into()), ..Default::default() },
            ErrorCode::MalformedPolicyDocument,
        ),
        (
            NewKey { custom_key_store_id: Some("cks-1".into()), ..Default::default() },
            ErrorCode::KmsCustomKeyStoreNotFound,
        ),
    ];
    for (request, expected) in cases {
        assert_eq!(
            code(f.write(|kms, tx| kms.create_key(tx, &scope(), request.clone(), NOW))),
            expected
        );
    }
    let listed = f.read(|kms, tx| kms.list_keys(tx, &scope(), None, 100)).unwrap();
    assert!(listed.items.is_empty(), "a refused CreateKey wrote nothing");
}

#[test]
fn data_keys_have_the_requested_length_and_decrypt_to_their_plaintext() {
    let f = Fixture::new();
    let key = f.create();
    assert_eq!(data_key_length(None, Some("AES_256")).unwrap(), 32);
    assert_eq!(data_key_length(None, Some("AES_128")).unwrap(), 16);
    assert_eq!(data_key_length(Some(7), None).unwrap(), 7);
    assert_eq!(code(data_key_length(None, None)), ErrorCode::Validation);
    assert_eq!(code(data_key_length(Some(32), Some("AES_256"))), ErrorCode::Validation);
    let ctx = context(&[("k", "v")]);
    let data_key =
        f.read(|kms, tx| kms.generate_data_key(tx, &scope(), &key.key_id, 32, &ctx)).unwrap();
    assert_eq!(data_key.plaintext.len(), 32);
    let decrypted = f.decrypt(&data_key.encrypted.blob, &ctx).unwrap();
    assert!(decrypted.plaintext.ct_eq(data_key.plaintext.expose()));
}

#[test]
fn re_encrypt_moves_a_blob_to_another_key_and_context() {
    let f = Fixture::new();
    let source = f.create();
    let destination = f.create();
    let blob = f.encrypt(&source.key_id, b"moving", &context(&[("from", "1")])).unwrap().blob;
    let moved = f
        .read(|kms, tx| {
            kms.re_encrypt(
                tx,
                &scope(),
                &blob,
                &context(&[("from", "1")]),
                None,
                &destination.arn,
                &context(&[("to", "2")]),
            )
        })
        .unwrap();
    assert_eq!(moved.source_key_arn, source.arn);
    assert_eq!(moved.encrypted.key_arn, destination.arn);
    let back = f.decrypt(&moved.encrypted.blob, &context(&[("to", "2")])).unwrap();
    assert_eq!(back.plaintext.expose(), b"moving");
    assert_eq!(back.key.key_id, destination.key_id);
}

#[test]
fn rewrapping_under_a_new_master_key_keeps_every_blob_readable() {
    let old_text = MasterKey::generate().to_text();
    let new_text = MasterKey::generate().to_text();
    let mut f = Fixture::new();
    f.kms = Kms::new(MasterKey::from_text(&old_text).unwrap());
    let key = f.create();
    f.write(|kms, tx| kms.rotate_key_on_demand(tx, &scope(), &key.key_id, NOW)).unwrap();
    let old_blob = f.encrypt(&key.key_id, b"before", &EncryptionContext::new()).unwrap().blob;
    let old = MasterKey::from_text(&old_text).unwrap();
    let new = MasterKey::from_text(&new_text).unwrap();
    let check = new.check_value();
    let count = f.write(|_, tx| Kms::rewrap_all(tx, &old, &new, &check)).unwrap();
    assert_eq!(count, 2, "both material versions are re-wrapped");

    // A service with the new master key reads the blob written before the re-wrap.
    f.kms = Kms::new(MasterKey::from_text(&new_text).unwrap());
    assert_eq!(
        f.decrypt(&old_blob, &EncryptionContext::new()).unwrap().plaintext.expose(),
        b"before"
    );
    // One with the old master key can no longer unwrap anything (and reports no key bytes).
    f.kms = Kms::new(MasterKey::from_text(&old_text).unwrap());
    let err = f.decrypt(&old_blob, &EncryptionContext::new()).unwrap_err();
    assert!(matches!(err, KmsError::Internal(_)), "{err:?}");
    // Re-wrapping with the wrong old key fails and changes nothing.
    let wrong = MasterKey::generate();
    assert!(f.write(|_, tx| Kms::rewrap_all(tx, &wrong, &old, &check)).is_err());
    f.kms = Kms::new(MasterKey::from_text(&new_text).unwrap());
    assert_eq!(
        f.decrypt(&old_blob, &EncryptionContext::new()).unwrap().plaintext.expose(),
        b"before"
    );
}

#[test]
fn a_rolled_back_rotation_leaves_no_trace_in_the_store_or_the_cache() {
    let f = Fixture::new();
    let key = f.create();
    // Rotate, use the new material inside the transaction, then roll back.
    let result: Result<(), KmsError> = f.write(|kms, tx| {
        let rotated = kms.rotate_key_on_demand(tx, &scope(), &key.key_id, NOW)?;
        kms.encrypt_under(&rotated, b"x", &EncryptionContext::new())?;
        Err(KmsError::validation("roll back"))
    });
    assert!(result.is_err());
    let after =
        f.read(|kms, tx| kms.find_key(tx, &scope(), &key.key_id, Accepts::KeyOnly)).unwrap();
    assert_eq!(after.materials.len(), 1);
    // A later rotation makes a new material version 2 with another id, which must be used.
    let rotated =
        f.write(|kms, tx| kms.rotate_key_on_demand(tx, &scope(), &key.key_id, NOW)).unwrap();
    let blob = f.encrypt(&key.key_id, b"y", &EncryptionContext::new()).unwrap();
    assert_eq!(blob.material_id, rotated.materials[1].id);
    assert_eq!(f.decrypt(&blob.blob, &EncryptionContext::new()).unwrap().plaintext.expose(), b"y");
}

#[test]
fn key_material_is_stored_only_wrapped() {
    let f = Fixture::new();
    let key = f.create();
    let mut raw = None;
    f.store
        .read(&mut |tx| {
            raw = tx.record(KEY_KIND, &format!("111122223333/us-east-1/{}", key.key_id))?;
            Ok(())
        })
        .unwrap();
    let raw = String::from_utf8(raw.unwrap()).unwrap();
    assert!(raw.contains(&key.materials[0].wrapped));
    assert_eq!(
        base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            &key.materials[0].wrapped
        )
        .unwrap()
        .len(),
        coffer_crypto::WRAPPED_KEY_LEN
    );
    assert!(!format!("{key:?}").contains(&key.materials[0].wrapped));
    let mut aliases = None;
    f.store
        .read(&mut |tx| {
            aliases = Some(tx.records(ALIAS_KIND, "", None, 10)?);
            Ok(())
        })
        .unwrap();
    assert!(aliases.unwrap().is_empty());
}

#[test]
fn a_key_record_changed_in_the_store_is_seen_at_the_next_use() {
    let fx = Fixture::new();
    let key = fx.create();
    let blob = fx.encrypt(&key.key_id, b"value", &context(&[])).unwrap().blob;
    assert!(fx.decrypt(&blob, &context(&[])).is_ok());
    // Disabled behind the service's back (as another node sharing the database would):
    // the record decoded for the first decrypt must not be used again.
    let record_key = format!("{}/{}/{}", scope().account, scope().region, key.key_id);
    fx.store
        .write(&mut |tx| {
            let bytes = tx.record(KEY_KIND, &record_key)?.expect("the key record");
            let mut record: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            record["state"] = serde_json::json!("Disabled");
            tx.put_record(KEY_KIND, &record_key, &serde_json::to_vec(&record).unwrap())
        })
        .unwrap();
    assert_eq!(code(fx.decrypt(&blob, &context(&[]))), ErrorCode::KmsDisabled);
}

/// A service bound to the store's master-key generation, and the store's check value.
fn bound_fixture() -> (Fixture, MasterKey, Vec<u8>) {
    let text = MasterKey::generate().to_text();
    let master = MasterKey::from_text(&text).unwrap();
    let check = master.check_value();
    let store = MemoryStore::new();
    store.write(&mut |tx| tx.put_setting(crate::MASTER_CHECK_SETTING, &check)).unwrap();
    let kms = Kms::bound(master, &check);
    (Fixture { store, kms }, MasterKey::from_text(&text).unwrap(), check)
}

#[test]
fn material_records_the_master_key_generation_that_wrapped_it() {
    let (f, _, _) = bound_fixture();
    let key = f.create();
    let generation = f.kms.generation().unwrap().to_owned();
    assert_eq!(key.materials[0].generation.as_deref(), Some(generation.as_str()));
    let rotated =
        f.write(|kms, tx| kms.rotate_key_on_demand(tx, &scope(), &key.key_id, NOW)).unwrap();
    assert!(rotated.materials.iter().all(|m| m.generation.as_deref() == Some(&*generation)));
}

#[test]
fn a_node_refuses_to_wrap_once_the_store_moved_to_another_master_key_generation() {
    let (f, master, old_check) = bound_fixture();
    let key = f.create();
    let blob = f.encrypt(&key.key_id, b"before", &context(&[])).unwrap().blob;
    // Another process rotates the master key: the store now expects a new generation.
    let new = MasterKey::generate();
    let new_check = new.check_value();
    f.store
        .write(&mut |tx| {
            Kms::rewrap_all(tx, &master, &new, &new_check).map_err(|_| StoreError::Aborted)?;
            tx.put_setting(crate::MASTER_CHECK_SETTING, &new_check)
        })
        .unwrap();
    let before = f.read(|_, tx| Ok(tx.records(KEY_KIND, "", None, 100)?)).unwrap();
    // Every path that wraps new material refuses, and nothing is written.
    let refusals = [
        f.write(|kms, tx| kms.create_key(tx, &scope(), NewKey::default(), NOW)).map(|_| ()),
        f.write(|kms, tx| kms.rotate_key_on_demand(tx, &scope(), &key.key_id, NOW)).map(|_| ()),
        f.write(|kms, tx| kms.secrets_manager_key(tx, &scope(), NOW)).map(|_| ()),
        f.write(|kms, tx| kms.key_for_secret(tx, &scope(), None, NOW)).map(|_| ()),
    ];
    for refused in refusals {
        let err = refused.unwrap_err();
        assert!(
            matches!(&err, KmsError::Internal(m) if m.contains("restart it with the new master key")),
            "{err:?}"
        );
    }
    assert_eq!(f.read(|_, tx| Ok(tx.records(KEY_KIND, "", None, 100)?)).unwrap(), before);
    // Material it unwrapped before the rotation stays usable (the material itself did not
    // change); material wrapped under the new generation fails clearly, without key bytes.
    assert_eq!(f.decrypt(&blob, &context(&[])).unwrap().plaintext.expose(), b"before");
    // (A node started with the old key before the rotation, its cache still cold.)
    let fresh = Fixture { store: f.store, kms: Kms::bound(master, &old_check) };
    let err = fresh.decrypt(&blob, &context(&[])).unwrap_err();
    assert!(
        matches!(&err, KmsError::Internal(m) if m.contains("master-key generation")),
        "{err:?}"
    );
    // A node started with the new key after the rotation wraps and reads everything.
    let current = Fixture { store: fresh.store, kms: Kms::bound(new, &new_check) };
    assert_eq!(current.decrypt(&blob, &context(&[])).unwrap().plaintext.expose(), b"before");
    current.create();
}

/// A blob written by format 1 (Coffer before format 2) under a key with id
/// 1234abcd-12ab-34cd-56ef-1234567890ab in 111122223333/us-east-1, material version 1 of
/// 32 bytes of 7, encryption context purpose=vector, plaintext `legacy blob`.
const BLOB_V1: &str = "011234abcd12ab34cd56ef1234567890ab0000000101003c9c50b0e8fa650fd5087136baa08288a4ef51065c6a5f6bce96440e45fc8784dd7d7b842bc0e9f128c77ca52bde4f3ddeb11061678a8985f849552e85ef19425a92c4c2cdf7b11b7492d1c7705aa16cfcbf2d26e2b2df9f068e70c34ce443820b3bc20b";

#[test]
fn a_blob_written_by_format_1_still_decrypts_and_new_blobs_use_format_2() {
    let text = MasterKey::generate().to_text();
    let mut f = Fixture::new();
    f.kms = Kms::new(MasterKey::from_text(&text).unwrap());
    let id = "1234abcd-12ab-34cd-56ef-1234567890ab";
    let arn = format!("arn:aws:kms:us-east-1:111122223333:key/{id}");
    let material = coffer_crypto::KeyMaterial::from_bytes(&[7u8; 32]).unwrap();
    let wrapped = MasterKey::from_text(&text)
        .unwrap()
        .wrap_key(&material, format!("coffer kms key material\0{arn}\01").as_bytes());
    let mut key = f.create();
    key.key_id = id.to_owned();
    key.arn = arn.clone();
    key.materials[0].wrapped =
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, wrapped);
    let record = serde_json::to_vec(&key).unwrap();
    f.store
        .write(&mut |tx| tx.put_record(KEY_KIND, &format!("111122223333/us-east-1/{id}"), &record))
        .unwrap();
    let blob: Vec<u8> = (0..BLOB_V1.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&BLOB_V1[i..i + 2], 16).unwrap())
        .collect();
    let vector = context(&[("purpose", "vector")]);
    let opened = f.decrypt(&blob, &vector).unwrap();
    assert_eq!(opened.plaintext.expose(), b"legacy blob");
    assert_eq!(code(f.decrypt(&blob, &context(&[]))), ErrorCode::KmsInvalidCiphertext);
    // Relabelled as format 2, the same bytes do not open: the version byte is authenticated.
    let mut relabelled = blob.clone();
    relabelled[0] = 2;
    assert_eq!(code(f.decrypt(&relabelled, &vector)), ErrorCode::KmsInvalidCiphertext);
    // New blobs are format 2 with a format 2 envelope, and a relabelled one fails too.
    let fresh = f.encrypt(id, b"new blob", &vector).unwrap().blob;
    assert_eq!((fresh[0], fresh[HEADER_LEN]), (2, 2));
    assert_eq!(f.decrypt(&fresh, &vector).unwrap().plaintext.expose(), b"new blob");
    let mut downgraded = fresh.clone();
    downgraded[0] = 1;
    assert_eq!(code(f.decrypt(&downgraded, &vector)), ErrorCode::KmsInvalidCiphertext);
}

#[test]
fn unwrapped_material_expires_from_the_cache_and_a_deleted_key_is_forgotten() {
    let mut f = Fixture::new();
    f.kms = Kms::new(MasterKey::generate()).with_material_ttl(std::time::Duration::ZERO);
    let key = f.create();
    f.encrypt(&key.key_id, b"x", &context(&[])).unwrap();
    assert_eq!(f.kms.cached_materials(), 1);
    f.kms.prune_cache();
    assert_eq!(f.kms.cached_materials(), 0, "an expired material leaves memory");

    let f = Fixture::new();
    let key = f.create();
    f.encrypt(&key.key_id, b"x", &context(&[])).unwrap();
    f.kms.prune_cache();
    assert_eq!(f.kms.cached_materials(), 1, "a fresh one stays");
    f.write(|kms, tx| kms.schedule_key_deletion(tx, &scope(), &key.key_id, Some(7), NOW)).unwrap();
    f.write(|kms, tx| kms.carry_out_due(tx, NOW + 8 * DAY_MS)).unwrap();
    assert_eq!(f.kms.cached_materials(), 0);
}

#[test]
fn rekeying_gives_every_live_key_material_the_old_master_key_never_wrapped() {
    let old_text = MasterKey::generate().to_text();
    let mut f = Fixture::new();
    f.kms = Kms::new(MasterKey::from_text(&old_text).unwrap());
    let live = f.create();
    let doomed = f.create();
    let blob = f.encrypt(&live.key_id, b"before", &context(&[])).unwrap().blob;
    f.write(|kms, tx| kms.schedule_key_deletion(tx, &scope(), &doomed.key_id, Some(7), NOW))
        .unwrap();
    let (old, new) = (MasterKey::from_text(&old_text).unwrap(), MasterKey::generate());
    let check = new.check_value();
    let rekeyed = f
        .write(|_, tx| {
            Kms::rewrap_all(tx, &old, &new, &check)?;
            Kms::rekey_all(tx, &new, &check, NOW)
        })
        .unwrap();
    assert_eq!(rekeyed, 1, "a key pending deletion gets no new material");
    f.kms = Kms::new(new);
    let key = f.read(|kms, tx| kms.find_key(tx, &scope(), &live.key_id, Accepts::KeyOnly)).unwrap();
    assert_eq!(key.materials.len(), 2);
    assert_eq!(key.on_demand_rotations, 0, "not counted against the on-demand limit");
    let after = f.encrypt(&live.key_id, b"after", &context(&[])).unwrap();
    assert_eq!(after.material_id, key.materials[1].id);
    assert_eq!(f.decrypt(&blob, &context(&[])).unwrap().plaintext.expose(), b"before");
    // The old master key cannot unwrap the new material, whatever copy of the store it has.
    let new_wrapped = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        &key.materials[1].wrapped,
    )
    .unwrap();
    let context_bytes = format!("coffer kms key material\0{}\02", key.arn);
    assert!(old.unwrap_key(&new_wrapped, context_bytes.as_bytes()).is_err());
}

fn create_pair(f: &Fixture, spec: &str, usage: &str) -> KeyRecord {
    let request =
        NewKey { key_spec: Some(spec.into()), key_usage: Some(usage.into()), ..NewKey::default() };
    f.write(|kms, tx| kms.create_key(tx, &scope(), request.clone(), NOW)).unwrap()
}

#[test]
fn asymmetric_keys_sign_verify_and_encrypt_through_their_own_keys_only() {
    let f = Fixture::new();
    let signing = create_pair(&f, "ECC_NIST_P256", "SIGN_VERIFY");
    assert!(signing.public_key.is_some());
    let sig = f.kms.sign(&signing, "ECDSA_SHA_256", b"hello", None).unwrap();
    assert!(f.kms.verify(&signing, "ECDSA_SHA_256", b"hello", None, &sig).unwrap());
    assert!(!f.kms.verify(&signing, "ECDSA_SHA_256", b"hellO", None, &sig).unwrap());
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b"hello");
    let sig = f.kms.sign(&signing, "ECDSA_SHA_256", digest.as_ref(), Some("DIGEST")).unwrap();
    assert!(f.kms.verify(&signing, "ECDSA_SHA_256", b"hello", None, &sig).unwrap());
    let short = f.kms.sign(&signing, "ECDSA_SHA_256", b"short", Some("DIGEST")).unwrap_err();
    assert_eq!(short.client_message(), "Digest is invalid length for algorithm ECDSA_SHA_256.");
    let wrong = f.kms.sign(&signing, "RSASSA_PSS_SHA_256", b"x", None).unwrap_err();
    assert_eq!(wrong.code(), Some(ErrorCode::KmsInvalidKeyUsage));
    // A signing key seals no blob, makes no data key and does not rotate.
    let err = f.encrypt(&signing.key_id, b"x", &EncryptionContext::new()).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::KmsInvalidKeyUsage));
    let err = f.write(|kms, tx| kms.rotate_key_on_demand(tx, &scope(), &signing.key_id, NOW));
    assert_eq!(code(err), ErrorCode::KmsUnsupportedOperation);

    let rsa = create_pair(&f, "RSA_2048", "ENCRYPT_DECRYPT");
    let blob = f.kms.asymmetric_encrypt(&rsa, "RSAES_OAEP_SHA_256", b"secret").unwrap();
    assert_eq!(
        f.kms.asymmetric_decrypt(&rsa, "RSAES_OAEP_SHA_256", &blob).unwrap().expose(),
        b"secret"
    );
    let err = f.kms.asymmetric_decrypt(&rsa, "RSAES_OAEP_SHA_1", &blob).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::KmsInvalidCiphertext));
    let err = f.kms.sign(&rsa, "RSASSA_PSS_SHA_256", b"x", None).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::KmsInvalidKeyUsage));
}

#[test]
fn hmac_keys_mac_and_verify() {
    let f = Fixture::new();
    let key = create_pair(&f, "HMAC_384", "GENERATE_VERIFY_MAC");
    let mac = f.kms.generate_mac(&key, "HMAC_SHA_384", b"m").unwrap();
    assert_eq!(mac.len(), 48);
    assert!(f.kms.verify_mac(&key, "HMAC_SHA_384", b"m", &mac).unwrap());
    assert!(!f.kms.verify_mac(&key, "HMAC_SHA_384", b"n", &mac).unwrap());
    let err = f.kms.generate_mac(&key, "HMAC_SHA_256", b"m").unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::KmsInvalidKeyUsage));
}

#[test]
fn private_keys_survive_a_master_key_rewrap_and_are_not_rekeyed() {
    let old_text = MasterKey::generate().to_text();
    let mut f = Fixture::new();
    f.kms = Kms::new(MasterKey::from_text(&old_text).unwrap());
    let key = create_pair(&f, "ECC_NIST_P384", "SIGN_VERIFY");
    let old = MasterKey::from_text(&old_text).unwrap();
    let new_text = MasterKey::generate().to_text();
    let new = MasterKey::from_text(&new_text).unwrap();
    let check = new.check_value();
    f.write(|_, tx| Kms::rewrap_all(tx, &old, &new, &check)).unwrap();
    assert_eq!(f.write(|_, tx| Kms::rekey_all(tx, &new, &check, NOW)).unwrap(), 0);
    f.kms = Kms::new(MasterKey::from_text(&new_text).unwrap());
    let key = f.read(|kms, tx| kms.find_key(tx, &scope(), &key.key_id, Accepts::KeyOnly)).unwrap();
    assert_eq!(key.materials.len(), 1);
    let sig = f.kms.sign(&key, "ECDSA_SHA_384", b"m", None).unwrap();
    assert!(f.kms.verify(&key, "ECDSA_SHA_384", b"m", None, &sig).unwrap());
}

// --- Imported key material and multi-Region keys ---------------------------------------------

/// Wraps `material` with RSAES-OAEP-SHA-256 under the public key GetParametersForImport gave.
fn wrap_for_import(public_der: &[u8], material: &[u8]) -> Vec<u8> {
    use aws_lc_rs::rsa;
    let public = rsa::PublicEncryptingKey::from_der(public_der).unwrap();
    let oaep = rsa::OaepPublicEncryptingKey::new(public).unwrap();
    let mut out = vec![0u8; oaep.ciphertext_size()];
    oaep.encrypt(&rsa::OAEP_SHA256_MGF1SHA256, material, &mut out, None).unwrap().to_vec()
}

fn external_key(f: &Fixture) -> KeyRecord {
    let request = NewKey { origin: Some("EXTERNAL".into()), ..Default::default() };
    f.write(|kms, tx| kms.create_key(tx, &scope(), request.clone(), NOW)).unwrap()
}

fn import_at(
    f: &Fixture,
    key: &KeyRecord,
    material: &[u8],
    issued: i64,
    used: i64,
    valid_to: Option<i64>,
) -> Result<KeyRecord, KmsError> {
    let params = f
        .read(|kms, tx| {
            kms.parameters_for_import(
                tx,
                &scope(),
                &key.arn,
                "RSAES_OAEP_SHA_256",
                "RSA_2048",
                issued,
            )
        })
        .unwrap();
    let wrapped = wrap_for_import(&params.public_key, material);
    f.write(|kms, tx| {
        let request = import::ImportRequest {
            import_token: &params.import_token,
            encrypted_key_material: &wrapped,
            expiration_model: Some(if valid_to.is_some() {
                import::KEY_MATERIAL_EXPIRES
            } else {
                import::KEY_MATERIAL_DOES_NOT_EXPIRE
            }),
            valid_to_ms: valid_to,
        };
        kms.import_key_material(tx, &scope(), &key.arn, &request, used)
    })
}

#[test]
fn an_import_token_expires_after_a_day() {
    let f = Fixture::new();
    let key = external_key(&f);
    let material = [7u8; 32];
    let late = NOW + import::IMPORT_PARAMETERS_TTL_MS;
    assert_eq!(
        code(import_at(&f, &key, &material, NOW, late, None)),
        ErrorCode::KmsExpiredImportToken
    );
    let stored = f.read(|kms, tx| kms.find_key(tx, &scope(), &key.arn, Accepts::KeyOnly)).unwrap();
    assert_eq!(stored.state, KeyState::PendingImport);
    let imported = import_at(&f, &key, &material, NOW, late - 1, None).unwrap();
    assert_eq!(imported.state, KeyState::Enabled);
}

#[test]
fn imported_material_expires_back_to_pending_import_and_comes_back() {
    let f = Fixture::new();
    let key = external_key(&f);
    let material = [9u8; 32];
    import_at(&f, &key, &material, NOW, NOW, Some(NOW + DAY_MS)).unwrap();
    let blob = f.encrypt(&key.key_id, b"imported", &context(&[])).unwrap().blob;
    let early = f.write(|kms, tx| kms.carry_out_due(tx, NOW + DAY_MS - 1)).unwrap();
    assert!(early.expired.is_empty());
    let due = f.write(|kms, tx| kms.carry_out_due(tx, NOW + DAY_MS)).unwrap();
    assert_eq!(due.expired, vec![(scope(), key.arn.clone())]);
    assert_eq!(code(f.decrypt(&blob, &context(&[]))), ErrorCode::KmsInvalidState);
    // The same material again opens what it sealed; other material is refused.
    let later = NOW + 2 * DAY_MS;
    let other = import_at(&f, &key, &[1u8; 32], later, later, None);
    assert_eq!(code(other), ErrorCode::KmsIncorrectKeyMaterial);
    import_at(&f, &key, &material, later, later, None).unwrap();
    assert_eq!(f.decrypt(&blob, &context(&[])).unwrap().plaintext.expose(), b"imported");
}

#[test]
fn a_master_key_rekey_leaves_imported_material_and_keeps_a_multi_region_set_together() {
    let master = |byte: u8| {
        MasterKey::from_key_material(coffer_crypto::KeyMaterial::from_bytes(&[byte; 32]).unwrap())
    };
    let f = Fixture { store: MemoryStore::new(), kms: Kms::new(master(5)) };
    let external = external_key(&f);
    import_at(&f, &external, &[3u8; 32], NOW, NOW, None).unwrap();
    let request = NewKey { multi_region: true, ..Default::default() };
    let primary = f.write(|kms, tx| kms.create_key(tx, &scope(), request.clone(), NOW)).unwrap();
    let west = Scope::new("111122223333", "eu-west-1");
    f.write(|kms, tx| {
        let replica = multi_region::NewReplica::default();
        kms.replicate_key(tx, &scope(), &primary.key_id, "eu-west-1", replica, NOW)
    })
    .unwrap();
    let f = Fixture { store: f.store, kms: Kms::new(master(6)) };
    // Rewrap under the new master key first, as a master-key rotation does.
    f.write(|_, tx| {
        Kms::rewrap_all(tx, &master(5), &master(6), b"check")?;
        Kms::rekey_all(tx, &master(6), b"check", NOW)
    })
    .unwrap();
    let external =
        f.read(|kms, tx| kms.find_key(tx, &scope(), &external.arn, Accepts::KeyOnly)).unwrap();
    assert_eq!(external.materials.len(), 1, "imported material stays the only material");
    let replica =
        f.read(|kms, tx| kms.find_key(tx, &west, &primary.key_id, Accepts::KeyOnly)).unwrap();
    assert_eq!(replica.materials.len(), 2);
    let blob = f.encrypt(&primary.key_id, b"set", &context(&[])).unwrap().blob;
    let opened = f.read(|kms, tx| kms.decrypt(tx, &west, &blob, &context(&[]), None)).unwrap();
    assert_eq!(opened.plaintext.expose(), b"set");
    assert_eq!(opened.material_id, replica.materials[1].id);
}

#[test]
fn a_primary_with_replicas_waits_for_them_before_its_deletion_window() {
    let f = Fixture::new();
    let request = NewKey { multi_region: true, ..Default::default() };
    let primary = f.write(|kms, tx| kms.create_key(tx, &scope(), request.clone(), NOW)).unwrap();
    let west = Scope::new("111122223333", "eu-west-1");
    f.write(|kms, tx| {
        let replica = multi_region::NewReplica::default();
        kms.replicate_key(tx, &scope(), &primary.key_id, "eu-west-1", replica, NOW)
    })
    .unwrap();
    let scheduled = f
        .write(|kms, tx| kms.schedule_key_deletion(tx, &scope(), &primary.key_id, Some(7), NOW))
        .unwrap();
    assert_eq!(scheduled.state, KeyState::PendingReplicaDeletion);
    assert_eq!(scheduled.deletion_ms, None);
    assert_eq!(code(f.encrypt(&primary.key_id, b"x", &context(&[]))), ErrorCode::KmsInvalidState);
    // Nothing is deleted while the replica exists.
    let later = NOW + 30 * DAY_MS;
    assert!(f.write(|kms, tx| kms.carry_out_due(tx, later)).unwrap().deleted.is_empty());
    f.write(|kms, tx| kms.schedule_key_deletion(tx, &west, &primary.key_id, Some(7), later))
        .unwrap();
    let gone = later + 7 * DAY_MS;
    let due = f.write(|kms, tx| kms.carry_out_due(tx, gone)).unwrap();
    assert_eq!(due.deleted.len(), 1, "only the replica");
    let waiting =
        f.read(|kms, tx| kms.find_key(tx, &scope(), &primary.key_id, Accepts::KeyOnly)).unwrap();
    assert_eq!(waiting.state, KeyState::PendingDeletion);
    assert_eq!(waiting.deletion_ms, Some(gone + 7 * DAY_MS));
    assert_eq!(waiting.multi_region.unwrap().replica_regions, Vec::<String>::new());
}

#[test]
fn expired_imported_material_is_unusable_before_the_sweep_drops_it() {
    let mut f = Fixture::new();
    let key = external_key(&f);
    import_at(&f, &key, &[7u8; 32], NOW, NOW, Some(NOW + DAY_MS)).unwrap();
    let blob = f.encrypt(&key.key_id, b"imported", &context(&[])).unwrap().blob;
    // The same service, its clock at ValidTo, before any sweep ran.
    let kms = std::mem::replace(&mut f.kms, Kms::new(MasterKey::generate()));
    f.kms = kms.with_clock(|| NOW + DAY_MS);
    assert_eq!(code(f.decrypt(&blob, &context(&[]))), ErrorCode::KmsInvalidState);
    assert_eq!(code(f.encrypt(&key.key_id, b"x", &context(&[]))), ErrorCode::KmsInvalidState);
    let seen = f.read(|kms, tx| kms.find_key(tx, &scope(), &key.key_id, Accepts::KeyOnly)).unwrap();
    assert_eq!(seen.state, KeyState::PendingImport);
    // The sweep still finds it due and drops it from the store.
    let due = f.write(|kms, tx| kms.carry_out_due(tx, NOW + DAY_MS)).unwrap();
    assert_eq!(due.expired, vec![(scope(), key.arn.clone())]);
}

#[test]
fn listing_merges_the_predefined_aliases_and_pages_over_both_kinds_in_name_order() {
    let f = Fixture::new();
    let key = f.create();
    let mine = ["alias/B", "alias/aws-x", "alias/aws0", "alias/z"];
    for name in mine {
        f.write(|kms, tx| kms.create_alias(tx, &scope(), name, &key.key_id, NOW)).unwrap();
    }
    let managed = f.write(|kms, tx| kms.key_for_secret(tx, &scope(), None, NOW)).unwrap();
    let mut expected: Vec<&str> = mine.iter().chain(PREDEFINED_ALIASES.iter()).copied().collect();
    expected.sort_unstable();
    for limit in 1..=expected.len() + 1 {
        let (mut walked, mut marker) = (Vec::new(), None::<String>);
        loop {
            let page = f
                .read(|kms, tx| {
                    kms.list_aliases_with_predefined(tx, &scope(), None, marker.as_deref(), limit)
                })
                .unwrap();
            assert!(page.items.len() <= limit);
            walked.extend(page.items);
            match page.next_marker {
                Some(next) => marker = Some(next),
                None => break,
            }
        }
        let names: Vec<&str> = walked.iter().map(ListedAlias::name).collect();
        assert_eq!(names, expected, "limit {limit}");
        for listed in &walked {
            match listed {
                ListedAlias::Stored(alias) if alias.name == SECRETS_MANAGER_ALIAS => {
                    assert_eq!(alias.target_key_id, managed.key_id)
                }
                ListedAlias::Stored(alias) => assert_eq!(alias.target_key_id, key.key_id),
                ListedAlias::Predefined(name) => assert_ne!(*name, SECRETS_MANAGER_ALIAS),
            }
        }
    }
    // By key: only that key's stored aliases, never a predefined one.
    let of_key = f
        .read(|kms, tx| kms.list_aliases_with_predefined(tx, &scope(), Some(&key.key_id), None, 50))
        .unwrap();
    assert_eq!(of_key.items.len(), mine.len());
    assert!(of_key.items.iter().all(|a| matches!(a, ListedAlias::Stored(_))));
}

#[test]
fn grants_are_made_only_on_a_key_that_could_be_used() {
    // AWS's key-state table: CreateGrant on a disabled key is DisabledException, on a key
    // pending deletion KMSInvalidStateException; enabled again, the grant is made.
    let f = Fixture::new();
    let key = f.create();
    let grant = || crate::grants::NewGrant {
        grantee_principal: "arn:aws:iam::111122223333:user/someone".to_string(),
        retiring_principal: None,
        operations: vec!["Decrypt".to_string()],
        constraints: None,
        name: None,
        grantee_user_id: None,
        retiring_user_id: None,
    };
    let create = || f.write(|kms, tx| kms.create_grant(tx, &scope(), &key.key_id, grant(), NOW));
    f.write(|kms, tx| kms.disable_key(tx, &scope(), &key.key_id)).unwrap();
    let err = create().unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::KmsDisabled));
    assert_eq!(err.client_message(), format!("{} is disabled.", key.arn));
    f.write(|kms, tx| kms.enable_key(tx, &scope(), &key.key_id)).unwrap();
    create().unwrap();
    f.write(|kms, tx| kms.schedule_key_deletion(tx, &scope(), &key.key_id, Some(7), NOW)).unwrap();
    let err = create().unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::KmsInvalidState));
    assert_eq!(err.client_message(), format!("{} is pending deletion.", key.arn));
}

fn grant_of(
    operations: &[&str],
    constraints: Option<crate::grants::GrantConstraints>,
) -> crate::grants::NewGrant {
    crate::grants::NewGrant {
        grantee_principal: "arn:aws:iam::111122223333:user/someone".to_string(),
        retiring_principal: None,
        operations: operations.iter().map(|op| op.to_string()).collect(),
        constraints,
        name: None,
        grantee_user_id: None,
        retiring_user_id: None,
    }
}

fn validation_message(result: Result<crate::grants::GrantRecord, KmsError>) -> String {
    let err = result.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Validation));
    err.client_message().to_string()
}

#[test]
fn grants_give_only_operations_their_key_can_do() {
    let f = Fixture::new();
    let symmetric = f.create();
    let signing = create_pair(&f, "ECC_NIST_P256", "SIGN_VERIFY");
    let hmac = create_pair(&f, "HMAC_256", "GENERATE_VERIFY_MAC");
    let create = |key: &KeyRecord, ops: &[&str]| {
        f.write(|kms, tx| kms.create_grant(tx, &scope(), &key.key_id, grant_of(ops, None), NOW))
    };
    // AWS's words for a grant of CreateGrant alone (a real answer, ansible PR 31960).
    assert_eq!(
        validation_message(create(&symmetric, &["CreateGrant"])),
        "Grants must not contain only the CreateGrant operation."
    );
    assert_eq!(
        validation_message(create(&symmetric, &["DescribeKey", "Sign", "GenerateMac"])),
        "Grant operations [Sign, GenerateMac] are not supported for a KMS key with KeyUsage \
         ENCRYPT_DECRYPT and KeySpec SYMMETRIC_DEFAULT."
    );
    assert!(validation_message(create(&signing, &["Decrypt"])).contains("[Decrypt]"));
    assert!(validation_message(create(&hmac, &["Verify"])).contains("[Verify]"));
    create(&symmetric, &["CreateGrant", "Decrypt", "GenerateDataKeyPair", "RetireGrant"]).unwrap();
    create(&signing, &["Sign", "Verify", "GetPublicKey", "DescribeKey"]).unwrap();
    create(&hmac, &["GenerateMac", "VerifyMac"]).unwrap();
}

#[test]
fn grant_constraints_are_bounded_and_only_on_symmetric_keys() {
    use crate::grants::GrantConstraints;
    let f = Fixture::new();
    let symmetric = f.create();
    let rsa = create_pair(&f, "RSA_2048", "ENCRYPT_DECRYPT");
    let subset = |pairs: &[(&str, String)]| {
        Some(GrantConstraints {
            encryption_context_subset: Some(
                pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
            ),
            encryption_context_equals: None,
        })
    };
    let create = |key: &KeyRecord, constraints: Option<GrantConstraints>| {
        f.write(|kms, tx| {
            kms.create_grant(
                tx,
                &scope(),
                &key.key_id,
                grant_of(&["Decrypt"], constraints.clone()),
                NOW,
            )
        })
    };
    let one = subset(&[("purpose", "test".to_string())]);
    assert!(validation_message(create(&rsa, one.clone())).contains("KeySpec RSA_2048"));
    create(&rsa, Some(GrantConstraints::default())).unwrap();
    create(&symmetric, one).unwrap();
    let pairs = |n: usize| {
        (0..n)
            .map(|i| (["a", "b", "c", "d", "e", "f", "g", "h", "i"][i], "v".to_string()))
            .collect::<Vec<_>>()
    };
    create(&symmetric, subset(&pairs(8))).unwrap();
    assert!(validation_message(create(&symmetric, subset(&pairs(9)))).contains("at most 8"));
    create(&symmetric, subset(&[("k", "v".repeat(383))])).unwrap();
    assert!(
        validation_message(create(&symmetric, subset(&[("k", "v".repeat(384))]))).contains("384")
    );
}
