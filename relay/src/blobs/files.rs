//! Blobs as files under `DATA_DIR/blobs`, for a single node.
//!
//! Layout: complete blobs at `ab/abcdef…` (hex id), uploads in progress at
//! `partial/abcdef….USER.DEVICE` (one per uploading device), charges under
//! `owners/` ([`quota`]). A partial file grows by appends; finishing hashes
//! it and renames it into place, so a complete blob appears whole or not at
//! all. The retention sweep goes by modification time.

mod quota;

use std::collections::HashSet;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use tern_protocol::{BlobId, UserId};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::backend::{BlobBackend, BlobFuture, Verifier};
use crate::error::RelayError;
use crate::store::DeviceAddr;

/// Directory of the per-account charge records, under the blob directory.
const OWNERS: &str = "owners";
/// Directory of uploads in progress, under the blob directory.
const PARTIAL: &str = "partial";
/// Bytes read at a time while hashing a partial file.
const HASH_BUF: usize = 256 * 1024;

/// The blob directory of one node (see the module docs).
pub(crate) struct FilesBackend(Arc<Files>);

/// The directory and its charge records; shared with the blocking sweep.
struct Files {
    dir: PathBuf,
    ledger: quota::Ledger,
}

fn io(_: std::io::Error) -> RelayError {
    RelayError::Unavailable("blob storage failed")
}

impl FilesBackend {
    /// Opens (creating) `data_dir/blobs`, holding each account to `quota`
    /// bytes of blobs.
    pub(crate) fn open(data_dir: &Path, quota: u64) -> std::io::Result<Self> {
        let dir = data_dir.join("blobs");
        std::fs::create_dir_all(dir.join(PARTIAL))?;
        let ledger = quota::Ledger::open(&dir, quota)?;
        Ok(Self(Arc::new(Files { dir, ledger })))
    }
}

impl Files {
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

    async fn size(&self, id: BlobId) -> Result<Option<u64>, RelayError> {
        match tokio::fs::metadata(self.final_path(&id)).await {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e)),
        }
    }

    async fn open_partial(&self, id: BlobId, uploader: DeviceAddr) -> Result<u64, RelayError> {
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.partial_path(&id, uploader))
            .await
            .map_err(io)?;
        Ok(file.metadata().await.map_err(io)?.len())
    }

    /// The existing partial file, open for appending.
    async fn partial(
        &self,
        id: BlobId,
        uploader: DeviceAddr,
    ) -> Result<tokio::fs::File, RelayError> {
        tokio::fs::OpenOptions::new()
            .append(true)
            .open(self.partial_path(&id, uploader))
            .await
            .map_err(|e| match e.kind() {
                ErrorKind::NotFound => RelayError::Conflict("the upload is gone; start again"),
                _ => io(e),
            })
    }

    async fn append(
        &self,
        id: BlobId,
        uploader: DeviceAddr,
        offset: u64,
        data: Bytes,
    ) -> Result<(), RelayError> {
        let mut file = self.partial(id, uploader).await?;
        if file.metadata().await.map_err(io)?.len() != offset {
            return Err(RelayError::Conflict(
                "the upload changed underneath; resume from the status offset",
            ));
        }
        file.write_all(&data).await.map_err(io)?;
        file.flush().await.map_err(io)
    }

    async fn finish(
        &self,
        id: BlobId,
        uploader: DeviceAddr,
        size: u64,
    ) -> Result<bool, RelayError> {
        let partial = self.partial_path(&id, uploader);
        let mut file = match tokio::fs::File::open(&partial).await {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io(e)),
        };
        let mut verifier = Verifier::new(size);
        let mut buf = vec![0u8; HASH_BUF];
        loop {
            let n = file.read(&mut buf).await.map_err(io)?;
            if n == 0 || !verifier.update(buf.get(..n).unwrap_or_default()) {
                break;
            }
        }
        drop(file);
        if !verifier.matches(&id) {
            tokio::fs::remove_file(&partial).await.map_err(io)?;
            return Ok(false);
        }
        let done = self.final_path(&id);
        let parent = done.parent().unwrap_or(&self.dir);
        tokio::fs::create_dir_all(parent).await.map_err(io)?;
        tokio::fs::rename(&partial, &done).await.map_err(io)?;
        tokio::fs::File::open(parent)
            .await
            .map_err(io)?
            .sync_all()
            .await
            .map_err(io)?;
        Ok(true)
    }

    async fn read(&self, id: BlobId, offset: u64, max_len: usize) -> Result<Bytes, RelayError> {
        let mut file = tokio::fs::File::open(self.final_path(&id))
            .await
            .map_err(|_| RelayError::NotFound("blob"))?;
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(io)?;
        let mut data = Vec::with_capacity(max_len);
        file.take(max_len as u64)
            .read_to_end(&mut data)
            .await
            .map_err(io)?;
        Ok(data.into())
    }

    /// Deletes blobs and partial uploads not modified since `cutoff`, and
    /// the quota charges of every blob gone, which frees that quota.
    fn sweep(&self, cutoff: SystemTime) -> std::io::Result<u64> {
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

impl BlobBackend for FilesBackend {
    fn size(&self, id: BlobId) -> BlobFuture<'_, Option<u64>> {
        Box::pin(self.0.size(id))
    }

    fn open_partial(&self, id: BlobId, uploader: DeviceAddr) -> BlobFuture<'_, u64> {
        Box::pin(self.0.open_partial(id, uploader))
    }

    fn truncate_partial(&self, id: BlobId, uploader: DeviceAddr) -> BlobFuture<'_, ()> {
        Box::pin(async move {
            let file = self.0.partial(id, uploader).await?;
            file.set_len(0).await.map_err(io)
        })
    }

    fn append_partial(
        &self,
        id: BlobId,
        uploader: DeviceAddr,
        offset: u64,
        data: Bytes,
    ) -> BlobFuture<'_, ()> {
        Box::pin(self.0.append(id, uploader, offset, data))
    }

    fn sync_partial(&self, id: BlobId, uploader: DeviceAddr) -> BlobFuture<'_, ()> {
        Box::pin(async move {
            match self.0.partial(id, uploader).await {
                Ok(file) => file.sync_data().await.map_err(io),
                // Nothing left to make durable.
                Err(RelayError::Conflict(_)) => Ok(()),
                Err(e) => Err(e),
            }
        })
    }

    fn finish(&self, id: BlobId, uploader: DeviceAddr, size: u64) -> BlobFuture<'_, bool> {
        Box::pin(self.0.finish(id, uploader, size))
    }

    fn read(&self, id: BlobId, offset: u64, max_len: usize) -> BlobFuture<'_, Bytes> {
        Box::pin(self.0.read(id, offset, max_len))
    }

    fn charge(&self, owner: UserId, id: BlobId, size: u64) -> BlobFuture<'_, ()> {
        Box::pin(async move { self.0.ledger.charge(&owner, &id, size).await })
    }

    fn release(&self, owner: UserId, id: BlobId) -> BlobFuture<'_, ()> {
        Box::pin(async move { self.0.ledger.release(&owner, &id).await })
    }

    fn sweep(&self, cutoff: SystemTime) -> BlobFuture<'_, u64> {
        let files = self.0.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || files.sweep(cutoff))
                .await
                .map_err(|_| RelayError::Unavailable("blob sweep worker failed"))?
                .map_err(io)
        })
    }
}

