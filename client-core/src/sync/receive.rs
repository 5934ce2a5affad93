//! Receiving: decrypt a chat log entry, store it together with the ratchet
//! state it advanced and the new cursor (one transaction), then emit events.
//! The caller acknowledges the cursor to the relay afterwards.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use tern_protocol::wire::{Delivery, EntryKind, GetChat, request, response};

use super::content::{Attachment, Payload, ReceiptKind};
use super::send::queue_payload;
use super::{Core, hex, now_ms};
use super::{device_sync, group, verification};
use crate::client::{ChatId, ClientError, ClientEvent, DeviceSet, Message, UserId, random_bytes};
use crate::crypto::CryptoError;
use crate::crypto::session::DeviceAddress;
use crate::net::RelayConnection;
use crate::store::{
    self, Chat, ChatKind, Contact, DeliveryStatus, ID_LEN, NewAttachment, NewMessage, StoreError,
    TransferState, Tx, Verification,
};
use zeroize::Zeroizing;

fn own_address(core: &Core) -> DeviceAddress {
    DeviceAddress {
        user: core.account.user_id,
        device: core.account.device_id,
    }
}

/// Processes one entry; returns the chat and seq to acknowledge, or `None`
/// for a malformed entry (nothing to acknowledge).
pub(crate) async fn process(
    core: &Core,
    conn: &RelayConnection,
    delivery: &Delivery,
) -> Result<Option<(ChatId, u64)>, ClientError> {
    let (Ok(chat_id), Ok(sender)) = (
        ChatId::try_from(delivery.chat_id.as_ref()),
        UserId::try_from(delivery.sender_user_id.as_ref()),
    ) else {
        tracing::warn!("ignoring a delivery with malformed ids");
        return Ok(None);
    };
    let seq = delivery.seq;
    let done = core.store.transaction(|tx| {
        Ok::<_, StoreError>(tx.cursor(&chat_id)?.is_some_and(|c| c.delivered_seq >= seq))
    })?;
    if done {
        return Ok(Some((chat_id, seq)));
    }
    ensure_chat(core, conn, &chat_id, &sender).await?;
    if delivery.kind == EntryKind::Membership as i32 {
        membership(core, conn, &chat_id, delivery).await?;
        return Ok(Some((chat_id, seq)));
    }
    let own_device =
        sender == core.account.user_id && delivery.sender_device_id == core.account.device_id;
    let nothing_for_us = delivery.ciphertext.is_empty() && delivery.common_ciphertext.is_empty();
    if nothing_for_us || own_device {
        advance(core, &chat_id, seq)?;
        return Ok(Some((chat_id, seq)));
    }
    let set = sender_devices(core, conn, &sender, delivery.sender_device_id).await?;
    decrypt_and_store(core, &chat_id, &sender, &set, delivery)?;
    Ok(Some((chat_id, seq)))
}

fn advance(core: &Core, chat_id: &ChatId, seq: u64) -> Result<(), ClientError> {
    core.store
        .transaction(|tx| tx.advance_delivered(chat_id, seq))?;
    Ok(())
}

/// Makes sure the chat exists locally (a first message creates it).
async fn ensure_chat(
    core: &Core,
    conn: &RelayConnection,
    chat_id: &ChatId,
    sender: &UserId,
) -> Result<(), ClientError> {
    if core.store.transaction(|tx| tx.chat(chat_id))?.is_some() {
        return Ok(());
    }
    let answer = conn
        .request(request::Kind::GetChat(GetChat {
            chat_id: Bytes::copy_from_slice(chat_id),
        }))
        .await?;
    let response::Kind::ChatInfo(info) = answer else {
        return Err(ClientError::Refused("unexpected answer to GetChat".into()));
    };
    let members: Vec<UserId> = info
        .members
        .iter()
        .filter_map(|m| UserId::try_from(m.as_ref()).ok())
        .collect();
    let direct = info.kind == tern_protocol::wire::ChatKind::Direct as i32;
    let title = if direct && sender != &core.account.user_id {
        known_name(core, conn, sender).await?
    } else {
        String::new()
    };
    let chat = Chat {
        chat_id: *chat_id,
        kind: if direct {
            ChatKind::Direct
        } else {
            ChatKind::Group
        },
        title,
        created_at_ms: now_ms(),
    };
    // The chat may have been stored while GetChat was in flight (a group this
    // device just created): keep that record and its title, take the members.
    core.store.transaction(|tx| {
        if tx.chat(chat_id)?.is_none() {
            tx.upsert_chat(&chat)?;
        }
        tx.set_chat_members(chat_id, &members)
    })?;
    Ok(())
}

