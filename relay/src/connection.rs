//! One QUIC connection per device: the thin async shell around [`Relay`].
//!
//! Stream layout (docs/protocol.md): the first bidirectional stream is the
//! control stream (hello, challenge, authentication or registration); every
//! later bidirectional stream carries requests and their responses (one, or
//! several pipelined); the relay opens one unidirectional delivery stream
//! after authentication.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use quinn::{Connection, RecvStream, SendStream, VarInt};
use tern_protocol::limits::PROTOCOL_VERSION;
use tern_protocol::wire::{
    AuthOk, ClientFrame, Empty, ProvisioningAddress, Request, ServerFrame, ServerHello,
    client_frame, ephemeral_event, request, response, server_frame,
};
use tern_protocol::{ProtocolError, decode_client_frame, decode_client_request, expect_hello};
use tern_transport::{
    FrameIoError as FrameError, FrameLimits, FrameReader, read_frame_with, write_frame,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::AuthBinding;
use crate::delivery::{Outlet, deliver};
use crate::error::RelayError;
use crate::intake;
use crate::provisioning;
use crate::service::{Relay, Session, now_ms};
use crate::store::DeviceAddr;

/// Application close code: authentication failed or timed out.
pub(crate) const CLOSE_UNAUTHENTICATED: u32 = 1;
/// Application close code: the relay is shutting down.
pub(crate) const CLOSE_SHUTDOWN: u32 = 3;
/// Application close code: the device was removed from its account.
pub(crate) const CLOSE_REVOKED: u32 = 4;

/// What every stream of one connection shares.
struct ConnCtx {
    relay: Arc<Relay>,
    conn: Connection,
    outlet: Arc<Outlet>,
    session: OnceLock<Session>,
    provisioning: Mutex<Option<provisioning::Mailbox>>,
    /// What its streams may make the relay read and buffer (small until it
    /// authenticates).
    frames: Arc<FrameLimits>,
    /// Requests of this connection being worked on, over all its streams
    /// (`limits.max_streams_per_connection`): pipelining multiplies what
    /// one stream may have in flight, not what a connection may.
    budget: Arc<Semaphore>,
}

impl ConnCtx {
    fn provisioning(&self) -> std::sync::MutexGuard<'_, Option<provisioning::Mailbox>> {
        self.provisioning
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Opens this connection's provisioning mailbox (once) and returns its
    /// address.
    fn open_provisioning(&self) -> Result<response::Kind, RelayError> {
        let mut slot = self.provisioning();
        if slot.as_ref().is_none_or(provisioning::Mailbox::expired) {
            let ttl = Duration::from_secs(self.relay.config.limits.provisioning_ttl_secs);
            *slot = Some(self.relay.provisioning.open(self.outlet.clone(), ttl)?);
        }
        let address = slot
            .as_ref()
            .map(|m| m.address.to_vec())
            .unwrap_or_default();
        Ok(response::Kind::ProvisioningAddress(ProvisioningAddress {
            address: address.into(),
        }))
    }
}
/// How long an error response may take to reach the peer before closing.
const ERROR_FLUSH: Duration = Duration::from_secs(2);

fn error_frame(e: &RelayError, request_id: u64) -> ServerFrame {
    ServerFrame::response(response::Kind::Error(e.to_wire()), request_id)
}

/// Serves one incoming connection until it closes.
pub(crate) async fn serve(relay: Arc<Relay>, incoming: quinn::Incoming) {
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
    let ctx = Arc::new(ConnCtx {
        relay: relay.clone(),
        conn: conn.clone(),
        outlet: Arc::new(Outlet::new(conn.clone())),
        session: OnceLock::new(),
        provisioning: Mutex::new(None),
        frames: intake::pre_auth(&relay.request_pools, &relay.config.limits),
        budget: Arc::new(Semaphore::new(
            relay.config.limits.max_streams_per_connection as usize,
        )),
    });
    let requests = tokio::spawn(accept_requests(ctx.clone()));
    let (mut ctl_send, mut ctl_recv) = control;
    let (device, welcome) = match authenticate(&ctx, &mut ctl_send, &mut ctl_recv).await {
        Ok(authenticated) => authenticated,
        Err(e) => {
            tracing::debug!(error = %e, "authentication failed");
            if write_frame(&mut ctl_send, &error_frame(&e, 0))
                .await
                .is_ok()
            {
                let _ = ctl_send.finish();
                let _ = tokio::time::timeout(ERROR_FLUSH, ctl_send.stopped()).await;
            }
            conn.close(VarInt::from_u32(CLOSE_UNAUTHENTICATED), b"unauthenticated");
            requests.abort();
            return;
        }
    };
    ctx.provisioning().take();
    intake::authenticated(
        conn,
        &ctx.frames,
        &relay.request_pools,
        &relay.config.limits,
    );
    let (mailbox, rx, came_online) = relay.router.register(
        device,
        relay.config.limits.delivery_queue_len,
        relay.config.limits.delivery_queue_bytes,
    );
    let _ = ctx.session.set(Session {
        device,
        mailbox: mailbox.clone(),
    });
    // Answered only now, so the device's first request finds its session.
    if write_frame(&mut ctl_send, &welcome).await.is_err() {
        tracing::debug!("control stream closed before the authentication answer");
    }
    relay.metrics.connections.fetch_add(1, Ordering::Relaxed);
    if came_online {
        relay.presence_changed(device.user, true);
    }
    tracing::debug!(user = %device.user, device = device.device, "device online");
    let datagrams = tokio::spawn(read_datagrams(ctx.clone()));
    if let Err(e) = deliver(&ctx.outlet, &mailbox, rx, &relay.metrics).await {
        tracing::debug!(error = %e, "delivery stream ended");
    }
    if mailbox.is_revoked() {
        tracing::info!(user = %device.user, device = device.device, "device removed: closing");
        conn.close(VarInt::from_u32(CLOSE_REVOKED), b"device removed");
    }
    relay.presence.forget(&mailbox);
    if relay.router.unregister(&mailbox) {
        relay.presence_changed(device.user, false);
    }
    relay.metrics.connections.fetch_sub(1, Ordering::Relaxed);
    datagrams.abort();
    requests.abort();
    drop((ctl_send, ctl_recv));
}

/// Waits for the handshake; a connection holding a provisioning mailbox may
/// wait up to `limits.provisioning_ttl_secs` instead of the authentication
/// timeout.
async fn authenticate(
    ctx: &ConnCtx,
    send: &mut SendStream,
    recv: &mut RecvStream,
) -> Result<(DeviceAddr, ServerFrame), RelayError> {
    let limits = &ctx.relay.config.limits;
    let auth_timeout = Duration::from_secs(limits.auth_timeout_secs);
    let provisioning_ttl = Duration::from_secs(limits.provisioning_ttl_secs);
    let started = Instant::now();
    let handshake = handshake(ctx, send, recv);
    tokio::pin!(handshake);
    loop {
        tokio::select! {
            result = &mut handshake => return result,
            () = tokio::time::sleep(auth_timeout) => {
                if ctx.provisioning().is_none() || started.elapsed() >= provisioning_ttl {
                    return Err(RelayError::Unauthenticated("authentication timeout"));
                }
            }
        }
    }
}

fn exporter(conn: &Connection) -> Result<[u8; 32], RelayError> {
    tern_transport::auth_exporter(conn)
        .map_err(|_| RelayError::Unavailable("TLS exporter unavailable"))
}

async fn next_frame(
    recv: &mut RecvStream,
    limits: &FrameLimits,
) -> Result<bytes::Bytes, RelayError> {
    match read_frame_with(recv, limits).await {
        Ok(Some(body)) => Ok(body),
        Ok(None) => Err(RelayError::BadRequest("control stream ended")),
        Err(e) => {
            Err(intake::refusal(e).unwrap_or(RelayError::Unavailable("control stream failed")))
        }
    }
}

/// Hello, challenge, then authentication or registration; returns the
/// device and the answer to write once its session is set up.
async fn handshake(
    ctx: &ConnCtx,
    send: &mut SendStream,
    recv: &mut RecvStream,
) -> Result<(DeviceAddr, ServerFrame), RelayError> {
    let (relay, conn) = (&ctx.relay, &ctx.conn);
    expect_hello(next_frame(recv, &ctx.frames).await?)?;
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
            max_pipelined_requests: MAX_PIPELINED_REQUESTS,
        })),
    };
    write_frame(send, &hello)
        .await
        .map_err(|_| RelayError::Unavailable("control stream failed"))?;
    let frame = decode_client_frame(next_frame(recv, &ctx.frames).await?)?;
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
                (device, ServerFrame::response(kind, req.request_id))
            }
            Some(request::Kind::RegisterDevice(r)) => {
                let (device, kind) = relay.register_device(r, &binding).await?;
                (device, ServerFrame::response(kind, req.request_id))
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
    Ok((device, reply))
}

