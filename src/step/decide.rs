//! `decide`: the observe-then-act rules, one function per step.
//!
//! Every rule first asks "is this step's effect already in place?" and answers
//! [`Decision::Advance`] if so. That is what makes a crash at any point safe:
//! after a restart the engine observes again and the same rule either finds
//! the effect (and moves on) or makes the same idempotent call again.
//!
//! Safety rules enforced here, not in the engine:
//! - no destructive step without the original VM model in the record;
//! - the VM is deleted only after every disk was copied, and only while every
//!   disk and NIC is set to `Detach`;
//! - resources with our names but without our run tag are never adopted or
//!   deleted: the VM parks instead.

use super::observe::{DecryptionState, DiskView, Observation, VmView};
use super::record::{DiskRole, VmRecord};
use super::{Action, Decision, Step};
use crate::model::ResourceId;

/// What the engine must read before calling [`decide`] for a step.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Needs {
    /// GET the VM.
    pub vm: bool,
    /// Include the instance view.
    pub instance_view: bool,
    /// GET these disks (or snapshots).
    pub disks: Vec<ResourceId>,
    /// Make the validate-before-delete reads (SKU, DES, usages, locks).
    pub validate: bool,
    /// Run the in-guest check (`--guest-check`) when the VM can answer:
    /// at `AwaitDecrypted` only once the API reports the guest decrypted,
    /// at `Verify` only once the VM runs with its agent ready.
    pub guest: bool,
    /// List the role assignments of the VM's system-assigned principal.
    pub role_assignments: bool,
    /// Read the `--nic-swap` placeholder NIC ([`super::nic_swap`]).
    pub placeholder_nic: bool,
}

/// The reads [`decide`] needs at `rec.step`.
pub fn needs(rec: &VmRecord) -> Needs {
    if rec.path == super::rebuild::MigrationPath::RebuildLinuxOs
        && let Some(n) = super::rebuild::needs(rec)
    {
        return n;
    }
    let vm = |iv| Needs {
        vm: true,
        instance_view: iv,
        ..Needs::default()
    };
    let targets = || rec.disks.iter().map(|d| d.target.clone()).collect();
    let guest_check = rec.facts.as_ref().is_some_and(|f| f.guest_check);
    let n = match rec.step {
        Step::Snapshot => Needs {
            disks: rec.disks.iter().map(|d| d.snapshot.clone()).collect(),
            // Validated once before the run's first change, too.
            validate: rec.created.is_empty(),
            ..Needs::default()
        },
        Step::CreateTargets => Needs {
            disks: targets(),
            ..Needs::default()
        },
        Step::Validate => Needs {
            disks: targets(),
            validate: true,
            ..vm(true)
        },
        Step::AwaitDecrypted => Needs {
            guest: guest_check
                && rec
                    .facts
                    .as_ref()
                    .is_some_and(|f| f.os == super::record::OsType::Windows),
            ..vm(true)
        },
        Step::Verify => Needs {
            disks: targets(),
            guest: guest_check,
            role_assignments: rec.carried.grants_roles(),
            ..vm(true)
        },
        Step::PreCopy | Step::FinalCopy | Step::VerifyCopy => Needs {
            vm: true,
            instance_view: true,
            disks: rec
                .disks
                .iter()
                .flat_map(|d| {
                    [d.source.clone(), d.target.clone()]
                        .into_iter()
                        .chain(d.rounds.iter().map(|r| r.snapshot.clone()))
                })
                .collect(),
            ..Needs::default()
        },
        Step::DisableAde
        | Step::RemoveExtension
        | Step::Deallocate
        | Step::DeleteVm
        | Step::Start => vm(true),
        Step::Reinstall => Needs {
            role_assignments: rec.carried.grants_roles(),
            ..vm(true)
        },
        Step::DetachOnDelete | Step::Recreate => vm(false),
        Step::Done => Needs::default(),
    };
    Needs {
        placeholder_nic: super::nic_swap::needs_read(rec),
        ..n
    }
}

/// Decides the next move for `rec` given what was observed. `run_id` is the
/// tag value that marks resources this run created.
pub fn decide(rec: &VmRecord, obs: &Observation, run_id: &str) -> Decision {
    if rec.step.is_destructive() && rec.original_model.is_none() {
        return Decision::park(
            "the original VM model is not in the journal; refusing a destructive step",
            "run `ade2eah status` and report this; the VM was not changed by this step",
        );
    }
    if rec.path == super::rebuild::MigrationPath::RebuildLinuxOs
        && let Some(d) = super::rebuild::decide(rec, obs, run_id)
    {
        return d;
    }
    match rec.step {
        Step::Snapshot => super::validate::before_first_change(rec, obs)
            .unwrap_or_else(|| snapshots(rec, obs, run_id)),
        Step::DisableAde => with_vm(obs, |vm| disable_ade(rec, vm)),
        Step::AwaitDecrypted => with_vm(obs, |vm| await_decrypted(rec, obs, vm)),
        Step::RemoveExtension => with_vm(obs, remove_extension),
        Step::Deallocate => with_vm(obs, deallocate),
        Step::DetachOnDelete => with_vm(obs, detach),
        Step::CreateTargets => create_targets(rec, obs, run_id),
        Step::PreCopy => with_vm(obs, |vm| pre_copy(rec, obs, vm, run_id)),
        Step::Validate => with_vm(obs, |vm| super::validate::decide(rec, obs, vm)),
        Step::FinalCopy => with_vm(obs, |vm| final_copy(rec, obs, vm)),
        Step::VerifyCopy => with_vm(obs, |vm| verify_copy(rec, obs, vm)),
        Step::DeleteVm => delete_vm(rec, obs, run_id),
        Step::Recreate => recreate(rec, obs),
        Step::Start => with_vm(obs, start),
        Step::Reinstall => with_vm(obs, |vm| {
            super::reinstall::decide(rec, vm, obs.carried.as_ref())
        }),
        Step::Verify => with_vm(obs, |vm| {
            super::nic_swap::remove_placeholder(rec, obs, run_id)
                .unwrap_or_else(|| verify(rec, obs, vm))
        }),
        Step::Done => Decision::Advance,
    }
}

fn with_vm(obs: &Observation, f: impl FnOnce(&VmView) -> Decision) -> Decision {
    match &obs.vm {
        Some(Some(vm)) => f(vm),
        Some(None) => Decision::park(
            "the VM no longer exists, although this step needs it",
            "check the activity log for who deleted it; the original model and disks are recorded in the journal (`ade2eah status`)",
        ),
        None => Decision::Wait {
            reason: "VM not observed".into(),
        },
    }
}

