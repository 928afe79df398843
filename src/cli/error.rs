//! What a command concludes ([`Exit`]) and how it fails ([`CliError`]),
//! sorted by exit code. The bottom of `cli/`: every other module may use it.

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
            | J::NotAJournal { .. }
            | J::NoRun { .. }
            | J::RunExists { .. } => CliError::BadInput(e.to_string()),
        }
    }
}
