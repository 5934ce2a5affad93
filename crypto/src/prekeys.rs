//! Prekeys (signed X25519, one-time X25519, signed ML-KEM-1024) and prekey bundles.
//!
//! Signatures are made by the device identity key:
//! - signed prekey: `SIGNED_PREKEY_LABEL ‖ id (u32 BE) ‖ X25519 public key (32)`;
//! - KEM prekey: `KEM_PREKEY_LABEL ‖ id (u32 BE) ‖ ML-KEM-1024 encapsulation key (1568)`.

use rand_core::CryptoRng;
use zeroize::Zeroizing;

use super::codec::{DecodeError, Kind, Reader, Writer};
use super::consts::{KEM_PREKEY_LABEL, SIGNED_PREKEY_LABEL};
use super::error::CryptoError;
use super::identity::{DeviceIdentity, IdentityKey, SIGNATURE_LEN};
use super::kem::{KEM_PUBLIC_KEY_LEN, KemKeyPair, KemPublicKey};
use super::primitives::{X25519KeyPair, check_x25519_public};
use super::replay::ReplayCache;

fn signed_prekey_message(id: u32, key: &[u8; 32]) -> Vec<u8> {
    [&id.to_be_bytes()[..], key].concat()
}

fn kem_prekey_message(id: u32, key: &[u8; KEM_PUBLIC_KEY_LEN]) -> Vec<u8> {
    [&id.to_be_bytes()[..], key].concat()
}

/// The public half of a signed prekey, as published to the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPreKeyPublic {
    /// Prekey id, chosen by the owning device.
    pub id: u32,
    /// X25519 public key.
    pub key: [u8; 32],
    /// Identity-key signature (see the module documentation).
    pub signature: [u8; SIGNATURE_LEN],
}

impl SignedPreKeyPublic {
    /// Checks the signature against `identity` and rejects low-order keys.
    pub fn verify(&self, identity: &IdentityKey) -> Result<(), CryptoError> {
        check_x25519_public(&self.key, "signed prekey")?;
        identity.verify_labelled(
            SIGNED_PREKEY_LABEL,
            &signed_prekey_message(self.id, &self.key),
            &self.signature,
            "signed prekey",
        )
    }
}

/// A signed prekey with its secret and the replay cache of the initial messages
/// accepted under it without a one-time prekey.
#[derive(Debug, Clone)]
pub struct SignedPreKey {
    id: u32,
    pair: X25519KeyPair,
    signature: [u8; SIGNATURE_LEN],
    replay: ReplayCache,
}

impl SignedPreKey {
    /// Generates and signs a prekey.
    pub fn generate<R: CryptoRng + ?Sized>(
        id: u32,
        identity: &DeviceIdentity,
        rng: &mut R,
    ) -> Self {
        let pair = X25519KeyPair::generate(rng);
        let signature = identity.sign_labelled(
            SIGNED_PREKEY_LABEL,
            &signed_prekey_message(id, &pair.public_bytes()),
        );
        Self {
            id,
            pair,
            signature,
            replay: ReplayCache::default(),
        }
    }

    /// The prekey id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The handshakes without a one-time prekey accepted under this prekey; its
    /// [`ReplayCache::wants_rotation`] feeds the rotation schedule.
    pub fn replay_cache(&self) -> &ReplayCache {
        &self.replay
    }

    /// Remembers a handshake without a one-time prekey, refusing a repeat (see
    /// [`ReplayCache`]). The caller stores the updated prekey with the new session.
    pub fn remember_handshake(
        &mut self,
        kem_prekey_id: Option<u32>,
        base_key: [u8; 32],
    ) -> Result<(), CryptoError> {
        self.replay.insert(self.id, kem_prekey_id, base_key)
    }

    /// What gets published.
    pub fn public(&self) -> SignedPreKeyPublic {
        SignedPreKeyPublic {
            id: self.id,
            key: self.pair.public_bytes(),
            signature: self.signature,
        }
    }

