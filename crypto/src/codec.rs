//! Bounds-checked byte reader and writer shared by every encoding in this module.
//!
//! All integers are big-endian. A reader never panics and never allocates more than
//! the input it was given; every failure is a [`DecodeError`].

use thiserror::Error;

use super::consts::ENCODING_VERSION;

/// Why a byte string could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The input ended before the named field was complete.
    #[error("truncated input: {0} is incomplete")]
    Truncated(&'static str),
    /// Bytes remained after the last field.
    #[error("{0} trailing bytes after the last field")]
    TrailingBytes(usize),
    /// The version byte is not one this build understands.
    #[error("unsupported encoding version {0}")]
    UnsupportedVersion(u8),
    /// The kind byte names a different structure than the one expected.
    #[error("unexpected kind byte {found:#04x}, expected {expected:#04x}")]
    UnexpectedKind {
        /// The kind the decoder was asked for.
        expected: u8,
        /// The kind found in the input.
        found: u8,
    },
    /// A length exceeds its documented limit.
    #[error("{field} is {len} bytes or items, the limit is {max}")]
    TooLong {
        /// The field.
        field: &'static str,
        /// The length found.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A field holds a value outside its domain.
    #[error("invalid value in {0}")]
    InvalidValue(&'static str),
}

/// Kind byte that follows the version byte in every encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    RatchetMessage = 0x01,
    PreKeyMessage = 0x02,
    SenderKeyMessage = 0x03,
    SenderKeyDistribution = 0x04,
    PreKeyBundle = 0x05,
    DeviceIdentity = 0x10,
    AccountIdentity = 0x11,
    SessionRecord = 0x12,
    SenderKeyRecord = 0x13,
    SignedPreKey = 0x14,
    OneTimePreKey = 0x15,
    KemPreKey = 0x16,
    GroupSender = 0x17,
    RotationSchedule = 0x18,
}

/// Reads fields from an untrusted byte string.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Starts reading `buf`, checking the version byte and the kind byte.
    pub(crate) fn with_header(buf: &'a [u8], kind: Kind) -> Result<Self, DecodeError> {
        let mut reader = Self { buf };
        let version = reader.u8("version")?;
        if version != ENCODING_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let found = reader.u8("kind")?;
        if found != kind as u8 {
            return Err(DecodeError::UnexpectedKind {
                expected: kind as u8,
                found,
            });
        }
        Ok(reader)
    }

    /// Takes exactly `len` bytes.
    pub(crate) fn take(
        &mut self,
        len: usize,
        field: &'static str,
    ) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < len {
            return Err(DecodeError::Truncated(field));
        }
        let (head, tail) = self.buf.split_at(len);
        self.buf = tail;
        Ok(head)
    }

    /// Reads a fixed-size array.
    pub(crate) fn array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    /// Reads one byte.
    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    /// Reads a boolean encoded as 0 or 1.
    pub(crate) fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::InvalidValue(field)),
        }
    }

    /// Reads a big-endian `u32`.
    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    /// Reads a big-endian `u64`.
    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// Reads a `u32` count and checks it against `max` before anything is allocated.
    pub(crate) fn count(&mut self, field: &'static str, max: usize) -> Result<usize, DecodeError> {
        let len =
            usize::try_from(self.u32(field)?).map_err(|_| DecodeError::InvalidValue(field))?;
        if len > max {
            return Err(DecodeError::TooLong { field, len, max });
        }
        Ok(len)
    }

    /// Takes every remaining byte (at most `max`).
    pub(crate) fn rest(
        &mut self,
        field: &'static str,
        max: usize,
    ) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() > max {
            return Err(DecodeError::TooLong {
                field,
                len: self.buf.len(),
                max,
            });
        }
        Ok(std::mem::take(&mut self.buf))
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Fails unless every byte was consumed.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        match self.buf.len() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}

/// Appends fields to a byte string.
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// Starts an encoding with the version byte and `kind`.
    pub(crate) fn with_header(kind: Kind, capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity + 2);
        buf.push(ENCODING_VERSION);
        buf.push(kind as u8);
        Self { buf }
    }

    /// Appends raw bytes.
    pub(crate) fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self
    }

    /// Appends one byte.
    pub(crate) fn u8(&mut self, value: u8) -> &mut Self {
        self.buf.push(value);
        self
    }

    /// Appends a boolean as 0 or 1.
    pub(crate) fn bool(&mut self, value: bool) -> &mut Self {
        self.u8(u8::from(value))
    }

    /// Appends a big-endian `u32`.
    pub(crate) fn u32(&mut self, value: u32) -> &mut Self {
        self.bytes(&value.to_be_bytes())
    }

    /// Appends a big-endian `u64`.
    pub(crate) fn u64(&mut self, value: u64) -> &mut Self {
        self.bytes(&value.to_be_bytes())
    }

    /// Appends a count; callers only pass lengths bounded by the crate's limits.
    pub(crate) fn count(&mut self, len: usize) -> &mut Self {
        self.u32(u32::try_from(len).unwrap_or(u32::MAX))
    }

    /// Bytes written so far.
    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    /// The finished encoding.
    pub(crate) fn finish(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_rejects_wrong_version_kind_and_truncation() {
        assert_eq!(
            Reader::with_header(&[2, 1], Kind::RatchetMessage).err(),
            Some(DecodeError::UnsupportedVersion(2))
        );
        assert_eq!(
            Reader::with_header(&[1, 2], Kind::RatchetMessage).err(),
            Some(DecodeError::UnexpectedKind {
                expected: 1,
                found: 2
            })
        );
        assert_eq!(
            Reader::with_header(&[1], Kind::RatchetMessage).err(),
            Some(DecodeError::Truncated("kind"))
        );
        let mut reader = Reader::with_header(&[1, 1, 0, 0, 0, 9, 1], Kind::RatchetMessage).unwrap();
        assert_eq!(
            reader.count("items", 8).err(),
            Some(DecodeError::TooLong {
                field: "items",
                len: 9,
                max: 8
            })
        );
        assert_eq!(
            reader.take(2, "rest").err(),
            Some(DecodeError::Truncated("rest"))
        );
    }

    #[test]
    fn writer_and_reader_round_trip() {
        let mut writer = Writer::with_header(Kind::SessionRecord, 16);
        writer.u32(7).bool(true).count(3).bytes(b"abc").u8(9);
        let bytes = writer.finish();
        let mut reader = Reader::with_header(&bytes, Kind::SessionRecord).unwrap();
        assert_eq!(reader.u32("a").unwrap(), 7);
        assert!(reader.bool("b").unwrap());
        let len = reader.count("c", 3).unwrap();
        assert_eq!(reader.take(len, "c").unwrap(), b"abc");
        assert_eq!(reader.remaining(), 1);
        assert!(reader.finish().is_err());
    }
}
