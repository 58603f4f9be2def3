//! `coffer-bench`: measures Coffer (on SQLite, on PostgreSQL and in memory)
//! side by side with moto's server, a bare HTTP server (the machine's HTTP
//! ceiling) and the disk's synced-write rate.
//!
//! `coffer-bench all` runs everything and prints a Markdown report;
//! `footprint` measures memory as secrets accumulate; `load` drives one
//! scenario against a server already running (for profiling);
//! `ceiling-server` is the bare HTTP server `all` starts as a child process;
//! `soak` runs a mixed load for half an hour under periodic SIGKILLs.

mod bench;
mod ceiling;
mod client;
mod cpu;
mod disk;
mod load;
mod postgres;
mod report;
mod scenarios;
mod servers;
mod sigv4;
mod soak;

use bench::{Settings, TargetKind};
use clap::{Args, Parser, Subcommand};
use load::Timing;
use scenarios::{Pools, Scenario};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

#[derive(Parser)]
#[command(name = "coffer-bench", about = "Benchmarks for Coffer")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Every scenario on Coffer (SQLite, PostgreSQL and --dev), moto and the ceilings; prints Markdown.
    All(AllArgs),
    /// Memory of Coffer (SQLite) as secrets are added through the API.
    Footprint(FootprintArgs),
    /// One scenario against a running server (for profiling).
    Load(LoadArgs),
    /// The bare HTTP server used as the ceiling (started by `all`).
    CeilingServer(CeilingArgs),
    /// A mixed load on one store for a long time under periodic SIGKILLs: checks no
    /// acknowledged write is lost and reports memory, database, WAL and archive sizes.
    Soak(SoakArgs),
}

#[derive(Args)]
struct SoakArgs {
    /// sqlite or postgres.
    #[arg(long, default_value = "sqlite")]
    store: String,
    /// Minutes the soak runs.
    #[arg(long, default_value_t = 30.0)]
    minutes: f64,
    /// Keep-alive connections, each the only writer of its own secrets.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Secrets per connection.
    #[arg(long, default_value_t = 8)]
    secrets_per_connection: usize,
    /// Requests per second over all connections.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Mean seconds between SIGKILLs of the server.
    #[arg(long, default_value_t = 120.0)]
    kill_every: f64,
    /// With PostgreSQL, crash the database server too every this many cycles (0: never).
    #[arg(long, default_value_t = 4)]
    postgres_crash_every: u32,
    /// The server's --audit-retention (events older leave the store for archive files).
    #[arg(long, default_value = "2m")]
    audit_retention: String,
    #[arg(long)]
    coffer_bin: Option<PathBuf>,
    /// Where the data and logs go (default: a new temporary directory, removed after a
    /// run that lost nothing).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Also write the report to this file.
    #[arg(long)]
    output: Option<PathBuf>,
}

#[derive(Args)]
struct Common {
    /// Keep-alive connections of the load generator.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Worker threads of the load generator.
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
}

#[derive(Args)]
struct AllArgs {
    #[command(flatten)]
    common: Common,
    /// Short run: 2 s per scenario and 10,000 secrets for ListSecrets.
    #[arg(long)]
    quick: bool,
    /// Measured seconds per scenario (default 5, or 2 with --quick).
    #[arg(long)]
    duration: Option<f64>,
    /// Secrets stored when ListSecrets is measured (default 100000, or 10000 with --quick).
    #[arg(long)]
    list_count: Option<u64>,
    /// Secrets stored when moto's ListSecrets is measured (default 10000, or 5000 with --quick).
    #[arg(long)]
    moto_list_count: Option<u64>,
    /// Secrets stored when Coffer (PostgreSQL)'s ListSecrets is measured. Default:
    /// --list-count, or less (20k, 10k, ...) when its seeding rate would make the
    /// filler take over 3 minutes (1 with --quick).
    #[arg(long)]
    postgres_list_count: Option<u64>,
    /// The coffer binary (default: `coffer` beside this binary).
    #[arg(long)]
    coffer_bin: Option<PathBuf>,
    /// moto's server (default: `.venv-bench/bin/moto_server` in the repository, installed if missing).
    #[arg(long)]
    moto_server: Option<PathBuf>,
    /// Leave moto out.
    #[arg(long)]
    no_moto: bool,
    /// Leave Coffer --dev out.
    #[arg(long)]
    no_dev: bool,
    /// Leave Coffer on PostgreSQL out (it is measured when PostgreSQL's server
    /// binaries are found: on PATH, in /usr/lib/postgresql/*/bin or in COFFER_PG_BIN).
    #[arg(long)]
    no_postgres: bool,
    /// Where data directories and the disk probe go (default: the system temporary directory).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Also write the report to this file.
    #[arg(long)]
    output: Option<PathBuf>,
}

