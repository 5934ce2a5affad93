//! The PostgreSQL backend, for several relay nodes sharing one system of
//! record (`[store] backend = "postgres"`, see docs/cluster.md). All of its
//! SQL lives in this module and its children.
//!
//! The [`Store`] traits are blocking; this backend runs tokio-postgres on a
//! small runtime of its own and blocks the calling thread (the relay's
//! blocking pool, or its log writer thread) on each operation. Connections
//! come from a deadpool pool of `pool_size`.
//!
//! What several nodes writing at once rely on:
//! - **Per-chat seqs** come from `chats.last_seq`, read `FOR UPDATE` at the
//!   start of each append transaction (chats locked in id order, so two
//!   batches never deadlock) and written back before commit: a seq is
//!   assigned by exactly one transaction, and a rolled-back one leaves no
//!   gap.
//! - **Idempotent sends**: the unique `(client_message_id, sender_user)`
//!   index. A resend that reaches another node waits for the chat lock,
//!   then finds the original row.
//! - **One-time prekeys** are claimed with `DELETE … FOR UPDATE SKIP
//!   LOCKED`, so a key goes to one claimer only.
//! - **Retention** runs under a session advisory lock: one node at a time.
//!
//! The chat-scoped tables may live in several databases, the chat shards
//! ([`shards`]); accounts and devices then stay in the directory database
//! ([`directory`]).

mod accounts;
mod cursors;
mod directory;
mod inserts;
mod log;
mod members;
mod prekeys;
mod quota;
mod retention;
pub mod schema;
#[cfg(test)]
mod shard_tests;
mod shards;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::time::Duration;

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use directory::Directory;
use shards::{ChatDb, Layout, by_shard, shard_of};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use super::*;

/// Worker threads of the backend's own runtime (they only drive sockets).
const RUNTIME_THREADS: usize = 2;
/// How long an operation waits for a pooled connection, and a new
/// connection for the server, before failing as unreachable.
const POOL_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts of a transaction that PostgreSQL aborted to resolve a deadlock
/// or a serialization conflict.
const ATTEMPTS: usize = 3;

/// Settings of a PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgSettings {
    /// Connection string of the directory (and of the chats, without
    /// shards): `postgres://user@host:port/db` or libpq key-value form.
    pub url: String,
    /// Connection strings of the chat shards, in their fixed order (empty:
    /// `url` holds the chats).
    pub chat_shards: Vec<String>,
    /// Most connections this node opens to each database.
    pub pool_size: usize,
    /// Per-device queued-bytes quota enforced on appends.
    pub queue_quota: u64,
}

/// PostgreSQL implementation of [`Store`].
pub struct PgStore {
    /// Owned only to be shut down on drop; operations go through `handle`.
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    /// Accounts, devices, invites and prekeys; the chats too when the
    /// store has no shards.
    directory: Pool,
    /// The databases holding chats: the shards in their fixed order, or
    /// the directory alone.
    chats: Vec<ChatDb>,
    /// Whether `chats` are shards apart from the directory.
    sharded: bool,
    queue_quota: u64,
}

/// tokio-postgres errors as backend-neutral [`StoreError`]s: a full disk is
/// [`StoreError::Full`]; a server that is down, restarting or unreachable
/// is [`StoreError::Unreachable`]; everything else a backend failure.
impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        let unreachable = e.is_closed()
            || e.as_db_error().is_none()
            || e.code().is_some_and(|c| {
                c.code().starts_with("08")
                    || *c == SqlState::ADMIN_SHUTDOWN
                    || *c == SqlState::CRASH_SHUTDOWN
                    || *c == SqlState::CANNOT_CONNECT_NOW
            });
        match e.code() {
            Some(c) if *c == SqlState::DISK_FULL => Self::Full,
            _ if unreachable => Self::Unreachable(e.to_string()),
            _ => Self::Backend {
                backend: "postgres",
                source: Box::new(e),
            },
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => Self::Unreachable(other.to_string()),
        }
    }
}

