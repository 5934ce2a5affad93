//! Sender keys for groups (Signal's sender-key construction, with Ed25519 signatures).
//!
//! Each sending device keeps, per group, a chain key and a signing key
//! ([`GroupSender`]); it hands them to every member device in a distribution message
//! sent over the pairwise sessions. Every group message is encrypted once with the
//! next key of the chain and signed. Receivers keep a [`SenderKeyRecord`] per
//! (group, sender device). When membership changes the sender [`rotates`](GroupSender::rotate)
//! and distributes the new chain to the remaining members only.

use std::collections::VecDeque;
use std::fmt;

use ed25519_dalek::{Signer, SigningKey};
use rand_core::CryptoRng;
use zeroize::Zeroizing;

use super::chain::{Chain, ReceivingChain};
use super::codec::{DecodeError, Kind, Reader, Writer};
use super::consts::{
    MAX_MESSAGE_LEN, MAX_PLAINTEXT_LEN, MAX_SENDER_KEY_STATES, SENDER_KEY_SIGNATURE_LABEL,
    SENDER_MESSAGE_KEY_INFO,
};
use super::error::CryptoError;
use super::identity::{IdentityKey, SIGNATURE_LEN, labelled};
use super::primitives::{MessageKeys, Secret32};
use super::ratchet::TAG_LEN;

/// Length of a distribution id: a random group-session id chosen by the sender.
pub const DISTRIBUTION_ID_LEN: usize = 16;
/// Length of a sender-key message header (version and kind bytes included).
const HEADER_LEN: usize = 2 + DISTRIBUTION_ID_LEN + 8;

/// A decoded distribution message: a sender's chain for one group.
#[derive(Clone, PartialEq, Eq)]
pub struct DistributionMessage {
    distribution_id: [u8; DISTRIBUTION_ID_LEN],
    chain_id: u32,
    iteration: u32,
    chain_key: Secret32,
    signing_key: IdentityKey,
}

impl fmt::Debug for DistributionMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DistributionMessage")
            .field("chain_id", &self.chain_id)
            .field("iteration", &self.iteration)
            .field("chain_key", &self.chain_key)
            .finish_non_exhaustive()
    }
}

impl DistributionMessage {
    /// Encodes `01 04 ‖ distribution id ‖ chain id ‖ iteration ‖ chain key ‖ signing key`.
    /// It contains a secret: send it only inside a pairwise session.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut writer = Writer::with_header(Kind::SenderKeyDistribution, 88);
        writer
            .bytes(&self.distribution_id)
            .u32(self.chain_id)
            .u32(self.iteration)
            .bytes(self.chain_key.as_bytes())
            .bytes(&self.signing_key.to_bytes());
        Zeroizing::new(writer.finish())
    }

    /// Decodes an untrusted distribution message.
    pub fn decode(bytes: &[u8]) -> Result<Self, CryptoError> {
        let mut reader = Reader::with_header(bytes, Kind::SenderKeyDistribution)?;
        let message = Self {
            distribution_id: reader.array("distribution id")?,
            chain_id: reader.u32("chain id")?,
            iteration: reader.u32("iteration")?,
            chain_key: Secret32::read(&mut reader, "chain key")?,
            signing_key: IdentityKey::from_bytes(&reader.array("signing key")?)?,
        };
        reader.finish()?;
        Ok(message)
    }

    /// The group session this chain belongs to.
    pub fn distribution_id(&self) -> &[u8; DISTRIBUTION_ID_LEN] {
        &self.distribution_id
    }
}

/// A decoded sender-key message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderKeyMessage {
    distribution_id: [u8; DISTRIBUTION_ID_LEN],
    chain_id: u32,
    iteration: u32,
    /// Header and ciphertext: everything the signature covers after the label.
    signed: Vec<u8>,
    signature: [u8; SIGNATURE_LEN],
}

