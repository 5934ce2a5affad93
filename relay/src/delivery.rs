//! The delivery stream: the one unidirectional stream the relay opens on a
//! connection and writes events to, in order.

use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::BytesMut;
use prost::Message;
use quinn::{Connection, SendStream, WriteError};
use tern_protocol::ProtocolError;
use tern_protocol::limits::MAX_FRAME_LEN;
use tern_protocol::wire::{Event, ServerFrame, SyncNeeded, event, server_frame};
use tern_transport::FrameIoError as FrameError;
use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::router::{Mailbox, Outbound};

/// Most bytes of queued events written to the delivery stream at once.
const DELIVERY_WRITE_BATCH: usize = 64 * 1024;

/// The connection's delivery stream, opened on first use (authentication
/// or an open provisioning mailbox, whichever comes first) and shared by
/// every writer so that the connection has exactly one.
pub struct Outlet {
    conn: Connection,
    stream: tokio::sync::Mutex<Option<SendStream>>,
}

impl Outlet {
    /// An outlet for `conn`; nothing is opened yet.
    pub fn new(conn: Connection) -> Self {
        Self {
            conn,
            stream: tokio::sync::Mutex::new(None),
        }
    }

    /// Writes encoded frames, opening the stream if needed.
    pub async fn write(&self, bytes: &[u8]) -> Result<(), FrameError> {
        let mut stream = self.stream.lock().await;
        if stream.is_none() {
            let opened = self
                .conn
                .open_uni()
                .await
                .map_err(|e| FrameError::Write(WriteError::ConnectionLost(e)))?;
            *stream = Some(opened);
        }
        if let Some(s) = stream.as_mut() {
            s.write_all(bytes).await?;
        }
        Ok(())
    }
}

/// Appends one encoded frame to a buffer, so queued events go out in one
/// write.
pub(crate) fn append_frame(buf: &mut BytesMut, msg: &ServerFrame) -> Result<(), ProtocolError> {
    let len = msg.encoded_len();
    if len > MAX_FRAME_LEN {
        return Err(ProtocolError::FrameTooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    // MAX_FRAME_LEN fits in u32.
    buf.extend_from_slice(&(len as u32).to_be_bytes());
    msg.encode_raw(buf);
    Ok(())
}

pub(crate) fn event_frame(kind: event::Kind) -> ServerFrame {
    ServerFrame {
        body: Some(server_frame::Body::Event(Event { kind: Some(kind) })),
    }
}

/// Puts one outbound item on the wire: stream events into the write
/// buffer, ephemeral events straight into a datagram (dropped if the peer
/// does not take datagrams).
fn render(
    conn: &Connection,
    mailbox: &Mailbox,
    out: Outbound,
    buf: &mut BytesMut,
    committed: &mut Vec<Instant>,
) -> Result<(), ProtocolError> {
    mailbox.taken(&out);
    let frame = match out {
        Outbound::Entries(entries) => {
            for entry in entries {
                committed.push(entry.committed_at);
                let delivery = entry.delivery_for(mailbox.device);
                append_frame(buf, &event_frame(event::Kind::Delivery(delivery)))?;
            }
            return Ok(());
        }
        Outbound::Event(e) => ServerFrame {
            body: Some(server_frame::Body::Event(*e)),
        },
        Outbound::Ephemeral(e) => {
            let _ = conn.send_datagram(e.encode_to_vec().into());
            return Ok(());
        }
    };
    append_frame(buf, &frame)
}

/// Drains the mailbox onto the delivery stream until the connection ends.
pub(crate) async fn deliver(
    outlet: &Outlet,
    mailbox: &Mailbox,
    mut rx: mpsc::Receiver<Outbound>,
    metrics: &Metrics,
) -> Result<(), FrameError> {
    let conn = &outlet.conn;
    let mut buf = BytesMut::new();
    let mut committed = Vec::new();
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(out) => render(conn, mailbox, out, &mut buf, &mut committed)?,
                None => return Ok(()),
            },
            () = mailbox.lagged() => {}
            _ = conn.closed() => return Ok(()),
        }
        if mailbox.is_revoked() {
            return Ok(());
        }
        while buf.len() < DELIVERY_WRITE_BATCH {
            let Ok(out) = rx.try_recv() else { break };
            render(conn, mailbox, out, &mut buf, &mut committed)?;
        }
        if mailbox.is_lagging() && rx.is_empty() {
            append_frame(
                &mut buf,
                &event_frame(event::Kind::SyncNeeded(SyncNeeded {})),
            )?;
            mailbox.clear_lagging();
            metrics.sync_needed.fetch_add(1, Ordering::Relaxed);
        }
        if !buf.is_empty() {
            outlet.write(&buf).await?;
            buf.clear();
            for at in committed.drain(..) {
                metrics.delivery_seconds.observe(at.elapsed().as_secs_f64());
            }
        }
    }
}
