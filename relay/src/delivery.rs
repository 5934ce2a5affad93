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
use crate::router::{CommittedEntry, Mailbox, Outbound};
use crate::store::DeviceAddr;

/// Most bytes of queued events written to the delivery stream at once.
const DELIVERY_WRITE_BATCH: usize = 64 * 1024;

/// The connection's delivery stream, opened on first use (authentication
/// or an open provisioning mailbox, whichever comes first) and shared by
/// every writer so that the connection has exactly one.
pub(crate) struct Outlet {
    conn: Connection,
    stream: tokio::sync::Mutex<Option<SendStream>>,
}

impl Outlet {
    /// An outlet for `conn`; nothing is opened yet.
    pub(crate) fn new(conn: Connection) -> Self {
        Self {
            conn,
            stream: tokio::sync::Mutex::new(None),
        }
    }

    /// Writes encoded frames, opening the stream if needed.
    pub(crate) async fn write(&self, bytes: &[u8]) -> Result<(), FrameError> {
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

/// Appends the device's view of a committed entry. A device with its own
/// ciphertext gets a frame of its own; every other device gets the entry's
/// shared frame, encoded once for all of them.
fn append_entry(
    buf: &mut BytesMut,
    entry: &CommittedEntry,
    device: DeviceAddr,
) -> Result<(), ProtocolError> {
    let delivery =
        |entry: &CommittedEntry| event_frame(event::Kind::Delivery(entry.delivery_for(device)));
    if entry.ciphertext_for(device).is_some() {
        return append_frame(buf, &delivery(entry));
    }
    let shared = match entry.shared_frame.get() {
        Some(frame) => frame,
        None => {
            let mut frame = BytesMut::new();
            append_frame(&mut frame, &delivery(entry))?;
            entry.shared_frame.get_or_init(|| frame.freeze())
        }
    };
    buf.extend_from_slice(shared);
    Ok(())
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
                append_entry(buf, &entry, mailbox.device)?;
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

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tern_protocol::wire::{DeviceCiphertext, EntryKind};
    use tern_protocol::{ChatId, FrameDecoder, UserId, decode_server_frame};

    use super::*;

    fn delivery(bytes: &[u8]) -> tern_protocol::wire::Delivery {
        let mut decoder = FrameDecoder::new();
        decoder.push(bytes);
        let body = decoder.next_frame().unwrap().unwrap();
        assert!(decoder.next_frame().unwrap().is_none(), "exactly one frame");
        match decode_server_frame(body).unwrap().body {
            Some(server_frame::Body::Event(Event {
                kind: Some(event::Kind::Delivery(d)),
            })) => d,
            other => panic!("not a delivery: {other:?}"),
        }
    }

    #[test]
    fn devices_without_their_own_ciphertext_share_one_encoded_frame() {
        let entry = CommittedEntry {
            chat_id: ChatId([9; 16]),
            seq: 4,
            kind: EntryKind::Message,
            sender: DeviceAddr::test(1, 1),
            server_time_ms: 5,
            client_message_id: None,
            device_ciphertexts: vec![DeviceCiphertext {
                user_id: Bytes::copy_from_slice(&[3; 16]),
                device_id: 1,
                ciphertext: Bytes::from_static(b"own"),
            }],
            common_ciphertext: Bytes::from_static(b"common"),
            added: Vec::new(),
            removed: Vec::new(),
            promoted: Vec::new(),
            recipients: vec![UserId([2; 16]), UserId([3; 16])],
            committed_at: Instant::now(),
            shared_frame: std::sync::OnceLock::new(),
        };
        let render = |d: DeviceAddr| {
            let mut buf = BytesMut::new();
            append_entry(&mut buf, &entry, d).unwrap();
            buf
        };
        let (first, second, own) = (
            render(DeviceAddr::test(2, 1)),
            render(DeviceAddr::test(4, 1)),
            render(DeviceAddr::test(3, 1)),
        );
        assert_eq!(first, second);
        assert_eq!(entry.shared_frame.get().map(|b| &b[..]), Some(&first[..]));
        let shared = delivery(&first);
        assert_eq!(
            (shared.seq, &shared.common_ciphertext[..]),
            (4, &b"common"[..])
        );
        assert!(shared.ciphertext.is_empty());
        let own = delivery(&own);
        assert_eq!(&own.ciphertext[..], b"own");
        assert_eq!(&own.common_ciphertext[..], b"common");
    }
}
