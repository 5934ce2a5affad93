//! The values the client API and the sync engine share: ids and owned value
//! types ([`types`]), the events reported to the host ([`event`]) and the one
//! error enum ([`error`]).
//!
//! It sits below both [`crate::client`] and [`crate::sync`] and above the store
//! and the relay connection, so that the import graph of the crate runs one
//! way: `client` → `sync` → `model` → `net` / `store` / `tern-crypto`.

pub(crate) mod error;
pub(crate) mod event;
pub(crate) mod types;

pub use error::ClientError;
pub use event::{ClientEvent, EventSubscription};
pub use types::*;
