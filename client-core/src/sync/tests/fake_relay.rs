//! An in-memory relay for the engine's unit tests: accounts with signed
//! device lists, prekey stocks, chats with their logs, and a record of every
//! request. It enforces what the send path depends on — the device-set rule
//! of `Send` (MISMATCHED_DEVICES), deduplication by client message id,
//! NOT_FOUND for unknown chats — and can be told to fail the next sends.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tern_protocol::wire::{
    Bundles, ChatInfo, ChatKind as WireChatKind, Delivery, DeviceAddress as WireDevice,
    DeviceCiphertext, Empty, EntryKind, ErrorCode, KemPrekey, MismatchedDevices, OneTimePrekey,
    PrekeyBundle, SendAck, SignedDeviceList, SignedPrekey, UploadPrekeys, UserInfo, request,
    response,
};

use super::super::Relay;
use crate::model::{ChatId, UserId};
use crate::net::NetError;
use crate::store::ChatKind;
use tern_crypto::session::DeviceAddress;

/// What the relay holds for one device.
struct Prekeys {
    identity: [u8; 32],
    signed: Option<SignedPrekey>,
    one_time: Vec<OneTimePrekey>,
    kem: Vec<KemPrekey>,
    last_resort: Option<KemPrekey>,
}

/// One log entry; per-device ciphertexts are kept for every addressee.
struct Entry {
    delivery: Delivery,
    per_device: Vec<DeviceCiphertext>,
}

struct FakeChat {
    kind: WireChatKind,
    members: Vec<UserId>,
    log: Vec<Entry>,
}

#[derive(Default)]
struct State {
    users: HashMap<UserId, UserInfo>,
    prekeys: HashMap<(UserId, u32), Prekeys>,
    chats: HashMap<ChatId, FakeChat>,
    requests: Vec<(DeviceAddress, request::Kind)>,
    send_faults: VecDeque<NetError>,
}

/// The relay (see the module docs).
#[derive(Default)]
pub(super) struct FakeRelay {
    state: Mutex<State>,
}

/// One device's authenticated view of the [`FakeRelay`].
pub(super) struct FakeLink {
    relay: Arc<FakeRelay>,
    me: DeviceAddress,
}

impl FakeLink {
    pub(super) fn new(relay: &Arc<FakeRelay>, me: DeviceAddress) -> Self {
        Self {
            relay: relay.clone(),
            me,
        }
    }

    pub(super) fn relay(&self) -> &FakeRelay {
        &self.relay
    }
}

impl Relay for FakeLink {
    async fn request(&self, kind: request::Kind) -> Result<response::Kind, NetError> {
        self.relay.answer(self.me, kind)
    }
}

/// A relay error answer.
pub(super) fn relay_error(code: ErrorCode) -> NetError {
    NetError::Relay {
        code,
        message: "fake relay".into(),
        retry_after: None,
        mismatched_devices: None,
    }
}

fn wire_device(address: &DeviceAddress) -> WireDevice {
    WireDevice {
        user_id: Bytes::copy_from_slice(&address.user),
        device_id: address.device,
    }
}

fn id16(bytes: &[u8]) -> Result<[u8; 16], NetError> {
    UserId::try_from(bytes).map_err(|_| relay_error(ErrorCode::BadRequest))
}

impl FakeRelay {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Publishes `info` (a new account, or a new device list) and the
    /// prekeys of `device`.
    pub(super) fn register(
        &self,
        info: UserInfo,
        device: u32,
        identity: [u8; 32],
        upload: UploadPrekeys,
    ) {
        let user = id16(&info.user_id).unwrap();
        let mut state = self.state();
        state.users.insert(user, info);
        state.prekeys.insert(
            (user, device),
            Prekeys {
                identity,
                signed: upload.signed_prekey,
                one_time: upload.one_time_prekeys,
                kem: upload.one_time_kem_prekeys,
                last_resort: upload.last_resort_kem_prekey,
            },
        );
    }

    /// Replaces `user`'s signed device list (a device added or removed).
    pub(super) fn publish_list(&self, user: &UserId, list: SignedDeviceList) {
        if let Some(info) = self.state().users.get_mut(user) {
            info.device_list = Some(list);
        }
    }

    /// The devices (id, identity key) of `user`'s current list.
    pub(super) fn devices(&self, user: &UserId) -> Vec<(u32, [u8; 32])> {
        let state = self.state();
        let list = state.users[user].device_list.as_ref().unwrap();
        tern_protocol::decode_device_list(list)
            .unwrap()
            .devices
            .iter()
            .map(|d| (d.device_id, d.identity_key.as_ref().try_into().unwrap()))
            .collect()
    }

