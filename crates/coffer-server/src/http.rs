//! The HTTP side of AWS JSON 1.1: `POST /` with `X-Amz-Target`, JSON bodies,
//! `x-amzn-RequestId` on every response and errors as `{"__type", "Message"}` (KMS: lowercase `message`).
//! Query-protocol requests (no target, a form body) are STS's, or the IAM API's when signed
//! for `iam`; they go through the same pipeline (`pipeline::call_query`).
//!
//! Without `--dev`, every request is authenticated (SigV4, `auth::authenticate`) and
//! authorized (`auth::authorize`) before its handler runs; with `--dev` any credentials
//! are accepted and only the credential scope is read.

use crate::audit::Source;
use crate::auth::RawRequest;
use crate::pipeline::{self, Caller, Credentials, Outcome};
use crate::submitted::Staged;
use crate::{App, query, sts};
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{AsHeaderName, HeaderName, HeaderValue};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use coffer_core::{AwsError, ErrorCode, Scope};
use coffer_wire::operation::{CloudTrailOp, Operation, Service};
use coffer_wire::protocol::{CONTENT_TYPE, error_body, kms_error_body, parse_target};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// The router: `GET /health` and `GET /ready` are the probes (`probes`), `GET /metrics`
/// the metrics (unless they have a listener of their own); every other path and method goes
/// to the one JSON 1.1 handler.
pub fn router(app: Arc<App>) -> Router {
    use axum::routing::get;
    let mut router = Router::new()
        .route("/health", get(crate::probes::health))
        .route("/ready", get(crate::probes::ready));
    if app.config.metrics_on_main_listener {
        router = router.route("/metrics", get(crate::metrics::serve_metrics));
    }
    router.fallback(handle).with_state(app)
}

/// Whether `request` is a call of the API: `POST /`, which no route of [`router`] matches,
/// so that its fallback, `handle`, answers it.
pub fn is_api_call<B>(request: &axum::http::Request<B>) -> bool {
    request.method() == Method::POST && request.uri().path() == "/"
}

/// Answers a call of the API as [`router`]'s fallback would, without routing it
/// (`connections::serve_with_tls`).
pub async fn api_call(
    app: Arc<App>,
    request: axum::http::Request<hyper::body::Incoming>,
) -> Response {
    handle(State(app), request.map(Body::new)).await
}

/// The router of `--metrics-listen`: the metrics and the probes, nothing else.
pub fn metrics_router(app: Arc<App>) -> Router {
    use axum::routing::get;
    Router::new()
        .route("/metrics", get(crate::metrics::serve_metrics))
        .route("/health", get(crate::probes::health))
        .route("/ready", get(crate::probes::ready))
        .with_state(app)
}

/// The header naming a JSON 1.1 call's operation. Named once: a `&str` name is parsed and
/// lowercased again on every lookup.
const X_AMZ_TARGET: HeaderName = HeaderName::from_static("x-amz-target");

/// The header every answer carries its request id in (HTTP/1 sends names in lowercase).
const X_AMZN_REQUEST_ID: HeaderName = HeaderName::from_static("x-amzn-requestid");

