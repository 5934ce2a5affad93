//! Thin wrappers over the RustCrypto/dalek primitives: secret byte strings, HKDF,
//! HMAC chains, AES-256-GCM with derived keys and checked X25519.
//!
//! Nothing here is a hand-written primitive; this module only fixes how the
//! primitives are called so the rest of the crate cannot call them differently.

use std::fmt;
use std::sync::OnceLock;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand_core::CryptoRng;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::codec::{DecodeError, Reader, Writer};
use super::error::CryptoError;

/// Length of an X25519 public key, secret key or shared secret.
pub const X25519_KEY_LEN: usize = 32;

/// A 32-byte secret (root key, chain key, message-key seed, shared secret).
/// Wiped on drop; its `Debug` output never shows the bytes.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct Secret32([u8; 32]);

impl Secret32 {
    pub(crate) fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub(crate) fn read(reader: &mut Reader<'_>, field: &'static str) -> Result<Self, DecodeError> {
        Ok(Self(reader.array(field)?))
    }

    pub(crate) fn random<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }
}

impl PartialEq for Secret32 {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for Secret32 {}

impl fmt::Debug for Secret32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret32(<redacted>)")
    }
}

/// HKDF-SHA256 into `out`; `salt` `None` means 32 zero bytes (RFC 5869).
pub(crate) fn hkdf(salt: Option<&[u8]>, ikm: &[u8], info: &[u8], out: &mut [u8]) {
    // Output lengths used in this crate (32 to 64 bytes) are far below 255 * 32.
    let result = Hkdf::<Sha256>::new(salt, ikm).expand(info, out);
    debug_assert!(result.is_ok());
}

/// The keyed HMAC-SHA256 state of a chain key.
fn keyed_hmac(chain_key: &Secret32) -> Hmac<Sha256> {
    <Hmac<Sha256> as KeyInit>::new_from_slice(chain_key.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"))
}

fn finish(mut mac: Hmac<Sha256>, input: u8) -> Secret32 {
    mac.update(&[input]);
    Secret32(mac.finalize().into_bytes().into())
}

/// Only the next chain key, `HMAC(ck, 0x02)`: for positions whose message key is not kept.
pub(crate) fn next_chain_key(chain_key: &Secret32) -> Secret32 {
    finish(keyed_hmac(chain_key), super::consts::CHAIN_KEY_SEED)
}

/// One symmetric-ratchet step (Signal's KDF_CK): returns (message-key seed, next chain key),
/// i.e. `(HMAC(ck, 0x01), HMAC(ck, 0x02))`. The keyed HMAC state is computed once and
/// cloned for both inputs.
pub(crate) fn chain_step(chain_key: &Secret32) -> (Secret32, Secret32) {
    use super::consts::{CHAIN_KEY_SEED, MESSAGE_KEY_SEED};
    let keyed = keyed_hmac(chain_key);
    (
        finish(keyed.clone(), MESSAGE_KEY_SEED),
        finish(keyed, CHAIN_KEY_SEED),
    )
}

/// Double Ratchet KDF_RK: HKDF(salt = root key, ikm = DH output) → (root key, chain key).
pub(crate) fn root_step(
    root_key: &Secret32,
    dh_output: &Secret32,
    info: &[u8],
) -> (Secret32, Secret32) {
    let mut okm = Zeroizing::new([0u8; 64]);
    hkdf(
        Some(root_key.as_bytes()),
        dh_output.as_bytes(),
        info,
        okm.as_mut(),
    );
    let mut root = [0u8; 32];
    let mut chain = [0u8; 32];
    root.copy_from_slice(&okm[..32]);
    chain.copy_from_slice(&okm[32..]);
    (Secret32(root), Secret32(chain))
}

/// AES-256-GCM key and nonce expanded from a message-key seed.
///
/// Each seed comes from a distinct (chain, index) position and is used for exactly
/// one message, so every (key, nonce) pair encrypts at most one plaintext.
pub(crate) struct MessageKeys {
    cipher: Aes256Gcm,
    nonce: [u8; 12],
}

impl MessageKeys {
    /// HKDF(salt = none, ikm = seed, info) → 32-byte AES key ‖ 12-byte nonce.
    pub(crate) fn derive(seed: &Secret32, info: &[u8]) -> Self {
        let mut okm = Zeroizing::new([0u8; 44]);
        hkdf(None, seed.as_bytes(), info, okm.as_mut());
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&okm[..32]);
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&okm[32..]);
        let cipher = Aes256Gcm::new(&Key::<Aes256Gcm>::from(*key));
        Self { cipher, nonce }
    }

    /// Encrypts `plaintext`, authenticating `aad`; returns ciphertext ‖ tag.
    pub(crate) fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let nonce = aes_gcm::aead::Nonce::<Aes256Gcm>::from(self.nonce);
        self.cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .unwrap_or_else(|_| unreachable!("plaintexts are bounded far below the GCM limit"))
    }

    /// Decrypts and authenticates ciphertext ‖ tag.
    pub(crate) fn open(&self, ciphertext: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let nonce = aes_gcm::aead::Nonce::<Aes256Gcm>::from(self.nonce);
        self.cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map_err(|_| CryptoError::DecryptFailed)
    }
}

