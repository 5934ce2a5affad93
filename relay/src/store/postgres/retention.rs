//! Retention: log entries acknowledged by every member device, and entries
//! older than the retention period, are deleted chat by chat (one short
//! transaction per chat). One node sweeps at a time: the sweep holds a
//! session advisory lock, and a node that cannot take it skips its turn.
//! With chat shards the lock is the directory's and one sweep covers every
//! shard. `chats.last_seq` is never lowered, so seqs keep increasing once a log
//! is empty.

use deadpool_postgres::{GenericClient, Pool};

use super::directory::{Directory, devices_of};
use super::{Conn, big, exec, get, row, rows};
use crate::error::StoreError;

/// Advisory lock key held while sweeping ("tern" + 2).
pub(super) const RETENTION_LOCK: i64 = 0x7465_726e_0000_0002;

/// Per chat of the database `c` is connected to: the highest seq every
/// member device has acknowledged, and the highest seq stored before the
/// expiry cutoff. Member devices come from `directory`.
async fn floors(
    c: &impl GenericClient,
    directory: Directory<'_>,
    expire_before_ms: u64,
) -> Result<Vec<(Vec<u8>, i64)>, StoreError> {
    let sql = |devices: &str| {
        format!(
            "WITH acked AS (
                 SELECT m.chat_id, min(coalesce(k.seq, 0)) AS floor
                 FROM chat_members m
                 JOIN {devices} ON d.user_id = m.user_id
                 LEFT JOIN cursors k ON k.user_id = d.user_id AND k.device_id = d.device_id
                                    AND k.chat_id = m.chat_id
                 GROUP BY m.chat_id),
             expired AS (
                 SELECT chat_id, max(seq) AS floor FROM log WHERE server_time_ms < $1
                 GROUP BY chat_id)
             SELECT chat_id, max(floor)
             FROM (SELECT * FROM acked UNION ALL SELECT * FROM expired) f
             GROUP BY chat_id HAVING max(floor) > 0"
        )
    };
    let expire = big(expire_before_ms);
    let found = match directory {
        Directory::Same => rows(c, &sql("devices d"), &[&expire]).await?,
        Directory::Apart(pool) => {
            let members = rows(c, "SELECT DISTINCT user_id FROM chat_members", &[]).await?;
            let users: Vec<&[u8]> = members
                .iter()
                .map(|r| get(r, 0))
                .collect::<Result<_, _>>()?;
            let devices = devices_of(pool, &users).await?;
            let ids: Vec<&[u8]> = devices.iter().map(|d| &d.user.0[..]).collect();
            let numbers: Vec<i64> = devices.iter().map(|d| i64::from(d.device)).collect();
            let listed = "unnest($2::bytea[], $3::int8[]) AS d(user_id, device_id)";
            rows(c, &sql(listed), &[&expire, &ids, &numbers]).await?
        }
    };
    found.iter().map(|r| Ok((get(r, 0)?, get(r, 1)?))).collect()
}

/// Sweeps every chat database if no other node is sweeping: the advisory
/// lock is taken on `lock`, a connection to the directory; `shards` are
/// the chat shards (empty: the directory holds the chats, and is swept on
/// `lock` itself).
pub(super) async fn collect_garbage(
    lock: &mut Conn,
    directory: &Pool,
    shards: &[&Pool],
    expire_before_ms: u64,
) -> Result<u64, StoreError> {
    let locked = row(
        &*lock,
        "SELECT pg_try_advisory_lock($1)",
        &[&RETENTION_LOCK],
    )
    .await?;
    if !locked
        .map(|r| get::<bool>(&r, 0))
        .transpose()?
        .unwrap_or(false)
    {
        tracing::debug!("retention sweep skipped: another node is sweeping");
        return Ok(0);
    }
    let swept = match shards {
        [] => sweep(lock, Directory::Same, expire_before_ms).await,
        _ => sweep_shards(directory, shards, expire_before_ms).await,
    };
    // A lost connection releases the lock by itself.
    let _ = exec(&*lock, "SELECT pg_advisory_unlock($1)", &[&RETENTION_LOCK]).await;
    swept
}

async fn sweep_shards(
    directory: &Pool,
    shards: &[&Pool],
    expire_before_ms: u64,
) -> Result<u64, StoreError> {
    let mut deleted = 0;
    for shard in shards {
        let mut c = shard.get().await?;
        deleted += sweep(&mut c, Directory::Apart(directory), expire_before_ms).await?;
    }
    Ok(deleted)
}

/// Sweeps the chats of one database, one short transaction per chat.
async fn sweep(
    c: &mut Conn,
    directory: Directory<'_>,
    expire_before_ms: u64,
) -> Result<u64, StoreError> {
    let mut deleted = 0u64;
    for (chat, floor) in floors(&*c, directory, expire_before_ms).await? {
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
