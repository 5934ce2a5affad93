//! Tern client core: one [`Client`] per device, the API that the `tern` CLI
//! and the FFI bindings use.
//!
//! The public surface is what this page lists: the [`Client`] and its
//! [`ClientConfig`], owned value types (ids, [`Message`], [`ChatInfo`], …),
//! one error enum ([`ClientError`]) with stable variants, and the
//! [`ClientEvent`]s a host receives through [`Client::subscribe`]. Two
//! injection points serve hosts and tests: the [`Clock`] and a [`RelayLayer`]
//! that wraps every relay connection the client opens.
//!
//! Inside, the layers run one way (`docs/architecture.md`; a test checks it):
//! `client` (the API) → `sync` (the engine: outbox, send, receive, resync,
//! receipts, group sender keys, prekey rotation) → `model` (shared values,
//! events, errors) → [`net`] (the QUIC relay connection, public for low-level
//! tools) and `tern-store` (the encrypted local store). Every cryptographic
//! construction is in `tern-crypto`. [`content`] is the end-to-end plaintext
//! format (`docs/client.md` §3), public so other implementations can test
//! against it.

#![deny(unreachable_pub)]

mod client;
mod model;
pub mod net;
mod random;
/// The encrypted local store is its own crate; `crate::store` names it here.
use tern_store as store;
mod sync;

pub use client::{
    AccountInfo, AttachmentInfo, BlobSink, BlobSource, ChatId, ChatInfo, ChatKind, Client,
    ClientConfig, ClientError, ClientEvent, ClientMessageId, Clock, ConnectionState, ContactInfo,
    DeliveryStatus, DeviceInfo, EventSubscription, KdfParams, KeySource, LinkApproval, LinkFuture,
    LinkOffer, Message, MessageId, PrekeyRotation, PrekeyRotations, Relay, RelayEvents, RelayLayer,
    RelayLink, SearchHit, SearchQuery, SyncSummary, SystemClock, TransferProgress, TransferState,
    UserId, Verification, direct_chat_id,
};
pub use net::{NetError, RelayAddress};
/// The text of the history entry standing in for a message that could not
/// be decrypted (its sender was asked to send it again; the entry is
/// replaced if it does). Hosts may show it differently.
pub use sync::UNDECRYPTABLE_TEXT;
pub use sync::content;
pub use tern_transport::{CertFingerprint, TrustPolicy};
