//! Per-device queued-bytes quota: ciphertext bytes addressed to a device
//! that it has not acknowledged yet. Kept in memory by the log writer,
//! computed from the log the first time a device is touched, and dropped
//! (to be recomputed) when the device acknowledges or entries expire.

use std::collections::HashMap;
use std::sync::Mutex;

use rusqlite::{Connection, params};

use crate::error::StoreError;
use crate::store::DeviceAddr;

/// Queued bytes per device, as far as computed.
#[derive(Default)]
pub(super) struct QueuedBytes(Mutex<HashMap<DeviceAddr, u64>>);

impl QueuedBytes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DeviceAddr, u64>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Drops one device's figure (it acknowledged entries).
    pub(super) fn forget(&self, device: DeviceAddr) {
        self.lock().remove(&device);
    }

    /// Drops every figure (entries expired, or a commit failed).
    pub(super) fn clear(&self) {
        self.lock().clear();
    }

    /// The device's queued bytes, computed with `conn` if unknown.
    pub(super) fn get(&self, conn: &Connection, device: DeviceAddr) -> Result<u64, StoreError> {
        if let Some(bytes) = self.lock().get(&device) {
            return Ok(*bytes);
        }
        let bytes = load(conn, device)?;
        self.lock().insert(device, bytes);
        Ok(bytes)
    }

    /// Counts bytes just appended for a device.
    pub(super) fn add(&self, device: DeviceAddr, bytes: u64) {
        if let Some(total) = self.lock().get_mut(&device) {
            *total += bytes;
        }
    }
}

fn load(conn: &Connection, d: DeviceAddr) -> Result<u64, StoreError> {
    let own: i64 = conn
        .prepare_cached(
            "SELECT coalesce(sum(length(c.ciphertext)), 0) FROM log_ciphertexts c
             WHERE c.user_id = ?1 AND c.device_id = ?2
               AND c.chat_id IN (SELECT chat_id FROM chat_members WHERE user_id = ?1)
               AND c.seq > coalesce((SELECT k.seq FROM cursors k WHERE k.user_id = ?1
                                     AND k.device_id = ?2 AND k.chat_id = c.chat_id), 0)",
        )?
        .query_row(params![&d.user.0[..], d.device], |r| r.get(0))?;
    let common: i64 = conn
        .prepare_cached(
            "SELECT coalesce(sum(length(l.common_ciphertext)), 0)
             FROM chat_members m JOIN log l ON l.chat_id = m.chat_id
             WHERE m.user_id = ?1 AND l.common_ciphertext IS NOT NULL
               AND NOT (l.sender_user = ?1 AND l.sender_device = ?2)
               AND l.seq > coalesce((SELECT k.seq FROM cursors k WHERE k.user_id = ?1
                                     AND k.device_id = ?2 AND k.chat_id = m.chat_id), 0)",
        )?
        .query_row(params![&d.user.0[..], d.device], |r| r.get(0))?;
    Ok(u64::try_from(own.saturating_add(common)).unwrap_or(0))
}
