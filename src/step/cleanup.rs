//! What `ade2eah cleanup` may delete (pure: records + observations + now in,
//! verdicts out; no I/O, no clock of its own).
//!
//! Contract:
//! - Only resources the journal owns are ever candidates ([`owned`]): the
//!   copy-round snapshots and backup snapshots listed in
//!   [`VmRecord::created`], and the original (source) disks a run replaced
//!   (a [`DiskPlan::source`] whose target the run created). A target disk the
//!   VM now runs on, the VM itself, and anything the journal does not name
//!   are never candidates.
//! - Only VMs whose outcome is [`Outcome::Verified`], verified at least the
//!   retention ago (the time of the `verified` line of their history), have
//!   candidates that may be deleted ([`vm_eligibility`]); any other outcome
//!   (in progress, parked, skipped, rolled back...) has none.
//! - Each candidate is judged on a fresh GET ([`judge`]): gone is success;
//!   a snapshot must carry this run's `ade2eah-run` tag and name its source
//!   in `ade2eah-source`; a disk must be detached (no `managedBy`), have no
//!   open SAS, and be the very disk the run replaced (same `uniqueId` as
//!   the journaled source model when both are known).
//! - A deletion already journaled as done is never repeated ([`CleanupState`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::body::SOURCE_TAG;
use super::observe::{RUN_TAG, is_ade_extension};
use super::record::{CreatedKind, CreatedResource, DiskPlan, Outcome, Round, VmRecord};
use crate::model::ResourceId;
use crate::model::views::{DiskModel, VmModel};

/// Default retention before cleanup deletes anything (`--older-than`).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// The history event that marks a VM verified (written by the engine).
pub const VERIFIED_EVENT: &str = "verified";

/// What a cleanup candidate is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CleanupKind {
    /// A temporary incremental snapshot of one copy round.
    RoundSnapshot,
    /// The backup snapshot taken of a source disk before anything changed.
    BackupSnapshot,
    /// The original disk the VM ran on before the migration.
    SourceDisk,
}

impl CleanupKind {
    /// Stable label for tables and JSON.
    pub fn label(self) -> &'static str {
        match self {
            CleanupKind::RoundSnapshot => "round-snapshot",
            CleanupKind::BackupSnapshot => "backup-snapshot",
            CleanupKind::SourceDisk => "source-disk",
        }
    }
}

/// One resource the journal owns and cleanup may delete once it is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    /// What it is.
    pub kind: CleanupKind,
    /// Its id.
    pub id: ResourceId,
    /// The source disk it belongs to (itself for a source disk).
    pub source: ResourceId,
    /// `uniqueId` of the journaled source model (source disks only).
    pub unique_id: Option<String>,
}

/// The journaled progress of one deletion (intent, then result).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CleanupState {
    /// The DELETE is about to be (or was) sent; its result is not journaled.
    Deleting,
    /// Deleted by cleanup.
    Deleted,
    /// Found already gone (deleted by someone else, or by a DELETE whose
    /// result a crash lost).
    Gone,
}

impl CleanupState {
    /// True once nothing remains to do for the resource.
    pub fn is_done(self) -> bool {
        matches!(self, CleanupState::Deleted | CleanupState::Gone)
    }
}

/// One line of a VM record's cleanup journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanupEntry {
    /// What it is.
    pub kind: CleanupKind,
    /// Its id.
    pub id: ResourceId,
    /// How far its deletion came.
    pub state: CleanupState,
    /// RFC 3339 UTC of the last change.
    pub at: String,
}

/// A candidate as a fresh GET found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// 404.
    Gone,
    /// It exists.
    Present {
        /// `ade2eah-run` tag.
        run_tag: Option<String>,
        /// `ade2eah-source` tag.
        source_tag: Option<String>,
        /// `managedBy` (attached to a VM).
        managed_by: Option<String>,
        /// `uniqueId`.
        unique_id: Option<String>,
        /// `diskState` (`ActiveSAS`... when access is open).
        disk_state: Option<String>,
    },
}

impl Seen {
    /// The observation of a GET body (`None` = 404).
    pub fn of(body: Option<&Value>) -> Seen {
        let Some(b) = body else {
            return Seen::Gone;
        };
        let m = DiskModel::new(b);
        let p = m.properties();
        Seen::Present {
            run_tag: m.tag(RUN_TAG).map(str::to_string),
            source_tag: m.tag(SOURCE_TAG).map(str::to_string),
            managed_by: m.managed_by().map(str::to_string),
            unique_id: p.unique_id().map(str::to_string),
            disk_state: p.disk_state().map(str::to_string),
        }
    }
}

