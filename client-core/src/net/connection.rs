//! One QUIC connection to the relay, from hello to authenticated requests.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use quinn::{Connection, Endpoint, RecvStream, SendStream};
use tern_protocol::limits::{CHALLENGE_LEN, PROTOCOL_VERSION};
use tern_protocol::wire::{
    Authenticate, ClientFrame, ClientHello, EphemeralEvent, ServerFrame, client_frame, event,
    request, response, server_frame,
};
use tern_protocol::{ProtocolError, UserId, decode_datagram, decode_server_frame};
use tern_transport::{Pipeline, auth_exporter, read_frame, write_frame};

use super::address::RelayAddress;
use super::error::NetError;

/// Signs with the device identity key. Implemented over the crypto layer's
/// device identity; kept as a trait so the connection never holds key bytes.
pub trait DeviceSigner: Send + Sync {
    /// Ed25519 signature over `AUTH_SIGNATURE_CONTEXT || payload`, where
    /// `payload` is the connection's [`tern_protocol::auth_payload`]. The
    /// device identity's labelled signature (`DeviceIdentity::sign`) is
    /// exactly this.
    fn sign(&self, payload: &[u8]) -> [u8; 64];
}

/// A connection that completed the hello exchange but is not authenticated
/// yet: it can authenticate an existing device or register a new one.
pub struct Greeting {
    endpoint: Endpoint,
    conn: Connection,
    control: (SendStream, RecvStream),
    auth_payload: Vec<u8>,
    server_time_ms: u64,
    max_pipelined: u32,
}

/// How long connecting and the hello exchange may take before the relay
/// counts as unreachable (an unanswered QUIC handshake would otherwise wait
/// for the idle timeout).
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// The same for one node of a relay with several: a dead node costs this
/// long before the next one is tried.
pub const NODE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// A client endpoint (one UDP socket) for connections to `relay`. A
/// quinn endpoint reserves its receive buffers (about 3 MiB on Linux) and
/// keeps them while its connections drain, so a long-lived client opens one
/// and connects through it again and again ([`Greeting::connect_via`]).
pub fn client_endpoint(relay: &RelayAddress) -> Result<Endpoint, NetError> {
    let bind: SocketAddr = if relay.addr.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    Endpoint::client(bind).map_err(|e| NetError::Connect(e.to_string()))
}

impl Greeting {
    /// Connects to the relay through a new endpoint of its own and
    /// exchanges hellos; fails with [`NetError::Connect`] after
    /// [`CONNECT_TIMEOUT`]. For one-off connections.
    pub async fn connect(relay: &RelayAddress) -> Result<Self, NetError> {
        Self::connect_via(&client_endpoint(relay)?, relay).await
    }

    /// [`Self::connect`] through an existing endpoint.
    pub async fn connect_via(endpoint: &Endpoint, relay: &RelayAddress) -> Result<Self, NetError> {
        Ok(Self::connect_from(endpoint, relay, 0).await?.0)
    }

    /// Connects to the relay's nodes in turn, starting with node `first`
    /// (an index into [`RelayAddress::nodes`], wrapping), until one
    /// answers; returns the connection and that node's index. Each node
    /// gets [`NODE_TIMEOUT`] when there are several, [`CONNECT_TIMEOUT`]
    /// otherwise.
    pub async fn connect_from(
        endpoint: &Endpoint,
        relay: &RelayAddress,
        first: usize,
    ) -> Result<(Self, usize), NetError> {
        let nodes = relay.nodes();
        let patience = if nodes.len() > 1 {
            NODE_TIMEOUT
        } else {
            CONNECT_TIMEOUT
        };
        let mut last = NetError::Connect("no relay node".into());
        for i in (0..nodes.len()).map(|k| (first + k) % nodes.len()) {
            let attempt = Self::handshake(endpoint.clone(), relay, nodes[i]);
            match tokio::time::timeout(patience, attempt).await {
                Ok(Ok(greeting)) => return Ok((greeting, i)),
                Ok(Err(e)) => last = e,
                Err(_) => last = NetError::Connect(format!("no answer within {patience:?}")),
            }
            tracing::debug!(node = %nodes[i], error = %last, "relay node unreachable");
        }
        Err(last)
    }

