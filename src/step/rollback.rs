//! Rollback: bringing a VM back to its original VM resource on its original
//! disks (never deleted by a run), from any step of the migration. Pure, like
//! [`super::decide`]: the engine observes (GETs named by [`needs`]), asks
//! [`decide_rollback`], carries out the [`Decision`], and journals intent and
//! result exactly as for the forward steps. Every rule first asks "is this
//! already in place?", so a rollback is safe to repeat after a crash.
//!
//! Steps, in order ([`RollbackStep::ORDER`]):
//! 1. `revoke-sas`: revoke every SAS grant the run may have left open (an
//!    upload target whose copy stopped before its footer cannot be sealed:
//!    Azure refuses the revoke with `InvalidVhd` and ends the grant; it is
//!    listed as unsealed, holding a partial copy);
//! 2. `remove-new-vm`: a re-created VM on the new disks is deleted with
//!    `deleteOption=Detach` first (a verified one only with `--force`);
//! 3. `restore-vm`: if the VM is gone, PUT the original from the journaled
//!    model on its original disks ([`super::body::restore_vm`]);
//! 4. `restore-delete-options`: the original `deleteOption` of every disk
//!    and NIC (PATCH), if the run had set them to `Detach`;
//! 5. `reenable-ade`: only with `--reenable-ade`: the ADE extension PUT with
//!    the journaled key vault settings (the disks were decrypted in place);
//! 6. `restore-power`: running or deallocated as before the run.
//!
//! New disks and snapshots the run created are kept and listed for cleanup
//! ([`left_to_clean`]).

use serde::{Deserialize, Serialize};

use super::decide::Needs;
use super::observe::{Observation, VmView};
use super::record::{CreatedKind, DiskRole, Outcome, VmRecord};
use super::{Action, Decision, Step};
use crate::model::ResourceId;

/// When a run rolls a VM back by itself (fixed at `run`, journaled per VM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RollbackPolicy {
    /// Roll back when the re-create after the delete is refused terminally
    /// (on unless `--no-auto-rollback`).
    pub auto: bool,
    /// Roll back when the verification after start fails
    /// (`--rollback-on-verify-failure`).
    pub on_verify_failure: bool,
}

impl Default for RollbackPolicy {
    fn default() -> Self {
        RollbackPolicy {
            auto: true,
            on_verify_failure: false,
        }
    }
}

/// One stage of a rollback, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RollbackStep {
    /// Revoke SAS left open.
    RevokeSas,
    /// Delete a re-created VM on the new disks (Detach first).
    RemoveNewVm,
    /// PUT the original VM on its original disks if it is gone.
    RestoreVm,
    /// PATCH the original `deleteOption` of every disk and NIC back.
    RestoreDeleteOptions,
    /// Re-enable ADE with the journaled settings (`--reenable-ade` only).
    ReenableAde,
    /// Start or deallocate the VM as it was before the run.
    RestorePower,
    /// Rolled back.
    Done,
}

impl RollbackStep {
    /// Every rollback step in execution order.
    pub const ORDER: [RollbackStep; 7] = [
        RollbackStep::RevokeSas,
        RollbackStep::RemoveNewVm,
        RollbackStep::RestoreVm,
        RollbackStep::RestoreDeleteOptions,
        RollbackStep::ReenableAde,
        RollbackStep::RestorePower,
        RollbackStep::Done,
    ];

    /// The step after this one (`Done` stays `Done`).
    pub fn next(self) -> RollbackStep {
        let i = Self::ORDER.iter().position(|s| *s == self).unwrap_or(6);
        Self::ORDER[(i + 1).min(6)]
    }

    /// Stable kebab-case name (status, failpoints: `rollback-<name>`).
    pub fn name(self) -> &'static str {
        match self {
            RollbackStep::RevokeSas => "revoke-sas",
            RollbackStep::RemoveNewVm => "remove-new-vm",
            RollbackStep::RestoreVm => "restore-vm",
            RollbackStep::RestoreDeleteOptions => "restore-delete-options",
            RollbackStep::ReenableAde => "reenable-ade",
            RollbackStep::RestorePower => "restore-power",
            RollbackStep::Done => "done",
        }
    }
}

