//! Prometheus metrics: counters and histograms updated lock-free on the hot
//! path, rendered in the text exposition format by a tiny HTTP endpoint.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use tern_protocol::wire::request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::router::Router;
use crate::service::Relay;
use crate::store::PoolStatus;

/// A fixed-bucket histogram.
#[derive(Debug)]
pub(crate) struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    sum_micro: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micro: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub(crate) fn observe(&self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|b| value <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micro
            .fetch_add((value * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let sum = self.sum_micro.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

const SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];
const BATCH: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// Label values of `tern_requests_total`, indexed by [`request_index`]:
/// the requests an authenticated device sends on request streams. Blob
/// transfers, registration and provisioning are served by the connection
/// itself; the handler sees them only when misused ("other").
const REQUEST_KINDS: [&str; 15] = [
    "publish_device_list",
    "remove_device",
    "lookup_user",
    "upload_prekeys",
    "fetch_bundles",
    "create_chat",
    "change_members",
    "get_chat",
    "list_chats",
    "send",
    "ack_delivered",
    "sync",
    "set_push_endpoint",
    "subscribe_presence",
    "other",
];

/// Position of a request kind in [`REQUEST_KINDS`].
fn request_index(kind: &request::Kind) -> usize {
    use request::Kind;
    match kind {
        Kind::PublishDeviceList(_) => 0,
        Kind::RemoveDevice(_) => 1,
        Kind::LookupUser(_) => 2,
        Kind::UploadPrekeys(_) => 3,
        Kind::FetchBundles(_) => 4,
        Kind::CreateChat(_) => 5,
        Kind::ChangeMembers(_) => 6,
        Kind::GetChat(_) => 7,
        Kind::ListChats(_) => 8,
        Kind::Send(_) => 9,
        Kind::AckDelivered(_) => 10,
        Kind::Sync(_) => 11,
        Kind::SetPushEndpoint(_) => 12,
        Kind::SubscribePresence(_) => 13,
        Kind::RegisterAccount(_)
        | Kind::RegisterDevice(_)
        | Kind::BlobUploadStart(_)
        | Kind::BlobDownload(_)
        | Kind::ProvisioningOpen(_)
        | Kind::ProvisioningSend(_) => 14,
    }
}

/// Every metric the relay exports.
#[derive(Debug)]
pub(crate) struct Metrics {
    /// Authenticated connections open now.
    pub connections: AtomicI64,
    /// Sends accepted (acknowledged to the sender, resends included).
    pub messages_in: AtomicU64,
    /// Requests of authenticated devices, per kind ([`REQUEST_KINDS`]).
    requests: [AtomicU64; REQUEST_KINDS.len()],
    /// Log entries committed (messages and membership changes).
    pub entries_committed: AtomicU64,
    /// Entries pushed into connection mailboxes.
    pub deliveries_queued: AtomicU64,
    /// SyncNeeded notices sent to slow consumers.
    pub sync_needed: AtomicU64,
    /// Commit transactions that failed.
    pub commit_failures: AtomicU64,
    /// Appends waiting for the log writer.
    pub commit_queue_depth: AtomicI64,
    /// Appends per commit transaction.
    pub commit_batch_size: Histogram,
    /// Duration of a commit transaction, fsync included.
    pub commit_seconds: Histogram,
    /// Housekeeping between commits (WAL checkpoint), during which
    /// appends wait.
    pub housekeeping_seconds: Histogram,
    /// From commit to the entry's frame being written to a delivery stream.
    pub delivery_seconds: Histogram,
    /// From an append being queued to the log writer taking it into a
    /// commit: how long sends wait for the single writer.
    pub commit_wait_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            connections: AtomicI64::new(0),
            messages_in: AtomicU64::new(0),
            requests: std::array::from_fn(|_| AtomicU64::new(0)),
            entries_committed: AtomicU64::new(0),
            deliveries_queued: AtomicU64::new(0),
            sync_needed: AtomicU64::new(0),
            commit_failures: AtomicU64::new(0),
            commit_queue_depth: AtomicI64::new(0),
            commit_batch_size: Histogram::new(BATCH),
            commit_seconds: Histogram::new(SECONDS),
            housekeeping_seconds: Histogram::new(SECONDS),
            delivery_seconds: Histogram::new(SECONDS),
            commit_wait_seconds: Histogram::new(SECONDS),
        }
    }
}

