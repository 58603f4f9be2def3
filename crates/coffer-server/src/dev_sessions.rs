//! `--dev`'s temporary credentials: what STS's AssumeRole and GetSessionToken issue in
//! `--dev`, and who a call signed with them acts as (`pipeline::identify`).
//!
//! `--dev` verifies no signature, so a session needs no secret to check one against: the
//! record (`dev-session`, under its `ASIA...` key id) holds only the principal the session
//! acts as and when it ends. The secret access key and token are made as AWS shapes them
//! and handed to the client once; neither is kept. A call signed with a known key acts as
//! its principal, in its account (the role's, for an assumed role); one past its expiry
//! is refused with `ExpiredToken`, as in enforcing mode; an unknown `ASIA...` key is any
//! other `--dev` key (the root of the default account).

use crate::App;
use coffer_auth::principal::{ID_RANDOM_LEN, Principal, SECRET_KEY_LEN, SecretAccessKey};
use coffer_core::AwsError;
use coffer_crypto::random_bytes;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use zeroize::Zeroizing;

pub const DEV_SESSION_KIND: &str = "dev-session";
/// At most this many ended sessions are removed by each new one, so issuing stays cheap
/// and ended sessions do not pile up.
const PURGE_BATCH: usize = 64;
/// Bytes of randomness in a session token.
const TOKEN_BYTES: usize = 32;

/// A session as recorded: its principal and its end.
#[derive(Serialize, Deserialize)]
struct DevSession {
    account: String,
    arn: String,
    user_id: String,
    name: String,
    #[serde(default)]
    role_arn: Option<String>,
    expires_ms: i64,
}

/// Credentials as issued, shown once.
pub struct Issued {
    pub access_key_id: String,
    pub secret: SecretAccessKey,
    pub token: Zeroizing<String>,
    pub expires_ms: i64,
}

/// Why temporary credentials `--dev` issued are refused, as enforcing mode refuses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Past their expiry (`ExpiredToken`).
    Expired,
    /// Those of a user that no longer exists (`InvalidClientTokenId`).
    UserGone,
}

/// Issues credentials that act as `principal` for `duration_secs` from `now_ms`.
pub fn issue(
    app: &App,
    principal: &Principal,
    duration_secs: i64,
    now_ms: i64,
) -> Result<Issued, AwsError> {
    let access_key_id = session_key_id();
    let record = DevSession {
        account: principal.account.clone(),
        arn: principal.arn.clone(),
        user_id: principal.user_id.clone(),
        name: principal.name.clone(),
        role_arn: principal.role_arn.clone(),
        expires_ms: now_ms + duration_secs * 1000,
    };
    let bytes = serde_json::to_vec(&record).map_err(|_| AwsError::internal())?;
    app.write_unrecorded(|tx| {
        purge_ended(tx, now_ms)?;
        tx.put_record(DEV_SESSION_KIND, &access_key_id, &bytes).map_err(crate::store_error)
    })?;
    Ok(Issued {
        access_key_id,
        secret: session_secret(),
        token: session_token(),
        expires_ms: record.expires_ms,
    })
}

/// Who the session `access_key_id` acts as: `Ok(None)` for a key `--dev` did not issue,
/// `Err(Ended)` past its expiry or its user.
pub fn lookup(
    app: &App,
    access_key_id: &str,
    now_ms: i64,
) -> Result<Result<Option<Arc<Principal>>, Ended>, AwsError> {
    let found =
        app.read(|tx| tx.record(DEV_SESSION_KIND, access_key_id).map_err(crate::store_error))?;
    let Some(bytes) = found else { return Ok(Ok(None)) };
    let Ok(s) = serde_json::from_slice::<DevSession>(&bytes) else { return Ok(Ok(None)) };
    if s.expires_ms <= now_ms {
        return Ok(Err(Ended::Expired));
    }
    if s.role_arn.is_none() && coffer_auth::policy::user_arn_parts(&s.arn).is_some() {
        // A user's session lives with its user, bound to the unique id, as in enforcing
        // mode: refused once the user is deleted, acting under the name it has now
        // (review 14, finding 02: the record's snapshot outlived both).
        return Ok(match current_user(app, &s.account, &s.user_id)? {
            Some(user) => Ok(Some(Arc::new(user))),
            None => Err(Ended::UserGone),
        });
    }
    let principal = Principal {
        arn: s.arn,
        account: s.account,
        user_id: s.user_id,
        name: s.name,
        role_arn: s.role_arn,
    };
    Ok(Ok(Some(Arc::new(principal))))
}

