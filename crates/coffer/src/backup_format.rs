//! The backup file format: its lines, and the reader a restore checks a file with
//! (structure, item count and MAC) in constant memory. Kept apart from `backup.rs`, and
//! free of the CLI, so the fuzz target `fuzz/fuzz_targets/backup.rs` compiles this very
//! file (`#[path]`) and feeds it any bytes.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use coffer_core::model::{SecretMeta, VersionMeta};
use coffer_core::snapshot::{SealedValue, SnapshotItem};
use coffer_crypto::{MacKey, MasterKey};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Read};

/// The format name in the header; anything else is not a Coffer backup.
pub(crate) const FORMAT: &str = "coffer-backup";
/// The version of the file format this build writes: authenticated.
pub(crate) const FORMAT_VERSION: u32 = 2;
/// The version written by older builds, without a MAC.
pub(crate) const UNAUTHENTICATED_VERSION: u32 = 1;
/// The HKDF label of the backup MAC key.
pub(crate) const MAC_LABEL: &[u8] = b"coffer backup v2";
/// One line of a backup file.
// Read and written one at a time: the size of the larger variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Line {
    Header {
        format: String,
        version: u32,
        created_ms: i64,
        source: String,
    },
    Secret(SecretMeta),
    Version {
        arn: String,
        meta: VersionMeta,
        value: String,
    },
    WrappedKey {
        key_id: String,
        wrapped: String,
    },
    Setting {
        name: String,
        value: String,
    },
    Record {
        kind: String,
        key: String,
        value: String,
    },
    End {
        items: u64,
        /// HMAC-SHA256 (hex) of every byte before this line (version 2).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mac: Option<String>,
    },
}
impl Line {
    pub(crate) fn of(item: SnapshotItem) -> Line {
        match item {
            SnapshotItem::Secret(meta) => Line::Secret(meta),
            SnapshotItem::Version { arn, meta, value } => {
                Line::Version { arn, meta, value: B64.encode(&value.0) }
            }
            SnapshotItem::WrappedKey { key_id, wrapped } => {
                Line::WrappedKey { key_id, wrapped: B64.encode(wrapped) }
            }
            SnapshotItem::Setting { name, value } => {
                Line::Setting { name, value: B64.encode(value) }
            }
            SnapshotItem::Record { kind, key, value } => {
                Line::Record { kind, key, value: B64.encode(value) }
            }
        }
    }

    /// The item on this line; `None` for the header and trailer.
    pub(crate) fn item(self) -> Result<Option<SnapshotItem>, String> {
        let bytes = |text: &str| B64.decode(text).map_err(|e| format!("bad base64: {e}"));
        Ok(Some(match self {
            Line::Secret(meta) => SnapshotItem::Secret(meta),
            Line::Version { arn, meta, value } => {
                SnapshotItem::Version { arn, meta, value: SealedValue(bytes(&value)?) }
            }
            Line::WrappedKey { key_id, wrapped } => {
                SnapshotItem::WrappedKey { key_id, wrapped: bytes(&wrapped)? }
            }
            Line::Setting { name, value } => SnapshotItem::Setting { name, value: bytes(&value)? },
            Line::Record { kind, key, value } => {
                SnapshotItem::Record { kind, key, value: bytes(&value)? }
            }
            Line::Header { .. } | Line::End { .. } => return Ok(None),
        }))
    }
}

/// What a backup or restore moved, for the summary line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub secrets: u64,
    pub versions: u64,
    pub keys: u64,
    pub settings: u64,
    pub records: u64,
}

impl Counts {
    pub(crate) fn add(&mut self, item: &SnapshotItem) {
        match item {
            SnapshotItem::Secret(_) => self.secrets += 1,
            SnapshotItem::Version { .. } => self.versions += 1,
            SnapshotItem::WrappedKey { .. } => self.keys += 1,
            SnapshotItem::Setting { .. } => self.settings += 1,
            SnapshotItem::Record { .. } => self.records += 1,
        }
    }

    pub(crate) fn total(&self) -> u64 {
        self.secrets + self.versions + self.keys + self.settings + self.records
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} secrets, {} versions, {} wrapped keys, {} settings, {} records",
            self.secrets, self.versions, self.keys, self.settings, self.records
        )
    }
}

