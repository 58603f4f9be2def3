//! Built-in rotators: rotation functions Coffer runs itself, for teams without a Lambda.
//!
//! A secret names one through its RotationLambdaARN with a reserved function name, in any
//! region and account: `arn:<partition>:lambda:<region>:<account>:function:<name>` where `<name>` is
//! - `coffer-builtin-random-password`: a new random password, the whole value or the
//!   `password` key of a JSON object value (no service behind it);
//! - `coffer-builtin-postgres-single-user`: AWS's PostgreSQL single-user template;
//! - `coffer-builtin-postgres-alternating-users`: AWS's PostgreSQL alternating-users
//!   template (the master credentials come from the secret `masterarn` names, which must
//!   be in the same account and region).
//!
//! The same four steps run, and leave the same labels, as with a Lambda: createSecret fills
//! the AWSPENDING placeholder, finishSecret moves AWSCURRENT. Store work runs on the
//! blocking pool; database work (`coffer-rotation`) on the async workers.

use super::apply_labels;
use crate::secrets;
use crate::{App, Txn, clock, store_error};
use coffer_core::model::{AWSCURRENT, AWSPENDING, AWSPREVIOUS, SecretMeta, VersionMeta};
use coffer_core::password::{PasswordSpec, generate_password};
use coffer_core::{AwsError, staging};
use coffer_crypto::SecretBytes;
use coffer_rotation::postgres::{self, DbSecret};
use coffer_store::WriteTxn;
use std::sync::Arc;

/// A new random password for a value without a service behind it.
pub const RANDOM_PASSWORD: &str = "coffer-builtin-random-password";
/// AWS's PostgreSQL single-user rotation.
pub const POSTGRES_SINGLE_USER: &str = "coffer-builtin-postgres-single-user";
/// AWS's PostgreSQL alternating-users rotation.
pub const POSTGRES_ALTERNATING_USERS: &str = "coffer-builtin-postgres-alternating-users";

/// The characters AWS's templates exclude from generated passwords (`EXCLUDE_CHARACTERS`).
const TEMPLATE_EXCLUDED: &str = ":/@\"'\\";

/// The built-in rotator `function` names for the secret `secret_arn`, if any: the bare
/// name, or the exact unqualified ARN `arn:<partition>:lambda:<region>:<account>:function:<name>`
/// in the secret's own region and account. Anything else (a qualifier, another account, a
/// name hidden after an extra `:`) is an ordinary Lambda function, so a Deny on the
/// built-in's ARN cannot be sidestepped by spelling it differently.
pub fn builtin_kind(function: &str, secret_arn: &str) -> Option<&'static str> {
    let known = |name: &str| {
        [RANDOM_PASSWORD, POSTGRES_SINGLE_USER, POSTGRES_ALTERNATING_USERS]
            .into_iter()
            .find(|builtin| *builtin == name)
    };
    if !function.contains(':') {
        return known(function);
    }
    let parts: Vec<&str> = function.split(':').collect();
    let secret: Vec<&str> = secret_arn.split(':').collect();
    match parts.as_slice() {
        ["arn", partition, "lambda", region, account, "function", name]
            if secret.get(1) == Some(partition)
                && secret.get(3) == Some(region)
                && secret.get(4) == Some(account) =>
        {
            known(name)
        }
        _ => None,
    }
}

/// The ARN `lambda:InvokeFunction` is decided on: a bare function name is expanded to the
/// secret's region and account, as Lambda resolves it, so a policy written on ARNs applies.
pub fn function_arn(function: &str, secret_arn: &str) -> String {
    if function.starts_with("arn:") {
        return function.to_owned();
    }
    let secret: Vec<&str> = secret_arn.split(':').collect();
    match (secret.get(1), secret.get(3), secret.get(4)) {
        (Some(partition), Some(region), Some(account)) => {
            format!("arn:{partition}:lambda:{region}:{account}:function:{function}")
        }
        _ => function.to_owned(),
    }
}

/// Whether version `token` of `meta` is the placeholder of a rotation a built-in database
/// rotator runs, which only that rotator fills (createSecret keeps a value already there, as AWS's
/// templates do, so a value put there by a caller would be the one set on the database).
pub fn fills_placeholder(meta: &SecretMeta, token: &str) -> bool {
    let Some(rotation) = &meta.rotation else { return false };
    let in_flight = rotation.in_flight.as_ref().is_some_and(|f| f.token == token);
    let function = rotation.lambda_arn.as_deref().unwrap_or_default();
    in_flight && sets_database_passwords(builtin_kind(function, &meta.arn))
}

