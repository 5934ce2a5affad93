//! A chat's member table: what the membership rules
//! ([`crate::store::rules`]) read, and where their effects are written.

use rusqlite::{Connection, params};
use tern_protocol::{ChatId, UserId};

use super::user_id;
use crate::error::StoreError;
use crate::store::rules::{Member, MembershipEffect};

/// The members of `chat` with their join seqs and roles.
pub(super) fn load(conn: &Connection, chat: &ChatId) -> Result<Vec<Member>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT user_id, joined_seq, admin FROM chat_members WHERE chat_id = ?1")?;
    let rows = stmt.query_map([&chat.0[..]], |r| {
        Ok((
            r.get::<_, Vec<u8>>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, bool>(2)?,
        ))
    })?;
    rows.map(|row| {
        let (user, joined_seq, admin) = row?;
        Ok(Member {
            user: user_id(&user)?,
            joined_seq: u64::try_from(joined_seq).map_err(|_| StoreError::Corrupt("join seq"))?,
            admin,
        })
    })
    .collect()
}

/// Writes what a membership entry at `seq` decided: members joining at
/// `seq`, members leaving (with their cursors), new admins.
pub(super) fn apply(
    conn: &Connection,
    chat: &ChatId,
    seq: u64,
    effect: &MembershipEffect,
) -> Result<(), StoreError> {
    let chat = &chat.0[..];
    let mut join = conn.prepare_cached(
        "INSERT OR IGNORE INTO chat_members (chat_id, user_id, joined_seq) VALUES (?1, ?2, ?3)",
    )?;
    for user in &effect.joined {
        join.execute(params![chat, &user.0[..], seq as i64])?;
    }
    for user in &effect.left {
        conn.prepare_cached("DELETE FROM chat_members WHERE chat_id = ?1 AND user_id = ?2")?
            .execute(params![chat, &user.0[..]])?;
        conn.prepare_cached("DELETE FROM cursors WHERE chat_id = ?1 AND user_id = ?2")?
            .execute(params![chat, &user.0[..]])?;
    }
    let mut promote = conn
        .prepare_cached("UPDATE chat_members SET admin = 1 WHERE chat_id = ?1 AND user_id = ?2")?;
    for user in &effect.promoted {
        promote.execute(params![chat, &user.0[..]])?;
    }
    Ok(())
}

/// The admins of `chat`, in id order.
pub(super) fn admins_of(conn: &Connection, chat: &ChatId) -> Result<Vec<UserId>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT user_id FROM chat_members WHERE chat_id = ?1 AND admin = 1 ORDER BY user_id",
    )?;
    let admins = stmt
        .query_map([&chat.0[..]], |r| r.get::<_, Vec<u8>>(0))?
        .map(|row| user_id(&row?))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(admins)
}
