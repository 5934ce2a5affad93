//! The router: which devices are online, and fan-out of committed log
//! entries to their mailboxes. No sockets here: a connection task drains its
//! [`Mailbox`] receiver, so the routing rules are testable on their own.
//!
//! Every mailbox is bounded in queued items (a batch of entries counting as
//! its length) and in bytes, and all mailboxes together are bounded in
//! bytes. A mailbox holds only what its device will receive: each queued
//! entry is a view with that device's own ciphertext and the common one,
//! copied out of the sender's request, so a slow device never keeps other
//! recipients' ciphertexts alive. When a device does not keep up, or the
//! relay-wide budget is spent, the router stops pushing to it (entries stay
//! in the log) and the connection tells the device to pull with Sync
//! (`SyncNeeded`), so a slow consumer costs the relay a fixed amount of
//! memory.
//!
//! A commit's entries are fanned out together: each mailbox receives ONE
//! batch with every entry of the commit addressed to it, so its connection
//! wakes once and writes them in one go, and QUIC packs them into as few
//! packets as their size allows.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use bytes::Bytes;
use tern_protocol::cluster::{DeviceNotice, Revoked, device_notice};
use tern_protocol::wire::{Delivery, DeviceCiphertext, EntryKind, EphemeralEvent, Event};
use tern_protocol::{ChatId, ClientMessageId, ProtocolError, UserId};
use tokio::sync::{Notify, mpsc};

use crate::cluster::{Admit, Link, Outgoing, Sequencer};
use crate::store::DeviceAddr;

/// A log entry that is durably committed, as the router fans it out.
#[derive(Debug)]
pub(crate) struct CommittedEntry {
    /// Chat.
    pub chat_id: ChatId,
    /// Offset in the chat log.
    pub seq: u64,
    /// Message or membership.
    pub kind: EntryKind,
    /// Author.
    pub sender: DeviceAddr,
    /// Relay clock when stored.
    pub server_time_ms: u64,
    /// The sender's client message id (messages only).
    pub client_message_id: Option<ClientMessageId>,
    /// Per-device ciphertexts.
    pub device_ciphertexts: Vec<DeviceCiphertext>,
    /// Common ciphertext.
    pub common_ciphertext: Bytes,
    /// Accounts added (membership entries).
    pub added: Vec<UserId>,
    /// Accounts removed (membership entries).
    pub removed: Vec<UserId>,
    /// Accounts made admins (membership entries).
    pub promoted: Vec<UserId>,
    /// Accounts whose online devices receive the entry.
    pub recipients: Vec<UserId>,
    /// When the commit finished (for the delivery latency metric).
    pub committed_at: Instant,
    /// The encoded delivery frame every device without a ciphertext of its
    /// own receives (sender-key messages, membership entries): identical
    /// for all of them, so it is encoded once, by the first connection
    /// that needs it.
    pub shared_frame: std::sync::OnceLock<Bytes>,
}

impl CommittedEntry {
    /// The ciphertext addressed to `device`, if the sender wrote one.
    pub(crate) fn ciphertext_for(&self, device: DeviceAddr) -> Option<&Bytes> {
        self.own_ciphertext(device).map(|dc| &dc.ciphertext)
    }

    /// The per-device ciphertext entry of `device`, if the sender wrote one.
    fn own_ciphertext(&self, device: DeviceAddr) -> Option<&DeviceCiphertext> {
        self.device_ciphertexts
            .iter()
            .find(|dc| dc.device_id == device.device && dc.user_id[..] == device.user.0[..])
    }

    /// A copy of the entry holding only what one device receives: `own`
    /// (its ciphertext, copied) and `common` (shared by the views of one
    /// entry). Nothing in it refers to the sender's request buffer.
    fn view(&self, own: Option<&DeviceCiphertext>, common: Bytes) -> Self {
        Self {
            chat_id: self.chat_id,
            seq: self.seq,
            kind: self.kind,
            sender: self.sender,
            server_time_ms: self.server_time_ms,
            client_message_id: self.client_message_id,
            device_ciphertexts: own
                .map(|dc| DeviceCiphertext {
                    user_id: Bytes::copy_from_slice(&dc.user_id),
                    device_id: dc.device_id,
                    ciphertext: Bytes::copy_from_slice(&dc.ciphertext),
                })
                .into_iter()
                .collect(),
            common_ciphertext: common,
            added: self.added.clone(),
            removed: self.removed.clone(),
            promoted: self.promoted.clone(),
            recipients: Vec::new(),
            committed_at: self.committed_at,
            shared_frame: std::sync::OnceLock::new(),
        }
    }

