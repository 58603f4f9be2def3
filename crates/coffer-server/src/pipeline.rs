//! The one path every call takes, whoever makes it: the API's front door (`http`), the
//! console, and the service's own callers. Its stages, in order, each with what it takes
//! and gives in its signature:
//!
//! identify (`identify`: credentials → the caller's context, or a refusal) → begin the
//! audit record (`audit::CallRecord::begin`) → quota → decode and validate (`decode`) →
//! authorize (`auth::authorize`, typed) → handle (`dispatch`) → conclude the record.
//!
//! The JSON 1.1 services enter through [`run`]/[`call`]; STS and the IAM API (AWS's query
//! protocol) through [`run_query`]/[`call_query`], which decode the form (`query`) and take
//! the same stages: their calls are identified, audited and counted against their quotas
//! as every other call is, and their handlers (`dispatch::dispatch_query`) authorize on the
//! entity or role the form names.
//!
//! The audit record and the LastAccessedDate updates travel in the call's
//! [`RequestContext`]; nothing of a call is kept in a thread-local. Read-only calls share
//! one read transaction for all their stages (the store's `read_scope`: see
//! `coffer_store::Store::read_scope` for why that one is per thread); what that scope
//! looked up reaches the call's write in its context too (`RequestContext::handoff`).

use crate::audit::{self, CallRecord, Source, Unwritten};
use crate::auth::{self, AuthFailure, Authenticated, RawRequest};
use crate::dispatch::{dispatch, dispatch_query};
use crate::query::{self, Form};
use crate::secrets::AccessRecords;
use crate::submitted::{self, OwnedCall, Staged};
use crate::{App, RequestContext};
use coffer_core::{AwsError, ErrorCode, Scope};
use coffer_wire::model::ServiceModel;
use coffer_wire::operation::{Operation, Service};
use coffer_wire::protocol::decode_request;
use coffer_wire::validate::validate_input;
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use zeroize::Zeroize;

/// How a caller proves who it is.
#[derive(Debug)]
pub enum Credentials {
    /// A SigV4-signed request, verified against its body as the call's first stage.
    Signed(RawRequest),
    /// A principal verified already: a console session's, looked up again for each call
    /// ([`sign_in`], [`resume`]).
    Verified(Authenticated),
    /// `--dev`: the account and region the credentials name. Nothing is verified, and
    /// nothing is authorized.
    Unverified { scope: Scope, access_key_id: String },
}

/// Who makes a call, and from where.
#[derive(Debug)]
pub struct Caller {
    pub credentials: Credentials,
    pub request_id: String,
    /// Where the call came from, as its event records it.
    pub source: Source,
    /// Whether it arrived over TLS (`aws:SecureTransport`).
    pub secure: bool,
}

impl Caller {
    /// A request that came over the wire, signed (or, with `--dev`, only naming its scope).
    pub fn over_the_wire(
        credentials: Credentials,
        raw_source: &RawRequest,
        request_id: &str,
    ) -> Caller {
        Caller {
            source: Source::of(raw_source),
            secure: raw_source.secure,
            credentials,
            request_id: request_id.to_string(),
        }
    }

    /// A call made through the console by a signed-in principal (`Credentials::Verified`,
    /// or `Unverified` with `--dev`). Its event is marked as CloudTrail marks console calls.
    pub fn console(
        credentials: Credentials,
        ip: Option<IpAddr>,
        user_agent: &str,
        secure: bool,
    ) -> Caller {
        Caller {
            credentials,
            request_id: uuid::Uuid::new_v4().to_string(),
            source: Source { ip, user_agent: user_agent.to_string(), console: true },
            secure,
        }
    }
}

/// What a call came to: its answer, and its audit event when that was not committed with
/// the call's change and still has to be written (before the answer is sent).
pub struct Outcome {
    pub result: Result<Vec<u8>, AwsError>,
    pub unwritten: Option<Unwritten>,
}

/// What a call carries, as its protocol decodes it.
enum Request {
    /// AWS JSON 1.1: the operation's JSON document (which the signature covers).
    Json(Vec<u8>),
    /// The query protocol (STS, IAM): the body the signature covers, and the form that
    /// holds the parameters (the body's, or the query string's).
    Query { body: Vec<u8>, form: Form },
}

impl Request {
    /// The bytes the signature covers.
    fn signed(&self) -> &[u8] {
        match self {
            Request::Json(body) | Request::Query { body, .. } => body,
        }
    }

