//! Sending: queue a payload in the outbox, then encrypt it for every device of
//! every chat member (other own devices included) and push it to the relay
//! until it is acknowledged. The decisions are in [`plan`] and
//! [`classify`]; this is the async driver that does the I/O.

mod plan;

use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use rand_core::Rng;
use tern_protocol::wire::{
    ChatKind as WireChatKind, CreateChat, DeviceCiphertext, FetchBundles, Send, request, response,
};
use zeroize::Zeroizing;

use super::content::{Payload, SecretBytes};
use super::directory::DeviceSet;
use super::group::SenderState;
use super::outbox::{OutboxItem, SendOutcome, classify};
use super::{Core, Relay};
use crate::model::{ChatId, ClientError, ClientEvent, MessageId, UserId};
use crate::random::rng;
use crate::store::{
    self, ChatKind, ClientMessageId, DeliveryStatus, OutboxEntry, StoreError, Tx, Verification,
};
use plan::{
    PrepareFailure, after_prepare_error, devices_needing_bundles, fits_the_relay,
    needs_distribution, next_attempt_at, targets, wanted_bundles,
};
use tern_crypto::session::DeviceAddress;

/// Outbox entries handled per pass.
const PASS_LIMIT: u32 = 64;
/// Re-encryptions after MISMATCHED_DEVICES before waiting for a retry.
const MAX_MISMATCH_ROUNDS: usize = 3;

/// Queues `payload` for `chat` inside an open transaction (the caller's, so a
/// message and its outbox entry are written together). `now_ms` stamps the
/// content and makes the entry due at once.
pub(crate) fn queue_payload(
    tx: &Tx<'_>,
    chat: &ChatId,
    client_message_id: &ClientMessageId,
    payload: &Payload,
    message_id: Option<MessageId>,
    now_ms: i64,
) -> Result<(), StoreError> {
    let item = OutboxItem {
        content: payload.encode(u64::try_from(now_ms).unwrap_or(0)),
        message_id: message_id.map_or(0, |id| id.0),
        send: None,
    };
    tx.enqueue_outbox(chat, client_message_id, &item.encode_to_vec(), now_ms)?;
    Ok(())
}

/// Sends every due outbox entry; returns when the outbox has nothing due or
/// the connection failed (`Err`).
pub(crate) async fn pump<R: Relay + ?Sized>(core: &Core, conn: &R) -> Result<(), ClientError> {
    loop {
        let now = core.clock.now_ms();
        let due = core
            .store
            .transaction(|tx| tx.due_outbox(now, PASS_LIMIT))?;
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
async fn send_entry<R: Relay + ?Sized>(
    core: &Core,
    conn: &R,
    mut entry: OutboxEntry,
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
            None => match prepare(core, conn, &mut entry, &mut item).await {
                Ok(send) => send,
                Err(e) => {
                    return match after_prepare_error(&e, entry.attempts) {
                        PrepareFailure::Offline => Err(e),
                        PrepareFailure::Drop => failed(core, &entry, &item, e.to_string()),
                        PrepareFailure::Later => {
                            tracing::warn!(error = %e, "cannot encrypt an outbox entry yet");
                            reschedule(core, &entry, None)
                        }
                    };
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

/// The relay stored the entry at `seq`: it leaves the outbox, its message
/// is marked sent (✓).
fn acked(core: &Core, entry: &OutboxEntry, item: &OutboxItem, seq: u64) -> Result<(), ClientError> {
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

/// Keeps the entry for a later attempt (see [`next_attempt_at`]).
fn reschedule(
    core: &Core,
    entry: &OutboxEntry,
    after: Option<Duration>,
) -> Result<(), ClientError> {
    let due = next_attempt_at(core.clock.now_ms(), entry.attempts, after, rng().next_u64());
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
async fn create_on_relay<R: Relay + ?Sized>(
    core: &Core,
    conn: &R,
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
/// request in the outbox together with the crypto state it consumed (the
/// entry is stored again, under a new outbox id that `entry` takes).
async fn prepare<R: Relay + ?Sized>(
    core: &Core,
    conn: &R,
    entry: &mut OutboxEntry,
    item: &mut OutboxItem,
) -> Result<Send, ClientError> {
    let (chat, members) = core.store.transaction(|tx| {
        let chat = tx.chat(&entry.chat_id)?;
        Ok::<_, StoreError>((chat, tx.chat_members(&entry.chat_id)?))
    })?;
    let chat = chat.ok_or(ClientError::UnknownChat)?;
    let own = core.own_address();
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
            let distributions = if needs_distribution(&targets, &state.distributed) {
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
    fits_the_relay(&send)?;
    item.send = Some(send.clone());
    let payload = item.encode_to_vec();
    batch.commit(|tx| {
        if let Some(state) = &group_state {
            state.save(tx, &entry.chat_id, &own)?;
        }
        tx.replace_outbox_payload(entry.id, &payload)
    })?;
    Ok(send)
}

/// The send time stamped into the item's content (for derived payloads).
fn item_time(item: &OutboxItem) -> u64 {
    Payload::decode(&item.content).map_or(0, |(_, sent_at)| sent_at)
}

type Bundle = (DeviceAddress, tern_crypto::prekeys::VerifiedPreKeyBundle);

/// Every member device except this one, and bundles for those without a
/// session.
async fn collect_targets<R: Relay + ?Sized>(
    core: &Core,
    conn: &R,
    members: &[UserId],
    own: DeviceAddress,
) -> Result<(Vec<DeviceAddress>, Vec<Bundle>), ClientError> {
    let mut all = Vec::new();
    let mut bundles = Vec::new();
    for member in members {
        let set = core.device_set(conn, member).await?;
        let contact = core.store.transaction(|tx| tx.contact(member))?;
        if contact.is_some_and(|c| c.verification == Verification::Unverified) {
            return Err(ClientError::UntrustedIdentity);
        }
        let missing = devices_needing_bundles(&set, own, &devices_with_session(core, &set)?);
        if !missing.is_empty() {
            bundles.extend(fetch_bundles(conn, &set, &missing).await?);
        }
        all.extend(targets(&set, own));
    }
    Ok((all, bundles))
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

/// The devices of `set` this device has an active session with.
fn devices_with_session(core: &Core, set: &DeviceSet) -> Result<Vec<u32>, ClientError> {
    let with_session = core.store.transaction(|tx| {
        let mut with_session = Vec::new();
        for (device, _) in &set.devices {
            let address = store::DeviceAddress {
                user_id: set.user_id,
                device_id: *device,
            };
            if tx.active_session(&address)?.is_some() {
                with_session.push(*device);
            }
        }
        Ok::<_, StoreError>(with_session)
    })?;
    Ok(with_session)
}

/// Fetches the bundles of `devices` of `set`'s user, each checked against
/// the signed list.
async fn fetch_bundles<R: Relay + ?Sized>(
    conn: &R,
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
    wanted_bundles(&bundles.bundles, devices)
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
