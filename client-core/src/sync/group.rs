//! Group messages with sender keys.
//!
//! Each device keeps one sending chain per group ([`GroupSender`]) whose
//! distribution id is the chat id, and one receiving record
//! ([`SenderKeyRecord`]) per other member device. A group message is one
//! common ciphertext for everyone. When some member device has not received
//! the current chain yet (new member, new device, after a rotation), the same
//! send also carries, for every member device, a pairwise-encrypted
//! distribution message — the relay requires per-device ciphertexts to
//! address every device — so a receiver processes the distribution and then
//! decrypts the common ciphertext, in one entry. When a member leaves, every
//! remaining device replaces its chain, so the leaver cannot read on.

use prost::Message;
use zeroize::Zeroize;

use crate::model::{ChatId, ClientError, UserId};
use crate::random::rng;
use crate::store::{self, ChatKind, StoreError, Tx};
use tern_crypto::sender_key::{
    DistributionMessage, GroupSender, SenderKeyMessage, SenderKeyRecord,
};
use tern_crypto::session::DeviceAddress;

/// The own sending state of one group, stored in `sender_keys` under the own
/// device address (protobuf).
#[derive(Clone, PartialEq, Message)]
struct SenderStateRecord {
    /// [`GroupSender::to_bytes`].
    #[prost(bytes = "vec", tag = "1")]
    sender: Vec<u8>,
    /// Devices that received the current chain.
    #[prost(message, repeated, tag = "2")]
    distributed: Vec<DeviceRef>,
}

impl Drop for SenderStateRecord {
    fn drop(&mut self) {
        self.sender.zeroize();
    }
}

#[derive(Clone, PartialEq, Message)]
struct DeviceRef {
    #[prost(bytes = "vec", tag = "1")]
    user_id: Vec<u8>,
    #[prost(uint32, tag = "2")]
    device_id: u32,
}

/// The own sending chain of a group and who has it.
pub(crate) struct SenderState {
    pub sender: GroupSender,
    pub distributed: Vec<DeviceAddress>,
}

fn store_address(address: &DeviceAddress) -> store::DeviceAddress {
    store::DeviceAddress {
        user_id: address.user,
        device_id: address.device,
    }
}

fn corrupt(what: &str) -> ClientError {
    ClientError::StoreCorrupt(format!("group state: {what}"))
}

impl SenderState {
    /// A new chain nobody has yet.
    pub(super) fn fresh(chat: &ChatId) -> Self {
        Self {
            sender: GroupSender::new(*chat, &mut rng()),
            distributed: Vec::new(),
        }
    }

    /// The stored state of the own device in `chat`, or a fresh one.
    pub(super) fn load(
        tx: &Tx<'_>,
        chat: &ChatId,
        own: &DeviceAddress,
    ) -> Result<Self, ClientError> {
        let Some(bytes) = tx.sender_key(chat, &store_address(own))? else {
            return Ok(Self::fresh(chat));
        };
        let record = SenderStateRecord::decode(bytes.as_slice()).map_err(|_| corrupt("record"))?;
        let sender = GroupSender::from_bytes(&record.sender).map_err(|_| corrupt("sender"))?;
        let distributed = record
            .distributed
            .iter()
            .filter_map(|d| {
                let user = <[u8; 16]>::try_from(d.user_id.as_slice()).ok()?;
                Some(DeviceAddress {
                    user,
                    device: d.device_id,
                })
            })
            .collect();
        Ok(Self {
            sender,
            distributed,
        })
    }

    /// Stores the state (after encrypting with it, in the same transaction).
    pub(super) fn save(
        &self,
        tx: &Tx<'_>,
        chat: &ChatId,
        own: &DeviceAddress,
    ) -> Result<(), StoreError> {
        let record = SenderStateRecord {
            sender: self.sender.to_bytes().to_vec(),
            distributed: self
                .distributed
                .iter()
                .map(|d| DeviceRef {
                    user_id: d.user.to_vec(),
                    device_id: d.device,
                })
                .collect(),
        };
        let encoded = zeroize::Zeroizing::new(record.encode_to_vec());
        tx.put_sender_key(chat, &store_address(own), &encoded)
    }
}

/// Replaces the own chain of `chat` (a member left): the next group message
/// distributes the new chain to the remaining members.
pub(crate) fn rotate(tx: &Tx<'_>, chat: &ChatId, own: &DeviceAddress) -> Result<(), StoreError> {
    SenderState::fresh(chat).save(tx, chat, own)
}

/// Replaces the own sender key of every group chat that has `user` as a
/// member: a device of theirs left their list, and what is sent from now on
/// must not open with a chain that device holds. Chats without an own key
/// have nothing to replace.
pub(crate) fn rotate_shared(
    tx: &Tx<'_>,
    user: &UserId,
    own: &DeviceAddress,
) -> Result<(), StoreError> {
    for chat in tx.chats()? {
        if chat.kind == ChatKind::Group
            && tx.sender_key(&chat.chat_id, &store_address(own))?.is_some()
            && tx.chat_members(&chat.chat_id)?.contains(user)
        {
            rotate(tx, &chat.chat_id, own)?;
        }
    }
    Ok(())
}

/// Forgets that `device` has the own chain of `chat` (its session was
/// repaired, or it asked for a reset), so that the next group message carries
/// a pairwise distribution to it again. Nothing to do without own state.
pub(crate) fn forget_device(
    tx: &Tx<'_>,
    chat: &ChatId,
    own: &DeviceAddress,
    device: &DeviceAddress,
) -> Result<(), ClientError> {
    if tx.sender_key(chat, &store_address(own))?.is_none() {
        return Ok(());
    }
    let mut state = SenderState::load(tx, chat, own)?;
    state.distributed.retain(|d| d != device);
    Ok(state.save(tx, chat, own)?)
}

/// The receiving record for `sender` in `chat`, from the store.
pub(crate) fn load_record(
    tx: &Tx<'_>,
    chat: &ChatId,
    sender: &DeviceAddress,
) -> Result<SenderKeyRecord, ClientError> {
    match tx.sender_key(chat, &store_address(sender))? {
        Some(bytes) => SenderKeyRecord::from_bytes(&bytes).map_err(|_| corrupt("record")),
        None => Ok(SenderKeyRecord::new()),
    }
}

/// Stores the receiving record for `sender` in `chat`.
pub(crate) fn save_record(
    tx: &Tx<'_>,
    chat: &ChatId,
    sender: &DeviceAddress,
    record: &SenderKeyRecord,
) -> Result<(), StoreError> {
    tx.put_sender_key(chat, &store_address(sender), &record.to_bytes())
}

/// Applies a distribution received over the pairwise session with its sender.
pub(crate) fn accept_distribution(
    record: &mut SenderKeyRecord,
    chat: &ChatId,
    bytes: &[u8],
) -> Result<(), String> {
    let message = DistributionMessage::decode(bytes).map_err(|e| e.to_string())?;
    if message.distribution_id() != chat {
        return Err("sender key distributed for another chat".into());
    }
    record.process_distribution(&message);
    Ok(())
}

/// Decrypts a group message with the sender's record.
pub(crate) fn decrypt(
    record: &mut SenderKeyRecord,
    chat: &ChatId,
    bytes: &[u8],
) -> Result<Vec<u8>, String> {
    let message = SenderKeyMessage::decode(bytes).map_err(|e| e.to_string())?;
    if message.distribution_id() != chat {
        return Err("group message for another chat".into());
    }
    record.decrypt(&message).map_err(|e| e.to_string())
}
