//! `coffer backup` and `coffer restore`: a consistent, still-encrypted
//! snapshot of a store in one file, and loading one into an empty store of
//! either kind (so SQLite to PostgreSQL is a backup and a restore).
//!
//! The file is JSON lines: a header naming the format and its version, one
//! line per item of [`Store::export`] (binary fields in base64), and a
//! trailer with the item count, so a truncated file is refused. Values stay
//! sealed and keys wrapped: the file is useless without the master key,
//! which is never in it.
//!
//! Version 2 files are authenticated: the trailer carries an HMAC-SHA256 of
//! every byte before it, under a key derived from the master key (HKDF label
//! `coffer backup v2`). Without it, anyone who could edit a backup could
//! change what a restore writes (policies, users, which user an access key
//! belongs to). A restore reads the file twice, in constant memory: once to
//! check its structure and MAC before the store is even opened, and once to
//! stream the items into the store's one import transaction, checking the MAC
//! again to its last byte before the transaction may commit (the file could
//! change in between). Version 1 files (no MAC) are restored only with
//! `--allow-unauthenticated`.

pub use crate::backup_format::Counts;
use crate::backup_format::{Check, FORMAT, FORMAT_VERSION, Line, mac_key, scan_reader};
use crate::master_arg::MasterKeyArg;
use crate::store_select::StoreArgs;
use clap::Args;
use coffer_crypto::MacKey;
use coffer_store::{SnapshotItem, Store, StoreError};
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

/// The setting holding the master key's check value (see `coffer_server::KeyRing`).
const MASTER_CHECK_SETTING: &str = "master-key-check";

/// `coffer backup`: write a snapshot of a store to a file.
#[derive(Args, Debug)]
pub struct BackupArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    key: MasterKeyArg,
    /// The file to write (created new with mode 0600: an existing file or symlink is
    /// never overwritten or followed).
    #[arg(long)]
    out: PathBuf,
}

/// `coffer restore`: load a snapshot into an empty store.
#[derive(Args, Debug)]
pub struct RestoreArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    key: MasterKeyArg,
    /// The backup file to read.
    #[arg(long = "in", value_name = "FILE")]
    input: PathBuf,
    /// Also restore a backup written by an older version, which carries no MAC: nothing
    /// then proves it was not edited. Use only for a file you trust.
    #[arg(long)]
    allow_unauthenticated: bool,
}

pub fn backup(args: BackupArgs) -> Result<(), String> {
    let master = args.key.load(&args.store.data_dir)?;
    let store = args.store.spec()?.open()?;
    // A backup authenticated under another master key could never be restored.
    let check = read_setting(store.as_ref(), MASTER_CHECK_SETTING)?;
    if check.is_some_and(|check| !master.verify_check_value(&check)) {
        return Err(format!(
            "the master key does not match the key {} was encrypted with",
            store.describe()
        ));
    }
    let counts = write_backup(store.as_ref(), &args.out, &mac_key(&master))?;
    println!("wrote {} from {} to {}", counts, store.describe(), args.out.display());
    Ok(())
}

fn read_setting(store: &dyn Store, name: &str) -> Result<Option<Vec<u8>>, String> {
    let mut out = None;
    store
        .read(&mut |tx| {
            out = tx.setting(name)?;
            Ok(())
        })
        .map_err(|e| format!("cannot read {}: {e}", store.describe()))?;
    Ok(out)
}