    /// Bytes a queued view of this entry stands for.
    fn queued_bytes(&self) -> usize {
        let own: usize = self
            .device_ciphertexts
            .iter()
            .map(|dc| dc.ciphertext.len())
            .sum();
        own + self.common_ciphertext.len() + QUEUED_ENTRY_OVERHEAD
    }

    /// The entry as one device sees it: its own ciphertext, never another's.
    pub(crate) fn delivery_for(&self, device: DeviceAddr) -> Delivery {
        let ciphertext = self.ciphertext_for(device).cloned().unwrap_or_default();
        Delivery {
            chat_id: self.chat_id.to_wire(),
            seq: self.seq,
            kind: self.kind as i32,
            sender_user_id: self.sender.user.to_wire(),
            sender_device_id: self.sender.device,
            server_time_ms: self.server_time_ms,
            client_message_id: self
                .client_message_id
                .map(|id| id.to_wire())
                .unwrap_or_default(),
            ciphertext,
            common_ciphertext: self.common_ciphertext.clone(),
            added: self.added.iter().map(UserId::to_wire).collect(),
            removed: self.removed.iter().map(UserId::to_wire).collect(),
            promoted: self.promoted.iter().map(UserId::to_wire).collect(),
        }
    }
}

/// What the router hands to a connection.
#[derive(Debug, Clone)]
pub(crate) enum Outbound {
    /// Committed log entries of one commit, in seq order per chat; the
    /// connection renders the device's view of each.
    Entries(Vec<Arc<CommittedEntry>>),
    /// Any other event (prekeys low, device list changed, ...).
    Event(Box<Event>),
    /// An ephemeral event, sent as a QUIC datagram.
    Ephemeral(EphemeralEvent),
}

/// The bounded queue between the router and one connection.
#[derive(Debug)]
pub(crate) struct Mailbox {
    /// The device this connection authenticated as.
    pub device: DeviceAddr,
    id: u64,
    tx: mpsc::Sender<Outbound>,
    /// Entries and events queued and not yet taken.
    queued: AtomicUsize,
    capacity: usize,
    /// Bytes queued and not yet taken, within `byte_capacity` and the
    /// relay-wide budget.
    queued_bytes: AtomicUsize,
    byte_capacity: usize,
    budget: Arc<Budget>,
    lagging: AtomicBool,
    revoked: AtomicBool,
    wake: Notify,
}

/// Bytes counted for a queued entry beyond its ciphertexts (ids, the
/// view's allocation).
const QUEUED_ENTRY_OVERHEAD: usize = 256;
/// Bytes counted for a queued event or ephemeral event.
const QUEUED_EVENT_BYTES: usize = 512;

impl Outbound {
    /// How much of a mailbox's capacity this takes: one per entry.
    pub(crate) fn weight(&self) -> usize {
        match self {
            Self::Entries(entries) => entries.len(),
            Self::Event(_) | Self::Ephemeral(_) => 1,
        }
    }

    /// How many bytes of the mailbox's and the relay's budgets this takes.
    fn bytes(&self) -> usize {
        match self {
            Self::Entries(entries) => entries.iter().map(|e| e.queued_bytes()).sum(),
            Self::Event(_) | Self::Ephemeral(_) => QUEUED_EVENT_BYTES,
        }
    }
}

/// Bytes queued in all mailboxes together, and their limit.
#[derive(Debug)]
struct Budget {
    used: AtomicUsize,
    max: usize,
}

