//! The relay's error type and its mapping to wire error codes.

use tern_protocol::ProtocolError;
use tern_protocol::wire::{self, ErrorCode, MismatchedDevices};

/// Why a request failed. Every variant maps to one wire [`ErrorCode`].
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The request did not decode or violated a protocol limit.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The request is well-formed but not acceptable.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The connection is not authenticated or a signature did not verify.
    #[error("unauthenticated: {0}")]
    Unauthenticated(&'static str),
    /// The caller may not do this.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// The addressed user, device, chat or blob does not exist.
    #[error("not found: {0}")]
    NotFound(&'static str),
    /// The state changed underneath (name taken, stale version, ...).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// A send did not address exactly the chat's member devices.
    #[error("the send does not address exactly the chat's member devices")]
    MismatchedDevices(MismatchedDevices),
    /// Registration needs a valid invite token.
    #[error("registration needs a valid invite token")]
    InviteRequired,
    /// A quota is exhausted.
    #[error("quota exceeded: {0}")]
    QuotaExceeded(&'static str),
    /// The payload is larger than this relay accepts.
    #[error("too large: {0}")]
    TooLarge(&'static str),
    /// The relay is shutting down or overloaded.
    #[error("unavailable: {0}")]
    Unavailable(&'static str),
    /// Too many requests; retry after the given time.
    #[error("rate limited")]
    RateLimited(std::time::Duration),
    /// Storage failed.
    #[error("storage error: {0}")]
    Store(#[from] StoreError),
}

/// A storage failure, whatever the backend. Details go to the log, never
/// to clients.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (an I/O error, a lost database connection, a
    /// constraint the schema enforces); `backend` names it for the log.
    #[error("{backend}: {source}")]
    Backend {
        /// Which backend (`sqlite`, ...).
        backend: &'static str,
        /// Its error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The disk holding the data is full: nothing was written; writes
    /// succeed again once space is freed (clients get `UNAVAILABLE`).
    #[error("storage full")]
    Full,
    /// The backend cannot be reached right now (a database server down or
    /// restarting, its connections lost): nothing was written; retrying
    /// later succeeds (clients get `UNAVAILABLE`).
    #[error("storage unreachable: {0}")]
    Unreachable(String),
    /// A stored row does not have the expected shape.
    #[error("corrupt row: {0}")]
    Corrupt(&'static str),
    /// The database schema is newer than this relay understands.
    #[error("database schema version {found} is newer than supported version {supported}")]
    SchemaTooNew {
        /// Version found in the database.
        found: i64,
        /// Newest version this build can migrate to.
        supported: i64,
    },
    /// A domain rule failed inside a storage transaction.
    #[error("{0}")]
    Rejected(Box<RelayError>),
    /// The configured databases do not match the layout they were created
    /// with (chat shards added, removed or swapped; docs/cluster.md).
    #[error("storage layout: {0}")]
    Layout(String),
}

impl StoreError {
    /// What the senders of a commit that failed are told: that storage is
    /// full or unreachable (both retryable: a resend with the same client
    /// message id gets its original seq if the commit did land after all),
    /// or that the commit failed.
    pub fn refusal(&self) -> Self {
        match self {
            Self::Full => Self::Full,
            Self::Unreachable(why) => Self::Unreachable(why.clone()),
            _ => Self::Corrupt("commit failed"),
        }
    }
}

impl From<RelayError> for StoreError {
    fn from(e: RelayError) -> Self {
        Self::Rejected(Box::new(e))
    }
}

impl RelayError {
    /// The wire code clients act on.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Protocol(e) => e.error_code(),
            Self::BadRequest(_) => ErrorCode::BadRequest,
            Self::Unauthenticated(_) => ErrorCode::Unauthenticated,
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::Conflict(_) => ErrorCode::Conflict,
            Self::MismatchedDevices(_) => ErrorCode::MismatchedDevices,
            Self::InviteRequired => ErrorCode::InviteRequired,
            Self::QuotaExceeded(_) => ErrorCode::QuotaExceeded,
            Self::TooLarge(_) => ErrorCode::TooLarge,
            Self::Unavailable(_) => ErrorCode::Unavailable,
            Self::RateLimited(_) => ErrorCode::RateLimited,
            Self::Store(StoreError::Rejected(inner)) => inner.code(),
            Self::Store(StoreError::Full | StoreError::Unreachable(_)) => ErrorCode::Unavailable,
            Self::Store(_) => ErrorCode::Internal,
        }
    }

    /// Flattens a domain rejection that travelled through the store.
    pub fn flatten(self) -> Self {
        match self {
            Self::Store(StoreError::Rejected(inner)) => inner.flatten(),
            other => other,
        }
    }

    /// The wire error sent to the client. Internal details stay in the log.
    pub fn to_wire(&self) -> wire::Error {
        let (message, retry_after_ms) = match self {
            Self::Store(StoreError::Rejected(inner)) => return inner.to_wire(),
            Self::Store(StoreError::Full) => ("relay storage is full".to_owned(), 1000),
            Self::Store(StoreError::Unreachable(_)) => {
                ("relay storage is unavailable".to_owned(), 1000)
            }
            Self::Store(_) => ("internal error".to_owned(), 1000),
            Self::Unavailable(_) => (self.to_string(), 1000),
            Self::RateLimited(wait) => (
                self.to_string(),
                u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1),
            ),
            other => (other.to_string(), 0),
        };
        let mut message = message;
        truncate_utf8(&mut message, tern_protocol::limits::MAX_ERROR_MESSAGE_LEN);
        wire::Error {
            code: self.code() as i32,
            message,
            retry_after_ms,
            mismatched_devices: match self {
                Self::MismatchedDevices(m) => Some(m.clone()),
                _ => None,
            },
        }
    }
}

fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}
