//! The `all` run: ceilings, every scenario on every target, start-up and
//! memory, gathered into one [`Report`].

use crate::client::{Conn, Endpoint};
use crate::disk::{self, DiskOutcome};
use crate::load::{self, Outcome, Seeded, Timing};
use crate::postgres::{self, Postgres};
use crate::scenarios::{self, Pools, Scenario};
use crate::servers::{self, CofferMode, Server, StartUp};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The servers compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    Sqlite,
    Postgres,
    Dev,
    Moto,
}

impl TargetKind {
    pub fn label(self) -> &'static str {
        match self {
            TargetKind::Sqlite => "Coffer (SQLite)",
            TargetKind::Postgres => "Coffer (PostgreSQL)",
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
    /// The larger ListSecrets count for Coffer on PostgreSQL; `None`: `list_count`
    /// when its filler can be seeded within `postgres_seed_budget`, else less.
    pub postgres_list_count: Option<u64>,
    /// The longest the ListSecrets filler of Coffer on PostgreSQL may take to seed,
    /// judged by the rate its pools were seeded at.
    pub postgres_seed_budget: Duration,
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

/// Memory of Coffer restarted on the data of the benchmark run.
#[derive(Debug)]
pub struct Footprint {
    /// The target, as [`TargetKind::label`] names it.
    pub label: String,
    /// What `db_bytes` measured.
    pub storage: &'static str,
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
    pub footprints: Vec<Footprint>,
    /// The PostgreSQL server measured, or why none was.
    pub postgres: Option<String>,
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
            // PostgreSQL's files (owned by its user when run as root) are of no
            // use to a reader of the logs; its log stays beside the others.
            let _ = std::fs::remove_dir_all(kept.join(POSTGRES_DIR));
            Err(format!("{e} (servers' logs kept in {})", kept.display()))
        }
    }
}

/// The PostgreSQL cluster's directory inside the working directory.
const POSTGRES_DIR: &str = "postgres";

/// The database Coffer (PostgreSQL) is benchmarked on.
const BENCH_DATABASE: &str = "coffer_bench";

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
    let mut pg_install = None;
    let mut postgres_line = None;
    if settings.targets.contains(&TargetKind::Postgres) {
        match postgres::find() {
            Ok(install) => pg_install = Some(install),
            Err(e) => {
                progress(format!("PostgreSQL not measured: {e}"));
                postgres_line = Some(format!("PostgreSQL: not measured, {e}"));
            }
        }
    } else {
        postgres_line = Some("PostgreSQL: left out (--no-postgres)".to_string());
    }
    let pg_base = work_dir.join(POSTGRES_DIR);
    let pg_data_dir = work_dir.join("coffer-postgres-data");
    let mut pg_stored = None;
    for &kind in &settings.targets {
        let mut database = None;
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
            TargetKind::Postgres => {
                let Some(install) = &pg_install else { continue };
                match start_postgres_target(install, &pg_base, &pg_data_dir, &work_dir, &settings)
                    .await
                {
                    Ok((pg, server)) => {
                        postgres_line = Some(format!(
                            "{}: `coffer serve --store postgres://...` on {}, started for this run in the working directory (settings not listed are PostgreSQL's defaults; 1 GiB of WAL recycled before the run, as a server that has been running reuses its segments); its server CPU counts Coffer's and PostgreSQL's processes",
                            kind.label(),
                            pg.facts.describe()
                        ));
                        database = Some(pg);
                        server
                    }
                    Err(e) => {
                        let e = format!("{}: {e}", kind.label());
                        progress(format!("{e}: leaving it out"));
                        failures.push(e);
                        continue;
                    }
                }
            }
        };
        // A target made of several processes (Coffer and PostgreSQL) is charged for all.
        let mut cpu_pids = vec![server.pid()];
        cpu_pids.extend(database.as_ref().map(Postgres::pid));
        // One server failing (moto answering 500s, say) must not lose the others' results.
        match bench_target(kind, &server, &cpu_pids, &settings).await {
            Ok(result) => {
                if kind == TargetKind::Postgres {
                    pg_stored = Some(result.list_stored);
                }
                targets.push(result);
            }
            Err(e) if matches!(kind, TargetKind::Moto | TargetKind::Postgres) => {
                progress(format!("{e}: leaving it out"));
                failures.push(e);
            }
            Err(e) => return Err(e),
        }
        server.stop();
        // Stopped between its measurements, PostgreSQL cannot disturb the others'
        // (autovacuum and checkpoints after the seeding would).
        if let Some(pg) = database
            && let Err(e) = pg.stop()
        {
            progress(e);
        }
    }

    let body_len = targets.iter().find_map(|t| t.get_body_len).unwrap_or(1300);
    progress(format!("HTTP ceiling: fixed {body_len}-byte body"));
    let ceiling_server = servers::start_ceiling(body_len)?;
    let pools = Pools::new(settings.get_pool, settings.put_pool);
    let (make, bound) = pools.maker(Scenario::Get);
    let outcome = load::run(
        &ceiling_server.endpoint,
        settings.connections,
        settings.timing,
        bound,
        make,
        &[ceiling_server.pid()],
    )
    .await;
    ceiling_server.stop();
    let ceiling = Some((body_len, outcome));

    let mut startups = Vec::new();
    let mut footprints = Vec::new();
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
            footprints.push(Footprint {
                label: TargetKind::Sqlite.label().to_string(),
                storage: "Database files",
                secrets: stored,
                rss_after_reads,
                db_bytes,
            });
        }
    }
    if let (Some(install), Some(stored)) = (&pg_install, pg_stored) {
        match postgres_startups(install, &pg_base, &pg_data_dir, &work_dir, &settings, stored).await
        {
            Ok((rows, footprint)) => {
                startups.extend(rows);
                footprints.push(footprint);
            }
            Err(e) => {
                let e = format!("{} start-up: {e}", TargetKind::Postgres.label());
                progress(&e);
                failures.push(e);
            }
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
        footprints,
        postgres: postgres_line,
        failures,
        total: started.elapsed(),
    })
}