    /// Wipes the body of a call that ends here: it may hold a value.
    fn wipe(self) {
        match self {
            Request::Json(mut body) | Request::Query { mut body, .. } => body.zeroize(),
        }
    }
}

/// What a call asks for: an operation, or (query protocol) an action its service does not
/// have, refused once the caller is identified (`InvalidAction`, as AWS answers it) and
/// recorded under the name sent, cut to `query::MAX_ECHOED_ACTION` characters.
#[derive(Clone, Copy)]
enum Asked<'a> {
    Op(Operation),
    Unknown { service: Service, action: &'a str },
}

impl Asked<'_> {
    fn service(self) -> Service {
        match self {
            Asked::Op(op) => op.service(),
            Asked::Unknown { service, .. } => service,
        }
    }

    /// Begins the call's record once its caller is known.
    fn begin_record(
        self,
        ctx: &RequestContext,
        identity: coffer_audit::event::UserIdentity,
        source: &Source,
        model: Option<&ServiceModel>,
    ) -> CallRecord {
        let (scope, id) = (&ctx.scope, &ctx.request_id);
        match self {
            Asked::Op(op) => CallRecord::begin(scope, id, identity, source, op, model),
            Asked::Unknown { service, action } => {
                CallRecord::begin_unknown(scope, id, identity, source, service, action)
            }
        }
    }
}

/// Runs a call through every stage and writes its event: for callers that may block (the
/// console, a worker thread). `body` is the operation's JSON request.
pub fn call(
    app: &Arc<App>,
    caller: &Caller,
    op: Operation,
    body: Vec<u8>,
) -> Result<Vec<u8>, AwsError> {
    let Outcome { result, unwritten } = run(app, caller, op, body);
    if let Some(unwritten) = unwritten {
        audit::write_unwritten(app, unwritten)?;
    }
    result
}

/// Runs a query-protocol call (STS, IAM) through every stage and writes its event, for a
/// caller that may block. `body` is what the signature covers, `form` the parameters (the
/// body's, or the query string's). Errors come back in the query protocol's terms.
pub fn call_query(
    app: &Arc<App>,
    caller: &Caller,
    service: Service,
    body: Vec<u8>,
    form: Form,
) -> Result<Vec<u8>, AwsError> {
    let Outcome { result, unwritten } = run_query(app, caller, service, body, form);
    if let Some(unwritten) = unwritten {
        audit::write_unwritten(app, unwritten).map_err(|e| query::in_query_terms(service, e))?;
    }
    result
}

/// [`call_query`] but for the last write of the call's event, which is returned.
pub fn run_query(
    app: &Arc<App>,
    caller: &Caller,
    service: Service,
    body: Vec<u8>,
    form: Form,
) -> Outcome {
    // Decode: the form's Action names the operation. An action the service does not have
    // is refused only once the caller is identified, as AWS does.
    let decoded = query::operation(service, &form);
    let asked = match &decoded {
        Ok(op) => Asked::Op(*op),
        Err((_, shown)) => Asked::Unknown { service, action: shown },
    };
    // No shared read: STS and IAM calls read little, and AssumeRole and GetSessionToken
    // write (a session) although they count as reads.
    let request = Request::Query { body, form };
    let (result, record, _) = serve(app, caller, asked, request, AccessRecords::immediate());
    // Errors in the protocol's terms, which the event records as the answer names them.
    let result = result.map_err(|e| query::in_query_terms(service, e));
    // The answer itself is never recorded: STS's and IAM's may hold credentials.
    let unwritten = record.conclude(&result.as_ref().map(|_| Vec::new()).map_err(Clone::clone));
    Outcome { result, unwritten }
}

