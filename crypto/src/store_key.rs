//! The local store's database key: derivation from a passphrase, the key
//! check value and the key header that records both (`docs/crypto.md` §13,
//! `docs/store.md` for where the header lives).
//!
//! The SQLCipher database is opened with a 32-byte raw key. That key is either
//! supplied by the host application (a mobile keychain) or derived from a
//! passphrase with Argon2id. The Argon2id parameters and salt live in a small
//! versioned *key header* together with a key check value that tells a wrong
//! key apart from a damaged database.
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
//! | 54     | 32   | key check: HMAC-SHA256(database key, `STORE_KEY_CHECK_LABEL`)|
//!
//! Argon2id is version 0x13 with a 32-byte output. The key check reveals nothing
//! an attacker holding the database file could not already test (a guessed key
//! can be checked against the first page's HMAC), and it costs an attacker the
//! same Argon2id work per guess.

use argon2::{Algorithm, Argon2, Params, Version};
use hmac::{Hmac, KeyInit, Mac};
use rand_core::CryptoRng;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::consts::{STORE_KEY_CHECK_LABEL, STORE_KEY_HEADER_MAGIC};

/// Length of the database key.
pub const DB_KEY_LEN: usize = 32;
/// Length of the Argon2id salt.
pub const SALT_LEN: usize = 32;
/// Length of a version-1 key header.
pub const HEADER_LEN: usize = 86;
/// Upper bound on the Argon2id memory cost accepted from a header (1 GiB), so
/// that a hostile header cannot make opening exhaust memory.
pub const MAX_M_COST_KIB: u32 = 1024 * 1024;
/// Upper bound on Argon2id iterations accepted from a header.
pub const MAX_T_COST: u32 = 64;
/// Upper bound on Argon2id parallelism accepted from a header.
pub const MAX_P_COST: u32 = 16;

const HEADER_VERSION: u8 = 1;
const KIND_PASSPHRASE: u8 = 1;
const KIND_RAW: u8 = 2;
const KEY_CHECK_LEN: usize = 32;

/// A 32-byte database key, wiped from memory on drop.
pub type DbKey = Zeroizing<[u8; DB_KEY_LEN]>;

