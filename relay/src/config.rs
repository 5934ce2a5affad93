//! Relay configuration: a TOML file (unknown keys are errors) overlaid by
//! command-line flags. Every field has a default, so no file is needed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Default UDP listen address.
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:4433";
/// Default data directory.
pub(crate) const DEFAULT_DATA_DIR: &str = "tern-data";

/// The whole relay configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// UDP address the QUIC endpoint binds.
    pub listen: SocketAddr,
    /// Directory holding the database, the generated certificate and blobs.
    pub data_dir: PathBuf,
    /// A real certificate; without it a self-signed one is generated.
    pub tls: Option<TlsConfig>,
    /// Who may create accounts.
    pub registration: Registration,
    /// How long undelivered log entries are kept.
    pub retention: RetentionConfig,
    /// Size limits, queue bounds and quotas.
    pub limits: LimitsConfig,
    /// SQLite tuning.
    pub storage: StorageConfig,
    /// Which database holds the relay's state.
    pub store: StoreConfig,
    /// Cluster mode: the bus between the nodes sharing a PostgreSQL store.
    pub cluster: ClusterConfig,
    /// TCP address of the Prometheus endpoint (`GET /metrics`); off when unset.
    pub metrics_listen: Option<SocketAddr>,
    /// Push wakeups for offline devices.
    pub push: PushConfig,
}

/// Push wakeups (UnifiedPush-style webhooks).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    /// Send wakeups at all.
    pub enabled: bool,
    /// Also POST to plain `http://` endpoints (off: https only).
    pub allow_http: bool,
    /// PEM file of CA certificates trusted for `https://` endpoints in
    /// addition to the system bundle (e.g. a private push gateway's CA).
    pub extra_ca_file: Option<PathBuf>,
}

impl Default for PushConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            allow_http: false,
            extra_ca_file: None,
        }
    }
}

/// Paths of a PEM certificate chain and its private key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Registration policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    /// Anyone may register.
    #[default]
    Open,
    /// Registration needs a token from `tern-relay invite create`.
    Invite,
}

/// Retention of the message log.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Undelivered entries older than this many days are deleted.
    pub days: u32,
    /// Seconds between retention sweeps (acknowledged and expired entries).
    pub sweep_interval_secs: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            days: 30,
            sweep_interval_secs: 3600,
        }
    }
}

impl RetentionConfig {
    /// The retention period in milliseconds.
    pub fn max_age_ms(&self) -> u64 {
        u64::from(self.days) * 24 * 3600 * 1000
    }
}

