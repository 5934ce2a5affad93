//! The send and receive paths without a relay: real stores (SQLCipher in a
//! temporary directory), real identities, sessions and sender keys, and an
//! in-memory relay ([`FakeRelay`]) that answers what the paths ask
//! (`LookupUser`, `FetchBundles`, `GetChat`, `CreateChat`, `Send`,
//! `AckDelivered`) and keeps chat logs the tests hand to receivers in any
//! order. Time is a [`ManualClock`].

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod fake_relay;
mod receive;
mod send;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tern_protocol::wire::{Delivery, SignedDeviceList, UserInfo, request};
use tern_transport::{CertFingerprint, TrustPolicy};
use tokio::sync::broadcast;

use super::account::{LocalAccount, generate_prekeys, sign_device_list};
use super::content::Payload;
use super::outbox::OutboxItem;
use super::receive::receive_batch;
use super::send::{pump, queue_payload};
use super::{Clock, Core};
use crate::model::{AccountInfo, ChatId, ClientEvent, MessageId, UserId};
use crate::net::RelayAddress;
use crate::random::random_bytes;
use crate::store::{self, Chat, ChatKind, KeySource, NewMessage, Store, StoreError};
use fake_relay::{FakeLink, FakeRelay};
use tern_crypto::identity::{AccountIdentity, DeviceIdentity};
use tern_crypto::session::DeviceAddress;

/// Where test time starts: 2001-09-09, far from the system clock.
const T0: i64 = 1_000_000_000_000;

/// A clock that moves only when told to.
struct ManualClock(AtomicI64);

impl ManualClock {
    fn new() -> Arc<Self> {
        Arc::new(Self(AtomicI64::new(T0)))
    }

    fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_millis()).unwrap();
        self.0.fetch_add(by, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One device: its engine state over its own store, its view of the relay
/// and the events it emitted.
struct TestDevice {
    core: Core,
    link: FakeLink,
    events: broadcast::Receiver<ClientEvent>,
    account: AccountIdentity,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

impl TestDevice {
    /// A new account `name` with its first device, registered with `relay`.
    fn register(relay: &Arc<FakeRelay>, name: &str, clock: &Arc<ManualClock>) -> Self {
        let account = LocalAccount::generate(name.into());
        let list = account.initial_device_list();
        Self::start(relay, account, list, clock)
    }

    /// A new device of this device's account with id `device_id`; the relay
    /// publishes the account's list with it (version `version`).
    fn link_device(&self, relay: &Arc<FakeRelay>, device_id: u32, version: u64) -> Self {
        let info = AccountInfo {
            device_id,
            ..self.core.account.clone()
        };
        let device = DeviceIdentity::generate(&mut crate::random::rng());
        let mut devices = relay.devices(&info.user_id);
        devices.push((device_id, device.public_key().to_bytes()));
        let list = sign_device_list(&self.account, &info.user_id, version, &devices);
        let account = LocalAccount {
            info,
            account: self.account.clone(),
            device,
            registered: true,
        };
        Self::start(relay, account, list, &self.clock)
    }

    /// Publishes this account's list without device `device_id` (version
    /// `version`), as removing a device does.
    fn drop_device(&self, relay: &Arc<FakeRelay>, device_id: u32, version: u64) {
        let user = self.core.account.user_id;
        let mut devices = relay.devices(&user);
        devices.retain(|(id, _)| *id != device_id);
        let list = sign_device_list(&self.account, &user, version, &devices);
        relay.publish_list(&user, list);
    }

    fn start(
        relay: &Arc<FakeRelay>,
        account: LocalAccount,
        list: SignedDeviceList,
        clock: &Arc<ManualClock>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store.db"), KeySource::raw([5; 32])).unwrap();
        let upload = store
            .transaction(|tx| {
                account.save(tx)?;
                generate_prekeys(tx, &account.device, Some(clock.now_secs()))
            })
            .unwrap();
        let info = UserInfo {
            user_id: Bytes::copy_from_slice(&account.info.user_id),
            user_name: account.info.user_name.clone(),
            account_key: Bytes::copy_from_slice(&account.account.public_key().to_bytes()),
            device_list: Some(list),
        };
        let identity = account.device.public_key().to_bytes();
        relay.register(info, account.info.device_id, identity, upload);
        let address = DeviceAddress {
            user: account.info.user_id,
            device: account.info.device_id,
        };
        let unused_relay = RelayAddress::new(
            "127.0.0.1:9".parse().unwrap(),
            "tern-relay",
            TrustPolicy::Pinned(CertFingerprint([0; 32])),
        );
        let core = Core::new(
            Arc::new(store),
            &account,
            unused_relay,
            None,
            None,
            clock.clone(),
        );
        Self {
            events: core.events.subscribe(),
            core,
            link: FakeLink::new(relay, address),
            account: account.account,
            clock: clock.clone(),
            _dir: dir,
        }
    }

    fn address(&self) -> DeviceAddress {
        self.core.own_address()
    }

    fn user(&self) -> UserId {
        self.core.account.user_id
    }

    /// Stores a chat locally (as `Client::direct_chat` or `create_group`
    /// would; the relay is told separately).
    fn add_chat(&self, chat_id: ChatId, kind: ChatKind, members: &[UserId]) {
        self.core
            .store
            .transaction(|tx| {
                tx.upsert_chat(&Chat {
                    chat_id,
                    kind,
                    title: String::new(),
                    created_at_ms: T0,
                })?;
                tx.set_chat_members(&chat_id, members)
            })
            .unwrap();
    }

    /// Queues a text message as `Client::send_text` does.
    fn send_text(&self, chat_id: ChatId, text: &str) -> MessageId {
        let now = self.clock.now_ms();
        let client_message_id = random_bytes();
        self.core
            .store
            .transaction(|tx| {
                let message = NewMessage {
                    chat_id,
                    relay_seq: None,
                    client_message_id,
                    sender: store::DeviceAddress {
                        user_id: self.user(),
                        device_id: self.address().device,
                    },
                    sent_at_ms: now,
                    received_at_ms: now,
                    body: text.into(),
                };
                let id = tx.insert_message(&message)?.id();
                let payload = Payload::Text(text.into());
                queue_payload(tx, &chat_id, &client_message_id, &payload, Some(id), now)?;
                Ok::<_, StoreError>(id)
            })
            .unwrap()
    }

    /// Sends what is due.
    async fn pump(&self) {
        pump(&self.core, &self.link).await.unwrap();
    }

    /// Processes `entries` as one batch.
    async fn receive(&self, entries: &[Delivery]) {
        receive_batch(&self.core, &self.link, entries)
            .await
            .unwrap();
    }

    /// The entries of `chat` after this device's cursor, as the relay
    /// delivers them to it.
    fn inbox(&self, chat_id: ChatId) -> Vec<Delivery> {
        let after = self.delivered(chat_id).unwrap_or(0);
        self.link
            .relay()
            .deliveries(chat_id, self.address())
            .into_iter()
            .filter(|d| d.seq > after)
            .collect()
    }

    /// The events emitted since the last call.
    fn take_events(&mut self) -> Vec<ClientEvent> {
        std::iter::from_fn(|| self.events.try_recv().ok()).collect()
    }

    /// The stored messages of a chat: (relay seq, sender device, text).
    fn messages(&self, chat_id: ChatId) -> Vec<(Option<u64>, u32, String)> {
        self.core
            .store
            .transaction(|tx| tx.chat_messages(&chat_id, None, 100))
            .unwrap()
            .into_iter()
            .map(|m| {
                (
                    m.message.relay_seq,
                    m.message.sender.device_id,
                    m.message.body,
                )
            })
            .collect()
    }

    /// Every outbox entry (due or not): its chat and payload.
    fn outbox(&self) -> Vec<(ChatId, Payload)> {
        self.core
            .store
            .transaction(|tx| tx.queued_outbox(1000))
            .unwrap()
            .iter()
            .map(|entry| {
                let item = OutboxItem::decode_stored(&entry.payload).unwrap();
                (entry.chat_id, Payload::decode(&item.content).unwrap().0)
            })
            .collect()
    }

    /// The stored session records (active first) with `peer`.
    fn sessions_with(&self, peer: DeviceAddress) -> Vec<Vec<u8>> {
        let address = store::DeviceAddress {
            user_id: peer.user,
            device_id: peer.device,
        };
        self.core
            .store
            .transaction(|tx| tx.sessions(&address))
            .unwrap()
            .into_iter()
            .map(|s| s.state.to_vec())
            .collect()
    }

    /// The delivered cursor of a chat.
    fn delivered(&self, chat_id: ChatId) -> Option<u64> {
        self.core
            .store
            .transaction(|tx| tx.cursor(&chat_id))
            .unwrap()
            .map(|c| c.delivered_seq)
    }
}

/// Two registered users and their direct chat, known to both and the relay.
fn direct_pair(
    relay: &Arc<FakeRelay>,
    clock: &Arc<ManualClock>,
    a: &str,
    b: &str,
) -> (TestDevice, TestDevice, ChatId) {
    let first = TestDevice::register(relay, a, clock);
    let second = TestDevice::register(relay, b, clock);
    let chat = direct_chat(relay, &first, &second);
    (first, second, chat)
}

/// The direct chat of two devices' users, stored by both and the relay.
fn direct_chat(relay: &Arc<FakeRelay>, a: &TestDevice, b: &TestDevice) -> ChatId {
    let chat = tern_crypto::chat_id::direct_chat_id(&a.user(), &b.user());
    let members = [a.user(), b.user()];
    relay.create_chat(chat, ChatKind::Direct, &members);
    a.add_chat(chat, ChatKind::Direct, &members);
    b.add_chat(chat, ChatKind::Direct, &members);
    chat
}

/// `from` sends `text` in `chat` and `to` receives everything new there.
async fn exchange(from: &TestDevice, to: &TestDevice, chat: ChatId, text: &str) {
    from.send_text(chat, text);
    from.pump().await;
    to.receive(&to.inbox(chat)).await;
}

/// Every acknowledgement `device` sent: (chat, seq) per cursor, per request.
fn acks(device: &TestDevice) -> Vec<Vec<(ChatId, u64)>> {
    device
        .link
        .relay()
        .requests_of(device.address())
        .into_iter()
        .filter_map(|kind| match kind {
            request::Kind::AckDelivered(ack) => Some(
                ack.cursors
                    .iter()
                    .map(|c| (ChatId::try_from(c.chat_id.as_ref()).unwrap(), c.seq))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// How many times `device` looked `user` up.
fn lookups(device: &TestDevice, user: &UserId) -> usize {
    device
        .link
        .relay()
        .requests_of(device.address())
        .iter()
        .filter(|kind| matches!(kind, request::Kind::LookupUser(l) if l.user_id.as_ref() == user))
        .count()
}

/// The bundle fetches `device` made: (user, devices) per request.
fn fetches(device: &TestDevice) -> Vec<(UserId, Vec<u32>)> {
    device
        .link
        .relay()
        .requests_of(device.address())
        .into_iter()
        .filter_map(|kind| match kind {
            request::Kind::FetchBundles(f) => {
                Some((UserId::try_from(f.user_id.as_ref()).unwrap(), f.device_ids))
            }
            _ => None,
        })
        .collect()
}

/// The `Send` requests `device` made.
fn sends(device: &TestDevice) -> Vec<tern_protocol::wire::Send> {
    device
        .link
        .relay()
        .requests_of(device.address())
        .into_iter()
        .filter_map(|kind| match kind {
            request::Kind::Send(send) => Some(send),
            _ => None,
        })
        .collect()
}

/// The texts of the `MessageReceived` events among `events`.
fn received(events: &[ClientEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::MessageReceived(m) => Some(m.text.clone()),
            _ => None,
        })
        .collect()
}
