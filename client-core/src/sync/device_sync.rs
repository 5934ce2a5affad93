//! Own-device sync: what an existing device hands a newly linked device —
//! contacts (with verification state), chats with members, and recent
//! history — as an end-to-end encrypted content message in the account's
//! note-to-self chat, whose only member is the account itself.

use prost::Message;

use crate::model::{ChatId, ClientError, UserId};
use crate::store::{self, Chat, ChatKind, Contact, NewMessage, StoreError, Tx, Verification};

/// Budget for one sync payload (the ciphertext limit is 64 KiB).
pub(crate) const MAX_SYNC_LEN: usize = 40 * 1024;
/// Most recent messages offered per chat.
const RECENT_PER_CHAT: u32 = 50;
pub(crate) use tern_crypto::chat_id::self_chat_id;

/// The sync payload (content kind 9).
#[derive(Clone, PartialEq, Eq, Message)]
pub struct DeviceSync {
    /// Contacts.
    #[prost(message, repeated, tag = "1")]
    pub contacts: Vec<SyncContact>,
    /// Chats.
    #[prost(message, repeated, tag = "2")]
    pub chats: Vec<SyncChat>,
    /// Recent messages, oldest first per chat.
    #[prost(message, repeated, tag = "3")]
    pub messages: Vec<SyncMessage>,
}

/// A contact.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct SyncContact {
    /// Account id (16 bytes).
    #[prost(bytes = "vec", tag = "1")]
    pub user_id: Vec<u8>,
    /// Display name.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Pinned account key (32 bytes).
    #[prost(bytes = "vec", tag = "3")]
    pub account_key: Vec<u8>,
    /// 0 default, 1 verified, 2 unverified.
    #[prost(uint32, tag = "4")]
    pub verification: u32,
}

/// A chat.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct SyncChat {
    /// Chat id (16 bytes).
    #[prost(bytes = "vec", tag = "1")]
    pub chat_id: Vec<u8>,
    /// 1 direct, 2 group.
    #[prost(uint32, tag = "2")]
    pub kind: u32,
    /// Title.
    #[prost(string, tag = "3")]
    pub title: String,
    /// Members (16 bytes each).
    #[prost(bytes = "vec", repeated, tag = "4")]
    pub members: Vec<Vec<u8>>,
    /// Members who are group admins (16 bytes each).
    #[prost(bytes = "vec", repeated, tag = "5")]
    pub admins: Vec<Vec<u8>>,
}

/// A message of the history.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct SyncMessage {
    /// Chat id.
    #[prost(bytes = "vec", tag = "1")]
    pub chat_id: Vec<u8>,
    /// Relay seq.
    #[prost(uint64, tag = "2")]
    pub seq: u64,
    /// Client message id (16 bytes).
    #[prost(bytes = "vec", tag = "3")]
    pub client_message_id: Vec<u8>,
    /// Sender account.
    #[prost(bytes = "vec", tag = "4")]
    pub sender_user_id: Vec<u8>,
    /// Sender device.
    #[prost(uint32, tag = "5")]
    pub sender_device_id: u32,
    /// Send time, ms.
    #[prost(int64, tag = "6")]
    pub sent_at_ms: i64,
    /// Text.
    #[prost(string, tag = "7")]
    pub body: String,
}

fn id16(bytes: &[u8]) -> Option<[u8; 16]> {
    bytes.try_into().ok()
}

