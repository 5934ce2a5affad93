//! Fixed-size identifiers.
//!
//! On the wire they are plain `bytes` fields; these newtypes give them a type,
//! a checked conversion from untrusted bytes and a hex rendering for logs.

use std::fmt;

use crate::error::ProtocolError;

macro_rules! fixed_id {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// Length in bytes.
            pub const LEN: usize = $len;

            /// Parses the id from untrusted bytes of exactly [`Self::LEN`] bytes.
            pub fn from_slice(field: &'static str, bytes: &[u8]) -> Result<Self, ProtocolError> {
                <[u8; $len]>::try_from(bytes)
                    .map(Self)
                    .map_err(|_| ProtocolError::BadLength {
                        field,
                        len: bytes.len(),
                        expected: $len,
                    })
            }

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// The id as an owned wire field.
            pub fn to_wire(&self) -> bytes::Bytes {
                bytes::Bytes::copy_from_slice(&self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($name))
            }
        }
    };
}

fixed_id!(
    /// An account id.
    UserId,
    crate::limits::USER_ID_LEN
);
fixed_id!(
    /// A chat id, chosen by the creating client.
    ChatId,
    crate::limits::CHAT_ID_LEN
);
fixed_id!(
    /// A client-generated message id; makes sends idempotent.
    ClientMessageId,
    crate::limits::CLIENT_MESSAGE_ID_LEN
);
fixed_id!(
    /// A blob id: the SHA-256 of the blob's ciphertext.
    BlobId,
    crate::limits::BLOB_ID_LEN
);

impl ClientMessageId {
    /// A time-ordered id, laid out like a UUIDv7: bytes 0–5 are `unix_ms`
    /// (big-endian, the low 48 bits), bytes 6–15 are `random`. Relays index
    /// ids in byte order, so ids made this way land at the end of the index
    /// instead of each dirtying a page of its own (docs/protocol.md §5.4).
    pub fn time_ordered(unix_ms: u64, random: [u8; 10]) -> Self {
        let mut id = [0u8; crate::limits::CLIENT_MESSAGE_ID_LEN];
        id[..6].copy_from_slice(&unix_ms.to_be_bytes()[2..]);
        id[6..].copy_from_slice(&random);
        Self(id)
    }
}

#[cfg(test)]
mod tests {
    use super::ClientMessageId;

    #[test]
    fn time_ordered_ids_sort_by_time_whatever_their_random_part() {
        let early = ClientMessageId::time_ordered(1_700_000_000_000, [0xff; 10]);
        let late = ClientMessageId::time_ordered(1_700_000_000_001, [0; 10]);
        assert!(early < late);
        assert_eq!(&early.0[..6], &1_700_000_000_000u64.to_be_bytes()[2..]);
        assert_eq!(&early.0[6..], &[0xff; 10]);
    }
}
