//! The per-VM migration state machine: pure data and pure decisions, no I/O.
//!
//! A VM moves through [`Step::ORDER`]. At every step the engine gathers an
//! [`Observation`] (read-only GETs), asks [`decide`] what to do, and carries out
//! the [`Decision`]. Because `decide` looks at Azure's real state first, every
//! step is safe to repeat after a crash: if the effect is already there, the
//! decision is [`Decision::Advance`], not a second call.
//!
//! Contract of this module: no tokio, no HTTP, no clock, no file system. Inputs
//! are the durable [`VmRecord`] and an [`Observation`]; output is a decision.

pub mod body;
pub mod cleanup;
pub mod decide;
pub mod eligibility;
pub mod encryption;
pub mod guest;
pub mod nic_swap;
pub mod observe;
pub mod precopy;
pub mod rebuild;
pub mod record;
pub mod reinstall;
pub mod rollback;
pub mod summary;
pub mod timing;
pub mod validate;

pub use decide::{Needs, decide, needs};
pub use eligibility::{Eligibility, PlatformFacts, classify};
pub use observe::{DecryptionState, DiskView, Observation, VmView};
pub use record::{
    CopyPolicy, CreatedKind, CreatedResource, DiskPlan, DiskRole, HistoryEntry, Outcome, Round,
    SpotCheck, VerifyMode, VmFacts, VmRecord,
};
pub use rollback::{RollbackPolicy, RollbackState, RollbackStep};
pub use summary::{DiskSummary, HistoryTail, RecordSummary, VmEntry};
pub use timing::{Phase, Span};

use serde::{Deserialize, Serialize};

use crate::model::ResourceId;

/// One stage of a VM's migration, in the order they run.
///
/// The copy is split so that downtime depends on what changed, not on disk
/// size: [`Step::PreCopy`] copies incremental snapshots into the target
/// disks while the VM still runs (one full round, then delta rounds while
/// they shrink), and [`Step::FinalCopy`] copies only the pages that changed
/// since the last round, after the VM is deallocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Step {
    /// Incremental backup snapshot of every source disk (kept after the run).
    Snapshot,
    /// PUT the ADE extension (under the name found) with `DisableEncryption`.
    DisableAde,
    /// Poll the instance view until the guest reports every volume decrypted.
    AwaitDecrypted,
    /// DELETE the ADE extension.
    RemoveExtension,
    /// Set `deleteOption=Detach` on the OS disk, data disks and NICs (done
    /// while the VM runs, so it costs no downtime).
    DetachOnDelete,
    /// Create one `Upload` target disk per source disk.
    CreateTargets,
    /// Online rounds: snapshot, copy (first round full, then the delta
    /// against the previous round) while the VM runs.
    PreCopy,
    /// Validate before delete: fresh reads of everything the re-create
    /// needs (size in the zone, EAH capability, DES, zone vs disk SKU,
    /// quota, locks) while the VM still exists and runs; a refusal found
    /// here parks the VM before any downtime.
    Validate,
    /// Deallocate the VM (needed for a consistent final snapshot and for
    /// read SAS on its disks).
    Deallocate,
    /// Final snapshot, copy the delta since the last round (or everything
    /// if there was none), seal the targets (revoke; footer validated).
    #[serde(alias = "CopyDisks")]
    FinalCopy,
    /// Compare every target with its final snapshot (per `--verify`).
    VerifyCopy,
    /// Delete the VM resource (disks and NICs stay, `Detach`).
    DeleteVm,
    /// Re-create the VM with the same name on the new disks, EAH on.
    Recreate,
    /// Start the new VM if it is not running.
    Start,
    /// Reinstall the extensions other than ADE from the journaled model and
    /// grant the new system-assigned principal the old one's roles
    /// ([`reinstall`]).
    Reinstall,
    /// Check EAH on, running, VM agent ready, no ADE extension, the new
    /// disks attached with the expected encryption, tags as before (and,
    /// with `--guest-check`, the guest's volumes decrypted).
    Verify,
    /// Nothing left to do.
    Done,
}

