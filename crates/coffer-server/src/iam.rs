//! IAM users and access keys, persisted as store records, and the lookup that turns
//! an access key id into a verified caller.
//!
//! Records: `iam-user` under `<account>/<name>` (the user and its inline policies) and
//! `iam-access-key` under the access key id (owner, status and the secret access key
//! sealed under the credentials key). The credentials key is a random key wrapped by the
//! master key and stored as the wrapped key `iam-credentials-kek`; secret access keys
//! never reach the store in plaintext, and SigV4 needs the secret itself, so a hash
//! would not do.

use crate::store_error;
use coffer_auth::policy::{Policy, PolicyKind, malformed_message};
use coffer_auth::principal::{
    ID_RANDOM_LEN, Principal, SECRET_KEY_LEN, SecretAccessKey, access_key_id, secret_access_key,
    user_id, validate_user_name,
};
use coffer_core::AwsError;
use coffer_crypto::{KeyMaterial, MasterKey, random_bytes};
use coffer_store::{ReadTxn, Store, StoreError, WriteTxn};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use zeroize::Zeroizing;

pub const USER_KIND: &str = "iam-user";
pub const ACCESS_KEY_KIND: &str = "iam-access-key";
/// The wrapped-key id of the key that seals secret access keys.
pub const CREDENTIALS_KEY_ID: &str = "iam-credentials-kek";
const CREDENTIALS_KEY_CONTEXT: &[u8] = b"coffer iam credentials key";
/// Set once the first administrator was created, so it is never silently re-created.
const BOOTSTRAP_SETTING: &str = "iam-admin-bootstrapped";

/// The administrator `coffer serve` creates on first start.
pub const ADMIN_USER: &str = "admin";
pub const ADMIN_POLICY_NAME: &str = "AdministratorAccess";
pub const ADMIN_POLICY: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;

/// An IAM user and its inline policies, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserRecord {
    pub account: String,
    pub name: String,
    pub user_id: String,
    pub created_ms: i64,
    /// Inline policy documents by name, as given.
    #[serde(default)]
    pub policies: BTreeMap<String, String>,
}

impl UserRecord {
    pub fn principal(&self) -> Principal {
        Principal::user(&self.account, &self.name, &self.user_id)
    }
}

/// An access key as stored: the secret only sealed.
#[derive(Clone, Serialize, Deserialize)]
pub struct AccessKeyRecord {
    pub access_key_id: String,
    pub account: String,
    pub user_name: String,
    /// `Active` or `Inactive`; only active keys authenticate.
    pub status: String,
    pub created_ms: i64,
    /// The secret access key sealed under the credentials key (base64).
    sealed_secret: String,
}

impl fmt::Debug for AccessKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessKeyRecord")
            .field("access_key_id", &self.access_key_id)
            .field("account", &self.account)
            .field("user_name", &self.user_name)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// What an administrative IAM change can fail with.
#[derive(Debug, thiserror::Error)]
pub enum IamError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Exists(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Crypto(String),
}

fn user_key(account: &str, name: &str) -> String {
    format!("{account}/{name}")
}

fn secret_aad(access_key_id: &str) -> Vec<u8> {
    format!("coffer iam secret access key\0{access_key_id}").into_bytes()
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Backend(format!("unreadable IAM record: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("IAM records serialize")
}

fn load_user(
    tx: &dyn ReadTxn,
    account: &str,
    name: &str,
) -> Result<Option<UserRecord>, StoreError> {
    tx.record(USER_KIND, &user_key(account, name))?.map(|b| decode(&b)).transpose()
}

fn no_such_user(account: &str, name: &str) -> IamError {
    IamError::NotFound(format!("no user '{name}' in account {account}"))
}

/// Runs `f` in a write transaction, carrying its own error out.
fn write<T>(
    store: &dyn Store,
    mut f: impl FnMut(&mut dyn WriteTxn) -> Result<T, IamError>,
) -> Result<T, IamError> {
    let mut out = None;
    let result = store.write(&mut |tx| match f(tx) {
        Ok(v) => {
            out = Some(Ok(v));
            Ok(())
        }
        Err(e) => {
            out = Some(Err(e));
            Err(StoreError::Aborted)
        }
    });
    match (result, out) {
        (Ok(()), Some(Ok(v))) => Ok(v),
        (Err(StoreError::Aborted), Some(Err(e))) => Err(e),
        (Err(e), _) => Err(IamError::Store(e)),
        (Ok(()), _) => Err(IamError::Store(StoreError::Backend("write did not run".into()))),
    }
}

fn read<T>(
    store: &dyn Store,
    mut f: impl FnMut(&dyn ReadTxn) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut out = None;
    store.read(&mut |tx| {
        out = Some(f(tx)?);
        Ok(())
    })?;
    out.ok_or_else(|| StoreError::Backend("read did not run".into()))
}

/// A verified caller's identity and the identity policies that apply to it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub policies: Vec<Policy>,
}

/// Users, access keys and the key that seals their secrets.
pub struct Iam {
    credentials_key: KeyMaterial,
}

impl fmt::Debug for Iam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Iam(***)")
    }
}

