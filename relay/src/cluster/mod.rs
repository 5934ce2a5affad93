//! Cluster mode: several relay nodes share one PostgreSQL database (the
//! system of record) and talk over NATS (the bus). See docs/cluster.md.
//!
//! Nothing durable depends on the bus. A node publishes what it committed
//! and what concerns devices online elsewhere (events, typing, presence,
//! revocations); every node delivers what concerns its own connections.
//! A lost, late or repeated notice costs at most a sync: the
//! [`sequencer`] hands a chat's entries to devices in seq order or makes
//! them sync from the log, and while the bus is down every device of the
//! node syncs periodically.
//!
//! [`Sequencer`] and [`Nodes`] are sans-IO; [`nats`] is the async shell.

pub mod codec;
pub(crate) mod nats;
mod nodes;
mod sequencer;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tern_protocol::UserId;
use tern_protocol::cluster::DeviceNotice;
use tokio::sync::mpsc;

use crate::error::RelayError;
use crate::router::CommittedEntry;
pub(crate) use nodes::Nodes;
pub(crate) use sequencer::{Admit, HOLD, Sequencer};

/// Messages queued for the bus before the oldest are dropped.
const OUTGOING_QUEUE: usize = 16 * 1024;
/// Chats whose last handled seq a node remembers (see [`Sequencer`]).
pub(crate) const SEQUENCED_CHATS: usize = 1_000_000;

/// Something this node tells the others.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// Entries this node committed, in commit order.
    Entries(Vec<Arc<CommittedEntry>>),
    /// An event, ephemeral event or revocation for an account's devices.
    Device(Box<DeviceNotice>),
    /// An account came online here, or its last device here left.
    Presence {
        /// The account.
        user: UserId,
        /// Its state on this node.
        online: bool,
    },
}

/// The way to the bus: a bounded queue the publishing task drains. Never
/// blocks; when the queue is full the message is dropped and counted.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    tx: mpsc::Sender<Outgoing>,
    dropped: Arc<AtomicU64>,
}

impl Link {
    /// A link and the receiving end for [`nats::spawn`].
    pub(crate) fn new() -> (Self, mpsc::Receiver<Outgoing>) {
        let (tx, rx) = mpsc::channel(OUTGOING_QUEUE);
        let link = Self {
            tx,
            dropped: Arc::default(),
        };
        (link, rx)
    }

    /// Queues a message for the other nodes.
    pub(crate) fn send(&self, out: Outgoing) {
        if self.tx.try_send(out).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Messages dropped because the queue was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// This node's view of the cluster.
#[derive(Debug)]
pub(crate) struct Cluster {
    /// This node's id (in every message it publishes).
    pub(crate) node_id: String,
    /// The other nodes and who is online there.
    pub(crate) nodes: Mutex<Nodes>,
    /// The way to the bus.
    pub(crate) link: Link,
    /// Counters for `/metrics`.
    pub(crate) stats: BusStats,
    /// The NATS connection, once the bus task has made it (for requests).
    pub(crate) client: std::sync::OnceLock<async_nats::Client>,
}

/// Bus counters, exported on `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct BusStats {
    /// Messages published.
    pub(crate) published: AtomicU64,
    /// Messages received from other nodes.
    pub(crate) received: AtomicU64,
    /// Messages that could not be published or decoded.
    pub(crate) failed: AtomicU64,
    /// Whether the bus is connected (1) or not (0).
    pub(crate) connected: AtomicU64,
}

impl Cluster {
    /// This node's state, linked to the bus through `link`.
    pub(crate) fn new(node_id: String, link: Link) -> Self {
        Self {
            node_id,
            nodes: Mutex::default(),
            link,
            stats: BusStats::default(),
            client: std::sync::OnceLock::new(),
        }
    }

    /// Hands a provisioning message to the node holding the mailbox
    /// `address` (request `tern.provisioning.<hex address>`); `NOT_FOUND`
    /// when no node answers in time.
    pub(crate) async fn send_provisioning(
        &self,
        address: &[u8],
        ciphertext: bytes::Bytes,
    ) -> Result<(), RelayError> {
        let not_found = RelayError::NotFound("provisioning mailbox");
        let Some(client) = self.client.get() else {
            return Err(not_found);
        };
        let subject = nats::provisioning_subject(address);
        let asked =
            tokio::time::timeout(nats::REQUEST_TIMEOUT, client.request(subject, ciphertext));
        match asked.await {
            Ok(Ok(reply)) => nats::provisioning_outcome(&reply.payload),
            _ => Err(not_found),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Nodes> {
        self.nodes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The bus metrics in Prometheus text format; `gaps` is the router's
    /// count of entries that reached devices through a sync.
    pub(crate) fn render_metrics(&self, out: &mut String, gaps: u64) {
        use std::fmt::Write as _;
        let s = &self.stats;
        let counters = [
            (
                "tern_bus_published_total",
                "Messages published to the cluster bus.",
                s.published.load(Ordering::Relaxed),
            ),
            (
                "tern_bus_received_total",
                "Messages received from other nodes.",
                s.received.load(Ordering::Relaxed),
            ),
            (
                "tern_bus_failed_total",
                "Bus messages that could not be published or used.",
                s.failed.load(Ordering::Relaxed),
            ),
            (
                "tern_bus_dropped_total",
                "Bus messages dropped because the outgoing queue was full.",
                self.link.dropped(),
            ),
            (
                "tern_bus_gaps_total",
                "Committed entries whose recipients here synced instead of receiving a push.",
                gaps,
            ),
        ];
        crate::metrics::write_counters(out, &counters);
        let connected = s.connected.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP tern_bus_connected Whether the bus (NATS) is connected.\n# TYPE tern_bus_connected gauge\ntern_bus_connected {connected}"
        );
    }

    /// Whether `user` is online on another node.
    pub(crate) fn online_elsewhere(&self, user: &UserId) -> bool {
        self.lock().is_online(user)
    }
}
