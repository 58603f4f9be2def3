//! The `all` run: ceilings, every scenario on every target, start-up and
//! memory, gathered into one [`Report`].

use crate::client::{Conn, Endpoint};
use crate::disk::{self, DiskOutcome};
use crate::load::{self, Outcome, Seeded, Timing};
use crate::scenarios::{self, Pools, Scenario};
use crate::servers::{self, CofferMode, Server, StartUp};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The servers compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    Sqlite,
    Dev,
    Moto,
}

impl TargetKind {
    pub fn label(self) -> &'static str {
        match self {
            TargetKind::Sqlite => "Coffer (SQLite)",
            TargetKind::Dev => "Coffer --dev (memory)",
            TargetKind::Moto => "moto_server",
        }
    }
}

/// What an `all` run does.
#[derive(Debug, Clone)]
pub struct Settings {
    pub connections: usize,
    pub client_threads: usize,
    pub timing: Timing,
    pub list_count: u64,
    /// The larger ListSecrets count for moto, whose per-call cost grows with it.
    pub moto_list_count: u64,
    pub get_pool: usize,
    pub put_pool: usize,
    pub coffer_bin: PathBuf,
    pub moto_bin: Option<PathBuf>,
    pub work_dir: PathBuf,
    pub disk_duration: Duration,
    pub targets: Vec<TargetKind>,
    pub startup_trials: usize,
}

/// One target's results.
#[derive(Debug)]
pub struct TargetResult {
    pub kind: TargetKind,
    /// Whether a request with a spoiled signature was refused.
    pub verifies_signatures: Option<bool>,
    pub rows: Vec<(Scenario, Outcome)>,
    pub seeding: Vec<(String, Seeded)>,
    pub get_body_len: Option<usize>,
    /// Secrets stored when ListSecrets was measured at the larger count.
    pub list_stored: u64,
    pub rss_after_load: Option<u64>,
    pub notes: Vec<String>,
}

/// Memory of Coffer (SQLite) restarted on the data of the benchmark run.
#[derive(Debug)]
pub struct Footprint {
    pub secrets: u64,
    pub rss_after_reads: Option<u64>,
    pub db_bytes: u64,
}

/// Everything an `all` run measured.
#[derive(Debug)]
pub struct Report {
    pub settings: Settings,
    pub machine: Machine,
    pub load_before: String,
    pub load_after: String,
    pub disk: Vec<DiskOutcome>,
    pub ceiling: Option<(usize, Outcome)>,
    pub targets: Vec<TargetResult>,
    pub startups: Vec<(String, Vec<StartUp>)>,
    pub footprint: Option<Footprint>,
    /// Targets left out because they failed, and why.
    pub failures: Vec<String>,
    pub total: Duration,
}

/// The machine the run is on.
#[derive(Debug, Clone)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory: String,
    pub kernel: String,
}

impl Machine {
    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".to_string());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map(|kib| format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0))
            .unwrap_or_else(|| "unknown".to_string());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        Machine {
            cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            cpu_model,
            memory,
            kernel,
        }
    }
}

/// The load average, as `/proc/loadavg` gives its first three fields.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn progress(message: impl AsRef<str>) {
    eprintln!("coffer-bench: {}", message.as_ref());
}

/// Runs everything `settings` asks for. The working directory (data, logs) is
/// removed afterwards, unless the run failed: then its logs are kept for reading.
pub async fn run_all(settings: Settings) -> Result<Report, String> {
    let work =
        tempfile::Builder::new().prefix("coffer-bench-").tempdir_in(&settings.work_dir).map_err(
            |e| format!("cannot create a directory in {}: {e}", settings.work_dir.display()),
        )?;
    let work_dir = work.path().to_path_buf();
    progress(format!("working in {}", work_dir.display()));
    match run_in(settings, &work_dir).await {
        Ok(report) => Ok(report),
        Err(e) => {
            let kept = work.keep();
            Err(format!("{e} (servers' logs kept in {})", kept.display()))
        }
    }
}

