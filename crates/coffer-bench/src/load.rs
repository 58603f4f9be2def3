//! Closed-loop load: many keep-alive connections, each sending its next signed
//! request as soon as the previous answer arrives, for a fixed time.
//!
//! A run has a warm-up phase (connections opened, caches filled, not recorded)
//! and a measured window. Requests still in flight when the window closes are
//! abandoned, so a slow server cannot stretch a run; the number abandoned is
//! reported. Every run is also bounded in count.

use crate::client::{Conn, Endpoint};
use hdrhistogram::Histogram;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Builds the `i`-th request of a run: operation name and JSON body.
pub type MakeRequest = Arc<dyn Fn(u64) -> (&'static str, Vec<u8>) + Send + Sync>;

/// How long a run warms up and measures.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub warmup: Duration,
    pub measure: Duration,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Answers with status 200 inside the measured window.
    pub ok: u64,
    /// Answers with another status inside the window.
    pub errors: u64,
    /// Connection-level failures (refused, reset) at any time.
    pub failures: u64,
    /// Requests in flight when the window closed, never answered in it.
    pub abandoned: u64,
    /// The first error or failure seen, for the report.
    pub error_sample: Option<String>,
    /// The measured window: shorter than asked when the count bound was reached.
    pub window: Duration,
    /// Latency of every answer in the window, in nanoseconds.
    pub latency: Histogram<u64>,
    /// Connections the run used.
    pub connections: usize,
    /// CPU used in the window by the server, this generator and the rest of the machine.
    pub cpu: Option<crate::cpu::Usage>,
}

impl Outcome {
    /// The server's CPU time per answer, in microseconds.
    pub fn server_cpu_us_per_answer(&self) -> Option<f64> {
        let answers = self.ok + self.errors;
        let cpu = self.cpu?;
        (answers > 0).then(|| cpu.server_seconds * 1e6 / answers as f64)
    }

    /// Successful answers per second.
    pub fn throughput(&self) -> f64 {
        let secs = self.window.as_secs_f64();
        if secs > 0.0 { self.ok as f64 / secs } else { 0.0 }
    }

    /// A latency quantile in milliseconds (`None` when nothing was answered).
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        (!self.latency.is_empty()).then(|| self.latency.value_at_quantile(q) as f64 / 1e6)
    }
}

fn new_histogram() -> Histogram<u64> {
    // One nanosecond to ten minutes at three significant digits.
    Histogram::new_with_bounds(1, 600_000_000_000, 3).expect("valid histogram bounds")
}

struct TaskResult {
    ok: u64,
    errors: u64,
    failures: u64,
    abandoned: u64,
    error_sample: Option<String>,
    last_answer: Option<Instant>,
    latency: Histogram<u64>,
}

/// Runs `make` over `connections` connections for `timing`, at most
/// `max_requests` requests; samples the CPU of the process trees `server_pids`
/// (together the server) over the window.
pub async fn run(
    endpoint: &Endpoint,
    connections: usize,
    timing: Timing,
    max_requests: u64,
    make: MakeRequest,
    server_pids: &[u32],
) -> Outcome {
    run_on(std::slice::from_ref(endpoint), connections, timing, max_requests, make, server_pids)
        .await
}

/// [`run`] against several servers at once (nodes sharing one database): connection `i`
/// goes to `endpoints[i % n]`, and the outcome is their aggregate.
pub async fn run_on(
    endpoints: &[Endpoint],
    connections: usize,
    timing: Timing,
    max_requests: u64,
    make: MakeRequest,
    server_pids: &[u32],
) -> Outcome {
    let start = Instant::now();
    let window_start = start + timing.warmup;
    let deadline = window_start + timing.measure;
    let server_pids = server_pids.to_vec();
    // Told when a connection finds the count bound reached: the CPU sample ends there, not
    // at the deadline, so a fast server's bounded window (`--dev` puts at ~30,000/s reach
    // the put pool's bound in under 5 s) still reports its CPU per answer, without idle
    // time mixed in. The few answers still in flight then are a negligible share.
    let bound_reached = Arc::new(tokio::sync::Notify::new());
    let sampler = {
        let bound_reached = bound_reached.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(window_start).await;
            let before = crate::cpu::sample(&server_pids)?;
            let sampled = Instant::now();
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                _ = bound_reached.notified() => {}
            }
            let after = crate::cpu::sample(&server_pids)?;
            // Under a second of clock ticks (10 ms each) says too little.
            (sampled.elapsed() >= MIN_CPU_WINDOW).then(|| crate::cpu::usage(&before, &after))
        })
    };
    let counter = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(connections);
    for i in 0..connections {
        let endpoint = endpoints[i % endpoints.len()].clone();
        let make = make.clone();
        let counter = counter.clone();
        let bound_reached = bound_reached.clone();
        tasks.push(tokio::spawn(async move {
            let bound = Bound { counter, max_requests, reached: bound_reached };
            connection_loop(endpoint, make, bound, window_start, deadline).await
        }));
    }
    let mut outcome = Outcome {
        ok: 0,
        errors: 0,
        failures: 0,
        abandoned: 0,
        error_sample: None,
        window: timing.measure,
        latency: new_histogram(),
        connections,
        cpu: None,
    };
    let mut last_answer = window_start;
    let mut bounded = false;
    for task in tasks {
        let r = task.await.expect("a load task panicked");
        outcome.ok += r.ok;
        outcome.errors += r.errors;
        outcome.failures += r.failures;
        outcome.abandoned += r.abandoned;
        if outcome.error_sample.is_none() {
            outcome.error_sample = r.error_sample;
        }
        outcome.latency.add(&r.latency).expect("histograms with equal bounds");
        if let Some(t) = r.last_answer {
            last_answer = last_answer.max(t);
        }
    }
    if counter.load(Ordering::Relaxed) >= max_requests {
        bounded = true;
        // Wakes the sampler if no connection did (the bound reached before the window).
        bound_reached.notify_one();
    }
    outcome.cpu = sampler.await.ok().flatten();
    if bounded && last_answer < deadline {
        // The count bound ended the run early: the window is what was used.
        outcome.window = last_answer.saturating_duration_since(window_start);
    }
    outcome
}