#[derive(Args)]
struct FootprintArgs {
    #[command(flatten)]
    common: Common,
    /// Secrets to store.
    #[arg(long, default_value_t = 1_000_000)]
    count: u64,
    /// Memory is read after each of this many equal steps.
    #[arg(long, default_value_t = 5)]
    steps: u64,
    /// The data directory to fill (kept afterwards, for profiling); default a temporary one.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[arg(long)]
    coffer_bin: Option<PathBuf>,
}

#[derive(Args)]
struct LoadArgs {
    #[command(flatten)]
    common: Common,
    /// The server's address, 127.0.0.1:PORT. Repeat it for several nodes sharing one
    /// database: the connections are split among them (round robin) and the figures are
    /// their aggregate; seeding goes through the first.
    #[arg(long, required = true)]
    addr: Vec<SocketAddr>,
    /// get, describe, batch-get, update, put, mixed or list.
    #[arg(long, default_value = "get")]
    scenario: String,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Create the secret pools first (skip when they exist).
    #[arg(long)]
    seed: bool,
    /// Create filler secrets numbered from --fill-from up to this count first (for ListSecrets).
    #[arg(long)]
    fill: Option<u64>,
    #[arg(long, default_value_t = 0)]
    fill_from: u64,
    /// Coffer's data directory, to sign with its administrator's key when it has one.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The server's process id, to report its CPU time per answer (its child
    /// processes included). Repeat it for a server of several processes, as
    /// Coffer and PostgreSQL's postmaster.
    #[arg(long)]
    pid: Vec<u32>,
}

#[derive(Args)]
struct CeilingArgs {
    #[arg(long)]
    listen: SocketAddr,
    #[arg(long)]
    body_bytes: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::CeilingServer(args) => ceiling_server(args),
        Cmd::All(args) => runtime(args.common.client_threads)
            .and_then(|rt| rt.block_on(until_interrupted(all(args)))),
        Cmd::Footprint(args) => runtime(args.common.client_threads)
            .and_then(|rt| rt.block_on(until_interrupted(footprint(args)))),
        Cmd::Load(args) => {
            runtime(args.common.client_threads).and_then(|rt| rt.block_on(load_one(args)))
        }
        Cmd::Soak(args) => runtime(1).and_then(|rt| rt.block_on(until_interrupted(soak(args)))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("coffer-bench: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `work` unless SIGINT or SIGTERM comes first: then `work` is dropped,
/// and with it every server handle (each stops its process, PostgreSQL
/// included) and the temporary working directory.
async fn until_interrupted(
    work: impl std::future::Future<Output = Result<(), String>>,
) -> Result<(), String> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    tokio::select! {
        result = work => result,
        _ = interrupt.recv() => Err("interrupted (SIGINT): servers stopped".to_string()),
        _ = terminate.recv() => Err("terminated (SIGTERM): servers stopped".to_string()),
    }
}

fn runtime(threads: usize) -> Result<tokio::runtime::Runtime, String> {
    let mut builder = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    builder.enable_all().build().map_err(|e| e.to_string())
}

fn ceiling_server(args: CeilingArgs) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        println!("listening on http://{addr}");
        ceiling::serve(listener, ceiling::fixed_body(args.body_bytes)).await;
        Ok(())
    })
}

