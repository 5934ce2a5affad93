//! The log writer's cost per append: group commits of 1:1 messages spread
//! over many chats (the relay's `direct` load), against a real database
//! file, with `synchronous = normal` (the SQL and WAL work alone) and
//! `full` (plus the fsync every acknowledgement waits for).
//!
//! `cargo bench -p tern-relay --bench log_append`

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use tern_protocol::wire::{ChatKind, DeviceCiphertext, SignedDeviceList};
use tern_protocol::{ChatId, ClientMessageId, UserId};
use tern_relay::config::Synchronous;
use tern_relay::store::sqlite::SqliteStore;
use tern_relay::store::{
    DeviceAddr, DeviceListUpdate, LogAppend, MembershipAppend, MessageAppend, NewAccount, Store,
};

/// Accounts (one device each), paired into direct chats.
const ACCOUNTS: u32 = 1_000;
/// Appends per group commit (what the writer saw per commit under load).
const BATCH: u32 = 100;
const PAYLOAD: usize = 100;

fn user(i: u32) -> UserId {
    let mut id = [0u8; 16];
    id[..4].copy_from_slice(&i.to_be_bytes());
    id[4..8].copy_from_slice(&i.wrapping_mul(0x9E37_79B9).to_be_bytes());
    UserId(id)
}

fn chat(pair: u32) -> ChatId {
    let mut id = [0xC0; 16];
    id[..4].copy_from_slice(&pair.wrapping_mul(0x85EB_CA6B).to_be_bytes());
    ChatId(id)
}

fn setup(dir: &tempfile::TempDir, sync: Synchronous) -> SqliteStore {
    let store = SqliteStore::open(&dir.path().join("relay.db"), sync).unwrap();
    for i in 0..ACCOUNTS {
        store
            .create_account(&NewAccount {
                user_name: format!("u{i}"),
                account_key: [1; 32],
                list: DeviceListUpdate {
                    user_id: user(i),
                    signed: SignedDeviceList::default(),
                    version: 1,
                    devices: vec![(1, [2; 32])],
                },
                device_id: 1,
                invite_hash: None,
            })
            .unwrap();
    }
    let creates: Vec<LogAppend> = (0..ACCOUNTS / 2)
        .map(|p| {
            LogAppend::Membership(MembershipAppend {
                chat_id: chat(p),
                actor: DeviceAddr {
                    user: user(2 * p),
                    device: 1,
                },
                create: Some(ChatKind::Direct),
                added: vec![user(2 * p), user(2 * p + 1)],
                removed: Vec::new(),
            })
        })
        .collect();
    for r in store.append_batch(&creates, 1).unwrap() {
        r.unwrap();
    }
    store
}

/// The `n`-th message: a pseudo-random pair, alternating direction, with a
/// unique random-looking client message id (as real clients send).
fn message(n: u64) -> LogAppend {
    let pair = (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as u32 % (ACCOUNTS / 2);
    let (from, to) = if n % 2 == 0 {
        (2 * pair, 2 * pair + 1)
    } else {
        (2 * pair + 1, 2 * pair)
    };
    let mut cmid = [0u8; 16];
    cmid[..8].copy_from_slice(&n.wrapping_mul(0xD6E8_FEB8_6659_FD93).to_le_bytes());
    cmid[8..].copy_from_slice(&n.to_le_bytes());
    LogAppend::Message(MessageAppend {
        chat_id: chat(pair),
        sender: DeviceAddr {
            user: user(from),
            device: 1,
        },
        client_message_id: ClientMessageId(cmid),
        device_ciphertexts: vec![DeviceCiphertext {
            user_id: Bytes::copy_from_slice(&user(to).0),
            device_id: 1,
            ciphertext: Bytes::from(vec![0xAB; PAYLOAD]),
        }],
        common_ciphertext: Bytes::new(),
    })
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("log_append_direct");
    group.throughput(Throughput::Elements(u64::from(BATCH)));
    group.sample_size(30);
    for (name, sync) in [("normal", Synchronous::Normal), ("full", Synchronous::Full)] {
        let dir = tempfile::tempdir().unwrap();
        let store = setup(&dir, sync);
        let mut n = 0u64;
        group.bench_function(format!("batch_{BATCH}_{name}"), |b| {
            b.iter(|| {
                let items: Vec<LogAppend> = (0..u64::from(BATCH)).map(|i| message(n + i)).collect();
                n += u64::from(BATCH);
                let results = store.append_batch(&items, 2).unwrap();
                store.after_batch().unwrap();
                black_box(results)
            });
        });
    }
    group.finish();
}

criterion::criterion_group!(benches, bench);
criterion::criterion_main!(benches);