impl Iam {
    /// Loads the credentials key (wrapped under `master`), creating it on first use. Call
    /// after the master key was checked against the store.
    pub fn open(master: &MasterKey, store: &dyn Store) -> Result<Iam, IamError> {
        let key = write(store, |tx| match tx.wrapped_key(CREDENTIALS_KEY_ID)? {
            Some(wrapped) => master.unwrap_key(&wrapped, CREDENTIALS_KEY_CONTEXT).map_err(|e| {
                IamError::Crypto(format!("cannot unwrap the IAM credentials key: {e}"))
            }),
            None => {
                let key = KeyMaterial::generate();
                tx.put_wrapped_key(
                    CREDENTIALS_KEY_ID,
                    &master.wrap_key(&key, CREDENTIALS_KEY_CONTEXT),
                )?;
                Ok(key)
            }
        })?;
        Ok(Iam { credentials_key: key })
    }

    /// Creates a user with no policies.
    pub fn create_user(
        &self,
        store: &dyn Store,
        account: &str,
        name: &str,
        now_ms: i64,
    ) -> Result<UserRecord, IamError> {
        validate_user_name(name).map_err(IamError::Invalid)?;
        let id_random: [u8; ID_RANDOM_LEN] =
            random_bytes(ID_RANDOM_LEN).try_into().expect("requested length");
        let user = UserRecord {
            account: account.to_string(),
            name: name.to_string(),
            user_id: user_id(&id_random),
            created_ms: now_ms,
            policies: BTreeMap::new(),
        };
        write(store, |tx| {
            if load_user(tx, account, name)?.is_some() {
                return Err(IamError::Exists(format!(
                    "user '{name}' already exists in account {account}"
                )));
            }
            tx.put_record(USER_KIND, &user_key(account, name), &encode(&user))?;
            Ok(())
        })?;
        Ok(user)
    }

    /// Removes a user with its access keys and policies. Returns the removed key ids.
    pub fn delete_user(
        &self,
        store: &dyn Store,
        account: &str,
        name: &str,
    ) -> Result<Vec<String>, IamError> {
        write(store, |tx| {
            if load_user(tx, account, name)?.is_none() {
                return Err(no_such_user(account, name));
            }
            let keys: Vec<String> =
                keys_of(tx, account, name)?.into_iter().map(|k| k.access_key_id).collect();
            for id in &keys {
                tx.delete_record(ACCESS_KEY_KIND, id)?;
            }
            tx.delete_record(USER_KIND, &user_key(account, name))?;
            Ok(keys.clone())
        })
    }

    /// Every user of every account, with their access key ids.
    pub fn list_users(
        &self,
        store: &dyn Store,
    ) -> Result<Vec<(UserRecord, Vec<String>)>, IamError> {
        Ok(read(store, |tx| {
            let users: Vec<UserRecord> = all_records(tx, USER_KIND)?
                .iter()
                .map(|(_, b)| decode(b))
                .collect::<Result<_, _>>()?;
            let keys: Vec<AccessKeyRecord> = all_records(tx, ACCESS_KEY_KIND)?
                .iter()
                .map(|(_, b)| decode(b))
                .collect::<Result<_, _>>()?;
            Ok(users
                .into_iter()
                .map(|u| {
                    let ids = keys
                        .iter()
                        .filter(|k| k.account == u.account && k.user_name == u.name)
                        .map(|k| k.access_key_id.clone())
                        .collect();
                    (u, ids)
                })
                .collect())
        })?)
    }

