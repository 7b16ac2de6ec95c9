//! Wall clock for the edge (session expiry, HMAC epochs, request timestamps).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Unix time for the HTTP edge. The sans-IO modules take `now` as an argument instead.
pub trait Clock: Send + Sync {
    /// Seconds since the Unix epoch.
    fn unix_now(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn unix_now(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// The system clock shifted by an adjustable offset: follows a sandbox's virtual clock in
/// tests (`POST /_sim/clock`).
#[derive(Debug, Clone, Default)]
pub struct OffsetClock(Arc<AtomicI64>);

impl OffsetClock {
    /// A clock at the system time.
    pub fn new() -> OffsetClock {
        OffsetClock::default()
    }
    /// Moves the clock forward by `secs`.
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::Relaxed);
    }
}

impl Clock for OffsetClock {
    fn unix_now(&self) -> i64 {
        SystemClock.unix_now() + self.0.load(Ordering::Relaxed)
    }
}