/// A rollback in progress or done (journaled in [`VmRecord::rollback`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackState {
    /// Current rollback step.
    pub step: RollbackStep,
    /// Why (the refusal of an automatic rollback, or the operator's request).
    pub reason: String,
    /// The forward step the VM was at when the rollback began.
    pub from: Step,
    /// `--force`: a VM verified on its new disks may be rolled back.
    #[serde(default)]
    pub force: bool,
    /// `--reenable-ade`.
    #[serde(default)]
    pub reenable_ade: bool,
    /// True once the re-created VM on the new disks was deleted.
    #[serde(default)]
    pub new_vm_removed: bool,
    /// True once the original VM was PUT again from the journaled model.
    #[serde(default)]
    pub vm_restored: bool,
    /// Upload targets whose revoke Azure refused with `InvalidVhd` (their
    /// copy stopped before the footer): the grant ended, the disk stays in
    /// its upload state with a partial copy (left to clean).
    #[serde(default)]
    pub unsealed: Vec<ResourceId>,
    /// The power state before the run (from the journaled model), which
    /// the rollback restores.
    #[serde(default)]
    pub original_power: Option<String>,
}

/// What the operator asked `rollback` for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// `--force`.
    pub force: bool,
    /// `--reenable-ade`.
    pub reenable_ade: bool,
}

/// What [`begin`] did with a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// Nothing to roll back (never started, skipped, already rolled back):
    /// the record is unchanged; the text says why.
    NoOp(String),
    /// Not allowed as asked (a verified VM without `--force`); unchanged.
    Refused(String),
    /// The record now carries a rollback in progress (new or continued).
    Started,
}

/// True when nothing was ever sent to change this VM: still at the first
/// step with nothing created and no call in flight.
pub fn never_started(rec: &VmRecord) -> bool {
    rec.step == Step::Snapshot && rec.created.is_empty() && rec.pending.is_none()
}

/// Puts `rec` into rollback for `reason`, as the operator asked.
pub fn begin(rec: &mut VmRecord, reason: &str, req: &Request) -> Begin {
    match &rec.outcome {
        Outcome::RolledBack { .. } => {
            return Begin::NoOp("already rolled back; nothing to do".into());
        }
        Outcome::Skipped { .. } => {
            return Begin::NoOp("skipped by the run (never changed); nothing to do".into());
        }
        Outcome::Verified if !req.force => {
            return Begin::Refused(
                "it was verified on its new disks: rolling it back needs --force, and writes made since the migration stay on the new disks (they are kept)".into(),
            );
        }
        _ => {}
    }
    if rec.rollback.is_none() && never_started(rec) {
        return Begin::NoOp("the run never changed it; nothing to do".into());
    }
    match &mut rec.rollback {
        Some(rb) => {
            rb.force |= req.force;
            rb.reenable_ade |= req.reenable_ade;
        }
        None => {
            rec.rollback = Some(RollbackState {
                step: RollbackStep::RevokeSas,
                reason: reason.to_string(),
                from: rec.step,
                force: req.force,
                reenable_ade: req.reenable_ade,
                new_vm_removed: false,
                vm_restored: false,
                unsealed: Vec::new(),
                original_power: original_view(rec).and_then(|v| v.power),
            });
        }
    }
    rec.outcome = Outcome::InProgress;
    rec.attempts = 0;
    Begin::Started
}

/// Why a run would otherwise park a VM, for [`auto_rollback`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Azure refused a call terminally (not worth retrying).
    TerminalError,
    /// A rule parked the VM (for example the verification failed).
    Park,
}

/// Instead of parking, starts a rollback when the record's policy asks for
/// it: a terminal refusal at the re-create (the VM is deleted: without a
/// rollback it stays down), or, with `on_verify_failure`, a failed
/// verification. Returns true when `rec` now rolls back.
pub fn auto_rollback(rec: &mut VmRecord, trigger: Trigger, reason: &str) -> bool {
    if rec.rollback.is_some() || !rec.is_active() {
        return false;
    }
    let wanted = match (rec.step, trigger) {
        (Step::Recreate, Trigger::TerminalError) => rec.rollback_policy.auto,
        (Step::Verify, Trigger::Park) => rec.rollback_policy.on_verify_failure,
        _ => false,
    };
    wanted && begin(rec, reason, &Request::default()) == Begin::Started
}

