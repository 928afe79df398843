//! The durable per-VM record: everything the engine needs to resume a VM after
//! a crash. Serialized into the journal; contains no secret-bearing type (the
//! compiler enforces it: `SasUrl` and `BearerToken` are not `Serialize`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::cleanup::CleanupEntry;
use super::reinstall::Carried;
use super::rollback::{RollbackPolicy, RollbackState};
use super::timing::Span;
use super::{Action, Step};
use crate::model::ResourceId;

/// Final or current standing of a VM in the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Outcome {
    /// Work remains; the VM is at `VmRecord::step`.
    InProgress,
    /// Migrated and verified: EAH on, running, new disks, no ADE extension.
    Verified,
    /// Found ineligible before anything was changed; nothing was sent to it.
    Skipped { reason: String },
    /// Stopped at a safe step; `resume` retries from there.
    Parked { reason: String, next_action: String },
    /// Brought back to its original VM on its original disks (by the
    /// `rollback` command, or automatically after a refused re-create);
    /// `reason` is why. Counts as a failure for the exit code of `run`.
    RolledBack { reason: String },
}

impl Outcome {
    /// True for the outcomes a failure budget counts: parked or rolled back.
    pub fn is_failure(&self) -> bool {
        matches!(self, Outcome::Parked { .. } | Outcome::RolledBack { .. })
    }

    /// Short word for tables and JSON.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::InProgress => "in-progress",
            Outcome::Verified => "verified",
            Outcome::Skipped { .. } => "skipped",
            Outcome::Parked { .. } => "parked",
            Outcome::RolledBack { .. } => "rolled-back",
        }
    }
}

/// The operating system family of a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OsType {
    /// Windows: ADE covers the OS volume alone or OS + data.
    Windows,
    /// Linux: only data-volume ADE can be disabled.
    Linux,
}

/// What discovery learned about a VM, fixed for the rest of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmFacts {
    /// OS family.
    pub os: OsType,
    /// Region.
    pub location: String,
    /// Availability zone, if zonal.
    pub zone: Option<String>,
    /// VM size.
    pub size: String,
    /// The ADE extension as found (any resource name), if present.
    pub ade_extension: Option<AdeExtension>,
    /// True when the VM model carries `osDisk.encryptionSettings` (AAD ADE).
    pub dual_pass: bool,
    /// `VolumeType` to send with `DisableEncryption` (`All` Windows, `Data` Linux).
    pub volume_type: String,
    /// Target encryption: encryption of the new disks (carried from
    /// the sources unless `--disk-encryption-set` / `--platform-keys`).
    #[serde(default)]
    pub target_encryption: super::encryption::TargetEncryption,
    /// `--guest-check`: verify inside the guest through Run Command (volumes
    /// seen, BitLocker / dm-crypt off), on Windows also before the copy.
    #[serde(default)]
    pub guest_check: bool,
    /// Set for a Linux VM with an ADE OS volume rebuilt from its image
    /// (`--rebuild-linux-os`, [`super::rebuild`]).
    #[serde(default)]
    pub rebuild: Option<Box<super::rebuild::RebuildSpec>>,
    /// `--nic-swap`: a placeholder NIC replaces the VM's NICs before the
    /// delete ([`super::nic_swap`]).
    #[serde(default)]
    pub nic_swap: bool,
    /// Azure refused the placeholder or the swap for good: the VM is
    /// deleted with its own NICs (the hold is waited out), the placeholder
    /// (if any) is still deleted.
    #[serde(default)]
    pub nic_swap_refused: bool,
}

/// The ADE extension resource found on a VM by publisher and type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdeExtension {
    /// Full resource id (its name may be anything).
    pub id: ResourceId,
    /// `AzureDiskEncryption` or `AzureDiskEncryptionForLinux`.
    pub handler_type: String,
    /// `typeHandlerVersion` as installed (reused on the disable PUT).
    pub handler_version: String,
}

/// OS disk or data disk at a LUN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "kebab-case")]
pub enum DiskRole {
    /// The OS disk.
    Os,
    /// A data disk at this LUN.
    Data { lun: i64 },
}

