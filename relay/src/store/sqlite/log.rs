//! Chats and the append-only per-chat message log (the write side; reading
//! and cursors are in `cursors.rs`).
//!
//! A message is one `log` row: it is stored once whatever the member count,
//! and fanned out logically. Its per-device ciphertexts ride in the row
//! (`log.ciphertexts`, see [`crate::store::ciphertexts`]) unless they are too
//! large, then they get one `log_ciphertexts` row each. So a 1:1 append
//! writes its row at the end of `log` (a rowid table: rows land in commit
//! order), one entry in the `(chat_id, seq)` index (one leaf per chat a
//! commit touches) and one in the idempotency index (at its end, with
//! time-ordered client message ids); the chat's row is not rewritten (its
//! last seq is the log's highest, see `last_seq_of_c!`). Every check of an
//! append runs before its first write, so a rejected item leaves nothing
//! behind and the rest of its batch commits.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use tern_protocol::wire::{ChatKind, EntryKind};
use tern_protocol::{ChatId, ClientMessageId, UserId};

use super::quota;
use super::{chat_id, members, user_id};
use crate::error::{RelayError, StoreError};
use crate::store::ciphertexts;
use crate::store::quota::QueuedBytes;
use crate::store::rules;
use crate::store::{
    Appended, ChatRecord, DeviceAddr, LogAppend, MembershipAppend, MessageAppend, join_ids,
};

/// Most chats whose member devices the log writer keeps in memory.
const MAX_CACHED_CHATS: usize = 100_000;

/// A chat's members and all their devices, as sends are checked against.
struct ChatDevices {
    members: Vec<UserId>,
    devices: Vec<DeviceAddr>,
}

/// The log writer's connection and what it keeps in memory: member devices
/// per chat, and each touched chat's last seq (the writer is the only one
/// that assigns seqs, so its copy is authoritative once loaded). A chat's
/// devices are dropped when its membership changes; everything is dropped
/// when any device list changed (`epoch`) or a commit failed.
pub(super) struct LogWriterState {
    pub(super) conn: Connection,
    chats: HashMap<ChatId, Arc<ChatDevices>>,
    seqs: HashMap<ChatId, u64>,
    epoch: u64,
}

impl LogWriterState {
    pub(super) fn new(conn: Connection) -> Self {
        Self {
            conn,
            chats: HashMap::new(),
            seqs: HashMap::new(),
            epoch: 0,
        }
    }

    fn forget(&mut self) {
        self.chats.clear();
        self.seqs.clear();
    }
}

/// What one append transaction works with besides the SQL connection.
struct Batch<'a> {
    cache: &'a mut HashMap<ChatId, Arc<ChatDevices>>,
    seqs: &'a mut HashMap<ChatId, u64>,
    quota: &'a Quota<'a>,
    now: u64,
}

fn chat_devices(
    tx: &Connection,
    cache: &mut HashMap<ChatId, Arc<ChatDevices>>,
    chat: &ChatId,
) -> Result<Arc<ChatDevices>, StoreError> {
    if let Some(found) = cache.get(chat) {
        return Ok(found.clone());
    }
    let devices = member_devices(tx, chat)?;
    let mut members: Vec<UserId> = devices.iter().map(|d| d.user).collect();
    members.sort_unstable();
    members.dedup();
    let entry = Arc::new(ChatDevices { members, devices });
    if !entry.members.is_empty() {
        if cache.len() >= MAX_CACHED_CHATS {
            cache.clear();
        }
        cache.insert(*chat, entry.clone());
    }
    Ok(entry)
}

/// The queued-bytes quota appends are checked against.
pub(super) struct Quota<'a> {
    pub(super) queued: &'a QueuedBytes,
    pub(super) limit: u64,
}

