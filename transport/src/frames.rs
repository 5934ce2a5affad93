//! Frames on quinn streams.
//!
//! A reader never allocates for a frame more than the bytes that have
//! actually arrived (QUIC flow control bounds those), so a peer announcing a
//! 2 MiB frame and sending nothing costs nothing. [`FrameLimits`] adds what
//! a server needs against hostile peers: a smaller maximum frame (before
//! authentication), a deadline for finishing a frame once it started, and a
//! [`ByteBudget`] charged for every byte of body buffer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use quinn::{ReadError, RecvStream, SendStream, WriteError};
use tern_protocol::ProtocolError;
use tern_protocol::frame::body_len;
use tern_protocol::limits::{FRAME_HEADER_LEN, MAX_FRAME_LEN};
use tokio::time::Instant;

use crate::budget::{ByteBudget, Exhausted, Reservation};

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
    /// Buffering the frame's body would exceed a [`ByteBudget`].
    #[error(transparent)]
    Budget(#[from] Exhausted),
    /// The frame was not complete within [`FrameLimits`]' deadline.
    #[error("frame not completed within {0:?}")]
    Deadline(Duration),
}

/// What a reader accepts; shared by the streams of one connection, so a
/// server can relax them once the peer has authenticated.
#[derive(Debug)]
pub struct FrameLimits {
    max_frame_len: AtomicUsize,
    deadline: Option<Duration>,
    budget: Mutex<Option<Arc<ByteBudget>>>,
}

impl Default for FrameLimits {
    /// Frames up to [`MAX_FRAME_LEN`], no deadline, no budget (clients).
    fn default() -> Self {
        Self::new(MAX_FRAME_LEN, None, None)
    }
}

impl FrameLimits {
    /// Frames of at most `max_frame_len` bytes (capped at
    /// [`MAX_FRAME_LEN`]), each finished within `deadline` of its first
    /// byte, their bodies charged to `budget`.
    pub fn new(
        max_frame_len: usize,
        deadline: Option<Duration>,
        budget: Option<Arc<ByteBudget>>,
    ) -> Self {
        Self {
            max_frame_len: AtomicUsize::new(max_frame_len.min(MAX_FRAME_LEN)),
            deadline,
            budget: Mutex::new(budget),
        }
    }

    /// Changes the largest frame accepted from now on.
    pub fn set_max_frame_len(&self, len: usize) {
        self.max_frame_len
            .store(len.min(MAX_FRAME_LEN), Ordering::Relaxed);
    }

    /// The largest frame body accepted.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len.load(Ordering::Relaxed)
    }

    /// Charges the bodies of frames started from now on to `budget`
    /// (frames in progress keep their charge where it is).
    pub fn set_budget(&self, budget: Arc<ByteBudget>) {
        *self.budget.lock().unwrap_or_else(PoisonError::into_inner) = Some(budget);
    }

    /// The budget bodies are charged to, if any.
    pub fn budget(&self) -> Option<Arc<ByteBudget>> {
        self.budget
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn check_len(&self, len: usize) -> Result<(), ProtocolError> {
        let max = self.max_frame_len();
        if len > max {
            return Err(ProtocolError::FrameTooLarge { len, max });
        }
        Ok(())
    }
}

/// A frame body that owns its budget charge: the charge is returned when
/// the last `Bytes` sliced from it is dropped.
struct ChargedBody {
    data: Vec<u8>,
    _charge: Reservation,
}

impl AsRef<[u8]> for ChargedBody {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

/// Smallest body buffer allocated at a time.
const MIN_BODY_ALLOCATION: usize = 16 * 1024;

/// Sans-IO frame assembly: header bytes, then body bytes, then a finished
/// body. It takes at most what the current frame still needs
/// ([`want`](Self::want)), so nothing of the next frame is ever buffered,
/// and it charges its body buffer to the [`FrameLimits`]' budget as it
/// grows. The async readers below feed it from QUIC streams; the fuzz
/// target `transport_frame_assembler` feeds it arbitrary bytes.
#[derive(Default)]
pub struct FrameAssembler {
    header: [u8; FRAME_HEADER_LEN],
    header_len: usize,
    body_len: Option<usize>,
    body: Vec<u8>,
    charge: Option<Reservation>,
}

impl FrameAssembler {
    /// An assembler waiting for a frame header.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes the current frame still needs (never 0).
    pub fn want(&self) -> usize {
        match self.body_len {
            None => FRAME_HEADER_LEN - self.header_len,
            Some(len) => len - self.body.len(),
        }
    }

