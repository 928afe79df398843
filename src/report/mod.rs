//! Reports: the dry-run plan ([`plan_json`], [`plan_table`],
//! [`plan_markdown`]) and a run's state ([`run_json`], [`run_table`],
//! [`run_markdown`]), with each VM's downtime and timing ([`timing`]), and
//! the self-contained HTML timeline ([`html`]). JSON schemas:
//! docs/plan-schema.md.

pub mod html;
pub mod timing;

use comfy_table::Table;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use serde_json::{Value, json};

pub mod width;

use crate::journal::RunMeta;
use crate::plan::{FrozenPlan, Plan};
use crate::step::{Outcome, RecordSummary, VmEntry, VmRecord};
use timing::Totals;

/// Downtime and time totals of a run and of each of its waves.
#[derive(Debug, Clone, Default)]
pub struct RunTimes {
    /// Every VM of the run.
    pub run: Totals,
    /// Per 1-based wave.
    pub waves: std::collections::BTreeMap<usize, Totals>,
}

impl RunTimes {
    /// Adds one VM (of wave `wave`).
    pub fn add(&mut self, wave: Option<usize>, r: &RecordSummary) {
        self.run.add(&r.spans);
        if let Some(w) = wave {
            self.waves.entry(w).or_default().add(&r.spans);
        }
    }

    /// The totals of `summaries` (records of one run, `plan` for waves).
    pub fn of<'a>(
        plan: Option<&FrozenPlan>,
        summaries: impl IntoIterator<Item = &'a RecordSummary>,
    ) -> Self {
        let mut t = RunTimes::default();
        for r in summaries {
            t.add(wave_of(plan, &r.id), r);
        }
        t
    }
}

/// Schema id of `report --output json`.
pub const REPORT_SCHEMA: &str = "ade2eah.report/v1";

fn gib(b: u64) -> String {
    format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
}

fn hm(secs: u64) -> String {
    format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
}

/// `plan --output json`: one object (docs/plan-schema.md).
pub fn plan_json(plan: &Plan) -> Value {
    serde_json::to_value(plan).unwrap_or(Value::Null)
}

/// `plan --output table`.
pub fn plan_table(plan: &Plan) -> String {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    width::fit(&mut t);
    t.set_header([
        "VM",
        "Resource group",
        "Eligible",
        "Path",
        "Wave",
        "Size",
        "Findings",
    ]);
    for v in &plan.vms {
        let f: Vec<String> = v
            .findings
            .iter()
            .map(|f| format!("{}:{}", f.severity.label(), f.code))
            .collect();
        t.add_row([
            v.name.clone(),
            v.resource_group.clone(),
            if v.eligible { "yes" } else { "no" }.into(),
            v.path.clone(),
            v.wave.map(|w| w.to_string()).unwrap_or_else(|| "-".into()),
            v.size.clone(),
            f.join(", "),
        ]);
    }
    let mut out = t.to_string();
    out.push_str(&format!(
        "\n{} selected, {} eligible, {} skipped | copy {} | extra storage {} GiB | {} ARM writes | fingerprint {}\n",
        plan.summary.selected,
        plan.summary.eligible,
        plan.summary.skipped,
        gib(plan.summary.estimate.bytes_to_copy),
        plan.summary.estimate.extra_storage_gib,
        plan.summary.estimate.arm_writes,
        plan.fingerprint
    ));
    for w in &plan.waves {
        out.push_str(&format!(
            "wave {} {:<8} target {:<5} {:>5} VM(s), {} at a time{}{} | downtime (sum) {} | copy {}\n",
            w.index,
            w.name,
            w.target,
            w.vms.len(),
            w.max_parallel,
            if w.approval { ", approval gate" } else { "" },
            if w.soak_secs > 0 { format!(", soak {} s", w.soak_secs) } else { String::new() },
            hm(w.estimate.downtime_secs),
            gib(w.estimate.bytes_to_copy),
        ));
    }
    for f in &plan.findings {
        out.push_str(&format!(
            "{} {}: {}\n",
            f.severity.label(),
            f.code,
            f.message
        ));
    }
    out.push_str(&plan.assumptions.describe());
    out.push('\n');
    width::wrap(&out)
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// `plan --output markdown`: for change tickets.
pub fn plan_markdown(plan: &Plan) -> String {
    let mut o = String::new();
    o.push_str("# ADE → encryption at host: migration plan\n\n");
    o.push_str(&format!(
        "- Subscription: `{}`\n- Planned: {}\n- Inventory fingerprint: `{}`\n- VMs: {} selected, **{} to migrate**, {} skipped\n- Bytes to copy (upper bound): {}; extra storage during the run: {} GiB; ARM writes: {}\n\n",
        plan.subscriptions.join("`, `"), plan.created_at, plan.fingerprint, plan.summary.selected, plan.summary.eligible,
        plan.summary.skipped, gib(plan.summary.estimate.bytes_to_copy), plan.summary.estimate.extra_storage_gib,
        plan.summary.estimate.arm_writes
    ));
    o.push_str(&format!(
        "_{}._\n\n",
        md_escape(&plan.assumptions.describe())
    ));
    o.push_str("## Waves\n\n| Wave | Name | Target | VMs | Parallel | Approval | Soak | Downtime (sum) |\n|---|---|---|---|---|---|---|---|\n");
    for w in &plan.waves {
        o.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} s | {} |\n",
            w.index,
            w.name,
            w.target,
            w.vms.len(),
            w.max_parallel,
            if w.approval { "yes" } else { "no" },
            w.soak_secs,
            hm(w.estimate.downtime_secs)
        ));
    }
    o.push_str("\n## VMs\n\n| VM | Resource group | Eligible | Path | Wave | Downtime | Findings |\n|---|---|---|---|---|---|---|\n");
    for v in &plan.vms {
        let f: Vec<String> = v
            .findings
            .iter()
            .map(|f| {
                format!(
                    "**{}** `{}`: {}",
                    f.severity.label(),
                    f.code,
                    md_escape(&f.message)
                )
            })
            .collect();
        o.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            v.name,
            v.resource_group,
            if v.eligible { "yes" } else { "no" },
            v.path,
            v.wave.map(|w| w.to_string()).unwrap_or_else(|| "-".into()),
            hm(v.estimate.downtime_secs),
            f.join("<br>")
        ));
    }
    o
}

