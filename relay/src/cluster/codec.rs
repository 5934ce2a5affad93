//! Bus messages to and from their wire form (`cluster.proto`). Bus input
//! is checked like any input ([`decode`]): ids must have their length,
//! kinds must be known, sizes are bounded by the subscriber before
//! decoding. Sans-IO: the NATS shell ([`super::nats`]) acts on what
//! [`decode`] returns.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use prost::Message as _;
use tern_protocol::cluster::{DeviceNotice, EntriesNotice, Entry, Heartbeat, PresenceChange};
use tern_protocol::wire::EntryKind;
use tern_protocol::{ChatId, ClientMessageId, ProtocolError, UserId};

use crate::router::CommittedEntry;
use crate::store::DeviceAddr;

/// Subject of [`EntriesNotice`]s: entries a node committed.
pub const ENTRIES: &str = "tern.entries";
/// Subject of [`DeviceNotice`]s: events for an account's devices.
pub const DEVICES: &str = "tern.devices";
/// Subject of [`PresenceChange`]s.
pub const PRESENCE: &str = "tern.presence";
/// Subject of [`Heartbeat`]s.
pub const HEARTBEAT: &str = "tern.heartbeat";
/// The subjects whose messages every node decodes with [`decode`].
pub const SUBJECTS: [&str; 4] = [ENTRIES, DEVICES, PRESENCE, HEARTBEAT];

/// A message from another node, decoded and checked.
#[derive(Debug)]
pub enum BusMessage {
    /// Entries another node committed.
    Entries(ReceivedEntries),
    /// An event, typing indicator or revocation for an account's devices
    /// (its account and kind are checked where it is delivered).
    Device(Box<DeviceNotice>),
    /// An account came online on a node, or its last device there left.
    Presence {
        /// The node.
        node_id: String,
        /// The account.
        user: UserId,
        /// Its state on that node.
        online: bool,
    },
    /// A node's heartbeat.
    Heartbeat(Heartbeat),
    /// This node's own message, or a subject nodes do not decode.
    Ignored,
}

/// Entries received from another node, with whether the notice left
/// their ciphertexts out.
#[derive(Debug)]
pub struct ReceivedEntries(pub(crate) Vec<(Arc<CommittedEntry>, bool)>);