/// The user of `account` with unique id `user_id` as it is now, from `--dev`'s directory.
fn current_user(app: &App, account: &str, user_id: &str) -> Result<Option<Principal>, AwsError> {
    let Some(directory) = &app.dev_iam else { return Ok(None) };
    match directory.user_with_id(app.store.as_ref(), account, user_id) {
        Ok(user) => Ok(user.map(|u| u.principal())),
        Err(e) => {
            tracing::error!(error = %e, "--dev: a session's user could not be read");
            Err(AwsError::internal())
        }
    }
}

/// The account of the session `access_key_id`, ended or not (GetAccessKeyInfo).
pub fn account_of(app: &App, access_key_id: &str) -> Option<String> {
    let found =
        app.read(|tx| tx.record(DEV_SESSION_KIND, access_key_id).map_err(crate::store_error));
    let bytes = found.ok().flatten()?;
    serde_json::from_slice::<DevSession>(&bytes).ok().map(|s| s.account)
}

/// The root of `account`, as `--dev` takes every caller without credentials of its own
/// (in the partition IAM's records are kept in).
pub fn account_root(account: &str) -> Principal {
    Principal {
        arn: coffer_auth::principal::account_root_arn(coffer_auth::principal::STORED, account),
        account: account.to_string(),
        user_id: account.to_string(),
        name: "root".to_string(),
        role_arn: None,
    }
}

/// The unique id `--dev` gives a role it assumes without its record: `AROA` and 16
/// characters derived from the role's ARN, so every session of one role shares it, as on
/// AWS, and the shape is that of the ids the IAM API gives roles.
pub fn unrecorded_role_id(role_arn: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, role_arn.as_bytes());
    let bytes: [u8; ID_RANDOM_LEN] =
        digest.as_ref()[..ID_RANDOM_LEN].try_into().expect("a SHA-256 digest is 32 bytes");
    format!("AROA{}", &coffer_auth::principal::user_id(&bytes)[4..])
}

fn purge_ended(tx: &mut crate::Txn<'_>, now_ms: i64) -> Result<(), AwsError> {
    let ended: Vec<String> = tx
        .records(DEV_SESSION_KIND, "", None, 4 * PURGE_BATCH)
        .map_err(crate::store_error)?
        .into_iter()
        .filter_map(|(key, bytes)| {
            let s: DevSession = serde_json::from_slice(&bytes).ok()?;
            (s.expires_ms <= now_ms).then_some(key)
        })
        .take(PURGE_BATCH)
        .collect();
    for key in ended {
        tx.delete_record(DEV_SESSION_KIND, &key).map_err(crate::store_error)?;
    }
    Ok(())
}

/// A temporary access key id: `ASIA` and 16 base-32 characters, as AWS's.
fn session_key_id() -> String {
    let random: [u8; ID_RANDOM_LEN] =
        random_bytes(ID_RANDOM_LEN).try_into().expect("requested length");
    format!("ASIA{}", &coffer_auth::principal::access_key_id(&random)[4..])
}

fn session_secret() -> SecretAccessKey {
    let random: Zeroizing<Vec<u8>> = Zeroizing::new(random_bytes(SECRET_KEY_LEN));
    let random: &[u8; SECRET_KEY_LEN] = random[..].try_into().expect("requested length");
    coffer_auth::principal::secret_access_key(random)
}

