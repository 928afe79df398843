//! Unit tests of the emulator: platform rules driven on the world directly
//! (explicit simulated time), and the HTTP surface over loopback.

use std::sync::Arc;

use serde_json::{Value, json};

use super::blob::{BlobStore, SasAccess, StorageConfig};
use super::clock::SimClock;
use super::world::{ArmError, LocationAnswer, Target, World};
use super::*;
use crate::step::DecryptionState;
use crate::step::observe::{VmView, decryption_state};

const SUB: &str = DEFAULT_SUBSCRIPTION;

fn world() -> (World, Arc<BlobStore>) {
    let cfg = EmulatorConfig::default();
    let blobs = BlobStore::new(SimClock::new(1.0), StorageConfig::default());
    let mut w = World::new(&cfg, blobs.clone());
    w.set_base_url("http://127.0.0.1:1");
    (w, blobs)
}

fn target(id: &str) -> Target {
    let r = ResourceId::parse(id).unwrap();
    Target {
        id: id.to_string(),
        rg: r.resource_group().to_string(),
        name: r.name().to_string(),
    }
}

fn small_windows(name: &str, data: usize) -> VmSpec {
    let mut s = VmSpec::windows(name, "rg-t");
    s.os_disk.size_gib = 4;
    for i in 0..data {
        s = s.with_data_disk(2, 0.3);
        let _ = i;
    }
    if data > 0 {
        s.ade = AdeSpec::WindowsAll;
    }
    s
}

fn small_linux(name: &str, ade: AdeSpec) -> VmSpec {
    let mut s = VmSpec::linux(name, "rg-t").with_data_disk(2, 0.4);
    s.os_disk.size_gib = 4;
    s.ade = ade;
    s
}

/// Runs the world to `t` and returns the VM GET body with instance view.
fn vm_at(w: &mut World, vm: &Target, t: f64) -> Value {
    w.advance(t);
    w.vm_get(vm, true).unwrap()
}

fn finish(w: &mut World, t: f64) -> f64 {
    // Every operation is shorter than 200 simulated seconds.
    w.advance(t + 200.0);
    t + 200.0
}

fn ade_ext_name(model: &Value) -> String {
    let exts = crate::step::observe::ade_extensions(model);
    exts[0].0.name().to_string()
}

fn disable_body(linux: bool) -> Value {
    json!({"location": "westeurope", "properties": {
        "publisher": "Microsoft.Azure.Security", "type": if linux { "AzureDiskEncryptionForLinux" } else { "AzureDiskEncryption" },
        "typeHandlerVersion": if linux { "1.1" } else { "2.2" }, "autoUpgradeMinorVersion": true,
        "settings": {"EncryptionOperation": "DisableEncryption", "VolumeType": if linux { "DATA" } else { "ALL" }, "SequenceVersion": "2"}}})
}

fn op_failed(w: &World, id: &str, now: f64) -> Option<ArmError> {
    match w.op_location(id, now).unwrap() {
        LocationAnswer::Failed(e) => Some(e),
        _ => None,
    }
}

