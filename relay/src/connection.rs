//! One QUIC connection per device: the thin async shell around [`Relay`].
//!
//! Stream layout (docs/protocol.md): the first bidirectional stream is the
//! control stream (hello, challenge, authentication or registration); every
//! later bidirectional stream carries one request and its response; the
//! relay opens one unidirectional delivery stream after authentication.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use prost::Message;
use quinn::{Connection, RecvStream, SendStream, VarInt};
use tern_protocol::limits::{MAX_FRAME_LEN, PROTOCOL_VERSION};
use tern_protocol::wire::{
    AuthOk, Event, Request, ServerFrame, ServerHello, SyncNeeded, client_frame, ephemeral_event,
    event, request, response, server_frame,
};
use tern_protocol::{ProtocolError, decode_client_frame, expect_hello};
use tern_transport::{FrameIoError as FrameError, read_frame, write_frame};
use tokio::sync::mpsc;

use crate::auth::AuthBinding;
use crate::error::RelayError;
use crate::metrics::Metrics;
use crate::router::{Mailbox, Outbound};
use crate::service::{Relay, Session, now_ms};
use crate::store::DeviceAddr;

/// Application close code: authentication failed or timed out.
pub const CLOSE_UNAUTHENTICATED: u32 = 1;
/// Application close code: protocol violation on the control stream.
pub const CLOSE_PROTOCOL: u32 = 2;
/// Application close code: the relay is shutting down.
pub const CLOSE_SHUTDOWN: u32 = 3;

/// Most bytes of queued events written to the delivery stream at once.
const DELIVERY_WRITE_BATCH: usize = 64 * 1024;
/// How long an error response may take to reach the peer before closing.
const ERROR_FLUSH: Duration = Duration::from_secs(2);

fn response_frame(kind: response::Kind) -> ServerFrame {
    ServerFrame {
        body: Some(server_frame::Body::Response(
            tern_protocol::wire::Response { kind: Some(kind) },
        )),
    }
}

fn error_frame(e: &RelayError) -> ServerFrame {
    response_frame(response::Kind::Error(e.to_wire()))
}

/// Serves one incoming connection until it closes.
pub async fn serve(relay: Arc<Relay>, incoming: quinn::Incoming) {
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "handshake failed");
            return;
        }
    };
    let remote = conn.remote_address();
    tracing::debug!(%remote, "connection open");
    run(&relay, &conn).await;
    tracing::debug!(%remote, "connection closed");
}

async fn run(relay: &Arc<Relay>, conn: &Connection) {
    let auth_timeout = Duration::from_secs(relay.config.limits.auth_timeout_secs);
    let session = Arc::new(OnceLock::new());
    let control = match tokio::time::timeout(auth_timeout, conn.accept_bi()).await {
        Ok(Ok(streams)) => streams,
        Ok(Err(_)) => return,
        Err(_) => {
            conn.close(
                VarInt::from_u32(CLOSE_UNAUTHENTICATED),
                b"no control stream",
            );
            return;
        }
    };
    let requests = tokio::spawn(accept_requests(
        relay.clone(),
        conn.clone(),
        session.clone(),
    ));
    let (mut ctl_send, mut ctl_recv) = control;
    let handshake = handshake(relay, conn, &mut ctl_send, &mut ctl_recv);
    let device = match tokio::time::timeout(auth_timeout, handshake).await {
        Ok(Ok(device)) => device,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "authentication failed");
            if write_frame(&mut ctl_send, &error_frame(&e)).await.is_ok() {
                let _ = ctl_send.finish();
                let _ = tokio::time::timeout(ERROR_FLUSH, ctl_send.stopped()).await;
            }
            conn.close(VarInt::from_u32(CLOSE_UNAUTHENTICATED), b"unauthenticated");
            requests.abort();
            return;
        }
        Err(_) => {
            conn.close(
                VarInt::from_u32(CLOSE_UNAUTHENTICATED),
                b"authentication timeout",
            );
            requests.abort();
            return;
        }
    };
    let (mailbox, rx, came_online) = relay
        .router
        .register(device, relay.config.limits.delivery_queue_len);
    let _ = session.set(Session {
        device,
        mailbox: mailbox.clone(),
    });
    relay.metrics.connections.fetch_add(1, Ordering::Relaxed);
    if came_online {
        relay.presence.publish(device.user, true);
    }
    tracing::debug!(user = %device.user, device = device.device, "device online");
    let datagrams = tokio::spawn(read_datagrams(relay.clone(), conn.clone(), session.clone()));
    if let Err(e) = deliver(conn, &mailbox, rx, &relay.metrics).await {
        tracing::debug!(error = %e, "delivery stream ended");
    }
    relay.presence.forget(&mailbox);
    if relay.router.unregister(&mailbox) {
        relay.presence.publish(device.user, false);
    }
    relay.metrics.connections.fetch_sub(1, Ordering::Relaxed);
    datagrams.abort();
    requests.abort();
    drop((ctl_send, ctl_recv));
}

