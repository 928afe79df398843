//! The per-request fault decision (seeded by [`super::rng`]).
//!
//! Contract: [`decide`] is a pure function of (seed, request number, request
//! class, fault config), so a run with the same seed and request order gets
//! the same faults.

use std::collections::{BTreeMap, BTreeSet};

use super::config::{FaultConfig, FaultKind};
use super::rng::splitmix64;
use super::world::ArmError;

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

impl Fault {
    /// For [`FaultKind::SasExpiresEarly`]: the cut SAS lifetime, 2..=6 simulated seconds.
    pub(crate) fn short_sas_secs(&self) -> u64 {
        2 + (self.bits >> 16) % 5
    }

    /// For [`FaultKind::Malformed`]: truncated JSON (else a body without `properties`).
    pub(crate) fn malformed_truncate(&self) -> bool {
        self.bits & 4 == 4
    }
}

/// What the request is, for the kinds that apply only to some requests
/// (all false: only the original kinds and the any-request kinds apply).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Shape {
    /// PUT of a VM that does not exist.
    pub vm_create: bool,
    /// POST `.../start` of a VM.
    pub vm_start: bool,
    /// PUT of an ADE extension with `EncryptionOperation` `DisableEncryption`.
    pub ade_disable: bool,
    /// POST `beginGetAccess`.
    pub grant: bool,
    /// POST `endGetAccess` of a disk.
    pub revoke: bool,
    /// GET of a VM or of a disk/snapshot.
    pub resource_get: bool,
}

fn applies(kind: FaultKind, class: RequestClass, s: &Shape) -> bool {
    let mutating = class == RequestClass::Mutating;
    match kind {
        FaultKind::Conflict | FaultKind::FailedOperation => mutating,
        FaultKind::Throttle | FaultKind::ServerError | FaultKind::Unavailable => true,
        FaultKind::DropConnection => class != RequestClass::Poll,
        FaultKind::AllocationFailed | FaultKind::ZonalAllocationFailed => {
            mutating && (s.vm_create || s.vm_start)
        }
        FaultKind::SkuNotAvailable => mutating && s.vm_create,
        FaultKind::SubscriptionThrottle | FaultKind::ExpiredToken => true,
        FaultKind::SasExpiresEarly => mutating && s.grant,
        FaultKind::DecryptionFailed => mutating && s.ade_disable,
        FaultKind::InvalidVhd => mutating && s.revoke,
        FaultKind::Malformed => class == RequestClass::Read && s.resource_get,
    }
}

/// State of the faults that act later than the request or only once; kept
/// in the world (under its lock).
#[derive(Debug, Default)]
pub(crate) struct Hooks {
    /// Error the next operation started with an injected failure ends with
    /// (instead of `InternalOperationError`); taken by `new_op`.
    pub lro_error: Option<ArmError>,
    /// Operation id → its injected error.
    pub op_errors: BTreeMap<String, ArmError>,
    /// Disk key → `true` while an `InvalidVhd` is armed for its next
    /// endGetAccess of an active upload, `false` once it fired (once per disk).
    pub invalid_vhd: BTreeMap<String, bool>,
    /// VM keys whose running decryption ends in a guest error.
    pub decrypt_fail: BTreeSet<String>,
    /// The one-time 401 was sent.
    pub token_expired_sent: bool,
}

impl Hooks {
    /// Arms an `InvalidVhd` for disk `key` unless one already fired for it.
    pub(crate) fn arm_invalid_vhd(&mut self, key: String) {
        self.invalid_vhd.entry(key).or_insert(true);
    }

    /// True (once) when an `InvalidVhd` is armed for disk `key`.
    pub(crate) fn take_invalid_vhd(&mut self, key: &str) -> bool {
        self.invalid_vhd
            .get_mut(key)
            .is_some_and(|armed| std::mem::replace(armed, false))
    }
}