/// The reads [`decide_rollback`] needs at the record's rollback step.
pub fn needs(rec: &VmRecord) -> Needs {
    match rec.rollback.as_ref().map(|r| r.step) {
        Some(RollbackStep::RevokeSas) => Needs {
            disks: rec.open_sas.clone(),
            ..Needs::default()
        },
        Some(RollbackStep::Done) | None => Needs::default(),
        Some(step) => Needs {
            vm: true,
            instance_view: true,
            placeholder_nic: step == RollbackStep::RestorePower
                && super::nic_swap::placeholder_id(rec).is_some(),
            ..Needs::default()
        },
    }
}

fn os_source(rec: &VmRecord) -> Option<&ResourceId> {
    rec.disks
        .iter()
        .find(|d| d.role == DiskRole::Os)
        .map(|d| &d.source)
}

fn os_target(rec: &VmRecord) -> Option<&ResourceId> {
    rec.disks
        .iter()
        .find(|d| d.role == DiskRole::Os)
        .map(|d| &d.target)
}

/// The original VM's view (power state and delete options before the run).
pub fn original_view(rec: &VmRecord) -> Option<VmView> {
    rec.original_model
        .as_ref()
        .map(|m| VmView::from_raw(m, None))
}

/// True when `vm` is on the original OS disk (the original VM, or the one
/// restored from the journal).
fn is_original(rec: &VmRecord, vm: &VmView) -> bool {
    vm.os_disk.is_some() && vm.os_disk.as_ref() == os_source(rec)
}

fn busy() -> Decision {
    Decision::Wait {
        reason: "an operation is running on the VM".into(),
    }
}

fn foreign() -> Decision {
    Decision::park(
        "a VM with this name exists on neither the original disks nor this run's new disks",
        "check who created it (activity log); remove it if it is not needed, then run `ade2eah resume`; the original disks are untouched",
    )
}

/// Decides the next move of a rollback. `run_id` makes the sequence version
/// of an ADE re-enable unique to the run.
pub fn decide_rollback(rec: &VmRecord, obs: &Observation, run_id: &str) -> Decision {
    let Some(rb) = &rec.rollback else {
        return Decision::Advance;
    };
    let Some(original) = original_view(rec) else {
        return Decision::park(
            "the original VM model is not in the journal; cannot roll back",
            "restore the VM by hand from its original disks (`ade2eah status --output json` lists them)",
        );
    };
    if rb.step == RollbackStep::RevokeSas {
        return revoke_sas(rec, obs);
    }
    if rb.step == RollbackStep::Done {
        return Decision::Advance;
    }
    let vm = match &obs.vm {
        None => {
            return Decision::Wait {
                reason: "VM not observed".into(),
            };
        }
        Some(vm) => vm.as_ref(),
    };
    match rb.step {
        RollbackStep::RemoveNewVm => remove_new_vm(rec, rb, vm),
        RollbackStep::RestoreVm => match vm {
            None => Decision::Act(Action::RestoreVm),
            Some(v) if is_original(rec, v) && v.is_settled() => Decision::Advance,
            Some(v) if is_original(rec, v) => Decision::Wait {
                reason: "the original VM is being restored".into(),
            },
            Some(_) => foreign(),
        },
        _ => {
            let Some(vm) = vm.filter(|v| is_original(rec, v)) else {
                return match vm {
                    None => Decision::park(
                        "the VM disappeared during the rollback",
                        "check the activity log, then run `ade2eah resume` (the rollback re-creates it from the journal)",
                    ),
                    Some(_) => foreign(),
                };
            };
            if !vm.is_settled() {
                return busy();
            }
            match rb.step {
                RollbackStep::RestoreDeleteOptions => {
                    if vm.delete_options == original.delete_options {
                        Decision::Advance
                    } else {
                        Decision::Act(Action::RestoreDeleteOptions)
                    }
                }
                RollbackStep::ReenableAde => reenable_ade(rec, rb, vm, run_id),
                _ => super::nic_swap::remove_placeholder(rec, obs, run_id)
                    .unwrap_or_else(|| restore_power(&original, vm)),
            }
        }
    }
}

fn revoke_sas(rec: &VmRecord, obs: &Observation) -> Decision {
    for id in &rec.open_sas {
        match obs.disk(id) {
            None => {
                return Decision::Wait {
                    reason: format!("{} not observed", id.name()),
                };
            }
            // Gone: nothing is open on it.
            Some(None) => continue,
            // Also when nothing is open any more: the revoke is idempotent
            // and clears the journal's entry.
            Some(Some(_)) => return Decision::Act(Action::RevokeAccess { disk: id.clone() }),
        }
    }
    Decision::Advance
}

