//! Invoking rotation functions through the Lambda Invoke API of a configurable endpoint
//! (AWS Lambda, LocalStack, or a local runner), over `http://` or `https://`: one synchronous
//! `POST /2015-03-31/functions/{name}/invocations` per step, signed with SigV4 for service
//! `lambda`. A step failed when the call fails or answers `X-Amz-Function-Error`.
//!
//! An https endpoint's certificate is checked against the CA certificates of `--lambda-ca`
//! when given, else against the system's roots, and must name the endpoint's host.

use crate::App;
use coffer_auth::sigv4::{self, CredentialScope, RequestParts};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use zeroize::Zeroizing;

/// Where rotation functions are invoked, and the credentials to sign for it.
#[derive(Clone)]
pub struct LambdaSettings {
    /// `http://host[:port]` or `https://host[:port]` (a path prefix is kept).
    pub endpoint: String,
    /// For an https endpoint: the TLS client configuration ([`tls_config`]).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub access_key_id: String,
    pub secret_access_key: Zeroizing<String>,
    /// The signing region when the function's ARN names none.
    pub region: String,
    /// How long one invocation may take.
    pub timeout: Duration,
}

impl std::fmt::Debug for LambdaSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LambdaSettings")
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"***")
            .finish()
    }
}

impl LambdaSettings {
    /// Checks the endpoint's form (`http://` or `https://`), and that an https endpoint has
    /// its TLS configuration.
    pub fn check(&self) -> Result<(), String> {
        let endpoint = Endpoint::parse(&self.endpoint)?;
        if endpoint.tls && self.tls.is_none() {
            return Err(format!("the Lambda endpoint {} needs a TLS configuration", self.endpoint));
        }
        Ok(())
    }
}

/// The TLS client configuration for an https Lambda endpoint: certificates are checked
/// against the PEM CA certificates in `ca_file` when given, else against the system's roots.
pub fn tls_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem =
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| format!("{} is not PEM: {e}", path.display()))?;
                roots.add(cert).map_err(|e| {
                    format!("{} holds an unusable certificate: {e}", path.display())
                })?;
            }
            if roots.is_empty() {
                return Err(format!("{} holds no certificate", path.display()));
            }
        }
        None => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A Lambda endpoint URL, taken apart.
#[derive(Debug, PartialEq, Eq)]
struct Endpoint {
    tls: bool,
    /// The Host header: the authority as written (no default port added, as SDKs sign it).
    host_header: String,
    /// The host alone (the TLS server name).
    host: String,
    /// Where to connect: host:port, the scheme's default port when none is written.
    address: String,
    /// A path prefix, without a trailing slash.
    prefix: String,
}

impl Endpoint {
    fn parse(endpoint: &str) -> Result<Endpoint, String> {
        let (tls, rest) = if let Some(rest) = endpoint.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = endpoint.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(format!(
                "the Lambda endpoint {endpoint} must be an http:// or https:// URL"
            ));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        // host[:port], or [v6]:port
        let (host, port) = match authority.rfind(':') {
            Some(i) if !authority[i..].contains(']') => {
                (&authority[..i], Some(&authority[i + 1..]))
            }
            _ => (authority, None),
        };
        if host.is_empty() {
            return Err(format!("the Lambda endpoint {endpoint} names no host"));
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| format!("the Lambda endpoint {endpoint} has a bad port"))?,
            None if tls => 443,
            None => 80,
        };
        Ok(Endpoint {
            tls,
            host_header: authority.to_string(),
            host: host.trim_start_matches('[').trim_end_matches(']').to_string(),
            address: format!("{host}:{port}"),
            prefix: path.to_string(),
        })
    }
}

/// Percent-encodes a path segment (unreserved characters kept), as SDKs encode a function ARN.
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The region a function ARN names, if it is an ARN.
fn region_of(function: &str) -> Option<&str> {
    let mut parts = function.split(':');
    (parts.next() == Some("arn")).then_some(())?;
    parts.nth(2).filter(|r| !r.is_empty())
}

/// What an invocation answered.
struct Answer {
    status: u16,
    function_error: bool,
}

