//! The one error of the bindings: every exported call fails with a
//! [`TernError`] variant, which the foreign side sees as a typed exception
//! (`TernException.WrongPassphrase` in Kotlin, `TernError.WrongPassphrase`
//! in Swift and Python). The variants are stable; `detail` texts are for
//! logs and may change.

use tern_core::ClientError;

/// Why a call failed.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum TernError {
    /// The passphrase or raw key does not open the local store.
    #[error("wrong passphrase or key for the local store")]
    WrongPassphrase,
    /// The local store is damaged or was tampered with.
    #[error("local store corrupt: {detail}")]
    StoreCorrupt {
        /// What was found.
        detail: String,
    },
    /// `open` found no account in the store, or `create`/`link` found one.
    #[error("{detail}")]
    AccountState {
        /// Which.
        detail: String,
    },
    /// Another local store or file failure (disk full, I/O).
    #[error("local store: {detail}")]
    Storage {
        /// What failed.
        detail: String,
    },
    /// The relay cannot be reached or the connection dropped; retry later.
    /// Messages already queued stay queued.
    #[error("relay unreachable: {detail}")]
    RelayUnreachable {
        /// Why.
        detail: String,
    },
    /// The relay refused the request (name taken, forbidden, expired link
    /// code, …).
    #[error("relay refused: {detail}")]
    Refused {
        /// The relay's reason.
        detail: String,
    },
    /// A storage quota of the account at the relay is used up.
    #[error("relay quota exceeded: {detail}")]
    Quota {
        /// The relay's reason.
        detail: String,
    },
    /// No such user (by name or id) or no such contact on this device.
    #[error("unknown contact: {user}")]
    UnknownContact {
        /// The name or hex user id asked for.
        user: String,
    },
    /// No such chat on this device.
    #[error("unknown chat")]
    UnknownChat,
    /// A verified contact's identity key changed: sending to them is held
    /// until the app calls `accept_identity_change`.
    #[error("the identity key of a verified contact changed; accept the change first")]
    IdentityChanged,
    /// A signature, key or safety check failed.
    #[error("verification failed: {detail}")]
    Verification {
        /// Which check.
        detail: String,
    },
    /// The relay offered an older signed device list than one already seen.
    #[error("device list rollback for {user}: version {offered} is older than {known}")]
    DeviceListRollback {
        /// The user.
        user: String,
        /// The version already accepted.
        known: u64,
        /// The version offered.
        offered: u64,
    },
    /// An argument is malformed or out of range.
    #[error("invalid argument: {detail}")]
    InvalidArgument {
        /// Which and why.
        detail: String,
    },
    /// The message would be larger than the relay accepts once encrypted.
    #[error("message too large: {len} bytes encrypted, the relay accepts {max}")]
    MessageTooLarge {
        /// Encrypted size.
        len: u64,
        /// The relay's limit.
        max: u64,
    },
    /// The client was shut down.
    #[error("the client is shut down")]
    Closed,
    /// The call was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// A bug: a panic inside the library, caught at the boundary.
    #[error("internal error: {detail}")]
    Internal {
        /// The panic message.
        detail: String,
    },
}

impl TernError {
    /// An [`TernError::InvalidArgument`] with this detail.
    pub(crate) fn invalid(detail: impl Into<String>) -> Self {
        Self::InvalidArgument {
            detail: detail.into(),
        }
    }
}

impl From<ClientError> for TernError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::WrongKey => Self::WrongPassphrase,
            ClientError::StoreCorrupt(detail) => Self::StoreCorrupt { detail },
            ClientError::AccountState(detail) => Self::AccountState {
                detail: detail.to_owned(),
            },
            ClientError::Store(detail) => Self::Storage { detail },
            ClientError::Offline(detail) => Self::RelayUnreachable { detail },
            ClientError::Refused(detail) => Self::Refused { detail },
            ClientError::Quota(detail) => Self::Quota { detail },
            ClientError::UnknownUser(user) => Self::UnknownContact { user },
            ClientError::UnknownChat => Self::UnknownChat,
            ClientError::UntrustedIdentity => Self::IdentityChanged,
            ClientError::Verification(detail) => Self::Verification { detail },
            ClientError::DeviceListRollback {
                user,
                known,
                offered,
            } => Self::DeviceListRollback {
                user,
                known,
                offered,
            },
            ClientError::InvalidArgument(detail) => Self::invalid(detail),
            ClientError::MessageTooLarge { len, max } => Self::MessageTooLarge {
                len: len as u64,
                max: max as u64,
            },
            ClientError::Closed => Self::Closed,
        }
    }
}

impl From<std::io::Error> for TernError {
    fn from(e: std::io::Error) -> Self {
        Self::Storage {
            detail: e.to_string(),
        }
    }
}