/// Runs a call through every stage but the last write of its event, which is returned
/// for the caller to write ([`call`], or the front door without holding a thread).
pub fn run(app: &Arc<App>, caller: &Caller, op: Operation, body: Vec<u8>) -> Outcome {
    let asked = Asked::Op(op);
    // A read-only call, and every call on a store whose transactions never wait (`--dev`),
    // reads through one transaction from authentication to its answer; its LastAccessedDate
    // updates are written once that transaction is over.
    // Any other call reads in one transaction too up to its handler (the caller's key, the
    // secret authorization decides on), ended before the handler's write waits for its
    // commit: one snapshot (on PostgreSQL, one BEGIN) instead of one per stage.
    if !(op.read_only() || app.writes_inline()) {
        let Some(admitted) = admit_for_write(app, caller, asked, body) else {
            return Outcome { result: Err(AwsError::internal()), unwritten: None };
        };
        return handled(app, admitted);
    }
    let (mut body, mut served) = (Some(body), None);
    let handoff = app.store.read_scope(&mut || {
        let request = Request::Json(body.take().unwrap_or_default());
        served = Some(serve(app, caller, asked, request, AccessRecords::deferred()));
    });
    let Some((result, record, mut ctx)) = served else {
        return Outcome { result: Err(AwsError::internal()), unwritten: None };
    };
    // The secrets the call read, for its LastAccessedDate write to start from.
    if let Some(ctx) = &mut ctx {
        ctx.hand(handoff);
    }
    let result = match (result, &ctx) {
        (Ok(answer), Some(ctx)) => ctx.access.write_deferred(app, ctx).map(|()| answer),
        (result, _) => result,
    };
    let unwritten = record.conclude(&result);
    Outcome { result, unwritten }
}

/// [`run`] for the mutating call `C` on a store that runs writes on a thread of its own:
/// every stage before the handler's write runs here, on the async worker, in one read
/// scope as in [`run`]; then the write goes to the store owning all it needs
/// (`submitted`), for the caller to await. A call refused before its write ends here.
pub(crate) fn stage<C: OwnedCall>(
    app: &Arc<App>,
    caller: &Caller,
    op: Operation,
    body: Vec<u8>,
) -> Staged {
    let Some(admitted) = admit_for_write(app, caller, Asked::Op(op), body) else {
        return Staged::Ended(Box::new(Outcome {
            result: Err(AwsError::internal()),
            unwritten: None,
        }));
    };
    let admitted = match admitted {
        Admitted::Identified(ctx, next) => {
            // The handler's work before its write (`dispatch`: decode, then the checks
            // of the handler's own), with the same refusals.
            let next = match next {
                Ok(Next::Handle(_, body)) => {
                    match decode_request(body).and_then(|request| C::admit(request, &ctx)) {
                        Ok(call) => return Staged::Writing(submitted::submit(app, ctx, call)),
                        Err(e) => Err(e),
                    }
                }
                next => next,
            };
            Admitted::Identified(ctx, next)
        }
        refused => refused,
    };
    Staged::Ended(Box::new(handled(app, admitted)))
}

/// The stages before a mutating call's handler, in one read scope ended before the
/// handler's write waits for its commit: one snapshot (on PostgreSQL, one BEGIN) instead of
/// one per stage. What the authorization looked up is handed to the call's context, for
/// its write to start from. `None` if the scope did not run.
fn admit_for_write(
    app: &Arc<App>,
    caller: &Caller,
    asked: Asked<'_>,
    body: Vec<u8>,
) -> Option<Admitted> {
    let (mut request, mut admitted) = (Some(Request::Json(body)), None);
    let handoff = app.store.read_scope(&mut || {
        if let Some(request) = request.take() {
            admitted = Some(admit(app, caller, asked, request, AccessRecords::immediate()));
        }
    });
    let mut admitted = admitted?;
    if let Admitted::Identified(ctx, _) = &mut admitted {
        ctx.hand(handoff);
    }
    Some(admitted)
}

/// The handler of an admitted call, and its event still to write.
fn handled(app: &Arc<App>, admitted: Admitted) -> Outcome {
    let (result, record, _) = handle(app, admitted);
    let unwritten = record.conclude(&result);
    Outcome { result, unwritten }
}

/// Every stage from identification to the handler's answer. Returns the answer, the
/// call's audit record (to conclude) and its context, when it got one.
fn serve(
    app: &Arc<App>,
    caller: &Caller,
    asked: Asked<'_>,
    request: Request,
    access: AccessRecords,
) -> (Result<Vec<u8>, AwsError>, CallRecord, Option<RequestContext>) {
    handle(app, admit(app, caller, asked, request, access))
}

/// A call after every stage before its handler.
enum Admitted {
    /// Refused before its caller was known, with the record of a failed signature of a
    /// known key (empty otherwise).
    Refused(AwsError, CallRecord),
    /// Identified: its context, and what is left to do (or why nothing is).
    Identified(RequestContext, Result<Next, AwsError>),
}

