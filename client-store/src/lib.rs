//! The encrypted local store: keys, sessions, contacts, chats, history and
//! full-text search in one SQLCipher database.
//!
//! [`Store::open`] takes a [`KeySource`]: a passphrase stretched with Argon2id
//! (parameters and salt in a key header beside the database, see [`key`]) or
//! a raw 32-byte key from the host. Every write goes through
//! [`Store::transaction`], so a crypto state change and the message it belongs
//! to commit together or not at all:
//!
//! ```no_run
//! # use tern_store::*;
//! # fn demo(store: &Store, addr: DeviceAddress, msg: NewMessage) -> Result<(), StoreError> {
//! store.transaction(|tx| {
//!     tx.put_session(&addr, b"session-1", b"ratchet state", true)?;
//!     tx.insert_message(&msg)?;
//!     Ok::<_, StoreError>(())
//! })?;
//! # Ok(()) }
//! ```
//!
//! Reads that need no write lock (history pages, [`Store::search`]) can use
//! [`Store::read`]: a read-only snapshot on a second connection that neither
//! waits for nor blocks a writer.
//!
//! The store is `Send + Sync`: two connections (writer, reader), each behind a
//! mutex. Durability: WAL with `synchronous = FULL`, so a committed transaction
//! survives power loss. Up to 16 MiB of decrypted pages are cached per
//! connection.

mod attachments;
mod contacts;
mod crypto_state;
mod device_lists;
mod error;
pub mod key;
mod messages;
mod schema;
mod search;
mod sql;
mod sync_state;
mod uploads;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, TransactionBehavior};
use zeroize::Zeroizing;

pub use attachments::{Attachment, NewAttachment, TransferState};
pub use contacts::{Chat, ChatKind, Contact, MAX_NAME_LEN, Verification};
pub use crypto_state::{IdentitySlot, PrekeyKind, SessionRecord};
pub use device_lists::{MAX_DEVICE_LIST_LEN, StoredDeviceList};
pub use error::StoreError;
pub use messages::{DeliveryStatus, InsertOutcome, MessageId, NewMessage, StoredMessage};
pub use schema::SCHEMA_VERSION;
pub use search::{SearchHit, SearchQuery};
pub use sync_state::{OutboxEntry, RelayCursor};
pub use tern_crypto::store_key::{KdfParams, KeySource};
pub use uploads::{MAX_PENDING_UPLOADS, PendingUpload};

/// The operating system's random generator, for the key header's salt.
fn rng() -> rand_core::UnwrapErr<getrandom::SysRng> {
    rand_core::UnwrapErr(getrandom::SysRng)
}

/// Length of user, chat and client-message ids (matches the wire protocol).
pub const ID_LEN: usize = 16;
/// An account id.
pub type UserId = [u8; ID_LEN];
/// A chat id.
pub type ChatId = [u8; ID_LEN];
/// A client-generated message id; deduplicates retries.
pub type ClientMessageId = [u8; ID_LEN];

/// One device of one user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeviceAddress {
    /// The account.
    pub user_id: UserId,
    /// The device within the account.
    pub device_id: u32,
}

/// How long a statement waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The encrypted local store.
pub struct Store {
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store at `path`, creating it (and its key header) if absent,
    /// and migrates it to [`SCHEMA_VERSION`].
    ///
    /// Fails with [`StoreError::WrongKey`] when the key does not open it and
    /// [`StoreError::Corrupt`] when the file is damaged or tampered with.
    pub fn open(path: impl AsRef<Path>, key: KeySource) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let is_new = match fs::metadata(path) {
            Ok(meta) => meta.len() == 0,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => true,
            Err(err) => return Err(err.into()),
        };
        let resolved = key::resolve(path, &key, is_new)?;
        drop(key);
        let mut writer = open_keyed(path, &resolved)?;
        configure(&writer)?;
        schema::migrate(&mut writer)?;
        let reader = open_keyed(path, &resolved)?;
        drop(resolved);
        configure(&reader)?;
        reader.execute_batch("PRAGMA query_only = ON;")?;
        Ok(Self {
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
            path: path.to_owned(),
        })
    }

    /// The database file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version stored in the database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        schema::version(&lock(&self.writer))
    }

    /// Runs `f` in one immediate (write-locking) transaction. It commits when
    /// `f` returns `Ok` and rolls back, leaving nothing written, when `f`
    /// returns `Err` or panics.
    pub fn transaction<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&Tx<'_>) -> Result<T, E>,
        E: From<StoreError>,
    {
        run(&self.writer, TransactionBehavior::Immediate, f)
    }

    /// Runs `f` on a consistent snapshot of committed data, on the read-only
    /// connection: it neither waits for nor blocks [`Store::transaction`].
    /// Writes inside `f` fail with [`StoreError::Database`].
    pub fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&Tx<'_>) -> Result<T, E>,
        E: From<StoreError>,
    {
        run(&self.reader, TransactionBehavior::Deferred, f)
    }

    /// Full-text search over message bodies (on the read-only connection);
    /// see [`SearchQuery`].
    pub fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>, StoreError> {
        self.read(|tx| tx.search(query))
    }

    /// Reads and authenticates every page (`PRAGMA cipher_integrity_check`)
    /// plus SQLite's structural check. Slow on large stores: for maintenance,
    /// not for every open.
    pub fn verify_integrity(&self) -> Result<(), StoreError> {
        let conn = lock(&self.reader);
        let mut stmt = conn.prepare("PRAGMA cipher_integrity_check")?;
        let mut rows = stmt.query([])?;
        if let Some(row) = rows.next()? {
            let problem: String = row.get(0)?;
            return Err(StoreError::Corrupt(problem));
        }
        let verdict: String = conn.query_row("PRAGMA quick_check", [], |row| row.get(0))?;
        if verdict != "ok" {
            return Err(StoreError::Corrupt(verdict));
        }
        Ok(())
    }
}