/// The user's name: from contacts, else from the directory (and the user
/// becomes a contact, pinned to its current account key).
async fn known_name(
    core: &Core,
    conn: &RelayConnection,
    user: &UserId,
) -> Result<String, ClientError> {
    if let Some(contact) = core.store.transaction(|tx| tx.contact(user))? {
        return Ok(contact.display_name);
    }
    let set = core.device_set(conn, user).await?;
    let contact = Contact {
        user_id: *user,
        display_name: set.user_name.clone(),
        identity_key: Some(set.account_key.to_vec()),
        verification: Verification::Default,
    };
    core.store.transaction(|tx| tx.upsert_contact(&contact))?;
    Ok(set.user_name)
}

async fn membership(
    core: &Core,
    conn: &RelayConnection,
    chat_id: &ChatId,
    delivery: &Delivery,
) -> Result<(), ClientError> {
    let ids = |list: &[Bytes]| -> Vec<UserId> {
        list.iter()
            .filter_map(|m| UserId::try_from(m.as_ref()).ok())
            .collect()
    };
    let (added, removed) = (ids(&delivery.added), ids(&delivery.removed));
    for user in &added {
        if user != &core.account.user_id {
            known_name(core, conn, user).await?;
        }
    }
    apply_membership(core, chat_id, &added, &removed)?;
    advance(core, chat_id, delivery.seq)?;
    core.emit(ClientEvent::MembersChanged {
        chat_id: *chat_id,
        added,
        removed,
    });
    Ok(())
}

/// Updates the local member list; when members left, replaces the own
/// sender key of the chat so that they cannot read what follows.
pub(crate) fn apply_membership(
    core: &Core,
    chat_id: &ChatId,
    added: &[UserId],
    removed: &[UserId],
) -> Result<(), ClientError> {
    let own = own_address(core);
    let batch = core.crypto.begin();
    batch.commit(|tx| {
        if !removed.is_empty() {
            group::rotate(tx, chat_id, &own)?;
        }
        let mut members = tx.chat_members(chat_id)?;
        members.retain(|m| !removed.contains(m));
        for user in added {
            if !members.contains(user) {
                members.push(*user);
            }
        }
        tx.set_chat_members(chat_id, &members)
    })?;
    Ok(())
}

/// The sender's verified device list, refreshed when it does not name the
/// sending device yet.
async fn sender_devices(
    core: &Core,
    conn: &RelayConnection,
    sender: &UserId,
    device: u32,
) -> Result<DeviceSet, ClientError> {
    let mut set = core.device_set(conn, sender).await?;
    if set.identity(device).is_none() {
        core.directory.invalidate(sender);
        set = core.device_set(conn, sender).await?;
    }
    Ok(set)
}

/// Compares the directory's account key with the contact's pinned key (an
/// unknown user becomes a contact). A change is recorded (verified contacts
/// become unverified) and announced.
pub(crate) fn check_account_key(core: &Core, set: &DeviceSet) -> Result<(), ClientError> {
    let changed = core.store.transaction(|tx| {
        let Some(mut contact) = tx.contact(&set.user_id)? else {
            tx.upsert_contact(&Contact {
                user_id: set.user_id,
                display_name: set.user_name.clone(),
                identity_key: Some(set.account_key.to_vec()),
                verification: Verification::Default,
            })?;
            return Ok::<_, StoreError>(None);
        };
        if contact.identity_key.as_deref() == Some(set.account_key.as_slice()) {
            return Ok(None);
        }
        let was_verified = contact.verification == Verification::Verified;
        contact.identity_key = Some(set.account_key.to_vec());
        if was_verified {
            contact.verification = Verification::Unverified;
        }
        tx.upsert_contact(&contact)?;
        Ok(Some(was_verified))
    })?;
    if let Some(was_verified) = changed {
        core.emit(ClientEvent::IdentityChanged {
            user_id: set.user_id,
            was_verified,
        });
    }
    Ok(())
}