    /// Creates an access key for a user. The secret is returned once and stored only sealed.
    pub fn create_access_key(
        &self,
        store: &dyn Store,
        account: &str,
        name: &str,
        now_ms: i64,
    ) -> Result<(String, SecretAccessKey), IamError> {
        let id_random: [u8; ID_RANDOM_LEN] =
            random_bytes(ID_RANDOM_LEN).try_into().expect("requested length");
        let id = access_key_id(&id_random);
        let secret_random: Zeroizing<Vec<u8>> = Zeroizing::new(random_bytes(SECRET_KEY_LEN));
        let secret_random: &[u8; SECRET_KEY_LEN] =
            secret_random[..].try_into().expect("requested length");
        let secret = secret_access_key(secret_random);
        let sealed = coffer_crypto::seal(
            &self.credentials_key,
            secret.expose().as_bytes(),
            &secret_aad(&id),
        );
        use base64::Engine;
        let record = AccessKeyRecord {
            access_key_id: id.clone(),
            account: account.to_string(),
            user_name: name.to_string(),
            status: "Active".to_string(),
            created_ms: now_ms,
            sealed_secret: base64::engine::general_purpose::STANDARD.encode(sealed),
        };
        write(store, |tx| {
            if load_user(tx, account, name)?.is_none() {
                return Err(no_such_user(account, name));
            }
            if tx.record(ACCESS_KEY_KIND, &id)?.is_some() {
                return Err(IamError::Exists(format!("access key {id} already exists")));
            }
            tx.put_record(ACCESS_KEY_KIND, &id, &encode(&record))?;
            Ok(())
        })?;
        Ok((id, secret))
    }

    /// Deletes an access key.
    pub fn delete_access_key(
        &self,
        store: &dyn Store,
        access_key_id: &str,
    ) -> Result<AccessKeyRecord, IamError> {
        write(store, |tx| {
            let record: AccessKeyRecord = match tx.record(ACCESS_KEY_KIND, access_key_id)? {
                Some(b) => decode(&b)?,
                None => return Err(IamError::NotFound(format!("no access key {access_key_id}"))),
            };
            tx.delete_record(ACCESS_KEY_KIND, access_key_id)?;
            Ok(record)
        })
    }

    /// Attaches (or replaces) a named inline identity policy, after checking its grammar.
    pub fn put_user_policy(
        &self,
        store: &dyn Store,
        account: &str,
        name: &str,
        policy_name: &str,
        document: &str,
    ) -> Result<(), IamError> {
        if policy_name.is_empty() || policy_name.len() > 128 {
            return Err(IamError::Invalid("a policy name has 1 to 128 characters".into()));
        }
        Policy::parse(document, PolicyKind::Identity).map_err(|problems| {
            IamError::Invalid(
                malformed_message(&problems).replace("resource policy", "identity policy"),
            )
        })?;
        write(store, |tx| {
            let mut user =
                load_user(tx, account, name)?.ok_or_else(|| no_such_user(account, name))?;
            user.policies.insert(policy_name.to_string(), document.to_string());
            tx.put_record(USER_KIND, &user_key(account, name), &encode(&user))?;
            Ok(())
        })
    }

    /// Detaches a named inline policy.
    pub fn delete_user_policy(
        &self,
        store: &dyn Store,
        account: &str,
        name: &str,
        policy_name: &str,
    ) -> Result<(), IamError> {
        write(store, |tx| {
            let mut user =
                load_user(tx, account, name)?.ok_or_else(|| no_such_user(account, name))?;
            if user.policies.remove(policy_name).is_none() {
                return Err(IamError::NotFound(format!(
                    "user '{name}' has no policy '{policy_name}'"
                )));
            }
            tx.put_record(USER_KIND, &user_key(account, name), &encode(&user))?;
            Ok(())
        })
    }

