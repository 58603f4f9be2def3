//! Imported key material (origin EXTERNAL): GetParametersForImport, ImportKeyMaterial,
//! DeleteImportedKeyMaterial and the expiry of imported material, over aws-lc-rs.
//!
//! The import token is stateless: it carries the wrapping key pair's private key sealed
//! under a fresh key, which is itself wrapped by the master key with the key ARN, the
//! wrapping algorithm and spec and the token's expiry as context. So a token opens only
//! for its own key, only until its expiry, and only on a node holding the master key; no
//! record is written by GetParametersForImport (a read, as at AWS).
//!
//! Only symmetric (SYMMETRIC_DEFAULT) keys take imported material in Coffer: 32 bytes,
//! stored like any other material (wrapped under the master key). Its `KeyMaterialId` is
//! derived from the material, so a reimport is checked to be the same material (KMS
//! accepts no other) without keeping the material after DeleteImportedKeyMaterial.

use crate::error::KmsError;
use crate::model::{Imported, KeyRecord, KeyState, Material};
use crate::service::{Accepts, Kms, save_key};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::key_wrap::{AES_256, KeyEncryptionKey, KeyWrapPadded};
use aws_lc_rs::signature::KeyPair as _;
use aws_lc_rs::{digest, rsa};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use coffer_core::model::{DAY_MS, Millis};
use coffer_core::{ErrorCode, Scope};
use coffer_crypto::{KeyMaterial, SecretBytes};
use coffer_store::{ReadTxn, WriteTxn};
use zeroize::Zeroizing;

/// How long an import token and its public key are good for, as at AWS.
pub const IMPORT_PARAMETERS_TTL_MS: Millis = DAY_MS;
/// The first bytes of every import token (format 1).
const TOKEN_MAGIC: &[u8; 4] = b"CKI1";
/// KMS's expiration models.
pub const KEY_MATERIAL_EXPIRES: &str = "KEY_MATERIAL_EXPIRES";
pub const KEY_MATERIAL_DOES_NOT_EXPIRE: &str = "KEY_MATERIAL_DOES_NOT_EXPIRE";
/// The longest ValidTo KMS accepts: 365 days from now.
const MAX_VALID_DAYS: Millis = 365;

/// What GetParametersForImport answers.
#[derive(Debug)]
pub struct ImportParameters {
    pub key_arn: String,
    pub import_token: Vec<u8>,
    /// The wrapping public key, X.509 SubjectPublicKeyInfo DER.
    pub public_key: Vec<u8>,
    pub valid_to_ms: Millis,
}

/// What ImportKeyMaterial asks for, decoded from the wire.
#[derive(Debug)]
pub struct ImportRequest<'a> {
    pub import_token: &'a [u8],
    pub encrypted_key_material: &'a [u8],
    pub expiration_model: Option<&'a str>,
    pub valid_to_ms: Option<Millis>,
}

fn invalid_token() -> KmsError {
    KmsError::rejected(
        ErrorCode::KmsInvalidImportToken,
        "The import token that you supplied is invalid or does not correspond to the key.",
    )
}

fn not_external(key: &KeyRecord) -> KmsError {
    KmsError::rejected(
        ErrorCode::KmsUnsupportedOperation,
        format!("{} origin is {} which is not valid for this operation.", key.arn, key.origin),
    )
}

fn crypto_failure(what: &str) -> KmsError {
    KmsError::Internal(format!("{what} failed"))
}

/// The RSA size of a `WrappingKeySpec`; SM2 exists only in the China Regions.
fn wrapping_key_size(spec: &str) -> Result<rsa::KeySize, KmsError> {
    match spec {
        "RSA_2048" => Ok(rsa::KeySize::Rsa2048),
        "RSA_3072" => Ok(rsa::KeySize::Rsa3072),
        "RSA_4096" => Ok(rsa::KeySize::Rsa4096),
        other => Err(KmsError::validation(format!(
            "WrappingKeySpec {other} is not supported in this region."
        ))),
    }
}

/// The OAEP hash of a wrapping algorithm; RSAES_PKCS1_V1_5 is no longer accepted by KMS
/// and SM2PKE exists only in the China Regions.
fn wrapping_oaep(algorithm: &str) -> Result<&'static rsa::OaepAlgorithm, KmsError> {
    match algorithm {
        "RSAES_OAEP_SHA_1" | "RSA_AES_KEY_WRAP_SHA_1" => Ok(&rsa::OAEP_SHA1_MGF1SHA1),
        "RSAES_OAEP_SHA_256" | "RSA_AES_KEY_WRAP_SHA_256" => Ok(&rsa::OAEP_SHA256_MGF1SHA256),
        other => Err(KmsError::validation(format!(
            "WrappingAlgorithm {other} is not supported in this region."
        ))),
    }
}

