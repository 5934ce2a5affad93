//! Safety numbers, verification and identity changes; groups, typing and
//! presence — real clients against a real relay.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tern_core::ClientEvent;
use tern_core::{ClientError, Verification};
use tern_store::Store;
use tern_testkit::{TestClient, TestRelay, guard, random, test_key};

/// Alice, Bob and Carol, each a contact of Alice, in a group Alice created
/// and greeted with `hello` (both others received it).
struct Trio {
    alice: TestClient,
    bob: TestClient,
    carol: TestClient,
    bob_id: [u8; 16],
    carol_id: [u8; 16],
    group: [u8; 16],
}

async fn trio(relay: &TestRelay, title: &str, hello: &str) -> Trio {
    let alice = TestClient::create(relay, "alice").await;
    let mut bob = TestClient::create(relay, "bob").await;
    let mut carol = TestClient::create(relay, "carol").await;
    let bob_id = alice.contact("bob").await;
    let carol_id = alice.contact("carol").await;
    let group = guard(
        alice
            .client
            .create_group(title.into(), vec![bob_id, carol_id]),
    )
    .await
    .unwrap();
    alice.client.send_text(group, hello.into()).unwrap();
    assert_eq!(bob.next_message().await.text, hello);
    assert_eq!(carol.next_message().await.text, hello);
    Trio {
        alice,
        bob,
        carol,
        bob_id,
        carol_id,
        group,
    }
}

#[tokio::test]
async fn safety_numbers_match_and_a_changed_verified_identity_blocks_sending() {
    let relay = TestRelay::start().await;
    let alice = TestClient::create(&relay, "alice").await;
    let mut bob = TestClient::create(&relay, "bob").await;
    let bob_id = alice.contact("bob").await;
    let alice_id = bob.contact("alice").await;
    let number = alice.client.safety_number(bob_id).unwrap();
    assert_eq!(number.len(), 60);
    assert_eq!(number, bob.client.safety_number(alice_id).unwrap());
    alice.client.set_verified(bob_id, true).unwrap();
    assert_eq!(
        alice.client.contact(bob_id).unwrap().verification,
        Verification::Verified
    );

    // Alice's pinned key for Bob no longer matches what the relay serves
    // (as after Bob re-created his account keys).
    let config = alice.config.clone();
    alice.client.shutdown().await;
    {
        let store = Store::open(&config.store_path, test_key("passphrase")).unwrap();
        store
            .transaction(|tx| {
                let mut contact = tx.contact(&bob_id)?.unwrap();
                contact.identity_key = Some(random::<32>().to_vec());
                tx.upsert_contact(&contact)
            })
            .unwrap();
    }
    let mut alice = alice.reopen(config).await;
    guard(alice.client.wait_online(std::time::Duration::from_secs(20)))
        .await
        .unwrap();
    guard(alice.client.add_contact("bob".into())).await.unwrap();
    let changed = alice
        .expect(|e| match e {
            ClientEvent::IdentityChanged {
                user_id,
                was_verified,
            } => Some((user_id, was_verified)),
            _ => None,
        })
        .await;
    assert_eq!(changed, (bob_id, true));
    assert_eq!(
        alice.client.contact(bob_id).unwrap().verification,
        Verification::Unverified
    );
    let chat = alice.client.direct_chat(bob_id).unwrap();
    let refused = alice.client.send_text(chat, "are you still you?".into());
    assert!(
        matches!(refused, Err(ClientError::UntrustedIdentity)),
        "{refused:?}"
    );

    alice.client.acknowledge_identity_change(bob_id).unwrap();
    alice.client.send_text(chat, "acknowledged".into()).unwrap();
    assert_eq!(bob.next_message().await.text, "acknowledged");
    relay.stop().await;
}

#[tokio::test]
async fn a_group_of_three_chats_with_typing_and_presence() {
    let relay = TestRelay::start().await;
    let Trio {
        mut alice,
        mut bob,
        carol,
        bob_id,
        carol_id,
        group,
    } = trio(&relay, "trio", "hello group").await;
    let alice_id = alice.client.account().user_id;
    for member in [&bob, &carol] {
        let greeting = member.client.messages(group, None, 10).unwrap();
        let greeting = greeting.last().unwrap();
        assert_eq!(greeting.text, "hello group");
        assert_eq!(greeting.sender, alice_id);
    }
    carol.client.send_text(group, "carol here".into()).unwrap();
    assert_eq!(alice.next_message().await.text, "carol here");
    assert_eq!(bob.next_message().await.text, "carol here");
    let members = bob.chat_info(group).members;
    assert_eq!(members.len(), 3);

    // Typing travels as an ephemeral datagram.
    bob.client.set_typing(group, true).unwrap();
    let typing = alice
        .expect(|e| match e {
            ClientEvent::Typing {
                chat_id,
                user_id,
                active,
            } => Some((chat_id, user_id, active)),
            _ => None,
        })
        .await;
    assert_eq!(typing, (group, bob_id, true));

    // Presence: Alice watches Carol go offline.
    guard(alice.client.subscribe_presence(vec![carol_id]))
        .await
        .unwrap();
    carol.client.shutdown().await;
    let offline = alice
        .expect(|e| match e {
            ClientEvent::Presence {
                user_id,
                online: false,
                ..
            } => Some(user_id),
            _ => None,
        })
        .await;
    assert_eq!(offline, carol_id);
    relay.stop().await;
}

