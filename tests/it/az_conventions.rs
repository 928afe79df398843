//! az conventions (issue 14): `--subscription` by name, `-o
//! json|jsonc|tsv|yaml|markdown|table`, `--query`, tables that fit 80
//! columns, completions and the man page, and the JSON-lines log file in
//! the state folder (request ids, no secrets).

use ade2eah::emulator::AdeSpec;
use ade2eah::model::ResourceId;
use serde_json::Value;

use crate::support::{Rig, arm_args, bin, linux_data, secret_hits, text, windows};

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// A rig with one migrated Windows VM and one skipped Linux VM (ADE on
/// its OS volume: a long skip reason).
async fn migrated() -> (Rig, ResourceId) {
    let rig = Rig::new().await;
    let vm = rig
        .emu
        .add_vm(windows("conv-win-with-a-rather-long-name", 1));
    let mut l = linux_data("conv-linux-os");
    l.ade = AdeSpec::LinuxOsAndData;
    let skipped = rig.emu.add_vm(l);
    let out = rig.run(&[vm.clone(), skipped], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    (rig, vm)
}

async fn on_state(rig: &Rig, extra: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut a = s(extra);
    a.insert(1, rig.state_dir().display().to_string());
    a.insert(1, "--state".into());
    bin(&a, env).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_formats_parse_and_query_filters() {
    let (rig, vm) = migrated().await;
    let json: Value =
        serde_json::from_slice(&on_state(&rig, &["status", "-o", "json"], &[]).await.stdout)
            .unwrap();

    // jsonc: indented, the same value.
    let out = on_state(&rig, &["status", "-o", "jsonc"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\n  \"vms\""));
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap(), json);

    // yaml: read back by PyYAML (Debian's python3-yaml), the same value.
    let out = on_state(&rig, &["report", "-o", "yaml"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: Value =
        serde_json::from_slice(&on_state(&rig, &["report", "-o", "json"], &[]).await.stdout)
            .unwrap();
    match yaml_to_json(&out.stdout) {
        Some(v) => assert_eq!(v, report, "YAML reads back as the JSON report"),
        None => eprintln!("notice: python3 with PyYAML not found; YAML read-back skipped"),
    }

    // tsv: one line per list item after --query, scalars tab-separated.
    let q = "vms[].{name: name, outcome: outcome, disks: length(disks)}";
    let out = on_state(&rig, &["status", "-o", "tsv", "--query", q], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let tsv = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<Vec<&str>> = tsv.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(lines.len(), 2, "{tsv}");
    assert!(lines.iter().all(|l| l.len() == 3), "{tsv}");
    // (Object keys come out in alphabetical order: disks, name, outcome.)
    assert!(lines.contains(&vec!["2", vm.name(), "verified"]), "{tsv}");

    // --query filters (JMESPath), json output.
    let out = on_state(
        &rig,
        &[
            "status",
            "-o",
            "json",
            "--query",
            "vms[?outcome=='skipped'].name",
        ],
        &[],
    )
    .await;
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap(),
        serde_json::json!(["conv-linux-os"])
    );
    let out = on_state(
        &rig,
        &[
            "report",
            "--query",
            "vms[?outcome=='verified'] | length(@)",
            "-o",
            "json",
        ],
        &[],
    )
    .await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1",
        "{}",
        text(&out)
    );
    // A bad query is bad input.
    let out = on_state(&rig, &["status", "--query", "vms[?"], &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // markdown: report's own (a table per VM), and the generic one of status.
    for cmd in ["report", "status"] {
        let out = on_state(&rig, &[cmd, "-o", "markdown"], &[]).await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let md = String::from_utf8_lossy(&out.stdout);
        let rows: Vec<&str> = md.lines().filter(|l| l.starts_with('|')).collect();
        assert!(rows.len() >= 3, "{cmd}: {md}");
        assert!(
            rows.iter()
                .any(|r| r.starts_with("|---") || r.starts_with("| ---") || r.contains("|---|")),
            "{md}"
        );
    }
}

/// PyYAML's reading of `yaml` as JSON, when python3 has it.
fn yaml_to_json(yaml: &[u8]) -> Option<Value> {
    use std::io::Write;
    let mut child = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, json, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(yaml).ok()?;
    let out = child.wait_with_output().ok()?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("No module named") {
            return None;
        }
        panic!(
            "YAML does not parse: {err}\n{}",
            String::from_utf8_lossy(yaml)
        );
    }
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_fit_80_columns() {
    let (rig, _) = migrated().await;
    let env = [("COLUMNS", "80")];
    for cmd in ["status", "report"] {
        let out = on_state(&rig, &[cmd], &env).await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let t = String::from_utf8_lossy(&out.stdout);
        assert!(t.contains("conv-linux-os"), "{t}");
        assert_fits(cmd, &t);
    }
    let mut plan = arm_args(&rig, "plan");
    plan.extend(s(&["--subscription", rig.emu.subscription()]));
    let out = bin(&plan, &env).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_fits("plan", &String::from_utf8_lossy(&out.stdout));
}

fn assert_fits(what: &str, t: &str) {
    for l in t.lines() {
        let n = l.chars().count();
        assert!(n <= 80, "{what}: {n} columns: {l}\n{t}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_by_name_resolves_and_an_unknown_name_is_bad_input() {
    let rig = Rig::new().await;
    rig.emu
        .set_subscription_name(rig.emu.subscription(), "Contoso Prod");
    let vm = rig.emu.add_vm(windows("by-name", 0));
    let plan = |sub: &str| {
        let mut a = arm_args(&rig, "plan");
        a.extend(s(&[
            "--subscription",
            sub,
            "--vm",
            vm.as_str(),
            "-o",
            "json",
        ]));
        a
    };
    let out = bin(&plan("contoso prod"), &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["subscriptions"],
        serde_json::json!([rig.emu.subscription()]),
        "{v}"
    );
    assert_eq!(v["vms"].as_array().unwrap().len(), 1);
    let out = bin(&plan("Contoso Test"), &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Contoso Prod"),
        "{}",
        text(&out)
    );

    // run: the name from AZURE_SUBSCRIPTION_ID, as az reads it.
    let mut args = arm_args(&rig, "run");
    let state = rig.state_dir().display().to_string();
    args.extend(s(&[
        "--vm",
        vm.as_str(),
        "--state",
        &state,
        "--yes",
        "-o",
        "json",
    ]));
    let out = bin(&args, &[("AZURE_SUBSCRIPTION_ID", "Contoso Prod")]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_and_man_page_are_generated() {
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let out = bin(&s(&["completions", shell]), &[]).await;
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", text(&out));
        let script = String::from_utf8_lossy(&out.stdout);
        for word in ["ade2eah", "permissions", "--query", "--output"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    let out = bin(&s(&["completions", "tcsh"]), &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = bin(&s(&["man"]), &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let man = String::from_utf8_lossy(&out.stdout);
    assert!(
        man.starts_with(".ie") || man.contains(".TH ade2eah"),
        "{man}"
    );
    assert!(man.contains("permissions"), "{man}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_file_traces_every_request_by_its_ids_and_holds_no_secret() {
    let (rig, _) = migrated().await;
    let path = rig.state_dir().join(ade2eah::journal::state_dir::LOG_FILE);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        secret_hits("log", &bytes).is_empty(),
        "{:?}",
        secret_hits("log", &bytes)
    );
    let text = String::from_utf8(bytes).unwrap();
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let requests: Vec<&Value> = events
        .iter()
        .filter(|e| e["fields"]["message"] == "arm request")
        .collect();
    // Every ARM request the emulator served is in the log.
    let served = rig
        .emu
        .requests()
        .iter()
        .filter(|r| {
            !r.path.starts_with("/_emulator") && !r.path.to_ascii_lowercase().starts_with("/md-")
        })
        .count();
    assert_eq!(requests.len(), served, "one line per ARM request");
    let mut by_correlation: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for r in &requests {
        let f = &r["fields"];
        let corr = f["correlation_id"].as_str().unwrap();
        assert_eq!(
            f["x_ms_correlation_request_id"], corr,
            "Azure echoes the correlation id: {r}"
        );
        assert_eq!(f["x_ms_request_id"].as_str().unwrap().len(), 36, "{r}");
        assert!(!f["path"].as_str().unwrap().contains('?'), "{r}");
        assert!(
            f["status"].as_u64().is_some() && f["duration_ms"].as_u64().is_some(),
            "{r}"
        );
        by_correlation
            .entry(corr)
            .or_default()
            .push(f["path"].as_str().unwrap());
    }
    // A long-running operation's polls carry its first request's id.
    assert!(
        by_correlation.values().any(|paths| paths.len() > 1
            && paths
                .iter()
                .any(|p| p.contains("/operations/") || p.contains("/DiskOperations/"))),
        "{by_correlation:#?}"
    );
}
