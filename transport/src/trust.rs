//! How a client decides to trust a relay's certificate.
//!
//! Self-hosted relays generate a self-signed certificate; clients pin the
//! SHA-256 of its DER encoding (printed by `tern-relay serve`). Relays with a
//! real certificate are checked against certificate roots instead. Either
//! way the TLS 1.3 handshake signature is verified with the certificate's
//! key, so pinning authenticates the relay exactly like a CA chain would.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tern_protocol::limits::ALPN;

use crate::config::transport_config;

/// SHA-256 of a certificate's DER encoding.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CertFingerprint(pub [u8; 32]);

impl CertFingerprint {
    /// The fingerprint of a DER certificate.
    pub fn of(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }
}

impl fmt::Display for CertFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for CertFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertFingerprint({self})")
    }
}

/// A fingerprint string is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a certificate fingerprint is 64 hex digits (colons allowed), got {0:?}")]
pub struct BadFingerprint(String);

impl FromStr for CertFingerprint {
    type Err = BadFingerprint;

    /// Parses 64 hex digits, optionally separated by colons, any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits: String = s.chars().filter(|c| *c != ':').collect();
        let mut out = [0u8; 32];
        hex::decode_to_slice(&digits, &mut out).map_err(|_| BadFingerprint(s.to_owned()))?;
        Ok(Self(out))
    }
}

/// What a client accepts as the relay's certificate.
#[derive(Clone, Debug)]
pub enum TrustPolicy {
    /// Exactly the certificate with this fingerprint (self-signed relays).
    Pinned(CertFingerprint),
    /// Any certificate that chains to these roots and names the server.
    Roots(Arc<RootCertStore>),
}

/// The client TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[error("client TLS configuration: {0}")]
pub struct TrustError(String);

impl TrustPolicy {
    /// A quinn client configuration speaking ALPN `tern/1` under this policy.
    pub fn client_config(&self) -> Result<quinn::ClientConfig, TrustError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TrustError(e.to_string()))?;
        let mut tls = match self {
            Self::Pinned(pin) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedVerifier::new(*pin, &provider)))
                .with_no_client_auth(),
            Self::Roots(roots) => builder
                .with_root_certificates(roots.clone())
                .with_no_client_auth(),
        };
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .map_err(|e| TrustError(e.to_string()))?;
        let mut config = quinn::ClientConfig::new(Arc::new(quic));
        config.transport_config(transport_config(true));
        Ok(config)
    }
}

/// Accepts exactly one certificate, compared by SHA-256 in constant time,
/// and verifies handshake signatures with its key.
#[derive(Debug)]
struct PinnedVerifier {
    pin: CertFingerprint,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedVerifier {
    fn new(pin: CertFingerprint, provider: &CryptoProvider) -> Self {
        Self {
            pin,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen = CertFingerprint::of(end_entity.as_ref());
        if bool::from(seen.0.ct_eq(&self.pin.0)) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
