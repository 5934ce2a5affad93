//! Test client for the relay: real QUIC on 127.0.0.1, built only on quinn,
//! rustls and tern-protocol, with a small Ed25519 signing helper.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ed25519_dalek::{Signer, SigningKey};
use prost::Message;
use quinn::{Connection, Endpoint, RecvStream, SendStream};
use tern_protocol::limits::PROTOCOL_VERSION;
use tern_protocol::wire::*;
use tern_protocol::{FrameDecoder, decode_server_frame, encode_frame};
use tern_relay::{Config, Server};

/// Deadlock guard for every network wait in tests (never a timing assert).
pub const GUARD: Duration = Duration::from_secs(30);

pub async fn guard<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(GUARD, f)
        .await
        .expect("test step timed out")
}

pub fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).unwrap();
    b
}

/// An in-process relay on an ephemeral port.
pub struct TestRelay {
    pub addr: SocketAddr,
    pub metrics: Option<SocketAddr>,
    pub fingerprint: String,
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestRelay {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tune: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        tune(&mut config);
        let server = Server::start(config).unwrap();
        let addr = server.local_addr().unwrap();
        let metrics = server.metrics_addr();
        let fingerprint = server.fingerprint().to_owned();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            metrics,
            fingerprint,
            dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Shuts the relay down gracefully and hands back its data directory.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            guard(task).await.unwrap();
        }
        self.dir
    }
}

pub fn client_endpoint(fingerprint: &str) -> Endpoint {
    let pin = fingerprint.parse().unwrap();
    let config = tern_transport::TrustPolicy::Pinned(pin)
        .client_config()
        .unwrap();
    let mut endpoint = Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(config);
    endpoint
}

/// An account with its keys.
#[derive(Clone)]
pub struct Account {
    pub name: String,
    pub user_id: [u8; 16],
    pub account_key: SigningKey,
    pub devices: Vec<(u32, SigningKey)>,
    pub version: u64,
}

impl Account {
    pub fn new(name: &str, device_count: u32) -> Self {
        Self {
            name: name.to_owned(),
            user_id: random(),
            account_key: SigningKey::from_bytes(&random()),
            devices: (1..=device_count)
                .map(|id| (id, SigningKey::from_bytes(&random())))
                .collect(),
            version: 1,
        }
    }

    pub fn device_key(&self, id: u32) -> &SigningKey {
        &self.devices.iter().find(|(d, _)| *d == id).unwrap().1
    }

    pub fn signed_list(&self) -> SignedDeviceList {
        let list = DeviceList {
            user_id: self.user_id.to_vec().into(),
            version: self.version,
            devices: self
                .devices
                .iter()
                .map(|(id, k)| DeviceEntry {
                    device_id: *id,
                    identity_key: k.verifying_key().to_bytes().to_vec().into(),
                })
                .collect(),
        };
        let bytes = list.encode_to_vec();
        let sig = self
            .account_key
            .sign(&tern_protocol::device_list_message(&bytes));
        SignedDeviceList {
            device_list: bytes.into(),
            signature: sig.to_bytes().to_vec().into(),
        }
    }

    pub fn address(&self, device: u32) -> DeviceAddress {
        DeviceAddress {
            user_id: self.user_id.to_vec().into(),
            device_id: device,
        }
    }
}

pub async fn write(send: &mut SendStream, frame: &ClientFrame) {
    send.write_all(&encode_frame(frame).unwrap()).await.unwrap();
}

/// Reads one server frame; None at the end of the stream.
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

pub fn request_frame(kind: request::Kind) -> ClientFrame {
    ClientFrame::request(kind, 0)
}

/// A connected device.
pub struct Client {
    pub conn: Connection,
    pub endpoint: Endpoint,
    pub user_id: [u8; 16],
    pub device_id: u32,
    control: (SendStream, RecvStream),
    delivery: Option<(RecvStream, FrameDecoder)>,
}

