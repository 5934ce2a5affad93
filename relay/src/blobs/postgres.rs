//! Blobs in the relay's PostgreSQL database (`[store] backend =
//! "postgres"`), so that every node of a cluster serves every blob.
//!
//! Tables (schema version 2, [`crate::store::postgres::schema`]):
//! `blob_chunks(upload_id, pos, data)` holds the bytes of every upload, in
//! pieces of at most `MAX_BLOB_CHUNK_LEN`. `blob_partials` maps one device's
//! upload in progress, keyed by `(blob_id, user_id, device_id)`, to its
//! `upload_id` and length; nobody else's key reaches it. `blobs` maps a
//! complete blob to the upload that proved its hash, so finishing moves no
//! data. `blob_charges` holds the quota charges.
//!
//! What several nodes at once rely on:
//! - an append is a compare-and-set on the partial's length, in the
//!   transaction that inserts its chunk: a stale offset is refused;
//! - finishing locks the partial row, hashes its chunks and commits it in
//!   one transaction: no append slips in between the check and the commit;
//! - a charge takes a per-account advisory lock, then sums the account's
//!   charges: two nodes cannot both fit the last bytes of a quota.
//!
//! Blob operations are async and run on the relay's runtime, with a small
//! connection pool of their own (not the store's private runtime).

use std::time::SystemTime;

use bytes::Bytes;
use deadpool_postgres::{GenericClient, Pool};
use futures_util::TryStreamExt;
use tern_protocol::limits::MAX_BLOB_CHUNK_LEN;
use tern_protocol::{BlobId, UserId};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::backend::{BlobBackend, BlobFuture, Verifier};
use crate::error::{RelayError, StoreError};
use crate::store::DeviceAddr;
use crate::store::postgres::big;

/// Connections of the blob pool: chunk operations are short; finishing a
/// blob holds one while it hashes the blob.
const POOL_SIZE: usize = 4;
/// First key of the per-account advisory locks taken while charging
/// ("tern"); the second is taken from the account id.
const CHARGE_LOCK: i32 = 0x7465_726e;

/// Blob storage in PostgreSQL (see the module docs).
pub(crate) struct PgBlobs {
    pool: Pool,
    quota: u64,
}

/// PostgreSQL failures as relay errors: a server that cannot be reached
/// (or a full disk) is `Unavailable`, anything else a storage error.
fn pg(e: impl Into<StoreError>) -> RelayError {
    match e.into() {
        StoreError::Unreachable(detail) => {
            tracing::debug!(%detail, "blob storage unreachable");
            RelayError::Unavailable("blob storage unreachable")
        }
        StoreError::Full => RelayError::Unavailable("blob storage full"),
        other => RelayError::Store(other),
    }
}

fn corrupt(what: &'static str) -> RelayError {
    RelayError::Store(StoreError::Corrupt(what))
}

/// Column `i` of a row as a non-negative integer.
fn get_u64(row: &Row, i: usize) -> Result<u64, RelayError> {
    u64::try_from(row.try_get::<_, i64>(i).map_err(pg)?)
        .map_err(|_| corrupt("negative blob size or offset"))
}

/// Milliseconds since the Unix epoch.
fn ms(at: SystemTime) -> i64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn now_ms() -> i64 {
    ms(SystemTime::now())
}

