//! Device and account identity keys.
//!
//! Both are Ed25519 key pairs. A device identity key also takes part in PQXDH as an
//! X25519 key through the birational Ed25519→X25519 map (the Montgomery form of the
//! public point, the clamped SHA-512 scalar of the secret), so one 32-byte public key
//! identifies a device on the wire. Every signature covers a domain-separation label
//! followed by the message, so signatures made for one purpose never verify for another.

use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand_core::CryptoRng;
use subtle::ConstantTimeEq;
use x25519_dalek::StaticSecret;
use zeroize::Zeroizing;

use super::codec::{Kind, Reader, Writer};
use super::consts::{ACCOUNT_SIGNATURE_LABEL, DEVICE_SIGNATURE_LABEL};
use super::error::CryptoError;
use super::primitives::{X25519KeyPair, hex_prefix};

/// Length of an encoded identity public key (Ed25519).
pub const IDENTITY_KEY_LEN: usize = 32;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// A validated identity public key (device or account): 32 bytes of Ed25519.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdentityKey {
    key: VerifyingKey,
}

impl IdentityKey {
    /// Parses 32 bytes, rejecting non-canonical, non-decompressible and small-order points.
    pub fn from_bytes(bytes: &[u8; IDENTITY_KEY_LEN]) -> Result<Self, CryptoError> {
        let key =
            VerifyingKey::from_bytes(bytes).map_err(|_| CryptoError::InvalidKey("identity key"))?;
        if key.is_weak() || !is_canonical_y(bytes) {
            return Err(CryptoError::InvalidKey("identity key"));
        }
        Ok(Self { key })
    }

    pub(crate) fn from_verifying_key(key: VerifyingKey) -> Self {
        Self { key }
    }

    /// The 32-byte wire encoding.
    pub fn to_bytes(&self) -> [u8; IDENTITY_KEY_LEN] {
        self.key.to_bytes()
    }

    /// The X25519 public key this identity uses in PQXDH.
    pub(crate) fn x25519_public(&self) -> [u8; 32] {
        self.key.to_montgomery().to_bytes()
    }

    /// Verifies `signature` over `label ‖ message` (strict Ed25519 verification).
    pub(crate) fn verify_labelled(
        &self,
        label: &[u8],
        message: &[u8],
        signature: &[u8; SIGNATURE_LEN],
        what: &'static str,
    ) -> Result<(), CryptoError> {
        let signature = Signature::from_bytes(signature);
        self.key
            .verify_strict(&labelled(label, message), &signature)
            .map_err(|_| CryptoError::BadSignature(what))
    }

    /// Constant-time equality.
    pub fn ct_eq(&self, other: &Self) -> bool {
        self.key.as_bytes().ct_eq(other.key.as_bytes()).into()
    }
}

impl fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentityKey({})", hex_prefix(self.key.as_bytes()))
    }
}

/// Whether the encoding's y-coordinate (the sign bit cleared) is below
/// p = 2^255 − 19, as in the canonical encoding. For a point that decompressed this
/// is exactly "re-compression gives the same bytes", without re-compressing (which
/// costs a field inversion): the only other non-canonical encodings have x = 0 and
/// the sign bit set, i.e. the identity and the point of order 2, which `is_weak`
/// already rejects.
fn is_canonical_y(bytes: &[u8; IDENTITY_KEY_LEN]) -> bool {
    let top_bits_all_set = bytes[31] & 0x7f == 0x7f && bytes[1..31].iter().all(|b| *b == 0xff);
    !(top_bits_all_set && bytes[0] >= 0xed)
}

pub(crate) fn labelled(label: &[u8], message: &[u8]) -> Vec<u8> {
    let mut data = Vec::with_capacity(label.len() + message.len());
    data.extend_from_slice(label);
    data.extend_from_slice(message);
    data
}

/// An Ed25519 key pair with its X25519 form precomputed.
#[derive(Clone)]
struct IdentityKeyPair {
    signing: SigningKey,
    public: IdentityKey,
    x25519: X25519KeyPair,
}

