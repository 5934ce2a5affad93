//! Wall-clock time, injected: the engine never reads the system clock itself.
//!
//! Every "now" of the client — message timestamps, outbox retry schedules,
//! chat creation times, prekey rotation — comes from the [`Clock`] set on
//! [`ClientConfig::clock`](crate::client::ClientConfig::clock)
//! ([`SystemClock`] by default), so that a host or a test can run the client
//! on a controlled or shifted clock. Waiting (timeouts, reconnect backoff,
//! the outbox tick) still uses real durations: a clock that stands still
//! keeps retried entries waiting until it moves.

/// A source of the current time.
pub trait Clock: Send + Sync {
    /// Now, in milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;

    /// Now, in whole seconds since the Unix epoch (0 before the epoch).
    fn now_secs(&self) -> u64 {
        u64::try_from(self.now_ms() / 1000).unwrap_or(0)
    }
}

/// The operating system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(i64);

    impl Clock for Fixed {
        fn now_ms(&self) -> i64 {
            self.0
        }
    }

    #[test]
    fn seconds_are_whole_and_never_negative() {
        assert_eq!(Fixed(1_999).now_secs(), 1);
        assert_eq!(Fixed(-5_000).now_secs(), 0);
        assert!(SystemClock.now_secs() > 1_700_000_000);
    }
}
