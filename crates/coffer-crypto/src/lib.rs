//! Encryption at rest for Coffer: the master key, key wrapping, envelope sealing of secret
//! values, and zeroizing types for key material and plaintext.
//!
//! The key hierarchy has three levels. The [`MasterKey`] (kept in `<data-dir>/master.key` or
//! given by the operator) wraps key-encryption keys (KMS key material). Each value is
//! [`seal`]ed under its own key, derived with HKDF-SHA256 from a key-encryption key and a
//! random salt (format 2; format 1 wrapped a random data key instead), so no AES-GCM key
//! encrypts more than once under a random nonce except the master key, which wraps only
//! key material. Every layer uses AES-256-GCM from aws-lc-rs.
//!
//! [`kms_blob`] is the KMS ciphertext blob format (header and AAD) around an envelope.
//!
//! This crate does no I/O except reading and creating the master key file.

mod aead;
mod derive;
mod envelope;
mod error;
mod keys;
pub mod kms_blob;
pub mod locked;
mod master;

pub use derive::{Mac, MacKey};
pub use envelope::{ENVELOPE_VERSION, SEAL_OVERHEAD, open, seal};
pub use error::CryptoError;
pub use keys::{KEY_LEN, KeyMaterial, SecretBytes};
pub use master::{MasterKey, WRAPPED_KEY_LEN};

/// Returns `n` cryptographically random bytes from the operating system's generator.
///
/// # Panics
/// Panics if the system random generator fails, because no key or nonce could then be trusted.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    aead::fill_random(&mut bytes);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_bytes_returns_the_requested_length_and_differs_between_calls() {
        assert!(random_bytes(0).is_empty());
        assert_eq!(random_bytes(17).len(), 17);
        // Two 32-byte draws colliding would mean the generator is broken.
        assert_ne!(random_bytes(32), random_bytes(32));
    }
}
