//! The SQLite figure of a device's queued bytes (see
//! [`crate::store::quota`]).

use rusqlite::{Connection, params};

use super::inline_column;
use crate::error::StoreError;
use crate::store::DeviceAddr;
use crate::store::ciphertexts;

/// Rows of the device's chats past its cursor; `?1` user, `?2` device.
macro_rules! queued_rows {
    ($select:literal, $from:literal, $filter:literal) => {
        concat!(
            "SELECT ",
            $select,
            " FROM chat_members m JOIN ",
            $from,
            " ON x.chat_id = m.chat_id WHERE m.user_id = ?1 AND ",
            $filter,
            " AND x.seq > coalesce((SELECT k.seq FROM cursors k WHERE k.user_id = ?1
                 AND k.device_id = ?2 AND k.chat_id = m.chat_id), 0)"
        )
    };
}

/// Bytes queued for device `d`: past its cursors, addressed to it.
pub(super) fn load(conn: &Connection, d: DeviceAddr) -> Result<u64, StoreError> {
    let sum = |sql: &str| -> Result<i64, StoreError> {
        Ok(conn
            .prepare_cached(sql)?
            .query_row(params![&d.user.0[..], d.device], |r| r.get(0))?)
    };
    let spilled = sum(queued_rows!(
        "coalesce(sum(length(x.ciphertext)), 0)",
        "log_ciphertexts x",
        "x.user_id = ?1 AND x.device_id = ?2"
    ))?;
    let common = sum(queued_rows!(
        "coalesce(sum(length(x.common_ciphertext)), 0)",
        "log x",
        "x.common_ciphertext IS NOT NULL AND NOT (x.sender_user = ?1 AND x.sender_device = ?2)"
    ))?;
    let total = spilled.saturating_add(common);
    Ok(u64::try_from(total)
        .unwrap_or(0)
        .saturating_add(inline(conn, d)?))
}

/// The device's bytes in inline ciphertext encodings past its cursors.
fn inline(conn: &Connection, d: DeviceAddr) -> Result<u64, StoreError> {
    let mut stmt = conn.prepare_cached(queued_rows!(
        "x.ciphertexts",
        "log x",
        "x.ciphertexts IS NOT NULL"
    ))?;
    let mut rows = stmt.query(params![&d.user.0[..], d.device])?;
    let mut bytes = 0u64;
    while let Some(r) = rows.next()? {
        let Some(encoded) = inline_column(r.get_ref(0)?)? else {
            continue;
        };
        let own = ciphertexts::find(encoded, d)?.map_or(0, <[u8]>::len);
        bytes = bytes.saturating_add(own as u64);
    }
    Ok(bytes)
}