/// Limits that protect the relay from slow or hostile clients.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Events queued per connection before the relay stops pushing and
    /// tells the device to sync (SyncNeeded).
    pub delivery_queue_len: usize,
    /// Bytes (ciphertexts the device will receive, plus a small overhead per
    /// entry) one connection may have queued before it is told to sync.
    pub delivery_queue_bytes: usize,
    /// Bytes all connections together may have queued; beyond it, the
    /// connections that would exceed it are told to sync instead.
    pub delivery_bytes_total: usize,
    /// Concurrent request streams per connection, and requests of one
    /// connection in progress at once over all its streams (pipelining
    /// lets one stream carry several).
    pub max_streams_per_connection: u32,
    /// Seconds without any packet from a client before its connection is
    /// closed. With `keep_alive_interval_ms` it makes the presence TTL: a
    /// client that vanishes without closing (crash, lost network) is
    /// reported offline at most `idle_timeout_secs` + `keep_alive_interval_ms`
    /// after its last packet, since QUIC restarts the idle timer when the
    /// relay first sends after that packet (at the latest its keep-alive
    /// PING). Keep the sum below 5 s to meet the presence target.
    pub idle_timeout_secs: u64,
    /// Milliseconds of silence after which the relay sends a QUIC PING to a
    /// client; a healthy client acknowledges it, which keeps idle connections
    /// open. Must be below `idle_timeout_secs`.
    pub keep_alive_interval_ms: u64,
    /// Seconds a new connection has to authenticate.
    pub auth_timeout_secs: u64,
    /// Seconds a provisioning mailbox lives (device linking). An
    /// unauthenticated connection holding one may stay unauthenticated this
    /// long instead of `auth_timeout_secs`; a mailbox of an authenticated
    /// connection is closed after it too.
    pub provisioning_ttl_secs: u64,
    /// Seconds a peer has to finish a frame once its first byte arrived;
    /// a stream whose frame is late is answered `BAD_REQUEST` and stopped.
    pub frame_timeout_secs: u64,
    /// Request body bytes one authenticated connection may make the relay
    /// hold in memory at once (frames being read, requests in progress);
    /// beyond it the stream is answered `RATE_LIMITED` and stopped.
    /// Unauthenticated connections get a fixed 128 KiB.
    pub request_bytes_per_connection: usize,
    /// Request body bytes all authenticated connections together may make
    /// the relay hold beyond the first 64 KiB of each (so every user can
    /// always make small requests); beyond it streams are answered
    /// `UNAVAILABLE` and stopped.
    pub request_bytes_total: usize,
    /// Request body bytes all unauthenticated connections together
    /// (registration, linking) may make the relay hold; a pool of their
    /// own, so anonymous connections never take buffers from users.
    pub request_bytes_unauthenticated: usize,
    /// Below this many one-time prekeys a device is told to upload more.
    pub prekey_low_water: u32,
    /// Most sends waiting for the log writer before new ones are refused.
    pub commit_queue_len: usize,
    /// Most log appends committed in one transaction.
    pub max_commit_batch: usize,
    /// Largest send, all ciphertexts together, in bytes.
    pub max_message_bytes: usize,
    /// Largest blob (encrypted attachment) in bytes.
    pub max_blob_bytes: u64,
    /// Bytes of blobs one account may keep stored (uploads in progress
    /// included); uploads beyond it are refused with QUOTA_EXCEEDED until
    /// blobs expire with the retention period.
    pub blob_quota_bytes: u64,
    /// Ciphertext bytes queued for one device (not yet acknowledged by it)
    /// before sends to it are refused with QUOTA_EXCEEDED.
    pub max_queued_bytes_per_device: u64,
    /// Requests per second per device (0 = unlimited).
    pub requests_per_device_per_sec: u32,
    /// Requests a device may burst above its rate.
    pub request_burst: u32,
    /// New connections per second per source IP address (0 = unlimited).
    pub connections_per_ip_per_sec: u32,
    /// Connections a source address may burst above its rate.
    pub connection_burst: u32,
    /// One-time prekeys one requesting device may claim of one target
    /// device per hour (0 = unlimited). An honest client needs one per new
    /// session; beyond the limit the bundle comes without one-time prekeys
    /// (the session still starts, on the signed and last-resort prekeys).
    pub prekey_claims_per_pair_per_hour: u32,
    /// Claims of one target device by one requester in a burst.
    pub prekey_claim_pair_burst: u32,
    /// One-time prekeys all requesters together may claim of one device per
    /// hour (0 = unlimited), against draining by many accounts; beyond it
    /// bundles come without one-time prekeys.
    pub prekey_claims_per_device_per_hour: u32,
    /// Claims of one device in a burst.
    pub prekey_claim_device_burst: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            delivery_queue_len: 1024,
            delivery_queue_bytes: 4 * 1024 * 1024,
            delivery_bytes_total: 512 * 1024 * 1024,
            max_streams_per_connection: 64,
            idle_timeout_secs: 3,
            keep_alive_interval_ms: 1000,
            auth_timeout_secs: 10,
            provisioning_ttl_secs: 300,
            frame_timeout_secs: 20,
            request_bytes_per_connection: 8 * 1024 * 1024,
            request_bytes_total: 256 * 1024 * 1024,
            request_bytes_unauthenticated: 16 * 1024 * 1024,
            prekey_low_water: 10,
            commit_queue_len: 16_384,
            max_commit_batch: 512,
            max_message_bytes: 1024 * 1024,
            max_blob_bytes: 100 * 1024 * 1024,
            blob_quota_bytes: 1024 * 1024 * 1024,
            max_queued_bytes_per_device: 256 * 1024 * 1024,
            requests_per_device_per_sec: 500,
            request_burst: 2000,
            connections_per_ip_per_sec: 20,
            connection_burst: 200,
            prekey_claims_per_pair_per_hour: 6,
            prekey_claim_pair_burst: 3,
            prekey_claims_per_device_per_hour: 120,
            prekey_claim_device_burst: 40,
        }
    }
}

