//! The `coffer` binary: a thin command-line layer over `coffer-server`.

mod admin;
mod serve;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

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
    /// Administration of a data directory: IAM users, access keys and policies.
    Admin(admin::AdminArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Admin(args) => admin::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("coffer: error: {message}");
            ExitCode::FAILURE
        }
    }
}