/// What an identified call has left to do.
enum Next {
    /// Its answer is known (a query-protocol call's handler has run).
    Answered(Vec<u8>),
    /// Its handler, on the decoded and authorized request.
    Handle(Operation, Value),
}

/// The stages before the handler: identify, begin the record, quota, decode and
/// validate, authorize.
fn admit(
    app: &Arc<App>,
    caller: &Caller,
    asked: Asked<'_>,
    request: Request,
    access: AccessRecords,
) -> Admitted {
    // The service's model, looked up once: the record and validation both use it.
    let model = ServiceModel::of(asked.service());
    let (mut ctx, who) = match identify(app, caller, asked, request.signed()) {
        Ok(identified) => identified,
        Err((e, record)) => {
            request.wipe();
            return Admitted::Refused(e, record.unwrap_or_default());
        }
    };
    ctx.access = access;
    let identity = audit::identity(who.as_ref(), &ctx);
    ctx.audit = asked.begin_record(&ctx, identity, &caller.source, model);
    let next = match asked {
        Asked::Op(op) => serve_identified(app, caller, &mut ctx, who.as_ref(), model, op, request),
        Asked::Unknown { service, action } => {
            request.wipe();
            Err(query::invalid_action(service, action))
        }
    };
    Admitted::Identified(ctx, next)
}

/// The handler, on an admitted call. Returns the answer, the call's audit record (to
/// conclude) and its context, when it got one.
fn handle(
    app: &Arc<App>,
    admitted: Admitted,
) -> (Result<Vec<u8>, AwsError>, CallRecord, Option<RequestContext>) {
    match admitted {
        Admitted::Refused(e, record) => (Err(e), record, None),
        Admitted::Identified(mut ctx, next) => {
            let result = next.and_then(|next| match next {
                Next::Answered(answer) => Ok(answer),
                Next::Handle(op, request) => dispatch(app, &ctx, op, request),
            });
            let record = std::mem::take(&mut ctx.audit);
            (result, record, Some(ctx))
        }
    }
}

/// Identifies the caller: verifies a signature (for the signing name of the service
/// asked), or takes a verified or `--dev` identity. A refusal is in the protocol's terms
/// of that service. A failed signature of a known access key comes back with the record
/// its owner's trail gets (rate-limited, see `audit::Auditor::note_failed_signature`).
fn identify(
    app: &App,
    caller: &Caller,
    asked: Asked<'_>,
    body: &[u8],
) -> Result<(RequestContext, Option<Authenticated>), (AwsError, Option<CallRecord>)> {
    let request_id = caller.request_id.clone();
    let who = match (&caller.credentials, &app.iam) {
        (Credentials::Unverified { scope, access_key_id }, None) => {
            let mut ctx = RequestContext::new(scope.clone(), access_key_id.clone(), request_id);
            if let Some(session) = dev_principal(app, access_key_id, asked)? {
                // IAM is global: the principal's ARNs are in the partition of the region
                // the request was signed for.
                let partition = scope.partition();
                let session = if session.partition() == partition {
                    session
                } else {
                    Arc::new(session.in_partition(partition))
                };
                // Credentials STS or the IAM API issued in `--dev` act in their
                // principal's account.
                ctx.scope = Scope::new(session.account.clone(), scope.region.clone());
                ctx.caller_account = session.account.clone();
                ctx.dev_caller = Some(session);
            }
            return Ok((ctx, None));
        }
        (Credentials::Verified(who), Some(_)) => who.clone(),
        (Credentials::Signed(raw), Some(iam)) => {
            let signing_name = asked.service().signing_name();
            match auth::authenticate(app, iam, raw, body, signing_name, now_secs()) {
                Ok(who) => who,
                Err(e) => {
                    let record = match &e {
                        AuthFailure::Signature(failure) => {
                            failed_signature(app, iam, raw, failure, caller, asked)
                        }
                        AuthFailure::Internal(_) => None,
                    };
                    let e = match e {
                        AuthFailure::Signature(e) if query::speaks_query(asked.service()) => {
                            query::signature_error(&e)
                        }
                        e => e.into_json(),
                    };
                    return Err((e, record));
                }
            }
        }
        // A console session of another mode, or a signature `--dev` does not check.
        _ => return Err((AwsError::internal(), None)),
    };
    let scope = Scope::new(who.caller.principal.account.clone(), who.region.clone());
    Ok((RequestContext::new(scope, who.access_key_id.clone(), request_id), Some(who)))
}

