//! Sending: queue a payload in the outbox, then encrypt it for every device of
//! every chat member (other own devices included) and push it to the relay
//! until it is acknowledged.

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use rand_core::Rng;
use tern_protocol::wire::{
    ChatKind as WireChatKind, CreateChat, DeviceCiphertext, FetchBundles, Send, request, response,
};
use zeroize::Zeroizing;

use super::content::{Payload, SecretBytes};
use super::group::SenderState;
use super::outbox::{OutboxItem, SendOutcome, classify, retry_delay};
use super::{Core, now_ms};
use crate::client::{ChatId, ClientError, ClientEvent, DeviceSet, MessageId, UserId, rng};
use crate::crypto::session::DeviceAddress;
use crate::net::RelayConnection;
use crate::store::{
    self, ChatKind, ClientMessageId, DeliveryStatus, OutboxEntry, StoreError, Tx, Verification,
};

/// Outbox entries handled per pass.
const PASS_LIMIT: u32 = 64;
/// Re-encryptions after MISMATCHED_DEVICES before waiting for a retry.
const MAX_MISMATCH_ROUNDS: usize = 3;
/// Attempts after which an entry that cannot be encrypted (no prekeys for a
/// recipient, a bad bundle) is dropped and reported.
const MAX_PREPARE_ATTEMPTS: u32 = 12;

/// Queues `payload` for `chat` inside an open transaction (the caller's, so a
/// message and its outbox entry are written together).
pub(crate) fn queue_payload(
    tx: &Tx<'_>,
    chat: &ChatId,
    client_message_id: &ClientMessageId,
    payload: &Payload,
    message_id: Option<MessageId>,
) -> Result<(), StoreError> {
    let item = OutboxItem {
        content: payload.encode(u64::try_from(now_ms()).unwrap_or(0)),
        message_id: message_id.map_or(0, |id| id.0),
        send: None,
    };
    tx.enqueue_outbox(chat, client_message_id, &item.encode_to_vec(), now_ms())?;
    Ok(())
}

/// Sends every due outbox entry; returns when the outbox has nothing due or
/// the connection failed (`Err`).
pub(crate) async fn pump(core: &Core, conn: &RelayConnection) -> Result<(), ClientError> {
    loop {
        let due = core
            .store
            .transaction(|tx| tx.due_outbox(now_ms(), PASS_LIMIT))?;
        if due.is_empty() {
            core.outbox_settled.notify_waiters();
            return Ok(());
        }
        for entry in due {
            send_entry(core, conn, entry).await?;
        }
    }
}

/// One entry: prepare if needed, send, act on the answer.
async fn send_entry(
    core: &Core,
    conn: &RelayConnection,
    entry: OutboxEntry,
) -> Result<(), ClientError> {
    let Some(mut item) = OutboxItem::decode_stored(&entry.payload) else {
        tracing::warn!("dropping an undecodable outbox entry");
        core.store
            .transaction(|tx| tx.remove_outbox(&entry.client_message_id))?;
        return Ok(());
    };
    for _ in 0..MAX_MISMATCH_ROUNDS {
        let send = match item.send.clone() {
            Some(send) => send,
            None => match prepare(core, conn, &entry, &mut item).await {
                Ok(send) => send,
                Err(ClientError::Offline(reason)) => return Err(ClientError::Offline(reason)),
                Err(e) if entry.attempts >= MAX_PREPARE_ATTEMPTS => {
                    return failed(core, &entry, &item, e.to_string());
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot encrypt an outbox entry yet");
                    return reschedule(core, &entry, None);
                }
            },
        };
        let outcome = classify(conn.request(request::Kind::Send(send)).await);
        match outcome {
            SendOutcome::Acked { seq } => return acked(core, &entry, &item, seq),
            SendOutcome::Mismatched { users } => {
                for user in &users {
                    core.directory.invalidate(user);
                }
                item.send = None;
            }
            SendOutcome::ChatMissing => create_on_relay(core, conn, &entry.chat_id).await?,
            SendOutcome::Retry { after } => return reschedule(core, &entry, after),
            SendOutcome::Reconnect => {
                reschedule(core, &entry, None)?;
                return Err(ClientError::Offline("send interrupted".into()));
            }
            SendOutcome::Fail(reason) => return failed(core, &entry, &item, reason),
        }
    }
    reschedule(core, &entry, None)
}

