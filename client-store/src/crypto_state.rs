//! Crypto state: identity keys, prekeys, pairwise sessions and sender keys.
//!
//! The store keeps these as opaque byte strings; their versioned encodings
//! belong to [`tern_crypto`]. Values read back are wrapped in [`Zeroizing`]
//! because they hold private keys.

use rusqlite::{OptionalExtension, params};
use zeroize::Zeroizing;

use super::sql::{check_len, now_ms, sql_enum};
use super::{ChatId, DeviceAddress, StoreError, Tx};

/// Largest crypto state blob accepted (256 KiB).
pub const MAX_STATE_LEN: usize = 256 * 1024;
/// Largest session id accepted.
pub const MAX_SESSION_ID_LEN: usize = 64;
/// Inactive sessions kept per remote device (the active one comes on top);
/// older ones are pruned so that a peer cannot grow the table without bound.
pub const MAX_INACTIVE_SESSIONS: u32 = 8;

sql_enum! {
    /// Which identity record.
    pub enum IdentitySlot {
        /// The account identity (shared by the user's devices).
        Account = 1,
        /// This device's own identity.
        Device = 2,
    }
}

sql_enum! {
    /// Which kind of prekey.
    pub enum PrekeyKind {
        /// Signed X25519 prekey.
        Signed = 1,
        /// One-time X25519 prekey.
        OneTime = 2,
        /// Signed last-resort ML-KEM prekey.
        KemLastResort = 3,
        /// One-time ML-KEM prekey.
        KemOneTime = 4,
    }
}

/// A stored pairwise session with one remote device.
pub struct SessionRecord {
    /// Identifier chosen by the crypto layer (unique per remote device).
    pub session_id: Vec<u8>,
    /// Encoded session state.
    pub state: Zeroizing<Vec<u8>>,
    /// Whether this is the session used for sending.
    pub active: bool,
}

impl std::fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRecord")
            .field("session_id", &self.session_id)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

/// Tables holding one crypto state blob per small integer key.
#[derive(Clone, Copy)]
enum KeyedState {
    Identity,
    PrekeySchedule,
}

impl KeyedState {
    /// The upsert statement; parameters: key, state, now (ms).
    fn upsert(self) -> &'static str {
        match self {
            Self::Identity => {
                "INSERT INTO identity (slot, state, updated_at_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (slot) DO UPDATE SET state = excluded.state,
                     updated_at_ms = excluded.updated_at_ms"
            }
            Self::PrekeySchedule => {
                "INSERT INTO prekey_schedules (kind, state, updated_at_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (kind) DO UPDATE SET state = excluded.state,
                     updated_at_ms = excluded.updated_at_ms"
            }
        }
    }
}

fn check_state(state: &[u8]) -> Result<(), StoreError> {
    check_len("crypto state", state.len(), MAX_STATE_LEN)
}

fn secret(bytes: Vec<u8>) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(bytes)
}

