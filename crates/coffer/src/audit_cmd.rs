//! `coffer audit verify`: walks every audit chain in a store and names the first event
//! that was changed, removed or reordered. It needs the master key: it unwraps the audit
//! chain key with it, and checks every keyed event and every chain head under that key,
//! so that dropping the newest events and rewriting a head is seen.
//!
//! A chain whose oldest events were moved to archives by retention is checked from its
//! base (the checkpoint of the last cut). `--archives PATH` also checks archive files (a
//! file, or every `*.jsonl` in a directory), each on its own and, per chain, linked to one
//! another; with a directory, its archives must cover each chain from its first event to the
//! store's base, so a removed archive is seen too.

use clap::{Args, Subcommand};
use coffer_audit::archive::{self, BASE_KIND, Checkpoint};
use coffer_audit::chain::{ChainKey, EVENT_KIND, HEAD_KIND, Head, Verifier};
use coffer_store::RecordPages;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Check the hash chains of the whole audit trail (every account and region).
    Verify(VerifyArgs),
}

#[derive(Args, Debug)]
struct VerifyArgs {
    #[command(flatten)]
    store: crate::store_select::StoreArgs,
    #[command(flatten)]
    key: crate::master_arg::MasterKeyArg,
    /// Also check these audit archives: a file, or a directory of them (repeatable). A
    /// directory must hold every archive of each chain that was cut.
    #[arg(long, value_name = "PATH")]
    archives: Vec<PathBuf>,
}

pub fn run(args: AuditArgs) -> Result<(), String> {
    match args.command {
        AuditCommand::Verify(store) => verify(store),
    }
}

/// The chain a stored event key belongs to: `<account>/<region>`.
fn chain_of(key: &str) -> &str {
    key.rsplit_once('/').map_or(key, |(chain, _)| chain)
}

fn verify(args: VerifyArgs) -> Result<(), String> {
    let master = args.key.load(&args.store.data_dir)?;
    let spec = args.store.spec()?;
    let store = spec.open()?;
    const PAGE: usize = 1000;
    let mut outcome: Result<(u64, usize), String> = Ok((0, 0));
    let mut chain_key: Option<ChainKey> = None;
    let mut key_failure: Option<String> = None;
    let mut bases: BTreeMap<String, Checkpoint> = BTreeMap::new();
    store
        .read(&mut |tx| {
            chain_key = match coffer_server::audit::load_chain_key(&master, tx) {
                Ok(key) => key,
                Err(e) => {
                    key_failure = Some(e);
                    return Ok(());
                }
            };
            // Every chain head, by chain.
            let mut heads: BTreeMap<String, Option<Head>> = BTreeMap::new();
            let mut pages = RecordPages::new(HEAD_KIND, "", PAGE);
            while let Some(page) = pages.next_page(tx)? {
                for (key, bytes) in page {
                    let head = serde_json::from_slice(&bytes).ok();
                    heads.insert(key, head);
                }
            }
            // Each cut chain's base: its oldest event kept follows it.
            bases.clear();
            let mut pages = RecordPages::new(BASE_KIND, "", PAGE);
            while let Some(page) = pages.next_page(tx)? {
                for (key, bytes) in page {
                    // Unreadable bytes stand for a base that cannot verify.
                    let base = Checkpoint::from_bytes(&bytes).unwrap_or(Checkpoint {
                        seq: u64::MAX,
                        hash: String::new(),
                        mac: None,
                    });
                    bases.insert(key, base);
                }
            }
            // Events come grouped by chain, each chain newest first.
            let mut current: Option<(String, Verifier)> = None;
            let mut total = 0u64;
            let mut chains = 0usize;
            let mut problems: Vec<String> = Vec::new();
            let mut close = |v: Option<(String, Verifier)>, total: &mut u64, chains: &mut usize| {
                if let Some((_, verifier)) = v {
                    *chains += 1;
                    match verifier.finish() {
                        Ok(n) => *total += n,
                        Err(broken) => problems.push(broken.to_string()),
                    }
                }
            };
            let mut pages = RecordPages::new(EVENT_KIND, "", PAGE);
            while let Some(page) = pages.next_page(tx)? {
                for (key, bytes) in &page {
                    let chain = chain_of(key).to_string();
                    if current.as_ref().is_none_or(|(c, _)| *c != chain) {
                        close(current.take(), &mut total, &mut chains);
                        let head = heads.remove(&chain).flatten();
                        let base = bases.get(&chain).cloned();
                        current = Some((
                            chain.clone(),
                            Verifier::new(&chain, head, chain_key.clone()).with_base(base),
                        ));
                    }
                    if let Some((_, v)) = current.as_mut() {
                        v.push(key, bytes);
                    }
                }
            }
            close(current.take(), &mut total, &mut chains);
            // Heads whose chain has no event left at all.
            for (chain, head) in std::mem::take(&mut heads) {
                let base = bases.get(&chain).cloned();
                let verifier = Verifier::new(&chain, head, chain_key.clone()).with_base(base);
                close(Some((chain, verifier)), &mut total, &mut chains);
            }
            outcome =
                if problems.is_empty() { Ok((total, chains)) } else { Err(problems.join("\n")) };
            Ok(())
        })
        .map_err(|e| format!("cannot read the store: {e}"))?;
    if let Some(failure) = key_failure {
        return Err(failure);
    }
    let (events, chains) =
        outcome.map_err(|problems| format!("the audit trail was tampered with:\n{problems}"))?;
    println!("audit trail intact: {events} events in {chains} chains");
    let cut = bases.values().filter(|b| !b.is_genesis()).count();
    if args.archives.is_empty() && cut > 0 {
        println!(
            "note: {cut} chains were cut to archives by retention; the kept part was checked from \
             each cut, the archived events were not (add --archives DIR)"
        );
    }
    if !args.archives.is_empty() {
        let (archived, files) = verify_archives(&args.archives, chain_key.as_ref(), &bases)
            .map_err(|problems| format!("the audit archives do not verify:\n{problems}"))?;
        println!("audit archives intact: {archived} events in {files} files");
    }
    if chain_key.is_none() && chains > 0 {
        println!(
            "note: these chains are not keyed yet (written before keyed chains), so only their \
             unkeyed hashes were checked; start the server once to key them"
        );
    }
    Ok(())
}

