//! Repeated crashes: the relay is killed with SIGKILL and restarted again
//! and again while `tern-loadgen --mode verify` keeps sending; at the end
//! the load generator checks that every acknowledged message is stored
//! exactly once for its recipient.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use tern_testkit::{RelayProcess, VerifyRun, relay_binary};

/// Crashes during the load.
const KILLS: usize = 20;
/// Time between crashes: long enough for clients to reconnect and send.
const UPTIME: Duration = Duration::from_millis(1500);
/// Devices sending (in pairs).
const DEVICES: usize = 8;

#[test]
fn twenty_sigkills_under_load_lose_and_duplicate_nothing_acknowledged() {
    let mut relay = RelayProcess::start(relay_binary());
    let load_secs = (UPTIME * KILLS as u32).as_secs() + 4;
    let load = VerifyRun::start(&[relay.addr], &relay.fingerprint, DEVICES, load_secs);
    // Let registration and the first sends happen on a healthy relay.
    std::thread::sleep(Duration::from_secs(2));
    let started = Instant::now();
    for _ in 0..KILLS {
        std::thread::sleep(UPTIME);
        relay.restart();
    }
    let crashed_for = started.elapsed();
    let report = load.finish();
    println!(
        "{KILLS} SIGKILLs and restarts in {crashed_for:.1?}\n{}",
        report.text
    );
    assert_eq!((report.duplicates, report.lost), (0, 0));
    assert!(
        report.acknowledged > 100,
        "the load kept sending: {report:?}"
    );
}
