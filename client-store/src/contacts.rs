//! Contacts with their verification state, chats and chat membership.

use rusqlite::{OptionalExtension, params};

use super::sql::{check_len, now_ms, sql_enum};
use super::{ChatId, StoreError, Tx, UserId};

/// Longest display name or chat title accepted, in bytes.
pub const MAX_NAME_LEN: usize = 256;
/// Longest identity key encoding accepted, in bytes.
pub const MAX_IDENTITY_KEY_LEN: usize = 2048;
/// Most members in one chat.
pub const MAX_CHAT_MEMBERS: usize = 4096;

sql_enum! {
    /// Whether the user compared safety numbers with a contact.
    pub enum Verification {
        /// Never verified.
        Default = 0,
        /// Verified against the current identity key.
        Verified = 1,
        /// Was verified, but the identity key changed since.
        Unverified = 2,
    }
}

sql_enum! {
    /// What kind of chat.
    pub enum ChatKind {
        /// One-to-one.
        Direct = 1,
        /// A group.
        Group = 2,
    }
}

/// A contact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contact {
    /// The contact's account id.
    pub user_id: UserId,
    /// Name shown for the contact.
    pub display_name: String,
    /// The account identity key last seen, if known.
    pub identity_key: Option<Vec<u8>>,
    /// Verification state.
    pub verification: Verification,
}

/// A chat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chat {
    /// The chat id.
    pub chat_id: ChatId,
    /// Direct or group.
    pub kind: ChatKind,
    /// Title (a group name; may be empty for direct chats).
    pub title: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