/// Whether a built-in rotator sets a password on a database: the random-password rotator
/// has no service behind it, so whoever may write the value could set it directly anyway.
fn sets_database_passwords(kind: Option<&str>) -> bool {
    matches!(kind, Some(POSTGRES_SINGLE_USER | POSTGRES_ALTERNATING_USERS))
}

/// Refuses to label a version AWSPENDING when a built-in database rotator rotates `meta`: the
/// scheduler reattempts a version left AWSPENDING under its own token and createSecret
/// keeps the value it finds (as AWS's templates do), so a caller who may write but not
/// read would choose the password the rotator sets on the database (attack13 finding 03).
/// Only the rotator labels a version AWSPENDING; taking the label off stays allowed.
pub fn refuse_pending_label(meta: &SecretMeta, adds_pending: bool) -> Result<(), AwsError> {
    let function = meta.rotation.as_ref().and_then(|r| r.lambda_arn.as_deref());
    match function.and_then(|f| builtin_kind(f, &meta.arn)) {
        Some(kind) if adds_pending && sets_database_passwords(Some(kind)) => {
            Err(AwsError::invalid_request(format!(
                "The staging label {AWSPENDING} of secret {} is set only by its built-in rotator {kind}.",
                meta.arn
            )))
        }
        _ => Ok(()),
    }
}

/// Runs `step` of a built-in rotation of `arn` to version `token`; `Err` says why it failed.
pub async fn run(
    app: &Arc<App>,
    function: &str,
    arn: &str,
    token: &str,
    step: &str,
) -> Result<(), String> {
    let kind = builtin_kind(function, arn).ok_or("not a built-in rotator")?.to_string();
    let (a, t, k, s) = (arn.to_string(), token.to_string(), kind.clone(), step.to_string());
    let store_app = app.clone();
    let values = tokio::task::spawn_blocking(move || store_step(&store_app, &k, &a, &t, &s))
        .await
        .unwrap_or_else(|_| Err(AwsError::internal()))
        .map_err(|e| e.message)?;
    let Some(values) = values else { return Ok(()) };
    match (kind.as_str(), values.step.as_str()) {
        (_, "testSecret") => postgres::test_login(&values.pending).await,
        (POSTGRES_SINGLE_USER, "setSecret") => {
            let current = values.current.ok_or("no AWSCURRENT version")?;
            postgres::set_single_user(&current, values.previous.as_ref(), &values.pending).await
        }
        (POSTGRES_ALTERNATING_USERS, "setSecret") => {
            let current = values.current.ok_or("no AWSCURRENT version")?;
            let master = values.master.ok_or("masterarn key is missing from secret JSON")?;
            postgres::set_alternating(&current, &values.pending, &master).await
        }
        _ => Ok(()),
    }
}

/// The credentials a database step needs, read in the step's store transaction.
struct Values {
    step: String,
    pending: DbSecret,
    current: Option<DbSecret>,
    previous: Option<DbSecret>,
    master: Option<DbSecret>,
}

/// The value of the version holding `label` (or with id `version`), opened as the service.
fn value_of(
    app: &App,
    tx: &dyn coffer_store::ReadTxn,
    meta: &SecretMeta,
    versions: &[VersionMeta],
    version: Option<&str>,
    label: &str,
) -> Result<Option<SecretBytes>, AwsError> {
    let found = versions.iter().find(|v| match version {
        Some(id) => v.version_id == id,
        None => v.stages.contains(label),
    });
    match found {
        None => Ok(None),
        Some(v) => match secrets::open_value(app, tx, meta, &v.version_id, None) {
            Ok(value) => Ok(Some(value)),
            Err(e) if e.code == coffer_core::ErrorCode::ResourceNotFound => Ok(None),
            Err(e) => Err(e),
        },
    }
}

/// A stored value's text (after its kind byte), as a PostgreSQL secret.
fn db_secret(value: &SecretBytes) -> Result<DbSecret, AwsError> {
    let text = value.expose().strip_prefix(b"s").ok_or_else(|| {
        AwsError::invalid_request("The secret value must be a JSON string (SecretString).")
    })?;
    DbSecret::parse(text).map_err(AwsError::invalid_request)
}

