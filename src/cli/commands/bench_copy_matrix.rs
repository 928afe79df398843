//! `ade2eah bench copy --matrix` and `--small-disks` (issue 15): downtime
//! across disk sizes, allocation and steady guest write rates, with its
//! breakdown, against the full-copy baseline and the lower bound.
//!
//! Figures are simulated seconds. The downtime is the emulator's per-VM
//! "not running" clock; its parts come from the record: the copy-round
//! sub-phases of the offline round from its spans (`step::timing`), the
//! platform actions (deallocate, delete, NIC hold, create, start) from the
//! journaled intent/result history. Both are engine-clock (wall) times,
//! multiplied by the time scale.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::bench_copy::{config, mean, migrate, migrate_all, spec};
use crate::cli::error::{CliError, Exit};
use crate::cli::settings::BenchCopySettings;
use crate::emulator::{Durations, VmSpec};
use crate::step::{CopyPolicy, Phase, Span, VmRecord};

const MIB: f64 = (1 << 20) as f64;
/// The simulated copy rate of a target up to 4 TiB (facts §9).
const CAP: f64 = 60.0 * MIB;

/// The default policy with its time cap in the engine's (wall) clock.
pub(super) fn policy(a: &BenchCopySettings) -> CopyPolicy {
    let d = CopyPolicy::default();
    CopyPolicy {
        max_online_secs: d.max_online_secs / a.time_scale,
        ..d
    }
}

fn baseline_policy() -> CopyPolicy {
    CopyPolicy {
        max_online_rounds: 0,
        ..CopyPolicy::default()
    }
}

/// Total length of the union of `[start, end)` intervals.
fn union_secs(mut v: Vec<(f64, f64)>) -> f64 {
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut total = 0.0;
    let mut cur: Option<(f64, f64)> = None;
    for (s, e) in v {
        match cur {
            Some((cs, ce)) if s <= ce => cur = Some((cs, ce.max(e))),
            Some((cs, ce)) => {
                total += ce - cs;
                cur = Some((s, e));
            }
            None => cur = Some((s, e)),
        }
    }
    total + cur.map_or(0.0, |(s, e)| e - s)
}

fn at_secs(at: &str) -> Option<f64> {
    let t = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).ok()?;
    Some(t.unix_timestamp_nanos() as f64 / 1e9)
}

/// The downtime parts of one VM, simulated seconds.
fn breakdown(rec: &VmRecord, scale: f64) -> BTreeMap<&'static str, f64> {
    let mut out = BTreeMap::new();
    // The offline copy round's sub-phases only: every span recorded while
    // the VM is down is `offline`, platform steps (deallocate, delete,
    // create...) included.
    let data_phases = [
        Phase::RoundSnapshot,
        Phase::Grant,
        Phase::Copy,
        Phase::VerifyCopy,
        Phase::Revoke,
    ];
    let offline: Vec<&Span> = rec
        .spans
        .iter()
        .filter(|s| s.offline && data_phases.contains(&s.phase))
        .collect();
    for (name, phase) in [
        ("snapshot", Phase::RoundSnapshot),
        ("grants", Phase::Grant),
        ("delta", Phase::Copy),
        ("verify", Phase::VerifyCopy),
        ("revokes", Phase::Revoke),
    ] {
        let v = offline
            .iter()
            .filter(|s| s.phase == phase)
            .map(|s| (s.start, s.end))
            .collect();
        out.insert(name, union_secs(v) * scale);
    }
    let data = match (
        offline.iter().map(|s| s.start).reduce(f64::min),
        offline.iter().map(|s| s.end).reduce(f64::max),
    ) {
        (Some(a), Some(b)) => (b - a) * scale,
        _ => 0.0,
    };
    out.insert("data_part", data);
    // Platform actions from the history: intent → successful result.
    let mut intents: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut results: BTreeMap<String, f64> = BTreeMap::new();
    for h in &rec.history {
        let Some(t) = at_secs(&h.at) else { continue };
        let d: Value = serde_json::from_str(&h.detail).unwrap_or(Value::Null);
        match h.event.as_str() {
            "intent" => {
                if let Some(a) = d.pointer("/action/action").and_then(Value::as_str) {
                    let key = format!("{a}@{}", h.step);
                    intents.entry(key).or_default().push(t);
                }
            }
            "result" if d["ok"] == true => {
                if let Some(a) = d["action"].as_str() {
                    results.insert(format!("{a}@{}", h.step), t);
                }
            }
            _ => {}
        }
    }
    let part = |key: &str| -> Option<(f64, f64, f64)> {
        let i = intents.get(key)?;
        let r = results.get(key)?;
        Some((*i.first()?, *i.last()?, *r))
    };
    let dealloc = [
        "deallocate@pre-copy",
        "deallocate@deallocate",
        "deallocate@final-copy",
    ]
    .iter()
    .filter_map(|k| part(k))
    .map(|(f, _, r)| r - f)
    .sum::<f64>();
    out.insert("deallocate", dealloc * scale);
    if let Some((f, _, r)) = part("delete-vm@delete-vm") {
        out.insert("delete", (r - f) * scale);
    }
    if let Some((f, l, r)) = part("create-vm@recreate") {
        out.insert("nic_hold", (l - f) * scale);
        out.insert("create", (r - l) * scale);
    }
    if let Some((f, _, r)) = part("start-vm@start") {
        out.insert("start", (r - f) * scale);
    }
    out
}