/// Collects what this device knows, within [`MAX_SYNC_LEN`]: contacts and
/// chats first, then the most recent messages of each chat while they fit.
pub(crate) fn collect(tx: &Tx<'_>, self_chat: &ChatId) -> Result<DeviceSync, StoreError> {
    let mut sync = DeviceSync::default();
    for contact in tx.contacts()? {
        sync.contacts.push(SyncContact {
            user_id: contact.user_id.to_vec(),
            name: contact.display_name,
            account_key: contact.identity_key.unwrap_or_default(),
            verification: match contact.verification {
                Verification::Default => 0,
                Verification::Verified => 1,
                Verification::Unverified => 2,
            },
        });
    }
    let chats: Vec<Chat> = tx
        .chats()?
        .into_iter()
        .filter(|c| &c.chat_id != self_chat)
        .collect();
    for chat in &chats {
        sync.chats.push(SyncChat {
            chat_id: chat.chat_id.to_vec(),
            kind: match chat.kind {
                ChatKind::Direct => 1,
                ChatKind::Group => 2,
            },
            title: chat.title.clone(),
            members: tx
                .chat_members(&chat.chat_id)?
                .iter()
                .map(|m| m.to_vec())
                .collect(),
            admins: tx
                .chat_admins(&chat.chat_id)?
                .iter()
                .map(|m| m.to_vec())
                .collect(),
        });
    }
    'chats: for chat in &chats {
        for stored in tx.chat_messages(&chat.chat_id, None, RECENT_PER_CHAT)? {
            let m = stored.message;
            let Some(seq) = m.relay_seq else { continue };
            let message = SyncMessage {
                chat_id: m.chat_id.to_vec(),
                seq,
                client_message_id: m.client_message_id.to_vec(),
                sender_user_id: m.sender.user_id.to_vec(),
                sender_device_id: m.sender.device_id,
                sent_at_ms: m.sent_at_ms,
                body: m.body,
            };
            if sync.encoded_len() + message.encoded_len() + 8 > MAX_SYNC_LEN {
                break 'chats;
            }
            sync.messages.push(message);
        }
    }
    Ok(sync)
}

/// Applies a sync from an own device: adds what is missing, never
/// overwrites what this device already has. Malformed items are skipped.
pub(crate) fn apply(tx: &Tx<'_>, sync: &DeviceSync, now_ms: i64) -> Result<usize, ClientError> {
    for c in &sync.contacts {
        let Some(user_id) = id16(&c.user_id) else {
            continue;
        };
        if tx.contact(&user_id)?.is_some() || c.account_key.len() != 32 {
            continue;
        }
        tx.upsert_contact(&Contact {
            user_id,
            display_name: c.name.chars().take(64).collect(),
            identity_key: Some(c.account_key.clone()),
            verification: match c.verification {
                1 => Verification::Verified,
                2 => Verification::Unverified,
                _ => Verification::Default,
            },
        })?;
    }
    for c in &sync.chats {
        let Some(chat_id) = id16(&c.chat_id) else {
            continue;
        };
        if tx.chat(&chat_id)?.is_some() {
            continue;
        }
        let members: Vec<UserId> = c.members.iter().filter_map(|m| id16(m)).collect();
        tx.upsert_chat(&Chat {
            chat_id,
            kind: if c.kind == 1 {
                ChatKind::Direct
            } else {
                ChatKind::Group
            },
            title: c.title.chars().take(64).collect(),
            created_at_ms: now_ms,
        })?;
        tx.set_chat_members(&chat_id, &members)?;
        let admins: Vec<UserId> = c.admins.iter().filter_map(|m| id16(m)).collect();
        tx.set_chat_admins(&chat_id, &admins)?;
    }
    let mut stored = 0;
    for m in &sync.messages {
        let (Some(chat_id), Some(client_message_id), Some(user_id)) = (
            id16(&m.chat_id),
            id16(&m.client_message_id),
            id16(&m.sender_user_id),
        ) else {
            continue;
        };
        if tx.chat(&chat_id)?.is_none() {
            continue;
        }
        let message = NewMessage {
            chat_id,
            relay_seq: Some(m.seq),
            client_message_id,
            sender: store::DeviceAddress {
                user_id,
                device_id: m.sender_device_id,
            },
            sent_at_ms: m.sent_at_ms,
            received_at_ms: now_ms,
            body: m.body.clone(),
        };
        if matches!(
            tx.insert_message(&message),
            Ok(store::InsertOutcome::Inserted(_))
        ) {
            stored += 1;
        }
    }
    Ok(stored)
}