pub(super) fn append_batch(
    state: &mut LogWriterState,
    device_epoch: u64,
    quota: &Quota<'_>,
    items: &[LogAppend],
    now: u64,
) -> Result<Vec<Result<Appended, StoreError>>, StoreError> {
    if state.epoch != device_epoch || state.chats.len() >= MAX_CACHED_CHATS {
        state.forget();
        state.epoch = device_epoch;
    }
    let mut batch = Batch {
        cache: &mut state.chats,
        seqs: &mut state.seqs,
        quota,
        now,
    };
    let result = append_in_transaction(&mut state.conn, &mut batch, items);
    if result.is_err() {
        state.forget();
    }
    result
}

fn append_in_transaction(
    conn: &mut Connection,
    batch: &mut Batch<'_>,
    items: &[LogAppend],
) -> Result<Vec<Result<Appended, StoreError>>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let result = match item {
            LogAppend::Message(m) => append_message(&tx, batch, m),
            LogAppend::Membership(m) => {
                batch.cache.remove(&m.chat_id);
                append_membership(&tx, batch, m)
            }
        };
        match result {
            Err(StoreError::Rejected(e)) => out.push(Err(StoreError::Rejected(e))),
            Err(e) => return Err(e),
            Ok(a) => out.push(Ok(a)),
        }
    }
    tx.commit()?;
    Ok(out)
}

fn chat_exists(tx: &Connection, chat: &ChatId) -> Result<bool, StoreError> {
    Ok(tx
        .prepare_cached("SELECT 1 FROM chats WHERE chat_id = ?1")?
        .exists([&chat.0[..]])?)
}

/// The chat's last assigned seq, from memory or (first time) the database.
fn last_seq(tx: &Connection, batch: &mut Batch<'_>, chat: &ChatId) -> Result<u64, StoreError> {
    if let Some(seq) = batch.seqs.get(chat) {
        return Ok(*seq);
    }
    let seq: i64 = tx
        .prepare_cached(concat!(
            "SELECT ",
            last_seq_of_c!(),
            " FROM chats c WHERE c.chat_id = ?1"
        ))?
        .query_row([&chat.0[..]], |r| r.get(0))?;
    let seq = seq as u64;
    batch.seqs.insert(*chat, seq);
    Ok(seq)
}

/// Records that `seq` was assigned in `chat` (its log row carries it).
fn assign_seq(batch: &mut Batch<'_>, chat: &ChatId, seq: u64) {
    batch.seqs.insert(*chat, seq);
}

fn not_member(tx: &Connection, chat: &ChatId) -> Result<StoreError, StoreError> {
    Ok(if chat_exists(tx, chat)? {
        RelayError::Forbidden("not a member of this chat").into()
    } else {
        RelayError::NotFound("chat").into()
    })
}

/// Bytes a message queues for each recipient device.
type QueuedSizes = Vec<(DeviceAddr, u64)>;

/// Checks a message against the chat ([`rules::check_message`], with the
/// queue quota); returns the members and per-device sizes.
fn check_message(
    tx: &Connection,
    batch: &mut Batch<'_>,
    m: &MessageAppend,
) -> Result<(Arc<ChatDevices>, QueuedSizes), StoreError> {
    let chat = chat_devices(tx, batch.cache, &m.chat_id)?;
    if chat.members.is_empty() {
        return Err(not_member(tx, &m.chat_id)?);
    }
    let quota = &batch.quota;
    let sizes = rules::check_message(&chat.members, &chat.devices, m, &mut |device, size| {
        quota
            .queued
            .fits(device, size, quota.limit, || quota::load(tx, device))
    })?;
    Ok((chat, sizes))
}

