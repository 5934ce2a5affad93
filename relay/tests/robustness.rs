//! Hostile input: malformed, oversized and unauthenticated frames get
//! errors while other connections carry on.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tern_protocol::limits::MAX_FRAME_LEN;
use tern_protocol::wire::*;
use tern_testkit::raw::*;
use tern_testkit::{Account, TestRelay, guard};

fn list_chats() -> request::Kind {
    request::Kind::ListChats(ListChats {})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_errors_and_the_connection_carries_on() {
    let relay = TestRelay::start().await;
    let at = &relay.address();
    let alice = Account::new("alice", 1);
    let a = RawClient::register(at, &alice).await.unwrap();
    let other = RawClient::register(at, &Account::new("bob", 1))
        .await
        .unwrap();

    let garbage = raw_request(&a.conn, &frame_bytes(&[0xff, 0xff, 0xff, 0x0f]))
        .await
        .unwrap_err();
    assert_eq!(code(&garbage), ErrorCode::BadRequest);

    let mut oversized = ((MAX_FRAME_LEN + 1) as u32).to_be_bytes().to_vec();
    oversized.extend_from_slice(&[0; 64]);
    let err = raw_request(&a.conn, &oversized).await.unwrap_err();
    assert_eq!(code(&err), ErrorCode::TooLarge);

    let long_name = request::Kind::LookupUser(LookupUser {
        user_name: "x".repeat(100),
        user_id: Default::default(),
    });
    let err = a.request(long_name).await.unwrap_err();
    assert_eq!(code(&err), ErrorCode::TooLarge);

    let bytes = tern_protocol::encode_frame(&hello_frame(1)).unwrap();
    let err = raw_request(&a.conn, &bytes).await.unwrap_err();
    assert_eq!(code(&err), ErrorCode::BadRequest);

    let truncated = &frame_bytes(&[1, 2, 3, 4, 5, 6])[..7];
    let err = raw_request(&a.conn, truncated).await.unwrap_err();
    assert_eq!(code(&err), ErrorCode::BadRequest);

    // Both connections still work.
    a.ok(list_chats()).await;
    other.ok(list_chats()).await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_before_authentication_are_refused() {
    let relay = TestRelay::start().await;
    let at = &relay.address();
    let bob = RawClient::register(at, &Account::new("bob", 1))
        .await
        .unwrap();

    let endpoint = client_endpoint(&relay.address().trust);
    let conn = guard(
        endpoint
            .connect(relay.addr, tern_relay::tls::SELF_SIGNED_NAME)
            .unwrap(),
    )
    .await
    .unwrap();
    // Open (and hold) the control stream without authenticating.
    let (mut ctl, _ctl_recv) = conn.open_bi().await.unwrap();
    ctl.write_all(&tern_protocol::encode_frame(&hello_frame(1)).unwrap())
        .await
        .unwrap();
    let req = ClientFrame::request(list_chats(), 0);
    let err = raw_request(&conn, &tern_protocol::encode_frame(&req).unwrap())
        .await
        .unwrap_err();
    assert_eq!(code(&err), ErrorCode::Unauthenticated);
    bob.ok(list_chats()).await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_protocol_version_is_refused() {
    let relay = TestRelay::start().await;
    let endpoint = client_endpoint(&relay.address().trust);
    let conn = guard(
        endpoint
            .connect(relay.addr, tern_relay::tls::SELF_SIGNED_NAME)
            .unwrap(),
    )
    .await
    .unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&tern_protocol::encode_frame(&hello_frame(99)).unwrap())
        .await
        .unwrap();
    let mut decoder = tern_protocol::FrameDecoder::new();
    let Some(ServerFrame {
        body:
            Some(server_frame::Body::Response(Response {
                kind: Some(response::Kind::Error(e)),
                ..
            })),
    }) = guard(read(&mut recv, &mut decoder)).await
    else {
        panic!("expected an error response")
    };
    assert_eq!(code(&e), ErrorCode::UnsupportedVersion);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_over_its_request_rate_is_told_to_wait() {
    let relay = TestRelay::start_with(|c| {
        c.limits.requests_per_device_per_sec = 1;
        c.limits.request_burst = 2;
    })
    .await;
    let at = &relay.address();
    let a = RawClient::register(at, &Account::new("alice", 1))
        .await
        .unwrap();
    let b = RawClient::register(at, &Account::new("bob", 1))
        .await
        .unwrap();
    a.ok(list_chats()).await;
    a.ok(list_chats()).await;
    let err = a.request(list_chats()).await.unwrap_err();
    assert_eq!(code(&err), ErrorCode::RateLimited);
    assert!(err.retry_after_ms > 0);
    b.ok(list_chats()).await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_address_over_its_connection_rate_is_refused() {
    let relay = TestRelay::start_with(|c| {
        c.limits.connections_per_ip_per_sec = 1;
        c.limits.connection_burst = 2;
    })
    .await;
    let endpoint = client_endpoint(&relay.address().trust);
    let mut refused = 0;
    for _ in 0..10 {
        let connecting = endpoint
            .connect(relay.addr, tern_relay::tls::SELF_SIGNED_NAME)
            .unwrap();
        if guard(connecting).await.is_err() {
            refused += 1;
        }
    }
    assert!(refused >= 1, "connections beyond the burst are refused");
    relay.stop().await;
}
