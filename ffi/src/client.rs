//! [`TernClient`]: one device's client, as the bindings show it — opening
//! and closing, contacts, chats, messages, receipts, typing, presence,
//! devices and push registration. Attachments, linking and the mobile
//! lifecycle are in their own modules, on the same object.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use tern_core::net::client_endpoint;
use tern_core::{CertFingerprint, Client, ClientConfig, KeySource, RelayAddress, TrustPolicy};
use tokio::sync::broadcast;
use zeroize::Zeroizing;

use crate::error::TernError;
use crate::events::{ListenerHandle, TernEvent, TernListener};
use crate::runtime::{block_on, guard, runtime, spawn};
use crate::types::{
    Account, Chat, ChatMessage, Contact, Device, RecipientState, SafetyNumber, SearchOptions,
    SearchResult, SyncReport, local_id, parse_id, parse_ids,
};

/// TLS server name of relays with a self-signed certificate.
const DEFAULT_SERVER_NAME: &str = "tern-relay";
/// Events of the bindings' own (link progress) buffered per listener.
const EXTRA_EVENTS: usize = 64;
/// Length of a raw store key.
const RAW_KEY_LEN: usize = 32;

/// Where a client keeps its data and which relay it talks to.
#[derive(Clone, Debug, uniffi::Record)]
pub struct ClientOptions {
    /// Path of the encrypted database (a key header file sits beside it).
    /// On mobile: inside the app's private files directory.
    pub store_path: String,
    /// The relay, `host:port`; for a cluster, its nodes comma-separated
    /// (`host1:port,host2:port`, one certificate): the client moves to the
    /// next node when one does not answer.
    pub relay: String,
    /// TLS server name; `tern-relay` (a self-signed relay) when absent.
    pub server_name: Option<String>,
    /// The relay certificate's SHA-256 fingerprint (hex) to pin; when
    /// absent the certificate must chain to the system's trusted roots.
    pub fingerprint: Option<String>,
}

/// What unlocks the local store.
#[derive(uniffi::Enum)]
pub enum StoreKey {
    /// A passphrase the user types, stretched with Argon2id.
    Passphrase {
        /// The passphrase.
        passphrase: String,
    },
    /// 32 random bytes the app keeps in the platform keystore (Android
    /// Keystore, iOS Keychain): no stretching, so opening is instant.
    Raw {
        /// The key.
        key: Vec<u8>,
    },
}

impl StoreKey {
    pub(crate) fn into_source(self) -> Result<KeySource, TernError> {
        match self {
            Self::Passphrase { passphrase } => {
                Ok(KeySource::passphrase(Zeroizing::new(passphrase).as_str()))
            }
            Self::Raw { key } => {
                let key = Zeroizing::new(key);
                let bytes: [u8; RAW_KEY_LEN] = key
                    .as_slice()
                    .try_into()
                    .map_err(|_| TernError::invalid("a raw store key is 32 bytes"))?;
                Ok(KeySource::raw(bytes))
            }
        }
    }
}

impl ClientOptions {
    pub(crate) fn to_config(&self) -> Result<ClientConfig, TernError> {
        let nodes = tern_core::net::resolve_nodes(&self.relay).map_err(TernError::invalid)?;
        let trust = match &self.fingerprint {
            Some(pin) => TrustPolicy::Pinned(
                pin.parse::<CertFingerprint>()
                    .map_err(|e| TernError::invalid(e.to_string()))?,
            ),
            None => TrustPolicy::Roots(Arc::new(system_roots()?)),
        };
        let relay = RelayAddress {
            addr: nodes[0],
            fallbacks: nodes[1..].to_vec(),
            server_name: self
                .server_name
                .clone()
                .unwrap_or_else(|| DEFAULT_SERVER_NAME.to_owned()),
            trust,
        };
        let mut config = ClientConfig::new(PathBuf::from(&self.store_path), relay);
        config.endpoint = Some(shared_endpoint(&config.relay)?);
        Ok(config)
    }
}

