//! Sync bookkeeping: relay cursors per chat and the outbox of unsent messages.

use rusqlite::{OptionalExtension, params};

use super::sql::{check_len, get_u64, to_i64};
use super::{ChatId, ClientMessageId, StoreError, Tx};

/// Most unsent messages the outbox holds; beyond it sending is refused
/// instead of growing without bound while offline.
pub const MAX_OUTBOX: usize = 10_000;
/// Largest outbox payload (one encoded send request), 2 MiB.
pub const MAX_OUTBOX_PAYLOAD: usize = 2 * 1024 * 1024;
/// Most outbox entries returned by one [`Tx::due_outbox`] call.
pub const MAX_DUE_BATCH: u32 = 1000;

/// This device's position in one chat's relay log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayCursor {
    /// The chat.
    pub chat_id: ChatId,
    /// Highest seq durably processed (and acknowledged to the relay).
    pub delivered_seq: u64,
    /// Highest seq the user has read.
    pub read_seq: u64,
}

/// An unsent (or unacknowledged) message waiting in the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Local outbox id.
    pub id: i64,
    /// The chat it goes to.
    pub chat_id: ChatId,
    /// Client message id: the relay deduplicates retries on it.
    pub client_message_id: ClientMessageId,
    /// The encoded request to (re)send.
    pub payload: Vec<u8>,
    /// Send attempts so far.
    pub attempts: u32,
    /// Earliest time of the next attempt, ms since the Unix epoch.
    pub next_attempt_at_ms: i64,
    /// Enqueue time, ms since the Unix epoch.
    pub created_at_ms: i64,
}

