//! An in-memory backend for tests: the whole state in one `Mutex`, the
//! domain rules from [`super::rules`], nothing on disk. It runs the
//! conformance suite next to the durable backends, and relay logic can be
//! tested on it without a database file.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use tern_protocol::wire::{ChatKind, Delivery, DeviceCiphertext, EntryKind};
use tern_protocol::{ChatId, ClientMessageId, UserId};

mod directory;

use directory::{Device, Prekeys};

use super::rules::{self, Member, MembershipEffect};
use super::*;
use crate::error::RelayError;

/// Bytes a sync page counts per entry besides its ciphertexts (as SQLite).
const ENTRY_OVERHEAD: usize = 128;

/// An entry of a chat log.
#[derive(Debug, Clone)]
struct Entry {
    kind: EntryKind,
    sender: DeviceAddr,
    server_time_ms: u64,
    client_message_id: Option<ClientMessageId>,
    ciphertexts: Vec<DeviceCiphertext>,
    common: Bytes,
    added: Vec<UserId>,
    removed: Vec<UserId>,
    promoted: Vec<UserId>,
}

/// A chat, its members and its log.
#[derive(Debug, Clone)]
struct Chat {
    kind: ChatKind,
    members: Vec<Member>,
    /// The highest seq ever assigned before retention emptied the log.
    collected_up_to: u64,
    log: BTreeMap<u64, Entry>,
}

impl Chat {
    fn last_seq(&self) -> u64 {
        self.log
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0)
            .max(self.collected_up_to)
    }

    fn member(&self, user: &UserId) -> Option<&Member> {
        self.members.iter().find(|m| m.user == *user)
    }

    fn record(&self, chat_id: ChatId) -> ChatRecord {
        let mut members: Vec<UserId> = self.members.iter().map(|m| m.user).collect();
        members.sort_unstable();
        let mut admins: Vec<UserId> = self
            .members
            .iter()
            .filter(|m| m.admin)
            .map(|m| m.user)
            .collect();
        admins.sort_unstable();
        ChatRecord {
            chat_id,
            kind: self.kind,
            members,
            admins,
            last_seq: self.last_seq(),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    accounts: BTreeMap<UserId, AccountRecord>,
    devices: BTreeMap<DeviceAddr, Device>,
    invites: HashSet<[u8; 32]>,
    prekeys: HashMap<DeviceAddr, Prekeys>,
    chats: BTreeMap<ChatId, Chat>,
    /// Where each sent message is: (sender account, client id) → (chat, seq).
    sent: HashMap<(UserId, ClientMessageId), (ChatId, u64)>,
    cursors: HashMap<(DeviceAddr, ChatId), u64>,
}

impl State {
    fn devices_of(&self, user: UserId) -> impl Iterator<Item = DeviceAddr> + '_ {
        self.devices.keys().filter(move |d| d.user == user).copied()
    }

    /// Where `device` reads `chat` from: its cursor, never before the join.
    fn read_from(&self, device: DeviceAddr, chat_id: &ChatId, chat: &Chat) -> u64 {
        let joined = chat.member(&device.user).map_or(0, |m| m.joined_seq);
        let cursor = self.cursors.get(&(device, *chat_id)).copied().unwrap_or(0);
        cursor.max(joined.saturating_sub(1))
    }

    /// Bytes queued for `device`: what it will receive and has not
    /// acknowledged, over all its chats.
    fn queued(&self, device: DeviceAddr) -> u64 {
        self.chats
            .iter()
            .filter(|(_, chat)| chat.member(&device.user).is_some())
            .flat_map(|(id, chat)| {
                let from = self.read_from(device, id, chat);
                chat.log
                    .range(from + 1..)
                    .map(move |(_, e)| queued_size(e, device))
            })
            .sum()
    }

    fn original(&self, sender: &UserId, id: &ClientMessageId) -> Option<Appended> {
        let (chat, seq) = self.sent.get(&(*sender, *id))?;
        let entry = self.chats.get(chat)?.log.get(seq)?;
        Some(Appended {
            seq: *seq,
            server_time_ms: entry.server_time_ms,
            duplicate: true,
            members: Vec::new(),
            promoted: Vec::new(),
        })
    }

    fn append_message(
        &mut self,
        m: &MessageAppend,
        now_ms: u64,
        quota: u64,
    ) -> Result<Appended, StoreError> {
        if let Some(original) = self.original(&m.sender.user, &m.client_message_id) {
            return Ok(original);
        }
        let chat = self
            .chats
            .get(&m.chat_id)
            .ok_or(RelayError::NotFound("chat"))?;
        let members = chat.record(m.chat_id).members;
        let devices: Vec<DeviceAddr> = members
            .iter()
            .flat_map(|user| self.devices_of(*user))
            .collect();
        rules::check_message(&members, &devices, m, &mut |device, size| {
            Ok(self.queued(device).saturating_add(size) <= quota)
        })?;
        let entry = Entry {
            kind: EntryKind::Message,
            sender: m.sender,
            server_time_ms: now_ms,
            client_message_id: Some(m.client_message_id),
            ciphertexts: m.device_ciphertexts.clone(),
            common: m.common_ciphertext.clone(),
            added: Vec::new(),
            removed: Vec::new(),
            promoted: Vec::new(),
        };
        let chat = self
            .chats
            .get_mut(&m.chat_id)
            .ok_or(RelayError::NotFound("chat"))?;
        let seq = chat.last_seq() + 1;
        chat.log.insert(seq, entry);
        self.sent
            .insert((m.sender.user, m.client_message_id), (m.chat_id, seq));
        Ok(Appended {
            seq,
            server_time_ms: now_ms,
            duplicate: false,
            members,
            promoted: Vec::new(),
        })
    }

    fn append_membership(
        &mut self,
        m: &MembershipAppend,
        now_ms: u64,
    ) -> Result<Appended, StoreError> {
        let effect = match (m.create, self.chats.get(&m.chat_id)) {
            (Some(_), Some(_)) => return Err(RelayError::Conflict("chat id taken").into()),
            (Some(kind), None) => rules::create_chat(kind, m.actor.user, &m.added),
            (None, Some(chat)) => rules::change_members(chat.kind, &chat.members, m)?,
            (None, None) => return Err(RelayError::NotFound("chat").into()),
        };
        if effect.joined.iter().any(|u| !self.accounts.contains_key(u)) {
            return Err(RelayError::NotFound("added user").into());
        }
        let chat = self.chats.entry(m.chat_id).or_insert_with(|| Chat {
            kind: m.create.unwrap_or(ChatKind::Group),
            members: Vec::new(),
            collected_up_to: 0,
            log: BTreeMap::new(),
        });
        let seq = chat.last_seq() + 1;
        apply(chat, seq, &effect);
        chat.log.insert(
            seq,
            Entry {
                kind: EntryKind::Membership,
                sender: m.actor,
                server_time_ms: now_ms,
                client_message_id: None,
                ciphertexts: Vec::new(),
                common: Bytes::new(),
                added: m.added.clone(),
                removed: m.removed.clone(),
                promoted: effect.promoted.clone(),
            },
        );
        let members = chat.record(m.chat_id).members;
        self.cursors
            .retain(|(d, c), _| *c != m.chat_id || !effect.left.contains(&d.user));
        Ok(Appended {
            seq,
            server_time_ms: now_ms,
            duplicate: false,
            members,
            promoted: effect.promoted,
        })
    }
}