/// Datagrams a connection may send per second; more are dropped.
const DATAGRAMS_PER_SECOND: u32 = 20;

/// Reads ephemeral events (typing) sent as datagrams, rate-limited.
async fn read_datagrams(ctx: Arc<ConnCtx>) {
    let mut window = Instant::now();
    let mut count = 0;
    while let Ok(datagram) = ctx.conn.read_datagram().await {
        if window.elapsed() >= Duration::from_secs(1) {
            window = Instant::now();
            count = 0;
        }
        count += 1;
        let Some(session) = ctx.session.get() else {
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
            && let Err(e) = ctx.relay.typing(session, t).await
        {
            tracing::debug!(error = %e, "typing event refused");
        }
    }
}

async fn accept_requests(ctx: Arc<ConnCtx>) {
    while let Ok((send, recv)) = ctx.conn.accept_bi().await {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            if let Err(e) = request_stream(&ctx, send, recv).await {
                tracing::debug!(error = %e, "request stream failed");
            }
        });
    }
}

/// Requests the relay works on at once on one request stream, announced in
/// `ServerHello.max_pipelined_requests`. A client that sends more simply
/// waits: the relay reads the next frame only when one of these is answered,
/// and QUIC flow control holds the rest.
pub const MAX_PIPELINED_REQUESTS: u32 = 32;

