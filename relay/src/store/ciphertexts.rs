//! Per-device ciphertexts stored inline in their log row (both backends).
//!
//! A message addressed to few devices keeps its ciphertexts in the
//! `log.ciphertexts` column, so an append writes one B-tree row instead of
//! one row plus one per device in `log_ciphertexts`. Larger fan-outs (more
//! than [`MAX_INLINE_BYTES`] encoded) stay in `log_ciphertexts`, so a device
//! reading its own ciphertext never reads more than that much of the others'.
//!
//! Encoding, version 1 (integers big-endian):
//!
//! ```text
//! version (1 byte) = 1 | count (u16)
//! then count times:
//!   user id (16 bytes) | device id (u32) | length (u32) | ciphertext (length bytes)
//! ```
//!
//! and nothing after the last entry.
//!
//! Disk is hostile: decoding checks the total size and every length against
//! what is left, and fails with a [`CiphertextsError`], never a panic.

use tern_protocol::UserId;

use crate::error::{RelayError, StoreError};
use crate::store::{DeviceAddr, MessageAppend};

/// Version byte of the encoding.
const VERSION: u8 = 1;
/// Bytes before the first entry: version and count.
const HEADER: usize = 1 + 2;
/// Bytes before each ciphertext: user id, device id, length.
const ENTRY_HEADER: usize = UserId::LEN + 4 + 4;
/// Largest encoding stored inline (and accepted by the decoder): about one
/// database page, so one device's read costs at most that much extra.
pub const MAX_INLINE_BYTES: usize = 4096;

/// An inline ciphertext encoding that cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CiphertextsError {
    /// Shorter than the version and count.
    #[error("inline ciphertexts: no header")]
    Empty,
    /// A version this build does not know.
    #[error("inline ciphertexts: unknown version {0}")]
    Version(u8),
    /// Longer than [`MAX_INLINE_BYTES`].
    #[error("inline ciphertexts: longer than {MAX_INLINE_BYTES} bytes")]
    Oversized,
    /// An entry runs past the end, or fewer entries than counted.
    #[error("inline ciphertexts: truncated entry")]
    Truncated,
    /// Bytes after the counted entries.
    #[error("inline ciphertexts: trailing bytes")]
    Trailing,
}

impl From<CiphertextsError> for StoreError {
    fn from(e: CiphertextsError) -> Self {
        Self::Corrupt(e.as_str())
    }
}

impl CiphertextsError {
    fn as_str(&self) -> &'static str {
        match self {
            Self::Empty => "inline ciphertexts: no header",
            Self::Version(_) => "inline ciphertexts: unknown version",
            Self::Oversized => "inline ciphertexts: oversized",
            Self::Truncated => "inline ciphertexts: truncated entry",
            Self::Trailing => "inline ciphertexts: trailing bytes",
        }
    }
}

/// Encodes `entries`, or `None` when the encoding would exceed
/// [`MAX_INLINE_BYTES`] (the caller stores them in their own rows).
pub fn encode(entries: &[Entry<'_>]) -> Option<Vec<u8>> {
    let count = u16::try_from(entries.len()).ok()?;
    let mut len = HEADER;
    for (_, ciphertext) in entries {
        len = len
            .checked_add(ENTRY_HEADER)?
            .checked_add(ciphertext.len())?;
    }
    if len > MAX_INLINE_BYTES {
        return None;
    }
    let mut out = Vec::with_capacity(len);
    out.push(VERSION);
    out.extend_from_slice(&count.to_be_bytes());
    for (device, ciphertext) in entries {
        out.extend_from_slice(&device.user.0);
        out.extend_from_slice(&device.device.to_be_bytes());
        out.extend_from_slice(&u32::try_from(ciphertext.len()).ok()?.to_be_bytes());
        out.extend_from_slice(ciphertext);
    }
    Some(out)
}

/// A message's per-device ciphertexts encoded for its log row, or `None`
/// when they are too large to inline (the backend then stores one row per
/// device).
pub fn encode_message(m: &MessageAppend) -> Result<Option<Vec<u8>>, StoreError> {
    let entries = m
        .device_ciphertexts
        .iter()
        .map(|dc| {
            let user = UserId::from_slice("DeviceCiphertext.user_id", &dc.user_id)?;
            let device = DeviceAddr {
                user,
                device: dc.device_id,
            };
            Ok((device, &dc.ciphertext[..]))
        })
        .collect::<Result<Vec<_>, RelayError>>()?;
    Ok(encode(&entries))
}

/// The entries of an encoding, in order; stops at the first error.
pub fn entries(encoded: &[u8]) -> Entries<'_> {
    let header = encoded.split_first_chunk::<HEADER>();
    let rest = match header {
        _ if encoded.len() > MAX_INLINE_BYTES => Err(CiphertextsError::Oversized),
        None => Err(CiphertextsError::Empty),
        Some(([VERSION, count @ ..], rest)) => Ok((u16::from_be_bytes(*count), rest)),
        Some(([other, ..], _)) => Err(CiphertextsError::Version(*other)),
    };
    Entries { rest }
}

/// The ciphertext addressed to `device`, if any. The whole encoding is
/// checked, so a damaged one fails whichever device asks.
pub fn find(encoded: &[u8], device: DeviceAddr) -> Result<Option<&[u8]>, CiphertextsError> {
    let mut found = None;
    for entry in entries(encoded) {
        let (addr, ciphertext) = entry?;
        if addr == device && found.is_none() {
            found = Some(ciphertext);
        }
    }
    Ok(found)
}