    /// Creates a chat with `members`.
    pub(super) fn create_chat(&self, chat: ChatId, kind: ChatKind, members: &[UserId]) {
        let kind = match kind {
            ChatKind::Direct => WireChatKind::Direct,
            ChatKind::Group => WireChatKind::Group,
        };
        self.state().chats.insert(
            chat,
            FakeChat {
                kind,
                members: members.to_vec(),
                log: Vec::new(),
            },
        );
    }

    /// Records a membership change by `by` in `chat`'s log.
    pub(super) fn change_members(
        &self,
        chat: ChatId,
        by: DeviceAddress,
        added: &[UserId],
        removed: &[UserId],
    ) {
        let mut state = self.state();
        let chat_state = state.chats.get_mut(&chat).unwrap();
        chat_state.members.retain(|m| !removed.contains(m));
        chat_state.members.extend(added);
        let bytes = |users: &[UserId]| users.iter().map(|u| Bytes::copy_from_slice(u)).collect();
        let delivery = Delivery {
            chat_id: Bytes::copy_from_slice(&chat),
            seq: chat_state.log.len() as u64 + 1,
            kind: EntryKind::Membership as i32,
            sender_user_id: Bytes::copy_from_slice(&by.user),
            sender_device_id: by.device,
            added: bytes(added),
            removed: bytes(removed),
            ..Delivery::default()
        };
        chat_state.log.push(Entry {
            delivery,
            per_device: Vec::new(),
        });
    }

    /// Answers the next `Send` (of an existing chat) with `error` instead of
    /// storing it.
    pub(super) fn fail_next_send(&self, error: NetError) {
        self.state().send_faults.push_back(error);
    }

    /// `chat`'s log as delivered to `to`: its own ciphertext, if any, and the
    /// common one.
    pub(super) fn deliveries(&self, chat: ChatId, to: DeviceAddress) -> Vec<Delivery> {
        let state = self.state();
        state.chats[&chat]
            .log
            .iter()
            .map(|entry| {
                let mine = entry
                    .per_device
                    .iter()
                    .find(|c| c.user_id.as_ref() == to.user && c.device_id == to.device);
                Delivery {
                    ciphertext: mine.map(|c| c.ciphertext.clone()).unwrap_or_default(),
                    ..entry.delivery.clone()
                }
            })
            .collect()
    }

    /// The requests `who` made so far, in order.
    pub(super) fn requests_of(&self, who: DeviceAddress) -> Vec<request::Kind> {
        self.state()
            .requests
            .iter()
            .filter(|(by, _)| *by == who)
            .map(|(_, kind)| kind.clone())
            .collect()
    }

    fn answer(&self, me: DeviceAddress, kind: request::Kind) -> Result<response::Kind, NetError> {
        let mut state = self.state();
        state.requests.push((me, kind.clone()));
        match kind {
            request::Kind::LookupUser(lookup) => state
                .users
                .values()
                .find(|u| u.user_name == lookup.user_name || u.user_id == lookup.user_id)
                .map(|info| response::Kind::UserInfo(info.clone()))
                .ok_or(relay_error(ErrorCode::NotFound)),
            request::Kind::FetchBundles(fetch) => {
                state.bundles(&id16(&fetch.user_id)?, &fetch.device_ids)
            }
            request::Kind::GetChat(get) => {
                let chat = id16(&get.chat_id)?;
                let chat = state
                    .chats
                    .get(&chat)
                    .ok_or(relay_error(ErrorCode::NotFound))?;
                Ok(response::Kind::ChatInfo(ChatInfo {
                    chat_id: get.chat_id,
                    kind: chat.kind as i32,
                    members: chat
                        .members
                        .iter()
                        .map(|m| Bytes::copy_from_slice(m))
                        .collect(),
                    last_seq: chat.log.len() as u64,
                    admins: Vec::new(),
                }))
            }
            request::Kind::CreateChat(create) => {
                let chat = id16(&create.chat_id)?;
                if state.chats.contains_key(&chat) {
                    return Err(relay_error(ErrorCode::Conflict));
                }
                let mut members = vec![me.user];
                for member in &create.members {
                    members.push(id16(member)?);
                }
                let kind = WireChatKind::try_from(create.kind).unwrap_or(WireChatKind::Group);
                state.chats.insert(
                    chat,
                    FakeChat {
                        kind,
                        members,
                        log: Vec::new(),
                    },
                );
                Ok(response::Kind::Ok(Empty {}))
            }
            request::Kind::Send(send) => state.append(me, send),
            request::Kind::AckDelivered(_) => Ok(response::Kind::Ok(Empty {})),
            _ => Err(relay_error(ErrorCode::BadRequest)),
        }
    }
}

