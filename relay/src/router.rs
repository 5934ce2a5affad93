//! The router: which devices are online, and fan-out of committed log
//! entries to their mailboxes. No sockets here: a connection task drains its
//! [`Mailbox`] receiver, so the routing rules are testable on their own.
//!
//! Every mailbox is bounded (in queued items, a batch of entries counting
//! as its length). When a device does not keep up, the router stops pushing
//! to it (entries stay in the log) and the connection tells the device to
//! pull with Sync (`SyncNeeded`), so a slow consumer costs the relay a
//! fixed amount of memory.
//!
//! A commit's entries are fanned out together: each mailbox receives ONE
//! batch with every entry of the commit addressed to it, so its connection
//! wakes once and writes them in one go, and QUIC packs them into as few
//! packets as their size allows.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use tern_protocol::wire::{Delivery, DeviceCiphertext, EntryKind, EphemeralEvent, Event};
use tern_protocol::{ChatId, ClientMessageId, UserId};
use tokio::sync::{Notify, mpsc};

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
    /// Accounts whose online devices receive the entry.
    pub recipients: Vec<UserId>,
    /// When the commit finished (for the delivery latency metric).
    pub committed_at: std::time::Instant,
    /// The encoded delivery frame every device without a ciphertext of its
    /// own receives (sender-key messages, membership entries): identical
    /// for all of them, so it is encoded once, by the first connection
    /// that needs it.
    pub shared_frame: std::sync::OnceLock<Bytes>,
}

