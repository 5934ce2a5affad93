//! Per-device queued-bytes quota: ciphertext bytes addressed to a device
//! that it has not acknowledged yet. Kept in memory by the log writer and
//! computed from the log the first time a device is touched. An
//! acknowledgement only shrinks a device's queue, so it merely marks the
//! figure as an upper bound; the exact figure is recomputed only when the
//! bound would refuse an append. Expiry drops every figure.

use std::collections::HashMap;
use std::sync::Mutex;

use rusqlite::{Connection, params};

use super::ciphertexts;
use crate::error::StoreError;
use crate::store::DeviceAddr;

/// A device's queued bytes: exact, or an upper bound since an ack.
#[derive(Clone, Copy)]
struct Figure {
    bytes: u64,
    exact: bool,
}

/// Queued bytes per device, as far as computed.
#[derive(Default)]
pub(super) struct QueuedBytes(Mutex<HashMap<DeviceAddr, Figure>>);

impl QueuedBytes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DeviceAddr, Figure>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The device acknowledged entries: its figure becomes an upper bound.
    pub(super) fn acknowledged(&self, device: DeviceAddr) {
        if let Some(figure) = self.lock().get_mut(&device) {
            figure.exact = false;
        }
    }

    /// Drops every figure (entries expired, or a commit failed).
    pub(super) fn clear(&self) {
        self.lock().clear();
    }

    /// Whether `size` more bytes keep the device within `limit`; computes
    /// the exact figure with `conn` when unknown, or when only an upper
    /// bound is known and that bound would refuse.
    pub(super) fn fits(
        &self,
        conn: &Connection,
        device: DeviceAddr,
        size: u64,
        limit: u64,
    ) -> Result<bool, StoreError> {
        let known = self.lock().get(&device).copied();
        let bytes = match known {
            Some(f) if f.exact || f.bytes.saturating_add(size) <= limit => f.bytes,
            _ => {
                let bytes = load(conn, device)?;
                self.lock().insert(device, Figure { bytes, exact: true });
                bytes
            }
        };
        Ok(bytes.saturating_add(size) <= limit)
    }

    /// Counts bytes just appended for a device.
    pub(super) fn add(&self, device: DeviceAddr, bytes: u64) {
        if let Some(figure) = self.lock().get_mut(&device) {
            figure.bytes = figure.bytes.saturating_add(bytes);
        }
    }
}

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

fn load(conn: &Connection, d: DeviceAddr) -> Result<u64, StoreError> {
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
        let Some(encoded) = ciphertexts::column(r.get_ref(0)?)? else {
            continue;
        };
        let own = ciphertexts::find(encoded, d)?.map_or(0, <[u8]>::len);
        bytes = bytes.saturating_add(own as u64);
    }
    Ok(bytes)
}
