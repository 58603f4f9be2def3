//! The single AES-256-GCM primitive that every layer (key wrapping, check values, envelopes)
//! is built on, so nonce handling and buffer hygiene live in one place.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::keys::KeyMaterial;

/// Length of the authentication tag appended to every ciphertext.
pub(crate) const TAG_LEN: usize = 16;

/// Bytes that [`seal_into`] adds around the plaintext: the nonce in front, the tag behind.
pub(crate) const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// Fills `dest` from the operating system's random generator.
///
/// # Panics
/// Panics if the generator fails: continuing would risk reused nonces or guessable keys.
pub(crate) fn fill_random(dest: &mut [u8]) {
    SystemRandom::new().fill(dest).expect("the system random number generator failed");
}

fn cipher(key: &KeyMaterial) -> LessSafeKey {
    // AES-256-GCM takes exactly 32 key bytes and `KeyMaterial` always holds exactly 32, so
    // construction cannot fail.
    let unbound = UnboundKey::new(&AES_256_GCM, key.expose()).expect("AES-256 key is 32 bytes");
    LessSafeKey::new(unbound)
}

/// Joins a fixed domain label and a caller context into one AAD. The label is a constant of
/// the call site, so the split between the two parts is never ambiguous, and it keeps a
/// ciphertext made for one purpose (say, a wrapped key) from opening as another (a check value).
fn associated_data(domain: &[u8], context: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(domain.len() + context.len());
    aad.extend_from_slice(domain);
    aad.extend_from_slice(context);
    aad
}

/// Encrypts `plaintext` under `key` with a fresh random nonce and appends
/// `nonce || ciphertext || tag` to `out`.
pub(crate) fn seal_into(
    key: &KeyMaterial,
    domain: &[u8],
    context: &[u8],
    plaintext: &[u8],
    out: &mut Vec<u8>,
) {
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce);
    seal_with_nonce_into(key, nonce, domain, context, plaintext, out);
}

/// [`seal_into`] with a nonce the caller drew from [`fill_random`] (with other random
/// bytes it needed: one call to the generator instead of two). Each nonce must be fresh.
pub(crate) fn seal_with_nonce_into(
    key: &KeyMaterial,
    nonce: [u8; NONCE_LEN],
    domain: &[u8],
    context: &[u8],
    plaintext: &[u8],
    out: &mut Vec<u8>,
) {
    // Room for all of it first: appending the tag never reallocates, so no copy of the
    // plaintext is left behind in freed memory. The plaintext is encrypted in place in
    // `out`, without a buffer of its own (a value's allocation and copy fewer).
    out.reserve(NONCE_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&nonce);
    let start = out.len();
    out.extend_from_slice(plaintext);
    let tag = cipher(key)
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(associated_data(domain, context)),
            &mut out[start..],
        )
        // AES-GCM refuses only inputs longer than about 64 GiB, far beyond any secret value.
        .expect("AES-256-GCM sealing failed");
    out.extend_from_slice(tag.as_ref());
}

/// Opens `nonce || ciphertext || tag` produced by [`seal_into`] with the same key, domain and
/// context. Every failure, including input too short to hold a nonce and a tag, is reported
/// as `None`; callers check lengths first when they want a more precise error.
pub(crate) fn open(
    key: &KeyMaterial,
    domain: &[u8],
    context: &[u8],
    sealed: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    if sealed.len() < OVERHEAD {
        return None;
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buffer = Zeroizing::new(ciphertext.to_vec());
    let plaintext_len = cipher(key)
        .open_in_place(nonce, Aad::from(associated_data(domain, context)), &mut buffer)
        .ok()?
        .len();
    buffer.truncate(plaintext_len);
    Some(buffer)
}
