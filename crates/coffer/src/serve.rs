//! `coffer serve`: open the store, check the master key, listen.

use clap::Args;
use coffer_crypto::MasterKey;
use coffer_server::iam::Iam;
use coffer_server::tls::Tls;
use coffer_server::{App, Config, KeyRing};
use coffer_store::Store;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on. Port 0 picks a free port (printed at start).
    #[arg(long, default_value = "127.0.0.1:4566")]
    listen: SocketAddr,
    /// Directory holding the database and master key. Default `./coffer-data`;
    /// with `--dev` and no `--data-dir`, data is kept in memory only.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Throw-away mode for tests and laptops: in-memory store unless `--data-dir` is given,
    /// and any credentials are accepted (no signature check, no policies). Without it every
    /// request must be signed by an access key of `coffer admin` (the first administrator's
    /// is written to `<data-dir>/admin-credentials` at first start).
    #[arg(long)]
    dev: bool,
    /// Read the master key from this file (base64 of 32 bytes) instead of `<data-dir>/master.key`.
    #[arg(long)]
    master_key_file: Option<PathBuf>,
    /// The account used for access keys that are not a 12-digit account id.
    #[arg(long, default_value = "000000000000", value_parser = parse_account)]
    default_account: String,
    /// The store, when not the SQLite file in the data directory: postgres://user:password@host/db
    /// (a database several nodes share; TLS with ?sslmode=require, verify-ca or verify-full and
    /// `sslrootcert=<file>`), `sqlite:<file>` or memory. With PostgreSQL the data directory holds
    /// only the master key (unless COFFER_MASTER_KEY or --master-key-file gives it).
    #[arg(long, env = crate::store_select::STORE_ENV, hide_env_values = true,
          value_parser = crate::store_select::StoreSpec::parse)]
    store: Option<crate::store_select::StoreSpec>,
    /// Seconds between rounds of background work (scheduled deletions). With several nodes on
    /// one database, one of them does it, and another takes over within three rounds if it dies.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    sweep_interval: u64,
    /// Where rotation functions are invoked: the base URL of a Lambda-compatible endpoint
    /// speaking the Invoke API (AWS Lambda through a local proxy, LocalStack, a local runner).
    /// http:// or https://. Without it only the built-in rotators are available.
    #[arg(long, env = "COFFER_LAMBDA_ENDPOINT")]
    lambda_endpoint: Option<String>,
    /// For an https:// Lambda endpoint: a PEM file of the CA certificates its certificate is
    /// checked against (else the system's roots).
    #[arg(long)]
    lambda_ca: Option<PathBuf>,
    /// The access key id Coffer signs Lambda Invoke calls with (SigV4, service `lambda`).
    #[arg(long, env = "COFFER_LAMBDA_ACCESS_KEY_ID", default_value = "coffer")]
    lambda_access_key_id: String,
    /// A file holding the secret access key for `--lambda-access-key-id` (else the
    /// environment variable COFFER_LAMBDA_SECRET_ACCESS_KEY; never on the command line).
    #[arg(long)]
    lambda_secret_access_key_file: Option<PathBuf>,
    /// The region Lambda calls are signed for when the function ARN names none.
    #[arg(long, default_value = "us-east-1")]
    lambda_region: String,
    /// Seconds one rotation step (one Invoke call) may take.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=900))]
    lambda_timeout: u64,
    /// Also write every audit event as a JSON line to this file (`-` for standard output).
    #[arg(long)]
    audit_log: Option<PathBuf>,
    /// The directory of JWKS files an OIDC provider's `coffer:jwks-file` tag may name (for
    /// issuers the server cannot reach). Without it the tag is refused: the IAM API is open
    /// to every account's administrators, and only the operator chooses what is read.
    #[arg(long, env = "COFFER_JWKS_DIR")]
    jwks_dir: Option<PathBuf>,
    /// A network (CIDR, or one address) outbound OIDC fetches (an issuer's discovery
    /// document and key set) may connect to besides public addresses; repeat it or separate
    /// networks with commas. Without it loopback, private, link-local (cloud metadata) and
    /// other non-public addresses are refused: issuer URLs are chosen by every account's
    /// administrators, and only the operator lets the server reach its internal networks.
    #[arg(long = "oidc-allow-net", env = "COFFER_OIDC_ALLOW_NET", value_name = "CIDR",
          value_delimiter = ',', value_parser = parse_net)]
    oidc_allow_net: Vec<ipnet::IpNet>,
    /// Rotate the audit log file once it would grow past this many bytes.
    #[arg(long, default_value_t = 100 * 1024 * 1024)]
    audit_log_max_bytes: u64,
    /// Serve calls even when their audit event cannot be written (the failure is logged).
    /// By default such calls fail with InternalServiceError and change nothing.
    #[arg(long)]
    audit_fail_open: bool,
    /// Keep only this many newest audit events per account and region in the store. Default:
    /// all of them, except with the in-memory `--dev` store, which keeps the newest 10000 so a
    /// long test run does not grow without bound.
    #[arg(long)]
    audit_retain_events: Option<u64>,
    /// Move audit events older than this (`90d`, `12h`, `30m`, `10s`) out of the store into
    /// JSON-lines archive files (`--audit-archive-dir`), which `coffer audit verify
    /// --archives DIR` checks; `off` keeps every event in the store. Runs with the
    /// background work (`--sweep-interval`).
    #[arg(long, default_value = "90d", value_parser = parse_retention)]
    audit_retention: Retention,
    /// Where audit archives are written. Default: `<data-dir>/audit-archive`; without a data
    /// directory (in memory, or PostgreSQL without `--data-dir`) retention is off unless this
    /// is given.
    #[arg(long)]
    audit_archive_dir: Option<PathBuf>,
    /// Serve at most this many connections at once (further ones wait to be accepted). Never
    /// more than the open-file limit allows once the server's own files are set aside.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_connections: u64,
    /// Seconds a connection has to send a request's headers, counted from when it opens or
    /// from the previous answer (so idle keep-alive connections close after it too).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
    header_timeout: u64,
    /// Seconds a request's body has to arrive once its headers have.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    body_timeout: u64,
    /// How log lines (on standard error) are written: `text` (colored only on a terminal) or
    /// `json` (one object per line). The level is set with COFFER_LOG (default
    /// `info,coffer::request=warn`; `COFFER_LOG=info` adds one line per request).
    #[arg(long, env = "COFFER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Serve HTTPS with this certificate (PEM: the server's certificate, then its chain).
    /// TLS 1.2 and 1.3 only. Sent SIGHUP, the server reads the certificate and key again:
    /// new connections get the new certificate, open ones are not dropped.
    #[arg(long, requires = "tls_key", conflicts_with = "tls_self_signed")]
    tls_cert: Option<PathBuf>,
    /// The private key of `--tls-cert` (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Also require a client certificate issued under one of the CA certificates in this
    /// PEM file: a connection without one is refused in the TLS handshake. An extra gate,
    /// not a replacement for SigV4: requests are authenticated and authorized as without it.
    /// Read at start (not on SIGHUP).
    #[arg(long)]
    tls_client_ca: Option<PathBuf>,
    /// With `--dev`: serve HTTPS with a throwaway self-signed certificate for localhost,
    /// written to `<data-dir>/tls/` (or a temporary directory) and printed with its
    /// SHA-256 fingerprint, for clients to trust (`--ca-bundle`).
    #[arg(long, requires = "dev")]
    tls_self_signed: bool,
    /// Serve `GET /metrics` (Prometheus/OpenMetrics text, unauthenticated) on this address,
    /// over plain HTTP with `/health` and `/ready`, instead of on the main listener. Without
    /// it the main listener serves `/metrics`.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// On SIGTERM or SIGINT, seconds to let calls in progress finish before their
    /// connections are dropped. New connections are refused at once; idle ones are closed.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=3600))]
    shutdown_grace: u64,
    /// Throttle calls over AWS's per-account, per-region request quotas with
    /// ThrottlingException (`Rate exceeded`). Default: on, off with `--dev`.
    #[arg(long, value_enum)]
    quotas: Option<OnOff>,
    /// Set one quota group's rate in requests per second, e.g. `secretsmanager-create=2`,
    /// `kms-cryptographic=1000`, `kms-CreateKey=10`. Repeatable, or comma-separated.
    #[arg(long = "quota", value_name = "GROUP=RATE", value_delimiter = ',',
          value_parser = coffer_server::quotas::parse_override)]
    quota: Vec<(coffer_server::quotas::QuotaGroup, u32)>,
    /// Multiply every default quota not set by `--quota` by this factor (at least 1 per second).
    #[arg(long, default_value_t = 1.0, value_parser = parse_scale)]
    quota_scale: f64,
    /// Serve the web console at `/console` on this listener. Default: on.
    #[arg(long, value_enum)]
    console: Option<OnOff>,
    /// Seconds a console session may sit unused before it ends.
    #[arg(long, default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..=86400))]
    console_idle_timeout: u64,
    /// Seconds a console session lasts at most, used or not.
    #[arg(long, default_value_t = 28800, value_parser = clap::value_parser!(u64).range(1..=604800))]
    console_session_lifetime: u64,
    /// Read settings from this TOML file: keys are these flags' long names (`listen`,
    /// `data-dir`, `dev = true`, ...). A flag given on the command line, then its environment
    /// variable, wins over the file. `coffer config check FILE` validates one.
    #[arg(long)]
    config: Option<PathBuf>,
}