/// The QUIC endpoint every client of the process connects through, one per
/// address family: an endpoint's receive buffers (about 3 MiB) are then
/// paid once, not per client or per reconnect.
fn shared_endpoint(relay: &RelayAddress) -> Result<quinn::Endpoint, TernError> {
    static V4: OnceLock<quinn::Endpoint> = OnceLock::new();
    static V6: OnceLock<quinn::Endpoint> = OnceLock::new();
    let slot = if relay.addr.is_ipv6() { &V6 } else { &V4 };
    if let Some(endpoint) = slot.get() {
        return Ok(endpoint.clone());
    }
    let _runtime = runtime()?.enter();
    let endpoint = client_endpoint(relay).map_err(|e| TernError::RelayUnreachable {
        detail: e.to_string(),
    })?;
    Ok(slot.get_or_init(|| endpoint).clone())
}

/// The certificate authorities the platform trusts.
fn system_roots() -> Result<rustls::RootCertStore, TernError> {
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) =
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if added == 0 {
        return Err(TernError::invalid(
            "no trusted certificate authorities found; pin the relay's fingerprint",
        ));
    }
    Ok(roots)
}

/// A duration in milliseconds from the bindings.
pub(crate) fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// One device's Tern client: keys, sessions, encrypted history and a
/// background connection to the relay. Every method is safe to call from any
/// thread. Methods that are not `async` only touch the local store (or send
/// one datagram) and return within milliseconds.
#[derive(uniffi::Object)]
pub struct TernClient {
    client: RwLock<Option<Arc<Client>>>,
    pub(crate) store_dir: PathBuf,
    pub(crate) extra: broadcast::Sender<TernEvent>,
}

impl TernClient {
    pub(crate) fn wrap(client: Client, options: &ClientOptions) -> Arc<Self> {
        let store_dir = PathBuf::from(&options.store_path)
            .parent()
            .map(PathBuf::from)
            .unwrap_or_default();
        Arc::new(Self {
            client: RwLock::new(Some(Arc::new(client))),
            store_dir,
            extra: broadcast::channel(EXTRA_EVENTS).0,
        })
    }

    /// The running client, or [`TernError::Closed`] after shutdown.
    pub(crate) fn inner(&self) -> Result<Arc<Client>, TernError> {
        self.client
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or(TernError::Closed)
    }

    /// Tells the listeners something the bindings did.
    pub(crate) fn announce(&self, event: TernEvent) {
        let _ = self.extra.send(event);
    }
}

#[uniffi::export]
impl TernClient {
    /// Creates an account named `user_name` with this device as its first
    /// device, in a new store at `options.store_path`, and registers it with
    /// the relay (which must be reachable). `invite_token` when the relay
    /// requires one.
    #[uniffi::constructor]
    pub async fn create(
        options: ClientOptions,
        key: StoreKey,
        user_name: String,
        invite_token: Option<String>,
    ) -> Result<Arc<Self>, TernError> {
        spawn(async move {
            let config = options.to_config()?;
            let client =
                Client::create(config, key.into_source()?, user_name, invite_token).await?;
            Ok(Self::wrap(client, &options))
        })
        .await
    }

    /// Opens the account stored at `options.store_path`. Works offline: the
    /// client connects in the background when the relay is reachable.
    /// Fails with `WrongPassphrase` for a wrong key.
    #[uniffi::constructor]
    pub async fn open(options: ClientOptions, key: StoreKey) -> Result<Arc<Self>, TernError> {
        spawn(async move {
            let client = Client::open(options.to_config()?, key.into_source()?).await?;
            Ok(Self::wrap(client, &options))
        })
        .await
    }

    /// Stops the background work, closes the connection and the store.
    /// Queued messages stay in the outbox for the next open. Every later
    /// call fails with `Closed`; listeners stop.
    pub async fn shutdown(&self) -> Result<(), TernError> {
        let client = self
            .client
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(client) = client {
            spawn(async move {
                client.shutdown().await;
                Ok(())
            })
            .await?;
        }
        Ok(())
    }

    /// Registers a listener for every event from now on; cancel the returned
    /// handle to stop it.
    pub fn add_listener(
        &self,
        listener: Arc<dyn TernListener>,
    ) -> Result<Arc<ListenerHandle>, TernError> {
        guard(|| ListenerHandle::start(listener, self.inner()?.subscribe(), self.extra.subscribe()))
    }

    /// This device's account.
    pub fn account(&self) -> Result<Account, TernError> {
        guard(|| Ok(self.inner()?.account().into()))
    }

    /// Whether the relay connection is up.
    pub fn is_online(&self) -> Result<bool, TernError> {
        guard(|| Ok(self.inner()?.connection_state() == tern_core::ConnectionState::Online))
    }

