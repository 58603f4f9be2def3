//! `coffer admin`: offline maintenance of a data directory (run with the server stopped).
//!
//! `rotate-master-key` re-wraps every KMS key material under a new master key without
//! touching any secret value or ciphertext. It is safe to interrupt at any point:
//!
//! 1. the new key is read from, or first written durably to, `--new-master-key-file`;
//! 2. one store transaction re-wraps every material and replaces the check value, so the
//!    database is bound either to the old key or to the new one, never to a mix;
//! 3. only then is `<data-dir>/master.key` replaced (write, fsync, rename, fsync directory).
//!
//! Re-running after an interruption finishes the job: a database already bound to the new
//! key skips step 2, and step 3 is repeated.

use clap::{Args, Subcommand};
use coffer_crypto::MasterKey;
use coffer_server::{MasterKeyRotation, rotate_master_key};
use coffer_store::SqliteStore;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The environment variable that may hold the current master key (as for `coffer serve`).
const MASTER_KEY_ENV: &str = "COFFER_MASTER_KEY";

#[derive(Args, Debug)]
pub struct AdminArgs {
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand, Debug)]
enum AdminCommand {
    /// Re-wrap every KMS key under a new master key (secret ciphertext is not touched).
    /// Stop the server first.
    RotateMasterKey(RotateMasterKeyArgs),
}

#[derive(Args, Debug)]
struct RotateMasterKeyArgs {
    /// The data directory of the server (holding coffer.db).
    #[arg(long)]
    data_dir: PathBuf,
    /// The current master key file, when it is not `<data-dir>/master.key`
    /// (`COFFER_MASTER_KEY` is used when set).
    #[arg(long)]
    master_key_file: Option<PathBuf>,
    /// The new master key: read if the file exists, otherwise created (mode 0600) with a
    /// fresh random key before anything else changes.
    #[arg(long)]
    new_master_key_file: PathBuf,
}

pub fn run(args: AdminArgs) -> Result<(), String> {
    match args.command {
        AdminCommand::RotateMasterKey(args) => rotate(args),
    }
}

/// Where the current master key comes from, which decides whether step 3 applies.
enum CurrentKey {
    /// `<data-dir>/master.key`: replaced by the new key at the end.
    DataDir(PathBuf),
    /// The environment or an explicit file: the operator switches the server over.
    Elsewhere(String),
}

fn rotate(args: RotateMasterKeyArgs) -> Result<(), String> {
    let db = args.data_dir.join("coffer.db");
    if !db.is_file() {
        return Err(format!("{} holds no database (no {})", args.data_dir.display(), db.display()));
    }
    let (old, source) = current_key(&args)?;
    let (new, created) = MasterKey::load_or_create(&args.new_master_key_file).map_err(|e| {
        format!(
            "cannot read or create the new master key {}: {e}",
            args.new_master_key_file.display()
        )
    })?;
    let open_store = || {
        SqliteStore::open(&db)
            .map_err(|e| format!("cannot open the database {}: {e}", db.display()))
    };
    if old.verify_check_value(&new.check_value()) {
        // The current key already is the new one: a finished rotation run once more.
        return match coffer_server::KeyRing::open(new, &open_store()?) {
            Ok(_) => {
                println!("the database is already bound to this master key; nothing to do");
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        };
    }
    if created {
        println!("created a new master key in {} (mode 0600)", args.new_master_key_file.display());
    }
    let store = open_store()?;
    match rotate_master_key(&store, &old, &new).map_err(|e| e.to_string())? {
        MasterKeyRotation::Rotated { materials } => {
            println!("re-wrapped {materials} KMS key materials under the new master key");
        }
        MasterKeyRotation::AlreadyRotated => {
            println!("the database is already bound to the new master key; finishing");
        }
    }
    match source {
        CurrentKey::DataDir(path) => {
            install_key_file(&path, &new)
                .map_err(|e| format!("cannot replace {}: {e}", path.display()))?;
            println!("installed the new master key as {}", path.display());
        }
        CurrentKey::Elsewhere(from) => println!(
            "the current key came from {from}: start the server with --master-key-file {} from now on",
            args.new_master_key_file.display()
        ),
    }
    println!("backups taken before this rotation still need the old master key");
    Ok(())
}

fn current_key(args: &RotateMasterKeyArgs) -> Result<(MasterKey, CurrentKey), String> {
    if let Ok(text) = std::env::var(MASTER_KEY_ENV) {
        let key = MasterKey::from_text(&text)
            .map_err(|e| format!("{MASTER_KEY_ENV} is not a valid master key: {e}"))?;
        return Ok((key, CurrentKey::Elsewhere(MASTER_KEY_ENV.to_string())));
    }
    if let Some(path) = &args.master_key_file {
        let key = MasterKey::load(path)
            .map_err(|e| format!("cannot read the master key file {}: {e}", path.display()))?;
        return Ok((key, CurrentKey::Elsewhere(path.display().to_string())));
    }
    let path = args.data_dir.join("master.key");
    let key = MasterKey::load(&path)
        .map_err(|e| format!("cannot read the master key file {}: {e}", path.display()))?;
    Ok((key, CurrentKey::DataDir(path)))
}

/// Replaces `path` with `key`'s text form atomically: a crash leaves the old or the new file.
fn install_key_file(path: &Path, key: &MasterKey) -> std::io::Result<()> {
    let tmp = path.with_extension("key.new");
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    file.write_all(key.to_text().as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(if dir.as_os_str().is_empty() { Path::new(".") } else { dir })?.sync_all()?;
    }
    Ok(())
}