/// `--dev`: who a key STS issued in `--dev` acts as, or the user an access key of `--dev`'s
/// IAM API belongs to (`None` for any other key: the root of the account its id names).
/// A session past its expiry is refused as in enforcing mode, in the terms of the service
/// asked. Long-term key ids are looked up only once the directory may hold keys, so the
/// keys test code makes up cost no read.
fn dev_principal(
    app: &App,
    access_key_id: &str,
    asked: Asked<'_>,
) -> Result<Option<Arc<coffer_auth::principal::Principal>>, (AwsError, Option<CallRecord>)> {
    let Some(directory) = &app.dev_iam else { return Ok(None) };
    if !access_key_id.starts_with("ASIA") {
        if !app.dev_access_keys_exist() {
            return Ok(None);
        }
        return match directory.lookup(app.store.as_ref(), access_key_id) {
            Ok(known) => Ok(known.map(|k| Arc::new(k.caller.principal.clone()))),
            Err(e) => Err((e, None)),
        };
    }
    match crate::dev_sessions::lookup(app, access_key_id, crate::clock::now_ms()) {
        Ok(Ok(found)) => Ok(found),
        Ok(Err(ended)) => {
            let refused = match ended {
                crate::dev_sessions::Ended::Expired => coffer_auth::SigV4Error::ExpiredToken,
                crate::dev_sessions::Ended::UserGone => coffer_auth::SigV4Error::UnrecognizedClient,
            };
            let e = if query::speaks_query(asked.service()) {
                query::signature_error(&refused)
            } else {
                AuthFailure::Signature(refused).into_json()
            };
            Err((e, None))
        }
        Err(e) => Err((e, None)),
    }
}

/// The stages after the caller is known and before its handler, whose outcome is
/// audited: quota, decode and validate, authorize (a query-protocol call's handler runs
/// here: it authorizes on what its form names).
fn serve_identified(
    app: &Arc<App>,
    caller: &Caller,
    ctx: &mut RequestContext,
    who: Option<&Authenticated>,
    model: Option<&ServiceModel>,
    op: Operation,
    request: Request,
) -> Result<Next, AwsError> {
    // The caller's own account is counted (as AWS counts a cross-account call), before
    // anything is parsed or done: a throttled call changes nothing; its event records
    // the error like any other failed call's.
    if let Err(e) = app.quotas.check(&ctx.scope, op) {
        request.wipe();
        return Err(e);
    }
    let body = match request {
        Request::Json(body) => body,
        Request::Query { mut body, form } => {
            // The form holds the parameters; the body was needed for the signature only.
            // No model of STS or IAM is embedded: their handlers check their parameters
            // as the services do, and authorize on what the form names. Their events
            // record the members of the operation's input shape, no sensitive one.
            body.zeroize();
            ctx.audit.set_query_request(op, &form);
            return dispatch_query(app, ctx, who, &raw_of(caller), op, &form).map(Next::Answered);
        }
    };
    let mut request = decode(body)?;
    ctx.audit.set_request(&request);
    if let Some(model) = model {
        validate_input(model, op.name(), &request)?;
        // Authorization and the handler read the operation's own members only: one it
        // does not take set a request condition key AWS never gives it (review 17, 03).
        model.keep_input_members(op.name(), &mut request);
    }
    if let Some(who) = who {
        // Authorization reads the request typed, never the raw document.
        let requested = auth::Requested::deserialize(&request).map_err(|e| {
            AwsError::new(ErrorCode::Serialization, format!("The request body is not valid ({e})."))
        })?;
        let source_ip = caller.source.ip;
        let authorized =
            auth::authorize(app, who, &ctx.scope, op, &requested, source_ip, caller.secure)?;
        // A call another account makes through a resource policy acts in the owner's
        // scope: its event goes to both accounts' trails.
        ctx.audit.deliver_also_to(&authorized.scope);
        ctx.scope = authorized.scope;
        ctx.gate = Some(authorized.gate);
    } else if let Some(owner) = crate::cross_account::dev_owner(app, ctx, op, &request)? {
        // `--dev`: another account's secret, which its resource policy let the call reach.
        // The keys that seal what the handler opens or seals decide the rest, for the
        // caller's account root, as they would on AWS (review 13, finding 01).
        ctx.audit.deliver_also_to(&owner);
        ctx.gate = Some(Arc::new(auth::Gate::account_root(&ctx.caller_account, &owner.region)));
        ctx.scope = owner;
    }
    Ok(Next::Handle(op, request))
}