impl ReceivedEntries {
    /// How many entries the notice held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the notice held none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A bus message that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// Not a protobuf message of the subject's type.
    #[error("undecodable: {0}")]
    Decode(#[from] prost::DecodeError),
    /// Decoded, but a field is invalid.
    #[error("invalid: {0}")]
    Invalid(#[from] ProtocolError),
}

/// Decodes and checks `payload`, received on `subject`, at the node
/// `own_node` (whose own messages come back [`BusMessage::Ignored`],
/// unchecked beyond their node id).
pub fn decode(subject: &str, payload: Bytes, own_node: &str) -> Result<BusMessage, BusError> {
    let message = match subject {
        ENTRIES => {
            let notice = EntriesNotice::decode(payload)?;
            if notice.node_id == own_node {
                return Ok(BusMessage::Ignored);
            }
            let entries = notice.entries.into_iter().map(entry);
            BusMessage::Entries(ReceivedEntries(entries.collect::<Result<_, _>>()?))
        }
        DEVICES => {
            let notice = DeviceNotice::decode(payload)?;
            if notice.node_id == own_node {
                return Ok(BusMessage::Ignored);
            }
            BusMessage::Device(Box::new(notice))
        }
        PRESENCE => {
            let change = PresenceChange::decode(payload)?;
            if change.node_id == own_node {
                return Ok(BusMessage::Ignored);
            }
            BusMessage::Presence {
                user: UserId::from_slice("PresenceChange.user_id", &change.user_id)?,
                node_id: change.node_id,
                online: change.online,
            }
        }
        HEARTBEAT => {
            let beat = Heartbeat::decode(payload)?;
            if beat.node_id == own_node {
                return Ok(BusMessage::Ignored);
            }
            BusMessage::Heartbeat(beat)
        }
        _ => BusMessage::Ignored,
    };
    Ok(message)
}

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
fn entry(e: Entry) -> Result<(Arc<CommittedEntry>, bool), ProtocolError> {
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

    #[test]
    fn decode_checks_what_other_nodes_send_and_ignores_its_own() {
        let notice = |node_id: &str| EntriesNotice {
            node_id: node_id.into(),
            entries: vec![valid(), valid()],
        };
        let bytes = |n: EntriesNotice| Bytes::from(n.encode_to_vec());
        match decode(ENTRIES, bytes(notice("other")), "me").unwrap() {
            BusMessage::Entries(entries) => assert_eq!(entries.len(), 2),
            other => panic!("{other:?}"),
        }
        let own = decode(ENTRIES, bytes(notice("me")), "me").unwrap();
        assert!(matches!(own, BusMessage::Ignored));

        let mut hostile = notice("other");
        hostile.entries[1].sender_user_id = vec![2; 3].into();
        let refused = decode(ENTRIES, bytes(hostile), "me");
        assert!(matches!(refused, Err(BusError::Invalid(_))), "{refused:?}");
        let garbage = Bytes::from_static(&[0xff, 0xff, 0xff]);
        for subject in SUBJECTS {
            let refused = decode(subject, garbage.clone(), "me");
            assert!(matches!(refused, Err(BusError::Decode(_))), "{subject}");
        }
        let short_user = PresenceChange {
            node_id: "other".into(),
            user_id: vec![1; 15].into(),
            online: true,
        };
        let refused = decode(PRESENCE, short_user.encode_to_vec().into(), "me");
        assert!(matches!(refused, Err(BusError::Invalid(_))));
        let elsewhere = decode("tern.snapshot.x", garbage, "me").unwrap();
        assert!(matches!(elsewhere, BusMessage::Ignored));
    }

    /// A well-formed entry of a message with arbitrary content.
    fn arbitrary_entry() -> impl proptest::strategy::Strategy<Value = Entry> {
        use proptest::prelude::*;
        let ids = proptest::collection::vec(any::<[u8; 16]>(), 0..4);
        let bytes = proptest::collection::vec(any::<u8>(), 0..64);
        (
            any::<[u8; 16]>(),
            any::<u64>(),
            any::<[u8; 16]>(),
            any::<u32>(),
            ids,
            bytes,
        )
            .prop_map(|(chat, seq, sender, device, recipients, common)| Entry {
                chat_id: chat.to_vec().into(),
                seq,
                kind: EntryKind::Message as i32,
                sender_user_id: sender.to_vec().into(),
                sender_device_id: device,
                client_message_id: sender.to_vec().into(),
                common_ciphertext: common.into(),
                recipients: recipients.iter().map(|r| r.to_vec().into()).collect(),
                ..Entry::default()
            })
    }

    proptest::proptest! {
        #[test]
        fn entries_cross_the_bus_unchanged(
            entries in proptest::collection::vec(arbitrary_entry(), 0..8),
        ) {
            let sent = EntriesNotice { node_id: "other".into(), entries: entries.clone() };
            let BusMessage::Entries(received) =
                decode(ENTRIES, sent.encode_to_vec().into(), "me").unwrap()
            else {
                panic!("not entries");
            };
            let committed: Vec<_> = received.0.iter().map(|(e, _)| e.clone()).collect();
            proptest::prop_assert_eq!(notice("other", &committed).entries, entries);
        }

        #[test]
        fn hostile_bytes_are_a_message_or_a_typed_error(
            subject in 0..SUBJECTS.len(),
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
        ) {
            let len = bytes.len();
            if let Ok(BusMessage::Entries(entries)) = decode(SUBJECTS[subject], bytes.into(), "me") {
                proptest::prop_assert!(entries.len() <= len, "an entry takes bytes");
            }
        }
    }
}
