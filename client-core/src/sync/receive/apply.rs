//! Applying an entry to the store: each function writes in the caller's
//! transaction (messages, receipts, outbox entries, cursors) and returns the
//! events to emit once it commits. No I/O, no crypto.

use super::super::content::{Payload, ReceiptKind};
use super::super::directory::DeviceSet;
use super::super::send::queue_payload;
use super::super::{Core, device_sync, group, verification};
use super::decrypt::Opened;
use super::retry;
use crate::model::{ChatId, ClientError, ClientEvent, ClientMessageId, Message, UserId};
use crate::random::random_bytes;
use crate::store::{
    self, ChatKind, Contact, DeliveryStatus, ID_LEN, NewAttachment, NewMessage, StoreError,
    TransferState, Tx, Verification,
};
use tern_crypto::session::DeviceAddress;
use tern_protocol::wire::Delivery;
use zeroize::Zeroizing;

/// An entry being applied on this device.
#[derive(Clone, Copy)]
pub(crate) struct Arrival<'a> {
    /// This device.
    pub own: DeviceAddress,
    /// When it is applied, ms since the Unix epoch.
    pub now_ms: i64,
    /// Its chat.
    pub chat_id: ChatId,
    /// Its sending device.
    pub sender: DeviceAddress,
    /// The entry.
    pub delivery: &'a Delivery,
}

impl Arrival<'_> {
    fn sent_by_another_user(&self) -> bool {
        self.sender.user != self.own.user
    }

    /// The host's report of content of this entry that could not be used.
    pub(crate) fn failed(&self, reason: String) -> ClientEvent {
        ClientEvent::DecryptionFailed {
            chat_id: self.chat_id,
            sender: self.sender.user,
            sender_device: self.sender.device,
            seq: self.delivery.seq,
            reason,
        }
    }
}

/// Applies what an entry carried: stores the sender's sender-key record,
/// applies every payload, queues a reset if a group message asked for one
/// and moves the cursor past the entry. The events start with the report
/// of refused content, if any.
pub(crate) fn apply_opened(
    tx: &Tx<'_>,
    arrival: &Arrival<'_>,
    opened: Opened,
) -> Result<Vec<ClientEvent>, ClientError> {
    let Opened {
        payloads,
        record,
        failure,
        ask_reset,
    } = opened;
    let mut events = Vec::new();
    if let Some(reason) = failure {
        tracing::warn!(%reason, seq = arrival.delivery.seq, "undecryptable content");
        events.push(arrival.failed(reason));
    }
    if let Some(record) = &record {
        group::save_record(tx, &arrival.chat_id, &arrival.sender, record)?;
    }
    for (payload, sent_at) in payloads {
        events.extend(apply_payload(tx, arrival, payload, sent_at)?);
    }
    if ask_reset {
        queue_reset(tx, arrival)?;
        events.extend(retry::mark_and_request(tx, arrival)?);
    }
    tx.advance_delivered(&arrival.chat_id, arrival.delivery.seq)?;
    Ok(events)
}