/// The fault for ARM request number `seq` of shape `shape`, if any.
pub(crate) fn decide(
    cfg: &FaultConfig,
    seed: u64,
    seq: u64,
    class: RequestClass,
    shape: &Shape,
) -> Option<Fault> {
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
        .filter(|k| applies(*k, class, shape))
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
            .map(|n| decide(&cfg, 42, n, RequestClass::Mutating, &Shape::default()))
            .collect();
        let b: Vec<_> = (0..2000)
            .map(|n| decide(&cfg, 42, n, RequestClass::Mutating, &Shape::default()))
            .collect();
        assert_eq!(a, b);
        let c: Vec<_> = (0..2000)
            .map(|n| decide(&cfg, 43, n, RequestClass::Mutating, &Shape::default()))
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
    fn extra_kinds_hit_only_their_requests_and_leave_the_default_set_alone() {
        let all_shapes = [
            Shape::default(),
            Shape {
                vm_create: true,
                ..Default::default()
            },
            Shape {
                vm_start: true,
                ..Default::default()
            },
            Shape {
                ade_disable: true,
                ..Default::default()
            },
            Shape {
                grant: true,
                ..Default::default()
            },
            Shape {
                revoke: true,
                ..Default::default()
            },
            Shape {
                resource_get: true,
                ..Default::default()
            },
        ];
        let classes = [
            RequestClass::Read,
            RequestClass::Poll,
            RequestClass::Mutating,
        ];
        // The default set decides exactly as before, whatever the shape.
        let cfg = FaultConfig {
            rate: 0.3,
            ..Default::default()
        };
        for n in 0..500 {
            for c in classes {
                let base = decide(&cfg, 9, n, c, &Shape::default());
                for s in &all_shapes {
                    assert_eq!(decide(&cfg, 9, n, c, s), base);
                }
            }
        }
        // Each extra kind alone at 100% fires on its requests only.
        for kind in FaultKind::EXTRA {
            let cfg = FaultConfig {
                rate: 1.0,
                kinds: vec![kind],
            };
            for c in classes {
                for s in &all_shapes {
                    let fired = decide(&cfg, 9, 1, c, s).is_some();
                    let m = c == RequestClass::Mutating;
                    let want = match kind {
                        FaultKind::AllocationFailed | FaultKind::ZonalAllocationFailed => {
                            m && (s.vm_create || s.vm_start)
                        }
                        FaultKind::SkuNotAvailable => m && s.vm_create,
                        FaultKind::SubscriptionThrottle | FaultKind::ExpiredToken => true,
                        FaultKind::SasExpiresEarly => m && s.grant,
                        FaultKind::DecryptionFailed => m && s.ade_disable,
                        FaultKind::InvalidVhd => m && s.revoke,
                        FaultKind::Malformed => c == RequestClass::Read && s.resource_get,
                        _ => unreachable!(),
                    };
                    assert_eq!(fired, want, "{kind:?} {c:?} {s:?}");
                }
            }
        }
        let f = decide(
            &FaultConfig {
                rate: 1.0,
                kinds: vec![FaultKind::SasExpiresEarly],
            },
            9,
            1,
            RequestClass::Mutating,
            &all_shapes[4],
        )
        .unwrap();
        assert!((2..=6).contains(&f.short_sas_secs()));
        let mut h = Hooks::default();
        h.arm_invalid_vhd("d".into());
        assert!(h.take_invalid_vhd("d"));
        h.arm_invalid_vhd("d".into());
        assert!(!h.take_invalid_vhd("d"), "once per disk");
        assert!(!h.take_invalid_vhd("other"));
    }

    #[test]
    fn polls_only_get_throttles_and_5xx() {
        let cfg = FaultConfig {
            rate: 1.0,
            ..Default::default()
        };
        for n in 0..500 {
            let f = decide(&cfg, 1, n, RequestClass::Poll, &Shape::default()).unwrap();
            assert!(matches!(
                f.kind,
                FaultKind::Throttle | FaultKind::ServerError | FaultKind::Unavailable
            ));
            let r = decide(&cfg, 1, n, RequestClass::Read, &Shape::default()).unwrap();
            assert!(!matches!(
                r.kind,
                FaultKind::Conflict | FaultKind::FailedOperation
            ));
            assert!((30.0..=1200.0).contains(&f.retry_after_secs()));
        }
        assert!(
            decide(
                &FaultConfig::default(),
                1,
                3,
                RequestClass::Mutating,
                &Shape::default()
            )
            .is_none()
        );
    }
}
