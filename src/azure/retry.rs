//! Per-request retries over the `backoff` crate (the user's choice; it is
//! flagged unmaintained, RUSTSEC-2025-0012, so it is used here and nowhere
//! else, and swapping it for `backon` is a one-file change).
//!
//! Contract:
//! - a server-requested delay (`retry-after-ms`, `x-ms-retry-after-ms`,
//!   `Retry-After` seconds or HTTP date) is slept exactly, with no minimum
//!   above it and no jitter;
//! - otherwise exponential backoff with jitter from `base_delay` to `max_delay`;
//! - attempts are counted here (backoff's own budget is bypassed whenever a
//!   Retry-After is given, crates.md §3.3), and a Retry-After longer than
//!   `max_retry_after` ends the retries at once;
//! - time is tokio's, so `tokio::time::pause` drives every sleep.

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use reqwest::header::HeaderMap;

use super::RetryConfig;

/// backoff's clock over tokio time (crates.md §3.3 trap 2).
#[derive(Debug, Default, Clone, Copy)]
pub struct TokioClock;

impl backoff::Clock for TokioClock {
    fn now(&self) -> std::time::Instant {
        tokio::time::Instant::now().into_std()
    }
}

/// What one attempt concluded.
pub enum Attempt<T, E> {
    /// Done (success, or a failure not worth retrying).
    Done(Result<T, E>),
    /// Failed; retry after the server's delay if given, else back off.
    Retry(E, Option<Duration>),
}

/// Runs `op` until it is done or the budget is spent; returns the last error
/// then. `on_retry(attempt, delay)` is told about every retry (for logs and
/// statistics).
pub async fn with_retries<T, E, F, Fut>(
    cfg: &RetryConfig,
    mut op: F,
    on_retry: impl Fn(u32, Duration, &E),
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Attempt<T, E>>,
{
    let policy: backoff::exponential::ExponentialBackoff<TokioClock> =
        backoff::exponential::ExponentialBackoff {
            current_interval: cfg.base_delay,
            initial_interval: cfg.base_delay,
            randomization_factor: 0.3,
            multiplier: 2.0,
            max_interval: cfg.max_delay,
            start_time: TokioClock.now_std(),
            max_elapsed_time: None,
            clock: TokioClock,
        };
    let attempts = AtomicU32::new(0);
    let max = cfg.max_attempts.max(1);
    let max_after = cfg.max_retry_after;
    backoff::future::retry_notify(
        policy,
        || {
            let n = attempts.fetch_add(1, Ordering::Relaxed) + 1;
            let fut = op();
            async move {
                match fut.await {
                    Attempt::Done(Ok(v)) => Ok(v),
                    Attempt::Done(Err(e)) => Err(backoff::Error::permanent(e)),
                    Attempt::Retry(e, _) if n >= max => Err(backoff::Error::permanent(e)),
                    Attempt::Retry(e, Some(after)) if after > max_after => {
                        Err(backoff::Error::permanent(e))
                    }
                    Attempt::Retry(e, Some(after)) => Err(backoff::Error::retry_after(e, after)),
                    Attempt::Retry(e, None) => Err(backoff::Error::transient(e)),
                }
            }
        },
        |e: E, d: Duration| on_retry(attempts.load(Ordering::Relaxed), d, &e),
    )
    .await
}

impl TokioClock {
    fn now_std(&self) -> std::time::Instant {
        tokio::time::Instant::now().into_std()
    }
}

/// The server-requested delay in `headers`, in the order the Azure SDKs use:
/// `retry-after-ms`, `x-ms-retry-after-ms`, then `Retry-After` (delta
/// seconds, possibly fractional, or an HTTP date).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    for name in ["retry-after-ms", "x-ms-retry-after-ms"] {
        if let Some(ms) = get(name)
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
        {
            return Some(Duration::from_secs_f64(ms / 1000.0));
        }
    }
    let v = get("retry-after")?;
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let date =
        time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc2822).ok()?;
    let delta = date - time::OffsetDateTime::now_utc();
    Some(Duration::try_from(delta).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn retry_after_header_forms() {
        assert_eq!(
            retry_after(&headers(&[("retry-after", "17")])),
            Some(Duration::from_secs(17))
        );
        assert_eq!(
            retry_after(&headers(&[
                ("retry-after", "17"),
                ("retry-after-ms", "240")
            ])),
            Some(Duration::from_millis(240))
        );
        assert_eq!(
            retry_after(&headers(&[("x-ms-retry-after-ms", "5")])),
            Some(Duration::from_millis(5))
        );
        assert_eq!(
            retry_after(&headers(&[(
                "retry-after",
                "Wed, 21 Oct 2015 07:28:00 GMT"
            )])),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")])), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn honours_retry_after_exactly_and_counts_attempts() {
        let cfg = RetryConfig {
            max_attempts: 4,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(3600),
        };
        let start = tokio::time::Instant::now();
        let delays = Mutex::new(Vec::new());
        let calls = AtomicU32::new(0);
        let r: Result<(), &str> = with_retries(
            &cfg,
            || {
                calls.fetch_add(1, Ordering::Relaxed);
                async { Attempt::Retry("throttled", Some(Duration::from_secs(1200))) }
            },
            |_, d, _| delays.lock().unwrap().push(d),
        )
        .await;
        assert_eq!(r, Err("throttled"));
        assert_eq!(
            calls.load(Ordering::Relaxed),
            4,
            "max_attempts bounds even Retry-After retries"
        );
        assert_eq!(*delays.lock().unwrap(), vec![Duration::from_secs(1200); 3]);
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(3600),
            "slept exactly 3 x 1200 s, nothing more"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn too_long_retry_after_gives_up_and_permanent_stops() {
        let cfg = RetryConfig {
            max_retry_after: Duration::from_secs(60),
            ..RetryConfig::default()
        };
        let calls = AtomicU32::new(0);
        let r: Result<(), &str> = with_retries(
            &cfg,
            || {
                calls.fetch_add(1, Ordering::Relaxed);
                async { Attempt::Retry("x", Some(Duration::from_secs(61))) }
            },
            |_, _, _| {},
        )
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        let calls = AtomicU32::new(0);
        let r: Result<u8, &str> = with_retries(
            &cfg,
            || {
                let n = calls.fetch_add(1, Ordering::Relaxed);
                async move {
                    if n < 2 {
                        Attempt::Retry("flaky", None)
                    } else {
                        Attempt::Done(Ok(7))
                    }
                }
            },
            |_, _, _| {},
        )
        .await;
        assert_eq!(r, Ok(7));
        assert_eq!(calls.load(Ordering::Relaxed), 3);
    }
}