/// The control-stream preamble: hello, challenge; returns what to sign.
pub async fn open(
    addr: SocketAddr,
    fingerprint: &str,
) -> (Endpoint, Connection, SendStream, RecvStream, Vec<u8>) {
    let endpoint = client_endpoint(fingerprint);
    let conn = guard(
        endpoint
            .connect(addr, tern_relay::tls::SELF_SIGNED_NAME)
            .unwrap(),
    )
    .await
    .unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let hello = ClientFrame {
        body: Some(client_frame::Body::Hello(ClientHello {
            protocol_version: PROTOCOL_VERSION,
            client_agent: "relay-tests".into(),
        })),
    };
    write(&mut send, &hello).await;
    let mut decoder = FrameDecoder::new();
    let Some(ServerFrame {
        body: Some(server_frame::Body::Hello(h)),
    }) = guard(read(&mut recv, &mut decoder)).await
    else {
        panic!("no server hello")
    };
    let exporter = tern_transport::auth_exporter(&conn).unwrap();
    let challenge = <[u8; 32]>::try_from(&h.challenge[..]).unwrap();
    let message = tern_protocol::auth_message(&challenge, &exporter);
    (endpoint, conn, send, recv, message)
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Client(device {})", self.device_id)
    }
}

impl Client {
    async fn finish_auth(
        endpoint: Endpoint,
        conn: Connection,
        mut send: SendStream,
        mut recv: RecvStream,
        frame: ClientFrame,
        user_id: [u8; 16],
        device_id: u32,
    ) -> Result<Self, Error> {
        write(&mut send, &frame).await;
        let mut decoder = FrameDecoder::new();
        match guard(read(&mut recv, &mut decoder)).await {
            Some(ServerFrame {
                body: Some(server_frame::Body::AuthOk(_)),
            })
            | Some(ServerFrame {
                body:
                    Some(server_frame::Body::Response(Response {
                        kind: Some(response::Kind::Registered(_) | response::Kind::Ok(_)),
                        ..
                    })),
            }) => Ok(Self {
                conn,
                endpoint,
                user_id,
                device_id,
                control: (send, recv),
                delivery: None,
            }),
            Some(ServerFrame {
                body:
                    Some(server_frame::Body::Response(Response {
                        kind: Some(response::Kind::Error(e)),
                        ..
                    })),
            }) => Err(e),
            other => panic!("unexpected auth answer {other:?}"),
        }
    }

    pub async fn register(relay: (SocketAddr, &str), account: &Account) -> Result<Self, Error> {
        Self::register_with_invite(relay, account, "").await
    }

    pub async fn register_with_invite(
        relay: (SocketAddr, &str),
        account: &Account,
        invite: &str,
    ) -> Result<Self, Error> {
        let announced = account.account_key.verifying_key().to_bytes();
        Self::register_announcing(relay, account, announced, invite).await
    }

    /// Registers announcing `announced` as the account key (tests of forged lists).
    pub async fn register_announcing(
        relay: (SocketAddr, &str),
        account: &Account,
        announced: [u8; 32],
        invite: &str,
    ) -> Result<Self, Error> {
        let (endpoint, conn, send, recv, message) = open(relay.0, relay.1).await;
        let (device_id, key) = &account.devices[0];
        let req = request::Kind::RegisterAccount(RegisterAccount {
            user_name: account.name.clone(),
            account_key: announced.to_vec().into(),
            device_list: Some(account.signed_list()),
            device_id: *device_id,
            invite_token: invite.into(),
            device_signature: key.sign(&message).to_bytes().to_vec().into(),
        });
        Self::finish_auth(
            endpoint,
            conn,
            send,
            recv,
            request_frame(req),
            account.user_id,
            *device_id,
        )
        .await
    }

    pub async fn register_device(
        relay: (SocketAddr, &str),
        account: &Account,
        device_id: u32,
    ) -> Result<Self, Error> {
        let (endpoint, conn, send, recv, message) = open(relay.0, relay.1).await;
        Self::register_device_on(endpoint, conn, send, recv, message, account, device_id).await
    }