/// Writes a membership effect into the chat's member list.
fn apply(chat: &mut Chat, seq: u64, effect: &MembershipEffect) {
    for user in &effect.joined {
        if chat.member(user).is_none() {
            chat.members.push(Member {
                user: *user,
                joined_seq: seq,
                admin: false,
            });
        }
    }
    chat.members.retain(|m| !effect.left.contains(&m.user));
    for member in &mut chat.members {
        if effect.promoted.contains(&member.user) {
            member.admin = true;
        }
    }
}

/// Bytes an entry adds to `device`'s queue ([`rules::queued_bytes`]).
fn queued_size(entry: &Entry, device: DeviceAddr) -> u64 {
    rules::queued_bytes(entry.sender, &entry.ciphertexts, entry.common.len(), device)
}

fn own_ciphertext(entry: &Entry, device: DeviceAddr) -> Option<&Bytes> {
    entry
        .ciphertexts
        .iter()
        .find(|dc| dc.device_id == device.device && dc.user_id[..] == device.user.0[..])
        .map(|dc| &dc.ciphertext)
}

fn delivery(chat_id: ChatId, seq: u64, entry: &Entry, device: DeviceAddr) -> Delivery {
    let ids = |list: &[UserId]| list.iter().map(UserId::to_wire).collect();
    Delivery {
        chat_id: chat_id.to_wire(),
        seq,
        kind: entry.kind as i32,
        sender_user_id: entry.sender.user.to_wire(),
        sender_device_id: entry.sender.device,
        server_time_ms: entry.server_time_ms,
        client_message_id: entry
            .client_message_id
            .map(|id| id.to_wire())
            .unwrap_or_default(),
        ciphertext: own_ciphertext(entry, device).cloned().unwrap_or_default(),
        common_ciphertext: entry.common.clone(),
        added: ids(&entry.added),
        removed: ids(&entry.removed),
        promoted: ids(&entry.promoted),
    }
}

/// The in-memory store.
#[derive(Debug)]
pub(crate) struct MemoryStore {
    state: Mutex<State>,
    queue_quota: u64,
}

