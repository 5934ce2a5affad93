//! Sending to a chat log, delivery cursors and sync.

use tern_protocol::limits::{MAX_FRAME_LEN, MAX_SYNC_ENTRIES};
use tern_protocol::wire::{AckDelivered, Empty, Send, SendAck, Sync, SyncBatch, response};
use tern_protocol::{ChatId, ClientMessageId};

use crate::error::RelayError;
use crate::service::Relay;
use crate::store::{Appended, DeviceAddr, LogAppend, MessageAppend};

/// Ciphertext bytes a sync page may carry; half a frame leaves room for
/// the last entry and the encoding overhead.
const SYNC_PAGE_BYTES: usize = MAX_FRAME_LEN / 2;

fn ack(a: Appended) -> response::Kind {
    response::Kind::SendAck(SendAck {
        seq: a.seq,
        server_time_ms: a.server_time_ms,
        duplicate: a.duplicate,
    })
}

impl Relay {
    /// Appends a message; answers once it is durable.
    pub(crate) async fn send(
        &self,
        device: DeviceAddr,
        r: Send,
    ) -> Result<response::Kind, RelayError> {
        let chat_id = ChatId::from_slice("Send.chat_id", &r.chat_id)?;
        let cmid = ClientMessageId::from_slice("Send.client_message_id", &r.client_message_id)?;
        let size = r.common_ciphertext.len()
            + r.device_ciphertexts
                .iter()
                .map(|dc| dc.ciphertext.len())
                .sum::<usize>();
        if size > self.config.limits.max_message_bytes {
            return Err(RelayError::TooLarge(
                "the message exceeds the relay's limits.max_message_bytes",
            ));
        }
        let append = LogAppend::Message(MessageAppend {
            chat_id,
            sender: device,
            client_message_id: cmid,
            device_ciphertexts: r.device_ciphertexts,
            common_ciphertext: r.common_ciphertext,
        });
        Ok(ack(self.log.append(append).await?))
    }

    /// Advances the device's cursors.
    pub(crate) async fn ack_delivered(
        &self,
        device: DeviceAddr,
        r: AckDelivered,
    ) -> Result<response::Kind, RelayError> {
        let cursors = cursors(&r.cursors)?;
        self.blocking(move |s| s.ack_cursors(device, &cursors))
            .await?;
        Ok(response::Kind::Ok(Empty {}))
    }

    /// Returns a page of log entries after the device's offsets.
    pub(crate) async fn sync(
        &self,
        device: DeviceAddr,
        r: Sync,
    ) -> Result<response::Kind, RelayError> {
        let after = cursors(&r.after)?;
        let limit = match r.limit as usize {
            0 => MAX_SYNC_ENTRIES,
            n => n.min(MAX_SYNC_ENTRIES),
        };
        let (entries, more) = self
            .blocking(move |s| s.read_log(device, &after, limit, SYNC_PAGE_BYTES))
            .await?;
        Ok(response::Kind::SyncBatch(SyncBatch { entries, more }))
    }
}

fn cursors(list: &[tern_protocol::wire::Cursor]) -> Result<Vec<(ChatId, u64)>, RelayError> {
    list.iter()
        .map(|c| Ok((ChatId::from_slice("Cursor.chat_id", &c.chat_id)?, c.seq)))
        .collect()
}
