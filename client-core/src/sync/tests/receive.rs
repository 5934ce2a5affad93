//! The receive path: ordering and duplicates, unknown sessions, membership
//! and device-list changes between messages, failed decrypts, acknowledgements.

use bytes::Bytes;
use tern_protocol::wire::ErrorCode;

use super::super::apply_membership;
use super::super::content::ReceiptKind;
use super::super::group;
use super::fake_relay::relay_error;
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
    // "first" is encrypted first but its send fails once, so the relay
    // stores "second" before it.
    relay.fail_next_send(relay_error(ErrorCode::Unavailable));
    bob.send_text(chat, "first");
    bob.send_text(chat, "second");
    bob.pump().await;
    clock.advance(Duration::from_secs(1));
    bob.pump().await;
    let entries = alice.inbox(chat);
    assert_eq!(entries.len(), 2);

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
async fn a_message_for_an_unknown_session_repairs_it() {
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
    let seq = entries.last().unwrap().seq;
    alice.receive(&entries).await;
    let events = alice.take_events();
    assert_eq!(failures(&events), [(chat, bob.address(), seq)]);
    assert!(received(&events).is_empty());
    assert_eq!(alice.messages(chat), [(Some(1), 1, "hello".into())]);
    assert_eq!(alice.outbox(), [(chat, Payload::SessionReset)]);
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
    exchange(&bob, &alice, chat, "found").await;
    assert_eq!(received(&alice.take_events()), ["found"]);
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
    apply_membership(&bob.core, &chat, &[], &[carol.user()]).unwrap();
    bob.send_text(chat, "after");
    bob.pump().await;
    alice.take_events();
    alice.receive(&alice.inbox(chat)).await;
    let events = alice.take_events();
    assert!(events.contains(&ClientEvent::MembersChanged {
        chat_id: chat,
        added: Vec::new(),
        removed: vec![carol.user()],
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
    assert!(received(&events).is_empty());
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
async fn a_corrupted_pairwise_message_repairs_that_session_only() {
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
    last.ciphertext = flip_a_byte(&last.ciphertext);
    let messages = alice.messages(chat);
    let carol_session = alice.sessions_with(carol.address());
    assert_eq!(alice.sessions_with(bob.address()).len(), 1);
    assert!(alice.outbox().is_empty());

    alice.receive(&[last]).await;
    // Deliberate: the session with Bob's device is gone, a reset is queued,
    // the cursor moved on and the host is told.
    assert!(alice.sessions_with(bob.address()).is_empty());
    assert_eq!(alice.outbox(), [(chat, Payload::SessionReset)]);
    assert_eq!(alice.delivered(chat), Some(seq));
    let events = alice.take_events();
    assert_eq!(failures(&events), [(chat, bob.address(), seq)]);
    // Unchanged: the history, and every other session.
    assert!(received(&events).is_empty());
    assert_eq!(alice.messages(chat), messages);
    assert_eq!(alice.sessions_with(carol.address()), carol_session);
    assert_eq!(alice.messages(carol_chat), [(Some(1), 1, "hey".into())]);
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
    assert!(received(&events).is_empty());
    assert_eq!(alice.sessions_with(bob.address()), session, "no repair");
    assert_eq!(sender_key(&alice), record);
    assert_eq!(alice.messages(chat).len(), 1);
    let mut expected = receipts;
    expected.push((chat, Payload::SessionReset));
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
