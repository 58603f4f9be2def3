//! The console's pages and form handlers. Each calls API operations through `backend` as
//! the session's principal and renders the answer, or AWS's error, as HTML.
//!
//! Values travel only in POST bodies and `no-store` pages, never in a URL: retrieving a
//! value is a POST, and saving redirects to a page that shows no value.

use crate::backend::{ApiError, LOOKUP_EVENTS};
use crate::html::{self, Header, csrf_field, error_box, esc, hidden, notice, text_input, url};
use crate::session::{self, Session, same_token};
use crate::{Console, Ctx};
use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

type St = State<Arc<Console>>;
type Fields = Form<Vec<(String, String)>>;
type Params = Query<HashMap<String, String>>;

const CSS: &str = include_str!("../static/console.css");

pub fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/", get(home))
        .route("/static/console.css", get(css))
        .route("/signin", get(signin_form).post(signin))
        .route("/signout", post(signout))
        .route("/secrets", get(list_secrets))
        .route("/secrets/new", get(create_form).post(create_post))
        .route("/secret", get(details))
        .route("/secret/value", post(retrieve_value))
        .route("/secret/value/edit", post(edit_value))
        .route("/secret/value/save", post(save_value))
        .route("/secret/description", get(description_form).post(description_save))
        .route("/secret/rotation", get(rotation_form).post(rotation_post))
        .route("/secret/key", get(key_form).post(key_save))
        .route("/secret/replicate", get(replicate_form))
        .route("/secret/replication", post(replication_post))
        .route("/secret/policy", get(policy_form).post(policy_post))
        .route("/secret/tags", get(tags_form).post(tags_post))
        .route("/secret/delete", get(delete_form).post(delete_post))
        .route("/secret/restore", post(restore_post))
        .route("/secret/audit", get(audit))
        .route("/keys", get(keys))
        .route("/keys/create", post(key_create))
        .route("/keys/state", post(key_state))
}

// ---------------------------------------------------------------- plumbing

/// A form's fields by name (the last of a repeated name wins).
struct F(HashMap<String, String>);

impl F {
    fn new(fields: Vec<(String, String)>) -> Self {
        F(fields.into_iter().collect())
    }
    fn get(&self, name: &str) -> &str {
        self.0.get(name).map(String::as_str).unwrap_or("")
    }
}

/// A signed-in request: the console, its context and the session.
struct Signed<'a> {
    console: &'a Console,
    ctx: &'a Ctx,
    session: &'a Session,
}

impl Signed<'_> {
    async fn call(&self, target: &str, body: Value) -> Result<Value, ApiError> {
        let answer =
            self.console.backend.call(&self.session.who, self.ctx.origin, target, &body).await;
        // The key was revoked since this request began: the session ends here.
        if let (Err(e), Some((id, _))) = (&answer, &self.ctx.session)
            && e.code == crate::backend::REVOKED
        {
            self.console.sessions.close(id);
        }
        answer
    }

    async fn sm(&self, op: &str, body: Value) -> Result<Value, ApiError> {
        self.call(&format!("secretsmanager.{op}"), body).await
    }

    async fn kms(&self, op: &str, body: Value) -> Result<Value, ApiError> {
        self.call(&format!("TrentService.{op}"), body).await
    }

    fn header(&self) -> Header<'_> {
        Header {
            arn: &self.session.arn,
            region: self.session.who.region(),
            csrf: &self.session.csrf,
        }
    }

    fn csrf(&self) -> String {
        csrf_field(&self.session.csrf)
    }

    fn page(&self, title: &str, body: &str) -> Response {
        page_response(StatusCode::OK, html::page(title, Some(&self.header()), body))
    }

    fn error_page(&self, title: &str, e: &ApiError) -> Response {
        let body = format!(
            "{}<p><a href=\"/console/secrets\">Back to secrets</a></p>",
            error_box(&e.code, &e.message)
        );
        page_response(status_of(e), html::page(title, Some(&self.header()), &body))
    }

    /// Refuses a state change whose form does not carry the session's CSRF token.
    fn check_csrf(&self, f: &F) -> Result<(), Box<Response>> {
        if same_token(f.get("csrf"), &self.session.csrf) {
            return Ok(());
        }
        Err(Box::new(csrf_refused()))
    }
}

fn csrf_refused() -> Response {
    let body = error_box(
        "Forbidden",
        "The request was refused: its CSRF token is missing or does not match your session. Reload the page and try again.",
    );
    page_response(StatusCode::FORBIDDEN, html::page("Request refused", None, &body))
}