/// The store part of a step. Returns the credentials of a database step still to do.
fn store_step(
    app: &App,
    kind: &str,
    arn: &str,
    token: &str,
    step: &str,
) -> Result<Option<Values>, AwsError> {
    app.write_unrecorded(|tx| {
        let mut meta =
            tx.secret_by_arn(arn).map_err(store_error)?.ok_or_else(AwsError::secret_not_found)?;
        let versions = tx.versions(arn).map_err(store_error)?;
        let pending = versions.iter().find(|v| v.version_id == token).ok_or_else(|| {
            AwsError::invalid_request(format!(
                "Secret version {token} has no stage for rotation of secret {arn}."
            ))
        })?;
        if pending.stages.contains(AWSCURRENT) {
            return Ok(None); // already rotated: every step is a no-op, as in the templates
        }
        if !pending.stages.contains(AWSPENDING) {
            return Err(AwsError::invalid_request(format!(
                "Secret version {token} not set as AWSPENDING for rotation of secret {arn}."
            )));
        }
        let pending_value = value_of(app, tx, &meta, &versions, Some(token), AWSPENDING)?;
        match step {
            "createSecret" => {
                if pending_value.is_none() {
                    create(app, tx, &mut meta, &versions, kind, token)?;
                }
                Ok(None)
            }
            "finishSecret" => {
                let mut labels = staging::labels_of(&versions);
                let current = staging::holder(&labels, AWSCURRENT).map(str::to_owned);
                staging::move_label(&mut labels, AWSCURRENT, current.as_deref(), Some(token))?;
                apply_labels(tx, arn, &versions, &labels)?;
                meta.last_changed_ms = clock::now_ms();
                tx.update_secret(&meta).map_err(store_error)?;
                crate::replication::propagate(app, tx, &meta)?;
                Ok(None)
            }
            "setSecret" | "testSecret" => {
                let pending_value = pending_value.ok_or_else(|| {
                    AwsError::invalid_request("The AWSPENDING version has no value.")
                })?;
                if kind == RANDOM_PASSWORD {
                    return Ok(None);
                }
                let current = value_of(app, tx, &meta, &versions, None, AWSCURRENT)?;
                let previous = value_of(app, tx, &meta, &versions, None, AWSPREVIOUS)?;
                let current = current.as_ref().map(db_secret).transpose()?;
                let master = match (kind, &current) {
                    (POSTGRES_ALTERNATING_USERS, Some(c)) if step == "setSecret" => {
                        Some(master_of(app, tx, &meta, c.masterarn.as_deref())?)
                    }
                    _ => None,
                };
                Ok(Some(Values {
                    step: step.to_string(),
                    pending: db_secret(&pending_value)?,
                    current,
                    previous: previous.as_ref().and_then(|p| db_secret(p).ok()),
                    master,
                }))
            }
            other => Err(AwsError::invalid_parameter(format!("Invalid step parameter {other}"))),
        }
    })
}

/// The master credentials of alternating-users rotation: AWSCURRENT of the secret
/// `masterarn` names, only within the rotated secret's own account and region.
fn master_of(
    app: &App,
    tx: &dyn coffer_store::ReadTxn,
    meta: &SecretMeta,
    masterarn: Option<&str>,
) -> Result<DbSecret, AwsError> {
    let masterarn = masterarn
        .ok_or_else(|| AwsError::invalid_request("masterarn key is missing from secret JSON"))?;
    let master = tx
        .secret_by_arn(masterarn)
        .map_err(store_error)?
        .filter(|m| m.scope == meta.scope && !m.is_scheduled_for_deletion())
        .ok_or_else(AwsError::secret_not_found)?;
    let versions = tx.versions(&master.arn).map_err(store_error)?;
    let value = value_of(app, tx, &master, &versions, None, AWSCURRENT)?
        .ok_or_else(AwsError::secret_not_found)?;
    db_secret(&value)
}