fn is_ours(d: &DiskView, run_id: &str) -> bool {
    d.run_tag.as_deref() == Some(run_id)
}

pub(super) fn not_ours(id: &ResourceId) -> Decision {
    Decision::park(
        format!(
            "{} already exists and was not created by this run (no matching ade2eah-run tag)",
            id
        ),
        "rename or remove that resource (after checking it is not needed), then run `ade2eah resume`",
    )
}

fn snapshots(rec: &VmRecord, obs: &Observation, run_id: &str) -> Decision {
    for d in &rec.disks {
        match obs.disk(&d.snapshot) {
            None => {
                return Decision::Wait {
                    reason: format!("snapshot {} not observed", d.snapshot.name()),
                };
            }
            Some(None) => {
                return Decision::Act(Action::CreateSnapshot {
                    disk: d.source.clone(),
                    snapshot: d.snapshot.clone(),
                });
            }
            Some(Some(s)) if !is_ours(s, run_id) => return not_ours(&d.snapshot),
            Some(Some(s)) if !s.provisioning_state.eq_ignore_ascii_case("Succeeded") => {
                return Decision::Wait {
                    reason: format!("snapshot {} is {}", d.snapshot.name(), s.provisioning_state),
                };
            }
            Some(Some(_)) => {}
        }
    }
    Decision::Advance
}

fn disable_ade(rec: &VmRecord, vm: &VmView) -> Decision {
    let Some((ext, op)) = vm.ade_extensions.first() else {
        // Already removed (by us before a crash, or earlier by someone): the
        // next step checks the guest really is decrypted.
        return Decision::Advance;
    };
    // A disable already requested moves on, unless the guest reported a
    // decryption failure: then (only reached on resume, see [`on_unpark`])
    // the disable is sent again with a new sequence version.
    if op
        .as_deref()
        .is_some_and(|o| o.eq_ignore_ascii_case("DisableEncryption"))
        && !matches!(vm.decryption, DecryptionState::Failed(_))
    {
        return Decision::Advance;
    }
    if !vm.is_settled() {
        return Decision::Wait {
            reason: "an operation is running on the VM".into(),
        };
    }
    if vm.power.as_deref() != Some("running") {
        return Decision::Act(Action::StartVm);
    }
    let volume_type = rec
        .facts
        .as_ref()
        .map(|f| f.volume_type.clone())
        .unwrap_or_else(|| "All".into());
    Decision::Act(Action::DisableAde {
        extension: ext.clone(),
        volume_type,
        sequence_version: rec.ade_sequence.clone().unwrap_or_default(),
    })
}

/// Reason prefix of the park on a guest decryption failure.
const DECRYPTION_FAILURE: &str = "the ADE extension reported a decryption failure";

/// Adjusts a parked record that `resume` takes up again: a VM parked on a
/// guest decryption failure goes back to `disable-ade` with a new sequence
/// version, so the disable is requested again (the handler re-runs only on
/// a new sequence version).
pub fn on_unpark(rec: &mut VmRecord, previous_reason: &str) {
    if rec.step == Step::AwaitDecrypted && previous_reason.starts_with(DECRYPTION_FAILURE) {
        rec.step = Step::DisableAde;
        rec.ade_sequence = Some(uuid::Uuid::new_v4().to_string());
    }
}

fn await_decrypted(rec: &VmRecord, obs: &Observation, vm: &VmView) -> Decision {
    let decision = await_decrypted_api(vm);
    if decision != Decision::Advance || !needs(rec).guest {
        return decision;
    }
    // The API says decrypted; on Windows BitLocker may still be decrypting
    // in the background (facts §2.4): the guest has the last word.
    match &obs.guest {
        None => Decision::Wait {
            reason: "the in-guest check has not run yet".into(),
        },
        Some(None) => Decision::park(
            "the in-guest check (Run Command) reported no volume",
            "check that Run Command works on the VM (VM agent ready, `az vm run-command invoke --command-id RunPowerShellScript --scripts \"manage-bde -status\"`), then run `ade2eah resume`; or resume without --guest-check after checking BitLocker by hand",
        ),
        Some(Some(r)) if !r.encrypted().is_empty() => Decision::Wait {
            reason: format!(
                "the API reports decrypted but BitLocker is still at work in the guest: {}",
                r.describe_encrypted()
            ),
        },
        Some(Some(_)) => Decision::Advance,
    }
}

fn await_decrypted_api(vm: &VmView) -> Decision {
    let disabling = vm.ade_extensions.iter().any(|(_, op)| {
        op.as_deref()
            .is_some_and(|o| o.eq_ignore_ascii_case("DisableEncryption"))
    });
    match &vm.decryption {
        DecryptionState::Complete => Decision::Advance,
        DecryptionState::InProgress => Decision::Wait {
            reason: "the guest is decrypting".into(),
        },
        DecryptionState::Failed(msg) => Decision::park(
            format!("{DECRYPTION_FAILURE}: {msg}"),
            "inspect the guest (`manage-bde -status` on Windows, `cryptsetup status` / `lsblk` on Linux), fix the cause, then run `ade2eah resume` (disabling is re-requested); the VM is otherwise unchanged",
        ),
        DecryptionState::Encrypted if disabling => Decision::Wait {
            reason: "disable requested; the guest has not started decrypting yet".into(),
        },
        DecryptionState::Encrypted => Decision::park(
            "the volumes are still encrypted but no disable request is pending on an ADE extension",
            "re-install the ADE extension and disable encryption (or run `ade2eah resume` if it was removed by mistake)",
        ),
        DecryptionState::Unknown
            if vm
                .power
                .as_deref()
                .is_some_and(|p| p == "deallocated" || p == "stopped") =>
        {
            Decision::Act(Action::StartVm)
        }
        DecryptionState::Unknown => Decision::Wait {
            reason: "the guest has not reported encryption status yet".into(),
        },
    }
}

fn remove_extension(vm: &VmView) -> Decision {
    let Some((ext, _)) = vm.ade_extensions.first() else {
        return Decision::Advance;
    };
    if !vm.is_settled() {
        return Decision::Wait {
            reason: "an operation is running on the VM".into(),
        };
    }
    if vm.power.as_deref() != Some("running") {
        return Decision::Act(Action::StartVm);
    }
    Decision::Act(Action::RemoveExtension {
        extension: ext.clone(),
    })
}

