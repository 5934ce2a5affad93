//! Waiting until this device holds everything the relay has for it.

use std::time::Duration;

use super::Client;
use super::error::ClientError;
use super::types::SyncSummary;
use crate::sync::resync;

impl Client {
    /// Drains the relay backlog: waits (within `timeout`) for the relay
    /// connection, then fetches Sync pages after the stored cursors and
    /// processes them until the relay reports nothing more. When it returns
    /// `Ok`, every entry the relay held for this device when the last page
    /// was asked for is stored (messages, receipts, membership changes) and
    /// its events were emitted. Safe to call while deliveries arrive: both
    /// take turns per batch, so no entry is processed twice.
    ///
    /// Fails with [`ClientError::Offline`] when the relay is not reached or
    /// the sync does not finish within `timeout`.
    pub async fn sync_now(&self, timeout: Duration) -> Result<SyncSummary, ClientError> {
        let deadline = tokio::time::Instant::now() + timeout;
        self.wait_online(timeout).await?;
        let conn = self.core.connection()?;
        tokio::time::timeout_at(deadline, resync(&self.core, &conn))
            .await
            .map_err(|_| ClientError::Offline("timed out syncing with the relay".into()))?
    }
}
