//! Events the client reports to its host.

use tokio::sync::broadcast;

use super::types::{ChatId, Message, MessageId, UserId};
use crate::store::DeliveryStatus;

/// Something that happened; delivered through [`EventSubscription`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// The relay connection is up (after connecting and resyncing).
    Connected,
    /// The relay connection dropped; the client reconnects with backoff.
    Disconnected {
        /// Why, for logs.
        reason: String,
    },
    /// A message arrived (from a contact, or from another own device).
    MessageReceived(Message),
    /// An outgoing message's status for one recipient moved forward
    /// (✓ sent, ✓✓ delivered, read). `recipient` is `None` for ✓ (the relay
    /// stored it for everyone).
    MessageStatus {
        /// The local message.
        message_id: MessageId,
        /// The chat.
        chat_id: ChatId,
        /// Whose status changed.
        recipient: Option<UserId>,
        /// The new status.
        status: DeliveryStatus,
    },
    /// A message could not be sent and was dropped from the outbox
    /// (the relay refused it permanently).
    SendFailed {
        /// The local message, if it was a user message.
        message_id: Option<MessageId>,
        /// The chat.
        chat_id: ChatId,
        /// Why.
        reason: String,
    },
    /// A message from `sender` could not be decrypted. The session with that
    /// device is being repaired; the sender may need to resend.
    DecryptionFailed {
        /// The chat.
        chat_id: ChatId,
        /// The sending user.
        sender: UserId,
        /// The sending device.
        sender_device: u32,
        /// The entry's relay seq.
        seq: u64,
        /// Why, for logs.
        reason: String,
    },
    /// A device repaired its session with this device (it could not decrypt
    /// something and started a new session): what this device sends to it
    /// from now on uses the new session.
    SessionReset {
        /// The chat the reset came in.
        chat_id: ChatId,
        /// The user.
        user_id: UserId,
        /// Their device.
        device_id: u32,
    },
    /// A contact's account identity key changed. If the contact was verified
    /// (`was_verified`), sending to them is refused until acknowledged.
    IdentityChanged {
        /// The contact.
        user_id: UserId,
        /// Whether the contact had been marked verified.
        was_verified: bool,
    },
    /// A contact's (or the own account's) device list changed.
    DeviceListChanged {
        /// The user.
        user_id: UserId,
    },
    /// A device list older than the accepted one was offered for `user_id`
    /// and refused (see [`ClientError::DeviceListRollback`](super::error::ClientError::DeviceListRollback)):
    /// the relay (or someone in its place) tried to roll the account back.
    DeviceListRollback {
        /// The account.
        user_id: UserId,
        /// The version accepted before (still in force).
        known_version: u64,
        /// The older version that was offered.
        offered_version: u64,
    },
    /// A contact was marked verified or not, on this device or on another
    /// own device (synced through the note-to-self chat).
    VerificationChanged {
        /// The contact.
        user_id: UserId,
        /// Verified now, or not.
        verified: bool,
    },
    /// A chat's read cursor moved (on this device, or another own device
    /// read it): re-read its unread count from [`Client::chats`](crate::client::Client::chats).
    ChatRead {
        /// The chat.
        chat_id: ChatId,
        /// Highest relay seq read.
        read_seq: u64,
    },
    /// A member set or renamed a group's title. Any member may, so a host
    /// shows who did when it was not this account (a group renamed to the
    /// name of another group must not catch the user out).
    ChatTitleChanged {
        /// The chat.
        chat_id: ChatId,
        /// The new title.
        title: String,
        /// The member who set it (this account's own id when this or another
        /// own device did).
        by: UserId,
    },
    /// An attachment's ciphertext is on the relay (its message is queued
    /// next). `resumed_from` is the offset the relay reported: 0 for a fresh
    /// upload, more when an interrupted upload resumed; only
    /// `size - resumed_from` bytes were sent.
    AttachmentUploaded {
        /// The chat.
        chat_id: ChatId,
        /// The blob id (SHA-256 of the ciphertext).
        blob_id: [u8; 32],
        /// Where the upload started.
        resumed_from: u64,
        /// Ciphertext size.
        size: u64,
    },
    /// A chat's membership changed.
    MembersChanged {
        /// The chat.
        chat_id: ChatId,
        /// Users added.
        added: Vec<UserId>,
        /// Users removed.
        removed: Vec<UserId>,
        /// Users made admins of the group.
        promoted: Vec<UserId>,
    },
    /// Someone started or stopped typing (expire it 5 s after the last `true`).
    Typing {
        /// The chat.
        chat_id: ChatId,
        /// Who.
        user_id: UserId,
        /// Started (`true`) or stopped.
        active: bool,
    },
    /// A subscribed user's presence changed.
    Presence {
        /// Who.
        user_id: UserId,
        /// Whether any of their devices is connected.
        online: bool,
        /// Last seen, milliseconds since the Unix epoch.
        last_seen_ms: u64,
    },
    /// Events were dropped because the host did not keep up; re-read state
    /// from the store (messages, statuses) to catch up.
    Lagged {
        /// How many events were dropped.
        missed: u64,
    },
}

/// A subscription to [`ClientEvent`]s. Each subscription sees every event
/// emitted after it was created.
pub struct EventSubscription {
    receiver: broadcast::Receiver<ClientEvent>,
}

impl EventSubscription {
    pub(crate) fn new(receiver: broadcast::Receiver<ClientEvent>) -> Self {
        Self { receiver }
    }

    /// The next event; `None` once the client is gone.
    pub async fn next(&mut self) -> Option<ClientEvent> {
        match self.receiver.recv().await {
            Ok(event) => Some(event),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                Some(ClientEvent::Lagged { missed })
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }

    /// The next event if one is already waiting, without waiting for one
    /// (`None` when none is queued or the client is gone).
    pub fn try_next(&mut self) -> Option<ClientEvent> {
        match self.receiver.try_recv() {
            Ok(event) => Some(event),
            Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                Some(ClientEvent::Lagged { missed })
            }
            Err(_) => None,
        }
    }
}
