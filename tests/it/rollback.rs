//! Rollback (issue 13): from every step of the migration (crash-sweep style:
//! the run is killed at each step, then `ade2eah rollback`), automatically
//! after a refused re-create, and as a no-op where there is nothing to undo.
//! Each case checks the original VM is back, running on its original disks
//! (byte-identical to before the run), with its original delete options
//! and tags, and no SAS left open.

use std::process::Output;
use std::sync::Arc;

use ade2eah::emulator::{DeleteOption, Emulator, VmSpec};
use ade2eah::model::ResourceId;
use ade2eah::step::Step;
use serde_json::Value;

use crate::support::*;

/// Lease tag the engine keeps on a VM it works on (expired, not removed,
/// when it is done with it); not part of the VM's own tags.
const LEASE_TAG: &str = "ade2eah-lease";

/// Windows, OS + one data disk, every disk and NIC `deleteOption=Delete`,
/// with tags: what a rollback must give back exactly.
fn spec(name: &str) -> VmSpec {
    let mut s = windows(name, 1);
    s.delete_option = DeleteOption::Delete;
    s.tags.insert("owner".into(), "team-a".into());
    s.tags.insert("cost-center".into(), "42".into());
    s
}

fn vm_entry(emu: &Emulator, vm: &ResourceId) -> Option<Value> {
    let st = serde_json::to_value(emu.state()).unwrap();
    find_by_id(&st["vms"], vm).cloned()
}

/// The VM's delete options (os, data by LUN, NICs) and tags without the lease.
fn shape(model: &Value) -> (Vec<String>, Value) {
    let sp = &model["properties"]["storageProfile"];
    let mut opts = vec![format!("os={}", sp["osDisk"]["deleteOption"])];
    for d in sp["dataDisks"].as_array().into_iter().flatten() {
        opts.push(format!("lun{}={}", d["lun"], d["deleteOption"]));
    }
    for n in model["properties"]["networkProfile"]["networkInterfaces"]
        .as_array()
        .into_iter()
        .flatten()
    {
        opts.push(format!("{}={}", n["id"], n["properties"]["deleteOption"]));
    }
    let mut tags = model["tags"].clone();
    if let Some(t) = tags.as_object_mut() {
        t.remove(LEASE_TAG);
    }
    (opts, tags)
}

/// The original VM as before the run: running on the same disks with the
/// same bytes, same delete options and tags, EAH off, no SAS open.
fn check_restored(
    emu: &Emulator,
    vm: &ResourceId,
    before: &[(ResourceId, String)],
    original: &Value,
) -> Result<(), String> {
    let entry = vm_entry(emu, vm).ok_or("the VM does not exist")?;
    let power = entry["emulator"]["power"].as_str().unwrap_or_default();
    if power != "running" {
        return Err(format!("power state {power}, want running"));
    }
    let st = serde_json::to_value(emu.state()).unwrap();
    let now = disks_of_vm_model(&st, vm);
    let was: Vec<ResourceId> = before.iter().map(|(d, _)| d.clone()).collect();
    if now != was {
        return Err(format!("disks {now:?}, want the original {was:?}"));
    }
    for (d, digest) in before {
        if emu.disk_digest(d).as_deref() != Some(digest.as_str()) {
            return Err(format!("{d} is not byte-identical to before the run"));
        }
    }
    let model = &entry["model"];
    if shape(model) != shape(original) {
        return Err(format!(
            "delete options / tags {:?}, want {:?}",
            shape(model),
            shape(original)
        ));
    }
    if model["properties"]["securityProfile"]["encryptionAtHost"] == Value::Bool(true) {
        return Err("encryption at host is on".into());
    }
    if !emu.active_sas().is_empty() {
        return Err(format!("SAS left open: {:?}", emu.active_sas()));
    }
    Ok(())
}

