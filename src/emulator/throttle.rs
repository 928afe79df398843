//! Azure's throttling as token buckets in simulated time (facts §7.4).
//!
//! - ARM, per subscription: reads 250 burst / 25 per s; writes 200 / 10 per
//!   s; deletes 200 / 10 per s. Headers
//!   `x-ms-ratelimit-remaining-subscription-reads|writes|deletes`.
//! - Compute RP, per policy: `PutVM`, `UpdateVM`, `DeleteVM` 12 burst / 4 per
//!   minute per VM and 1,500 / 500 per minute per subscription; `LowCostGet`
//!   36 / 12 per minute per VM and 24,000 / 8,000 per minute per
//!   subscription; `GetOperation` 15,000 / 5,000 per minute per subscription
//!   (an operation id does not name its VM). Header
//!   `x-ms-ratelimit-remaining-resource:
//!   Microsoft.Compute/{policy}3Min;{per-VM left},Microsoft.Compute/{policy}30Min;{per-subscription left}`
//!   (the `3Min` entry only where a per-VM bucket applies; the names are
//!   the header format of facts §7.4, the windows are the buckets here).
//! - A request that finds any applicable bucket empty is not processed (no
//!   token taken) and gets 429 with `Retry-After` = the simulated time until
//!   that bucket holds a token again, converted to real time by the
//!   [`super::SimClock`].
//!
//! Off by default ([`ThrottleConfig::default`]); the fleet bench and the
//! fleet throttling test switch it on with [`ThrottleConfig::azure`].

use std::collections::HashMap;
use std::sync::Mutex;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use serde_json::json;

/// A token bucket's size and refill rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    /// Tokens when full (the burst).
    pub burst: f64,
    /// Tokens added per simulated second.
    pub per_sec: f64,
}

impl Limit {
    /// `burst` tokens, refilled `per_min` per minute.
    pub const fn per_minute(burst: f64, per_min: f64) -> Limit {
        Limit {
            burst,
            per_sec: per_min / 60.0,
        }
    }
}

/// Throttling limits of an emulator.
#[derive(Debug, Clone, PartialEq)]
pub struct ThrottleConfig {
    /// Whether requests are throttled at all (headers then carry real counts).
    pub enabled: bool,
    /// ARM subscription reads.
    pub arm_reads: Limit,
    /// ARM subscription writes (PUT, PATCH, POST).
    pub arm_writes: Limit,
    /// ARM subscription deletes.
    pub arm_deletes: Limit,
    /// PutVM / UpdateVM / DeleteVM, per VM.
    pub vm_write: Limit,
    /// PutVM / UpdateVM / DeleteVM, per subscription.
    pub sub_vm_write: Limit,
    /// LowCostGet, per VM.
    pub vm_get: Limit,
    /// LowCostGet, per subscription.
    pub sub_vm_get: Limit,
    /// GetOperation, per subscription.
    pub sub_get_operation: Limit,
}

impl ThrottleConfig {
    /// Azure's published limits (facts §7.4), switched on.
    pub fn azure() -> Self {
        ThrottleConfig {
            enabled: true,
            arm_reads: Limit {
                burst: 250.0,
                per_sec: 25.0,
            },
            arm_writes: Limit {
                burst: 200.0,
                per_sec: 10.0,
            },
            arm_deletes: Limit {
                burst: 200.0,
                per_sec: 10.0,
            },
            vm_write: Limit::per_minute(12.0, 4.0),
            sub_vm_write: Limit::per_minute(1500.0, 500.0),
            vm_get: Limit::per_minute(36.0, 12.0),
            sub_vm_get: Limit::per_minute(24000.0, 8000.0),
            sub_get_operation: Limit::per_minute(15000.0, 5000.0),
        }
    }
}

