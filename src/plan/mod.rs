//! Fleet planning, pure (no I/O, no clock: the time comes in as an
//! argument): selection and the plan's view of each VM ([`select`]),
//! classification and preflight findings ([`findings`]), estimates
//! ([`estimate`]), the inventory fingerprint ([`fingerprint`]), wave targets
//! ([`waves`]), plan files ([`file`]), locks, backup and quota checks
//! ([`preflight`]) and the plan frozen into a run ([`frozen`]). The reads
//! are the discovery adapter's ([`crate::discovery`]), which hands their
//! answers here as plain data.

pub mod estimate;
pub mod file;
pub mod findings;
pub mod fingerprint;
pub mod frozen;
pub mod preflight;
pub mod select;
pub mod waves;

#[cfg(test)]
mod golden;

use serde::Serialize;

use crate::model::ResourceId;
use crate::step::VmRecord;

pub use estimate::{Assumptions, Estimate};
pub use findings::{Finding, Severity};
pub use frozen::{FrozenFinding, FrozenPlan, FrozenWave};
pub use waves::{Budget, BudgetScope, WaveTarget};

/// Schema id of `plan --output json` (see docs/plan-schema.md).
pub const PLAN_SCHEMA: &str = "ade2eah.plan/v1";

/// One selected VM as the plan saw it.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedVm {
    /// ARM id.
    pub id: ResourceId,
    /// VM name.
    pub name: String,
    /// Resource group.
    pub resource_group: String,
    /// Will be migrated.
    pub eligible: bool,
    /// Migration path label (`windows-all-volumes`, `not-ade`, ...).
    pub path: String,
    /// 1-based wave (eligible VMs only).
    pub wave: Option<usize>,
    /// VM size.
    pub size: String,
    /// `Windows` / `Linux` / `""`.
    pub os: String,
    /// Region.
    pub location: String,
    /// Power state from the instance view (`running`, `deallocated`, ...).
    pub power_state: String,
    /// Findings (at least one when not eligible).
    pub findings: Vec<Finding>,
    /// Inventory fingerprint of this VM.
    pub fingerprint: String,
    /// Estimates (zero for ineligible VMs).
    pub estimate: Estimate,
    /// The journal record discovery built (not serialized).
    #[serde(skip)]
    pub record: VmRecord,
}

/// One wave of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedWave {
    /// 1-based index.
    pub index: usize,
    /// Name (`canary`, `wave-2`, ...).
    pub name: String,
    /// The cumulative target it came from (`1`, `10%`, `100%`).
    pub target: String,
    /// Most VMs of this wave at once (capped by the global cap).
    pub max_parallel: usize,
    /// Needs `ade2eah approve --wave N` before it starts.
    pub approval: bool,
    /// Seconds to wait after the previous wave ended before this one starts.
    pub soak_secs: u64,
    /// VM ids in this wave.
    pub vms: Vec<ResourceId>,
    /// Sum of the VMs' estimates.
    pub estimate: Estimate,
}

/// A dry-run plan.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// [`PLAN_SCHEMA`].
    pub schema: &'static str,
    /// The first subscription planned in (kept for single-subscription readers).
    pub subscription: String,
    /// Every subscription planned in, in the order given.
    pub subscriptions: Vec<String>,
    /// Fingerprint of the whole inventory (changes iff any VM's does).
    pub fingerprint: String,
    /// When planned (RFC 3339).
    pub created_at: String,
    /// Counts.
    pub summary: Summary,
    /// Waves in order.
    pub waves: Vec<PlannedWave>,
    /// Selected VMs, sorted by id.
    pub vms: Vec<PlannedVm>,
    /// Subscription-level findings (feature registration, ...).
    pub findings: Vec<Finding>,
    /// What the estimates assume ([`Plan::reestimate`]).
    pub assumptions: Assumptions,
}

/// Plan counts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// VMs selected.
    pub selected: usize,
    /// VMs that will be migrated.
    pub eligible: usize,
    /// VMs skipped.
    pub skipped: usize,
    /// VMs per path label.
    pub by_path: std::collections::BTreeMap<String, usize>,
    /// Sum of every eligible VM's estimate.
    pub estimate: Estimate,
}

impl Plan {
    /// Builds the plan: sorts VMs, assigns waves, sums estimates.
    /// `created_at` is the time of planning (RFC 3339), the caller's clock.
    pub fn build(
        created_at: String,
        subscriptions: Vec<String>,
        mut vms: Vec<PlannedVm>,
        waves: &[waves::WaveSpec],
        global_cap: usize,
        findings: Vec<Finding>,
    ) -> Result<Plan, String> {
        vms.sort_by_key(|v| v.id.key());
        let eligible: Vec<usize> = (0..vms.len()).filter(|&i| vms[i].eligible).collect();
        let sizes = waves::wave_sizes(waves, eligible.len())?;
        let mut planned = Vec::new();
        let mut next = 0;
        for (i, (spec, n)) in waves.iter().zip(sizes).enumerate() {
            let members: Vec<usize> = eligible[next..next + n].to_vec();
            next += n;
            let mut est = Estimate::default();
            for &m in &members {
                vms[m].wave = Some(i + 1);
                est.add(&vms[m].estimate);
            }
            planned.push(PlannedWave {
                index: i + 1,
                name: spec.name.clone().unwrap_or_else(|| {
                    if i == 0 && waves.len() > 1 {
                        "canary".to_string()
                    } else {
                        format!("wave-{}", i + 1)
                    }
                }),
                target: spec.target.to_string(),
                max_parallel: spec
                    .max_parallel
                    .unwrap_or(global_cap)
                    .min(global_cap)
                    .max(1),
                approval: spec.approval,
                soak_secs: spec.soak_secs,
                vms: members.iter().map(|&m| vms[m].id.clone()).collect(),
                estimate: est,
            });
        }
        let mut summary = Summary {
            selected: vms.len(),
            eligible: eligible.len(),
            skipped: vms.len() - eligible.len(),
            ..Default::default()
        };
        for v in &vms {
            *summary.by_path.entry(v.path.clone()).or_default() += 1;
            if v.eligible {
                summary.estimate.add(&v.estimate);
            }
        }
        let fingerprint = fingerprint::of_plan(vms.iter().map(|v| (&v.id, v.fingerprint.as_str())));
        Ok(Plan {
            schema: PLAN_SCHEMA,
            subscription: subscriptions.first().cloned().unwrap_or_default(),
            subscriptions,
            fingerprint,
            created_at,
            summary,
            waves: planned,
            vms,
            findings,
            assumptions: Assumptions::default(),
        })
    }

    /// Estimates every eligible VM again under `a` (ineligible VMs stay at
    /// zero) and sums waves and summary again.
    pub fn reestimate(&mut self, a: Assumptions) {
        self.assumptions = a;
        for v in &mut self.vms {
            v.estimate = if v.eligible {
                Estimate::model(&v.record, &a)
            } else {
                Estimate::default()
            };
        }
        let by_id: std::collections::HashMap<String, Estimate> =
            self.vms.iter().map(|v| (v.id.key(), v.estimate)).collect();
        for w in &mut self.waves {
            w.estimate = Estimate::default();
            for e in w.vms.iter().filter_map(|id| by_id.get(&id.key())) {
                w.estimate.add(e);
            }
        }
        self.summary.estimate = Estimate::default();
        for v in self.vms.iter().filter(|v| v.eligible) {
            self.summary.estimate.add(&v.estimate);
        }
    }
}