impl SenderKeyMessage {
    /// Decodes `01 03 ‖ distribution id ‖ chain id ‖ iteration ‖ ciphertext ‖ tag ‖ signature`.
    pub fn decode(bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() > MAX_MESSAGE_LEN {
            return Err(DecodeError::TooLong {
                field: "sender-key message",
                len: bytes.len(),
                max: MAX_MESSAGE_LEN,
            }
            .into());
        }
        let mut reader = Reader::with_header(bytes, Kind::SenderKeyMessage)?;
        let distribution_id = reader.array("distribution id")?;
        let chain_id = reader.u32("chain id")?;
        let iteration = reader.u32("iteration")?;
        if reader.remaining() < TAG_LEN + SIGNATURE_LEN {
            return Err(DecodeError::Truncated("sender-key ciphertext").into());
        }
        let signed_len = bytes.len() - SIGNATURE_LEN;
        let mut signature = [0u8; SIGNATURE_LEN];
        signature.copy_from_slice(&bytes[signed_len..]);
        Ok(Self {
            distribution_id,
            chain_id,
            iteration,
            signed: bytes[..signed_len].to_vec(),
            signature,
        })
    }

    /// The group session the message belongs to (selects the [`SenderKeyRecord`]).
    pub fn distribution_id(&self) -> &[u8; DISTRIBUTION_ID_LEN] {
        &self.distribution_id
    }
}

/// The sending side of one group on this device.
#[derive(Clone)]
pub struct GroupSender {
    distribution_id: [u8; DISTRIBUTION_ID_LEN],
    chain_id: u32,
    chain: Chain,
    signing: SigningKey,
}

impl fmt::Debug for GroupSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupSender")
            .field("chain_id", &self.chain_id)
            .field("iteration", &self.chain.index)
            .finish_non_exhaustive()
    }
}

impl GroupSender {
    /// A new sender chain for the group session `distribution_id`.
    pub fn new<R: CryptoRng + ?Sized>(
        distribution_id: [u8; DISTRIBUTION_ID_LEN],
        rng: &mut R,
    ) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut());
        Self {
            distribution_id,
            chain_id: rng.next_u32(),
            chain: Chain::new(Secret32::random(rng)),
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// Replaces the chain and signing key (after a member left); distribute again.
    pub fn rotate<R: CryptoRng + ?Sized>(&mut self, rng: &mut R) {
        *self = Self::new(self.distribution_id, rng);
    }

    /// The distribution message for the chain's current position.
    pub fn distribution_message(&self) -> DistributionMessage {
        DistributionMessage {
            distribution_id: self.distribution_id,
            chain_id: self.chain_id,
            iteration: self.chain.index,
            chain_key: self.chain.key.clone(),
            signing_key: IdentityKey::from_verifying_key(self.signing.verifying_key()),
        }
    }

    /// Encrypts and signs one group message.
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if plaintext.len() > MAX_PLAINTEXT_LEN {
            return Err(CryptoError::PlaintextTooLong(plaintext.len()));
        }
        let (seed, next) = self.chain.step()?;
        let mut writer =
            Writer::with_header(Kind::SenderKeyMessage, HEADER_LEN + plaintext.len() + 80);
        writer
            .bytes(&self.distribution_id)
            .u32(self.chain_id)
            .u32(self.chain.index);
        let ciphertext =
            MessageKeys::derive(&seed, SENDER_MESSAGE_KEY_INFO).seal(plaintext, writer.as_slice());
        writer.bytes(&ciphertext);
        let signature = self
            .signing
            .sign(&labelled(SENDER_KEY_SIGNATURE_LABEL, writer.as_slice()));
        writer.bytes(&signature.to_bytes());
        self.chain = next;
        Ok(writer.finish())
    }

    /// Versioned encoding (`01 17 ‖ distribution id ‖ chain id ‖ chain ‖ signing seed`).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut writer = Writer::with_header(Kind::GroupSender, 90);
        writer.bytes(&self.distribution_id).u32(self.chain_id);
        self.chain.write(&mut writer);
        writer.bytes(self.signing.as_bytes());
        Zeroizing::new(writer.finish())
    }

    /// Decodes [`Self::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let mut reader = Reader::with_header(bytes, Kind::GroupSender)?;
        let distribution_id = reader.array("distribution id")?;
        let chain_id = reader.u32("chain id")?;
        let chain = Chain::read(&mut reader)?;
        let seed = Zeroizing::new(reader.array::<32>("signing seed")?);
        reader.finish()?;
        Ok(Self {
            distribution_id,
            chain_id,
            chain,
            signing: SigningKey::from_bytes(&seed),
        })
    }
}

