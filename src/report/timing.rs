//! A VM's timing as reports show it, computed from its [`Span`]s (pure):
//! the downtime window and where its time went, bytes per copy round, the
//! VM's first and last recorded times, and totals per wave and per run.
//!
//! Contracts:
//! - **Downtime** is the window from the start of the deallocation (the
//!   first offline span: [`Phase::Deallocate`] when the run deallocated the
//!   VM) to the end of the first [`Phase::Start`] span after it (the VM
//!   running again). A VM never deallocated by the run has none (`null` in
//!   JSON). A VM still down (parked, or the run still going) has an *open*
//!   window that ends at its last recorded span.
//! - The **breakdown** assigns every instant of the window to exactly one
//!   category (the first in [`CATEGORIES`] order among the spans active at
//!   that instant; `other` where none is: polls, journal writes, backoff),
//!   so the categories never overlap and always sum to the downtime, even
//!   when disks work in parallel.
//! - A copy round is shown by its sub-phase spans (round-snapshot, grant,
//!   copy, verify-copy, revoke) where those exist; its action-level
//!   [`Phase::CopyRound`] span is used only for rounds without them, so
//!   nothing is counted twice.

use serde_json::{Value, json};

use crate::step::{DiskSummary, Phase, Span};

/// Downtime breakdown categories, in priority order (see module doc), and
/// the phases each covers. `other` is what no span covers.
pub const CATEGORIES: [(&str, &[Phase]); 12] = [
    ("deallocate", &[Phase::Deallocate]),
    ("final_snapshot", &[Phase::RoundSnapshot]),
    ("grants", &[Phase::Grant]),
    ("final_delta", &[Phase::Copy, Phase::CopyRound]),
    ("verification", &[Phase::VerifyCopy]),
    ("revokes", &[Phase::Revoke]),
    ("validate", &[Phase::Validate]),
    ("delete", &[Phase::DeleteVm]),
    ("nic_hold", &[Phase::NicHold]),
    ("create", &[Phase::CreateVm]),
    ("start", &[Phase::Start]),
    (
        "other_steps",
        &[
            Phase::BackupSnapshot,
            Phase::Decrypt,
            Phase::RemoveExtension,
            Phase::Detach,
            Phase::CreateTargets,
            Phase::PostStart,
            Phase::Rollback,
        ],
    ),
];

/// Name of the uncovered remainder of the window.
pub const OTHER: &str = "other";

/// True for the phases a copy round is broken into.
fn is_round_sub_phase(p: Phase) -> bool {
    matches!(
        p,
        Phase::RoundSnapshot | Phase::Grant | Phase::Copy | Phase::Revoke
    )
}

/// The spans to show and count: every span, except the action-level
/// [`Phase::CopyRound`] span of a round that has sub-phase spans.
pub fn effective_spans(spans: &[Span]) -> Vec<&Span> {
    spans
        .iter()
        .filter(|s| {
            s.phase != Phase::CopyRound
                || !spans
                    .iter()
                    .any(|o| is_round_sub_phase(o.phase) && o.round.is_some() && o.round == s.round)
        })
        .collect()
}

/// The deallocate → running window of one VM.
#[derive(Debug, Clone, PartialEq)]
pub struct Downtime {
    /// Unix seconds the VM went down (deallocation began).
    pub start: f64,
    /// Unix seconds it was running again (or the last recorded span's end
    /// while `open`).
    pub end: f64,
    /// True while the VM has not been started again.
    pub open: bool,
    /// Seconds per category of [`CATEGORIES`] (in that order), then
    /// [`OTHER`]; they sum to [`Downtime::secs`].
    pub breakdown: Vec<(&'static str, f64)>,
}

impl Downtime {
    /// Length of the window in seconds.
    pub fn secs(&self) -> f64 {
        (self.end - self.start).max(0.0)
    }
}

/// The category index of a phase in [`CATEGORIES`].
fn category_of(p: Phase) -> usize {
    CATEGORIES
        .iter()
        .position(|(_, ps)| ps.contains(&p))
        .unwrap_or(CATEGORIES.len())
}

/// The downtime window of a VM with these spans (see module doc).
pub fn downtime(spans: &[Span]) -> Option<Downtime> {
    let spans = effective_spans(spans);
    let first = spans
        .iter()
        .find(|s| s.phase == Phase::Deallocate)
        .or_else(|| spans.iter().find(|s| s.offline))?;
    let start = first.start;
    let started = spans
        .iter()
        .find(|s| s.phase == Phase::Start && s.end >= start);
    let (end, open) = match started {
        Some(s) => (s.end, false),
        None => (spans.iter().map(|s| s.end).fold(start, f64::max), true),
    };
    // Sweep the window: every elementary interval between span boundaries
    // goes to the highest-priority category active in it.
    let clipped: Vec<(f64, f64, usize)> = spans
        .iter()
        .map(|s| (s.start.max(start), s.end.min(end), category_of(s.phase)))
        .filter(|(a, b, _)| b > a)
        .collect();
    let mut cuts: Vec<f64> = vec![start, end];
    for (a, b, _) in &clipped {
        cuts.push(*a);
        cuts.push(*b);
    }
    cuts.sort_by(f64::total_cmp);
    cuts.dedup();
    let mut secs = vec![0.0; CATEGORIES.len() + 1];
    for w in cuts.windows(2) {
        let (a, b) = (w[0], w[1]);
        let mid = (a + b) / 2.0;
        let cat = clipped
            .iter()
            .filter(|(s, e, _)| *s <= mid && mid < *e)
            .map(|(_, _, c)| *c)
            .min()
            .unwrap_or(CATEGORIES.len());
        secs[cat] += b - a;
    }
    let breakdown = CATEGORIES
        .iter()
        .map(|(n, _)| *n)
        .chain(std::iter::once(OTHER))
        .zip(secs)
        .collect();
    Some(Downtime {
        start,
        end,
        open,
        breakdown,
    })
}

/// Bytes moved by one copy round, all disks together.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundBytes {
    /// Round number.
    pub round: u32,
    /// True for the final (offline) round.
    pub offline: bool,
    /// Bytes the round read and wrote.
    pub bytes: u64,
}