impl CommittedEntry {
    /// The ciphertext addressed to `device`, if the sender wrote one.
    pub(crate) fn ciphertext_for(&self, device: DeviceAddr) -> Option<&Bytes> {
        self.device_ciphertexts
            .iter()
            .find(|dc| dc.device_id == device.device && dc.user_id[..] == device.user.0[..])
            .map(|dc| &dc.ciphertext)
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
    lagging: AtomicBool,
    revoked: AtomicBool,
    wake: Notify,
}

impl Outbound {
    /// How much of a mailbox's capacity this takes: one per entry.
    pub(crate) fn weight(&self) -> usize {
        match self {
            Self::Entries(entries) => entries.len(),
            Self::Event(_) | Self::Ephemeral(_) => 1,
        }
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
        match self.tx.try_send(out) {
            Ok(()) => true,
            Err(e) => {
                self.queued.fetch_sub(weight, Ordering::AcqRel);
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
#[derive(Debug, Default)]
pub(crate) struct Router {
    online: RwLock<HashMap<UserId, Vec<Arc<Mailbox>>>>,
    next_id: AtomicU64,
}

impl Router {
    /// An empty router.
    pub(crate) fn new() -> Self {
        Self::default()
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

    /// Registers an authenticated connection with a queue of `capacity`;
    /// the flag tells whether the account just came online.
    pub(crate) fn register(
        &self,
        device: DeviceAddr,
        capacity: usize,
    ) -> (Arc<Mailbox>, mpsc::Receiver<Outbound>, bool) {
        let (tx, rx) = mpsc::channel(capacity);
        let mailbox = Arc::new(Mailbox {
            device,
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            tx,
            queued: AtomicUsize::new(0),
            capacity,
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
        for mailbox in self.read().get(user).into_iter().flatten() {
            if devices.contains(&mailbox.device.device) {
                mailbox.revoked.store(true, Ordering::Release);
                mailbox.wake.notify_one();
            }
        }
    }

    /// Pushes to every online device of `user` except `skip`.
    pub(crate) fn push_to_user(&self, user: &UserId, skip: Option<DeviceAddr>, out: &Outbound) {
        for mailbox in self.read().get(user).into_iter().flatten() {
            if Some(mailbox.device) != skip {
                mailbox.push(out.clone());
            }
        }
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
        let online = self.read();
        let mut batches: HashMap<u64, (&Arc<Mailbox>, Vec<Arc<CommittedEntry>>)> = HashMap::new();
        for entry in entries {
            for user in &entry.recipients {
                for mailbox in online.get(user).into_iter().flatten() {
                    if mailbox.device != entry.sender {
                        batches
                            .entry(mailbox.id)
                            .or_insert_with(|| (mailbox, Vec::new()))
                            .1
                            .push(entry.clone());
                    }
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
        for mailbox in self.read().get(user).into_iter().flatten() {
            mailbox.push(Outbound::Event(Box::new(event.clone())));
        }
    }

    /// Sends an event to one device, if online.
    pub(crate) fn notify_device(&self, device: DeviceAddr, event: &Event) {
        for mailbox in self.read().get(&device.user).into_iter().flatten() {
            if mailbox.device == device {
                mailbox.push(Outbound::Event(Box::new(event.clone())));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, sender: DeviceAddr, recipients: Vec<UserId>) -> Arc<CommittedEntry> {
        let ct = |d: DeviceAddr, b: u8| DeviceCiphertext {
            user_id: d.user.to_wire(),
            device_id: d.device,
            ciphertext: Bytes::from(vec![b]),
        };
        Arc::new(CommittedEntry {
            chat_id: ChatId([9; 16]),
            seq,
            kind: EntryKind::Message,
            sender,
            server_time_ms: 1,
            client_message_id: Some(ClientMessageId([seq as u8; 16])),
            device_ciphertexts: vec![
                ct(DeviceAddr::test(2, 1), 21),
                ct(DeviceAddr::test(2, 2), 22),
                ct(DeviceAddr::test(1, 2), 12),
            ],
            common_ciphertext: Bytes::new(),
            added: vec![],
            removed: vec![],
            recipients,
            committed_at: std::time::Instant::now(),
            shared_frame: std::sync::OnceLock::new(),
        })
    }

    #[test]
    fn each_device_gets_only_its_ciphertext_and_sender_gets_nothing() {
        let router = Router::new();
        let (_s, mut sender_rx, _) = router.register(DeviceAddr::test(1, 1), 8);
        let (_o, mut own_rx, _) = router.register(DeviceAddr::test(1, 2), 8);
        let (_a, mut a_rx, _) = router.register(DeviceAddr::test(2, 1), 8);
        let (_b, mut b_rx, _) = router.register(DeviceAddr::test(2, 2), 8);
        let e = entry(
            1,
            DeviceAddr::test(1, 1),
            vec![UserId([1; 16]), UserId([2; 16])],
        );
        assert_eq!(router.fan_out(&[e]), 3);
        assert!(sender_rx.try_recv().is_err());
        for (rx, d, want) in [
            (&mut own_rx, DeviceAddr::test(1, 2), 12u8),
            (&mut a_rx, DeviceAddr::test(2, 1), 21),
            (&mut b_rx, DeviceAddr::test(2, 2), 22),
        ] {
            let Ok(Outbound::Entries(got)) = rx.try_recv() else {
                panic!("no entry")
            };
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].delivery_for(d).ciphertext[..], [want]);
        }
    }

    fn seqs(out: Outbound) -> Vec<u64> {
        match out {
            Outbound::Entries(e) => e.iter().map(|e| e.seq).collect(),
            Outbound::Event(_) | Outbound::Ephemeral(_) => Vec::new(),
        }
    }

    #[test]
    fn full_mailbox_lags_and_drops_until_cleared() {
        let router = Router::new();
        let (mb, mut rx, _) = router.register(DeviceAddr::test(2, 1), 2);
        let recipients = vec![UserId([2; 16])];
        for seq in 1..=5 {
            router.fan_out(&[entry(seq, DeviceAddr::test(1, 1), recipients.clone())]);
        }
        assert!(mb.is_lagging());
        let got: Vec<u64> = std::iter::from_fn(|| rx.try_recv().ok())
            .inspect(|o| mb.taken(o))
            .flat_map(seqs)
            .collect();
        assert_eq!(got, vec![1, 2]);
        mb.clear_lagging();
        router.fan_out(&[entry(6, DeviceAddr::test(1, 1), recipients)]);
        assert_eq!(rx.try_recv().map(seqs).ok(), Some(vec![6]));
    }

    #[test]
    fn a_commit_reaches_each_mailbox_as_one_batch_counted_per_entry() {
        let router = Router::new();
        let (mb, mut rx, _) = router.register(DeviceAddr::test(2, 1), 3);
        let to = vec![UserId([2; 16])];
        let commit: Vec<_> = (1..=3)
            .map(|s| entry(s, DeviceAddr::test(1, 1), to.clone()))
            .collect();
        assert_eq!(router.fan_out(&commit), 3);
        let batch = rx.try_recv().unwrap();
        assert_eq!(seqs(batch.clone()), vec![1, 2, 3]);
        assert!(rx.try_recv().is_err(), "one batch, not three items");
        // The batch fills the capacity of 3 until it is taken.
        assert_eq!(
            router.fan_out(&[entry(4, DeviceAddr::test(1, 1), to.clone())]),
            0
        );
        assert!(mb.is_lagging());
        assert_eq!(router.queued_total(), 3);
        mb.taken(&batch);
        assert_eq!(router.queued_total(), 0);
        mb.clear_lagging();
        assert_eq!(router.fan_out(&[entry(5, DeviceAddr::test(1, 1), to)]), 1);
    }

    #[test]
    fn unregister_removes_only_that_connection() {
        let router = Router::new();
        let (first, _rx1, came_online) = router.register(DeviceAddr::test(1, 1), 1);
        assert!(came_online);
        let (second, _rx2, again) = router.register(DeviceAddr::test(1, 1), 1);
        assert!(!again);
        assert!(!router.unregister(&first));
        assert!(router.is_online(&UserId([1; 16])));
        assert_eq!(router.connection_count(), 1);
        assert!(router.unregister(&second), "the last device went offline");
    }
}
