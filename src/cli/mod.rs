//! The command-line interface: parse, resolve settings, run a command, map
//! the result to an exit code.
//!
//! Exit codes (documented in README.md):
//! - `0`: every eligible VM ended migrated and verified (skipped VMs do not count);
//! - `1`: at least one VM failed, parked, or was left unfinished (Ctrl-C);
//! - `2`: bad input (flags, ids, unknown VMs, journal locked/corrupt/newer),
//!   with nothing sent to Azure that changes anything.

pub mod args;
pub mod bench_copy;
pub mod commands;
pub mod fleet_args;
pub mod fleet_bench;
pub mod live;
pub mod output;
pub mod plan_cmd;

use clap::Parser;

/// What a command concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// All eligible VMs verified.
    Done = 0,
    /// Some VM failed, parked or is unfinished.
    Incomplete = 1,
    /// Bad input; nothing was changed.
    BadInput = 2,
}

/// A command's failure, sorted by exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The operator's input is wrong (exit 2).
    #[error("{0}")]
    BadInput(String),
    /// Something failed at run time (exit 1).
    #[error("{0}")]
    Failed(String),
}

impl From<crate::journal::JournalError> for CliError {
    fn from(e: crate::journal::JournalError) -> Self {
        use crate::journal::JournalError as J;
        match e {
            J::Io { .. } => CliError::Failed(e.to_string()),
            J::Locked { .. }
            | J::NewerSchema { .. }
            | J::Corrupt { .. }
            | J::NoRun { .. }
            | J::RunExists { .. } => CliError::BadInput(e.to_string()),
        }
    }
}

/// Entry point used by `main.rs`; returns the process exit code.
pub fn main() -> i32 {
    let cli = match args::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    init_tracing();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ade2eah: cannot start the async runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(commands::dispatch(cli.command)) {
        Ok(exit) => exit as i32,
        Err(CliError::BadInput(msg)) => {
            eprintln!("ade2eah: error: {}", crate::model::redact(&msg));
            Exit::BadInput as i32
        }
        Err(CliError::Failed(msg)) => {
            eprintln!("ade2eah: failed: {}", crate::model::redact(&msg));
            Exit::Incomplete as i32
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("ADE2EAH_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
