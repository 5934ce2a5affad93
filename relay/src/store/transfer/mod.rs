//! Moving a single SQLite relay to PostgreSQL, the path from one node to a
//! cluster (`tern-relay import-sqlite`, docs/cluster.md).
//!
//! [`import_sqlite`] copies everything of a relay's data directory into an
//! empty PostgreSQL database of the current schema:
//! - from `relay.db` (module `tables`): accounts, devices (registered flag,
//!   push endpoint), invites, signed and one-time prekeys, chats (with
//!   their last assigned seq, which PostgreSQL's appends continue from),
//!   members (joined seq, admin flag), the log with every column, the
//!   per-device ciphertexts kept in `log_ciphertexts`, and delivery cursors;
//! - from `blobs/` (module `blobs`): every complete blob, streamed in chunks and
//!   checked against its hash, with the quota charges of the file ledger
//!   for those blobs. Uploads in progress (`blobs/partial`) are not moved:
//!   clients start them again; nor are charges of blobs not complete.
//!
//! The source is read through one read-only SQLite transaction: one
//! consistent snapshot, even while the relay serves (what it accepts after
//! the snapshot is not moved: stop it for the final cut-over; its WAL also
//! grows until the import ends, since checkpoints cannot pass the
//! snapshot). It must be at this build's SQLite schema version. Every row
//! is checked as it is read (disk is hostile): a malformed one is a typed
//! [`TransferError`], never a panic. The target is written in ONE
//! PostgreSQL transaction (tables by `COPY`, blobs chunk by chunk): the
//! import lands whole or not at all. A database already holding data is
//! refused, so two relays are never merged by accident.

mod blobs;
mod tables;

use std::fmt;
use std::path::{Path, PathBuf};

use deadpool_postgres::GenericClient;
use rusqlite::{Connection, OpenFlags};

use crate::error::StoreError;
use crate::store::postgres::{self, PgSettings, PgStore};
use crate::store::sqlite::schema::SCHEMA_VERSION as SQLITE_SCHEMA_VERSION;

/// The SQLite database in a relay's data directory.
const DATABASE: &str = "relay.db";
/// The blob files in a relay's data directory.
const BLOBS: &str = "blobs";
/// How long the read-only connection waits for a lock (WAL recovery).
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// PostgreSQL tables an import fills; each must be empty.
const TARGET_TABLES: &[&str] = &[
    "accounts",
    "devices",
    "invites",
    "signed_prekeys",
    "one_time_prekeys",
    "chats",
    "chat_members",
    "log",
    "log_ciphertexts",
    "cursors",
    "blobs",
    "blob_partials",
    "blob_charges",
];

/// Why an import failed. Nothing was written to PostgreSQL.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The data directory holds no relay database.
    #[error("{} is not a relay data directory: no {DATABASE} in it", .0.display())]
    NoDatabase(PathBuf),
    /// The source database is at another schema version than this build
    /// reads.
    #[error(
        "{DATABASE} is at schema version {found}, this build reads version {expected}: \
         run `tern-relay migrate --data-dir DIR` of the same build as import-sqlite first \
         (a newer database needs a newer build)"
    )]
    SourceSchema {
        /// The source's `user_version`.
        found: i64,
        /// The SQLite schema version of this build.
        expected: i64,
    },
    /// The target already holds data.
    #[error(
        "the PostgreSQL database already holds {table}: import-sqlite only fills an empty \
         database (it never merges two relays)"
    )]
    TargetNotEmpty {
        /// The first non-empty table found.
        table: &'static str,
    },
    /// A source row does not have the shape the relay writes.
    #[error("{DATABASE}: table {table}, column {column}: {problem}")]
    BadRow {
        /// The table.
        table: &'static str,
        /// The column.
        column: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A file under `blobs/` is not what the blob layout puts there.
    #[error("{}: {problem}", .path.display())]
    BadBlobFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// Reading the source database failed.
    #[error("reading {DATABASE}: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Reading a blob file failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// PostgreSQL failed (connecting, migrating, writing, committing).
    #[error("PostgreSQL: {0}")]
    Store(#[from] StoreError),
}

impl From<tokio_postgres::Error> for TransferError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Store(e.into())
    }
}

impl TransferError {
    /// An I/O error on `path`.
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_owned();
        move |source| Self::Io { path, source }
    }
}

