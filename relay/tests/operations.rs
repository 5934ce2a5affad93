//! Operator-facing behaviour: metrics, online backup, graceful shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use tern_protocol::wire::*;
use tern_testkit::raw::*;
use tern_testkit::{Account, TestCa, TestRelay, guard, random};
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

/// Alice (connected) in a direct chat with Bob (registered, offline).
async fn alice_chats_with_offline_bob(relay: &TestRelay) -> (RawClient, Account, [u8; 16]) {
    let (_alice, a, bob, b) = pair(relay).await;
    drop(b);
    let chat = direct_chat(&a, &bob).await;
    (a, bob, chat)
}

/// RawClient message ids of every message in the chat's log, synced by `c`.
async fn stored_messages(c: &RawClient, chat: [u8; 16]) -> HashSet<[u8; 16]> {
    let mut stored = HashSet::new();
    let mut after = 0;
    loop {
        let page = batch(c.ok(sync_req(&[(chat, after)])).await);
        for e in &page.entries {
            after = e.seq;
            if e.kind == EntryKind::Message as i32 {
                stored.insert(<[u8; 16]>::try_from(&e.client_message_id[..]).unwrap());
            }
        }
        if !page.more {
            return stored;
        }
    }
}

/// The value of one series (name with labels) in a scrape.
fn series(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from the scrape:\n{text}"))
}

