//! The data directory of a real single relay on SQLite, and what its
//! devices see through the protocol (for `tests/transfer.rs`).

use quinn::{Connection, RecvStream, SendStream};
use sha2::{Digest, Sha256};
use tern_protocol::FrameDecoder;
use tern_protocol::wire::*;
use tern_testkit::raw::*;
use tern_testkit::{Account, TestRelay, random};
/// Bytes per upload chunk.
const CHUNK: usize = 256 * 1024;

/// What a single relay stored, and the ids needed to look at it again.
pub(crate) struct Fixture {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) alice: Account,
    pub(crate) bob: Account,
    pub(crate) direct: [u8; 16],
    pub(crate) group: [u8; 16],
    /// An early send of Alice's device 1 and the seq it got.
    pub(crate) old_send: ([u8; 16], u64),
    pub(crate) invite: String,
    pub(crate) blob: (Vec<u8>, [u8; 32]),
    /// A blob Bob's device started to upload and did not finish.
    pub(crate) partial: (Vec<u8>, [u8; 32]),
    pub(crate) before: Observed,
}

/// Everything the devices see through the protocol, read-only.
#[derive(Debug, PartialEq)]
pub(crate) struct Observed {
    /// Per device (a1, a2, b): a sync after its stored cursors, then one
    /// of both chats from their start.
    pub(crate) syncs: Vec<(SyncBatch, SyncBatch)>,
    pub(crate) chats: Vec<ChatInfo>,
    pub(crate) users: Vec<UserInfo>,
    /// Prekey stock of Alice's device 1 and Bob's device.
    pub(crate) stock: Vec<PrekeyStock>,
}

fn blob(len: usize, salt: u8) -> (Vec<u8>, [u8; 32]) {
    let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8 ^ salt).collect();
    let id = Sha256::digest(&data).into();
    (data, id)
}

/// Starts an upload of `data`, sends its first `len` bytes and finishes
/// the stream; returns the first status and the last answer.
pub(crate) async fn upload(
    conn: &Connection,
    (data, id): &(Vec<u8>, [u8; 32]),
    len: usize,
) -> (response::Kind, response::Kind) {
    let (mut send, mut recv): (SendStream, RecvStream) = conn.open_bi().await.unwrap();
    let start = request::Kind::BlobUploadStart(BlobUploadStart {
        sha256: id.to_vec().into(),
        size: data.len() as u64,
    });
    let req = client_frame::Body::Request(Request {
        kind: Some(start),
        request_id: 0,
    });
    send.write_all(&client_frame_bytes(req)).await.unwrap();
    let mut dec = FrameDecoder::new();
    let first = next_response(&mut recv, &mut dec).await;
    let mut offset = 0;
    while offset < len {
        let end = (offset + CHUNK).min(len);
        let chunk = client_frame::Body::BlobChunk(BlobChunk {
            offset: offset as u64,
            data: data[offset..end].to_vec().into(),
        });
        send.write_all(&client_frame_bytes(chunk)).await.unwrap();
        offset = end;
    }
    send.finish().unwrap();
    let last = next_response(&mut recv, &mut dec).await;
    (first, last)
}

fn change(chat: [u8; 16], promote: &[[u8; 16]]) -> request::Kind {
    request::Kind::ChangeMembers(ChangeMembers {
        chat_id: chat.to_vec().into(),
        add: vec![],
        remove: vec![],
        promote: promote.iter().map(|u| u.to_vec().into()).collect(),
    })
}

fn ack_up_to(cursors: &[([u8; 16], u64)]) -> request::Kind {
    request::Kind::AckDelivered(AckDelivered {
        cursors: cursors
            .iter()
            .map(|(chat, seq)| Cursor {
                chat_id: chat.to_vec().into(),
                seq: *seq,
            })
            .collect(),
    })
}

/// What the three devices see of `f`'s chats, accounts and prekeys.
pub(crate) async fn observe(
    clients: [&RawClient; 3],
    f: &Fixture,
    direct: [u8; 16],
    group: [u8; 16],
) -> Observed {
    let mut syncs = Vec::new();
    for c in clients {
        let stored = batch(c.ok(sync_req(&[])).await);
        let all = batch(c.ok(sync_req(&[(direct, 0), (group, 0)])).await);
        assert!(!stored.more && !all.more);
        syncs.push((stored, all));
    }
    let mut chats = Vec::new();
    for chat in [direct, group] {
        let get = request::Kind::GetChat(GetChat {
            chat_id: chat.to_vec().into(),
        });
        let response::Kind::ChatInfo(info) = clients[0].ok(get).await else {
            panic!("expected ChatInfo")
        };
        chats.push(info);
    }
    let mut users = Vec::new();
    for account in [&f.alice, &f.bob] {
        let lookup = request::Kind::LookupUser(LookupUser {
            user_name: account.name.clone(),
            user_id: Default::default(),
        });
        let response::Kind::UserInfo(user) = clients[0].ok(lookup).await else {
            panic!("expected UserInfo")
        };
        users.push(user);
    }
    let mut stock = Vec::new();
    for c in [clients[0], clients[2]] {
        let empty = request::Kind::UploadPrekeys(UploadPrekeys::default());
        let response::Kind::PrekeyStock(s) = c.ok(empty).await else {
            panic!("expected PrekeyStock")
        };
        stock.push(s);
    }
    Observed {
        syncs,
        chats,
        users,
        stock,
    }
}