fn online_rounds(rec: &VmRecord) -> usize {
    rec.disks
        .iter()
        .map(|d| d.online_rounds_done())
        .max()
        .unwrap_or(0)
}

fn offline_delta(rec: &VmRecord) -> u64 {
    rec.disks
        .iter()
        .filter_map(|d| d.rounds.iter().rev().find(|r| r.offline))
        .map(|r| r.bytes)
        .sum()
}

/// The lower bound: mean deallocate + offline delta at the cap +
/// mean create + mean start.
fn lower_bound(delta: u64, cap: f64) -> f64 {
    let d = Durations::default();
    mean(d.vm_deallocate) + delta as f64 / cap + mean(d.vm_create) + mean(d.vm_start)
}

/// One VM's figures against a baseline downtime.
fn figures(rec: &VmRecord, downtime: f64, baseline: f64, scale: f64, cap: f64) -> Value {
    let parts = breakdown(rec, scale);
    // The offline window as a timeline (simulated seconds from its first span).
    let t0 = rec
        .spans
        .iter()
        .filter(|s| s.offline)
        .map(|s| s.start)
        .reduce(f64::min)
        .unwrap_or(0.0);
    let timeline: Vec<Value> = rec
        .spans
        .iter()
        .filter(|s| s.offline)
        .map(|s| {
            json!({"phase": s.phase.name(), "at": ((s.start - t0) * scale).round(),
                   "secs": ((s.end - s.start) * scale * 10.0).round() / 10.0})
        })
        .collect();
    let data = parts.get("data_part").copied().unwrap_or(0.0);
    let fixed = (downtime - data).max(0.0);
    let delta = offline_delta(rec);
    let bound = lower_bound(delta, cap);
    json!({
        "downtime_secs": downtime,
        "baseline_downtime_secs": baseline,
        "downtime_vs_baseline": baseline / downtime,
        "lower_bound_secs": bound,
        "downtime_vs_bound": downtime / bound,
        "online_rounds": online_rounds(rec),
        "offline_delta_bytes": delta,
        "rounds": rec.disks.iter().map(|d| d.rounds.iter().map(|r| json!({"n": r.number, "offline": r.offline, "bytes": r.bytes, "calls": r.calls, "spot_check": r.spot_check})).collect::<Vec<Value>>()).collect::<Vec<Vec<Value>>>(),
        "breakdown_secs": parts,
        "data_part_secs": data,
        "fixed_part_secs": fixed,
        "data_over_fixed": data / fixed.max(1e-9),
        "offline_timeline": timeline,
    })
}

/// `--matrix`.
pub async fn matrix(a: &BenchCopySettings) -> Result<Exit, CliError> {
    let rates = [0.1, 1.0, 10.0];
    let mut cells = Vec::new();
    let mut all_met = true;
    for &gib in &a.matrix_sizes {
        for alloc in [0.3, 0.95] {
            let (baseline, _, _) = migrate(
                config(a),
                spec("bench-base", gib, alloc, 0.0),
                baseline_policy(),
                false,
            )
            .await?;
            for rate in rates {
                let (down, rec, _) = migrate(
                    config(a),
                    spec("bench-ours", gib, alloc, rate * MIB),
                    policy(a),
                    a.nic_swap,
                )
                .await?;
                let mut f = figures(&rec, down, baseline, a.time_scale, CAP);
                let applies = rate * MIB < CAP / 10.0;
                let data_ok = f["data_over_fixed"].as_f64().unwrap_or(f64::NAN) < 0.10;
                let ratio_ok =
                    gib < 128 || f["downtime_vs_baseline"].as_f64().unwrap_or(0.0) >= 20.0;
                let met = !applies || (data_ok && ratio_ok);
                all_met &= met;
                f["disk_gib"] = json!(gib);
                f["allocated_fraction"] = json!(alloc);
                f["write_mib_per_sec"] = json!(rate);
                f["goal_applies"] = json!(applies);
                f["goal_met"] = json!(met);
                if !a.json {
                    print_cell(&f);
                }
                cells.push(f);
            }
        }
    }
    if a.json {
        println!(
            "{}",
            json!({"time_scale": a.time_scale, "copy_cap_bytes_per_sec": CAP, "cells": cells, "goal_met_everywhere": all_met,
                "note": "simulated seconds; breakdown parts from spans and journal history (wall × time scale), so they need not add up to the downtime exactly"})
        );
    } else {
        println!("goal met in every applicable cell: {all_met}");
    }
    Ok(Exit::Done)
}

