//! The async shell of the bus: one NATS connection per node, the tasks
//! that publish what the router queued, deliver what other nodes sent,
//! beat the heart, and fall back to syncing while NATS is unreachable.
//!
//! Subjects (payloads are `cluster.proto` messages):
//! `tern.entries` ([`EntriesNotice`]), `tern.devices` ([`DeviceNotice`]),
//! `tern.presence` ([`PresenceChange`]), `tern.heartbeat` ([`Heartbeat`])
//! `tern.snapshot.<node id>` (request; reply [`PresenceSnapshot`]) and
//! `tern.provisioning.<hex address>` (request: the ciphertext; reply: one
//! status byte, from the node holding the mailbox only).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_nats::connection::State;
use bytes::Bytes;
use futures_util::StreamExt;
use prost::Message as _;
use tern_protocol::UserId;
use tern_protocol::cluster::{Heartbeat, PresenceChange, PresenceSnapshot};
use tokio::sync::{mpsc, oneshot};

use super::codec::{self, BusError, BusMessage, DEVICES, ENTRIES, HEARTBEAT, PRESENCE};
use super::{Cluster, HOLD, Outgoing};
use crate::error::RelayError;
use crate::service::Relay;

const SNAPSHOT: &str = "tern.snapshot";
/// How often a node beats, expires silent nodes and (while NATS is
/// unreachable) makes its devices sync.
const TICK: Duration = Duration::from_secs(1);
/// Largest bus message decoded (NATS's default payload limit).
const MAX_PAYLOAD: usize = 1024 * 1024;
/// How long a request (snapshot, provisioning) waits for its answer.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
const PROVISIONING: &str = "tern.provisioning.";
/// Reply to a provisioning request: delivered.
const DELIVERED: u8 = 0;
/// Reply to a provisioning request: the mailbox is full.
const FULL: u8 = 1;

/// The subject of provisioning requests for mailbox `address`.
pub(crate) fn provisioning_subject(address: &[u8]) -> String {
    format!("{PROVISIONING}{}", hex::encode(address))
}

/// What a provisioning reply says.
pub(crate) fn provisioning_outcome(reply: &[u8]) -> Result<(), RelayError> {
    match reply {
        [DELIVERED] => Ok(()),
        [FULL] => Err(RelayError::QuotaExceeded("provisioning mailbox is full")),
        _ => Err(RelayError::Unavailable("bad provisioning reply")),
    }
}

/// A running bus: [`Bus::leave`] announces a graceful shutdown.
pub(crate) struct Bus {
    leave: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Bus {
    /// Tells the other nodes this one is leaving (its accounts go offline
    /// at once) and stops the bus.
    pub(crate) async fn leave(mut self) {
        if let Some(leave) = self.leave.take() {
            let _ = leave.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut self.task).await;
        self.task.abort();
    }
}

/// Connects to NATS at `url` (in the background: the node serves, syncing
/// its devices, until NATS is reachable) and starts the bus tasks.
pub(crate) fn spawn(
    url: String,
    relay: Arc<Relay>,
    cluster: Arc<Cluster>,
    outgoing: mpsc::Receiver<Outgoing>,
) -> Bus {
    let (leave, left) = oneshot::channel();
    let releasing = tokio::spawn(release_overdue(relay.clone()));
    let task = tokio::spawn(async move {
        let options = async_nats::ConnectOptions::new()
            .name(format!("tern-relay {}", cluster.node_id))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .reconnect_delay_callback(|attempt| {
                Duration::from_millis(100 * attempt.min(10) as u64)
            });
        let client = match options.connect(url.as_str()).await {
            Ok(client) => client,
            Err(e) => {
                tracing::error!(error = %e, "cluster bus: cannot use the NATS address");
                return;
            }
        };
        let _ = cluster.client.set(client.clone());
        let subscriber = client.subscribe("tern.>").await;
        let Ok(subscriber) = subscriber else {
            tracing::error!("cluster bus: cannot subscribe");
            return;
        };
        let publishing = tokio::spawn(publish(client.clone(), cluster.clone(), outgoing));
        let receiving = tokio::spawn(receive(
            client.clone(),
            relay.clone(),
            cluster.clone(),
            subscriber,
        ));
        tokio::select! {
            () = tick(&client, &relay, &cluster) => {}
            _ = left => {}
        }
        let goodbye = Heartbeat {
            node_id: cluster.node_id.clone(),
            online_accounts: 0,
            leaving: true,
        };
        let _ = client
            .publish(HEARTBEAT, goodbye.encode_to_vec().into())
            .await;
        let _ = tokio::time::timeout(Duration::from_secs(1), client.flush()).await;
        publishing.abort();
        receiving.abort();
        releasing.abort();
    });
    Bus {
        leave: Some(leave),
        task,
    }
}

/// Every fifth of [`HOLD`]: entries that waited that long for their
/// predecessors go to their recipients through a sync.
async fn release_overdue(relay: Arc<Relay>) {
    let mut every = tokio::time::interval(HOLD / 5);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        every.tick().await;
        relay.router.release_overdue();
    }
}