#[test]
fn linux_decryption_timeline_pauses_while_deallocated() {
    let (mut w, _) = world();
    let id = w.add_vm(&small_linux("lin", AdeSpec::LinuxData), 0.0);
    let vm = target(id.as_str());
    let model = vm_at(&mut w, &vm, 0.0);
    let iv = model["properties"]["instanceView"].clone();
    assert_eq!(decryption_state(&iv), DecryptionState::Encrypted);
    let name = ade_ext_name(&model);
    assert_eq!(name, "AzureDiskEncryptionForLinux");
    let r = w
        .ext_put(&vm, &name, disable_body(true), false, 0.0)
        .unwrap();
    assert_eq!(r.status, 200);
    // Another mutating call while the extension operation runs.
    let e = w.vm_action(&vm, "deallocate", false, 1.0).unwrap_err();
    assert_eq!(e.status, 409);
    assert!(
        e.message.contains("since another operation is in progress"),
        "{}",
        e.message
    );
    // LRO done by 60 s; the guest then reports decryption in progress.
    let m = vm_at(&mut w, &vm, 61.0);
    let iv = &m["properties"]["instanceView"];
    assert_eq!(decryption_state(iv), DecryptionState::InProgress, "{iv:#}");
    let ext = iv["extensions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap();
    assert_eq!(ext["statuses"][0]["message"], "Decryption started");
    assert_eq!(
        ext["substatuses"][0]["message"],
        "{\"os\": \"NotEncrypted\", \"data\": \"DecryptionInProgress\"}"
    );
    assert_eq!(
        m["resources"][0]["properties"]["settings"]["EncryptionOperation"],
        "DisableEncryption"
    );
    // Deleting the extension while decrypting is refused.
    let e = w.ext_delete(&vm, &name, false, 62.0).unwrap_err();
    assert!(e.message.contains("decrypting"), "{}", e.message);
    // 2 GiB at 60 MiB/s ≈ 34 s after a 120 s wait. Deallocate at 100 and
    // stay deallocated for an hour: no progress.
    w.advance(100.0);
    w.vm_action(&vm, "deallocate", false, 100.0).unwrap();
    let m = vm_at(&mut w, &vm, 3700.0);
    assert_eq!(
        VmView::from_raw(&m, None).power.as_deref(),
        Some("deallocated")
    );
    assert_eq!(
        decryption_state(&m["properties"]["instanceView"]),
        DecryptionState::InProgress
    );
    w.vm_action(&vm, "start", false, 3700.0).unwrap();
    let m = vm_at(&mut w, &vm, 3770.0);
    assert_eq!(
        decryption_state(&m["properties"]["instanceView"]),
        DecryptionState::InProgress
    );
    let m = vm_at(&mut w, &vm, 3900.0);
    let iv = &m["properties"]["instanceView"];
    assert_eq!(decryption_state(iv), DecryptionState::Complete, "{iv:#}");
    let ext = iv["extensions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap();
    assert_eq!(ext["statuses"][0]["message"], "Decryption succeeded");
    // The data disk keeps its (sticky) stamp, disabled.
    let data_id = m["properties"]["storageProfile"]["dataDisks"][0]["managedDisk"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let disk = w.disk_get(&target(&data_id), false).unwrap();
    assert_eq!(
        disk["properties"]["encryptionSettingsCollection"]["enabled"],
        false
    );
    assert_eq!(
        disk["properties"]["encryptionSettingsCollection"]["encryptionSettingsVersion"],
        "1.1"
    );
}

#[test]
fn linux_with_encrypted_os_cannot_disable() {
    let (mut w, _) = world();
    let id = w.add_vm(&small_linux("linos", AdeSpec::LinuxOsAndData), 0.0);
    let vm = target(id.as_str());
    let name = ade_ext_name(&w.vm_get(&vm, false).unwrap());
    let r = w
        .ext_put(&vm, &name, disable_body(true), false, 0.0)
        .unwrap();
    let op = r.lro.unwrap().id;
    w.advance(100.0);
    let e = op_failed(&w, &op, 100.0).expect("operation failed");
    assert_eq!(e.code, "VMExtensionProvisioningError");
    assert!(
        e.message
            .contains("Disabling encryption is not supported when OS volume is encrypted"),
        "{}",
        e.message
    );
    assert!(e.message.starts_with(&format!(
        "VM has reported a failure when processing extension '{name}'"
    )));
    let (status, _) = w.op_status(&op, 100.0).unwrap();
    assert_eq!(status["status"], "Failed");
    let iv = w.vm_instance_view(&vm).unwrap();
    assert!(matches!(decryption_state(&iv), DecryptionState::Failed(_)));
}

#[test]
fn windows_refuses_a_second_ade_extension_and_extensions_need_a_running_vm() {
    let (mut w, _) = world();
    let mut spec = small_windows("win", 0);
    spec.custom_extension_name = Some("ade-tf".into());
    let id = w.add_vm(&spec, 0.0);
    let vm = target(id.as_str());
    let e = w
        .ext_put(&vm, "AzureDiskEncryption", disable_body(false), false, 0.0)
        .unwrap_err();
    assert_eq!(e.status, 400);
    assert!(
        e.message
            .starts_with("Multiple VMExtensions per handler not supported for OS type 'Windows'."),
        "{}",
        e.message
    );
    w.vm_action(&vm, "deallocate", false, 0.0).unwrap();
    let t = finish(&mut w, 0.0);
    let e = w
        .ext_put(&vm, "ade-tf", disable_body(false), false, t)
        .unwrap_err();
    assert_eq!(
        (e.status, e.message.as_str()),
        (
            409,
            "Cannot modify extensions in the VM when the VM is not running."
        )
    );
}

/// The naive path (decrypt, remove ADE, deallocate, enable EAH) is refused;
/// the migration path (Upload disks, new VM, NIC after 180 s) works.
#[test]
fn sticky_mark_nic_reservation_and_the_migration_path() {
    let (mut w, blobs) = world();
    let id = w.add_vm(&small_windows("win", 1), 0.0);
    let vm = target(id.as_str());
    let model = w.vm_get(&vm, false).unwrap();
    let name = ade_ext_name(&model);
    w.ext_put(&vm, &name, disable_body(false), false, 0.0)
        .unwrap();
    let mut t = 0.0;
    for _ in 0..100 {
        t += 60.0;
        if decryption_state(&vm_at(&mut w, &vm, t)["properties"]["instanceView"])
            == DecryptionState::Complete
        {
            break;
        }
    }
    let iv = &vm_at(&mut w, &vm, t)["properties"]["instanceView"];
    let ext = iv["extensions"][0]["statuses"][0]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(ext, "[2.2.0.36] Disable Encryption completed successfully");
    w.ext_delete(&vm, &name, false, t).unwrap();
    t = finish(&mut w, t);
    // EAH on a running VM: refused (the mark wins first).
    let patch = json!({"properties": {"securityProfile": {"encryptionAtHost": true}}});
    let e = w.vm_patch(&vm, patch.clone(), false, t).unwrap_err();
    assert!(e.message.contains("Encryption at host is not allowed for a VM having disks that were encrypted with Azure Disk Encryption"));
    w.vm_action(&vm, "deallocate", false, t).unwrap();
    t = finish(&mut w, t);
    let e = w.vm_patch(&vm, patch.clone(), false, t).unwrap_err();
    assert_eq!((e.status, e.code.as_str()), (400, "BadRequest"));
    assert_eq!(
        e.message,
        "Encryption at host is not allowed for a VM having disks that were encrypted with Azure Disk Encryption"
    );

    // Read SAS on the deallocated source works; copy into an Upload disk.
    let model = w.vm_get(&vm, false).unwrap();
    let view = VmView::from_raw(&model, None);
    let mut new_disks = Vec::new();
    for (i, src) in std::iter::once(view.os_disk.clone().unwrap())
        .chain(view.data_disks.values().cloned())
        .enumerate()
    {
        let src_body = w.disk_get(&target(src.as_str()), false).unwrap();
        assert_eq!(src_body["properties"]["diskState"], "Reserved");
        let size = src_body["properties"]["diskSizeBytes"].as_u64().unwrap();
        let new_id = format!(
            "/subscriptions/{SUB}/resourceGroups/rg-t/providers/Microsoft.Compute/disks/new-{i}"
        );
        let nt = target(&new_id);
        let mut props =
            json!({"creationData": {"createOption": "Upload", "uploadSizeBytes": size + 512}});
        if i == 0 {
            props["osType"] = json!("Windows");
            props["hyperVGeneration"] = json!("V2");
        }
        let r = w.disk_put(&nt, json!({"location": "westeurope", "sku": {"name": "Premium_LRS"}, "properties": props}), false, false, t).unwrap();
        assert_eq!(r.status, 202);
        t = finish(&mut w, t);
        assert_eq!(
            w.disk_get(&nt, false).unwrap()["properties"]["diskState"],
            "ReadyToUpload"
        );
        w.grant(
            &target(src.as_str()),
            json!({"access": "Read", "durationInSeconds": 3600}),
            false,
            false,
            t,
        )
        .unwrap();
        let g = w
            .grant(
                &nt,
                json!({"access": "Write", "durationInSeconds": 3600}),
                false,
                false,
                t,
            )
            .unwrap();
        t = finish(&mut w, t);
        let (st, _) = w.op_status(&g.lro.unwrap().id, t).unwrap();
        assert!(
            st["properties"]["output"]["accessSAS"]
                .as_str()
                .unwrap()
                .contains("sig=")
        );
        assert_eq!(
            w.disk_get(&nt, false).unwrap()["properties"]["diskState"],
            "ActiveUpload"
        );
        assert_eq!(
            w.disk_get(&target(src.as_str()), false).unwrap()["properties"]["diskState"],
            "ActiveSAS"
        );
        // A VM can not take a disk that is still uploading.
        let sb = w.blob_of(src.as_str()).unwrap();
        let nb = w.blob_of(&new_id).unwrap();
        assert!(blobs.copy_range(&sb, 0, &nb, 0, size + 512));
        w.revoke(&nt, false, false, t).unwrap();
        w.revoke(&target(src.as_str()), false, false, t).unwrap();
        t = finish(&mut w, t);
        assert_eq!(
            w.disk_get(&nt, false).unwrap()["properties"]["diskState"],
            "Unattached"
        );
        assert!(
            w.disk_get(&nt, false).unwrap()["properties"]
                .get("encryptionSettingsCollection")
                .is_none()
        );
        assert_eq!(blobs.digest(&sb), blobs.digest(&nb));
        new_disks.push(new_id);
    }
    // Delete the old VM (all Detach): disks and NIC stay, NIC reserved.
    w.vm_delete(&vm, false, t).unwrap();
    let e = w.vm_action(&vm, "start", false, t + 1.0).unwrap_err();
    assert!(
        e.message.contains("since the VM is marked for deletion"),
        "{}",
        e.message
    );
    t += 61.0;
    w.advance(t);
    assert!(w.vm_get(&vm, false).is_err());
    let nic = view_nic(&model);
    let create = json!({"location": "westeurope", "properties": {
        "hardwareProfile": {"vmSize": "Standard_D4s_v5"},
        "storageProfile": {"osDisk": {"osType": "Windows", "createOption": "Attach", "managedDisk": {"id": new_disks[0]}, "deleteOption": "Detach"},
                           "dataDisks": [{"lun": 0, "createOption": "Attach", "managedDisk": {"id": new_disks[1]}, "deleteOption": "Detach"}]},
        "networkProfile": {"networkInterfaces": [{"id": nic, "properties": {"primary": true, "deleteOption": "Detach"}}]},
        "securityProfile": {"encryptionAtHost": true}}});
    let e = w.vm_put(&vm, create.clone(), false, t).unwrap_err();
    assert_eq!(e.code, "NicReservedForAnotherVm");
    assert!(
        e.message.starts_with(
            "Nic(s) in request is reserved for another Virtual Machine for 180 seconds."
        )
    );
    // The old (marked) disks cannot carry EAH either.
    let mut old = create.clone();
    old["properties"]["storageProfile"]["osDisk"]["managedDisk"]["id"] =
        json!(view.os_disk.as_ref().unwrap().as_str());
    t += 200.0;
    w.advance(t);
    let e = w.vm_put(&vm, old, false, t).unwrap_err();
    assert!(
        e.message.starts_with("Encryption at host is not allowed"),
        "{}",
        e.message
    );
    let mut bad = create.clone();
    bad["properties"]["storageProfile"]["imageReference"] = json!({"publisher": "x"});
    assert!(
        w.vm_put(&vm, bad, false, t)
            .unwrap_err()
            .message
            .contains("Cannot attach an existing OS disk")
    );
    let r = w.vm_put(&vm, create, false, t).unwrap();
    assert_eq!(r.status, 201);
    assert_eq!(
        r.body.as_ref().unwrap()["properties"]["provisioningState"],
        "Creating"
    );
    t = finish(&mut w, t);
    let m = vm_at(&mut w, &vm, t);
    let v = VmView::from_raw(&m, None);
    assert!(v.encryption_at_host && v.is_settled() && v.vm_id != view.vm_id);
    assert_eq!(v.power.as_deref(), Some("running"));
    assert!(m.get("resources").is_none());
    // The old disks are unattached and deletable; attached ones are not.
    let old_os = view.os_disk.clone().unwrap();
    assert!(
        w.disk_get(&target(old_os.as_str()), false)
            .unwrap()
            .get("managedBy")
            .is_none()
    );
    let e = w
        .disk_delete(&target(&new_disks[0]), false, false, t)
        .unwrap_err();
    assert!(
        e.message.starts_with("Disk new-0 is attached to VM "),
        "{}",
        e.message
    );
    assert_eq!(
        w.disk_delete(&target(old_os.as_str()), false, false, t)
            .unwrap()
            .status,
        202
    );
}

fn view_nic(model: &Value) -> String {
    model["properties"]["networkProfile"]["networkInterfaces"][0]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn delete_option_delete_removes_disks_and_nic() {
    let (mut w, _) = world();
    let mut spec = small_windows("wd", 1);
    spec.delete_option = DeleteOption::Delete;
    let id = w.add_vm(&spec, 0.0);
    let vm = target(id.as_str());
    let model = w.vm_get(&vm, false).unwrap();
    assert!(!VmView::from_raw(&model, None).all_detach);
    let os = VmView::from_raw(&model, None).os_disk.unwrap();
    w.vm_delete(&vm, false, 0.0).unwrap();
    finish(&mut w, 0.0);
    assert!(w.disk_get(&target(os.as_str()), false).is_err());
    assert!(w.nic_get(&target(&view_nic(&model))).is_err());
    assert!(w.blob_of(os.as_str()).is_none());
}

#[test]
fn disk_rules_upload_size_sas_duration_running_vm_and_bad_footer() {
    let (mut w, _) = world();
    let id = w.add_vm(&small_windows("w", 0), 0.0);
    let model = w.vm_get(&target(id.as_str()), false).unwrap();
    let os = VmView::from_raw(&model, None).os_disk.unwrap();
    let e = w
        .grant(
            &target(os.as_str()),
            json!({"access": "Read", "durationInSeconds": 3600}),
            false,
            false,
            0.0,
        )
        .unwrap_err();
    assert_eq!((e.status, e.code.as_str()), (409, "Conflict"));
    assert_eq!(
        e.message,
        format!(
            "Access not permitted because disk {} is currently attached to running VM {id}.",
            os.name()
        )
    );
    let e = w
        .grant(
            &target(os.as_str()),
            json!({"access": "Read", "durationInSeconds": 5_184_001}),
            false,
            false,
            0.0,
        )
        .unwrap_err();
    assert_eq!(e.status, 400);
    let d = target(&format!(
        "/subscriptions/{SUB}/resourceGroups/rg-t/providers/Microsoft.Compute/disks/up"
    ));
    let e = w.disk_put(&d, json!({"properties": {"creationData": {"createOption": "Upload", "uploadSizeBytes": 30_000_000u64}}}), false, false, 0.0).unwrap_err();
    assert_eq!(
        e.message,
        "The upload size in bytes 30000000 - 512 bytes for the VHD footer (29999488 in this case) must be a multiple of MiB."
    );
    w.disk_put(&d, json!({"properties": {"creationData": {"createOption": "Upload", "uploadSizeBytes": 32 * 1024 * 1024 + 512}}}), false, false, 0.0).unwrap();
    let t = finish(&mut w, 0.0);
    w.grant(
        &d,
        json!({"access": "Write", "durationInSeconds": 60}),
        false,
        false,
        t,
    )
    .unwrap();
    let t = finish(&mut w, t);
    let r = w.revoke(&d, false, false, t).unwrap();
    let t = finish(&mut w, t);
    let e = op_failed(&w, &r.lro.unwrap().id, t).expect("revoke fails on a blob without footer");
    assert_eq!(e.code, "InvalidVhd");
    assert!(
        e.message
            .contains("Disk is expected to have cookie value 'conectix'.")
    );
    assert_eq!(
        w.disk_get(&d, false).unwrap()["properties"]["diskState"],
        "ActiveUpload"
    );
    // Snapshots and Copy disks inherit the mark.
    let s = target(&format!(
        "/subscriptions/{SUB}/resourceGroups/rg-t/providers/Microsoft.Compute/snapshots/snap"
    ));
    w.disk_put(&s, json!({"properties": {"incremental": true, "creationData": {"createOption": "Copy", "sourceResourceId": os.as_str()}}}), true, false, t).unwrap();
    let t = finish(&mut w, t);
    let snap = w.disk_get(&s, true).unwrap();
    assert_eq!(
        snap["properties"]["encryptionSettingsCollection"]["encryptionSettingsVersion"],
        "1.1"
    );
    assert!(snap["properties"]["creationData"]["sourceUniqueId"].is_string());
    let c = target(&format!(
        "/subscriptions/{SUB}/resourceGroups/rg-t/providers/Microsoft.Compute/disks/copy"
    ));
    w.disk_put(
        &c,
        json!({"properties": {"creationData": {"createOption": "Copy", "sourceResourceId": s.id}}}),
        false,
        false,
        t,
    )
    .unwrap();
    finish(&mut w, t);
    assert!(
        w.disk_get(&c, false).unwrap()["properties"]["encryptionSettingsCollection"].is_object()
    );
}

#[test]
fn injected_failed_operation_leaves_the_vm_as_it_was() {
    let (mut w, _) = world();
    let id = w.add_vm(&small_windows("w", 0), 0.0);
    let vm = target(id.as_str());
    let r = w.vm_action(&vm, "deallocate", true, 0.0).unwrap();
    w.advance(500.0);
    let e = op_failed(&w, &r.lro.unwrap().id, 500.0).unwrap();
    assert_eq!(e.code, "InternalOperationError");
    let v = VmView::from_raw(&w.vm_get(&vm, true).unwrap(), None);
    assert_eq!(v.power.as_deref(), Some("running"));
    assert!(v.is_settled());
}

#[test]
fn injected_allocation_failure_and_guest_decryption_failure() {
    let (mut w, _) = world();
    let id = w.add_vm(&small_linux("lin", AdeSpec::LinuxData), 0.0);
    let vm = target(id.as_str());
    // AllocationFailed on start: the operation fails with that code, the VM
    // stays deallocated.
    let r = w.vm_action(&vm, "deallocate", false, 0.0).unwrap();
    let t = finish(&mut w, 0.0);
    assert!(op_failed(&w, &r.lro.unwrap().id, t).is_none());
    w.hooks.lro_error = Some(ArmError::new(409, "AllocationFailed", "Allocation failed."));
    let r = w.vm_action(&vm, "start", true, t).unwrap();
    let t = finish(&mut w, t);
    let e = op_failed(&w, &r.lro.unwrap().id, t).unwrap();
    assert_eq!(e.code, "AllocationFailed");
    let v = VmView::from_raw(&w.vm_get(&vm, true).unwrap(), None);
    assert_eq!(v.power.as_deref(), Some("deallocated"));
    let r = w.vm_action(&vm, "start", false, t).unwrap();
    let t = finish(&mut w, t);
    assert!(op_failed(&w, &r.lro.unwrap().id, t).is_none());
    // Decryption armed to fail: the instance view reports an Error-level
    // status with the guest message; a new disable then decrypts.
    let name = ade_ext_name(&w.vm_get(&vm, false).unwrap());
    w.hooks.decrypt_fail.insert(vm.key());
    w.ext_put(&vm, &name, disable_body(true), false, t).unwrap();
    let m = vm_at(&mut w, &vm, t + 2000.0);
    let iv = &m["properties"]["instanceView"];
    match decryption_state(iv) {
        DecryptionState::Failed(msg) => {
            assert!(msg.contains("Decryption failed for /dev/sdc"), "{msg}")
        }
        other => panic!("{other:?}: {iv:#}"),
    }
    let t = t + 2000.0;
    w.ext_put(&vm, &name, disable_body(true), false, t).unwrap();
    let m = vm_at(&mut w, &vm, t + 2000.0);
    assert_eq!(
        decryption_state(&m["properties"]["instanceView"]),
        DecryptionState::Complete
    );
}

// ---------------------------------------------------------------- HTTP

fn fast() -> EmulatorConfig {
    EmulatorConfig {
        time_scale: 20000.0,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_lro_headers_auth_and_shapes() {
    let emu = start(fast()).await.unwrap();
    let id = emu.add_vm(small_windows("h", 1));
    let http = reqwest::Client::new();
    let base = emu.base_url();
    let r = http
        .get(format!("{base}{id}?api-version=2024-11-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(format!(
            "{base}{}?api-version=2024-11-01&$expand=instanceView",
            id.as_str()
                .to_uppercase()
                .replace("SUBSCRIPTIONS", "subscriptions")
        ))
        .bearer_auth("t")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-ms-request-id"));
    assert!(
        r.headers()
            .contains_key("x-ms-ratelimit-remaining-resource")
    );
    let v: Value = r.json().await.unwrap();
    assert!(v["properties"]["instanceView"]["statuses"].is_array());
    let r = http
        .post(format!("{base}{id}/deallocate?api-version=2024-11-01"))
        .bearer_auth("t")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let asy = r.headers()["azure-asyncoperation"]
        .to_str()
        .unwrap()
        .to_string();
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert!(asy.starts_with(&format!(
        "{base}/subscriptions/{SUB}/providers/Microsoft.Compute/locations/westeurope/operations/"
    )));
    assert!(loc.ends_with("&monitor=true"));
    let s = http.get(&asy).bearer_auth("t").send().await.unwrap();
    assert!(s.headers().contains_key("retry-after-ms"));
    let sv: Value = s.json().await.unwrap();
    assert_eq!(sv["status"], "InProgress");
    assert_eq!(
        http.get(&loc)
            .bearer_auth("t")
            .send()
            .await
            .unwrap()
            .status(),
        202
    );
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let sv: Value = http
        .get(&asy)
        .bearer_auth("t")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sv["status"], "Succeeded");
    assert!(sv["endTime"].is_string());
    assert_eq!(
        http.get(&loc)
            .bearer_auth("t")
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let r = http
        .put(format!("{base}{id}?api-version=2024-11-01"))
        .bearer_auth("t")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "InvalidRequestContent");
    let r = http.get(format!("{base}/subscriptions/{SUB}/resourceGroups/rg-t/providers/Microsoft.Compute/virtualMachines/nope?api-version=1")).bearer_auth("t").send().await.unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["error"]["message"],
        "The Resource 'Microsoft.Compute/virtualMachines/nope' under resource group 'rg-t' was not found."
    );
    let f: Value = http.get(format!("{base}/subscriptions/{SUB}/providers/Microsoft.Features/providers/Microsoft.Compute/features/EncryptionAtHost?api-version=2021-07-01")).bearer_auth("t").send().await.unwrap().json().await.unwrap();
    assert_eq!(f["properties"]["state"], "Registered");
    let skus: Value = http.get(format!("{base}/subscriptions/{SUB}/providers/Microsoft.Compute/skus?api-version=2021-07-01&$filter=location eq 'westeurope'")).bearer_auth("t").send().await.unwrap().json().await.unwrap();
    assert!(skus["value"].as_array().unwrap().iter().any(|s| {
        s["name"] == "Standard_A2_v2"
            && s["capabilities"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["name"] == "EncryptionAtHostSupported" && c["value"] == "False")
    }));
    let st: Value = http
        .get(format!("{base}/_emulator/state"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(st["vms"].as_array().unwrap().len(), 1);
    assert!(st["nics"].as_array().unwrap()[0]["id"].is_string());
    let log = emu.requests();
    assert!(log.iter().all(|r| !r.path.contains('?')));
    assert!(log.iter().any(|r| r.mutating && r.method == "POST"));
    assert!(
        log.iter()
            .filter(|r| r.path.contains("/operations/"))
            .all(|r| !r.mutating)
    );
    emu.shutdown().await;
}

async fn fault_trace(seed: u64) -> Vec<Option<String>> {
    let faults = FaultConfig {
        rate: 0.5,
        ..Default::default()
    };
    let emu = start(EmulatorConfig {
        seed,
        faults,
        ..fast()
    })
    .await
    .unwrap();
    let id = emu.add_vm(small_windows("f", 0));
    let http = reqwest::Client::new();
    for _ in 0..40 {
        let _ = http
            .get(format!("{}{id}?api-version=1", emu.base_url()))
            .bearer_auth("t")
            .send()
            .await
            .map(|r| async { r.bytes().await });
    }
    let out = emu.requests().into_iter().map(|r| r.fault).collect();
    emu.shutdown().await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_are_reproducible_from_the_seed() {
    let a = fault_trace(9).await;
    let b = fault_trace(9).await;
    let c = fault_trace(10).await;
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(a.iter().flatten().count() > 5);
    assert!(
        a.iter()
            .flatten()
            .all(|f| f != "conflict-409" && f != "failed-operation"),
        "reads get no 409 / failed LRO"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_surface_as_client_errors() {
    let faults = FaultConfig {
        rate: 1.0,
        kinds: vec![FaultKind::DropConnection],
    };
    let emu = start(EmulatorConfig { faults, ..fast() }).await.unwrap();
    let id = emu.add_vm(small_windows("d", 0));
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{}{id}?api-version=1", emu.base_url()))
        .bearer_auth("t")
        .send()
        .await;
    let failed = match r {
        Err(_) => true,
        Ok(resp) => resp.bytes().await.is_err(),
    };
    assert!(failed, "the client saw a broken connection");
    emu.set_faults(FaultConfig::default());
    let r = http
        .get(format!("{}{id}?api-version=1", emu.base_url()))
        .bearer_auth("t")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let _ = SasAccess::Read;
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_extra_subscriptions_have_their_own_vms_features_and_throttle_buckets() {
    const OTHER: &str = "00000000-0000-0000-0000-0000000000bb";
    let emu = start(EmulatorConfig {
        time_scale: 1.0,
        extra_subscriptions: vec![SubscriptionConfig {
            id: OTHER.into(),
            eah_feature_registered: false,
        }],
        throttle: throttle::ThrottleConfig::azure(),
        ..fast()
    })
    .await
    .unwrap();
    let a = emu.add_vm(small_windows("same", 0));
    let b = emu.add_vm(small_windows("same", 0).in_subscription(OTHER));
    assert_eq!(b.subscription(), OTHER);
    assert_ne!(a.key(), b.key());
    let http = reqwest::Client::new();
    let base = emu.base_url();
    let get = |path: String| {
        let http = http.clone();
        let base = base.clone();
        async move {
            http.get(format!("{base}{path}?api-version=2024-11-01"))
                .bearer_auth("t")
                .send()
                .await
                .unwrap()
        }
    };
    let list =
        |sub: &str| format!("/subscriptions/{sub}/providers/Microsoft.Compute/virtualMachines");
    let v: Value = get(list(OTHER)).await.json().await.unwrap();
    let ids: Vec<&str> = v["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![b.as_str()]);
    let feature = |sub: &str| {
        format!(
            "/subscriptions/{sub}/providers/Microsoft.Features/providers/Microsoft.Compute/features/EncryptionAtHost"
        )
    };
    let f: Value = get(feature(SUB)).await.json().await.unwrap();
    assert_eq!(f["properties"]["state"], "Registered");
    let f: Value = get(feature(OTHER)).await.json().await.unwrap();
    assert_eq!(f["properties"]["state"], "NotRegistered");
    assert_eq!(get(list("unknown")).await.status(), 404);
    // Exhaust the primary subscription's ARM read bucket; the other still answers.
    let mut throttled = false;
    for _ in 0..300 {
        if get(list(SUB)).await.status() == 429 {
            throttled = true;
            break;
        }
    }
    assert!(throttled, "the primary subscription's reads are throttled");
    assert_eq!(get(list(OTHER)).await.status(), 200);
}

/// NIC PUT / DELETE and a NIC swap by VM update (`--nic-swap`): a NIC
/// changes VMs only while the VM is deallocated, a NIC in use cannot be
/// deleted, a VM delete reserves the NICs it holds (not the ones swapped
/// off it), and the pessimistic mode reserves those too.
#[test]
fn nic_put_delete_and_a_swap_by_update() {
    for pessimistic in [false, true] {
        let cfg = EmulatorConfig {
            reserve_swapped_nics: pessimistic,
            // Longer than every `finish` below.
            nic_reservation_secs: 10_000.0,
            ..EmulatorConfig::default()
        };
        let blobs = BlobStore::new(SimClock::new(1.0), StorageConfig::default());
        let mut w = World::new(&cfg, blobs);
        w.set_base_url("http://127.0.0.1:1");
        let id = w.add_vm(&small_windows("sw", 0), 0.0);
        let vm = target(id.as_str());
        let model = w.vm_get(&vm, false).unwrap();
        let own = view_nic(&model);
        let subnet = w.nic_get(&target(&own)).unwrap()["properties"]["ipConfigurations"][0]
            ["properties"]["subnet"]["id"]
            .clone();
        let ph = own.replace("sw-nic", "sw-ade2eah-swap");
        // Create: 201 with an operation; Succeeded once it is done.
        assert!(
            w.nic_put(&target(&ph), &json!({"properties": {}}), false, 0.0)
                .is_err()
        );
        let body = json!({"location": "westeurope", "tags": {"ade2eah-run": "r"},
            "properties": {"ipConfigurations": [{"name": "c", "properties": {"subnet": {"id": subnet}}}]}});
        let r = w.nic_put(&target(&ph), &body, false, 0.0).unwrap();
        assert_eq!(r.status, 201);
        assert!(r.lro.is_some());
        let t = finish(&mut w, 0.0);
        let nic = w.nic_get(&target(&ph)).unwrap();
        assert_eq!(nic["properties"]["provisioningState"], "Succeeded");
        assert_eq!(nic["tags"]["ade2eah-run"], "r");
        // A swap on a running VM is refused; deallocated, it is an update.
        let swap = json!({"properties": {"networkProfile": {"networkInterfaces": [
            {"id": ph, "properties": {"primary": true, "deleteOption": "Detach"}}]}}});
        let e = w.vm_patch(&vm, swap.clone(), false, t).unwrap_err();
        assert!(e.message.contains("not deallocated"), "{}", e.message);
        w.vm_action(&vm, "deallocate", false, t).unwrap();
        let t = finish(&mut w, t);
        w.vm_patch(&vm, swap, false, t).unwrap();
        let t = finish(&mut w, t);
        assert!(w.nic_get(&target(&own)).unwrap()["properties"]["virtualMachine"].is_null());
        assert_eq!(
            w.nic_get(&target(&ph)).unwrap()["properties"]["virtualMachine"]["id"],
            json!(id.as_str())
        );
        // In use: not deletable.
        let e = w.nic_delete(&target(&ph), false, t).unwrap_err();
        assert_eq!(e.code, "NicInUse");
        // Delete the VM: only the placeholder it holds is reserved (the
        // original too in the pessimistic mode).
        w.vm_delete(&vm, false, t).unwrap();
        let t = finish(&mut w, t);
        assert!(w.nic_reserved_refusal(&target(&ph).key()).is_some());
        assert_eq!(
            w.nic_reserved_refusal(&target(&own).key()).is_some(),
            pessimistic
        );
        // Free now: deleted (202, then gone), and a second DELETE is 204.
        assert_eq!(w.nic_delete(&target(&ph), false, t).unwrap().status, 202);
        let t = finish(&mut w, t);
        assert!(w.nic_get(&target(&ph)).is_err());
        assert_eq!(w.nic_delete(&target(&ph), false, t).unwrap().status, 204);
    }
}
