//! The live view of a running run: per-VM step and per-disk copy figures
//! (bytes done of the round, rate, ETA), kept in memory by a [`Progress`]
//! wrapper and written to `live.json` in the journal directory twice a
//! second (write to a temporary file, then rename: a reader never sees half
//! a file).
//!
//! Why a file: the run holds the sled journal's exclusive lock, so `status`
//! cannot open the journal while it runs; it reads this view instead and
//! says so. The file holds ids, step names and numbers only (no SAS, no
//! token: nothing the engine's progress callbacks could leak).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::engine::Progress;
use crate::model::ResourceId;
use crate::step::{Outcome, Step};

/// File name of the live view inside the journal directory.
pub use crate::journal::state_dir::LIVE_FILE;

/// How often the view is written while something changed.
const WRITE_EVERY: Duration = Duration::from_millis(500);

/// The view as written to `live.json` (and read back by `status`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LiveView {
    /// Process id of the run writing it.
    pub pid: u32,
    /// When it was last written (RFC 3339).
    pub updated_at: String,
    /// True once the run ended (the journal is free again).
    pub finished: bool,
    /// VMs seen by this run so far, by id.
    pub vms: Vec<LiveVm>,
}

/// One VM in the live view.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LiveVm {
    /// ARM id.
    pub id: String,
    /// Current step.
    pub step: String,
    /// Outcome label (`in-progress` until it ends).
    pub outcome: String,
    /// Disks being copied or copied in this round.
    pub disks: Vec<LiveDisk>,
}

/// One disk's copy figures for its current round.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LiveDisk {
    /// Source disk name.
    pub disk: String,
    /// Bytes of the round done.
    pub done_bytes: u64,
    /// Bytes of the round's work.
    pub total_bytes: u64,
    /// Mean rate since the round started here (bytes per second).
    pub rate_bytes_per_sec: f64,
    /// Seconds left at that rate (`None` until a rate is known).
    pub eta_secs: Option<f64>,
}

#[derive(Default)]
struct DiskClock {
    done: u64,
    total: u64,
    started: Option<(Instant, u64)>,
    rate: f64,
}

#[derive(Default)]
struct VmState {
    step: String,
    outcome: String,
    disks: BTreeMap<String, DiskClock>,
}

#[derive(Default)]
struct State {
    vms: BTreeMap<String, (String, VmState)>,
    dirty: bool,
    finished: bool,
}

/// A [`Progress`] that forwards to `inner` (the bars) and keeps the view.
pub struct Live {
    inner: Arc<dyn Progress>,
    state: Mutex<State>,
    dir: PathBuf,
}