    /// Whether a frame has started (some of its bytes arrived).
    pub fn started(&self) -> bool {
        self.header_len > 0
    }

    /// Consumes from the front of `data` what the current frame needs and
    /// returns its body once complete (the assembler then waits for the
    /// next header; what is left in `data` belongs to that frame). Fails
    /// when the header announces more than `limits` allow or the body would
    /// exceed the budget; the assembler is then unusable.
    pub fn push(
        &mut self,
        data: &mut &[u8],
        limits: &FrameLimits,
    ) -> Result<Option<Bytes>, FrameIoError> {
        while !data.is_empty() {
            let (chunk, rest) = data.split_at(self.want().min(data.len()));
            *data = rest;
            match self.body_len {
                None => self.push_header(chunk, limits)?,
                Some(len) => self.push_body(chunk, len, limits)?,
            }
            if self.body_len.is_some_and(|len| self.body.len() == len) {
                return Ok(Some(self.take()));
            }
        }
        Ok(None)
    }

    /// Declares the end of the stream: fails with
    /// [`ProtocolError::Truncated`] inside a frame.
    pub fn finish(&self) -> Result<(), ProtocolError> {
        if !self.started() {
            return Ok(());
        }
        Err(ProtocolError::Truncated {
            missing: self.want(),
        })
    }

    fn push_header(&mut self, chunk: &[u8], limits: &FrameLimits) -> Result<(), FrameIoError> {
        let end = self.header_len + chunk.len();
        self.header[self.header_len..end].copy_from_slice(chunk);
        self.header_len = end;
        if end == FRAME_HEADER_LEN {
            let len = body_len(self.header)?;
            limits.check_len(len)?;
            self.body_len = Some(len);
        }
        Ok(())
    }

    fn push_body(
        &mut self,
        chunk: &[u8],
        len: usize,
        limits: &FrameLimits,
    ) -> Result<(), FrameIoError> {
        let needed = self.body.len() + chunk.len();
        if needed > self.body.capacity() {
            let grown = needed
                .max(self.body.capacity() * 2)
                .max(MIN_BODY_ALLOCATION)
                .min(len);
            if self.charge.is_none() {
                self.charge = limits.budget().map(|b| b.reservation());
            }
            if let Some(charge) = &mut self.charge {
                charge.grow(grown - self.body.capacity())?;
            }
            self.body.reserve_exact(grown - self.body.len());
        }
        self.body.extend_from_slice(chunk);
        Ok(())
    }

    /// The finished body; the assembler starts over for the next frame.
    fn take(&mut self) -> Bytes {
        let done = std::mem::take(self);
        match done.charge {
            Some(charge) => Bytes::from_owner(ChargedBody {
                data: done.body,
                _charge: charge,
            }),
            None => Bytes::from(done.body),
        }
    }
}

/// A frame being read from a stream: the assembler and the deadline set by
/// its first byte. Every field lives here, so a read cancelled between
/// chunks loses nothing.
#[derive(Default)]
struct PartialFrame {
    assembler: FrameAssembler,
    deadline: Option<Instant>,
}

impl PartialFrame {
    /// Reads until the frame is complete; `Ok(None)` at a clean end of
    /// stream before any byte of it.
    async fn read(
        &mut self,
        recv: &mut RecvStream,
        limits: &FrameLimits,
    ) -> Result<Option<Bytes>, FrameIoError> {
        loop {
            let want = self.assembler.want();
            let Some(chunk) = self.next_chunk(recv, want, limits).await? else {
                self.assembler.finish()?;
                return Ok(None);
            };
            if self.deadline.is_none()
                && let Some(d) = limits.deadline
            {
                self.deadline = Some(Instant::now() + d);
            }
            if let Some(body) = self.assembler.push(&mut &chunk[..], limits)? {
                self.deadline = None;
                return Ok(Some(body));
            }
        }
    }

