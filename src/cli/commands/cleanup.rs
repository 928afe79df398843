//! `ade2eah cleanup`: lists (dry run, the default) or deletes (`--yes`) what
//! verified VMs no longer need once the retention has passed: copy-round
//! snapshots, backup snapshots and detached original disks the journal
//! owns ([`crate::engine::cleanup`]); reports the ADE key material that is
//! no longer needed without touching it.
//!
//! Exit: 0 when everything listed was handled (dry run: listed), 1 when a
//! deletion or a read failed (rerun to finish), 2 for bad input (no
//! journal, a run holds it).

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};

use super::setup::connect;
use super::status::no_journal;
use crate::cli::error::{CliError, Exit};
use crate::cli::settings::{CleanupSettings, Output};
use crate::engine::cleanup::{CleanupOptions, CleanupReport, run_cleanup};
use crate::journal::{Journal, JournalError};

/// `ade2eah cleanup`.
pub async fn cleanup(s: CleanupSettings) -> Result<Exit, CliError> {
    crate::journal::inspect::inspect(&s.state).map_err(|e| match e {
        JournalError::NoRun { dir } => no_journal(&dir),
        e => e.into(),
    })?;
    // Deleting journals every step: it needs the writer's journal (refused
    // while a run holds it); the dry run only reads.
    let journal = if s.delete {
        Journal::open_existing(&s.state)
    } else {
        Journal::open_to_read(&s.state)
    }
    .map_err(|e| match e {
        JournalError::NoRun { dir } => no_journal(&dir),
        e => e.into(),
    })?;
    let meta = journal.require_meta()?;
    let poll = s.conn.poll_or(meta.poll_interval_secs)?;
    let cloud = connect(&s.conn, Some(meta.arm_endpoint.as_str()), poll).await?;
    let opts = CleanupOptions {
        run_id: meta.run_id.clone(),
        now: time::OffsetDateTime::now_utc(),
        retention: s.retention,
        delete: s.delete,
    };
    let report = run_cleanup(&cloud, &journal, &opts).await?;
    journal.flush()?;
    if s.output == Output::Table && crate::cli::output::own_rendering(s.output) {
        print!("{}", table(&report));
    } else {
        let v = serde_json::to_value(&report)
            .map_err(|e| CliError::Failed(format!("cannot write the output: {e}")))?;
        crate::cli::output::print_value(s.output, &v)?;
    }
    if report.errors() > 0 {
        eprintln!(
            "ade2eah: {} deletion(s) failed; run `ade2eah cleanup --state {} --yes` again to finish",
            report.errors(),
            s.state.display()
        );
        return Ok(Exit::Incomplete);
    }
    if !s.delete && report.lines.iter().any(|l| l.action == "would-delete") {
        eprintln!("ade2eah: dry run; add --yes to delete what is marked would-delete");
    }
    Ok(Exit::Done)
}

/// The terminal rendering: one row per owned resource, then the ADE keys.
fn table(r: &CleanupReport) -> String {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    t.set_header(["VM", "kind", "resource", "action", "reason"]);
    for l in &r.lines {
        t.add_row([
            l.vm.name().to_string(),
            l.kind.to_string(),
            l.id.name().to_string(),
            l.action.to_string(),
            l.reason.clone().unwrap_or_default(),
        ]);
    }
    let mut out = format!("{t}\n");
    if r.not_verified > 0 {
        out.push_str(&format!(
            "{} VM(s) not verified: nothing of them is cleaned.\n",
            r.not_verified
        ));
    }
    for k in &r.keys {
        let state = if k.no_longer_needed {
            "no longer needed (originals and backups gone)"
        } else {
            "still needed (original disks or backups remain)"
        };
        out.push_str(&format!(
            "ADE keys of {} ({}): {state}\n",
            k.vm.name(),
            k.outcome
        ));
        for v in k.keys.vaults.iter().chain(&k.keys.vault_urls) {
            out.push_str(&format!("  key vault  {v}\n"));
        }
        for u in &k.keys.kek_urls {
            out.push_str(&format!("  KEK        {u}\n"));
        }
        for (disk, u) in &k.keys.disk_secrets {
            out.push_str(&format!("  secret     {u}  (disk {})\n", disk.name()));
        }
    }
    for v in &r.vaults_no_longer_needed {
        out.push_str(&format!(
            "Key vault {v}: no VM of this run needs it for ADE any more; `enabledForDiskEncryption` can be turned off if nothing outside this run uses it (not changed by ade2eah).\n"
        ));
    }
    out
}