fn deallocate(vm: &VmView) -> Decision {
    match vm.power.as_deref() {
        Some("deallocated") => Decision::Advance,
        _ if !vm.is_settled() => Decision::Wait {
            reason: "an operation is running on the VM".into(),
        },
        _ => Decision::Act(Action::Deallocate),
    }
}

fn detach(vm: &VmView) -> Decision {
    if vm.all_detach {
        Decision::Advance
    } else if !vm.is_settled() {
        Decision::Wait {
            reason: "an operation is running on the VM".into(),
        }
    } else {
        Decision::Act(Action::SetDetach)
    }
}

fn create_targets(rec: &VmRecord, obs: &Observation, run_id: &str) -> Decision {
    for d in &rec.disks {
        match obs.disk(&d.target) {
            None => {
                return Decision::Wait {
                    reason: format!("disk {} not observed", d.target.name()),
                };
            }
            Some(None) => {
                return Decision::Act(Action::CreateTargetDisk {
                    source: d.source.clone(),
                    target: d.target.clone(),
                });
            }
            Some(Some(t)) if !is_ours(t, run_id) => return not_ours(&d.target),
            Some(Some(t)) if !t.create_option.eq_ignore_ascii_case("Upload") => {
                return Decision::park(
                    format!(
                        "target disk {} was created with {} instead of Upload",
                        d.target.name(),
                        t.create_option
                    ),
                    "delete that disk (it was created by this run), then run `ade2eah resume`",
                );
            }
            Some(Some(t))
                if t.upload_size_bytes
                    .is_some_and(|s| s != d.source_size_bytes + 512) =>
            {
                return Decision::park(
                    format!("target disk {} has the wrong upload size", d.target.name()),
                    "delete that disk (it was created by this run), then run `ade2eah resume`",
                );
            }
            Some(Some(t)) if !t.provisioning_state.eq_ignore_ascii_case("Succeeded") => {
                return Decision::Wait {
                    reason: format!("disk {} is {}", d.target.name(), t.provisioning_state),
                };
            }
            Some(Some(_)) => {}
        }
    }
    super::nic_swap::before_downtime(rec, obs, run_id).unwrap_or(Decision::Advance)
}

/// A SAS grant this run may have left open on a source disk or a round
/// snapshot (crash between grant and revoke) is revoked before anything
/// else; one this run did not grant parks the VM.
fn leftover_sas(rec: &VmRecord, obs: &Observation) -> Option<Decision> {
    for d in &rec.disks {
        let ids = std::iter::once(&d.source).chain(d.rounds.iter().map(|r| &r.snapshot));
        for id in ids {
            let Some(Some(v)) = obs.disk(id) else {
                continue;
            };
            if !v.has_open_sas() {
                continue;
            }
            return Some(if rec.open_sas.contains(id) {
                Decision::Act(Action::RevokeAccess { disk: id.clone() })
            } else {
                Decision::park(
                    format!(
                        "{} has SAS access open that this run did not grant",
                        id.name()
                    ),
                    "find who exported it (activity log), revoke access when they are done, then run `ade2eah resume`",
                )
            });
        }
    }
    None
}

/// The grants the record lists open that Azure shows closed: a revoke
/// accepted before a crash finished on Azure's side without its result
/// reaching the journal. Called only when the copy verification step is
/// left with [`Decision::Advance`]: no later step of a migration grants
/// access, every grant the copy steps asked for has completed (grants are
/// joined, never abandoned mid-operation) and [`leftover_sas`] found
/// nothing open, so dropping them from the record forgets no live grant.
pub fn closed_in_azure(rec: &VmRecord, obs: &Observation) -> Vec<ResourceId> {
    rec.open_sas
        .iter()
        .filter(|id| matches!(obs.disk(id), Some(Some(v)) if !v.has_open_sas()))
        .cloned()
        .collect()
}

fn source_gone(rec: &VmRecord, obs: &Observation) -> Option<Decision> {
    rec.disks.iter().find(|d| matches!(obs.disk(&d.source), Some(None))).map(|d| {
        Decision::park(
            format!("source disk {} no longer exists", d.source),
            "restore it from the backup snapshot recorded in the journal, then run `ade2eah resume`",
        )
    })
}

fn is_uploadable(t: &DiskView) -> bool {
    matches!(t.state.as_str(), "ReadyToUpload" | "ActiveUpload")
}

/// Online rounds while the VM runs: the first (full) round, then delta
/// rounds while [`super::precopy::verdict`] predicts that another one
/// shrinks the offline window meaningfully (a rule in time, with caps on
/// rounds and on online time).
fn pre_copy(rec: &VmRecord, obs: &Observation, vm: &VmView, run_id: &str) -> Decision {
    if let Some(d) = leftover_sas(rec, obs).or_else(|| source_gone(rec, obs)) {
        return d;
    }
    let policy = rec.copy_policy;
    if policy.max_online_rounds == 0 || vm.power.as_deref() != Some("running") {
        // Nothing to do online; the final copy moves everything.
        return Decision::Advance;
    }
    if !vm.is_settled() {
        return Decision::Wait {
            reason: "an operation is running on the VM".into(),
        };
    }
    for d in &rec.disks {
        match obs.disk(&d.target) {
            None => {
                return Decision::Wait {
                    reason: format!("disk {} not observed", d.target.name()),
                };
            }
            Some(None) => {
                return Decision::Act(Action::CreateTargetDisk {
                    source: d.source.clone(),
                    target: d.target.clone(),
                });
            }
            Some(Some(t)) if !is_ours(t, run_id) => return not_ours(&d.target),
            Some(Some(t)) if !is_uploadable(t) => {
                return Decision::Act(Action::DeleteTargetDisk {
                    target: d.target.clone(),
                });
            }
            Some(Some(_)) => {}
        }
    }
    if rec
        .disks
        .iter()
        .any(|d| d.open_round().is_some_and(|r| !r.offline))
    {
        return Decision::Act(Action::CopyRound { offline: false });
    }
    if super::precopy::another_round(rec) {
        Decision::Act(Action::CopyRound { offline: false })
    } else {
        Decision::Advance
    }
}

