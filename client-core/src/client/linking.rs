//! Linking a new device to an account (sans-IO parts): the one-time link
//! code, the new device's request, the existing device's answer and the keys
//! that seal them. The relay side lives in [`mailbox`]; `docs/client.md` §4
//! specifies the exchange byte by byte.
//!
//! The existing device opens a provisioning mailbox and shows a code holding
//! its address, an ephemeral X25519 public key and a 16-byte secret. Both
//! sides derive the channel keys from X25519 between the code's ephemeral key
//! and the new device's ephemeral key, salted with the code secret:
//!
//! ```text
//! shared     = X25519(own ephemeral secret, peer ephemeral public)   (must be contributory)
//! transcript = mailbox address ‖ code eph. pub ‖ new device eph. pub
//! prk        = HKDF-SHA256-Extract(salt = code secret, ikm = shared)
//! request key = HKDF-Expand(prk, "tern/v1/link/request\0" ‖ transcript, 32)
//! reply key   = HKDF-Expand(prk, "tern/v1/link/reply\0" ‖ transcript, 32)
//! ```

mod mailbox;

use aes_gcm::aead::{Aead, KeyInit, Payload as AeadPayload};
use aes_gcm::{Aes256Gcm, Key};
use hkdf::Hkdf;
use prost::Message;
use sha2::{Digest, Sha256};
use tern_protocol::limits::MAX_PROVISIONING_LEN;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, Zeroizing};

use super::account::{random_bytes, rng};
use super::error::ClientError;
use super::types::UserId;
use crate::crypto::identity::{DeviceIdentity, IdentityKey};
use crate::sync::device_sync::DeviceSync;

pub use mailbox::{LinkApproval, LinkOffer};

