//! The records and enums the bindings exchange, converted from tern-core's
//! value types. User and chat ids cross as lower-case hex (32 characters),
//! local message ids as integers, keys as bytes.

use tern_core::{
    AccountInfo, AttachmentInfo, ChatInfo, ContactInfo, DeviceInfo, Message, MessageId, SearchHit,
    SyncSummary, UserId,
};

use crate::error::TernError;

/// Length in bytes of user and chat ids.
const ID_LEN: usize = 16;

/// Parses a hex user or chat id.
pub(crate) fn parse_id(text: &str) -> Result<[u8; ID_LEN], TernError> {
    let bytes = hex::decode(text).map_err(|_| TernError::invalid("an id must be hex"))?;
    bytes
        .try_into()
        .map_err(|_| TernError::invalid("an id must be 16 bytes (32 hex characters)"))
}

/// Parses a list of hex user ids.
pub(crate) fn parse_ids(texts: &[String]) -> Result<Vec<UserId>, TernError> {
    texts.iter().map(|t| parse_id(t)).collect()
}

/// This device's account.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct Account {
    /// The account's user id (hex).
    pub user_id: String,
    /// The registered user name.
    pub user_name: String,
    /// This device's id within the account.
    pub device_id: u32,
}

impl From<AccountInfo> for Account {
    fn from(a: AccountInfo) -> Self {
        Self {
            user_id: hex::encode(a.user_id),
            user_name: a.user_name,
            device_id: a.device_id,
        }
    }
}

/// How far a contact's identity is trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum Trust {
    /// Trusted on first use, not compared.
    Unverified,
    /// Safety numbers compared and confirmed.
    Verified,
    /// Was verified, and the identity key changed since: sending is held
    /// until the change is accepted.
    IdentityChanged,
}

/// A contact.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct Contact {
    /// User id (hex).
    pub user_id: String,
    /// User name.
    pub user_name: String,
    /// Trust in the contact's identity key.
    pub trust: Trust,
}

impl From<ContactInfo> for Contact {
    fn from(c: ContactInfo) -> Self {
        let trust = match c.verification {
            tern_core::Verification::Default => Trust::Unverified,
            tern_core::Verification::Verified => Trust::Verified,
            tern_core::Verification::Unverified => Trust::IdentityChanged,
        };
        Self {
            user_id: hex::encode(c.user_id),
            user_name: c.user_name,
            trust,
        }
    }
}

/// What a contact's safety number looks like, to compare in person.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct SafetyNumber {
    /// 60 digits, the same on both sides.
    pub digits: String,
    /// The payload to show as a QR code (the digits, ASCII).
    pub qr_payload: Vec<u8>,
}

/// Direct (two people) or group chat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum ChatKind {
    /// Two people.
    Direct,
    /// A group.
    Group,
}

/// A chat.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct Chat {
    /// Chat id (hex).
    pub chat_id: String,
    /// Direct or group.
    pub kind: ChatKind,
    /// Title (the contact's name for a direct chat).
    pub title: String,
    /// Members' user ids (hex), this user included.
    pub members: Vec<String>,
    /// User ids (hex) of the members who are admins of a group (they add
    /// and remove members and promote others); empty for a direct chat.
    pub admins: Vec<String>,
    /// Messages received and not yet marked read.
    pub unread: u64,
}

impl From<ChatInfo> for Chat {
    fn from(c: ChatInfo) -> Self {
        Self {
            chat_id: hex::encode(c.chat_id),
            kind: match c.kind {
                tern_core::ChatKind::Direct => ChatKind::Direct,
                tern_core::ChatKind::Group => ChatKind::Group,
            },
            title: c.title,
            members: c.members.iter().map(hex::encode).collect(),
            admins: c.admins.iter().map(hex::encode).collect(),
            unread: c.unread,
        }
    }
}

/// A message of the history.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct ChatMessage {
    /// Local message id (for status, attachments, receipts).
    pub id: i64,
    /// Chat id (hex).
    pub chat_id: String,
    /// Position in the chat's log; absent while an own message is unsent.
    pub seq: Option<u64>,
    /// Sender's user id (hex).
    pub sender: String,
    /// Sender's device id.
    pub sender_device: u32,
    /// Sent at (sender's clock), ms since the Unix epoch.
    pub sent_at_ms: i64,
    /// Stored on this device at, ms since the Unix epoch.
    pub received_at_ms: i64,
    /// The text (an attachment's file name for an attachment message).
    pub text: String,
    /// Sent by this account.
    pub outgoing: bool,
}

impl From<Message> for ChatMessage {
    fn from(m: Message) -> Self {
        Self {
            id: m.id.0,
            chat_id: hex::encode(m.chat_id),
            seq: m.seq,
            sender: hex::encode(m.sender),
            sender_device: m.sender_device,
            sent_at_ms: m.sent_at_ms,
            received_at_ms: m.received_at_ms,
            text: m.text,
            outgoing: m.outgoing,
        }
    }
}

