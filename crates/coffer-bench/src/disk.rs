//! The disk's ceiling for durable writes: small writes each followed by
//! `fdatasync`, by one writer and by many at once, in the data directory's
//! file system.
//!
//! Each writer overwrites 512-byte slots of its own preallocated file, which
//! is the least work a durable commit can do (no file growth, no metadata):
//! no store can acknowledge synced writes faster than this.

use hdrhistogram::Histogram;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

const FILE_BYTES: u64 = 1 << 20;
const WRITE_BYTES: usize = 512;
/// A bound on the writes of one measurement, whatever the disk.
const MAX_WRITES_PER_WRITER: u64 = 5_000_000;

/// Synced writes measured.
#[derive(Debug, Clone)]
pub struct DiskOutcome {
    pub writers: usize,
    pub writes: u64,
    pub elapsed: Duration,
    /// Latency of one write + fdatasync, in nanoseconds.
    pub latency: Histogram<u64>,
}

impl DiskOutcome {
    pub fn rate(&self) -> f64 {
        self.writes as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Measures `writers` concurrent writers, each write + fdatasync in a loop, for `duration`.
pub fn synced_write_rate(
    dir: &Path,
    writers: usize,
    duration: Duration,
) -> std::io::Result<DiskOutcome> {
    let mut files = Vec::with_capacity(writers);
    for k in 0..writers {
        let path = dir.join(format!("disk-probe-{k}"));
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
        file.write_all(&vec![0u8; FILE_BYTES as usize])?;
        file.sync_all()?;
        files.push((path, file));
    }
    let start = Instant::now();
    let deadline = start + duration;
    let results: Vec<std::io::Result<(u64, Histogram<u64>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = files
            .iter()
            .map(|(_, file)| {
                s.spawn(move || {
                    let mut latency = Histogram::<u64>::new_with_bounds(1, 600_000_000_000, 3)
                        .expect("valid histogram bounds");
                    let block = [0x5au8; WRITE_BYTES];
                    let mut n = 0u64;
                    // At least one write per writer, then until the deadline or the bound.
                    loop {
                        let t = Instant::now();
                        let offset = (n * WRITE_BYTES as u64) % FILE_BYTES;
                        file.write_all_at(&block, offset)?;
                        file.sync_data()?;
                        latency.saturating_record(t.elapsed().as_nanos() as u64);
                        n += 1;
                        if n >= MAX_WRITES_PER_WRITER || Instant::now() >= deadline {
                            break;
                        }
                    }
                    Ok((n, latency))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a disk writer panicked")).collect()
    });
    let elapsed = start.elapsed();
    for (path, _) in &files {
        let _ = std::fs::remove_file(path);
    }
    let mut outcome = DiskOutcome {
        writers,
        writes: 0,
        elapsed,
        latency: Histogram::new_with_bounds(1, 600_000_000_000, 3).expect("valid bounds"),
    };
    for result in results {
        let (n, latency) = result?;
        outcome.writes += n;
        outcome.latency.add(&latency).expect("histograms with equal bounds");
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synced_writes_are_counted_and_the_probe_files_removed() {
        let dir = tempfile::tempdir().unwrap();
        let outcome = synced_write_rate(dir.path(), 2, Duration::from_millis(50)).unwrap();
        assert_eq!(outcome.writers, 2);
        assert!(outcome.writes >= 2, "each writer completes at least one synced write");
        assert_eq!(outcome.latency.len(), outcome.writes);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
