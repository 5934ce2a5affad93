//! Blobs: streamed, content-addressed, resumable uploads and downloads.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use quinn::{Connection, RecvStream, SendStream};
use sha2::{Digest, Sha256};
use tern_protocol::wire::*;
use tern_protocol::{FrameDecoder, UserId};
use tern_relay::BlobStore;
use tern_relay::LimitsConfig;
use tern_relay::store::DeviceAddr;
use tern_testkit::raw::*;
use tern_testkit::relay::pinned;
use tern_testkit::{Account, TestRelay, guard, random};

const CHUNK: usize = 256 * 1024;

fn blob(len: usize) -> (Vec<u8>, [u8; 32]) {
    let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let id = Sha256::digest(&data).into();
    (data, id)
}

/// Starts an upload; returns the streams and the resume point.
async fn start(
    conn: &Connection,
    id: [u8; 32],
    size: usize,
) -> (SendStream, RecvStream, FrameDecoder, response::Kind) {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let start = request::Kind::BlobUploadStart(BlobUploadStart {
        sha256: id.to_vec().into(),
        size: size as u64,
    });
    let req = client_frame::Body::Request(Request {
        kind: Some(start),
        request_id: 0,
    });
    send.write_all(&client_frame_bytes(req)).await.unwrap();
    let mut dec = FrameDecoder::new();
    let first = next_response(&mut recv, &mut dec).await;
    (send, recv, dec, first)
}