/// What binds a token: the key, the algorithm and spec, and the expiry.
fn token_context(arn: &str, algorithm: &str, spec: &str, valid_to_ms: Millis) -> Vec<u8> {
    format!("coffer kms import token\0{arn}\0{algorithm}\0{spec}\0{valid_to_ms}").into_bytes()
}

/// A KeyMaterialId for imported material: SHA-256 over a label, the key ARN's account and
/// key id (the same in every region of a multi-Region key) and the material. The material
/// is 256 random bits, so the id reveals nothing of it.
fn material_id(key: &KeyRecord, material: &[u8]) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(b"coffer kms imported key material\0");
    ctx.update(key.scope.account.as_bytes());
    ctx.update(b"\0");
    ctx.update(key.key_id.as_bytes());
    ctx.update(b"\0");
    ctx.update(material);
    ctx.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

struct Token<'a> {
    valid_to_ms: Millis,
    algorithm: &'a str,
    spec: &'a str,
    wrapped: &'a [u8],
    sealed: &'a [u8],
}

fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if bytes.len() < n {
        return None;
    }
    let (head, rest) = bytes.split_at(n);
    *bytes = rest;
    Some(head)
}

fn parse_token(mut bytes: &[u8]) -> Option<Token<'_>> {
    if take(&mut bytes, 4)? != TOKEN_MAGIC {
        return None;
    }
    let valid_to_ms = Millis::from_be_bytes(take(&mut bytes, 8)?.try_into().ok()?);
    let n = usize::from(take(&mut bytes, 1)?[0]);
    let algorithm = std::str::from_utf8(take(&mut bytes, n)?).ok()?;
    let n = usize::from(take(&mut bytes, 1)?[0]);
    let spec = std::str::from_utf8(take(&mut bytes, n)?).ok()?;
    let n = usize::from(u16::from_be_bytes(take(&mut bytes, 2)?.try_into().ok()?));
    let wrapped = take(&mut bytes, n)?;
    Some(Token { valid_to_ms, algorithm, spec, wrapped, sealed: bytes })
}

impl Kms {
    /// GetParametersForImport: a fresh RSA wrapping key pair and the token that carries
    /// its private key, good for 24 hours. Nothing is stored.
    pub fn parameters_for_import(
        &self,
        tx: &dyn ReadTxn,
        scope: &Scope,
        key_id: &str,
        algorithm: &str,
        spec: &str,
        now: Millis,
    ) -> Result<ImportParameters, KmsError> {
        let key = self.find_key(tx, scope, key_id, Accepts::KeyOnly)?;
        if !key.is_external() {
            return Err(not_external(&key));
        }
        if key.state == KeyState::PendingDeletion {
            return Err(KmsError::pending_deletion(&key.arn));
        }
        wrapping_oaep(algorithm)?;
        let size = wrapping_key_size(spec)?;
        let pair = rsa::KeyPair::generate(size).map_err(|_| crypto_failure("RSA keygen"))?;
        let private = pair.as_der().map_err(|_| crypto_failure("RSA key encoding"))?;
        let private = Zeroizing::new(private.as_ref().to_vec());
        let public = pair.public_key().as_der().map_err(|_| crypto_failure("RSA key encoding"))?;
        let valid_to_ms = now + IMPORT_PARAMETERS_TTL_MS;
        let context = token_context(&key.arn, algorithm, spec, valid_to_ms);
        let sealing = KeyMaterial::generate();
        let wrapped = self.master_key().wrap_key(&sealing, &context);
        let sealed = coffer_crypto::seal(&sealing, &private, &context);
        let mut token = Vec::with_capacity(32 + wrapped.len() + sealed.len());
        token.extend_from_slice(TOKEN_MAGIC);
        token.extend_from_slice(&valid_to_ms.to_be_bytes());
        token.push(algorithm.len() as u8);
        token.extend_from_slice(algorithm.as_bytes());
        token.push(spec.len() as u8);
        token.extend_from_slice(spec.as_bytes());
        token.extend_from_slice(&(wrapped.len() as u16).to_be_bytes());
        token.extend_from_slice(&wrapped);
        token.extend_from_slice(&sealed);
        Ok(ImportParameters {
            key_arn: key.arn,
            import_token: token,
            public_key: public.as_ref().to_vec(),
            valid_to_ms,
        })
    }

