//! Coffer's web console: server-rendered HTML at `/console` on the API's own listener.
//!
//! The console holds no data of its own beyond sessions: every page calls the API's
//! operations as the signed-in principal through `coffer_server::pipeline` (`backend`), so
//! it decides, validates and audits exactly as an SDK call would. Pages carry no script; the stylesheet is embedded in the
//! binary. Every response is `no-store`, framed by nobody, and under a CSP that allows
//! only this origin's stylesheet and forms.

mod backend;
mod html;
mod pages;
pub mod session;

use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use backend::{Backend, Origin};
use session::{Limits, Session, Sessions};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

pub use session::Limits as SessionLimits;

/// The content security policy of every console response: nothing but this origin's
/// stylesheet and form posts; no script at all, no framing.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
    form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's state.
pub struct Console {
    backend: Backend,
    sessions: Sessions,
    limits: Limits,
    /// `--dev`: any credentials work, so sign-in asks for an account and a region.
    dev: bool,
    default_account: String,
}

/// The console's router, to be nested at `/console` on the main listener.
pub fn router(app: Arc<coffer_server::App>, limits: Limits) -> Router {
    let backend = Backend::new(app.clone());
    let console = Arc::new(Console {
        dev: backend.dev(),
        default_account: app.config.default_account.clone(),
        backend,
        sessions: Sessions::default(),
        limits,
    });
    pages::routes().with_state(console).layer(axum::middleware::from_fn(security_headers))
}

/// Sets the headers every console response carries.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// What every console handler knows about its request: where the browser is, its
/// session (if live) and the sign-in form's CSRF cookie.
pub(crate) struct Ctx {
    origin: Origin,
    session: Option<(String, Arc<Session>)>,
    /// A session cookie was sent but names no live session.
    expired: bool,
    signin_cookie: Option<String>,
}

impl FromRequestParts<Arc<Console>> for Ctx {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        console: &Arc<Console>,
    ) -> Result<Self, Self::Rejection> {
        let addr = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let tls = parts.extensions.get::<coffer_server::connections::SecureTransport>().is_some();
        let mut session_id = None;
        let mut signin_cookie = None;
        for value in parts.headers.get_all(header::COOKIE) {
            let Ok(value) = value.to_str() else { continue };
            for pair in value.split(';') {
                let Some((name, v)) = pair.trim().split_once('=') else { continue };
                if name == session::COOKIE {
                    session_id = Some(v.to_string());
                } else if name == session::SIGNIN_COOKIE {
                    signin_cookie = Some(v.to_string());
                }
            }
        }
        let mut session = session_id
            .as_deref()
            .and_then(|id| console.sessions.get(id, &console.limits).map(|s| (id.to_string(), s)));
        // A session whose access key was deactivated or deleted (or its user deleted) is
        // over, as a signed request with that key would be refused. (A store that cannot
        // answer leaves the session; its calls fail on their own lookup.)
        if let Some((id, live)) = &session
            && let Ok(false) = console.backend.still_active(&live.who).await
        {
            console.sessions.close(id);
            session = None;
        }
        Ok(Ctx {
            origin: Origin { addr, tls },
            expired: session_id.is_some() && session.is_none(),
            session,
            signin_cookie,
        })
    }
}
