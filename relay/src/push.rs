//! Push wakeups: when an entry arrives for an account with no connected
//! device, POST a content-free request to each of its devices' registered
//! UnifiedPush-style endpoints. Wakeups are coalesced per device (at most one
//! per `MIN_INTERVAL`), the queue is bounded (excess wakeups are dropped:
//! the device syncs everything when it connects anyway), and nothing about
//! the message (sender, chat, content) is ever sent.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tern_protocol::UserId;
use tokio::sync::mpsc;

use crate::config::PushConfig;
use crate::store::{DeviceAddr, Store};
use crate::tls::TlsError;

/// Shortest time between two wakeups of one device.
const MIN_INTERVAL: Duration = Duration::from_secs(10);
/// Wakeups waiting to be sent before new ones are dropped.
const QUEUE_LEN: usize = 4096;
/// Connect, write and read timeout of one POST.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Devices remembered for coalescing before the table is pruned.
const MAX_REMEMBERED: usize = 100_000;
/// The system's CA bundle (Debian layout), trusted for https endpoints.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// How wakeups are sent: which schemes are allowed and whom TLS trusts.
#[derive(Clone)]
pub(crate) struct PushClient {
    allow_http: bool,
    tls: Arc<rustls::ClientConfig>,
}

fn pem_err(path: &Path) -> impl FnOnce(rustls::pki_types::pem::Error) -> TlsError + '_ {
    move |source| TlsError::Pem {
        path: path.display().to_string(),
        source,
    }
}

fn add_pem_roots(roots: &mut rustls::RootCertStore, path: &Path) -> Result<usize, TlsError> {
    let mut added = 0;
    for cert in CertificateDer::pem_file_iter(path).map_err(pem_err(path))? {
        if roots.add(cert.map_err(pem_err(path))?).is_ok() {
            added += 1;
        }
    }
    Ok(added)
}

impl PushClient {
    /// Trusts the system CA bundle plus `config.extra_ca_file`, read now:
    /// an unreadable extra file is a start-up error; a missing system
    /// bundle only leaves the extra roots.
    pub(crate) fn new(config: &PushConfig) -> Result<Self, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        if let Err(e) = add_pem_roots(&mut roots, Path::new(SYSTEM_CA_BUNDLE)) {
            tracing::warn!(error = %e, "no system CA bundle for https push endpoints");
        }
        if let Some(extra) = &config.extra_ca_file {
            if add_pem_roots(&mut roots, extra)? == 0 {
                return Err(TlsError::Quic(format!(
                    "{}: no CA certificate found",
                    extra.display()
                )));
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Quic(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Self {
            allow_http: config.allow_http,
            tls: Arc::new(tls),
        })
    }
}

/// Hands wakeups to the push worker.
#[derive(Clone)]
pub(crate) struct Pusher {
    tx: mpsc::Sender<UserId>,
}

impl Pusher {
    /// Starts the worker on the current tokio runtime.
    pub(crate) fn spawn(store: Arc<dyn Store>, config: &PushConfig) -> Result<Self, TlsError> {
        let client = PushClient::new(config)?;
        let (tx, rx) = mpsc::channel(QUEUE_LEN);
        tokio::spawn(run(store, rx, client));
        Ok(Self { tx })
    }

    /// Wakes the devices of an account that has no connection (never blocks).
    pub(crate) fn wake(&self, user: UserId) {
        let _ = self.tx.try_send(user);
    }
}

async fn run(store: Arc<dyn Store>, mut rx: mpsc::Receiver<UserId>, client: PushClient) {
    let mut last: HashMap<DeviceAddr, Instant> = HashMap::new();
    while let Some(user) = rx.recv().await {
        let lookup = store.clone();
        let targets = match tokio::task::spawn_blocking(move || lookup.push_targets(&user)).await {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "push endpoint lookup failed");
                continue;
            }
            Err(_) => continue,
        };
        if last.len() > MAX_REMEMBERED {
            last.retain(|_, at| at.elapsed() < MIN_INTERVAL);
        }
        for (device, url) in targets {
            if last
                .get(&device)
                .is_some_and(|at| at.elapsed() < MIN_INTERVAL)
            {
                continue;
            }
            last.insert(device, Instant::now());
            let client = client.clone();
            tokio::task::spawn_blocking(move || {
                if let Err(e) = client.post(&url) {
                    tracing::debug!(error = %e, "push wakeup failed");
                }
            });
        }
    }
}

