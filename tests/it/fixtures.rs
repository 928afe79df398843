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
