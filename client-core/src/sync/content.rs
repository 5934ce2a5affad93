//! The plaintext content format: what a ciphertext decrypts to.
//!
//! Every end-to-end encrypted payload is one protobuf [`Content`] (schema and
//! rules in `docs/client.md`). The relay never sees it. Decoding is bounded by
//! the ciphertext limit (64 KiB) and every field is validated before use.

use prost::Message;
use zeroize::Zeroize;

use super::device_sync::DeviceSync;
use crate::store::{ChatId, ClientMessageId, ID_LEN, UserId};

/// Version of the content format this build writes and reads.
pub const CONTENT_VERSION: u32 = 1;
/// Most client message ids one receipt may name.
pub const MAX_RECEIPT_IDS: usize = 1000;
/// Largest text body, in bytes (the store's message body limit).
pub const MAX_TEXT_LEN: usize = 64 * 1024;

/// One decrypted payload.
#[derive(Clone, PartialEq, Message)]
pub struct Content {
    /// Format version; a receiver refuses versions it does not know.
    #[prost(uint32, tag = "1")]
    pub version: u32,
    /// Send time on the sender's clock, milliseconds since the Unix epoch.
    #[prost(uint64, tag = "2")]
    pub sent_at_ms: u64,
    /// What the payload carries.
    #[prost(oneof = "Body", tags = "3, 4, 5, 6, 7, 8, 9, 10, 11, 13")]
    pub body: Option<Body>,
    /// Set when this content sends again the message first sent under this
    /// client message id (16 bytes), answering a [`RetryRequest`]: the
    /// receiver stores it under that id. Only with a text or attachment, or
    /// with a session reset meaning "that entry showed nothing".
    #[prost(bytes = "vec", tag = "12")]
    pub resends: Vec<u8>,
}

/// The kinds of content.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Body {
    /// A text message shown in the chat.
    #[prost(message, tag = "3")]
    Text(Text),
    /// Delivered or read receipts for earlier messages of the same chat.
    #[prost(message, tag = "4")]
    Receipt(Receipt),
    /// A control message whose only purpose is to carry a new session
    /// (session repair after an undecryptable message).
    #[prost(message, tag = "5")]
    SessionReset(SessionReset),
    /// An encrypted file stored in the relay's blob store.
    #[prost(message, tag = "6")]
    Attachment(AttachmentPointer),
    /// The sender's current sender-key chain for the group chat this is sent
    /// in (only ever inside a pairwise session).
    #[prost(message, tag = "7")]
    SenderKeyDistribution(SenderKeyDistribution),
    /// Contacts, chats and recent history for a newly linked own device.
    #[prost(message, tag = "9")]
    DeviceSync(DeviceSync),
    /// The read cursor of one chat, for the account's other devices (sent in
    /// the note-to-self chat only).
    #[prost(message, tag = "10")]
    ReadState(ReadState),
    /// The title of the group chat this is sent in, for every member.
    #[prost(message, tag = "8")]
    GroupTitle(GroupTitle),
    /// A contact's verification state, for the account's other devices
    /// (sent in the note-to-self chat only).
    #[prost(message, tag = "11")]
    VerificationState(VerificationState),
    /// "I could not decrypt your message": asks one device to send a message
    /// of this chat again (Signal's retry receipt).
    #[prost(message, tag = "13")]
    RetryRequest(RetryRequest),
}

/// Asks the device that sent a message this device could not decrypt to send
/// its content again. Sent in the message's chat; every other device ignores
/// it.
#[derive(Clone, PartialEq, Message)]
pub struct RetryRequest {
    /// The sender's account id, 16 bytes.
    #[prost(bytes = "vec", tag = "1")]
    pub user_id: Vec<u8>,
    /// The sending device.
    #[prost(uint32, tag = "2")]
    pub device_id: u32,
    /// The client message id of the entry that failed, 16 bytes.
    #[prost(bytes = "vec", tag = "3")]
    pub client_message_id: Vec<u8>,
}

/// Whether the user marked a contact's account identity key verified.
#[derive(Clone, PartialEq, Message)]
pub struct VerificationState {
    /// The contact's account id, 16 bytes.
    #[prost(bytes = "vec", tag = "1")]
    pub user_id: Vec<u8>,
    /// The contact's account identity key the decision is about, 32 bytes:
    /// a device whose pinned key differs ignores the message.
    #[prost(bytes = "vec", tag = "2")]
    pub identity_key: Vec<u8>,
    /// Verified (after comparing safety numbers) or not.
    #[prost(bool, tag = "3")]
    pub verified: bool,
}