impl ServeArgs {
    /// The `--config` file, if any.
    pub fn config_file(&self) -> Option<&Path> {
        self.config.as_deref()
    }
}

/// `--audit-retention`: a period, or `None` for `off` (a newtype, since clap reads an
/// `Option` field as an optional flag).
#[derive(Clone, Copy, Debug)]
pub struct Retention(Option<Duration>);

fn parse_retention(text: &str) -> Result<Retention, String> {
    coffer_server::audit_retention::parse_period(text).map(Retention)
}

/// The shape of log lines.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// A switch given a value (`--quotas on|off`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnOff {
    On,
    Off,
}

fn parse_scale(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() && f > 0.0 => Ok(f),
        _ => Err("the scale is a positive number (e.g. 0.5 or 10)".to_string()),
    }
}

/// How many events the in-memory `--dev` store keeps per account and region.
const DEV_AUDIT_RETENTION: u64 = 10_000;

fn parse_account(s: &str) -> Result<String, String> {
    if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
        Ok(s.to_string())
    } else {
        Err("an account id is exactly 12 digits".to_string())
    }
}

/// How often the TLS certificate and key files are looked at for a change.
const TLS_WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// The environment variable that may hold the master key (base64 of 32 bytes).
const MASTER_KEY_ENV: &str = "COFFER_MASTER_KEY";

