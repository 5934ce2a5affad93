//! Encrypted attachments on the filesystem, content-addressed by the
//! SHA-256 of their ciphertext.
//!
//! Layout under `DATA_DIR/blobs`: complete blobs at `ab/abcdef…` (hex id),
//! uploads in progress at `partial/abcdef….USER.DEVICE`: each uploading
//! device has its own, so nobody else who knows a blob id sees or disturbs
//! its progress. An upload streams chunks to the partial file (memory
//! bounded by one frame), resumes from the partial file's length after a
//! dropped connection, and becomes visible only after its hash is verified
//! and the file is renamed into place.
//!
//! Each account may keep at most `limits.blob_quota_bytes` of blobs (see
//! [`quota`]). Access is by capability: a blob id is the SHA-256 of a
//! ciphertext under a fresh random key, so only those given the attachment
//! pointer can name it; there is no listing.

mod quota;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use quinn::SendStream;
use sha2::{Digest, Sha256};
use tern_protocol::BlobId;
use tern_protocol::limits::MAX_BLOB_CHUNK_LEN;
use tern_protocol::wire::{
    BlobChunk, BlobDownload, BlobInfo, BlobUploadStart, BlobUploadStatus, ServerFrame,
    client_frame, response, server_frame,
};
use tern_transport::{FrameReader, write_frame};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::config::LimitsConfig;
use crate::error::RelayError;
use crate::store::DeviceAddr;

/// Directory of the per-account charge records, under the blob directory.
const OWNERS: &str = "owners";
/// Directory of uploads in progress, under the blob directory.
const PARTIAL: &str = "partial";

/// The blob directory and the uploads running now.
pub struct BlobStore {
    dir: PathBuf,
    max_len: u64,
    uploading: Mutex<HashSet<(BlobId, DeviceAddr)>>,
    ledger: quota::Ledger,
}

/// Marks a device's upload of a blob as running; unmarks it when dropped.
struct UploadGuard<'a>(&'a BlobStore, (BlobId, DeviceAddr));

impl Drop for UploadGuard<'_> {
    fn drop(&mut self) {
        self.0.lock().remove(&self.1);
    }
}

fn io(_: std::io::Error) -> RelayError {
    RelayError::Unavailable("blob storage failed")
}

async fn send(stream: &mut SendStream, frame: &ServerFrame) -> Result<(), RelayError> {
    write_frame(stream, frame)
        .await
        .map_err(|_| RelayError::Unavailable("stream closed"))
}

