//! The fleet commands: `plan`, `run --plan`, `resume` of a planned run,
//! `report`, `approve` and `bench fleet`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::args::{OutputArg, ResumeArgs, RunArgs};
use super::commands::{
    cloud_name, connect, ctrl_c_channel, exit_for, poll_interval, print_summary, progress_for,
};
use super::fleet_args::{ApproveArgs, BenchFleetArgs, PlanArgs, ReportArgs, ReportFormat};
use super::{CliError, Exit};
use crate::discovery::{classify_all, select, suggest_sizes};
use crate::engine::EngineOptions;
use crate::engine::arm::ArmCloud;
use crate::engine::waves::{WaveRun, WaveStop};
use crate::journal::{Journal, RunMeta, SCHEMA_VERSION, now_rfc3339};
use crate::plan::file::{PlanFile, PlanOptions};
use crate::plan::select::{DiscoveryStats, PlanError, Selector};
use crate::plan::waves::{Budget, BudgetScope, WaveSpec, parse_duration, parse_waves};
use crate::plan::{Finding, FrozenPlan, FrozenWave, Plan, Severity};
use crate::step::{Outcome, VmEntry, VmRecord};

const DEFAULT_POLL_SECS: f64 = 15.0;

fn plan_err(e: PlanError) -> CliError {
    match e {
        PlanError::BadInput(m) => CliError::BadInput(m),
        PlanError::Failed(m) => CliError::Failed(m),
    }
}

fn selector_of(a: &PlanArgs) -> Result<Selector, CliError> {
    let mut tags = BTreeMap::new();
    for t in &a.tags {
        let (k, v) = t
            .split_once('=')
            .ok_or_else(|| CliError::BadInput(format!("--tag {t:?} must be KEY=VALUE")))?;
        tags.insert(k.to_string(), v.to_string());
    }
    let mut subs: Vec<String> = Vec::new();
    for s in &a.subscriptions {
        let s = s.trim();
        if s.is_empty() || s.contains('/') {
            return Err(CliError::BadInput(format!(
                "--subscription {s:?} is not a subscription id"
            )));
        }
        if !subs.iter().any(|o| o.eq_ignore_ascii_case(s)) {
            subs.push(s.to_string());
        }
    }
    let listed = |sub: &str| subs.iter().any(|s| s.eq_ignore_ascii_case(sub));
    for vm in &a.vms {
        if !listed(vm.subscription()) {
            return Err(CliError::BadInput(format!(
                "VM {vm} is in subscription {}, not in --subscription {}",
                vm.subscription(),
                subs.join(", ")
            )));
        }
    }
    for g in &a.resource_groups {
        if let Some((sub, rg)) = g.split_once('/')
            && (!listed(sub) || rg.is_empty() || rg.contains('/'))
        {
            return Err(CliError::BadInput(format!(
                "-g {g:?}: expected RG or SUB/RG with SUB one of --subscription {}",
                subs.join(", ")
            )));
        }
    }
    Ok(Selector {
        subscriptions: subs.clone(),
        resource_groups: a.resource_groups.clone(),
        vms: a.vms.clone(),
        tags,
        name: a.name.clone(),
    })
}

