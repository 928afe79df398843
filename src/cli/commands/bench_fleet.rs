//! `ade2eah bench fleet`: a generated fleet migrated in the in-process
//! emulator (Azure's throttling limits on) through the real wave executor,
//! with the makespan compared to the lower bound that the concurrency cap
//! and the throttling budgets set (docs/performance.md), ARM requests per VM,
//! 429s, CPU, peak RSS, and the memory and time of `status`, `report` and
//! `resume` on a 10,000-record journal (each measured in a child process:
//! `bench fleet --journal-probe DIR --probe WHAT`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::setup::{connect, emulator_run_meta, planned_records, start_run};
use crate::cli::error::{CliError, Exit};
use crate::cli::settings::{
    BenchFleetSettings, ClientThrottle, ConnSettings, DEFAULT_POLL_SECS, FleetBench, JournalProbe,
    Output, PROBES, ReportFormat, ReportSettings, ResumeSettings, StatusSettings,
    default_copy_options,
};
use crate::emulator::fleetgen::{FleetGen, generate};
use crate::emulator::{EmulatorConfig, SimClock};
use crate::engine::waves::WaveRun;
use crate::engine::{EngineOptions, Progress};
use crate::journal::{Journal, RunMeta};
use crate::model::ResourceId;
use crate::plan::{FrozenPlan, FrozenWave};
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

/// The child side of the journal measurement: runs one real command on the
/// journal in `dir` in this process (its output on stdout, as the command
/// prints it), then prints one JSON line of this process's memory and time.
async fn journal_probe(dir: &Path, probe: JournalProbe) -> Result<Exit, CliError> {
    let (_, hwm0, rss0) = self_usage();
    let name = probe.name();
    if matches!(probe, JournalProbe::Open | JournalProbe::Index) {
        let started = Instant::now();
        let j = Journal::open(dir)?;
        let (_, hwm_open, _) = self_usage();
        let n = match probe {
            JournalProbe::Index => j.index()?.len(),
            _ => 0,
        };
        let (cpu, hwm, rss) = self_usage();
        println!(
            "{}",
            json!({"probe": name, "entries": n, "open_hwm_bytes": hwm_open, "baseline_hwm_bytes": hwm0,
                "rss_bytes": rss, "peak_rss_bytes": hwm, "secs": started.elapsed().as_secs_f64(), "cpu_secs": cpu})
        );
        return Ok(Exit::Done);
    }
    let state = dir.to_path_buf();
    let report = |format| ReportSettings {
        state: state.clone(),
        format,
        html: None,
    };
    let started = Instant::now();
    let exit = match probe {
        JournalProbe::StatusJson => super::status::status(StatusSettings {
            state: state.clone(),
            output: Output::Json,
        })?,
        JournalProbe::ReportMarkdown => super::report::report(report(ReportFormat::Markdown))?,
        JournalProbe::ReportJson => super::report::report(report(ReportFormat::Json))?,
        JournalProbe::Resume => {
            let fut: std::pin::Pin<Box<dyn std::future::Future<Output = _>>> =
                Box::pin(super::resume::resume(ResumeSettings {
                    conn: ConnSettings::journaled(),
                    state: state.clone(),
                    max_parallel: None,
                    break_lease: false,
                    copy: default_copy_options(),
                    output: Output::Json,
                }));
            fut.await?
        }
        JournalProbe::Open | JournalProbe::Index => unreachable!("answered above"),
    };
    let secs = started.elapsed().as_secs_f64();
    let (cpu, hwm, rss) = self_usage();
    use std::io::Write;
    let _ = std::io::stdout().flush();
    println!(
        "{}",
        json!({"probe": name, "exit": exit as i32,
            "baseline_rss_bytes": rss0, "baseline_hwm_bytes": hwm0,
            "rss_bytes": rss, "peak_rss_bytes": hwm, "secs": secs, "cpu_secs": cpu})
    );
    Ok(Exit::Done)
}

/// The running binary (which may have been rebuilt meanwhile:
/// `/proc/self/exe` then reads "... (deleted)"; fall back to the path it was
/// started as).
fn own_exe() -> Result<std::path::PathBuf, CliError> {
    std::env::current_exe()
        .ok()
        .filter(|p| p.exists())
        .or_else(|| std::env::args_os().next().map(std::path::PathBuf::from))
        .ok_or_else(|| CliError::Failed("cannot find the ade2eah binary".into()))
}