/// Storage tuning.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// SQLite `synchronous` setting for the message log: `full` (default,
    /// every commit is fsynced, survives power loss) or `normal` (survives a
    /// process crash, may lose the last commits on power loss).
    pub synchronous: Synchronous,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            synchronous: Synchronous::Full,
        }
    }
}

/// Which database holds the relay's state.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite` (default: `relay.db` in the data directory, one node) or
    /// `postgres` (several nodes share it, see docs/cluster.md).
    pub backend: Backend,
    /// PostgreSQL connection string (`postgres://user@host:port/db` or
    /// libpq key-value form); required with `backend = "postgres"`.
    pub url: Option<String>,
    /// Most PostgreSQL connections this node opens to each database.
    pub pool_size: usize,
    /// Connection strings of the chat shards, in a fixed order: chats,
    /// their members, logs and cursors live in shard `first 8 bytes of the
    /// chat id mod N`, while `url` keeps accounts, devices, prekeys and
    /// blobs. Empty (default): `url` holds everything. The list is fixed
    /// when the store is first opened (docs/cluster.md §8).
    pub chat_shards: Vec<String>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: Backend::Sqlite,
            url: None,
            pool_size: 16,
            chat_shards: Vec::new(),
        }
    }
}

/// Cluster mode (docs/cluster.md).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// NATS server of the cluster's bus, e.g. `nats://10.0.0.5:4222`; set
    /// on every node of a cluster (with `store.backend = "postgres"`).
    pub nats_url: Option<String>,
    /// This node's name on the bus and in logs (default: random at start).
    pub node_id: Option<String>,
}

/// A storage backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The embedded SQLite database.
    Sqlite,
    /// A PostgreSQL server shared by the nodes of a cluster.
    Postgres,
}

/// SQLite durability level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// fsync on every commit.
    Full,
    /// fsync at WAL checkpoints only.
    Normal,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 4433))),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            tls: None,
            registration: Registration::default(),
            retention: RetentionConfig::default(),
            limits: LimitsConfig::default(),
            storage: StorageConfig::default(),
            store: StoreConfig::default(),
            cluster: ClusterConfig::default(),
            metrics_listen: None,
            push: PushConfig::default(),
        }
    }
}

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped keys.
    #[error("invalid config {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: Box<toml::de::Error>,
    },
    /// A value is out of range.
    #[error("invalid config: {0}")]
    Invalid(&'static str),
}

/// Largest config file read.
const MAX_CONFIG_LEN: u64 = 1024 * 1024;

