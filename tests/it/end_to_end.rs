use ade2eah::emulator::DeleteOption;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_os_windows_all_and_linux_data_migrate_with_identical_bytes() {
    let rig = Rig::new().await;
    let win_os = rig.emu.add_vm(windows("win-os", 0));
    let win_all = rig.emu.add_vm(windows("win-all", 2));
    let lin = rig.emu.add_vm(linux_data("lin-data"));
    let before: Vec<_> = [&win_os, &win_all, &lin]
        .iter()
        .map(|v| source_digests(&rig.emu, v))
        .collect();

    // Debug logging on: the secrets scan below then covers every log line too.
    let out = rig
        .run(
            &[win_os.clone(), win_all.clone(), lin.clone()],
            &[("ADE2EAH_LOG", "debug")],
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("DEBUG"),
        "debug logs were written: {}",
        text(&out)
    );

    for (vm, digests) in [&win_os, &win_all, &lin].iter().zip(&before) {
        assert_migrated(&rig.emu, vm, digests);
    }
    let status = rig.status().await;
    let vms = status["vms"].as_array().unwrap();
    assert_eq!(vms.len(), 3);
    assert!(
        vms.iter()
            .all(|v| v["outcome"] == "verified" && v["step"] == "done"),
        "{status:#}"
    );
    assert_no_secrets(rig.state_dir(), &[&out]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_option_delete_loses_nothing() {
    let rig = Rig::new().await;
    let mut spec = windows("win-delete", 1);
    spec.delete_option = DeleteOption::Delete;
    let vm = rig.emu.add_vm(spec);
    let before = source_digests(&rig.emu, &vm);
    let nics_before = serde_json::to_value(rig.emu.state()).unwrap()["nics"].clone();

    let out = rig.run(std::slice::from_ref(&vm), &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_migrated(&rig.emu, &vm, &before);
    let nics_after = serde_json::to_value(rig.emu.state()).unwrap()["nics"].clone();
    assert_eq!(
        nics_before
            .as_array()
            .map(Vec::len)
            .or(nics_before.as_object().map(|m| m.len())),
        nics_after
            .as_array()
            .map(Vec::len)
            .or(nics_after.as_object().map(|m| m.len())),
        "the NIC survived the VM delete"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ineligible_vms_are_skipped_and_never_touched() {
    let rig = Rig::new().await;
    let mut lin_os = linux_data("lin-os");
    lin_os.ade = ade2eah::emulator::AdeSpec::LinuxOsAndData;
    let lin_os = rig.emu.add_vm(lin_os);
    let mut plain = windows("plain", 0);
    plain.ade = ade2eah::emulator::AdeSpec::None;
    let plain = rig.emu.add_vm(plain);

    let out = rig.run(&[lin_os.clone(), plain.clone()], &[]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "skipped VMs are not failures: {}",
        text(&out)
    );
    assert_eq!(
        rig.mutating_requests(),
        0,
        "nothing mutating was sent to ineligible VMs"
    );
    let status = rig.status().await;
    for v in status["vms"].as_array().unwrap() {
        assert_eq!(v["outcome"], "skipped");
        assert!(!v["reason"].as_str().unwrap().is_empty());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Linux OS volume")
            || stderr.contains("Linux VM with an ADE-encrypted OS volume"),
        "{stderr}"
    );
}