    /// Waits until the relay connection is up, at most `timeout_ms`.
    pub async fn wait_online(&self, timeout_ms: u64) -> Result<(), TernError> {
        let client = self.inner()?;
        spawn(async move { Ok(client.wait_online(millis(timeout_ms)).await?) }).await
    }

    /// Looks a user up by name at the relay, checks their signed device list
    /// and stores them as a contact.
    pub async fn add_contact(&self, user_name: String) -> Result<Contact, TernError> {
        let client = self.inner()?;
        spawn(async move { Ok(client.add_contact(user_name).await?.into()) }).await
    }

    /// All contacts, by name.
    pub fn contacts(&self) -> Result<Vec<Contact>, TernError> {
        guard(|| {
            Ok(self
                .inner()?
                .contacts()?
                .into_iter()
                .map(Into::into)
                .collect())
        })
    }

    /// One contact by user id (hex).
    pub fn contact(&self, user_id: String) -> Result<Contact, TernError> {
        guard(|| Ok(self.inner()?.contact(parse_id(&user_id)?)?.into()))
    }

    /// The safety number shared with a contact, to compare in person.
    pub fn safety_number(&self, user_id: String) -> Result<SafetyNumber, TernError> {
        guard(|| {
            let digits = self.inner()?.safety_number(parse_id(&user_id)?)?;
            Ok(SafetyNumber {
                qr_payload: digits.as_bytes().to_vec(),
                digits,
            })
        })
    }

    /// Marks a contact verified (after comparing safety numbers) or not;
    /// the account's other devices learn it.
    pub fn set_verified(&self, user_id: String, verified: bool) -> Result<(), TernError> {
        guard(|| Ok(self.inner()?.set_verified(parse_id(&user_id)?, verified)?))
    }

    /// Accepts a verified contact's new identity key: sending resumes, the
    /// contact is no longer verified.
    pub fn accept_identity_change(&self, user_id: String) -> Result<(), TernError> {
        guard(|| {
            Ok(self
                .inner()?
                .acknowledge_identity_change(parse_id(&user_id)?)?)
        })
    }

    /// The direct chat with a contact (hex user id), created locally if new.
    pub fn direct_chat(&self, user_id: String) -> Result<String, TernError> {
        guard(|| Ok(hex::encode(self.inner()?.direct_chat(parse_id(&user_id)?)?)))
    }

    /// Creates a group with contacts (hex user ids); returns its chat id.
    pub async fn create_group(
        &self,
        title: String,
        members: Vec<String>,
    ) -> Result<String, TernError> {
        let client = self.inner()?;
        let members = parse_ids(&members)?;
        spawn(async move { Ok(hex::encode(client.create_group(title, members).await?)) }).await
    }

    /// Adds contacts to a group (only admins may; the relay refuses others
    /// with `TernError::Refused`).
    pub async fn add_members(&self, chat_id: String, users: Vec<String>) -> Result<(), TernError> {
        self.change_members(chat_id, users, Vec::new()).await
    }

    /// Removes members from a group (their devices stop receiving). Only
    /// admins may remove others; any member may remove itself (leave). The
    /// relay refuses others with `TernError::Refused`.
    pub async fn remove_members(
        &self,
        chat_id: String,
        users: Vec<String>,
    ) -> Result<(), TernError> {
        self.change_members(chat_id, Vec::new(), users).await
    }

    /// Makes members (hex user ids) admins of a group. Only admins may; the
    /// relay refuses others with `TernError::Refused`.
    pub async fn promote_members(
        &self,
        chat_id: String,
        user_ids: Vec<String>,
    ) -> Result<(), TernError> {
        let client = self.inner()?;
        let chat_id = parse_id(&chat_id)?;
        let user_ids = parse_ids(&user_ids)?;
        spawn(async move { Ok(client.promote(chat_id, user_ids).await?) }).await
    }

    /// Renames a group; every member sees the new title.
    pub fn rename_group(&self, chat_id: String, title: String) -> Result<(), TernError> {
        guard(|| Ok(self.inner()?.rename_group(parse_id(&chat_id)?, title)?))
    }

    /// The chats on this device, each with its unread count.
    pub fn chats(&self) -> Result<Vec<Chat>, TernError> {
        guard(|| Ok(self.inner()?.chats()?.into_iter().map(Into::into).collect()))
    }

