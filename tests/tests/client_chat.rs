//! The public `Client` against a real relay over QUIC on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tern_core::{Client, ClientEvent};
use tern_core::{ClientError, DeliveryStatus};
use tern_testkit::{TestClient, TestRelay, guard, test_key};

#[tokio::test]
async fn two_users_chat_one_to_one() {
    let relay = TestRelay::start().await;
    let mut alice = TestClient::create(&relay, "alice").await;
    let mut bob = TestClient::create(&relay, "bob").await;

    let bob_contact = guard(alice.client.add_contact("bob".into())).await.unwrap();
    let chat = alice.client.direct_chat(bob_contact.user_id).unwrap();
    let sent = alice.client.send_text(chat, "hello bob".into()).unwrap();

    let received = bob.next_message().await;
    assert_eq!(received.text, "hello bob");
    assert_eq!(received.chat_id, chat);
    assert_eq!(received.sender, alice.client.account().user_id);
    assert!(!received.outgoing);

    // Alice's message reached ✓✓ through Bob's delivered receipt.
    alice
        .expect(|event| match event {
            ClientEvent::MessageStatus {
                message_id,
                status: DeliveryStatus::Delivered,
                ..
            } if message_id == sent.id => Some(()),
            _ => None,
        })
        .await;
    assert_eq!(
        alice.client.message_status(sent.id).unwrap(),
        vec![(bob_contact.user_id, DeliveryStatus::Delivered)]
    );

    // Bob answers in the same (derived) chat.
    let alice_id = alice.client.account().user_id;
    assert_eq!(bob.client.direct_chat(alice_id).unwrap(), chat);
    bob.client.send_text(chat, "hi alice".into()).unwrap();
    let reply = alice.next_message().await;
    assert_eq!(reply.text, "hi alice");
    let hits = alice
        .client
        .search(tern_core::SearchQuery::new("alice"))
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].chat_id, chat);

    // Bob reads the chat: Alice's message reaches "read".
    bob.client.mark_read(chat, received.seq.unwrap()).unwrap();
    alice
        .expect(|event| match event {
            ClientEvent::MessageStatus {
                message_id,
                status: DeliveryStatus::Read,
                ..
            } if message_id == sent.id => Some(()),
            _ => None,
        })
        .await;
    assert_eq!(
        alice.client.message_status(sent.id).unwrap(),
        vec![(bob_contact.user_id, DeliveryStatus::Read)]
    );

    // Both histories hold both messages in relay seq order.
    for client in [&alice.client, &bob.client] {
        let history = client.messages(chat, None, 50).unwrap();
        let texts: Vec<_> = history.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(texts, ["hello bob", "hi alice"]);
        assert!(history[0].seq < history[1].seq);
    }
    relay.stop().await;
}

#[tokio::test]
async fn a_wrong_passphrase_is_refused() {
    let relay = TestRelay::start().await;
    let alice = TestClient::create(&relay, "alice").await;
    alice.client.shutdown().await;
    let err = guard(Client::open(
        alice.config.clone(),
        test_key("not the passphrase"),
    ))
    .await
    .err()
    .expect("a wrong passphrase must not open the store");
    assert!(matches!(err, ClientError::WrongKey), "{err:?}");
    relay.stop().await;
}

#[tokio::test]
async fn the_store_files_hold_no_plaintext() {
    let relay = TestRelay::start().await;
    let (alice, mut bob, chat) = TestClient::direct_pair(&relay, "alice", "bob").await;
    let secret = "zebra-quartz-unmistakable-phrase";
    alice.client.send_text(chat, secret.into()).unwrap();
    assert_eq!(bob.next_message().await.text, secret);
    bob.client.shutdown().await;
    alice.client.shutdown().await;
    for dir in [bob.dir.path(), alice.dir.path()] {
        for entry in std::fs::read_dir(dir).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            for needle in [secret.as_bytes(), b"passphrase"] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "{:?} found in a store file",
                    String::from_utf8_lossy(needle)
                );
            }
        }
    }
    relay.stop().await;
}

#[tokio::test]
async fn a_tampered_store_is_refused() {
    let relay = TestRelay::start().await;
    let alice = TestClient::create(&relay, "alice").await;
    alice.client.shutdown().await;
    let path = alice.config.store_path.clone();
    drop(alice.client);
    let mut bytes = std::fs::read(&path).unwrap();
    for byte in &mut bytes[1000..1032] {
        *byte ^= 0x5a;
    }
    std::fs::write(&path, bytes).unwrap();
    let err = guard(Client::open(alice.config.clone(), test_key("passphrase")))
        .await
        .err()
        .expect("a tampered store must not open");
    assert!(matches!(err, ClientError::StoreCorrupt(_)), "{err:?}");
    relay.stop().await;
}