/// Runs `bench fleet --journal-probe DIR --probe WHAT` with `exe` in a child
/// process and returns its figures, plus `output_bytes` (what the command
/// printed) and `wall_secs` (the child's whole life, startup included).
pub fn run_probe(exe: &Path, dir: &Path, probe: &str) -> Result<Value, CliError> {
    let fail = |e: String| CliError::Failed(e);
    let started = Instant::now();
    let out = std::process::Command::new(exe)
        .args(["bench", "fleet", "--journal-probe"])
        .arg(dir)
        .args(["--probe", probe])
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| fail(format!("cannot run the journal probe: {e}")))?;
    let wall = started.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out.stdout);
    let body = text.trim_end_matches('\n');
    let (printed, last) = body.rsplit_once('\n').unwrap_or(("", body));
    let mut v: Value = serde_json::from_str(last).map_err(|e| {
        fail(format!(
            "journal probe {probe} exited {:?} and answered {:?}: {e}",
            out.status.code(),
            last.chars().take(400).collect::<String>()
        ))
    })?;
    v["output_bytes"] = json!(printed.len() + 1);
    v["wall_secs"] = json!(wall);
    Ok(v)
}

/// Writes `n` records cloned (renamed) from `done` into a fresh journal in
/// `dir`, one at a time, then runs each of [`PROBES`] on it in its own child
/// process. The figures of `status-json` are also at the top level.
fn journal_memory(dir: &Path, done: &[VmRecord], n: usize, sub: &str) -> Result<Value, CliError> {
    let bytes = std::cell::Cell::new(0usize);
    let ids: Vec<ResourceId> = (0..n)
        .map(|i| {
            let src = &done[i % done.len()];
            ResourceId::new(
                sub,
                src.id.resource_group(),
                "Microsoft.Compute",
                "virtualMachines",
                &format!("vm-j{i:05}"),
            )
        })
        .collect();
    let fill_started = Instant::now();
    {
        let journal = start_run(dir)?.journal().clone();
        let meta = RunMeta::new(
            "http://127.0.0.1:1",
            "public",
            "none",
            vec![sub.into()],
            Duration::from_secs_f64(DEFAULT_POLL_SECS),
            50,
            ids.clone(),
        );
        let records = ids.iter().enumerate().map(|(i, id)| {
            let mut r = done[i % done.len()].clone();
            r.id = id.clone();
            bytes.set(bytes.get() + serde_json::to_vec(&r).map(|v| v.len()).unwrap_or(0));
            r
        });
        journal.init_run(&meta, records)?;
        journal.flush()?;
    }
    let fill_secs = fill_started.elapsed().as_secs_f64();
    let exe = own_exe()?;
    let mut v = json!({"records": n, "record_json_bytes": bytes.get(), "fill_secs": fill_secs});
    for probe in PROBES {
        let p = run_probe(&exe, dir, probe)?;
        if probe == "status-json" {
            for k in [
                "peak_rss_bytes",
                "rss_bytes",
                "baseline_rss_bytes",
                "baseline_hwm_bytes",
                "secs",
                "cpu_secs",
            ] {
                v[k] = p[k].clone();
            }
            v["status_json_bytes"] = p["output_bytes"].clone();
        }
        v[probe.replace('-', "_")] = p;
    }
    Ok(v)
}

/// `ade2eah bench fleet`.
pub async fn bench_fleet(s: BenchFleetSettings) -> Result<Exit, CliError> {
    match s {
        BenchFleetSettings::Probe { dir, probe } => journal_probe(&dir, probe).await,
        BenchFleetSettings::Run(a) => run(a).await,
    }
}

