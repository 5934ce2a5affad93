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
