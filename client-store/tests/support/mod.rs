//! Shared fixtures for the store integration tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use tern_store::{
    Chat, ChatId, ChatKind, DeviceAddress, KdfParams, KeySource, NewMessage, Store, UserId,
};

/// Cheap Argon2id parameters so that debug-build tests stay fast.
pub fn fast_params() -> KdfParams {
    KdfParams::new(64, 1, 1).expect("valid params")
}

pub fn passphrase(text: &str) -> KeySource {
    KeySource::passphrase_with_params(text, fast_params())
}

pub fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("tern.db")
}

pub fn open(path: &Path, key: KeySource) -> Store {
    Store::open(path, key).expect("store opens")
}

pub fn user(n: u8) -> UserId {
    [n; 16]
}

pub fn chat_id(n: u8) -> ChatId {
    let mut id = [0xc0; 16];
    id[15] = n;
    id
}

pub fn device(n: u8, device_id: u32) -> DeviceAddress {
    DeviceAddress {
        user_id: user(n),
        device_id,
    }
}

pub fn chat(n: u8) -> Chat {
    Chat {
        chat_id: chat_id(n),
        kind: ChatKind::Group,
        title: format!("chat {n}"),
        created_at_ms: 1_000,
    }
}

/// Message number `n` from user 1 in chat `chat`.
pub fn message(chat: u8, n: u32, body: &str) -> NewMessage {
    let mut client_message_id = [0u8; 16];
    client_message_id[..4].copy_from_slice(&n.to_be_bytes());
    client_message_id[15] = chat;
    NewMessage {
        chat_id: chat_id(chat),
        relay_seq: Some(u64::from(n)),
        client_message_id,
        sender: device(1, 1),
        sent_at_ms: 1_700_000_000_000 + i64::from(n) * 1_000,
        received_at_ms: 1_700_000_000_000 + i64::from(n) * 1_000 + 5,
        body: body.to_owned(),
    }
}

/// A store with chats 1 and 2 created.
pub fn store_with_chats(dir: &tempfile::TempDir) -> Store {
    let store = open(&db_path(dir), KeySource::raw([7; 32]));
    store
        .transaction(|tx| {
            tx.upsert_chat(&chat(1))?;
            tx.upsert_chat(&chat(2))
        })
        .expect("chats stored");
    store
}
