use crate::support::*;

/// Kills the run at `point` (a real abort, like `kill -9`), then resumes and
/// checks the VM ends verified with identical bytes and no SAS left open.
async fn crash_then_resume(point: &str) {
    let rig = Rig::new().await;
    let vm = rig.emu.add_vm(windows(
        &format!("crash-{}", point.replace([':', '@'], "-")),
        1,
    ));
    let before = source_digests(&rig.emu, &vm);

    let crashed = rig
        .run(std::slice::from_ref(&vm), &[("ADE2EAH_FAILPOINTS", point)])
        .await;
    assert!(
        crashed.status.code().is_none() || crashed.status.code() != Some(0),
        "the failpoint {point} fired: {}",
        text(&crashed)
    );
    assert!(
        String::from_utf8_lossy(&crashed.stderr).contains("failpoint"),
        "{}",
        text(&crashed)
    );

    let resumed = rig.resume(&[]).await;
    assert_eq!(
        resumed.status.code(),
        Some(0),
        "resume after {point}: {}",
        text(&resumed)
    );
    assert_migrated(&rig.emu, &vm, &before);
    let status = rig.status().await;
    assert_eq!(status["vms"][0]["outcome"], "verified");
    assert_no_secrets(rig.state_dir(), &[&crashed, &resumed]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_disable_intent() {
    crash_then_resume("after-intent:disable-ade").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_with_sas_granted_mid_copy() {
    crash_then_resume("copy:after-grant").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_copy_before_revoke() {
    crash_then_resume("copy:after-copy").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_vm_delete_sent() {
    crash_then_resume("after-act:delete-vm").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_create_intent() {
    crash_then_resume("after-intent:create-vm").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_an_online_round() {
    crash_then_resume("after-act:copy-round-online").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_the_offline_round_sealed_and_verified() {
    crash_then_resume("after-act:copy-round-offline").await;
}
