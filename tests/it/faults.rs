use crate::support::*;

/// 15% of ARM requests fail (409, 429 with Retry-After, 5xx, dropped
/// connections, failed operations): every VM still ends verified, byte-exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifteen_percent_faults_still_verify() {
    let rig = Rig::with_faults(0.15, 42).await;
    let a = rig.emu.add_vm(windows("fault-win", 1));
    let b = rig.emu.add_vm(linux_data("fault-lin"));
    let before_a = source_digests(&rig.emu, &a);
    let before_b = source_digests(&rig.emu, &b);

    let mut out = rig.run(&[a.clone(), b.clone()], &[]).await;
    // A VM may park after a long run of bad luck; a resume must finish it.
    let mut outputs = vec![out];
    for _ in 0..3 {
        if outputs.last().unwrap().status.code() == Some(0) {
            break;
        }
        out = rig.resume(&[]).await;
        outputs.push(out);
    }
    let last = outputs.last().unwrap();
    assert_eq!(last.status.code(), Some(0), "{}", text(last));
    let faults = rig
        .emu
        .requests()
        .iter()
        .filter(|r| r.fault.is_some())
        .count();
    assert!(faults >= 10, "faults were really injected ({faults})");
    assert_migrated(&rig.emu, &a, &before_a);
    assert_migrated(&rig.emu, &b, &before_b);
    let refs: Vec<&std::process::Output> = outputs.iter().collect();
    assert_no_secrets(rig.state_dir(), &refs);
}