/// A request stream: the first frame may start a blob transfer, which then
/// owns the stream; otherwise every frame is a request, answered (in
/// whatever order they complete, each with its `request_id`) while up to
/// [`MAX_PIPELINED_REQUESTS`] are in progress. The relay finishes the stream
/// once the client finished its side and every request is answered.
async fn request_stream(
    ctx: &ConnCtx,
    mut send: SendStream,
    recv: RecvStream,
) -> Result<(), FrameError> {
    let slot = ctx.budget.clone().acquire_owned().await.ok();
    let mut frames = FrameReader::with_limits(recv, ctx.frames.clone());
    let (request_id, first) = match frames.next().await {
        Ok(None) => return Ok(()),
        Ok(Some(body)) => request(body),
        Err(e) => (0, Err(refuse(&mut frames, e)?)),
    };
    let first = match first {
        Ok(frame) => blob_request(ctx, frame.body, &mut send, &mut frames).await,
        Err(e) => Err(e),
    };
    // A first frame that could not be read, or a blob transfer that
    // failed, leaves nothing on the stream worth reading: answer and finish.
    let (first, mut reading) = match first {
        Ok(None) => {
            let _ = send.finish();
            return Ok(());
        }
        Ok(Some(body)) => (Ok(body), true),
        Err(e) => (Err(e), false),
    };
    let mut pending = FuturesUnordered::new();
    pending.push(answer(ctx, request_id, first, slot));
    while reading || !pending.is_empty() {
        tokio::select! {
            Some(frame) = pending.next() => write_frame(&mut send, &frame).await?,
            (slot, next) = next_request(&ctx.budget, &mut frames),
                if reading && pending.len() < MAX_PIPELINED_REQUESTS as usize =>
            {
                let (request_id, body) = match next {
                    Ok(Some(body)) => pipelined(request(body)),
                    Ok(None) => {
                        reading = false;
                        continue;
                    }
                    Err(e) => {
                        reading = false;
                        (0, Err(refuse(&mut frames, e)?))
                    }
                };
                pending.push(answer(ctx, request_id, body, slot));
            }
        }
    }
    let _ = send.finish();
    Ok(())
}

/// Decodes a request frame, keeping its id whenever the frame decoded.
fn request(body: bytes::Bytes) -> (u64, Result<ClientFrame, RelayError>) {
    let (id, frame) = decode_client_request(body);
    (id, frame.map_err(RelayError::from))
}

