//! The one error type of the public client API.

use crate::net::NetError;
use crate::store::StoreError;

/// Everything a [`Client`](crate::client::Client) call can fail with.
///
/// The variants are stable: hosts (the CLI, the FFI) match on them. Details
/// are in the message text, which is for logs and may change.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The passphrase or raw key does not open the local store.
    #[error("wrong passphrase or key for the local store")]
    WrongKey,
    /// The local store is damaged or was tampered with.
    #[error("local store corrupt: {0}")]
    StoreCorrupt(String),
    /// `open` found no account in the store, or `create` found one already.
    #[error("{0}")]
    AccountState(&'static str),
    /// Any other local store failure (disk full, I/O error, limits).
    #[error("local store: {0}")]
    Store(String),
    /// The relay could not be reached or the connection dropped; the call may
    /// succeed later. Messages already accepted by `send_*` stay queued.
    #[error("relay unreachable: {0}")]
    Offline(String),
    /// The relay refused the request (name taken, not found, forbidden, ...).
    #[error("relay refused: {0}")]
    Refused(String),
    /// The relay refused because a storage quota of the account is used up
    /// (queued messages, blob bytes); retrying does not help until the
    /// recipients catch up or the operator raises the quota.
    #[error("relay quota exceeded: {0}")]
    Quota(String),
    /// No user with this name or id exists.
    #[error("no such user: {0}")]
    UnknownUser(String),
    /// The chat is not known on this device.
    #[error("unknown chat")]
    UnknownChat,
    /// A verified contact's identity key changed: sending to them is refused
    /// until the change is acknowledged with
    /// [`Client::acknowledge_identity_change`](crate::client::Client::acknowledge_identity_change).
    #[error("the identity key of a verified contact changed; acknowledge it first")]
    UntrustedIdentity,
    /// Data from the relay or a peer failed verification (bad signature,
    /// device-list rollback, malformed bundle).
    #[error("verification failed: {0}")]
    Verification(String),
    /// A device list older than the one this device accepted before was
    /// offered (a rollback by the relay or a replay); it was refused and
    /// nothing stored changed.
    #[error(
        "device list rollback for {user}: version {offered} is older than the accepted {known}"
    )]
    DeviceListRollback {
        /// The account, in hex.
        user: String,
        /// The version accepted before.
        known: u64,
        /// The older version offered.
        offered: u64,
    },
    /// An argument was invalid (empty text, text too long, bad user name).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// The encrypted message is larger than the relay accepts (`len` bytes of
    /// ciphertext, at most `max`); it was dropped from the outbox, since
    /// sending it again cannot succeed.
    #[error("message too large: {len} bytes encrypted, the relay accepts {max}")]
    MessageTooLarge {
        /// Size of the largest ciphertext.
        len: usize,
        /// The relay's limit.
        max: usize,
    },
    /// The client was shut down.
    #[error("the client is shut down")]
    Closed,
}

impl From<StoreError> for ClientError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::WrongKey => Self::WrongKey,
            StoreError::Corrupt(detail) => Self::StoreCorrupt(detail),
            other => Self::Store(other.to_string()),
        }
    }
}

impl From<NetError> for ClientError {
    fn from(e: NetError) -> Self {
        if e.is_transient() {
            Self::Offline(e.to_string())
        } else if matches!(
            e,
            NetError::Relay {
                code: tern_protocol::wire::ErrorCode::QuotaExceeded,
                ..
            }
        ) {
            Self::Quota(e.to_string())
        } else {
            Self::Refused(e.to_string())
        }
    }
}

impl From<tern_crypto::CryptoError> for ClientError {
    fn from(e: tern_crypto::CryptoError) -> Self {
        Self::Verification(e.to_string())
    }
}
