//! The receive path: ordering and duplicates, unknown sessions, membership
//! and device-list changes between messages, failed decrypts, acknowledgements.

use bytes::Bytes;
use tern_protocol::wire::Delivery;

use super::super::content::ReceiptKind;
use super::super::group;
use super::super::{MembershipChange, UNDECRYPTABLE_TEXT, apply_membership};
use super::*;

/// The `DecryptionFailed` events among `events`: (chat, sender device, seq).
fn failures(events: &[ClientEvent]) -> Vec<(ChatId, DeviceAddress, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::DecryptionFailed {
                chat_id,
                sender,
                sender_device,
                seq,
                ..
            } => Some((
                *chat_id,
                DeviceAddress {
                    user: *sender,
                    device: *sender_device,
                },
                *seq,
            )),
            _ => None,
        })
        .collect()
}

fn flip_a_byte(bytes: &Bytes) -> Bytes {
    let mut corrupted = bytes.to_vec();
    let middle = corrupted.len() / 2;
    corrupted[middle] ^= 0x55;
    corrupted.into()
}

/// A group of `members` (creator first) on the relay and in every store.
fn group_of(relay: &Arc<FakeRelay>, members: &[&TestDevice]) -> ChatId {
    let chat: ChatId = random_bytes();
    let users: Vec<UserId> = members.iter().map(|m| m.user()).collect();
    relay.create_chat(chat, ChatKind::Group, &users);
    for member in members {
        member.add_chat(chat, ChatKind::Group, &users);
    }
    chat
}

#[tokio::test]
async fn entries_out_of_ratchet_order_decrypt_and_a_duplicate_is_processed_once() {
    let relay = FakeRelay::new();
    let clock = ManualClock::new();
    let (mut alice, bob, chat) = direct_pair(&relay, &clock, "alice", "bob");
    bob.send_text(chat, "first");
    bob.send_text(chat, "second");
    bob.pump().await;
    // The relay stores "second" before "first" (ratchet messages of one
    // session can reach the log in another order, e.g. across chats).
    let mut entries = alice.inbox(chat);
    assert_eq!(entries.len(), 2);
    entries.swap(0, 1);
    entries[0].seq = 1;
    entries[1].seq = 2;

    // A batch with the second entry twice (a live delivery racing a page).
    alice
        .receive(&[entries[0].clone(), entries[1].clone(), entries[1].clone()])
        .await;
    assert_eq!(
        alice.messages(chat),
        [(Some(1), 1, "second".into()), (Some(2), 1, "first".into())]
    );
    assert_eq!(received(&alice.take_events()), ["second", "first"]);
    let receipts = alice.outbox();
    assert_eq!(receipts.len(), 2, "one delivered receipt per message");
    assert!(
        receipts
            .iter()
            .all(|(c, p)| *c == chat && matches!(p, Payload::Receipt(ReceiptKind::Delivered, _)))
    );
    let session = alice.sessions_with(bob.address());
    assert_eq!(session.len(), 1);

    // The entry once more in a later batch: acknowledged again, nothing else.
    alice.receive(&entries[1..]).await;
    assert_eq!(alice.messages(chat).len(), 2);
    assert!(alice.take_events().is_empty());
    assert_eq!(alice.outbox(), receipts);
    assert_eq!(alice.sessions_with(bob.address()), session);
    assert_eq!(alice.delivered(chat), Some(2));
    assert_eq!(acks(&alice), [vec![(chat, 2)], vec![(chat, 2)]]);
}

