//! The `--audit-log` copy of the trail: one JSON line per committed event, written once the
//! store has acknowledged the commit that holds it.
//!
//! A write transaction that appends events only *checks* the log before it commits
//! ([`AuditFile::check`]): the file is open, no line waits from an earlier failure, a file
//! not yet written to takes a zero-length write (which fails at once on `/dev/full` or a
//! broken pipe), and space for the line is reserved in a regular file (`fallocate` past its
//! end, keeping its size). A failed check fails the call before anything changes (unless
//! the trail is fail-open). The lines are kept with the transaction's attempt that made
//! them ([`Lines`], which the writer passes down to each append: no thread-local) and
//! written only once the store returned `Ok`: a transaction the store runs again
//! (PostgreSQL after a serialization conflict) keeps only its last attempt's lines, and
//! one that never commits leaves none. So every committed event has its line
//! once, and no line names an event the store does not hold.
//!
//! A line that still cannot be written after its commit (the disk filled beyond the
//! reservation, the file system failed) stays queued in memory, bounded by
//! [`MAX_QUEUED_BYTES`] (lines dropped past it are counted as audit write failures): the
//! log is unhealthy until the queue is written, first, in order; every check fails until
//! then, so no more changes are made while the log lags (fail-closed), and `/ready` says
//! so. Lines are written in the order their commits were acknowledged: two concurrent
//! calls on one chain may have their lines swapped (the store's chain is the order).

use crate::audit::Settings;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The most bytes of lines kept queued while the log cannot be written: a fail-closed
/// server stops changing things once one is queued, so only a fail-open one (or a burst of
/// commits already past their check) can fill it.
const MAX_QUEUED_BYTES: usize = 16 * 1024 * 1024;

/// How much space past the end of the file one reservation claims: a few hundred events,
/// so reserving costs one `fallocate` per few hundred lines.
const RESERVE_BYTES: u64 = 256 * 1024;

/// The most bytes handed to one `write`.
const WRITE_BATCH: usize = 1024 * 1024;

/// Where the lines go.
#[derive(Debug)]
enum Target {
    Stdout,
    File(PathBuf),
}

/// The `--audit-log` sink.
#[derive(Debug)]
pub(crate) struct AuditFile {
    target: Option<Target>,
    max_bytes: u64,
    keep: usize,
    state: Mutex<State>,
    /// Test-only fault injection: how many of the coming post-commit writes fail.
    #[cfg(test)]
    fail_writes: std::sync::atomic::AtomicU32,
}

#[derive(Debug, Default)]
struct State {
    file: Option<Open>,
    /// Committed events' lines not yet written, oldest first.
    queue: VecDeque<Vec<u8>>,
    queued_bytes: usize,
    /// A write failed partway: the file may end in a torn line, ended before the next.
    torn: bool,
    /// Whether the log's path may be a symbolic link: only if it was one when the server
    /// started (the operator's choice). Otherwise every open refuses a link, so one swapped
    /// in later by whoever may write the directory cannot send the lines elsewhere.
    follow_links: bool,
    /// A regular file was opened at the path: every later open (the file moved, replaced
    /// or rotated) must find one too, and never waits to find out (see [`State::open`]).
    regular_only: bool,
}

#[derive(Debug)]
struct Open {
    file: File,
    size: u64,
    /// Space is allocated up to this offset (`fallocate`), so lines up to it cannot fail
    /// for want of space.
    reserved_to: u64,
    /// Whether the file system reserves space (not a pipe, a device, or a file system
    /// without `fallocate`).
    can_reserve: bool,
    /// A line was written since it was opened: the zero-length probe is no longer needed.
    proven: bool,
    /// A regular file (which rotates), not a pipe or a device.
    regular: bool,
    /// The file's device and inode, to see it moved or deleted under the server.
    identity: Option<(u64, u64)>,
}

impl AuditFile {
    pub(crate) fn new(settings: &Settings) -> AuditFile {
        let target = settings.log.as_ref().map(|path| match path.as_os_str() == "-" {
            true => Target::Stdout,
            false => Target::File(path.clone()),
        });
        AuditFile {
            target,
            max_bytes: settings.log_max_bytes,
            keep: settings.log_keep,
            state: Mutex::new(State {
                follow_links: settings.log.as_deref().is_some_and(|path| {
                    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
                }),
                ..State::default()
            }),
            #[cfg(test)]
            fail_writes: std::sync::atomic::AtomicU32::new(0),
        }
    }

