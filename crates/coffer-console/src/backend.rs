//! How the console calls an operation: as the signed-in principal, through the server's
//! one pipeline (`coffer_server::pipeline`: identification, audit record, quota,
//! validation, authorization, handler), never the store. A console call is therefore
//! decided, validated and audited exactly as an SDK call is; its event is marked as
//! CloudTrail marks console calls (`sessionCredentialFromConsole`, agent "AWS Internal").

use coffer_core::{AwsError, Scope};
use coffer_server::App;
use coffer_server::pipeline::{self, Caller, Credentials};
use coffer_wire::operation::{CloudTrailOp, Operation};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use zeroize::Zeroizing;

/// The user agent handed to the pipeline (CloudTrail records console calls as "AWS Internal").
pub const USER_AGENT: &str = "coffer-console";

/// An AWS error as the API answered it: code and message, shown in the page as is.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn internal() -> Self {
        ApiError::from(AwsError::internal())
    }
}

impl From<AwsError> for ApiError {
    fn from(e: AwsError) -> Self {
        ApiError { code: e.code.as_str().to_string(), message: e.message }
    }
}

/// Who a session acts as. No secret access key is kept: it is checked once, at sign-in.
/// Nor is the principal itself: only its access key id, which every call looks up again
/// (`pipeline::resume`), so revoking the key or the user ends the session and a policy
/// change applies to the session's next call, as it does to a signed request.
#[derive(Debug, Clone)]
pub enum Principal {
    /// The access key `pipeline::sign_in` verified, and the region the session acts in.
    Verified { access_key_id: String, region: String },
    /// `--dev`: the account and region chosen at sign-in (nothing is verified there).
    Dev { scope: Scope, access_key_id: String },
}

impl Principal {
    pub fn region(&self) -> &str {
        match self {
            Principal::Verified { region, .. } => region,
            Principal::Dev { scope, .. } => &scope.region,
        }
    }

    /// The call's credentials: for a verified session, its key looked up now (blocking).
    fn credentials(&self, app: &App) -> Result<Credentials, AwsError> {
        Ok(match self {
            Principal::Verified { access_key_id, region } => {
                Credentials::Verified(pipeline::resume(app, access_key_id, region)?)
            }
            Principal::Dev { scope, access_key_id } => Credentials::Unverified {
                scope: scope.clone(),
                access_key_id: access_key_id.clone(),
            },
        })
    }
}

/// The code a call answers when the session's access key is no longer active.
pub const REVOKED: &str = "UnrecognizedClientException";

/// Where the browser is, for the call's source IP and `aws:SecureTransport`.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    pub addr: SocketAddr,
    pub tls: bool,
}

/// Calls operations through the pipeline of the same process.
#[derive(Clone)]
pub struct Backend {
    app: Arc<App>,
}

impl Backend {
    pub fn new(app: Arc<App>) -> Self {
        Backend { app }
    }

    /// Whether the server runs with `--dev` (no IAM: any credentials work).
    pub fn dev(&self) -> bool {
        self.app.iam.is_none()
    }

    /// Calls `target` (an `X-Amz-Target` value) with the JSON `body` as `who`; the JSON
    /// answer or the AWS error. The pipeline may wait for the store, so it runs on the
    /// blocking pool.
    pub async fn call(
        &self,
        who: &Principal,
        origin: Origin,
        target: &str,
        body: &Value,
    ) -> Result<Value, ApiError> {
        let op = if target == LOOKUP_EVENTS {
            Operation::from(CloudTrailOp::LookupEvents)
        } else {
            coffer_wire::protocol::parse_target(target)?
        };
        let payload = serde_json::to_vec(body).map_err(|_| ApiError::internal())?;
        let app = self.app.clone();
        let who = who.clone();
        let answer = tokio::task::spawn_blocking(move || {
            let credentials = who.credentials(&app)?;
            let caller =
                Caller::console(credentials, Some(origin.addr.ip()), USER_AGENT, origin.tls);
            pipeline::call(&app, &caller, op, payload)
        })
        .await
        .map_err(|_| ApiError::internal())??;
        // The answer may hold a value: wiped once parsed.
        let answer = Zeroizing::new(answer);
        serde_json::from_slice(&answer).map_err(|_| ApiError::internal())
    }

    /// Checks console credentials (`pipeline::sign_in`); answers the principal, its ARN
    /// and account.
    pub async fn sign_in(
        &self,
        access_key_id: String,
        secret_access_key: Zeroizing<String>,
        region: String,
        origin: Origin,
    ) -> Result<(Principal, String, String), ApiError> {
        let app = self.app.clone();
        let who = tokio::task::spawn_blocking(move || {
            let ip = Some(origin.addr.ip());
            pipeline::sign_in(&app, &access_key_id, &secret_access_key, &region, ip, USER_AGENT)
        })
        .await
        .map_err(|_| ApiError::internal())??;
        let (arn, account) =
            (who.caller.principal.arn.clone(), who.caller.principal.account.clone());
        Ok((
            Principal::Verified { access_key_id: who.access_key_id, region: who.region },
            arn,
            account,
        ))
    }

    /// Whether a session's principal may still act: for a verified session, whether its
    /// access key is still active (looked up as each call looks it up). `Err` when the
    /// store could not say.
    pub async fn still_active(&self, who: &Principal) -> Result<bool, ApiError> {
        let Principal::Verified { access_key_id, region } = who else { return Ok(true) };
        let (app, id, region) = (self.app.clone(), access_key_id.clone(), region.clone());
        let resumed =
            tokio::task::spawn_blocking(move || pipeline::resume(&app, &id, &region).map(drop))
                .await
                .map_err(|_| ApiError::internal())?;
        match resumed {
            Ok(()) => Ok(true),
            Err(e) if e.code.as_str() == REVOKED => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// CloudTrail's LookupEvents target.
pub const LOOKUP_EVENTS: &str =
    "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents";
