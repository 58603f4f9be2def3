//! `coffer-bench soak`: a mixed load for a long time (30 minutes by default) on one store
//! (SQLite or PostgreSQL) while the server is SIGKILLed every couple of minutes, checking
//! after every restart that no acknowledged write was lost, and recording the server's
//! memory and the store's file sizes per cycle, to show they stay flat and the WAL bounded
//! (issue 19).
//!
//! The load: each connection owns a set of secrets ("slots") and is the only writer of
//! them, so the last acknowledged write of a slot is known exactly. A slot's secret gets
//! `PutSecretValue`s until it holds [`VERSIONS_PER_SECRET`] versions (AWS keeps at most
//! 100 for a day), then it is deleted (`ForceDeleteWithoutRecovery`) and the slot's next
//! secret created: the store sees creates, puts and deletes, and its live data stays
//! bounded. Reads (`GetSecretValue`, `DescribeSecret`, `ListSecrets`) go to any slot.
//! Audit events move out of the store after `--audit-retention` (short here), so the
//! database holds a bounded window of them; the archive files are the trail and grow.
//!
//! A write the server never answered (it was killed, or answered 5xx) is ambiguous: after
//! the restart either outcome is allowed, and the check resolves which one happened.
//! Anything else (an acknowledged version missing or with another value, an acknowledged
//! delete undone, an acknowledged create missing) is a lost write, and the run fails.

use crate::client::{Conn, Endpoint, Response};
use crate::postgres::{self, Postgres};
use crate::servers::{self, CofferMode, Server};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Versions a slot's secret gets before it is replaced (AWS's limit is 100 per day).
pub const VERSIONS_PER_SECRET: u32 = 90;

/// How long one call may take before the soak calls it failed (a hung server is a finding).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The store under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

impl StoreKind {
    pub fn parse(text: &str) -> Option<StoreKind> {
        match text {
            "sqlite" => Some(StoreKind::Sqlite),
            "postgres" | "postgresql" => Some(StoreKind::Postgres),
            _ => None,
        }
    }

    fn label(self) -> &'static str {
        match self {
            StoreKind::Sqlite => "SQLite",
            StoreKind::Postgres => "PostgreSQL",
        }
    }
}

/// What a soak runs.
#[derive(Debug, Clone)]
pub struct SoakSettings {
    pub store: StoreKind,
    pub duration: Duration,
    pub connections: usize,
    pub slots_per_connection: usize,
    /// Mean time between SIGKILLs (each interval is drawn from 0.75x to 1.25x of it).
    pub kill_every: Duration,
    /// With PostgreSQL, every this many cycles the database server crashes too
    /// (immediate shutdown, WAL replay at its next start); 0 never.
    pub postgres_crash_every: u32,
    /// Requests per second over all connections (a modest, steady load).
    pub rate: f64,
    pub coffer_bin: PathBuf,
    pub work_dir: PathBuf,
    /// `--audit-retention` of the server: events older than this leave the store.
    pub audit_retention: String,
}

/// One slot's known state: its current secret and its last acknowledged version.
#[derive(Debug, Clone)]
struct Slot {
    id: usize,
    generation: u32,
    /// The acknowledged current version (VersionId, value); `None` while the slot has no
    /// acknowledged secret (its create is pending or not yet sent).
    current: Option<(String, String)>,
    versions: u32,
    pending: Pending,
    /// The last secret of this slot whose deletion was acknowledged.
    deleted: Option<String>,
}

/// A write sent but never answered: either outcome may have happened.
#[derive(Debug, Clone, PartialEq)]
enum Pending {
    None,
    Put { token: String, value: String },
    Create { token: String, value: String },
    Delete,
}

impl Slot {
    fn name(&self) -> String {
        format!("soak-{}-g{}", self.id, self.generation)
    }
}