/// The count bound shared by a run's connections.
struct Bound {
    counter: Arc<AtomicU64>,
    max_requests: u64,
    reached: Arc<tokio::sync::Notify>,
}

/// The shortest window whose CPU time is reported.
const MIN_CPU_WINDOW: Duration = Duration::from_secs(1);

async fn connection_loop(
    endpoint: Endpoint,
    make: MakeRequest,
    bound: Bound,
    window_start: Instant,
    deadline: Instant,
) -> TaskResult {
    let mut r = TaskResult {
        ok: 0,
        errors: 0,
        failures: 0,
        abandoned: 0,
        error_sample: None,
        last_answer: None,
        latency: new_histogram(),
    };
    let mut conn = Conn::new(endpoint.addr);
    loop {
        if Instant::now() >= deadline {
            break;
        }
        let i = bound.counter.fetch_add(1, Ordering::Relaxed);
        if i >= bound.max_requests {
            // `notify_one` keeps a permit, so the sampler wakes even if it is not waiting yet.
            bound.reached.notify_one();
            break;
        }
        let (op, body) = make(i);
        let request = endpoint.request(op, &body);
        let sent = Instant::now();
        match tokio::time::timeout_at(deadline, conn.send(&request)).await {
            Err(_) => {
                r.abandoned += 1;
                break;
            }
            Ok(Err(e)) => {
                r.failures += 1;
                r.error_sample.get_or_insert_with(|| format!("{op}: {e}"));
                if r.failures > 100 {
                    break;
                }
                // Do not spin on a refusing server.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok(Ok(response)) => {
                let answered = Instant::now();
                if sent >= window_start {
                    let nanos = answered.duration_since(sent).as_nanos() as u64;
                    r.latency.saturating_record(nanos.max(1));
                    if response.status == 200 {
                        r.ok += 1;
                    } else {
                        r.errors += 1;
                        r.error_sample
                            .get_or_insert_with(|| format!("{op}: {}", response.error_type()));
                    }
                    r.last_answer = Some(answered);
                }
            }
        }
    }
    r
}

/// How many times seeding sends one request before giving up.
const SEED_ATTEMPTS: u32 = 5;

/// What a seeding run did.
#[derive(Debug, Clone, Copy)]
pub struct Seeded {
    pub count: u64,
    pub elapsed: Duration,
}

impl Seeded {
    pub fn rate(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Sends requests `0..count` over `connections` connections; every one must
/// succeed (server errors are retried). Gives up with an error after `limit`.
pub async fn seed(
    endpoint: &Endpoint,
    connections: usize,
    count: u64,
    limit: Duration,
    make: MakeRequest,
) -> Result<Seeded, String> {
    let start = Instant::now();
    let deadline = start + limit;
    let counter = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..connections.max(1) {
        let endpoint = endpoint.clone();
        let make = make.clone();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(endpoint.addr);
            loop {
                let i = counter.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok(());
                }
                let (op, body) = make(i);
                // A server error or a dropped connection is retried a few times with
                // the same body: its idempotency token makes a repeat harmless.
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    let request = endpoint.request(op, &body);
                    let sent = tokio::time::timeout_at(deadline, conn.send(&request)).await;
                    let failure = match sent {
                        Err(_) => return Err(format!("seeding did not finish within {limit:?}")),
                        Ok(Ok(response)) if response.status == 200 => break,
                        Ok(Ok(response)) if response.status < 500 => {
                            return Err(format!(
                                "{op} #{i} answered {}: {}",
                                response.status,
                                response.error_type()
                            ));
                        }
                        Ok(Ok(response)) => {
                            format!("answered {}: {}", response.status, response.error_type())
                        }
                        Ok(Err(e)) => format!("failed: {e}"),
                    };
                    if attempt >= SEED_ATTEMPTS {
                        return Err(format!("{op} #{i} {failure} ({attempt} attempts)"));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    for task in tasks {
        task.await.map_err(|e| format!("a seeding task failed: {e}"))??;
    }
    Ok(Seeded { count, elapsed: start.elapsed() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throughput_counts_only_successes_over_the_window() {
        let mut latency = new_histogram();
        for ms in [1u64, 2, 3, 4] {
            latency.record(ms * 1_000_000).unwrap();
        }
        let outcome = Outcome {
            ok: 300,
            errors: 50,
            failures: 0,
            abandoned: 0,
            error_sample: None,
            window: Duration::from_secs(2),
            latency,
            connections: 1,
            cpu: None,
        };
        assert_eq!(outcome.throughput(), 150.0);
        let p50 = outcome.quantile_ms(0.5).unwrap();
        assert!((1.99..=2.01).contains(&p50), "p50 was {p50}");
    }

    #[test]
    fn an_empty_outcome_has_no_quantiles() {
        let outcome = Outcome {
            ok: 0,
            errors: 0,
            failures: 0,
            abandoned: 0,
            error_sample: None,
            window: Duration::ZERO,
            latency: new_histogram(),
            connections: 1,
            cpu: None,
        };
        assert_eq!(outcome.quantile_ms(0.99), None);
        assert_eq!(outcome.throughput(), 0.0);
    }
}