async fn handle(State(app): State<Arc<App>>, request: Request) -> Response {
    let started = Instant::now();
    let request_id = new_request_id();
    let target = header_str(request.headers(), &X_AMZ_TARGET).unwrap_or("").to_string();
    // The request line is off by default: its access key id is read only when it is on.
    let log_line = tracing::enabled!(target: "coffer::request", tracing::Level::INFO);
    let access_key_id = log_line
        .then(|| header_str(request.headers(), header::AUTHORIZATION).and_then(credential_key_id))
        .flatten();
    let query_protocol = target.is_empty()
        && sts::is_query_request(
            header_str(request.headers(), header::CONTENT_TYPE),
            request.uri().query().unwrap_or(""),
        );
    // Labels for the log line and the metrics: fixed names from the operation tables, never
    // the client's own string (which could carry anything, a secret name included).
    let iam_protocol = query_protocol && crate::iam_api::is_iam_request(request.headers());
    let cloudtrail = !query_protocol && coffer_wire::cloudtrail::operation(&target).is_some();
    // The operation, parsed once: its labels here, its call in `answer`.
    let parsed = (!query_protocol && !cloudtrail).then(|| parse_target(&target));
    let (service, operation) = if iam_protocol {
        ("iam", "Query")
    } else if query_protocol {
        ("sts", "Query")
    } else if cloudtrail {
        ("cloudtrail", CloudTrailOp::LookupEvents.name())
    } else {
        match &parsed {
            Some(Ok(op)) => (op.signing_name(), op.name()),
            _ => ("unknown", "Unknown"),
        }
    };
    let mut error_code = None;
    let (status, content_type, body) = if query_protocol {
        let service = if iam_protocol { Service::Iam } else { Service::Sts };
        let (status, body) = answer_query(&app, request, &request_id, service).await;
        (StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST), "text/xml", body)
    } else if let Some(parsed) = parsed {
        match answer(&app, request, &request_id, parsed).await {
            Ok(body) => (StatusCode::OK, CONTENT_TYPE, body),
            Err(e) => {
                let status =
                    StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
                error_code = Some(e.code);
                // KMS writes its message member in lowercase; Secrets Manager does not.
                let body = if service == "kms" { kms_error_body(&e) } else { error_body(&e) };
                (status, CONTENT_TYPE, body)
            }
        }
    } else {
        let (status, body) = answer_cloudtrail(&app, request, &request_id).await;
        (StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST), CONTENT_TYPE, body)
    };
    let elapsed = started.elapsed();
    crate::metrics::observe_request(service, operation, status.as_u16(), elapsed);
    // One line per request (at info; off by default, see `coffer serve --help`): who, what,
    // how it ended and how long it took. Never a body, a value or a secret's name.
    if log_line {
        let authenticated =
            status == StatusCode::OK || error_code.is_some_and(|c| !before_authentication(c));
        let principal = match (authenticated, &access_key_id) {
            (true, Some(key)) => principal_arn(&app, key).await,
            _ => None,
        };
        tracing::info!(
            target: "coffer::request",
            %request_id,
            principal = principal.as_deref().unwrap_or("-"),
            access_key_id = access_key_id.as_deref().unwrap_or("-"),
            service,
            operation,
            status = status.as_u16(),
            error = error_code.map_or("-", |c| c.as_str()),
            micros = elapsed.as_micros() as u64,
            "request"
        );
    }
    answered(status, request_id, content_type, body)
}

/// A fresh request id: a random UUID in its hyphenated lowercase form.
fn new_request_id() -> String {
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text).to_owned()
}

/// The response: `x-amzn-RequestId` and `Content-Type` (axum adds `Content-Length`), set
/// directly rather than through `Response::builder`, which parses each name and copies
/// each value.
fn answered(
    status: StatusCode,
    request_id: String,
    content_type: &'static str,
    body: Vec<u8>,
) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        X_AMZN_REQUEST_ID,
        HeaderValue::try_from(request_id).expect("a UUID is a valid header value"),
    );
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The access key id of a SigV4 `Authorization` header (not a secret: CloudTrail shows it).
fn credential_key_id(authorization: &str) -> Option<String> {
    let credential = authorization.split([' ', ',']).find_map(|p| p.strip_prefix("Credential="))?;
    let key = credential.split('/').next()?;
    (!key.is_empty() && key.len() <= 128 && key.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then(|| key.to_string())
}

/// Errors returned before the caller is authenticated: their line names no principal.
fn before_authentication(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::MissingAuthenticationToken
            | ErrorCode::IncompleteSignature
            | ErrorCode::UnrecognizedClient
            | ErrorCode::InvalidSignature
            | ErrorCode::UnknownOperation
            | ErrorCode::RequestTimeout
            | ErrorCode::RequestEntityTooLarge
    )
}

