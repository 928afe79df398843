//! Extensions other than ADE and the system-assigned identity's role
//! assignments come back on the re-created VM (issue 12, deliverable 4).

use std::collections::BTreeSet;

use ade2eah::model::ResourceId;
use serde_json::Value;

use crate::support::*;

/// A Windows VM (OS + one data disk) with an Azure Monitor agent and a
/// dependency agent (public settings), a custom script whose command is in
/// protected settings, and a system identity with two role assignments.
fn spec(name: &str) -> ade2eah::emulator::VmSpec {
    windows(name, 1).with_extensions_and_roles()
}

/// The public-settings extensions the run must reinstall.
const CARRIED: [&str; 2] = ["AzureMonitorAgent", "DependencyAgent"];
/// The protected-settings extension left to the operator.
const PROTECTED: &str = "bootstrap";

fn principal(vm: &Value) -> String {
    vm["identity"]["principalId"]
        .as_str()
        .expect("system-assigned principal")
        .to_string()
}

fn extension<'a>(vm: &'a Value, name: &str) -> Option<&'a Value> {
    vm["resources"]
        .as_array()?
        .iter()
        .find(|e| e["name"].as_str() == Some(name))
}

/// `(roleDefinitionId, scope)` of every role assignment of `principal`.
fn grants(rig: &Rig, principal: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = rig
        .emu
        .role_assignments(
            &format!("/subscriptions/{}", rig.emu.subscription()),
            Some(principal),
        )
        .iter()
        .map(|a| {
            (
                a["properties"]["roleDefinitionId"]
                    .as_str()
                    .unwrap()
                    .to_lowercase(),
                a["properties"]["scope"].as_str().unwrap().to_lowercase(),
            )
        })
        .collect();
    out.sort();
    out
}

/// `run` with extra flags.
async fn run_with(
    rig: &Rig,
    vm: &ResourceId,
    extra: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    let mut a: Vec<String> = vec![
        "run".into(),
        "--arm-endpoint".into(),
        rig.emu.base_url(),
        "--auth".into(),
        "none".into(),
        "--subscription".into(),
        rig.emu.subscription().to_string(),
        "--vm".into(),
        vm.to_string(),
        "--state".into(),
        rig.state_dir().display().to_string(),
        "--yes".into(),
        "--poll-interval".into(),
        POLL.into(),
    ];
    a.extend(extra.iter().map(|s| s.to_string()));
    bin(&a, env).await
}

/// Mutating requests to paths containing `needle` (case-insensitive).
fn puts_to(rig: &Rig, needle: &str) -> Vec<String> {
    rig.emu
        .requests()
        .into_iter()
        .filter(|r| r.mutating && r.method == "PUT" && r.path.to_lowercase().contains(needle))
        .map(|r| r.path)
        .collect()
}