/// The repository this binary was built from.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn default_coffer_bin(given: Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(bin) = given {
        return Ok(bin);
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let bin = exe.with_file_name("coffer");
    if bin.exists() {
        Ok(bin)
    } else {
        Err(format!(
            "no coffer binary at {}: build it (cargo build --release -p coffer) or pass --coffer-bin",
            bin.display()
        ))
    }
}

/// moto's server from the benchmark's own virtual environment, created on first use.
fn moto_server(given: Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(bin) = given {
        return Ok(bin);
    }
    let venv = repo_root().join(".venv-bench");
    let bin = venv.join("bin/moto_server");
    if bin.exists() {
        return Ok(bin);
    }
    eprintln!("coffer-bench: installing moto[server] into {}", venv.display());
    let status = Command::new("python3")
        .arg("-m")
        .arg("venv")
        .arg(&venv)
        .status()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    if !status.success() {
        return Err("python3 -m venv failed".to_string());
    }
    let status = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "moto[server]"])
        .status()
        .map_err(|e| format!("cannot run pip: {e}"))?;
    if !status.success() || !bin.exists() {
        return Err("installing moto[server] failed; pass --no-moto to leave it out".to_string());
    }
    Ok(bin)
}

async fn all(args: AllArgs) -> Result<(), String> {
    let quick = args.quick;
    let measure = args.duration.unwrap_or(if quick { 2.0 } else { 5.0 });
    let mut targets = vec![TargetKind::Sqlite];
    if !args.no_postgres {
        targets.push(TargetKind::Postgres);
    }
    if !args.no_dev {
        targets.push(TargetKind::Dev);
    }
    let moto_bin = if args.no_moto { None } else { Some(moto_server(args.moto_server)?) };
    if moto_bin.is_some() {
        targets.push(TargetKind::Moto);
    }
    let list_count = args.list_count.unwrap_or(if quick { 10_000 } else { 100_000 });
    let settings = Settings {
        connections: args.common.connections,
        client_threads: args.common.client_threads,
        timing: Timing {
            warmup: Duration::from_secs_f64(if quick { 0.5 } else { 1.0 }),
            measure: Duration::from_secs_f64(measure),
        },
        list_count,
        postgres_list_count: args.postgres_list_count,
        postgres_seed_budget: Duration::from_secs(if quick { 60 } else { 180 }),
        moto_list_count: args.moto_list_count.unwrap_or(if quick { 5_000 } else { 10_000 }),
        get_pool: 256,
        put_pool: if quick { 500 } else { 2000 },
        coffer_bin: default_coffer_bin(args.coffer_bin)?,
        moto_bin,
        work_dir: args.work_dir.unwrap_or_else(std::env::temp_dir),
        disk_duration: Duration::from_secs(if quick { 1 } else { 3 }),
        targets,
        startup_trials: if quick { 3 } else { 5 },
    };
    let report = bench::run_all(settings).await?;
    let text = report::render(&report);
    if let Some(path) = args.output {
        std::fs::write(&path, &text)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    println!("{text}");
    Ok(())
}

async fn footprint(args: FootprintArgs) -> Result<(), String> {
    let bin = default_coffer_bin(args.coffer_bin)?;
    let temp;
    let dir = match args.data_dir {
        Some(dir) => dir,
        None => {
            temp = tempfile::Builder::new()
                .prefix("coffer-footprint-")
                .tempdir()
                .map_err(|e| e.to_string())?;
            temp.path().join("data")
        }
    };
    let (steps, restart, after) =
        bench::footprint(&bin, &dir, args.count, args.steps, args.common.connections).await?;
    println!("{}", report::render_footprint(&steps, &restart, after));
    Ok(())
}

async fn soak(args: SoakArgs) -> Result<(), String> {
    let store = soak::StoreKind::parse(&args.store)
        .ok_or_else(|| format!("unknown store {} (sqlite or postgres)", args.store))?;
    let mut temp = None;
    let work_dir = match args.work_dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            dir
        }
        None => {
            let dir = tempfile::Builder::new()
                .prefix("coffer-soak-")
                .tempdir()
                .map_err(|e| e.to_string())?;
            let path = dir.path().to_path_buf();
            temp = Some(dir);
            path
        }
    };
    let settings = soak::SoakSettings {
        store,
        duration: Duration::from_secs_f64(args.minutes * 60.0),
        connections: args.connections,
        slots_per_connection: args.secrets_per_connection,
        kill_every: Duration::from_secs_f64(args.kill_every),
        postgres_crash_every: args.postgres_crash_every,
        rate: args.rate,
        coffer_bin: default_coffer_bin(args.coffer_bin)?,
        work_dir: work_dir.clone(),
        audit_retention: args.audit_retention,
    };
    let report = soak::run(settings).await?;
    let text = soak::render(&report);
    if let Some(path) = args.output {
        std::fs::write(&path, &text)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    println!("{text}");
    if report.lost.is_empty() {
        Ok(())
    } else {
        // Keep the data and logs of a run that lost a write, for reading.
        if let Some(dir) = temp {
            let _ = dir.keep();
        }
        Err(format!(
            "{} acknowledged writes lost (data and logs kept in {})",
            report.lost.len(),
            work_dir.display()
        ))
    }
}

