//! Push wakeups: when an entry arrives for an account with no connected
//! device, POST a content-free request to each of its devices' registered
//! UnifiedPush-style endpoints. Wakeups are coalesced per device (at most one
//! per `MIN_INTERVAL`), the queue is bounded (excess wakeups are dropped:
//! the device syncs everything when it connects anyway), and nothing about
//! the message (sender, chat, content) is ever sent.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_protocol::UserId;
use tokio::sync::mpsc;

use crate::store::{DeviceAddr, Store};

/// Shortest time between two wakeups of one device.
const MIN_INTERVAL: Duration = Duration::from_secs(10);
/// Wakeups waiting to be sent before new ones are dropped.
const QUEUE_LEN: usize = 4096;
/// Connect, write and read timeout of one POST.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Devices remembered for coalescing before the table is pruned.
const MAX_REMEMBERED: usize = 100_000;

/// Hands wakeups to the push worker.
#[derive(Clone)]
pub struct Pusher {
    tx: mpsc::Sender<UserId>,
}

impl Pusher {
    /// Starts the worker on the current tokio runtime.
    pub fn spawn(store: Arc<dyn Store>, allow_http: bool) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_LEN);
        tokio::spawn(run(store, rx, allow_http));
        Self { tx }
    }

    /// Wakes the devices of an account that has no connection (never blocks).
    pub fn wake(&self, user: UserId) {
        let _ = self.tx.try_send(user);
    }
}

async fn run(store: Arc<dyn Store>, mut rx: mpsc::Receiver<UserId>, allow_http: bool) {
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
            tokio::task::spawn_blocking(move || {
                if let Err(e) = post(&url, allow_http) {
                    tracing::debug!(error = %e, "push wakeup failed");
                }
            });
        }
    }
}

/// Why a wakeup could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
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

/// Sends one content-free POST and checks for a 2xx answer.
pub fn post(url: &str, allow_http: bool) -> Result<(), PushError> {
    let t = parse(url, allow_http)?;
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
        let mut tls = tls_stream(t.host, tcp)?;
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
    host: &str,
    tcp: TcpStream,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, PushError> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let bundle = "/etc/ssl/certs/ca-certificates.crt";
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(bundle)
        .map_err(|_| PushError::BadUrl("no system CA bundle"))?
        .flatten()
    {
        let _ = roots.add(cert);
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|_| PushError::BadUrl("bad host name"))?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name)?;
    Ok(rustls::StreamOwned::new(conn, tcp))
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
