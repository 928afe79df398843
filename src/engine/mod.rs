//! The engine: runs VMs through the steps.
//!
//! Per VM, forever until done or parked: observe (GETs named by
//! [`crate::step::needs`]) → [`crate::step::decide`] → carry out the decision.
//! An action is journaled as *intent* (flushed) before the Azure call and as
//! *result* or *error* (flushed) after it. Resuming after a crash is the same
//! loop started from the journaled records: the pure rules re-observe Azure
//! and either find the effect in place or repeat the idempotent call.
//!
//! Guarantees:
//! - at most `max_parallel` VMs are worked on at once, never two tasks on one VM;
//! - a transient error (classified by the client) is retried with exponential
//!   backoff up to `max_step_attempts` per step, then the VM parks;
//! - a terminal error parks the VM at once with the operator's remedy;
//! - SAS grants are recorded in the record (`open_sas`) *before* they are
//!   requested and removed only after a successful revoke;
//! - on cancellation (Ctrl-C) no new action starts; the VM stays at its step
//!   and `resume` continues it.

pub mod act;
pub mod arm;
pub mod cleanup;
pub mod lease;
pub mod rollback;
pub mod waves;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinError, JoinSet};

pub use crate::cloud::{Access, Cloud, CloudError, CloudResult, CopyFigures, Retry, VerifyFigures};

use crate::failpoint;
use crate::journal::{Journal, JournalError, now_rfc3339};
use crate::model::ResourceId;
use crate::step::rollback::Trigger;
use crate::step::validate::{DesRead, SKU_UNREAD, ValidationReads};
use crate::step::{
    Action, Decision, DecryptionState, DiskView, Observation, Outcome, Phase, Span, Step, VmEntry,
    VmRecord, VmView, guest,
};

/// Unix seconds of the wall clock (the clock of [`Span`]s).
pub(crate) fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// True while the source VM is deallocated or deleted at `step` (from the
/// deallocation until the re-created VM has started).
fn offline_at(step: Step) -> bool {
    (Step::Deallocate..=Step::Start).contains(&step)
}

/// The phase an action's span is recorded under (at `step`); copy rounds
/// are [`Phase::CopyRound`], the action-level span that reports replace by
/// the round's sub-phase spans where those exist.
fn phase_of(action: &Action, step: Step) -> Phase {
    match action {
        Action::CreateSnapshot { .. } => Phase::BackupSnapshot,
        Action::StartVm if offline_at(step) => Phase::Start,
        Action::StartVm | Action::DisableAde { .. } => Phase::Decrypt,
        Action::RemoveExtension { .. } => Phase::RemoveExtension,
        Action::Deallocate => Phase::Deallocate,
        Action::SetDetach => Phase::Detach,
        Action::CreateTargetDisk { .. }
        | Action::CreateEmptyDisk { .. }
        | Action::DeleteTargetDisk { .. }
        | Action::CreatePlaceholderNic { .. } => Phase::CreateTargets,
        Action::SwapNics { .. } => Phase::Detach,
        Action::DeletePlaceholderNic { .. } => Phase::PostStart,
        Action::RevokeAccess { .. } => Phase::Revoke,
        Action::CopyDisk { .. } | Action::CopyRound { .. } => Phase::CopyRound,
        Action::VerifyCopies => Phase::VerifyCopy,
        Action::DeleteVm => Phase::DeleteVm,
        Action::RestoreTargetAccess { .. } | Action::CreateVm => Phase::CreateVm,
        Action::ReinstallExtension { .. } | Action::GrantRole { .. } => Phase::PostStart,
        Action::RestoreVm | Action::RestoreDeleteOptions | Action::ReenableAde { .. } => {
            Phase::Rollback
        }
    }
}

/// Appends the span of `phase` from `start` until now (`offline` from the
/// record's step); consecutive NIC-hold waits (held answers and their
/// waits, nothing else recorded in between) extend one span instead.
fn push_span(rec: &mut VmRecord, phase: Phase, start: f64, round: Option<u32>, bytes: u64) {
    let end = unix_now().max(start);
    let offline = offline_at(rec.step);
    if let Some(last) = rec.spans.last_mut()
        && last.phase == phase
        && last.round == round
        && last.offline == offline
        && phase == Phase::NicHold
    {
        last.end = end;
        return;
    }
    rec.record_span(Span {
        phase,
        start,
        end,
        round,
        offline,
        bytes,
    });
}