fn acked(core: &Core, entry: &OutboxEntry, item: &OutboxItem, seq: u64) -> Result<(), ClientError> {
    if core.drop_acks {
        tracing::debug!("test hook: ignoring the relay's ack");
        return reschedule(core, entry, Some(Duration::from_millis(200)));
    }
    core.store.transaction(|tx| {
        tx.remove_outbox(&entry.client_message_id)?;
        if item.message_id != 0 {
            tx.mark_sent(MessageId(item.message_id), seq)?;
        }
        Ok::<_, StoreError>(())
    })?;
    if item.message_id != 0 {
        core.emit(ClientEvent::MessageStatus {
            message_id: MessageId(item.message_id),
            chat_id: entry.chat_id,
            recipient: None,
            status: DeliveryStatus::Sent,
        });
    }
    Ok(())
}

fn reschedule(
    core: &Core,
    entry: &OutboxEntry,
    after: Option<Duration>,
) -> Result<(), ClientError> {
    let jitter = retry_delay(entry.attempts, rng().next_u64());
    let delay = after.map_or(jitter, |after| after.max(jitter));
    let due = now_ms().saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
    core.store
        .transaction(|tx| tx.reschedule_outbox(entry.id, due))?;
    Ok(())
}

fn failed(
    core: &Core,
    entry: &OutboxEntry,
    item: &OutboxItem,
    reason: String,
) -> Result<(), ClientError> {
    tracing::warn!(%reason, "the relay refused a message; dropping it");
    core.store
        .transaction(|tx| tx.remove_outbox(&entry.client_message_id))?;
    core.emit(ClientEvent::SendFailed {
        message_id: (item.message_id != 0).then_some(MessageId(item.message_id)),
        chat_id: entry.chat_id,
        reason,
    });
    Ok(())
}

