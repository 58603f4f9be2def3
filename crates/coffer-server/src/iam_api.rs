//! The IAM API on Coffer's endpoint, in IAM's query protocol: a form-encoded
//! `Action=CreateUser&Version=2010-05-08&...` request signed for service `iam`, an XML
//! answer, and IAM's error XML with its codes and messages (`NoSuchEntity`,
//! `EntityAlreadyExists`, `LimitExceeded`, `DeleteConflict`, `MalformedPolicyDocument`,
//! `ValidationError`, `AccessDenied`). `aws iam ...`, boto3's `iam` client and Terraform
//! manage users, keys, policies, groups and roles here.
//!
//! Every call runs through the pipeline like any other (`pipeline::call_query`: identified,
//! audited, counted against the `iam` quota); its handler ([`handle`]) authorizes it by the
//! caller's identity policies for `iam:<Action>` on the entity it names (the user, group,
//! role or policy ARN, read with its path), carries it out through `coffer-iam` (the same
//! code `coffer admin` uses), and its event (event source `iam.amazonaws.com`) records the
//! form's parameters (`coffer_wire::query_params`) and, for the `Create*` calls, what they
//! created (`elements`), never a secret access key.
//!
//! `--dev` serves it on a directory of its own (`App::dev_iam`), the caller acting with
//! nothing authorized (`dev_caller`).

use crate::auth::{self, Authenticated, RawRequest};
use crate::iam::directory::{Entity, GroupRecord, ManagedPolicy, RoleRecord, Tag};
use crate::iam::rename::{NewNameAndPath, RoleChanges};
use crate::iam::{AccessKeyRecord, Iam, IamError, UserRecord};
use crate::query::Form;
use crate::{App, RequestContext};
use axum::http::HeaderMap;
use coffer_auth::time::format_iso8601;
use coffer_core::validation::{Constraint, Violation};
use coffer_core::{AwsError, ErrorCode, Partition};
use coffer_wire::operation::{IamOp, Service};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub const VERSION: &str = coffer_wire::query_form::IAM_VERSION;

/// True when a query-protocol request is signed for IAM (its credential scope names the
/// `iam` service), as every IAM client signs.
pub fn is_iam_request(headers: &HeaderMap) -> bool {
    let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    auth.split([' ', ','])
        .find_map(|p| p.strip_prefix("Credential="))
        .and_then(|c| c.split('/').nth(3))
        .is_some_and(|service| service == "iam")
}

/// The longest IAM error message: what the client sent is quoted at most 512 characters
/// (two values at most 256 each), and a message's own words are far fewer than the rest.
const MESSAGE_CAP: usize = 1024;

/// An IAM error: its code, message and HTTP status.
#[derive(Debug)]
pub struct Failure {
    code: &'static str,
    message: String,
    status: u16,
}

impl Failure {
    fn new(code: &'static str, message: impl Into<String>, status: u16) -> Failure {
        Failure { code, message: message.into(), status }
    }

    fn invalid(message: impl Into<String>) -> Failure {
        Failure::new("ValidationError", message, 400)
    }

    fn internal() -> Failure {
        Failure::new("ServiceFailure", "An internal error occurred.", 500)
    }

    /// The message with the ARNs the form gave named as given: coffer-iam was handed them
    /// as its records keep them (`policy_arn`), in the `aws` partition.
    fn naming_arns_as_given(mut self, form: &Form, partition: Partition) -> Failure {
        if partition == coffer_auth::principal::STORED {
            return self;
        }
        for name in ["PolicyArn", "OpenIDConnectProviderArn"] {
            if let Some(given) = form.get(name) {
                let stored = coffer_auth::principal::STORED.rewrite(given);
                if stored != given {
                    self.message = self.message.replace(&stored, given);
                }
            }
        }
        self
    }
}

impl From<IamError> for Failure {
    /// coffer-iam's messages quote the names they were given (`The user with name <name>
    /// cannot be found.`), unvalidated for lookups: each quotes at most 512 characters of
    /// what the client sent (review 8, finding 04), and keeps its own words whole after it
    /// (the constraint a value failed). The whole message is cut only as a last resort,
    /// far above what any message of coffer-iam holds.
    fn from(e: IamError) -> Failure {
        let cut = |m: String| coffer_auth::sigv4::echo_at_most(&m, MESSAGE_CAP).into_owned();
        match e {
            IamError::NotFound(m) => Failure::new("NoSuchEntity", cut(m), 404),
            IamError::Exists(m) => Failure::new("EntityAlreadyExists", cut(m), 409),
            IamError::Invalid(m) => Failure::invalid(cut(m)),
            IamError::Limit(m) => Failure::new("LimitExceeded", cut(m), 409),
            IamError::Conflict(m) => Failure::new("DeleteConflict", cut(m), 409),
            // Coffer's own grammar messages quote a policy's values unbounded: cut whole at
            // 512 characters. IAM's words (`policy::iam_refusal`) quote at most 200 each,
            // so they always fit.
            IamError::Malformed(m) => {
                let m = coffer_auth::sigv4::echo(&m).into_owned();
                Failure::new("MalformedPolicyDocument", m, 400)
            }
            IamError::InvalidInput(m) => Failure::new("InvalidInput", cut(m), 400),
            IamError::Store(e) => {
                tracing::error!(error = %e, "store failure");
                Failure::internal()
            }
            IamError::Crypto(e) => {
                tracing::error!(error = %e, "IAM crypto failure");
                Failure::internal()
            }
        }
    }
}

impl From<Failure> for AwsError {
    fn from(f: Failure) -> AwsError {
        crate::query::failure(f.code, f.message, f.status)
    }
}

impl From<AwsError> for Failure {
    fn from(e: AwsError) -> Failure {
        match e.code {
            ErrorCode::AccessDenied => Failure::new("AccessDenied", e.message, 403),
            _ => Failure::internal(),
        }
    }
}

pub(crate) use crate::query::escape;

/// IAM returns policy documents URL-encoded (RFC 3986), which the SDKs decode.
fn url_encode(s: &str) -> String {
    crate::sts::percent_encode(s)
}

/// What IAM's handlers read from a form beyond [`Form`]'s own.
trait IamForm {
    fn required(&self, name: &str, member: &str) -> Result<&str, Failure>;
    /// A required policy document, within the model's length (whitespace included).
    fn document(&self, name: &str, member: &str) -> Result<&str, Failure>;
    fn tags(&self) -> Vec<Tag>;
}

/// The model's bound on a policy document member (`policyDocumentType`), whitespace
/// included. IAM's own limits (2,048 characters of a trust policy, 6,144 of a managed
/// policy, ...) count no whitespace, so without it a document of a few dozen characters
/// padded to the request body's size was stored and parsed again at each use (review 16,
/// finding 02).
const POLICY_DOCUMENT_MAX_CHARS: usize = 131_072;

impl IamForm for Form {
    fn required(&self, name: &str, member: &str) -> Result<&str, Failure> {
        self.get(name).ok_or_else(|| Failure::invalid(Violation::null(member).message()))
    }

    fn document(&self, name: &str, member: &str) -> Result<&str, Failure> {
        let document = self.required(name, member)?;
        if document.chars().count() <= POLICY_DOCUMENT_MAX_CHARS {
            return Ok(document);
        }
        // Quoted short, as a description is, so the message keeps the constraint it names.
        let longest = Constraint::MaxLength(POLICY_DOCUMENT_MAX_CHARS as i64);
        Err(Failure::invalid(Violation::value_at_most(document, 256, member, longest).message()))
    }

    fn tags(&self) -> Vec<Tag> {
        (1..)
            .map_while(|i| {
                let key = self.get(&format!("Tags.member.{i}.Key"))?;
                let value = self.get(&format!("Tags.member.{i}.Value")).unwrap_or("");
                Some(Tag { key: key.to_string(), value: value.to_string() })
            })
            .collect()
    }
}

/// The XML of one answer's result.
#[derive(Default)]
struct Xml(String);

impl Xml {
    fn field(&mut self, name: &str, value: &str) -> &mut Self {
        let _ = write!(self.0, "<{name}>{}</{name}>", escape(value));
        self
    }

