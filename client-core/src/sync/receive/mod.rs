//! Receiving: decrypt a chat log entry, store it together with the ratchet
//! state it advanced and the new cursor (one transaction), then emit events;
//! the batch's cursors are acknowledged to the relay afterwards.
//!
//! [`triage`] decides what an entry is and what a batch acknowledges,
//! [`decrypt`] opens ciphertexts and decides when a session needs repair,
//! [`apply`] writes the results in a store transaction and returns the
//! events; this module is the async driver that does the I/O.

mod apply;
mod cursors;
mod decrypt;
mod retry;
mod triage;

use std::sync::atomic::Ordering;

use tern_protocol::wire::{AckDelivered, Delivery, GetChat, Sync, request, response};

use super::directory::DeviceSet;
use super::{Core, Relay};
use crate::model::{ChatId, ClientError, ClientEvent, SyncSummary, UserId};
use crate::store::{Chat, ChatKind, Contact, StoreError, Verification};
use apply::{Arrival, apply_opened, skip_entry};
use decrypt::{Opening, open};
use tern_crypto::session::DeviceAddress;
use triage::{EntryIds, Triage, ack_cursors, ends_batch, triage};

pub use retry::UNDECRYPTABLE_TEXT;

pub(crate) use apply::{MembershipChange, apply_membership, check_account_key};

/// Entries asked for per sync page (the relay caps it at 500).
const SYNC_PAGE: u32 = 500;

/// Pulls and processes every entry after the stored cursors, page by page,
/// until the relay has nothing more; returns what it did.
pub(crate) async fn resync<R: Relay + ?Sized>(
    core: &Core,
    conn: &R,
) -> Result<SyncSummary, ClientError> {
    let mut summary = SyncSummary::default();
    loop {
        let stored: Vec<(ChatId, u64)> = core
            .store
            .transaction(|tx| tx.cursors())?
            .iter()
            .map(|c| (c.chat_id, c.delivered_seq))
            .collect();
        let answer = cursors::request(core, conn, &stored, |after| {
            request::Kind::Sync(Sync {
                after,
                limit: SYNC_PAGE,
            })
        })
        .await?;
        let response::Kind::SyncBatch(batch) = answer else {
            return Err(ClientError::Refused("unexpected answer to Sync".into()));
        };
        receive_batch(core, conn, &batch.entries).await?;
        summary.pages += 1;
        summary.entries += batch.entries.len() as u64;
        if !batch.more || batch.entries.is_empty() {
            return Ok(summary);
        }
    }
}

/// Processes entries in order, then acknowledges the highest seq per chat
/// (see [`ack_cursors`]). An entry that fails for a reason retrying cannot
/// fix is skipped (reported, and acknowledged); a connection or store
/// failure ends the batch unacknowledged. Batches never overlap (an entry
/// must not be decrypted twice): the engine's deliveries and [`resync`]
/// pages from [`crate::client::Client::sync_now`] take turns.
pub(crate) async fn receive_batch<R: Relay + ?Sized>(
    core: &Core,
    conn: &R,
    entries: &[Delivery],
) -> Result<(), ClientError> {
    let _turn = core.receiving.lock().await;
    let mut processed = Vec::new();
    for entry in entries {
        let done = match process(core, conn, entry).await {
            Ok(done) => done,
            Err(e) if ends_batch(&e) => return Err(e),
            Err(e) => skip(core, entry, e.to_string())?,
        };
        processed.extend(done);
    }
    let acked = ack_cursors(processed);
    if acked.is_empty() {
        return Ok(());
    }
    cursors::request(core, conn, &acked, |cursors| {
        request::Kind::AckDelivered(AckDelivered { cursors })
    })
    .await?;
    Ok(())
}

/// Processes one entry as [`triage`] decides; returns the chat and seq to
/// acknowledge, or `None` for a malformed entry (nothing to acknowledge).
async fn process<R: Relay + ?Sized>(
    core: &Core,
    conn: &R,
    delivery: &Delivery,
) -> Result<Option<(ChatId, u64)>, ClientError> {
    let Some(ids) = EntryIds::parse(delivery) else {
        tracing::warn!("ignoring a delivery with malformed ids");
        return Ok(None);
    };
    let delivered = core
        .store
        .transaction(|tx| Ok::<_, StoreError>(tx.cursor(&ids.chat_id)?.map(|c| c.delivered_seq)))?;
    let decision = triage(delivery, &ids, core.own_address(), delivered);
    if decision != Triage::AlreadyProcessed {
        ensure_chat(core, conn, &ids.chat_id, &ids.sender.user).await?;
    }
    match decision {
        Triage::AlreadyProcessed => {}
        Triage::Membership {
            added,
            removed,
            promoted,
        } => {
            let change = MembershipChange {
                added,
                removed,
                promoted,
            };
            membership(core, conn, &ids.chat_id, delivery.seq, change).await?;
        }
        Triage::OwnDevice | Triage::NothingForUs => {
            core.store
                .transaction(|tx| tx.advance_delivered(&ids.chat_id, delivery.seq))?;
        }
        Triage::Decrypt => {
            let set = sender_devices(core, conn, ids.sender).await?;
            decrypt_and_store(core, &ids, &set, delivery)?;
        }
    }
    Ok(Some((ids.chat_id, delivery.seq)))
}

