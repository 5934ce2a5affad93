//! Test devices with an in-memory store and a minimal prekey directory.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;
use tern_crypto::identity::DeviceIdentity;
use tern_crypto::prekeys::{
    KemPreKey, KemPreKeyKind, KemPreKeyPublic, OneTimePreKey, OneTimePreKeyPublic, PreKeyBundle,
    SignedPreKey, SignedPreKeyPublic,
};
use tern_crypto::session::{DeviceAddress, InMemoryStore, SessionManager, SessionStore};

/// A deterministic RNG.
pub fn rng(seed: u8) -> ChaCha20Rng {
    ChaCha20Rng::from_seed([seed; 32])
}

/// What the relay would hold for a device: published prekeys, each one-time key handed out once.
pub struct Directory {
    pub signed: SignedPreKeyPublic,
    pub one_time: Vec<OneTimePreKeyPublic>,
    pub kem_one_time: Vec<KemPreKeyPublic>,
    pub kem_last_resort: KemPreKeyPublic,
}

pub struct Device {
    pub address: DeviceAddress,
    pub manager: SessionManager<Arc<InMemoryStore>>,
    pub store: Arc<InMemoryStore>,
    pub directory: Mutex<Directory>,
}

pub const ONE_TIME_KEYS: u32 = 8;
pub const KEM_ONE_TIME_KEYS: u32 = 2;
pub const LAST_RESORT_ID: u32 = 1000;

impl Device {
    pub fn new(user: u8, device: u32, rng: &mut ChaCha20Rng) -> Self {
        let identity = DeviceIdentity::generate(rng);
        let store = Arc::new(InMemoryStore::new());
        let signed = SignedPreKey::generate(1, &identity, rng);
        let one_time = OneTimePreKey::generate_batch(1, ONE_TIME_KEYS, rng);
        let kem_one_time: Vec<KemPreKey> = (1..=KEM_ONE_TIME_KEYS)
            .map(|id| KemPreKey::generate(id, KemPreKeyKind::OneTime, &identity, rng))
            .collect();
        let last_resort =
            KemPreKey::generate(LAST_RESORT_ID, KemPreKeyKind::LastResort, &identity, rng);
        let directory = Directory {
            signed: signed.public(),
            one_time: one_time.iter().map(OneTimePreKey::public).collect(),
            kem_one_time: kem_one_time.iter().map(KemPreKey::public).collect(),
            kem_last_resort: last_resort.public(),
        };
        store.add_signed_prekey(signed);
        store.add_one_time_prekeys(one_time);
        for kem in kem_one_time {
            store.add_kem_prekey(kem);
        }
        store.add_kem_prekey(last_resort);
        Self {
            address: DeviceAddress {
                user: [user; 16],
                device,
            },
            manager: SessionManager::new(identity, store.clone()),
            store,
            directory: Mutex::new(directory),
        }
    }

    /// A bundle as the relay would hand it out: one-time keys while they last.
    pub fn bundle(&self) -> PreKeyBundle {
        let mut directory = self.directory.lock().unwrap();
        let one_time_prekey = directory.one_time.pop();
        let kem_prekey = Some(
            directory
                .kem_one_time
                .pop()
                .unwrap_or_else(|| directory.kem_last_resort.clone()),
        );
        PreKeyBundle {
            identity_key: self.manager.identity().public_key(),
            signed_prekey: directory.signed.clone(),
            one_time_prekey,
            kem_prekey,
        }
    }

    /// The serialised session record this device holds for `peer` (None if absent).
    pub fn record_bytes(&self, peer: &Device) -> Option<Vec<u8>> {
        self.store
            .load_session(&peer.address)
            .unwrap()
            .map(|record| record.to_bytes().to_vec())
    }

    /// Base key of the active session with `peer`.
    pub fn active_base_key(&self, peer: &Device) -> Option<[u8; 32]> {
        let record = self.store.load_session(&peer.address).unwrap()?;
        record.active().map(|s| *s.base_key())
    }

    /// Encrypts for `peer`, starting a session from its bundle if there is none.
    pub fn send(&self, peer: &Device, plaintext: &[u8], rng: &mut ChaCha20Rng) -> Vec<u8> {
        if self.store.load_session(&peer.address).unwrap().is_none() {
            self.manager
                .start_session(peer.address, &peer.bundle(), rng)
                .unwrap();
        }
        self.manager.encrypt(peer.address, plaintext, rng).unwrap()
    }

    /// Decrypts a message from `peer`.
    pub fn receive(
        &self,
        peer: &Device,
        bytes: &[u8],
    ) -> Result<Vec<u8>, tern_crypto::CryptoError> {
        self.manager
            .decrypt(peer.address, bytes)
            .map(|d| d.plaintext)
    }
}