#[tokio::test]
async fn a_message_for_an_unknown_session_starts_a_new_one_and_is_sent_again() {
    let relay = FakeRelay::new();
    let clock = ManualClock::new();
    let (mut alice, mut bob, chat) = direct_pair(&relay, &clock, "alice", "bob");
    exchange(&bob, &alice, chat, "hello").await;
    alice.pump().await; // the delivered receipt confirms Bob's session
    bob.receive(&bob.inbox(chat)).await;
    assert!(alice.outbox().is_empty());
    bob.take_events();

    // Alice loses the session (a restored backup); Bob's next message is a
    // plain ratchet message she cannot open.
    alice
        .core
        .store
        .transaction(|tx| {
            tx.delete_sessions(&store::DeviceAddress {
                user_id: bob.user(),
                device_id: 1,
            })
        })
        .unwrap();
    alice.take_events();
    bob.send_text(chat, "lost");
    bob.pump().await;
    let entries = alice.inbox(chat);
    let lost = entries.last().unwrap().clone();
    let seq = lost.seq;
    alice.receive(&entries).await;
    let events = alice.take_events();
    assert_eq!(failures(&events), [(chat, bob.address(), seq)]);
    assert_eq!(received(&events), [UNDECRYPTABLE_TEXT]);
    assert_eq!(
        alice.messages(chat),
        [
            (Some(1), 1, "hello".into()),
            (Some(seq), 1, UNDECRYPTABLE_TEXT.into())
        ]
    );
    assert_eq!(
        alice.outbox(),
        [
            (chat, Payload::SessionReset),
            (chat, retry_request(&bob, &lost))
        ]
    );
    assert!(alice.sessions_with(bob.address()).is_empty());
    assert_eq!(alice.delivered(chat), Some(seq));
    assert_eq!(acks(&alice).last().unwrap(), &[(chat, seq)]);

    // The reset goes out on a new session from a fresh bundle, and Bob's
    // messages decrypt again.
    let fetched = fetches(&alice).len();
    alice.pump().await;
    assert!(alice.outbox().is_empty());
    assert_eq!(fetches(&alice).len(), fetched + 1);
    bob.receive(&bob.inbox(chat)).await;
    assert!(bob.take_events().iter().any(|e| matches!(
        e,
        ClientEvent::SessionReset { user_id, device_id: 1, .. } if *user_id == alice.user()
    )));
    // Bob answers the retry request: "lost" replaces the marker in place.
    bob.pump().await;
    alice.receive(&alice.inbox(chat)).await;
    assert_eq!(received(&alice.take_events()), ["lost"]);
    assert_eq!(
        alice.messages(chat),
        [(Some(1), 1, "hello".into()), (Some(seq), 1, "lost".into())]
    );
    exchange(&bob, &alice, chat, "found").await;
    assert_eq!(received(&alice.take_events()), ["found"]);
}

/// The retry request a receiver queues for `entry` from `sender`.
fn retry_request(sender: &TestDevice, entry: &Delivery) -> Payload {
    Payload::RetryRequest {
        user: sender.user(),
        device: 1,
        message_id: entry.client_message_id.as_ref().try_into().unwrap(),
    }
}

#[tokio::test]
async fn a_membership_change_between_two_group_messages_takes_effect_in_order() {
    let relay = FakeRelay::new();
    let clock = ManualClock::new();
    let mut alice = TestDevice::register(&relay, "alice", &clock);
    let bob = TestDevice::register(&relay, "bob", &clock);
    let mut carol = TestDevice::register(&relay, "carol", &clock);
    let chat = group_of(&relay, &[&bob, &alice, &carol]);

    bob.send_text(chat, "before");
    bob.pump().await;
    alice.receive(&alice.inbox(chat)).await;
    alice.send_text(chat, "from alice");
    alice.pump().await;
    carol.receive(&carol.inbox(chat)).await;
    assert_eq!(received(&carol.take_events()), ["before", "from alice"]);

    // Bob removes Carol, then writes again; Alice gets both in one batch.
    relay.change_members(chat, bob.address(), &[], &[carol.user()]);
    let change = MembershipChange {
        removed: vec![carol.user()],
        ..MembershipChange::default()
    };
    apply_membership(&bob.core, &chat, &change).unwrap();
    bob.send_text(chat, "after");
    bob.pump().await;
    alice.take_events();
    alice.receive(&alice.inbox(chat)).await;
    let events = alice.take_events();
    assert!(events.contains(&ClientEvent::MembersChanged {
        chat_id: chat,
        added: Vec::new(),
        removed: vec![carol.user()],
        promoted: Vec::new(),
    }));
    assert_eq!(received(&events), ["after"]);
    let members = alice
        .core
        .store
        .transaction(|tx| tx.chat_members(&chat))
        .unwrap();
    assert_eq!(
        members.iter().collect::<std::collections::HashSet<_>>(),
        [bob.user(), alice.user()].iter().collect()
    );

    // Alice's next messages go to Bob only, with a new sender key that
    // Carol's old one does not open.
    let before = sends(&alice).len();
    alice.send_text(chat, "without carol");
    alice.pump().await;
    let mut addressed = std::collections::BTreeSet::new();
    for send in &sends(&alice)[before..] {
        for c in &send.device_ciphertexts {
            addressed.insert((c.user_id.to_vec(), c.device_id));
        }
    }
    assert_eq!(
        addressed.into_iter().collect::<Vec<_>>(),
        [(bob.user().to_vec(), 1)],
        "the new chain is distributed to Bob alone"
    );
    let last_entry = carol.inbox(chat).pop().unwrap();
    carol.receive(std::slice::from_ref(&last_entry)).await;
    let events = carol.take_events();
    assert_eq!(received(&events), [UNDECRYPTABLE_TEXT], "only a marker");
    assert_eq!(failures(&events), [(chat, alice.address(), last_entry.seq)]);
}

