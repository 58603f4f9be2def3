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

/// The fields of `/proc/<pid>/stat` the accounting needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    ppid: u32,
    /// `utime + stime`: the process itself, all its threads included.
    own: u64,
    /// `cutime + cstime`: its children that ended and were waited for.
    reaped_children: u64,
}

fn parse_stat(stat: &str) -> Option<Stat> {
    // The command name may hold spaces; the fields after its closing parenthesis do not.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 of the line, ppid 4, utime 14, stime 15,
    // cutime 16 and cstime 17.
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        ppid: u32::try_from(field(4)?).ok()?,
        own: field(14)? + field(15)?,
        reaped_children: field(16)? + field(17)?,
    })
}

fn read_stat(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// `utime + stime` of a process, all its threads included.
pub fn process_ticks(pid: u32) -> Option<u64> {
    Some(read_stat(pid)?.own)
}

/// The CPU ticks of a process and of its children, living or ended.
///
/// A server made of several processes (PostgreSQL's postmaster forks one backend
/// per connection) counts them all. A child that ends between two samples moves
/// its time from the living children's sum to the parent's reaped-children
/// counter, so the total stays continuous.
pub fn tree_ticks(root: u32) -> Option<u64> {
    let parent = read_stat(root)?;
    let children: u64 = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(read_stat)
        .filter(|s| s.ppid == root)
        .map(|s| s.own + s.reaped_children)
        .sum();
    Some(parent.own + parent.reaped_children + children)
}

/// Reads the counters now; the server's are those of every process tree in
/// `server_pids` together.
pub fn sample(server_pids: &[u32]) -> Option<Sample> {
    let mut server = 0;
    for &pid in server_pids {
        server += tree_ticks(pid)?;
    }
    Some(Sample {
        machine_busy: machine_busy()?,
        server,
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
        let stat =
            "42 (a (b) c) S 7 42 42 0 -1 4194560 100 0 0 0 250 75 30 12 20 0 3 0 99 1000 200";
        assert_eq!(parse_stat(stat), Some(Stat { ppid: 7, own: 325, reaped_children: 42 }));
        assert_eq!(parse_stat("42 (cut short) S 7 42"), None);
    }

    #[test]
    fn this_process_and_the_machine_can_be_sampled() {
        let s = sample(&[std::process::id()]).unwrap();
        // The bench's own counter is read after the "server's" (the same process): never less.
        assert!(s.bench >= s.server);
        assert_eq!(sample(&[]).unwrap().server, 0);
    }

    #[test]
    fn a_process_tree_counts_its_living_children() {
        // A child that burns CPU for a while, then waits to be killed.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; exec sleep 30"])
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut child_ticks = 0;
        while child_ticks == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
            child_ticks = process_ticks(child.id()).unwrap_or(0);
        }
        let me = std::process::id();
        let own = process_ticks(me).unwrap();
        let tree = tree_ticks(me).unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert!(child_ticks > 0, "the child used no CPU");
        assert!(tree >= own + child_ticks, "tree {tree} < own {own} + child {child_ticks}");
    }
}
