//! The store's typed API: atomic transactions, crypto state, contacts, chats,
//! messages, attachments, cursors and the outbox.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::{Arc, mpsc};

use support::{chat_id, db_path, device, message, open, store_with_chats, user};
use tern_store::{
    Contact, DeliveryStatus, IdentitySlot, InsertOutcome, KeySource, MAX_DEVICE_LIST_LEN,
    NewAttachment, PrekeyKind, SearchQuery, Store, StoreError, StoredDeviceList, TransferState,
    Verification,
};
use zeroize::Zeroizing;

#[derive(Debug)]
enum AppError {
    Store(StoreError),
    Decrypt,
}

impl From<StoreError> for AppError {
    fn from(err: StoreError) -> Self {
        Self::Store(err)
    }
}

fn nothing_written(store: &Store) {
    store
        .transaction(|tx| {
            assert!(tx.active_session(&device(2, 1))?.is_none());
            assert!(tx.chat_messages(&chat_id(1), None, 10)?.is_empty());
            Ok::<_, StoreError>(())
        })
        .unwrap();
}

#[test]
fn error_in_transaction_rolls_everything_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_chats(&dir);
    let result: Result<(), AppError> = store.transaction(|tx| {
        tx.put_session(&device(2, 1), b"s1", b"advanced ratchet", true)?;
        tx.insert_message(&message(1, 1, "hello"))?;
        Err(AppError::Decrypt)
    });
    assert!(matches!(result, Err(AppError::Decrypt)));
    nothing_written(&store);
    let result: Result<(), AppError> = store.transaction(|tx| {
        tx.put_session(&device(2, 1), b"s1", b"advanced ratchet", true)?;
        tx.insert_message(&message(1, 1, &"x".repeat(1 << 20)))?;
        Ok(())
    });
    assert!(matches!(
        result,
        Err(AppError::Store(StoreError::TooLarge { .. }))
    ));
    nothing_written(&store);
}

#[test]
fn panic_in_transaction_rolls_back_and_store_stays_usable() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_chats(&dir);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        store.transaction(|tx| {
            tx.put_session(&device(2, 1), b"s1", b"state", true)?;
            tx.insert_message(&message(1, 1, "hello"))?;
            panic!("crash mid-transaction");
            #[allow(unreachable_code)]
            Ok::<_, StoreError>(())
        })
    }));
    assert!(outcome.is_err());
    nothing_written(&store);
    store
        .transaction(|tx| tx.insert_message(&message(1, 1, "after")))
        .unwrap();
}

#[test]
fn session_and_message_commit_together() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_chats(&dir);
    let id = store
        .transaction(|tx| {
            tx.put_session(&device(2, 1), b"s1", b"state", true)?;
            Ok::<_, StoreError>(tx.insert_message(&message(1, 1, "hello"))?.id())
        })
        .unwrap();
    store
        .transaction(|tx| {
            assert_eq!(
                tx.active_session(&device(2, 1))?.unwrap().state.as_slice(),
                b"state"
            );
            assert_eq!(tx.message(id)?.unwrap().message.body, "hello");
            Ok::<_, StoreError>(())
        })
        .unwrap();
}

#[test]
fn one_active_session_per_device_and_old_ones_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_chats(&dir);
    let remote = device(2, 7);
    store
        .transaction(|tx| {
            tx.put_session(&remote, b"a", b"A1", true)?;
            tx.put_session(&remote, b"b", b"B1", true)?;
            let sessions = tx.sessions(&remote)?;
            assert_eq!(sessions.len(), 2);
            assert_eq!(
                (sessions[0].session_id.as_slice(), sessions[0].active),
                (&b"b"[..], true)
            );
            assert_eq!(
                (sessions[1].session_id.as_slice(), sessions[1].active),
                (&b"a"[..], false)
            );
            tx.activate_session(&remote, b"a")?;
            assert_eq!(tx.active_session(&remote)?.unwrap().state.as_slice(), b"A1");
            assert!(matches!(
                tx.activate_session(&remote, b"zz"),
                Err(StoreError::NotFound(_))
            ));
            for n in 0..20u8 {
                tx.put_session(&remote, &[b'x', n], b"old", false)?;
            }
            let sessions = tx.sessions(&remote)?;
            assert_eq!(sessions.len(), 9, "active + 8 inactive");
            assert!(sessions[0].active);
            assert!(tx.active_session(&device(2, 8))?.is_none());
            assert_eq!(tx.delete_sessions(&remote)?, 9);
            Ok::<_, StoreError>(())
        })
        .unwrap();
}

