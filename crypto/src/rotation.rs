//! When to replace the signed prekey and the last-resort KEM prekey, and how long
//! to keep a replaced one so that initial messages already in flight still decrypt.
//!
//! A [`RotationSchedule`] is pure state over caller-supplied time (seconds since the
//! Unix epoch): it never reads a clock and never touches the store. The client keeps
//! one schedule per kind (signed prekey, last-resort KEM prekey) in its encrypted
//! store and, on start-up and then periodically:
//!
//! 1. asks [`RotationSchedule::is_due`]; if due, generates and uploads a new prekey
//!    with [`RotationSchedule::next_id`], stores it, and calls
//!    [`RotationSchedule::rotate`] once the upload succeeded;
//! 2. deletes from the store every id that [`RotationSchedule::rotate`] and
//!    [`RotationSchedule::expire`] return (their grace period is over).
//!
//! Periods and bounds are documented in [`consts`](super::consts).

use std::collections::VecDeque;

use super::codec::{Kind, Reader, Writer};
use super::consts::{
    LAST_RESORT_KEM_GRACE_SECS, LAST_RESORT_KEM_ROTATION_SECS, MAX_RETIRED_PREKEYS,
    SIGNED_PREKEY_GRACE_SECS, SIGNED_PREKEY_ROTATION_SECS,
};
use super::error::CryptoError;

/// How often one kind of prekey is replaced and how long a replaced one is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationPolicy {
    /// Age in seconds at which the current prekey is due for replacement.
    pub rotate_after_secs: u64,
    /// Seconds a replaced prekey is kept before it must be deleted.
    pub grace_secs: u64,
}

impl RotationPolicy {
    /// The signed prekey's periods.
    pub const SIGNED_PREKEY: Self = Self {
        rotate_after_secs: SIGNED_PREKEY_ROTATION_SECS,
        grace_secs: SIGNED_PREKEY_GRACE_SECS,
    };
    /// The last-resort KEM prekey's periods.
    pub const LAST_RESORT_KEM_PREKEY: Self = Self {
        rotate_after_secs: LAST_RESORT_KEM_ROTATION_SECS,
        grace_secs: LAST_RESORT_KEM_GRACE_SECS,
    };
}

/// A replaced prekey still held, and when it was replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Retired {
    id: u32,
    retired_at: u64,
}

/// The rotation state of one kind of prekey: the current prekey and the replaced
/// ones still within their grace period (oldest first, at most
/// [`MAX_RETIRED_PREKEYS`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationSchedule {
    current: u32,
    created_at: u64,
    retired: VecDeque<Retired>,
}

impl RotationSchedule {
    /// A schedule whose current prekey `id` was created at `now`.
    pub fn new(id: u32, now: u64) -> Self {
        Self {
            current: id,
            created_at: now,
            retired: VecDeque::new(),
        }
    }

    /// The id of the prekey handed out to initiators.
    pub fn current_id(&self) -> u32 {
        self.current
    }