impl Metrics {
    /// Counts a request of an authenticated device.
    pub(crate) fn count_request(&self, kind: &request::Kind) {
        self.requests[request_index(kind)].fetch_add(1, Ordering::Relaxed);
    }

    fn render_requests(&self, out: &mut String) {
        let name = "tern_requests_total";
        let _ = writeln!(
            out,
            "# HELP {name} Requests of authenticated devices, by kind.\n# TYPE {name} counter"
        );
        for (kind, n) in REQUEST_KINDS.iter().zip(&self.requests) {
            let n = n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}{{kind=\"{kind}\"}} {n}");
        }
    }

    /// The metrics in Prometheus text format; `router` supplies the live
    /// delivery queue depth, `request_bytes` the request bodies held.
    pub(crate) fn render(&self, router: &Router, request_bytes: usize) -> String {
        let mut out = String::new();
        let gauges = [
            (
                "tern_connections",
                "Authenticated connections open.",
                self.connections.load(Ordering::Relaxed),
            ),
            (
                "tern_commit_queue_depth",
                "Appends waiting for the log writer.",
                self.commit_queue_depth.load(Ordering::Relaxed),
            ),
            (
                "tern_delivery_queue_depth",
                "Entries and events queued for connected devices, not yet written.",
                i64::try_from(router.queued_total()).unwrap_or(i64::MAX),
            ),
            (
                "tern_request_buffer_bytes",
                "Request body bytes held in memory (frames being read, requests in progress).",
                i64::try_from(request_bytes).unwrap_or(i64::MAX),
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        let delivered = self.delivery_seconds.count.load(Ordering::Relaxed);
        let counters = [
            (
                "tern_messages_in_total",
                "Sends accepted and acknowledged.",
                self.messages_in.load(Ordering::Relaxed),
            ),
            (
                "tern_messages_out_total",
                "Log entries written to devices' delivery streams.",
                delivered,
            ),
            (
                "tern_entries_committed_total",
                "Log entries committed.",
                self.entries_committed.load(Ordering::Relaxed),
            ),
            (
                "tern_deliveries_queued_total",
                "Entries pushed to connection mailboxes.",
                self.deliveries_queued.load(Ordering::Relaxed),
            ),
            (
                "tern_sync_needed_total",
                "SyncNeeded notices sent to slow consumers.",
                self.sync_needed.load(Ordering::Relaxed),
            ),
            (
                "tern_commit_failures_total",
                "Failed commit transactions.",
                self.commit_failures.load(Ordering::Relaxed),
            ),
        ];
        write_counters(&mut out, &counters);
        self.render_requests(&mut out);
        self.commit_batch_size.render(
            &mut out,
            "tern_commit_batch_size",
            "Appends per commit transaction.",
        );
        self.commit_seconds.render(
            &mut out,
            "tern_commit_seconds",
            "Commit transaction duration including fsync.",
        );
        self.housekeeping_seconds.render(
            &mut out,
            "tern_housekeeping_seconds",
            "Log writer housekeeping between commits (WAL checkpoint); appends wait meanwhile.",
        );
        self.delivery_seconds.render(
            &mut out,
            "tern_delivery_seconds",
            "Commit to delivery-stream write.",
        );
        self.commit_wait_seconds.render(
            &mut out,
            "tern_commit_wait_seconds",
            "Append queued to the log writer taking it into a commit.",
        );
        out
    }
}

/// Largest HTTP request head read.
const MAX_REQUEST_HEAD: usize = 4096;
/// Time a scraper has to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds the metrics endpoint (before the runtime serves it).
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serves `GET /metrics` on `listener` until the task is dropped.
pub(crate) async fn serve(
    listener: std::net::TcpListener,
    relay: Arc<Relay>,
) -> std::io::Result<()> {
    let listener = TcpListener::from_std(listener)?;
    loop {
        let (mut socket, _) = listener.accept().await?;
        let relay = relay.clone();
        tokio::spawn(async move {
            let mut head = Vec::with_capacity(512);
            let mut buf = [0u8; 512];
            let read = tokio::time::timeout(REQUEST_TIMEOUT, async {
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST_HEAD {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return false,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                true
            })
            .await;
            if !matches!(read, Ok(true)) {
                return;
            }
            let (status, body) = if head.starts_with(b"GET /metrics ") {
                let mut body = relay
                    .metrics
                    .render(&relay.router, relay.request_pools.used());
                write_pools(&mut body, &relay.store.pool_status());
                if let Some(cluster) = &relay.cluster {
                    cluster.render_metrics(&mut body, relay.router.sequencer_gaps());
                }
                ("200 OK", body)
            } else {
                ("404 Not Found", String::from("not found\n"))
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        });
    }
}

/// Appends counters (name, help, value) in Prometheus text format.
pub(crate) fn write_counters(out: &mut String, counters: &[(&str, &str, u64)]) {
    for (name, help, v) in counters {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
        );
    }
}

/// A gauge with one sample per pool: name, help, value.
type PoolGauge = (&'static str, &'static str, fn(&PoolStatus) -> usize);

/// The store's connection pools as gauges, by database.
pub(crate) fn write_pools(out: &mut String, pools: &[PoolStatus]) {
    if pools.is_empty() {
        return;
    }
    let name = "tern_store_pool_connections";
    let help = "Open connections of the store's pools, in use (busy) or idle.";
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    for p in pools {
        let (db, busy) = (&p.database, p.open.saturating_sub(p.idle));
        let _ = writeln!(out, "{name}{{database=\"{db}\",state=\"busy\"}} {busy}");
        let _ = writeln!(out, "{name}{{database=\"{db}\",state=\"idle\"}} {}", p.idle);
    }
    let per_pool: [PoolGauge; 2] = [
        (
            "tern_store_pool_max_connections",
            "Most connections each pool opens (store.pool_size).",
            |p| p.max,
        ),
        (
            "tern_store_pool_waiting",
            "Storage operations waiting for a connection.",
            |p| p.waiting,
        ),
    ];
    for (name, help, value) in per_pool {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for p in pools {
            let _ = writeln!(out, "{name}{{database=\"{}\"}} {}", p.database, value(p));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_are_gauges_by_database() {
        let pool = |database: &str, idle| PoolStatus {
            database: database.into(),
            max: 16,
            open: 5,
            idle,
            waiting: 2,
        };
        let mut out = String::new();
        write_pools(&mut out, &[pool("directory", 1), pool("shard1", 5)]);
        for line in [
            "# TYPE tern_store_pool_connections gauge",
            "tern_store_pool_connections{database=\"directory\",state=\"busy\"} 4",
            "tern_store_pool_connections{database=\"shard1\",state=\"idle\"} 5",
            "tern_store_pool_max_connections{database=\"shard1\"} 16",
            "tern_store_pool_waiting{database=\"directory\"} 2",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} missing from\n{out}");
        }
        let mut embedded = String::new();
        write_pools(&mut embedded, &[]);
        assert!(embedded.is_empty());
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.commit_batch_size.observe(1.0);
        m.commit_batch_size.observe(3.0);
        m.commit_batch_size.observe(100.0);
        let text = m.render(&Router::new(usize::MAX), 0);
        assert!(text.contains("tern_commit_batch_size_bucket{le=\"1\"} 1"));
        assert!(text.contains("tern_commit_batch_size_bucket{le=\"4\"} 2"));
        assert!(text.contains("tern_commit_batch_size_bucket{le=\"+Inf\"} 3"));
        assert!(text.contains("tern_commit_batch_size_count 3"));
    }
}
