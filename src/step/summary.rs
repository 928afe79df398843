//! Slim views of a [`VmRecord`], for code that must see every VM of a large
//! run without holding every full record (issue: < 64 MiB for 10,000 VMs).
//!
//! - [`VmEntry`]: the scheduler's index line (id, step, outcome, wave,
//!   history length). The engine and the wave executor keep one per VM and
//!   load the full record from the journal only while the VM is worked on.
//! - [`RecordSummary`]: what `status` and `report` render for one VM. It is
//!   deserialized straight from the journaled record JSON and skips the large
//!   fields (the original VM model, the disks' source models, the facts and
//!   the history lines, of which only the count and the last time are kept).

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::Step;
use super::cleanup::CleanupEntry;
use super::record::{CreatedResource, DiskPlan, DiskRole, Outcome, Round, VmRecord};
use super::reinstall::Carried;
use crate::model::ResourceId;

/// One VM's place in a run, without its large fields.
#[derive(Debug, Clone, PartialEq)]
pub struct VmEntry {
    /// The VM.
    pub id: ResourceId,
    /// Current step.
    pub step: Step,
    /// Standing in the run.
    pub outcome: Outcome,
    /// Lines in the record's history (grows whenever the VM is worked on).
    pub history_len: usize,
    /// 1-based wave of a planned run (set by the wave executor; `None` otherwise).
    pub wave: Option<usize>,
}

impl VmEntry {
    /// The index line of `rec` (no wave).
    pub fn of(rec: &VmRecord) -> Self {
        VmEntry {
            id: rec.id.clone(),
            step: rec.step,
            outcome: rec.outcome.clone(),
            history_len: rec.history.len(),
            wave: None,
        }
    }

    /// Whether the VM still needs work in this run.
    pub fn is_active(&self) -> bool {
        matches!(self.outcome, Outcome::InProgress)
    }
}

impl From<&RecordSummary> for VmEntry {
    fn from(s: &RecordSummary) -> Self {
        VmEntry {
            id: s.id.clone(),
            step: s.step,
            outcome: s.outcome.clone(),
            history_len: s.history.len,
            wave: None,
        }
    }
}

/// A [`DiskPlan`] without the source disk's model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskSummary {
    /// OS or data (with LUN).
    pub role: DiskRole,
    /// The original disk.
    pub source: ResourceId,
    /// `diskSizeBytes` of the source.
    pub source_size_bytes: u64,
    /// The backup snapshot.
    pub snapshot: ResourceId,
    /// The new disk.
    pub target: ResourceId,
    /// True once the target was sealed.
    pub copied: bool,
    /// Bytes moved into the target so far.
    pub bytes_copied: u64,
    /// The copy rounds.
    #[serde(default)]
    pub rounds: Vec<Round>,
    /// True once the target was compared with the final snapshot.
    #[serde(default)]
    pub verified: bool,
}

impl From<&DiskPlan> for DiskSummary {
    fn from(d: &DiskPlan) -> Self {
        DiskSummary {
            role: d.role,
            source: d.source.clone(),
            source_size_bytes: d.source_size_bytes,
            snapshot: d.snapshot.clone(),
            target: d.target.clone(),
            copied: d.copied,
            bytes_copied: d.bytes_copied,
            rounds: d.rounds.clone(),
            verified: d.verified,
        }
    }
}

/// The history of a record reduced to its length and its last time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryTail {
    /// Lines in the history.
    pub len: usize,
    /// `at` of the newest line.
    pub last_at: Option<String>,
}