/// Why a database key could not be derived or checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreKeyError {
    /// Argon2id parameters out of the accepted range.
    #[error("invalid key derivation parameters: {0}")]
    InvalidKdfParams(&'static str),
    /// Argon2id or HMAC failed.
    #[error("key derivation failed")]
    KeyDerivation,
    /// The key header is malformed.
    #[error("key header: {0}")]
    KeyHeader(&'static str),
    /// The key does not match the header's key check value.
    #[error("wrong passphrase or key")]
    WrongKey,
}

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
    pub fn new(m_cost_kib: u32, t_cost: u32, p_cost: u32) -> Result<Self, StoreKeyError> {
        if !(1..=MAX_P_COST).contains(&p_cost) {
            return Err(StoreKeyError::InvalidKdfParams("parallelism"));
        }
        if !(1..=MAX_T_COST).contains(&t_cost) {
            return Err(StoreKeyError::InvalidKdfParams("iterations"));
        }
        if m_cost_kib < 8 * p_cost || m_cost_kib > MAX_M_COST_KIB {
            return Err(StoreKeyError::InvalidKdfParams("memory"));
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
pub fn derive_key(
    passphrase: &str,
    salt: &[u8],
    params: KdfParams,
) -> Result<DbKey, StoreKeyError> {
    let argon_params = Params::new(
        params.m_cost_kib,
        params.t_cost,
        params.p_cost,
        Some(DB_KEY_LEN),
    )
    .map_err(|_| StoreKeyError::InvalidKdfParams("rejected by argon2"))?;
    let mut key = Zeroizing::new([0u8; DB_KEY_LEN]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, argon_params)
        .hash_password_into(passphrase.as_bytes(), salt, key.as_mut())
        .map_err(|_| StoreKeyError::KeyDerivation)?;
    Ok(key)
}

/// A key header: the Argon2id settings (for a passphrase) and the key check
/// value. A freshly created header also holds the key it vouches for.
pub struct KeyHeader {
    kdf: Option<(KdfParams, [u8; SALT_LEN])>,
    key_check: [u8; KEY_CHECK_LEN],
    key: Option<DbKey>,
}

impl KeyHeader {
    /// Obtains the key for a new store from `source` (with a fresh salt from
    /// `rng` for a passphrase) and the header that records it.
    pub fn create<R: CryptoRng + ?Sized>(
        source: &KeySource,
        rng: &mut R,
    ) -> Result<Self, StoreKeyError> {
        let (kdf, key) = match source {
            KeySource::Passphrase { passphrase, params } => {
                let mut salt = [0u8; SALT_LEN];
                rng.fill_bytes(&mut salt);
                (
                    Some((*params, salt)),
                    derive_key(passphrase, &salt, *params)?,
                )
            }
            KeySource::Raw(key) => (None, key.clone()),
        };
        Ok(Self {
            kdf,
            key_check: key_check(&key)?,
            key: Some(key),
        })
    }

    /// The key of a header made by [`Self::create`] (`None` for a decoded one).
    pub fn key(&self) -> Option<&DbKey> {
        self.key.as_ref()
    }

    /// The 86-byte encoding.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..8].copy_from_slice(STORE_KEY_HEADER_MAGIC);
        out[8] = HEADER_VERSION;
        out[9] = KIND_RAW;
        if let Some((params, salt)) = &self.kdf {
            out[9] = KIND_PASSPHRASE;
            out[10..14].copy_from_slice(&params.m_cost_kib.to_le_bytes());
            out[14..18].copy_from_slice(&params.t_cost.to_le_bytes());
            out[18..22].copy_from_slice(&params.p_cost.to_le_bytes());
            out[22..54].copy_from_slice(salt);
        }
        out[54..86].copy_from_slice(&self.key_check);
        out
    }

    /// Parses untrusted header bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, StoreKeyError> {
        let bytes: &[u8; HEADER_LEN] = bytes
            .try_into()
            .map_err(|_| StoreKeyError::KeyHeader("wrong length"))?;
        if &bytes[..8] != STORE_KEY_HEADER_MAGIC {
            return Err(StoreKeyError::KeyHeader("bad magic"));
        }
        if bytes[8] != HEADER_VERSION {
            return Err(StoreKeyError::KeyHeader("unsupported version"));
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
            _ => return Err(StoreKeyError::KeyHeader("unknown key kind")),
        };
        let mut key_check = [0u8; KEY_CHECK_LEN];
        key_check.copy_from_slice(&bytes[54..86]);
        Ok(Self {
            kdf,
            key_check,
            key: None,
        })
    }

    /// Obtains the key from `source` as this header prescribes and verifies it
    /// against the key check value in constant time.
    pub fn check(&self, source: &KeySource) -> Result<DbKey, StoreKeyError> {
        let key = match (source, &self.kdf) {
            (KeySource::Passphrase { passphrase, .. }, Some((params, salt))) => {
                derive_key(passphrase, salt, *params)?
            }
            (KeySource::Raw(key), None) => key.clone(),
            _ => return Err(StoreKeyError::WrongKey),
        };
        if bool::from(key_check(&key)?.ct_eq(&self.key_check)) {
            Ok(key)
        } else {
            Err(StoreKeyError::WrongKey)
        }
    }
}

/// `HMAC-SHA256(key, STORE_KEY_CHECK_LABEL)`.
fn key_check(key: &DbKey) -> Result<[u8; KEY_CHECK_LEN], StoreKeyError> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_ref())
        .map_err(|_| StoreKeyError::KeyDerivation)?;
    mac.update(STORE_KEY_CHECK_LABEL);
    Ok(mac.finalize().into_bytes().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::ChaCha20Rng;

    fn fast() -> KdfParams {
        KdfParams::new(64, 1, 1).unwrap()
    }

    #[test]
    fn a_header_vouches_for_its_key_only() {
        let mut rng = ChaCha20Rng::from_seed([1; 32]);
        let source = KeySource::passphrase_with_params("pw", fast());
        let header = KeyHeader::create(&source, &mut rng).unwrap();
        let key = header.key().unwrap().clone();
        let bytes = header.encode();
        assert_eq!(&bytes[..10], b"TERNKEY\0\x01\x01");
        assert_eq!(&bytes[10..14], &64u32.to_le_bytes());
        let decoded = KeyHeader::decode(&bytes).unwrap();
        assert!(decoded.key().is_none());
        assert_eq!(*decoded.check(&source).unwrap(), *key);
        let wrong = KeySource::passphrase_with_params("pW", fast());
        assert_eq!(decoded.check(&wrong).err(), Some(StoreKeyError::WrongKey));
        assert_eq!(
            decoded.check(&KeySource::raw(*key)).err(),
            Some(StoreKeyError::WrongKey)
        );

        let raw = KeyHeader::create(&KeySource::raw([9; 32]), &mut rng).unwrap();
        let raw = KeyHeader::decode(&raw.encode()).unwrap();
        assert_eq!(*raw.check(&KeySource::raw([9; 32])).unwrap(), [9; 32]);
        assert!(raw.check(&KeySource::raw([8; 32])).is_err());
    }

    #[test]
    fn hostile_headers_are_refused_before_any_derivation() {
        let mut rng = ChaCha20Rng::from_seed([2; 32]);
        let source = KeySource::passphrase_with_params("pw", fast());
        let good = KeyHeader::create(&source, &mut rng).unwrap().encode();
        let with = |at: usize, bytes: &[u8]| {
            let mut header = good;
            header[at..at + bytes.len()].copy_from_slice(bytes);
            KeyHeader::decode(&header).err()
        };
        assert_eq!(with(0, b"X"), Some(StoreKeyError::KeyHeader("bad magic")));
        assert_eq!(
            with(8, &[2]),
            Some(StoreKeyError::KeyHeader("unsupported version"))
        );
        assert_eq!(
            with(9, &[3]),
            Some(StoreKeyError::KeyHeader("unknown key kind"))
        );
        let huge = (MAX_M_COST_KIB + 1).to_le_bytes();
        assert_eq!(
            with(10, &huge),
            Some(StoreKeyError::InvalidKdfParams("memory"))
        );
        assert!(KeyHeader::decode(&good[..85]).is_err());
    }
}