fn decrypt_and_store(
    core: &Core,
    chat_id: &ChatId,
    sender: &UserId,
    set: &DeviceSet,
    delivery: &Delivery,
) -> Result<(), ClientError> {
    let address = DeviceAddress {
        user: *sender,
        device: delivery.sender_device_id,
    };
    let batch = core.crypto.begin();
    let mut payloads = Vec::new();
    let mut record = None;
    let mut failure = None;
    // A group message without a usable sender key: ask the sender (and the
    // group) for a reset, which makes them distribute their chains again.
    let mut ask_reset = false;
    if !delivery.ciphertext.is_empty() {
        let plaintext = match pairwise_decrypt(core, set, address, &delivery.ciphertext) {
            Ok(plaintext) => plaintext,
            Err(reason) => {
                drop(batch);
                return repair(core, chat_id, address, delivery.seq, reason);
            }
        };
        match Payload::decode(&plaintext) {
            Ok((Payload::SenderKeyDistribution(message), _)) => {
                let mut r = core
                    .store
                    .transaction(|tx| group::load_record(tx, chat_id, &address))?;
                match group::accept_distribution(&mut r, chat_id, &message.0) {
                    Ok(()) => record = Some(r),
                    Err(e) => failure = Some(e),
                }
            }
            Ok(payload) => payloads.push(payload),
            Err(e) => failure = Some(e.to_string()),
        }
    }
    if !delivery.common_ciphertext.is_empty() {
        let mut r = match record.take() {
            Some(r) => r,
            None => core
                .store
                .transaction(|tx| group::load_record(tx, chat_id, &address))?,
        };
        match group::decrypt(&mut r, chat_id, &delivery.common_ciphertext) {
            Ok(plaintext) => match Payload::decode(&plaintext) {
                Ok(payload) => payloads.push(payload),
                Err(e) => failure = Some(e.to_string()),
            },
            Err(e) => {
                failure = Some(format!("group message: {e}"));
                ask_reset = true;
            }
        }
        record = Some(r);
    }
    let events = batch.commit(|tx| {
        if let Some(r) = &record {
            group::save_record(tx, chat_id, &address, r)?;
        }
        let mut events = Vec::new();
        for (payload, sent_at) in payloads {
            events.extend(apply_payload(
                core, tx, chat_id, address, delivery, payload, sent_at,
            )?);
        }
        if ask_reset {
            queue_payload(tx, chat_id, &random_bytes(), &Payload::SessionReset, None)?;
        }
        tx.advance_delivered(chat_id, delivery.seq)?;
        Ok::<_, ClientError>(events)
    })?;
    if let Some(reason) = failure {
        tracing::warn!(%reason, seq = delivery.seq, "undecryptable content");
        core.emit(ClientEvent::DecryptionFailed {
            chat_id: *chat_id,
            sender: *sender,
            sender_device: address.device,
            seq: delivery.seq,
            reason,
        });
    }
    for event in events {
        core.emit(event);
    }
    core.outbox_wake.notify_one();
    Ok(())
}

/// Decrypts with the pairwise session and checks that the session's identity
/// is the one the sender's signed device list names.
fn pairwise_decrypt(
    core: &Core,
    set: &DeviceSet,
    address: DeviceAddress,
    ciphertext: &[u8],
) -> Result<Vec<u8>, String> {
    let decrypted = core.sessions.decrypt(address, ciphertext).map_err(|e| {
        if matches!(e, CryptoError::ReplayCacheFull { .. }) {
            // Rotate now: the relay hands out a fresh signed prekey to the next initiator.
            core.replay_cache_full.store(true, Ordering::Relaxed);
            core.maintenance.notify_one();
        }
        e.to_string()
    })?;
    match set.identity(address.device) {
        Some(key) if decrypted.sender_identity.to_bytes() == *key => Ok(decrypted.plaintext),
        _ => Err("sender identity is not in its signed device list".into()),
    }
}

/// Writes what the payload means; returns the events to emit after commit.
fn apply_payload(
    core: &Core,
    tx: &Tx<'_>,
    chat_id: &ChatId,
    sender: DeviceAddress,
    delivery: &Delivery,
    payload: Payload,
    sent_at: u64,
) -> Result<Vec<ClientEvent>, ClientError> {
    let from_other_user = sender.user != core.account.user_id;
    match payload {
        Payload::Text(body) => {
            store_message(core, tx, chat_id, sender, delivery, sent_at, body, None)
        }
        Payload::Attachment(attachment) => {
            let body = attachment.file_name.clone();
            store_message(
                core,
                tx,
                chat_id,
                sender,
                delivery,
                sent_at,
                body,
                Some(attachment),
            )
        }
        Payload::Receipt(kind, ids) if from_other_user => {
            let status = match kind {
                ReceiptKind::Delivered => DeliveryStatus::Delivered,
                ReceiptKind::Read => DeliveryStatus::Read,
            };
            let mut events = Vec::new();
            for id in ids {
                if let Some(message) = tx.find_message(chat_id, &core.account.user_id, &id)? {
                    tx.set_delivery_status(message.id, &sender.user, status)?;
                    events.push(ClientEvent::MessageStatus {
                        message_id: message.id,
                        chat_id: *chat_id,
                        recipient: Some(sender.user),
                        status,
                    });
                }
            }
            Ok(events)
        }
        Payload::DeviceSync(sync) if !from_other_user => {
            let stored = device_sync::apply(tx, &sync, now_ms())?;
            tracing::debug!(stored, "applied an own-device sync");
            Ok(Vec::new())
        }
        Payload::ReadState(read_chat, read_seq) if !from_other_user => {
            let read = tx.cursor(&read_chat)?.map_or(0, |c| c.read_seq);
            if read_seq <= read {
                return Ok(Vec::new());
            }
            tx.advance_read(&read_chat, read_seq)?;
            Ok(vec![ClientEvent::ChatRead {
                chat_id: read_chat,
                read_seq,
            }])
        }
        Payload::VerificationState {
            user_id,
            identity_key,
            verified,
        } if !from_other_user => verification::apply(tx, user_id, &identity_key, verified),
        Payload::GroupTitle(title) => {
            let Some(mut chat) = tx.chat(chat_id)? else {
                return Ok(Vec::new());
            };
            if chat.kind != ChatKind::Group || chat.title == title {
                return Ok(Vec::new());
            }
            chat.title.clone_from(&title);
            tx.upsert_chat(&chat)?;
            Ok(vec![ClientEvent::ChatTitleChanged {
                chat_id: *chat_id,
                title,
            }])
        }
        Payload::SessionReset => {
            group::forget_device(tx, chat_id, &own_address(core), &sender)?;
            Ok(vec![ClientEvent::SessionReset {
                chat_id: *chat_id,
                user_id: sender.user,
                device_id: sender.device,
            }])
        }
        Payload::Receipt(..)
        | Payload::SenderKeyDistribution(_)
        | Payload::DeviceSync(_)
        | Payload::ReadState(..)
        | Payload::VerificationState { .. } => Ok(Vec::new()),
    }
}

