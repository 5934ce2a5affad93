//! The log writer's bookkeeping against a real database file: seqs kept in
//! memory, idempotency through the unique index, the queue quota's upper
//! bound.

use bytes::Bytes;
use tern_protocol::wire::{ChatKind, DeviceCiphertext, SignedDeviceList};
use tern_protocol::{ChatId, ClientMessageId, UserId};

use super::SqliteStore;
use crate::config::Synchronous;
use crate::error::{RelayError, StoreError};
use crate::store::{
    Appended, DeviceAddr, DeviceListUpdate, LogAppend, MembershipAppend, MessageAppend, NewAccount,
    Store,
};

const CHAT: ChatId = ChatId([7; 16]);

fn open(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(&dir.path().join("relay.db"), Synchronous::Full).unwrap()
}

/// A store with accounts 1, 2, 3 (one device each) in a group chat.
fn group(dir: &tempfile::TempDir) -> SqliteStore {
    let store = open(dir);
    for u in 1..=3 {
        let user_id = UserId([u; 16]);
        store
            .create_account(&NewAccount {
                user_name: format!("user{u}"),
                account_key: [u; 32],
                list: DeviceListUpdate {
                    user_id,
                    signed: SignedDeviceList::default(),
                    version: 1,
                    devices: vec![(1, [u; 32])],
                },
                device_id: 1,
                invite_hash: None,
            })
            .unwrap();
    }
    let create = membership(
        DeviceAddr::test(1, 1),
        Some(ChatKind::Group),
        &[1, 2, 3],
        &[],
    );
    append(&store, vec![create]).remove(0).unwrap();
    store
}

fn membership(actor: DeviceAddr, create: Option<ChatKind>, add: &[u8], remove: &[u8]) -> LogAppend {
    let ids = |us: &[u8]| us.iter().map(|u| UserId([*u; 16])).collect();
    LogAppend::Membership(MembershipAppend {
        chat_id: CHAT,
        actor,
        create,
        added: ids(add),
        removed: ids(remove),
    })
}

fn message(sender: DeviceAddr, id: u8, to: &[u8], len: usize) -> LogAppend {
    LogAppend::Message(MessageAppend {
        chat_id: CHAT,
        sender,
        client_message_id: ClientMessageId([id; 16]),
        device_ciphertexts: to
            .iter()
            .map(|u| DeviceCiphertext {
                user_id: Bytes::copy_from_slice(&[*u; 16]),
                device_id: 1,
                ciphertext: Bytes::from(vec![id; len]),
            })
            .collect(),
        common_ciphertext: Bytes::new(),
    })
}

fn append(store: &SqliteStore, items: Vec<LogAppend>) -> Vec<Result<Appended, StoreError>> {
    store.append_batch(&items, 1_000).unwrap()
}

fn seq(result: &Result<Appended, StoreError>) -> (u64, bool) {
    let a = result.as_ref().unwrap();
    (a.seq, a.duplicate)
}

#[test]
fn a_resend_in_the_same_batch_gets_the_original_and_leaves_no_gap() {
    let dir = tempfile::tempdir().unwrap();
    let store = group(&dir);
    let got = append(
        &store,
        vec![
            message(DeviceAddr::test(1, 1), 1, &[2, 3], 10),
            message(DeviceAddr::test(1, 1), 1, &[2, 3], 10),
            message(DeviceAddr::test(1, 1), 2, &[2, 3], 10),
        ],
    );
    assert_eq!(seq(&got[0]), (2, false));
    assert_eq!(seq(&got[1]), (2, true));
    assert_eq!(seq(&got[2]), (3, false));
}

#[test]
fn seqs_continue_after_reopening_the_database() {
    let dir = tempfile::tempdir().unwrap();
    drop({
        let store = group(&dir);
        append(
            &store,
            vec![message(DeviceAddr::test(1, 1), 1, &[2, 3], 10)],
        );
        store
    });
    let store = open(&dir);
    let got = append(
        &store,
        vec![message(DeviceAddr::test(2, 1), 9, &[1, 3], 10)],
    );
    assert_eq!(seq(&got[0]), (3, false));
    assert_eq!(store.chat(&CHAT).unwrap().unwrap().last_seq, 3);
}

#[test]
fn a_resend_after_the_sender_left_still_gets_its_original() {
    let dir = tempfile::tempdir().unwrap();
    let store = group(&dir);
    let first = append(
        &store,
        vec![message(DeviceAddr::test(1, 1), 1, &[2, 3], 10)],
    );
    append(
        &store,
        vec![membership(DeviceAddr::test(2, 1), None, &[], &[1])],
    )
    .remove(0)
    .unwrap();
    let again = append(
        &store,
        vec![message(DeviceAddr::test(1, 1), 1, &[2, 3], 10)],
    );
    assert_eq!(seq(&again[0]), (seq(&first[0]).0, true));
    let fresh = append(
        &store,
        vec![message(DeviceAddr::test(1, 1), 2, &[2, 3], 10)],
    );
    assert!(matches!(
        &fresh[0],
        Err(StoreError::Rejected(e)) if matches!(**e, RelayError::Forbidden(_))
    ));
}

#[test]
fn the_queue_quota_is_recomputed_after_acknowledgements() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = group(&dir);
    store.set_device_queue_quota(100);
    let full = append(
        &store,
        vec![message(DeviceAddr::test(1, 1), 1, &[2, 3], 60)],
    );
    assert_eq!(seq(&full[0]), (2, false));
    let refused = append(
        &store,
        vec![message(DeviceAddr::test(1, 1), 2, &[2, 3], 60)],
    );
    assert!(matches!(
        &refused[0],
        Err(StoreError::Rejected(e)) if matches!(**e, RelayError::QuotaExceeded(_))
    ));
    store
        .ack_cursors(DeviceAddr::test(2, 1), &[(CHAT, 2)])
        .unwrap();
    store
        .ack_cursors(DeviceAddr::test(3, 1), &[(CHAT, 2)])
        .unwrap();
    let fits = append(
        &store,
        vec![message(DeviceAddr::test(1, 1), 3, &[2, 3], 60)],
    );
    assert_eq!(seq(&fits[0]), (3, false));
}