/// The wave of `id` in `plan`, as the reports show it.
fn wave_of(plan: Option<&FrozenPlan>, id: &crate::model::ResourceId) -> Option<usize> {
    plan.and_then(|p| p.wave_of(id))
}

/// The run-level part of `report --output json` (docs/plan-schema.md),
/// with `"vms": []`: summary and per-wave counts from the index, timing
/// totals from `times`.
pub fn run_head(
    meta: &RunMeta,
    plan: Option<&FrozenPlan>,
    entries: &[VmEntry],
    times: &RunTimes,
) -> Value {
    let count = |l: &str| entries.iter().filter(|r| r.outcome.label() == l).count();
    let waves_of: Vec<Option<usize>> = entries.iter().map(|r| wave_of(plan, &r.id)).collect();
    let waves: Vec<Value> = plan
        .map(|p| {
            p.waves
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    let n = i + 1;
                    let members = || {
                        entries
                            .iter()
                            .zip(&waves_of)
                            .filter(move |(_, w)| **w == Some(n))
                            .map(|(r, _)| r)
                    };
                    let of = |l: &str| members().filter(|r| r.outcome.label() == l).count();
                    let mut j = json!({"index": n, "name": w.name, "target": w.target, "max_parallel": w.max_parallel,
                           "approval": w.approval, "soak_secs": w.soak_secs,
                           "vms": members().count(),
                           "verified": of("verified"), "parked": of("parked"), "rolled_back": of("rolled-back"),
                           "in_progress": of("in-progress")});
                    merge(&mut j, times.waves.get(&n).cloned().unwrap_or_default().json());
                    j
                })
                .collect()
        })
        .unwrap_or_default();
    let mut summary = json!({"total": entries.len(), "verified": count("verified"), "parked": count("parked"),
                    "rolled_back": count("rolled-back"), "skipped": count("skipped"),
                    "in_progress": count("in-progress")});
    merge(&mut summary, times.run.json());
    json!({
        "schema": REPORT_SCHEMA,
        "run_id": meta.run_id,
        "created_at": meta.created_at,
        "subscription": meta.subscriptions.first(),
        "subscriptions": meta.subscriptions,
        "plan_fingerprint": plan.map(|p| p.fingerprint.clone()),
        "failure_budget": plan.and_then(|p| p.failure_budget.clone()),
        "summary": summary,
        "waves": waves,
        "vms": [],
    })
}

/// Adds the fields of the object `more` to the object `into`.
fn merge(into: &mut Value, more: Value) {
    if let (Some(a), Value::Object(b)) = (into.as_object_mut(), more) {
        a.extend(b);
    }
}