#[tokio::test]
async fn a_device_missing_from_the_cached_list_refreshes_it() {
    let relay = FakeRelay::new();
    let clock = ManualClock::new();
    let (mut alice, bob, chat) = direct_pair(&relay, &clock, "alice", "bob");
    exchange(&bob, &alice, chat, "from the laptop").await;
    assert_eq!(lookups(&alice, &bob.user()), 1);

    let phone = bob.link_device(&relay, 2, 2);
    phone.add_chat(chat, ChatKind::Direct, &[alice.user(), bob.user()]);
    exchange(&phone, &alice, chat, "from the phone").await;
    assert_eq!(
        received(&alice.take_events()),
        ["from the laptop", "from the phone"]
    );
    assert_eq!(
        alice.messages(chat),
        [
            (Some(1), 1, "from the laptop".into()),
            (Some(2), 2, "from the phone".into())
        ]
    );
    assert_eq!(lookups(&alice, &bob.user()), 2, "refreshed once");
    let cached = alice.core.directory.get(&bob.user()).unwrap();
    assert_eq!(cached.version, 2);
}

#[tokio::test]
async fn a_corrupted_pairwise_message_changes_no_session_and_is_sent_again() {
    let relay = FakeRelay::new();
    let clock = ManualClock::new();
    let (mut alice, bob, chat) = direct_pair(&relay, &clock, "alice", "bob");
    let carol = TestDevice::register(&relay, "carol", &clock);
    let carol_chat = direct_chat(&relay, &carol, &alice);
    exchange(&bob, &alice, chat, "one").await;
    exchange(&alice, &bob, chat, "two").await;
    exchange(&carol, &alice, carol_chat, "hey").await;
    alice.pump().await;
    assert!(alice.outbox().is_empty());
    alice.take_events();

    bob.send_text(chat, "three");
    bob.pump().await;
    let mut entries = alice.inbox(chat);
    let mut last = entries.pop().unwrap();
    alice.receive(&entries).await; // Bob's receipt and Alice's own entries
    alice.take_events();
    let seq = last.seq;
    let intact = last.clone();
    last.ciphertext = flip_a_byte(&last.ciphertext);
    let mut messages = alice.messages(chat);
    let carol_session = alice.sessions_with(carol.address());
    let bob_session = alice.sessions_with(bob.address());
    assert_eq!(bob_session.len(), 1);
    assert!(alice.outbox().is_empty());

    alice.receive(&[last]).await;
    // Every session is as it was; a marker stands in for the message, a
    // retry request is queued, the cursor moved on and the host is told.
    assert_eq!(alice.sessions_with(bob.address()), bob_session);
    assert_eq!(alice.sessions_with(carol.address()), carol_session);
    assert_eq!(alice.outbox(), [(chat, retry_request(&bob, &intact))]);
    assert_eq!(alice.delivered(chat), Some(seq));
    let events = alice.take_events();
    assert_eq!(failures(&events), [(chat, bob.address(), seq)]);
    assert_eq!(received(&events), [UNDECRYPTABLE_TEXT]);
    messages.push((Some(seq), 1, UNDECRYPTABLE_TEXT.into()));
    assert_eq!(alice.messages(chat), messages);
    assert_eq!(alice.messages(carol_chat), [(Some(1), 1, "hey".into())]);

    // Bob answers the request, and "three" replaces the marker.
    alice.pump().await;
    bob.receive(&bob.inbox(chat)).await;
    bob.pump().await;
    alice.receive(&alice.inbox(chat)).await;
    assert_eq!(received(&alice.take_events()), ["three"]);
    messages.pop();
    messages.push((Some(seq), 1, "three".into()));
    assert_eq!(alice.messages(chat), messages);
}

#[tokio::test]
async fn a_repeated_ciphertext_is_dropped_without_a_trace() {
    let relay = FakeRelay::new();
    let clock = ManualClock::new();
    let (mut alice, bob, chat) = direct_pair(&relay, &clock, "alice", "bob");
    bob.send_text(chat, "one");
    bob.pump().await;
    let entries = alice.inbox(chat);
    alice.receive(&entries).await;
    alice.take_events();
    let receipt = alice.outbox();
    let session = alice.sessions_with(bob.address());
    let mut again = entries.last().unwrap().clone();
    again.seq += 10;
    again.client_message_id = vec![7; 16].into();
    alice.receive(&[again]).await;
    assert!(alice.take_events().is_empty());
    assert_eq!(
        alice.outbox(),
        receipt,
        "nothing queued but the first receipt"
    );
    assert_eq!(alice.sessions_with(bob.address()), session);
    assert_eq!(alice.messages(chat), [(Some(1), 1, "one".into())]);
}

