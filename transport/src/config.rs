//! Transport parameters shared by relay and clients.

use std::sync::Arc;
use std::time::Duration;

use quinn::{TransportConfig, VarInt};

/// A connection with no traffic for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Clients send a QUIC PING after this much silence, well inside
/// [`IDLE_TIMEOUT`], so idle but healthy connections stay open.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// Most concurrent request streams a peer may open.
pub const MAX_CONCURRENT_STREAMS: u32 = 256;

/// Receive buffer for QUIC datagrams (ephemeral events).
pub const DATAGRAM_RECEIVE_BUFFER: usize = 64 * 1024;

/// Transport parameters for a Tern endpoint. `keep_alive` is set on clients.
pub fn transport_config(keep_alive: bool) -> Arc<TransportConfig> {
    let mut config = TransportConfig::default();
    config
        .max_idle_timeout(Some(
            VarInt::from_u32(IDLE_TIMEOUT.as_millis() as u32).into(),
        ))
        .keep_alive_interval(keep_alive.then_some(KEEP_ALIVE_INTERVAL))
        .max_concurrent_bidi_streams(VarInt::from_u32(MAX_CONCURRENT_STREAMS))
        .max_concurrent_uni_streams(VarInt::from_u32(4))
        .datagram_receive_buffer_size(Some(DATAGRAM_RECEIVE_BUFFER));
    Arc::new(config)
}

/// The server configuration could not be built from the certificate and key.
#[derive(Debug, thiserror::Error)]
#[error("server TLS configuration: {0}")]
pub struct ServerConfigError(String);

/// A quinn server configuration speaking ALPN `tern/1` (TLS 1.3 only, ring
/// provider) with the shared transport parameters.
pub fn server_config(
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> Result<quinn::ServerConfig, ServerConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ServerConfigError(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| ServerConfigError(e.to_string()))?;
    tls.alpn_protocols = vec![tern_protocol::limits::ALPN.to_vec()];
    tls.max_early_data_size = 0;
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| ServerConfigError(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    config.transport_config(transport_config(false));
    Ok(config)
}