impl Budget {
    /// Takes `bytes` if the total stays within the limit.
    fn take(&self, bytes: usize) -> bool {
        if self.used.fetch_add(bytes, Ordering::AcqRel) + bytes > self.max {
            self.used.fetch_sub(bytes, Ordering::AcqRel);
            return false;
        }
        true
    }

    fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

impl Mailbox {
    /// Queues an event. When the queue is full the mailbox switches to
    /// lagging: this and later events are dropped (they are in the log)
    /// until the connection has told the device to sync.
    pub(crate) fn push(&self, out: Outbound) -> bool {
        if self.lagging.load(Ordering::Acquire) || self.is_revoked() {
            return false;
        }
        let weight = out.weight();
        if self.queued.fetch_add(weight, Ordering::AcqRel) + weight > self.capacity {
            self.queued.fetch_sub(weight, Ordering::AcqRel);
            self.start_lagging();
            return false;
        }
        let bytes = out.bytes();
        let own_room =
            self.queued_bytes.fetch_add(bytes, Ordering::AcqRel) + bytes <= self.byte_capacity;
        if !own_room || !self.budget.take(bytes) {
            self.queued.fetch_sub(weight, Ordering::AcqRel);
            self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
            self.start_lagging();
            return false;
        }
        match self.tx.try_send(out) {
            Ok(()) => true,
            Err(e) => {
                self.queued.fetch_sub(weight, Ordering::AcqRel);
                self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
                self.budget.give_back(bytes);
                if matches!(e, mpsc::error::TrySendError::Full(_)) {
                    self.start_lagging();
                }
                false
            }
        }
    }

    fn start_lagging(&self) {
        self.lagging.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Releases the capacity of an item the connection took off the queue.
    pub(crate) fn taken(&self, out: &Outbound) {
        self.queued.fetch_sub(out.weight(), Ordering::AcqRel);
        let bytes = out.bytes();
        self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
        self.budget.give_back(bytes);
    }

    /// Unique id of this mailbox.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Whether events were dropped since the last [`Self::clear_lagging`].
    pub(crate) fn is_lagging(&self) -> bool {
        self.lagging.load(Ordering::Acquire)
    }

    /// Resumes pushing; call after SyncNeeded was written.
    pub(crate) fn clear_lagging(&self) {
        self.lagging.store(false, Ordering::Release);
    }

    /// Resolves when the mailbox switched to lagging or was revoked.
    pub(crate) async fn lagged(&self) {
        self.wake.notified().await;
    }

    /// Whether the device was removed from its account: its connection
    /// must end.
    pub(crate) fn is_revoked(&self) -> bool {
        self.revoked.load(Ordering::Acquire)
    }
}

/// Online devices by account.
#[derive(Debug)]
pub(crate) struct Router {
    online: RwLock<HashMap<UserId, Vec<Arc<Mailbox>>>>,
    next_id: AtomicU64,
    budget: Arc<Budget>,
    /// In cluster mode: where what concerns other nodes' devices goes, and
    /// the per-chat order of entries from every node.
    cluster: Option<Clustering>,
}

/// A committed entry on its way through the [`Sequencer`], with whether
/// its notice left the ciphertexts out.
type Sequenced = (Arc<CommittedEntry>, bool);

/// The cluster part of a router.
#[derive(Debug)]
struct Clustering {
    /// The way to the other nodes.
    link: Link,
    /// The per-chat order of entries from every node.
    sequencer: std::sync::Mutex<Sequencer<Sequenced>>,
    /// Entries whose recipients synced instead of receiving a push.
    gaps: AtomicU64,
}

/// Which of an account's devices an event is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Devices {
    /// Every device.
    All,
    /// Every device but this one.
    Except(u32),
    /// Only this one.
    Only(u32),
}

impl Devices {
    fn includes(self, device: u32) -> bool {
        match self {
            Self::All => true,
            Self::Except(d) => d != device,
            Self::Only(d) => d == device,
        }
    }
}

impl Router {
    /// An empty router whose mailboxes together queue at most
    /// `max_queued_bytes`.
    pub(crate) fn new(max_queued_bytes: usize) -> Self {
        Self {
            online: RwLock::default(),
            next_id: AtomicU64::new(0),
            budget: Arc::new(Budget {
                used: AtomicUsize::new(0),
                max: max_queued_bytes,
            }),
            cluster: None,
        }
    }

