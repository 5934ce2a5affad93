//! Requests tests and the load generator build again and again, and the
//! answers they take apart.

use bytes::Bytes;
use tern_protocol::wire::{
    ChatKind, CreateChat, Cursor, DeviceCiphertext, Send, SendAck, Sync, SyncBatch, request,
    response,
};

/// Creates chat `chat_id` of `kind` with `members` (besides the creator).
pub fn create_chat(chat_id: [u8; 16], kind: ChatKind, members: &[[u8; 16]]) -> request::Kind {
    request::Kind::CreateChat(CreateChat {
        chat_id: chat_id.to_vec().into(),
        kind: kind as i32,
        members: members.iter().map(|m| Bytes::from(m.to_vec())).collect(),
    })
}

/// Sends client message `cmid` to chat `chat_id`: a ciphertext for each
/// (user, device) in `to`, and `common` for every member.
pub fn send_to(
    chat_id: [u8; 16],
    cmid: [u8; 16],
    to: &[(&[u8; 16], u32, &[u8])],
    common: &[u8],
) -> request::Kind {
    request::Kind::Send(Send {
        chat_id: chat_id.to_vec().into(),
        client_message_id: cmid.to_vec().into(),
        device_ciphertexts: to
            .iter()
            .map(|(u, d, ct)| DeviceCiphertext {
                user_id: u.to_vec().into(),
                device_id: *d,
                ciphertext: ct.to_vec().into(),
            })
            .collect(),
        common_ciphertext: common.to_vec().into(),
    })
}

/// Syncs every chat after the stored cursors, or after `after`'s
/// (chat, seq) cursors.
pub fn sync_req(after: &[([u8; 16], u64)]) -> request::Kind {
    request::Kind::Sync(Sync {
        after: after
            .iter()
            .map(|(c, s)| Cursor {
                chat_id: c.to_vec().into(),
                seq: *s,
            })
            .collect(),
        limit: 0,
    })
}

/// The acknowledgement a send got.
///
/// # Panics
/// When `kind` is another answer.
#[allow(clippy::panic)]
pub fn ack(kind: response::Kind) -> SendAck {
    match kind {
        response::Kind::SendAck(a) => a,
        other => panic!("expected SendAck, got {other:?}"),
    }
}

/// The page a sync got.
///
/// # Panics
/// When `kind` is another answer.
#[allow(clippy::panic)]
pub fn batch(kind: response::Kind) -> SyncBatch {
    match kind {
        response::Kind::SyncBatch(b) => b,
        other => panic!("expected SyncBatch, got {other:?}"),
    }
}