    fn open(&mut self, name: &str) -> &mut Self {
        let _ = write!(self.0, "<{name}>");
        self
    }

    fn close(&mut self, name: &str) -> &mut Self {
        let _ = write!(self.0, "</{name}>");
        self
    }

    /// `<name><member>..</member>...</name>`, each member written by `f`.
    fn members<T>(&mut self, name: &str, items: &[T], f: impl Fn(&mut Xml, &T)) -> &mut Self {
        self.open(name);
        for item in items {
            self.open("member");
            f(self, item);
            self.close("member");
        }
        self.close(name)
    }

    fn date(&mut self, name: &str, ms: i64) -> &mut Self {
        self.field(name, &format_iso8601(ms))
    }

    fn tags(&mut self, tags: &[Tag]) -> &mut Self {
        self.members("Tags", tags, |x, t| {
            x.field("Key", &t.key).field("Value", &t.value);
        })
    }

    fn untruncated(&mut self) -> &mut Self {
        self.field("IsTruncated", "false")
    }

    /// `IsTruncated` and, when there is more, the `Marker` to continue from.
    fn truncation(&mut self, marker: Option<String>) -> &mut Self {
        match marker {
            Some(m) => self.field("IsTruncated", "true").field("Marker", &m),
            None => self.untruncated(),
        }
    }
}

/// One page of a listing sorted by name: at most `MaxItems` (1 to 1000, 100 by default)
/// after `Marker` (the last name of the previous page, base64url), and the marker of the
/// next page if there is one.
fn page<T>(
    form: &Form,
    items: Vec<T>,
    name: impl Fn(&T) -> &str,
) -> Result<(Vec<T>, Option<String>), Failure> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let max = match form.get("MaxItems") {
        None => 100,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                return Err(Failure::invalid(
                    Violation::value(v, "maxItems", Constraint::ValueBetween(1, 1000)).message(),
                ));
            }
        },
    };
    let after = match form.get("Marker") {
        None => None,
        Some(m) => Some(
            b64.decode(m)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| Failure::invalid("Invalid Marker."))?,
        ),
    };
    let mut rest: Vec<T> =
        items.into_iter().filter(|i| after.as_deref().is_none_or(|a| name(i) > a)).collect();
    let marker = (rest.len() > max).then(|| b64.encode(name(&rest[max - 1])));
    rest.truncate(max);
    Ok((rest, marker))
}

fn user_xml(x: &mut Xml, u: &UserRecord, with_tags: bool, partition: Partition) {
    x.field("Path", &u.path)
        .field("UserName", &u.name)
        .field("UserId", &u.user_id)
        .field("Arn", &partition.rewrite(&u.principal().arn))
        .date("CreateDate", u.created_ms);
    if with_tags && !u.tags.is_empty() {
        x.tags(&u.tags);
    }
}

fn group_xml(x: &mut Xml, g: &GroupRecord, partition: Partition) {
    x.field("Path", &g.path)
        .field("GroupName", &g.name)
        .field("GroupId", &g.group_id)
        .field("Arn", &partition.rewrite(&g.arn()))
        .date("CreateDate", g.created_ms);
}

/// Which members of a role an operation shows: AWS's CreateRole answer has no
/// MaxSessionDuration, GetRole's adds RoleLastUsed, ListRoles' has no tags.
#[derive(Clone, Copy, PartialEq)]
enum RoleView {
    Created,
    Got,
    Listed,
}

fn role_xml(x: &mut Xml, r: &RoleRecord, view: RoleView, partition: Partition) {
    x.field("Path", &r.path)
        .field("RoleName", &r.name)
        .field("RoleId", &r.role_id)
        .field("Arn", &partition.rewrite(&r.arn()))
        .date("CreateDate", r.created_ms)
        .field("AssumeRolePolicyDocument", &url_encode(&r.trust_policy));
    if view != RoleView::Created {
        x.field("MaxSessionDuration", &r.max_session_secs.to_string());
    }
    if !r.description.is_empty() {
        x.field("Description", &r.description);
    }
    if view != RoleView::Listed && !r.tags.is_empty() {
        x.tags(&r.tags);
    }
    if view == RoleView::Got {
        // Coffer does not track a role's last use; AWS shows the member empty until then.
        x.field("RoleLastUsed", "");
    }
}

/// Coffer has no permissions boundaries. One given is refused rather than ignored: the
/// user or role would otherwise get more access than its creator meant.
fn no_permissions_boundary(f: &Form) -> Result<(), Failure> {
    match f.get("PermissionsBoundary") {
        None => Ok(()),
        Some(_) => Err(Failure::invalid("PermissionsBoundary is not supported by Coffer.")),
    }
}

/// A managed policy's members; its description only where AWS shows it (GetPolicy, not
/// CreatePolicy's answer or ListPolicies).
/// `MaxSessionDuration`, if given (CreateRole, UpdateRole).
fn max_session_duration(f: &Form) -> Result<Option<i64>, Failure> {
    f.get("MaxSessionDuration")
        .map(|v| {
            v.parse::<i64>().map_err(|_| {
                let v = coffer_auth::sigv4::echo(v);
                Failure::invalid(format!("Invalid value for MaxSessionDuration: {v}"))
            })
        })
        .transpose()
}

fn policy_xml(
    x: &mut Xml,
    p: &ManagedPolicy,
    attachments: usize,
    with_description: bool,
    partition: Partition,
) {
    x.field("PolicyName", &p.name)
        .field("PolicyId", &p.policy_id)
        .field("Arn", &partition.rewrite(&p.arn()))
        .field("Path", &p.path)
        .field("DefaultVersionId", &p.default_version)
        .field("AttachmentCount", &attachments.to_string())
        .field("PermissionsBoundaryUsageCount", "0")
        .field("IsAttachable", "true");
    if with_description && !p.description.is_empty() {
        x.field("Description", &p.description);
    }
    x.date("CreateDate", p.created_ms).date("UpdateDate", p.updated_ms);
}

fn key_xml(x: &mut Xml, k: &AccessKeyRecord) {
    x.field("UserName", &k.user_name)
        .field("AccessKeyId", &k.access_key_id)
        .field("Status", &k.status)
        .date("CreateDate", k.created_ms);
}

fn attached_xml(x: &mut Xml, arns: &[String], partition: Partition) {
    x.members("AttachedPolicies", arns, |x, arn| {
        let name = arn.rsplit('/').next().unwrap_or(arn);
        x.field("PolicyName", name).field("PolicyArn", &partition.rewrite(arn));
    });
    x.untruncated();
}

/// The request's PolicyArn, which must have an ARN's shape (`arn:partition:service:...:
/// resource`): IAM refuses anything else as `InvalidInput`, before looking anything up;
/// so it refuses an ARN of another partition than the request's (AWS's known answer to
/// `arn:aws:iam::aws:policy/...` attached in China regions). Gives the ARN as given
/// (what authorization names) and as IAM's records keep it (what is looked up).
fn policy_arn(f: &Form, partition: Partition) -> Result<(&str, String), Failure> {
    let arn = f.required("PolicyArn", "policyArn")?;
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let shaped = matches!(parts.as_slice(), ["arn", partition, service, _, _, resource]
        if !partition.is_empty() && !service.is_empty() && !resource.is_empty());
    let stored = coffer_auth::principal::stored_iam_arn(arn, partition);
    if let (true, Some(stored)) = (shaped, stored) {
        Ok((arn, stored))
    } else {
        let arn = coffer_auth::sigv4::echo(arn);
        Err(Failure::new("InvalidInput", format!("ARN {arn} is not valid."), 400))
    }
}

