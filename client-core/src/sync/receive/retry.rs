//! Recovering a message that did not decrypt, after Signal's retry receipts.
//!
//! A failed pairwise decrypt changes no session state. A duplicate (its
//! message key already used) is dropped. Otherwise the receiver stores a
//! visible marker in the message's place and sends a [`Payload::RetryRequest`]
//! to the chat naming the sending device and the message; only a session
//! that is really gone is dropped first (with a reset), so the request itself
//! starts a new one. The sending device, if it sent that message within
//! [`RESEND_WINDOW_MS`], sends its content again as [`Payload::Resent`]
//! under a new transport id; receivers store it under the original id,
//! replacing the marker, and ignore it if they already have the message. If
//! the entry showed nothing (a receipt, a reset), the answer is a resent
//! [`Payload::SessionReset`], which only removes the marker; a message older
//! than the window gets no answer, and its marker stays.
//! A group message whose common ciphertext fails gets the same marker and
//! request, next to its reset (which makes the sender distribute its chain
//! again, so the resend opens).

use super::super::content::{Attachment, Payload, SecretBytes};
use super::super::group;
use super::super::send::queue_payload;
use super::apply::{Arrival, queue_reset};
use super::decrypt::{Failure, FailureKind};
use crate::model::{ClientError, ClientEvent, ClientMessageId, Message, UserId};
use crate::random::random_bytes;
use crate::store::{self, ID_LEN, NewMessage, Tx};

/// The text shown in place of a message that could not be decrypted, until
/// (unless) its sender sends it again.
pub const UNDECRYPTABLE_TEXT: &str =
    "⚠ This message could not be decrypted. The sender was asked to send it again.";
/// How long after sending a message its sender sends it again on request
/// (24 hours): the history keeps the content; older requests are ignored.
pub(crate) const RESEND_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;

/// Handles an entry whose pairwise ciphertext failed; returns the events.
pub(crate) fn undecryptable(
    tx: &Tx<'_>,
    arrival: &Arrival<'_>,
    failure: Failure,
) -> Result<Vec<ClientEvent>, ClientError> {
    let sender = arrival.sender;
    tx.advance_delivered(&arrival.chat_id, arrival.delivery.seq)?;
    if failure.kind == FailureKind::Duplicate {
        tracing::debug!(seq = arrival.delivery.seq, reason = %failure.reason, "dropping a duplicate");
        return Ok(Vec::new());
    }
    tracing::warn!(
        sender = %super::super::hex(&sender.user),
        device = sender.device,
        reason = %failure.reason,
        "undecryptable message"
    );
    if failure.kind == FailureKind::SessionLost {
        tx.delete_sessions(&store::DeviceAddress {
            user_id: sender.user,
            device_id: sender.device,
        })?;
        group::forget_device(tx, &arrival.chat_id, &arrival.own, &sender)?;
        queue_reset(tx, arrival)?;
    }
    let mut events = vec![arrival.failed(failure.reason)];
    events.extend(mark_and_request(tx, arrival)?);
    Ok(events)
}

/// Stores the marker in place of the arrival's message and queues the retry
/// request to its sending device; returns the marker's event.
pub(crate) fn mark_and_request(
    tx: &Tx<'_>,
    arrival: &Arrival<'_>,
) -> Result<Vec<ClientEvent>, ClientError> {
    let sender = arrival.sender;
    let Ok(message_id) = ClientMessageId::try_from(arrival.delivery.client_message_id.as_ref())
    else {
        return Ok(Vec::new());
    };
    let events = store_marker(tx, arrival, message_id)?;
    let request = Payload::RetryRequest {
        user: sender.user,
        device: sender.device,
        message_id,
    };
    queue_payload(
        tx,
        &arrival.chat_id,
        &random_bytes(),
        &request,
        None,
        arrival.now_ms,
    )?;
    Ok(events)
}

