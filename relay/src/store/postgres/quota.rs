//! The PostgreSQL figure of a device's queued bytes (see
//! [`crate::store::quota`]). Each node keeps its own figures, so a device
//! can exceed its quota by what other nodes appended since this node last
//! computed its figure (docs/cluster.md).

use deadpool_postgres::GenericClient;

use super::{get, row, rows};
use crate::error::StoreError;
use crate::store::{DeviceAddr, ciphertexts};

/// Rows of the device's chats past its cursor; `$1` user, `$2` device. The
/// chats and cursors are found first, so each chat's rows are one range of
/// the `(chat_id, seq)` key.
macro_rules! queued_rows {
    ($select:literal, $from:literal, $filter:literal) => {
        concat!(
            "WITH c AS (SELECT m.chat_id, coalesce(k.seq, 0) AS after FROM chat_members m
                 LEFT JOIN cursors k ON k.user_id = $1 AND k.device_id = $2
                                    AND k.chat_id = m.chat_id
                 WHERE m.user_id = $1)
             SELECT ",
            $select,
            " FROM c JOIN ",
            $from,
            " ON x.chat_id = c.chat_id AND x.seq > c.after WHERE ",
            $filter
        )
    };
}

/// An upper bound of the bytes queued for device `d`, in one aggregate
/// query: every inline encoding counts whole (other devices' ciphertexts
/// included), so nothing is read back but one number.
pub(super) async fn bound(c: &impl GenericClient, d: DeviceAddr) -> Result<u64, StoreError> {
    let sql = concat!(
        "SELECT (",
        queued_rows!(
            "coalesce(sum(coalesce(length(x.common_ciphertext), 0)
                          + coalesce(length(x.ciphertexts), 0)), 0)::bigint",
            "log x",
            "true"
        ),
        ") + (",
        queued_rows!(
            "coalesce(sum(length(x.ciphertext)), 0)::bigint",
            "log_ciphertexts x",
            "x.user_id = $1 AND x.device_id = $2"
        ),
        ")"
    );
    let total = row(c, sql, &[&&d.user.0[..], &i64::from(d.device)]).await?;
    let total: Option<i64> = total.map(|r| get(&r, 0)).transpose()?;
    Ok(u64::try_from(total.unwrap_or(0)).unwrap_or(0))
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