impl<'de> Deserialize<'de> for HistoryTail {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct At {
            at: String,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = HistoryTail;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of history entries")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<HistoryTail, A::Error> {
                let mut tail = HistoryTail::default();
                while let Some(e) = seq.next_element::<At>()? {
                    tail.len += 1;
                    tail.last_at = Some(e.at);
                }
                Ok(tail)
            }
            // The journal's core record (schema v3) stores `{"len", "last_at"}`.
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<HistoryTail, A::Error> {
                #[derive(Deserialize)]
                struct Stored {
                    len: usize,
                    last_at: Option<String>,
                }
                let s = Stored::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(HistoryTail {
                    len: s.len,
                    last_at: s.last_at,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// Everything `status` and `report` show about one VM.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RecordSummary {
    /// The VM.
    pub id: ResourceId,
    /// Current step.
    pub step: Step,
    /// Standing in the run.
    pub outcome: Outcome,
    /// One entry per source disk, without the source models.
    pub disks: Vec<DiskSummary>,
    /// Every resource the run created.
    pub created: Vec<CreatedResource>,
    /// Disks on which the run may have left SAS access open.
    pub open_sas: Vec<ResourceId>,
    /// Failed attempts at the current step.
    pub attempts: u32,
    /// Length and newest time of the history.
    pub history: HistoryTail,
    /// Extensions and role assignments carried, and what is left to the operator.
    #[serde(default)]
    pub carried: Carried,
    /// The rollback in progress or done, if any.
    #[serde(default)]
    pub rollback: Option<super::rollback::RollbackState>,
    /// What cleanup deleted so far.
    #[serde(default)]
    pub cleanup: Vec<CleanupEntry>,
    /// Timed phases (see [`crate::step::timing`]).
    #[serde(default)]
    pub spans: Vec<crate::step::Span>,
}

impl RecordSummary {
    /// The summary of an in-memory record (equal to deserializing its JSON
    /// as a summary).
    pub fn of(rec: &VmRecord) -> Self {
        RecordSummary {
            id: rec.id.clone(),
            step: rec.step,
            outcome: rec.outcome.clone(),
            disks: rec.disks.iter().map(DiskSummary::from).collect(),
            created: rec.created.clone(),
            open_sas: rec.open_sas.clone(),
            attempts: rec.attempts,
            history: HistoryTail {
                len: rec.history.len(),
                last_at: rec.history.last().map(|h| h.at.clone()),
            },
            carried: rec.carried.clone(),
            rollback: rec.rollback.clone(),
            cleanup: rec.cleanup.clone(),
            spans: rec.spans.clone(),
        }
    }

    /// The owned resources of a verified VM that cleanup has not deleted yet.
    pub fn left_to_clean(&self) -> Vec<super::cleanup::Owned> {
        super::cleanup::left_to_clean(
            &self.outcome,
            self.disks.iter().map(|d| super::cleanup::DiskRefs {
                source: &d.source,
                snapshot: &d.snapshot,
                target: &d.target,
                rounds: &d.rounds,
                source_model: None,
            }),
            &self.created,
            &self.cleanup,
        )
    }

    /// The rollback's account for status and reports: what was restored,
    /// the state of ADE and what is left to clean (`null` without one).
    pub fn rollback_json(&self) -> serde_json::Value {
        let Some(rb) = &self.rollback else {
            return serde_json::Value::Null;
        };
        serde_json::json!({
            "step": rb.step.name(),
            "from": rb.from.name(),
            "reason": rb.reason,
            "restored": if rb.step == super::rollback::RollbackStep::Done { super::rollback::restored(rb) } else { Vec::new() },
            "ade": super::rollback::ade_note(rb),
            "left_to_clean": super::rollback::left_to_clean(&self.created),
            "unsealed": rb.unsealed,
        })
    }

    /// One line for a rolled-back VM: why, ADE, and how much is left to
    /// clean (the reason alone for other outcomes).
    pub fn rolled_back_note(&self) -> String {
        let reason = self.reason().unwrap_or_default();
        let Some(rb) = &self.rollback else {
            return reason.to_string();
        };
        format!(
            "rolled back: {reason}; original VM on its original disks; ADE {}; {} resource(s) left to clean",
            super::rollback::ade_note(rb),
            super::rollback::left_to_clean(&self.created).len()
        )
    }

    /// Bytes copied, all disks together.
    pub fn bytes_copied(&self) -> u64 {
        self.disks.iter().map(|d| d.bytes_copied).sum()
    }

    /// The reason of a skipped or parked VM.
    pub fn reason(&self) -> Option<&str> {
        match &self.outcome {
            Outcome::Skipped { reason }
            | Outcome::Parked { reason, .. }
            | Outcome::RolledBack { reason } => Some(reason),
            _ => None,
        }
    }
}

/// Deserializes only the index fields of a record's JSON.
pub fn entry_from_json(raw: &[u8]) -> Result<VmEntry, serde_json::Error> {
    #[derive(Deserialize)]
    struct Raw {
        id: ResourceId,
        step: Step,
        outcome: Outcome,
        history: HistoryTail,
    }
    let r: Raw = serde_json::from_slice(raw)?;
    Ok(VmEntry {
        id: r.id,
        step: r.step,
        outcome: r.outcome,
        history_len: r.history.len,
        wave: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step::{CreatedKind, Round};

    fn rich() -> VmRecord {
        let id = |n: &str| ResourceId::new("s", "rg", "Microsoft.Compute", "disks", n);
        let mut r = VmRecord::new(ResourceId::new(
            "s",
            "rg",
            "Microsoft.Compute",
            "virtualMachines",
            "vm-1",
        ));
        r.step = Step::FinalCopy;
        r.outcome = Outcome::Parked {
            reason: "r".into(),
            next_action: "n".into(),
        };
        r.original_model = Some(serde_json::json!({"big": "x".repeat(1000)}));
        r.disks.push(DiskPlan {
            role: DiskRole::Data { lun: 3 },
            source: id("src"),
            source_size_bytes: 1 << 30,
            source_model: serde_json::json!({"properties": {"x": [1, 2, 3]}}),
            snapshot: id("snap"),
            target: id("tgt"),
            copied: true,
            bytes_copied: 12345,
            rounds: vec![Round {
                done_upto: 77,
                bytes: 88,
                copied: true,
                ..Round::open(1, id("r1"), false)
            }],
            verified: true,
            rounds_opened: 1,
        });
        r.remember_created(CreatedKind::Snapshot, &id("snap"));
        r.sas_opened(&id("src"));
        r.attempts = 3;
        r.note("2026-01-01T00:00:00Z".into(), "intent", "a");
        r.note("2026-01-01T00:00:09Z".into(), "result", "b");
        r
    }

    #[test]
    fn summary_and_entry_from_json_equal_those_of_the_record() {
        for r in [rich(), VmRecord::new(rich().id)] {
            let raw = serde_json::to_vec(&r).unwrap();
            let s: RecordSummary = serde_json::from_slice(&raw).unwrap();
            assert_eq!(s, RecordSummary::of(&r));
            assert_eq!(entry_from_json(&raw).unwrap(), VmEntry::of(&r));
            assert_eq!(VmEntry::from(&s), VmEntry::of(&r));
        }
        assert_eq!(
            RecordSummary::of(&rich()).history.last_at.as_deref(),
            Some("2026-01-01T00:00:09Z")
        );
    }

    #[test]
    fn malformed_records_are_refused() {
        for raw in [
            &br#"{"id": 42, "step": "nope"}"#[..],
            br#"{"id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/v", "step": "snapshot", "outcome": {"state": "in-progress"}, "history": 3}"#,
        ] {
            assert!(entry_from_json(raw).is_err());
            assert!(serde_json::from_slice::<RecordSummary>(raw).is_err());
        }
    }
}
