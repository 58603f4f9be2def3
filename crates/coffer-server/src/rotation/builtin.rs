//! Built-in rotators: rotation functions Coffer runs itself, for teams without a Lambda.
//!
//! A secret names one through its RotationLambdaARN, with a reserved function name:
//! `arn:aws:lambda:<region>:<account>:function:coffer-builtin-random-password` (any
//! region and account). The same four steps run, and leave the same labels, as with a
//! Lambda: createSecret fills the AWSPENDING placeholder, finishSecret moves AWSCURRENT.

use super::apply_labels;
use crate::secrets;
use crate::{App, clock, store_error};
use coffer_core::model::{AWSCURRENT, AWSPENDING};
use coffer_core::password::{PasswordSpec, generate_password};
use coffer_core::{AwsError, staging};
use coffer_crypto::SecretBytes;

/// The prefix of every reserved function name.
pub const PREFIX: &str = "coffer-builtin-";
/// A new random password: the whole value, or the `password` key of a JSON object value.
pub const RANDOM_PASSWORD: &str = "coffer-builtin-random-password";

/// The function name of an ARN (or the name itself).
fn function_name(function: &str) -> &str {
    function.rsplit(':').next().unwrap_or(function)
}

/// Whether `function` names a built-in rotator Coffer has.
pub fn is_builtin(function: &str) -> bool {
    function_name(function) == RANDOM_PASSWORD
}

/// Runs `step` of a built-in rotation of `arn` to version `token`.
pub fn run(app: &App, function: &str, arn: &str, token: &str, step: &str) -> Result<(), String> {
    match function_name(function) {
        RANDOM_PASSWORD => random_password(app, arn, token, step).map_err(|e| e.message),
        other => Err(format!("{other} is not a built-in rotator")),
    }
}

/// A JSON object value gets a new `password`; any other value is replaced whole.
fn new_value(current: Option<&[u8]>, password: &str) -> Vec<u8> {
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

fn random_password(app: &App, arn: &str, token: &str, step: &str) -> Result<(), AwsError> {
    app.write(|tx| {
        let mut meta =
            tx.secret_by_arn(arn).map_err(store_error)?.ok_or_else(AwsError::secret_not_found)?;
        let versions = tx.versions(arn).map_err(store_error)?;
        let pending = versions.iter().find(|v| v.version_id == token).ok_or_else(|| {
            AwsError::invalid_request(format!(
                "Secret version {token} has no stage for rotation of secret {arn}."
            ))
        })?;
        if pending.stages.contains(AWSCURRENT) {
            return Ok(()); // already rotated: every step is a no-op
        }
        if !pending.stages.contains(AWSPENDING) {
            return Err(AwsError::invalid_request(format!(
                "Secret version {token} not set as AWSPENDING for rotation of secret {arn}."
            )));
        }
        let has_value = tx
            .version_value(arn, token)
            .map_err(store_error)?
            .is_some_and(|v| !super::is_placeholder(&v));
        match step {
            "createSecret" if !has_value => {
                let current = versions.iter().find(|v| v.stages.contains(AWSCURRENT));
                let current_value = match current {
                    Some(c) => Some(secrets::open_value(app, tx, &meta, &c.version_id, None)?),
                    None => None,
                };
                let password = generate_password(&PasswordSpec::default(), &mut rand::rng())?;
                let value = SecretBytes::new(new_value(
                    current_value.as_ref().map(|v| v.expose()),
                    &password,
                ));
                let now = clock::now_ms();
                let key = secrets::key_for(app, tx, &meta, now)?;
                let sealed = secrets::seal_value(app, &key, arn, token, value.expose())?;
                tx.replace_version_value(arn, token, &sealed).map_err(store_error)?;
                meta.last_changed_ms = now;
                tx.update_secret(&meta).map_err(store_error)
            }
            "createSecret" | "setSecret" => Ok(()),
            "testSecret" if has_value => Ok(()),
            "testSecret" => Err(AwsError::invalid_request("The AWSPENDING version has no value.")),
            "finishSecret" => {
                let mut labels = staging::labels_of(&versions);
                let current = staging::holder(&labels, AWSCURRENT).map(str::to_owned);
                staging::move_label(&mut labels, AWSCURRENT, current.as_deref(), Some(token))?;
                apply_labels(tx, arn, &versions, &labels)?;
                meta.last_changed_ms = clock::now_ms();
                tx.update_secret(&meta).map_err(store_error)
            }
            other => Err(AwsError::invalid_parameter(format!("Invalid step parameter {other}"))),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_value_keeps_its_other_keys() {
        let v = new_value(Some(br#"s{"username":"u","password":"old"}"#), "new");
        let obj: serde_json::Value = serde_json::from_slice(&v[1..]).unwrap();
        assert_eq!(obj, serde_json::json!({"username": "u", "password": "new"}));
        assert_eq!(new_value(Some(b"splain"), "new"), b"snew");
        assert_eq!(new_value(None, "new"), b"snew");
        assert!(is_builtin(
            "arn:aws:lambda:us-east-1:000000000000:function:coffer-builtin-random-password"
        ));
        assert!(!is_builtin("arn:aws:lambda:us-east-1:000000000000:function:rotator"));
    }
}
