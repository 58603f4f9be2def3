//! Audit archives: the oldest part of a chain, cut from the store into a JSON-lines file
//! that can be verified on its own, with the chain still verifiable across the cut.
//!
//! A cut is marked by a [`Checkpoint`]: the sequence number and hash of the newest event
//! moved out, with an HMAC under the [`ChainKey`] binding the chain id, the number and the
//! hash (domain-separated from a head's MAC, so neither can stand in for the other). The
//! store keeps the checkpoint of its latest cut as the chain's *base* (record kind
//! [`BASE_KIND`]): its oldest remaining event must follow it. Each archive file starts with
//! the checkpoint it continues from (the previous cut, or the chain's genesis) and ends
//! with the checkpoint of its own cut, so that
//!
//! * one file is checked alone: every record's hash and link from its first checkpoint to
//!   its last, and both checkpoints' MACs (dropping, changing or reordering an event, or
//!   truncating the file, is seen without the key to re-seal it);
//! * consecutive files link: one file's last checkpoint is the next file's first, and the
//!   newest file's last checkpoint is the store's base.
//!
//! The file layout (one JSON object per line):
//!
//! ```text
//! {"cofferAuditArchive":1,"chain":"<account>/<region>","from":{"seq":S,"hash":"..","mac":".."}}
//! <the stored bytes of record S+1>
//! ...
//! <the stored bytes of record E>
//! {"end":{"seq":E,"hash":"..","mac":".."},"events":E-S}
//! ```

use crate::chain::{ChainKey, GENESIS, Record, hex_into, hex_matches};
use aws_lc_rs::hmac;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The store record kind of each chain's base: the checkpoint of its latest cut.
pub const BASE_KIND: &str = "audit.base";
/// The domain tag of a checkpoint's MAC.
const CUT_DOMAIN: &str = "coffer-audit-cut-v1";
/// The archive format version.
pub const FORMAT: u32 = 1;

/// Where a chain was cut: the newest event moved to an archive (or seq 0, the genesis).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: u64,
    pub hash: String,
    /// HMAC-SHA256 (hex) under the chain key of the chain id, `seq` and `hash`; absent
    /// only on the genesis checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

impl Checkpoint {
    /// The start of every chain: nothing before event 1.
    pub fn genesis() -> Checkpoint {
        Checkpoint { seq: 0, hash: GENESIS.to_string(), mac: None }
    }

    pub fn is_genesis(&self) -> bool {
        self.seq == 0 && self.hash == GENESIS
    }

    fn compute_mac(key: &ChainKey, chain: &str, seq: u64, hash: &str) -> String {
        let mut ctx = hmac::Context::with_key(&key.0);
        ctx.update(format!("{CUT_DOMAIN}\n{chain}\n{seq}\n{hash}").as_bytes());
        let mut hex = String::with_capacity(64);
        hex_into(ctx.sign().as_ref(), &mut hex);
        hex
    }

    /// The checkpoint of a cut of `chain` after the record with `seq` and `hash`.
    pub fn sealed(chain: &str, seq: u64, hash: &str, key: &ChainKey) -> Checkpoint {
        Checkpoint {
            seq,
            hash: hash.to_string(),
            mac: Some(Checkpoint::compute_mac(key, chain, seq, hash)),
        }
    }

    /// Whether this checkpoint is the genesis or was sealed for `chain` under `key`.
    /// Without a key, only the genesis is authentic.
    pub fn is_authentic(&self, chain: &str, key: Option<&ChainKey>) -> bool {
        if self.is_genesis() {
            return true;
        }
        match (key, &self.mac) {
            (Some(key), Some(mac)) => {
                hex_matches(mac, &Checkpoint::compute_mac(key, chain, self.seq, &self.hash))
            }
            _ => false,
        }
    }

