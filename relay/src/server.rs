//! Start-up and shutdown: storage, the log writer, TLS and the QUIC
//! endpoint.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::{Endpoint, TransportConfig, VarInt};

use crate::blobs::BlobStore;
use crate::config::Config;
use crate::connection::{self, CLOSE_SHUTDOWN};
use crate::error::StoreError;
use crate::log_writer::{LogWriter, Wake};
use crate::metrics::Metrics;
use crate::push::Pusher;
use crate::router::Router;
use crate::service::Relay;
use crate::tls::{self, TlsError};

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory or socket could not be set up.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The database could not be opened or migrated.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// TLS material is unusable.
    #[error("{0}")]
    Tls(#[from] TlsError),
    /// The configuration is invalid.
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
}

/// A running relay.
pub struct Server {
    endpoint: Endpoint,
    relay: Arc<Relay>,
    bus: Option<crate::cluster::nats::Bus>,
    writer: std::thread::JoinHandle<()>,
    fingerprint: String,
    metrics_listener: Option<std::net::TcpListener>,
}

/// How long shutdown waits for connections to close.
const DRAIN: Duration = Duration::from_secs(5);

fn transport(config: &Config) -> Result<TransportConfig, StartError> {
    let mut t = TransportConfig::default();
    let idle = Duration::from_secs(config.limits.idle_timeout_secs);
    let idle = quinn::IdleTimeout::try_from(idle)
        .map_err(|_| crate::config::ConfigError::Invalid("idle_timeout_secs too large"))?;
    t.max_idle_timeout(Some(idle));
    t.keep_alive_interval(Some(Duration::from_millis(
        config.limits.keep_alive_interval_ms,
    )));
    crate::intake::configure(&mut t);
    t.datagram_receive_buffer_size(Some(64 * 1024));
    Ok(t)
}

/// Deletes acknowledged and expired log entries periodically.
async fn sweep_retention(relay: Arc<Relay>) {
    let retention = relay.config.retention.clone();
    let mut every = tokio::time::interval(Duration::from_secs(retention.sweep_interval_secs));
    loop {
        every.tick().await;
        let cutoff = crate::service::now_ms().saturating_sub(retention.max_age_ms());
        match relay.blocking(move |s| s.collect_garbage(cutoff)).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "retention sweep"),
            Err(e) => tracing::warn!(error = %e, "retention sweep failed"),
        }
        let blob_cutoff = std::time::UNIX_EPOCH + Duration::from_millis(cutoff);
        let sweeping = relay.clone();
        match tokio::task::spawn_blocking(move || sweeping.blobs.sweep(blob_cutoff)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(deleted = n, "blob retention sweep"),
            Ok(Err(e)) => tracing::warn!(error = %e, "blob retention sweep failed"),
            Err(e) => tracing::warn!(error = %e, "blob retention sweep panicked"),
        }
    }
}

/// This node's view of its cluster and the queue its bus publishes from.
type ClusterParts = (
    Arc<crate::cluster::Cluster>,
    tokio::sync::mpsc::Receiver<crate::cluster::Outgoing>,
);

/// The router, and in cluster mode what the bus needs.
fn cluster_parts(config: &Config) -> Result<(Router, Option<ClusterParts>), StartError> {
    let queued = config.limits.delivery_bytes_total;
    if config.cluster.nats_url.is_none() {
        return Ok((Router::new(queued), None));
    }
    let node_id = match &config.cluster.node_id {
        Some(id) => id.clone(),
        None => {
            let mut raw = [0u8; 8];
            getrandom::fill(&mut raw).map_err(|e| std::io::Error::other(e.to_string()))?;
            hex::encode(raw)
        }
    };
    tracing::info!(node_id, "cluster mode");
    let (link, outgoing) = crate::cluster::Link::new();
    let router = Router::clustered(queued, link.clone(), crate::cluster::SEQUENCED_CHATS);
    let state = Arc::new(crate::cluster::Cluster::new(node_id, link));
    Ok((router, Some((state, outgoing))))
}

