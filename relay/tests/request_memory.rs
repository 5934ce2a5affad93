//! Request bodies a peer makes the relay buffer are bounded: per
//! connection (`limits.request_bytes_per_connection`, 128 KiB before
//! authentication), relay-wide (`limits.request_bytes_total`), and in time
//! (`limits.frame_timeout_secs`); provisioning mailboxes expire
//! (`limits.provisioning_ttl_secs`). Each attack runs while a well-behaved
//! client keeps working.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use quinn::{Connection, RecvStream, SendStream};
use tern_protocol::FrameDecoder;
use tern_protocol::limits::{MAX_FRAME_LEN, MAX_PRE_AUTH_FRAME_LEN};
use tern_protocol::wire::*;
use tern_testkit::raw::*;
use tern_testkit::{Account, RelayProcess, TestRelay, guard, random};

const MIB: usize = 1024 * 1024;

fn list_chats() -> request::Kind {
    request::Kind::ListChats(ListChats {})
}

/// Opens a stream on `conn` and writes a frame header announcing
/// `announced` bytes followed by `sent` bytes of body, leaving the frame
/// unfinished. Writing stops early when the relay stops the stream.
async fn partial_frame(
    conn: &Connection,
    announced: usize,
    sent: usize,
) -> (SendStream, RecvStream) {
    let (mut send, recv) = guard(conn.open_bi()).await.unwrap();
    let mut bytes = (announced as u32).to_be_bytes().to_vec();
    bytes.resize(4 + sent, 0x5a);
    let _ = send.write_all(&bytes).await;
    (send, recv)
}

/// The error the relay answered on `recv`.
async fn refusal_on(recv: &mut RecvStream) -> Error {
    let frame = guard(read(recv, &mut FrameDecoder::new())).await;
    match frame.and_then(|f| f.body) {
        Some(server_frame::Body::Response(Response {
            kind: Some(response::Kind::Error(e)),
            ..
        })) => e,
        other => panic!("expected an error answer, got {other:?}"),
    }
}

