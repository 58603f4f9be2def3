//! The `coffer` binary: a thin command-line layer over `coffer-server`.

mod admin;
mod audit_cmd;
mod backup;
mod backup_format;
mod config_file;
mod master_arg;
mod serve;
mod store_select;

use clap::{Parser, Subcommand};
use coffer_crypto::SecretBytes;
use std::process::ExitCode;
use std::sync::Mutex;

/// mimalloc instead of the C library's allocator: request handling allocates and
/// frees many small buffers across threads, where glibc's malloc spent ~10% of the
/// server's CPU (BENCHMARKS.md). Built without transparent huge pages: with them a
/// thread's first allocation touched 2 MiB at once, and the resident memory after a
/// load of 64 connections was ~150 MiB instead of ~40.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The version and the commit built (`build.rs`; "unknown" outside a git checkout).
pub const VERSION: &str =
    concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("COFFER_GIT_COMMIT"), ")");

/// Coffer: a self-hostable AWS Secrets Manager.
#[derive(Parser)]
#[command(name = "coffer", version = VERSION, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Secrets Manager API.
    // Boxed: its flags make it far larger than the other commands.
    Serve(Box<serve::ServeArgs>),
    /// Bring a store's schema up to date and exit (serve does this too, at start).
    Migrate(store_select::MigrateArgs),
    /// Write a consistent, still-encrypted snapshot of a store to a file.
    Backup(backup::BackupArgs),
    /// Load a backup into an empty store (SQLite or PostgreSQL).
    Restore(backup::RestoreArgs),
    /// IAM users, access keys and policies of any store (also while servers run), and
    /// master-key rotation.
    Admin(admin::AdminArgs),
    /// The audit trail: `coffer audit verify` checks its hash chains.
    Audit(audit_cmd::AuditArgs),
    /// Configuration files for `coffer serve --config`: `coffer config check FILE`.
    Config(config_file::ConfigArgs),
}

/// The environment variable that may hold the master key (`coffer serve`, `coffer admin`).
pub const MASTER_KEY_ENV: &str = "COFFER_MASTER_KEY";

/// `COFFER_MASTER_KEY` as the process was started with it, taken out of the environment
/// before anything else runs (see [`take_master_key_from_env`]).
static MASTER_KEY_FROM_ENV: Mutex<Option<SecretBytes>> = Mutex::new(None);

/// The master key text the process was started with in `COFFER_MASTER_KEY`, if any.
/// Handed out once: the caller's copy is zeroized when dropped.
pub fn master_key_from_env() -> Option<SecretBytes> {
    MASTER_KEY_FROM_ENV.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
}

/// Moves `COFFER_MASTER_KEY` out of the environment: the value is kept in zeroizing memory
/// for [`master_key_from_env`], its bytes in the process's initial environment block (what
/// `/proc/<pid>/environ` shows, and what `unsetenv` leaves in place) are overwritten with
/// zeros, and the variable is removed, so neither child processes nor a reader of the
/// process environment ever see the key. (A value that is not UTF-8 is left as it is,
/// as before: it was never read as a key.)
fn take_master_key_from_env() {
    let Some(value) = std::env::var_os(MASTER_KEY_ENV) else { return };
    let Ok(text) = value.into_string() else { return };
    *MASTER_KEY_FROM_ENV.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
        Some(SecretBytes::from(text));
    unsafe extern "C" {
        fn getenv(name: *const std::ffi::c_char) -> *mut std::ffi::c_char;
    }
    // SAFETY: called first thing in `main`, before any thread is spawned (the allocator
    // starts none), so nothing reads or writes the environment concurrently. `getenv`
    // returns a pointer to the NUL-terminated value inside the environment block (or
    // null); writing zeros over its bytes stays within that string. `remove_var` is then
    // sound for the same reason: no other thread exists yet.
    unsafe {
        let found = getenv(c"COFFER_MASTER_KEY".as_ptr());
        if !found.is_null() {
            let len = std::ffi::CStr::from_ptr(found).to_bytes().len();
            std::ptr::write_bytes(found, 0, len);
        }
        std::env::remove_var(MASTER_KEY_ENV);
    }
}

fn main() -> ExitCode {
    take_master_key_from_env();
    let cli = Cli::parse();
    let result = match cli.command {
        // The process's arguments from `serve` on, to tell flags given from the file's.
        Command::Serve(args) => {
            config_file::apply(*args, std::env::args_os().skip(1).collect()).and_then(serve::run)
        }
        Command::Migrate(args) => store_select::migrate(args),
        Command::Backup(args) => backup::backup(args),
        Command::Restore(args) => backup::restore(args),
        Command::Admin(args) => admin::run(args),
        Command::Audit(args) => audit_cmd::run(args),
        Command::Config(args) => config_file::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("coffer: error: {message}");
            ExitCode::FAILURE
        }
    }
}