/// One source disk and everything the run derives from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskPlan {
    /// OS or data (with LUN).
    pub role: DiskRole,
    /// The original disk (never deleted by a run).
    pub source: ResourceId,
    /// `diskSizeBytes` of the source (the blob is 512 bytes longer).
    pub source_size_bytes: u64,
    /// The full source disk model as read at discovery.
    pub source_model: Value,
    /// The backup snapshot this run takes of it.
    pub snapshot: ResourceId,
    /// The new `Upload` disk the VM is re-created on.
    pub target: ResourceId,
    /// True once the final round finished and the target was sealed.
    pub copied: bool,
    /// Bytes moved into the target so far, all rounds together.
    pub bytes_copied: u64,
    /// The copy rounds, oldest first (online rounds, then the offline one).
    #[serde(default)]
    pub rounds: Vec<Round>,
    /// True once the sealed target was compared with the final snapshot.
    #[serde(default)]
    pub verified: bool,
    /// Rounds ever opened for this disk (names snapshots; never reset, so a
    /// re-copy never reuses an older round's snapshot).
    #[serde(default)]
    pub rounds_opened: u32,
}

impl DiskPlan {
    /// The round round `number`'s delta is taken against: the last
    /// finished round other than it (an offline round resumed after its
    /// copy finished still has the last online round as its base, so its
    /// verification reads back everything it wrote).
    pub fn delta_base(&self, number: u32) -> Option<&Round> {
        self.rounds
            .iter()
            .rev()
            .find(|r| r.copied && r.number != number)
    }

    /// The round in progress (created, not finished), if any.
    pub fn open_round(&self) -> Option<&Round> {
        self.rounds.last().filter(|r| !r.copied)
    }

    /// How this disk's final copy is verified under the run's `policy`:
    /// in full when an online spot check found a difference ([`SpotCheck`]).
    pub fn verify_mode(&self, policy: VerifyMode) -> VerifyMode {
        if policy == VerifyMode::Sample
            && self
                .rounds
                .iter()
                .any(|r| r.spot_check == SpotCheck::Mismatch)
        {
            VerifyMode::Full
        } else {
            policy
        }
    }

    /// Online rounds finished.
    pub fn online_rounds_done(&self) -> usize {
        self.rounds
            .iter()
            .filter(|r| r.copied && !r.offline)
            .count()
    }
}

/// One copy round of one disk: an incremental snapshot of the source, and
/// how far copying it (or its delta against the previous round) has come.
///
/// The timing fields are the pre-copy stop rule's measurements
/// ([`super::precopy`]), in Unix seconds of the engine's clock; `0` when not
/// measured (journals written before they existed, or a round resumed
/// after a crash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Round {
    /// 1-based round number.
    pub number: u32,
    /// The incremental snapshot this round copies from.
    pub snapshot: ResourceId,
    /// True for the round taken after deallocation.
    pub offline: bool,
    /// Every range below this offset is copied (journaled checkpoints);
    /// ranges at or above it are copied again after a crash.
    pub done_upto: u64,
    /// Bytes this round moved.
    pub bytes: u64,
    /// True once every range of the round is in the target.
    pub copied: bool,
    /// When the round began (before its snapshot was requested).
    #[serde(default)]
    pub started_at: f64,
    /// When its snapshot existed (the guest's writes after this instant
    /// belong to the next round).
    #[serde(default)]
    pub snapshot_at: f64,
    /// When its grants were in place and the copy began.
    #[serde(default)]
    pub copy_started_at: f64,
    /// When its last range was in the target.
    #[serde(default)]
    pub copy_ended_at: f64,
    /// Write calls the copy made (ranges split at 4 MiB).
    #[serde(default)]
    pub calls: u64,
    /// The spot check of the last online round: the target compared with
    /// this round's snapshot right after the round, while the VM still ran.
    #[serde(default)]
    pub spot_check: SpotCheck,
}

/// Outcome of an online round's spot check ([`Round::spot_check`]).
///
/// Contract: the offline round verifies a disk before sealing it, over
/// only what it wrote (plus the allocation maps and the footer), when the
/// disk's last online round `Passed` and is the round its delta was taken
/// against; after `Mismatch` the disk's sealed target is compared in full;
/// otherwise the sample verification runs after the seal as before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SpotCheck {
    /// Not run (not the last online round, verification off, a write
    /// grant that cannot read, an error, or a journal from before spot
    /// checks).
    #[default]
    NotRun,
    /// Every compared range matched.
    Passed,
    /// Some range differed.
    Mismatch,
}

impl Round {
    /// A new, empty round.
    pub fn open(number: u32, snapshot: ResourceId, offline: bool) -> Self {
        Round {
            number,
            snapshot,
            offline,
            done_upto: 0,
            bytes: 0,
            copied: false,
            started_at: 0.0,
            snapshot_at: 0.0,
            copy_started_at: 0.0,
            copy_ended_at: 0.0,
            calls: 0,
            spot_check: SpotCheck::NotRun,
        }
    }

