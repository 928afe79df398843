//! Target encryption (a source DES carried, `--disk-encryption-set`,
//! `--platform-keys`), validate-before-delete, verification beyond the
//! flag and `--guest-check` (issue 12, deliverables 3, 5, 6, 7): the real
//! binary against the emulator's disk encryption sets, zone restrictions,
//! quotas and Run Command.

use ade2eah::emulator::{EmulatorConfig, VmSpec};
use ade2eah::model::ResourceId;
use serde_json::{Value, json};

use crate::support::*;

const CMK: &str = "EncryptionAtRestWithCustomerKey";
const PMK: &str = "EncryptionAtRestWithPlatformKey";

/// The `encryption` of disk `id` in the emulator's state.
fn encryption_of(rig: &Rig, id: &ResourceId) -> Value {
    let state = serde_json::to_value(rig.emu.state()).unwrap();
    let d = find_by_id(&state["disks"], id).unwrap_or_else(|| panic!("disk {id}"));
    d["model"]["properties"]["encryption"].clone()
}

/// The disks attached to `vm` now.
fn attached(rig: &Rig, vm: &ResourceId) -> Vec<ResourceId> {
    disks_of_vm_model(&serde_json::to_value(rig.emu.state()).unwrap(), vm)
}

fn power_of(rig: &Rig, vm: &ResourceId) -> String {
    let state = serde_json::to_value(rig.emu.state()).unwrap();
    find_by_id(&state["vms"], vm).unwrap()["emulator"]["power"]
        .as_str()
        .unwrap()
        .to_string()
}

fn record<'a>(st: &'a Value, vm: &ResourceId) -> &'a Value {
    st["vms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"].as_str().unwrap().eq_ignore_ascii_case(vm.as_str()))
        .unwrap()
}

fn zonal(name: &str, zone: &str) -> VmSpec {
    let mut s = windows(name, 1);
    s.zone = Some(zone.into());
    s
}

/// A source on a DES: every new disk is created on the same DES (not
/// silently on platform keys), the run verifies it, and the bytes match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_des_is_carried_to_every_new_disk() {
    let rig = Rig::new().await;
    let vm = rig.emu.add_vm(windows("cmk-carry", 1));
    let des = rig.emu.add_des("rg-keys", "des-weu", "westeurope");
    for d in attached(&rig, &vm) {
        assert!(rig.emu.set_disk_encryption_set(&d, &des));
    }
    let before = source_digests(&rig.emu, &vm);
    let out = rig.run(std::slice::from_ref(&vm), &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(record(&rig.status().await, &vm)["outcome"], "verified");
    assert_migrated(&rig.emu, &vm, &before);
    for d in attached(&rig, &vm) {
        assert_eq!(
            encryption_of(&rig, &d),
            json!({"type": CMK, "diskEncryptionSetId": des.as_str()}),
            "{d} keeps the source's customer-managed key"
        );
    }
}

/// `--disk-encryption-set` puts every new disk on that DES (its sources
/// on platform keys); with `--platform-keys` too it is bad input and
/// nothing is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requested_des_puts_every_new_disk_on_it() {
    let rig = Rig::new().await;
    let vm = rig.emu.add_vm(windows("cmk-ask", 1));
    let des = rig.emu.add_des("rg-keys", "des-req", "westeurope");
    let vms = std::slice::from_ref(&vm);

    let both = rig
        .run_with(
            vms,
            &["--disk-encryption-set", des.as_str(), "--platform-keys"],
            &[],
        )
        .await;
    assert_eq!(both.status.code(), Some(2), "{}", text(&both));
    assert!(text(&both).contains("conflict"), "{}", text(&both));
    assert_eq!(rig.mutating_requests(), 0, "bad input sends nothing");

    let out = rig
        .run_with(vms, &["--disk-encryption-set", des.as_str()], &[])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let new = attached(&rig, &vm);
    assert_eq!(new.len(), 2);
    for d in &new {
        assert_eq!(
            encryption_of(&rig, d),
            json!({"type": CMK, "diskEncryptionSetId": des.as_str()}),
            "{d}"
        );
    }
}

