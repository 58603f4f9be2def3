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
//! The signing key depends only on the secret and the credential scope, which changes
//! once a day, so [`SigningKeyCache`] keeps derived keys (wiped when evicted) and
//! [`Prevalidated::verify_cached`] saves the four HMACs of the derivation on every request
//! after the first of the day.
//!
//! Presigned URLs (query-string authentication) and `UNSIGNED-PAYLOAD` are not
//! accepted: the payload hash is always computed from the body received.

use crate::time::{format_amz_date, parse_amz_date};
use aws_lc_rs::{constant_time, digest, hmac};
use std::collections::HashMap;
use std::fmt;
use std::fmt::Write as _;
use std::sync::Mutex;
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
    /// Temporary credentials whose session has ended.
    ExpiredToken,
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
            SigV4Error::ExpiredToken => "ExpiredTokenException",
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
            SigV4Error::ExpiredToken => "ExpiredToken",
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
            SigV4Error::ExpiredToken => {
                "The security token included in the request is expired".to_string()
            }
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

/// The bound on quoted client values, and the quoting itself, live with the validation
/// messages that quote most of them.
pub use coffer_core::validation::{MAX_ECHO_CHARS, echo, echo_at_most};

/// How much of an unsupported algorithm's name its message quotes.
const ALGORITHM_ECHO_CHARS: usize = 64;

fn incomplete(what: &str, header: &str) -> SigV4Error {
    SigV4Error::Incomplete(format!("{what} Authorization={}", echo(header)))
}

/// Headers that must appear at most once: the ones that choose what is verified
/// (`Authorization`, `X-Amz-Date`, `X-Amz-Security-Token`) or which operation runs
/// (`X-Amz-Target`). The server reads the first of a repeated header while the canonical
/// request joins them all, so a repeat would let the two disagree.
const SINGLE_HEADERS: &[(&str, &str)] = &[
    ("authorization", "Authorization"),
    ("x-amz-date", "X-Amz-Date"),
    ("x-amz-target", "X-Amz-Target"),
    ("x-amz-security-token", "X-Amz-Security-Token"),
];

/// Headers that must be signed whenever a request carries them, besides `host`: the
/// target names the operation and the content type the protocol, so an unsigned one would
/// let a captured request be replayed as another operation within the skew window.
const MUST_SIGN_IF_PRESENT: &[(&str, &str)] =
    &[("x-amz-target", "X-Amz-Target"), ("content-type", "Content-Type")];