impl Tx<'_> {
    /// Inserts or replaces a contact.
    pub fn upsert_contact(&self, contact: &Contact) -> Result<(), StoreError> {
        check_len("display name", contact.display_name.len(), MAX_NAME_LEN)?;
        if let Some(key) = &contact.identity_key {
            check_len("identity key", key.len(), MAX_IDENTITY_KEY_LEN)?;
        }
        self.conn()
            .prepare_cached(
                "INSERT INTO contacts (user_id, display_name, identity_key, verification, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (user_id) DO UPDATE SET display_name = excluded.display_name,
                     identity_key = excluded.identity_key, verification = excluded.verification,
                     updated_at_ms = excluded.updated_at_ms",
            )?
            .execute(params![
                contact.user_id,
                contact.display_name,
                contact.identity_key,
                contact.verification,
                now_ms()
            ])?;
        Ok(())
    }

    /// Reads a contact.
    pub fn contact(&self, user_id: &UserId) -> Result<Option<Contact>, StoreError> {
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT user_id, display_name, identity_key, verification FROM contacts
                 WHERE user_id = ?1",
            )?
            .query_row([user_id], contact_row)
            .optional()?)
    }

    /// All contacts, by display name.
    pub fn contacts(&self) -> Result<Vec<Contact>, StoreError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT user_id, display_name, identity_key, verification FROM contacts
             ORDER BY display_name, user_id",
        )?;
        let contacts = stmt.query_map([], contact_row)?.collect::<Result<_, _>>()?;
        Ok(contacts)
    }

    /// Sets a contact's verification state.
    pub fn set_verification(
        &self,
        user_id: &UserId,
        verification: Verification,
    ) -> Result<(), StoreError> {
        let updated = self
            .conn()
            .prepare_cached(
                "UPDATE contacts SET verification = ?2, updated_at_ms = ?3 WHERE user_id = ?1",
            )?
            .execute(params![user_id, verification, now_ms()])?;
        if updated == 0 {
            return Err(StoreError::NotFound("contact"));
        }
        Ok(())
    }

    /// Inserts or replaces a chat (its messages and members are kept).
    pub fn upsert_chat(&self, chat: &Chat) -> Result<(), StoreError> {
        check_len("chat title", chat.title.len(), MAX_NAME_LEN)?;
        self.conn()
            .prepare_cached(
                "INSERT INTO chats (chat_id, kind, title, created_at_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (chat_id) DO UPDATE SET kind = excluded.kind, title = excluded.title",
            )?
            .execute(params![
                chat.chat_id,
                chat.kind,
                chat.title,
                chat.created_at_ms
            ])?;
        Ok(())
    }

    /// Reads a chat.
    pub fn chat(&self, chat_id: &ChatId) -> Result<Option<Chat>, StoreError> {
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT chat_id, kind, title, created_at_ms FROM chats WHERE chat_id = ?1",
            )?
            .query_row([chat_id], chat_row)
            .optional()?)
    }

    /// All chats, oldest first.
    pub fn chats(&self) -> Result<Vec<Chat>, StoreError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT chat_id, kind, title, created_at_ms FROM chats ORDER BY created_at_ms, chat_id",
        )?;
        let chats = stmt.query_map([], chat_row)?.collect::<Result<_, _>>()?;
        Ok(chats)
    }

    /// Replaces the member list of a chat; members who stay keep their
    /// admin flag.
    pub fn set_chat_members(&self, chat_id: &ChatId, members: &[UserId]) -> Result<(), StoreError> {
        if members.len() > MAX_CHAT_MEMBERS {
            return Err(StoreError::TooLarge {
                what: "member list",
                len: members.len(),
                max: MAX_CHAT_MEMBERS,
            });
        }
        let conn = self.conn();
        for old in self.chat_members(chat_id)? {
            if !members.contains(&old) {
                conn.prepare_cached(
                    "DELETE FROM chat_members WHERE chat_id = ?1 AND user_id = ?2",
                )?
                .execute(params![chat_id, old])?;
            }
        }
        let mut insert = conn.prepare_cached(
            "INSERT OR IGNORE INTO chat_members (chat_id, user_id) VALUES (?1, ?2)",
        )?;
        for member in members {
            insert.execute(params![chat_id, member])?;
        }
        Ok(())
    }

    /// Marks `admins` as the chat's admins and every other member as not
    /// one (from the relay's view of the chat).
    pub fn set_chat_admins(&self, chat_id: &ChatId, admins: &[UserId]) -> Result<(), StoreError> {
        self.conn()
            .prepare_cached("UPDATE chat_members SET admin = 0 WHERE chat_id = ?1")?
            .execute([chat_id])?;
        self.promote_chat_members(chat_id, admins)
    }

    /// Makes `members` admins of the chat (a membership entry promoted them).
    pub fn promote_chat_members(
        &self,
        chat_id: &ChatId,
        members: &[UserId],
    ) -> Result<(), StoreError> {
        let mut promote = self.conn().prepare_cached(
            "UPDATE chat_members SET admin = 1 WHERE chat_id = ?1 AND user_id = ?2",
        )?;
        for member in members {
            promote.execute(params![chat_id, member])?;
        }
        Ok(())
    }

    /// The admins of a chat, in id order.
    pub fn chat_admins(&self, chat_id: &ChatId) -> Result<Vec<UserId>, StoreError> {
        self.member_ids(chat_id, true)
    }

    /// The members of a chat, in id order.
    pub fn chat_members(&self, chat_id: &ChatId) -> Result<Vec<UserId>, StoreError> {
        self.member_ids(chat_id, false)
    }

    /// The members of a chat (only its admins if `admins_only`), in id order.
    fn member_ids(&self, chat_id: &ChatId, admins_only: bool) -> Result<Vec<UserId>, StoreError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT user_id FROM chat_members WHERE chat_id = ?1 AND admin >= ?2 ORDER BY user_id",
        )?;
        let ids = stmt
            .query_map(params![chat_id, admins_only], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(ids)
    }
}

fn contact_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Contact> {
    Ok(Contact {
        user_id: row.get(0)?,
        display_name: row.get(1)?,
        identity_key: row.get(2)?,
        verification: row.get(3)?,
    })
}

fn chat_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Chat> {
    Ok(Chat {
        chat_id: row.get(0)?,
        kind: row.get(1)?,
        title: row.get(2)?,
        created_at_ms: row.get(3)?,
    })
}