/// At the advance from [`Step::Start`] (the VM observed running: the end of
/// the downtime window) or [`Step::Verify`]: extends the step's action span
/// to now, or records the step's span from `entered` when it needed no
/// action (a re-created VM that Azure started itself).
fn close_step_span(rec: &mut VmRecord, entered: f64) {
    let phase = match rec.step {
        Step::Start => Phase::Start,
        Step::Verify => Phase::PostStart,
        _ => return,
    };
    match rec.spans.last_mut() {
        Some(last) if last.phase == phase => last.end = unix_now().max(last.end),
        _ => push_span(rec, phase, entered, None, 0),
    }
}

/// The round a copy action works on: the newest round number of the disks
/// not yet sealed.
fn open_round(rec: &VmRecord) -> Option<u32> {
    rec.disks
        .iter()
        .filter_map(|d| d.rounds.last().map(|r| r.number))
        .max()
}

/// Engine tuning.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Wait between polls when Azure gives no delay (`--poll-interval`).
    pub poll_interval: Duration,
    /// Most VMs in flight at once.
    pub max_parallel: usize,
    /// Failed attempts per step before the VM parks.
    pub max_step_attempts: u32,
    /// First step-retry delay (doubles per attempt, capped at 60×).
    pub retry_base: Duration,
    /// Longest wait for the guest to finish decrypting before parking.
    pub decrypt_max_wait: Duration,
    /// Longest wait at `verify` for checks that may still resolve (the VM
    /// agent becoming ready, the in-guest check) before parking.
    pub verify_max_wait: Duration,
    /// Shortest SAS lifetime requested for copies (`--sas-hours`).
    pub sas_duration: Duration,
    /// Lifetime of the Azure-side VM lease ([`lease`]).
    pub lease_ttl: Duration,
    /// Take over leases held by other runs (`--break-lease`).
    pub break_lease: bool,
}

impl EngineOptions {
    /// Defaults derived from the poll interval.
    pub fn new(poll_interval: Duration) -> Self {
        EngineOptions {
            poll_interval,
            max_parallel: 8,
            max_step_attempts: 8,
            retry_base: poll_interval,
            decrypt_max_wait: Duration::from_secs(72 * 3600),
            verify_max_wait: Duration::from_secs(30 * 60),
            sas_duration: crate::copy::DEFAULT_SAS_MIN,
            lease_ttl: lease::DEFAULT_TTL,
            break_lease: false,
        }
    }

    /// [`EngineOptions::new`] with what `cloud`'s transfer options set for
    /// the engine (`--sas-hours`).
    pub fn for_cloud(poll_interval: Duration, cloud: &arm::ArmCloud) -> Self {
        EngineOptions {
            sas_duration: cloud.copy_options().sas_min,
            ..EngineOptions::new(poll_interval)
        }
    }
}

/// Receives progress as the engine works (terminal bars, or nothing).
pub trait Progress: Send + Sync {
    /// A VM moved to `step`.
    fn step(&self, vm: &crate::model::ResourceId, step: Step);
    /// Copy progress for one disk: `done` of `total` bytes of its current
    /// round (the first round copies everything allocated, later ones the delta).
    fn copy(&self, vm: &crate::model::ResourceId, disk: &str, done: u64, total: u64);
    /// A VM reached a final outcome in this run.
    fn finished(&self, vm: &crate::model::ResourceId, outcome: &Outcome);
}

/// A [`Progress`] that shows nothing.
pub struct NoProgress;
impl Progress for NoProgress {
    fn step(&self, _: &crate::model::ResourceId, _: Step) {}
    fn copy(&self, _: &crate::model::ResourceId, _: &str, _: u64, _: u64) {}
    fn finished(&self, _: &crate::model::ResourceId, _: &Outcome) {}
}

/// See [`Engine::held_delay`].
type HeldSince = std::collections::HashMap<(ResourceId, String), (tokio::time::Instant, u32)>;