impl Tx<'_> {
    /// Stores (replaces) an identity record.
    pub fn put_identity(&self, slot: IdentitySlot, state: &[u8]) -> Result<(), StoreError> {
        self.put_keyed_state(KeyedState::Identity, slot, state)
    }

    /// Stores (replaces) the state under `key` in `table`, after checking its length.
    fn put_keyed_state(
        &self,
        table: KeyedState,
        key: impl rusqlite::ToSql,
        state: &[u8],
    ) -> Result<(), StoreError> {
        check_state(state)?;
        self.conn()
            .prepare_cached(table.upsert())?
            .execute(params![key, state, now_ms()])?;
        Ok(())
    }

    /// Reads an identity record.
    pub fn identity(&self, slot: IdentitySlot) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        Ok(self
            .conn()
            .prepare_cached("SELECT state FROM identity WHERE slot = ?1")?
            .query_row([slot], |row| row.get(0))
            .optional()?
            .map(secret))
    }

    /// Stores (replaces) a prekey's private state.
    pub fn put_prekey(&self, kind: PrekeyKind, id: u32, state: &[u8]) -> Result<(), StoreError> {
        check_state(state)?;
        self.conn()
            .prepare_cached(
                "INSERT INTO prekeys (kind, id, state, created_at_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (kind, id) DO UPDATE SET state = excluded.state",
            )?
            .execute(params![kind, id, state, now_ms()])?;
        Ok(())
    }

    /// Reads a prekey's private state.
    pub fn prekey(
        &self,
        kind: PrekeyKind,
        id: u32,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        Ok(self
            .conn()
            .prepare_cached("SELECT state FROM prekeys WHERE kind = ?1 AND id = ?2")?
            .query_row(params![kind, id], |row| row.get(0))
            .optional()?
            .map(secret))
    }

    /// Deletes a prekey (a one-time prekey after use); `true` if it existed.
    pub fn remove_prekey(&self, kind: PrekeyKind, id: u32) -> Result<bool, StoreError> {
        let removed = self
            .conn()
            .prepare_cached("DELETE FROM prekeys WHERE kind = ?1 AND id = ?2")?
            .execute(params![kind, id])?;
        Ok(removed > 0)
    }

    /// The ids of all stored prekeys of `kind`, ascending.
    pub fn prekey_ids(&self, kind: PrekeyKind) -> Result<Vec<u32>, StoreError> {
        let mut stmt = self
            .conn()
            .prepare_cached("SELECT id FROM prekeys WHERE kind = ?1 ORDER BY id")?;
        let ids = stmt
            .query_map([kind], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(ids)
    }

    /// Stores (replaces) the rotation schedule of a rotating prekey kind
    /// (signed or last-resort KEM).
    pub fn put_prekey_schedule(&self, kind: PrekeyKind, state: &[u8]) -> Result<(), StoreError> {
        self.put_keyed_state(KeyedState::PrekeySchedule, kind, state)
    }

    /// Reads the rotation schedule of a prekey kind, if one was stored.
    pub fn prekey_schedule(&self, kind: PrekeyKind) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .conn()
            .prepare_cached("SELECT state FROM prekey_schedules WHERE kind = ?1")?
            .query_row([kind], |row| row.get(0))
            .optional()?)
    }

    /// Stores a session with `remote`. With `active`, it becomes the one
    /// session used for sending and the previous active session is kept as
    /// inactive (it can still decrypt late messages). Inactive sessions beyond
    /// [`MAX_INACTIVE_SESSIONS`] are pruned, oldest first.
    pub fn put_session(
        &self,
        remote: &DeviceAddress,
        session_id: &[u8],
        state: &[u8],
        active: bool,
    ) -> Result<(), StoreError> {
        check_len("session id", session_id.len(), MAX_SESSION_ID_LEN)?;
        check_state(state)?;
        let conn = self.conn();
        if active {
            conn.prepare_cached(
                "UPDATE sessions SET active = 0
                 WHERE user_id = ?1 AND device_id = ?2 AND active = 1 AND session_id != ?3",
            )?
            .execute(params![remote.user_id, remote.device_id, session_id])?;
        }
        conn.prepare_cached(
            "INSERT INTO sessions (user_id, device_id, session_id, state, active, updated_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (user_id, device_id, session_id) DO UPDATE SET
                 state = excluded.state, active = excluded.active,
                 updated_at_ms = excluded.updated_at_ms",
        )?
        .execute(params![
            remote.user_id,
            remote.device_id,
            session_id,
            state,
            active,
            now_ms()
        ])?;
        conn.prepare_cached(
            "DELETE FROM sessions WHERE user_id = ?1 AND device_id = ?2 AND active = 0
             AND session_id NOT IN (
                 SELECT session_id FROM sessions
                 WHERE user_id = ?1 AND device_id = ?2 AND active = 0
                 ORDER BY updated_at_ms DESC, session_id LIMIT ?3)",
        )?
        .execute(params![
            remote.user_id,
            remote.device_id,
            MAX_INACTIVE_SESSIONS
        ])?;
        Ok(())
    }

    /// The session used for sending to `remote`, if any.
    pub fn active_session(
        &self,
        remote: &DeviceAddress,
    ) -> Result<Option<SessionRecord>, StoreError> {
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT session_id, state, active FROM sessions
                 WHERE user_id = ?1 AND device_id = ?2 AND active = 1",
            )?
            .query_row(params![remote.user_id, remote.device_id], session_row)
            .optional()?)
    }

    /// All sessions with `remote`: the active one first, then most recent first.
    pub fn sessions(&self, remote: &DeviceAddress) -> Result<Vec<SessionRecord>, StoreError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT session_id, state, active FROM sessions
             WHERE user_id = ?1 AND device_id = ?2
             ORDER BY active DESC, updated_at_ms DESC, session_id",
        )?;
        let sessions = stmt
            .query_map(params![remote.user_id, remote.device_id], session_row)?
            .collect::<Result<_, _>>()?;
        Ok(sessions)
    }

    /// Makes an existing session the active one for `remote`.
    pub fn activate_session(
        &self,
        remote: &DeviceAddress,
        session_id: &[u8],
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        let exists = conn
            .prepare_cached(
                "SELECT 1 FROM sessions WHERE user_id = ?1 AND device_id = ?2 AND session_id = ?3",
            )?
            .exists(params![remote.user_id, remote.device_id, session_id])?;
        if !exists {
            return Err(StoreError::NotFound("session"));
        }
        conn.prepare_cached(
            "UPDATE sessions SET active = 0 WHERE user_id = ?1 AND device_id = ?2 AND active = 1",
        )?
        .execute(params![remote.user_id, remote.device_id])?;
        conn.prepare_cached(
            "UPDATE sessions SET active = 1, updated_at_ms = ?4
             WHERE user_id = ?1 AND device_id = ?2 AND session_id = ?3",
        )?
        .execute(params![
            remote.user_id,
            remote.device_id,
            session_id,
            now_ms()
        ])?;
        Ok(())
    }

    /// Deletes every session with `remote` (device removed or session reset);
    /// returns how many were deleted.
    pub fn delete_sessions(&self, remote: &DeviceAddress) -> Result<usize, StoreError> {
        Ok(self
            .conn()
            .prepare_cached("DELETE FROM sessions WHERE user_id = ?1 AND device_id = ?2")?
            .execute(params![remote.user_id, remote.device_id])?)
    }

    /// Stores (replaces) the sender key state of `sender` in group `chat_id`.
    pub fn put_sender_key(
        &self,
        chat_id: &ChatId,
        sender: &DeviceAddress,
        state: &[u8],
    ) -> Result<(), StoreError> {
        check_state(state)?;
        self.conn()
            .prepare_cached(
                "INSERT INTO sender_keys (chat_id, sender_user_id, sender_device_id, state, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (chat_id, sender_user_id, sender_device_id) DO UPDATE SET
                     state = excluded.state, updated_at_ms = excluded.updated_at_ms",
            )?
            .execute(params![chat_id, sender.user_id, sender.device_id, state, now_ms()])?;
        Ok(())
    }

    /// Reads the sender key state of `sender` in group `chat_id`.
    pub fn sender_key(
        &self,
        chat_id: &ChatId,
        sender: &DeviceAddress,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT state FROM sender_keys
                 WHERE chat_id = ?1 AND sender_user_id = ?2 AND sender_device_id = ?3",
            )?
            .query_row(params![chat_id, sender.user_id, sender.device_id], |row| {
                row.get(0)
            })
            .optional()?
            .map(secret))
    }

    /// Deletes all sender keys of a group (rotation after a member left);
    /// returns how many were deleted.
    pub fn delete_sender_keys(&self, chat_id: &ChatId) -> Result<usize, StoreError> {
        Ok(self
            .conn()
            .prepare_cached("DELETE FROM sender_keys WHERE chat_id = ?1")?
            .execute([chat_id])?)
    }
}

fn session_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRecord> {
    Ok(SessionRecord {
        session_id: row.get(0)?,
        state: secret(row.get(1)?),
        active: row.get(2)?,
    })
}