impl IdentityKeyPair {
    fn from_seed(seed: &[u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(seed);
        let public = IdentityKey {
            key: signing.verifying_key(),
        };
        let x25519 = X25519KeyPair::from_secret(StaticSecret::from(signing.to_scalar_bytes()));
        Self {
            signing,
            public,
            x25519,
        }
    }

    fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut());
        Self::from_seed(&seed)
    }

    fn sign(&self, label: &[u8], message: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.signing.sign(&labelled(label, message)).to_bytes()
    }

    fn encode(&self, kind: Kind) -> Zeroizing<Vec<u8>> {
        let mut writer = Writer::with_header(kind, 32);
        writer.bytes(self.signing.as_bytes());
        Zeroizing::new(writer.finish())
    }

    fn decode(bytes: &[u8], kind: Kind) -> Result<Self, CryptoError> {
        let mut reader = Reader::with_header(bytes, kind)?;
        let seed = Zeroizing::new(reader.array::<32>("identity seed")?);
        reader.finish()?;
        Ok(Self::from_seed(&seed))
    }
}

impl fmt::Debug for IdentityKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityKeyPair")
            .field("public", &self.public)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A device's identity key pair: signs its prekeys and connection challenges and
/// takes part in PQXDH. The secret is wiped on drop and never shown by `Debug`.
#[derive(Clone, Debug)]
pub struct DeviceIdentity {
    pair: IdentityKeyPair,
}

impl DeviceIdentity {
    /// Generates a fresh identity.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self {
            pair: IdentityKeyPair::generate(rng),
        }
    }

    /// The public identity key (32 bytes on the wire).
    pub fn public_key(&self) -> IdentityKey {
        self.pair.public
    }

    /// Signs `DEVICE_SIGNATURE_LABEL ‖ message` (see [`DEVICE_SIGNATURE_LABEL`]).
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.pair.sign(DEVICE_SIGNATURE_LABEL, message)
    }

    /// Signs `label ‖ message` for the prekey signatures of this crate.
    pub(crate) fn sign_labelled(&self, label: &[u8], message: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.pair.sign(label, message)
    }

    /// The X25519 form of the identity key pair.
    pub(crate) fn x25519(&self) -> &X25519KeyPair {
        &self.pair.x25519
    }

    /// Versioned encoding of the secret (`01 10 ‖ seed`); store it only encrypted.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        self.pair.encode(Kind::DeviceIdentity)
    }

    /// Decodes [`Self::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        Ok(Self {
            pair: IdentityKeyPair::decode(bytes, Kind::DeviceIdentity)?,
        })
    }
}

/// A user's account identity key pair: signs the user's device list.
#[derive(Clone, Debug)]
pub struct AccountIdentity {
    pair: IdentityKeyPair,
}

impl AccountIdentity {
    /// Generates a fresh account identity.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self {
            pair: IdentityKeyPair::generate(rng),
        }
    }

    /// The public account key (32 bytes on the wire).
    pub fn public_key(&self) -> IdentityKey {
        self.pair.public
    }

    /// Signs `ACCOUNT_SIGNATURE_LABEL ‖ message` (see [`ACCOUNT_SIGNATURE_LABEL`]).
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.pair.sign(ACCOUNT_SIGNATURE_LABEL, message)
    }

    /// Versioned encoding of the secret (`01 11 ‖ seed`); store it only encrypted.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        self.pair.encode(Kind::AccountIdentity)
    }

    /// Decodes [`Self::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        Ok(Self {
            pair: IdentityKeyPair::decode(bytes, Kind::AccountIdentity)?,
        })
    }
}

/// Verifies a device signature made by [`DeviceIdentity::sign`] with the device's
/// 32-byte public key.
pub fn verify_device_signature(
    public_key: &[u8; IDENTITY_KEY_LEN],
    message: &[u8],
    signature: &[u8; SIGNATURE_LEN],
) -> Result<(), CryptoError> {
    IdentityKey::from_bytes(public_key)?.verify_labelled(
        DEVICE_SIGNATURE_LABEL,
        message,
        signature,
        "device message",
    )
}

