//! Linking a new device to an account (sans-IO parts): the link code, the
//! provisioning payload and its encryption.
//!
//! The new device shows a link code (or QR payload) holding its provisioning
//! mailbox address, an ephemeral X25519 public key and its device identity
//! key. The existing device adds that identity key to the account's device
//! list (signed with the account key), then sends the account identity and
//! the assigned device id to the mailbox, encrypted to the ephemeral key:
//!
//! ```text
//! shared = X25519(sender ephemeral secret, link ephemeral public)   (must be contributory)
//! key    = HKDF-SHA256(salt = none, ikm = shared,
//!                      info = "tern/v1/provisioning\0" ‖ sender eph. pub ‖ link eph. pub ‖ address)
//! box    = sender eph. pub (32) ‖ nonce (12, random) ‖ AES-256-GCM(key, nonce, payload, aad = address)
//! ```

use aes_gcm::aead::{Aead, KeyInit, Payload as AeadPayload};
use aes_gcm::{Aes256Gcm, Key};
use hkdf::Hkdf;
use prost::Message;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, Zeroizing};

use super::account::{random_bytes, rng};
use super::error::ClientError;
use super::types::UserId;

/// Prefix of a textual link code.
const CODE_PREFIX: &str = "tern-link:1:";
/// Version byte of the QR payload.
const QR_VERSION: u8 = 1;
/// Address, ephemeral key, device identity key.
const LINK_LEN: usize = 16 + 32 + 32;
/// HKDF info label of the provisioning key.
const PROVISIONING_INFO: &[u8] = b"tern/v1/provisioning\0";
const NONCE_LEN: usize = 12;

/// What the new device shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkCode {
    /// The provisioning mailbox address.
    pub address: [u8; 16],
    /// The new device's ephemeral X25519 public key.
    pub ephemeral: [u8; 32],
    /// The new device's Ed25519 identity public key.
    pub identity: [u8; 32],
}

