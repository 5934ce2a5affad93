//! The crypto layer's [`SessionStore`] on top of the encrypted store, with
//! changes held back until the caller commits them together with the message
//! they belong to.
//!
//! [`SessionManager`](tern_crypto::session::SessionManager) commits each
//! operation through [`SessionStore::apply`]. Here `apply` only records the
//! change in memory (later loads see it); [`CryptoStore::commit`] writes every
//! recorded change plus the caller's own writes (the decrypted message, the
//! outbox entry, the cursor) in ONE store transaction. A crash before that
//! commit leaves neither the ratchet advanced nor the message stored.
//! Callers hold [`CryptoStore::begin`]'s guard for the whole batch, so two
//! batches never interleave.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::store::{self, PrekeyKind, Store, StoreError, Tx};
use tern_crypto::prekeys::{KemPreKey, OneTimePreKey, SignedPreKey};
use tern_crypto::session::{
    DeviceAddress, SessionRecord, SessionStore, StoreError as CryptoStoreError, StoreTransaction,
};

/// Session id under which the crypto layer's whole record (active session and
/// archive) is stored for one remote device.
const RECORD_ID: &[u8] = b"record";

#[derive(Default)]
struct Pending {
    sessions: HashMap<DeviceAddress, SessionRecord>,
    one_time_prekeys: Vec<u32>,
    kem_prekeys: Vec<u32>,
    signed_prekeys: HashMap<u32, SignedPreKey>,
}

/// Session and prekey storage over the encrypted store; see the module docs.
pub(crate) struct CryptoStore {
    store: Arc<Store>,
    pending: Mutex<Pending>,
    batch: Mutex<()>,
}

/// Exclusive access for one batch of crypto operations and their commit.
pub(crate) struct Batch<'a> {
    owner: &'a CryptoStore,
    _guard: MutexGuard<'a, ()>,
}

impl CryptoStore {
    /// Wraps the store.
    pub(crate) fn new(store: Arc<Store>) -> Self {
        Self {
            store,
            pending: Mutex::new(Pending::default()),
            batch: Mutex::new(()),
        }
    }

    /// Starts a batch. Anything left over from an abandoned batch is dropped.
    pub(crate) fn begin(&self) -> Batch<'_> {
        let guard = self.batch.lock().unwrap_or_else(PoisonError::into_inner);
        *self.pending() = Pending::default();
        Batch {
            owner: self,
            _guard: guard,
        }
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, CryptoStoreError> {
        self.store
            .transaction(f)
            .map_err(|e| CryptoStoreError(e.to_string()))
    }
}

impl Batch<'_> {
    /// Writes the batch's crypto changes and whatever `f` writes in one
    /// transaction. On error nothing is written and the changes are dropped.
    pub(crate) fn commit<T, E>(self, f: impl FnOnce(&Tx<'_>) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let pending = std::mem::take(&mut *self.owner.pending());
        self.owner.store.transaction(|tx| {
            write_pending(tx, &pending)?;
            f(tx)
        })
    }
}

fn to_store(address: &DeviceAddress) -> store::DeviceAddress {
    store::DeviceAddress {
        user_id: address.user,
        device_id: address.device,
    }
}

fn write_pending(tx: &Tx<'_>, pending: &Pending) -> Result<(), StoreError> {
    for (address, record) in &pending.sessions {
        tx.put_session(&to_store(address), RECORD_ID, &record.to_bytes(), true)?;
    }
    for id in &pending.one_time_prekeys {
        tx.remove_prekey(PrekeyKind::OneTime, *id)?;
    }
    for id in &pending.kem_prekeys {
        tx.remove_prekey(PrekeyKind::KemOneTime, *id)?;
    }
    for (id, prekey) in &pending.signed_prekeys {
        tx.put_prekey(PrekeyKind::Signed, *id, &prekey.to_bytes())?;
    }
    Ok(())
}

fn decode_err(e: tern_crypto::CryptoError) -> CryptoStoreError {
    CryptoStoreError(format!("stored crypto state: {e}"))
}

impl SessionStore for CryptoStore {
    fn load_session(
        &self,
        address: &DeviceAddress,
    ) -> Result<Option<SessionRecord>, CryptoStoreError> {
        if let Some(record) = self.pending().sessions.get(address) {
            return Ok(Some(record.clone()));
        }
        let stored = self.read(|tx| tx.active_session(&to_store(address)))?;
        stored
            .map(|s| SessionRecord::from_bytes(&s.state).map_err(decode_err))
            .transpose()
    }

    fn load_signed_prekey(&self, id: u32) -> Result<Option<SignedPreKey>, CryptoStoreError> {
        if let Some(prekey) = self.pending().signed_prekeys.get(&id) {
            return Ok(Some(prekey.clone()));
        }
        self.read(|tx| tx.prekey(PrekeyKind::Signed, id))?
            .map(|bytes| SignedPreKey::from_bytes(&bytes).map_err(decode_err))
            .transpose()
    }

    fn load_one_time_prekey(&self, id: u32) -> Result<Option<OneTimePreKey>, CryptoStoreError> {
        if self.pending().one_time_prekeys.contains(&id) {
            return Ok(None);
        }
        self.read(|tx| tx.prekey(PrekeyKind::OneTime, id))?
            .map(|bytes| OneTimePreKey::from_bytes(&bytes).map_err(decode_err))
            .transpose()
    }