impl Tx<'_> {
    /// Moves the delivered cursor of a chat forward to `seq` (never back).
    pub fn advance_delivered(&self, chat_id: &ChatId, seq: u64) -> Result<(), StoreError> {
        self.conn()
            .prepare_cached(
                "INSERT INTO relay_cursors (chat_id, delivered_seq, read_seq) VALUES (?1, ?2, 0)
                 ON CONFLICT (chat_id) DO UPDATE SET
                     delivered_seq = max(delivered_seq, excluded.delivered_seq)",
            )?
            .execute(params![chat_id, to_i64(seq, "relay seq")?])?;
        Ok(())
    }

    /// Moves the read cursor of a chat forward to `seq` (never back).
    pub fn advance_read(&self, chat_id: &ChatId, seq: u64) -> Result<(), StoreError> {
        self.conn()
            .prepare_cached(
                "INSERT INTO relay_cursors (chat_id, delivered_seq, read_seq) VALUES (?1, 0, ?2)
                 ON CONFLICT (chat_id) DO UPDATE SET read_seq = max(read_seq, excluded.read_seq)",
            )?
            .execute(params![chat_id, to_i64(seq, "relay seq")?])?;
        Ok(())
    }

    /// The cursor of one chat.
    pub fn cursor(&self, chat_id: &ChatId) -> Result<Option<RelayCursor>, StoreError> {
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT chat_id, delivered_seq, read_seq FROM relay_cursors WHERE chat_id = ?1",
            )?
            .query_row([chat_id], cursor_row)
            .optional()?)
    }

    /// Every chat's cursor (what a resync asks the relay for).
    pub fn cursors(&self) -> Result<Vec<RelayCursor>, StoreError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT chat_id, delivered_seq, read_seq FROM relay_cursors ORDER BY chat_id",
        )?;
        let cursors = stmt.query_map([], cursor_row)?.collect::<Result<_, _>>()?;
        Ok(cursors)
    }

    /// Queues a payload for sending, due at `now_ms`. Idempotent: enqueuing
    /// the same client message id again returns the existing entry's id.
    pub fn enqueue_outbox(
        &self,
        chat_id: &ChatId,
        client_message_id: &ClientMessageId,
        payload: &[u8],
        now_ms: i64,
    ) -> Result<i64, StoreError> {
        check_len("outbox payload", payload.len(), MAX_OUTBOX_PAYLOAD)?;
        let conn = self.conn();
        let existing = conn
            .prepare_cached("SELECT id FROM outbox WHERE client_message_id = ?1")?
            .query_row([client_message_id], |row| row.get(0))
            .optional()?;
        if let Some(id) = existing {
            return Ok(id);
        }
        if self.outbox_len()? >= MAX_OUTBOX {
            return Err(StoreError::OutboxFull { max: MAX_OUTBOX });
        }
        conn.prepare_cached(
            "INSERT INTO outbox (chat_id, client_message_id, payload, attempts,
                 next_attempt_at_ms, created_at_ms)
             VALUES (?1, ?2, ?3, 0, ?4, ?4)",
        )?
        .execute(params![chat_id, client_message_id, payload, now_ms])?;
        Ok(conn.last_insert_rowid())
    }

    /// Entries due at `now_ms`, oldest due first, at most `limit`
    /// (capped at [`MAX_DUE_BATCH`]). Only the oldest entry of each chat
    /// can be due: a chat's messages leave in the order they were queued,
    /// so one waiting for a retry holds back those queued after it.
    pub fn due_outbox(&self, now_ms: i64, limit: u32) -> Result<Vec<OutboxEntry>, StoreError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT id, chat_id, client_message_id, payload, attempts, next_attempt_at_ms,
                 created_at_ms
             FROM outbox o WHERE next_attempt_at_ms <= ?1
               AND NOT EXISTS (SELECT 1 FROM outbox e WHERE e.chat_id = o.chat_id AND e.id < o.id)
             ORDER BY next_attempt_at_ms, id LIMIT ?2",
        )?;
        let due = stmt
            .query_map(params![now_ms, limit.min(MAX_DUE_BATCH)], outbox_row)?
            .collect::<Result<_, _>>()?;
        Ok(due)
    }

    /// Every queued entry, due or not, in the order queued, at most
    /// `limit` (capped at [`MAX_DUE_BATCH`]).
    pub fn queued_outbox(&self, limit: u32) -> Result<Vec<OutboxEntry>, StoreError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT id, chat_id, client_message_id, payload, attempts, next_attempt_at_ms,
                 created_at_ms
             FROM outbox ORDER BY id LIMIT ?1",
        )?;
        let queued = stmt
            .query_map([limit.min(MAX_DUE_BATCH)], outbox_row)?
            .collect::<Result<_, _>>()?;
        Ok(queued)
    }

    /// Replaces the payload of entry `id` (once its request is prepared),
    /// keeping its place in the queue.
    pub fn replace_outbox_payload(&self, id: i64, payload: &[u8]) -> Result<(), StoreError> {
        check_len("outbox payload", payload.len(), MAX_OUTBOX_PAYLOAD)?;
        let updated = self
            .conn()
            .prepare_cached("UPDATE outbox SET payload = ?2 WHERE id = ?1")?
            .execute(params![id, payload])?;
        if updated == 0 {
            return Err(StoreError::NotFound("outbox entry"));
        }
        Ok(())
    }

    /// Counts an attempt on entry `id` and schedules the next one.
    pub fn reschedule_outbox(&self, id: i64, next_attempt_at_ms: i64) -> Result<(), StoreError> {
        let updated = self
            .conn()
            .prepare_cached(
                "UPDATE outbox SET attempts = min(attempts + 1, 4294967295),
                     next_attempt_at_ms = ?2
                 WHERE id = ?1",
            )?
            .execute(params![id, next_attempt_at_ms])?;
        if updated == 0 {
            return Err(StoreError::NotFound("outbox entry"));
        }
        Ok(())
    }

    /// Removes the entry the relay acknowledged; `true` if it was queued.
    pub fn remove_outbox(&self, client_message_id: &ClientMessageId) -> Result<bool, StoreError> {
        let removed = self
            .conn()
            .prepare_cached("DELETE FROM outbox WHERE client_message_id = ?1")?
            .execute([client_message_id])?;
        Ok(removed > 0)
    }

    /// Number of queued entries.
    pub fn outbox_len(&self) -> Result<usize, StoreError> {
        let len: i64 = self
            .conn()
            .prepare_cached("SELECT count(*) FROM outbox")?
            .query_row([], |row| row.get(0))?;
        usize::try_from(len).map_err(|_| StoreError::OutOfRange("outbox length"))
    }
}

fn cursor_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RelayCursor> {
    Ok(RelayCursor {
        chat_id: row.get(0)?,
        delivered_seq: get_u64(row, 1)?,
        read_seq: get_u64(row, 2)?,
    })
}

fn outbox_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxEntry> {
    Ok(OutboxEntry {
        id: row.get(0)?,
        chat_id: row.get(1)?,
        client_message_id: row.get(2)?,
        payload: row.get(3)?,
        attempts: row.get(4)?,
        next_attempt_at_ms: row.get(5)?,
        created_at_ms: row.get(6)?,
    })
}
