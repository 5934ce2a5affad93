//! A low-level protocol client: QUIC on quinn, frames from tern-protocol,
//! none of tern-core's connection logic (only its [`RelayAddress`]). For
//! tests that must choose every frame on the wire (malformed, oversized,
//! out of order, before authentication) and for the load generator;
//! everything else should use tern-core's
//! [`RelayConnection`](tern_core::net::RelayConnection).
//!
//! The fallible API — [`Hello`], [`exchange`], [`exchange_bytes`],
//! [`answer`], [`Events`] — returns [`RawError`]. The test API on top of it —
//! [`RawClient`]'s constructors and requests, [`raw_request`],
//! [`try_request`], [`read`] — returns only what the relay refused (its wire
//! [`Error`]) and fails the test on anything else, each wait bounded by
//! [`crate::GUARD`].

mod requests;

use bytes::{Bytes, BytesMut};
use ed25519_dalek::SigningKey;
use prost::Message;
use quinn::{Connection, Endpoint, RecvStream, SendStream};
use tern_core::net::RelayAddress;
use tern_protocol::limits::PROTOCOL_VERSION;
use tern_protocol::wire::{
    Authenticate, BlobDownload, ClientFrame, ClientHello, Delivery, EphemeralEvent, Error,
    ErrorCode, Event, Request, Response, ServerFrame, client_frame, ephemeral_event, event,
    request, response, server_frame,
};
use tern_protocol::{FrameDecoder, ProtocolError, decode_server_frame, encode_frame};
use tern_transport::{FrameIoError, FrameReader, TrustPolicy, read_frame, write_frame};

pub use requests::{ack, batch, create_chat, send_to, sync_req, upload_prekeys};

use crate::account::{Account, sign_auth};
use crate::relay::TestRelay;
use crate::{GUARD, guard, random};

