//! Downtime in `report --output json` and the HTML timeline (issue 14):
//! a planned run (canary wave, then the rest, one VM skipped in the plan),
//! then the report's figures against the journal's spans, the HTML page's
//! self-containment, and its rendering in a real headless Chromium.

use std::path::{Path, PathBuf};

use ade2eah::emulator::{AdeSpec, VmSpec};
use ade2eah::journal::Journal;
use ade2eah::step::{Phase, VmRecord};
use serde_json::Value;

use crate::support::{POLL, Rig, bin, linux_data, text, windows};

fn conn(rig: &Rig) -> Vec<String> {
    vec![
        "--arm-endpoint".into(),
        rig.emu.base_url(),
        "--auth".into(),
        "none".into(),
    ]
}

/// A finished planned run: two waves (`1,100%`), three eligible VMs and a
/// Linux VM with an encrypted OS volume (skipped in the plan).
async fn planned_run() -> Rig {
    let rig = Rig::new().await;
    rig.emu.add_vm(windows("tl-win", 1));
    rig.emu.add_vm(linux_data("tl-lin"));
    rig.emu.add_vm(windows("tl-win-os", 0));
    let mut osenc = VmSpec::linux("tl-osenc", "rg-test");
    osenc.ade = AdeSpec::LinuxOsAndData;
    rig.emu.add_vm(osenc);
    let file = rig
        .state
        .path()
        .parent()
        .unwrap()
        .join(format!("plan-timeline-{}.toml", std::process::id()));
    let mut a = vec!["plan".to_string()];
    a.extend(conn(&rig));
    a.extend(
        [
            "--subscription",
            rig.emu.subscription(),
            "--resource-group",
            "rg-test",
            "--waves",
            "1,100%",
            "--out",
            file.to_str().unwrap(),
        ]
        .map(String::from),
    );
    let out = bin(&a, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let mut a = vec!["run".to_string()];
    a.extend(conn(&rig));
    a.extend([
        "--plan".into(),
        file.display().to_string(),
        "--state".into(),
        rig.state_dir().display().to_string(),
        "--yes".into(),
        "--poll-interval".into(),
        POLL.into(),
    ]);
    let out = bin(&a, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let _ = std::fs::remove_file(&file);
    rig
}

fn records(dir: &Path) -> Vec<VmRecord> {
    Journal::open_to_read(dir).unwrap().records().unwrap()
}

/// Deallocate start → end of the start phase, straight from the spans.
fn expected_downtime(r: &VmRecord) -> Option<f64> {
    let d = r.spans.iter().find(|s| s.phase == Phase::Deallocate)?;
    let s = r
        .spans
        .iter()
        .find(|s| s.phase == Phase::Start && s.end >= d.start)?;
    Some(s.end - d.start)
}

async fn html_of(rig: &Rig, file: &Path) -> String {
    let out = bin(
        &[
            "report".into(),
            "--state".into(),
            rig.state_dir().display().to_string(),
            "--html".into(),
            file.display().to_string(),
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    std::fs::read_to_string(file).unwrap()
}

/// Every reference the page would fetch: `src=`/`href=` to a scheme or
/// `//`, any CSS `url(` or `@import`, `<link>`, `<script>`, `<img>`, `<iframe>`.
fn external_refs(html: &str) -> Vec<String> {
    let lower = html.to_ascii_lowercase();
    let mut hits = Vec::new();
    for attr in ["src=", "href=", "srcset=", "action=", "poster=", "data="] {
        for (i, _) in lower.match_indices(attr) {
            let v = lower[i + attr.len()..].trim_start_matches(['"', '\'', ' ']);
            if v.starts_with("http:") || v.starts_with("https:") || v.starts_with("//") {
                hits.push(lower[i..(i + 60).min(lower.len())].to_string());
            }
        }
    }
    for tag in [
        "url(", "@import", "<link", "<script", "<img", "<iframe", "<object",
    ] {
        if let Some(i) = lower.find(tag) {
            hits.push(lower[i..(i + 60).min(lower.len())].to_string());
        }
    }
    hits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_json_carries_downtime_per_vm_and_totals_against_the_spans() {
    let rig = planned_run().await;
    let out = rig.state_json("report").await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let recs = records(rig.state_dir());
    let mut sum = 0.0;
    let mut max: f64 = 0.0;
    let mut down = 0;
    for vm in r["vms"].as_array().unwrap() {
        let rec = recs.iter().find(|x| x.id.as_str() == vm["id"]).unwrap();
        let name = rec.id.name();
        match vm["outcome"].as_str().unwrap() {
            "verified" => {
                let want = expected_downtime(rec).unwrap_or_else(|| panic!("{name}: no window"));
                let got = vm["downtime_secs"]
                    .as_f64()
                    .unwrap_or_else(|| panic!("{name}: downtime_secs not a number: {vm}"));
                assert!((got - want).abs() < 0.002, "{name}: {got} vs spans {want}");
                assert!(got > 0.0, "{name}");
                let w = &vm["timing"]["downtime"];
                assert_eq!(w["open"], false, "{name}: {w}");
                let parts: f64 = w["breakdown"]
                    .as_object()
                    .unwrap()
                    .values()
                    .map(|v| v.as_f64().unwrap())
                    .sum();
                assert!(
                    parts <= got + 0.01,
                    "{name}: breakdown {parts} > downtime {got}"
                );
                assert!(
                    parts >= got - 0.01,
                    "{name}: breakdown {parts} < downtime {got}"
                );
                for k in ["deallocate", "delete", "create", "final_delta"] {
                    assert!(w["breakdown"][k].as_f64().unwrap() > 0.0, "{name}: {k} {w}");
                }
                let rounds = vm["timing"]["rounds"].as_array().unwrap();
                assert!(rounds.len() >= 2, "{name}: {rounds:?}");
                assert_eq!(rounds.last().unwrap()["offline"], true, "{name}");
                assert!(rounds[0]["bytes"].as_u64().unwrap() > 0, "{name}");
                assert!(vm["timing"]["started_at"].as_str().is_some());
                sum += got;
                max = max.max(got);
                down += 1;
            }
            "skipped" => {
                assert_eq!(name, "tl-osenc");
                assert!(vm["downtime_secs"].is_null(), "{vm}");
                assert!(vm["timing"]["downtime"].is_null(), "{vm}");
                assert!(rec.spans.is_empty());
            }
            other => panic!("{name}: {other}"),
        }
    }
    assert_eq!(down, 3);
    let s = &r["summary"];
    assert_eq!(s["vms_down"], 3);
    assert!(
        (s["downtime_secs_total"].as_f64().unwrap() - sum).abs() < 0.01,
        "{s}"
    );
    assert!(
        (s["downtime_secs_max"].as_f64().unwrap() - max).abs() < 0.002,
        "{s}"
    );
    let waves = r["waves"].as_array().unwrap();
    assert_eq!(waves.len(), 2);
    assert_eq!(waves[0]["vms_down"], 1);
    assert_eq!(waves[1]["vms_down"], 2);
    let wsum: f64 = waves
        .iter()
        .map(|w| w["downtime_secs_total"].as_f64().unwrap())
        .sum();
    assert!((wsum - sum).abs() < 0.01);
    // The canary wave ended before the second began.
    assert!(waves[0]["ended_at"].as_str().unwrap() <= waves[1]["started_at"].as_str().unwrap());
    // Table and Markdown show it too.
    for fmt in ["table", "markdown"] {
        let out = bin(
            &[
                "report".into(),
                "--state".into(),
                rig.state_dir().display().to_string(),
                "--output".into(),
                fmt.into(),
            ],
            &[],
        )
        .await;
        let t = text(&out);
        assert!(t.contains("3 VM(s) down"), "{fmt}: {t}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_timeline_is_self_contained_and_renders_in_chromium() {
    let rig = planned_run().await;
    let file = rig.state_dir().join("report.html");
    let html = html_of(&rig, &file).await;
    assert_eq!(external_refs(&html), Vec::<String>::new());
    for want in [
        "tl-win",
        "tl-lin",
        "tl-win-os",
        "tl-osenc",
        "Dry-run findings",
        "linux-os-volume",
        "Wave 1",
        "Wave 2",
        "data-downtime",
    ] {
        assert!(html.contains(want), "missing {want}");
    }
    let Some(chromium) = chromium() else {
        return;
    };
    let recs = records(rig.state_dir());
    let probe = rendered(&chromium, &html, &file).await;
    // Rendered text: the summary, each VM, the findings.
    let body = probe["text"].as_str().unwrap();
    for want in [
        "run report",
        "Timeline",
        "tl-win · verified · down",
        "tl-osenc · skipped",
        "Where the downtime went",
        "linux-os-volume",
    ] {
        assert!(body.contains(want), "rendered text lacks {want:?}: {body}");
    }
    let t0 = probe["t0"].as_f64().unwrap();
    let t1 = probe["t1"].as_f64().unwrap();
    let rows = probe["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "{probe}");
    let mut widths = Vec::new();
    for row in rows {
        let name = row["vm"].as_str().unwrap();
        let rec = recs.iter().find(|r| r.id.name() == name).unwrap();
        let track = &row["track"];
        let inside = |b: &Value| {
            b["top"].as_f64().unwrap() >= row["row"]["top"].as_f64().unwrap() - 0.5
                && b["bottom"].as_f64().unwrap() <= row["row"]["bottom"].as_f64().unwrap() + 0.5
                && b["left"].as_f64().unwrap() >= track["left"].as_f64().unwrap() - 0.5
                && b["right"].as_f64().unwrap() <= track["right"].as_f64().unwrap() + 0.5
        };
        for b in row["bars"].as_array().unwrap() {
            assert!(inside(b), "{name}: bar outside its row: {b} {row}");
        }
        match expected_downtime(rec) {
            Some(secs) => {
                let d = &row["downtime"];
                assert!(!d.is_null(), "{name}: no downtime bar");
                assert!(inside(d), "{name}: downtime bar outside its row: {d} {row}");
                // Proportions are of the time box (the track less 2 px).
                let time = &row["time"];
                let tw = time["right"].as_f64().unwrap() - time["left"].as_f64().unwrap();
                let want = secs / (t1 - t0) * tw;
                let got = d["right"].as_f64().unwrap() - d["left"].as_f64().unwrap();
                assert!(
                    (got - want).abs() <= 2.0,
                    "{name}: downtime bar {got}px, {secs}s of {}s over {tw}px wants {want}px",
                    t1 - t0
                );
                let start = (rec.spans.iter().find(|s| s.phase == Phase::Deallocate))
                    .unwrap()
                    .start;
                let want_left = time["left"].as_f64().unwrap() + (start - t0) / (t1 - t0) * tw;
                assert!(
                    (d["left"].as_f64().unwrap() - want_left).abs() <= 2.0,
                    "{name}: downtime bar at {d} wants left {want_left}"
                );
                widths.push((secs, got));
            }
            None => assert!(row["downtime"].is_null(), "{name}: {row}"),
        }
    }
    assert_eq!(widths.len(), 3);
    let shot = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/report-timeline.png");
    screenshot(&chromium, &file, &shot).await;
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "screenshot"
    );
    eprintln!("screenshot of the timeline: {}", shot.display());
}

/// `$ADE2EAH_CHROMIUM` (must exist when set), else Debian's
/// `/usr/bin/chromium`; `None` (with a notice) when absent outside CI.
/// Under `CI=true` a missing Chromium fails the test: `.ci/run` installs it.
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ADE2EAH_CHROMIUM").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(
            p.exists(),
            "ADE2EAH_CHROMIUM={} does not exist (unset it to skip the browser half)",
            p.display()
        );
        return Some(p);
    }
    let p = PathBuf::from("/usr/bin/chromium");
    if p.exists() {
        return Some(p);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "Chromium not found under CI=true: .ci/run installs Debian's chromium (apt-get)"
    );
    eprintln!(
        "NOTICE html_timeline: Chromium not found (apt-get install chromium, or set \
         ADE2EAH_CHROMIUM); only the static checks of the HTML ran"
    );
    None
}

/// Measures the page in Chromium: a copy of it with a probe script that
/// writes the rendered text and the rows' and bars' boxes into the DOM,
/// read back with `--dump-dom`.
async fn rendered(chromium: &Path, html: &str, file: &Path) -> Value {
    const PROBE: &str = r#"<script>
const box = e => { const r = e.getBoundingClientRect();
  return {left: r.left, right: r.right, top: r.top, bottom: r.bottom}; };
const tl = document.getElementById('timeline');
const out = {text: document.body.innerText, t0: +tl.dataset.t0, t1: +tl.dataset.t1, rows: []};
for (const row of document.querySelectorAll('.tl-row')) {
  const d = row.querySelector('.downtime');
  out.rows.push({vm: row.dataset.vm, row: box(row), track: box(row.querySelector('.tl-track')),
    time: box(row.querySelector('.tl-time')),
    downtime: d ? box(d) : null, bars: [...row.querySelectorAll('.bar')].map(box)});
}
const pre = document.createElement('pre'); pre.id = 'probe';
pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
</script>"#;
    let probed = file.with_file_name("report-probed.html");
    std::fs::write(&probed, html.replace("</body>", &format!("{PROBE}</body>"))).unwrap();
    let out = run_chromium(chromium, &["--dump-dom".into()], &probed).await;
    let dom = String::from_utf8_lossy(&out);
    let start = dom
        .find("<pre id=\"probe\">")
        .unwrap_or_else(|| panic!("no probe output in the DOM: {dom}"))
        + "<pre id=\"probe\">".len();
    let end = start + dom[start..].find("</pre>").unwrap();
    let json = dom[start..end]
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&");
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

async fn screenshot(chromium: &Path, file: &Path, png: &Path) {
    std::fs::create_dir_all(png.parent().unwrap()).unwrap();
    run_chromium(chromium, &[format!("--screenshot={}", png.display())], file).await;
}

/// Headless Chromium on `file` (one minute at most), stdout returned.
async fn run_chromium(chromium: &Path, extra: &[String], file: &Path) -> Vec<u8> {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(chromium);
    cmd.args([
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--hide-scrollbars",
        "--window-size=1400,900",
        "--virtual-time-budget=3000",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(extra)
    .arg(format!("file://{}", file.display()))
    .kill_on_drop(true)
    .stdin(std::process::Stdio::null());
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), cmd.output())
        .await
        .expect("chromium finished within a minute")
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The quoted string after each `prefix` in `src` (whitespace skipped).
fn quoted_after(src: &str, prefix: &str) -> Vec<String> {
    src.match_indices(prefix)
        .filter_map(|(i, _)| {
            let rest = src[i + prefix.len()..].trim_start();
            let rest = rest.strip_prefix('"')?;
            Some(rest[..rest.find('"')?].to_string())
        })
        .collect()
}

fn source(path: &str) -> String {
    std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// docs/troubleshooting.md names every finding code the tool can report
/// and every Azure error code `src/azure/error.rs` classifies.
#[test]
fn troubleshooting_table_names_every_finding_and_error_code() {
    let doc = source("docs/troubleshooting.md");
    let lower = doc.to_ascii_lowercase();
    let mut codes: Vec<String> = Vec::new();
    let mut files = vec![PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else if p.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&p).unwrap();
            codes.extend(quoted_after(&text, "Finding::new("));
        }
    }
    let preflight = source("src/plan/preflight.rs");
    codes.extend(quoted_after(&preflight, ": &str ="));
    let elig = source("src/step/eligibility.rs");
    codes.extend(quoted_after(&elig, "skip("));
    codes.extend(quoted_after(&elig, "path:"));
    codes.retain(|c| !c.is_empty() && c.chars().all(|ch| ch.is_ascii_lowercase() || ch == '-'));
    codes.sort();
    codes.dedup();
    for must in [
        "management-lock",
        "disk-quota",
        "linux-os-volume",
        "size-unavailable",
        "zone",
    ] {
        assert!(
            codes.iter().any(|c| c == must),
            "the scan missed {must}: {codes:?}"
        );
    }
    let missing: Vec<&String> = codes
        .iter()
        .filter(|c| !doc.contains(&format!("`{c}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "finding codes missing from docs/troubleshooting.md: {missing:?}"
    );
    let error = source("src/azure/error.rs");
    let parse = &error[error.find("pub fn parse(code: &str) -> KnownCode").unwrap()..];
    let parse = &parse[..parse.find("_ => KnownCode::Other").unwrap()];
    let azure: Vec<String> = parse
        .split('"')
        .skip(1)
        .step_by(2)
        .map(String::from)
        .collect();
    assert!(azure.len() > 40, "{azure:?}");
    let missing: Vec<&String> = azure
        .iter()
        .filter(|c| !lower.contains(&format!("`{c}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "Azure error codes missing from docs/troubleshooting.md: {missing:?}"
    );
}
