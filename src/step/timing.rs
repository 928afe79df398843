//! Timed phases of one VM's run: the data behind per-VM downtime, the
//! report's timeline and the copy benchmark's breakdown (pure data).
//!
//! The engine appends a [`Span`] when a phase ends (one per action, and one
//! per sub-phase of a copy round); reports and benchmarks only read them.
//! Spans live in the record's core (what `status`/`report` read), so their
//! number is capped at [`MAX_SPANS`].
//!
//! Times are Unix seconds (`f64`) of the clock the engine runs on: wall time
//! on Azure; against the emulator, wall time too (the emulator's time scale
//! compresses simulated durations, so reports of emulator runs show the
//! compressed durations; benchmarks multiply by the scale).

use serde::{Deserialize, Serialize};

/// What a span measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Backup snapshots of every source disk.
    BackupSnapshot,
    /// ADE disable (extension PUT) and the wait for the guest to decrypt.
    Decrypt,
    /// ADE extension removal.
    RemoveExtension,
    /// Delete options set to `Detach` (and any NIC preparation).
    Detach,
    /// Creation of the target disks.
    CreateTargets,
    /// One whole copy round as the engine's action saw it (snapshots,
    /// grants, copy, revokes, and the seal of an offline round). Reports
    /// use the round's sub-phase spans instead where those exist.
    CopyRound,
    /// The incremental snapshots of one copy round.
    RoundSnapshot,
    /// SAS grants of one copy round (or of the verification).
    Grant,
    /// Page-range copy of one round (`bytes` moved).
    Copy,
    /// Verification of sealed targets against the final snapshots.
    VerifyCopy,
    /// SAS revokes (seal) of one copy round.
    Revoke,
    /// Deallocation of the source VM (start of the downtime window).
    Deallocate,
    /// Checks made before the delete (validate-before-delete).
    Validate,
    /// Deletion of the source VM resource.
    DeleteVm,
    /// Waiting out Azure's NIC reservation after a delete or failed create.
    NicHold,
    /// The re-create PUT until it succeeded.
    CreateVm,
    /// Start of the re-created VM (end of the downtime window).
    Start,
    /// Work after the start (extensions, role assignments, verification).
    PostStart,
    /// Rollback work.
    Rollback,
}

impl Phase {
    /// Stable kebab-case name (as serialized).
    pub fn name(self) -> &'static str {
        match self {
            Phase::BackupSnapshot => "backup-snapshot",
            Phase::Decrypt => "decrypt",
            Phase::RemoveExtension => "remove-extension",
            Phase::Detach => "detach",
            Phase::CreateTargets => "create-targets",
            Phase::CopyRound => "copy-round",
            Phase::RoundSnapshot => "round-snapshot",
            Phase::Grant => "grant",
            Phase::Copy => "copy",
            Phase::VerifyCopy => "verify-copy",
            Phase::Revoke => "revoke",
            Phase::Deallocate => "deallocate",
            Phase::Validate => "validate",
            Phase::DeleteVm => "delete-vm",
            Phase::NicHold => "nic-hold",
            Phase::CreateVm => "create-vm",
            Phase::Start => "start",
            Phase::PostStart => "post-start",
            Phase::Rollback => "rollback",
        }
    }
}

/// One timed phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    /// What was measured.
    pub phase: Phase,
    /// Unix seconds when it began.
    pub start: f64,
    /// Unix seconds when it ended (`>= start`).
    pub end: f64,
    /// Copy round number, for round sub-phases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round: Option<u32>,
    /// True when the VM was deallocated (or deleted) during the phase.
    #[serde(default)]
    pub offline: bool,
    /// Bytes moved, for copy phases.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bytes: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Span {
    /// Seconds the phase took.
    pub fn secs(&self) -> f64 {
        (self.end - self.start).max(0.0)
    }
}

/// Most spans kept per VM (the oldest online copy-round sub-phases are
/// dropped first; a VM has about 25 spans with four online rounds).
pub const MAX_SPANS: usize = 128;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ResourceId;
    use crate::step::VmRecord;

    #[test]
    fn spans_are_capped_oldest_first_and_round_trip() {
        let id = ResourceId::parse(
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/v",
        )
        .unwrap();
        let mut rec = VmRecord::new(id);
        for i in 0..(MAX_SPANS + 3) {
            rec.record_span(Span {
                phase: Phase::Copy,
                start: i as f64,
                end: i as f64 + 1.5,
                round: Some(i as u32),
                offline: false,
                bytes: 7,
            });
        }
        assert_eq!(rec.spans.len(), MAX_SPANS);
        assert_eq!(rec.spans[0].start, 3.0);
        assert_eq!(rec.spans[0].secs(), 1.5);
        let json = serde_json::to_value(&rec.spans[0]).unwrap();
        assert_eq!(json["phase"], "copy");
        let back: Span = serde_json::from_value(json).unwrap();
        assert_eq!(back, rec.spans[0]);
    }
}
