//! Presence and typing: QUIC datagrams to online devices, never stored.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use prost::Message;
use tern_protocol::wire::*;

async fn next_ephemeral(c: &Client) -> ephemeral_event::Kind {
    let datagram = guard(c.conn.read_datagram()).await.unwrap();
    tern_protocol::decode_datagram(datagram)
        .unwrap()
        .kind
        .unwrap()
}

fn subscribe(users: &[[u8; 16]]) -> request::Kind {
    request::Kind::SubscribePresence(SubscribePresence {
        user_ids: users.iter().map(|u| u.to_vec().into()).collect(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_see_presence_changes() {
    let relay = TestRelay::start().await;
    let at = (relay.addr, relay.fingerprint.as_str());
    let alice = Account::new("alice", 1);
    let bob = Account::new("bob", 1);
    let a = Client::register(at, &alice).await.unwrap();
    let b = Client::register(at, &bob).await.unwrap();
    a.ok(create_chat(random(), ChatKind::Direct, &[bob.user_id]))
        .await;
    a.ok(subscribe(&[bob.user_id])).await;
    let ephemeral_event::Kind::Presence(p) = next_ephemeral(&a).await else {
        panic!("expected presence")
    };
    assert_eq!((&p.user_id[..], p.online), (&bob.user_id[..], true));
    b.conn.close(0u32.into(), b"bye");
    let ephemeral_event::Kind::Presence(p) = next_ephemeral(&a).await else {
        panic!("expected presence")
    };
    assert_eq!((&p.user_id[..], p.online), (&bob.user_id[..], false));
    assert!(p.last_seen_ms > 0);
    let _b = Client::login(at, &bob, 1).await.unwrap();
    let ephemeral_event::Kind::Presence(p) = next_ephemeral(&a).await else {
        panic!("expected presence")
    };
    assert!(p.online);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_reaches_the_other_members() {
    let relay = TestRelay::start().await;
    let at = (relay.addr, relay.fingerprint.as_str());
    let alice = Account::new("alice", 1);
    let bob = Account::new("bob", 1);
    let a = Client::register(at, &alice).await.unwrap();
    let b = Client::register(at, &bob).await.unwrap();
    let chat: [u8; 16] = random();
    a.ok(create_chat(chat, ChatKind::Direct, &[bob.user_id]))
        .await;
    let typing = EphemeralEvent {
        kind: Some(ephemeral_event::Kind::Typing(Typing {
            chat_id: chat.to_vec().into(),
            active: true,
            user_id: Default::default(),
            device_id: 0,
        })),
    };
    a.conn.send_datagram(typing.encode_to_vec().into()).unwrap();
    let ephemeral_event::Kind::Typing(t) = next_ephemeral(&b).await else {
        panic!("expected typing")
    };
    assert!(t.active);
    assert_eq!(&t.chat_id[..], &chat);
    assert_eq!((&t.user_id[..], t.device_id), (&alice.user_id[..], 1));
    // Never stored: nothing new in the log.
    let page = batch(b.ok(sync_req(&[])).await);
    assert_eq!(page.entries.len(), 1, "only the chat creation");
    relay.stop().await;
}
