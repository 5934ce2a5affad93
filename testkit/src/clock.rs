//! A clock for tests that must move time forward (prekey rotation, grace
//! periods): the system clock shifted by a settable number of seconds, set
//! as `ClientConfig::clock`. It keeps running, so retries and timeouts
//! behave as with the system clock.

use std::sync::atomic::{AtomicU64, Ordering};

use tern_core::{Clock, SystemClock};

/// The system clock moved forward by [`Self::shift_to`] seconds.
#[derive(Debug, Default)]
pub struct ShiftedClock {
    shift_secs: AtomicU64,
}

impl ShiftedClock {
    /// From now on, read `secs` seconds later than the system clock.
    pub fn shift_to(&self, secs: u64) {
        self.shift_secs.store(secs, Ordering::Relaxed);
    }
}

impl Clock for ShiftedClock {
    fn now_ms(&self) -> i64 {
        let shift = i64::try_from(self.shift_secs.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
        SystemClock
            .now_ms()
            .saturating_add(shift.saturating_mul(1000))
    }
}
