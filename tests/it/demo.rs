use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_migrates_the_mixed_fleet() {
    let out = bin(&["demo".into(), "--time-scale".into(), "2000".into()], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("verified"), "{stdout}");
    assert!(
        stdout.contains("skipped"),
        "the demo fleet has ineligible VMs: {stdout}"
    );
    assert!(stdout.contains("ARM requests"), "{stdout}");
    assert_no_secrets(std::path::Path::new("/nonexistent"), &[&out]);
}
