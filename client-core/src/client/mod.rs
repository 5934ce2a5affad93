//! The public client API used by the CLI and the FFI.
//!
//! A [`Client`] owns one device: its encrypted store, its identities and a
//! background task that keeps a relay connection (reconnecting with backoff),
//! resyncs from the stored cursors, receives and decrypts deliveries and sends
//! the outbox. Calls take and return owned values only; failures are one
//! [`ClientError`]; incoming activity arrives as [`ClientEvent`]s through
//! [`Client::subscribe`].
//!
//! ```no_run
//! # use tern_core::*;
//! # async fn demo(relay: tern_core::RelayAddress) -> Result<(), ClientError> {
//! let config = ClientConfig::new("/tmp/alice.db", relay);
//! let alice = Client::create(config, KeySource::passphrase("pw"), "alice".into(), None).await?;
//! let mut events = alice.subscribe();
//! let bob = alice.add_contact("bob".into()).await?;
//! let chat = alice.direct_chat(bob.user_id)?;
//! alice.send_text(chat, "hi bob".into())?;
//! while let Some(event) = events.next().await {
//!     if let ClientEvent::MessageReceived(message) = event {
//!         println!("{}", message.text);
//!     }
//! }
//! # Ok(()) }
//! ```

mod attachments;
mod chats;
mod devices;
#[cfg(test)]
mod directory_tests;
mod linking;
mod read_state;
mod syncing;
mod verification;

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tern_protocol::wire::{
    EphemeralEvent, LookupUser, RegisterAccount, SetPushEndpoint, SubscribePresence, Typing,
    ephemeral_event, request,
};
use tokio::sync::watch;

pub use crate::model::{
    AccountInfo, ChatId, ChatInfo, ChatKind, ClientMessageId, ConnectionState, ContactInfo,
    DeliveryStatus, KdfParams, KeySource, Message, MessageId, PrekeyRotation, PrekeyRotations,
    SearchHit, SearchQuery, SyncSummary, TransferState, UserId, Verification,
};
pub use crate::model::{ClientError, ClientEvent, EventSubscription};
pub use crate::sync::{
    BlobSink, BlobSource, Clock, LinkFuture, Relay, RelayEvents, RelayLayer, RelayLink, SystemClock,
};
pub use attachments::{AttachmentInfo, TransferProgress};
pub use chats::direct_chat_id;
pub use devices::DeviceInfo;
pub use linking::{LinkApproval, LinkOffer};

use crate::net::{Greeting, NetError, RelayAddress, client_endpoint};
use crate::random::random_bytes;
use crate::store::{Contact, Store};
use crate::sync::account::{DeviceAuth, LocalAccount, generate_prekeys};
use crate::sync::content::{MAX_TEXT_LEN, Payload};
use crate::sync::{Core, RunMode, layered, queue_payload};
use tern_crypto::identity::AccountIdentity;

/// Where the client keeps its data, which relay it talks to, and how.
#[derive(Clone)]
pub struct ClientConfig {
    /// Path of the encrypted database (its key header sits beside it).
    pub store_path: PathBuf,
    /// The relay.
    pub relay: RelayAddress,
    /// Where every "now" of the client comes from: message timestamps,
    /// outbox retry schedules, chat creation times and prekey rotation
    /// ([`SystemClock`] by default). A host or a test may shift or control it.
    pub clock: Arc<dyn Clock>,
    /// Receives every relay connection the client opens (once it is ready
    /// for requests) and returns the [`RelayLink`] the client uses in its
    /// place; `None` (the default) uses the connection as it is. A layer can
    /// observe, delay, alter or fail any request, delivery event, datagram or
    /// blob transfer — for tracing, metrics or fault injection (an ack lost
    /// after the relay stored a message, an upload cut off midway).
    pub relay_layer: Option<Arc<dyn RelayLayer>>,
    /// The QUIC endpoint (one UDP socket) to connect through; `None` (the
    /// default) opens one per client. A quinn endpoint reserves about 3 MiB
    /// of receive buffers and keeps them while its connections drain, so a
    /// host running several clients, or opening and closing them often,
    /// shares one endpoint (made with [`crate::net::client_endpoint`] on
    /// the runtime the clients run on).
    pub endpoint: Option<quinn::Endpoint>,
}

impl ClientConfig {
    /// A configuration with default options.
    pub fn new(store_path: impl Into<PathBuf>, relay: RelayAddress) -> Self {
        Self {
            store_path: store_path.into(),
            relay,
            clock: Arc::new(SystemClock),
            relay_layer: None,
            endpoint: None,
        }
    }