#[derive(Debug, Clone)]
struct ReceiverState {
    chain_id: u32,
    signing_key: IdentityKey,
    chain: ReceivingChain,
}

/// The chains received from one sender device for one group (newest last).
#[derive(Debug, Clone, Default)]
pub struct SenderKeyRecord {
    states: VecDeque<ReceiverState>,
}

impl SenderKeyRecord {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the chain of a distribution message. A chain already held with the same
    /// signing key is kept as is (it may be further along); otherwise it is replaced.
    pub fn process_distribution(&mut self, message: &DistributionMessage) {
        if let Some(existing) = self
            .states
            .iter()
            .position(|s| s.chain_id == message.chain_id)
        {
            if self.states[existing].signing_key == message.signing_key {
                return;
            }
            self.states.remove(existing);
        }
        self.states.push_back(ReceiverState {
            chain_id: message.chain_id,
            signing_key: message.signing_key,
            chain: ReceivingChain::new(Chain {
                key: message.chain_key.clone(),
                index: message.iteration,
            }),
        });
        while self.states.len() > MAX_SENDER_KEY_STATES {
            self.states.pop_front();
        }
    }

    /// Verifies and decrypts a group message; on error nothing changes.
    pub fn decrypt(&mut self, message: &SenderKeyMessage) -> Result<Vec<u8>, CryptoError> {
        let state = self
            .states
            .iter_mut()
            .find(|s| s.chain_id == message.chain_id)
            .ok_or(CryptoError::UnknownSenderChain(message.chain_id))?;
        state.signing_key.verify_labelled(
            SENDER_KEY_SIGNATURE_LABEL,
            &message.signed,
            &message.signature,
            "sender-key message",
        )?;
        let (seed, lookup) = state.chain.message_key(message.iteration)?;
        let (header, ciphertext) = message.signed.split_at(HEADER_LEN);
        let plaintext =
            MessageKeys::derive(&seed, SENDER_MESSAGE_KEY_INFO).open(ciphertext, header)?;
        state.chain.commit(lookup);
        Ok(plaintext)
    }

    /// Versioned encoding (`01 13 ‖ count ‖ (chain id ‖ signing key ‖ chain)*`).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut writer = Writer::with_header(Kind::SenderKeyRecord, 128);
        writer.count(self.states.len());
        for state in &self.states {
            writer
                .u32(state.chain_id)
                .bytes(&state.signing_key.to_bytes());
            state.chain.write(&mut writer);
        }
        Zeroizing::new(writer.finish())
    }

    /// Decodes [`Self::to_bytes`] (untrusted input: every count is bounded).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let mut reader = Reader::with_header(bytes, Kind::SenderKeyRecord)?;
        let count = reader.count("sender-key states", MAX_SENDER_KEY_STATES)?;
        let mut states = VecDeque::with_capacity(count);
        for _ in 0..count {
            states.push_back(ReceiverState {
                chain_id: reader.u32("chain id")?,
                signing_key: IdentityKey::from_bytes(&reader.array("signing key")?)?,
                chain: ReceivingChain::read(&mut reader)?,
            });
        }
        reader.finish()?;
        Ok(Self { states })
    }
}
