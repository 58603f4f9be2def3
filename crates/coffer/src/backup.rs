//! `coffer backup` and `coffer restore`: a consistent, still-encrypted
//! snapshot of a store in one file, and loading one into an empty store of
//! either kind (so SQLite to PostgreSQL is a backup and a restore).
//!
//! The file is JSON lines: a header naming the format and its version, one
//! line per item of [`Store::export`] (binary fields in base64), and a
//! trailer with the item count, so a truncated file is refused. Values stay
//! sealed and keys wrapped: the file is useless without the master key,
//! which is never in it.

use crate::store_select::StoreArgs;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use clap::Args;
use coffer_core::model::{SecretMeta, VersionMeta};
use coffer_store::{SealedValue, SnapshotItem, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

/// The format name in the header; anything else is not a Coffer backup.
const FORMAT: &str = "coffer-backup";
/// The version of the file format this build writes and reads.
const FORMAT_VERSION: u32 = 1;

/// `coffer backup`: write a snapshot of a store to a file.
#[derive(Args, Debug)]
pub struct BackupArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The file to write (created with mode 0600; an existing file is never overwritten).
    #[arg(long)]
    out: PathBuf,
}

/// `coffer restore`: load a snapshot into an empty store.
#[derive(Args, Debug)]
pub struct RestoreArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The backup file to read.
    #[arg(long = "in", value_name = "FILE")]
    input: PathBuf,
}

/// One line of a backup file.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Line {
    Header { format: String, version: u32, created_ms: i64, source: String },
    Secret(SecretMeta),
    Version { arn: String, meta: VersionMeta, value: String },
    WrappedKey { key_id: String, wrapped: String },
    Setting { name: String, value: String },
    Record { kind: String, key: String, value: String },
    End { items: u64 },
}

