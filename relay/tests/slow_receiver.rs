//! A device that never reads its delivery stream costs the relay a bounded
//! amount of memory: its queue holds only its own part of each entry, within
//! `delivery_queue_bytes`, never the ciphertexts of other recipients.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use tern_protocol::wire::*;
use tern_testkit::raw::*;
use tern_testkit::{Account, RelayProcess, random};

/// Group messages per phase.
const ENTRIES: usize = 120;
/// Bytes of each entry addressed to the slow device.
const SLOW_PART: usize = 40 * 1024;
/// Other (offline) members, and the bytes of each entry for each of them.
const OTHERS: usize = 10;
const OTHER_PART: usize = 60 * 1024;
/// Allowed RSS growth while the slow device is connected. The entries carry
/// 75 MiB, which the relay used to keep queued for a device that does not
/// read; the device's own part is 4.7 MiB, of which at most
/// `delivery_queue_bytes` (4 MiB) stays queued. The rest of the allowance
/// covers QUIC send buffers and the allocator.
const MAX_GROWTH_KIB: u64 = 24 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_receiver_holds_only_its_own_bytes_within_its_budget() {
    let relay = RelayProcess::start(env!("CARGO_BIN_EXE_tern-relay"));
    let at = &relay.address();
    let (alice, bob) = (Account::new("alice", 1), Account::new("bob", 1));
    let a = RawClient::register(at, &alice).await.unwrap();
    drop(RawClient::register(at, &bob).await.unwrap());
    let mut others = Vec::new();
    for i in 0..OTHERS {
        let other = Account::new(&format!("other{i}"), 1);
        drop(RawClient::register(at, &other).await.unwrap());
        others.push(other.user_id);
    }
    let chat = random();
    let members: Vec<[u8; 16]> = std::iter::once(bob.user_id).chain(others.clone()).collect();
    a.ok(create_chat(chat, ChatKind::Group, &members)).await;
    let (slow_part, other_part) = (vec![1u8; SLOW_PART], vec![2u8; OTHER_PART]);
    let send_all = || async {
        for _ in 0..ENTRIES {
            let to: Vec<(&[u8; 16], u32, &[u8])> =
                std::iter::once((&bob.user_id, 1, &slow_part[..]))
                    .chain(others.iter().map(|o| (o, 1, &other_part[..])))
                    .collect();
            a.ok(send_to(chat, random(), &to, b"")).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    // Everyone offline: this fills the store's page caches (bounded by
    // configuration), so what follows measures the queue alone.
    send_all().await;
    let before = relay.rss_kib().unwrap();
    // Bob connects and never reads his delivery stream.
    let _slow = RawClient::login(at, &bob, 1).await.unwrap();
    send_all().await;
    let growth = relay.rss_kib().unwrap().saturating_sub(before);
    // A device that reads is served as usual while the slow one lags.
    let carol = Account::new("carol", 1);
    let mut c = RawClient::register(at, &carol).await.unwrap();
    let direct = direct_chat(&a, &carol).await;
    for i in 0..20u8 {
        a.ok(send_to(direct, random(), &[(&carol.user_id, 1, &[i])], b""))
            .await;
    }
    let mut got = Vec::new();
    while got.len() < 20 {
        if let event::Kind::Delivery(d) = c.next_event().await
            && d.kind == EntryKind::Message as i32
        {
            got.push(d.ciphertext[0]);
        }
    }
    assert_eq!(got, (0..20).collect::<Vec<u8>>());
    println!(
        "relay RSS {before} KiB, +{growth} KiB after {ENTRIES} entries of {} KiB to a device that does not read ({} KiB of each for it)",
        (SLOW_PART + OTHERS * OTHER_PART) / 1024,
        SLOW_PART / 1024
    );
    assert!(
        growth < MAX_GROWTH_KIB,
        "a slow receiver grew the relay by {growth} KiB"
    );
}
