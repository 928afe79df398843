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
    assert!((0.99..2.0).contains(&ratio), "makespan/bound {ratio}");
    assert!(v["arm_requests_per_vm"].as_f64().unwrap() > 10.0);
    assert!(v["cpu_secs"].as_f64().unwrap() > 0.0);
    assert!(v["peak_rss_bytes"].as_u64().unwrap() > 1 << 20);
    assert_eq!(v["journal"]["records"], 300);
    assert!(v["journal"]["peak_rss_bytes"].as_u64().unwrap() > 1 << 20);
}

/// A journal of `n` records shaped like migrated VMs (~22 KB of JSON each:
/// original model, two disk plans with their source models, 60 history lines).
fn fat_journal(dir: &std::path::Path, n: usize) {
    use ade2eah::journal::{Journal, RunMeta, SCHEMA_VERSION};
    use ade2eah::model::ResourceId;
    use ade2eah::step::{DiskPlan, DiskRole, Outcome, Step, VmRecord};
    let id = |kind: &str, name: String| {
        ResourceId::new("sub-1", "rg-j", "Microsoft.Compute", kind, &name)
    };
    let vms: Vec<ResourceId> = (0..n)
        .map(|i| id("virtualMachines", format!("vm-j{i:05}")))
        .collect();
    let meta: RunMeta = serde_json::from_value(serde_json::json!({
        "schema_version": SCHEMA_VERSION, "run_id": "mem-run", "created_at": "2026-09-01T00:00:00Z",
        "tool_version": "test", "arm_endpoint": "http://127.0.0.1:1", "cloud": "public", "subscription": "sub-1",
        "auth": "none", "poll_interval_secs": 15.0, "max_parallel": 50, "vms": vms,
    }))
    .unwrap();
    let records = vms.iter().enumerate().map(|(i, vm)| {
        let mut r = VmRecord::new(vm.clone());
        r.step = Step::Done;
        r.outcome = Outcome::Verified;
        r.original_model = Some(serde_json::json!({
            "id": vm, "properties": {"blob": format!("{i}-{}", "m".repeat(10_000))}}));
        for lun in 0..2 {
            r.disks.push(DiskPlan {
                role: DiskRole::Data { lun },
                source: id("disks", format!("d{i}-{lun}")),
                source_size_bytes: 1 << 30,
                source_model: serde_json::json!({"properties": format!("{i}{}", "s".repeat(2_000))}),
                snapshot: id("snapshots", format!("s{i}-{lun}")),
                target: id("disks", format!("t{i}-{lun}")),
                copied: true,
                bytes_copied: 2 << 20,
                rounds: vec![],
                verified: true,
                rounds_opened: 1,
            });
        }
        for h in 0..60 {
            r.note(format!("2026-09-01T00:{:02}:{:02}Z", h / 60, h % 60), "result",
                format!("{i}: step {h} {}", "h".repeat(100)));
        }
        r
    });
    let j = Journal::open(dir).unwrap();
    j.init_run(&meta, records).unwrap();
    j.flush().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_of_a_2000_record_journal_streams_in_bounded_memory_and_fast() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let n = 2000;
    fat_journal(&dir, n);
    let started = std::time::Instant::now();
    let out = bin(
        &[
            "bench".into(),
            "fleet".into(),
            "--journal-probe".into(),
            dir.display().to_string(),
            "--probe".into(),
            "status-json".into(),
        ],
        &[],
    )
    .await;
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    let mut lines = stdout.trim_end().rsplitn(2, '\n');
    let probe: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    let status: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    eprintln!("{probe} in {secs:.1} s");
    assert_eq!(status["summary"]["total"], n);
    assert_eq!(status["summary"]["verified"], n);
    assert_eq!(status["vms"].as_array().unwrap().len(), n);
    assert_eq!(status["vms"][n - 1]["name"], format!("vm-j{:05}", n - 1));
    assert_eq!(status["vms"][7]["history"], 60);
    // Whole records (44 MB of JSON here) cost > 250 MiB; streamed, the
    // process stays near its fixed cost (runtime + sled, ~35 MiB in a debug
    // build). The limit leaves room for 10,000 records within 64 MiB.
    let peak = probe["peak_rss_bytes"].as_u64().unwrap();
    assert!(
        peak < 52 << 20,
        "status --output json peaked at {} MiB",
        peak >> 20
    );
    assert!(secs < 20.0, "status took {secs:.1} s");
}
