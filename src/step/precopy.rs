//! The pre-copy stop rule, in time: after each online round, predict the
//! data part of the offline window (final snapshot to sealed and verified)
//! if the VM were deallocated now, and if one more online round ran first;
//! go on while that round is predicted to shrink the window meaningfully.
//!
//! Pure: the inputs are the rounds journaled in the record (sizes, range
//! counts and the engine-clock times of each round's start, snapshot, copy
//! start and copy end). The formula, per disk `d` (the window is the
//! slowest disk's, disks copy in parallel):
//!
//! ```text
//!   R   = bytes / copy time of the disk's largest measured round   (copy rate)
//!   L   = (copy time − bytes / R) / calls of its latest delta round (per-call cost)
//!   c   = delta bytes / (snapshot_k − snapshot_{k−1})               (churn rate)
//!   n   = calls / delta bytes of that round                         (calls per churned byte)
//!   o_s = snapshot_at − started_at, o_g = copy_started_at − snapshot_at (round overheads)
//!   T(D) = D / R + n·D·L·(1 + v)      (offline copy of D bytes, v = 1 when the
//!                                      verification reads every offline range back)
//!   now:  D_stop = c · (copy_ended_k − snapshot_k)          → W_stop = T(D_stop)
//!   next: D'     = c · (copy_ended_k − snapshot_k + o_s)    (what round k+1 copies)
//!         D_next = c · (o_g + D'/R + n·D'·L)                → W_next = T(D_next)
//!   gain = max_d W_stop − max_d W_next
//!   continue iff gain ≥ min_gain_fraction · max_d W_stop
//!            and gain ≥ min_gain_overheads · max_d (o_s + o_g)
//! ```
//!
//! Consequences: with no churn the gain is 0 (stop); with churn at or
//! above the copy rate `D_next ≥ D_stop` (stop: the rounds do not
//! converge). The churn is only known once two snapshots exist, so the
//! first round is always followed by a second one when the first took
//! long enough for the guest to matter (its duration since its snapshot is
//! at least the absolute gain threshold); with zero churn that second
//! round copies nothing and the rule stops. Caps: `max_online_rounds`, and
//! no round starts once `max_online_secs` have passed since the first
//! round began. Rounds without measurements (older journals, a round
//! resumed after a crash) fall back to the byte rule of older versions.

use super::record::{CopyPolicy, DiskPlan, Round, VerifyMode, VmRecord};

/// Most bytes one copy call moves (Put Page From URL, facts §4.2): the
/// calls per byte assumed when a round measured none.
const CALL_BYTES: u64 = 4 << 20;

/// Why the online rounds go on or end.
#[derive(Debug, Clone, PartialEq)]
pub enum PreCopyVerdict {
    /// Run another online round.
    Continue(String),
    /// Deallocate now.
    Stop(String),
}

impl PreCopyVerdict {
    /// True for [`PreCopyVerdict::Continue`].
    pub fn is_continue(&self) -> bool {
        matches!(self, PreCopyVerdict::Continue(_))
    }
}

/// What one disk's rounds predict (seconds of the engine's clock).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiskPrediction {
    /// Data part of the offline window if the VM is deallocated now.
    pub stop_secs: f64,
    /// The same after one more online round.
    pub next_secs: f64,
    /// Fixed cost of one round (snapshot and grants).
    pub overhead_secs: f64,
}

fn finished_online(d: &DiskPlan) -> Vec<&Round> {
    d.rounds.iter().filter(|r| r.copied && !r.offline).collect()
}

fn copy_secs(r: &Round) -> f64 {
    r.copy_ended_at - r.copy_started_at
}

