//! Requests tests and the load generator build again and again, and the
//! answers they take apart.

use bytes::Bytes;
use tern_protocol::wire::{
    ChatKind, CreateChat, Cursor, DeviceCiphertext, KemPrekey, OneTimePrekey, Send, SendAck,
    SignedPrekey, Sync, SyncBatch, UploadPrekeys, request, response,
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

/// Uploads a signed prekey (id 1), a last-resort KEM prekey (id 9999) and
/// the one-time X25519 and KEM prekeys with the ids `one_time` and
/// `kem_one_time`; keys are filler bytes of the right lengths (the relay
/// stores, never uses, them).
pub fn upload_prekeys(
    one_time: std::ops::Range<u32>,
    kem_one_time: std::ops::Range<u32>,
) -> request::Kind {
    let kem = |id: u32| KemPrekey {
        id,
        public_key: vec![id as u8; tern_protocol::limits::KEM_PUBLIC_KEY_LEN].into(),
        signature: vec![1; 64].into(),
    };
    request::Kind::UploadPrekeys(UploadPrekeys {
        signed_prekey: Some(SignedPrekey {
            id: 1,
            public_key: vec![5; 32].into(),
            signature: vec![6; 64].into(),
        }),
        one_time_prekeys: one_time
            .map(|id| OneTimePrekey {
                id,
                public_key: vec![id as u8; 32].into(),
            })
            .collect(),
        last_resort_kem_prekey: Some(kem(9999)),
        one_time_kem_prekeys: kem_one_time.map(kem).collect(),
    })
}