/// The next action of a parked VM.
fn next_action(r: &RecordSummary) -> Option<&str> {
    match &r.outcome {
        Outcome::Parked { next_action, .. } => Some(next_action),
        _ => None,
    }
}

/// One VM of `report --output json`.
pub fn run_vm_json(plan: Option<&FrozenPlan>, r: &RecordSummary) -> Value {
    let next = next_action(r);
    let (downtime_secs, timing) = timing::vm_json(&r.spans, &r.disks);
    json!({
        "id": r.id.as_str(),
        "wave": wave_of(plan, &r.id),
        "outcome": r.outcome.label(),
        "step": r.step.to_string(),
        "reason": r.reason(),
        "next_action": next,
        "disks": r.disks.len(),
        "bytes_copied": r.bytes_copied(),
        "attempts": r.attempts,
        "updated_at": r.history.last_at,
        "operator_actions": r.carried.operator_actions(),
        "rollback": r.rollback_json(),
        "left_to_clean": r.left_to_clean().len(),
        "downtime_secs": downtime_secs,
        "timing": timing,
    })
}

/// `report --output json` of records held in memory (docs/plan-schema.md).
/// The `report` command streams the same bytes from the journal.
pub fn run_json(meta: &RunMeta, plan: Option<&FrozenPlan>, records: &[VmRecord]) -> Value {
    let entries: Vec<VmEntry> = records.iter().map(VmEntry::of).collect();
    let sums: Vec<RecordSummary> = records.iter().map(RecordSummary::of).collect();
    let mut j = run_head(meta, plan, &entries, &RunTimes::of(plan, &sums));
    j["vms"] = sums
        .iter()
        .map(|r| run_vm_json(plan, r))
        .collect::<Vec<_>>()
        .into();
    j
}

/// `report --output table`, built one VM at a time.
pub struct RunTable(Table);

impl Default for RunTable {
    fn default() -> Self {
        let mut t = Table::new();
        t.load_style(UTF8_FULL_CONDENSED);
        width::fit(&mut t);
        t.set_header([
            "VM", "Wave", "Outcome", "Step", "Copied", "Downtime", "Reason",
        ]);
        width::keep_names(&mut t);
        RunTable(t)
    }
}

impl RunTable {
    /// Adds one VM's row.
    pub fn add(&mut self, plan: Option<&FrozenPlan>, r: &RecordSummary) {
        self.0.add_row([
            r.id.name().to_string(),
            wave_of(plan, &r.id)
                .map(|w| w.to_string())
                .unwrap_or_else(|| "-".into()),
            r.outcome.label().to_string(),
            r.step.to_string(),
            gib(r.bytes_copied()),
            downtime_cell(r),
            match &r.outcome {
                Outcome::RolledBack { .. } => r.rolled_back_note(),
                _ => r.reason().unwrap_or_default().to_string(),
            },
        ]);
    }

    /// The table and the summary lines (`head` from [`run_head`]).
    pub fn render(&self, meta: &RunMeta, head: &Value) -> String {
        let s = &head["summary"];
        let mut o = format!(
            "{}\nrun {} | {} total, {} verified, {} parked, {} rolled back, {} skipped, {} in progress\n",
            self.0,
            meta.run_id,
            s["total"],
            s["verified"],
            s["parked"],
            s["rolled_back"],
            s["skipped"],
            s["in_progress"]
        );
        o.push_str(&format!("downtime: {}\n", totals_text(s)));
        for w in head["waves"].as_array().into_iter().flatten() {
            o.push_str(&format!(
                "wave {} {}: {}\n",
                w["index"],
                w["name"].as_str().unwrap_or(""),
                totals_text(w)
            ));
        }
        width::wrap(&o)
    }
}

/// A VM's downtime for tables: `4m05s`, `4m05s (still down)`, or `-`.
fn downtime_cell(r: &RecordSummary) -> String {
    match timing::downtime(&r.spans) {
        Some(d) if d.open => format!("{} (still down)", timing::duration(d.secs())),
        Some(d) => timing::duration(d.secs()),
        None => "-".into(),
    }
}