/// Why an exchange with the relay failed.
#[derive(Debug, thiserror::Error)]
pub enum RawError {
    /// The relay answered with an error.
    #[error("the relay refused: {:?}: {}", .0.code(), .0.message)]
    Refused(Error),
    /// The connection could not be started.
    #[error("connecting failed: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The connection failed or was closed.
    #[error("connection lost: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// Writing to a stream failed.
    #[error("stream write failed: {0}")]
    Write(#[from] quinn::WriteError),
    /// A frame could not be read or written.
    #[error(transparent)]
    Frame(#[from] FrameIoError),
    /// A frame could not be encoded or decoded.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The relay answered something else than the exchange expects.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
}

/// The relay's refusal in `result`, for tests.
///
/// # Panics
/// On any other failure (the connection, a malformed answer).
#[allow(clippy::panic)]
pub fn refusal<T>(result: Result<T, RawError>) -> Result<T, Error> {
    result.map_err(|e| match e {
        RawError::Refused(refused) => refused,
        other => panic!("{other}"),
    })
}

/// A QUIC client endpoint on 127.0.0.1 trusting relays by `trust`.
///
/// # Panics
/// When the endpoint cannot be bound (outside a tokio runtime).
#[allow(clippy::unwrap_used)]
pub fn client_endpoint(trust: &TrustPolicy) -> Endpoint {
    let mut endpoint = Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(trust.client_config().unwrap());
    endpoint
}

/// The frame that opens a control stream, announcing `protocol_version`.
pub fn hello_frame(protocol_version: u32) -> ClientFrame {
    ClientFrame {
        body: Some(client_frame::Body::Hello(ClientHello {
            protocol_version,
            client_agent: "tern-testkit".into(),
        })),
    }
}

/// The body of a server frame read from `recv`.
async fn read_body(recv: &mut RecvStream) -> Result<server_frame::Body, RawError> {
    let body = read_frame(recv)
        .await?
        .ok_or_else(|| RawError::Unexpected("the stream ended".into()))?;
    decode_server_frame(body)?
        .body
        .ok_or(ProtocolError::MissingField("ServerFrame.body").into())
}

/// A connection past the hello exchange, not authenticated yet: it can
/// register an account or a device, authenticate one, or carry requests
/// that need no authentication (provisioning).
pub struct Hello {
    endpoint: Endpoint,
    conn: Connection,
    control: (SendStream, RecvStream),
    auth_payload: Vec<u8>,
    max_pipelined: u32,
}

impl Hello {
    /// Connects to `relay` from `endpoint` (whose default client
    /// configuration decides trust) and exchanges hellos.
    pub async fn connect(endpoint: &Endpoint, relay: &RelayAddress) -> Result<Self, RawError> {
        let conn = endpoint.connect(relay.addr, &relay.server_name)?.await?;
        let (mut send, mut recv) = conn.open_bi().await?;
        write_frame(&mut send, &hello_frame(PROTOCOL_VERSION)).await?;
        let hello = match read_body(&mut recv).await? {
            server_frame::Body::Hello(hello) => hello,
            server_frame::Body::Response(r) => return Err(unexpected_answer(r)),
            other => return Err(RawError::Unexpected(format!("{other:?}"))),
        };
        let challenge = <[u8; 32]>::try_from(&hello.challenge[..])
            .map_err(|_| RawError::Unexpected("a challenge that is not 32 bytes".into()))?;
        let exporter = tern_transport::auth_exporter(&conn)
            .map_err(|_| RawError::Unexpected("no TLS exporter".into()))?;
        Ok(Self {
            endpoint: endpoint.clone(),
            conn,
            control: (send, recv),
            auth_payload: tern_protocol::auth_payload(&challenge, &exporter),
            max_pipelined: hello.max_pipelined_requests,
        })
    }

    /// The connection (for requests before authentication).
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// `key`'s signature over this connection's authentication payload.
    pub fn sign(&self, key: &SigningKey) -> Bytes {
        Bytes::copy_from_slice(&sign_auth(key, &self.auth_payload))
    }

    /// Registers `account` with its first device, claiming `announced` as
    /// its account key ([`Account::public_key`] unless a test forges it).
    pub async fn register_account(
        self,
        account: &Account,
        announced: [u8; 32],
        invite: &str,
    ) -> Result<RawClient, RawError> {
        let (device_id, key) = account.first_device();
        let kind = account.register_request(announced, invite, self.sign(key));
        let frame = ClientFrame::request(kind, 0);
        self.finish(frame, account.user_id, *device_id).await
    }

    /// Registers device `device_id` of `account`'s published device list.
    pub async fn register_device(
        self,
        account: &Account,
        device_id: u32,
    ) -> Result<RawClient, RawError> {
        let signature = self.sign(account.device_key(device_id));
        let frame = ClientFrame::request(account.register_device_request(device_id, signature), 0);
        self.finish(frame, account.user_id, device_id).await
    }

    /// Authenticates as device `device_id` of account `user_id`, signing
    /// with `key`.
    pub async fn authenticate(
        self,
        user_id: [u8; 16],
        device_id: u32,
        key: &SigningKey,
    ) -> Result<RawClient, RawError> {
        let frame = ClientFrame {
            body: Some(client_frame::Body::Authenticate(Authenticate {
                user_id: user_id.to_vec().into(),
                device_id,
                signature: self.sign(key),
            })),
        };
        self.finish(frame, user_id, device_id).await
    }

    /// Sends a registration or authentication `frame` on the control
    /// stream; success authenticates the connection.
    async fn finish(
        mut self,
        frame: ClientFrame,
        user_id: [u8; 16],
        device_id: u32,
    ) -> Result<RawClient, RawError> {
        let (send, recv) = &mut self.control;
        write_frame(send, &frame).await?;
        match read_body(recv).await? {
            server_frame::Body::AuthOk(_) => {}
            server_frame::Body::Response(r) => match answer(r)? {
                response::Kind::Registered(_) | response::Kind::Ok(_) => {}
                other => return Err(RawError::Unexpected(format!("{other:?}"))),
            },
            other => return Err(RawError::Unexpected(format!("{other:?}"))),
        }
        Ok(RawClient {
            conn: self.conn,
            user_id,
            device_id,
            max_pipelined: self.max_pipelined,
            _endpoint: self.endpoint,
            _control: self.control,
            events: None,
        })
    }
}

/// A registered or authenticated device on a connection of its own.
pub struct RawClient {
    /// The connection.
    pub conn: Connection,
    /// The device's account.
    pub user_id: [u8; 16],
    /// The device's id.
    pub device_id: u32,
    /// Requests the relay works on at once on one stream (its
    /// `ServerHello.max_pipelined_requests`; 0: one request per stream).
    pub max_pipelined: u32,
    _endpoint: Endpoint,
    // Held open for the connection's lifetime: closing it is a protocol error.
    _control: (SendStream, RecvStream),
    events: Option<Events>,
}

impl std::fmt::Debug for RawClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RawClient(device {})", self.device_id)
    }
}