/// Runs one IAM call, its caller identified, audited and counted by the pipeline:
/// `Ok(the XML answer)`, or the error in IAM's terms. A change and its event commit in one
/// transaction, as every mutating call's do.
pub fn handle(
    app: &Arc<App>,
    ctx: &RequestContext,
    who: Option<&Authenticated>,
    raw: &RawRequest,
    op: IamOp,
    form: &Form,
) -> Result<Vec<u8>, AwsError> {
    let dev_root;
    let (iam, who) = match (app.iam.as_ref(), who, app.dev_iam.as_ref()) {
        (Some(iam), Some(who), _) => {
            // A user's GetSessionToken credentials carry no MFA here, and IAM refuses those.
            if who.access_key_id.starts_with("ASIA") && !who.caller.principal.is_assumed_role() {
                let refused = coffer_auth::SigV4Error::UnrecognizedClient;
                return Err(crate::query::signature_error(&refused));
            }
            (iam, who)
        }
        (None, None, Some(directory)) => {
            // As in enforcing mode: GetSessionToken's and GetFederationToken's credentials
            // call no IAM operation (sts15; they were served as their user in `--dev`).
            if let Some(p) = &ctx.dev_caller
                && !matches!(
                    crate::sessions::Temporary::of(&ctx.access_key_id, p),
                    None | Some(crate::sessions::Temporary::Role)
                )
            {
                let refused = coffer_auth::SigV4Error::UnrecognizedClient;
                return Err(crate::query::signature_error(&refused));
            }
            dev_root = dev_caller(ctx);
            (directory, &dev_root)
        }
        // An app without a directory has no one to manage.
        _ => {
            let message = "The IAM API needs authentication: it is not served with --dev.";
            return Err(crate::query::failure("InvalidAction", message, 400));
        }
    };
    let partition = Partition::of_region(&who.region);
    let store = RecordedStore::new(app.clone(), ctx.audit.for_write(), partition);
    let result = Call { store: &store, iam, who, raw, form }
        .run(op)
        .map_err(|e| e.naming_arns_as_given(form, partition));
    if store.appended.load(Ordering::SeqCst) {
        ctx.audit.committed();
    }
    let body = result?;
    if op == IamOp::CreateAccessKey && app.iam.is_none() {
        app.note_dev_access_key();
    }
    Ok(crate::query::response(Service::Iam, op.name(), &body, &ctx.request_id))
}

/// `--dev`: the caller of an IAM API call (the user or role session its credentials name
/// in `--dev`, else the root of the account its access key id names), whose identity
/// allows everything: nothing is authorized, and every call goes through the same
/// validation and answers as in enforcing mode.
fn dev_caller(ctx: &RequestContext) -> Authenticated {
    static ALLOW_ALL: std::sync::OnceLock<coffer_auth::policy::Policy> = std::sync::OnceLock::new();
    let allow_all = ALLOW_ALL.get_or_init(|| {
        coffer_auth::policy::Policy::parse(
            crate::iam::ADMIN_POLICY,
            coffer_auth::policy::PolicyKind::Identity,
        )
        .expect("the allow-everything policy parses")
    });
    let principal = match &ctx.dev_caller {
        Some(p) => (**p).clone(),
        None => crate::dev_sessions::account_root(&ctx.scope.account)
            .in_partition(ctx.scope.partition()),
    };
    Authenticated {
        caller: Arc::new(crate::iam::Caller::new(principal, vec![allow_all.clone()])),
        access_key_id: ctx.access_key_id.clone(),
        region: ctx.scope.region.clone(),
    }
}

/// The store as an IAM API call sees it: its first committed write transaction also
/// appends the call's audit event (`audit::in_transaction`), so the change and its record
/// commit together and a change whose event cannot be written is not made (unless the
/// trail is fail-open), as for every other mutating call. `coffer-iam` needs no audit
/// knowledge for it: it writes to whatever store it is given.
struct RecordedStore {
    app: Arc<App>,
    event: Option<crate::audit::ForWrite>,
    appended: AtomicBool,
    /// Reads the call's response elements in the transaction its event is written in
    /// (set by the handler before its write: `Create*` calls; `elements`).
    respond: std::sync::Mutex<Option<Respond>>,
    /// The request's partition: the elements read back from IAM's records (kept in `aws`)
    /// show their ARNs in it, as the answer does.
    partition: Partition,
}

/// How a call's response elements are read in the transaction of its change.
type Respond = Box<dyn Fn(&dyn coffer_store::ReadTxn) -> serde_json::Value + Send + Sync>;

/// Every ARN among `value`'s strings in `partition` (IAM's records keep theirs in `aws`).
fn arns_in_partition(value: &mut serde_json::Value, partition: Partition) {
    match value {
        serde_json::Value::String(s) if s.starts_with("arn:") => *s = partition.rewrite(s),
        serde_json::Value::Array(items) => {
            items.iter_mut().for_each(|v| arns_in_partition(v, partition));
        }
        serde_json::Value::Object(members) => {
            members.values_mut().for_each(|v| arns_in_partition(v, partition));
        }
        _ => {}
    }
}

type WriteFn<'f> =
    dyn FnMut(&mut dyn coffer_store::WriteTxn) -> coffer_store::StoreResult<()> + Send + 'f;

impl RecordedStore {
    fn new(
        app: Arc<App>,
        event: Option<crate::audit::ForWrite>,
        partition: Partition,
    ) -> RecordedStore {
        let respond = std::sync::Mutex::new(None);
        RecordedStore { app, event, appended: AtomicBool::new(false), respond, partition }
    }

    /// The call's event records what `read` gives, read in the transaction of its change.
    fn respond_with(
        &self,
        read: impl Fn(&dyn coffer_store::ReadTxn) -> serde_json::Value + Send + Sync + 'static,
    ) {
        *self.respond.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(Box::new(read));
    }

    fn elements_in(&self, tx: &dyn coffer_store::ReadTxn) -> serde_json::Value {
        let respond = self.respond.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut elements = respond.as_ref().map_or(serde_json::Value::Null, |read| read(tx));
        arns_in_partition(&mut elements, self.partition);
        elements
    }

    /// Runs `f` through `commit` (one of the store's write methods), with the call's event
    /// appended in the same transaction if this is the call's first committed write.
    fn recorded(
        &self,
        f: &mut WriteFn<'_>,
        commit: impl FnOnce(&mut WriteFn<'_>) -> coffer_store::StoreResult<()>,
    ) -> coffer_store::StoreResult<()> {
        let event = self.event.as_ref().filter(|_| !self.appended.load(Ordering::SeqCst));
        let Some(event) = event else { return commit(f) };
        let app = &self.app;
        let mut lines = crate::audit_file::Lines::default();
        let result = commit(&mut |tx| {
            f(tx)?;
            let elements = crate::audit::ResponseElements(self.elements_in(&*tx));
            let mut txn = crate::Txn::new(tx, lines.attempt());
            crate::audit::in_transaction(app, &mut txn, &elements, Some(event), None).map_err(
                |_| {
                    coffer_store::StoreError::Backend(
                        "the call's audit event could not be written".into(),
                    )
                },
            )
        });
        if result.is_ok() {
            lines.committed(&app.audit);
            self.appended.store(true, Ordering::SeqCst);
        }
        result
    }
}

/// Every method is forwarded to the server's store, those the trait gives a default too:
/// a default here would silently drop what the store does instead (a PostgreSQL write's
/// handoff, the memory store's trail-only write, leases, `/ready`'s refusal, the scrub).
impl coffer_store::Store for RecordedStore {
    fn latency(&self) -> coffer_store::Latency {
        self.app.store.latency()
    }

    fn read(
        &self,
        f: &mut dyn FnMut(&dyn coffer_store::ReadTxn) -> coffer_store::StoreResult<()>,
    ) -> coffer_store::StoreResult<()> {
        self.app.store.read(f)
    }

    fn read_scope(&self, f: &mut dyn FnMut()) -> coffer_store::Handoff {
        self.app.store.read_scope(f)
    }

    fn write(&self, f: &mut WriteFn<'_>) -> coffer_store::StoreResult<()> {
        self.recorded(f, |f| self.app.store.write(f))
    }

    fn write_after(
        &self,
        handoff: coffer_store::Handoff,
        f: &mut WriteFn<'_>,
    ) -> coffer_store::StoreResult<()> {
        self.recorded(f, |f| self.app.store.write_after(handoff, f))
    }

    fn write_trail(&self, f: &mut WriteFn<'_>) -> coffer_store::StoreResult<()> {
        self.recorded(f, |f| self.app.store.write_trail(f))
    }

    fn describe(&self) -> String {
        self.app.store.describe()
    }

