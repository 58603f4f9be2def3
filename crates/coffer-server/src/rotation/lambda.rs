//! Invoking rotation functions through the Lambda Invoke API of a configurable endpoint
//! (AWS Lambda behind a plain-HTTP proxy, LocalStack, or a local runner): one synchronous
//! `POST /2015-03-31/functions/{name}/invocations` per step, signed with SigV4 for service
//! `lambda`. A step failed when the call fails or answers `X-Amz-Function-Error`.

use crate::App;
use coffer_auth::sigv4::{self, CredentialScope, RequestParts};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use std::time::Duration;
use zeroize::Zeroizing;

/// Where rotation functions are invoked, and the credentials to sign for it.
#[derive(Clone)]
pub struct LambdaSettings {
    /// `http://host:port` (a path prefix is kept).
    pub endpoint: String,
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
    /// Checks the endpoint's form: only `http://` is supported.
    pub fn check(&self) -> Result<(), String> {
        split_endpoint(&self.endpoint).map(|_| ())
    }
}

/// (host:port, path prefix) of an `http://` endpoint.
fn split_endpoint(endpoint: &str) -> Result<(String, String), String> {
    let rest = endpoint.strip_prefix("http://").ok_or_else(|| {
        format!(
            "the Lambda endpoint {endpoint} must be an http:// URL (https is not supported yet)"
        )
    })?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if authority.is_empty() {
        return Err(format!("the Lambda endpoint {endpoint} names no host"));
    }
    let authority =
        if authority.contains(':') { authority.to_string() } else { format!("{authority}:80") };
    Ok((authority, path.to_string()))
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
    let (authority, prefix) = split_endpoint(&settings.endpoint)?;
    let path = format!("{prefix}/2015-03-31/functions/{}/invocations", encode_segment(function));
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
        let stream = tokio::net::TcpStream::connect(&authority).await.map_err(|e| e.to_string())?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let function_error = response.headers().contains_key("x-amz-function-error");
        // The payload is read and dropped: a function's answer may quote a value.
        let _ = response.into_body().collect().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(Answer { status, function_error })
    };
    tokio::time::timeout(settings.timeout, call)
        .await
        .map_err(|_| format!("the invocation took longer than {:?}", settings.timeout))?
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
        assert_eq!(
            split_endpoint("http://127.0.0.1:9000").unwrap(),
            ("127.0.0.1:9000".into(), "".into())
        );
        assert_eq!(split_endpoint("http://lambda/x/").unwrap(), ("lambda:80".into(), "/x".into()));
        assert!(split_endpoint("https://lambda.us-east-1.amazonaws.com").is_err());
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