/// Prefix of a textual link code.
const CODE_PREFIX: &str = "tern-link:2:";
/// Version byte of the QR payload (and of the code's binary form).
const CODE_VERSION: u8 = 2;
/// Mailbox address length.
const ADDRESS_LEN: usize = tern_protocol::limits::PROVISIONING_ADDRESS_LEN;
/// Length of the code secret.
const SECRET_LEN: usize = 16;
/// Length of the typo check at the end of the code.
const CHECK_LEN: usize = 4;
/// Address, ephemeral key, secret.
const CODE_BODY_LEN: usize = ADDRESS_LEN + 32 + SECRET_LEN;
/// Label of the code's typo check.
const CHECK_LABEL: &[u8] = b"tern/v1/link/code-check\0";
/// HKDF info label of the request key.
const REQUEST_INFO: &[u8] = b"tern/v1/link/request\0";
/// HKDF info label of the reply key.
const REPLY_INFO: &[u8] = b"tern/v1/link/reply\0";
/// Label of the new device's signature over the transcript.
const REQUEST_SIGNATURE_LABEL: &[u8] = b"tern/v1/link/request-signature\0";
/// First byte of a sealed request or an approving reply.
const SEALED: u8 = 1;
/// The whole reply of an existing device that refuses the request.
const REJECTED: u8 = 0;
const NONCE_LEN: usize = 12;
/// Sealed request header: marker, ephemeral key, reply address, nonce.
const REQUEST_HEADER_LEN: usize = 1 + 32 + ADDRESS_LEN + NONCE_LEN;
/// Plaintext bytes per reply part (a sealed part stays under the relay's
/// `MAX_PROVISIONING_LEN` of 16 KiB).
const PART_LEN: usize = 15 * 1024;
/// Most parts of one reply (the relay's mailbox holds 8 messages).
const MAX_PARTS: usize = 8;

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
    fn body(&self) -> Vec<u8> {
        [&self.address[..], &self.ephemeral, &self.secret[..]].concat()
    }

    fn bytes(&self) -> Zeroizing<Vec<u8>> {
        let body = Zeroizing::new(self.body());
        Zeroizing::new([&body[..], &check(&body)].concat())
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, ClientError> {
        if bytes.len() != CODE_BODY_LEN + CHECK_LEN {
            return Err(ClientError::InvalidArgument("link code length"));
        }
        let (body, sum) = bytes.split_at(CODE_BODY_LEN);
        if check(body) != sum {
            return Err(ClientError::InvalidArgument(
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

    /// Text form: `tern-link:2:` followed by 136 hex digits.
    pub fn to_text(&self) -> String {
        format!("{CODE_PREFIX}{}", crate::sync::hex(&self.bytes()))
    }

    /// QR form: version byte 2 followed by the 68 bytes.
    pub fn to_qr(&self) -> Vec<u8> {
        [&[CODE_VERSION][..], &self.bytes()].concat()
    }

    /// Parses the text form.
    pub fn parse(text: &str) -> Result<Self, ClientError> {
        let hex = text
            .trim()
            .strip_prefix(CODE_PREFIX)
            .ok_or(ClientError::InvalidArgument("not a tern link code"))?;
        let bytes =
            Zeroizing::new(unhex(hex).ok_or(ClientError::InvalidArgument("link code digits"))?);
        Self::from_bytes(&bytes)
    }

    /// Parses the QR payload.
    pub fn from_qr(bytes: &[u8]) -> Result<Self, ClientError> {
        match bytes.split_first() {
            Some((&CODE_VERSION, rest)) => Self::from_bytes(rest),
            _ => Err(ClientError::InvalidArgument("unknown link QR version")),
        }
    }
}

/// `SHA-256(CHECK_LABEL ‖ body)[..4]`.
fn check(body: &[u8]) -> [u8; CHECK_LEN] {
    let digest = Sha256::new()
        .chain_update(CHECK_LABEL)
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

/// What the existing device hands over to an approved new device.
#[derive(Clone, PartialEq, Message)]
pub struct ProvisionPayload {
    /// Account id (16 bytes).
    #[prost(bytes = "vec", tag = "1")]
    pub user_id: Vec<u8>,
    /// Account user name.
    #[prost(string, tag = "2")]
    pub user_name: String,
    /// The device id assigned to the new device.
    #[prost(uint32, tag = "3")]
    pub device_id: u32,
    /// The account identity secret (`crypto.md` encoding).
    #[prost(bytes = "vec", tag = "4")]
    pub account_identity: Vec<u8>,
    /// Contacts, chats and recent history of the existing device.
    #[prost(message, optional, tag = "5")]
    pub device_sync: Option<DeviceSync>,
}

impl Drop for ProvisionPayload {
    fn drop(&mut self) {
        self.account_identity.zeroize();
    }
}

impl ProvisionPayload {
    /// The account id, checked.
    pub fn user(&self) -> Result<UserId, ClientError> {
        UserId::try_from(self.user_id.as_slice())
            .map_err(|_| ClientError::Verification("provisioning user id".into()))
    }
}

/// The new device's request, inside the sealed envelope.
#[derive(Clone, PartialEq, Message)]
struct RequestBody {
    #[prost(bytes = "vec", tag = "1")]
    device_identity: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    signature: Vec<u8>,
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
    ) -> Result<Self, ClientError> {
        let shared = own.diffie_hellman(&PublicKey::from(*peer));
        if !shared.was_contributory() {
            return Err(ClientError::Verification("low-order link key".into()));
        }
        let transcript = [&code.address[..], &code.ephemeral, applicant].concat();
        let hkdf = Hkdf::<Sha256>::new(Some(&code.secret[..]), shared.as_bytes());
        let cipher = |label: &[u8]| {
            let mut key = Zeroizing::new([0u8; 32]);
            hkdf.expand(&[label, &transcript].concat(), key.as_mut())
                .map_err(|_| ClientError::Verification("link key derivation".into()))?;
            Ok::<_, ClientError>(Aes256Gcm::new(&Key::<Aes256Gcm>::from(*key)))
        };
        Ok(Self {
            request: cipher(REQUEST_INFO)?,
            reply: cipher(REPLY_INFO)?,
            transcript,
        })
    }
}

fn seal(cipher: &Aes256Gcm, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, ClientError> {
    let nonce: [u8; NONCE_LEN] = random_bytes();
    let ciphertext = cipher
        .encrypt(
            &aes_gcm::aead::Nonce::<Aes256Gcm>::from(nonce),
            AeadPayload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| ClientError::Verification("link encryption".into()))?;
    Ok([&nonce[..], &ciphertext].concat())
}

fn open(cipher: &Aes256Gcm, sealed: &[u8], aad: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let (nonce, ciphertext) = sealed.split_at_checked(NONCE_LEN)?;
    let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
    cipher
        .decrypt(
            &aes_gcm::aead::Nonce::<Aes256Gcm>::from(nonce),
            AeadPayload {
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
    pub fn new(address: [u8; ADDRESS_LEN]) -> Self {
        let secret = StaticSecret::random_from_rng(&mut rng());
        let code = LinkCode {
            address,
            ephemeral: PublicKey::from(&secret).to_bytes(),
            secret: Zeroizing::new(random_bytes()),
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
    pub fn open_request(&self, sealed: &[u8]) -> Result<LinkRequest, ClientError> {
        let bad = || ClientError::Verification("the link request does not match the code".into());
        if sealed.len() > MAX_PROVISIONING_LEN || sealed.len() < REQUEST_HEADER_LEN {
            return Err(bad());
        }
        let (marker, rest) = sealed.split_at(1);
        let (ephemeral, rest) = rest.split_at(32);
        let (reply_address, rest) = rest.split_at(ADDRESS_LEN);
        let ephemeral: [u8; 32] = ephemeral.try_into().map_err(|_| bad())?;
        let reply_address: [u8; ADDRESS_LEN] = reply_address.try_into().map_err(|_| bad())?;
        if marker != [SEALED] {
            return Err(bad());
        }
        let keys = ChannelKeys::derive(&self.secret, &ephemeral, &self.code, &ephemeral)?;
        let aad = [&self.code.address[..], &reply_address].concat();
        let body = open(&keys.request, rest, &aad).ok_or_else(bad)?;
        let body = RequestBody::decode(body.as_slice()).map_err(|_| bad())?;
        let identity: [u8; 32] = body
            .device_identity
            .as_slice()
            .try_into()
            .map_err(|_| bad())?;
        let signature: [u8; 64] = body.signature.as_slice().try_into().map_err(|_| bad())?;
        IdentityKey::from_bytes(&identity)?.verify_labelled(
            REQUEST_SIGNATURE_LABEL,
            &[&keys.transcript[..], &reply_address].concat(),
            &signature,
            "link request",
        )?;
        Ok(LinkRequest {
            device_identity: identity,
            reply_address,
            reply: keys.reply,
        })
    }
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
    /// Seals the approving answer, in as many parts (mailbox messages) as
    /// its size needs: each part is `01 ‖ index ‖ count ‖ nonce ‖
    /// AES-256-GCM(reply key, nonce, slice, aad = reply address ‖ index ‖ count)`.
    pub fn seal_reply(&self, payload: &ProvisionPayload) -> Result<Vec<Vec<u8>>, ClientError> {
        let plaintext = Zeroizing::new(payload.encode_to_vec());
        let count = plaintext.len().div_ceil(PART_LEN).max(1);
        let count = u8::try_from(count)
            .ok()
            .filter(|c| usize::from(*c) <= MAX_PARTS)
            .ok_or(ClientError::InvalidArgument("link answer too large"))?;
        (0..count)
            .map(|index| {
                let start = usize::from(index) * PART_LEN;
                let slice = &plaintext[start..plaintext.len().min(start + PART_LEN)];
                let header = [SEALED, index, count];
                let aad = part_aad(&self.reply_address, index, count);
                let sealed = seal(&self.reply, slice, &aad)?;
                Ok([&header[..], &sealed].concat())
            })
            .collect()
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
    pub fn new(
        code: &LinkCode,
        reply_address: [u8; ADDRESS_LEN],
        device: &DeviceIdentity,
    ) -> Result<(Self, Vec<u8>), ClientError> {
        let secret = StaticSecret::random_from_rng(&mut rng());
        let ephemeral = PublicKey::from(&secret).to_bytes();
        let keys = ChannelKeys::derive(&secret, &code.ephemeral, code, &ephemeral)?;
        let signature = device.sign_labelled(
            REQUEST_SIGNATURE_LABEL,
            &[&keys.transcript[..], &reply_address].concat(),
        );
        let body = RequestBody {
            device_identity: device.public_key().to_bytes().to_vec(),
            signature: signature.to_vec(),
        };
        let aad = [&code.address[..], &reply_address].concat();
        let sealed = seal(&keys.request, &body.encode_to_vec(), &aad)?;
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
    /// parts are missing, the payload once the last one arrived. Parts must
    /// come in order; a refusal or any bad part ends the exchange.
    pub fn open_reply(&mut self, part: &[u8]) -> Result<Option<ProvisionPayload>, ClientError> {
        let bad = || ClientError::Verification("the link answer does not open".into());
        match part {
            [SEALED, index, count, sealed @ ..] if part.len() <= MAX_PROVISIONING_LEN => {
                if *index != self.parts || *index >= *count || usize::from(*count) > MAX_PARTS {
                    return Err(bad());
                }
                let aad = part_aad(&self.reply_address, *index, *count);
                let plaintext = open(&self.reply, sealed, &aad).ok_or_else(bad)?;
                self.received.extend_from_slice(&plaintext);
                self.parts += 1;
                if self.parts < *count {
                    return Ok(None);
                }
                ProvisionPayload::decode(self.received.as_slice())
                    .map(Some)
                    .map_err(|_| bad())
            }
            [REJECTED] => Err(ClientError::Refused(
                "the existing device refused the link request (wrong or used code?)".into(),
            )),
            _ => Err(ClientError::Verification("malformed link answer".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload() -> ProvisionPayload {
        ProvisionPayload {
            user_id: vec![7; 16],
            user_name: "alice".into(),
            device_id: 2,
            account_identity: vec![1, 2, 3],
            device_sync: None,
        }
    }

    #[test]
    fn codes_round_trip_in_both_forms_and_typos_are_caught() {
        let invitation = LinkInvitation::new([3; 16]);
        let text = invitation.code().to_text();
        assert_eq!(text.len(), CODE_PREFIX.len() + 2 * 68);
        assert_eq!(LinkCode::parse(&text).unwrap().to_text(), text);
        let qr = invitation.code().to_qr();
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
    fn the_exchange_works_with_the_right_code_only() {
        let invitation = LinkInvitation::new([3; 16]);
        let device = DeviceIdentity::generate(&mut rng());
        let (mut application, request) =
            LinkApplication::new(invitation.code(), [5; 16], &device).unwrap();
        assert_eq!(LinkInvitation::reply_address(&request), Some([5; 16]));
        let opened = invitation.open_request(&request).unwrap();
        assert_eq!(opened.device_identity, device.public_key().to_bytes());
        assert_eq!(opened.reply_address, [5; 16]);
        let reply = opened.seal_reply(&payload()).unwrap();
        assert_eq!(reply.len(), 1);
        let mut tampered = reply[0].clone();
        tampered[20] ^= 1;
        assert!(application.open_reply(&tampered).is_err());
        assert_eq!(application.open_reply(&reply[0]).unwrap(), Some(payload()));
        assert!(matches!(
            application.open_reply(&rejection()),
            Err(ClientError::Refused(_))
        ));

        // A code with another secret (same address and key) is refused.
        let mut wrong = invitation.code().clone();
        wrong.secret[0] ^= 1;
        let (_, forged) = LinkApplication::new(&wrong, [5; 16], &device).unwrap();
        assert!(invitation.open_request(&forged).is_err());
        // Tampering with the request or the answer is caught.
        for i in [0, 1, 40, request.len() - 1] {
            let mut tampered = request.clone();
            tampered[i] ^= 1;
            assert!(invitation.open_request(&tampered).is_err(), "byte {i}");
        }
        assert!(invitation.open_request(&request[..30]).is_err());
        assert!(application.open_reply(&[]).is_err());
    }

    #[test]
    fn large_answers_arrive_in_ordered_parts() {
        let invitation = LinkInvitation::new([3; 16]);
        let device = DeviceIdentity::generate(&mut rng());
        let (application, request) =
            LinkApplication::new(invitation.code(), [5; 16], &device).unwrap();
        let opened = invitation.open_request(&request).unwrap();
        let mut big = payload();
        big.user_name = "x".repeat(2 * PART_LEN);
        let parts = opened.seal_reply(&big).unwrap();
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| p.len() <= MAX_PROVISIONING_LEN));

        // Out of order: refused.
        let mut reordered = application;
        assert!(reordered.open_reply(&parts[1]).is_err());
        let (mut application, request) =
            LinkApplication::new(invitation.code(), [5; 16], &device).unwrap();
        let parts = invitation
            .open_request(&request)
            .unwrap()
            .seal_reply(&big)
            .unwrap();
        assert_eq!(application.open_reply(&parts[0]).unwrap(), None);
        assert_eq!(application.open_reply(&parts[1]).unwrap(), None);
        assert_eq!(
            application.open_reply(&parts[2]).unwrap(),
            Some(big.clone())
        );

        big.user_name = "x".repeat(MAX_PARTS * PART_LEN);
        assert!(opened.seal_reply(&big).is_err());
    }
}
