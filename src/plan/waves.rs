//! Wave targets, failure budgets and durations, with their rounding rules.
//!
//! - Wave targets are **cumulative**: `1,10%,100%` is a canary of one VM,
//!   then up to 10% of the eligible VMs in all, then the rest. A percentage
//!   rounds **up** (`ceil(p × N / 100)`), a count is capped at N; a target not
//!   above the previous one gives an empty wave (dropped). The last target
//!   must reach every eligible VM (`100%`, or a count ≥ N).
//! - A failure budget is a count (`3`) or a percentage (`10%`). A
//!   percentage rounds **down** (`floor(p × M / 100)`) over M = the eligible
//!   VMs of the scope (the wave for `per-wave`, the whole plan for
//!   `cumulative`). The run halts when failures **exceed** the budget
//!   (Ansible's `max_fail_percentage` semantics): budget `0` halts on the
//!   first failure, budget `2` on the third.

use serde::Serialize;

/// One cumulative wave target.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum WaveTarget {
    /// This many eligible VMs in all.
    Count(u64),
    /// This percentage of the eligible VMs in all (0 < p ≤ 100).
    Percent(f64),
}

impl WaveTarget {
    /// Parses `5` or `10%`.
    pub fn parse(s: &str) -> Result<WaveTarget, String> {
        let t = s.trim();
        if let Some(p) = t.strip_suffix('%') {
            let v: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("wave target {s:?} is not a percentage like 10%"))?;
            if !(v > 0.0 && v <= 100.0) {
                return Err(format!(
                    "wave target {s:?} must be above 0% and at most 100%"
                ));
            }
            Ok(WaveTarget::Percent(v))
        } else {
            let v: u64 = t.parse().map_err(|_| {
                format!("wave target {s:?} is not a count (5) or a percentage (10%)")
            })?;
            if v == 0 {
                return Err(format!("wave target {s:?} must be at least 1"));
            }
            Ok(WaveTarget::Count(v))
        }
    }

    /// Cumulative VM count for `n` eligible VMs.
    pub fn resolve(self, n: usize) -> usize {
        match self {
            WaveTarget::Count(c) => (c as usize).min(n),
            WaveTarget::Percent(p) => ((p * n as f64 / 100.0) - 1e-9).ceil().max(0.0) as usize,
        }
        .min(n)
    }

    /// Reaches every VM whatever N is.
    pub fn is_all(self) -> bool {
        matches!(self, WaveTarget::Percent(p) if p >= 100.0)
    }
}

impl std::fmt::Display for WaveTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WaveTarget::Count(c) => write!(f, "{c}"),
            WaveTarget::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// One wave as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct WaveSpec {
    /// Optional name.
    pub name: Option<String>,
    /// Cumulative target.
    pub target: WaveTarget,
    /// Per-wave concurrency (capped by the global cap).
    pub max_parallel: Option<usize>,
    /// Needs `ade2eah approve` before it starts.
    pub approval: bool,
    /// Seconds to wait after the previous wave ended.
    pub soak_secs: u64,
    /// Encryption of this wave's new disks (overrides the plan's option).
    pub target_encryption: Option<crate::step::encryption::TargetEncryption>,
}

impl WaveSpec {
    /// A wave with only a target.
    pub fn new(target: WaveTarget) -> Self {
        WaveSpec {
            name: None,
            target,
            max_parallel: None,
            approval: false,
            soak_secs: 0,
            target_encryption: None,
        }
    }
}

/// Parses `--waves 1,10%,100%`.
pub fn parse_waves(s: &str) -> Result<Vec<WaveSpec>, String> {
    let out: Result<Vec<_>, _> = s
        .split(',')
        .map(|p| WaveTarget::parse(p).map(WaveSpec::new))
        .collect();
    let out = out?;
    if out.is_empty() {
        return Err("--waves needs at least one target".into());
    }
    Ok(out)
}