/// Whether PostgreSQL aborted a transaction that may simply be retried.
fn retryable(e: &StoreError) -> bool {
    let StoreError::Backend { source, .. } = e else {
        return false;
    };
    source
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(tokio_postgres::Error::code)
        .is_some_and(|c| {
            *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
        })
}

/// A pooled connection.
type Conn = deadpool_postgres::Object;

/// A pool of at most `size` connections to the database at `url`; a caller
/// waits at most [`POOL_TIMEOUT`] for a connection, and a new connection
/// for the server. Used by the store and the blob store alike.
pub(crate) fn pool(url: &str, size: usize) -> Result<Pool, StoreError> {
    let config: tokio_postgres::Config = url.parse().map_err(|e| {
        StoreError::Unreachable(format!("invalid PostgreSQL connection string: {e}"))
    })?;
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size.max(1))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(POOL_TIMEOUT))
        .create_timeout(Some(POOL_TIMEOUT))
        .build()
        .map_err(|e| StoreError::Unreachable(format!("PostgreSQL pool: {e}")))
}

impl PgStore {
    /// Connects to the database and migrates it to the current schema.
    pub fn open(settings: &PgSettings) -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(RUNTIME_THREADS)
            .thread_name("tern-postgres")
            .enable_all()
            .build()
            .map_err(|e| {
                StoreError::Unreachable(format!("starting the PostgreSQL runtime: {e}"))
            })?;
        let directory = pool(&settings.url, settings.pool_size)?;
        let sharded = !settings.chat_shards.is_empty();
        let chats = match sharded {
            true => settings
                .chat_shards
                .iter()
                .map(|url| Ok(ChatDb::new(pool(url, settings.pool_size)?)))
                .collect::<Result<Vec<_>, StoreError>>()?,
            false => vec![ChatDb::new(directory.clone())],
        };
        let store = Self {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            directory,
            chats,
            sharded,
            queue_quota: settings.queue_quota,
        };
        store.on_own_thread(Self::migrate)?;
        Ok(store)
    }

    /// Migrates every database and checks its part in the layout.
    fn migrate(&self) -> Result<(), StoreError> {
        let shards = self.shards().len() as u64;
        let layout = Layout::Directory { shards };
        self.run(async |c: &mut Conn| schema::migrate(c, layout).await)?;
        for (position, shard) in (0..).zip(self.shards()) {
            let layout = Layout::Shard { position, shards };
            self.run_on(&shard.pool, async |c: &mut Conn| {
                schema::migrate(c, layout).await
            })?;
        }
        Ok(())
    }

    /// The chat shards apart from the directory (none without shards).
    fn shards(&self) -> &[ChatDb] {
        match self.sharded {
            true => &self.chats,
            false => &[],
        }
    }

    /// The database holding `chat`.
    fn chat_db(&self, chat: &ChatId) -> &ChatDb {
        let dbs = &self.chats[..];
        &dbs[shard_of(chat, dbs.len())]
    }

    /// Where chat databases find accounts and devices.
    fn directory_for_chats(&self) -> Directory<'_> {
        match self.sharded {
            true => Directory::Apart(&self.directory),
            false => Directory::Same,
        }
    }

    /// Runs `f` on a thread of its own (callable from async code, where
    /// blocking on the runtime is not allowed).
    fn on_own_thread<T: Send>(
        &self,
        f: impl FnOnce(&Self) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| f(self))
                .join()
                .unwrap_or_else(|_| Err(StoreError::Corrupt("PostgreSQL operation panicked")))
        })
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.handle.block_on(future)
    }

    /// Runs `op` on a pooled connection to the directory; see
    /// [`Self::run_on`].
    fn run<T>(
        &self,
        op: impl AsyncFnMut(&mut Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.run_on(&self.directory, op)
    }

    /// Runs `op` on a connection of `pool`, again (up to [`ATTEMPTS`]
    /// times) when PostgreSQL aborted it over a deadlock or serialization
    /// conflict.
    fn run_on<T>(
        &self,
        pool: &Pool,
        mut op: impl AsyncFnMut(&mut Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.block_on(async {
            let mut conn = pool.get().await?;
            retrying(async || op(&mut conn).await).await
        })
    }
}

/// Runs `op` again (up to [`ATTEMPTS`] times) when PostgreSQL aborted it
/// over a deadlock or serialization conflict.
async fn retrying<T>(mut op: impl AsyncFnMut() -> Result<T, StoreError>) -> Result<T, StoreError> {
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e) if attempt < ATTEMPTS && retryable(&e) => attempt += 1,
            result => return result,
        }
    }
}

