//! Attachments: encrypt a file with the chunked AEAD, upload it to the
//! relay's blob store (resuming what the relay already holds), announce it in
//! a message; download (resuming a partial download), verify and decrypt.
//! Memory stays constant: one chunk at a time.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use tern_protocol::wire::ErrorCode;

use super::{ChatId, Client};
use crate::model::ClientError;
use crate::model::ClientEvent;
use crate::model::{Message, MessageId};
use crate::net::NetError;
use crate::random::random_bytes;
use crate::store::{NewAttachment, PendingUpload, TransferState};
use crate::sync::RelayLink;
use crate::sync::content::{
    Attachment, MAX_ATTACHMENT_LEN, MAX_ATTACHMENT_NAME_LEN, Payload, SecretBytes,
};
use tern_crypto::attachment::{
    CHUNK_LEN, ChunkCipher, SEALED_CHUNK_LEN, chunk_count, plain_len, sealed_len,
};

/// Attempts of an upload the relay answers with CONFLICT (its previous
/// stream for the same blob is still closing).
const UPLOAD_CONFLICT_RETRIES: u32 = 5;
/// Delay before such a retry, times the attempt number.
const UPLOAD_CONFLICT_DELAY: std::time::Duration = std::time::Duration::from_millis(200);

/// An attachment of a stored message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachmentInfo {
    /// Local attachment id.
    pub id: i64,
    /// The message that carries it.
    pub message_id: MessageId,
    /// File name.
    pub file_name: String,
    /// MIME type.
    pub content_type: String,
    /// Plaintext size in bytes.
    pub size: u64,
    /// Transfer state.
    pub state: TransferState,
    /// Where the plaintext is, once uploaded from or downloaded to a file.
    pub local_path: Option<String>,
}

/// Told how far an attachment transfer is, once per chunk (64 KiB of
/// ciphertext), so a host can show a progress bar.
pub trait TransferProgress: Send + Sync {
    /// `done` of `total` ciphertext bytes are handed to the relay connection
    /// (upload) or written to disk (download). A resumed transfer starts at
    /// the bytes already there.
    fn progress(&self, done: u64, total: u64);
}

/// Ignores progress: the transfers called without a [`TransferProgress`].
struct Silent;

impl TransferProgress for Silent {
    fn progress(&self, _done: u64, _total: u64) {}
}

fn io(e: std::io::Error) -> ClientError {
    ClientError::Store(format!("attachment file: {e}"))
}

/// Reads plaintext chunk `index` of `file`.
fn read_chunk(file: &mut File, index: u64, size: u64) -> std::io::Result<Vec<u8>> {
    let start = index * CHUNK_LEN as u64;
    let len = usize::try_from(size.saturating_sub(start).min(CHUNK_LEN as u64)).unwrap_or(0);
    let mut buf = vec![0u8; len];
    file.seek(SeekFrom::Start(start))?;
    file.read_exact(&mut buf)?;
    Ok(buf)
}

/// SHA-256 of the whole ciphertext, sealing chunk by chunk.
fn sealed_digest(path: &Path, cipher: &ChunkCipher, size: u64) -> std::io::Result<[u8; 32]> {
    let mut file = File::open(path)?;
    let count = chunk_count(size);
    let mut hash = Sha256::new();
    for index in 0..count {
        let chunk = read_chunk(&mut file, index, size)?;
        hash.update(cipher.seal(index, index + 1 == count, &chunk));
    }
    Ok(hash.finalize().into())
}

/// [`sealed_digest`] on a blocking thread.
async fn sealed_digest_of(path: &str, key: &[u8], size: u64) -> Result<[u8; 32], ClientError> {
    let key: [u8; 32] = key
        .try_into()
        .map_err(|_| ClientError::StoreCorrupt("attachment key length".into()))?;
    let key = Zeroizing::new(key);
    let path = PathBuf::from(path);
    tokio::task::spawn_blocking(move || sealed_digest(&path, &ChunkCipher::new(&key), size))
        .await
        .map_err(|_| ClientError::Store("hashing task failed".into()))?
        .map_err(io)
}

/// SHA-256 of a file, streamed.
fn file_digest(path: &Path) -> std::io::Result<[u8; 32]> {
    let mut file = File::open(path)?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; SEALED_CHUNK_LEN];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hash.finalize().into());
        }
        hash.update(&buf[..n]);
    }
}

/// Decrypts a verified ciphertext file into `dest`, chunk by chunk.
fn decrypt_file(sealed: &Path, dest: &Path, cipher: &ChunkCipher) -> Result<u64, ClientError> {
    let sealed_size = std::fs::metadata(sealed).map_err(io)?.len();
    let size = plain_len(sealed_size).map_err(|e| ClientError::Verification(e.to_string()))?;
    let count = chunk_count(size);
    let mut input = File::open(sealed).map_err(io)?;
    let mut output = File::create(dest).map_err(io)?;
    for index in 0..count {
        let start = index * SEALED_CHUNK_LEN as u64;
        let len = (sealed_size - start).min(SEALED_CHUNK_LEN as u64);
        let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
        input.read_exact(&mut buf).map_err(io)?;
        let plain = cipher
            .open(index, index + 1 == count, &buf)
            .map_err(|e| ClientError::Verification(e.to_string()))?;
        output.write_all(&plain).map_err(io)?;
    }
    output.sync_all().map_err(io)?;
    Ok(size)
}

