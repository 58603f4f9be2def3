//! NextToken encoding. Tokens are opaque to clients: base64 of a small JSON
//! record naming the sort order they belong to and where to resume.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coffer_core::{AwsError, ErrorCode};
use coffer_store::{Cursor, CursorKey, SortBy};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct ListToken {
    /// Sort field and direction, so a token is refused with another order.
    o: String,
    /// Date key of the last secret returned, for date orders.
    d: Option<i64>,
    /// Name of the last secret returned, for the name order.
    n: Option<String>,
    /// Sequence number of the last secret returned.
    s: i64,
}

fn order_tag(sort_by: SortBy, descending: bool) -> String {
    format!("{sort_by:?}/{}", if descending { "desc" } else { "asc" })
}

fn invalid_token() -> AwsError {
    AwsError::new(ErrorCode::InvalidNextToken, "The NextToken value is invalid.")
}

pub fn encode_list_token(cursor: &Cursor, sort_by: SortBy, descending: bool) -> String {
    let (d, n) = match &cursor.key {
        CursorKey::Date(d) => (Some(*d), None),
        CursorKey::Name(n) => (None, Some(n.clone())),
    };
    let token = ListToken { o: order_tag(sort_by, descending), d, n, s: cursor.seq };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).expect("token serializes"))
}

pub fn decode_list_token(
    token: &str,
    sort_by: SortBy,
    descending: bool,
) -> Result<Cursor, AwsError> {
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid_token())?;
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

pub fn encode_offset_token(offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("offset:{offset}"))
}

pub fn decode_offset_token(token: &str) -> Result<usize, AwsError> {
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid_token())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid_token())?;
    text.strip_prefix("offset:").and_then(|n| n.parse().ok()).ok_or_else(invalid_token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_token_round_trips_and_is_bound_to_its_order() {
        let cursor = Cursor { key: CursorKey::Name("prod/db".into()), seq: 7 };
        let token = encode_list_token(&cursor, SortBy::Name, false);
        assert_eq!(decode_list_token(&token, SortBy::Name, false).unwrap(), cursor);
        assert!(decode_list_token(&token, SortBy::Name, true).is_err());
        assert!(decode_list_token("garbage!", SortBy::Name, false).is_err());
    }

    #[test]
    fn offset_token_round_trips() {
        assert_eq!(decode_offset_token(&encode_offset_token(42)).unwrap(), 42);
        assert!(decode_offset_token("bm9wZQ").is_err());
    }
}
