//! The rebuild path's pure parts: spec (credentials, image), decisions, bodies.

use serde_json::json;

use super::*;

fn vm(keys: bool) -> Value {
    let mut linux = json!({"disablePasswordAuthentication": keys});
    if keys {
        linux["ssh"] = json!({"publicKeys": [{"path": "/home/u/.ssh/authorized_keys", "keyData": "ssh-rsa AAA k"}]});
    }
    json!({"name": "lin", "properties": {
        "storageProfile": {"imageReference": {"publisher": "Canonical", "offer": "o", "sku": "s", "version": "latest", "exactVersion": "1.2"}},
        "osProfile": {"computerName": "lin", "adminUsername": "u", "linuxConfiguration": linux}}})
}

#[test]
fn spec_carries_image_user_and_keys_and_refuses_password_only_vms() {
    let s = rebuild_spec(&vm(true), &RebuildOptions::default()).unwrap();
    assert_eq!(s.image_reference["publisher"], "Canonical");
    assert!(
        s.image_reference.get("exactVersion").is_none(),
        "read-only dropped"
    );
    assert_eq!(s.os_profile["adminUsername"], "u");
    assert_eq!(
        s.os_profile["linuxConfiguration"]["ssh"]["publicKeys"][0]["keyData"],
        "ssh-rsa AAA k"
    );
    assert!(s.os_profile.get("adminPassword").is_none());
    assert!(!s.not_carried.is_empty());

    let e = rebuild_spec(&vm(false), &RebuildOptions::default()).unwrap_err();
    assert!(e.contains("--ssh-public-key"), "{e}");
    let opts = RebuildOptions {
        image: Some("a:b:c:1.0".into()),
        ssh_public_keys: vec!["ssh-ed25519 BBB op".into()],
    };
    let s = rebuild_spec(&vm(false), &opts).unwrap();
    assert_eq!(
        s.image_reference,
        json!({"publisher": "a", "offer": "b", "sku": "c", "version": "1.0"})
    );
    assert_eq!(
        s.os_profile["linuxConfiguration"]["ssh"]["publicKeys"][0],
        json!({"path": "/home/u/.ssh/authorized_keys", "keyData": "ssh-ed25519 BBB op"})
    );
    assert_eq!(
        s.os_profile["linuxConfiguration"]["disablePasswordAuthentication"],
        true
    );

    let mut no_image = vm(true);
    no_image["properties"]["storageProfile"] = json!({});
    assert!(
        rebuild_spec(&no_image, &RebuildOptions::default())
            .unwrap_err()
            .contains("--image")
    );
    assert!(parse_image("a:b").is_err());
    assert!(
        parse_image("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/images/i")
            .is_ok()
    );
}

#[test]
fn rebuild_skips_ade_and_copy_steps_and_creates_empty_disks() {
    let id = |t: &str, n: &str| ResourceId::new("s", "rg", "Microsoft.Compute", t, n);
    let mut rec = VmRecord::new(id("virtualMachines", "lin"));
    rec.path = MigrationPath::RebuildLinuxOs;
    rec.original_model = Some(vm(true));
    rec.disks.push(DiskPlan {
        role: DiskRole::Data { lun: 3 },
        source: id("disks", "d"),
        source_size_bytes: 3 << 30,
        source_model: json!({"sku": {"name": "Premium_LRS"}, "location": "l"}),
        snapshot: id("snapshots", "d-b"),
        target: id("disks", "d-eah"),
        copied: false,
        bytes_copied: 0,
        rounds: vec![],
        verified: false,
        rounds_opened: 0,
    });
    let obs = Observation::default();
    for step in [
        Step::DisableAde,
        Step::AwaitDecrypted,
        Step::RemoveExtension,
        Step::PreCopy,
        Step::FinalCopy,
        Step::VerifyCopy,
    ] {
        rec.step = step;
        assert_eq!(
            crate::step::decide(&rec, &obs, "r"),
            Decision::Advance,
            "{step}"
        );
        assert_eq!(crate::step::needs(&rec), Needs::default());
    }
    rec.step = Step::CreateTargets;
    let mut obs = Observation::default();
    obs.disks.insert(rec.disks[0].target.key(), None);
    assert_eq!(
        crate::step::decide(&rec, &obs, "r"),
        Decision::Act(Action::CreateEmptyDisk {
            source: rec.disks[0].source.clone(),
            target: rec.disks[0].target.clone()
        })
    );
    // The copy path at the same step would create an Upload disk instead.
    rec.path = MigrationPath::Copy;
    assert!(matches!(
        crate::step::decide(&rec, &obs, "r"),
        Decision::Act(Action::CreateTargetDisk { .. })
    ));

    let facts = VmFacts {
        os: crate::step::record::OsType::Linux,
        location: "l".into(),
        zone: None,
        size: "s".into(),
        ade_extension: None,
        dual_pass: false,
        volume_type: "Data".into(),
        target_encryption: Default::default(),
        guest_check: false,
        nic_swap: false,
        nic_swap_refused: false,
        rebuild: None,
    };
    let b = empty_disk(&rec.disks[0], &facts, "r");
    assert_eq!(
        b["properties"]["creationData"],
        json!({"createOption": "Empty"})
    );
    assert_eq!(b["properties"]["diskSizeGB"], 3);
    assert_eq!(b["sku"]["name"], "Premium_LRS");
}
