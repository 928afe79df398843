//! `report --html FILE`: one self-contained HTML page of a run: the
//! summary, the waves, a per-VM Gantt timeline of the recorded phases with
//! the downtime window highlighted, where each VM's downtime went, failures
//! with their reasons and next actions, and the dry-run findings of the
//! frozen plan.
//!
//! Contracts:
//! - Self-contained: inline CSS and plain `div`s only; no script, no
//!   external style, font, image or any other URL (the page makes no
//!   network request when opened).
//! - Every string that comes from Azure or the journal (names, ids, reasons,
//!   finding messages, wave names) is HTML-escaped by [`esc`].
//! - Geometry: the timeline spans the run's first to last recorded time;
//!   a bar's `left` and `width` are its start and duration as percentages
//!   of that range, inside its VM's time box (`.tl-time`: the track less
//!   the 2 px a minimum-width bar at the very end may take). Bars carry `data-phase`,
//!   `data-start`, `data-end` and `data-secs` (and the downtime bar
//!   `data-downtime`) so a browser test can check the layout.

use std::fmt::Write;

use serde_json::Value;

use super::timing::{self, Downtime, Totals};
use super::{RunTimes, wave_of};
use crate::journal::RunMeta;
use crate::plan::FrozenPlan;
use crate::step::{Outcome, Phase, RecordSummary};

/// HTML-escapes text for element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Colour of each phase's bars (also the legend).
fn colour(p: Phase) -> &'static str {
    match p {
        Phase::BackupSnapshot => "#8da0cb",
        Phase::Decrypt => "#b3b3b3",
        Phase::RemoveExtension => "#a6a6a6",
        Phase::Detach => "#999999",
        Phase::CreateTargets => "#7fb3d5",
        Phase::CopyRound => "#66c2a5",
        Phase::RoundSnapshot => "#a6d854",
        Phase::Grant => "#ffd92f",
        Phase::Copy => "#1b9e77",
        Phase::VerifyCopy => "#e78ac3",
        Phase::Revoke => "#e5c494",
        Phase::Deallocate => "#fc8d62",
        Phase::Validate => "#b15928",
        Phase::DeleteVm => "#d95f02",
        Phase::NicHold => "#7570b3",
        Phase::CreateVm => "#e7298a",
        Phase::Start => "#66a61e",
        Phase::PostStart => "#a6761d",
        Phase::Rollback => "#666666",
    }
}

const ALL_PHASES: [Phase; 19] = [
    Phase::BackupSnapshot,
    Phase::Decrypt,
    Phase::RemoveExtension,
    Phase::Detach,
    Phase::CreateTargets,
    Phase::CopyRound,
    Phase::RoundSnapshot,
    Phase::Grant,
    Phase::Copy,
    Phase::VerifyCopy,
    Phase::Revoke,
    Phase::Deallocate,
    Phase::Validate,
    Phase::DeleteVm,
    Phase::NicHold,
    Phase::CreateVm,
    Phase::Start,
    Phase::PostStart,
    Phase::Rollback,
];

