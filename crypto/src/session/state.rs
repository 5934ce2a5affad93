//! One session between two devices: the ratchet plus the handshake facts.

use rand_core::CryptoRng;
use subtle::ConstantTimeEq;

use crate::codec::{DecodeError, Reader, Writer};
use crate::error::CryptoError;
use crate::identity::{DeviceIdentity, IdentityKey};
use crate::pqxdh::{self, Handshake, PreKeyHeader, PreKeyMessage};
use crate::prekeys::{KemPreKey, OneTimePreKey, PreKeyBundle, SignedPreKey, VerifiedPreKeyBundle};
use crate::ratchet::{RatchetMessage, RatchetState};

/// One pairwise session. Secrets inside are wiped on drop; `Debug` shows no key bytes.
///
/// Most callers use [`SessionManager`](super::SessionManager), which keeps sessions in
/// a store and applies the Sesame rules; `Session` is the in-memory core it drives.
#[derive(Debug, Clone)]
pub struct Session {
    ratchet: RatchetState,
    local_identity: IdentityKey,
    remote_identity: IdentityKey,
    initiated_by_us: bool,
    /// Whether a message from the peer decrypted in this session.
    received_any: bool,
    base_key: [u8; 32],
    /// Initiator only: the handshake header, attached to messages until the first reply.
    pending: Option<PreKeyHeader>,
    /// Responder only: digest of the handshake fields that created the session.
    prekey_digest: Option<[u8; 32]>,
}

impl Session {
    /// Initiator: runs PQXDH against `bundle` (signatures verified here; a bundle
    /// without a KEM prekey is refused when `require_kem`).
    pub fn initiate<R: CryptoRng + ?Sized>(
        identity: &DeviceIdentity,
        bundle: &PreKeyBundle,
        require_kem: bool,
        rng: &mut R,
    ) -> Result<Self, CryptoError> {
        bundle.verify()?;
        Self::initiate_unchecked(identity, bundle, require_kem, rng)
    }

    /// Initiator with a bundle already checked by [`PreKeyBundle::into_verified`]:
    /// its signatures are not verified a second time.
    pub fn initiate_verified<R: CryptoRng + ?Sized>(
        identity: &DeviceIdentity,
        bundle: &VerifiedPreKeyBundle,
        require_kem: bool,
        rng: &mut R,
    ) -> Result<Self, CryptoError> {
        Self::initiate_unchecked(identity, bundle.bundle(), require_kem, rng)
    }

    /// The initiator's handshake against a bundle whose signatures were checked.
    fn initiate_unchecked<R: CryptoRng + ?Sized>(
        identity: &DeviceIdentity,
        bundle: &PreKeyBundle,
        require_kem: bool,
        rng: &mut R,
    ) -> Result<Self, CryptoError> {
        let handshake = pqxdh::initiate(identity, bundle, require_kem, rng)?;
        Ok(Self::from_initiator_handshake(
            handshake,
            bundle.identity_key,
        ))
    }

    /// Responder: runs PQXDH with the prekeys the message names and decrypts the
    /// embedded message. Nothing is returned unless the message authenticates.
    pub fn respond(
        identity: &DeviceIdentity,
        message: &PreKeyMessage,
        signed_prekey: &SignedPreKey,
        one_time_prekey: Option<&OneTimePreKey>,
        kem_prekey: Option<&KemPreKey>,
    ) -> Result<(Self, Vec<u8>), CryptoError> {
        let handshake = pqxdh::respond(
            identity,
            &message.header,
            signed_prekey,
            one_time_prekey,
            kem_prekey,
        )?;
        let mut session = Self::from_responder_handshake(handshake, identity.public_key());
        session.prekey_digest = Some(*message.header_digest());
        let plaintext = session.decrypt(&message.message)?;
        Ok((session, plaintext))
    }

    fn from_initiator_handshake(handshake: Handshake, remote_identity: IdentityKey) -> Self {
        Self {
            ratchet: handshake.ratchet,
            local_identity: handshake.header.identity_key,
            remote_identity,
            initiated_by_us: true,
            received_any: false,
            base_key: handshake.header.base_key,
            pending: Some(handshake.header),
            prekey_digest: None,
        }
    }

    fn from_responder_handshake(handshake: Handshake, local_identity: IdentityKey) -> Self {
        Self {
            ratchet: handshake.ratchet,
            local_identity,
            remote_identity: handshake.header.identity_key,
            initiated_by_us: false,
            received_any: false,
            base_key: handshake.header.base_key,
            pending: None,
            prekey_digest: None,
        }
    }

    /// The remote device's identity key.
    pub fn remote_identity(&self) -> IdentityKey {
        self.remote_identity
    }