/// The request as a handler that decides on its source sees it (`aws:SourceIp`,
/// `aws:SecureTransport`): the signed request, or for a caller identified otherwise (a
/// console session, `--dev`) its source alone.
fn raw_of(caller: &Caller) -> Cow<'_, RawRequest> {
    match &caller.credentials {
        Credentials::Signed(raw) => Cow::Borrowed(raw),
        Credentials::Verified(_) | Credentials::Unverified { .. } => Cow::Owned(RawRequest {
            method: "POST".to_string(),
            path: "/".to_string(),
            query: String::new(),
            headers: Vec::new(),
            source_ip: caller.source.ip,
            secure: caller.secure,
        }),
    }
}

/// Parses the JSON body (an empty one is `{}`), wiping the bytes: they may hold a value.
fn decode(mut body: Vec<u8>) -> Result<Value, AwsError> {
    let parsed = if body.iter().all(|b| b.is_ascii_whitespace()) {
        Ok(Value::Object(Default::default()))
    } else {
        serde_json::from_slice::<Value>(&body)
    };
    body.zeroize();
    parsed.map_err(|e| {
        let message = format!("The request body is not valid JSON ({}).", classify(&e));
        AwsError::new(ErrorCode::Serialization, message)
    })
}

fn classify(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Eof => "unexpected end of input",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected data",
        serde_json::error::Category::Io => "read error",
    }
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// For a signature that failed although its access key is known (a wrong secret, a
/// changed request, an expired date): the record of the failed call in the key owner's
/// trail, and a warning line naming the key and its user. Both are rate-limited per key
/// (`audit::Auditor::note_failed_signature`). `None` for other failures (an unknown key
/// id leaves no trail to write to), and for failures over the limit.
fn failed_signature(
    app: &App,
    iam: &crate::iam::Iam,
    raw: &RawRequest,
    failure: &coffer_auth::SigV4Error,
    caller: &Caller,
    asked: Asked<'_>,
) -> Option<CallRecord> {
    let (scope, who) = failed_signer(app, iam, raw, failure)?;
    let ctx = RequestContext::new(scope, who.access_key_id.clone(), caller.request_id.clone());
    let identity = audit::identity(Some(&who), &ctx);
    Some(asked.begin_record(&ctx, identity, &caller.source, None))
}

/// The known signer of a request whose signature failed, with the scope its event goes
/// to; logs the warning line. See [`failed_signature`].
fn failed_signer(
    app: &App,
    iam: &crate::iam::Iam,
    raw: &RawRequest,
    failure: &coffer_auth::SigV4Error,
) -> Option<(Scope, Authenticated)> {
    use coffer_auth::sigv4::{SigV4Error, parse_authorization};
    if !matches!(failure, SigV4Error::SignatureMismatch | SigV4Error::InvalidSignature(_)) {
        return None;
    }
    let header = raw
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
        .and_then(|(_, value)| std::str::from_utf8(value).ok())?;
    let parsed = parse_authorization(header).ok()?;
    let key = iam.lookup(app.store.as_ref(), &parsed.access_key_id).ok().flatten()?;
    let principal = &key.caller.principal;
    let notice = app.audit.note_failed_signature(&parsed.access_key_id);
    if let Some((not_logged, not_audited)) = notice.log {
        tracing::warn!(
            access_key_id = %parsed.access_key_id,
            user = %principal.arn,
            source_ip = %raw.source_ip.map_or_else(|| "unknown".to_string(), |ip| ip.to_string()),
            earlier_failures_not_logged = not_logged,
            earlier_failures_not_audited = not_audited,
            "failed signature for a known access key (at most one line per key per minute)"
        );
    }
    // A region outside the known list has no trail; the line above still tells.
    if !notice.audit || !auth::is_known_region(&parsed.scope.region) {
        return None;
    }
    let scope = Scope::new(principal.account.clone(), parsed.scope.region.clone());
    let who = Authenticated {
        caller: key.caller.in_partition(scope.partition()),
        access_key_id: parsed.access_key_id,
        region: parsed.scope.region,
    };
    Some((scope, who))
}

