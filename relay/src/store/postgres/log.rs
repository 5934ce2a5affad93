//! The write side of the chat logs: one transaction per group-committed
//! batch, whichever node runs it.
//!
//! A batch first locks the rows of every chat it touches, in chat id order
//! (`SELECT … FOR UPDATE`): batches of other nodes touching one of those
//! chats wait, and no two batches can deadlock. The locked `last_seq` is
//! the chat's last assigned seq; the batch numbers its entries from it and
//! writes it back before commit. Every check of an append runs before its
//! first write, so a rejected item leaves nothing behind and the rest of
//! its batch commits.
//!
//! Round trips, not rows, are what a batch costs on a network database, and
//! the chats stay locked for all but the first, so a batch of messages
//! takes four, whatever its size: `BEGIN`; the lock and the batch's reads
//! (which of its messages were sent before, the member devices of its
//! chats), pipelined; its rows (one multi-row insert per table,
//! [`super::inserts`]) and the chats' new last seqs, pipelined; `COMMIT`.
//! Only membership changes go one statement at a time.

use std::collections::HashMap;

use deadpool_postgres::GenericClient;
use tern_protocol::wire::{ChatKind, EntryKind};
use tern_protocol::{ChatId, UserId};

use super::directory::Directory;
use super::inserts::{self, Pending, SentKey};
use super::members::{self, ChatDevices};
use super::{Conn, big, chat_id, exec, get, get_u64};
use crate::error::{RelayError, StoreError};
use crate::store::quota::QueuedBytes;
use crate::store::{
    Appended, DeviceAddr, LogAppend, MembershipAppend, MessageAppend, join_ids, rules,
};

/// The queued-bytes quota appends are checked against.
pub(super) struct Quota<'a> {
    pub(super) queued: &'a QueuedBytes,
    pub(super) limit: u64,
}

/// A chat locked by the batch.
struct Locked {
    kind: ChatKind,
    last_seq: u64,
    /// Whether the batch assigned seqs in it.
    appended: bool,
    /// Its members' devices, loaded on the first message.
    devices: Option<ChatDevices>,
}

/// What one append transaction works with.
struct Batch<'a> {
    /// Where the members' accounts and devices are.
    directory: Directory<'a>,
    chats: HashMap<ChatId, Locked>,
    quota: &'a Quota<'a>,
    now: u64,
    /// Messages stored before or earlier in this batch, by sender and
    /// client message id: a resend gets the original.
    sent: HashMap<SentKey, Appended>,
    /// Messages of this batch not written yet.
    pending: Pending<'a>,
}

/// A batch that must start over: one of its client message ids was taken
/// by a transaction that committed after this one looked.
struct Conflicted;

/// Attempts of a batch that keeps meeting [`Conflicted`].
const ATTEMPTS: usize = 3;

impl Batch<'_> {
    fn locked(&mut self, chat: &ChatId) -> Result<&mut Locked, StoreError> {
        self.chats.get_mut(chat).ok_or(StoreError::Corrupt(
            "append to a chat the batch did not lock",
        ))
    }

    /// The seq the next entry of a locked chat gets.
    fn next_seq(&mut self, chat: &ChatId) -> Result<u64, StoreError> {
        Ok(self.locked(chat)?.last_seq + 1)
    }

    /// Records that the chat's next seq went to an entry.
    fn assign(&mut self, chat: &ChatId, seq: u64) -> Result<(), StoreError> {
        let locked = self.locked(chat)?;
        locked.last_seq = seq;
        locked.appended = true;
        Ok(())
    }
}

/// Appends `items` (all in chats of the database `c` is connected to) in
/// one transaction; see [`crate::store::LogStore::append_batch`].
pub(super) async fn append_batch(
    c: &mut Conn,
    directory: Directory<'_>,
    quota: &Quota<'_>,
    items: &[&LogAppend],
    now: u64,
) -> Result<Vec<Result<Appended, StoreError>>, StoreError> {
    for _ in 1..ATTEMPTS {
        match try_batch(c, directory, quota, items, now).await? {
            Ok(out) => return Ok(out),
            // Rolled back: its quota additions go too.
            Err(Conflicted) => quota.queued.clear(),
        }
    }
    try_batch(c, directory, quota, items, now)
        .await?
        .map_err(|Conflicted| StoreError::Corrupt("client message ids keep conflicting"))
}

