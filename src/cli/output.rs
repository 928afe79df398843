//! Terminal output: live progress bars (indicatif, drawn only on a TTY) and
//! the result table / JSON status.

use std::collections::HashMap;
use std::sync::Mutex;

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::engine::Progress;
use crate::journal::RunMeta;
use crate::model::ResourceId;
use crate::step::{Outcome, Step, VmRecord};

/// Progress bars: one per VM showing its step, and under it one per disk
/// while a copy round runs (bytes of the round, rate, ETA).
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
    disks: Mutex<HashMap<(String, String), ProgressBar>>,
}

impl Bars {
    /// Creates an empty set of bars (hidden automatically when stderr is not a TTY).
    pub fn new() -> Self {
        Bars {
            multi: MultiProgress::new(),
            bars: Mutex::new(HashMap::new()),
            disks: Mutex::new(HashMap::new()),
        }
    }

    fn disk_bar(&self, vm: &ResourceId, disk: &str) -> ProgressBar {
        let parent = self.bar(vm);
        let mut disks = self.disks.lock().unwrap_or_else(|p| p.into_inner());
        disks
            .entry((vm.key(), disk.to_string()))
            .or_insert_with(|| {
                let pb = self.multi.insert_after(&parent, ProgressBar::new(0));
                pb.set_style(copy_style());
                pb.set_prefix(format!("  {disk}"));
                pb
            })
            .clone()
    }

    /// Removes the disk bars of `vm` (its copy round ended).
    fn clear_disks(&self, vm: &ResourceId) {
        let mut disks = self.disks.lock().unwrap_or_else(|p| p.into_inner());
        let key = vm.key();
        disks.retain(|(v, _), pb| {
            if *v == key {
                pb.finish_and_clear();
                false
            } else {
                true
            }
        });
    }

    fn bar(&self, vm: &ResourceId) -> ProgressBar {
        let mut bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        bars.entry(vm.key())
            .or_insert_with(|| {
                let pb = self.multi.add(ProgressBar::new(0));
                pb.set_style(step_style());
                pb.set_prefix(vm.name().to_string());
                pb.enable_steady_tick(std::time::Duration::from_millis(120));
                pb
            })
            .clone()
    }
}

impl Default for Bars {
    fn default() -> Self {
        Self::new()
    }
}

fn step_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner:.cyan} {prefix:18.bold} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn copy_style() -> ProgressStyle {
    ProgressStyle::with_template("  {prefix:40} [{bar:30.green/blue}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl Progress for Bars {
    fn step(&self, vm: &ResourceId, step: Step) {
        self.clear_disks(vm);
        let pb = self.bar(vm);
        pb.set_message(step.name().to_string());
    }

    fn copy(&self, vm: &ResourceId, disk: &str, done: u64, total: u64) {
        let pb = self.disk_bar(vm, disk);
        if pb.length() != Some(total) || done < pb.position() {
            // A new round.
            pb.set_length(total);
            pb.set_position(0);
            pb.reset_eta();
            pb.reset_elapsed();
        }
        pb.set_position(done.min(total));
    }

    fn finished(&self, vm: &ResourceId, outcome: &Outcome) {
        self.clear_disks(vm);
        let pb = self.bar(vm);
        pb.set_style(step_style());
        pb.finish_with_message(outcome.label().to_string());
    }
}

/// One VM as shown by `status --output json` and the run summary.
pub fn vm_json(rec: &VmRecord) -> Value {
    let (reason, next_action) = match &rec.outcome {
        Outcome::Skipped { reason } => (Some(reason.clone()), None),
        Outcome::Parked {
            reason,
            next_action,
        } => (Some(reason.clone()), Some(next_action.clone())),
        Outcome::InProgress | Outcome::Verified => (None, None),
    };
    json!({
        "id": rec.id,
        "name": rec.id.name(),
        "step": rec.step.name(),
        "outcome": rec.outcome.label(),
        "reason": reason,
        "next_action": next_action,
        "disks": rec.disks.iter().map(|d| json!({
            "role": d.role, "source": d.source, "target": d.target, "snapshot": d.snapshot,
            "size_bytes": d.source_size_bytes, "copied": d.copied, "bytes_copied": d.bytes_copied,
            "verified": d.verified,
            "rounds": d.rounds.iter().map(|r| json!({
                "number": r.number, "snapshot": r.snapshot, "offline": r.offline,
                "bytes": r.bytes, "done_upto": r.done_upto, "copied": r.copied,
                "percent": if d.source_size_bytes > 0 { (r.done_upto.min(d.source_size_bytes + 512) as f64 * 100.0 / (d.source_size_bytes + 512) as f64).round() } else { 0.0 },
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "created": rec.created,
        "open_sas": rec.open_sas,
        "history": rec.history.len(),
    })
}

/// The whole run as one JSON object.
pub fn status_json(meta: &RunMeta, records: &[VmRecord]) -> Value {
    let count = |label: &str| {
        records
            .iter()
            .filter(|r| r.outcome.label() == label)
            .count()
    };
    json!({
        "run_id": meta.run_id,
        "arm_endpoint": meta.arm_endpoint,
        "created_at": meta.created_at,
        "summary": {
            "total": records.len(),
            "verified": count("verified"),
            "skipped": count("skipped"),
            "parked": count("parked"),
            "in_progress": count("in-progress"),
        },
        "vms": records.iter().map(vm_json).collect::<Vec<_>>(),
    })
}

/// The run as a terminal table.
pub fn status_table(records: &[VmRecord]) -> String {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    t.set_header([
        "VM",
        "outcome",
        "step",
        "disks",
        "copied",
        "reason / next action",
    ]);
    for r in records {
        let copied: u64 = r.disks.iter().map(|d| d.bytes_copied).sum();
        let note = match &r.outcome {
            Outcome::Skipped { reason } => reason.clone(),
            Outcome::Parked {
                reason,
                next_action,
            } => format!("{reason} → {next_action}"),
            Outcome::Verified => "EAH on, running, new disks".to_string(),
            Outcome::InProgress => String::new(),
        };
        t.add_row([
            r.id.name().to_string(),
            r.outcome.label().to_string(),
            r.step.name().to_string(),
            r.disks.len().to_string(),
            human_bytes(copied),
            note,
        ]);
    }
    t.to_string()
}

/// Bytes in binary units.
pub fn human_bytes(b: u64) -> String {
    indicatif::BinaryBytes(b).to_string()
}