impl Default for ThrottleConfig {
    /// Azure's limits, switched off.
    fn default() -> Self {
        ThrottleConfig {
            enabled: false,
            ..Self::azure()
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: f64,
}

/// What one admitted request left in its buckets (for the headers).
#[derive(Debug, Clone)]
pub(crate) struct Admitted {
    arm_header: &'static str,
    arm_left: u64,
    resource: Option<String>,
}

impl Admitted {
    /// Writes the remaining-count headers (replacing the fixed ones).
    pub(crate) fn apply(&self, h: &mut HeaderMap) {
        set(h, self.arm_header, &self.arm_left.to_string());
        if self.arm_header == "x-ms-ratelimit-remaining-subscription-deletes" {
            h.remove("x-ms-ratelimit-remaining-subscription-writes");
        }
        if let Some(r) = &self.resource {
            set(h, "x-ms-ratelimit-remaining-resource", r);
        }
    }
}

/// A refused request.
#[derive(Debug, Clone)]
pub(crate) struct Refused {
    /// Simulated seconds until the empty bucket holds a token.
    pub retry_after: f64,
    /// The bucket that was empty (`arm-reads`, `UpdateVM30Min`, ...).
    pub group: String,
    /// Whether it was an ARM (subscription) bucket rather than a Compute one.
    pub arm: bool,
}

/// The buckets of one emulator.
#[derive(Debug, Default)]
pub(crate) struct Throttler {
    cfg: Mutex<ThrottleConfig>,
    buckets: Mutex<HashMap<String, Bucket>>,
    refused: std::sync::atomic::AtomicU64,
}

fn set(h: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

impl Throttler {
    pub(crate) fn new(cfg: ThrottleConfig) -> Self {
        Throttler {
            cfg: Mutex::new(cfg),
            ..Default::default()
        }
    }

    pub(crate) fn set_config(&self, cfg: ThrottleConfig) {
        *self.cfg.lock().unwrap_or_else(|p| p.into_inner()) = cfg;
        self.buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// 429s answered so far.
    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Admits (taking one token from every applicable bucket) or refuses
    /// (taking none) a request. `policy` is the `x-ms-ratelimit-remaining-resource`
    /// text of the route (`Microsoft.Compute/UpdateVM3Min;...`), `vm` the
    /// VM's lower-case id for per-VM buckets; every bucket but the per-VM
    /// ones is per subscription `sub`. `Ok(None)` when disabled.
    pub(crate) fn admit(
        &self,
        sub: &str,
        now: f64,
        method: &str,
        policy: &str,
        vm: Option<&str>,
    ) -> Result<Option<Admitted>, Refused> {
        let cfg = self.cfg.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if !cfg.enabled {
            return Ok(None);
        }
        let (arm_name, arm_header, arm_limit) = match method {
            "GET" | "HEAD" => (
                "arm-reads",
                "x-ms-ratelimit-remaining-subscription-reads",
                cfg.arm_reads,
            ),
            "DELETE" => (
                "arm-deletes",
                "x-ms-ratelimit-remaining-subscription-deletes",
                cfg.arm_deletes,
            ),
            _ => (
                "arm-writes",
                "x-ms-ratelimit-remaining-subscription-writes",
                cfg.arm_writes,
            ),
        };
        let name = policy
            .split('/')
            .nth(1)
            .and_then(|s| s.split("3Min").next())
            .unwrap_or("");
        let (vm_limit, sub_limit) = match name {
            "PutVM" | "UpdateVM" | "DeleteVM" => (Some(cfg.vm_write), Some(cfg.sub_vm_write)),
            "LowCostGet" => (Some(cfg.vm_get), Some(cfg.sub_vm_get)),
            "GetOperation" => (None, Some(cfg.sub_get_operation)),
            _ => (None, None),
        };
        // (bucket key, limit, group name for a 429, is ARM)
        let sub = sub.to_ascii_lowercase();
        let mut wanted: Vec<(String, Limit, String, bool)> = vec![(
            format!("{arm_name}/{sub}"),
            arm_limit,
            arm_name.to_string(),
            true,
        )];
        if let (Some(l), Some(vm)) = (vm_limit, vm) {
            wanted.push((format!("{name}/{vm}"), l, format!("{name}3Min"), false));
        }
        if let Some(l) = sub_limit {
            wanted.push((
                format!("{name}/sub/{sub}"),
                l,
                format!("{name}30Min"),
                false,
            ));
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let mut refused: Option<Refused> = None;
        for (key, limit, group, arm) in &wanted {
            let b = buckets.entry(key.clone()).or_insert(Bucket {
                tokens: limit.burst,
                at: now,
            });
            b.tokens = (b.tokens + (now - b.at).max(0.0) * limit.per_sec).min(limit.burst);
            b.at = now.max(b.at);
            if b.tokens < 1.0 {
                let wait = (1.0 - b.tokens) / limit.per_sec.max(1e-9);
                if refused.as_ref().is_none_or(|r| wait > r.retry_after) {
                    refused = Some(Refused {
                        retry_after: wait,
                        group: group.clone(),
                        arm: *arm,
                    });
                }
            }
        }
        if let Some(r) = refused {
            self.refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(r);
        }
        let mut left = Vec::new();
        for (key, _, group, _) in &wanted {
            if let Some(b) = buckets.get_mut(key) {
                b.tokens -= 1.0;
                left.push((group.clone(), b.tokens.max(0.0).floor() as u64));
            }
        }
        let arm_left = left.first().map(|l| l.1).unwrap_or(0);
        let resource = (left.len() > 1).then(|| {
            left[1..]
                .iter()
                .map(|(g, n)| format!("Microsoft.Compute/{g};{n}"))
                .collect::<Vec<_>>()
                .join(",")
        });
        Ok(Some(Admitted {
            arm_header,
            arm_left,
            resource,
        }))
    }
}

/// The 429 answer for a refused request (ARM's `SubscriptionRequestsThrottled`
/// or Compute's `OperationNotAllowed`/`TooManyRequests`).
pub(crate) fn too_many(clock: &super::SimClock, r: &Refused, method: &str) -> Response {
    let (secs, ms) = clock.retry_after_headers(r.retry_after);
    let body = if r.arm {
        json!({"error": {"code": "SubscriptionRequestsThrottled",
            "message": format!("Number of '{}' requests for subscription exceeded the limit. Please try again after '{secs}' seconds.",
                if method == "GET" { "read" } else { "write" })}})
    } else {
        let detail =
            json!({"operationGroup": r.group, "allowedRequestCount": 0, "measuredRequestCount": 1})
                .to_string();
        json!({"error": {"code": "OperationNotAllowed",
            "message": "The server rejected the request because too many requests have been received for this subscription.",
            "details": [{"code": "TooManyRequests", "target": r.group, "message": detail}]}})
    };
    let mut resp = Response::builder()
        .status(429)
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(Body::from(serde_json::to_vec(&body).unwrap_or_default()))
        .unwrap_or_else(|_| Response::new(Body::empty()));
    let h = resp.headers_mut();
    let id = uuid::Uuid::new_v4().to_string();
    set(h, "x-ms-request-id", &id);
    set(h, "retry-after", &secs);
    set(h, "retry-after-ms", &ms);
    if r.arm {
        let name = match method {
            "GET" | "HEAD" => "x-ms-ratelimit-remaining-subscription-reads",
            "DELETE" => "x-ms-ratelimit-remaining-subscription-deletes",
            _ => "x-ms-ratelimit-remaining-subscription-writes",
        };
        set(h, name, "0");
        set(h, "x-ms-error-code", "SubscriptionRequestsThrottled");
    } else {
        set(
            h,
            "x-ms-ratelimit-remaining-resource",
            &format!("Microsoft.Compute/{};0", r.group),
        );
        set(h, "x-ms-error-code", "OperationNotAllowed");
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_vm_update_bucket_gives_twelve_then_refuses_then_refills_four_per_minute() {
        let t = Throttler::new(ThrottleConfig::azure());
        let p = "Microsoft.Compute/UpdateVM3Min;239";
        for i in 0..12 {
            let a = t.admit("s", 0.0, "POST", p, Some("vm1")).unwrap().unwrap();
            assert_eq!(
                a.resource.as_deref().unwrap().split(',').next().unwrap(),
                format!("Microsoft.Compute/UpdateVM3Min;{}", 11 - i)
            );
        }
        let r = t.admit("s", 0.0, "POST", p, Some("vm1")).unwrap_err();
        assert_eq!(r.group, "UpdateVM3Min");
        assert!((r.retry_after - 15.0).abs() < 1e-6, "{r:?}");
        // Another VM is unaffected; after 15 s one more token.
        assert!(t.admit("s", 0.0, "POST", p, Some("vm2")).is_ok());
        assert!(t.admit("s", 15.0, "POST", p, Some("vm1")).is_ok());
        assert!(t.admit("s", 15.0, "POST", p, Some("vm1")).is_err());
        assert_eq!(t.refused(), 2);
    }

    #[test]
    fn arm_reads_burst_250_then_25_per_second_and_off_by_default() {
        let t = Throttler::new(ThrottleConfig::azure());
        for _ in 0..250 {
            t.admit("s", 0.0, "GET", "", None).unwrap();
        }
        let r = t.admit("s", 0.0, "GET", "", None).unwrap_err();
        assert!(r.arm && (r.retry_after - 0.04).abs() < 1e-9);
        for _ in 0..25 {
            t.admit("s", 1.0, "GET", "", None).unwrap();
        }
        assert!(t.admit("s", 1.0, "GET", "", None).is_err());
        // Another subscription has its own buckets.
        assert!(t.admit("other", 1.0, "GET", "", None).is_ok());
        let off = Throttler::new(ThrottleConfig::default());
        for _ in 0..1000 {
            assert!(off.admit("s", 0.0, "GET", "", None).unwrap().is_none());
        }
    }
}
