//! Group commit: the single writer of the chat logs.
//!
//! Sends and membership changes from every connection queue on one bounded
//! channel. A dedicated thread takes whatever is waiting (up to
//! `max_batch`), appends it in ONE transaction (one fsync), and only then
//! fans the new entries out and answers each caller. So concurrent sends
//! share an fsync, seqs are assigned in commit order, and no ack leaves
//! before its entry is durable. It is also the one place that orders a
//! chat's entries, i.e. the chat's partition (one partition for now).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tern_protocol::wire::EntryKind;
use tokio::sync::{mpsc, oneshot};

use crate::cluster::Cluster;
use crate::error::RelayError;
use crate::metrics::Metrics;
use crate::presence::online_anywhere;
use crate::push::Pusher;
use crate::router::{CommittedEntry, Router};
use crate::service::now_ms;
use crate::store::{Appended, LogAppend, Store};

type Reply = oneshot::Sender<Result<Appended, RelayError>>;

struct Job {
    queued_at: Instant,
    item: LogAppend,
    reply: Reply,
}

/// Handle to the writer thread; cloning shares the queue.
#[derive(Clone)]
pub(crate) struct LogWriter {
    tx: mpsc::Sender<Job>,
    metrics: Arc<Metrics>,
}

impl LogWriter {
    /// Starts the writer thread. It stops once every handle is dropped and
    /// the queue is drained, so in-flight commits always finish.
    pub(crate) fn spawn(
        store: Arc<dyn Store>,
        router: Arc<Router>,
        metrics: Arc<Metrics>,
        wake: Option<Wake>,
        limits: (usize, usize),
    ) -> std::io::Result<(Self, std::thread::JoinHandle<()>)> {
        let (queue_len, max_batch) = limits;
        let (tx, rx) = mpsc::channel(queue_len);
        let writer = Writer {
            store,
            router,
            metrics: metrics.clone(),
            wake,
        };
        let thread = std::thread::Builder::new()
            .name("tern-log-writer".into())
            .spawn(move || writer.run(rx, max_batch))?;
        Ok((Self { tx, metrics }, thread))
    }

    /// Appends one item and waits until it is durable. The backend checks
    /// the item against the chat's state inside the commit transaction.
    pub(crate) async fn append(&self, item: LogAppend) -> Result<Appended, RelayError> {
        let (reply, answer) = oneshot::channel();
        self.metrics
            .commit_queue_depth
            .fetch_add(1, Ordering::Relaxed);
        self.tx
            .send(Job {
                queued_at: Instant::now(),
                item,
                reply,
            })
            .await
            .map_err(|_| RelayError::Unavailable("relay is shutting down"))?;
        answer
            .await
            .map_err(|_| RelayError::Unavailable("log writer stopped"))?
    }
}

/// How the writer wakes recipients that are offline (push notifications).
pub(crate) struct Wake {
    /// Sends the notifications.
    pub(crate) pusher: Pusher,
    /// In cluster mode, who is online on other nodes (not woken).
    pub(crate) cluster: Option<Arc<Cluster>>,
}

struct Writer {
    store: Arc<dyn Store>,
    router: Arc<Router>,
    metrics: Arc<Metrics>,
    wake: Option<Wake>,
}

