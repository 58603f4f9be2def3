//! CPU accounting around a measured window, from `/proc`: how much CPU the
//! server, the load generator and everything else on the machine used.
//!
//! Throughput on a shared two-core machine moves with whatever else runs;
//! the server's CPU time per answer moves much less, and the share used by
//! other processes tells when a number was disturbed.

/// Clock ticks per second of `/proc` times (`USER_HZ`, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// Cumulative CPU ticks at one instant.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    machine_busy: u64,
    server: u64,
    bench: u64,
    at: std::time::Instant,
}

/// CPU use over a window, in cores (1.0 = one core busy throughout).
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub server_cores: f64,
    pub bench_cores: f64,
    pub other_cores: f64,
    /// The server's CPU time in seconds.
    pub server_seconds: f64,
}

fn machine_busy() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal: all but idle and iowait are busy.
    Some(v.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, t)| t).sum())
}

/// `utime + stime` of a process, all its threads included.
pub fn process_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_process_ticks(&stat)
}

fn parse_process_ticks(stat: &str) -> Option<u64> {
    // The command name may hold spaces; the fields after its closing parenthesis do not.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 of the line, utime 14 and stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Reads the counters now.
pub fn sample(server_pid: Option<u32>) -> Option<Sample> {
    Some(Sample {
        machine_busy: machine_busy()?,
        server: match server_pid {
            Some(pid) => process_ticks(pid)?,
            None => 0,
        },
        bench: process_ticks(std::process::id())?,
        at: std::time::Instant::now(),
    })
}

/// The CPU used between two samples.
pub fn usage(before: &Sample, after: &Sample) -> Usage {
    let secs = after.at.duration_since(before.at).as_secs_f64().max(1e-9);
    let ticks = |a: u64, b: u64| b.saturating_sub(a) as f64 / TICKS_PER_SECOND;
    let server = ticks(before.server, after.server);
    let bench = ticks(before.bench, after.bench);
    let busy = ticks(before.machine_busy, after.machine_busy);
    Usage {
        server_cores: server / secs,
        bench_cores: bench / secs,
        other_cores: ((busy - server - bench) / secs).max(0.0),
        server_seconds: server,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_times_are_read_after_a_name_with_spaces() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 99 1000 200";
        assert_eq!(parse_process_ticks(stat), Some(325));
    }

    #[test]
    fn this_process_and_the_machine_can_be_sampled() {
        let s = sample(Some(std::process::id())).unwrap();
        // The bench's own counter is read after the "server's" (the same process): never less.
        assert!(s.bench >= s.server);
    }
}
