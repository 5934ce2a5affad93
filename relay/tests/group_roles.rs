//! Group roles: the creator is an admin; only admins add, remove others and
//! promote; any member may leave; a group whose last admin leaves gets one;
//! every promotion is a log entry.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tern_protocol::wire::*;
use tern_testkit::raw::*;
use tern_testkit::{Account, TestRelay, random};

fn change(
    chat: [u8; 16],
    add: &[[u8; 16]],
    remove: &[[u8; 16]],
    promote: &[[u8; 16]],
) -> request::Kind {
    let ids = |list: &[[u8; 16]]| list.iter().map(|u| u.to_vec().into()).collect();
    request::Kind::ChangeMembers(ChangeMembers {
        chat_id: chat.to_vec().into(),
        add: ids(add),
        remove: ids(remove),
        promote: ids(promote),
    })
}

fn info(kind: response::Kind) -> ChatInfo {
    match kind {
        response::Kind::ChatInfo(info) => info,
        other => panic!("expected ChatInfo, got {other:?}"),
    }
}

fn ids(list: &[bytes::Bytes]) -> Vec<[u8; 16]> {
    list.iter()
        .map(|b| <[u8; 16]>::try_from(&b[..]).unwrap())
        .collect()
}

/// The membership entries of `chat` as `client` syncs them: (added,
/// removed, promoted).
async fn membership_log(
    client: &RawClient,
    chat: [u8; 16],
) -> Vec<(Vec<[u8; 16]>, Vec<[u8; 16]>, Vec<[u8; 16]>)> {
    batch(client.ok(sync_req(&[(chat, 0)])).await)
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::Membership as i32)
        .map(|e| (ids(&e.added), ids(&e.removed), ids(&e.promoted)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_change_a_group_and_any_member_may_leave() {
    let relay = TestRelay::start().await;
    let at = &relay.address();
    let (alice, a, bob, b) = pair(&relay).await;
    let (carol, dave) = (Account::new("carol", 1), Account::new("dave", 1));
    let c = RawClient::register(at, &carol).await.unwrap();
    drop(RawClient::register(at, &dave).await.unwrap());
    let chat = random();
    let created = info(
        a.ok(create_chat(
            chat,
            ChatKind::Group,
            &[bob.user_id, carol.user_id],
        ))
        .await,
    );
    assert_eq!(
        ids(&created.admins),
        [alice.user_id],
        "the creator is the admin"
    );

    // Bob is a member, not an admin: he can neither remove, add nor promote.
    for refused in [
        change(chat, &[], &[carol.user_id], &[]),
        change(chat, &[], &[alice.user_id], &[]),
        change(chat, &[dave.user_id], &[], &[]),
        change(chat, &[], &[], &[bob.user_id]),
        change(chat, &[], &[bob.user_id, carol.user_id], &[]),
    ] {
        let e = b.request(refused).await.unwrap_err();
        assert_eq!(code(&e), ErrorCode::Forbidden, "{}", e.message);
    }
    // Promoting someone who is not a member is malformed.
    let e = a
        .request(change(chat, &[], &[], &[dave.user_id]))
        .await
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::BadRequest);

    // The admin promotes Bob; now Bob removes Carol and adds Dave.
    let promoted = info(a.ok(change(chat, &[], &[], &[bob.user_id])).await);
    let mut admins = vec![alice.user_id, bob.user_id];
    admins.sort_unstable();
    assert_eq!(ids(&promoted.admins), admins);
    b.ok(change(chat, &[dave.user_id], &[carol.user_id], &[]))
        .await;
    // Carol is out; Dave may leave on his own.
    let e = c
        .request(change(chat, &[], &[carol.user_id], &[]))
        .await
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::Forbidden);
    let d = RawClient::login(at, &dave, 1).await.unwrap();
    d.ok(change(chat, &[], &[dave.user_id], &[])).await;

    assert_eq!(
        membership_log(&a, chat).await,
        [
            (
                vec![alice.user_id, bob.user_id, carol.user_id],
                vec![],
                vec![alice.user_id]
            ),
            (vec![], vec![], vec![bob.user_id]),
            (vec![dave.user_id], vec![carol.user_id], vec![]),
            (vec![], vec![dave.user_id], vec![]),
        ],
        "every change and promotion is in the log, in order"
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_last_admin_leaves_the_longest_standing_member_takes_over() {
    let relay = TestRelay::start().await;
    let at = &relay.address();
    let (alice, a, bob, b) = pair(&relay).await;
    let (carol, dave) = (Account::new("carol", 1), Account::new("dave", 1));
    drop(RawClient::register(at, &carol).await.unwrap());
    drop(RawClient::register(at, &dave).await.unwrap());
    let chat = random();
    a.ok(create_chat(
        chat,
        ChatKind::Group,
        &[bob.user_id, carol.user_id],
    ))
    .await;
    a.ok(change(chat, &[dave.user_id], &[], &[])).await;
    let left = info(a.ok(change(chat, &[], &[alice.user_id], &[])).await);
    // Bob and Carol joined first (seq 1), before Dave; ties go to the lower id.
    let heir = bob.user_id.min(carol.user_id);
    assert_eq!(ids(&left.admins), [heir]);
    let log = membership_log(&b, chat).await;
    assert_eq!(
        log.last().unwrap(),
        &(vec![], vec![alice.user_id], vec![heir])
    );

    let direct = direct_chat(&b, &dave).await;
    let listed = info(
        b.ok(request::Kind::GetChat(GetChat {
            chat_id: direct.to_vec().into(),
        }))
        .await,
    );
    assert!(listed.admins.is_empty(), "direct chats have no admins");
    relay.stop().await;
}
