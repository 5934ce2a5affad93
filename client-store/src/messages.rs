//! Message history and per-recipient delivery status.

use rusqlite::{OptionalExtension, params};

use super::sql::{check_len, get_u64, now_ms, sql_enum, to_i64};
use super::{ChatId, ClientMessageId, DeviceAddress, StoreError, Tx, UserId};

/// Largest message body accepted, in bytes (64 KiB).
pub const MAX_BODY_LEN: usize = 64 * 1024;
/// Most messages returned by one history page.
pub const MAX_PAGE: u32 = 1000;

/// Local id of a stored message (stable for the life of the store).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub i64);

sql_enum! {
    /// Delivery status of an outgoing message for one recipient; it only
    /// moves forward.
    pub enum DeliveryStatus {
        /// Stored locally, not yet acknowledged by the relay.
        Pending = 0,
        /// The relay stored it durably (✓).
        Sent = 1,
        /// A device of the recipient has it (✓✓).
        Delivered = 2,
        /// The recipient read it.
        Read = 3,
    }
}

/// A message to store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMessage {
    /// The chat it belongs to (must exist).
    pub chat_id: ChatId,
    /// The relay's sequence number in the chat log, once known.
    pub relay_seq: Option<u64>,
    /// The sender's client message id.
    pub client_message_id: ClientMessageId,
    /// The sending device.
    pub sender: DeviceAddress,
    /// Send time on the sender's clock, ms since the Unix epoch.
    pub sent_at_ms: i64,
    /// Local receive (or creation) time, ms since the Unix epoch.
    pub received_at_ms: i64,
    /// Plaintext body, at most [`MAX_BODY_LEN`] bytes.
    pub body: String,
}

/// A stored message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMessage {
    /// Local id.
    pub id: MessageId,
    /// The message as stored.
    pub message: NewMessage,
}

/// Result of [`Tx::insert_message`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Newly stored.
    Inserted(MessageId),
    /// Already stored (same chat, sender and client message id): nothing
    /// changed except a relay seq the stored copy lacked.
    Duplicate(MessageId),
}

impl InsertOutcome {
    /// The message's local id either way.
    pub fn id(self) -> MessageId {
        match self {
            Self::Inserted(id) | Self::Duplicate(id) => id,
        }
    }
}

const MESSAGE_COLUMNS: &str = "id, chat_id, relay_seq, client_message_id, sender_user_id, \
     sender_device_id, sent_at_ms, received_at_ms, body";