/// What to do with one candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Send the DELETE (journaled intent first).
    Delete,
    /// Already gone: journal it as done.
    AlreadyGone,
    /// Journaled as done before; nothing to do.
    Done,
    /// Leave it; the reason says why.
    Keep(String),
}

/// Whether a VM's resources may be cleaned now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmEligibility {
    /// Verified at `verified_at`, past the retention.
    Eligible { verified_at: String },
    /// Verified, but the retention has not passed.
    NotYet { verified_at: String, due_at: String },
    /// Never cleaned in this state; the reason says why.
    Never(String),
}

impl VmEligibility {
    /// True when candidates may be deleted.
    pub fn allows(&self) -> bool {
        matches!(self, VmEligibility::Eligible { .. })
    }

    /// Why nothing may be deleted (`None` when it may).
    pub fn reason(&self) -> Option<String> {
        match self {
            VmEligibility::Eligible { .. } => None,
            VmEligibility::NotYet { due_at, .. } => {
                Some(format!("retention: verified too recently; due at {due_at}"))
            }
            VmEligibility::Never(r) => Some(r.clone()),
        }
    }
}

/// The time the VM was verified: the newest `verified` line of its history.
pub fn verified_at(rec: &VmRecord) -> Option<&str> {
    rec.history
        .iter()
        .rev()
        .find(|h| h.event == VERIFIED_EVENT)
        .map(|h| h.at.as_str())
}

/// Whether the resources of a VM with this `outcome`, verified at
/// `verified_at`, may be cleaned at `now` with `retention`.
pub fn vm_eligibility(
    outcome: &Outcome,
    verified_at: Option<&str>,
    now: OffsetDateTime,
    retention: Duration,
) -> VmEligibility {
    if *outcome != Outcome::Verified {
        return VmEligibility::Never(format!(
            "the VM is {}, not verified: nothing of it is cleaned",
            outcome.label()
        ));
    }
    let Some(at) = verified_at else {
        return VmEligibility::Never(
            "the VM's verification time is not in its history: nothing of it is cleaned".into(),
        );
    };
    let Ok(t) = OffsetDateTime::parse(at, &Rfc3339) else {
        return VmEligibility::Never(format!(
            "the VM's verification time {at:?} cannot be read: nothing of it is cleaned"
        ));
    };
    let due = t + retention;
    if now >= due {
        VmEligibility::Eligible {
            verified_at: at.to_string(),
        }
    } else {
        VmEligibility::NotYet {
            verified_at: at.to_string(),
            due_at: due.format(&Rfc3339).unwrap_or_default(),
        }
    }
}

/// The resources the journal owns for cleanup, in a stable order (per disk:
/// round snapshots, the backup snapshot, the source disk). Only snapshots
/// listed in `created`, and sources whose target is in `created`; never an
/// id that is a target, or any created disk or VM.
pub fn owned(disks: &[DiskPlan], created: &[CreatedResource]) -> Vec<Owned> {
    owned_of(
        disks.iter().map(|d| DiskRefs {
            source: &d.source,
            snapshot: &d.snapshot,
            target: &d.target,
            rounds: &d.rounds,
            source_model: Some(&d.source_model),
        }),
        created,
    )
}

/// The disk fields [`owned_of`] reads (from a full record or a summary).
pub struct DiskRefs<'a> {
    /// The original disk.
    pub source: &'a ResourceId,
    /// Its backup snapshot.
    pub snapshot: &'a ResourceId,
    /// The new disk.
    pub target: &'a ResourceId,
    /// Its copy rounds.
    pub rounds: &'a [Round],
    /// The journaled source model (absent in summaries).
    pub source_model: Option<&'a Value>,
}

