//! A client killed with SIGKILL at every point of a send — before its local
//! commit, between the commit and the relay's ✓, after it — again and
//! again: every message it committed is sent exactly once, by the next run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{PASSPHRASE, Relay, User, tern_bin, texts};

/// Sends killed part-way.
const ROUNDS: u32 = 16;

/// Starts `tern send bob TEXT` as `user` and kills it with SIGKILL after
/// `after`; returns whether it finished first.
fn send_killed_after(user: &User, text: &str, after: Duration) -> bool {
    let mut child = Command::new(tern_bin())
        .arg("--home")
        .arg(user.home())
        .args(["send", "bob", text])
        .env("TERN_PASSPHRASE", PASSPHRASE)
        .env_remove("TERN_HOME")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    let finished = child.try_wait().unwrap().is_some();
    let _ = child.kill();
    child.wait().unwrap();
    finished
}

/// The texts `user` has stored in its chat with `peer`, sent by `from`.
fn history_from(user: &User, peer: &str, from: &str) -> Vec<String> {
    let records = user.json(&["history", peer, "--offline", "--limit", "1000"]);
    let sent: Vec<_> = records.into_iter().filter(|r| r["from"] == from).collect();
    texts(&sent)
}

#[test]
fn sends_killed_at_any_point_are_sent_exactly_once() {
    let relay = Relay::start();
    let (alice, bob) = relay.pair();
    // How long a whole send takes here, to spread the kills over it.
    let started = Instant::now();
    alice.ok(&["send", "bob", "warm-up"]);
    let whole = started.elapsed();

    let mut finished = 0;
    for round in 0..ROUNDS {
        let after = whole.mul_f64(f64::from(round + 1) / f64::from(ROUNDS));
        finished += usize::from(send_killed_after(&alice, &format!("killed {round}"), after));
    }
    // An ordinary run sends what the killed runs committed, then its own.
    alice.ok(&["send", "bob", "last"]);

    let committed = history_from(&alice, "bob", "alice");
    let mut received = Vec::new();
    common::eventually("every committed message at bob", || {
        received.extend(texts(&bob.json(&["recv"])));
        (received.len() >= committed.len()).then_some(())
    });
    // Anything sent twice would arrive by now.
    std::thread::sleep(Duration::from_millis(500));
    received.extend(texts(&bob.json(&["recv"])));

    let mut times: HashMap<&str, usize> = HashMap::new();
    for text in &received {
        *times.entry(text.as_str()).or_default() += 1;
    }
    let duplicates = times.values().filter(|n| **n > 1).count();
    let lost = committed
        .iter()
        .filter(|t| !times.contains_key(t.as_str()))
        .count();
    println!(
        "client kills: {ROUNDS} sends killed over {whole:.1?} ({finished} had finished), committed {} (warm-up and last included), delivered {}, duplicates {duplicates}, lost {lost}",
        committed.len(),
        received.len()
    );
    assert_eq!((duplicates, lost), (0, 0));
    assert_eq!(
        received.len(),
        committed.len(),
        "nothing arrives that was not committed"
    );
    assert!(
        committed.len() > 2 + finished,
        "some killed sends had committed before their ✓: {committed:?}"
    );
}