impl BlobStore {
    /// Opens (creating) `data_dir/blobs`, enforcing `limits.max_blob_bytes`
    /// per blob and `limits.blob_quota_bytes` per account.
    pub fn open(data_dir: &Path, limits: &LimitsConfig) -> std::io::Result<Self> {
        let dir = data_dir.join("blobs");
        std::fs::create_dir_all(dir.join(PARTIAL))?;
        let ledger = quota::Ledger::open(&dir, limits.blob_quota_bytes)?;
        Ok(Self {
            dir,
            max_len: limits.max_blob_bytes,
            uploading: Mutex::new(HashSet::new()),
            ledger,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<(BlobId, DeviceAddr)>> {
        self.uploading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn final_path(&self, id: &BlobId) -> PathBuf {
        self.final_path_of(&id.to_string())
    }

    fn final_path_of(&self, hex: &str) -> PathBuf {
        self.dir.join(hex.get(..2).unwrap_or_default()).join(hex)
    }

    /// The partial file of `uploader`'s upload of `id`.
    fn partial_path(&self, id: &BlobId, uploader: DeviceAddr) -> PathBuf {
        let name = format!("{id}.{}.{}", uploader.user, uploader.device);
        self.dir.join(PARTIAL).join(name)
    }

    /// The hex ids of the blobs with an upload in progress.
    fn partial_ids(&self) -> std::io::Result<HashSet<String>> {
        let mut ids = HashSet::new();
        for file in std::fs::read_dir(self.dir.join(PARTIAL))? {
            let name = file?.file_name();
            if let Some(id) = name.to_str().and_then(|n| n.split('.').next()) {
                ids.insert(id.to_owned());
            }
        }
        Ok(ids)
    }

    fn status(id: &BlobId, received: u64, complete: bool, request_id: u64) -> ServerFrame {
        let status = BlobUploadStatus {
            blob_id: id.to_wire(),
            received,
            complete,
        };
        ServerFrame::response(response::Kind::BlobUploadStatus(status), request_id)
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
        let id = BlobId::from_slice("BlobUploadStart.sha256", &start.sha256)?;
        if start.size > self.max_len {
            return Err(RelayError::TooLarge(
                "blob larger than limits.max_blob_bytes",
            ));
        }
        let done = self.final_path(&id);
        if tokio::fs::metadata(&done)
            .await
            .is_ok_and(|m| m.len() == start.size)
        {
            return send(tx, &Self::status(&id, start.size, true, request_id)).await;
        }
        if !self.lock().insert((id, uploader)) {
            return Err(RelayError::Conflict(
                "this device is uploading this blob on another stream",
            ));
        }
        let _guard = UploadGuard(self, (id, uploader));
        let owner = &uploader.user;
        self.ledger.charge(owner, &id, start.size).await?;
        let partial = self.partial_path(&id, uploader);
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&partial)
            .await
            .map_err(io)?;
        let mut received = file.metadata().await.map_err(io)?.len();
        if received > start.size {
            file.set_len(0).await.map_err(io)?;
            received = 0;
        }
        send(tx, &Self::status(&id, received, false, request_id)).await?;
        let streamed = receive_chunks(&mut file, rx, &mut received, start.size).await;
        file.sync_data().await.map_err(io)?;
        streamed?;
        if received != start.size {
            return Err(RelayError::BadRequest(
                "upload incomplete; resume from the status offset",
            ));
        }
        if hash_file(&partial).await? != id.0 {
            tokio::fs::remove_file(&partial).await.map_err(io)?;
            self.ledger.release(owner, &id).await?;
            return Err(RelayError::BadRequest(
                "ciphertext does not match its sha256",
            ));
        }
        let parent = done.parent().unwrap_or(&self.dir);
        tokio::fs::create_dir_all(parent).await.map_err(io)?;
        tokio::fs::rename(&partial, &done).await.map_err(io)?;
        tokio::fs::File::open(parent)
            .await
            .map_err(io)?
            .sync_all()
            .await
            .map_err(io)?;
        send(tx, &Self::status(&id, received, true, request_id)).await
    }

    /// Streams a blob from an offset: BlobInfo (answering `request_id`),
    /// then chunks.
    pub async fn download(
        &self,
        req: BlobDownload,
        request_id: u64,
        tx: &mut SendStream,
    ) -> Result<(), RelayError> {
        let id = BlobId::from_slice("BlobDownload.blob_id", &req.blob_id)?;
        let mut file = tokio::fs::File::open(self.final_path(&id))
            .await
            .map_err(|_| RelayError::NotFound("blob"))?;
        let size = file.metadata().await.map_err(io)?.len();
        if req.offset > size {
            return Err(RelayError::BadRequest("offset beyond the end of the blob"));
        }
        let info = response::Kind::BlobInfo(BlobInfo {
            blob_id: id.to_wire(),
            size,
        });
        send(tx, &ServerFrame::response(info, request_id)).await?;
        file.seek(std::io::SeekFrom::Start(req.offset))
            .await
            .map_err(io)?;
        let mut offset = req.offset;
        let mut buf = vec![0u8; MAX_BLOB_CHUNK_LEN];
        while offset < size {
            let n = file.read(&mut buf).await.map_err(io)?;
            if n == 0 {
                break;
            }
            let chunk = ServerFrame {
                body: Some(server_frame::Body::BlobChunk(BlobChunk {
                    offset,
                    data: bytes::Bytes::copy_from_slice(&buf[..n]),
                })),
            };
            send(tx, &chunk).await?;
            offset += n as u64;
        }
        Ok(())
    }

    /// Deletes blobs and partial uploads not modified since `cutoff`, and
    /// the quota charges of every blob gone, which frees that quota.
    pub fn sweep(&self, cutoff: SystemTime) -> std::io::Result<u64> {
        let mut deleted = 0;
        for dir in std::fs::read_dir(&self.dir)? {
            let dir = dir?;
            if dir.file_name() == OWNERS {
                continue;
            }
            for file in std::fs::read_dir(dir.path())? {
                let file = file?;
                if file.metadata()?.modified()? < cutoff {
                    std::fs::remove_file(file.path())?;
                    deleted += 1;
                }
            }
        }
        let partial = self.partial_ids()?;
        self.ledger
            .prune(|hex| partial.contains(hex) || self.final_path_of(hex).exists())?;
        Ok(deleted)
    }
}

async fn receive_chunks(
    file: &mut tokio::fs::File,
    rx: &mut FrameReader,
    received: &mut u64,
    size: u64,
) -> Result<(), RelayError> {
    loop {
        let body = match rx.next().await {
            Ok(Some(body)) => body,
            Ok(None) => return Ok(()),
            Err(e) => {
                return Err(crate::intake::refusal(e)
                    .unwrap_or(RelayError::Unavailable("upload stream broke")));
            }
        };
        let frame = tern_protocol::decode_client_frame(body)?;
        let Some(client_frame::Body::BlobChunk(chunk)) = frame.body else {
            return Err(RelayError::BadRequest("expected a BlobChunk"));
        };
        if chunk.offset != *received {
            return Err(RelayError::BadRequest(
                "chunk offset is not the resume point",
            ));
        }
        let end = received.saturating_add(chunk.data.len() as u64);
        if end > size {
            return Err(RelayError::TooLarge("chunks exceed the announced size"));
        }
        file.write_all(&chunk.data).await.map_err(io)?;
        *received = end;
    }
}

async fn hash_file(path: &Path) -> Result<[u8; 32], RelayError> {
    let mut file = tokio::fs::File::open(path).await.map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf).await.map_err(io)?;
        if n == 0 {
            return Ok(hasher.finalize().into());
        }
        hasher.update(&buf[..n]);
    }
}
