//! Asymmetric (RSA, ECC) and HMAC keys, and data key pairs: the KMS key families beyond
//! symmetric encryption keys, over aws-lc-rs (no hand-written cryptography).
//!
//! The private key (PKCS #8 DER) or HMAC key of such a key is generated here and stored
//! sealed under the key's material version 1 ([`crate::Material::sealed`]), which the
//! master key wraps like any symmetric material, so a master-key rewrap covers it; the
//! public key is stored in clear. Private keys are opened per use into zeroizing buffers
//! and never leave the service, except the private half of a data key pair, which
//! GenerateDataKeyPair returns as AWS does.

use crate::ciphertext::EncryptionContext;
use crate::error::KmsError;
use crate::model::{ENCRYPT_DECRYPT, KeyRecord, SYMMETRIC_DEFAULT};
use crate::service::{Encrypted, Kms, require_enabled};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{self, KeyPair as _};
use aws_lc_rs::{agreement, digest, hmac, rand::SystemRandom, rsa};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use coffer_core::ErrorCode;
use coffer_crypto::SecretBytes;

pub const SIGN_VERIFY: &str = "SIGN_VERIFY";
pub const GENERATE_VERIFY_MAC: &str = "GENERATE_VERIFY_MAC";
pub const KEY_AGREEMENT: &str = "KEY_AGREEMENT";
pub const RSAES_OAEP_SHA_1: &str = "RSAES_OAEP_SHA_1";
pub const RSAES_OAEP_SHA_256: &str = "RSAES_OAEP_SHA_256";
pub const ECDH: &str = "ECDH";

/// The elliptic curves KMS offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
    P521,
    Secp256k1,
}

/// What a key spec is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Symmetric,
    /// An RSA key of this many bits.
    Rsa(u32),
    Ecc(Curve),
    /// An HMAC key whose hash has this many bits.
    Hmac(u32),
}

impl Family {
    /// The family of a key spec (or data key pair spec); `None` for specs Coffer does not
    /// make (SM2, ML-DSA).
    pub fn of(spec: &str) -> Option<Family> {
        Some(match spec {
            SYMMETRIC_DEFAULT => Family::Symmetric,
            "RSA_2048" => Family::Rsa(2048),
            "RSA_3072" => Family::Rsa(3072),
            "RSA_4096" => Family::Rsa(4096),
            "ECC_NIST_P256" => Family::Ecc(Curve::P256),
            "ECC_NIST_P384" => Family::Ecc(Curve::P384),
            "ECC_NIST_P521" => Family::Ecc(Curve::P521),
            "ECC_SECG_P256K1" => Family::Ecc(Curve::Secp256k1),
            "HMAC_224" => Family::Hmac(224),
            "HMAC_256" => Family::Hmac(256),
            "HMAC_384" => Family::Hmac(384),
            "HMAC_512" => Family::Hmac(512),
            _ => return None,
        })
    }

    /// The key usages KMS allows for the family.
    fn usages(self) -> &'static [&'static str] {
        match self {
            Family::Symmetric => &[ENCRYPT_DECRYPT],
            Family::Rsa(_) => &[ENCRYPT_DECRYPT, SIGN_VERIFY],
            Family::Ecc(Curve::Secp256k1) => &[SIGN_VERIFY],
            Family::Ecc(_) => &[SIGN_VERIFY, KEY_AGREEMENT],
            Family::Hmac(_) => &[GENERATE_VERIFY_MAC],
        }
    }
}

fn family(key: &KeyRecord) -> Result<Family, KmsError> {
    Family::of(&key.key_spec).ok_or_else(|| {
        KmsError::Internal(format!("{} has unknown key spec {}", key.arn, key.key_spec))
    })
}

/// The key usage a new key gets: the one asked for, if the key spec allows it. Only a
/// symmetric encryption key may leave it out (it defaults to `ENCRYPT_DECRYPT`); KMS wants
/// it named for every other spec. Specs Coffer does not make are
/// UnsupportedOperationException.
pub fn check_new_key(spec: &str, usage: Option<&str>) -> Result<(Family, String), KmsError> {
    let family = Family::of(spec).ok_or_else(|| {
        KmsError::rejected(
            ErrorCode::KmsUnsupportedOperation,
            format!("KeySpec {spec} is not supported by Coffer."),
        )
    })?;
    let usage = match usage {
        Some(usage) => usage,
        None if family == Family::Symmetric => ENCRYPT_DECRYPT,
        None => {
            return Err(KmsError::validation(
                "You must specify a KeyUsage value for all KMS keys except for symmetric encryption keys.",
            ));
        }
    };
    if !family.usages().contains(&usage) {
        return Err(KmsError::validation(format!(
            "KeyUsage {usage} is not compatible with KeySpec {spec}"
        )));
    }
    Ok((family, usage.to_string()))
}

