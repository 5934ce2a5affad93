//! Waiting until this device holds everything the relay has for it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::Client;
use crate::model::ClientError;
use crate::model::{PrekeyRotations, SyncSummary};
use crate::sync::{RelayLink, resync, run_maintenance};

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
        self.with_relay(timeout, "syncing with the relay", |conn| async move {
            resync(&self.core, conn.as_ref()).await
        })
        .await
    }

    /// Runs prekey maintenance now instead of at the next periodic check:
    /// replaces the signed prekey and the last-resort KEM prekey when due
    /// (uploading the new ones) and deletes replaced ones whose grace period
    /// is over. For hosts woken in the background. Needs the relay (waits
    /// for it within `timeout`).
    pub async fn maintain_prekeys(
        &self,
        timeout: Duration,
    ) -> Result<PrekeyRotations, ClientError> {
        self.with_relay(timeout, "maintaining prekeys", |conn| async move {
            run_maintenance(&self.core, conn.as_ref()).await
        })
        .await
    }

    /// Waits until the relay has acknowledged everything queued to send
    /// (messages, receipts, read state, titles): for hosts that queue
    /// something and then exit. Fails with [`ClientError::Offline`] when
    /// the outbox is not empty within `timeout` (what is left stays queued).
    pub async fn flush_outbox(&self, timeout: Duration) -> Result<(), ClientError> {
        let flushed = tokio::time::timeout(timeout, async {
            loop {
                let settled = self.core.outbox_settled.notified();
                tokio::pin!(settled);
                settled.as_mut().enable();
                if self.core.store.read(|tx| tx.outbox_len())? == 0 {
                    return Ok(());
                }
                self.core.outbox_wake.notify_one();
                settled.await;
            }
        });
        flushed
            .await
            .map_err(|_| ClientError::Offline("timed out sending the outbox".into()))?
    }

    /// Waits (within `timeout`) for the relay connection, then runs `task` on
    /// it; the whole must finish within `timeout` or fails with `Offline`.
    async fn with_relay<T, F>(
        &self,
        timeout: Duration,
        what: &str,
        task: impl FnOnce(Arc<dyn RelayLink>) -> F,
    ) -> Result<T, ClientError>
    where
        F: Future<Output = Result<T, ClientError>>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        self.wait_online(timeout).await?;
        let conn = self.core.connection()?;
        tokio::time::timeout_at(deadline, task(conn))
            .await
            .map_err(|_| ClientError::Offline(format!("timed out {what}")))?
    }
}