pub fn run(args: ServeArgs) -> Result<(), String> {
    init_logging(args.log_format);
    // Before any key or value is in memory: no core dump may carry them out.
    for problem in coffer_server::hygiene::disable_core_dumps() {
        tracing::warn!("{problem}; a crash could write keys and secret values to a core file");
    }
    let (store, data_dir) = crate::store_select::open_for_serve(
        args.store.as_ref(),
        args.data_dir.as_deref(),
        args.dev,
    )?;
    let master = load_master_key(&args, data_dir.as_deref(), store.as_ref())?;
    // Key material lives in pages locked in RAM where the system allows it; say so when not.
    match coffer_crypto::locked::lock_failure() {
        Some(problem) => tracing::warn!("{problem}"),
        None => tracing::debug!("key material is locked in memory"),
    }
    // IAM needs the master key too (it seals the secret access keys), once the key ring
    // has checked it against the store: without --dev to authenticate every request, with
    // --dev to serve the IAM API (its access keys sealed alike) with no one authenticated.
    let iam_master = MasterKey::from_text(&master.to_text()).expect("a key's own text form parses");
    let audit_master =
        MasterKey::from_text(&master.to_text()).expect("a key's own text form parses");
    let keys = KeyRing::open(master, store.as_ref()).map_err(|e| e.to_string())?;
    // The audit chain key (wrapped under the master key in the store) keys every event.
    let (chain_key, sealed_heads) =
        coffer_server::audit::open_chain_key(&audit_master, store.as_ref())?;
    drop(audit_master);
    // Keys created from now on are answered by GetKeyLastUsage from their records alone.
    // Without the note every key without a record is answered from the trail, as before.
    let now = coffer_server::clock::now_ms();
    if let Err(e) = coffer_server::kms_last_use::start_tracking(store.as_ref(), now) {
        tracing::warn!(error = %e, "GetKeyLastUsage keeps scanning the trail for unused keys");
    }
    if sealed_heads > 0 {
        tracing::info!(
            heads = sealed_heads,
            "created the audit chain key and sealed the heads of the existing (unkeyed) chains"
        );
    }
    let audit = coffer_server::audit::Settings {
        fail_open: args.audit_fail_open,
        log: args.audit_log.clone(),
        log_max_bytes: args.audit_log_max_bytes,
        retain_events: args
            .audit_retain_events
            .or_else(|| (store.describe() == "memory").then_some(DEV_AUDIT_RETENTION)),
        ..Default::default()
    };
    let config = Config {
        default_account: args.default_account.clone(),
        body_timeout: Duration::from_secs(args.body_timeout),
        audit,
        metrics_on_main_listener: args.metrics_listen.is_none(),
        quotas: coffer_server::quotas::Settings {
            enabled: args.quotas.map_or(!args.dev, |q| q == OnOff::On),
            scale: args.quota_scale,
            overrides: args.quota.clone(),
        },
        audit_retention: coffer_server::audit_retention::Settings {
            max_age: args.audit_retention.0,
            archive_dir: args
                .audit_archive_dir
                .clone()
                .or_else(|| data_dir.as_ref().map(|d| d.join("audit-archive"))),
            ..Default::default()
        },
        lambda: lambda_settings(&args)?,
        jwks_dir: jwks_dir(&args)?,
        oidc_allow_nets: args.oidc_allow_net.clone(),
        ..Config::default()
    };
    if let (Some(age), Some(dir)) =
        (config.audit_retention.max_age, config.audit_retention.archive_dir.as_ref())
    {
        tracing::info!(
            retention_seconds = age.as_secs(),
            archive_dir = %dir.display(),
            "audit events past the retention period are archived"
        );
    }
    coffer_server::metrics::set_build_info(env!("CARGO_PKG_VERSION"), env!("COFFER_GIT_COMMIT"));
    coffer_store::observe::set_commit_hook(coffer_server::metrics::store_commit);
    let sqlite_file = match &args.store {
        Some(crate::store_select::StoreSpec::Sqlite(path)) => Some(path.clone()),
        Some(_) => None,
        None if store.describe() == "memory" => None,
        None => data_dir.as_ref().map(|d| d.join(crate::store_select::SQLITE_FILE)),
    };
    if let Some(db) = sqlite_file {
        let mut wal = db.clone().into_os_string();
        wal.push("-wal");
        coffer_server::metrics::set_store_files(vec![db, wal.into()]);
    }
    if !args.dev && data_dir.is_none() {
        return Err("serving without --dev needs a data directory".into());
    }
    let iam = Iam::open(&iam_master, store.as_ref()).map_err(|e| e.to_string())?;
    drop(iam_master);
    let app = match &data_dir {
        Some(dir) if !args.dev => {
            crate::admin::bootstrap_admin(&iam, store.as_ref(), &args.default_account, dir)?;
            App::enforcing(store.clone(), keys, config, iam)
        }
        _ => App::dev(store.clone(), keys, config, iam),
    };
    app.audit.set_chain_key(chain_key);
    if let Err(e) = app.audit.open_sink() {
        if !args.audit_fail_open {
            return Err(format!("cannot open the audit log: {e}"));
        }
        tracing::error!(error = %e, "cannot open the audit log; serving anyway (--audit-fail-open)");
    }

    let requested = usize::try_from(args.max_connections).unwrap_or(usize::MAX);
    let (max_connections, file_limit) = coffer_server::connections::connection_cap(requested);
    tracing::info!(
        "accepting connections at most {max_connections} at once (--max-connections {requested}, open-file limit {})",
        file_limit.map_or_else(|| "none".to_string(), |l| l.to_string())
    );
    let limits = coffer_server::connections::Limits {
        max_connections,
        header_timeout: Duration::from_secs(args.header_timeout),
        shutdown_grace: Duration::from_secs(args.shutdown_grace),
    };
    let console = args.console;
    let console_limits = coffer_console::SessionLimits {
        idle: Duration::from_secs(args.console_idle_timeout),
        absolute: Duration::from_secs(args.console_session_lifetime),
        ..Default::default()
    };

    // A throwaway certificate outside a data directory goes when the server does.
    let temp_tls_dir = (args.tls_self_signed && data_dir.is_none()).then(self_signed_temp_dir);
    let tls = open_tls(&args, data_dir.as_deref())?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let node = coffer_server::background::Node::new(Duration::from_secs(args.sweep_interval));
    let shared_store = matches!(args.store, Some(crate::store_select::StoreSpec::Postgres(_)));
    let lease_store = store.clone();
    let lease_node = node.clone();
    // Kept to write the audit log's queued lines once serving has ended.
    let audit_app = app.clone();
    let served = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        if shared_store {
            // Nodes sharing a database each append to an audit chain of their own, named
            // by host and port: stable across restarts, distinct between running nodes.
            app.audit.set_chain_node(&format!("{}:{}", chain_host(), addr.port()));
        }
        // Before the listening line: from then on SIGHUP reloads (without TLS, it is ignored
        // rather than ending the process, so `systemctl reload` is harmless).
        let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|e| format!("cannot watch for SIGHUP: {e}"))?;
        let mut out = std::io::stdout().lock();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let _ = writeln!(out, "listening on {scheme}://{addr}");
        let _ = match &data_dir {
            Some(dir) => writeln!(out, "data in {} ({})", dir.display(), store.describe()),
            None => writeln!(out, "data in memory only (--dev): nothing is kept after exit"),
        };
        if let Some(metrics_addr) = args.metrics_listen {
            let metrics_listener = tokio::net::TcpListener::bind(metrics_addr)
                .await
                .map_err(|e| format!("cannot listen on {metrics_addr} for metrics: {e}"))?;
            let bound = metrics_listener.local_addr().map_err(|e| e.to_string())?;
            let _ = writeln!(out, "metrics on http://{bound}/metrics");
            // A few connections suffice for scrapers and probes.
            let metrics_limits =
                coffer_server::connections::Limits { max_connections: 16, ..limits };
            tokio::spawn(coffer_server::connections::serve(
                metrics_listener,
                coffer_server::http::metrics_router(app.clone()),
                metrics_limits,
                shutdown_signal(),
            ));
        }
        let _ = out.flush();
        drop(out);
        tokio::spawn(coffer_server::background::run_deletion_sweeper(app.clone(), node));
        let acceptor = tls.as_ref().map(|tls| tls.acceptor());
        if let Some(tls) = &tls {
            tokio::spawn(tls.clone().watch_files(TLS_WATCH_INTERVAL));
        }
        tokio::spawn(reload_on_sighup(hangups, tls));
        let mut router = coffer_server::http::router(app.clone());
        if console != Some(OnOff::Off) {
            router = router.nest("/console", coffer_console::router(app.clone(), console_limits));
        }
        coffer_server::connections::serve_with_tls(
            listener,
            router,
            Some(app),
            limits,
            acceptor,
            shutdown_signal(),
        )
        .await
        .map_err(|e| format!("server failed: {e}"))
    });
    audit_app.audit.flush_log_at_exit();
    // Hand the background work over at once instead of when the lease runs out.
    let lease = coffer_server::background::BACKGROUND_LEASE;
    if let Err(e) = lease_store.release_lease(lease, &lease_node.id) {
        tracing::warn!(error = %e, "could not release the background-work lease");
    }
    if let Some(dir) = temp_tls_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    if served.is_ok() {
        tracing::info!("stopped");
    }
    served
}

