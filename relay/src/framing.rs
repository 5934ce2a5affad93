//! Async frame I/O on QUIC streams. A body is read incrementally, so memory
//! follows the bytes that actually arrived (bounded by QUIC flow control),
//! never an announced length alone.

use bytes::{Bytes, BytesMut};
use prost::Message;
use quinn::{RecvStream, SendStream};
use tern_protocol::limits::FRAME_HEADER_LEN;
use tern_protocol::wire::ServerFrame;
use tern_protocol::{ProtocolError, encode_frame, frame};

/// Initial buffer for a body; it grows as bytes arrive.
const INITIAL_BODY_CAPACITY: usize = 16 * 1024;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer violated the framing (oversized or truncated frame).
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The stream or connection failed.
    #[error("stream read failed: {0}")]
    Read(#[from] quinn::ReadError),
    /// The stream or connection failed.
    #[error("stream write failed: {0}")]
    Write(#[from] quinn::WriteError),
}

/// Reads one frame body; `Ok(None)` when the stream ended cleanly first.
pub async fn read_frame(recv: &mut RecvStream) -> Result<Option<Bytes>, FrameError> {
    let mut header = [0u8; FRAME_HEADER_LEN];
    let mut got = 0;
    while got < FRAME_HEADER_LEN {
        match recv.read(&mut header[got..]).await? {
            Some(n) => got += n,
            None if got == 0 => return Ok(None),
            None => {
                return Err(ProtocolError::Truncated {
                    missing: FRAME_HEADER_LEN - got,
                }
                .into());
            }
        }
    }
    let len = frame::body_len(header)?;
    let mut body = BytesMut::with_capacity(len.min(INITIAL_BODY_CAPACITY));
    while body.len() < len {
        match recv.read_chunk(len - body.len(), true).await? {
            Some(chunk) => body.extend_from_slice(&chunk.bytes),
            None => {
                return Err(ProtocolError::Truncated {
                    missing: len - body.len(),
                }
                .into());
            }
        }
    }
    Ok(Some(body.freeze()))
}

/// Encodes and writes one frame.
pub async fn write_frame(send: &mut SendStream, msg: &ServerFrame) -> Result<(), FrameError> {
    let bytes = encode_frame(msg)?;
    send.write_all(&bytes).await?;
    Ok(())
}

/// Appends one encoded frame to a buffer (for batched writes).
pub fn append_frame(buf: &mut BytesMut, msg: &ServerFrame) -> Result<(), ProtocolError> {
    let len = msg.encoded_len();
    if len > tern_protocol::limits::MAX_FRAME_LEN {
        return Err(ProtocolError::FrameTooLarge {
            len,
            max: tern_protocol::limits::MAX_FRAME_LEN,
        });
    }
    buf.extend_from_slice(&(len as u32).to_be_bytes());
    msg.encode_raw(buf);
    Ok(())
}