/// Runs a single relay on SQLite and gives it two accounts (Alice with two
/// devices), a direct chat with several messages (one fanned out too wide
/// to inline), a group with a promotion, acknowledged cursors, prekeys, a
/// push endpoint, an invite, a complete blob and an unfinished upload;
/// then stops it.
pub(crate) async fn single_relay() -> Fixture {
    let relay = TestRelay::start_with(|c| c.push.enabled = false).await;
    let at = &relay.address();
    let alice = Account::new("alice", 2);
    let bob = Account::new("bob", 1);
    let a1 = RawClient::register(at, &alice).await.unwrap();
    let a2 = RawClient::register_device(at, &alice, 2).await.unwrap();
    let b = RawClient::register(at, &bob).await.unwrap();
    a1.ok(request::Kind::SetPushEndpoint(SetPushEndpoint {
        url: "https://push.example/up/alice-1".into(),
    }))
    .await;
    a1.ok(upload_prekeys(0..20, 0..5)).await;
    b.ok(upload_prekeys(100..110, 0..3)).await;
    // Bob claims one of Alice's one-time keys.
    b.ok(request::Kind::FetchBundles(FetchBundles {
        user_id: alice.user_id.to_vec().into(),
        device_ids: vec![],
    }))
    .await;

    let direct = direct_chat(&a1, &bob).await;
    let old_cmid = random();
    let to_others = |i: u8| {
        [
            (&bob.user_id, 1, vec![i; 10]),
            (&alice.user_id, 2, vec![i; 11]),
        ]
    };
    let mut old_seq = 0;
    for i in 0..5u8 {
        let cmid = if i == 0 { old_cmid } else { random() };
        let to = to_others(i);
        let to: Vec<_> = to.iter().map(|(u, d, c)| (*u, *d, &c[..])).collect();
        let sent = ack(a1.ok(send_to(direct, cmid, &to, b"")).await);
        if i == 0 {
            old_seq = sent.seq;
        }
    }
    let wide = vec![7u8; 3000];
    ack(a1
        .ok(send_to(
            direct,
            random(),
            &[(&bob.user_id, 1, &wide[..]), (&alice.user_id, 2, &wide[..])],
            b"",
        ))
        .await);
    ack(b
        .ok(send_to(
            direct,
            random(),
            &[(&alice.user_id, 1, b"to a1"), (&alice.user_id, 2, b"to a2")],
            b"",
        ))
        .await);

    let group = random();
    a1.ok(create_chat(group, ChatKind::Group, &[bob.user_id]))
        .await;
    ack(a1.ok(send_to(group, random(), &[], b"sender key 1")).await);
    a1.ok(change(group, &[bob.user_id])).await;
    ack(b.ok(send_to(group, random(), &[], b"sender key 2")).await);

    b.ok(ack_up_to(&[(direct, 3)])).await;
    a2.ok(ack_up_to(&[(direct, 2), (group, 1)])).await;

    let invite = tern_relay::new_invite_token().unwrap();
    let store = tern_relay::store::sqlite::SqliteStore::open(
        &relay.dir.path().join("relay.db"),
        tern_relay::Synchronous::Full,
    )
    .unwrap();
    tern_relay::store::AccountStore::create_invite(
        &store,
        &tern_relay::invite_hash(&invite),
        tern_relay::now_ms(),
    )
    .unwrap();
    drop(store);

    let complete = blob(600 * 1024, 1);
    let (_, done) = upload(&a1.conn, &complete, complete.0.len()).await;
    assert!(matches!(done, response::Kind::BlobUploadStatus(s) if s.complete));
    let partial = blob(300 * 1024, 2);
    let (_, stopped) = upload(&b.conn, &partial, 100 * 1024).await;
    assert!(matches!(stopped, response::Kind::Error(_)), "{stopped:?}");

    let mut fixture = Fixture {
        dir: tempfile::tempdir().unwrap(),
        alice,
        bob,
        direct,
        group,
        old_send: (old_cmid, old_seq),
        invite,
        blob: complete,
        partial,
        before: Observed {
            syncs: vec![],
            chats: vec![],
            users: vec![],
            stock: vec![],
        },
    };
    fixture.before = observe([&a1, &a2, &b], &fixture, direct, group).await;
    fixture.dir = relay.stop().await;
    fixture
}
