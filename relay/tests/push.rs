//! Push wakeups for offline devices: content-free, coalesced, over http or
//! https.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tern_protocol::wire::*;
use tern_testkit::raw::*;
use tern_testkit::{TestCa, TestRelay, guard, random};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CREATED: &[u8] = b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n";

fn head_complete(head: &[u8]) -> bool {
    head.windows(4).any(|w| w == b"\r\n\r\n")
}

/// Bob registers `url` as his push endpoint and goes offline; Alice keeps
/// sending to him until the endpoint has seen a wakeup (`received` resolves
/// to its request head), which is checked to carry nothing about the message.
async fn bob_is_woken(
    relay: &TestRelay,
    url: String,
    received: impl std::future::Future<Output = String>,
) {
    let (_alice, a, bob, b) = pair(relay).await;
    b.ok(request::Kind::SetPushEndpoint(SetPushEndpoint { url }))
        .await;
    let chat = direct_chat(&a, &bob).await;
    b.conn.close(0u32.into(), b"offline");

    // Keep sending until the relay has noticed bob is gone and wakes him.
    let sender = tokio::spawn(async move {
        loop {
            let to = [(&bob.user_id, 1, &b"secret"[..])];
            ack(a.ok(send_to(chat, random(), &to, b"")).await);
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    });
    let head = guard(received).await;
    sender.abort();
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_device_gets_a_content_free_wakeup() {
    let relay = TestRelay::start_with(|c| c.push.allow_http = true).await;
    let endpoint = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/up/bob-token", endpoint.local_addr().unwrap());
    let received = async move {
        let (mut socket, _) = endpoint.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !head_complete(&request) {
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed before the request head");
            request.extend_from_slice(&buf[..n]);
        }
        socket.write_all(CREATED).await.unwrap();
        String::from_utf8(request).unwrap()
    };
    bob_is_woken(&relay, url, received).await;
    relay.stop().await;
}

/// Serves one https request with a certificate from `ca`; sends its head.
fn https_endpoint(ca: &TestCa) -> (std::net::SocketAddr, tokio::sync::oneshot::Receiver<String>) {
    let (cert, key) = ca.server_cert(&["127.0.0.1"]);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let conn = rustls::ServerConnection::new(Arc::new(config)).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !head_complete(&request) {
            let n = tls.read(&mut buf).unwrap();
            assert!(n > 0, "connection closed before the request head");
            request.extend_from_slice(&buf[..n]);
        }
        tls.write_all(CREATED).unwrap();
        tls.conn.send_close_notify();
        tls.flush().unwrap();
        let _ = tx.send(String::from_utf8(request).unwrap());
    });
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wakeups_reach_https_endpoints_trusted_through_extra_ca_file() {
    let ca = TestCa::new();
    let (addr, received) = https_endpoint(&ca);
    let ca_dir = tempfile::tempdir().unwrap();
    let ca_file = ca_dir.path().join("push-ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let relay = TestRelay::start_with(|c| c.push.extra_ca_file = Some(ca_file)).await;
    let url = format!("https://{addr}/up/bob-token");
    bob_is_woken(&relay, url, async { received.await.unwrap() }).await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_extra_ca_file_stops_the_relay_from_starting() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("not-a-ca.pem");
    std::fs::write(&not_pem, "no certificate here").unwrap();
    let mut config = tern_relay::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        ..tern_relay::Config::default()
    };
    config.push.extra_ca_file = Some(not_pem);
    assert!(tern_relay::Server::start(config.clone()).is_err());
    config.push.extra_ca_file = Some(dir.path().join("missing.pem"));
    assert!(tern_relay::Server::start(config).is_err());
}
