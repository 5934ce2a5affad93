//! The relay connection: where messages leave the device and arrive at it.
//!
//! A thin async shell over quinn and `tern-transport`: it opens a QUIC
//! connection to the relay (certificate pinned or checked against roots),
//! performs the hello and device authentication, sends requests on their own
//! streams, and hands the delivery stream's events and the ephemeral
//! datagrams to the sync engine. Reconnection policy ([`Backoff`]) is pure.

mod address;
mod backoff;
mod blobs;
mod connection;
mod error;

pub use address::{RelayAddress, resolve_nodes};
pub use backoff::Backoff;
pub use connection::{
    CONNECT_TIMEOUT, DeviceSigner, EventStream, Greeting, NODE_TIMEOUT, RelayConnection,
    client_endpoint,
};
pub use error::NetError;
