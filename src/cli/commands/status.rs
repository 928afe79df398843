//! `ade2eah status`: the state of the run journaled in `--state`; while a
//! run holds the journal, its live view (`live.json`).

use super::execute::print_summary;
use crate::cli::error::{CliError, Exit};
use crate::cli::settings::{Output, StatusSettings};
use crate::journal::{Journal, JournalError};

/// `ade2eah status`.
pub fn status(s: StatusSettings) -> Result<Exit, CliError> {
    let journal = match Journal::open_to_read(&s.state) {
        Ok(j) => j,
        // A live run holds the journal: show its live view instead.
        Err(e @ JournalError::Locked { .. }) => {
            let Some(view) = crate::cli::live::read(&s.state).filter(|v| !v.finished) else {
                return Err(e.into());
            };
            if s.output == Output::Table && crate::cli::output::own_rendering(s.output) {
                print!("{}", crate::cli::live::table(&view));
            } else {
                let v = serde_json::json!({"live": true, "run": view});
                crate::cli::output::print_value(s.output, &v)?;
            }
            return Ok(Exit::Done);
        }
        Err(JournalError::NoRun { dir }) => return Err(no_journal(&dir)),
        Err(e) => return Err(e.into()),
    };
    let meta = journal.require_meta()?;
    print_summary(&meta, &journal, s.output)?;
    Ok(Exit::Done)
}

/// What `status` and `report` say about a directory with no journal.
pub fn no_journal(dir: &std::path::Path) -> CliError {
    CliError::BadInput(format!(
        "no journal in {}; pass --state DIR of a run",
        dir.display()
    ))
}
