//! Owned value types of the public client API.

pub use crate::store::{
    ChatId, ChatKind, ClientMessageId, DeliveryStatus, KdfParams, KeySource, MessageId, SearchHit,
    SearchQuery, TransferState, UserId, Verification,
};

use crate::store::StoredMessage;

/// This device's account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountInfo {
    /// The account id.
    pub user_id: UserId,
    /// The user name registered with the relay.
    pub user_name: String,
    /// This device's id within the account.
    pub device_id: u32,
}

/// A contact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContactInfo {
    /// The contact's account id.
    pub user_id: UserId,
    /// The contact's user name.
    pub user_name: String,
    /// Whether the user compared safety numbers.
    pub verification: Verification,
}

/// A chat known on this device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatInfo {
    /// The chat id.
    pub chat_id: ChatId,
    /// Direct or group.
    pub kind: ChatKind,
    /// Group title, or the other user's name for direct chats.
    pub title: String,
    /// Members, including this account.
    pub members: Vec<UserId>,
    /// Members who are admins of a group: they add and remove members and
    /// promote others (any member may leave).
    pub admins: Vec<UserId>,
    /// Messages from others after the read cursor (see
    /// [`Client::mark_read`](crate::client::Client::mark_read)).
    pub unread: u64,
}

/// A stored message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Local id.
    pub id: MessageId,
    /// The chat.
    pub chat_id: ChatId,
    /// The relay's seq in the chat (display order); `None` until the relay
    /// stored an outgoing message.
    pub seq: Option<u64>,
    /// Sending user.
    pub sender: UserId,
    /// Sending device.
    pub sender_device: u32,
    /// The sender's client message id.
    pub client_message_id: ClientMessageId,
    /// Send time on the sender's clock, ms since the Unix epoch.
    pub sent_at_ms: i64,
    /// Local receive (or creation) time, ms since the Unix epoch.
    pub received_at_ms: i64,
    /// The text.
    pub text: String,
    /// Whether this account sent it (from this or another own device).
    pub outgoing: bool,
}

impl Message {
    pub(crate) fn from_stored(stored: StoredMessage, own_user: &UserId) -> Self {
        let m = stored.message;
        Self {
            id: stored.id,
            chat_id: m.chat_id,
            seq: m.relay_seq,
            sender: m.sender.user_id,
            sender_device: m.sender.device_id,
            client_message_id: m.client_message_id,
            sent_at_ms: m.sent_at_ms,
            received_at_ms: m.received_at_ms,
            text: m.body,
            outgoing: &m.sender.user_id == own_user,
        }
    }
}

/// Connection state of the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionState {
    /// Not connected (connecting, or waiting to retry).
    Offline,
    /// Connected and authenticated.
    Online,
}

/// What [`Client::sync_now`](crate::client::Client::sync_now) did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncSummary {
    /// Sync pages fetched from the relay (at least one).
    pub pages: u32,
    /// Log entries received in them (each processed, or already processed
    /// from the delivery stream).
    pub entries: u64,
}

/// What one prekey maintenance pass did to one rotating prekey kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrekeyRotation {
    /// Id of the prekey handed out to new initiators after the pass.
    pub current_id: u32,
    /// Whether the pass replaced (and uploaded) the current prekey.
    pub rotated: bool,
    /// Replaced prekeys deleted by the pass (grace period over, or more
    /// replaced prekeys held than allowed).
    pub deleted: Vec<u32>,
}

/// What [`Client::maintain_prekeys`](crate::client::Client::maintain_prekeys) did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrekeyRotations {
    /// The signed X25519 prekey.
    pub signed: PrekeyRotation,
    /// The last-resort ML-KEM prekey.
    pub last_resort_kem: PrekeyRotation,
}