/// The ARN of the user `access_key_id` belongs to, for the request line (without `--dev`).
/// The lookup reads the store unless cached, so off the async workers where that waits.
async fn principal_arn(app: &Arc<App>, access_key_id: &str) -> Option<String> {
    app.iam.as_ref()?;
    let lookup = |app: &App, key: &str| {
        let iam = app.iam.as_ref()?;
        if key.starts_with("ASIA") {
            return iam.session_arn(app.store.as_ref(), key);
        }
        let known = iam.lookup(app.store.as_ref(), key).ok().flatten()?;
        Some(known.caller.principal.arn.clone())
    };
    if app.reads_inline() {
        return lookup(app, access_key_id);
    }
    let (app, key) = (app.clone(), access_key_id.to_string());
    tokio::task::spawn_blocking(move || lookup(&app, &key)).await.ok().flatten()
}

fn header_str(headers: &HeaderMap, name: impl AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Splits a request into the owned parts authentication needs and its body stream.
pub(crate) fn raw_parts(request: Request) -> (RawRequest, Body) {
    let (parts, body) = request.into_parts();
    let source_ip = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let raw = RawRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
            .collect(),
        source_ip,
        secure: parts.extensions.get::<crate::connections::SecureTransport>().is_some(),
    };
    (raw, body)
}

/// Reads the whole body, at most `app.config.max_body_bytes` of it, within
/// `app.config.body_timeout`: a client that stops sending half-way must not hold its
/// connection (and a file) for ever.
///
/// A body whose `Content-Length` declares more than the limit is refused before any of it
/// is read: the body is not polled, so hyper sends no `100 Continue` to a client that asked
/// for one (`Expect: 100-continue`) and the upload never starts (review 16, left: it was
/// read up to the limit first). The declared length is hyper's exact size hint; a chunked
/// body has none and is refused once it passes the limit, as before.
pub(crate) async fn read_body(app: &App, body: Body) -> Result<Vec<u8>, AwsError> {
    let limit = app.config.max_body_bytes;
    let too_large = || {
        AwsError::new(
            ErrorCode::RequestEntityTooLarge,
            format!("The request body exceeds the limit of {limit} bytes."),
        )
    };
    if axum::body::HttpBody::size_hint(&body).lower() > limit as u64 {
        return Err(too_large());
    }
    let deadline = app.config.body_timeout;
    let read = tokio::time::timeout(deadline, axum::body::to_bytes(body, limit)).await;
    let Ok(read) = read else {
        return Err(AwsError::new(
            ErrorCode::RequestTimeout,
            format!("The request body did not arrive within {} seconds.", deadline.as_secs_f64()),
        ));
    };
    let bytes = read.map_err(|_| too_large())?;
    Ok(bytes.to_vec())
}

/// Answers a JSON 1.1 call whose `X-Amz-Target` `handle` parsed as `target`.
async fn answer(
    app: &Arc<App>,
    request: Request,
    request_id: &str,
    target: Result<Operation, AwsError>,
) -> Result<Vec<u8>, AwsError> {
    // With --dev the credential scope alone says who is calling; without, the signature
    // is checked by the pipeline, once the body (which it covers) has been read.
    let dev = match &app.iam {
        None => Some(caller(request.headers(), &app.config.default_account)?),
        Some(_) => None,
    };
    if request.method() != Method::POST {
        return Err(AwsError::new(ErrorCode::UnknownOperation, "Requests must be POST /."));
    }
    header_str(request.headers(), &X_AMZ_TARGET).ok_or_else(|| {
        AwsError::new(ErrorCode::UnknownOperation, "Missing X-Amz-Target header.")
    })?;
    let op = target?;
    through_pipeline(app, request, request_id, op, dev).await
}

