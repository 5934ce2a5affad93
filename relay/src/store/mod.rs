//! Durable state behind the [`Store`] trait, the sum of one small trait per
//! concern: [`AccountStore`], [`PrekeyStore`], [`LogStore`], [`ChatStore`],
//! [`CursorStore`] and [`RetentionStore`].
//!
//! Routing and delivery only ever talk to these traits; each backend keeps
//! all of its SQL in its own module with a versioned schema, and reports
//! failures as backend-neutral [`StoreError`]s. SQLite
//! ([`sqlite::SqliteStore`]) is the embedded default; a PostgreSQL backend
//! for several relay nodes implements the same trait.
//!
//! Methods are blocking: async callers run them on a blocking thread pool.
//! Domain rules that need a consistent view (one-time prekeys handed out at
//! most once, idempotent sends, per-chat sequence numbers, membership) are
//! enforced inside the backend's transactions.

pub mod ciphertexts;
pub mod postgres;
pub mod quota;
pub mod rules;
pub mod sqlite;
pub mod transfer;

#[cfg(test)]
pub(crate) mod conformance;
#[cfg(test)]
pub(crate) mod memory;

use bytes::Bytes;
use tern_protocol::wire::{
    ChatKind, Delivery, DeviceCiphertext, KemPrekey, OneTimePrekey, PrekeyBundle, SignedDeviceList,
    SignedPrekey,
};
use tern_protocol::{ChatId, ClientMessageId, UserId};

use crate::config::{Backend, Config};
use crate::error::StoreError;

/// A device of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceAddr {
    /// The account.
    pub user: UserId,
    /// The device id within the account.
    pub device: u32,
}

#[cfg(test)]
impl DeviceAddr {
    /// Device `device` of the account whose id is 16 bytes of `user`.
    pub(crate) fn test(user: u8, device: u32) -> Self {
        Self {
            user: UserId([user; 16]),
            device,
        }
    }
}

/// A device named in an account's device list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    /// Device id.
    pub device_id: u32,
    /// Ed25519 device identity key.
    pub identity_key: [u8; 32],
    /// Whether the device proved possession of its key.
    pub registered: bool,
}

/// An account's public directory entry.
#[derive(Debug, Clone)]
pub struct AccountRecord {
    /// Account id.
    pub user_id: UserId,
    /// Unique user name.
    pub user_name: String,
    /// Ed25519 account identity key.
    pub account_key: [u8; 32],
    /// The current signed device list.
    pub device_list: SignedDeviceList,
    /// Its version.
    pub device_list_version: u64,
}

/// A verified device list to store.
#[derive(Debug, Clone)]
pub struct DeviceListUpdate {
    /// The account.
    pub user_id: UserId,
    /// The list as signed.
    pub signed: SignedDeviceList,
    /// Its version.
    pub version: u64,
    /// Its devices: id and identity key.
    pub devices: Vec<(u32, [u8; 32])>,
}

/// A verified account registration.
#[derive(Debug, Clone)]
pub struct NewAccount {
    /// Unique user name.
    pub user_name: String,
    /// Ed25519 account identity key.
    pub account_key: [u8; 32],
    /// The initial device list.
    pub list: DeviceListUpdate,
    /// The device that registered (marked registered).
    pub device_id: u32,
    /// SHA-256 of the invite token to consume, when registration needs one.
    pub invite_hash: Option<[u8; 32]>,
}

/// Prekeys uploaded by a device.
#[derive(Debug, Clone, Default)]
pub struct PrekeyUpload {
    /// Replaces the signed prekey.
    pub signed_prekey: Option<SignedPrekey>,
    /// Added to the one-time stock.
    pub one_time: Vec<OneTimePrekey>,
    /// Replaces the last-resort KEM prekey.
    pub last_resort_kem: Option<KemPrekey>,
    /// Added to the one-time KEM stock.
    pub one_time_kem: Vec<KemPrekey>,
}

/// Remaining one-time prekeys of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PrekeyCounts {
    /// One-time X25519 prekeys.
    pub one_time: u32,
    /// One-time KEM prekeys.
    pub one_time_kem: u32,
}

