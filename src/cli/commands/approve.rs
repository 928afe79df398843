//! `ade2eah approve`: open an approval gate of a planned run (then `resume`).

use crate::cli::error::{CliError, Exit};
use crate::cli::settings::ApproveSettings;

/// `ade2eah approve --state DIR --wave N`.
pub fn approve(a: ApproveSettings) -> Result<Exit, CliError> {
    let plan = crate::journal::state_dir::load_plan(&a.state).ok_or_else(|| {
        CliError::BadInput(format!(
            "{} holds no run started with `run --plan`",
            a.state.display()
        ))
    })?;
    if a.wave == 0 || a.wave > plan.waves.len() {
        return Err(CliError::BadInput(format!(
            "wave {} does not exist; the plan has {} wave(s)",
            a.wave,
            plan.waves.len()
        )));
    }
    crate::journal::state_dir::approve(&a.state, a.wave)
        .map_err(|e| CliError::Failed(format!("cannot record the approval: {e}")))?;
    eprintln!(
        "wave {} ({}) approved; run `ade2eah resume --state {}`",
        a.wave,
        plan.waves[a.wave - 1].name,
        a.state.display()
    );
    Ok(Exit::Done)
}
