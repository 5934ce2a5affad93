//! The Double Ratchet (Signal specification, revision 4) with AES-256-GCM.
//!
//! Decryption is transactional: every key is derived into locals first and the state
//! is only updated after the AEAD accepted the message, so a failed decrypt leaves
//! the state exactly as it was. The sending half of a DH step is taken lazily, on the
//! next encrypt, which yields the same keys as the specification's eager step.

mod message;

use std::collections::VecDeque;

use rand_core::CryptoRng;

use super::chain::{Chain, ReceivingChain};
use super::codec::{DecodeError, Reader, Writer};
use super::consts::{MAX_PLAINTEXT_LEN, MAX_RECEIVER_CHAINS, MESSAGE_KEY_INFO, ROOT_KDF_INFO};
use super::error::CryptoError;
use super::primitives::{MessageKeys, Secret32, X25519KeyPair, root_step};
pub use message::{RATCHET_HEADER_LEN, RatchetMessage, TAG_LEN};

/// A receiving chain and the sender ratchet key it belongs to.
#[derive(Debug, Clone)]
struct ReceiverChain {
    ratchet_key: [u8; 32],
    chain: ReceivingChain,
}

/// The Double Ratchet state of one session.
#[derive(Debug, Clone)]
pub(crate) struct RatchetState {
    root_key: Secret32,
    our_ratchet: X25519KeyPair,
    their_ratchet: Option<[u8; 32]>,
    /// `None` when the next encrypt must first take the sending half of a DH step.
    sending: Option<Chain>,
    previous_counter: u32,
    /// Oldest first; at most [`MAX_RECEIVER_CHAINS`].
    receivers: VecDeque<ReceiverChain>,
}

impl RatchetState {
    /// Alice's initial state: a fresh ratchet key against Bob's signed prekey.
    pub(crate) fn initiator<R: CryptoRng + ?Sized>(
        shared_secret: &Secret32,
        their_signed_prekey: &[u8; 32],
        rng: &mut R,
    ) -> Result<Self, CryptoError> {
        let our_ratchet = X25519KeyPair::generate(rng);
        let (root_key, chain_key) = root_step(
            shared_secret,
            &our_ratchet.dh(their_signed_prekey)?,
            ROOT_KDF_INFO,
        );
        Ok(Self {
            root_key,
            our_ratchet,
            their_ratchet: Some(*their_signed_prekey),
            sending: Some(Chain::new(chain_key)),
            previous_counter: 0,
            receivers: VecDeque::new(),
        })
    }

    /// Bob's initial state: his signed prekey is his first ratchet key.
    pub(crate) fn responder(shared_secret: Secret32, our_signed_prekey: X25519KeyPair) -> Self {
        Self {
            root_key: shared_secret,
            our_ratchet: our_signed_prekey,
            their_ratchet: None,
            sending: None,
            previous_counter: 0,
            receivers: VecDeque::new(),
        }
    }

    /// Encrypts one message; returns its encoding.
    pub(crate) fn encrypt<R: CryptoRng + ?Sized>(
        &mut self,
        associated_data: &[u8],
        plaintext: &[u8],
        rng: &mut R,
    ) -> Result<Vec<u8>, CryptoError> {
        if plaintext.len() > MAX_PLAINTEXT_LEN {
            return Err(CryptoError::PlaintextTooLong(plaintext.len()));
        }
        let chain = match &self.sending {
            Some(chain) => chain.clone(),
            None => self.sending_dh_step(rng)?,
        };
        let (seed, next) = chain.step()?;
        let mut writer = RatchetMessage::header(
            &self.our_ratchet.public_bytes(),
            self.previous_counter,
            chain.index,
        );
        let aad = [associated_data, writer.as_slice()].concat();
        let ciphertext = MessageKeys::derive(&seed, MESSAGE_KEY_INFO).seal(plaintext, &aad);
        writer.bytes(&ciphertext);
        self.sending = Some(next);
        Ok(writer.finish())
    }

