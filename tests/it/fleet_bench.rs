//! Azure's throttling in the emulator (token buckets, headers, 429 +
//! Retry-After) and `ade2eah bench fleet` end to end (issue 6).

use ade2eah::emulator::fleet::VmSpec;
use ade2eah::emulator::throttle::ThrottleConfig;
use ade2eah::emulator::{EmulatorConfig, start};
use serde_json::Value;

use crate::support::{bin, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_vm_low_cost_get_bucket_answers_429_with_retry_after_and_headers() {
    // 1 simulated millisecond per real second: no measurable refill during
    // the test, however loaded the machine is.
    let emu = start(EmulatorConfig {
        time_scale: 0.001,
        throttle: ThrottleConfig::azure(),
        ..Default::default()
    })
    .await
    .unwrap();
    let vm = emu.add_vm(VmSpec::windows("vm-t", "rg-t"));
    let http = reqwest::Client::new();
    let url = format!("{}{}?api-version=2024-11-01", emu.base_url(), vm.as_str());
    let get = || http.get(&url).bearer_auth("x").send();
    let mut last_reads = u64::MAX;
    for i in 0..36 {
        let r = get().await.unwrap();
        assert_eq!(r.status(), 200, "GET {i}");
        let h = r.headers();
        let reads: u64 = h["x-ms-ratelimit-remaining-subscription-reads"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(reads < last_reads, "reads count down: {reads}");
        last_reads = reads;
        let res = h["x-ms-ratelimit-remaining-resource"].to_str().unwrap();
        assert!(
            res.starts_with(&format!("Microsoft.Compute/LowCostGet3Min;{}", 35 - i)),
            "{res}"
        );
    }
    assert_eq!(last_reads, 250 - 36);
    let r = get().await.unwrap();
    assert_eq!(r.status(), 429);
    let after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        after, 5000,
        "one token per 5 simulated s (12 per minute) = 5000 real s at 0.001x"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "OperationNotAllowed");
    assert_eq!(body["error"]["details"][0]["code"], "TooManyRequests");
    assert_eq!(emu.throttled(), 1);
    // Off by default: the same burst passes.
    let off = start(EmulatorConfig::default()).await.unwrap();
    let vm = off.add_vm(VmSpec::windows("vm-t", "rg-t"));
    let url = format!("{}{}?api-version=2024-11-01", off.base_url(), vm.as_str());
    for _ in 0..40 {
        let r = http.get(&url).bearer_auth("x").send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    emu.shutdown().await;
    off.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_fleet_migrates_every_eligible_vm_without_429s_near_the_bound() {
    let out = bin(
        &[
            "bench".into(),
            "fleet".into(),
            "--vms".into(),
            "30".into(),
            "--max-parallel".into(),
            "10".into(),
            "--time-scale".into(),
            "1000".into(),
            "--journal-records".into(),
            "300".into(),
            "--json".into(),
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    eprintln!("{v}");
    assert_eq!(v["migrated"], v["eligible"], "{v}");
    assert!(v["eligible"].as_u64().unwrap() > 10);
    assert_eq!(v["throttling"], true);
    assert_eq!(v["throttled_429_received"], 0, "{v}");
    let ratio = v["makespan_over_bound"].as_f64().unwrap();
    assert!(ratio >= 0.99 && ratio < 2.0, "makespan/bound {ratio}");
    assert!(v["arm_requests_per_vm"].as_f64().unwrap() > 10.0);
    assert!(v["cpu_secs"].as_f64().unwrap() > 0.0);
    assert!(v["peak_rss_bytes"].as_u64().unwrap() > 1 << 20);
    assert_eq!(v["journal"]["records"], 300);
    assert!(v["journal"]["peak_rss_bytes"].as_u64().unwrap() > 1 << 20);
}
