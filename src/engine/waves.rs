//! The wave executor: runs a planned fleet wave by wave.
//!
//! - Wave N+1 starts only once every VM of wave N has ended (verified,
//!   parked) and wave N+1's soak time has passed since wave N ended.
//! - Each wave runs `min(wave.max_parallel, global cap)` VMs at once.
//! - A failure is a VM that parks during the run. When failures **exceed**
//!   the budget (see [`crate::plan::waves`]) no new VM starts; VMs in flight
//!   finish their current step and park ("halted by the failure budget");
//!   VMs not started stay pending. `resume` continues (parked VMs retried).
//! - An approval gate stops before its wave until `ade2eah approve --wave N`.
//! - Ctrl-C stops like the foundation's engine; `resume` continues mid-wave.
//!
//! Wave state lives next to the journal, in `fleet-plan.json` (the frozen
//! plan), `fleet-progress.json` (wave end times) and `approvals.json`
//! (written by `ade2eah approve`; a separate file so it never contends for
//! the journal lock).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::watch;

use super::{Cloud, Engine, EngineOptions, Progress};
use crate::journal::{Journal, JournalError, now_rfc3339};
use crate::model::ResourceId;
use crate::plan::{Budget, BudgetScope};
use crate::step::{Outcome, Step, VmEntry};