async fn load_one(args: LoadArgs) -> Result<(), String> {
    let scenario = Scenario::parse(&args.scenario)
        .ok_or_else(|| format!("unknown scenario {}", args.scenario))?;
    let creds = match &args.data_dir {
        Some(dir) => servers::coffer_credentials(&servers::CofferMode::Sqlite(dir.clone())),
        None => servers::bench_credentials(),
    };
    let endpoints: Vec<client::Endpoint> =
        args.addr.iter().map(|addr| client::Endpoint::new(*addr, creds.clone())).collect();
    let endpoint = &endpoints[0];
    let pools = Pools::new(256, 2000);
    if args.seed {
        let seeded = pools.seed(endpoint, args.common.connections).await?;
        eprintln!("seeded {} secrets in {:.1} s", seeded.count, seeded.elapsed.as_secs_f64());
    }
    if let Some(to) = args.fill {
        let seeded =
            scenarios::seed_filler(endpoint, args.common.connections, args.fill_from, to).await?;
        eprintln!(
            "created {} filler secrets in {:.1} s ({:.0}/s)",
            seeded.count,
            seeded.elapsed.as_secs_f64(),
            seeded.rate()
        );
    }
    let timing =
        Timing { warmup: Duration::from_secs(1), measure: Duration::from_secs_f64(args.duration) };
    let (make, bound) = pools.maker(scenario);
    let o = load::run_on(&endpoints, args.common.connections, timing, bound, make, &args.pid).await;
    let cpu = match (o.cpu, o.server_cpu_us_per_answer()) {
        (Some(u), Some(per)) => format!(
            ", server {:.2} cores ({per:.0} µs CPU/answer), bench {:.2}, others {:.2}",
            u.server_cores, u.bench_cores, u.other_cores
        ),
        _ => String::new(),
    };
    let nodes = match endpoints.len() {
        1 => String::new(),
        n => format!(" (aggregate of {n} nodes)"),
    };
    println!(
        "{}{nodes}: {:.0}/s ok, p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms{cpu}, errors {} {}",
        args.scenario,
        o.throughput(),
        o.quantile_ms(0.5).unwrap_or(f64::NAN),
        o.quantile_ms(0.99).unwrap_or(f64::NAN),
        o.quantile_ms(0.999).unwrap_or(f64::NAN),
        o.errors,
        o.error_sample.unwrap_or_default()
    );
    Ok(())
}