/// Connects to `relay` from an endpoint of its own, for tests.
///
/// # Panics
/// When the connection or the hello exchange fails.
#[allow(clippy::unwrap_used)]
async fn hello(relay: &RelayAddress) -> Hello {
    let endpoint = client_endpoint(&relay.trust);
    guard(Hello::connect(&endpoint, relay)).await.unwrap()
}

/// The test API: every constructor opens an endpoint and connection of its
/// own; `Err` is what the relay refused, other failures panic.
impl RawClient {
    /// Registers `account` with its first device.
    pub async fn register(relay: &RelayAddress, account: &Account) -> Result<Self, Error> {
        Self::register_with_invite(relay, account, "").await
    }

    /// Registers `account` with its first device and an invite token.
    pub async fn register_with_invite(
        relay: &RelayAddress,
        account: &Account,
        invite: &str,
    ) -> Result<Self, Error> {
        Self::register_announcing(relay, account, account.public_key(), invite).await
    }

    /// Registers `account` announcing `announced` as its account key
    /// (tests of forged device lists).
    pub async fn register_announcing(
        relay: &RelayAddress,
        account: &Account,
        announced: [u8; 32],
        invite: &str,
    ) -> Result<Self, Error> {
        let registering = hello(relay)
            .await
            .register_account(account, announced, invite);
        refusal(guard(registering).await)
    }

    /// Registers device `device_id` of `account`'s published device list.
    pub async fn register_device(
        relay: &RelayAddress,
        account: &Account,
        device_id: u32,
    ) -> Result<Self, Error> {
        let registering = hello(relay).await.register_device(account, device_id);
        refusal(guard(registering).await)
    }

    /// Authenticates device `device_id` of `account`.
    pub async fn login(
        relay: &RelayAddress,
        account: &Account,
        device_id: u32,
    ) -> Result<Self, Error> {
        let key = account.device_key(device_id);
        Self::login_with_key(relay, account.user_id, device_id, key).await
    }

    /// Authenticates as device `device_id` of `user_id`, signing with `key`.
    pub async fn login_with_key(
        relay: &RelayAddress,
        user_id: [u8; 16],
        device_id: u32,
        key: &SigningKey,
    ) -> Result<Self, Error> {
        let authenticating = hello(relay).await.authenticate(user_id, device_id, key);
        refusal(guard(authenticating).await)
    }

    /// Sends one request on a new stream and returns the response.
    pub async fn request(&self, kind: request::Kind) -> Result<response::Kind, Error> {
        refusal(guard(exchange(&self.conn, kind)).await)
    }

    /// Sends one request that must succeed.
    ///
    /// # Panics
    /// When the relay refuses it.
    #[allow(clippy::expect_used)]
    pub async fn ok(&self, kind: request::Kind) -> response::Kind {
        self.request(kind).await.expect("request failed")
    }

    /// The next event on the delivery stream.
    ///
    /// # Panics
    /// When the stream fails or ends.
    #[allow(clippy::unwrap_used, clippy::panic)]
    pub async fn next_event(&mut self) -> event::Kind {
        let events = match &mut self.events {
            Some(events) => events,
            None => self
                .events
                .insert(guard(Events::accept(&self.conn)).await.unwrap()),
        };
        match guard(events.next()).await {
            Ok(Some(kind)) => kind,
            other => panic!("unexpected delivery stream read {other:?}"),
        }
    }

