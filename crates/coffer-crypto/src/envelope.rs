//! Envelope encryption of secret values: each value is sealed under its own random data key,
//! and that data key is wrapped by a key-encryption key.
//!
//! Format version 1, all lengths in bytes:
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
//! Both the wrapped data key and the value are authenticated with the caller's `aad`, so an
//! envelope copied to another secret or version fails to open.

use aws_lc_rs::aead::NONCE_LEN;

use crate::aead::{self, OVERHEAD, TAG_LEN};
use crate::error::CryptoError;
use crate::keys::{KEY_LEN, KeyMaterial, SecretBytes};

/// The format version written by [`seal`] and the only one [`open`] accepts.
pub const ENVELOPE_VERSION: u8 = 1;

/// Length of the wrapped data key in a version 1 envelope.
const WRAPPED_DATA_KEY_LEN: usize = OVERHEAD + KEY_LEN;

/// Version byte plus the two-byte length of the wrapped data key.
const PREFIX_LEN: usize = 1 + 2;

/// Bytes before the value's nonce.
const HEADER_LEN: usize = PREFIX_LEN + WRAPPED_DATA_KEY_LEN;

/// How many bytes [`seal`] adds to the plaintext; a sealed value is exactly
/// `plaintext.len() + SEAL_OVERHEAD` bytes long.
pub const SEAL_OVERHEAD: usize = HEADER_LEN + NONCE_LEN + TAG_LEN;

/// Domain label for wrapping the data key, so a wrapped data key never opens as a value.
const DATA_KEY_DOMAIN: &[u8] = b"coffer/v1/envelope/data-key\0";

/// Domain label for the value, so a sealed value never opens as a wrapped data key.
const VALUE_DOMAIN: &[u8] = b"coffer/v1/envelope/value\0";

/// Seals `plaintext` under a fresh random data key wrapped by `kek`.
///
/// `aad` binds the result to its place (the caller passes, for example, the secret ARN and
/// version id): [`open`] succeeds only with the same `kek` and the same `aad`. Every call uses
/// a new data key and new nonces, so sealing the same plaintext twice gives different output.
///
/// # Panics
/// Panics if the system random generator fails.
pub fn seal(kek: &KeyMaterial, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
    let data_key = KeyMaterial::generate();
    let mut sealed = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
    sealed.push(ENVELOPE_VERSION);
    // The length is a small constant, so the conversion to u16 cannot truncate.
    sealed.extend_from_slice(&(WRAPPED_DATA_KEY_LEN as u16).to_be_bytes());
    aead::seal_into(kek, DATA_KEY_DOMAIN, aad, data_key.expose(), &mut sealed);
    aead::seal_into(&data_key, VALUE_DOMAIN, aad, plaintext, &mut sealed);
    debug_assert_eq!(sealed.len(), plaintext.len() + SEAL_OVERHEAD);
    sealed
}

/// Opens a value produced by [`seal`] with the same `kek` and `aad`.
///
/// # Errors
/// - [`CryptoError::MalformedEnvelope`] if `sealed` is too short or its lengths are wrong;
/// - [`CryptoError::UnsupportedVersion`] if the first byte is not a known format version;
/// - [`CryptoError::AuthenticationFailed`] if `kek` or `aad` differ from those used to seal, or
///   any byte was altered.
pub fn open(kek: &KeyMaterial, sealed: &[u8], aad: &[u8]) -> Result<SecretBytes, CryptoError> {
    let (&version, rest) = sealed.split_first().ok_or(CryptoError::MalformedEnvelope)?;
    if version != ENVELOPE_VERSION {
        return Err(CryptoError::UnsupportedVersion(version));
    }
    if sealed.len() < SEAL_OVERHEAD {
        return Err(CryptoError::MalformedEnvelope);
    }
    let (length, rest) = rest.split_at(2);
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
                    0 => assert!(
                        matches!(result, Err(CryptoError::UnsupportedVersion(v)) if v == tampered[0])
                    ),
                    1 | 2 => assert!(matches!(result, Err(CryptoError::MalformedEnvelope))),
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
        for version in [0u8, 2, 127, 255] {
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
        // Neither the wrapped data key, nor the value nonce, nor the ciphertext may repeat.
        assert_ne!(first[PREFIX_LEN..HEADER_LEN], second[PREFIX_LEN..HEADER_LEN]);
        let nonce = HEADER_LEN..HEADER_LEN + NONCE_LEN;
        assert_ne!(first[nonce.clone()], second[nonce]);
        assert_ne!(first[HEADER_LEN + NONCE_LEN..], second[HEADER_LEN + NONCE_LEN..]);
    }

    #[test]
    fn a_wrapped_data_key_swapped_between_envelopes_fails_to_open() {
        let kek = KeyMaterial::generate();
        let first = seal(&kek, b"first value", AAD);
        let second = seal(&kek, b"other value", AAD);
        let mut spliced = first[..HEADER_LEN].to_vec();
        spliced.extend_from_slice(&second[HEADER_LEN..]);
        assert!(matches!(open(&kek, &spliced, AAD), Err(CryptoError::AuthenticationFailed)));
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
