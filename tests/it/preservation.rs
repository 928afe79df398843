//! The same VM after migration (issue 12, docs/preservation.md): for each
//! property family a VM is seeded with it, migrated through the real binary,
//! and its model read back (`$expand=userData`) is compared with the original
//! field by field, after removing only the differences a migration is
//! expected to make ([`expected_differences_removed`]). Also: tags key for
//! key as before (after a run, a crash and resume, a lease break), ZRS disks
//! on a zonal VM, and an `OperationNotAllowed` refusal parking at once.

use ade2eah::emulator::VmSpec;
use ade2eah::model::ResourceId;
use serde_json::{Value, json};

use crate::support::*;

const LEASE_TAG: &str = "ade2eah-lease";

/// GET through the emulator's ARM endpoint.
async fn arm_get(rig: &Rig, id: &str, query: &str) -> Value {
    let r = reqwest::Client::new()
        .get(format!(
            "{}{id}?api-version=2024-11-01{query}",
            rig.emu.base_url()
        ))
        .bearer_auth("t")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "GET {id}: {}", r.status());
    r.json().await.unwrap()
}

/// The VM model as the tool journals it (with `userData`).
async fn vm_model(rig: &Rig, vm: &ResourceId) -> Value {
    arm_get(rig, vm.as_str(), "&$expand=userData").await
}

/// Removes from a VM model exactly the differences a migration makes, each
/// for a stated reason; everything else must be equal before and after.
fn expected_differences_removed(m: &Value) -> Value {
    let mut m = m.clone();
    let o = m.as_object_mut().unwrap();
    // Extensions are child resources: the ADE one is removed by design
    // (others: reinstalled by the extensions part).
    o.remove("resources");
    if let Some(i) = o.get_mut("identity").and_then(Value::as_object_mut) {
        // A system-assigned identity is tied to the resource: new principal.
        i.remove("principalId");
        // The ids inside a user-assigned identity entry are Azure's output.
        if let Some(Value::Object(u)) = i.get_mut("userAssignedIdentities") {
            for v in u.values_mut() {
                *v = json!({});
            }
        }
    }
    let p = m["properties"].as_object_mut().unwrap();
    // Output of the new resource; osProfile goes only with an image create.
    for k in ["vmId", "timeCreated", "osProfile", "instanceView"] {
        p.remove(k);
    }
    // EAH on (checked separately).
    if let Some(sec) = p.get_mut("securityProfile").and_then(Value::as_object_mut) {
        sec.remove("encryptionAtHost");
        if sec.is_empty() {
            p.remove("securityProfile");
        }
    }
    let sp = p["storageProfile"].as_object_mut().unwrap();
    // Created from attached disks: no image reference.
    sp.remove("imageReference");
    // New disks: new ids and names; every entry is an Attach now.
    let strip = |d: &mut Value| {
        let d = d.as_object_mut().unwrap();
        for k in ["name", "createOption", "toBeDetached"] {
            d.remove(k);
        }
        d.get_mut("managedDisk")
            .and_then(Value::as_object_mut)
            .unwrap()
            .remove("id");
    };
    strip(&mut sp["osDisk"]);
    for d in sp["dataDisks"].as_array_mut().unwrap() {
        strip(d);
    }
    m
}

