//! The protocol's error type.

use crate::wire::ErrorCode;

/// Why a frame or message was rejected.
///
/// Every decoder in this crate returns this type; none panics on any input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The length prefix announces a frame larger than the limit.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// Announced or actual length.
        len: usize,
        /// The limit that applies.
        max: usize,
    },
    /// The input ended inside a frame.
    #[error("input ended inside a frame: {missing} more bytes expected")]
    Truncated {
        /// Bytes still missing to complete the frame.
        missing: usize,
    },
    /// The frame body is not valid protobuf for the expected message.
    #[error("malformed message: {0}")]
    Malformed(#[from] prost::DecodeError),
    /// The peer speaks a protocol version this crate does not support.
    #[error("unsupported protocol version {got}; this peer speaks version {supported}")]
    UnsupportedVersion {
        /// Version the peer announced.
        got: u32,
        /// Version this crate speaks.
        supported: u32,
    },
    /// A required field or `oneof` is absent (or holds a variant from a newer peer).
    #[error("missing required field {0}")]
    MissingField(&'static str),
    /// A fixed-size field has the wrong length.
    #[error("field {field} is {len} bytes long, expected {expected}")]
    BadLength {
        /// Field path, e.g. `Send.chat_id`.
        field: &'static str,
        /// Actual length.
        len: usize,
        /// Required length.
        expected: usize,
    },
    /// A variable-size field exceeds its limit.
    #[error("field {field} is {len} bytes long, the limit is {max}")]
    TooLong {
        /// Field path.
        field: &'static str,
        /// Actual length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A repeated field has too many entries.
    #[error("field {field} has {count} entries, the limit is {max}")]
    TooMany {
        /// Field path.
        field: &'static str,
        /// Actual count.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A field's value is not allowed (bad characters, duplicates, zero where
    /// a value is required, ...).
    #[error("field {field} is invalid: {reason}")]
    Invalid {
        /// Field path.
        field: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// A valid message arrived where another was expected.
    #[error("unexpected message: expected {expected}")]
    Unexpected {
        /// What the state machine expected.
        expected: &'static str,
    },
}

impl ProtocolError {
    /// The wire error code a relay answers with when a request fails to decode.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Self::FrameTooLarge { .. } | Self::TooLong { .. } | Self::TooMany { .. } => {
                ErrorCode::TooLarge
            }
            Self::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            Self::Truncated { .. }
            | Self::Malformed(_)
            | Self::MissingField(_)
            | Self::BadLength { .. }
            | Self::Invalid { .. }
            | Self::Unexpected { .. } => ErrorCode::BadRequest,
        }
    }
}