    fn refusing_writes(&self) -> Option<String> {
        self.app.store.refusing_writes()
    }

    fn export(
        &self,
        visit: &mut dyn FnMut(coffer_store::SnapshotItem) -> coffer_store::StoreResult<()>,
    ) -> coffer_store::StoreResult<()> {
        self.app.store.export(visit)
    }

    fn import(&self, items: &[coffer_store::SnapshotItem]) -> coffer_store::StoreResult<()> {
        self.app.store.import(items)
    }

    fn import_from(
        &self,
        produce: &mut coffer_store::ImportProducer<'_>,
    ) -> coffer_store::StoreResult<()> {
        self.app.store.import_from(produce)
    }

    fn try_acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> coffer_store::StoreResult<bool> {
        self.app.store.try_acquire_lease(name, holder, ttl)
    }

    fn scrub_deleted(&self) -> coffer_store::StoreResult<()> {
        self.app.store.scrub_deleted()
    }

    fn release_lease(&self, name: &str, holder: &str) -> coffer_store::StoreResult<()> {
        self.app.store.release_lease(name, holder)
    }
}

/// One authenticated IAM call.
struct Call<'a> {
    /// Writes through it carry the call's event.
    store: &'a RecordedStore,
    iam: &'a Iam,
    who: &'a Authenticated,
    raw: &'a RawRequest,
    form: &'a Form,
}