/// Where the user has read a chat up to.
#[derive(Clone, PartialEq, Message)]
pub struct ReadState {
    /// The chat, 16 bytes.
    #[prost(bytes = "vec", tag = "1")]
    pub chat_id: Vec<u8>,
    /// Highest relay seq read.
    #[prost(uint64, tag = "2")]
    pub read_seq: u64,
}

/// A group chat's title, set at creation or renamed.
#[derive(Clone, PartialEq, Message)]
pub struct GroupTitle {
    /// UTF-8, at most [`MAX_TITLE_LEN`] bytes.
    #[prost(string, tag = "1")]
    pub title: String,
}

/// Longest group title, in bytes (the store's chat title limit).
pub const MAX_TITLE_LEN: usize = crate::store::MAX_NAME_LEN;

/// Where an attachment is and how to open it.
#[derive(Clone, PartialEq, Message)]
pub struct AttachmentPointer {
    /// SHA-256 of the ciphertext (the relay's blob id), 32 bytes.
    #[prost(bytes = "vec", tag = "1")]
    pub blob_id: Vec<u8>,
    /// The chunked-AEAD key, 32 bytes.
    #[prost(bytes = "vec", tag = "2")]
    pub key: Vec<u8>,
    /// Plaintext size in bytes.
    #[prost(uint64, tag = "3")]
    pub size: u64,
    /// MIME type, at most 256 bytes.
    #[prost(string, tag = "4")]
    pub content_type: String,
    /// File name, at most 256 bytes.
    #[prost(string, tag = "5")]
    pub file_name: String,
}

impl Drop for AttachmentPointer {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

/// A validated attachment pointer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// Blob id (SHA-256 of the ciphertext).
    pub blob_id: [u8; 32],
    /// Chunked-AEAD key.
    pub key: SecretBytes,
    /// Plaintext size.
    pub size: u64,
    /// MIME type.
    pub content_type: String,
    /// File name.
    pub file_name: String,
}

/// Longest attachment name or content type.
pub const MAX_ATTACHMENT_NAME_LEN: usize = 256;
/// Largest attachment plaintext (the protocol's blob ceiling).
pub const MAX_ATTACHMENT_LEN: u64 = 2 << 30;

/// A sender-key distribution message (`crypto.md`), opaque here.
#[derive(Clone, PartialEq, Message)]
pub struct SenderKeyDistribution {
    /// The encoded distribution message.
    #[prost(bytes = "vec", tag = "1")]
    pub message: Vec<u8>,
}

impl Drop for SenderKeyDistribution {
    fn drop(&mut self) {
        self.message.zeroize();
    }
}

/// Secret bytes: wiped on drop, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(pub Vec<u8>);

impl Drop for SecretBytes {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBytes({} bytes)", self.0.len())
    }
}

/// A text message.
#[derive(Clone, PartialEq, Message)]
pub struct Text {
    /// UTF-8 body, at most [`MAX_TEXT_LEN`] bytes.
    #[prost(string, tag = "1")]
    pub body: String,
}

/// A receipt for messages of the chat it is sent in.
#[derive(Clone, PartialEq, Message)]
pub struct Receipt {
    /// 1 = delivered, 2 = read.
    #[prost(uint32, tag = "1")]
    pub kind: u32,
    /// Client message ids of the receipted messages (16 bytes each).
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub client_message_ids: Vec<Vec<u8>>,
}

/// Session repair marker (no fields).
#[derive(Clone, PartialEq, Message)]
pub struct SessionReset {}

/// Receipt levels carried by [`Receipt::kind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiptKind {
    /// A device of the recipient stored the message.
    Delivered,
    /// The recipient read the message.
    Read,
}

impl ReceiptKind {
    fn wire(self) -> u32 {
        match self {
            Self::Delivered => 1,
            Self::Read => 2,
        }
    }
}

