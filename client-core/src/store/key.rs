//! Database keys: where they come from and the key header beside the database.
//!
//! The SQLCipher database is opened with a 32-byte raw key. That key is either
//! supplied by the host application (a mobile keychain) or derived from a
//! passphrase with Argon2id. The Argon2id parameters and salt live in a small
//! versioned *key header* file next to the database (`<database>-key`), together
//! with a key check value that tells a wrong key apart from a damaged database.
//!
//! Key header, version 1 (fixed [`HEADER_LEN`] = 86 bytes, integers little-endian):
//!
//! | offset | size | field                                                        |
//! |--------|------|--------------------------------------------------------------|
//! | 0      | 8    | magic `TERNKEY\0`                                            |
//! | 8      | 1    | version, `1`                                                 |
//! | 9      | 1    | key kind: `1` Argon2id passphrase, `2` raw key               |
//! | 10     | 4    | Argon2id memory cost in KiB (0 for a raw key)                |
//! | 14     | 4    | Argon2id iterations (0 for a raw key)                        |
//! | 18     | 4    | Argon2id parallelism (0 for a raw key)                       |
//! | 22     | 32   | Argon2id salt (zeros for a raw key)                          |
//! | 54     | 32   | key check: HMAC-SHA256(database key, [`KEY_CHECK_LABEL`])    |
//!
//! Argon2id is version 0x13 with a 32-byte output. The key check reveals nothing
//! an attacker holding the database file could not already test (a guessed key
//! can be checked against the first page's HMAC), and it costs an attacker the
//! same Argon2id work per guess.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::error::StoreError;

/// Length of the database key.
pub const DB_KEY_LEN: usize = 32;
/// Length of the Argon2id salt.
pub const SALT_LEN: usize = 32;
/// Length of a version-1 key header.
pub const HEADER_LEN: usize = 86;
/// HMAC message of the key check value.
pub const KEY_CHECK_LABEL: &[u8] = b"tern-store key check v1";
/// Upper bound on the Argon2id memory cost accepted from a header (1 GiB), so
/// that a hostile header cannot make opening exhaust memory.
pub const MAX_M_COST_KIB: u32 = 1024 * 1024;
/// Upper bound on Argon2id iterations accepted from a header.
pub const MAX_T_COST: u32 = 64;
/// Upper bound on Argon2id parallelism accepted from a header.
pub const MAX_P_COST: u32 = 16;

const MAGIC: &[u8; 8] = b"TERNKEY\0";
const HEADER_VERSION: u8 = 1;
const KIND_PASSPHRASE: u8 = 1;
const KIND_RAW: u8 = 2;
const KEY_CHECK_LEN: usize = 32;

/// A 32-byte database key, wiped from memory on drop.
pub(crate) type DbKey = Zeroizing<[u8; DB_KEY_LEN]>;

/// Argon2id cost parameters used when a passphrase-protected store is created.
///
/// Opening an existing store always uses the parameters in its key header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
}

impl KdfParams {
    /// Validated parameters: memory in KiB (at least 8 × parallelism, at most
    /// [`MAX_M_COST_KIB`]), iterations (1..=[`MAX_T_COST`]) and parallelism
    /// (1..=[`MAX_P_COST`]).
    pub fn new(m_cost_kib: u32, t_cost: u32, p_cost: u32) -> Result<Self, StoreError> {
        if !(1..=MAX_P_COST).contains(&p_cost) {
            return Err(StoreError::InvalidKdfParams("parallelism"));
        }
        if !(1..=MAX_T_COST).contains(&t_cost) {
            return Err(StoreError::InvalidKdfParams("iterations"));
        }
        if m_cost_kib < 8 * p_cost || m_cost_kib > MAX_M_COST_KIB {
            return Err(StoreError::InvalidKdfParams("memory"));
        }
        Ok(Self {
            m_cost_kib,
            t_cost,
            p_cost,
        })
    }

    /// Memory cost in KiB.
    pub fn m_cost_kib(&self) -> u32 {
        self.m_cost_kib
    }

    /// Number of iterations.
    pub fn t_cost(&self) -> u32 {
        self.t_cost
    }

    /// Degree of parallelism.
    pub fn p_cost(&self) -> u32 {
        self.p_cost
    }
}

impl Default for KdfParams {
    /// RFC 9106's second recommended option: 64 MiB, 3 iterations, 4 lanes.
    fn default() -> Self {
        Self {
            m_cost_kib: 64 * 1024,
            t_cost: 3,
            p_cost: 4,
        }
    }
}

/// How the store's database key is obtained. Secrets are wiped on drop.
pub enum KeySource {
    /// A passphrase, stretched with Argon2id. `params` apply only when the
    /// store is created; an existing store uses those in its key header.
    Passphrase {
        /// The passphrase.
        passphrase: Zeroizing<String>,
        /// Argon2id cost for a new store.
        params: KdfParams,
    },
    /// A raw 32-byte key held by the host application.
    Raw(DbKey),
}

impl KeySource {
    /// A passphrase with the default Argon2id parameters.
    pub fn passphrase(passphrase: impl Into<String>) -> Self {
        Self::passphrase_with_params(passphrase, KdfParams::default())
    }

