//! Cluster mode with the chats spread over two PostgreSQL instances
//! (`[store] chat_shards`): two relay nodes, a directory database and chat
//! shard 0 on one server, chat shard 1 on another, real clients over QUIC
//! on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use tern_testkit::services::{NatsServer, PostgresServer};
use tern_testkit::{TestClient, TestRelay, guard};

/// Most groups created while waiting for one in each shard (chat ids are
/// random: all in one shard has odds 2^-11).
const MOST_GROUPS: usize = 12;

/// The shard a chat lives in, by the rule docs/cluster.md §8 states: the
/// first eight bytes of its id, big-endian, modulo the number of shards.
fn documented_shard(chat: [u8; 16]) -> usize {
    let head = u64::from_be_bytes(chat[..8].try_into().unwrap());
    usize::try_from(head % 2).unwrap()
}

/// A node whose directory is database `directory` of `one`, with chat
/// shards `shard0` on `one` and `shard1` on `other`.
async fn node(one: &PostgresServer, other: &PostgresServer, nats: &NatsServer) -> TestRelay {
    let url = one.url("directory");
    let shards = vec![one.url("shard0"), other.url("shard1")];
    let nats_url = nats.url();
    TestRelay::start_with(move |config| {
        config.store.backend = tern_relay::Backend::Postgres;
        config.store.url = Some(url);
        config.store.chat_shards = shards;
        config.store.pool_size = 4;
        config.cluster.nats_url = Some(nats_url);
    })
    .await
}

/// How many rows of `chats` hold `chat` in database `db` of `server`.
fn chat_rows(server: &PostgresServer, db: &str, chat: [u8; 16]) -> String {
    let hex: String = chat.iter().map(|b| format!("{b:02x}")).collect();
    let sql = format!("SELECT count(*) FROM chats WHERE chat_id = '\\x{hex}'");
    server.psql(db, &sql).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_spreads_its_chats_over_two_postgresql_instances() {
    let one = PostgresServer::start_with(&[("fsync", "off")]).unwrap();
    let other = PostgresServer::start_with(&[("fsync", "off")]).unwrap();
    one.create_database("directory").unwrap();
    one.create_database("shard0").unwrap();
    other.create_database("shard1").unwrap();
    let nats = NatsServer::start().unwrap();
    let n1 = node(&one, &other, &nats).await;
    let n2 = node(&one, &other, &nats).await;

    let mut alice = TestClient::create(&n1, "alice").await;
    let mut bob = TestClient::create(&n2, "bob").await;
    let bob_id = alice.contact("bob").await;
    let mut groups = Vec::new();
    let mut shards_used = BTreeSet::new();
    while shards_used.len() < 2 && groups.len() < MOST_GROUPS {
        let name = format!("group {}", groups.len());
        let group = guard(alice.client.create_group(name, vec![bob_id]))
            .await
            .unwrap();
        shards_used.insert(documented_shard(group));
        groups.push(group);
    }
    assert_eq!(shards_used.len(), 2, "{} groups, one shard", groups.len());

    for group in &groups {
        let (home, away) = match documented_shard(*group) {
            0 => ((&one, "shard0"), (&other, "shard1")),
            _ => ((&other, "shard1"), (&one, "shard0")),
        };
        assert_eq!(chat_rows(home.0, home.1, *group), "1");
        assert_eq!(chat_rows(away.0, away.1, *group), "0");
        assert_eq!(chat_rows(&one, "directory", *group), "0");
    }

    // Messages both ways in every group, across the two nodes.
    for (i, group) in groups.iter().enumerate() {
        alice.send_to(&mut bob, *group, &format!("to {i}")).await;
        bob.send_to(&mut alice, *group, &format!("back {i}")).await;
    }

    // A device Bob links later (through the other node) receives what is
    // sent after the link in every shard.
    let mut second = bob.link_device(&n1).await;
    for (i, group) in groups.iter().enumerate() {
        alice
            .client
            .send_text(*group, format!("after {i}"))
            .unwrap();
    }
    let expected: BTreeSet<String> = (0..groups.len()).map(|i| format!("after {i}")).collect();
    let mut received = BTreeSet::new();
    while received.len() < expected.len() {
        let m = second.next_message().await;
        assert!(groups.contains(&m.chat_id), "a message in an unknown chat");
        received.insert(m.text);
    }
    assert_eq!(received, expected);
    let mut at_first_device = BTreeSet::new();
    for _ in &groups {
        at_first_device.insert(bob.next_message().await.text);
    }
    assert_eq!(at_first_device, expected);
    n1.stop().await;
    n2.stop().await;
}