/// Appends a message. The idempotency check rides on the insert (the
/// unique client-id index), so a fresh message costs no extra lookup; a
/// resend finds the original. A resend that no longer passes the checks
/// (its sender left, a recipient's queue filled) still gets its original.
fn append_message(
    tx: &Transaction<'_>,
    batch: &mut Batch<'_>,
    m: &MessageAppend,
) -> Result<Appended, StoreError> {
    let (chat, sizes) = match check_message(tx, batch, m) {
        Ok(checked) => checked,
        Err(e) => return find_sent(tx, &m.sender.user, &m.client_message_id)?.ok_or(e),
    };
    let seq = last_seq(tx, batch, &m.chat_id)? + 1;
    let chat_key = &m.chat_id.0[..];
    let common = (!m.common_ciphertext.is_empty()).then_some(&m.common_ciphertext[..]);
    let inline = ciphertexts::encode_message(m)?;
    let inserted = tx
        .prepare_cached(
            "INSERT INTO log (chat_id, seq, kind, sender_user, sender_device, client_message_id,
                              server_time_ms, common_ciphertext, ciphertexts)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (client_message_id, sender_user) WHERE client_message_id IS NOT NULL
             DO NOTHING",
        )?
        .execute(params![
            chat_key,
            seq as i64,
            EntryKind::Message as i32,
            &m.sender.user.0[..],
            m.sender.device,
            &m.client_message_id.0[..],
            batch.now as i64,
            common,
            inline
        ])?;
    if inserted == 0 {
        return find_sent(tx, &m.sender.user, &m.client_message_id)?.ok_or(StoreError::Corrupt(
            "client message id conflict without a row",
        ));
    }
    assign_seq(batch, &m.chat_id, seq);
    if inline.is_none() {
        spill_ciphertexts(tx, m, seq)?;
    }
    for (device, size) in sizes {
        batch.quota.queued.add(device, size);
    }
    Ok(Appended {
        seq,
        server_time_ms: batch.now,
        duplicate: false,
        members: chat.members.clone(),
        promoted: Vec::new(),
    })
}

/// Stores a large fan-out's ciphertexts one row per device, so a device
/// reads only its own.
fn spill_ciphertexts(tx: &Transaction<'_>, m: &MessageAppend, seq: u64) -> Result<(), StoreError> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO log_ciphertexts (chat_id, seq, user_id, device_id, ciphertext)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let chat_key = &m.chat_id.0[..];
    for dc in &m.device_ciphertexts {
        insert.execute(params![
            chat_key,
            seq as i64,
            &dc.user_id[..],
            dc.device_id,
            &dc.ciphertext[..]
        ])?;
    }
    Ok(())
}

fn append_membership(
    tx: &Transaction<'_>,
    batch: &mut Batch<'_>,
    m: &MembershipAppend,
) -> Result<Appended, StoreError> {
    let chat = &m.chat_id.0[..];
    let effect = match m.create {
        Some(kind) => {
            if chat_exists(tx, &m.chat_id)? {
                return Err(RelayError::Conflict("chat id taken").into());
            }
            rules::create_chat(kind, m.actor.user, &m.added)
        }
        None => {
            let kind = chat_kind(tx, &m.chat_id)?.ok_or(RelayError::NotFound("chat"))?;
            rules::change_members(kind, &members::load(tx, &m.chat_id)?, m)?
        }
    };
    let mut exists = tx.prepare_cached("SELECT 1 FROM accounts WHERE user_id = ?1")?;
    for u in &effect.joined {
        if !exists.exists([&u.0[..]])? {
            return Err(RelayError::NotFound("added user").into());
        }
    }
    if let Some(kind) = m.create {
        tx.execute(
            "INSERT INTO chats (chat_id, kind, last_seq) VALUES (?1, ?2, 0)",
            params![chat, kind as i32],
        )?;
    }
    let seq = last_seq(tx, batch, &m.chat_id)? + 1;
    assign_seq(batch, &m.chat_id, seq);
    members::apply(tx, &m.chat_id, seq, &effect)?;
    tx.execute(
        "INSERT INTO log (chat_id, seq, kind, sender_user, sender_device, server_time_ms,
                          added, removed, promoted)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            chat,
            seq as i64,
            EntryKind::Membership as i32,
            &m.actor.user.0[..],
            m.actor.device,
            batch.now as i64,
            join_ids(&m.added),
            join_ids(&m.removed),
            join_ids(&effect.promoted)
        ],
    )?;
    Ok(Appended {
        seq,
        server_time_ms: batch.now,
        duplicate: false,
        members: members_of(tx, &m.chat_id)?,
        promoted: effect.promoted,
    })
}

