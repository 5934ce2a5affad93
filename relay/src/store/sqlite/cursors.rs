//! Reading a chat log from a device's cursors, and advancing them.
//!
//! A device gets its own ciphertext of each entry: from the entry's inline
//! encoding (`log.ciphertexts`, see [`crate::store::ciphertexts`]) or, when that
//! column is NULL (fan-outs too large to inline, entries written before
//! schema v4), from `log_ciphertexts`.

use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use tern_protocol::ChatId;
use tern_protocol::wire::Delivery;

use super::inline_column;
use super::log::member_chats;
use crate::error::StoreError;
use crate::store::ciphertexts;
use crate::store::rules;
use crate::store::{DeviceAddr, split_ids};

/// Rough per-entry overhead counted against a sync page's byte budget.
const ENTRY_OVERHEAD: usize = 128;

fn stored_cursor(conn: &Connection, d: DeviceAddr, chat: &ChatId) -> Result<u64, StoreError> {
    let seq: Option<i64> = conn
        .prepare_cached(
            "SELECT seq FROM cursors WHERE user_id = ?1 AND device_id = ?2 AND chat_id = ?3",
        )?
        .query_row(params![&d.user.0[..], d.device, &chat.0[..]], |r| r.get(0))
        .optional()?;
    Ok(seq.unwrap_or(0) as u64)
}

/// The device's own ciphertext of the entry in `r` (columns 9 and 10).
fn own_ciphertext(r: &Row<'_>, d: DeviceAddr) -> Result<Vec<u8>, StoreError> {
    match inline_column(r.get_ref(9)?)? {
        Some(inline) => Ok(ciphertexts::find(inline, d)?
            .map(<[u8]>::to_vec)
            .unwrap_or_default()),
        None => Ok(r.get::<_, Option<Vec<u8>>>(10)?.unwrap_or_default()),
    }
}

fn delivery(r: &Row<'_>, chat: &ChatId, d: DeviceAddr) -> Result<Delivery, StoreError> {
    Ok(Delivery {
        chat_id: chat.to_wire(),
        seq: r.get::<_, i64>(0)? as u64,
        kind: r.get(1)?,
        sender_user_id: r.get::<_, Vec<u8>>(2)?.into(),
        sender_device_id: r.get(3)?,
        server_time_ms: r.get::<_, i64>(4)? as u64,
        client_message_id: r.get::<_, Option<Vec<u8>>>(5)?.unwrap_or_default().into(),
        common_ciphertext: r.get::<_, Option<Vec<u8>>>(6)?.unwrap_or_default().into(),
        added: split_ids(r.get(7)?)?,
        removed: split_ids(r.get(8)?)?,
        promoted: split_ids(r.get(11)?)?,
        ciphertext: own_ciphertext(r, d)?.into(),
    })
}

pub(super) fn read_log(
    conn: &Connection,
    d: DeviceAddr,
    after: &[(ChatId, u64)],
    limit: usize,
    max_bytes: usize,
) -> Result<(Vec<Delivery>, bool), StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT l.seq, l.kind, l.sender_user, l.sender_device, l.server_time_ms,
                l.client_message_id, l.common_ciphertext, l.added, l.removed, l.ciphertexts,
                CASE WHEN l.ciphertexts IS NULL THEN
                    (SELECT c.ciphertext FROM log_ciphertexts c
                     WHERE c.chat_id = l.chat_id AND c.seq = l.seq
                       AND c.user_id = ?3 AND c.device_id = ?4)
                END,
                l.promoted
         FROM log l WHERE l.chat_id = ?1 AND l.seq > ?2 ORDER BY l.seq LIMIT ?5",
    )?;
    let chats = member_chats(conn, &d.user)?;
    if after
        .iter()
        .any(|(named, _)| !chats.iter().any(|(chat, _)| chat == named))
    {
        return Err(not_a_member());
    }
    let mut out = Vec::new();
    let mut bytes = 0usize;
    for (chat, joined) in chats {
        let from = match after.iter().find(|(c, _)| *c == chat) {
            Some((_, seq)) => *seq,
            None => stored_cursor(conn, d, &chat)?,
        };
        let from = from.max(joined.saturating_sub(1));
        let room = limit - out.len();
        let mut rows = stmt.query(params![
            &chat.0[..],
            from as i64,
            &d.user.0[..],
            d.device,
            (room + 1) as i64
        ])?;
        let mut taken = 0;
        while let Some(r) = rows.next()? {
            if taken == room || (bytes > max_bytes && !out.is_empty()) {
                return Ok((out, true));
            }
            let delivery = delivery(r, &chat, d)?;
            bytes += delivery.ciphertext.len() + delivery.common_ciphertext.len() + ENTRY_OVERHEAD;
            out.push(delivery);
            taken += 1;
        }
        if out.len() == limit {
            return Ok((out, true));
        }
    }
    Ok((out, false))
}

/// A cursor names a chat the device's account is not a member of.
fn not_a_member() -> StoreError {
    rules::cursor_outside_membership().into()
}

pub(super) fn ack_cursors(
    conn: &mut Connection,
    d: DeviceAddr,
    cursors: &[(ChatId, u64)],
) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut stmt = tx.prepare_cached(concat!(
            "INSERT INTO cursors (user_id, device_id, chat_id, seq)
             SELECT ?1, ?2, c.chat_id, min(?4, ",
            last_seq_of_c!(),
            ") FROM chats c
             JOIN chat_members m ON m.chat_id = c.chat_id AND m.user_id = ?1
             WHERE c.chat_id = ?3
             ON CONFLICT (user_id, device_id, chat_id) DO UPDATE SET seq = max(seq, excluded.seq)"
        ))?;
        for (chat, seq) in cursors {
            let seq = i64::try_from(*seq).unwrap_or(i64::MAX);
            if stmt.execute(params![&d.user.0[..], d.device, &chat.0[..], seq])? == 0 {
                // Dropping the transaction undoes the cursors already moved.
                return Err(not_a_member());
            }
        }
    }
    tx.commit()?;
    Ok(())
}