impl Config {
    /// Parses a TOML document.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(e),
        })?;
        config.check()?;
        Ok(config)
    }

    /// Reads and parses a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let read_err = |source| ConfigError::Read {
            path: path.to_owned(),
            source,
        };
        let len = std::fs::metadata(path).map_err(read_err)?.len();
        if len > MAX_CONFIG_LEN {
            return Err(ConfigError::Invalid("config file larger than 1 MiB"));
        }
        let text = std::fs::read_to_string(path).map_err(read_err)?;
        Self::from_toml(&text, path)
    }

    /// Checks value ranges.
    pub fn check(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        if l.delivery_queue_len == 0
            || l.delivery_queue_bytes == 0
            || l.delivery_bytes_total == 0
            || l.commit_queue_len == 0
            || l.max_commit_batch == 0
        {
            return Err(ConfigError::Invalid(
                "queue lengths and batch size must be > 0",
            ));
        }
        if l.max_streams_per_connection == 0
            || l.auth_timeout_secs == 0
            || l.idle_timeout_secs == 0
            || l.provisioning_ttl_secs == 0
            || l.frame_timeout_secs == 0
        {
            return Err(ConfigError::Invalid(
                "stream count and timeouts must be > 0",
            ));
        }
        if l.request_bytes_per_connection < tern_protocol::limits::MAX_FRAME_LEN
            || l.request_bytes_total < l.request_bytes_per_connection
            || l.request_bytes_unauthenticated < tern_protocol::limits::MAX_PRE_AUTH_FRAME_LEN
        {
            return Err(ConfigError::Invalid(
                "request_bytes_per_connection must hold one 2 MiB frame, request_bytes_total one connection's share, request_bytes_unauthenticated one 32 KiB frame",
            ));
        }
        if l.keep_alive_interval_ms == 0
            || l.keep_alive_interval_ms >= l.idle_timeout_secs.saturating_mul(1000)
        {
            return Err(ConfigError::Invalid(
                "keep_alive_interval_ms must be > 0 and below idle_timeout_secs",
            ));
        }
        if self.store.backend == Backend::Postgres
            && (self.store.url.is_none() || self.store.pool_size == 0)
        {
            return Err(ConfigError::Invalid(
                "backend = \"postgres\" needs store.url and a store.pool_size > 0",
            ));
        }
        if !self.store.chat_shards.is_empty() && self.store.backend != Backend::Postgres {
            return Err(ConfigError::Invalid(
                "store.chat_shards needs store.backend = \"postgres\"",
            ));
        }
        if self.cluster.nats_url.is_some() && self.store.backend != Backend::Postgres {
            return Err(ConfigError::Invalid(
                "cluster.nats_url needs store.backend = \"postgres\" (the nodes share it)",
            ));
        }
        if self.retention.days == 0 || self.retention.sweep_interval_secs == 0 {
            return Err(ConfigError::Invalid(
                "retention.days and retention.sweep_interval_secs must be > 0",
            ));
        }
        Ok(())
    }

    /// Path of the SQLite database.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("relay.db")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::from_toml("", Path::new("x")).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.retention.days, 30);
        assert_eq!(c.storage.synchronous, Synchronous::Full);
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(Config::from_toml("listn = \"1.2.3.4:1\"", Path::new("x")).is_err());
        assert!(Config::from_toml("[limits]\nfoo = 1", Path::new("x")).is_err());
    }

    #[test]
    fn values_are_read() {
        let c = Config::from_toml(
            "listen = \"0.0.0.0:9000\"\nregistration = \"invite\"\n[limits]\ndelivery_queue_len = 8\n[storage]\nsynchronous = \"normal\"",
            Path::new("x"),
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.registration, Registration::Invite);
        assert_eq!(c.limits.delivery_queue_len, 8);
        assert_eq!(c.storage.synchronous, Synchronous::Normal);
    }

    #[test]
    fn the_postgres_backend_needs_a_url() {
        let c = Config::from_toml(
            "[store]\nbackend = \"postgres\"\nurl = \"postgres://u@h/db\"\npool_size = 4",
            Path::new("x"),
        )
        .unwrap();
        assert_eq!(c.store.backend, Backend::Postgres);
        assert_eq!(c.store.pool_size, 4);
        assert!(Config::from_toml("[store]\nbackend = \"postgres\"", Path::new("x")).is_err());
        assert!(Config::from_toml("[store]\nbackend = \"mysql\"", Path::new("x")).is_err());
        let sqlite_cluster = "[cluster]\nnats_url = \"nats://127.0.0.1:4222\"";
        assert!(Config::from_toml(sqlite_cluster, Path::new("x")).is_err());
        let sqlite_shards = "[store]\nchat_shards = [\"postgres://u@h/c0\"]";
        assert!(Config::from_toml(sqlite_shards, Path::new("x")).is_err());
        let sharded = Config::from_toml(
            "[store]\nbackend = \"postgres\"\nurl = \"postgres://u@h/d\"\nchat_shards = [\"postgres://u@h/c0\", \"postgres://v@h/c1\"]",
            Path::new("x"),
        )
        .unwrap();
        assert_eq!(sharded.store.chat_shards.len(), 2);
    }

    #[test]
    fn zero_limits_are_rejected() {
        assert!(Config::from_toml("[limits]\ndelivery_queue_len = 0", Path::new("x")).is_err());
    }

    #[test]
    fn keep_alive_must_be_shorter_than_the_idle_timeout() {
        let bad = "[limits]\nidle_timeout_secs = 2\nkeep_alive_interval_ms = 2000";
        assert!(Config::from_toml(bad, Path::new("x")).is_err());
        assert!(Config::from_toml("[limits]\nkeep_alive_interval_ms = 0", Path::new("x")).is_err());
    }

    #[test]
    fn default_presence_ttl_meets_the_five_second_target() {
        let l = LimitsConfig::default();
        let ttl_ms = l.idle_timeout_secs * 1000 + l.keep_alive_interval_ms;
        assert!(ttl_ms < 5000, "presence TTL {ttl_ms} ms");
        assert!(l.keep_alive_interval_ms * 3 <= l.idle_timeout_secs * 1000);
    }
}