/// Seeds `spec`, migrates it with `ade2eah run`, and returns the models
/// before and after (both read with `$expand=userData`).
async fn round_trip(spec: VmSpec) -> (Rig, ResourceId, Value, Value) {
    let rig = Rig::new().await;
    let vm = rig.emu.add_vm(spec);
    let digests = source_digests(&rig.emu, &vm);
    let before = vm_model(&rig, &vm).await;
    let out = rig.run(std::slice::from_ref(&vm), &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_migrated(&rig.emu, &vm, &digests);
    let after = vm_model(&rig, &vm).await;
    assert_eq!(
        after["properties"]["securityProfile"]["encryptionAtHost"],
        true
    );
    assert_ne!(after["properties"]["vmId"], before["properties"]["vmId"]);
    (rig, vm, before, after)
}

/// Asserts the models are equal once the expected differences are removed,
/// and that `family` (JSON pointers) was really there before.
fn assert_same_vm(before: &Value, after: &Value, family: &[&str]) {
    for ptr in family {
        let v = before.pointer(ptr);
        assert!(
            v.is_some_and(|v| !v.is_null()),
            "the seeded VM has {ptr}: {before}"
        );
        assert_eq!(after.pointer(ptr), v, "{ptr} carried");
    }
    let (b, a) = (
        expected_differences_removed(before),
        expected_differences_removed(after),
    );
    assert_eq!(
        a, b,
        "the same VM apart from the listed differences\nbefore: {b:#}\nafter: {a:#}"
    );
}

fn spec_with(name: &str, data_disks: usize, model: Value) -> VmSpec {
    let mut s = windows(name, data_disks);
    s.model = model;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nvme_controller_and_flexible_scale_set_membership_round_trip() {
    let vmss = "/subscriptions/00000000-0000-0000-0000-00000000a0de/resourceGroups/rg-test/providers/Microsoft.Compute/virtualMachineScaleSets/flex";
    let (_rig, _vm, before, after) = round_trip(spec_with(
        "keep-nvme",
        1,
        json!({"properties": {
            "storageProfile": {"diskControllerType": "NVMe"},
            "virtualMachineScaleSet": {"id": vmss},
            "platformFaultDomain": 1
        }}),
    ))
    .await;
    assert_same_vm(
        &before,
        &after,
        &[
            "/properties/storageProfile/diskControllerType",
            "/properties/virtualMachineScaleSet",
            "/properties/platformFaultDomain",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_time_data_user_data_applications_and_events_round_trip() {
    let (rig, vm, before, after) = round_trip(spec_with(
        "keep-boot",
        0,
        json!({"properties": {
            "userData": "IyEvYmluL3NoCmVjaG8gaGVsbG8K",
            "applicationProfile": {"galleryApplications": [
                {"packageReferenceId": "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/galleries/gal/applications/app/versions/1.0.0", "order": 1}]},
            "extensionsTimeBudget": "PT1H30M",
            "scheduledEventsPolicy": {"userInitiatedReboot": {"automaticallyApprove": true}},
            "scheduledEventsProfile": {"terminateNotificationProfile": {"enable": true, "notBeforeTimeout": "PT10M"}}
        }}),
    ))
    .await;
    assert_same_vm(
        &before,
        &after,
        &[
            "/properties/userData",
            "/properties/applicationProfile",
            "/properties/extensionsTimeBudget",
            "/properties/scheduledEventsPolicy",
            "/properties/scheduledEventsProfile",
        ],
    );
    // userData is returned only with its expand (facts §11).
    let plain = arm_get(&rig, vm.as_str(), "").await;
    assert!(plain["properties"].get("userData").is_none(), "{plain}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_and_user_assigned_identity_round_trip() {
    let uami = "/subscriptions/00000000-0000-0000-0000-00000000a0de/resourceGroups/rg-test/providers/Microsoft.ManagedIdentity/userAssignedIdentities/app-id";
    let mut spec = spec_with(
        "keep-identity",
        0,
        json!({"identity": {"type": "SystemAssigned, UserAssigned",
            "userAssignedIdentities": {uami: {"principalId": "11111111-0000-0000-0000-000000000001", "clientId": "22222222-0000-0000-0000-000000000002"}}}}),
    );
    spec.system_identity = true;
    let (_rig, _vm, before, after) = round_trip(spec).await;
    assert_same_vm(&before, &after, &["/identity/type"]);
    assert!(
        after["identity"]["userAssignedIdentities"]
            .get(uami)
            .is_some(),
        "{after}"
    );
    let (old, new) = (
        before["identity"]["principalId"].as_str().unwrap(),
        after["identity"]["principalId"].as_str().unwrap(),
    );
    assert_ne!(old, new, "a system-assigned identity is a new principal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_priority_capabilities_and_unknown_properties_round_trip() {
    let rg = "/subscriptions/00000000-0000-0000-0000-00000000a0de/resourceGroups/rg-test/providers/Microsoft.Compute";
    let mut spec = spec_with(
        "keep-placement",
        1,
        json!({"properties": {
            "availabilitySet": {"id": format!("{rg}/availabilitySets/as1")},
            "proximityPlacementGroup": {"id": format!("{rg}/proximityPlacementGroups/ppg1")},
            "priority": "Spot", "evictionPolicy": "Deallocate", "billingProfile": {"maxPrice": -1},
            "capacityReservation": {"capacityReservationGroup": {"id": format!("{rg}/capacityReservationGroups/crg1")}},
            "additionalCapabilities": {"hibernationEnabled": true, "ultraSSDEnabled": false},
            "hardwareProfile": {"vmSizeProperties": {"vCPUsAvailable": 2, "vCPUsPerCore": 1}},
            "futurePreviewSetting": {"mode": "kept verbatim"}
        }}),
    );
    spec.license_type = Some("Windows_Server".into());
    spec.tags = [("app", "erp"), ("owner", "ops")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let (_rig, _vm, before, after) = round_trip(spec).await;
    assert_same_vm(
        &before,
        &after,
        &[
            "/properties/availabilitySet",
            "/properties/proximityPlacementGroup",
            "/properties/priority",
            "/properties/evictionPolicy",
            "/properties/billingProfile",
            "/properties/capacityReservation",
            "/properties/additionalCapabilities",
            "/properties/hardwareProfile/vmSizeProperties",
            "/properties/licenseType",
            "/properties/diagnosticsProfile",
            "/properties/futurePreviewSetting",
            "/tags",
        ],
    );
}

/// Removes from a disk model the differences between a source disk and its
/// target: identity of the new resource, how it was created, its state and
/// attachment, the ADE stamp the target never had, and the ownership tags.
fn disk_differences_removed(d: &Value) -> Value {
    let mut d = d.clone();
    let o = d.as_object_mut().unwrap();
    for k in ["id", "name", "managedBy"] {
        o.remove(k);
    }
    if let Some(Value::Object(t)) = o.get_mut("tags") {
        t.remove("ade2eah-run");
        t.remove("ade2eah-source");
    }
    let p = d["properties"].as_object_mut().unwrap();
    for k in [
        "uniqueId",
        "timeCreated",
        "creationData",
        "diskState",
        "provisioningState",
        "encryptionSettingsCollection",
    ] {
        p.remove(k);
    }
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_performance_sharing_tags_and_access_settings_round_trip() {
    let mut spec = windows("keep-disk", 1);
    spec.data_disks[0].properties = json!({
        "tier": "P20", "burstingEnabled": true, "maxShares": 1,
        "optimizedForFrequentAttach": true,
        "networkAccessPolicy": "DenyAll", "publicNetworkAccess": "Disabled",
        "dataAccessAuthMode": "AzureActiveDirectory"
    });
    spec.data_disks[0].tags = json!({"costcenter": "42"});
    let (rig, _vm, before, after) = round_trip(spec).await;
    let source = before["properties"]["storageProfile"]["dataDisks"][0]["managedDisk"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let target = after["properties"]["storageProfile"]["dataDisks"][0]["managedDisk"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(source, target);
    let (s, t) = (
        arm_get(&rig, &source, "").await,
        arm_get(&rig, &target, "").await,
    );
    for k in [
        "tier",
        "burstingEnabled",
        "maxShares",
        "networkAccessPolicy",
        "publicNetworkAccess",
        "dataAccessAuthMode",
    ] {
        assert_eq!(t["properties"][k], s["properties"][k], "{k}");
    }
    assert_eq!(t["tags"]["ade2eah-source"], json!(source));
    assert_eq!(
        disk_differences_removed(&t),
        disk_differences_removed(&s),
        "the target is the source disk apart from the listed differences"
    );
    assert_same_vm(&before, &after, &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zrs_disks_of_a_zonal_vm_get_targets_without_a_zone() {
    let mut spec = windows("keep-zrs", 1);
    spec.zone = Some("1".into());
    spec.data_disks[0].sku = "Premium_ZRS".into();
    let (rig, _vm, before, after) = round_trip(spec).await;
    assert_eq!(after["zones"], json!(["1"]));
    let data = after["properties"]["storageProfile"]["dataDisks"][0]["managedDisk"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let os = after["properties"]["storageProfile"]["osDisk"]["managedDisk"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let d = arm_get(&rig, &data, "").await;
    assert_eq!(d["sku"]["name"], "Premium_ZRS");
    assert!(d.get("zones").is_none(), "a ZRS disk has no zone: {d}");
    assert_eq!(arm_get(&rig, &os, "").await["zones"], json!(["1"]));
    assert_same_vm(&before, &after, &["/zones"]);
}

/// The VM's tags as the emulator holds them.
fn tags_of(rig: &Rig, vm: &ResourceId) -> Value {
    let st = serde_json::to_value(rig.emu.state()).unwrap();
    find_by_id(&st["vms"], vm).unwrap_or_else(|| panic!("{vm} not in {}", st["vms"]))["model"]["tags"].clone()
}

fn tagged(name: &str) -> VmSpec {
    let mut s = windows(name, 0);
    s.tags = [
        ("app", "erp"),
        ("cost-center", "4711"),
        ("Owner", "Ops Team"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_are_key_for_key_as_before_after_a_run() {
    let rig = Rig::new().await;
    let vm = rig.emu.add_vm(tagged("tags-run"));
    let before = tags_of(&rig, &vm);
    let out = rig.run(std::slice::from_ref(&vm), &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(tags_of(&rig, &vm), before);
}

/// A crash right after the re-create was journaled (the new VM carries the
/// lease) and one after the VM reached `done` but before the lease was
/// released: the tag is there after the crash and gone once `resume`
/// finishes the VM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_are_key_for_key_as_before_after_a_crash_and_resume() {
    for point in ["after-journal:advance:start", "after-journal:advance:done"] {
        let rig = Rig::new().await;
        let vm = rig
            .emu
            .add_vm(tagged(&format!("tags-{}", point.replace(':', "-"))));
        let before = tags_of(&rig, &vm);
        let crashed = rig
            .run(std::slice::from_ref(&vm), &[("ADE2EAH_FAILPOINTS", point)])
            .await;
        assert_ne!(crashed.status.code(), Some(0), "{}", text(&crashed));
        assert!(
            tags_of(&rig, &vm).get(LEASE_TAG).is_some(),
            "{point}: the crash left the lease: {}",
            tags_of(&rig, &vm)
        );
        let resumed = rig.resume(&[]).await;
        assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));
        assert_eq!(tags_of(&rig, &vm), before, "{point}");
    }
}

/// The VM was leased by a dead run with another journal: after
/// `--break-lease` and the migration, no lease of either run is left and
/// every other tag is as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_are_key_for_key_as_before_after_a_lease_break() {
    let rig = Rig::new().await;
    let mut spec = tagged("tags-break");
    let expiry = (time::OffsetDateTime::now_utc() + time::Duration::hours(6))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    spec.tags
        .insert(LEASE_TAG.into(), format!("dead-run;{expiry}"));
    let vm = rig.emu.add_vm(spec);
    let mut before = tags_of(&rig, &vm);
    before.as_object_mut().unwrap().remove(LEASE_TAG);
    let parked = rig.run(std::slice::from_ref(&vm), &[]).await;
    assert_eq!(parked.status.code(), Some(1), "{}", text(&parked));
    let out = rig.resume_with(&["--break-lease"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(tags_of(&rig, &vm), before);
}

/// A quota refusal (`OperationNotAllowed`, not a 429) parks the VM at once
/// with the reason and what to do, instead of spending the retry budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operation_not_allowed_quota_parks_at_once_with_the_reason() {
    let rig = Rig::new().await;
    let vm = rig.emu.add_vm(windows("quota-vm", 0));
    // The source disk is the only Premium disk in the region: no room for
    // its target.
    rig.emu.set_usage_limit("PremiumDiskCount", 1);
    let out = rig.run(std::slice::from_ref(&vm), &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let st = rig.status().await;
    let rec = &st["vms"][0];
    assert_eq!(rec["outcome"], "parked", "{rec}");
    let reason = rec["reason"].as_str().unwrap();
    assert!(
        reason.contains("PremiumDiskCount quota") && reason.contains("raise it"),
        "{reason}"
    );
    let disk_puts = rig
        .emu
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.path.contains("/disks/") && r.path.ends_with("-eah"))
        .count();
    assert_eq!(disk_puts, 1, "refused once, not retried");
    // The VM still runs on its original disk: nothing was deleted.
    let model = vm_model(&rig, &vm).await;
    assert!(
        !model["properties"]["storageProfile"]["osDisk"]["managedDisk"]["id"]
            .as_str()
            .unwrap()
            .ends_with("-eah")
    );
}