    async fn handshake(
        endpoint: Endpoint,
        relay: &RelayAddress,
        node: SocketAddr,
    ) -> Result<Self, NetError> {
        let config = relay
            .trust
            .client_config()
            .map_err(|e| NetError::Connect(e.to_string()))?;
        let conn = endpoint
            .connect_with(config, node, &relay.server_name)
            .map_err(|e| NetError::Connect(e.to_string()))?
            .await
            .map_err(|e| NetError::Connect(e.to_string()))?;
        let (mut send, mut recv) = conn.open_bi().await?;
        let hello = ClientHello {
            protocol_version: PROTOCOL_VERSION,
            client_agent: concat!("tern-core/", env!("CARGO_PKG_VERSION")).into(),
        };
        write_frame(&mut send, &frame(client_frame::Body::Hello(hello))).await?;
        let server_hello = match read_server_frame(&mut recv).await? {
            server_frame::Body::Hello(h) => h,
            server_frame::Body::Response(r) => return Err(response_error(r)),
            _ => return Err(unexpected("ServerHello")),
        };
        if server_hello.protocol_version != PROTOCOL_VERSION {
            return Err(ProtocolError::UnsupportedVersion {
                got: server_hello.protocol_version,
                supported: PROTOCOL_VERSION,
            }
            .into());
        }
        let challenge: [u8; CHALLENGE_LEN] = server_hello
            .challenge
            .as_ref()
            .try_into()
            .map_err(|_| unexpected("a 32-byte challenge"))?;
        let exporter = auth_exporter(&conn)
            .map_err(|_| NetError::Connect("TLS exporter unavailable".into()))?;
        Ok(Self {
            endpoint,
            conn,
            control: (send, recv),
            auth_payload: tern_protocol::auth_payload(&challenge, &exporter),
            server_time_ms: server_hello.server_time_ms,
            max_pipelined: server_hello.max_pipelined_requests,
        })
    }

    /// The relay's clock at hello, milliseconds since the Unix epoch.
    pub fn server_time_ms(&self) -> u64 {
        self.server_time_ms
    }

    /// Signs this connection's authentication message.
    pub fn sign(&self, signer: &dyn DeviceSigner) -> Bytes {
        Bytes::copy_from_slice(&signer.sign(&self.auth_payload))
    }

    /// Authenticates as an existing device.
    pub async fn authenticate(
        mut self,
        user_id: UserId,
        device_id: u32,
        signer: &dyn DeviceSigner,
    ) -> Result<RelayConnection, NetError> {
        let auth = Authenticate {
            user_id: user_id.to_wire(),
            device_id,
            signature: self.sign(signer),
        };
        let (send, recv) = &mut self.control;
        write_frame(send, &frame(client_frame::Body::Authenticate(auth))).await?;
        match read_server_frame(recv).await? {
            server_frame::Body::AuthOk(_) => Ok(self.into_connection()),
            server_frame::Body::Response(r) => Err(response_error(r)),
            _ => Err(unexpected("AuthOk")),
        }
    }

    /// Sends a registration request (`register_account` or
    /// `register_device`, whose `device_signature` the caller filled with
    /// [`Self::sign`]) on the control stream. Success authenticates the
    /// connection.
    pub async fn register(
        mut self,
        kind: request::Kind,
    ) -> Result<(response::Kind, RelayConnection), NetError> {
        let (send, recv) = &mut self.control;
        write_frame(send, &ClientFrame::request(kind, 0)).await?;
        match read_server_frame(recv).await? {
            server_frame::Body::Response(r) => {
                let answer = response_kind(r)?;
                Ok((answer, self.into_connection()))
            }
            _ => Err(unexpected("Response")),
        }
    }

    /// Keeps the connection unauthenticated (for provisioning a new device).
    pub fn unauthenticated(self) -> RelayConnection {
        self.into_connection()
    }

    fn into_connection(self) -> RelayConnection {
        RelayConnection {
            _endpoint: self.endpoint,
            conn: self.conn,
            _control: self.control,
            max_pipelined: self.max_pipelined,
            pipeline: tokio::sync::Mutex::new(None),
        }
    }
}

/// A connection to the relay. Requests may be issued concurrently from
/// several tasks: they share one pipelined request stream when the relay
/// supports it (docs/protocol.md §4), else each uses a stream of its own.
pub struct RelayConnection {
    _endpoint: Endpoint,
    conn: Connection,
    // Held open for the connection's lifetime: closing it is a protocol error.
    _control: (SendStream, RecvStream),
    /// The relay's `ServerHello.max_pipelined_requests` (0: no pipelining).
    max_pipelined: u32,
    /// The pipelined request stream, opened on first use and replaced if it
    /// closes while the connection lives on.
    pipeline: tokio::sync::Mutex<Option<Arc<Pipeline>>>,
}