    /// Whether events are copied to a log at all.
    pub(crate) fn enabled(&self) -> bool {
        self.target.is_some()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens the file now, so that a bad path stops the server at start.
    pub(crate) fn open(&self) -> std::io::Result<()> {
        if let Some(Target::File(path)) = &self.target {
            self.lock().open(path)?;
        }
        Ok(())
    }

    /// Lines committed but not yet written.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.lock().queue.len()
    }

    /// Tries to write the queued lines now, if any; returns how many are still queued.
    /// Called by `/ready` and by a server stopping: otherwise only a call's check wrote
    /// them, and a node taken out of service for being unready receives no call, so it
    /// stayed unready and its lines were lost at the restart (review 11, finding 04).
    pub(crate) fn retry_queued(&self) -> usize {
        let mut state = self.lock();
        if state.queue.is_empty() {
            return 0;
        }
        if let Err(e) = self.drain(&mut state) {
            tracing::debug!(cause = %e, "the audit log still cannot take its queued lines");
        }
        crate::metrics::audit_log_queued(state.queue.len());
        state.queue.len()
    }

    /// Called inside a write transaction before it appends an event whose line is `len`
    /// bytes (with its newline): `Ok` when the line can be written after the commit, as
    /// far as can be known before. Writes the lines still queued first.
    pub(crate) fn check(&self, len: u64) -> std::io::Result<()> {
        let Some(target) = &self.target else { return Ok(()) };
        let mut state = self.lock();
        if !state.queue.is_empty() {
            let drained = self.drain(&mut state);
            crate::metrics::audit_log_queued(state.queue.len());
            drained?;
        }
        let Target::File(path) = target else { return Ok(()) };
        let open = state.open(path)?;
        if !open.proven
            && let Err(e) = (&open.file).write(&[])
        {
            state.file = None;
            return Err(e);
        }
        open.reserve(len, self.max_bytes)
    }

    /// Writes the lines of a committed transaction (after any still queued). A failure
    /// keeps them queued: they are not lost with the call, which committed.
    pub(crate) fn write_committed(&self, lines: Vec<Vec<u8>>) {
        if lines.is_empty() {
            return;
        }
        let mut state = self.lock();
        for line in lines {
            state.queued_bytes += line.len();
            state.queue.push_back(line);
        }
        let mut dropped = 0;
        while state.queued_bytes > MAX_QUEUED_BYTES {
            let Some(line) = state.queue.pop_front() else { break };
            state.queued_bytes -= line.len();
            dropped += 1;
        }
        if dropped > 0 {
            tracing::error!(dropped, "audit log lines dropped: the log could not be written");
            crate::metrics::audit_write_failures(dropped);
        }
        let drained = self.drain(&mut state);
        crate::metrics::audit_log_queued(state.queue.len());
        if let Err(e) = drained {
            tracing::error!(
                cause = %e,
                queued = state.queue.len(),
                "could not write committed events to the audit log; they stay queued and calls \
                 that would add events fail until they are written"
            );
        }
    }

