//! `ade2eah report`: the state of a run (during or after) as a table, JSON
//! or Markdown, streamed from the journal; `--html FILE` also writes the
//! self-contained HTML timeline ([`crate::report::html`]).

use super::status::no_journal;
use crate::cli::error::{CliError, Exit};
use crate::cli::settings::{ReportFormat, ReportSettings};
use crate::journal::{Journal, JournalError, RunMeta};
use crate::plan::FrozenPlan;

/// `ade2eah report`: streamed from the journal one record summary at a
/// time (see [`crate::report`]).
pub fn report(a: ReportSettings) -> Result<Exit, CliError> {
    let journal = Journal::open_to_read(&a.state).map_err(|e| match e {
        JournalError::NoRun { dir } => no_journal(&dir),
        e => e.into(),
    })?;
    let meta = journal.require_meta()?;
    let plan = crate::journal::state_dir::load_plan(&a.state);
    if let Some(file) = &a.html {
        write_html(file, &meta, plan.as_ref(), &journal)?;
        eprintln!("timeline written to {}", file.display());
        return Ok(Exit::Done);
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 << 10, stdout.lock());
    write_run(&mut out, a.format, &meta, plan.as_ref(), &journal)?;
    std::io::Write::flush(&mut out)
        .map_err(|e| CliError::Failed(format!("cannot write the output: {e}")))?;
    Ok(Exit::Done)
}

/// Writes the HTML timeline of the run in `journal` to `file` (atomically).
/// Holds every VM's summary (the timeline needs them all at once).
pub fn write_html(
    file: &std::path::Path,
    meta: &RunMeta,
    plan: Option<&FrozenPlan>,
    journal: &Journal,
) -> Result<(), CliError> {
    use crate::report;
    let entries = journal.index()?;
    let vms = entries
        .iter()
        .map(|e| journal.summary(&e.id))
        .collect::<Result<Vec<_>, _>>()?;
    let times = report::RunTimes::of(plan, &vms);
    let head = report::run_head(meta, plan, &entries, &times);
    let page = report::html::render(meta, plan, &head, &vms, &times);
    crate::journal::state_dir::write_atomic(file, page.as_bytes())
        .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", file.display())))
}

/// Downtime totals of the run in `journal`: one pass over the record
/// summaries that keeps only the totals.
fn run_times(
    plan: Option<&FrozenPlan>,
    journal: &Journal,
    entries: &[crate::step::VmEntry],
) -> Result<crate::report::RunTimes, CliError> {
    let mut times = crate::report::RunTimes::default();
    for e in entries {
        let s = journal.summary(&e.id)?;
        times.add(plan.and_then(|p| p.wave_of(&e.id)), &s);
    }
    Ok(times)
}

/// Writes the report of the run in `journal` in `format`: the summary from
/// the index (timing totals from a first pass over the records), then one
/// VM at a time.
pub fn write_run(
    out: &mut dyn std::io::Write,
    format: ReportFormat,
    meta: &RunMeta,
    plan: Option<&FrozenPlan>,
    journal: &Journal,
) -> Result<(), CliError> {
    use crate::report;
    let io = |e: std::io::Error| CliError::Failed(format!("cannot write the output: {e}"));
    let entries = journal.index()?;
    let times = run_times(plan, journal, &entries)?;
    let head = report::run_head(meta, plan, &entries, &times);
    match format {
        f if !crate::cli::output::own_rendering(f) => {
            crate::cli::output::write_data(out, f, |out| {
                crate::cli::output::write_with_vms(out, &head, entries.len(), |i| {
                    Ok(report::run_vm_json(plan, &journal.summary(&entries[i].id)?))
                })?;
                out.write_all(b"\n").map_err(io)
            })
        }
        ReportFormat::Table => {
            let mut t = report::RunTable::default();
            for e in &entries {
                t.add(plan, &journal.summary(&e.id)?);
            }
            out.write_all(t.render(meta, &head).as_bytes()).map_err(io)
        }
        _ => {
            out.write_all(report::markdown_head(meta, &head).as_bytes())
                .map_err(io)?;
            for e in &entries {
                let row = report::markdown_row(plan, &journal.summary(&e.id)?);
                out.write_all(row.as_bytes()).map_err(io)?;
            }
            Ok(())
        }
    }
}
