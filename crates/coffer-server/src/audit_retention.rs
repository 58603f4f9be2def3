//! Audit retention: events older than the retention period are moved out of the store
//! into JSON-lines archive files (`coffer_audit::archive`), so the trail no longer grows
//! without bound inside the database, while `coffer audit verify` still checks the part
//! kept (from the chain's base checkpoint) and each archive on its own.
//!
//! A cut, per chain, runs in the background sweep of the node holding the lease:
//! 1. read the chain's base (the checkpoint of its last cut, or the genesis) and the
//!    oldest events after it, and check each one's hash and link from the base: a cut
//!    never seals a checkpoint over an event that does not verify (that would launder
//!    tampering), it stops there and logs;
//! 2. write those older than the cutoff to `<dir>/audit-<account>_<region>-<first seq>.jsonl`
//!    (0600, through a temporary file, synced, renamed, directory synced), ending with the
//!    new checkpoint sealed under the chain key;
//! 3. in one transaction, check the base is still the one read (another node may have cut
//!    meanwhile), delete the archived events and store the new base.
//!
//! A crash between 2 and 3 leaves a file the next round rewrites under the same name (the
//! cut starts at the same event), so no event is archived twice in two files; nothing is
//! deleted before its file is durable.

use crate::App;
use coffer_audit::archive::{self, BASE_KIND, Checkpoint};
use coffer_audit::chain::{self, ChainKey, EVENT_KIND, HEAD_KIND, Record};
use coffer_store::pages::Page;
use coffer_store::{RecordPages, StoreError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The default retention: 90 days, as long as CloudTrail's LookupEvents keeps events.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);

/// The most events moved to one archive file (one transaction deletes them).
pub const EVENTS_PER_FILE: usize = 10_000;

/// The most events moved per chain in one sweep round, so that a large backlog drains over
/// several rounds without holding up the rest of the background work.
const EVENTS_PER_ROUND: usize = 200_000;

/// How old events are kept.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Events older than this are archived and removed from the store; `None`: kept forever.
    pub max_age: Option<Duration>,
    /// Where archive files are written (required for retention to run).
    pub archive_dir: Option<PathBuf>,
    /// The most events in one archive file ([`EVENTS_PER_FILE`]).
    pub events_per_file: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { max_age: None, archive_dir: None, events_per_file: EVENTS_PER_FILE }
    }
}

/// What one round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Events moved out of the store.
    pub archived: u64,
    /// Archive files written.
    pub files: Vec<PathBuf>,
}

/// Archives and removes every event older than the retention period, chain by chain.
/// Does nothing when retention is off. Runs on a thread that may block.
pub fn run_round(app: &App, now_ms: i64) -> Result<Outcome, String> {
    let settings = &app.config.audit_retention;
    let (Some(max_age), Some(dir)) = (settings.max_age, settings.archive_dir.as_deref()) else {
        return Ok(Outcome::default());
    };
    let Some(key) = app.audit.chain_key() else {
        return Err("audit retention needs the audit chain key; events are kept".into());
    };
    let cutoff = now_ms.saturating_sub(i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX));
    let per_file = settings.events_per_file.max(1);
    let mut outcome = Outcome::default();
    for chain_id in chains(app)? {
        let mut moved = 0usize;
        while moved < EVENTS_PER_ROUND {
            match cut_once(app, key, dir, &chain_id, cutoff, per_file)? {
                Some((events, file)) => {
                    moved += events;
                    outcome.archived += events as u64;
                    crate::metrics::audit_archived(events as u64);
                    outcome.files.push(file);
                    if events < per_file {
                        break;
                    }
                }
                None => break,
            }
        }
    }
    Ok(outcome)
}