/// Checks every archive in `paths`, each alone, then per chain their links to one another
/// and to the store's base. Returns the events and files checked, or every problem.
fn verify_archives(
    paths: &[PathBuf],
    key: Option<&ChainKey>,
    bases: &BTreeMap<String, Checkpoint>,
) -> Result<(u64, usize), String> {
    let mut files: Vec<PathBuf> = Vec::new();
    let mut complete = false;
    for path in paths {
        if path.is_dir() {
            complete = true;
            let entries = std::fs::read_dir(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    let mut problems: Vec<String> = Vec::new();
    let mut by_chain: BTreeMap<String, Vec<(PathBuf, archive::Verified)>> = BTreeMap::new();
    let mut events = 0u64;
    for file in &files {
        match verify_file(file, key) {
            Ok(verified) => {
                events += verified.events;
                by_chain.entry(verified.chain.clone()).or_default().push((file.clone(), verified));
            }
            Err(problem) => problems.push(format!("{}: {problem}", file.display())),
        }
    }
    for (chain, list) in &mut by_chain {
        list.sort_by_key(|(_, v)| v.from.seq);
        for pair in list.windows(2) {
            let ((older_path, older), (newer_path, newer)) = (&pair[0], &pair[1]);
            if older.end != newer.from {
                problems.push(format!(
                    "chain {chain}: {} (events #{} to #{}) does not continue {} (events #{} to #{}): an archive is missing or was replaced",
                    newer_path.display(),
                    newer.from.seq + 1,
                    newer.end.seq,
                    older_path.display(),
                    older.from.seq + 1,
                    older.end.seq
                ));
            }
        }
        let (newest_path, newest) = list.last().expect("a chain listed has an archive");
        match bases.get(chain) {
            Some(base) if base.seq == newest.end.seq && *base != newest.end => problems.push(
                format!("chain {chain}: {} ends at another cut than the store's", newest_path.display()),
            ),
            Some(base) if complete && base.seq != newest.end.seq => problems.push(format!(
                "chain {chain}: the archives end at event #{}, the store was cut at #{}: an archive is missing",
                newest.end.seq, base.seq
            )),
            None if complete => problems.push(format!(
                "chain {chain}: archived events but the store has no cut for the chain"
            )),
            _ => {}
        }
        let (oldest_path, oldest) = &list[0];
        if complete && !oldest.from.is_genesis() {
            problems.push(format!(
                "chain {chain}: the oldest archive, {}, starts at event #{}: the archives before it are missing",
                oldest_path.display(),
                oldest.from.seq + 1
            ));
        }
    }
    if complete {
        for (chain, base) in bases {
            if !base.is_genesis() && !by_chain.contains_key(chain) {
                problems.push(format!(
                    "chain {chain}: the store was cut at event #{} but no archive of it was given",
                    base.seq
                ));
            }
        }
    }
    if problems.is_empty() { Ok((events, files.len())) } else { Err(problems.join("\n")) }
}

/// One archive file checked alone.
fn verify_file(path: &Path, key: Option<&ChainKey>) -> Result<archive::Verified, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    archive::verify_archive(lines, key).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_keys_name_their_chain() {
        let key = coffer_audit::chain::event_key("111122223333", "us-east-1", 7);
        assert_eq!(chain_of(&key), "111122223333/us-east-1");
    }
}
