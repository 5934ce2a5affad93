//! An in-memory [`SessionStore`] for tests, benchmarks and ephemeral clients.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::prekeys::{KemPreKey, OneTimePreKey, SignedPreKey};

use super::{DeviceAddress, SessionRecord, SessionStore, StoreError, StoreTransaction};

#[derive(Default)]
struct Tables {
    sessions: HashMap<DeviceAddress, SessionRecord>,
    signed: HashMap<u32, SignedPreKey>,
    one_time: HashMap<u32, OneTimePreKey>,
    kem: HashMap<u32, KemPreKey>,
}

/// A [`SessionStore`] in memory; each transaction is applied under one lock.
#[derive(Default)]
pub struct InMemoryStore {
    tables: Mutex<Tables>,
}

impl InMemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn tables(&self) -> MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a local signed prekey.
    pub fn add_signed_prekey(&self, prekey: SignedPreKey) {
        self.tables().signed.insert(prekey.id(), prekey);
    }

    /// Adds local one-time prekeys.
    pub fn add_one_time_prekeys(&self, prekeys: impl IntoIterator<Item = OneTimePreKey>) {
        let mut tables = self.tables();
        for prekey in prekeys {
            tables.one_time.insert(prekey.id(), prekey);
        }
    }

    /// Adds a local KEM prekey.
    pub fn add_kem_prekey(&self, prekey: KemPreKey) {
        self.tables().kem.insert(prekey.id(), prekey);
    }

    /// Deletes every session with `address` (as if the local device forgot it).
    pub fn remove_session(&self, address: &DeviceAddress) {
        self.tables().sessions.remove(address);
    }

    /// Number of one-time X25519 prekeys left.
    pub fn one_time_prekeys_left(&self) -> usize {
        self.tables().one_time.len()
    }

    /// Number of KEM prekeys (of both kinds) left.
    pub fn kem_prekeys_left(&self) -> usize {
        self.tables().kem.len()
    }
}

impl SessionStore for InMemoryStore {
    fn load_session(&self, address: &DeviceAddress) -> Result<Option<SessionRecord>, StoreError> {
        Ok(self.tables().sessions.get(address).cloned())
    }

    fn load_signed_prekey(&self, id: u32) -> Result<Option<SignedPreKey>, StoreError> {
        Ok(self.tables().signed.get(&id).cloned())
    }

    fn load_one_time_prekey(&self, id: u32) -> Result<Option<OneTimePreKey>, StoreError> {
        Ok(self.tables().one_time.get(&id).cloned())
    }

    fn load_kem_prekey(&self, id: u32) -> Result<Option<KemPreKey>, StoreError> {
        Ok(self.tables().kem.get(&id).cloned())
    }

    fn apply(&self, transaction: StoreTransaction) -> Result<(), StoreError> {
        let mut tables = self.tables();
        if let Some(id) = transaction.consumed_one_time_prekey {
            tables.one_time.remove(&id);
        }
        if let Some(id) = transaction.consumed_kem_prekey {
            tables.kem.remove(&id);
        }
        if let Some(prekey) = transaction.updated_signed_prekey {
            tables.signed.insert(prekey.id(), prekey);
        }
        tables.sessions.extend(transaction.sessions);
        Ok(())
    }
}
