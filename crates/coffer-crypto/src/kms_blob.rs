//! KMS ciphertext blobs: what Encrypt and GenerateDataKey return and what every secret
//! version stores. The format, its header parser and its AAD are pure, so they live here
//! (the key service, `coffer_kms::ciphertext`, re-exports them with KMS's errors) and the
//! fuzz target `kms_blob` builds without the store.
//!
//! Format version 2, all integers big-endian:
//!
//! ```text
//! offset  length  field
//! 0       1       format version (2)
//! 1       16      key id of the KMS key (the UUID's 16 bytes)
//! 17      4       key material version that sealed the envelope
//! 21      ...     coffer-crypto envelope (format 2): the plaintext sealed under a key
//!                 derived by HKDF-SHA256 from the key material and a random salt
//! ```
//!
//! The header names the key, so Decrypt needs no KeyId. The envelope is authenticated with
//! the whole 21-byte header (its version byte included), the key ARN, the material version
//! and the canonical encryption context, so changing any header byte, a ciphertext byte or
//! the context makes the blob fail to open.
//!
//! Format version 1 (blobs written before format 2) has the same header with version byte 1
//! and a format 1 envelope; its AAD leaves out the header bytes (the key id and material
//! version are still bound through the ARN and the version field). It is still opened.

use std::collections::BTreeMap;

/// The format version written at the start of every new blob.
pub const BLOB_VERSION: u8 = 2;

/// The first format version, still accepted by [`parse`].
pub const BLOB_VERSION_1: u8 = 1;

/// Format version 2 for a multi-Region key: the 16 id bytes are the 32 hex digits of an
/// `mrk-` id rather than a UUID. Everything else is format 2.
pub const BLOB_VERSION_MRK: u8 = 0x12;

/// Bytes before the envelope.
pub const HEADER_LEN: usize = 1 + 16 + 4;

/// A KMS encryption context: string pairs, order-insensitive, authenticated but not secret.
pub type EncryptionContext = BTreeMap<String, String>;

/// The parsed header of a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobHeader {
    /// The key id in its canonical lowercase text form.
    pub key_id: String,
    pub material_version: u32,
}

/// A blob too short, of an unknown format version or with an unreadable key id: KMS
/// answers it `InvalidCiphertextException`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidBlob;

/// Writes the header of a blob sealed by `key_id` (a UUID, or `mrk-` and 32 hex digits) at
/// `material_version`; `None` when the key id is neither.
pub fn header(key_id: &str, material_version: u32) -> Option<Vec<u8>> {
    let (version, id) = match key_id.strip_prefix("mrk-") {
        Some(hex) => (BLOB_VERSION_MRK, uuid::Uuid::try_parse(hex).ok()),
        None => (BLOB_VERSION, uuid::Uuid::parse_str(key_id).ok()),
    };
    let uuid = id?;
    let mut out = Vec::with_capacity(HEADER_LEN);
    out.push(version);
    out.extend_from_slice(uuid.as_bytes());
    out.extend_from_slice(&material_version.to_be_bytes());
    Some(out)
}

/// Splits a blob into its header and envelope.
pub fn parse(blob: &[u8]) -> Result<(BlobHeader, &[u8]), InvalidBlob> {
    if blob.len() <= HEADER_LEN
        || !matches!(blob[0], BLOB_VERSION | BLOB_VERSION_1 | BLOB_VERSION_MRK)
    {
        return Err(InvalidBlob);
    }
    let uuid = uuid::Uuid::from_slice(&blob[1..17]).map_err(|_| InvalidBlob)?;
    let version = u32::from_be_bytes([blob[17], blob[18], blob[19], blob[20]]);
    let key_id = if blob[0] == BLOB_VERSION_MRK {
        format!("mrk-{}", uuid.simple())
    } else {
        uuid.hyphenated().to_string()
    };
    Ok((BlobHeader { key_id, material_version: version }, &blob[HEADER_LEN..]))
}

