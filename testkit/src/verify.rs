//! `tern-loadgen --mode verify` as a child process: devices in pairs keep
//! sending through whatever a test does to the relay (or the nodes of a
//! cluster), then the load generator checks that every acknowledged
//! message is stored exactly once for its recipient.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use crate::loadgen_binary;

/// A running verify load.
pub struct VerifyRun {
    child: Child,
}

/// What a verify load reported.
#[derive(Debug)]
pub struct VerifyReport {
    /// Its whole output.
    pub text: String,
    /// Messages the relay acknowledged.
    pub acknowledged: u64,
    /// Acknowledged messages stored more than once.
    pub duplicates: u64,
    /// Acknowledged messages not stored.
    pub lost: u64,
}

impl VerifyRun {
    /// Starts `devices` devices sending for `secs` seconds through the
    /// relay nodes `relays` (device `i` starts on node `i mod n` and moves
    /// on when its node is down), all presenting `fingerprint`.
    ///
    /// # Panics
    /// When the load generator cannot be started.
    pub fn start(relays: &[SocketAddr], fingerprint: &str, devices: usize, secs: u64) -> Self {
        let relays: Vec<String> = relays.iter().map(SocketAddr::to_string).collect();
        let child = Command::new(loadgen_binary())
            .args(["--mode", "verify", "--relay"])
            .arg(relays.join(","))
            .args(["--fingerprint", fingerprint])
            .args(["--devices", &devices.to_string()])
            .args(["--duration", &secs.to_string()])
            .args(["--threads", "1", "--endpoints", "2"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Self { child }
    }

    /// Waits for the load to end and reads its report.
    ///
    /// # Panics
    /// When the load generator failed (it fails when a message was lost
    /// or duplicated) or printed no counts.
    pub fn finish(mut self) -> VerifyReport {
        let status = self.child.wait().unwrap();
        let mut text = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            out.read_to_string(&mut text).unwrap();
        }
        assert!(status.success(), "tern-loadgen verify failed:\n{text}");
        let counts = text
            .lines()
            .find(|l| l.contains("acknowledged="))
            .expect("a counts line");
        let field = |name: &str| -> u64 {
            counts
                .split_whitespace()
                .find_map(|f| f.strip_prefix(name))
                .and_then(|n| n.parse().ok())
                .expect("every count in the counts line")
        };
        VerifyReport {
            acknowledged: field("acknowledged="),
            duplicates: field("duplicates="),
            lost: field("lost="),
            text,
        }
    }
}