    /// Every id whose secret must stay in the store: the current one and the
    /// replaced ones in their grace period.
    pub fn held_ids(&self) -> impl Iterator<Item = u32> + '_ {
        std::iter::once(self.current).chain(self.retired.iter().map(|r| r.id))
    }

    /// Whether the current prekey should be replaced at `now`: it is at least
    /// `policy.rotate_after_secs` old, or `replay_cache_full` (pass the current signed
    /// prekey's [`ReplayCache::wants_rotation`](super::replay::ReplayCache::wants_rotation);
    /// `false` for KEM prekeys). A clock that went backwards never makes a prekey due.
    pub fn is_due(&self, policy: &RotationPolicy, now: u64, replay_cache_full: bool) -> bool {
        replay_cache_full || now.saturating_sub(self.created_at) >= policy.rotate_after_secs
    }

    /// An id for the next prekey that no held prekey uses (the current id plus one,
    /// skipping held ids; ids wrap around).
    pub fn next_id(&self) -> u32 {
        let mut id = self.current.wrapping_add(1);
        while self.held_ids().any(|held| held == id) {
            id = id.wrapping_add(1);
        }
        id
    }

    /// Makes `new_id` (created at `now`) current and keeps the previous one for its
    /// grace period. Returns the ids to delete now: those beyond
    /// [`MAX_RETIRED_PREKEYS`], oldest first. Fails if `new_id` is already held.
    pub fn rotate(&mut self, new_id: u32, now: u64) -> Result<Vec<u32>, CryptoError> {
        if self.held_ids().any(|held| held == new_id) {
            return Err(CryptoError::PreKeyIdInUse(new_id));
        }
        self.retired.push_back(Retired {
            id: self.current,
            retired_at: now,
        });
        self.current = new_id;
        self.created_at = now;
        let excess = self.retired.len().saturating_sub(MAX_RETIRED_PREKEYS);
        Ok(self.retired.drain(..excess).map(|r| r.id).collect())
    }

    /// Removes and returns the replaced prekeys whose grace period ended at `now`;
    /// the caller deletes them from the store.
    pub fn expire(&mut self, policy: &RotationPolicy, now: u64) -> Vec<u32> {
        let mut expired = Vec::new();
        while let Some(oldest) = self.retired.front() {
            if now.saturating_sub(oldest.retired_at) < policy.grace_secs {
                break;
            }
            expired.push(oldest.id);
            self.retired.pop_front();
        }
        expired
    }

    /// Versioned encoding: `01 18 ‖ current id (u32) ‖ created at (u64)
    /// ‖ count (u32 ≤ 16) ‖ { id (u32) ‖ retired at (u64) }*`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut writer = Writer::with_header(Kind::RotationSchedule, 20 + 12 * self.retired.len());
        writer
            .u32(self.current)
            .u64(self.created_at)
            .count(self.retired.len());
        for retired in &self.retired {
            writer.u32(retired.id).u64(retired.retired_at);
        }
        writer.finish()
    }

    /// Decodes [`Self::to_bytes`] (untrusted input: the count is bounded and ids
    /// must be distinct).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let mut reader = Reader::with_header(bytes, Kind::RotationSchedule)?;
        let current = reader.u32("current prekey id")?;
        let created_at = reader.u64("current prekey created at")?;
        let count = reader.count("retired prekeys", MAX_RETIRED_PREKEYS)?;
        let mut schedule = Self::new(current, created_at);
        for _ in 0..count {
            let id = reader.u32("retired prekey id")?;
            let retired_at = reader.u64("retired at")?;
            if schedule.held_ids().any(|held| held == id) {
                return Err(
                    super::codec::DecodeError::InvalidValue("duplicate retired prekey id").into(),
                );
            }
            schedule.retired.push_back(Retired { id, retired_at });
        }
        reader.finish()?;
        Ok(schedule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 24 * 60 * 60;
    const POLICY: RotationPolicy = RotationPolicy::SIGNED_PREKEY;

    #[test]
    fn a_prekey_is_due_after_its_period_or_when_its_replay_cache_fills() {
        let start = 1_000_000;
        let schedule = RotationSchedule::new(1, start);
        assert!(!schedule.is_due(&POLICY, start, false));
        assert!(!schedule.is_due(&POLICY, start + 2 * DAY - 1, false));
        assert!(schedule.is_due(&POLICY, start + 2 * DAY, false));
        assert!(schedule.is_due(&POLICY, start, true));
        // A clock that jumped back does not trigger (or block) anything.
        assert!(!schedule.is_due(&POLICY, start - 10 * DAY, false));
    }

    #[test]
    fn the_previous_prekey_is_kept_for_the_grace_period() {
        let mut schedule = RotationSchedule::new(1, 0);
        let t1 = 2 * DAY;
        let next = schedule.next_id();
        assert_eq!(next, 2);
        assert!(schedule.rotate(next, t1).unwrap().is_empty());
        assert_eq!(schedule.current_id(), 2);
        assert_eq!(schedule.held_ids().collect::<Vec<_>>(), [2, 1]);
        assert!(matches!(
            schedule.rotate(1, t1),
            Err(CryptoError::PreKeyIdInUse(1))
        ));
        // Still held one second before the grace period ends, released at its end.
        assert!(schedule.expire(&POLICY, t1 + 30 * DAY - 1).is_empty());
        assert_eq!(schedule.expire(&POLICY, t1 + 30 * DAY), [1]);
        assert_eq!(schedule.held_ids().collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn retired_prekeys_are_bounded_and_ids_wrap_without_collisions() {
        let mut schedule = RotationSchedule::new(u32::MAX - 1, 0);
        let mut released = Vec::new();
        for step in 1..=(MAX_RETIRED_PREKEYS as u64 + 3) {
            let id = schedule.next_id();
            released.extend(schedule.rotate(id, step).unwrap());
        }
        assert_eq!(schedule.held_ids().count(), MAX_RETIRED_PREKEYS + 1);
        assert_eq!(released, [u32::MAX - 1, u32::MAX, 0]);
        let ids: Vec<u32> = schedule.held_ids().collect();
        assert!(ids.iter().all(|id| !released.contains(id)));
    }

    #[test]
    fn encoding_round_trips_and_rejects_hostile_input() {
        let mut schedule = RotationSchedule::new(7, 100);
        schedule.rotate(8, 200).unwrap();
        schedule.rotate(9, 300).unwrap();
        let bytes = schedule.to_bytes();
        assert_eq!(RotationSchedule::from_bytes(&bytes).unwrap(), schedule);
        for len in 0..bytes.len() {
            assert!(RotationSchedule::from_bytes(&bytes[..len]).is_err());
        }
        let mut duplicate = RotationSchedule::new(7, 100).to_bytes();
        duplicate.truncate(duplicate.len() - 4);
        duplicate.extend_from_slice(&1u32.to_be_bytes());
        duplicate.extend_from_slice(&7u32.to_be_bytes());
        duplicate.extend_from_slice(&0u64.to_be_bytes());
        assert!(RotationSchedule::from_bytes(&duplicate).is_err());
        let mut oversized = RotationSchedule::new(7, 100).to_bytes();
        let len = oversized.len();
        oversized[len - 4..].copy_from_slice(&(MAX_RETIRED_PREKEYS as u32 + 1).to_be_bytes());
        assert!(RotationSchedule::from_bytes(&oversized).is_err());
    }
}