/// Counts the events the store holds (each chain's head minus its base: two small records
/// per chain, no scan of events) for `coffer_audit_events_stored`.
pub fn measure(app: &App) -> Result<u64, String> {
    let mut total = 0u64;
    each_head_page(app, "count the audit events", &mut |tx, page| {
        for (chain_id, bytes) in page {
            let head = serde_json::from_slice::<chain::Head>(&bytes).map_or(0, |h| h.seq);
            let base = read_base(tx, &chain_id)?.seq;
            total += head.saturating_sub(base);
        }
        Ok(())
    })?;
    crate::metrics::audit_events_stored(total);
    Ok(total)
}

/// Every chain id (`<account>/<region>`, or `<account>/<region>@<node>`), from the heads.
fn chains(app: &App) -> Result<Vec<String>, String> {
    let mut ids = Vec::new();
    each_head_page(app, "list the audit chains", &mut |_, page| {
        ids.extend(page.into_iter().map(|(id, _)| id));
        Ok(())
    })?;
    Ok(ids)
}

/// Hands every chain head to `visit`, a page at a time, each page in a read transaction of
/// its own: the sweep never holds one snapshot open over a long listing.
fn each_head_page(
    app: &App,
    what: &str,
    visit: &mut dyn FnMut(&dyn coffer_store::ReadTxn, Page) -> Result<(), StoreError>,
) -> Result<(), String> {
    const PAGE: usize = 1000;
    let mut pages = RecordPages::new(HEAD_KIND, "", PAGE);
    while !pages.finished() {
        app.store
            .read(&mut |tx| match pages.next_page(tx)? {
                Some(page) => visit(tx, page),
                None => Ok(()),
            })
            .map_err(|e| format!("cannot {what}: {e}"))?;
    }
    Ok(())
}

fn read_base(tx: &dyn coffer_store::ReadTxn, chain_id: &str) -> Result<Checkpoint, StoreError> {
    Ok(tx
        .record(BASE_KIND, chain_id)?
        .and_then(|b| Checkpoint::from_bytes(&b))
        .unwrap_or_else(Checkpoint::genesis))
}

/// Moves the oldest events of one chain older than `cutoff` (at most one file's worth) to
/// an archive. Returns how many and the file, or `None` when none are due.
fn cut_once(
    app: &App,
    key: &ChainKey,
    dir: &Path,
    chain_id: &str,
    cutoff: i64,
    per_file: usize,
) -> Result<Option<(usize, PathBuf)>, String> {
    if !chain_id.contains('/') {
        return Ok(None);
    }
    let mut base = Checkpoint::genesis();
    let mut due: Vec<(Record, Vec<u8>)> = Vec::new();
    let mut stopped: Option<String> = None;
    app.store
        .read(&mut |tx| {
            due.clear();
            stopped = None;
            base = read_base(tx, chain_id)?;
            if !base.is_authentic(chain_id, Some(key)) {
                stopped = Some("its archive checkpoint does not verify".into());
                return Ok(());
            }
            // Keys sort newest first: the records after the key of event base+N+1 are
            // events base+N, base+N-1, ..., down to base+1, the oldest kept.
            let bound = chain::chain_event_key(chain_id, base.seq + per_file as u64 + 1);
            let prefix = chain::chain_event_prefix(chain_id);
            let mut page = tx.records(EVENT_KIND, &prefix, Some(&bound), per_file)?;
            page.reverse();
            let (mut seq, mut hash) = (base.seq, base.hash.clone());
            for (stored_key, bytes) in page {
                let Some(record) = Record::from_bytes(&bytes) else {
                    stopped = Some(format!("event key {stored_key} does not hold a record"));
                    break;
                };
                if record.time_ms >= cutoff {
                    break;
                }
                if record.seq != seq + 1
                    || chain::seq_of_key(&stored_key) != Some(record.seq)
                    || record.prev_hash != hash
                    || !record.hash_is_valid(Some(key))
                {
                    stopped = Some(format!("event #{} does not verify", seq + 1));
                    break;
                }
                seq = record.seq;
                hash = record.hash.clone();
                due.push((record, bytes));
            }
            Ok(())
        })
        .map_err(|e| format!("cannot read the audit chain {chain_id}: {e}"))?;
    if let Some(why) = stopped {
        // Archiving past a damaged event would seal a checkpoint over it.
        tracing::error!(chain = %chain_id, problem = %why, "audit retention stopped before a damaged event; run `coffer audit verify`");
    }
    let Some((last, _)) = due.last() else { return Ok(None) };
    let end = Checkpoint::sealed(chain_id, last.seq, &last.hash, key);
    let first_seq = base.seq + 1;
    let path = dir.join(archive::file_name(chain_id, first_seq));
    write_archive(&path, chain_id, &base, &due, &end)
        .map_err(|e| format!("cannot write the audit archive {}: {e}", path.display()))?;
    let count = due.len();
    let base_bytes = base.to_bytes();
    let end_bytes = end.to_bytes();
    let mut raced = false;
    app.store
        .write(&mut |tx| {
            raced = false;
            let now = tx.record(BASE_KIND, chain_id)?;
            let unchanged = match &now {
                Some(bytes) => *bytes == base_bytes,
                None => base.is_genesis(),
            };
            if !unchanged {
                raced = true;
                return Err(StoreError::Aborted);
            }
            for (record, _) in &due {
                tx.delete_record(EVENT_KIND, &chain::chain_event_key(chain_id, record.seq))?;
            }
            tx.put_record(BASE_KIND, chain_id, &end_bytes)
        })
        .or_else(|e| match e {
            StoreError::Aborted if raced => Ok(()),
            e => Err(format!("cannot remove archived audit events of {chain_id}: {e}")),
        })?;
    if raced {
        // Another node cut this chain meanwhile; its file (same name) is the one kept.
        return Ok(None);
    }
    tracing::info!(chain = %chain_id, events = count, file = %path.display(), "archived old audit events");
    Ok(Some((count, path)))
}