/// Reads the body of a request for `op` and runs the call through the pipeline.
async fn through_pipeline(
    app: &Arc<App>,
    request: Request,
    request_id: &str,
    op: Operation,
    dev: Option<Credentials>,
) -> Result<Vec<u8>, AwsError> {
    let (credentials, source, secure, body) = match dev {
        // `--dev` verifies no signature, so the request's headers are not copied for one:
        // its event needs only where it came from.
        Some(credentials) => {
            let (parts, body) = request.into_parts();
            let source = Source {
                ip: parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()),
                // As `Source::of` reads it: any UTF-8, not only visible ASCII.
                user_agent: parts
                    .headers
                    .get(header::USER_AGENT)
                    .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
                    .unwrap_or("")
                    .to_string(),
                console: false,
            };
            let secure = parts.extensions.get::<crate::connections::SecureTransport>().is_some();
            (credentials, source, secure, body)
        }
        None => {
            let (raw, body) = raw_parts(request);
            let (source, secure) = (Source::of(&raw), raw.secure);
            (Credentials::Signed(raw), source, secure, body)
        }
    };
    let buffer = read_body(app, body).await?;
    let caller = Caller { credentials, request_id: request_id.to_string(), source, secure };
    // A call that waits for no disk runs here, on the async worker: a thread hand-off
    // would cost more than the call. Its audit event, if it must be committed on its
    // own, is awaited below without holding the worker.
    // A listing with filters may examine up to a scan budget of secrets, and a trail
    // lookup many events: they go to the blocking pool, off the workers that serve every
    // other caller.
    let json = matches!(op.service(), Service::SecretsManager | Service::Kms);
    let inline = json
        && (app.writes_inline()
            || (app.reads_inline()
                && op.read_only()
                && !crate::secrets::may_scan(
                    op.service() == Service::SecretsManager,
                    op.name(),
                    &buffer,
                )));
    if inline {
        // A write awaits its turn here rather than block this worker on the store's lock.
        let turn = if op.read_only() { None } else { Some(app.inline_write_turn().await) };
        let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pipeline::run(app, &caller, op, buffer)
        }));
        drop(turn);
        let Ok(Outcome { result, unwritten }) = served else {
            tracing::error!("handler panicked");
            return Err(AwsError::internal());
        };
        crate::audit::write_async(app, unwritten).await?;
        return result;
    }
    // A write SQLite's writer thread runs: the task awaits it without holding a thread.
    let buffer = if json && app.submits_writes() {
        let staged = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            crate::submitted::stage(app, &caller, op, buffer)
        }));
        match staged {
            Ok(Ok(Staged::Writing(rest))) => return rest.await,
            Ok(Ok(Staged::Ended(outcome))) => {
                let Outcome { result, unwritten } = *outcome;
                crate::audit::write_async(app, unwritten).await?;
                return result;
            }
            // Not an operation whose write can be handed whole.
            Ok(Err(buffer)) => buffer,
            Err(_) => {
                tracing::error!("handler panicked");
                return Err(AwsError::internal());
            }
        }
    } else {
        buffer
    };
    let app = app.clone();
    tokio::task::spawn_blocking(move || pipeline::call(&app, &caller, op, buffer)).await.map_err(
        |e| {
            tracing::error!(error = %e, "handler panicked");
            AwsError::internal()
        },
    )?
}

/// Answers a CloudTrail request (LookupEvents over the audit trail): `(status, body)`.
/// The call goes through the pipeline like any other; reading the trail needs
/// `cloudtrail:LookupEvents`.
async fn answer_cloudtrail(app: &Arc<App>, request: Request, request_id: &str) -> (u16, Vec<u8>) {
    use coffer_wire::cloudtrail;
    let fail =
        |code: &str, message: &str, status: u16| (status, cloudtrail::error_body(code, message));
    let aws = move |e: AwsError| fail(e.code.as_str(), &e.message, e.code.http_status());
    let dev = match &app.iam {
        None => match caller(request.headers(), &app.config.default_account) {
            Ok(credentials) => Some(credentials),
            Err(e) => return aws(e),
        },
        Some(_) => None,
    };
    let target = header_str(request.headers(), &X_AMZ_TARGET).unwrap_or("").to_string();
    let lookup_events = cloudtrail::operation(&target).and_then(CloudTrailOp::from_name);
    if request.method() != Method::POST || lookup_events != Some(CloudTrailOp::LookupEvents) {
        return fail("UnknownOperationException", &format!("Unknown operation {target}"), 400);
    }
    let op = Operation::from(CloudTrailOp::LookupEvents);
    match through_pipeline(app, request, request_id, op, dev).await {
        Ok(body) => (200, body),
        Err(e) => aws(e),
    }
}

