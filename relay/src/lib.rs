//! Tern relay: stores and forwards end-to-end encrypted messages over QUIC.
//!
//! Layers, from the wire inwards:
//! - `server` and `connection`: the thin quinn/tokio shell (TLS in
//!   `tls`, frame I/O from `tern-transport`, and in `intake` what a
//!   connection may make the relay read and buffer);
//! - `service::Relay` and the domain modules it dispatches to
//!   (`accounts`, `prekeys`, `chats`, `messages`), with
//!   proofs of key possession in `auth`;
//! - `router`: online devices and bounded per-connection mailboxes;
//! - `log_writer`: the group-commit writer of the chat logs;
//! - [`store`]: durable state behind [`store::Store`], one small trait per
//!   concern (accounts, prekeys, the chat log, chats, cursors, retention);
//!   the SQLite backend implements them all.
//!
//! The public surface is what this page lists: the [`Server`] and its
//! [`Config`], the storage trait and its SQLite backend ([`store`], which
//! other backends implement), the TLS helpers ([`tls`]) and a few items the
//! tests and tools need. Every other module is private.

#![deny(unreachable_pub)]

mod accounts;
mod auth;
mod blobs;
mod chats;
pub mod cluster;
mod config;
mod connection;
mod delivery;
mod error;
mod intake;
mod log_writer;
mod messages;
mod metrics;
mod prekeys;
mod presence;
mod provisioning;
mod push;
mod ratelimit;
mod router;
mod server;
mod service;
pub mod store;
pub mod tls;

pub use accounts::{invite_hash, new_invite_token};
pub use blobs::BlobStore;
pub use config::{
    Backend, ClusterConfig, Config, LimitsConfig, Registration, StoreConfig, Synchronous, TlsConfig,
};
pub use connection::MAX_PIPELINED_REQUESTS;
pub use error::{RelayError, StoreError};
pub use server::Server;
pub use service::now_ms;
