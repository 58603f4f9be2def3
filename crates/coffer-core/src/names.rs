//! Secret names, ARNs and SecretId resolution; the form of a KMS key id.
//!
//! A SecretId is a name, a full ARN (`...:secret:<name>-<6 chars>`) or a partial
//! ARN (the ARN without the random suffix). AWS reads any trailing `-XXXXXX` of
//! an ARN as the suffix, so such an ARN only ever resolves as a full ARN.

use crate::error::AwsError;
use crate::model::Scope;
use rand::Rng;

const INVALID_NAME: &str = "Invalid name. Must be a valid name containing alphanumeric characters, or any of the following: -/_+=.@!";

/// Characters allowed in a secret name besides ASCII letters and digits.
const NAME_PUNCTUATION: &str = "-/_+=.@!";

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || NAME_PUNCTUATION.contains(c)
}

/// Checks a name given to CreateSecret.
pub fn validate_name(name: &str) -> Result<(), AwsError> {
    if name.is_empty() || !name.chars().all(is_name_char) {
        return Err(AwsError::validation(INVALID_NAME));
    }
    Ok(())
}

/// Checks a SecretId: a valid name, or something shaped like an ARN.
pub fn validate_secret_id(id: &str) -> Result<(), AwsError> {
    if let Some(rest) = id.strip_prefix("arn:") {
        if rest.chars().all(|c| is_name_char(c) || c == ':') {
            return Ok(());
        }
        return Err(AwsError::validation(INVALID_NAME));
    }
    validate_name(id)
}

/// How a SecretId should be looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// Look up by name in the caller's scope.
    Name(String),
    /// Look up by exact ARN.
    Arn(String),
    /// An ARN for another account or region, or not a Secrets Manager ARN: it never resolves.
    Foreign,
}

/// Decides how to look up `id` for a caller in `scope`.
pub fn parse_secret_id(id: &str, scope: &Scope) -> SecretRef {
    if !id.starts_with("arn:") {
        return SecretRef::Name(id.to_string());
    }
    let parts: Vec<&str> = id.splitn(7, ':').collect();
    if parts.len() != 7 || parts[2] != "secretsmanager" || parts[5] != "secret" {
        return SecretRef::Foreign;
    }
    // Another partition's ARN names a secret that cannot be here, as another region's.
    if parts[1] != scope.partition().as_str()
        || parts[3] != scope.region
        || parts[4] != scope.account
    {
        return SecretRef::Foreign;
    }
    let tail = parts[6];
    if has_random_suffix(tail) {
        SecretRef::Arn(id.to_string())
    } else {
        SecretRef::Name(tail.to_string())
    }
}

/// True when `tail` ends in `-` and six more characters, which AWS reads as an ARN suffix.
fn has_random_suffix(tail: &str) -> bool {
    let bytes = tail.as_bytes();
    bytes.len() > 7 && bytes[bytes.len() - 7] == b'-' && tail.is_char_boundary(bytes.len() - 6)
}

/// The ARN of a new secret, with a fresh random six-character suffix.
pub fn new_secret_arn(scope: &Scope, name: &str, rng: &mut impl Rng) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let suffix: String =
        (0..6).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect();
    scope.arn("secretsmanager", &format!("secret:{name}-{suffix}"))
}

/// True for a key id as KMS writes them: a lowercase or uppercase hex UUID, or a
/// multi-Region key id: `mrk-` and 32 hex digits. Here, not in coffer-kms, because the
/// audit trail (which names keys in its records) reads it too.
pub fn is_kms_key_id(s: &str) -> bool {
    if let Some(hex) = s.strip_prefix("mrk-") {
        return hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    }
    let bytes = s.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        Scope::new("123456789012", "us-east-1")
    }

    #[test]
    fn names_with_documented_punctuation_are_valid() {
        validate_name("Valid/_+=.@-Name-a1b2c3-").unwrap();
        validate_name("prod/db!").unwrap();
    }

    #[test]
    fn names_with_space_star_question_bracket_or_backslash_are_invalid() {
        for bad in ["a b", "a*", "a?", "a]", "a\\b", ""] {
            let err = validate_name(bad).unwrap_err();
            assert_eq!(err.message, INVALID_NAME);
        }
    }

    #[test]
    fn partial_arn_resolves_by_name() {
        let id = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db";
        assert_eq!(parse_secret_id(id, &scope()), SecretRef::Name("prod/db".into()));
    }

    #[test]
    fn arn_ending_in_six_characters_is_read_as_full_arn() {
        let id = "arn:aws:secretsmanager:us-east-1:123456789012:secret:Invalid/_+=.@-Name-a1b2c3";
        assert_eq!(parse_secret_id(id, &scope()), SecretRef::Arn(id.into()));
    }

    #[test]
    fn arn_of_another_region_never_resolves() {
        let id = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/db-abcdef";
        assert_eq!(parse_secret_id(id, &scope()), SecretRef::Foreign);
    }

    #[test]
    fn arn_of_another_partition_never_resolves() {
        let cn = Scope::new("123456789012", "cn-north-1");
        for id in [
            "arn:aws:secretsmanager:cn-north-1:123456789012:secret:prod/db-abcdef",
            "arn:aws:secretsmanager:cn-north-1:123456789012:secret:prod/db",
        ] {
            assert_eq!(parse_secret_id(id, &cn), SecretRef::Foreign, "{id}");
        }
        let id = "arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:prod/db";
        assert_eq!(parse_secret_id(id, &cn), SecretRef::Name("prod/db".into()));
        let id = "arn:aws-cn:secretsmanager:us-east-1:123456789012:secret:prod/db";
        assert_eq!(parse_secret_id(id, &scope()), SecretRef::Foreign);
    }

    #[test]
    fn new_arn_is_in_the_regions_partition() {
        let cn = Scope::new("123456789012", "cn-northwest-1");
        let arn = new_secret_arn(&cn, "x", &mut rand::rng());
        assert!(arn.starts_with("arn:aws-cn:secretsmanager:cn-northwest-1:123456789012:secret:x-"));
    }

    #[test]
    fn new_arn_has_a_six_character_suffix() {
        let arn = new_secret_arn(&scope(), "x", &mut rand::rng());
        let suffix = arn.rsplit('-').next().unwrap();
        assert_eq!(suffix.len(), 6);
        assert!(arn.starts_with("arn:aws:secretsmanager:us-east-1:123456789012:secret:x-"));
    }
}