    /// The sending half of a DH step: a new ratchet key and sending chain.
    fn sending_dh_step<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
    ) -> Result<Chain, CryptoError> {
        let their = self.their_ratchet.ok_or(CryptoError::NoSession)?;
        let our_ratchet = X25519KeyPair::generate(rng);
        let (root_key, chain_key) =
            root_step(&self.root_key, &our_ratchet.dh(&their)?, ROOT_KDF_INFO);
        self.root_key = root_key;
        self.our_ratchet = our_ratchet;
        Ok(Chain::new(chain_key))
    }

    /// Decrypts one message; on any error the state is unchanged.
    pub(crate) fn decrypt(
        &mut self,
        associated_data: &[u8],
        message: &RatchetMessage,
    ) -> Result<Vec<u8>, CryptoError> {
        let header = RatchetMessage::header(
            &message.ratchet_key,
            message.previous_counter,
            message.counter,
        );
        let aad = [associated_data, header.as_slice()].concat();
        let open = |seed: &Secret32| {
            MessageKeys::derive(seed, MESSAGE_KEY_INFO).open(&message.ciphertext, &aad)
        };

        if let Some(position) = self
            .receivers
            .iter()
            .position(|r| r.ratchet_key == message.ratchet_key)
        {
            let (seed, lookup) = self.receivers[position]
                .chain
                .message_key(message.counter)?;
            let plaintext = open(&seed)?;
            self.receivers[position].chain.commit(lookup);
            return Ok(plaintext);
        }

        // A new ratchet key: the receiving half of a DH step.
        let current = self
            .receivers
            .back()
            .filter(|r| Some(r.ratchet_key) == self.their_ratchet);
        let tail = current
            .map(|r| r.chain.skip_to(message.previous_counter))
            .transpose()?;
        let (root_key, chain_key) = root_step(
            &self.root_key,
            &self.our_ratchet.dh(&message.ratchet_key)?,
            ROOT_KDF_INFO,
        );
        let mut chain = ReceivingChain::new(Chain::new(chain_key));
        let (seed, lookup) = chain.message_key(message.counter)?;
        let plaintext = open(&seed)?;

        chain.commit(lookup);
        if let (Some(tail), Some(current)) = (tail, self.receivers.back_mut()) {
            current.chain.apply(tail);
        }
        self.root_key = root_key;
        if let Some(sending) = self.sending.take() {
            self.previous_counter = sending.index;
        }
        self.their_ratchet = Some(message.ratchet_key);
        self.receivers.push_back(ReceiverChain {
            ratchet_key: message.ratchet_key,
            chain,
        });
        while self.receivers.len() > MAX_RECEIVER_CHAINS {
            self.receivers.pop_front();
        }
        Ok(plaintext)
    }

    /// Appends the state's encoding (layout in `docs/crypto.md`).
    pub(crate) fn write(&self, writer: &mut Writer) {
        writer.bytes(self.root_key.as_bytes());
        self.our_ratchet.write(writer);
        writer.bool(self.their_ratchet.is_some());
        if let Some(their) = &self.their_ratchet {
            writer.bytes(their);
        }
        writer.bool(self.sending.is_some());
        if let Some(sending) = &self.sending {
            sending.write(writer);
        }
        writer
            .u32(self.previous_counter)
            .count(self.receivers.len());
        for receiver in &self.receivers {
            writer.bytes(&receiver.ratchet_key);
            receiver.chain.write(writer);
        }
    }

    /// Reads what [`Self::write`] wrote.
    pub(crate) fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let root_key = Secret32::read(reader, "root key")?;
        let our_ratchet = X25519KeyPair::read(reader, "our ratchet key")?;
        let their_ratchet = match reader.bool("has their ratchet key")? {
            true => Some(reader.array("their ratchet key")?),
            false => None,
        };
        let sending = match reader.bool("has sending chain")? {
            true => Some(Chain::read(reader)?),
            false => None,
        };
        let previous_counter = reader.u32("previous counter")?;
        let count = reader.count("receiver chains", MAX_RECEIVER_CHAINS)?;
        let receivers = (0..count)
            .map(|_| {
                Ok(ReceiverChain {
                    ratchet_key: reader.array("receiver ratchet key")?,
                    chain: ReceivingChain::read(reader)?,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            root_key,
            our_ratchet,
            their_ratchet,
            sending,
            previous_counter,
            receivers,
        })
    }
}