/// [`owned`] over any view of the disks.
pub fn owned_of<'a>(
    disks: impl Iterator<Item = DiskRefs<'a>>,
    created: &[CreatedResource],
) -> Vec<Owned> {
    let disks: Vec<DiskRefs<'a>> = disks.collect();
    let created_as =
        |kind: CreatedKind, id: &ResourceId| created.iter().any(|c| c.kind == kind && &c.id == id);
    // Never a resource the VM runs on or the run created as a disk or VM.
    let protected = |id: &ResourceId| {
        disks.iter().any(|d| d.target == id)
            || created
                .iter()
                .any(|c| c.kind != CreatedKind::Snapshot && &c.id == id)
    };
    let mut out: Vec<Owned> = Vec::new();
    let mut push = |o: Owned| {
        if !protected(&o.id) && !out.iter().any(|x| x.id == o.id) {
            out.push(o);
        }
    };
    for d in &disks {
        for r in d.rounds {
            if created_as(CreatedKind::Snapshot, &r.snapshot) {
                push(Owned {
                    kind: CleanupKind::RoundSnapshot,
                    id: r.snapshot.clone(),
                    source: d.source.clone(),
                    unique_id: None,
                });
            }
        }
        if created_as(CreatedKind::Snapshot, d.snapshot) {
            push(Owned {
                kind: CleanupKind::BackupSnapshot,
                id: d.snapshot.clone(),
                source: d.source.clone(),
                unique_id: None,
            });
        }
        if created_as(CreatedKind::TargetDisk, d.target) {
            push(Owned {
                kind: CleanupKind::SourceDisk,
                id: d.source.clone(),
                source: d.source.clone(),
                unique_id: d
                    .source_model
                    .and_then(|m| DiskModel::new(m).properties().unique_id())
                    .map(str::to_string),
            });
        }
    }
    out
}

/// The verdict on one owned candidate of a VM that [`VmEligibility::allows`]
/// cleaning, given its journaled state and a fresh GET.
pub fn judge(o: &Owned, journaled: Option<CleanupState>, seen: &Seen, run_id: &str) -> Verdict {
    if journaled.is_some_and(CleanupState::is_done) {
        return Verdict::Done;
    }
    let Seen::Present {
        run_tag,
        source_tag,
        managed_by,
        unique_id,
        disk_state,
    } = seen
    else {
        return Verdict::AlreadyGone;
    };
    if let Some(vm) = managed_by {
        return Verdict::Keep(format!("attached to {vm}"));
    }
    if let Some(s) = disk_state.as_deref()
        && matches!(s, "ActiveSAS" | "ActiveSASFrozen" | "ActiveUpload")
    {
        return Verdict::Keep(format!("SAS access is open ({s}); end it first"));
    }
    match o.kind {
        CleanupKind::RoundSnapshot | CleanupKind::BackupSnapshot => {
            if run_tag.as_deref() != Some(run_id) {
                return Verdict::Keep(format!(
                    "not tagged {RUN_TAG}={run_id} (found {:?}): not this run's",
                    run_tag.as_deref().unwrap_or("no tag")
                ));
            }
            if !source_tag
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case(o.source.as_str()))
            {
                return Verdict::Keep(format!(
                    "its {SOURCE_TAG} tag does not name {}: not this run's",
                    o.source
                ));
            }
        }
        CleanupKind::SourceDisk => {
            if let (Some(want), Some(got)) = (&o.unique_id, unique_id)
                && !want.eq_ignore_ascii_case(got)
            {
                return Verdict::Keep(format!(
                    "uniqueId {got} is not the journaled {want}: a different disk with the same name"
                ));
            }
            if run_tag.is_some() {
                return Verdict::Keep(
                    "carries an ade2eah-run tag: a disk some run created, not an original".into(),
                );
            }
        }
    }
    Verdict::Delete
}

/// One candidate with its verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    /// The candidate.
    pub owned: Owned,
    /// What to do with it.
    pub verdict: Verdict,
}

/// One VM's cleanup: whether it may be cleaned, and every owned candidate
/// judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmCleanup {
    /// The VM.
    pub vm: ResourceId,
    /// Whether its resources may be cleaned now.
    pub eligibility: VmEligibility,
    /// Its candidates.
    pub items: Vec<Judged>,
}