/// File of the frozen plan in the state dir.
pub const PLAN_FILE: &str = "fleet-plan.json";
const PROGRESS_FILE: &str = "fleet-progress.json";
const APPROVALS_FILE: &str = "approvals.json";

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
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ProgressFile {
    /// wave → unix seconds it ended.
    #[serde(default)]
    ended_at: BTreeMap<usize, f64>,
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn read_json<T: for<'de> Deserialize<'de> + Default>(p: &Path) -> T {
    std::fs::read(p)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn write_json<T: Serialize>(p: &Path, v: &T) -> std::io::Result<()> {
    let tmp = p.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(v).unwrap_or_default())?;
    std::fs::rename(tmp, p)
}

impl FrozenPlan {
    /// Saves into `dir`.
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        write_json(&dir.join(PLAN_FILE), self)
    }

    /// Loads from `dir` (`None` if this is not a planned run).
    pub fn load(dir: &Path) -> Option<FrozenPlan> {
        let b = std::fs::read(dir.join(PLAN_FILE)).ok()?;
        serde_json::from_slice(&b).ok()
    }

    fn budget(&self) -> Option<Budget> {
        self.failure_budget
            .as_deref()
            .and_then(|b| Budget::parse(b).ok())
    }

    fn scope(&self) -> BudgetScope {
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

/// Waves approved so far in `dir`.
pub fn approvals(dir: &Path) -> BTreeSet<usize> {
    read_json::<Vec<usize>>(&dir.join(APPROVALS_FILE))
        .into_iter()
        .collect()
}

/// Approves wave `n` in `dir`.
pub fn approve(dir: &Path, n: usize) -> std::io::Result<()> {
    let mut a = approvals(dir);
    a.insert(n);
    write_json(
        &dir.join(APPROVALS_FILE),
        &a.into_iter().collect::<Vec<_>>(),
    )
}

/// How a wave run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum WaveStop {
    /// Every wave ran to its end.
    Completed,
    /// The failure budget was exceeded in this wave.
    Halted {
        /// 1-based wave.
        wave: usize,
        /// Summary.
        reason: String,
    },
    /// This wave waits for `ade2eah approve`.
    AwaitingApproval(usize),
    /// Ctrl-C.
    Cancelled,
}

/// Counts parks live and trips the cancel switch when the budget is exceeded.
struct BudgetWatch {
    inner: Arc<dyn Progress>,
    failures: AtomicU64,
    base: u64,
    over: u64,
    budget: Option<Budget>,
    tripped: watch::Sender<bool>,
}

impl Progress for BudgetWatch {
    fn step(&self, vm: &ResourceId, step: Step) {
        self.inner.step(vm, step)
    }
    fn copy(&self, vm: &ResourceId, disk: &str, done: u64, total: u64) {
        self.inner.copy(vm, disk, done, total)
    }
    fn finished(&self, vm: &ResourceId, outcome: &Outcome) {
        if matches!(outcome, Outcome::Parked { .. }) && !*self.tripped.borrow() {
            let n = self.failures.fetch_add(1, Ordering::SeqCst) + 1;
            if let Some(b) = self.budget
                && b.exceeded(self.base + n, self.over as usize)
            {
                let _ = self.tripped.send(true);
            }
        }
        self.inner.finished(vm, outcome)
    }
}

/// Everything the executor needs.
pub struct WaveRun {
    /// Cloud.
    pub cloud: Arc<dyn Cloud>,
    /// Journal.
    pub journal: Arc<Journal>,
    /// State dir.
    pub dir: PathBuf,
    /// Run id.
    pub run_id: String,
    /// Engine options (max_parallel is overridden per wave).
    pub opts: EngineOptions,
    /// Progress display.
    pub progress: Arc<dyn Progress>,
    /// Ctrl-C.
    pub cancel: watch::Receiver<bool>,
}

impl WaveRun {
    /// Runs every unfinished wave in order. Returns the final index (each
    /// entry's `wave` set from the plan) and why it stopped.
    ///
    /// Holds only the index of the run's VMs; the engine loads a VM's full
    /// record when it starts it and drops it when the VM ends.
    pub async fn execute(
        &self,
        plan: &FrozenPlan,
        mut records: Vec<VmEntry>,
    ) -> Result<(Vec<VmEntry>, WaveStop), JournalError> {
        let mut progress: ProgressFile = read_json(&self.dir.join(PROGRESS_FILE));
        for r in &mut records {
            r.wave = plan.wave_of(&r.id);
        }
        let eligible_total = records.iter().filter(|r| r.wave.is_some()).count();
        for (i, wave) in plan.waves.iter().enumerate() {
            let n = i + 1;
            let members: Vec<usize> = (0..records.len())
                .filter(|&k| records[k].wave == Some(n))
                .collect();
            if !members.iter().any(|&k| records[k].is_active()) {
                if !members.is_empty() && !progress.ended_at.contains_key(&n) {
                    progress.ended_at.insert(n, unix_now());
                    let _ = write_json(&self.dir.join(PROGRESS_FILE), &progress);
                }
                continue;
            }
            if *self.cancel.borrow() {
                return Ok((records, WaveStop::Cancelled));
            }
            if wave.approval && !approvals(&self.dir).contains(&n) {
                return Ok((records, WaveStop::AwaitingApproval(n)));
            }
            // Soak after the last wave (with VMs) that ended before this one.
            if let Some(prev_end) = (1..n)
                .rev()
                .find_map(|p| progress.ended_at.get(&p).copied())
            {
                let wait = prev_end + wave.soak_secs as f64 - unix_now();
                if wait > 0.0 {
                    eprintln!(
                        "ade2eah: soaking {wait:.0} s before wave {n} ({})",
                        wave.name
                    );
                    let mut c = self.cancel.clone();
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs_f64(wait)) => {}
                        _ = c.wait_for(|v| *v) => { return Ok((records, WaveStop::Cancelled)); }
                    }
                }
            }
            let (base, over) = match plan.scope() {
                BudgetScope::Cumulative => (
                    records
                        .iter()
                        .filter(|r| r.wave.is_some_and(|w| w < n))
                        .filter(|r| matches!(r.outcome, Outcome::Parked { .. }))
                        .count() as u64,
                    eligible_total as u64,
                ),
                BudgetScope::PerWave => (0, members.len() as u64),
            };
            let (tx, rx) = watch::channel(false);
            let trip = tx.clone();
            let mut ctrl = self.cancel.clone();
            let fwd = tokio::spawn(async move {
                if ctrl.wait_for(|v| *v).await.is_ok() {
                    let _ = tx.send(true);
                }
            });
            let watch_progress = Arc::new(BudgetWatch {
                inner: self.progress.clone(),
                failures: AtomicU64::new(0),
                base,
                over,
                budget: plan.budget(),
                tripped: trip,
            });
            let mut opts = self.opts.clone();
            opts.max_parallel = wave.max_parallel.min(plan.max_parallel).max(1);
            let engine = Engine::new(
                self.cloud.clone(),
                self.journal.clone(),
                self.run_id.clone(),
                opts,
                watch_progress.clone(),
                rx.clone(),
            );
            eprintln!(
                "ade2eah: wave {n}/{} ({}): {} VM(s), {} at a time",
                plan.waves.len(),
                wave.name,
                members.len(),
                wave.max_parallel.min(plan.max_parallel).max(1)
            );
            let before: Vec<(usize, usize)> = members
                .iter()
                .map(|&k| (k, records[k].history_len))
                .collect();
            let batch: Vec<VmEntry> = members.iter().map(|&k| records[k].clone()).collect();
            let done = engine.run(batch).await?;
            fwd.abort();
            for (&k, rec) in members.iter().zip(done) {
                records[k] = rec;
            }
            let halted = *rx.borrow() && !*self.cancel.borrow();
            if halted {
                let failures = base + watch_progress.failures.load(Ordering::SeqCst);
                let budget = plan.budget().map(|b| b.to_string()).unwrap_or_default();
                let reason = format!(
                    "failure budget exceeded in wave {n} ({}): {failures} failed VM(s), budget {budget} ({}, {} allowed of {over})",
                    wave.name,
                    plan.failure_scope,
                    plan.budget().map(|b| b.allowed(over as usize)).unwrap_or(0)
                );
                for (k, hist) in before {
                    let entry = &records[k];
                    if entry.is_active() && entry.history_len > hist {
                        let mut rec = self.journal.get(&entry.id)?;
                        rec.outcome = Outcome::Parked {
                            reason: format!(
                                "halted by the failure budget at step {} (safe): {reason}",
                                rec.step
                            ),
                            next_action: "fix the failed VMs' causes, then run `ade2eah resume`"
                                .into(),
                        };
                        let detail = json!({"outcome": rec.outcome, "halt": true});
                        rec.note(now_rfc3339(), "park", detail.to_string());
                        self.journal.write(&rec, "park", detail)?;
                        let wave = records[k].wave;
                        records[k] = VmEntry::of(&rec);
                        records[k].wave = wave;
                    }
                }
                self.journal.flush()?;
                return Ok((records, WaveStop::Halted { wave: n, reason }));
            }
            if *self.cancel.borrow() {
                return Ok((records, WaveStop::Cancelled));
            }
            progress.ended_at.insert(n, unix_now());
            let _ = write_json(&self.dir.join(PROGRESS_FILE), &progress);
        }
        Ok((records, WaveStop::Completed))
    }
}