/// The TLS configuration `--tls-cert`/`--tls-key` or `--tls-self-signed` ask for, if any.
fn open_tls(
    args: &ServeArgs,
    data_dir: Option<&Path>,
) -> Result<Option<std::sync::Arc<Tls>>, String> {
    let (cert, key) = match (&args.tls_cert, &args.tls_key, args.tls_self_signed) {
        (Some(cert), Some(key), _) => (cert.clone(), key.clone()),
        (_, _, true) => {
            let dir = match data_dir {
                Some(dir) => dir.join("tls"),
                None => self_signed_temp_dir(),
            };
            coffer_server::tls::write_self_signed(&dir)?
        }
        _ if args.tls_client_ca.is_some() => {
            return Err(
                "--tls-client-ca needs TLS: --tls-cert and --tls-key (or --tls-self-signed)".into(),
            );
        }
        _ => return Ok(None),
    };
    let tls = Tls::load(&cert, &key, args.tls_client_ca.as_deref())?;
    // On stdout with the listening line: what a developer needs to trust the certificate.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "TLS certificate {} (SHA-256 {}){}",
        cert.display(),
        tls.fingerprint(),
        if args.tls_self_signed { ", self-signed: trust it with --ca-bundle" } else { "" }
    );
    let _ = out.flush();
    Ok(Some(std::sync::Arc::new(tls)))
}

