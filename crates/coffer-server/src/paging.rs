//! NextToken encoding. Tokens are opaque to clients and cannot be forged or moved: the
//! small record naming the sort order and where to resume is sealed (AES-256-GCM, through
//! `coffer_crypto::seal`) under a key derived from the master key, with the query the token
//! belongs to (operation, account, region, filters, order; or the secret, for version
//! lists) as additional authenticated data. A token changed in any byte, or presented
//! with another caller's scope or other filters, fails to open and is refused with
//! `InvalidNextTokenException`. Every node sharing a database shares the master key, so a
//! token from one node continues on another; the resume position (a secret's name and its
//! store-wide sequence number) is never readable.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coffer_core::{AwsError, ErrorCode};
use coffer_crypto::KeyMaterial;
use coffer_store::{Cursor, CursorKey, SortBy};
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

/// What [`install_key`] derives from the master key; also the AAD's domain.
pub(crate) const KEY_PURPOSE: &str = "coffer paging tokens v1";

static KEY: OnceLock<KeyMaterial> = OnceLock::new();

/// Sets the key tokens are sealed under, derived from the master key when the key ring
/// opens. The first key installed in a process stays (a process serves one store); a
/// process that never opens a key ring (unit tests) seals under a random key of its own.
pub(crate) fn install_key(key: KeyMaterial) {
    let _ = KEY.set(key);
}

fn key() -> &'static KeyMaterial {
    KEY.get_or_init(KeyMaterial::generate)
}

#[derive(Serialize, Deserialize)]
struct ListToken {
    /// Sort field and direction, so a token is refused with another order.
    o: String,
    /// Date key of the last secret examined, for date orders.
    d: Option<i64>,
    /// Name of the last secret examined, for the name order.
    n: Option<String>,
    /// Sequence number of the last secret examined.
    s: i64,
}

fn order_tag(sort_by: SortBy, descending: bool) -> String {
    format!("{sort_by:?}/{}", if descending { "desc" } else { "asc" })
}

fn invalid_token() -> AwsError {
    AwsError::new(ErrorCode::InvalidNextToken, "The NextToken value is invalid.")
}

/// The query a token belongs to, as the additional data it is sealed with: each part
/// length-prefixed, so no two different queries give the same bytes.
pub fn binding(parts: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(KEY_PURPOSE.as_bytes());
    for part in parts {
        out.extend_from_slice(&(part.len() as u64).to_be_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    out
}

fn seal(payload: &[u8], binding: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(coffer_crypto::seal(key(), payload, binding))
}

fn open(token: &str, binding: &[u8]) -> Result<Vec<u8>, AwsError> {
    let sealed = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid_token())?;
    let opened = coffer_crypto::open(key(), &sealed, binding).map_err(|_| invalid_token())?;
    Ok(opened.expose().to_vec())
}

pub fn encode_list_token(
    cursor: &Cursor,
    sort_by: SortBy,
    descending: bool,
    binding: &[u8],
) -> String {
    let (d, n) = match &cursor.key {
        CursorKey::Date(d) => (Some(*d), None),
        CursorKey::Name(n) => (None, Some(n.clone())),
    };
    let token = ListToken { o: order_tag(sort_by, descending), d, n, s: cursor.seq };
    seal(&serde_json::to_vec(&token).expect("token serializes"), binding)
}

pub fn decode_list_token(
    token: &str,
    sort_by: SortBy,
    descending: bool,
    binding: &[u8],
) -> Result<Cursor, AwsError> {
    let bytes = open(token, binding)?;
    let token: ListToken = serde_json::from_slice(&bytes).map_err(|_| invalid_token())?;
    if token.o != order_tag(sort_by, descending) {
        return Err(invalid_token());
    }
    let key = match (token.d, token.n) {
        (Some(d), None) => CursorKey::Date(d),
        (None, Some(n)) => CursorKey::Name(n),
        _ => return Err(invalid_token()),
    };
    Ok(Cursor { key, seq: token.s })
}

pub fn encode_offset_token(offset: usize, binding: &[u8]) -> String {
    seal(format!("offset:{offset}").as_bytes(), binding)
}

pub fn decode_offset_token(token: &str, binding: &[u8]) -> Result<usize, AwsError> {
    let bytes = open(token, binding)?;
    let text = String::from_utf8(bytes).map_err(|_| invalid_token())?;
    text.strip_prefix("offset:").and_then(|n| n.parse().ok()).ok_or_else(invalid_token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_token_round_trips_and_is_bound_to_its_order_and_query() {
        let cursor = Cursor { key: CursorKey::Name("prod/db".into()), seq: 7 };
        let query = binding(&["ListSecrets", "111122223333", "us-east-1", "name=prod"]);
        let token = encode_list_token(&cursor, SortBy::Name, false, &query);
        assert_eq!(decode_list_token(&token, SortBy::Name, false, &query).unwrap(), cursor);
        assert!(decode_list_token(&token, SortBy::Name, true, &query).is_err());
        assert!(decode_list_token("garbage!", SortBy::Name, false, &query).is_err());
        for other in [
            binding(&["ListSecrets", "444455556666", "us-east-1", "name=prod"]),
            binding(&["ListSecrets", "111122223333", "eu-west-1", "name=prod"]),
            binding(&["ListSecrets", "111122223333", "us-east-1", "name=pro"]),
            binding(&["ListSecrets", "111122223333", "us-east-1name=prod", ""]),
        ] {
            let err = decode_list_token(&token, SortBy::Name, false, &other).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidNextToken);
        }
    }

    #[test]
    fn tokens_are_opaque_and_any_changed_byte_is_refused() {
        let cursor = Cursor { key: CursorKey::Name("prod/db".into()), seq: 4242 };
        let query = binding(&["q"]);
        let token = encode_list_token(&cursor, SortBy::Name, false, &query);
        let raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
        let text = String::from_utf8_lossy(&raw);
        assert!(!text.contains("prod/db") && !text.contains("4242"));
        let mut bytes = raw.clone();
        for i in [0, bytes.len() / 2, bytes.len() - 1] {
            bytes[i] ^= 1;
            let forged = URL_SAFE_NO_PAD.encode(&bytes);
            assert!(decode_list_token(&forged, SortBy::Name, false, &query).is_err());
            bytes[i] ^= 1;
        }
        // A token in the old, unsealed format is refused.
        let old = URL_SAFE_NO_PAD.encode(br#"{"o":"Name/asc","d":null,"n":"a","s":1}"#);
        assert!(decode_list_token(&old, SortBy::Name, false, &query).is_err());
    }

    #[test]
    fn offset_token_round_trips_and_is_bound() {
        let query = binding(&["arn:1"]);
        assert_eq!(decode_offset_token(&encode_offset_token(42, &query), &query).unwrap(), 42);
        assert!(
            decode_offset_token(&encode_offset_token(42, &query), &binding(&["arn:2"])).is_err()
        );
        assert!(decode_offset_token("bm9wZQ", &query).is_err());
    }
}