/// Every disk and snapshot id in the emulator, case-folded.
fn resource_ids(emu: &Emulator) -> Vec<String> {
    let st = serde_json::to_value(emu.state()).unwrap();
    ["disks", "snapshots"]
        .iter()
        .flat_map(|k| st[*k].as_array().cloned().unwrap_or_default())
        .filter_map(|d| d["id"].as_str().map(str::to_ascii_lowercase))
        .collect()
}

async fn vm_status(rig: &Rig) -> Value {
    rig.status().await["vms"][0].clone()
}

/// The crash point that stops a run once it has reached `step`.
fn crash_at(step: Step) -> String {
    match step {
        // Reached at once: stop after the first call was journaled.
        Step::Snapshot => "after-intent:create-snapshot@1".into(),
        s => format!("after-journal:advance:{}@1", s.name()),
    }
}

/// One case: run until killed at `step`, then roll back.
async fn rollback_case(step: Step) -> Result<(), String> {
    let rig = Rig::new().await;
    let vm = rig.emu.add_vm(spec("rb"));
    let before = source_digests(&rig.emu, &vm);
    let original = vm_entry(&rig.emu, &vm).unwrap()["model"].clone();
    let originals = resource_ids(&rig.emu);
    let point = crash_at(step);
    let crashed = rig
        .run(
            std::slice::from_ref(&vm),
            &[("ADE2EAH_FAILPOINTS", point.as_str())],
        )
        .await;
    if !String::from_utf8_lossy(&crashed.stderr).contains("failpoint") {
        return Err(format!("{point}: did not fire: {}", text(&crashed)));
    }
    let mut outs: Vec<Output> = vec![crashed];
    let out = rig.rollback(std::slice::from_ref(&vm), &[], &[]).await;
    let code = out.status.code();
    outs.push(out);
    if code != Some(0) {
        return Err(format!(
            "{point}: rollback exit {code:?}: {}",
            text(outs.last().unwrap())
        ));
    }
    check_restored(&rig.emu, &vm, &before, &original).map_err(|e| format!("{point}: {e}"))?;
    let st = vm_status(&rig).await;
    if st["outcome"] != "rolled-back" {
        return Err(format!("{point}: outcome {}", st["outcome"]));
    }
    if st["open_sas"].as_array().is_some_and(|a| !a.is_empty()) {
        return Err(format!("{point}: journal still lists open SAS"));
    }
    // New disks and snapshots are kept and listed for cleanup: every one
    // that exists now and did not before is listed.
    let listed: Vec<String> = st["rollback"]["left_to_clean"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_ascii_lowercase))
        .collect();
    let state = serde_json::to_value(rig.emu.state()).unwrap();
    for kind in ["disks", "snapshots"] {
        for d in state[kind].as_array().into_iter().flatten() {
            let id = d["id"].as_str().unwrap_or_default().to_ascii_lowercase();
            if !originals.contains(&id) && !listed.contains(&id) {
                return Err(format!("{point}: {id} exists but is not listed to clean"));
            }
        }
    }
    let refs: Vec<&Output> = outs.iter().collect();
    assert_no_secrets(rig.state_dir(), &refs);
    Ok(())
}

/// Rollback from every step of the forward state machine (one crash point
/// per step, one VM each, three cases at a time).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollback_from_every_step_restores_the_original_vm() {
    let steps: Vec<Step> = Step::ORDER
        .iter()
        .copied()
        .filter(|s| *s != Step::Done)
        .collect();
    let sem = Arc::new(tokio::sync::Semaphore::new(3));
    let mut tasks = Vec::new();
    for step in steps.clone() {
        let sem = sem.clone();
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire_owned().await.unwrap();
            rollback_case(step).await
        }));
    }
    let mut failures = Vec::new();
    for t in tasks {
        if let Err(e) = t.await.expect("case task") {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} steps failed:\n{}",
        failures.len(),
        steps.len(),
        failures.join("\n\n")
    );
}

