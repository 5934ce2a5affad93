//! A minimal relay client for load generation: register, request, read
//! the delivery stream.

use std::net::SocketAddr;

use anyhow::{Context, anyhow, bail};
use ed25519_dalek::{Signer, SigningKey};
use prost::Message;
use quinn::{Connection, Endpoint, RecvStream};
use tern_protocol::limits::PROTOCOL_VERSION;
use tern_protocol::wire::{
    ClientFrame, ClientHello, DeviceEntry, DeviceList, Event, RegisterAccount, Response,
    ServerFrame, SignedDeviceList, client_frame, request, response, server_frame,
};
use tern_protocol::{decode_server_frame, encode_frame};
use tern_transport::{FrameReader, Pipeline, read_frame, write_frame};

/// Random bytes.
pub fn random<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| anyhow!("getrandom: {e}"))?;
    Ok(b)
}

/// A registered, authenticated device.
pub struct Device {
    /// Its connection.
    pub conn: Connection,
    /// Its account id.
    pub user_id: [u8; 16],
    /// Requests the relay answers at once on one stream (0: one per stream).
    pub max_pipelined: u32,
}

async fn read_server_frame(recv: &mut RecvStream) -> anyhow::Result<ServerFrame> {
    let body = read_frame(recv).await?.context("stream ended")?;
    Ok(decode_server_frame(body)?)
}

fn signed_list(account: &SigningKey, user_id: [u8; 16], device: &SigningKey) -> SignedDeviceList {
    let list = DeviceList {
        user_id: user_id.to_vec().into(),
        version: 1,
        devices: vec![DeviceEntry {
            device_id: 1,
            identity_key: device.verifying_key().to_bytes().to_vec().into(),
        }],
    };
    let bytes = list.encode_to_vec();
    let sig = account.sign(&tern_protocol::device_list_message(&bytes));
    SignedDeviceList {
        device_list: bytes.into(),
        signature: sig.to_bytes().to_vec().into(),
    }
}

/// Connects and registers a fresh account named `name` with one device.
pub async fn register(
    endpoint: &Endpoint,
    relay: SocketAddr,
    name: &str,
) -> anyhow::Result<Device> {
    let conn = endpoint
        .connect(relay, tern_relay::tls::SELF_SIGNED_NAME)?
        .await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    let hello = ClientFrame {
        body: Some(client_frame::Body::Hello(ClientHello {
            protocol_version: PROTOCOL_VERSION,
            client_agent: "tern-loadgen".into(),
        })),
    };
    write_frame(&mut send, &hello).await?;
    let Some(server_frame::Body::Hello(h)) = read_server_frame(&mut recv).await?.body else {
        bail!("expected ServerHello");
    };
    let challenge: [u8; 32] = h.challenge[..].try_into()?;
    let exporter =
        tern_transport::auth_exporter(&conn).map_err(|_| anyhow!("TLS exporter unavailable"))?;
    let account = SigningKey::from_bytes(&random()?);
    let device = SigningKey::from_bytes(&random()?);
    let user_id = random()?;
    let reg = RegisterAccount {
        user_name: name.to_owned(),
        account_key: account.verifying_key().to_bytes().to_vec().into(),
        device_list: Some(signed_list(&account, user_id, &device)),
        device_id: 1,
        invite_token: String::new(),
        device_signature: device
            .sign(&tern_protocol::auth_message(&challenge, &exporter))
            .to_bytes()
            .to_vec()
            .into(),
    };
    let frame = ClientFrame::request(request::Kind::RegisterAccount(reg), 0);
    write_frame(&mut send, &frame).await?;
    match read_server_frame(&mut recv).await?.body {
        Some(server_frame::Body::Response(Response {
            kind: Some(response::Kind::Registered(_)),
            ..
        })) => {}
        other => bail!("registration failed: {other:?}"),
    }
    Ok(Device {
        conn,
        user_id,
        max_pipelined: h.max_pipelined_requests,
    })
}

/// One request on its own stream.
pub async fn request(conn: &Connection, kind: request::Kind) -> anyhow::Result<response::Kind> {
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&encode_frame(&ClientFrame::request(kind, 0))?)
        .await?;
    send.finish()?;
    match read_server_frame(&mut recv).await?.body {
        Some(server_frame::Body::Response(r)) => answer(r),
        other => bail!("unexpected response {other:?}"),
    }
}

fn answer(r: Response) -> anyhow::Result<response::Kind> {
    match r.kind {
        Some(response::Kind::Error(e)) => bail!("relay error {:?}: {}", e.code(), e.message),
        Some(kind) => Ok(kind),
        None => bail!("empty response"),
    }
}

/// How a sender puts its requests on the wire.
pub enum Requests {
    /// A new stream per request.
    PerStream(Connection),
    /// All requests on one pipelined stream.
    Pipelined(Pipeline),
}

impl Requests {
    /// Pipelined if `pipelined` and the relay supports it.
    pub async fn for_device(device: &Device, pipelined: bool) -> anyhow::Result<Self> {
        Ok(if pipelined && device.max_pipelined > 0 {
            Self::Pipelined(Pipeline::open(&device.conn, device.max_pipelined).await?)
        } else {
            Self::PerStream(device.conn.clone())
        })
    }

    /// Sends one request and waits for its response.
    pub async fn request(&self, kind: request::Kind) -> anyhow::Result<response::Kind> {
        match self {
            Self::PerStream(conn) => request(conn, kind).await,
            Self::Pipelined(p) => answer(p.request(kind).await?),
        }
    }
}

/// Reads events from the delivery stream, calling `on_event` for each.
pub async fn read_events(conn: Connection, mut on_event: impl FnMut(Event)) -> anyhow::Result<()> {
    let mut frames = FrameReader::new(conn.accept_uni().await?);
    while let Some(body) = frames.next().await? {
        if let Some(server_frame::Body::Event(e)) = decode_server_frame(body)?.body {
            on_event(e);
        }
    }
    Ok(())
}
