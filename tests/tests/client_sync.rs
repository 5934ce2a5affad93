//! Store-and-forward, the outbox and session repair with real clients and a
//! real relay.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use tern_core::ClientEvent;
use tern_core::{DeliveryStatus, UNDECRYPTABLE_TEXT};
use tern_store::{DeviceAddress, Store};
use tern_testkit::{Faults, TestClient, TestRelay, guard, test_key};

/// Alice and Bob with a direct chat in which each has received a message
/// from the other (so both sides have an established session).
async fn chatting_pair(relay: &TestRelay) -> (TestClient, TestClient, [u8; 16]) {
    let mut alice = TestClient::create(relay, "alice").await;
    let mut bob = TestClient::create(relay, "bob").await;
    let bob_id = alice.contact("bob").await;
    let chat = alice.client.direct_chat(bob_id).unwrap();
    alice.client.send_text(chat, "ping".into()).unwrap();
    assert_eq!(bob.next_message().await.text, "ping");
    bob.client.send_text(chat, "pong".into()).unwrap();
    assert_eq!(alice.next_message().await.text, "pong");
    (alice, bob, chat)
}

/// The texts `client` is shown until every one of `wanted` came (markers
/// included).
async fn shown_until(client: &mut TestClient, wanted: &[&str]) -> Vec<String> {
    let mut shown = Vec::new();
    while !wanted.iter().all(|w| shown.iter().any(|s| s == w)) {
        shown.push(client.next_message().await.text);
    }
    shown
}