    /// Creates the first administrator (user `admin` with `AdministratorAccess`) and an
    /// access key for it, unless one was ever created in this store. `publish` receives
    /// the key before anything is committed (it writes the credentials file); if it fails,
    /// nothing is kept.
    pub fn bootstrap_admin(
        &self,
        store: &dyn Store,
        account: &str,
        now_ms: i64,
        publish: &mut dyn FnMut(&str, &SecretAccessKey) -> Result<(), String>,
    ) -> Result<Option<UserRecord>, IamError> {
        if read(store, |tx| tx.setting(BOOTSTRAP_SETTING))?.is_some() {
            return Ok(None);
        }
        let user = match self.create_user(store, account, ADMIN_USER, now_ms) {
            Ok(user) => user,
            Err(IamError::Exists(_)) => read(store, |tx| load_user(tx, account, ADMIN_USER))?
                .ok_or_else(|| no_such_user(account, ADMIN_USER))?,
            Err(e) => return Err(e),
        };
        self.put_user_policy(store, account, ADMIN_USER, ADMIN_POLICY_NAME, ADMIN_POLICY)?;
        let (id, secret) = self.create_access_key(store, account, ADMIN_USER, now_ms)?;
        if let Err(e) = publish(&id, &secret) {
            self.delete_access_key(store, &id)?;
            return Err(IamError::Invalid(e));
        }
        write(store, |tx| Ok(tx.put_setting(BOOTSTRAP_SETTING, b"1")?))?;
        Ok(Some(user))
    }

    /// Finds the caller behind an access key: `None` for unknown or inactive keys. The
    /// secret is opened only to verify a signature and is wiped when dropped.
    pub fn lookup(
        &self,
        tx: &dyn ReadTxn,
        access_key_id: &str,
    ) -> Result<Option<(Caller, SecretAccessKey)>, AwsError> {
        let Some(bytes) = tx.record(ACCESS_KEY_KIND, access_key_id).map_err(store_error)? else {
            return Ok(None);
        };
        let key: AccessKeyRecord = decode(&bytes).map_err(store_error)?;
        if key.status != "Active" {
            return Ok(None);
        }
        let Some(user) = load_user(tx, &key.account, &key.user_name).map_err(store_error)? else {
            return Ok(None);
        };
        use base64::Engine;
        let sealed =
            base64::engine::general_purpose::STANDARD.decode(&key.sealed_secret).map_err(|_| {
                tracing::error!(access_key_id, "access key record holds no readable sealed secret");
                AwsError::internal()
            })?;
        let opened =
            coffer_crypto::open(&self.credentials_key, &sealed, &secret_aad(access_key_id))
                .map_err(|e| {
                    tracing::error!(access_key_id, error = %e, "cannot open a secret access key");
                    AwsError::internal()
                })?;
        let text = std::str::from_utf8(opened.expose()).map_err(|_| AwsError::internal())?;
        let secret = SecretAccessKey::new(Zeroizing::new(text.to_string()));
        let policies = user
            .policies
            .iter()
            .filter_map(|(name, doc)| match Policy::parse(doc, PolicyKind::Identity) {
                Ok(p) => Some(p),
                Err(problems) => {
                    tracing::error!(user = %user.name, policy = %name, ?problems, "stored policy does not parse; ignored");
                    None
                }
            })
            .collect();
        Ok(Some((Caller { principal: user.principal(), policies }, secret)))
    }
}

/// Re-wraps the credentials key from `old` to `new` master key (master-key rotation must
/// do this next to re-wrapping the KMS materials, or access keys stop verifying).
/// Idempotent: a key already wrapped under `new` is left alone, so an interrupted
/// rotation can simply be run again. Returns whether anything changed.
pub fn rewrap_credentials_key(
    store: &dyn Store,
    old: &MasterKey,
    new: &MasterKey,
) -> Result<bool, IamError> {
    write(store, |tx| {
        let Some(wrapped) = tx.wrapped_key(CREDENTIALS_KEY_ID)? else { return Ok(false) };
        if new.unwrap_key(&wrapped, CREDENTIALS_KEY_CONTEXT).is_ok() {
            return Ok(false);
        }
        let key = old
            .unwrap_key(&wrapped, CREDENTIALS_KEY_CONTEXT)
            .map_err(|e| IamError::Crypto(format!("cannot unwrap the IAM credentials key: {e}")))?;
        tx.put_wrapped_key(CREDENTIALS_KEY_ID, &new.wrap_key(&key, CREDENTIALS_KEY_CONTEXT))?;
        Ok(true)
    })
}

fn all_records(tx: &dyn ReadTxn, kind: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    loop {
        let after = out.last().map(|(k, _)| k.clone());
        let page = tx.records(kind, "", after.as_deref(), 256)?;
        let done = page.len() < 256;
        out.extend(page);
        if done {
            return Ok(out);
        }
    }
}

