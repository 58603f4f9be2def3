//! The HTTP side of AWS JSON 1.1: `POST /` with `X-Amz-Target`, JSON bodies,
//! `x-amzn-RequestId` on every response and errors as `{"__type", "Message"}`.

use crate::dispatch::dispatch;
use crate::{App, RequestContext};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use coffer_core::{AwsError, ErrorCode, Scope};
use coffer_wire::model::ServiceModel;
use coffer_wire::protocol::{CONTENT_TYPE, Service, error_body, parse_target};
use coffer_wire::validate::validate_input;
use std::sync::Arc;
use std::time::Instant;
use zeroize::Zeroize;

/// The router: every path and method goes to the one JSON 1.1 handler.
pub fn router(app: Arc<App>) -> Router {
    Router::new().fallback(handle).with_state(app)
}

async fn handle(State(app): State<Arc<App>>, request: Request) -> Response {
    let started = Instant::now();
    let request_id = uuid::Uuid::new_v4().to_string();
    let target = header_str(request.headers(), "x-amz-target").unwrap_or("").to_string();
    let result = answer(&app, request, &request_id).await;
    let (status, body) = match result {
        Ok(body) => (StatusCode::OK, body),
        Err(e) => {
            let status =
                StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
            (status, error_body(&e))
        }
    };
    tracing::info!(
        target: "coffer::request",
        %request_id,
        operation = %target,
        status = status.as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    Response::builder()
        .status(status)
        .header("x-amzn-RequestId", request_id)
        .header(header::CONTENT_TYPE, CONTENT_TYPE)
        .body(Body::from(body))
        .expect("static response parts are valid")
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn answer(app: &Arc<App>, request: Request, request_id: &str) -> Result<Vec<u8>, AwsError> {
    let ctx = caller(request.headers(), &app.config.default_account, request_id)?;
    if request.method() != Method::POST {
        return Err(AwsError::new(ErrorCode::UnknownOperation, "Requests must be POST /."));
    }
    let target = header_str(request.headers(), "x-amz-target").ok_or_else(|| {
        AwsError::new(ErrorCode::UnknownOperation, "Missing X-Amz-Target header.")
    })?;
    let (service, op) = parse_target(target)?;
    let model = match service {
        Service::SecretsManager => ServiceModel::secretsmanager(),
        Service::Kms => ServiceModel::kms(),
    };
    if !model.has_operation(op) {
        return Err(AwsError::new(
            ErrorCode::UnknownOperation,
            format!("Unknown operation {target}"),
        ));
    }
    let op = op.to_string();
    let limit = app.config.max_body_bytes;
    let bytes = axum::body::to_bytes(request.into_body(), limit).await.map_err(|_| {
        AwsError::new(
            ErrorCode::RequestEntityTooLarge,
            format!("The request body exceeds the limit of {limit} bytes."),
        )
    })?;
    let mut buffer = bytes.to_vec();
    drop(bytes);
    let parsed = if buffer.iter().all(|b| b.is_ascii_whitespace()) {
        Ok(serde_json::Value::Object(Default::default()))
    } else {
        serde_json::from_slice::<serde_json::Value>(&buffer)
    };
    // The body may hold a secret value: wipe our copy as soon as it is parsed.
    buffer.zeroize();
    let body = parsed.map_err(|e| {
        AwsError::new(
            ErrorCode::Serialization,
            format!("The request body is not valid JSON ({}).", e.classify_message()),
        )
    })?;
    validate_input(model, &op, &body)?;
    let app = app.clone();
    tokio::task::spawn_blocking(move || dispatch(&app, &ctx, service, &op, body)).await.map_err(
        |e| {
            tracing::error!(error = %e, "handler panicked");
            AwsError::internal()
        },
    )?
}

/// Reads the caller's access key and region from the SigV4 `Authorization` header.
///
/// Signatures are not verified here yet: any access key is accepted. A 12-digit
/// access key id is taken as the account id, any other maps to the default account.
pub fn caller(
    headers: &HeaderMap,
    default_account: &str,
    request_id: &str,
) -> Result<RequestContext, AwsError> {
    let auth = header_str(headers, "authorization").ok_or_else(|| {
        AwsError::new(ErrorCode::MissingAuthenticationToken, "Missing Authentication Token")
    })?;
    let incomplete = |what: &str| {
        AwsError::new(
            ErrorCode::IncompleteSignature,
            format!(
                "Authorization header requires {what}. Authorization={}",
                redact_authorization(auth)
            ),
        )
    };
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or_else(|| incomplete("the AWS4-HMAC-SHA256 algorithm"))?;
    let credential = rest
        .split(',')
        .map(str::trim)
        .find_map(|part| part.strip_prefix("Credential="))
        .ok_or_else(|| incomplete("'Credential' parameter"))?;
    let parts: Vec<&str> = credential.split('/').collect();
    if parts.len() != 5 || parts[0].is_empty() || parts[2].is_empty() || parts[4] != "aws4_request"
    {
        return Err(incomplete(
            "a well-formed 'Credential' parameter (<key>/<date>/<region>/<service>/aws4_request)",
        ));
    }
    let access_key_id = parts[0].to_string();
    let account = if access_key_id.len() == 12 && access_key_id.bytes().all(|b| b.is_ascii_digit())
    {
        access_key_id.clone()
    } else {
        default_account.to_string()
    };
    Ok(RequestContext {
        scope: Scope::new(account, parts[2]),
        access_key_id,
        request_id: request_id.to_string(),
    })
}

/// The algorithm and credential of an Authorization header, without the signature.
fn redact_authorization(auth: &str) -> String {
    auth.split(',').next().unwrap_or("").chars().take(200).collect()
}

trait ClassifyMessage {
    fn classify_message(&self) -> &'static str;
}

impl ClassifyMessage for serde_json::Error {
    fn classify_message(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Eof => "unexpected end of input",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected data",
            serde_json::error::Category::Io => "read error",
        }
    }
}