/// Lets frames in flight reach the relay.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(400)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_frame_is_refused_after_the_frame_timeout() {
    let relay = TestRelay::start_with(|c| c.limits.frame_timeout_secs = 1).await;
    let (_, a, _, _) = pair(&relay).await;
    let (_send, mut recv) = partial_frame(&a.conn, 1000, 10).await;
    let e = refusal_on(&mut recv).await;
    assert_eq!(code(&e), ErrorCode::BadRequest);
    assert!(e.message.contains("frame_timeout_secs"), "{}", e.message);
    a.ok(list_chats()).await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_over_its_request_budget_is_told_to_slow_down() {
    let relay =
        TestRelay::start_with(|c| c.limits.request_bytes_per_connection = MAX_FRAME_LEN).await;
    let (_, a, _, b) = pair(&relay).await;
    let (mut held, _held_recv) = partial_frame(&a.conn, MAX_FRAME_LEN, MAX_FRAME_LEN - 1).await;
    settle().await;
    let (_send, mut recv) = partial_frame(&a.conn, MIB, 100 * 1024).await;
    let e = refusal_on(&mut recv).await;
    assert_eq!(code(&e), ErrorCode::RateLimited);
    assert!(e.retry_after_ms > 0);
    // Other connections are not affected; this one recovers once its
    // pending frame is gone.
    b.ok(list_chats()).await;
    held.reset(0u32.into()).unwrap();
    settle().await;
    a.ok(list_chats()).await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_wide_request_budget_refuses_with_unavailable() {
    let relay = TestRelay::start_with(|c| {
        c.limits.request_bytes_per_connection = MAX_FRAME_LEN;
        c.limits.request_bytes_total = 3 * MIB;
    })
    .await;
    let (_, a, _, b) = pair(&relay).await;
    let (_held, _held_recv) = partial_frame(&a.conn, MAX_FRAME_LEN, MAX_FRAME_LEN - 1).await;
    settle().await;
    let (_send, mut recv) = partial_frame(&b.conn, 3 * MIB / 2, 3 * MIB / 2 - 1).await;
    let e = refusal_on(&mut recv).await;
    assert_eq!(code(&e), ErrorCode::Unavailable);
    b.ok(list_chats()).await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_connections_may_only_send_small_frames() {
    let relay = TestRelay::start().await;
    let at = &relay.address();
    let hello = guard(Hello::connect(&client_endpoint(&at.trust), at))
        .await
        .unwrap();
    let (_send, mut recv) = partial_frame(hello.conn(), MAX_PRE_AUTH_FRAME_LEN + 1, 16).await;
    let e = refusal_on(&mut recv).await;
    assert_eq!(code(&e), ErrorCode::TooLarge);
    // A frame within the limit is read (and refused for what it asks).
    let err = raw_request(hello.conn(), &frame_bytes(&[0x08; 1000]))
        .await
        .unwrap_err();
    assert_eq!(code(&err), ErrorCode::BadRequest);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_mailboxes_expire() {
    let relay = TestRelay::start_with(|c| {
        c.limits.auth_timeout_secs = 1;
        c.limits.provisioning_ttl_secs = 2;
    })
    .await;
    let at = &relay.address();
    let (_, a, _, b) = pair(&relay).await;
    let open = || request::Kind::ProvisioningOpen(ProvisioningOpen {});
    let send = |address: bytes::Bytes| {
        request::Kind::ProvisioningSend(ProvisioningSend {
            address,
            ciphertext: b"x".to_vec().into(),
        })
    };

    // An unauthenticated connection holding a mailbox is closed after the
    // mailbox's lifetime.
    let hello = guard(Hello::connect(&client_endpoint(&at.trust), at))
        .await
        .unwrap();
    let bytes = tern_protocol::encode_frame(&ClientFrame::request(open(), 0)).unwrap();
    raw_request(hello.conn(), &bytes).await.unwrap();
    let opened = std::time::Instant::now();
    guard(hello.conn().closed()).await;
    let lived = opened.elapsed();
    assert!(
        lived >= Duration::from_millis(1500),
        "closed after {lived:?}"
    );

    // An authenticated connection's mailbox stops taking messages; opening
    // again gives a fresh address.
    let response::Kind::ProvisioningAddress(first) = a.ok(open()).await else {
        panic!("expected an address")
    };
    b.ok(send(first.address.clone())).await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let gone = b.request(send(first.address.clone())).await.unwrap_err();
    assert_eq!(code(&gone), ErrorCode::NotFound);
    let response::Kind::ProvisioningAddress(second) = a.ok(open()).await else {
        panic!("expected an address")
    };
    assert_ne!(first.address, second.address);
    b.ok(send(second.address)).await;
    relay.stop().await;
}

/// Attackers of each kind.
const ATTACKERS: usize = 12;
/// Partial frames each authenticated attacker opens.
const STREAMS_PER_ATTACKER: usize = 16;
/// Relay-wide request budgets in this test (`request_bytes_total`,
/// `request_bytes_unauthenticated`).
const USERS_BUDGET: usize = 24 * MIB;
const ANONYMOUS_BUDGET: usize = 4 * MIB;
/// What each authenticated connection may hold beyond the pools (the
/// relay's `REQUEST_FLOOR`).
const FLOOR: usize = 64 * 1024;
/// What the attack may add to the relay's RSS beyond the request budgets:
/// the state of 38 QUIC connections, their send and receive buffers, and
/// the allocator's slack (about 17 MiB measured).
const CONSTANT_KIB: u64 = 32 * 1024;

/// Holds partial frames open on `conn`: `streams` frames announcing
/// `announced` bytes, each sent but for its last byte.
fn pin(conn: Connection, streams: usize, announced: usize) -> Vec<tokio::task::JoinHandle<()>> {
    (0..streams)
        .map(|_| {
            let conn = conn.clone();
            tokio::spawn(async move {
                let streams = partial_frame(&conn, announced, announced - 1).await;
                conn.closed().await;
                drop(streams);
            })
        })
        .collect()
}

/// The well-behaved side: `a` sends `count` messages to `b` in `chat`, and
/// `b` receives them all.
async fn chat_a_little(a: &RawClient, b: &mut RawClient, chat: [u8; 16], count: usize) {
    for _ in 0..count {
        a.ok(send_to(
            chat,
            random(),
            &[(&b.user_id, b.device_id, &[7u8; 600][..])],
            b"",
        ))
        .await;
    }
    let mut seen = 0;
    while seen < count {
        if matches!(b.next_event().await, event::Kind::Delivery(d) if d.kind == EntryKind::Message as i32)
        {
            seen += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_frames_of_many_connections_stay_within_the_budget() {
    let config = format!(
        "[limits]\nrequest_bytes_per_connection = {}\nrequest_bytes_total = {USERS_BUDGET}\nrequest_bytes_unauthenticated = {ANONYMOUS_BUDGET}\nframe_timeout_secs = 60\nauth_timeout_secs = 60\n",
        4 * MIB
    );
    let relay = RelayProcess::start_configured(env!("CARGO_BIN_EXE_tern-relay"), &config);
    let at = &relay.address();
    let (alice, bob) = (Account::new("alice", 1), Account::new("bob", 1));
    let a = RawClient::register(at, &alice).await.unwrap();
    let mut b = RawClient::register(at, &bob).await.unwrap();
    let chat = direct_chat(&a, &bob).await;
    chat_a_little(&a, &mut b, chat, 50).await;
    let before = relay.rss_kib().unwrap();

    let mut attackers = Vec::new();
    let mut pins = Vec::new();
    for i in 0..ATTACKERS {
        let account = Account::new(&format!("mallory{i}"), 1);
        let client = RawClient::register(at, &account).await.unwrap();
        pins.extend(pin(
            client.conn.clone(),
            STREAMS_PER_ATTACKER,
            MAX_FRAME_LEN,
        ));
        attackers.push(client);
    }
    let mut unauthenticated = Vec::new();
    for provisioning in [false, true] {
        for _ in 0..ATTACKERS {
            let hello = guard(Hello::connect(&client_endpoint(&at.trust), at))
                .await
                .unwrap();
            if provisioning {
                let open = request::Kind::ProvisioningOpen(ProvisioningOpen {});
                let bytes = tern_protocol::encode_frame(&ClientFrame::request(open, 0)).unwrap();
                raw_request(hello.conn(), &bytes).await.unwrap();
            }
            pins.extend(pin(hello.conn().clone(), 2, MAX_PRE_AUTH_FRAME_LEN));
            pins.extend(pin(hello.conn().clone(), 1, MAX_FRAME_LEN));
            unauthenticated.push(hello);
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut peak = relay.rss_kib().unwrap();
    for _ in 0..4 {
        chat_a_little(&a, &mut b, chat, 25).await;
        peak = peak.max(relay.rss_kib().unwrap());
    }
    let growth = peak.saturating_sub(before);
    let budget = (USERS_BUDGET + ANONYMOUS_BUDGET + (ATTACKERS + 2) * FLOOR) / 1024;
    println!(
        "relay RSS {before} KiB, +{growth} KiB with {ATTACKERS} authenticated connections holding {STREAMS_PER_ATTACKER} partial 2 MiB frames each and {} unauthenticated ones (half with provisioning mailboxes) holding partial frames; request budgets {budget} KiB",
        2 * ATTACKERS,
    );
    assert!(
        growth < budget as u64 + CONSTANT_KIB,
        "partial frames grew the relay by {growth} KiB"
    );
    for task in pins {
        task.abort();
    }
}
