//! Pipelined requests: many requests on one stream, each answered with its
//! request id, in whatever order they complete.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use futures_util::future::join_all;
use tern_protocol::FrameDecoder;
use tern_protocol::limits::MAX_FRAME_LEN;
use tern_protocol::wire::*;
use tern_relay::MAX_PIPELINED_REQUESTS;
use tern_testkit::raw::*;
use tern_testkit::{TestRelay, guard, random};
use tern_transport::Pipeline;

/// One encoded request frame.
fn request_bytes(kind: request::Kind, request_id: u64) -> Vec<u8> {
    tern_protocol::encode_frame(&ClientFrame::request(kind, request_id))
        .unwrap()
        .to_vec()
}

fn list_chats(request_id: u64) -> Vec<u8> {
    request_bytes(request::Kind::ListChats(ListChats {}), request_id)
}

/// A download of a blob that does not exist.
fn unknown_blob_download(request_id: u64) -> Vec<u8> {
    let download = BlobDownload {
        blob_id: random::<32>().to_vec().into(),
        offset: 0,
    };
    request_bytes(request::Kind::BlobDownload(download), request_id)
}

/// Writes `bytes` on a new stream, finishes it and returns every response
/// until the relay finishes its side.
async fn responses(client: &RawClient, bytes: &[u8]) -> Vec<Response> {
    let (mut send, mut recv) = guard(client.conn.open_bi()).await.unwrap();
    send.write_all(bytes).await.unwrap();
    send.finish().unwrap();
    let mut decoder = FrameDecoder::new();
    let mut out = Vec::new();
    while let Some(frame) = guard(read(&mut recv, &mut decoder)).await {
        match frame.body {
            Some(server_frame::Body::Response(r)) => out.push(r),
            other => panic!("expected a response, got {other:?}"),
        }
    }
    out
}

fn by_id(responses: &[Response], id: u64) -> &response::Kind {
    let found: Vec<_> = responses.iter().filter(|r| r.request_id == id).collect();
    assert_eq!(found.len(), 1, "exactly one response for request {id}");
    found[0].kind.as_ref().expect("a response kind")
}