fn remove_new_vm(rec: &VmRecord, rb: &RollbackState, vm: Option<&VmView>) -> Decision {
    let Some(vm) = vm else {
        return Decision::Advance;
    };
    if vm.provisioning_state.eq_ignore_ascii_case("Deleting") || !vm.is_settled() {
        return busy();
    }
    if is_original(rec, vm) {
        return Decision::Advance;
    }
    if vm.os_disk.is_none() || vm.os_disk.as_ref() != os_target(rec) {
        return foreign();
    }
    if rb.from == Step::Done && !rb.force {
        return Decision::park(
            "the VM was verified on its new disks; rolling it back needs --force (writes since the migration stay on the new disks)",
            "run `ade2eah rollback --force` for this VM, or leave it migrated",
        );
    }
    if !vm.all_detach {
        Decision::Act(Action::SetDetach)
    } else {
        Decision::Act(Action::DeleteVm)
    }
}

fn reenable_ade(rec: &VmRecord, rb: &RollbackState, vm: &VmView, run_id: &str) -> Decision {
    if !rb.reenable_ade {
        return Decision::Advance;
    }
    let enabled = vm.ade_extensions.iter().any(|(_, op)| {
        op.as_deref()
            .is_some_and(|o| o.eq_ignore_ascii_case("EnableEncryption"))
    });
    if enabled {
        return Decision::Advance;
    }
    let Some(ext) = rec.facts.as_ref().and_then(|f| f.ade_extension.as_ref()) else {
        return Decision::park(
            "no ADE extension is journaled for this VM; cannot re-enable ADE",
            "re-enable ADE by hand (`az vm encryption enable`) if it is wanted",
        );
    };
    if vm.power.as_deref() != Some("running") {
        return Decision::Act(Action::StartVm);
    }
    Decision::Act(Action::ReenableAde {
        extension: ext.id.clone(),
        sequence_version: format!("{run_id}-reenable"),
    })
}

fn restore_power(original: &VmView, vm: &VmView) -> Decision {
    // A VM that was stopped (still allocated) before the run comes back
    // deallocated: the rollback does not hold compute the VM did not run on.
    let want_running = !matches!(original.power.as_deref(), Some("deallocated" | "stopped"));
    match (want_running, vm.power.as_deref()) {
        (true, Some("running")) => Decision::Advance,
        (true, _) => Decision::Act(Action::StartVm),
        (false, Some("deallocated")) => Decision::Advance,
        (false, _) => Decision::Act(Action::Deallocate),
    }
}

/// What a rollback restored, in words (for status and reports).
pub fn restored(rb: &RollbackState) -> Vec<String> {
    let mut out = vec!["SAS access revoked".to_string()];
    if rb.new_vm_removed {
        out.push("the re-created VM on the new disks was deleted (disks detached, kept)".into());
    }
    out.push(if rb.vm_restored {
        "the original VM re-created from the journaled model on its original disks".into()
    } else {
        "the original VM resource kept on its original disks".into()
    });
    out.push("original deleteOption of every disk and NIC".into());
    out.push(format!(
        "power state as before the run ({})",
        rb.original_power.as_deref().unwrap_or("running")
    ));
    out
}

/// The state of ADE after a rollback, in words.
pub fn ade_note(rb: &RollbackState) -> &'static str {
    if rb.reenable_ade && rb.step == RollbackStep::Done {
        "re-enabled with the journaled key vault settings"
    } else if rb.from <= Step::Snapshot {
        "unchanged (the run had not disabled it)"
    } else if rb.from == Step::DisableAde {
        "a disable may have been requested: check the guest; `--reenable-ade` turns it back on"
    } else {
        "left off: the original disks were decrypted in place; `ade2eah rollback --reenable-ade` turns it back on"
    }
}