fn options_of(a: &PlanArgs) -> Result<(PlanOptions, Vec<WaveSpec>), CliError> {
    let bad = CliError::BadInput;
    if a.max_parallel == 0 {
        return Err(bad("--max-parallel must be at least 1".into()));
    }
    let mut o = PlanOptions {
        max_parallel: a.max_parallel,
        ..Default::default()
    };
    if let Some(b) = &a.failure_budget {
        o.failure_budget =
            Some(Budget::parse(b).map_err(|m| bad(format!("--failure-budget: {m}")))?);
    }
    o.failure_scope = match a.failure_scope.as_str() {
        "cumulative" => BudgetScope::Cumulative,
        "per-wave" => BudgetScope::PerWave,
        s => {
            return Err(bad(format!(
                "--failure-scope must be cumulative or per-wave, got {s:?}"
            )));
        }
    };
    o.soak_secs = parse_duration(&a.soak).map_err(|m| bad(format!("--soak: {m}")))?;
    let mut waves = parse_waves(&a.waves).map_err(|m| bad(format!("--waves: {m}")))?;
    for w in &mut waves {
        w.soak_secs = o.soak_secs;
    }
    if let Some(g) = &a.approval_gates {
        for p in g.split(',') {
            let n: usize = p
                .trim()
                .parse()
                .map_err(|_| bad(format!("--approval-gates: {p:?} is not a wave number")))?;
            if n == 0 || n > waves.len() {
                return Err(bad(format!(
                    "--approval-gates: wave {n} does not exist ({} waves)",
                    waves.len()
                )));
            }
            waves[n - 1].approval = true;
        }
    }
    Ok((o, waves))
}

/// `ade2eah plan`.
pub async fn plan(a: PlanArgs) -> Result<Exit, CliError> {
    let poll = poll_interval(a.conn.poll_interval, DEFAULT_POLL_SECS)?;
    let sel = selector_of(&a)?;
    let (options, waves) = options_of(&a)?;
    let cloud = connect(&a.conn, None, poll).await?;
    let started = std::time::Instant::now();
    let (plan, stats) = build_plan(&cloud, &sel, &options, &waves, a.register_feature).await?;
    tracing::info!(secs = started.elapsed().as_secs_f64(), listed = stats.listed, source = %stats.source, "planned");
    if let Some(out) = &a.out {
        let text = crate::plan::file::render(&plan, &sel, &options, &waves);
        std::fs::write(out, text)
            .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", out.display())))?;
        eprintln!(
            "plan written to {} ({} VMs, fingerprint {})",
            out.display(),
            plan.vms.len(),
            plan.fingerprint
        );
    }
    match a.output {
        ReportFormat::Json => println!("{}", crate::report::plan_json(&plan)),
        ReportFormat::Markdown => print!("{}", crate::report::plan_markdown(&plan)),
        ReportFormat::Table => print!("{}", crate::report::plan_table(&plan)),
    }
    Ok(Exit::Done)
}

async fn build_plan(
    cloud: &ArmCloud,
    sel: &Selector,
    options: &PlanOptions,
    waves: &[WaveSpec],
    register_feature: bool,
) -> Result<(Plan, DiscoveryStats), CliError> {
    let client = cloud.client().clone();
    let mut stats = DiscoveryStats::default();
    let ids = select(&client, sel, &mut stats).await.map_err(plan_err)?;
    let (mut vms, _) = classify_all(cloud, &ids, false).await.map_err(plan_err)?;
    let mut findings = Vec::new();
    // The feature is per subscription: one finding (or registration) for
    // each subscription with a VM that needs it.
    let mut unregistered: Vec<String> = Vec::new();
    for v in vms.iter().filter(|v| v.path == "feature-not-registered") {
        let sub = v.id.subscription();
        if !unregistered.iter().any(|s| s.eq_ignore_ascii_case(sub)) {
            unregistered.push(sub.to_string());
        }
    }
    let on = |sub: &str| {
        if sel.subscriptions.len() > 1 {
            format!("subscription {sub}")
        } else {
            "the subscription".to_string()
        }
    };
    for sub in &unregistered {
        if register_feature {
            let state = client.register_eah_feature(sub).await.map_err(|e| {
                CliError::Failed(format!("registering EncryptionAtHost in {sub} failed: {e}"))
            })?;
            findings.push(Finding::new("feature-registration-requested", Severity::Warning, format!(
                "Microsoft.Compute/EncryptionAtHost registration requested on {} (state {state}); when it shows Registered run `az provider register -n Microsoft.Compute` and plan again", on(sub)
            )));
        } else {
            findings.push(Finding::new("feature-not-registered", Severity::Blocker, format!(
                "Microsoft.Compute/EncryptionAtHost is not registered on {}; pass --register-feature (or `az feature register`) and plan again", on(sub))));
        }
    }
    findings.extend(
        crate::discovery::preflight::run_per_subscription(&client, &sel.subscriptions, &mut vms)
            .await,
    );
    suggest_sizes(&client, &mut vms).await;
    let plan = Plan::build(
        now_rfc3339(),
        sel.subscriptions.clone(),
        vms,
        waves,
        options.max_parallel,
        findings,
    )
    .map_err(CliError::BadInput)?;
    Ok((plan, stats))
}