/// The encryption algorithms a key supports (DescribeKey, GetPublicKey).
pub fn encryption_algorithms(key: &KeyRecord) -> Vec<&'static str> {
    match (Family::of(&key.key_spec), key.key_usage.as_str()) {
        (Some(Family::Symmetric), _) => vec![SYMMETRIC_DEFAULT],
        (Some(Family::Rsa(_)), ENCRYPT_DECRYPT) => vec![RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256],
        _ => Vec::new(),
    }
}

/// The signing algorithms a key supports.
pub fn signing_algorithms(key: &KeyRecord) -> Vec<&'static str> {
    if key.key_usage != SIGN_VERIFY {
        return Vec::new();
    }
    match Family::of(&key.key_spec) {
        Some(Family::Rsa(_)) => vec![
            "RSASSA_PSS_SHA_256",
            "RSASSA_PSS_SHA_384",
            "RSASSA_PSS_SHA_512",
            "RSASSA_PKCS1_V1_5_SHA_256",
            "RSASSA_PKCS1_V1_5_SHA_384",
            "RSASSA_PKCS1_V1_5_SHA_512",
        ],
        Some(Family::Ecc(Curve::P256 | Curve::Secp256k1)) => vec!["ECDSA_SHA_256"],
        Some(Family::Ecc(Curve::P384)) => vec!["ECDSA_SHA_384"],
        Some(Family::Ecc(Curve::P521)) => vec!["ECDSA_SHA_512"],
        _ => Vec::new(),
    }
}

/// The MAC algorithm of an HMAC key.
pub fn mac_algorithms(key: &KeyRecord) -> Vec<&'static str> {
    match Family::of(&key.key_spec) {
        Some(Family::Hmac(224)) => vec!["HMAC_SHA_224"],
        Some(Family::Hmac(256)) => vec!["HMAC_SHA_256"],
        Some(Family::Hmac(384)) => vec!["HMAC_SHA_384"],
        Some(Family::Hmac(512)) => vec!["HMAC_SHA_512"],
        _ => Vec::new(),
    }
}

/// The key agreement algorithms of a KEY_AGREEMENT key.
pub fn key_agreement_algorithms(key: &KeyRecord) -> Vec<&'static str> {
    if key.key_usage == KEY_AGREEMENT { vec![ECDH] } else { Vec::new() }
}

fn crypto_failure(what: &str) -> KmsError {
    KmsError::Internal(format!("{what} failed in the crypto library"))
}

fn ecdsa_signing(curve: Curve) -> &'static signature::EcdsaSigningAlgorithm {
    match curve {
        Curve::P256 => &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        Curve::P384 => &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
        Curve::P521 => &signature::ECDSA_P521_SHA512_ASN1_SIGNING,
        Curve::Secp256k1 => &signature::ECDSA_P256K1_SHA256_ASN1_SIGNING,
    }
}

fn ecdh(curve: Curve) -> Option<&'static agreement::Algorithm> {
    match curve {
        Curve::P256 => Some(&agreement::ECDH_P256),
        Curve::P384 => Some(&agreement::ECDH_P384),
        Curve::P521 => Some(&agreement::ECDH_P521),
        Curve::Secp256k1 => None,
    }
}