    /// True when every timing of the round was measured in one go (not
    /// resumed after a crash, not from an older journal).
    pub fn is_measured(&self) -> bool {
        self.started_at > 0.0
            && self.snapshot_at >= self.started_at
            && self.copy_started_at >= self.snapshot_at
            && self.copy_ended_at >= self.copy_started_at
    }
}

/// How thoroughly a sealed target is compared with its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerifyMode {
    /// Read back and compare every allocated range of both.
    Full,
    /// Compare the allocation maps, every range the offline round wrote, the
    /// footer, and a fixed number of seeded spot checks; the spot checks run
    /// online, against the last online round's snapshot, and the offline
    /// part before the seal, when the upload grant reads ([`SpotCheck`]).
    #[default]
    Sample,
    /// Skip content comparison (the footer is still checked at seal).
    None,
}

/// Copy behaviour chosen for the run.
///
/// The stop rule of the online rounds is in time ([`super::precopy`]); the
/// time parameters are in seconds of the engine's clock (wall seconds on
/// Azure; a benchmark against a time-scaled emulator divides them by the
/// scale).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CopyPolicy {
    /// Most online rounds (0: copy everything while deallocated, the
    /// baseline procedure).
    pub max_online_rounds: u32,
    /// The byte rule of journals written before the time rule: stop once a
    /// round's delta (all disks) is at most this. Used only for rounds that
    /// carry no timing measurements.
    #[serde(default = "default_offline_target_bytes")]
    pub offline_target_bytes: u64,
    /// Verification of sealed targets.
    pub verify: VerifyMode,
    /// Another online round must shrink the predicted data part of the
    /// offline window by at least this share of it (0.2 = 20%)...
    #[serde(default = "default_min_gain_fraction")]
    pub min_gain_fraction: f64,
    /// ...and by at least this many times the measured fixed cost of one
    /// round (its snapshot and grants), below which the gain is lost in the
    /// spread of those calls' durations.
    #[serde(default = "default_min_gain_overheads")]
    pub min_gain_overheads: f64,
    /// Most seconds of online rounds (first round's start to the last
    /// round's end); no further round starts after it.
    #[serde(default = "default_max_online_secs")]
    pub max_online_secs: f64,
}

fn default_offline_target_bytes() -> u64 {
    2 << 30
}
fn default_min_gain_fraction() -> f64 {
    0.2
}
fn default_min_gain_overheads() -> f64 {
    0.5
}
fn default_max_online_secs() -> f64 {
    12.0 * 3600.0
}

impl Default for CopyPolicy {
    fn default() -> Self {
        CopyPolicy {
            max_online_rounds: 4,
            offline_target_bytes: default_offline_target_bytes(),
            verify: VerifyMode::Sample,
            min_gain_fraction: default_min_gain_fraction(),
            min_gain_overheads: default_min_gain_overheads(),
            max_online_secs: default_max_online_secs(),
        }
    }
}

/// Kinds of resources a run creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CreatedKind {
    /// Backup snapshot of a source disk.
    Snapshot,
    /// Upload target disk.
    TargetDisk,
    /// The re-created VM resource.
    Vm,
    /// The `--nic-swap` placeholder NIC (deleted once the new VM runs).
    PlaceholderNic,
}

/// A resource this run created (so cleanup and audits can find it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedResource {
    /// What it is.
    pub kind: CreatedKind,
    /// Its id.
    pub id: ResourceId,
}

/// One line of a VM's timestamped history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// RFC 3339 UTC.
    pub at: String,
    /// Step at the time.
    pub step: Step,
    /// `intent`, `result`, `advance`, `park`, `skip`, `wait`, `error`...
    pub event: String,
    /// Human-readable detail (already free of secrets).
    pub detail: String,
}

/// Most history lines kept per VM (the JSONL audit log keeps everything).
pub const MAX_HISTORY: usize = 200;