    /// The configured endpoint, or a new one of its own.
    pub(crate) fn endpoint(&self) -> Result<quinn::Endpoint, NetError> {
        match &self.endpoint {
            Some(endpoint) => Ok(endpoint.clone()),
            None => client_endpoint(&self.relay),
        }
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("store_path", &self.store_path)
            .field("relay", &self.relay)
            .field("relay_layer", &self.relay_layer.is_some())
            .field("shared_endpoint", &self.endpoint.is_some())
            .finish_non_exhaustive()
    }
}

/// One device's client. Cheap to share behind an `Arc`; every method takes
/// `&self`. Dropping it stops the background task.
pub struct Client {
    core: Arc<Core>,
    account: AccountIdentity,
    mode: watch::Sender<RunMode>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.mode.send(RunMode::Stopped);
    }
}

async fn open_store(config: &ClientConfig, key: KeySource) -> Result<Arc<Store>, ClientError> {
    let path = config.store_path.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(path, key))
        .await
        .map_err(|_| ClientError::Store("store opening task failed".into()))??;
    Ok(Arc::new(store))
}

impl Client {
    /// Creates an account with this device as its first device: generates the
    /// account and device identities and prekeys, stores them, registers the
    /// user name with the relay and uploads the prekeys. Needs the relay.
    ///
    /// Fails with [`ClientError::AccountState`] if the store already holds a
    /// registered account, [`ClientError::Refused`] if the name is taken.
    pub async fn create(
        config: ClientConfig,
        key: KeySource,
        user_name: String,
        invite_token: Option<String>,
    ) -> Result<Self, ClientError> {
        let store = open_store(&config, key).await?;
        let existing = store.transaction(LocalAccount::load)?;
        if existing.is_some_and(|a| a.registered) {
            return Err(ClientError::AccountState(
                "this store already holds an account",
            ));
        }
        let mut account = LocalAccount::generate(user_name);
        let upload = store.transaction(|tx| {
            account.save(tx)?;
            generate_prekeys(tx, &account.device, Some(config.clock.now_secs()))
        })?;
        let greeting = Greeting::connect_via(&config.endpoint()?, &config.relay).await?;
        let register = RegisterAccount {
            user_name: account.info.user_name.clone(),
            account_key: Bytes::copy_from_slice(&account.account.public_key().to_bytes()),
            device_list: Some(account.initial_device_list()),
            device_id: account.info.device_id,
            invite_token: invite_token.unwrap_or_default(),
            device_signature: greeting.sign(&DeviceAuth(&account.device)),
        };
        let (_, conn) = greeting
            .register(request::Kind::RegisterAccount(register))
            .await?;
        let conn = layered(config.relay_layer.as_ref(), conn);
        conn.request(request::Kind::UploadPrekeys(upload)).await?;
        conn.close();
        account.registered = true;
        store.transaction(|tx| account.save(tx))?;
        Ok(Self::start(config, store, account))
    }

    /// Opens the account stored at `config.store_path`. Works offline: the
    /// background task connects when the relay is reachable.
    ///
    /// Fails with [`ClientError::WrongKey`] for a wrong passphrase or key and
    /// [`ClientError::AccountState`] if the store holds no account.
    pub async fn open(config: ClientConfig, key: KeySource) -> Result<Self, ClientError> {
        let store = open_store(&config, key).await?;
        let account = store
            .transaction(LocalAccount::load)?
            .ok_or(ClientError::AccountState("no account in this store"))?;
        if !account.registered {
            return Err(ClientError::AccountState(
                "account registration did not complete; create it again",
            ));
        }
        Ok(Self::start(config, store, account))
    }

    fn start(config: ClientConfig, store: Arc<Store>, account: LocalAccount) -> Self {
        let core = Arc::new(Core::new(
            store,
            &account,
            config.relay,
            config.relay_layer,
            config.endpoint,
            config.clock,
        ));
        let (mode, watched) = watch::channel(RunMode::Online);
        let task = tokio::spawn(crate::sync::run(core.clone(), watched));
        Self {
            core,
            account: account.account.clone(),
            mode,
            task: Mutex::new(Some(task)),
        }
    }

