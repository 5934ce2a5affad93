//! The message rows of one group commit, written with one multi-row insert
//! per table (`INSERT … SELECT FROM unnest(arrays)`), so a batch costs a
//! fixed number of round trips to PostgreSQL however many messages it
//! holds; and the other batch-wide statements: who sent what before, the
//! chats' new last seqs.

use std::collections::HashMap;

use deadpool_postgres::GenericClient;
use tern_protocol::wire::EntryKind;
use tern_protocol::{ChatId, ClientMessageId, UserId};

use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{big, exec, get, get_u64, user_id};
use crate::error::StoreError;
use crate::store::{Appended, LogAppend, MessageAppend, ciphertexts};

/// A sender's message: the idempotency key.
pub(super) type SentKey = (UserId, ClientMessageId);

/// Message rows waiting for their inserts.
#[derive(Default)]
pub(super) struct Pending<'a> {
    log: Vec<(&'a MessageAppend, u64, Option<Vec<u8>>)>,
}

impl<'a> Pending<'a> {
    /// Queues message `m` at `seq`.
    pub(super) fn push(&mut self, m: &'a MessageAppend, seq: u64) -> Result<(), StoreError> {
        let inline = ciphertexts::encode_message(m)?;
        self.log.push((m, seq, inline));
        Ok(())
    }

    /// Writes the queued rows; false when a client message id was taken by
    /// a transaction this one could not see (the batch must start over).
    pub(super) async fn flush(
        &mut self,
        tx: &impl GenericClient,
        now: u64,
    ) -> Result<bool, StoreError> {
        if self.log.is_empty() {
            return Ok(true);
        }
        let (mut chats, mut seqs, mut senders, mut devices, mut ids) =
            (vec![], vec![], vec![], vec![], vec![]);
        let (mut commons, mut inlines) = (vec![], vec![]);
        for (m, seq, inline) in &self.log {
            chats.push(&m.chat_id.0[..]);
            seqs.push(big(*seq));
            senders.push(&m.sender.user.0[..]);
            devices.push(i64::from(m.sender.device));
            ids.push(&m.client_message_id.0[..]);
            commons.push((!m.common_ciphertext.is_empty()).then_some(&m.common_ciphertext[..]));
            inlines.push(inline.as_deref());
        }
        let kinds = vec![EntryKind::Message as i16; chats.len()];
        let times = vec![big(now); chats.len()];
        let params: [&(dyn ToSql + Sync); 9] = [
            &chats, &seqs, &kinds, &senders, &devices, &ids, &times, &commons, &inlines,
        ];
        let log = exec(
            tx,
            "INSERT INTO log (chat_id, seq, kind, sender_user, sender_device, client_message_id,
                              server_time_ms, common_ciphertext, ciphertexts)
             SELECT * FROM unnest($1::bytea[], $2::int8[], $3::int2[], $4::bytea[], $5::int8[],
                                  $6::bytea[], $7::int8[], $8::bytea[], $9::bytea[])
             ON CONFLICT (client_message_id, sender_user) WHERE client_message_id IS NOT NULL
             DO NOTHING",
            &params,
        );
        // Both inserts in one round trip; should the first conflict, the
        // caller rolls the transaction back.
        let (inserted, ()) = tokio::try_join!(log, self.flush_spilled(tx))?;
        if inserted != chats.len() as u64 {
            return Ok(false);
        }
        self.log.clear();
        Ok(true)
    }

    /// The per-device rows of messages too large to inline.
    async fn flush_spilled(&self, tx: &impl GenericClient) -> Result<(), StoreError> {
        let (mut chats, mut seqs, mut users, mut devices, mut texts) =
            (vec![], vec![], vec![], vec![], vec![]);
        for (m, seq, _) in self.log.iter().filter(|(_, _, inline)| inline.is_none()) {
            for dc in &m.device_ciphertexts {
                chats.push(&m.chat_id.0[..]);
                seqs.push(big(*seq));
                users.push(&dc.user_id[..]);
                devices.push(i64::from(dc.device_id));
                texts.push(&dc.ciphertext[..]);
            }
        }
        if chats.is_empty() {
            return Ok(());
        }
        exec(
            tx,
            "INSERT INTO log_ciphertexts (chat_id, seq, user_id, device_id, ciphertext)
             SELECT * FROM unnest($1::bytea[], $2::int8[], $3::bytea[], $4::int8[], $5::bytea[])",
            &[&chats, &seqs, &users, &devices, &texts],
        )
        .await?;
        Ok(())
    }
}

/// The messages of a batch already stored (by any node, in any earlier
/// transaction): `$1` their client message ids, `$2` their senders
/// ([`sent_keys`]); read back with [`originals`].
pub(super) const SENT: &str = "SELECT l.sender_user, l.client_message_id, l.seq, l.server_time_ms
     FROM unnest($1::bytea[], $2::bytea[]) AS k(id, sender)
     JOIN log l ON l.client_message_id = k.id AND l.sender_user = k.sender";

/// The parameters of [`SENT`] for the messages of `items`.
pub(super) fn sent_keys<'a>(items: &[&'a LogAppend]) -> (Vec<&'a [u8]>, Vec<&'a [u8]>) {
    items
        .iter()
        .filter_map(|item| match *item {
            LogAppend::Message(m) => Some((&m.client_message_id.0[..], &m.sender.user.0[..])),
            LogAppend::Membership(_) => None,
        })
        .unzip()
}

/// The originals [`SENT`] found, by sender and client message id.
pub(super) fn originals(found: &[Row]) -> Result<HashMap<SentKey, Appended>, StoreError> {
    found
        .iter()
        .map(|r| {
            let id = ClientMessageId::from_slice("stored client message id", get(r, 1)?)
                .map_err(|_| StoreError::Corrupt("client message id"))?;
            let original = Appended {
                seq: get_u64(r, 2)?,
                server_time_ms: get_u64(r, 3)?,
                duplicate: true,
                members: Vec::new(),
                promoted: Vec::new(),
            };
            Ok(((user_id(get(r, 0)?)?, id), original))
        })
        .collect()
}

/// Writes the chats' new last seqs, in one statement.
pub(super) async fn store_last_seqs(
    tx: &impl GenericClient,
    last: &[(ChatId, u64)],
) -> Result<(), StoreError> {
    if last.is_empty() {
        return Ok(());
    }
    let ids: Vec<&[u8]> = last.iter().map(|(c, _)| &c.0[..]).collect();
    let seqs: Vec<i64> = last.iter().map(|(_, s)| big(*s)).collect();
    exec(
        tx,
        "UPDATE chats c SET last_seq = v.seq
         FROM unnest($1::bytea[], $2::int8[]) AS v(chat_id, seq) WHERE c.chat_id = v.chat_id",
        &[&ids, &seqs],
    )
    .await?;
    Ok(())
}
