//! The attachment index: encrypted blobs referenced by messages, with the
//! key, digest and transfer progress needed to resume uploads and downloads.

use rusqlite::params;
use zeroize::Zeroizing;

use super::messages::MessageId;
use super::sql::{check_len, get_u64, sql_enum, to_i64};
use super::{StoreError, Tx};

/// Length of a blob id (SHA-256 of the ciphertext).
pub const BLOB_ID_LEN: usize = 32;
/// Longest attachment key accepted.
pub const MAX_ATTACHMENT_KEY_LEN: usize = 128;
/// Longest digest accepted.
pub const MAX_DIGEST_LEN: usize = 64;
/// Longest content type or file name accepted.
pub const MAX_ATTACHMENT_NAME_LEN: usize = 256;
/// Longest local path accepted.
pub const MAX_LOCAL_PATH_LEN: usize = 4096;

sql_enum! {
    /// Where an attachment's transfer stands.
    pub enum TransferState {
        /// Encrypted locally, upload not finished.
        Uploading = 0,
        /// Uploaded to the relay blob store.
        Uploaded = 1,
        /// Announced by a message, download not finished.
        Downloading = 2,
        /// Downloaded, verified and decrypted to `local_path`.
        Downloaded = 3,
        /// Gave up (digest mismatch or blob expired).
        Failed = 4,
    }
}

/// An attachment to index.
#[derive(Clone)]
pub struct NewAttachment {
    /// The message that carries it.
    pub message_id: MessageId,
    /// MIME type.
    pub content_type: String,
    /// Original file name.
    pub file_name: String,
    /// Plaintext size in bytes.
    pub size: u64,
    /// Attachment encryption key.
    pub key: Zeroizing<Vec<u8>>,
    /// Digest of the ciphertext.
    pub digest: Vec<u8>,
    /// Relay blob id, once uploaded (or as announced).
    pub blob_id: Option<[u8; BLOB_ID_LEN]>,
    /// Decrypted file on this device, if any.
    pub local_path: Option<String>,
    /// Transfer state.
    pub state: TransferState,
}

impl std::fmt::Debug for NewAttachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewAttachment")
            .field("message_id", &self.message_id)
            .field("content_type", &self.content_type)
            .field("file_name", &self.file_name)
            .field("size", &self.size)
            .field("blob_id", &self.blob_id)
            .field("local_path", &self.local_path)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// An indexed attachment.
#[derive(Clone, Debug)]
pub struct Attachment {
    /// Local attachment id.
    pub id: i64,
    /// The indexed fields.
    pub attachment: NewAttachment,
    /// Ciphertext bytes transferred so far (resume offset).
    pub transferred: u64,
}

impl Tx<'_> {
    /// Indexes an attachment; returns its local id.
    pub fn insert_attachment(&self, attachment: &NewAttachment) -> Result<i64, StoreError> {
        check_len(
            "attachment key",
            attachment.key.len(),
            MAX_ATTACHMENT_KEY_LEN,
        )?;
        check_len("digest", attachment.digest.len(), MAX_DIGEST_LEN)?;
        check_len(
            "content type",
            attachment.content_type.len(),
            MAX_ATTACHMENT_NAME_LEN,
        )?;
        check_len(
            "file name",
            attachment.file_name.len(),
            MAX_ATTACHMENT_NAME_LEN,
        )?;
        check_local_path(attachment.local_path.as_deref())?;
        let conn = self.conn();
        conn.prepare_cached(
            "INSERT INTO attachments (message_id, content_type, file_name, size, key, digest,
                 blob_id, local_path, transfer_state, transferred)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0)",
        )?
        .execute(params![
            attachment.message_id.0,
            attachment.content_type,
            attachment.file_name,
            to_i64(attachment.size, "attachment size")?,
            attachment.key.as_slice(),
            attachment.digest,
            attachment.blob_id,
            attachment.local_path,
            attachment.state,
        ])?;
        Ok(conn.last_insert_rowid())
    }

    /// The attachments of a message, in insertion order.
    pub fn attachments(&self, message_id: MessageId) -> Result<Vec<Attachment>, StoreError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT id, message_id, content_type, file_name, size, key, digest, blob_id,
                 local_path, transfer_state, transferred
             FROM attachments WHERE message_id = ?1 ORDER BY id",
        )?;
        let attachments = stmt
            .query_map([message_id.0], attachment_row)?
            .collect::<Result<_, _>>()?;
        Ok(attachments)
    }

    /// Records transfer progress: state, bytes transferred, and the blob id
    /// and local path when they become known (`None` keeps the stored value).
    pub fn update_attachment_transfer(
        &self,
        id: i64,
        state: TransferState,
        transferred: u64,
        blob_id: Option<[u8; BLOB_ID_LEN]>,
        local_path: Option<&str>,
    ) -> Result<(), StoreError> {
        check_local_path(local_path)?;
        let updated = self
            .conn()
            .prepare_cached(
                "UPDATE attachments SET transfer_state = ?2, transferred = ?3,
                     blob_id = coalesce(?4, blob_id), local_path = coalesce(?5, local_path)
                 WHERE id = ?1",
            )?
            .execute(params![
                id,
                state,
                to_i64(transferred, "transferred")?,
                blob_id,
                local_path
            ])?;
        if updated == 0 {
            return Err(StoreError::NotFound("attachment"));
        }
        Ok(())
    }
}

fn check_local_path(path: Option<&str>) -> Result<(), StoreError> {
    check_len("local path", path.map_or(0, str::len), MAX_LOCAL_PATH_LEN)
}

fn attachment_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Attachment> {
    Ok(Attachment {
        id: row.get(0)?,
        attachment: NewAttachment {
            message_id: MessageId(row.get(1)?),
            content_type: row.get(2)?,
            file_name: row.get(3)?,
            size: get_u64(row, 4)?,
            key: Zeroizing::new(row.get(5)?),
            digest: row.get(6)?,
            blob_id: row.get(7)?,
            local_path: row.get(8)?,
            state: row.get(9)?,
        },
        transferred: get_u64(row, 10)?,
    })
}
