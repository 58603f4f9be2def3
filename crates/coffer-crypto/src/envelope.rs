//! Envelope encryption of secret values and KMS ciphertext: every value is sealed under a
//! key of its own, derived from (version 2) or wrapped by (version 1) a key-encryption key.
//!
//! Format version 2, written by [`seal`], all lengths in bytes:
//!
//! ```text
//! offset  length  field
//! 0       1       format version (2)
//! 1       32      random salt
//! 33      12      nonce of the value
//! 45      n + 16  encrypted value (n bytes) || tag (16)
//! ```
//!
//! The value key is HKDF-SHA256(salt, key-encryption key, info), as AWS KMS derives a key
//! per ciphertext: the key-encryption key itself never encrypts, so the 2^32 limit on
//! random 96-bit nonces under one AES-GCM key does not apply to it (each derived key seals
//! exactly one value, and two salts collide with odds near 2^-128 after 2^64 seals). The
//! AAD is a domain label, the whole 33-byte header (version byte included) and the caller's
//! `aad`, so no header byte can change without the value failing to open.
//!
//! Format version 1, still opened by [`open`] (values written before version 2):
//!
//! ```text
//! offset  length  field
//! 0       1       format version (1)
//! 1       2       length of the wrapped data key, big-endian (always 60 in version 1)
//! 3       60      wrapped data key: nonce (12) || encrypted data key (32) || tag (16)
//! 63      12      nonce of the value
//! 75      n + 16  encrypted value (n bytes) || tag (16)
//! ```
//!
//! In both, the value is authenticated with the caller's `aad`, so an envelope copied to
//! another secret or version fails to open.

use aws_lc_rs::aead::NONCE_LEN;
use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};
use zeroize::Zeroizing;

use crate::aead::{self, OVERHEAD, TAG_LEN};
use crate::error::CryptoError;
use crate::keys::{KEY_LEN, KeyMaterial, SecretBytes};

/// The format version written by [`seal`].
pub const ENVELOPE_VERSION: u8 = 2;

/// The first format version, which [`open`] still accepts.
const VERSION_1: u8 = 1;

/// Length of the random HKDF salt of a version 2 envelope.
const SALT_LEN: usize = 32;

/// Version byte plus salt: the header of a version 2 envelope, authenticated whole.
const HEADER_V2_LEN: usize = 1 + SALT_LEN;

/// How many bytes [`seal`] adds to the plaintext; a sealed value is exactly
/// `plaintext.len() + SEAL_OVERHEAD` bytes long.
pub const SEAL_OVERHEAD: usize = HEADER_V2_LEN + NONCE_LEN + TAG_LEN;

/// The HKDF info of a version 2 value key, so the derivation serves this purpose only.
const KEY_INFO_V2: &[u8] = b"coffer/v2/envelope/value-key";

/// Domain label of a version 2 value.
const VALUE_DOMAIN_V2: &[u8] = b"coffer/v2/envelope/value\0";

/// Length of the wrapped data key in a version 1 envelope.
const WRAPPED_DATA_KEY_LEN: usize = OVERHEAD + KEY_LEN;

/// Version byte plus the two-byte length of the wrapped data key (version 1).
const PREFIX_LEN: usize = 1 + 2;

/// Bytes before the value's nonce (version 1).
const HEADER_LEN: usize = PREFIX_LEN + WRAPPED_DATA_KEY_LEN;

/// How many bytes a version 1 envelope adds to the plaintext.
const SEAL_OVERHEAD_V1: usize = HEADER_LEN + NONCE_LEN + TAG_LEN;

/// Domain label for wrapping the data key, so a wrapped data key never opens as a value.
const DATA_KEY_DOMAIN: &[u8] = b"coffer/v1/envelope/data-key\0";

/// Domain label for the value, so a sealed value never opens as a wrapped data key.
const VALUE_DOMAIN: &[u8] = b"coffer/v1/envelope/value\0";

/// The value key of a version 2 envelope: HKDF-SHA256 of the key-encryption key under
/// the envelope's salt.
fn derive_value_key(kek: &KeyMaterial, salt: &[u8]) -> KeyMaterial {
    let prk = Salt::new(HKDF_SHA256, salt).extract(kek.expose());
    let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
    prk.expand(&[KEY_INFO_V2], HKDF_SHA256)
        .and_then(|okm| okm.fill(&mut bytes[..]))
        // HKDF-SHA256 yields up to 255 * 32 bytes; 32 are always available.
        .expect("HKDF-SHA256 expands to 32 bytes");
    KeyMaterial::from_bytes(&bytes[..]).expect("32 bytes")
}