#[cfg(test)]
mod tests {
    use tern_protocol::wire::BlobUploadStart;

    use super::*;
    use crate::blobs::BlobStore;
    use crate::blobs::conformance::{
        Chunks, Fixture, Frames, blob, blob_conformance_suite, device, download, limits,
    };

    /// A data directory of its own.
    struct FilesFixture {
        dir: tempfile::TempDir,
        quota: u64,
    }

    fn final_path(dir: &Path, id: &BlobId) -> PathBuf {
        let hex = id.to_string();
        dir.join("blobs").join(&hex[..2]).join(&hex)
    }

    impl Fixture for FilesFixture {
        async fn fresh(quota: u64) -> Self {
            let dir = tempfile::tempdir().unwrap();
            Self { dir, quota }
        }

        fn node(&self) -> BlobStore {
            BlobStore::open(self.dir.path(), &limits(self.quota)).unwrap()
        }

        async fn age(&self, id: BlobId) {
            let file = std::fs::File::options()
                .write(true)
                .open(final_path(self.dir.path(), &id))
                .unwrap();
            file.set_modified(SystemTime::UNIX_EPOCH).unwrap();
        }
    }

    blob_conformance_suite!(super::FilesFixture);

    /// Files laid out by earlier relays: a complete blob is served, and a
    /// partial upload resumes where it stopped.
    #[tokio::test]
    async fn an_existing_data_directory_keeps_working() {
        let dir = tempfile::tempdir().unwrap();
        let (stored, stored_id) = blob(1000, 1);
        let path = final_path(dir.path(), &stored_id);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &stored).unwrap();
        let (partial, partial_id) = blob(1000, 2);
        let who = device(3);
        let name = format!("{partial_id}.{}.{}", who.user, who.device);
        let partial_dir = dir.path().join("blobs").join(PARTIAL);
        std::fs::create_dir_all(&partial_dir).unwrap();
        std::fs::write(partial_dir.join(name), &partial[..400]).unwrap();

        let store = BlobStore::open(dir.path(), &limits(u64::MAX)).unwrap();
        assert_eq!(download(&store, stored_id, 0).await.unwrap(), stored);
        let start = BlobUploadStart {
            sha256: partial_id.to_wire(),
            size: 1000,
        };
        let rest = tern_protocol::wire::BlobChunk {
            offset: 400,
            data: partial[400..].to_vec().into(),
        };
        let mut frames = Frames::default();
        let mut chunks = Chunks([Ok(rest)].into());
        store
            .upload(who, start, 1, &mut frames, &mut chunks)
            .await
            .unwrap();
        assert_eq!(download(&store, partial_id, 0).await.unwrap(), partial);
        assert!(
            final_path(dir.path(), &partial_id).exists(),
            "the same layout"
        );
    }
}