/// Creates a chat the relay does not know yet (direct chats are created by
/// the first message); "already exists" means another member was faster.
async fn create_on_relay(
    core: &Core,
    conn: &RelayConnection,
    chat_id: &ChatId,
) -> Result<(), ClientError> {
    let (chat, members) = core.store.transaction(|tx| {
        let chat = tx.chat(chat_id)?;
        Ok::<_, StoreError>((chat, tx.chat_members(chat_id)?))
    })?;
    let chat = chat.ok_or(ClientError::UnknownChat)?;
    let kind = match chat.kind {
        ChatKind::Direct => WireChatKind::Direct,
        ChatKind::Group => WireChatKind::Group,
    };
    let request = CreateChat {
        chat_id: Bytes::copy_from_slice(chat_id),
        kind: kind as i32,
        members: members
            .iter()
            .filter(|m| **m != core.account.user_id)
            .map(|m| Bytes::copy_from_slice(m))
            .collect(),
    };
    match conn.request(request::Kind::CreateChat(request)).await {
        Ok(_) => Ok(()),
        Err(crate::net::NetError::Relay {
            code: tern_protocol::wire::ErrorCode::Conflict,
            ..
        }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Encrypts the entry's content for every member device except this one —
/// pairwise in direct chats, with the sender key (plus pairwise
/// distributions where needed, see [`super::group`]) in groups — starting
/// sessions from fetched bundles where needed, and stores the encrypted
/// request in the outbox together with the crypto state it consumed.
async fn prepare(
    core: &Core,
    conn: &RelayConnection,
    entry: &OutboxEntry,
    item: &mut OutboxItem,
) -> Result<Send, ClientError> {
    let (chat, members) = core.store.transaction(|tx| {
        let chat = tx.chat(&entry.chat_id)?;
        Ok::<_, StoreError>((chat, tx.chat_members(&entry.chat_id)?))
    })?;
    let chat = chat.ok_or(ClientError::UnknownChat)?;
    let own = DeviceAddress {
        user: core.account.user_id,
        device: core.account.device_id,
    };
    let (targets, bundles) = collect_targets(core, conn, &members, own).await?;
    let batch = core.crypto.begin();
    let mut rng = rng();
    for (address, bundle) in &bundles {
        core.sessions
            .start_verified_session(*address, bundle, &mut rng)?;
    }
    let (device_ciphertexts, common, group_state) = match chat.kind {
        ChatKind::Direct => (pairwise(core, &targets, &item.content)?, Vec::new(), None),
        ChatKind::Group => {
            let mut state = core
                .store
                .transaction(|tx| SenderState::load(tx, &entry.chat_id, &own))?;
            let missing = targets.iter().any(|t| !state.distributed.contains(t));
            let distributions = if missing {
                let message = state.sender.distribution_message().encode();
                let payload = Payload::SenderKeyDistribution(SecretBytes(message.to_vec()));
                let content = Zeroizing::new(payload.encode(item_time(item)));
                state.distributed.clone_from(&targets);
                pairwise(core, &targets, &content)?
            } else {
                Vec::new()
            };
            let common = state.sender.encrypt(&item.content)?;
            (distributions, common, Some(state))
        }
    };
    let send = Send {
        chat_id: Bytes::copy_from_slice(&entry.chat_id),
        client_message_id: Bytes::copy_from_slice(&entry.client_message_id),
        device_ciphertexts,
        common_ciphertext: common.into(),
    };
    item.send = Some(send.clone());
    let payload = item.encode_to_vec();
    batch.commit(|tx| {
        if let Some(state) = &group_state {
            state.save(tx, &entry.chat_id, &own)?;
        }
        tx.remove_outbox(&entry.client_message_id)?;
        tx.enqueue_outbox(&entry.chat_id, &entry.client_message_id, &payload, now_ms())?;
        Ok::<_, StoreError>(())
    })?;
    Ok(send)
}

/// The send time stamped into the item's content (for derived payloads).
fn item_time(item: &OutboxItem) -> u64 {
    Payload::decode(&item.content).map_or(0, |(_, sent_at)| sent_at)
}

type Bundle = (DeviceAddress, crate::crypto::prekeys::VerifiedPreKeyBundle);

/// Every member device except this one, and bundles for those without a
/// session.
async fn collect_targets(
    core: &Core,
    conn: &RelayConnection,
    members: &[UserId],
    own: DeviceAddress,
) -> Result<(Vec<DeviceAddress>, Vec<Bundle>), ClientError> {
    let mut targets = Vec::new();
    let mut bundles = Vec::new();
    for member in members {
        let set = core.device_set(conn, member).await?;
        let contact = core.store.transaction(|tx| tx.contact(member))?;
        if contact.is_some_and(|c| c.verification == Verification::Unverified) {
            return Err(ClientError::UntrustedIdentity);
        }
        let missing = devices_without_session(core, &set, own)?;
        if !missing.is_empty() {
            bundles.extend(fetch_bundles(conn, &set, &missing).await?);
        }
        targets.extend(
            set.devices
                .iter()
                .map(|(device, _)| DeviceAddress {
                    user: *member,
                    device: *device,
                })
                .filter(|address| *address != own),
        );
    }
    Ok((targets, bundles))
}

/// Encrypts `plaintext` for each target with its pairwise session.
fn pairwise(
    core: &Core,
    targets: &[DeviceAddress],
    plaintext: &[u8],
) -> Result<Vec<DeviceCiphertext>, ClientError> {
    let mut rng = rng();
    targets
        .iter()
        .map(|address| {
            let ciphertext = core.sessions.encrypt(*address, plaintext, &mut rng)?;
            Ok(DeviceCiphertext {
                user_id: Bytes::copy_from_slice(&address.user),
                device_id: address.device,
                ciphertext: ciphertext.into(),
            })
        })
        .collect()
}

fn devices_without_session(
    core: &Core,
    set: &DeviceSet,
    own: DeviceAddress,
) -> Result<Vec<u32>, ClientError> {
    let missing = core.store.transaction(|tx| {
        let mut missing = Vec::new();
        for (device, _) in &set.devices {
            let address = store::DeviceAddress {
                user_id: set.user_id,
                device_id: *device,
            };
            let is_own = set.user_id == own.user && *device == own.device;
            if !is_own && tx.active_session(&address)?.is_none() {
                missing.push(*device);
            }
        }
        Ok::<_, StoreError>(missing)
    })?;
    Ok(missing)
}

async fn fetch_bundles(
    conn: &RelayConnection,
    set: &DeviceSet,
    devices: &[u32],
) -> Result<Vec<Bundle>, ClientError> {
    let answer = conn
        .request(request::Kind::FetchBundles(FetchBundles {
            user_id: Bytes::copy_from_slice(&set.user_id),
            device_ids: devices.to_vec(),
        }))
        .await?;
    let response::Kind::Bundles(bundles) = answer else {
        return Err(ClientError::Refused(
            "unexpected answer to FetchBundles".into(),
        ));
    };
    let wanted: HashSet<u32> = devices.iter().copied().collect();
    bundles
        .bundles
        .iter()
        .filter(|b| wanted.contains(&b.device_id))
        .map(|b| {
            let bundle = set.bundle(b)?;
            let address = DeviceAddress {
                user: set.user_id,
                device: b.device_id,
            };
            Ok((address, bundle))
        })
        .collect()
}
