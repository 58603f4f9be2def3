//! AWS-shaped errors: a code from the service model plus a human message.

use std::fmt;

/// The error codes Coffer answers with. The string form is the `__type` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    ResourceNotFound,
    InvalidParameter,
    InvalidRequest,
    ResourceExists,
    LimitExceeded,
    EncryptionFailure,
    DecryptionFailure,
    InternalServiceError,
    InvalidNextToken,
    MalformedPolicyDocument,
    PreconditionNotMet,
    PublicPolicy,
    Validation,
    Serialization,
    UnknownOperation,
    MissingAuthenticationToken,
    IncompleteSignature,
    AccessDenied,
    RequestEntityTooLarge,
    /// The request's body did not arrive in time.
    RequestTimeout,
    NotImplemented,
    /// A request quota is exhausted (`Rate exceeded`): SDKs retry it with backoff.
    Throttling,
    /// SigV4: the access key id or security token is not known.
    UnrecognizedClient,
    /// Temporary credentials whose session has ended.
    ExpiredToken,
    /// SigV4: the signature, its scope or its date is wrong.
    InvalidSignature,
    // The Key Management Service's own codes (TrentService.*).
    KmsNotFound,
    KmsDisabled,
    KmsInvalidState,
    KmsInvalidCiphertext,
    KmsAlreadyExists,
    KmsInvalidKeyUsage,
    KmsInvalidArn,
    KmsInvalidMarker,
    KmsInvalidAliasName,
    KmsIncorrectKey,
    KmsTag,
    KmsUnsupportedOperation,
    KmsDryRunOperation,
    KmsCustomKeyStoreNotFound,
    /// Verify: the signature does not verify.
    KmsInvalidSignature,
    /// VerifyMac: the MAC does not verify.
    KmsInvalidMac,
    /// RetireGrant: the grant token names no grant.
    KmsInvalidGrantToken,
    /// ImportKeyMaterial: the import token is not one GetParametersForImport gave for the key.
    KmsInvalidImportToken,
    /// ImportKeyMaterial: the import token's 24 hours have passed.
    KmsExpiredImportToken,
    /// ImportKeyMaterial: the material is not the key's (or not a valid key material).
    KmsIncorrectKeyMaterial,
    KmsInternal,
    /// CloudTrail's own codes (`InvalidTimeRangeException`, ...), named as it names them.
    CloudTrail(&'static str),
    /// A query-protocol service's own code (STS, IAM: `NoSuchEntity`, `SignatureDoesNotMatch`,
    /// ...) and the HTTP status it is answered with: the query protocol names its errors
    /// without the JSON protocol's `Exception` suffix, and IAM's statuses vary by code.
    Query {
        code: &'static str,
        status: u16,
    },
}

