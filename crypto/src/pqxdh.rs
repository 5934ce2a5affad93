//! The PQXDH handshake (Signal's PQXDH specification, revision 3) and the
//! prekey message that carries it.
//!
//! ```text
//! DH1 = DH(IK_A, SPK_B)  DH2 = DH(EK_A, IK_B)  DH3 = DH(EK_A, SPK_B)  DH4 = DH(EK_A, OPK_B)
//! (CT, SS) = ML-KEM-1024.Encaps(PQPK_B)
//! SK = HKDF-SHA256(salt = 0^32, ikm = 0xFF^32 ‖ DH1 ‖ DH2 ‖ DH3 [‖ DH4] [‖ SS], info)
//! AD = IK_A ‖ IK_B   (the 32-byte Ed25519 identity keys)
//! ```

use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::codec::{DecodeError, Kind, Reader, Writer};
use super::consts::{MAX_MESSAGE_LEN, PQXDH_INFO, X3DH_INFO};
use super::error::CryptoError;
use super::identity::{DeviceIdentity, IdentityKey};
use super::kem::KEM_CIPHERTEXT_LEN;
use super::prekeys::{KemPreKey, OneTimePreKey, PreKeyBundle, SignedPreKey};
use super::primitives::{Secret32, X25519KeyPair, hkdf};
use super::ratchet::{RatchetMessage, RatchetState};

const HAS_ONE_TIME: u8 = 0x01;
const HAS_KEM: u8 = 0x02;

/// The handshake fields an initiator attaches to its messages until the first reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreKeyHeader {
    /// Initiator's identity key.
    pub identity_key: IdentityKey,
    /// Initiator's ephemeral (base) key EK_A.
    pub base_key: [u8; 32],
    /// Id of the responder's signed prekey that was used.
    pub signed_prekey_id: u32,
    /// Id of the responder's one-time prekey, if one was used.
    pub one_time_prekey_id: Option<u32>,
    /// Id of the responder's KEM prekey and the KEM ciphertext, if a KEM prekey was used.
    pub kem: Option<(u32, Box<[u8; KEM_CIPHERTEXT_LEN]>)>,
}

/// An initial message: the handshake header plus a ratchet message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreKeyMessage {
    /// The handshake fields.
    pub header: PreKeyHeader,
    /// The embedded Double Ratchet message.
    pub message: RatchetMessage,
    /// SHA-256 of the encoded handshake fields (everything before the ratchet message).
    header_digest: [u8; 32],
}

impl PreKeyMessage {
    /// Encodes `header` around an already encoded ratchet message (layout in `docs/crypto.md`).
    pub(crate) fn encode(header: &PreKeyHeader, ratchet_message: &[u8]) -> Vec<u8> {
        let mut writer = Writer::with_header(
            Kind::PreKeyMessage,
            80 + KEM_CIPHERTEXT_LEN + ratchet_message.len(),
        );
        let flags = header.one_time_prekey_id.map_or(0, |_| HAS_ONE_TIME)
            | header.kem.as_ref().map_or(0, |_| HAS_KEM);
        writer
            .u8(flags)
            .bytes(&header.identity_key.to_bytes())
            .bytes(&header.base_key)
            .u32(header.signed_prekey_id);
        if let Some(id) = header.one_time_prekey_id {
            writer.u32(id);
        }
        if let Some((id, ciphertext)) = &header.kem {
            writer.u32(*id).bytes(&ciphertext[..]);
        }
        writer.bytes(ratchet_message);
        writer.finish()
    }

    /// Decodes an untrusted prekey message.
    pub fn decode(bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() > MAX_MESSAGE_LEN {
            return Err(DecodeError::TooLong {
                field: "prekey message",
                len: bytes.len(),
                max: MAX_MESSAGE_LEN,
            }
            .into());
        }
        let mut reader = Reader::with_header(bytes, Kind::PreKeyMessage)?;
        let flags = reader.u8("prekey message flags")?;
        if flags & !(HAS_ONE_TIME | HAS_KEM) != 0 {
            return Err(DecodeError::InvalidValue("prekey message flags").into());
        }
        let identity_key = IdentityKey::from_bytes(&reader.array("initiator identity key")?)?;
        let base_key = reader.array("base key")?;
        super::primitives::check_x25519_public(&base_key, "base key")?;
        let signed_prekey_id = reader.u32("signed prekey id")?;
        let one_time_prekey_id = match flags & HAS_ONE_TIME {
            0 => None,
            _ => Some(reader.u32("one-time prekey id")?),
        };
        let kem = match flags & HAS_KEM {
            0 => None,
            _ => Some((
                reader.u32("KEM prekey id")?,
                Box::new(reader.array("KEM ciphertext")?),
            )),
        };
        let embedded = reader.rest("ratchet message", MAX_MESSAGE_LEN)?;
        let header_digest = Sha256::digest(&bytes[..bytes.len() - embedded.len()]).into();
        let message = RatchetMessage::decode(embedded)?;
        Ok(Self {
            header: PreKeyHeader {
                identity_key,
                base_key,
                signed_prekey_id,
                one_time_prekey_id,
                kem,
            },
            message,
            header_digest,
        })
    }

