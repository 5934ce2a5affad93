//! Replay protection for initial messages that consumed no one-time prekey.
//!
//! A prekey message that used a one-time prekey (X25519 or KEM) cannot be replayed:
//! the responder deletes that prekey together with creating the session. A message
//! that used only the signed prekey, plus at most the last-resort KEM prekey, would
//! run the same handshake again and yield a second session with the same keys. As
//! libsignal does for its last-resort Kyber keys (`mark_kyber_pre_key_used`), the
//! responder therefore remembers the handshakes it accepted. The cache is kept with
//! the signed prekey they used, in its stored record: the entries (KEM prekey id,
//! base key) live exactly as long as a replay could succeed, because once rotation
//! deletes the signed prekey a replay fails with `UnknownPreKey` anyway.

use std::fmt;

use super::codec::{DecodeError, Reader, Writer};
use super::consts::{MAX_REPLAY_ENTRIES, REPLAY_CACHE_ROTATION_MARK};
use super::error::CryptoError;

/// One accepted handshake: the KEM prekey it used (if any) and the initiator's base key.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Entry {
    kem_prekey_id: Option<u32>,
    base_key: [u8; 32],
}

/// The handshakes without a one-time prekey accepted under one signed prekey,
/// at most [`MAX_REPLAY_ENTRIES`] (see there for the bound and why nothing is evicted).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ReplayCache {
    entries: Vec<Entry>,
}

impl ReplayCache {
    /// Number of remembered handshakes.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no handshake is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether the signed prekey holding this cache should be rotated now because
    /// the cache reached [`REPLAY_CACHE_ROTATION_MARK`].
    pub fn wants_rotation(&self) -> bool {
        self.entries.len() >= REPLAY_CACHE_ROTATION_MARK
    }

    /// Remembers a handshake. Fails with `ReplayedPreKeyMessage` if it was accepted
    /// before and with `ReplayCacheFull` if nothing more can be remembered; in both
    /// cases the cache is unchanged.
    pub(crate) fn insert(
        &mut self,
        signed_prekey_id: u32,
        kem_prekey_id: Option<u32>,
        base_key: [u8; 32],
    ) -> Result<(), CryptoError> {
        let entry = Entry {
            kem_prekey_id,
            base_key,
        };
        if self.entries.contains(&entry) {
            return Err(CryptoError::ReplayedPreKeyMessage);
        }
        if self.entries.len() >= MAX_REPLAY_ENTRIES {
            return Err(CryptoError::ReplayCacheFull { signed_prekey_id });
        }
        self.entries.push(entry);
        Ok(())
    }

    /// Appends `count (u32) ‖ { has KEM (bool) ‖ KEM id or 0 (u32) ‖ base key (32) }*`.
    pub(crate) fn write(&self, writer: &mut Writer) {
        writer.count(self.entries.len());
        for entry in &self.entries {
            writer
                .bool(entry.kem_prekey_id.is_some())
                .u32(entry.kem_prekey_id.unwrap_or(0))
                .bytes(&entry.base_key);
        }
    }

    /// Reads what [`Self::write`] wrote (the count is checked before allocating).
    pub(crate) fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let count = reader.count("replay cache entries", MAX_REPLAY_ENTRIES)?;
        let entries = (0..count)
            .map(|_| {
                let has_kem = reader.bool("replay entry has KEM")?;
                let kem_prekey_id = reader.u32("replay entry KEM id")?;
                Ok(Entry {
                    kem_prekey_id: has_kem.then_some(kem_prekey_id),
                    base_key: reader.array("replay entry base key")?,
                })
            })
            .collect::<Result<_, DecodeError>>()?;
        Ok(Self { entries })
    }
}

impl fmt::Debug for ReplayCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayCache")
            .field("entries", &self.entries.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Kind;

    fn key(i: usize) -> [u8; 32] {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&(i as u64).to_be_bytes());
        key
    }

    #[test]
    fn a_repeat_is_refused_and_the_bound_holds_without_eviction() {
        let mut cache = ReplayCache::default();
        cache.insert(1, Some(5), key(0)).unwrap();
        assert!(matches!(
            cache.insert(1, Some(5), key(0)),
            Err(CryptoError::ReplayedPreKeyMessage)
        ));
        // The same base key under another KEM prekey is another handshake.
        cache.insert(1, None, key(0)).unwrap();
        for i in 1..MAX_REPLAY_ENTRIES - 1 {
            cache.insert(1, Some(5), key(i)).unwrap();
        }
        assert_eq!(cache.len(), MAX_REPLAY_ENTRIES);
        assert!(cache.wants_rotation());
        let before = cache.clone();
        assert!(matches!(
            cache.insert(1, Some(5), key(MAX_REPLAY_ENTRIES)),
            Err(CryptoError::ReplayCacheFull {
                signed_prekey_id: 1
            })
        ));
        // Nothing was forgotten to make room: the oldest entry is still refused.
        assert_eq!(cache, before);
        assert!(matches!(
            cache.insert(1, Some(5), key(0)),
            Err(CryptoError::ReplayedPreKeyMessage)
        ));
    }

    #[test]
    fn encoding_round_trips_and_rejects_oversized_counts() {
        let mut cache = ReplayCache::default();
        cache.insert(1, Some(7), key(1)).unwrap();
        cache.insert(1, None, key(2)).unwrap();
        let mut writer = Writer::with_header(Kind::SignedPreKey, 0);
        cache.write(&mut writer);
        let bytes = writer.finish();
        let mut reader = Reader::with_header(&bytes, Kind::SignedPreKey).unwrap();
        assert_eq!(ReplayCache::read(&mut reader).unwrap(), cache);
        reader.finish().unwrap();

        let mut writer = Writer::with_header(Kind::SignedPreKey, 0);
        writer.count(MAX_REPLAY_ENTRIES + 1);
        let bytes = writer.finish();
        let mut reader = Reader::with_header(&bytes, Kind::SignedPreKey).unwrap();
        assert!(matches!(
            ReplayCache::read(&mut reader),
            Err(DecodeError::TooLong { .. })
        ));
        assert_eq!(format!("{cache:?}"), "ReplayCache { entries: 2 }");
    }
}