    /// The stored or written bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("checkpoints serialize")
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Checkpoint> {
        serde_json::from_slice(bytes).ok()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Header {
    coffer_audit_archive: u32,
    chain: String,
    from: Checkpoint,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Trailer {
    end: Checkpoint,
    events: u64,
}

/// The first line of an archive of `chain` continuing from `from` (without its newline).
pub fn header_line(chain: &str, from: &Checkpoint) -> Vec<u8> {
    serde_json::to_vec(&Header {
        coffer_audit_archive: FORMAT,
        chain: chain.to_string(),
        from: from.clone(),
    })
    .expect("headers serialize")
}

/// The last line of an archive ending at `end` and holding `events` events.
pub fn trailer_line(end: &Checkpoint, events: u64) -> Vec<u8> {
    serde_json::to_vec(&Trailer { end: end.clone(), events }).expect("trailers serialize")
}

/// The file name of the archive of `chain` whose first event is `first_seq`: one name per
/// cut, so a cut retried after a crash rewrites the same file. The `/` between account and
/// region becomes `_`; any other byte outside `[A-Za-z0-9-]` is written `%XX`, so two
/// chains never share a name (a region is whatever a client signed with) and no name
/// holds a path.
pub fn file_name(chain: &str, first_seq: u64) -> String {
    let mut safe = String::with_capacity(chain.len());
    for b in chain.bytes() {
        match b {
            b'/' => safe.push('_'),
            b if b.is_ascii_alphanumeric() || b == b'-' => safe.push(char::from(b)),
            b => safe.push_str(&format!("%{b:02X}")),
        }
    }
    format!("audit-{safe}-{first_seq:020}.jsonl")
}

/// What one verified archive holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub chain: String,
    pub from: Checkpoint,
    pub end: Checkpoint,
    pub events: u64,
}

/// Why an archive does not verify: the line (1-based) and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveError {
    pub line: usize,
    pub problem: String,
}

impl fmt::Display for ArchiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.problem)
    }
}

fn fail<T>(line: usize, problem: impl Into<String>) -> Result<T, ArchiveError> {
    Err(ArchiveError { line, problem: problem.into() })
}

