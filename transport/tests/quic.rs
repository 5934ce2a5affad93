//! Real QUIC on 127.0.0.1: pinning, frames and channel binding.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use bytes::Bytes;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tern_protocol::ProtocolError;
use tern_protocol::limits::MAX_FRAME_LEN;
use tern_protocol::wire::{ClientFrame, ClientHello, client_frame};
use tern_transport::{
    CertFingerprint, FrameIoError, TrustPolicy, auth_exporter, read_frame, server_config,
    write_frame,
};

struct Server {
    endpoint: quinn::Endpoint,
    addr: SocketAddr,
    fingerprint: CertFingerprint,
}

fn server() -> Server {
    let cert = rcgen::generate_simple_self_signed(vec!["tern-relay".into()]).unwrap();
    let der = CertificateDer::from(cert.cert.der().to_vec());
    let fingerprint = CertFingerprint::of(&der);
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let config = server_config(vec![der], key).unwrap();
    let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = endpoint.local_addr().unwrap();
    Server {
        endpoint,
        addr,
        fingerprint,
    }
}

async fn connect(server: &Server, policy: TrustPolicy) -> Result<quinn::Connection, String> {
    let mut client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    client.set_default_client_config(policy.client_config().unwrap());
    let connecting = client.connect(server.addr, "tern-relay").unwrap();
    connecting.await.map_err(|e| e.to_string())
}

fn hello() -> ClientFrame {
    ClientFrame {
        body: Some(client_frame::Body::Hello(ClientHello {
            protocol_version: 1,
            client_agent: "test".into(),
        })),
    }
}

#[tokio::test]
async fn pinned_certificate_connects_and_frames_round_trip() {
    let server = server();
    let endpoint = server.endpoint.clone();
    let accept = tokio::spawn(async move {
        let conn = endpoint.accept().await.unwrap().await.unwrap();
        let (mut send, mut recv) = conn.accept_bi().await.unwrap();
        let mut frames = Vec::new();
        while let Some(body) = read_frame(&mut recv).await.unwrap() {
            frames.push(tern_protocol::decode_client_frame(body).unwrap());
        }
        write_frame(&mut send, &frames[0]).await.unwrap();
        send.finish().unwrap();
        let exporter = auth_exporter(&conn).unwrap();
        conn.closed().await;
        (frames, exporter)
    });

    let conn = connect(&server, TrustPolicy::Pinned(server.fingerprint))
        .await
        .unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    for _ in 0..3 {
        write_frame(&mut send, &hello()).await.unwrap();
    }
    send.finish().unwrap();
    let echoed = read_frame(&mut recv).await.unwrap().unwrap();
    assert_eq!(tern_protocol::decode_client_frame(echoed).unwrap(), hello());
    assert!(read_frame(&mut recv).await.unwrap().is_none());
    let client_exporter = auth_exporter(&conn).unwrap();
    conn.close(0u32.into(), b"done");

    let (frames, server_exporter) = accept.await.unwrap();
    assert_eq!(frames, vec![hello(), hello(), hello()]);
    assert_eq!(
        client_exporter, server_exporter,
        "both ends bind to one value"
    );
}

#[tokio::test]
async fn wrong_pin_is_refused() {
    let server = server();
    let endpoint = server.endpoint.clone();
    tokio::spawn(async move {
        if let Some(incoming) = endpoint.accept().await {
            let _ = incoming.await;
        }
    });
    let mut wrong = server.fingerprint;
    wrong.0[0] ^= 1;
    let err = connect(&server, TrustPolicy::Pinned(wrong))
        .await
        .unwrap_err();
    assert!(err.contains("certificate"), "{err}");
}

#[tokio::test]
async fn exporters_differ_between_connections() {
    let server = server();
    let endpoint = server.endpoint.clone();
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            tokio::spawn(async move {
                if let Ok(conn) = incoming.await {
                    conn.closed().await;
                }
            });
        }
    });
    let a = connect(&server, TrustPolicy::Pinned(server.fingerprint))
        .await
        .unwrap();
    let b = connect(&server, TrustPolicy::Pinned(server.fingerprint))
        .await
        .unwrap();
    assert_ne!(auth_exporter(&a).unwrap(), auth_exporter(&b).unwrap());
}

#[tokio::test]
async fn oversized_and_truncated_frames_are_rejected() {
    let server = server();
    let endpoint = server.endpoint.clone();
    let accept = tokio::spawn(async move {
        let conn = endpoint.accept().await.unwrap().await.unwrap();
        let mut results = Vec::new();
        for _ in 0..2 {
            let (_send, mut recv) = conn.accept_bi().await.unwrap();
            results.push(read_frame(&mut recv).await);
        }
        results
    });
    let conn = connect(&server, TrustPolicy::Pinned(server.fingerprint))
        .await
        .unwrap();

    let (mut send, _recv) = conn.open_bi().await.unwrap();
    send.write_all(&((MAX_FRAME_LEN as u32) + 1).to_be_bytes())
        .await
        .unwrap();
    let (mut send2, _recv2) = conn.open_bi().await.unwrap();
    send2.write_all(&10u32.to_be_bytes()).await.unwrap();
    send2.write_all(&Bytes::from_static(b"abc")).await.unwrap();
    send2.finish().unwrap();

    let results = accept.await.unwrap();
    assert!(matches!(
        results[0],
        Err(FrameIoError::Protocol(ProtocolError::FrameTooLarge { .. }))
    ));
    assert!(matches!(
        results[1],
        Err(FrameIoError::Protocol(ProtocolError::Truncated {
            missing: 7
        }))
    ));
}

#[test]
fn fingerprints_parse_with_or_without_colons() {
    let hex = "ab".repeat(32);
    let colons = vec!["AB"; 32].join(":");
    let a: CertFingerprint = hex.parse().unwrap();
    let b: CertFingerprint = colons.parse().unwrap();
    assert_eq!(a, b);
    assert_eq!(a.to_string(), hex);
    assert!("abc".parse::<CertFingerprint>().is_err());
    assert!("zz".repeat(32).parse::<CertFingerprint>().is_err());
}
