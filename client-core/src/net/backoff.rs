//! Reconnection delays: exponential backoff with full jitter.
//!
//! Full jitter (a uniformly random delay between zero and the exponential
//! ceiling) spreads the reconnects of many clients after a relay restart,
//! instead of having them return in synchronised waves.

use std::time::Duration;

/// Delay policy for reconnecting to the relay. Pure: the caller supplies the
/// randomness, so the policy is testable without clocks or sockets.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Default for Backoff {
    /// 250 ms doubling up to 30 s.
    fn default() -> Self {
        Self::new(Duration::from_millis(250), Duration::from_secs(30))
    }
}

impl Backoff {
    /// A policy whose ceiling starts at `base` and doubles up to `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            attempt: 0,
        }
    }

    /// The ceiling for the current attempt: `min(max, base * 2^attempt)`.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The delay before the next attempt, uniformly in `[0, ceiling]` as
    /// chosen by `random` (any `u64`), and moves to the next attempt.
    pub fn next_delay(&mut self, random: u64) -> Duration {
        let ceiling = self.ceiling().as_millis() as u64;
        self.attempt = self.attempt.saturating_add(1);
        Duration::from_millis(random % (ceiling + 1))
    }

    /// Call after a successful connection: the next failure starts over.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_then_saturates() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let ceilings: Vec<u64> = (0..6)
            .map(|_| {
                let c = b.ceiling().as_millis() as u64;
                b.next_delay(0);
                c
            })
            .collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        for _ in 0..100 {
            b.next_delay(u64::MAX);
        }
        assert_eq!(b.ceiling(), Duration::from_secs(1));
    }

    #[test]
    fn delays_stay_within_the_ceiling_and_reset_starts_over() {
        let mut b = Backoff::default();
        for r in [0, 1, 249, 250, 251, u64::MAX] {
            let mut fresh = b.clone();
            assert!(fresh.next_delay(r) <= Duration::from_millis(250));
        }
        b.next_delay(7);
        b.next_delay(7);
        assert_eq!(b.ceiling(), Duration::from_secs(1));
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(250));
    }
}