/// Parses an `Authorization` header. Missing parameters are reported all at once, in
/// AWS's words.
pub fn parse_authorization(header: &str) -> Result<Authorization, SigV4Error> {
    let (algorithm, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    if algorithm != ALGORITHM {
        // The algorithm is quoted short and the header after it in what is left of the
        // budget: a header with no space in it is all algorithm, and would be quoted twice.
        let algorithm = echo_at_most(algorithm, ALGORITHM_ECHO_CHARS);
        return Err(SigV4Error::Incomplete(format!(
            "Unsupported AWS 'algorithm': '{algorithm}'; only {ALGORITHM} is accepted. \
             Authorization={}",
            echo_at_most(header, MAX_ECHO_CHARS - ALGORITHM_ECHO_CHARS)
        )));
    }
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',').map(str::trim) {
        let (slot, name) = if part.starts_with("Credential=") {
            (&mut credential, "Credential")
        } else if part.starts_with("SignedHeaders=") {
            (&mut signed, "SignedHeaders")
        } else if part.starts_with("Signature=") {
            (&mut signature, "Signature")
        } else {
            continue;
        };
        // Two values for one parameter leave it open which one was verified.
        if slot.is_some() {
            return Err(incomplete(
                &format!("Authorization header has a duplicate '{name}' parameter."),
                header,
            ));
        }
        *slot = Some(&part[name.len() + 1..]);
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
        return Err(SigV4Error::Incomplete(format!("{missing}Authorization={}", echo(header))));
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

const UPPER_HEX: &[u8; 16] = b"0123456789ABCDEF";
const LOWER_HEX: &[u8; 16] = b"0123456789abcdef";

/// Percent-encodes everything but RFC 3986's unreserved characters (and `/` when asked).
fn uri_encode(input: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(input.len());
    push_uri_encoded(&mut out, input, keep_slash);
    out
}

/// [`uri_encode`] appending to `out`, so the canonical request is built in one buffer.
fn push_uri_encoded(out: &mut String, input: &[u8], keep_slash: bool) {
    for &b in input {
        if is_unreserved(b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(UPPER_HEX[usize::from(b >> 4)] as char);
            out.push(UPPER_HEX[usize::from(b & 0xf)] as char);
        }
    }
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
    let mut out = String::with_capacity(path.len() + 1);
    push_canonical_uri(&mut out, path);
    out
}

/// [`canonical_uri`] appending to `out`.
fn push_canonical_uri(out: &mut String, path: &str) {
    // The JSON protocols always post to `/`: answer that without splitting.
    if path.is_empty() || path == "/" {
        out.push('/');
        return;
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
    if segments.is_empty() {
        out.push('/');
    }
    for segment in segments {
        out.push('/');
        push_uri_encoded(out, segment.as_bytes(), true);
    }
}

/// The canonical query string: each name and value decoded and re-encoded, sorted by
/// name, then value.
pub fn canonical_query(query: &str) -> String {
    if query.is_empty() {
        return String::new();
    }
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

/// Appends a header value as SigV4 canonicalizes it: folded lines joined with commas,
/// outer whitespace trimmed, inner runs of spaces collapsed to one.
fn push_canonical_header_value(out: &mut String, raw: &[u8]) {
    let text = String::from_utf8_lossy(raw);
    let mut first_line = true;
    for line in text.split('\n') {
        let mut words = line.split_whitespace();
        // A line of nothing but whitespace is dropped, with its comma.
        let Some(first) = words.next() else { continue };
        if !first_line {
            out.push(',');
        }
        first_line = false;
        out.push_str(first);
        for word in words {
            out.push(' ');
            out.push_str(word);
        }
    }
}

/// The canonical request for `req` with the given signed headers, built in one buffer.
pub fn canonical_request(req: &RequestParts<'_>, signed_headers: &[String]) -> String {
    let headers_len: usize = req.headers.iter().map(|(n, v)| n.len() + v.len() + 2).sum();
    let mut out = String::with_capacity(
        req.method.len() + req.path.len() + req.query.len() + headers_len + 128,
    );
    out.push_str(req.method);
    out.push('\n');
    push_canonical_uri(&mut out, req.path);
    out.push('\n');
    out.push_str(&canonical_query(req.query));
    out.push('\n');
    for name in signed_headers {
        out.push_str(name);
        out.push(':');
        for (i, value) in req.header_values(name).enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_canonical_header_value(&mut out, value);
        }
        out.push('\n');
    }
    out.push('\n');
    for (i, name) in signed_headers.iter().enumerate() {
        if i > 0 {
            out.push(';');
        }
        out.push_str(name);
    }
    out.push('\n');
    push_hex(&mut out, digest::digest(&digest::SHA256, req.body).as_ref());
    out
}

/// The string to sign: algorithm, request date, scope and the canonical request's hash.
pub fn string_to_sign(amz_date: &str, scope: &CredentialScope, canonical_request: &str) -> String {
    let hash = digest::digest(&digest::SHA256, canonical_request.as_bytes());
    let mut out = String::with_capacity(ALGORITHM.len() + amz_date.len() + 64 + 128);
    // Writing into a String cannot fail.
    let _ = write!(out, "{ALGORITHM}\n{amz_date}\n{scope}\n");
    push_hex(&mut out, hash.as_ref());
    out
}

/// A derived signing key. It is as good as the secret for a day, so it is wiped on drop
/// and never printed.
#[derive(Clone)]
pub struct SigningKey(Zeroizing<[u8; 32]>);

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
    let mut key = hmac_bytes(&seed, scope.date.as_bytes());
    for part in [scope.region.as_bytes(), scope.service.as_bytes(), b"aws4_request"] {
        key = hmac_bytes(&key[..], part);
    }
    SigningKey(key)
}

fn hmac_bytes(key: &[u8], data: &[u8]) -> Zeroizing<[u8; 32]> {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data);
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(tag.as_ref());
    out
}

/// Derived signing keys by secret and credential scope, so a key is derived once a day
/// per access key and region rather than on every request.
///
/// An entry is found by a SHA-256 fingerprint of the secret together with the scope, so
/// a request signed with any other secret (a rotated or deleted key's successor, another
/// user's key with the same id in a different store) can never be verified with a cached
/// key: it simply misses and derives its own. The map is bounded; when it is full it is
/// emptied (every key is wiped on drop) rather than tracking recency, since a server
/// sees few distinct keys per day and a refill costs four HMACs per key.
pub struct SigningKeyCache {
    keys: Mutex<HashMap<[u8; 32], SigningKey>>,
    capacity: usize,
}

impl SigningKeyCache {
    /// The bound of [`SigningKeyCache::new`].
    pub const DEFAULT_CAPACITY: usize = 1024;

    pub fn new() -> Self {
        Self::with_capacity(Self::DEFAULT_CAPACITY)
    }

    /// A cache holding at most `capacity` keys (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        SigningKeyCache { keys: Mutex::new(HashMap::new()), capacity: capacity.max(1) }
    }

    /// The signing key of `secret` for `scope`: cached, or derived and remembered.
    pub fn signing_key(&self, secret: &[u8], scope: &CredentialScope) -> SigningKey {
        let id = fingerprint(secret, scope);
        if let Some(key) = self.lock().get(&id) {
            return key.clone();
        }
        // Derived outside the lock: two threads may both derive the same key, which is
        // harmless, while holding the lock would serialize every miss.
        let key = signing_key(secret, scope);
        let mut keys = self.lock();
        if keys.len() >= self.capacity {
            keys.clear();
        }
        keys.insert(id, key.clone());
        key
    }

    /// How many keys are held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], SigningKey>> {
        // A panic while holding the lock cannot leave the map inconsistent (every
        // operation on it is a single call), so a poisoned lock is still usable.
        self.keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Default for SigningKeyCache {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for SigningKeyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKeyCache({} keys: ***)", self.len())
    }
}