impl Step {
    /// Every step in execution order.
    pub const ORDER: [Step; 17] = [
        Step::Snapshot,
        Step::DisableAde,
        Step::AwaitDecrypted,
        Step::RemoveExtension,
        Step::DetachOnDelete,
        Step::CreateTargets,
        Step::PreCopy,
        Step::Validate,
        Step::Deallocate,
        Step::FinalCopy,
        Step::VerifyCopy,
        Step::DeleteVm,
        Step::Recreate,
        Step::Start,
        Step::Reinstall,
        Step::Verify,
        Step::Done,
    ];

    /// The step after this one (`Done` stays `Done`).
    pub fn next(self) -> Step {
        let i = Self::ORDER
            .iter()
            .position(|s| *s == self)
            .unwrap_or(Self::ORDER.len() - 1);
        Self::ORDER[(i + 1).min(Self::ORDER.len() - 1)]
    }

    /// Steps after which the source VM can no longer simply be started again
    /// as it was. The original model must be journaled before the first of them.
    pub fn is_destructive(self) -> bool {
        matches!(
            self,
            Step::DisableAde
                | Step::RemoveExtension
                | Step::Deallocate
                | Step::DetachOnDelete
                | Step::DeleteVm
        )
    }

    /// Stable kebab-case name used in status output and failpoint names.
    pub fn name(self) -> &'static str {
        match self {
            Step::Snapshot => "snapshot",
            Step::DisableAde => "disable-ade",
            Step::AwaitDecrypted => "await-decrypted",
            Step::RemoveExtension => "remove-extension",
            Step::DetachOnDelete => "detach-on-delete",
            Step::CreateTargets => "create-targets",
            Step::PreCopy => "pre-copy",
            Step::Validate => "validate",
            Step::Deallocate => "deallocate",
            Step::FinalCopy => "final-copy",
            Step::VerifyCopy => "verify-copy",
            Step::DeleteVm => "delete-vm",
            Step::Recreate => "recreate",
            Step::Start => "start",
            Step::Reinstall => "reinstall",
            Step::Verify => "verify",
            Step::Done => "done",
        }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One mutating Azure call the core asks the engine to make. Serializable, so
/// it is journaled as intent before it is sent; never carries a secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// PUT an incremental snapshot of `disk`.
    CreateSnapshot {
        disk: ResourceId,
        snapshot: ResourceId,
    },
    /// Start the VM (ADE extension changes need it running).
    StartVm,
    /// PUT the ADE extension with `DisableEncryption` and this sequence version.
    DisableAde {
        extension: ResourceId,
        volume_type: String,
        sequence_version: String,
    },
    /// DELETE the ADE extension.
    RemoveExtension { extension: ResourceId },
    /// POST deallocate.
    Deallocate,
    /// PATCH the VM so that deleting it detaches every disk and NIC.
    SetDetach,
    /// PUT an `Upload` disk sized source + 512 bytes.
    CreateTargetDisk {
        source: ResourceId,
        target: ResourceId,
    },
    /// PUT an `Empty` data disk for the rebuild path ([`rebuild`]).
    CreateEmptyDisk {
        source: ResourceId,
        target: ResourceId,
    },
    /// Delete a target disk this run created that holds an unfinished copy.
    DeleteTargetDisk { target: ResourceId },
    /// End SAS access left open on a disk (for example after a crash).
    RevokeAccess { disk: ResourceId },
    /// Legacy (schema 1) single-disk copy; performed as an offline round.
    CopyDisk {
        source: ResourceId,
        target: ResourceId,
    },
    /// One copy round over every disk not yet done with it, in parallel:
    /// snapshot each source, copy it (or its delta against the previous
    /// round) into the target; an offline round also seals the target.
    CopyRound { offline: bool },
    /// Compare every unverified target with its final snapshot.
    VerifyCopies,
    /// DELETE the VM resource.
    DeleteVm,
    /// PATCH a sealed target disk with the source disk's access settings
    /// (`body::target_access`): network access policy, disk access, public
    /// network access, data access auth mode.
    RestoreTargetAccess { disk: ResourceId },
    /// PUT the VM again, on the target disks, with EAH on (on the rebuild
    /// path: from the image, on a new OS disk and the empty data disks).
    CreateVm,
    /// PUT an extension (other than ADE) from the journaled original model.
    ReinstallExtension { extension: ResourceId },
    /// Grant the re-created VM's principal a role the old principal had
    /// (a new role assignment, new GUID name).
    GrantRole {
        principal_id: String,
        role_definition_id: String,
        scope: String,
    },
    /// `--nic-swap`: PUT the placeholder NIC ([`nic_swap`]) while the VM runs.
    CreatePlaceholderNic { nic: ResourceId },
    /// `--nic-swap`: PATCH the deallocated VM so the placeholder is its only NIC.
    SwapNics { nic: ResourceId },
    /// `--nic-swap`: DELETE the placeholder once the new VM runs.
    DeletePlaceholderNic { nic: ResourceId },
    /// Rollback: PUT the original VM from the journaled model on its
    /// original disks ([`body::restore_vm`]).
    RestoreVm,
    /// Rollback: PATCH the original `deleteOption` of every disk and NIC.
    RestoreDeleteOptions,
    /// Rollback (`--reenable-ade`): PUT the ADE extension with
    /// `EnableEncryption` and the journaled key vault settings.
    ReenableAde {
        extension: ResourceId,
        sequence_version: String,
    },
}

