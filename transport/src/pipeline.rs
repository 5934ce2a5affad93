//! Pipelined requests: many requests in flight on one long-lived request
//! stream, each matched to its response by `request_id`
//! (docs/protocol.md §4).
//!
//! A stream per request costs a stream open, a FIN each way and the
//! relay's per-stream bookkeeping on every request; on one stream, requests
//! issued together also share QUIC packets. A relay announces how many
//! requests it works on at once (`ServerHello.max_pipelined_requests`); the
//! pipeline never has more in flight.
//!
//! Two tasks own the stream halves, so a caller that stops waiting can
//! never leave half a frame on the wire: a writer sends queued frames in
//! order (several at once when they queue up), a reader hands each response
//! to the request waiting for its id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{Bytes, BytesMut};
use quinn::{Connection, SendStream};
use tern_protocol::wire::{ClientFrame, Response, request, server_frame};
use tern_protocol::{ProtocolError, decode_server_frame, encode_frame};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::frames::{FrameIoError, FrameReader};

/// Why a pipelined request got no response.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The request could not be encoded (too large for a frame).
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The request stream could not be opened.
    #[error("opening the request stream failed: {0}")]
    Open(#[from] quinn::ConnectionError),
    /// The request stream ended or failed before the response arrived; the
    /// request may or may not have been carried out.
    #[error("the request stream closed")]
    Closed,
}

/// Requests waiting for their responses, by id.
#[derive(Default)]
struct Waiting {
    by_id: HashMap<u64, oneshot::Sender<Response>>,
    /// Set when the reader stopped: no response will arrive any more.
    closed: bool,
}

/// One request stream carrying many requests. Dropping it finishes the
/// stream after the queued requests are written.
pub struct Pipeline {
    frames: mpsc::UnboundedSender<Bytes>,
    waiting: Arc<Mutex<Waiting>>,
    window: Semaphore,
    next_id: AtomicU64,
    reader: tokio::task::JoinHandle<()>,
}

impl Pipeline {
    /// Opens a request stream on `conn` with at most `max_in_flight`
    /// requests outstanding (the relay's `max_pipelined_requests`, at
    /// least 1).
    pub async fn open(conn: &Connection, max_in_flight: u32) -> Result<Self, PipelineError> {
        let (send, recv) = conn.open_bi().await?;
        let (frames, queued) = mpsc::unbounded_channel();
        let waiting = Arc::new(Mutex::new(Waiting::default()));
        tokio::spawn(write_frames(send, queued));
        let reader = tokio::spawn(read_responses(FrameReader::new(recv), waiting.clone()));
        Ok(Self {
            frames,
            waiting,
            window: Semaphore::new(max_in_flight.max(1) as usize),
            next_id: AtomicU64::new(1),
            reader,
        })
    }

    /// Whether the stream still carries requests. A closed pipeline answers
    /// every request with [`PipelineError::Closed`]; open a new one.
    pub fn is_open(&self) -> bool {
        !lock(&self.waiting).closed && !self.frames.is_closed()
    }

    /// Sends a request and waits for the relay's response to it.
    pub async fn request(&self, kind: request::Kind) -> Result<Response, PipelineError> {
        let _slot = self
            .window
            .acquire()
            .await
            .map_err(|_| PipelineError::Closed)?;
        let request_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = encode_frame(&ClientFrame::request(kind, request_id))?;
        let (tx, rx) = oneshot::channel();
        {
            let mut waiting = lock(&self.waiting);
            if waiting.closed {
                return Err(PipelineError::Closed);
            }
            waiting.by_id.insert(request_id, tx);
        }
        let answer = Answer {
            waiting: &self.waiting,
            request_id,
        };
        self.frames.send(frame).map_err(|_| PipelineError::Closed)?;
        let response = rx.await.map_err(|_| PipelineError::Closed);
        drop(answer);
        response
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Removes a request's entry if its caller stops waiting before the
/// response arrives, so abandoned requests do not pile up.
struct Answer<'a> {
    waiting: &'a Mutex<Waiting>,
    request_id: u64,
}

impl Drop for Answer<'_> {
    fn drop(&mut self) {
        lock(self.waiting).by_id.remove(&self.request_id);
    }
}

fn lock(waiting: &Mutex<Waiting>) -> std::sync::MutexGuard<'_, Waiting> {
    waiting.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Writes queued frames in order, coalescing whatever queued up meanwhile
/// into one write; finishes the stream when the pipeline is dropped.
async fn write_frames(mut send: SendStream, mut queued: mpsc::UnboundedReceiver<Bytes>) {
    let mut batch = BytesMut::new();
    while let Some(frame) = queued.recv().await {
        batch.extend_from_slice(&frame);
        while let Ok(more) = queued.try_recv() {
            batch.extend_from_slice(&more);
        }
        if send.write_all(&batch.split()).await.is_err() {
            return;
        }
    }
    let _ = send.finish();
}

/// Hands each response to the request waiting for its id. The end of the
/// stream, a read error, a frame that is not a response, or a response to
/// no request (id 0: the relay could not read a frame) closes the pipeline:
/// every waiting request fails. A response whose caller stopped waiting
/// (see `Answer`) is dropped.
async fn read_responses(mut frames: FrameReader, waiting: Arc<Mutex<Waiting>>) {
    while let Ok(Some(response)) = next_response(&mut frames).await {
        if response.request_id == 0 {
            break;
        }
        let found = lock(&waiting).by_id.remove(&response.request_id);
        if let Some(tx) = found {
            let _ = tx.send(response);
        }
    }
    let mut waiting = lock(&waiting);
    waiting.closed = true;
    waiting.by_id.clear();
}

async fn next_response(frames: &mut FrameReader) -> Result<Option<Response>, FrameIoError> {
    let Some(body) = frames.next().await? else {
        return Ok(None);
    };
    match decode_server_frame(body)?.body {
        Some(server_frame::Body::Response(response)) => Ok(Some(response)),
        _ => Err(ProtocolError::Unexpected {
            expected: "Response",
        }
        .into()),
    }
}