    pub(crate) fn key_pair(&self) -> &X25519KeyPair {
        &self.pair
    }

    /// Versioned encoding including the secret
    /// (`01 14 ‖ id ‖ secret ‖ signature ‖ replay cache`).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut writer = Writer::with_header(Kind::SignedPreKey, 104 + 37 * self.replay.len());
        writer.u32(self.id);
        self.pair.write(&mut writer);
        writer.bytes(&self.signature);
        self.replay.write(&mut writer);
        Zeroizing::new(writer.finish())
    }

    /// Decodes [`Self::to_bytes`]. A record written before replay caches existed
    /// (it ends after the signature) decodes with an empty cache.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let mut reader = Reader::with_header(bytes, Kind::SignedPreKey)?;
        let id = reader.u32("signed prekey id")?;
        let pair = X25519KeyPair::read(&mut reader, "signed prekey secret")?;
        let signature = reader.array("signed prekey signature")?;
        let replay = match reader.remaining() {
            0 => ReplayCache::default(),
            _ => ReplayCache::read(&mut reader)?,
        };
        reader.finish()?;
        Ok(Self {
            id,
            pair,
            signature,
            replay,
        })
    }
}

/// The public half of a one-time prekey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneTimePreKeyPublic {
    /// Prekey id.
    pub id: u32,
    /// X25519 public key.
    pub key: [u8; 32],
}

/// A one-time prekey with its secret; the store deletes it once a session used it.
#[derive(Debug, Clone)]
pub struct OneTimePreKey {
    id: u32,
    pair: X25519KeyPair,
}

impl OneTimePreKey {
    /// Generates `count` prekeys with consecutive ids starting at `first_id` (wrapping).
    pub fn generate_batch<R: CryptoRng + ?Sized>(
        first_id: u32,
        count: u32,
        rng: &mut R,
    ) -> Vec<Self> {
        (0..count)
            .map(|i| Self {
                id: first_id.wrapping_add(i),
                pair: X25519KeyPair::generate(rng),
            })
            .collect()
    }

    /// The prekey id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// What gets published.
    pub fn public(&self) -> OneTimePreKeyPublic {
        OneTimePreKeyPublic {
            id: self.id,
            key: self.pair.public_bytes(),
        }
    }

    pub(crate) fn key_pair(&self) -> &X25519KeyPair {
        &self.pair
    }

    /// Versioned encoding including the secret (`01 15 ‖ id ‖ secret`).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut writer = Writer::with_header(Kind::OneTimePreKey, 36);
        writer.u32(self.id);
        self.pair.write(&mut writer);
        Zeroizing::new(writer.finish())
    }

    /// Decodes [`Self::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let mut reader = Reader::with_header(bytes, Kind::OneTimePreKey)?;
        let id = reader.u32("one-time prekey id")?;
        let pair = X25519KeyPair::read(&mut reader, "one-time prekey secret")?;
        reader.finish()?;
        Ok(Self { id, pair })
    }
}

/// Whether a KEM prekey is used once or is the signed last-resort fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KemPreKeyKind {
    /// Handed out once by the relay and deleted after use.
    OneTime,
    /// Handed out when no one-time KEM prekey is left; kept until rotated.
    LastResort,
}

/// The public half of a KEM prekey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KemPreKeyPublic {
    /// Prekey id (one id space for one-time and last-resort KEM prekeys).
    pub id: u32,
    /// ML-KEM-1024 encapsulation key.
    pub key: KemPublicKey,
    /// Identity-key signature (see the module documentation).
    pub signature: [u8; SIGNATURE_LEN],
}

impl KemPreKeyPublic {
    /// Checks the signature against `identity`.
    pub fn verify(&self, identity: &IdentityKey) -> Result<(), CryptoError> {
        identity.verify_labelled(
            KEM_PREKEY_LABEL,
            &kem_prekey_message(self.id, self.key.as_bytes()),
            &self.signature,
            "KEM prekey",
        )
    }
}