const STYLE: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;font-size:13px;margin:4px 0}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#666;font-size:13px}
.ok{color:#1a7f37}.bad{color:#b42318;font-weight:600}
.timeline{font-size:12px;margin-top:6px;width:100%}
.tl-row{display:flex;align-items:center;height:24px;border-bottom:1px solid #eee}
.tl-wave{font-weight:600;padding:8px 0 2px;border-bottom:1px solid #bbb}
.tl-label{width:300px;flex:none;overflow:hidden;white-space:nowrap;text-overflow:ellipsis;padding-right:8px}
.tl-track{position:relative;flex:1;height:18px;background:#fafafa}
.tl-time{position:absolute;left:0;right:2px;top:0;bottom:0}
.bar{position:absolute;top:3px;height:12px;min-width:1px;opacity:.95}
.downtime{position:absolute;top:0;height:18px;background:rgba(220,38,38,.16);border:1px solid #dc2626;box-sizing:border-box;min-width:2px}
.axis{position:relative;height:18px;margin-left:300px;margin-right:2px;font-size:11px;color:#555}
.tick{position:absolute;top:0;border-left:1px solid #bbb;padding-left:2px;height:16px;white-space:nowrap}
.legend span{display:inline-block;margin:2px 10px 2px 0;font-size:12px}
.legend i{display:inline-block;width:12px;height:10px;margin-right:4px;vertical-align:middle}
";

/// The page for a run: `head` from [`super::run_head`], `vms` every VM's
/// summary (run order), `times` the totals of [`RunTimes::of`].
pub fn render(
    meta: &RunMeta,
    plan: Option<&FrozenPlan>,
    head: &Value,
    vms: &[RecordSummary],
    times: &RunTimes,
) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>ade2eah run {}</title><style>{STYLE}</style></head><body>\n",
        esc(&meta.run_id)
    );
    summary(&mut o, meta, head, times);
    waves(&mut o, head);
    timeline(&mut o, plan, vms, &times.run);
    breakdown(&mut o, vms);
    failures(&mut o, vms);
    findings(&mut o, plan);
    o.push_str("</body></html>\n");
    o
}

fn num(v: &Value) -> String {
    esc(&v.to_string())
}

fn totals_cells(t: &Value) -> String {
    let secs = |k: &str| timing::duration(t[k].as_f64().unwrap_or(0.0));
    format!(
        "<td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td>",
        num(&t["vms_down"]),
        secs("downtime_secs_total"),
        secs("downtime_secs_max"),
        esc(t["started_at"].as_str().unwrap_or("-")),
        esc(t["ended_at"].as_str().unwrap_or("-")),
    )
}

fn summary(o: &mut String, meta: &RunMeta, head: &Value, times: &RunTimes) {
    let s = &head["summary"];
    let _ = write!(
        o,
        "<h1>ADE → encryption at host: run report</h1>\
         <p class=\"muted\">Run <code>{}</code>, started {}; subscription(s) <code>{}</code>; tool {}</p>\
         <h2>Summary</h2><table id=\"summary\"><tr><th>VMs</th><th>Verified</th><th>Parked</th><th>Skipped</th><th>In progress</th>\
         <th>VMs down</th><th>Downtime (sum)</th><th>Longest downtime</th><th>First phase</th><th>Last phase</th><th>Elapsed</th></tr>\
         <tr><td class=\"num\">{}</td><td class=\"num ok\">{}</td><td class=\"num{}\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>{}<td class=\"num\">{}</td></tr></table>",
        esc(&meta.run_id),
        esc(&meta.created_at),
        esc(&meta.subscriptions.join(", ")),
        esc(&meta.tool_version),
        num(&s["total"]),
        num(&s["verified"]),
        if s["parked"].as_u64().unwrap_or(0) > 0 {
            " bad"
        } else {
            ""
        },
        num(&s["parked"]),
        num(&s["skipped"]),
        num(&s["in_progress"]),
        totals_cells(s),
        times
            .run
            .started
            .zip(times.run.ended)
            .map(|(a, b)| timing::duration(b - a))
            .unwrap_or_else(|| "-".into()),
    );
    o.push('\n');
}

fn waves(o: &mut String, head: &Value) {
    let Some(ws) = head["waves"].as_array().filter(|w| !w.is_empty()) else {
        return;
    };
    o.push_str(
        "<h2>Waves</h2><table id=\"waves\"><tr><th>Wave</th><th>Name</th><th>Target</th><th>VMs</th><th>Verified</th>\
         <th>Parked</th><th>In progress</th><th>Parallel</th><th>Approval</th><th>VMs down</th><th>Downtime (sum)</th>\
         <th>Longest</th><th>First phase</th><th>Last phase</th></tr>\n",
    );
    for w in ws {
        let _ = writeln!(
            o,
            "<tr><td class=\"num\">{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td>{}</tr>",
            num(&w["index"]),
            esc(w["name"].as_str().unwrap_or("")),
            esc(w["target"].as_str().unwrap_or("")),
            num(&w["vms"]),
            num(&w["verified"]),
            num(&w["parked"]),
            num(&w["in_progress"]),
            num(&w["max_parallel"]),
            if w["approval"].as_bool() == Some(true) {
                "gate"
            } else {
                "-"
            },
            totals_cells(w),
        );
    }
    o.push_str("</table>\n");
}

/// Percent of the timeline's range for the span `a..b`.
fn place(t0: f64, range: f64, a: f64, b: f64) -> (f64, f64) {
    let left = ((a - t0) / range * 100.0).clamp(0.0, 100.0);
    let width = ((b - a).max(0.0) / range * 100.0).min(100.0 - left);
    (left, width)
}

fn timeline(o: &mut String, plan: Option<&FrozenPlan>, vms: &[RecordSummary], run: &Totals) {
    o.push_str("<h2>Timeline</h2>\n");
    let (Some(t0), Some(t1)) = (run.started, run.ended) else {
        o.push_str("<p class=\"muted\">No phase was recorded yet.</p>\n");
        return;
    };
    let range = (t1 - t0).max(1e-3);
    let _ = write!(
        o,
        "<p class=\"muted\">From {} to {} ({}). Each bar is one recorded phase; the red frame is the VM's downtime (deallocate → running).</p>\
         <div class=\"legend\">",
        esc(&timing::rfc3339(t0)),
        esc(&timing::rfc3339(t1)),
        timing::duration(t1 - t0)
    );
    for p in ALL_PHASES {
        let _ = write!(
            o,
            "<span><i style=\"background:{}\"></i>{}</span>",
            colour(p),
            p.name()
        );
    }
    o.push_str("<span><i class=\"legend-downtime\" style=\"background:rgba(220,38,38,.16);border:1px solid #dc2626\"></i>downtime</span></div>\n");
    let _ = write!(
        o,
        "<div class=\"timeline\" id=\"timeline\" data-t0=\"{t0}\" data-t1=\"{t1}\"><div class=\"axis\">"
    );
    for k in 0..=4 {
        let at = t0 + range * f64::from(k) / 4.0;
        let _ = write!(
            o,
            "<span class=\"tick\" style=\"left:{:.3}%{}\">+{}</span>",
            f64::from(k) * 25.0,
            if k == 4 {
                ";transform:translateX(-100%);border-left:none;border-right:1px solid #bbb;padding-right:2px"
            } else {
                ""
            },
            timing::duration(at - t0)
        );
    }
    o.push_str("</div>\n");
    // Rows grouped by wave (VMs of no wave last), run order within a wave.
    let mut order: Vec<(Option<usize>, usize)> = vms
        .iter()
        .enumerate()
        .map(|(i, r)| (wave_of(plan, &r.id), i))
        .collect();
    order.sort_by_key(|(w, i)| (w.unwrap_or(usize::MAX), *i));
    let mut current: Option<Option<usize>> = None;
    for (w, i) in order {
        if plan.is_some() && current != Some(w) {
            current = Some(w);
            let name = w
                .and_then(|n| plan.and_then(|p| p.waves.get(n - 1)))
                .map(|x| x.name.as_str());
            let _ = writeln!(
                o,
                "<div class=\"tl-wave\">{}</div>",
                match (w, name) {
                    (Some(n), Some(name)) => format!("Wave {n}: {}", esc(name)),
                    (Some(n), None) => format!("Wave {n}"),
                    _ => "No wave (skipped)".into(),
                }
            );
        }
        row(o, &vms[i], t0, range);
    }
    o.push_str("</div>\n");
}

fn row(o: &mut String, r: &RecordSummary, t0: f64, range: f64) {
    let d = timing::downtime(&r.spans);
    let label = match &d {
        Some(d) => format!(
            "{} · {} · down {}{}",
            esc(r.id.name()),
            r.outcome.label(),
            timing::duration(d.secs()),
            if d.open { " (still down)" } else { "" }
        ),
        None => format!("{} · {}", esc(r.id.name()), r.outcome.label()),
    };
    let _ = write!(
        o,
        "<div class=\"tl-row\" data-vm=\"{}\"><div class=\"tl-label\" title=\"{}\">{label}</div><div class=\"tl-track\"><div class=\"tl-time\">",
        esc(r.id.name()),
        esc(r.id.as_str()),
    );
    if let Some(d) = &d {
        let (left, width) = place(t0, range, d.start, d.end);
        let _ = write!(
            o,
            "<div class=\"downtime\" data-downtime=\"1\" data-start=\"{}\" data-end=\"{}\" data-secs=\"{:.3}\" \
             style=\"left:{left:.4}%;width:{width:.4}%\" title=\"downtime {}\"></div>",
            d.start,
            d.end,
            d.secs(),
            timing::duration(d.secs())
        );
    }
    for s in timing::effective_spans(&r.spans) {
        let (left, width) = place(t0, range, s.start, s.end);
        let round = s.round.map(|n| format!(" round {n}")).unwrap_or_default();
        let _ = write!(
            o,
            "<div class=\"bar\" data-phase=\"{}\" data-start=\"{}\" data-end=\"{}\" data-secs=\"{:.3}\" \
             style=\"left:{left:.4}%;width:{width:.4}%;background:{}\" title=\"{}{round}: {}{}\"></div>",
            s.phase.name(),
            s.start,
            s.end,
            s.secs(),
            colour(s.phase),
            s.phase.name(),
            timing::duration(s.secs()),
            if s.offline { " (offline)" } else { "" }
        );
    }
    o.push_str("</div></div></div>\n");
}

fn breakdown(o: &mut String, vms: &[RecordSummary]) {
    let down: Vec<(&RecordSummary, Downtime)> = vms
        .iter()
        .filter_map(|r| timing::downtime(&r.spans).map(|d| (r, d)))
        .collect();
    o.push_str("<h2>Where the downtime went</h2>\n");
    if down.is_empty() {
        o.push_str("<p class=\"muted\">No VM was deallocated.</p>\n");
        return;
    }
    o.push_str("<table id=\"breakdown\"><tr><th>VM</th><th>Down from</th><th>Running again</th><th>Downtime</th>");
    for (k, _) in &down[0].1.breakdown {
        let _ = write!(o, "<th>{}</th>", k.replace('_', " "));
    }
    o.push_str("<th>Bytes per round</th></tr>\n");
    for (r, d) in &down {
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td>",
            esc(r.id.name()),
            esc(&timing::rfc3339(d.start)),
            if d.open {
                "still down".to_string()
            } else {
                esc(&timing::rfc3339(d.end))
            },
            timing::duration(d.secs())
        );
        for (_, v) in &d.breakdown {
            let _ = write!(o, "<td class=\"num\">{}</td>", timing::duration(*v));
        }
        let rounds: Vec<String> = timing::round_bytes(&r.disks)
            .iter()
            .map(|b| {
                format!(
                    "r{}{}: {}",
                    b.round,
                    if b.offline { " (offline)" } else { "" },
                    timing::bytes(b.bytes)
                )
            })
            .collect();
        let _ = writeln!(o, "<td>{}</td></tr>", rounds.join("<br>"));
    }
    o.push_str("</table>\n");
}

fn failures(o: &mut String, vms: &[RecordSummary]) {
    o.push_str("<h2>Failures</h2>\n");
    let parked: Vec<&RecordSummary> = vms
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Parked { .. }))
        .collect();
    if parked.is_empty() {
        o.push_str("<p class=\"muted\">No VM is parked.</p>\n");
    } else {
        o.push_str("<table id=\"failures\"><tr><th>VM</th><th>Step</th><th>Reason</th><th>Next action</th></tr>\n");
        for r in parked {
            if let Outcome::Parked {
                reason,
                next_action,
            } = &r.outcome
            {
                let _ = writeln!(
                    o,
                    "<tr><td title=\"{}\">{}</td><td>{}</td><td class=\"bad\">{}</td><td>{}</td></tr>",
                    esc(r.id.as_str()),
                    esc(r.id.name()),
                    r.step,
                    esc(reason),
                    esc(next_action)
                );
            }
        }
        o.push_str("</table>\n");
    }
    let skipped: Vec<(&RecordSummary, &str)> = vms
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Skipped { reason } => Some((r, reason.as_str())),
            _ => None,
        })
        .collect();
    if !skipped.is_empty() {
        o.push_str("<h2>Skipped</h2><table id=\"skipped\"><tr><th>VM</th><th>Reason</th></tr>\n");
        for (r, reason) in skipped {
            let _ = writeln!(
                o,
                "<tr><td title=\"{}\">{}</td><td>{}</td></tr>",
                esc(r.id.as_str()),
                esc(r.id.name()),
                esc(reason)
            );
        }
        o.push_str("</table>\n");
    }
}

