//! `coffer admin`: maintenance of a data directory or store.
//!
//! `rotate-master-key` re-wraps every KMS key material and the IAM credentials key under a
//! new master key without touching any secret value or ciphertext. It works on every
//! store (`--store postgres://...`, or the SQLite file of the data directory), and is safe
//! to interrupt at any point:
//!
//! 1. on SQLite it takes the database's exclusive lock (the one `coffer serve` holds), so
//!    it refuses to run while a server uses the file; on PostgreSQL the nodes may run: the
//!    rotation starts a new master-key generation, and a node still holding the old key
//!    refuses to wrap new material from then on (it must be restarted with the new key);
//! 2. the new key is read from, or first written durably to, `--new-master-key-file`;
//! 3. one store transaction re-wraps every material and the credentials key and replaces
//!    the check value, so the database is bound either to the old key or to the new one;
//! 4. only then is `<data-dir>/master.key` replaced (write, fsync, rename, fsync directory),
//!    after the old key was kept as `master.key.old-<unix time>` (mode 0600), which the
//!    tool names before replacing anything: it still opens backups taken before.
//!
//! Re-running after an interruption finishes the job: a database already bound to the new
//! key skips step 3, and step 4 is repeated.
//!
//! `create-user`, `delete-user`, `list-users`, `create-access-key`, `delete-access-key`,
//! `attach-policy` and `detach-policy` manage the IAM users that `coffer serve`
//! authenticates, through `coffer-iam` as the server does, on the store `coffer serve`
//! with the same `--store` and `--data-dir` uses (SQLite, PostgreSQL, a `--dev` server's
//! data directory); `bootstrap_admin` creates the first administrator when a data
//! directory is first served.

use crate::master_arg::MasterKeyArg;
use crate::store_select::{STORE_ENV, StoreSpec};
use clap::{Args, Subcommand};
use coffer_auth::principal::SecretAccessKey;
use coffer_crypto::MasterKey;
use coffer_iam::Iam;
use coffer_server::{MasterKeyRotation, rotate_master_key};
use coffer_store::{SqliteStore, Store};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::MASTER_KEY_ENV;

#[derive(Args, Debug)]
pub struct AdminArgs {
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand, Debug)]
enum AdminCommand {
    /// Re-wrap every KMS key under a new master key (secret ciphertext is not touched).
    /// On SQLite, stop the server first; on PostgreSQL, restart every node with the new
    /// key afterwards.
    RotateMasterKey(RotateMasterKeyArgs),
    /// Create an IAM user (no permissions until a policy is attached).
    CreateUser(UserArgs),
    /// Delete an IAM user with its access keys and policies.
    DeleteUser(UserArgs),
    /// List IAM users with their access key ids and policy names.
    ListUsers(IamTarget),
    /// Create an access key for a user; the secret is printed once, as a credentials-file
    /// section, and stored only sealed under the master key.
    CreateAccessKey(UserArgs),
    /// Delete an access key.
    DeleteAccessKey(AccessKeyArgs),
    /// Attach an IAM policy document to a user under a name (replacing one of that name).
    AttachPolicy(AttachPolicyArgs),
    /// Detach a named policy from a user.
    DetachPolicy(DetachPolicyArgs),
}

#[derive(Args, Debug)]
struct RotateMasterKeyArgs {
    /// The data directory of the server (holding master.key, and coffer.db unless --store
    /// names another store).
    #[arg(long)]
    data_dir: PathBuf,
    /// The store, as for `coffer serve`: postgres://... or `sqlite:<file>`. Without it, the
    /// SQLite file in the data directory.
    #[arg(long, env = STORE_ENV, hide_env_values = true, value_parser = StoreSpec::parse)]
    store: Option<StoreSpec>,
    /// The current master key file, when it is not `<data-dir>/master.key`
    /// (`COFFER_MASTER_KEY` is used when set).
    #[arg(long)]
    master_key_file: Option<PathBuf>,
    /// The new master key: read if the file exists, otherwise created (mode 0600) with a
    /// fresh random key before anything else changes.
    #[arg(long)]
    new_master_key_file: PathBuf,
    /// Also give every KMS key new material under the new master key (for an old master
    /// key that may be compromised): new ciphertext is then out of the old key's reach.
    /// Earlier material versions stay, so ciphertext made before still decrypts, with
    /// either key and any older copy of the store.
    #[arg(long)]
    rekey_kms_material: bool,
}