fn exporter(conn: &Connection) -> Result<[u8; 32], RelayError> {
    tern_transport::auth_exporter(conn)
        .map_err(|_| RelayError::Unavailable("TLS exporter unavailable"))
}

/// Appends one encoded frame to a buffer, so queued events go out in one
/// write.
fn append_frame(buf: &mut BytesMut, msg: &ServerFrame) -> Result<(), ProtocolError> {
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

async fn next_frame(recv: &mut RecvStream) -> Result<bytes::Bytes, RelayError> {
    match read_frame(recv).await {
        Ok(Some(body)) => Ok(body),
        Ok(None) => Err(RelayError::BadRequest("control stream ended")),
        Err(FrameError::Protocol(e)) => Err(e.into()),
        Err(_) => Err(RelayError::Unavailable("control stream failed")),
    }
}

/// Hello, challenge, then authentication or registration.
async fn handshake(
    relay: &Relay,
    conn: &Connection,
    send: &mut SendStream,
    recv: &mut RecvStream,
) -> Result<DeviceAddr, RelayError> {
    expect_hello(next_frame(recv).await?)?;
    let mut challenge = [0u8; 32];
    getrandom::fill(&mut challenge).map_err(|_| RelayError::Unavailable("no randomness"))?;
    let binding = AuthBinding {
        challenge,
        exporter: exporter(conn)?,
    };
    let hello = ServerFrame {
        body: Some(server_frame::Body::Hello(ServerHello {
            protocol_version: PROTOCOL_VERSION,
            challenge: challenge.to_vec().into(),
            server_time_ms: now_ms(),
        })),
    };
    write_frame(send, &hello)
        .await
        .map_err(|_| RelayError::Unavailable("control stream failed"))?;
    let frame = decode_client_frame(next_frame(recv).await?)?;
    let (device, reply) = match frame.body {
        Some(client_frame::Body::Authenticate(a)) => {
            let device = relay.authenticate(a, &binding).await?;
            let counts = relay.prekey_counts(device).await?;
            let ok = AuthOk {
                server_time_ms: now_ms(),
                prekeys_low: relay.is_low(counts),
            };
            let frame = ServerFrame {
                body: Some(server_frame::Body::AuthOk(ok)),
            };
            (device, frame)
        }
        Some(client_frame::Body::Request(req)) => match req.kind {
            Some(request::Kind::RegisterAccount(r)) => {
                let (device, kind) = relay.register_account(r, &binding).await?;
                (device, response_frame(kind))
            }
            Some(request::Kind::RegisterDevice(r)) => {
                let (device, kind) = relay.register_device(r, &binding).await?;
                (device, response_frame(kind))
            }
            _ => return Err(RelayError::Unauthenticated("authenticate first")),
        },
        _ => {
            return Err(ProtocolError::Unexpected {
                expected: "Authenticate or registration",
            }
            .into());
        }
    };
    write_frame(send, &reply)
        .await
        .map_err(|_| RelayError::Unavailable("control stream failed"))?;
    Ok(device)
}

/// Datagrams a connection may send per second; more are dropped.
const DATAGRAMS_PER_SECOND: u32 = 20;

/// Reads ephemeral events (typing) sent as datagrams, rate-limited.
async fn read_datagrams(relay: Arc<Relay>, conn: Connection, session: Arc<OnceLock<Session>>) {
    let mut window = Instant::now();
    let mut count = 0;
    while let Ok(datagram) = conn.read_datagram().await {
        if window.elapsed() >= Duration::from_secs(1) {
            window = Instant::now();
            count = 0;
        }
        count += 1;
        let Some(session) = session.get() else {
            continue;
        };
        if count > DATAGRAMS_PER_SECOND {
            continue;
        }
        let event = match tern_protocol::decode_datagram(datagram) {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!(error = %e, "bad datagram");
                continue;
            }
        };
        if let Some(ephemeral_event::Kind::Typing(t)) = event.kind
            && let Err(e) = relay.typing(session, t).await
        {
            tracing::debug!(error = %e, "typing event refused");
        }
    }
}

