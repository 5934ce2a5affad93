//! Operator-facing behaviour: metrics, online backup, graceful shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use common::*;
use tern_protocol::wire::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn scrape(addr: std::net::SocketAddr) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    guard(s.read_to_string(&mut out)).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_commits_and_connections() {
    let relay =
        TestRelay::start_with(|c| c.metrics_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let at = (relay.addr, relay.fingerprint.as_str());
    let alice = Account::new("alice", 1);
    let bob = Account::new("bob", 1);
    let a = Client::register(at, &alice).await.unwrap();
    let mut b = Client::register(at, &bob).await.unwrap();
    let chat = random();
    a.ok(create_chat(chat, ChatKind::Direct, &[bob.user_id]))
        .await;
    ack(a
        .ok(send_to(chat, random(), &[(&bob.user_id, 1, b"m")], b""))
        .await);
    b.next_delivery().await;
    b.next_delivery().await;
    let text = scrape(relay.metrics.unwrap()).await;
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(text.contains("tern_connections 2"), "{text}");
    assert!(text.contains("tern_entries_committed_total 2"), "{text}");
    assert!(text.contains("tern_commit_seconds_count"), "{text}");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_backup_holds_the_acknowledged_log() {
    let relay = TestRelay::start().await;
    let at = (relay.addr, relay.fingerprint.as_str());
    let alice = Account::new("alice", 1);
    let bob = Account::new("bob", 1);
    let a = Client::register(at, &alice).await.unwrap();
    drop(Client::register(at, &bob).await.unwrap());
    let chat = random();
    a.ok(create_chat(chat, ChatKind::Direct, &[bob.user_id]))
        .await;
    for i in 0..10u8 {
        ack(a
            .ok(send_to(chat, random(), &[(&bob.user_id, 1, &[i])], b""))
            .await);
    }
    let store = tern_relay::store::sqlite::SqliteStore::open(
        &relay.dir.path().join("relay.db"),
        tern_relay::config::Synchronous::Full,
    )
    .unwrap();
    let backup_dir = tempfile::tempdir().unwrap();
    let backup = backup_dir.path().join("backup.db");
    store.backup(&backup).unwrap();
    relay.stop().await;

    // Restore: a relay started on the copy serves the same log.
    std::fs::copy(&backup, backup_dir.path().join("relay.db")).unwrap();
    std::fs::remove_file(&backup).unwrap();
    let restored = TestRelay::start_with(|c| c.data_dir = backup_dir.path().to_owned()).await;
    let b = Client::login((restored.addr, restored.fingerprint.as_str()), &bob, 1)
        .await
        .unwrap();
    let page = batch(b.ok(sync_req(&[])).await);
    assert_eq!(page.entries.len(), 11);
    restored.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_keeps_every_acknowledged_send() {
    let relay = TestRelay::start().await;
    let at = (relay.addr, relay.fingerprint.as_str());
    let alice = Account::new("alice", 1);
    let bob = Account::new("bob", 1);
    let a = Client::register(at, &alice).await.unwrap();
    drop(Client::register(at, &bob).await.unwrap());
    let chat = random();
    a.ok(create_chat(chat, ChatKind::Direct, &[bob.user_id]))
        .await;
    let acked: Arc<Mutex<HashSet<[u8; 16]>>> = Arc::default();
    let mut senders = Vec::new();
    for _ in 0..4 {
        let (conn, acked, to) = (a.conn.clone(), acked.clone(), bob.user_id);
        senders.push(tokio::spawn(async move {
            loop {
                let cmid: [u8; 16] = random();
                match try_request(&conn, send_to(chat, cmid, &[(&to, 1, b"x")], b"")).await {
                    Some(Ok(_)) => {
                        acked.lock().unwrap().insert(cmid);
                    }
                    Some(Err(e)) => {
                        assert_eq!(code(&e), ErrorCode::Unavailable);
                        return;
                    }
                    None => return,
                }
            }
        }));
    }
    while acked.lock().unwrap().len() < 50 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let dir = relay.stop().await;
    for s in senders {
        guard(s).await.unwrap();
    }
    let restarted = TestRelay::start_with(|c| c.data_dir = dir.path().to_owned()).await;
    let b = Client::login((restarted.addr, restarted.fingerprint.as_str()), &bob, 1)
        .await
        .unwrap();
    let mut stored = HashSet::new();
    let mut after = 0;
    loop {
        let page = batch(b.ok(sync_req(&[(chat, after)])).await);
        for e in &page.entries {
            after = e.seq;
            if e.kind == EntryKind::Message as i32 {
                stored.insert(<[u8; 16]>::try_from(&e.client_message_id[..]).unwrap());
            }
        }
        if !page.more {
            break;
        }
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.is_subset(&stored),
        "an acknowledged send was lost at shutdown"
    );
    restarted.stop().await;
}