    /// The next delivery on the delivery stream, skipping other events.
    pub async fn next_delivery(&mut self) -> Delivery {
        loop {
            if let event::Kind::Delivery(d) = self.next_event().await {
                return d;
            }
        }
    }

    /// Sends an ephemeral event as a QUIC datagram.
    ///
    /// # Panics
    /// When the connection cannot carry datagrams.
    #[allow(clippy::unwrap_used)]
    pub fn send_ephemeral(&self, event: &EphemeralEvent) {
        self.conn
            .send_datagram(event.encode_to_vec().into())
            .unwrap();
    }

    /// The next ephemeral event (presence, typing) from the relay.
    ///
    /// # Panics
    /// When no valid datagram arrives.
    #[allow(clippy::unwrap_used)]
    pub async fn next_ephemeral(&self) -> ephemeral_event::Kind {
        let datagram = guard(self.conn.read_datagram()).await.unwrap();
        tern_protocol::decode_datagram(datagram)
            .unwrap()
            .kind
            .unwrap()
    }
}

/// The relay's delivery stream, read frame by frame.
pub struct Events(FrameReader);

impl Events {
    /// Accepts the delivery stream of `conn` (the relay opens it with its
    /// first event).
    pub async fn accept(conn: &Connection) -> Result<Self, RawError> {
        Ok(Self(FrameReader::new(conn.accept_uni().await?)))
    }

    /// The next event; `None` when the relay finished the stream.
    pub async fn next(&mut self) -> Result<Option<event::Kind>, RawError> {
        let Some(body) = self.0.next().await? else {
            return Ok(None);
        };
        match decode_server_frame(body)?.body {
            Some(server_frame::Body::Event(Event { kind: Some(kind) })) => Ok(Some(kind)),
            other => Err(RawError::Unexpected(format!("{other:?}"))),
        }
    }
}

/// The response kind in `response`; its error as [`RawError::Refused`].
pub fn answer(response: Response) -> Result<response::Kind, RawError> {
    match response.kind {
        Some(response::Kind::Error(e)) => Err(RawError::Refused(e)),
        Some(kind) => Ok(kind),
        None => Err(ProtocolError::MissingField("Response.kind").into()),
    }
}

/// The error of a response that must be one.
fn unexpected_answer(response: Response) -> RawError {
    match answer(response) {
        Err(e) => e,
        Ok(kind) => RawError::Unexpected(format!("{kind:?}")),
    }
}

/// Sends one request on a new stream of `conn` and returns the response.
pub async fn exchange(conn: &Connection, kind: request::Kind) -> Result<response::Kind, RawError> {
    exchange_bytes(conn, &encode_frame(&ClientFrame::request(kind, 0))?).await
}

/// Writes `bytes` (any bytes: a test's malformed frame) on a new stream of
/// `conn`, finishes it and returns the first response.
pub async fn exchange_bytes(conn: &Connection, bytes: &[u8]) -> Result<response::Kind, RawError> {
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(bytes).await?;
    let _ = send.finish();
    match read_body(&mut recv).await? {
        server_frame::Body::Response(r) => answer(r),
        other => Err(RawError::Unexpected(format!("{other:?}"))),
    }
}

/// [`exchange_bytes`] for tests: `Err` is the relay's refusal.
///
/// # Panics
/// On any other failure.
pub async fn raw_request(conn: &Connection, bytes: &[u8]) -> Result<response::Kind, Error> {
    refusal(guard(exchange_bytes(conn, bytes)).await)
}

/// [`exchange`] for tests of a relay that may die: `None` when the
/// connection failed or [`GUARD`] passed, instead of panicking.
pub async fn try_request(
    conn: &Connection,
    kind: request::Kind,
) -> Option<Result<response::Kind, Error>> {
    match tokio::time::timeout(GUARD, exchange(conn, kind)).await {
        Ok(Ok(kind)) => Some(Ok(kind)),
        Ok(Err(RawError::Refused(e))) => Some(Err(e)),
        _ => None,
    }
}

