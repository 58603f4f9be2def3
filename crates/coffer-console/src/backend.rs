//! How the console calls an operation: as the signed-in principal, through the server's
//! one pipeline (`coffer_server::pipeline`: identification, audit record, quota,
//! validation, authorization, handler), never the store. A console call is therefore
//! decided, validated and audited exactly as an SDK call is; its event is marked as
//! CloudTrail marks console calls (`sessionCredentialFromConsole`, agent "AWS Internal").

use coffer_core::{AwsError, Scope};
use coffer_server::App;
use coffer_server::auth::Authenticated;
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
#[derive(Debug, Clone)]
pub enum Principal {
    /// A principal whose access key and secret `pipeline::sign_in` verified.
    Verified(Authenticated),
    /// `--dev`: the account and region chosen at sign-in (nothing is verified there).
    Dev { scope: Scope, access_key_id: String },
}

impl Principal {
    pub fn region(&self) -> &str {
        match self {
            Principal::Verified(who) => &who.region,
            Principal::Dev { scope, .. } => &scope.region,
        }
    }

    fn credentials(&self) -> Credentials {
        match self {
            Principal::Verified(who) => Credentials::Verified(who.clone()),
            Principal::Dev { scope, access_key_id } => Credentials::Unverified {
                scope: scope.clone(),
                access_key_id: access_key_id.clone(),
            },
        }
    }
}

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
        let credentials = who.credentials();
        let answer = tokio::task::spawn_blocking(move || {
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
    ) -> Result<(Principal, String, String), ApiError> {
        let app = self.app.clone();
        let who = tokio::task::spawn_blocking(move || {
            pipeline::sign_in(&app, &access_key_id, &secret_access_key, &region)
        })
        .await
        .map_err(|_| ApiError::internal())??;
        let (arn, account) =
            (who.caller.principal.arn.clone(), who.caller.principal.account.clone());
        Ok((Principal::Verified(who), arn, account))
    }
}

/// CloudTrail's LookupEvents target.
pub const LOOKUP_EVENTS: &str =
    "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents";