/// The whole selection for one VM: eligibility, then every owned candidate
/// judged on `seen(id)` (`None` = not observed: kept). A VM that may not be
/// cleaned gets every candidate kept with the reason.
pub fn select(
    rec: &VmRecord,
    seen: impl Fn(&ResourceId) -> Option<Seen>,
    run_id: &str,
    now: OffsetDateTime,
    retention: Duration,
) -> VmCleanup {
    let eligibility = vm_eligibility(&rec.outcome, verified_at(rec), now, retention);
    let items = owned(&rec.disks, &rec.created)
        .into_iter()
        .map(|o| {
            let verdict = match eligibility.reason() {
                Some(r) => Verdict::Keep(r),
                None => match seen(&o.id) {
                    Some(s) => judge(&o, journaled_state(&rec.cleanup, &o.id), &s, run_id),
                    None if journaled_state(&rec.cleanup, &o.id)
                        .is_some_and(CleanupState::is_done) =>
                    {
                        Verdict::Done
                    }
                    None => Verdict::Keep("not observed".into()),
                },
            };
            Judged { owned: o, verdict }
        })
        .collect();
    VmCleanup {
        vm: rec.id.clone(),
        eligibility,
        items,
    }
}

/// The journaled state of `id` in a cleanup journal.
pub fn journaled_state(entries: &[CleanupEntry], id: &ResourceId) -> Option<CleanupState> {
    entries.iter().find(|e| &e.id == id).map(|e| e.state)
}

/// Sets the journaled state of `o` (adds the entry if new).
pub fn set_state(entries: &mut Vec<CleanupEntry>, o: &Owned, state: CleanupState, at: String) {
    match entries.iter_mut().find(|e| e.id == o.id) {
        Some(e) => {
            e.state = state;
            e.at = at;
        }
        None => entries.push(CleanupEntry {
            kind: o.kind,
            id: o.id.clone(),
            state,
            at,
        }),
    }
}

/// Owned resources of a record not yet cleaned (journaled done): what
/// `status` shows as left to clean. Empty for a VM that is not verified.
pub fn left_to_clean<'a>(
    outcome: &Outcome,
    disks: impl Iterator<Item = DiskRefs<'a>>,
    created: &[CreatedResource],
    cleanup: &[CleanupEntry],
) -> Vec<Owned> {
    if *outcome != Outcome::Verified {
        return Vec::new();
    }
    owned_of(disks, created)
        .into_iter()
        .filter(|o| !journaled_state(cleanup, &o.id).is_some_and(CleanupState::is_done))
        .collect()
}

/// The ADE key material a VM's journaled models name: what an operator may
/// retire (or must keep to read an original disk).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AdeKeys {
    /// Key vault resource ids (`KeyVaultResourceId`, `KekVaultResourceId`,
    /// the disks' `sourceVault.id`).
    pub vaults: Vec<String>,
    /// Key vault URLs (`KeyVaultURL`).
    pub vault_urls: Vec<String>,
    /// Key encryption key URLs (`KeyEncryptionKeyURL`, disk `keyUrl`).
    pub kek_urls: Vec<String>,
    /// Per source disk: the ADE secret URLs (`secretUrl`).
    pub disk_secrets: Vec<(ResourceId, String)>,
}

/// The ADE key material of a record: the ADE extension settings of the
/// journaled original VM model and the encryption settings of the journaled
/// source disk models.
pub fn ade_keys(rec: &VmRecord) -> AdeKeys {
    let mut k = AdeKeys::default();
    fn add(v: &mut Vec<String>, s: Option<&str>) {
        if let Some(s) = s.filter(|s| !s.is_empty())
            && !v.iter().any(|x| x.eq_ignore_ascii_case(s))
        {
            v.push(s.to_string());
        }
    }
    if let Some(m) = &rec.original_model {
        for e in VmModel::new(m).extensions().filter(is_ade_extension) {
            add(&mut k.vaults, e.setting("KeyVaultResourceId"));
            add(&mut k.vaults, e.setting("KekVaultResourceId"));
            add(&mut k.vault_urls, e.setting("KeyVaultURL"));
            add(&mut k.kek_urls, e.setting("KeyEncryptionKeyURL"));
        }
    }
    for d in &rec.disks {
        for (vault, url) in DiskModel::new(&d.source_model).properties().ade_key_refs() {
            add(&mut k.vaults, vault);
            if url.contains("/keys/") {
                add(&mut k.kek_urls, Some(url));
            } else if !k.disk_secrets.iter().any(|(_, u)| u == url) {
                k.disk_secrets.push((d.source.clone(), url.to_string()));
            }
        }
    }
    k
}

#[cfg(test)]
mod tests;
