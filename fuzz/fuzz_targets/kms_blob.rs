//! KMS ciphertext blobs, format 2 and the older format 1: the blob header parser
//! (`coffer_crypto::kms_blob::parse`, which `coffer_kms::ciphertext` wraps) and the envelope inside (`coffer_crypto::open`, both
//! envelope formats) under a fixed key, as Decrypt runs them. The first byte picks a mode:
//! even, the rest is a blob from a client (it must never panic and, being unsealed by this
//! key, never open); odd, the rest is a plaintext sealed here into a blob, which must open
//! to the same bytes, and must no longer open once the byte the input names is changed.
#![no_main]

use coffer_crypto::KeyMaterial;
use coffer_crypto::kms_blob::{self as ciphertext, EncryptionContext, HEADER_LEN};
use libfuzzer_sys::fuzz_target;

const KEY_ID: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";
const KEY_ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

fn context() -> EncryptionContext {
    [("purpose".to_owned(), "fuzz".to_owned())].into()
}

/// Decrypt's path after the key is found: header, then the envelope under the header's AAD.
fn open(kek: &KeyMaterial, blob: &[u8]) -> Option<Vec<u8>> {
    let (header, envelope) = ciphertext::parse(blob).ok()?;
    assert_eq!(header.key_id.len(), 36);
    let aad = ciphertext::aad(&blob[..HEADER_LEN], KEY_ARN, header.material_version, &context());
    coffer_crypto::open(kek, envelope, &aad).ok().map(|p| p.expose().to_vec())
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let kek = KeyMaterial::from_bytes(&[7u8; 32]).expect("32 bytes");
    if mode % 2 == 0 {
        assert!(open(&kek, rest).is_none(), "a blob no one sealed opened");
        return;
    }
    // Encrypt's path: header, then the plaintext sealed under the header's AAD.
    let mut blob = ciphertext::header(KEY_ID, u32::from(mode)).expect("a UUID");
    let aad = ciphertext::aad(&blob, KEY_ARN, u32::from(mode), &context());
    blob.extend_from_slice(&coffer_crypto::seal(&kek, rest, &aad));
    assert_eq!(open(&kek, &blob).as_deref(), Some(rest));
    let at = usize::from(rest.first().copied().unwrap_or(0)) % blob.len();
    blob[at] ^= 1 << (mode % 8);
    assert!(open(&kek, &blob).is_none(), "a blob changed at byte {at} still opened");
});