/// Writes an archive durably: a temporary file (0600) synced, renamed into place, and the
/// directory synced, so a file that exists under its name is whole.
fn write_archive(
    path: &Path,
    chain_id: &str,
    from: &Checkpoint,
    records: &[(Record, Vec<u8>)],
    end: &Checkpoint,
) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let tmp = path.with_extension("jsonl.tmp");
    let _ = std::fs::remove_file(&tmp);
    let file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    let mut out = std::io::BufWriter::new(file);
    out.write_all(&archive::header_line(chain_id, from))?;
    out.write_all(b"\n")?;
    // Archives hold the JSON form, one record a line, whatever form the store held.
    for (record, _) in records {
        out.write_all(&record.to_bytes())?;
        out.write_all(b"\n")?;
    }
    out.write_all(&archive::trailer_line(end, records.len() as u64))?;
    out.write_all(b"\n")?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Parses a retention period: a number with a unit `s`, `m`, `h` or `d` (`90d`, `12h`), or
/// `off` (kept forever).
pub fn parse_period(text: &str) -> Result<Option<Duration>, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let bad =
        || format!("`{text}` is not a period: use a number with s, m, h or d (e.g. 90d), or off");
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    if n == 0 {
        return Err(format!("`{text}`: a retention period must be longer than zero (or off)"));
    }
    n.checked_mul(seconds).map(|s| Some(Duration::from_secs(s))).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, KeyRing};
    use coffer_audit::chain::{HEAD_KIND, Head, Verifier};
    use coffer_core::Scope;
    use coffer_crypto::MasterKey;
    use coffer_store::MemoryStore;
    use std::sync::Arc;

    const NOW: i64 = 1_800_000_000_000;

    /// An app on a memory store whose trail (one chain) has `old` events an hour old, then
    /// `recent` events of now; archives of at most 3 events go to `dir`.
    fn trail(dir: &Path, old: usize, recent: usize) -> (Arc<crate::App>, ChainKey) {
        let store = Arc::new(MemoryStore::new());
        let keys = KeyRing::open(MasterKey::generate(), store.as_ref()).unwrap();
        let config = Config {
            audit_retention: Settings {
                max_age: Some(Duration::from_secs(60)),
                archive_dir: Some(dir.to_path_buf()),
                events_per_file: 3,
            },
            ..Config::default()
        };
        let app = crate::App::new(store, keys, config);
        let key = ChainKey::new(&[5; 32]);
        app.audit.set_chain_key(key.clone());
        for i in 0..old + recent {
            let when = if i < old { NOW - 3_600_000 + i as i64 } else { NOW + i as i64 };
            append(&app, &format!("s{i}"), when);
        }
        (app, key)
    }

    /// Appends a service event about secret `name`, at `when`, to `app`'s chain of the scope.
    fn append(app: &crate::App, name: &str, when: i64) {
        let scope = Scope::new("111122223333", "us-east-1");
        app.write_unrecorded(|tx| {
            crate::audit::record_service_event(
                app,
                tx,
                &scope,
                "secretsmanager.amazonaws.com",
                "DeleteSecret",
                &format!("arn:aws:secretsmanager:us-east-1:111122223333:secret:{name}"),
                when,
            )
        })
        .unwrap();
    }

    /// `verify` of what the store keeps of the scope's chain, from its base.
    fn verify_store(app: &crate::App, key: &ChainKey) -> Result<u64, String> {
        verify_chain(app, key, "111122223333/us-east-1")
    }

    /// `verify` of what the store keeps of chain `chain_id`, from its base.
    fn verify_chain(app: &crate::App, key: &ChainKey, chain_id: &str) -> Result<u64, String> {
        let mut result = Err(String::new());
        app.store
            .read(&mut |tx| {
                let head: Option<Head> =
                    tx.record(HEAD_KIND, chain_id)?.and_then(|b| serde_json::from_slice(&b).ok());
                let base = tx.record(BASE_KIND, chain_id)?.and_then(|b| Checkpoint::from_bytes(&b));
                let mut v = Verifier::new(chain_id, head, Some(key.clone())).with_base(base);
                for (k, bytes) in
                    tx.records(EVENT_KIND, &chain::chain_event_prefix(chain_id), None, 1000)?
                {
                    v.push(&k, &bytes);
                }
                result = v.finish().map_err(|b| b.to_string());
                Ok(())
            })
            .unwrap();
        result
    }

    #[test]
    fn old_events_go_to_linked_files_of_bounded_size_and_recent_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let (app, key) = trail(dir.path(), 7, 2);
        assert_eq!(verify_store(&app, &key), Ok(9));
        let outcome = run_round(&app, NOW).unwrap();
        assert_eq!(outcome.archived, 7);
        assert_eq!(outcome.files.len(), 3, "{:?}", outcome.files);
        // The two recent events stay, and verify from the cut.
        assert_eq!(verify_store(&app, &key), Ok(2));
        // Each file verifies alone, holds at most 3 events, and continues the one before.
        let mut from = Checkpoint::genesis();
        for file in &outcome.files {
            let bytes = std::fs::read(file).unwrap();
            let v = archive::verify_archive(bytes.split(|b| *b == b'\n'), Some(&key)).unwrap();
            assert!(v.events <= 3);
            assert_eq!(v.from, from);
            from = v.end;
        }
        assert_eq!(from.seq, 7);
        // Nothing more is due: a second round does nothing.
        assert_eq!(run_round(&app, NOW).unwrap(), Outcome::default());
        // Once the recent events age too, they follow, and the chain is wholly archived.
        let later = run_round(&app, NOW + 3_600_000).unwrap();
        assert_eq!(later.archived, 2);
        assert_eq!(verify_store(&app, &key), Ok(0));
    }

    /// Tidy 10: a node's chain (`<account>/<region>@<node>`) whose node is gone (nothing
    /// appends to it any more) ages out like every other chain: its old events go to
    /// archives and leave the store, and what stays (its head and base, as for every cut
    /// chain) still verifies, so a node coming back under that name continues it.
    #[test]
    fn the_chain_of_a_gone_node_is_cut_like_any_other_and_still_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let (live, key) = trail(dir.path(), 0, 2);
        let gone = crate::App::new(
            live.store.clone(),
            KeyRing::open(MasterKey::generate(), &MemoryStore::new()).unwrap(),
            live.config.clone(),
        );
        gone.audit.set_chain_key(key.clone());
        gone.audit.set_chain_node("gone-host:8080");
        for i in 0..4 {
            append(&gone, "g", NOW - 3_600_000 + i);
        }
        let node_chain = "111122223333/us-east-1@gone-host:8080";
        assert_eq!(verify_chain(&live, &key, node_chain), Ok(4));
        assert_eq!(measure(&live).unwrap(), 6);
        // The live node's sweep cuts the gone node's chain; its own recent events stay.
        let outcome = run_round(&live, NOW).unwrap();
        assert_eq!(outcome.archived, 4);
        assert_eq!(verify_chain(&live, &key, node_chain), Ok(0));
        assert_eq!(verify_store(&live, &key), Ok(2));
        assert_eq!(measure(&live).unwrap(), 2);
        let mut from = Checkpoint::genesis();
        for file in &outcome.files {
            let bytes = std::fs::read(file).unwrap();
            let v = archive::verify_archive(bytes.split(|b| *b == b'\n'), Some(&key)).unwrap();
            assert_eq!((v.chain.as_str(), &v.from), (node_chain, &from));
            from = v.end;
        }
        assert_eq!(from.seq, 4);
        // The node comes back under its name: its chain continues after the cut.
        append(&gone, "g", NOW);
        assert_eq!(verify_chain(&live, &key, node_chain), Ok(1));
    }

    /// The sweep's listing of chain heads goes on past its first page: every chain's
    /// events are counted (and so cut), not only those of the first thousand chains.
    #[test]
    fn every_chain_is_counted_past_the_first_page_of_heads() {
        let dir = tempfile::tempdir().unwrap();
        let (app, _) = trail(dir.path(), 0, 1);
        app.store
            .write(&mut |tx| {
                for n in 0..1500 {
                    let chain = chain::node_chain_id("1", "r", Some(&format!("n{n:04}")));
                    let head = chain::Head { seq: 2, hash: chain::GENESIS.to_string(), mac: None };
                    tx.put_record(HEAD_KIND, &chain, &serde_json::to_vec(&head).unwrap())?;
                }
                Ok(())
            })
            .unwrap();
        assert_eq!(chains(&app).unwrap().len(), 1501);
        assert_eq!(measure(&app).unwrap(), 1 + 1500 * 2);
    }

    #[test]
    fn retention_off_moves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (app, key) = trail(dir.path(), 4, 0);
        let mut off = app.config.audit_retention.clone();
        off.max_age = None;
        let app_off = crate::App::new(
            app.store.clone(),
            KeyRing::open(MasterKey::generate(), &MemoryStore::new()).unwrap(),
            Config { audit_retention: off, ..Config::default() },
        );
        app_off.audit.set_chain_key(key.clone());
        assert_eq!(run_round(&app_off, NOW).unwrap(), Outcome::default());
        assert_eq!(verify_store(&app, &key), Ok(4));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn periods_parse_with_units_or_off() {
        assert_eq!(parse_period("90d").unwrap(), Some(Duration::from_secs(90 * 86_400)));
        assert_eq!(parse_period("2s").unwrap(), Some(Duration::from_secs(2)));
        assert_eq!(parse_period("12h").unwrap(), Some(Duration::from_secs(12 * 3600)));
        assert_eq!(parse_period("5m").unwrap(), Some(Duration::from_secs(300)));
        assert_eq!(parse_period("off").unwrap(), None);
        for bad in ["", "d", "90", "90y", "-1d", "0d", "1.5d", "99999999999999999999d"] {
            assert!(parse_period(bad).is_err(), "{bad}");
        }
    }
}
