//! Provisioning mailboxes for linking a new device: a connection (not yet
//! authenticated) opens a random address; another device sends one
//! end-to-end encrypted message to it, which the relay forwards as an event.
//! Nothing is stored: a mailbox lives as long as its connection, and at
//! most `limits.provisioning_ttl_secs`. In cluster mode a message for a
//! mailbox open on another node is handed over the bus (docs/cluster.md).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tern_protocol::limits::PROVISIONING_ADDRESS_LEN;
use tern_protocol::wire::{ProvisioningMessage, event};
use tokio::sync::mpsc;

use crate::delivery::{Outlet, append_frame, event_frame};
use crate::error::RelayError;

/// Messages a mailbox holds before senders get QUOTA_EXCEEDED.
const MAILBOX_LEN: usize = 8;
/// Most mailboxes open at once on a relay.
const MAX_MAILBOXES: usize = 100_000;

type Address = [u8; PROVISIONING_ADDRESS_LEN];

/// Where a mailbox's messages go, and until when.
struct Slot {
    tx: mpsc::Sender<ProvisioningMessage>,
    expires: Instant,
}

/// Open provisioning mailboxes by address.
#[derive(Default)]
pub(crate) struct ProvisioningBoard(Mutex<HashMap<Address, Slot>>);

/// An open mailbox; closing it (drop) frees the address.
pub(crate) struct Mailbox {
    /// Its address.
    pub address: Address,
    expires: Instant,
    board: Arc<ProvisioningBoard>,
}

impl Mailbox {
    /// Whether its lifetime is over (senders get NOT_FOUND).
    pub(crate) fn expired(&self) -> bool {
        Instant::now() >= self.expires
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        self.board.lock().remove(&self.address);
    }
}

impl ProvisioningBoard {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Address, Slot>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Opens a mailbox whose messages are written to `outlet` for `ttl`.
    pub(crate) fn open(
        self: &Arc<Self>,
        outlet: Arc<Outlet>,
        ttl: Duration,
    ) -> Result<Mailbox, RelayError> {
        let mut address = [0u8; PROVISIONING_ADDRESS_LEN];
        getrandom::fill(&mut address).map_err(|_| RelayError::Unavailable("no randomness"))?;
        let (tx, rx) = mpsc::channel(MAILBOX_LEN);
        let expires = Instant::now() + ttl;
        {
            let mut boxes = self.lock();
            if boxes.len() >= MAX_MAILBOXES {
                return Err(RelayError::Unavailable("too many provisioning mailboxes"));
            }
            boxes.insert(address, Slot { tx, expires });
        }
        tokio::spawn(forward(outlet, rx));
        Ok(Mailbox {
            address,
            expires,
            board: self.clone(),
        })
    }

    /// Delivers a message to an open mailbox.
    pub(crate) fn send(&self, address: &[u8], ciphertext: Bytes) -> Result<(), RelayError> {
        let address = Address::try_from(address)
            .map_err(|_| RelayError::BadRequest("provisioning address length"))?;
        let tx = self
            .lock()
            .get(&address)
            .filter(|slot| Instant::now() < slot.expires)
            .map(|slot| slot.tx.clone())
            .ok_or(RelayError::NotFound("provisioning mailbox"))?;
        let message = ProvisioningMessage {
            address: address.to_vec().into(),
            ciphertext,
        };
        tx.try_send(message)
            .map_err(|_| RelayError::QuotaExceeded("provisioning mailbox is full"))
    }
}

impl crate::service::Relay {
    /// Delivers a message to a provisioning mailbox open on this node or,
    /// in cluster mode, on another one (asked over the bus).
    pub(crate) async fn send_provisioning(
        &self,
        address: &[u8],
        ciphertext: Bytes,
    ) -> Result<(), RelayError> {
        match (
            self.provisioning.send(address, ciphertext.clone()),
            &self.cluster,
        ) {
            (Err(RelayError::NotFound(_)), Some(cluster)) => {
                cluster.send_provisioning(address, ciphertext).await
            }
            (result, _) => result,
        }
    }
}

async fn forward(outlet: Arc<Outlet>, mut rx: mpsc::Receiver<ProvisioningMessage>) {
    while let Some(message) = rx.recv().await {
        let mut buf = bytes::BytesMut::new();
        let frame = event_frame(event::Kind::ProvisioningMessage(message));
        if append_frame(&mut buf, &frame).is_err() || outlet.write(&buf).await.is_err() {
            return;
        }
    }
}
