//! Cluster mode: relay nodes on one PostgreSQL database and one NATS bus
//! (each test starts its own throw-away servers), with real clients over
//! QUIC on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tern_core::ClientEvent;
use tern_relay::TlsConfig;
use tern_testkit::services::{NatsServer, PostgresServer};
use tern_testkit::{
    RelayAddress, RelayProcess, TestCa, TestClient, TestRelay, guard, relay_binary,
};

/// A PostgreSQL server with database `relay`, and a NATS server.
fn services() -> (PostgresServer, NatsServer) {
    let pg = PostgresServer::start_with(&[("fsync", "off")]).unwrap();
    pg.create_database("relay").unwrap();
    (pg, NatsServer::start().unwrap())
}

/// A node on database `relay` of `pg`, on the bus of `nats` when given.
async fn node(pg: &PostgresServer, nats: Option<&NatsServer>, name: &str) -> TestRelay {
    node_with(pg, nats, name, None).await
}

/// [`node`] presenting the certificate `tls` when given.
async fn node_with(
    pg: &PostgresServer,
    nats: Option<&NatsServer>,
    name: &str,
    tls: Option<TlsConfig>,
) -> TestRelay {
    let url = pg.url("relay");
    let nats_url = nats.map(NatsServer::url);
    let name = name.to_owned();
    TestRelay::start_with(move |config| {
        config.store.backend = tern_relay::Backend::Postgres;
        config.store.url = Some(url);
        config.store.pool_size = 4;
        config.cluster.nats_url = nats_url;
        config.cluster.node_id = Some(name);
        config.tls = tls;
        // Push endpoints of the tests are plain http on 127.0.0.1.
        config.push.allow_http = true;
    })
    .await
}

