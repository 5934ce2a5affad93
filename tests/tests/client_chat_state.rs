//! Chat state shared end to end: unread counts and read cursors and contact
//! verification (synced to the account's other devices) and group titles
//! (sent to every member).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tern_core::ClientEvent;
use tern_core::{ChatId, UserId, Verification};
use tern_testkit::{TestClient, TestRelay, guard};

const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// Waits until `client`'s title for `chat` is `title` (event-driven).
async fn expect_title(client: &mut TestClient, chat: ChatId, title: &str) {
    if client.find_chat(chat).is_none_or(|c| c.title != title) {
        client
            .expect(|event| match event {
                ClientEvent::ChatTitleChanged {
                    chat_id, title: t, ..
                } if chat_id == chat && t == title => Some(()),
                _ => None,
            })
            .await;
    }
    assert_eq!(client.chat_info(chat).title, title);
}

#[tokio::test]
async fn reading_on_one_device_clears_unread_on_the_other() {
    let relay = TestRelay::start().await;
    let (bob, mut phone, chat) = TestClient::direct_pair(&relay, "bob", "alice").await;
    let mut laptop = phone.link_device(&relay).await;

    for (n, text) in ["one", "two", "three"].into_iter().enumerate() {
        bob.client.send_text(chat, text.into()).unwrap();
        assert_eq!(phone.next_message().await.text, text);
        assert_eq!(phone.chat_info(chat).unread, n as u64 + 1);
    }
    guard(laptop.client.sync_now(SYNC_TIMEOUT)).await.unwrap();
    assert_eq!(laptop.chat_info(chat).unread, 3);
    assert_eq!(bob.chat_info(chat).unread, 0, "own messages are not unread");

    // Reading the first two on the phone leaves one unread on both devices.
    let history = phone.client.messages(chat, None, 10).unwrap();
    let second = history[1].seq.unwrap();
    phone.client.mark_read(chat, second).unwrap();
    assert_eq!(phone.chat_info(chat).unread, 1);
    let read_seq = laptop
        .expect(|event| match event {
            ClientEvent::ChatRead { chat_id, read_seq } if chat_id == chat => Some(read_seq),
            _ => None,
        })
        .await;
    assert_eq!(read_seq, second);
    assert_eq!(laptop.chat_info(chat).unread, 1);

    // The cursor never moves back, and a new message counts again.
    phone.client.mark_read(chat, 1).unwrap();
    assert_eq!(phone.chat_info(chat).unread, 1);
    bob.client.send_text(chat, "four".into()).unwrap();
    assert_eq!(phone.next_message().await.text, "four");
    assert_eq!(phone.chat_info(chat).unread, 2);
    relay.stop().await;
}

#[tokio::test]
async fn group_titles_reach_every_member_and_renames_follow() {
    let relay = TestRelay::start().await;
    let alice = TestClient::create(&relay, "alice").await;
    let mut bob = TestClient::create(&relay, "bob").await;
    let mut carol = TestClient::create(&relay, "carol").await;
    let mut members = Vec::new();
    for name in ["bob", "carol"] {
        let contact = guard(alice.client.add_contact(name.into())).await.unwrap();
        members.push(contact.user_id);
    }
    let group = guard(alice.client.create_group("Climbing".into(), members))
        .await
        .unwrap();
    let mut alice = alice;
    expect_title(&mut bob, group, "Climbing").await;
    expect_title(&mut carol, group, "Climbing").await;

    bob.client.rename_group(group, "Bouldering".into()).unwrap();
    assert_eq!(bob.chat_info(group).title, "Bouldering");
    expect_title(&mut alice, group, "Bouldering").await;
    expect_title(&mut carol, group, "Bouldering").await;
    relay.stop().await;
}

/// Waits until `client` reports `user` verified (or not), then checks the store.
async fn expect_verified(client: &mut TestClient, user: UserId, verified: bool) {
    client
        .expect(|event| match event {
            ClientEvent::VerificationChanged {
                user_id,
                verified: now,
            } if user_id == user && now == verified => Some(()),
            _ => None,
        })
        .await;
    let expected = if verified {
        Verification::Verified
    } else {
        Verification::Default
    };
    assert_eq!(client.client.contact(user).unwrap().verification, expected);
}

#[tokio::test]
async fn verifying_a_contact_on_one_device_reaches_the_other() {
    let relay = TestRelay::start().await;
    let (bob, mut phone, chat) = TestClient::direct_pair(&relay, "bob", "alice").await;
    bob.send_to(&mut phone, chat, "hi alice").await;
    let bob_id = bob.client.account().user_id;
    let mut laptop = phone.link_device(&relay).await;
    assert_eq!(
        laptop.client.contact(bob_id).unwrap().verification,
        Verification::Default
    );

    phone.client.set_verified(bob_id, true).unwrap();
    expect_verified(&mut laptop, bob_id, true).await;
    // And back, from the other device.
    laptop.client.set_verified(bob_id, false).unwrap();
    expect_verified(&mut phone, bob_id, false).await;
    // Messages keep flowing to both devices.
    bob.client.send_text(chat, "still here".into()).unwrap();
    assert_eq!(phone.next_message().await.text, "still here");
    assert_eq!(laptop.next_message().await.text, "still here");
    relay.stop().await;
}
