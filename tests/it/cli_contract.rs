use ade2eah::journal::Journal;
use ade2eah::model::ResourceId;

use crate::support::*;

fn vm_id(rig: &Rig, name: &str) -> ResourceId {
    ResourceId::new(
        rig.emu.subscription(),
        "rg-test",
        "Microsoft.Compute",
        "virtualMachines",
        name,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_vm_is_bad_input_and_nothing_is_sent() {
    let rig = Rig::new().await;
    let real = rig.emu.add_vm(windows("real", 0));
    let out = rig.run(&[real, vm_id(&rig, "does-not-exist")], &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does-not-exist"),
        "{}",
        text(&out)
    );
    assert_eq!(rig.mutating_requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_ids_and_flags_are_bad_input() {
    let rig = Rig::new().await;
    let base = rig.emu.base_url();
    let sub = rig.emu.subscription().to_string();
    let state = rig.state_dir().display().to_string();
    let cases: Vec<Vec<String>> = vec![
        vec![
            "run".into(),
            "--arm-endpoint".into(),
            base.clone(),
            "--auth".into(),
            "none".into(),
            "--subscription".into(),
            sub.clone(),
            "--vm".into(),
            "not-an-id".into(),
            "--state".into(),
            state.clone(),
            "--yes".into(),
        ],
        vec![
            "run".into(),
            "--arm-endpoint".into(),
            base.clone(),
            "--auth".into(),
            "none".into(),
            "--subscription".into(),
            sub.clone(),
            "--vm".into(),
            format!(
                "/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/a?b"
            ),
            "--state".into(),
            state.clone(),
            "--yes".into(),
        ],
        vec![
            "run".into(),
            "--arm-endpoint".into(),
            base.clone(),
            "--auth".into(),
            "none".into(),
            "--subscription".into(),
            "other-sub".into(),
            "--vm".into(),
            format!(
                "/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/a"
            ),
            "--state".into(),
            state.clone(),
            "--yes".into(),
        ],
        vec![
            "run".into(),
            "--arm-endpoint".into(),
            "https://management.azure.com".into(),
            "--auth".into(),
            "none".into(),
            "--subscription".into(),
            sub.clone(),
            "--vm".into(),
            format!(
                "/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/a"
            ),
            "--state".into(),
            state.clone(),
            "--yes".into(),
        ],
        vec![
            "run".into(),
            "--arm-endpoint".into(),
            base.clone(),
            "--auth".into(),
            "none".into(),
            "--subscription".into(),
            sub.clone(),
            "--vm".into(),
            format!(
                "/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/a"
            ),
            "--state".into(),
            state.clone(),
            "--yes".into(),
            "--poll-interval".into(),
            "-1".into(),
        ],
        vec![
            "run".into(),
            "--arm-endpoint".into(),
            base.clone(),
            "--auth".into(),
            "none".into(),
            "--subscription".into(),
            sub.clone(),
            "--vm".into(),
            format!(
                "/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.Network/networkInterfaces/a"
            ),
            "--state".into(),
            state.clone(),
            "--yes".into(),
        ],
        vec![
            "resume".into(),
            "--state".into(),
            state.clone(),
            "--auth".into(),
            "none".into(),
            "--arm-endpoint".into(),
            base.clone(),
        ],
        vec![
            "status".into(),
            "--state".into(),
            state.clone(),
            "--output".into(),
            "json".into(),
        ],
        vec!["run".into(), "--bogus-flag".into()],
    ];
    for args in cases {
        let out = bin(&args, &[]).await;
        assert_eq!(out.status.code(), Some(2), "{args:?} → {}", text(&out));
        assert!(!out.stderr.is_empty(), "{args:?} explains itself");
    }
    assert_eq!(rig.mutating_requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_yes_and_without_a_terminal_nothing_happens() {
    let rig = Rig::new().await;
    let vm = rig.emu.add_vm(windows("noyes", 0));
    let sub = rig.emu.subscription().to_string();
    let args: Vec<String> = vec![
        "run".into(),
        "--arm-endpoint".into(),
        rig.emu.base_url(),
        "--auth".into(),
        "none".into(),
        "--subscription".into(),
        sub,
        "--vm".into(),
        vm.to_string(),
        "--state".into(),
        rig.state_dir().display().to_string(),
    ];
    let out = bin(&args, &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(rig.mutating_requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_journal_is_refused_clearly() {
    let rig = Rig::new().await;
    let vm = rig.emu.add_vm(windows("locked", 0));
    let _held = Journal::open(rig.state_dir()).unwrap();
    let out = rig.run(&[vm], &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use by another ade2eah process"),
        "{}",
        text(&out)
    );
    assert_eq!(rig.mutating_requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_on_the_same_journal_is_refused_and_status_lists_every_vm() {
    let rig = Rig::new().await;
    let vm = rig.emu.add_vm(windows("twice", 0));
    let first = rig.run(std::slice::from_ref(&vm), &[]).await;
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let writes = rig.mutating_requests();
    let again = rig.run(std::slice::from_ref(&vm), &[]).await;
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("resume"),
        "{}",
        text(&again)
    );
    assert_eq!(
        rig.mutating_requests(),
        writes,
        "the refused run sent nothing mutating"
    );
    let s = rig.status().await;
    assert_eq!(
        s["vms"][0]["id"].as_str().unwrap().to_ascii_lowercase(),
        vm.key()
    );
    assert_eq!(s["vms"][0]["step"], "done");
    assert_eq!(s["vms"][0]["outcome"], "verified");
    // A finished run resumes to the same answer without touching Azure.
    let resumed = rig.resume(&[]).await;
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));
    assert_eq!(rig.mutating_requests(), writes);
}
