//! Keys derived from the master key for purposes other than wrapping: HKDF-SHA256 with a
//! label per purpose, so each derived key is independent of the master key's other uses
//! and of every other label (for example the MAC key of backup files), and the streaming
//! HMAC-SHA256 that such a key authenticates a file with.

use std::fmt;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::{hkdf, hmac};

use crate::keys::{KEY_LEN, KeyMaterial};
use crate::master::MasterKey;

/// The HKDF salt: fixed, since the master key is already uniformly random; it only
/// separates Coffer's derivations from any other use of the same bytes.
const SALT: &[u8] = b"coffer/v1/master/derive";

/// The output length of one derivation.
struct Len;

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        KEY_LEN
    }
}

impl MasterKey {
    /// A 32-byte key derived from this master key for the purpose `label` (HKDF-SHA256,
    /// `label` as the info). The same master key and label always give the same key; any
    /// other label gives an unrelated one.
    pub fn derive_key(&self, label: &[u8]) -> KeyMaterial {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(self.key.expose());
        let info = [label];
        let mut out = zeroize::Zeroizing::new([0u8; KEY_LEN]);
        prk.expand(&info, Len)
            .and_then(|okm| okm.fill(&mut out[..]))
            .expect("HKDF-SHA256 yields 32 bytes");
        KeyMaterial::from_bytes(&out[..]).expect("32 bytes")
    }

    /// An HMAC-SHA256 key derived for the purpose `label` ([`MasterKey::derive_key`]).
    pub fn derive_mac_key(&self, label: &[u8]) -> MacKey {
        MacKey(hmac::Key::new(hmac::HMAC_SHA256, self.derive_key(label).expose()))
    }
}

/// An HMAC-SHA256 key (see [`MasterKey::derive_mac_key`]).
pub struct MacKey(hmac::Key);

impl MacKey {
    /// Starts a MAC over a stream of bytes.
    pub fn start(&self) -> Mac {
        Mac(hmac::Context::with_key(&self.0))
    }
}

impl fmt::Debug for MacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MacKey(***)")
    }
}

/// An HMAC-SHA256 being computed over a stream.
pub struct Mac(hmac::Context);

impl Mac {
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The MAC as lowercase hex.
    pub fn finish_hex(self) -> String {
        let tag = self.0.sign();
        let mut hex = String::with_capacity(64);
        for byte in tag.as_ref() {
            hex.push(char::from_digit(u32::from(byte >> 4), 16).expect("a nibble"));
            hex.push(char::from_digit(u32::from(byte & 0xf), 16).expect("a nibble"));
        }
        hex
    }

    /// Whether `hex` is this MAC (lowercase hex), compared in constant time.
    pub fn verify_hex(self, hex: &str) -> bool {
        verify_slices_are_equal(self.finish_hex().as_bytes(), hex.as_bytes()).is_ok()
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Mac(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_derived_key_depends_on_the_master_key_and_the_label_only() {
        let master = MasterKey::from_key_material(KeyMaterial::from_bytes(&[7; KEY_LEN]).unwrap());
        let same = MasterKey::from_text(&master.to_text()).unwrap();
        let other = MasterKey::generate();
        let a = master.derive_key(b"coffer backup v2");
        assert_eq!(a.expose(), same.derive_key(b"coffer backup v2").expose());
        assert_ne!(a.expose(), master.derive_key(b"coffer audit chain v2").expose());
        assert_ne!(a.expose(), other.derive_key(b"coffer backup v2").expose());
        assert_ne!(&a.expose()[..], &[7; KEY_LEN][..]);
    }

    #[test]
    fn a_stream_mac_verifies_only_the_same_bytes_under_the_same_key() {
        let master = MasterKey::generate();
        let key = master.derive_mac_key(b"coffer backup v2");
        let mut mac = key.start();
        mac.update(b"line one\n");
        mac.update(b"line two\n");
        let hex = mac.finish_hex();
        assert_eq!(hex.len(), 64);
        let mut whole = key.start();
        whole.update(b"line one\nline two\n");
        assert!(whole.verify_hex(&hex));
        let mut changed = key.start();
        changed.update(b"line one\nline twO\n");
        assert!(!changed.verify_hex(&hex));
        let mut other = MasterKey::generate().derive_mac_key(b"coffer backup v2").start();
        other.update(b"line one\nline two\n");
        assert!(!other.verify_hex(&hex));
    }
}
