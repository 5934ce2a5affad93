//! The send path: bundles, MISMATCHED_DEVICES, acknowledgements, refusals
//! and retries on the injected clock.

use tern_protocol::wire::ErrorCode;

use super::fake_relay::relay_error;
use super::*;
use crate::model::DeliveryStatus;
use crate::net::NetError;

/// The devices a send addresses pairwise: (user, device), sorted.
fn addressed(send: &tern_protocol::wire::Send) -> Vec<(UserId, u32)> {
    let mut devices: Vec<(UserId, u32)> = send
        .device_ciphertexts
        .iter()
        .map(|c| (UserId::try_from(c.user_id.as_ref()).unwrap(), c.device_id))
        .collect();
    devices.sort_unstable();
    devices
}

/// `RATE_LIMITED` with the relay's wait `after`.
fn rate_limited(after: Duration) -> NetError {
    NetError::Relay {
        code: ErrorCode::RateLimited,
        message: "slow down".into(),
        retry_after: Some(after),
        mismatched_devices: None,
    }
}

/// The raw outbox entries of `device`, due or not.
fn outbox_entries(device: &TestDevice) -> Vec<store::OutboxEntry> {
    device
        .core
        .store
        .transaction(|tx| tx.queued_outbox(100))
        .unwrap()
}

#[tokio::test]
async fn bundles_are_fetched_only_for_devices_without_a_session() {
    let relay = FakeRelay::new();
    let clock = ManualClock::new();
    let (mut alice, bob, chat) = direct_pair(&relay, &clock, "alice", "bob");
    let mut phone = bob.link_device(&relay, 2, 2);
    exchange(&bob, &alice, chat, "hi from the laptop").await;
    assert!(fetches(&alice).is_empty(), "Bob started the session");

    alice.send_text(chat, "hi both");
    alice.pump().await; // the delivered receipt, then the text
    assert_eq!(fetches(&alice), [(bob.user(), vec![2])]);
    let sent = sends(&alice);
    assert_eq!(sent.len(), 2);
    for send in &sent {
        assert_eq!(addressed(send), [(bob.user(), 1), (bob.user(), 2)]);
    }
    assert!(alice.outbox().is_empty());
    alice.take_events();
    phone.receive(&phone.inbox(chat)).await;
    assert_eq!(
        received(&phone.take_events()),
        ["hi from the laptop", "hi both"],
        "the own-device copy, then Alice's message"
    );
}

#[tokio::test]
async fn mismatched_devices_refresh_the_list_and_encrypt_again() {
    let relay = FakeRelay::new();
    let clock = ManualClock::new();
    let (mut alice, bob, chat) = direct_pair(&relay, &clock, "alice", "bob");
    exchange(&bob, &alice, chat, "hi").await;
    alice.pump().await;
    // Bob links a phone; Alice's cached list does not know it yet.
    let mut phone = bob.link_device(&relay, 2, 2);
    let looked_up = lookups(&alice, &bob.user());
    let before = sends(&alice).len();
    alice.take_events();

    let id = alice.send_text(chat, "hello both");
    alice.pump().await;
    let sent = &sends(&alice)[before..];
    assert_eq!(sent.len(), 2, "refused once, then accepted");
    assert_eq!(addressed(&sent[0]), [(bob.user(), 1)]);
    assert_eq!(addressed(&sent[1]), [(bob.user(), 1), (bob.user(), 2)]);
    assert_eq!(sent[0].client_message_id, sent[1].client_message_id);
    assert_eq!(lookups(&alice, &bob.user()), looked_up + 1);
    assert_eq!(alice.core.directory.get(&bob.user()).unwrap().version, 2);
    assert_eq!(fetches(&alice).last().unwrap(), &(bob.user(), vec![2]));
    assert!(alice.outbox().is_empty());
    assert!(alice.take_events().contains(&ClientEvent::MessageStatus {
        message_id: id,
        chat_id: chat,
        recipient: None,
        status: DeliveryStatus::Sent,
    }));
    phone.receive(&phone.inbox(chat)).await;
    assert_eq!(received(&phone.take_events()), ["hello both"]);
}

