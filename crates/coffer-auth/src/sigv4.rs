//! AWS Signature Version 4 verification of header-signed requests.
//!
//! The chain is split into pure steps that can each be checked against AWS's
//! published test vectors: [`canonical_request`] -> [`string_to_sign`] ->
//! [`signing_key`] -> [`signature`]. Verification is two-phase so the caller can
//! look the access key up in between: [`prevalidate`] checks everything that needs
//! no key (header grammar, credential scope, date, a 5-minute clock skew) and
//! returns the access key id; [`Prevalidated::verify`] recomputes the signature with
//! the key's secret and compares it in constant time.
//!
//! Presigned URLs (query-string authentication) and `UNSIGNED-PAYLOAD` are not
//! accepted: the payload hash is always computed from the body received.

use crate::time::{format_amz_date, parse_amz_date};
use aws_lc_rs::{constant_time, digest, hmac};
use std::fmt;
use zeroize::Zeroizing;

/// The only algorithm accepted.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// How far a request's `X-Amz-Date` may be from the server's clock, as AWS allows.
pub const MAX_SKEW_SECS: i64 = 5 * 60;

const MISMATCH: &str = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";

/// Why a request's signature was refused, with AWS's codes and messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigV4Error {
    /// No `Authorization` header at all.
    MissingAuthenticationToken,
    /// The header or its required parts are malformed or missing; the message says which.
    Incomplete(String),
    /// The access key id (or a session token) is unknown or inactive.
    UnrecognizedClient,
    /// The signature does not match the one computed with the key's secret.
    SignatureMismatch,
    /// The credential scope or the date is wrong; the message says how (AWS words these
    /// as signature errors).
    InvalidSignature(String),
    /// Query-string authentication was used.
    PresignedUrlNotSupported,
}

impl SigV4Error {
    /// The `__type` of an AWS JSON 1.1 error.
    pub fn json_code(&self) -> &'static str {
        match self {
            SigV4Error::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            SigV4Error::Incomplete(_) | SigV4Error::PresignedUrlNotSupported => {
                "IncompleteSignatureException"
            }
            SigV4Error::UnrecognizedClient => "UnrecognizedClientException",
            SigV4Error::SignatureMismatch | SigV4Error::InvalidSignature(_) => {
                "InvalidSignatureException"
            }
        }
    }

    /// The `Code` of an AWS query-protocol error (STS answers in this protocol).
    pub fn query_code(&self) -> &'static str {
        match self {
            SigV4Error::MissingAuthenticationToken => "MissingAuthenticationToken",
            SigV4Error::Incomplete(_) | SigV4Error::PresignedUrlNotSupported => {
                "IncompleteSignature"
            }
            SigV4Error::UnrecognizedClient => "InvalidClientTokenId",
            SigV4Error::SignatureMismatch | SigV4Error::InvalidSignature(_) => {
                "SignatureDoesNotMatch"
            }
        }
    }

    /// The message as the JSON protocol words it.
    pub fn message(&self) -> String {
        match self {
            SigV4Error::MissingAuthenticationToken => "Missing Authentication Token".to_string(),
            SigV4Error::Incomplete(m) | SigV4Error::InvalidSignature(m) => m.clone(),
            SigV4Error::UnrecognizedClient => {
                "The security token included in the request is invalid.".to_string()
            }
            SigV4Error::SignatureMismatch => MISMATCH.to_string(),
            SigV4Error::PresignedUrlNotSupported => "Coffer accepts only requests signed in the Authorization header (AWS4-HMAC-SHA256); presigned URLs are not supported.".to_string(),
        }
    }

    /// The message as the query protocol (STS) words it.
    pub fn query_message(&self) -> String {
        match self {
            SigV4Error::MissingAuthenticationToken => {
                "Request is missing Authentication Token".to_string()
            }
            other => other.message(),
        }
    }
}

impl fmt::Display for SigV4Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.json_code(), self.message())
    }
}

impl std::error::Error for SigV4Error {}

/// The parts of an HTTP request that SigV4 covers.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    pub method: &'a str,
    /// The path as received, still percent-encoded.
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub query: &'a str,
    /// Every header, names in any case, repeated names as separate entries, in order.
    pub headers: &'a [(&'a str, &'a [u8])],
    pub body: &'a [u8],
}