/// createSecret: fills the placeholder with the rotator's new value.
fn create(
    app: &App,
    tx: &mut Txn,
    meta: &mut SecretMeta,
    versions: &[VersionMeta],
    kind: &str,
    token: &str,
) -> Result<(), AwsError> {
    let now = clock::now_ms();
    let key = secrets::key_for(app, tx, meta, now)?;
    // The new value is built from AWSCURRENT's, which the rotator opens as the service,
    // and sealed under the secret's key: a current value sealed under another key (a
    // label moved onto a version older than a KmsKeyId change) would move into a key its
    // readers may use without anyone having been allowed to decrypt it (attack 16,
    // finding 02). A Lambda whose role may not use the old key fails the same way.
    if let Some(current) = versions.iter().find(|v| v.stages.contains(AWSCURRENT))
        && !secrets::sealed_under(tx, &meta.arn, &current.version_id, &key)?
    {
        return Err(AwsError::invalid_request(
            "The AWSCURRENT version is encrypted under a KMS key other than the secret's; \
             update the secret's KmsKeyId to re-encrypt it before rotating.",
        ));
    }
    let current = value_of(app, tx, meta, versions, None, AWSCURRENT)?;
    let value = if kind == RANDOM_PASSWORD {
        let password = generate_password(&PasswordSpec::default(), &mut rand::rng())?;
        SecretBytes::new(random_value(current.as_ref().map(|v| v.expose()), &password))
    } else {
        let current = current.ok_or_else(|| {
            AwsError::invalid_request("The secret has no AWSCURRENT value to rotate.")
        })?;
        let text = current.expose().strip_prefix(b"s").unwrap_or_default();
        let parsed = DbSecret::parse(text).map_err(AwsError::invalid_request)?;
        let username = match kind {
            POSTGRES_ALTERNATING_USERS => Some(
                postgres::alternate_user(&parsed.username).map_err(AwsError::invalid_request)?,
            ),
            _ => None,
        };
        let spec = PasswordSpec {
            exclude_characters: TEMPLATE_EXCLUDED.to_string(),
            ..PasswordSpec::default()
        };
        let password = zeroize::Zeroizing::new(generate_password(&spec, &mut rand::rng())?);
        let json = postgres::pending_value(text, username.as_deref(), &password)
            .map_err(AwsError::invalid_request)?;
        let mut out = b"s".to_vec();
        out.extend(json);
        SecretBytes::new(out)
    };
    let sealed = secrets::seal_value(app, &key, &meta.arn, token, value.expose())?;
    tx.replace_version_value(&meta.arn, token, &sealed).map_err(store_error)?;
    meta.last_changed_ms = now;
    tx.update_secret(meta).map_err(store_error)?;
    crate::replication::propagate(app, tx, meta)
}

/// A JSON object value gets a new `password`; any other value is replaced whole.
fn random_value(current: Option<&[u8]>, password: &str) -> Vec<u8> {
    if let Some(text) = current.and_then(|c| c.strip_prefix(b"s"))
        && let Ok(serde_json::Value::Object(mut obj)) = serde_json::from_slice(text)
        && obj.contains_key("password")
    {
        obj.insert("password".into(), password.into());
        let mut out = b"s".to_vec();
        out.extend(serde_json::to_vec(&obj).unwrap_or_default());
        return out;
    }
    let mut out = b"s".to_vec();
    out.extend_from_slice(password.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_value_keeps_its_other_keys() {
        let v = random_value(Some(br#"s{"username":"u","password":"old"}"#), "new");
        let obj: serde_json::Value = serde_json::from_slice(&v[1..]).unwrap();
        assert_eq!(obj, serde_json::json!({"username": "u", "password": "new"}));
        assert_eq!(random_value(Some(b"splain"), "new"), b"snew");
        assert_eq!(random_value(None, "new"), b"snew");
    }

    const SECRET: &str = "arn:aws:secretsmanager:us-east-1:000000000000:secret:db-AbCdEf";

    #[test]
    fn a_builtin_is_named_exactly_or_not_at_all() {
        let arn = "arn:aws:lambda:us-east-1:000000000000:function:";
        for name in [RANDOM_PASSWORD, POSTGRES_SINGLE_USER, POSTGRES_ALTERNATING_USERS] {
            assert_eq!(builtin_kind(&format!("{arn}{name}"), SECRET), Some(name));
            assert_eq!(builtin_kind(name, SECRET), Some(name));
        }
        assert_eq!(builtin_kind(&format!("{arn}rotator"), SECRET), None);
        // A built-in's name hidden as a qualifier, behind an extra `:`, in another
        // account or region: an ordinary function (the finding of review 07).
        assert_eq!(builtin_kind(&format!("{arn}x:{RANDOM_PASSWORD}"), SECRET), None);
        assert_eq!(builtin_kind(&format!("{arn}{RANDOM_PASSWORD}:1"), SECRET), None);
        assert_eq!(builtin_kind(&format!("x:{RANDOM_PASSWORD}"), SECRET), None);
        let other = format!("arn:aws:lambda:us-east-1:111111111111:function:{RANDOM_PASSWORD}");
        assert_eq!(builtin_kind(&other, SECRET), None);
        let region = format!("arn:aws:lambda:eu-west-1:000000000000:function:{RANDOM_PASSWORD}");
        assert_eq!(builtin_kind(&region, SECRET), None);
    }

    #[test]
    fn a_bare_name_is_authorized_as_its_arn() {
        assert_eq!(
            function_arn(RANDOM_PASSWORD, SECRET),
            format!("arn:aws:lambda:us-east-1:000000000000:function:{RANDOM_PASSWORD}")
        );
        let full = "arn:aws:lambda:us-east-1:000000000000:function:rotator";
        assert_eq!(function_arn(full, SECRET), full);
    }
}
