//! The sync engine: everything between the local store and the relay.
//!
//! - [`content`]: the end-to-end plaintext format.
//! - [`crypto_store`]: the crypto layer's session store on the encrypted
//!   store, committing ratchet changes together with their messages.
//! - [`outbox`]: the outbox entry format and its retry schedule (sans-IO).
//! - `engine`: the connection loop (connect, authenticate, resync, reconnect
//!   with backoff) and the tasks that run on a connection.
//! - `send` / `receive`: encrypting outbox entries for every recipient
//!   device, and decrypting, storing and acknowledging deliveries.

pub mod attachment;
pub mod content;
pub mod crypto_store;
pub mod device_sync;
mod engine;
mod group;
pub mod outbox;
mod receive;
mod rotation;
mod send;
pub(crate) mod verification;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use tern_protocol::wire::{LookupUser, UserInfo, request, response};
use tokio::sync::{Notify, broadcast, watch};

use crate::client::{
    AccountInfo, ClientError, ClientEvent, ConnectionState, DeviceSet, Directory, UserId,
};
use crate::crypto::session::SessionManager;
use crate::net::{RelayAddress, RelayConnection};
use crate::store::Store;
use crypto_store::CryptoStore;

pub(crate) use engine::{resync, run, run_maintenance};
pub(crate) use receive::{apply_membership, check_account_key};
pub(crate) use rotation::Clock;
pub(crate) use send::queue_payload;

/// State shared by the public client and the engine's tasks.
pub(crate) struct Core {
    pub store: Arc<Store>,
    pub crypto: Arc<CryptoStore>,
    pub sessions: SessionManager<Arc<CryptoStore>>,
    pub account: AccountInfo,
    pub relay: RelayAddress,
    pub directory: Directory,
    pub events: broadcast::Sender<ClientEvent>,
    pub conn: watch::Sender<Option<Arc<RelayConnection>>>,
    pub outbox_wake: Notify,
    /// Notified (every waiter) whenever a send pass finds nothing due.
    pub outbox_settled: Notify,
    pub presence: Mutex<Vec<UserId>>,
    /// Held while a batch of log entries is processed, so that deliveries
    /// and host-requested syncs never process an entry twice.
    pub receiving: tokio::sync::Mutex<()>,
    /// Test hook: send outbox entries but ignore the relay's acks.
    pub drop_acks: bool,
    /// Test hook: attachment uploads fail after this many chunks.
    pub interrupt_upload_after: Option<u32>,
    /// Time for prekey rotation decisions.
    pub clock: Clock,
    /// Wakes the prekey maintenance task before its next periodic check.
    pub maintenance: Notify,
    /// Set when a decrypt failed because the signed prekey's replay cache is
    /// full: the next maintenance pass rotates it regardless of its age.
    pub replay_cache_full: AtomicBool,
}

impl Core {
    /// Emits an event to every subscriber (none is fine).
    pub fn emit(&self, event: ClientEvent) {
        let _ = self.events.send(event);
    }

    /// The current connection, or [`ClientError::Offline`].
    pub fn connection(&self) -> Result<Arc<RelayConnection>, ClientError> {
        self.conn
            .borrow()
            .clone()
            .ok_or(ClientError::Offline("not connected".into()))
    }

    /// Whether a connection is up.
    pub fn state(&self) -> ConnectionState {
        if self.conn.borrow().is_some() {
            ConnectionState::Online
        } else {
            ConnectionState::Offline
        }
    }

    /// The users whose presence the host subscribed to.
    pub fn presence_subscriptions(&self) -> Vec<UserId> {
        self.presence
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Looks a user up by name or id and accepts the answer (see
    /// [`Self::accept_user_info`]).
    pub async fn lookup(
        &self,
        conn: &RelayConnection,
        lookup: LookupUser,
    ) -> Result<DeviceSet, ClientError> {
        let wanted = if lookup.user_name.is_empty() {
            hex(&lookup.user_id)
        } else {
            lookup.user_name.clone()
        };
        let answer = match conn.request(request::Kind::LookupUser(lookup)).await {
            Err(crate::net::NetError::Relay {
                code: tern_protocol::wire::ErrorCode::NotFound,
                ..
            }) => {
                return Err(ClientError::UnknownUser(wanted));
            }
            other => other?,
        };
        let response::Kind::UserInfo(info) = answer else {
            return Err(ClientError::Refused(
                "unexpected answer to LookupUser".into(),
            ));
        };
        self.accept_user_info(&info)
    }

    /// Accepts a directory entry: verifies its signed device list, checks it
    /// against the accepted one (refusing rollbacks, see [`Directory`]) and
    /// the account key against the pinned one (see [`check_account_key`]).
    pub fn accept_user_info(&self, info: &UserInfo) -> Result<DeviceSet, ClientError> {
        let set = DeviceSet::verify(info)?;
        self.directory.insert(set.clone())?;
        if set.user_id != self.account.user_id {
            check_account_key(self, &set)?;
        }
        Ok(set)
    }

    /// The verified device list of `user`: cached, or fetched from the relay.
    pub async fn device_set(
        &self,
        conn: &RelayConnection,
        user: &UserId,
    ) -> Result<DeviceSet, ClientError> {
        if let Some(set) = self.directory.get(user) {
            return Ok(set);
        }
        let set = self
            .lookup(
                conn,
                LookupUser {
                    user_name: String::new(),
                    user_id: Bytes::copy_from_slice(user),
                },
            )
            .await?;
        if &set.user_id != user {
            return Err(ClientError::Verification(
                "lookup answered another user".into(),
            ));
        }
        Ok(set)
    }
}

/// Lower-case hex of bytes, for messages and logs.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