fn keys_of(
    tx: &dyn ReadTxn,
    account: &str,
    name: &str,
) -> Result<Vec<AccessKeyRecord>, StoreError> {
    let all: Vec<AccessKeyRecord> = all_records(tx, ACCESS_KEY_KIND)?
        .iter()
        .map(|(_, b)| decode(b))
        .collect::<Result<_, _>>()?;
    Ok(all.into_iter().filter(|k| k.account == account && k.user_name == name).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_store::MemoryStore;

    fn iam(store: &dyn Store) -> (Iam, MasterKey) {
        let master = MasterKey::generate();
        (Iam::open(&master, store).unwrap(), master)
    }

    #[test]
    fn an_access_key_looks_up_its_user_and_policies_and_the_secret_is_stored_sealed() {
        let store = MemoryStore::new();
        let (iam, _) = iam(&store);
        iam.create_user(&store, "111122223333", "alice", 1).unwrap();
        iam.put_user_policy(&store, "111122223333", "alice", "read", ADMIN_POLICY).unwrap();
        let (id, secret) = iam.create_access_key(&store, "111122223333", "alice", 2).unwrap();
        assert_eq!(secret.expose().len(), 40);
        let raw = read(&store, |tx| tx.record(ACCESS_KEY_KIND, &id)).unwrap().unwrap();
        assert!(!String::from_utf8_lossy(&raw).contains(secret.expose()));
        let (caller, opened) =
            read(&store, |tx| Ok(iam.lookup(tx, &id).unwrap())).unwrap().unwrap();
        assert_eq!(opened.expose(), secret.expose());
        assert_eq!(caller.principal.arn, "arn:aws:iam::111122223333:user/alice");
        assert_eq!(caller.policies.len(), 1);
        assert!(read(&store, |tx| Ok(iam.lookup(tx, "AKIANOTAKEY").unwrap())).unwrap().is_none());
    }

    #[test]
    fn deleting_a_user_removes_its_keys_and_malformed_policies_are_refused() {
        let store = MemoryStore::new();
        let (iam, _) = iam(&store);
        iam.create_user(&store, "111122223333", "bob", 1).unwrap();
        assert!(matches!(
            iam.create_user(&store, "111122223333", "bob", 1),
            Err(IamError::Exists(_))
        ));
        let bad = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*"}}"#;
        assert!(matches!(
            iam.put_user_policy(&store, "111122223333", "bob", "p", bad),
            Err(IamError::Invalid(_))
        ));
        let (id, _) = iam.create_access_key(&store, "111122223333", "bob", 2).unwrap();
        assert_eq!(iam.delete_user(&store, "111122223333", "bob").unwrap(), vec![id.clone()]);
        assert!(read(&store, |tx| Ok(iam.lookup(tx, &id).unwrap())).unwrap().is_none());
    }

    #[test]
    fn the_admin_is_created_once_and_a_failed_publish_keeps_no_key() {
        let store = MemoryStore::new();
        let (iam, master) = iam(&store);
        let err =
            iam.bootstrap_admin(&store, "000000000000", 1, &mut |_, _| Err("disk full".into()));
        assert!(err.is_err());
        assert!(iam.list_users(&store).unwrap()[0].1.is_empty());
        let mut published = None;
        let admin = iam
            .bootstrap_admin(&store, "000000000000", 1, &mut |id, _| {
                published = Some(id.to_string());
                Ok(())
            })
            .unwrap()
            .unwrap();
        assert_eq!(admin.principal().arn, "arn:aws:iam::000000000000:user/admin");
        assert!(
            iam.bootstrap_admin(&store, "000000000000", 2, &mut |_, _| panic!("again"))
                .unwrap()
                .is_none()
        );
        // Rotating the master key keeps the credentials readable under the new key.
        let new = MasterKey::generate();
        assert!(rewrap_credentials_key(&store, &master, &new).unwrap());
        assert!(!rewrap_credentials_key(&store, &master, &new).unwrap());
        let reopened = Iam::open(&new, &store).unwrap();
        let id = published.unwrap();
        assert!(read(&store, |tx| Ok(reopened.lookup(tx, &id).unwrap())).unwrap().is_some());
    }
}
