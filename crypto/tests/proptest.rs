//! Property tests: devices exchanging messages under random interleavings with loss,
//! reordering, duplication and tampering; decoders fed arbitrary bytes.

// Test helpers outside #[test] functions unwrap too (clippy.toml only covers tests).
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;

use proptest::prelude::*;
use support::{Device, rng};
use tern_crypto::consts::MAX_RECEIVER_CHAINS;
use tern_crypto::pqxdh::PreKeyMessage;
use tern_crypto::prekeys::PreKeyBundle;
use tern_crypto::ratchet::RatchetMessage;
use tern_crypto::sender_key::{
    DistributionMessage, GroupSender, SenderKeyMessage, SenderKeyRecord,
};
use tern_crypto::session::SessionRecord;

#[derive(Debug, Clone)]
enum Op {
    Send { from: usize, to: usize },
    Deliver(usize),
    Duplicate(usize),
    Drop(usize),
    Tamper { pick: usize, byte: usize, bit: u8 },
}

fn ops(devices: usize, max_len: usize) -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        4 => (0..devices, 1..devices).prop_map(move |(from, offset)| Op::Send { from, to: (from + offset) % devices }),
        5 => any::<usize>().prop_map(Op::Deliver),
        1 => any::<usize>().prop_map(Op::Duplicate),
        1 => any::<usize>().prop_map(Op::Drop),
        1 => (any::<usize>(), any::<usize>(), 0..8u8).prop_map(|(pick, byte, bit)| Op::Tamper { pick, byte, bit }),
    ];
    proptest::collection::vec(op, 1..max_len)
}

#[derive(Clone)]
struct Sent {
    from: usize,
    to: usize,
    bytes: Vec<u8>,
    plaintext: Vec<u8>,
}

fn ratchet_key(bytes: &[u8]) -> [u8; 32] {
    match PreKeyMessage::decode(bytes) {
        Ok(prekey) => *prekey.message.ratchet_key(),
        Err(_) => *RatchetMessage::decode(bytes).unwrap().ratchet_key(),
    }
}

struct World {
    devices: Vec<Device>,
    in_flight: Vec<Sent>,
    delivered: Vec<Sent>,
    /// Distinct ratchet keys each (receiver, sender) pair has accepted, in order.
    seen_keys: HashMap<(usize, usize), Vec<[u8; 32]>>,
}

impl World {
    fn snapshot(&self, to: usize, from: usize) -> (Option<Vec<u8>>, usize) {
        let device = &self.devices[to];
        (
            device.record_bytes(&self.devices[from]),
            device.store.one_time_prekeys_left(),
        )
    }

    fn deliver(&mut self, message: Sent) -> Result<(), TestCaseError> {
        let (to, from) = (message.to, message.from);
        let before = self.snapshot(to, from);
        let key = ratchet_key(&message.bytes);
        let seen = self.seen_keys.entry((to, from)).or_default();
        match self.devices[to].receive(&self.devices[from], &message.bytes) {
            Ok(plaintext) => {
                prop_assert_eq!(&plaintext, &message.plaintext);
                if !seen.contains(&key) {
                    seen.push(key);
                }
                self.delivered.push(message);
            }
            Err(error) => {
                // Only a message whose receiving chain was evicted may be lost.
                let evicted = seen
                    .iter()
                    .position(|k| *k == key)
                    .is_some_and(|p| p + MAX_RECEIVER_CHAINS < seen.len());
                prop_assert!(
                    evicted,
                    "message {:?} failed: {error}",
                    String::from_utf8_lossy(&message.plaintext)
                );
                prop_assert_eq!(self.snapshot(to, from), before);
            }
        }
        Ok(())
    }

    fn must_fail(&mut self, to: usize, from: usize, bytes: &[u8]) -> Result<(), TestCaseError> {
        let before = self.snapshot(to, from);
        prop_assert!(
            self.devices[to]
                .receive(&self.devices[from], bytes)
                .is_err()
        );
        prop_assert_eq!(self.snapshot(to, from), before);
        Ok(())
    }
}

fn run(device_count: usize, seed: u8, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut rng = rng(seed);
    let mut world = World {
        devices: (0..device_count)
            .map(|i| Device::new(i as u8 + 1, 1, &mut rng))
            .collect(),
        in_flight: Vec::new(),
        delivered: Vec::new(),
        seen_keys: HashMap::new(),
    };
    for (n, op) in ops.into_iter().enumerate() {
        match op {
            Op::Send { from, to } => {
                let plaintext = format!("message {n}").into_bytes();
                let bytes = world.devices[from].send(&world.devices[to], &plaintext, &mut rng);
                world.in_flight.push(Sent {
                    from,
                    to,
                    bytes,
                    plaintext,
                });
            }
            Op::Deliver(pick) if !world.in_flight.is_empty() => {
                let message = world.in_flight.remove(pick % world.in_flight.len());
                world.deliver(message)?;
            }
            Op::Duplicate(pick) if !world.delivered.is_empty() => {
                let message = world.delivered[pick % world.delivered.len()].clone();
                world.must_fail(message.to, message.from, &message.bytes)?;
            }
            Op::Drop(pick) if !world.in_flight.is_empty() => {
                world.in_flight.remove(pick % world.in_flight.len());
            }
            Op::Tamper { pick, byte, bit } if !world.in_flight.is_empty() => {
                let message = world.in_flight[pick % world.in_flight.len()].clone();
                let mut bytes = message.bytes.clone();
                let index = byte % bytes.len();
                bytes[index] ^= 1 << bit;
                world.must_fail(message.to, message.from, &bytes)?;
            }
            _ => {}
        }
    }
    // Everything still in flight arrives at last.
    while let Some(message) = world.in_flight.pop() {
        world.deliver(message)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn two_devices_under_loss_reordering_duplication_and_tampering(seed in any::<u8>(), ops in ops(2, 60)) {
        run(2, seed, ops)?;
    }

    #[test]
    fn three_devices_pairwise(seed in any::<u8>(), ops in ops(3, 60)) {
        run(3, seed, ops)?;
    }

    #[test]
    fn sender_key_messages_decrypt_exactly_once_in_any_order(
        seed in any::<u8>(),
        count in 1usize..16,
        order in proptest::collection::vec(any::<usize>(), 0..48),
    ) {
        let mut rng = rng(seed);
        let mut sender = GroupSender::new([seed; 16], &mut rng);
        let mut record = SenderKeyRecord::new();
        record.process_distribution(&sender.distribution_message());
        let messages: Vec<Vec<u8>> = (0..count).map(|i| sender.encrypt(&i.to_be_bytes()).unwrap()).collect();
        let mut done = vec![false; count];
        for pick in order {
            let i = pick % count;
            let before = record.to_bytes().to_vec();
            let result = record.decrypt(&SenderKeyMessage::decode(&messages[i]).unwrap());
            if done[i] {
                prop_assert!(result.is_err());
                prop_assert_eq!(record.to_bytes().to_vec(), before);
            } else {
                prop_assert_eq!(result.unwrap(), i.to_be_bytes().to_vec());
                done[i] = true;
            }
        }
    }

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2000), kind in 0u8..0x20) {
        let mut framed = bytes.clone();
        if framed.len() >= 2 {
            framed[0] = 1;
            framed[1] = kind;
        }
        for input in [&bytes, &framed] {
            let _ = RatchetMessage::decode(input);
            let _ = PreKeyMessage::decode(input);
            let _ = SenderKeyMessage::decode(input);
            let _ = DistributionMessage::decode(input);
            let _ = PreKeyBundle::decode(input);
            let _ = SessionRecord::from_bytes(input);
        }
    }
}