impl Live {
    /// Wraps `inner` and starts writing `dir/live.json` in the background
    /// until [`Live::finish`].
    pub fn start(dir: &Path, inner: Arc<dyn Progress>) -> Arc<Live> {
        let live = Arc::new(Live {
            inner,
            state: Mutex::new(State {
                dirty: true,
                ..Default::default()
            }),
            dir: dir.to_path_buf(),
        });
        let weak = Arc::downgrade(&live);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(WRITE_EVERY).await;
                let Some(live) = weak.upgrade() else { return };
                if live.lock().finished {
                    return;
                }
                live.write_if_dirty();
            }
        });
        live
    }

    /// Marks the run ended and writes the final view.
    pub fn finish(&self) {
        let mut st = self.lock();
        st.finished = true;
        st.dirty = true;
        drop(st);
        self.write_if_dirty();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The view now.
    pub fn view(&self) -> LiveView {
        let st = self.lock();
        LiveView {
            pid: std::process::id(),
            updated_at: crate::journal::now_rfc3339(),
            finished: st.finished,
            vms: st
                .vms
                .values()
                .map(|(id, v)| LiveVm {
                    id: id.clone(),
                    step: v.step.clone(),
                    outcome: v.outcome.clone(),
                    disks: v
                        .disks
                        .iter()
                        .map(|(name, d)| LiveDisk {
                            disk: name.clone(),
                            done_bytes: d.done,
                            total_bytes: d.total,
                            rate_bytes_per_sec: d.rate,
                            eta_secs: (d.rate > 0.0)
                                .then(|| d.total.saturating_sub(d.done) as f64 / d.rate),
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    fn write_if_dirty(&self) {
        {
            let mut st = self.lock();
            if !st.dirty {
                return;
            }
            st.dirty = false;
        }
        let view = self.view();
        let Ok(body) = serde_json::to_vec_pretty(&view) else {
            return;
        };
        // Best effort: the journal, not this view, is the record.
        let _ = crate::journal::state_dir::write_live(&self.dir, &body);
    }

    fn with_vm(&self, vm: &ResourceId, f: impl FnOnce(&mut VmState)) {
        let mut st = self.lock();
        let entry = st
            .vms
            .entry(vm.key())
            .or_insert_with(|| (vm.to_string(), VmState::default()));
        f(&mut entry.1);
        st.dirty = true;
    }
}

impl Progress for Live {
    fn step(&self, vm: &ResourceId, step: Step) {
        self.with_vm(vm, |v| {
            if v.step != step.name() {
                v.disks.clear();
            }
            v.step = step.name().to_string();
            v.outcome = Outcome::InProgress.label().to_string();
        });
        self.inner.step(vm, step);
    }

    fn copy(&self, vm: &ResourceId, disk: &str, done: u64, total: u64) {
        self.with_vm(vm, |v| {
            let d = v.disks.entry(disk.to_string()).or_default();
            let now = Instant::now();
            if d.total != total || done < d.done || d.started.is_none() {
                // A new round (or the first figure of this process).
                d.started = Some((now, done));
                d.rate = 0.0;
            } else if let Some((t0, d0)) = d.started {
                let secs = now.duration_since(t0).as_secs_f64();
                if secs > 0.0 {
                    d.rate = done.saturating_sub(d0) as f64 / secs;
                }
            }
            d.done = done;
            d.total = total;
        });
        self.inner.copy(vm, disk, done, total);
    }

    fn finished(&self, vm: &ResourceId, outcome: &Outcome) {
        self.with_vm(vm, |v| v.outcome = outcome.label().to_string());
        self.inner.finished(vm, outcome);
    }
}

/// Reads the live view of `dir`, if a run wrote one.
pub fn read(dir: &Path) -> Option<LiveView> {
    let body = crate::journal::state_dir::read_live(dir)?;
    serde_json::from_slice(&body).ok()
}

/// The live view as a terminal table.
pub fn table(view: &LiveView) -> String {
    use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    crate::report::width::fit(&mut t);
    t.set_header(["VM", "outcome", "step", "disk", "done", "rate", "eta"]);
    for vm in &view.vms {
        let name = vm.id.rsplit('/').next().unwrap_or(&vm.id).to_string();
        if vm.disks.is_empty() {
            t.add_row([
                name.clone(),
                vm.outcome.clone(),
                vm.step.clone(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ]);
        }
        for d in &vm.disks {
            t.add_row([
                name.clone(),
                vm.outcome.clone(),
                vm.step.clone(),
                d.disk.clone(),
                format!(
                    "{} / {}",
                    indicatif::BinaryBytes(d.done_bytes),
                    indicatif::BinaryBytes(d.total_bytes)
                ),
                format!("{}/s", indicatif::BinaryBytes(d.rate_bytes_per_sec as u64)),
                d.eta_secs
                    .map(|s| indicatif::HumanDuration(Duration::from_secs_f64(s)).to_string())
                    .unwrap_or_default(),
            ]);
        }
    }
    format!(
        "{t}\nlive view of the run in process {} (updated {}); the journal is locked by it\n",
        view.pid, view.updated_at
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::NoProgress;

    #[tokio::test]
    async fn the_view_has_rates_and_etas_and_is_written_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let live = Live::start(dir.path(), Arc::new(NoProgress));
        let vm = ResourceId::parse(
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/v",
        )
        .unwrap();
        live.step(&vm, Step::PreCopy);
        live.copy(&vm, "osdisk", 0, 1000);
        std::thread::sleep(Duration::from_millis(20));
        live.copy(&vm, "osdisk", 500, 1000);
        let v = live.view();
        let d = &v.vms[0].disks[0];
        assert_eq!((d.done_bytes, d.total_bytes), (500, 1000));
        assert!(d.rate_bytes_per_sec > 0.0);
        let eta = d.eta_secs.unwrap();
        assert!((eta - 500.0 / d.rate_bytes_per_sec).abs() < 1e-6);
        // A new round restarts the clock.
        live.copy(&vm, "osdisk", 0, 10);
        assert_eq!(live.view().vms[0].disks[0].rate_bytes_per_sec, 0.0);
        live.finished(&vm, &Outcome::Verified);
        live.finish();
        let back = read(dir.path()).expect("written");
        assert!(back.finished);
        assert_eq!(back.vms[0].outcome, "verified");
        assert!(!dir.path().join("live.json.tmp").exists());
        assert!(table(&back).contains("osdisk"));
    }
}
