//! Retention: log entries acknowledged by every member device, and entries
//! older than the retention period, are deleted chat by chat (one short
//! transaction per chat). One node sweeps at a time: the sweep holds a
//! session advisory lock, and a node that cannot take it skips its turn.
//! `chats.last_seq` is never lowered, so seqs keep increasing once a log
//! is empty.

use deadpool_postgres::GenericClient;

use super::{Conn, big, exec, get, row, rows};
use crate::error::StoreError;

/// Advisory lock key held while sweeping ("tern" + 2).
pub(super) const RETENTION_LOCK: i64 = 0x7465_726e_0000_0002;

/// Per chat: the highest seq every member device has acknowledged, and the
/// highest seq stored before the expiry cutoff.
async fn floors(
    c: &impl GenericClient,
    expire_before_ms: u64,
) -> Result<Vec<(Vec<u8>, i64)>, StoreError> {
    rows(
        c,
        "WITH acked AS (
             SELECT m.chat_id, min(coalesce(k.seq, 0)) AS floor
             FROM chat_members m
             JOIN devices d ON d.user_id = m.user_id
             LEFT JOIN cursors k ON k.user_id = d.user_id AND k.device_id = d.device_id
                                AND k.chat_id = m.chat_id
             GROUP BY m.chat_id),
         expired AS (
             SELECT chat_id, max(seq) AS floor FROM log WHERE server_time_ms < $1
             GROUP BY chat_id)
         SELECT chat_id, max(floor) FROM (SELECT * FROM acked UNION ALL SELECT * FROM expired) f
         GROUP BY chat_id HAVING max(floor) > 0",
        &[&big(expire_before_ms)],
    )
    .await?
    .iter()
    .map(|r| Ok((get(r, 0)?, get(r, 1)?)))
    .collect()
}

pub(super) async fn collect_garbage(
    c: &mut Conn,
    expire_before_ms: u64,
) -> Result<u64, StoreError> {
    let locked = row(&*c, "SELECT pg_try_advisory_lock($1)", &[&RETENTION_LOCK]).await?;
    if !locked
        .map(|r| get::<bool>(&r, 0))
        .transpose()?
        .unwrap_or(false)
    {
        tracing::debug!("retention sweep skipped: another node is sweeping");
        return Ok(0);
    }
    let swept = sweep(c, expire_before_ms).await;
    // A lost connection releases the lock by itself.
    let _ = exec(&*c, "SELECT pg_advisory_unlock($1)", &[&RETENTION_LOCK]).await;
    swept
}

async fn sweep(c: &mut Conn, expire_before_ms: u64) -> Result<u64, StoreError> {
    let mut deleted = 0u64;
    for (chat, floor) in floors(&*c, expire_before_ms).await? {
        let tx = c.transaction().await?;
        for table in ["log_ciphertexts", "log"] {
            let sql = format!("DELETE FROM {table} WHERE chat_id = $1 AND seq <= $2");
            let n = exec(&tx, &sql, &[&chat, &floor]).await?;
            if table == "log" {
                deleted += n;
            }
        }
        tx.commit().await?;
    }
    Ok(deleted)
}
