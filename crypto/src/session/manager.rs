//! Session operations over a [`SessionStore`]: start, encrypt, decrypt.

use std::sync::Mutex;

use rand_core::CryptoRng;

use crate::codec::Kind;
use crate::consts::ENCODING_VERSION;
use crate::error::CryptoError;
use crate::identity::{DeviceIdentity, IdentityKey};
use crate::pqxdh::PreKeyMessage;
use crate::prekeys::{KemPreKeyKind, PreKeyBundle, VerifiedPreKeyBundle};
use crate::ratchet::RatchetMessage;

use super::record::SessionRecord;
use super::state::Session;
use super::{DeviceAddress, SessionStore, StoreError, StoreTransaction};

/// A decrypted message and what it changed.
#[derive(Debug)]
pub struct Decrypted {
    /// The plaintext.
    pub plaintext: Vec<u8>,
    /// Identity key of the sending device (check it against the sender's signed device list).
    pub sender_identity: IdentityKey,
    /// Whether the message started a new session.
    pub new_session: bool,
    /// Whether the new session's identity differs from the previous active session's.
    pub identity_changed: bool,
}

/// Runs the session protocol for one local device over a store.
///
/// Every operation loads the record, works on it in memory and commits through one
/// [`StoreTransaction`]; an internal lock serialises operations of this manager so
/// two threads never interleave load and commit. `SessionManager` is `Send + Sync`.
pub struct SessionManager<S: SessionStore> {
    identity: DeviceIdentity,
    store: S,
    require_kem: bool,
    lock: Mutex<()>,
}

impl<S: SessionStore> SessionManager<S> {
    /// A manager that requires post-quantum (KEM) prekeys in every handshake.
    pub fn new(identity: DeviceIdentity, store: S) -> Self {
        Self {
            identity,
            store,
            require_kem: true,
            lock: Mutex::new(()),
        }
    }

    /// Allows or forbids classical-only handshakes (bundles without a KEM prekey).
    pub fn allow_classical_handshakes(mut self, allow: bool) -> Self {
        self.require_kem = !allow;
        self
    }

