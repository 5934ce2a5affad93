//! The Double Ratchet message encoding.
//!
//! ```text
//! 01 01 ‖ ratchet public key (32) ‖ previous chain length (u32) ‖ message number (u32)
//!       ‖ AES-256-GCM ciphertext ‖ tag (16)
//! ```
//! The first 42 bytes are the header; the AEAD authenticates the session's
//! associated data followed by the header.

use crate::codec::{DecodeError, Kind, Reader, Writer};
use crate::consts::MAX_MESSAGE_LEN;
use crate::error::CryptoError;
use crate::primitives::check_x25519_public;

/// Length of an encoded ratchet-message header (version and kind bytes included).
pub const RATCHET_HEADER_LEN: usize = 42;
/// Length of the AES-GCM tag that ends every ciphertext.
pub const TAG_LEN: usize = 16;

/// A decoded Double Ratchet message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RatchetMessage {
    pub(crate) ratchet_key: [u8; 32],
    pub(crate) previous_counter: u32,
    pub(crate) counter: u32,
    pub(crate) ciphertext: Vec<u8>,
}

impl RatchetMessage {
    /// The sender's current ratchet public key.
    pub fn ratchet_key(&self) -> &[u8; 32] {
        &self.ratchet_key
    }

    /// The message number within the sender's chain.
    pub fn counter(&self) -> u32 {
        self.counter
    }

    /// Decodes an untrusted message. Rejects low-order ratchet keys, ciphertexts
    /// shorter than a tag and anything above [`MAX_MESSAGE_LEN`].
    pub fn decode(bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() > MAX_MESSAGE_LEN {
            return Err(DecodeError::TooLong {
                field: "ratchet message",
                len: bytes.len(),
                max: MAX_MESSAGE_LEN,
            }
            .into());
        }
        let mut reader = Reader::with_header(bytes, Kind::RatchetMessage)?;
        let ratchet_key = reader.array("ratchet key")?;
        check_x25519_public(&ratchet_key, "ratchet key")?;
        let previous_counter = reader.u32("previous chain length")?;
        let counter = reader.u32("message number")?;
        if reader.remaining() < TAG_LEN {
            return Err(DecodeError::Truncated("ciphertext").into());
        }
        let ciphertext = reader.rest("ciphertext", MAX_MESSAGE_LEN)?.to_vec();
        Ok(Self {
            ratchet_key,
            previous_counter,
            counter,
            ciphertext,
        })
    }

    /// The encoded header (the part authenticated as associated data).
    pub(crate) fn header(ratchet_key: &[u8; 32], previous_counter: u32, counter: u32) -> Writer {
        let mut writer = Writer::with_header(Kind::RatchetMessage, RATCHET_HEADER_LEN + 64);
        writer.bytes(ratchet_key).u32(previous_counter).u32(counter);
        writer
    }

    /// Re-encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        let mut writer = Self::header(&self.ratchet_key, self.previous_counter, self.counter);
        writer.bytes(&self.ciphertext);
        writer.finish()
    }
}
