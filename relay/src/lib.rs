//! Tern relay: stores and forwards end-to-end encrypted messages over QUIC.
//!
//! Layers, from the wire inwards:
//! - [`server`] and [`connection`]: the thin quinn/tokio shell (TLS in
//!   [`tls`], frame I/O from `tern-transport`);
//! - [`service::Relay`] and the domain modules it dispatches to
//!   ([`accounts`], [`prekeys`], [`chats`], [`messages`]), with
//!   proofs of key possession in [`auth`];
//! - [`router`]: online devices and bounded per-connection mailboxes;
//! - [`log_writer`]: the group-commit writer of the chat logs;
//! - [`store`]: durable state behind the [`store::Store`] trait (SQLite).

pub mod accounts;
pub mod auth;
pub mod blobs;
pub mod chats;
pub mod config;
pub mod connection;
pub mod delivery;
pub mod error;
pub mod log_writer;
pub mod messages;
pub mod metrics;
pub mod prekeys;
pub mod presence;
pub mod provisioning;
pub mod push;
pub mod ratelimit;
pub mod router;
pub mod server;
pub mod service;
pub mod store;
pub mod tls;

pub use config::Config;
pub use error::{RelayError, StoreError};
pub use server::Server;