impl Line {
    fn of(item: SnapshotItem) -> Line {
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
    fn item(self) -> Result<Option<SnapshotItem>, String> {
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
    fn add(&mut self, item: &SnapshotItem) {
        match item {
            SnapshotItem::Secret(_) => self.secrets += 1,
            SnapshotItem::Version { .. } => self.versions += 1,
            SnapshotItem::WrappedKey { .. } => self.keys += 1,
            SnapshotItem::Setting { .. } => self.settings += 1,
            SnapshotItem::Record { .. } => self.records += 1,
        }
    }

    fn total(&self) -> u64 {
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

pub fn backup(args: BackupArgs) -> Result<(), String> {
    let store = args.store.spec()?.open()?;
    let counts = write_backup(store.as_ref(), &args.out)?;
    println!("wrote {} from {} to {}", counts, store.describe(), args.out.display());
    Ok(())
}

pub fn restore(args: RestoreArgs) -> Result<(), String> {
    let (items, counts) = read_backup(&args.input)?;
    let store = args.store.spec()?.open_exclusive()?;
    store.import(&items).map_err(|e| match e {
        StoreError::Conflict(_) => format!(
            "{} is not empty; a backup is restored only into an empty store",
            store.describe()
        ),
        other => format!(
            "the restore into {} failed, and nothing was written: {other}",
            store.describe()
        ),
    })?;
    println!("restored {counts} into {}", store.describe());
    println!(
        "serve it with the master key the backup was taken under (COFFER_MASTER_KEY, --master-key-file or <data-dir>/master.key)"
    );
    Ok(())
}

/// Writes a snapshot of `store` to `out`, through a temporary file that is
/// synced and renamed into place, so `out` is either complete or absent.
pub fn write_backup(store: &dyn Store, out: &Path) -> Result<Counts, String> {
    use std::os::unix::fs::OpenOptionsExt;
    if out.exists() {
        return Err(format!("{} already exists; choose another file", out.display()));
    }
    let partial = partial_path(out);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
    let result = write_lines(store, BufWriter::new(file)).and_then(|counts| {
        std::fs::rename(&partial, out)
            .map_err(|e| format!("cannot move the backup into {}: {e}", out.display()))?;
        Ok(counts)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".partial");
    out.with_file_name(name)
}

fn write_lines(store: &dyn Store, mut writer: BufWriter<File>) -> Result<Counts, String> {
    let io = |e: std::io::Error| format!("cannot write the backup: {e}");
    let put = |writer: &mut BufWriter<File>, line: &Line| -> Result<(), String> {
        serde_json::to_writer(&mut *writer, line)
            .map_err(|e| format!("cannot encode the backup: {e}"))?;
        writer.write_all(b"\n").map_err(io)
    };
    let header = Line::Header {
        format: FORMAT.to_owned(),
        version: FORMAT_VERSION,
        created_ms: now_ms(),
        source: store.describe(),
    };
    put(&mut writer, &header)?;
    let mut counts = Counts::default();
    let mut failure = None;
    let exported = store.export(&mut |item| {
        counts.add(&item);
        put(&mut writer, &Line::of(item)).map_err(|e| {
            failure = Some(e);
            StoreError::Aborted
        })
    });
    if let Some(e) = failure {
        return Err(e);
    }
    exported.map_err(|e| format!("cannot read the store: {e}"))?;
    put(&mut writer, &Line::End { items: counts.total() })?;
    let file = writer.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    Ok(counts)
}

/// Reads a whole backup file, refusing anything that is not one complete
/// backup in a format this build knows.
pub fn read_backup(path: &Path) -> Result<(Vec<SnapshotItem>, Counts), String> {
    let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut items = Vec::new();
    let mut counts = Counts::default();
    let mut ended = false;
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let number = index + 1;
        let text = line.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        // Serde's message could quote the line, which may hold metadata; the
        // line number is enough to find it.
        let parsed: Line = serde_json::from_str(&text).map_err(|e| {
            format!("{} line {number} is not a backup line (column {})", path.display(), e.column())
        })?;
        match (&parsed, number, ended) {
            (Line::Header { format, version, .. }, 1, _) => {
                if format != FORMAT || *version != FORMAT_VERSION {
                    return Err(format!(
                        "{} is a {format} file of version {version}; this build reads {FORMAT} version {FORMAT_VERSION}",
                        path.display()
                    ));
                }
                continue;
            }
            (_, 1, _) => {
                return Err(format!("{} does not start with a backup header", path.display()));
            }
            (_, _, true) => return Err(format!("{} has lines after its end", path.display())),
            (Line::Header { .. }, _, _) => {
                return Err(format!("{} line {number}: a second header", path.display()));
            }
            (Line::End { items: expected }, _, _) => {
                if *expected != counts.total() {
                    return Err(format!(
                        "{} announces {expected} items but holds {}",
                        path.display(),
                        counts.total()
                    ));
                }
                ended = true;
                continue;
            }
            _ => {}
        }
        let item = parsed
            .item()
            .map_err(|e| format!("{} line {number}: {e}", path.display()))?
            .expect("header and trailer were handled above");
        counts.add(&item);
        items.push(item);
    }
    if !ended {
        return Err(format!("{} is incomplete: its end line is missing", path.display()));
    }
    Ok((items, counts))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_core::model::Scope;
    use coffer_store::MemoryStore;

    fn filled() -> MemoryStore {
        let store = MemoryStore::new();
        let meta = SecretMeta {
            scope: Scope::new("111111111111", "us-east-1"),
            arn: "arn:aws:secretsmanager:us-east-1:111111111111:secret:db-AbCdEf".into(),
            name: "db".into(),
            seq: 0,
            description: Some("line\nbreak".into()),
            kms_key_id: None,
            tags: Some(vec![]),
            created_ms: 1,
            last_changed_ms: 2,
            last_accessed_ms: None,
            deletion_ms: None,
            owning_service: None,
            secret_type: None,
            resource_policy: None,
        };
        let version = VersionMeta {
            version_id: "v1".into(),
            stages: ["AWSCURRENT".to_owned()].into(),
            created_ms: 1,
            last_accessed_ms: None,
            kms_key_id: None,
        };
        store
            .write(&mut |txn| {
                txn.insert_secret(&meta)?;
                txn.insert_version(&meta.arn, &version, &SealedValue((0..=255).collect()))?;
                txn.put_wrapped_key("k", &[0, 1, 2])?;
                txn.put_setting("s", b"")?;
                txn.put_record("audit", "1", b"\n\"")
            })
            .unwrap();
        store
    }

    fn export(store: &dyn Store) -> Vec<SnapshotItem> {
        let mut items = Vec::new();
        store
            .export(&mut |item| {
                items.push(item);
                Ok(())
            })
            .unwrap();
        items
    }

    #[test]
    fn a_backup_file_reads_back_as_the_same_items_and_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("snap.jsonl");
        let store = filled();
        let written = write_backup(&store, &out).unwrap();
        assert_eq!(written, Counts { secrets: 1, versions: 1, keys: 1, settings: 1, records: 1 });
        assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!partial_path(&out).exists());
        let (items, counts) = read_backup(&out).unwrap();
        assert_eq!(counts, written);
        assert_eq!(items, export(&store));
    }

    #[test]
    fn an_existing_file_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("snap.jsonl");
        std::fs::write(&out, "precious").unwrap();
        assert!(write_backup(&filled(), &out).unwrap_err().contains("already exists"));
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "precious");
    }

    #[test]
    fn truncated_altered_or_foreign_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("snap.jsonl");
        write_backup(&filled(), &out).unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let cases = [
            ("without its end", lines[..lines.len() - 1].join("\n"), "incomplete"),
            ("missing an item", [&lines[..2], &lines[3..]].concat().join("\n"), "announces"),
            ("without a header", lines[1..].join("\n"), "header"),
            (
                "with a future version",
                text.replacen("\"version\":1", "\"version\":9", 1),
                "version 9",
            ),
            ("with junk after the end", format!("{text}{}\n", lines[1]), "after its end"),
            ("with a broken line", text.replacen("\"secret\"", "\"secreet\"", 1), "line 2"),
        ];
        for (what, content, expected) in cases {
            let path = dir.path().join("bad.jsonl");
            std::fs::write(&path, content).unwrap();
            match read_backup(&path) {
                Err(message) => assert!(message.contains(expected), "{what}: {message}"),
                Ok(_) => panic!("a file {what} was accepted"),
            }
        }
    }
}