    /// A passphrase with explicit Argon2id parameters for a new store.
    pub fn passphrase_with_params(passphrase: impl Into<String>, params: KdfParams) -> Self {
        Self::Passphrase {
            passphrase: Zeroizing::new(passphrase.into()),
            params,
        }
    }

    /// A raw 32-byte key.
    pub fn raw(key: [u8; DB_KEY_LEN]) -> Self {
        Self::Raw(Zeroizing::new(key))
    }
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Passphrase { params, .. } => f
                .debug_struct("Passphrase")
                .field("params", params)
                .finish_non_exhaustive(),
            Self::Raw(_) => f.write_str("Raw(..)"),
        }
    }
}

/// Derives a database key from a passphrase with Argon2id.
pub fn derive_key(passphrase: &str, salt: &[u8], params: KdfParams) -> Result<DbKey, StoreError> {
    let argon_params = Params::new(
        params.m_cost_kib,
        params.t_cost,
        params.p_cost,
        Some(DB_KEY_LEN),
    )
    .map_err(|_| StoreError::InvalidKdfParams("rejected by argon2"))?;
    let mut key = Zeroizing::new([0u8; DB_KEY_LEN]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, argon_params)
        .hash_password_into(passphrase.as_bytes(), salt, key.as_mut())
        .map_err(|_| StoreError::KeyDerivation)?;
    Ok(key)
}

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
        let header = match source {
            KeySource::Passphrase { passphrase, params } => {
                let mut salt = [0u8; SALT_LEN];
                getrandom::fill(&mut salt).map_err(|_| StoreError::Random)?;
                let key = derive_key(passphrase, &salt, *params)?;
                Header::new(KIND_PASSPHRASE, Some((*params, salt)), key)?
            }
            KeySource::Raw(key) => Header::new(KIND_RAW, None, key.clone())?,
        };
        write_atomically(&header_path, &header.encode())?;
        return Ok(ResolvedKey {
            key: header.key,
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
            key: Header::decode(&bytes)?.check(source)?,
            verified: true,
        }),
    }
}

/// A decoded key header: the Argon2id settings and the key check value.
struct Header {
    kind: u8,
    kdf: Option<(KdfParams, [u8; SALT_LEN])>,
    key_check: [u8; KEY_CHECK_LEN],
    key: DbKey,
}

impl Header {
    fn new(
        kind: u8,
        kdf: Option<(KdfParams, [u8; SALT_LEN])>,
        key: DbKey,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            kind,
            kdf,
            key_check: key_check(&key)?,
            key,
        })
    }

    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..8].copy_from_slice(MAGIC);
        out[8] = HEADER_VERSION;
        out[9] = self.kind;
        if let Some((params, salt)) = &self.kdf {
            out[10..14].copy_from_slice(&params.m_cost_kib.to_le_bytes());
            out[14..18].copy_from_slice(&params.t_cost.to_le_bytes());
            out[18..22].copy_from_slice(&params.p_cost.to_le_bytes());
            out[22..54].copy_from_slice(salt);
        }
        out[54..86].copy_from_slice(&self.key_check);
        out
    }

    /// Parses untrusted header bytes. The key field is left zero.
    fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let bytes: &[u8; HEADER_LEN] = bytes
            .try_into()
            .map_err(|_| StoreError::KeyHeader("wrong length"))?;
        if &bytes[..8] != MAGIC {
            return Err(StoreError::KeyHeader("bad magic"));
        }
        if bytes[8] != HEADER_VERSION {
            return Err(StoreError::KeyHeader("unsupported version"));
        }
        let u32_at = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let kdf = match bytes[9] {
            KIND_PASSPHRASE => {
                let params = KdfParams::new(u32_at(10), u32_at(14), u32_at(18))?;
                let mut salt = [0u8; SALT_LEN];
                salt.copy_from_slice(&bytes[22..54]);
                Some((params, salt))
            }
            KIND_RAW => None,
            _ => return Err(StoreError::KeyHeader("unknown key kind")),
        };
        let mut key_check = [0u8; KEY_CHECK_LEN];
        key_check.copy_from_slice(&bytes[54..86]);
        Ok(Self {
            kind: bytes[9],
            kdf,
            key_check,
            key: Zeroizing::new([0u8; DB_KEY_LEN]),
        })
    }

    /// Obtains the key from `source` as this header prescribes and verifies it
    /// against the key check value in constant time.
    fn check(self, source: &KeySource) -> Result<DbKey, StoreError> {
        let key = match (source, &self.kdf) {
            (KeySource::Passphrase { passphrase, .. }, Some((params, salt))) => {
                derive_key(passphrase, salt, *params)?
            }
            (KeySource::Raw(key), None) => key.clone(),
            _ => return Err(StoreError::WrongKey),
        };
        if bool::from(key_check(&key)?.ct_eq(&self.key_check)) {
            Ok(key)
        } else {
            Err(StoreError::WrongKey)
        }
    }
}

fn key_check(key: &DbKey) -> Result<[u8; KEY_CHECK_LEN], StoreError> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_ref())
        .map_err(|_| StoreError::KeyDerivation)?;
    mac.update(KEY_CHECK_LABEL);
    Ok(mac.finalize().into_bytes().into())
}

/// Reads at most one byte more than a header, so an oversized file is
/// rejected by [`Header::decode`] without being loaded.
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
