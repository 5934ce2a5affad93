//! Uploads in progress: the attachment key and ciphertext digest chosen for a
//! file, kept until the upload finished and its message is queued, so that an
//! interrupted upload resumes (same key, same ciphertext, same blob id) from
//! what the relay already holds instead of starting over.

use rusqlite::{OptionalExtension, params};
use zeroize::Zeroizing;

use super::attachments::{BLOB_ID_LEN, MAX_LOCAL_PATH_LEN};
use super::sql::{check_len, get_u64, now_ms, to_i64};
use super::{ChatId, StoreError, Tx};

/// Most uploads in progress at once.
pub const MAX_PENDING_UPLOADS: usize = 256;
/// Length of an attachment key.
const KEY_LEN: usize = 32;

/// An attachment upload that has not finished.
#[derive(Clone)]
pub struct PendingUpload {
    /// The chat it is for.
    pub chat_id: ChatId,
    /// The plaintext file.
    pub path: String,
    /// The file's size when the upload started.
    pub size: u64,
    /// The chunked-AEAD key (32 bytes).
    pub key: Zeroizing<Vec<u8>>,
    /// SHA-256 of the ciphertext: the relay's blob id.
    pub digest: [u8; BLOB_ID_LEN],
}

impl std::fmt::Debug for PendingUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingUpload")
            .field("chat_id", &self.chat_id)
            .field("path", &self.path)
            .field("size", &self.size)
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

impl Tx<'_> {
    /// The unfinished upload of `path` to `chat_id`, if any.
    pub fn pending_upload(
        &self,
        chat_id: &ChatId,
        path: &str,
    ) -> Result<Option<PendingUpload>, StoreError> {
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT chat_id, path, size, key, digest FROM pending_uploads
                 WHERE chat_id = ?1 AND path = ?2",
            )?
            .query_row(params![chat_id, path], upload_row)
            .optional()?)
    }

    /// Records (or replaces) the upload of `upload.path` to its chat. At most
    /// [`MAX_PENDING_UPLOADS`] are kept.
    pub fn put_pending_upload(&self, upload: &PendingUpload) -> Result<(), StoreError> {
        check_len("upload path", upload.path.len(), MAX_LOCAL_PATH_LEN)?;
        if upload.key.len() != KEY_LEN {
            return Err(StoreError::OutOfRange("attachment key length"));
        }
        let count: i64 = self
            .conn()
            .prepare_cached(
                "SELECT count(*) FROM pending_uploads WHERE NOT (chat_id = ?1 AND path = ?2)",
            )?
            .query_row(params![upload.chat_id, upload.path], |row| row.get(0))?;
        let len = usize::try_from(count).unwrap_or(usize::MAX);
        check_len("pending uploads", len + 1, MAX_PENDING_UPLOADS)?;
        self.conn()
            .prepare_cached(
                "INSERT INTO pending_uploads (chat_id, path, size, key, digest, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (chat_id, path) DO UPDATE SET size = excluded.size,
                     key = excluded.key, digest = excluded.digest,
                     created_at_ms = excluded.created_at_ms",
            )?
            .execute(params![
                upload.chat_id,
                upload.path,
                to_i64(upload.size, "upload size")?,
                upload.key.as_slice(),
                upload.digest,
                now_ms(),
            ])?;
        Ok(())
    }

    /// Forgets the upload of `path` to `chat_id`; `true` if there was one.
    pub fn delete_pending_upload(&self, chat_id: &ChatId, path: &str) -> Result<bool, StoreError> {
        let deleted = self
            .conn()
            .prepare_cached("DELETE FROM pending_uploads WHERE chat_id = ?1 AND path = ?2")?
            .execute(params![chat_id, path])?;
        Ok(deleted > 0)
    }
}

fn upload_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<PendingUpload> {
    Ok(PendingUpload {
        chat_id: row.get(0)?,
        path: row.get(1)?,
        size: get_u64(row, 2)?,
        key: Zeroizing::new(row.get(3)?),
        digest: row.get(4)?,
    })
}