fn status_of(e: &ApiError) -> StatusCode {
    match e.code.as_str() {
        "AccessDeniedException" | "AccessDenied" => StatusCode::FORBIDDEN,
        "ResourceNotFoundException" | "NotFoundException" => StatusCode::NOT_FOUND,
        "InternalServiceError" | "InternalFailure" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

fn page_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    response
}

fn redirect(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

/// The signed-in request, or a redirect to sign-in.
fn signed<'a>(console: &'a Console, ctx: &'a Ctx) -> Result<Signed<'a>, Box<Response>> {
    match &ctx.session {
        Some((_, session)) => Ok(Signed { console, ctx, session }),
        None if ctx.expired => Err(Box::new(redirect("/console/signin?expired=1"))),
        None => Err(Box::new(redirect("/console/signin"))),
    }
}

macro_rules! signed_or_return {
    ($console:expr, $ctx:expr) => {
        match signed(&$console, &$ctx) {
            Ok(s) => s,
            Err(r) => return *r,
        }
    };
}

fn cookie(name: &str, value: &str, tls: bool, max_age: Option<u64>) -> HeaderValue {
    let mut c = format!("{name}={value}; Path=/console; HttpOnly; SameSite=Strict");
    if tls {
        c.push_str("; Secure");
    }
    if let Some(age) = max_age {
        let _ = write!(c, "; Max-Age={age}");
    }
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Fixed notices a redirect may name (never data from the request).
fn message(params: &HashMap<String, String>) -> String {
    let text = match params.get("msg").map(String::as_str) {
        Some("value-saved") => "The secret value was saved as a new version.",
        Some("description-saved") => "The description was saved.",
        Some("rotation-saved") => "The rotation configuration was saved.",
        Some("rotation-started") => "A rotation of the secret was started.",
        Some("key-saved") => "The encryption key was saved.",
        Some("policy-saved") => "The resource policy was saved.",
        Some("policy-deleted") => "The resource policy was deleted.",
        Some("tags-saved") => "The tags were saved.",
        Some("replication-started") => "Replication to the Region was started.",
        Some("replication-failed") => {
            "Replication to the Region failed: its status message says why."
        }
        Some("replica-removed") => "The replica was removed.",
        Some("promoted") => "The replica is now a standalone secret.",
        Some("deleted") => "The secret is scheduled for deletion.",
        Some("restored") => "The secret was restored.",
        Some("created") => "The secret was stored.",
        Some("key-created") => "The key was created.",
        Some("key-enabled") => "The key was enabled.",
        Some("key-disabled") => "The key was disabled.",
        _ => return String::new(),
    };
    notice(text)
}

/// An epoch-seconds date of an AWS JSON answer as HTML: "2026-12-06 10:28:06 UTC" for
/// people (a bare trailing `Z` says nothing to most), ISO 8601 in the `<time>` element.
fn date(v: Option<&Value>) -> String {
    match v.and_then(Value::as_f64) {
        Some(secs) => {
            let iso = coffer_auth::time::format_iso8601((secs * 1000.0) as i64);
            let shown = format!("{} UTC", iso.trim_end_matches('Z').replacen('T', " ", 1));
            format!(r#"<time datetime="{}">{}</time>"#, esc(&iso), esc(&shown))
        }
        None => "-".to_string(),
    }
}

/// A LastAccessedDate as HTML: the day only, as AWS keeps it (its midnight is no time of
/// retrieval).
fn day(v: Option<&Value>) -> String {
    match v.and_then(Value::as_f64) {
        Some(secs) => {
            let iso = coffer_auth::time::format_iso8601((secs * 1000.0) as i64);
            let day = iso.split('T').next().unwrap_or_default();
            format!(r#"<time datetime="{}">{}</time>"#, esc(day), esc(day))
        }
        None => "-".to_string(),
    }
}

fn js<'a>(v: &'a Value, name: &str) -> &'a str {
    v.get(name).and_then(Value::as_str).unwrap_or("")
}

fn details_url(id: &str) -> String {
    format!("/console/secret?id={}", url(id))
}

// ---------------------------------------------------------------- static, sign-in

async fn home(State(console): St, ctx: Ctx) -> Response {
    match signed(&console, &ctx) {
        Ok(_) => redirect("/console/secrets"),
        Err(r) => *r,
    }
}

async fn css() -> Response {
    let mut response = CSS.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    response
}

fn signin_page(console: &Console, token: &str, error: Option<&ApiError>, expired: bool) -> String {
    let mut body = String::new();
    if expired {
        body.push_str(&notice("Your session has expired. Sign in again."));
    }
    if let Some(e) = error {
        body.push_str(&error_box(&e.code, &e.message));
    }
    body.push_str(r#"<form method="post" action="/console/signin" class="card">"#);
    body.push_str(&csrf_field(token));
    if console.dev {
        body.push_str(&notice(
            "This server runs with --dev: any credentials work. Choose the account and region to work in.",
        ));
        body.push_str(&text_input("account", "account", "Account ID", &console.default_account));
    } else {
        body.push_str(&text_input("access_key_id", "access_key_id", "Access key ID", ""));
        body.push_str(
            r#"<p class="field"><label for="secret_access_key">Secret access key</label><input type="password" id="secret_access_key" name="secret_access_key" autocomplete="off"></p>"#,
        );
    }
    body.push_str(&text_input("region", "region", "Region", "us-east-1"));
    body.push_str(r#"<p><button type="submit" class="primary">Sign in</button></p></form>"#);
    html::page("Sign in", None, &body)
}

async fn signin_form(State(console): St, ctx: Ctx, Query(params): Params) -> Response {
    if ctx.session.is_some() {
        return redirect("/console/secrets");
    }
    let token = session::token();
    let expired = params.contains_key("expired");
    let mut response = page_response(StatusCode::OK, signin_page(&console, &token, None, expired));
    response.headers_mut().append(
        header::SET_COOKIE,
        cookie(session::SIGNIN_COOKIE, &token, ctx.origin.tls, Some(600)),
    );
    response
}

async fn signin(State(console): St, ctx: Ctx, Form(fields): Fields) -> Response {
    let f = F::new(fields);
    // Double submit: the form's token must equal the cookie only this origin could set.
    let Some(expected) = ctx.signin_cookie.as_deref() else { return csrf_refused() };
    if !same_token(f.get("csrf"), expected) {
        return csrf_refused();
    }
    let retry = |e: ApiError, status: StatusCode| {
        let token = session::token();
        let mut response = page_response(status, signin_page(&console, &token, Some(&e), false));
        response.headers_mut().append(
            header::SET_COOKIE,
            cookie(session::SIGNIN_COOKIE, &token, ctx.origin.tls, Some(600)),
        );
        response
    };
    if !console.sessions.allow_signin(ctx.origin.addr.ip(), &console.limits) {
        return retry(
            ApiError {
                code: "ThrottlingException".into(),
                message: "Too many sign-in attempts. Wait a minute and try again.".into(),
            },
            StatusCode::TOO_MANY_REQUESTS,
        );
    }
    let region = f.get("region").trim().to_string();
    if !coffer_server::auth::is_known_region(&region) {
        return retry(
            ApiError {
                code: "InvalidParameterException".into(),
                message: "The region is not known.".into(),
            },
            StatusCode::BAD_REQUEST,
        );
    }
    let signed_in = if console.dev {
        // --dev: any credentials work, so the session acts in the account and region chosen.
        let account = f.get("account").trim();
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return retry(
                ApiError {
                    code: "InvalidParameterException".into(),
                    message: "The account ID must be 12 digits.".into(),
                },
                StatusCode::BAD_REQUEST,
            );
        }
        let who = crate::backend::Principal::Dev {
            scope: coffer_core::Scope::new(account, region.as_str()),
            access_key_id: account.to_string(),
        };
        let root = coffer_core::Partition::of_region(&region).arn("iam", "", account, "root");
        Ok((who, root, account.to_string()))
    } else {
        let secret = zeroize::Zeroizing::new(f.get("secret_access_key").to_string());
        let key_id = f.get("access_key_id").trim().to_string();
        console.backend.sign_in(key_id, secret, region, ctx.origin).await
    };
    match signed_in {
        Ok((who, arn, account)) => {
            let id = console.sessions.open(who, arn, account);
            let mut response = redirect("/console/secrets");
            let headers = response.headers_mut();
            headers.append(header::SET_COOKIE, cookie(session::COOKIE, &id, ctx.origin.tls, None));
            headers.append(
                header::SET_COOKIE,
                cookie(session::SIGNIN_COOKIE, "", ctx.origin.tls, Some(0)),
            );
            response
        }
        Err(e) => {
            console.sessions.note_failed_signin(ctx.origin.addr.ip(), &console.limits);
            retry(e, StatusCode::UNAUTHORIZED)
        }
    }
}

async fn signout(State(console): St, ctx: Ctx, Form(fields): Fields) -> Response {
    let s = signed_or_return!(console, ctx);
    let f = F::new(fields);
    if let Err(r) = s.check_csrf(&f) {
        return *r;
    }
    if let Some((id, _)) = &ctx.session {
        console.sessions.close(id);
    }
    let mut response = redirect("/console/signin");
    response
        .headers_mut()
        .append(header::SET_COOKIE, cookie(session::COOKIE, "", ctx.origin.tls, Some(0)));
    response
}

// ---------------------------------------------------------------- secret list

async fn list_secrets(State(console): St, ctx: Ctx, Query(params): Params) -> Response {
    let s = signed_or_return!(console, ctx);
    let filter = params.get("filter").map(String::as_str).unwrap_or("").trim().to_string();
    let deleted = params.get("deleted").is_some_and(|v| v == "on");
    let mut req = json!({"MaxResults": 20, "IncludePlannedDeletion": deleted});
    if !filter.is_empty() {
        req["Filters"] = json!([{"Key": "all", "Values": [filter]}]);
    }
    if let Some(next) = params.get("next").filter(|t| !t.is_empty()) {
        req["NextToken"] = json!(next);
    }
    let mut body = message(&params);
    let _ = write!(
        body,
        r#"<form method="get" action="/console/secrets" class="filters" role="search">
<p class="field"><label for="filter">Filter by name, description or tag</label><input type="search" id="filter" name="filter" value="{}"></p>
<p class="field check"><input type="checkbox" id="deleted" name="deleted" value="on"{}><label for="deleted">Show secrets scheduled for deletion</label></p>
<p><button type="submit">Search</button></p>
</form>
<p><a class="button primary" href="/console/secrets/new">Store a new secret</a></p>"#,
        esc(&filter),
        if deleted { " checked" } else { "" }
    );
    match s.sm("ListSecrets", req).await {
        Err(e) => body.push_str(&error_box(&e.code, &e.message)),
        Ok(answer) => {
            let list =
                answer.get("SecretList").and_then(Value::as_array).cloned().unwrap_or_default();
            if list.is_empty() && !filter.is_empty() {
                body.push_str("<p>No secrets match the filter.</p>");
            } else if list.is_empty() {
                body.push_str("<p>No secrets.</p>");
            } else {
                body.push_str(r#"<div class="scroll"><table><caption>Secrets</caption><thead><tr><th scope="col">Secret name</th><th scope="col">Description</th><th scope="col">Last retrieved</th><th scope="col">Deleted on</th></tr></thead><tbody>"#);
                for item in &list {
                    let name = js(item, "Name");
                    let _ = write!(
                        body,
                        r#"<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                        esc(&details_url(name)),
                        esc(name),
                        esc(js(item, "Description")),
                        day(item.get("LastAccessedDate")),
                        if item.get("DeletedDate").is_some() {
                            date(item.get("DeletedDate"))
                        } else {
                            String::new()
                        }
                    );
                }
                body.push_str("</tbody></table></div>");
            }
            // Paging tokens only go forward: a later page leads back to the first.
            let later_page = params.get("next").is_some_and(|t| !t.is_empty());
            let next = answer.get("NextToken").and_then(Value::as_str);
            if later_page || next.is_some() {
                let query =
                    format!("filter={}&deleted={}", url(&filter), if deleted { "on" } else { "" });
                body.push_str(r#"<nav aria-label="Pages" class="pages"><p>"#);
                if later_page {
                    let _ = write!(
                        body,
                        r#"<a href="/console/secrets?{}">First page</a> "#,
                        esc(&query)
                    );
                }
                if let Some(next) = next {
                    let _ = write!(
                        body,
                        r#"<a href="/console/secrets?{}">Next page</a>"#,
                        esc(&format!("{query}&next={}", url(next)))
                    );
                }
                body.push_str("</p></nav>");
            }
        }
    }
    s.page("Secrets", &body)
}

// ---------------------------------------------------------------- secret details

/// The details page; `value_html` is the retrieved value's section content, if any.
async fn render_details(
    s: &Signed<'_>,
    id: &str,
    notice_html: &str,
    value_html: Option<String>,
) -> Response {
    let d = match s.sm("DescribeSecret", json!({"SecretId": id})).await {
        Ok(d) => d,
        Err(e) => return s.error_page("Secret", &e),
    };
    let name = s_str(&d, "Name");
    let arn = s_str(&d, "ARN");
    let deleted = d.get("DeletedDate").is_some();
    let mut b = notice_html.to_string();
    if deleted {
        // Said first, as AWS does: what a person opening the page must know before the rest.
        let _ = write!(
            b,
            r#"<div class="warning" role="status"><p>This secret is scheduled for deletion on {}. Until then it can be restored; its value and resource policy cannot be read.</p><form method="post" action="/console/secret/restore">{}{}<button type="submit">Restore secret</button></form></div>"#,
            date(d.get("DeletedDate")),
            s.csrf(),
            hidden("id", &name)
        );
    }
    // Secrets details, with the seeds' Actions menu.
    let _ = write!(
        b,
        r#"<section aria-labelledby="details-h" class="card"><div class="section-head"><h2 id="details-h">Secrets details</h2>
<details class="actions"><summary>Actions</summary><ul>
<li><a href="/console/secret/description?id={q}">Edit description</a></li>
<li><a href="/console/secret/key?id={q}">Edit encryption key</a></li>
<li><a href="/console/secret/delete?id={q}">Delete secret</a></li>
</ul></details></div>
<dl>
<dt>Secret name</dt><dd class="secret-name">{}</dd>
<dt>Secret ARN</dt><dd class="arn">{}</dd>
<dt>Secret description</dt><dd class="description">{}</dd>
<dt>Encryption key</dt><dd class="kms-key">{}</dd>
<dt>Created on</dt><dd>{}</dd>
<dt>Last changed</dt><dd>{}</dd>
<dt>Last retrieved</dt><dd>{}</dd>"#,
        esc(&name),
        esc(&arn),
        esc(js(&d, "Description")),
        esc(if js(&d, "KmsKeyId").is_empty() { "aws/secretsmanager" } else { js(&d, "KmsKeyId") }),
        date(d.get("CreatedDate")),
        date(d.get("LastChangedDate")),
        day(d.get("LastAccessedDate")),
        q = esc(&url(&name))
    );
    if deleted {
        let _ = write!(
            b,
            "<dt>Scheduled deletion</dt><dd class=\"deleted-date\">{}</dd>",
            date(d.get("DeletedDate"))
        );
    }
    b.push_str("</dl></section>");
    // Secret value.
    let _ = write!(
        b,
        r#"<section aria-labelledby="value-h" class="card"><h2 id="value-h">Secret value</h2>"#
    );
    match value_html {
        Some(v) => b.push_str(&v),
        None if deleted => b.push_str("<p>Restore the secret to retrieve its value.</p>"),
        None => {
            let _ = write!(
                b,
                r#"<form method="post" action="/console/secret/value">{}{}<button type="submit">Retrieve secret value</button></form>"#,
                s.csrf(),
                hidden("id", &name)
            );
        }
    }
    b.push_str("</section>");
    // Resource permissions.
    let _ = write!(
        b,
        r#"<section aria-labelledby="policy-h" class="card"><div class="section-head"><h2 id="policy-h">Resource permissions</h2><a class="button" href="/console/secret/policy?id={}">Edit permissions</a></div>"#,
        esc(&url(&name))
    );
    // A secret scheduled for deletion refuses GetResourcePolicy: not asked, not an error.
    let policy = if deleted {
        Err(None)
    } else {
        s.sm("GetResourcePolicy", json!({"SecretId": name})).await.map_err(Some)
    };
    match policy {
        Err(None) => b.push_str("<p>Restore the secret to see its resource policy.</p>"),
        Ok(p) => match p.get("ResourcePolicy").and_then(Value::as_str) {
            Some(policy) => {
                let _ = write!(b, r#"<pre class="policy">{}</pre>"#, esc(&pretty(policy)));
            }
            None => b.push_str("<p>No resource policy.</p>"),
        },
        Err(Some(e)) => b.push_str(&error_box(&e.code, &e.message)),
    }
    b.push_str("</section>");
    // Tags.
    let _ = write!(
        b,
        r#"<section aria-labelledby="tags-h" class="card"><div class="section-head"><h2 id="tags-h">Tags</h2><a class="button" href="/console/secret/tags?id={}">Edit tags</a></div>"#,
        esc(&url(&name))
    );
    b.push_str(&tags_table(&d));
    b.push_str("</section>");
    // Rotation configuration, edited through RotateSecret and CancelRotateSecret.
    let _ = write!(
        b,
        r#"<section aria-labelledby="rotation-h" class="card"><div class="section-head"><h2 id="rotation-h">Rotation configuration</h2><a class="button" href="/console/secret/rotation?id={}">Edit rotation</a></div><dl>"#,
        esc(&url(&name))
    );
    let enabled = d.get("RotationEnabled").and_then(Value::as_bool).unwrap_or(false);
    let _ = write!(
        b,
        "<dt>Rotation status</dt><dd class=\"rotation\">{}</dd>",
        if enabled { "Enabled" } else { "Disabled" }
    );
    if let Some(rules) = d.get("RotationRules") {
        let _ = write!(b, "<dt>Rotation schedule</dt><dd>{}</dd>", esc(&schedule_of(rules)));
        if let Some(duration) = rules.get("Duration").and_then(Value::as_str) {
            let _ = write!(b, "<dt>Window duration</dt><dd>{}</dd>", esc(duration));
        }
    }
    if !js(&d, "RotationLambdaARN").is_empty() {
        let _ =
            write!(b, "<dt>Rotation function</dt><dd>{}</dd>", esc(js(&d, "RotationLambdaARN")));
    }
    let _ = write!(
        b,
        "<dt>Last rotated</dt><dd>{}</dd></dl></section>",
        date(d.get("LastRotatedDate"))
    );
    b.push_str(&replication_section(s, &d, &name));
    // Versions.
    let _ = write!(
        b,
        r#"<section aria-labelledby="versions-h" class="card"><h2 id="versions-h">Versions</h2>"#
    );
    match s.sm("ListSecretVersionIds", json!({"SecretId": name, "IncludeDeprecated": true})).await {
        Ok(v) => {
            b.push_str(r#"<div class="scroll"><table class="versions"><thead><tr><th scope="col">Version ID</th><th scope="col">Staging labels</th><th scope="col">Created on</th></tr></thead><tbody>"#);
            for version in v.get("Versions").and_then(Value::as_array).into_iter().flatten() {
                let labels: Vec<&str> = version
                    .get("VersionStages")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let _ = write!(
                    b,
                    "<tr><td class=\"version-id\">{}</td><td class=\"stages\">{}</td><td>{}</td></tr>",
                    esc(js(version, "VersionId")),
                    esc(&labels.join(", ")),
                    date(version.get("CreatedDate"))
                );
            }
            b.push_str("</tbody></table></div>");
        }
        Err(e) => b.push_str(&error_box(&e.code, &e.message)),
    }
    b.push_str("</section>");
    let _ = write!(
        b,
        r#"<p><a href="/console/secret/audit?id={}">Audit events for this secret</a></p>"#,
        esc(&url(&name))
    );
    s.page(&name, &b)
}

/// The details page's Replication section: on a primary its replicas (Region, key,
/// status, last retrieved) with a Remove button each and the Replicate secret button; on
/// a replica, seen from its own Region, the Promote button (StopReplicationToReplica).
fn replication_section(s: &Signed<'_>, d: &Value, name: &str) -> String {
    let primary = js(d, "PrimaryRegion");
    let here = s.session.who.region();
    let replica = !primary.is_empty() && primary != here;
    let mut b = String::from(
        r#"<section aria-labelledby="replication-h" class="card"><div class="section-head"><h2 id="replication-h">Replication</h2>"#,
    );
    if !replica {
        let _ = write!(
            b,
            r#"<a class="button" href="/console/secret/replicate?id={}">Replicate secret</a>"#,
            esc(&url(name))
        );
    }
    b.push_str("</div>");
    if !primary.is_empty() {
        let _ = write!(b, "<dl><dt>Primary Region</dt><dd>{}</dd></dl>", esc(primary));
    }
    let replicas: Vec<&Value> =
        d.get("ReplicationStatus").and_then(Value::as_array).into_iter().flatten().collect();
    if replica {
        let _ = write!(
            b,
            r#"<p>This secret is a replica: it is changed through its primary secret in {}. Promoting it makes it a standalone secret in {}.</p><form method="post" action="/console/secret/replication">{}{}{}<button type="submit">Promote to standalone secret</button></form>"#,
            esc(primary),
            esc(here),
            s.csrf(),
            hidden("id", name),
            hidden("op", "promote")
        );
    } else if replicas.is_empty() {
        b.push_str("<p>This secret is not replicated.</p>");
    } else {
        b.push_str(r#"<div class="scroll"><table class="replicas"><thead><tr><th scope="col">Region</th><th scope="col">Encryption key</th><th scope="col">Replication status</th><th scope="col">Status message</th><th scope="col">Last retrieved</th><th scope="col"><span class="visually-hidden">Remove</span></th></tr></thead><tbody>"#);
        for r in replicas {
            let region = js(r, "Region");
            let _ = write!(
                b,
                r#"<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><form method="post" action="/console/secret/replication" class="inline">{}{}{}{}<button type="submit" aria-label="Remove replica {}">Remove</button></form></td></tr>"#,
                esc(region),
                esc(js(r, "KmsKeyId")),
                esc(js(r, "Status")),
                esc(js(r, "StatusMessage")),
                day(r.get("LastAccessedDate")),
                s.csrf(),
                hidden("id", name),
                hidden("op", "remove"),
                hidden("region", region),
                esc(region)
            );
        }
        b.push_str("</tbody></table></div>");
    }
    b.push_str("</section>");
    b
}

fn s_str(v: &Value, name: &str) -> String {
    js(v, name).to_string()
}

fn pretty(policy: &str) -> String {
    serde_json::from_str::<Value>(policy)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| policy.to_string())
}

fn tags_table(d: &Value) -> String {
    let tags: Vec<&Value> = d.get("Tags").and_then(Value::as_array).into_iter().flatten().collect();
    if tags.is_empty() {
        return "<p>No tags.</p>".into();
    }
    let mut b = String::from(
        r#"<table class="tags"><thead><tr><th scope="col">Key</th><th scope="col">Value</th></tr></thead><tbody>"#,
    );
    for t in tags {
        let _ =
            write!(b, "<tr><td>{}</td><td>{}</td></tr>", esc(js(t, "Key")), esc(js(t, "Value")));
    }
    b.push_str("</tbody></table>");
    b
}

async fn details(State(console): St, ctx: Ctx, Query(params): Params) -> Response {
    let s = signed_or_return!(console, ctx);
    let id = params.get("id").cloned().unwrap_or_default();
    render_details(&s, &id, &message(&params), None).await
}

/// A retrieved value as HTML: a key/value table for a JSON object, else plaintext;
/// binary as base64.
fn value_view(v: &Value) -> String {
    let mut b = String::new();
    if let Some(text) = v.get("SecretString").and_then(Value::as_str) {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => {
                b.push_str(r#"<table class="kv"><caption>Secret key/value</caption><thead><tr><th scope="col">Secret key</th><th scope="col">Secret value</th></tr></thead><tbody>"#);
                for (k, val) in &map {
                    let shown = match val {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    let _ = write!(b, "<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(&shown));
                }
                b.push_str("</tbody></table>");
            }
            _ => {
                let _ = write!(b, r#"<p>Plaintext</p><pre class="plaintext">{}</pre>"#, esc(text));
            }
        }
    } else if let Some(bin) = v.get("SecretBinary").and_then(Value::as_str) {
        let _ = write!(b, r#"<p>Binary value (base64)</p><pre class="binary">{}</pre>"#, esc(bin));
    }
    b
}

async fn retrieve_value(State(console): St, ctx: Ctx, Form(fields): Fields) -> Response {
    let s = signed_or_return!(console, ctx);
    let f = F::new(fields);
    if let Err(r) = s.check_csrf(&f) {
        return *r;
    }
    let id = f.get("id").to_string();
    let value_html = match s.sm("GetSecretValue", json!({"SecretId": id})).await {
        Ok(v) => {
            let mut b = value_view(&v);
            if v.get("SecretString").is_some() {
                let _ = write!(
                    b,
                    r#"<form method="post" action="/console/secret/value/edit">{}{}{}<button type="submit">Edit</button></form>"#,
                    s.csrf(),
                    hidden("id", &id),
                    hidden("op", "start")
                );
            } else {
                b.push_str("<p>A binary value cannot be edited in the console.</p>");
            }
            b
        }
        Err(e) => error_box(&e.code, &e.message),
    };
    render_details(&s, &id, "", Some(value_html)).await
}

// ---------------------------------------------------------------- value editor

/// The value editor's state: key/value rows or plaintext.
struct Editor {
    plaintext: bool,
    rows: Vec<(String, String)>,
    plain: String,
    /// Per row: its stored value was a JSON number, boolean or null, so text that still
    /// reads as one is saved as one (editing a password must not turn `"port": 5432` into
    /// `"5432"`). New rows are strings, as typed.
    typed: Vec<bool>,
}

impl Editor {
    fn from_value(text: &str) -> Self {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) if map.values().all(|v| !v.is_object() && !v.is_array()) => {
                let typed = map.values().map(|v| !v.is_string()).collect();
                let rows = map
                    .into_iter()
                    .map(|(k, v)| {
                        let v = match v {
                            Value::String(s) => s,
                            other => other.to_string(),
                        };
                        (k, v)
                    })
                    .collect();
                Editor { plaintext: false, rows, plain: text.to_string(), typed }
            }
            _ => Editor {
                plaintext: true,
                rows: vec![(String::new(), String::new())],
                plain: text.to_string(),
                typed: Vec::new(),
            },
        }
    }

    /// The editor as the form posted it, with its row/mode operation applied; a mode switch
    /// that cannot be made answers why, with the editor to show again as it was.
    fn from_form(f: &F, prefix: &str) -> Result<Self, (String, Self)> {
        let n: usize = f.get(&format!("{prefix}n")).parse().unwrap_or(0).min(200);
        let mut rows: Vec<(String, String)> = (0..n)
            .map(|i| {
                (
                    f.get(&format!("{prefix}k{i}")).to_string(),
                    f.get(&format!("{prefix}v{i}")).to_string(),
                )
            })
            .collect();
        let mut typed: Vec<bool> =
            (0..n).map(|i| f.get(&format!("{prefix}t{i}")) == "json").collect();
        let mut ed = Editor {
            plaintext: f.get(&format!("{prefix}mode")) == "plain",
            rows: Vec::new(),
            plain: f.get(&format!("{prefix}plain")).to_string(),
            typed: Vec::new(),
        };
        let op = f.get("op");
        if let Some(i) = f.0.get(&format!("{prefix}remove")).and_then(|v| v.parse::<usize>().ok()) {
            if i < rows.len() {
                rows.remove(i);
                typed.remove(i);
            }
        } else if op == format!("{prefix}add") {
            rows.push((String::new(), String::new()));
            typed.push(false);
        } else if op == format!("{prefix}mode-plain") && !ed.plaintext {
            ed.rows = rows;
            ed.typed = typed;
            // The JSON would keep one row of a key given twice, and none without a key.
            if let Some(problem) = ed.problem() {
                return Err((problem, ed));
            }
            ed.plaintext = true;
            ed.plain = ed.json();
            return Ok(ed);
        } else if op == format!("{prefix}mode-kv") && ed.plaintext {
            let parsed = Editor::from_value(&ed.plain);
            if parsed.plaintext && !ed.plain.trim().is_empty() {
                return Err(("The plaintext is not a JSON object of keys and values, so it cannot be shown as key/value pairs.".into(), ed));
            }
            return Ok(Editor { plaintext: false, ..parsed });
        }
        if rows.is_empty() && !ed.plaintext {
            rows.push((String::new(), String::new()));
            typed.push(false);
        }
        ed.rows = rows;
        ed.typed = typed;
        Ok(ed)
    }

    /// Why the rows cannot be saved as they are: a value with no key, or a key given twice,
    /// would silently vanish from the JSON object. Names the row or key, never a value.
    fn problem(&self) -> Option<String> {
        if self.plaintext {
            return None;
        }
        let mut seen = std::collections::HashSet::new();
        for (i, (k, v)) in self.rows.iter().enumerate() {
            if k.is_empty() && !v.is_empty() {
                return Some(format!(
                    "Row {} has a value but no key: give it a key or remove the row.",
                    i + 1
                ));
            }
            if !k.is_empty() && !seen.insert(k.as_str()) {
                return Some(format!(
                    "The key {k} appears more than once: each key of a key/value secret must be unique."
                ));
            }
        }
        None
    }

    fn is_typed(&self, row: usize) -> bool {
        self.typed.get(row).copied().unwrap_or(false)
    }

    /// The rows as a JSON object (empty keys skipped).
    fn json(&self) -> String {
        let mut map = Map::new();
        for (i, (k, v)) in self.rows.iter().enumerate() {
            if !k.is_empty() {
                map.insert(k.clone(), row_value(v, self.is_typed(i)));
            }
        }
        Value::Object(map).to_string()
    }

    fn secret_string(&self) -> String {
        if self.plaintext { self.plain.clone() } else { self.json() }
    }

    /// The editor's fields; buttons post back to the form's own action.
    fn render(&self, prefix: &str) -> String {
        let mut b = String::new();
        b.push_str(&hidden(&format!("{prefix}mode"), if self.plaintext { "plain" } else { "kv" }));
        let _ = write!(
            b,
            r#"<div class="tabs" role="group" aria-label="Value format"><button type="submit" name="op" value="{prefix}mode-kv" aria-pressed="{}">Key/value</button><button type="submit" name="op" value="{prefix}mode-plain" aria-pressed="{}">Plaintext</button></div>"#,
            !self.plaintext, self.plaintext
        );
        if self.plaintext {
            let _ = write!(
                b,
                r#"<p class="field"><label for="{prefix}plain">Plaintext</label><textarea id="{prefix}plain" name="{prefix}plain" rows="8">{}</textarea></p>"#,
                esc(&self.plain)
            );
            b.push_str(&hidden(&format!("{prefix}n"), "0"));
        } else {
            b.push_str(&hidden(&format!("{prefix}n"), &self.rows.len().to_string()));
            b.push_str(r#"<table class="kv-editor"><thead><tr><th scope="col">Secret key</th><th scope="col">Secret value</th><th scope="col"><span class="visually-hidden">Remove</span></th></tr></thead><tbody>"#);
            for (i, (k, v)) in self.rows.iter().enumerate() {
                let n = i + 1;
                if self.is_typed(i) {
                    b.push_str(&hidden(&format!("{prefix}t{i}"), "json"));
                }
                let _ = write!(
                    b,
                    r#"<tr><td><label class="visually-hidden" for="{prefix}k{i}">Key {n}</label><input type="text" id="{prefix}k{i}" name="{prefix}k{i}" value="{}"></td><td><label class="visually-hidden" for="{prefix}v{i}">Value {n}</label><input type="text" id="{prefix}v{i}" name="{prefix}v{i}" value="{}" autocomplete="off"></td><td><button type="submit" name="{prefix}remove" value="{i}" aria-label="Remove row {n}">Remove</button></td></tr>"#,
                    esc(k),
                    esc(v)
                );
            }
            let _ = write!(
                b,
                r#"</tbody></table><p><button type="submit" name="op" value="{prefix}add">Add row</button></p>"#
            );
        }
        b
    }
}

/// A row's value as saved: a row that held a number, boolean or null keeps that type while
/// its text still reads as one; everything else is the string typed.
fn row_value(text: &str, typed: bool) -> Value {
    if typed
        && let Ok(v) = serde_json::from_str::<Value>(text.trim())
        && (v.is_number() || v.is_boolean() || v.is_null())
    {
        return v;
    }
    Value::String(text.to_string())
}

fn editor_page(s: &Signed<'_>, id: &str, ed: &Editor, error: Option<&str>) -> Response {
    let mut b = String::new();
    if let Some(e) = error {
        b.push_str(&error_box("ValidationException", e));
    }
    let _ = write!(
        b,
        r#"<form method="post" action="/console/secret/value/edit" class="card editor">{}{}
<div class="toolbar"><button type="submit" class="primary" formaction="/console/secret/value/save">Save</button> <a class="button" href="{}">Cancel</a></div>
{}</form>"#,
        s.csrf(),
        hidden("id", id),
        esc(&details_url(id)),
        ed.render("")
    );
    s.page(&format!("Edit secret value: {id}"), &b)
}

async fn edit_value(State(console): St, ctx: Ctx, Form(fields): Fields) -> Response {
    let s = signed_or_return!(console, ctx);
    let f = F::new(fields);
    if let Err(r) = s.check_csrf(&f) {
        return *r;
    }
    let id = f.get("id").to_string();
    if f.get("op") == "start" {
        return match s.sm("GetSecretValue", json!({"SecretId": id})).await {
            Ok(v) => {
                let text = v.get("SecretString").and_then(Value::as_str).unwrap_or("");
                editor_page(&s, &id, &Editor::from_value(text), None)
            }
            Err(e) => s.error_page("Edit secret value", &e),
        };
    }
    match Editor::from_form(&f, "") {
        Ok(ed) => editor_page(&s, &id, &ed, None),
        Err((msg, ed)) => editor_page(&s, &id, &ed, Some(&msg)),
    }
}

async fn save_value(State(console): St, ctx: Ctx, Form(fields): Fields) -> Response {
    let s = signed_or_return!(console, ctx);
    let f = F::new(fields);
    if let Err(r) = s.check_csrf(&f) {
        return *r;
    }
    let id = f.get("id").to_string();
    let ed = match Editor::from_form(&f, "") {
        Ok(ed) => ed,
        Err((msg, ed)) => return editor_page(&s, &id, &ed, Some(&msg)),
    };
    if let Some(problem) = ed.problem() {
        let mut page = editor_page(&s, &id, &ed, Some(&problem));
        *page.status_mut() = StatusCode::BAD_REQUEST;
        return page;
    }
    let req = json!({
        "SecretId": id,
        "SecretString": ed.secret_string(),
        "ClientRequestToken": uuid::Uuid::new_v4().to_string(),
    });
    match s.sm("PutSecretValue", req).await {
        Ok(_) => redirect(&format!("{}&msg=value-saved", details_url(&id))),
        Err(e) => {
            let mut page = editor_page(&s, &id, &ed, Some(&format!("{}: {}", e.code, e.message)));
            *page.status_mut() = status_of(&e);
            page
        }
    }
}

// ---------------------------------------------------------------- rotation

async fn rotation_form(State(console): St, ctx: Ctx, Query(params): Params) -> Response {
    let s = signed_or_return!(console, ctx);
    let id = params.get("id").cloned().unwrap_or_default();
    match s.sm("DescribeSecret", json!({"SecretId": id})).await {
        Ok(d) => {
            let rules = d.get("RotationRules").cloned().unwrap_or(Value::Null);
            let schedule = schedule_of(&rules);
            let current = RotationFields {
                function: js(&d, "RotationLambdaARN").to_string(),
                schedule,
                duration: rules.get("Duration").and_then(Value::as_str).unwrap_or("").to_string(),
                enabled: d.get("RotationEnabled").and_then(Value::as_bool).unwrap_or(false),
            };
            rotation_page(&s, &id, &current, None)
        }
        Err(e) => s.error_page("Edit rotation", &e),
    }
}

/// A rotation schedule as it is written: the expression, or `rate(N days)` for rules that
/// give only a number of days.
fn schedule_of(rules: &Value) -> String {
    match rules.get("ScheduleExpression").and_then(Value::as_str) {
        Some(expression) => expression.to_string(),
        None => rules
            .get("AutomaticallyAfterDays")
            .and_then(Value::as_i64)
            .map(|days| format!("rate({days} days)"))
            .unwrap_or_default(),
    }
}

/// The rotation form's fields.
struct RotationFields {
    function: String,
    schedule: String,
    duration: String,
    enabled: bool,
}

fn rotation_page(
    s: &Signed<'_>,
    id: &str,
    current: &RotationFields,
    error: Option<&ApiError>,
) -> Response {
    let mut b = error.map(|e| error_box(&e.code, &e.message)).unwrap_or_default();
    let _ = write!(
        b,
        r#"<form method="post" action="/console/secret/rotation" class="card">{}{}
<p class="field"><label for="function">Rotation function ARN</label><input id="function" name="function" value="{}" placeholder="arn:{}:lambda:REGION:ACCOUNT:function:coffer-builtin-random-password"></p>
<p class="field"><label for="schedule">Rotation schedule (rate(N days), cron(...) or a number of days)</label><input id="schedule" name="schedule" value="{}"></p>
<p class="field"><label for="duration">Window duration (for example 4h; optional)</label><input id="duration" name="duration" value="{}"></p>
<p class="field check"><input type="checkbox" id="immediately" name="immediately" value="true" checked><label for="immediately">Rotate immediately when saved</label></p>
<p><button type="submit" class="primary" name="action" value="save">Save</button> <button type="submit" name="action" value="rotate">Rotate secret immediately</button> {} <a class="button" href="{}">Cancel</a></p></form>"#,
        s.csrf(),
        hidden("id", id),
        esc(&current.function),
        coffer_core::Partition::of_region(s.session.who.region()),
        esc(&current.schedule),
        esc(&current.duration),
        if current.enabled {
            r#"<button type="submit" name="action" value="cancel">Disable rotation</button>"#
        } else {
            ""
        },
        esc(&details_url(id))
    );
    s.page(&format!("Edit rotation: {id}"), &b)
}

async fn rotation_post(State(console): St, ctx: Ctx, Form(fields): Fields) -> Response {
    let s = signed_or_return!(console, ctx);
    let f = F::new(fields);
    if let Err(r) = s.check_csrf(&f) {
        return *r;
    }
    let id = f.get("id");
    let token = uuid::Uuid::new_v4().to_string();
    let notice = if f.get("action") == "rotate" { "rotation-started" } else { "rotation-saved" };
    let result = match f.get("action") {
        "cancel" => s.sm("CancelRotateSecret", json!({"SecretId": id})).await,
        // Rotates again from the stored configuration, as a call without parameters does.
        "rotate" => {
            s.sm("RotateSecret", json!({"SecretId": id, "ClientRequestToken": token})).await
        }
        _ => {
            let schedule = f.get("schedule").trim();
            let mut rules = serde_json::Map::new();
            match schedule.parse::<i64>() {
                Ok(days) => {
                    rules.insert("AutomaticallyAfterDays".into(), days.into());
                }
                Err(_) if !schedule.is_empty() => {
                    rules.insert("ScheduleExpression".into(), schedule.into());
                }
                Err(_) => {}
            }
            if !f.get("duration").trim().is_empty() {
                rules.insert("Duration".into(), f.get("duration").trim().into());
            }
            let mut request = json!({
                "SecretId": id,
                "ClientRequestToken": token,
                "RotateImmediately": f.get("immediately") == "true",
                "RotationRules": rules,
            });
            if !f.get("function").trim().is_empty() {
                request["RotationLambdaARN"] = f.get("function").trim().into();
            }
            s.sm("RotateSecret", request).await
        }
    };
    match result {
        Ok(_) => redirect(&format!("{}&msg={notice}", details_url(id))),
        Err(e) => {
            // Whether rotation is on decides the Disable button: asked, not assumed.
            let enabled = s
                .sm("DescribeSecret", json!({"SecretId": id}))
                .await
                .ok()
                .and_then(|d| d.get("RotationEnabled").and_then(Value::as_bool))
                .unwrap_or(false);
            let current = RotationFields {
                function: f.get("function").to_string(),
                schedule: f.get("schedule").to_string(),
                duration: f.get("duration").to_string(),
                enabled,
            };
            rotation_page(&s, id, &current, Some(&e))
        }
    }
}

// ---------------------------------------------------------------- description, key

async fn description_form(State(console): St, ctx: Ctx, Query(params): Params) -> Response {
    let s = signed_or_return!(console, ctx);
    let id = params.get("id").cloned().unwrap_or_default();
    match s.sm("DescribeSecret", json!({"SecretId": id})).await {
        Ok(d) => description_page(&s, &id, js(&d, "Description"), None),
        Err(e) => s.error_page("Edit description", &e),
    }
}

fn description_page(s: &Signed<'_>, id: &str, current: &str, error: Option<&ApiError>) -> Response {
    let mut b = error.map(|e| error_box(&e.code, &e.message)).unwrap_or_default();
    let _ = write!(
        b,
        r#"<form method="post" action="/console/secret/description" class="card">{}{}
<p class="field"><label for="description">Description</label><textarea id="description" name="description" rows="3">{}</textarea></p>
<p><button type="submit" class="primary">Save</button> <a class="button" href="{}">Cancel</a></p></form>"#,
        s.csrf(),
        hidden("id", id),
        esc(current),
        esc(&details_url(id))
    );
    s.page(&format!("Edit description: {id}"), &b)
}

async fn description_save(State(console): St, ctx: Ctx, Form(fields): Fields) -> Response {
    let s = signed_or_return!(console, ctx);
    let f = F::new(fields);
    if let Err(r) = s.check_csrf(&f) {
        return *r;
    }
    let id = f.get("id");
    match s.sm("UpdateSecret", json!({"SecretId": id, "Description": f.get("description")})).await {
        Ok(_) => redirect(&format!("{}&msg=description-saved", details_url(id))),
        Err(e) => description_page(&s, id, f.get("description"), Some(&e)),
    }
}

/// The account's KMS keys and aliases in the session's region, as `(value, label)`.
async fn key_choices(s: &Signed<'_>) -> Result<Vec<(String, String)>, ApiError> {
    let mut out =
        vec![("alias/aws/secretsmanager".to_string(), "aws/secretsmanager (default)".to_string())];
    let aliases = s.kms("ListAliases", json!({"Limit": 100})).await?;
    for a in aliases.get("Aliases").and_then(Value::as_array).into_iter().flatten() {
        let name = js(a, "AliasName");
        if name.starts_with("alias/aws/") || a.get("TargetKeyId").is_none() {
            continue;
        }
        out.push((name.to_string(), format!("{} (alias)", name.trim_start_matches("alias/"))));
    }
    let keys = s.kms("ListKeys", json!({"Limit": 100})).await?;
    for k in keys.get("Keys").and_then(Value::as_array).into_iter().flatten() {
        let arn = js(k, "KeyArn");
        out.push((arn.to_string(), format!("{} (key)", js(k, "KeyId"))));
    }
    Ok(out)
}

/// The encryption key field: a list of the account's keys, or, for a user who may not list
/// keys or aliases (UpdateSecret and CreateSecret do not need it), a text field to type
/// the key in, with the reason the list is missing.
fn key_field(
    choices: &Result<Vec<(String, String)>, ApiError>,
    typed: &str,
    selected: impl Fn(&str) -> bool,
) -> String {
    let mut b = String::new();
    match choices {
        Ok(choices) => {
            b.push_str(r#"<p class="field"><label for="kms_key">Encryption key</label><select id="kms_key" name="kms_key">"#);
            for (value, label) in choices {
                let _ = write!(
                    b,
                    r#"<option value="{}"{}>{}</option>"#,
                    esc(value),
                    if selected(value) { " selected" } else { "" },
                    esc(label)
                );
            }
            b.push_str("</select></p>");
        }
        Err(e) => {
            let _ = write!(
                b,
                r#"<p class="field"><label for="kms_key">Encryption key (key ID, key ARN or alias)</label><input type="text" id="kms_key" name="kms_key" value="{}" aria-describedby="kms_key_hint" spellcheck="false"></p>
<p class="hint" id="kms_key_hint">The list of keys could not be read ({}: {}). Type the key instead; alias/aws/secretsmanager is the default key.</p>"#,
                esc(typed),
                esc(&e.code),
                esc(&e.message)
            );
        }
    }
    b
}

async fn key_form(State(console): St, ctx: Ctx, Query(params): Params) -> Response {
    let s = signed_or_return!(console, ctx);
    let id = params.get("id").cloned().unwrap_or_default();
    key_page(&s, &id, None).await
}

async fn key_page(s: &Signed<'_>, id: &str, error: Option<&ApiError>) -> Response {
    let d = match s.sm("DescribeSecret", json!({"SecretId": id})).await {
        Ok(d) => d,
        Err(e) => return s.error_page("Edit encryption key", &e),
    };
    let current = js(&d, "KmsKeyId");
    let choices = key_choices(s).await;
    let mut b = error.map(|e| error_box(&e.code, &e.message)).unwrap_or_default();
    let _ = write!(
        b,
        r#"<form method="post" action="/console/secret/key" class="card">{}{}<p>Current key: <span class="kms-key">{}</span></p>{}"#,
        s.csrf(),
        hidden("id", id),
        esc(if current.is_empty() { "aws/secretsmanager" } else { current }),
        key_field(&choices, current, |value| {
            !current.is_empty() && (value == current || value.ends_with(current))
        })
    );
    let _ = write!(
        b,
        r#"<p><button type="submit" class="primary">Save</button> <a class="button" href="{}">Cancel</a></p></form>"#,
        esc(&details_url(id))
    );
    s.page(&format!("Edit encryption key: {id}"), &b)
}

async fn key_save(State(console): St, ctx: Ctx, Form(fields): Fields) -> Response {
    let s = signed_or_return!(console, ctx);
    let f = F::new(fields);
    if let Err(r) = s.check_csrf(&f) {
        return *r;
    }
    let id = f.get("id");
    match s.sm("UpdateSecret", json!({"SecretId": id, "KmsKeyId": f.get("kms_key")})).await {
        Ok(_) => redirect(&format!("{}&msg=key-saved", details_url(id))),
        Err(e) => key_page(&s, id, Some(&e)).await,
    }
}

// ---------------------------------------------------------------- replication

async fn replicate_form(State(console): St, ctx: Ctx, Query(params): Params) -> Response {
    let s = signed_or_return!(console, ctx);
    let id = params.get("id").cloned().unwrap_or_default();
    replicate_page(&s, &id, "", "", None)
}

fn replicate_page(
    s: &Signed<'_>,
    id: &str,
    region: &str,
    key: &str,
    error: Option<&ApiError>,
) -> Response {
    let mut b = error.map(|e| error_box(&e.code, &e.message)).unwrap_or_default();
    let _ = write!(
        b,
        r#"<form method="post" action="/console/secret/replication" class="card">{}{}{}
<p>A replica is a copy of this secret in another Region, kept in step with it: every change made here reaches it.</p>
{}{}
<p><button type="submit" class="primary">Replicate</button> <a class="button" href="{}">Cancel</a></p></form>"#,
        s.csrf(),
        hidden("id", id),
        hidden("op", "add"),
        text_input("region", "region", "AWS Region", region),
        text_input(
            "replica_kms_key",
            "kms_key",
            "Encryption key in that Region (key ID, key ARN or alias; empty for aws/secretsmanager)",
            key
        ),
        esc(&details_url(id))
    );
    s.page(&format!("Replicate secret: {id}"), &b)
}

/// Replicate to a Region (ReplicateSecretToRegions), remove a replica
/// (RemoveRegionsFromReplication), or promote a replica (StopReplicationToReplica).
async fn replication_post(State(console): St, ctx: Ctx, Form(fields): Fields) -> Response {
    let s = signed_or_return!(console, ctx);
    let f = F::new(fields);
    if let Err(r) = s.check_csrf(&f) {
        return *r;
    }
    let id = f.get("id");
    let region = f.get("region").trim();
    match f.get("op") {
        "remove" => {
            let req = json!({"SecretId": id, "RemoveReplicaRegions": [region]});
            match s.sm("RemoveRegionsFromReplication", req).await {
                Ok(_) => redirect(&format!("{}&msg=replica-removed", details_url(id))),
                Err(e) => s.error_page("Replication", &e),
            }
        }
        "promote" => match s.sm("StopReplicationToReplica", json!({"SecretId": id})).await {
            Ok(_) => redirect(&format!("{}&msg=promoted", details_url(id))),
            Err(e) => s.error_page("Replication", &e),
        },
        _ => {
            let key = f.get("kms_key").trim();
            let mut add = json!({"Region": region});
            if !key.is_empty() {
                add["KmsKeyId"] = json!(key);
            }
            let req = json!({"SecretId": id, "AddReplicaRegions": [add]});
            match s.sm("ReplicateSecretToRegions", req).await {
                Ok(answer) => {
                    // AWS answers a Region that could not take the replica with success and
                    // a Failed status: the page must not call that a start.
                    let failed = answer
                        .get("ReplicationStatus")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .any(|r| js(r, "Region") == region && js(r, "Status") == "Failed");
                    let msg = if failed { "replication-failed" } else { "replication-started" };
                    redirect(&format!("{}&msg={msg}", details_url(id)))
                }
                Err(e) => replicate_page(&s, id, region, key, Some(&e)),
            }
        }
    }
}

// ---------------------------------------------------------------- resource policy

async fn policy_form(State(console): St, ctx: Ctx, Query(params): Params) -> Response {
    let s = signed_or_return!(console, ctx);
    let id = params.get("id").cloned().unwrap_or_default();
    match s.sm("GetResourcePolicy", json!({"SecretId": id})).await {
        Ok(p) => {
            let text =
                p.get("ResourcePolicy").and_then(Value::as_str).map(pretty).unwrap_or_default();
            policy_page(&s, &id, &text, true, &message(&params))
        }
        Err(e) => s.error_page("Resource permissions", &e),
    }
}

fn policy_page(s: &Signed<'_>, id: &str, text: &str, block_public: bool, top: &str) -> Response {
    let mut b = top.to_string();
    let _ = write!(
        b,
        r#"<form method="post" action="/console/secret/policy" class="card">{}{}
<p><button type="submit" class="primary" name="op" value="save">Save</button></p>
<p class="field"><label for="policy">Resource policy</label><textarea id="policy" name="policy" rows="14" spellcheck="false">{}</textarea></p>
<p class="field check"><input type="checkbox" id="block_public" name="block_public" value="on"{}><label for="block_public">Block public policy (BlockPublicPolicy)</label></p>
<p><button type="submit" name="op" value="validate">Validate</button> <button type="submit" name="op" value="delete">Delete policy</button> <a class="button" href="{}">Cancel</a></p>
</form>"#,
        s.csrf(),
        hidden("id", id),
        esc(text),
        if block_public { " checked" } else { "" },
        esc(&details_url(id))
    );
    s.page(&format!("Resource permissions: {id}"), &b)
}

async fn policy_post(State(console): St, ctx: Ctx, Form(fields): Fields) -> Response {
    let s = signed_or_return!(console, ctx);
    let f = F::new(fields);
    if let Err(r) = s.check_csrf(&f) {
        return *r;
    }
    let id = f.get("id");
    let text = f.get("policy");
    let block = f.get("block_public") == "on";
    match f.get("op") {
        "validate" => {
            let top = match s
                .sm("ValidateResourcePolicy", json!({"SecretId": id, "ResourcePolicy": text}))
                .await
            {
                Ok(v) => {
                    let passed =
                        v.get("PolicyValidationPassed").and_then(Value::as_bool).unwrap_or(false);
                    let mut t = if passed {
                        notice("Policy validation passed.")
                    } else {
                        String::from(
                            r#"<div class="error" role="alert"><p><strong>Policy validation failed.</strong></p><ul class="findings">"#,
                        )
                    };
                    if !passed {
                        for finding in v
                            .get("ValidationErrors")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                        {
                            let _ = write!(
                                t,
                                "<li><strong>{}</strong>: {}</li>",
                                esc(js(finding, "CheckName")),
                                esc(js(finding, "ErrorMessage"))
                            );
                        }
                        t.push_str("</ul></div>");
                    }
                    t
                }
                Err(e) => error_box(&e.code, &e.message),
            };
            policy_page(&s, id, text, block, &top)
        }
        "delete" => match s.sm("DeleteResourcePolicy", json!({"SecretId": id})).await {
            Ok(_) => redirect(&format!("{}&msg=policy-deleted", details_url(id))),
            Err(e) => policy_page(&s, id, text, block, &error_box(&e.code, &e.message)),
        },
        _ => {
            let req = json!({"SecretId": id, "ResourcePolicy": text, "BlockPublicPolicy": block});
            match s.sm("PutResourcePolicy", req).await {
                Ok(_) => redirect(&format!("{}&msg=policy-saved", details_url(id))),
                Err(e) => policy_page(&s, id, text, block, &error_box(&e.code, &e.message)),
            }
        }
    }
}

// ---------------------------------------------------------------- tags

async fn tags_form(State(console): St, ctx: Ctx, Query(params): Params) -> Response {
    let s = signed_or_return!(console, ctx);
    let id = params.get("id").cloned().unwrap_or_default();
    tags_page(&s, &id, &message(&params)).await
}

async fn tags_page(s: &Signed<'_>, id: &str, top: &str) -> Response {
    let d = match s.sm("DescribeSecret", json!({"SecretId": id})).await {
        Ok(d) => d,
        Err(e) => return s.error_page("Tags", &e),
    };
    let mut b = top.to_string();
    b.push_str(r#"<section class="card"><h2>Tags</h2>"#);
    let tags: Vec<&Value> = d.get("Tags").and_then(Value::as_array).into_iter().flatten().collect();
    if tags.is_empty() {
        b.push_str("<p>No tags.</p>");
    } else {
        b.push_str(r#"<table class="tags"><thead><tr><th scope="col">Key</th><th scope="col">Value</th><th scope="col"><span class="visually-hidden">Remove</span></th></tr></thead><tbody>"#);
        for t in tags {
            let key = js(t, "Key");
            let _ = write!(
                b,
                r#"<tr><td>{}</td><td>{}</td><td><form method="post" action="/console/secret/tags" class="inline">{}{}{}{}<button type="submit" aria-label="Remove tag {}">Remove</button></form></td></tr>"#,
                esc(key),
                esc(js(t, "Value")),
                s.csrf(),
                hidden("id", id),
                hidden("op", "remove"),
                hidden("tag_key", key),
                esc(key)
            );
        }
        b.push_str("</tbody></table>");
    }
    let _ = write!(
        b,
        r#"</section><form method="post" action="/console/secret/tags" class="card"><h2>Add tag</h2>{}{}{}{}{}<p><button type="submit" class="primary">Add tag</button> <a class="button" href="{}">Back to secret</a></p></form>"#,
        s.csrf(),
        hidden("id", id),
        hidden("op", "add"),
        text_input("tag_key", "tag_key", "Tag key", ""),
        text_input("tag_value", "tag_value", "Tag value", ""),
        esc(&details_url(id))
    );
    s.page(&format!("Tags: {id}"), &b)
}

async fn tags_post(State(console): St, ctx: Ctx, Form(fields): Fields) -> Response {
    let s = signed_or_return!(console, ctx);
    let f = F::new(fields);
    if let Err(r) = s.check_csrf(&f) {
        return *r;
    }
    let id = f.get("id");
    let result = if f.get("op") == "remove" {
        s.sm("UntagResource", json!({"SecretId": id, "TagKeys": [f.get("tag_key")]})).await
    } else {
        s.sm("TagResource", json!({"SecretId": id, "Tags": [{"Key": f.get("tag_key"), "Value": f.get("tag_value")}]})).await
    };
    match result {
        Ok(_) => redirect(&format!("/console/secret/tags?id={}&msg=tags-saved", url(id))),
        Err(e) => tags_page(&s, id, &error_box(&e.code, &e.message)).await,
    }
}

// ---------------------------------------------------------------- create, delete, restore

async fn create_form(State(console): St, ctx: Ctx) -> Response {
    let s = signed_or_return!(console, ctx);
    let ed = Editor {
        plaintext: false,
        rows: vec![(String::new(), String::new())],
        plain: String::new(),
        typed: Vec::new(),
    };
    let tags = Editor {
        plaintext: false,
        rows: vec![(String::new(), String::new())],
        plain: String::new(),
        typed: Vec::new(),
    };
    create_page(&s, "", "", "alias/aws/secretsmanager", &ed, &tags, None).await
}

async fn create_page(
    s: &Signed<'_>,
    name: &str,
    description: &str,
    key: &str,
    ed: &Editor,
    tags: &Editor,
    error: Option<&ApiError>,
) -> Response {
    let choices = key_choices(s).await;
    let mut b = error.map(|e| error_box(&e.code, &e.message)).unwrap_or_default();
    let _ = write!(
        b,
        r#"<form method="post" action="/console/secrets/new" class="card">{}
<button type="submit" name="op" value="store" class="visually-hidden" tabindex="-1" aria-hidden="true">Store</button>
{}<p class="field"><label for="description">Description</label><textarea id="description" name="description" rows="2">{}</textarea></p>
{}"#,
        s.csrf(),
        text_input("name", "name", "Secret name", name),
        esc(description),
        key_field(&choices, key, |value| value == key)
    );
    b.push_str("<fieldset><legend>Secret value</legend>");
    b.push_str(&ed.render(""));
    b.push_str("</fieldset><fieldset><legend>Tags</legend>");
    b.push_str(&hidden("tn", &tags.rows.len().to_string()));
    b.push_str(r#"<table class="kv-editor"><thead><tr><th scope="col">Tag key</th><th scope="col">Tag value</th><th scope="col"><span class="visually-hidden">Remove</span></th></tr></thead><tbody>"#);
    for (i, (k, v)) in tags.rows.iter().enumerate() {
        let n = i + 1;
        let _ = write!(
            b,
            r#"<tr><td><label class="visually-hidden" for="tk{i}">Tag key {n}</label><input type="text" id="tk{i}" name="tk{i}" value="{}"></td><td><label class="visually-hidden" for="tv{i}">Tag value {n}</label><input type="text" id="tv{i}" name="tv{i}" value="{}"></td><td><button type="submit" name="tremove" value="{i}" aria-label="Remove tag row {n}">Remove</button></td></tr>"#,
            esc(k),
            esc(v)
        );
    }
    b.push_str(r#"</tbody></table><p><button type="submit" name="op" value="tadd">Add tag</button></p></fieldset>
<p><button type="submit" name="op" value="store" class="primary">Store</button> <a class="button" href="/console/secrets">Cancel</a></p></form>"#);
    s.page("Store a new secret", &b)
}

async fn create_post(State(console): St, ctx: Ctx, Form(fields): Fields) -> Response {
    let s = signed_or_return!(console, ctx);
    let f = F::new(fields);
    if let Err(r) = s.check_csrf(&f) {
        return *r;
    }
    let name = f.get("name");
    let description = f.get("description");
    let key = f.get("kms_key");
    let (ed, ed_error) = match Editor::from_form(&f, "") {
        Ok(ed) => (ed, None),
        Err((msg, ed)) => (ed, Some(msg)),
    };
    // Tag rows use the "t" prefix for their fields but their own buttons.
    let tn: usize = f.get("tn").parse().unwrap_or(0).min(50);
    let mut tag_rows: Vec<(String, String)> = (0..tn)
        .map(|i| (f.get(&format!("tk{i}")).to_string(), f.get(&format!("tv{i}")).to_string()))
        .collect();
    if let Some(i) = f.0.get("tremove").and_then(|v| v.parse::<usize>().ok()) {
        if i < tag_rows.len() {
            tag_rows.remove(i);
        }
    } else if f.get("op") == "tadd" {
        tag_rows.push((String::new(), String::new()));
    }
    let tags = Editor { plaintext: false, rows: tag_rows, plain: String::new(), typed: Vec::new() };
    if let Some(msg) = ed_error {
        let e = ApiError { code: "ValidationException".into(), message: msg };
        return create_page(&s, name, description, key, &ed, &tags, Some(&e)).await;
    }
    if f.get("op") != "store" || f.0.contains_key("remove") || f.0.contains_key("tremove") {
        return create_page(&s, name, description, key, &ed, &tags, None).await;
    }
    if let Some(message) = ed.problem() {
        let e = ApiError { code: "ValidationException".into(), message };
        return create_page(&s, name, description, key, &ed, &tags, Some(&e)).await;
    }
    let mut req = json!({
        "Name": name,
        "SecretString": ed.secret_string(),
        "ClientRequestToken": uuid::Uuid::new_v4().to_string(),
    });
    if !description.is_empty() {
        req["Description"] = json!(description);
    }
    if !key.is_empty() && key != "alias/aws/secretsmanager" {
        req["KmsKeyId"] = json!(key);
    }
    let tag_list: Vec<Value> = tags
        .rows
        .iter()
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| json!({"Key": k, "Value": v}))
        .collect();
    if !tag_list.is_empty() {
        req["Tags"] = Value::Array(tag_list);
    }
    match s.sm("CreateSecret", req).await {
        Ok(_) => redirect(&format!("{}&msg=created", details_url(name))),
        Err(e) => create_page(&s, name, description, key, &ed, &tags, Some(&e)).await,
    }
}

async fn delete_form(State(console): St, ctx: Ctx, Query(params): Params) -> Response {
    let s = signed_or_return!(console, ctx);
    let id = params.get("id").cloned().unwrap_or_default();
    delete_page(&s, &id, "30", None)
}

fn delete_page(s: &Signed<'_>, id: &str, window: &str, error: Option<&ApiError>) -> Response {
    let mut b = error.map(|e| error_box(&e.code, &e.message)).unwrap_or_default();
    let _ = write!(
        b,
        r#"<form method="post" action="/console/secret/delete" class="card">{}{}
<p>The secret can be restored until its waiting period ends; then it and all its versions are deleted.</p>
<p class="field"><label for="recovery_window">Waiting period (days, 7 to 30)</label><input type="number" id="recovery_window" name="recovery_window" min="7" max="30" value="{}"></p>
<p><button type="submit" class="danger">Schedule deletion</button> <a class="button" href="{}">Cancel</a></p></form>"#,
        s.csrf(),
        hidden("id", id),
        esc(window),
        esc(&details_url(id))
    );
    s.page(&format!("Delete secret: {id}"), &b)
}

async fn delete_post(State(console): St, ctx: Ctx, Form(fields): Fields) -> Response {
    let s = signed_or_return!(console, ctx);
    let f = F::new(fields);
    if let Err(r) = s.check_csrf(&f) {
        return *r;
    }
    let id = f.get("id");
    let window: i64 = match f.get("recovery_window").trim().parse() {
        Ok(w) => w,
        Err(_) => {
            let e = ApiError {
                code: "InvalidParameterException".into(),
                message: "The waiting period must be a number of days from 7 to 30.".into(),
            };
            return delete_page(&s, id, f.get("recovery_window"), Some(&e));
        }
    };
    match s.sm("DeleteSecret", json!({"SecretId": id, "RecoveryWindowInDays": window})).await {
        Ok(_) => redirect(&format!("{}&msg=deleted", details_url(id))),
        Err(e) => delete_page(&s, id, f.get("recovery_window"), Some(&e)),
    }
}

async fn restore_post(State(console): St, ctx: Ctx, Form(fields): Fields) -> Response {
    let s = signed_or_return!(console, ctx);
    let f = F::new(fields);
    if let Err(r) = s.check_csrf(&f) {
        return *r;
    }
    let id = f.get("id");
    match s.sm("RestoreSecret", json!({"SecretId": id})).await {
        Ok(_) => redirect(&format!("{}&msg=restored", details_url(id))),
        Err(e) => s.error_page("Restore secret", &e),
    }
}

// ---------------------------------------------------------------- audit

async fn audit(State(console): St, ctx: Ctx, Query(params): Params) -> Response {
    let s = signed_or_return!(console, ctx);
    let id = params.get("id").cloned().unwrap_or_default();
    let (arn, name) = match s.sm("DescribeSecret", json!({"SecretId": id})).await {
        Ok(d) => (s_str(&d, "ARN"), s_str(&d, "Name")),
        Err(e) => return s.error_page("Audit events", &e),
    };
    // An event names the secret as its caller did (by ARN or by name): both are looked up,
    // each with its own paging token, and merged by event id, newest first.
    let mut events: Vec<Value> = Vec::new();
    let mut next = Vec::new();
    let mut b = String::new();
    for (which, resource) in [("next_arn", &arn), ("next_name", &name)] {
        let token = params.get(which).map(String::as_str);
        if token == Some("done") {
            next.push((which, "done".to_string()));
            continue;
        }
        let mut req = json!({"LookupAttributes": [{"AttributeKey": "ResourceName", "AttributeValue": resource}], "MaxResults": 50});
        if let Some(t) = token.filter(|t| !t.is_empty()) {
            req["NextToken"] = json!(t);
        }
        match s.call(LOOKUP_EVENTS, req).await {
            Err(e) => {
                b.push_str(&error_box(&e.code, &e.message));
                next.push((which, "done".to_string()));
            }
            Ok(answer) => {
                for e in answer.get("Events").and_then(Value::as_array).into_iter().flatten() {
                    if !events.iter().any(|seen| js(seen, "EventId") == js(e, "EventId")) {
                        events.push(e.clone());
                    }
                }
                let token = answer.get("NextToken").and_then(Value::as_str).unwrap_or("done");
                next.push((which, token.to_string()));
            }
        }
    }
    events.sort_by(|a, b| {
        let t = |v: &Value| v.get("EventTime").and_then(Value::as_f64).unwrap_or(0.0);
        t(b).total_cmp(&t(a))
    });
    b.push_str(r#"<div class="scroll"><table class="events"><caption>Recent events</caption><thead><tr><th scope="col">Event time</th><th scope="col">Event name</th><th scope="col">User name</th><th scope="col">Source IP address</th><th scope="col">User agent</th></tr></thead><tbody>"#);
    for e in &events {
        let detail: Value = e
            .get("CloudTrailEvent")
            .and_then(Value::as_str)
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or(Value::Null);
        let _ = write!(
            b,
            "<tr><td>{}</td><td class=\"event-name\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            date(e.get("EventTime")),
            esc(js(e, "EventName")),
            esc(js(e, "Username")),
            esc(js(&detail, "sourceIPAddress")),
            esc(js(&detail, "userAgent"))
        );
    }
    b.push_str("</tbody></table></div>");
    if next.iter().any(|(_, t)| t != "done") {
        let mut link = format!("/console/secret/audit?id={}", url(&id));
        for (which, token) in &next {
            let _ = write!(link, "&{which}={}", url(token));
        }
        let _ = write!(b, r#"<p><a href="{}">Older events</a></p>"#, esc(&link));
    }
    let _ = write!(b, r#"<p><a href="{}">Back to secret</a></p>"#, esc(&details_url(&id)));
    s.page(&format!("Audit events: {id}"), &b)
}

// ---------------------------------------------------------------- KMS keys

async fn keys(State(console): St, ctx: Ctx, Query(params): Params) -> Response {
    let s = signed_or_return!(console, ctx);
    let mut b = message(&params);
    match keys_table(&s).await {
        Ok(t) => b.push_str(&t),
        Err(e) => b.push_str(&error_box(&e.code, &e.message)),
    }
    let _ = write!(
        b,
        r#"<form method="post" action="/console/keys/create" class="card"><h2>Create key</h2>{}{}<p><button type="submit" class="primary">Create key</button></p></form>"#,
        s.csrf(),
        text_input("key_description", "description", "Key description", "")
    );
    s.page("KMS keys", &b)
}

async fn keys_table(s: &Signed<'_>) -> Result<String, ApiError> {
    let keys = s.kms("ListKeys", json!({"Limit": 100})).await?;
    let aliases = s.kms("ListAliases", json!({"Limit": 100})).await?;
    let mut b = String::from(
        r#"<div class="scroll"><table class="keys"><caption>Customer managed and AWS managed keys</caption><thead><tr><th scope="col">Key ID</th><th scope="col">Aliases</th><th scope="col">Description</th><th scope="col">Status</th><th scope="col">Actions</th></tr></thead><tbody>"#,
    );
    for k in keys.get("Keys").and_then(Value::as_array).into_iter().flatten() {
        let key_id = js(k, "KeyId");
        let names: Vec<&str> = aliases
            .get("Aliases")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|a| js(a, "TargetKeyId") == key_id)
            .map(|a| js(a, "AliasName"))
            .collect();
        let (description, state, manager) =
            match s.kms("DescribeKey", json!({"KeyId": key_id})).await {
                Ok(d) => {
                    let m = &d["KeyMetadata"];
                    (s_str(m, "Description"), s_str(m, "KeyState"), s_str(m, "KeyManager"))
                }
                Err(e) => (String::new(), e.code, String::new()),
            };
        let action = match (manager.as_str(), state.as_str()) {
            ("CUSTOMER", "Enabled") => Some(("disable", "Disable key")),
            ("CUSTOMER", "Disabled") => Some(("enable", "Enable key")),
            _ => None,
        };
        let form = action.map_or(String::new(), |(op, label)| {
            format!(
                r#"<form method="post" action="/console/keys/state" class="inline">{}{}{}<button type="submit" aria-label="{} {}">{}</button></form>"#,
                s.csrf(),
                hidden("key_id", key_id),
                hidden("op", op),
                esc(label),
                esc(key_id),
                esc(label)
            )
        });
        let _ = write!(
            b,
            "<tr><td class=\"key-id\">{}</td><td>{}</td><td>{}</td><td class=\"key-state\">{}</td><td>{}</td></tr>",
            esc(key_id),
            esc(&names.join(", ")),
            esc(&description),
            esc(&state),
            form
        );
    }
    b.push_str("</tbody></table></div>");
    Ok(b)
}

async fn key_create(State(console): St, ctx: Ctx, Form(fields): Fields) -> Response {
    let s = signed_or_return!(console, ctx);
    let f = F::new(fields);
    if let Err(r) = s.check_csrf(&f) {
        return *r;
    }
    let mut req = json!({});
    if !f.get("description").is_empty() {
        req["Description"] = json!(f.get("description"));
    }
    match s.kms("CreateKey", req).await {
        Ok(_) => redirect("/console/keys?msg=key-created"),
        Err(e) => s.error_page("KMS keys", &e),
    }
}

async fn key_state(State(console): St, ctx: Ctx, Form(fields): Fields) -> Response {
    let s = signed_or_return!(console, ctx);
    let f = F::new(fields);
    if let Err(r) = s.check_csrf(&f) {
        return *r;
    }
    let (op, msg) = if f.get("op") == "enable" {
        ("EnableKey", "key-enabled")
    } else {
        ("DisableKey", "key-disabled")
    };
    match s.kms(op, json!({"KeyId": f.get("key_id")})).await {
        Ok(_) => redirect(&format!("/console/keys?msg={msg}")),
        Err(e) => s.error_page("KMS keys", &e),
    }
}