/// The one row of a query, or `None`.
async fn row(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<Row>, RelayError> {
    let statement = c.prepare_cached(sql).await.map_err(pg)?;
    c.query_opt(&statement, params).await.map_err(pg)
}

/// The rows of a query.
async fn rows(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, RelayError> {
    let statement = c.prepare_cached(sql).await.map_err(pg)?;
    c.query(&statement, params).await.map_err(pg)
}

/// Runs a statement; returns the rows it touched.
async fn exec(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, RelayError> {
    let statement = c.prepare_cached(sql).await.map_err(pg)?;
    c.execute(&statement, params).await.map_err(pg)
}

/// Whether upload `upload` holds exactly `size` contiguous bytes whose
/// SHA-256 is `id`; reads its chunks one by one, never the whole blob.
async fn verify(
    c: &impl GenericClient,
    upload: i64,
    id: &BlobId,
    size: u64,
) -> Result<bool, RelayError> {
    let statement = c
        .prepare_cached("SELECT pos, data FROM blob_chunks WHERE upload_id = $1 ORDER BY pos")
        .await
        .map_err(pg)?;
    let chunks = c.query_raw(&statement, [upload]).await.map_err(pg)?;
    let mut chunks = std::pin::pin!(chunks);
    let mut verifier = Verifier::new(size);
    while let Some(chunk) = chunks.try_next().await.map_err(pg)? {
        let data: &[u8] = chunk.try_get(1).map_err(pg)?;
        if get_u64(&chunk, 0)? != verifier.len() || !verifier.update(data) {
            return Ok(false);
        }
    }
    Ok(verifier.matches(id))
}

impl PgBlobs {
    /// A pool of connections to the database at `url` (already migrated by
    /// the store), holding each account to `quota` bytes of blobs. Connects
    /// lazily, on the runtime of the first operation.
    pub(crate) fn open(url: &str, quota: u64) -> Result<Self, StoreError> {
        let pool = crate::store::postgres::pool(url, POOL_SIZE)?;
        Ok(Self { pool, quota })
    }

    async fn conn(&self) -> Result<deadpool_postgres::Object, RelayError> {
        self.pool.get().await.map_err(pg)
    }

    async fn size(&self, id: BlobId) -> Result<Option<u64>, RelayError> {
        let c = self.conn().await?;
        let found = row(
            &c,
            "SELECT size FROM blobs WHERE blob_id = $1",
            &[&&id.0[..]],
        )
        .await?;
        found.map(|r| get_u64(&r, 0)).transpose()
    }

    async fn open_partial(&self, id: BlobId, uploader: DeviceAddr) -> Result<u64, RelayError> {
        let c = self.conn().await?;
        let opened = row(
            &c,
            "INSERT INTO blob_partials (blob_id, user_id, device_id, touched_ms)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (blob_id, user_id, device_id)
             DO UPDATE SET touched_ms = EXCLUDED.touched_ms
             RETURNING len",
            &[
                &&id.0[..],
                &&uploader.user.0[..],
                &i64::from(uploader.device),
                &now_ms(),
            ],
        )
        .await?
        .ok_or(corrupt("no partial upload row returned"))?;
        get_u64(&opened, 0)
    }

    async fn truncate(&self, id: BlobId, uploader: DeviceAddr) -> Result<(), RelayError> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg)?;
        let upload: i64 = row(
            &tx,
            "SELECT upload_id FROM blob_partials
             WHERE blob_id = $1 AND user_id = $2 AND device_id = $3 FOR UPDATE",
            &[
                &&id.0[..],
                &&uploader.user.0[..],
                &i64::from(uploader.device),
            ],
        )
        .await?
        .ok_or(RelayError::Conflict("the upload is gone; start again"))?
        .try_get(0)
        .map_err(pg)?;
        exec(
            &tx,
            "DELETE FROM blob_chunks WHERE upload_id = $1",
            &[&upload],
        )
        .await?;
        exec(
            &tx,
            "UPDATE blob_partials SET len = 0, touched_ms = $2 WHERE upload_id = $1",
            &[&upload, &now_ms()],
        )
        .await?;
        tx.commit().await.map_err(pg)
    }

    async fn append(
        &self,
        id: BlobId,
        uploader: DeviceAddr,
        offset: u64,
        data: Bytes,
    ) -> Result<(), RelayError> {
        if data.is_empty() {
            return Ok(());
        }
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg)?;
        let upload: i64 = row(
            &tx,
            "UPDATE blob_partials SET len = len + $5, touched_ms = $6
             WHERE blob_id = $1 AND user_id = $2 AND device_id = $3 AND len = $4
             RETURNING upload_id",
            &[
                &&id.0[..],
                &&uploader.user.0[..],
                &i64::from(uploader.device),
                &big(offset),
                &big(data.len() as u64),
                &now_ms(),
            ],
        )
        .await?
        .ok_or(RelayError::Conflict(
            "the upload changed underneath; resume from the status offset",
        ))?
        .try_get(0)
        .map_err(pg)?;
        exec(
            &tx,
            "INSERT INTO blob_chunks (upload_id, pos, data) VALUES ($1, $2, $3)",
            &[&upload, &big(offset), &&data[..]],
        )
        .await?;
        tx.commit().await.map_err(pg)
    }

    async fn finish(
        &self,
        id: BlobId,
        uploader: DeviceAddr,
        size: u64,
    ) -> Result<bool, RelayError> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg)?;
        let Some(partial) = row(
            &tx,
            "SELECT upload_id, len FROM blob_partials
             WHERE blob_id = $1 AND user_id = $2 AND device_id = $3 FOR UPDATE",
            &[
                &&id.0[..],
                &&uploader.user.0[..],
                &i64::from(uploader.device),
            ],
        )
        .await?
        else {
            return Ok(false);
        };
        let upload: i64 = partial.try_get(0).map_err(pg)?;
        let matches = get_u64(&partial, 1)? == size && verify(&tx, upload, &id, size).await?;
        exec(
            &tx,
            "DELETE FROM blob_partials WHERE upload_id = $1",
            &[&upload],
        )
        .await?;
        // A blob another upload completed first keeps its own chunks.
        let kept = matches
            && exec(
                &tx,
                "INSERT INTO blobs (blob_id, upload_id, size, created_ms)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (blob_id) DO NOTHING",
                &[&&id.0[..], &upload, &big(size), &now_ms()],
            )
            .await?
                == 1;
        if !kept {
            exec(
                &tx,
                "DELETE FROM blob_chunks WHERE upload_id = $1",
                &[&upload],
            )
            .await?;
        }
        tx.commit().await.map_err(pg)?;
        Ok(matches)
    }

    async fn read(&self, id: BlobId, offset: u64, max_len: usize) -> Result<Bytes, RelayError> {
        let c = self.conn().await?;
        // The piece of the chunk holding `offset`; no chunk (NULL) when the
        // stored chunks do not reach it.
        let found = row(
            &c,
            "SELECT c.pos, c.piece FROM blobs b LEFT JOIN LATERAL (
                 SELECT pos, substring(data FROM least($2 - pos + 1, 2147483647)::int FOR $3)
                     AS piece
                 FROM blob_chunks WHERE upload_id = b.upload_id AND pos <= $2
                 ORDER BY pos DESC LIMIT 1) c ON true
             WHERE b.blob_id = $1",
            &[
                &&id.0[..],
                &big(offset),
                &i32::try_from(max_len).unwrap_or(i32::MAX),
            ],
        )
        .await?
        .ok_or(RelayError::NotFound("blob"))?;
        let Some(pos) = found.try_get::<_, Option<i64>>(0).map_err(pg)? else {
            return Ok(Bytes::new());
        };
        if u64::try_from(pos).map_or(true, |pos| pos > offset) {
            return Err(corrupt("blob chunk beyond the offset read"));
        }
        let piece: &[u8] = found.try_get(1).map_err(pg)?;
        Ok(Bytes::copy_from_slice(
            piece.get(..max_len).unwrap_or(piece),
        ))
    }

    async fn charge(&self, owner: UserId, id: BlobId, size: u64) -> Result<(), RelayError> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg)?;
        let [a, b, c2, d, ..] = owner.0;
        let account_key = i32::from_be_bytes([a, b, c2, d]);
        exec(
            &tx,
            "SELECT pg_advisory_xact_lock($1, $2)",
            &[&CHARGE_LOCK, &account_key],
        )
        .await?;
        let used = row(
            &tx,
            "SELECT coalesce(sum(size), 0)::bigint FROM blob_charges
             WHERE user_id = $1 AND blob_id <> $2",
            &[&&owner.0[..], &&id.0[..]],
        )
        .await?
        .map(|r| get_u64(&r, 0))
        .transpose()?
        .unwrap_or(0);
        if used.saturating_add(size) > self.quota {
            return Err(RelayError::QuotaExceeded(
                "account blob storage exceeds limits.blob_quota_bytes",
            ));
        }
        exec(
            &tx,
            "INSERT INTO blob_charges (user_id, blob_id, size, charged_ms)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_id, blob_id)
             DO UPDATE SET size = EXCLUDED.size, charged_ms = EXCLUDED.charged_ms",
            &[&&owner.0[..], &&id.0[..], &big(size), &now_ms()],
        )
        .await?;
        tx.commit().await.map_err(pg)
    }

    async fn release(&self, owner: UserId, id: BlobId) -> Result<(), RelayError> {
        let c = self.conn().await?;
        exec(
            &c,
            "DELETE FROM blob_charges WHERE user_id = $1 AND blob_id = $2",
            &[&&owner.0[..], &&id.0[..]],
        )
        .await
        .map(drop)
    }

    async fn sweep(&self, cutoff: SystemTime) -> Result<u64, RelayError> {
        let cutoff = ms(cutoff);
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg)?;
        let mut uploads = Vec::new();
        for sql in [
            "DELETE FROM blobs WHERE created_ms < $1 RETURNING upload_id",
            "DELETE FROM blob_partials WHERE touched_ms < $1 RETURNING upload_id",
        ] {
            for gone in rows(&tx, sql, &[&cutoff]).await? {
                uploads.push(gone.try_get::<_, i64>(0).map_err(pg)?);
            }
        }
        exec(
            &tx,
            "DELETE FROM blob_chunks WHERE upload_id = ANY($1)",
            &[&uploads],
        )
        .await?;
        // Charges made since the cutoff stay: their upload may be opening.
        exec(
            &tx,
            "DELETE FROM blob_charges c WHERE c.charged_ms < $1
             AND NOT EXISTS (SELECT 1 FROM blobs b WHERE b.blob_id = c.blob_id)
             AND NOT EXISTS (SELECT 1 FROM blob_partials p WHERE p.blob_id = c.blob_id)",
            &[&cutoff],
        )
        .await?;
        tx.commit().await.map_err(pg)?;
        Ok(uploads.len() as u64)
    }
}