/// Shaped like AWS's tokens (base64, starting `IQo`), as enforcing mode's are.
fn session_token() -> Zeroizing<String> {
    use base64::Engine;
    let random = Zeroizing::new(random_bytes(TOKEN_BYTES));
    let encoded = base64::engine::general_purpose::STANDARD.encode(&random[..]);
    Zeroizing::new(format!("IQoJb3JpZ2luX2Vj{encoded}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, KeyRing};
    use coffer_crypto::MasterKey;
    use coffer_store::MemoryStore;

    fn dev_app() -> Arc<App> {
        let store = Arc::new(MemoryStore::new());
        let keys = KeyRing::open(MasterKey::generate(), store.as_ref()).unwrap();
        App::new(store, keys, Config::default())
    }

    #[test]
    fn a_session_acts_as_its_principal_until_it_ends() {
        let app = dev_app();
        let arn = "arn:aws:iam::111122223333:role/r";
        let role = Principal::assumed_role("111122223333", "r", arn, "AROAX", "s");
        let issued = issue(&app, &role, 900, 1_000_000).unwrap();
        assert!(issued.access_key_id.starts_with("ASIA") && issued.access_key_id.len() == 20);
        assert_eq!(issued.secret.expose().len(), 40);
        assert_eq!(issued.expires_ms, 1_000_000 + 900_000);
        let found = lookup(&app, &issued.access_key_id, 1_000_000 + 899_999).unwrap().unwrap();
        assert_eq!(*found.unwrap(), role);
        let ended = lookup(&app, &issued.access_key_id, 1_000_000 + 900_000).unwrap();
        assert_eq!(ended, Err(Ended::Expired));
        // Its account is still known to GetAccessKeyInfo.
        assert_eq!(account_of(&app, &issued.access_key_id).as_deref(), Some("111122223333"));
        assert_eq!(lookup(&app, "ASIANOTISSUED000000", 0).unwrap(), Ok(None));
    }

    #[test]
    fn ended_sessions_are_purged_by_new_ones() {
        let app = dev_app();
        let old = issue(&app, &account_root("111122223333"), 900, 0).unwrap();
        issue(&app, &account_root("111122223333"), 900, 10_000_000).unwrap();
        let left = app.read(|tx| Ok(tx.record(DEV_SESSION_KIND, &old.access_key_id))).unwrap();
        assert_eq!(left.unwrap(), None);
    }

    /// Credentials past their expiry are refused as enforcing mode refuses them, in the
    /// terms of the service called; live ones act in their principal's account.
    #[test]
    fn calls_with_ended_sessions_are_refused_as_expired_tokens() {
        use crate::pipeline::{Caller, Credentials, call, call_query};
        use crate::query::Form;
        use coffer_core::Scope;
        use coffer_wire::operation::{Operation, SecretsManagerOp, Service};
        let store = Arc::new(MemoryStore::new());
        let keys = KeyRing::open(MasterKey::generate(), store.as_ref()).unwrap();
        let directory = crate::iam::Iam::open(&MasterKey::generate(), store.as_ref()).unwrap();
        let app = App::dev(store, keys, Config::default(), directory);
        let now = crate::clock::now_ms();
        let root = account_root("111122223333");
        let live = issue(&app, &root, 900, now).unwrap();
        let ended = issue(&app, &root, 900, now - 901_000).unwrap();
        let caller = |key: &str| {
            let scope = Scope::new("000000000000", "us-east-1");
            let credentials = Credentials::Unverified { scope, access_key_id: key.to_string() };
            Caller::console(credentials, None, "test", false)
        };
        let identity = b"Action=GetCallerIdentity&Version=2011-06-15";
        let ask = |key: &str| {
            call_query(&app, &caller(key), Service::Sts, identity.to_vec(), Form::parse(identity))
        };
        let answer = String::from_utf8(ask(&live.access_key_id).unwrap()).unwrap();
        assert!(answer.contains("<Account>111122223333</Account>"), "{answer}");
        let err = ask(&ended.access_key_id).unwrap_err();
        assert_eq!((err.code.as_str(), err.code.http_status()), ("ExpiredToken", 403));
        let list = Operation::from(SecretsManagerOp::ListSecrets);
        let err = call(&app, &caller(&ended.access_key_id), list, b"{}".to_vec()).unwrap_err();
        assert_eq!(err.code.as_str(), "ExpiredTokenException");
    }

    #[test]
    fn an_unrecorded_role_has_one_id_shaped_as_role_ids() {
        let a = unrecorded_role_id("arn:aws:iam::111122223333:role/a");
        assert!(a.starts_with("AROA") && a.len() == 20, "{a}");
        assert_eq!(a, unrecorded_role_id("arn:aws:iam::111122223333:role/a"));
        assert_ne!(a, unrecorded_role_id("arn:aws:iam::111122223333:role/b"));
    }
}