/// Bundles claimed for a user's devices.
#[derive(Debug, Clone, Default)]
pub struct ClaimedBundles {
    /// One bundle per device that has a signed prekey and a KEM prekey.
    pub bundles: Vec<PrekeyBundle>,
    /// Stock left per device after the claim.
    pub remaining: Vec<(u32, PrekeyCounts)>,
}

/// Account ids concatenated, as log entries store a membership change's
/// `added`, `removed` and `promoted`.
pub(crate) fn join_ids(ids: &[UserId]) -> Vec<u8> {
    ids.iter().flat_map(|u| u.0).collect()
}

/// The account ids of a stored [`join_ids`] list (NULL: none).
pub(crate) fn split_ids(bytes: Option<Vec<u8>>) -> Result<Vec<Bytes>, StoreError> {
    let bytes = bytes.unwrap_or_default();
    if bytes.len() % UserId::LEN != 0 {
        return Err(StoreError::Corrupt("member id list"));
    }
    Ok(bytes
        .chunks(UserId::LEN)
        .map(Bytes::copy_from_slice)
        .collect())
}

/// A stored prekey: id, public key, signature (empty for one-time X25519
/// keys).
pub(crate) type StoredPrekey = (u32, Vec<u8>, Vec<u8>);

/// The keys a claim took for one device.
pub(crate) struct ClaimedKeys {
    /// Its signed X25519 prekey.
    pub(crate) signed: StoredPrekey,
    /// Its last-resort KEM prekey (used when no one-time KEM key is left).
    pub(crate) last_resort_kem: StoredPrekey,
    /// A one-time X25519 prekey, if one was left and allowed.
    pub(crate) one_time: Option<StoredPrekey>,
    /// A one-time KEM prekey, if one was left and allowed.
    pub(crate) one_time_kem: Option<StoredPrekey>,
}

/// The bundle a claim hands out for `device`, whichever backend stored it.
pub(crate) fn bundle(device: &DeviceRecord, keys: ClaimedKeys) -> PrekeyBundle {
    let is_last_resort = keys.one_time_kem.is_none();
    let (kem_id, kem_key, kem_sig) = keys.one_time_kem.unwrap_or(keys.last_resort_kem);
    let (spk_id, spk_key, spk_sig) = keys.signed;
    PrekeyBundle {
        device_id: device.device_id,
        identity_key: device.identity_key.to_vec().into(),
        signed_prekey: Some(SignedPrekey {
            id: spk_id,
            public_key: spk_key.into(),
            signature: spk_sig.into(),
        }),
        one_time_prekey: keys.one_time.map(|(id, key, _)| OneTimePrekey {
            id,
            public_key: key.into(),
        }),
        kem_prekey: Some(KemPrekey {
            id: kem_id,
            public_key: kem_key.into(),
            signature: kem_sig.into(),
        }),
        kem_prekey_is_last_resort: is_last_resort,
    }
}

/// A chat and its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatRecord {
    /// Chat id.
    pub chat_id: ChatId,
    /// Direct or group.
    pub kind: ChatKind,
    /// Members.
    pub members: Vec<UserId>,
    /// Members who are admins (groups only).
    pub admins: Vec<UserId>,
    /// Offset of the last log entry.
    pub last_seq: u64,
}

/// An end-to-end encrypted message to append to a chat log.
#[derive(Debug, Clone)]
pub struct MessageAppend {
    /// Chat.
    pub chat_id: ChatId,
    /// Sending device.
    pub sender: DeviceAddr,
    /// Client-generated id (idempotency key with the sender's account).
    pub client_message_id: ClientMessageId,
    /// One ciphertext per recipient device (may be empty).
    pub device_ciphertexts: Vec<DeviceCiphertext>,
    /// Ciphertext common to all recipients (may be empty).
    pub common_ciphertext: Bytes,
}