    /// The initiator's base key; identifies the session on both sides.
    pub fn base_key(&self) -> &[u8; 32] {
        &self.base_key
    }

    pub(crate) fn initiated_by_us(&self) -> bool {
        self.initiated_by_us
    }

    pub(crate) fn received_any(&self) -> bool {
        self.received_any
    }

    fn associated_data(&self) -> [u8; 64] {
        let (initiator, responder) = if self.initiated_by_us {
            (self.local_identity, self.remote_identity)
        } else {
            (self.remote_identity, self.local_identity)
        };
        let mut ad = [0u8; 64];
        ad[..32].copy_from_slice(&initiator.to_bytes());
        ad[32..].copy_from_slice(&responder.to_bytes());
        ad
    }

    /// Encrypts a message: a prekey message until the peer replied, then a ratchet message.
    pub fn encrypt<R: CryptoRng + ?Sized>(
        &mut self,
        plaintext: &[u8],
        rng: &mut R,
    ) -> Result<Vec<u8>, CryptoError> {
        let message = self
            .ratchet
            .encrypt(&self.associated_data(), plaintext, rng)?;
        Ok(match &self.pending {
            Some(header) => PreKeyMessage::encode(header, &message),
            None => message,
        })
    }

    /// Decrypts a retransmitted prekey message of this session: its handshake fields
    /// must be exactly those that created the session.
    pub fn decrypt_prekey_message(
        &mut self,
        message: &PreKeyMessage,
    ) -> Result<Vec<u8>, CryptoError> {
        let same = self
            .prekey_digest
            .is_some_and(|digest| bool::from(digest.ct_eq(message.header_digest())));
        if !same || message.header.base_key != self.base_key {
            return Err(CryptoError::HandshakeMismatch);
        }
        self.decrypt(&message.message)
    }

    /// Decrypts a ratchet message; on error nothing changes.
    pub fn decrypt(&mut self, message: &RatchetMessage) -> Result<Vec<u8>, CryptoError> {
        let plaintext = self.ratchet.decrypt(&self.associated_data(), message)?;
        self.received_any = true;
        if self.initiated_by_us {
            self.pending = None;
        }
        Ok(plaintext)
    }

    pub(crate) fn write(&self, writer: &mut Writer) {
        writer
            .bytes(&self.local_identity.to_bytes())
            .bytes(&self.remote_identity.to_bytes())
            .bool(self.initiated_by_us)
            .bool(self.received_any)
            .bytes(&self.base_key)
            .bool(self.prekey_digest.is_some())
            .bytes(&self.prekey_digest.unwrap_or_default())
            .bool(self.pending.is_some());
        if let Some(header) = &self.pending {
            writer
                .u32(header.signed_prekey_id)
                .bool(header.one_time_prekey_id.is_some())
                .u32(header.one_time_prekey_id.unwrap_or(0))
                .bool(header.kem.is_some());
            if let Some((id, ciphertext)) = &header.kem {
                writer.u32(*id).bytes(&ciphertext[..]);
            }
        }
        self.ratchet.write(writer);
    }

    pub(crate) fn read(reader: &mut Reader<'_>) -> Result<Self, CryptoError> {
        let local_identity = IdentityKey::from_bytes(&reader.array("local identity")?)?;
        let remote_identity = IdentityKey::from_bytes(&reader.array("remote identity")?)?;
        let initiated_by_us = reader.bool("initiated by us")?;
        let received_any = reader.bool("received any")?;
        let base_key = reader.array("base key")?;
        let has_digest = reader.bool("has prekey digest")?;
        let digest: [u8; 32] = reader.array("prekey digest")?;
        let prekey_digest = has_digest.then_some(digest);
        let pending = match reader.bool("has pending header")? {
            false => None,
            true => {
                let signed_prekey_id = reader.u32("signed prekey id")?;
                let has_one_time = reader.bool("has one-time prekey")?;
                let one_time = reader.u32("one-time prekey id")?;
                let kem = match reader.bool("has KEM prekey")? {
                    true => Some((
                        reader.u32("KEM prekey id")?,
                        Box::new(reader.array("KEM ciphertext")?),
                    )),
                    false => None,
                };
                Some(PreKeyHeader {
                    identity_key: local_identity,
                    base_key,
                    signed_prekey_id,
                    one_time_prekey_id: has_one_time.then_some(one_time),
                    kem,
                })
            }
        };
        if pending.is_some() && !initiated_by_us {
            return Err(DecodeError::InvalidValue("pending header on a responder session").into());
        }
        let ratchet = RatchetState::read(reader)?;
        Ok(Self {
            ratchet,
            local_identity,
            remote_identity,
            initiated_by_us,
            received_any,
            base_key,
            pending,
            prekey_digest,
        })
    }
}
