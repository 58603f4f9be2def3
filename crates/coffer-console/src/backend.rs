//! How the console calls an operation: as the signed-in principal, through the server's
//! one request path (authentication, validation, authorization, audit), never the store.
//!
//! Until `coffer_server::pipeline` exists, the console builds the same SigV4-signed request
//! an SDK would send with the session's credentials and hands it to the API router in
//! process. Every decision the API makes is therefore made for console calls too; the
//! request carries the browser's address, TLS state and a `coffer-console` user agent, so
//! the audit event tells a console call from an SDK call.

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use coffer_auth::sigv4::{CredentialScope, RequestParts, authorization_header};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use tower_service::Service;
use zeroize::Zeroizing;

/// The user agent of every console call (CloudTrail shows a console call's agent).
pub const USER_AGENT: &str = "AWS Internal coffer-console";

/// An AWS error as the API answered it: code and message, shown in the page as is.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn internal() -> Self {
        ApiError {
            code: "InternalServiceError".into(),
            message: "An error occurred on the server side.".into(),
        }
    }
}

/// The credentials a session calls with. The secret is kept only in memory, zeroized on drop.
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: Zeroizing<String>,
    pub region: String,
}

/// Where the browser is, for the request's source IP and `aws:SecureTransport`.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    pub addr: SocketAddr,
    pub tls: bool,
}

/// Calls operations on the API router of the same process.
#[derive(Clone)]
pub struct Backend {
    api: axum::Router,
}

impl Backend {
    pub fn new(app: Arc<coffer_server::App>) -> Self {
        Backend { api: coffer_server::http::router(app) }
    }

    /// Calls `target` (an `X-Amz-Target` value) with the JSON `body`; the JSON answer or
    /// the AWS error.
    pub async fn call(
        &self,
        creds: &Credentials,
        origin: Origin,
        target: &str,
        body: &Value,
    ) -> Result<Value, ApiError> {
        let service = signing_name(target);
        let payload = Zeroizing::new(serde_json::to_vec(body).map_err(|_| ApiError::internal())?);
        let (status, answer) = self
            .send(creds, origin, service, Some(target), "application/x-amz-json-1.1", &payload)
            .await?;
        let answer = Zeroizing::new(answer);
        let json: Value = serde_json::from_slice(&answer).map_err(|_| ApiError::internal())?;
        if status == 200 {
            return Ok(json);
        }
        let code = json.get("__type").and_then(Value::as_str).unwrap_or("InternalServiceError");
        let code = code.rsplit('#').next().unwrap_or(code).to_string();
        let message = json
            .get("Message")
            .or_else(|| json.get("message"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        Err(ApiError { code, message })
    }

    /// STS GetCallerIdentity with `creds`: checks console credentials exactly as the API
    /// checks an SDK's, and answers the caller's ARN and account.
    pub async fn caller_identity(
        &self,
        creds: &Credentials,
        origin: Origin,
    ) -> Result<(String, String), ApiError> {
        let body = b"Action=GetCallerIdentity&Version=2011-06-15";
        let (status, answer) = self
            .send(creds, origin, "sts", None, "application/x-www-form-urlencoded", body)
            .await?;
        let text = String::from_utf8_lossy(&answer);
        if status != 200 {
            let code = xml_field(&text, "Code").unwrap_or("AccessDenied").to_string();
            let message = xml_field(&text, "Message").unwrap_or("").to_string();
            return Err(ApiError { code, message });
        }
        match (xml_field(&text, "Arn"), xml_field(&text, "Account")) {
            (Some(arn), Some(account)) => Ok((arn.to_string(), account.to_string())),
            _ => Err(ApiError::internal()),
        }
    }

    async fn send(
        &self,
        creds: &Credentials,
        origin: Origin,
        service: &str,
        target: Option<&str>,
        content_type: &str,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), ApiError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let amz_date = coffer_auth::time::format_amz_date(now);
        let host = "coffer-console.internal";
        let mut headers: Vec<(&str, Vec<u8>)> = vec![
            ("content-type", content_type.as_bytes().to_vec()),
            ("host", host.as_bytes().to_vec()),
            ("x-amz-date", amz_date.as_bytes().to_vec()),
        ];
        if let Some(target) = target {
            headers.push(("x-amz-target", target.as_bytes().to_vec()));
        }
        let signed: Vec<String> = headers.iter().map(|(n, _)| n.to_string()).collect();
        let borrowed: Vec<(&str, &[u8])> =
            headers.iter().map(|(n, v)| (*n, v.as_slice())).collect();
        let parts = RequestParts { method: "POST", path: "/", query: "", headers: &borrowed, body };
        let scope = CredentialScope {
            date: amz_date[..8].to_string(),
            region: creds.region.clone(),
            service: service.to_string(),
        };
        let authorization = authorization_header(
            &parts,
            &creds.access_key_id,
            creds.secret_access_key.as_bytes(),
            &scope,
            &signed,
        );
        let mut builder = Request::builder().method("POST").uri("/");
        for (name, value) in &headers {
            builder = builder.header(*name, value.as_slice());
        }
        let mut request = builder
            .header("authorization", authorization)
            .header("user-agent", USER_AGENT)
            .body(Body::from(body.to_vec()))
            .map_err(|_| ApiError::internal())?;
        request.extensions_mut().insert(ConnectInfo(origin.addr));
        if origin.tls {
            request.extensions_mut().insert(coffer_server::connections::SecureTransport);
        }
        let mut api = self.api.clone();
        let response = api.call(request).await.map_err(|_| ApiError::internal())?;
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 16 * 1024 * 1024)
            .await
            .map_err(|_| ApiError::internal())?;
        Ok((status, bytes.to_vec()))
    }
}

/// The SigV4 service name of a target.
fn signing_name(target: &str) -> &'static str {
    if target.starts_with("secretsmanager.") {
        "secretsmanager"
    } else if target.starts_with("TrentService.") {
        "kms"
    } else {
        "cloudtrail"
    }
}

/// The text of the first `<name>...</name>` element of a small XML answer.
fn xml_field<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some(&xml[start..end])
}

/// CloudTrail's LookupEvents target.
pub const LOOKUP_EVENTS: &str =
    "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents";