/// A fresh private key (PKCS #8 DER; for HMAC the raw key) and its public key
/// (SubjectPublicKeyInfo DER; none for HMAC).
pub fn generate(family: Family) -> Result<(SecretBytes, Option<Vec<u8>>), KmsError> {
    match family {
        Family::Rsa(bits) => {
            let size = match bits {
                2048 => rsa::KeySize::Rsa2048,
                3072 => rsa::KeySize::Rsa3072,
                _ => rsa::KeySize::Rsa4096,
            };
            let pair = rsa::KeyPair::generate(size).map_err(|_| crypto_failure("RSA keygen"))?;
            let private = pair.as_der().map_err(|_| crypto_failure("RSA key encoding"))?;
            let public =
                pair.public_key().as_der().map_err(|_| crypto_failure("RSA key encoding"))?;
            Ok((SecretBytes::new(private.as_ref().to_vec()), Some(public.as_ref().to_vec())))
        }
        Family::Ecc(curve) => {
            let pair = signature::EcdsaKeyPair::generate(ecdsa_signing(curve))
                .map_err(|_| crypto_failure("EC keygen"))?;
            let private = pair.to_pkcs8v1().map_err(|_| crypto_failure("EC key encoding"))?;
            let public =
                pair.public_key().as_der().map_err(|_| crypto_failure("EC key encoding"))?;
            Ok((SecretBytes::new(private.as_ref().to_vec()), Some(public.as_ref().to_vec())))
        }
        Family::Hmac(bits) => {
            Ok((SecretBytes::new(coffer_crypto::random_bytes(bits as usize / 8)), None))
        }
        Family::Symmetric => Err(KmsError::Internal("no key pair for a symmetric key".into())),
    }
}

/// The context a private key is sealed with: the key ARN and material version.
fn private_context(arn: &str, version: u32) -> Vec<u8> {
    format!("coffer kms private key\0{arn}\0{version}").into_bytes()
}

/// `InvalidKeyUsageException` for a key used by an operation its usage does not allow.
fn wrong_usage(key: &KeyRecord, operation: &str) -> KmsError {
    KmsError::rejected(
        ErrorCode::KmsInvalidKeyUsage,
        format!("{} key usage is {} which is not valid for {operation}.", key.arn, key.key_usage),
    )
}

/// Refuses a key whose usage is not `usage` (or, for `ENCRYPT_DECRYPT` from an
/// operation only symmetric keys serve, a key that is not symmetric).
pub fn require_usage(key: &KeyRecord, usage: &str, operation: &str) -> Result<(), KmsError> {
    if key.key_usage != usage {
        return Err(wrong_usage(key, operation));
    }
    Ok(())
}

/// What Encrypt checks of an asymmetric or HMAC key before the algorithm: its state, then
/// its usage (KMS names a signing or MAC key's usage, not the algorithm it lacks).
pub fn require_usable_for(key: &KeyRecord, usage: &str, operation: &str) -> Result<(), KmsError> {
    require_enabled(key)?;
    require_usage(key, usage, operation)
}

/// Refuses an asymmetric or HMAC key where only a symmetric encryption key serves
/// (GenerateDataKey, GenerateDataKeyPair, secrets).
pub fn require_symmetric(key: &KeyRecord, operation: &str) -> Result<(), KmsError> {
    if key.is_symmetric() {
        return Ok(());
    }
    if key.key_usage != ENCRYPT_DECRYPT {
        return Err(wrong_usage(key, operation));
    }
    Err(KmsError::rejected(
        ErrorCode::KmsInvalidKeyUsage,
        format!("{} key spec is {} which is not valid for {operation}.", key.arn, key.key_spec),
    ))
}

fn incompatible(algorithm: &str, key: &KeyRecord) -> KmsError {
    KmsError::rejected(
        ErrorCode::KmsInvalidKeyUsage,
        format!("Algorithm {algorithm} is incompatible with key spec {}.", key.key_spec),
    )
}

fn oaep(algorithm: &str, key: &KeyRecord) -> Result<&'static rsa::OaepAlgorithm, KmsError> {
    match algorithm {
        RSAES_OAEP_SHA_1 => Ok(&rsa::OAEP_SHA1_MGF1SHA1),
        RSAES_OAEP_SHA_256 => Ok(&rsa::OAEP_SHA256_MGF1SHA256),
        other => Err(KmsError::rejected(
            ErrorCode::KmsInvalidKeyUsage,
            format!("{} does not support the encryption algorithm {other}.", key.arn),
        )),
    }
}

/// How a signing algorithm signs: RSA with a padding, or ECDSA on a curve; with its digest.
enum Signer {
    Rsa {
        sign: &'static dyn signature::RsaEncoding,
        verify: &'static signature::RsaParameters,
    },
    Ecdsa {
        sign: &'static signature::EcdsaSigningAlgorithm,
        verify: &'static signature::EcdsaVerificationAlgorithm,
    },
}