/// A signed ML-KEM-1024 prekey with its secret.
#[derive(Debug, Clone)]
pub struct KemPreKey {
    id: u32,
    kind: KemPreKeyKind,
    pair: KemKeyPair,
    signature: [u8; SIGNATURE_LEN],
}

impl KemPreKey {
    /// Generates and signs a KEM prekey.
    pub fn generate<R: CryptoRng + ?Sized>(
        id: u32,
        kind: KemPreKeyKind,
        identity: &DeviceIdentity,
        rng: &mut R,
    ) -> Self {
        let pair = KemKeyPair::generate(rng);
        let signature = identity.sign_labelled(
            KEM_PREKEY_LABEL,
            &kem_prekey_message(id, pair.public_key().as_bytes()),
        );
        Self {
            id,
            kind,
            pair,
            signature,
        }
    }

    /// The prekey id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// One-time or last-resort.
    pub fn kind(&self) -> KemPreKeyKind {
        self.kind
    }

    /// What gets published.
    pub fn public(&self) -> KemPreKeyPublic {
        KemPreKeyPublic {
            id: self.id,
            key: self.pair.public_key(),
            signature: self.signature,
        }
    }

    pub(crate) fn key_pair(&self) -> &KemKeyPair {
        &self.pair
    }

    /// Versioned encoding including the secret seed (`01 16 ‖ id ‖ kind ‖ seed ‖ signature`).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut writer = Writer::with_header(Kind::KemPreKey, 133);
        writer
            .u32(self.id)
            .bool(self.kind == KemPreKeyKind::LastResort)
            .bytes(self.pair.seed())
            .bytes(&self.signature);
        Zeroizing::new(writer.finish())
    }

    /// Decodes [`Self::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let mut reader = Reader::with_header(bytes, Kind::KemPreKey)?;
        let id = reader.u32("KEM prekey id")?;
        let kind = match reader.bool("KEM prekey kind")? {
            true => KemPreKeyKind::LastResort,
            false => KemPreKeyKind::OneTime,
        };
        let seed = Zeroizing::new(reader.array("KEM prekey seed")?);
        let signature = reader.array("KEM prekey signature")?;
        reader.finish()?;
        Ok(Self {
            id,
            kind,
            pair: KemKeyPair::from_seed(&seed),
            signature,
        })
    }
}

const BUNDLE_HAS_ONE_TIME: u8 = 0x01;
const BUNDLE_HAS_KEM: u8 = 0x02;

/// What an initiator fetches to start a session with one remote device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreKeyBundle {
    /// The remote device's identity key.
    pub identity_key: IdentityKey,
    /// Its current signed prekey.
    pub signed_prekey: SignedPreKeyPublic,
    /// A one-time prekey, if the relay had one left.
    pub one_time_prekey: Option<OneTimePreKeyPublic>,
    /// A KEM prekey (one-time, or last-resort when none is left).
    pub kem_prekey: Option<KemPreKeyPublic>,
}

impl PreKeyBundle {
    /// Checks both signatures and rejects low-order X25519 keys.
    pub fn verify(&self) -> Result<(), CryptoError> {
        self.signed_prekey.verify(&self.identity_key)?;
        if let Some(one_time) = &self.one_time_prekey {
            check_x25519_public(&one_time.key, "one-time prekey")?;
        }
        if let Some(kem) = &self.kem_prekey {
            kem.verify(&self.identity_key)?;
        }
        Ok(())
    }

    /// Checks the bundle once ([`Self::verify`]) and wraps it so that starting a
    /// session from it does not check the signatures again.
    pub fn into_verified(self) -> Result<VerifiedPreKeyBundle, CryptoError> {
        self.verify()?;
        Ok(VerifiedPreKeyBundle { bundle: self })
    }

