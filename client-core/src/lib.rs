//! Tern client core.
//!
//! [`crypto`] holds the sans-IO end-to-end cryptography: identities, prekeys,
//! the PQXDH handshake, the Double Ratchet, per-device sessions, group sender
//! keys and safety numbers. It never performs I/O and never persists anything
//! itself: state leaves it only as versioned byte strings for the encrypted store.
//!
//! [`client`] is the public API for hosts (the CLI, the FFI): one [`Client`]
//! per device, owned types, one error enum and an event subscription. The
//! [`sync`] engine behind it runs the outbox, receipts, resync and reconnects.
//!
//! [`net`] is the relay connection: QUIC with a pinned certificate, device
//! authentication, requests, the delivery stream and ephemeral datagrams.
//!
//! [`store`] is the encrypted local store (SQLCipher): keys, sessions,
//! contacts, chats, message history with full-text search, cursors and outbox.

pub mod client;
pub mod crypto;
pub mod net;
pub mod store;
pub mod sync;

pub use client::{Client, ClientConfig, ClientError, ClientEvent};
