//! `ade2eah completions SHELL` and `ade2eah man`: generated from the clap
//! definitions (clap_complete, clap_mangen), so they never drift from the flags.

use clap::CommandFactory;

use crate::cli::args::Cli;
use crate::cli::error::{CliError, Exit};

/// Prints the completion script for `shell` on stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<Exit, CliError> {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "ade2eah", &mut std::io::stdout());
    Ok(Exit::Done)
}

/// Prints the man page (roff) on stdout.
pub fn man() -> Result<Exit, CliError> {
    clap_mangen::Man::new(Cli::command())
        .render(&mut std::io::stdout())
        .map_err(|e| CliError::Failed(format!("cannot write the man page: {e}")))?;
    Ok(Exit::Done)
}
