//! The sync engine: everything between the local store and the relay.
//!
//! - [`content`]: the end-to-end plaintext format.
//! - [`crypto_store`]: the crypto layer's session store on the encrypted
//!   store, committing ratchet changes together with their messages.
//! - [`outbox`]: the outbox entry format and its retry schedule (sans-IO).
//! - [`link`]: what the engine needs from the relay ([`Relay`],
//!   [`RelayLink`]) and how a host wraps the connection ([`RelayLayer`]).
//! - [`clock`]: the injected wall clock ([`Clock`]).
//! - `engine`: the connection loop (connect, authenticate, resync, reconnect
//!   with backoff) and the tasks that run on a connection.
//! - `send` / `receive`: encrypting outbox entries for every recipient
//!   device, and decrypting, storing and acknowledging deliveries. Each is
//!   a thin async driver over pure decisions (what an entry is, what to
//!   acknowledge, which devices need bundles, when to retry) and store
//!   functions that apply a result in one transaction and return the events
//!   to emit; both take any [`Relay`], so tests run them without a relay.

pub(crate) mod account;
pub(crate) mod clock;
pub mod content;
pub(crate) mod crypto_store;
pub(crate) mod device_sync;
pub(crate) mod directory;
mod engine;
mod group;
pub(crate) mod link;
pub(crate) mod outbox;
mod receive;
mod rotation;
mod send;
#[cfg(test)]
mod tests;
pub(crate) mod verification;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use tern_protocol::wire::{LookupUser, UserInfo, request, response};
use tokio::sync::{Notify, broadcast, watch};

use crate::model::{AccountInfo, ClientError, ClientEvent, ConnectionState, UserId};
use crate::net::RelayAddress;
use crate::store::Store;
use account::LocalAccount;
use crypto_store::CryptoStore;
use directory::{DeviceSet, Directory};
use tern_crypto::session::{DeviceAddress, SessionManager};

pub use clock::{Clock, SystemClock};
pub(crate) use engine::{RunMode, run, run_maintenance};
pub(crate) use link::layered;
pub use link::{BlobSink, BlobSource, LinkFuture, Relay, RelayEvents, RelayLayer, RelayLink};
pub use receive::UNDECRYPTABLE_TEXT;
pub(crate) use receive::{MembershipChange, apply_membership, check_account_key, resync};
pub(crate) use send::queue_payload;

/// Events buffered per subscription before the slowest one lags.
const EVENT_BUFFER: usize = 1024;

/// State shared by the public client and the engine's tasks.
pub(crate) struct Core {
    pub store: Arc<Store>,
    pub crypto: Arc<CryptoStore>,
    pub sessions: SessionManager<Arc<CryptoStore>>,
    pub account: AccountInfo,
    pub relay: RelayAddress,
    /// The relay node (index into [`RelayAddress::nodes`]) the next
    /// connection attempt starts with.
    pub node: std::sync::atomic::AtomicUsize,
    pub directory: Directory,
    pub events: broadcast::Sender<ClientEvent>,
    /// Wraps every connection the engine opens (see [`RelayLayer`]).
    pub layer: Option<Arc<dyn RelayLayer>>,
    /// The one QUIC endpoint every connection of this client goes through:
    /// the host's shared one, or opened on the first attempt.
    endpoint: std::sync::OnceLock<quinn::Endpoint>,
    /// The engine's current connection (as layered), `None` while offline.
    pub conn: watch::Sender<Option<Arc<dyn RelayLink>>>,
    pub outbox_wake: Notify,
    /// Notified (every waiter) whenever a send pass finds nothing due.
    pub outbox_settled: Notify,
    pub presence: Mutex<Vec<UserId>>,
    /// Held while a batch of log entries is processed, so that deliveries
    /// and host-requested syncs never process an entry twice.
    pub receiving: tokio::sync::Mutex<()>,
    /// Every "now" of the engine: timestamps, retry schedules, rotation.
    pub clock: Arc<dyn Clock>,
    /// Wakes the prekey maintenance task before its next periodic check.
    pub maintenance: Notify,
    /// Set when a decrypt failed because the signed prekey's replay cache is
    /// full: the next maintenance pass rotates it regardless of its age.
    pub replay_cache_full: AtomicBool,
}

impl Core {
    /// The shared state of `account`'s device over `store`, offline, talking
    /// to `relay` (through `layer`) and reading the time from `clock`.
    pub(crate) fn new(
        store: Arc<Store>,
        account: &LocalAccount,
        relay: RelayAddress,
        layer: Option<Arc<dyn RelayLayer>>,
        endpoint: Option<quinn::Endpoint>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let crypto = Arc::new(CryptoStore::new(store.clone()));
        let events = broadcast::channel(EVENT_BUFFER).0;
        Self {
            directory: Directory::new(
                store.clone(),
                events.clone(),
                DeviceAddress {
                    user: account.info.user_id,
                    device: account.info.device_id,
                },
            ),
            store,
            sessions: SessionManager::new(account.device.clone(), crypto.clone()),
            crypto,
            account: account.info.clone(),
            relay,
            node: std::sync::atomic::AtomicUsize::new(0),
            layer,
            endpoint: endpoint.map(std::sync::OnceLock::from).unwrap_or_default(),
            events,
            conn: watch::channel(None).0,
            outbox_wake: Notify::new(),
            outbox_settled: Notify::new(),
            presence: Mutex::new(Vec::new()),
            receiving: tokio::sync::Mutex::new(()),
            clock,
            maintenance: Notify::new(),
            replay_cache_full: AtomicBool::new(false),
        }
    }

    /// The endpoint to connect through (opened on first use).
    pub(crate) fn endpoint(&self) -> Result<&quinn::Endpoint, crate::net::NetError> {
        if let Some(endpoint) = self.endpoint.get() {
            return Ok(endpoint);
        }
        let endpoint = crate::net::client_endpoint(&self.relay)?;
        Ok(self.endpoint.get_or_init(|| endpoint))
    }

    /// This device's address.
    pub(crate) fn own_address(&self) -> DeviceAddress {
        DeviceAddress {
            user: self.account.user_id,
            device: self.account.device_id,
        }
    }

    /// Emits an event to every subscriber (none is fine).
    pub(crate) fn emit(&self, event: ClientEvent) {
        let _ = self.events.send(event);
    }

    /// The current connection, or [`ClientError::Offline`].
    pub(crate) fn connection(&self) -> Result<Arc<dyn RelayLink>, ClientError> {
        self.conn
            .borrow()
            .clone()
            .ok_or(ClientError::Offline("not connected".into()))
    }

    /// Whether a connection is up.
    pub(crate) fn state(&self) -> ConnectionState {
        if self.conn.borrow().is_some() {
            ConnectionState::Online
        } else {
            ConnectionState::Offline
        }
    }

    /// The users whose presence the host subscribed to.
    pub(crate) fn presence_subscriptions(&self) -> Vec<UserId> {
        self.presence
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Looks a user up by name or id and accepts the answer (see
    /// [`Self::accept_user_info`]).
    pub(crate) async fn lookup<R: Relay + ?Sized>(
        &self,
        conn: &R,
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
    pub(crate) fn accept_user_info(&self, info: &UserInfo) -> Result<DeviceSet, ClientError> {
        let set = DeviceSet::verify(info)?;
        self.directory.insert(set.clone())?;
        if set.user_id != self.account.user_id {
            check_account_key(self, &set)?;
        }
        Ok(set)
    }

    /// The verified device list of `user`: cached, or fetched from the relay.
    pub(crate) async fn device_set<R: Relay + ?Sized>(
        &self,
        conn: &R,
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
