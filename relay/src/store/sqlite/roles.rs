//! Group roles: who may change a group's membership, and who its admins
//! are. The creator of a group is its first admin; admins add and remove
//! members and promote others; any member may leave. A group whose last
//! admin leaves gets the longest-standing remaining member as admin, so a
//! group is never left without one. Every promotion is recorded in the
//! membership entry that made it.

use rusqlite::{Connection, OptionalExtension, params};
use tern_protocol::{ChatId, UserId};

use super::user_id;
use crate::error::{RelayError, StoreError};
use crate::store::MembershipAppend;

/// Whether `user` is an admin of `chat`.
fn is_admin(conn: &Connection, chat: &ChatId, user: &UserId) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM chat_members WHERE chat_id = ?1 AND user_id = ?2 AND admin = 1",
        )?
        .exists(params![&chat.0[..], &user.0[..]])?)
}

/// Refuses a change of an existing group that its actor may not make: a
/// member who is not an admin may only remove itself.
pub(super) fn check_allowed(conn: &Connection, m: &MembershipAppend) -> Result<(), StoreError> {
    let leaving = m.added.is_empty() && m.promote.is_empty() && m.removed == [m.actor.user];
    if leaving || is_admin(conn, &m.chat_id, &m.actor.user)? {
        return Ok(());
    }
    Err(RelayError::Forbidden("only group admins add or remove others or promote").into())
}

/// After the members of a change are stored: makes `promote` admins (they
/// must be members by now), and when the group has no admin left, its
/// longest-standing member. Returns who became admin.
pub(super) fn apply_promotions(
    conn: &Connection,
    chat: &ChatId,
    promote: &[UserId],
) -> Result<Vec<UserId>, StoreError> {
    let mut promoted = Vec::new();
    let mut set_admin = conn.prepare_cached(
        "UPDATE chat_members SET admin = 1 WHERE chat_id = ?1 AND user_id = ?2 AND admin = 0",
    )?;
    for user in promote {
        if !conn
            .prepare_cached("SELECT 1 FROM chat_members WHERE chat_id = ?1 AND user_id = ?2")?
            .exists(params![&chat.0[..], &user.0[..]])?
        {
            return Err(RelayError::BadRequest("only members can be promoted").into());
        }
        if set_admin.execute(params![&chat.0[..], &user.0[..]])? == 1 {
            promoted.push(*user);
        }
    }
    if admins_of(conn, chat)?.is_empty() {
        let eldest: Option<Vec<u8>> = conn
            .prepare_cached(
                "SELECT user_id FROM chat_members WHERE chat_id = ?1
                 ORDER BY joined_seq, user_id LIMIT 1",
            )?
            .query_row([&chat.0[..]], |r| r.get(0))
            .optional()?;
        if let Some(eldest) = eldest {
            set_admin.execute(params![&chat.0[..], &eldest[..]])?;
            promoted.push(user_id(&eldest)?);
        }
    }
    Ok(promoted)
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
