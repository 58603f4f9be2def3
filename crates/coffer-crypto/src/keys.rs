//! Zeroizing holders for key material and secret plaintext that never print their contents.

use std::fmt;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use zeroize::Zeroizing;

use crate::aead::fill_random;
use crate::error::CryptoError;
use crate::locked::LockedKey;

/// Length in bytes of every key in the hierarchy (AES-256).
pub const KEY_LEN: usize = 32;

/// 32 bytes of key material, zeroized on drop.
///
/// The bytes live on the heap, in a page locked in memory (`crate::locked`), so that moving a
/// `KeyMaterial` around does not leave copies of the key in old stack frames and the kernel
/// does not write it to swap. There is deliberately no `Clone` and no `PartialEq`: keys are
/// compared through check values or by opening data, never with a short-circuiting `==`.
pub struct KeyMaterial {
    bytes: LockedKey,
}

impl KeyMaterial {
    /// Generates a fresh random key.
    ///
    /// # Panics
    /// Panics if the system random generator fails.
    pub fn generate() -> KeyMaterial {
        let mut bytes = LockedKey::new();
        fill_random(&mut bytes.bytes_mut()[..]);
        KeyMaterial { bytes }
    }

    /// Copies exactly 32 bytes of key material.
    ///
    /// # Errors
    /// [`CryptoError::MalformedKey`] if `b` is not 32 bytes long.
    pub fn from_bytes(b: &[u8]) -> Result<KeyMaterial, CryptoError> {
        if b.len() != KEY_LEN {
            return Err(CryptoError::MalformedKey);
        }
        let mut bytes = LockedKey::new();
        bytes.bytes_mut().copy_from_slice(b);
        Ok(KeyMaterial { bytes })
    }

    /// The raw key bytes. Callers must not copy them into anything that outlives this value
    /// without zeroizing it.
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        self.bytes.bytes()
    }
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The plaintext bytes of a secret value, zeroized on drop and readable only through
/// [`SecretBytes::expose`].
pub struct SecretBytes {
    bytes: Zeroizing<Vec<u8>>,
}

impl SecretBytes {
    /// Takes ownership of `v`; its buffer is zeroized when the `SecretBytes` is dropped.
    pub fn new(v: Vec<u8>) -> Self {
        SecretBytes { bytes: Zeroizing::new(v) }
    }

    /// The plaintext. Keep its uses short-lived and out of logs.
    pub fn expose(&self) -> &[u8] {
        &self.bytes
    }

    /// Number of plaintext bytes; the length of a secret is not itself treated as secret.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True when the plaintext has no bytes.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Compares the plaintext with `other` in time that depends only on the lengths, so that
    /// a caller checking a guessed value learns nothing from timing but whether the lengths
    /// match.
    pub fn ct_eq(&self, other: &[u8]) -> bool {
        verify_slices_are_equal(&self.bytes, other).is_ok()
    }
}

impl From<Vec<u8>> for SecretBytes {
    fn from(v: Vec<u8>) -> Self {
        SecretBytes::new(v)
    }
}

impl From<String> for SecretBytes {
    fn from(s: String) -> Self {
        SecretBytes::new(s.into_bytes())
    }
}

impl From<Zeroizing<Vec<u8>>> for SecretBytes {
    fn from(bytes: Zeroizing<Vec<u8>>) -> Self {
        SecretBytes { bytes }
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_material_debug_prints_stars_and_not_the_bytes() {
        let key = KeyMaterial::from_bytes(&[0xab; KEY_LEN]).unwrap();
        let shown = format!("{key:?} {key:#?}");
        assert_eq!(format!("{key:?}"), "***");
        assert!(!shown.contains("171"), "decimal byte leaked: {shown}");
        assert!(!shown.to_lowercase().contains("ab"), "hex byte leaked: {shown}");
    }

    #[test]
    fn secret_bytes_debug_prints_stars_and_not_the_plaintext() {
        let secret = SecretBytes::new(b"hunter2-password".to_vec());
        assert_eq!(format!("{secret:?}"), "***");
        let nested = format!("{:?}", Some(&secret));
        assert!(!nested.contains("hunter2"));
        assert!(!nested.contains("104"), "decimal bytes leaked: {nested}");
    }

    #[test]
    fn key_material_from_bytes_accepts_only_32_bytes() {
        for len in [0, 1, 16, 31, 33, 64] {
            assert!(matches!(
                KeyMaterial::from_bytes(&vec![7u8; len]),
                Err(CryptoError::MalformedKey)
            ));
        }
        let bytes: Vec<u8> = (0..32).collect();
        let key = KeyMaterial::from_bytes(&bytes).unwrap();
        assert_eq!(&key.expose()[..], &bytes[..]);
    }

    #[test]
    fn generated_keys_are_distinct_and_not_all_zero() {
        let a = KeyMaterial::generate();
        let b = KeyMaterial::generate();
        assert_ne!(a.expose(), b.expose());
        assert_ne!(a.expose(), &[0u8; KEY_LEN]);
    }

    #[test]
    fn secret_bytes_reports_its_length_and_contents() {
        let secret = SecretBytes::from(String::from("abc"));
        assert_eq!(secret.len(), 3);
        assert!(!secret.is_empty());
        assert_eq!(secret.expose(), b"abc");
        assert!(SecretBytes::new(Vec::new()).is_empty());
    }

    #[test]
    fn secret_bytes_ct_eq_matches_only_identical_bytes() {
        let secret = SecretBytes::new(b"\x00\x01\x02\xff".to_vec());
        assert!(secret.ct_eq(b"\x00\x01\x02\xff"));
        assert!(!secret.ct_eq(b"\x00\x01\x02\xfe"));
        assert!(!secret.ct_eq(b"\x01\x01\x02\xff"));
        assert!(!secret.ct_eq(b"\x00\x01\x02"));
        assert!(!secret.ct_eq(b"\x00\x01\x02\xff\x00"));
        assert!(!secret.ct_eq(b""));
        assert!(SecretBytes::new(Vec::new()).ct_eq(b""));
    }
}