pub fn run(args: AdminArgs) -> Result<(), String> {
    match args.command {
        AdminCommand::RotateMasterKey(args) => rotate(args),
        AdminCommand::CreateUser(args) => create_user(args),
        AdminCommand::DeleteUser(args) => delete_user(args),
        AdminCommand::ListUsers(target) => list_users(target),
        AdminCommand::CreateAccessKey(args) => create_access_key(args),
        AdminCommand::DeleteAccessKey(args) => delete_access_key(args),
        AdminCommand::AttachPolicy(args) => attach_policy(args),
        AdminCommand::DetachPolicy(args) => detach_policy(args),
    }
}

/// Where the current master key comes from, which decides whether step 3 applies.
enum CurrentKey {
    /// `<data-dir>/master.key`: replaced by the new key at the end.
    DataDir(PathBuf),
    /// The environment or an explicit file: the operator switches the server over.
    Elsewhere(String),
}

/// Opens the store a rotation works on. An SQLite file is taken with the exclusive lock
/// every `coffer serve` holds, so a rotation never interleaves with a running server: the
/// server caches key records and keeps wrapping under the key it started with.
fn rotation_store(args: &RotateMasterKeyArgs) -> Result<Arc<dyn Store>, String> {
    let path = match &args.store {
        Some(StoreSpec::Memory) => {
            return Err(
                "the memory store keeps nothing; name a postgres:// or sqlite: store".into()
            );
        }
        Some(spec @ StoreSpec::Postgres(_)) => return spec.open(),
        Some(StoreSpec::Sqlite(path)) => path.clone(),
        None => args.data_dir.join(crate::store_select::SQLITE_FILE),
    };
    if !path.is_file() {
        return Err(format!("there is no database at {}", path.display()));
    }
    let store = SqliteStore::open(&path)
        .map_err(|e| format!("cannot open the database {}: {e}", path.display()))?
        .exclusive()
        .map_err(|e| {
            format!(
                "cannot take the database {} for the rotation ({e}): stop the server before \
                 rotating the master key",
                path.display()
            )
        })?;
    Ok(Arc::new(store))
}