fn findings(o: &mut String, plan: Option<&FrozenPlan>) {
    o.push_str("<h2>Dry-run findings</h2>\n");
    let Some(plan) = plan else {
        o.push_str("<p class=\"muted\">No frozen plan in the state directory (the run was not started with <code>run --plan</code>).</p>\n");
        return;
    };
    if plan.findings.is_empty() {
        o.push_str("<p class=\"muted\">The plan had no findings.</p>\n");
        return;
    }
    let _ = writeln!(
        o,
        "<p class=\"muted\">From plan <code>{}</code> (fingerprint <code>{}</code>). Codes: docs/troubleshooting.md.</p>\
         <table id=\"findings\"><tr><th>VM</th><th>Severity</th><th>Code</th><th>Message</th></tr>",
        esc(&plan.source),
        esc(&plan.fingerprint)
    );
    for f in &plan.findings {
        let vm =
            f.vm.as_deref()
                .map(|v| v.rsplit('/').next().unwrap_or(v))
                .unwrap_or("(plan)");
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td{}>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            esc(vm),
            if f.severity == "blocker" {
                " class=\"bad\""
            } else {
                ""
            },
            esc(&f.severity),
            esc(&f.code),
            esc(&f.message)
        );
    }
    o.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_every_markup_character() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }

    /// Every string from Azure or the journal, set to markup, comes out as
    /// text: names, reasons, next actions, wave names, findings, plan source.
    #[test]
    fn injected_markup_is_escaped_everywhere() {
        use crate::model::ResourceId;
        use crate::plan::{FrozenFinding, FrozenWave};
        use crate::step::{Span, VmRecord};
        const EVIL: &str = "<script>alert(1)</script><img src=x onerror=alert(2)>\"'&";
        let vm = |n: &str| ResourceId::new("s", "rg", "Microsoft.Compute", "virtualMachines", n);
        // ARM ids cannot hold `<>"&`; a quote they can.
        let mut parked = VmRecord::new(vm("o'parked"));
        parked.outcome = Outcome::Parked {
            reason: format!("reason {EVIL}"),
            next_action: format!("next {EVIL}"),
        };
        for (phase, a, b) in [(Phase::Deallocate, 0.0, 1.0), (Phase::CopyRound, 1.0, 3.0)] {
            parked.record_span(Span {
                phase,
                start: a,
                end: b,
                round: Some(1),
                offline: true,
                bytes: 0,
            });
        }
        let mut skipped = VmRecord::new(vm("o'skipped"));
        skipped.outcome = Outcome::Skipped {
            reason: format!("skip {EVIL}"),
        };
        let vms: Vec<RecordSummary> = [parked, skipped].iter().map(RecordSummary::of).collect();
        let plan = FrozenPlan {
            source: format!("plan{EVIL}.toml"),
            fingerprint: EVIL.into(),
            waves: vec![FrozenWave {
                name: format!("w{EVIL}"),
                target: "100%".into(),
                max_parallel: 1,
                approval: false,
                soak_secs: 0,
            }],
            assignment: [(vms[0].id.key(), 1)].into_iter().collect(),
            max_parallel: 1,
            failure_budget: None,
            failure_scope: "cumulative".into(),
            findings: vec![FrozenFinding {
                vm: Some(vms[1].id.to_string()),
                code: format!("c{EVIL}"),
                severity: "blocker".into(),
                message: format!("m{EVIL}"),
            }],
        };
        let mut meta = RunMeta::new(
            "http://x",
            "public",
            "none",
            vec![EVIL.into()],
            std::time::Duration::from_secs(1),
            1,
            vec![],
        );
        meta.run_id = format!("r{EVIL}");
        let times = RunTimes::of(Some(&plan), &vms);
        let entries: Vec<crate::step::VmEntry> = vms.iter().map(Into::into).collect();
        let head = super::super::run_head(&meta, Some(&plan), &entries, &times);
        let page = render(&meta, Some(&plan), &head, &vms, &times);
        for raw in ["<script", "<img", "onerror=alert(2)>", "\"'&", "o'"] {
            assert!(!page.contains(raw), "{raw} unescaped in the page");
        }
        assert!(page.contains("o&#39;parked") && page.contains("o&#39;skipped"));
        let escaped = esc(EVIL);
        // run id (title and text), subscription, fingerprint, reason, next
        // action, skip reason, wave name (table and timeline), finding code
        // and message, plan source.
        let n = page.matches(&escaped).count();
        assert!(n >= 12, "{n} escaped copies");
        assert!(page.contains(&format!("reason {escaped}")));
        assert!(page.contains(&format!("next {escaped}")));
        assert!(page.contains(&format!("m{escaped}")));
    }

    #[test]
    fn bars_are_placed_by_time_and_clamped_to_the_range() {
        assert_eq!(place(100.0, 200.0, 150.0, 250.0), (25.0, 50.0));
        assert_eq!(place(100.0, 200.0, 250.0, 400.0), (75.0, 25.0));
        assert_eq!(place(100.0, 200.0, 50.0, 50.0), (0.0, 0.0));
    }
}
