//! Replay protection of initial messages that used no one-time prekey (only the
//! signed prekey and the last-resort KEM prekey), and its persistence and bound.

// Test helpers outside #[test] functions unwrap too (clippy.toml only covers tests).
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use support::{Device, LAST_RESORT_ID, rng};
use tern_crypto::CryptoError;
use tern_crypto::consts::MAX_REPLAY_ENTRIES;
use tern_crypto::prekeys::{PreKeyBundle, SignedPreKey};
use tern_crypto::rotation::{RotationPolicy, RotationSchedule};
use tern_crypto::session::{DeviceAddress, InMemoryStore, SessionManager, SessionStore};

/// Bob's bundle as the relay hands it out once every one-time key is gone.
fn last_resort_bundle(bob: &Device) -> PreKeyBundle {
    let directory = bob.directory.lock().unwrap();
    PreKeyBundle {
        identity_key: bob.manager.identity().public_key(),
        signed_prekey: directory.signed.clone(),
        one_time_prekey: None,
        kem_prekey: Some(directory.kem_last_resort.clone()),
    }
}

fn signed_prekey(device: &Device) -> SignedPreKey {
    device.store.load_signed_prekey(1).unwrap().unwrap()
}

/// Alice's initial message to Bob under the last-resort bundle.
fn last_resort_initial(alice: &Device, bob: &Device, seed: u8) -> Vec<u8> {
    let mut rng = rng(seed);
    let bundle = last_resort_bundle(bob).into_verified().unwrap();
    alice
        .manager
        .start_verified_session(bob.address, &bundle, &mut rng)
        .unwrap();
    alice
        .manager
        .encrypt(bob.address, b"pay 5", &mut rng)
        .unwrap()
}

#[test]
fn a_last_resort_initial_message_cannot_be_replayed() {
    let mut rng = rng(40);
    let alice = Device::new(1, 1, &mut rng);
    let bob = Device::new(2, 1, &mut rng);
    let initial = last_resort_initial(&alice, &bob, 41);
    let second = alice
        .manager
        .encrypt(bob.address, b"two", &mut rng)
        .unwrap();
    assert_eq!(bob.receive(&alice, &initial).unwrap(), b"pay 5");
    assert_eq!(signed_prekey(&bob).replay_cache().len(), 1);
    // The initiator's further prekey messages of the same session still decrypt.
    assert_eq!(bob.receive(&alice, &second).unwrap(), b"two");

    // Session gone (or the message re-addressed by the relay): the handshake would
    // succeed again without the replay cache.
    bob.store.remove_session(&alice.address);
    assert!(matches!(
        bob.receive(&alice, &initial),
        Err(CryptoError::ReplayedPreKeyMessage)
    ));
    assert!(bob.record_bytes(&alice).is_none());
    let mallory = DeviceAddress {
        user: [9; 16],
        device: 3,
    };
    assert!(matches!(
        bob.manager.decrypt(mallory, &initial),
        Err(CryptoError::ReplayedPreKeyMessage)
    ));
    assert!(bob.store.load_session(&mallory).unwrap().is_none());
    assert_eq!(signed_prekey(&bob).replay_cache().len(), 1);
}

#[test]
fn handshakes_that_consumed_a_one_time_key_are_not_remembered() {
    let mut rng = rng(42);
    let alice = Device::new(1, 1, &mut rng);
    let bob = Device::new(2, 1, &mut rng);
    let initial = alice.send(&bob, b"hi", &mut rng);
    bob.receive(&alice, &initial).unwrap();
    assert!(signed_prekey(&bob).replay_cache().is_empty());
}

#[test]
fn the_replay_cache_survives_a_restart_through_the_store() {
    let mut rng = rng(43);
    let alice = Device::new(1, 1, &mut rng);
    let bob = Device::new(2, 1, &mut rng);
    let initial = last_resort_initial(&alice, &bob, 44);
    bob.receive(&alice, &initial).unwrap();

    // Bob's device restarts from its stored prekeys, without the session.
    let stored = signed_prekey(&bob).to_bytes();
    let restarted_store = Arc::new(InMemoryStore::new());
    restarted_store.add_signed_prekey(SignedPreKey::from_bytes(&stored).unwrap());
    restarted_store.add_kem_prekey(bob.store.load_kem_prekey(LAST_RESORT_ID).unwrap().unwrap());
    let restarted = SessionManager::new(bob.manager.identity().clone(), restarted_store.clone());
    assert!(matches!(
        restarted.decrypt(alice.address, &initial),
        Err(CryptoError::ReplayedPreKeyMessage)
    ));
    assert!(
        restarted_store
            .load_session(&alice.address)
            .unwrap()
            .is_none()
    );
}

#[test]
fn a_full_replay_cache_refuses_new_handshakes_and_asks_for_rotation() {
    let mut rng = rng(45);
    let alice = Device::new(1, 1, &mut rng);
    let bob = Device::new(2, 1, &mut rng);
    // Bob's signed prekey as stored after MAX_REPLAY_ENTRIES accepted handshakes.
    let mut full = signed_prekey(&bob).to_bytes().to_vec();
    full.truncate(full.len() - 4);
    full.extend_from_slice(&(MAX_REPLAY_ENTRIES as u32).to_be_bytes());
    for i in 0..MAX_REPLAY_ENTRIES as u32 {
        full.push(1);
        full.extend_from_slice(&LAST_RESORT_ID.to_be_bytes());
        full.extend_from_slice(&[&i.to_be_bytes()[..], &[0xaa; 28]].concat());
    }
    let full = SignedPreKey::from_bytes(&full).unwrap();
    assert_eq!(full.replay_cache().len(), MAX_REPLAY_ENTRIES);
    bob.store.add_signed_prekey(full);

    let initial = last_resort_initial(&alice, &bob, 46);
    assert!(matches!(
        bob.receive(&alice, &initial),
        Err(CryptoError::ReplayCacheFull {
            signed_prekey_id: 1
        })
    ));
    assert!(bob.record_bytes(&alice).is_none());
    let signed = signed_prekey(&bob);
    assert_eq!(signed.replay_cache().len(), MAX_REPLAY_ENTRIES);
    // The rotation schedule reports the prekey due at once, whatever its age.
    let schedule = RotationSchedule::new(signed.id(), 1_000);
    assert!(schedule.is_due(
        &RotationPolicy::SIGNED_PREKEY,
        1_000,
        signed.replay_cache().wants_rotation()
    ));
}