/// Stores the marker for a message that failed (once per message id).
fn store_marker(
    tx: &Tx<'_>,
    arrival: &Arrival<'_>,
    message_id: ClientMessageId,
) -> Result<Vec<ClientEvent>, ClientError> {
    let message = NewMessage {
        chat_id: arrival.chat_id,
        relay_seq: Some(arrival.delivery.seq),
        client_message_id: message_id,
        sender: store::DeviceAddress {
            user_id: arrival.sender.user,
            device_id: arrival.sender.device,
        },
        sent_at_ms: i64::try_from(arrival.delivery.server_time_ms).unwrap_or(i64::MAX),
        received_at_ms: arrival.now_ms,
        body: UNDECRYPTABLE_TEXT.to_owned(),
    };
    let store::InsertOutcome::Inserted(id) = tx.insert_message(&message)? else {
        return Ok(Vec::new());
    };
    let stored = store::StoredMessage { id, message };
    Ok(vec![ClientEvent::MessageReceived(Message::from_stored(
        stored,
        &arrival.own.user,
    ))])
}

/// Answers a retry request addressed to this device: queues the content of
/// the named message again if this device sent it within
/// [`RESEND_WINDOW_MS`], or an empty answer (a resent reset) if no message
/// of this device has that id. Requests for other devices are ignored.
pub(crate) fn answer_request(
    tx: &Tx<'_>,
    arrival: &Arrival<'_>,
    user: UserId,
    device: u32,
    message_id: ClientMessageId,
) -> Result<Vec<ClientEvent>, ClientError> {
    let own = arrival.own;
    if user != own.user || device != own.device {
        return Ok(Vec::new());
    }
    let content = match tx.find_message(&arrival.chat_id, &own.user, &message_id)? {
        None => Payload::SessionReset,
        Some(sent) => {
            let fresh = arrival.now_ms.saturating_sub(sent.message.sent_at_ms) <= RESEND_WINDOW_MS;
            if sent.message.sender.device_id != own.device || !fresh {
                return Ok(Vec::new());
            }
            shown_content(tx, sent)?
        }
    };
    tracing::info!(
        seq = arrival.delivery.seq,
        "sending a message again on request"
    );
    let resent = Payload::Resent {
        original: message_id,
        payload: Box::new(content),
    };
    queue_payload(
        tx,
        &arrival.chat_id,
        &random_bytes(),
        &resent,
        None,
        arrival.now_ms,
    )?;
    Ok(Vec::new())
}

/// The content of a message this device sent, as it was sent (an attachment
/// without a blob as its file name).
fn shown_content(tx: &Tx<'_>, sent: store::StoredMessage) -> Result<Payload, ClientError> {
    Ok(match tx.attachments(sent.id)?.into_iter().next() {
        Some(row) => match row.attachment.blob_id {
            Some(blob_id) => Payload::Attachment(Attachment {
                blob_id,
                key: SecretBytes(row.attachment.key.to_vec()),
                size: row.attachment.size,
                content_type: row.attachment.content_type,
                file_name: row.attachment.file_name,
            }),
            None => Payload::Text(sent.message.body),
        },
        None => Payload::Text(sent.message.body),
    })
}

/// Where a resent message goes: `Some(seq)` to store it at (the marker's
/// place, the marker removed, or the resend's own seq when there was no
/// marker), `None` when the message is already stored.
pub(crate) fn place_resent(
    tx: &Tx<'_>,
    arrival: &Arrival<'_>,
    original: &[u8; ID_LEN],
) -> Result<Option<u64>, ClientError> {
    match tx.find_message(&arrival.chat_id, &arrival.sender.user, original)? {
        None => Ok(Some(arrival.delivery.seq)),
        Some(stored) if stored.message.body == UNDECRYPTABLE_TEXT => {
            tx.delete_message(stored.id)?;
            Ok(Some(
                stored.message.relay_seq.unwrap_or(arrival.delivery.seq),
            ))
        }
        Some(_) => Ok(None),
    }
}
