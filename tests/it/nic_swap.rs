//! `--nic-swap` (issue 15, part 4): a placeholder NIC replaces the VM's
//! NICs before the delete, the re-create names the original NICs, the
//! placeholder is deleted once the new VM runs (or once a rollback has put
//! the original NICs back); when Azure reserves the
//! swapped NICs anyway (the emulator's pessimistic `reserve_swapped_nics`),
//! the re-create waits out the hold as without the swap.
//!
//! The NIC reservation is made long (25,000 simulated seconds, 5 s of wall
//! time at the tests' scale) so that whether the re-create meets it does
//! not depend on how fast a loaded machine gets from the delete to the
//! re-create: with the swap it never meets one, with the pessimistic
//! emulator it always does (the engine waits a stated 180 s hold out for
//! up to three times 180 s of wall time before spending attempts).

use ade2eah::emulator::EmulatorConfig;
use ade2eah::model::ResourceId;
use serde_json::Value;

use crate::support::*;

/// Simulated seconds a NIC stays reserved in these tests.
const LONG_HOLD_SECS: f64 = 25_000.0;

async fn new_rig(reserve_swapped_nics: bool) -> Rig {
    Rig::with_config(EmulatorConfig {
        time_scale: TIME_SCALE,
        nic_reservation_secs: LONG_HOLD_SECS,
        reserve_swapped_nics,
        ..Default::default()
    })
    .await
}

/// The NIC ids of the VM's model in the emulator, case-folded.
fn nics_of(rig: &Rig, vm: &ResourceId) -> Vec<String> {
    let model = rig.emu.vm_get(vm).expect("the VM exists");
    model["properties"]["networkProfile"]["networkInterfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["id"].as_str().map(str::to_ascii_lowercase))
        .collect()
}

/// Every NIC id in the emulator, case-folded.
fn all_nics(rig: &Rig) -> Vec<String> {
    let st = serde_json::to_value(rig.emu.state()).unwrap();
    st["nics"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["id"].as_str().map(str::to_ascii_lowercase))
        .collect()
}

/// VM PUTs the emulator refused with 400 (the NIC reservation).
fn refused_creates(rig: &Rig, vm: &ResourceId) -> usize {
    rig.emu
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.path.eq_ignore_ascii_case(vm.as_str()))
        .filter(|r| r.status == 400)
        .count()
}