/// Everything durable about one VM in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmRecord {
    /// The VM (same id before and after re-creation).
    pub id: ResourceId,
    /// Current step.
    pub step: Step,
    /// Standing in the run.
    pub outcome: Outcome,
    /// Which variant of the steps the VM follows (copy, or the Linux rebuild).
    #[serde(default)]
    pub path: super::rebuild::MigrationPath,
    /// Discovery facts (absent for skipped VMs that could not be classified).
    pub facts: Option<VmFacts>,
    /// The full original VM model (GET body), captured before any destructive step.
    pub original_model: Option<Value>,
    /// One entry per source disk, OS disk first.
    pub disks: Vec<DiskPlan>,
    /// Every resource the run created, in creation order.
    pub created: Vec<CreatedResource>,
    /// Disks on which this run may have left SAS access open (ids only).
    pub open_sas: Vec<ResourceId>,
    /// The action journaled as intent whose result is not yet recorded.
    pub pending: Option<Action>,
    /// Failed attempts at the current step (reset on advance).
    pub attempts: u32,
    /// Sequence version sent with `DisableEncryption` (reused on retries).
    pub ade_sequence: Option<String>,
    /// Copy rounds and verification chosen for the run.
    #[serde(default)]
    pub copy_policy: CopyPolicy,
    /// Timestamped history, newest last, capped at [`MAX_HISTORY`].
    pub history: Vec<HistoryEntry>,
    /// Timed phases, oldest first, capped at [`super::timing::MAX_SPANS`]
    /// (downtime, timeline, benchmark breakdown).
    #[serde(default)]
    pub spans: Vec<Span>,
    /// Extensions and role assignments carried to the re-created VM
    /// ([`super::reinstall`]), captured at discovery.
    #[serde(default)]
    pub carried: Carried,
    /// When to roll back by itself (`--no-auto-rollback`,
    /// `--rollback-on-verify-failure`), fixed at `run`.
    #[serde(default)]
    pub rollback_policy: RollbackPolicy,
    /// The rollback in progress or done, if any (see [`super::rollback`]).
    #[serde(default)]
    pub rollback: Option<RollbackState>,
    /// What `ade2eah cleanup` deleted (or is deleting) of this VM's
    /// resources, journaled intent first ([`super::cleanup`]).
    #[serde(default)]
    pub cleanup: Vec<CleanupEntry>,
}

impl VmRecord {
    /// Online rounds every disk has finished (the slowest disk's count).
    pub fn online_rounds_done(&self) -> u32 {
        self.disks
            .iter()
            .map(|d| d.online_rounds_done())
            .min()
            .unwrap_or(0) as u32
    }

    /// A fresh record at the first step.
    pub fn new(id: ResourceId) -> Self {
        VmRecord {
            id,
            step: Step::Snapshot,
            outcome: Outcome::InProgress,
            path: super::rebuild::MigrationPath::Copy,
            facts: None,
            original_model: None,
            disks: Vec::new(),
            created: Vec::new(),
            open_sas: Vec::new(),
            pending: None,
            attempts: 0,
            ade_sequence: None,
            copy_policy: CopyPolicy::default(),
            history: Vec::new(),
            spans: Vec::new(),
            carried: Carried::default(),
            rollback_policy: RollbackPolicy::default(),
            rollback: None,
            cleanup: Vec::new(),
        }
    }

    /// Appends a timed phase, dropping the oldest beyond
    /// [`super::timing::MAX_SPANS`].
    pub fn record_span(&mut self, span: Span) {
        self.spans.push(span);
        if self.spans.len() > super::timing::MAX_SPANS {
            let excess = self.spans.len() - super::timing::MAX_SPANS;
            self.spans.drain(..excess);
        }
    }

    /// Appends a history line, dropping the oldest beyond [`MAX_HISTORY`].
    pub fn note(&mut self, at: String, event: &str, detail: impl Into<String>) {
        self.history.push(HistoryEntry {
            at,
            step: self.step,
            event: event.to_string(),
            detail: detail.into(),
        });
        if self.history.len() > MAX_HISTORY {
            let excess = self.history.len() - MAX_HISTORY;
            self.history.drain(..excess);
        }
    }

    /// Records that the run created `id` (idempotent).
    pub fn remember_created(&mut self, kind: CreatedKind, id: &ResourceId) {
        if !self.created.iter().any(|c| c.kind == kind && &c.id == id) {
            self.created.push(CreatedResource {
                kind,
                id: id.clone(),
            });
        }
    }

    /// True when this run created `id`.
    pub fn created_by_run(&self, id: &ResourceId) -> bool {
        self.created.iter().any(|c| &c.id == id)
    }

    /// Marks `disk` as possibly holding an open SAS grant (idempotent).
    pub fn sas_opened(&mut self, disk: &ResourceId) {
        if !self.open_sas.contains(disk) {
            self.open_sas.push(disk.clone());
        }
    }

    /// Marks `disk`'s grant as revoked.
    pub fn sas_closed(&mut self, disk: &ResourceId) {
        self.open_sas.retain(|d| d != disk);
    }

    /// The disk plan for `source` or `target`, if any.
    pub fn disk_mut(&mut self, id: &ResourceId) -> Option<&mut DiskPlan> {
        self.disks
            .iter_mut()
            .find(|d| &d.source == id || &d.target == id)
    }

    /// Whether the VM still needs work in this run.
    pub fn is_active(&self) -> bool {
        matches!(self.outcome, Outcome::InProgress)
    }
}