/// Checks console credentials: the access key id and secret access key of an active key,
/// and the region the session will act in. The secret is compared in constant time. Every
/// refusal is the same error, so a caller cannot tell an unknown key from a wrong secret.
/// Each sign-in leaves a trace, as a signed request does: a `ConsoleLogin` event in the
/// key owner's trail (`Success`, or `Failure` for a wrong secret, the latter rate-limited
/// per key with failed signatures), and a warning line for a failure. A sign-in whose
/// event cannot be written fails.
pub fn sign_in(
    app: &App,
    access_key_id: &str,
    secret_access_key: &str,
    region: &str,
    source_ip: Option<IpAddr>,
    user_agent: &str,
) -> Result<Authenticated, AwsError> {
    let refused = || {
        AwsError::new(
            ErrorCode::UnrecognizedClient,
            "The security token included in the request is invalid.",
        )
    };
    let Some(iam) = &app.iam else { return Err(AwsError::internal()) };
    if !auth::is_known_region(region) {
        return Err(AwsError::new(ErrorCode::InvalidParameter, "The region is not known."));
    }
    let ip = || source_ip.map_or_else(|| "unknown".to_string(), |ip| ip.to_string());
    let key = iam.lookup(app.store.as_ref(), access_key_id).map_err(|_| AwsError::internal())?;
    let Some(key) = key else {
        // No owner, so no trail to write to: the line tells.
        tracing::warn!(source_ip = %ip(), "console sign-in refused: unknown or inactive access key");
        return Err(refused());
    };
    let who = Authenticated {
        caller: key.caller.in_partition(coffer_core::Partition::of_region(region)),
        access_key_id: access_key_id.to_string(),
        region: region.to_string(),
    };
    let expected = key.secret().expose().as_bytes();
    if aws_lc_rs::constant_time::verify_slices_are_equal(expected, secret_access_key.as_bytes())
        .is_err()
    {
        let notice = app.audit.note_failed_signature(access_key_id);
        if let Some((not_logged, not_audited)) = notice.log {
            tracing::warn!(
                access_key_id = %access_key_id,
                user = %who.caller.principal.arn,
                source_ip = %ip(),
                earlier_failures_not_logged = not_logged,
                earlier_failures_not_audited = not_audited,
                "failed console sign-in for a known access key (at most one line per key per minute)"
            );
        }
        if notice.audit
            && let Err(e) = audit::record_console_login(app, &who, source_ip, user_agent, false)
        {
            tracing::error!(code = e.code.as_str(), "could not record a failed console sign-in");
        }
        return Err(refused());
    }
    audit::record_console_login(app, &who, source_ip, user_agent, true)?;
    Ok(who)
}

