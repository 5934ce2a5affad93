//! Sender keys: distribution, ordering, tampering, bounds, rotation.

// Test helpers outside #[test] functions unwrap too (clippy.toml only covers tests).
#![allow(clippy::unwrap_used)]

mod support;

use support::rng;
use tern_crypto::CryptoError;
use tern_crypto::consts::{MAX_FORWARD_JUMP, MAX_SENDER_KEY_STATES};
use tern_crypto::sender_key::{
    DistributionMessage, GroupSender, SenderKeyMessage, SenderKeyRecord,
};

fn decrypt(record: &mut SenderKeyRecord, bytes: &[u8]) -> Result<Vec<u8>, CryptoError> {
    record.decrypt(&SenderKeyMessage::decode(bytes)?)
}

#[test]
fn out_of_order_delivery_duplicates_and_tampering() {
    let mut rng = rng(20);
    let mut sender = GroupSender::new([1; 16], &mut rng);
    let distribution =
        DistributionMessage::decode(&sender.distribution_message().encode()).unwrap();
    let mut record = SenderKeyRecord::new();
    record.process_distribution(&distribution);
    let messages: Vec<Vec<u8>> = (0..5u8)
        .map(|i| sender.encrypt(&[i; 10]).unwrap())
        .collect();
    assert_eq!(decrypt(&mut record, &messages[3]).unwrap(), [3; 10]);
    assert_eq!(decrypt(&mut record, &messages[0]).unwrap(), [0; 10]);
    assert!(matches!(
        decrypt(&mut record, &messages[0]),
        Err(CryptoError::MessageKeyUnavailable { index: 0 })
    ));
    let before = record.to_bytes().to_vec();
    for i in 0..messages[4].len() {
        let mut bad = messages[4].clone();
        bad[i] ^= 0x01;
        assert!(decrypt(&mut record, &bad).is_err(), "byte {i}");
        assert_eq!(record.to_bytes().to_vec(), before, "byte {i}");
    }
    for message in [&messages[4], &messages[1], &messages[2]] {
        assert!(decrypt(&mut record, message).is_ok());
    }
    let restored = SenderKeyRecord::from_bytes(&record.to_bytes()).unwrap();
    assert_eq!(restored.to_bytes().to_vec(), record.to_bytes().to_vec());
}

#[test]
fn late_joiner_starts_at_the_distributed_iteration() {
    let mut rng = rng(21);
    let mut sender = GroupSender::new([2; 16], &mut rng);
    let early = sender.encrypt(b"before you joined").unwrap();
    let mut record = SenderKeyRecord::new();
    record.process_distribution(&sender.distribution_message());
    let later = sender.encrypt(b"welcome").unwrap();
    assert_eq!(decrypt(&mut record, &later).unwrap(), b"welcome");
    assert!(matches!(
        decrypt(&mut record, &early),
        Err(CryptoError::MessageKeyUnavailable { index: 0 })
    ));
}

#[test]
fn rotation_locks_out_removed_members_and_keeps_in_flight_messages() {
    let mut rng = rng(22);
    let mut sender = GroupSender::new([3; 16], &mut rng);
    let mut staying = SenderKeyRecord::new();
    let mut leaving = SenderKeyRecord::new();
    staying.process_distribution(&sender.distribution_message());
    leaving.process_distribution(&sender.distribution_message());
    let in_flight = sender.encrypt(b"old chain").unwrap();
    sender.rotate(&mut rng);
    staying.process_distribution(&sender.distribution_message());
    let fresh = sender.encrypt(b"new chain").unwrap();
    assert_eq!(decrypt(&mut staying, &fresh).unwrap(), b"new chain");
    assert_eq!(decrypt(&mut staying, &in_flight).unwrap(), b"old chain");
    assert!(matches!(
        decrypt(&mut leaving, &fresh),
        Err(CryptoError::UnknownSenderChain(_))
    ));
    // Only the newest MAX_SENDER_KEY_STATES chains are kept.
    let first = GroupSender::new([3; 16], &mut rng);
    let mut record = SenderKeyRecord::new();
    record.process_distribution(&first.distribution_message());
    let mut first = first;
    let old = first.encrypt(b"x").unwrap();
    for _ in 0..MAX_SENDER_KEY_STATES {
        record.process_distribution(&GroupSender::new([3; 16], &mut rng).distribution_message());
    }
    assert!(matches!(
        decrypt(&mut record, &old),
        Err(CryptoError::UnknownSenderChain(_))
    ));
}

#[test]
fn forward_jump_beyond_the_limit_is_refused_without_changes() {
    let mut rng = rng(23);
    let sender = GroupSender::new([4; 16], &mut rng);
    let mut record = SenderKeyRecord::new();
    record.process_distribution(&sender.distribution_message());
    // Move the sender's counter far ahead (the signature stays valid).
    let mut bytes = sender.to_bytes().to_vec();
    bytes[54..58].copy_from_slice(&(MAX_FORWARD_JUMP + 1).to_be_bytes());
    let mut far = GroupSender::from_bytes(&bytes).unwrap();
    let message = far.encrypt(b"far").unwrap();
    let before = record.to_bytes().to_vec();
    assert!(matches!(
        decrypt(&mut record, &message),
        Err(CryptoError::ForwardJumpTooLarge { .. })
    ));
    assert_eq!(record.to_bytes().to_vec(), before);
}

#[test]
fn decoders_reject_truncation_and_debug_hides_chain_keys() {
    let mut rng = rng(24);
    let mut sender = GroupSender::new([5; 16], &mut rng);
    let distribution = sender.distribution_message().encode();
    for len in 0..distribution.len() {
        assert!(DistributionMessage::decode(&distribution[..len]).is_err());
    }
    let mut record = SenderKeyRecord::new();
    record.process_distribution(&sender.distribution_message());
    let message = sender.encrypt(b"m").unwrap();
    for len in 0..message.len() {
        assert!(
            decrypt(&mut record, &message[..len]).is_err(),
            "prefix {len}"
        );
    }
    assert_eq!(decrypt(&mut record, &message).unwrap(), b"m");
    let chain_key = &distribution[26..58];
    let rendered = format!("{:?} {:?}", sender, sender.distribution_message());
    let needle = format!("{:?}", &chain_key[..4]);
    assert!(!rendered.contains(needle.trim_start_matches('[').trim_end_matches(']')));
}

#[test]
fn distribution_travels_over_pairwise_sessions_to_every_member_device() {
    let mut rng = rng(25);
    let alice = support::Device::new(1, 1, &mut rng);
    let members: Vec<support::Device> = (0..3)
        .map(|i| support::Device::new(2, i, &mut rng))
        .collect();
    let mut sender = GroupSender::new([6; 16], &mut rng);
    let distribution = sender.distribution_message().encode();
    let mut records: Vec<SenderKeyRecord> = members
        .iter()
        .map(|member| {
            let wire = alice.send(member, &distribution, &mut rng);
            let plaintext = member.receive(&alice, &wire).unwrap();
            let mut record = SenderKeyRecord::new();
            record.process_distribution(&DistributionMessage::decode(&plaintext).unwrap());
            record
        })
        .collect();
    let message = sender.encrypt(b"to the group").unwrap();
    for record in &mut records {
        assert_eq!(decrypt(record, &message).unwrap(), b"to the group");
    }
}