    /// Versioned encoding (layout in `docs/crypto.md`).
    pub fn encode(&self) -> Vec<u8> {
        let mut writer = Writer::with_header(Kind::PreKeyBundle, 1800);
        let flags = self
            .one_time_prekey
            .as_ref()
            .map_or(0, |_| BUNDLE_HAS_ONE_TIME)
            | self.kem_prekey.as_ref().map_or(0, |_| BUNDLE_HAS_KEM);
        writer
            .bytes(&self.identity_key.to_bytes())
            .u32(self.signed_prekey.id)
            .bytes(&self.signed_prekey.key)
            .bytes(&self.signed_prekey.signature)
            .u8(flags);
        if let Some(one_time) = &self.one_time_prekey {
            writer.u32(one_time.id).bytes(&one_time.key);
        }
        if let Some(kem) = &self.kem_prekey {
            writer
                .u32(kem.id)
                .bytes(kem.key.as_bytes())
                .bytes(&kem.signature);
        }
        writer.finish()
    }

    /// Decodes an untrusted bundle; keys are validated, signatures are checked by
    /// [`Self::verify`] (which the handshake always calls).
    pub fn decode(bytes: &[u8]) -> Result<Self, CryptoError> {
        let mut reader = Reader::with_header(bytes, Kind::PreKeyBundle)?;
        let identity_key = IdentityKey::from_bytes(&reader.array("bundle identity key")?)?;
        let signed_prekey = SignedPreKeyPublic {
            id: reader.u32("signed prekey id")?,
            key: reader.array("signed prekey")?,
            signature: reader.array("signed prekey signature")?,
        };
        let flags = reader.u8("bundle flags")?;
        if flags & !(BUNDLE_HAS_ONE_TIME | BUNDLE_HAS_KEM) != 0 {
            return Err(DecodeError::InvalidValue("bundle flags").into());
        }
        let one_time_prekey = if flags & BUNDLE_HAS_ONE_TIME != 0 {
            Some(OneTimePreKeyPublic {
                id: reader.u32("one-time prekey id")?,
                key: reader.array("one-time prekey")?,
            })
        } else {
            None
        };
        let kem_prekey = if flags & BUNDLE_HAS_KEM != 0 {
            Some(KemPreKeyPublic {
                id: reader.u32("KEM prekey id")?,
                key: KemPublicKey::from_bytes(reader.take(KEM_PUBLIC_KEY_LEN, "KEM prekey")?)?,
                signature: reader.array("KEM prekey signature")?,
            })
        } else {
            None
        };
        reader.finish()?;
        Ok(Self {
            identity_key,
            signed_prekey,
            one_time_prekey,
            kem_prekey,
        })
    }
}

/// A bundle whose signatures and keys [`PreKeyBundle::into_verified`] checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPreKeyBundle {
    bundle: PreKeyBundle,
}