/// The checks every migrated VM of this file passes: the carried extensions
/// back field by field and provisioned, the protected one absent, the new
/// principal holding exactly the old one's roles (when `carried`).
fn assert_carried(
    rig: &Rig,
    vm: &ResourceId,
    before: &Value,
    old_roles: &[(String, String)],
    roles_carried: bool,
) {
    let after = rig.emu.vm_get(vm).expect("the VM was re-created");
    assert_ne!(
        after["properties"]["vmId"], before["properties"]["vmId"],
        "a new VM resource"
    );
    // Accepted differences on the VM: vmId, identity.principalId (new
    // resource), the disks (new ids), encryptionAtHost (the point). The
    // extensions themselves have none: compared whole.
    for name in CARRIED {
        let want = extension(before, name).unwrap();
        let have =
            extension(&after, name).unwrap_or_else(|| panic!("{name} reinstalled: {after:#}"));
        assert_eq!(
            have, want,
            "{name} is back exactly as it was (settings, version, flags, tags, Succeeded)"
        );
        let status = after["properties"]["instanceView"]["extensions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap();
        assert_eq!(status["statuses"][0]["code"], "ProvisioningState/succeeded");
    }
    assert!(
        extension(&after, PROTECTED).is_none(),
        "the protected-settings extension is not guessed"
    );
    let new = principal(&after);
    assert_ne!(
        new,
        principal(before),
        "a re-created VM has a new principal"
    );
    let now = grants(rig, &new);
    if roles_carried {
        assert_eq!(
            now, old_roles,
            "the new principal holds exactly the old one's roles"
        );
    } else {
        assert!(
            now.is_empty(),
            "--no-carry-role-assignments grants nothing: {now:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extensions_and_role_assignments_come_back_on_the_recreated_vm() {
    let rig = Rig::new().await;
    let vm = rig.emu.add_vm(spec("ext-id"));
    let before = rig.emu.vm_get(&vm).unwrap();
    let old_roles = grants(&rig, &principal(&before));
    assert_eq!(old_roles.len(), 2);

    let out = rig.run(std::slice::from_ref(&vm), &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_carried(&rig, &vm, &before, &old_roles, true);
    let assignments = rig.emu.role_assignments(
        &format!("/subscriptions/{}", rig.emu.subscription()),
        Some(&principal(&rig.emu.vm_get(&vm).unwrap())),
    );
    for a in &assignments {
        assert_eq!(a["properties"]["principalType"], "ServicePrincipal");
    }
    assert_eq!(
        puts_to(&rig, "/roleassignments/").len(),
        2,
        "one PUT per role"
    );

    let status = rig.status().await;
    let v = &status["vms"][0];
    assert_eq!(v["outcome"], "verified", "{status:#}");
    let ops: Vec<&str> = v["operator_actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert!(
        ops[0].contains(PROTECTED) && ops[0].contains("protected settings"),
        "{ops:?}"
    );
    assert_eq!(v["carried"]["manual_extensions"][0]["name"], PROTECTED);
    assert!(
        !serde_json::to_string(&status).unwrap().contains("s3cret"),
        "protected settings never reach the journal"
    );
    let report = rig.state_json("report").await;
    let report: Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(
        report["vms"][0]["operator_actions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_in_the_middle_of_reinstall_resumes_without_duplicates() {
    for point in [
        "after-act:reinstall-extension@1",
        "after-intent:reinstall-extension@2",
        "after-act:grant-role@1",
    ] {
        let rig = Rig::new().await;
        let vm = rig.emu.add_vm(spec("ext-crash"));
        let before = rig.emu.vm_get(&vm).unwrap();
        let old_roles = grants(&rig, &principal(&before));

        let crashed = rig
            .run(std::slice::from_ref(&vm), &[("ADE2EAH_FAILPOINTS", point)])
            .await;
        assert_ne!(
            crashed.status.code(),
            Some(0),
            "{point}: {}",
            text(&crashed)
        );
        assert!(
            String::from_utf8_lossy(&crashed.stderr).contains("failpoint"),
            "{point}"
        );
        assert_eq!(rig.status().await["vms"][0]["step"], "reinstall", "{point}");
        let resumed = rig.resume(&[]).await;
        assert_eq!(
            resumed.status.code(),
            Some(0),
            "{point}: {}",
            text(&resumed)
        );

        assert_carried(&rig, &vm, &before, &old_roles, true);
        let ext_puts = puts_to(&rig, "/extensions/");
        let reinstalls: Vec<&String> = ext_puts
            .iter()
            .filter(|p| {
                CARRIED
                    .iter()
                    .any(|n| p.ends_with(&format!("/extensions/{n}")))
            })
            .collect();
        let distinct: BTreeSet<&String> = reinstalls.iter().copied().collect();
        assert_eq!(
            reinstalls.len(),
            distinct.len(),
            "{point}: an extension already present with its settings is not PUT again: {reinstalls:?}"
        );
        assert_eq!(
            puts_to(&rig, "/roleassignments/").len(),
            2,
            "{point}: a granted role is not granted again"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_carry_role_assignments_leaves_them_out_and_the_plan_says_so() {
    let rig = Rig::new().await;
    let vm = rig.emu.add_vm(spec("ext-nocarry"));
    let before = rig.emu.vm_get(&vm).unwrap();
    let old_roles = grants(&rig, &principal(&before));

    let plan = |extra: &'static [&'static str]| {
        let mut a: Vec<String> = vec![
            "plan".into(),
            "--arm-endpoint".into(),
            rig.emu.base_url(),
            "--auth".into(),
            "none".into(),
            "--subscription".into(),
            rig.emu.subscription().to_string(),
            "--vm".into(),
            vm.to_string(),
            "--output".into(),
            "json".into(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        async move { bin(&a, &[]).await }
    };
    let codes = |out: &std::process::Output| -> Vec<(String, String)> {
        assert_eq!(out.status.code(), Some(0), "{}", text(out));
        let p: Value = serde_json::from_slice(&out.stdout).unwrap();
        p["vms"][0]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["code"].as_str().unwrap().to_string(),
                    f["message"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let carried = codes(&plan(&[]).await);
    let left = codes(&plan(&["--no-carry-role-assignments"]).await);
    assert_eq!(rig.mutating_requests(), 0, "plan is a dry run");
    for (findings, code) in [
        (&carried, "role-assignments-carried"),
        (&left, "role-assignments-not-carried"),
    ] {
        let (_, msg) = findings
            .iter()
            .find(|(c, _)| c == code)
            .unwrap_or_else(|| panic!("{code} in {findings:?}"));
        for (role, scope) in &old_roles {
            assert!(
                msg.to_lowercase().contains(role) && msg.to_lowercase().contains(scope),
                "{msg}"
            );
        }
        assert!(
            findings
                .iter()
                .any(|(c, m)| c == "extension-protected-settings" && m.contains(PROTECTED))
        );
    }

    let out = run_with(&rig, &vm, &["--no-carry-role-assignments"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_carried(&rig, &vm, &before, &old_roles, false);
    assert!(puts_to(&rig, "/roleassignments/").is_empty());
    let status = rig.status().await;
    let ops = status["vms"][0]["operator_actions"].as_array().unwrap();
    assert_eq!(
        ops.iter()
            .filter(|o| o.as_str().unwrap().contains("--no-carry-role-assignments"))
            .count(),
        2,
        "each role left out is listed for the operator: {ops:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_extension_parks_with_its_message() {
    let rig = Rig::new().await;
    let vm = rig.emu.add_vm(spec("ext-fail"));
    rig.emu.fail_extension(
        "Microsoft.Azure.Monitoring.DependencyAgent",
        "DependencyAgentWindows",
        Some("Dependency agent install failed with exit code 5"),
    );
    let out = rig.run(std::slice::from_ref(&vm), &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let status = rig.status().await;
    let v = &status["vms"][0];
    assert_eq!(v["outcome"], "parked");
    assert_eq!(v["step"], "reinstall");
    let reason = v["reason"].as_str().unwrap();
    assert!(reason.contains("exit code 5"), "{reason}");
    assert!(
        v["next_action"].as_str().unwrap().contains("resume"),
        "{v:#}"
    );
}