#[tokio::test]
async fn a_corrupted_group_message_asks_for_a_reset_and_changes_no_session() {
    let relay = FakeRelay::new();
    let clock = ManualClock::new();
    let mut alice = TestDevice::register(&relay, "alice", &clock);
    let bob = TestDevice::register(&relay, "bob", &clock);
    let chat = group_of(&relay, &[&bob, &alice]);
    bob.send_text(chat, "with the key");
    bob.pump().await;
    alice.receive(&alice.inbox(chat)).await;
    alice.take_events();
    let receipts = alice.outbox();
    bob.send_text(chat, "common only");
    bob.pump().await;
    let mut entry = alice.inbox(chat);
    assert_eq!(entry.len(), 1);
    assert!(entry[0].ciphertext.is_empty(), "no distribution needed");
    entry[0].common_ciphertext = flip_a_byte(&entry[0].common_ciphertext);
    let sender_key = |alice: &TestDevice| {
        alice
            .core
            .store
            .transaction(|tx| group::load_record(tx, &chat, &bob.address()))
            .unwrap()
            .to_bytes()
            .to_vec()
    };
    let record = sender_key(&alice);
    let session = alice.sessions_with(bob.address());

    alice.receive(&entry).await;
    let events = alice.take_events();
    assert_eq!(failures(&events), [(chat, bob.address(), entry[0].seq)]);
    assert_eq!(received(&events), [UNDECRYPTABLE_TEXT], "a marker");
    assert_eq!(alice.sessions_with(bob.address()), session, "no repair");
    assert_eq!(sender_key(&alice), record);
    assert_eq!(alice.messages(chat).len(), 2);
    let mut expected = receipts;
    expected.push((chat, Payload::SessionReset));
    expected.push((chat, retry_request(&bob, &entry[0])));
    assert_eq!(alice.outbox(), expected);
    assert_eq!(alice.delivered(chat), Some(entry[0].seq));
}

#[tokio::test]
async fn a_batch_acknowledges_the_highest_seq_of_each_chat_once() {
    let relay = FakeRelay::new();
    let clock = ManualClock::new();
    let (alice, bob, with_bob) = direct_pair(&relay, &clock, "alice", "bob");
    let carol = TestDevice::register(&relay, "carol", &clock);
    let with_carol = direct_chat(&relay, &carol, &alice);
    for text in ["b1", "b2"] {
        bob.send_text(with_bob, text);
    }
    bob.pump().await;
    carol.send_text(with_carol, "c1");
    carol.pump().await;
    let from_bob = alice.inbox(with_bob);
    let from_carol = alice.inbox(with_carol);
    let mut malformed = from_bob[0].clone();
    malformed.chat_id = Bytes::from_static(b"not a chat id");

    alice.receive(&[malformed.clone()]).await;
    assert!(acks(&alice).is_empty(), "nothing to acknowledge");
    alice
        .receive(&[
            from_bob[0].clone(),
            from_carol[0].clone(),
            malformed,
            from_bob[1].clone(),
        ])
        .await;
    assert_eq!(acks(&alice), [vec![(with_bob, 2), (with_carol, 1)]]);
    assert_eq!(alice.delivered(with_bob), Some(2));
    assert_eq!(alice.delivered(with_carol), Some(1));
    assert_eq!(alice.messages(with_bob).len(), 2);
}

#[tokio::test]
async fn a_device_dropped_from_a_members_list_gets_no_later_group_chain() {
    let relay = FakeRelay::new();
    let clock = ManualClock::new();
    let alice = TestDevice::register(&relay, "alice", &clock);
    let bob = TestDevice::register(&relay, "bob", &clock);
    let _phone = bob.link_device(&relay, 2, 2);
    let chat = group_of(&relay, &[&alice, &bob]);
    alice.send_text(chat, "to the laptop and the phone");
    alice.pump().await;
    let distributed_to = |send: &tern_protocol::wire::Send| -> Vec<u32> {
        send.device_ciphertexts
            .iter()
            .filter(|c| !c.ciphertext.is_empty())
            .map(|c| c.device_id)
            .collect()
    };
    assert_eq!(distributed_to(sends(&alice).last().unwrap()), [1, 2]);

    // Without a change, the next message carries no new chain.
    alice.send_text(chat, "common only");
    alice.pump().await;
    assert!(distributed_to(sends(&alice).last().unwrap()).is_empty());

    // Bob removes his phone; Alice learns the new list and replaces her
    // chain, so the next message distributes a new one to the laptop alone.
    bob.drop_device(&relay, 2, 3);
    alice.core.directory.invalidate(&bob.user());
    alice.send_text(chat, "laptop only");
    alice.pump().await;
    let last = sends(&alice).last().unwrap().clone();
    assert_eq!(distributed_to(&last), [1]);
    assert!(last.device_ciphertexts.iter().all(|c| c.device_id != 2));
}