impl VerifiedPreKeyBundle {
    /// The checked bundle.
    pub fn bundle(&self) -> &PreKeyBundle {
        &self.bundle
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn bundle() -> (PreKeyBundle, DeviceIdentity) {
        let mut rng = rand::rngs::ChaCha20Rng::from_seed([3; 32]);
        let identity = DeviceIdentity::generate(&mut rng);
        let spk = SignedPreKey::generate(1, &identity, &mut rng);
        let opk = OneTimePreKey::generate_batch(10, 1, &mut rng).remove(0);
        let kem = KemPreKey::generate(5, KemPreKeyKind::LastResort, &identity, &mut rng);
        let bundle = PreKeyBundle {
            identity_key: identity.public_key(),
            signed_prekey: spk.public(),
            one_time_prekey: Some(opk.public()),
            kem_prekey: Some(kem.public()),
        };
        (bundle, identity)
    }

    #[test]
    fn bundle_round_trips_and_verifies() {
        let (bundle, _) = bundle();
        bundle.verify().unwrap();
        let decoded = PreKeyBundle::decode(&bundle.encode()).unwrap();
        assert_eq!(decoded, bundle);
    }

    #[test]
    fn bundle_rejects_bad_signatures_lengths_and_low_order_points() {
        let (bundle, _) = bundle();
        let mut bad = bundle.clone();
        bad.signed_prekey.signature[0] ^= 1;
        assert!(matches!(
            bad.verify(),
            Err(CryptoError::BadSignature("signed prekey"))
        ));
        let mut bad = bundle.clone();
        bad.signed_prekey.id += 1;
        assert!(matches!(bad.verify(), Err(CryptoError::BadSignature(_))));
        let mut bad = bundle.clone();
        if let Some(kem) = bad.kem_prekey.as_mut() {
            kem.signature[5] ^= 1;
        }
        assert!(matches!(
            bad.verify(),
            Err(CryptoError::BadSignature("KEM prekey"))
        ));
        let mut bad = bundle.clone();
        bad.signed_prekey.key = [0; 32];
        assert!(matches!(bad.verify(), Err(CryptoError::InvalidKey(_))));
        let mut bad = bundle.clone();
        if let Some(one_time) = bad.one_time_prekey.as_mut() {
            one_time.key[0] = 1;
            one_time.key[1..].fill(0);
        }
        assert!(matches!(bad.verify(), Err(CryptoError::InvalidKey(_))));
        let encoded = bundle.encode();
        for len in 0..encoded.len() {
            assert!(
                PreKeyBundle::decode(&encoded[..len]).is_err(),
                "prefix {len}"
            );
        }
        let mut long = encoded.clone();
        long.push(0);
        assert!(matches!(
            PreKeyBundle::decode(&long),
            Err(CryptoError::Decode(DecodeError::TrailingBytes(1)))
        ));
    }

    #[test]
    fn only_a_checked_bundle_becomes_verified() {
        let (bundle, _) = bundle();
        let mut bad = bundle.clone();
        bad.signed_prekey.signature[1] ^= 1;
        assert!(matches!(
            bad.into_verified(),
            Err(CryptoError::BadSignature("signed prekey"))
        ));
        let mut bad = bundle.clone();
        if let Some(kem) = bad.kem_prekey.as_mut() {
            kem.id += 1;
        }
        assert!(matches!(
            bad.into_verified(),
            Err(CryptoError::BadSignature("KEM prekey"))
        ));
        assert_eq!(bundle.clone().into_verified().unwrap().bundle(), &bundle);
    }

    #[test]
    fn private_prekeys_round_trip() {
        let mut rng = rand::rngs::ChaCha20Rng::from_seed([4; 32]);
        let identity = DeviceIdentity::generate(&mut rng);
        let mut spk = SignedPreKey::generate(1, &identity, &mut rng);
        assert_eq!(
            SignedPreKey::from_bytes(&spk.to_bytes()).unwrap().public(),
            spk.public()
        );
        // A record from before replay caches (no count after the signature) still decodes.
        let legacy = spk.to_bytes();
        let legacy = SignedPreKey::from_bytes(&legacy[..legacy.len() - 4]).unwrap();
        assert!(legacy.replay_cache().is_empty());
        spk.remember_handshake(Some(3), [9; 32]).unwrap();
        let restored = SignedPreKey::from_bytes(&spk.to_bytes()).unwrap();
        assert_eq!(restored.replay_cache(), spk.replay_cache());
        assert_eq!(restored.replay_cache().len(), 1);
        let opk = OneTimePreKey::generate_batch(u32::MAX, 2, &mut rng);
        assert_eq!(opk[1].id(), 0);
        assert_eq!(
            OneTimePreKey::from_bytes(&opk[0].to_bytes())
                .unwrap()
                .public(),
            opk[0].public()
        );
        let kem = KemPreKey::generate(9, KemPreKeyKind::OneTime, &identity, &mut rng);
        let restored = KemPreKey::from_bytes(&kem.to_bytes()).unwrap();
        assert_eq!(restored.public(), kem.public());
        assert_eq!(restored.kind(), KemPreKeyKind::OneTime);
    }
}
