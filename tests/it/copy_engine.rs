//! The copy engine end to end: pre-copy rounds under guest churn, the
//! offline delta, range checkpoints after a crash, verification catching a
//! corrupted target, paginated range listings and ServerBusy storms.

use ade2eah::emulator::{EmulatorConfig, StorageConfig};
use ade2eah::model::ResourceId;
use serde_json::Value;

use crate::support::*;

/// `run` exactly as the scripting contract writes it, plus `extra` flags.
async fn run_with(
    rig: &Rig,
    vms: &[ResourceId],
    extra: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    let mut args: Vec<String> = vec![
        "run".into(),
        "--arm-endpoint".into(),
        rig.emu.base_url(),
        "--auth".into(),
        "none".into(),
        "--subscription".into(),
        rig.emu.subscription().to_string(),
    ];
    for vm in vms {
        args.push("--vm".into());
        args.push(vm.to_string());
    }
    args.extend([
        "--state".into(),
        rig.state_dir().display().to_string(),
        "--yes".into(),
        "--poll-interval".into(),
        POLL.into(),
    ]);
    args.extend(extra.iter().map(|s| s.to_string()));
    bin(&args, env).await
}

/// Original disk → its digest *now* (after the run, the original disks no
/// longer change: the VM was deallocated, then deleted with Detach).
fn final_pairs(
    emu: &ade2eah::emulator::Emulator,
    vm: &ResourceId,
    before: &[(ResourceId, String)],
) -> Vec<(ResourceId, ResourceId)> {
    let state = serde_json::to_value(emu.state()).unwrap();
    let now = disks_of_vm_model(&state, vm);
    assert_eq!(now.len(), before.len());
    before.iter().map(|(o, _)| o.clone()).zip(now).collect()
}