#[tokio::test]
async fn a_group_keeps_working_after_a_member_leaves() {
    let relay = TestRelay::start().await;
    let Trio {
        mut alice,
        mut bob,
        mut carol,
        carol_id,
        group,
        ..
    } = trio(&relay, "trio", "before").await;
    bob.client.send_text(group, "bob before".into()).unwrap();
    assert_eq!(alice.next_message().await.text, "bob before");
    assert_eq!(carol.next_message().await.text, "bob before");

    guard(alice.client.change_members(group, vec![], vec![carol_id]))
        .await
        .unwrap();
    let (_, removed) = bob
        .expect(|e| match e {
            ClientEvent::MembersChanged { added, removed, .. } if !removed.is_empty() => {
                Some((added, removed))
            }
            _ => None,
        })
        .await;
    assert_eq!(removed, vec![carol_id]);

    // Both remaining members send with new sender keys; both decrypt.
    alice.client.send_text(group, "after".into()).unwrap();
    assert_eq!(bob.next_message().await.text, "after");
    bob.client.send_text(group, "bob after".into()).unwrap();
    assert_eq!(alice.next_message().await.text, "bob after");
    let members = alice.chat_info(group).members;
    assert_eq!(members.len(), 2);
    // Carol received nothing after her removal.
    let carol_texts: Vec<String> = carol
        .client
        .messages(group, None, 10)
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(carol_texts, ["before", "bob before"]);
    relay.stop().await;
}

#[tokio::test]
async fn a_member_removed_while_offline_leaves_the_group_on_its_next_sync() {
    let relay = TestRelay::start().await;
    let alice = TestClient::create(&relay, "alice").await;
    let mut carol = TestClient::create(&relay, "carol").await;
    let carol_id = alice.contact("carol").await;
    let group = guard(alice.client.create_group("duo".into(), vec![carol_id]))
        .await
        .unwrap();
    alice.client.send_text(group, "before".into()).unwrap();
    assert_eq!(carol.next_message().await.text, "before");

    carol.client.shutdown().await;
    guard(alice.client.change_members(group, vec![], vec![carol_id]))
        .await
        .unwrap();
    alice.client.send_text(group, "after".into()).unwrap();
    let direct = alice.client.direct_chat(carol_id).unwrap();
    alice
        .client
        .send_text(direct, "still here?".into())
        .unwrap();
    guard(
        alice
            .client
            .flush_outbox(std::time::Duration::from_secs(10)),
    )
    .await
    .unwrap();

    // The relay no longer counts Carol in the group and refuses her cursor
    // for it; her client learns it left and keeps syncing everything else.
    let config = carol.config.clone();
    let mut carol = carol.reopen_online(config).await;
    let removed = carol
        .expect(|e| match e {
            ClientEvent::MembersChanged {
                chat_id, removed, ..
            } if chat_id == group => Some(removed),
            _ => None,
        })
        .await;
    assert_eq!(removed, vec![carol_id]);
    assert_eq!(carol.next_message().await.text, "still here?");
    let members = carol.chat_info(group).members;
    assert!(!members.contains(&carol_id));
    relay.stop().await;
}

#[tokio::test]
async fn only_group_admins_change_members_and_promotions_reach_every_member() {
    let relay = TestRelay::start().await;
    let Trio {
        mut alice,
        mut bob,
        mut carol,
        bob_id,
        carol_id,
        group,
    } = trio(&relay, "team", "hello").await;
    let alice_id = alice.client.account().user_id;
    let admins = |client: &TestClient| client.chat_info(group).admins;
    assert_eq!(admins(&alice), [alice_id]);
    assert_eq!(admins(&bob), [alice_id]);

    bob.contact("carol").await;
    let refused = guard(bob.client.change_members(group, vec![], vec![carol_id]))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, ClientError::Refused(ref m) if m.contains("admins")),
        "{refused}"
    );

    guard(alice.client.promote(group, vec![bob_id]))
        .await
        .unwrap();
    let promoted = carol
        .expect(|e| match e {
            ClientEvent::MembersChanged {
                chat_id, promoted, ..
            } if chat_id == group && !promoted.is_empty() => Some(promoted),
            _ => None,
        })
        .await;
    assert_eq!(promoted, [bob_id]);
    let mut both = vec![alice_id, bob_id];
    both.sort_unstable();
    assert_eq!(admins(&carol), both);
    bob.expect(|e| match e {
        ClientEvent::MembersChanged { promoted, .. } if !promoted.is_empty() => Some(()),
        _ => None,
    })
    .await;
    guard(bob.client.change_members(group, vec![], vec![carol_id]))
        .await
        .unwrap();
    let removed = alice
        .expect(|e| match e {
            ClientEvent::MembersChanged { removed, .. } if !removed.is_empty() => Some(removed),
            _ => None,
        })
        .await;
    assert_eq!(removed, [carol_id]);
    relay.stop().await;
}
