//! The blob files of `DATA_DIR/blobs` (layout in `crate::blobs::files`),
//! moved into PostgreSQL's blob tables through the PostgreSQL blob
//! backend's own import functions:
//! - complete blobs `ab/abcdef…` (hex id), each streamed chunk by chunk and
//!   checked against its id; `created_ms` is the file's modification time,
//!   which the file backend's retention went by;
//! - quota charges `owners/<user hex>/<blob hex>` (8 bytes, big-endian),
//!   for the blobs moved; `charged_ms` is the record's modification time.
//!
//! Uploads in progress (`partial/`) are counted, not moved, and so are the
//! charges of blobs not complete. A blob deleted by the retention sweep of
//! a relay still serving is skipped. Any other file, or a blob whose bytes
//! do not match its name, fails the import.

use std::collections::HashSet;
use std::path::Path;
use std::time::SystemTime;

use deadpool_postgres::Transaction;
use tern_protocol::{BlobId, UserId};

use super::{ImportCounts, TransferError};
use crate::blobs::BlobStore;

/// Directory of the charge records.
const OWNERS: &str = "owners";
/// Directory of uploads in progress.
const PARTIAL: &str = "partial";

/// Copies the blobs and charges of `blob_dir` into `target`, adding them
/// to `counts`. A data directory without `blobs/` has none.
pub(super) async fn copy(
    blob_dir: &Path,
    target: &Transaction<'_>,
    counts: &mut ImportCounts,
) -> Result<(), TransferError> {
    if !blob_dir.exists() {
        return Ok(());
    }
    let mut moved = HashSet::new();
    for (path, name) in read_dir(blob_dir)? {
        match name.as_str() {
            OWNERS => {}
            PARTIAL => counts.partial_uploads_skipped += read_dir(&path)?.len() as u64,
            prefix if is_hex(prefix, 2) && path.is_dir() => {
                for (file, name) in read_dir(&path)? {
                    if !is_hex(&name, 2 * BlobId::LEN) || !name.starts_with(prefix) {
                        return Err(bad(&file, "not a blob of this directory"));
                    }
                    let id = BlobId(decode_hex(&file, &name)?);
                    if let Some(size) = copy_blob(&file, id, target).await? {
                        counts.blobs += 1;
                        counts.blob_bytes += size;
                        moved.insert(id);
                    }
                }
            }
            _ => return Err(bad(&path, "not part of the blob layout")),
        }
    }
    let owners = blob_dir.join(OWNERS);
    if owners.exists() {
        counts.blob_charges = copy_charges(&owners, &moved, target).await?;
    }
    tracing::info!(
        blobs = counts.blobs,
        bytes = counts.blob_bytes,
        charges = counts.blob_charges,
        partial_uploads_skipped = counts.partial_uploads_skipped,
        "blobs imported"
    );
    Ok(())
}

/// Streams the complete blob at `file` into `target`; its size, or `None`
/// when the file is gone (swept since it was listed).
async fn copy_blob(
    file: &Path,
    id: BlobId,
    target: &Transaction<'_>,
) -> Result<Option<u64>, TransferError> {
    let opened = match std::fs::File::open(file) {
        Ok(opened) => opened,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(TransferError::io(file)(e)),
    };
    let meta = opened.metadata().map_err(TransferError::io(file))?;
    if !meta.is_file() {
        return Err(bad(file, "not a regular file"));
    }
    let created_ms = modified_ms(file, &meta)?;
    let mut data = tokio::fs::File::from_std(opened);
    if !BlobStore::import_pg_blob(target, id, meta.len(), created_ms, &mut data).await? {
        return Err(bad(
            file,
            "its bytes do not match its name (SHA-256): damaged blob",
        ));
    }
    Ok(Some(meta.len()))
}

/// Copies the charge records under `owners` of the blobs in `moved`;
/// returns how many.
async fn copy_charges(
    owners: &Path,
    moved: &HashSet<BlobId>,
    target: &Transaction<'_>,
) -> Result<u64, TransferError> {
    let mut copied = 0;
    for (user_dir, name) in read_dir(owners)? {
        if !is_hex(&name, 2 * UserId::LEN) || !user_dir.is_dir() {
            return Err(bad(&user_dir, "not an account's charge records"));
        }
        let owner = UserId(decode_hex(&user_dir, &name)?);
        for (record, name) in read_dir(&user_dir)? {
            if !is_hex(&name, 2 * BlobId::LEN) {
                return Err(bad(&record, "not a blob's charge record"));
            }
            let id = BlobId(decode_hex(&record, &name)?);
            if !moved.contains(&id) {
                continue;
            }
            let bytes = std::fs::read(&record).map_err(TransferError::io(&record))?;
            let size = <[u8; 8]>::try_from(bytes.as_slice())
                .map(u64::from_be_bytes)
                .ok()
                .filter(|size| i64::try_from(*size).is_ok())
                .ok_or_else(|| bad(&record, "not a charge record (8 bytes, big-endian)"))?;
            let meta = std::fs::metadata(&record).map_err(TransferError::io(&record))?;
            let charged_ms = modified_ms(&record, &meta)?;
            BlobStore::import_pg_charge(target, owner, id, size, charged_ms).await?;
            copied += 1;
        }
    }
    Ok(copied)
}

/// The entries of `dir`: path and UTF-8 name (others are errors).
fn read_dir(dir: &Path) -> Result<Vec<(std::path::PathBuf, String)>, TransferError> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(TransferError::io(dir))? {
        let path = entry.map_err(TransferError::io(dir))?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| bad(&path, "not a UTF-8 name"))?
            .to_owned();
        entries.push((path, name));
    }
    entries.sort();
    Ok(entries)
}

/// Whether `name` is `len` lowercase hex digits (as the layout writes).
fn is_hex(name: &str, len: usize) -> bool {
    name.len() == len && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The id a hex file name spells.
fn decode_hex<const N: usize>(path: &Path, name: &str) -> Result<[u8; N], TransferError> {
    let mut id = [0u8; N];
    hex::decode_to_slice(name, &mut id).map_err(|_| bad(path, "not a hex id"))?;
    Ok(id)
}

/// A file's modification time in milliseconds since the Unix epoch.
fn modified_ms(path: &Path, meta: &std::fs::Metadata) -> Result<i64, TransferError> {
    let modified = meta.modified().map_err(TransferError::io(path))?;
    let since_epoch = modified
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| bad(path, "modified before 1970"))?;
    Ok(i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX))
}

fn bad(path: &Path, problem: &'static str) -> TransferError {
    TransferError::BadBlobFile {
        path: path.to_owned(),
        problem,
    }
}