/// What a rolled-back VM leaves to clean: the snapshots and new disks the
/// run created (or was about to create when it stopped: an id journaled as
/// intent whose call never went out may not exist), all kept by the rollback.
pub fn left_to_clean(rec_created: &[super::CreatedResource]) -> Vec<ResourceId> {
    rec_created
        .iter()
        .filter(|c| matches!(c.kind, CreatedKind::Snapshot | CreatedKind::TargetDisk))
        .map(|c| c.id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::observe::DiskView;
    use super::super::record::DiskPlan;
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    const RG: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute";

    fn id(s: &str) -> ResourceId {
        ResourceId::parse(&format!("{RG}/{s}")).unwrap()
    }

    fn original() -> serde_json::Value {
        json!({"properties": {
            "vmId": "orig",
            "storageProfile": {"osDisk": {"managedDisk": {"id": id("disks/os").as_str()}, "deleteOption": "Delete"}},
            "networkProfile": {"networkInterfaces": [{"id": "/n/nic", "properties": {"deleteOption": "Delete"}}]},
            "instanceView": {"statuses": [{"code": "PowerState/running"}]}
        }})
    }

    fn record(step: Step) -> VmRecord {
        let mut r = VmRecord::new(id("virtualMachines/vm"));
        r.step = step;
        r.original_model = Some(original());
        r.disks = vec![DiskPlan {
            role: DiskRole::Os,
            source: id("disks/os"),
            source_size_bytes: 1 << 30,
            source_model: json!({}),
            snapshot: id("snapshots/os-bk"),
            target: id("disks/os-eah"),
            copied: false,
            bytes_copied: 0,
            rounds: Vec::new(),
            verified: false,
            rounds_opened: 0,
        }];
        r.remember_created(CreatedKind::Snapshot, &id("snapshots/os-bk"));
        r
    }

    fn vm_on(disk: &str, power: &str, delete: &str) -> VmView {
        let mut v = VmView::from_raw(&original(), None);
        v.os_disk = Some(id(disk));
        v.power = Some(power.into());
        v.delete_options = BTreeMap::from([
            ("os".to_string(), delete.to_string()),
            ("nic:/n/nic".to_string(), delete.to_string()),
        ]);
        v.all_detach = delete == "detach";
        v
    }

    fn at(rec: &mut VmRecord, step: RollbackStep) {
        begin(rec, "test", &Request::default());
        rec.rollback.as_mut().unwrap().step = step;
    }

    fn obs_vm(vm: Option<VmView>) -> Observation {
        Observation {
            vm: Some(vm),
            ..Observation::default()
        }
    }

    #[test]
    fn never_started_rolled_back_and_skipped_are_no_ops() {
        let mut r = VmRecord::new(id("virtualMachines/vm"));
        assert!(matches!(
            begin(&mut r, "x", &Request::default()),
            Begin::NoOp(_)
        ));
        assert!(r.rollback.is_none());
        let mut r = record(Step::Deallocate);
        r.outcome = Outcome::RolledBack { reason: "x".into() };
        assert!(matches!(
            begin(&mut r, "x", &Request::default()),
            Begin::NoOp(_)
        ));
        let mut r = record(Step::Done);
        r.outcome = Outcome::Verified;
        assert!(matches!(
            begin(&mut r, "x", &Request::default()),
            Begin::Refused(_)
        ));
        let force = Request {
            force: true,
            reenable_ade: false,
        };
        assert_eq!(begin(&mut r, "x", &force), Begin::Started);
        assert!(r.is_active());
    }

    #[test]
    fn auto_rollback_only_on_terminal_refusal_at_recreate_unless_disabled() {
        let mut r = record(Step::Recreate);
        assert!(!auto_rollback(&mut r, Trigger::Park, "x"));
        assert!(auto_rollback(&mut r, Trigger::TerminalError, "refused"));
        assert_eq!(r.rollback.as_ref().unwrap().reason, "refused");
        let mut r = record(Step::Recreate);
        r.rollback_policy.auto = false;
        assert!(!auto_rollback(&mut r, Trigger::TerminalError, "refused"));
        let mut r = record(Step::Deallocate);
        assert!(!auto_rollback(&mut r, Trigger::TerminalError, "x"));
        let mut r = record(Step::Verify);
        assert!(!auto_rollback(&mut r, Trigger::Park, "x"));
        r.rollback_policy.on_verify_failure = true;
        assert!(auto_rollback(&mut r, Trigger::Park, "x"));
    }

    #[test]
    fn revoke_every_grant_the_run_may_have_left_open() {
        let mut r = record(Step::PreCopy);
        r.remember_created(CreatedKind::TargetDisk, &id("disks/os-eah"));
        r.sas_opened(&id("disks/os-eah"));
        r.sas_opened(&id("snapshots/r1"));
        at(&mut r, RollbackStep::RevokeSas);
        let view = |state: &str| DiskView {
            state: state.into(),
            provisioning_state: "Succeeded".into(),
            create_option: "Upload".into(),
            size_bytes: None,
            upload_size_bytes: None,
            run_tag: None,
            access: serde_json::json!({}),
            encryption: crate::step::encryption::DiskEncryption::platform(),
            zones: Vec::new(),
            sku: None,
        };
        let mut obs = Observation::default();
        assert!(matches!(
            decide_rollback(&r, &obs, "run"),
            Decision::Wait { .. }
        ));
        obs.disks
            .insert(id("disks/os-eah").key(), Some(view("ActiveUpload")));
        obs.disks.insert(id("snapshots/r1").key(), None);
        assert_eq!(
            decide_rollback(&r, &obs, "run"),
            Decision::Act(Action::RevokeAccess {
                disk: id("disks/os-eah")
            })
        );
        r.open_sas.clear();
        assert_eq!(decide_rollback(&r, &obs, "run"), Decision::Advance);
    }

    #[test]
    fn a_recreated_vm_is_detached_then_deleted_and_a_verified_one_needs_force() {
        let mut r = record(Step::Start);
        at(&mut r, RollbackStep::RemoveNewVm);
        let new = vm_on("disks/os-eah", "running", "delete");
        assert_eq!(
            decide_rollback(&r, &obs_vm(Some(new)), "run"),
            Decision::Act(Action::SetDetach)
        );
        let new = vm_on("disks/os-eah", "running", "detach");
        assert_eq!(
            decide_rollback(&r, &obs_vm(Some(new.clone())), "run"),
            Decision::Act(Action::DeleteVm)
        );
        assert_eq!(decide_rollback(&r, &obs_vm(None), "run"), Decision::Advance);
        let orig = vm_on("disks/os", "running", "detach");
        assert_eq!(
            decide_rollback(&r, &obs_vm(Some(orig)), "run"),
            Decision::Advance
        );
        let other = vm_on("disks/someone-else", "running", "detach");
        assert!(matches!(
            decide_rollback(&r, &obs_vm(Some(other)), "run"),
            Decision::Park { .. }
        ));
        r.rollback.as_mut().unwrap().from = Step::Done;
        assert!(matches!(
            decide_rollback(&r, &obs_vm(Some(new.clone())), "run"),
            Decision::Park { .. }
        ));
        r.rollback.as_mut().unwrap().force = true;
        assert_eq!(
            decide_rollback(&r, &obs_vm(Some(new)), "run"),
            Decision::Act(Action::DeleteVm)
        );
    }

    #[test]
    fn restore_then_delete_options_then_power_as_before() {
        let mut r = record(Step::Recreate);
        at(&mut r, RollbackStep::RestoreVm);
        assert_eq!(
            decide_rollback(&r, &obs_vm(None), "run"),
            Decision::Act(Action::RestoreVm)
        );
        let restored = vm_on("disks/os", "running", "detach");
        assert_eq!(
            decide_rollback(&r, &obs_vm(Some(restored.clone())), "run"),
            Decision::Advance
        );
        r.rollback.as_mut().unwrap().step = RollbackStep::RestoreDeleteOptions;
        assert_eq!(
            decide_rollback(&r, &obs_vm(Some(restored)), "run"),
            Decision::Act(Action::RestoreDeleteOptions)
        );
        let back = vm_on("disks/os", "deallocated", "delete");
        assert_eq!(
            decide_rollback(&r, &obs_vm(Some(back.clone())), "run"),
            Decision::Advance
        );
        r.rollback.as_mut().unwrap().step = RollbackStep::ReenableAde;
        assert_eq!(
            decide_rollback(&r, &obs_vm(Some(back.clone())), "run"),
            Decision::Advance,
            "ADE stays off unless asked"
        );
        r.rollback.as_mut().unwrap().step = RollbackStep::RestorePower;
        assert_eq!(
            decide_rollback(&r, &obs_vm(Some(back)), "run"),
            Decision::Act(Action::StartVm)
        );
        let running = vm_on("disks/os", "running", "delete");
        assert_eq!(
            decide_rollback(&r, &obs_vm(Some(running.clone())), "run"),
            Decision::Advance
        );
        // Deallocated before the run: brought back deallocated.
        r.original_model.as_mut().unwrap()["properties"]["instanceView"]["statuses"][0]["code"] =
            json!("PowerState/deallocated");
        assert_eq!(
            decide_rollback(&r, &obs_vm(Some(running)), "run"),
            Decision::Act(Action::Deallocate)
        );
    }
}
