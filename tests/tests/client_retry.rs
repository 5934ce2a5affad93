//! A relay that repeats or damages entries loses no message: a repeated
//! ciphertext is dropped, a damaged one leaves the sessions as they were,
//! shows a marker, and its sender sends it again on the receiver's retry
//! request (the marker is replaced). The faults are injected on the sender's
//! side of the relay, so the relay stores and delivers the bad entries.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tern_core::{ClientEvent, DeliveryStatus, UNDECRYPTABLE_TEXT};
use tern_testkit::faults::Tamper;
use tern_testkit::{Faults, TestClient, TestRelay, guard};

#[tokio::test]
async fn duplicated_and_damaged_entries_lose_no_message() {
    let relay = TestRelay::start().await;
    let tamper = Arc::new(Tamper::default());
    let layer = Faults {
        tamper: Some(tamper.clone()),
        ..Faults::default()
    };
    let mut alice = TestClient::create_configured(&relay, "alice", |config| {
        config.relay_layer = Some(Arc::new(layer));
    })
    .await;
    let mut bob = TestClient::create(&relay, "bob").await;
    let bob_id = alice.contact("bob").await;
    let chat = alice.client.direct_chat(bob_id).unwrap();
    alice.send_to(&mut bob, chat, "ping").await;
    bob.send_to(&mut alice, chat, "pong").await;

    // Queue ten messages while offline, choose the faults, then send them.
    alice.client.pause();
    let texts: Vec<String> = (0..10).map(|i| format!("message {i}")).collect();
    let sent: Vec<_> = texts
        .iter()
        .map(|text| alice.client.send_text(chat, text.clone()).unwrap())
        .collect();
    let damaged = [3, 8];
    for i in damaged {
        tamper.corrupt(sent[i].client_message_id);
    }
    for i in [1, 6] {
        tamper.duplicate(sent[i].client_message_id);
    }
    alice.client.resume();

    // Bob sees every message; the damaged ones first as markers.
    let mut shown: HashMap<String, u32> = HashMap::new();
    let mut markers = 0;
    let wanted = |shown: &HashMap<String, u32>| texts.iter().all(|t| shown.contains_key(t));
    guard(async {
        while !wanted(&shown) {
            if let Some(ClientEvent::MessageReceived(m)) = bob.events.next().await {
                if m.text == UNDECRYPTABLE_TEXT {
                    markers += 1;
                } else {
                    *shown.entry(m.text).or_default() += 1;
                }
            }
        }
    })
    .await;
    // Let any late duplicate arrive before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    while let Some(event) = bob.events.try_next() {
        if let ClientEvent::MessageReceived(m) = event {
            *shown.entry(m.text).or_default() += 1;
        }
    }
    let history: Vec<String> = bob
        .client
        .messages(chat, None, 100)
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    println!(
        "sent {}, shown {}, recovered by retry {}, markers shown {}, markers left {}",
        texts.len(),
        shown.len(),
        damaged.len(),
        markers,
        history.iter().filter(|t| *t == UNDECRYPTABLE_TEXT).count()
    );
    assert_eq!(markers, damaged.len(), "one marker per damaged message");
    for text in &texts {
        assert_eq!(shown.get(text), Some(&1), "{text} shown once");
        assert_eq!(
            history.iter().filter(|t| *t == text).count(),
            1,
            "{text} once in the history"
        );
    }
    assert!(!history.iter().any(|t| t == UNDECRYPTABLE_TEXT));
    // The history keeps the sending order: each resend took its marker's place.
    let positions: Vec<usize> = texts
        .iter()
        .map(|t| history.iter().position(|h| h == t).unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{history:?}");

    // The sessions survived: both directions still work, and the damaged
    // messages reach ✓✓ through the resend.
    for i in damaged {
        alice
            .wait_status(sent[i].id, DeliveryStatus::Delivered)
            .await;
    }
    bob.send_to(&mut alice, chat, "after the faults").await;
    alice.send_to(&mut bob, chat, "still fine").await;
    relay.stop().await;
}
