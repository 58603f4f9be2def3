//! Keys derived from the master key for purposes other than wrapping: HKDF-SHA256 with a
//! label per purpose, so each derived key is independent of the master key's other uses
//! and of every other label (for example the MAC key of backup files).

use aws_lc_rs::hkdf;

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
}