async fn try_batch<'a>(
    c: &mut Conn,
    directory: Directory<'a>,
    quota: &'a Quota<'a>,
    items: &[&'a LogAppend],
    now: u64,
) -> Result<Result<Vec<Result<Appended, StoreError>>, Conflicted>, StoreError> {
    let tx = c.transaction().await?;
    let (chats, sent, devices) = open(&tx, directory, items).await?;
    let mut batch = Batch {
        directory,
        chats,
        quota,
        now,
        sent,
        pending: Pending::default(),
    };
    batch.set_member_devices(devices);
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let result = match *item {
            LogAppend::Message(m) => append_message(&tx, &mut batch, m).await,
            LogAppend::Membership(m) => {
                if !batch.pending.flush(&tx, now).await? {
                    return Ok(Err(Conflicted));
                }
                append_membership(&tx, &mut batch, m).await
            }
        };
        match result {
            Err(StoreError::Rejected(e)) => out.push(Err(StoreError::Rejected(e))),
            Err(e) => return Err(e),
            Ok(a) => out.push(Ok(a)),
        }
    }
    let last: Vec<(ChatId, u64)> = batch
        .chats
        .iter()
        .filter(|(_, l)| l.appended)
        .map(|(id, l)| (*id, l.last_seq))
        .collect();
    // The rows and the chats' new last seqs in one round trip; a conflict
    // rolls both back.
    let written = tokio::try_join!(
        batch.pending.flush(&tx, now),
        inserts::store_last_seqs(&tx, &last)
    )?;
    if !written.0 {
        return Ok(Err(Conflicted));
    }
    tx.commit().await?;
    Ok(Ok(out))
}

impl Batch<'_> {
    /// Gives every locked chat its member devices (none for a chat without
    /// messages in the batch, or without members).
    fn set_member_devices(&mut self, mut found: HashMap<ChatId, ChatDevices>) {
        for (id, locked) in &mut self.chats {
            let devices = found.remove(id).unwrap_or_else(ChatDevices::none);
            locked.devices = Some(devices);
        }
    }
}

/// Locks chats `$1`, in id order.
const LOCK: &str = "SELECT chat_id, kind, last_seq FROM chats WHERE chat_id = ANY($1)
                    ORDER BY chat_id FOR UPDATE";

/// Opens a batch in one round trip: locks the chats it touches, then reads
/// which of its messages were sent before and the member devices of the
/// chats its messages go to. The three are pipelined in that order — their
/// statements prepared first, so that none is sent before the lock — and
/// PostgreSQL runs them in order: the reads see every transaction that
/// committed before the locks were granted.
async fn open(
    tx: &impl GenericClient,
    directory: Directory<'_>,
    items: &[&LogAppend],
) -> Result<
    (
        HashMap<ChatId, Locked>,
        HashMap<SentKey, Appended>,
        HashMap<ChatId, ChatDevices>,
    ),
    StoreError,
> {
    let lock = tx.prepare_cached(LOCK).await?;
    let sent = tx.prepare_cached(inserts::SENT).await?;
    let members = tx.prepare_cached(directory.members_sql()).await?;
    let touched = chat_ids(items, |_| true);
    let (ids, senders) = inserts::sent_keys(items);
    let messaged = chat_ids(items, |item| matches!(item, LogAppend::Message(_)));
    let (locked, sent, members) = futures_util::future::try_join3(
        tx.query(&lock, &[&touched]),
        tx.query(&sent, &[&ids, &senders]),
        tx.query(&members, &[&messaged]),
    )
    .await?;
    let locked = locked
        .iter()
        .map(|r| {
            let locked = Locked {
                kind: chat_kind(get(r, 1)?)?,
                last_seq: get_u64(r, 2)?,
                appended: false,
                devices: None,
            };
            Ok((chat_id(get(r, 0)?)?, locked))
        })
        .collect::<Result<_, StoreError>>()?;
    let sent = inserts::originals(&sent)?;
    Ok((locked, sent, directory.member_devices_from(&members).await?))
}