fn print_cell(f: &Value) {
    let b = &f["breakdown_secs"];
    let g = |k: &str| b[k].as_f64().unwrap_or(0.0);
    println!(
        "{:>5} GiB {:>3.0}% {:>4} MiB/s | down {:>6.0} s | base {:>7.0} s ({:>5.1}x) | bound {:>4.2} | rounds {} | data {:>5.1} s / fixed {:>4.0} s ({:.1}%) | dealloc {:.0} snap {:.1} grants {:.1} delta {:.1} verify {:.1} revokes {:.1} delete {:.0} nic {:.0} create {:.0} start {:.0}{}",
        f["disk_gib"],
        f["allocated_fraction"].as_f64().unwrap_or(0.0) * 100.0,
        f["write_mib_per_sec"],
        f["downtime_secs"].as_f64().unwrap_or(0.0),
        f["baseline_downtime_secs"].as_f64().unwrap_or(0.0),
        f["downtime_vs_baseline"].as_f64().unwrap_or(0.0),
        f["downtime_vs_bound"].as_f64().unwrap_or(0.0),
        f["online_rounds"],
        f["data_part_secs"].as_f64().unwrap_or(0.0),
        f["fixed_part_secs"].as_f64().unwrap_or(0.0),
        f["data_over_fixed"].as_f64().unwrap_or(0.0) * 100.0,
        g("deallocate"),
        g("snapshot"),
        g("grants"),
        g("delta"),
        g("verify"),
        g("revokes"),
        g("delete"),
        g("nic_hold"),
        g("create"),
        g("start"),
        if f["goal_applies"] == true && f["goal_met"] != true {
            "  GOAL NOT MET"
        } else {
            ""
        },
    );
}

/// `--small-disks`: two VMs holding 512 MiB and 256 MiB of data (on 1 GiB
/// disks: the emulator sizes disks in GiB; only allocated ranges move),
/// 64 KiB/s guest writes per disk, a 4 MiB/s write cap per target.
pub async fn small_disks(a: &BenchCopySettings) -> Result<Exit, CliError> {
    let cap = 4.0 * MIB;
    let cfg = || {
        let mut c = config(a);
        c.storage.upload_cap_bytes_per_sec = Some(cap);
        c
    };
    let specs = |churn: f64| -> Vec<VmSpec> {
        vec![
            spec("small-a", 1, 0.5, churn),
            spec("small-b", 1, 0.25, churn),
        ]
    };
    let churn = 64.0 * 1024.0;
    let (base, _) = migrate_all(cfg(), specs(0.0), baseline_policy(), false).await?;
    let mut out = Vec::new();
    for (label, p) in [
        ("ours", policy(a)),
        (
            "one online round",
            CopyPolicy {
                max_online_rounds: 1,
                ..policy(a)
            },
        ),
    ] {
        let (vms, _) = migrate_all(cfg(), specs(churn), p, a.nic_swap).await?;
        for ((down, rec), (bdown, _)) in vms.iter().zip(&base) {
            let mut f = figures(rec, *down, *bdown, a.time_scale, cap);
            f["vm"] = json!(rec.id.name());
            f["procedure"] = json!(label);
            if !a.json {
                println!(
                    "{label:>16} {} | down {:.0} s | base {:.0} s ({:.1}x) | rounds {} | offline delta {:.1} MiB | data {:.1} s",
                    rec.id.name(),
                    down,
                    bdown,
                    bdown / down,
                    f["online_rounds"],
                    f["offline_delta_bytes"].as_f64().unwrap_or(0.0) / MIB,
                    f["data_part_secs"].as_f64().unwrap_or(0.0),
                );
            }
            out.push(f);
        }
    }
    if a.json {
        println!(
            "{}",
            json!({"time_scale": a.time_scale, "copy_cap_bytes_per_sec": cap, "guest_write_bytes_per_sec_per_disk": churn, "vms": out})
        );
    }
    Ok(Exit::Done)
}