/// A deny policy on VMs with encryption at host: the re-create after the
/// delete is refused terminally; the run brings the original back by itself
/// (outcome `rolled-back` with the refusal as reason, exit 1). A second
/// `rollback` is a no-op.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_recreate_is_rolled_back_automatically() {
    let (rig, b) = refused_recreate("auto").await;
    let (vm, before, original) = (b.vm, b.digests, b.model);
    let out = rig.run(std::slice::from_ref(&vm), &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let st = vm_status(&rig).await;
    assert_eq!(st["outcome"], "rolled-back", "{st}");
    let reason = st["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("disallowed by policy"), "{reason}");
    assert!(
        st["rollback"]["ade"]
            .as_str()
            .unwrap_or_default()
            .contains("left off"),
        "{st}"
    );
    assert!(
        !st["rollback"]["left_to_clean"]
            .as_array()
            .unwrap()
            .is_empty(),
        "the new disks and snapshots are listed for cleanup: {st}"
    );
    check_restored(&rig.emu, &vm, &before, &original).unwrap();
    // The VM was deleted and PUT back from the journal: exactly one
    // successful create after the delete (the restore), after the refusal.
    let reqs = rig.emu.requests();
    let on_vm = |r: &&ade2eah::emulator::RequestLog| {
        r.path
            .trim_end_matches('/')
            .eq_ignore_ascii_case(vm.as_str())
    };
    assert!(
        reqs.iter()
            .filter(on_vm)
            .any(|r| r.method == "PUT" && r.status == 403),
        "the re-create was refused"
    );

    let mutating = rig.mutating_requests();
    let again = rig.rollback(std::slice::from_ref(&vm), &[], &[]).await;
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already rolled back"),
        "{}",
        text(&again)
    );
    assert_eq!(rig.mutating_requests(), mutating, "a no-op sends nothing");
}

/// A VM before anything ran: its disks' digests and its model.
struct Before {
    vm: ResourceId,
    digests: Vec<(ResourceId, String)>,
    model: Value,
}

/// A rig with one VM (see [`spec`]) whose re-create a deny policy on
/// encryption at host refuses, and what it was before the run.
async fn refused_recreate(name: &str) -> (Rig, Before) {
    let rig = Rig::new().await;
    let vm = rig.emu.add_vm(spec(name));
    let digests = source_digests(&rig.emu, &vm);
    let model = vm_entry(&rig.emu, &vm).unwrap()["model"].clone();
    deny_eah(&rig, &vm);
    (rig, Before { vm, digests, model })
}

/// `run --no-auto-rollback` of a refused re-create: exit 1, parked, deleted.
async fn parked_deleted(rig: &Rig, vm: &ResourceId) {
    let out = rig
        .run_with(std::slice::from_ref(vm), &["--no-auto-rollback"], &[])
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let st = vm_status(rig).await;
    assert_eq!(st["outcome"], "parked", "{st}");
    assert_eq!(st["step"], "recreate", "{st}");
    assert!(vm_entry(&rig.emu, vm).is_none(), "left deleted");
}

fn deny_eah(rig: &Rig, vm: &ResourceId) {
    let rg = format!(
        "/subscriptions/{}/resourceGroups/{}",
        vm.subscription(),
        vm.resource_group()
    );
    rig.emu.add_policy_deny(
        &rg,
        "deny-eah",
        "/properties/securityProfile/encryptionAtHost",
        Value::Bool(true),
    );
}

