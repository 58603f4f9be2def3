//! Ciphertext blobs: what Encrypt and GenerateDataKey return and what every secret version
//! stores. The format (header, parser, AAD; documented there) is `coffer_crypto::kms_blob`,
//! pure and fuzzed without the store; this module gives it the key service's errors.

use crate::error::KmsError;
use coffer_crypto::kms_blob;

pub use kms_blob::{
    BLOB_VERSION, BLOB_VERSION_1, BLOB_VERSION_MRK, BlobHeader, EncryptionContext, HEADER_LEN,
    aad,
};

/// Writes the header of a blob sealed by `key_id` (a UUID) at `material_version`.
pub fn header(key_id: &str, material_version: u32) -> Result<Vec<u8>, KmsError> {
    kms_blob::header(key_id, material_version)
        .ok_or_else(|| KmsError::Internal(format!("key id {key_id} is not a UUID")))
}

/// Splits a blob into its header and envelope; anything malformed is `InvalidCiphertextException`.
pub fn parse(blob: &[u8]) -> Result<(BlobHeader, &[u8]), KmsError> {
    kms_blob::parse(blob).map_err(|_| KmsError::invalid_ciphertext())
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_core::ErrorCode;

    const ID: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";

    #[test]
    fn short_or_unversioned_blobs_are_invalid_ciphertext() {
        let mut blob = header(ID, 1).unwrap();
        assert_eq!(parse(&blob).unwrap_err().code(), Some(ErrorCode::KmsInvalidCiphertext));
        blob.push(0);
        blob[0] = 3;
        assert_eq!(parse(&blob).unwrap_err().code(), Some(ErrorCode::KmsInvalidCiphertext));
        assert!(parse(&[]).is_err());
        assert!(header("not-a-uuid", 1).is_err());
    }
}
