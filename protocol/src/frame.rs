//! Length-prefixed framing.
//!
//! A frame is a 4-byte big-endian body length followed by the body, a
//! protobuf-encoded [`ClientFrame`](crate::wire::ClientFrame) or
//! [`ServerFrame`](crate::wire::ServerFrame). A body longer than
//! [`MAX_FRAME_LEN`] is never buffered: the decoder fails as soon as it reads
//! the length prefix.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;

use crate::error::ProtocolError;
use crate::limits::{FRAME_HEADER_LEN, MAX_FRAME_LEN};

/// Encodes `msg` as one frame (length prefix + body).
///
/// Fails with [`ProtocolError::FrameTooLarge`] when the body would exceed
/// [`MAX_FRAME_LEN`], so a peer never sends what the other side must reject.
pub fn encode_frame<M: Message>(msg: &M) -> Result<Bytes, ProtocolError> {
    let len = msg.encoded_len();
    if len > MAX_FRAME_LEN {
        return Err(ProtocolError::FrameTooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    let mut buf = BytesMut::with_capacity(FRAME_HEADER_LEN + len);
    // The length fits in u32 because MAX_FRAME_LEN does.
    buf.put_u32(len as u32);
    msg.encode_raw(&mut buf);
    Ok(buf.freeze())
}

/// Reads a frame header and returns the body length it announces, checked
/// against [`MAX_FRAME_LEN`]. For shells that read `FRAME_HEADER_LEN` bytes
/// and then exactly the body from an async stream.
pub fn body_len(header: [u8; FRAME_HEADER_LEN]) -> Result<usize, ProtocolError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME_LEN {
        return Err(ProtocolError::FrameTooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    Ok(len)
}

/// Incremental, sans-IO frame splitter: feed it bytes as they arrive with
/// [`push`](Self::push), take complete frame bodies with
/// [`next_frame`](Self::next_frame).
///
/// It holds at most one partial frame, so its buffer never grows beyond
/// `FRAME_HEADER_LEN + MAX_FRAME_LEN` plus the last chunk pushed.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: BytesMut,
}

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Returns the next complete frame body, `Ok(None)` if more bytes are
    /// needed, or an error if the next frame announces an oversized body.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, ProtocolError> {
        let Some(header) = self.buf.get(..FRAME_HEADER_LEN) else {
            return Ok(None);
        };
        let mut prefix = [0u8; FRAME_HEADER_LEN];
        prefix.copy_from_slice(header);
        let len = body_len(prefix)?;
        if self.buf.len() < FRAME_HEADER_LEN + len {
            return Ok(None);
        }
        self.buf.advance(FRAME_HEADER_LEN);
        Ok(Some(self.buf.split_to(len).freeze()))
    }

    /// Declares the end of input: fails with [`ProtocolError::Truncated`] if
    /// a partial frame is still buffered.
    pub fn finish(&self) -> Result<(), ProtocolError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let missing = match self.buf.get(..FRAME_HEADER_LEN) {
            None => FRAME_HEADER_LEN - self.buf.len(),
            Some(header) => {
                let mut prefix = [0u8; FRAME_HEADER_LEN];
                prefix.copy_from_slice(header);
                (FRAME_HEADER_LEN + body_len(prefix)?).saturating_sub(self.buf.len())
            }
        };
        Err(ProtocolError::Truncated { missing })
    }
}
