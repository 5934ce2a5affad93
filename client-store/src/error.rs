//! The store's error type.

use rusqlite::ErrorCode;
use tern_crypto::store_key::StoreKeyError;

/// Everything that can go wrong in the encrypted local store.
///
/// Variants are stable: callers (and the FFI layer) may match on them. New
/// variants may be added, hence `#[non_exhaustive]`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The passphrase or raw key does not open this store.
    #[error("wrong key: the passphrase or raw key does not open this store")]
    WrongKey,
    /// The database file is damaged or was tampered with (a page failed its
    /// SQLCipher HMAC check, or its structure is invalid).
    #[error("store is corrupt or was tampered with: {0}")]
    Corrupt(String),
    /// The key header file beside the database is missing or malformed.
    #[error("key header: {0}")]
    KeyHeader(&'static str),
    /// Argon2id parameters outside the accepted bounds.
    #[error("invalid key-derivation parameters: {0}")]
    InvalidKdfParams(&'static str),
    /// The key derivation function failed.
    #[error("key derivation failed")]
    KeyDerivation,
    /// The operating system's random number generator failed.
    #[error("random number generator unavailable")]
    Random,
    /// The database was written by a newer version of Tern.
    #[error("store schema version {found} is newer than the supported {supported}")]
    SchemaTooNew {
        /// Version found in the database.
        found: i64,
        /// Newest version this build understands.
        supported: i64,
    },
    /// A value exceeds a size limit of the store.
    #[error("{what} too large: {len} bytes, at most {max}")]
    TooLarge {
        /// Which value.
        what: &'static str,
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A number does not fit the store's 63-bit integer columns.
    #[error("{0} out of range")]
    OutOfRange(&'static str),
    /// The record an operation refers to does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The outbox holds its maximum number of unsent messages.
    #[error("outbox full: {max} unsent messages")]
    OutboxFull {
        /// The outbox bound.
        max: usize,
    },
    /// Filesystem error on the key header or database directory.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Any other SQLite error.
    #[error("database error: {0}")]
    Database(rusqlite::Error),
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        match err.sqlite_error_code() {
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
                Self::Corrupt(err.to_string())
            }
            _ => Self::Database(err),
        }
    }
}

impl From<StoreKeyError> for StoreError {
    fn from(err: StoreKeyError) -> Self {
        match err {
            StoreKeyError::InvalidKdfParams(what) => Self::InvalidKdfParams(what),
            StoreKeyError::KeyDerivation => Self::KeyDerivation,
            StoreKeyError::KeyHeader(what) => Self::KeyHeader(what),
            StoreKeyError::WrongKey => Self::WrongKey,
        }
    }
}