/// Bytes per round, summed over the disks, in round order.
pub fn round_bytes(disks: &[DiskSummary]) -> Vec<RoundBytes> {
    let mut out: Vec<RoundBytes> = Vec::new();
    for r in disks.iter().flat_map(|d| &d.rounds) {
        match out.iter_mut().find(|o| o.round == r.number) {
            Some(o) => {
                o.bytes += r.bytes;
                o.offline |= r.offline;
            }
            None => out.push(RoundBytes {
                round: r.number,
                offline: r.offline,
                bytes: r.bytes,
            }),
        }
    }
    out.sort_by_key(|r| r.round);
    out
}

/// RFC 3339 (UTC, whole seconds) of Unix seconds.
pub fn rfc3339(t: f64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t.floor() as i64)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Seconds rounded to milliseconds (for JSON).
fn ms(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// First start and last end of the spans.
pub fn extent(spans: &[Span]) -> Option<(f64, f64)> {
    let start = spans.iter().map(|s| s.start).min_by(f64::total_cmp)?;
    let end = spans.iter().map(|s| s.end).fold(start, f64::max);
    Some((start, end))
}

/// `downtime_secs` and `timing` of one VM in `report --output json`
/// (docs/plan-schema.md).
pub fn vm_json(spans: &[Span], disks: &[DiskSummary]) -> (Value, Value) {
    let d = downtime(spans);
    let secs = d.as_ref().map(|d| ms(d.secs()));
    let window = d.as_ref().map(|d| {
        let breakdown: serde_json::Map<String, Value> = d
            .breakdown
            .iter()
            .map(|(k, v)| (k.to_string(), json!(ms(*v))))
            .collect();
        json!({"start": rfc3339(d.start), "end": rfc3339(d.end), "open": d.open,
               "breakdown": breakdown})
    });
    let (started, ended) = match extent(spans) {
        Some((a, b)) => (Some(rfc3339(a)), Some(rfc3339(b))),
        None => (None, None),
    };
    let rounds: Vec<Value> = round_bytes(disks)
        .iter()
        .map(|r| json!({"round": r.round, "offline": r.offline, "bytes": r.bytes}))
        .collect();
    let shown: Vec<&Span> = effective_spans(spans);
    (
        json!(secs),
        json!({"started_at": started, "ended_at": ended, "downtime": window,
               "rounds": rounds, "spans": shown}),
    )
}

/// Downtime totals over a set of VMs (a wave, or the run).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    /// VMs with a downtime window.
    pub vms_down: usize,
    /// Sum of their downtime, seconds.
    pub downtime_sum: f64,
    /// Longest downtime, seconds.
    pub downtime_max: f64,
    /// First recorded time of any VM.
    pub started: Option<f64>,
    /// Last recorded time of any VM.
    pub ended: Option<f64>,
}

impl Totals {
    /// Adds one VM.
    pub fn add(&mut self, spans: &[Span]) {
        if let Some(d) = downtime(spans) {
            self.vms_down += 1;
            self.downtime_sum += d.secs();
            self.downtime_max = self.downtime_max.max(d.secs());
        }
        if let Some((a, b)) = extent(spans) {
            self.started = Some(self.started.map_or(a, |s| s.min(a)));
            self.ended = Some(self.ended.map_or(b, |e| e.max(b)));
        }
    }

    /// The totals as JSON fields (docs/plan-schema.md).
    pub fn json(&self) -> Value {
        json!({
            "vms_down": self.vms_down,
            "downtime_secs_total": ms(self.downtime_sum),
            "downtime_secs_max": ms(self.downtime_max),
            "started_at": self.started.map(rfc3339),
            "ended_at": self.ended.map(rfc3339),
            "elapsed_secs": self.started.zip(self.ended).map(|(a, b)| ms(b - a)),
        })
    }
}