/// The principal a console session signed in with, looked up again for one of its calls:
/// the same lookup SigV4 authentication makes, so a key deactivated or deleted (or its
/// user deleted) ends the session, and the caller's policies are the ones in force now,
/// not those of sign-in. A key that is no longer active answers `UnrecognizedClient`.
pub fn resume(app: &App, access_key_id: &str, region: &str) -> Result<Authenticated, AwsError> {
    let Some(iam) = &app.iam else { return Err(AwsError::internal()) };
    let key = iam.lookup(app.store.as_ref(), access_key_id)?;
    let Some(key) = key else {
        return Err(AwsError::new(
            ErrorCode::UnrecognizedClient,
            "The security token included in the request is invalid.",
        ));
    };
    Ok(Authenticated {
        caller: key.caller.in_partition(coffer_core::Partition::of_region(region)),
        access_key_id: access_key_id.to_string(),
        region: region.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, KeyRing};
    use coffer_crypto::MasterKey;
    use coffer_store::MemoryStore;
    use coffer_wire::operation::{CloudTrailOp, SecretsManagerOp};
    use std::sync::Arc;

    fn dev_app() -> Arc<App> {
        let store = Arc::new(MemoryStore::new());
        let keys = KeyRing::open(MasterKey::generate(), store.as_ref()).unwrap();
        App::new(store, keys, Config::default())
    }

    fn console_caller() -> Caller {
        let scope = Scope::new("111122223333", "eu-west-1");
        let credentials = Credentials::Unverified { scope, access_key_id: "AKIDCONSOLE".into() };
        Caller::console(credentials, Some([127, 0, 0, 1].into()), "Mozilla/5.0", false)
    }

    /// The console calls an operation as any client does, and its event says so the way
    /// CloudTrail marks console calls.
    #[test]
    fn a_console_call_is_audited_as_one() {
        let app = dev_app();
        let caller = console_caller();
        let create = br#"{"Name":"from-console","SecretString":"v","ClientRequestToken":"00000000-0000-4000-8000-000000000001"}"#;
        let create = create.to_vec();
        let op = Operation::from(SecretsManagerOp::CreateSecret);
        call(&app, &caller, op, create).unwrap();
        let lookup = Operation::from(CloudTrailOp::LookupEvents);
        let events = call(&app, &caller, lookup, b"{}".to_vec()).unwrap();
        let events: Value = serde_json::from_slice(&events).unwrap();
        let create = events["Events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["EventName"] == "CreateSecret")
            .expect("the CreateSecret event");
        let record: Value =
            serde_json::from_str(create["CloudTrailEvent"].as_str().unwrap()).unwrap();
        assert_eq!(record["sessionCredentialFromConsole"], "true");
        assert_eq!(record["userAgent"], "AWS Internal");
        assert_eq!(record["awsRegion"], "eu-west-1");
    }

    /// An STS call takes the same stages: answered in XML, and audited in the caller's
    /// trail; an action STS does not have is refused and recorded under its name, cut.
    #[test]
    fn a_query_protocol_call_is_answered_and_audited() {
        let app = dev_app();
        let caller = console_caller();
        let form = b"Action=GetCallerIdentity&Version=2011-06-15";
        let answer =
            call_query(&app, &caller, Service::Sts, form.to_vec(), Form::parse(form)).unwrap();
        let answer = String::from_utf8(answer).unwrap();
        assert!(answer.contains("<Arn>arn:aws:iam::111122223333:root</Arn>"), "{answer}");
        let unknown = format!("Action={}&Version=2011-06-15", "X".repeat(300));
        let form = Form::parse(unknown.as_bytes());
        let err = call_query(&app, &caller, Service::Sts, unknown.into_bytes(), form).unwrap_err();
        assert_eq!((err.code.as_str(), err.code.http_status()), ("InvalidAction", 400));
        let lookup = Operation::from(CloudTrailOp::LookupEvents);
        let events = call(&app, &caller, lookup, b"{}".to_vec()).unwrap();
        let events: Value = serde_json::from_slice(&events).unwrap();
        let names: Vec<&str> = events["Events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["EventName"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"GetCallerIdentity"), "{names:?}");
        assert!(names.contains(&"X".repeat(query::MAX_ECHOED_ACTION).as_str()), "{names:?}");
    }

    /// A query-protocol call's event records the form's members of its input shape (not
    /// the protocol's own `Action` and `Version`, nor a member the operation does not have).
    #[test]
    fn a_query_protocol_calls_event_records_its_parameters() {
        let app = dev_app();
        let caller = console_caller();
        let form =
            b"Action=GetAccessKeyInfo&Version=2011-06-15&AccessKeyId=AKIAIOSFODNN7EXAMPLE&Other=x";
        call_query(&app, &caller, Service::Sts, form.to_vec(), Form::parse(form)).unwrap();
        let lookup = Operation::from(CloudTrailOp::LookupEvents);
        let events = call(&app, &caller, lookup, b"{}".to_vec()).unwrap();
        let events: Value = serde_json::from_slice(&events).unwrap();
        let info = events["Events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["EventName"] == "GetAccessKeyInfo")
            .expect("the GetAccessKeyInfo event");
        let record: Value =
            serde_json::from_str(info["CloudTrailEvent"].as_str().unwrap()).unwrap();
        assert_eq!(
            record["requestParameters"],
            serde_json::json!({"accessKeyId": "AKIAIOSFODNN7EXAMPLE"})
        );
    }

    /// A call's bad input is refused by the same validation as over the wire, and its
    /// refusal is audited.
    #[test]
    fn a_console_call_with_bad_input_is_refused_and_audited() {
        let app = dev_app();
        let caller = console_caller();
        let op = Operation::from(SecretsManagerOp::CreateSecret);
        let err = call(&app, &caller, op, br#"{"Name":""}"#.to_vec()).unwrap_err();
        assert_eq!(err.code, ErrorCode::Validation);
        let lookup = Operation::from(CloudTrailOp::LookupEvents);
        let events = call(&app, &caller, lookup, b"{}".to_vec()).unwrap();
        let text = String::from_utf8(events).unwrap();
        assert!(text.contains("ValidationException"), "{text}");
    }
}