impl Writer {
    fn run(self, mut rx: mpsc::Receiver<Job>, max_batch: usize) {
        let store = &*self.store;
        let mut items = Vec::with_capacity(max_batch);
        let mut replies = Vec::with_capacity(max_batch);
        let mut entries = Vec::with_capacity(max_batch);
        while let Some(first) = rx.blocking_recv() {
            let mut next = Some(first);
            let taken = Instant::now();
            while let Some(job) = next.take() {
                self.metrics
                    .commit_wait_seconds
                    .observe(taken.duration_since(job.queued_at).as_secs_f64());
                items.push(job.item);
                replies.push(job.reply);
                if items.len() < max_batch {
                    next = rx.try_recv().ok();
                }
            }
            let now = now_ms();
            let started = Instant::now();
            let committed = store.append_batch(&items, now);
            self.observe_commit(items.len(), started);
            match committed {
                Ok(results) => {
                    let jobs = items.drain(..).zip(replies.drain(..)).zip(results);
                    for ((item, reply), mut result) in jobs {
                        if let Ok(appended) = &mut result
                            && !appended.duplicate
                        {
                            entries.push(committed_entry(item, appended));
                        }
                        let _ = reply.send(result.map_err(|e| RelayError::from(e).flatten()));
                    }
                    self.fan_out(&entries);
                    entries.clear();
                }
                Err(e) => {
                    tracing::error!(error = %e, batch = items.len(), "log commit failed");
                    self.metrics.commit_failures.fetch_add(1, Ordering::Relaxed);
                    items.clear();
                    for reply in replies.drain(..) {
                        let _ = reply.send(Err(RelayError::Store(e.refusal())));
                    }
                }
            }
            let started = Instant::now();
            if let Err(e) = store.after_batch() {
                tracing::warn!(error = %e, "log housekeeping failed");
            }
            self.metrics
                .housekeeping_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        tracing::debug!("log writer stopped");
    }

    /// Hands a commit's new entries to the router (one batch per online
    /// device) and wakes offline recipients through push.
    fn fan_out(&self, entries: &[Arc<CommittedEntry>]) {
        if entries.is_empty() {
            return;
        }
        if let Some(wake) = &self.wake {
            let cluster = wake.cluster.as_deref();
            for entry in entries {
                for user in entry
                    .recipients
                    .iter()
                    .filter(|u| !online_anywhere(&self.router, cluster, u))
                {
                    wake.pusher.wake(*user);
                }
            }
        }
        // Counted before any device can see the entries, so a scrape after a
        // delivery includes them.
        let m = &self.metrics;
        m.entries_committed
            .fetch_add(entries.len() as u64, Ordering::Relaxed);
        let queued = self.router.fan_out(entries);
        m.deliveries_queued
            .fetch_add(queued as u64, Ordering::Relaxed);
    }

    fn observe_commit(&self, batch: usize, started: Instant) {
        let m = &self.metrics;
        m.commit_seconds.observe(started.elapsed().as_secs_f64());
        m.commit_batch_size.observe(batch as f64);
        m.commit_queue_depth
            .fetch_sub(batch as i64, Ordering::Relaxed);
    }
}

/// The entry as the router fans it out; takes the member list out of
/// `appended` (the caller needs only seq and time).
fn committed_entry(item: LogAppend, appended: &mut Appended) -> Arc<CommittedEntry> {
    let committed_at = Instant::now();
    let mut recipients = std::mem::take(&mut appended.members);
    let entry = match item {
        LogAppend::Message(m) => CommittedEntry {
            chat_id: m.chat_id,
            seq: appended.seq,
            kind: EntryKind::Message,
            sender: m.sender,
            server_time_ms: appended.server_time_ms,
            client_message_id: Some(m.client_message_id),
            device_ciphertexts: m.device_ciphertexts,
            common_ciphertext: m.common_ciphertext,
            added: Vec::new(),
            removed: Vec::new(),
            promoted: Vec::new(),
            recipients,
            committed_at,
            shared_frame: std::sync::OnceLock::new(),
        },
        LogAppend::Membership(m) => {
            recipients.extend(m.removed.iter().copied());
            CommittedEntry {
                chat_id: m.chat_id,
                seq: appended.seq,
                kind: EntryKind::Membership,
                sender: m.actor,
                server_time_ms: appended.server_time_ms,
                client_message_id: None,
                device_ciphertexts: Vec::new(),
                common_ciphertext: bytes::Bytes::new(),
                added: m.added,
                removed: m.removed,
                promoted: std::mem::take(&mut appended.promoted),
                recipients,
                committed_at,
                shared_frame: std::sync::OnceLock::new(),
            }
        }
    };
    Arc::new(entry)
}