/// Verifies an account signature made by [`AccountIdentity::sign`] with the account's
/// 32-byte public key.
pub fn verify_account_signature(
    public_key: &[u8; IDENTITY_KEY_LEN],
    message: &[u8],
    signature: &[u8; SIGNATURE_LEN],
) -> Result<(), CryptoError> {
    IdentityKey::from_bytes(public_key)?.verify_labelled(
        ACCOUNT_SIGNATURE_LABEL,
        message,
        signature,
        "account message",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rng() -> rand::rngs::ChaCha20Rng {
        rand::rngs::ChaCha20Rng::from_seed([7; 32])
    }

    #[test]
    fn device_and_account_signatures_are_domain_separated() {
        let mut rng = rng();
        let device = DeviceIdentity::generate(&mut rng);
        let account = AccountIdentity::generate(&mut rng);
        let d = device.public_key().to_bytes();
        let a = account.public_key().to_bytes();
        let sig = device.sign(b"challenge");
        assert!(verify_device_signature(&d, b"challenge", &sig).is_ok());
        assert!(verify_device_signature(&d, b"challengf", &sig).is_err());
        assert!(verify_account_signature(&d, b"challenge", &sig).is_err());
        let sig = account.sign(b"device list");
        assert!(verify_account_signature(&a, b"device list", &sig).is_ok());
        assert!(verify_device_signature(&a, b"device list", &sig).is_err());
    }

    #[test]
    fn x25519_form_agrees_with_the_public_map() {
        let mut rng = rng();
        let alice = DeviceIdentity::generate(&mut rng);
        let bob = DeviceIdentity::generate(&mut rng);
        let ab = alice
            .x25519()
            .dh(&bob.public_key().x25519_public())
            .unwrap();
        let ba = bob
            .x25519()
            .dh(&alice.public_key().x25519_public())
            .unwrap();
        assert_eq!(ab, ba);
        assert_eq!(
            alice.x25519().public_bytes(),
            alice.public_key().x25519_public()
        );
    }

    #[test]
    fn weak_and_malformed_keys_are_rejected() {
        let mut identity_point = [0u8; 32];
        identity_point[0] = 1;
        assert!(IdentityKey::from_bytes(&identity_point).is_err());
        assert!(IdentityKey::from_bytes(&[0xff; 32]).is_err());
    }

    #[test]
    fn non_canonical_encodings_are_rejected_like_recompression_would() {
        // p + k for k in 0..19 are the encodings of y = k with y ≥ p, both signs.
        for k in 0u8..19 {
            for sign in [0u8, 0x80] {
                let mut bytes = [0xffu8; 32];
                bytes[0] = 0xed + k;
                bytes[31] = 0x7f | sign;
                assert!(!is_canonical_y(&bytes));
                assert!(IdentityKey::from_bytes(&bytes).is_err(), "p + {k}");
                if let Ok(key) = VerifyingKey::from_bytes(&bytes) {
                    assert_ne!(key.to_edwards().compress().to_bytes(), bytes);
                }
            }
        }
        let mut rng = rng();
        for _ in 0..32 {
            let key = DeviceIdentity::generate(&mut rng).public_key().to_bytes();
            assert!(is_canonical_y(&key));
            assert!(IdentityKey::from_bytes(&key).is_ok());
        }
        let mut below_p = [0xffu8; 32];
        below_p[0] = 0xec;
        below_p[31] = 0x7f;
        assert!(is_canonical_y(&below_p));
    }

    #[test]
    fn serialisation_round_trips_and_debug_hides_the_seed() {
        let mut rng = rng();
        let device = DeviceIdentity::generate(&mut rng);
        let bytes = device.to_bytes();
        assert_eq!(&bytes[..2], &[1, 0x10]);
        let restored = DeviceIdentity::from_bytes(&bytes).unwrap();
        assert_eq!(restored.public_key(), device.public_key());
        assert!(AccountIdentity::from_bytes(&bytes).is_err());
        let seed_hex: String = bytes[2..6].iter().map(|b| format!("{b:02x}")).collect();
        assert!(!format!("{device:?}").contains(&seed_hex));
    }
}
