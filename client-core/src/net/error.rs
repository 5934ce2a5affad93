//! Errors of the relay connection.

use std::time::Duration;

use tern_protocol::ProtocolError;
use tern_protocol::wire::{ErrorCode, MismatchedDevices};
use tern_transport::{FrameIoError, PipelineError};

/// Why talking to the relay failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The relay could not be reached or the QUIC/TLS handshake failed
    /// (unreachable address, wrong certificate fingerprint, ...).
    #[error("cannot connect to the relay: {0}")]
    Connect(String),
    /// The connection was lost or closed.
    #[error("connection to the relay lost: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// A stream failed or carried a malformed frame.
    #[error(transparent)]
    Frame(#[from] FrameIoError),
    /// The relay sent something this client cannot accept.
    #[error("protocol violation by the relay: {0}")]
    Protocol(#[from] ProtocolError),
    /// The relay answered a request with an error.
    #[error("the relay refused the request ({code:?}): {message}")]
    Relay {
        /// Machine-readable reason.
        code: ErrorCode,
        /// The relay's explanation, for logs.
        message: String,
        /// How long to wait before retrying, when the relay said so.
        retry_after: Option<Duration>,
        /// For [`ErrorCode::MismatchedDevices`]: the devices to fix.
        mismatched_devices: Option<MismatchedDevices>,
    },
    /// The relay closed a stream before answering.
    #[error("the relay closed the stream without answering")]
    NoResponse,
}

impl NetError {
    /// Whether retrying the same request later may succeed (connection
    /// trouble, rate limits, relay overload), as opposed to a permanent
    /// refusal that retrying cannot fix.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect(_) | Self::Connection(_) | Self::Frame(_) | Self::NoResponse => true,
            Self::Protocol(_) => false,
            Self::Relay { code, .. } => matches!(
                code,
                ErrorCode::RateLimited | ErrorCode::Unavailable | ErrorCode::Internal
            ),
        }
    }
}

impl From<PipelineError> for NetError {
    fn from(e: PipelineError) -> Self {
        match e {
            PipelineError::Protocol(e) => Self::Protocol(e),
            PipelineError::Open(e) => Self::Connection(e),
            PipelineError::Closed => Self::NoResponse,
        }
    }
}

impl From<tern_protocol::wire::Error> for NetError {
    fn from(e: tern_protocol::wire::Error) -> Self {
        Self::Relay {
            code: ErrorCode::try_from(e.code).unwrap_or(ErrorCode::Unspecified),
            message: e.message,
            retry_after: (e.retry_after_ms > 0).then(|| Duration::from_millis(e.retry_after_ms)),
            mismatched_devices: e.mismatched_devices,
        }
    }
}