/// The context a version 2 value is authenticated with: its whole header, then `aad`.
/// The header has a fixed length, so the split between the two is never ambiguous.
fn context_v2(header: &[u8], aad: &[u8]) -> Vec<u8> {
    let mut context = Vec::with_capacity(header.len() + aad.len());
    context.extend_from_slice(header);
    context.extend_from_slice(aad);
    context
}

/// Seals `plaintext` under a fresh key derived from `kek` and a random salt.
///
/// `aad` binds the result to its place (the caller passes, for example, the secret ARN and
/// version id): [`open`] succeeds only with the same `kek` and the same `aad`. Every call uses
/// a new salt (so a new key) and a new nonce, so sealing the same plaintext twice gives
/// different output.
///
/// # Panics
/// Panics if the system random generator fails.
pub fn seal(kek: &KeyMaterial, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
    // The salt and the nonce drawn together: one call to the generator.
    let mut random = [0u8; SALT_LEN + NONCE_LEN];
    aead::fill_random(&mut random);
    let (salt, nonce) = random.split_at(SALT_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("NONCE_LEN bytes");
    let mut sealed = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
    sealed.push(ENVELOPE_VERSION);
    sealed.extend_from_slice(salt);
    let value_key = derive_value_key(kek, salt);
    let context = context_v2(&sealed, aad);
    aead::seal_with_nonce_into(
        &value_key,
        nonce,
        VALUE_DOMAIN_V2,
        &context,
        plaintext,
        &mut sealed,
    );
    debug_assert_eq!(sealed.len(), plaintext.len() + SEAL_OVERHEAD);
    sealed
}

/// Opens a value produced by [`seal`] (format 2) or by earlier versions (format 1) with
/// the same `kek` and `aad`.
///
/// # Errors
/// - [`CryptoError::MalformedEnvelope`] if `sealed` is too short or its lengths are wrong;
/// - [`CryptoError::UnsupportedVersion`] if the first byte is not a known format version;
/// - [`CryptoError::AuthenticationFailed`] if `kek` or `aad` differ from those used to seal, or
///   any byte was altered.
pub fn open(kek: &KeyMaterial, sealed: &[u8], aad: &[u8]) -> Result<SecretBytes, CryptoError> {
    match sealed.first() {
        None => Err(CryptoError::MalformedEnvelope),
        Some(&ENVELOPE_VERSION) => open_v2(kek, sealed, aad),
        Some(&VERSION_1) => open_v1(kek, sealed, aad),
        Some(&version) => Err(CryptoError::UnsupportedVersion(version)),
    }
}

fn open_v2(kek: &KeyMaterial, sealed: &[u8], aad: &[u8]) -> Result<SecretBytes, CryptoError> {
    if sealed.len() < SEAL_OVERHEAD {
        return Err(CryptoError::MalformedEnvelope);
    }
    let (header, value) = sealed.split_at(HEADER_V2_LEN);
    let value_key = derive_value_key(kek, &header[1..]);
    let plaintext = aead::open(&value_key, VALUE_DOMAIN_V2, &context_v2(header, aad), value)
        .ok_or(CryptoError::AuthenticationFailed)?;
    Ok(SecretBytes::from(plaintext))
}

fn open_v1(kek: &KeyMaterial, sealed: &[u8], aad: &[u8]) -> Result<SecretBytes, CryptoError> {
    if sealed.len() < SEAL_OVERHEAD_V1 {
        return Err(CryptoError::MalformedEnvelope);
    }
    let (length, rest) = sealed[1..].split_at(2);
    let wrapped_len = usize::from(u16::from_be_bytes([length[0], length[1]]));
    // Version 1 has one data key format, so any other length is corruption rather than
    // something to parse.
    if wrapped_len != WRAPPED_DATA_KEY_LEN {
        return Err(CryptoError::MalformedEnvelope);
    }
    let (wrapped_data_key, value) = rest.split_at(wrapped_len);
    let data_key_bytes = aead::open(kek, DATA_KEY_DOMAIN, aad, wrapped_data_key)
        .ok_or(CryptoError::AuthenticationFailed)?;
    let data_key = KeyMaterial::from_bytes(&data_key_bytes)?;
    let plaintext =
        aead::open(&data_key, VALUE_DOMAIN, aad, value).ok_or(CryptoError::AuthenticationFailed)?;
    Ok(SecretBytes::from(plaintext))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random_bytes;

    const AAD: &[u8] = b"arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf/v-1";

    #[test]
    fn seal_then_open_returns_the_original_bytes() {
        let kek = KeyMaterial::generate();
        let values: Vec<Vec<u8>> = vec![
            b"x".to_vec(),
            b"\x00\x01\x02\xff".to_vec(),
            "pässwörd {\"user\":\"admin\"}".as_bytes().to_vec(),
            random_bytes(64 * 1024),
        ];
        for value in values {
            let sealed = seal(&kek, &value, AAD);
            assert_eq!(sealed.len(), value.len() + SEAL_OVERHEAD);
            assert_eq!(sealed[0], ENVELOPE_VERSION);
            let opened = open(&kek, &sealed, AAD).unwrap();
            assert_eq!(opened.expose(), &value[..]);
        }
    }

    #[test]
    fn an_empty_aad_and_an_empty_value_still_round_trip() {
        let kek = KeyMaterial::generate();
        let sealed = seal(&kek, b"", b"");
        assert_eq!(sealed.len(), SEAL_OVERHEAD);
        assert!(open(&kek, &sealed, b"").unwrap().is_empty());
    }

    #[test]
    fn opening_with_another_kek_fails_authentication() {
        let sealed = seal(&KeyMaterial::generate(), b"value", AAD);
        let other = KeyMaterial::generate();
        assert!(matches!(open(&other, &sealed, AAD), Err(CryptoError::AuthenticationFailed)));
    }

    #[test]
    fn opening_with_another_aad_fails_authentication() {
        let kek = KeyMaterial::generate();
        let sealed = seal(&kek, b"value", AAD);
        let mut longer = AAD.to_vec();
        longer.push(b'2');
        for aad in [&AAD[..AAD.len() - 1], &longer[..], b"", b"arn:other"] {
            assert!(matches!(open(&kek, &sealed, aad), Err(CryptoError::AuthenticationFailed)));
        }
    }

    #[test]
    fn flipping_any_bit_of_the_envelope_makes_open_fail() {
        let kek = KeyMaterial::generate();
        let sealed = seal(&kek, b"\x00\x01\x02\xff secret", AAD);
        for byte in 0..sealed.len() {
            for bit in 0..8 {
                let mut tampered = sealed.clone();
                tampered[byte] ^= 1 << bit;
                let result = open(&kek, &tampered, AAD);
                match byte {
                    // No single bit flip turns version 2 into version 1.
                    0 => assert!(
                        matches!(result, Err(CryptoError::UnsupportedVersion(v)) if v == tampered[0])
                    ),
                    _ => assert!(
                        matches!(result, Err(CryptoError::AuthenticationFailed)),
                        "byte {byte} bit {bit}: {result:?}"
                    ),
                }
            }
        }
    }

    #[test]
    fn every_truncation_of_the_envelope_fails_to_open() {
        let kek = KeyMaterial::generate();
        let sealed = seal(&kek, b"a value longer than a tag", AAD);
        for len in 0..sealed.len() {
            let result = open(&kek, &sealed[..len], AAD);
            if len < SEAL_OVERHEAD {
                assert!(matches!(result, Err(CryptoError::MalformedEnvelope)), "len {len}");
            } else {
                assert!(matches!(result, Err(CryptoError::AuthenticationFailed)), "len {len}");
            }
        }
    }

    #[test]
    fn appending_bytes_to_the_envelope_makes_open_fail() {
        let kek = KeyMaterial::generate();
        let mut sealed = seal(&kek, b"value", AAD);
        sealed.push(0);
        assert!(matches!(open(&kek, &sealed, AAD), Err(CryptoError::AuthenticationFailed)));
    }

    #[test]
    fn an_unknown_version_byte_is_reported_as_unsupported() {
        let kek = KeyMaterial::generate();
        let sealed = seal(&kek, b"value", AAD);
        for version in [0u8, 3, 127, 255] {
            let mut other = sealed.clone();
            other[0] = version;
            assert!(matches!(
                open(&kek, &other, AAD),
                Err(CryptoError::UnsupportedVersion(v)) if v == version
            ));
        }
        assert!(matches!(open(&kek, &[9], AAD), Err(CryptoError::UnsupportedVersion(9))));
    }

    #[test]
    fn random_garbage_never_panics_and_never_opens() {
        let kek = KeyMaterial::generate();
        for len in 0..300 {
            let mut garbage = random_bytes(len);
            if let Some(first) = garbage.first_mut() {
                *first = ENVELOPE_VERSION;
            }
            assert!(open(&kek, &garbage, AAD).is_err());
            if let Some(first) = garbage.first_mut() {
                *first = VERSION_1;
            }
            if len >= PREFIX_LEN {
                garbage[1..PREFIX_LEN]
                    .copy_from_slice(&(WRAPPED_DATA_KEY_LEN as u16).to_be_bytes());
            }
            assert!(open(&kek, &garbage, AAD).is_err());
        }
    }

    #[test]
    fn sealing_the_same_plaintext_twice_gives_unrelated_envelopes() {
        let kek = KeyMaterial::generate();
        let first = seal(&kek, b"same value", AAD);
        let second = seal(&kek, b"same value", AAD);
        assert_ne!(first, second);
        // Neither the salt (so the value key), nor the nonce, nor the ciphertext may repeat.
        assert_ne!(first[1..HEADER_V2_LEN], second[1..HEADER_V2_LEN]);
        let nonce = HEADER_V2_LEN..HEADER_V2_LEN + NONCE_LEN;
        assert_ne!(first[nonce.clone()], second[nonce]);
        assert_ne!(first[HEADER_V2_LEN + NONCE_LEN..], second[HEADER_V2_LEN + NONCE_LEN..]);
    }

    #[test]
    fn a_header_swapped_between_envelopes_fails_to_open() {
        let kek = KeyMaterial::generate();
        let first = seal(&kek, b"first value", AAD);
        let second = seal(&kek, b"other value", AAD);
        let mut spliced = first[..HEADER_V2_LEN].to_vec();
        spliced.extend_from_slice(&second[HEADER_V2_LEN..]);
        assert!(matches!(open(&kek, &spliced, AAD), Err(CryptoError::AuthenticationFailed)));
    }

    /// An envelope written by format 1 (Coffer before format 2): key-encryption key 32
    /// bytes of 7, AAD `legacy aad`, value `legacy value`.
    const ENVELOPE_V1: &str = "01003c510ea9bea2a368d3c054d956621158d4b5f7c978d854730f234c4cb5e5227861611dd3f7e34d4224cf42408129a2701f2b563e566206f01e44c2d3c05157fa50eaf6e2a28238ec107355fdf99f33ec53915e270f13222fe505236fc9ac190d7695cf9493";

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn an_envelope_written_by_format_1_still_opens_and_stays_authenticated() {
        let kek = KeyMaterial::from_bytes(&[7u8; 32]).unwrap();
        let sealed = unhex(ENVELOPE_V1);
        assert_eq!(sealed[0], VERSION_1);
        assert_eq!(open(&kek, &sealed, b"legacy aad").unwrap().expose(), b"legacy value");
        assert!(matches!(
            open(&kek, &sealed, b"other aad"),
            Err(CryptoError::AuthenticationFailed)
        ));
        for byte in [1usize, 2] {
            let mut damaged = sealed.clone();
            damaged[byte] ^= 1;
            assert!(matches!(
                open(&kek, &damaged, b"legacy aad"),
                Err(CryptoError::MalformedEnvelope)
            ));
        }
        for byte in 3..sealed.len() {
            let mut damaged = sealed.clone();
            damaged[byte] ^= 1;
            assert!(open(&kek, &damaged, b"legacy aad").is_err(), "byte {byte}");
        }
    }

    #[test]
    fn format_2_derives_a_key_per_envelope_and_authenticates_its_header() {
        let kek = KeyMaterial::generate();
        let sealed = seal(&kek, b"value", AAD);
        assert_eq!(sealed[0], 2);
        // The value key is derived from the salt: the key-encryption key alone opens nothing.
        let value = &sealed[HEADER_V2_LEN..];
        let header = &sealed[..HEADER_V2_LEN];
        assert!(aead::open(&kek, VALUE_DOMAIN_V2, &context_v2(header, AAD), value).is_none());
        let derived = derive_value_key(&kek, &sealed[1..HEADER_V2_LEN]);
        assert!(aead::open(&derived, VALUE_DOMAIN_V2, &context_v2(header, AAD), value).is_some());
        // The version byte is in the AAD: the same bytes under a version-1 reading, or
        // with the header left out of the AAD, do not open.
        assert!(aead::open(&derived, VALUE_DOMAIN_V2, AAD, value).is_none());
        let mut other_version = header.to_vec();
        other_version[0] = 3;
        assert!(
            aead::open(&derived, VALUE_DOMAIN_V2, &context_v2(&other_version, AAD), value)
                .is_none()
        );
    }

    #[test]
    fn the_plaintext_does_not_appear_in_the_sealed_bytes() {
        let kek = KeyMaterial::generate();
        let plaintext = b"correct horse battery staple, the database password".repeat(4);
        let sealed = seal(&kek, &plaintext, AAD);
        // No 8-byte run of the plaintext may survive; a random match has odds near 2^-64.
        for window in plaintext.windows(8) {
            assert!(!sealed.windows(8).any(|w| w == window));
        }
    }

    #[test]
    fn error_messages_do_not_contain_the_plaintext_or_the_aad() {
        let kek = KeyMaterial::generate();
        let sealed = seal(&kek, b"topsecretvalue", AAD);
        let error = open(&KeyMaterial::generate(), &sealed, AAD).unwrap_err();
        let message = format!("{error} {error:?}");
        assert!(!message.contains("topsecretvalue"));
        assert!(!message.contains("arn:aws"));
    }
}