    /// Queues a text message (stored before this returns, sent as soon as
    /// the relay is reachable, retried until acknowledged).
    pub fn send_text(&self, chat_id: String, text: String) -> Result<ChatMessage, TernError> {
        guard(|| Ok(self.inner()?.send_text(parse_id(&chat_id)?, text)?.into()))
    }

    /// A page of history, oldest first: the last `limit` messages before
    /// seq `before` (the newest when absent).
    pub fn messages(
        &self,
        chat_id: String,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<ChatMessage>, TernError> {
        guard(|| {
            let page = self.inner()?.messages(parse_id(&chat_id)?, before, limit)?;
            Ok(page.into_iter().map(Into::into).collect())
        })
    }

    /// Per-recipient state of an outgoing message (✓ sent, ✓✓ delivered,
    /// read).
    pub fn message_status(&self, message_id: i64) -> Result<Vec<RecipientState>, TernError> {
        guard(|| {
            let states = self.inner()?.message_status(local_id(message_id))?;
            Ok(states
                .into_iter()
                .map(|(user, status)| RecipientState {
                    user_id: hex::encode(user),
                    state: status.into(),
                })
                .collect())
        })
    }

    /// Full-text search over the local history.
    pub fn search(&self, options: SearchOptions) -> Result<Vec<SearchResult>, TernError> {
        guard(|| {
            let hits = self.inner()?.search(options.to_query()?)?;
            Ok(hits.into_iter().map(Into::into).collect())
        })
    }

    /// Marks a chat read up to `up_to_seq`: read receipts go to the senders,
    /// and the account's other devices clear their unread counts.
    pub fn mark_read(&self, chat_id: String, up_to_seq: u64) -> Result<(), TernError> {
        guard(|| Ok(self.inner()?.mark_read(parse_id(&chat_id)?, up_to_seq)?))
    }

    /// Tells the chat's online members this user is (or stopped) typing.
    pub fn set_typing(&self, chat_id: String, active: bool) -> Result<(), TernError> {
        let client = self.inner()?;
        let chat_id = parse_id(&chat_id)?;
        block_on(async move { Ok(client.set_typing(chat_id, active)?) })
    }

    /// Watches these users' presence (hex ids; replaces the previous set);
    /// changes arrive as `Presence` events.
    pub async fn watch_presence(&self, users: Vec<String>) -> Result<(), TernError> {
        let client = self.inner()?;
        let users = parse_ids(&users)?;
        spawn(async move { Ok(client.subscribe_presence(users).await?) }).await
    }

    /// This account's devices, from the relay's signed list.
    pub async fn devices(&self) -> Result<Vec<Device>, TernError> {
        let client = self.inner()?;
        spawn(async move {
            Ok(client
                .devices()
                .await?
                .into_iter()
                .map(Into::into)
                .collect())
        })
        .await
    }

    /// Removes another device of this account.
    pub async fn remove_device(&self, device_id: u32) -> Result<(), TernError> {
        let client = self.inner()?;
        spawn(async move { Ok(client.remove_device(device_id).await?) }).await
    }

    /// Registers (or clears, with `None`) the push endpoint the relay wakes
    /// this device through while it is offline. The push carries no content.
    pub async fn set_push_endpoint(&self, url: Option<String>) -> Result<(), TernError> {
        let client = self.inner()?;
        spawn(async move { Ok(client.set_push_endpoint(url).await?) }).await
    }

    /// Fetches everything new from the relay now, at most `timeout_ms`.
    pub async fn sync_now(&self, timeout_ms: u64) -> Result<SyncReport, TernError> {
        let client = self.inner()?;
        spawn(async move { Ok(client.sync_now(millis(timeout_ms)).await?.into()) }).await
    }

    /// Waits until the relay acknowledged everything queued, at most
    /// `timeout_ms`.
    pub async fn flush_outbox(&self, timeout_ms: u64) -> Result<(), TernError> {
        let client = self.inner()?;
        spawn(async move { Ok(client.flush_outbox(millis(timeout_ms)).await?) }).await
    }
}

impl TernClient {
    async fn change_members(
        &self,
        chat_id: String,
        add: Vec<String>,
        remove: Vec<String>,
    ) -> Result<(), TernError> {
        let client = self.inner()?;
        let chat_id = parse_id(&chat_id)?;
        let (add, remove) = (parse_ids(&add)?, parse_ids(&remove)?);
        spawn(async move { Ok(client.change_members(chat_id, add, remove).await?) }).await
    }
}
