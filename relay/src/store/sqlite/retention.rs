//! Retention: log entries acknowledged by every member device, and entries
//! older than the retention period, are deleted chat by chat (one short
//! transaction per chat, so the log writer is never blocked for long).
//! Before deleting, a chat's `last_seq` is raised to its highest stored
//! seq, so seqs keep increasing once the log is empty.

use rusqlite::{Connection, TransactionBehavior, params};

use super::chat_id;
use crate::error::StoreError;

/// Per chat: the highest seq every member device has acknowledged, and the
/// highest seq stored before the expiry cutoff.
fn floors(conn: &Connection, expire_before_ms: u64) -> Result<Vec<(Vec<u8>, i64)>, StoreError> {
    let cutoff = i64::try_from(expire_before_ms).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare(
        "WITH acked AS (
             SELECT m.chat_id, min(coalesce(c.seq, 0)) AS floor
             FROM chat_members m
             JOIN devices d ON d.user_id = m.user_id
             LEFT JOIN cursors c ON c.user_id = d.user_id AND c.device_id = d.device_id
                                AND c.chat_id = m.chat_id
             GROUP BY m.chat_id),
         expired AS (
             SELECT chat_id, max(seq) AS floor FROM log WHERE server_time_ms < ?1
             GROUP BY chat_id)
         SELECT chat_id, max(floor) FROM (SELECT * FROM acked UNION ALL SELECT * FROM expired)
         GROUP BY chat_id HAVING max(floor) > 0",
    )?;
    let rows = stmt.query_map([cutoff], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn collect_garbage(
    conn: &mut Connection,
    expire_before_ms: u64,
) -> Result<u64, StoreError> {
    let mut deleted = 0u64;
    for (chat, floor) in floors(conn, expire_before_ms)? {
        chat_id(&chat)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            concat!(
                "UPDATE chats AS c SET last_seq = ",
                last_seq_of_c!(),
                " WHERE c.chat_id = ?1"
            ),
            [&chat],
        )?;
        tx.execute(
            "DELETE FROM log_ciphertexts WHERE chat_id = ?1 AND seq <= ?2",
            params![chat, floor],
        )?;
        let n = tx.execute(
            "DELETE FROM log WHERE chat_id = ?1 AND seq <= ?2",
            params![chat, floor],
        )?;
        tx.commit()?;
        deleted += n as u64;
    }
    Ok(deleted)
}