/// Uploads the ciphertext, resuming where the relay stands; returns the
/// offset it resumed from. A relay still closing an interrupted stream of
/// the same blob answers CONFLICT: retried a few times.
async fn upload_file(
    conn: &dyn RelayLink,
    upload: &PendingUpload,
    path: &Path,
    progress: &dyn TransferProgress,
) -> Result<u64, ClientError> {
    let mut attempt = 0;
    loop {
        match upload_once(conn, upload, path, progress).await {
            Err(NetError::Relay {
                code: ErrorCode::Conflict,
                ..
            }) if attempt < UPLOAD_CONFLICT_RETRIES => {
                attempt += 1;
                tokio::time::sleep(UPLOAD_CONFLICT_DELAY * attempt).await;
            }
            other => return Ok(other?),
        }
    }
}

/// One upload attempt of the file's ciphertext (sealed chunk by chunk as the
/// relay asks for it); returns the offset it started from.
async fn upload_once(
    conn: &dyn RelayLink,
    upload: &PendingUpload,
    path: &Path,
    progress: &dyn TransferProgress,
) -> Result<u64, NetError> {
    let size = upload.size;
    let cipher =
        ChunkCipher::new(
            upload.key.as_slice().try_into().map_err(|_| {
                NetError::Connect("stored attachment key has the wrong length".into())
            })?,
        );
    let count = chunk_count(size);
    let mut file =
        File::open(path).map_err(|e| NetError::Connect(format!("reading the attachment: {e}")))?;
    let sealed_size = sealed_len(size);
    let mut resumed_from = None;
    conn.upload_blob(upload.digest, sealed_size, &mut |offset, _max| {
        resumed_from.get_or_insert(offset);
        let index = offset / SEALED_CHUNK_LEN as u64;
        let within = usize::try_from(offset % SEALED_CHUNK_LEN as u64).unwrap_or(0);
        let chunk = read_chunk(&mut file, index, size)
            .map_err(|e| NetError::Connect(format!("reading the attachment: {e}")))?;
        let sealed = cipher.seal(index, index + 1 == count, &chunk);
        let part = sealed.get(within..).unwrap_or_default().to_vec();
        progress.progress(offset + part.len() as u64, sealed_size);
        Ok(part)
    })
    .await?;
    Ok(resumed_from.unwrap_or(sealed_size))
}

impl Client {
    /// Encrypts the file at `path`, uploads it to the relay's blob store and
    /// sends it to the chat as an attachment message (shown under its file
    /// name). Needs the relay.
    ///
    /// The key and ciphertext digest are stored before the upload starts and
    /// kept until the message is queued: calling this again for the same
    /// chat and unchanged file after an interruption (a dropped connection, a
    /// crash) re-creates the same ciphertext and resumes from the offset the
    /// relay reports, sending only the remainder. Emits
    /// [`ClientEvent::AttachmentUploaded`] with that offset.
    pub async fn send_attachment(
        &self,
        chat_id: ChatId,
        path: PathBuf,
        content_type: String,
    ) -> Result<Message, ClientError> {
        self.send_attachment_with_progress(chat_id, path, content_type, &Silent)
            .await
    }

    /// [`Self::send_attachment`], telling `progress` after every chunk.
    pub async fn send_attachment_with_progress(
        &self,
        chat_id: ChatId,
        path: PathBuf,
        content_type: String,
        progress: &dyn TransferProgress,
    ) -> Result<Message, ClientError> {
        let file_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("attachment")
            .to_owned();
        if file_name.len() > MAX_ATTACHMENT_NAME_LEN || content_type.len() > MAX_ATTACHMENT_NAME_LEN
        {
            return Err(ClientError::InvalidArgument("attachment name too long"));
        }
        let path_text = path
            .to_str()
            .ok_or(ClientError::InvalidArgument("attachment path is not UTF-8"))?
            .to_owned();
        let size = std::fs::metadata(&path).map_err(io)?.len();
        if size > MAX_ATTACHMENT_LEN {
            return Err(ClientError::InvalidArgument("attachment too large"));
        }
        let conn = self.core.connection()?;
        let upload = self.prepare_upload(chat_id, &path_text, size).await?;
        let resumed_from = upload_file(conn.as_ref(), &upload, &path, progress).await?;
        self.core.emit(ClientEvent::AttachmentUploaded {
            chat_id,
            blob_id: upload.digest,
            resumed_from,
            size: sealed_len(size),
        });
        let attachment = Attachment {
            blob_id: upload.digest,
            key: SecretBytes(upload.key.to_vec()),
            size,
            content_type: content_type.clone(),
            file_name: file_name.clone(),
        };
        let row = NewAttachment {
            message_id: MessageId(0),
            content_type,
            file_name: file_name.clone(),
            size,
            key: upload.key.clone(),
            digest: upload.digest.to_vec(),
            blob_id: Some(upload.digest),
            local_path: Some(path_text.clone()),
            state: TransferState::Uploaded,
        };
        let message = self.queue_message(
            chat_id,
            file_name,
            Payload::Attachment(attachment),
            Some(row),
        )?;
        self.core
            .store
            .transaction(|tx| tx.delete_pending_upload(&chat_id, &path_text))?;
        Ok(message)
    }