    /// Opens `token` for `key`: the wrapping private key (PKCS #8) and the algorithm.
    fn open_token<'t>(
        &self,
        key: &KeyRecord,
        token: &'t [u8],
        now: Millis,
    ) -> Result<(SecretBytes, &'t str), KmsError> {
        let parsed = parse_token(token).ok_or_else(invalid_token)?;
        let context = token_context(&key.arn, parsed.algorithm, parsed.spec, parsed.valid_to_ms);
        let sealing =
            self.master_key().unwrap_key(parsed.wrapped, &context).map_err(|_| invalid_token())?;
        let private =
            coffer_crypto::open(&sealing, parsed.sealed, &context).map_err(|_| invalid_token())?;
        if parsed.valid_to_ms <= now {
            return Err(KmsError::rejected(
                ErrorCode::KmsExpiredImportToken,
                "The import token that you supplied has expired.",
            ));
        }
        Ok((private, parsed.algorithm))
    }

    /// ImportKeyMaterial: unwraps the material with the token's private key and makes it
    /// the key's material (the same material again after a deletion or expiry).
    pub fn import_key_material(
        &self,
        tx: &mut dyn WriteTxn,
        scope: &Scope,
        key_id: &str,
        request: &ImportRequest<'_>,
        now: Millis,
    ) -> Result<KeyRecord, KmsError> {
        let mut key = self.find_key(tx, scope, key_id, Accepts::KeyOnly)?;
        if !key.is_external() {
            return Err(not_external(&key));
        }
        if key.state == KeyState::PendingDeletion {
            return Err(KmsError::pending_deletion(&key.arn));
        }
        let (expiration_model, valid_to_ms) = check_expiry(request, now)?;
        let (private, algorithm) = self.open_token(&key, request.import_token, now)?;
        let material = unwrap_material(&private, algorithm, request.encrypted_key_material)?;
        let incorrect = |m: &str| KmsError::rejected(ErrorCode::KmsIncorrectKeyMaterial, m);
        let material = KeyMaterial::from_bytes(&material).map_err(|_| {
            incorrect("The key material must be 256 bits (32 bytes) for a SYMMETRIC_DEFAULT key.")
        })?;
        let id = material_id(&key, material.expose());
        let expected = match &key.imported {
            Some(imported) => Some(imported.material_id.clone()),
            None => self.set_material_id(tx, &key)?,
        };
        if expected.is_some_and(|expected| expected != id) {
            return Err(incorrect(
                "The key material that you supplied is not the key material previously imported into this KMS key.",
            ));
        }
        self.check_generation(tx)?;
        if key.materials.is_empty() {
            let wrapped = self
                .master_key()
                .wrap_key(&material, &crate::service::material_context(&key.arn, 1));
            key.materials.push(Material {
                version: 1,
                id: id.clone(),
                wrapped: STANDARD.encode(wrapped),
                created_ms: now,
                rotation: None,
                sealed: None,
                generation: self.generation().map(str::to_string),
            });
        }
        key.imported = Some(Imported {
            material_id: id,
            expiration_model: Some(expiration_model.to_string()),
            valid_to_ms,
        });
        if key.state == KeyState::PendingImport {
            key.state = KeyState::Enabled;
        }
        save_key(tx, &key)?;
        Ok(key)
    }

    /// DeleteImportedKeyMaterial: the key keeps its id and metadata and waits for the same
    /// material again (PendingImport). Returns the key and the deleted material's id.
    pub fn delete_imported_key_material(
        &self,
        tx: &mut dyn WriteTxn,
        scope: &Scope,
        key_id: &str,
        material_id: Option<&str>,
    ) -> Result<(KeyRecord, Option<String>), KmsError> {
        let mut key = self.find_key(tx, scope, key_id, Accepts::KeyOnly)?;
        if !key.is_external() {
            return Err(not_external(&key));
        }
        if key.state == KeyState::PendingDeletion {
            return Err(KmsError::pending_deletion(&key.arn));
        }
        let current = key.current_material().map(|m| m.id.clone());
        if let Some(asked) = material_id
            && current.as_deref() != Some(asked)
        {
            return Err(KmsError::rejected(
                ErrorCode::KmsNotFound,
                format!("Key material {asked} does not exist for {}.", key.arn),
            ));
        }
        self.drop_material(&mut key);
        save_key(tx, &key)?;
        // The material is gone from the record; the store destroys the old copy.
        tx.note_material_overwritten()?;
        Ok((key, current))
    }

    /// Forgets a key's imported material (deleted or expired): PendingImport.
    pub(crate) fn drop_material(&self, key: &mut KeyRecord) {
        self.forget_materials(key);
        key.materials.clear();
        key.state = KeyState::PendingImport;
        if let Some(imported) = &mut key.imported {
            imported.expiration_model = None;
            imported.valid_to_ms = None;
        }
    }
}