impl RequestParts<'_> {
    /// The values of header `name` (ASCII case-insensitive), in order.
    fn header_values(&self, name: &str) -> impl Iterator<Item = &[u8]> {
        self.headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).next().and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// The credential scope: `<date>/<region>/<service>/aws4_request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialScope {
    pub date: String,
    pub region: String,
    pub service: String,
}

impl fmt::Display for CredentialScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}/aws4_request", self.date, self.region, self.service)
    }
}

/// The fields of an `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Debug, Clone)]
pub struct Authorization {
    pub access_key_id: String,
    pub scope: CredentialScope,
    /// Lower-case header names, as listed in `SignedHeaders`.
    pub signed_headers: Vec<String>,
    signature: String,
    terminator: String,
}

fn incomplete(what: &str, header: &str) -> SigV4Error {
    SigV4Error::Incomplete(format!("{what} Authorization={header}"))
}

/// Parses an `Authorization` header. Missing parameters are reported all at once, in
/// AWS's words.
pub fn parse_authorization(header: &str) -> Result<Authorization, SigV4Error> {
    let (algorithm, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    if algorithm != ALGORITHM {
        return Err(incomplete(
            &format!("Unsupported AWS 'algorithm': '{algorithm}'; only {ALGORITHM} is accepted."),
            header,
        ));
    }
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',').map(str::trim) {
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let mut missing = String::new();
    for (name, value) in
        [("Credential", credential), ("Signature", signature), ("SignedHeaders", signed)]
    {
        if value.is_none_or(str::is_empty) {
            missing.push_str(&format!("Authorization header requires '{name}' parameter. "));
        }
    }
    if !missing.is_empty() {
        return Err(SigV4Error::Incomplete(format!("{missing}Authorization={header}")));
    }
    let (credential, signed, signature) =
        (credential.unwrap_or(""), signed.unwrap_or(""), signature.unwrap_or(""));
    let parts: Vec<&str> = credential.split('/').collect();
    if parts.len() != 5 || parts[..4].iter().any(|p| p.is_empty()) {
        return Err(incomplete(
            "Authorization header requires a well-formed 'Credential' parameter: <access key id>/<date>/<region>/<service>/aws4_request.",
            header,
        ));
    }
    Ok(Authorization {
        access_key_id: parts[0].to_string(),
        scope: CredentialScope {
            date: parts[1].to_string(),
            region: parts[2].to_string(),
            service: parts[3].to_string(),
        },
        signed_headers: signed.split(';').map(str::to_ascii_lowercase).collect(),
        signature: signature.to_string(),
        terminator: parts[4].to_string(),
    })
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

/// Percent-encodes everything but RFC 3986's unreserved characters (and `/` when asked).
fn uri_encode(input: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(input.len());
    for &b in input {
        if is_unreserved(b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(input: &str) -> Vec<u8> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) =
                ((bytes[i + 1] as char).to_digit(16), (bytes[i + 2] as char).to_digit(16))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// The canonical URI of a path as received. Dot segments are removed and the path is
/// encoded once more, so the percent-escapes a client sent are themselves escaped: every
/// AWS service except S3 signs paths this way.
pub fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".to_string();
    }
    let mut segments: Vec<&str> = Vec::new();
    let trailing = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..");
    for segment in path.split('/').skip(1) {
        match segment {
            "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    if trailing && segments.last().is_some_and(|s| !s.is_empty()) {
        segments.push("");
    }
    let joined = format!("/{}", segments.join("/"));
    uri_encode(joined.as_bytes(), true)
}

/// The canonical query string: each name and value decoded and re-encoded, sorted by
/// name, then value.
pub fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (uri_encode(&percent_decode(k), false), uri_encode(&percent_decode(v), false))
        })
        .collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

/// A header value as SigV4 canonicalizes it: folded lines joined with commas, outer
/// whitespace trimmed, inner runs of spaces collapsed to one.
fn canonical_header_value(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let lines: Vec<String> = text
        .split('\n')
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|line| !line.is_empty())
        .collect();
    lines.join(",")
}

