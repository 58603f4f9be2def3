//! `coffer audit verify`: walks every audit chain in a store and names the first event
//! that was changed, removed or reordered. It needs the master key: it unwraps the audit
//! chain key with it, and checks every keyed event and every chain head under that key,
//! so that dropping the newest events and rewriting a head is seen.

use clap::{Args, Subcommand};
use coffer_audit::chain::{ChainKey, EVENT_KIND, HEAD_KIND, Head, Verifier};
use std::collections::BTreeMap;

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
            let mut after: Option<String> = None;
            loop {
                let page = tx.records(HEAD_KIND, "", after.as_deref(), PAGE)?;
                for (key, bytes) in &page {
                    heads.insert(key.clone(), serde_json::from_slice(bytes).ok());
                }
                match page.last() {
                    Some((key, _)) if page.len() == PAGE => after = Some(key.clone()),
                    _ => break,
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
            let mut after: Option<String> = None;
            loop {
                let page = tx.records(EVENT_KIND, "", after.as_deref(), PAGE)?;
                for (key, bytes) in &page {
                    let chain = chain_of(key).to_string();
                    if current.as_ref().is_none_or(|(c, _)| *c != chain) {
                        close(current.take(), &mut total, &mut chains);
                        let head = heads.remove(&chain).flatten();
                        current =
                            Some((chain.clone(), Verifier::new(&chain, head, chain_key.clone())));
                    }
                    if let Some((_, v)) = current.as_mut() {
                        v.push(key, bytes);
                    }
                }
                match page.last() {
                    Some((key, _)) if page.len() == PAGE => after = Some(key.clone()),
                    _ => break,
                }
            }
            close(current.take(), &mut total, &mut chains);
            // Heads whose chain has no event left at all.
            for (chain, head) in std::mem::take(&mut heads) {
                let verifier = Verifier::new(&chain, head, chain_key.clone());
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
    if chain_key.is_none() && chains > 0 {
        println!(
            "note: these chains are not keyed yet (written before keyed chains), so only their \
             unkeyed hashes were checked; start the server once to key them"
        );
    }
    Ok(())
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
