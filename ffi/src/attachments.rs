//! Attachments through the bindings: send from a file or from bytes,
//! download to a file or into memory, with progress reported to an object
//! the app implements.
//!
//! Bytes from the app are written to a file under the store's directory
//! (`attachments/outgoing/`) first: the engine encrypts and uploads from a
//! file so that an interrupted upload resumes, and the file stays as the
//! message's local copy. Downloads into memory go through
//! `attachments/incoming/` the same way.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tern_core::TransferProgress;

use crate::client::TernClient;
use crate::error::TernError;
use crate::runtime::{guard, spawn};
use crate::types::{Attachment, ChatMessage, local_id, parse_id};

/// Folder under the store's directory for attachments sent from bytes.
const OUTGOING_DIR: &str = "attachments/outgoing";
/// Folder under the store's directory for attachments downloaded to memory.
const INCOMING_DIR: &str = "attachments/incoming";
/// Longest file name accepted for an attachment sent from bytes.
const MAX_FILE_NAME_LEN: usize = 255;

/// Implemented by the app to follow a transfer (a progress bar). Called on
/// a background thread after every 64 KiB chunk.
#[uniffi::export(with_foreign)]
pub trait ProgressListener: Send + Sync {
    /// `done` of `total` encrypted bytes are transferred.
    fn on_progress(&self, done: u64, total: u64);
}

/// Adapts the app's listener to the engine's progress hook.
struct Reporter(Option<Arc<dyn ProgressListener>>);

impl TransferProgress for Reporter {
    fn progress(&self, done: u64, total: u64) {
        if let Some(listener) = &self.0 {
            listener.on_progress(done, total);
        }
    }
}

/// A file name from the app, as a single path component.
fn checked_file_name(name: &str) -> Result<&str, TernError> {
    let plain = !name.is_empty()
        && name.len() <= MAX_FILE_NAME_LEN
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0']);
    if plain {
        Ok(name)
    } else {
        Err(TernError::invalid(
            "a file name must be 1 to 255 bytes without path separators",
        ))
    }
}

/// A fresh folder for one transfer under `base`, named after the time and
/// a process-wide counter, so equal file names never collide.
fn transfer_dir(base: PathBuf) -> Result<PathBuf, TernError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = base.join(format!("{nanos:x}-{n}"));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[uniffi::export]
impl TernClient {
    /// Encrypts the file at `path`, uploads it and sends it to the chat as
    /// an attachment message. Calling it again after an interruption resumes
    /// the upload.
    pub async fn send_file(
        &self,
        chat_id: String,
        path: String,
        content_type: String,
        progress: Option<Arc<dyn ProgressListener>>,
    ) -> Result<ChatMessage, TernError> {
        let client = self.inner()?;
        let chat_id = parse_id(&chat_id)?;
        spawn(async move {
            let sent = client
                .send_attachment_with_progress(
                    chat_id,
                    PathBuf::from(path),
                    content_type,
                    &Reporter(progress),
                )
                .await?;
            Ok(sent.into())
        })
        .await
    }

    /// Sends `data` as an attachment named `file_name` (kept as a file under
    /// the store's directory: the message's local copy).
    pub async fn send_bytes(
        &self,
        chat_id: String,
        file_name: String,
        data: Vec<u8>,
        content_type: String,
        progress: Option<Arc<dyn ProgressListener>>,
    ) -> Result<ChatMessage, TernError> {
        checked_file_name(&file_name)?;
        let dir = transfer_dir(self.store_dir.join(OUTGOING_DIR))?;
        let path = dir.join(&file_name);
        std::fs::write(&path, data)?;
        let sent = self
            .send_file(
                chat_id,
                path.to_string_lossy().into_owned(),
                content_type,
                progress,
            )
            .await;
        if sent.is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        sent
    }

    /// The attachments of a message.
    pub fn attachments(&self, message_id: i64) -> Result<Vec<Attachment>, TernError> {
        guard(|| {
            let rows = self.inner()?.attachments(local_id(message_id))?;
            Ok(rows.into_iter().map(Into::into).collect())
        })
    }

    /// Downloads a message's attachment to `dest_path`, checks it against
    /// its digest and decrypts it. An interrupted download resumes.
    pub async fn download_file(
        &self,
        message_id: i64,
        dest_path: String,
        progress: Option<Arc<dyn ProgressListener>>,
    ) -> Result<(), TernError> {
        let client = self.inner()?;
        spawn(async move {
            client
                .download_attachment_with_progress(
                    local_id(message_id),
                    PathBuf::from(dest_path),
                    &Reporter(progress),
                )
                .await?;
            Ok(())
        })
        .await
    }

    /// Downloads a message's attachment and returns its bytes (also kept as
    /// a file under the store's directory).
    pub async fn download_bytes(
        &self,
        message_id: i64,
        progress: Option<Arc<dyn ProgressListener>>,
    ) -> Result<Vec<u8>, TernError> {
        let attachment = self
            .attachments(message_id)?
            .into_iter()
            .next()
            .ok_or_else(|| TernError::invalid("the message has no attachment"))?;
        let name = checked_file_name(&attachment.file_name).unwrap_or("attachment");
        let dest = transfer_dir(self.store_dir.join(INCOMING_DIR))?.join(name);
        self.download_file(message_id, dest.to_string_lossy().into_owned(), progress)
            .await?;
        Ok(std::fs::read(dest)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_from_the_app_are_single_components() {
        assert!(checked_file_name("photo.jpg").is_ok());
        for bad in ["", ".", "..", "a/b", "..\\x", "nul\0", &"x".repeat(256)] {
            assert!(checked_file_name(bad).is_err(), "{bad:?}");
        }
    }
}
