//! Session behaviour: handshakes, prekey consumption, replay, Sesame rules, persistence.

// Test helpers outside #[test] functions unwrap too (clippy.toml only covers tests).
#![allow(clippy::unwrap_used)]

mod support;

use support::{Device, KEM_ONE_TIME_KEYS, ONE_TIME_KEYS, rng};
use tern_crypto::CryptoError;
use tern_crypto::session::{SessionRecord, SessionStore};

#[test]
fn session_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<tern_crypto::session::SessionManager<tern_crypto::session::InMemoryStore>>();
    send_sync::<tern_crypto::session::Session>();
    send_sync::<SessionRecord>();
    send_sync::<tern_crypto::sender_key::GroupSender>();
    send_sync::<tern_crypto::sender_key::SenderKeyRecord>();
}

#[test]
fn first_messages_carry_the_handshake_until_the_reply() {
    let mut rng = rng(1);
    let alice = Device::new(1, 1, &mut rng);
    let bob = Device::new(2, 1, &mut rng);
    let m1 = alice.send(&bob, b"one", &mut rng);
    let m2 = alice.send(&bob, b"two", &mut rng);
    assert_eq!(&m1[..2], &[1, 2], "prekey message");
    assert_eq!(&m2[..2], &[1, 2], "still a prekey message");
    // Delivered out of order: the second creates the session, the first uses it.
    let first = bob.manager.decrypt(alice.address, &m2).unwrap();
    assert!(first.new_session);
    assert_eq!(first.plaintext, b"two");
    assert_eq!(first.sender_identity, alice.manager.identity().public_key());
    let second = bob.manager.decrypt(alice.address, &m1).unwrap();
    assert!(!second.new_session);
    assert_eq!(second.plaintext, b"one");
    assert_eq!(
        bob.store.one_time_prekeys_left(),
        ONE_TIME_KEYS as usize - 1
    );
    assert_eq!(bob.store.kem_prekeys_left(), KEM_ONE_TIME_KEYS as usize);

    let reply = bob.send(&alice, b"hi", &mut rng);
    assert_eq!(&reply[..2], &[1, 1], "ratchet message");
    assert_eq!(alice.receive(&bob, &reply).unwrap(), b"hi");
    let m3 = alice.send(&bob, b"three", &mut rng);
    assert_eq!(&m3[..2], &[1, 1], "handshake no longer attached");
    assert_eq!(bob.receive(&alice, &m3).unwrap(), b"three");
    assert_eq!(alice.active_base_key(&bob), bob.active_base_key(&alice));
}

#[test]
fn replayed_initial_message_fails_cleanly() {
    let mut rng = rng(2);
    let alice = Device::new(1, 1, &mut rng);
    let bob = Device::new(2, 1, &mut rng);
    let initial = alice.send(&bob, b"once", &mut rng);
    bob.receive(&alice, &initial).unwrap();
    let before = bob.record_bytes(&alice);
    assert!(matches!(
        bob.receive(&alice, &initial),
        Err(CryptoError::MessageKeyUnavailable { index: 0 })
    ));
    assert_eq!(bob.record_bytes(&alice), before);
    // Even with the session gone, the consumed one-time prekeys make the replay fail.
    bob.store.remove_session(&alice.address);
    assert!(matches!(
        bob.receive(&alice, &initial),
        Err(CryptoError::UnknownPreKey {
            kind: "one-time",
            ..
        })
    ));
    assert!(bob.record_bytes(&alice).is_none());
}

#[test]
fn retransmitted_handshake_with_altered_fields_is_rejected() {
    let mut rng = rng(11);
    let alice = Device::new(1, 1, &mut rng);
    let bob = Device::new(2, 1, &mut rng);
    let first = alice.send(&bob, b"first", &mut rng);
    let second = alice.send(&bob, b"second", &mut rng);
    bob.receive(&alice, &first).unwrap();
    let before = bob.record_bytes(&alice);
    // Flip a bit of the KEM ciphertext (offset: header 2 + flags 1 + keys 64 + ids 12).
    let mut altered = second.clone();
    altered[79 + 4] ^= 1;
    assert!(matches!(
        bob.receive(&alice, &altered),
        Err(CryptoError::HandshakeMismatch)
    ));
    assert_eq!(bob.record_bytes(&alice), before);
    assert_eq!(bob.receive(&alice, &second).unwrap(), b"second");
}