    /// Writes the queued lines, oldest first, rotating the file by size on the way.
    fn drain(&self, state: &mut State) -> std::io::Result<()> {
        let Some(target) = &self.target else {
            state.queue.clear();
            state.queued_bytes = 0;
            return Ok(());
        };
        if let Target::File(path) = target {
            state.close_if_moved(path);
        }
        while !state.queue.is_empty() {
            let (buf, count) = match target {
                Target::Stdout => batch(&state.queue, u64::MAX, 0),
                Target::File(path) => {
                    let open = state.open(path)?;
                    let (size, regular) = (open.size, open.regular);
                    let first = state.queue[0].len() as u64 + 1;
                    if size > 0 && size + first > self.max_bytes && is_regular_file(path) {
                        state.file = None;
                        rotate(path, self.keep)?;
                        continue;
                    }
                    // A pipe or a device is never rotated: no size bounds its writes.
                    let max_bytes = if regular { self.max_bytes } else { u64::MAX };
                    batch(&state.queue, max_bytes, size)
                }
            };
            let (written, result) = self.write_out(state, &buf);
            // Lines written whole leave the queue; a line cut short stays, written whole
            // on a line of its own once the file takes writes again.
            let mut done = 0;
            for _ in 0..count {
                let len = state.queue[0].len() + 1;
                if done + len > written {
                    break;
                }
                done += len;
                let line = state.queue.pop_front().expect("counted above");
                state.queued_bytes -= line.len();
            }
            if let Some(open) = state.file.as_mut() {
                open.size += written as u64;
                if written > 0 {
                    open.proven = true;
                }
            }
            if let Err(e) = result {
                state.torn = done < written;
                state.file = None;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Writes `buf` to the target: how many bytes made it, and the error that stopped it.
    fn write_out(&self, state: &mut State, buf: &[u8]) -> (usize, std::io::Result<()>) {
        #[cfg(test)]
        if self
            .fail_writes
            .fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |n| n.checked_sub(1),
            )
            .is_ok()
        {
            return (0, Err(std::io::Error::other("injected")));
        }
        match &mut state.file {
            Some(open) => write_counted(&mut open.file, buf),
            None => {
                let mut out = std::io::stdout().lock();
                let (written, result) = write_counted(&mut out, buf);
                (written, result.and_then(|()| out.flush()))
            }
        }
    }

    /// Makes the next `count` post-commit writes fail, as a full disk would.
    #[cfg(test)]
    pub(crate) fn fail_writes(&self, count: u32) {
        self.fail_writes.store(count, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The queue's leading lines that fit in one write before the file reaches `max_bytes`
/// (at least one), joined with their newlines, and how many they are.
fn batch(queue: &VecDeque<Vec<u8>>, max_bytes: u64, size: u64) -> (Vec<u8>, usize) {
    let mut buf = Vec::new();
    let mut size = size;
    let mut count = 0;
    for line in queue {
        let len = line.len() as u64 + 1;
        if count > 0 && (size + len > max_bytes || buf.len() + line.len() >= WRITE_BATCH) {
            break;
        }
        buf.extend_from_slice(line);
        buf.push(b'\n');
        size += len;
        count += 1;
    }
    (buf, count)
}

fn write_counted(out: &mut impl Write, buf: &[u8]) -> (usize, std::io::Result<()>) {
    let mut written = 0;
    while written < buf.len() {
        match out.write(&buf[written..]) {
            Ok(0) => return (written, Err(std::io::ErrorKind::WriteZero.into())),
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return (written, Err(e)),
        }
    }
    (written, Ok(()))
}

impl State {
    /// The open file, opened (and a torn last line ended) if need be.
    fn open(&mut self, path: &Path) -> std::io::Result<&mut Open> {
        if self.file.is_none() {
            // Made again at its path once a regular file was there: whoever may write the
            // directory could have put a FIFO there, whose open would wait for a reader
            // with the log's lock held, hanging every call and `/ready` (review 12,
            // finding 02). Such an open does not wait, and only a regular file is taken.
            let reopen = self.regular_only;
            let (mut file, mut size) = open_append(path, self.follow_links, reopen)?;
            let metadata = file.metadata().ok();
            let regular = metadata.as_ref().is_some_and(|m| m.is_file());
            if reopen && !regular {
                tracing::warn!(path = %path.display(), "the audit log's path is no longer a regular file; not written");
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    "the audit log's path is not a regular file",
                ));
            }
            self.regular_only |= regular;
            let identity = metadata.filter(|_| regular).map(|m| (m.dev(), m.ino()));
            if self.torn && size > 0 && !ends_a_line(path, size) {
                file.write_all(b"\n")?;
                size += 1;
            }
            self.torn = false;
            self.file = Some(Open {
                file,
                size,
                reserved_to: 0,
                can_reserve: regular,
                proven: false,
                regular,
                identity,
            });
        }
        Ok(self.file.as_mut().expect("opened above"))
    }

    /// Closes the open file if the path no longer names it: renamed by an external rotation
    /// (`logrotate` without `copytruncate`), deleted, or replaced. Lines written to it would
    /// be out of the shipper's sight, or lost with the deleted file; the next open makes
    /// the file again at the path. One `stat` per committed write, not per check.
    fn close_if_moved(&mut self, path: &Path) {
        let Some(identity) = self.file.as_ref().and_then(|open| open.identity) else { return };
        let now = std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
        if now != Some(identity) {
            tracing::warn!(path = %path.display(), "the audit log was moved or deleted; writing a new one at its path");
            self.file = None;
        }
    }
}

impl Open {
    /// Makes sure the next `len` bytes have space, reserving ahead (at most up to where the
    /// file rotates). Fails only when the file system is out of space or quota.
    fn reserve(&mut self, len: u64, max_bytes: u64) -> std::io::Result<()> {
        if !self.can_reserve || self.size + len <= self.reserved_to {
            return Ok(());
        }
        let ahead = RESERVE_BYTES.min(max_bytes.saturating_sub(self.size)).max(len);
        let flags = rustix::fs::FallocateFlags::KEEP_SIZE;
        match rustix::fs::fallocate(&self.file, flags, self.size, ahead) {
            Ok(()) => {
                self.reserved_to = self.size + ahead;
                Ok(())
            }
            Err(e) if e == rustix::io::Errno::NOSPC || e == rustix::io::Errno::DQUOT => {
                Err(e.into())
            }
            // A pipe, a device, a file system that does not reserve: nothing to check.
            Err(_) => {
                self.can_reserve = false;
                Ok(())
            }
        }
    }
}

/// Whether the file's last byte (of `size`) is a newline. Opened without waiting: the
/// path may have become a FIFO since the log was opened (review 12, finding 02).
fn ends_a_line(path: &Path, size: u64) -> bool {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let mut last = [0u8];
    let nonblocking = rustix::fs::OFlags::NONBLOCK.bits() as i32;
    OpenOptions::new()
        .read(true)
        .custom_flags(nonblocking)
        .open(path)
        .and_then(|f| f.read_exact_at(&mut last, size - 1))
        .map(|()| last[0] == b'\n')
        .unwrap_or(true)
}

/// Opens the log for appending, creating it readable by its owner alone whatever the
/// umask (rotated files keep that mode). A file that already exists keeps its mode: an
/// operator may have opened it to a log shipper's group on purpose.
/// Without `follow_links`, a symbolic link at the path is refused (`O_NOFOLLOW`); with
/// `nonblocking`, opening a FIFO fails rather than waits for a reader (`O_NONBLOCK`, which
/// changes nothing for a regular file).
fn open_append(path: &Path, follow_links: bool, nonblocking: bool) -> std::io::Result<(File, u64)> {
    use rustix::fs::OFlags;
    use std::os::unix::fs::OpenOptionsExt;
    let mut flags = OFlags::empty();
    if !follow_links {
        flags |= OFlags::NOFOLLOW;
    }
    if nonblocking {
        flags |= OFlags::NONBLOCK;
    }
    let flags = flags.bits() as i32;
    let file =
        OpenOptions::new().create(true).append(true).mode(0o600).custom_flags(flags).open(path)?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    Ok((file, size))
}

fn is_regular_file(path: &Path) -> bool {
    std::fs::metadata(path).map(|m| m.is_file()).unwrap_or(false)
}

/// `FILE` -> `FILE.1`, `FILE.1` -> `FILE.2`, ..., dropping the oldest beyond `keep`.
fn rotate(path: &Path, keep: usize) -> std::io::Result<()> {
    let numbered = |n: usize| {
        let mut p = path.as_os_str().to_owned();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    };
    let keep = keep.max(1);
    let _ = std::fs::remove_file(numbered(keep));
    for n in (1..keep).rev() {
        let from = numbered(n);
        if from.exists() {
            std::fs::rename(&from, numbered(n + 1))?;
        }
    }
    std::fs::rename(path, numbered(1))
}

/// The log lines of the events one store write appends, kept from the attempt the store
/// ran last until it acknowledges the commit. The writer owns it and hands it, by `&mut`,
/// to every append of the transaction (through [`crate::audit::Heads`], or the
/// [`crate::Txn`] of `App::write`'s closure): call [`Lines::attempt`] as each run of the
/// transaction's closure starts (the store may run it more than once), then
/// [`Lines::committed`] once the write returned `Ok`.
///
/// It carries the chain heads the attempt stored too, `(chain, seq)`, reported to the
/// auditor on commit: a head below one this process committed is refused
/// (`audit::SealedHeads`), and only a committed head may set that floor.
#[derive(Debug, Default)]
pub(crate) struct Lines {
    kept: Vec<Vec<u8>>,
    heads: Vec<(String, u64)>,
}

impl Lines {
    /// Starts one attempt of the transaction: the lines of an earlier attempt (which was
    /// rolled back) are dropped.
    pub(crate) fn attempt(&mut self) -> &mut Lines {
        self.kept.clear();
        self.heads.clear();
        self
    }

    /// Keeps the chain heads the running attempt stored, as `(chain, seq)`.
    pub(crate) fn keep_heads(&mut self, heads: Vec<(String, u64)>) {
        self.heads.extend(heads);
    }

    /// Keeps the line of an event appended by the running attempt.
    pub(crate) fn keep(&mut self, line: Vec<u8>) {
        self.kept.push(line);
    }

    /// Writes the lines of the attempt that committed, and notes its chain heads.
    pub(crate) fn committed(self, audit: &crate::audit::Auditor) {
        audit.heads_committed(&self.heads);
        audit.log_file().write_committed(self.kept);
    }
}

#[cfg(test)]
mod tests {
    use super::AuditFile;
    use crate::audit::{CallRecord, Settings, Source};
    use crate::scripted_store::{Next, Scripted};
    use crate::{App, Config, KeyRing, RequestContext};
    use coffer_audit::event::UserIdentity;
    use coffer_core::Scope;
    use coffer_crypto::MasterKey;
    use coffer_store::Store;
    use coffer_wire::operation::{Operation, SecretsManagerOp};
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    fn app_logging_to(log: &Path) -> (Arc<Scripted>, Arc<App>) {
        let store = Arc::new(Scripted::new());
        let keys = KeyRing::open(MasterKey::generate(), store.as_ref()).unwrap();
        let audit = Settings { log: Some(log.to_path_buf()), ..Settings::default() };
        let app = App::new(store.clone(), keys, Config { audit, ..Config::default() });
        (store, app)
    }

    fn scope() -> Scope {
        Scope::new("111122223333", "us-east-1")
    }

    fn call(op: SecretsManagerOp) -> RequestContext {
        let source = Source { ip: None, user_agent: "test".into(), console: false };
        let mut ctx = RequestContext::new(scope(), "AKIA".into(), "r".into());
        ctx.audit = CallRecord::begin(
            &scope(),
            "r",
            UserIdentity::default(),
            &source,
            Operation::SecretsManager(op),
            None,
        );
        ctx
    }

    /// A mutating call that stores `key`; its result and the id of its event.
    fn change(app: &App, key: &str) -> Result<(), coffer_core::AwsError> {
        let ctx = call(SecretsManagerOp::CreateSecret);
        app.write(&ctx, |tx| tx.put_record("test", key, b"v").map_err(crate::store_error))
    }

    /// A read-only call, whose event the appender commits.
    fn read(app: &App) -> Result<(), coffer_core::AwsError> {
        let ctx = call(SecretsManagerOp::GetSecretValue);
        ctx.audit.finish(app, Ok(b"{}".to_vec())).map(|_| ())
    }

    fn stored(store: &Scripted, key: &str) -> bool {
        let mut found = false;
        store
            .read(&mut |tx| {
                found = tx.record("test", key)?.is_some();
                Ok(())
            })
            .unwrap();
        found
    }

    /// The events in the log: (eventName, eventID), in file order.
    fn logged(log: &Path) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        text.lines()
            .map(|line| {
                let event: serde_json::Value = serde_json::from_str(line).unwrap();
                let field = |name: &str| event[name].as_str().unwrap().to_string();
                (field("eventName"), field("eventID"))
            })
            .collect()
    }

    fn log_path(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("audit.jsonl")
    }

    /// A transaction the store runs twice (a PostgreSQL serialization conflict) commits
    /// its event once, and the log has its line once: a mutating call's and a batch of the
    /// appender's.
    #[test]
    fn a_transaction_run_again_logs_its_events_once() {
        let dir = tempfile::tempdir().unwrap();
        let (store, app) = app_logging_to(&log_path(&dir));
        store.then(&[Next::Rerun]);
        change(&app, "a").unwrap();
        store.then(&[Next::Rerun]);
        read(&app).unwrap();
        let names: Vec<String> = logged(&log_path(&dir)).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["CreateSecret", "GetSecretValue"]);
    }

    /// A transaction whose commit fails leaves no line: neither a mutating call's nor a
    /// batch of the appender's. The calls fail; the next ones are logged.
    #[test]
    fn a_transaction_whose_commit_fails_logs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (store, app) = app_logging_to(&log_path(&dir));
        store.then(&[Next::FailCommit]);
        assert!(change(&app, "lost").is_err());
        assert!(!stored(&store, "lost"));
        store.then(&[Next::FailCommit]);
        assert!(read(&app).is_err());
        change(&app, "kept").unwrap();
        let names: Vec<String> = logged(&log_path(&dir)).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["CreateSecret"]);
        assert!(stored(&store, "kept"));
    }

    /// A service event appended inside `App::write`'s closure (with the call's own event,
    /// or in a write no call's event goes with) has its line kept with the attempt like the
    /// call's: once for a transaction run again, none for one whose commit fails.
    #[test]
    fn service_events_inside_a_write_are_logged_once_per_commit() {
        let dir = tempfile::tempdir().unwrap();
        let (store, app) = app_logging_to(&log_path(&dir));
        let service = |app: &App, tx: &mut crate::Txn, name: &str| {
            let arn = "arn:aws:secretsmanager:us-east-1:111122223333:secret:s";
            crate::audit::record_service_event(app, tx, &scope(), "test", name, arn, 5)
        };
        store.then(&[Next::Rerun]);
        let ctx = call(SecretsManagerOp::RotateSecret);
        app.write(&ctx, |tx| {
            tx.put_record("test", "a", b"v").map_err(crate::store_error)?;
            service(&app, tx, "RotationStarted")
        })
        .unwrap();
        store.then(&[Next::Rerun]);
        app.write_unrecorded(|tx| service(&app, tx, "DeleteSecret")).unwrap();
        store.then(&[Next::FailCommit]);
        assert!(app.write_unrecorded(|tx| service(&app, tx, "Lost")).is_err());
        store.then(&[Next::FailCommit]);
        let ctx = call(SecretsManagerOp::RotateSecret);
        assert!(app.write(&ctx, |tx| service(&app, tx, "AlsoLost")).is_err());
        let names: Vec<String> = logged(&log_path(&dir)).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["RotationStarted", "RotateSecret", "DeleteSecret"]);
    }

    /// A log that cannot be written fails a mutating call before it changes anything.
    #[test]
    fn an_unwritable_log_fails_the_call_and_changes_nothing() {
        let (store, app) = app_logging_to(Path::new("/dev/full"));
        assert!(change(&app, "never").is_err());
        assert!(!stored(&store, "never"));
        assert!(read(&app).is_err());
    }

    /// The lines of commits the log could not take stay queued and are written first, in
    /// order, once it can; meanwhile every call that would add an event fails unchanged.
    #[test]
    fn lines_the_log_could_not_take_are_queued_and_written_first_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (store, app) = app_logging_to(&log_path(&dir));
        change(&app, "first").unwrap();
        // The next two writes fail: the second call's line after its commit, then the
        // third call's attempt to write the queue before it changes anything.
        app.audit.log_file().fail_writes(2);
        change(&app, "second").unwrap();
        assert_eq!(app.audit.log_file().queued(), 1);
        assert!(change(&app, "third").is_err());
        assert!(!stored(&store, "third"));
        assert!(read(&app).is_ok(), "the queue is written before the read's event");
        change(&app, "fourth").unwrap();
        assert_eq!(app.audit.log_file().queued(), 0);
        let names: Vec<String> = logged(&log_path(&dir)).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["CreateSecret", "CreateSecret", "GetSecretValue", "CreateSecret"]);
        assert!(stored(&store, "first") && stored(&store, "second") && stored(&store, "fourth"));
    }

    /// Lines are written with their newline, a file full past `log_max_bytes` is rotated,
    /// and only `log_keep` rotated files are kept.
    #[test]
    fn the_log_rotates_by_size_and_keeps_a_bounded_number_of_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let file = AuditFile::new(&Settings {
            log: Some(path.clone()),
            log_max_bytes: 100,
            log_keep: 2,
            ..Settings::default()
        });
        for _ in 0..10 {
            file.check(40).unwrap();
            file.write_committed(vec![vec![b'x'; 39]]);
        }
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        assert!(size(&path) <= 100);
        assert_eq!(size(&dir.path().join("audit.jsonl.1")), 80);
        assert_eq!(size(&dir.path().join("audit.jsonl.2")), 80);
        assert!(!dir.path().join("audit.jsonl.3").exists());
    }

    /// A write cut short leaves a torn line: it is ended before the queued lines are
    /// written again, so every line that follows parses.
    #[test]
    fn a_torn_line_is_ended_before_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let file = AuditFile::new(&Settings { log: Some(path.clone()), ..Settings::default() });
        std::fs::write(&path, b"{\"eventID\":\"torn").unwrap();
        file.lock().torn = true;
        file.write_committed(vec![b"{}".to_vec()]);
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"eventID\":\"torn\n{}\n");
    }

    /// A log moved away under the server (an external `logrotate` that renames and does not
    /// signal) or deleted: the next committed lines go to a new file at the configured path,
    /// not to the moved file for ever, nor to a deleted file where nobody can read them
    /// (review 11, finding 02).
    #[test]
    fn a_log_moved_or_deleted_under_the_server_is_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let file = AuditFile::new(&Settings { log: Some(path.clone()), ..Settings::default() });
        let write = |line: &[u8]| {
            file.check(line.len() as u64 + 1).unwrap();
            file.write_committed(vec![line.to_vec()]);
        };
        write(b"{\"n\":1}");
        let moved = dir.path().join("audit.jsonl-20261205");
        std::fs::rename(&path, &moved).unwrap();
        write(b"{\"n\":2}");
        assert_eq!(std::fs::read(&moved).unwrap(), b"{\"n\":1}\n");
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"n\":2}\n");
        std::fs::remove_file(&path).unwrap();
        write(b"{\"n\":3}");
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"n\":3}\n");
        // Replaced by another file: written to the file now at the path.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"{\"other\":1}\n").unwrap();
        write(b"{\"n\":4}");
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"other\":1}\n{\"n\":4}\n");
    }

    /// A symbolic link put in the log's place (by whoever may write its directory) does not
    /// redirect the lines into the file it names: the log, a plain file at start, is never
    /// opened through a link. The line stays queued and the log is unhealthy instead. A log
    /// that is a link at start (the operator's choice) is followed as before.
    #[test]
    fn a_link_swapped_in_for_the_log_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        std::fs::write(&path, b"").unwrap();
        let file = AuditFile::new(&Settings { log: Some(path.clone()), ..Settings::default() });
        file.check(3).unwrap();
        file.write_committed(vec![b"{}".to_vec()]);
        let elsewhere = dir.path().join("elsewhere");
        std::fs::write(&elsewhere, b"").unwrap();
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        file.write_committed(vec![b"{\"n\":2}".to_vec()]);
        assert_eq!(std::fs::read(&elsewhere).unwrap(), b"", "the lines followed the link");
        assert_eq!(file.queued(), 1);
        assert!(file.check(3).is_err());
        // A log that is a link from the start is the operator's: it is followed.
        let linked = dir.path().join("linked.jsonl");
        std::os::unix::fs::symlink(&elsewhere, &linked).unwrap();
        let file = AuditFile::new(&Settings { log: Some(linked), ..Settings::default() });
        file.check(3).unwrap();
        file.write_committed(vec![b"{}".to_vec()]);
        assert_eq!(std::fs::read(&elsewhere).unwrap(), b"{}\n");
    }

    /// A log whose writes fail (`/dev/full`) fails the check, before any commit.
    #[test]
    fn a_log_that_cannot_be_written_fails_its_check() {
        let file = AuditFile::new(&Settings {
            log: Some(PathBuf::from("/dev/full")),
            ..Settings::default()
        });
        assert!(file.check(3).is_err());
    }
}
