//! `ade2eah run`: discover the `--vm`s (or bind a `--plan` file to the
//! inventory), start the run in the journal, drive it to its end.

use std::io::IsTerminal;
use std::path::Path;

use super::execute::{Drive, execute, execute_waves};
use super::plan::{build_plan, plan_err};
use super::setup::{connect, planned_records, start_run};
use crate::cli::error::{CliError, Exit};
use crate::cli::settings::{RunSettings, is_subscription_id};
use crate::discovery::{DiscoverError, DiscoverOptions, classify_all, discover};
use crate::engine::arm::ArmCloud;
use crate::journal::RunMeta;
use crate::plan::file::PlanFile;
use crate::plan::waves::BudgetScope;
use crate::plan::{FrozenPlan, FrozenWave};
use crate::plan::{Plan, PlannedVm};
use crate::step::{Outcome, VmRecord};

/// `ade2eah run` (with `--plan`: [`run_plan`]).
pub async fn run(s: RunSettings) -> Result<Exit, CliError> {
    if let Some(path) = s.plan.clone() {
        return run_plan(s, &path).await;
    }
    let mut s = s;
    let poll = s.poll();
    let cloud = connect(&s.conn, None, poll)
        .await?
        .with_copy(s.copy.clone());
    if let Some(sub) = s.subscription.as_mut().filter(|x| !is_subscription_id(x)) {
        let name = sub.clone();
        let resolved =
            super::setup::resolve_subscriptions(cloud.client(), std::slice::from_mut(sub)).await;
        let stray = s
            .vms
            .iter()
            .find(|v| !v.subscription().eq_ignore_ascii_case(sub));
        match (resolved, stray) {
            (Ok(()), None) => {}
            (r, Some(vm)) => {
                let why = r.err().map(|e| format!(" ({e})")).unwrap_or_default();
                return Err(CliError::BadInput(format!(
                    "VM {vm} is in subscription {}, not --subscription {name}{why}",
                    vm.subscription()
                )));
            }
            (Err(e), None) => return Err(e),
        }
    }
    if s.check_permissions {
        let subs: Vec<String> = s
            .subscription
            .iter()
            .filter(|x| !x.is_empty())
            .cloned()
            .collect();
        check_permissions(&cloud, &subs).await?;
    }
    let new = start_run(&s.state)?;
    let discovered = discover(&cloud, &s.vms, &discover_options(&s))
        .await
        .map_err(|e| match e {
            DiscoverError::UnknownVm(_) | DiscoverError::NotAVm(_) => {
                CliError::BadInput(e.to_string())
            }
            DiscoverError::Cloud { .. } => CliError::Failed(e.to_string()),
        })?;
    for (rec, path) in &discovered {
        if let Outcome::Skipped { reason } = &rec.outcome {
            eprintln!("skip {} ({path}): {reason}", rec.id.name());
        }
    }
    if !s.yes && !confirm(&discovered)? {
        return Err(CliError::BadInput(
            "not confirmed; nothing was changed (pass --yes to run without asking)".into(),
        ));
    }
    let subscriptions = s.subscription.iter().filter(|s| !s.is_empty()).cloned();
    let meta = meta_of(
        &s,
        &cloud,
        subscriptions.collect(),
        s.max_parallel,
        s.vms.clone(),
    );
    let records: Vec<VmRecord> = discovered
        .into_iter()
        .map(|(mut r, _)| {
            r.copy_policy = s.copy_policy;
            apply_target(&mut r, s.target_encryption.clone(), &s);
            r.rollback_policy = s.rollback_policy;
            r
        })
        .collect();
    let (journal, entries) = new.begin(&meta, &records)?;
    drop(records);
    execute(cloud, journal, &meta, entries, drive(&s, s.max_parallel)).await
}

/// Journals the target-encryption choice (`None`: carried from the
/// sources), `--guest-check` and `--nic-swap` in the VM's facts.
fn apply_target(
    r: &mut VmRecord,
    choice: Option<crate::step::encryption::TargetEncryption>,
    s: &RunSettings,
) {
    if let Some(f) = r.facts.as_mut() {
        f.target_encryption = choice.unwrap_or_default();
        f.guest_check = s.guest_check;
        f.nic_swap = s.nic_swap;
    }
}