#[tokio::test]
async fn an_ack_removes_the_entry_and_marks_the_message_sent() {
    let relay = FakeRelay::new();
    let clock = ManualClock::new();
    let (mut alice, _bob, chat) = direct_pair(&relay, &clock, "alice", "bob");
    let id = alice.send_text(chat, "hi");
    assert_eq!(alice.outbox(), [(chat, Payload::Text("hi".into()))]);
    assert_eq!(alice.messages(chat), [(None, 1, "hi".into())]);

    alice.pump().await;
    assert!(alice.outbox().is_empty());
    assert_eq!(alice.messages(chat), [(Some(1), 1, "hi".into())]);
    assert_eq!(
        alice.take_events(),
        [ClientEvent::MessageStatus {
            message_id: id,
            chat_id: chat,
            recipient: None,
            status: DeliveryStatus::Sent,
        }]
    );
}

#[tokio::test]
async fn a_refused_send_is_dropped_and_reported() {
    let relay = FakeRelay::new();
    let clock = ManualClock::new();
    let (mut alice, _bob, chat) = direct_pair(&relay, &clock, "alice", "bob");
    relay.fail_next_send(relay_error(ErrorCode::Forbidden));
    let id = alice.send_text(chat, "no");
    alice.pump().await;
    assert!(alice.outbox().is_empty());
    assert_eq!(alice.messages(chat), [(None, 1, "no".into())]);
    assert!(matches!(
        alice.take_events().as_slice(),
        [ClientEvent::SendFailed { message_id: Some(m), chat_id, .. }] if *m == id && *chat_id == chat
    ));
}

#[tokio::test]
async fn retries_are_scheduled_on_the_injected_clock() {
    let relay = FakeRelay::new();
    let clock = ManualClock::new();
    let (alice, _bob, chat) = direct_pair(&relay, &clock, "alice", "bob");
    relay.fail_next_send(rate_limited(Duration::from_secs(5)));
    alice.send_text(chat, "later");
    alice.pump().await;
    let entries = outbox_entries(&alice);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].attempts, 1);
    assert_eq!(
        entries[0].next_attempt_at_ms,
        T0 + 5_000,
        "the relay's wait"
    );
    assert_eq!(sends(&alice).len(), 1);

    clock.advance(Duration::from_millis(4_999));
    alice.pump().await;
    assert_eq!(sends(&alice).len(), 1, "not due yet");
    clock.advance(Duration::from_millis(1));
    alice.pump().await;
    let sent = sends(&alice);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0], sent[1], "the prepared request is resent unchanged");
    assert!(alice.outbox().is_empty());
    assert_eq!(alice.messages(chat), [(Some(1), 1, "later".into())]);

    // Without a wait from the relay, the jittered backoff of a first retry.
    relay.fail_next_send(relay_error(ErrorCode::Unavailable));
    alice.send_text(chat, "jitter");
    alice.pump().await;
    let now = clock.now_ms();
    let due = outbox_entries(&alice)[0].next_attempt_at_ms;
    assert!((now + 100..=now + 500).contains(&due), "{due} vs {now}");
}

#[tokio::test]
async fn a_message_waiting_for_a_retry_holds_back_the_next_of_its_chat() {
    let relay = FakeRelay::new();
    let clock = ManualClock::new();
    let (alice, _bob, chat) = direct_pair(&relay, &clock, "alice", "bob");
    relay.fail_next_send(rate_limited(Duration::from_secs(5)));
    alice.send_text(chat, "first");
    alice.send_text(chat, "second");
    alice.pump().await;
    assert_eq!(sends(&alice).len(), 1, "the second waits behind the first");
    clock.advance(Duration::from_secs(5));
    alice.pump().await;
    assert_eq!(sends(&alice).len(), 3);
    assert!(alice.outbox().is_empty());
    assert_eq!(
        alice.messages(chat),
        [(Some(1), 1, "first".into()), (Some(2), 1, "second".into())]
    );
}