/// Importing a single relay's blob files (`tern-relay import-sqlite`,
/// [`crate::store::transfer`]) inside the importer's own transaction, so
/// the blob tables keep their one definition here. Associated functions of
/// [`BlobStore`](super::BlobStore) because this module is private to
/// `blobs`.
impl super::BlobStore {
    /// Stores complete blob `id`, `size` bytes read from `data`, as
    /// finishing an upload leaves it (chunks of at most `MAX_BLOB_CHUNK_LEN`
    /// under a fresh upload id, then the `blobs` row), created at
    /// `created_ms`. Reads one chunk at a time, never the whole blob, and
    /// checks the bytes as an upload is checked: when they are not exactly
    /// `size` bytes whose SHA-256 is `id`, nothing stays stored and the
    /// answer is `false`. A blob already stored is a backend error.
    pub(crate) async fn import_pg_blob(
        c: &impl GenericClient,
        id: BlobId,
        size: u64,
        created_ms: i64,
        data: &mut (impl AsyncRead + Unpin),
    ) -> Result<bool, StoreError> {
        let upload: i64 = c
            .query_one("SELECT nextval('blob_upload_ids')", &[])
            .await?
            .try_get(0)?;
        let insert = c
            .prepare_cached("INSERT INTO blob_chunks (upload_id, pos, data) VALUES ($1, $2, $3)")
            .await?;
        let mut verifier = Verifier::new(size);
        let mut piece = Vec::with_capacity(MAX_BLOB_CHUNK_LEN);
        loop {
            piece.clear();
            let read = (&mut *data)
                .take(MAX_BLOB_CHUNK_LEN as u64)
                .read_to_end(&mut piece)
                .await
                .map_err(|e| StoreError::Backend {
                    backend: "blob files",
                    source: Box::new(e),
                })?;
            let pos = verifier.len();
            if read == 0 || !verifier.update(&piece) {
                break;
            }
            c.execute(&insert, &[&upload, &big(pos), &piece.as_slice()])
                .await?;
        }
        if !verifier.matches(&id) {
            c.execute("DELETE FROM blob_chunks WHERE upload_id = $1", &[&upload])
                .await?;
            return Ok(false);
        }
        c.execute(
            "INSERT INTO blobs (blob_id, upload_id, size, created_ms) VALUES ($1, $2, $3, $4)",
            &[&&id.0[..], &upload, &big(size), &created_ms],
        )
        .await?;
        Ok(true)
    }

