//! `ade2eah plan`: discover, classify and preflight VMs; print or save a
//! plan (a dry run: the only write it can send is `--register-feature`).

use super::setup::connect;
use crate::cli::error::{CliError, Exit};
use crate::cli::settings::{DEFAULT_POLL_SECS, PlanSettings, ReportFormat, is_subscription_id};
use crate::discovery::{DiscoverOptions, classify_all, select, suggest_sizes};
use crate::engine::arm::ArmCloud;
use crate::journal::now_rfc3339;
use crate::plan::file::PlanOptions;
use crate::plan::select::{DiscoveryStats, PlanError, Selector};
use crate::plan::waves::WaveSpec;
use crate::plan::{Finding, Plan, Severity};

/// A planning error, sorted by exit code.
pub fn plan_err(e: PlanError) -> CliError {
    match e {
        PlanError::BadInput(m) => CliError::BadInput(m),
        PlanError::Failed(m) => CliError::Failed(m),
    }
}

/// `ade2eah plan`.
pub async fn plan(a: PlanSettings) -> Result<Exit, CliError> {
    let poll = a.conn.poll_or(DEFAULT_POLL_SECS)?;
    let (options, waves) = (&a.options, &a.waves);
    let cloud = connect(&a.conn, None, poll).await?;
    let mut sel = a.selector.clone();
    if !sel.subscriptions.iter().all(|s| is_subscription_id(s)) {
        super::setup::resolve_subscriptions(cloud.client(), &mut sel.subscriptions).await?;
        crate::cli::settings::check_selector(&sel)?;
    }
    let sel = &sel;
    let started = std::time::Instant::now();
    let (mut plan, stats) = build_plan(
        &cloud,
        sel,
        options,
        waves,
        a.register_feature,
        &DiscoverOptions {
            carry_roles: options.carry_role_assignments,
            rebuild: a.rebuild.clone(),
        },
    )
    .await?;
    plan.reestimate(a.assumptions);
    tracing::info!(secs = started.elapsed().as_secs_f64(), listed = stats.listed, source = %stats.source, "planned");
    if let Some(out) = &a.out {
        let text = crate::plan::file::render(&plan, sel, options, waves);
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
        f if !crate::cli::output::own_rendering(f) => {
            crate::cli::output::print_value(f, &crate::report::plan_json(&plan))?
        }
        ReportFormat::Markdown => print!("{}", crate::report::plan_markdown(&plan)),
        _ => print!("{}", crate::report::plan_table(&plan)),
    }
    Ok(Exit::Done)
}

pub async fn build_plan(
    cloud: &ArmCloud,
    sel: &Selector,
    options: &PlanOptions,
    waves: &[WaveSpec],
    register_feature: bool,
    discover: &DiscoverOptions,
) -> Result<(Plan, DiscoveryStats), CliError> {
    let client = cloud.client().clone();
    let mut stats = DiscoveryStats::default();
    let ids = select(&client, sel, &mut stats).await.map_err(plan_err)?;
    let (mut vms, _) = classify_all(cloud, &ids, false, discover)
        .await
        .map_err(plan_err)?;
    // Target encryption: the plan's choice, checked by the preflight.
    for v in vms.iter_mut() {
        if let Some(f) = v.record.facts.as_mut() {
            f.target_encryption = options.target_encryption.clone().unwrap_or_default();
        }
    }
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
