//! Read cursors with unread counts, and uploads in progress.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{chat_id, message, store_with_chats, user};
use tern_store::{MAX_PENDING_UPLOADS, PendingUpload, StoreError};
use zeroize::Zeroizing;

#[test]
fn unread_counts_messages_from_others_above_the_read_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_chats(&dir);
    store
        .transaction(|tx| {
            for n in 1..=4 {
                tx.insert_message(&message(1, n, "from user 1"))?;
            }
            let mut own = message(1, 5, "mine");
            own.sender.user_id = user(9);
            tx.insert_message(&own)?;
            assert_eq!(tx.newest_seq(&chat_id(1))?, 5);
            assert_eq!(tx.newest_seq(&chat_id(2))?, 0);
            assert_eq!(tx.count_unread(&chat_id(1), &user(9), 0)?, 4);
            assert_eq!(tx.count_unread(&chat_id(1), &user(9), 3)?, 1);
            assert_eq!(tx.count_unread(&chat_id(1), &user(1), 0)?, 1);
            assert_eq!(tx.count_unread(&chat_id(2), &user(9), 0)?, 0);
            Ok::<_, StoreError>(())
        })
        .unwrap();
}

fn upload(n: usize) -> PendingUpload {
    PendingUpload {
        chat_id: chat_id(1),
        path: format!("/files/{n}.bin"),
        size: 1000 + n as u64,
        key: Zeroizing::new(vec![0x5a; 32]),
        digest: [n as u8; 32],
    }
}

#[test]
fn pending_uploads_round_trip_replace_and_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_chats(&dir);
    store
        .transaction(|tx| {
            tx.put_pending_upload(&upload(1))?;
            let stored = tx.pending_upload(&chat_id(1), "/files/1.bin")?.unwrap();
            assert_eq!((stored.size, stored.digest), (1001, [1; 32]));
            assert_eq!(stored.key.as_slice(), &[0x5a; 32]);
            assert!(tx.pending_upload(&chat_id(2), "/files/1.bin")?.is_none());
            assert!(!format!("{stored:?}").contains("90, 90"), "no key in Debug");
            let mut replaced = upload(1);
            replaced.digest = [7; 32];
            tx.put_pending_upload(&replaced)?;
            let stored = tx.pending_upload(&chat_id(1), "/files/1.bin")?.unwrap();
            assert_eq!(stored.digest, [7; 32]);
            let mut short_key = upload(2);
            short_key.key = Zeroizing::new(vec![0; 16]);
            assert!(tx.put_pending_upload(&short_key).is_err());
            for n in 2..=MAX_PENDING_UPLOADS {
                tx.put_pending_upload(&upload(n))?;
            }
            assert!(matches!(
                tx.put_pending_upload(&upload(MAX_PENDING_UPLOADS + 1)),
                Err(StoreError::TooLarge { .. })
            ));
            assert!(tx.delete_pending_upload(&chat_id(1), "/files/1.bin")?);
            assert!(!tx.delete_pending_upload(&chat_id(1), "/files/1.bin")?);
            tx.put_pending_upload(&upload(MAX_PENDING_UPLOADS + 1))?;
            Ok::<_, StoreError>(())
        })
        .unwrap();
}
