//! `ade2eah bench fleet`: a generated fleet migrated in the in-process
//! emulator (Azure's throttling limits on) through the real wave executor,
//! with the makespan compared to the lower bound that the concurrency cap
//! and the throttling budgets set (docs/performance.md), ARM requests per VM,
//! 429s, CPU, peak RSS, and the memory of a 10,000-record journal (measured in
//! a child process: `bench fleet --journal-probe DIR`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::fleet_args::BenchFleetArgs;
use super::{CliError, Exit};
use crate::azure::{ArmClient, AuthMode, AzureConfig, Cloud};
use crate::emulator::fleetgen::{FleetGen, generate};
use crate::emulator::{EmulatorConfig, SimClock};
use crate::engine::arm::ArmCloud;
use crate::engine::waves::{FrozenPlan, FrozenWave, WaveRun};
use crate::engine::{EngineOptions, Progress};
use crate::journal::{Journal, RunMeta, SCHEMA_VERSION, now_rfc3339};
use crate::model::ResourceId;
use crate::step::{Outcome, Step, VmRecord};

/// Simulated start and end of each VM's migration.
struct Timing {
    clock: SimClock,
    spans: Mutex<HashMap<String, (f64, Option<f64>)>>,
}

impl Progress for Timing {
    fn step(&self, vm: &ResourceId, _: Step) {
        let now = self.clock.now();
        self.spans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(vm.key())
            .or_insert((now, None));
    }
    fn copy(&self, _: &ResourceId, _: &str, _: u64, _: u64) {}
    fn finished(&self, vm: &ResourceId, _: &Outcome) {
        let now = self.clock.now();
        let mut s = self.spans.lock().unwrap_or_else(|p| p.into_inner());
        let e = s.entry(vm.key()).or_insert((now, None));
        e.1 = Some(now);
    }
}

/// (utime + stime seconds, VmHWM bytes, VmRSS bytes) of this process.
pub fn self_usage() -> (f64, u64, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the `(comm)`: state is field 3; utime 14, stime 15.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = 100.0; // USER_HZ on Linux
    let cpu = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
            * 1024
    };
    (cpu / tick, kib("VmHWM:"), kib("VmRSS:"))
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// The child side of the journal measurement: open, read every record,
/// render the status (as `status --output json` does), print the memory.
fn journal_probe(dir: &Path) -> Result<Exit, CliError> {
    let (_, hwm0, rss0) = self_usage();
    let started = Instant::now();
    let journal = Journal::open(dir)?;
    let meta = journal.require_meta()?;
    let records = journal.records()?;
    let text = super::output::status_json(&meta, &records).to_string();
    let secs = started.elapsed().as_secs_f64();
    let (cpu, hwm, rss) = self_usage();
    println!(
        "{}",
        json!({"records": records.len(), "status_json_bytes": text.len(),
            "baseline_rss_bytes": rss0, "baseline_hwm_bytes": hwm0,
            "rss_bytes": rss, "peak_rss_bytes": hwm, "secs": secs, "cpu_secs": cpu})
    );
    Ok(Exit::Done)
}

/// Writes `n` records cloned (renamed) from `done` into a fresh journal in
/// `dir`, then measures `records()` + status in a child process.
fn journal_memory(dir: &Path, done: &[VmRecord], n: usize, sub: &str) -> Result<Value, CliError> {
    let fail = |e: String| CliError::Failed(e);
    let mut records = Vec::with_capacity(n);
    for i in 0..n {
        let src = &done[i % done.len()];
        let mut r = src.clone();
        let id = ResourceId::new(
            sub,
            src.id.resource_group(),
            "Microsoft.Compute",
            "virtualMachines",
            &format!("vm-j{i:05}"),
        );
        r.id = id;
        records.push(r);
    }
    let bytes: usize = records
        .iter()
        .map(|r| serde_json::to_vec(r).map(|v| v.len()).unwrap_or(0))
        .sum();
    {
        let journal = Journal::open(dir)?;
        let meta = RunMeta {
            schema_version: SCHEMA_VERSION,
            run_id: uuid::Uuid::now_v7().to_string(),
            created_at: now_rfc3339(),
            tool_version: env!("CARGO_PKG_VERSION").into(),
            arm_endpoint: "http://127.0.0.1:1".into(),
            cloud: "public".into(),
            subscription: sub.into(),
            auth: "none".into(),
            poll_interval_secs: 15.0,
            max_parallel: 50,
            vms: records.iter().map(|r| r.id.clone()).collect(),
        };
        journal.init_run(&meta, &records)?;
        journal.flush()?;
    }
    drop(records);
    // The binary may have been rebuilt meanwhile (`/proc/self/exe` then
    // reads "... (deleted)"): fall back to the path it was started as.
    let exe = std::env::current_exe()
        .ok()
        .filter(|p| p.exists())
        .or_else(|| std::env::args_os().next().map(std::path::PathBuf::from))
        .ok_or_else(|| fail("cannot find the ade2eah binary".into()))?;
    let out = std::process::Command::new(exe)
        .args(["bench", "fleet", "--journal-probe"])
        .arg(dir)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| fail(format!("cannot run the journal probe: {e}")))?;
    let mut v: Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        fail(format!(
            "journal probe answered {:?}: {e}",
            String::from_utf8_lossy(&out.stdout)
        ))
    })?;
    v["record_json_bytes"] = json!(bytes);
    Ok(v)
}