    /// SHA-256 of the handshake fields; a responder session remembers it so that a
    /// retransmission with altered handshake fields is rejected.
    pub(crate) fn header_digest(&self) -> &[u8; 32] {
        &self.header_digest
    }
}

/// What a handshake produces for the session layer.
pub(crate) struct Handshake {
    pub(crate) ratchet: RatchetState,
    pub(crate) header: PreKeyHeader,
}

fn derive_shared_secret(dh: &[Secret32], kem_secret: Option<&Secret32>) -> Secret32 {
    let mut ikm = Zeroizing::new(Vec::with_capacity(32 * 6));
    ikm.extend_from_slice(&[0xff; 32]);
    for part in dh.iter().chain(kem_secret) {
        ikm.extend_from_slice(part.as_bytes());
    }
    let info = if kem_secret.is_some() {
        PQXDH_INFO
    } else {
        X3DH_INFO
    };
    let mut okm = [0u8; 32];
    hkdf(None, &ikm, info, &mut okm);
    Secret32::from_bytes(okm)
}

/// Runs the initiator side against a bundle whose signatures the caller verified
/// (through [`PreKeyBundle::verify`] or [`PreKeyBundle::into_verified`]).
pub(crate) fn initiate<R: CryptoRng + ?Sized>(
    identity: &DeviceIdentity,
    bundle: &PreKeyBundle,
    require_kem: bool,
    rng: &mut R,
) -> Result<Handshake, CryptoError> {
    if require_kem && bundle.kem_prekey.is_none() {
        return Err(CryptoError::MissingKemPreKey);
    }
    let spk = &bundle.signed_prekey.key;
    let base = X25519KeyPair::generate(rng);
    let mut dh = vec![
        identity.x25519().dh(spk)?,
        base.dh(&bundle.identity_key.x25519_public())?,
        base.dh(spk)?,
    ];
    if let Some(one_time) = &bundle.one_time_prekey {
        dh.push(base.dh(&one_time.key)?);
    }
    let kem = bundle.kem_prekey.as_ref().map(|kem| {
        let (ciphertext, secret) = kem.key.encapsulate(rng);
        (kem.id, ciphertext, secret)
    });
    let shared = derive_shared_secret(&dh, kem.as_ref().map(|(_, _, secret)| secret));
    let ratchet = RatchetState::initiator(&shared, spk, rng)?;
    Ok(Handshake {
        ratchet,
        header: PreKeyHeader {
            identity_key: identity.public_key(),
            base_key: base.public_bytes(),
            signed_prekey_id: bundle.signed_prekey.id,
            one_time_prekey_id: bundle.one_time_prekey.as_ref().map(|k| k.id),
            kem: kem.map(|(id, ciphertext, _)| (id, ciphertext)),
        },
    })
}

/// Runs the responder side with the prekeys the header names (looked up by the caller).
pub(crate) fn respond(
    identity: &DeviceIdentity,
    header: &PreKeyHeader,
    signed_prekey: &SignedPreKey,
    one_time_prekey: Option<&OneTimePreKey>,
    kem_prekey: Option<&KemPreKey>,
) -> Result<Handshake, CryptoError> {
    let spk = signed_prekey.key_pair();
    let mut dh = vec![
        spk.dh(&header.identity_key.x25519_public())?,
        identity.x25519().dh(&header.base_key)?,
        spk.dh(&header.base_key)?,
    ];
    if let Some(one_time) = one_time_prekey {
        dh.push(one_time.key_pair().dh(&header.base_key)?);
    }
    let kem_secret = match (&header.kem, kem_prekey) {
        (Some((_, ciphertext)), Some(kem)) => Some(kem.key_pair().decapsulate(ciphertext)),
        (None, None) => None,
        _ => return Err(CryptoError::MissingKemPreKey),
    };
    let shared = derive_shared_secret(&dh, kem_secret.as_ref());
    Ok(Handshake {
        ratchet: RatchetState::responder(shared, spk.clone()),
        header: header.clone(),
    })
}