/// One certificate for every node of a cluster, written to `dir`.
fn cluster_certificate(dir: &std::path::Path) -> TlsConfig {
    let (cert, key) = TestCa::new().server_cert(&["localhost"]);
    let tls = TlsConfig {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    std::fs::write(&tls.cert, cert).unwrap();
    std::fs::write(&tls.key, key).unwrap();
    tls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_chat_through_a_relay_on_postgres_and_keep_history_across_restarts() {
    let (pg, _) = services();
    let mut relay = node(&pg, None, "single").await;
    let (alice, mut bob, chat) = TestClient::direct_pair(&relay, "alice", "bob").await;
    alice.client.send_text(chat, "on postgres".into()).unwrap();
    assert_eq!(bob.next_message().await.text, "on postgres");

    relay.restart().await;
    bob.client
        .send_text(chat, "after the restart".into())
        .unwrap();
    let mut alice = alice;
    assert_eq!(alice.next_message().await.text, "after the restart");
    let stale = pg
        .psql(
            "relay",
            "SELECT count(*) FROM chats c
             WHERE c.last_seq <> (SELECT max(seq) FROM log l WHERE l.chat_id = c.chat_id)",
        )
        .unwrap();
    assert_eq!(stale.trim(), "0", "every chat's last_seq is its last entry");
    relay.stop().await;
}

/// Alice on `at_alice` and Bob on `at_bob`, Bob in Alice's contacts, and
/// their direct chat, with one message from Alice delivered (so the chat
/// exists for both).
async fn pair(
    at_alice: &TestRelay,
    at_bob: &TestRelay,
) -> (TestClient, TestClient, [u8; 16], [u8; 16]) {
    let alice = TestClient::create(at_alice, "alice").await;
    let mut bob = TestClient::create(at_bob, "bob").await;
    let bob_id = alice.contact("bob").await;
    let chat = alice.client.direct_chat(bob_id).unwrap();
    alice.client.send_text(chat, "hi".into()).unwrap();
    assert_eq!(bob.next_message().await.text, "hi");
    (alice, bob, chat, bob_id)
}

/// The texts of `chat` in `client`'s history, in seq order.
fn history(client: &TestClient, chat: [u8; 16]) -> Vec<(u64, String)> {
    client
        .client
        .messages(chat, None, 500)
        .unwrap()
        .into_iter()
        .map(|m| (m.seq.unwrap(), m.text))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_on_three_nodes_see_every_group_message_in_one_order() {
    let (pg, nats) = services();
    let nodes = [
        node(&pg, Some(&nats), "n1").await,
        node(&pg, Some(&nats), "n2").await,
        node(&pg, Some(&nats), "n3").await,
    ];
    let mut alice = TestClient::create(&nodes[0], "alice").await;
    let mut bob = TestClient::create(&nodes[1], "bob").await;
    let mut carol = TestClient::create(&nodes[2], "carol").await;
    let bob_id = alice.contact("bob").await;
    let carol_id = alice.contact("carol").await;
    let group = guard(
        alice
            .client
            .create_group("spread".into(), vec![bob_id, carol_id]),
    )
    .await
    .unwrap();
    alice.client.send_text(group, "hello".into()).unwrap();
    assert_eq!(bob.next_message().await.text, "hello");
    assert_eq!(carol.next_message().await.text, "hello");
    let rounds = 5;
    for round in 0..rounds {
        for (i, sender) in [&alice, &bob, &carol].into_iter().enumerate() {
            sender
                .client
                .send_text(group, format!("{i}:{round}"))
                .unwrap();
        }
    }
    // Every member receives the other two members' messages.
    for member in [&mut alice, &mut bob, &mut carol] {
        for _ in 0..2 * rounds {
            member.next_message().await;
        }
    }
    let order = history(&alice, group);
    assert_eq!(order.len(), 3 * rounds + 1);
    assert_eq!(history(&bob, group), order);
    assert_eq!(history(&carol, group), order);
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_and_typing_cross_nodes_and_a_node_leaving_takes_its_devices_offline() {
    let (pg, nats) = services();
    let n1 = node(&pg, Some(&nats), "n1").await;
    let n2 = node(&pg, Some(&nats), "n2").await;
    let (mut alice, bob, chat, bob_id) = pair(&n1, &n2).await;
    guard(alice.client.subscribe_presence(vec![bob_id]))
        .await
        .unwrap();
    presence_of(&mut alice, bob_id, true).await;
    bob.client.set_typing(chat, true).unwrap();
    alice
        .expect(|event| match event {
            ClientEvent::Typing {
                user_id, active, ..
            } if user_id == bob_id && active => Some(()),
            _ => None,
        })
        .await;
    let left = std::time::Instant::now();
    n2.stop().await;
    presence_of(&mut alice, bob_id, false).await;
    assert!(left.elapsed() < Duration::from_secs(5));
    n1.stop().await;
}

/// Waits for `user`'s presence to be reported as `online`.
async fn presence_of(client: &mut TestClient, user: [u8; 16], online: bool) {
    client
        .expect(|event| match event {
            ClientEvent::Presence {
                user_id, online: o, ..
            } if user_id == user && o == online => Some(()),
            _ => None,
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_with_sigkill_takes_its_devices_offline_within_five_seconds() {
    let (pg, nats) = services();
    let n1 = node(&pg, Some(&nats), "n1").await;
    let config = format!(
        "[store]\nbackend = \"postgres\"\nurl = {:?}\n[cluster]\nnats_url = {:?}\nnode_id = \"n2\"\n",
        pg.url("relay"),
        nats.url()
    );
    let mut n2 = RelayProcess::start_configured(relay_binary(), &config);
    let mut alice = TestClient::create(&n1, "alice").await;
    let mut bob = TestClient::create_at(n2.address(), "bob", |_| {}).await;
    let bob_id = alice.contact("bob").await;
    let chat = alice.client.direct_chat(bob_id).unwrap();
    alice.client.send_text(chat, "hi".into()).unwrap();
    assert_eq!(bob.next_message().await.text, "hi");
    guard(alice.client.subscribe_presence(vec![bob_id]))
        .await
        .unwrap();
    presence_of(&mut alice, bob_id, true).await;
    let killed = std::time::Instant::now();
    n2.kill();
    presence_of(&mut alice, bob_id, false).await;
    let took = killed.elapsed();
    println!("offline after {took:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    n1.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_goes_on_through_sync_while_nats_is_down_and_through_the_bus_after() {
    let (pg, mut nats) = services();
    let n1 = node(&pg, Some(&nats), "n1").await;
    let n2 = node(&pg, Some(&nats), "n2").await;
    let (alice, mut bob, chat, _) = pair(&n1, &n2).await;

    nats.kill().unwrap();
    alice.client.send_text(chat, "bus down".into()).unwrap();
    assert_eq!(bob.next_message().await.text, "bus down");

    nats.restart().unwrap();
    // Both nodes reconnect to the bus (within about a second).
    tokio::time::sleep(Duration::from_secs(3)).await;
    alice.client.send_text(chat, "bus back".into()).unwrap();
    assert_eq!(bob.next_message().await.text, "bus back");
    n1.stop().await;
    n2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_whose_node_goes_away_moves_to_another_and_keeps_chatting() {
    let (pg, nats) = services();
    let dir = tempfile::tempdir().unwrap();
    let tls = cluster_certificate(dir.path());
    let n1 = node_with(&pg, Some(&nats), "n1", Some(tls.clone())).await;
    let n2 = node_with(&pg, Some(&nats), "n2", Some(tls)).await;
    assert_eq!(n1.fingerprint, n2.fingerprint, "one certificate");
    // Alice knows both nodes, n1 first; Bob only n2.
    let both = RelayAddress {
        fallbacks: vec![n2.addr],
        ..n1.address()
    };
    let mut alice = TestClient::create_at(both, "alice", |_| {}).await;
    let mut bob = TestClient::create(&n2, "bob").await;
    let bob_id = alice.contact("bob").await;
    let chat = alice.client.direct_chat(bob_id).unwrap();
    alice.client.send_text(chat, "via n1".into()).unwrap();
    assert_eq!(bob.next_message().await.text, "via n1");

    n1.stop().await;
    bob.client.send_text(chat, "n1 is gone".into()).unwrap();
    assert_eq!(alice.next_message().await.text, "n1 is gone");
    alice.client.send_text(chat, "via n2".into()).unwrap();
    assert_eq!(bob.next_message().await.text, "via n2");
    n2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attachment_uploaded_through_one_node_downloads_through_another() {
    let (pg, nats) = services();
    let n1 = node(&pg, Some(&nats), "n1").await;
    let n2 = node(&pg, Some(&nats), "n2").await;
    let (alice, mut bob, chat, _) = pair(&n1, &n2).await;
    let data: Vec<u8> = (0..1_500_000u32).map(|i| (i % 251) as u8).collect();
    let source = alice.dir.path().join("map.bin");
    std::fs::write(&source, &data).unwrap();
    guard(
        alice
            .client
            .send_attachment(chat, source, "application/octet-stream".into()),
    )
    .await
    .unwrap();
    let received = bob.next_message().await;
    let dest = bob.dir.path().join("map.bin");
    guard(bob.client.download_attachment(received.id, dest.clone()))
        .await
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    let stored = pg.psql("relay", "SELECT count(*) FROM blobs").unwrap();
    assert_eq!(stored.trim(), "1", "the blob is in PostgreSQL");
    n1.stop().await;
    n2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_links_through_another_node_than_its_account() {
    let (pg, nats) = services();
    let n1 = node(&pg, Some(&nats), "n1").await;
    let n2 = node(&pg, Some(&nats), "n2").await;
    let (alice, bob, chat, _) = pair(&n1, &n2).await;
    // The new device waits on n2; Alice's first device sends it the link
    // through n1.
    let mut second = alice.link_device(&n2).await;
    bob.client
        .send_text(chat, "to both devices".into())
        .unwrap();
    assert_eq!(second.next_message().await.text, "to both devices");
    n1.stop().await;
    n2.stop().await;
}

/// Whether a push wakeup reached `endpoint` (a non-blocking listener).
fn woken(endpoint: &std::net::TcpListener) -> bool {
    endpoint.accept().is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_wakes_a_device_only_when_no_node_has_it_online() {
    let (pg, nats) = services();
    let n1 = node(&pg, Some(&nats), "n1").await;
    let n2 = node(&pg, Some(&nats), "n2").await;
    let (alice, mut bob, chat, _) = pair(&n1, &n2).await;
    let endpoint = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    endpoint.set_nonblocking(true).unwrap();
    let url = format!("http://{}/up/bob", endpoint.local_addr().unwrap());
    guard(bob.client.set_push_endpoint(Some(url)))
        .await
        .unwrap();

    // Bob is online on n2: n1, which commits Alice's messages, wakes no one.
    for i in 0..5 {
        alice.send_to(&mut bob, chat, &format!("online {i}")).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !woken(&endpoint),
        "a device online on another node was woken"
    );

    // Once Bob is offline everywhere, Alice's next messages wake him.
    drop(bob);
    guard(async {
        let mut i = 0;
        while !woken(&endpoint) {
            alice
                .client
                .send_text(chat, format!("offline {i}"))
                .unwrap();
            i += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    n1.stop().await;
    n2.stop().await;
}
