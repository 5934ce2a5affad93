//! Cluster mode: relays on PostgreSQL (each test starts its own throw-away
//! server) with real clients over QUIC on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tern_testkit::services::PostgresServer;
use tern_testkit::{TestClient, TestRelay};

/// A relay on database `db` of `pg`.
async fn relay_on(pg: &PostgresServer, db: &str) -> TestRelay {
    let url = pg.url(db);
    TestRelay::start_with(move |config| {
        config.store.backend = tern_relay::Backend::Postgres;
        config.store.url = Some(url);
        config.store.pool_size = 4;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_chat_through_a_relay_on_postgres_and_keep_history_across_restarts() {
    let pg = PostgresServer::start_with(&[("fsync", "off")]).unwrap();
    pg.create_database("relay").unwrap();
    let mut relay = relay_on(&pg, "relay").await;
    let (alice, mut bob, chat) = TestClient::direct_pair(&relay, "alice", "bob").await;
    alice.client.send_text(chat, "on postgres".into()).unwrap();
    assert_eq!(bob.next_message().await.text, "on postgres");

    relay.restart().await;
    bob.client.send_text(chat, "after the restart".into()).unwrap();
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