/// `--platform-keys` takes a source on a DES back to platform keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_keys_put_cmk_sources_on_platform_keys() {
    let rig = Rig::new().await;
    let vm = rig.emu.add_vm(windows("pmk-ask", 0));
    let des = rig.emu.add_des("rg-keys", "des-pmk", "westeurope");
    for d in attached(&rig, &vm) {
        assert!(rig.emu.set_disk_encryption_set(&d, &des));
    }
    let out = rig
        .run_with(std::slice::from_ref(&vm), &["--platform-keys"], &[])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for d in attached(&rig, &vm) {
        assert_eq!(encryption_of(&rig, &d), json!({"type": PMK}), "{d}");
    }
}

/// A DES in another region: `plan` reports it as a blocker (with the
/// Defender finding only for usable DESs), and a run parks the VM before
/// its first change, the VM still running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_des_in_another_region_is_a_finding_and_parks_before_any_change() {
    let rig = Rig::new().await;
    let vm = rig.emu.add_vm(windows("cmk-far", 0));
    let far = rig.emu.add_des("rg-keys", "des-neu", "northeurope");
    let near = rig.emu.add_des("rg-keys", "des-weu2", "westeurope");
    let disks_before = serde_json::to_value(rig.emu.state()).unwrap()["disks"]
        .as_array()
        .unwrap()
        .len();

    let plan = |des: ResourceId| {
        let rig = &rig;
        async move {
            let a: Vec<String> = vec![
                "plan".into(),
                "--arm-endpoint".into(),
                rig.emu.base_url(),
                "--auth".into(),
                "none".into(),
                "--subscription".into(),
                rig.emu.subscription().to_string(),
                "--output".into(),
                "json".into(),
                "--disk-encryption-set".into(),
                des.to_string(),
            ];
            let out = bin(&a, &[]).await;
            assert_eq!(out.status.code(), Some(0), "{}", text(&out));
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            let codes: Vec<(String, String)> = v["vms"][0]["findings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| {
                    (
                        f["code"].as_str().unwrap().to_string(),
                        f["message"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            (v["vms"][0]["eligible"].clone(), codes)
        }
    };
    let (eligible, codes) = plan(far.clone()).await;
    assert_eq!(eligible, false, "{codes:?}");
    let des = codes.iter().find(|(c, _)| c == "disk-encryption-set");
    assert!(
        des.is_some_and(|(_, m)| m.contains("northeurope")),
        "{codes:?}"
    );
    let (eligible, codes) = plan(near.clone()).await;
    assert_eq!(eligible, true, "{codes:?}");
    assert!(
        codes
            .iter()
            .any(|(c, m)| c == "target-encryption" && m.contains("CMK via des-weu2")),
        "{codes:?}"
    );
    assert!(
        codes
            .iter()
            .any(|(c, m)| c == "defender-cmk-scan"
                && m.contains("0c7668b5-3260-4ad0-9f53-34ed54fa19b2")),
        "{codes:?}"
    );

    let out = rig
        .run_with(
            std::slice::from_ref(&vm),
            &["--disk-encryption-set", far.as_str()],
            &[],
        )
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let st = rig.status().await;
    let rec = record(&st, &vm);
    assert_eq!(rec["outcome"], "parked", "{rec}");
    assert_eq!(rec["step"], "snapshot", "{rec}");
    let reason = rec["reason"].as_str().unwrap();
    assert!(
        reason.contains("des-neu") && reason.contains("northeurope"),
        "{reason}"
    );
    assert_eq!(power_of(&rig, &vm), "running");
    let state = serde_json::to_value(rig.emu.state()).unwrap();
    assert_eq!(
        state["disks"].as_array().unwrap().len(),
        disks_before,
        "no disk created"
    );
    assert!(
        state["snapshots"].as_array().unwrap().is_empty(),
        "no snapshot taken"
    );
}

/// A refusal that appears after the run began (the size is withdrawn from
/// the VM's zone while the copy runs): validate-before-delete parks the VM
/// at `validate`, still there and running; once the restriction is gone
/// (here: the quota case then the zone), `resume` finishes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_before_delete_parks_with_the_vm_still_running() {
    let rig = Rig::new().await;
    let vm = rig.emu.add_vm(zonal("val-zone", "2"));
    let crashed = rig
        .run_with(
            std::slice::from_ref(&vm),
            &[],
            // Crash as the VM enters `validate`, its online rounds done (a
            // quota refusal during pre-copy parks there, before validate).
            &[("ADE2EAH_FAILPOINTS", "after-journal:advance:validate")],
        )
        .await;
    assert_ne!(crashed.status.code(), Some(0), "{}", text(&crashed));
    rig.emu.restrict_size_in_zone("Standard_D4s_v5", "2");

    let parked = rig.resume(&[]).await;
    assert_eq!(parked.status.code(), Some(1), "{}", text(&parked));
    let st = rig.status().await;
    let rec = record(&st, &vm);
    assert_eq!(rec["outcome"], "parked", "{rec}");
    assert_eq!(rec["step"], "validate", "{rec}");
    let reason = rec["reason"].as_str().unwrap();
    assert!(
        reason.contains("zone 2") && reason.contains("Standard_D4s_v5"),
        "{reason}"
    );
    assert!(
        rec["next_action"]
            .as_str()
            .unwrap()
            .contains("still running"),
        "{rec}"
    );
    assert_eq!(power_of(&rig, &vm), "running", "parked before any downtime");
    assert!(
        rig.emu.vm_offline_secs(&vm).unwrap_or(0.0) < 1e-9,
        "no downtime"
    );
}

/// Quota: too few snapshots left for the final copy round, found at
/// `validate` while the VM runs; after the limit is raised `resume`
/// finishes the migration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_before_delete_finds_the_missing_quota_then_resume_finishes() {
    let rig = Rig::new().await;
    let vm = rig.emu.add_vm(windows("val-quota", 1));
    let before = source_digests(&rig.emu, &vm);
    let crashed = rig
        .run_with(
            std::slice::from_ref(&vm),
            &[],
            // Crash as the VM enters `validate`, its online rounds done (a
            // quota refusal during pre-copy parks there, before validate).
            &[("ADE2EAH_FAILPOINTS", "after-journal:advance:validate")],
        )
        .await;
    assert_ne!(crashed.status.code(), Some(0), "{}", text(&crashed));
    let snaps = serde_json::to_value(rig.emu.state()).unwrap()["snapshots"]
        .as_array()
        .unwrap()
        .len() as u64;
    // One left; the final round needs one per disk (two).
    rig.emu.set_usage_limit("StandardSnapshotCount", snaps + 1);

    let parked = rig.resume(&[]).await;
    assert_eq!(parked.status.code(), Some(1), "{}", text(&parked));
    let st = rig.status().await;
    let rec = record(&st, &vm);
    assert_eq!(rec["step"], "validate", "{rec}");
    let reason = rec["reason"].as_str().unwrap();
    assert!(reason.contains("StandardSnapshotCount"), "{reason}");
    assert_eq!(power_of(&rig, &vm), "running");

    rig.emu.set_usage_limit("StandardSnapshotCount", 10_000);
    let out = rig.resume(&[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(record(&rig.status().await, &vm)["outcome"], "verified");
    assert_migrated(&rig.emu, &vm, &before);
}

/// `--guest-check` on Windows: the API reports "decrypted" while BitLocker
/// still decrypts; the run asks the guest again and copies only once it
/// reports every volume fully decrypted (without the lag, one ask).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_check_waits_for_bitlocker_after_the_api_says_decrypted() {
    for (lag, more_than_one) in [(3600.0, true), (0.0, false)] {
        let rig = Rig::with_config(EmulatorConfig {
            time_scale: TIME_SCALE,
            windows_bitlocker_lag_secs: lag,
            ..Default::default()
        })
        .await;
        let vm = rig.emu.add_vm(windows("guest-bl", 0));
        let before = source_digests(&rig.emu, &vm);
        let out = rig
            .run_with(std::slice::from_ref(&vm), &["--guest-check"], &[])
            .await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert_eq!(record(&rig.status().await, &vm)["outcome"], "verified");
        assert_migrated(&rig.emu, &vm, &before);
        let reqs = rig.emu.requests();
        let first_round = reqs
            .iter()
            .position(|r| r.method == "PUT" && r.path.contains("-eah-r1"))
            .expect("a copy round");
        let asks_before_copy = reqs[..first_round]
            .iter()
            .filter(|r| r.method == "POST" && r.path.to_ascii_lowercase().ends_with("/runcommand"))
            .count();
        let asks_after = reqs[first_round..]
            .iter()
            .filter(|r| r.method == "POST" && r.path.to_ascii_lowercase().ends_with("/runcommand"))
            .count();
        assert!(asks_after >= 1, "the final verification asks the guest too");
        if more_than_one {
            assert!(
                asks_before_copy > 1,
                "BitLocker still running was seen: {asks_before_copy} asks"
            );
        } else {
            assert_eq!(asks_before_copy, 1, "BitLocker already done: one ask");
        }
    }
}