/// `ade2eah bench fleet`.
pub async fn run(a: BenchFleetArgs) -> Result<Exit, CliError> {
    if let Some(dir) = &a.journal_probe {
        return journal_probe(dir);
    }
    let bad = CliError::BadInput;
    if a.vms == 0 || a.max_parallel == 0 {
        return Err(bad("--vms and --max-parallel must be at least 1".into()));
    }
    if !(a.time_scale.is_finite() && a.time_scale > 0.0) {
        return Err(bad("--time-scale must be positive".into()));
    }
    let fail = |e: String| CliError::Failed(e);
    let wall = Instant::now();
    let (cpu0, _, _) = self_usage();
    let mut cfg = EmulatorConfig {
        time_scale: a.time_scale,
        seed: a.seed,
        ..Default::default()
    };
    cfg.throttle = crate::emulator::throttle::ThrottleConfig::azure();
    cfg.throttle.enabled = !a.no_throttle;
    let emu = crate::emulator::start(cfg)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let fleet = generate(&FleetGen {
        vms: a.vms,
        resource_groups: 10,
        seed: a.seed,
        os_disk_gib: 1,
    });
    // Small disks: 1 GiB each with ~2 MiB of data (the copy moves real
    // bytes through the in-process blob store).
    let ids: Vec<ResourceId> = fleet
        .iter()
        .map(|g| {
            let mut spec = g.spec.clone();
            spec.os_disk.allocated_fraction = a.allocated_fraction;
            for d in &mut spec.data_disks {
                d.allocated_fraction = a.allocated_fraction;
            }
            emu.add_vm(spec)
        })
        .collect();
    let sub = emu.subscription().to_string();

    // The client: real Azure settings, times scaled to the emulator.
    let url = url::Url::parse(&emu.base_url()).map_err(|e| fail(e.to_string()))?;
    let mut acfg = AzureConfig::new(url, Cloud::Public);
    let poll = Duration::from_secs_f64(15.0 / a.time_scale);
    acfg.poll_interval = poll;
    acfg.retry.base_delay = acfg.retry.base_delay.min(poll);
    acfg.throttle.time_scale = a.time_scale;
    acfg.throttle.enabled = !a.no_client_throttle;
    let tokens = crate::azure::token_source(AuthMode::None, &acfg)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let client = ArmClient::new(acfg, tokens).map_err(|e| fail(e.to_string()))?;
    let cloud = ArmCloud::new(client.clone());

    // Plan (GETs only), then one wave of every eligible VM.
    let plan_started = emu.sim_now_secs();
    let plan_wall = Instant::now();
    let (vms, _) = crate::plan::discover::classify_all(&cloud, &ids, false)
        .await
        .map_err(|e| fail(format!("{e:?}")))?;
    let plan_sim = emu.sim_now_secs() - plan_started;
    let plan_wall = plan_wall.elapsed().as_secs_f64();
    let plan_requests = client.stats().arm_requests;
    let eligible: Vec<&crate::plan::PlannedVm> = vms.iter().filter(|v| v.eligible).collect();
    let records: Vec<VmRecord> = vms
        .iter()
        .map(|v| {
            let mut r = v.record.clone();
            if !v.eligible && r.is_active() {
                r.outcome = Outcome::Skipped {
                    reason: "not eligible".into(),
                };
            }
            r
        })
        .collect();
    let frozen = FrozenPlan {
        source: "bench".into(),
        fingerprint: String::new(),
        waves: vec![FrozenWave {
            name: "all".into(),
            target: "100%".into(),
            max_parallel: a.max_parallel,
            approval: false,
            soak_secs: 0,
        }],
        assignment: eligible.iter().map(|v| (v.id.key(), 1)).collect(),
        max_parallel: a.max_parallel,
        failure_budget: None,
        failure_scope: "cumulative".into(),
    };
    let tmp = tempfile::tempdir().map_err(|e| fail(e.to_string()))?;
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).map_err(|e| fail(e.to_string()))?;
    let journal = Arc::new(Journal::open(&state)?);
    let meta = RunMeta {
        schema_version: SCHEMA_VERSION,
        run_id: uuid::Uuid::now_v7().to_string(),
        created_at: now_rfc3339(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        arm_endpoint: emu.base_url(),
        cloud: "public".into(),
        subscription: sub.clone(),
        auth: "none".into(),
        poll_interval_secs: poll.as_secs_f64(),
        max_parallel: a.max_parallel,
        vms: records.iter().map(|r| r.id.clone()).collect(),
    };
    journal.init_run(&meta, &records)?;
    frozen.save(&state).map_err(|e| fail(e.to_string()))?;
    let timing = Arc::new(Timing {
        clock: emu.clock(),
        spans: Mutex::new(HashMap::new()),
    });
    let (_tx, cancel) = tokio::sync::watch::channel(false);
    let mut opts = EngineOptions::new(poll);
    opts.lease_ttl = journal.lease_meta()?.ttl();
    let run = WaveRun {
        cloud: Arc::new(cloud),
        journal: journal.clone(),
        dir: state.clone(),
        run_id: meta.run_id.clone(),
        opts,
        progress: timing.clone(),
        cancel,
    };
    let before = client.stats();
    let log_before = emu.requests().len();
    let t0 = emu.sim_now_secs();
    let run_wall = Instant::now();
    let (done, stop) = run.execute(&frozen, records).await?;
    let makespan = emu.sim_now_secs() - t0;
    let run_wall = run_wall.elapsed().as_secs_f64();
    journal.flush()?;
    let after = client.stats();
    let log = emu.requests();
    let log = &log[log_before.min(log.len())..];
    let arm: Vec<_> = log
        .iter()
        .filter(|r| r.path.starts_with("/subscriptions/"))
        .collect();
    let count = |m: &[&str]| {
        arm.iter()
            .filter(|r| m.contains(&r.method.as_str()))
            .count() as f64
    };
    let (reads, writes, deletes) = (
        count(&["GET", "HEAD"]),
        count(&["PUT", "PATCH", "POST"]),
        count(&["DELETE"]),
    );
    let migrated = done
        .iter()
        .filter(|r| r.outcome == Outcome::Verified)
        .count();
    let parked = done
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Parked { .. }))
        .count();
    let spans: Vec<f64> = timing
        .spans
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .filter_map(|(s, e)| e.map(|e| (e - s).max(0.0)))
        .collect();
    let work: f64 = spans.iter().sum();
    let longest = spans.iter().copied().fold(0.0, f64::max);
    let p = a.max_parallel.min(eligible.len().max(1)) as f64;
    let t = crate::emulator::throttle::ThrottleConfig::azure();
    let budget = |n: f64, l: crate::emulator::throttle::Limit| ((n - l.burst) / l.per_sec).max(0.0);
    let bound_concurrency = (work / p).max(longest);
    let bound_reads = budget(reads, t.arm_reads);
    let bound_writes = budget(writes, t.arm_writes);
    let bound_deletes = budget(deletes, t.arm_deletes);
    let bound = bound_concurrency
        .max(bound_reads)
        .max(bound_writes)
        .max(bound_deletes);
    let arm_requests = after.arm_requests - before.arm_requests;
    let (cpu1, hwm, rss) = self_usage();
    let journal_mem = if a.journal_records > 0 && !done.is_empty() {
        let jdir = tmp.path().join("journal-10k");
        std::fs::create_dir_all(&jdir).map_err(|e| fail(e.to_string()))?;
        let migrated_recs: Vec<VmRecord> = done
            .iter()
            .filter(|r| r.outcome == Outcome::Verified)
            .cloned()
            .collect();
        let src = if migrated_recs.is_empty() {
            &done
        } else {
            &migrated_recs
        };
        Some(journal_memory(&jdir, src, a.journal_records, &sub)?)
    } else {
        None
    };
    let report = json!({
        "vms": a.vms,
        "eligible": eligible.len(),
        "migrated": migrated,
        "parked": parked,
        "stop": format!("{stop:?}"),
        "max_parallel": a.max_parallel,
        "time_scale": a.time_scale,
        "throttling": !a.no_throttle,
        "client_throttle": !a.no_client_throttle,
        "plan": {"sim_secs": plan_sim, "wall_secs": plan_wall, "arm_requests": plan_requests},
        "makespan_sim_secs": makespan,
        "lower_bound_sim_secs": bound,
        "lower_bound": {
            "concurrency": bound_concurrency,
            "vm_work_sim_secs": work,
            "longest_vm_sim_secs": longest,
            "mean_vm_sim_secs": if spans.is_empty() { 0.0 } else { work / spans.len() as f64 },
            "arm_reads": bound_reads,
            "arm_writes": bound_writes,
            "arm_deletes": bound_deletes,
        },
        "makespan_over_bound": if bound > 0.0 { makespan / bound } else { 0.0 },
        "arm_requests": arm_requests,
        "arm_requests_per_vm": arm_requests as f64 / eligible.len().max(1) as f64,
        "arm_reads": reads, "arm_writes": writes, "arm_deletes": deletes,
        "lro_polls": after.lro_polls - before.lro_polls,
        "retries": after.retries - before.retries,
        "throttled_429_received": after.throttled - before.throttled,
        "throttled_429_answered": emu.throttled(),
        "wall_secs": wall.elapsed().as_secs_f64(),
        "run_wall_secs": run_wall,
        "cpu_secs": cpu1 - cpu0,
        "peak_rss_bytes": hwm,
        "rss_bytes": rss,
        "journal": journal_mem,
    });
    emu.shutdown().await;
    if a.json {
        println!("{report}");
    } else {
        let r = &report;
        let f = |k: &str| r[k].as_f64().unwrap_or(0.0);
        println!(
            "fleet: {} VMs ({} eligible), {} migrated, {} parked, {} at a time, time scale {}x, throttling {}",
            a.vms,
            eligible.len(),
            migrated,
            parked,
            a.max_parallel,
            a.time_scale,
            if a.no_throttle {
                "off"
            } else {
                "on (Azure limits)"
            }
        );
        println!(
            "makespan {:.2} h simulated | lower bound {:.2} h (concurrency {:.2} h, ARM reads {:.2} h, writes {:.2} h, deletes {:.2} h) | ratio {:.3}",
            makespan / 3600.0,
            bound / 3600.0,
            bound_concurrency / 3600.0,
            bound_reads / 3600.0,
            bound_writes / 3600.0,
            bound_deletes / 3600.0,
            f("makespan_over_bound")
        );
        println!(
            "ARM requests {} ({:.1} per VM; {} reads, {} writes, {} deletes) | 429 received {} | retries {}",
            arm_requests,
            f("arm_requests_per_vm"),
            reads,
            writes,
            deletes,
            after.throttled - before.throttled,
            after.retries - before.retries
        );
        println!(
            "orchestrator + emulator (one process): CPU {:.1} s, peak RSS {:.1} MiB, wall {:.1} s",
            f("cpu_secs"),
            mib(hwm),
            f("wall_secs")
        );
        if let Some(j) = &report["journal"].as_object() {
            let g = |k: &str| j.get(k).and_then(Value::as_u64).unwrap_or(0);
            println!(
                "journal of {} records: records() + status in a child: peak RSS {:.1} MiB (baseline {:.1} MiB)",
                g("records"),
                mib(g("peak_rss_bytes")),
                mib(g("baseline_hwm_bytes"))
            );
        }
    }
    Ok(if migrated == eligible.len() {
        Exit::Done
    } else {
        Exit::Incomplete
    })
}