/// A chat's kind, `None` when it does not exist.
fn chat_kind(tx: &Connection, chat: &ChatId) -> Result<Option<ChatKind>, StoreError> {
    let kind: Option<i32> = tx
        .prepare_cached("SELECT kind FROM chats WHERE chat_id = ?1")?
        .query_row([&chat.0[..]], |r| r.get(0))
        .optional()?;
    kind.map(|k| ChatKind::try_from(k).map_err(|_| StoreError::Corrupt("chat kind")))
        .transpose()
}

fn find_sent(
    conn: &Connection,
    sender: &UserId,
    id: &ClientMessageId,
) -> Result<Option<Appended>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT seq, server_time_ms FROM log WHERE client_message_id = ?2 AND sender_user = ?1",
        )?
        .query_row(params![&sender.0[..], &id.0[..]], |r| {
            Ok(Appended {
                seq: r.get::<_, i64>(0)? as u64,
                server_time_ms: r.get::<_, i64>(1)? as u64,
                duplicate: true,
                members: Vec::new(),
                promoted: Vec::new(),
            })
        })
        .optional()?)
}

pub(super) fn chat(conn: &Connection, chat: &ChatId) -> Result<Option<ChatRecord>, StoreError> {
    let head: Option<(i32, i64)> = conn
        .prepare_cached(concat!(
            "SELECT c.kind, ",
            last_seq_of_c!(),
            " FROM chats c WHERE c.chat_id = ?1"
        ))?
        .query_row([&chat.0[..]], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((kind, last_seq)) = head else {
        return Ok(None);
    };
    Ok(Some(ChatRecord {
        chat_id: *chat,
        kind: ChatKind::try_from(kind).map_err(|_| StoreError::Corrupt("chat kind"))?,
        members: members_of(conn, chat)?,
        admins: members::admins_of(conn, chat)?,
        last_seq: last_seq as u64,
    }))
}

fn members_of(conn: &Connection, chat: &ChatId) -> Result<Vec<UserId>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT user_id FROM chat_members WHERE chat_id = ?1 ORDER BY user_id")?;
    let members = stmt
        .query_map([&chat.0[..]], |r| r.get::<_, Vec<u8>>(0))?
        .map(|row| user_id(&row?))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(members)
}

fn member_devices(conn: &Connection, chat: &ChatId) -> Result<Vec<DeviceAddr>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT d.user_id, d.device_id FROM chat_members m JOIN devices d ON d.user_id = m.user_id
         WHERE m.chat_id = ?1",
    )?;
    let rows = stmt.query_map([&chat.0[..]], |r| {
        Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, u32>(1)?))
    })?;
    rows.map(|row| {
        let (user, device) = row?;
        Ok(DeviceAddr {
            user: user_id(&user)?,
            device,
        })
    })
    .collect()
}

pub(super) fn member_chats(
    conn: &Connection,
    user: &UserId,
) -> Result<Vec<(ChatId, u64)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT chat_id, joined_seq FROM chat_members WHERE user_id = ?1 ORDER BY chat_id",
    )?;
    let rows = stmt.query_map([&user.0[..]], |r| {
        Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?))
    })?;
    rows.map(|row| {
        let (c, joined) = row?;
        Ok((chat_id(&c)?, joined as u64))
    })
    .collect()
}

pub(super) fn chats_of(conn: &Connection, user: &UserId) -> Result<Vec<ChatRecord>, StoreError> {
    member_chats(conn, user)?
        .into_iter()
        .filter_map(|(c, _)| chat(conn, &c).transpose())
        .collect()
}

pub(super) fn contacts_of(conn: &Connection, user: &UserId) -> Result<Vec<UserId>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT b.user_id FROM chat_members a JOIN chat_members b ON a.chat_id = b.chat_id
         WHERE a.user_id = ?1",
    )?;
    let mut out = stmt
        .query_map([&user.0[..]], |r| r.get::<_, Vec<u8>>(0))?
        .map(|row| user_id(&row?))
        .collect::<Result<Vec<_>, _>>()?;
    if !out.contains(user) {
        out.push(*user);
    }
    Ok(out)
}