    /// Registers a device on a connection already past hello.
    pub async fn register_device_on(
        endpoint: Endpoint,
        conn: Connection,
        send: SendStream,
        recv: RecvStream,
        message: Vec<u8>,
        account: &Account,
        device_id: u32,
    ) -> Result<Self, Error> {
        let req = request::Kind::RegisterDevice(RegisterDevice {
            user_id: account.user_id.to_vec().into(),
            device_id,
            device_signature: account
                .device_key(device_id)
                .sign(&message)
                .to_bytes()
                .to_vec()
                .into(),
        });
        Self::finish_auth(
            endpoint,
            conn,
            send,
            recv,
            request_frame(req),
            account.user_id,
            device_id,
        )
        .await
    }

    pub async fn login_with_key(
        relay: (SocketAddr, &str),
        user_id: [u8; 16],
        device_id: u32,
        key: &SigningKey,
    ) -> Result<Self, Error> {
        let (endpoint, conn, send, recv, message) = open(relay.0, relay.1).await;
        let frame = ClientFrame {
            body: Some(client_frame::Body::Authenticate(Authenticate {
                user_id: user_id.to_vec().into(),
                device_id,
                signature: key.sign(&message).to_bytes().to_vec().into(),
            })),
        };
        Self::finish_auth(endpoint, conn, send, recv, frame, user_id, device_id).await
    }

    pub async fn login(
        relay: (SocketAddr, &str),
        account: &Account,
        device_id: u32,
    ) -> Result<Self, Error> {
        Self::login_with_key(
            relay,
            account.user_id,
            device_id,
            account.device_key(device_id),
        )
        .await
    }

    /// Sends one request on a new stream and returns the response.
    pub async fn request(&self, kind: request::Kind) -> Result<response::Kind, Error> {
        raw_request(&self.conn, &encode_frame(&request_frame(kind)).unwrap()).await
    }

    pub async fn ok(&self, kind: request::Kind) -> response::Kind {
        self.request(kind).await.expect("request failed")
    }

    /// The next event on the delivery stream.
    pub async fn next_event(&mut self) -> event::Kind {
        if self.delivery.is_none() {
            let stream = guard(self.conn.accept_uni()).await.unwrap();
            self.delivery = Some((stream, FrameDecoder::new()));
        }
        let (stream, decoder) = self.delivery.as_mut().unwrap();
        match guard(read(stream, decoder)).await {
            Some(ServerFrame {
                body: Some(server_frame::Body::Event(Event { kind: Some(kind) })),
            }) => kind,
            other => panic!("unexpected delivery frame {other:?}"),
        }
    }

    /// The next Delivery event, skipping other events.
    pub async fn next_delivery(&mut self) -> Delivery {
        loop {
            if let event::Kind::Delivery(d) = self.next_event().await {
                return d;
            }
        }
    }

    pub fn user(&self) -> Bytes {
        self.user_id.to_vec().into()
    }
}

/// Like [`Client::request`], but `None` when the connection failed (the
/// relay died) instead of panicking.
pub async fn try_request(
    conn: &Connection,
    kind: request::Kind,
) -> Option<Result<response::Kind, Error>> {
    let bytes = encode_frame(&request_frame(kind)).unwrap();
    let (mut send, mut recv) = tokio::time::timeout(GUARD, conn.open_bi())
        .await
        .ok()?
        .ok()?;
    send.write_all(&bytes).await.ok()?;
    let _ = send.finish();
    let mut decoder = FrameDecoder::new();
    match tokio::time::timeout(GUARD, read(&mut recv, &mut decoder))
        .await
        .ok()?
    {
        Some(ServerFrame {
            body:
                Some(server_frame::Body::Response(Response {
                    kind: Some(response::Kind::Error(e)),
                    ..
                })),
        }) => Some(Err(e)),
        Some(ServerFrame {
            body:
                Some(server_frame::Body::Response(Response {
                    kind: Some(kind), ..
                })),
        }) => Some(Ok(kind)),
        _ => None,
    }
}