/// Reads one server frame with `decoder`; `None` at the end of the stream
/// or when it fails.
///
/// # Panics
/// When the bytes are not a valid server frame.
#[allow(clippy::unwrap_used)]
pub async fn read(recv: &mut RecvStream, decoder: &mut FrameDecoder) -> Option<ServerFrame> {
    loop {
        if let Some(body) = decoder.next_frame().unwrap() {
            return Some(decode_server_frame(body).unwrap());
        }
        match recv.read_chunk(64 * 1024, true).await.ok()? {
            Some(chunk) => decoder.push(&chunk.bytes),
            None => return None,
        }
    }
}

/// The bytes of a client frame holding `body` (for streams a test writes
/// by hand, such as blob transfers).
///
/// # Panics
/// When the frame exceeds the protocol's size limit.
#[allow(clippy::unwrap_used)]
pub fn client_frame_bytes(body: client_frame::Body) -> Vec<u8> {
    tern_protocol::encode_frame(&ClientFrame { body: Some(body) })
        .unwrap()
        .to_vec()
}

/// Reads the next frame of `recv` and returns the response it must be.
///
/// # Panics
/// When the stream ends or the frame is not a response.
#[allow(clippy::panic)]
pub async fn next_response(recv: &mut RecvStream, decoder: &mut FrameDecoder) -> response::Kind {
    match guard(read(recv, decoder)).await {
        Some(ServerFrame {
            body:
                Some(server_frame::Body::Response(Response {
                    kind: Some(kind), ..
                })),
        }) => kind,
        other => panic!("expected a response, got {other:?}"),
    }
}

/// Downloads blob `id` from `offset` on a stream of its own, checking that
/// the chunks follow each other and add up to the announced size.
///
/// # Panics
/// When the relay answers anything but the blob.
#[allow(clippy::panic, clippy::unwrap_used)]
pub async fn download_blob(conn: &Connection, id: [u8; 32], offset: u64) -> Vec<u8> {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let req = client_frame::Body::Request(Request {
        kind: Some(request::Kind::BlobDownload(BlobDownload {
            blob_id: id.to_vec().into(),
            offset,
        })),
        request_id: 0,
    });
    send.write_all(&client_frame_bytes(req)).await.unwrap();
    send.finish().unwrap();
    let mut dec = FrameDecoder::new();
    let response::Kind::BlobInfo(info) = next_response(&mut recv, &mut dec).await else {
        panic!("expected BlobInfo")
    };
    let mut out = Vec::new();
    while let Some(f) = guard(read(&mut recv, &mut dec)).await {
        let Some(server_frame::Body::BlobChunk(chunk)) = f.body else {
            panic!("expected a chunk")
        };
        assert_eq!(chunk.offset, offset + out.len() as u64);
        out.extend_from_slice(&chunk.data);
    }
    assert_eq!(info.size, offset + out.len() as u64);
    out
}

/// `body` behind a frame header announcing its length (for frames a test
/// builds byte by byte).
pub fn frame_bytes(body: &[u8]) -> Vec<u8> {
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(body);
    buf.to_vec()
}

/// The code of a wire error.
///
/// # Panics
/// When the code is unknown to this build.
#[allow(clippy::unwrap_used)]
pub fn code(e: &Error) -> ErrorCode {
    ErrorCode::try_from(e.code).unwrap()
}

/// Alice and Bob, one device each, registered and connected.
///
/// # Panics
/// When either registration fails.
#[allow(clippy::unwrap_used)]
pub async fn pair(relay: &TestRelay) -> (Account, RawClient, Account, RawClient) {
    let at = relay.address();
    let alice = Account::new("alice", 1);
    let bob = Account::new("bob", 1);
    let a = RawClient::register(&at, &alice).await.unwrap();
    let b = RawClient::register(&at, &bob).await.unwrap();
    (alice, a, bob, b)
}

/// A new direct chat that `creator` opens with `peer`.
pub async fn direct_chat(creator: &RawClient, peer: &Account) -> [u8; 16] {
    let chat = random();
    creator
        .ok(create_chat(
            chat,
            tern_protocol::wire::ChatKind::Direct,
            &[peer.user_id],
        ))
        .await;
    chat
}
