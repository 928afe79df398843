//! `ade2eah resume`: continue the run journaled in `--state` (parked VMs
//! are retried); a planned run continues mid-wave.

use super::execute::{Drive, execute, execute_waves};
use super::setup::{Reopened, reopen};
use crate::cli::error::{CliError, Exit};
use crate::cli::settings::ResumeSettings;

/// `ade2eah resume` (of a plain or a planned run).
pub async fn resume(s: ResumeSettings) -> Result<Exit, CliError> {
    // A directory that is not a journal is refused before the plan is looked for.
    crate::journal::inspect::inspect(&s.state)?;
    let plan = if is_plan_run(&s.state) {
        let mut plan = crate::journal::state_dir::load_plan(&s.state).ok_or_else(|| {
            CliError::BadInput(format!(
                "{} has an unreadable fleet plan",
                s.state.display()
            ))
        })?;
        if let Some(m) = s.max_parallel {
            plan.max_parallel = m.max(1);
        }
        Some(plan)
    } else {
        None
    };
    let Reopened {
        journal,
        meta,
        poll,
        cloud,
        entries,
    } = reopen(&s).await?;
    let drive = Drive {
        poll,
        max_parallel: s.max_parallel.unwrap_or(meta.max_parallel).max(1),
        output: s.output,
        break_lease: s.break_lease,
    };
    match plan {
        // A planned run continues mid-wave (the plan carries its parallelism).
        Some(plan) => execute_waves(cloud, journal, &meta, &plan, entries, drive).await,
        None => execute(cloud, journal, &meta, entries, drive).await,
    }
}

/// True when `dir` holds a run started with `run --plan`.
pub fn is_plan_run(dir: &std::path::Path) -> bool {
    crate::journal::state_dir::has_plan(dir)
}