/// The canonical request for `req` with the given signed headers.
pub fn canonical_request(req: &RequestParts<'_>, signed_headers: &[String]) -> String {
    let mut out = String::new();
    out.push_str(req.method);
    out.push('\n');
    out.push_str(&canonical_uri(req.path));
    out.push('\n');
    out.push_str(&canonical_query(req.query));
    out.push('\n');
    for name in signed_headers {
        let values: Vec<String> = req.header_values(name).map(canonical_header_value).collect();
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&signed_headers.join(";"));
    out.push('\n');
    out.push_str(&hex(digest::digest(&digest::SHA256, req.body).as_ref()));
    out
}

/// The string to sign: algorithm, request date, scope and the canonical request's hash.
pub fn string_to_sign(amz_date: &str, scope: &CredentialScope, canonical_request: &str) -> String {
    let hash = digest::digest(&digest::SHA256, canonical_request.as_bytes());
    format!("{ALGORITHM}\n{amz_date}\n{scope}\n{}", hex(hash.as_ref()))
}

/// A derived signing key. It is as good as the secret for a day, so it is wiped on drop
/// and never printed.
pub struct SigningKey(hmac::Key);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Derives the signing key: HMAC chain over date, region, service and `aws4_request`.
pub fn signing_key(secret: &[u8], scope: &CredentialScope) -> SigningKey {
    let mut seed = Zeroizing::new(Vec::with_capacity(4 + secret.len()));
    seed.extend_from_slice(b"AWS4");
    seed.extend_from_slice(secret);
    let mut key = Zeroizing::new(hmac_bytes(&seed, scope.date.as_bytes()));
    for part in [scope.region.as_bytes(), scope.service.as_bytes(), b"aws4_request"] {
        key = Zeroizing::new(hmac_bytes(&key[..], part));
    }
    SigningKey(hmac::Key::new(hmac::HMAC_SHA256, &key[..]))
}

fn hmac_bytes(key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data).as_ref().to_vec()
}

/// A computed signature. Deliberately without `PartialEq`: compare it only through
/// [`Signature::matches`], which takes constant time.
pub struct Signature([u8; 32]);

impl Signature {
    /// Lower-case hex, as it appears in the `Authorization` header.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// True when `provided` (hex) is this signature. The comparison does not stop at the
    /// first differing byte, so timing reveals nothing about how close a guess was.
    pub fn matches(&self, provided: &str) -> bool {
        let Some(bytes) = unhex(provided) else { return false };
        constant_time::verify_slices_are_equal(&self.0, &bytes).is_ok()
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Signature(..)")
    }
}