/// The answer to a frame that could not be read; nothing after it on the
/// stream can be understood, so the stream is stopped. A broken stream has
/// nobody to answer and ends the request stream.
fn refuse(frames: &mut FrameReader, e: FrameError) -> Result<RelayError, FrameError> {
    let answer = intake::refusal(e)?;
    frames.stop(VarInt::from_u32(0));
    Ok(answer)
}

/// Waits for a free slot in the connection's request budget, then for the
/// stream's next frame. Cancel-safe: a dropped wait returns its slot and
/// leaves the frame in the reader.
async fn next_request(
    budget: &Arc<Semaphore>,
    frames: &mut FrameReader,
) -> (
    Option<OwnedSemaphorePermit>,
    Result<Option<bytes::Bytes>, FrameError>,
) {
    let slot = budget.clone().acquire_owned().await.ok();
    (slot, frames.next().await)
}

/// A frame after the first of its stream (with its request id): blob
/// transfers need a stream of their own, so they are refused here.
fn pipelined(
    (id, frame): (u64, Result<ClientFrame, RelayError>),
) -> (u64, Result<Option<client_frame::Body>, RelayError>) {
    let frame = match frame {
        Ok(frame) => frame,
        Err(e) => return (id, Err(e)),
    };
    match &frame.body {
        Some(client_frame::Body::Request(Request {
            kind: Some(request::Kind::BlobUploadStart(_) | request::Kind::BlobDownload(_)),
            ..
        })) => (
            id,
            Err(RelayError::BadRequest(
                "a blob transfer needs a stream of its own",
            )),
        ),
        _ => (id, Ok(frame.body)),
    }
}

/// Runs one request and renders its response frame; its `slot` of the
/// connection's request budget is returned when the answer is ready.
async fn answer(
    ctx: &ConnCtx,
    request_id: u64,
    body: Result<Option<client_frame::Body>, RelayError>,
    _slot: Option<OwnedSemaphorePermit>,
) -> ServerFrame {
    let result = match body {
        Ok(body) => dispatch(ctx, body).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(kind) => ServerFrame::response(kind, request_id),
        Err(e) => {
            if matches!(e.code(), tern_protocol::wire::ErrorCode::Internal) {
                tracing::warn!(error = %e, "request failed");
            } else {
                tracing::debug!(error = %e, "request rejected");
            }
            error_frame(&e, request_id)
        }
    }
}

/// Runs blob transfers, which use their stream beyond one request and one
/// response; hands any other frame back (`Ok(Some)`).
async fn blob_request(
    ctx: &ConnCtx,
    body: Option<client_frame::Body>,
    send: &mut SendStream,
    frames: &mut FrameReader,
) -> Result<Option<Option<client_frame::Body>>, RelayError> {
    let Some(client_frame::Body::Request(Request {
        kind: Some(kind),
        request_id,
    })) = body
    else {
        return Ok(Some(body));
    };
    let blobs = &ctx.relay.blobs;
    match (ctx.session.get(), kind) {
        (Some(session), request::Kind::BlobUploadStart(start)) => blobs
            .upload_for(session.device, start, request_id, send, frames)
            .await
            .map(|()| None),
        (Some(_), request::Kind::BlobDownload(d)) => {
            blobs.download(d, request_id, send).await.map(|()| None)
        }
        (_, kind) => Ok(Some(Some(client_frame::Body::Request(Request {
            kind: Some(kind),
            request_id,
        })))),
    }
}

async fn dispatch(
    ctx: &ConnCtx,
    body: Option<client_frame::Body>,
) -> Result<response::Kind, RelayError> {
    let Some(client_frame::Body::Request(req)) = body else {
        return Err(RelayError::BadRequest("expected a Request frame"));
    };
    match (req.kind, ctx.session.get()) {
        (Some(request::Kind::ProvisioningOpen(_)), _) => ctx.open_provisioning(),
        (Some(request::Kind::ProvisioningSend(r)), _) => {
            ctx.relay
                .send_provisioning(&r.address, r.ciphertext)
                .await?;
            Ok(response::Kind::Ok(Empty {}))
        }
        (kind, Some(session)) => ctx.relay.handle(session, kind).await,
        (_, None) => Err(RelayError::Unauthenticated(
            "authenticate on the control stream first",
        )),
    }
}
