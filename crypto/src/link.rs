//! The device-link channel: the one-time link code, the new device's sealed
//! request and the existing device's sealed answer (`docs/crypto.md` §11,
//! `docs/client.md` §4 for the exchange around it).
//!
//! The existing device shows a code holding its provisioning mailbox address,
//! an ephemeral X25519 public key and a 16-byte secret. Both sides derive the
//! channel keys from X25519 between the code's ephemeral key and the new
//! device's ephemeral key, salted with the code secret:
//!
//! ```text
//! shared      = X25519(own ephemeral secret, peer ephemeral public)   (must be contributory)
//! transcript  = mailbox address ‖ code eph. pub ‖ new device eph. pub
//! prk         = HKDF-SHA256-Extract(salt = code secret, ikm = shared)
//! request key = HKDF-Expand(prk, LINK_REQUEST_INFO ‖ transcript, 32)
//! reply key   = HKDF-Expand(prk, LINK_REPLY_INFO ‖ transcript, 32)
//! ```
//!
//! The answer's plaintext (the account handed to the new device) is opaque
//! here: the caller encodes and decodes it.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key};
use hkdf::Hkdf;
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::consts::{
    LINK_CODE_CHECK_LABEL, LINK_REPLY_INFO, LINK_REQUEST_INFO, LINK_REQUEST_SIGNATURE_LABEL,
};
use crate::identity::{DeviceIdentity, IdentityKey};

/// Length of a provisioning mailbox address (the relay's
/// `PROVISIONING_ADDRESS_LEN`).
pub const ADDRESS_LEN: usize = 16;
/// Largest sealed request or answer part (the relay's `MAX_PROVISIONING_LEN`,
/// 16 KiB): anything longer is refused before decryption.
pub const MAX_SEALED_LEN: usize = 16 * 1024;
/// Plaintext bytes per answer part (a sealed part stays under
/// [`MAX_SEALED_LEN`]).
pub const PART_LEN: usize = 15 * 1024;
/// Most parts of one answer (the relay's mailbox holds 8 messages).
pub const MAX_PARTS: usize = 8;
/// Prefix of a textual link code.
pub const CODE_PREFIX: &str = "tern-link:2:";

/// Version byte of the QR payload (and of the code's binary form).
const CODE_VERSION: u8 = 2;
/// Length of the code secret.
const SECRET_LEN: usize = 16;
/// Length of the typo check at the end of the code.
const CHECK_LEN: usize = 4;
/// Address, ephemeral key, secret.
const CODE_BODY_LEN: usize = ADDRESS_LEN + 32 + SECRET_LEN;
/// First byte of a sealed request or an approving answer part.
const SEALED: u8 = 1;
/// The whole answer of an existing device that refuses the request.
const REJECTED: u8 = 0;
const NONCE_LEN: usize = 12;
/// Sealed request header: marker, ephemeral key, reply address, nonce.
const REQUEST_HEADER_LEN: usize = 1 + 32 + ADDRESS_LEN + NONCE_LEN;
/// The request body: the protobuf encoding of `{bytes device_identity = 1;
/// bytes signature = 2;}` with a 32-byte key and a 64-byte signature, which
/// is always `0a 20 ‖ key ‖ 12 40 ‖ signature`.
const BODY_LEN: usize = 2 + 32 + 2 + 64;

/// Why a link code, request or answer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The text or QR payload is not a well-formed link code.
    #[error("{0}")]
    Code(&'static str),
    /// The peer's ephemeral key is of low order.
    #[error("low-order link key")]
    LowOrder,
    /// The request does not open under this code's keys, or its signature or
    /// device key is bad.
    #[error("the link request does not match the code")]
    Request,
    /// An answer part does not open, or came out of order.
    #[error("the link answer does not open")]
    Answer,
    /// An answer part is neither a sealed part nor a refusal.
    #[error("malformed link answer")]
    MalformedAnswer,
    /// The existing device refused the request.
    #[error("the existing device refused the link request (wrong or used code?)")]
    Refused,
    /// The answer needs more than [`MAX_PARTS`] parts.
    #[error("link answer too large")]
    TooLarge,
}