/// The engine for one run.
#[derive(Clone)]
pub struct Engine {
    cloud: Arc<dyn Cloud>,
    journal: Arc<Journal>,
    run_id: String,
    opts: EngineOptions,
    progress: Arc<dyn Progress>,
    cancel: watch::Receiver<bool>,
    lease: lease::LeaseKeeper,
    /// Per VM and step: when Azure first answered "held" (NIC reservation)
    /// in this process, and how many held answers since.
    holds: Arc<std::sync::Mutex<HeldSince>>,
}

impl Engine {
    /// Builds an engine. `cancel` turning `true` stops new actions.
    pub fn new(
        cloud: Arc<dyn Cloud>,
        journal: Arc<Journal>,
        run_id: String,
        opts: EngineOptions,
        progress: Arc<dyn Progress>,
        cancel: watch::Receiver<bool>,
    ) -> Self {
        let lease = lease::LeaseKeeper::new(&run_id, opts.lease_ttl, opts.break_lease);
        Engine {
            lease,
            cloud,
            journal,
            run_id,
            opts,
            progress,
            cancel,
            holds: Arc::default(),
        }
    }

    /// Drives every active VM of `entries` to verified or parked (or until
    /// cancelled), `max_parallel` at a time, and returns the index updated.
    ///
    /// Only the index is held for every VM: a VM's full record is loaded
    /// from the journal when it gets a slot and dropped when it ends, so at
    /// most `max_parallel` full records (and VM tasks) exist at once. VMs are
    /// started in order; once the run is cancelled no further VM starts.
    /// A journal error stops new starts, lets the VMs in flight end, and is
    /// returned.
    pub async fn run(&self, mut entries: Vec<VmEntry>) -> Result<Vec<VmEntry>, JournalError> {
        let sem = Arc::new(Semaphore::new(self.opts.max_parallel.max(1)));
        let mut tasks: JoinSet<(usize, Result<VmEntry, JournalError>)> = JoinSet::new();
        let mut first_err: Option<JournalError> = None;
        type Joined = Result<(usize, Result<VmEntry, JournalError>), JoinError>;
        fn settle(joined: Joined, entries: &mut [VmEntry], first_err: &mut Option<JournalError>) {
            match joined {
                Ok((k, Ok(mut e))) => {
                    e.wave = entries[k].wave;
                    entries[k] = e;
                }
                Ok((_, Err(e))) => {
                    first_err.get_or_insert(e);
                }
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => panic!("VM task failed: {e}"),
            }
        }
        for k in 0..entries.len() {
            if !entries[k].is_active() {
                continue;
            }
            let permit = sem
                .clone()
                .acquire_owned()
                .await
                .expect("semaphore never closed");
            while let Some(joined) = tasks.try_join_next() {
                settle(joined, &mut entries, &mut first_err);
            }
            if self.cancelled() || first_err.is_some() {
                break;
            }
            let me = self.clone();
            let id = entries[k].id.clone();
            tasks.spawn(async move {
                let _permit = permit;
                let done = match me.journal.get(&id) {
                    Ok(rec) => me.drive(rec).await.map(|r| VmEntry::of(&r)),
                    Err(e) => Err(e),
                };
                (k, done)
            });
        }
        while let Some(joined) = tasks.join_next().await {
            settle(joined, &mut entries, &mut first_err);
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(entries),
        }
    }

    fn cancelled(&self) -> bool {
        *self.cancel.borrow()
    }

    /// Journals `rec` with one event; crash point after the write.
    fn record(
        &self,
        rec: &mut VmRecord,
        kind: &str,
        detail: serde_json::Value,
    ) -> Result<(), JournalError> {
        rec.note(now_rfc3339(), kind, detail.to_string());
        self.journal.write(rec, kind, detail)?;
        failpoint::hit(&format!("after-journal:{kind}:{}", rollback::phase(rec)));
        Ok(())
    }