    /// A router of a cluster node: what it delivers locally that concerns
    /// other nodes too also goes to `link`, and entries from every node
    /// pass a [`Sequencer`].
    pub(crate) fn clustered(max_queued_bytes: usize, link: Link, max_chats: usize) -> Self {
        Self {
            cluster: Some(Clustering {
                link,
                sequencer: std::sync::Mutex::new(Sequencer::new(max_chats)),
                gaps: AtomicU64::new(0),
            }),
            ..Self::new(max_queued_bytes)
        }
    }

    /// Sends `out` to the other nodes, in cluster mode.
    fn publish(&self, out: impl FnOnce() -> Outgoing) {
        if let Some(cluster) = &self.cluster {
            cluster.link.send(out());
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<UserId, Vec<Arc<Mailbox>>>> {
        self.online
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<UserId, Vec<Arc<Mailbox>>>> {
        self.online
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers an authenticated connection with a queue of `capacity`
    /// items and `byte_capacity` bytes; the flag tells whether the account
    /// just came online.
    pub(crate) fn register(
        &self,
        device: DeviceAddr,
        capacity: usize,
        byte_capacity: usize,
    ) -> (Arc<Mailbox>, mpsc::Receiver<Outbound>, bool) {
        let (tx, rx) = mpsc::channel(capacity);
        let mailbox = Arc::new(Mailbox {
            device,
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            tx,
            queued: AtomicUsize::new(0),
            capacity,
            queued_bytes: AtomicUsize::new(0),
            byte_capacity,
            budget: self.budget.clone(),
            lagging: AtomicBool::new(false),
            revoked: AtomicBool::new(false),
            wake: Notify::new(),
        });
        let mut online = self.write();
        let list = online.entry(device.user).or_default();
        let came_online = list.is_empty();
        list.push(mailbox.clone());
        (mailbox, rx, came_online)
    }

    /// Removes a connection's mailbox; true when the account went offline.
    pub(crate) fn unregister(&self, mailbox: &Mailbox) -> bool {
        let mut online = self.write();
        let Some(list) = online.get_mut(&mailbox.device.user) else {
            return false;
        };
        list.retain(|m| m.id != mailbox.id);
        if list.is_empty() {
            online.remove(&mailbox.device.user);
            return true;
        }
        false
    }

    /// Ends the connections of devices removed from (or re-keyed in) an
    /// account's device list.
    pub(crate) fn revoke(&self, user: &UserId, devices: &[u32]) {
        self.publish(|| {
            let revoked = Revoked {
                device_ids: devices.to_vec(),
            };
            Outgoing::Device(Box::new(device_notice(
                user,
                Devices::All,
                device_notice::Kind::Revoked(revoked),
            )))
        });
        self.revoke_local(user, devices);
    }

    fn revoke_local(&self, user: &UserId, devices: &[u32]) {
        for mailbox in self.read().get(user).into_iter().flatten() {
            if devices.contains(&mailbox.device.device) {
                mailbox.revoked.store(true, Ordering::Release);
                mailbox.wake.notify_one();
            }
        }
    }

    /// Pushes an ephemeral event to every online device of `user` (on any
    /// node) except `skip`.
    pub(crate) fn push_ephemeral(
        &self,
        user: &UserId,
        skip: Option<DeviceAddr>,
        e: &EphemeralEvent,
    ) {
        let devices = match skip {
            Some(d) if d.user == *user => Devices::Except(d.device),
            _ => Devices::All,
        };
        self.publish(|| {
            Outgoing::Device(Box::new(device_notice(
                user,
                devices,
                device_notice::Kind::Ephemeral(e.clone()),
            )))
        });
        self.push_local(user, devices, &Outbound::Ephemeral(e.clone()));
    }

    /// Pushes to the online devices of `user` on this node that `devices`
    /// includes.
    fn push_local(&self, user: &UserId, devices: Devices, out: &Outbound) {
        for mailbox in self.read().get(user).into_iter().flatten() {
            if devices.includes(mailbox.device.device) {
                mailbox.push(out.clone());
            }
        }
    }

    /// Makes every device of `user` on this node sync from the log (its
    /// pushes stop until it has been told).
    pub(crate) fn force_sync(&self, user: &UserId) {
        for mailbox in self.read().get(user).into_iter().flatten() {
            mailbox.start_lagging();
        }
    }

    /// Makes every device on this node sync from the log.
    pub(crate) fn force_sync_all(&self) {
        for mailbox in self.read().values().flatten() {
            mailbox.start_lagging();
        }
        if let Some(cluster) = &self.cluster {
            // Every device syncs: what the sequencer held goes that way too.
            lock(&cluster.sequencer).forget(&mut Vec::new());
        }
    }

    /// The accounts with a device on this node.
    pub(crate) fn online_accounts(&self) -> Vec<UserId> {
        self.read().keys().copied().collect()
    }

    /// Whether any device of `user` is connected.
    pub(crate) fn is_online(&self, user: &UserId) -> bool {
        self.read().contains_key(user)
    }

    /// Number of connected devices.
    #[cfg(test)]
    fn connection_count(&self) -> usize {
        self.read().values().map(Vec::len).sum()
    }

    /// Entries and events queued in every mailbox and not yet written.
    pub(crate) fn queued_total(&self) -> usize {
        self.read()
            .values()
            .flatten()
            .map(|m| m.queued.load(Ordering::Relaxed))
            .sum()
    }

    /// Pushes one commit's entries to every online recipient device except
    /// each entry's sending device (which learns its seq from the SendAck),
    /// one batch per mailbox. Returns the number of entries the mailboxes
    /// accepted.
    pub(crate) fn fan_out(&self, entries: &[Arc<CommittedEntry>]) -> usize {
        self.publish(|| Outgoing::Entries(entries.to_vec()));
        let sequenced: Vec<_> = entries.iter().map(|e| (e.clone(), false)).collect();
        self.deliver(&sequenced)
    }

    /// Delivers entries another node committed (with whether the notice
    /// left their ciphertexts out); returns the number of entries the
    /// mailboxes accepted.
    pub(crate) fn fan_out_remote(&self, entries: &[(Arc<CommittedEntry>, bool)]) -> usize {
        self.deliver(entries)
    }

    /// Pushes the entries the sequencer lets out (all of them on a single
    /// node); makes the recipients of gaps sync. The sequencer stays
    /// locked while pushing, so every chat reaches each mailbox in order.
    fn deliver(&self, entries: &[Sequenced]) -> usize {
        let Some(cluster) = &self.cluster else {
            let all: Vec<_> = entries.iter().map(|(e, _)| e.clone()).collect();
            return self.push_entries(&all);
        };
        let mut sequencer = lock(&cluster.sequencer);
        let now = Instant::now();
        let mut out = Vec::with_capacity(entries.len());
        for (entry, omitted) in entries {
            let item = (entry.clone(), *omitted);
            sequencer.admit(entry.chat_id, entry.seq, item, now, &mut out);
        }
        self.release(cluster, out)
    }

    /// Gives up on entries that waited too long for their predecessors:
    /// their recipients sync. The cluster bus runs it every few
    /// milliseconds.
    pub(crate) fn release_overdue(&self) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let mut sequencer = lock(&cluster.sequencer);
        if sequencer.holds_any() {
            let mut out = Vec::new();
            sequencer.release_overdue(Instant::now(), &mut out);
            self.release(cluster, out);
        }
    }

    /// Entries whose recipients synced instead of receiving a push (cluster
    /// mode).
    pub(crate) fn sequencer_gaps(&self) -> u64 {
        self.cluster
            .as_ref()
            .map_or(0, |c| c.gaps.load(Ordering::Relaxed))
    }

    /// Pushes what the sequencer let out, in order, and makes the
    /// recipients of gaps (and of entries whose notice left the
    /// ciphertexts out) sync. Called with the sequencer locked.
    fn release(&self, cluster: &Clustering, out: Vec<Admit<Sequenced>>) -> usize {
        let mut admitted = Vec::with_capacity(out.len());
        for verdict in out {
            match verdict {
                Admit::Push((entry, false)) => admitted.push(entry),
                Admit::Push((entry, true)) | Admit::Gap((entry, _)) => {
                    cluster.gaps.fetch_add(1, Ordering::Relaxed);
                    for user in &entry.recipients {
                        self.force_sync(user);
                    }
                }
            }
        }
        self.push_entries(&admitted)
    }

    fn push_entries(&self, entries: &[Arc<CommittedEntry>]) -> usize {
        let online = self.read();
        let mut batches: HashMap<u64, (&Arc<Mailbox>, Vec<Arc<CommittedEntry>>)> = HashMap::new();
        for entry in entries {
            // Built on first need: the common ciphertext copied once, and
            // the view of every device without a ciphertext of its own.
            let common = std::sync::OnceLock::new();
            let common_view = std::sync::OnceLock::new();
            let copy_common = || Bytes::copy_from_slice(&entry.common_ciphertext);
            for user in &entry.recipients {
                for mailbox in online.get(user).into_iter().flatten() {
                    if mailbox.device == entry.sender {
                        continue;
                    }
                    let common = common.get_or_init(copy_common).clone();
                    let view = match entry.own_ciphertext(mailbox.device) {
                        Some(own) => Arc::new(entry.view(Some(own), common)),
                        None => common_view
                            .get_or_init(|| Arc::new(entry.view(None, common)))
                            .clone(),
                    };
                    batches
                        .entry(mailbox.id)
                        .or_insert_with(|| (mailbox, Vec::new()))
                        .1
                        .push(view);
                }
            }
        }
        batches
            .into_values()
            .map(|(mailbox, batch)| {
                let n = batch.len();
                if mailbox.push(Outbound::Entries(batch)) {
                    n
                } else {
                    0
                }
            })
            .sum()
    }

    /// Sends an event to every online device of `user`.
    pub(crate) fn notify_user(&self, user: &UserId, event: &Event) {
        self.notify(user, Devices::All, event);
    }

    /// Sends an event to one device, if online.
    pub(crate) fn notify_device(&self, device: DeviceAddr, event: &Event) {
        self.notify(&device.user, Devices::Only(device.device), event);
    }

    fn notify(&self, user: &UserId, devices: Devices, event: &Event) {
        self.publish(|| {
            Outgoing::Device(Box::new(device_notice(
                user,
                devices,
                device_notice::Kind::Event(event.clone()),
            )))
        });
        self.push_local(user, devices, &Outbound::Event(Box::new(event.clone())));
    }

    /// Delivers what another node sent for the devices of one account.
    pub(crate) fn deliver_device_notice(&self, n: DeviceNotice) -> Result<(), ProtocolError> {
        let user = UserId::from_slice("DeviceNotice.user_id", &n.user_id)?;
        let devices = match (n.only_device, n.has_skip) {
            (true, _) => Devices::Only(n.device_id),
            (false, true) => Devices::Except(n.device_id),
            (false, false) => Devices::All,
        };
        match n
            .kind
            .ok_or(ProtocolError::MissingField("DeviceNotice.kind"))?
        {
            device_notice::Kind::Event(e) => {
                self.push_local(&user, devices, &Outbound::Event(Box::new(e)));
            }
            device_notice::Kind::Ephemeral(e) => {
                self.push_local(&user, devices, &Outbound::Ephemeral(e));
            }
            device_notice::Kind::Revoked(r) => self.revoke_local(&user, &r.device_ids),
        }
        Ok(())
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The bus form of something for `user`'s `devices`.
fn device_notice(user: &UserId, devices: Devices, kind: device_notice::Kind) -> DeviceNotice {
    let (only_device, has_skip, device_id) = match devices {
        Devices::All => (false, false, 0),
        Devices::Except(d) => (false, true, d),
        Devices::Only(d) => (true, false, d),
    };
    DeviceNotice {
        node_id: String::new(),
        user_id: user.to_wire(),
        kind: Some(kind),
        only_device,
        has_skip,
        device_id,
    }
}

#[cfg(test)]
mod tests;