/// The offline round: the VM must be deallocated (a consistent final
/// snapshot), then every target gets the delta since its last round (or a
/// full copy) and is sealed.
fn final_copy(rec: &VmRecord, obs: &Observation, vm: &VmView) -> Decision {
    if let Some(d) = leftover_sas(rec, obs).or_else(|| source_gone(rec, obs)) {
        return d;
    }
    if vm.power.as_deref() != Some("deallocated") {
        if rec
            .disks
            .iter()
            .any(|d| d.copied || d.rounds.iter().any(|r| r.offline))
        {
            return vm_started_during_offline_copy();
        }
        if !vm.is_settled() {
            return Decision::Wait {
                reason: "an operation is running on the VM".into(),
            };
        }
        return Decision::Act(Action::Deallocate);
    }
    let mut need_round = false;
    for d in &rec.disks {
        let Some(tgt) = obs.disk(&d.target) else {
            return Decision::Wait {
                reason: "disks not observed".into(),
            };
        };
        let Some(tgt) = tgt else {
            return Decision::Act(Action::CreateTargetDisk {
                source: d.source.clone(),
                target: d.target.clone(),
            });
        };
        if d.copied {
            if tgt.has_open_sas() {
                return Decision::Act(Action::RevokeAccess {
                    disk: d.target.clone(),
                });
            }
            continue;
        }
        let offline_done = d.rounds.last().is_some_and(|r| r.offline && r.copied);
        if is_uploadable(tgt) || offline_done {
            // (A sealed target whose offline round finished only lacks the
            // journal line saying so; the round action checks and records it.)
            need_round = true;
        } else {
            // Sealed but not journaled as copied: its content is not trusted.
            return Decision::Act(Action::DeleteTargetDisk {
                target: d.target.clone(),
            });
        }
    }
    if need_round {
        return Decision::Act(Action::CopyRound { offline: true });
    }
    Decision::Advance
}

fn vm_started_during_offline_copy() -> Decision {
    Decision::park(
        "the VM is not deallocated, but its final copy was already taken: data written since would be lost",
        "deallocate the VM, delete its target disks (ids in `ade2eah status --output json`, created by this run) and run `ade2eah resume` to redo the final copy",
    )
}

fn verify_copy(rec: &VmRecord, obs: &Observation, vm: &VmView) -> Decision {
    if let Some(d) = leftover_sas(rec, obs) {
        return d;
    }
    if vm.power.as_deref() != Some("deallocated") {
        return vm_started_during_offline_copy();
    }
    if rec.disks.iter().any(|d| !d.verified) {
        return Decision::Act(Action::VerifyCopies);
    }
    for d in &rec.disks {
        if let Some(Some(t)) = obs.disk(&d.target)
            && t.has_open_sas()
        {
            return Decision::Act(Action::RevokeAccess {
                disk: d.target.clone(),
            });
        }
    }
    // Sealed, verified and closed: now the source's access settings, which
    // could have blocked the copy's own SAS writes (body::target_access).
    for d in &rec.disks {
        if let (Some(want), Some(Some(t))) = (
            super::body::target_access(&d.source_model),
            obs.disk(&d.target),
        ) && !super::body::access_in_place(&want, &t.access)
        {
            return Decision::Act(Action::RestoreTargetAccess {
                disk: d.target.clone(),
            });
        }
    }
    Decision::Advance
}

fn original_vm_id(rec: &VmRecord) -> Option<&str> {
    rec.original_model
        .as_ref()
        .and_then(|m| crate::model::views::VmModel::new(m).properties().vm_id())
}

fn delete_vm(rec: &VmRecord, obs: &Observation, run_id: &str) -> Decision {
    if let Some(d) = rec.disks.iter().find(|d| !d.copied || !d.verified) {
        return Decision::park(
            format!(
                "disk {} is not journaled as copied and verified; refusing to delete the VM",
                d.source.name()
            ),
            "run `ade2eah resume` to finish the copy",
        );
    }
    delete_vm_observed(rec, obs, run_id)
}

/// The VM side of deleting the VM: deallocated, the original resource
/// (same vmId), every disk and NIC set to `Detach`, and with `--nic-swap`
/// the placeholder NIC in place of the VM's own.
pub(super) fn delete_vm_observed(rec: &VmRecord, obs: &Observation, run_id: &str) -> Decision {
    with_vm_or_gone(obs, |vm| {
        if vm.power.as_deref().is_some_and(|p| p != "deallocated") && vm.is_settled() {
            return vm_started_during_offline_copy();
        }
        if original_vm_id(rec).is_some_and(|orig| vm.vm_id.as_deref().is_some_and(|v| v != orig)) {
            return Decision::park(
                "a VM with this name exists but it is not the original VM resource (vmId differs)",
                "check who created it; this run will not delete it",
            );
        }
        if vm.provisioning_state.eq_ignore_ascii_case("Deleting") || !vm.is_settled() {
            Decision::Wait {
                reason: "an operation is running on the VM".into(),
            }
        } else if !vm.all_detach {
            Decision::Act(Action::SetDetach)
        } else {
            super::nic_swap::before_delete(rec, obs, vm, run_id)
                .unwrap_or(Decision::Act(Action::DeleteVm))
        }
    })
}

fn with_vm_or_gone(obs: &Observation, f: impl FnOnce(&VmView) -> Decision) -> Decision {
    match &obs.vm {
        Some(Some(vm)) => f(vm),
        Some(None) => Decision::Advance,
        None => Decision::Wait {
            reason: "VM not observed".into(),
        },
    }
}

fn recreate(rec: &VmRecord, obs: &Observation) -> Decision {
    let os_target = rec
        .disks
        .iter()
        .find(|d| d.role == DiskRole::Os)
        .map(|d| &d.target);
    match &obs.vm {
        None => Decision::Wait {
            reason: "VM not observed".into(),
        },
        Some(None) => Decision::Act(Action::CreateVm),
        Some(Some(vm)) if vm.os_disk.as_ref() == os_target => {
            if vm.is_settled() {
                Decision::Advance
            } else {
                Decision::Wait {
                    reason: "the new VM is still being created".into(),
                }
            }
        }
        Some(Some(_)) => Decision::park(
            "a VM with this name exists that this run did not create (its OS disk is not our target disk)",
            "check who created it; the new disks are ready and recorded in the journal",
        ),
    }
}

fn start(vm: &VmView) -> Decision {
    match vm.power.as_deref() {
        Some("running") => Decision::Advance,
        _ if !vm.is_settled() => Decision::Wait {
            reason: "an operation is running on the VM".into(),
        },
        _ => Decision::Act(Action::StartVm),
    }
}

