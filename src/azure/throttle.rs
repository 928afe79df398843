//! Client-side self-throttling: per-subscription token buckets for ARM
//! reads, writes and deletes (Azure's limits, facts §7.4), kept in step with
//! the `x-ms-ratelimit-remaining-subscription-*` headers, so the client slows
//! down before the server answers 429 rather than after.
//!
//! - Before each request one token is taken from the bucket of its kind; an
//!   empty bucket waits until it refills (`per_sec × time_scale` per real
//!   second; `time_scale` is 1 against Azure and the emulator's scale
//!   against the emulator).
//! - After each answer the bucket is lowered to the remaining count the
//!   server reported (the server also counts other clients of the
//!   subscription), never raised.
//! - When `x-ms-ratelimit-remaining-resource` reports a Compute policy at 0
//!   for a VM, the next request to that VM waits one refill interval of the
//!   per-VM bucket (15 s: 4 per minute).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use reqwest::Method;
use reqwest::header::HeaderMap;

/// Client throttling knobs (part of [`super::AzureConfig`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ClientThrottleConfig {
    /// Whether the client self-throttles (default true).
    pub enabled: bool,
    /// Server seconds per real second (1 for Azure; the emulator's time scale).
    pub time_scale: f64,
    /// Reads: (burst, per second).
    pub reads: (f64, f64),
    /// Writes: (burst, per second).
    pub writes: (f64, f64),
    /// Deletes: (burst, per second).
    pub deletes: (f64, f64),
    /// Seconds a VM's requests pause after a Compute policy reached 0.
    pub resource_pause_secs: f64,
}

impl Default for ClientThrottleConfig {
    fn default() -> Self {
        ClientThrottleConfig {
            enabled: true,
            time_scale: 1.0,
            reads: (250.0, 25.0),
            writes: (200.0, 10.0),
            deletes: (200.0, 10.0),
            resource_pause_secs: 15.0,
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug)]
struct State {
    buckets: [Bucket; 3],
    paused: HashMap<String, Instant>,
}

/// The throttle of one client.
#[derive(Debug)]
pub(crate) struct ClientThrottle {
    cfg: ClientThrottleConfig,
    state: Mutex<State>,
}

fn kind(m: &Method) -> usize {
    if *m == Method::GET || *m == Method::HEAD {
        0
    } else if *m == Method::DELETE {
        2
    } else {
        1
    }
}

const HEADERS: [&str; 3] = [
    "x-ms-ratelimit-remaining-subscription-reads",
    "x-ms-ratelimit-remaining-subscription-writes",
    "x-ms-ratelimit-remaining-subscription-deletes",
];

/// The VM part (`/subscriptions/../virtualMachines/NAME`) of a path, lower case.
fn vm_of(path: &str) -> Option<String> {
    let low = path.to_ascii_lowercase();
    let i = low.find("/virtualmachines/")? + "/virtualmachines/".len();
    let end = low[i..].find('/').map(|e| i + e).unwrap_or(low.len());
    Some(low[..end].to_string())
}

impl ClientThrottle {
    pub(crate) fn new(cfg: ClientThrottleConfig) -> Self {
        let now = Instant::now();
        let b = |l: (f64, f64)| Bucket {
            tokens: l.0,
            at: now,
        };
        ClientThrottle {
            state: Mutex::new(State {
                buckets: [b(cfg.reads), b(cfg.writes), b(cfg.deletes)],
                paused: HashMap::new(),
            }),
            cfg,
        }
    }

    fn limit(&self, k: usize) -> (f64, f64) {
        [self.cfg.reads, self.cfg.writes, self.cfg.deletes][k]
    }

    fn refill(&self, b: &mut Bucket, k: usize, now: Instant) {
        let (burst, rate) = self.limit(k);
        let dt = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + dt * rate * self.cfg.time_scale.max(1e-9)).min(burst);
        b.at = now;
    }

    /// Waits until a request of `method` to `path` may be sent, and takes its token.
    pub(crate) async fn acquire(&self, method: &Method, path: &str) {
        if !self.cfg.enabled {
            return;
        }
        let k = kind(method);
        let vm = vm_of(path);
        loop {
            let wait = {
                let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                let pause = vm
                    .as_ref()
                    .and_then(|v| s.paused.get(v).copied())
                    .filter(|until| *until > now);
                if let Some(until) = pause {
                    until - now
                } else {
                    if let Some(v) = &vm {
                        s.paused.remove(v);
                    }
                    let b = &mut s.buckets[k];
                    self.refill(b, k, now);
                    if b.tokens >= 1.0 {
                        b.tokens -= 1.0;
                        return;
                    }
                    let rate = self.limit(k).1 * self.cfg.time_scale.max(1e-9);
                    Duration::from_secs_f64(((1.0 - b.tokens) / rate).max(1e-6))
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Lowers the buckets to what the server reports remaining.
    pub(crate) fn observe(&self, method: &Method, path: &str, h: &HeaderMap) {
        if !self.cfg.enabled {
            return;
        }
        let k = kind(method);
        let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        for (i, name) in HEADERS.iter().enumerate() {
            if i != k {
                continue;
            }
            if let Some(left) = get(name).and_then(|v| v.trim().parse::<f64>().ok()) {
                let b = &mut s.buckets[i];
                self.refill(b, i, now);
                b.tokens = b.tokens.min(left);
            }
        }
        let exhausted = h
            .get_all("x-ms-ratelimit-remaining-resource")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|p| p.rsplit_once(';'))
            .any(|(_, n)| n.trim().parse::<u64>().ok() == Some(0));
        if exhausted && let Some(vm) = vm_of(path) {
            let pause = Duration::from_secs_f64(
                self.cfg.resource_pause_secs / self.cfg.time_scale.max(1e-9),
            );
            s.paused.insert(vm, now + pause);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn empty_bucket_waits_for_refill_and_headers_lower_it() {
        let t = ClientThrottle::new(ClientThrottleConfig {
            reads: (2.0, 1.0),
            ..Default::default()
        });
        let started = tokio::time::Instant::now();
        let p = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/a";
        t.acquire(&Method::GET, p).await;
        t.acquire(&Method::GET, p).await;
        assert!(started.elapsed() < Duration::from_millis(10));
        let mut h = HeaderMap::new();
        h.insert(HEADERS[1], "0".parse().unwrap());
        t.observe(&Method::PUT, p, &h);
        // Writes were lowered to 0 by the header: the next write waits ~0.1 s.
        let w = tokio::time::Instant::now();
        t.acquire(&Method::PUT, p).await;
        let waited = w.elapsed();
        assert!(
            waited >= Duration::from_millis(99) && waited < Duration::from_millis(200),
            "{waited:?}"
        );
        // A third read waits for the rest of one token (0.9 s: 0.1 s refilled meanwhile).
        let w = tokio::time::Instant::now();
        t.acquire(&Method::GET, p).await;
        assert!(
            w.elapsed() >= Duration::from_millis(899),
            "{:?}",
            w.elapsed()
        );
        assert_eq!(
            vm_of(&format!("{p}/extensions/x")).unwrap(),
            p.to_ascii_lowercase()
        );
    }
}