/// Checks one archive, given its lines in order (without newlines; a trailing empty line
/// is ignored): the header, every record's hash and link, the trailer, and both
/// checkpoints' MACs under `key`. Keyed records and checkpoints cannot be checked without
/// the key and fail.
pub fn verify_archive<'a>(
    lines: impl IntoIterator<Item = &'a [u8]>,
    key: Option<&ChainKey>,
) -> Result<Verified, ArchiveError> {
    let mut all: Vec<&[u8]> = lines.into_iter().collect();
    // The newline that ends the last line leaves one empty line; no other is allowed.
    if all.last().is_some_and(|l| l.is_empty()) {
        all.pop();
    }
    let count = all.len();
    let mut lines = all.into_iter().enumerate().map(|(i, l)| (i + 1, l));
    let Some((_, first)) = lines.next() else { return fail(1, "the file is empty") };
    let Ok(header) = serde_json::from_slice::<Header>(first) else {
        return fail(1, "not a Coffer audit archive header");
    };
    if header.coffer_audit_archive != FORMAT {
        return fail(1, format!("unknown archive format {}", header.coffer_audit_archive));
    }
    let chain = header.chain;
    if !header.from.is_authentic(&chain, key) {
        return fail(
            1,
            "the starting checkpoint does not verify under the audit chain key (forged, or the key is missing)",
        );
    }
    let (mut seq, mut hash) = (header.from.seq, header.from.hash.clone());
    for (number, line) in lines {
        if number == count {
            // Records are consecutive from the start, so this is how many were read.
            let events = seq - header.from.seq;
            let Ok(trailer) = serde_json::from_slice::<Trailer>(line) else {
                return fail(number, "the archive has no end checkpoint (truncated?)");
            };
            if trailer.events != events {
                return fail(
                    number,
                    format!("the end says {} events, the file holds {events}", trailer.events),
                );
            }
            if trailer.end.seq != seq || trailer.end.hash != hash {
                return fail(number, "the end checkpoint does not match the last event");
            }
            if !trailer.end.is_authentic(&chain, key) {
                return fail(
                    number,
                    "the end checkpoint does not verify under the audit chain key (forged, or the key is missing)",
                );
            }
            return Ok(Verified { chain, from: header.from, end: trailer.end, events });
        }
        let Some(record) = Record::from_bytes(line) else {
            return fail(number, "not an audit record");
        };
        let id = record.event_id().unwrap_or("(none)").to_string();
        if record.seq != seq + 1 {
            return fail(
                number,
                format!(
                    "event #{} (eventID {id}) found where #{} belongs: events removed or reordered",
                    record.seq,
                    seq + 1
                ),
            );
        }
        if record.prev_hash != hash {
            return fail(
                number,
                format!(
                    "event #{} (eventID {id}) does not link to the one before it: an event was changed",
                    record.seq
                ),
            );
        }
        if record.v != 1 && key.is_none() {
            return fail(
                number,
                format!("event #{} is keyed but the audit chain key is not available", record.seq),
            );
        }
        if !record.hash_is_valid(key) {
            return fail(number, format!("event #{} (eventID {id}) was changed", record.seq));
        }
        seq = record.seq;
        hash = record.hash;
    }
    fail(1, "the archive has no end checkpoint (truncated?)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::Head;
    use crate::event::{Event, UserIdentity};

    const CHAIN: &str = "111122223333/us-east-1";

    fn key() -> ChainKey {
        ChainKey::new(&[7; 32])
    }

    fn event(n: u64) -> Event {
        Event {
            event_version: "1.08".into(),
            user_identity: UserIdentity { kind: "Root".into(), ..Default::default() },
            event_time: "2024-05-01T12:00:00Z".into(),
            event_source: "secretsmanager.amazonaws.com".into(),
            event_name: "GetSecretValue".into(),
            aws_region: "us-east-1".into(),
            source_ip_address: "127.0.0.1".into(),
            user_agent: "test".into(),
            error_code: None,
            error_message: None,
            request_parameters: serde_json::json!({"secretId": format!("s{n}")}),
            response_elements: serde_json::Value::Null,
            request_id: None,
            event_id: format!("event-{n}"),
            read_only: true,
            resources: vec![],
            event_type: "AwsApiCall".into(),
            management_event: true,
            recipient_account_id: "111122223333".into(),
            event_category: "Management".into(),
            session_credential_from_console: None,
        }
    }

    /// Records 1..=n, oldest first.
    fn records(n: u64) -> Vec<Record> {
        let mut head: Option<Head> = None;
        (1..=n)
            .map(|i| {
                let r = Record::seal(head.as_ref(), i as i64, &event(i), Some(&key()));
                head = Some(r.head());
                r
            })
            .collect()
    }

    /// The lines of an archive of `records` continuing from `from`.
    fn archive(from: &Checkpoint, records: &[Record]) -> Vec<Vec<u8>> {
        let last = records.last().unwrap();
        let end = Checkpoint::sealed(CHAIN, last.seq, &last.hash, &key());
        let mut lines = vec![header_line(CHAIN, from)];
        lines.extend(records.iter().map(Record::to_bytes));
        lines.push(trailer_line(&end, records.len() as u64));
        lines
    }

    fn check(lines: &[Vec<u8>]) -> Result<Verified, ArchiveError> {
        verify_archive(lines.iter().map(Vec::as_slice), Some(&key()))
    }

    #[test]
    fn consecutive_archives_verify_alone_and_link() {
        let all = records(10);
        let first = archive(&Checkpoint::genesis(), &all[..4]);
        let a = check(&first).unwrap();
        assert_eq!((a.from.seq, a.end.seq, a.events), (0, 4, 4));
        let second = archive(&a.end, &all[4..]);
        let b = check(&second).unwrap();
        assert_eq!((b.from.clone(), b.end.seq, b.events), (a.end, 10, 6));
        // A trailing newline's empty line is ignored; anything after the end is not.
        let mut with_newline = second.clone();
        with_newline.push(Vec::new());
        assert_eq!(check(&with_newline).unwrap(), b);
        let mut appended = with_newline.clone();
        appended.push(all[9].to_bytes());
        assert!(check(&appended).is_err());
    }

    #[test]
    fn changed_dropped_reordered_or_truncated_archives_fail() {
        let all = records(6);
        let from = Checkpoint::sealed(CHAIN, all[1].seq, &all[1].hash, &key());
        let good = archive(&from, &all[2..]);
        assert!(check(&good).is_ok());

        let mut changed = good.clone();
        changed[2] = String::from_utf8(changed[2].clone()).unwrap().replace("s4", "s9").into();
        assert_eq!(check(&changed).unwrap_err().line, 3);

        let mut dropped = good.clone();
        dropped.remove(1);
        assert!(check(&dropped).unwrap_err().problem.contains("removed"));

        let mut swapped = good.clone();
        swapped.swap(1, 2);
        assert_eq!(check(&swapped).unwrap_err().line, 2);

        let truncated = &good[..good.len() - 1];
        assert!(check(truncated).unwrap_err().problem.contains("end checkpoint"));

        // The oldest events dropped and the start re-pointed without the key.
        let mut restarted = good.clone();
        restarted.remove(1);
        let unsealed = Checkpoint { seq: all[2].seq, hash: all[2].hash.clone(), mac: None };
        restarted[0] = header_line(CHAIN, &unsealed);
        assert_eq!(check(&restarted).unwrap_err().line, 1);
        let other_key =
            Checkpoint::sealed(CHAIN, all[2].seq, &all[2].hash, &ChainKey::new(&[1; 32]));
        restarted[0] = header_line(CHAIN, &other_key);
        assert_eq!(check(&restarted).unwrap_err().line, 1);

        // The newest events dropped and the end re-pointed without the key.
        let mut shortened = good.clone();
        let n = shortened.len();
        shortened.remove(n - 2);
        let r = &all[4];
        shortened[n - 2] =
            trailer_line(&Checkpoint { seq: r.seq, hash: r.hash.clone(), mac: None }, 3);
        assert!(check(&shortened).unwrap_err().problem.contains("chain key"));

        // Without the key, keyed archives cannot pass.
        assert!(verify_archive(good.iter().map(Vec::as_slice), None).is_err());
    }

    #[test]
    fn a_checkpoint_binds_its_chain_and_is_not_a_head_mac() {
        let cp = Checkpoint::sealed(CHAIN, 3, &"ab".repeat(32), &key());
        assert!(cp.is_authentic(CHAIN, Some(&key())));
        assert!(!cp.is_authentic("111122223333/eu-west-1", Some(&key())));
        assert!(!cp.is_authentic(CHAIN, None));
        let head = Head { seq: 3, hash: "ab".repeat(32), mac: None }.sealed(CHAIN, &key());
        assert_ne!(head.mac, cp.mac);
        assert!(Checkpoint::genesis().is_authentic(CHAIN, None));
    }

    #[test]
    fn file_names_sort_by_first_event_and_hold_no_path() {
        assert_eq!(file_name(CHAIN, 42), "audit-111122223333_us-east-1-00000000000000000042.jsonl");
        assert!(!file_name("../x/..", 1).contains('/'));
        // Chains that differ only in characters outside the safe set keep their own names.
        assert_ne!(file_name("111122223333/x_y", 1), file_name("111122223333/x.y", 1));
        assert_ne!(file_name("111122223333/x_y", 1), file_name("111122223333/x/y", 1));
        assert!(file_name(CHAIN, 9) < file_name(CHAIN, 10));
    }
}