impl Call<'_> {
    fn account(&self) -> &str {
        &self.who.caller.principal.account
    }

    fn store(&self) -> &dyn coffer_store::Store {
        self.store
    }

    fn authorize(&self, op: IamOp, resource: &str) -> Result<(), Failure> {
        self.authorize_with(op, resource, &[])
    }

    fn authorize_with(
        &self,
        op: IamOp,
        resource: &str,
        extra: &[(&str, String)],
    ) -> Result<(), Failure> {
        // The tags a call sets (`aws:RequestTag/<key>`, `aws:TagKeys`) or removes
        // (`aws:TagKeys`), as AWS gives them to iam:TagUser, iam:CreateRole, iam:UntagRole,
        // ...: only the calls that take `Tags` or `TagKeys` have them. Without them a Deny
        // keeping principals from the tags access is decided on (AWS's ABAC guidance) never
        // matched (review 16, finding 03).
        // Only from the calls whose input has them (AWS gives an operation the keys of its
        // own parameters): a `Tags` added to a DeleteUser or CreateAccessKey form met
        // conditions those calls never meet (review 17, finding 03).
        let takes = |member: &str| {
            coffer_wire::query_params::input_members(op.into())
                .is_some_and(|members| members.iter().any(|(name, _)| *name == member))
        };
        let tags = if takes("Tags") { self.form.tags() } else { Vec::new() };
        let tag_keys = if takes("TagKeys") { self.form.list("TagKeys") } else { Vec::new() };
        let request_tags = tags.iter().map(|t| (format!("aws:RequestTag/{}", t.key), &t.value));
        let request_tags: Vec<(String, &String)> = request_tags.collect();
        let mut with_tags: Vec<(&str, String)> = extra.to_vec();
        for (key, value) in &request_tags {
            with_tags.push((key.as_str(), (*value).clone()));
        }
        for key in tags.iter().map(|t| &t.key).chain(&tag_keys) {
            with_tags.push(("aws:TagKeys", key.clone()));
        }
        // The tags of the user, role, policy or OIDC provider the call is on
        // (`aws:ResourceTag/<key>`, and IAM's older `iam:ResourceTag/<key>`): without them a
        // Deny protecting tagged administrators' users and roles never matched (review 16,
        // finding 04).
        let resource_tags: Vec<(String, String)> = self
            .resource_tags(resource)
            .into_iter()
            .flat_map(|t| {
                [
                    (format!("aws:ResourceTag/{}", t.key), t.value.clone()),
                    (format!("iam:ResourceTag/{}", t.key), t.value),
                ]
            })
            .collect();
        for (key, value) in &resource_tags {
            with_tags.push((key.as_str(), value.clone()));
        }
        auth::authorize_action(self.who, op.iam_action(), resource, self.raw, &with_tags)
            .map_err(Failure::from)
    }

    /// The tags of the user, role, customer managed policy or OpenID Connect provider of the
    /// caller's account that `resource` (an ARN as authorization names it) is; none for
    /// anything else (a pattern, a group, an entity that does not exist).
    fn resource_tags(&self, resource: &str) -> Vec<Tag> {
        let parts: Vec<&str> = resource.splitn(6, ':').collect();
        let ["arn", _, "iam", "", account, what] = parts.as_slice() else { return Vec::new() };
        if *account != self.account() {
            return Vec::new();
        }
        let (store, iam) = (self.store(), self.iam);
        let last = |rest: &str| rest.rsplit('/').next().unwrap_or_default().to_string();
        if let Some(rest) = what.strip_prefix("user/") {
            iam.get_user(store, account, &last(rest)).map(|u| u.tags).unwrap_or_default()
        } else if let Some(rest) = what.strip_prefix("role/") {
            iam.get_role(store, account, &last(rest)).map(|r| r.tags).unwrap_or_default()
        } else if what.starts_with("policy/") {
            coffer_auth::principal::stored_iam_arn(resource, self.partition())
                .and_then(|stored| iam.get_policy(store, account, &stored).ok())
                .map(|(p, _)| p.tags)
                .unwrap_or_default()
        } else if what.starts_with("oidc-provider/") {
            // An OpenID Connect provider's too, as IAM gives them: a Deny protecting tagged
            // providers held for users, roles and policies only (review 16, left).
            coffer_auth::principal::stored_iam_arn(resource, self.partition())
                .and_then(|stored| iam.get_oidc_provider(store, account, &stored).ok())
                .map(|p| p.tags)
                .unwrap_or_default()
        } else {
            Vec::new()
        }
    }

    /// A trust policy as it is stored: IAM user and role ARNs among its principals bound
    /// to their unique ids, as resource and key policies are bound, so a user or role
    /// deleted and created again under the same name is not trusted; one that names no
    /// principal is refused. A document that is not JSON is left to IAM's validation.
    fn bound_trust(&self, doc: &str) -> Result<String, Failure> {
        let Ok(mut parsed) = serde_json::from_str::<serde_json::Value>(doc) else {
            return Ok(doc.to_string());
        };
        let app = &self.store.app;
        let partition = self.partition();
        let bind = |text: &str| {
            app.read(|tx| crate::policies::bind_principals(tx, text, "invalid", partition))
        };
        match bind(doc) {
            Err(e) if e.code == ErrorCode::MalformedPolicyDocument => {}
            other => return other.map_err(Failure::from),
        }
        // Name the principal that does not exist, in IAM's words: each is tried alone.
        let mut named = Vec::new();
        let _ = coffer_auth::policy::map_aws_principals::<()>(&mut parsed, &mut |id| {
            named.push(id.to_string());
            Ok(None)
        });
        let unknown = named.into_iter().find(|id| {
            let alone = serde_json::json!({"Statement": [{"Principal": {"AWS": id}}]});
            bind(&alone.to_string()).is_err()
        });
        let message = match unknown {
            // Bounded, as every echo of the request is.
            Some(id) => {
                let id = coffer_auth::sigv4::echo(&id);
                format!("Invalid principal in policy: \"AWS\":\"{id}\"")
            }
            None => "Invalid principal in policy.".to_string(),
        };
        Err(Failure::new("MalformedPolicyDocument", message, 400))
    }

    /// A role as IAM shows it: its trust policy's unique ids shown as the ARNs of the
    /// principals that still exist (a deleted one stays an id, as AWS shows it).
    fn shown_role(&self, mut role: RoleRecord) -> Result<RoleRecord, Failure> {
        let text = std::mem::take(&mut role.trust_policy);
        let partition = self.partition();
        role.trust_policy = self
            .store
            .app
            .read(|tx| crate::policies::show_user_principals(tx, text.clone(), partition))?;
        Ok(role)
    }

    /// The partition of the region the request was signed for: IAM's ARNs are shown in it.
    fn partition(&self) -> Partition {
        Partition::of_region(&self.who.region)
    }

    /// An OpenID Connect provider's ARN as IAM's records keep it; one of another partition
    /// than the request's names no provider.
    fn stored_provider_arn(&self, arn: &str) -> Result<String, Failure> {
        coffer_auth::principal::stored_iam_arn(arn, self.partition())
            .ok_or_else(|| crate::iam::oidc::not_found(arn).into())
    }

    /// The ARN of an IAM entity as the request's partition names it (what policies match).
    fn arn(&self, kind: &str, path: &str, name: &str) -> String {
        self.partition().arn("iam", "", self.account(), &format!("{kind}{path}{name}"))
    }

    /// The ARN of an entity for authorization: with its path when it exists.
    fn entity_arn(&self, entity: Entity, name: &str) -> String {
        let (kind, path) = match entity {
            Entity::User => {
                ("user", self.iam.get_user(self.store(), self.account(), name).map(|u| u.path))
            }
            Entity::Group => (
                "group",
                self.iam.get_group(self.store(), self.account(), name).map(|(g, _)| g.path),
            ),
            Entity::Role => {
                ("role", self.iam.get_role(self.store(), self.account(), name).map(|r| r.path))
            }
        };
        self.arn(kind, &path.unwrap_or_else(|_| "/".to_string()), name)
    }

    /// Authorizes renaming a user or group, or moving it: as IAM, on the entity as it is
    /// and on what it becomes (renaming Bob to Robert needs the permission on both).
    fn authorize_rename(
        &self,
        op: IamOp,
        entity: Entity,
        name: &str,
        new: NewNameAndPath<'_>,
    ) -> Result<(), Failure> {
        let current = self.entity_arn(entity, name);
        self.authorize(op, &current)?;
        if new.name.is_none() && new.path.is_none() {
            return Ok(());
        }
        let kind = if entity == Entity::User { "user" } else { "group" };
        let path = match new.path {
            Some(p) => p.to_string(),
            None => current_path(&current, kind, name),
        };
        self.authorize(op, &self.arn(kind, &path, new.name.unwrap_or(name)))
    }

    /// `UserName`, or the caller's own user when it is absent (GetUser, access keys).
    fn user_or_caller(&self) -> Result<String, Failure> {
        match self.form.get("UserName") {
            Some(name) => Ok(name.to_string()),
            // A role's session is no user: its session name must not be taken for one.
            None if self.who.caller.principal.is_assumed_role() => Err(Failure::invalid(
                "Must specify userName when calling with non-User credentials",
            )),
            None => Ok(self.who.caller.principal.name.clone()),
        }
    }

    fn path(&self, name: &str) -> &str {
        self.form.get(name).unwrap_or("/")
    }

    fn run(&self, op: IamOp) -> Result<String, Failure> {
        use IamOp::*;
        let store = self.store();
        let account = self.account().to_string();
        let account = account.as_str();
        let f = self.form;
        let iam = self.iam;
        let now = crate::clock::now_ms();
        let mut x = Xml::default();
        match op {
            CreateUser => {
                let name = f.required("UserName", "userName")?;
                no_permissions_boundary(f)?;
                let path = self.path("Path");
                self.authorize(op, &self.arn("user", path, name))?;
                let (owner, named) = (account.to_string(), name.to_string());
                self.store.respond_with(move |tx| elements::created_user(tx, &owner, &named));
                let user = iam.create_user_with(store, account, name, path, f.tags(), now)?;
                x.open("User");
                user_xml(&mut x, &user, true, self.partition());
                x.close("User");
            }
            GetUser => {
                let name = self.user_or_caller()?;
                self.authorize(op, &self.entity_arn(Entity::User, &name))?;
                let user = iam.get_user(store, account, &name)?;
                x.open("User");
                user_xml(&mut x, &user, true, self.partition());
                x.close("User");
            }
            ListUsers => {
                let prefix = self.path("PathPrefix");
                self.authorize(op, &self.arn("user", prefix, "*"))?;
                let (users, marker) = page(f, iam.users_in(store, account, prefix)?, |u| &u.name)?;
                x.members("Users", &users, |x, u| user_xml(x, u, false, self.partition()))
                    .truncation(marker);
            }
            UpdateUser => {
                let name = f.required("UserName", "userName")?;
                let new = NewNameAndPath { name: f.get("NewUserName"), path: f.get("NewPath") };
                self.authorize_rename(op, Entity::User, name, new)?;
                iam.update_user(store, account, name, new)?;
            }
            GetAccessKeyLastUsed => {
                let id = f.required("AccessKeyId", "accessKeyId")?;
                let owner = iam.key_owner(store, id)?.filter(|o| o.account == account);
                let Some(user) = owner.and_then(|o| o.user_name) else {
                    // Decided on the account's users before saying the key is not one of
                    // theirs, so a caller without the permission learns nothing.
                    self.authorize(op, &self.arn("user", "/", "*"))?;
                    let id = coffer_auth::sigv4::echo(id);
                    let message = format!("The Access Key with id {id} cannot be found.");
                    return Err(IamError::NotFound(message).into());
                };
                self.authorize(op, &self.entity_arn(Entity::User, &user))?;
                x.field("UserName", &user).open("AccessKeyLastUsed");
                // A key never used answers "N/A" for both, as AWS's does.
                match iam.key_last_used(store, id)? {
                    Some(used) => x
                        .date("LastUsedDate", used.last_used_ms)
                        .field("ServiceName", &used.service)
                        .field("Region", &used.region),
                    None => x.field("ServiceName", "N/A").field("Region", "N/A"),
                };
                x.close("AccessKeyLastUsed");
            }
            DeleteUser => {
                let name = f.required("UserName", "userName")?;
                self.authorize(op, &self.entity_arn(Entity::User, name))?;
                iam.delete_user_checked(store, account, name)?;
            }
            TagUser => {
                let name = f.required("UserName", "userName")?;
                self.authorize(op, &self.entity_arn(Entity::User, name))?;
                iam.tag_user(store, account, name, f.tags())?;
            }
            UntagUser => {
                let name = f.required("UserName", "userName")?;
                self.authorize(op, &self.entity_arn(Entity::User, name))?;
                iam.untag_user(store, account, name, &f.list("TagKeys"))?;
            }
            ListUserTags => {
                let name = f.required("UserName", "userName")?;
                self.authorize(op, &self.entity_arn(Entity::User, name))?;
                let user = iam.get_user(store, account, name)?;
                x.tags(&user.tags).untruncated();
            }
            CreateAccessKey => {
                let name = self.user_or_caller()?;
                self.authorize(op, &self.entity_arn(Entity::User, &name))?;
                let (id, secret) = crate::iam::new_access_key();
                let known = elements::created_access_key(&name, &id, now);
                self.store.respond_with(move |_| known.clone());
                iam.create_access_key_as(store, account, &name, (&id, &secret), now)?;
                x.open("AccessKey")
                    .field("UserName", &name)
                    .field("AccessKeyId", &id)
                    .field("Status", "Active")
                    .field("SecretAccessKey", secret.expose())
                    .date("CreateDate", now)
                    .close("AccessKey");
            }
            ListAccessKeys => {
                let name = self.user_or_caller()?;
                self.authorize(op, &self.entity_arn(Entity::User, &name))?;
                let keys = iam.access_keys_of(store, account, &name)?;
                x.members("AccessKeyMetadata", &keys, key_xml).untruncated();
            }
            UpdateAccessKey => {
                let name = self.user_or_caller()?;
                let id = f.required("AccessKeyId", "accessKeyId")?;
                let status = f.required("Status", "status")?;
                self.authorize(op, &self.entity_arn(Entity::User, &name))?;
                iam.update_access_key(store, account, &name, id, status)?;
            }
            DeleteAccessKey => {
                let name = self.user_or_caller()?;
                let id = f.required("AccessKeyId", "accessKeyId")?;
                self.authorize(op, &self.entity_arn(Entity::User, &name))?;
                iam.delete_access_key_of(store, account, &name, id)?;
            }
            PutUserPolicy | PutGroupPolicy | PutRolePolicy => {
                let (entity, name) = self.entity_of(op)?;
                let policy = f.required("PolicyName", "policyName")?;
                let doc = f.document("PolicyDocument", "policyDocument")?;
                self.authorize(op, &self.entity_arn(entity, &name))?;
                iam.put_inline_policy(store, entity, account, &name, policy, doc)?;
            }
            GetUserPolicy | GetGroupPolicy | GetRolePolicy => {
                let (entity, name) = self.entity_of(op)?;
                let policy = f.required("PolicyName", "policyName")?;
                self.authorize(op, &self.entity_arn(entity, &name))?;
                let doc = iam.inline_policy(store, entity, account, &name, policy)?;
                x.field(entity_member(entity), &name)
                    .field("PolicyName", policy)
                    .field("PolicyDocument", &url_encode(&doc));
            }
            ListUserPolicies | ListGroupPolicies | ListRolePolicies => {
                let (entity, name) = self.entity_of(op)?;
                self.authorize(op, &self.entity_arn(entity, &name))?;
                let (inline, _) = iam.policies_of(store, entity, account, &name)?;
                let names: Vec<&String> = inline.keys().collect();
                x.open("PolicyNames");
                for n in names {
                    x.field("member", n);
                }
                x.close("PolicyNames").untruncated();
            }
            DeleteUserPolicy | DeleteGroupPolicy | DeleteRolePolicy => {
                let (entity, name) = self.entity_of(op)?;
                let policy = f.required("PolicyName", "policyName")?;
                self.authorize(op, &self.entity_arn(entity, &name))?;
                iam.delete_inline_policy(store, entity, account, &name, policy)?;
            }
            AttachUserPolicy | AttachGroupPolicy | AttachRolePolicy => {
                let (entity, name) = self.entity_of(op)?;
                let (arn, stored) = policy_arn(f, self.partition())?;
                let extra = [("iam:PolicyARN", arn.to_string())];
                self.authorize_with(op, &self.entity_arn(entity, &name), &extra)?;
                iam.attach_policy(store, entity, account, &name, &stored)?;
            }
            DetachUserPolicy | DetachGroupPolicy | DetachRolePolicy => {
                let (entity, name) = self.entity_of(op)?;
                let (arn, stored) = policy_arn(f, self.partition())?;
                let extra = [("iam:PolicyARN", arn.to_string())];
                self.authorize_with(op, &self.entity_arn(entity, &name), &extra)?;
                iam.detach_policy(store, entity, account, &name, &stored)?;
            }
            ListAttachedUserPolicies | ListAttachedGroupPolicies | ListAttachedRolePolicies => {
                let (entity, name) = self.entity_of(op)?;
                self.authorize(op, &self.entity_arn(entity, &name))?;
                let (_, attached) = iam.policies_of(store, entity, account, &name)?;
                attached_xml(&mut x, &attached.into_iter().collect::<Vec<_>>(), self.partition());
            }
            CreatePolicy => {
                let name = f.required("PolicyName", "policyName")?;
                let doc = f.document("PolicyDocument", "policyDocument")?;
                let path = self.path("Path");
                self.authorize(op, &self.arn("policy", path, name))?;
                let desc = f.get("Description").unwrap_or("");
                let (owner, named) = (account.to_string(), name.to_string());
                self.store.respond_with(move |tx| elements::created_policy(tx, &owner, &named));
                let policy =
                    iam.create_policy(store, account, name, path, doc, desc, f.tags(), now)?;
                x.open("Policy");
                policy_xml(&mut x, &policy, 0, false, self.partition());
                if !policy.tags.is_empty() {
                    x.tags(&policy.tags);
                }
                x.close("Policy");
            }
            GetPolicy => {
                let (arn, stored) = policy_arn(f, self.partition())?;
                self.authorize(op, arn)?;
                let (policy, n) = iam.get_policy(store, account, &stored)?;
                x.open("Policy");
                policy_xml(&mut x, &policy, n, true, self.partition());
                // GetPolicy shows the policy's tags, an empty list when it has none (as
                // AWS's answer does).
                x.tags(&policy.tags);
                x.close("Policy");
            }
            GetPolicyVersion => {
                let (arn, stored) = policy_arn(f, self.partition())?;
                let version = f.required("VersionId", "versionId")?;
                crate::iam::directory::validate_version_id(version)?;
                self.authorize(op, arn)?;
                let no_such_version = || {
                    Failure::new(
                        "NoSuchEntity",
                        format!(
                            "Policy {} version {} does not exist or is not attachable.",
                            coffer_auth::sigv4::echo_at_most(arn, 256),
                            coffer_auth::sigv4::echo_at_most(version, 256)
                        ),
                        404,
                    )
                };
                // A missing policy is answered as its version missing, as IAM words it.
                let (policy, _) = iam.get_policy(store, account, &stored).map_err(|e| match e {
                    IamError::NotFound(_) => no_such_version(),
                    e => e.into(),
                })?;
                let v =
                    policy.versions.iter().find(|v| v.id == version).ok_or_else(no_such_version)?;
                x.open("PolicyVersion")
                    .field("Document", &url_encode(&v.document))
                    .field("VersionId", &v.id)
                    .field("IsDefaultVersion", &(v.id == policy.default_version).to_string())
                    .date("CreateDate", v.created_ms)
                    .close("PolicyVersion");
            }
            ListPolicies => {
                self.authorize(op, "*")?;
                let scope = list_policies_scope(f)?;
                let only_attached = f.get("OnlyAttached") == Some("true");
                let prefix = self.path("PathPrefix");
                let mut policies = Vec::new();
                if scope != PolicyScope::Local {
                    policies.extend(iam.aws_managed_policies_in(store, account)?);
                }
                if scope != PolicyScope::Aws {
                    policies.extend(iam.policies_in(store, account)?);
                }
                policies.retain(|(p, n)| p.path.starts_with(prefix) && (!only_attached || *n > 0));
                // Pages follow the ARN (as IAM's records keep it), unique across both kinds:
                // the name alone is not (a customer policy may be called ReadOnlyAccess).
                let mut policies: Vec<_> =
                    policies.into_iter().map(|(p, n)| (p.arn(), p, n)).collect();
                policies.sort_by(|a, b| a.0.cmp(&b.0));
                let (policies, marker) = page(f, policies, |(arn, _, _)| arn)?;
                let policies: Vec<_> = policies.into_iter().map(|(_, p, n)| (p, n)).collect();
                x.members("Policies", &policies, |x, (p, n)| {
                    policy_xml(x, p, *n, false, self.partition())
                })
                .truncation(marker);
            }
            CreatePolicyVersion => {
                let (arn, stored) = policy_arn(f, self.partition())?;
                let doc = f.document("PolicyDocument", "policyDocument")?;
                self.authorize(op, arn)?;
                self.refuse_aws_managed(op, arn, &stored)?;
                let default = f.get("SetAsDefault") == Some("true");
                // The elements are read back from the stored policy (its ARN in `aws`).
                let (owner, policy) = (account.to_string(), stored.clone());
                self.store
                    .respond_with(move |tx| elements::created_policy_version(tx, &owner, &policy));
                let v = iam.create_policy_version(store, account, &stored, doc, default, now)?;
                x.open("PolicyVersion")
                    .field("VersionId", &v.id)
                    .field("IsDefaultVersion", &default.to_string())
                    .date("CreateDate", v.created_ms)
                    .close("PolicyVersion");
            }
            ListEntitiesForPolicy => {
                let (arn, stored) = policy_arn(f, self.partition())?;
                let filter = entity_filter(f)?;
                self.authorize(op, arn)?;
                let prefix = self.path("PathPrefix");
                let crate::iam::directory::PolicyEntities { users, groups, roles } =
                    iam.entities_for_policy(store, account, &stored)?;
                let wanted = |kind: &str| filter.is_none_or(|only| only == kind);
                // Boundaries are not served (`no_permissions_boundary`): nothing uses a
                // policy as one, so that filter lists nothing.
                let permissions = f.get("PolicyUsageFilter") != Some("PermissionsBoundary");
                let keep = |kind: &str, path: &str| {
                    permissions && wanted(kind) && path.starts_with(prefix)
                };
                let groups: Vec<_> = groups.iter().filter(|g| keep("Group", &g.path)).collect();
                let users: Vec<_> = users.iter().filter(|u| keep("User", &u.path)).collect();
                let roles: Vec<_> = roles.iter().filter(|r| keep("Role", &r.path)).collect();
                x.members("PolicyGroups", &groups, |x, g| {
                    x.field("GroupName", &g.name).field("GroupId", &g.group_id);
                });
                x.members("PolicyUsers", &users, |x, u| {
                    x.field("UserName", &u.name).field("UserId", &u.user_id);
                });
                x.members("PolicyRoles", &roles, |x, r| {
                    x.field("RoleName", &r.name).field("RoleId", &r.role_id);
                });
                x.untruncated();
            }
            ListPolicyVersions => {
                let (arn, stored) = policy_arn(f, self.partition())?;
                self.authorize(op, arn)?;
                let (policy, _) = iam.get_policy(store, account, &stored)?;
                // Newest first, as IAM lists them.
                let versions: Vec<_> = policy.versions.iter().rev().collect();
                x.members("Versions", &versions, |x, v| {
                    x.field("VersionId", &v.id)
                        .field("IsDefaultVersion", &(v.id == policy.default_version).to_string())
                        .date("CreateDate", v.created_ms);
                })
                .untruncated();
            }
            DeletePolicyVersion => {
                let (arn, stored) = policy_arn(f, self.partition())?;
                let version = f.required("VersionId", "versionId")?;
                crate::iam::directory::validate_version_id(version)?;
                self.authorize(op, arn)?;
                self.refuse_aws_managed(op, arn, &stored)?;
                iam.delete_policy_version(store, account, &stored, version)?;
            }
            SetDefaultPolicyVersion => {
                let (arn, stored) = policy_arn(f, self.partition())?;
                let version = f.required("VersionId", "versionId")?;
                crate::iam::directory::validate_version_id(version)?;
                self.authorize(op, arn)?;
                self.refuse_aws_managed(op, arn, &stored)?;
                iam.set_default_policy_version(store, account, &stored, version, now)?;
            }
            TagRole => {
                let name = f.required("RoleName", "roleName")?;
                self.authorize(op, &self.entity_arn(Entity::Role, name))?;
                iam.tag_entity(store, Entity::Role, account, name, f.tags())?;
            }
            UntagRole => {
                let name = f.required("RoleName", "roleName")?;
                self.authorize(op, &self.entity_arn(Entity::Role, name))?;
                iam.untag_entity(store, Entity::Role, account, name, &f.list("TagKeys"))?;
            }
            ListRoleTags => {
                let name = f.required("RoleName", "roleName")?;
                self.authorize(op, &self.entity_arn(Entity::Role, name))?;
                let role = iam.get_role(store, account, name)?;
                x.tags(&role.tags).untruncated();
            }
            DeletePolicy => {
                let (arn, stored) = policy_arn(f, self.partition())?;
                self.authorize(op, arn)?;
                self.refuse_aws_managed(op, arn, &stored)?;
                iam.delete_policy(store, account, &stored)?;
            }
            CreateGroup => {
                let name = f.required("GroupName", "groupName")?;
                let path = self.path("Path");
                self.authorize(op, &self.arn("group", path, name))?;
                let (owner, named) = (account.to_string(), name.to_string());
                self.store.respond_with(move |tx| elements::created_group(tx, &owner, &named));
                let group = iam.create_group(store, account, name, path, now)?;
                x.open("Group");
                group_xml(&mut x, &group, self.partition());
                x.close("Group");
            }
            GetGroup => {
                let name = f.required("GroupName", "groupName")?;
                self.authorize(op, &self.entity_arn(Entity::Group, name))?;
                let (group, users) = iam.get_group(store, account, name)?;
                x.open("Group");
                group_xml(&mut x, &group, self.partition());
                x.close("Group");
                x.members("Users", &users, |x, u| user_xml(x, u, false, self.partition()))
                    .untruncated();
            }
            ListGroups => {
                let prefix = self.path("PathPrefix");
                self.authorize(op, &self.arn("group", prefix, "*"))?;
                let mut groups = iam.groups_in(store, account)?;
                groups.retain(|g| g.path.starts_with(prefix));
                let (groups, marker) = page(f, groups, |g| &g.name)?;
                x.members("Groups", &groups, |x, g| group_xml(x, g, self.partition()))
                    .truncation(marker);
            }
            ListGroupsForUser => {
                let name = f.required("UserName", "userName")?;
                self.authorize(op, &self.entity_arn(Entity::User, name))?;
                let groups = iam.groups_of(store, account, name)?;
                x.members("Groups", &groups, |x, g| group_xml(x, g, self.partition()))
                    .untruncated();
            }
            UpdateGroup => {
                let name = f.required("GroupName", "groupName")?;
                let new = NewNameAndPath { name: f.get("NewGroupName"), path: f.get("NewPath") };
                self.authorize_rename(op, Entity::Group, name, new)?;
                iam.update_group(store, account, name, new)?;
            }
            DeleteGroup => {
                let name = f.required("GroupName", "groupName")?;
                self.authorize(op, &self.entity_arn(Entity::Group, name))?;
                iam.delete_group(store, account, name)?;
            }
            AddUserToGroup | RemoveUserFromGroup => {
                let group = f.required("GroupName", "groupName")?;
                let user = f.required("UserName", "userName")?;
                self.authorize(op, &self.entity_arn(Entity::Group, group))?;
                iam.set_membership(store, account, group, user, op == AddUserToGroup)?;
            }
            CreateRole => {
                let name = f.required("RoleName", "roleName")?;
                let trust = f.document("AssumeRolePolicyDocument", "assumeRolePolicyDocument")?;
                no_permissions_boundary(f)?;
                let path = self.path("Path");
                self.authorize(op, &self.arn("role", path, name))?;
                let max = max_session_duration(f)?;
                let desc = f.get("Description").unwrap_or("");
                let trust = self.bound_trust(trust)?;
                let (owner, named) = (account.to_string(), name.to_string());
                self.store.respond_with(move |tx| elements::created_role(tx, &owner, &named));
                let role =
                    iam.create_role(store, account, name, path, &trust, desc, max, f.tags(), now)?;
                let role = self.shown_role(role)?;
                x.open("Role");
                role_xml(&mut x, &role, RoleView::Created, self.partition());
                x.close("Role");
            }
            GetRole => {
                let name = f.required("RoleName", "roleName")?;
                self.authorize(op, &self.entity_arn(Entity::Role, name))?;
                let role = self.shown_role(iam.get_role(store, account, name)?)?;
                x.open("Role");
                role_xml(&mut x, &role, RoleView::Got, self.partition());
                x.close("Role");
            }
            ListRoles => {
                let prefix = self.path("PathPrefix");
                self.authorize(op, &self.arn("role", prefix, "*"))?;
                let mut roles = iam.roles_in(store, account)?;
                roles.retain(|r| r.path.starts_with(prefix));
                let (roles, marker) = page(f, roles, |r| &r.name)?;
                let roles =
                    roles.into_iter().map(|r| self.shown_role(r)).collect::<Result<Vec<_>, _>>()?;
                x.members("Roles", &roles, |x, r| {
                    role_xml(x, r, RoleView::Listed, self.partition())
                })
                .truncation(marker);
            }
            UpdateRole => {
                let name = f.required("RoleName", "roleName")?;
                let changes = RoleChanges {
                    description: f.get("Description"),
                    max_session_secs: max_session_duration(f)?,
                };
                self.authorize(op, &self.entity_arn(Entity::Role, name))?;
                iam.update_role(store, account, name, changes)?;
                // Its output is an empty structure, whose (empty) UpdateRoleResult element
                // the SDKs look for, unlike the operations with no output at all.
                x.0.push('\n');
            }
            UpdateRoleDescription => {
                let name = f.required("RoleName", "roleName")?;
                let description = f.required("Description", "description")?;
                self.authorize(op, &self.entity_arn(Entity::Role, name))?;
                let changes = RoleChanges { description: Some(description), ..Default::default() };
                let (owner, named) = (account.to_string(), name.to_string());
                self.store.respond_with(move |tx| elements::described_role(tx, &owner, &named));
                let role = self.shown_role(iam.update_role(store, account, name, changes)?)?;
                x.open("Role");
                role_xml(&mut x, &role, RoleView::Got, self.partition());
                x.close("Role");
            }
            DeleteRole => {
                let name = f.required("RoleName", "roleName")?;
                self.authorize(op, &self.entity_arn(Entity::Role, name))?;
                iam.delete_role(store, account, name)?;
            }
            UpdateAssumeRolePolicy => {
                let name = f.required("RoleName", "roleName")?;
                let doc = f.document("PolicyDocument", "policyDocument")?;
                self.authorize(op, &self.entity_arn(Entity::Role, name))?;
                let doc = self.bound_trust(doc)?;
                iam.update_trust_policy(store, account, name, &doc)?;
            }
            CreateOpenIDConnectProvider => {
                let url = f.required("Url", "url")?;
                let host_path = crate::iam::oidc::host_path(url);
                self.authorize(op, &self.arn("oidc-provider/", "", host_path))?;
                let tags = f.tags();
                if let Some(why) =
                    tags.iter().filter(|t| t.key == crate::iam::oidc::JWKS_FILE_TAG).find_map(|t| {
                        crate::jwks_file::refusal(
                            self.store.app.config.jwks_dir.as_deref(),
                            &t.value,
                        )
                    })
                {
                    return Err(IamError::Invalid(why).into());
                }
                let known = crate::iam::oidc::OidcProvider::arn_of(account, url);
                let known = elements::created_oidc_provider(&known, &tags);
                self.store.respond_with(move |_| known.clone());
                let provider = iam.create_oidc_provider(
                    store,
                    account,
                    url,
                    f.list("ClientIDList"),
                    f.list("ThumbprintList"),
                    tags,
                    now,
                )?;
                x.field("OpenIDConnectProviderArn", &self.partition().rewrite(&provider.arn()));
                if !provider.tags.is_empty() {
                    x.tags(&provider.tags);
                }
            }
            GetOpenIDConnectProvider => {
                let arn = f.required("OpenIDConnectProviderArn", "openIDConnectProviderArn")?;
                self.authorize(op, arn)?;
                let stored = self.stored_provider_arn(arn)?;
                let p = iam.get_oidc_provider(store, account, &stored)?;
                x.field("Url", p.host_path());
                x.open("ClientIDList");
                for id in &p.client_ids {
                    x.field("member", id);
                }
                x.close("ClientIDList").open("ThumbprintList");
                for t in &p.thumbprints {
                    x.field("member", t);
                }
                // Tags are shown even when there are none, as AWS's answer does.
                x.close("ThumbprintList").date("CreateDate", p.created_ms).tags(&p.tags);
            }
            ListOpenIDConnectProviders => {
                self.authorize(op, "*")?;
                let all = iam.oidc_providers_in(store, account)?;
                x.members("OpenIDConnectProviderList", &all, |x, p| {
                    x.field("Arn", &self.partition().rewrite(&p.arn()));
                });
            }
            DeleteOpenIDConnectProvider => {
                let arn = f.required("OpenIDConnectProviderArn", "openIDConnectProviderArn")?;
                self.authorize(op, arn)?;
                let stored = self.stored_provider_arn(arn)?;
                iam.delete_oidc_provider(store, account, &stored)?;
            }
        }
        Ok(x.0)
    }

    /// AWS managed policies are read-only: a change to one Coffer has is refused as AWS
    /// refuses it, with AccessDenied in IAM's form (the policy belongs to AWS's account,
    /// whatever the caller's own policies allow; its words as AWS's denials of an IAM
    /// policy name the resource, `policy <arn>`). One Coffer has not got goes on to the
    /// ordinary lookup and its `NoSuchEntity`.
    fn refuse_aws_managed(&self, op: IamOp, arn: &str, stored: &str) -> Result<(), Failure> {
        if crate::iam::aws_managed::named(stored).is_none() {
            return Ok(());
        }
        let caller = self.partition().rewrite(&self.who.caller.principal.arn);
        let arn = coffer_auth::sigv4::echo(arn);
        let action = op.iam_action();
        Err(Failure::new(
            "AccessDenied",
            format!(
                "User: {caller} is not authorized to perform: {action} on resource: policy {arn}"
            ),
            403,
        ))
    }

    /// The user, group or role an inline/attached policy operation names.
    fn entity_of(&self, op: IamOp) -> Result<(Entity, String), Failure> {
        let name = op.name();
        let (entity, member, wire) = if name.contains("User") {
            (Entity::User, "userName", "UserName")
        } else if name.contains("Group") {
            (Entity::Group, "groupName", "GroupName")
        } else {
            (Entity::Role, "roleName", "RoleName")
        };
        Ok((entity, self.form.required(wire, member)?.to_string()))
    }
}