    /// Stops the background task and closes the relay connection. Messages
    /// not yet acknowledged stay in the outbox for the next start.
    pub async fn shutdown(&self) {
        let _ = self.mode.send(RunMode::Stopped);
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// Closes the relay connection and keeps the client offline until
    /// [`Self::resume`] — what a mobile app does when it goes to the
    /// background. Everything local keeps working: history, search, and
    /// sends, which wait in the outbox. Emits [`ClientEvent::Disconnected`]
    /// if a connection was up. No effect on a shut-down client.
    pub fn pause(&self) {
        self.mode
            .send_if_modified(|mode| switch(mode, RunMode::Paused));
    }

    /// Reconnects after [`Self::pause`]: the client connects at once,
    /// resyncs every chat from its stored cursors and sends the outbox.
    /// No effect unless paused.
    pub fn resume(&self) {
        self.mode
            .send_if_modified(|mode| switch(mode, RunMode::Online));
    }

    /// Whether the client is paused.
    pub fn is_paused(&self) -> bool {
        *self.mode.borrow() == RunMode::Paused
    }

    /// This device's account.
    pub fn account(&self) -> AccountInfo {
        self.core.account.clone()
    }

    /// A new subscription to events emitted from now on.
    pub fn subscribe(&self) -> EventSubscription {
        EventSubscription::new(self.core.events.subscribe())
    }

    /// Whether the relay connection is up.
    pub fn connection_state(&self) -> ConnectionState {
        self.core.state()
    }

    /// Waits until the relay connection is up, at most `timeout`.
    pub async fn wait_online(&self, timeout: Duration) -> Result<(), ClientError> {
        let mut state = self.core.conn.subscribe();
        let online = tokio::time::timeout(timeout, state.wait_for(Option::is_some)).await;
        match online {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(ClientError::Closed),
            Err(_) => Err(ClientError::Offline(
                "timed out waiting for the relay".into(),
            )),
        }
    }

    /// Looks a user up by name, verifies their account-signed device list and
    /// stores them as a contact (pinning their account key). Needs the relay.
    pub async fn add_contact(&self, user_name: String) -> Result<ContactInfo, ClientError> {
        let conn = self.core.connection()?;
        let set = self
            .core
            .lookup(
                conn.as_ref(),
                LookupUser {
                    user_name: user_name.clone(),
                    user_id: Bytes::new(),
                },
            )
            .await?;
        if set.user_name != user_name {
            return Err(ClientError::Verification(
                "lookup answered another name".into(),
            ));
        }
        self.contact(set.user_id)
    }

    /// One contact.
    pub fn contact(&self, user_id: UserId) -> Result<ContactInfo, ClientError> {
        let contact = self
            .core
            .store
            .transaction(|tx| tx.contact(&user_id))?
            .ok_or(ClientError::UnknownUser(crate::sync::hex(&user_id)))?;
        Ok(contact_info(contact))
    }

    /// All contacts, by name.
    pub fn contacts(&self) -> Result<Vec<ContactInfo>, ClientError> {
        let contacts = self.core.store.transaction(|tx| tx.contacts())?;
        Ok(contacts.into_iter().map(contact_info).collect())
    }

    /// Queues a text message: it is stored (history and outbox, one
    /// transaction) before this returns, and sent — encrypted for every
    /// device of every member and every other own device — as soon as the
    /// relay is reachable, retried until acknowledged. Works offline.
    ///
    /// Refused with [`ClientError::UntrustedIdentity`] while a verified
    /// member's identity change is unacknowledged.
    pub fn send_text(&self, chat_id: ChatId, text: String) -> Result<Message, ClientError> {
        if text.is_empty() {
            return Err(ClientError::InvalidArgument("empty message"));
        }
        if text.len() > MAX_TEXT_LEN {
            return Err(ClientError::InvalidArgument("message too long"));
        }
        self.queue_message(chat_id, text.clone(), Payload::Text(text), None)
    }

    /// Stores a shown message (history, statuses, optional attachment row and
    /// outbox entry in one transaction) and wakes the sender.
    fn queue_message(
        &self,
        chat_id: ChatId,
        body: String,
        payload: Payload,
        attachment: Option<crate::store::NewAttachment>,
    ) -> Result<Message, ClientError> {
        let me = self.core.account.user_id;
        let now = self.core.clock.now_ms();
        let client_message_id: ClientMessageId = tern_protocol::ClientMessageId::time_ordered(
            u64::try_from(now).unwrap_or(0),
            random_bytes(),
        )
        .0;
        let stored = self.core.store.transaction(|tx| {
            if tx.chat(&chat_id)?.is_none() {
                return Err(ClientError::UnknownChat);
            }
            let members = tx.chat_members(&chat_id)?;
            for member in members.iter().filter(|m| **m != me) {
                let contact = tx.contact(member)?;
                if contact.is_some_and(|c| c.verification == Verification::Unverified) {
                    return Err(ClientError::UntrustedIdentity);
                }
            }
            let message = crate::store::NewMessage {
                chat_id,
                relay_seq: None,
                client_message_id,
                sender: crate::store::DeviceAddress {
                    user_id: me,
                    device_id: self.core.account.device_id,
                },
                sent_at_ms: now,
                received_at_ms: now,
                body,
            };
            let id = tx.insert_message(&message)?.id();
            for member in members.iter().filter(|m| **m != me) {
                tx.set_delivery_status(id, member, DeliveryStatus::Pending)?;
            }
            if let Some(mut attachment) = attachment {
                attachment.message_id = id;
                tx.insert_attachment(&attachment)?;
            }
            queue_payload(tx, &chat_id, &client_message_id, &payload, Some(id), now)?;
            Ok(crate::store::StoredMessage { id, message })
        })?;
        self.core.outbox_wake.notify_one();
        Ok(Message::from_stored(stored, &me))
    }

    /// A page of a chat's history in display (relay seq) order: the last
    /// `limit` messages before seq `before` (the newest when `None`).
    pub fn messages(
        &self,
        chat_id: ChatId,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<Message>, ClientError> {
        let me = self.core.account.user_id;
        let page = self
            .core
            .store
            .transaction(|tx| tx.chat_messages(&chat_id, before, limit))?;
        Ok(page
            .into_iter()
            .map(|m| Message::from_stored(m, &me))
            .collect())
    }

    /// The status of an outgoing message per recipient.
    pub fn message_status(
        &self,
        message_id: MessageId,
    ) -> Result<Vec<(UserId, DeliveryStatus)>, ClientError> {
        Ok(self
            .core
            .store
            .transaction(|tx| tx.delivery_statuses(message_id))?)
    }

    /// Full-text search over the local history.
    pub fn search(&self, query: SearchQuery) -> Result<Vec<SearchHit>, ClientError> {
        Ok(self.core.store.search(&query)?)
    }

    /// Sends a typing indicator to the chat's online members (best effort).
    pub fn set_typing(&self, chat_id: ChatId, active: bool) -> Result<(), ClientError> {
        let conn = self.core.connection()?;
        let event = EphemeralEvent {
            kind: Some(ephemeral_event::Kind::Typing(Typing {
                chat_id: Bytes::copy_from_slice(&chat_id),
                active,
                user_id: Bytes::new(),
                device_id: 0,
            })),
        };
        Ok(conn.send_ephemeral(&event)?)
    }

    /// Registers (`Some(url)`) or clears (`None`) the UnifiedPush-style
    /// endpoint the relay wakes this device through while it is offline
    /// (content-free). Needs the relay.
    pub async fn set_push_endpoint(&self, url: Option<String>) -> Result<(), ClientError> {
        let conn = self.core.connection()?;
        conn.request(request::Kind::SetPushEndpoint(SetPushEndpoint {
            url: url.unwrap_or_default(),
        }))
        .await?;
        Ok(())
    }

    /// Replaces the set of users whose presence is reported as
    /// [`ClientEvent::Presence`]; kept across reconnects.
    pub async fn subscribe_presence(&self, users: Vec<UserId>) -> Result<(), ClientError> {
        *self
            .core
            .presence
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = users.clone();
        let conn = self.core.connection()?;
        let user_ids = users.iter().map(|u| Bytes::copy_from_slice(u)).collect();
        conn.request(request::Kind::SubscribePresence(SubscribePresence {
            user_ids,
        }))
        .await?;
        Ok(())
    }
}

/// Moves between [`RunMode::Online`] and [`RunMode::Paused`]; a stopped
/// client stays stopped. Returns whether the mode changed.
fn switch(mode: &mut RunMode, to: RunMode) -> bool {
    if *mode == RunMode::Stopped || *mode == to {
        return false;
    }
    *mode = to;
    true
}

fn contact_info(contact: Contact) -> ContactInfo {
    ContactInfo {
        user_id: contact.user_id,
        user_name: contact.display_name,
        verification: contact.verification,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync<T: Send + Sync>() {}

    #[test]
    fn the_public_api_is_thread_safe_for_hosts() {
        send_sync::<Client>();
        send_sync::<ClientEvent>();
        send_sync::<ClientError>();
        send_sync::<LinkOffer>();
        send_sync::<LinkApproval>();
    }

    #[test]
    fn direct_chat_ids_are_symmetric_and_distinct() {
        let (a, b, c) = ([1; 16], [2; 16], [3; 16]);
        assert_eq!(direct_chat_id(&a, &b), direct_chat_id(&b, &a));
        assert_ne!(direct_chat_id(&a, &b), direct_chat_id(&a, &c));
    }
}
