//! Retention: acknowledged entries are collected, undelivered ones expire;
//! size limits answer with clear errors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tern_protocol::wire::*;
use tern_relay::store::RetentionStore;
use tern_relay::store::sqlite::SqliteStore;
use tern_testkit::raw::*;
use tern_testkit::{TestRelay, random};

fn open_store(relay: &TestRelay) -> SqliteStore {
    SqliteStore::open(
        &relay.dir.path().join("relay.db"),
        tern_relay::Synchronous::Full,
    )
    .unwrap()
}

fn ack_to(chat: [u8; 16], seq: u64) -> request::Kind {
    request::Kind::AckDelivered(AckDelivered {
        cursors: vec![Cursor {
            chat_id: chat.to_vec().into(),
            seq,
        }],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_acknowledged_by_every_device_are_collected() {
    let relay = TestRelay::start().await;
    let (_alice, a, bob, b) = pair(&relay).await;
    let chat = direct_chat(&a, &bob).await;
    for i in 0..4u8 {
        ack(a
            .ok(send_to(chat, random(), &[(&bob.user_id, 1, &[i])], b""))
            .await);
    }
    let store = open_store(&relay);
    b.ok(ack_to(chat, 5)).await;
    assert_eq!(
        store.collect_garbage(0).unwrap(),
        0,
        "alice has not acked yet"
    );
    a.ok(ack_to(chat, 3)).await;
    assert_eq!(store.collect_garbage(0).unwrap(), 3);
    let page = batch(b.ok(sync_req(&[(chat, 0)])).await);
    let seqs: Vec<u64> = page.entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![4, 5]);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undelivered_entries_expire_after_retention() {
    let relay = TestRelay::start().await;
    let (_alice, a, bob, b) = pair(&relay).await;
    let chat = direct_chat(&a, &bob).await;
    ack(a
        .ok(send_to(chat, random(), &[(&bob.user_id, 1, b"old")], b""))
        .await);
    let store = open_store(&relay);
    let now = tern_relay::now_ms();
    assert_eq!(
        store.collect_garbage(now - 60_000).unwrap(),
        0,
        "not expired yet"
    );
    assert_eq!(store.collect_garbage(now + 1).unwrap(), 2);
    assert!(batch(b.ok(sync_req(&[])).await).entries.is_empty());
    // The chat goes on with fresh seqs.
    let next = ack(a
        .ok(send_to(chat, random(), &[(&bob.user_id, 1, b"new")], b""))
        .await);
    assert_eq!(next.seq, 3);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_are_refused_with_too_large() {
    let relay = TestRelay::start_with(|c| c.limits.max_message_bytes = 1000).await;
    let (_alice, a, bob, b) = pair(&relay).await;
    drop(b);
    let chat = direct_chat(&a, &bob).await;
    let err = a
        .request(send_to(
            chat,
            random(),
            &[(&bob.user_id, 1, &[0; 1001])],
            b"",
        ))
        .await
        .unwrap_err();
    assert_eq!(code(&err), ErrorCode::TooLarge);
    ack(a
        .ok(send_to(
            chat,
            random(),
            &[(&bob.user_id, 1, &[0; 1000])],
            b"",
        ))
        .await);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_device_queue_refuses_sends_until_it_acknowledges() {
    let relay = TestRelay::start_with(|c| c.limits.max_queued_bytes_per_device = 1000).await;
    let (_alice, a, bob, b) = pair(&relay).await;
    let chat = direct_chat(&a, &bob).await;
    let first = ack(a
        .ok(send_to(
            chat,
            random(),
            &[(&bob.user_id, 1, &[1; 600])],
            b"",
        ))
        .await);
    let err = a
        .request(send_to(
            chat,
            random(),
            &[(&bob.user_id, 1, &[2; 600])],
            b"",
        ))
        .await
        .unwrap_err();
    assert_eq!(code(&err), ErrorCode::QuotaExceeded);
    b.ok(ack_to(chat, first.seq)).await;
    ack(a
        .ok(send_to(
            chat,
            random(),
            &[(&bob.user_id, 1, &[2; 600])],
            b"",
        ))
        .await);
    relay.stop().await;
}