/// `--check-permissions`: refuses (exit 2) unless the caller has every
/// action of the role on each subscription.
async fn check_permissions(cloud: &ArmCloud, subscriptions: &[String]) -> Result<(), CliError> {
    let scopes: Vec<String> = subscriptions
        .iter()
        .map(|s| format!("/subscriptions/{s}"))
        .collect();
    let (_, refusal) = super::permissions::check_scopes(cloud.client(), &scopes).await?;
    refusal.map_or(Ok(()), Err)
}

/// The run's metadata: endpoint as connected, cloud, auth and poll interval
/// from the settings.
fn meta_of(
    s: &RunSettings,
    cloud: &ArmCloud,
    subscriptions: Vec<String>,
    max_parallel: usize,
    vms: Vec<crate::model::ResourceId>,
) -> RunMeta {
    RunMeta::new(
        cloud.client().arm_endpoint().to_string(),
        s.conn.cloud_name,
        &s.conn.auth_name,
        subscriptions,
        s.poll(),
        max_parallel,
        vms,
    )
}

fn drive(s: &RunSettings, max_parallel: usize) -> Drive {
    Drive {
        poll: s.poll(),
        max_parallel,
        output: s.output,
        break_lease: s.break_lease,
    }
}

fn confirm(discovered: &[(VmRecord, String)]) -> Result<bool, CliError> {
    if !std::io::stdin().is_terminal() {
        return Err(CliError::BadInput(
            "refusing to change VMs without confirmation: pass --yes (stdin is not a terminal)"
                .into(),
        ));
    }
    let eligible = discovered.iter().filter(|(r, _)| r.is_active()).count();
    eprint!(
        "Migrate {eligible} VM(s) to encryption at host? Each will be deallocated, deleted and re-created. [y/N] "
    );
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| CliError::Failed(e.to_string()))?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

/// `ade2eah run --plan FILE`: re-reads the inventory (GETs only), refuses a
/// stale plan, then runs wave by wave.
async fn run_plan(s: RunSettings, path: &Path) -> Result<Exit, CliError> {
    let poll = s.poll();
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::BadInput(format!("cannot read plan file {}: {e}", path.display()))
    })?;
    let mut file = crate::plan::file::parse(&path.display().to_string(), &text)
        .map_err(|e| CliError::BadInput(e.to_string()))?;
    file.options.carry_role_assignments = s.carry_role_assignments;
    if let Some(sub) = &s.subscription
        && !file
            .subscriptions
            .iter()
            .any(|f| f.eq_ignore_ascii_case(sub))
    {
        return Err(CliError::BadInput(format!(
            "--subscription {sub} differs from the plan's subscription {}",
            file.subscriptions.join(", ")
        )));
    }
    let cloud = connect(&s.conn, None, poll)
        .await?
        .with_copy(s.copy.clone());
    if s.check_permissions {
        check_permissions(&cloud, &file.subscriptions).await?;
    }
    let new = start_run(&s.state)?;
    let plan = bind_plan(&cloud, &file, path, &discover_options(&s)).await?;
    for v in &plan.vms {
        if let Outcome::Skipped { reason } = &v.record.outcome {
            eprintln!("skip {} ({}): {reason}", v.name, v.path);
        }
    }
    let mut records = planned_records(&plan.vms, "skipped in the plan");
    for (r, v) in records.iter_mut().zip(&plan.vms) {
        // The run's flag, else the VM's wave's option, else the plan's.
        let wave = v
            .wave
            .and_then(|w| file.waves.get(w.wrapping_sub(1)))
            .and_then(|w| w.target_encryption.clone());
        let choice = s
            .target_encryption
            .clone()
            .or(wave)
            .or_else(|| file.options.target_encryption.clone());
        apply_target(r, choice, &s);
        r.rollback_policy = s.rollback_policy;
    }
    let vms = records.iter().map(|r| r.id.clone()).collect();
    let meta = meta_of(
        &s,
        &cloud,
        file.subscriptions.clone(),
        file.options.max_parallel,
        vms,
    );
    let frozen = freeze(&path.display().to_string(), &plan, &file);
    crate::journal::state_dir::save_plan(&s.state, &frozen).map_err(|e| {
        CliError::Failed(format!(
            "cannot save the plan in {}: {e}",
            s.state.display()
        ))
    })?;
    let (journal, entries) = new.begin(&meta, &records)?;
    drop(records);
    let drive = drive(&s, s.max_parallel);
    execute_waves(cloud, journal, &meta, &frozen, entries, drive).await
}

