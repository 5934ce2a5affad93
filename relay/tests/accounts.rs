//! Registration, authentication and the user directory over real QUIC.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tern_protocol::wire::*;
use tern_testkit::raw::*;
use tern_testkit::{Account, TestRelay, guard, random};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_lookup_and_login() {
    let relay = TestRelay::start().await;
    let at = &relay.address();
    let alice = Account::new("alice", 1);
    let client = RawClient::register(at, &alice).await.unwrap();
    let info = client
        .ok(request::Kind::LookupUser(LookupUser {
            user_name: "alice".into(),
            user_id: Default::default(),
        }))
        .await;
    let response::Kind::UserInfo(info) = info else {
        panic!("expected UserInfo")
    };
    assert_eq!(&info.user_id[..], &alice.user_id);
    assert_eq!(info.device_list.unwrap(), alice.signed_list());
    RawClient::login(at, &alice, 1).await.unwrap();

    let taken = RawClient::register(at, &Account::new("alice", 1))
        .await
        .unwrap_err();
    assert_eq!(code(&taken), ErrorCode::Conflict);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_or_unknown_device_is_refused_and_closed() {
    let relay = TestRelay::start().await;
    let at = &relay.address();
    let alice = Account::new("alice", 1);
    RawClient::register(at, &alice).await.unwrap();
    let stranger = ed25519_dalek::SigningKey::from_bytes(&random());
    let err = RawClient::login_with_key(at, alice.user_id, 1, &stranger)
        .await
        .unwrap_err();
    assert_eq!(code(&err), ErrorCode::Unauthenticated);
    let err = RawClient::login(at, &alice, 1).await;
    assert!(err.is_ok(), "the right key still works");
    let err = RawClient::login_with_key(at, alice.user_id, 7, alice.device_key(1))
        .await
        .unwrap_err();
    assert_eq!(code(&err), ErrorCode::Unauthenticated);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_list_signed_by_another_key_is_refused() {
    let relay = TestRelay::start().await;
    let at = &relay.address();
    let mallory = Account::new("mallory", 1);
    let announced = ed25519_dalek::SigningKey::from_bytes(&random()).verifying_key();
    let err = RawClient::register_announcing(at, &mallory, announced.to_bytes(), "")
        .await
        .unwrap_err();
    assert_eq!(code(&err), ErrorCode::Unauthenticated);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_only_registration() {
    let relay = TestRelay::start_with(|c| c.registration = tern_relay::Registration::Invite).await;
    let at = &relay.address();
    let err = RawClient::register(at, &Account::new("bob", 1))
        .await
        .unwrap_err();
    assert_eq!(code(&err), ErrorCode::InviteRequired);
    let err = RawClient::register_with_invite(at, &Account::new("bob", 1), "nope")
        .await
        .unwrap_err();
    assert_eq!(code(&err), ErrorCode::InviteRequired);

    let store = tern_relay::store::sqlite::SqliteStore::open(
        &relay.dir.path().join("relay.db"),
        tern_relay::Synchronous::Full,
    )
    .unwrap();
    let token = tern_relay::new_invite_token().unwrap();
    tern_relay::store::AccountStore::create_invite(&store, &tern_relay::invite_hash(&token), 0)
        .unwrap();
    RawClient::register_with_invite(at, &Account::new("bob", 1), &token)
        .await
        .unwrap();
    let reused = RawClient::register_with_invite(at, &Account::new("carol", 1), &token)
        .await
        .unwrap_err();
    assert_eq!(
        code(&reused),
        ErrorCode::InviteRequired,
        "tokens are single-use"
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_device_registers_after_list_publish() {
    let relay = TestRelay::start().await;
    let at = &relay.address();
    let mut alice = Account::new("alice", 2);
    // The initial list names device 1 only.
    let second = alice.devices.pop().unwrap();
    let first = RawClient::register(at, &alice).await.unwrap();
    alice.devices.push(second);
    alice.version = 2;
    let err = RawClient::register_device(at, &alice, 2).await.unwrap_err();
    assert_eq!(
        code(&err),
        ErrorCode::NotFound,
        "not in the published list yet"
    );
    first
        .ok(request::Kind::PublishDeviceList(PublishDeviceList {
            device_list: Some(alice.signed_list()),
        }))
        .await;
    let stale = first
        .request(request::Kind::PublishDeviceList(PublishDeviceList {
            device_list: Some(alice.signed_list()),
        }))
        .await
        .unwrap_err();
    assert_eq!(code(&stale), ErrorCode::Conflict, "versions must increase");
    RawClient::register_device(at, &alice, 2).await.unwrap();
    RawClient::login(at, &alice, 2).await.unwrap();
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_device_is_disconnected_and_locked_out() {
    let relay = TestRelay::start().await;
    let at = &relay.address();
    let mut alice = Account::new("alice", 2);
    let a1 = RawClient::register(at, &alice).await.unwrap();
    let a2 = RawClient::register_device(at, &alice, 2).await.unwrap();
    let removed = alice.devices.pop().unwrap();
    alice.version = 2;
    a1.ok(request::Kind::RemoveDevice(RemoveDevice {
        device_id: 2,
        device_list: Some(alice.signed_list()),
    }))
    .await;
    match guard(a2.conn.closed()).await {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, quinn::VarInt::from_u32(4));
        }
        other => panic!("expected an application close, got {other:?}"),
    }
    let err = RawClient::login_with_key(at, alice.user_id, 2, &removed.1)
        .await
        .unwrap_err();
    assert_eq!(code(&err), ErrorCode::Unauthenticated);
    a1.ok(request::Kind::ListChats(ListChats {})).await;
    relay.stop().await;
}