fn signer(
    key: &KeyRecord,
    algorithm: &str,
) -> Result<(Signer, &'static digest::Algorithm), KmsError> {
    use signature as s;
    let family = family(key)?;
    if !signing_algorithms(key).contains(&algorithm) {
        return Err(incompatible(algorithm, key));
    }
    let rsa = |sign, verify| Signer::Rsa { sign, verify };
    Ok(match (family, algorithm) {
        (_, "RSASSA_PSS_SHA_256") => {
            (rsa(&s::RSA_PSS_SHA256, &s::RSA_PSS_2048_8192_SHA256), &digest::SHA256)
        }
        (_, "RSASSA_PSS_SHA_384") => {
            (rsa(&s::RSA_PSS_SHA384, &s::RSA_PSS_2048_8192_SHA384), &digest::SHA384)
        }
        (_, "RSASSA_PSS_SHA_512") => {
            (rsa(&s::RSA_PSS_SHA512, &s::RSA_PSS_2048_8192_SHA512), &digest::SHA512)
        }
        (_, "RSASSA_PKCS1_V1_5_SHA_256") => {
            (rsa(&s::RSA_PKCS1_SHA256, &s::RSA_PKCS1_2048_8192_SHA256), &digest::SHA256)
        }
        (_, "RSASSA_PKCS1_V1_5_SHA_384") => {
            (rsa(&s::RSA_PKCS1_SHA384, &s::RSA_PKCS1_2048_8192_SHA384), &digest::SHA384)
        }
        (_, "RSASSA_PKCS1_V1_5_SHA_512") => {
            (rsa(&s::RSA_PKCS1_SHA512, &s::RSA_PKCS1_2048_8192_SHA512), &digest::SHA512)
        }
        (Family::Ecc(curve), _) => {
            let (verify, digest): (&'static s::EcdsaVerificationAlgorithm, _) = match curve {
                Curve::P256 => (&s::ECDSA_P256_SHA256_ASN1, &digest::SHA256),
                Curve::P384 => (&s::ECDSA_P384_SHA384_ASN1, &digest::SHA384),
                Curve::P521 => (&s::ECDSA_P521_SHA512_ASN1, &digest::SHA512),
                Curve::Secp256k1 => (&s::ECDSA_P256K1_SHA256_ASN1, &digest::SHA256),
            };
            (Signer::Ecdsa { sign: ecdsa_signing(curve), verify }, digest)
        }
        _ => return Err(incompatible(algorithm, key)),
    })
}

/// The message to sign as KMS takes it: `RAW` (hashed here) or `DIGEST` (already hashed,
/// and then exactly the digest's length).
fn message_digest(
    message: &[u8],
    message_type: Option<&str>,
    algorithm: &str,
    digest_algorithm: &'static digest::Algorithm,
) -> Result<Option<digest::Digest>, KmsError> {
    match message_type.unwrap_or("RAW") {
        "RAW" => Ok(None),
        "DIGEST" => {
            digest::Digest::import_less_safe(message, digest_algorithm).map(Some).map_err(|_| {
                KmsError::validation(format!("Digest is invalid length for algorithm {algorithm}."))
            })
        }
        other => Err(KmsError::validation(format!(
            "MessageType {other} is not supported for algorithm {algorithm}."
        ))),
    }
}

fn hmac_algorithm(key: &KeyRecord, algorithm: &str) -> Result<hmac::Algorithm, KmsError> {
    if !mac_algorithms(key).contains(&algorithm) {
        return Err(incompatible(algorithm, key));
    }
    Ok(match algorithm {
        "HMAC_SHA_224" => hmac::HMAC_SHA224,
        "HMAC_SHA_256" => hmac::HMAC_SHA256,
        "HMAC_SHA_384" => hmac::HMAC_SHA384,
        _ => hmac::HMAC_SHA512,
    })
}

/// A fresh data key pair: the private key (PKCS #8 DER, zeroized on drop), the public key
/// (SubjectPublicKeyInfo DER) and the private key encrypted under the KMS key.
#[derive(Debug)]
pub struct DataKeyPair {
    pub private_plaintext: SecretBytes,
    pub public_key: Vec<u8>,
    pub encrypted: Encrypted,
}

