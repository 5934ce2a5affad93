//! The log writer's cost per append: group commits of 1:1 messages spread
//! over many chats (the relay's `direct` load), against a real database
//! file, with `synchronous = normal` (the SQL and WAL work alone) and
//! `full` (plus the fsync every acknowledgement waits for), with random
//! client message ids and with time-ordered ones (docs/protocol.md).
//!
//! Before timing, it prints the load-independent cost in steady state,
//! read from the WAL file: frames (pages) written per append, and distinct
//! pages a checkpoint copies back per 1,000 appends.
//!
//! `cargo bench -p tern-relay --bench log_append`

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use tern_protocol::wire::{ChatKind, DeviceCiphertext, SignedDeviceList};
use tern_protocol::{ChatId, ClientMessageId, UserId};
use tern_relay::Synchronous;
use tern_relay::store::sqlite::SqliteStore;
use tern_relay::store::{
    AccountStore, DeviceAddr, DeviceListUpdate, LogAppend, LogStore, MembershipAppend,
    MessageAppend, NewAccount,
};

/// Accounts (one device each), paired into direct chats.
const ACCOUNTS: u32 = 1_000;
/// Appends per group commit (what the writer saw per commit under load).
const BATCH: u32 = 150;
/// Appends before the page count starts (the log's B-trees fill up).
const WARM_UP: u64 = 30_000;
/// Appends whose WAL frames are counted.
const COUNTED: u64 = 15_000;
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
                promote: Vec::new(),
            })
        })
        .collect();
    for r in store.append_batch(&creates, 1).unwrap() {
        r.unwrap();
    }
    store
}

/// How clients make their client message ids.
#[derive(Clone, Copy)]
enum Ids {
    /// 16 random bytes.
    Random,
    /// 6 bytes of big-endian Unix milliseconds, then random bytes.
    TimeOrdered,
}

/// The `n`-th client message id: unique, random-looking, optionally
/// prefixed by a clock that advances by 1 ms every 50 messages.
fn client_message_id(n: u64, ids: Ids) -> ClientMessageId {
    let mut cmid = [0u8; 16];
    cmid[..8].copy_from_slice(&n.wrapping_mul(0xD6E8_FEB8_6659_FD93).to_le_bytes());
    cmid[8..].copy_from_slice(&n.to_le_bytes());
    if let Ids::TimeOrdered = ids {
        let ms = 1_790_000_000_000 + n / 50;
        cmid[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    }
    ClientMessageId(cmid)
}

/// The `n`-th message: a pseudo-random pair, alternating direction.
fn message(n: u64, ids: Ids) -> LogAppend {
    let pair = (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as u32 % (ACCOUNTS / 2);
    let (from, to) = if n % 2 == 0 {
        (2 * pair, 2 * pair + 1)
    } else {
        (2 * pair + 1, 2 * pair)
    };
    LogAppend::Message(MessageAppend {
        chat_id: chat(pair),
        sender: DeviceAddr {
            user: user(from),
            device: 1,
        },
        client_message_id: client_message_id(n, ids),
        device_ciphertexts: vec![DeviceCiphertext {
            user_id: Bytes::copy_from_slice(&user(to).0),
            device_id: 1,
            ciphertext: Bytes::from(vec![0xAB; PAYLOAD]),
        }],
        common_ciphertext: Bytes::new(),
    })
}

/// Appends messages `from..to` in batches of `BATCH`, like the writer.
fn append_range(store: &SqliteStore, from: u64, to: u64, ids: Ids) {
    for start in (from..to).step_by(BATCH as usize) {
        let items: Vec<LogAppend> = (start..to.min(start + u64::from(BATCH)))
            .map(|n| message(n, ids))
            .collect();
        for r in store.append_batch(&items, 2).unwrap() {
            r.unwrap();
        }
    }
}

/// The log's page cost in steady state, from the WAL the counted appends
/// wrote (after `WARM_UP` appends the WAL is checkpointed and truncated,
/// then `COUNTED` appends run without a checkpoint).
struct PageCost {
    page_size: u64,
    /// Frames (pages) written per append: what commits write and fsync.
    frames_per_append: f64,
    /// Distinct pages per checkpoint interval (the writer's 1,000 appends,
    /// rounded up to whole commits): what a checkpoint copies back.
    checkpointed: f64,
    /// Appends per checkpoint interval.
    interval: u64,
}

fn page_cost(ids: Ids) -> PageCost {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    let store = setup(&dir, Synchronous::Normal);
    append_range(&store, 0, WARM_UP, ids);
    let probe = rusqlite::Connection::open(&path).unwrap();
    probe
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    append_range(&store, WARM_UP, WARM_UP + COUNTED, ids);
    let wal = std::fs::read(dir.path().join("relay.db-wal")).unwrap();
    let word = |at: usize| u32::from_be_bytes(wal[at..at + 4].try_into().unwrap());
    // WAL format: 32-byte header (page size at 8), then frames of a 24-byte
    // header (page number, then the database size on a commit's last frame)
    // and the page.
    let page_size = word(8) as usize;
    let commits_per_interval = 1_000_u64.div_ceil(u64::from(BATCH)) as usize;
    let mut frames = 0u64;
    let mut intervals = Vec::new();
    let mut pages = std::collections::HashSet::new();
    let mut commits = 0;
    for at in (32..wal.len()).step_by(24 + page_size) {
        frames += 1;
        pages.insert(word(at));
        if word(at + 4) != 0 {
            commits += 1;
            if commits % commits_per_interval == 0 {
                intervals.push(pages.len());
                pages.clear();
            }
        }
    }
    PageCost {
        page_size: page_size as u64,
        frames_per_append: frames as f64 / COUNTED as f64,
        checkpointed: intervals.iter().sum::<usize>() as f64 / intervals.len() as f64,
        interval: commits_per_interval as u64 * u64::from(BATCH),
    }
}

fn print_page_costs() {
    for (name, ids) in [("random", Ids::Random), ("time_ordered", Ids::TimeOrdered)] {
        let cost = page_cost(ids);
        println!(
            "log_append_direct/{name}_ids: {:.3} WAL frames per append ({:.0} bytes), \
             {:.0} pages per checkpoint of {} appends (page size {}; {ACCOUNTS} devices, \
             {} chats, {BATCH} appends per commit)",
            cost.frames_per_append,
            cost.frames_per_append * (cost.page_size + 24) as f64,
            cost.checkpointed,
            cost.interval,
            cost.page_size,
            ACCOUNTS / 2,
        );
    }
}

fn bench(c: &mut Criterion) {
    print_page_costs();
    let mut group = c.benchmark_group("log_append_direct");
    group.throughput(Throughput::Elements(u64::from(BATCH)));
    group.sample_size(30);
    let runs = [
        ("normal_random", Synchronous::Normal, Ids::Random),
        ("full_random", Synchronous::Full, Ids::Random),
        ("full_time_ordered", Synchronous::Full, Ids::TimeOrdered),
    ];
    for (name, sync, ids) in runs {
        let dir = tempfile::tempdir().unwrap();
        let store = setup(&dir, sync);
        let mut n = 0u64;
        group.bench_function(format!("batch_{BATCH}_{name}"), |b| {
            b.iter(|| {
                let items: Vec<LogAppend> =
                    (0..u64::from(BATCH)).map(|i| message(n + i, ids)).collect();
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