/// The one-time link code an existing device shows (as text or QR payload)
/// and the new device enters. The secret is wiped on drop.
#[derive(Clone)]
pub struct LinkCode {
    /// The existing device's provisioning mailbox address.
    pub address: [u8; ADDRESS_LEN],
    /// The existing device's ephemeral X25519 public key.
    pub ephemeral: [u8; 32],
    secret: Zeroizing<[u8; SECRET_LEN]>,
}

impl std::fmt::Debug for LinkCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkCode").finish_non_exhaustive()
    }
}

impl LinkCode {
    fn body(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new([&self.address[..], &self.ephemeral, &self.secret[..]].concat())
    }

    fn bytes(&self) -> Zeroizing<Vec<u8>> {
        let body = self.body();
        Zeroizing::new([&body[..], &check(&body)].concat())
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, LinkError> {
        if bytes.len() != CODE_BODY_LEN + CHECK_LEN {
            return Err(LinkError::Code("link code length"));
        }
        let (body, sum) = bytes.split_at(CODE_BODY_LEN);
        if check(body) != sum {
            return Err(LinkError::Code(
                "link code mistyped (check digits do not match)",
            ));
        }
        let (address, rest) = body.split_at(ADDRESS_LEN);
        let (ephemeral, secret) = rest.split_at(32);
        let mut code = Self {
            address: [0; ADDRESS_LEN],
            ephemeral: [0; 32],
            secret: Zeroizing::new([0; SECRET_LEN]),
        };
        code.address.copy_from_slice(address);
        code.ephemeral.copy_from_slice(ephemeral);
        code.secret.copy_from_slice(secret);
        Ok(code)
    }

    /// Text form: `tern-link:2:` followed by 136 lowercase hex digits.
    pub fn to_text(&self) -> String {
        let bytes = self.bytes();
        let mut text = String::with_capacity(CODE_PREFIX.len() + 2 * bytes.len());
        text.push_str(CODE_PREFIX);
        for byte in bytes.iter() {
            text.push_str(&format!("{byte:02x}"));
        }
        text
    }

    /// QR form: version byte 2 followed by the 68 bytes.
    pub fn to_qr(&self) -> Vec<u8> {
        [&[CODE_VERSION][..], &self.bytes()].concat()
    }

    /// Parses the text form (surrounding white space and either hex case are
    /// accepted).
    pub fn parse(text: &str) -> Result<Self, LinkError> {
        let hex = text
            .trim()
            .strip_prefix(CODE_PREFIX)
            .ok_or(LinkError::Code("not a tern link code"))?;
        let bytes = Zeroizing::new(unhex(hex).ok_or(LinkError::Code("link code digits"))?);
        Self::from_bytes(&bytes)
    }

    /// Parses the QR payload.
    pub fn from_qr(bytes: &[u8]) -> Result<Self, LinkError> {
        match bytes.split_first() {
            Some((&CODE_VERSION, rest)) => Self::from_bytes(rest),
            _ => Err(LinkError::Code("unknown link QR version")),
        }
    }
}

/// `SHA-256(LINK_CODE_CHECK_LABEL ‖ body)[..4]`.
fn check(body: &[u8]) -> [u8; CHECK_LEN] {
    let digest = Sha256::new()
        .chain_update(LINK_CODE_CHECK_LABEL)
        .chain_update(body)
        .finalize();
    let mut sum = [0; CHECK_LEN];
    sum.copy_from_slice(&digest[..CHECK_LEN]);
    sum
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

/// The two channel keys of one link exchange.
struct ChannelKeys {
    request: Aes256Gcm,
    reply: Aes256Gcm,
    transcript: Vec<u8>,
}

impl ChannelKeys {
    fn derive(
        own: &StaticSecret,
        peer: &[u8; 32],
        code: &LinkCode,
        applicant: &[u8; 32],
    ) -> Result<Self, LinkError> {
        let shared = own.diffie_hellman(&PublicKey::from(*peer));
        if !shared.was_contributory() {
            return Err(LinkError::LowOrder);
        }
        let transcript = [&code.address[..], &code.ephemeral, applicant].concat();
        let hkdf = Hkdf::<Sha256>::new(Some(&code.secret[..]), shared.as_bytes());
        let cipher = |label: &[u8]| {
            let mut key = Zeroizing::new([0u8; 32]);
            // A 32-byte output is always within HKDF-SHA256's limit.
            hkdf.expand(&[label, &transcript].concat(), key.as_mut())
                .map_err(|_| LinkError::Request)?;
            Ok::<_, LinkError>(Aes256Gcm::new(&Key::<Aes256Gcm>::from(*key)))
        };
        Ok(Self {
            request: cipher(LINK_REQUEST_INFO)?,
            reply: cipher(LINK_REPLY_INFO)?,
            transcript,
        })
    }
}

/// `nonce ‖ AES-256-GCM(cipher, nonce, plaintext, aad)` with a fresh random
/// nonce.
fn seal<R: CryptoRng + ?Sized>(
    cipher: &Aes256Gcm,
    plaintext: &[u8],
    aad: &[u8],
    rng: &mut R,
) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    // AES-GCM only fails on inputs far above the sizes sealed here.
    let ciphertext = cipher
        .encrypt(
            &aes_gcm::aead::Nonce::<Aes256Gcm>::from(nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .unwrap_or_default();
    [&nonce[..], &ciphertext].concat()
}

fn open(cipher: &Aes256Gcm, sealed: &[u8], aad: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let (nonce, ciphertext) = sealed.split_at_checked(NONCE_LEN)?;
    let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
    cipher
        .decrypt(
            &aes_gcm::aead::Nonce::<Aes256Gcm>::from(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .ok()
        .map(Zeroizing::new)
}

/// The existing device's half of a link code: the code it shows and the
/// ephemeral secret that opens the request it leads to.
pub struct LinkInvitation {
    secret: StaticSecret,
    code: LinkCode,
}

impl LinkInvitation {
    /// A fresh ephemeral key and secret for the mailbox at `address`.
    pub fn new<R: CryptoRng + ?Sized>(address: [u8; ADDRESS_LEN], rng: &mut R) -> Self {
        let secret = StaticSecret::random_from_rng(&mut *rng);
        let mut code_secret = Zeroizing::new([0u8; SECRET_LEN]);
        rng.fill_bytes(code_secret.as_mut());
        let code = LinkCode {
            address,
            ephemeral: PublicKey::from(&secret).to_bytes(),
            secret: code_secret,
        };
        Self { secret, code }
    }

    /// The code to show.
    pub fn code(&self) -> &LinkCode {
        &self.code
    }

    /// The reply address of a sealed request (readable without the code, so
    /// that a request made with a wrong code can be refused).
    pub fn reply_address(sealed: &[u8]) -> Option<[u8; ADDRESS_LEN]> {
        sealed.get(33..33 + ADDRESS_LEN)?.try_into().ok()
    }

    /// Opens and checks a sealed request: it must decrypt under this code's
    /// keys and carry a valid signature by the device key it names.
    pub fn open_request(&self, sealed: &[u8]) -> Result<LinkRequest, LinkError> {
        if sealed.len() > MAX_SEALED_LEN || sealed.len() < REQUEST_HEADER_LEN {
            return Err(LinkError::Request);
        }
        let (marker, rest) = sealed.split_at(1);
        let (ephemeral, rest) = rest.split_at(32);
        let (reply_address, rest) = rest.split_at(ADDRESS_LEN);
        let ephemeral: [u8; 32] = ephemeral.try_into().map_err(|_| LinkError::Request)?;
        let reply_address: [u8; ADDRESS_LEN] =
            reply_address.try_into().map_err(|_| LinkError::Request)?;
        if marker != [SEALED] {
            return Err(LinkError::Request);
        }
        let keys = ChannelKeys::derive(&self.secret, &ephemeral, &self.code, &ephemeral)?;
        let aad = [&self.code.address[..], &reply_address].concat();
        let body = open(&keys.request, rest, &aad).ok_or(LinkError::Request)?;
        let (identity, signature) = decode_body(&body).ok_or(LinkError::Request)?;
        IdentityKey::from_bytes(&identity)
            .and_then(|key| {
                key.verify_labelled(
                    LINK_REQUEST_SIGNATURE_LABEL,
                    &[&keys.transcript[..], &reply_address].concat(),
                    &signature,
                    "link request",
                )
            })
            .map_err(|_| LinkError::Request)?;
        Ok(LinkRequest {
            device_identity: identity,
            reply_address,
            reply: keys.reply,
        })
    }
}

fn encode_body(identity: &[u8; 32], signature: &[u8; 64]) -> Vec<u8> {
    [&[0x0a, 32][..], identity, &[0x12, 64], signature].concat()
}

fn decode_body(body: &[u8]) -> Option<([u8; 32], [u8; 64])> {
    if body.len() != BODY_LEN {
        return None;
    }
    let (head, rest) = body.split_at(2);
    let (identity, rest) = rest.split_at(32);
    let (sig_head, signature) = rest.split_at(2);
    if head != [0x0a, 32] || sig_head != [0x12, 64] {
        return None;
    }
    Some((identity.try_into().ok()?, signature.try_into().ok()?))
}

/// A new device's request, opened and checked by the existing device.
pub struct LinkRequest {
    /// The new device's Ed25519 identity public key.
    pub device_identity: [u8; 32],
    /// The new device's own mailbox, where the answer goes.
    pub reply_address: [u8; ADDRESS_LEN],
    reply: Aes256Gcm,
}

impl LinkRequest {
    /// Seals the approving answer `plaintext`, in as many parts (mailbox
    /// messages) as its size needs: each part is `01 ‖ index ‖ count ‖ nonce ‖
    /// AES-256-GCM(reply key, nonce, slice, aad = reply address ‖ index ‖ count)`.
    pub fn seal_reply<R: CryptoRng + ?Sized>(
        &self,
        plaintext: &[u8],
        rng: &mut R,
    ) -> Result<Vec<Vec<u8>>, LinkError> {
        let count = plaintext.len().div_ceil(PART_LEN).max(1);
        let count = u8::try_from(count)
            .ok()
            .filter(|c| usize::from(*c) <= MAX_PARTS)
            .ok_or(LinkError::TooLarge)?;
        Ok((0..count)
            .map(|index| {
                let start = usize::from(index) * PART_LEN;
                let slice = &plaintext[start..plaintext.len().min(start + PART_LEN)];
                let aad = part_aad(&self.reply_address, index, count);
                let sealed = seal(&self.reply, slice, &aad, rng);
                [&[SEALED, index, count][..], &sealed].concat()
            })
            .collect())
    }
}

fn part_aad(reply_address: &[u8; ADDRESS_LEN], index: u8, count: u8) -> Vec<u8> {
    [&reply_address[..], &[index, count]].concat()
}

/// The refusing answer (sent unencrypted: the refused party may not share
/// the keys).
pub fn rejection() -> Vec<u8> {
    vec![REJECTED]
}

/// The new device's side of one exchange: builds the request, then
/// reassembles and opens the answer.
pub struct LinkApplication {
    reply_address: [u8; ADDRESS_LEN],
    reply: Aes256Gcm,
    received: Zeroizing<Vec<u8>>,
    parts: u8,
}

impl LinkApplication {
    /// Builds the sealed request for `code` from `device`, whose answer
    /// should go to `reply_address`.
    pub fn new<R: CryptoRng + ?Sized>(
        code: &LinkCode,
        reply_address: [u8; ADDRESS_LEN],
        device: &DeviceIdentity,
        rng: &mut R,
    ) -> Result<(Self, Vec<u8>), LinkError> {
        let secret = StaticSecret::random_from_rng(&mut *rng);
        let ephemeral = PublicKey::from(&secret).to_bytes();
        let keys = ChannelKeys::derive(&secret, &code.ephemeral, code, &ephemeral)?;
        let signature = device.sign_labelled(
            LINK_REQUEST_SIGNATURE_LABEL,
            &[&keys.transcript[..], &reply_address].concat(),
        );
        let body = encode_body(&device.public_key().to_bytes(), &signature);
        let aad = [&code.address[..], &reply_address].concat();
        let sealed = seal(&keys.request, &body, &aad, rng);
        let request = [&[SEALED][..], &ephemeral, &reply_address, &sealed].concat();
        let application = Self {
            reply_address,
            reply: keys.reply,
            received: Zeroizing::new(Vec::new()),
            parts: 0,
        };
        Ok((application, request))
    }

    /// Takes the next part of the existing device's answer: `Ok(None)` while
    /// parts are missing, the whole plaintext once the last one arrived.
    /// Parts must come in order; a refusal or any bad part ends the exchange.
    pub fn open_reply(&mut self, part: &[u8]) -> Result<Option<Zeroizing<Vec<u8>>>, LinkError> {
        match part {
            [SEALED, index, count, sealed @ ..] if part.len() <= MAX_SEALED_LEN => {
                if *index != self.parts || *index >= *count || usize::from(*count) > MAX_PARTS {
                    return Err(LinkError::Answer);
                }
                let aad = part_aad(&self.reply_address, *index, *count);
                let plaintext = open(&self.reply, sealed, &aad).ok_or(LinkError::Answer)?;
                self.received.extend_from_slice(&plaintext);
                self.parts += 1;
                if self.parts < *count {
                    return Ok(None);
                }
                Ok(Some(std::mem::take(&mut self.received)))
            }
            [REJECTED] => Err(LinkError::Refused),
            _ => Err(LinkError::MalformedAnswer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::ChaCha20Rng;

    fn exchange(
        invitation: &LinkInvitation,
        device: &DeviceIdentity,
        rng: &mut ChaCha20Rng,
    ) -> (LinkApplication, LinkRequest) {
        let (application, request) =
            LinkApplication::new(invitation.code(), [5; 16], device, rng).unwrap();
        (application, invitation.open_request(&request).unwrap())
    }

    #[test]
    fn codes_round_trip_in_both_forms_and_typos_are_caught() {
        let mut rng = ChaCha20Rng::from_seed([11; 32]);
        let invitation = LinkInvitation::new([3; 16], &mut rng);
        let text = invitation.code().to_text();
        assert_eq!(text.len(), CODE_PREFIX.len() + 2 * 68);
        assert_eq!(LinkCode::parse(&text).unwrap().to_text(), text);
        assert_eq!(
            LinkCode::parse(&format!(
                " {} ",
                text.to_uppercase().replace("TERN-LINK", "tern-link")
            ))
            .unwrap()
            .to_text(),
            text
        );
        let qr = invitation.code().to_qr();
        assert_eq!(qr.len(), 69);
        assert_eq!(LinkCode::from_qr(&qr).unwrap().to_text(), text);
        // One changed digit fails the check.
        let mut typo = text.clone().into_bytes();
        let i = CODE_PREFIX.len() + 40;
        typo[i] = if typo[i] == b'0' { b'1' } else { b'0' };
        assert!(LinkCode::parse(std::str::from_utf8(&typo).unwrap()).is_err());
        assert!(LinkCode::parse("tern-link:2:zz").is_err());
        assert!(LinkCode::parse("tern-link:1:00").is_err());
        assert!(LinkCode::parse("something else").is_err());
        assert!(LinkCode::from_qr(&[9, 1, 2]).is_err());
    }

    #[test]
    fn the_request_body_is_the_documented_protobuf() {
        let identity = [7u8; 32];
        let signature = [9u8; 64];
        let body = encode_body(&identity, &signature);
        assert_eq!(body.len(), BODY_LEN);
        assert_eq!(&body[..2], &[0x0a, 0x20]);
        assert_eq!(&body[34..36], &[0x12, 0x40]);
        assert_eq!(decode_body(&body), Some((identity, signature)));
        assert_eq!(decode_body(&body[1..]), None);
        let mut swapped = body.clone();
        swapped[0] = 0x12;
        assert_eq!(decode_body(&swapped), None);
    }

    #[test]
    fn the_exchange_works_with_the_right_code_only() {
        let mut rng = ChaCha20Rng::from_seed([11; 32]);
        let invitation = LinkInvitation::new([3; 16], &mut rng);
        let device = DeviceIdentity::generate(&mut rng);
        let (mut application, request) =
            LinkApplication::new(invitation.code(), [5; 16], &device, &mut rng).unwrap();
        assert_eq!(LinkInvitation::reply_address(&request), Some([5; 16]));
        let opened = invitation.open_request(&request).unwrap();
        assert_eq!(opened.device_identity, device.public_key().to_bytes());
        assert_eq!(opened.reply_address, [5; 16]);
        let reply = opened.seal_reply(b"the account", &mut rng).unwrap();
        assert_eq!(reply.len(), 1);
        let mut tampered = reply[0].clone();
        tampered[20] ^= 1;
        assert_eq!(application.open_reply(&tampered), Err(LinkError::Answer));
        assert_eq!(
            application
                .open_reply(&reply[0])
                .unwrap()
                .as_deref()
                .map(Vec::as_slice),
            Some(&b"the account"[..])
        );
        assert_eq!(
            application.open_reply(&rejection()),
            Err(LinkError::Refused)
        );

        // A code with another secret (same address and key) is refused.
        let mut wrong = invitation.code().clone();
        wrong.secret[0] ^= 1;
        let (_, forged) = LinkApplication::new(&wrong, [5; 16], &device, &mut rng).unwrap();
        assert_eq!(
            invitation.open_request(&forged).err(),
            Some(LinkError::Request)
        );
        // Tampering with the request or the answer is caught.
        for i in [0, 1, 40, request.len() - 1] {
            let mut tampered = request.clone();
            tampered[i] ^= 1;
            assert!(invitation.open_request(&tampered).is_err(), "byte {i}");
        }
        assert!(invitation.open_request(&request[..30]).is_err());
        assert_eq!(application.open_reply(&[]), Err(LinkError::MalformedAnswer));
    }

    #[test]
    fn large_answers_arrive_in_ordered_parts() {
        let mut rng = ChaCha20Rng::from_seed([11; 32]);
        let invitation = LinkInvitation::new([3; 16], &mut rng);
        let device = DeviceIdentity::generate(&mut rng);
        let big = vec![b'x'; 2 * PART_LEN + 10];

        // Out of order: refused.
        let (mut application, opened) = exchange(&invitation, &device, &mut rng);
        let parts = opened.seal_reply(&big, &mut rng).unwrap();
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| p.len() <= MAX_SEALED_LEN));
        assert_eq!(application.open_reply(&parts[1]), Err(LinkError::Answer));

        let (mut application, opened) = exchange(&invitation, &device, &mut rng);
        let parts = opened.seal_reply(&big, &mut rng).unwrap();
        assert_eq!(application.open_reply(&parts[0]).unwrap(), None);
        assert_eq!(application.open_reply(&parts[1]).unwrap(), None);
        assert_eq!(
            application.open_reply(&parts[2]).unwrap().as_deref(),
            Some(&big)
        );

        let too_big = vec![0u8; MAX_PARTS * PART_LEN + 1];
        assert_eq!(
            opened.seal_reply(&too_big, &mut rng).err(),
            Some(LinkError::TooLarge)
        );
    }
}