fn rotate(args: RotateMasterKeyArgs) -> Result<(), String> {
    let store = rotation_store(&args)?;
    let (old, source) = current_key(&args)?;
    let (new, created) = MasterKey::load_or_create(&args.new_master_key_file).map_err(|e| {
        format!(
            "cannot read or create the new master key {}: {e}",
            args.new_master_key_file.display()
        )
    })?;
    if old.verify_check_value(&new.check_value()) {
        // The current key already is the new one: a finished rotation run once more.
        return match coffer_server::KeyRing::open(new, store.as_ref()) {
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
    let rekey_at = args.rekey_kms_material.then(now_ms);
    match rotate_master_key(store.as_ref(), &old, &new, rekey_at).map_err(|e| e.to_string())? {
        MasterKeyRotation::Rotated { materials, credentials, rekeyed } => {
            println!("re-wrapped {materials} KMS key materials under the new master key");
            if credentials {
                println!("re-wrapped the IAM credentials key under the new master key");
            }
            if args.rekey_kms_material {
                println!(
                    "gave {rekeyed} KMS keys new key material: ciphertext made from now on is \
                     out of the old master key's reach; ciphertext made before is not \
                     re-encrypted"
                );
            }
        }
        MasterKeyRotation::AlreadyRotated => {
            println!("the database is already bound to the new master key; finishing");
            if args.rekey_kms_material {
                println!(
                    "no KMS key was given new material: only the run that commits the \
                     rotation does that"
                );
            }
        }
    }
    // The superseded wrappings were overwritten in place (SQLite's secure_delete); their
    // copies in the WAL go now, before the old key file is moved aside.
    // On PostgreSQL the rotation is committed whatever the scrub does, and the background
    // scrub of the nodes tries again: a scrub that cannot run yet must not stop the key
    // file's replacement.
    if let Err(e) = store.scrub_deleted() {
        if !matches!(args.store, Some(StoreSpec::Postgres(_))) {
            return Err(format!("cannot scrub the old wrappings: {e}"));
        }
        eprintln!("warning: {e}");
    }
    match source {
        CurrentKey::DataDir(path) => {
            let kept = keep_old_key_file(&path, &old)
                .map_err(|e| format!("cannot keep a copy of the old master key: {e}"))?;
            println!(
                "kept the old master key as {} (mode 0600): it still opens backups taken \
                 before this rotation; delete it once none of them is needed",
                kept.display()
            );
            install_key_file(&path, &new)
                .map_err(|e| format!("cannot replace {}: {e}", path.display()))?;
            println!("installed the new master key as {}", path.display());
        }
        CurrentKey::Elsewhere(from) => println!(
            "the current key came from {from}: start the server with --master-key-file {} from \
             now on, and keep the old key for as long as backups taken before need it",
            args.new_master_key_file.display()
        ),
    }
    if matches!(args.store, Some(StoreSpec::Postgres(_))) {
        println!(
            "restart every node with the new master key: a node still running with the old one \
             refuses to create or rotate KMS keys"
        );
    }
    println!("backups taken before this rotation still need the old master key");
    if matches!(args.store, Some(StoreSpec::Postgres(_))) {
        println!(
            "PostgreSQL keeps the superseded wrappings in dead rows and in its WAL until the \
             scrub of a running node destroys them (within the store's scrub_delay, 300 s by \
             default; docs/design/postgres-scrub.md): until then the old key still opens the \
             KMS key material with them"
        );
    }
    Ok(())
}

/// Writes `old` to a new file `<key file>.old-<unix time>` (mode 0600, never replacing a
/// file) before the key file is replaced, and returns its path.
fn keep_old_key_file(path: &Path, old: &MasterKey) -> std::io::Result<PathBuf> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".old-{stamp}"));
    let mut kept = PathBuf::from(&name);
    let mut n = 1;
    let mut file = loop {
        match OpenOptions::new().write(true).create_new(true).mode(0o600).open(&kept) {
            Ok(file) => break file,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 100 => {
                let mut next = name.clone();
                next.push(format!("-{n}"));
                kept = PathBuf::from(next);
                n += 1;
            }
            Err(e) => return Err(e),
        }
    };
    file.write_all(old.to_text().as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    if let Some(dir) = kept.parent() {
        File::open(if dir.as_os_str().is_empty() { Path::new(".") } else { dir })?.sync_all()?;
    }
    Ok(kept)
}