async fn run(a: FleetBench) -> Result<Exit, CliError> {
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
        ..Default::default()
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
    let poll = Duration::from_secs_f64(DEFAULT_POLL_SECS / a.time_scale);
    let mut conn = ConnSettings::emulator(&emu.base_url(), poll)?;
    conn.throttle = Some(ClientThrottle {
        time_scale: a.time_scale,
        enabled: !a.no_client_throttle,
    });
    let cloud = connect(&conn, None, poll).await?;
    let client = cloud.client().clone();

    // Plan (GETs only), then one wave of every eligible VM.
    let plan_started = emu.sim_now_secs();
    let plan_wall = Instant::now();
    let (vms, _) = crate::discovery::classify_all(&cloud, &ids, false, &Default::default())
        .await
        .map_err(|e| fail(format!("{e:?}")))?;
    let plan_sim = emu.sim_now_secs() - plan_started;
    let plan_wall = plan_wall.elapsed().as_secs_f64();
    let plan_requests = client.stats().arm_requests;
    let eligible: Vec<&crate::plan::PlannedVm> = vms.iter().filter(|v| v.eligible).collect();
    let records = planned_records(&vms, "not eligible");
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
        findings: Vec::new(),
    };
    let tmp = tempfile::tempdir().map_err(|e| fail(e.to_string()))?;
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).map_err(|e| fail(e.to_string()))?;
    let new = start_run(&state)?;
    let vm_ids = records.iter().map(|r| r.id.clone()).collect();
    let meta = emulator_run_meta(&emu, poll, a.max_parallel, vm_ids);
    let (journal, entries) = new.begin(&meta, &records)?;
    drop(records);
    crate::journal::state_dir::save_plan(&state, &frozen).map_err(|e| fail(e.to_string()))?;
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
    let (done, stop) = run.execute(&frozen, entries).await?;
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
    let downtime = downtime_vs_estimate(&emu, &eligible, &done);
    let (cpu1, hwm, rss) = self_usage();
    let journal_mem = if a.journal_records > 0 && !done.is_empty() {
        let jdir = tmp.path().join("journal-10k");
        std::fs::create_dir_all(&jdir).map_err(|e| fail(e.to_string()))?;
        let verified = done.iter().any(|r| r.outcome == Outcome::Verified);
        let src = done
            .iter()
            .filter(|r| !verified || r.outcome == Outcome::Verified)
            .map(|r| journal.get(&r.id))
            .collect::<Result<Vec<VmRecord>, _>>()?;
        Some(journal_memory(&jdir, &src, a.journal_records, &sub)?)
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
        "downtime": downtime,
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
        let d = &report["downtime"];
        let g = |k: &str| d[k].as_f64().unwrap_or(0.0);
        println!(
            "downtime per VM (simulated): measured mean {:.0} s (max {:.0} s) vs plan estimate mean {:.0} s | measured/estimated {:.2} ({} VMs)",
            g("measured_mean_secs"),
            g("measured_max_secs"),
            g("estimated_mean_secs"),
            g("measured_over_estimated"),
            d["vms"]
        );
        println!(
            "orchestrator + emulator (one process): CPU {:.1} s, peak RSS {:.1} MiB, wall {:.1} s",
            f("cpu_secs"),
            mib(hwm),
            f("wall_secs")
        );
        if let Some(j) = report["journal"].as_object() {
            let g = |k: &str| j.get(k).and_then(Value::as_u64).unwrap_or(0);
            println!(
                "journal of {} records ({:.0} MB of JSON, written in {:.1} s), each command in its own child process:",
                g("records"),
                g("record_json_bytes") as f64 / 1e6,
                j.get("fill_secs").and_then(Value::as_f64).unwrap_or(0.0)
            );
            for probe in PROBES {
                let p = &j[&probe.replace('-', "_")];
                let u = |k: &str| p[k].as_u64().unwrap_or(0);
                let f = |k: &str| p[k].as_f64().unwrap_or(0.0);
                println!(
                    "  {probe:<16} peak RSS {:.1} MiB (RSS at exit {:.1} MiB, baseline {:.1} MiB) | {:.2} s ({:.2} s CPU) | {} bytes out",
                    mib(u("peak_rss_bytes")),
                    mib(u("rss_bytes")),
                    mib(u("baseline_hwm_bytes")),
                    f("secs"),
                    f("cpu_secs"),
                    u("output_bytes")
                );
            }
        }
    }
    Ok(if migrated == eligible.len() {
        Exit::Done
    } else {
        Exit::Incomplete
    })
}

/// The plan's downtime estimate ([`crate::plan::Estimate::model`]) beside
/// the emulator's measured downtime (simulated seconds the VM was not
/// running) of every verified VM that was running before the run (a VM
/// stopped beforehand was "down" all along). The estimate assumes no guest
/// writes: the generated fleet's guests write nothing
/// (`VmSpec::churn_bytes_per_sec` is 0).
fn downtime_vs_estimate(
    emu: &crate::emulator::Emulator,
    planned: &[&crate::plan::PlannedVm],
    done: &[crate::step::VmEntry],
) -> Value {
    let a = crate::plan::Assumptions {
        churn_mib_s: 0.0,
        ..Default::default()
    };
    let pairs: Vec<(f64, f64)> = planned
        .iter()
        .filter(|v| v.power_state == "running")
        .filter(|v| {
            done.iter()
                .any(|d| d.id == v.id && d.outcome == Outcome::Verified)
        })
        .filter_map(|v| {
            let est = crate::plan::Estimate::model(&v.record, &a).downtime_secs as f64;
            emu.vm_offline_secs(&v.id).map(|m| (est, m))
        })
        .collect();
    let n = pairs.len().max(1) as f64;
    let est = pairs.iter().map(|p| p.0).sum::<f64>() / n;
    let measured = pairs.iter().map(|p| p.1).sum::<f64>() / n;
    json!({
        "vms": pairs.len(),
        "assumptions": a,
        "estimated_mean_secs": est,
        "measured_mean_secs": measured,
        "measured_max_secs": pairs.iter().map(|p| p.1).fold(0.0, f64::max),
        "measured_over_estimated": if est > 0.0 { measured / est } else { 0.0 },
    })
}