/// The prediction for one disk, `None` when its rounds lack measurements.
pub fn predict(d: &DiskPlan, verify: VerifyMode) -> Option<DiskPrediction> {
    let rounds = finished_online(d);
    let last = *rounds.last()?;
    if !rounds.iter().all(|r| r.is_measured()) {
        return None;
    }
    // Copy rate from the round that moved the most (bandwidth-bound).
    let big = rounds
        .iter()
        .copied()
        .filter(|r| r.bytes > 0 && copy_secs(r) > 0.0)
        .max_by_key(|r| r.bytes);
    let rate = big.map(|r| r.bytes as f64 / copy_secs(r));
    let o_s = last.snapshot_at - last.started_at;
    let o_g = last.copy_started_at - last.snapshot_at;
    let since_snapshot = last.copy_ended_at - last.snapshot_at;
    if rounds.len() < 2 {
        // No churn measured yet: the worst case is a guest that rewrote
        // everything it could while the round ran, which costs about the
        // round's own duration since its snapshot.
        return Some(DiskPrediction {
            stop_secs: since_snapshot,
            next_secs: 0.0,
            overhead_secs: o_s + o_g,
        });
    }
    let prev = rounds[rounds.len() - 2];
    let interval = last.snapshot_at - prev.snapshot_at;
    if interval <= 0.0 {
        return None;
    }
    let churn = last.bytes as f64 / interval;
    let Some(rate) = rate.filter(|r| *r > 0.0) else {
        // Nothing was ever copied: nothing to predict with but the churn.
        return Some(DiskPrediction {
            stop_secs: 0.0,
            next_secs: 0.0,
            overhead_secs: o_s + o_g,
        });
    };
    // Per-call cost beyond bandwidth, from the latest delta round with calls.
    let per_call = rounds
        .iter()
        .rev()
        .find(|r| r.calls > 0 && r.number != big.map_or(0, |b| b.number))
        .map_or(0.0, |r| {
            ((copy_secs(r) - r.bytes as f64 / rate).max(0.0)) / r.calls as f64
        });
    let calls_per_byte = if last.bytes > 0 && last.calls > 0 {
        last.calls as f64 / last.bytes as f64
    } else {
        1.0 / CALL_BYTES as f64
    };
    let v = if verify == VerifyMode::None { 0.0 } else { 1.0 };
    let offline = |bytes: f64| bytes / rate + calls_per_byte * bytes * per_call * (1.0 + v);
    let online = |bytes: f64| bytes / rate + calls_per_byte * bytes * per_call;
    let d_stop = churn * since_snapshot;
    let d_round = churn * (since_snapshot + o_s);
    let d_next = churn * (o_g + online(d_round));
    Some(DiskPrediction {
        stop_secs: offline(d_stop),
        next_secs: offline(d_next),
        overhead_secs: o_s + o_g,
    })
}

/// Whether another online round follows the finished ones: the first one
/// always (unless the cap is 0), later ones as [`verdict`] says. The engine
/// asks it right after a round to know whether that round was the last
/// (its spot check); `decide` asks it before opening the next.
pub fn another_round(rec: &VmRecord) -> bool {
    let done = rec.online_rounds_done();
    done < rec.copy_policy.max_online_rounds && (done == 0 || verdict(rec).is_continue())
}

/// The stop rule after at least one finished online round of every disk
/// (the caller handles the open round and the first one).
pub fn verdict(rec: &VmRecord) -> PreCopyVerdict {
    let policy: CopyPolicy = rec.copy_policy;
    let done = rec.online_rounds_done();
    if done >= policy.max_online_rounds {
        return PreCopyVerdict::Stop(format!(
            "{done} online round(s): the cap (--precopy-rounds)"
        ));
    }
    let first_start = rec
        .disks
        .iter()
        .filter_map(|d| d.rounds.iter().find(|r| !r.offline))
        .map(|r| r.started_at)
        .fold(f64::INFINITY, f64::min);
    let last_end = rec
        .disks
        .iter()
        .filter_map(|d| finished_online(d).last().map(|r| r.copy_ended_at))
        .fold(0.0, f64::max);
    if first_start > 0.0 && last_end - first_start >= policy.max_online_secs {
        return PreCopyVerdict::Stop(format!(
            "online rounds took {:.0} s, the cap is {:.0} s",
            last_end - first_start,
            policy.max_online_secs
        ));
    }
    let predictions: Option<Vec<DiskPrediction>> = rec
        .disks
        .iter()
        .map(|d| predict(d, policy.verify))
        .collect();
    let Some(p) = predictions.filter(|p| !p.is_empty()) else {
        return legacy(rec, done);
    };
    let stop = p.iter().map(|x| x.stop_secs).fold(0.0, f64::max);
    let next = p.iter().map(|x| x.next_secs).fold(0.0, f64::max);
    let overhead = p.iter().map(|x| x.overhead_secs).fold(0.0, f64::max);
    let gain = stop - next;
    let min_abs = policy.min_gain_overheads * overhead;
    let figures = format!(
        "offline data part predicted {stop:.2} s now, {next:.2} s after another round (gain {gain:.2} s; needs {:.0}% and {min_abs:.2} s)",
        policy.min_gain_fraction * 100.0
    );
    if done == 1 {
        // No churn measured: a second round measures it, worth it unless
        // even a guest writing at the copy rate could not matter.
        return if stop >= min_abs {
            PreCopyVerdict::Continue(format!(
                "a delta round measures the churn (the first round ran {stop:.2} s since its snapshot)"
            ))
        } else {
            PreCopyVerdict::Stop(format!(
                "the first round ran only {stop:.2} s since its snapshot"
            ))
        };
    }
    if gain > 0.0 && gain >= policy.min_gain_fraction * stop && gain >= min_abs {
        PreCopyVerdict::Continue(figures)
    } else {
        PreCopyVerdict::Stop(figures)
    }
}

