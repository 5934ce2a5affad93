//! Blobs: streamed, content-addressed, resumable uploads and downloads.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use quinn::{RecvStream, SendStream};
use sha2::{Digest, Sha256};
use tern_protocol::FrameDecoder;
use tern_protocol::wire::*;

const CHUNK: usize = 256 * 1024;

fn blob(len: usize) -> (Vec<u8>, [u8; 32]) {
    let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let id = Sha256::digest(&data).into();
    (data, id)
}

fn frame(body: client_frame::Body) -> Vec<u8> {
    tern_protocol::encode_frame(&ClientFrame { body: Some(body) })
        .unwrap()
        .to_vec()
}

async fn response(recv: &mut RecvStream, dec: &mut FrameDecoder) -> response::Kind {
    match guard(read(recv, dec)).await {
        Some(ServerFrame {
            body: Some(server_frame::Body::Response(Response { kind: Some(kind) })),
        }) => kind,
        other => panic!("expected a response, got {other:?}"),
    }
}

/// Starts an upload; returns the streams and the resume point.
async fn start(
    c: &Client,
    id: [u8; 32],
    size: usize,
) -> (SendStream, RecvStream, FrameDecoder, response::Kind) {
    let (mut send, mut recv) = c.conn.open_bi().await.unwrap();
    let start = request::Kind::BlobUploadStart(BlobUploadStart {
        sha256: id.to_vec().into(),
        size: size as u64,
    });
    let req = client_frame::Body::Request(Request { kind: Some(start) });
    send.write_all(&frame(req)).await.unwrap();
    let mut dec = FrameDecoder::new();
    let first = response(&mut recv, &mut dec).await;
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
        send.write_all(&frame(chunk)).await.unwrap();
        offset = end;
    }
}

async fn download(c: &Client, id: [u8; 32], offset: u64) -> Vec<u8> {
    let (mut send, mut recv) = c.conn.open_bi().await.unwrap();
    let req = client_frame::Body::Request(Request {
        kind: Some(request::Kind::BlobDownload(BlobDownload {
            blob_id: id.to_vec().into(),
            offset,
        })),
    });
    send.write_all(&frame(req)).await.unwrap();
    send.finish().unwrap();
    let mut dec = FrameDecoder::new();
    let response::Kind::BlobInfo(info) = response(&mut recv, &mut dec).await else {
        panic!("expected BlobInfo")
    };
    let mut out = Vec::new();
    while let Some(f) = guard(read(&mut recv, &mut dec)).await {
        let Some(server_frame::Body::BlobChunk(chunk)) = f.body else {
            panic!("expected a chunk")
        };
        assert_eq!(chunk.offset, offset + out.len() as u64);
        out.extend_from_slice(&chunk.data);
    }
    assert_eq!(info.size, offset + out.len() as u64);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_resumes_after_a_dropped_connection() {
    let relay = TestRelay::start().await;
    let at = (relay.addr, relay.fingerprint.as_str());
    let alice = Account::new("alice", 1);
    let a = Client::register(at, &alice).await.unwrap();
    let (data, id) = blob(CHUNK * 4 + 1000);

    let (mut send, mut recv, mut dec, first) = start(&a, id, data.len()).await;
    let response::Kind::BlobUploadStatus(s) = first else {
        panic!("expected status")
    };
    assert_eq!((s.received, s.complete), (0, false));
    chunks(&mut send, &data, 0, 2 * CHUNK).await;
    send.finish().unwrap();
    let response::Kind::Error(e) = response(&mut recv, &mut dec).await else {
        panic!("an incomplete upload must not complete")
    };
    assert_eq!(code(&e), ErrorCode::BadRequest);
    a.conn.close(0u32.into(), b"dropped");

    let a = Client::login(at, &alice, 1).await.unwrap();
    let (mut send, mut recv, mut dec, first) = start(&a, id, data.len()).await;
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
    let response::Kind::BlobUploadStatus(s) = response(&mut recv, &mut dec).await else {
        panic!("expected the final status")
    };
    assert!(s.complete);

    let bob = Client::register(at, &Account::new("bob", 1)).await.unwrap();
    assert_eq!(download(&bob, id, 0).await, data);
    assert_eq!(download(&bob, id, 1000).await, data[1000..]);
    // Uploading it again completes at once.
    let (_s, _r, _d, again) = start(&bob, id, data.len()).await;
    let response::Kind::BlobUploadStatus(s) = again else {
        panic!("expected status")
    };
    assert!(s.complete);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_hash_oversize_and_unknown_blobs_are_refused() {
    let relay = TestRelay::start_with(|c| c.limits.max_blob_bytes = 1024 * 1024).await;
    let at = (relay.addr, relay.fingerprint.as_str());
    let a = Client::register(at, &Account::new("alice", 1))
        .await
        .unwrap();
    let (data, _) = blob(1000);
    let wrong: [u8; 32] = random();
    let (mut send, mut recv, mut dec, _) = start(&a, wrong, data.len()).await;
    chunks(&mut send, &data, 0, data.len()).await;
    send.finish().unwrap();
    let response::Kind::Error(e) = response(&mut recv, &mut dec).await else {
        panic!("a hash mismatch must fail")
    };
    assert_eq!(code(&e), ErrorCode::BadRequest);

    let (_s, _r, _d, too_big) = start(&a, random(), 2 * 1024 * 1024).await;
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
    });
    send.write_all(&frame(req)).await.unwrap();
    send.finish().unwrap();
    let response::Kind::Error(e) = response(&mut recv, &mut FrameDecoder::new()).await else {
        panic!("expected an error")
    };
    assert_eq!(code(&e), ErrorCode::NotFound);
    relay.stop().await;
}