/// Sizes of each wave for `n` eligible VMs (same length as `waves`; empty
/// waves are size 0). Errors when the last target leaves VMs out.
pub fn wave_sizes(waves: &[WaveSpec], n: usize) -> Result<Vec<usize>, String> {
    let mut prev = 0usize;
    let mut out = Vec::new();
    for w in waves {
        let c = w.target.resolve(n).max(prev);
        out.push(c - prev);
        prev = c;
    }
    if prev < n && !waves.last().is_some_and(|w| w.target.is_all()) {
        return Err(format!(
            "the last wave target ({}) reaches {prev} of the {n} eligible VMs; end the waves with 100%",
            waves
                .last()
                .map(|w| w.target.to_string())
                .unwrap_or_default()
        ));
    }
    Ok(out)
}

/// A failure budget.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Budget {
    /// At most this many failures are tolerated.
    Count(u64),
    /// At most `floor(p × M / 100)` failures are tolerated.
    Percent(f64),
}

impl Budget {
    /// Parses `3` or `10%`.
    pub fn parse(s: &str) -> Result<Budget, String> {
        let t = s.trim();
        if let Some(p) = t.strip_suffix('%') {
            let v: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("failure budget {s:?} is not a percentage like 10%"))?;
            if !(0.0..=100.0).contains(&v) {
                return Err(format!("failure budget {s:?} must be between 0% and 100%"));
            }
            Ok(Budget::Percent(v))
        } else {
            t.parse().map(Budget::Count).map_err(|_| {
                format!("failure budget {s:?} is not a count (3) or a percentage (10%)")
            })
        }
    }

    /// Failures tolerated over `m` VMs.
    pub fn allowed(self, m: usize) -> u64 {
        match self {
            Budget::Count(c) => c,
            Budget::Percent(p) => ((p * m as f64 / 100.0) + 1e-9).floor() as u64,
        }
    }

    /// True when `failures` exceed the budget over `m` VMs.
    pub fn exceeded(self, failures: u64, m: usize) -> bool {
        failures > self.allowed(m)
    }
}

impl std::fmt::Display for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Budget::Count(c) => write!(f, "{c}"),
            Budget::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// What a failure budget counts over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BudgetScope {
    /// Failures of all waves so far against the whole plan's eligible VMs.
    Cumulative,
    /// Failures of the current wave against that wave's VMs.
    PerWave,
}

/// Parses `90`, `90s`, `10m`, `2h` into seconds.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mul) = match t.chars().last() {
        Some('s') => (&t[..t.len() - 1], 1),
        Some('m') => (&t[..t.len() - 1], 60),
        Some('h') => (&t[..t.len() - 1], 3600),
        Some('d') => (&t[..t.len() - 1], 86400),
        _ => (t, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mul))
        .ok_or_else(|| format!("duration {s:?} is not like 90s, 10m, 2h or 7d"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cumulative_targets_round_up_and_end_at_all() {
        let w = parse_waves("1,10%,100%").unwrap();
        assert_eq!(wave_sizes(&w, 300).unwrap(), vec![1, 29, 270]);
        assert_eq!(wave_sizes(&w, 5).unwrap(), vec![1, 0, 4]);
        let w = parse_waves("1,10,50%,100%").unwrap();
        assert_eq!(wave_sizes(&w, 40).unwrap(), vec![1, 9, 10, 20]);
        assert_eq!(wave_sizes(&w, 0).unwrap(), vec![0, 0, 0, 0]);
        assert!(wave_sizes(&parse_waves("1,10").unwrap(), 40).is_err());
        assert!(WaveTarget::parse("0").is_err());
        assert!(WaveTarget::parse("101%").is_err());
    }

    #[test]
    fn budgets_round_down_and_must_be_exceeded() {
        let b = Budget::parse("10%").unwrap();
        assert_eq!(b.allowed(50), 5);
        assert!(!b.exceeded(5, 50));
        assert!(b.exceeded(6, 50));
        let b = Budget::parse("0").unwrap();
        assert!(b.exceeded(1, 10));
        assert_eq!(Budget::parse("49%").unwrap().allowed(4), 1);
        assert_eq!(parse_duration("10m").unwrap(), 600);
        assert_eq!(parse_duration("7").unwrap(), 7);
        assert_eq!(parse_duration("7d").unwrap(), 7 * 86400);
        assert!(parse_duration("99999999999999999d").is_err());
    }
}