/// The entry as the store functions of [`apply`] see it, received now.
fn arrival<'a>(core: &Core, ids: &EntryIds, delivery: &'a Delivery) -> Arrival<'a> {
    Arrival {
        own: core.own_address(),
        now_ms: core.clock.now_ms(),
        chat_id: ids.chat_id,
        sender: ids.sender,
        delivery,
    }
}

/// Reports an entry that cannot be processed and moves past it (see
/// [`skip_entry`]); `None` for malformed ids.
fn skip(
    core: &Core,
    entry: &Delivery,
    reason: String,
) -> Result<Option<(ChatId, u64)>, ClientError> {
    let Some(ids) = EntryIds::parse(entry) else {
        return Ok(None);
    };
    let arrival = arrival(core, &ids, entry);
    let event = core
        .store
        .transaction(|tx| skip_entry(tx, &arrival, reason))?;
    core.emit(event);
    Ok(Some((ids.chat_id, entry.seq)))
}

/// Decrypts the entry in a crypto batch and commits the ratchet changes with
/// what it carried ([`apply_opened`]), or handles the failure
/// ([`retry::undecryptable`], the ratchet changes dropped); then emits the
/// events.
fn decrypt_and_store(
    core: &Core,
    ids: &EntryIds,
    set: &DeviceSet,
    delivery: &Delivery,
) -> Result<(), ClientError> {
    let arrival = arrival(core, ids, delivery);
    let batch = core.crypto.begin();
    let events = match open(core, set, &ids.chat_id, ids.sender, delivery)? {
        Opening::Failed(failure) => {
            drop(batch);
            if failure.replay_cache_full {
                // Rotate now: the relay hands out a fresh signed prekey to the next initiator.
                core.replay_cache_full.store(true, Ordering::Relaxed);
                core.maintenance.notify_one();
            }
            core.store
                .transaction(|tx| retry::undecryptable(tx, &arrival, failure))?
        }
        Opening::Opened(opened) => batch.commit(|tx| apply_opened(tx, &arrival, opened))?,
    };
    for event in events {
        core.emit(event);
    }
    core.outbox_wake.notify_one();
    Ok(())
}

/// Makes sure the chat exists locally (a first message creates it).
async fn ensure_chat<R: Relay + ?Sized>(
    core: &Core,
    conn: &R,
    chat_id: &ChatId,
    sender: &UserId,
) -> Result<(), ClientError> {
    if core.store.transaction(|tx| tx.chat(chat_id))?.is_some() {
        return Ok(());
    }
    let answer = conn
        .request(request::Kind::GetChat(GetChat {
            chat_id: bytes::Bytes::copy_from_slice(chat_id),
        }))
        .await?;
    let response::Kind::ChatInfo(info) = answer else {
        return Err(ClientError::Refused("unexpected answer to GetChat".into()));
    };
    let ids = |list: &[bytes::Bytes]| -> Vec<UserId> {
        list.iter()
            .filter_map(|m| UserId::try_from(m.as_ref()).ok())
            .collect()
    };
    let (members, admins) = (ids(&info.members), ids(&info.admins));
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
        created_at_ms: core.clock.now_ms(),
    };
    // The chat may have been stored while GetChat was in flight (a group this
    // device just created): keep that record and its title, take the members.
    core.store.transaction(|tx| {
        if tx.chat(chat_id)?.is_none() {
            tx.upsert_chat(&chat)?;
        }
        tx.set_chat_members(chat_id, &members)?;
        tx.set_chat_admins(chat_id, &admins)
    })?;
    Ok(())
}

/// The user's name: from contacts, else from the directory (and the user
/// becomes a contact, pinned to its current account key).
async fn known_name<R: Relay + ?Sized>(
    core: &Core,
    conn: &R,
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

/// Applies a membership entry: new members become contacts, the member
/// list changes (see [`apply_membership`]), the cursor moves on.
async fn membership<R: Relay + ?Sized>(
    core: &Core,
    conn: &R,
    chat_id: &ChatId,
    seq: u64,
    change: MembershipChange,
) -> Result<(), ClientError> {
    for user in &change.added {
        if user != &core.account.user_id {
            known_name(core, conn, user).await?;
        }
    }
    apply_membership(core, chat_id, &change)?;
    core.store
        .transaction(|tx| tx.advance_delivered(chat_id, seq))?;
    core.emit(ClientEvent::MembersChanged {
        chat_id: *chat_id,
        added: change.added,
        removed: change.removed,
        promoted: change.promoted,
    });
    Ok(())
}

/// The sender's verified device list, refreshed when it does not name the
/// sending device yet.
async fn sender_devices<R: Relay + ?Sized>(
    core: &Core,
    conn: &R,
    sender: DeviceAddress,
) -> Result<DeviceSet, ClientError> {
    let mut set = core.device_set(conn, &sender.user).await?;
    if set.identity(sender.device).is_none() {
        core.directory.invalidate(&sender.user);
        set = core.device_set(conn, &sender.user).await?;
    }
    Ok(set)
}