impl MemoryStore {
    /// An empty store whose devices may each have `queue_quota` bytes
    /// queued.
    pub(crate) fn new(queue_quota: u64) -> Self {
        Self {
            state: Mutex::default(),
            queue_quota,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl LogStore for MemoryStore {
    fn append_batch(
        &self,
        items: &[LogAppend],
        now_ms: u64,
    ) -> Result<Vec<Result<Appended, StoreError>>, StoreError> {
        let mut s = self.lock();
        let results = items
            .iter()
            .map(|item| match item {
                LogAppend::Message(m) => s.append_message(m, now_ms, self.queue_quota),
                LogAppend::Membership(m) => s.append_membership(m, now_ms),
            })
            .collect();
        Ok(results)
    }
}

impl ChatStore for MemoryStore {
    fn chat(&self, chat: &ChatId) -> Result<Option<ChatRecord>, StoreError> {
        Ok(self.lock().chats.get(chat).map(|c| c.record(*chat)))
    }

    fn chats_of(&self, user: &UserId) -> Result<Vec<ChatRecord>, StoreError> {
        let s = self.lock();
        let chats = s
            .chats
            .iter()
            .filter(|(_, c)| c.member(user).is_some())
            .map(|(id, c)| c.record(*id))
            .collect();
        Ok(chats)
    }

    fn contacts_of(&self, user: &UserId) -> Result<Vec<UserId>, StoreError> {
        let s = self.lock();
        let mut out: Vec<UserId> = s
            .chats
            .values()
            .filter(|c| c.member(user).is_some())
            .flat_map(|c| c.members.iter().map(|m| m.user))
            .collect();
        out.push(*user);
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }
}

/// A cursor names a chat the device's account is not a member of.
fn not_a_member() -> StoreError {
    rules::cursor_outside_membership().into()
}

impl CursorStore for MemoryStore {
    fn read_log(
        &self,
        device: DeviceAddr,
        after: &[(ChatId, u64)],
        limit: usize,
        max_bytes: usize,
    ) -> Result<(Vec<Delivery>, bool), StoreError> {
        let s = self.lock();
        let is_member = |id: &ChatId| {
            s.chats
                .get(id)
                .is_some_and(|c| c.member(&device.user).is_some())
        };
        if after.iter().any(|(id, _)| !is_member(id)) {
            return Err(not_a_member());
        }
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for (id, chat) in s.chats.iter().filter(|(id, _)| is_member(id)) {
            let from = match after.iter().find(|(c, _)| c == id) {
                Some((_, seq)) => {
                    let joined = chat.member(&device.user).map_or(0, |m| m.joined_seq);
                    (*seq).max(joined.saturating_sub(1))
                }
                None => s.read_from(device, id, chat),
            };
            for (seq, entry) in chat.log.range(from + 1..) {
                if out.len() == limit || (bytes > max_bytes && !out.is_empty()) {
                    return Ok((out, true));
                }
                let d = delivery(*id, *seq, entry, device);
                bytes += d.ciphertext.len() + d.common_ciphertext.len() + ENTRY_OVERHEAD;
                out.push(d);
            }
        }
        Ok((out, false))
    }

    fn ack_cursors(&self, device: DeviceAddr, cursors: &[(ChatId, u64)]) -> Result<(), StoreError> {
        let mut s = self.lock();
        let mut moves = Vec::with_capacity(cursors.len());
        for (id, seq) in cursors {
            let chat = s.chats.get(id).ok_or_else(not_a_member)?;
            if chat.member(&device.user).is_none() {
                return Err(not_a_member());
            }
            moves.push((*id, (*seq).min(chat.last_seq())));
        }
        for (id, seq) in moves {
            let cursor = s.cursors.entry((device, id)).or_default();
            *cursor = (*cursor).max(seq);
        }
        Ok(())
    }
}

/// Embedded: no connection pool to a server.
impl PoolStats for MemoryStore {}

impl RetentionStore for MemoryStore {
    fn collect_garbage(&self, expire_before_ms: u64) -> Result<u64, StoreError> {
        let mut s = self.lock();
        let floors: Vec<(ChatId, u64)> = s
            .chats
            .iter()
            .map(|(id, chat)| {
                let acked = chat
                    .members
                    .iter()
                    .flat_map(|m| s.devices_of(m.user))
                    .map(|d| s.cursors.get(&(d, *id)).copied().unwrap_or(0))
                    .min()
                    .unwrap_or(0);
                let expired = chat
                    .log
                    .iter()
                    .filter(|(_, e)| e.server_time_ms < expire_before_ms)
                    .map(|(seq, _)| *seq)
                    .max()
                    .unwrap_or(0);
                (*id, acked.max(expired))
            })
            .filter(|(_, floor)| *floor > 0)
            .collect();
        let mut deleted = 0;
        for (id, floor) in floors {
            let Some(chat) = s.chats.get_mut(&id) else {
                continue;
            };
            chat.collected_up_to = chat.last_seq();
            let kept = chat.log.split_off(&(floor + 1));
            let gone = std::mem::replace(&mut chat.log, kept);
            deleted += gone.len() as u64;
            s.sent.retain(|_, (chat, seq)| *chat != id || *seq > floor);
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::MemoryStore;
    use crate::store::Store;
    use crate::store::conformance::{Backend, conformance_suite};

    /// Reopening keeps the state, as a durable backend's restart would.
    struct MemoryBackend(MemoryStore);

    impl Backend for MemoryBackend {
        fn fresh(queue_quota: u64) -> Self {
            Self(MemoryStore::new(queue_quota))
        }

        fn store(&self) -> &dyn Store {
            &self.0
        }

        fn reopen(&mut self) {}
    }

    conformance_suite!(super::MemoryBackend);
}
