//! Principals (IAM users) and their credentials: ARNs, ids, and key generation.
//!
//! Generation takes its randomness as an argument so this crate stays free of I/O;
//! the server draws the bytes from the system CSPRNG.

use coffer_core::Partition;
use std::fmt;
use zeroize::Zeroizing;

/// Who a verified request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `arn:<partition>:iam::<account>:user/<name>`: in `aws` as IAM's records make it,
    /// in the request's partition once authentication placed it ([`Principal::in_partition`]).
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
    /// `arn:aws:sts::<account>:assumed-role/<role>/<session>` (in `aws`, as IAM's records
    /// are kept: [`Principal::in_partition`] shows it in the request's), user id
    /// `<role id>:<session>`, as AWS names them.
    pub fn assumed_role(
        account: &str,
        role: &str,
        role_arn: &str,
        role_id: &str,
        session: &str,
    ) -> Principal {
        Principal {
            arn: STORED.arn("sts", "", account, &format!("assumed-role/{role}/{session}")),
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

    /// The principal as a request signed for a region of `partition` sees it: IAM is global,
    /// so its ARNs (and its role's) take the partition of the region the request was
    /// signed for.
    pub fn in_partition(&self, partition: Partition) -> Principal {
        Principal {
            arn: partition.rewrite(&self.arn),
            role_arn: self.role_arn.as_deref().map(|r| partition.rewrite(r)),
            ..self.clone()
        }
    }

    /// The partition the principal's ARN is in (`aws` for one without an ARN's shape).
    pub fn partition(&self) -> Partition {
        Partition::of_arn(&self.arn).unwrap_or(STORED)
    }

    /// The federated user GetFederationToken names `name` in `account`:
    /// `arn:aws:sts::<account>:federated-user/<name>`, user id `<account>:<name>` (AWS's
    /// `aws:userid` for federated users); it has no `aws:username`.
    pub fn federated_user(account: &str, name: &str) -> Principal {
        Principal {
            arn: STORED.arn("sts", "", account, &format!("federated-user/{name}")),
            account: account.to_string(),
            user_id: format!("{account}:{name}"),
            name: name.to_string(),
            role_arn: None,
        }
    }

    /// True for an account's root (`arn:<partition>:iam::<account>:root`), its
    /// GetSessionToken sessions included (they act as it).
    pub fn is_account_root(&self) -> bool {
        let parts: Vec<&str> = self.arn.splitn(6, ':').collect();
        self.role_arn.is_none() && matches!(parts.as_slice(), ["arn", _, "iam", "", _, "root"])
    }

    /// True for a federated user (GetFederationToken's credentials).
    pub fn is_federated_user(&self) -> bool {
        let parts: Vec<&str> = self.arn.splitn(6, ':').collect();
        self.role_arn.is_none()
            && matches!(parts.as_slice(), ["arn", _, "sts", _, _, resource]
                if resource.starts_with("federated-user/"))
    }
}

/// The partition IAM's records (users, roles, groups, policies, sessions) are kept and
/// compared in: IAM is global, one entity whatever partition a request sees it through;
/// answers show it in the request's ([`Partition::rewrite`]).
pub const STORED: Partition = Partition::Aws;

/// An IAM or STS ARN a request signed for a region of `partition` names, as IAM's records
/// keep it ([`STORED`]); `None` for an ARN of another partition, which names nothing here.
/// What has no known partition (an account id, a unique id, a malformed ARN) is as given.
pub fn stored_iam_arn(arn: &str, partition: Partition) -> Option<String> {
    match Partition::of_arn(arn) {
        Some(p) if p != partition => None,
        Some(_) => Some(STORED.rewrite(arn)),
        None => Some(arn.to_string()),
    }
}

/// The ARN of an IAM user.
pub fn user_arn(account: &str, name: &str) -> String {
    user_arn_at(account, "/", name)
}

/// The ARN of an IAM user with its IAM path (`/` or `/a/b/`), as IAM names it
/// (`arn:aws:iam::<account>:user/a/b/<name>`, kept in [`STORED`]): what `aws:PrincipalArn`, policies'
/// principals and denial messages see.
pub fn user_arn_at(account: &str, path: &str, name: &str) -> String {
    let path = if path.starts_with('/') && path.ends_with('/') { path } else { "/" };
    STORED.arn("iam", "", account, &format!("user{path}{name}"))
}

/// The ARN of an account's root principal in `partition`, as resource policies name whole
/// accounts.
pub fn account_root_arn(partition: Partition, account: &str) -> String {
    partition.arn("iam", "", account, "root")
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
    fn a_principal_is_shown_in_the_requests_partition() {
        let role = "arn:aws:iam::111122223333:role/r";
        let p = Principal::assumed_role("111122223333", "r", role, "AROAX", "s");
        assert_eq!(p.arn, "arn:aws:sts::111122223333:assumed-role/r/s");
        let cn = p.in_partition(Partition::AwsCn);
        assert_eq!(cn.arn, "arn:aws-cn:sts::111122223333:assumed-role/r/s");
        assert_eq!(cn.role_arn.as_deref(), Some("arn:aws-cn:iam::111122223333:role/r"));
        assert_eq!((cn.partition(), cn.user_id.as_str()), (Partition::AwsCn, "AROAX:s"));
        assert_eq!(cn.in_partition(STORED), p);
        assert!(
            !p.is_account_root()
                && !Principal::user("111122223333", "root", "AIDAX").is_account_root()
        );
        assert_eq!(
            account_root_arn(Partition::AwsUsGov, "111122223333"),
            "arn:aws-us-gov:iam::111122223333:root"
        );
    }

    #[test]
    fn an_iam_arn_of_another_partition_names_nothing() {
        let cn = "arn:aws-cn:iam::111122223333:user/bob";
        let kept = "arn:aws:iam::111122223333:user/bob";
        assert_eq!(stored_iam_arn(cn, Partition::AwsCn).as_deref(), Some(kept));
        assert_eq!(stored_iam_arn(kept, Partition::Aws).as_deref(), Some(kept));
        assert_eq!(stored_iam_arn(kept, Partition::AwsCn), None);
        assert_eq!(stored_iam_arn(cn, Partition::Aws), None);
        assert_eq!(
            stored_iam_arn("111122223333", Partition::AwsCn).as_deref(),
            Some("111122223333")
        );
    }

    #[test]
    fn user_names_follow_iam_rules() {
        validate_user_name("alice.smith+ops@example_1-2=,").unwrap();
        for bad in ["", "a b", "a/b", &"x".repeat(65)] {
            assert!(validate_user_name(bad).is_err(), "{bad}");
        }
    }
}