impl Kms {
    /// Gives a new key (material version 1 only) its private key and public key.
    pub(crate) fn attach_key_pair(
        &self,
        key: &mut KeyRecord,
        family: Family,
    ) -> Result<(), KmsError> {
        let (private, public) = generate(family)?;
        let arn = key.arn.clone();
        let material = key
            .materials
            .first_mut()
            .ok_or_else(|| KmsError::Internal(format!("{arn} has no key material")))?;
        let version = material.version;
        let unwrapped = self.unwrap_for(&arn, material)?;
        let sealed =
            coffer_crypto::seal(&unwrapped, private.expose(), &private_context(&arn, version));
        material.sealed = Some(STANDARD.encode(sealed));
        key.public_key = public.map(|p| STANDARD.encode(p));
        Ok(())
    }

    /// The private key (or HMAC key) of an asymmetric or HMAC key, opened for one use.
    fn open_private(&self, key: &KeyRecord) -> Result<SecretBytes, KmsError> {
        let material = key
            .current_material()
            .ok_or_else(|| KmsError::Internal(format!("{} has no key material", key.arn)))?;
        let sealed =
            material.sealed.as_deref().and_then(|s| STANDARD.decode(s).ok()).ok_or_else(|| {
                KmsError::Internal(format!("{} has no sealed private key", key.arn))
            })?;
        let unwrapped = self.unwrap_for(&key.arn, material)?;
        coffer_crypto::open(&unwrapped, &sealed, &private_context(&key.arn, material.version))
            .map_err(|_| {
                KmsError::Internal(format!("the private key of {} does not open", key.arn))
            })
    }

    /// The public key of an asymmetric key (SubjectPublicKeyInfo DER). Symmetric and HMAC
    /// keys have none: UnsupportedOperationException.
    pub fn public_key(&self, key: &KeyRecord) -> Result<Vec<u8>, KmsError> {
        key.public_key.as_deref().and_then(|p| STANDARD.decode(p).ok()).ok_or_else(|| {
            KmsError::rejected(
                ErrorCode::KmsUnsupportedOperation,
                format!("{} key spec is {} which has no public key.", key.arn, key.key_spec),
            )
        })
    }