/// Where a VM's downtime went, for Markdown: the non-zero categories.
fn breakdown_text(r: &RecordSummary) -> String {
    timing::downtime(&r.spans)
        .map(|d| {
            d.breakdown
                .iter()
                .filter(|(_, v)| *v >= 0.05)
                .map(|(k, v)| format!("{k} {}", timing::duration(*v)))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// The downtime totals of a summary or wave object of [`run_head`].
fn totals_text(t: &Value) -> String {
    let n = t["vms_down"].as_u64().unwrap_or(0);
    if n == 0 {
        return "no VM deallocated".into();
    }
    let f = |k: &str| timing::duration(t[k].as_f64().unwrap_or(0.0));
    format!(
        "{n} VM(s) down, {} in total, longest {}, mean {}; elapsed {}",
        f("downtime_secs_total"),
        f("downtime_secs_max"),
        timing::duration(t["downtime_secs_total"].as_f64().unwrap_or(0.0) / n as f64),
        f("elapsed_secs"),
    )
}

/// `report --output table` of records held in memory.
pub fn run_table(meta: &RunMeta, plan: Option<&FrozenPlan>, records: &[VmRecord]) -> String {
    let entries: Vec<VmEntry> = records.iter().map(VmEntry::of).collect();
    let sums: Vec<RecordSummary> = records.iter().map(RecordSummary::of).collect();
    let mut t = RunTable::default();
    for r in &sums {
        t.add(plan, r);
    }
    t.render(
        meta,
        &run_head(meta, plan, &entries, &RunTimes::of(plan, &sums)),
    )
}

/// The part of `report --output markdown` before the VM rows (`head` from
/// [`run_head`]).
pub fn markdown_head(meta: &RunMeta, head: &Value) -> String {
    let s = &head["summary"];
    let mut o = format!(
        "# ADE → encryption at host: run report\n\n- Run: `{}` (started {})\n- Subscription: `{}`\n- VMs: {} total, **{} verified**, {} parked, {} rolled back, {} skipped, {} in progress\n- Downtime: {}\n\n",
        meta.run_id,
        meta.created_at,
        meta.subscriptions.join("`, `"),
        s["total"],
        s["verified"],
        s["parked"],
        s["rolled_back"],
        s["skipped"],
        s["in_progress"],
        totals_text(s)
    );
    if let Some(w) = head["waves"].as_array().filter(|w| !w.is_empty()) {
        o.push_str("## Waves\n\n| Wave | Name | VMs | Verified | Parked | In progress | Downtime |\n|---|---|---|---|---|---|---|\n");
        for w in w {
            o.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                w["index"],
                md_escape(w["name"].as_str().unwrap_or("")),
                w["vms"],
                w["verified"],
                w["parked"],
                w["in_progress"],
                totals_text(w)
            ));
        }
        o.push('\n');
    }
    o.push_str(
        "## VMs\n\n| VM | Wave | Outcome | Step | Downtime | Where the downtime went | Reason / next action |\n|---|---|---|---|---|---|---|\n",
    );
    o
}

/// One VM row of `report --output markdown`.
pub fn markdown_row(plan: Option<&FrozenPlan>, r: &RecordSummary) -> String {
    let next = match (&r.outcome, &r.rollback) {
        (Outcome::Parked { next_action, .. }, _) => format!(" — {next_action}"),
        (Outcome::RolledBack { .. }, Some(rb)) => {
            let clean = crate::step::rollback::left_to_clean(&r.created);
            format!(
                " — restored: {}; ADE {}; left to clean: {}",
                crate::step::rollback::restored(rb).join(", "),
                crate::step::rollback::ade_note(rb),
                if clean.is_empty() {
                    "nothing".to_string()
                } else {
                    clean
                        .iter()
                        .map(|c| format!("`{}`", c.name()))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            )
        }
        _ => String::new(),
    };
    format!(
        "| {} | {} | {} | {} | {} | {} | {}{} |\n",
        r.id.name(),
        wave_of(plan, &r.id)
            .map(|w| w.to_string())
            .unwrap_or_else(|| "-".into()),
        r.outcome.label(),
        r.step,
        downtime_cell(r),
        breakdown_text(r),
        md_escape(r.reason().unwrap_or_default()),
        md_escape(&next)
    )
}

/// `report --output markdown` of records held in memory.
pub fn run_markdown(meta: &RunMeta, plan: Option<&FrozenPlan>, records: &[VmRecord]) -> String {
    let entries: Vec<VmEntry> = records.iter().map(VmEntry::of).collect();
    let sums: Vec<RecordSummary> = records.iter().map(RecordSummary::of).collect();
    let times = RunTimes::of(plan, &sums);
    let mut o = markdown_head(meta, &run_head(meta, plan, &entries, &times));
    for r in &sums {
        o.push_str(&markdown_row(plan, r));
    }
    o
}