/// `12.0 GiB`, `3.5 MiB`, `512 B`.
pub fn bytes(b: u64) -> String {
    const MIB: f64 = (1u64 << 20) as f64;
    const GIB: f64 = (1u64 << 30) as f64;
    let f = b as f64;
    if f >= GIB {
        format!("{:.1} GiB", f / GIB)
    } else if f >= MIB {
        format!("{:.1} MiB", f / MIB)
    } else {
        format!("{b} B")
    }
}

/// `1h02m03s`, `4m05s`, `6.2s`.
pub fn duration(secs: f64) -> String {
    let s = secs.max(0.0);
    if s < 60.0 {
        return format!("{s:.1}s");
    }
    let t = s.round() as u64;
    if t < 3600 {
        format!("{}m{:02}s", t / 60, t % 60)
    } else {
        format!("{}h{:02}m{:02}s", t / 3600, (t % 3600) / 60, t % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(phase: Phase, start: f64, end: f64, round: Option<u32>, offline: bool) -> Span {
        Span {
            phase,
            start,
            end,
            round,
            offline,
            bytes: 0,
        }
    }

    fn total(d: &Downtime) -> f64 {
        d.breakdown.iter().map(|(_, v)| v).sum()
    }

    #[test]
    fn never_deallocated_has_no_downtime() {
        let s = [
            span(Phase::BackupSnapshot, 0.0, 1.0, None, false),
            span(Phase::CopyRound, 1.0, 5.0, Some(1), false),
        ];
        assert_eq!(downtime(&s), None);
        assert_eq!(downtime(&[]), None);
    }

    #[test]
    fn window_is_deallocate_start_to_start_end_and_breakdown_sums_to_it() {
        let s = [
            span(Phase::CopyRound, 0.0, 10.0, Some(1), false),
            span(Phase::Deallocate, 20.0, 30.0, None, true),
            // Two disks in parallel: sub-phases overlap.
            span(Phase::RoundSnapshot, 31.0, 33.0, Some(2), true),
            span(Phase::RoundSnapshot, 31.0, 34.0, Some(2), true),
            span(Phase::Grant, 33.0, 35.0, Some(2), true),
            span(Phase::Copy, 34.0, 40.0, Some(2), true),
            span(Phase::CopyRound, 31.0, 42.0, Some(2), true),
            span(Phase::Revoke, 40.0, 42.0, Some(2), true),
            span(Phase::VerifyCopy, 42.0, 45.0, None, true),
            span(Phase::DeleteVm, 45.0, 50.0, None, true),
            span(Phase::NicHold, 50.0, 230.0, None, true),
            span(Phase::CreateVm, 230.0, 240.0, None, true),
            span(Phase::Start, 240.0, 260.0, None, true),
            span(Phase::PostStart, 260.0, 300.0, None, false),
        ];
        let d = downtime(&s).unwrap();
        assert_eq!((d.start, d.end, d.open), (20.0, 260.0, false));
        assert!((total(&d) - d.secs()).abs() < 1e-9, "{d:?}");
        let get = |k: &str| d.breakdown.iter().find(|(n, _)| *n == k).unwrap().1;
        assert_eq!(get("deallocate"), 10.0);
        assert_eq!(get("final_snapshot"), 3.0);
        // 34..35 is a grant (higher priority than the copy), so the copy
        // counts 35..40: no instant is counted twice.
        assert_eq!(get("grants"), 1.0);
        assert_eq!(get("final_delta"), 5.0);
        assert_eq!(get("revokes"), 2.0);
        assert_eq!(get("verification"), 3.0);
        assert_eq!(get("nic_hold"), 180.0);
        assert_eq!(get("other"), 1.0);
        // The action-level span of round 2 is replaced by its sub-phases.
        assert!(
            !effective_spans(&s)
                .iter()
                .any(|x| x.phase == Phase::CopyRound && x.round == Some(2))
        );
        assert_eq!(effective_spans(&s).len(), s.len() - 1);
    }

    #[test]
    fn a_vm_still_down_has_an_open_window() {
        let s = [
            span(Phase::Deallocate, 5.0, 6.0, None, true),
            span(Phase::CopyRound, 6.0, 9.0, Some(3), true),
        ];
        let d = downtime(&s).unwrap();
        assert!(d.open);
        assert_eq!(d.secs(), 4.0);
        assert_eq!(
            d.breakdown
                .iter()
                .find(|(n, _)| *n == "final_delta")
                .unwrap()
                .1,
            3.0
        );
    }

    #[test]
    fn totals_sum_and_max() {
        let mut t = Totals::default();
        t.add(&[
            span(Phase::Deallocate, 0.0, 1.0, None, true),
            span(Phase::Start, 9.0, 10.0, None, true),
        ]);
        t.add(&[
            span(Phase::Deallocate, 2.0, 3.0, None, true),
            span(Phase::Start, 4.0, 6.0, None, true),
        ]);
        t.add(&[span(Phase::BackupSnapshot, -1.0, 0.0, None, false)]);
        assert_eq!(t.vms_down, 2);
        assert_eq!(t.downtime_sum, 14.0);
        assert_eq!(t.downtime_max, 10.0);
        assert_eq!((t.started, t.ended), (Some(-1.0), Some(10.0)));
    }
}
