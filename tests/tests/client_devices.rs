//! One user on two devices: linking from an existing device through the
//! relay's provisioning mailboxes (right, wrong and used codes), fan-out to
//! own devices, listing and removing devices.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tern_core::{Client, ClientError};
use tern_core::{ClientConfig, ClientEvent};
use tern_crypto::link::{LinkCode, LinkInvitation};
use tern_testkit::{TestClient, TestRelay, guard, test_key};

/// How long each side of a link waits for the other.
const LINK_TIMEOUT: Duration = Duration::from_secs(20);

/// Links a new device, whose store lives in `dir`, with `code`.
fn accept(
    relay: &TestRelay,
    dir: &tempfile::TempDir,
    code: String,
    timeout: Duration,
) -> impl Future<Output = Result<Client, ClientError>> + Send + 'static {
    let config = ClientConfig::new(dir.path().join("store.db"), relay.address());
    Client::accept_link(config, test_key("laptop"), code, timeout)
}

#[tokio::test]
async fn a_linked_second_device_sends_and_receives() {
    let relay = TestRelay::start().await;
    let (mut alice, mut bob, chat) = TestClient::direct_pair(&relay, "alice", "bob").await;
    alice.client.send_text(chat, "from phone".into()).unwrap();
    assert_eq!(bob.next_message().await.text, "from phone");

    // The phone shows a link code; the laptop enters it; the phone approves.
    let offer = guard(alice.client.offer_link()).await.unwrap();
    assert_eq!(offer.qr_payload().len(), 69);
    let code = offer.link_code();
    let laptop_dir = tempfile::tempdir().unwrap();
    let accepting = tokio::spawn(accept(&relay, &laptop_dir, code, LINK_TIMEOUT));
    let approval = guard(offer.wait_request(LINK_TIMEOUT)).await.unwrap();
    let device_id = guard(alice.client.approve_link(approval)).await.unwrap();
    assert_eq!(device_id, 2);
    let laptop = guard(accepting).await.unwrap().unwrap();
    assert_eq!(laptop.account().user_id, alice.client.account().user_id);
    assert_eq!(laptop.account().device_id, 2);
    let mut laptop_events = laptop.subscribe();
    guard(laptop.wait_online(Duration::from_secs(20)))
        .await
        .unwrap();

    // The phone's history and contacts came with the link answer.
    let synced = laptop.messages(chat, None, 10).unwrap();
    assert_eq!(
        synced.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
        ["from phone"]
    );
    assert!(synced[0].outgoing);
    let contacts = laptop.contacts().unwrap();
    assert!(contacts.iter().any(|c| c.user_name == "bob"));

    // Bob's next message reaches both of Alice's devices.
    bob.client
        .send_text(chat, "to all of alice".into())
        .unwrap();
    assert_eq!(alice.next_message().await.text, "to all of alice");
    let on_laptop = guard(async {
        loop {
            if let Some(ClientEvent::MessageReceived(m)) = laptop_events.next().await {
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
            if let Some(ClientEvent::MessageReceived(m)) = laptop_events.next().await {
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

#[tokio::test]
async fn wrong_tampered_and_used_link_codes_fail_cleanly() {
    let relay = TestRelay::start().await;
    let alice = TestClient::create(&relay, "alice").await;

    // A mistyped code is refused before anything is sent.
    let offer = guard(alice.client.offer_link()).await.unwrap();
    let code = offer.link_code();
    let mut typo = code.clone().into_bytes();
    let last = typo.len() - 1;
    typo[last] = if typo[last] == b'0' { b'1' } else { b'0' };
    let typo = String::from_utf8(typo).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let refused = accept(&relay, &dir, typo, LINK_TIMEOUT).await;
    assert!(matches!(refused, Err(ClientError::InvalidArgument(_))));

    // A well-formed code with the wrong key and secret reaches the mailbox: the
    // existing device refuses it and the new device learns that at once.
    let forged = forge_secret(&code);
    let dir = tempfile::tempdir().unwrap();
    let accepting = tokio::spawn(accept(&relay, &dir, forged, LINK_TIMEOUT));
    let waited = guard(offer.wait_request(LINK_TIMEOUT)).await;
    assert!(matches!(waited, Err(ClientError::Verification(_))));
    let refused = guard(accepting).await.unwrap();
    let refused = refused.err();
    assert!(
        matches!(refused, Some(ClientError::Refused(_))),
        "{refused:?}"
    );

    // The offer is consumed: its code is refused now (the mailbox is gone,
    // or nobody answers from it any more).
    let dir = tempfile::tempdir().unwrap();
    let used = guard(accept(&relay, &dir, code, Duration::from_secs(2)))
        .await
        .err();
    assert!(matches!(used, Some(ClientError::Refused(_))), "{used:?}");
    // Nothing was added to the account.
    assert_eq!(guard(alice.client.devices()).await.unwrap().len(), 1);
    relay.stop().await;
}

/// A well-formed code for the same mailbox with another key and secret.
fn forge_secret(code: &str) -> String {
    let address = LinkCode::parse(code).unwrap().address;
    LinkInvitation::new(address, &mut rand_core::UnwrapErr(getrandom::SysRng))
        .code()
        .to_text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_device_starts_at_the_link_point_and_resets_nothing() {
    let relay = TestRelay::start().await;
    let mut alice = TestClient::create(&relay, "alice").await;
    let mut bob = TestClient::create(&relay, "bob").await;
    let bob_id = guard(alice.client.add_contact("bob".into()))
        .await
        .unwrap()
        .user_id;
    let group = guard(alice.client.create_group("trip".into(), vec![bob_id]))
        .await
        .unwrap();
    // Bob knows the group once its title reached him.
    bob.expect(|e| match e {
        ClientEvent::ChatTitleChanged { chat_id, .. } if chat_id == group => Some(()),
        _ => None,
    })
    .await;
    for i in 0..5 {
        bob.send_to(&mut alice, group, &format!("before the link {i}"))
            .await;
    }

    let mut laptop = alice.link_device(&relay).await;
    let summary = guard(laptop.client.sync_now(Duration::from_secs(20)))
        .await
        .unwrap();
    assert_eq!(
        summary.entries, 0,
        "no entry from before the link: {summary:?}"
    );
    guard(laptop.client.flush_outbox(Duration::from_secs(20)))
        .await
        .unwrap();

    // After the link, Bob's group messages reach the laptop too.
    bob.client
        .send_text(group, "after the link".into())
        .unwrap();
    assert_eq!(laptop.next_message().await.text, "after the link");
    assert_eq!(alice.next_message().await.text, "after the link");
    // Nothing asked Bob for a session reset.
    guard(bob.client.sync_now(Duration::from_secs(20)))
        .await
        .unwrap();
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(200), bob.events.next()).await
    {
        assert!(
            !matches!(event, ClientEvent::SessionReset { .. }),
            "unexpected {event:?}"
        );
    }
    relay.stop().await;
}