impl PgStore {
    /// Appends `items`, all in chats of `db`, in one transaction there.
    fn append_in(
        &self,
        db: &ChatDb,
        items: &[&LogAppend],
        now_ms: u64,
    ) -> Result<Vec<Result<Appended, StoreError>>, StoreError> {
        let quota = log::Quota {
            queued: &db.queued,
            limit: self.queue_quota,
        };
        let directory = self.directory_for_chats();
        let result = self.run_on(&db.pool, async |c: &mut Conn| {
            log::append_batch(c, directory, &quota, items, now_ms).await
        });
        if result.is_err() {
            db.queued.clear();
        }
        result
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which async code may not do.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Rows of a query, through the connection's statement cache.
async fn rows(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, StoreError> {
    let statement = c.prepare_cached(sql).await?;
    Ok(c.query(&statement, params).await?)
}

/// The one row of a query, or `None`.
async fn row(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<Row>, StoreError> {
    let statement = c.prepare_cached(sql).await?;
    Ok(c.query_opt(&statement, params).await?)
}

/// Runs a statement; returns the rows it touched.
async fn exec(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, StoreError> {
    let statement = c.prepare_cached(sql).await?;
    Ok(c.execute(&statement, params).await?)
}

/// Column `i` of `row`.
fn get<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, i: usize) -> Result<T, StoreError> {
    row.try_get(i).map_err(|e| StoreError::Backend {
        backend: "postgres",
        source: Box::new(e),
    })
}

/// A non-negative integer column as `u64`.
fn get_u64(row: &Row, i: usize) -> Result<u64, StoreError> {
    u64::try_from(get::<i64>(row, i)?).map_err(|_| StoreError::Corrupt("negative integer"))
}

/// A device or key id column as `u32`.
fn get_u32(row: &Row, i: usize) -> Result<u32, StoreError> {
    u32::try_from(get::<i64>(row, i)?).map_err(|_| StoreError::Corrupt("id out of range"))
}

/// `u64` as a `bigint` parameter (saturating: seqs, times and sizes stay
/// far below).
pub(crate) fn big(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn user_id(bytes: &[u8]) -> Result<UserId, StoreError> {
    UserId::from_slice("stored user id", bytes).map_err(|_| StoreError::Corrupt("user id"))
}

fn chat_id(bytes: &[u8]) -> Result<ChatId, StoreError> {
    ChatId::from_slice("stored chat id", bytes).map_err(|_| StoreError::Corrupt("chat id"))
}

fn key32(bytes: &[u8]) -> Result<[u8; 32], StoreError> {
    <[u8; 32]>::try_from(bytes).map_err(|_| StoreError::Corrupt("key length"))
}

impl AccountStore for PgStore {
    fn create_account(&self, account: &NewAccount) -> Result<(), StoreError> {
        self.run(async |c: &mut Conn| accounts::create_account(c, account).await)
    }

    fn account(&self, user: &UserId) -> Result<Option<AccountRecord>, StoreError> {
        self.run(async |c: &mut Conn| accounts::account_by_id(&*c, user).await)
    }

    fn account_by_name(&self, name: &str) -> Result<Option<AccountRecord>, StoreError> {
        self.run(async |c: &mut Conn| accounts::account_by_name(&*c, name).await)
    }

    fn devices(&self, user: &UserId) -> Result<Vec<DeviceRecord>, StoreError> {
        self.run(async |c: &mut Conn| accounts::devices(&*c, user).await)
    }

    fn replace_device_list(&self, update: &DeviceListUpdate) -> Result<(), StoreError> {
        self.block_on(retrying(async || {
            let mut directory = self.directory.get().await?;
            let mut shards = Vec::with_capacity(self.shards().len());
            for shard in self.shards() {
                shards.push(shard.pool.get().await?);
            }
            accounts::replace_device_list(&mut directory, &mut shards, update).await
        }))
    }

    fn mark_device_registered(&self, device: DeviceAddr) -> Result<(), StoreError> {
        self.run(async |c: &mut Conn| accounts::mark_registered(&*c, device).await)
    }

    fn create_invite(&self, token_hash: &[u8; 32], now_ms: u64) -> Result<(), StoreError> {
        self.run(async |c: &mut Conn| accounts::create_invite(&*c, token_hash, now_ms).await)
    }

    fn set_push_endpoint(&self, device: DeviceAddr, url: Option<&str>) -> Result<(), StoreError> {
        self.run(async |c: &mut Conn| accounts::set_push_endpoint(&*c, device, url).await)
    }

    fn push_targets(&self, user: &UserId) -> Result<Vec<(DeviceAddr, String)>, StoreError> {
        self.run(async |c: &mut Conn| accounts::push_targets(&*c, user).await)
    }
}

impl PrekeyStore for PgStore {
    fn upload_prekeys(
        &self,
        device: DeviceAddr,
        upload: &PrekeyUpload,
        max_stock: u32,
    ) -> Result<PrekeyCounts, StoreError> {
        self.run(async |c: &mut Conn| prekeys::upload(c, device, upload, max_stock).await)
    }

    fn prekey_counts(&self, device: DeviceAddr) -> Result<PrekeyCounts, StoreError> {
        self.run(async |c: &mut Conn| prekeys::counts(&*c, device).await)
    }

    fn claim_bundles(
        &self,
        user: &UserId,
        devices: &[u32],
        one_time_allowed: &mut dyn FnMut(u32) -> bool,
    ) -> Result<ClaimedBundles, StoreError> {
        self.run(async |c: &mut Conn| {
            prekeys::claim_bundles(c, user, devices, &mut *one_time_allowed).await
        })
    }
}

impl LogStore for PgStore {
    /// One transaction per chat database the batch touches. Should one of
    /// several fail, the others still commit: the failed database's items
    /// get its (retryable) error; `Err` only when nothing committed.
    fn append_batch(
        &self,
        items: &[LogAppend],
        now_ms: u64,
    ) -> Result<Vec<Result<Appended, StoreError>>, StoreError> {
        let dbs = &self.chats[..];
        let keyed = items.iter().enumerate().map(|(i, item)| {
            let chat = match item {
                LogAppend::Message(m) => m.chat_id,
                LogAppend::Membership(m) => m.chat_id,
            };
            (chat, (i, item))
        });
        let mut groups = by_shard(keyed, dbs.len());
        if let [(shard, group)] = &groups[..] {
            let items: Vec<&LogAppend> = group.iter().map(|(_, item)| *item).collect();
            return self.append_in(&dbs[*shard], &items, now_ms);
        }
        let mut out: Vec<Option<Result<Appended, StoreError>>> = Vec::new();
        out.resize_with(items.len(), || None);
        let mut first_failure = None;
        let mut committed = false;
        for (shard, group) in groups.drain(..) {
            let (indices, items): (Vec<usize>, Vec<&LogAppend>) = group.into_iter().unzip();
            match self.append_in(&dbs[shard], &items, now_ms) {
                Ok(results) => {
                    committed = true;
                    for (i, result) in indices.into_iter().zip(results) {
                        out[i] = Some(result);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, shard, "chat shard commit failed");
                    for i in indices {
                        out[i] = Some(Err(e.refusal()));
                    }
                    first_failure.get_or_insert(e);
                }
            }
        }
        match first_failure {
            Some(e) if !committed => Err(e),
            _ => Ok(out
                .into_iter()
                .map(|r| r.unwrap_or(Err(StoreError::Corrupt("append without a result"))))
                .collect()),
        }
    }
}

impl ChatStore for PgStore {
    fn chat(&self, chat: &ChatId) -> Result<Option<ChatRecord>, StoreError> {
        self.run_on(&self.chat_db(chat).pool, async |c: &mut Conn| {
            members::chat(&*c, chat).await
        })
    }

    fn chats_of(&self, user: &UserId) -> Result<Vec<ChatRecord>, StoreError> {
        let mut out = Vec::new();
        for db in &self.chats {
            out.extend(self.run_on(&db.pool, async |c: &mut Conn| {
                members::chats_of(&*c, user).await
            })?);
        }
        out.sort_by_key(|chat| chat.chat_id);
        Ok(out)
    }

    fn contacts_of(&self, user: &UserId) -> Result<Vec<UserId>, StoreError> {
        let mut out = Vec::new();
        for db in &self.chats {
            out.extend(self.run_on(&db.pool, async |c: &mut Conn| {
                members::contacts_of(&*c, user).await
            })?);
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }
}

impl CursorStore for PgStore {
    /// The chat databases one after the other, each with what is left of
    /// the page's entry and byte budgets.
    fn read_log(
        &self,
        device: DeviceAddr,
        after: &[(ChatId, u64)],
        limit: usize,
        max_bytes: usize,
    ) -> Result<(Vec<Delivery>, bool), StoreError> {
        let dbs = &self.chats[..];
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for (shard, db) in dbs.iter().enumerate() {
            if out.len() >= limit || bytes > max_bytes {
                return Ok((out, true));
            }
            let after: Vec<(ChatId, u64)> = after
                .iter()
                .filter(|(chat, _)| shard_of(chat, dbs.len()) == shard)
                .copied()
                .collect();
            let (room, budget) = (limit - out.len(), max_bytes - bytes);
            let (page, more) = self.run_on(&db.pool, async |c: &mut Conn| {
                cursors::read_log(&*c, device, &after, room, budget).await
            })?;
            bytes += page.iter().map(cursors::page_bytes).sum::<usize>();
            out.extend(page);
            if more {
                return Ok((out, true));
            }
        }
        Ok((out, false))
    }

    /// All or none: the cursors of every chat database move in one
    /// transaction each, committed only once every database accepted its
    /// cursors.
    fn ack_cursors(&self, device: DeviceAddr, cursors: &[(ChatId, u64)]) -> Result<(), StoreError> {
        let dbs = &self.chats[..];
        let groups = by_shard(cursors.iter().map(|c| (c.0, *c)), dbs.len());
        self.block_on(retrying(async || {
            let mut conns = Vec::with_capacity(groups.len());
            for (shard, _) in &groups {
                conns.push(dbs[*shard].pool.get().await?);
            }
            let mut txs = Vec::with_capacity(conns.len());
            for c in &mut conns {
                txs.push(c.transaction().await?);
            }
            for (tx, (_, moved)) in txs.iter().zip(&groups) {
                cursors::advance(tx, device, moved).await?;
            }
            for tx in txs {
                tx.commit().await?;
            }
            Ok(())
        }))?;
        for (shard, _) in &groups {
            dbs[*shard].queued.acknowledged(device);
        }
        Ok(())
    }
}

impl PoolStats for PgStore {
    fn pool_status(&self) -> Vec<PoolStatus> {
        let status = |database: String, pool: &Pool| {
            let s = pool.status();
            PoolStatus {
                database,
                max: s.max_size,
                open: s.size,
                idle: s.available,
                waiting: s.waiting,
            }
        };
        let shards = self.shards().iter().enumerate();
        std::iter::once(status("directory".into(), &self.directory))
            .chain(shards.map(|(i, shard)| status(format!("shard{i}"), &shard.pool)))
            .collect()
    }
}

impl RetentionStore for PgStore {
    fn collect_garbage(&self, expire_before_ms: u64) -> Result<u64, StoreError> {
        let shards: Vec<&Pool> = self.shards().iter().map(|s| &s.pool).collect();
        let deleted = self.run(async |c: &mut Conn| {
            retention::collect_garbage(c, &self.directory, &shards, expire_before_ms).await
        })?;
        for db in &self.chats {
            db.queued.clear();
        }
        Ok(deleted)
    }
}