impl LinkCode {
    fn bytes(&self) -> Vec<u8> {
        [&self.address[..], &self.ephemeral, &self.identity].concat()
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, ClientError> {
        if bytes.len() != LINK_LEN {
            return Err(ClientError::InvalidArgument("link code length"));
        }
        let mut code = Self {
            address: [0; 16],
            ephemeral: [0; 32],
            identity: [0; 32],
        };
        code.address.copy_from_slice(&bytes[..16]);
        code.ephemeral.copy_from_slice(&bytes[16..48]);
        code.identity.copy_from_slice(&bytes[48..]);
        Ok(code)
    }

    /// Text form: `tern-link:1:` followed by 160 hex digits.
    pub fn to_text(&self) -> String {
        format!("{CODE_PREFIX}{}", crate::sync::hex(&self.bytes()))
    }

    /// QR form: version byte 1 followed by the 80 bytes.
    pub fn to_qr(&self) -> Vec<u8> {
        [&[QR_VERSION][..], &self.bytes()].concat()
    }

    /// Parses the text form.
    pub fn parse(text: &str) -> Result<Self, ClientError> {
        let hex = text
            .trim()
            .strip_prefix(CODE_PREFIX)
            .ok_or(ClientError::InvalidArgument("not a tern link code"))?;
        Self::from_bytes(&unhex(hex).ok_or(ClientError::InvalidArgument("link code digits"))?)
    }

    /// Parses the QR payload.
    pub fn from_qr(bytes: &[u8]) -> Result<Self, ClientError> {
        match bytes.split_first() {
            Some((&QR_VERSION, rest)) => Self::from_bytes(rest),
            _ => Err(ClientError::InvalidArgument("unknown link QR version")),
        }
    }
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

/// What the existing device hands over.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct ProvisionPayload {
    #[prost(bytes = "vec", tag = "1")]
    pub user_id: Vec<u8>,
    #[prost(string, tag = "2")]
    pub user_name: String,
    #[prost(uint32, tag = "3")]
    pub device_id: u32,
    #[prost(bytes = "vec", tag = "4")]
    pub account_identity: Vec<u8>,
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

/// The new device's side: ephemeral secret and the code it shows.
pub(crate) struct LinkSecret {
    secret: StaticSecret,
    pub code: LinkCode,
}

impl LinkSecret {
    /// A fresh ephemeral key for mailbox `address` and device `identity`.
    pub fn new(address: [u8; 16], identity: [u8; 32]) -> Self {
        let secret = StaticSecret::random_from_rng(&mut rng());
        let ephemeral = PublicKey::from(&secret).to_bytes();
        Self {
            secret,
            code: LinkCode {
                address,
                ephemeral,
                identity,
            },
        }
    }

    /// Opens a provisioning box.
    pub fn open(&self, sealed: &[u8]) -> Result<ProvisionPayload, ClientError> {
        let bad = || ClientError::Verification("provisioning message".into());
        if sealed.len() < 32 + NONCE_LEN {
            return Err(bad());
        }
        let (sender, rest) = sealed.split_at(32);
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let sender: [u8; 32] = sender.try_into().map_err(|_| bad())?;
        let cipher = box_cipher(&self.secret, &sender, &self.code)?;
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| bad())?;
        let plaintext = Zeroizing::new(
            cipher
                .decrypt(
                    &aes_gcm::aead::Nonce::<Aes256Gcm>::from(nonce),
                    AeadPayload {
                        msg: ciphertext,
                        aad: &self.code.address,
                    },
                )
                .map_err(|_| bad())?,
        );
        ProvisionPayload::decode(plaintext.as_slice()).map_err(|_| bad())
    }
}

/// Seals `payload` for the device that showed `code`.
pub(crate) fn seal(code: &LinkCode, payload: &ProvisionPayload) -> Result<Vec<u8>, ClientError> {
    let secret = StaticSecret::random_from_rng(&mut rng());
    let sender = PublicKey::from(&secret).to_bytes();
    let cipher = sealing_cipher(&secret, &sender, code)?;
    let nonce: [u8; NONCE_LEN] = random_bytes();
    let plaintext = Zeroizing::new(payload.encode_to_vec());
    let ciphertext = cipher
        .encrypt(
            &aes_gcm::aead::Nonce::<Aes256Gcm>::from(nonce),
            AeadPayload {
                msg: &plaintext,
                aad: &code.address,
            },
        )
        .map_err(|_| ClientError::Verification("provisioning encryption".into()))?;
    Ok([&sender[..], &nonce, &ciphertext].concat())
}

fn sealing_cipher(
    secret: &StaticSecret,
    sender: &[u8; 32],
    code: &LinkCode,
) -> Result<Aes256Gcm, ClientError> {
    let shared = secret.diffie_hellman(&PublicKey::from(code.ephemeral));
    derive(shared, sender, code)
}

fn box_cipher(
    secret: &StaticSecret,
    sender: &[u8; 32],
    code: &LinkCode,
) -> Result<Aes256Gcm, ClientError> {
    let shared = secret.diffie_hellman(&PublicKey::from(*sender));
    derive(shared, sender, code)
}

fn derive(
    shared: x25519_dalek::SharedSecret,
    sender: &[u8; 32],
    code: &LinkCode,
) -> Result<Aes256Gcm, ClientError> {
    if !shared.was_contributory() {
        return Err(ClientError::Verification(
            "low-order provisioning key".into(),
        ));
    }
    let info = [PROVISIONING_INFO, sender, &code.ephemeral, &code.address].concat();
    let mut key = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(None, shared.as_bytes())
        .expand(&info, key.as_mut())
        .map_err(|_| ClientError::Verification("provisioning key derivation".into()))?;
    Ok(Aes256Gcm::new(&Key::<Aes256Gcm>::from(*key)))
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
        }
    }

    #[test]
    fn codes_round_trip_in_both_forms() {
        let link = LinkSecret::new([3; 16], [4; 32]);
        assert_eq!(LinkCode::parse(&link.code.to_text()).unwrap(), link.code);
        assert_eq!(LinkCode::from_qr(&link.code.to_qr()).unwrap(), link.code);
        assert!(LinkCode::parse("tern-link:1:zz").is_err());
        assert!(LinkCode::parse("something else").is_err());
        assert!(LinkCode::from_qr(&[9, 1, 2]).is_err());
    }

    #[test]
    fn only_the_link_holder_opens_the_box_and_tampering_is_caught() {
        let link = LinkSecret::new([3; 16], [4; 32]);
        let sealed = seal(&link.code, &payload()).unwrap();
        assert_eq!(link.open(&sealed).unwrap(), payload());

        let other = LinkSecret::new([3; 16], [4; 32]);
        assert!(other.open(&sealed).is_err());
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(link.open(&tampered).is_err());
        assert!(link.open(&sealed[..20]).is_err());
    }
}
