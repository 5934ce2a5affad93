//! The one test kit for Tern's tests and load generator.
//!
//! - [`relay`]: a relay on 127.0.0.1 with a temporary data directory, served
//!   in-process ([`TestRelay`]) or as the real binary in a child process
//!   ([`RelayProcess`], which can also be killed with SIGKILL and restarted);
//! - [`account`]: accounts with their account and device keys, signed device
//!   lists, and registration through tern-core's real relay connection;
//! - [`raw`]: a low-level protocol client ([`raw::RawClient`]) for tests
//!   that must put exactly chosen frames on the wire, and for the load
//!   generator;
//! - [`client`]: tern-core [`tern_core::Client`]s with stores in temporary
//!   directories;
//! - [`clock`]: a clock tests can move days ahead;
//! - [`faults`]: faults injected between a client and the relay (a lost
//!   `Send` ack, an upload cut off mid-way) through tern-core's relay layer;
//! - [`lossy`]: a lossy link, an in-process UDP proxy between clients and the
//!   relay that drops, duplicates, delays and reorders datagrams;
//! - [`ca`]: a certificate authority for TLS tests;
//! - [`services`]: throw-away PostgreSQL and NATS servers on free ports
//!   ([`PostgresServer`], [`NatsServer`]) that tests can kill and restart.
//!
//! Helpers meant for tests fail the calling test by panicking (with the
//! reason) instead of returning errors, and bound every network wait with
//! [`guard`]; the fallible parts of [`raw`] return errors instead, so the
//! load generator can use them, and so do the [`services`] (`io::Result`,
//! their own waits bounded at 30 s).

pub mod account;
pub mod ca;
pub mod client;
pub mod clock;
pub mod faults;
pub mod lossy;
pub mod raw;
pub mod relay;
pub mod services;
pub mod verify;

use std::time::Duration;

pub use account::{Account, TestKey};
pub use ca::TestCa;
pub use client::{TestClient, test_key};
pub use clock::ShiftedClock;
pub use faults::Faults;
pub use lossy::{LinkProfile, LinkStats, LossyLink};
pub use relay::{RelayProcess, TestRelay, loadgen_binary, relay_binary};
pub use services::{NatsServer, PostgresServer};
pub use tern_core::net::RelayAddress;
pub use verify::{VerifyReport, VerifyRun};

/// Deadlock guard for every network wait in tests (never a timing assert).
pub const GUARD: Duration = Duration::from_secs(30);

/// Runs `f`, failing the test if it takes longer than [`GUARD`].
///
/// # Panics
/// When `f` times out.
#[allow(clippy::expect_used)]
pub async fn guard<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(GUARD, f)
        .await
        .expect("test step timed out")
}

/// Random bytes for ids and keys.
///
/// # Panics
/// When the operating system has no randomness to give.
#[allow(clippy::expect_used)]
pub fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the OS random source failed");
    bytes
}