/// Writes what one payload means; returns the events to emit after commit.
/// Own-device payloads (sync, read state, verification) count only from the
/// own account, receipts only from others.
pub(crate) fn apply_payload(
    tx: &Tx<'_>,
    arrival: &Arrival<'_>,
    payload: Payload,
    sent_at: u64,
) -> Result<Vec<ClientEvent>, ClientError> {
    let from_other_user = arrival.sent_by_another_user();
    let chat_id = &arrival.chat_id;
    let sender = arrival.sender;
    match payload {
        Payload::Text(_) | Payload::Attachment(_) => {
            let Ok(id) = <[u8; ID_LEN]>::try_from(arrival.delivery.client_message_id.as_ref())
            else {
                return Ok(Vec::new());
            };
            store_message(tx, arrival, (id, arrival.delivery.seq), sent_at, payload)
        }
        Payload::Resent { original, payload } => {
            match retry::place_resent(tx, arrival, &original)? {
                Some(seq) => store_message(tx, arrival, (original, seq), sent_at, *payload),
                None => Ok(Vec::new()),
            }
        }
        Payload::RetryRequest {
            user,
            device,
            message_id,
        } => retry::answer_request(tx, arrival, user, device, message_id),
        Payload::Receipt(kind, ids) if from_other_user => {
            let status = match kind {
                ReceiptKind::Delivered => DeliveryStatus::Delivered,
                ReceiptKind::Read => DeliveryStatus::Read,
            };
            let mut events = Vec::new();
            for id in ids {
                if let Some(message) = tx.find_message(chat_id, &arrival.own.user, &id)? {
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
            let stored = device_sync::apply(tx, &sync, arrival.now_ms)?;
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
                by: sender.user,
            }])
        }
        Payload::SessionReset => {
            group::forget_device(tx, chat_id, &arrival.own, &sender)?;
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

/// Stores a shown message (a text, or an attachment announced under its
/// file name) under its client message id at relay seq `place` unless it is
/// already stored, queues the delivered receipt for another user's message
/// and returns the event. Other payloads store nothing.
fn store_message(
    tx: &Tx<'_>,
    arrival: &Arrival<'_>,
    (client_message_id, seq): (ClientMessageId, u64),
    sent_at: u64,
    payload: Payload,
) -> Result<Vec<ClientEvent>, ClientError> {
    let (body, attachment) = match payload {
        Payload::Text(body) => (body, None),
        Payload::Attachment(attachment) => (attachment.file_name.clone(), Some(attachment)),
        _ => return Ok(Vec::new()),
    };
    let message = NewMessage {
        chat_id: arrival.chat_id,
        relay_seq: Some(seq),
        client_message_id,
        sender: store::DeviceAddress {
            user_id: arrival.sender.user,
            device_id: arrival.sender.device,
        },
        sent_at_ms: i64::try_from(sent_at).unwrap_or(i64::MAX),
        received_at_ms: arrival.now_ms,
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
    if arrival.sent_by_another_user() {
        let receipt = Payload::Receipt(ReceiptKind::Delivered, vec![client_message_id]);
        queue_payload(
            tx,
            &arrival.chat_id,
            &random_bytes(),
            &receipt,
            None,
            arrival.now_ms,
        )?;
    }
    let stored = store::StoredMessage { id, message };
    Ok(vec![ClientEvent::MessageReceived(Message::from_stored(
        stored,
        &arrival.own.user,
    ))])
}

/// Queues a session reset to the arrival's chat in the same transaction.
pub(crate) fn queue_reset(tx: &Tx<'_>, arrival: &Arrival<'_>) -> Result<(), StoreError> {
    queue_payload(
        tx,
        &arrival.chat_id,
        &random_bytes(),
        &Payload::SessionReset,
        None,
        arrival.now_ms,
    )
}

/// An entry that cannot be processed for a reason retrying cannot fix (its
/// sender's device list does not verify, the sender is unknown): moves the
/// cursor past it and returns the report for the host.
pub(crate) fn skip_entry(
    tx: &Tx<'_>,
    arrival: &Arrival<'_>,
    reason: String,
) -> Result<ClientEvent, ClientError> {
    tracing::warn!(%reason, seq = arrival.delivery.seq, "skipping an entry");
    tx.advance_delivered(&arrival.chat_id, arrival.delivery.seq)?;
    Ok(arrival.failed(reason))
}

/// Updates the local member list; when members left, replaces the own
/// sender key of the chat so that they cannot read what follows.
pub(crate) fn apply_membership(
    core: &Core,
    chat_id: &ChatId,
    change: &MembershipChange,
) -> Result<(), ClientError> {
    let own = core.own_address();
    let batch = core.crypto.begin();
    batch.commit(|tx| {
        if !change.removed.is_empty() {
            group::rotate(tx, chat_id, &own)?;
        }
        let mut members = tx.chat_members(chat_id)?;
        members.retain(|m| !change.removed.contains(m));
        for user in &change.added {
            if !members.contains(user) {
                members.push(*user);
            }
        }
        tx.set_chat_members(chat_id, &members)?;
        tx.promote_chat_members(chat_id, &change.promoted)
    })?;
    Ok(())
}

/// One membership entry: who joined, who left, who became admin.
#[derive(Debug, Default)]
pub(crate) struct MembershipChange {
    /// Accounts added.
    pub added: Vec<UserId>,
    /// Accounts removed.
    pub removed: Vec<UserId>,
    /// Accounts made admins.
    pub promoted: Vec<UserId>,
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
