//! `--rebuild-linux-os` end to end: a Linux VM with an ADE OS volume is
//! rebuilt from its image with EAH, same name, NIC, size, tags and identity,
//! on a new OS disk and new empty data disks at the same LUNs (same size,
//! SKU, caching); the original disks are kept, unchanged, and listed with
//! their key vault secrets.

use ade2eah::model::ResourceId;
use serde_json::Value;

use crate::support::*;

fn lin_os(name: &str) -> ade2eah::emulator::VmSpec {
    let mut s = linux_data(name);
    s.ade = ade2eah::emulator::AdeSpec::LinuxOsAndData;
    let mut d = s.data_disks[0].clone();
    d.lun = Some(3);
    d.size_gib = 3;
    s.data_disks.push(d);
    s.tags.insert("owner".into(), "team-a".into());
    s.system_identity = true;
    s
}

fn model_of(rig: &Rig, vm: &ResourceId) -> Value {
    let state = serde_json::to_value(rig.emu.state()).unwrap();
    find_by_id(&state["vms"], vm).unwrap()["model"].clone()
}

fn disk_model(rig: &Rig, id: &ResourceId) -> Value {
    let state = serde_json::to_value(rig.emu.state()).unwrap();
    find_by_id(&state["disks"], id).unwrap_or_else(|| panic!("disk {id} exists"))["model"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linux_os_volume_vm_is_rebuilt_from_its_image_on_empty_disks() {
    let rig = Rig::new().await;
    let vm = rig.emu.add_vm(lin_os("lin-rebuild"));
    let before = model_of(&rig, &vm);
    let digests = source_digests(&rig.emu, &vm);

    // Off by default: skipped, untouched.
    let out = rig.run(std::slice::from_ref(&vm), &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--rebuild-linux-os"),
        "{}",
        text(&out)
    );
    let status = rig.status().await;
    assert_eq!(status["vms"][0]["outcome"], "skipped", "{status:#}");

    // The plan with the flag says plainly what does not carry over.
    let plan_args: Vec<String> = [
        "plan",
        "--arm-endpoint",
        &rig.emu.base_url(),
        "--auth",
        "none",
        "--subscription",
        rig.emu.subscription(),
        "--vm",
        vm.as_str(),
        "--rebuild-linux-os",
        "--output",
        "json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = bin(&plan_args, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["vms"][0]["path"], "linux-rebuild", "{plan:#}");
    assert_eq!(plan["vms"][0]["eligible"], true, "{plan:#}");
    let finding = plan["vms"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "linux-rebuild")
        .unwrap_or_else(|| panic!("{plan:#}"));
    let msg = finding["message"].as_str().unwrap();
    assert!(
        msg.contains("NOT carried over")
            && msg.contains("data disks' contents")
            && msg.contains("passwords"),
        "{msg}"
    );

    // With the flag, in a fresh state directory.
    let state2 = tempfile::tempdir().unwrap();
    let args: Vec<String> = [
        "run",
        "--arm-endpoint",
        &rig.emu.base_url(),
        "--auth",
        "none",
        "--subscription",
        rig.emu.subscription(),
        "--vm",
        vm.as_str(),
        "--state",
        &state2.path().display().to_string(),
        "--yes",
        "--poll-interval",
        POLL,
        "--rebuild-linux-os",
        "--output",
        "json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = bin(&args, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["vms"][0]["outcome"], "verified", "{summary:#}");

    let after = model_of(&rig, &vm);
    let p = &after["properties"];
    assert_eq!(p["securityProfile"]["encryptionAtHost"], true, "EAH on");
    assert_eq!(
        p["hardwareProfile"], before["properties"]["hardwareProfile"],
        "same size"
    );
    // (The Azure-side lease tag is the lease's own business: the lease module's part.)
    let mut tags = after["tags"].clone();
    tags.as_object_mut().unwrap().remove("ade2eah-lease");
    assert_eq!(tags, before["tags"], "same tags");
    assert_eq!(
        after["identity"]["type"], before["identity"]["type"],
        "same identity kind"
    );
    let nic_ids = |m: &Value| -> Vec<String> {
        m["properties"]["networkProfile"]["networkInterfaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["id"].as_str().unwrap().to_ascii_lowercase())
            .collect()
    };
    assert_eq!(nic_ids(&after), nic_ids(&before), "same NICs");
    assert_eq!(p["storageProfile"]["osDisk"]["createOption"], "FromImage");
    assert_eq!(
        p["storageProfile"]["imageReference"]["offer"],
        before["properties"]["storageProfile"]["imageReference"]["offer"],
        "built from the VM's own image"
    );
    assert_eq!(
        p["osProfile"]["adminUsername"],
        before["properties"]["osProfile"]["adminUsername"]
    );
    let state = serde_json::to_value(rig.emu.state()).unwrap();
    let power = find_by_id(&state["vms"], &vm).unwrap()["emulator"]["power"].clone();
    assert!(
        power.as_str().unwrap_or_default().contains("running"),
        "running: {power}"
    );

    // New OS disk; new empty data disks at the same LUNs, same size, SKU, caching.
    let orig_os = before["properties"]["storageProfile"]["osDisk"]["managedDisk"]["id"]
        .as_str()
        .unwrap();
    let new_os = p["storageProfile"]["osDisk"]["managedDisk"]["id"]
        .as_str()
        .unwrap();
    assert!(!new_os.eq_ignore_ascii_case(orig_os), "a new OS disk");
    let orig_data = before["properties"]["storageProfile"]["dataDisks"]
        .as_array()
        .unwrap();
    let new_data = p["storageProfile"]["dataDisks"].as_array().unwrap();
    assert_eq!(orig_data.len(), 2);
    assert_eq!(new_data.len(), orig_data.len());
    for o in orig_data {
        let n = new_data
            .iter()
            .find(|n| n["lun"] == o["lun"])
            .unwrap_or_else(|| panic!("LUN {} kept", o["lun"]));
        assert_eq!(
            n["caching"], o["caching"],
            "same caching at LUN {}",
            o["lun"]
        );
        let oid = ResourceId::parse(o["managedDisk"]["id"].as_str().unwrap()).unwrap();
        let nid = ResourceId::parse(n["managedDisk"]["id"].as_str().unwrap()).unwrap();
        assert_ne!(oid, nid, "a new disk at LUN {}", o["lun"]);
        let (od, nd) = (disk_model(&rig, &oid), disk_model(&rig, &nid));
        assert_eq!(nd["properties"]["creationData"]["createOption"], "Empty");
        assert_eq!(
            nd["properties"]["diskSizeGB"], od["properties"]["diskSizeGB"],
            "same size"
        );
        assert_eq!(nd["sku"]["name"], od["sku"]["name"], "same SKU");
        assert_eq!(rig.emu.disk_allocated_bytes(&nid), Some(0), "empty");
    }
    // The originals are kept, unchanged (still encrypted, to be recovered).
    for (id, digest) in &digests {
        assert_eq!(
            rig.emu.disk_digest(id).as_deref(),
            Some(digest.as_str()),
            "{id} kept unchanged"
        );
    }
    // ... and listed with their key vault secrets (cleanup's dry run).
    let out = bin(
        &[
            "cleanup".into(),
            "--arm-endpoint".into(),
            rig.emu.base_url(),
            "--auth".into(),
            "none".into(),
            "--state".into(),
            state2.path().display().to_string(),
            "--output".into(),
            "json".into(),
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys = &report["keys"][0]["keys"];
    assert_eq!(
        keys["disk_secrets"].as_array().map(Vec::len),
        Some(3),
        "{report:#}"
    );
    assert!(!keys["vaults"].as_array().unwrap().is_empty(), "{report:#}");
    for (id, _) in &digests {
        assert!(
            report["lines"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l["kind"] == "source-disk"
                    && l["id"]
                        .as_str()
                        .is_some_and(|s| s.eq_ignore_ascii_case(id.as_str()))),
            "original {id} listed: {report:#}"
        );
    }
}