pub fn restore(args: RestoreArgs) -> Result<(), String> {
    let master = args.key.load(&args.store.data_dir)?;
    let check = Check { key: mac_key(&master), allow_unauthenticated: args.allow_unauthenticated };
    // The whole file is checked before the store is opened, so a bad file creates and
    // changes nothing.
    let counts = scan(&args.input, &check, &mut |_, _| Ok(()))?;
    let store = args.store.spec()?.open_exclusive()?;
    let mut failure: Option<String> = None;
    let imported = store.import_from(&mut |sink| {
        failure = None;
        let mut store_error = None;
        let scanned = scan(&args.input, &check, &mut |number, item| {
            sink(&item).map_err(|e| {
                let message = format!(
                    "{} line {number}: {} could not be written: {e}",
                    args.input.display(),
                    describe(&item)
                );
                store_error = Some(e);
                message
            })
        });
        match scanned {
            Ok(_) => Ok(()),
            Err(message) => {
                failure = Some(message);
                Err(store_error.take().unwrap_or(StoreError::Aborted))
            }
        }
    });
    imported.map_err(|e| match (e, failure.take()) {
        // What the file's own reading said comes first: a record the store refused
        // names its line, even when the refusal is a conflict.
        (_, Some(message)) => format!(
            "the restore into {} failed, and nothing was written: {message}",
            store.describe()
        ),
        (StoreError::Conflict(_), None) => format!(
            "{} is not empty; a backup is restored only into an empty store",
            store.describe()
        ),
        (other, None) => format!(
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

/// What a restore names when an item cannot be written: its kind and identifiers (JSON
/// quoted, so control characters show), never a value.
fn describe(item: &SnapshotItem) -> String {
    let quoted = |s: &str| serde_json::to_string(s).expect("strings serialize");
    match item {
        SnapshotItem::Secret(meta) => format!("secret {}", quoted(&meta.arn)),
        SnapshotItem::Version { arn, meta, .. } => {
            format!("version {} of secret {}", quoted(&meta.version_id), quoted(arn))
        }
        SnapshotItem::WrappedKey { key_id, .. } => format!("wrapped key {}", quoted(key_id)),
        SnapshotItem::Setting { name, .. } => format!("setting {}", quoted(name)),
        SnapshotItem::Record { kind, key, .. } => {
            format!("record {} {}", quoted(kind), quoted(key))
        }
    }
}

/// Writes a snapshot of `store` to `out`, authenticated under `key`, through a temporary
/// file that is synced and then published with a hard link: the link fails rather than
/// replaces when anything (a file, a symlink, even a dangling one) is at `out`, with no
/// window between a check and the rename. `out` is therefore either complete or absent,
/// and nothing at `out` is ever followed or overwritten.
pub fn write_backup(store: &dyn Store, out: &Path, key: &MacKey) -> Result<Counts, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let exists = || format!("{} already exists; choose another file", out.display());
    // Only to fail before the work: the hard link below is what guarantees it.
    if out.symlink_metadata().is_ok() {
        return Err(exists());
    }
    let partial = partial_path(out);
    // create_new is O_CREAT|O_EXCL, which never follows a symlink at the path.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
    let result = write_lines(store, BufWriter::new(file), key).and_then(|counts| {
        match std::fs::hard_link(&partial, out) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(exists()),
            Err(e) => {
                return Err(format!("cannot move the backup into {}: {e}", out.display()));
            }
        }
        let dir = out.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if let Ok(dir) = File::open(dir) {
            let _ = dir.sync_all();
        }
        Ok(counts)
    });
    let _ = std::fs::remove_file(&partial);
    result
}

fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".partial");
    out.with_file_name(name)
}

fn write_lines(
    store: &dyn Store,
    mut writer: BufWriter<File>,
    key: &MacKey,
) -> Result<Counts, String> {
    let io = |e: std::io::Error| format!("cannot write the backup: {e}");
    let mut mac = key.start();
    let mut buffer = Vec::with_capacity(4096);
    let mut put = |writer: &mut BufWriter<File>,
                   mac: &mut coffer_crypto::Mac,
                   line: &Line|
     -> Result<(), String> {
        buffer.clear();
        serde_json::to_writer(&mut buffer, line)
            .map_err(|e| format!("cannot encode the backup: {e}"))?;
        buffer.push(b'\n');
        mac.update(&buffer);
        writer.write_all(&buffer).map_err(io)
    };
    let header = Line::Header {
        format: FORMAT.to_owned(),
        version: FORMAT_VERSION,
        created_ms: now_ms(),
        source: store.describe(),
    };
    put(&mut writer, &mut mac, &header)?;
    let mut counts = Counts::default();
    let mut failure = None;
    let exported = store.export(&mut |item| {
        counts.add(&item);
        put(&mut writer, &mut mac, &Line::of(item)).map_err(|e| {
            failure = Some(e);
            StoreError::Aborted
        })
    });
    if let Some(e) = failure {
        return Err(e);
    }
    exported.map_err(|e| format!("cannot read the store: {e}"))?;
    let end = Line::End { items: counts.total(), mac: Some(mac.finish_hex()) };
    let mut line =
        serde_json::to_vec(&end).map_err(|e| format!("cannot encode the backup: {e}"))?;
    line.push(b'\n');
    writer.write_all(&line).map_err(io)?;
    let file = writer.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    Ok(counts)
}