/// The final check after start (issue 12, deliverable 6): EAH on, running,
/// VM agent ready, no ADE extension, every disk a new one with the expected
/// encryption type and DES, tags equal to the original model's (the lease
/// tag aside), extensions reinstalled and roles granted
/// ([`super::reinstall::verify_problems`]), and with `--guest-check` no
/// encrypted volume in the guest.
/// Problems that may still resolve (agent not ready yet, guest not yet
/// asked) wait; a mismatch parks with every difference listed.
fn verify(rec: &VmRecord, obs: &Observation, vm: &VmView) -> Decision {
    let (problems, pending) = verify_problems(rec, obs, vm);
    if problems.is_empty() && pending.is_empty() {
        Decision::Advance
    } else if problems.is_empty() || !vm.is_settled() {
        Decision::Wait {
            reason: if problems.is_empty() {
                pending.join("; ")
            } else {
                "an operation is running on the VM".into()
            },
        }
    } else {
        Decision::park(
            format!("verification failed: {}", problems.join("; ")),
            "inspect the VM; the original disks are untouched and listed in the journal",
        )
    }
}

/// (mismatches, checks still pending) of [`verify`].
pub fn verify_problems(
    rec: &VmRecord,
    obs: &Observation,
    vm: &VmView,
) -> (Vec<String>, Vec<String>) {
    let mut problems = super::reinstall::verify_problems(rec, obs.carried.as_ref());
    let mut pending = Vec::new();
    if !vm.encryption_at_host {
        problems.push("encryption at host is off".to_string());
    }
    if vm.power.as_deref() != Some("running") {
        problems.push(format!(
            "power state is {}",
            vm.power.as_deref().unwrap_or("unknown")
        ));
    }
    match vm.vm_agent_ready {
        Some(true) => {}
        Some(false) => pending.push("the VM agent is not ready yet".to_string()),
        None => pending.push("the VM agent has not reported yet".to_string()),
    }
    if !vm.ade_extensions.is_empty() {
        problems.push("an ADE extension is present".to_string());
    }
    let choice = super::encryption::choice_of(rec);
    for d in &rec.disks {
        let attached = match d.role {
            DiskRole::Os => vm.os_disk.as_ref(),
            DiskRole::Data { lun } => vm.data_disks.get(&lun),
        };
        if attached != Some(&d.target) {
            problems.push(format!("{:?} is not {}", d.role, d.target.name()));
        }
        let want = super::encryption::expected(&choice, &d.source_model);
        match obs.disk(&d.target) {
            Some(Some(t)) if !want.matches(&t.encryption) => problems.push(format!(
                "disk {} has {} ({}), expected {}",
                d.target.name(),
                t.encryption.describe(),
                t.encryption.kind,
                want.describe()
            )),
            Some(Some(_)) => {}
            Some(None) => problems.push(format!("disk {} does not exist", d.target.name())),
            None => pending.push(format!("disk {} not observed", d.target.name())),
        }
    }
    problems.extend(tag_differences(rec, vm));
    if needs(rec).guest {
        match &obs.guest {
            None => pending.push("the in-guest check has not run yet".to_string()),
            Some(None) => problems.push("the in-guest check reported no volume".to_string()),
            Some(Some(r)) if !r.encrypted().is_empty() => problems.push(format!(
                "the guest reports encrypted volumes: {}",
                r.describe_encrypted()
            )),
            Some(Some(_)) => {}
        }
    }
    (problems, pending)
}