/// A poisoned mutex is safe to reuse: the panicking transaction was rolled
/// back when its guard dropped.
fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    conn.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `f` in a transaction on `conn`: commit on `Ok`, roll back on `Err`
/// or panic (the transaction's drop).
fn run<T, E, F>(conn: &Mutex<Connection>, behavior: TransactionBehavior, f: F) -> Result<T, E>
where
    F: FnOnce(&Tx<'_>) -> Result<T, E>,
    E: From<StoreError>,
{
    let mut conn = lock(conn);
    let inner = conn
        .transaction_with_behavior(behavior)
        .map_err(StoreError::from)?;
    let tx = Tx { inner };
    let value = f(&tx)?;
    tx.inner.commit().map_err(StoreError::from)?;
    Ok(value)
}

/// An open transaction; all data access methods live on it.
pub struct Tx<'c> {
    inner: rusqlite::Transaction<'c>,
}

impl Tx<'_> {
    fn conn(&self) -> &Connection {
        &self.inner
    }
}

/// Serialises keying: SQLCipher's cipher set-up is not safe when several
/// connections are keyed at the same moment (seen as a sporadic
/// "An error occurred with PRAGMA key" under parallel opens).
static KEYING: Mutex<()> = Mutex::new(());

/// SQLCipher logs decryption failures to stderr by default; failures reach
/// the caller as [`StoreError`] instead.
const CIPHER_QUIET: &str = "PRAGMA cipher_log_level = NONE;";

/// Opens a connection and keys it, confirming the key with a first read.
fn open_keyed(path: &Path, key: &key::ResolvedKey) -> Result<Connection, StoreError> {
    let _keying = KEYING.lock().unwrap_or_else(PoisonError::into_inner);
    let conn = Connection::open(path)?;
    conn.execute_batch(CIPHER_QUIET)?;
    apply_key(&conn, &key.key)?;
    force_first_read(&conn, key.verified)?;
    Ok(conn)
}

/// Hands the raw key to SQLCipher. The statement text is wiped afterwards.
fn apply_key(conn: &Connection, key: &tern_crypto::store_key::DbKey) -> Result<(), StoreError> {
    let literal = key::sqlcipher_literal(key);
    let mut statement = Zeroizing::new(String::with_capacity(literal.len() + 16));
    statement.push_str("PRAGMA key = \"");
    statement.push_str(&literal);
    statement.push_str("\";");
    conn.execute_batch(&statement)?;
    Ok(())
}

/// SQLCipher only notices a wrong key when it first decrypts a page: read one
/// now. When the key header already confirmed the key, a failure here means
/// the file itself is damaged.
fn force_first_read(conn: &Connection, key_verified: bool) -> Result<(), StoreError> {
    let read = conn.query_row("SELECT count(*) FROM sqlite_schema", [], |row| {
        row.get::<_, i64>(0)
    });
    match read {
        Ok(_) => Ok(()),
        Err(err) if err.sqlite_error_code() == Some(ErrorCode::NotADatabase) && !key_verified => {
            Err(StoreError::WrongKey)
        }
        Err(err) => Err(err.into()),
    }
}

fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.query_row("PRAGMA journal_mode = WAL", [], |row| {
        row.get::<_, String>(0)
    })?;
    conn.execute_batch(
        "PRAGMA synchronous = FULL;
         PRAGMA cache_size = -16384;
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;",
    )?;
    Ok(())
}