/// Where `--dev --tls-self-signed` without a data directory writes its certificate.
fn self_signed_temp_dir() -> PathBuf {
    std::env::temp_dir().join(format!("coffer-tls-{}", std::process::id()))
}

/// Reads the certificate again on each SIGHUP (a renewed certificate, without a restart).
async fn reload_on_sighup(
    mut hangups: tokio::signal::unix::Signal,
    tls: Option<std::sync::Arc<Tls>>,
) {
    while hangups.recv().await.is_some() {
        let Some(tls) = &tls else {
            tracing::info!("SIGHUP: nothing to reload (no TLS certificate)");
            continue;
        };
        match tls.reload() {
            Ok(()) => {
                tracing::info!(fingerprint = %tls.fingerprint(), "reloaded the TLS certificate")
            }
            Err(e) => {
                tracing::error!(error = %e, "TLS certificate not reloaded; still serving the previous one")
            }
        }
    }
}

fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("COFFER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,coffer::request=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        // Colour codes only for a person at a terminal: in a file or journald they are noise.
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        // Fields at the top level (not under "fields"), the span list left out: one flat
        // object per line is what log shippers index best.
        LogFormat::Json => {
            builder.json().flatten_event(true).with_current_span(false).with_span_list(false).init()
        }
    }
}