/// A membership change (or chat creation) to append to a chat log.
#[derive(Debug, Clone)]
pub struct MembershipAppend {
    /// Chat.
    pub chat_id: ChatId,
    /// Device that asked for the change.
    pub actor: DeviceAddr,
    /// Set when this creates the chat.
    pub create: Option<ChatKind>,
    /// Accounts added (on creation: every member, the creator included).
    pub added: Vec<UserId>,
    /// Accounts removed.
    pub removed: Vec<UserId>,
    /// Accounts to make admins.
    pub promote: Vec<UserId>,
}

/// One append in a group commit.
#[derive(Debug, Clone)]
pub enum LogAppend {
    /// A message.
    Message(MessageAppend),
    /// A membership change.
    Membership(MembershipAppend),
}

/// Where an append landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Offset in the chat log.
    pub seq: u64,
    /// Relay clock when stored.
    pub server_time_ms: u64,
    /// True when an earlier send with the same client message id was found.
    pub duplicate: bool,
    /// The chat's members once the entry is appended (the accounts it is
    /// fanned out to); empty for duplicates.
    pub members: Vec<UserId>,
    /// Accounts a membership entry made admins (those asked for, and the
    /// one the relay chose when the last admin left); empty otherwise.
    pub promoted: Vec<UserId>,
}

/// Accounts, their signed device lists, invites and push endpoints.
pub trait AccountStore {
    /// Creates an account with its first device; consumes the invite if any.
    fn create_account(&self, account: &NewAccount) -> Result<(), StoreError>;
    /// Looks an account up by id.
    fn account(&self, user: &UserId) -> Result<Option<AccountRecord>, StoreError>;
    /// Looks an account up by user name.
    fn account_by_name(&self, name: &str) -> Result<Option<AccountRecord>, StoreError>;
    /// Devices of an account's current list.
    fn devices(&self, user: &UserId) -> Result<Vec<DeviceRecord>, StoreError>;
    /// Replaces the device list; its version must increase.
    fn replace_device_list(&self, update: &DeviceListUpdate) -> Result<(), StoreError>;
    /// Marks a listed device as registered.
    fn mark_device_registered(&self, device: DeviceAddr) -> Result<(), StoreError>;
    /// Stores the SHA-256 of a new invite token.
    fn create_invite(&self, token_hash: &[u8; 32], now_ms: u64) -> Result<(), StoreError>;
    /// Sets or clears a device's push endpoint.
    fn set_push_endpoint(&self, device: DeviceAddr, url: Option<&str>) -> Result<(), StoreError>;
    /// The account's devices that registered a push endpoint, with it.
    fn push_targets(&self, user: &UserId) -> Result<Vec<(DeviceAddr, String)>, StoreError>;
}

/// Signed, last-resort and one-time prekeys of devices.
pub trait PrekeyStore {
    /// Adds prekeys for a device and returns its stock.
    fn upload_prekeys(
        &self,
        device: DeviceAddr,
        upload: &PrekeyUpload,
        max_stock: u32,
    ) -> Result<PrekeyCounts, StoreError>;
    /// Current one-time stock of a device.
    fn prekey_counts(&self, device: DeviceAddr) -> Result<PrekeyCounts, StoreError>;
    /// Claims one bundle per listed device (all devices when `devices` is
    /// empty). Each one-time prekey is handed out at most once, and only to
    /// devices for which `one_time_allowed` says yes (the others get the
    /// signed and last-resort prekeys only).
    fn claim_bundles(
        &self,
        user: &UserId,
        devices: &[u32],
        one_time_allowed: &mut dyn FnMut(u32) -> bool,
    ) -> Result<ClaimedBundles, StoreError>;
}