/// Answers a query-protocol request (STS, or the IAM API): `(status, XML body)`. The call
/// goes through the pipeline like any other, on the blocking pool (AssumeRole and the IAM
/// API's changes wait for the store).
async fn answer_query(
    app: &Arc<App>,
    request: Request,
    request_id: &str,
    service: Service,
) -> (u16, Vec<u8>) {
    let refuse = |e: AwsError| query::error_body(service, &e, request_id);
    let dev = match &app.iam {
        // An app without a directory has no one to manage.
        None if service == Service::Iam && app.dev_iam.is_none() => {
            let message = "The IAM API needs authentication: it is not served with --dev.";
            return refuse(query::failure("InvalidAction", message, 400));
        }
        // An unsigned `--dev` call is refused once it is known not to be
        // AssumeRoleWithWebIdentity, which `--dev` serves unsigned too (`dev_web_identity`).
        None => Some(caller(request.headers(), &app.config.default_account)),
        Some(_) => None,
    };
    let (raw, body) = raw_parts(request);
    let buffer = match read_body(app, body).await {
        Ok(b) => b,
        Err(e) => return refuse(e),
    };
    // AssumeRoleWithWebIdentity is not signed: the token it carries is the credential.
    if service == Service::Sts
        && let Some(answered) = crate::web_identity::intercept(app, &raw, &buffer, request_id).await
    {
        return answered;
    }
    let dev = match dev {
        Some(Ok(credentials)) => Some(credentials),
        Some(Err(_)) => {
            let missing = coffer_auth::SigV4Error::MissingAuthenticationToken;
            return refuse(query::signature_error(&missing));
        }
        None => None,
    };
    let form = query::Form::of_request(&raw.query, &buffer);
    let (source, secure) = (Source::of(&raw), raw.secure);
    let credentials = dev.unwrap_or(Credentials::Signed(raw));
    let caller = Caller { credentials, request_id: request_id.to_string(), source, secure };
    let app = app.clone();
    let answered = tokio::task::spawn_blocking(move || {
        pipeline::call_query(&app, &caller, service, buffer, form)
    })
    .await;
    match answered {
        Ok(Ok(body)) => (200, body),
        Ok(Err(e)) => refuse(e),
        Err(e) => {
            tracing::error!(error = %e, "handler panicked");
            refuse(AwsError::internal())
        }
    }
}