/// Which policies ListPolicies lists (`Scope`: `All` by default).
#[derive(Clone, Copy, PartialEq)]
enum PolicyScope {
    All,
    Aws,
    Local,
}

/// ListPolicies' `Scope`, one of the model's enum values (IAM's validation words).
fn list_policies_scope(f: &Form) -> Result<PolicyScope, Failure> {
    match f.get("Scope") {
        None | Some("All") => Ok(PolicyScope::All),
        Some("AWS") => Ok(PolicyScope::Aws),
        Some("Local") => Ok(PolicyScope::Local),
        Some(other) => Err(enum_refusal(other, "scope", &["All", "AWS", "Local"])),
    }
}

/// ListEntitiesForPolicy's `EntityFilter`: `None` for every kind. The two policy kinds the
/// model also allows name no user, group or role, so they list nothing.
fn entity_filter(f: &Form) -> Result<Option<&str>, Failure> {
    match f.get("EntityFilter") {
        None => Ok(None),
        Some(kind @ ("User" | "Role" | "Group" | "LocalManagedPolicy" | "AWSManagedPolicy")) => {
            Ok(Some(kind))
        }
        Some(other) => Err(enum_refusal(
            other,
            "entityFilter",
            &["User", "Role", "Group", "LocalManagedPolicy", "AWSManagedPolicy"],
        )),
    }
}