fn current_key(args: &RotateMasterKeyArgs) -> Result<(MasterKey, CurrentKey), String> {
    if let Some(text) = crate::master_key_from_env() {
        let key = MasterKey::from_text(std::str::from_utf8(text.expose()).unwrap_or_default())
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

// ---- IAM users, access keys and policies -------------------------------------------------
//
// These commands change the IAM records of the store directly, in transactions that also
// move the store's IAM generation: a running server (every node on a shared PostgreSQL
// database) sees the change on its next request.

/// Where the IAM commands find the data: the store, its master key, the account. The store
/// and the master key are found as `coffer serve` finds them with the same flags.
#[derive(Args, Debug)]
struct IamTarget {
    /// The store, as for `coffer serve`: postgres://user:password@host/db (TLS with
    /// ?sslmode=...) or `sqlite:<file>`. Without it, the SQLite file in the data directory.
    #[arg(long, env = STORE_ENV, hide_env_values = true, value_parser = StoreSpec::parse)]
    store: Option<StoreSpec>,
    /// The data directory of the server: its coffer.db is the store unless --store names
    /// another, and it holds master.key. Default `coffer-data` (with `--store sqlite:<file>`,
    /// that file's directory).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    master_key: MasterKeyArg,
    /// The account the user belongs to (12 digits).
    #[arg(long, default_value = DEFAULT_ACCOUNT, value_parser = parse_account)]
    account: String,
}

#[derive(Args, Debug)]
struct UserArgs {
    #[command(flatten)]
    target: IamTarget,
    /// The user name (1 to 64 of letters, digits and +=,.@_-).
    user: String,
}

#[derive(Args, Debug)]
struct AccessKeyArgs {
    #[command(flatten)]
    target: IamTarget,
    /// The access key id (AKIA...).
    access_key_id: String,
}

#[derive(Args, Debug)]
struct AttachPolicyArgs {
    #[command(flatten)]
    target: IamTarget,
    /// The user the policy is attached to.
    user: String,
    /// A name for the policy; attaching another document under the same name replaces it.
    #[arg(long)]
    name: String,
    /// The IAM policy document (JSON): a file, or `-` for standard input.
    #[arg(long)]
    file: PathBuf,
}

#[derive(Args, Debug)]
struct DetachPolicyArgs {
    #[command(flatten)]
    target: IamTarget,
    /// The user the policy is attached to.
    user: String,
    /// The name the policy was attached under.
    #[arg(long)]
    name: String,
}

/// Accepts an account id of exactly 12 digits, as AWS does. Store keys start with
/// `<account>/<region>/`, so an account holding anything else (a `/`) could make one
/// scope's keys a prefix of another's.
fn parse_account(text: &str) -> Result<String, String> {
    if coffer_iam::is_account_id(text) {
        Ok(text.to_owned())
    } else {
        Err(coffer_iam::account_id_error(text))
    }
}

/// The account `coffer serve` uses by default; its first administrator lives there.
pub const DEFAULT_ACCOUNT: &str = "000000000000";

/// The credentials file `coffer serve` writes for the first administrator.
pub const ADMIN_CREDENTIALS_FILE: &str = "admin-credentials";
/// The profile name inside that file (`aws --profile coffer`).
pub const ADMIN_PROFILE: &str = "coffer";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Opens the store a server with the same flags uses and its IAM records, after checking
/// the master key against the store. A store no server has started on yet is refused:
/// its master key is chosen by that first start, never here.
fn open_iam(target: &IamTarget) -> Result<(Arc<dyn Store>, Iam), String> {
    let (spec, dir) =
        crate::store_select::locate(target.store.as_ref(), target.data_dir.as_deref(), false);
    let Some(dir) = dir.filter(|_| spec != StoreSpec::Memory) else {
        return Err("the memory store keeps nothing; name a postgres:// or sqlite: store".into());
    };
    let first_start = match &target.store {
        None => format!("coffer serve --data-dir {}", dir.display()),
        Some(StoreSpec::Sqlite(path)) => format!("coffer serve --store sqlite:{}", path.display()),
        Some(_) => "coffer serve --store ...".to_string(),
    };
    if let StoreSpec::Sqlite(db) = &spec
        && !db.is_file()
    {
        return Err(if target.store.is_none() {
            format!(
                "{} holds no database (no {}); start `{first_start}` once first",
                dir.display(),
                db.display(),
            )
        } else {
            format!("there is no database at {}; start `{first_start}` once first", db.display())
        });
    }
    let master = target.master_key.load(&dir)?;
    let store = spec.open()?;
    if !coffer_server::KeyRing::store_has_data(store.as_ref()).map_err(|e| e.to_string())? {
        return Err(format!(
            "{} was never served, so it has no master key yet; start `{first_start}` once first",
            store.describe()
        ));
    }
    let copy = MasterKey::from_text(&master.to_text()).expect("a key's own text form parses");
    coffer_server::KeyRing::open(copy, store.as_ref()).map_err(|e| e.to_string())?;
    let iam = Iam::open(&master, store.as_ref()).map_err(|e| e.to_string())?;
    Ok((store, iam))
}

/// A credentials-file section for an access key, as `aws configure` would write it.
fn credentials_section(profile: &str, id: &str, secret: &SecretAccessKey) -> String {
    format!("[{profile}]\naws_access_key_id = {id}\naws_secret_access_key = {}\n", secret.expose())
}

fn create_user(args: UserArgs) -> Result<(), String> {
    let (store, iam) = open_iam(&args.target)?;
    let user = iam
        .create_user(store.as_ref(), &args.target.account, &args.user, now_ms())
        .map_err(|e| e.to_string())?;
    println!("created user {} ({})", user.principal().arn, user.user_id);
    Ok(())
}

fn delete_user(args: UserArgs) -> Result<(), String> {
    let (store, iam) = open_iam(&args.target)?;
    let keys = iam
        .delete_user(store.as_ref(), &args.target.account, &args.user)
        .map_err(|e| e.to_string())?;
    println!("deleted user {} and {} access key(s)", args.user, keys.len());
    Ok(())
}

fn list_users(target: IamTarget) -> Result<(), String> {
    let (store, iam) = open_iam(&target)?;
    for (user, keys) in iam.list_users(store.as_ref()).map_err(|e| e.to_string())? {
        let policies: Vec<&str> = user.policies.keys().map(String::as_str).collect();
        println!(
            "{}\tkeys: {}\tpolicies: {}",
            user.principal().arn,
            if keys.is_empty() { "-".to_string() } else { keys.join(",") },
            if policies.is_empty() { "-".to_string() } else { policies.join(",") }
        );
    }
    Ok(())
}

/// Prints the new key once, as a credentials-file section named after the user; the
/// secret is stored only sealed and cannot be shown again.
fn create_access_key(args: UserArgs) -> Result<(), String> {
    let (store, iam) = open_iam(&args.target)?;
    let (id, secret) = iam
        .create_access_key(store.as_ref(), &args.target.account, &args.user, now_ms())
        .map_err(|e| e.to_string())?;
    print!("{}", credentials_section(&args.user, &id, &secret));
    eprintln!("coffer: this secret access key is shown once only; store it now");
    Ok(())
}

fn delete_access_key(args: AccessKeyArgs) -> Result<(), String> {
    let (store, iam) = open_iam(&args.target)?;
    let key =
        iam.delete_access_key(store.as_ref(), &args.access_key_id).map_err(|e| e.to_string())?;
    println!("deleted access key {} of user {}", key.access_key_id, key.user_name);
    Ok(())
}

fn attach_policy(args: AttachPolicyArgs) -> Result<(), String> {
    let document = if args.file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| format!("cannot read the policy from standard input: {e}"))?;
        text
    } else {
        fs::read_to_string(&args.file)
            .map_err(|e| format!("cannot read the policy {}: {e}", args.file.display()))?
    };
    let (store, iam) = open_iam(&args.target)?;
    iam.put_user_policy(store.as_ref(), &args.target.account, &args.user, &args.name, &document)
        .map_err(|e| e.to_string())?;
    println!("attached policy {} to user {}", args.name, args.user);
    Ok(())
}

