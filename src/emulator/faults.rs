//! Seeded randomness (splitmix64) and the per-request fault decision.
//!
//! Contract: [`decide`] is a pure function of (seed, request number, request
//! class, fault config), so a run with the same seed and request order gets
//! the same faults.

use super::config::{FaultConfig, FaultKind};

/// One splitmix64 step: a well-mixed 64-bit hash of `x`.
pub(crate) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A tiny deterministic generator.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Rng(splitmix64(seed ^ 0xA0DE_A0DE))
    }

    /// Next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        splitmix64(self.0)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[min, max]`.
    pub(crate) fn range(&mut self, min: f64, max: f64) -> f64 {
        if max <= min {
            min
        } else {
            min + (max - min) * self.next_f64()
        }
    }

    /// A random (version 4) UUID string.
    pub(crate) fn uuid(&mut self) -> String {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        b[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        uuid::Builder::from_random_bytes(b).into_uuid().to_string()
    }
}

/// What kind of ARM request is being considered for a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestClass {
    /// A GET of a resource.
    Read,
    /// An operation-status or Location poll (only 429/500/503).
    Poll,
    /// PUT/PATCH/POST/DELETE.
    Mutating,
}

/// A fault chosen for one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Fault {
    /// The kind.
    pub kind: FaultKind,
    /// Extra random bits for sub-choices (message variant, Retry-After,
    /// drop before/after applying).
    pub bits: u64,
}

impl Fault {
    /// Simulated Retry-After for a throttle, 30..=1200 s.
    pub(crate) fn retry_after_secs(&self) -> f64 {
        30.0 + ((self.bits >> 8) % 1171) as f64
    }

    /// For a dropped mutating request: apply the effect, then drop.
    pub(crate) fn drop_after_apply(&self) -> bool {
        self.bits & 1 == 1
    }

    /// For a 409: use code `AnotherOperationInProgress` (else `OperationNotAllowed`).
    pub(crate) fn conflict_code_another(&self) -> bool {
        self.bits & 2 == 2
    }
}

/// The fault for ARM request number `seq`, if any.
pub(crate) fn decide(cfg: &FaultConfig, seed: u64, seq: u64, class: RequestClass) -> Option<Fault> {
    if cfg.rate.is_nan() || cfg.rate <= 0.0 || cfg.kinds.is_empty() {
        return None;
    }
    let h = splitmix64(splitmix64(seed ^ 0xFA17) ^ seq);
    let roll = (h >> 11) as f64 / (1u64 << 53) as f64;
    if roll >= cfg.rate {
        return None;
    }
    let applicable: Vec<FaultKind> = cfg
        .kinds
        .iter()
        .copied()
        .filter(|k| match class {
            RequestClass::Mutating => true,
            RequestClass::Read => !matches!(k, FaultKind::Conflict | FaultKind::FailedOperation),
            RequestClass::Poll => matches!(
                k,
                FaultKind::Throttle | FaultKind::ServerError | FaultKind::Unavailable
            ),
        })
        .collect();
    if applicable.is_empty() {
        return None;
    }
    let h2 = splitmix64(h);
    let kind = applicable[(h2 % applicable.len() as u64) as usize];
    Some(Fault {
        kind,
        bits: splitmix64(h2),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_replay_from_the_seed_and_respect_the_rate() {
        let cfg = FaultConfig {
            rate: 0.2,
            ..Default::default()
        };
        let a: Vec<_> = (0..2000)
            .map(|n| decide(&cfg, 42, n, RequestClass::Mutating))
            .collect();
        let b: Vec<_> = (0..2000)
            .map(|n| decide(&cfg, 42, n, RequestClass::Mutating))
            .collect();
        assert_eq!(a, b);
        let c: Vec<_> = (0..2000)
            .map(|n| decide(&cfg, 43, n, RequestClass::Mutating))
            .collect();
        assert_ne!(a, c);
        let hits = a.iter().filter(|f| f.is_some()).count();
        assert!((300..500).contains(&hits), "{hits}");
        for kind in FaultKind::ALL {
            assert!(
                a.iter().flatten().any(|f| f.kind == kind),
                "{kind:?} is drawn"
            );
        }
    }

    #[test]
    fn polls_only_get_throttles_and_5xx() {
        let cfg = FaultConfig {
            rate: 1.0,
            ..Default::default()
        };
        for n in 0..500 {
            let f = decide(&cfg, 1, n, RequestClass::Poll).unwrap();
            assert!(matches!(
                f.kind,
                FaultKind::Throttle | FaultKind::ServerError | FaultKind::Unavailable
            ));
            let r = decide(&cfg, 1, n, RequestClass::Read).unwrap();
            assert!(!matches!(
                r.kind,
                FaultKind::Conflict | FaultKind::FailedOperation
            ));
            assert!((30.0..=1200.0).contains(&f.retry_after_secs()));
        }
        assert!(decide(&FaultConfig::default(), 1, 3, RequestClass::Mutating).is_none());
    }
}
