//! `ade2eah rollback`: bring the named VMs (or a wave's) of the run in
//! `--state` back to their original VM on their original disks
//! ([`crate::step::rollback`]), journaled and resumable like a migration.
//! Exit 0 when every named VM is back (or had nothing to roll back).

use std::io::IsTerminal;

use super::execute::{Drive, drive_entries};
use super::setup::{Reopened, reopen_with};
use crate::cli::error::{CliError, Exit};
use crate::cli::settings::RollbackSettings;
use crate::model::ResourceId;
use crate::step::Outcome;
use crate::step::rollback::Begin;

/// `ade2eah rollback --state DIR --vm ID... [--wave N] --yes [--force] [--reenable-ade]`.
pub async fn rollback(s: RollbackSettings) -> Result<Exit, CliError> {
    crate::journal::inspect::inspect(&s.resume.state)?;
    let Reopened {
        journal,
        meta,
        poll,
        cloud,
        entries,
    } = reopen_with(&s.resume, false).await?;
    let mut vms: Vec<ResourceId> = Vec::new();
    for vm in &s.vms {
        if !entries.iter().any(|e| e.id.key() == vm.key()) {
            return Err(CliError::BadInput(format!(
                "{vm} is not a VM of the run in {}",
                s.resume.state.display()
            )));
        }
        vms.push(vm.clone());
    }
    if let Some(n) = s.wave {
        let plan = crate::journal::state_dir::load_plan(&s.resume.state).ok_or_else(|| {
            CliError::BadInput(format!(
                "--wave: {} holds no run started with `run --plan`",
                s.resume.state.display()
            ))
        })?;
        if n > plan.waves.len() {
            return Err(CliError::BadInput(format!(
                "wave {n} does not exist; the plan has {} wave(s)",
                plan.waves.len()
            )));
        }
        for e in &entries {
            if plan.wave_of(&e.id) == Some(n) && !vms.iter().any(|v| v.key() == e.id.key()) {
                vms.push(e.id.clone());
            }
        }
    }
    if !s.yes && !confirm(vms.len())? {
        return Err(CliError::BadInput(
            "not confirmed; nothing was changed (pass --yes to roll back without asking)".into(),
        ));
    }
    let begun = crate::engine::rollback::request(&journal, &vms, &s.request)?;
    let refused: Vec<String> = begun
        .iter()
        .filter_map(|(id, b)| match b {
            Begin::Refused(why) => Some(format!("{}: {why}", id.name())),
            _ => None,
        })
        .collect();
    if !refused.is_empty() {
        return Err(CliError::BadInput(format!(
            "nothing was changed: {}",
            refused.join("; ")
        )));
    }
    for (id, b) in &begun {
        if let Begin::NoOp(why) = b {
            eprintln!("rollback {}: {why}", id.name());
        }
    }
    let started: Vec<&ResourceId> = begun
        .iter()
        .filter(|(_, b)| *b == Begin::Started)
        .map(|(id, _)| id)
        .collect();
    let todo: Vec<_> = journal
        .index()?
        .into_iter()
        .filter(|e| started.iter().any(|id| id.key() == e.id.key()))
        .collect();
    let drive = Drive {
        poll,
        max_parallel: meta.max_parallel.max(1),
        output: s.resume.output,
        break_lease: false,
    };
    let done = drive_entries(cloud, journal, &meta, todo, &drive).await?;
    let back = done
        .iter()
        .all(|e| matches!(e.outcome, Outcome::RolledBack { .. }));
    Ok(if back { Exit::Done } else { Exit::Incomplete })
}

fn confirm(n: usize) -> Result<bool, CliError> {
    if !std::io::stdin().is_terminal() {
        return Err(CliError::BadInput(
            "refusing to roll back without confirmation: pass --yes (stdin is not a terminal)"
                .into(),
        ));
    }
    eprint!(
        "Roll back {n} VM(s) to their original VM on their original disks? A re-created VM is deleted first. [y/N] "
    );
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| CliError::Failed(e.to_string()))?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}