/// The byte rule of older journals: stop once a round moved no more than
/// `offline_target_bytes`, or once a delta round stopped shrinking by half.
fn legacy(rec: &VmRecord, done: u32) -> PreCopyVerdict {
    let nth_from_end = |d: &DiskPlan, k: usize| {
        finished_online(d)
            .into_iter()
            .rev()
            .nth(k)
            .map_or(0, |r| r.bytes)
    };
    let last: u64 = rec.disks.iter().map(|d| nth_from_end(d, 0)).sum();
    let prev: u64 = rec.disks.iter().map(|d| nth_from_end(d, 1)).sum();
    if last <= rec.copy_policy.offline_target_bytes {
        PreCopyVerdict::Stop(format!("unmeasured rounds; last moved {last} bytes"))
    } else if done >= 2 && last.saturating_mul(2) > prev {
        PreCopyVerdict::Stop("unmeasured rounds; the delta stopped shrinking".into())
    } else {
        PreCopyVerdict::Continue(format!("unmeasured rounds; last moved {last} bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ResourceId;
    use crate::step::record::{DiskPlan, DiskRole};

    const MIB: f64 = (1u64 << 20) as f64;

    fn id(s: &str) -> ResourceId {
        ResourceId::parse(&format!(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/{s}"
        ))
        .unwrap()
    }

    /// A disk copied at `rate` bytes/s with `per_call` s per call beyond
    /// bandwidth, `allocated` bytes, a guest writing `churn` bytes/s in
    /// 1 MiB pieces, rounds costing `o_s` (snapshot) and `o_g` (grants).
    struct Sim {
        allocated: f64,
        rate: f64,
        per_call: f64,
        churn: f64,
        o_s: f64,
        o_g: f64,
    }

    impl Sim {
        fn small() -> Sim {
            // The issue's setup: a 256 MiB dense disk, a 4 MiB/s write cap,
            // 64 KiB/s guest writes.
            Sim {
                allocated: 256.0 * MIB,
                rate: 4.0 * MIB,
                per_call: 0.05,
                churn: 64.0 * 1024.0,
                o_s: 10.0,
                o_g: 3.5,
            }
        }

        /// Appends the next online round, as the engine would measure it.
        fn round(&self, d: &mut DiskPlan) {
            let n = d.rounds.len() as u32 + 1;
            let start = d.rounds.last().map_or(1000.0, |r| r.copy_ended_at + 1.0);
            let snapshot_at = start + self.o_s;
            let (bytes, calls) = match d.rounds.last() {
                None => (self.allocated, (self.allocated / (4.0 * MIB)).ceil()),
                Some(p) => {
                    let b = (self.churn * (snapshot_at - p.snapshot_at)).min(self.allocated);
                    (b, (b / MIB).ceil())
                }
            };
            let copy = bytes / self.rate + calls * self.per_call;
            let mut r = Round::open(n, id(&format!("snapshots/r{n}")), false);
            r.copied = true;
            r.bytes = bytes as u64;
            r.calls = calls as u64;
            r.started_at = start;
            r.snapshot_at = snapshot_at;
            r.copy_started_at = snapshot_at + self.o_g;
            r.copy_ended_at = r.copy_started_at + copy;
            d.rounds.push(r);
        }

        /// Rounds until the rule stops, with `policy`.
        fn run(&self, policy: CopyPolicy) -> (VmRecord, PreCopyVerdict) {
            let mut rec = record(policy);
            self.round(&mut rec.disks[0]);
            loop {
                let v = verdict(&rec);
                if !v.is_continue() || rec.disks[0].rounds.len() > 50 {
                    return (rec, v);
                }
                self.round(&mut rec.disks[0]);
            }
        }
    }

    fn record(policy: CopyPolicy) -> VmRecord {
        let mut r = VmRecord::new(id("virtualMachines/vm"));
        r.copy_policy = policy;
        r.disks = vec![DiskPlan {
            role: DiskRole::Os,
            source: id("disks/os"),
            source_size_bytes: 1 << 30,
            source_model: serde_json::json!({}),
            snapshot: id("snapshots/os-backup"),
            target: id("disks/os-eah"),
            copied: false,
            bytes_copied: 0,
            rounds: Vec::new(),
            verified: false,
            rounds_opened: 0,
        }];
        r
    }

    fn online(rec: &VmRecord) -> usize {
        rec.disks[0].online_rounds_done()
    }

    #[test]
    fn a_small_disk_with_steady_churn_gets_delta_rounds() {
        // Under the old byte rule (2 GiB) this disk got no delta round.
        let (rec, v) = Sim::small().run(CopyPolicy::default());
        assert!(online(&rec) >= 2, "{v:?}");
        assert!(online(&rec) <= 4);
        // The offline delta left is far below the first round's churn.
        let p = predict(&rec.disks[0], VerifyMode::Sample).unwrap();
        assert!(p.stop_secs < 2.0, "{p:?} {v:?}");
    }

    #[test]
    fn zero_churn_stops_once_the_churn_is_measured() {
        let sim = Sim {
            churn: 0.0,
            ..Sim::small()
        };
        let (rec, v) = sim.run(CopyPolicy::default());
        assert_eq!(online(&rec), 2, "the second round measures zero: {v:?}");
        assert_eq!(rec.disks[0].rounds[1].bytes, 0);
        assert!(!v.is_continue());
    }

    #[test]
    fn a_first_round_too_short_for_churn_to_matter_stops_at_once() {
        let sim = Sim {
            allocated: 4.0 * MIB,
            rate: 60.0 * MIB,
            o_g: 1.0,
            ..Sim::small()
        };
        let (rec, v) = sim.run(CopyPolicy::default());
        assert_eq!(online(&rec), 1, "{v:?}");
    }

    #[test]
    fn churn_at_or_above_the_copy_rate_stops() {
        for churn in [4.0 * MIB, 8.0 * MIB] {
            let sim = Sim {
                allocated: 64.0 * 1024.0 * MIB,
                churn,
                ..Sim::small()
            };
            let (rec, v) = sim.run(CopyPolicy::default());
            assert_eq!(online(&rec), 2, "no third round: {v:?}");
        }
    }

    #[test]
    fn caps_on_rounds_and_online_time_hold() {
        // A convergent case that would go on for 3+ rounds...
        let sim = Sim {
            allocated: 64.0 * 1024.0 * MIB,
            rate: 60.0 * MIB,
            churn: 6.0 * MIB,
            ..Sim::small()
        };
        let (free, _) = sim.run(CopyPolicy {
            max_online_rounds: 20,
            ..CopyPolicy::default()
        });
        assert!(online(&free) >= 3, "{}", online(&free));
        // ...stops at the round cap...
        let (capped, v) = sim.run(CopyPolicy {
            max_online_rounds: 2,
            ..CopyPolicy::default()
        });
        assert_eq!(online(&capped), 2);
        assert!(matches!(v, PreCopyVerdict::Stop(ref s) if s.contains("cap")));
        // ...and at the online-time cap (the first round alone takes ~1100 s).
        let (timed, v) = sim.run(CopyPolicy {
            max_online_rounds: 20,
            max_online_secs: 600.0,
            ..CopyPolicy::default()
        });
        assert_eq!(online(&timed), 1, "{v:?}");
    }

    #[test]
    fn the_slowest_disk_decides_and_unmeasured_rounds_use_the_byte_rule() {
        let mut rec = record(CopyPolicy::default());
        let mut quiet = rec.disks[0].clone();
        quiet.source = id("disks/data");
        rec.disks.push(quiet);
        let busy = Sim::small();
        let idle = Sim {
            churn: 0.0,
            ..Sim::small()
        };
        for _ in 0..2 {
            busy.round(&mut rec.disks[0]);
            idle.round(&mut rec.disks[1]);
        }
        let alone = {
            let mut r = rec.clone();
            r.disks.truncate(1);
            verdict(&r)
        };
        assert_eq!(verdict(&rec).is_continue(), alone.is_continue());
        // An old journal's rounds (no times): 88 bytes is below 2 GiB.
        for d in &mut rec.disks {
            for r in &mut d.rounds {
                r.started_at = 0.0;
            }
        }
        assert!(matches!(verdict(&rec), PreCopyVerdict::Stop(ref s) if s.contains("unmeasured")));
    }
}