    /// The local device identity.
    pub fn identity(&self) -> &DeviceIdentity {
        &self.identity
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn load(&self, address: &DeviceAddress) -> Result<SessionRecord, StoreError> {
        Ok(self.store.load_session(address)?.unwrap_or_default())
    }

    fn commit(&self, address: DeviceAddress, record: SessionRecord) -> Result<(), StoreError> {
        self.store.apply(StoreTransaction {
            sessions: vec![(address, record)],
            ..StoreTransaction::default()
        })
    }

    /// Starts a session from a fetched bundle (signatures verified here); it becomes
    /// the active session with `address`.
    pub fn start_session<R: CryptoRng + ?Sized>(
        &self,
        address: DeviceAddress,
        bundle: &PreKeyBundle,
        rng: &mut R,
    ) -> Result<(), CryptoError> {
        let session = Session::initiate(&self.identity, bundle, self.require_kem, rng)?;
        self.install_outgoing(address, session)
    }

    /// [`Self::start_session`] with a bundle the caller already checked, so its
    /// signatures are verified once per bundle.
    pub fn start_verified_session<R: CryptoRng + ?Sized>(
        &self,
        address: DeviceAddress,
        bundle: &VerifiedPreKeyBundle,
        rng: &mut R,
    ) -> Result<(), CryptoError> {
        let session = Session::initiate_verified(&self.identity, bundle, self.require_kem, rng)?;
        self.install_outgoing(address, session)
    }

    fn install_outgoing(
        &self,
        address: DeviceAddress,
        session: Session,
    ) -> Result<(), CryptoError> {
        let _guard = self.guard();
        let mut record = self.load(&address)?;
        record.install_outgoing(session);
        Ok(self.commit(address, record)?)
    }

    /// Encrypts for `address` with its active session.
    pub fn encrypt<R: CryptoRng + ?Sized>(
        &self,
        address: DeviceAddress,
        plaintext: &[u8],
        rng: &mut R,
    ) -> Result<Vec<u8>, CryptoError> {
        let _guard = self.guard();
        let mut record = self.load(&address)?;
        let session = record.active_mut().ok_or(CryptoError::NoSession)?;
        let message = session.encrypt(plaintext, rng)?;
        self.commit(address, record)?;
        Ok(message)
    }

    /// Decrypts a prekey or ratchet message from `address`. On any error the store
    /// is left untouched.
    pub fn decrypt(&self, address: DeviceAddress, bytes: &[u8]) -> Result<Decrypted, CryptoError> {
        match bytes {
            [ENCODING_VERSION, kind, ..] if *kind == Kind::PreKeyMessage as u8 => {
                self.decrypt_prekey_message(address, &PreKeyMessage::decode(bytes)?)
            }
            _ => self.decrypt_ratchet_message(address, &RatchetMessage::decode(bytes)?),
        }
    }

    fn decrypt_ratchet_message(
        &self,
        address: DeviceAddress,
        message: &RatchetMessage,
    ) -> Result<Decrypted, CryptoError> {
        let _guard = self.guard();
        let mut record = self
            .store
            .load_session(&address)?
            .ok_or(CryptoError::NoSession)?;
        let plaintext = record.decrypt(message)?;
        let sender_identity = record
            .active()
            .map(Session::remote_identity)
            .ok_or(CryptoError::NoSession)?;
        self.commit(address, record)?;
        Ok(Decrypted {
            plaintext,
            sender_identity,
            new_session: false,
            identity_changed: false,
        })
    }

    fn decrypt_prekey_message(
        &self,
        address: DeviceAddress,
        message: &PreKeyMessage,
    ) -> Result<Decrypted, CryptoError> {
        let header = &message.header;
        let _guard = self.guard();
        let mut record = self.load(&address)?;
        if let Some(slot) = record.find_by_base_key(&header.base_key) {
            // A retransmitted handshake of a session we already have: never re-run it.
            let plaintext = record.decrypt_prekey_in(slot, message)?;
            self.commit(address, record)?;
            return Ok(Decrypted {
                plaintext,
                sender_identity: header.identity_key,
                new_session: false,
                identity_changed: false,
            });
        }
        if self.require_kem && header.kem.is_none() {
            return Err(CryptoError::MissingKemPreKey);
        }
        let unknown = |kind, id| CryptoError::UnknownPreKey { kind, id };
        let mut signed = self
            .store
            .load_signed_prekey(header.signed_prekey_id)?
            .ok_or(unknown("signed", header.signed_prekey_id))?;
        let one_time = match header.one_time_prekey_id {
            Some(id) => Some(
                self.store
                    .load_one_time_prekey(id)?
                    .ok_or(unknown("one-time", id))?,
            ),
            None => None,
        };
        let kem = match &header.kem {
            Some((id, _)) => Some(
                self.store
                    .load_kem_prekey(*id)?
                    .ok_or(unknown("KEM", *id))?,
            ),
            None => None,
        };
        // Without a one-time key nothing is consumed, so the signed prekey's replay
        // cache must remember (and refuse a repeat of) this handshake.
        let replayable = header.one_time_prekey_id.is_none()
            && kem
                .as_ref()
                .is_none_or(|k| k.kind() == KemPreKeyKind::LastResort);
        if replayable {
            signed.remember_handshake(header.kem.as_ref().map(|(id, _)| *id), header.base_key)?;
        }
        let (session, plaintext) = Session::respond(
            &self.identity,
            message,
            &signed,
            one_time.as_ref(),
            kem.as_ref(),
        )?;
        let identity_changed = record
            .active()
            .is_some_and(|active| !active.remote_identity().ct_eq(&header.identity_key));
        record.install_incoming(session);
        self.store.apply(StoreTransaction {
            sessions: vec![(address, record)],
            consumed_one_time_prekey: header.one_time_prekey_id,
            consumed_kem_prekey: kem
                .filter(|k| k.kind() == KemPreKeyKind::OneTime)
                .map(|k| k.id()),
            updated_signed_prekey: replayable.then_some(signed),
        })?;
        Ok(Decrypted {
            plaintext,
            sender_identity: header.identity_key,
            new_session: true,
            identity_changed,
        })
    }
}
