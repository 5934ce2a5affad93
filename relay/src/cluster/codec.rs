//! Committed entries to and from their bus form (`cluster.proto`). Bus
//! input is checked like any input: ids must have their length, sizes are
//! bounded by the subscriber before decoding.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tern_protocol::cluster::{EntriesNotice, Entry};
use tern_protocol::wire::EntryKind;
use tern_protocol::{ChatId, ClientMessageId, ProtocolError, UserId};

use crate::router::CommittedEntry;
use crate::store::DeviceAddr;

/// Ciphertext bytes a notice carries at most; entries beyond go without
/// their ciphertexts (their recipients sync). Below NATS's default 1 MiB
/// payload limit.
pub(crate) const MAX_NOTICE_PAYLOAD: usize = 512 * 1024;

/// The notice of a commit's entries.
pub(crate) fn notice(node_id: &str, entries: &[Arc<CommittedEntry>]) -> EntriesNotice {
    let mut budget = MAX_NOTICE_PAYLOAD;
    let entries = entries
        .iter()
        .map(|e| {
            let size = e.common_ciphertext.len()
                + e.device_ciphertexts
                    .iter()
                    .map(|dc| dc.ciphertext.len())
                    .sum::<usize>();
            let carried = size <= budget;
            budget = budget.saturating_sub(if carried { size } else { 0 });
            Entry {
                chat_id: e.chat_id.to_wire(),
                seq: e.seq,
                kind: e.kind as i32,
                sender_user_id: e.sender.user.to_wire(),
                sender_device_id: e.sender.device,
                server_time_ms: e.server_time_ms,
                client_message_id: e
                    .client_message_id
                    .map(|id| id.to_wire())
                    .unwrap_or_default(),
                device_ciphertexts: if carried {
                    e.device_ciphertexts.clone()
                } else {
                    Vec::new()
                },
                common_ciphertext: if carried {
                    e.common_ciphertext.clone()
                } else {
                    Bytes::new()
                },
                added: e.added.iter().map(UserId::to_wire).collect(),
                removed: e.removed.iter().map(UserId::to_wire).collect(),
                promoted: e.promoted.iter().map(UserId::to_wire).collect(),
                recipients: e.recipients.iter().map(UserId::to_wire).collect(),
                payload_omitted: !carried,
            }
        })
        .collect();
    EntriesNotice {
        node_id: node_id.to_owned(),
        entries,
    }
}

fn users(field: &'static str, ids: &[Bytes]) -> Result<Vec<UserId>, ProtocolError> {
    ids.iter().map(|id| UserId::from_slice(field, id)).collect()
}

/// A received entry as the router fans it out, and whether the notice left
/// its ciphertexts out.
pub(crate) fn entry(e: Entry) -> Result<(Arc<CommittedEntry>, bool), ProtocolError> {
    let kind = EntryKind::try_from(e.kind).map_err(|_| ProtocolError::Invalid {
        field: "Entry.kind",
        reason: "unknown entry kind",
    })?;
    let client_message_id = (!e.client_message_id.is_empty())
        .then(|| ClientMessageId::from_slice("Entry.client_message_id", &e.client_message_id))
        .transpose()?;
    let committed = CommittedEntry {
        chat_id: ChatId::from_slice("Entry.chat_id", &e.chat_id)?,
        seq: e.seq,
        kind,
        sender: DeviceAddr {
            user: UserId::from_slice("Entry.sender_user_id", &e.sender_user_id)?,
            device: e.sender_device_id,
        },
        server_time_ms: e.server_time_ms,
        client_message_id,
        device_ciphertexts: e.device_ciphertexts,
        common_ciphertext: e.common_ciphertext,
        added: users("Entry.added", &e.added)?,
        removed: users("Entry.removed", &e.removed)?,
        promoted: users("Entry.promoted", &e.promoted)?,
        recipients: users("Entry.recipients", &e.recipients)?,
        committed_at: Instant::now(),
        shared_frame: std::sync::OnceLock::new(),
    };
    Ok((Arc::new(committed), e.payload_omitted))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Entry {
        Entry {
            chat_id: vec![1; 16].into(),
            seq: 3,
            kind: EntryKind::Message as i32,
            sender_user_id: vec![2; 16].into(),
            sender_device_id: 1,
            recipients: vec![vec![3; 16].into()],
            ..Entry::default()
        }
    }

    #[test]
    fn a_well_formed_entry_is_accepted() {
        let (entry, omitted) = entry(valid()).unwrap();
        assert_eq!((entry.seq, omitted), (3, false));
        assert_eq!(entry.recipients, vec![UserId([3; 16])]);
    }

    #[test]
    fn hostile_entries_are_typed_errors() {
        let bad_chat = Entry {
            chat_id: vec![1; 15].into(),
            ..valid()
        };
        let bad_kind = Entry {
            kind: 99,
            ..valid()
        };
        let bad_recipient = Entry {
            recipients: vec![vec![3; 17].into()],
            ..valid()
        };
        let bad_client_id = Entry {
            client_message_id: vec![0; 3].into(),
            ..valid()
        };
        for hostile in [bad_chat, bad_kind, bad_recipient, bad_client_id] {
            assert!(entry(hostile).is_err());
        }
    }
}