#[test]
fn kem_prekeys_one_time_consumed_last_resort_kept() {
    let mut rng = rng(3);
    let bob = Device::new(2, 1, &mut rng);
    let senders: Vec<Device> = (0..3).map(|i| Device::new(10 + i, 1, &mut rng)).collect();
    for sender in &senders {
        let message = sender.send(&bob, b"x", &mut rng);
        bob.receive(sender, &message).unwrap();
    }
    // Two one-time KEM prekeys were used up, the third sender got the last-resort key.
    assert_eq!(bob.store.kem_prekeys_left(), 1);
}

#[test]
fn classical_bundles_are_refused_unless_allowed() {
    let mut rng = rng(4);
    let alice = Device::new(1, 1, &mut rng);
    let bob = Device::new(2, 1, &mut rng);
    let mut bundle = bob.bundle();
    bundle.kem_prekey = None;
    assert!(matches!(
        alice.manager.start_session(bob.address, &bundle, &mut rng),
        Err(CryptoError::MissingKemPreKey)
    ));
    let classical = tern_crypto::session::SessionManager::new(
        tern_crypto::identity::DeviceIdentity::generate(&mut rng),
        std::sync::Arc::new(tern_crypto::session::InMemoryStore::new()),
    )
    .allow_classical_handshakes(true);
    classical
        .start_session(bob.address, &bundle, &mut rng)
        .unwrap();
    let message = classical
        .encrypt(bob.address, b"classical", &mut rng)
        .unwrap();
    // Bob requires the KEM: the downgrade is refused on his side too.
    assert!(matches!(
        bob.manager.decrypt(alice.address, &message),
        Err(CryptoError::MissingKemPreKey)
    ));
}

#[test]
fn tampered_messages_fail_and_change_nothing() {
    let mut rng = rng(5);
    let alice = Device::new(1, 1, &mut rng);
    let bob = Device::new(2, 1, &mut rng);
    let initial = alice.send(&bob, b"setup", &mut rng);
    bob.receive(&alice, &initial).unwrap();
    let reply = bob.send(&alice, b"reply", &mut rng);
    alice.receive(&bob, &reply).unwrap();
    let message = alice.send(&bob, b"tamper with me", &mut rng);
    let before = bob.record_bytes(&alice);
    for i in 0..message.len() {
        let mut bad = message.clone();
        bad[i] ^= 0x20;
        assert!(bob.receive(&alice, &bad).is_err(), "byte {i}");
        assert_eq!(bob.record_bytes(&alice), before, "byte {i}");
    }
    for len in 0..message.len() {
        assert!(bob.receive(&alice, &message[..len]).is_err());
    }
    assert_eq!(bob.receive(&alice, &message).unwrap(), b"tamper with me");
}

#[test]
fn simultaneous_initiation_converges() {
    let mut rng = rng(6);
    let alice = Device::new(1, 1, &mut rng);
    let bob = Device::new(2, 1, &mut rng);
    let from_alice = alice.send(&bob, b"hello bob", &mut rng);
    let from_bob = bob.send(&alice, b"hello alice", &mut rng);
    assert_eq!(alice.receive(&bob, &from_bob).unwrap(), b"hello alice");
    assert_eq!(bob.receive(&alice, &from_alice).unwrap(), b"hello bob");
    assert_eq!(alice.active_base_key(&bob), bob.active_base_key(&alice));
    // Both keep talking at once; every message decrypts and the choice is stable.
    for round in 0..3u8 {
        let a = alice.send(&bob, &[round], &mut rng);
        let b = bob.send(&alice, &[round], &mut rng);
        assert_eq!(bob.receive(&alice, &a).unwrap(), [round]);
        assert_eq!(alice.receive(&bob, &b).unwrap(), [round]);
        assert_eq!(alice.active_base_key(&bob), bob.active_base_key(&alice));
    }
}

#[test]
fn archived_session_still_decrypts_and_is_promoted() {
    let mut rng = rng(7);
    let alice = Device::new(1, 1, &mut rng);
    let bob = Device::new(2, 1, &mut rng);
    let initial = alice.send(&bob, b"s1", &mut rng);
    bob.receive(&alice, &initial).unwrap();
    let late = bob.send(&alice, b"late on s1", &mut rng);
    let first_base = alice.active_base_key(&bob);
    // Alice starts a second session (as after losing track of the first).
    alice
        .manager
        .start_session(bob.address, &bob.bundle(), &mut rng)
        .unwrap();
    assert_ne!(alice.active_base_key(&bob), first_base);
    let record = alice.store.load_session(&bob.address).unwrap().unwrap();
    assert_eq!(record.archived_len(), 1);
    assert_eq!(alice.receive(&bob, &late).unwrap(), b"late on s1");
    assert_eq!(alice.active_base_key(&bob), first_base, "promoted");
}

