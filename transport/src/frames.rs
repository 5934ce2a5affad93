//! Frames on quinn streams.
//!
//! A reader never allocates for a frame more than the bytes that have
//! actually arrived (QUIC flow control bounds those), so a peer announcing a
//! 2 MiB frame and sending nothing costs nothing.

use bytes::{Bytes, BytesMut};
use prost::Message;
use quinn::{ReadError, RecvStream, SendStream, WriteError};
use tern_protocol::frame::body_len;
use tern_protocol::limits::FRAME_HEADER_LEN;
use tern_protocol::{FrameDecoder, ProtocolError};

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameIoError {
    /// The frame violates the protocol (too large, truncated, malformed).
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The stream failed while reading.
    #[error("stream read failed: {0}")]
    Read(#[from] ReadError),
    /// The stream failed while writing.
    #[error("stream write failed: {0}")]
    Write(#[from] WriteError),
}

/// Reads the next frame body from `recv`.
///
/// Returns `Ok(None)` when the peer finished the stream cleanly at a frame
/// boundary, and [`ProtocolError::Truncated`] when it finished inside one.
pub async fn read_frame(recv: &mut RecvStream) -> Result<Option<Bytes>, FrameIoError> {
    let mut header = [0u8; FRAME_HEADER_LEN];
    let got = read_into(recv, &mut header).await?;
    if got == 0 {
        return Ok(None);
    }
    if got < FRAME_HEADER_LEN {
        return Err(ProtocolError::Truncated {
            missing: FRAME_HEADER_LEN - got,
        }
        .into());
    }
    let len = body_len(header)?;
    let mut body = BytesMut::new();
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

/// Fills `buf` as far as the stream allows; returns how many bytes were read
/// (less than `buf.len()` only if the stream finished).
async fn read_into(recv: &mut RecvStream, buf: &mut [u8]) -> Result<usize, ReadError> {
    let mut filled = 0;
    while filled < buf.len() {
        match recv.read(&mut buf[filled..]).await? {
            Some(n) => filled += n,
            None => break,
        }
    }
    Ok(filled)
}

/// Most bytes taken from the stream per read by a [`FrameReader`].
const READ_CHUNK: usize = 64 * 1024;

/// Reads the frames of a stream that carries many of them (the delivery
/// stream, a pipelined request stream).
///
/// Unlike [`read_frame`], [`next`](Self::next) is cancel-safe: bytes leave
/// the QUIC stream only into the reader's own buffer, so dropping a pending
/// `next()` (in a `select!`) loses nothing. The buffer holds at most one
/// partial frame plus one read.
pub struct FrameReader {
    recv: RecvStream,
    decoder: FrameDecoder,
}

impl FrameReader {
    /// A reader over `recv`.
    pub fn new(recv: RecvStream) -> Self {
        Self {
            recv,
            decoder: FrameDecoder::new(),
        }
    }

    /// The next frame body; `Ok(None)` when the peer finished the stream at
    /// a frame boundary.
    pub async fn next(&mut self) -> Result<Option<Bytes>, FrameIoError> {
        loop {
            if let Some(body) = self.decoder.next_frame()? {
                return Ok(Some(body));
            }
            match self.recv.read_chunk(READ_CHUNK, true).await? {
                Some(chunk) => self.decoder.push(&chunk.bytes),
                None => {
                    self.decoder.finish()?;
                    return Ok(None);
                }
            }
        }
    }

    /// Tells the peer to stop sending on this stream (after a framing error
    /// nothing more on it can be understood).
    pub fn stop(&mut self, code: quinn::VarInt) {
        let _ = self.recv.stop(code);
    }
}

/// Encodes `msg` as a frame and writes it to `send`.
pub async fn write_frame<M: Message>(send: &mut SendStream, msg: &M) -> Result<(), FrameIoError> {
    let frame = tern_protocol::encode_frame(msg)?;
    send.write_all(&frame).await?;
    Ok(())
}