impl Action {
    /// Short stable name for logs, history and failpoints.
    pub fn name(&self) -> &'static str {
        match self {
            Action::CreateSnapshot { .. } => "create-snapshot",
            Action::StartVm => "start-vm",
            Action::DisableAde { .. } => "disable-ade",
            Action::RemoveExtension { .. } => "remove-extension",
            Action::Deallocate => "deallocate",
            Action::SetDetach => "set-detach",
            Action::CreateTargetDisk { .. } => "create-target-disk",
            Action::CreateEmptyDisk { .. } => "create-empty-disk",
            Action::DeleteTargetDisk { .. } => "delete-target-disk",
            Action::RevokeAccess { .. } => "revoke-access",
            Action::CopyDisk { .. } => "copy-disk",
            Action::CopyRound { offline: false } => "copy-round-online",
            Action::CopyRound { offline: true } => "copy-round-offline",
            Action::VerifyCopies => "verify-copies",
            Action::DeleteVm => "delete-vm",
            Action::RestoreTargetAccess { .. } => "restore-target-access",
            Action::CreateVm => "create-vm",
            Action::ReinstallExtension { .. } => "reinstall-extension",
            Action::GrantRole { .. } => "grant-role",
            Action::CreatePlaceholderNic { .. } => "create-placeholder-nic",
            Action::SwapNics { .. } => "swap-nics",
            Action::DeletePlaceholderNic { .. } => "delete-placeholder-nic",
            Action::RestoreVm => "restore-vm",
            Action::RestoreDeleteOptions => "restore-delete-options",
            Action::ReenableAde { .. } => "reenable-ade",
        }
    }
}

/// What the core tells the engine to do next for one VM.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Make this call, then observe again.
    Act(Action),
    /// Nothing to do yet (an operation or the guest is still busy); observe
    /// again after the poll interval.
    Wait { reason: String },
    /// This step's effect is in place; move to the next step.
    Advance,
    /// Stop work on this VM at a safe point; a human must look.
    Park { reason: String, next_action: String },
}

impl Decision {
    /// Shorthand for a park decision.
    pub fn park(reason: impl Into<String>, next_action: impl Into<String>) -> Self {
        Decision::Park {
            reason: reason.into(),
            next_action: next_action.into(),
        }
    }
}