/// Asserts that requests 1..=n, all ListChats, got one chat list each.
fn assert_chat_lists(got: &[Response], n: u64) {
    assert_eq!(got.len() as u64, n);
    for id in 1..=n {
        assert!(matches!(by_id(got, id), response::Kind::ChatList(_)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pipelined_request_is_answered_once_with_its_id() {
    let relay = TestRelay::start().await;
    let (_, a, _, _) = pair(&relay).await;
    let bytes: Vec<u8> = (1..=5).flat_map(list_chats).collect();
    assert_chat_lists(&responses(&a, &bytes).await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_sends_in_flight_on_one_stream_are_all_stored_and_delivered() {
    let relay = TestRelay::start().await;
    let (_, a, bob, mut b) = pair(&relay).await;
    let chat = direct_chat(&a, &bob).await;
    let pipeline = Pipeline::open(&a.conn, MAX_PIPELINED_REQUESTS)
        .await
        .unwrap();
    let count = 3 * MAX_PIPELINED_REQUESTS as usize;
    let sends = (0..count).map(|i| {
        let body = format!("message {i}");
        pipeline.request(send_to(
            chat,
            random(),
            &[(&bob.user_id, 1, body.as_bytes())],
            b"",
        ))
    });
    let acks = guard(join_all(sends)).await;
    let seqs: BTreeSet<u64> = acks
        .into_iter()
        .map(|r| ack(r.unwrap().kind.unwrap()).seq)
        .collect();
    assert_eq!(seqs.len(), count, "each send got a seq of its own");
    let mut delivered = BTreeSet::new();
    while delivered.len() < count {
        let d = b.next_delivery().await;
        // (The chat's creation entry carries no ciphertext.)
        if !d.ciphertext.is_empty() {
            delivered.insert(d.seq);
        }
    }
    assert_eq!(delivered, seqs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_transfer_inside_a_pipelined_stream_is_refused_and_the_rest_answered() {
    let relay = TestRelay::start().await;
    let (_, a, _, _) = pair(&relay).await;
    let mut bytes = list_chats(1);
    bytes.extend_from_slice(&unknown_blob_download(2));
    bytes.extend_from_slice(&list_chats(3));
    let got = responses(&a, &bytes).await;
    assert_eq!(got.len(), 3);
    assert!(matches!(by_id(&got, 1), response::Kind::ChatList(_)));
    let response::Kind::Error(e) = by_id(&got, 2) else {
        panic!("the blob request must be refused")
    };
    assert_eq!(code(e), ErrorCode::BadRequest);
    assert!(matches!(by_id(&got, 3), response::Kind::ChatList(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_ends_a_pipelined_stream_after_the_earlier_answers() {
    let relay = TestRelay::start().await;
    let (_, a, _, _) = pair(&relay).await;
    let mut bytes = list_chats(1);
    bytes.extend_from_slice(&((MAX_FRAME_LEN + 1) as u32).to_be_bytes());
    bytes.extend_from_slice(&[0; 64]);
    let got = responses(&a, &bytes).await;
    assert_eq!(got.len(), 2);
    assert!(matches!(by_id(&got, 1), response::Kind::ChatList(_)));
    let response::Kind::Error(e) = by_id(&got, 0) else {
        panic!("the oversized frame must get an error")
    };
    assert_eq!(code(e), ErrorCode::TooLarge);
    // The connection carries on.
    assert!(matches!(
        a.ok(request::Kind::ListChats(ListChats {})).await,
        response::Kind::ChatList(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_its_caller_gave_up_on_leaves_the_pipeline_working() {
    let relay = TestRelay::start().await;
    let (_, a, _, _) = pair(&relay).await;
    let pipeline = Pipeline::open(&a.conn, MAX_PIPELINED_REQUESTS)
        .await
        .unwrap();
    for _ in 0..10 {
        // Dropped at its first await: before or after it reached the wire.
        let abandoned = pipeline.request(request::Kind::ListChats(ListChats {}));
        futures_util::FutureExt::now_or_never(abandoned);
    }
    let answer = guard(pipeline.request(request::Kind::ListChats(ListChats {})))
        .await
        .unwrap();
    assert!(matches!(answer.kind, Some(response::Kind::ChatList(_))));
    assert!(pipeline.is_open());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_share_the_connections_request_budget_without_stalling() {
    let relay = TestRelay::start_with(|c| c.limits.max_streams_per_connection = 2).await;
    let (_, a, _, _) = pair(&relay).await;
    let bytes: Vec<u8> = (1..=6).flat_map(list_chats).collect();
    let streams = (0..2).map(|_| responses(&a, &bytes));
    for got in guard(join_all(streams)).await {
        assert_chat_lists(&got, 6);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_blob_transfer_ends_its_stream_with_one_answer() {
    let relay = TestRelay::start().await;
    let (_, a, _, _) = pair(&relay).await;
    let mut bytes = unknown_blob_download(1);
    bytes.extend_from_slice(&list_chats(2));
    let got = responses(&a, &bytes).await;
    assert_eq!(got.len(), 1, "only the blob request is answered: {got:?}");
    let response::Kind::Error(e) = by_id(&got, 1) else {
        panic!("an unknown blob must be an error")
    };
    assert_eq!(code(e), ErrorCode::NotFound);
}

/// A `GetChat` whose chat id has the wrong length: it decodes, then fails
/// the field check.
fn bad_get_chat(request_id: u64) -> Vec<u8> {
    let get = GetChat {
        chat_id: vec![1; 3].into(),
    };
    request_bytes(request::Kind::GetChat(get), request_id)
}

fn assert_bad_request(got: &[Response], id: u64) {
    let response::Kind::Error(e) = by_id(got, id) else {
        panic!("request {id} must be refused")
    };
    assert_eq!(code(e), ErrorCode::BadRequest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_failing_a_field_check_is_answered_with_its_id() {
    let relay = TestRelay::start().await;
    let (_, a, _, _) = pair(&relay).await;
    // Pipelined between good requests: all three answered, each with its id.
    let bytes = [list_chats(1), bad_get_chat(2), list_chats(3)].concat();
    let got = responses(&a, &bytes).await;
    assert_eq!(got.len(), 3);
    assert!(matches!(by_id(&got, 1), response::Kind::ChatList(_)));
    assert_bad_request(&got, 2);
    assert!(matches!(by_id(&got, 3), response::Kind::ChatList(_)));
    // As the first frame of its stream: answered with its id (the stream
    // then ends, as after any first frame that fails).
    let got = responses(&a, &bad_get_chat(7)).await;
    assert_eq!(got.len(), 1);
    assert_bad_request(&got, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_answers_carry_the_request_id() {
    let relay = TestRelay::start().await;
    let (_, a, _, _) = pair(&relay).await;
    let start = BlobUploadStart {
        sha256: random::<32>().to_vec().into(),
        size: 10,
    };
    let (mut send, mut recv) = guard(a.conn.open_bi()).await.unwrap();
    send.write_all(&request_bytes(request::Kind::BlobUploadStart(start), 9))
        .await
        .unwrap();
    let mut decoder = FrameDecoder::new();
    let frame = guard(read(&mut recv, &mut decoder)).await.unwrap();
    let Some(server_frame::Body::Response(status)) = frame.body else {
        panic!("expected a response, got {:?}", frame.body)
    };
    assert_eq!(status.request_id, 9);
    assert!(matches!(
        status.kind,
        Some(response::Kind::BlobUploadStatus(_))
    ));
}