/// IAM's validation error for a value outside a member's enum.
fn enum_refusal(value: &str, member: &str, allowed: &[&str]) -> Failure {
    Failure::invalid(Violation::value(value, member, Constraint::OneOf(allowed)).message())
}

/// The path of an entity ARN `arn:aws:iam::<account>:<kind><path><name>`.
fn current_path(arn: &str, kind: &str, name: &str) -> String {
    arn.split_once(&format!(":{kind}"))
        .and_then(|(_, rest)| rest.strip_suffix(name))
        .unwrap_or("/")
        .to_string()
}

fn entity_member(entity: Entity) -> &'static str {
    match entity {
        Entity::User => "UserName",
        Entity::Group => "GroupName",
        Entity::Role => "RoleName",
    }
}

mod elements;
#[cfg(test)]
mod recorded_store_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_documents_are_url_encoded_as_iam_returns_them() {
        assert_eq!(url_encode(r#"{"A": "b/c"}"#), "%7B%22A%22%3A%20%22b%2Fc%22%7D");
    }

    #[test]
    fn iam_requests_are_told_by_their_credential_scope() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20240101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=00"
                .parse()
                .unwrap(),
        );
        assert!(is_iam_request(&headers));
        headers.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20240101/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=00"
                .parse()
                .unwrap(),
        );
        assert!(!is_iam_request(&headers));
    }

    #[test]
    fn form_lists_and_tags_are_read_in_order() {
        let form = Form::parse(
            b"Action=TagUser&Tags.member.1.Key=team&Tags.member.1.Value=a%2Fb&Tags.member.2.Key=x&TagKeys.member.1=k1&TagKeys.member.2=k2",
        );
        assert_eq!(form.get("Action"), Some("TagUser"));
        let tags = form.tags();
        assert_eq!(tags.len(), 2);
        assert_eq!(tags[0].value, "a/b");
        assert_eq!(form.list("TagKeys"), vec!["k1", "k2"]);
    }
}