async fn chunks(send: &mut SendStream, data: &[u8], from: usize, to: usize) {
    let mut offset = from;
    while offset < to {
        let end = (offset + CHUNK).min(to);
        let chunk = client_frame::Body::BlobChunk(BlobChunk {
            offset: offset as u64,
            data: data[offset..end].to_vec().into(),
        });
        send.write_all(&client_frame_bytes(chunk)).await.unwrap();
        offset = end;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_resumes_after_a_dropped_connection() {
    let relay = TestRelay::start().await;
    let at = &relay.address();
    let alice = Account::new("alice", 1);
    let a = RawClient::register(at, &alice).await.unwrap();
    let (data, id) = blob(CHUNK * 4 + 1000);

    let (mut send, mut recv, mut dec, first) = start(&a.conn, id, data.len()).await;
    let response::Kind::BlobUploadStatus(s) = first else {
        panic!("expected status")
    };
    assert_eq!((s.received, s.complete), (0, false));
    chunks(&mut send, &data, 0, 2 * CHUNK).await;
    send.finish().unwrap();
    let response::Kind::Error(e) = next_response(&mut recv, &mut dec).await else {
        panic!("an incomplete upload must not complete")
    };
    assert_eq!(code(&e), ErrorCode::BadRequest);
    a.conn.close(0u32.into(), b"dropped");

    let a = RawClient::login(at, &alice, 1).await.unwrap();
    let (mut send, mut recv, mut dec, first) = start(&a.conn, id, data.len()).await;
    let response::Kind::BlobUploadStatus(s) = first else {
        panic!("expected status")
    };
    assert_eq!(
        s.received,
        2 * CHUNK as u64,
        "resumes where the relay stopped"
    );
    chunks(&mut send, &data, 2 * CHUNK, data.len()).await;
    send.finish().unwrap();
    let response::Kind::BlobUploadStatus(s) = next_response(&mut recv, &mut dec).await else {
        panic!("expected the final status")
    };
    assert!(s.complete);

    let bob = RawClient::register(at, &Account::new("bob", 1))
        .await
        .unwrap();
    assert_eq!(download_blob(&bob.conn, id, 0).await, data);
    assert_eq!(download_blob(&bob.conn, id, 1000).await, data[1000..]);
    // Uploading it again completes at once.
    let (_s, _r, _d, again) = start(&bob.conn, id, data.len()).await;
    let response::Kind::BlobUploadStatus(s) = again else {
        panic!("expected status")
    };
    assert!(s.complete);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_in_progress_belongs_to_its_device() {
    let relay = TestRelay::start().await;
    let at = &relay.address();
    let alice = Account::new("alice", 1);
    let a = RawClient::register(at, &alice).await.unwrap();
    let mallory = RawClient::register(at, &Account::new("mallory", 1))
        .await
        .unwrap();
    let (data, id) = blob(CHUNK * 3);

    // Alice uploads a third and drops the connection.
    let (mut send, mut recv, mut dec, _) = start(&a.conn, id, data.len()).await;
    chunks(&mut send, &data, 0, CHUNK).await;
    send.finish().unwrap();
    next_response(&mut recv, &mut dec).await;
    a.conn.close(0u32.into(), b"dropped");

    // Mallory, who learned the id, starts an upload of it: he does not see
    // Alice's progress, and his failed completion leaves it alone.
    let (mut send, mut recv, mut dec, first) = start(&mallory.conn, id, data.len()).await;
    let response::Kind::BlobUploadStatus(s) = first else {
        panic!("expected status")
    };
    assert_eq!(s.received, 0, "another device's progress is not shown");
    chunks(&mut send, &vec![7u8; data.len()], 0, data.len()).await;
    send.finish().unwrap();
    let response::Kind::Error(e) = next_response(&mut recv, &mut dec).await else {
        panic!("a wrong ciphertext must not complete")
    };
    assert_eq!(code(&e), ErrorCode::BadRequest);

    // Alice resumes where she stopped and completes.
    let a = RawClient::login(at, &alice, 1).await.unwrap();
    let (mut send, mut recv, mut dec, first) = start(&a.conn, id, data.len()).await;
    let response::Kind::BlobUploadStatus(s) = first else {
        panic!("expected status")
    };
    assert_eq!(s.received, CHUNK as u64);
    chunks(&mut send, &data, CHUNK, data.len()).await;
    send.finish().unwrap();
    let response::Kind::BlobUploadStatus(s) = next_response(&mut recv, &mut dec).await else {
        panic!("expected the final status")
    };
    assert!(s.complete);
    assert_eq!(download_blob(&mallory.conn, id, 0).await, data);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_hash_oversize_and_unknown_blobs_are_refused() {
    let relay = TestRelay::start_with(|c| c.limits.max_blob_bytes = 1024 * 1024).await;
    let at = &relay.address();
    let a = RawClient::register(at, &Account::new("alice", 1))
        .await
        .unwrap();
    let (data, _) = blob(1000);
    let wrong: [u8; 32] = random();
    let (mut send, mut recv, mut dec, _) = start(&a.conn, wrong, data.len()).await;
    chunks(&mut send, &data, 0, data.len()).await;
    send.finish().unwrap();
    let response::Kind::Error(e) = next_response(&mut recv, &mut dec).await else {
        panic!("a hash mismatch must fail")
    };
    assert_eq!(code(&e), ErrorCode::BadRequest);

    let (_s, _r, _d, too_big) = start(&a.conn, random(), 2 * 1024 * 1024).await;
    let response::Kind::Error(e) = too_big else {
        panic!("expected an error")
    };
    assert_eq!(code(&e), ErrorCode::TooLarge);

    let (mut send, mut recv) = a.conn.open_bi().await.unwrap();
    let req = client_frame::Body::Request(Request {
        kind: Some(request::Kind::BlobDownload(BlobDownload {
            blob_id: wrong.to_vec().into(),
            offset: 0,
        })),
        request_id: 0,
    });
    send.write_all(&client_frame_bytes(req)).await.unwrap();
    send.finish().unwrap();
    let response::Kind::Error(e) = next_response(&mut recv, &mut FrameDecoder::new()).await else {
        panic!("expected an error")
    };
    assert_eq!(code(&e), ErrorCode::NotFound);
    relay.stop().await;
}

/// Uploads a whole blob on one stream; returns the relay's last answer.
async fn upload(conn: &Connection, data: &[u8], id: [u8; 32]) -> response::Kind {
    let (mut send, mut recv, mut dec, first) = start(conn, id, data.len()).await;
    if matches!(first, response::Kind::Error(_)) {
        return first;
    }
    chunks(&mut send, data, 0, data.len()).await;
    send.finish().unwrap();
    next_response(&mut recv, &mut dec).await
}

fn quota_exceeded(kind: response::Kind) -> bool {
    matches!(kind, response::Kind::Error(e) if code(&e) == ErrorCode::QuotaExceeded)
}

fn complete(kind: response::Kind) -> bool {
    matches!(kind, response::Kind::BlobUploadStatus(s) if s.complete)
}

/// A QUIC endpoint serving blob uploads through [`BlobStore::upload_for`] as
/// a relay connection does; connection `n` uploads as account `[n; 16]`.
struct BlobServer {
    addr: SocketAddr,
    fingerprint: String,
    store: Arc<BlobStore>,
    dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl BlobServer {
    async fn start(limits: &LimitsConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(BlobStore::open(dir.path(), limits).unwrap());
        let identity = tern_relay::tls::load_identity(None, dir.path()).unwrap();
        let fingerprint = identity.fingerprint();
        let config = tern_relay::tls::server_config(identity).unwrap();
        let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = endpoint.local_addr().unwrap();
        let serving = store.clone();
        let task = tokio::spawn(async move {
            let mut accounts = 0u8;
            while let Some(incoming) = endpoint.accept().await {
                accounts += 1;
                let conn = incoming.await.unwrap();
                let owner = DeviceAddr {
                    user: UserId([accounts; 16]),
                    device: 1,
                };
                tokio::spawn(serve_uploads(conn, serving.clone(), owner));
            }
        });
        Self {
            addr,
            fingerprint,
            store,
            dir,
            task,
        }
    }

    /// A connection of the next account.
    async fn connect(&self) -> Connection {
        let relay = pinned(self.addr, &self.fingerprint).unwrap();
        let endpoint = client_endpoint(&relay.trust);
        let connecting = endpoint.connect(relay.addr, &relay.server_name).unwrap();
        guard(connecting).await.unwrap()
    }

    /// Makes a stored blob look older than any retention cutoff.
    fn age(&self, id: [u8; 32]) {
        let hex = hex::encode(id);
        let path = self.dir.path().join("blobs").join(&hex[..2]).join(&hex);
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(SystemTime::UNIX_EPOCH).unwrap();
    }
}

impl Drop for BlobServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_uploads(conn: Connection, store: Arc<BlobStore>, owner: DeviceAddr) {
    while let Ok((mut send, recv)) = conn.accept_bi().await {
        let store = store.clone();
        tokio::spawn(async move {
            let mut recv = tern_transport::FrameReader::new(recv);
            let body = recv.next().await.unwrap().unwrap();
            let frame = tern_protocol::decode_client_frame(body).unwrap();
            let Some(client_frame::Body::Request(Request {
                kind: Some(request::Kind::BlobUploadStart(start)),
                ..
            })) = frame.body
            else {
                panic!("only uploads are served here")
            };
            if let Err(e) = store
                .upload_for(owner, start, 0, &mut send, &mut recv)
                .await
            {
                let error = ServerFrame {
                    body: Some(server_frame::Body::Response(Response {
                        kind: Some(response::Kind::Error(e.to_wire())),
                        request_id: 0,
                    })),
                };
                let _ = tern_transport::write_frame(&mut send, &error).await;
            }
            let _ = send.finish();
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_account_is_held_to_its_blob_quota_until_blobs_expire() {
    let limits = LimitsConfig {
        blob_quota_bytes: 1000,
        ..LimitsConfig::default()
    };
    let server = BlobServer::start(&limits).await;
    let alice = server.connect().await;
    let bob = server.connect().await;
    let (first, first_id) = blob(600);
    let second: Vec<u8> = (0..500u32).map(|i| (i % 7) as u8).collect();
    let second_id: [u8; 32] = Sha256::digest(&second).into();

    assert!(complete(upload(&alice, &first, first_id).await));
    assert!(
        quota_exceeded(upload(&alice, &second, second_id).await),
        "600 + 500 bytes exceed alice's 1000-byte quota"
    );
    assert!(
        complete(upload(&bob, &second, second_id).await),
        "the quota is per account"
    );

    // The retention sweep deletes alice's expired blob and frees her quota.
    server.age(first_id);
    let cutoff = SystemTime::now() - Duration::from_secs(3600);
    let sweeping = server.store.clone();
    let deleted = tokio::task::spawn_blocking(move || sweeping.sweep(cutoff))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(deleted, 1);
    let (third, third_id) = blob(900);
    assert!(complete(upload(&alice, &third, third_id).await));
    assert!(
        quota_exceeded(upload(&bob, &third, random()).await),
        "bob's 500 bytes are still charged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_charges_uploads_to_the_uploading_account() {
    let relay = TestRelay::start_with(|c| c.limits.blob_quota_bytes = 1000).await;
    let at = &relay.address();
    let a = RawClient::register(at, &Account::new("alice", 1))
        .await
        .unwrap();
    let (first, first_id) = blob(600);
    assert!(complete(upload(&a.conn, &first, first_id).await));
    let (second, second_id) = blob(500);
    assert!(quota_exceeded(upload(&a.conn, &second, second_id).await));
    relay.stop().await;
}
