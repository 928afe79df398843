//! `ade2eah bench copy`: downtime of one VM with a large, mostly allocated
//! disk under guest writes, ours (pre-copy + delta) against the baseline
//! procedure (everything copied while deallocated), both through the real
//! engine and client against the in-process emulator; plus bytes moved on a
//! sparse disk and raw copy throughput against the bandwidth cap.
//!
//! All durations are simulated seconds read from the emulator (downtime is
//! its per-VM "not running" clock). CPU and memory are the whole process's
//! (the emulator runs in it too), so they over-state the orchestrator.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::setup::{connect, ctrl_c_channel, emulator_run_meta, start_run};
use crate::cli::error::{CliError, Exit};
use crate::cli::settings::{BenchCopySettings, ConnSettings};
use crate::discovery::discover;
use crate::emulator::{self, AdeSpec, Emulator, EmulatorConfig, VmSpec};
use crate::engine::arm::ArmCloud;
use crate::engine::{Engine, EngineOptions, NoProgress};
use crate::step::{CopyPolicy, Outcome, VmRecord};

const GIB: u64 = 1 << 30;
const MIB: f64 = (1 << 20) as f64;

/// Process CPU seconds (user + system) and peak RSS in bytes, from /proc.
pub(super) fn cpu_and_peak() -> (f64, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024;
    (cpu, hwm)
}

pub(super) fn mean(r: emulator::SimRange) -> f64 {
    (r.min + r.max) / 2.0
}

pub(super) fn config(a: &BenchCopySettings) -> EmulatorConfig {
    // Decryption is not what this benchmark measures: make it quick.
    EmulatorConfig {
        time_scale: a.time_scale,
        seed: 11,
        decrypt_bytes_per_sec: 4.0 * GIB as f64,
        ..Default::default()
    }
}

/// Migrates one VM with `policy` in a fresh emulator; returns the VM's
/// downtime, its record, and the emulator (for more figures).
pub(super) async fn migrate(
    cfg: EmulatorConfig,
    spec: VmSpec,
    policy: CopyPolicy,
    nic_swap: bool,
) -> Result<(f64, VmRecord, Emulator), CliError> {
    let (mut vms, emu) = migrate_all(cfg, vec![spec], policy, nic_swap).await?;
    let (downtime, rec) = vms.remove(0);
    Ok((downtime, rec, emu))
}

/// Migrates the VMs of `specs` together (in parallel, as a run does) with
/// `policy` (and `--nic-swap` when `nic_swap`) in a fresh emulator;
/// returns each VM's downtime and record.
pub(super) async fn migrate_all(
    cfg: EmulatorConfig,
    specs: Vec<VmSpec>,
    policy: CopyPolicy,
    nic_swap: bool,
) -> Result<(Vec<(f64, VmRecord)>, Emulator), CliError> {
    let emu = emulator::start(cfg)
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let ids: Vec<_> = specs.into_iter().map(|s| emu.add_vm(s)).collect();
    let poll = Duration::from_secs_f64(0.01);
    let conn = ConnSettings::emulator(&emu.base_url(), poll)?;
    let cloud: ArmCloud = connect(&conn, None, poll).await?;
    let dir = tempfile::tempdir().map_err(|e| CliError::Failed(e.to_string()))?;
    let new = start_run(dir.path())?;
    let mut records: Vec<VmRecord> = discover(&cloud, &ids, &Default::default())
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    for r in &mut records {
        r.copy_policy = policy;
        if let Some(f) = r.facts.as_mut() {
            f.nic_swap = nic_swap;
        }
    }
    let meta = emulator_run_meta(&emu, poll, 1, ids.clone());
    let (journal, entries) = new.begin(&meta, &records)?;
    let engine = Engine::new(
        Arc::new(cloud),
        journal.clone(),
        meta.run_id.clone(),
        EngineOptions::new(poll),
        Arc::new(NoProgress),
        ctrl_c_channel(),
    );
    engine.run(entries).await?;
    let mut out = Vec::new();
    for vm in &ids {
        let rec = journal.get(vm)?;
        if rec.outcome != Outcome::Verified {
            return Err(CliError::Failed(format!(
                "benchmark VM ended {:?}",
                rec.outcome
            )));
        }
        out.push((emu.vm_offline_secs(vm).unwrap_or(f64::NAN), rec));
    }
    Ok((out, emu))
}

pub(super) fn spec(name: &str, gib: u64, allocated: f64, churn: f64) -> VmSpec {
    let mut s = VmSpec::windows(name, "rg-bench");
    s.ade = AdeSpec::WindowsOs;
    s.os_disk.size_gib = gib;
    s.os_disk.allocated_fraction = allocated;
    s.churn_bytes_per_sec = churn;
    s
}

