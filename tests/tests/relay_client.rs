//! tern-core's relay connection against the real relay over QUIC on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use tern_core::net::{Greeting, NetError};
use tern_protocol::ChatId;
use tern_protocol::wire::{
    AckDelivered, ChatKind, CreateChat, Cursor, DeviceCiphertext, ErrorCode, LookupUser, Send,
    event, request, response,
};
use tern_testkit::{Account, TestKey, TestRelay, guard, random};
use tern_transport::TrustPolicy;

#[tokio::test]
async fn register_send_deliver_and_ack() {
    let relay = TestRelay::start().await;
    let alice = Account::new("alice", 1);
    let bob = Account::new("bob", 1);
    let alice_conn = alice.register(&relay.address()).await;
    let bob_conn = bob.register(&relay.address()).await;
    let mut bob_events = bob_conn.events();

    let found = alice_conn
        .request(request::Kind::LookupUser(LookupUser {
            user_name: "bob".into(),
            user_id: Bytes::new(),
        }))
        .await
        .unwrap();
    let response::Kind::UserInfo(info) = found else {
        panic!("expected UserInfo, got {found:?}");
    };
    assert_eq!(info.user_id, bob.id().to_wire());

    let chat = ChatId(random());
    alice_conn
        .request(request::Kind::CreateChat(CreateChat {
            chat_id: chat.to_wire(),
            kind: ChatKind::Direct as i32,
            members: vec![bob.id().to_wire()],
        }))
        .await
        .unwrap();
    let sent = alice_conn
        .request(request::Kind::Send(Send {
            chat_id: chat.to_wire(),
            client_message_id: Bytes::copy_from_slice(&random::<16>()),
            device_ciphertexts: vec![DeviceCiphertext {
                user_id: bob.id().to_wire(),
                device_id: 1,
                ciphertext: Bytes::from_static(b"opaque ciphertext for bob"),
            }],
            common_ciphertext: Bytes::new(),
        }))
        .await
        .unwrap();
    let response::Kind::SendAck(ack) = sent else {
        panic!("expected SendAck, got {sent:?}");
    };

    let delivery = loop {
        match guard(bob_events.next()).await.unwrap() {
            Some(event::Kind::Delivery(d)) if d.kind == 1 => break d,
            Some(_) => continue,
            None => panic!("delivery stream ended"),
        }
    };
    assert_eq!(delivery.seq, ack.seq);
    assert_eq!(
        delivery.ciphertext,
        Bytes::from_static(b"opaque ciphertext for bob")
    );
    assert_eq!(delivery.sender_user_id, alice.id().to_wire());

    let acked = bob_conn
        .request(request::Kind::AckDelivered(AckDelivered {
            cursors: vec![Cursor {
                chat_id: chat.to_wire(),
                seq: delivery.seq,
            }],
        }))
        .await
        .unwrap();
    assert!(matches!(acked, response::Kind::Ok(_)));
    relay.stop().await;
}

#[tokio::test]
async fn login_with_the_wrong_device_key_is_refused() {
    let relay = TestRelay::start().await;
    let carol = Account::new("carol", 1);
    drop(carol.register(&relay.address()).await);
    // The right key logs in on a fresh connection.
    drop(carol.login(&relay.address(), 1).await);

    let impostor = TestKey(SigningKey::from_bytes(&random()));
    let greeting = guard(Greeting::connect(&relay.address())).await.unwrap();
    let err = guard(greeting.authenticate(carol.id(), 1, &impostor))
        .await
        .err()
        .expect("an impostor must not authenticate");
    assert!(
        matches!(
            err,
            NetError::Relay {
                code: ErrorCode::Unauthenticated,
                ..
            }
        ),
        "{err:?}"
    );
    relay.stop().await;
}

#[tokio::test]
async fn a_relay_with_another_certificate_is_refused() {
    let relay = TestRelay::start().await;
    let mut address = relay.address();
    let TrustPolicy::Pinned(mut pin) = address.trust else {
        unreachable!()
    };
    pin.0[31] ^= 0xff;
    address.trust = TrustPolicy::Pinned(pin);
    let err = guard(Greeting::connect(&address)).await.err().unwrap();
    assert!(matches!(err, NetError::Connect(_)), "{err:?}");
    assert!(err.is_transient(), "connection failures are retried");
    relay.stop().await;
}