    /// Encrypt under an RSA ENCRYPT_DECRYPT key: RSAES-OAEP with its public key.
    pub fn asymmetric_encrypt(
        &self,
        key: &KeyRecord,
        algorithm: &str,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, KmsError> {
        require_enabled(key)?;
        require_usage(key, ENCRYPT_DECRYPT, "Encrypt")?;
        let oaep = oaep(algorithm, key)?;
        let public = self.public_key(key)?;
        let public = rsa::PublicEncryptingKey::from_der(&public)
            .map_err(|_| crypto_failure("RSA public key"))?;
        let encrypting =
            rsa::OaepPublicEncryptingKey::new(public).map_err(|_| crypto_failure("RSA key"))?;
        if plaintext.len() > encrypting.max_plaintext_size(oaep) {
            return Err(KmsError::validation(format!(
                "Algorithm {algorithm} and key spec {} cannot encrypt data larger than {} bytes.",
                key.key_spec,
                encrypting.max_plaintext_size(oaep)
            )));
        }
        let mut out = vec![0u8; encrypting.ciphertext_size()];
        let len = encrypting
            .encrypt(oaep, plaintext, &mut out, None)
            .map_err(|_| crypto_failure("RSA encryption"))?
            .len();
        out.truncate(len);
        Ok(out)
    }

    /// Decrypt with an RSA ENCRYPT_DECRYPT key. A ciphertext that does not decrypt is
    /// InvalidCiphertextException, as for symmetric keys.
    pub fn asymmetric_decrypt(
        &self,
        key: &KeyRecord,
        algorithm: &str,
        ciphertext: &[u8],
    ) -> Result<SecretBytes, KmsError> {
        require_enabled(key)?;
        require_usage(key, ENCRYPT_DECRYPT, "Decrypt")?;
        let oaep = oaep(algorithm, key)?;
        let private = self.open_private(key)?;
        let private = rsa::PrivateDecryptingKey::from_pkcs8(private.expose())
            .map_err(|_| crypto_failure("RSA private key"))?;
        let decrypting =
            rsa::OaepPrivateDecryptingKey::new(private).map_err(|_| crypto_failure("RSA key"))?;
        let mut out = zeroize::Zeroizing::new(vec![0u8; decrypting.min_output_size()]);
        let len = decrypting
            .decrypt(oaep, ciphertext, &mut out, None)
            .map_err(|_| KmsError::invalid_ciphertext())?
            .len();
        Ok(SecretBytes::new(out[..len].to_vec()))
    }

    /// Sign with a SIGN_VERIFY key; `message_type` is `RAW` (default) or `DIGEST`.
    pub fn sign(
        &self,
        key: &KeyRecord,
        algorithm: &str,
        message: &[u8],
        message_type: Option<&str>,
    ) -> Result<Vec<u8>, KmsError> {
        require_enabled(key)?;
        require_usage(key, SIGN_VERIFY, "Sign")?;
        let (signer, digest_algorithm) = signer(key, algorithm)?;
        let digest = message_digest(message, message_type, algorithm, digest_algorithm)?;
        let private = self.open_private(key)?;
        let failed = |_| crypto_failure("signing");
        match signer {
            Signer::Rsa { sign, .. } => {
                let pair = rsa::KeyPair::from_pkcs8(private.expose())
                    .map_err(|_| crypto_failure("RSA private key"))?;
                let mut out = vec![0u8; pair.public_modulus_len()];
                match &digest {
                    Some(d) => pair.sign_digest(sign, d, &mut out).map_err(failed)?,
                    None => {
                        pair.sign(sign, &SystemRandom::new(), message, &mut out).map_err(failed)?
                    }
                }
                Ok(out)
            }
            Signer::Ecdsa { sign, .. } => {
                let pair = signature::EcdsaKeyPair::from_pkcs8(sign, private.expose())
                    .map_err(|_| crypto_failure("EC private key"))?;
                let signature = match &digest {
                    Some(d) => pair.sign_digest(d).map_err(failed)?,
                    None => pair.sign(&SystemRandom::new(), message).map_err(failed)?,
                };
                Ok(signature.as_ref().to_vec())
            }
        }
    }

    /// Verify with a SIGN_VERIFY key's public key: whether the signature is valid.
    pub fn verify(
        &self,
        key: &KeyRecord,
        algorithm: &str,
        message: &[u8],
        message_type: Option<&str>,
        signature: &[u8],
    ) -> Result<bool, KmsError> {
        require_enabled(key)?;
        require_usage(key, SIGN_VERIFY, "Verify")?;
        let (signer, digest_algorithm) = signer(key, algorithm)?;
        let digest = message_digest(message, message_type, algorithm, digest_algorithm)?;
        let public = self.public_key(key)?;
        let verifier: &'static dyn signature::VerificationAlgorithm = match signer {
            Signer::Rsa { verify, .. } => verify,
            Signer::Ecdsa { verify, .. } => verify,
        };
        let public = signature::UnparsedPublicKey::new(verifier, &public);
        Ok(match &digest {
            Some(d) => public.verify_digest(d, signature).is_ok(),
            None => public.verify(message, signature).is_ok(),
        })
    }

    /// GenerateMac with an HMAC key.
    pub fn generate_mac(
        &self,
        key: &KeyRecord,
        algorithm: &str,
        message: &[u8],
    ) -> Result<Vec<u8>, KmsError> {
        require_enabled(key)?;
        require_usage(key, GENERATE_VERIFY_MAC, "GenerateMac")?;
        let algorithm = hmac_algorithm(key, algorithm)?;
        let secret = self.open_private(key)?;
        let mac = hmac::sign(&hmac::Key::new(algorithm, secret.expose()), message);
        Ok(mac.as_ref().to_vec())
    }

    /// VerifyMac with an HMAC key: whether the MAC is the message's (in constant time).
    pub fn verify_mac(
        &self,
        key: &KeyRecord,
        algorithm: &str,
        message: &[u8],
        mac: &[u8],
    ) -> Result<bool, KmsError> {
        require_enabled(key)?;
        require_usage(key, GENERATE_VERIFY_MAC, "VerifyMac")?;
        let algorithm = hmac_algorithm(key, algorithm)?;
        let secret = self.open_private(key)?;
        Ok(hmac::verify(&hmac::Key::new(algorithm, secret.expose()), message, mac).is_ok())
    }