/// An X25519 key pair. The secret is wiped on drop (x25519-dalek does it).
///
/// A key pair decoded from stored state computes its public key (a base-point
/// multiplication) only when first asked for it: most decoded keys never need it
/// (a session record is decoded for every message; a signed prekey for every
/// handshake it answers), and the secret alone does every Diffie-Hellman.
#[derive(Clone)]
pub(crate) struct X25519KeyPair {
    secret: StaticSecret,
    public: OnceLock<PublicKey>,
}

impl X25519KeyPair {
    pub(crate) fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(bytes.as_mut());
        Self::from_secret(StaticSecret::from(*bytes))
    }

    /// A key pair whose public key is computed on first use.
    fn from_secret_bytes_lazy(bytes: [u8; 32]) -> Self {
        Self {
            secret: StaticSecret::from(bytes),
            public: OnceLock::new(),
        }
    }

    pub(crate) fn from_secret(secret: StaticSecret) -> Self {
        let public = OnceLock::from(PublicKey::from(&secret));
        Self { secret, public }
    }

    fn public(&self) -> &PublicKey {
        self.public.get_or_init(|| PublicKey::from(&self.secret))
    }

    pub(crate) fn public_bytes(&self) -> [u8; 32] {
        self.public().to_bytes()
    }

    pub(crate) fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.secret.to_bytes())
    }

    /// X25519 with a checked result: an all-zero output (low-order peer key) is an error.
    pub(crate) fn dh(&self, their_public: &[u8; 32]) -> Result<Secret32, CryptoError> {
        let shared = self.secret.diffie_hellman(&PublicKey::from(*their_public));
        if !shared.was_contributory() {
            return Err(CryptoError::NonContributory);
        }
        Ok(Secret32(shared.to_bytes()))
    }

    pub(crate) fn write(&self, writer: &mut Writer) {
        writer.bytes(self.secret_bytes().as_ref());
    }

    pub(crate) fn read(reader: &mut Reader<'_>, field: &'static str) -> Result<Self, DecodeError> {
        let bytes = Zeroizing::new(reader.array::<32>(field)?);
        Ok(Self::from_secret_bytes_lazy(*bytes))
    }
}