/// The journal's spans of `vm` as JSON.
fn spans(rig: &Rig, vm: &ResourceId) -> Vec<Value> {
    let rec = ade2eah::journal::Journal::open_to_read(rig.state_dir())
        .and_then(|j| j.get(vm))
        .expect("journal readable");
    serde_json::to_value(&rec.spans)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A migration with `--nic-swap` that ended well: verified, the same
/// bytes, the original NICs on the new VM and the placeholder deleted.
async fn migrated_with_swap(pessimistic: bool, name: &str) -> (Rig, ResourceId) {
    let rig = new_rig(pessimistic).await;
    let vm = rig.emu.add_vm(windows(name, 1));
    let before = source_digests(&rig.emu, &vm);
    let original_nics = nics_of(&rig, &vm);
    let nics_before = all_nics(&rig);
    let out = rig
        .run_with(std::slice::from_ref(&vm), &["--nic-swap"], &[])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_migrated(&rig.emu, &vm, &before);
    assert_eq!(
        nics_of(&rig, &vm),
        original_nics,
        "the original NICs, not the placeholder"
    );
    assert_eq!(all_nics(&rig), nics_before, "the placeholder is deleted");
    assert_no_secrets(rig.state_dir(), &[&out]);
    (rig, vm)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_swap_frees_the_nics_so_the_recreate_meets_no_hold() {
    let (rig, vm) = migrated_with_swap(false, "swap").await;
    assert_eq!(refused_creates(&rig, &vm), 0, "no NicReservedForAnotherVm");
    let reqs = rig.emu.requests();
    let placeholder = reqs
        .iter()
        .find(|r| r.method == "PUT" && r.path.contains("networkInterfaces"))
        .map(|r| r.path.to_ascii_lowercase())
        .expect("a placeholder NIC was created");
    // Created before the deallocate; swapped in (a VM PATCH) before the delete.
    let at = |pred: &dyn Fn(&ade2eah::emulator::RequestLog) -> bool| {
        reqs.iter().position(pred).expect("request sent")
    };
    let created = at(&|r| r.method == "PUT" && r.path.to_ascii_lowercase() == placeholder);
    let deallocated = at(&|r| r.path.to_ascii_lowercase().ends_with("/deallocate"));
    let deleted = at(&|r| r.method == "DELETE" && r.path.eq_ignore_ascii_case(vm.as_str()));
    let swapped = reqs[deallocated..deleted]
        .iter()
        .any(|r| r.method == "PATCH" && r.path.eq_ignore_ascii_case(vm.as_str()));
    assert!(created < deallocated, "placeholder made while the VM runs");
    assert!(swapped, "a VM PATCH between the deallocate and the delete");
    let placeholder_deleted = reqs[deleted..]
        .iter()
        .any(|r| r.method == "DELETE" && r.path.to_ascii_lowercase() == placeholder);
    assert!(
        placeholder_deleted,
        "the placeholder is deleted after the re-create"
    );
    assert!(
        !spans(&rig, &vm).iter().any(|s| s["phase"] == "nic-hold"),
        "no NIC hold in the timeline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_azure_reserves_the_swapped_nics_anyway_the_recreate_waits_the_hold_out() {
    let (rig, vm) = migrated_with_swap(true, "swapheld").await;
    assert!(
        refused_creates(&rig, &vm) > 0,
        "the re-create met the reservation"
    );
    assert!(
        spans(&rig, &vm).iter().any(|s| s["phase"] == "nic-hold"),
        "the hold is in the timeline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_placeholder_means_no_swap_not_a_parked_vm() {
    // An Azure Policy that denies the placeholder NIC (any NIC with a
    // dynamic private IP in the group): the run goes on without the swap
    // and waits out the hold.
    let rig = new_rig(false).await;
    let vm = rig.emu.add_vm(windows("swapdeny", 1));
    let before = source_digests(&rig.emu, &vm);
    let original_nics = nics_of(&rig, &vm);
    let nics_before = all_nics(&rig);
    let scope = format!(
        "/subscriptions/{}/resourceGroups/{}",
        vm.subscription(),
        vm.resource_group()
    );
    rig.emu.add_policy_deny(
        &scope,
        "deny-dynamic-nics",
        "/properties/ipConfigurations/0/properties/privateIPAllocationMethod",
        Value::String("Dynamic".into()),
    );
    let out = rig
        .run_with(std::slice::from_ref(&vm), &["--nic-swap"], &[])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_migrated(&rig.emu, &vm, &before);
    assert_eq!(nics_of(&rig, &vm), original_nics);
    assert_eq!(all_nics(&rig), nics_before, "no placeholder exists");
    let refused_puts = rig
        .emu
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.path.contains("networkInterfaces") && r.status == 403)
        .count();
    assert_eq!(refused_puts, 1, "the placeholder was asked for once");
    assert!(refused_creates(&rig, &vm) > 0, "the hold was waited out");
    let rec = ade2eah::journal::Journal::open_to_read(rig.state_dir())
        .and_then(|j| j.get(&vm))
        .unwrap();
    assert!(rec.facts.as_ref().unwrap().nic_swap_refused);
}

/// A run with `--nic-swap` killed right after the swap: the rig, the VM,
/// its original NICs and every NIC id before the run.
async fn crashed_after_the_swap(name: &str) -> (Rig, ResourceId, Vec<String>, Vec<String>) {
    let rig = new_rig(false).await;
    let vm = rig.emu.add_vm(windows(name, 1));
    let original_nics = nics_of(&rig, &vm);
    let nics_before = all_nics(&rig);
    let crashed = rig
        .run_with(
            std::slice::from_ref(&vm),
            &["--nic-swap"],
            &[("ADE2EAH_FAILPOINTS", "after-act:swap-nics@1")],
        )
        .await;
    assert!(
        String::from_utf8_lossy(&crashed.stderr).contains("failpoint"),
        "{}",
        text(&crashed)
    );
    assert_ne!(nics_of(&rig, &vm), original_nics, "the placeholder is in");
    (rig, vm, original_nics, nics_before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_swap_resumes_and_a_rollback_puts_the_original_nics_back() {
    // Resume: the run finishes with the original NICs and no placeholder.
    let (rig, vm, original_nics, nics_before) = crashed_after_the_swap("swapcrash").await;
    let out = rig.resume(&[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(nics_of(&rig, &vm), original_nics);
    assert_eq!(all_nics(&rig), nics_before);

    // Roll back: the original VM runs with its own NICs again.
    let (rig, vm, original_nics, nics_before) = crashed_after_the_swap("swaprb").await;
    let out = rig.rollback(std::slice::from_ref(&vm), &[], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        nics_of(&rig, &vm),
        original_nics,
        "the original NICs are back"
    );
    assert_eq!(
        all_nics(&rig),
        nics_before,
        "and the placeholder is deleted"
    );
    let model = rig.emu.vm_get(&vm).unwrap();
    assert_ne!(
        model["properties"]["securityProfile"]["encryptionAtHost"],
        Value::Bool(true)
    );
    assert_eq!(rig.status().await["vms"][0]["outcome"], "rolled-back");
}