async fn run_in(settings: Settings, work_dir: &Path) -> Result<Report, String> {
    let started = Instant::now();
    let load_before = load_average();
    let work_dir = work_dir.to_path_buf();

    let mut disk = Vec::new();
    for writers in [1, settings.connections] {
        progress(format!("disk: synced 512-byte writes, {writers} writer(s)"));
        let dir = work_dir.clone();
        let duration = settings.disk_duration;
        let outcome =
            tokio::task::spawn_blocking(move || disk::synced_write_rate(&dir, writers, duration))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("the disk measurement failed: {e}"))?;
        disk.push(outcome);
    }

    let mut targets = Vec::new();
    let mut failures = Vec::new();
    let mut sqlite_dir = None;
    for &kind in &settings.targets {
        let server = match kind {
            TargetKind::Sqlite => {
                let dir = work_dir.join("coffer-sqlite-data");
                sqlite_dir = Some(dir.clone());
                servers::start_coffer(
                    &settings.coffer_bin,
                    CofferMode::Sqlite(dir),
                    kind.label(),
                    &work_dir.join("coffer-sqlite.log"),
                )?
            }
            TargetKind::Dev => servers::start_coffer(
                &settings.coffer_bin,
                CofferMode::Dev,
                kind.label(),
                &work_dir.join("coffer-dev.log"),
            )?,
            TargetKind::Moto => {
                let Some(bin) = &settings.moto_bin else { continue };
                servers::start_moto(bin, &work_dir.join("moto.log")).await?.0
            }
        };
        // One server failing (moto answering 500s, say) must not lose the others' results.
        match bench_target(kind, &server, &settings).await {
            Ok(result) => targets.push(result),
            Err(e) if kind == TargetKind::Moto => {
                progress(format!("{e}: leaving moto out"));
                failures.push(e);
            }
            Err(e) => return Err(e),
        }
        server.stop();
    }

    let body_len = targets.iter().find_map(|t| t.get_body_len).unwrap_or(1300);
    progress(format!("HTTP ceiling: fixed {body_len}-byte body"));
    let ceiling_server = servers::start_ceiling(body_len)?;
    let pools = Pools::new(settings.get_pool, settings.put_pool);
    let (make, bound) = pools.maker(Scenario::Get);
    let pid = Some(ceiling_server.pid());
    let outcome = load::run(
        &ceiling_server.endpoint,
        settings.connections,
        settings.timing,
        bound,
        make,
        pid,
    )
    .await;
    ceiling_server.stop();
    let ceiling = Some((body_len, outcome));

    let mut startups = Vec::new();
    let mut footprint = None;
    if settings.targets.contains(&TargetKind::Sqlite) {
        let mut trials = Vec::new();
        for k in 0..settings.startup_trials {
            let dir = work_dir.join(format!("startup-{k}"));
            let (server, s) = servers::time_coffer_start(
                &settings.coffer_bin,
                CofferMode::Sqlite(dir),
                &work_dir.join("startup.log"),
            )
            .await?;
            server.stop();
            trials.push(s);
        }
        startups.push(("Coffer (SQLite), empty data directory".to_string(), trials));
        if let Some(dir) = sqlite_dir {
            progress("restarting Coffer (SQLite) on the benchmark's data");
            let stored = settings.list_count.max(pools.len());
            let (server, startup) = servers::time_coffer_start(
                &settings.coffer_bin,
                CofferMode::Sqlite(dir.clone()),
                &work_dir.join("restart.log"),
            )
            .await?;
            let rss_after_reads = reads_then_rss(&server, &pools).await;
            let db_bytes = dir_bytes(&dir);
            server.stop();
            startups.push((
                format!("Coffer (SQLite), {} secrets stored", scenarios::count_label(stored)),
                vec![startup],
            ));
            footprint = Some(Footprint { secrets: stored, rss_after_reads, db_bytes });
        }
    }
    if settings.targets.contains(&TargetKind::Dev) {
        let mut trials = Vec::new();
        for _ in 0..settings.startup_trials {
            let (server, s) = servers::time_coffer_start(
                &settings.coffer_bin,
                CofferMode::Dev,
                &work_dir.join("startup.log"),
            )
            .await?;
            server.stop();
            trials.push(s);
        }
        startups.push(("Coffer --dev".to_string(), trials));
    }
    if settings.targets.contains(&TargetKind::Moto)
        && let Some(bin) = &settings.moto_bin
    {
        let (server, elapsed) =
            servers::start_moto(bin, &work_dir.join("moto-startup.log")).await?;
        std::thread::sleep(Duration::from_secs(1));
        let idle_rss = server.rss_bytes();
        server.stop();
        startups.push((
            "moto_server".to_string(),
            vec![StartUp { to_first_answer: elapsed, first_status: 200, idle_rss }],
        ));
    }

    Ok(Report {
        settings,
        machine: Machine::detect(),
        load_before,
        load_after: load_average(),
        disk,
        ceiling,
        targets,
        startups,
        footprint,
        failures,
        total: started.elapsed(),
    })
}