impl Server {
    /// Opens storage, starts the log writer and binds the endpoint. Must be
    /// called inside a tokio runtime.
    pub fn start(config: Config) -> Result<Self, StartError> {
        config.check()?;
        std::fs::create_dir_all(&config.data_dir)?;
        let store = crate::store::open(&config)?;
        let identity = tls::load_identity(config.tls.as_ref(), &config.data_dir)?;
        let fingerprint = identity.fingerprint();
        let mut server_config = tls::server_config(identity)?;
        server_config.transport_config(Arc::new(transport(&config)?));
        let endpoint = tern_transport::server_endpoint(server_config, config.listen)?;
        let (router, cluster) = cluster_parts(&config)?;
        let router = Arc::new(router);
        let metrics = Arc::new(Metrics::default());
        let wake = config
            .push
            .enabled
            .then(|| Pusher::spawn(store.clone(), &config.push))
            .transpose()?
            .map(|pusher| Wake {
                pusher,
                cluster: cluster.as_ref().map(|(state, _)| state.clone()),
            });
        let metrics_listener = config
            .metrics_listen
            .map(crate::metrics::bind)
            .transpose()?;
        let (log, writer) = LogWriter::spawn(
            store.clone(),
            router.clone(),
            metrics.clone(),
            wake,
            (
                config.limits.commit_queue_len,
                config.limits.max_commit_batch,
            ),
        )?;
        let blobs = BlobStore::for_config(&config)?;
        let nats_url = config.cluster.nats_url.clone();
        let relay = Arc::new(Relay::new(
            store,
            router,
            log,
            Arc::new(config),
            metrics,
            blobs,
            cluster.as_ref().map(|(state, _)| state.clone()),
        ));
        let bus = cluster.zip(nats_url).map(|((state, outgoing), url)| {
            crate::cluster::nats::spawn(url, relay.clone(), state, outgoing)
        });
        Ok(Self {
            endpoint,
            relay,
            bus,
            writer,
            fingerprint,
            metrics_listener,
        })
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// The bound metrics address, when metrics are enabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref()?.local_addr().ok()
    }

    /// Hex SHA-256 of the certificate clients pin.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Serves connections until `shutdown` resolves, then closes every
    /// connection and waits for in-flight commits to finish.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let metrics = self.metrics_listener.map(|listener| {
            let relay = self.relay.clone();
            tokio::spawn(async move {
                if let Err(e) = crate::metrics::serve(listener, relay).await {
                    tracing::error!(error = %e, "metrics endpoint failed");
                }
            })
        });
        let sweeper = tokio::spawn(sweep_retention(self.relay.clone()));
        let accept = async {
            while let Some(incoming) = self.endpoint.accept().await {
                let source = incoming.remote_address().ip();
                if self
                    .relay
                    .address_limits
                    .check(source, Instant::now())
                    .is_err()
                {
                    tracing::debug!(%source, "connection refused: rate limited");
                    incoming.refuse();
                    continue;
                }
                tokio::spawn(connection::serve(self.relay.clone(), incoming));
            }
        };
        tokio::select! {
            () = accept => {}
            () = shutdown => {}
        }
        tracing::info!("shutting down");
        if let Some(task) = metrics {
            task.abort();
        }
        sweeper.abort();
        if let Some(bus) = self.bus {
            bus.leave().await;
        }
        self.endpoint
            .close(VarInt::from_u32(CLOSE_SHUTDOWN), b"relay shutting down");
        let _ = tokio::time::timeout(DRAIN, self.endpoint.wait_idle()).await;
        drop(self.relay);
        let writer = self.writer;
        let joined = tokio::task::spawn_blocking(move || writer.join());
        if tokio::time::timeout(DRAIN, joined).await.is_err() {
            tracing::warn!("log writer still busy at shutdown");
        }
    }
}