/// Writes raw bytes as a request stream and reads the response.
pub async fn raw_request(conn: &Connection, bytes: &[u8]) -> Result<response::Kind, Error> {
    let (mut send, mut recv) = guard(conn.open_bi()).await.unwrap();
    send.write_all(bytes).await.unwrap();
    let _ = send.finish();
    let mut decoder = FrameDecoder::new();
    match guard(read(&mut recv, &mut decoder)).await {
        Some(ServerFrame {
            body:
                Some(server_frame::Body::Response(Response {
                    kind: Some(response::Kind::Error(e)),
                    ..
                })),
        }) => Err(e),
        Some(ServerFrame {
            body:
                Some(server_frame::Body::Response(Response {
                    kind: Some(kind), ..
                })),
        }) => Ok(kind),
        other => panic!("unexpected response {other:?}"),
    }
}

pub fn frame_bytes(body: &[u8]) -> Vec<u8> {
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(body);
    buf.to_vec()
}

pub fn code(e: &Error) -> ErrorCode {
    ErrorCode::try_from(e.code).unwrap()
}

/// Alice and Bob, one device each, registered and connected.
pub async fn pair(relay: &TestRelay) -> (Account, Client, Account, Client) {
    let at = (relay.addr, relay.fingerprint.as_str());
    let alice = Account::new("alice", 1);
    let bob = Account::new("bob", 1);
    let a = Client::register(at, &alice).await.unwrap();
    let b = Client::register(at, &bob).await.unwrap();
    (alice, a, bob, b)
}

/// A new direct chat that `creator` opens with `peer`.
pub async fn direct_chat(creator: &Client, peer: &Account) -> [u8; 16] {
    let chat = random();
    creator
        .ok(create_chat(chat, ChatKind::Direct, &[peer.user_id]))
        .await;
    chat
}

pub fn create_chat(chat_id: [u8; 16], kind: ChatKind, members: &[[u8; 16]]) -> request::Kind {
    request::Kind::CreateChat(CreateChat {
        chat_id: chat_id.to_vec().into(),
        kind: kind as i32,
        members: members.iter().map(|m| Bytes::from(m.to_vec())).collect(),
    })
}

pub fn send_to(
    chat_id: [u8; 16],
    cmid: [u8; 16],
    to: &[(&[u8; 16], u32, &[u8])],
    common: &[u8],
) -> request::Kind {
    request::Kind::Send(Send {
        chat_id: chat_id.to_vec().into(),
        client_message_id: cmid.to_vec().into(),
        device_ciphertexts: to
            .iter()
            .map(|(u, d, ct)| DeviceCiphertext {
                user_id: u.to_vec().into(),
                device_id: *d,
                ciphertext: ct.to_vec().into(),
            })
            .collect(),
        common_ciphertext: common.to_vec().into(),
    })
}

pub fn sync_req(after: &[([u8; 16], u64)]) -> request::Kind {
    request::Kind::Sync(Sync {
        after: after
            .iter()
            .map(|(c, s)| Cursor {
                chat_id: c.to_vec().into(),
                seq: *s,
            })
            .collect(),
        limit: 0,
    })
}

pub fn ack(kind: response::Kind) -> SendAck {
    match kind {
        response::Kind::SendAck(a) => a,
        other => panic!("expected SendAck, got {other:?}"),
    }
}

pub fn batch(kind: response::Kind) -> SyncBatch {
    match kind {
        response::Kind::SyncBatch(b) => b,
        other => panic!("expected SyncBatch, got {other:?}"),
    }
}

/// A test certificate authority issuing TLS server certificates.
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    pub fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Tern test CA");
        let key = rcgen::KeyPair::generate().unwrap();
        Self {
            issuer: rcgen::CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A root store trusting only this CA.
    pub fn roots(&self) -> std::sync::Arc<rustls::RootCertStore> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        std::sync::Arc::new(roots)
    }

    /// A server certificate for `names` (DNS names or IP addresses):
    /// (certificate PEM, private key PEM).
    pub fn server_cert(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}
