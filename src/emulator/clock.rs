//! Simulated time for the emulator.
//!
//! Contract: `sim_now = real_elapsed_since_start * time_scale`, in seconds.
//! Every duration the emulator models (decryption, deallocate, copy
//! bandwidth, NIC reservation, SAS expiry, Retry-After) is expressed in
//! simulated seconds and converted with [`SimClock::to_real`] only where a
//! real wait happens (a delayed response) or a header is written.
//! Uses `tokio::time::Instant`, so a test with paused tokio time drives the
//! emulator's clock too.

use std::time::Duration;

/// A shared, cheap-to-copy simulated clock.
#[derive(Debug, Clone, Copy)]
pub struct SimClock {
    start: tokio::time::Instant,
    scale: f64,
}

impl SimClock {
    /// A clock starting now, running `scale` simulated seconds per real second.
    pub fn new(scale: f64) -> Self {
        let scale = if scale.is_finite() && scale > 0.0 {
            scale
        } else {
            1.0
        };
        SimClock {
            start: tokio::time::Instant::now(),
            scale,
        }
    }

    /// Simulated seconds since the emulator started.
    pub fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64() * self.scale
    }

    /// Simulated seconds per real second.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// The real duration that `sim_secs` simulated seconds take.
    pub fn to_real(&self, sim_secs: f64) -> Duration {
        Duration::from_secs_f64((sim_secs.max(0.0)) / self.scale)
    }

    /// Sleeps (really) for `sim_secs` simulated seconds.
    pub async fn sleep(&self, sim_secs: f64) {
        tokio::time::sleep(self.to_real(sim_secs)).await;
    }

    /// `Retry-After` (integer real seconds, rounded up, at least 1 when
    /// `sim_secs` > 0) and `retry-after-ms` (real milliseconds) for a delay
    /// of `sim_secs` simulated seconds, as contracts.md specifies.
    pub fn retry_after_headers(&self, sim_secs: f64) -> (String, String) {
        let real = self.to_real(sim_secs).as_secs_f64();
        let secs = if real > 0.0 {
            real.ceil().max(1.0) as u64
        } else {
            0
        };
        let ms = (real * 1000.0).ceil() as u64;
        (secs.to_string(), ms.to_string())
    }
}
