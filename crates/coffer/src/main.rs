//! The `coffer` binary: a thin command-line layer over `coffer-server`.

mod admin;
mod audit_cmd;
mod backup;
mod master_arg;
mod serve;
mod store_select;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// mimalloc instead of the C library's allocator: request handling allocates and
/// frees many small buffers across threads, where glibc's malloc spent ~10% of the
/// server's CPU (BENCHMARKS.md). Built without transparent huge pages: with them a
/// thread's first allocation touched 2 MiB at once, and the resident memory after a
/// load of 64 connections was ~150 MiB instead of ~40.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Coffer: a self-hostable AWS Secrets Manager.
#[derive(Parser)]
#[command(name = "coffer", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Secrets Manager API.
    Serve(serve::ServeArgs),
    /// Bring a store's schema up to date and exit (serve does this too, at start).
    Migrate(store_select::MigrateArgs),
    /// Write a consistent, still-encrypted snapshot of a store to a file.
    Backup(backup::BackupArgs),
    /// Load a backup into an empty store (SQLite or PostgreSQL).
    Restore(backup::RestoreArgs),
    /// Offline maintenance of a data directory (for example rotating the master key).
    Admin(admin::AdminArgs),
    /// The audit trail: `coffer audit verify` checks its hash chains.
    Audit(audit_cmd::AuditArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Migrate(args) => store_select::migrate(args),
        Command::Backup(args) => backup::backup(args),
        Command::Restore(args) => backup::restore(args),
        Command::Admin(args) => admin::run(args),
        Command::Audit(args) => audit_cmd::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("coffer: error: {message}");
            ExitCode::FAILURE
        }
    }
}