/// Differences between the VM's tags and the original model's, key by key
/// (the lease tag, the tool's own, aside).
pub fn tag_differences(rec: &VmRecord, vm: &VmView) -> Vec<String> {
    use super::observe::LEASE_TAG;
    let Some(orig) = rec.original_model.as_ref() else {
        return Vec::new();
    };
    let empty = serde_json::Map::new();
    let before = orig
        .get("tags")
        .and_then(serde_json::Value::as_object)
        .unwrap_or(&empty);
    let after = vm.tags.as_object().unwrap_or(&empty);
    let mut out = Vec::new();
    for (k, v) in before.iter().filter(|(k, _)| k.as_str() != LEASE_TAG) {
        match after.get(k) {
            None => out.push(format!("tag {k} is missing (was {v})")),
            Some(now) if now != v => out.push(format!("tag {k} is {now} (was {v})")),
            Some(_) => {}
        }
    }
    for (k, v) in after.iter().filter(|(k, _)| k.as_str() != LEASE_TAG) {
        if !before.contains_key(k) {
            out.push(format!("tag {k}={v} was added"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::observe::DiskView;
    use super::super::record::DiskPlan;
    use super::*;
    use serde_json::{Value, json};
    use std::collections::BTreeMap;

    const RG: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute";

    fn id(s: &str) -> ResourceId {
        ResourceId::parse(&format!("{RG}/{s}")).unwrap()
    }

    fn record(step: Step) -> VmRecord {
        let mut r = VmRecord::new(id("virtualMachines/vm"));
        r.step = step;
        r.original_model = Some(json!({"properties": {"vmId": "orig"}}));
        r.ade_sequence = Some("seq-1".into());
        r.disks = vec![DiskPlan {
            role: DiskRole::Os,
            source: id("disks/os"),
            source_size_bytes: 1 << 30,
            source_model: json!({}),
            snapshot: id("snapshots/os-ade-backup"),
            target: id("disks/os-eah"),
            copied: false,
            bytes_copied: 0,
            rounds: Vec::new(),
            verified: false,
            rounds_opened: 0,
        }];
        r
    }

    fn vm(power: &str) -> VmView {
        VmView {
            provisioning_state: "Succeeded".into(),
            power: Some(power.into()),
            ade_extensions: vec![(
                id("virtualMachines/vm/extensions/custom"),
                Some("EnableEncryption".into()),
            )],
            encryption_at_host: false,
            os_disk: Some(id("disks/os")),
            data_disks: BTreeMap::new(),
            all_detach: false,
            decryption: DecryptionState::Encrypted,
            vm_id: Some("orig".into()),
            tags: Value::Null,
            vm_agent_ready: Some(true),
            delete_options: BTreeMap::new(),
        }
    }

    fn obs_vm(v: Option<VmView>) -> Observation {
        Observation {
            vm: Some(v),
            ..Observation::default()
        }
    }

    fn disk(state: &str, tag: Option<&str>) -> DiskView {
        DiskView {
            state: state.into(),
            provisioning_state: "Succeeded".into(),
            create_option: "Upload".into(),
            size_bytes: None,
            upload_size_bytes: Some((1 << 30) + 512),
            run_tag: tag.map(str::to_string),
            access: json!({}),
            encryption: crate::step::encryption::DiskEncryption::platform(),
            zones: Vec::new(),
            sku: Some("Premium_LRS".into()),
        }
    }

    /// A sealed, verified target of a source with `networkAccessPolicy`
    /// `DenyAll`: the policy is restored once, after the seal and before the
    /// VM is deleted; with it in place the step advances.
    #[test]
    fn verify_copy_restores_the_source_access_policy_after_the_seal() {
        let mut rec = record(Step::VerifyCopy);
        rec.disks[0].copied = true;
        rec.disks[0].verified = true;
        rec.disks[0].source_model = json!({"properties": {"networkAccessPolicy": "DenyAll"}});
        let mut obs = obs_vm(Some(vm("deallocated")));
        obs.disks
            .insert(id("disks/os-eah").key(), Some(disk("ActiveSAS", Some("r"))));
        rec.open_sas.push(id("disks/os-eah"));
        assert!(
            matches!(
                decide(&rec, &obs, "r"),
                Decision::Act(Action::RevokeAccess { .. })
            ),
            "closed first"
        );
        rec.open_sas.clear();
        let mut sealed = disk("Unattached", Some("r"));
        sealed.access = json!({"networkAccessPolicy": "AllowAll"});
        obs.disks
            .insert(id("disks/os-eah").key(), Some(sealed.clone()));
        assert_eq!(
            decide(&rec, &obs, "r"),
            Decision::Act(Action::RestoreTargetAccess {
                disk: id("disks/os-eah")
            })
        );
        sealed.access = json!({"networkAccessPolicy": "DenyAll"});
        obs.disks.insert(id("disks/os-eah").key(), Some(sealed));
        assert_eq!(decide(&rec, &obs, "r"), Decision::Advance);
        rec.disks[0].source_model = json!({"properties": {"networkAccessPolicy": "AllowAll"}});
        obs.disks.insert(
            id("disks/os-eah").key(),
            Some(disk("Unattached", Some("r"))),
        );
        assert_eq!(
            decide(&rec, &obs, "r"),
            Decision::Advance,
            "defaults: nothing to do"
        );
    }

    #[test]
    fn disable_puts_to_discovered_name_and_is_skipped_when_already_requested() {
        let rec = record(Step::DisableAde);
        match decide(&rec, &obs_vm(Some(vm("running"))), "r") {
            Decision::Act(Action::DisableAde {
                extension,
                sequence_version,
                ..
            }) => {
                assert_eq!(extension.name(), "custom");
                assert_eq!(sequence_version, "seq-1");
            }
            other => panic!("{other:?}"),
        }
        let mut v = vm("running");
        v.ade_extensions[0].1 = Some("DisableEncryption".into());
        assert_eq!(decide(&rec, &obs_vm(Some(v)), "r"), Decision::Advance);
        assert_eq!(
            decide(&rec, &obs_vm(Some(vm("deallocated"))), "r"),
            Decision::Act(Action::StartVm)
        );
    }

    #[test]
    fn a_decryption_failure_is_disabled_again_after_resume() {
        let mut rec = record(Step::AwaitDecrypted);
        let mut v = vm("running");
        v.ade_extensions[0].1 = Some("DisableEncryption".into());
        v.decryption = DecryptionState::Failed("Decryption failed for /dev/sdc".into());
        let Decision::Park { reason, .. } = decide(&rec, &obs_vm(Some(v.clone())), "r") else {
            panic!("parks");
        };
        on_unpark(&mut rec, &reason);
        assert_eq!(rec.step, Step::DisableAde);
        assert_ne!(rec.ade_sequence.as_deref(), Some("seq-1"));
        assert!(matches!(
            decide(&rec, &obs_vm(Some(v.clone())), "r"),
            Decision::Act(Action::DisableAde { .. })
        ));
        v.decryption = DecryptionState::InProgress;
        assert!(matches!(
            decide(&rec, &obs_vm(Some(v)), "r"),
            Decision::Advance
        ));
        let mut other = record(Step::AwaitDecrypted);
        on_unpark(&mut other, "something else");
        assert_eq!(other.step, Step::AwaitDecrypted);
    }

    #[test]
    fn waits_for_real_decryption() {
        let rec = record(Step::AwaitDecrypted);
        let mut v = vm("running");
        v.ade_extensions[0].1 = Some("DisableEncryption".into());
        v.decryption = DecryptionState::InProgress;
        assert!(matches!(
            decide(&rec, &obs_vm(Some(v.clone())), "r"),
            Decision::Wait { .. }
        ));
        v.decryption = DecryptionState::Encrypted;
        assert!(matches!(
            decide(&rec, &obs_vm(Some(v.clone())), "r"),
            Decision::Wait { .. }
        ));
        v.decryption = DecryptionState::Failed("boom".into());
        assert!(matches!(
            decide(&rec, &obs_vm(Some(v.clone())), "r"),
            Decision::Park { .. }
        ));
        v.decryption = DecryptionState::Complete;
        assert_eq!(decide(&rec, &obs_vm(Some(v)), "r"), Decision::Advance);
    }

    #[test]
    fn destructive_steps_need_the_original_model() {
        let mut rec = record(Step::DeleteVm);
        rec.original_model = None;
        assert!(matches!(
            decide(&rec, &obs_vm(Some(vm("deallocated"))), "r"),
            Decision::Park { .. }
        ));
    }

    #[test]
    fn delete_requires_copies_and_detach() {
        let mut rec = record(Step::DeleteVm);
        assert!(matches!(
            decide(&rec, &obs_vm(Some(vm("deallocated"))), "r"),
            Decision::Park { .. }
        ));
        rec.disks[0].copied = true;
        assert!(
            matches!(
                decide(&rec, &obs_vm(Some(vm("deallocated"))), "r"),
                Decision::Park { .. }
            ),
            "copied but not verified"
        );
        rec.disks[0].verified = true;
        assert_eq!(
            decide(&rec, &obs_vm(Some(vm("deallocated"))), "r"),
            Decision::Act(Action::SetDetach)
        );
        let mut v = vm("deallocated");
        v.all_detach = true;
        assert_eq!(
            decide(&rec, &obs_vm(Some(v.clone())), "r"),
            Decision::Act(Action::DeleteVm)
        );
        assert_eq!(decide(&rec, &obs_vm(None), "r"), Decision::Advance);
        v.vm_id = Some("someone-else".into());
        assert!(matches!(
            decide(&rec, &obs_vm(Some(v)), "r"),
            Decision::Park { .. }
        ));
    }

    #[test]
    fn foreign_resources_are_never_adopted() {
        let rec = record(Step::CreateTargets);
        let mut obs = Observation::default();
        obs.disks
            .insert(id("disks/os-eah").key(), Some(disk("Unattached", None)));
        assert!(matches!(decide(&rec, &obs, "r"), Decision::Park { .. }));
        obs.disks.insert(
            id("disks/os-eah").key(),
            Some(disk("ReadyToUpload", Some("r"))),
        );
        assert_eq!(decide(&rec, &obs, "r"), Decision::Advance);
        obs.disks.insert(id("disks/os-eah").key(), None);
        assert!(matches!(
            decide(&rec, &obs, "r"),
            Decision::Act(Action::CreateTargetDisk { .. })
        ));
    }

    #[test]
    fn final_copy_revokes_leftover_sas_and_distrusts_sealed_targets() {
        let mut rec = record(Step::FinalCopy);
        let mut obs = obs_vm(Some(vm("deallocated")));
        obs.disks
            .insert(id("disks/os").key(), Some(disk("ActiveSAS", None)));
        obs.disks.insert(
            id("disks/os-eah").key(),
            Some(disk("ActiveUpload", Some("r"))),
        );
        assert!(
            matches!(decide(&rec, &obs, "r"), Decision::Park { .. }),
            "a SAS we did not grant"
        );
        rec.open_sas.push(id("disks/os"));
        assert_eq!(
            decide(&rec, &obs, "r"),
            Decision::Act(Action::RevokeAccess {
                disk: id("disks/os")
            })
        );
        obs.disks
            .insert(id("disks/os").key(), Some(disk("Reserved", None)));
        assert_eq!(
            decide(&rec, &obs, "r"),
            Decision::Act(Action::CopyRound { offline: true })
        );
        obs.disks.insert(
            id("disks/os-eah").key(),
            Some(disk("Unattached", Some("r"))),
        );
        assert_eq!(
            decide(&rec, &obs, "r"),
            Decision::Act(Action::DeleteTargetDisk {
                target: id("disks/os-eah")
            })
        );
        rec.disks[0].copied = true;
        assert_eq!(decide(&rec, &obs, "r"), Decision::Advance);
    }

    #[test]
    fn grants_azure_shows_closed_are_the_only_ones_forgotten() {
        let mut rec = record(Step::FinalCopy);
        rec.open_sas = vec![id("disks/os"), id("disks/os-eah"), id("snapshots/r1")];
        let mut obs = obs_vm(Some(vm("deallocated")));
        // Closed on Azure's side (a revoke that finished after a crash).
        obs.disks
            .insert(id("disks/os").key(), Some(disk("Reserved", None)));
        // Still open: kept (and revoked by `leftover_sas`).
        obs.disks.insert(
            id("disks/os-eah").key(),
            Some(disk("ActiveUpload", Some("r"))),
        );
        // Not observed: kept, nothing is known about it.
        assert_eq!(closed_in_azure(&rec, &obs), vec![id("disks/os")]);
    }

    #[test]
    fn final_copy_needs_a_deallocated_vm_and_refuses_one_started_after() {
        let mut rec = record(Step::FinalCopy);
        let mut obs = obs_vm(Some(vm("running")));
        obs.disks
            .insert(id("disks/os").key(), Some(disk("Attached", None)));
        obs.disks.insert(
            id("disks/os-eah").key(),
            Some(disk("ActiveUpload", Some("r"))),
        );
        assert_eq!(decide(&rec, &obs, "r"), Decision::Act(Action::Deallocate));
        rec.disks[0].rounds.push(round(1, true, true));
        assert!(
            matches!(decide(&rec, &obs, "r"), Decision::Park { .. }),
            "the final copy is stale once the VM runs again"
        );
        let rec = record(Step::VerifyCopy);
        assert!(matches!(decide(&rec, &obs, "r"), Decision::Park { .. }));
    }

    fn round(n: u32, offline: bool, copied: bool) -> super::super::record::Round {
        let mut r =
            super::super::record::Round::open(n, id(&format!("snapshots/os-eah-r{n}")), offline);
        r.copied = copied;
        r
    }

    #[test]
    fn pre_copy_rounds_stop_when_the_delta_is_small_or_stops_shrinking() {
        let mut rec = record(Step::PreCopy);
        let mut obs = obs_vm(Some(vm("running")));
        obs.disks.insert(
            id("disks/os-eah").key(),
            Some(disk("ReadyToUpload", Some("r"))),
        );
        assert_eq!(
            decide(&rec, &obs, "r"),
            Decision::Act(Action::CopyRound { offline: false }),
            "first a full round"
        );
        let mut r1 = round(1, false, false);
        rec.disks[0].rounds.push(r1.clone());
        assert_eq!(
            decide(&rec, &obs, "r"),
            Decision::Act(Action::CopyRound { offline: false }),
            "an open round is finished"
        );
        r1.copied = true;
        r1.bytes = 100 << 30;
        rec.disks[0].rounds[0] = r1;
        assert_eq!(
            decide(&rec, &obs, "r"),
            Decision::Act(Action::CopyRound { offline: false }),
            "then a delta round"
        );
        let mut r2 = round(2, false, true);
        r2.bytes = 10 << 30;
        rec.disks[0].rounds.push(r2);
        assert_eq!(
            decide(&rec, &obs, "r"),
            Decision::Act(Action::CopyRound { offline: false }),
            "10 GiB left: shrinking, go on"
        );
        let mut r3 = round(3, false, true);
        r3.bytes = 9 << 30;
        rec.disks[0].rounds.push(r3);
        assert_eq!(
            decide(&rec, &obs, "r"),
            Decision::Advance,
            "9 of 10 GiB: not converging, stop"
        );
        rec.disks[0].rounds.truncate(2);
        rec.disks[0].rounds[1].bytes = 1 << 30;
        assert_eq!(
            decide(&rec, &obs, "r"),
            Decision::Advance,
            "1 GiB is below the offline target"
        );
        rec.copy_policy.max_online_rounds = 0;
        rec.disks[0].rounds.clear();
        assert_eq!(
            decide(&rec, &obs, "r"),
            Decision::Advance,
            "baseline: no online rounds"
        );
        rec.copy_policy.max_online_rounds = 4;
        assert_eq!(
            decide(&rec, &obs_vm(Some(vm("deallocated"))), "r"),
            Decision::Advance,
            "a stopped VM has nothing to pre-copy"
        );
    }

    #[test]
    fn recreate_adopts_only_our_vm_and_verify_checks_everything() {
        let rec = record(Step::Recreate);
        assert_eq!(
            decide(&rec, &obs_vm(None), "r"),
            Decision::Act(Action::CreateVm)
        );
        let mut v = vm("running");
        assert!(matches!(
            decide(&rec, &obs_vm(Some(v.clone())), "r"),
            Decision::Park { .. }
        ));
        v.os_disk = Some(id("disks/os-eah"));
        assert_eq!(
            decide(&rec, &obs_vm(Some(v.clone())), "r"),
            Decision::Advance
        );
        let rec = record(Step::Verify);
        let with_target = |v: VmView| {
            let mut o = obs_vm(Some(v));
            o.disks
                .insert(id("disks/os-eah").key(), Some(disk("Attached", Some("r"))));
            o
        };
        assert!(matches!(
            decide(&rec, &with_target(v.clone()), "r"),
            Decision::Park { .. }
        ));
        v.ade_extensions.clear();
        v.encryption_at_host = true;
        assert_eq!(decide(&rec, &with_target(v), "r"), Decision::Advance);
    }

    const DES1: &str =
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/diskEncryptionSets/des1";

    /// A verified-looking VM at `verify` whose source disk is on DES1, and
    /// the observation of its target with `target_encryption`.
    fn cmk_verify(target_encryption: Value) -> (VmRecord, Observation) {
        let mut rec = record(Step::Verify);
        rec.original_model = Some(
            json!({"tags": {"app": "erp", "ade2eah-lease": "x"}, "properties": {"vmId": "orig"}}),
        );
        rec.disks[0].source_model = json!({"properties": {"encryption": {"type": "EncryptionAtRestWithCustomerKey", "diskEncryptionSetId": DES1}}});
        rec.facts = Some(crate::step::record::VmFacts {
            os: crate::step::record::OsType::Windows,
            location: "westeurope".into(),
            zone: None,
            size: "Standard_D4s_v5".into(),
            ade_extension: None,
            dual_pass: false,
            volume_type: "All".into(),
            target_encryption: Default::default(),
            guest_check: false,
            nic_swap: false,
            nic_swap_refused: false,
            rebuild: None,
        });
        let mut v = vm("running");
        v.ade_extensions.clear();
        v.encryption_at_host = true;
        v.os_disk = Some(id("disks/os-eah"));
        v.tags = json!({"app": "erp", "ade2eah-lease": "y"});
        let mut o = obs_vm(Some(v));
        let mut t = disk("Attached", Some("r"));
        t.encryption = crate::step::encryption::DiskEncryption::of_disk(
            &json!({"properties": {"encryption": target_encryption}}),
        );
        o.disks.insert(id("disks/os-eah").key(), Some(t));
        (rec, o)
    }

    fn park_reason(d: Decision) -> String {
        match d {
            Decision::Park { reason, .. } => reason,
            other => panic!("expected a park, got {other:?}"),
        }
    }

    #[test]
    fn verify_checks_encryption_des_and_tags_beyond_the_flag() {
        let right = json!({"type": "EncryptionAtRestWithCustomerKey", "diskEncryptionSetId": DES1});
        let (rec, obs) = cmk_verify(right.clone());
        assert_eq!(
            decide(&rec, &obs, "r"),
            Decision::Advance,
            "carried DES, same tags"
        );

        let (rec, obs) = cmk_verify(json!({"type": "EncryptionAtRestWithPlatformKey"}));
        let r = park_reason(decide(&rec, &obs, "r"));
        assert!(
            r.contains("has PMK") && r.contains("expected CMK via des1"),
            "{r}"
        );

        let (rec, obs) = cmk_verify(
            json!({"type": "EncryptionAtRestWithCustomerKey", "diskEncryptionSetId": DES1.replace("des1", "des2")}),
        );
        let r = park_reason(decide(&rec, &obs, "r"));
        assert!(
            r.contains("CMK via des2") && r.contains("expected CMK via des1"),
            "{r}"
        );

        let (rec, mut obs) = cmk_verify(right.clone());
        if let Some(Some(v)) = obs.vm.as_mut() {
            v.tags = json!({"app": "crm", "new": "1"});
        }
        let r = park_reason(decide(&rec, &obs, "r"));
        assert!(r.contains("tag app is \"crm\" (was \"erp\")"), "{r}");
        assert!(r.contains("tag new=\"1\" was added"), "{r}");

        let (rec, mut obs) = cmk_verify(right);
        if let Some(Some(v)) = obs.vm.as_mut() {
            v.vm_agent_ready = Some(false);
        }
        assert!(
            matches!(decide(&rec, &obs, "r"), Decision::Wait { .. }),
            "the agent may still become ready"
        );
    }

    #[test]
    fn guest_check_holds_the_copy_while_bitlocker_still_decrypts() {
        let (mut rec, _) = cmk_verify(json!({}));
        rec.step = Step::AwaitDecrypted;
        rec.facts.as_mut().unwrap().guest_check = true;
        let mut v = vm("running");
        v.decryption = DecryptionState::Complete;
        let mut obs = obs_vm(Some(v));
        assert!(
            matches!(decide(&rec, &obs, "r"), Decision::Wait { .. }),
            "guest not asked yet"
        );
        let busy = json!({"value": [{"message": "ade2eah-volume C: DecryptionInProgress 40"}]});
        obs.guest = Some(crate::step::guest::parse(
            crate::step::record::OsType::Windows,
            &busy,
        ));
        match decide(&rec, &obs, "r") {
            Decision::Wait { reason } => assert!(reason.contains("BitLocker"), "{reason}"),
            other => panic!("{other:?}"),
        }
        let done = json!({"value": [{"message": "ade2eah-volume C: FullyDecrypted 0"}]});
        obs.guest = Some(crate::step::guest::parse(
            crate::step::record::OsType::Windows,
            &done,
        ));
        assert_eq!(decide(&rec, &obs, "r"), Decision::Advance);
        rec.facts.as_mut().unwrap().guest_check = false;
        obs.guest = None;
        assert_eq!(
            decide(&rec, &obs, "r"),
            Decision::Advance,
            "without --guest-check the API decides"
        );
    }

    #[test]
    fn step_order_is_total() {
        let mut s = Step::Snapshot;
        for expected in Step::ORDER.iter().skip(1) {
            s = s.next();
            assert_eq!(s, *expected);
        }
        assert_eq!(Step::Done.next(), Step::Done);
    }
}
