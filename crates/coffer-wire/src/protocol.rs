//! Shared protocol pieces: `X-Amz-Target` parsing, error bodies, timestamps, blobs, sensitive strings.

use base64::Engine;
use coffer_core::{AwsError, ErrorCode};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// The content type of every JSON 1.1 request and response.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

pub use crate::operation::{Operation, Service};

/// The operation `X-Amz-Target: secretsmanager.GetSecretValue` (or `TrentService.<Op>`)
/// names: one of the table's, or `UnknownOperation`.
pub fn parse_target(target: &str) -> Result<Operation, AwsError> {
    let unknown =
        || AwsError::new(ErrorCode::UnknownOperation, format!("Unknown operation {target}"));
    let (prefix, op) = target.split_once('.').ok_or_else(unknown)?;
    let service = match prefix {
        "secretsmanager" => Service::SecretsManager,
        "TrentService" => Service::Kms,
        _ => return Err(unknown()),
    };
    Operation::from_name(service, op).ok_or_else(unknown)
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    #[serde(rename = "__type")]
    kind: &'a str,
    #[serde(rename = "Message")]
    message: &'a str,
}

/// The JSON body of an error response: `{"__type": "<Code>", "Message": "..."}`.
pub fn error_body(error: &AwsError) -> Vec<u8> {
    serde_json::to_vec(&ErrorBody { kind: error.code.as_str(), message: &error.message })
        .expect("error body serializes")
}

#[derive(Serialize)]
struct KmsErrorBody<'a> {
    #[serde(rename = "__type")]
    kind: &'a str,
    message: &'a str,
}

/// The JSON body of a KMS error response: `{"__type": "<Code>", "message": "..."}`, with
/// the lowercase member the real KMS service sends (Secrets Manager keeps `Message`).
pub fn kms_error_body(error: &AwsError) -> Vec<u8> {
    serde_json::to_vec(&KmsErrorBody { kind: error.code.as_str(), message: &error.message })
        .expect("error body serializes")
}

/// Epoch milliseconds rendered as epoch seconds with a fractional part, as AWS does.
pub fn epoch_seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// A string that may hold a secret: zeroized on drop, never printed.
#[derive(Default, Clone, PartialEq, Eq)]
pub struct SensitiveString(pub zeroize::Zeroizing<String>);

impl SensitiveString {
    pub fn new(s: String) -> Self {
        SensitiveString(zeroize::Zeroizing::new(s))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SensitiveString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for SensitiveString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(SensitiveString::new)
    }
}

impl Serialize for SensitiveString {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Bytes that may hold a secret, base64 on the wire: zeroized on drop, never printed.
#[derive(Default, Clone, PartialEq, Eq)]
pub struct SensitiveBlob(pub zeroize::Zeroizing<Vec<u8>>);

impl SensitiveBlob {
    pub fn new(v: Vec<u8>) -> Self {
        SensitiveBlob(zeroize::Zeroizing::new(v))
    }
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SensitiveBlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for SensitiveBlob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = zeroize::Zeroizing::new(String::deserialize(d)?);
        base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map(SensitiveBlob::new)
            .map_err(|_| serde::de::Error::custom("blob is not valid base64"))
    }
}

impl Serialize for SensitiveBlob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text =
            zeroize::Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&*self.0));
        s.serialize_str(&text)
    }
}

/// Deserializes a typed request from an already validated JSON body.
pub fn decode_request<T: serde::de::DeserializeOwned>(
    body: serde_json::Value,
) -> Result<T, AwsError> {
    serde_json::from_value(body).map_err(|e| {
        // serde's message names the member and expected type, never the value of a string.
        AwsError::new(ErrorCode::Serialization, sanitize_serde_message(&e.to_string()))
    })
}

/// Keeps serde's description of what was expected but drops any quoted input.
fn sanitize_serde_message(message: &str) -> String {
    match message.find('"') {
        Some(i) => message[..i].trim_end().to_string(),
        None => message.to_string(),
    }
}

/// Serializes a response body.
pub fn encode_response<T: Serialize>(response: &T) -> Vec<u8> {
    serde_json::to_vec(response).expect("response serializes")
}
