//! Attachment encryption: a chunked AEAD with constant memory for any size.
//!
//! The plaintext is split into chunks of [`CHUNK_LEN`] bytes (the last one may
//! be shorter, or empty for an empty file). Chunk `i` is sealed with
//! AES-256-GCM under the attachment's fresh random key with nonce
//! `0x00 0x00 0x00 ‖ i (u64, big-endian) ‖ last` where `last` is 1 for the
//! final chunk and 0 otherwise, so chunks cannot be reordered, dropped or
//! truncated without detection. The ciphertext is the concatenation of the
//! sealed chunks; its SHA-256 is the relay's blob id and is checked before
//! decryption. Encryption is deterministic for a given key, so an upload can
//! resume at any ciphertext offset by re-sealing the chunk that holds it.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Key};

/// Plaintext bytes per chunk.
pub const CHUNK_LEN: usize = 64 * 1024;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;
/// Ciphertext bytes per full chunk.
pub const SEALED_CHUNK_LEN: usize = CHUNK_LEN + TAG_LEN;

/// Why a chunk did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttachmentError {
    /// Wrong key, tampered, reordered or truncated ciphertext.
    #[error("attachment chunk {0} failed authentication")]
    Chunk(u64),
    /// The ciphertext length cannot come from this format.
    #[error("attachment ciphertext has an impossible length")]
    Length,
}

/// Number of chunks for a plaintext of `len` bytes (at least one).
pub fn chunk_count(len: u64) -> u64 {
    len.div_ceil(CHUNK_LEN as u64).max(1)
}

/// Ciphertext length for a plaintext of `len` bytes.
pub fn sealed_len(len: u64) -> u64 {
    len + chunk_count(len) * TAG_LEN as u64
}

/// Plaintext length for a ciphertext of `sealed` bytes, if possible.
pub fn plain_len(sealed: u64) -> Result<u64, AttachmentError> {
    let full = SEALED_CHUNK_LEN as u64;
    let (chunks, rest) = (sealed / full, sealed % full);
    match rest {
        0 if chunks > 0 => Ok(sealed - chunks * TAG_LEN as u64),
        r if r >= TAG_LEN as u64 => Ok(sealed - (chunks + 1) * TAG_LEN as u64),
        _ => Err(AttachmentError::Length),
    }
}

/// Seals and opens the chunks of one attachment.
pub struct ChunkCipher {
    cipher: Aes256Gcm,
}

fn nonce(index: u64, last: bool) -> aes_gcm::aead::Nonce<Aes256Gcm> {
    let mut nonce = [0u8; 12];
    nonce[3..11].copy_from_slice(&index.to_be_bytes());
    nonce[11] = u8::from(last);
    aes_gcm::aead::Nonce::<Aes256Gcm>::from(nonce)
}

impl ChunkCipher {
    /// A cipher for `key`.
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            cipher: Aes256Gcm::new(&Key::<Aes256Gcm>::from(*key)),
        }
    }

    /// Seals chunk `index` (at most [`CHUNK_LEN`] bytes).
    pub fn seal(&self, index: u64, last: bool, plaintext: &[u8]) -> Vec<u8> {
        // AES-GCM encryption cannot fail for inputs this small.
        self.cipher
            .encrypt(&nonce(index, last), plaintext)
            .unwrap_or_default()
    }

    /// Opens chunk `index`.
    pub fn open(&self, index: u64, last: bool, sealed: &[u8]) -> Result<Vec<u8>, AttachmentError> {
        self.cipher
            .decrypt(&nonce(index, last), sealed)
            .map_err(|_| AttachmentError::Chunk(index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal_all(cipher: &ChunkCipher, data: &[u8]) -> Vec<u8> {
        let count = chunk_count(data.len() as u64);
        let mut out = Vec::new();
        for i in 0..count {
            let start = (i as usize) * CHUNK_LEN;
            let end = (start + CHUNK_LEN).min(data.len());
            out.extend(cipher.seal(i, i + 1 == count, &data[start..end]));
        }
        out
    }

    fn open_all(cipher: &ChunkCipher, sealed: &[u8]) -> Result<Vec<u8>, AttachmentError> {
        let len = plain_len(sealed.len() as u64)?;
        let count = chunk_count(len);
        let mut out = Vec::new();
        for (i, chunk) in sealed.chunks(SEALED_CHUNK_LEN).enumerate() {
            let i = i as u64;
            out.extend(cipher.open(i, i + 1 == count, chunk)?);
        }
        Ok(out)
    }

    #[test]
    fn lengths_are_consistent() {
        for len in [
            0,
            1,
            CHUNK_LEN as u64 - 1,
            CHUNK_LEN as u64,
            CHUNK_LEN as u64 + 1,
            5 << 20,
        ] {
            assert_eq!(plain_len(sealed_len(len)), Ok(len), "{len}");
        }
        assert_eq!(plain_len(5), Err(AttachmentError::Length));
        assert_eq!(plain_len(0), Err(AttachmentError::Length));
    }

    #[test]
    fn round_trip_and_tampering() {
        let cipher = ChunkCipher::new(&[7; 32]);
        let data: Vec<u8> = (0..(CHUNK_LEN * 2 + 100)).map(|i| i as u8).collect();
        let sealed = seal_all(&cipher, &data);
        assert_eq!(sealed.len() as u64, sealed_len(data.len() as u64));
        assert_eq!(open_all(&cipher, &sealed).unwrap(), data);
        assert_eq!(open_all(&cipher, &seal_all(&cipher, &[])).unwrap(), b"");

        let mut flipped = sealed.clone();
        flipped[10] ^= 1;
        assert_eq!(open_all(&cipher, &flipped), Err(AttachmentError::Chunk(0)));
        // Dropping the last chunk leaves a non-final chunk at the end.
        let truncated = &sealed[..SEALED_CHUNK_LEN * 2];
        assert!(open_all(&cipher, truncated).is_err());
        assert!(open_all(&ChunkCipher::new(&[8; 32]), &sealed).is_err());
    }
}