/// Identifies a (secret, scope) pair without keeping the secret: SHA-256 over the
/// length-prefixed parts, so no two different pairs share an encoding.
fn fingerprint(secret: &[u8], scope: &CredentialScope) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for part in [secret, scope.date.as_bytes(), scope.region.as_bytes(), scope.service.as_bytes()] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
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
        let Some(bytes) = unhex32(provided) else { return false };
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
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &key.0[..]), string_to_sign.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    Signature(out)
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(2 * bytes.len());
    push_hex(&mut out, bytes);
    out
}

/// Appends lower-case hex of `bytes` to `out`.
fn push_hex(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        out.push(LOWER_HEX[usize::from(b >> 4)] as char);
        out.push(LOWER_HEX[usize::from(b & 0xf)] as char);
    }
}

/// Decodes 64 hex digits (either case). Anything else is no signature at all; its
/// length is public, so refusing it early reveals nothing.
fn unhex32(s: &str) -> Option<[u8; 32]> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
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
        self.verify_with_key(req, &signing_key(secret, &self.authorization.scope))
    }

    /// [`Prevalidated::verify`] with the signing key taken from (or added to) `cache`.
    pub fn verify_cached(
        &self,
        req: &RequestParts<'_>,
        secret: &[u8],
        cache: &SigningKeyCache,
    ) -> Result<(), SigV4Error> {
        self.verify_with_key(req, &cache.signing_key(secret, &self.authorization.scope))
    }

    fn verify_with_key(&self, req: &RequestParts<'_>, key: &SigningKey) -> Result<(), SigV4Error> {
        let canonical = canonical_request(req, &self.authorization.signed_headers);
        let to_sign = string_to_sign(&self.amz_date, &self.authorization.scope, &canonical);
        let expected = signature(key, &to_sign);
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
    for (name, shown) in SINGLE_HEADERS {
        if req.header_values(name).nth(1).is_some() {
            return Err(SigV4Error::Incomplete(format!(
                "The request has more than one '{shown}' header; send it once."
            )));
        }
    }
    let authorization = parse_authorization(header)?;
    let amz_date = req.header("x-amz-date").ok_or_else(|| {
        incomplete(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
            header,
        )
    })?;
    let request_secs = parse_amz_date(amz_date).ok_or_else(|| {
        SigV4Error::Incomplete(format!(
            "Date must be in ISO-8601 'basic format'. Got '{}'. See http://en.wikipedia.org/wiki/ISO_8601",
            echo(amz_date)
        ))
    })?;
    let scope = &authorization.scope;
    if authorization.terminator != "aws4_request" {
        return Err(SigV4Error::InvalidSignature(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{}'. ",
            echo(&authorization.terminator)
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
            echo(&scope.region)
        )));
    }
    if scope.date != amz_date[..8] {
        return Err(SigV4Error::InvalidSignature(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}', from '{amz_date}'.",
            echo(&scope.date),
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
    for (name, shown) in MUST_SIGN_IF_PRESENT {
        let present = req.header_values(name).next().is_some();
        if present && !authorization.signed_headers.iter().any(|h| h == name) {
            return Err(incomplete(
                &format!("'{shown}' must be a 'SignedHeader' in the AWS Authorization."),
                header,
            ));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    // AWS's published example secret and the `get-vanilla` vector of its test suite.
    const SECRET: &[u8] = b"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const OTHER_SECRET: &[u8] = b"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEZ";
    const DATE: &str = "20150830T123600Z";
    const GET_VANILLA: &str = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";

    fn scope(region: &str) -> CredentialScope {
        CredentialScope {
            date: "20150830".into(),
            region: region.into(),
            service: "service".into(),
        }
    }

    fn get_vanilla_headers(signature: &str) -> Vec<(&'static str, Vec<u8>)> {
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature={signature}"
        );
        vec![
            ("Host", b"example.amazonaws.com".to_vec()),
            ("X-Amz-Date", DATE.as_bytes().to_vec()),
            ("Authorization", auth.into_bytes()),
        ]
    }

    /// Prevalidates `get-vanilla` carrying `signature` and verifies it with `secret`
    /// through `cache`.
    fn verify_get_vanilla(
        signature: &str,
        secret: &[u8],
        cache: &SigningKeyCache,
    ) -> Result<(), SigV4Error> {
        let owned = get_vanilla_headers(signature);
        let headers: Vec<(&str, &[u8])> = owned.iter().map(|(n, v)| (*n, v.as_slice())).collect();
        let req =
            RequestParts { method: "GET", path: "/", query: "", headers: &headers, body: b"" };
        let expect = Expectation {
            service: "service",
            now_secs: crate::time::parse_amz_date(DATE).unwrap(),
            region_is_valid: &|_| true,
        };
        prevalidate(&req, &expect)?.verify_cached(&req, secret, cache)
    }

    #[test]
    fn a_cached_signing_key_verifies_the_published_vector_on_every_use() {
        let cache = SigningKeyCache::new();
        verify_get_vanilla(GET_VANILLA, SECRET, &cache).unwrap();
        assert_eq!(cache.len(), 1);
        verify_get_vanilla(GET_VANILLA, SECRET, &cache).unwrap();
        assert_eq!(cache.len(), 1, "the second request reuses the derived key");
        let flipped = format!("{}0", &GET_VANILLA[..63]);
        assert_eq!(
            verify_get_vanilla(&flipped, SECRET, &cache),
            Err(SigV4Error::SignatureMismatch)
        );
    }

    #[test]
    fn a_different_secret_never_uses_the_key_cached_for_another() {
        let cache = SigningKeyCache::new();
        verify_get_vanilla(GET_VANILLA, SECRET, &cache).unwrap();
        // Same access key id, scope and signature, but the key now has another secret:
        // the cached key must not verify it.
        assert_eq!(
            verify_get_vanilla(GET_VANILLA, OTHER_SECRET, &cache),
            Err(SigV4Error::SignatureMismatch)
        );
        assert_eq!(cache.len(), 2);
        let mine = cache.signing_key(SECRET, &scope("us-east-1"));
        let theirs = cache.signing_key(OTHER_SECRET, &scope("us-east-1"));
        assert_ne!(mine.0[..], theirs.0[..]);
    }

    #[test]
    fn cached_keys_equal_derived_ones_per_scope_and_the_cache_stays_bounded() {
        let cache = SigningKeyCache::with_capacity(3);
        for region in ["us-east-1", "eu-west-1", "us-east-1", "ap-south-1"] {
            let cached = cache.signing_key(SECRET, &scope(region));
            assert_eq!(cached.0[..], signing_key(SECRET, &scope(region)).0[..], "{region}");
        }
        assert_eq!(cache.len(), 3);
        // A fourth distinct scope empties the full map before it is added.
        cache.signing_key(SECRET, &scope("sa-east-1"));
        assert_eq!(cache.len(), 1);
        assert_eq!(format!("{cache:?}"), "SigningKeyCache(1 keys: ***)");
        assert_eq!(format!("{:?}", cache.signing_key(SECRET, &scope("sa-east-1"))), "***");
    }

    #[test]
    fn fingerprints_do_not_confuse_parts_that_concatenate_alike() {
        let a = CredentialScope { date: "2015".into(), region: "0830".into(), service: "s".into() };
        let b = CredentialScope { date: "20150".into(), region: "830".into(), service: "s".into() };
        assert_ne!(fingerprint(SECRET, &a), fingerprint(SECRET, &b));
        assert_ne!(fingerprint(SECRET, &a), fingerprint(OTHER_SECRET, &a));
    }

    #[test]
    fn canonical_paths_and_header_values_are_built_as_sigv4_defines() {
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/"), "/");
        assert_eq!(canonical_uri("/a/./b/../c/"), "/a/c/");
        assert_eq!(canonical_uri("/.."), "/");
        assert_eq!(canonical_uri("//x"), "//x");
        assert_eq!(canonical_uri("/a b/%41"), "/a%20b/%2541");
        let mut out = String::new();
        push_canonical_header_value(&mut out, b"  a   b \n \n\tc  ");
        assert_eq!(out, "a b,c");
        let headers: Vec<(&str, &[u8])> = vec![("X-A", b" 1 "), ("x-a", b""), ("x-a", b"2")];
        let req =
            RequestParts { method: "POST", path: "/", query: "", headers: &headers, body: b"" };
        let canonical = canonical_request(&req, &["x-a".to_string()]);
        assert!(canonical.starts_with("POST\n/\n\nx-a:1,,2\n\nx-a\n"), "{canonical}");
    }

    /// A signed JSON 1.1 request as botocore builds it: POST / with the given headers
    /// (besides the date and Authorization), signed over `signed`.
    fn signed_json(
        extra: &[(&'static str, &'static str)],
        signed: &[&str],
    ) -> Vec<(&'static str, Vec<u8>)> {
        let mut owned: Vec<(&'static str, Vec<u8>)> =
            vec![("Host", b"example.amazonaws.com".to_vec()), ("X-Amz-Date", DATE.into())];
        owned.extend(extra.iter().map(|(n, v)| (*n, v.as_bytes().to_vec())));
        let signed: Vec<String> = signed.iter().map(|s| s.to_string()).collect();
        let headers: Vec<(&str, &[u8])> = owned.iter().map(|(n, v)| (*n, v.as_slice())).collect();
        let req =
            RequestParts { method: "POST", path: "/", query: "", headers: &headers, body: b"{}" };
        let auth = authorization_header(&req, "AKIDEXAMPLE", SECRET, &scope("us-east-1"), &signed);
        owned.push(("Authorization", auth.into_bytes()));
        owned
    }

    fn check(owned: &[(&str, Vec<u8>)]) -> Result<(), SigV4Error> {
        let headers: Vec<(&str, &[u8])> = owned.iter().map(|(n, v)| (*n, v.as_slice())).collect();
        let req =
            RequestParts { method: "POST", path: "/", query: "", headers: &headers, body: b"{}" };
        let expect = Expectation {
            service: "service",
            now_secs: crate::time::parse_amz_date(DATE).unwrap(),
            region_is_valid: &|_| true,
        };
        prevalidate(&req, &expect)?.verify(&req, SECRET)
    }

    fn incomplete_message(r: Result<(), SigV4Error>) -> String {
        match r {
            Err(SigV4Error::Incomplete(m)) => m,
            other => panic!("expected IncompleteSignature, got {other:?}"),
        }
    }

    const TARGET: (&str, &str) = ("X-Amz-Target", "secretsmanager.ListSecrets");
    const JSON: (&str, &str) = ("Content-Type", "application/x-amz-json-1.1");

    #[test]
    fn the_target_and_content_type_must_be_signed_when_present() {
        let all = ["content-type", "host", "x-amz-date", "x-amz-target"];
        check(&signed_json(&[JSON, TARGET], &all)).unwrap();
        let m = incomplete_message(check(&signed_json(&[JSON, TARGET], &["host", "x-amz-date"])));
        assert!(m.starts_with("'X-Amz-Target' must be a 'SignedHeader'"), "{m}");
        let m = incomplete_message(check(&signed_json(
            &[JSON, TARGET],
            &["host", "x-amz-date", "x-amz-target"],
        )));
        assert!(m.starts_with("'Content-Type' must be a 'SignedHeader'"), "{m}");
        // A request without them (STS's query protocol has no target) needs neither signed.
        check(&signed_json(&[], &["host", "x-amz-date"])).unwrap();
    }

    #[test]
    fn repeated_deciding_headers_and_parameters_are_refused() {
        let all = ["content-type", "host", "x-amz-date", "x-amz-target"];
        for (name, value) in [
            ("x-amz-target", "secretsmanager.DeleteSecret"),
            ("X-Amz-Date", DATE),
            ("authorization", "AWS4-HMAC-SHA256 x"),
            ("X-Amz-Security-Token", "t"),
        ] {
            let mut owned = signed_json(&[JSON, TARGET], &all);
            owned.push((name, value.as_bytes().to_vec()));
            if name == "X-Amz-Security-Token" {
                owned.push((name, value.as_bytes().to_vec()));
            }
            let m = incomplete_message(check(&owned));
            assert!(m.contains("more than one"), "{m}");
        }
        for part in ["Signature", "Credential", "SignedHeaders"] {
            let mut owned = signed_json(&[JSON, TARGET], &all);
            let auth = String::from_utf8(owned.pop().unwrap().1).unwrap();
            let value = auth.split(&format!("{part}=")).nth(1).unwrap().split(',').next().unwrap();
            let doubled = format!("{auth}, {part}={value}");
            owned.push(("Authorization", doubled.into_bytes()));
            let m = incomplete_message(check(&owned));
            assert!(m.contains(&format!("duplicate '{part}' parameter")), "{m}");
        }
    }

    #[test]
    fn a_non_ascii_date_is_incomplete_not_a_panic() {
        let mut owned = signed_json(&[JSON, TARGET], &["content-type", "host", "x-amz-date"]);
        owned[1].1 = "20261é5T000000Z".as_bytes().to_vec();
        let m = incomplete_message(check(&owned));
        assert!(m.starts_with("Date must be in ISO-8601 'basic format'."), "{m}");
    }

    #[test]
    fn echoed_values_are_bounded() {
        let huge = format!("AWS4-HMAC-SHA256 Junk={}", "é".repeat(300_000));
        let m = incomplete_message(Err(parse_authorization(&huge).unwrap_err()));
        assert!(m.chars().count() < MAX_ECHO_CHARS + 200, "{}", m.len());
        assert!(m.ends_with("..."));
        assert_eq!(echo("short"), "short");
        let exact = "x".repeat(MAX_ECHO_CHARS);
        assert_eq!(echo(&exact), exact);
        let date = format!("{}Z", "9".repeat(100_000));
        let mut owned = signed_json(&[], &["host", "x-amz-date"]);
        owned[1].1 = date.into_bytes();
        assert!(incomplete_message(check(&owned)).len() < MAX_ECHO_CHARS + 200);
    }

    proptest::proptest! {
        /// Hostile header values never panic the checks that run before authentication.
        #[test]
        fn arbitrary_headers_never_panic(
            auth in "\\PC{0,300}",
            date in "\\PC{0,24}",
            target in proptest::option::of("\\PC{0,40}"),
            extra in proptest::collection::vec(proptest::num::u8::ANY, 0..40),
        ) {
            let mut owned: Vec<(&str, Vec<u8>)> = vec![
                ("Host", b"h".to_vec()),
                ("X-Amz-Date", date.into_bytes()),
                ("Authorization", auth.into_bytes()),
                ("X-Raw", extra),
            ];
            if let Some(t) = target {
                owned.push(("X-Amz-Target", t.into_bytes()));
            }
            let _ = check(&owned);
        }

        /// Well-formed prefixes with hostile tails reach the later checks too.
        #[test]
        fn arbitrary_credentials_and_dates_never_panic(
            cred in "[A-Z0-9]{0,4}(/\\PC{0,12}){0,6}",
            signed in "\\PC{0,40}",
            sig in "\\PC{0,70}",
            // Mostly 16 bytes with `T` and `Z` in place around a multi-byte character.
            date in "[0-9]{3,7}[\\u{80}-\\u{7ff}][0-9]{0,3}T[0-9]{5,6}Z",
        ) {
            let auth = format!("AWS4-HMAC-SHA256 Credential={cred}, SignedHeaders={signed}, Signature={sig}");
            let owned: Vec<(&str, Vec<u8>)> = vec![
                ("Host", b"h".to_vec()),
                ("X-Amz-Date", date.into_bytes()),
                ("Authorization", auth.into_bytes()),
            ];
            let _ = check(&owned);
            let _ = parse_amz_date_str_for_test(&owned[1].1);
        }
    }

    fn parse_amz_date_str_for_test(raw: &[u8]) -> Option<i64> {
        std::str::from_utf8(raw).ok().and_then(crate::time::parse_amz_date)
    }
}
