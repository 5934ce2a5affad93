//! Presence and typing: QUIC datagrams to online devices, never stored.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tern_protocol::wire::*;
use tern_testkit::raw::*;
use tern_testkit::{Account, RelayAddress, TestRelay, random};
use tokio::net::UdpSocket;

/// The presence target of the relay issue: offline within 5 s.
const PRESENCE_TARGET: Duration = Duration::from_secs(5);

/// Forwards UDP between one client and the relay until cut, after which
/// every packet in both directions is silently dropped: to the relay the
/// client vanished without a CONNECTION_CLOSE, as after a crash.
struct UdpProxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl UdpProxy {
    async fn start(relay: SocketAddr) -> Self {
        let front = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let back = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        back.connect(relay).await.unwrap();
        let addr = front.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let stop = cut.clone();
        let task = tokio::spawn(async move {
            let (mut up, mut down) = (vec![0u8; 65_536], vec![0u8; 65_536]);
            let mut client = None;
            loop {
                tokio::select! {
                    Ok((n, from)) = front.recv_from(&mut up) => {
                        if !stop.load(Ordering::SeqCst) {
                            client = Some(from);
                            let _ = back.send(&up[..n]).await;
                        }
                    }
                    Ok(n) = back.recv(&mut down) => {
                        if let (false, Some(to)) = (stop.load(Ordering::SeqCst), client) {
                            let _ = front.send_to(&down[..n], to).await;
                        }
                    }
                }
            }
        });
        Self { addr, cut, task }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }
}

impl Drop for UdpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn next_presence(c: &RawClient) -> Presence {
    match c.next_ephemeral().await {
        ephemeral_event::Kind::Presence(p) => p,
        other => panic!("expected presence, got {other:?}"),
    }
}

/// Alice, connected to `relay`, watches Bob, connected through `bob_via`;
/// returns once Alice was told Bob is online.
async fn alice_watches_bob(
    relay: &TestRelay,
    bob_via: SocketAddr,
) -> (RawClient, RawClient, Account, Account) {
    let alice = Account::new("alice", 1);
    let bob = Account::new("bob", 1);
    let a = RawClient::register(&relay.address(), &alice).await.unwrap();
    let bob_at = RelayAddress {
        addr: bob_via,
        ..relay.address()
    };
    let b = RawClient::register(&bob_at, &bob).await.unwrap();
    a.ok(create_chat(random(), ChatKind::Direct, &[bob.user_id]))
        .await;
    a.ok(subscribe(&[bob.user_id])).await;
    let p = next_presence(&a).await;
    assert_eq!((&p.user_id[..], p.online), (&bob.user_id[..], true));
    (a, b, alice, bob)
}

fn subscribe(users: &[[u8; 16]]) -> request::Kind {
    request::Kind::SubscribePresence(SubscribePresence {
        user_ids: users.iter().map(|u| u.to_vec().into()).collect(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_see_presence_changes() {
    let relay = TestRelay::start().await;
    let at = &relay.address();
    let (a, b, _, bob) = alice_watches_bob(&relay, relay.addr).await;
    b.conn.close(0u32.into(), b"bye");
    let ephemeral_event::Kind::Presence(p) = a.next_ephemeral().await else {
        panic!("expected presence")
    };
    assert_eq!((&p.user_id[..], p.online), (&bob.user_id[..], false));
    assert!(p.last_seen_ms > 0);
    let _b = RawClient::login(at, &bob, 1).await.unwrap();
    let ephemeral_event::Kind::Presence(p) = a.next_ephemeral().await else {
        panic!("expected presence")
    };
    assert!(p.online);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_reaches_the_other_members() {
    let relay = TestRelay::start().await;
    let (alice, a, bob, b) = pair(&relay).await;
    let chat = direct_chat(&a, &bob).await;
    let typing = EphemeralEvent {
        kind: Some(ephemeral_event::Kind::Typing(Typing {
            chat_id: chat.to_vec().into(),
            active: true,
            user_id: Default::default(),
            device_id: 0,
        })),
    };
    a.send_ephemeral(&typing);
    let ephemeral_event::Kind::Typing(t) = b.next_ephemeral().await else {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_client_is_reported_offline_within_five_seconds() {
    let relay = TestRelay::start().await;
    let proxy = UdpProxy::start(relay.addr).await;
    let (a, b, _, bob) = alice_watches_bob(&relay, proxy.addr).await;

    // Bob's packets stop: no CONNECTION_CLOSE ever reaches the relay.
    proxy.cut();
    let p = tokio::time::timeout(PRESENCE_TARGET, next_presence(&a))
        .await
        .expect("offline not reported within 5 s");
    assert_eq!((&p.user_id[..], p.online), (&bob.user_id[..], false));
    assert!(p.last_seen_ms > 0);
    drop(b);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_idle_client_stays_online_past_the_idle_timeout() {
    let relay = TestRelay::start_with(|c| {
        c.limits.idle_timeout_secs = 1;
        c.limits.keep_alive_interval_ms = 200;
    })
    .await;
    let (a, b, alice, _) = alice_watches_bob(&relay, relay.addr).await;

    // Bob sends nothing for three idle timeouts (his own keep-alive is 10 s):
    // the relay's PINGs, which his QUIC stack acknowledges, keep him online.
    let idle = Duration::from_secs(3);
    if let Ok(p) = tokio::time::timeout(idle, next_presence(&a)).await {
        panic!("idle but healthy bob reported {p:?}");
    }
    assert!(b.conn.close_reason().is_none(), "bob's connection closed");
    b.ok(subscribe(&[alice.user_id])).await;
    relay.stop().await;
}