    /// The stored upload of this file if the file is unchanged (its stored
    /// key still yields the stored digest), else a fresh key, stored first.
    async fn prepare_upload(
        &self,
        chat_id: ChatId,
        path: &str,
        size: u64,
    ) -> Result<PendingUpload, ClientError> {
        let stored = self
            .core
            .store
            .transaction(|tx| tx.pending_upload(&chat_id, path))?
            .filter(|p| p.size == size);
        if let Some(stored) = stored {
            if sealed_digest_of(path, &stored.key, size).await? == stored.digest {
                return Ok(stored);
            }
        }
        let key = Zeroizing::new(random_bytes::<32>().to_vec());
        let upload = PendingUpload {
            chat_id,
            path: path.to_owned(),
            size,
            digest: sealed_digest_of(path, &key, size).await?,
            key,
        };
        self.core
            .store
            .transaction(|tx| tx.put_pending_upload(&upload))?;
        Ok(upload)
    }

    /// The attachments of a message.
    pub fn attachments(&self, message_id: MessageId) -> Result<Vec<AttachmentInfo>, ClientError> {
        let rows = self
            .core
            .store
            .transaction(|tx| tx.attachments(message_id))?;
        Ok(rows
            .into_iter()
            .map(|row| AttachmentInfo {
                id: row.id,
                message_id: row.attachment.message_id,
                file_name: row.attachment.file_name.clone(),
                content_type: row.attachment.content_type.clone(),
                size: row.attachment.size,
                state: row.attachment.state,
                local_path: row.attachment.local_path.clone(),
            })
            .collect())
    }

    /// Downloads the first attachment of `message_id` to `dest`: the
    /// ciphertext goes to `dest` + `.part` (an interrupted download resumes
    /// from its length), is checked against the blob id (SHA-256), then
    /// decrypted chunk by chunk. Needs the relay.
    pub async fn download_attachment(
        &self,
        message_id: MessageId,
        dest: PathBuf,
    ) -> Result<(), ClientError> {
        self.download_attachment_with_progress(message_id, dest, &Silent)
            .await
    }

    /// [`Self::download_attachment`], telling `progress` after every chunk.
    pub async fn download_attachment_with_progress(
        &self,
        message_id: MessageId,
        dest: PathBuf,
        progress: &dyn TransferProgress,
    ) -> Result<(), ClientError> {
        let row = self
            .core
            .store
            .transaction(|tx| tx.attachments(message_id))?
            .into_iter()
            .next()
            .ok_or(ClientError::InvalidArgument(
                "the message has no attachment",
            ))?;
        let blob_id = row
            .attachment
            .blob_id
            .ok_or(ClientError::InvalidArgument("the attachment has no blob"))?;
        let key: [u8; 32] = row
            .attachment
            .key
            .as_slice()
            .try_into()
            .map_err(|_| ClientError::StoreCorrupt("attachment key".into()))?;
        let key = Zeroizing::new(key);
        let conn = self.core.connection()?;
        let mut part = dest.clone().into_os_string();
        part.push(".part");
        let part = PathBuf::from(part);
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&part)
            .map_err(io)?;
        let have = file.metadata().map_err(io)?.len();
        let expected = sealed_len(row.attachment.size);
        if have < expected {
            let mut written = have;
            conn.download_blob(blob_id, have, &mut |_, data| {
                file.write_all(data)
                    .map_err(|e| NetError::Connect(format!("writing the attachment: {e}")))?;
                written += data.len() as u64;
                progress.progress(written, expected);
                Ok(())
            })
            .await?;
        }
        file.sync_all().map_err(io)?;
        drop(file);
        if file_digest(&part).map_err(io)? != blob_id {
            std::fs::remove_file(&part).map_err(io)?;
            self.set_state(row.id, TransferState::Failed, 0, None)?;
            return Err(ClientError::Verification(
                "attachment ciphertext does not match its digest".into(),
            ));
        }
        let size = decrypt_file(&part, &dest, &ChunkCipher::new(&key))?;
        std::fs::remove_file(&part).map_err(io)?;
        self.set_state(row.id, TransferState::Downloaded, size, dest.to_str())
    }

    fn set_state(
        &self,
        id: i64,
        state: TransferState,
        transferred: u64,
        path: Option<&str>,
    ) -> Result<(), ClientError> {
        Ok(self
            .core
            .store
            .transaction(|tx| tx.update_attachment_transfer(id, state, transferred, None, path))?)
    }
}