/// A validated, decoded payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// Text to show.
    Text(String),
    /// Receipts for messages of this chat.
    Receipt(ReceiptKind, Vec<ClientMessageId>),
    /// Session repair marker.
    SessionReset,
    /// A sender-key distribution message for this (group) chat.
    SenderKeyDistribution(SecretBytes),
    /// An attachment.
    Attachment(Attachment),
    /// Own-device sync (accepted only from the own account's devices).
    DeviceSync(DeviceSync),
    /// Another own device read `chat` up to seq (accepted only from the own
    /// account's devices).
    ReadState(ChatId, u64),
    /// The group's title.
    GroupTitle(String),
    /// Asks `device` of `user` to send its message `message_id` of this chat
    /// again.
    RetryRequest {
        /// The account that sent the message.
        user: UserId,
        /// Its device that sent it.
        device: u32,
        /// The message's client message id.
        message_id: ClientMessageId,
    },
    /// A text or attachment sent again under a new transport id, stored under
    /// `original`, the id it was first sent with; or a session reset under
    /// `original`: that entry showed nothing.
    Resent {
        /// The first client message id.
        original: ClientMessageId,
        /// The text or attachment.
        payload: Box<Payload>,
    },
    /// Another own device marked a contact (with this account key) verified or
    /// not (accepted only from the own account's devices).
    VerificationState {
        /// The contact.
        user_id: UserId,
        /// The contact's account identity key the decision is about.
        identity_key: [u8; 32],
        /// Verified or not.
        verified: bool,
    },
}

/// Why a decrypted payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentError {
    /// Not a valid protobuf `Content`.
    #[error("malformed content")]
    Malformed,
    /// A content version this build does not understand.
    #[error("unsupported content version {0}")]
    UnsupportedVersion(u32),
    /// A kind of content this build does not understand.
    #[error("unknown content kind")]
    UnknownKind,
    /// A field violates its limit.
    #[error("invalid content field: {0}")]
    Invalid(&'static str),
}

impl Payload {
    /// Encodes the payload as a [`Content`] stamped with `sent_at_ms`.
    pub fn encode(&self, sent_at_ms: u64) -> Vec<u8> {
        let (inner, resends) = match self {
            Self::Resent { original, payload } => (payload.as_ref(), original.to_vec()),
            other => (other, Vec::new()),
        };
        Content {
            version: CONTENT_VERSION,
            sent_at_ms,
            body: Some(inner.body()),
            resends,
        }
        .encode_to_vec()
    }

    /// The content body of a payload ([`Self::Resent`] adds a field around
    /// the body of what it carries).
    fn body(&self) -> Body {
        match self {
            Self::Text(body) => Body::Text(Text { body: body.clone() }),
            Self::Receipt(kind, ids) => Body::Receipt(Receipt {
                kind: kind.wire(),
                client_message_ids: ids.iter().map(|id| id.to_vec()).collect(),
            }),
            Self::SessionReset => Body::SessionReset(SessionReset {}),
            Self::SenderKeyDistribution(message) => {
                Body::SenderKeyDistribution(SenderKeyDistribution {
                    message: message.0.clone(),
                })
            }
            Self::DeviceSync(sync) => Body::DeviceSync(sync.clone()),
            Self::ReadState(chat_id, read_seq) => Body::ReadState(ReadState {
                chat_id: chat_id.to_vec(),
                read_seq: *read_seq,
            }),
            Self::GroupTitle(title) => Body::GroupTitle(GroupTitle {
                title: title.clone(),
            }),
            Self::VerificationState {
                user_id,
                identity_key,
                verified,
            } => Body::VerificationState(VerificationState {
                user_id: user_id.to_vec(),
                identity_key: identity_key.to_vec(),
                verified: *verified,
            }),
            Self::Attachment(a) => Body::Attachment(AttachmentPointer {
                blob_id: a.blob_id.to_vec(),
                key: a.key.0.clone(),
                size: a.size,
                content_type: a.content_type.clone(),
                file_name: a.file_name.clone(),
            }),
            Self::RetryRequest {
                user,
                device,
                message_id,
            } => Body::RetryRequest(RetryRequest {
                user_id: user.to_vec(),
                device_id: *device,
                client_message_id: message_id.to_vec(),
            }),
            Self::Resent { payload, .. } => payload.body(),
        }
    }