    fn load_kem_prekey(&self, id: u32) -> Result<Option<KemPreKey>, CryptoStoreError> {
        let consumed = self.pending().kem_prekeys.contains(&id);
        let bytes = self.read(|tx| {
            let one_time = if consumed {
                None
            } else {
                tx.prekey(PrekeyKind::KemOneTime, id)?
            };
            match one_time {
                Some(bytes) => Ok(Some(bytes)),
                None => tx.prekey(PrekeyKind::KemLastResort, id),
            }
        })?;
        bytes
            .map(|bytes| KemPreKey::from_bytes(&bytes).map_err(decode_err))
            .transpose()
    }

    fn apply(&self, transaction: StoreTransaction) -> Result<(), CryptoStoreError> {
        let mut pending = self.pending();
        pending.sessions.extend(transaction.sessions);
        pending
            .one_time_prekeys
            .extend(transaction.consumed_one_time_prekey);
        pending.kem_prekeys.extend(transaction.consumed_kem_prekey);
        if let Some(prekey) = transaction.updated_signed_prekey {
            pending.signed_prekeys.insert(prekey.id(), prekey);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::store::KeySource;

    fn store() -> (tempfile::TempDir, Arc<Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("db"), KeySource::raw([7; 32])).unwrap();
        (dir, Arc::new(store))
    }

    fn change(address: DeviceAddress) -> StoreTransaction {
        StoreTransaction {
            sessions: vec![(address, SessionRecord::default())],
            ..StoreTransaction::default()
        }
    }

    const PEER: DeviceAddress = DeviceAddress {
        user: [1; 16],
        device: 2,
    };

    #[test]
    fn changes_are_visible_in_the_batch_but_stored_only_on_commit() {
        let (_dir, store) = store();
        let crypto = CryptoStore::new(store.clone());
        let batch = crypto.begin();
        crypto.apply(change(PEER)).unwrap();
        assert!(crypto.load_session(&PEER).unwrap().is_some());
        drop(batch);
        // An abandoned batch leaves nothing behind.
        let batch = crypto.begin();
        assert!(crypto.load_session(&PEER).unwrap().is_none());
        crypto.apply(change(PEER)).unwrap();
        let failed: Result<(), StoreError> = batch.commit(|_| Err(StoreError::NotFound("x")));
        assert!(failed.is_err());
        assert!(
            CryptoStore::new(store.clone())
                .load_session(&PEER)
                .unwrap()
                .is_none()
        );

        let batch = crypto.begin();
        crypto.apply(change(PEER)).unwrap();
        batch
            .commit(|tx| tx.advance_delivered(&[9; 16], 5))
            .unwrap();
        let fresh = CryptoStore::new(store.clone());
        assert!(fresh.load_session(&PEER).unwrap().is_some());
        let cursor = store.transaction(|tx| tx.cursor(&[9; 16])).unwrap();
        assert_eq!(cursor.map(|c| c.delivered_seq), Some(5));
    }

    #[test]
    fn a_consumed_one_time_prekey_disappears_with_the_commit() {
        let (_dir, store) = store();
        let prekey =
            OneTimePreKey::generate_batch(4, 1, &mut rand_core::UnwrapErr(getrandom::SysRng))
                .remove(0);
        store
            .transaction(|tx| tx.put_prekey(PrekeyKind::OneTime, 4, &prekey.to_bytes()))
            .unwrap();
        let crypto = CryptoStore::new(store.clone());
        let batch = crypto.begin();
        assert!(crypto.load_one_time_prekey(4).unwrap().is_some());
        crypto
            .apply(StoreTransaction {
                consumed_one_time_prekey: Some(4),
                ..StoreTransaction::default()
            })
            .unwrap();
        assert!(crypto.load_one_time_prekey(4).unwrap().is_none());
        batch.commit(|_| Ok::<_, StoreError>(())).unwrap();
        let ids = store
            .transaction(|tx| tx.prekey_ids(PrekeyKind::OneTime))
            .unwrap();
        assert!(ids.is_empty());
    }

    #[test]
    fn a_signed_prekey_with_a_new_replay_entry_is_stored_with_the_commit() {
        let (_dir, store) = store();
        let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
        let identity = tern_crypto::identity::DeviceIdentity::generate(&mut rng);
        let mut prekey = SignedPreKey::generate(3, &identity, &mut rng);
        store
            .transaction(|tx| tx.put_prekey(PrekeyKind::Signed, 3, &prekey.to_bytes()))
            .unwrap();
        prekey.remember_handshake(Some(9), [5; 32]).unwrap();
        let crypto = CryptoStore::new(store.clone());
        let batch = crypto.begin();
        crypto
            .apply(StoreTransaction {
                updated_signed_prekey: Some(prekey),
                ..StoreTransaction::default()
            })
            .unwrap();
        let seen = |crypto: &CryptoStore| {
            crypto
                .load_signed_prekey(3)
                .unwrap()
                .map(|p| p.replay_cache().len())
        };
        assert_eq!(seen(&crypto), Some(1));
        assert_eq!(seen(&CryptoStore::new(store.clone())), Some(0));
        batch.commit(|_| Ok::<_, StoreError>(())).unwrap();
        assert_eq!(seen(&CryptoStore::new(store.clone())), Some(1));
    }
}