fn detach_policy(args: DetachPolicyArgs) -> Result<(), String> {
    let (store, iam) = open_iam(&args.target)?;
    iam.delete_user_policy(store.as_ref(), &args.target.account, &args.user, &args.name)
        .map_err(|e| e.to_string())?;
    println!("detached policy {} from user {}", args.name, args.user);
    Ok(())
}

/// On the first start of `coffer serve` on a data directory: creates the administrator
/// of `account` and writes its access key to `<data-dir>/admin-credentials` (mode 0600)
/// as an AWS credentials file, saying so once on standard error. Later starts do nothing.
pub fn bootstrap_admin(
    iam: &Iam,
    store: &dyn Store,
    account: &str,
    data_dir: &Path,
) -> Result<(), String> {
    let path = data_dir.join(ADMIN_CREDENTIALS_FILE);
    let mut publish = |id: &str, secret: &SecretAccessKey| {
        let text = format!(
            "# The first administrator of this Coffer server ({}).\n# Use it unchanged: AWS_SHARED_CREDENTIALS_FILE={} aws --profile {ADMIN_PROFILE} --endpoint-url <url> ...\n{}",
            coffer_auth::principal::user_arn(account, coffer_iam::ADMIN_USER),
            path.display(),
            credentials_section(ADMIN_PROFILE, id, secret)
        );
        write_private_file(&path, text.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    let created = iam
        .bootstrap_admin(store, account, now_ms(), &mut publish)
        .map_err(|e| format!("cannot create the first administrator: {e}"))?;
    if let Some(user) = created {
        eprintln!(
            "coffer: created the administrator {} and wrote its access key to {} (mode 0600); use it with `aws --profile {ADMIN_PROFILE}` and AWS_SHARED_CREDENTIALS_FILE={}",
            user.principal().arn,
            path.display(),
            path.display()
        );
    }
    Ok(())
}

/// Writes `bytes` to `path` (mode 0600) through a temporary file, fsynced and renamed, so
/// a crash never leaves a partial credentials file.
fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("new");
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(if dir.as_os_str().is_empty() { Path::new(".") } else { dir })?.sync_all()?;
    }
    Ok(())
}
