//! Principals (IAM users) and their credentials: ARNs, ids, and key generation.
//!
//! Generation takes its randomness as an argument so this crate stays free of I/O;
//! the server draws the bytes from the system CSPRNG.

use std::fmt;
use zeroize::Zeroizing;

/// Who a verified request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `arn:aws:iam::<account>:user/<name>`.
    pub arn: String,
    pub account: String,
    /// The unique id (`AIDA...`), `aws:userid`.
    pub user_id: String,
    /// The user name, `aws:username`; for an assumed-role session, the session name.
    pub name: String,
    /// For an assumed-role session, the role's ARN (`aws:PrincipalArn`, and what
    /// resource and trust policies name the session by); `None` for users.
    pub role_arn: Option<String>,
}

impl Principal {
    pub fn user(account: &str, name: &str, user_id: &str) -> Principal {
        Principal::user_at(account, "/", name, user_id)
    }

    /// A user under an IAM path: its ARN carries the path ([`user_arn_at`]).
    pub fn user_at(account: &str, path: &str, name: &str, user_id: &str) -> Principal {
        Principal {
            arn: user_arn_at(account, path, name),
            account: account.to_string(),
            user_id: user_id.to_string(),
            name: name.to_string(),
            role_arn: None,
        }
    }

    /// A session of role `role` (ARN `role_arn`, unique id `role_id`) named `session`:
    /// `arn:aws:sts::<account>:assumed-role/<role>/<session>`, user id
    /// `<role id>:<session>`, as AWS names them.
    pub fn assumed_role(
        account: &str,
        role: &str,
        role_arn: &str,
        role_id: &str,
        session: &str,
    ) -> Principal {
        Principal {
            arn: format!("arn:aws:sts::{account}:assumed-role/{role}/{session}"),
            account: account.to_string(),
            user_id: format!("{role_id}:{session}"),
            name: session.to_string(),
            role_arn: Some(role_arn.to_string()),
        }
    }

    /// True for an assumed-role session.
    pub fn is_assumed_role(&self) -> bool {
        self.role_arn.is_some()
    }

    /// The federated user GetFederationToken names `name` in `account`:
    /// `arn:aws:sts::<account>:federated-user/<name>`, user id `<account>:<name>` (AWS's
    /// `aws:userid` for federated users); it has no `aws:username`.
    pub fn federated_user(account: &str, name: &str) -> Principal {
        Principal {
            arn: format!("arn:aws:sts::{account}:federated-user/{name}"),
            account: account.to_string(),
            user_id: format!("{account}:{name}"),
            name: name.to_string(),
            role_arn: None,
        }
    }

    /// True for a federated user (GetFederationToken's credentials).
    pub fn is_federated_user(&self) -> bool {
        let parts: Vec<&str> = self.arn.splitn(6, ':').collect();
        self.role_arn.is_none()
            && matches!(parts.as_slice(), ["arn", _, "sts", _, _, resource]
                if resource.starts_with("federated-user/"))
    }
}

/// The ARN of an IAM user.
pub fn user_arn(account: &str, name: &str) -> String {
    format!("arn:aws:iam::{account}:user/{name}")
}

/// The ARN of an IAM user with its IAM path (`/` or `/a/b/`), as IAM names it
/// (`arn:aws:iam::<account>:user/a/b/<name>`): what `aws:PrincipalArn`, policies'
/// principals and denial messages see.
pub fn user_arn_at(account: &str, path: &str, name: &str) -> String {
    let path = if path.starts_with('/') && path.ends_with('/') { path } else { "/" };
    format!("arn:aws:iam::{account}:user{path}{name}")
}

/// The ARN of an account's root principal, as resource policies name whole accounts.
pub fn account_root_arn(account: &str) -> String {
    format!("arn:aws:iam::{account}:root")
}

/// IAM user names: 1 to 64 of letters, digits and `+=,.@_-`.
pub fn validate_user_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!("invalid user name '{name}': use 1 to 64 letters, digits or any of +=,.@_-"))
    }
}

const BASE32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Length of a secret access key, as AWS issues them.
pub const SECRET_KEY_LEN: usize = 40;
/// Random bytes needed by [`access_key_id`] and [`user_id`].
pub const ID_RANDOM_LEN: usize = 16;

fn base32_id(prefix: &str, random: &[u8], len: usize) -> String {
    assert!(random.len() >= len, "need {len} random bytes");
    let tail: String = random[..len].iter().map(|b| BASE32[usize::from(b % 32)] as char).collect();
    format!("{prefix}{tail}")
}

/// An access key id: `AKIA` and 16 base-32 characters, like AWS's long-term keys.
pub fn access_key_id(random: &[u8; ID_RANDOM_LEN]) -> String {
    base32_id("AKIA", random, 16)
}

/// A user's unique id: `AIDA` and 16 base-32 characters.
pub fn user_id(random: &[u8; ID_RANDOM_LEN]) -> String {
    base32_id("AIDA", random, 16)
}

/// A secret access key: 40 characters of the base64 alphabet. Each byte of `random`
/// gives one character (the alphabet has 64 entries, so no bias).
pub fn secret_access_key(random: &[u8; SECRET_KEY_LEN]) -> SecretAccessKey {
    let mut s = Zeroizing::new(String::with_capacity(SECRET_KEY_LEN));
    for b in random {
        s.push(SECRET_ALPHABET[usize::from(b % 64)] as char);
    }
    SecretAccessKey(s)
}

/// A secret access key in memory: wiped on drop, printed as `***`, read only through
/// [`SecretAccessKey::expose`].
pub struct SecretAccessKey(Zeroizing<String>);

impl SecretAccessKey {
    pub fn new(s: Zeroizing<String>) -> Self {
        SecretAccessKey(s)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretAccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_and_secrets_have_aws_shapes() {
        let id = access_key_id(&[7; 16]);
        assert_eq!(id.len(), 20);
        assert!(id.starts_with("AKIA") && id.bytes().all(|b| BASE32.contains(&b)));
        assert!(user_id(&[200; 16]).starts_with("AIDA"));
        let secret = secret_access_key(&[255; 40]);
        assert_eq!(secret.expose().len(), 40);
        assert_eq!(format!("{secret:?}"), "***");
        let all: Vec<u8> = (0..40).collect();
        let secret = secret_access_key(&all.try_into().unwrap());
        assert!(secret.expose().bytes().all(|b| SECRET_ALPHABET.contains(&b)));
    }

    #[test]
    fn user_names_follow_iam_rules() {
        validate_user_name("alice.smith+ops@example_1-2=,").unwrap();
        for bad in ["", "a b", "a/b", &"x".repeat(65)] {
            assert!(validate_user_name(bad).is_err(), "{bad}");
        }
    }
}
