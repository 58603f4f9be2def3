//! The error type of every fallible operation in this crate.

use std::path::PathBuf;

/// Why a cryptographic operation failed.
///
/// Messages never contain key bytes or plaintext; at most they name a file path.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// Key material did not have exactly 32 bytes, or its text form was not base64 of 32 bytes.
    #[error("a key must be exactly 32 bytes, written as standard base64 in text form")]
    MalformedKey,
    /// The master key file exists but does not hold the text form of a 32-byte key.
    #[error("master key file {} does not hold the base64 text of a 32-byte key", .path.display())]
    MalformedKeyFile {
        /// The file that was read.
        path: PathBuf,
    },
    /// A wrapped key has the wrong length for its format version.
    #[error("wrapped key is malformed")]
    MalformedWrappedKey,
    /// A sealed value is too short or its lengths do not add up.
    #[error("sealed value is malformed")]
    MalformedEnvelope,
    /// A sealed value, wrapped key or check value starts with a format version this build does
    /// not know.
    #[error("unsupported format version {0}")]
    UnsupportedVersion(u8),
    /// Decryption failed: the key is wrong, the data was tampered with, or the context (AAD)
    /// differs from the one used when sealing.
    #[error("authentication failed: wrong key, tampered data or wrong context")]
    AuthenticationFailed,
    /// Reading or creating the master key file failed.
    #[error("cannot {action} master key file {}: {source}", .path.display())]
    Io {
        /// What was being done, e.g. `read` or `create`.
        action: &'static str,
        /// The master key file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}
