//! Encrypted attachments, content-addressed by the SHA-256 of their
//! ciphertext (docs/protocol.md §5.7).
//!
//! This module runs the protocol the same way whatever keeps the bytes (a
//! [`BlobBackend`]: files under `DATA_DIR/blobs` for a single node, the
//! shared PostgreSQL database in cluster mode). Each uploading device has
//! its own upload session, so nobody else who knows a blob id sees or
//! disturbs its progress. An upload streams chunks to storage (memory
//! bounded by about two chunks), resumes from what storage holds after a
//! dropped connection, and becomes visible only after its hash is
//! verified.
//!
//! Each account may keep at most `limits.blob_quota_bytes` of blobs,
//! charged before the first byte is accepted. Access is by capability: a
//! blob id is the SHA-256 of a ciphertext under a fresh random key, so only
//! those given the attachment pointer can name it; there is no listing.

mod backend;
#[cfg(test)]
mod conformance;
mod files;
mod postgres;

use std::collections::HashSet;
use std::future::Future;
use std::path::Path;
use std::sync::Mutex;
use std::time::SystemTime;

use bytes::BytesMut;
use quinn::SendStream;
use tern_protocol::BlobId;
use tern_protocol::limits::MAX_BLOB_CHUNK_LEN;
use tern_protocol::wire::{
    BlobChunk, BlobDownload, BlobInfo, BlobUploadStart, BlobUploadStatus, ServerFrame,
    client_frame, response, server_frame,
};
use tern_transport::{FrameReader, write_frame};

use crate::config::{Backend, Config, LimitsConfig};
use crate::error::{RelayError, StoreError};
use crate::store::DeviceAddr;
use backend::BlobBackend;

/// The protocol side of blobs over one storage backend, and the uploads
/// running on this node now.
pub struct BlobStore {
    backend: Box<dyn BlobBackend>,
    max_len: u64,
    uploading: Mutex<HashSet<(BlobId, DeviceAddr)>>,
}

/// Marks a device's upload of a blob as running; unmarks it when dropped.
struct UploadGuard<'a>(&'a BlobStore, (BlobId, DeviceAddr));

impl Drop for UploadGuard<'_> {
    fn drop(&mut self) {
        self.0.lock().remove(&self.1);
    }
}

/// Where a transfer's frames go: a QUIC stream (or a test's list).
pub(crate) trait FrameSink {
    /// Writes one frame.
    fn send(&mut self, frame: &ServerFrame) -> impl Future<Output = Result<(), RelayError>> + Send;
}

impl FrameSink for SendStream {
    async fn send(&mut self, frame: &ServerFrame) -> Result<(), RelayError> {
        write_frame(self, frame)
            .await
            .map_err(|_| RelayError::Unavailable("stream closed"))
    }
}

/// Where an upload's chunks come from: a QUIC stream (or a test's list).
pub(crate) trait ChunkSource {
    /// The next chunk, or `None` once the client finished its side.
    fn next_chunk(&mut self) -> impl Future<Output = Result<Option<BlobChunk>, RelayError>> + Send;
}

impl ChunkSource for FrameReader {
    async fn next_chunk(&mut self) -> Result<Option<BlobChunk>, RelayError> {
        let body = match self.next().await {
            Ok(Some(body)) => body,
            Ok(None) => return Ok(None),
            Err(e) => {
                return Err(crate::intake::refusal(e)
                    .unwrap_or(RelayError::Unavailable("upload stream broke")));
            }
        };
        let frame = tern_protocol::decode_client_frame(body)?;
        match frame.body {
            Some(client_frame::Body::BlobChunk(chunk)) => Ok(Some(chunk)),
            _ => Err(RelayError::BadRequest("expected a BlobChunk")),
        }
    }
}

fn status(id: &BlobId, received: u64, complete: bool, request_id: u64) -> ServerFrame {
    let status = BlobUploadStatus {
        blob_id: id.to_wire(),
        received,
        complete,
    };
    ServerFrame::response(response::Kind::BlobUploadStatus(status), request_id)
}

