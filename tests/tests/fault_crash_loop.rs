//! Repeated crashes: the relay is killed with SIGKILL and restarted again
//! and again while `tern-loadgen --mode verify` keeps sending; at the end
//! the load generator checks that every acknowledged message is stored
//! exactly once for its recipient.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tern_testkit::{RelayProcess, loadgen_binary, relay_binary};

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
    let mut loadgen = Command::new(loadgen_binary())
        .args(["--mode", "verify", "--relay"])
        .arg(relay.addr.to_string())
        .args(["--fingerprint", &relay.fingerprint])
        .args(["--devices", &DEVICES.to_string()])
        .args(["--duration", &load_secs.to_string()])
        .args(["--threads", "1", "--endpoints", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // Let registration and the first sends happen on a healthy relay.
    std::thread::sleep(Duration::from_secs(2));
    let started = Instant::now();
    for _ in 0..KILLS {
        std::thread::sleep(UPTIME);
        relay.restart();
    }
    let crashed_for = started.elapsed();
    let status = loadgen.wait().unwrap();
    let mut report = String::new();
    loadgen
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut report)
        .unwrap();
    println!("{KILLS} SIGKILLs and restarts in {crashed_for:.1?}\n{report}");
    assert!(status.success(), "tern-loadgen verify failed:\n{report}");
    let counts = report
        .lines()
        .find(|l| l.contains("acknowledged="))
        .expect("a counts line");
    assert!(counts.contains("duplicates=0 lost=0"), "{counts}");
    let acknowledged: u64 = counts
        .split_whitespace()
        .find_map(|field| field.strip_prefix("acknowledged="))
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(acknowledged > 100, "the load kept sending: {counts}");
}