/// A key as it stands at `now`: imported material past its ValidTo is gone (the key waits
/// for it again, PendingImport), as at AWS, whether or not the sweep that drops it from the
/// store (`carry_out_due`, every 30 s on the background node) has run yet. Without this the
/// expired material kept encrypting and decrypting until that sweep (review 8, finding 03).
pub(crate) fn expire_if_due(key: &mut KeyRecord, now: Millis) {
    let due = key.imported.as_ref().and_then(|i| i.valid_to_ms).is_some_and(|t| t <= now);
    if due && !key.materials.is_empty() && key.state != KeyState::PendingDeletion {
        key.materials.clear();
        key.state = KeyState::PendingImport;
        if let Some(imported) = &mut key.imported {
            imported.expiration_model = None;
            imported.valid_to_ms = None;
        }
    }
}

/// The expiration model and ValidTo of a request, checked as KMS checks them.
fn check_expiry<'a>(
    request: &ImportRequest<'a>,
    now: Millis,
) -> Result<(&'a str, Option<Millis>), KmsError> {
    let model = request.expiration_model.unwrap_or(KEY_MATERIAL_EXPIRES);
    match (model, request.valid_to_ms) {
        (KEY_MATERIAL_DOES_NOT_EXPIRE, None) => Ok((model, None)),
        (KEY_MATERIAL_DOES_NOT_EXPIRE, Some(_)) => Err(KmsError::validation(
            "ValidTo must not be specified when ExpirationModel is KEY_MATERIAL_DOES_NOT_EXPIRE.",
        )),
        (_, None) => Err(KmsError::validation(
            "A validTo date must be set if the ExpirationModel is KEY_MATERIAL_EXPIRES",
        )),
        (_, Some(to)) if to <= now || to > now + MAX_VALID_DAYS * DAY_MS => {
            Err(KmsError::validation(
                "ValidTo must be in the future and no more than 365 days from now.",
            ))
        }
        (_, Some(to)) => Ok((model, Some(to))),
    }
}

/// Unwraps `encrypted` with the wrapping private key: RSAES-OAEP of the material, or
/// RSAES-OAEP of an AES-256 key followed by the material under AES key wrap with padding
/// (RFC 5649). Anything that does not unwrap is InvalidCiphertextException.
fn unwrap_material(
    private: &SecretBytes,
    algorithm: &str,
    encrypted: &[u8],
) -> Result<Zeroizing<Vec<u8>>, KmsError> {
    let oaep = wrapping_oaep(algorithm)?;
    let private = rsa::PrivateDecryptingKey::from_pkcs8(private.expose())
        .map_err(|_| crypto_failure("RSA private key"))?;
    let decrypting =
        rsa::OaepPrivateDecryptingKey::new(private).map_err(|_| crypto_failure("RSA key"))?;
    let modulus = decrypting.key_size_bytes();
    let rsa_part = if algorithm.starts_with("RSA_AES") {
        encrypted.get(..modulus).ok_or_else(KmsError::invalid_ciphertext)?
    } else {
        encrypted
    };
    let mut out = Zeroizing::new(vec![0u8; decrypting.min_output_size()]);
    let len = decrypting
        .decrypt(oaep, rsa_part, &mut out, None)
        .map_err(|_| KmsError::invalid_ciphertext())?
        .len();
    out.truncate(len);
    if !algorithm.starts_with("RSA_AES") {
        return Ok(out);
    }
    let kek = KeyEncryptionKey::new(&AES_256, &out).map_err(|_| KmsError::invalid_ciphertext())?;
    let wrapped = &encrypted[modulus..];
    let mut material = Zeroizing::new(vec![0u8; wrapped.len()]);
    let len = kek
        .unwrap_with_padding(wrapped, &mut material)
        .map_err(|_| KmsError::invalid_ciphertext())?
        .len();
    material.truncate(len);
    Ok(material)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_back_and_garbage_does_not() {
        assert!(parse_token(b"").is_none());
        assert!(parse_token(b"CKI1").is_none());
        assert!(parse_token(&[0u8; 64]).is_none());
    }

    #[test]
    fn expiry_rules() {
        let req = |model, valid_to| ImportRequest {
            import_token: &[],
            encrypted_key_material: &[],
            expiration_model: model,
            valid_to_ms: valid_to,
        };
        let now = 1_000_000;
        assert!(check_expiry(&req(None, None), now).is_err());
        assert!(check_expiry(&req(None, Some(now)), now).is_err());
        assert!(check_expiry(&req(None, Some(now + DAY_MS)), now).is_ok());
        assert!(check_expiry(&req(None, Some(now + 366 * DAY_MS)), now).is_err());
        assert!(check_expiry(&req(Some(KEY_MATERIAL_DOES_NOT_EXPIRE), None), now).is_ok());
        assert!(
            check_expiry(&req(Some(KEY_MATERIAL_DOES_NOT_EXPIRE), Some(now + 1)), now).is_err()
        );
    }
}