/// `--no-auto-rollback` leaves the VM deleted and parked; the operator's
/// `rollback` then brings it back (exit 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_auto_rollback_parks_and_the_rollback_command_restores() {
    let (rig, b) = refused_recreate("parked").await;
    let (vm, before, original) = (b.vm, b.digests, b.model);
    parked_deleted(&rig, &vm).await;

    let out = rig
        .rollback(std::slice::from_ref(&vm), &["--reenable-ade"], &[])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    check_restored(&rig.emu, &vm, &before, &original).unwrap();
    let st = vm_status(&rig).await;
    assert_eq!(st["outcome"], "rolled-back", "{st}");
    assert!(
        st["rollback"]["ade"]
            .as_str()
            .unwrap_or_default()
            .contains("re-enabled"),
        "{st}"
    );
    // ADE is on again with the journaled key vault: the extension is back
    // with EnableEncryption and the original KeyVaultURL.
    let entry = vm_entry(&rig.emu, &vm).unwrap();
    let ade = |m: &Value| {
        m["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["properties"]["publisher"] == "Microsoft.Azure.Security")
            .map(|r| r["properties"]["settings"].clone())
    };
    let now = ade(&entry["model"]).expect("ADE extension re-installed");
    let was = ade(&original).expect("ADE extension in the original model");
    assert_eq!(now["EncryptionOperation"], "EnableEncryption", "{now}");
    assert_eq!(now["KeyVaultURL"], was["KeyVaultURL"], "{now}");
    assert_eq!(
        now["KeyVaultResourceId"], was["KeyVaultResourceId"],
        "{now}"
    );
}

/// A rollback killed in the middle (after the restore PUT was journaled)
/// is finished by `resume`; the VM is restored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_killed_midway_is_finished_by_resume() {
    let (rig, b) = refused_recreate("midway").await;
    let (vm, before, original) = (b.vm, b.digests, b.model);
    parked_deleted(&rig, &vm).await;
    let out = rig
        .rollback(
            std::slice::from_ref(&vm),
            &[],
            &[("ADE2EAH_FAILPOINTS", "after-act:restore-vm@1")],
        )
        .await;
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("failpoint"),
        "{}",
        text(&out)
    );
    assert_eq!(vm_status(&rig).await["outcome"], "in-progress");
    let out = rig.resume(&[]).await;
    // A rolled-back VM counts as not migrated for `resume`'s exit code.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(vm_status(&rig).await["outcome"], "rolled-back");
    check_restored(&rig.emu, &vm, &before, &original).unwrap();
    let restores = rig
        .emu
        .requests()
        .iter()
        .filter(|r| {
            r.method == "PUT"
                && r.path
                    .trim_end_matches('/')
                    .eq_ignore_ascii_case(vm.as_str())
                && (200..300).contains(&r.status)
        })
        .count();
    assert_eq!(restores, 1, "the original VM was PUT back exactly once");
}

/// A VM the run never changed: `rollback` says so, sends nothing, exit 0.
/// A verified VM needs `--force` (exit 2, nothing changed without it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_started_is_a_no_op_and_verified_needs_force() {
    let rig = Rig::new().await;
    let vm = rig.emu.add_vm(spec("idle"));
    let crashed = rig
        .run(
            std::slice::from_ref(&vm),
            &[("ADE2EAH_FAILPOINTS", "before-intent:create-snapshot@1")],
        )
        .await;
    assert!(String::from_utf8_lossy(&crashed.stderr).contains("failpoint"));
    let mutating = rig.mutating_requests();
    let out = rig.rollback(std::slice::from_ref(&vm), &[], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("never changed"),
        "{}",
        text(&out)
    );
    assert_eq!(rig.mutating_requests(), mutating, "a no-op sends nothing");

    // Finish the migration, then roll the verified VM back.
    let before = source_digests(&rig.emu, &vm);
    let original = vm_entry(&rig.emu, &vm).unwrap()["model"].clone();
    let r = rig.resume(&[]).await;
    assert_eq!(r.status.code(), Some(0), "{}", text(&r));
    let mutating = rig.mutating_requests();
    let out = rig.rollback(std::slice::from_ref(&vm), &[], &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--force"),
        "{}",
        text(&out)
    );
    assert_eq!(rig.mutating_requests(), mutating, "refused: nothing sent");
    assert_eq!(vm_status(&rig).await["outcome"], "verified");

    let out = rig
        .rollback(std::slice::from_ref(&vm), &["--force"], &[])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    check_restored(&rig.emu, &vm, &before, &original).unwrap();
    assert_eq!(vm_status(&rig).await["outcome"], "rolled-back");
}