/// True when `dir` holds a run started with `run --plan`.
pub fn is_plan_run(dir: &Path) -> bool {
    crate::journal::state_dir::has_plan(dir)
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
    }
}

/// `ade2eah run --plan FILE`.
pub async fn run_plan(a: RunArgs) -> Result<Exit, CliError> {
    let path = a.plan.clone().expect("dispatched only with --plan");
    let poll = poll_interval(a.conn.poll_interval, DEFAULT_POLL_SECS)?;
    let text = std::fs::read_to_string(&path).map_err(|e| {
        CliError::BadInput(format!("cannot read plan file {}: {e}", path.display()))
    })?;
    let file = crate::plan::file::parse(&path.display().to_string(), &text)
        .map_err(|e| CliError::BadInput(e.to_string()))?;
    if let Some(s) = &a.subscription
        && !file.subscriptions.iter().any(|f| f.eq_ignore_ascii_case(s))
    {
        return Err(CliError::BadInput(format!(
            "--subscription {s} differs from the plan's subscription {}",
            file.subscriptions.join(", ")
        )));
    }
    let cloud = connect(&a.conn, None, poll)
        .await?
        .with_copy(super::commands::copy_options(&a.transfer));
    let journal = Arc::new(Journal::open(&a.state)?);
    if let Some(existing) = journal.meta()? {
        return Err(crate::journal::JournalError::RunExists {
            dir: a.state.clone(),
            run_id: existing.run_id,
        }
        .into());
    }
    // Re-read the inventory (GETs only) and bind to the plan.
    let plan = if file.vms.is_empty() {
        let mut sel = file.selector.clone();
        sel.subscriptions = file.subscriptions.clone();
        build_plan(&cloud, &sel, &file.options, &file.waves, false)
            .await?
            .0
    } else {
        let ids: Vec<_> = file.vms.iter().map(|v| v.id.clone()).collect();
        let (mut vms, missing) = classify_all(&cloud, &ids, true).await.map_err(plan_err)?;
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
            now_rfc3339(),
            file.subscriptions.clone(),
            vms.clone(),
            &file.waves,
            file.options.max_parallel,
            Vec::new(),
        )
        .map_err(CliError::BadInput)?;
        if !unassigned {
            for v in &mut p.vms {
                v.wave = vms.iter().find(|o| o.id == v.id).and_then(|o| o.wave);
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
        p
    };
    for v in &plan.vms {
        if let Outcome::Skipped { reason } = &v.record.outcome {
            eprintln!("skip {} ({}): {reason}", v.name, v.path);
        }
    }
    let records: Vec<VmRecord> = plan
        .vms
        .iter()
        .map(|v| {
            let mut r = v.record.clone();
            if !v.eligible && r.is_active() {
                r.outcome = Outcome::Skipped {
                    reason: "skipped in the plan".into(),
                };
            }
            r
        })
        .collect();
    let meta = RunMeta {
        schema_version: SCHEMA_VERSION,
        run_id: uuid::Uuid::now_v7().to_string(),
        created_at: now_rfc3339(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        arm_endpoint: cloud.client().arm_endpoint().to_string(),
        cloud: cloud_name(a.conn.cloud).into(),
        subscriptions: file.subscriptions.clone(),
        auth: format!("{:?}", a.conn.auth).to_ascii_lowercase(),
        poll_interval_secs: poll.as_secs_f64(),
        max_parallel: file.options.max_parallel,
        vms: records.iter().map(|r| r.id.clone()).collect(),
    };
    let frozen = freeze(&path.display().to_string(), &plan, &file);
    crate::journal::state_dir::save_plan(&a.state, &frozen).map_err(|e| {
        CliError::Failed(format!(
            "cannot save the plan in {}: {e}",
            a.state.display()
        ))
    })?;
    journal.init_run(&meta, &records)?;
    let entries: Vec<VmEntry> = records.iter().map(VmEntry::of).collect();
    drop(records);
    execute_waves(
        cloud,
        journal,
        &a.state,
        &meta,
        &frozen,
        entries,
        poll,
        a.output,
        a.break_lease,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn execute_waves(
    cloud: ArmCloud,
    journal: Arc<Journal>,
    dir: &Path,
    meta: &RunMeta,
    plan: &FrozenPlan,
    entries: Vec<VmEntry>,
    poll: std::time::Duration,
    output: OutputArg,
    break_lease: bool,
) -> Result<Exit, CliError> {
    let mut opts = EngineOptions::new(poll);
    opts.lease_ttl = journal.lease_meta()?.ttl();
    opts.break_lease = break_lease;
    let cloud: Arc<ArmCloud> = Arc::new(cloud);
    let live = super::live::Live::start(dir, progress_for(output));
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
    print_summary(meta, &journal, output)?;
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

/// `ade2eah resume` of a planned run: continues mid-wave.
pub async fn resume_plan(a: ResumeArgs) -> Result<Exit, CliError> {
    let plan = crate::journal::state_dir::load_plan(&a.state).ok_or_else(|| {
        CliError::BadInput(format!(
            "{} has an unreadable fleet plan",
            a.state.display()
        ))
    })?;
    let super::commands::Reopened {
        journal,
        meta,
        poll,
        cloud,
        entries,
    } = super::commands::reopen(&a).await?;
    let mut plan = plan;
    if let Some(m) = a.max_parallel {
        plan.max_parallel = m.max(1);
    }
    execute_waves(
        cloud,
        journal,
        &a.state,
        &meta,
        &plan,
        entries,
        poll,
        a.output,
        a.break_lease,
    )
    .await
}

/// `ade2eah approve --state DIR --wave N`.
pub fn approve(a: ApproveArgs) -> Result<Exit, CliError> {
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

/// `ade2eah report`: streamed from the journal one record summary at a
/// time (see [`crate::report`]).
pub fn report(a: ReportArgs) -> Result<Exit, CliError> {
    if !crate::journal::state_dir::has_journal(&a.state) {
        return Err(CliError::BadInput(format!(
            "no journal in {}; pass --state DIR of a run",
            a.state.display()
        )));
    }
    let journal = Journal::open(&a.state)?;
    let meta = journal.require_meta()?;
    let plan = crate::journal::state_dir::load_plan(&a.state);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 << 10, stdout.lock());
    write_run(&mut out, a.output, &meta, plan.as_ref(), &journal)?;
    std::io::Write::flush(&mut out)
        .map_err(|e| CliError::Failed(format!("cannot write the output: {e}")))?;
    Ok(Exit::Done)
}

/// Writes the report of the run in `journal` in `format`: the summary from
/// the index, then one VM at a time.
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
    let head = report::run_head(meta, plan, &entries);
    match format {
        ReportFormat::Json => {
            super::output::write_with_vms(out, &head, entries.len(), |i| {
                Ok(report::run_vm_json(plan, &journal.summary(&entries[i].id)?))
            })?;
            out.write_all(b"\n").map_err(io)
        }
        ReportFormat::Table => {
            let mut t = report::RunTable::default();
            for e in &entries {
                t.add(plan, &journal.summary(&e.id)?);
            }
            out.write_all(t.render(meta, &head).as_bytes()).map_err(io)
        }
        ReportFormat::Markdown => {
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

/// `ade2eah bench fleet`.
pub async fn bench_fleet(a: BenchFleetArgs) -> Result<Exit, CliError> {
    super::fleet_bench::run(a).await
}