/// Stores a shown message (text, or an attachment announced under its file
/// name), queues the delivered receipt and returns the event.
#[allow(clippy::too_many_arguments)]
fn store_message(
    core: &Core,
    tx: &Tx<'_>,
    chat_id: &ChatId,
    sender: DeviceAddress,
    delivery: &Delivery,
    sent_at: u64,
    body: String,
    attachment: Option<Attachment>,
) -> Result<Vec<ClientEvent>, ClientError> {
    let Ok(client_message_id) = <[u8; ID_LEN]>::try_from(delivery.client_message_id.as_ref())
    else {
        return Ok(Vec::new());
    };
    let message = NewMessage {
        chat_id: *chat_id,
        relay_seq: Some(delivery.seq),
        client_message_id,
        sender: store::DeviceAddress {
            user_id: sender.user,
            device_id: sender.device,
        },
        sent_at_ms: i64::try_from(sent_at).unwrap_or(i64::MAX),
        received_at_ms: now_ms(),
        body,
    };
    let store::InsertOutcome::Inserted(id) = tx.insert_message(&message)? else {
        return Ok(Vec::new());
    };
    if let Some(a) = attachment {
        tx.insert_attachment(&NewAttachment {
            message_id: id,
            content_type: a.content_type.clone(),
            file_name: a.file_name.clone(),
            size: a.size,
            key: Zeroizing::new(a.key.0.clone()),
            digest: a.blob_id.to_vec(),
            blob_id: Some(a.blob_id),
            local_path: None,
            state: TransferState::Downloading,
        })?;
    }
    if sender.user != core.account.user_id {
        let receipt = Payload::Receipt(ReceiptKind::Delivered, vec![client_message_id]);
        queue_payload(tx, chat_id, &random_bytes(), &receipt, None)?;
    }
    let stored = store::StoredMessage { id, message };
    Ok(vec![ClientEvent::MessageReceived(Message::from_stored(
        stored,
        &core.account.user_id,
    ))])
}

/// An undecryptable message: drop the session with that device (the next
/// message to it starts a new one from a fresh bundle), queue a reset so the
/// peer gets that new session now, move the cursor on and tell the host.
fn repair(
    core: &Core,
    chat_id: &ChatId,
    address: DeviceAddress,
    seq: u64,
    reason: String,
) -> Result<(), ClientError> {
    tracing::warn!(sender = %hex(&address.user), device = address.device, %reason, "undecryptable message");
    core.store.transaction(|tx| {
        tx.delete_sessions(&store::DeviceAddress {
            user_id: address.user,
            device_id: address.device,
        })?;
        group::forget_device(tx, chat_id, &own_address(core), &address)?;
        queue_payload(tx, chat_id, &random_bytes(), &Payload::SessionReset, None)?;
        Ok::<_, ClientError>(tx.advance_delivered(chat_id, seq)?)
    })?;
    core.emit(ClientEvent::DecryptionFailed {
        chat_id: *chat_id,
        sender: address.user,
        sender_device: address.device,
        seq,
        reason,
    });
    core.outbox_wake.notify_one();
    Ok(())
}
