//! Double Ratchet bounds: forward jumps and the skipped-key store.

// Test helpers outside #[test] functions unwrap too (clippy.toml only covers tests).
#![allow(clippy::unwrap_used)]

use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;
use tern_crypto::CryptoError;
use tern_crypto::consts::{MAX_FORWARD_JUMP, MAX_SKIPPED_KEYS_PER_CHAIN};
use tern_crypto::identity::DeviceIdentity;
use tern_crypto::pqxdh::PreKeyMessage;
use tern_crypto::prekeys::{KemPreKey, KemPreKeyKind, PreKeyBundle, SignedPreKey};
use tern_crypto::session::Session;

fn pair(rng: &mut ChaCha20Rng) -> (Session, Session) {
    let alice = DeviceIdentity::generate(rng);
    let bob = DeviceIdentity::generate(rng);
    let signed = SignedPreKey::generate(1, &bob, rng);
    let kem = KemPreKey::generate(1, KemPreKeyKind::LastResort, &bob, rng);
    let bundle = PreKeyBundle {
        identity_key: bob.public_key(),
        signed_prekey: signed.public(),
        one_time_prekey: None,
        kem_prekey: Some(kem.public()),
    };
    let mut a = Session::initiate(&alice, &bundle, true, rng).unwrap();
    let first = PreKeyMessage::decode(&a.encrypt(b"hi", rng).unwrap()).unwrap();
    let (b, _) = Session::respond(&bob, &first, &signed, None, Some(&kem)).unwrap();
    (a, b)
}

fn state(session: &Session) -> String {
    // Debug shows every non-secret field and chain index; equality means no change.
    format!("{session:?}")
}

#[test]
fn jumps_up_to_the_limit_work_and_beyond_fail_without_changes() {
    let mut rng = ChaCha20Rng::from_seed([30; 32]);
    let (mut a, mut b) = pair(&mut rng);
    let mut sent = Vec::new();
    for _ in 0..=MAX_FORWARD_JUMP + 1 {
        sent.push(a.encrypt(b"m", &mut rng).unwrap());
    }
    // Alice has no reply yet, so her messages still carry the handshake.
    let decode = |bytes: &Vec<u8>| PreKeyMessage::decode(bytes).unwrap().message;
    // Message 0 was the first one; sent[i] is message i + 1, the last one is
    // MAX_FORWARD_JUMP + 1 keys ahead of Bob's chain.
    let before = state(&b);
    let too_far = decode(sent.last().unwrap());
    assert!(matches!(
        b.decrypt(&too_far),
        Err(CryptoError::ForwardJumpTooLarge { jump, .. }) if jump == MAX_FORWARD_JUMP + 1
    ));
    assert_eq!(state(&b), before);
    // Exactly the limit is fine; only the newest skipped keys are kept.
    let at_limit = decode(&sent[MAX_FORWARD_JUMP as usize]);
    assert_eq!(b.decrypt(&at_limit).unwrap(), b"m");
    let oldest_kept = MAX_FORWARD_JUMP as usize - MAX_SKIPPED_KEYS_PER_CHAIN;
    assert!(b.decrypt(&decode(&sent[oldest_kept])).is_ok());
    assert!(matches!(
        b.decrypt(&decode(&sent[oldest_kept - 1])),
        Err(CryptoError::MessageKeyUnavailable { .. })
    ));
    assert!(b.decrypt(&too_far).is_ok());
}
