//! Chats, sends, delivery and sync over real QUIC.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tern_protocol::wire::*;
use tern_testkit::raw::*;
use tern_testkit::{Account, TestRelay, random};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_is_delivered_to_the_online_recipient() {
    let relay = TestRelay::start().await;
    let (_alice, a, bob, mut b) = pair(&relay).await;
    let chat = direct_chat(&a, &bob).await;
    let membership = b.next_delivery().await;
    assert_eq!(membership.kind, EntryKind::Membership as i32);
    assert_eq!(membership.seq, 1);
    assert_eq!(membership.added.len(), 2);

    let sent = ack(a
        .ok(send_to(
            chat,
            random(),
            &[(&bob.user_id, 1, b"hi bob")],
            b"",
        ))
        .await);
    assert_eq!(sent.seq, 2);
    assert!(!sent.duplicate);
    let got = b.next_delivery().await;
    assert_eq!((got.seq, got.kind), (2, EntryKind::Message as i32));
    assert_eq!(&got.ciphertext[..], b"hi bob");
    assert_eq!(&got.sender_user_id[..], &a.user_id);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_device_gets_its_own_ciphertext_and_the_sender_others_too() {
    let relay = TestRelay::start().await;
    let at = &relay.address();
    let alice = Account::new("alice", 2);
    let bob = Account::new("bob", 1);
    let a1 = RawClient::register(at, &alice).await.unwrap();
    let mut a2 = RawClient::register_device(at, &alice, 2).await.unwrap();
    let mut b = RawClient::register(at, &bob).await.unwrap();
    let chat = direct_chat(&a1, &bob).await;

    let missing = a1
        .request(send_to(chat, random(), &[(&bob.user_id, 1, b"x")], b""))
        .await
        .unwrap_err();
    assert_eq!(code(&missing), ErrorCode::MismatchedDevices);
    let m = missing.mismatched_devices.unwrap();
    assert_eq!(m.missing, vec![alice.address(2)]);
    assert!(m.extra.is_empty());

    let to = [
        (&bob.user_id, 1, &b"for bob"[..]),
        (&alice.user_id, 2, &b"for a2"[..]),
    ];
    ack(a1.ok(send_to(chat, random(), &to, b"")).await);
    let mut got_b = b.next_delivery().await;
    if got_b.kind == EntryKind::Membership as i32 {
        got_b = b.next_delivery().await;
    }
    assert_eq!(&got_b.ciphertext[..], b"for bob");
    let mut got_a2 = a2.next_delivery().await;
    if got_a2.kind == EntryKind::Membership as i32 {
        got_a2 = a2.next_delivery().await;
    }
    assert_eq!(&got_a2.ciphertext[..], b"for a2");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_device_syncs_then_acks() {
    let relay = TestRelay::start().await;
    let at = &relay.address();
    let (_alice, a, bob, b) = pair(&relay).await;
    b.conn.close(0u32.into(), b"bye");
    let chat = direct_chat(&a, &bob).await;
    for i in 0..5u8 {
        ack(a
            .ok(send_to(chat, random(), &[(&bob.user_id, 1, &[i])], b""))
            .await);
    }
    let b = RawClient::login(at, &bob, 1).await.unwrap();
    let page = batch(b.ok(sync_req(&[])).await);
    assert!(!page.more);
    let seqs: Vec<u64> = page.entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(&page.entries[5].ciphertext[..], &[4]);

    b.ok(request::Kind::AckDelivered(AckDelivered {
        cursors: vec![Cursor {
            chat_id: chat.to_vec().into(),
            seq: 4,
        }],
    }))
    .await;
    let rest = batch(b.ok(sync_req(&[])).await);
    let seqs: Vec<u64> = rest.entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![5, 6], "sync continues from the stored cursor");
    let explicit = batch(b.ok(sync_req(&[(chat, 5)])).await);
    assert_eq!(explicit.entries.len(), 1);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resend_with_same_client_id_is_stored_once() {
    let relay = TestRelay::start().await;
    let (_alice, a, bob, b) = pair(&relay).await;
    let chat = direct_chat(&a, &bob).await;
    let cmid = random();
    let first = ack(a
        .ok(send_to(chat, cmid, &[(&bob.user_id, 1, b"once")], b""))
        .await);
    let again = ack(a
        .ok(send_to(chat, cmid, &[(&bob.user_id, 1, b"once")], b""))
        .await);
    assert_eq!(again.seq, first.seq);
    assert!(again.duplicate);
    let page = batch(b.ok(sync_req(&[])).await);
    let messages = page
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::Message as i32)
        .count();
    assert_eq!(messages, 1);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_membership_changes_are_log_entries() {
    let relay = TestRelay::start().await;
    let at = &relay.address();
    let (alice, a, bob, b) = pair(&relay).await;
    let carol = Account::new("carol", 1);
    let c = RawClient::register(at, &carol).await.unwrap();
    let chat = random();
    a.ok(create_chat(chat, ChatKind::Group, &[bob.user_id]))
        .await;
    ack(a
        .ok(send_to(chat, random(), &[], b"sender-key message 1"))
        .await);
    let denied = c
        .request(send_to(chat, random(), &[], b"intruder"))
        .await
        .unwrap_err();
    assert_eq!(code(&denied), ErrorCode::Forbidden);
    let info = a
        .ok(request::Kind::ChangeMembers(ChangeMembers {
            chat_id: chat.to_vec().into(),
            add: vec![carol.user_id.to_vec().into()],
            remove: vec![bob.user_id.to_vec().into()],
            promote: vec![],
        }))
        .await;
    let response::Kind::ChatInfo(info) = info else {
        panic!("expected ChatInfo")
    };
    assert_eq!(info.last_seq, 3);
    assert_eq!(info.members.len(), 2);
    ack(a
        .ok(send_to(chat, random(), &[], b"sender-key message 2"))
        .await);

    let carol_view = batch(c.ok(sync_req(&[])).await);
    let seqs: Vec<u64> = carol_view.entries.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        vec![3, 4],
        "a new member sees the log from its joining entry"
    );
    assert_eq!(carol_view.entries[0].kind, EntryKind::Membership as i32);
    assert_eq!(
        &carol_view.entries[1].common_ciphertext[..],
        b"sender-key message 2"
    );
    let bob_view = batch(b.ok(sync_req(&[])).await);
    assert!(
        bob_view.entries.is_empty(),
        "a removed member no longer syncs the chat"
    );
    let _ = alice;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_told_to_sync_instead_of_buffered() {
    let relay = TestRelay::start_with(|c| c.limits.delivery_queue_len = 4).await;
    let (_alice, a, bob, mut b) = pair(&relay).await;
    let chat = direct_chat(&a, &bob).await;
    // Bob does not read his delivery stream while 200 × 60 KiB are sent:
    // far more than QUIC flow control plus the mailbox can hold.
    let body = vec![7u8; 60 * 1024];
    for _ in 0..200 {
        ack(a
            .ok(send_to(chat, random(), &[(&bob.user_id, 1, &body)], b""))
            .await);
    }
    let mut pushed = 0;
    loop {
        match b.next_event().await {
            event::Kind::Delivery(_) => pushed += 1,
            event::Kind::SyncNeeded(_) => break,
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert!(
        pushed < 200,
        "the relay dropped pushes instead of buffering them"
    );
    let mut after = 0;
    let mut total = 0;
    loop {
        let page = batch(b.ok(sync_req(&[(chat, after)])).await);
        total += page.entries.len();
        after = page.entries.last().map_or(after, |e| e.seq);
        if !page.more {
            break;
        }
    }
    assert_eq!(total, 201, "everything is still in the log");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_device_of_a_member_must_be_addressed_from_then_on() {
    let relay = TestRelay::start().await;
    let at = &relay.address();
    let alice = Account::new("alice", 1);
    let mut bob = Account::new("bob", 2);
    let bob2 = bob.devices.pop().unwrap();
    let a = RawClient::register(at, &alice).await.unwrap();
    let b = RawClient::register(at, &bob).await.unwrap();
    let chat = direct_chat(&a, &bob).await;
    ack(a
        .ok(send_to(chat, random(), &[(&bob.user_id, 1, b"1")], b""))
        .await);

    bob.devices.push(bob2);
    bob.version = 2;
    b.ok(request::Kind::PublishDeviceList(PublishDeviceList {
        device_list: Some(bob.signed_list()),
    }))
    .await;
    let err = a
        .request(send_to(chat, random(), &[(&bob.user_id, 1, b"2")], b""))
        .await
        .unwrap_err();
    assert_eq!(code(&err), ErrorCode::MismatchedDevices);
    assert_eq!(
        err.mismatched_devices.unwrap().missing,
        vec![bob.address(2)]
    );
    let to = [(&bob.user_id, 1, &b"2"[..]), (&bob.user_id, 2, &b"2"[..])];
    ack(a.ok(send_to(chat, random(), &to, b"")).await);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_of_chats_the_account_is_not_in_are_forbidden() {
    let relay = TestRelay::start().await;
    let at = &relay.address();
    let (_alice, a, bob, b) = pair(&relay).await;
    let mallory = RawClient::register(at, &Account::new("mallory", 1))
        .await
        .unwrap();
    let chat = direct_chat(&a, &bob).await;
    ack(a
        .ok(send_to(chat, random(), &[(&bob.user_id, 1, b"hi")], b""))
        .await);
    let ack_req = |chat: [u8; 16], seq: u64| {
        request::Kind::AckDelivered(AckDelivered {
            cursors: vec![Cursor {
                chat_id: chat.to_vec().into(),
                seq,
            }],
        })
    };

    for refused in [
        mallory.request(ack_req(chat, 1)).await.unwrap_err(),
        mallory.request(sync_req(&[(chat, 0)])).await.unwrap_err(),
        b.request(ack_req(random(), 1)).await.unwrap_err(),
    ] {
        assert_eq!(code(&refused), ErrorCode::Forbidden);
    }
    // A refused acknowledgement moves no cursor, not even a valid one in
    // the same request.
    let mixed = request::Kind::AckDelivered(AckDelivered {
        cursors: vec![
            Cursor {
                chat_id: chat.to_vec().into(),
                seq: 2,
            },
            Cursor {
                chat_id: random::<16>().to_vec().into(),
                seq: 1,
            },
        ],
    });
    assert_eq!(
        code(&b.request(mixed).await.unwrap_err()),
        ErrorCode::Forbidden
    );
    assert_eq!(batch(b.ok(sync_req(&[])).await).entries.len(), 2);

    // A member acknowledging far beyond the end is held at the end: the
    // next entry still arrives.
    b.ok(ack_req(chat, u64::MAX)).await;
    assert!(batch(b.ok(sync_req(&[])).await).entries.is_empty());
    ack(a
        .ok(send_to(chat, random(), &[(&bob.user_id, 1, b"again")], b""))
        .await);
    let page = batch(b.ok(sync_req(&[])).await);
    assert_eq!(page.entries.len(), 1);
    assert_eq!(&page.entries[0].ciphertext[..], b"again");
    relay.stop().await;
}
