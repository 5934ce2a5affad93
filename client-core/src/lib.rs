//! Tern client core.
//!
//! [`crypto`] holds the sans-IO end-to-end cryptography: identities, prekeys,
//! the PQXDH handshake, the Double Ratchet, per-device sessions, group sender
//! keys and safety numbers. It never performs I/O and never persists anything
//! itself: state leaves it only as versioned byte strings for the encrypted store.
//!
//! [`net`] is the relay connection: QUIC with a pinned certificate, device
//! authentication, requests, the delivery stream and ephemeral datagrams.
//!
//! [`store`] is the encrypted local store (SQLCipher): keys, sessions,
//! contacts, chats, message history with full-text search, cursors and outbox.

pub mod crypto;
pub mod net;
pub mod store;
