//! The command-line client: `dcs-backup instance|backup|restore|policy|pitr …`
//! against a running service, over the same signed API the SDKs use
//! (`crate::signing` signs; nothing here touches the service's internals).
//!
//! `client.rs` sends signed requests and turns every failure into one
//! line; one module per resource holds its commands (`instances.rs`,
//! `backups.rs`, `restores.rs`, `policies.rs`, `pitr.rs`); `progress.rs` follows a
//! job with `--wait`; `output.rs` prints tables and sizes; `when.rs` reads
//! the times users type. DCS field names are read here as a client reads
//! them, from `serde_json::Value`s, never from the server's types.

mod backups;
mod client;
mod instances;
mod output;
mod pitr;
mod policies;
mod progress;
mod restores;
mod when;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

pub use backups::BackupCommand;
pub use instances::InstanceCommand;
pub use pitr::PitrCommand;
pub use policies::PolicyCommand;
pub use restores::RestoreCommand;

/// Exit codes of the client, also listed in `--help` and the README.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  done (with --wait: the job succeeded)
  1  the job failed, or a dry run says the restore would be refused
  2  the command could not be carried out: bad arguments, an error answered
     by the service, the service unreachable, credentials unreadable or refused
  3  a downloaded file did not match the backup's manifest (it was deleted)";

/// Where the service is and how to sign for it; given to every client
/// command (before or after the subcommand).
#[derive(Args, Debug, Clone)]
pub struct ClientOpts {
    /// Base URL of the running service.
    #[arg(
        long,
        global = true,
        env = "DCS_BACKUP_SERVER",
        default_value = "http://127.0.0.1:8080",
        value_name = "URL"
    )]
    pub server: String,
    /// The credentials file `serve` wrote: {"project_id","ak","sk"}.
    #[arg(
        long,
        global = true,
        env = "DCS_BACKUP_CREDENTIALS",
        default_value = "./data/credentials.json",
        value_name = "FILE"
    )]
    pub credentials: PathBuf,
    /// Print the API's JSON instead of tables and sentences.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The client's commands, one group per resource.
#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Adopt, list, show and remove Redis/Valkey instances.
    #[command(after_help = EXIT_CODES)]
    Instance(InstanceCommand),
    /// Take, list, download and delete backups.
    #[command(after_help = EXIT_CODES)]
    Backup(BackupCommand),
    /// Restore a backup into an instance, or see what a restore would do.
    #[command(after_help = EXIT_CODES)]
    Restore(RestoreCommand),
    /// Show, set or turn off an instance's automatic backups.
    #[command(after_help = EXIT_CODES)]
    Policy(PolicyCommand),
    /// Point-in-time recovery: its policy, restorable periods, restores.
    #[command(after_help = EXIT_CODES)]
    Pitr(PitrCommand),
}

/// Why a command did not succeed, and the exit code that says so.
#[derive(Debug)]
pub struct CliError {
    pub exit: u8,
    pub message: String,
}

impl CliError {
    /// Exit 1: the job failed (or would).
    pub fn job(message: impl Into<String>) -> Self {
        Self {
            exit: 1,
            message: message.into(),
        }
    }

    /// Exit 2: the command could not be carried out.
    pub fn fail(message: impl Into<String>) -> Self {
        Self {
            exit: 2,
            message: message.into(),
        }
    }

    /// Exit 3: downloaded bytes did not match the manifest.
    pub fn integrity(message: impl Into<String>) -> Self {
        Self {
            exit: 3,
            message: message.into(),
        }
    }
}

pub type CliResult<T = ()> = Result<T, CliError>;

/// Runs one client command; prints what went wrong as one line.
pub async fn run(command: ClientCommand) -> ExitCode {
    let result = match command {
        ClientCommand::Instance(c) => instances::run(c).await,
        ClientCommand::Backup(c) => backups::run(c).await,
        ClientCommand::Restore(c) => restores::run(c).await,
        ClientCommand::Policy(c) => policies::run(c).await,
        ClientCommand::Pitr(c) => pitr::run(c).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.message);
            ExitCode::from(e.exit)
        }
    }
}
