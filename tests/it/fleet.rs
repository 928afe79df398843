//! Fleet scale: discovery and dry-run plans over a generated fleet, plan
//! files, waves, failure budgets, approval gates, stale plans, resume.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use ade2eah::emulator::fleetgen::{
    FleetGen, GeneratedVm, LOCKED_RG, LockOn, generate, rg_name, seed,
};
use ade2eah::emulator::{EmulatorConfig, FaultConfig, FaultKind};
use ade2eah::model::ResourceId;
use serde_json::Value;

use crate::support::{POLL, Rig, bin, text};

async fn rig() -> Rig {
    Rig::with_config(EmulatorConfig {
        time_scale: crate::support::TIME_SCALE,
        ..Default::default()
    })
    .await
}

fn seed_fleet(rig: &Rig, n: usize, rgs: usize) -> Vec<(ResourceId, GeneratedVm)> {
    generate(&FleetGen {
        vms: n,
        resource_groups: rgs,
        seed: 7,
        os_disk_gib: 1,
        ..Default::default()
    })
    .into_iter()
    .map(|g| (seed(&rig.emu, &g), g))
    .collect()
}

fn codes(v: &Value, sev: Option<&str>) -> Vec<String> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| sev.is_none_or(|s| f["severity"] == s))
        .map(|f| f["code"].as_str().unwrap().to_string())
        .collect()
}

