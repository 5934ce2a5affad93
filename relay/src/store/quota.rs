//! Per-device queued-bytes quota: ciphertext bytes addressed to a device
//! that it has not acknowledged yet. Each backend's log writer keeps the
//! figures in memory ([`QueuedBytes`]) and computes one from its log the
//! first time a device is touched. An acknowledgement only shrinks a
//! device's queue, so it merely marks the figure as an upper bound; the
//! exact figure is recomputed only when the bound would refuse an append.
//! Expiry drops every figure.

use std::collections::HashMap;
use std::sync::Mutex;

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
pub struct QueuedBytes(Mutex<HashMap<DeviceAddr, Figure>>);

impl QueuedBytes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DeviceAddr, Figure>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The device acknowledged entries: its figure becomes an upper bound.
    pub fn acknowledged(&self, device: DeviceAddr) {
        if let Some(figure) = self.lock().get_mut(&device) {
            figure.exact = false;
        }
    }

    /// Drops every figure (entries expired, or a commit failed).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Whether `size` more bytes keep the device within `limit`, when the
    /// figure in memory decides it; `None` when the exact figure must be
    /// computed first (unknown, or only a bound that would refuse).
    pub fn known_fit(&self, device: DeviceAddr, size: u64, limit: u64) -> Option<bool> {
        match self.lock().get(&device) {
            Some(f) if f.exact || f.bytes.saturating_add(size) <= limit => {
                Some(f.bytes.saturating_add(size) <= limit)
            }
            _ => None,
        }
    }

    /// Records an upper bound of a device's queued bytes (cheaper to
    /// compute than the exact figure, which is computed only when the
    /// bound would refuse).
    pub fn record_bound(&self, device: DeviceAddr, bytes: u64) {
        self.lock().insert(
            device,
            Figure {
                bytes,
                exact: false,
            },
        );
    }

    /// Records the exact figure of a device, computed from the log.
    pub fn record_exact(&self, device: DeviceAddr, bytes: u64) {
        self.lock().insert(device, Figure { bytes, exact: true });
    }

    /// Whether `size` more bytes keep the device within `limit`; computes
    /// the exact figure with `load` when [`Self::known_fit`] cannot tell.
    pub fn fits(
        &self,
        device: DeviceAddr,
        size: u64,
        limit: u64,
        load: impl FnOnce() -> Result<u64, StoreError>,
    ) -> Result<bool, StoreError> {
        if let Some(fits) = self.known_fit(device, size, limit) {
            return Ok(fits);
        }
        let bytes = load()?;
        self.record_exact(device, bytes);
        Ok(bytes.saturating_add(size) <= limit)
    }

    /// Counts bytes just appended for a device.
    pub fn add(&self, device: DeviceAddr, bytes: u64) {
        if let Some(figure) = self.lock().get_mut(&device) {
            figure.bytes = figure.bytes.saturating_add(bytes);
        }
    }
}
