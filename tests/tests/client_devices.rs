//! One user on two devices: linking through the relay's provisioning
//! mailbox, fan-out to own devices, listing and removing devices.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tern_core::ClientConfig;
use tern_core::client::PendingLink;
use tern_tests::{TestClient, TestRelay, guard, test_key};

#[tokio::test]
async fn a_linked_second_device_sends_and_receives() {
    let relay = TestRelay::start().await;
    let mut alice = TestClient::create(&relay, "alice").await;
    let mut bob = TestClient::create(&relay, "bob").await;
    let bob_id = guard(alice.client.add_contact("bob".into()))
        .await
        .unwrap()
        .user_id;
    let chat = alice.client.direct_chat(bob_id).unwrap();
    alice.client.send_text(chat, "from phone".into()).unwrap();
    assert_eq!(bob.next_message().await.text, "from phone");

    // The laptop shows a link code; the phone approves it.
    let laptop_dir = tempfile::tempdir().unwrap();
    let laptop_config =
        ClientConfig::new(laptop_dir.path().join("store.db"), relay.address.clone());
    let pending = guard(PendingLink::start(laptop_config, test_key("laptop")))
        .await
        .unwrap();
    assert_eq!(pending.qr_payload().len(), 81);
    let code = pending.link_code();
    let finishing = tokio::spawn(pending.finish(Duration::from_secs(20)));
    let device_id = guard(alice.client.link_device(code)).await.unwrap();
    assert_eq!(device_id, 2);
    let laptop = guard(finishing).await.unwrap().unwrap();
    assert_eq!(laptop.account().user_id, alice.client.account().user_id);
    assert_eq!(laptop.account().device_id, 2);
    let mut laptop_events = laptop.subscribe();
    guard(laptop.wait_online(Duration::from_secs(20)))
        .await
        .unwrap();

    // The phone's history and contacts reach the laptop (own-device sync).
    guard(async {
        loop {
            let synced = laptop.messages(chat, None, 10).unwrap_or_default();
            if synced.iter().any(|m| m.text == "from phone") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let contacts = laptop.contacts().unwrap();
    assert!(contacts.iter().any(|c| c.user_name == "bob"));

    // Bob's next message reaches both of Alice's devices.
    bob.client
        .send_text(chat, "to all of alice".into())
        .unwrap();
    assert_eq!(alice.next_message().await.text, "to all of alice");
    let on_laptop = guard(async {
        loop {
            if let Some(tern_core::ClientEvent::MessageReceived(m)) = laptop_events.next().await {
                return m;
            }
        }
    })
    .await;
    assert_eq!(on_laptop.text, "to all of alice");
    assert_eq!(on_laptop.chat_id, chat);

    // What the phone sends shows up on the laptop as outgoing.
    alice.client.send_text(chat, "phone again".into()).unwrap();
    assert_eq!(bob.next_message().await.text, "phone again");
    let mirrored = guard(async {
        loop {
            if let Some(tern_core::ClientEvent::MessageReceived(m)) = laptop_events.next().await {
                return m;
            }
        }
    })
    .await;
    assert_eq!(mirrored.text, "phone again");
    assert!(mirrored.outgoing);

    // And the laptop can send too.
    laptop.send_text(chat, "from laptop".into()).unwrap();
    assert_eq!(bob.next_message().await.text, "from laptop");

    let devices = guard(alice.client.devices()).await.unwrap();
    assert_eq!(devices.len(), 2);
    guard(alice.client.remove_device(2)).await.unwrap();
    assert_eq!(guard(alice.client.devices()).await.unwrap().len(), 1);
    relay.stop().await;
}