async fn invoke(
    settings: &LambdaSettings,
    function: &str,
    payload: Vec<u8>,
    dry_run: bool,
) -> Result<Answer, String> {
    let endpoint = Endpoint::parse(&settings.endpoint)?;
    let authority = endpoint.host_header.clone();
    let path = format!(
        "{}/2015-03-31/functions/{}/invocations",
        endpoint.prefix,
        encode_segment(function)
    );
    let now = crate::clock::now_ms() / 1000;
    let amz_date = coffer_auth::time::format_amz_date(now);
    let region = region_of(function).unwrap_or(&settings.region).to_string();
    let scope =
        CredentialScope { date: amz_date[..8].to_string(), region, service: "lambda".into() };
    let invocation_type = if dry_run { "DryRun" } else { "RequestResponse" };
    let headers: [(&str, &[u8]); 3] = [
        ("host", authority.as_bytes()),
        ("x-amz-date", amz_date.as_bytes()),
        ("x-amz-invocation-type", invocation_type.as_bytes()),
    ];
    let signed: Vec<String> = headers.iter().map(|(n, _)| n.to_string()).collect();
    let parts =
        RequestParts { method: "POST", path: &path, query: "", headers: &headers, body: &payload };
    let canonical = sigv4::canonical_request(&parts, &signed);
    let to_sign = sigv4::string_to_sign(&amz_date, &scope, &canonical);
    let key = sigv4::signing_key(settings.secret_access_key.as_bytes(), &scope);
    let signature = sigv4::signature(&key, &to_sign).to_hex();
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={}, Signature={signature}",
        settings.access_key_id,
        signed.join(";")
    );
    let request = hyper::Request::post(path)
        .header("host", &authority)
        .header("x-amz-date", &amz_date)
        .header("x-amz-invocation-type", invocation_type)
        .header("authorization", authorization)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(payload)))
        .map_err(|e| e.to_string())?;
    let call = async {
        let stream =
            tokio::net::TcpStream::connect(&endpoint.address).await.map_err(|e| e.to_string())?;
        if !endpoint.tls {
            return exchange(stream, request).await;
        }
        let config = settings.tls.clone().ok_or("no TLS configuration for an https endpoint")?;
        let name = ServerName::try_from(endpoint.host.clone())
            .map_err(|e| format!("the Lambda endpoint's host is not a TLS server name: {e}"))?;
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, stream)
            .await
            .map_err(|e| format!("TLS with the Lambda endpoint failed: {e}"))?;
        exchange(stream, request).await
    };
    tokio::time::timeout(settings.timeout, call)
        .await
        .map_err(|_| format!("the invocation took longer than {:?}", settings.timeout))?
}

/// Sends `request` over `io` (plain TCP or TLS) and reads the answer.
async fn exchange<IO>(io: IO, request: hyper::Request<Full<Bytes>>) -> Result<Answer, String>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let function_error = response.headers().contains_key("x-amz-function-error");
    // The payload is read and dropped: a function's answer may quote a value.
    let _ = response.into_body().collect().await.map_err(|e| e.to_string())?;
    Ok(Answer { status, function_error })
}

/// Runs one rotation step; `Err` says why it failed (for the log, never the response).
pub async fn invoke_step(app: &App, function: &str, event: Vec<u8>) -> Result<(), String> {
    let settings = app.config.lambda.clone().ok_or("no Lambda endpoint is configured")?;
    let answer = invoke(&settings, function, event, false).await?;
    if answer.function_error {
        return Err("the function answered X-Amz-Function-Error".into());
    }
    if !(200..300).contains(&answer.status) {
        return Err(format!("the Lambda endpoint answered HTTP {}", answer.status));
    }
    Ok(())
}

/// Whether `function` can be invoked (a DryRun invocation succeeds). Called from a handler,
/// which may run on an async worker: the call runs on a thread of its own.
pub fn can_invoke(app: &App, function: &str) -> bool {
    let Some(settings) = app.config.lambda.clone() else { return false };
    let function = function.to_string();
    std::thread::scope(|s| {
        s.spawn(|| {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return false;
            };
            rt.block_on(async {
                match invoke(&settings, &function, Vec::new(), true).await {
                    Ok(a) => (200..300).contains(&a.status) && !a.function_error,
                    Err(e) => {
                        tracing::warn!(function = %function, error = %e, "rotation function cannot be invoked");
                        false
                    }
                }
            })
        })
        .join()
        .unwrap_or(false)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_arns_are_read() {
        let e = Endpoint::parse("http://127.0.0.1:9000").unwrap();
        assert_eq!(
            (e.tls, e.address.as_str(), e.host_header.as_str()),
            (false, "127.0.0.1:9000", "127.0.0.1:9000")
        );
        assert_eq!(e.prefix, "");
        let e = Endpoint::parse("http://lambda/x/").unwrap();
        assert_eq!(
            (e.address.as_str(), e.host_header.as_str(), e.prefix.as_str()),
            ("lambda:80", "lambda", "/x")
        );
        let e = Endpoint::parse("https://lambda.us-east-1.amazonaws.com").unwrap();
        assert!(e.tls);
        assert_eq!(e.address, "lambda.us-east-1.amazonaws.com:443");
        assert_eq!(e.host_header, "lambda.us-east-1.amazonaws.com");
        assert_eq!(e.host, "lambda.us-east-1.amazonaws.com");
        let e = Endpoint::parse("https://[::1]:8443/p").unwrap();
        assert_eq!(
            (e.host.as_str(), e.address.as_str(), e.prefix.as_str()),
            ("::1", "[::1]:8443", "/p")
        );
        for bad in ["ftp://x", "lambda:80", "https://", "http://:80", "https://h:notaport"] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            region_of("arn:aws:lambda:eu-west-1:123456789012:function:f"),
            Some("eu-west-1")
        );
        assert_eq!(region_of("f"), None);
        assert_eq!(
            encode_segment("arn:aws:lambda:x:1:function:f"),
            "arn%3Aaws%3Alambda%3Ax%3A1%3Afunction%3Af"
        );
    }
}