/// The chat logs: appends with per-chat seqs, idempotent sends and
/// membership changes.
pub trait LogStore {
    /// Appends a batch to the chat logs in ONE durable transaction and
    /// returns a result per item, in order. An item rejected by a domain rule
    /// does not affect the others. `Err` means nothing was committed.
    fn append_batch(
        &self,
        items: &[LogAppend],
        now_ms: u64,
    ) -> Result<Vec<Result<Appended, StoreError>>, StoreError>;
    /// Housekeeping the log writer runs after it has answered a batch, so
    /// that it delays no acknowledgement (SQLite: the WAL checkpoint).
    fn after_batch(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Chats, their members and admins.
pub trait ChatStore {
    /// A chat and its members.
    fn chat(&self, chat: &ChatId) -> Result<Option<ChatRecord>, StoreError>;
    /// The chats an account belongs to.
    fn chats_of(&self, user: &UserId) -> Result<Vec<ChatRecord>, StoreError>;
    /// Accounts that share a chat with `user` (`user` included).
    fn contacts_of(&self, user: &UserId) -> Result<Vec<UserId>, StoreError>;
}

/// What each device has received: reading the log from its cursors, and
/// moving them on.
pub trait CursorStore {
    /// Log entries for a device after the given offsets (other chats from the
    /// stored cursors), at most `limit` entries and about `max_bytes` of
    /// ciphertext; returns whether more are waiting. A cursor naming a chat
    /// the account is not a member of is refused (`FORBIDDEN`).
    fn read_log(
        &self,
        device: DeviceAddr,
        after: &[(ChatId, u64)],
        limit: usize,
        max_bytes: usize,
    ) -> Result<(Vec<Delivery>, bool), StoreError>;
    /// Advances a device's delivery cursors (never backwards, never beyond
    /// the chat's last entry); all or none: a cursor naming a chat the
    /// account is not a member of refuses the whole request (`FORBIDDEN`).
    fn ack_cursors(&self, device: DeviceAddr, cursors: &[(ChatId, u64)]) -> Result<(), StoreError>;
}

/// Retention of the chat logs.
pub trait RetentionStore {
    /// Deletes log entries that every member device acknowledged, and
    /// entries stored before `expire_before_ms`. Returns how many went.
    fn collect_garbage(&self, expire_before_ms: u64) -> Result<u64, StoreError>;
}

/// The connections a backend holds to one database server, as `/metrics`
/// shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolStatus {
    /// Which database: `directory`, or `shard0`, `shard1`, …
    pub database: String,
    /// Most connections the pool opens.
    pub max: usize,
    /// Connections open.
    pub open: usize,
    /// Open connections not in use.
    pub idle: usize,
    /// Operations waiting for a connection.
    pub waiting: usize,
}

/// The connection pools of a backend, for monitoring.
pub trait PoolStats {
    /// One status per pooled database (none for an embedded database).
    fn pool_status(&self) -> Vec<PoolStatus> {
        Vec::new()
    }
}

/// The durable state of a relay: every concern, one backend.
pub trait Store:
    AccountStore
    + PrekeyStore
    + LogStore
    + ChatStore
    + CursorStore
    + RetentionStore
    + PoolStats
    + Send
    + Sync
    + 'static
{
}

impl<T> Store for T where
    T: AccountStore
        + PrekeyStore
        + LogStore
        + ChatStore
        + CursorStore
        + RetentionStore
        + PoolStats
        + Send
        + Sync
        + 'static
{
}

/// Opens (creating and migrating as needed) the backend `config` names:
/// SQLite in the data directory, or the PostgreSQL database of `[store]`.
pub fn open(config: &Config) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    let queue_quota = config.limits.max_queued_bytes_per_device;
    match (config.store.backend, &config.store.url) {
        (Backend::Sqlite, _) => {
            std::fs::create_dir_all(&config.data_dir).map_err(|e| StoreError::Backend {
                backend: "sqlite",
                source: Box::new(e),
            })?;
            let mut store =
                sqlite::SqliteStore::open(&config.database_path(), config.storage.synchronous)?;
            store.set_device_queue_quota(queue_quota);
            Ok(std::sync::Arc::new(store))
        }
        (Backend::Postgres, Some(url)) => Ok(std::sync::Arc::new(postgres::PgStore::open(
            &postgres::PgSettings {
                url: url.clone(),
                chat_shards: config.store.chat_shards.clone(),
                pool_size: config.store.pool_size,
                queue_quota,
            },
        )?)),
        (Backend::Postgres, None) => Err(StoreError::Unreachable(
            "backend = \"postgres\" needs store.url".into(),
        )),
    }
}
