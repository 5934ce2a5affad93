//! CPU time of the relay and of the load generator during a run, read from
//! Linux's `/proc`. On a machine where both share the cores, what one
//! message costs each side says more than the throughput alone: it is what
//! tells a relay limit from a load-generator limit.

use std::collections::BTreeMap;

/// Microseconds per clock tick in `/proc/*/stat` (Linux's USER_HZ is 100).
const MICROS_PER_TICK: u64 = 10_000;

/// CPU time (µs, user + system) of one process, summed per thread name.
#[derive(Default)]
pub struct Usage(BTreeMap<String, u64>);

impl Usage {
    /// Reads every thread of process `pid` ("self" for this one). Empty
    /// where `/proc` cannot be read.
    pub fn of(pid: &str) -> Self {
        let mut by_name = BTreeMap::new();
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return Self(by_name);
        };
        for task in tasks.flatten() {
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            if let Some((name, ticks)) = thread_ticks(&stat) {
                *by_name.entry(name).or_insert(0) += ticks * MICROS_PER_TICK;
            }
        }
        Self(by_name)
    }

    /// The time spent since `earlier`, per thread name.
    pub fn since(&self, earlier: &Usage) -> Usage {
        let spent = self.0.iter().map(|(name, &now)| {
            let before = earlier.0.get(name).copied().unwrap_or(0);
            (name.clone(), now.saturating_sub(before))
        });
        Usage(spent.collect())
    }

    fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// "41.2 µs (tern-log-writer 14.0, tokio-rt-worker 27.2)" per message.
    fn per_message(&self, messages: u64, by_thread: bool) -> String {
        let per = |us: u64| us as f64 / messages.max(1) as f64;
        let mut out = format!("{:.1} µs", per(self.total()));
        if by_thread {
            let threads: Vec<String> = (self.0.iter())
                .filter(|(_, us)| **us > 0)
                .map(|(name, us)| format!("{name} {:.1}", per(*us)))
                .collect();
            out.push_str(&format!(" ({})", threads.join(", ")));
        }
        out
    }
}

/// CPU time of the relay and of this process when a run started.
pub struct Meter {
    relay_pid: String,
    relay: Usage,
    loadgen: Usage,
}

impl Meter {
    /// Takes the starting readings of relay process `relay_pid` and of
    /// this process.
    pub fn start(relay_pid: u32) -> Self {
        let relay_pid = relay_pid.to_string();
        Self {
            relay: Usage::of(&relay_pid),
            loadgen: Usage::of("self"),
            relay_pid,
        }
    }

    /// What the run cost both sides since [`Meter::start`].
    pub fn finish(&self) -> RunCpu {
        RunCpu {
            relay: Usage::of(&self.relay_pid).since(&self.relay),
            loadgen: Usage::of("self").since(&self.loadgen),
        }
    }
}

/// The CPU time a run cost the relay and the load generator.
pub struct RunCpu {
    /// Relay threads.
    pub relay: Usage,
    /// This process.
    pub loadgen: Usage,
}

impl RunCpu {
    /// Prints the cost per accepted message and the rate at which the
    /// machine's cores would be saturated by relay and load generator
    /// together, and by the relay alone.
    pub fn report(&self, messages: u64) {
        let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
        let rate = |us: u64| cores * 1e6 * messages as f64 / us.max(1) as f64;
        println!(
            "cpu per accepted message: relay {}; tern-loadgen {}",
            self.relay.per_message(messages, true),
            self.loadgen.per_message(messages, false)
        );
        println!(
            "at that cost {cores} cores saturate at {:.0} msgs/s with the load generator beside the relay, {:.0} msgs/s for the relay alone",
            rate(self.relay.total() + self.loadgen.total()),
            rate(self.relay.total())
        );
    }
}

/// Thread name and user + system ticks from a `/proc/<pid>/task/<tid>/stat`
/// line. The name is in parentheses and may itself contain them.
fn thread_ticks(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_owned();
    // After the name: state, then 10 fields, then utime and stime.
    let mut fields = stat.get(close + 1..)?.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((name, utime + stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_name_and_ticks_even_with_parentheses_in_the_name() {
        let stat = "42 (odd) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 17 0 0 20 0 5 0";
        assert_eq!(thread_ticks(stat), Some(("odd) name".to_owned(), 267)));
        assert_eq!(thread_ticks("42 (cut"), None);
        assert_eq!(thread_ticks("42 (short) S 1 2"), None);
    }

    #[test]
    fn usage_since_is_per_thread_name() {
        let before = Usage(BTreeMap::from([("w".to_owned(), 100), ("x".to_owned(), 5)]));
        let after = Usage(BTreeMap::from([
            ("w".to_owned(), 350),
            ("y".to_owned(), 40),
        ]));
        let spent = after.since(&before);
        assert_eq!(spent.0.get("w"), Some(&250));
        assert_eq!(spent.0.get("y"), Some(&40));
        assert_eq!(spent.total(), 290);
        assert_eq!(spent.per_message(10, true), "29.0 µs (w 25.0, y 4.0)");
    }

    #[test]
    fn reads_the_threads_of_this_process() {
        assert!(!Usage::of("self").0.is_empty());
        assert!(Usage::of("no-such-process").0.is_empty());
    }
}