impl BlobStore {
    /// Opens (creating) the blob files in `data_dir/blobs`, enforcing
    /// `limits.max_blob_bytes` per blob and `limits.blob_quota_bytes` per
    /// account.
    pub fn open(data_dir: &Path, limits: &LimitsConfig) -> std::io::Result<Self> {
        let files = files::FilesBackend::open(data_dir, limits.blob_quota_bytes)?;
        Ok(Self::with_backend(Box::new(files), limits))
    }

    /// Opens the blob storage `config` asks for: the shared PostgreSQL
    /// database with `store.backend = "postgres"` (so that every node of a
    /// cluster serves every blob), files in the data directory otherwise.
    /// PostgreSQL must already be migrated (the store opens first), and
    /// this must run inside the tokio runtime that will drive the blobs.
    pub fn for_config(config: &Config) -> Result<Self, StoreError> {
        let limits = &config.limits;
        match (config.store.backend, &config.store.url) {
            (Backend::Postgres, Some(url)) => {
                let pg = postgres::PgBlobs::open(url, limits.blob_quota_bytes)?;
                Ok(Self::with_backend(Box::new(pg), limits))
            }
            (Backend::Postgres, None) => Err(StoreError::Unreachable(
                "backend = \"postgres\" needs store.url".into(),
            )),
            (Backend::Sqlite, _) => {
                Self::open(&config.data_dir, limits).map_err(|e| StoreError::Backend {
                    backend: "blob files",
                    source: Box::new(e),
                })
            }
        }
    }