    async fn sleep(&self, d: Duration) {
        let mut c = self.cancel.clone();
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = c.wait_for(|v| *v) => {}
        }
    }

    /// One VM's loop. Returns when the VM is verified, parked, or the run is cancelled.
    async fn drive(&self, mut rec: VmRecord) -> Result<VmRecord, JournalError> {
        if let Some(pending) = rec.pending.take() {
            // Intent without result: the call may or may not have happened.
            // The rules re-observe Azure, so nothing more is needed here.
            self.record(&mut rec, "recover", json!({"pending": pending}))?;
        }
        let mut wait_started: Option<tokio::time::Instant> = None;
        // Wall-clock start of the current wait for the guest's decryption.
        let mut decrypt_wait: Option<f64> = None;
        // Wall-clock time the current step was entered (in this process).
        let mut step_entered = unix_now();
        self.progress.step(&rec.id, rec.step);
        loop {
            if self.cancelled() {
                return Ok(rec);
            }
            if let Some(reason) = rollback::finished(&rec) {
                // The lease tag goes first, as for a finished migration.
                if let Err(e) = self.lease.release_one(self.cloud(), &rec.id).await {
                    if self.on_error(&mut rec, "release-lease", e, None).await? {
                        return Ok(rec);
                    }
                    continue;
                }
                rec.outcome = Outcome::RolledBack { reason };
                self.record(&mut rec, "rolled-back", json!({}))?;
                self.progress.finished(&rec.id, &rec.outcome);
                return Ok(rec);
            }
            if rec.step == Step::Done && rec.rollback.is_none() {
                // The lease tag goes before the end is journaled (a crash in
                // between: the next resume removes it), as soon as the VM is
                // done, so a later wave (or another run) never waits on it.
                if let Err(e) = self.lease.release_one(self.cloud(), &rec.id).await {
                    if self.on_error(&mut rec, "release-lease", e, None).await? {
                        return Ok(rec);
                    }
                    continue;
                }
                rec.outcome = Outcome::Verified;
                self.record(&mut rec, "verified", json!({}))?;
                self.progress.finished(&rec.id, &rec.outcome);
                return Ok(rec);
            }
            let obs = match self.observe(&rec).await {
                Ok(o) => o,
                Err(e) => {
                    if self.on_error(&mut rec, "observe", e, None).await? {
                        return Ok(rec);
                    }
                    continue;
                }
            };
            match rollback::decide_of(&rec, &obs, &self.run_id) {
                Decision::Advance => {
                    if let Some(t0) = decrypt_wait.take() {
                        push_span(&mut rec, Phase::Decrypt, t0, None, 0);
                    }
                    if rec.rollback.is_none() {
                        close_step_span(&mut rec, step_entered);
                    }
                    step_entered = unix_now();
                    if rec.rollback.is_none() && rec.step == Step::VerifyCopy {
                        for id in crate::step::decide::closed_in_azure(&rec, &obs) {
                            rec.sas_closed(&id);
                        }
                    }
                    let detail = rollback::advance(&mut rec);
                    wait_started = None;
                    self.record(&mut rec, "advance", detail)?;
                    self.progress.step(&rec.id, rec.step);
                }
                Decision::Wait { reason } => {
                    let started = *wait_started.get_or_insert_with(tokio::time::Instant::now);
                    if rec.step == Step::AwaitDecrypted {
                        decrypt_wait.get_or_insert_with(unix_now);
                    }
                    if rec.step == Step::AwaitDecrypted
                        && rec.rollback.is_none()
                        && started.elapsed() > self.opts.decrypt_max_wait
                    {
                        self.park(
                            &mut rec,
                            format!(
                                "decryption did not finish within {:?}: {reason}",
                                self.opts.decrypt_max_wait
                            ),
                            "check the guest's decryption progress, then run `ade2eah resume`",
                        )?;
                        return Ok(rec);
                    }
                    if rec.step == Step::Verify && started.elapsed() > self.opts.verify_max_wait {
                        self.park(
                            &mut rec,
                            format!(
                                "verification did not complete within {:?}: {reason}",
                                self.opts.verify_max_wait
                            ),
                            "check the VM agent and the guest (boot diagnostics), then run `ade2eah resume`",
                        )?;
                        return Ok(rec);
                    }
                    self.sleep(self.opts.poll_interval).await;
                }
                Decision::Park {
                    reason,
                    next_action,
                } => {
                    if !self.roll_back_instead(&mut rec, Trigger::Park, &reason)? {
                        self.park(&mut rec, reason, next_action)?;
                        return Ok(rec);
                    }
                }
                Decision::Act(action) => {
                    if self.act_journaled(&mut rec, action).await? {
                        return Ok(rec);
                    }
                }
            }
        }
    }

    /// Journals intent, acts, journals the result. Returns true if the VM parked.
    async fn act_journaled(
        &self,
        rec: &mut VmRecord,
        action: Action,
    ) -> Result<bool, JournalError> {
        let name = action.name();
        if let Err(e) = self.lease.before(self.cloud(), &rec.id, name).await {
            return self.on_error(rec, name, e, None).await;
        }
        failpoint::hit(&format!("before-intent:{name}"));
        act::prepare_intent(rec, &action);
        rec.pending = Some(action.clone());
        self.record(rec, "intent", json!({"action": action}))?;
        failpoint::hit(&format!("after-intent:{name}"));
        let round = matches!(action, Action::CopyRound { .. } | Action::CopyDisk { .. })
            .then(|| open_round(rec))
            .flatten();
        let t0 = unix_now();
        let result = act::perform(self, rec, &action).await;
        failpoint::hit(&format!("after-act:{name}"));
        rec.pending = None;
        if result.is_ok() {
            self.lease.after(self.cloud(), &rec.id, name).await;
        }
        // A call Azure refused because it holds a resource is time spent
        // in the hold (recorded by `on_error`), not in the action.
        if !matches!(&result, Err(e) if matches!(e.retry, Retry::Held(_))) {
            let bytes = match &result {
                Ok(detail) => detail["bytes"].as_u64().unwrap_or(0),
                Err(_) => 0,
            };
            push_span(rec, phase_of(&action, rec.step), t0, round, bytes);
        }
        match result {
            Ok(detail) => {
                self.record(
                    rec,
                    "result",
                    json!({"action": name, "ok": true, "detail": detail}),
                )?;
                Ok(false)
            }
            Err(e) => self.on_error(rec, name, e, Some(t0)).await,
        }
    }

    /// Handles a failed call: journal it, then retry later or park.
    /// Returns true if the VM parked. `since`: when the failed action began
    /// (a held answer's wait is recorded as a [`Phase::NicHold`] span from
    /// then until the wait ends).
    async fn on_error(
        &self,
        rec: &mut VmRecord,
        during: &str,
        e: CloudError,
        since: Option<f64>,
    ) -> Result<bool, JournalError> {
        if let Retry::Held(hold) = e.retry
            && let Some(delay) = self.held_delay(&rec.id, rollback::phase(rec), hold)
        {
            // A hold Azure states (the NIC reservation) is waited out at a
            // steady pace and spends no step attempt until it has clearly
            // passed (three times its stated length).
            let t0 = since.unwrap_or_else(unix_now);
            self.record(rec, "error", json!({"during": during, "transient": true, "held": true, "code": e.code, "message": e.message, "attempt": rec.attempts}))?;
            self.sleep(delay).await;
            // Journaled with the next write (the next attempt's intent).
            push_span(rec, Phase::NicHold, t0, None, 0);
            return Ok(false);
        }
        if let (Retry::Held(_), Some(t0)) = (e.retry, since) {
            push_span(rec, Phase::NicHold, t0, None, 0);
        }
        rec.attempts += 1;
        self.record(rec, "error", json!({"during": during, "transient": e.is_transient(), "code": e.code, "message": e.message, "attempt": rec.attempts}))?;
        if !e.is_transient() {
            let reason = format!("{during} failed: {}", e.message);
            if self.roll_back_instead(rec, Trigger::TerminalError, &reason)? {
                return Ok(false);
            }
            self.park(
                rec,
                reason,
                "fix the cause described, then run `ade2eah resume`",
            )?;
            return Ok(true);
        }
        if rec.attempts >= self.opts.max_step_attempts {
            self.park(
                rec,
                format!("{during} kept failing after {} attempts: {}", rec.attempts, e.message),
                "Azure kept refusing transiently (throttling, conflicts or capacity); run `ade2eah resume` later",
            )?;
            return Ok(true);
        }
        let backoff = self
            .opts
            .retry_base
            .saturating_mul(1 << (rec.attempts - 1).min(6))
            .min(self.opts.retry_base.saturating_mul(60));
        // A server-requested delay is honoured exactly; otherwise back off.
        let delay = e.retry_after.unwrap_or(backoff);
        self.sleep(delay).await;
        Ok(false)
    }

    /// The wait before retrying a call Azure refused because it holds a
    /// resource for `hold`, or `None` once the hold has outlasted three
    /// times its stated length (then ordinary attempts count again).
    ///
    /// The pace is in poll intervals, not in `hold`: the poll interval is
    /// the one duration valid on both real Azure and a time-scaled emulator.
    /// 2 polls for the first four retries, then 4, then 8: with the 15 s
    /// default poll a 180 s hold costs 5 refused calls and ends at most one
    /// minute late; exponential backoff could end it up to 180 s late.
    /// The window is kept once it has run out, so every later held answer
    /// at this step spends an attempt and the VM parks as for any transient.
    /// The window is per step, a rollback step counting apart from the
    /// forward step it began at (a refused create reserves the NIC again,
    /// facts §11: the restore waits out a hold of its own).
    fn held_delay(&self, vm: &ResourceId, phase: String, hold: Duration) -> Option<Duration> {
        let mut holds = self.holds.lock().unwrap_or_else(|p| p.into_inner());
        let now = tokio::time::Instant::now();
        let (since, n) = holds.entry((vm.clone(), phase)).or_insert((now, 0));
        if now.duration_since(*since) > hold.saturating_mul(3) {
            return None;
        }
        let factor = 2u32 << (*n / 4).min(2);
        *n += 1;
        Some(self.opts.poll_interval.saturating_mul(factor))
    }

    fn park(
        &self,
        rec: &mut VmRecord,
        reason: impl Into<String>,
        next_action: impl Into<String>,
    ) -> Result<(), JournalError> {
        rec.outcome = Outcome::Parked {
            reason: crate::model::redact(&reason.into()),
            next_action: next_action.into(),
        };
        let detail = json!({"outcome": rec.outcome});
        self.record(rec, "park", detail)?;
        self.progress.finished(&rec.id, &rec.outcome);
        Ok(())
    }

    async fn observe(&self, rec: &VmRecord) -> CloudResult<Observation> {
        let n = rollback::needs_of(rec);
        let mut obs = Observation::default();
        if n.vm {
            let vm = self.cloud.get_vm(&rec.id, n.instance_view).await?;
            obs.vm = Some(vm.as_ref().map(|v| VmView::from_raw(v, None)));
            if rec.rollback.is_none()
                && matches!(rec.step, Step::Reinstall | Step::Verify)
                && let Some(v) = &vm
            {
                obs.carried = Some(self.observe_carried(rec, v, n.role_assignments).await?);
            }
        }
        for d in &n.disks {
            let disk = self.cloud.get_disk(d).await?;
            obs.disks
                .insert(d.key(), disk.as_ref().map(DiskView::from_raw));
        }
        if n.validate {
            obs.validation = Some(self.validation_reads(rec).await?);
        }
        if n.placeholder_nic
            && let Some(id) = crate::step::nic_swap::placeholder_id(rec)
        {
            let nic = self.cloud.get_nic(&id).await?;
            obs.placeholder_nic = Some(nic.as_ref().map(crate::step::nic_swap::NicView::from_raw));
        }
        if n.guest && self.guest_can_answer(rec.step, &obs) {
            obs.guest = Some(self.guest_check(rec).await?);
        }
        Ok(obs)
    }

    /// The fresh reads of validate-before-delete ([`crate::step::validate`]):
    /// the size's SKU, every DES the new disks use (a refused read is
    /// "unreadable", not an error), the region's usages and the locks.
    async fn validation_reads(&self, rec: &VmRecord) -> CloudResult<ValidationReads> {
        let Some(f) = rec.facts.as_ref() else {
            return Ok(ValidationReads::default());
        };
        let sub = rec.id.subscription();
        let mut reads = ValidationReads::default();
        // A read Azure refuses (a missing permission) skips its check rather
        // than blocking the run; a transient failure is retried as usual.
        fn refused<T>(
            r: CloudResult<T>,
            what: &str,
            unread: &mut Vec<String>,
        ) -> CloudResult<Option<T>> {
            match r {
                Ok(v) => Ok(Some(v)),
                Err(e) if !e.is_transient() => {
                    unread.push(format!("{what}: {}", e.message));
                    Ok(None)
                }
                Err(e) => Err(e),
            }
        }
        let sku = self.cloud.vm_sku(sub, &f.location, &f.size).await;
        reads.sku = refused(sku, SKU_UNREAD, &mut reads.unread)?.flatten();
        let usages = self.cloud.compute_usages(sub, &f.location).await;
        reads.usages = refused(usages, "usages", &mut reads.unread)?.flatten();
        let locks = self.cloud.list_locks(sub).await;
        reads.locks = refused(locks, "locks", &mut reads.unread)?.flatten();
        let ids = crate::step::encryption::des_ids(
            &f.target_encryption,
            rec.disks.iter().map(|d| &d.source_model),
        );
        for id in ids {
            let read = match self.cloud.get_disk_encryption_set(&id).await {
                Ok(Some(v)) => DesRead::Found(v),
                Ok(None) => DesRead::Missing,
                Err(e) if !e.is_transient() => DesRead::Unreadable(e.message),
                Err(e) => return Err(e),
            };
            reads.des.push((id, read));
        }
        Ok(reads)
    }

    /// The guest can answer Run Command: before the copy once the API
    /// reports it decrypted, after the start once it runs with its agent ready.
    fn guest_can_answer(&self, step: Step, obs: &Observation) -> bool {
        let Some(Some(vm)) = &obs.vm else {
            return false;
        };
        match step {
            Step::AwaitDecrypted => vm.decryption == DecryptionState::Complete,
            _ => vm.power.as_deref() == Some("running") && vm.vm_agent_ready == Some(true),
        }
    }

    /// `--guest-check`: Run Command on the VM, its output read by [`guest::parse`].
    async fn guest_check(&self, rec: &VmRecord) -> CloudResult<Option<guest::GuestReport>> {
        let Some(f) = rec.facts.as_ref() else {
            return Ok(None);
        };
        let out = self
            .cloud
            .run_command(&rec.id, &guest::run_command_body(f.os))
            .await?;
        Ok(guest::parse(f.os, &out))
    }

    /// The extensions, principal and (when `roles`) the principal's role
    /// assignments of the VM as read in `vm`.
    async fn observe_carried(
        &self,
        rec: &VmRecord,
        vm: &serde_json::Value,
        roles: bool,
    ) -> CloudResult<crate::step::reinstall::CarriedView> {
        let mut seen = crate::step::reinstall::CarriedView::from_vm(vm);
        if roles && let Some(p) = seen.principal_id.clone() {
            let listed = self
                .cloud
                .list_role_assignments(rec.id.subscription(), &p)
                .await?;
            seen.roles = Some(
                listed
                    .iter()
                    .filter_map(crate::step::reinstall::RoleAssignmentView::from_raw)
                    .collect(),
            );
        }
        Ok(seen)
    }

    /// The engine's cloud (for actions).
    pub(crate) fn cloud(&self) -> &dyn Cloud {
        self.cloud.as_ref()
    }

    /// Releases the Azure-side lease of these VMs (call for verified VMs at
    /// the end of a run).
    pub async fn release_leases(&self, vms: &[crate::model::ResourceId]) {
        self.lease.release(self.cloud(), vms).await;
    }

    /// The run id (tags resources).
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    pub(crate) fn opts(&self) -> &EngineOptions {
        &self.opts
    }

    pub(crate) fn progress(&self) -> &dyn Progress {
        self.progress.as_ref()
    }

    pub(crate) fn journal_write(
        &self,
        rec: &mut VmRecord,
        kind: &str,
        detail: serde_json::Value,
    ) -> Result<(), CloudError> {
        self.record(rec, kind, detail).map_err(|e| CloudError {
            retry: Retry::Terminal,
            code: None,
            message: format!("journal write failed: {e}"),
            retry_after: None,
        })
    }
}