/// The additional authenticated data of a blob whose header is `header` (its first
/// [`HEADER_LEN`] bytes): a domain label, the header bytes (format 2), the key ARN, the
/// material version and the context, each length-prefixed so no two different inputs
/// encode alike.
pub fn aad(
    header: &[u8],
    key_arn: &str,
    material_version: u32,
    context: &EncryptionContext,
) -> Vec<u8> {
    let mut out = match header.first() {
        Some(&BLOB_VERSION_1) => b"coffer/kms/v1/ciphertext\0".to_vec(),
        _ => {
            let mut out = b"coffer/kms/v2/ciphertext\0".to_vec();
            push_field(&mut out, header);
            out
        }
    };
    push_field(&mut out, key_arn.as_bytes());
    out.extend_from_slice(&material_version.to_be_bytes());
    out.extend_from_slice(&(context.len() as u32).to_be_bytes());
    // BTreeMap iterates in key order, which makes the encoding independent of request order.
    for (k, v) in context {
        push_field(&mut out, k.as_bytes());
        push_field(&mut out, v.as_bytes());
    }
    out
}

fn push_field(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&(field.len() as u32).to_be_bytes());
    out.extend_from_slice(field);
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";

    #[test]
    fn a_header_round_trips_through_parse() {
        let mut blob = header(ID, 7).unwrap();
        blob.extend_from_slice(b"envelope");
        let (parsed, rest) = parse(&blob).unwrap();
        assert_eq!(parsed, BlobHeader { key_id: ID.into(), material_version: 7 });
        assert_eq!(rest, b"envelope");
    }

    #[test]
    fn a_multi_region_header_round_trips_through_parse() {
        let mrk = "mrk-1234abcd12ab34cd56ef1234567890ab";
        let mut blob = header(mrk, 2).unwrap();
        assert_eq!(blob[0], BLOB_VERSION_MRK);
        blob.extend_from_slice(b"envelope");
        assert_eq!(parse(&blob).unwrap().0, BlobHeader { key_id: mrk.into(), material_version: 2 });
    }

    #[test]
    fn short_or_unversioned_blobs_are_invalid() {
        let mut blob = header(ID, 1).unwrap();
        assert_eq!(parse(&blob).unwrap_err(), InvalidBlob);
        blob.push(0);
        blob[0] = 3;
        assert_eq!(parse(&blob).unwrap_err(), InvalidBlob);
        assert!(parse(&[]).is_err());
        assert!(header("not-a-uuid", 1).is_none());
    }

    #[test]
    fn the_aad_does_not_depend_on_context_order_but_on_every_pair() {
        let a: EncryptionContext = [("a".into(), "1".into()), ("b".into(), "2".into())].into();
        let b: EncryptionContext = [("b".into(), "2".into()), ("a".into(), "1".into())].into();
        let aad = |arn: &str, v: u32, c: &EncryptionContext| aad(&[2; HEADER_LEN], arn, v, c);
        assert_eq!(aad("arn", 1, &a), aad("arn", 1, &b));
        let shifted: EncryptionContext =
            [("a".into(), "1b".into()), ("".into(), "2".into())].into();
        assert_ne!(aad("arn", 1, &a), aad("arn", 1, &shifted));
        assert_ne!(aad("arn", 1, &a), aad("arn", 2, &a));
        assert_ne!(aad("arn", 1, &a), aad("arn2", 1, &a));
        assert_ne!(aad("arn", 1, &a), aad("arn", 1, &EncryptionContext::new()));
    }

    #[test]
    fn every_header_byte_of_a_format_2_blob_is_in_its_aad() {
        let context = EncryptionContext::new();
        let header = header(ID, 7).unwrap();
        let base = aad(&header, "arn", 7, &context);
        for byte in 0..HEADER_LEN {
            let mut changed = header.clone();
            changed[byte] ^= 1;
            assert_ne!(aad(&changed, "arn", 7, &context), base, "byte {byte}");
        }
        // Format 1 blobs keep their original AAD (no header bytes), so they still open.
        let mut legacy = header.clone();
        legacy[0] = BLOB_VERSION_1;
        assert!(!aad(&legacy, "arn", 7, &context).windows(HEADER_LEN).any(|w| w == &legacy[..]));
    }
}
