//! The PostgreSQL figure of a device's queued bytes (see
//! [`crate::store::quota`]). Each node keeps its own figures, so a device
//! can exceed its quota by what other nodes appended since this node last
//! computed its figure (docs/cluster.md).

use deadpool_postgres::GenericClient;

use super::{get, row, rows};
use crate::error::StoreError;
use crate::store::{DeviceAddr, ciphertexts};

/// Rows of the device's chats past its cursor; `$1` user, `$2` device.
macro_rules! queued_rows {
    ($select:literal, $from:literal, $filter:literal) => {
        concat!(
            "SELECT ",
            $select,
            " FROM chat_members m JOIN ",
            $from,
            " ON x.chat_id = m.chat_id WHERE m.user_id = $1 AND ",
            $filter,
            " AND x.seq > coalesce((SELECT k.seq FROM cursors k WHERE k.user_id = $1
                 AND k.device_id = $2 AND k.chat_id = m.chat_id), 0)"
        )
    };
}

/// Bytes queued for device `d`: past its cursors, addressed to it.
pub(super) async fn load(c: &impl GenericClient, d: DeviceAddr) -> Result<u64, StoreError> {
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
        [&&d.user.0[..], &i64::from(d.device)];
    let sum = async |sql: &str| -> Result<u64, StoreError> {
        let total = row(c, sql, &params).await?;
        let total: Option<i64> = total.map(|r| get(&r, 0)).transpose()?;
        Ok(u64::try_from(total.unwrap_or(0)).unwrap_or(0))
    };
    let spilled = sum(queued_rows!(
        "coalesce(sum(length(x.ciphertext)), 0)::bigint",
        "log_ciphertexts x",
        "x.user_id = $1 AND x.device_id = $2"
    ))
    .await?;
    let common = sum(queued_rows!(
        "coalesce(sum(length(x.common_ciphertext)), 0)::bigint",
        "log x",
        "x.common_ciphertext IS NOT NULL AND NOT (x.sender_user = $1 AND x.sender_device = $2)"
    ))
    .await?;
    let mut bytes = spilled.saturating_add(common);
    let inline = rows(
        c,
        queued_rows!("x.ciphertexts", "log x", "x.ciphertexts IS NOT NULL"),
        &params,
    )
    .await?;
    for r in &inline {
        let encoded: &[u8] = get(r, 0)?;
        let own = ciphertexts::find(encoded, d)?.map_or(0, <[u8]>::len);
        bytes = bytes.saturating_add(own as u64);
    }
    Ok(bytes)
}