    /// Records `owner`'s quota charge of `size` bytes for blob `id`, made
    /// at `charged_ms`.
    pub(crate) async fn import_pg_charge(
        c: &impl GenericClient,
        owner: UserId,
        id: BlobId,
        size: u64,
        charged_ms: i64,
    ) -> Result<(), StoreError> {
        c.execute(
            "INSERT INTO blob_charges (user_id, blob_id, size, charged_ms) VALUES ($1, $2, $3, $4)",
            &[&&owner.0[..], &&id.0[..], &big(size), &charged_ms],
        )
        .await?;
        Ok(())
    }
}

impl BlobBackend for PgBlobs {
    fn size(&self, id: BlobId) -> BlobFuture<'_, Option<u64>> {
        Box::pin(PgBlobs::size(self, id))
    }

    fn open_partial(&self, id: BlobId, uploader: DeviceAddr) -> BlobFuture<'_, u64> {
        Box::pin(PgBlobs::open_partial(self, id, uploader))
    }

    fn truncate_partial(&self, id: BlobId, uploader: DeviceAddr) -> BlobFuture<'_, ()> {
        Box::pin(self.truncate(id, uploader))
    }

    fn append_partial(
        &self,
        id: BlobId,
        uploader: DeviceAddr,
        offset: u64,
        data: Bytes,
    ) -> BlobFuture<'_, ()> {
        Box::pin(self.append(id, uploader, offset, data))
    }

    fn sync_partial(&self, _: BlobId, _: DeviceAddr) -> BlobFuture<'_, ()> {
        // Every append committed its chunk.
        Box::pin(async { Ok(()) })
    }

    fn finish(&self, id: BlobId, uploader: DeviceAddr, size: u64) -> BlobFuture<'_, bool> {
        Box::pin(PgBlobs::finish(self, id, uploader, size))
    }

    fn read(&self, id: BlobId, offset: u64, max_len: usize) -> BlobFuture<'_, Bytes> {
        Box::pin(PgBlobs::read(self, id, offset, max_len))
    }

    fn charge(&self, owner: UserId, id: BlobId, size: u64) -> BlobFuture<'_, ()> {
        Box::pin(PgBlobs::charge(self, owner, id, size))
    }

    fn release(&self, owner: UserId, id: BlobId) -> BlobFuture<'_, ()> {
        Box::pin(PgBlobs::release(self, owner, id))
    }

    fn sweep(&self, cutoff: SystemTime) -> BlobFuture<'_, u64> {
        Box::pin(PgBlobs::sweep(self, cutoff))
    }
}

#[cfg(test)]
mod tests;