#[test]
fn reinstalled_peer_gets_a_fresh_session() {
    let mut rng = rng(8);
    let alice = Device::new(1, 1, &mut rng);
    let bob = Device::new(2, 1, &mut rng);
    let initial = alice.send(&bob, b"before", &mut rng);
    bob.receive(&alice, &initial).unwrap();
    let reply = bob.send(&alice, b"ack", &mut rng);
    alice.receive(&bob, &reply).unwrap();
    // Bob re-installs: same address, new identity and prekeys, no sessions.
    let bob = Device::new(2, 1, &mut rng);
    let stale = alice.send(&bob, b"lost", &mut rng);
    assert!(matches!(
        bob.receive(&alice, &stale),
        Err(CryptoError::NoSession)
    ));
    let hello = bob.send(&alice, b"new install", &mut rng);
    let decrypted = alice.manager.decrypt(bob.address, &hello).unwrap();
    assert!(decrypted.new_session);
    assert!(decrypted.identity_changed);
    let answer = alice.send(&bob, b"welcome back", &mut rng);
    assert_eq!(bob.receive(&alice, &answer).unwrap(), b"welcome back");
}

#[test]
fn records_survive_serialisation_mid_conversation() {
    let mut rng = rng(9);
    let alice = Device::new(1, 1, &mut rng);
    let bob = Device::new(2, 1, &mut rng);
    let initial = alice.send(&bob, b"a", &mut rng);
    bob.receive(&alice, &initial).unwrap();
    let skipped = bob.send(&alice, b"skipped", &mut rng);
    let newer = bob.send(&alice, b"newer", &mut rng);
    assert_eq!(alice.receive(&bob, &newer).unwrap(), b"newer");
    let bytes = alice.record_bytes(&bob).unwrap();
    let restored = SessionRecord::from_bytes(&bytes).unwrap();
    assert_eq!(restored.to_bytes().to_vec(), bytes);
    for len in 0..bytes.len() {
        assert!(SessionRecord::from_bytes(&bytes[..len]).is_err());
    }
    assert_eq!(alice.receive(&bob, &skipped).unwrap(), b"skipped");
}

#[test]
fn debug_output_shows_no_key_bytes() {
    let mut rng = rng(10);
    let alice = Device::new(1, 1, &mut rng);
    let bob = Device::new(2, 1, &mut rng);
    let initial = alice.send(&bob, b"a", &mut rng);
    bob.receive(&alice, &initial).unwrap();
    let bytes = bob.record_bytes(&alice).unwrap();
    // Responder record: header (3) + identities (64) + flags (2) + base key (32)
    // + prekey digest (33) + pending flag (1), then the root key.
    let root_key = &bytes[135..167];
    let record = bob.store.load_session(&alice.address).unwrap().unwrap();
    let debug = format!("{record:?}");
    let needle = format!("{:?}", &root_key[..4]);
    assert!(!debug.contains(needle.trim_start_matches('[').trim_end_matches(']')));
    assert!(debug.contains("redacted"));
    let identity = format!("{:?}", alice.manager.identity());
    assert!(identity.contains("redacted"));
}

#[test]
fn one_manager_serves_several_threads() {
    let mut rng = rng(12);
    let alice = Device::new(1, 1, &mut rng);
    let peers: Vec<Device> = (0..4).map(|i| Device::new(2, i, &mut rng)).collect();
    for peer in &peers {
        alice
            .manager
            .start_session(peer.address, &peer.bundle(), &mut rng)
            .unwrap();
    }
    let sent: Vec<Vec<Vec<u8>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = peers
            .iter()
            .enumerate()
            .map(|(i, peer)| {
                let alice = &alice;
                scope.spawn(move || {
                    let mut rng = support::rng(100 + i as u8);
                    (0..5u8)
                        .map(|n| alice.manager.encrypt(peer.address, &[n], &mut rng).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (peer, messages) in peers.iter().zip(sent) {
        for (n, message) in messages.iter().enumerate() {
            assert_eq!(peer.receive(&alice, message).unwrap(), [n as u8]);
        }
    }
}