/// What an import copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportCounts {
    /// Accounts.
    pub accounts: u64,
    /// Devices of their device lists.
    pub devices: u64,
    /// Unused invites.
    pub invites: u64,
    /// Signed prekeys (X25519 and last-resort KEM).
    pub signed_prekeys: u64,
    /// One-time prekeys (X25519 and KEM).
    pub one_time_prekeys: u64,
    /// Chats.
    pub chats: u64,
    /// Chat memberships.
    pub members: u64,
    /// Log entries.
    pub log_entries: u64,
    /// Per-device ciphertexts kept in their own rows (`log_ciphertexts`).
    pub log_ciphertexts: u64,
    /// Delivery cursors.
    pub cursors: u64,
    /// Complete blobs.
    pub blobs: u64,
    /// Their bytes.
    pub blob_bytes: u64,
    /// Blob quota charges.
    pub blob_charges: u64,
    /// Uploads in progress left behind (clients start them again).
    pub partial_uploads_skipped: u64,
}

impl fmt::Display for ImportCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines = [
            ("accounts", self.accounts),
            ("devices", self.devices),
            ("invites", self.invites),
            ("signed prekeys", self.signed_prekeys),
            ("one-time prekeys", self.one_time_prekeys),
            ("chats", self.chats),
            ("chat members", self.members),
            ("log entries", self.log_entries),
            ("log ciphertext rows", self.log_ciphertexts),
            ("cursors", self.cursors),
            ("blobs", self.blobs),
            ("blob bytes", self.blob_bytes),
            ("blob quota charges", self.blob_charges),
            ("partial uploads not moved", self.partial_uploads_skipped),
        ];
        for (i, (what, n)) in lines.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{what}: {n}")?;
        }
        Ok(())
    }
}

/// Copies the single relay in `data_dir` (its `relay.db` and `blobs/`)
/// into the empty PostgreSQL database of `target`, migrated to the current
/// schema first; see the module docs. Blocks until the import committed or
/// failed (safe to call from async code, it runs on a thread of its own).
pub fn import_sqlite(data_dir: &Path, target: &PgSettings) -> Result<ImportCounts, TransferError> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| import_on_this_thread(data_dir, target))
            .join()
            .unwrap_or_else(|_| {
                Err(TransferError::Store(StoreError::Corrupt(
                    "the import thread panicked",
                )))
            })
    })
}

fn import_on_this_thread(
    data_dir: &Path,
    target: &PgSettings,
) -> Result<ImportCounts, TransferError> {
    let database = data_dir.join(DATABASE);
    if !database.is_file() {
        return Err(TransferError::NoDatabase(data_dir.to_owned()));
    }
    let mut source = open_source(&database)?;
    // Migrates the target, so that its tables are the current schema's.
    drop(PgStore::open(target)?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StoreError::Unreachable(format!("starting the import runtime: {e}")))?;
    runtime.block_on(copy_all(&mut source, &data_dir.join(BLOBS), &target.url))
}

/// The source database, read-only, at the schema version this build
/// reads (it cannot migrate a database it only reads).
fn open_source(path: &Path) -> Result<Connection, TransferError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found != SQLITE_SCHEMA_VERSION {
        return Err(TransferError::SourceSchema {
            found,
            expected: SQLITE_SCHEMA_VERSION,
        });
    }
    Ok(conn)
}

async fn copy_all(
    source: &mut Connection,
    blob_dir: &Path,
    url: &str,
) -> Result<ImportCounts, TransferError> {
    // One read transaction: every table from the same snapshot.
    let snapshot = source.transaction()?;
    let pool = postgres::pool(url, 1)?;
    let mut conn = pool.get().await.map_err(StoreError::from)?;
    let tx = conn.transaction().await?;
    claim_empty_target(&tx).await?;
    let mut counts = tables::copy(&snapshot, &tx).await?;
    blobs::copy(blob_dir, &tx, &mut counts).await?;
    tx.commit().await?;
    Ok(counts)
}

/// Locks the target's tables against writers (a relay node, a second
/// import) until the import commits, then checks that they are empty.
async fn claim_empty_target(tx: &impl GenericClient) -> Result<(), TransferError> {
    let tables = TARGET_TABLES.join(", ");
    tx.batch_execute(&format!("LOCK TABLE {tables} IN EXCLUSIVE MODE"))
        .await?;
    for &table in TARGET_TABLES {
        let held: bool = tx
            .query_one(
                format!("SELECT EXISTS (SELECT 1 FROM {table})").as_str(),
                &[],
            )
            .await?
            .try_get(0)?;
        if held {
            return Err(TransferError::TargetNotEmpty { table });
        }
    }
    Ok(())
}
