//! The command-line interface: parse, resolve settings, run a command, map
//! the result to an exit code.
//!
//! Dependency direction (no module imports one above it):
//! [`args`] (clap types) → [`settings`] (validated settings from flags and
//! environment) → [`commands`] (one file per command) → [`output`], [`live`]
//! (terminal output, progress, the live view) → [`error`].
//!
//! Exit codes (documented in README.md):
//! - `0`: every eligible VM ended migrated and verified (skipped VMs do not count);
//! - `1`: at least one VM failed, parked, or was left unfinished (Ctrl-C);
//! - `2`: bad input (flags, ids, unknown VMs, journal locked/corrupt/newer),
//!   with nothing sent to Azure that changes anything.

pub mod args;
pub mod commands;
pub mod error;
pub mod live;
pub mod output;
pub mod settings;

pub use error::{CliError, Exit};

use clap::Parser;

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
    let global = match settings::GlobalSettings::from_args(&cli.global) {
        Ok(g) => g,
        Err(e) => return report(e),
    };
    output::set_query(global.query.clone());
    let settings = match settings::Settings::from_command(cli.command) {
        Ok(s) => s,
        Err(e) => return report(e),
    };
    init_tracing(&global);
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
    match rt.block_on(commands::dispatch(settings)) {
        Ok(exit) => exit as i32,
        Err(e) => report(e),
    }
}

/// Prints a command's failure and returns its exit code.
fn report(e: CliError) -> i32 {
    match e {
        CliError::BadInput(msg) => {
            eprintln!("ade2eah: error: {}", crate::model::redact(&msg));
            Exit::BadInput as i32
        }
        CliError::Failed(msg) => {
            eprintln!("ade2eah: failed: {}", crate::model::redact(&msg));
            Exit::Incomplete as i32
        }
    }
}

/// Logs: on stderr at the level `--only-show-errors` / `--verbose` /
/// `--debug` choose (else `ADE2EAH_LOG`, else warnings), and as JSON lines
/// into the state folder's log file at debug level once a command attaches
/// it (`journal::log_file`; every Azure request with its ids).
fn init_tracing(global: &settings::GlobalSettings) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};
    let console = match global.console_level {
        Some(level) => EnvFilter::new(level),
        None => EnvFilter::try_from_env("ADE2EAH_LOG").unwrap_or_else(|_| EnvFilter::new("warn")),
    };
    let file = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(false)
        .with_span_list(false)
        .with_writer(|| crate::journal::log_file::LogWriter)
        .with_filter(EnvFilter::new("ade2eah=debug,warn"));
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false)
                .with_filter(console),
        )
        .with(file)
        .try_init();
}