/// Reads the caller's access key and region from the SigV4 `Authorization` header.
///
/// This is how `--dev` identifies callers: signatures are not verified and any access
/// key is accepted. A 12-digit access key id is taken as the account id, any other maps
/// to the default account.
pub fn caller(headers: &HeaderMap, default_account: &str) -> Result<Credentials, AwsError> {
    let auth = header_str(headers, header::AUTHORIZATION).ok_or_else(|| {
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
    // Exactly five parts, read without collecting them.
    let mut parts = credential.split('/');
    let fields: [Option<&str>; 6] = std::array::from_fn(|_| parts.next());
    let [Some(key), Some(_), Some(region), Some(_), Some("aws4_request"), None] = fields else {
        return Err(incomplete(WELL_FORMED_CREDENTIAL));
    };
    if key.is_empty() || region.is_empty() {
        return Err(incomplete(WELL_FORMED_CREDENTIAL));
    }
    // Any region name is taken (a test may use its own), but only one shaped like a region:
    // the region is part of store keys and chain ids, and `us-east-1@x` was read back as a
    // node's chain of `us-east-1` (review 10, finding 03).
    if region.len() > 32
        || !region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(AwsError::new(
            ErrorCode::InvalidSignature,
            format!(
                "Credential should be scoped to a valid region, not '{}'. ",
                coffer_auth::sigv4::echo(region)
            ),
        ));
    }
    let access_key_id = key.to_string();
    let account = if access_key_id.len() == 12 && access_key_id.bytes().all(|b| b.is_ascii_digit())
    {
        access_key_id.clone()
    } else {
        default_account.to_string()
    };
    Ok(Credentials::Unverified { scope: Scope::new(account, region), access_key_id })
}

/// What a `--dev` caller's `Credential` parameter lacks when it is not five parts.
const WELL_FORMED_CREDENTIAL: &str =
    "a well-formed 'Credential' parameter (<key>/<date>/<region>/<service>/aws4_request)";

/// The algorithm and credential of an Authorization header, without the signature.
fn redact_authorization(auth: &str) -> String {
    auth.split(',').next().unwrap_or("").chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev_caller(authorization: &str) -> Result<(Scope, String), AwsError> {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, authorization.parse().unwrap());
        match caller(&headers, "000000000000")? {
            Credentials::Unverified { scope, access_key_id } => Ok((scope, access_key_id)),
            other => panic!("--dev credentials are unverified, not {other:?}"),
        }
    }

    fn signed(credential: &str) -> String {
        format!("AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders=host, Signature=00")
    }

    #[test]
    fn a_dev_credential_of_five_parts_names_the_account_and_region() {
        let (scope, key) =
            dev_caller(&signed("123456789012/20240101/eu-west-1/secretsmanager/aws4_request"))
                .unwrap();
        assert_eq!(
            (scope.account.as_str(), scope.region.as_str(), key.as_str()),
            ("123456789012", "eu-west-1", "123456789012")
        );
        let (scope, key) =
            dev_caller(&signed("AKIDEXAMPLE/20240101/us-east-1/kms/aws4_request")).unwrap();
        assert_eq!(
            (scope.account.as_str(), scope.region.as_str(), key.as_str()),
            ("000000000000", "us-east-1", "AKIDEXAMPLE")
        );
    }

    #[test]
    fn a_dev_credential_of_other_shapes_is_an_incomplete_signature() {
        for credential in [
            "AKID/20240101/us-east-1/secretsmanager",
            "AKID/20240101/us-east-1/secretsmanager/aws4_request/more",
            "/20240101/us-east-1/secretsmanager/aws4_request",
            "AKID/20240101//secretsmanager/aws4_request",
            "AKID/20240101/us-east-1/secretsmanager/aws4_reques",
            "AKID",
            "",
        ] {
            let e = dev_caller(&signed(credential)).unwrap_err();
            assert_eq!(e.code, ErrorCode::IncompleteSignature, "{credential}");
            assert!(
                e.message.starts_with(&format!(
                    "Authorization header requires {WELL_FORMED_CREDENTIAL}."
                )),
                "{}",
                e.message
            );
        }
        // An empty date or service was never checked, and still is not.
        assert!(dev_caller(&signed("AKID//us-east-1//aws4_request")).is_ok());
        let e = dev_caller(&signed("AKID/20240101/us-east-1@x/s/aws4_request")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidSignature);
    }

    #[test]
    fn only_a_post_to_the_root_is_an_api_call_that_skips_the_router() {
        let request = |method: Method, uri: &str| {
            axum::http::Request::builder().method(method).uri(uri).body(()).unwrap()
        };
        assert!(is_api_call(&request(Method::POST, "/")));
        assert!(is_api_call(&request(Method::POST, "/?Action=GetCallerIdentity")));
        for (method, uri) in [
            (Method::GET, "/"),
            (Method::GET, "/health"),
            (Method::POST, "/health"),
            (Method::POST, "/metrics"),
            (Method::POST, "/console/login"),
            (Method::POST, "//"),
        ] {
            assert!(!is_api_call(&request(method.clone(), uri)), "{method} {uri}");
        }
    }

    #[test]
    fn request_ids_are_hyphenated_lowercase_uuids_and_differ() {
        let (a, b) = (new_request_id(), new_request_id());
        assert_ne!(a, b);
        let parsed = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(parsed.to_string(), a);
    }

    #[test]
    fn an_answer_carries_its_request_id_and_content_type() {
        let response =
            answered(StatusCode::BAD_REQUEST, "id-1".into(), CONTENT_TYPE, b"{}".to_vec());
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()["x-amzn-RequestId"], "id-1");
        assert_eq!(response.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
        assert_eq!(response.headers().len(), 2);
    }
}