/// Signs a string to sign.
pub fn signature(key: &SigningKey, string_to_sign: &str) -> Signature {
    let tag = hmac::sign(&key.0, string_to_sign.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    Signature(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// What the server expects of a request's credential scope and date.
pub struct Expectation<'a> {
    /// The service the request is for (`secretsmanager`, `kms`, `sts`).
    pub service: &'a str,
    /// The server's clock, in Unix seconds.
    pub now_secs: i64,
    /// Whether a region in a credential scope is one this server answers for.
    pub region_is_valid: &'a dyn Fn(&str) -> bool,
}

/// A request whose signature grammar, scope and date passed; only the key-dependent
/// check is left.
#[derive(Debug)]
pub struct Prevalidated {
    pub authorization: Authorization,
    pub amz_date: String,
    /// The `X-Amz-Security-Token` header, if any. Coffer issues no temporary
    /// credentials, so a request carrying one cannot be from a known key.
    pub session_token: Option<String>,
}

impl Prevalidated {
    pub fn access_key_id(&self) -> &str {
        &self.authorization.access_key_id
    }

    pub fn scope(&self) -> &CredentialScope {
        &self.authorization.scope
    }

    /// Recomputes the signature with the access key's secret and compares it in constant
    /// time with the one the request carries.
    pub fn verify(&self, req: &RequestParts<'_>, secret: &[u8]) -> Result<(), SigV4Error> {
        let canonical = canonical_request(req, &self.authorization.signed_headers);
        let to_sign = string_to_sign(&self.amz_date, &self.authorization.scope, &canonical);
        let expected = signature(&signing_key(secret, &self.authorization.scope), &to_sign);
        if expected.matches(&self.authorization.signature) {
            Ok(())
        } else {
            Err(SigV4Error::SignatureMismatch)
        }
    }
}

/// Checks everything that needs no secret: the `Authorization` header's grammar, the
/// request date and its skew, the credential scope (terminator, service, region, date)
/// and that `host` is signed.
pub fn prevalidate(
    req: &RequestParts<'_>,
    expect: &Expectation<'_>,
) -> Result<Prevalidated, SigV4Error> {
    let Some(header) = req.header("authorization") else {
        let presigned = req.query.split('&').any(|p| {
            let name = p.split('=').next().unwrap_or("");
            name.eq_ignore_ascii_case("X-Amz-Signature")
                || name.eq_ignore_ascii_case("X-Amz-Credential")
        });
        return Err(if presigned {
            SigV4Error::PresignedUrlNotSupported
        } else {
            SigV4Error::MissingAuthenticationToken
        });
    };
    let authorization = parse_authorization(header)?;
    let amz_date = req.header("x-amz-date").ok_or_else(|| {
        incomplete(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
            header,
        )
    })?;
    let request_secs = parse_amz_date(amz_date).ok_or_else(|| {
        SigV4Error::Incomplete(format!(
            "Date must be in ISO-8601 'basic format'. Got '{amz_date}'. See http://en.wikipedia.org/wiki/ISO_8601"
        ))
    })?;
    let scope = &authorization.scope;
    if authorization.terminator != "aws4_request" {
        return Err(SigV4Error::InvalidSignature(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{}'. ",
            authorization.terminator
        )));
    }
    if scope.service != expect.service {
        return Err(SigV4Error::InvalidSignature(format!(
            "Credential should be scoped to correct service: '{}'. ",
            expect.service
        )));
    }
    if !(expect.region_is_valid)(&scope.region) {
        return Err(SigV4Error::InvalidSignature(format!(
            "Credential should be scoped to a valid region, not '{}'. ",
            scope.region
        )));
    }
    if scope.date != amz_date[..8] {
        return Err(SigV4Error::InvalidSignature(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}', from '{amz_date}'.",
            scope.date,
            &amz_date[..8]
        )));
    }
    check_skew(amz_date, request_secs, expect.now_secs)?;
    if !authorization.signed_headers.iter().any(|h| h == "host") {
        return Err(incomplete(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
            header,
        ));
    }
    Ok(Prevalidated {
        authorization,
        amz_date: amz_date.to_string(),
        session_token: req.header("x-amz-security-token").map(str::to_string),
    })
}

/// Refuses a request dated more than [`MAX_SKEW_SECS`] away from `now`, in AWS's words.
fn check_skew(amz_date: &str, request_secs: i64, now: i64) -> Result<(), SigV4Error> {
    if request_secs < now - MAX_SKEW_SECS {
        return Err(SigV4Error::InvalidSignature(format!(
            "Signature expired: {amz_date} is now earlier than {} ({} - 5 min.)",
            format_amz_date(now - MAX_SKEW_SECS),
            format_amz_date(now)
        )));
    }
    if request_secs > now + MAX_SKEW_SECS {
        return Err(SigV4Error::InvalidSignature(format!(
            "Signature not yet current: {amz_date} is still later than {} ({} + 5 min.)",
            format_amz_date(now + MAX_SKEW_SECS),
            format_amz_date(now)
        )));
    }
    Ok(())
}

/// Signs `req` and returns the `Authorization` header value: the client side of the
/// chain, for tests and load generators. `req` must already carry `x-amz-date`.
pub fn authorization_header(
    req: &RequestParts<'_>,
    access_key_id: &str,
    secret: &[u8],
    scope: &CredentialScope,
    signed_headers: &[String],
) -> String {
    let amz_date = req.header("x-amz-date").unwrap_or_default();
    let canonical = canonical_request(req, signed_headers);
    let sig = signature(&signing_key(secret, scope), &string_to_sign(amz_date, scope, &canonical));
    format!(
        "{ALGORITHM} Credential={access_key_id}/{scope}, SignedHeaders={}, Signature={}",
        signed_headers.join(";"),
        sig.to_hex()
    )
}