/// Publishes what the router queued, stamped with this node's id.
async fn publish(
    client: async_nats::Client,
    cluster: Arc<Cluster>,
    mut outgoing: mpsc::Receiver<Outgoing>,
) {
    let node_id = &cluster.node_id;
    while let Some(out) = outgoing.recv().await {
        let (subject, payload) = match out {
            Outgoing::Entries(entries) => {
                (ENTRIES, codec::notice(node_id, &entries).encode_to_vec())
            }
            Outgoing::Device(mut notice) => {
                notice.node_id.clone_from(node_id);
                (DEVICES, notice.encode_to_vec())
            }
            Outgoing::Presence { user, online } => {
                let change = PresenceChange {
                    node_id: node_id.clone(),
                    user_id: user.to_wire(),
                    online,
                };
                (PRESENCE, change.encode_to_vec())
            }
        };
        match client.publish(subject, payload.into()).await {
            Ok(()) => cluster.stats.published.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                tracing::debug!(error = %e, subject, "cluster bus: publish failed");
                cluster.stats.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// Delivers what other nodes published.
async fn receive(
    client: async_nats::Client,
    relay: Arc<Relay>,
    cluster: Arc<Cluster>,
    mut subscriber: async_nats::Subscriber,
) {
    let own_snapshot = format!("{SNAPSHOT}.{}", cluster.node_id);
    while let Some(message) = subscriber.next().await {
        if message.payload.len() > MAX_PAYLOAD {
            cluster.stats.failed.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let subject = message.subject.as_str();
        let handled = if subject == own_snapshot {
            answer_snapshot(&client, &relay, &cluster, message.reply).await;
            Ok(())
        } else if let Some(address) = subject.strip_prefix(PROVISIONING) {
            answer_provisioning(&client, &relay, address, message.payload, message.reply).await;
            Ok(())
        } else {
            dispatch(subject, message.payload, &relay, &cluster, &client)
        };
        if let Err(e) = handled {
            tracing::debug!(error = %e, subject, "cluster bus: message dropped");
            cluster.stats.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Acts on a message of another node.
fn dispatch(
    subject: &str,
    payload: Bytes,
    relay: &Arc<Relay>,
    cluster: &Arc<Cluster>,
    client: &async_nats::Client,
) -> Result<(), BusError> {
    match codec::decode(subject, payload, &cluster.node_id)? {
        BusMessage::Ignored => return Ok(()),
        BusMessage::Entries(entries) => {
            relay.router.fan_out_remote(&entries.0);
        }
        BusMessage::Device(notice) => relay.router.deliver_device_notice(*notice)?,
        BusMessage::Presence {
            node_id,
            user,
            online,
        } => {
            let before = relay.is_online(&user);
            cluster
                .lock()
                .changed(&node_id, user, online, Instant::now());
            if relay.is_online(&user) != before {
                relay.remote_presence_changed(&[user]);
            }
        }
        BusMessage::Heartbeat(beat) => heard(relay, cluster, client, beat),
    }
    count(cluster);
    Ok(())
}

fn count(cluster: &Cluster) {
    cluster.stats.received.fetch_add(1, Ordering::Relaxed);
}

/// A heartbeat: a leaving node's accounts go offline; a count that differs
/// from ours asks the node for its online accounts.
fn heard(relay: &Arc<Relay>, cluster: &Arc<Cluster>, client: &async_nats::Client, beat: Heartbeat) {
    if beat.leaving {
        let gone = cluster.lock().remove(&beat.node_id);
        relay.remote_presence_changed(&gone);
        return;
    }
    let stale = cluster
        .lock()
        .heartbeat(&beat.node_id, beat.online_accounts, Instant::now());
    if stale {
        tokio::spawn(fetch_snapshot(
            client.clone(),
            relay.clone(),
            cluster.clone(),
            beat.node_id,
        ));
    }
}

async fn fetch_snapshot(
    client: async_nats::Client,
    relay: Arc<Relay>,
    cluster: Arc<Cluster>,
    node_id: String,
) {
    let subject = format!("{SNAPSHOT}.{node_id}");
    let asked = tokio::time::timeout(REQUEST_TIMEOUT, client.request(subject, Bytes::new()));
    let Ok(Ok(reply)) = asked.await else {
        return;
    };
    let Ok(snapshot) = PresenceSnapshot::decode(reply.payload) else {
        cluster.stats.failed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let users: HashSet<UserId> = snapshot
        .user_ids
        .iter()
        .filter_map(|id| UserId::from_slice("PresenceSnapshot.user_ids", id).ok())
        .collect();
    let changed = cluster.lock().snapshot(&node_id, users, Instant::now());
    relay.remote_presence_changed(&changed);
}

/// Delivers a provisioning message if the mailbox is open here, and says
/// so; stays silent otherwise (the node holding it answers).
async fn answer_provisioning(
    client: &async_nats::Client,
    relay: &Relay,
    address: &str,
    ciphertext: Bytes,
    reply: Option<async_nats::Subject>,
) {
    let (Some(reply), Ok(address)) = (reply, hex::decode(address)) else {
        return;
    };
    let status = match relay.provisioning.send(&address, ciphertext) {
        Ok(()) => DELIVERED,
        Err(RelayError::QuotaExceeded(_)) => FULL,
        Err(_) => return,
    };
    let _ = client.publish(reply, Bytes::from(vec![status])).await;
}

async fn answer_snapshot(
    client: &async_nats::Client,
    relay: &Relay,
    cluster: &Cluster,
    reply: Option<async_nats::Subject>,
) {
    let Some(reply) = reply else {
        return;
    };
    let snapshot = PresenceSnapshot {
        node_id: cluster.node_id.clone(),
        user_ids: relay
            .router
            .online_accounts()
            .iter()
            .map(UserId::to_wire)
            .collect(),
    };
    let _ = client.publish(reply, snapshot.encode_to_vec().into()).await;
}

/// Every [`TICK`]: beats, expires silent nodes, and while NATS is
/// unreachable makes every device here sync (what other nodes commit
/// meanwhile reaches them only through the log); once NATS is back, one
/// more sync covers what was lost in between.
async fn tick(client: &async_nats::Client, relay: &Arc<Relay>, cluster: &Arc<Cluster>) {
    let mut every = tokio::time::interval(TICK);
    // The first tick is immediate: give the connection one tick to come up.
    every.tick().await;
    let mut was_down = false;
    loop {
        every.tick().await;
        let connected = client.connection_state() == State::Connected;
        cluster
            .stats
            .connected
            .store(u64::from(connected), Ordering::Relaxed);
        if !connected || was_down {
            relay.router.force_sync_all();
        }
        if was_down && connected {
            tracing::info!("cluster bus: reconnected to NATS");
        } else if !was_down && !connected {
            tracing::warn!("cluster bus: NATS unreachable; devices sync from the log");
        }
        was_down = !connected;
        let beat = Heartbeat {
            node_id: cluster.node_id.clone(),
            online_accounts: relay.router.online_accounts().len() as u64,
            leaving: false,
        };
        if connected {
            let _ = client.publish(HEARTBEAT, beat.encode_to_vec().into()).await;
        }
        let dead = cluster.lock().expire(Instant::now());
        if !dead.is_empty() {
            tracing::info!(accounts = dead.len(), "cluster bus: a node went silent");
            relay.remote_presence_changed(&dead);
        }
    }
}