/// Waits until `client`'s history of `chat` is exactly `expected`: every
/// marker replaced by its resend or removed by an empty answer.
async fn settled_history(client: &TestClient, chat: [u8; 16], expected: &[&str]) {
    let texts = || -> Vec<String> {
        let page = client.client.messages(chat, None, 100).unwrap();
        page.into_iter().map(|m| m.text).collect()
    };
    guard(async {
        while texts() != expected {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

/// Sends `texts` and waits until the relay acknowledged all of them (✓).
async fn send_all_acked(sender: &mut TestClient, chat: [u8; 16], texts: &[String]) {
    for text in texts {
        sender.client.send_text(chat, text.clone()).unwrap();
    }
    for _ in 0..texts.len() {
        sender
            .expect(|e| match e {
                ClientEvent::MessageStatus {
                    status: DeliveryStatus::Sent,
                    ..
                } => Some(()),
                _ => None,
            })
            .await;
    }
}

/// Waits until `peer`'s session reset reached `client`.
async fn wait_for_reset(client: &mut TestClient, peer: &TestClient) {
    let peer_id = peer.client.account().user_id;
    client
        .expect(|e| match e {
            ClientEvent::SessionReset { user_id, .. } if user_id == peer_id => Some(()),
            _ => None,
        })
        .await;
}

#[tokio::test]
async fn sync_now_returns_once_the_backlog_is_stored() {
    let relay = TestRelay::start().await;
    let (mut alice, bob, chat) = chatting_pair(&relay).await;
    let bob_config = bob.config.clone();
    bob.client.shutdown().await;
    let texts: Vec<String> = (0..7).map(|i| format!("backlog {i}")).collect();
    send_all_acked(&mut alice, chat, &texts).await;

    let bob = bob.reopen(bob_config).await;
    let summary = guard(bob.client.sync_now(Duration::from_secs(30)))
        .await
        .unwrap();
    assert!(summary.pages >= 1);
    // Without waiting for any event, the whole backlog is stored.
    let history = bob.client.messages(chat, None, 100).unwrap();
    let stored: Vec<&str> = history.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(
        &stored[2..],
        texts.iter().map(String::as_str).collect::<Vec<_>>()
    );
    // A second call finds nothing new to store.
    let again = guard(bob.client.sync_now(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(
        bob.client.messages(chat, None, 100).unwrap().len(),
        history.len()
    );
    assert_eq!(again.pages, 1);
    relay.stop().await;
}

#[tokio::test]
async fn an_offline_device_gets_everything_in_order_on_reconnect() {
    let relay = TestRelay::start().await;
    let (alice, bob, chat) = chatting_pair(&relay).await;
    let bob_config = bob.config.clone();
    bob.client.shutdown().await;

    let texts: Vec<String> = (0..12)
        .map(|i| format!("while you were away {i}"))
        .collect();
    let mut alice = alice;
    send_all_acked(&mut alice, chat, &texts).await;

    let mut bob = bob.reopen(bob_config).await;
    let mut received = Vec::new();
    while received.len() < texts.len() {
        received.push(bob.next_message().await);
    }
    let got: Vec<&str> = received.iter().map(|m| m.text.as_str()).collect();
    let want: Vec<&str> = texts.iter().map(String::as_str).collect();
    assert_eq!(got, want, "delivered in send order");
    assert!(
        received.windows(2).all(|w| w[0].seq < w[1].seq),
        "seq increases"
    );
    let history = bob.client.messages(chat, None, 100).unwrap();
    assert_eq!(history.len(), 2 + texts.len());
    relay.stop().await;
}

#[tokio::test]
async fn a_crash_between_send_and_ack_sends_exactly_once() {
    let relay = TestRelay::start().await;
    let (alice, mut bob, chat) = chatting_pair(&relay).await;
    // Her receipts leave first: a chat's entries go in order, so one whose
    // ack is lost holds back what follows it.
    guard(alice.client.flush_outbox(Duration::from_secs(10)))
        .await
        .unwrap();

    // Alice restarts with a fault: she transmits but never records the ack,
    // as if she crashed right after the relay stored the message.
    let mut crashing = alice.config.clone();
    crashing.relay_layer = Some(Arc::new(Faults {
        lose_send_acks: true,
        ..Faults::default()
    }));
    let alice = alice.reopen(crashing).await;
    let lost_ack = alice.client.send_text(chat, "exactly once".into()).unwrap();
    assert_eq!(bob.next_message().await.text, "exactly once");
    // Let the faulty client retry a few times (each a duplicate at the relay).
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(alice.client.messages(chat, None, 10).unwrap()[2].seq, None);

    // A normal restart resends from the outbox and finally records the ack.
    let healthy = {
        let mut c = alice.config.clone();
        c.relay_layer = None;
        c
    };
    let mut alice = alice.reopen(healthy).await;
    alice.wait_status(lost_ack.id, DeliveryStatus::Sent).await;
    let after = alice
        .client
        .send_text(chat, "after the crash".into())
        .unwrap();
    assert_eq!(bob.next_message().await.text, "after the crash");
    alice
        .expect(|e| match e {
            ClientEvent::MessageStatus {
                message_id,
                status: DeliveryStatus::Sent,
                ..
            } if message_id == after.id => Some(()),
            _ => None,
        })
        .await;

    let texts = |client: &tern_core::Client| -> Vec<String> {
        client
            .messages(chat, None, 100)
            .unwrap()
            .into_iter()
            .map(|m| m.text)
            .collect()
    };
    let want = ["ping", "pong", "exactly once", "after the crash"];
    assert_eq!(texts(&bob.client), want, "nothing doubled at the recipient");
    assert_eq!(texts(&alice.client), want);
    let acked = alice.client.messages(chat, None, 100).unwrap();
    assert!(acked.iter().all(|m| m.seq.is_some()), "all acknowledged");
    relay.stop().await;
}

#[tokio::test]
async fn an_undecryptable_message_is_reported_sent_again_and_the_session_repaired() {
    let relay = TestRelay::start().await;
    let (mut alice, bob, chat) = chatting_pair(&relay).await;
    let alice_id = alice.client.account().user_id;

    // Bob loses his session with Alice's device (e.g. restored an old backup).
    let bob_config = bob.config.clone();
    bob.client.shutdown().await;
    {
        let store = Store::open(&bob_config.store_path, test_key("passphrase")).unwrap();
        store
            .transaction(|tx| {
                tx.delete_sessions(&DeviceAddress {
                    user_id: alice_id,
                    device_id: 1,
                })
            })
            .unwrap();
    }
    let mut bob = bob.reopen(bob_config).await;

    alice
        .client
        .send_text(chat, "lost in transit".into())
        .unwrap();
    let failed = bob
        .expect(|e| match e {
            ClientEvent::DecryptionFailed { sender, .. } => Some(sender),
            _ => None,
        })
        .await;
    assert_eq!(failed, alice_id);

    // Bob's repair gives Alice a new session; she sends the lost message
    // again on his retry request, and her next message decrypts too. The
    // marker Bob saw first is replaced in his history.
    wait_for_reset(&mut alice, &bob).await;
    alice.client.send_text(chat, "after repair".into()).unwrap();
    let shown = shown_until(&mut bob, &["lost in transit", "after repair"]).await;
    assert!(shown.iter().any(|t| t == UNDECRYPTABLE_TEXT), "{shown:?}");
    settled_history(
        &bob,
        chat,
        &["ping", "pong", "lost in transit", "after repair"],
    )
    .await;
    // And Bob can answer.
    bob.client.send_text(chat, "back".into()).unwrap();
    assert_eq!(alice.next_message().await.text, "back");
    relay.stop().await;
}

#[tokio::test]
async fn a_group_member_that_lost_its_keys_recovers() {
    let relay = TestRelay::start().await;
    let mut alice = TestClient::create(&relay, "alice").await;
    let mut bob = TestClient::create(&relay, "bob").await;
    let bob_id = alice.contact("bob").await;
    let alice_id = alice.client.account().user_id;
    let group = guard(alice.client.create_group("pair".into(), vec![bob_id]))
        .await
        .unwrap();
    alice.client.send_text(group, "one".into()).unwrap();
    assert_eq!(bob.next_message().await.text, "one");
    bob.client.send_text(group, "two".into()).unwrap();
    assert_eq!(alice.next_message().await.text, "two");

    // Bob loses his sessions and sender keys (e.g. restored an old backup).
    let bob_config = bob.config.clone();
    bob.client.shutdown().await;
    {
        let store = Store::open(&bob_config.store_path, test_key("passphrase")).unwrap();
        store
            .transaction(|tx| {
                tx.delete_sessions(&DeviceAddress {
                    user_id: alice_id,
                    device_id: 1,
                })?;
                tx.delete_sender_keys(&group)
            })
            .unwrap();
    }
    let mut bob = bob.reopen(bob_config).await;

    alice.client.send_text(group, "lost".into()).unwrap();
    bob.expect(|e| match e {
        ClientEvent::DecryptionFailed { sender, .. } if sender == alice_id => Some(()),
        _ => None,
    })
    .await;
    // Bob's reset reaches Alice, who redistributes her chain with her next
    // message: the lost one, sent again on Bob's retry request (replacing
    // the marker he saw), and the new one.
    wait_for_reset(&mut alice, &bob).await;
    alice.client.send_text(group, "found".into()).unwrap();
    let shown = shown_until(&mut bob, &["lost", "found"]).await;
    assert!(shown.iter().any(|t| t == UNDECRYPTABLE_TEXT), "{shown:?}");
    settled_history(&bob, group, &["one", "two", "lost", "found"]).await;
    bob.client.send_text(group, "thanks".into()).unwrap();
    assert_eq!(alice.next_message().await.text, "thanks");
    relay.stop().await;
}

#[tokio::test]
async fn clients_reconnect_and_resync_after_a_relay_restart() {
    let mut relay = TestRelay::start().await;
    let (mut alice, mut bob, chat) = chatting_pair(&relay).await;
    relay.restart().await;
    bob.expect(|e| match e {
        ClientEvent::Disconnected { .. } => Some(()),
        _ => None,
    })
    .await;
    alice
        .client
        .send_text(chat, "after the restart".into())
        .unwrap();
    assert_eq!(bob.next_message().await.text, "after the restart");
    bob.client.send_text(chat, "welcome back".into()).unwrap();
    assert_eq!(alice.next_message().await.text, "welcome back");
    relay.stop().await;
}

#[tokio::test]
async fn a_paused_client_stays_offline_and_catches_up_on_resume() {
    let relay = TestRelay::start().await;
    let (alice, mut bob, chat) = chatting_pair(&relay).await;

    bob.client.pause();
    assert!(bob.client.is_paused());
    bob.expect(|e| matches!(e, ClientEvent::Disconnected { .. }).then_some(()))
        .await;
    // Sends while paused wait in the outbox; pausing twice changes nothing.
    bob.client.pause();
    let queued = bob
        .client
        .send_text(chat, "from the background".into())
        .unwrap();
    alice
        .client
        .send_text(chat, "while bob is away".into())
        .unwrap();
    guard(alice.client.flush_outbox(Duration::from_secs(10)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        bob.client.connection_state(),
        tern_core::ConnectionState::Offline,
        "no reconnect while paused"
    );
    assert_eq!(
        bob.client.message_status(queued.id).unwrap()[0].1,
        DeliveryStatus::Pending
    );

    // On resume both happen, in either order: the backlog arrives and the
    // outbox is sent.
    bob.client.resume();
    assert!(!bob.client.is_paused());
    let (mut received, mut sent) = (false, false);
    bob.expect(|event| {
        match event {
            ClientEvent::MessageReceived(m) => received |= m.text == "while bob is away",
            ClientEvent::MessageStatus {
                message_id, status, ..
            } => sent |= message_id == queued.id && status == DeliveryStatus::Sent,
            _ => {}
        }
        (received && sent).then_some(())
    })
    .await;
    relay.stop().await;
}