fn rounds_of(status: &Value) -> Vec<Vec<Value>> {
    status["vms"][0]["disks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["rounds"].as_array().cloned().unwrap_or_default())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_rounds_under_guest_churn_end_byte_exact() {
    // A slower clock than the other tests: the guest must not write faster
    // (in simulated time) than this debug-build client can copy.
    let rig = Rig::with_config(EmulatorConfig {
        time_scale: 200.0,
        ..Default::default()
    })
    .await;
    let mut spec = windows("churny", 1);
    spec.churn_bytes_per_sec = 1024.0 * 1024.0;
    let vm = rig.emu.add_vm(spec);
    let before = source_digests(&rig.emu, &vm);

    let out = rig.run(std::slice::from_ref(&vm), &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for (orig, new) in final_pairs(&rig.emu, &vm, &before) {
        let o = rig.emu.disk_digest(&orig).unwrap();
        let was = &before.iter().find(|(d, _)| *d == orig).unwrap().1;
        assert_ne!(&o, was, "the guest really wrote to {orig} while it ran");
        assert_eq!(
            rig.emu.disk_digest(&new).as_deref(),
            Some(o.as_str()),
            "{new} equals {orig} as it was at deallocation, footer and cleared ranges included"
        );
    }
    assert!(rig.emu.active_sas().is_empty());
    let status = rig.status().await;
    for rounds in rounds_of(&status) {
        assert!(
            rounds.len() >= 3,
            "a full round, at least one delta round, the offline round: {rounds:#?}"
        );
        assert!(rounds.iter().all(|r| r["copied"] == true));
        let full = rounds[0]["bytes"].as_u64().unwrap();
        let offline = rounds.last().unwrap();
        assert_eq!(offline["offline"], true);
        assert!(
            offline["bytes"].as_u64().unwrap() < full,
            "the offline round moved only the delta: {rounds:#?}"
        );
    }
    assert_no_secrets(rig.state_dir(), &[&out]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_round_resumes_from_the_last_checkpoint() {
    let rig = Rig::new().await;
    let mut spec = windows("mid-round", 0);
    spec.os_disk.size_gib = 8;
    spec.os_disk.allocated_fraction = 0.9;
    let vm = rig.emu.add_vm(spec);
    let before = source_digests(&rig.emu, &vm);
    // ~1,840 calls in the first round: crash at the 1,000th.
    let crashed = rig
        .run(
            std::slice::from_ref(&vm),
            &[("ADE2EAH_FAILPOINTS", "copy:chunk@1000")],
        )
        .await;
    assert_ne!(crashed.status.code(), Some(0), "{}", text(&crashed));
    let puts_before_resume = storage_puts(&rig);
    let resumed = rig.resume(&[]).await;
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));
    assert_migrated(&rig.emu, &vm, &before);
    let total = storage_puts(&rig);
    let calls_full = ((8u64 << 30) * 9 / 10 / (4 << 20)) as usize;
    assert!(
        puts_before_resume >= 900,
        "the crash came mid-round ({puts_before_resume} calls)"
    );
    assert!(
        total < calls_full + calls_full / 4,
        "resume did not start over: {total} calls for a {calls_full}-call disk"
    );
}

fn storage_puts(rig: &Rig) -> usize {
    rig.emu
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.path.starts_with("/md-") && r.status == 201)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_target_is_caught_before_the_source_vm_is_deleted() {
    let rig = Rig::new().await;
    let mut spec = windows("corrupt", 0);
    spec.os_disk.size_gib = 1;
    spec.os_disk.allocated_fraction = 0.25;
    let vm = rig.emu.add_vm(spec);
    let before = source_digests(&rig.emu, &vm);
    let vm_id_before = serde_json::to_value(rig.emu.state()).unwrap();
    let vm_id_before =
        find_by_id(&vm_id_before["vms"], &vm).unwrap()["model"]["properties"]["vmId"].clone();
    // Stop right after the offline round was journaled, before the seal.
    let crashed = run_with(
        &rig,
        std::slice::from_ref(&vm),
        &["--verify", "full"],
        &[(
            "ADE2EAH_FAILPOINTS",
            "after-journal:round-copied:final-copy",
        )],
    )
    .await;
    assert_ne!(crashed.status.code(), Some(0), "{}", text(&crashed));
    let status = rig.status().await;
    let target =
        ResourceId::parse(status["vms"][0]["disks"][0]["target"].as_str().unwrap()).unwrap();
    assert!(
        rig.emu.corrupt_disk(&target, 1 << 20, 4096),
        "target exists"
    );

    let parked = rig.resume(&[]).await;
    assert_eq!(parked.status.code(), Some(1), "{}", text(&parked));
    let status = rig.status().await;
    let v = &status["vms"][0];
    assert_eq!(v["outcome"], "parked");
    assert!(
        v["reason"].as_str().unwrap().contains("verification found"),
        "{v:#}"
    );
    let state = serde_json::to_value(rig.emu.state()).unwrap();
    let still = find_by_id(&state["vms"], &vm).expect("the source VM was not deleted");
    assert_eq!(
        still["model"]["properties"]["vmId"], vm_id_before,
        "same VM resource"
    );
    for (orig, digest) in &before {
        assert_eq!(
            rig.emu.disk_digest(orig).as_deref(),
            Some(digest.as_str()),
            "original disk untouched"
        );
    }

    let fixed = rig.resume(&[]).await;
    assert_eq!(
        fixed.status.code(),
        Some(0),
        "a resume re-copies the distrusted target: {}",
        text(&fixed)
    );
    assert_migrated(&rig.emu, &vm, &before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paged_range_lists_and_server_busy_storms_still_copy_exactly() {
    let storage = StorageConfig {
        page_list_page_size: 3,
        server_busy_rate: 0.3,
        seed: 9,
        ..Default::default()
    };
    let rig = Rig::with_config(EmulatorConfig {
        time_scale: TIME_SCALE,
        storage,
        ..Default::default()
    })
    .await;
    let mut spec = windows("busy", 1);
    spec.os_disk.size_gib = 1;
    spec.data_disks[0].size_gib = 1;
    let a = rig.emu.add_vm(spec);
    let before = source_digests(&rig.emu, &a);
    let out = rig.run(std::slice::from_ref(&a), &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_migrated(&rig.emu, &a, &before);
    let stats = rig.emu.blobs().stats();
    assert!(stats.server_busy > 30, "storms were injected: {stats:?}");
    assert!(
        stats.page_list_calls > 20,
        "range listings were paged: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precopy_rounds_zero_is_the_baseline_full_offline_copy() {
    let rig = Rig::new().await;
    let vm = rig.emu.add_vm(windows("baseline", 0));
    let before = source_digests(&rig.emu, &vm);
    let out = run_with(
        &rig,
        std::slice::from_ref(&vm),
        &["--precopy-rounds", "0"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_migrated(&rig.emu, &vm, &before);
    let rounds = &rounds_of(&rig.status().await)[0];
    assert_eq!(rounds.len(), 1, "{rounds:#?}");
    assert_eq!(rounds[0]["offline"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_mode_moves_every_byte_through_the_tool_exactly() {
    // Churn while it runs: delta rounds (written and trimmed ranges) go
    // through the relay too.
    let rig = Rig::with_config(EmulatorConfig {
        time_scale: 200.0,
        ..Default::default()
    })
    .await;
    let mut spec = windows("relay", 1);
    spec.os_disk.size_gib = 1;
    spec.os_disk.allocated_fraction = 0.3;
    spec.data_disks[0].size_gib = 1;
    spec.churn_bytes_per_sec = 256.0 * 1024.0;
    let vm = rig.emu.add_vm(spec);
    let before = source_digests(&rig.emu, &vm);
    let out = run_with(
        &rig,
        std::slice::from_ref(&vm),
        &["--transfer", "relay"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for (orig, new) in final_pairs(&rig.emu, &vm, &before) {
        let o = rig.emu.disk_digest(&orig).unwrap();
        assert_eq!(
            rig.emu.disk_digest(&new).as_deref(),
            Some(o.as_str()),
            "{new} equals {orig} as it was at deallocation"
        );
    }
    let stats = rig.emu.blobs().stats();
    assert_eq!(
        stats.put_page_from_url, 0,
        "relay never asks storage to read the source: {stats:?}"
    );
    assert!(
        stats.put_page > 100,
        "the bytes came as Put Page: {stats:?}"
    );
    assert!(rig.emu.active_sas().is_empty());
    assert_no_secrets(rig.state_dir(), &[&out]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_copy_cap_bounds_data_calls_across_vms() {
    let rig = Rig::new().await;
    let vms: Vec<ResourceId> = (0..3)
        .map(|i| {
            let mut spec = windows(&format!("capped-{i}"), 0);
            spec.os_disk.size_gib = 1;
            spec.os_disk.allocated_fraction = 0.2;
            rig.emu.add_vm(spec)
        })
        .collect();
    let befores: Vec<_> = vms.iter().map(|v| source_digests(&rig.emu, v)).collect();
    let out = run_with(
        &rig,
        &vms,
        &[
            "--max-parallel",
            "3",
            "--copy-parallel",
            "8",
            "--copy-parallel-total",
            "3",
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for (vm, before) in vms.iter().zip(&befores) {
        assert_migrated(&rig.emu, vm, before);
    }
    let stats = rig.emu.blobs().stats();
    // Three disks at 8 per disk would reach 24 without the global cap.
    assert!(
        stats.data_in_flight_max <= 3,
        "never more than the global cap in flight: {stats:?}"
    );
    assert!(
        stats.data_in_flight_max >= 2,
        "calls did overlap: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_during_a_run_shows_each_disk_with_bytes_rate_and_eta() {
    // Slow enough in simulated bandwidth that the rounds last a few seconds.
    let rig = Rig::with_config(EmulatorConfig {
        time_scale: 100.0,
        ..Default::default()
    })
    .await;
    let mut spec = windows("watched", 1);
    spec.os_disk.size_gib = 8;
    spec.os_disk.allocated_fraction = 0.5;
    spec.data_disks[0].size_gib = 4;
    spec.data_disks[0].allocated_fraction = 0.5;
    let vm = rig.emu.add_vm(spec);
    let watch = async {
        let mut seen = Vec::new();
        for _ in 0..600 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            let out = rig.state_json("status").await;
            let Ok(v) = serde_json::from_slice::<Value>(&out.stdout) else {
                continue;
            };
            if v["live"] != true {
                if v["vms"][0]["outcome"] == "verified" {
                    break; // the run ended; the journal is readable again
                }
                continue;
            }
            for d in v["run"]["vms"][0]["disks"].as_array().into_iter().flatten() {
                if d["rate_bytes_per_sec"].as_f64().unwrap_or(0.0) > 0.0
                    && d["eta_secs"].as_f64().is_some()
                    && d["done_bytes"].as_u64().unwrap() <= d["total_bytes"].as_u64().unwrap()
                {
                    seen.push(d["disk"].as_str().unwrap().to_string());
                }
            }
        }
        seen
    };
    let vms = [vm.clone()];
    let (out, mut seen) = tokio::join!(rig.run(&vms, &[]), watch);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen.len(),
        2,
        "status showed both disks live with a rate and an ETA: {seen:?}"
    );
    assert_no_secrets(rig.state_dir(), &[&out]);
}

/// Grants between the VM's deallocate and its delete (the offline window).
fn offline_grants(rig: &Rig, vm: &ResourceId) -> usize {
    let reqs = rig.emu.requests();
    let vm_path = vm.as_str().to_ascii_lowercase();
    let from = reqs
        .iter()
        .position(|r| {
            r.path
                .to_ascii_lowercase()
                .ends_with(&format!("{vm_path}/deallocate"))
        })
        .expect("deallocated");
    let to = reqs
        .iter()
        .position(|r| r.method == "DELETE" && r.path.eq_ignore_ascii_case(vm.as_str()))
        .expect("deleted");
    reqs[from..to]
        .iter()
        .filter(|r| r.path.ends_with("/beginGetAccess") && r.status < 300)
        .count()
}

/// The journaled record of `vm`.
fn journaled(rig: &Rig, vm: &ResourceId) -> ade2eah::step::VmRecord {
    ade2eah::journal::Journal::open_to_read(rig.state_dir())
        .and_then(|j| j.get(vm))
        .expect("journal readable")
}

/// Journal history events of `vm` named `event`.
fn events(rig: &Rig, vm: &ResourceId, event: &str) -> usize {
    let rec = journaled(rig, vm);
    rec.history.iter().filter(|h| h.event == event).count()
}

/// Migrates a new Windows VM `name` (OS + one data disk) byte-exact, with
/// grants that outlive the run: at 5000x, 6 h of SAS is 4.3 s of wall time,
/// which a loaded machine can overrun, and a renewal grants again (grants
/// are counted). 30 days is 8.6 minutes of wall time.
async fn migrate_with_long_grants(rig: &Rig, name: &str) -> ResourceId {
    let vm = rig.emu.add_vm(windows(name, 1));
    let before = source_digests(&rig.emu, &vm);
    let out = rig
        .run_with(std::slice::from_ref(&vm), &["--sas-hours", "720"], &[])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_migrated(&rig.emu, &vm, &before);
    vm
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offline_window_grants_each_disk_at_once_and_records_its_sub_phases() {
    let rig = Rig::new().await;
    let vm = migrate_with_long_grants(&rig, "window").await;
    // Between the deallocate and the VM delete, per disk: the round's three
    // grants (final snapshot, last online snapshot, target) and nothing
    // else: each online round was spot-checked while the VM ran, so the
    // offline round compares what it wrote through those same grants
    // before the seal (before: a fourth, a read grant on the sealed target).
    assert_eq!(
        offline_grants(&rig, &vm),
        2 * 3,
        "two disks, three grants each"
    );
    assert!(
        events(&rig, &vm, "spot-checked") >= 2,
        "every disk's online rounds were spot-checked"
    );
    assert_eq!(events(&rig, &vm, "spot-check-mismatch"), 0);
    let rec = journaled(&rig, &vm);
    assert!(rec.disks.iter().all(|d| d.verified && d.copied));
    let spans = serde_json::to_value(&rec.spans).unwrap();
    let spans = spans.as_array().cloned().unwrap_or_default();
    for phase in ["round-snapshot", "grant", "copy", "verify-copy", "revoke"] {
        assert!(
            spans
                .iter()
                .any(|s| s["phase"] == phase && s["offline"] == true),
            "an offline {phase} span: {spans:#?}"
        );
    }
    assert!(
        spans
            .iter()
            .any(|s| s["phase"] == "verify-copy" && s["offline"] == false),
        "an online spot check span"
    );
    assert!(
        spans.iter().any(|s| s["phase"] == "copy"
            && s["offline"] == false
            && s["bytes"].as_u64() > Some(0)),
        "online copies carry their bytes"
    );
    assert!(rig.emu.active_sas().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_grant_that_cannot_read_falls_back_to_verifying_after_the_seal() {
    // The pessimistic reading of facts §3.4: the upload SAS writes and lists
    // but does not read data. Spot checks cannot run; the offline round
    // seals first, then compares through a read grant on the sealed target.
    let rig = Rig::with_config(EmulatorConfig {
        time_scale: TIME_SCALE,
        storage: StorageConfig {
            write_grant_reads_data: false,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let vm = migrate_with_long_grants(&rig, "noread").await;
    assert_eq!(events(&rig, &vm, "spot-checked"), 0);
    assert_eq!(
        offline_grants(&rig, &vm),
        2 * 4,
        "two disks: the round's three grants and a read grant on the sealed target"
    );
    let rec = journaled(&rig, &vm);
    assert!(rec.disks.iter().all(|d| d.verified && d.copied));
    assert!(rig.emu.active_sas().is_empty());
}

/// A one-disk VM (1 GiB, a quarter allocated) run until `failpoint`
/// kills the run, then 64 MiB of its target flipped: allocated bytes that
/// now differ, and pages the source never wrote that the target now holds
/// (so the allocation maps differ, which every check compares).
async fn crash_then_damage_target(
    rig: &Rig,
    name: &str,
    args: &[&str],
    failpoint: &str,
) -> (ResourceId, Vec<(ResourceId, String)>, ResourceId) {
    let mut spec = windows(name, 0);
    spec.os_disk.size_gib = 1;
    spec.os_disk.allocated_fraction = 0.25;
    let vm = rig.emu.add_vm(spec);
    let before = source_digests(&rig.emu, &vm);
    let crashed = run_with(
        rig,
        std::slice::from_ref(&vm),
        args,
        &[("ADE2EAH_FAILPOINTS", failpoint)],
    )
    .await;
    assert_ne!(crashed.status.code(), Some(0), "{}", text(&crashed));
    let status = rig.status().await;
    let target =
        ResourceId::parse(status["vms"][0]["disks"][0]["target"].as_str().unwrap()).unwrap();
    assert!(
        rig.emu.corrupt_disk(&target, 8 << 20, 64 << 20),
        "target exists"
    );
    (vm, before, target)
}

/// The resume parks the VM on the verification, before anything is
/// deleted; the next resume copies again and migrates it.
async fn parks_on_verification_then_recovers(
    rig: &Rig,
    vm: &ResourceId,
    before: &[(ResourceId, String)],
    between: impl FnOnce(),
) {
    let parked = rig.resume(&[]).await;
    assert_eq!(parked.status.code(), Some(1), "{}", text(&parked));
    let status = rig.status().await;
    let v = &status["vms"][0];
    assert_eq!(v["outcome"], "parked");
    assert!(
        v["reason"].as_str().unwrap().contains("verification found"),
        "{v:#}"
    );
    assert!(
        rig.emu.vm_get(vm).is_some(),
        "the source VM was not deleted"
    );
    for (orig, digest) in before {
        assert_eq!(
            rig.emu.disk_digest(orig).as_deref(),
            Some(digest.as_str()),
            "original disk untouched"
        );
    }
    between();
    let fixed = rig.resume(&[]).await;
    assert_eq!(fixed.status.code(), Some(0), "{}", text(&fixed));
    assert_migrated(&rig.emu, vm, before);
    assert!(rig.emu.active_sas().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spot_check_that_finds_a_difference_makes_the_final_verification_full() {
    let rig = Rig::new().await;
    // Stop after the (only) online round copied, before its spot check.
    let (vm, before, _) =
        crash_then_damage_target(&rig, "spotbad", &["--sas-hours", "720"], "copy:after-copy").await;
    parks_on_verification_then_recovers(&rig, &vm, &before, || {
        assert!(
            events(&rig, &vm, "spot-check-mismatch") >= 1,
            "the online spot check saw it"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_after_a_passed_spot_check_is_caught_by_the_check_before_the_seal() {
    let rig = Rig::new().await;
    // Stop right after the (only) online round's spot check passed.
    let (vm, before, target) = crash_then_damage_target(
        &rig,
        "spotlate",
        &["--sas-hours", "720", "--precopy-rounds", "1"],
        "after-journal:spot-checked:pre-copy",
    )
    .await;
    assert_eq!(events(&rig, &vm, "spot-checked"), 1);
    parks_on_verification_then_recovers(&rig, &vm, &before, || {
        // It was the check before the seal: once deallocated, the target
        // was granted once (to write), never read through a grant of its own.
        let reqs = rig.emu.requests();
        let from = reqs
            .iter()
            .position(|r| r.path.ends_with("/deallocate"))
            .expect("deallocated");
        let target_grants = reqs[from..]
            .iter()
            .filter(|r| {
                r.path
                    .eq_ignore_ascii_case(&format!("{}/beginGetAccess", target.as_str()))
                    && r.status < 300
            })
            .count();
        assert_eq!(target_grants, 1);
    })
    .await;
}