    /// The protocol over `backend`, with `limits.max_blob_bytes` per blob.
    fn with_backend(backend: Box<dyn BlobBackend>, limits: &LimitsConfig) -> Self {
        Self {
            backend,
            max_len: limits.max_blob_bytes,
            uploading: Mutex::new(HashSet::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<(BlobId, DeviceAddr)>> {
        self.uploading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs an upload by `uploader` on its request stream, charging the
    /// blob's announced size to its account's quota (a blob already stored is
    /// not charged again); the caller reports errors. Every status answers
    /// `request_id`. The upload session is the device's own: another device
    /// uploading the same blob has a separate one.
    pub async fn upload_for(
        &self,
        uploader: DeviceAddr,
        start: BlobUploadStart,
        request_id: u64,
        tx: &mut SendStream,
        rx: &mut FrameReader,
    ) -> Result<(), RelayError> {
        self.upload(uploader, start, request_id, tx, rx).await
    }

    /// [`upload_for`](Self::upload_for) over any frame sink and chunk
    /// source.
    async fn upload(
        &self,
        uploader: DeviceAddr,
        start: BlobUploadStart,
        request_id: u64,
        tx: &mut impl FrameSink,
        rx: &mut impl ChunkSource,
    ) -> Result<(), RelayError> {
        let id = BlobId::from_slice("BlobUploadStart.sha256", &start.sha256)?;
        if start.size > self.max_len {
            return Err(RelayError::TooLarge(
                "blob larger than limits.max_blob_bytes",
            ));
        }
        if self.backend.size(id).await? == Some(start.size) {
            return tx.send(&status(&id, start.size, true, request_id)).await;
        }
        if !self.lock().insert((id, uploader)) {
            return Err(RelayError::Conflict(
                "this device is uploading this blob on another stream",
            ));
        }
        let _guard = UploadGuard(self, (id, uploader));
        let owner = uploader.user;
        self.backend.charge(owner, id, start.size).await?;
        let mut received = self.backend.open_partial(id, uploader).await?;
        if received > start.size {
            self.backend.truncate_partial(id, uploader).await?;
            received = 0;
        }
        tx.send(&status(&id, received, false, request_id)).await?;
        let streamed = self
            .receive_chunks(id, uploader, rx, &mut received, start.size)
            .await;
        self.backend.sync_partial(id, uploader).await?;
        streamed?;
        if received != start.size {
            return Err(RelayError::BadRequest(
                "upload incomplete; resume from the status offset",
            ));
        }
        if !self.backend.finish(id, uploader, start.size).await? {
            self.backend.release(owner, id).await?;
            return Err(RelayError::BadRequest(
                "ciphertext does not match its sha256",
            ));
        }
        tx.send(&status(&id, received, true, request_id)).await
    }

    /// Appends the stream's chunks to the upload, `received` bytes long,
    /// until the client finishes its side. Chunks are gathered into pieces
    /// of [`MAX_BLOB_CHUNK_LEN`] so that storage holds few, full pieces
    /// however small the client's chunks; whatever arrived is stored even
    /// when the stream breaks, as the resume point.
    async fn receive_chunks(
        &self,
        id: BlobId,
        uploader: DeviceAddr,
        rx: &mut impl ChunkSource,
        received: &mut u64,
        size: u64,
    ) -> Result<(), RelayError> {
        let mut stored = *received;
        let mut pending = BytesMut::new();
        let streamed = loop {
            let chunk = match rx.next_chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            };
            if chunk.offset != *received {
                break Err(RelayError::BadRequest(
                    "chunk offset is not the resume point",
                ));
            }
            let end = received.saturating_add(chunk.data.len() as u64);
            if end > size {
                break Err(RelayError::TooLarge("chunks exceed the announced size"));
            }
            pending.extend_from_slice(&chunk.data);
            *received = end;
            while pending.len() >= MAX_BLOB_CHUNK_LEN {
                let piece = pending.split_to(MAX_BLOB_CHUNK_LEN).freeze();
                let len = piece.len() as u64;
                self.backend
                    .append_partial(id, uploader, stored, piece)
                    .await?;
                stored += len;
            }
        };
        if !pending.is_empty() {
            let piece = pending.freeze();
            self.backend
                .append_partial(id, uploader, stored, piece)
                .await?;
        }
        streamed
    }

    /// Streams a blob from an offset: BlobInfo (answering `request_id`),
    /// then chunks.
    pub async fn download(
        &self,
        req: BlobDownload,
        request_id: u64,
        tx: &mut SendStream,
    ) -> Result<(), RelayError> {
        self.download_to(req, request_id, tx).await
    }

    /// [`download`](Self::download) to any frame sink.
    async fn download_to(
        &self,
        req: BlobDownload,
        request_id: u64,
        tx: &mut impl FrameSink,
    ) -> Result<(), RelayError> {
        let id = BlobId::from_slice("BlobDownload.blob_id", &req.blob_id)?;
        let size = self
            .backend
            .size(id)
            .await?
            .ok_or(RelayError::NotFound("blob"))?;
        if req.offset > size {
            return Err(RelayError::BadRequest("offset beyond the end of the blob"));
        }
        let info = response::Kind::BlobInfo(BlobInfo {
            blob_id: id.to_wire(),
            size,
        });
        tx.send(&ServerFrame::response(info, request_id)).await?;
        let mut offset = req.offset;
        while offset < size {
            let want = usize::try_from(size - offset)
                .unwrap_or(usize::MAX)
                .min(MAX_BLOB_CHUNK_LEN);
            let mut data = self.backend.read(id, offset, want).await?;
            if data.is_empty() {
                return Err(RelayError::Unavailable("stored blob ends early"));
            }
            data.truncate(want);
            let len = data.len() as u64;
            let chunk = ServerFrame {
                body: Some(server_frame::Body::BlobChunk(BlobChunk { offset, data })),
            };
            tx.send(&chunk).await?;
            offset += len;
        }
        Ok(())
    }

    /// Deletes blobs and partial uploads not written since `cutoff`, and
    /// the quota charges of every blob gone, which frees that quota;
    /// returns how many blobs and partials it deleted. Blocks: call it on a
    /// blocking thread of the relay's runtime (`spawn_blocking`).
    pub fn sweep(&self, cutoff: SystemTime) -> Result<u64, RelayError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| RelayError::Unavailable("the blob sweep needs the relay's runtime"))?;
        runtime.block_on(self.backend.sweep(cutoff))
    }
}