/// [`scan_reader`] over the file at `path`.
fn scan(
    path: &Path,
    check: &Check,
    visit: &mut dyn FnMut(usize, SnapshotItem) -> Result<(), String>,
) -> Result<Counts, String> {
    let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    scan_reader(BufReader::new(file), &path.display().to_string(), check, visit)
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
    use coffer_core::model::{SecretMeta, VersionMeta};
    use coffer_crypto::MasterKey;
    use coffer_store::MemoryStore;
    use coffer_store::SealedValue;

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
            rotation: None,
            replication: Default::default(),
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

    fn key() -> MacKey {
        mac_key(&MasterKey::from_text("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap())
    }

    fn check() -> Check {
        Check { key: key(), allow_unauthenticated: false }
    }

    /// Every item of a backup file, as a restore would write them.
    fn read_backup(path: &Path) -> Result<(Vec<SnapshotItem>, Counts), String> {
        let mut items = Vec::new();
        let counts = scan(path, &check(), &mut |_, item| {
            items.push(item);
            Ok(())
        })?;
        Ok((items, counts))
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
        let written = write_backup(&store, &out, &key()).unwrap();
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
        assert!(write_backup(&filled(), &out, &key()).unwrap_err().contains("already exists"));
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "precious");
    }

    #[test]
    fn truncated_altered_or_foreign_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("snap.jsonl");
        write_backup(&filled(), &out, &key()).unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let cases = [
            ("without its end", lines[..lines.len() - 1].join("\n"), "incomplete"),
            // A line removed: the MAC no longer verifies, whatever the count says.
            ("missing an item", [&lines[..2], &lines[3..]].concat().join("\n"), "was changed"),
            ("without a header", lines[1..].join("\n"), "header"),
            (
                "with a future version",
                text.replacen("\"version\":2", "\"version\":9", 1),
                "version 9",
            ),
            ("with junk after the end", format!("{text}{}\n", lines[1]), "after its end"),
            ("with a broken line", text.replacen("\"secret\"", "\"secreet\"", 1), "line 2"),
            (
                "with a changed line",
                text.replacen("line\\nbreak", "line\\nbreaK", 1),
                "was changed",
            ),
            (
                "with its MAC removed",
                format!("{}\n{{\"end\":{{\"items\":5}}}}\n", lines[..lines.len() - 1].join("\n")),
                "was changed",
            ),
            (
                "in the unauthenticated format",
                text.replacen("\"version\":2", "\"version\":1", 1),
                "--allow-unauthenticated",
            ),
        ];
        for (what, content, expected) in cases {
            let path = dir.path().join("bad.jsonl");
            std::fs::write(&path, content).unwrap();
            match read_backup(&path) {
                Err(message) => assert!(message.contains(expected), "{what}: {message}"),
                Ok(_) => panic!("a file {what} was accepted"),
            }
        }
        // Under another master key, the untouched file does not verify either.
        let other = Check { key: mac_key(&MasterKey::generate()), allow_unauthenticated: false };
        let message = scan(&out, &other, &mut |_, _| Ok(())).unwrap_err();
        assert!(message.contains("another master key"), "{message}");
    }

    /// A file written by an older build: version 1, no MAC in its end line.
    #[test]
    fn an_unauthenticated_backup_is_read_only_when_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("snap.jsonl");
        write_backup(&filled(), &out, &key()).unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        lines[0] = lines[0].replacen("\"version\":2", "\"version\":1", 1);
        let last = lines.len() - 1;
        lines[last] = r#"{"end":{"items":5}}"#.to_string();
        let old = dir.path().join("old.jsonl");
        std::fs::write(&old, lines.join("\n") + "\n").unwrap();
        assert!(read_backup(&old).unwrap_err().contains("--allow-unauthenticated"));
        let allowed = Check { key: key(), allow_unauthenticated: true };
        let mut items = Vec::new();
        let counts = scan(&old, &allowed, &mut |_, item| {
            items.push(item);
            Ok(())
        })
        .unwrap();
        assert_eq!(counts.total(), 5);
        assert_eq!(items, export(&filled()));
    }

    #[test]
    fn a_failed_item_is_reported_by_line_and_a_changed_file_as_changed() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("snap.jsonl");
        write_backup(&filled(), &out, &key()).unwrap();
        let mut seen = 0;
        let message = scan(&out, &check(), &mut |number, item| {
            seen += 1;
            Err(format!("line {number}: {}", describe(&item)))
        })
        .unwrap_err();
        assert_eq!(seen, 1, "nothing is visited after a failure");
        assert!(message.contains("line 2: secret \"arn:aws:secretsmanager"), "{message}");
        let text = std::fs::read_to_string(&out).unwrap();
        std::fs::write(&out, text.replacen("line\\nbreak", "line\\nbreaK", 1)).unwrap();
        let message = scan(&out, &check(), &mut |_, _| Err("visit".into())).unwrap_err();
        assert!(message.contains("was changed"), "{message}");
    }

    #[test]
    fn a_dangling_symlink_at_out_is_neither_followed_nor_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere.jsonl");
        let out = dir.path().join("snap.jsonl");
        std::os::unix::fs::symlink(&target, &out).unwrap();
        assert!(write_backup(&filled(), &out, &key()).unwrap_err().contains("already exists"));
        assert!(std::fs::symlink_metadata(&out).unwrap().file_type().is_symlink());
        assert!(!target.exists());
        assert!(!partial_path(&out).exists());
    }
}
