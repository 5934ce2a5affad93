//! QUIC plumbing shared by the Tern relay and clients.
//!
//! The wire format itself lives in `tern-protocol` (pure, no I/O); this crate
//! is the thin layer that puts it on quinn streams:
//!
//! - [`frames`]: read and write length-prefixed frames on quinn streams, with
//!   memory bounded by what the peer actually sent, and optionally by a
//!   deadline and a [`budget`] of buffered bytes;
//! - [`budget`]: nested byte budgets for request bodies held in memory;
//! - [`pipeline`]: many requests in flight on one request stream, matched
//!   to their responses by id;
//! - [`trust`]: how a client trusts a relay — a pinned SHA-256 certificate
//!   fingerprint or ordinary certificate roots — and the matching quinn
//!   client configuration;
//! - [`config`]: transport parameters both sides agree on (ALPN, idle
//!   timeout, keep-alive, datagrams);
//! - [`exporter`]: the TLS exporter value that binds device authentication
//!   to one connection;
//! - [`socket`]: UDP sockets with buffers sized for fan-out bursts, and the
//!   quinn endpoints bound on them.

pub mod budget;
pub mod config;
pub mod exporter;
pub mod frames;
pub mod pipeline;
pub mod socket;
pub mod trust;

pub use budget::{ByteBudget, Exhausted, Reservation};
pub use config::{server_config, transport_config};
pub use exporter::auth_exporter;
pub use frames::{
    FrameAssembler, FrameIoError, FrameLimits, FrameReader, read_frame, read_frame_with,
    write_frame,
};
pub use pipeline::{Pipeline, PipelineError};
pub use socket::{client_endpoint, server_endpoint};
pub use trust::{CertFingerprint, TrustPolicy};
