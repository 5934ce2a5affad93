//! Receiving: decrypt a chat log entry, store it together with the ratchet
//! state it advanced and the new cursor (one transaction), then emit events.
//! The caller acknowledges the cursor to the relay afterwards.

use bytes::Bytes;
use tern_protocol::wire::{Delivery, EntryKind, GetChat, LookupUser, request, response};

use super::content::{Payload, ReceiptKind};
use super::send::queue_payload;
use super::{Core, hex, now_ms};
use crate::client::{ChatId, ClientError, ClientEvent, DeviceSet, Message, UserId, random_bytes};
use crate::crypto::session::DeviceAddress;
use crate::net::RelayConnection;
use crate::store::{
    self, Chat, ChatKind, Contact, DeliveryStatus, ID_LEN, NewMessage, StoreError, Tx, Verification,
};

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
    if delivery.ciphertext.is_empty() || own_device {
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
    core.store.transaction(|tx| {
        tx.upsert_chat(&chat)?;
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
    let set = core
        .lookup(
            conn,
            LookupUser {
                user_name: String::new(),
                user_id: Bytes::copy_from_slice(user),
            },
        )
        .await?;
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
    core.store.transaction(|tx| {
        let mut members = tx.chat_members(chat_id)?;
        members.retain(|m| !removed.contains(m));
        for user in &added {
            if !members.contains(user) {
                members.push(*user);
            }
        }
        tx.set_chat_members(chat_id, &members)?;
        tx.advance_delivered(chat_id, delivery.seq)
    })?;
    core.emit(ClientEvent::MembersChanged {
        chat_id: *chat_id,
        added,
        removed,
    });
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
    let decrypted = core
        .sessions
        .decrypt(address, &delivery.ciphertext)
        .map_err(|e| e.to_string())
        .and_then(|d| match set.identity(address.device) {
            Some(key) if d.sender_identity.to_bytes() == *key => Ok(d),
            _ => Err("sender identity is not in its signed device list".into()),
        });
    let plaintext = match decrypted {
        Ok(d) => d.plaintext,
        Err(reason) => {
            drop(batch);
            return repair(core, chat_id, address, delivery.seq, reason);
        }
    };
    let payload = match Payload::decode(&plaintext) {
        Ok((payload, sent_at)) => Some((payload, sent_at)),
        Err(e) => {
            tracing::warn!(error = %e, "undecodable content");
            None
        }
    };
    let Some((payload, sent_at)) = payload else {
        batch.commit(|tx| tx.advance_delivered(chat_id, delivery.seq))?;
        core.emit(ClientEvent::DecryptionFailed {
            chat_id: *chat_id,
            sender: *sender,
            sender_device: address.device,
            seq: delivery.seq,
            reason: "unsupported content".into(),
        });
        return Ok(());
    };
    let events = batch.commit(|tx| {
        let events = apply_payload(core, tx, chat_id, address, delivery, payload, sent_at)?;
        tx.advance_delivered(chat_id, delivery.seq)?;
        Ok::<_, ClientError>(events)
    })?;
    for event in events {
        core.emit(event);
    }
    core.outbox_wake.notify_one();
    Ok(())
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
            let Ok(client_message_id) =
                <[u8; ID_LEN]>::try_from(delivery.client_message_id.as_ref())
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
            let outcome = tx.insert_message(&message)?;
            let store::InsertOutcome::Inserted(id) = outcome else {
                return Ok(Vec::new());
            };
            if from_other_user {
                let receipt = Payload::Receipt(ReceiptKind::Delivered, vec![client_message_id]);
                queue_payload(tx, chat_id, &random_bytes(), &receipt, None)?;
            }
            let stored = store::StoredMessage { id, message };
            Ok(vec![ClientEvent::MessageReceived(Message::from_stored(
                stored,
                &core.account.user_id,
            ))])
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
        Payload::Receipt(..) | Payload::SessionReset => Ok(Vec::new()),
    }
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
        queue_payload(tx, chat_id, &random_bytes(), &Payload::SessionReset, None)?;
        tx.advance_delivered(chat_id, seq)
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
