//! Conformance with docs/crypto.md, checked by re-deriving outputs directly from the
//! primitives (ed25519-dalek, hmac, hkdf, aes-gcm, sha2) instead of the crate's code.

// Test helpers outside #[test] functions unwrap too (clippy.toml only covers tests).
#![allow(clippy::unwrap_used)]

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key};
use ed25519_dalek::{Signature, VerifyingKey};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;
use sha2::{Digest, Sha256, Sha512};
use tern_crypto::consts::{
    DEVICE_SIGNATURE_LABEL, SENDER_KEY_SIGNATURE_LABEL, SENDER_MESSAGE_KEY_INFO,
};
use tern_crypto::fingerprint::SafetyNumber;
use tern_crypto::identity::{AccountIdentity, DeviceIdentity};
use tern_crypto::sender_key::GroupSender;

#[test]
fn device_signature_is_plain_ed25519_over_label_and_message() {
    let mut rng = ChaCha20Rng::from_seed([40; 32]);
    let device = DeviceIdentity::generate(&mut rng);
    let challenge_and_exporter = [9u8; 64];
    let signature = device.sign(&challenge_and_exporter);
    let key = VerifyingKey::from_bytes(&device.public_key().to_bytes()).unwrap();
    let message = [
        b"tern/v1/connection-auth\0".as_slice(),
        &challenge_and_exporter,
    ]
    .concat();
    assert_eq!(DEVICE_SIGNATURE_LABEL, b"tern/v1/connection-auth\0");
    key.verify_strict(&message, &Signature::from_bytes(&signature))
        .unwrap();
}

#[test]
fn sender_key_message_follows_the_documented_construction() {
    let mut rng = ChaCha20Rng::from_seed([41; 32]);
    let mut sender = GroupSender::new([0x22; 16], &mut rng);
    let distribution = sender.distribution_message().encode().to_vec();
    let message = sender.encrypt(b"documented").unwrap();

    // Distribution: 01 04 ‖ id (16) ‖ chain id (4) ‖ iteration (4) ‖ chain key (32) ‖ signing key (32).
    assert_eq!(&distribution[..2], &[1, 4]);
    assert_eq!(distribution.len(), 90);
    let chain_key = &distribution[26..58];
    let signing_key = VerifyingKey::from_bytes(distribution[58..90].try_into().unwrap()).unwrap();
    // Message: 01 03 ‖ id ‖ chain id ‖ iteration ‖ ciphertext ‖ tag ‖ signature (64).
    assert_eq!(&message[..2], &[1, 3]);
    assert_eq!(
        &message[2..26],
        &distribution[2..26],
        "same id, chain id and iteration 0"
    );
    let (signed, signature) = message.split_at(message.len() - 64);
    let labelled = [SENDER_KEY_SIGNATURE_LABEL, signed].concat();
    signing_key
        .verify_strict(
            &labelled,
            &Signature::from_bytes(signature.try_into().unwrap()),
        )
        .unwrap();

    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(chain_key).unwrap();
    mac.update(&[0x01]);
    let seed = mac.finalize().into_bytes();
    let mut okm = [0u8; 44];
    Hkdf::<Sha256>::new(None, &seed)
        .expand(SENDER_MESSAGE_KEY_INFO, &mut okm)
        .unwrap();
    let key: [u8; 32] = okm[..32].try_into().unwrap();
    let nonce: [u8; 12] = okm[32..].try_into().unwrap();
    let cipher = Aes256Gcm::new(&Key::<Aes256Gcm>::from(key));
    let plaintext = cipher
        .decrypt(
            &aes_gcm::aead::Nonce::<Aes256Gcm>::from(nonce),
            Payload {
                msg: &signed[26..],
                aad: &signed[..26],
            },
        )
        .unwrap();
    assert_eq!(plaintext, b"documented");
}

#[test]
fn safety_number_follows_the_documented_construction() {
    let mut rng = ChaCha20Rng::from_seed([42; 32]);
    let alice = AccountIdentity::generate(&mut rng).public_key();
    let bob = AccountIdentity::generate(&mut rng).public_key();
    let fingerprint = |user: &[u8], key: [u8; 32]| {
        let mut hash = Sha512::new()
            .chain_update(0u16.to_be_bytes())
            .chain_update(key)
            .chain_update(user)
            .chain_update(key)
            .finalize();
        for _ in 1..5200 {
            hash = Sha512::new()
                .chain_update(hash)
                .chain_update(key)
                .finalize();
        }
        hash[..32].to_vec()
    };
    let digits = |print: &[u8]| -> String {
        print[..30]
            .chunks(5)
            .map(|c| {
                let v = c.iter().fold(0u64, |a, b| a << 8 | u64::from(*b));
                format!("{:05}", v % 100_000)
            })
            .collect()
    };
    let a = fingerprint(b"alice", alice.to_bytes());
    let b = fingerprint(b"bob", bob.to_bytes());
    let mut numbers = [digits(&a), digits(&b)];
    numbers.sort();
    let number = SafetyNumber::new(b"alice", &alice, b"bob", &bob);
    assert_eq!(number.digits(), numbers.concat());
    let (low, high) = if a < b { (a, b) } else { (b, a) };
    assert_eq!(
        number.qr_payload().as_slice(),
        [&[1u8][..], &low, &high].concat()
    );
}
