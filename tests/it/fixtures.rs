//! The emulator's responses parse with the same wire types as Microsoft's
//! example payloads in ../shared/azure/fixtures (skipped with a notice when
//! that folder is absent).

use std::path::PathBuf;

use ade2eah::azure::wire;
use serde_json::Value;

use crate::support::*;

fn fixtures() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/azure/fixtures");
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!(
            "NOTICE: {} is absent; fixture comparison skipped",
            p.display()
        );
        None
    }
}

fn response_body(path: &PathBuf) -> Value {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let responses = v["responses"].as_object().unwrap();
    responses
        .get("200")
        .or_else(|| responses.values().next())
        .unwrap()["body"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulator_and_microsoft_examples_share_wire_types() {
    let Some(dir) = fixtures() else { return };
    // Microsoft's examples.
    let vm: wire::VirtualMachine =
        serde_json::from_value(response_body(&dir.join("compute/VirtualMachine_Get.json")))
            .unwrap();
    assert!(vm.properties.is_some());
    let iv_vm: wire::VirtualMachine = serde_json::from_value(response_body(
        &dir.join("compute/VirtualMachine_Get_InstanceView.json"),
    ))
    .unwrap();
    let ms_iv = iv_vm
        .properties
        .as_ref()
        .and_then(|p| p.instance_view.clone());
    let disk: wire::Disk =
        serde_json::from_value(response_body(&dir.join("disks/Disk_Get.json"))).unwrap();
    assert!(disk.properties.is_some());

    // The emulator's answers to the same calls, over HTTP.
    let rig = Rig::new().await;
    let id = rig.emu.add_vm(windows("fx", 1));
    let http = reqwest::Client::new();
    let get = |path: String| {
        let http = http.clone();
        let url = format!("{}{}", rig.emu.base_url(), path);
        async move {
            http.get(url)
                .bearer_auth("test")
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let emu_vm = get(format!("{id}?api-version=2024-11-01&$expand=instanceView")).await;
    let parsed: wire::VirtualMachine = serde_json::from_value(emu_vm.clone()).unwrap();
    let props = parsed.properties.expect("emulator VM has properties");
    let emu_iv = props.instance_view.expect("instance view expanded");
    assert!(emu_iv.power_state().is_some());
    assert!(
        ms_iv
            .as_ref()
            .map(|iv| !iv.statuses.is_empty())
            .unwrap_or(true)
    );
    let os = props
        .storage_profile
        .unwrap()
        .os_disk
        .unwrap()
        .managed_disk
        .unwrap()
        .id
        .unwrap();
    let emu_disk: wire::Disk =
        serde_json::from_value(get(format!("{os}?api-version=2025-01-02")).await).unwrap();
    let dp = emu_disk.properties.unwrap();
    assert!(dp.disk_size_bytes.is_some() && dp.disk_state.is_some());
    // Same top-level key sets for the VM (the emulator speaks Azure's shape).
    let ms_keys: std::collections::BTreeSet<_> =
        response_body(&dir.join("compute/VirtualMachine_Get.json"))["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
    for k in [
        "hardwareProfile",
        "storageProfile",
        "networkProfile",
        "provisioningState",
        "vmId",
    ] {
        assert!(ms_keys.contains(k), "fixture has {k}");
        assert!(emu_vm["properties"].get(k).is_some(), "emulator VM has {k}");
    }
}

/// The recorded managed-disk page-range diff (Azure SDK for .NET session
/// record) parses with the client's page-list parser.
#[test]
fn recorded_page_range_diff_parses() {
    let Some(dir) = fixtures() else { return };
    let rec: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("storage/GetManagedDiskPageRangesDiffAsync.json"))
            .unwrap(),
    )
    .unwrap();
    let bodies: Vec<String> = rec["Entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["RequestMethod"] == "GET")
        .map(|e| match &e["ResponseBody"] {
            Value::Array(parts) => parts.iter().filter_map(Value::as_str).collect::<String>(),
            Value::String(s) => s.clone(),
            _ => String::new(),
        })
        .filter(|b| b.contains("<PageList>"))
        .collect();
    assert!(!bodies.is_empty(), "the recording holds a page list");
    let pl = ade2eah::azure::storage::parse_page_list(&bodies[0]).unwrap();
    assert_eq!(pl.ranges, vec![(2048, 3072)]);
    assert_eq!(pl.next_marker, None);
}

/// The typed views (`model::views`) read Microsoft's example payloads the
/// same way the wire types parse them, and hand back the payload verbatim.
#[test]
fn typed_views_agree_with_wire_types_on_microsoft_examples() {
    use ade2eah::model::views::{DiskModel, ExtensionModel, InstanceView, SnapshotModel, VmModel};
    let Some(dir) = fixtures() else { return };

    // VM (Get) and every VM of the maximum-set list (every optional field present).
    let get = response_body(&dir.join("compute/VirtualMachine_Get.json"));
    let list = response_body(&dir.join("compute/VirtualMachine_List_MaximumSet_Gen.json"));
    let mut vms = vec![get.clone()];
    vms.extend(list["value"].as_array().unwrap().iter().cloned());
    for raw in &vms {
        let view = VmModel::new(raw);
        assert_eq!(view.raw(), raw, "the view keeps the payload verbatim");
        let wire: wire::VirtualMachine = serde_json::from_value(raw.clone()).unwrap();
        let props = wire.properties.clone().unwrap_or_default();
        assert_eq!(view.id(), wire.id.as_deref());
        assert_eq!(view.name(), wire.name.as_deref());
        assert_eq!(view.location(), wire.location.as_deref());
        assert_eq!(view.zone(), wire.zones.first().map(String::as_str));
        let vp = view.properties();
        assert_eq!(vp.vm_id(), props.vm_id.as_deref());
        assert_eq!(vp.provisioning_state(), props.provisioning_state.as_deref());
        assert_eq!(
            vp.vm_size(),
            props
                .hardware_profile
                .as_ref()
                .and_then(|h| h.vm_size.as_deref())
        );
        let sec = props.security_profile.clone().unwrap_or_default();
        assert_eq!(vp.encryption_at_host(), sec.encryption_at_host);
        assert_eq!(vp.security_type(), sec.security_type.as_deref());
        let sp = props.storage_profile.clone().unwrap_or_default();
        let os = sp.os_disk.clone().unwrap_or_default();
        let vos = view.storage_profile().os_disk();
        assert_eq!(vos.is_some(), sp.os_disk.is_some());
        assert_eq!(vos.and_then(|d| d.os_type()), os.os_type.as_deref());
        assert_eq!(
            vos.and_then(|d| d.delete_option()),
            os.delete_option.as_deref()
        );
        assert_eq!(
            vos.and_then(|d| d.managed_disk_id()),
            os.managed_disk.as_ref().and_then(|m| m.id.as_deref())
        );
        assert_eq!(
            vos.and_then(|d| d.encryption_settings()).is_some(),
            os.encryption_settings.is_some()
        );
        assert_eq!(
            vos.and_then(|d| d.diff_disk_settings()).is_some(),
            os.diff_disk_settings.is_some()
        );
        let data: Vec<_> = view.storage_profile().data_disks().collect();
        assert_eq!(data.len(), sp.data_disks.len());
        for (v, w) in data.iter().zip(&sp.data_disks) {
            assert_eq!(v.lun(), w.lun);
            assert_eq!(v.delete_option(), w.delete_option.as_deref());
            assert_eq!(
                v.managed_disk_id(),
                w.managed_disk.as_ref().and_then(|m| m.id.as_deref())
            );
        }
        let exts: Vec<ExtensionModel> = view.extensions().collect();
        assert_eq!(exts.len(), wire.resources.len());
        for (v, w) in exts.iter().zip(&wire.resources) {
            let wp = w.properties.clone().unwrap_or_default();
            assert_eq!(v.id(), w.id.as_deref());
            assert_eq!(v.publisher(), wp.publisher.as_deref());
            assert_eq!(v.handler_type(), wp.handler_type.as_deref());
            assert_eq!(v.type_handler_version(), wp.type_handler_version.as_deref());
        }
        let ids = view.attached_disk_ids();
        assert_eq!(ids.first().copied(), vos.and_then(|d| d.managed_disk_id()));
    }
    let view = VmModel::new(&get);
    assert_eq!(view.properties().vm_size(), Some("Standard_DS3_v2"));
    assert_eq!(
        view.storage_profile()
            .data_disks()
            .filter_map(|d| d.lun())
            .collect::<Vec<_>>(),
        vec![0, 1]
    );
    assert!(view.properties().availability_set().is_some());
    assert!(
        view.properties()
            .network_interfaces()
            .all(|n| n.id().is_some())
    );

    // Instance view (GET .../instanceView).
    let iv_raw = response_body(&dir.join("compute/VirtualMachine_Get_InstanceView.json"));
    let iv = InstanceView::new(&iv_raw);
    let wiv: wire::InstanceView = serde_json::from_value(iv_raw.clone()).unwrap();
    assert_eq!(iv.power_state(), wiv.power_state());
    assert!(iv.power_state().is_some());
    assert_eq!(
        iv.disks().map(|d| d.name()).collect::<Vec<_>>(),
        wiv.disks
            .iter()
            .map(|d| d.name.as_deref())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        iv.extensions()
            .map(|e| e.handler_type())
            .collect::<Vec<_>>(),
        wiv.extensions
            .iter()
            .map(|e| e.handler_type.as_deref())
            .collect::<Vec<_>>()
    );

    // Extension (Get, maximum set).
    let ext_raw =
        response_body(&dir.join("compute/VirtualMachineExtension_Get_MaximumSet_Gen.json"));
    let ext = ExtensionModel::new(&ext_raw);
    assert_eq!(ext.raw(), &ext_raw);
    assert_eq!(ext.publisher(), Some("extPublisher"));
    assert_eq!(ext.handler_type(), Some("extType"));
    assert_eq!(ext.type_handler_version(), Some("1.2"));
    assert_eq!(ext.provisioning_state(), Some("Creating"));

    // Disk and snapshot (Get).
    for (file, snapshot) in [
        ("disks/Disk_Get.json", false),
        ("disks/Snapshot_Get.json", true),
    ] {
        let raw = response_body(&dir.join(file));
        let view: SnapshotModel = DiskModel::new(&raw);
        assert_eq!(view.raw(), &raw);
        let w: wire::Disk = serde_json::from_value(raw.clone()).unwrap();
        let wp = w.properties.clone().unwrap_or_default();
        assert_eq!(view.id(), w.id.as_deref());
        assert_eq!(view.name(), w.name.as_deref());
        assert_eq!(view.location(), w.location.as_deref());
        let vp = view.properties();
        assert_eq!(vp.disk_size_bytes(), wp.disk_size_bytes);
        assert_eq!(vp.disk_state(), wp.disk_state.as_deref());
        assert_eq!(vp.provisioning_state(), wp.provisioning_state.as_deref());
        assert_eq!(vp.os_type().and_then(|v| v.as_str()), wp.os_type.as_deref());
        assert_eq!(
            view.sku_name(),
            w.sku
                .as_ref()
                .and_then(|s| s.get("name"))
                .and_then(|n| n.as_str())
        );
        assert_eq!(
            vp.hyper_v_generation().and_then(|v| v.as_str()),
            wp.hyper_v_generation.as_deref()
        );
        assert_eq!(
            vp.encryption_settings_collection().is_some(),
            wp.encryption_settings_collection.is_some()
        );
        assert_eq!(vp.ade_enabled(), Some(true), "{file} carries an ADE stamp");
        assert_eq!(
            vp.create_option(),
            wp.creation_data
                .as_ref()
                .and_then(|c| c.get("createOption"))
                .and_then(|c| c.as_str())
        );
        assert_eq!(
            vp.create_option(),
            Some(if snapshot { "Copy" } else { "FromImage" })
        );
        assert_eq!(
            vp.security_type(),
            if snapshot {
                None
            } else {
                Some("TrustedLaunch")
            }
        );
        assert!(vp.purchase_plan().is_some());
    }
}
