//! Where blobs are kept. [`BlobStore`](super::BlobStore) runs the protocol
//! (streams, chunk checks, resume points, the per-device upload guard, size
//! and quota rules) once for every backend; a [`BlobBackend`] only stores
//! bytes and charges: the filesystem ([`super::files`]), PostgreSQL
//! ([`super::postgres`]), an S3-compatible store later.
//!
//! A partial upload belongs to one `(blob, uploading device)`: nobody else
//! sees or disturbs it. A complete blob is visible to everyone who names
//! it, and only ever holds the bytes whose SHA-256 is its id.

use std::time::SystemTime;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use sha2::{Digest, Sha256};
use tern_protocol::{BlobId, UserId};

use crate::error::RelayError;
use crate::store::DeviceAddr;

/// What a backend operation yields.
pub(crate) type BlobFuture<'a, T> = BoxFuture<'a, Result<T, RelayError>>;

/// Storage of complete blobs, partial uploads and the per-account quota
/// charges. Every method is safe against concurrent callers on this and on
/// other nodes sharing the same storage.
pub(crate) trait BlobBackend: Send + Sync {
    /// The size of complete blob `id`, or `None` when it is not stored.
    fn size(&self, id: BlobId) -> BlobFuture<'_, Option<u64>>;

    /// Opens `uploader`'s upload of `id`, creating it empty, and returns
    /// how many bytes it holds: the resume point.
    fn open_partial(&self, id: BlobId, uploader: DeviceAddr) -> BlobFuture<'_, u64>;

    /// Empties `uploader`'s upload of `id`.
    fn truncate_partial(&self, id: BlobId, uploader: DeviceAddr) -> BlobFuture<'_, ()>;

    /// Appends `data` to `uploader`'s upload of `id`, which must hold
    /// exactly `offset` bytes (`Conflict` otherwise: it changed
    /// underneath, or is gone).
    fn append_partial(
        &self,
        id: BlobId,
        uploader: DeviceAddr,
        offset: u64,
        data: Bytes,
    ) -> BlobFuture<'_, ()>;

    /// Makes what was appended to `uploader`'s upload of `id` durable
    /// (called once a stream ends, however it ended).
    fn sync_partial(&self, id: BlobId, uploader: DeviceAddr) -> BlobFuture<'_, ()>;

    /// When `uploader`'s upload of `id` holds exactly `size` bytes whose
    /// SHA-256 is `id` ([`Verifier`]), makes it the complete blob (or drops
    /// it if that blob is already stored) and answers `true`; otherwise
    /// discards it and answers `false`. Appends cannot slip in between the
    /// check and the commit.
    fn finish(&self, id: BlobId, uploader: DeviceAddr, size: u64) -> BlobFuture<'_, bool>;

    /// Up to `max_len` bytes of complete blob `id` from `offset`: fewer at
    /// the end or at a boundary of the backend's own chunks, empty only at
    /// or beyond the end. `NotFound` when the blob is not stored.
    fn read(&self, id: BlobId, offset: u64, max_len: usize) -> BlobFuture<'_, Bytes>;

    /// Charges `owner` `size` bytes for blob `id`, replacing an earlier
    /// charge of the same blob (a blob counts once per account); refuses
    /// with `QuotaExceeded` when the account's charges would then exceed
    /// its quota. Two nodes cannot both fit the last bytes of a quota.
    fn charge(&self, owner: UserId, id: BlobId, size: u64) -> BlobFuture<'_, ()>;

    /// Drops `owner`'s charge for blob `id`, if any.
    fn release(&self, owner: UserId, id: BlobId) -> BlobFuture<'_, ()>;

    /// Deletes complete blobs and partial uploads not written since
    /// `cutoff`, then the charges of blobs neither complete nor partially
    /// uploaded any more; returns how many blobs and partials it deleted.
    fn sweep(&self, cutoff: SystemTime) -> BlobFuture<'_, u64>;
}

/// Checks, piece by piece, that an upload is exactly the blob its id
/// names: `size` bytes whose SHA-256 is the id.
pub(crate) struct Verifier {
    hasher: Sha256,
    len: u64,
    size: u64,
}

impl Verifier {
    /// Expects `size` bytes.
    pub(crate) fn new(size: u64) -> Self {
        Self {
            hasher: Sha256::new(),
            len: 0,
            size,
        }
    }

    /// Bytes seen so far: the offset the next piece must start at.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Takes the next piece; `false` once there are more bytes than
    /// expected (the upload cannot match, stop reading).
    pub(crate) fn update(&mut self, piece: &[u8]) -> bool {
        self.len = self.len.saturating_add(piece.len() as u64);
        if self.len > self.size {
            return false;
        }
        self.hasher.update(piece);
        true
    }

    /// Whether the pieces were exactly the blob `id`.
    pub(crate) fn matches(self, id: &BlobId) -> bool {
        self.len == self.size && <[u8; 32]>::from(self.hasher.finalize()) == id.0
    }
}