/// The size of the files in a directory (not recursive).
pub fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum::<u64>()
        })
        .unwrap_or(0)
}

/// Reads every pool secret and a few ListSecrets pages, then reads the server's memory.
pub async fn reads_then_rss(server: &Server, pools: &Pools) -> Option<u64> {
    let mut conn = Conn::new(server.endpoint.addr);
    for name in pools.get.iter().chain(pools.put.iter()) {
        let body = format!(r#"{{"SecretId":"{name}"}}"#);
        let _ = conn.send(&server.endpoint.request("GetSecretValue", body.as_bytes())).await;
    }
    for _ in 0..10 {
        let (op, body) = scenarios::list_request();
        let _ = conn.send(&server.endpoint.request(op, &body)).await;
    }
    server.rss_bytes()
}

/// Whether a request with a spoiled signature is refused.
async fn verifies_signatures(endpoint: &Endpoint) -> Option<bool> {
    let mut conn = Conn::new(endpoint.addr);
    let body = br#"{"MaxResults":1}"#;
    let response = conn.send(&endpoint.badly_signed_request("ListSecrets", body)).await.ok()?;
    Some(response.status != 200)
}

/// Seeds one target and runs every scenario on it.
async fn bench_target(
    kind: TargetKind,
    server: &Server,
    settings: &Settings,
) -> Result<TargetResult, String> {
    let endpoint = &server.endpoint;
    let pid = Some(server.pid());
    let c = settings.connections;
    let mut result = TargetResult {
        kind,
        verifies_signatures: verifies_signatures(endpoint).await,
        rows: Vec::new(),
        seeding: Vec::new(),
        get_body_len: None,
        list_stored: 0,
        rss_after_load: None,
        notes: Vec::new(),
    };
    let pools = Pools::new(settings.get_pool, settings.put_pool);
    progress(format!("{}: seeding {} secrets with 1 KiB values", kind.label(), pools.len()));
    // moto's server loses concurrent CreateSecret calls to a race in its shared
    // dictionaries ("dictionary changed size during iteration"), and gains nothing
    // from concurrency under Python's global lock: seed it over one connection.
    let seeders = if kind == TargetKind::Moto { 1 } else { c };
    let seeded =
        pools.seed(endpoint, seeders).await.map_err(|e| format!("{}: {e}", kind.label()))?;
    result.seeding.push(("CreateSecret, 1 KiB value (pools)".to_string(), seeded));

    let mut conn = Conn::new(endpoint.addr);
    let probe = format!(r#"{{"SecretId":"{}"}}"#, pools.get[0]);
    let response = conn
        .send(&endpoint.request("GetSecretValue", probe.as_bytes()))
        .await
        .map_err(|e| format!("{}: GetSecretValue failed: {e}", kind.label()))?;
    if response.status == 200 {
        result.get_body_len = Some(response.body.len());
    }
    drop(conn);

    let small = pools.len();
    // moto looks a secret up by scanning all of them, so each call costs more
    // the more are stored and seeding 100,000 takes the better part of an hour:
    // it is measured at a smaller count, which flatters it.
    let list_count =
        if kind == TargetKind::Moto { settings.moto_list_count } else { settings.list_count };
    let big = list_count.max(small);
    result.list_stored = big;
    for scenario in Scenario::POOLED {
        progress(format!("{}: {}", kind.label(), scenario.title(c, small, big)));
        let (make, bound) = pools.maker(scenario);
        let outcome = load::run(endpoint, c, settings.timing, bound, make, pid).await;
        result.rows.push((scenario, outcome));
    }
    progress(format!("{}: {}", kind.label(), Scenario::ListSmallOne.title(c, small, big)));
    let (make, bound) = pools.maker(Scenario::ListSmallOne);
    result.rows.push((
        Scenario::ListSmallOne,
        load::run(endpoint, 1, settings.timing, bound, make, pid).await,
    ));

    progress(format!(
        "{}: seeding {} filler secrets for ListSecrets",
        kind.label(),
        big.saturating_sub(small)
    ));
    let seeded = scenarios::seed_filler(endpoint, seeders, small, big)
        .await
        .map_err(|e| format!("{}: {e}", kind.label()))?;
    result.seeding.push(("CreateSecret, small value (ListSecrets filler)".to_string(), seeded));
    for (scenario, connections) in [(Scenario::ListOne, 1), (Scenario::ListMany, c)] {
        progress(format!("{}: {}", kind.label(), scenario.title(c, small, big)));
        let (make, bound) = pools.maker(scenario);
        let outcome = load::run(endpoint, connections, settings.timing, bound, make, pid).await;
        result.rows.push((scenario, outcome));
    }
    result.rss_after_load = server.rss_bytes();
    if pools.put_budget_left() == 0 {
        result.notes.push(
            "the put pool's version budget ran out: PutSecretValue or Mixed ended early"
                .to_string(),
        );
    }
    Ok(result)
}

/// One step of a footprint run.
#[derive(Debug, Clone)]
pub struct FootprintStep {
    pub secrets: u64,
    pub rss: Option<u64>,
    pub seeded: Option<Seeded>,
    pub db_bytes: u64,
}

/// Seeds Coffer (SQLite) in steps up to `count` secrets, reading its memory at each step,
/// then restarts it on that data and reads its idle memory.
pub async fn footprint(
    coffer_bin: &Path,
    data_dir: &Path,
    count: u64,
    steps: u64,
    connections: usize,
) -> Result<(Vec<FootprintStep>, StartUp, Option<u64>), String> {
    let log = data_dir.with_extension("log");
    let (server, start) =
        servers::time_coffer_start(coffer_bin, CofferMode::Sqlite(data_dir.to_path_buf()), &log)
            .await?;
    let mut out = vec![FootprintStep {
        secrets: 0,
        rss: start.idle_rss,
        seeded: None,
        db_bytes: dir_bytes(data_dir),
    }];
    let steps = steps.max(1);
    let mut done = 0;
    for k in 1..=steps {
        let target = count * k / steps;
        progress(format!("footprint: seeding secrets {done}..{target}"));
        let seeded = scenarios::seed_filler(&server.endpoint, connections, done, target).await?;
        done = target;
        out.push(FootprintStep {
            secrets: done,
            rss: server.rss_bytes(),
            seeded: Some(seeded),
            db_bytes: dir_bytes(data_dir),
        });
    }
    server.stop();
    progress("footprint: restarting on the seeded data");
    let (server, restart) =
        servers::time_coffer_start(coffer_bin, CofferMode::Sqlite(data_dir.to_path_buf()), &log)
            .await?;
    let mut conn = Conn::new(server.endpoint.addr);
    for i in (0..count).step_by((count / 1000).max(1) as usize) {
        let body = format!(r#"{{"SecretId":"{}"}}"#, scenarios::filler_name(i));
        let _ = conn.send(&server.endpoint.request("GetSecretValue", body.as_bytes())).await;
    }
    for _ in 0..10 {
        let (op, body) = scenarios::list_request();
        let _ = conn.send(&server.endpoint.request(op, &body)).await;
    }
    let after_reads = server.rss_bytes();
    server.stop();
    Ok((out, restart, after_reads))
}