    /// Decodes and validates a decrypted payload; returns it with its send time.
    pub fn decode(bytes: &[u8]) -> Result<(Self, u64), ContentError> {
        let content = Content::decode(bytes).map_err(|_| ContentError::Malformed)?;
        if content.version != CONTENT_VERSION {
            return Err(ContentError::UnsupportedVersion(content.version));
        }
        let payload = match content.body.ok_or(ContentError::UnknownKind)? {
            Body::Text(text) => {
                if text.body.len() > MAX_TEXT_LEN {
                    return Err(ContentError::Invalid("Text.body"));
                }
                Self::Text(text.body)
            }
            Body::Receipt(receipt) => {
                let kind = match receipt.kind {
                    1 => ReceiptKind::Delivered,
                    2 => ReceiptKind::Read,
                    _ => return Err(ContentError::Invalid("Receipt.kind")),
                };
                if receipt.client_message_ids.len() > MAX_RECEIPT_IDS {
                    return Err(ContentError::Invalid("Receipt.client_message_ids"));
                }
                let ids = receipt
                    .client_message_ids
                    .iter()
                    .map(|id| <[u8; ID_LEN]>::try_from(id.as_slice()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| ContentError::Invalid("Receipt.client_message_ids"))?;
                Self::Receipt(kind, ids)
            }
            Body::SessionReset(_) => Self::SessionReset,
            Body::SenderKeyDistribution(distribution) => {
                Self::SenderKeyDistribution(SecretBytes(distribution.message.clone()))
            }
            Body::Attachment(pointer) => Self::Attachment(Attachment::validate(&pointer)?),
            Body::DeviceSync(sync) => Self::DeviceSync(sync),
            Body::ReadState(state) => {
                let chat_id = ChatId::try_from(state.chat_id.as_slice())
                    .map_err(|_| ContentError::Invalid("ReadState.chat_id"))?;
                Self::ReadState(chat_id, state.read_seq)
            }
            Body::GroupTitle(group) => {
                if group.title.len() > MAX_TITLE_LEN {
                    return Err(ContentError::Invalid("GroupTitle.title"));
                }
                Self::GroupTitle(group.title)
            }
            Body::VerificationState(state) => Self::VerificationState {
                user_id: UserId::try_from(state.user_id.as_slice())
                    .map_err(|_| ContentError::Invalid("VerificationState.user_id"))?,
                identity_key: <[u8; 32]>::try_from(state.identity_key.as_slice())
                    .map_err(|_| ContentError::Invalid("VerificationState.identity_key"))?,
                verified: state.verified,
            },
            Body::RetryRequest(request) => Self::RetryRequest {
                user: UserId::try_from(request.user_id.as_slice())
                    .map_err(|_| ContentError::Invalid("RetryRequest.user_id"))?,
                device: request.device_id,
                message_id: ClientMessageId::try_from(request.client_message_id.as_slice())
                    .map_err(|_| ContentError::Invalid("RetryRequest.client_message_id"))?,
            },
        };
        if content.resends.is_empty() {
            return Ok((payload, content.sent_at_ms));
        }
        let original = ClientMessageId::try_from(content.resends.as_slice())
            .map_err(|_| ContentError::Invalid("Content.resends"))?;
        if !matches!(
            payload,
            Self::Text(_) | Self::Attachment(_) | Self::SessionReset
        ) {
            return Err(ContentError::Invalid("Content.resends"));
        }
        let resent = Self::Resent {
            original,
            payload: Box::new(payload),
        };
        Ok((resent, content.sent_at_ms))
    }
}

impl Attachment {
    fn validate(pointer: &AttachmentPointer) -> Result<Self, ContentError> {
        let blob_id = <[u8; 32]>::try_from(pointer.blob_id.as_slice())
            .map_err(|_| ContentError::Invalid("Attachment.blob_id"))?;
        if pointer.key.len() != 32 {
            return Err(ContentError::Invalid("Attachment.key"));
        }
        if pointer.size > MAX_ATTACHMENT_LEN {
            return Err(ContentError::Invalid("Attachment.size"));
        }
        if pointer.content_type.len() > MAX_ATTACHMENT_NAME_LEN
            || pointer.file_name.len() > MAX_ATTACHMENT_NAME_LEN
        {
            return Err(ContentError::Invalid("Attachment.file_name"));
        }
        Ok(Self {
            blob_id,
            key: SecretBytes(pointer.key.clone()),
            size: pointer.size,
            content_type: pointer.content_type.clone(),
            file_name: pointer.file_name.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip() {
        for payload in [
            Payload::Text("hello ✓".into()),
            Payload::Receipt(ReceiptKind::Read, vec![[7; ID_LEN], [9; ID_LEN]]),
            Payload::SessionReset,
            Payload::SenderKeyDistribution(SecretBytes(vec![1, 4, 9])),
            Payload::Attachment(Attachment {
                blob_id: [3; 32],
                key: SecretBytes(vec![5; 32]),
                size: 12,
                content_type: "image/png".into(),
                file_name: "cat.png".into(),
            }),
            Payload::ReadState([4; ID_LEN], 17),
            Payload::GroupTitle("Climbing ⛰".into()),
            Payload::VerificationState {
                user_id: [5; ID_LEN],
                identity_key: [6; 32],
                verified: true,
            },
            Payload::RetryRequest {
                user: [8; ID_LEN],
                device: 3,
                message_id: [9; ID_LEN],
            },
            Payload::Resent {
                original: [10; ID_LEN],
                payload: Box::new(Payload::Text("again".into())),
            },
        ] {
            let bytes = payload.encode(42);
            assert_eq!(Payload::decode(&bytes), Ok((payload, 42)));
        }
    }

    #[test]
    fn hostile_content_is_refused() {
        let future = Content {
            version: 2,
            sent_at_ms: 0,
            body: None,
            resends: Vec::new(),
        };
        assert_eq!(
            Payload::decode(&future.encode_to_vec()),
            Err(ContentError::UnsupportedVersion(2))
        );
        let empty = Content {
            version: CONTENT_VERSION,
            sent_at_ms: 0,
            body: None,
            resends: Vec::new(),
        };
        assert_eq!(
            Payload::decode(&empty.encode_to_vec()),
            Err(ContentError::UnknownKind)
        );
        let short_id = Content {
            version: CONTENT_VERSION,
            sent_at_ms: 0,
            body: Some(Body::Receipt(Receipt {
                kind: 1,
                client_message_ids: vec![vec![1; 3]],
            })),
            resends: Vec::new(),
        };
        assert!(matches!(
            Payload::decode(&short_id.encode_to_vec()),
            Err(ContentError::Invalid(_))
        ));
        let long_title = Content {
            version: CONTENT_VERSION,
            sent_at_ms: 0,
            body: Some(Body::GroupTitle(GroupTitle {
                title: "t".repeat(MAX_TITLE_LEN + 1),
            })),
            resends: Vec::new(),
        };
        assert_eq!(
            Payload::decode(&long_title.encode_to_vec()),
            Err(ContentError::Invalid("GroupTitle.title"))
        );
        let short_chat = Content {
            version: CONTENT_VERSION,
            sent_at_ms: 0,
            body: Some(Body::ReadState(ReadState {
                chat_id: vec![1; 15],
                read_seq: 3,
            })),
            resends: Vec::new(),
        };
        assert_eq!(
            Payload::decode(&short_chat.encode_to_vec()),
            Err(ContentError::Invalid("ReadState.chat_id"))
        );
        let short_key = Content {
            version: CONTENT_VERSION,
            sent_at_ms: 0,
            body: Some(Body::VerificationState(VerificationState {
                user_id: vec![1; ID_LEN],
                identity_key: vec![2; 31],
                verified: true,
            })),
            resends: Vec::new(),
        };
        assert_eq!(
            Payload::decode(&short_key.encode_to_vec()),
            Err(ContentError::Invalid("VerificationState.identity_key"))
        );
        assert_eq!(Payload::decode(&[0xff, 0xff]), Err(ContentError::Malformed));
        let resent = |body, resends| Content {
            version: CONTENT_VERSION,
            sent_at_ms: 0,
            body: Some(body),
            resends,
        };
        // Only texts, attachments and resets are sent again, under a 16-byte id.
        let title = resent(
            Body::GroupTitle(GroupTitle { title: "t".into() }),
            vec![1; ID_LEN],
        );
        let short = resent(Body::Text(Text { body: "x".into() }), vec![1; 3]);
        for content in [title, short] {
            assert_eq!(
                Payload::decode(&content.encode_to_vec()),
                Err(ContentError::Invalid("Content.resends"))
            );
        }
    }
}
