//! Prekey maintenance over real QUIC: signed and last-resort KEM prekey
//! rotation on a controlled clock (grace period, expiry).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tern_core::DeliveryStatus;
use tern_core::net::RelayConnection;
use tern_protocol::wire::{FetchBundles, PrekeyBundle, request, response};
use tern_store::{PrekeyKind, Store};
use tern_testkit::{Account, ShiftedClock, TestClient, TestRelay, guard, test_key};

const DAY: u64 = 24 * 60 * 60;
const WAIT: Duration = Duration::from_secs(20);

/// Claims the bundle of device 1 of `user_id` on `conn`, as an initiator does.
async fn claim(conn: &RelayConnection, user_id: [u8; 16]) -> PrekeyBundle {
    let answer = guard(conn.request(request::Kind::FetchBundles(FetchBundles {
        user_id: Bytes::copy_from_slice(&user_id),
        device_ids: vec![1],
    })))
    .await
    .unwrap();
    let response::Kind::Bundles(bundles) = answer else {
        panic!("unexpected answer {answer:?}");
    };
    bundles.bundles.into_iter().next().expect("one bundle")
}

/// The bundle the relay hands out for device 1 of `user_id`, fetched by `asker`.
async fn bundle(relay: &TestRelay, asker: &Account, user_id: [u8; 16]) -> PrekeyBundle {
    let conn = asker.login(&relay.address(), 1).await;
    let bundle = claim(&conn, user_id).await;
    conn.close();
    bundle
}

/// Whether the bundle carries one-time prekeys of both kinds (the KEM one is
/// not the last-resort prekey, whose ids start at `0x8000_0000`).
fn has_one_time_prekeys(bundle: &PrekeyBundle) -> bool {
    bundle.one_time_prekey.is_some()
        && bundle
            .kem_prekey
            .as_ref()
            .is_some_and(|k| k.id < 0x8000_0000)
}

fn signed_id(bundle: &PrekeyBundle) -> u32 {
    bundle.signed_prekey.as_ref().expect("signed prekey").id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_prekeys_rotate_keep_a_grace_period_and_expire() {
    let relay = TestRelay::start().await;
    let clock = Arc::new(ShiftedClock::default());
    let hook = clock.clone();
    let alice = TestClient::create_configured(&relay, "alice", |config| {
        config.clock = hook;
    })
    .await;
    let alice_id = alice.client.account().user_id;
    let mut bob = TestClient::create(&relay, "bob").await;
    let observer = Account::new("observer", 1);
    observer.register(&relay.address()).await.close();
    let first = signed_id(&bundle(&relay, &observer, alice_id).await);

    // Not due yet: nothing changes.
    let unchanged = guard(alice.client.maintain_prekeys(WAIT)).await.unwrap();
    assert!(!unchanged.signed.rotated && !unchanged.last_resort_kem.rotated);
    assert_eq!(unchanged.signed.current_id, first);

    // Bob starts a session from the bundle with the first signed prekey while
    // Alice is offline; the relay holds his message.
    let alice_config = alice.config.clone();
    alice.client.shutdown().await;
    guard(bob.client.add_contact("alice".into())).await.unwrap();
    let chat = bob.client.direct_chat(alice_id).unwrap();
    let sent = bob
        .client
        .send_text(chat, "sent to the old bundle".into())
        .unwrap();
    bob.wait_status(sent.id, DeliveryStatus::Sent).await;

    // Two days later Alice comes back: she rotates on connecting, before she
    // processes the backlog, and Bob's message still decrypts (grace period).
    clock.shift_to(2 * DAY);
    let mut alice = alice.reopen_online(alice_config).await;
    let received = alice.next_message().await;
    assert_eq!(received.text, "sent to the old bundle");
    let after = guard(alice.client.maintain_prekeys(WAIT)).await.unwrap();
    assert!(!after.signed.rotated, "rotated once, on connecting");
    assert_ne!(after.signed.current_id, first);
    assert!(after.signed.deleted.is_empty());
    assert_ne!(after.last_resort_kem.current_id, 0x8000_0000);
    let second = after.signed.current_id;

    // A new contact gets the new signed prekey, and its session works.
    assert_eq!(
        signed_id(&bundle(&relay, &observer, alice_id).await),
        second
    );
    let mut carol = TestClient::create(&relay, "carol").await;
    guard(carol.client.add_contact("alice".into()))
        .await
        .unwrap();
    let carol_chat = carol.client.direct_chat(alice_id).unwrap();
    carol
        .send_to(&mut alice, carol_chat, "sent to the new bundle")
        .await;
    alice.send_to(&mut carol, carol_chat, "reply").await;

    // Thirty days after the first rotation the first signed prekey is deleted.
    clock.shift_to(32 * DAY);
    let expired = guard(alice.client.maintain_prekeys(WAIT)).await.unwrap();
    assert!(expired.signed.rotated);
    assert_eq!(expired.signed.deleted, [first]);
    assert_eq!(expired.last_resort_kem.deleted, [0x8000_0000]);
    let third = expired.signed.current_id;
    assert_eq!(signed_id(&bundle(&relay, &observer, alice_id).await), third);

    let config = alice.config.clone();
    alice.client.shutdown().await;
    drop(alice.client);
    let store = Store::open(&config.store_path, test_key("passphrase")).unwrap();
    let held = store
        .transaction(|tx| tx.prekey_ids(PrekeyKind::Signed))
        .unwrap();
    let mut expected = vec![second, third];
    expected.sort_unstable();
    assert_eq!(held, expected);
    bob.client.shutdown().await;
    carol.client.shutdown().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_time_prekeys_are_replenished_when_the_relay_reports_them_low() {
    // The observer drains the stock on purpose: no claim limits here.
    let relay = TestRelay::start_with(|config| {
        config.limits.prekey_claims_per_pair_per_hour = 0;
        config.limits.prekey_claims_per_device_per_hour = 0;
    })
    .await;
    let mut alice = TestClient::create(&relay, "alice").await;
    let alice_id = alice.client.account().user_id;
    let bob = TestClient::create(&relay, "bob").await;
    let observer = Account::new("observer", 1);
    let conn = observer.register(&relay.address()).await;

    // Initiators claim 96 of the 100 one-time prekeys uploaded at creation;
    // every claim below the relay's low-water mark (10) sends a PrekeysLow notice.
    for _ in 0..96 {
        assert!(has_one_time_prekeys(&claim(&conn, alice_id).await));
    }
    // Bob's message reaches Alice on the same ordered stream after the
    // notices, and she handles events one at a time: once it is received,
    // the first notice was answered with an upload.
    guard(bob.client.add_contact("alice".into())).await.unwrap();
    let chat = bob.client.direct_chat(alice_id).unwrap();
    bob.send_to(&mut alice, chat, "after the notices").await;

    // Three were left: without a new batch, the fourth claim would get none.
    for _ in 0..100 {
        assert!(has_one_time_prekeys(&claim(&conn, alice_id).await));
    }
    conn.close();
    relay.stop().await;
}