async fn accept_requests(relay: Arc<Relay>, conn: Connection, session: Arc<OnceLock<Session>>) {
    while let Ok((send, recv)) = conn.accept_bi().await {
        let relay = relay.clone();
        let session = session.clone();
        tokio::spawn(async move {
            if let Err(e) = request_stream(&relay, session.get(), send, recv).await {
                tracing::debug!(error = %e, "request stream failed");
            }
        });
    }
}

/// One request, one response, then the stream is finished.
async fn request_stream(
    relay: &Relay,
    session: Option<&Session>,
    mut send: SendStream,
    mut recv: RecvStream,
) -> Result<(), FrameError> {
    let result = match read_frame(&mut recv).await {
        Ok(None) => return Ok(()),
        Ok(Some(body)) => match decode_client_frame(body) {
            Ok(frame) => match blob_request(relay, session, frame.body, &mut send, &mut recv).await
            {
                Ok(None) => {
                    let _ = send.finish();
                    return Ok(());
                }
                Ok(Some(body)) => dispatch(relay, session, body).await,
                Err(e) => Err(e),
            },
            Err(e) => Err(e.into()),
        },
        Err(FrameError::Protocol(e)) => {
            let _ = recv.stop(VarInt::from_u32(0));
            Err(e.into())
        }
        Err(e) => return Err(e),
    };
    let frame = match result {
        Ok(kind) => response_frame(kind),
        Err(e) => {
            if matches!(e.code(), tern_protocol::wire::ErrorCode::Internal) {
                tracing::warn!(error = %e, "request failed");
            } else {
                tracing::debug!(error = %e, "request rejected");
            }
            error_frame(&e)
        }
    };
    write_frame(&mut send, &frame).await?;
    let _ = send.finish();
    Ok(())
}

/// Runs blob transfers, which use their stream beyond one request and one
/// response; hands any other frame back (`Ok(Some)`).
async fn blob_request(
    relay: &Relay,
    session: Option<&Session>,
    body: Option<client_frame::Body>,
    send: &mut SendStream,
    recv: &mut RecvStream,
) -> Result<Option<Option<client_frame::Body>>, RelayError> {
    let Some(client_frame::Body::Request(Request { kind: Some(kind) })) = body else {
        return Ok(Some(body));
    };
    match (session, kind) {
        (Some(_), request::Kind::BlobUploadStart(start)) => {
            relay.blobs.upload(start, send, recv).await.map(|()| None)
        }
        (Some(_), request::Kind::BlobDownload(d)) => {
            relay.blobs.download(d, send).await.map(|()| None)
        }
        (_, kind) => Ok(Some(Some(client_frame::Body::Request(Request {
            kind: Some(kind),
        })))),
    }
}

async fn dispatch(
    relay: &Relay,
    session: Option<&Session>,
    body: Option<client_frame::Body>,
) -> Result<response::Kind, RelayError> {
    let Some(client_frame::Body::Request(req)) = body else {
        return Err(RelayError::BadRequest("expected a Request frame"));
    };
    let Some(session) = session else {
        return Err(RelayError::Unauthenticated(
            "authenticate on the control stream first",
        ));
    };
    relay.handle(session, req).await
}

fn event_frame(kind: event::Kind) -> ServerFrame {
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
    let frame = match out {
        Outbound::Entry(entry) => {
            committed.push(entry.committed_at);
            event_frame(event::Kind::Delivery(entry.delivery_for(mailbox.device)))
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
async fn deliver(
    conn: &Connection,
    mailbox: &Mailbox,
    mut rx: mpsc::Receiver<Outbound>,
    metrics: &Metrics,
) -> Result<(), FrameError> {
    let mut stream = match conn.open_uni().await {
        Ok(s) => s,
        Err(_) => return Ok(()),
    };
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
            stream.write_all(&buf).await?;
            buf.clear();
            for at in committed.drain(..) {
                metrics.delivery_seconds.observe(at.elapsed().as_secs_f64());
            }
        }
    }
}
