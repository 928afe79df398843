//! The plan as frozen into a run's state folder at `run --plan`: waves,
//! the VM → wave assignment, the global cap and the failure budget. Plain
//! data next to the other plan types; the state folder's owner
//! ([`crate::journal::state_dir`]) saves and loads it, the wave executor
//! ([`crate::engine::waves`]) runs it, the report reads each VM's wave.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Budget, BudgetScope};
use crate::model::ResourceId;

/// One wave as frozen at `run --plan`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FrozenWave {
    /// Name.
    pub name: String,
    /// Target text.
    pub target: String,
    /// Effective concurrency.
    pub max_parallel: usize,
    /// Needs approval.
    pub approval: bool,
    /// Soak before this wave, seconds.
    pub soak_secs: u64,
}

/// A dry-run finding as frozen at `run --plan` (the HTML report lists them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrozenFinding {
    /// The VM's ARM id (`None` for a plan-level finding).
    pub vm: Option<String>,
    /// Stable finding code (docs/troubleshooting.md).
    pub code: String,
    /// `info` / `warning` / `blocker`.
    pub severity: String,
    /// What was found and what to do.
    pub message: String,
}

impl FrozenFinding {
    /// Every finding of `plan`: the VMs' (in plan order), then the plan's.
    pub fn all_of(plan: &super::Plan) -> Vec<FrozenFinding> {
        let of = |vm: Option<String>, f: &super::Finding| FrozenFinding {
            vm,
            code: f.code.clone(),
            severity: f.severity.label().to_string(),
            message: f.message.clone(),
        };
        plan.vms
            .iter()
            .flat_map(|v| v.findings.iter().map(|f| of(Some(v.id.to_string()), f)))
            .chain(plan.findings.iter().map(|f| of(None, f)))
            .collect()
    }
}

/// The plan as frozen in the state dir.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FrozenPlan {
    /// Plan file it came from.
    pub source: String,
    /// Whole-inventory fingerprint.
    pub fingerprint: String,
    /// Waves.
    pub waves: Vec<FrozenWave>,
    /// VM key → 1-based wave.
    pub assignment: BTreeMap<String, usize>,
    /// Global cap.
    pub max_parallel: usize,
    /// Failure budget text (`None` = unlimited).
    pub failure_budget: Option<String>,
    /// `cumulative` / `per-wave`.
    pub failure_scope: String,
    /// The dry-run findings of the plan as bound at `run --plan`.
    #[serde(default)]
    pub findings: Vec<FrozenFinding>,
}

impl FrozenPlan {
    /// The failure budget (`None` = unlimited or unreadable).
    pub fn budget(&self) -> Option<Budget> {
        self.failure_budget
            .as_deref()
            .and_then(|b| Budget::parse(b).ok())
    }

    /// What the failure budget counts over.
    pub fn scope(&self) -> BudgetScope {
        if self.failure_scope == "per-wave" {
            BudgetScope::PerWave
        } else {
            BudgetScope::Cumulative
        }
    }

    /// 1-based wave of `id`, if any.
    pub fn wave_of(&self, id: &ResourceId) -> Option<usize> {
        self.assignment.get(&id.key()).copied()
    }
}