    /// DeriveSharedSecret: ECDH between a KEY_AGREEMENT key and the peer's public key
    /// (SubjectPublicKeyInfo DER, or an SEC 1 point), the raw shared secret as AWS returns it.
    pub fn derive_shared_secret(
        &self,
        key: &KeyRecord,
        algorithm: &str,
        peer_public_key: &[u8],
    ) -> Result<SecretBytes, KmsError> {
        require_enabled(key)?;
        require_usage(key, KEY_AGREEMENT, "DeriveSharedSecret")?;
        if algorithm != ECDH {
            return Err(incompatible(algorithm, key));
        }
        let Family::Ecc(curve) = family(key)? else { return Err(incompatible(algorithm, key)) };
        let ecdh = ecdh(curve).ok_or_else(|| incompatible(algorithm, key))?;
        let private = self.open_private(key)?;
        let private = agreement::PrivateKey::from_private_key_der(ecdh, private.expose())
            .map_err(|_| crypto_failure("EC private key"))?;
        let invalid_peer = KmsError::validation(format!(
            "PublicKey is not a valid public key for key spec {}.",
            key.key_spec
        ));
        agreement::agree(
            &private,
            agreement::UnparsedPublicKey::new(ecdh, peer_public_key),
            invalid_peer,
            |secret| Ok(SecretBytes::new(secret.to_vec())),
        )
    }

    /// GenerateDataKeyPair: a fresh key pair of `spec`, its private key encrypted under
    /// `key` (a symmetric encryption key) with `context`.
    pub fn generate_data_key_pair(
        &self,
        key: &KeyRecord,
        spec: &str,
        context: &EncryptionContext,
    ) -> Result<DataKeyPair, KmsError> {
        require_enabled(key)?;
        require_symmetric(key, "GenerateDataKeyPair")?;
        let family = match Family::of(spec) {
            Some(f @ (Family::Rsa(_) | Family::Ecc(_))) => f,
            _ => {
                return Err(KmsError::rejected(
                    ErrorCode::KmsUnsupportedOperation,
                    format!("KeyPairSpec {spec} is not supported by Coffer."),
                ));
            }
        };
        let (private, public) = generate(family)?;
        let public =
            public.ok_or_else(|| KmsError::Internal("key pair without public key".into()))?;
        let encrypted = self.encrypt_under(key, private.expose(), context)?;
        Ok(DataKeyPair { private_plaintext: private, public_key: public, encrypted })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_specs_allow_kms_usages_only() {
        assert!(check_new_key("RSA_2048", Some(SIGN_VERIFY)).is_ok());
        assert!(check_new_key("RSA_4096", Some(ENCRYPT_DECRYPT)).is_ok());
        assert_eq!(check_new_key("SYMMETRIC_DEFAULT", None).unwrap().1, ENCRYPT_DECRYPT);
        // Only a symmetric encryption key may leave its usage out (the model: "optional when
        // you are creating a symmetric encryption KMS key; otherwise, it is required").
        for spec in ["RSA_4096", "ECC_NIST_P256", "HMAC_256"] {
            let err = check_new_key(spec, None).unwrap_err();
            assert_eq!(err.code(), Some(ErrorCode::Validation), "{spec}");
            assert_eq!(
                err.client_message(),
                "You must specify a KeyUsage value for all KMS keys except for symmetric encryption keys."
            );
        }
        assert!(check_new_key("ECC_NIST_P256", Some(KEY_AGREEMENT)).is_ok());
        assert!(check_new_key("HMAC_256", Some(GENERATE_VERIFY_MAC)).is_ok());
        for (spec, usage) in [
            ("ECC_NIST_P256", None),
            ("ECC_SECG_P256K1", Some(KEY_AGREEMENT)),
            ("HMAC_256", Some(ENCRYPT_DECRYPT)),
            ("SYMMETRIC_DEFAULT", Some(SIGN_VERIFY)),
        ] {
            let err = check_new_key(spec, usage).unwrap_err();
            assert_eq!(err.code(), Some(ErrorCode::Validation), "{spec} {usage:?}");
        }
        let err = check_new_key("SM2", Some(SIGN_VERIFY)).unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::KmsUnsupportedOperation));
    }

    #[test]
    fn generated_keys_have_the_spec_s_shape() {
        let (private, public) = generate(Family::Ecc(Curve::P384)).unwrap();
        assert!(
            signature::EcdsaKeyPair::from_pkcs8(
                &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
                private.expose()
            )
            .is_ok()
        );
        assert!(public.unwrap().len() > 90);
        let (hmac_key, none) = generate(Family::Hmac(384)).unwrap();
        assert_eq!((hmac_key.len(), none), (48, None));
    }
}