/// Why a wakeup could not be delivered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PushError {
    /// The URL is not usable.
    #[error("push endpoint refused: {0}")]
    BadUrl(&'static str),
    /// Network failure.
    #[error("push endpoint unreachable: {0}")]
    Io(#[from] std::io::Error),
    /// TLS failure.
    #[error("push endpoint TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// The endpoint answered with an error status.
    #[error("push endpoint answered {0}")]
    Status(String),
}

struct Target<'a> {
    tls: bool,
    host: &'a str,
    port: u16,
    path: &'a str,
}

fn parse(url: &str, allow_http: bool) -> Result<Target<'_>, PushError> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        if !allow_http {
            return Err(PushError::BadUrl("plain http endpoints are disabled"));
        }
        (false, rest)
    } else {
        return Err(PushError::BadUrl("not an http(s) URL"));
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().map_err(|_| PushError::BadUrl("bad port"))?),
        None => (authority, if tls { 443 } else { 80 }),
    };
    if host.is_empty() || authority.contains('@') || path.contains(['\r', '\n', ' ']) {
        return Err(PushError::BadUrl("malformed URL"));
    }
    Ok(Target {
        tls,
        host,
        port,
        path,
    })
}

impl PushClient {
    /// Sends one content-free POST and checks for a 2xx answer.
    pub(crate) fn post(&self, url: &str) -> Result<(), PushError> {
        let t = parse(url, self.allow_http)?;
        let addr = (t.host, t.port)
            .to_socket_addrs()?
            .next()
            .ok_or(PushError::BadUrl("host does not resolve"))?;
        let tcp = TcpStream::connect_timeout(&addr, TIMEOUT)?;
        tcp.set_read_timeout(Some(TIMEOUT))?;
        tcp.set_write_timeout(Some(TIMEOUT))?;
        let request = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nTTL: 86400\r\nUrgency: high\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            t.path, t.host
        );
        let mut head = [0u8; 64];
        let n = if t.tls {
            let mut tls = self.tls_stream(t.host, tcp)?;
            tls.write_all(request.as_bytes())?;
            tls.read(&mut head)?
        } else {
            let mut tcp = tcp;
            tcp.write_all(request.as_bytes())?;
            tcp.read(&mut head)?
        };
        let status = String::from_utf8_lossy(&head[..n]);
        let code = status.split_whitespace().nth(1).unwrap_or("");
        if code.starts_with('2') {
            Ok(())
        } else {
            Err(PushError::Status(code.to_owned()))
        }
    }

    fn tls_stream(
        &self,
        host: &str,
        tcp: TcpStream,
    ) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, PushError> {
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|_| PushError::BadUrl("bad host name"))?;
        let conn = rustls::ClientConnection::new(self.tls.clone(), name)?;
        Ok(rustls::StreamOwned::new(conn, tcp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_parsed_strictly() {
        let t = parse("https://push.example:8443/up/abc?x=1", false).unwrap();
        assert!(t.tls);
        assert_eq!(
            (t.host, t.port, t.path),
            ("push.example", 8443, "/up/abc?x=1")
        );
        let t = parse("http://127.0.0.1", true).unwrap();
        assert_eq!((t.port, t.path), (80, "/"));
        assert!(parse("http://127.0.0.1/", false).is_err());
        assert!(parse("ftp://x/", true).is_err());
        assert!(parse("https://user@x/", true).is_err());
        assert!(parse("https://x/a b", true).is_err());
    }
}