impl fmt::Debug for X25519KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X25519KeyPair")
            .field("public", &hex_prefix(&self.public_bytes()))
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The u-coordinates of the X25519 points of small order (and their non-canonical
/// aliases), with the ignored top bit cleared. DH with any of them is all zeros.
const LOW_ORDER_POINTS: [[u8; 32]; 7] = [
    [0; 32],
    {
        let mut p = [0u8; 32];
        p[0] = 1;
        p
    },
    [
        0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4,
        0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49,
        0xb8, 0x00,
    ],
    [
        0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83, 0xef,
        0x5b, 0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f,
        0x11, 0x57,
    ],
    field_element_minus(1),
    field_element_minus(0),
    field_element_minus(-1),
];

/// p - k for p = 2^255 - 19, little-endian (k in -1..=1).
const fn field_element_minus(k: i8) -> [u8; 32] {
    let mut p = [0xffu8; 32];
    p[31] = 0x7f;
    p[0] = (0xed_i16 - k as i16) as u8;
    p
}

/// Rejects X25519 public keys of small order, which would make a DH output
/// independent of our secret.
pub(crate) fn check_x25519_public(key: &[u8; 32], what: &'static str) -> Result<(), CryptoError> {
    let mut masked = *key;
    masked[31] &= 0x7f;
    let low = LOW_ORDER_POINTS
        .iter()
        .fold(subtle::Choice::from(0), |acc, point| {
            acc | point.ct_eq(&masked)
        });
    if bool::from(low) {
        return Err(CryptoError::InvalidKey(what));
    }
    Ok(())
}

/// The first four bytes of a public key in hex, for `Debug` output.
pub(crate) fn hex_prefix(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        + "…"
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn low_order_list_really_is_low_order() {
        let mut rng = rand::rngs::ChaCha20Rng::from_seed([1; 32]);
        let pair = X25519KeyPair::generate(&mut rng);
        for point in LOW_ORDER_POINTS {
            assert!(matches!(pair.dh(&point), Err(CryptoError::NonContributory)));
            assert!(check_x25519_public(&point, "test").is_err());
        }
        let peer = X25519KeyPair::generate(&mut rng);
        assert!(check_x25519_public(&peer.public_bytes(), "test").is_ok());
        assert_eq!(
            pair.dh(&peer.public_bytes()).unwrap(),
            peer.dh(&pair.public_bytes()).unwrap()
        );
    }

    #[test]
    fn secrets_are_wiped_on_drop() {
        fn wiped_on_drop<T: ZeroizeOnDrop>() {}
        wiped_on_drop::<Secret32>();
        wiped_on_drop::<x25519_dalek::StaticSecret>();
        wiped_on_drop::<ed25519_dalek::SigningKey>();
        wiped_on_drop::<aes_gcm::Aes256Gcm>();
        let mut secret = Secret32::from_bytes([7; 32]);
        secret.zeroize();
        assert_eq!(secret.as_bytes(), &[0; 32]);
    }

    #[test]
    fn debug_output_hides_secrets() {
        let secret = Secret32::from_bytes([0xab; 32]);
        assert!(!format!("{secret:?}").contains("ab"));
        let pair = X25519KeyPair::from_secret(StaticSecret::from([0x5c; 32]));
        let debug = format!("{pair:?}");
        assert!(!debug.contains("5c5c"));
    }

    #[test]
    fn a_decoded_key_pair_computes_the_same_public_key_on_demand() {
        use crate::codec::Kind;
        let pair = X25519KeyPair::from_secret(StaticSecret::from([0x21; 32]));
        let mut writer = Writer::with_header(Kind::OneTimePreKey, 32);
        pair.write(&mut writer);
        let bytes = writer.finish();
        let mut reader = Reader::with_header(&bytes, Kind::OneTimePreKey).unwrap();
        let decoded = X25519KeyPair::read(&mut reader, "test").unwrap();
        assert!(decoded.public.get().is_none());
        assert_eq!(decoded.public_bytes(), pair.public_bytes());
        assert!(decoded.public.get().is_some());
        assert_eq!(
            decoded.dh(&pair.public_bytes()).unwrap(),
            pair.dh(&decoded.public_bytes()).unwrap()
        );
    }

    #[test]
    fn message_keys_reject_tampering() {
        let keys = MessageKeys::derive(&Secret32::from_bytes([3; 32]), b"info");
        let mut sealed = keys.seal(b"hello", b"ad");
        assert_eq!(keys.open(&sealed, b"ad").unwrap(), b"hello");
        assert!(keys.open(&sealed, b"ae").is_err());
        sealed[0] ^= 1;
        assert!(keys.open(&sealed, b"ad").is_err());
    }
}
