//! Key identifiers in every form KMS accepts: key id, key ARN, alias name, alias ARN.

use crate::error::KmsError;
use coffer_core::Scope;

/// How a request named a key, before it is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRef {
    /// A bare key id (`1234abcd-12ab-34cd-56ef-1234567890ab`), in the caller's account and region.
    KeyId(String),
    /// `arn:<partition>:kms:<region>:<account>:key/<key id>`.
    KeyArn { scope: Scope, key_id: String },
    /// `alias/<name>`, in the caller's account and region.
    AliasName(String),
    /// `arn:<partition>:kms:<region>:<account>:alias/<name>`; the alias name keeps its `alias/` prefix.
    AliasArn { scope: Scope, alias: String },
}

impl KeyRef {
    /// True for the two alias forms.
    pub fn is_alias(&self) -> bool {
        matches!(self, KeyRef::AliasName(_) | KeyRef::AliasArn { .. })
    }
}

/// The ARN of key `key_id` in `scope`.
pub fn key_arn(scope: &Scope, key_id: &str) -> String {
    scope.arn("kms", &format!("key/{key_id}"))
}

/// The ARN of alias `alias` (with its `alias/` prefix) in `scope`.
pub fn alias_arn(scope: &Scope, alias: &str) -> String {
    scope.arn("kms", alias)
}

/// True for a key id as KMS writes them (`coffer_core::names::is_kms_key_id`).
pub use coffer_core::names::is_kms_key_id as is_key_id;

fn is_account(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_region(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Parses a `KeyId`-style parameter. Anything that is not one of the four forms is
/// `NotFoundException: Invalid keyId ...`, as KMS answers.
pub fn parse_key_ref(s: &str) -> Result<KeyRef, KmsError> {
    if let Some(rest) = s.strip_prefix("arn:") {
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        let [partition, service, region, account, resource] = parts[..] else {
            return Err(KmsError::invalid_key_id(s));
        };
        if service != "kms" || !is_region(region) || !is_account(account) {
            return Err(KmsError::invalid_key_id(s));
        }
        let scope = Scope::new(account, region);
        // An ARN whose partition is not its region's names no key anywhere (`arn:aws:` in
        // cn-north-1): KMS answers it as any ARN it cannot read.
        if partition != scope.partition().as_str() {
            return Err(KmsError::invalid_key_id(s));
        }
        if let Some(key_id) = resource.strip_prefix("key/") {
            if is_key_id(key_id) {
                return Ok(KeyRef::KeyArn { scope, key_id: key_id.to_string() });
            }
        } else if resource.starts_with("alias/") && resource.len() > "alias/".len() {
            return Ok(KeyRef::AliasArn { scope, alias: resource.to_string() });
        }
        return Err(KmsError::invalid_key_id(s));
    }
    if s.starts_with("alias/") && s.len() > "alias/".len() {
        return Ok(KeyRef::AliasName(s.to_string()));
    }
    if is_key_id(s) {
        return Ok(KeyRef::KeyId(s.to_string()));
    }
    Err(KmsError::invalid_key_id(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_core::ErrorCode;

    const ID: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";

    #[test]
    fn every_documented_form_parses() {
        assert_eq!(parse_key_ref(ID).unwrap(), KeyRef::KeyId(ID.into()));
        assert_eq!(
            parse_key_ref(&format!("arn:aws:kms:us-west-2:111122223333:key/{ID}")).unwrap(),
            KeyRef::KeyArn { scope: Scope::new("111122223333", "us-west-2"), key_id: ID.into() }
        );
        assert_eq!(
            parse_key_ref("alias/ExampleAlias").unwrap(),
            KeyRef::AliasName("alias/ExampleAlias".into())
        );
        assert_eq!(
            parse_key_ref("arn:aws:kms:us-west-2:111122223333:alias/aws/secretsmanager").unwrap(),
            KeyRef::AliasArn {
                scope: Scope::new("111122223333", "us-west-2"),
                alias: "alias/aws/secretsmanager".into()
            }
        );
    }

    #[test]
    fn malformed_ids_are_invalid_key_ids() {
        for bad in [
            "",
            "foo",
            "alias/",
            "1234abcd-12ab-34cd-56ef-1234567890a",
            "1234abcd-12ab-34cd-56ef-1234567890abc",
            "1234abcd_12ab-34cd-56ef-1234567890ab",
            "EXAMPLE1-90ab-cdef-fedc-ba987EXAMPLE",
            "arn:aws:kms:us-west-2:111122223333:key/",
            "arn:aws:kms:us-west-2:111122223333:key/not-a-uuid",
            "arn:aws:kms:us-west-2:1111:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:s3:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:us-west-2:111122223333:alias/",
            "arn:aws:kms:us-west-2:111122223333:grant/x",
            "arn:aws:kms",
        ] {
            let err = parse_key_ref(bad).unwrap_err();
            assert_eq!(err.code(), Some(ErrorCode::KmsNotFound), "{bad}");
            assert_eq!(err.client_message(), format!("Invalid keyId '{bad}'"));
        }
    }

    #[test]
    fn multi_region_key_ids_have_the_right_shape() {
        assert!(is_key_id("mrk-1234abcd12ab34cd56ef1234567890ab"));
        assert!(!is_key_id(&format!("mrk-{ID}")));
        assert!(!is_key_id("mrk-1234abcd12ab34cd56ef1234567890a"));
    }

    #[test]
    fn arns_are_built_from_the_scope() {
        let scope = Scope::new("000000000000", "eu-west-1");
        assert_eq!(key_arn(&scope, ID), format!("arn:aws:kms:eu-west-1:000000000000:key/{ID}"));
        assert_eq!(alias_arn(&scope, "alias/x"), "arn:aws:kms:eu-west-1:000000000000:alias/x");
        let gov = Scope::new("000000000000", "us-gov-east-1");
        assert_eq!(
            alias_arn(&gov, "alias/x"),
            "arn:aws-us-gov:kms:us-gov-east-1:000000000000:alias/x"
        );
    }

    #[test]
    fn an_arn_must_be_in_its_regions_partition() {
        let cn = format!("arn:aws-cn:kms:cn-north-1:111122223333:key/{ID}");
        let scope = Scope::new("111122223333", "cn-north-1");
        assert_eq!(parse_key_ref(&cn).unwrap(), KeyRef::KeyArn { scope, key_id: ID.into() });
        for bad in [
            format!("arn:aws:kms:cn-north-1:111122223333:key/{ID}"),
            "arn:aws:kms:cn-north-1:111122223333:alias/x".to_string(),
            format!("arn:aws-cn:kms:us-east-1:111122223333:key/{ID}"),
        ] {
            let err = parse_key_ref(&bad).unwrap_err();
            assert_eq!(err.client_message(), format!("Invalid keyId '{bad}'"));
        }
    }
}
