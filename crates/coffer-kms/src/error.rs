//! The key service's error: a KMS error code and message for the caller, or an internal failure.

use coffer_core::{AwsError, ErrorCode};
use coffer_store::StoreError;
use std::fmt;

/// The message KMS answers when a ciphertext names a key the caller cannot use.
pub const CIPHERTEXT_KEY_UNKNOWN: &str = "The ciphertext refers to a customer master key that does not exist, does not exist in this region, or you are not allowed to access.";

/// Why a key service operation failed.
#[derive(Debug)]
pub enum KmsError {
    /// The request was refused: the code and message are what a KMS client sees.
    Rejected { code: ErrorCode, message: String },
    /// The store failed; the cause is logged, never sent.
    Store(StoreError),
    /// Stored data could not be read (a corrupt record, a key that does not unwrap); logged, never sent.
    Internal(String),
}

impl KmsError {
    pub fn rejected(code: ErrorCode, message: impl Into<String>) -> Self {
        KmsError::Rejected { code, message: message.into() }
    }

    /// The error code, when the request was refused (not an internal failure).
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            KmsError::Rejected { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// `NotFoundException: Invalid keyId '<id>'`: the string is no key id, ARN or alias.
    pub fn invalid_key_id(id: &str) -> Self {
        Self::rejected(ErrorCode::KmsNotFound, format!("Invalid keyId '{id}'"))
    }

    /// `InvalidArnException: Key Aliases are not supported for this operation.`: an alias
    /// name or ARN given to CreateGrant. Real KMS's words, quoted by Lambda in two public
    /// reports (hashicorp/terraform issue 20813, ministryofjustice/modernisation-platform
    /// PR 8298). Other operations that take a key id or key ARN only answer
    /// [`KmsError::invalid_key_id`]: moto's tests expect NotFoundException there (e.g.
    /// EnableKeyRotation) and no recording of real KMS says otherwise.
    pub fn aliases_not_supported() -> Self {
        Self::rejected(
            ErrorCode::KmsInvalidArn,
            "Key Aliases are not supported for this operation.",
        )
    }

    /// `NotFoundException: Invalid arn <region>`: a key or alias ARN of another region.
    pub fn invalid_arn_region(region: &str) -> Self {
        Self::rejected(ErrorCode::KmsNotFound, format!("Invalid arn {region}"))
    }

    /// `TagException` with KMS's message.
    pub fn tag(message: &str) -> Self {
        Self::rejected(ErrorCode::KmsTag, message)
    }

    /// `NotFoundException: Key '<arn>' does not exist`.
    pub fn key_not_found(arn: &str) -> Self {
        Self::rejected(ErrorCode::KmsNotFound, format!("Key '{arn}' does not exist"))
    }

    /// `NotFoundException: Alias <alias arn> is not found.`
    pub fn alias_not_found(alias_arn: &str) -> Self {
        Self::rejected(ErrorCode::KmsNotFound, format!("Alias {alias_arn} is not found."))
    }

    /// `DisabledException: <arn> is disabled.`
    pub fn disabled(arn: &str) -> Self {
        Self::rejected(ErrorCode::KmsDisabled, format!("{arn} is disabled."))
    }

    /// `KMSInvalidStateException: <arn> is pending deletion.`
    pub fn pending_deletion(arn: &str) -> Self {
        Self::rejected(ErrorCode::KmsInvalidState, format!("{arn} is pending deletion."))
    }

    /// `InvalidCiphertextException`, without a message, as KMS answers it.
    pub fn invalid_ciphertext() -> Self {
        Self::rejected(ErrorCode::KmsInvalidCiphertext, "")
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::rejected(ErrorCode::Validation, message)
    }

    /// The part of the error a client may see, for embedding in another service's message.
    pub fn client_message(&self) -> &str {
        match self {
            KmsError::Rejected { message, .. } => message,
            _ => "An internal error occurred in the key service.",
        }
    }
}

impl From<StoreError> for KmsError {
    fn from(e: StoreError) -> Self {
        KmsError::Store(e)
    }
}

impl fmt::Display for KmsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KmsError::Rejected { code, message } => write!(f, "{}: {message}", code.as_str()),
            KmsError::Store(e) => write!(f, "store failure: {e}"),
            KmsError::Internal(e) => write!(f, "internal key service failure: {e}"),
        }
    }
}

impl std::error::Error for KmsError {}

/// KMS's answer: the code and message as refused, `KMSInternalException` for anything internal.
impl From<KmsError> for AwsError {
    fn from(e: KmsError) -> Self {
        match e {
            KmsError::Rejected { code, message } => AwsError::new(code, message),
            KmsError::Store(StoreError::Aborted) => {
                AwsError::new(ErrorCode::KmsInternal, "An internal error occurred.")
            }
            other => {
                tracing::error!(error = %other, "key service failure");
                AwsError::new(ErrorCode::KmsInternal, "An internal error occurred.")
            }
        }
    }
}