/// The chats of the `items` that `pick` selects, sorted, once each.
fn chat_ids<'a>(items: &[&'a LogAppend], pick: impl Fn(&LogAppend) -> bool) -> Vec<&'a [u8]> {
    let mut ids: Vec<&[u8]> = items
        .iter()
        .filter(|item| pick(item))
        .map(|item| match *item {
            LogAppend::Message(m) => &m.chat_id.0[..],
            LogAppend::Membership(m) => &m.chat_id.0[..],
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// A stored chat kind.
pub(super) fn chat_kind(kind: i16) -> Result<ChatKind, StoreError> {
    ChatKind::try_from(i32::from(kind)).map_err(|_| StoreError::Corrupt("chat kind"))
}

/// Checks a message against its chat ([`rules::check_message`], with the
/// queue quota); returns what it adds to each recipient's queue.
async fn check_message(
    tx: &impl GenericClient,
    batch: &mut Batch<'_>,
    m: &MessageAppend,
) -> Result<(Vec<UserId>, Vec<(DeviceAddr, u64)>), StoreError> {
    let locked = batch
        .chats
        .get_mut(&m.chat_id)
        .ok_or(RelayError::NotFound("chat"))?;
    if locked.devices.is_none() {
        let mut found = batch
            .directory
            .member_devices(tx, &[&m.chat_id.0[..]])
            .await?;
        let devices = found.remove(&m.chat_id).unwrap_or_else(ChatDevices::none);
        locked.devices = Some(devices);
    }
    let chat = locked
        .devices
        .as_ref()
        .ok_or(StoreError::Corrupt("member devices not loaded"))?;
    let quota = batch.quota;
    // The quota callback cannot wait for the database: first compute the
    // figures memory cannot decide on — a cheap upper bound, and the exact
    // figure only when the bound would refuse.
    let mut loaded = HashMap::new();
    for d in chat.devices.iter().filter(|d| **d != m.sender) {
        let size = rules::queued_bytes(
            m.sender,
            &m.device_ciphertexts,
            m.common_ciphertext.len(),
            *d,
        );
        if quota.queued.known_fit(*d, size, quota.limit).is_none() {
            quota
                .queued
                .record_bound(*d, super::quota::bound(tx, *d).await?);
        }
        if quota.queued.known_fit(*d, size, quota.limit).is_none() {
            let bytes = super::quota::load(tx, *d).await?;
            quota.queued.record_exact(*d, bytes);
            loaded.insert(*d, bytes);
        }
    }
    let sizes = rules::check_message(&chat.members, &chat.devices, m, &mut |d, size| {
        quota.queued.fits(d, size, quota.limit, || {
            loaded
                .get(&d)
                .copied()
                .ok_or(StoreError::Corrupt("queued bytes not loaded"))
        })
    })?;
    Ok((chat.members.clone(), sizes))
}

/// Appends a message (written with the batch's other messages). A resend
/// (same sender and client message id, from any node, or earlier in this
/// batch) gets its original, even when it would no longer pass the checks.
async fn append_message<'a>(
    tx: &impl GenericClient,
    batch: &mut Batch<'a>,
    m: &'a MessageAppend,
) -> Result<Appended, StoreError> {
    let key = (m.sender.user, m.client_message_id);
    if let Some(original) = batch.sent.get(&key) {
        return Ok(original.clone());
    }
    let (members, sizes) = check_message(tx, batch, m).await?;
    let seq = batch.next_seq(&m.chat_id)?;
    batch.pending.push(m, seq)?;
    batch.assign(&m.chat_id, seq)?;
    for (device, size) in sizes {
        batch.quota.queued.add(device, size);
    }
    let appended = Appended {
        seq,
        server_time_ms: batch.now,
        duplicate: false,
        members,
        promoted: Vec::new(),
    };
    let original = Appended {
        duplicate: true,
        members: Vec::new(),
        ..appended.clone()
    };
    batch.sent.insert(key, original);
    Ok(appended)
}

async fn append_membership(
    tx: &impl GenericClient,
    batch: &mut Batch<'_>,
    m: &MembershipAppend,
) -> Result<Appended, StoreError> {
    let chat = &m.chat_id.0[..];
    let effect = match (m.create, batch.chats.get(&m.chat_id)) {
        (Some(_), Some(_)) => return Err(RelayError::Conflict("chat id taken").into()),
        (Some(kind), None) => rules::create_chat(kind, m.actor.user, &m.added),
        (None, Some(locked)) => {
            rules::change_members(locked.kind, &members::load(tx, &m.chat_id).await?, m)?
        }
        (None, None) => return Err(RelayError::NotFound("chat").into()),
    };
    for u in &effect.joined {
        if !batch.directory.has_account(tx, u).await? {
            return Err(RelayError::NotFound("added user").into());
        }
    }
    if let Some(kind) = m.create {
        let created = exec(
            tx,
            "INSERT INTO chats (chat_id, kind, last_seq) VALUES ($1, $2, 0)
             ON CONFLICT DO NOTHING",
            &[&chat, &(kind as i16)],
        )
        .await?;
        if created == 0 {
            return Err(RelayError::Conflict("chat id taken").into());
        }
        let locked = Locked {
            kind,
            last_seq: 0,
            appended: false,
            devices: None,
        };
        batch.chats.insert(m.chat_id, locked);
    }
    let seq = batch.next_seq(&m.chat_id)?;
    batch.assign(&m.chat_id, seq)?;
    batch.locked(&m.chat_id)?.devices = None;
    members::apply(tx, &m.chat_id, seq, &effect).await?;
    exec(
        tx,
        "INSERT INTO log (chat_id, seq, kind, sender_user, sender_device, server_time_ms,
                          added, removed, promoted)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &chat,
            &big(seq),
            &(EntryKind::Membership as i16),
            &&m.actor.user.0[..],
            &i64::from(m.actor.device),
            &big(batch.now),
            &join_ids(&m.added),
            &join_ids(&m.removed),
            &join_ids(&effect.promoted),
        ],
    )
    .await?;
    Ok(Appended {
        seq,
        server_time_ms: batch.now,
        duplicate: false,
        members: members::members_of(tx, &m.chat_id).await?,
        promoted: effect.promoted,
    })
}
