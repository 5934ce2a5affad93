//! Reading a chat log from a device's cursors, and advancing them.
//!
//! A device gets its own ciphertext of each entry: from the entry's inline
//! encoding ([`crate::store::ciphertexts`]) or, when `log.ciphertexts` is
//! NULL (fan-outs too large to inline), from `log_ciphertexts`.

use deadpool_postgres::GenericClient;
use tern_protocol::ChatId;
use tern_protocol::wire::Delivery;
use tokio_postgres::Row;

use super::members::member_chats;
use super::{big, exec, get, get_u32, get_u64, row, rows};
use crate::error::StoreError;
use crate::store::{DeviceAddr, ciphertexts, rules, split_ids};

/// Rough per-entry overhead counted against a sync page's byte budget.
const ENTRY_OVERHEAD: usize = 128;

async fn stored_cursor(
    c: &impl GenericClient,
    d: DeviceAddr,
    chat: &ChatId,
) -> Result<u64, StoreError> {
    let found = row(
        c,
        "SELECT seq FROM cursors WHERE user_id = $1 AND device_id = $2 AND chat_id = $3",
        &[&&d.user.0[..], &i64::from(d.device), &&chat.0[..]],
    )
    .await?;
    found.map_or(Ok(0), |r| get_u64(&r, 0))
}

/// The device's own ciphertext of the entry in `r` (columns 9 and 10).
fn own_ciphertext(r: &Row, d: DeviceAddr) -> Result<Vec<u8>, StoreError> {
    match get::<Option<&[u8]>>(r, 9)? {
        Some(inline) => Ok(ciphertexts::find(inline, d)?
            .map(<[u8]>::to_vec)
            .unwrap_or_default()),
        None => Ok(get::<Option<Vec<u8>>>(r, 10)?.unwrap_or_default()),
    }
}

fn delivery(r: &Row, chat: &ChatId, d: DeviceAddr) -> Result<Delivery, StoreError> {
    Ok(Delivery {
        chat_id: chat.to_wire(),
        seq: get_u64(r, 0)?,
        kind: i32::from(get::<i16>(r, 1)?),
        sender_user_id: get::<Vec<u8>>(r, 2)?.into(),
        sender_device_id: get_u32(r, 3)?,
        server_time_ms: get_u64(r, 4)?,
        client_message_id: get::<Option<Vec<u8>>>(r, 5)?.unwrap_or_default().into(),
        common_ciphertext: get::<Option<Vec<u8>>>(r, 6)?.unwrap_or_default().into(),
        added: split_ids(get(r, 7)?)?,
        removed: split_ids(get(r, 8)?)?,
        promoted: split_ids(get(r, 11)?)?,
        ciphertext: own_ciphertext(r, d)?.into(),
    })
}

/// What an entry counts against a sync page's byte budget.
pub(super) fn page_bytes(delivery: &Delivery) -> usize {
    delivery.ciphertext.len() + delivery.common_ciphertext.len() + ENTRY_OVERHEAD
}

/// Entries for device `d` from the chats of the database `c` is
/// connected to (`after` names only chats of that database); see
/// [`crate::store::CursorStore::read_log`].
pub(super) async fn read_log(
    c: &impl GenericClient,
    d: DeviceAddr,
    after: &[(ChatId, u64)],
    limit: usize,
    max_bytes: usize,
) -> Result<(Vec<Delivery>, bool), StoreError> {
    let chats = member_chats(c, &d.user).await?;
    if after
        .iter()
        .any(|(named, _)| !chats.iter().any(|(chat, _)| chat == named))
    {
        return Err(rules::cursor_outside_membership().into());
    }
    let mut out = Vec::new();
    let mut bytes = 0usize;
    for (chat, joined) in chats {
        let from = match after.iter().find(|(c, _)| *c == chat) {
            Some((_, seq)) => *seq,
            None => stored_cursor(c, d, &chat).await?,
        };
        let from = from.max(joined.saturating_sub(1));
        let room = limit - out.len();
        let page = rows(
            c,
            "SELECT l.seq, l.kind, l.sender_user, l.sender_device, l.server_time_ms,
                    l.client_message_id, l.common_ciphertext, l.added, l.removed, l.ciphertexts,
                    CASE WHEN l.ciphertexts IS NULL THEN
                        (SELECT x.ciphertext FROM log_ciphertexts x
                         WHERE x.chat_id = l.chat_id AND x.seq = l.seq
                           AND x.user_id = $3 AND x.device_id = $4)
                    END,
                    l.promoted
             FROM log l WHERE l.chat_id = $1 AND l.seq > $2 ORDER BY l.seq LIMIT $5",
            &[
                &&chat.0[..],
                &big(from),
                &&d.user.0[..],
                &i64::from(d.device),
                &big(room as u64 + 1),
            ],
        )
        .await?;
        for (taken, r) in page.iter().enumerate() {
            if taken == room || (bytes > max_bytes && !out.is_empty()) {
                return Ok((out, true));
            }
            let delivery = delivery(r, &chat, d)?;
            bytes += page_bytes(&delivery);
            out.push(delivery);
        }
        if out.len() == limit {
            return Ok((out, true));
        }
    }
    Ok((out, false))
}

/// Moves device `d`'s cursors on in the transaction `tx` (the chats'
/// database); a cursor naming a chat the account is not a member of
/// refuses the whole request, and the caller drops the transaction.
pub(super) async fn advance(
    tx: &impl GenericClient,
    d: DeviceAddr,
    cursors: &[(ChatId, u64)],
) -> Result<(), StoreError> {
    let mut sorted = cursors.to_vec();
    sorted.sort_unstable();
    for (chat, seq) in sorted {
        let moved = exec(
            tx,
            "INSERT INTO cursors (user_id, device_id, chat_id, seq)
             SELECT $1, $2, c.chat_id, least($4, c.last_seq) FROM chats c
             JOIN chat_members m ON m.chat_id = c.chat_id AND m.user_id = $1
             WHERE c.chat_id = $3
             ON CONFLICT (user_id, device_id, chat_id)
             DO UPDATE SET seq = greatest(cursors.seq, excluded.seq)",
            &[
                &&d.user.0[..],
                &i64::from(d.device),
                &&chat.0[..],
                &big(seq),
            ],
        )
        .await?;
        if moved == 0 {
            return Err(rules::cursor_outside_membership().into());
        }
    }
    Ok(())
}