/// Scrapes until every named series has grown past its value in `before`
/// (counters are updated just after the event a client can observe).
async fn scrape_until_moved(addr: std::net::SocketAddr, before: &str, names: &[&str]) -> String {
    guard(async {
        loop {
            let text = scrape(addr).await;
            if names.iter().all(|n| series(&text, n) > series(before, n)) {
                return text;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_traffic_commits_queues_and_latency() {
    let relay =
        TestRelay::start_with(|c| c.metrics_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let addr = relay.metrics.unwrap();
    let before = scrape(addr).await;
    assert!(before.starts_with("HTTP/1.1 200 OK"), "{before}");
    assert_eq!(series(&before, "tern_commit_queue_depth"), 0.0);
    assert_eq!(series(&before, "tern_delivery_queue_depth"), 0.0);
    let (_alice, a, bob, mut b) = pair(&relay).await;
    let chat = direct_chat(&a, &bob).await;
    for _ in 0..3 {
        ack(a
            .ok(send_to(chat, random(), &[(&bob.user_id, 1, b"m")], b""))
            .await);
    }
    for _ in 0..4 {
        b.next_delivery().await;
    }
    let moving = [
        "tern_connections",
        "tern_messages_in_total",
        "tern_messages_out_total",
        "tern_entries_committed_total",
        "tern_deliveries_queued_total",
        "tern_requests_total{kind=\"send\"}",
        "tern_requests_total{kind=\"create_chat\"}",
        "tern_commit_batch_size_count",
        "tern_commit_wait_seconds_count",
        "tern_commit_seconds_count",
        "tern_commit_seconds_bucket{le=\"+Inf\"}",
        "tern_housekeeping_seconds_count",
        "tern_delivery_seconds_count",
        "tern_delivery_seconds_bucket{le=\"+Inf\"}",
    ];
    let after = scrape_until_moved(addr, &before, &moving).await;
    assert_eq!(series(&after, "tern_connections"), 2.0);
    assert_eq!(series(&after, "tern_messages_in_total"), 3.0);
    assert_eq!(series(&after, "tern_entries_committed_total"), 4.0);
    assert_eq!(series(&after, "tern_requests_total{kind=\"send\"}"), 3.0);
    assert_eq!(series(&after, "tern_requests_total{kind=\"sync\"}"), 0.0);
    assert!(after.contains("# TYPE tern_commit_queue_depth gauge"));
    assert!(after.contains("# TYPE tern_delivery_queue_depth gauge"));
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_backup_holds_the_acknowledged_log() {
    let relay = TestRelay::start().await;
    let (a, bob, chat) = alice_chats_with_offline_bob(&relay).await;
    for i in 0..10u8 {
        ack(a
            .ok(send_to(chat, random(), &[(&bob.user_id, 1, &[i])], b""))
            .await);
    }
    let store = tern_relay::store::sqlite::SqliteStore::open(
        &relay.dir.path().join("relay.db"),
        tern_relay::Synchronous::Full,
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
    let b = RawClient::login(&restored.address(), &bob, 1)
        .await
        .unwrap();
    let page = batch(b.ok(sync_req(&[])).await);
    assert_eq!(page.entries.len(), 11);
    restored.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_keeps_every_acknowledged_send() {
    let relay = TestRelay::start().await;
    let (a, bob, chat) = alice_chats_with_offline_bob(&relay).await;
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
    let b = RawClient::login(&restarted.address(), &bob, 1)
        .await
        .unwrap();
    let stored = stored_messages(&b, chat).await;
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.is_subset(&stored),
        "an acknowledged send was lost at shutdown"
    );
    restarted.stop().await;
}

/// Hello on a fresh control stream; true when the relay answers with its
/// own hello (TLS, ALPN and framing all worked).
async fn says_hello(conn: &quinn::Connection) -> bool {
    let (mut send, mut recv) = guard(conn.open_bi()).await.unwrap();
    let hello = hello_frame(tern_protocol::limits::PROTOCOL_VERSION);
    tern_transport::write_frame(&mut send, &hello)
        .await
        .unwrap();
    let answer = guard(read(&mut recv, &mut tern_protocol::FrameDecoder::new())).await;
    matches!(
        answer,
        Some(ServerFrame {
            body: Some(server_frame::Body::Hello(_))
        })
    )
}

async fn connect_with(
    relay: std::net::SocketAddr,
    trust: tern_transport::TrustPolicy,
    name: &str,
) -> Result<quinn::Connection, quinn::ConnectionError> {
    let endpoint = client_endpoint(&trust);
    guard(endpoint.connect(relay, name).unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_pem_certificate_is_served_and_verifiable_against_its_ca() {
    let ca = TestCa::new();
    let (cert, key) = ca.server_cert(&["relay.example"]);
    let pem_dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (
        pem_dir.path().join("cert.pem"),
        pem_dir.path().join("key.pem"),
    );
    std::fs::write(&cert_path, &cert).unwrap();
    std::fs::write(&key_path, &key).unwrap();
    let toml = format!(
        "listen = \"127.0.0.1:0\"\n[tls]\ncert = {:?}\nkey = {:?}\n",
        cert_path, key_path
    );
    let from_file = tern_relay::Config::from_toml(&toml, std::path::Path::new("t.toml")).unwrap();
    let relay = TestRelay::start_with(|c| c.tls = from_file.tls).await;

    let by_ca = tern_transport::TrustPolicy::Roots(ca.roots());
    let conn = connect_with(relay.addr, by_ca.clone(), "relay.example")
        .await
        .expect("the CA-signed certificate verifies");
    assert!(says_hello(&conn).await);
    assert!(
        connect_with(relay.addr, by_ca, "other.example")
            .await
            .is_err(),
        "a certificate for another name is refused"
    );
    let stranger = tern_transport::TrustPolicy::Roots(TestCa::new().roots());
    assert!(
        connect_with(relay.addr, stranger, "relay.example")
            .await
            .is_err(),
        "a client trusting another CA refuses the relay"
    );
    // The fingerprint printed at start pins exactly this certificate.
    let leaf = rustls::pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
    assert_eq!(relay.fingerprint, tern_relay::tls::fingerprint(&leaf));
    let pinned = tern_transport::TrustPolicy::Pinned(relay.fingerprint.parse().unwrap());
    let conn = connect_with(relay.addr, pinned, "relay.example")
        .await
        .unwrap();
    assert!(says_hello(&conn).await);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backup_command_copies_the_acknowledged_log_while_serving() {
    let relay = TestRelay::start().await;
    let (a, bob, chat) = alice_chats_with_offline_bob(&relay).await;
    let mut acked = HashSet::new();
    for i in 0..20u8 {
        let cmid: [u8; 16] = random();
        ack(a
            .ok(send_to(chat, cmid, &[(&bob.user_id, 1, &[i])], b""))
            .await);
        acked.insert(cmid);
    }
    // Sends go on while the backup process runs.
    let conn = a.conn.clone();
    let to = bob.user_id;
    let busy = tokio::spawn(async move {
        while try_request(&conn, send_to(chat, random(), &[(&to, 1, b"x")], b""))
            .await
            .is_some()
        {}
    });
    let backup_dir = tempfile::tempdir().unwrap();
    let backup = backup_dir.path().join("relay.db");
    let output = guard(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_tern-relay"))
            .arg("backup")
            .arg("--data-dir")
            .arg(relay.dir.path())
            .arg(&backup)
            .output(),
    )
    .await
    .unwrap();
    busy.abort();
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("backup written to"));
    relay.stop().await;

    // A relay started on the backup alone serves every acknowledged send.
    let restored = TestRelay::start_with(|c| c.data_dir = backup_dir.path().to_owned()).await;
    let b = RawClient::login(&restored.address(), &bob, 1)
        .await
        .unwrap();
    let stored = stored_messages(&b, chat).await;
    assert!(
        acked.is_subset(&stored),
        "the backup lost an acknowledged send"
    );
    restored.stop().await;
}
