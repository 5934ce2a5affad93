//! TLS material: a configured certificate, or a self-signed one generated on
//! first start and persisted in the data directory. Clients pin the SHA-256
//! fingerprint of the DER certificate.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::config::TlsConfig;

/// TLS server name of generated certificates.
pub const SELF_SIGNED_NAME: &str = "tern-relay";
const CERT_FILE: &str = "relay-cert.der";
const KEY_FILE: &str = "relay-key.der";

/// A TLS failure at start-up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A PEM file could not be parsed.
    #[error("{path}: {source}")]
    Pem {
        /// The file.
        path: String,
        /// Why.
        source: rustls::pki_types::pem::Error,
    },
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// The certificate or key was refused.
    #[error("{0}")]
    Quic(String),
}

/// A certificate chain with its key.
pub struct Identity {
    /// Chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
}

impl Identity {
    /// Hex SHA-256 of the leaf certificate's DER encoding.
    pub fn fingerprint(&self) -> String {
        self.chain
            .first()
            .map(|c| fingerprint(c.as_ref()))
            .unwrap_or_default()
    }
}

/// Hex SHA-256 of a DER certificate.
pub fn fingerprint(der: &[u8]) -> String {
    tern_transport::CertFingerprint::of(der).to_string()
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Loads the configured certificate, or the persisted self-signed one,
/// generating it on first start.
pub fn load_identity(tls: Option<&TlsConfig>, data_dir: &Path) -> Result<Identity, TlsError> {
    match tls {
        Some(cfg) => load_pem(cfg),
        None => load_or_generate(data_dir),
    }
}

fn load_pem(cfg: &TlsConfig) -> Result<Identity, TlsError> {
    let pem_err = |path: &Path| {
        let path = path.display().to_string();
        move |source| TlsError::Pem { path, source }
    };
    let chain = CertificateDer::pem_file_iter(&cfg.cert)
        .map_err(pem_err(&cfg.cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err(&cfg.cert))?;
    let key = PrivateKeyDer::from_pem_file(&cfg.key).map_err(pem_err(&cfg.key))?;
    Ok(Identity { chain, key })
}

fn load_or_generate(data_dir: &Path) -> Result<Identity, TlsError> {
    let cert_path = data_dir.join(CERT_FILE);
    let key_path = data_dir.join(KEY_FILE);
    if cert_path.exists() && key_path.exists() {
        let cert = std::fs::read(&cert_path).map_err(io_err(&cert_path))?;
        let key = std::fs::read(&key_path).map_err(io_err(&key_path))?;
        return Ok(Identity {
            chain: vec![CertificateDer::from(cert)],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
        });
    }
    let generated = rcgen::generate_simple_self_signed(vec![SELF_SIGNED_NAME.to_owned()])?;
    let cert = generated.cert.der().to_vec();
    let key = generated.signing_key.serialize_der();
    write_private(&key_path, &key)?;
    std::fs::write(&cert_path, &cert).map_err(io_err(&cert_path))?;
    Ok(Identity {
        chain: vec![CertificateDer::from(cert)],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
    })
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io_err(path))?;
    file.write_all(bytes).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))
}

/// Builds the QUIC server configuration (TLS 1.3, ALPN `tern/1`, ring).
pub fn server_config(identity: Identity) -> Result<quinn::ServerConfig, TlsError> {
    tern_transport::server_config(identity.chain, identity.key)
        .map_err(|e| TlsError::Quic(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certificate_is_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_identity(None, dir.path()).unwrap();
        let second = load_identity(None, dir.path()).unwrap();
        assert_eq!(first.fingerprint(), second.fingerprint());
        assert_eq!(first.fingerprint().len(), 64);
        server_config(second).unwrap();
    }
}