#[test]
fn identity_prekeys_and_sender_keys_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_chats(&dir);
    store
        .transaction(|tx| {
            assert!(tx.identity(IdentitySlot::Device)?.is_none());
            tx.put_identity(IdentitySlot::Device, b"device v1")?;
            tx.put_identity(IdentitySlot::Device, b"device v2")?;
            tx.put_identity(IdentitySlot::Account, b"account")?;
            assert_eq!(
                tx.identity(IdentitySlot::Device)?.unwrap(),
                Zeroizing::new(b"device v2".to_vec())
            );
            for id in [5, 1, 3] {
                tx.put_prekey(PrekeyKind::OneTime, id, &[id as u8])?;
            }
            tx.put_prekey(PrekeyKind::Signed, 1, b"signed")?;
            assert_eq!(tx.prekey_ids(PrekeyKind::OneTime)?, vec![1, 3, 5]);
            assert!(tx.remove_prekey(PrekeyKind::OneTime, 3)?);
            assert!(!tx.remove_prekey(PrekeyKind::OneTime, 3)?);
            assert!(tx.prekey(PrekeyKind::OneTime, 3)?.is_none());
            assert_eq!(
                tx.prekey(PrekeyKind::Signed, 1)?.unwrap().as_slice(),
                b"signed"
            );
            tx.put_sender_key(&chat_id(1), &device(2, 1), b"chain")?;
            tx.put_sender_key(&chat_id(1), &device(3, 1), b"chain 3")?;
            assert_eq!(
                tx.sender_key(&chat_id(1), &device(2, 1))?
                    .unwrap()
                    .as_slice(),
                b"chain"
            );
            assert!(tx.sender_key(&chat_id(2), &device(2, 1))?.is_none());
            assert_eq!(tx.delete_sender_keys(&chat_id(1))?, 2);
            let too_big = vec![0; 256 * 1024 + 1];
            assert!(matches!(
                tx.put_identity(IdentitySlot::Device, &too_big),
                Err(StoreError::TooLarge { .. })
            ));
            Ok::<_, StoreError>(())
        })
        .unwrap();
}

#[test]
fn contacts_chats_and_members() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_chats(&dir);
    store
        .transaction(|tx| {
            let mut bob = Contact {
                user_id: user(2),
                display_name: "Bob".into(),
                identity_key: Some(vec![1; 32]),
                verification: Verification::Default,
            };
            tx.upsert_contact(&bob)?;
            tx.set_verification(&user(2), Verification::Verified)?;
            bob.verification = Verification::Verified;
            assert_eq!(tx.contact(&user(2))?, Some(bob));
            assert!(matches!(
                tx.set_verification(&user(9), Verification::Verified),
                Err(StoreError::NotFound(_))
            ));
            assert_eq!(tx.chats()?.len(), 2);
            assert_eq!(tx.chat(&chat_id(2))?.unwrap().title, "chat 2");
            tx.set_chat_members(&chat_id(1), &[user(3), user(2), user(3)])?;
            assert_eq!(tx.chat_members(&chat_id(1))?, vec![user(2), user(3)]);
            tx.set_chat_members(&chat_id(1), &[user(4)])?;
            assert_eq!(tx.chat_members(&chat_id(1))?, vec![user(4)]);
            Ok::<_, StoreError>(())
        })
        .unwrap();
}

#[test]
fn messages_deduplicate_and_page_in_relay_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_chats(&dir);
    store
        .transaction(|tx| {
            for n in [3, 1, 2] {
                tx.insert_message(&message(1, n, &format!("m{n}")))?;
            }
            let mut pending = message(1, 9, "pending");
            pending.relay_seq = None;
            let first = tx.insert_message(&pending)?;
            assert!(matches!(first, InsertOutcome::Inserted(_)));
            assert_eq!(
                tx.insert_message(&pending)?,
                InsertOutcome::Duplicate(first.id())
            );
            let bodies = |page: Vec<tern_store::StoredMessage>| {
                page.into_iter().map(|m| m.message.body).collect::<Vec<_>>()
            };
            assert_eq!(
                bodies(tx.chat_messages(&chat_id(1), None, 10)?),
                ["m1", "m2", "m3", "pending"]
            );
            assert_eq!(
                bodies(tx.chat_messages(&chat_id(1), None, 2)?),
                ["m3", "pending"]
            );
            assert_eq!(
                bodies(tx.chat_messages(&chat_id(1), Some(3), 10)?),
                ["m1", "m2"]
            );
            // The relay echo of the pending message fills in its seq.
            pending.relay_seq = Some(10);
            assert_eq!(
                tx.insert_message(&pending)?,
                InsertOutcome::Duplicate(first.id())
            );
            assert_eq!(tx.message(first.id())?.unwrap().message.relay_seq, Some(10));
            let found = tx.find_message(&chat_id(1), &user(1), &pending.client_message_id)?;
            assert_eq!(found.unwrap().id, first.id());
            assert!(tx.delete_message(first.id())?);
            assert!(tx.message(first.id())?.is_none());
            let huge = message(1, 20, &"x".repeat(64 * 1024 + 1));
            assert!(matches!(
                tx.insert_message(&huge),
                Err(StoreError::TooLarge { .. })
            ));
            let orphan = message(7, 1, "no such chat");
            assert!(tx.insert_message(&orphan).is_err());
            Ok::<_, StoreError>(())
        })
        .unwrap();
}

