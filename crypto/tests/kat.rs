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
use tern_crypto::fingerprint::SafetyNumber;
use tern_crypto::identity::{AccountIdentity, DeviceIdentity};
use tern_crypto::pqxdh::PreKeyMessage;
use tern_crypto::prekeys::{KemPreKey, KemPreKeyKind, OneTimePreKey, PreKeyBundle, SignedPreKey};
use tern_crypto::ratchet::RatchetMessage;
use tern_crypto::sender_key::{GroupSender, SenderKeyMessage, SenderKeyRecord};
use tern_crypto::session::Session;

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
        "fcc9111a4716fb5c64356f1f684cd112177071f2b87dc704c73b82176ccf0dc85574a5159ea6eeff63043be84db33d0b24864ae47a0f9f7220c9341589481304"
    );
    assert_eq!(
        hex::encode(account.public_key().to_bytes()),
        "49cf7548e60a3c0603b620724b2c2353fcc6560e81269131dca856b05cb5ac77"
    );
    assert_eq!(
        hex::encode(account.sign(b"tern kat")),
        "6b415581daa167b9c8fe098101689f6aee8f07c0a1fcb660457ee96d3866d784b22363f3feeafb5479e7a7c55e917e4d5916e77d5a917a8f28e328e8891f7600"
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
        "ef2b693ce1f05932365a15936e540cf8fa4de931d9e5e6c3d0a84ecffd84b46c"
    );

    let mut a = Session::initiate(&alice, &bundle, true, &mut rng).unwrap();
    let initial = a.encrypt(b"PQXDH known answer", &mut rng).unwrap();
    assert_eq!(initial.len(), 1723);
    assert_eq!(
        sha256(&initial),
        "9a4c6e5d82b654cafb1bbec6ea40059877faf66719e4e957fe94285c8a4776e6"
    );
    let initial = PreKeyMessage::decode(&initial).unwrap();
    let (mut b, plaintext) =
        Session::respond(&bob, &initial, &signed, Some(&one_time), Some(&kem)).unwrap();
    assert_eq!(plaintext, b"PQXDH known answer");

    // Bob's reply takes the sending half of a DH step; Alice's answer another one.
    let reply = b.encrypt(b"reply", &mut rng).unwrap();
    assert_eq!(
        hex::encode(&reply),
        "0101308884e64162a58a11fb3c708d9235fb10b7125c3fb468b22b0f72e13d4a1b6f000000000000000026fcf17dc9ec96a3a1cd9fc07889cf1d0dc3a70b65"
    );
    assert_eq!(
        a.decrypt(&RatchetMessage::decode(&reply).unwrap()).unwrap(),
        b"reply"
    );
    let answer = a.encrypt(b"answer", &mut rng).unwrap();
    assert_eq!(
        hex::encode(&answer),
        "01015d152b9f9e19216cae0ef3d307a48038684a1fa6a061d0a04a16a5a02325382f00000001000000008a7241cbc4d25bb9758d03f3f689bd6da2fb9e0b6997"
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
        "01015d152b9f9e19216cae0ef3d307a48038684a1fa6a061d0a04a16a5a02325382f00000001000000014566c7f175082075c4186fb02896e09149fc2179a1"
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
        "01031111111111111111111111111111111152644a9000000000411518920aecf296ec65c4ee72ad06fa0681b16c0551dde3906ac4668ee83c760d0d9deb0c465d0cea00d9c21600fdce871a961fc1b34eb39570b5cbcfdc471eb357cfe33b891d41fadbb1cde31ba98be986d8fec03a11f3390c4d49b665fed04402"
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
