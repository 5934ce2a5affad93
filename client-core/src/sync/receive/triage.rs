//! What a chat log entry is, and what a batch acknowledges, decided from the
//! delivery and local facts only (sans-IO).

use bytes::Bytes;
use tern_protocol::wire::{Delivery, EntryKind};

use crate::model::{ChatId, ClientError, UserId};
use tern_crypto::session::DeviceAddress;

/// The parsed ids of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EntryIds {
    pub chat_id: ChatId,
    pub sender: DeviceAddress,
}

impl EntryIds {
    /// The entry's chat and sending device; `None` when an id is malformed
    /// (such an entry is neither processed nor acknowledged).
    pub(super) fn parse(delivery: &Delivery) -> Option<Self> {
        let chat_id = ChatId::try_from(delivery.chat_id.as_ref()).ok()?;
        let user = UserId::try_from(delivery.sender_user_id.as_ref()).ok()?;
        Some(Self {
            chat_id,
            sender: DeviceAddress {
                user,
                device: delivery.sender_device_id,
            },
        })
    }
}

/// What to do with an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Triage {
    /// At or below the chat's delivered cursor: acknowledge it again only.
    AlreadyProcessed,
    /// Members joined or left the chat.
    Membership {
        /// Accounts added.
        added: Vec<UserId>,
        /// Accounts removed.
        removed: Vec<UserId>,
        /// Accounts made admins.
        promoted: Vec<UserId>,
    },
    /// This device's own message: move the cursor past it.
    OwnDevice,
    /// Nothing in it is addressed to this device: move the cursor past it.
    NothingForUs,
    /// Decrypt it, store what it carries and move the cursor past it.
    Decrypt,
}

/// Decides what `delivery` (whose ids are `ids`) is for the device `own`,
/// whose delivered cursor in the chat stands at `delivered_seq`.
pub(crate) fn triage(
    delivery: &Delivery,
    ids: &EntryIds,
    own: DeviceAddress,
    delivered_seq: Option<u64>,
) -> Triage {
    if delivered_seq.is_some_and(|done| done >= delivery.seq) {
        return Triage::AlreadyProcessed;
    }
    if delivery.kind == EntryKind::Membership as i32 {
        return Triage::Membership {
            added: user_ids(&delivery.added),
            removed: user_ids(&delivery.removed),
            promoted: user_ids(&delivery.promoted),
        };
    }
    if ids.sender == own {
        return Triage::OwnDevice;
    }
    if delivery.ciphertext.is_empty() && delivery.common_ciphertext.is_empty() {
        return Triage::NothingForUs;
    }
    Triage::Decrypt
}

/// The well-formed account ids of a list (others are ignored).
fn user_ids(list: &[Bytes]) -> Vec<UserId> {
    list.iter()
        .filter_map(|m| UserId::try_from(m.as_ref()).ok())
        .collect()
}

/// Whether failing to process an entry with `error` ends the batch
/// unacknowledged (the connection or the store failed: the entry comes again)
/// rather than skipping the entry (retrying cannot fix it).
pub(crate) fn ends_batch(error: &ClientError) -> bool {
    matches!(
        error,
        ClientError::Offline(_) | ClientError::Store(_) | ClientError::Closed
    )
}