/// Counters shared by the connections of one cycle.
#[derive(Default)]
struct Counters {
    ok: AtomicU64,
    acked_writes: AtomicU64,
    errors: AtomicU64,
    failures: AtomicU64,
}

/// One kill cycle's figures.
#[derive(Debug, Clone)]
pub struct Cycle {
    pub index: u32,
    pub seconds: f64,
    pub ok: u64,
    pub acked_writes: u64,
    pub errors: u64,
    pub failures: u64,
    /// Ambiguous writes the check after the restart found applied / not applied.
    pub resolved_applied: u64,
    pub resolved_absent: u64,
    pub rss_max: Option<u64>,
    pub rss_last: Option<u64>,
    pub db_bytes: u64,
    pub wal_bytes: u64,
    pub archive_bytes: u64,
    pub postgres_crashed: bool,
    pub restart_seconds: f64,
}

/// The whole run.
#[derive(Debug, Clone)]
pub struct SoakReport {
    pub store: StoreKind,
    pub settings_line: String,
    pub cycles: Vec<Cycle>,
    pub lost: Vec<String>,
    pub error_sample: Option<String>,
    pub total_acked_writes: u64,
    pub total_ok: u64,
}

fn progress(msg: impl AsRef<str>) {
    eprintln!("coffer-bench soak: {}", msg.as_ref());
}

