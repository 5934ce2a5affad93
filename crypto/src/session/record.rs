//! The sessions kept for one remote device and the Sesame rules that pick the active one.

use std::collections::VecDeque;

use crate::codec::{DecodeError, Kind, Reader, Writer};
use crate::consts::{MAX_ARCHIVED_SESSIONS, MAX_SESSION_RECORD_LEN};
use crate::error::CryptoError;
use crate::pqxdh::PreKeyMessage;
use crate::ratchet::RatchetMessage;

use super::state::Session;

/// The active session with one remote device and up to
/// [`MAX_ARCHIVED_SESSIONS`] older ones (newest first).
#[derive(Debug, Clone, Default)]
pub struct SessionRecord {
    active: Option<Session>,
    archived: VecDeque<Session>,
}

/// Which session of a record decrypted a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    Active,
    Archived(usize),
}

impl SessionRecord {
    /// The session used for sending, if any.
    pub fn active(&self) -> Option<&Session> {
        self.active.as_ref()
    }

    /// Number of archived sessions.
    pub fn archived_len(&self) -> usize {
        self.archived.len()
    }

    pub(crate) fn active_mut(&mut self) -> Option<&mut Session> {
        self.active.as_mut()
    }

    fn slot_mut(&mut self, slot: Slot) -> Option<&mut Session> {
        match slot {
            Slot::Active => self.active.as_mut(),
            Slot::Archived(i) => self.archived.get_mut(i),
        }
    }

    /// The session started with `base_key`, if the record still holds it.
    pub(crate) fn find_by_base_key(&self, base_key: &[u8; 32]) -> Option<Slot> {
        if self
            .active
            .as_ref()
            .is_some_and(|s| s.base_key() == base_key)
        {
            return Some(Slot::Active);
        }
        self.archived
            .iter()
            .position(|s| s.base_key() == base_key)
            .map(Slot::Archived)
    }

    /// Decrypts with the session in `slot`; on error nothing changes.
    pub(crate) fn decrypt_in(
        &mut self,
        slot: Slot,
        message: &RatchetMessage,
    ) -> Result<Vec<u8>, CryptoError> {
        self.slot_mut(slot)
            .ok_or(CryptoError::NoSession)?
            .decrypt(message)
    }

    /// Decrypts a retransmitted prekey message with the session in `slot`.
    pub(crate) fn decrypt_prekey_in(
        &mut self,
        slot: Slot,
        message: &PreKeyMessage,
    ) -> Result<Vec<u8>, CryptoError> {
        self.slot_mut(slot)
            .ok_or(CryptoError::NoSession)?
            .decrypt_prekey_message(message)
    }

    /// Tries the active session, then the archived ones. A session that decrypts
    /// a ratchet message becomes active (Sesame): the peer is using it.
    pub(crate) fn decrypt(&mut self, message: &RatchetMessage) -> Result<Vec<u8>, CryptoError> {
        let mut first_error = None;
        let slots =
            std::iter::once(Slot::Active).chain((0..self.archived.len()).map(Slot::Archived));
        for slot in slots {
            match self.decrypt_in(slot, message) {
                Ok(plaintext) => {
                    if let Slot::Archived(i) = slot {
                        self.promote(i);
                    }
                    return Ok(plaintext);
                }
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        Err(first_error.unwrap_or(CryptoError::NoSession))
    }

    fn promote(&mut self, index: usize) {
        if let Some(session) = self.archived.remove(index) {
            if let Some(previous) = self.active.replace(session) {
                self.archived.push_front(previous);
            }
        }
    }

    fn archive(&mut self, session: Session) {
        self.archived.push_front(session);
        self.archived.truncate(MAX_ARCHIVED_SESSIONS);
    }

    /// Installs a session we initiated: it becomes active.
    pub(crate) fn install_outgoing(&mut self, session: Session) {
        if let Some(previous) = self.active.replace(session) {
            self.archive(previous);
        }
    }

    /// Installs a session the peer initiated. It becomes active unless both sides
    /// initiated at the same time (our active session is ours and unanswered): then
    /// the session with the smaller base key wins on both sides, so they converge.
    pub(crate) fn install_incoming(&mut self, session: Session) {
        let keep_ours = self.active.as_ref().is_some_and(|active| {
            active.initiated_by_us()
                && !active.received_any()
                && active.base_key() < session.base_key()
        });
        if keep_ours {
            self.archive(session);
        } else {
            self.install_outgoing(session);
        }
    }

    /// Versioned encoding (`01 12 ‖ has active ‖ [session] ‖ count ‖ sessions`); it
    /// contains secrets, so store it only encrypted.
    pub fn to_bytes(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let mut writer = Writer::with_header(Kind::SessionRecord, 512);
        writer.bool(self.active.is_some());
        if let Some(active) = &self.active {
            active.write(&mut writer);
        }
        writer.count(self.archived.len());
        for session in &self.archived {
            session.write(&mut writer);
        }
        zeroize::Zeroizing::new(writer.finish())
    }

    /// Decodes [`Self::to_bytes`] (untrusted input: every count is bounded).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() > MAX_SESSION_RECORD_LEN {
            return Err(DecodeError::TooLong {
                field: "session record",
                len: bytes.len(),
                max: MAX_SESSION_RECORD_LEN,
            }
            .into());
        }
        let mut reader = Reader::with_header(bytes, Kind::SessionRecord)?;
        let active = match reader.bool("has active session")? {
            true => Some(Session::read(&mut reader)?),
            false => None,
        };
        let count = reader.count("archived sessions", MAX_ARCHIVED_SESSIONS)?;
        let archived = (0..count)
            .map(|_| Session::read(&mut reader))
            .collect::<Result<_, _>>()?;
        reader.finish()?;
        Ok(Self { active, archived })
    }
}