/// Runs the benchmark and prints its figures.
pub async fn bench_copy(a: BenchCopySettings) -> Result<Exit, CliError> {
    if !a.matrix_sizes.is_empty() {
        return super::bench_copy_matrix::matrix(&a).await;
    }
    if a.small_disks {
        return super::bench_copy_matrix::small_disks(&a).await;
    }
    let cap = 60.0 * MIB; // Standard-HDD class upload cap up to 4 TiB (facts §9)
    let allocated = (a.disk_gib * GIB) as f64 * a.allocated;
    // Spread the requested writes over the first (full) round's duration at the cap.
    let churn = a.churn_gib * GIB as f64 / (allocated / cap);
    let (cpu0, _) = cpu_and_peak();
    let (ours, rec, _e1) = migrate(
        config(&a),
        spec("bench-ours", a.disk_gib, a.allocated, churn),
        super::bench_copy_matrix::policy(&a),
        a.nic_swap,
    )
    .await?;
    let (cpu1, peak) = cpu_and_peak();
    let base_policy = CopyPolicy {
        max_online_rounds: 0,
        ..CopyPolicy::default()
    };
    let (baseline, brec, _e2) = migrate(
        config(&a),
        spec("bench-base", a.disk_gib, a.allocated, churn),
        base_policy,
        false,
    )
    .await?;
    let disk = &rec.disks[0];
    let delta = disk
        .rounds
        .iter()
        .rev()
        .find(|r| r.offline)
        .map_or(0, |r| r.bytes);
    let d = emulator::Durations::default();
    let bound = mean(d.vm_deallocate) + delta as f64 / cap + mean(d.vm_create) + mean(d.vm_start);
    let moved_ours: u64 = disk.rounds.iter().map(|r| r.bytes).sum();
    let tib_copied = (moved_ours + brec.disks[0].bytes_copied) as f64 / (1u64 << 40) as f64;

    // Sparse disk: bytes moved per allocated byte (no churn).
    let sparse_gib = a.disk_gib.clamp(1, 64);
    let (_, srec, semu) = migrate(
        config(&a),
        spec("bench-sparse", sparse_gib, 0.3, 0.0),
        CopyPolicy::default(),
        false,
    )
    .await?;
    let sd = &srec.disks[0];
    let s_moved: u64 = sd.rounds.iter().map(|r| r.bytes).sum();
    let sparse_allocated = semu.disk_allocated_bytes(&sd.source).unwrap_or(0);
    // Throughput: the baseline copies everything while deallocated, so its
    // downtime minus the mean durations of its fixed steps is the copy time.
    let fixed = mean(d.vm_deallocate)
        + mean(d.vm_create)
        + mean(d.vm_start)
        + mean(d.vm_delete)
        + 4.0 * mean(d.access)
        + mean(d.disk_create);
    let base_bytes = brec.disks[0].bytes_copied as f64;
    let copy_secs = (baseline - fixed).max(1.0);
    let throughput = base_bytes / copy_secs;

    let figures = json!({
        "disk_gib": a.disk_gib,
        "allocated_fraction": a.allocated,
        "churn_gib_online": a.churn_gib,
        "time_scale": a.time_scale,
        "downtime_secs": ours,
        "baseline_downtime_secs": baseline,
        "lower_bound_secs": bound,
        "lower_bound_parts": {"deallocate": mean(d.vm_deallocate), "delta_at_cap": delta as f64 / cap, "create": mean(d.vm_create), "start": mean(d.vm_start)},
        "offline_delta_bytes": delta,
        "online_rounds": disk.rounds.iter().filter(|r| !r.offline).count(),
        "rounds": disk.rounds.iter().map(|r| json!({"number": r.number, "offline": r.offline, "bytes": r.bytes})).collect::<Vec<Value>>(),
        "downtime_vs_baseline": baseline / ours,
        "downtime_vs_bound": ours / bound,
        "bytes_per_allocated": if sparse_allocated > 0 { s_moved as f64 / sparse_allocated as f64 } else { f64::NAN },
        "sparse_disk_gib": sparse_gib,
        "throughput_bytes_per_sec": throughput,
        "throughput_vs_cap": throughput / cap,
        "cpu_secs_per_tib": (cpu1 - cpu0) / ((moved_ours as f64) / (1u64 << 40) as f64).max(1e-9),
        "peak_rss_bytes": peak,
        "tib_copied_total": tib_copied,
        "note": "CPU and RSS are the whole process, emulator included; durations are simulated seconds",
    });
    if a.json {
        println!("{figures}");
    } else {
        println!(
            "disk {} GiB, {:.0}% allocated, {} GiB written online (time scale {}x)",
            a.disk_gib,
            a.allocated * 100.0,
            a.churn_gib,
            a.time_scale
        );
        println!(
            "downtime ours {:.0} s | baseline {:.0} s | lower bound {:.0} s",
            ours, baseline, bound
        );
        println!(
            "downtime_vs_baseline {:.1}x | downtime_vs_bound {:.2} | offline delta {:.2} GiB after {} online round(s)",
            baseline / ours,
            ours / bound,
            delta as f64 / GIB as f64,
            figures["online_rounds"]
        );
        println!(
            "bytes_per_allocated {:.4} (sparse {} GiB disk) | throughput_vs_cap {:.2}",
            figures["bytes_per_allocated"].as_f64().unwrap_or(f64::NAN),
            sparse_gib,
            throughput / cap
        );
        println!(
            "CPU {:.1} s per TiB copied | peak RSS {} MiB (process, emulator included)",
            figures["cpu_secs_per_tib"].as_f64().unwrap_or(0.0),
            peak >> 20
        );
    }
    Ok(Exit::Done)
}