impl ErrorCode {
    /// The `__type` value clients match on.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ResourceNotFound => "ResourceNotFoundException",
            ErrorCode::InvalidParameter => "InvalidParameterException",
            ErrorCode::InvalidRequest => "InvalidRequestException",
            ErrorCode::ResourceExists => "ResourceExistsException",
            ErrorCode::LimitExceeded => "LimitExceededException",
            ErrorCode::EncryptionFailure => "EncryptionFailure",
            ErrorCode::DecryptionFailure => "DecryptionFailure",
            ErrorCode::InternalServiceError => "InternalServiceError",
            ErrorCode::InvalidNextToken => "InvalidNextTokenException",
            ErrorCode::MalformedPolicyDocument => "MalformedPolicyDocumentException",
            ErrorCode::PreconditionNotMet => "PreconditionNotMetException",
            ErrorCode::PublicPolicy => "PublicPolicyException",
            ErrorCode::Validation => "ValidationException",
            ErrorCode::Serialization => "SerializationException",
            ErrorCode::UnknownOperation => "UnknownOperationException",
            ErrorCode::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            ErrorCode::IncompleteSignature => "IncompleteSignatureException",
            ErrorCode::AccessDenied => "AccessDeniedException",
            ErrorCode::RequestEntityTooLarge => "RequestEntityTooLargeException",
            ErrorCode::RequestTimeout => "RequestTimeoutException",
            ErrorCode::NotImplemented => "NotImplementedException",
            ErrorCode::Throttling => "ThrottlingException",
            ErrorCode::UnrecognizedClient => "UnrecognizedClientException",
            ErrorCode::ExpiredToken => "ExpiredTokenException",
            ErrorCode::InvalidSignature => "InvalidSignatureException",
            ErrorCode::KmsNotFound => "NotFoundException",
            ErrorCode::KmsDisabled => "DisabledException",
            ErrorCode::KmsInvalidState => "KMSInvalidStateException",
            ErrorCode::KmsInvalidCiphertext => "InvalidCiphertextException",
            ErrorCode::KmsAlreadyExists => "AlreadyExistsException",
            ErrorCode::KmsInvalidKeyUsage => "InvalidKeyUsageException",
            ErrorCode::KmsInvalidArn => "InvalidArnException",
            ErrorCode::KmsInvalidMarker => "InvalidMarkerException",
            ErrorCode::KmsInvalidAliasName => "InvalidAliasNameException",
            ErrorCode::KmsIncorrectKey => "IncorrectKeyException",
            ErrorCode::KmsTag => "TagException",
            ErrorCode::KmsUnsupportedOperation => "UnsupportedOperationException",
            ErrorCode::KmsDryRunOperation => "DryRunOperationException",
            ErrorCode::KmsCustomKeyStoreNotFound => "CustomKeyStoreNotFoundException",
            ErrorCode::KmsInvalidSignature => "KMSInvalidSignatureException",
            ErrorCode::KmsInvalidMac => "KMSInvalidMacException",
            ErrorCode::KmsInvalidGrantToken => "InvalidGrantTokenException",
            ErrorCode::KmsInvalidImportToken => "InvalidImportTokenException",
            ErrorCode::KmsExpiredImportToken => "ExpiredImportTokenException",
            ErrorCode::KmsIncorrectKeyMaterial => "IncorrectKeyMaterialException",
            ErrorCode::KmsInternal => "KMSInternalException",
            ErrorCode::CloudTrail(code) => code,
            ErrorCode::Query { code, .. } => code,
        }
    }

    /// The HTTP status AWS uses for this code. Secrets Manager answers 400 for
    /// every client error, ResourceNotFound included.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InternalServiceError | ErrorCode::KmsInternal => 500,
            ErrorCode::MissingAuthenticationToken | ErrorCode::AccessDenied => 400,
            ErrorCode::RequestEntityTooLarge => 413,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::NotImplemented => 501,
            ErrorCode::CloudTrail("InternalFailure") => 500,
            ErrorCode::Query { status, .. } => status,
            _ => 400,
        }
    }
}

/// An error as the client will see it. The message never contains a secret value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsError {
    pub code: ErrorCode,
    pub message: String,
}

impl AwsError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        AwsError { code, message: message.into() }
    }

    /// `Secrets Manager can't find the specified secret.`
    pub fn secret_not_found() -> Self {
        Self::new(ErrorCode::ResourceNotFound, "Secrets Manager can't find the specified secret.")
    }

    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidParameter, message)
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Validation, message)
    }

    /// An internal failure: the cause is logged by the caller, never sent.
    pub fn internal() -> Self {
        Self::new(ErrorCode::InternalServiceError, "An error occurred on the server side.")
    }

    /// AWS's answer to a call over a request quota (both Secrets Manager and KMS).
    pub fn throttled() -> Self {
        Self::new(ErrorCode::Throttling, "Rate exceeded")
    }

    /// `You can't perform this operation on the secret because it was marked for deletion.`
    pub fn marked_for_deletion() -> Self {
        Self::invalid_request(
            "You can't perform this operation on the secret because it was marked for deletion.",
        )
    }
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for AwsError {}