impl Tx<'_> {
    /// Stores a message, deduplicating on (chat, sender, client message id).
    pub fn insert_message(&self, message: &NewMessage) -> Result<InsertOutcome, StoreError> {
        check_len("message body", message.body.len(), MAX_BODY_LEN)?;
        let seq = message
            .relay_seq
            .map(|seq| to_i64(seq, "relay seq"))
            .transpose()?;
        let conn = self.conn();
        let inserted = conn
            .prepare_cached(
                "INSERT INTO messages (chat_id, relay_seq, client_message_id, sender_user_id,
                     sender_device_id, sent_at_ms, received_at_ms, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (chat_id, sender_user_id, client_message_id) DO NOTHING",
            )?
            .execute(params![
                message.chat_id,
                seq,
                message.client_message_id,
                message.sender.user_id,
                message.sender.device_id,
                message.sent_at_ms,
                message.received_at_ms,
                message.body,
            ])?;
        if inserted == 1 {
            return Ok(InsertOutcome::Inserted(MessageId(conn.last_insert_rowid())));
        }
        let id: i64 = conn
            .prepare_cached(
                "SELECT id FROM messages
                 WHERE chat_id = ?1 AND sender_user_id = ?2 AND client_message_id = ?3",
            )?
            .query_row(
                params![
                    message.chat_id,
                    message.sender.user_id,
                    message.client_message_id
                ],
                |row| row.get(0),
            )?;
        if let Some(seq) = seq {
            conn.prepare_cached(
                "UPDATE messages SET relay_seq = ?2 WHERE id = ?1 AND relay_seq IS NULL",
            )?
            .execute(params![id, seq])?;
        }
        Ok(InsertOutcome::Duplicate(MessageId(id)))
    }

    /// Reads a message by local id.
    pub fn message(&self, id: MessageId) -> Result<Option<StoredMessage>, StoreError> {
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?1");
        Ok(self
            .conn()
            .prepare_cached(&sql)?
            .query_row([id.0], message_row)
            .optional()?)
    }

    /// Finds a message by its sender-scoped client message id.
    pub fn find_message(
        &self,
        chat_id: &ChatId,
        sender: &UserId,
        client_message_id: &ClientMessageId,
    ) -> Result<Option<StoredMessage>, StoreError> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages
             WHERE chat_id = ?1 AND sender_user_id = ?2 AND client_message_id = ?3"
        );
        Ok(self
            .conn()
            .prepare_cached(&sql)?
            .query_row(params![chat_id, sender, client_message_id], message_row)
            .optional()?)
    }

    /// Records the relay's acknowledgement of an outgoing message: its seq in
    /// the chat log, and status [`DeliveryStatus::Sent`] for every recipient
    /// still pending.
    pub fn mark_sent(&self, id: MessageId, relay_seq: u64) -> Result<(), StoreError> {
        let conn = self.conn();
        let updated = conn
            .prepare_cached("UPDATE messages SET relay_seq = ?2 WHERE id = ?1")?
            .execute(params![id.0, to_i64(relay_seq, "relay seq")?])?;
        if updated == 0 {
            return Err(StoreError::NotFound("message"));
        }
        conn.prepare_cached(
            "UPDATE message_status SET status = ?2, updated_at_ms = ?3
             WHERE message_id = ?1 AND status < ?2",
        )?
        .execute(params![id.0, DeliveryStatus::Sent, now_ms()])?;
        Ok(())
    }

    /// The last `limit` messages of a chat before relay seq `before` (all of
    /// them when `None`), in display order: by relay seq, then messages the
    /// relay has not sequenced yet (only on the first page), oldest first.
    pub fn chat_messages(
        &self,
        chat_id: &ChatId,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let limit = limit.min(MAX_PAGE);
        let before = match before {
            Some(seq) => to_i64(seq, "relay seq")?,
            None => i64::MAX,
        };
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages
             WHERE chat_id = ?1 AND relay_seq IS NOT NULL AND relay_seq < ?2
             ORDER BY relay_seq DESC LIMIT ?3"
        );
        let mut page: Vec<StoredMessage> = self
            .conn()
            .prepare_cached(&sql)?
            .query_map(params![chat_id, before, limit], message_row)?
            .collect::<Result<_, _>>()?;
        page.reverse();
        if before == i64::MAX {
            let sql = format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages
                 WHERE chat_id = ?1 AND relay_seq IS NULL ORDER BY id DESC LIMIT ?2"
            );
            let mut pending: Vec<StoredMessage> = self
                .conn()
                .prepare_cached(&sql)?
                .query_map(params![chat_id, limit], message_row)?
                .collect::<Result<_, _>>()?;
            pending.reverse();
            page.extend(pending);
        }
        let excess = page
            .len()
            .saturating_sub(usize::try_from(limit).unwrap_or(usize::MAX));
        page.drain(..excess);
        Ok(page)
    }

    /// How many messages of a chat that `own_user` did not send have a relay
    /// seq above `read_seq` (the chat's unread count).
    pub fn count_unread(
        &self,
        chat_id: &ChatId,
        own_user: &UserId,
        read_seq: u64,
    ) -> Result<u64, StoreError> {
        let count: i64 = self
            .conn()
            .prepare_cached(
                "SELECT count(*) FROM messages
                 WHERE chat_id = ?1 AND relay_seq > ?2 AND sender_user_id != ?3",
            )?
            .query_row(
                params![chat_id, to_i64(read_seq, "relay seq")?, own_user],
                |row| row.get(0),
            )?;
        u64::try_from(count).map_err(|_| StoreError::OutOfRange("unread count"))
    }

    /// The highest relay seq stored for a chat (0 when none).
    pub fn newest_seq(&self, chat_id: &ChatId) -> Result<u64, StoreError> {
        let newest: Option<i64> = self
            .conn()
            .prepare_cached("SELECT max(relay_seq) FROM messages WHERE chat_id = ?1")?
            .query_row(params![chat_id], |row| row.get(0))?;
        u64::try_from(newest.unwrap_or(0)).map_err(|_| StoreError::OutOfRange("relay seq"))
    }

    /// Deletes a message (and its status rows, attachments and index entry);
    /// `true` if it existed.
    pub fn delete_message(&self, id: MessageId) -> Result<bool, StoreError> {
        let deleted = self
            .conn()
            .prepare_cached("DELETE FROM messages WHERE id = ?1")?
            .execute([id.0])?;
        Ok(deleted > 0)
    }

    /// Raises the delivery status of message `id` for `recipient`; a status
    /// never moves backwards (a late "delivered" after "read" is ignored).
    pub fn set_delivery_status(
        &self,
        id: MessageId,
        recipient: &UserId,
        status: DeliveryStatus,
    ) -> Result<(), StoreError> {
        self.conn()
            .prepare_cached(
                "INSERT INTO message_status (message_id, recipient_user_id, status, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (message_id, recipient_user_id) DO UPDATE SET
                     status = excluded.status, updated_at_ms = excluded.updated_at_ms
                 WHERE excluded.status > status",
            )?
            .execute(params![id.0, recipient, status, now_ms()])?;
        Ok(())
    }

    /// The delivery status of message `id` per recipient, in recipient order.
    pub fn delivery_statuses(
        &self,
        id: MessageId,
    ) -> Result<Vec<(UserId, DeliveryStatus)>, StoreError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT recipient_user_id, status FROM message_status
             WHERE message_id = ?1 ORDER BY recipient_user_id",
        )?;
        let statuses = stmt
            .query_map([id.0], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<Result<_, _>>()?;
        Ok(statuses)
    }
}

fn message_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredMessage> {
    let relay_seq = match row.get_ref(2)? {
        rusqlite::types::ValueRef::Null => None,
        _ => Some(get_u64(row, 2)?),
    };
    Ok(StoredMessage {
        id: MessageId(row.get(0)?),
        message: NewMessage {
            chat_id: row.get(1)?,
            relay_seq,
            client_message_id: row.get(3)?,
            sender: DeviceAddress {
                user_id: row.get(4)?,
                device_id: row.get(5)?,
            },
            sent_at_ms: row.get(6)?,
            received_at_ms: row.get(7)?,
            body: row.get(8)?,
        },
    })
}