/// The key backups are authenticated with.
pub(crate) fn mac_key(master: &MasterKey) -> MacKey {
    master.derive_mac_key(MAC_LABEL)
}

/// How a restore checks a file.
pub(crate) struct Check {
    pub(crate) key: MacKey,
    pub(crate) allow_unauthenticated: bool,
}

/// The longest line a restore reads: a version's sealed value (at most 64 KiB of
/// plaintext, base64) with its metadata fits many times over; anything longer is not a
/// backup line, and reading it whole would only cost memory.
const MAX_LINE: u64 = 16 * 1024 * 1024;

/// Reads a backup file line by line, in constant memory, refusing anything that is not
/// one complete backup in a format this build knows, authenticated under `check.key`
/// (unless unauthenticated files are allowed and this is one). Each item is handed to
/// `visit` with its line number as it is read; after `visit` fails, the rest of the file
/// is still read, so a changed file is reported as such rather than by what it made fail.
pub(crate) fn scan_reader(
    mut reader: impl BufRead,
    path: &str,
    check: &Check,
    visit: &mut dyn FnMut(usize, SnapshotItem) -> Result<(), String>,
) -> Result<Counts, String> {
    let mut counts = Counts::default();
    let mut mac = check.key.start();
    let mut authenticated = true;
    let mut ended = false;
    let mut visit_failure: Option<String> = None;
    let mut raw = Vec::new();
    let mut number = 0usize;
    loop {
        raw.clear();
        let read = Read::by_ref(&mut reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut raw)
            .map_err(|e| format!("cannot read {}: {e}", path))?;
        if read == 0 {
            break;
        }
        number += 1;
        if raw.last() != Some(&b'\n') && read as u64 == MAX_LINE {
            return Err(format!("{} line {number} is too long for a backup line", path));
        }
        let text = raw.strip_suffix(b"\n").unwrap_or(&raw);
        // Serde's message could quote the line, which may hold metadata; the
        // line number is enough to find it.
        let parsed: Line = serde_json::from_slice(text).map_err(|e| {
            format!("{} line {number} is not a backup line (column {})", path, e.column())
        })?;
        match (&parsed, number, ended) {
            (Line::Header { format, version, .. }, 1, _) => {
                if format != FORMAT
                    || (*version != FORMAT_VERSION && *version != UNAUTHENTICATED_VERSION)
                {
                    return Err(format!(
                        "{} is a {format} file of version {version}; this build reads {FORMAT} version {FORMAT_VERSION}",
                        path
                    ));
                }
                if *version == UNAUTHENTICATED_VERSION {
                    if !check.allow_unauthenticated {
                        return Err(format!(
                            "{} was written by an older version and carries no MAC, so nothing proves it was not edited; restore it only if you trust it, with --allow-unauthenticated",
                            path
                        ));
                    }
                    authenticated = false;
                }
                mac.update(&raw);
                continue;
            }
            (_, 1, _) => {
                return Err(format!("{} does not start with a backup header", path));
            }
            (_, _, true) => return Err(format!("{} has lines after its end", path)),
            (Line::Header { .. }, _, _) => {
                return Err(format!("{} line {number}: a second header", path));
            }
            (Line::End { items: expected, mac: tag }, _, _) => {
                if authenticated {
                    let verified = tag.as_deref().is_some_and(|tag| {
                        std::mem::replace(&mut mac, check.key.start()).verify_hex(tag)
                    });
                    if !verified {
                        return Err(format!(
                            "{} was changed after it was written, or was written under another master key: its MAC does not verify; nothing was restored",
                            path
                        ));
                    }
                }
                if *expected != counts.total() {
                    return Err(format!(
                        "{} announces {expected} items but holds {}",
                        path,
                        counts.total()
                    ));
                }
                ended = true;
                continue;
            }
            _ => {}
        }
        mac.update(&raw);
        let item = parsed
            .item()
            .map_err(|e| format!("{} line {number}: {e}", path))?
            .expect("header and trailer were handled above");
        counts.add(&item);
        if visit_failure.is_none()
            && let Err(e) = visit(number, item)
        {
            visit_failure = Some(e);
        }
    }
    if !ended {
        return Err(format!("{} is incomplete: its end line is missing", path));
    }
    match visit_failure {
        Some(e) => Err(e),
        None => Ok(counts),
    }
}