#[test]
fn delivery_status_only_moves_forward() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_chats(&dir);
    store
        .transaction(|tx| {
            let mut outgoing = message(1, 1, "hi");
            outgoing.relay_seq = None;
            let id = tx.insert_message(&outgoing)?.id();
            for recipient in [user(2), user(3)] {
                tx.set_delivery_status(id, &recipient, DeliveryStatus::Pending)?;
            }
            tx.mark_sent(id, 41)?;
            tx.set_delivery_status(id, &user(2), DeliveryStatus::Read)?;
            tx.set_delivery_status(id, &user(2), DeliveryStatus::Delivered)?;
            assert_eq!(
                tx.delivery_statuses(id)?,
                vec![
                    (user(2), DeliveryStatus::Read),
                    (user(3), DeliveryStatus::Sent)
                ]
            );
            assert_eq!(tx.message(id)?.unwrap().message.relay_seq, Some(41));
            Ok::<_, StoreError>(())
        })
        .unwrap();
}

#[test]
fn attachments_record_transfer_progress() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_chats(&dir);
    store
        .transaction(|tx| {
            let message_id = tx.insert_message(&message(1, 1, "photo"))?.id();
            let new = NewAttachment {
                message_id,
                content_type: "image/png".into(),
                file_name: "cat.png".into(),
                size: 5 * 1024 * 1024,
                key: Zeroizing::new(vec![9; 32]),
                digest: vec![8; 32],
                blob_id: None,
                local_path: Some("/tmp/cat.png".into()),
                state: TransferState::Uploading,
            };
            let id = tx.insert_attachment(&new)?;
            tx.update_attachment_transfer(id, TransferState::Uploading, 1 << 20, None, None)?;
            tx.update_attachment_transfer(
                id,
                TransferState::Uploaded,
                5 << 20,
                Some([1; 32]),
                None,
            )?;
            let stored = tx.attachments(message_id)?;
            assert_eq!(stored.len(), 1);
            assert_eq!(stored[0].transferred, 5 << 20);
            assert_eq!(stored[0].attachment.state, TransferState::Uploaded);
            assert_eq!(stored[0].attachment.blob_id, Some([1; 32]));
            assert_eq!(
                stored[0].attachment.local_path.as_deref(),
                Some("/tmp/cat.png")
            );
            assert_eq!(stored[0].attachment.key.as_slice(), &[9; 32]);
            assert!(
                !format!("{stored:?}").contains("9, 9, 9"),
                "key not in Debug output"
            );
            tx.delete_message(message_id)?;
            assert!(tx.attachments(message_id)?.is_empty());
            Ok::<_, StoreError>(())
        })
        .unwrap();
}

#[test]
fn cursors_never_move_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_chats(&dir);
    store
        .transaction(|tx| {
            tx.advance_delivered(&chat_id(1), 10)?;
            tx.advance_delivered(&chat_id(1), 4)?;
            tx.advance_read(&chat_id(1), 7)?;
            tx.advance_read(&chat_id(1), 2)?;
            tx.advance_read(&chat_id(2), 3)?;
            let cursor = tx.cursor(&chat_id(1))?.unwrap();
            assert_eq!((cursor.delivered_seq, cursor.read_seq), (10, 7));
            assert_eq!(tx.cursors()?.len(), 2);
            assert!(matches!(
                tx.advance_delivered(&chat_id(1), u64::MAX),
                Err(StoreError::OutOfRange(_))
            ));
            Ok::<_, StoreError>(())
        })
        .unwrap();
}