/// Finds the master key: `COFFER_MASTER_KEY`, `--master-key-file`, or
/// `<data-dir>/master.key` (created on first start). A data directory that
/// already holds data but has lost its key file is an error, never a new key.
fn load_master_key(
    args: &ServeArgs,
    data_dir: Option<&Path>,
    store: &dyn Store,
) -> Result<MasterKey, String> {
    if let Some(text) = crate::master_key_from_env() {
        return MasterKey::from_text(std::str::from_utf8(text.expose()).unwrap_or_default())
            .map_err(|e| format!("{MASTER_KEY_ENV} is not a valid master key: {e}"));
    }
    if let Some(path) = &args.master_key_file {
        let key = MasterKey::load(path)
            .map_err(|e| format!("cannot read the master key file {}: {e}", path.display()))?;
        warn_if_exposed(path);
        return Ok(key);
    }
    let Some(dir) = data_dir else {
        return Ok(MasterKey::generate());
    };
    let path = dir.join("master.key");
    if !path.exists() && KeyRing::store_has_data(store).map_err(|e| e.to_string())? {
        return Err(format!(
            "the master key file {} is missing but the database holds encrypted data; restore the key file or pass --master-key-file",
            path.display()
        ));
    }
    let (key, created) = MasterKey::load_or_create(&path)
        .map_err(|e| format!("cannot read or create the master key {}: {e}", path.display()))?;
    warn_if_exposed(&path);
    if created {
        // A log line rather than a bare print, so `--log-format json` stays one object a line.
        tracing::warn!(
            "created a new master key in {} (mode 0600); back it up: without it the data cannot be read",
            path.display()
        );
    }
    Ok(key)
}