/// What to acknowledge after a batch: for every chat with a processed entry,
/// the highest processed seq (chats in the order they first appear).
pub(crate) fn ack_cursors(
    processed: impl IntoIterator<Item = (ChatId, u64)>,
) -> Vec<(ChatId, u64)> {
    let mut highest: Vec<(ChatId, u64)> = Vec::new();
    for (chat, seq) in processed {
        match highest.iter_mut().find(|(c, _)| *c == chat) {
            Some(entry) => entry.1 = entry.1.max(seq),
            None => highest.push((chat, seq)),
        }
    }
    highest
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const CHAT: ChatId = [7; 16];
    const OWN: DeviceAddress = DeviceAddress {
        user: [1; 16],
        device: 1,
    };

    fn entry(sender: DeviceAddress, seq: u64) -> Delivery {
        Delivery {
            chat_id: Bytes::copy_from_slice(&CHAT),
            seq,
            kind: EntryKind::Message as i32,
            sender_user_id: Bytes::copy_from_slice(&sender.user),
            sender_device_id: sender.device,
            ciphertext: Bytes::from_static(b"for us"),
            ..Delivery::default()
        }
    }

    fn decide(delivery: &Delivery, delivered: Option<u64>) -> Triage {
        let ids = EntryIds::parse(delivery).unwrap();
        triage(delivery, &ids, OWN, delivered)
    }

    const BOB: DeviceAddress = DeviceAddress {
        user: [2; 16],
        device: 3,
    };

    #[test]
    fn malformed_ids_are_not_parsed() {
        let mut bad_chat = entry(BOB, 1);
        bad_chat.chat_id = Bytes::from_static(b"short");
        assert_eq!(EntryIds::parse(&bad_chat), None);
        let mut bad_sender = entry(BOB, 1);
        bad_sender.sender_user_id = Bytes::new();
        assert_eq!(EntryIds::parse(&bad_sender), None);
        assert_eq!(
            EntryIds::parse(&entry(BOB, 1)),
            Some(EntryIds {
                chat_id: CHAT,
                sender: BOB
            })
        );
    }

    #[test]
    fn entries_at_or_below_the_cursor_were_processed() {
        assert_eq!(decide(&entry(BOB, 5), Some(5)), Triage::AlreadyProcessed);
        assert_eq!(decide(&entry(BOB, 4), Some(5)), Triage::AlreadyProcessed);
        assert_eq!(decide(&entry(BOB, 6), Some(5)), Triage::Decrypt);
        assert_eq!(decide(&entry(BOB, 1), None), Triage::Decrypt);
    }

    #[test]
    fn membership_own_device_and_empty_entries_are_not_decrypted() {
        let mut membership = entry(BOB, 2);
        membership.kind = EntryKind::Membership as i32;
        membership.added = vec![Bytes::from_static(&[4; 16]), Bytes::from_static(b"bad")];
        membership.removed = vec![Bytes::from_static(&[5; 16])];
        assert_eq!(
            decide(&membership, Some(1)),
            Triage::Membership {
                added: vec![[4; 16]],
                removed: vec![[5; 16]],
                promoted: vec![]
            }
        );
        assert_eq!(decide(&entry(OWN, 2), None), Triage::OwnDevice);
        let other_own_device = DeviceAddress { device: 2, ..OWN };
        assert_eq!(decide(&entry(other_own_device, 2), None), Triage::Decrypt);
        let mut empty = entry(BOB, 2);
        empty.ciphertext = Bytes::new();
        assert_eq!(decide(&empty, None), Triage::NothingForUs);
        empty.common_ciphertext = Bytes::from_static(b"group");
        assert_eq!(decide(&empty, None), Triage::Decrypt);
    }

    #[test]
    fn only_connection_and_store_failures_end_a_batch() {
        assert!(ends_batch(&ClientError::Offline("x".into())));
        assert!(ends_batch(&ClientError::Store("disk full".into())));
        assert!(ends_batch(&ClientError::Closed));
        assert!(!ends_batch(&ClientError::Verification("bad list".into())));
        assert!(!ends_batch(&ClientError::UnknownUser("x".into())));
        assert!(!ends_batch(&ClientError::StoreCorrupt("x".into())));
    }

    #[test]
    fn a_batch_acknowledges_the_highest_seq_per_chat() {
        let other: ChatId = [8; 16];
        let cursors = ack_cursors([(CHAT, 3), (other, 9), (CHAT, 5), (CHAT, 4), (other, 2)]);
        assert_eq!(cursors, [(CHAT, 5), (other, 9)]);
        assert!(ack_cursors([]).is_empty());
    }
}