/// Creates and starts the benchmark's PostgreSQL server and a database, then
/// Coffer on it.
async fn start_postgres_target(
    install: &postgres::Install,
    base: &Path,
    data_dir: &Path,
    work_dir: &Path,
    settings: &Settings,
) -> Result<(Postgres, Server), String> {
    progress("starting PostgreSQL (fsync=on, synchronous_commit=on)");
    install.init(base)?;
    let pg = install.start(base, &work_dir.join("postgres.log")).await?;
    progress(format!("running {}", pg.facts.describe()));
    let ready = pg.recycle_wal(postgres::WAL_READY).await?;
    progress(format!(
        "{ready} WAL segments recycled ({} MiB), as a server that has been running has them",
        postgres::WAL_READY >> 20
    ));
    let url = pg.create_database(BENCH_DATABASE).await?;
    let server = servers::start_coffer(
        &settings.coffer_bin,
        CofferMode::Postgres { url, data_dir: data_dir.to_path_buf() },
        TargetKind::Postgres.label(),
        &work_dir.join("coffer-postgres.log"),
    )?;
    Ok((pg, server))
}

/// Start-up of Coffer (PostgreSQL) on empty databases and on the benchmark's
/// data (`stored` secrets), and its memory after reading that data.
async fn postgres_startups(
    install: &postgres::Install,
    base: &Path,
    data_dir: &Path,
    work_dir: &Path,
    settings: &Settings,
    stored: u64,
) -> Result<(Vec<(String, Vec<StartUp>)>, Footprint), String> {
    let label = TargetKind::Postgres.label();
    let pg = install.start(base, &work_dir.join("postgres-startup.log")).await?;
    let mut trials = Vec::new();
    for k in 0..settings.startup_trials {
        let url = pg.create_database(&format!("startup_{k}")).await?;
        let mode = CofferMode::Postgres { url, data_dir: work_dir.join(format!("pg-startup-{k}")) };
        let (server, s) =
            servers::time_coffer_start(&settings.coffer_bin, mode, &work_dir.join("startup.log"))
                .await?;
        server.stop();
        trials.push(s);
    }
    let mut rows = vec![(format!("{label}, empty database"), trials)];
    progress(format!("restarting {label} on the benchmark's data"));
    let mode = CofferMode::Postgres { url: pg.url(BENCH_DATABASE), data_dir: data_dir.to_owned() };
    let (server, startup) =
        servers::time_coffer_start(&settings.coffer_bin, mode, &work_dir.join("restart-pg.log"))
            .await?;
    let pools = Pools::new(settings.get_pool, settings.put_pool);
    let rss_after_reads = reads_then_rss(&server, &pools).await;
    server.stop();
    rows.push((
        format!("{label}, {} secrets stored", scenarios::count_label(stored)),
        vec![startup],
    ));
    let db_bytes = pg.database_bytes(BENCH_DATABASE).await.unwrap_or(0);
    pg.stop()?;
    let footprint = Footprint {
        label: label.to_string(),
        storage: "PostgreSQL database (pg_database_size)",
        secrets: stored,
        rss_after_reads,
        db_bytes,
    };
    Ok((rows, footprint))
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
    cpu_pids: &[u32],
    settings: &Settings,
) -> Result<TargetResult, String> {
    let endpoint = &server.endpoint;
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
    let small = pools.len();
    progress(format!("{}: seeding {} secrets with 1 KiB values", kind.label(), pools.len()));
    // moto's server loses concurrent CreateSecret calls to a race in its shared
    // dictionaries ("dictionary changed size during iteration"), and gains nothing
    // from concurrency under Python's global lock: seed it over one connection.
    let seeders = if kind == TargetKind::Moto { 1 } else { c };
    let seeded =
        pools.seed(endpoint, seeders).await.map_err(|e| format!("{}: {e}", kind.label()))?;
    let pool_rate = seeded.rate();
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

    // moto looks a secret up by scanning all of them, so each call costs more
    // the more are stored and seeding 100,000 takes the better part of an hour:
    // it is measured at a smaller count, which flatters it.
    let list_count = match kind {
        TargetKind::Moto => settings.moto_list_count,
        TargetKind::Postgres => match settings.postgres_list_count {
            Some(count) => count,
            None => {
                let budget = settings.postgres_seed_budget;
                let count = affordable_count(settings.list_count, small, pool_rate, budget);
                if count < settings.list_count {
                    let note = format!(
                        "ListSecrets measured with {} secrets stored instead of {}: at the {} CreateSecret/s its pools were seeded at, the filler would take {:.0} s, more than the {:.0} s allowed (--postgres-list-count sets the count)",
                        scenarios::count_label(count.max(small)),
                        scenarios::count_label(settings.list_count),
                        pool_rate.round(),
                        settings.list_count.saturating_sub(small) as f64 / pool_rate.max(1e-9),
                        budget.as_secs_f64()
                    );
                    progress(format!("{}: {note}", kind.label()));
                    result.notes.push(note);
                }
                count
            }
        },
        TargetKind::Sqlite | TargetKind::Dev => settings.list_count,
    };
    let big = list_count.max(small);
    result.list_stored = big;
    for scenario in Scenario::POOLED {
        progress(format!("{}: {}", kind.label(), scenario.title(c, small, big)));
        let (make, bound) = pools.maker(scenario);
        let outcome = load::run(endpoint, c, settings.timing, bound, make, cpu_pids).await;
        result.rows.push((scenario, outcome));
    }
    progress(format!("{}: {}", kind.label(), Scenario::ListSmallOne.title(c, small, big)));
    let (make, bound) = pools.maker(Scenario::ListSmallOne);
    result.rows.push((
        Scenario::ListSmallOne,
        load::run(endpoint, 1, settings.timing, bound, make, cpu_pids).await,
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
        let outcome =
            load::run(endpoint, connections, settings.timing, bound, make, cpu_pids).await;
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

/// The counts a ListSecrets measurement may be cut down to, so that runs agree.
const AFFORDABLE_COUNTS: [u64; 7] = [1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000];

/// `wanted` when seeding up to it from `small` secrets, at `rate` per second,
/// fits in `budget`; else the largest of [`AFFORDABLE_COUNTS`] below it that
/// fits; at least `small`.
pub fn affordable_count(wanted: u64, small: u64, rate: f64, budget: Duration) -> u64 {
    let fits = |count: u64| count.saturating_sub(small) as f64 <= rate * budget.as_secs_f64();
    if fits(wanted) {
        return wanted;
    }
    AFFORDABLE_COUNTS
        .iter()
        .rev()
        .copied()
        .find(|&count| count < wanted && fits(count))
        .unwrap_or(small)
        .max(small)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_count_is_kept_when_its_seeding_fits_the_budget() {
        let budget = Duration::from_secs(180);
        // 97,744 filler secrets at 700/s: 140 s.
        assert_eq!(affordable_count(100_000, 2256, 700.0, budget), 100_000);
        assert_eq!(affordable_count(123_456, 2256, 1e6, budget), 123_456);
    }

    #[test]
    fn a_slow_seeder_gets_the_largest_round_count_that_fits() {
        let budget = Duration::from_secs(180);
        // 120/s for 180 s: 21,600 more secrets, so 20k (17,744 filler) fits and 50k does not.
        assert_eq!(affordable_count(100_000, 2256, 120.0, budget), 20_000);
        // The cut never goes above what was asked.
        assert_eq!(affordable_count(15_000, 756, 60.0, budget), 10_000);
        assert_eq!(affordable_count(10_000, 756, 120.0, Duration::from_secs(60)), 5_000);
    }

    #[test]
    fn a_very_slow_seeder_is_measured_at_the_pools_alone() {
        assert_eq!(affordable_count(100_000, 2256, 1.0, Duration::from_secs(60)), 2256);
        assert_eq!(affordable_count(100_000, 2256, 0.0, Duration::from_secs(60)), 2256);
    }
}
