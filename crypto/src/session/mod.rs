//! Sesame-style sessions: one [`SessionRecord`] per remote device, holding the active
//! session and a bounded archive of older ones, kept in a [`SessionStore`].

mod manager;
mod memory;
mod record;
mod state;

pub use manager::{Decrypted, SessionManager};
pub use memory::InMemoryStore;
pub use record::SessionRecord;
pub use state::Session;

use thiserror::Error;

use super::prekeys::{KemPreKey, OneTimePreKey, SignedPreKey};

/// Length of a user id (as in `tern-protocol`).
pub const USER_ID_LEN: usize = 16;

/// A remote device: user id and device id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceAddress {
    /// The user.
    pub user: [u8; USER_ID_LEN],
    /// The device of that user.
    pub device: u32,
}

/// A failure reported by a [`SessionStore`] implementation.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// Changes that must be applied atomically (all or nothing), for example a new
/// session together with the deletion of the one-time prekeys it consumed, or with
/// the replay-cache entry that makes its initial message unreplayable.
#[derive(Debug, Default)]
pub struct StoreTransaction {
    /// Session records to write (replacing what is stored for each address).
    pub sessions: Vec<(DeviceAddress, SessionRecord)>,
    /// One-time X25519 prekey to delete.
    pub consumed_one_time_prekey: Option<u32>,
    /// One-time KEM prekey to delete (last-resort KEM prekeys are never named here).
    pub consumed_kem_prekey: Option<u32>,
    /// A signed prekey whose replay cache gained an entry: replaces the stored one
    /// with the same id (a handshake that used no one-time prekey, see
    /// [`ReplayCache`](crate::replay::ReplayCache)).
    pub updated_signed_prekey: Option<SignedPreKey>,
}

/// Storage for sessions and local prekeys. Implementations must be `Send + Sync`
/// and apply each [`StoreTransaction`] atomically.
pub trait SessionStore: Send + Sync {
    /// The session record for `address`, if any.
    fn load_session(&self, address: &DeviceAddress) -> Result<Option<SessionRecord>, StoreError>;
    /// A local signed prekey by id.
    fn load_signed_prekey(&self, id: u32) -> Result<Option<SignedPreKey>, StoreError>;
    /// A local one-time prekey by id.
    fn load_one_time_prekey(&self, id: u32) -> Result<Option<OneTimePreKey>, StoreError>;
    /// A local KEM prekey (one-time or last-resort) by id.
    fn load_kem_prekey(&self, id: u32) -> Result<Option<KemPreKey>, StoreError>;
    /// Applies every change of `transaction`, or none of them.
    fn apply(&self, transaction: StoreTransaction) -> Result<(), StoreError>;
}

impl<T: SessionStore + ?Sized> SessionStore for std::sync::Arc<T> {
    fn load_session(&self, address: &DeviceAddress) -> Result<Option<SessionRecord>, StoreError> {
        (**self).load_session(address)
    }
    fn load_signed_prekey(&self, id: u32) -> Result<Option<SignedPreKey>, StoreError> {
        (**self).load_signed_prekey(id)
    }
    fn load_one_time_prekey(&self, id: u32) -> Result<Option<OneTimePreKey>, StoreError> {
        (**self).load_one_time_prekey(id)
    }
    fn load_kem_prekey(&self, id: u32) -> Result<Option<KemPreKey>, StoreError> {
        (**self).load_kem_prekey(id)
    }
    fn apply(&self, transaction: StoreTransaction) -> Result<(), StoreError> {
        (**self).apply(transaction)
    }
}
