//! Push wakeups for offline devices: content-free, coalesced.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use tern_protocol::wire::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_device_gets_a_content_free_wakeup() {
    let relay = TestRelay::start_with(|c| c.push.allow_http = true).await;
    let at = (relay.addr, relay.fingerprint.as_str());
    let endpoint = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/up/bob-token", endpoint.local_addr().unwrap());

    let alice = Account::new("alice", 1);
    let bob = Account::new("bob", 1);
    let a = Client::register(at, &alice).await.unwrap();
    let b = Client::register(at, &bob).await.unwrap();
    b.ok(request::Kind::SetPushEndpoint(SetPushEndpoint { url }))
        .await;
    let chat: [u8; 16] = random();
    a.ok(create_chat(chat, ChatKind::Direct, &[bob.user_id]))
        .await;
    b.conn.close(0u32.into(), b"offline");

    // Keep sending until the relay has noticed bob is gone and wakes him.
    let sender = tokio::spawn(async move {
        loop {
            let to = [(&bob.user_id, 1, &b"secret"[..])];
            ack(a.ok(send_to(chat, random(), &to, b"")).await);
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    });
    let (mut socket, _) = guard(endpoint.accept()).await.unwrap();
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = guard(socket.read(&mut buf)).await.unwrap();
        assert!(n > 0, "connection closed before the request head");
        request.extend_from_slice(&buf[..n]);
    }
    socket
        .write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
        .await
        .unwrap();
    sender.abort();
    let head = String::from_utf8(request).unwrap();
    assert!(
        head.starts_with("POST /up/bob-token HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(head.contains("Content-Length: 0\r\n"));
    assert!(
        head.ends_with("\r\n\r\n"),
        "no body: nothing about the message leaves"
    );
    assert!(!head.contains("secret"));
    relay.stop().await;
}