/// How far an outgoing message got with one recipient: ✓ sent, ✓✓
/// delivered, read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum DeliveryState {
    /// Queued on this device.
    Pending,
    /// Stored by the relay (✓).
    Sent,
    /// Decrypted by a device of the recipient (✓✓).
    Delivered,
    /// Read by the recipient.
    Read,
}

impl From<tern_core::DeliveryStatus> for DeliveryState {
    fn from(s: tern_core::DeliveryStatus) -> Self {
        match s {
            tern_core::DeliveryStatus::Pending => Self::Pending,
            tern_core::DeliveryStatus::Sent => Self::Sent,
            tern_core::DeliveryStatus::Delivered => Self::Delivered,
            tern_core::DeliveryStatus::Read => Self::Read,
        }
    }
}

/// One recipient's state of an outgoing message.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct RecipientState {
    /// Recipient's user id (hex).
    pub user_id: String,
    /// How far the message got.
    pub state: DeliveryState,
}

/// Where an attachment's transfer stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum TransferState {
    /// Being uploaded.
    Uploading,
    /// At the relay.
    Uploaded,
    /// Being downloaded.
    Downloading,
    /// On this device.
    Downloaded,
    /// Failed (a download that did not match its digest).
    Failed,
}

/// An attachment of a message.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct Attachment {
    /// Local attachment id.
    pub id: i64,
    /// The message that carries it.
    pub message_id: i64,
    /// File name.
    pub file_name: String,
    /// MIME type.
    pub content_type: String,
    /// Plaintext size in bytes.
    pub size: u64,
    /// Transfer state.
    pub state: TransferState,
    /// Where the plaintext is on this device, once uploaded or downloaded.
    pub local_path: Option<String>,
}

impl From<AttachmentInfo> for Attachment {
    fn from(a: AttachmentInfo) -> Self {
        Self {
            id: a.id,
            message_id: a.message_id.0,
            file_name: a.file_name,
            content_type: a.content_type,
            size: a.size,
            state: match a.state {
                tern_core::TransferState::Uploading => TransferState::Uploading,
                tern_core::TransferState::Uploaded => TransferState::Uploaded,
                tern_core::TransferState::Downloading => TransferState::Downloading,
                tern_core::TransferState::Downloaded => TransferState::Downloaded,
                tern_core::TransferState::Failed => TransferState::Failed,
            },
            local_path: a.local_path,
        }
    }
}

/// One device of the own account.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct Device {
    /// Device id within the account.
    pub device_id: u32,
    /// Its Ed25519 identity public key.
    pub identity_key: Vec<u8>,
    /// Whether it is this device.
    pub this_device: bool,
}

impl From<DeviceInfo> for Device {
    fn from(d: DeviceInfo) -> Self {
        Self {
            device_id: d.device_id,
            identity_key: d.identity_key.to_vec(),
            this_device: d.this_device,
        }
    }
}

/// A full-text search over the local history.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct SearchOptions {
    /// What the user typed.
    pub text: String,
    /// Match the last word as a prefix (search as you type).
    pub prefix: bool,
    /// Only this chat (hex id).
    pub chat_id: Option<String>,
    /// Only messages sent at or after this time (ms since the epoch).
    pub since_ms: Option<i64>,
    /// Only messages sent before this time (ms since the epoch).
    pub until_ms: Option<i64>,
    /// Most hits to return.
    pub limit: u32,
}

/// Marks put around each matched word in a snippet.
const HIGHLIGHT: (&str, &str) = ("[", "]");

impl SearchOptions {
    pub(crate) fn to_query(&self) -> Result<tern_core::SearchQuery, TernError> {
        Ok(tern_core::SearchQuery {
            text: self.text.clone(),
            prefix: self.prefix,
            chat_id: self.chat_id.as_deref().map(parse_id).transpose()?,
            since_ms: self.since_ms,
            until_ms: self.until_ms,
            limit: self.limit,
            highlight_start: HIGHLIGHT.0.to_owned(),
            highlight_end: HIGHLIGHT.1.to_owned(),
        })
    }
}

/// A message that matched a search.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct SearchResult {
    /// Local message id.
    pub message_id: i64,
    /// Chat id (hex).
    pub chat_id: String,
    /// Sender's user id (hex).
    pub sender: String,
    /// Sent at, ms since the epoch.
    pub sent_at_ms: i64,
    /// The text around the matches, each match in `[` `]`.
    pub snippet: String,
}

impl From<SearchHit> for SearchResult {
    fn from(h: SearchHit) -> Self {
        Self {
            message_id: h.message_id.0,
            chat_id: hex::encode(h.chat_id),
            sender: hex::encode(h.sender.user_id),
            sent_at_ms: h.sent_at_ms,
            snippet: h.snippet,
        }
    }
}

/// What a resync fetched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Record)]
pub struct SyncReport {
    /// Pages fetched.
    pub pages: u32,
    /// Entries processed.
    pub entries: u64,
}

impl From<SyncSummary> for SyncReport {
    fn from(s: SyncSummary) -> Self {
        Self {
            pages: s.pages,
            entries: s.entries,
        }
    }
}

/// A local message id from the bindings.
pub(crate) fn local_id(id: i64) -> MessageId {
    MessageId(id)
}
