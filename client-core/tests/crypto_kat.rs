//! Known-answer tests: fixed keys and randomness in, fixed bytes out.
//!
//! All randomness comes from ChaCha20Rng seeded with fixed bytes, in the order the
//! calls below make. A change to any KDF label, encoding, key derivation or the
//! order in which randomness is drawn changes these answers; such a change is a
//! protocol change and must be documented in docs/crypto.md.

// Test helpers outside #[test] functions unwrap too (clippy.toml only covers tests).
#![allow(clippy::unwrap_used)]

use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;
use sha2::{Digest, Sha256};
use tern_core::crypto::fingerprint::SafetyNumber;
use tern_core::crypto::identity::{AccountIdentity, DeviceIdentity};
use tern_core::crypto::pqxdh::PreKeyMessage;
use tern_core::crypto::prekeys::{
    KemPreKey, KemPreKeyKind, OneTimePreKey, PreKeyBundle, SignedPreKey,
};
use tern_core::crypto::ratchet::RatchetMessage;
use tern_core::crypto::sender_key::{GroupSender, SenderKeyMessage, SenderKeyRecord};
use tern_core::crypto::session::Session;

fn rng(seed: u8) -> ChaCha20Rng {
    ChaCha20Rng::from_seed([seed; 32])
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[test]
fn identity_keys_and_signatures() {
    let mut rng = rng(0x01);
    let device = DeviceIdentity::generate(&mut rng);
    let account = AccountIdentity::generate(&mut rng);
    assert_eq!(
        hex::encode(device.public_key().to_bytes()),
        "4d4b18062f8502598de045ca7b69f067f59f93b16e3af8733a988adc2341f5c8"
    );
    assert_eq!(
        hex::encode(device.sign(b"tern kat")),
        "38252098f8bf8ab895c4341fe747b52bdce80a0114f88899438bd64a9d6eb173af49df19fdac317601c1204c280d821b2123d919d2adea9fcee15e39c1a03e08"
    );
    assert_eq!(
        hex::encode(account.public_key().to_bytes()),
        "49cf7548e60a3c0603b620724b2c2353fcc6560e81269131dca856b05cb5ac77"
    );
    assert_eq!(
        hex::encode(account.sign(b"tern kat")),
        "4b3dfa94d96b4222155b0344a73d8b8483705ead93679d348473c80e1883ba78a45c2de34854ab1c9ddbd9c871a6c3e60160473fe8fa867229e255d4b1e4fe04"
    );
}

#[test]
fn pqxdh_handshake_and_ratchet_steps() {
    let mut rng = rng(0x02);
    let alice = DeviceIdentity::generate(&mut rng);
    let bob = DeviceIdentity::generate(&mut rng);
    let signed = SignedPreKey::generate(1, &bob, &mut rng);
    let one_time = OneTimePreKey::generate_batch(7, 1, &mut rng).remove(0);
    let kem = KemPreKey::generate(3, KemPreKeyKind::OneTime, &bob, &mut rng);
    let bundle = PreKeyBundle {
        identity_key: bob.public_key(),
        signed_prekey: signed.public(),
        one_time_prekey: Some(one_time.public()),
        kem_prekey: Some(kem.public()),
    };
    assert_eq!(
        sha256(&bundle.encode()),
        "88183c801590bc5b87671a00bca487037538d7eb58eb3f7c5f97f0c55c510677"
    );

    let mut a = Session::initiate(&alice, &bundle, true, &mut rng).unwrap();
    let initial = a.encrypt(b"PQXDH known answer", &mut rng).unwrap();
    assert_eq!(initial.len(), 1723);
    assert_eq!(
        sha256(&initial),
        "41322dbe1b159bfe6a54d9852b2ca17a366dc238c9a670ba513b94486ad17dfc"
    );
    let initial = PreKeyMessage::decode(&initial).unwrap();
    let (mut b, plaintext) =
        Session::respond(&bob, &initial, &signed, Some(&one_time), Some(&kem)).unwrap();
    assert_eq!(plaintext, b"PQXDH known answer");

    // Bob's reply takes the sending half of a DH step; Alice's answer another one.
    let reply = b.encrypt(b"reply", &mut rng).unwrap();
    assert_eq!(
        hex::encode(&reply),
        "0101308884e64162a58a11fb3c708d9235fb10b7125c3fb468b22b0f72e13d4a1b6f0000000000000000a928b250d9dba7379706a263b4d555fe2f05e6385d"
    );
    assert_eq!(
        a.decrypt(&RatchetMessage::decode(&reply).unwrap()).unwrap(),
        b"reply"
    );
    let answer = a.encrypt(b"answer", &mut rng).unwrap();
    assert_eq!(
        hex::encode(&answer),
        "01015d152b9f9e19216cae0ef3d307a48038684a1fa6a061d0a04a16a5a02325382f000000010000000052a9f2e159423c4cfbe18743088ac25f758259de1e64"
    );
    assert_eq!(
        b.decrypt(&RatchetMessage::decode(&answer).unwrap())
            .unwrap(),
        b"answer"
    );
    // A symmetric step (same chain).
    let again = a.encrypt(b"again", &mut rng).unwrap();
    assert_eq!(
        hex::encode(&again),
        "01015d152b9f9e19216cae0ef3d307a48038684a1fa6a061d0a04a16a5a02325382f0000000100000001074c5e756d89f0f219ae38d5c963e8e63b53fe4b9e"
    );
}

#[test]
fn sender_key_distribution_and_message() {
    let mut rng = rng(0x03);
    let mut sender = GroupSender::new([0x11; 16], &mut rng);
    let distribution = sender.distribution_message();
    assert_eq!(
        hex::encode(&*distribution.encode()),
        "01041111111111111111111111111111111152644a90000000004ce3c873b94a11402512c7694e72deaed1ab837a08622c46ab5f17ceffb9e4ee5b046ad634c08ca3c327b59f7087fdf23e2f56e1a4e7a4cfa90eb957e6b11dfa"
    );
    let message = sender.encrypt(b"group known answer").unwrap();
    assert_eq!(
        hex::encode(&message),
        "01031111111111111111111111111111111152644a90000000008d3b09815402cfca6b379d4c15f7f5f8d7943d94c163354e1a7a42ef32d3ceff9087a8320ccd52068946d3ffd4ad41454b0ebff82a866a3782d2f3bd2d1ae45306cdab1e373e8e173b878902a46af5282c729708e1b75fbe23f0bd2d71cf77d7d900"
    );
    let mut record = SenderKeyRecord::new();
    record.process_distribution(&distribution);
    let decoded = SenderKeyMessage::decode(&message).unwrap();
    assert_eq!(record.decrypt(&decoded).unwrap(), b"group known answer");
}

#[test]
fn safety_number() {
    let mut rng = rng(0x04);
    let alice = AccountIdentity::generate(&mut rng).public_key();
    let bob = AccountIdentity::generate(&mut rng).public_key();
    let number = SafetyNumber::new(&[0xa1; 16], &alice, &[0xb0; 16], &bob);
    assert_eq!(
        number.digits(),
        "850150021127719611801370266868935051881674653141147603231437"
    );
    assert_eq!(
        hex::encode(number.qr_payload()),
        "015eb1755eb704f73ae0f3507726fdc7603a2989bc800892360618b18dabb46840664fb2f961332aa88340fbdac7219dada69041e22e0879804062d2ce50ada4fb"
    );
}
