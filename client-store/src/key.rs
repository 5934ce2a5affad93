//! The key header file beside the database and the SQLCipher key literal.
//!
//! The key itself — Argon2id derivation, the key check value and the 86-byte
//! header layout — is [`tern_crypto::store_key`]. This module only keeps the
//! header on disk: it lives next to the database as `<database>-key`, is
//! written atomically, and is read with a size bound.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use tern_crypto::store_key::{DB_KEY_LEN, DbKey, HEADER_LEN, KeyHeader, KeySource};
use zeroize::Zeroizing;

use super::error::StoreError;
use crate::rng;

/// The path of the key header that belongs to `db_path`.
pub fn header_path(db_path: &Path) -> PathBuf {
    let mut name = db_path.as_os_str().to_owned();
    name.push("-key");
    PathBuf::from(name)
}

/// A database key and whether the key header vouched for it.
pub(crate) struct ResolvedKey {
    /// The key.
    pub key: DbKey,
    /// `true` when checked against the header's key check value (or just
    /// created): a database that then fails to decrypt is corrupt, not locked
    /// with another key.
    pub verified: bool,
}

/// Resolves the database key for `db_path`.
///
/// For a new store (`is_new`) it derives or takes the key and writes a fresh
/// key header. For an existing store it reads the header and checks the key
/// against it, so a wrong key is reported before the database is touched. A
/// raw key is accepted without a header (the host may keep only the key).
pub(crate) fn resolve(
    db_path: &Path,
    source: &KeySource,
    is_new: bool,
) -> Result<ResolvedKey, StoreError> {
    let header_path = header_path(db_path);
    if is_new {
        let header = KeyHeader::create(source, &mut rng())?;
        let key = header.key().cloned().ok_or(StoreError::KeyDerivation)?;
        write_atomically(&header_path, &header.encode())?;
        return Ok(ResolvedKey {
            key,
            verified: true,
        });
    }
    let bytes = match read_bounded(&header_path) {
        Ok(bytes) => Some(bytes),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => return Err(err.into()),
    };
    match (source, bytes) {
        (KeySource::Raw(key), None) => Ok(ResolvedKey {
            key: key.clone(),
            verified: false,
        }),
        (KeySource::Passphrase { .. }, None) => Err(StoreError::KeyHeader("missing")),
        (source, Some(bytes)) => Ok(ResolvedKey {
            key: KeyHeader::decode(&bytes)?.check(source)?,
            verified: true,
        }),
    }
}

/// Reads at most one byte more than a header, so an oversized file is
/// rejected by [`KeyHeader::decode`] without being loaded.
fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(HEADER_LEN + 1);
    fs::File::open(path)?
        .take(HEADER_LEN as u64 + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Writes `bytes` to `path` through a synced temporary file and a rename, so a
/// crash leaves either the old header or the new one.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let mut file = fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The key as the SQLCipher raw-key literal `x'<64 hex digits>'`.
pub(crate) fn sqlcipher_literal(key: &DbKey) -> Zeroizing<String> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = Zeroizing::new(String::with_capacity(3 + 2 * DB_KEY_LEN));
    out.push_str("x'");
    for byte in key.iter() {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out.push('\'');
    out
}
