//! Read state: a read cursor per chat, unread counts, read receipts, and the
//! cursor shared with the account's other devices.

use super::Client;
use crate::model::ClientError;
use crate::model::ClientEvent;
use crate::model::{ChatId, ClientMessageId, UserId};
use crate::random::random_bytes;
use crate::store::{Chat, ChatKind, StoreError, Tx};
use crate::sync::content::{Payload, ReceiptKind};
use crate::sync::device_sync::self_chat_id;
use crate::sync::queue_payload;

/// Title of the note-to-self chat.
const SELF_CHAT_TITLE: &str = "Note to self";

impl Client {
    /// Marks the chat read up to relay seq `up_to` (at most the newest seq
    /// stored): sends read receipts for the incoming messages that were
    /// unread, and the new cursor to the account's other devices (an
    /// encrypted `ReadState` in the note-to-self chat) so their unread counts
    /// drop too. Emits [`ClientEvent::ChatRead`]. A cursor never moves back.
    pub fn mark_read(&self, chat_id: ChatId, up_to: u64) -> Result<(), ClientError> {
        let me = self.core.account.user_id;
        let now = self.core.clock.now_ms();
        let moved = self.core.store.transaction(|tx| {
            let read = tx.cursor(&chat_id)?.map_or(0, |c| c.read_seq);
            let up_to = up_to.min(tx.newest_seq(&chat_id)?);
            if up_to <= read {
                return Ok::<_, ClientError>(None);
            }
            let ids = unread_ids(tx, &chat_id, &me, read, up_to)?;
            if !ids.is_empty() {
                let receipt = Payload::Receipt(ReceiptKind::Read, ids);
                queue_payload(tx, &chat_id, &random_bytes(), &receipt, None, now)?;
            }
            tx.advance_read(&chat_id, up_to)?;
            let self_chat = self_chat_id(&me);
            if chat_id != self_chat {
                ensure_self_chat(tx, &me, now)?;
                let state = Payload::ReadState(chat_id, up_to);
                queue_payload(tx, &self_chat, &random_bytes(), &state, None, now)?;
            }
            Ok(Some(up_to))
        })?;
        if let Some(read_seq) = moved {
            self.core.outbox_wake.notify_one();
            self.core.emit(ClientEvent::ChatRead { chat_id, read_seq });
        }
        Ok(())
    }
}

/// Client message ids of the messages others sent in `chat` with a relay seq
/// in `(read, up_to]` (at most the receipt limit, newest last).
fn unread_ids(
    tx: &Tx<'_>,
    chat: &ChatId,
    me: &UserId,
    read: u64,
    up_to: u64,
) -> Result<Vec<ClientMessageId>, StoreError> {
    let page = tx.chat_messages(chat, Some(up_to.saturating_add(1)), 1000)?;
    Ok(page
        .iter()
        .filter(|m| &m.message.sender.user_id != me)
        .filter(|m| m.message.relay_seq.is_some_and(|seq| seq > read))
        .map(|m| m.message.client_message_id)
        .collect())
}

/// Creates the note-to-self chat locally if needed, at `now_ms` (the relay
/// learns of it with its first message).
pub(super) fn ensure_self_chat(tx: &Tx<'_>, me: &UserId, now_ms: i64) -> Result<(), StoreError> {
    let chat_id = self_chat_id(me);
    if tx.chat(&chat_id)?.is_none() {
        tx.upsert_chat(&Chat {
            chat_id,
            kind: ChatKind::Group,
            title: SELF_CHAT_TITLE.into(),
            created_at_ms: now_ms,
        })?;
        tx.set_chat_members(&chat_id, &[*me])?;
    }
    Ok(())
}