/// What discovery does for this run (its flags: `--no-carry-role-assignments`,
/// `--rebuild-linux-os`; a plan file's VMs take them from `run` too).
fn discover_options(s: &RunSettings) -> DiscoverOptions {
    DiscoverOptions {
        carry_roles: s.carry_role_assignments,
        rebuild: s.rebuild.clone(),
    }
}

/// The plan of `file` bound to today's inventory: re-planned from its
/// selector when it lists no VMs, else its VMs re-classified and refused
/// (exit 2) if any changed since planning.
async fn bind_plan(
    cloud: &ArmCloud,
    file: &PlanFile,
    path: &Path,
    discover: &DiscoverOptions,
) -> Result<Plan, CliError> {
    if file.vms.is_empty() {
        let mut sel = file.selector.clone();
        sel.subscriptions = file.subscriptions.clone();
        return Ok(
            build_plan(cloud, &sel, &file.options, &file.waves, false, discover)
                .await?
                .0,
        );
    }
    let ids: Vec<_> = file.vms.iter().map(|v| v.id.clone()).collect();
    let (mut vms, missing) = classify_all(cloud, &ids, true, discover)
        .await
        .map_err(plan_err)?;
    // Locks, backup and quota as at planning (blockers change fingerprints).
    crate::discovery::preflight::run_per_subscription(
        cloud.client(),
        &file.subscriptions,
        &mut vms,
    )
    .await;
    let mut changed: Vec<String> = missing
        .iter()
        .map(|m| format!("{m}: no longer exists"))
        .collect();
    for entry in &file.vms {
        let Some(now) = vms.iter_mut().find(|v| v.id.key() == entry.id.key()) else {
            continue;
        };
        if let Some(fp) = &entry.fingerprint
            && *fp != now.fingerprint
        {
            let mut what = Vec::new();
            if entry.path != now.path && !entry.path.is_empty() {
                what.push(format!("path {} → {}", entry.path, now.path));
            }
            if entry.eligible != now.eligible {
                what.push(format!("eligible {} → {}", entry.eligible, now.eligible));
            }
            if what.is_empty() {
                what.push("size, disks or ADE state changed".into());
            }
            changed.push(format!("{}: {}", entry.id, what.join(", ")));
        }
        now.wave = entry.wave;
        if !entry.eligible && now.eligible {
            // Planned as skipped: keep it out of the run.
            now.eligible = false;
        }
    }
    if !changed.is_empty() {
        return Err(CliError::BadInput(format!(
            "the plan {} is stale: {} VM(s) changed since it was made; nothing was changed. Run `ade2eah plan` again.\n  {}",
            path.display(),
            changed.len(),
            changed.join("\n  ")
        )));
    }
    // Waves from the file's assignment; VMs without one get waves by targets.
    let unassigned = vms.iter().any(|v| v.eligible && v.wave.is_none());
    let mut p = Plan::build(
        crate::journal::now_rfc3339(),
        file.subscriptions.clone(),
        vms.clone(),
        &file.waves,
        file.options.max_parallel,
        Vec::new(),
    )
    .map_err(CliError::BadInput)?;
    if !unassigned {
        for v in &mut p.vms {
            v.wave = vms
                .iter()
                .find(|o: &&PlannedVm| o.id == v.id)
                .and_then(|o| o.wave);
        }
        for w in &mut p.waves {
            w.vms = p
                .vms
                .iter()
                .filter(|v| v.wave == Some(w.index))
                .map(|v| v.id.clone())
                .collect();
        }
    }
    Ok(p)
}

fn freeze(source: &str, plan: &Plan, file: &PlanFile) -> FrozenPlan {
    FrozenPlan {
        source: source.to_string(),
        fingerprint: plan.fingerprint.clone(),
        waves: plan
            .waves
            .iter()
            .map(|w| FrozenWave {
                name: w.name.clone(),
                target: w.target.clone(),
                max_parallel: w.max_parallel,
                approval: w.approval,
                soak_secs: w.soak_secs,
            })
            .collect(),
        assignment: plan
            .vms
            .iter()
            .filter_map(|v| v.wave.map(|w| (v.id.key(), w)))
            .collect(),
        max_parallel: file.options.max_parallel,
        failure_budget: file.options.failure_budget.map(|b| b.to_string()),
        failure_scope: match file.options.failure_scope {
            BudgetScope::Cumulative => "cumulative".into(),
            BudgetScope::PerWave => "per-wave".into(),
        },
        findings: crate::plan::FrozenFinding::all_of(plan),
    }
}
