//! `msec`: the command-line tool of the msec security layers.
//!
//! Subcommands arrive with the crates they serve (`apikey`, `keyring`, `audit`, `token`); `msec policy check`
//! validates an authorization policy file.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod apikey;
mod audit;
mod keyring;

#[derive(Parser)]
#[command(name = "msec", version, about = "msec security tooling")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Authorization policies.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// msec-crypto keyrings: new, rotate, promote, set-status, show, rewrap.
    #[command(subcommand)]
    Keyring(keyring::KeyringCmd),
    /// Tamper-evident audit logs: verify, tail, keygen.
    #[command(subcommand)]
    Audit(audit::AuditCmd),
    /// API keys for msec-authn: new.
    #[command(subcommand)]
    Apikey(apikey::ApiKeyCmd),
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// Checks a TOML policy file and prints its rules.
    Check {
        /// The policy file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Policy(PolicyCmd::Check { file }) => policy_check(&file),
        Command::Keyring(cmd) => keyring::run(cmd),
        Command::Audit(cmd) => audit::run(cmd),
        Command::Apikey(cmd) => apikey::run(cmd),
    }
}

#[allow(clippy::print_stdout)]
fn policy_check(file: &std::path::Path) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    match msec_core::policy::Policy::from_toml(&text) {
        Ok(p) => {
            println!("{}: {} rules, mode {:?}", file.display(), p.rules().len(), p.mode());
            for r in p.rules() {
                let routes: Vec<&str> = r.routes().iter().map(|s| s.as_str()).collect();
                println!("  {:?} {:?} on {}", r.effect(), r.name(), routes.join(", "));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}: {e}", file.display());
            ExitCode::FAILURE
        }
    }
}
