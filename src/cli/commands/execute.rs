//! Driving a started (or resumed) run to its end: the engine for a plain
//! run, the wave executor for a planned one; then the summary and the exit
//! code.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::setup::{ctrl_c_channel, progress_for};
use crate::cli::error::{CliError, Exit};
use crate::cli::live::Live;
use crate::cli::output::{status_table_of, write_status_json};
use crate::cli::settings::Output;
use crate::engine::arm::ArmCloud;
use crate::engine::waves::{WaveRun, WaveStop};
use crate::engine::{Engine, EngineOptions};
use crate::journal::{Journal, RunMeta};
use crate::plan::FrozenPlan;
use crate::step::{Outcome, VmEntry};

/// How a run is driven: what `run` and `resume` pass on.
pub struct Drive {
    /// Poll interval.
    pub poll: Duration,
    /// Most VMs at once (plain runs; a plan carries its own).
    pub max_parallel: usize,
    /// Output of the final summary.
    pub output: Output,
    /// `--break-lease`.
    pub break_lease: bool,
}

impl Drive {
    fn engine_options(
        &self,
        journal: &Journal,
        cloud: &ArmCloud,
    ) -> Result<EngineOptions, CliError> {
        let mut opts = EngineOptions::for_cloud(self.poll, cloud);
        opts.max_parallel = self.max_parallel;
        opts.lease_ttl = journal.lease_meta()?.ttl();
        opts.break_lease = self.break_lease;
        Ok(opts)
    }
}

/// Runs `entries` through the engine, then prints the summary.
pub async fn execute(
    cloud: ArmCloud,
    journal: Arc<Journal>,
    meta: &RunMeta,
    entries: Vec<VmEntry>,
    drive: Drive,
) -> Result<Exit, CliError> {
    let done = drive_entries(cloud, journal, meta, entries, &drive).await?;
    Ok(exit_for(&done))
}

/// Runs the active `entries` through one engine (progress display,
/// Ctrl-C), flushes the journal and prints the summary; returns the
/// index lines after (`run`, `resume`, `rollback`).
pub async fn drive_entries(
    cloud: ArmCloud,
    journal: Arc<Journal>,
    meta: &RunMeta,
    entries: Vec<VmEntry>,
    drive: &Drive,
) -> Result<Vec<VmEntry>, CliError> {
    let opts = drive.engine_options(&journal, &cloud)?;
    let live = Live::start(journal.dir(), progress_for(drive.output));
    let engine = Engine::new(
        Arc::new(cloud),
        journal.clone(),
        meta.run_id.clone(),
        opts,
        live.clone(),
        ctrl_c_channel(),
    );
    // (Each VM's lease is released by the engine when it is verified.)
    let done = engine.run(entries).await?;
    live.finish();
    journal.flush()?;
    print_summary(meta, &journal, drive.output)?;
    Ok(done)
}

/// Runs `entries` wave by wave as `plan` says, then prints the summary and
/// why it stopped.
pub async fn execute_waves(
    cloud: ArmCloud,
    journal: Arc<Journal>,
    meta: &RunMeta,
    plan: &FrozenPlan,
    entries: Vec<VmEntry>,
    drive: Drive,
) -> Result<Exit, CliError> {
    let dir: &Path = journal.dir();
    // (`max_parallel` is the wave's, set per wave.)
    let opts = drive.engine_options(&journal, &cloud)?;
    let cloud: Arc<ArmCloud> = Arc::new(cloud);
    let live = Live::start(dir, progress_for(drive.output));
    let run = WaveRun {
        cloud: cloud.clone(),
        journal: journal.clone(),
        dir: dir.to_path_buf(),
        run_id: meta.run_id.clone(),
        opts: opts.clone(),
        progress: live.clone(),
        cancel: ctrl_c_channel(),
    };
    let (done, stop) = run.execute(plan, entries).await?;
    live.finish();
    journal.flush()?;
    // (Each VM's lease is released by the engine when it is verified.)
    print_summary(meta, &journal, drive.output)?;
    match &stop {
        WaveStop::Completed => {}
        WaveStop::Halted { reason, .. } => eprintln!(
            "ade2eah: halted: {reason}; run `ade2eah resume --state {}` after fixing the causes",
            dir.display()
        ),
        WaveStop::AwaitingApproval(n) => eprintln!(
            "ade2eah: paused before wave {n} ({}): approval required; run `ade2eah approve --state {} --wave {n}`, then `ade2eah resume --state {}`",
            plan.waves[n - 1].name,
            dir.display(),
            dir.display()
        ),
        WaveStop::Cancelled => {}
    }
    Ok(match stop {
        WaveStop::Completed => exit_for(&done),
        _ => Exit::Incomplete,
    })
}

/// 0 iff every VM that was not skipped is verified.
pub fn exit_for(records: &[VmEntry]) -> Exit {
    if records
        .iter()
        .all(|r| matches!(r.outcome, Outcome::Verified | Outcome::Skipped { .. }))
    {
        Exit::Done
    } else {
        Exit::Incomplete
    }
}

/// Prints the run's state as `status` does, read from the journal one
/// record at a time.
pub fn print_summary(meta: &RunMeta, journal: &Journal, output: Output) -> Result<(), CliError> {
    use std::io::Write;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 << 10, stdout.lock());
    if output == Output::Table && crate::cli::output::own_rendering(output) {
        writeln!(out, "{}", status_table_of(journal)?)
            .map_err(|e| CliError::Failed(format!("cannot write the output: {e}")))?;
    } else {
        // (Markdown: the generic rendering of the status JSON.)
        crate::cli::output::write_data(&mut out, output, |w| write_status_json(w, meta, journal))?;
    }
    out.flush()
        .map_err(|e| CliError::Failed(format!("cannot write the output: {e}")))
}