/// Warns, as ssh does about a private key, when others than the owner may read the key
/// file: whoever reads it can read every secret in any copy of the database.
fn warn_if_exposed(path: &Path) {
    if let Some(mode) = MasterKey::exposed_file_mode(path) {
        tracing::warn!(
            "the master key file {} is accessible to its group or others (mode {mode:04o}); make it private: chmod 600 {}",
            path.display(),
            path.display()
        );
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    let name = tokio::select! {
        () = ctrl_c => "SIGINT",
        () = terminate => "SIGTERM",
    };
    tracing::info!(signal = name, "shutting down");
}

/// The Lambda endpoint rotation functions are invoked at, with its signing credentials.
/// A `--oidc-allow-net` network: `10.0.0.0/8`, `fd00::/8`, or one address (`10.1.2.3`).
fn parse_net(text: &str) -> Result<ipnet::IpNet, String> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map(|net| net.trunc())
        .map_err(|_| format!("`{text}` is not a network (CIDR such as 10.0.0.0/8) or an address"))
}

/// `--jwks-dir` as an absolute path (tags are compared with it as written), if it is a
/// directory.
fn jwks_dir(args: &ServeArgs) -> Result<Option<PathBuf>, String> {
    let Some(dir) = &args.jwks_dir else { return Ok(None) };
    if !dir.is_dir() {
        return Err(format!("--jwks-dir {} is not a directory", dir.display()));
    }
    std::path::absolute(dir).map(Some).map_err(|e| format!("--jwks-dir {}: {e}", dir.display()))
}

fn lambda_settings(
    args: &ServeArgs,
) -> Result<Option<coffer_server::rotation::lambda::LambdaSettings>, String> {
    let Some(endpoint) = args.lambda_endpoint.clone() else {
        if args.lambda_ca.is_some() {
            return Err("--lambda-ca: needs an https:// --lambda-endpoint".into());
        }
        return Ok(None);
    };
    let tls = if endpoint.starts_with("https://") {
        let ca = args.lambda_ca.as_deref();
        Some(
            coffer_server::rotation::lambda::tls_config(ca)
                .map_err(|e| format!("--lambda-ca: {e}"))?,
        )
    } else if args.lambda_ca.is_some() {
        return Err("--lambda-ca: needs an https:// --lambda-endpoint".into());
    } else {
        None
    };
    let secret = match &args.lambda_secret_access_key_file {
        Some(path) => std::fs::read_to_string(path)
            .map(|s| s.trim().to_string())
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        None => {
            std::env::var("COFFER_LAMBDA_SECRET_ACCESS_KEY").unwrap_or_else(|_| "coffer".into())
        }
    };
    let settings = coffer_server::rotation::lambda::LambdaSettings {
        endpoint,
        tls,
        access_key_id: args.lambda_access_key_id.clone(),
        secret_access_key: zeroize::Zeroizing::new(secret),
        region: args.lambda_region.clone(),
        timeout: Duration::from_secs(args.lambda_timeout),
    };
    settings.check().map_err(|e| format!("--lambda-endpoint: {e}"))?;
    Ok(Some(settings))
}

/// This host's name for audit chain ids: `COFFER_AUDIT_NODE` if set (for hosts whose
/// name changes on every start, such as containers), else the kernel's host name.
fn chain_host() -> String {
    std::env::var("COFFER_AUDIT_NODE")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}
