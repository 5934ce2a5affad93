//! Hostile ratchet messages against a live session: never a panic, and a failed
//! decrypt leaves the session able to decrypt the next genuine message.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;
use tern_crypto::identity::DeviceIdentity;
use tern_crypto::pqxdh::PreKeyMessage;
use tern_crypto::prekeys::{KemPreKey, KemPreKeyKind, PreKeyBundle, SignedPreKey};
use tern_crypto::ratchet::RatchetMessage;
use tern_crypto::session::Session;

/// Bob's session after Alice's first message, and Alice's genuine second message.
fn fixture() -> &'static (Session, RatchetMessage) {
    static FIXTURE: OnceLock<(Session, RatchetMessage)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut rng = ChaCha20Rng::from_seed([7; 32]);
        let alice = DeviceIdentity::generate(&mut rng);
        let bob = DeviceIdentity::generate(&mut rng);
        let signed = SignedPreKey::generate(1, &bob, &mut rng);
        let kem = KemPreKey::generate(1, KemPreKeyKind::LastResort, &bob, &mut rng);
        let bundle = PreKeyBundle {
            identity_key: bob.public_key(),
            signed_prekey: signed.public(),
            one_time_prekey: None,
            kem_prekey: Some(kem.public()),
        };
        let mut a = Session::initiate(&alice, &bundle, true, &mut rng).expect("initiate");
        let first =
            PreKeyMessage::decode(&a.encrypt(b"1", &mut rng).expect("encrypt")).expect("decode");
        let second =
            PreKeyMessage::decode(&a.encrypt(b"2", &mut rng).expect("encrypt")).expect("decode");
        let (b, _) = Session::respond(&bob, &first, &signed, None, Some(&kem)).expect("respond");
        (b, second.message)
    })
}

fuzz_target!(|data: &[u8]| {
    let (session, genuine) = fixture();
    let mut session = session.clone();
    if let Ok(message) = RatchetMessage::decode(data) {
        if session.decrypt(&message).is_err() {
            assert_eq!(session.decrypt(genuine).expect("state unchanged"), b"2");
        }
    }
});