#[test]
fn device_list_version_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let list = |version: u64| StoredDeviceList {
        user_id: user(2),
        user_name: "bob".into(),
        account_key: vec![5; 32],
        version,
        device_list: vec![version as u8; 40],
        signature: vec![6; 64],
    };
    {
        let store = store_with_chats(&dir);
        store
            .transaction(|tx| tx.put_device_list(&list(7)))
            .unwrap();
    }
    let store = open(&db_path(&dir), KeySource::raw([7; 32]));
    store
        .transaction(|tx| {
            assert_eq!(tx.device_list(&user(2))?, Some(list(7)));
            assert_eq!(tx.device_list(&user(3))?, None);
            tx.put_device_list(&list(8))?;
            assert_eq!(tx.device_list(&user(2))?.map(|l| l.version), Some(8));
            let mut huge = list(9);
            huge.device_list = vec![0; MAX_DEVICE_LIST_LEN + 1];
            assert!(matches!(
                tx.put_device_list(&huge),
                Err(StoreError::TooLarge { .. })
            ));
            Ok::<_, StoreError>(())
        })
        .unwrap();
}

#[test]
fn outbox_is_idempotent_and_schedules_retries() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_chats(&dir);
    store
        .transaction(|tx| {
            let a = tx.enqueue_outbox(&chat_id(1), &[1; 16], b"req a", 100)?;
            let b = tx.enqueue_outbox(&chat_id(1), &[2; 16], b"req b", 200)?;
            assert_eq!(
                tx.enqueue_outbox(&chat_id(1), &[1; 16], b"req a again", 300)?,
                a
            );
            assert_eq!(tx.outbox_len()?, 2);
            assert_eq!(
                tx.due_outbox(150, 10)?
                    .iter()
                    .map(|e| e.id)
                    .collect::<Vec<_>>(),
                [a]
            );
            let other = tx.enqueue_outbox(&chat_id(2), &[3; 16], b"req c", 250)?;
            tx.reschedule_outbox(a, 1_000)?;
            // B waits behind A in its chat; the other chat goes on.
            let due = tx.due_outbox(500, 10)?;
            assert_eq!(due.iter().map(|e| e.id).collect::<Vec<_>>(), [other]);
            let later = tx.due_outbox(1_000, 10)?;
            assert_eq!(later.iter().map(|e| e.id).collect::<Vec<_>>(), [other, a]);
            assert_eq!(later[1].attempts, 1);
            assert_eq!(later[1].payload, b"req a");
            assert!(tx.remove_outbox(&[1; 16])?);
            let next = tx.due_outbox(1_000, 10)?;
            assert_eq!(next.iter().map(|e| e.id).collect::<Vec<_>>(), [b, other]);
            assert!(!tx.remove_outbox(&[1; 16])?);
            assert!(matches!(
                tx.reschedule_outbox(a, 0),
                Err(StoreError::NotFound(_))
            ));
            Ok::<_, StoreError>(())
        })
        .unwrap();
}

#[test]
fn store_is_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(store_with_chats(&dir));
    let writers: Vec<_> = (0..4u32)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for n in 0..25 {
                    store
                        .transaction(|tx| tx.insert_message(&message(1, t * 100 + n, "x")))
                        .unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let count = store
        .transaction(|tx| tx.chat_messages(&chat_id(1), None, 1000))
        .unwrap()
        .len();
    assert_eq!(count, 100);
}

#[test]
fn reads_see_committed_snapshots_while_a_write_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(store_with_chats(&dir));
    let (opened, wait_opened) = mpsc::channel();
    let (release, wait_release) = mpsc::channel::<()>();
    let writer = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || {
            store
                .transaction(|tx| {
                    tx.insert_message(&message(1, 1, "inflight words"))?;
                    opened.send(()).unwrap();
                    wait_release.recv().unwrap();
                    Ok::<_, StoreError>(())
                })
                .unwrap()
        })
    };
    wait_opened.recv().unwrap();
    // The writer holds its transaction open: reads proceed and see only
    // committed data.
    assert!(
        store
            .search(&SearchQuery::new("inflight"))
            .unwrap()
            .is_empty()
    );
    let page = store
        .read(|tx| tx.chat_messages(&chat_id(1), None, 10))
        .unwrap();
    assert!(page.is_empty());
    release.send(()).unwrap();
    writer.join().unwrap();
    assert_eq!(
        store.search(&SearchQuery::new("inflight")).unwrap().len(),
        1
    );
}

#[test]
fn read_transactions_reject_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_chats(&dir);
    let err = store
        .read(|tx| tx.upsert_chat(&support::chat(3)))
        .unwrap_err();
    assert!(matches!(err, StoreError::Database(_)), "{err:?}");
    assert!(
        store
            .transaction(|tx| tx.chat(&chat_id(3)))
            .unwrap()
            .is_none()
    );
}