impl State {
    /// Member devices of `chat` except `sender` (what a send must address).
    fn recipients(&self, chat: &FakeChat, sender: DeviceAddress) -> Vec<DeviceAddress> {
        let mut devices = Vec::new();
        for member in &chat.members {
            let list = self.users[member].device_list.as_ref().unwrap();
            for device in tern_protocol::decode_device_list(list).unwrap().devices {
                let address = DeviceAddress {
                    user: *member,
                    device: device.device_id,
                };
                if address != sender {
                    devices.push(address);
                }
            }
        }
        devices
    }

    fn bundles(&mut self, user: &UserId, devices: &[u32]) -> Result<response::Kind, NetError> {
        let info = self
            .users
            .get(user)
            .ok_or(relay_error(ErrorCode::NotFound))?
            .clone();
        let mut bundles = Vec::new();
        for device in devices {
            let stock = self
                .prekeys
                .get_mut(&(*user, *device))
                .ok_or(relay_error(ErrorCode::NotFound))?;
            let kem = stock.kem.pop();
            bundles.push(PrekeyBundle {
                device_id: *device,
                identity_key: Bytes::copy_from_slice(&stock.identity),
                signed_prekey: stock.signed.clone(),
                one_time_prekey: stock.one_time.pop(),
                kem_prekey_is_last_resort: kem.is_none(),
                kem_prekey: kem.or_else(|| stock.last_resort.clone()),
            });
        }
        Ok(response::Kind::Bundles(Bundles {
            account_key: info.account_key,
            device_list: info.device_list,
            bundles,
        }))
    }

    fn append(
        &mut self,
        me: DeviceAddress,
        send: tern_protocol::wire::Send,
    ) -> Result<response::Kind, NetError> {
        let chat_id = id16(&send.chat_id)?;
        let Some(chat) = self.chats.get(&chat_id) else {
            return Err(relay_error(ErrorCode::NotFound));
        };
        if let Some(fault) = self.send_faults.pop_front() {
            return Err(fault);
        }
        let ack = |seq, duplicate| {
            Ok(response::Kind::SendAck(SendAck {
                seq,
                server_time_ms: 0,
                duplicate,
            }))
        };
        let earlier = chat.log.iter().find(|e| {
            e.delivery.client_message_id == send.client_message_id
                && e.delivery.sender_user_id.as_ref() == me.user
        });
        if let Some(earlier) = earlier {
            return ack(earlier.delivery.seq, true);
        }
        if !send.device_ciphertexts.is_empty() {
            let expected = self.recipients(chat, me);
            let addressed: Vec<DeviceAddress> = send
                .device_ciphertexts
                .iter()
                .map(|c| DeviceAddress {
                    user: c.user_id.as_ref().try_into().unwrap(),
                    device: c.device_id,
                })
                .collect();
            let missing: Vec<WireDevice> = expected
                .iter()
                .filter(|d| !addressed.contains(d))
                .map(wire_device)
                .collect();
            let extra: Vec<WireDevice> = addressed
                .iter()
                .filter(|d| !expected.contains(d))
                .map(wire_device)
                .collect();
            if !missing.is_empty() || !extra.is_empty() {
                return Err(NetError::Relay {
                    code: ErrorCode::MismatchedDevices,
                    message: "fake relay".into(),
                    retry_after: None,
                    mismatched_devices: Some(MismatchedDevices { missing, extra }),
                });
            }
        }
        let chat = self.chats.get_mut(&chat_id).unwrap();
        let seq = chat.log.len() as u64 + 1;
        chat.log.push(Entry {
            delivery: Delivery {
                chat_id: send.chat_id,
                seq,
                kind: EntryKind::Message as i32,
                sender_user_id: Bytes::copy_from_slice(&me.user),
                sender_device_id: me.device,
                client_message_id: send.client_message_id,
                common_ciphertext: send.common_ciphertext,
                ..Delivery::default()
            },
            per_device: send.device_ciphertexts,
        });
        ack(seq, false)
    }
}
