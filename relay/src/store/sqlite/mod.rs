//! The embedded SQLite backend (WAL mode). All of its SQL lives in this
//! module and its children.
//!
//! Connections: one dedicated connection for the message log (used by the
//! single group-commit writer, so never contended) and a small pool for
//! everything else. Write transactions start `IMMEDIATE`, so concurrent
//! writers queue on SQLite's busy handler instead of failing to upgrade.

/// SQL for the last seq of the chat row aliased `c`. Appends do not rewrite
/// their chat's row: `chats.last_seq` is only raised by retention, before it
/// deletes entries, and otherwise the log's own highest seq counts.
macro_rules! last_seq_of_c {
    () => {
        "max(c.last_seq, coalesce((SELECT max(lx.seq) FROM log lx WHERE lx.chat_id = c.chat_id), 0))"
    };
}

mod accounts;
mod checkpoint;
mod cursors;
mod log;
mod members;
mod prekeys;
mod quota;
mod retention;
pub mod schema;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use tern_protocol::wire::Delivery;
use tern_protocol::{ChatId, UserId};

use super::*;
use crate::config::Synchronous;

/// SQLite's errors as backend-neutral [`StoreError`]s: a full disk is
/// [`StoreError::Full`], everything else a backend failure.
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => Self::Full,
            _ => Self::Backend {
                backend: "sqlite",
                source: Box::new(e),
            },
        }
    }
}

/// Connections in the pool (besides the log writer's). Callers beyond this
/// wait for a free connection instead of opening more: every connection has
/// its own page cache, and opening one is far slower than a query.
pub const POOL_SIZE: usize = 4;
/// Page cache of each pool connection, in KiB (SQLite's default is 2 MiB,
/// which makes the log's indexes spill to `pread` under load).
const POOL_CACHE_KIB: i64 = -16 * 1024;
/// Page cache of the log writer's connection, in KiB: the pages of every
/// active chat's log tail and the client-id index stay in memory.
const WRITER_CACHE_KIB: i64 = -64 * 1024;
/// WAL bytes kept on disk after a checkpoint reset it.
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;
/// How long a writer waits for the database lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// SQLite implementation of [`Store`].
pub struct SqliteStore {
    path: PathBuf,
    synchronous: Synchronous,
    pool: Mutex<Pool>,
    available: Condvar,
    log: Mutex<log::LogWriterState>,
    checkpoints: Mutex<checkpoint::Checkpointer>,
    /// Bumped whenever a device list changes (invalidates the log writer's
    /// member-device cache).
    device_epoch: AtomicU64,
    queued: crate::store::quota::QueuedBytes,
    queue_quota: u64,
}

struct Pool {
    idle: Vec<Connection>,
    opened: usize,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and migrates it.
    pub fn open(path: &Path, synchronous: Synchronous) -> Result<Self, StoreError> {
        let mut first = open_connection(path, synchronous)?;
        schema::migrate(&mut first)?;
        let log = open_connection(path, synchronous)?;
        log.pragma_update(None, "cache_size", WRITER_CACHE_KIB)?;
        // Checkpoints run beside the writer and between its batches
        // (`after_batch`, checkpoint.rs), never inside a commit that
        // acknowledgements wait for.
        log.pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpoints = checkpoint::Checkpointer::spawn(open_connection(path, synchronous)?)?;
        Ok(Self {
            path: path.to_owned(),
            synchronous,
            pool: Mutex::new(Pool {
                idle: vec![first],
                opened: 1,
            }),
            available: Condvar::new(),
            log: Mutex::new(log::LogWriterState::new(log)),
            checkpoints: Mutex::new(checkpoints),
            device_epoch: AtomicU64::new(0),
            queued: crate::store::quota::QueuedBytes::default(),
            queue_quota: u64::MAX,
        })
    }

    /// Sets the per-device queued-bytes quota enforced on appends.
    pub fn set_device_queue_quota(&mut self, bytes: u64) {
        self.queue_quota = bytes;
    }

    /// Writes a consistent copy of the database to `dest` while the relay
    /// keeps serving (a read transaction sees one snapshot).
    pub fn backup(&self, dest: &Path) -> Result<(), StoreError> {
        let dest = dest
            .to_str()
            .ok_or(StoreError::Corrupt("backup path is not UTF-8"))?;
        self.with_conn(|c| {
            c.execute("VACUUM INTO ?1", [dest])?;
            Ok(())
        })
    }

    fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.checkout()?;
        let result = f(&mut conn);
        lock(&self.pool).idle.push(conn);
        self.available.notify_one();
        result
    }

    fn checkout(&self) -> Result<Connection, StoreError> {
        let mut pool = lock(&self.pool);
        loop {
            if let Some(conn) = pool.idle.pop() {
                return Ok(conn);
            }
            if pool.opened < POOL_SIZE {
                pool.opened += 1;
                drop(pool);
                return open_connection(&self.path, self.synchronous).inspect_err(|_| {
                    lock(&self.pool).opened -= 1;
                });
            }
            pool = self
                .available
                .wait(pool)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

fn open_connection(path: &Path, synchronous: Synchronous) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let sync = match synchronous {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    conn.pragma_update(None, "cache_size", POOL_CACHE_KIB)?;
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// The encoding in a `log.ciphertexts` value; `None` for NULL (the entry's
/// ciphertexts, if any, are in `log_ciphertexts`).
pub(crate) fn inline_column(value: ValueRef<'_>) -> Result<Option<&[u8]>, StoreError> {
    match value {
        ValueRef::Blob(encoded) => Ok(Some(encoded)),
        ValueRef::Null => Ok(None),
        _ => Err(StoreError::Corrupt("inline ciphertexts: not a blob")),
    }
}

pub(crate) fn user_id(bytes: &[u8]) -> Result<UserId, StoreError> {
    UserId::from_slice("stored user id", bytes).map_err(|_| StoreError::Corrupt("user id"))
}

pub(crate) fn chat_id(bytes: &[u8]) -> Result<ChatId, StoreError> {
    ChatId::from_slice("stored chat id", bytes).map_err(|_| StoreError::Corrupt("chat id"))
}

pub(crate) fn key32(bytes: &[u8]) -> Result<[u8; 32], StoreError> {
    <[u8; 32]>::try_from(bytes).map_err(|_| StoreError::Corrupt("key length"))
}

impl AccountStore for SqliteStore {
    fn create_account(&self, account: &NewAccount) -> Result<(), StoreError> {
        self.with_conn(|c| accounts::create_account(c, account))
    }

    fn account(&self, user: &UserId) -> Result<Option<AccountRecord>, StoreError> {
        self.with_conn(|c| accounts::account_by(c, "user_id", &user.0[..]))
    }

    fn account_by_name(&self, name: &str) -> Result<Option<AccountRecord>, StoreError> {
        self.with_conn(|c| accounts::account_by(c, "user_name", name))
    }

    fn devices(&self, user: &UserId) -> Result<Vec<DeviceRecord>, StoreError> {
        self.with_conn(|c| accounts::devices(c, user))
    }

    fn replace_device_list(&self, update: &DeviceListUpdate) -> Result<(), StoreError> {
        self.with_conn(|c| accounts::replace_device_list(c, update))?;
        self.device_epoch.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    fn mark_device_registered(&self, device: DeviceAddr) -> Result<(), StoreError> {
        self.with_conn(|c| accounts::mark_registered(c, device))
    }

    fn create_invite(&self, token_hash: &[u8; 32], now_ms: u64) -> Result<(), StoreError> {
        self.with_conn(|c| accounts::create_invite(c, token_hash, now_ms))
    }

    fn set_push_endpoint(&self, device: DeviceAddr, url: Option<&str>) -> Result<(), StoreError> {
        self.with_conn(|c| accounts::set_push_endpoint(c, device, url))
    }

    fn push_targets(&self, user: &UserId) -> Result<Vec<(DeviceAddr, String)>, StoreError> {
        self.with_conn(|c| accounts::push_targets(c, user))
    }
}

impl PrekeyStore for SqliteStore {
    fn upload_prekeys(
        &self,
        device: DeviceAddr,
        upload: &PrekeyUpload,
        max_stock: u32,
    ) -> Result<PrekeyCounts, StoreError> {
        self.with_conn(|c| prekeys::upload(c, device, upload, max_stock))
    }

    fn prekey_counts(&self, device: DeviceAddr) -> Result<PrekeyCounts, StoreError> {
        self.with_conn(|c| prekeys::counts(c, device))
    }

    fn claim_bundles(
        &self,
        user: &UserId,
        devices: &[u32],
        one_time_allowed: &mut dyn FnMut(u32) -> bool,
    ) -> Result<ClaimedBundles, StoreError> {
        self.with_conn(|c| prekeys::claim_bundles(c, user, devices, one_time_allowed))
    }
}

impl LogStore for SqliteStore {
    fn append_batch(
        &self,
        items: &[LogAppend],
        now_ms: u64,
    ) -> Result<Vec<Result<Appended, StoreError>>, StoreError> {
        let epoch = self.device_epoch.load(Ordering::Acquire);
        let quota = log::Quota {
            queued: &self.queued,
            limit: self.queue_quota,
        };
        let result = log::append_batch(&mut lock(&self.log), epoch, &quota, items, now_ms);
        match &result {
            Ok(_) => lock(&self.checkpoints).appended(items.len()),
            Err(_) => self.queued.clear(),
        }
        result
    }

    fn after_batch(&self) -> Result<(), StoreError> {
        lock(&self.checkpoints).after_batch(&lock(&self.log).conn)
    }
}

impl ChatStore for SqliteStore {
    fn chat(&self, chat: &ChatId) -> Result<Option<ChatRecord>, StoreError> {
        self.with_conn(|c| log::chat(c, chat))
    }

    fn chats_of(&self, user: &UserId) -> Result<Vec<ChatRecord>, StoreError> {
        self.with_conn(|c| log::chats_of(c, user))
    }

    fn contacts_of(&self, user: &UserId) -> Result<Vec<UserId>, StoreError> {
        self.with_conn(|c| log::contacts_of(c, user))
    }
}

impl CursorStore for SqliteStore {
    fn read_log(
        &self,
        device: DeviceAddr,
        after: &[(ChatId, u64)],
        limit: usize,
        max_bytes: usize,
    ) -> Result<(Vec<Delivery>, bool), StoreError> {
        self.with_conn(|c| cursors::read_log(c, device, after, limit, max_bytes))
    }

    fn ack_cursors(&self, device: DeviceAddr, cursors: &[(ChatId, u64)]) -> Result<(), StoreError> {
        self.with_conn(|c| cursors::ack_cursors(c, device, cursors))?;
        self.queued.acknowledged(device);
        Ok(())
    }
}

/// Embedded: no connection pool to a server.
impl PoolStats for SqliteStore {}

impl RetentionStore for SqliteStore {
    fn collect_garbage(&self, expire_before_ms: u64) -> Result<u64, StoreError> {
        let deleted = self.with_conn(|c| retention::collect_garbage(c, expire_before_ms))?;
        self.queued.clear();
        Ok(deleted)
    }
}
