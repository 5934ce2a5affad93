//! Per-account blob quota. Each upload charges its uploader the announced
//! size of the blob, recorded as a file `blobs/owners/<user hex>/<blob hex>`
//! holding that size (8 bytes, big-endian). An account's usage is the sum of
//! its records, so it survives restarts without a database table. Records
//! are written before the first byte is accepted (a partial upload counts)
//! and are dropped when their blob is gone: after a failed hash check, and
//! after the retention sweep deleted the blob.

use std::path::{Path, PathBuf};

use tern_protocol::{BlobId, UserId};

use crate::error::RelayError;

/// Length of one charge record.
const RECORD_LEN: usize = 8;

/// The charge records and the quota they are held to.
pub(super) struct Ledger {
    dir: PathBuf,
    quota: u64,
    /// Serialises charges so concurrent uploads cannot both fit the quota.
    charging: tokio::sync::Mutex<()>,
}

fn io(_: std::io::Error) -> RelayError {
    RelayError::Unavailable("blob quota records failed")
}

/// Sum of `user_dir`'s records, leaving out the one for `except`.
fn usage(user_dir: &Path, except: &str) -> Result<u64, RelayError> {
    let entries = match std::fs::read_dir(user_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io(e)),
    };
    let mut used = 0u64;
    for entry in entries {
        let entry = entry.map_err(io)?;
        if entry.file_name() == except {
            continue;
        }
        let bytes = std::fs::read(entry.path()).map_err(io)?;
        let record = <[u8; RECORD_LEN]>::try_from(bytes.as_slice())
            .map_err(|_| RelayError::Unavailable("corrupt blob quota record"))?;
        used = used.saturating_add(u64::from_be_bytes(record));
    }
    Ok(used)
}

impl Ledger {
    /// Opens (creating) `blob_dir/owners`.
    pub(super) fn open(blob_dir: &Path, quota: u64) -> std::io::Result<Self> {
        let dir = blob_dir.join("owners");
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            quota,
            charging: tokio::sync::Mutex::new(()),
        })
    }

    fn user_dir(&self, owner: &UserId) -> PathBuf {
        self.dir.join(owner.to_string())
    }

    /// Charges `owner` `size` bytes for blob `id`, replacing an earlier
    /// charge for the same blob; refuses with `QuotaExceeded` when the
    /// account's blobs would then exceed the quota.
    pub(super) async fn charge(
        &self,
        owner: &UserId,
        id: &BlobId,
        size: u64,
    ) -> Result<(), RelayError> {
        let _one_at_a_time = self.charging.lock().await;
        let user_dir = self.user_dir(owner);
        let (quota, name) = (self.quota, id.to_string());
        tokio::task::spawn_blocking(move || {
            let used = usage(&user_dir, &name)?;
            if used.saturating_add(size) > quota {
                return Err(RelayError::QuotaExceeded(
                    "account blob storage exceeds limits.blob_quota_bytes",
                ));
            }
            std::fs::create_dir_all(&user_dir).map_err(io)?;
            std::fs::write(user_dir.join(name), size.to_be_bytes()).map_err(io)
        })
        .await
        .map_err(|_| RelayError::Unavailable("blob quota worker failed"))?
    }

    /// Drops `owner`'s charge for blob `id`.
    pub(super) async fn release(&self, owner: &UserId, id: &BlobId) -> Result<(), RelayError> {
        let path = self.user_dir(owner).join(id.to_string());
        match tokio::fs::remove_file(path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(e)),
            _ => Ok(()),
        }
    }

    /// Drops every charge whose blob `stored` says is gone (neither complete
    /// nor partially uploaded); returns how many were dropped.
    pub(super) fn prune(&self, stored: impl Fn(&str) -> bool) -> std::io::Result<u64> {
        let mut dropped = 0;
        for user in std::fs::read_dir(&self.dir)? {
            let user = user?.path();
            for record in std::fs::read_dir(&user)? {
                let record = record?;
                if !record.file_name().to_str().is_some_and(&stored) {
                    std::fs::remove_file(record.path())?;
                    dropped += 1;
                }
            }
            // Fails harmlessly while the account still has records.
            let _ = std::fs::remove_dir(&user);
        }
        Ok(dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (UserId, BlobId, BlobId) {
        (UserId([1; 16]), BlobId([2; 32]), BlobId([3; 32]))
    }

    #[tokio::test]
    async fn charges_are_held_to_the_quota_and_pruned_with_their_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path(), 100).unwrap();
        let (user, a, b) = ids();
        ledger.charge(&user, &a, 60).await.unwrap();
        let refused = ledger.charge(&user, &b, 41).await.unwrap_err();
        assert!(matches!(refused, RelayError::QuotaExceeded(_)), "{refused}");
        // Re-charging the same blob replaces its record.
        ledger.charge(&user, &a, 70).await.unwrap();
        ledger.charge(&user, &b, 30).await.unwrap();
        let a_name = a.to_string();
        assert_eq!(ledger.prune(|name| name == a_name).unwrap(), 1);
        ledger.release(&user, &a).await.unwrap();
        ledger.charge(&user, &b, 100).await.unwrap();
    }

    #[tokio::test]
    async fn a_corrupt_record_is_an_error_not_free_space() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path(), 100).unwrap();
        let (user, a, b) = ids();
        ledger.charge(&user, &a, 10).await.unwrap();
        std::fs::write(ledger.user_dir(&user).join(a.to_string()), b"x").unwrap();
        let refused = ledger.charge(&user, &b, 10).await.unwrap_err();
        assert!(matches!(refused, RelayError::Unavailable(_)), "{refused}");
    }
}
