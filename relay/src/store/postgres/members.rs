//! Chats and their member table: what the membership rules
//! ([`crate::store::rules`]) read, where their effects are written, and
//! the chat lookups of [`crate::store::ChatStore`].

use deadpool_postgres::GenericClient;
use tern_protocol::{ChatId, UserId};

use super::{chat_id, exec, get, get_u64, row, rows, user_id};
use crate::error::StoreError;
use crate::store::rules::{Member, MembershipEffect};
use crate::store::{ChatRecord, DeviceAddr};

/// A chat's members and all their devices, as sends are checked against.
pub(super) struct ChatDevices {
    pub(super) members: Vec<UserId>,
    pub(super) devices: Vec<DeviceAddr>,
}

impl ChatDevices {
    /// A chat without members (all left).
    pub(super) fn none() -> Self {
        Self {
            members: Vec::new(),
            devices: Vec::new(),
        }
    }
}

/// The members of `chat` with their join seqs and roles.
pub(super) async fn load(c: &impl GenericClient, chat: &ChatId) -> Result<Vec<Member>, StoreError> {
    rows(
        c,
        "SELECT user_id, joined_seq, admin FROM chat_members WHERE chat_id = $1",
        &[&&chat.0[..]],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(Member {
            user: user_id(get(r, 0)?)?,
            joined_seq: get_u64(r, 1)?,
            admin: get(r, 2)?,
        })
    })
    .collect()
}

/// Writes what a membership entry at `seq` decided: members joining at
/// `seq`, members leaving (with their cursors), new admins.
pub(super) async fn apply(
    c: &impl GenericClient,
    chat: &ChatId,
    seq: u64,
    effect: &MembershipEffect,
) -> Result<(), StoreError> {
    let chat = &chat.0[..];
    let seq = super::big(seq);
    for user in &effect.joined {
        exec(
            c,
            "INSERT INTO chat_members (chat_id, user_id, joined_seq) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
            &[&chat, &&user.0[..], &seq],
        )
        .await?;
    }
    for user in &effect.left {
        for table in ["chat_members", "cursors"] {
            let sql = format!("DELETE FROM {table} WHERE chat_id = $1 AND user_id = $2");
            exec(c, &sql, &[&chat, &&user.0[..]]).await?;
        }
    }
    for user in &effect.promoted {
        exec(
            c,
            "UPDATE chat_members SET admin = true WHERE chat_id = $1 AND user_id = $2",
            &[&chat, &&user.0[..]],
        )
        .await?;
    }
    Ok(())
}

/// Account ids of the rows of a one-column query, in the query's order.
async fn user_ids(
    c: &impl GenericClient,
    sql: &str,
    key: &[u8],
) -> Result<Vec<UserId>, StoreError> {
    rows(c, sql, &[&key])
        .await?
        .iter()
        .map(|r| user_id(get(r, 0)?))
        .collect()
}

/// The members of `chat`, in id order.
pub(super) async fn members_of(
    c: &impl GenericClient,
    chat: &ChatId,
) -> Result<Vec<UserId>, StoreError> {
    user_ids(
        c,
        "SELECT user_id FROM chat_members WHERE chat_id = $1 ORDER BY user_id",
        &chat.0,
    )
    .await
}

/// A chat and its members.
pub(super) async fn chat(
    c: &impl GenericClient,
    chat: &ChatId,
) -> Result<Option<ChatRecord>, StoreError> {
    let Some(head) = row(
        c,
        "SELECT kind, last_seq FROM chats WHERE chat_id = $1",
        &[&&chat.0[..]],
    )
    .await?
    else {
        return Ok(None);
    };
    Ok(Some(ChatRecord {
        chat_id: *chat,
        kind: super::log::chat_kind(get(&head, 0)?)?,
        members: members_of(c, chat).await?,
        admins: user_ids(
            c,
            "SELECT user_id FROM chat_members WHERE chat_id = $1 AND admin ORDER BY user_id",
            &chat.0,
        )
        .await?,
        last_seq: get_u64(&head, 1)?,
    }))
}

/// The chats `user` is a member of, with the seq each was joined at.
pub(super) async fn member_chats(
    c: &impl GenericClient,
    user: &UserId,
) -> Result<Vec<(ChatId, u64)>, StoreError> {
    rows(
        c,
        "SELECT chat_id, joined_seq FROM chat_members WHERE user_id = $1 ORDER BY chat_id",
        &[&&user.0[..]],
    )
    .await?
    .iter()
    .map(|r| Ok((chat_id(get(r, 0)?)?, get_u64(r, 1)?)))
    .collect()
}

pub(super) async fn chats_of(
    c: &impl GenericClient,
    user: &UserId,
) -> Result<Vec<ChatRecord>, StoreError> {
    let mut out = Vec::new();
    for (id, _) in member_chats(c, user).await? {
        if let Some(record) = chat(c, &id).await? {
            out.push(record);
        }
    }
    Ok(out)
}

pub(super) async fn contacts_of(
    c: &impl GenericClient,
    user: &UserId,
) -> Result<Vec<UserId>, StoreError> {
    let mut out = user_ids(
        c,
        "SELECT DISTINCT b.user_id FROM chat_members a JOIN chat_members b ON a.chat_id = b.chat_id
         WHERE a.user_id = $1",
        &user.0,
    )
    .await?;
    if !out.contains(user) {
        out.push(*user);
    }
    Ok(out)
}
