//! Per-device queued-bytes quota: ciphertext bytes addressed to a device
//! that it has not acknowledged yet. Kept in memory by the log writer and
//! computed from the log the first time a device is touched. An
//! acknowledgement only shrinks a device's queue, so it merely marks the
//! figure as an upper bound; the exact figure is recomputed only when the
//! bound would refuse an append. Expiry drops every figure.

use std::collections::HashMap;
use std::sync::Mutex;

use rusqlite::{Connection, params};

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

fn load(conn: &Connection, d: DeviceAddr) -> Result<u64, StoreError> {
    let own: i64 = conn
        .prepare_cached(
            "SELECT coalesce(sum(length(c.ciphertext)), 0)
             FROM chat_members m JOIN log_ciphertexts c ON c.chat_id = m.chat_id
             WHERE m.user_id = ?1 AND c.user_id = ?1 AND c.device_id = ?2
               AND c.seq > coalesce((SELECT k.seq FROM cursors k WHERE k.user_id = ?1
                                     AND k.device_id = ?2 AND k.chat_id = m.chat_id), 0)",
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