/// Iterator over decoded entries (see [`entries`]).
pub struct Entries<'a> {
    /// Entries still counted and the bytes left, or the error to yield.
    rest: Result<(u16, &'a [u8]), CiphertextsError>,
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<Entry<'a>, CiphertextsError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (count, rest) = match std::mem::replace(&mut self.rest, Ok((0, &[]))) {
            Ok((0, [])) => return None,
            Ok((0, _)) => return Some(Err(CiphertextsError::Trailing)),
            Ok(left) => left,
            Err(e) => return Some(Err(e)),
        };
        match split_entry(rest) {
            Ok((entry, tail)) => {
                self.rest = Ok((count.saturating_sub(1), tail));
                Some(Ok(entry))
            }
            Err(e) => Some(Err(e)),
        }
    }
}

/// A device and the ciphertext addressed to it.
pub type Entry<'a> = (DeviceAddr, &'a [u8]);

fn split_entry(bytes: &[u8]) -> Result<(Entry<'_>, &[u8]), CiphertextsError> {
    let (user, rest) = bytes
        .split_first_chunk::<{ UserId::LEN }>()
        .ok_or(CiphertextsError::Truncated)?;
    let (device, rest) = rest
        .split_first_chunk::<4>()
        .ok_or(CiphertextsError::Truncated)?;
    let (len, rest) = rest
        .split_first_chunk::<4>()
        .ok_or(CiphertextsError::Truncated)?;
    let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| CiphertextsError::Truncated)?;
    let (ciphertext, rest) = rest
        .split_at_checked(len)
        .ok_or(CiphertextsError::Truncated)?;
    let device = DeviceAddr {
        user: UserId(*user),
        device: u32::from_be_bytes(*device),
    };
    Ok(((device, ciphertext), rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn device() -> impl Strategy<Value = DeviceAddr> {
        (any::<[u8; 16]>(), any::<u32>()).prop_map(|(u, device)| DeviceAddr {
            user: UserId(u),
            device,
        })
    }

    fn decode(encoded: &[u8]) -> Result<Vec<Entry<'_>>, CiphertextsError> {
        entries(encoded).collect()
    }

    proptest! {
        #[test]
        fn encodings_round_trip(
            list in proptest::collection::vec(
                (device(), proptest::collection::vec(any::<u8>(), 0..600)), 0..8),
        ) {
            let entries: Vec<Entry<'_>> = list.iter().map(|(d, c)| (*d, &c[..])).collect();
            let size: usize = HEADER + entries.iter().map(|(_, c)| ENTRY_HEADER + c.len()).sum::<usize>();
            match encode(&entries) {
                None => prop_assert!(size > MAX_INLINE_BYTES),
                Some(encoded) => {
                    prop_assert_eq!(encoded.len(), size);
                    prop_assert_eq!(decode(&encoded)?, entries.clone());
                    for (device, _) in &entries {
                        let first = entries.iter().find(|(d, _)| d == device).map(|(_, c)| *c);
                        prop_assert_eq!(find(&encoded, *device)?, first);
                    }
                }
            }
        }

        #[test]
        fn truncated_encodings_are_rejected(
            list in proptest::collection::vec(
                (device(), proptest::collection::vec(any::<u8>(), 0..100)), 1..6),
            cut in any::<prop::sample::Index>(),
        ) {
            let entries: Vec<Entry<'_>> = list.iter().map(|(d, c)| (*d, &c[..])).collect();
            let encoded = encode(&entries).unwrap();
            let cut = cut.index(encoded.len());
            let probe = entries[0].0;
            let expected = if cut < HEADER { CiphertextsError::Empty } else { CiphertextsError::Truncated };
            prop_assert_eq!(decode(&encoded[..cut]).err(), Some(expected));
            prop_assert_eq!(find(&encoded[..cut], probe), Err(expected));
            let mut longer = encoded.clone();
            longer.push(0);
            prop_assert_eq!(find(&longer, probe), Err(CiphertextsError::Trailing));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(decoded) = decode(&bytes) {
                prop_assert_eq!(encode(&decoded), Some(bytes.clone()));
            }
        }
    }

    #[test]
    fn oversized_empty_and_unknown_encodings_are_rejected() {
        let mut big = vec![VERSION, 0, 0];
        big.resize(MAX_INLINE_BYTES + 1, 0);
        let probe = DeviceAddr {
            user: UserId([0; 16]),
            device: 0,
        };
        assert_eq!(find(&big, probe), Err(CiphertextsError::Oversized));
        assert_eq!(find(&[], probe), Err(CiphertextsError::Empty));
        assert_eq!(find(&[VERSION, 0], probe), Err(CiphertextsError::Empty));
        assert_eq!(find(&[2, 0, 0], probe), Err(CiphertextsError::Version(2)));
        assert_eq!(find(&[VERSION, 0, 0], probe), Ok(None));
        assert_eq!(
            find(&[VERSION, 0, 1], probe),
            Err(CiphertextsError::Truncated)
        );
    }

    #[test]
    fn fan_outs_beyond_the_limit_are_not_inlined() {
        let ciphertext = [7u8; 200];
        let entries: Vec<Entry<'_>> = (0..20)
            .map(|device| {
                let addr = DeviceAddr {
                    user: UserId([1; 16]),
                    device,
                };
                (addr, &ciphertext[..])
            })
            .collect();
        assert!(encode(&entries[..10]).is_some());
        assert_eq!(encode(&entries), None);
    }
}
