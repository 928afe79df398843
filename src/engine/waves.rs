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
//! plan, [`FrozenPlan`]), `fleet-progress.json` (wave end times) and
//! `approvals.json` (written by `ade2eah approve`; a separate file so it
//! never contends for the journal lock); [`crate::journal::state_dir`] owns
//! those files and writes them.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;

use super::{Cloud, Engine, EngineOptions, Progress, unix_now};
use crate::journal::{Journal, JournalError, now_rfc3339, state_dir};
use crate::model::ResourceId;
use crate::plan::{Budget, BudgetScope, FrozenPlan};
use crate::step::{Outcome, Step, VmEntry};

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
        if outcome.is_failure() && !*self.tripped.borrow() {
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
        let mut ended_at = state_dir::wave_ends(&self.dir);
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
                if !members.is_empty() && !ended_at.contains_key(&n) {
                    ended_at.insert(n, unix_now());
                    let _ = state_dir::save_wave_ends(&self.dir, &ended_at);
                }
                continue;
            }
            if *self.cancel.borrow() {
                return Ok((records, WaveStop::Cancelled));
            }
            if wave.approval && !state_dir::approvals(&self.dir).contains(&n) {
                return Ok((records, WaveStop::AwaitingApproval(n)));
            }
            // Soak after the last wave (with VMs) that ended before this one.
            if let Some(prev_end) = (1..n).rev().find_map(|p| ended_at.get(&p).copied()) {
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
                        .filter(|r| r.outcome.is_failure())
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
            ended_at.insert(n, unix_now());
            let _ = state_dir::save_wave_ends(&self.dir, &ended_at);
        }
        Ok((records, WaveStop::Completed))
    }
}