impl RelayConnection {
    /// Sends one request and returns the relay's answer; `Response{error}`
    /// becomes [`NetError::Relay`].
    pub async fn request(&self, kind: request::Kind) -> Result<response::Kind, NetError> {
        if self.max_pipelined == 0 {
            let (mut send, mut recv) = self.open_request(kind).await?;
            send.finish().map_err(|_| NetError::NoResponse)?;
            return match read_server_frame(&mut recv).await? {
                server_frame::Body::Response(r) => response_kind(r),
                _ => Err(unexpected("Response")),
            };
        }
        let pipeline = self.pipeline().await?;
        response_kind(pipeline.request(kind).await?)
    }

    /// The open request pipeline, opening a new one if there is none or
    /// the last one closed.
    async fn pipeline(&self) -> Result<Arc<Pipeline>, NetError> {
        let mut slot = self.pipeline.lock().await;
        if let Some(open) = slot.as_ref().filter(|p| p.is_open()) {
            return Ok(open.clone());
        }
        let opened = Arc::new(Pipeline::open(&self.conn, self.max_pipelined).await?);
        *slot = Some(opened.clone());
        Ok(opened)
    }

    /// Opens a stream and sends a request on it, leaving the stream to the
    /// caller (blob uploads and downloads continue on it).
    pub async fn open_request(
        &self,
        kind: request::Kind,
    ) -> Result<(SendStream, RecvStream), NetError> {
        let (mut send, recv) = self.conn.open_bi().await?;
        write_frame(&mut send, &ClientFrame::request(kind, 0)).await?;
        Ok((send, recv))
    }

    /// The relay's delivery stream. QUIC makes a stream visible to the peer
    /// only with its first bytes, so the stream is accepted on the first
    /// [`EventStream::next`], not here.
    pub fn events(&self) -> EventStream {
        EventStream {
            conn: self.conn.clone(),
            recv: None,
        }
    }

    /// Sends an ephemeral event (typing) as a QUIC datagram. Best effort:
    /// datagrams may be lost.
    pub fn send_ephemeral(&self, event: &EphemeralEvent) -> Result<(), NetError> {
        self.conn
            .send_datagram(event.encode_to_vec().into())
            .map_err(|e| NetError::Connect(e.to_string()))
    }

    /// The next ephemeral event (typing, presence) from the relay.
    pub async fn next_ephemeral(&self) -> Result<EphemeralEvent, NetError> {
        loop {
            let datagram = self.conn.read_datagram().await?;
            match decode_datagram(datagram) {
                Ok(event) => return Ok(event),
                Err(error) => tracing::debug!(%error, "ignoring malformed datagram"),
            }
        }
    }

    /// Resolves when the connection closes, with the reason.
    pub async fn closed(&self) -> quinn::ConnectionError {
        self.conn.closed().await
    }

    /// Closes the connection.
    pub fn close(&self) {
        self.conn.close(0u32.into(), b"bye");
    }
}

/// The relay's delivery stream: deliveries and notices, in order.
pub struct EventStream {
    conn: Connection,
    recv: Option<RecvStream>,
}

impl EventStream {
    /// The next event; `Ok(None)` when the relay finished the stream.
    /// Events this client does not understand (from a newer relay) are
    /// skipped.
    pub async fn next(&mut self) -> Result<Option<event::Kind>, NetError> {
        let recv = match &mut self.recv {
            Some(recv) => recv,
            None => self.recv.insert(self.conn.accept_uni().await?),
        };
        loop {
            let Some(body) = read_frame(recv).await? else {
                return Ok(None);
            };
            match decode_server_frame(body) {
                Ok(ServerFrame {
                    body:
                        Some(server_frame::Body::Event(tern_protocol::wire::Event { kind: Some(k) })),
                }) => return Ok(Some(k)),
                Ok(_) | Err(ProtocolError::MissingField(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

fn frame(body: client_frame::Body) -> ClientFrame {
    ClientFrame { body: Some(body) }
}

async fn read_server_frame(recv: &mut RecvStream) -> Result<server_frame::Body, NetError> {
    let body = read_frame(recv).await?.ok_or(NetError::NoResponse)?;
    decode_server_frame(body)?
        .body
        .ok_or(ProtocolError::MissingField("ServerFrame.body").into())
}

fn response_kind(r: tern_protocol::wire::Response) -> Result<response::Kind, NetError> {
    match r.kind {
        Some(response::Kind::Error(e)) => Err(e.into()),
        Some(kind) => Ok(kind),
        None => Err(ProtocolError::MissingField("Response.kind").into()),
    }
}

fn response_error(r: tern_protocol::wire::Response) -> NetError {
    match response_kind(r) {
        Err(e) => e,
        Ok(_) => unexpected("an error"),
    }
}

fn unexpected(expected: &'static str) -> NetError {
    ProtocolError::Unexpected { expected }.into()
}
