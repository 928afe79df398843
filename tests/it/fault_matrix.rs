//! Fault matrix (issue 4): each injected failure alone at 30%, then all
//! mixed at 20%, plus storage `ServerBusy`. Each VM ends verified or parks
//! with a reason and a next action; a resume after the faults stop finishes.

use ade2eah::emulator::{EmulatorConfig, FaultConfig, FaultKind, StorageConfig};
use std::process::Output;

use crate::support::*;

async fn scenario(label: &str, faults: FaultConfig, server_busy: f64, seed: u64) -> usize {
    let rig = Rig::with_config(EmulatorConfig {
        time_scale: TIME_SCALE,
        seed,
        faults,
        storage: StorageConfig {
            server_busy_rate: server_busy,
            seed,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let a = rig.emu.add_vm(windows(&format!("fm-win-{seed}"), 1));
    let b = rig.emu.add_vm(linux_data(&format!("fm-lin-{seed}")));
    let before_a = source_digests(&rig.emu, &a);
    let before_b = source_digests(&rig.emu, &b);

    let first = rig.run(&[a.clone(), b.clone()], &[]).await;
    let code = first.status.code();
    assert!(
        matches!(code, Some(0) | Some(1)),
        "{label}: {}",
        text(&first)
    );
    let st = rig.status().await;
    for v in st["vms"].as_array().unwrap() {
        match v["outcome"].as_str().unwrap() {
            "verified" => {}
            "parked" => {
                let reason = v["reason"].as_str().unwrap_or_default();
                let next = v["next_action"].as_str().unwrap_or_default();
                assert!(!reason.is_empty() && !next.is_empty(), "{label}: {v}");
            }
            other => panic!("{label}: VM ended {other}: {v}"),
        }
    }
    let injected = rig
        .emu
        .requests()
        .iter()
        .filter(|r| r.fault.is_some())
        .count();

    // ARM faults stop (storage ServerBusy, when on, stays on: the copy
    // retries it); a resume finishes the job.
    rig.emu.set_faults(FaultConfig::default());
    let mut outs: Vec<Output> = vec![first];
    if code != Some(0) {
        let r = rig.resume(&[]).await;
        assert_eq!(r.status.code(), Some(0), "{label}: {}", text(&r));
        outs.push(r);
    }
    assert_migrated(&rig.emu, &a, &before_a);
    assert_migrated(&rig.emu, &b, &before_b);
    let refs: Vec<&Output> = outs.iter().collect();
    assert_no_secrets(rig.state_dir(), &refs);
    eprintln!("fault matrix {label}: {injected} ARM faults injected, first run exit {code:?}");
    injected
}

fn only(kind: FaultKind, rate: f64) -> FaultConfig {
    FaultConfig {
        rate,
        kinds: vec![kind],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fault_matrix_each_kind_alone_then_mixed() {
    let mut cases: Vec<(String, FaultConfig, f64)> = FaultKind::ALL
        .iter()
        .map(|k| (format!("{k:?}@30%"), only(*k, 0.30), 0.0))
        .collect();
    cases.push((
        "mixed@20%".into(),
        FaultConfig {
            rate: 0.20,
            ..Default::default()
        },
        0.0,
    ));
    cases.push(("ServerBusy@20%".into(), FaultConfig::default(), 0.20));
    cases.push((
        "mixed@15%+ServerBusy@15%".into(),
        FaultConfig {
            rate: 0.15,
            ..Default::default()
        },
        0.15,
    ));
    let mut tasks = Vec::new();
    for (i, (label, f, busy)) in cases.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            (
                label.clone(),
                scenario(&label, f, busy, 100 + i as u64).await,
            )
        }));
    }
    let mut total = 0;
    for t in tasks {
        let (label, n) = t.await.expect("scenario passed");
        if !label.starts_with("ServerBusy") {
            assert!(n > 0, "{label}: faults were injected");
        }
        total += n;
    }
    println!("fault matrix: {total} ARM faults injected across all scenarios");
}