    async fn next_chunk(
        &self,
        recv: &mut RecvStream,
        want: usize,
        limits: &FrameLimits,
    ) -> Result<Option<Bytes>, FrameIoError> {
        let read = recv.read_chunk(want, true);
        let chunk = match (self.deadline, limits.deadline) {
            (Some(at), Some(d)) => tokio::time::timeout_at(at, read)
                .await
                .map_err(|_| FrameIoError::Deadline(d))??,
            _ => read.await?,
        };
        Ok(chunk.map(|c| c.bytes))
    }
}

/// Reads the next frame body from `recv`.
///
/// Returns `Ok(None)` when the peer finished the stream cleanly at a frame
/// boundary, and [`ProtocolError::Truncated`] when it finished inside one.
pub async fn read_frame(recv: &mut RecvStream) -> Result<Option<Bytes>, FrameIoError> {
    read_frame_with(recv, &FrameLimits::default()).await
}

/// [`read_frame`] under `limits`. Not cancel-safe (a cancelled call loses
/// the partial frame); use a [`FrameReader`] inside `select!`.
pub async fn read_frame_with(
    recv: &mut RecvStream,
    limits: &FrameLimits,
) -> Result<Option<Bytes>, FrameIoError> {
    PartialFrame::default().read(recv, limits).await
}

/// Reads the frames of a stream that carries many of them (the delivery
/// stream, a pipelined request stream).
///
/// Unlike [`read_frame`], [`next`](Self::next) is cancel-safe: bytes leave
/// the QUIC stream only into the reader's own buffer, so dropping a pending
/// `next()` (in a `select!`) loses nothing. The buffer holds at most the
/// current partial frame.
pub struct FrameReader {
    recv: RecvStream,
    frame: PartialFrame,
    limits: Arc<FrameLimits>,
}

impl FrameReader {
    /// A reader over `recv` with the default limits.
    pub fn new(recv: RecvStream) -> Self {
        Self::with_limits(recv, Arc::new(FrameLimits::default()))
    }

    /// A reader over `recv` under `limits`.
    pub fn with_limits(recv: RecvStream, limits: Arc<FrameLimits>) -> Self {
        Self {
            recv,
            frame: PartialFrame::default(),
            limits,
        }
    }

    /// The next frame body; `Ok(None)` when the peer finished the stream at
    /// a frame boundary.
    pub async fn next(&mut self) -> Result<Option<Bytes>, FrameIoError> {
        self.frame.read(&mut self.recv, &self.limits).await
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

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(bodies: &[&[u8]]) -> Vec<u8> {
        bodies
            .iter()
            .flat_map(|b| {
                (b.len() as u32)
                    .to_be_bytes()
                    .into_iter()
                    .chain(b.iter().copied())
            })
            .collect()
    }

    #[test]
    fn frames_come_out_whole_however_the_bytes_are_split() {
        let stream = framed(&[b"one", b"", b"three"]);
        for piece in 1..=stream.len() {
            let mut assembler = FrameAssembler::new();
            let mut out = Vec::new();
            for chunk in stream.chunks(piece) {
                let mut data = chunk;
                while let Some(body) = assembler.push(&mut data, &FrameLimits::default()).unwrap() {
                    out.push(body);
                }
            }
            assert_eq!(out, [&b"one"[..], b"", b"three"], "pieces of {piece}");
            assert!(assembler.finish().is_ok());
        }
    }

    #[test]
    fn limits_and_truncation_are_typed_errors() {
        let small = FrameLimits::new(4, None, None);
        let mut data = &framed(&[b"12345"])[..];
        assert!(matches!(
            FrameAssembler::new().push(&mut data, &small),
            Err(FrameIoError::Protocol(ProtocolError::FrameTooLarge {
                len: 5,
                max: 4
            }))
        ));
        let mut assembler = FrameAssembler::new();
        assembler
            .push(&mut &framed(&[b"12345"])[..6], &FrameLimits::default())
            .unwrap();
        assert!(matches!(
            assembler.finish(),
            Err(ProtocolError::Truncated { missing: 3 })
        ));
    }

    #[test]
    fn bodies_hold_their_budget_charge_until_dropped() {
        let budget = ByteBudget::new(100);
        let limits = FrameLimits::new(MAX_FRAME_LEN, None, Some(budget.clone()));
        let mut data = &framed(&[&[7; 60], &[8; 60]])[..];
        let mut assembler = FrameAssembler::new();
        let first = assembler.push(&mut data, &limits).unwrap().unwrap();
        assert_eq!(budget.used(), 60);
        assert!(matches!(
            assembler.push(&mut data, &limits),
            Err(FrameIoError::Budget(Exhausted::Own))
        ));
        drop(first);
        assert_eq!(budget.used(), 0);
    }
}