/// A small, fast generator for the op mix and the kill intervals (no need for quality).
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        Rng((uuid::Uuid::new_v4().as_u128() as u64) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A value for version `seq` of `name`: unique, so a lost or swapped version is seen.
fn value_for(name: &str, seq: u64) -> String {
    let mut v = format!("{name}/{seq}/");
    while v.len() < 256 {
        v.push('x');
    }
    v
}

async fn call(conn: &mut Conn, endpoint: &Endpoint, op: &str, body: &Value) -> Outcome {
    let request = endpoint.request(op, body.to_string().as_bytes());
    match tokio::time::timeout(CALL_TIMEOUT, conn.send(&request)).await {
        Ok(Ok(response)) => Outcome::Answered(response),
        Ok(Err(e)) => Outcome::Failed(e.to_string()),
        Err(_) => {
            *conn = Conn::new(endpoint.addr);
            Outcome::Failed(format!("no answer within {CALL_TIMEOUT:?}"))
        }
    }
}

enum Outcome {
    Answered(Response),
    Failed(String),
}

impl Outcome {
    /// True when the call surely changed nothing: the server answered with a client error.
    fn surely_not_applied(&self) -> bool {
        matches!(self, Outcome::Answered(r) if (400..500).contains(&r.status))
    }
    fn ok(&self) -> Option<Value> {
        match self {
            Outcome::Answered(r) if r.status == 200 => {
                Some(serde_json::from_slice(&r.body).unwrap_or(Value::Null))
            }
            _ => None,
        }
    }
    fn describe(&self) -> String {
        match self {
            Outcome::Answered(r) => format!("HTTP {} {}", r.status, r.error_type()),
            Outcome::Failed(e) => format!("connection: {e}"),
        }
    }
    fn error_type(&self) -> Option<String> {
        match self {
            Outcome::Answered(r) if r.status != 200 => Some(r.error_type()),
            _ => None,
        }
    }
}

/// One connection's load until `stop`: writes to its own slots, reads any.
async fn worker(
    endpoint: Endpoint,
    mut slots: Vec<Slot>,
    interval: Duration,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    sample: Arc<std::sync::Mutex<Option<String>>>,
) -> Vec<Slot> {
    let mut conn = Conn::new(endpoint.addr);
    let mut rng = Rng::new();
    let mut seq: u64 = rng.below(1 << 40);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let note = |o: &Outcome, counters: &Counters| {
        match o {
            Outcome::Answered(r) if r.status == 200 => {
                counters.ok.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Answered(_) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Failed(_) => {
                counters.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        if !matches!(o, Outcome::Answered(r) if r.status == 200) && !stop.load(Ordering::Relaxed) {
            let mut s = sample.lock().expect("sample lock");
            if s.is_none() {
                *s = Some(o.describe());
            }
        }
    };
    while !stop.load(Ordering::Relaxed) {
        ticker.tick().await;
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let roll = rng.below(100);
        if roll < 45 {
            // A write to one of this connection's slots.
            let k = rng.below(slots.len() as u64) as usize;
            let slot = &mut slots[k];
            seq += 1;
            let o;
            if slot.current.is_none() {
                let token = uuid::Uuid::new_v4().to_string();
                let value = value_for(&slot.name(), seq);
                slot.pending = Pending::Create { token: token.clone(), value: value.clone() };
                o = call(
                    &mut conn,
                    &endpoint,
                    "CreateSecret",
                    &json!({"Name": slot.name(), "SecretString": value, "ClientRequestToken": token}),
                )
                .await;
                if o.ok().is_some() {
                    slot.current = Some((token, value));
                    slot.versions = 1;
                    slot.pending = Pending::None;
                    counters.acked_writes.fetch_add(1, Ordering::Relaxed);
                }
            } else if slot.versions >= VERSIONS_PER_SECRET {
                slot.pending = Pending::Delete;
                o = call(
                    &mut conn,
                    &endpoint,
                    "DeleteSecret",
                    &json!({"SecretId": slot.name(), "ForceDeleteWithoutRecovery": true}),
                )
                .await;
                if o.ok().is_some() {
                    slot.deleted = Some(slot.name());
                    slot.generation += 1;
                    slot.current = None;
                    slot.versions = 0;
                    slot.pending = Pending::None;
                    counters.acked_writes.fetch_add(1, Ordering::Relaxed);
                }
            } else {
                let token = uuid::Uuid::new_v4().to_string();
                let value = value_for(&slot.name(), seq);
                slot.pending = Pending::Put { token: token.clone(), value: value.clone() };
                o = call(
                    &mut conn,
                    &endpoint,
                    "PutSecretValue",
                    &json!({"SecretId": slot.name(), "SecretString": value, "ClientRequestToken": token}),
                )
                .await;
                if o.ok().is_some() {
                    slot.current = Some((token, value));
                    slot.versions += 1;
                    slot.pending = Pending::None;
                    counters.acked_writes.fetch_add(1, Ordering::Relaxed);
                }
            }
            if o.surely_not_applied() {
                slot.pending = Pending::None;
            }
            note(&o, &counters);
        } else {
            // A read of one of this connection's secrets (others' generations are not
            // known here; ListSecrets sees every one). Between generations the name is not
            // there yet: ResourceNotFoundException is then the right answer.
            let name = slots[rng.below(slots.len() as u64) as usize].name();
            let o = if roll < 80 {
                call(&mut conn, &endpoint, "GetSecretValue", &json!({"SecretId": name})).await
            } else if roll < 95 {
                call(&mut conn, &endpoint, "DescribeSecret", &json!({"SecretId": name})).await
            } else {
                call(&mut conn, &endpoint, "ListSecrets", &json!({"MaxResults": 20})).await
            };
            if o.error_type().as_deref() == Some("ResourceNotFoundException") {
                counters.ok.fetch_add(1, Ordering::Relaxed);
            } else {
                note(&o, &counters);
            }
        }
    }
    slots
}

/// After a restart: checks every slot against what was acknowledged, resolves the
/// ambiguous writes, and returns the lost writes found and how the ambiguous ones resolved.
async fn check(endpoint: &Endpoint, slots: &mut [Slot]) -> Result<(Vec<String>, u64, u64), String> {
    let mut conn = Conn::new(endpoint.addr);
    let mut lost = Vec::new();
    let (mut applied, mut absent) = (0u64, 0u64);
    for slot in slots.iter_mut() {
        let name = slot.name();
        let got = call(&mut conn, endpoint, "GetSecretValue", &json!({"SecretId": name})).await;
        let found = match &got {
            Outcome::Answered(r) if r.status == 200 => {
                let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                Some((
                    v["VersionId"].as_str().unwrap_or_default().to_string(),
                    v["SecretString"].as_str().unwrap_or_default().to_string(),
                ))
            }
            Outcome::Answered(r) if r.error_type() == "ResourceNotFoundException" => None,
            other => return Err(format!("checking {name}: {}", other.describe())),
        };
        match (std::mem::replace(&mut slot.pending, Pending::None), &slot.current, found) {
            (Pending::None, Some(acked), Some(found)) => {
                if *acked != found {
                    lost.push(format!(
                        "{name}: acknowledged current version {} but found {}",
                        acked.0, found.0
                    ));
                    slot.current = Some(found);
                }
            }
            (Pending::None, Some(acked), None) => {
                lost.push(format!("{name}: acknowledged (version {}) but gone", acked.0));
                slot.current = None;
            }
            (Pending::None, None, Some(found)) => {
                // Nothing acknowledged and nothing pending: only possible if a create's
                // failure was misread; adopt it.
                slot.current = Some(found);
            }
            (Pending::None, None, None) => {}
            (Pending::Put { token, value }, Some(acked), Some(found)) => {
                if found == (token.clone(), value.clone()) {
                    applied += 1;
                    slot.versions += 1;
                    slot.current = Some(found);
                } else if *acked == found {
                    absent += 1;
                } else {
                    lost.push(format!(
                        "{name}: current version {} is neither the acknowledged {} nor the unanswered {token}",
                        found.0, acked.0
                    ));
                    slot.current = Some(found);
                }
            }
            (Pending::Put { .. }, _, None) => {
                lost.push(format!("{name}: acknowledged but gone (a put was unanswered)"));
                slot.current = None;
            }
            (Pending::Create { token, value }, _, Some(found)) => {
                if found == (token.clone(), value) {
                    applied += 1;
                } else {
                    lost.push(format!("{name}: created with {token} but holds {}", found.0));
                }
                slot.current = Some(found);
                slot.versions = 1;
            }
            (Pending::Create { .. }, _, None) => {
                absent += 1;
                slot.current = None;
            }
            (Pending::Delete, Some(acked), Some(found)) => {
                absent += 1;
                if *acked != found {
                    lost.push(format!(
                        "{name}: acknowledged current version {} but found {} (a delete was unanswered)",
                        acked.0, found.0
                    ));
                }
                slot.current = Some(found);
            }
            (Pending::Delete, _, None) => {
                applied += 1;
                slot.deleted = Some(name.clone());
                slot.generation += 1;
                slot.current = None;
                slot.versions = 0;
            }
            (Pending::Put { .. } | Pending::Delete, None, Some(found)) => {
                slot.current = Some(found);
            }
        }
        // The previous version stays readable by its id: an acknowledged version that
        // became AWSPREVIOUS must still be there.
        if let Some((version, value)) = slot.current.clone() {
            let o = call(
                &mut conn,
                endpoint,
                "GetSecretValue",
                &json!({"SecretId": slot.name(), "VersionId": version}),
            )
            .await;
            match o.ok() {
                Some(v) if v["SecretString"].as_str() == Some(value.as_str()) => {}
                _ => lost.push(format!("{}: version {version} unreadable by its id", slot.name())),
            }
        }
        // An acknowledged delete stays done.
        if let Some(deleted) = &slot.deleted {
            let o =
                call(&mut conn, endpoint, "DescribeSecret", &json!({"SecretId": deleted})).await;
            match o.error_type().as_deref() {
                Some("ResourceNotFoundException") => {}
                _ => lost.push(format!("{deleted}: deleted (acknowledged) but {}", o.describe())),
            }
        }
    }
    Ok((lost, applied, absent))
}

/// Bytes of every file under `dir` (recursively) whose name passes `keep`.
fn bytes_under(dir: &Path, keep: &dyn Fn(&str) -> bool) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut total = 0;
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        let name = entry.file_name().to_string_lossy().into_owned();
        if meta.is_dir() {
            total += bytes_under(&entry.path(), keep);
        } else if keep(&name) {
            total += meta.len();
        }
    }
    total
}

/// The store as it runs: a data directory, and with PostgreSQL its server.
struct Store {
    kind: StoreKind,
    data_dir: PathBuf,
    pg: Option<(postgres::Install, Postgres, PathBuf)>,
}

const DATABASE: &str = "soak";

impl Store {
    async fn open(settings: &SoakSettings) -> Result<Store, String> {
        let data_dir = settings.work_dir.join("data");
        std::fs::create_dir_all(&data_dir).map_err(|e| e.to_string())?;
        let pg = match settings.store {
            StoreKind::Sqlite => None,
            StoreKind::Postgres => {
                let install = postgres::find()?;
                let base = settings.work_dir.join("pg");
                install.init(&base)?;
                let pg = install.start(&base, &settings.work_dir.join("postgres.log")).await?;
                progress(format!("running {}", pg.facts.describe()));
                pg.create_database(DATABASE).await?;
                Some((install, pg, base))
            }
        };
        Ok(Store { kind: settings.store, data_dir, pg })
    }

    fn mode(&self) -> CofferMode {
        match &self.pg {
            None => CofferMode::Sqlite(self.data_dir.clone()),
            Some((_, pg, _)) => {
                CofferMode::Postgres { url: pg.url(DATABASE), data_dir: self.data_dir.clone() }
            }
        }
    }

    /// Crashes PostgreSQL and starts it again (WAL replay).
    async fn crash_postgres(&mut self, work_dir: &Path, cycle: u32) -> Result<(), String> {
        let Some((install, pg, base)) = self.pg.take() else { return Ok(()) };
        pg.crash()?;
        let again = install.start(&base, &work_dir.join(format!("postgres-{cycle}.log"))).await?;
        self.pg = Some((install, again, base));
        Ok(())
    }

    /// (database, WAL, audit archive) bytes now.
    async fn sizes(&self) -> (u64, u64, u64) {
        let archive = bytes_under(&self.data_dir.join("audit-archive"), &|_| true);
        match &self.pg {
            None => {
                let wal = bytes_under(&self.data_dir, &|n| n.ends_with("-wal"));
                let db = bytes_under(&self.data_dir, &|n| n.ends_with(".db"));
                (db, wal, archive)
            }
            Some((_, pg, base)) => {
                let db = pg.database_bytes(DATABASE).await.unwrap_or(0);
                let wal = bytes_under(&Postgres::wal_dir(base), &|_| true);
                (db, wal, archive)
            }
        }
    }
}

/// Starts Coffer and waits until a signed call succeeds (at first start the
/// administrator's key file appears while it starts).
async fn start(settings: &SoakSettings, store: &Store, log: &Path) -> Result<Server, String> {
    let extra = vec![
        "--audit-retention".to_string(),
        settings.audit_retention.clone(),
        "--sweep-interval".to_string(),
        "10".to_string(),
    ];
    let mode = store.mode();
    let mut server = servers::start_coffer_with(
        &settings.coffer_bin,
        mode.clone(),
        store.kind.label(),
        log,
        &extra,
    )?;
    let started = Instant::now();
    loop {
        server.endpoint.creds = servers::coffer_credentials(&mode);
        let mut conn = Conn::new(server.endpoint.addr);
        let o = call(&mut conn, &server.endpoint, "ListSecrets", &json!({"MaxResults": 1})).await;
        if o.ok().is_some() {
            return Ok(server);
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err(format!("Coffer did not answer within 60 s: {}", o.describe()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs the soak and returns its figures; a lost write is in `lost`, not an `Err`.
pub async fn run(settings: SoakSettings) -> Result<SoakReport, String> {
    let mut store = Store::open(&settings).await?;
    let connections = settings.connections.max(1);
    let per = settings.slots_per_connection.max(1);
    let mut slots: Vec<Vec<Slot>> = (0..connections)
        .map(|c| {
            (0..per)
                .map(|k| Slot {
                    id: c * per + k,
                    generation: 0,
                    current: None,
                    versions: 0,
                    pending: Pending::None,
                    deleted: None,
                })
                .collect()
        })
        .collect();
    let interval = Duration::from_secs_f64(connections as f64 / settings.rate.max(0.1));
    let begun = Instant::now();
    let mut rng = Rng::new();
    let mut cycles = Vec::new();
    let mut lost = Vec::new();
    let mut error_sample = None;
    let mut index = 0u32;
    let mut restart_seconds = 0.0;
    let mut server = start(&settings, &store, &settings.work_dir.join("coffer-0.log")).await?;
    while begun.elapsed() < settings.duration {
        index += 1;
        let left = settings.duration.saturating_sub(begun.elapsed());
        let jitter = 0.75 + rng.below(501) as f64 / 1000.0;
        let span = settings.kill_every.mul_f64(jitter).min(left).max(Duration::from_secs(5));
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let sample = Arc::new(std::sync::Mutex::new(None));
        let cycle_start = Instant::now();
        let tasks: Vec<_> = slots
            .drain(..)
            .map(|s| {
                tokio::spawn(worker(
                    server.endpoint.clone(),
                    s,
                    interval,
                    stop.clone(),
                    counters.clone(),
                    sample.clone(),
                ))
            })
            .collect();
        let mut rss_max: Option<u64> = None;
        let mut rss_last = None;
        while cycle_start.elapsed() < span {
            tokio::time::sleep(Duration::from_secs(5).min(span - cycle_start.elapsed().min(span)))
                .await;
            rss_last = server.rss_bytes();
            rss_max = rss_max.max(rss_last);
        }
        // SIGKILL under load, then let the connections notice and hand their slots back.
        server.stop();
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            slots.push(task.await.map_err(|e| e.to_string())?);
        }
        let seconds = cycle_start.elapsed().as_secs_f64();
        let crash_pg = store.kind == StoreKind::Postgres
            && settings.postgres_crash_every > 0
            && index.is_multiple_of(settings.postgres_crash_every);
        if crash_pg {
            store.crash_postgres(&settings.work_dir, index).await?;
        }
        let restarted = Instant::now();
        server = start(&settings, &store, &settings.work_dir.join(format!("coffer-{index}.log")))
            .await?;
        restart_seconds = restarted.elapsed().as_secs_f64();
        let mut flat: Vec<Slot> = slots.drain(..).flatten().collect();
        let (found_lost, applied, absent) = check(&server.endpoint, &mut flat).await?;
        for chunk in flat.chunks(per) {
            slots.push(chunk.to_vec());
        }
        let (db_bytes, wal_bytes, archive_bytes) = store.sizes().await;
        if error_sample.is_none() {
            error_sample = sample.lock().expect("sample lock").clone();
        }
        let cycle = Cycle {
            index,
            seconds,
            ok: counters.ok.load(Ordering::Relaxed),
            acked_writes: counters.acked_writes.load(Ordering::Relaxed),
            errors: counters.errors.load(Ordering::Relaxed),
            failures: counters.failures.load(Ordering::Relaxed),
            resolved_applied: applied,
            resolved_absent: absent,
            rss_max,
            rss_last,
            db_bytes,
            wal_bytes,
            archive_bytes,
            postgres_crashed: crash_pg,
            restart_seconds,
        };
        progress(format!(
            "cycle {index}: {:.0} s, {} ok, {} acknowledged writes, {} errors, {} connection failures, rss {} MiB, db {} MiB, wal {} MiB, archive {} MiB, lost {}",
            cycle.seconds,
            cycle.ok,
            cycle.acked_writes,
            cycle.errors,
            cycle.failures,
            mib(cycle.rss_max),
            mib(Some(cycle.db_bytes)),
            mib(Some(cycle.wal_bytes)),
            mib(Some(cycle.archive_bytes)),
            found_lost.len()
        ));
        lost.extend(found_lost.into_iter().map(|l| format!("cycle {index}: {l}")));
        cycles.push(cycle);
    }
    let _ = restart_seconds;
    server.stop();
    let total_acked_writes = cycles.iter().map(|c| c.acked_writes).sum();
    let total_ok = cycles.iter().map(|c| c.ok).sum();
    let settings_line = format!(
        "{} store, {} connections at {:.0} requests/s in all, {} secrets (replaced after {} versions), SIGKILL every {:.0} s +-25%{}, audit retention {}, {:.0} minutes",
        settings.store.label(),
        connections,
        settings.rate,
        connections * per,
        VERSIONS_PER_SECRET,
        settings.kill_every.as_secs_f64(),
        if settings.store == StoreKind::Postgres && settings.postgres_crash_every > 0 {
            format!(
                ", PostgreSQL crashed (immediate shutdown) every {} cycles",
                settings.postgres_crash_every
            )
        } else {
            String::new()
        },
        settings.audit_retention,
        settings.duration.as_secs_f64() / 60.0
    );
    Ok(SoakReport {
        store: settings.store,
        settings_line,
        cycles,
        lost,
        error_sample,
        total_acked_writes,
        total_ok,
    })
}

fn mib(bytes: Option<u64>) -> String {
    match bytes {
        Some(b) => format!("{:.1}", b as f64 / (1024.0 * 1024.0)),
        None => "-".to_string(),
    }
}

/// The report as Markdown.
pub fn render(report: &SoakReport) -> String {
    let mut out = format!("### Soak: {}\n\n{}\n\n", report.store.label(), report.settings_line);
    out.push_str("| cycle | s | answers ok | acked writes | errors | conn. failures | unanswered writes applied / not | Coffer RSS max / at kill (MiB) | database (MiB) | WAL (MiB) | audit archive (MiB) | restart (s) |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for c in &report.cycles {
        out.push_str(&format!(
            "| {}{} | {:.0} | {} | {} | {} | {} | {} / {} | {} / {} | {} | {} | {} | {:.1} |\n",
            c.index,
            if c.postgres_crashed { " (+PG crash)" } else { "" },
            c.seconds,
            c.ok,
            c.acked_writes,
            c.errors,
            c.failures,
            c.resolved_applied,
            c.resolved_absent,
            mib(c.rss_max),
            mib(c.rss_last),
            mib(Some(c.db_bytes)),
            mib(Some(c.wal_bytes)),
            mib(Some(c.archive_bytes)),
            c.restart_seconds
        ));
    }
    out.push_str(&format!(
        "\n{} kill cycles, {} answers ok, {} acknowledged writes, {} lost.\n",
        report.cycles.len(),
        report.total_ok,
        report.total_acked_writes,
        report.lost.len()
    ));
    if let Some(sample) = &report.error_sample {
        out.push_str(&format!("First error seen under load: {sample}.\n"));
    }
    for l in &report.lost {
        out.push_str(&format!("- LOST: {l}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_unique_per_name_and_sequence() {
        assert_ne!(value_for("a", 1), value_for("a", 2));
        assert_ne!(value_for("a", 1), value_for("b", 1));
        assert!(value_for("a", 1).len() >= 256);
    }

    #[test]
    fn stores_are_named_on_the_command_line() {
        assert_eq!(StoreKind::parse("sqlite"), Some(StoreKind::Sqlite));
        assert_eq!(StoreKind::parse("postgres"), Some(StoreKind::Postgres));
        assert_eq!(StoreKind::parse("mysql"), None);
    }
}
