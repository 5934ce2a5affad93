//! The relay's request logic, shared by every connection: validated
//! requests in, responses out. Connections (the QUIC shell) only frame and
//! route bytes; everything a request means is decided here and in the
//! domain modules it dispatches to.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tern_protocol::wire::{request, response};

use crate::blobs::BlobStore;
use crate::config::Config;
use crate::error::{RelayError, StoreError};
use crate::log_writer::LogWriter;
use crate::metrics::Metrics;
use crate::prekeys::PrekeyClaims;
use crate::presence::PresenceBook;
use crate::provisioning::ProvisioningBoard;
use crate::ratelimit::RateLimiter;
use crate::router::Mailbox;
use crate::router::Router;
use crate::store::{DeviceAddr, Store};

/// Shared state of a running relay.
pub(crate) struct Relay {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) router: Arc<Router>,
    pub(crate) log: LogWriter,
    pub(crate) config: Arc<Config>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) presence: PresenceBook,
    pub(crate) blobs: BlobStore,
    pub(crate) provisioning: Arc<ProvisioningBoard>,
    pub(crate) device_limits: RateLimiter<DeviceAddr>,
    pub(crate) address_limits: RateLimiter<std::net::IpAddr>,
    pub(crate) prekey_claims: Arc<PrekeyClaims>,
    /// Relay-wide budgets of request bodies held in memory; each
    /// connection charges a share of its own inside them.
    pub(crate) request_pools: crate::intake::Pools,
    /// This node's view of its cluster; `None` for a single relay.
    pub(crate) cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Bounds storage calls in flight to the store's connection pool, so
    /// waiting requests queue as cheap futures, not as blocked threads.
    storage_slots: tokio::sync::Semaphore,
}

/// An authenticated connection as request handlers see it.
pub(crate) struct Session {
    /// The device it authenticated as.
    pub device: DeviceAddr,
    /// Its delivery queue.
    pub mailbox: Arc<Mailbox>,
}

/// Storage calls in flight at once: the connections of the store's pool.
fn storage_slots(config: &Config) -> usize {
    match config.store.backend {
        crate::config::Backend::Sqlite => crate::store::sqlite::POOL_SIZE,
        crate::config::Backend::Postgres => config.store.pool_size,
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Relay {
    /// Assembles a relay from its parts.
    pub(crate) fn new(
        store: Arc<dyn Store>,
        router: Arc<Router>,
        log: LogWriter,
        config: Arc<Config>,
        metrics: Arc<Metrics>,
        blobs: BlobStore,
        cluster: Option<Arc<crate::cluster::Cluster>>,
    ) -> Self {
        let limits = &config.limits;
        let device_limits =
            RateLimiter::new(limits.requests_per_device_per_sec, limits.request_burst);
        let address_limits =
            RateLimiter::new(limits.connections_per_ip_per_sec, limits.connection_burst);
        let prekey_claims = PrekeyClaims::new(limits);
        let request_pools = crate::intake::Pools::new(limits);
        let storage_slots = tokio::sync::Semaphore::new(storage_slots(&config));
        Self {
            store,
            router,
            log,
            config,
            metrics,
            presence: PresenceBook::default(),
            blobs,
            provisioning: Arc::default(),
            device_limits,
            address_limits,
            prekey_claims,
            request_pools,
            storage_slots,
            cluster,
        }
    }

    /// Runs a blocking storage call on the blocking thread pool.
    pub(crate) async fn blocking<T, F>(&self, f: F) -> Result<T, RelayError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    {
        let _slot = self
            .storage_slots
            .acquire()
            .await
            .map_err(|_| RelayError::Unavailable("relay is shutting down"))?;
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&*store))
            .await
            .map_err(|_| RelayError::Unavailable("storage worker failed"))?
            .map_err(|e| RelayError::from(e).flatten())
    }

    /// Handles a request of an authenticated device.
    pub(crate) async fn handle(
        &self,
        session: &Session,
        kind: Option<request::Kind>,
    ) -> Result<response::Kind, RelayError> {
        use request::Kind;
        let device = session.device;
        self.device_limits
            .check(device, std::time::Instant::now())
            .map_err(RelayError::RateLimited)?;
        let kind = kind.ok_or(RelayError::BadRequest("empty request"))?;
        self.metrics.count_request(&kind);
        match kind {
            Kind::RegisterAccount(_) | Kind::RegisterDevice(_) => Err(RelayError::BadRequest(
                "registration goes on the control stream of an unauthenticated connection",
            )),
            Kind::PublishDeviceList(r) => self.publish_device_list(device, r).await,
            Kind::RemoveDevice(r) => self.remove_device(device, r).await,
            Kind::LookupUser(r) => self.lookup_user(r).await,
            Kind::UploadPrekeys(r) => self.upload_prekeys(device, r).await,
            Kind::FetchBundles(r) => self.fetch_bundles(device, r).await,
            Kind::CreateChat(r) => self.create_chat(device, r).await,
            Kind::ChangeMembers(r) => self.change_members(device, r).await,
            Kind::GetChat(r) => self.get_chat(device, r).await,
            Kind::ListChats(_) => self.list_chats(device).await,
            Kind::Send(r) => {
                let acked = self.send(device, r).await;
                if acked.is_ok() {
                    self.metrics.messages_in.fetch_add(1, Ordering::Relaxed);
                }
                acked
            }
            Kind::AckDelivered(r) => self.ack_delivered(device, r).await,
            Kind::Sync(r) => self.sync(device, r).await,
            Kind::SetPushEndpoint(r) => self.set_push_endpoint(device, r).await,
            Kind::SubscribePresence(r) => self.subscribe_presence(session, r).await,
            Kind::BlobUploadStart(_) | Kind::BlobDownload(_) => Err(RelayError::BadRequest(
                "blob transfers need their own stream",
            )),
            Kind::ProvisioningOpen(_) | Kind::ProvisioningSend(_) => Err(RelayError::BadRequest(
                "provisioning belongs to the connection, not to a device",
            )),
        }
    }
}