/// The lock and backup findings of a planned VM match the generated truth.
fn check_governance(id: &ResourceId, g: &GeneratedVm, got: &Value) {
    let relevant = g.path != "not-ade" && g.path != "already-eah";
    let blockers = codes(got, Some("blocker"));
    let infos = codes(got, Some("info"));
    let warnings = codes(got, Some("warning"));
    let lock_block = blockers.iter().any(|c| c == "management-lock");
    let lock_info = infos.iter().any(|c| c == "management-lock-info");
    match g.lock {
        Some(l) if relevant => {
            assert_eq!(lock_block, l.blocks(), "{id} {l:?}: {got}");
            assert_eq!(lock_info, !l.blocks(), "{id} {l:?}: {got}");
            let f = got["findings"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["code"].as_str().unwrap().starts_with("management-lock"))
                .unwrap();
            let msg = f["message"].as_str().unwrap();
            assert!(msg.contains(&l.name()), "{id}: {msg}");
            if l.blocks() {
                assert!(
                    msg.contains("for the migration window, re-add it after"),
                    "{msg}"
                );
                if got["eligible"] == false && !g.eligible && l.on == LockOn::ResourceGroup {
                    assert!(msg.contains(LOCKED_RG), "{msg}");
                }
            }
        }
        _ => assert!(!lock_block && !lock_info, "{id} has no lock: {got}"),
    }
    let backup = warnings.iter().any(|c| c == "backup-protected");
    assert_eq!(backup, g.backup && relevant, "{id} backup: {got}");
    if backup {
        let msg = got["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["code"] == "backup-protected")
            .unwrap()["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(msg.contains("new vmId") && msg.contains("ADE-era"), "{msg}");
    }
}

fn conn(rig: &Rig) -> Vec<String> {
    vec![
        "--arm-endpoint".into(),
        rig.emu.base_url(),
        "--auth".into(),
        "none".into(),
    ]
}

async fn plan(rig: &Rig, extra: &[&str]) -> std::process::Output {
    let mut a = vec!["plan".to_string()];
    a.extend(conn(rig));
    a.extend(["--subscription".into(), rig.emu.subscription().to_string()]);
    a.extend(extra.iter().map(|s| s.to_string()));
    bin(&a, &[]).await
}

/// A plan file beside the rig's journal, unique per test and process.
fn plan_path(rig: &Rig, tag: &str) -> PathBuf {
    rig.state
        .path()
        .parent()
        .unwrap()
        .join(format!("plan-{tag}-{}.toml", std::process::id()))
}

/// `plan EXTRA... --out FILE`, which must succeed.
async fn plan_out(rig: &Rig, file: &Path, extra: &[&str]) -> std::process::Output {
    let mut a = extra.to_vec();
    a.extend(["--out", file.to_str().unwrap()]);
    let out = plan(rig, &a).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    out
}

async fn run_plan(rig: &Rig, file: &Path, env: &[(&str, &str)]) -> std::process::Output {
    let mut a = vec!["run".to_string()];
    a.extend(conn(rig));
    a.extend([
        "--plan".into(),
        file.display().to_string(),
        "--state".into(),
        rig.state_dir().display().to_string(),
        "--yes".into(),
        "--poll-interval".into(),
        POLL.into(),
    ]);
    bin(&a, env).await
}

async fn report(rig: &Rig) -> Value {
    let out = rig.state_json("report").await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn json_of(out: &std::process::Output) -> Value {
    assert_eq!(out.status.code(), Some(0), "{}", text(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_of_300_vms_matches_the_generated_truth_and_changes_nothing() {
    let rig = rig().await;
    let fleet = seed_fleet(&rig, 300, 10);
    let before = rig.emu.requests().len();
    let started = std::time::Instant::now();
    let out = plan(&rig, &["--waves", "1,10%,100%", "--output", "json"]).await;
    let secs = started.elapsed().as_secs_f64();
    let v = json_of(&out);
    let vms = v["vms"].as_array().unwrap();
    assert_eq!(vms.len(), 300);
    let by_id: BTreeMap<String, &Value> = vms
        .iter()
        .map(|x| (x["id"].as_str().unwrap().to_ascii_lowercase(), x))
        .collect();
    for (id, g) in &fleet {
        let got = by_id
            .get(&id.key())
            .unwrap_or_else(|| panic!("{id} in plan"));
        assert_eq!(got["path"], g.path, "{id}: {got}");
        assert_eq!(got["eligible"], g.eligible, "{id}: {got}");
        check_governance(id, g, got);
        if !g.eligible {
            assert!(
                !got["findings"].as_array().unwrap().is_empty(),
                "{id} has findings"
            );
            let f = &got["findings"][0];
            assert!(f["code"].is_string() && f["severity"].is_string() && f["message"].is_string());
            if g.path != "not-ade" {
                assert_eq!(
                    f["severity"], "blocker",
                    "{id}: the first finding is the reason"
                );
            }
        }
    }
    // The generated fleet has every kind of lock and some backups.
    let kinds: BTreeSet<String> = fleet
        .iter()
        .filter_map(|(_, g)| g.lock.map(|l| l.name()))
        .collect();
    assert_eq!(kinds.len(), 7, "lock kinds: {kinds:?}");
    assert!(fleet.iter().filter(|(_, g)| g.backup).count() >= 10);
    assert!(
        !v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["severity"] == "blocker"),
        "no plan-level blocker with default quotas: {}",
        v["findings"]
    );
    let size = vms
        .iter()
        .find(|x| x["path"] == "size-unsupported")
        .unwrap();
    assert!(
        size["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["code"] == "size-suggestion"),
        "{size}"
    );
    assert!(v["fingerprint"].as_str().unwrap().starts_with("sha256:"));
    let eligible = fleet.iter().filter(|(_, g)| g.eligible).count();
    let waves = v["waves"].as_array().unwrap();
    assert_eq!(waves[0]["vms"].as_array().unwrap().len(), 1);
    assert_eq!(
        waves[1]["vms"].as_array().unwrap().len(),
        eligible.div_ceil(10) - 1
    );
    let log = &rig.emu.requests()[before..];
    let writes: Vec<_> = log.iter().filter(|r| r.mutating).collect();
    assert!(writes.is_empty(), "dry run sent writes: {writes:?}");
    let graph = log
        .iter()
        .filter(|r| r.path.contains("ResourceGraph"))
        .count();
    assert!(
        graph >= 3,
        "Resource Graph paged with $skipToken ({graph} pages)"
    );
    eprintln!(
        "dry run of 300 VMs: {secs:.2} s, {} requests ({:.1} per VM)",
        log.len(),
        log.len() as f64 / 300.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_group_selection_finds_exactly_those_groups() {
    let rig = rig().await;
    let fleet = seed_fleet(&rig, 60, 6);
    let out = plan(
        &rig,
        &["-g", &rg_name(1), "-g", &rg_name(4), "--output", "json"],
    )
    .await;
    let v = json_of(&out);
    let got: BTreeSet<String> = v["vms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap().to_ascii_lowercase())
        .collect();
    let want: BTreeSet<String> = fleet
        .iter()
        .filter(|(_, g)| g.spec.resource_group == rg_name(1) || g.spec.resource_group == rg_name(4))
        .map(|(id, _)| id.key())
        .collect();
    assert_eq!(got, want);
    // An explicit --vm adds exactly that VM; outside VMs never appear.
    let extra = &fleet
        .iter()
        .find(|(_, g)| g.spec.resource_group == rg_name(2))
        .unwrap()
        .0;
    let out = plan(
        &rig,
        &[
            "-g",
            &rg_name(1),
            "--vm",
            extra.as_str(),
            "--output",
            "json",
        ],
    )
    .await;
    let v = json_of(&out);
    assert_eq!(
        v["vms"].as_array().unwrap().len(),
        fleet
            .iter()
            .filter(|(_, g)| g.spec.resource_group == rg_name(1))
            .count()
            + 1
    );
}

/// First and last request seq touching each VM (by name in the path).
fn spans(rig: &Rig, names: &[String]) -> BTreeMap<String, (u64, u64)> {
    let mut out: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for r in rig.emu.requests() {
        if !r.mutating {
            continue;
        }
        for n in names {
            if r.path
                .to_ascii_lowercase()
                .contains(&format!("/virtualmachines/{n}"))
            {
                let e = out.entry(n.clone()).or_insert((r.seq, r.seq));
                e.1 = r.seq;
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waves_migrate_every_eligible_vm_in_order_and_skip_the_rest() {
    let rig = rig().await;
    let fleet = seed_fleet(&rig, 30, 3);
    let file = plan_path(&rig, "waves");
    let out = plan_out(
        &rig,
        &file,
        &[
            "--waves",
            "1,10,50%,100%",
            "--max-parallel",
            "6",
            "--output",
            "json",
        ],
    )
    .await;
    let p = json_of(&out);
    let text_file = std::fs::read_to_string(&file).unwrap();
    assert!(text_file.contains("[[waves]]") && text_file.contains("fingerprint = \"sha256:"));
    let before = rig.mutating_requests();
    assert_eq!(before, 0);
    let out = run_plan(&rig, &file, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let r = report(&rig).await;
    let eligible = fleet.iter().filter(|(_, g)| g.eligible).count();
    assert_eq!(r["summary"]["verified"], eligible);
    assert_eq!(r["summary"]["skipped"], 30 - eligible);
    for vm in r["vms"].as_array().unwrap() {
        if vm["outcome"] == "skipped" {
            assert!(vm["reason"].as_str().is_some_and(|s| !s.is_empty()), "{vm}");
        }
    }
    // Wave k's last write to a VM comes before wave k+1's first.
    let waves: Vec<Vec<String>> = p["waves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            w["vms"]
                .as_array()
                .unwrap()
                .iter()
                .map(|id| {
                    id.as_str()
                        .unwrap()
                        .rsplit('/')
                        .next()
                        .unwrap()
                        .to_ascii_lowercase()
                })
                .collect()
        })
        .collect();
    assert_eq!(waves.len(), 4);
    let all: Vec<String> = waves.concat();
    let s = spans(&rig, &all);
    for k in 0..waves.len() - 1 {
        if waves[k].is_empty() || waves[k + 1].is_empty() {
            continue;
        }
        let end = waves[k].iter().map(|n| s[n].1).max().unwrap();
        let start = waves[k + 1].iter().map(|n| s[n].0).min().unwrap();
        assert!(
            end < start,
            "wave {} ended at {end}, wave {} started at {start}",
            k + 1,
            k + 2
        );
    }
    let _ = std::fs::remove_file(&file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_budget_halts_the_run_when_exceeded() {
    let rig = rig().await;
    let fleet = seed_fleet(&rig, 20, 2);
    let file = plan_path(&rig, "budget");
    plan_out(
        &rig,
        &file,
        &[
            "--waves",
            "1,100%",
            "--max-parallel",
            "2",
            "--failure-budget",
            "1",
        ],
    )
    .await;
    // Every mutating operation now fails (the VMs park after their retries).
    rig.emu.set_faults(FaultConfig {
        rate: 1.0,
        kinds: vec![FaultKind::FailedOperation],
    });
    let out = run_plan(&rig, &file, &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("failure budget exceeded"), "{}", text(&out));
    let r = report(&rig).await;
    let eligible = fleet.iter().filter(|(_, g)| g.eligible).count();
    let parked = r["summary"]["parked"].as_u64().unwrap() as usize;
    let pending = r["summary"]["in_progress"].as_u64().unwrap() as usize;
    assert!(
        (2..=4).contains(&parked),
        "canary + 2 in flight at most: {parked}"
    );
    assert_eq!(parked + pending, eligible);
    assert!(
        pending >= eligible - 4,
        "VMs not started stay pending: {pending}"
    );
    let _ = std::fs::remove_file(&file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_plan_is_refused_naming_the_vm_and_sends_nothing() {
    let rig = rig().await;
    let fleet = seed_fleet(&rig, 12, 2);
    let file = plan_path(&rig, "stale");
    plan_out(&rig, &file, &[]).await;
    let (victim, _) = fleet.iter().find(|(_, g)| g.eligible).unwrap();
    // Delete it behind the plan's back.
    let http = reqwest::Client::new();
    let vm_url = format!(
        "{}{}?api-version=2024-11-01",
        rig.emu.base_url(),
        victim.as_str()
    );
    let resp = http.delete(&vm_url).bearer_auth("t").send().await.unwrap();
    assert!(resp.status().is_success(), "{:?}", resp.status());
    for _ in 0..200 {
        if http
            .get(&vm_url)
            .bearer_auth("t")
            .send()
            .await
            .unwrap()
            .status()
            == 404
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let writes = rig.mutating_requests();
    let out = run_plan(&rig, &file, &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("stale") && err.contains(victim.name()),
        "{}",
        text(&out)
    );
    assert_eq!(rig.mutating_requests(), writes, "nothing mutating sent");
    let _ = std::fs::remove_file(&file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_gate_pauses_until_approved_then_resume_finishes() {
    let rig = rig().await;
    let fleet = seed_fleet(&rig, 10, 1);
    let file = plan_path(&rig, "gate");
    plan_out(&rig, &file, &["--waves", "1,100%", "--approval-gates", "2"]).await;
    let out = run_plan(&rig, &file, &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("approve"),
        "{}",
        text(&out)
    );
    let r = report(&rig).await;
    assert_eq!(
        r["summary"]["verified"], 1,
        "only the canary ran: {}",
        r["summary"]
    );
    let state = rig.state_dir().display().to_string();
    let out = bin(
        &[
            "approve".into(),
            "--state".into(),
            state,
            "--wave".into(),
            "2".into(),
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = rig.resume(&[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let r = report(&rig).await;
    assert_eq!(
        r["summary"]["verified"],
        fleet.iter().filter(|(_, g)| g.eligible).count()
    );
    let _ = std::fs::remove_file(&file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_resumes_mid_wave() {
    let rig = rig().await;
    let fleet = seed_fleet(&rig, 16, 2);
    let file = plan_path(&rig, "kill");
    plan_out(&rig, &file, &["--waves", "1,100%", "--max-parallel", "3"]).await;
    // Crash (abort) at the 3rd VM re-creation: the canary is done, wave 2 is mid-flight.
    let out = run_plan(
        &rig,
        &file,
        &[("ADE2EAH_FAILPOINTS", "after-intent:create-vm@3")],
    )
    .await;
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    let out = rig.resume(&[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let r = report(&rig).await;
    assert_eq!(
        r["summary"]["verified"],
        fleet.iter().filter(|(_, g)| g.eligible).count()
    );
    let _ = std::fs::remove_file(&file);
}

#[tokio::test]
async fn plan_file_errors_point_at_file_line_and_column() {
    let rig = rig().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        format!(
            "version = 1\nsubscription = \"{}\"\n\n[[waves]]\ntarget = \"1\"\nmax_paralel = 2\n",
            rig.emu.subscription()
        ),
    )
    .unwrap();
    let out = run_plan(&rig, &file, &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:6:1:", file.display())),
        "{}",
        text(&out)
    );
    assert_eq!(rig.mutating_requests(), 0);
}

/// `-g` selection keeps the lock and backup findings of exactly the VMs
/// selected (a resource-group lock is found through the unfiltered listing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_plans_keep_lock_and_backup_findings() {
    let rig = rig().await;
    let fleet = seed_fleet(&rig, 300, 10);
    let before = rig.emu.requests().len();
    let out = plan(
        &rig,
        &["-g", LOCKED_RG, "-g", &rg_name(2), "--output", "json"],
    )
    .await;
    let v = json_of(&out);
    let by_id: BTreeMap<String, &Value> = v["vms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["id"].as_str().unwrap().to_ascii_lowercase(), x))
        .collect();
    let want: Vec<&(ResourceId, GeneratedVm)> = fleet
        .iter()
        .filter(|(_, g)| g.spec.resource_group == LOCKED_RG || g.spec.resource_group == rg_name(2))
        .collect();
    assert_eq!(by_id.len(), want.len());
    assert!(want.iter().any(|(_, g)| g.spec.resource_group == LOCKED_RG));
    assert!(
        want.iter()
            .any(|(_, g)| g.lock.is_some() && g.spec.resource_group != LOCKED_RG)
    );
    for (id, g) in want {
        let got = by_id[&id.key()];
        assert_eq!(got["eligible"], g.eligible, "{id}: {got}");
        check_governance(id, g, got);
    }
    let log = &rig.emu.requests()[before..];
    assert!(log.iter().all(|r| !r.mutating), "plan sent writes");
    assert!(log.iter().any(|r| r.path.ends_with("backupStatus")));
}

/// The quota preflight: VMs whose temporary disks and snapshots do not fit
/// in the region's remaining quota leave the plan (`disk-quota` blocker, on
/// them and on the plan); above 80% of a limit the plan warns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_quota_takes_vms_out_beyond_the_limit_and_warns_above_80_percent() {
    let rig = rig().await;
    let ids: Vec<ResourceId> = (0..3)
        .map(|i| {
            rig.emu
                .add_vm(crate::support::windows(&format!("q-{i}"), 0))
        })
        .collect();
    // Each VM: 1 Premium Upload disk, 1 backup + 5 round snapshots (default policy).
    let quota_of = |v: &Value, sev: &str| -> Vec<String> {
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["code"] == "disk-quota" && f["severity"] == sev)
            .map(|f| f["message"].as_str().unwrap().to_string())
            .collect()
    };
    let eligible = |v: &Value| -> Vec<bool> {
        v["vms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["eligible"].as_bool().unwrap())
            .collect()
    };
    rig.emu.set_usage_limit("StandardSnapshotCount", 13);
    let v = json_of(&plan(&rig, &["--output", "json"]).await);
    assert_eq!(eligible(&v), [true, true, false], "{}", v["vms"]);
    let plan_level = quota_of(&v, "blocker");
    assert_eq!(plan_level.len(), 1, "{}", v["findings"]);
    assert!(
        plan_level[0].contains("StandardSnapshotCount")
            && plan_level[0].contains("18")
            && plan_level[0].contains("1 VM(s)"),
        "{plan_level:?}"
    );
    let last = &v["vms"][2];
    assert_eq!(last["findings"][0]["code"], "disk-quota", "{last}");
    assert_eq!(last["findings"][0]["severity"], "blocker");
    assert_eq!(
        v["waves"][0]["vms"].as_array().unwrap().len()
            + v["waves"]
                .as_array()
                .unwrap()
                .iter()
                .skip(1)
                .map(|w| w["vms"].as_array().unwrap().len())
                .sum::<usize>(),
        2
    );

    rig.emu.set_usage_limit("StandardSnapshotCount", 20);
    let v = json_of(&plan(&rig, &["--output", "json"]).await);
    assert_eq!(eligible(&v), [true, true, true]);
    let warn = quota_of(&v, "warning");
    assert!(
        warn.len() == 1 && warn[0].contains("18 of 20"),
        "{}",
        v["findings"]
    );
    assert!(quota_of(&v, "blocker").is_empty());

    // The disks themselves: 3 Premium disks in use, 2 left.
    rig.emu.set_usage_limit("PremiumDiskCount", 5);
    let v = json_of(&plan(&rig, &["--output", "json"]).await);
    assert_eq!(eligible(&v), [true, true, false]);
    assert!(
        quota_of(&v, "blocker")[0].contains("PremiumDiskCount"),
        "{}",
        v["findings"]
    );
    assert_eq!(ids.len(), 3);
    assert_eq!(rig.mutating_requests(), 0);
}

/// A lock added after planning changes the VM's fingerprint (it leaves the
/// plan): `run --plan` refuses the stale plan and sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_added_after_planning_makes_the_plan_stale() {
    let rig = rig().await;
    let vm = rig.emu.add_vm(crate::support::windows("late-lock", 0));
    let file = plan_path(&rig, "lock");
    plan_out(&rig, &file, &[]).await;
    rig.emu.add_lock(
        vm.as_str(),
        "late",
        ade2eah::emulator::LockLevel::CanNotDelete,
    );
    let out = run_plan(&rig, &file, &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("stale") && err.contains("eligible true → false"),
        "{}",
        text(&out)
    );
    assert_eq!(rig.mutating_requests(), 0);
    let _ = std::fs::remove_file(&file);
}
