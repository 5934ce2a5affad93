//! Rotation of the signed prekey and the last-resort KEM prekey.
//!
//! Each kind has a [`RotationSchedule`] in the store (table `prekey_schedules`).
//! On every connection, then every [`ROTATION_CHECK`] and whenever a decrypt hit
//! a full replay cache, the engine runs [`maintain`]: a due prekey is replaced
//! (the new one stored, then uploaded, then made current), and replaced prekeys
//! whose grace period is over are deleted. Until then a replaced prekey still
//! answers initial messages from initiators that fetched the old bundle. Ages
//! are measured on the client's [`Clock`](super::Clock).

use std::time::Duration;

use tern_protocol::wire::{UploadPrekeys, request};

use super::account::generate_rotating_prekey;
use super::{Core, Relay};
use crate::model::{ClientError, PrekeyRotation, PrekeyRotations};
use crate::store::{PrekeyKind, Tx};
use tern_crypto::prekeys::SignedPreKey;
use tern_crypto::rotation::{RotationPolicy, RotationSchedule};

/// How often a connected client checks whether a prekey is due.
pub(crate) const ROTATION_CHECK: Duration = Duration::from_secs(60 * 60);

/// Rotates what is due and deletes what expired, for both rotating kinds.
/// `replay_cache_full` forces the signed prekey's rotation (a decrypt failed
/// with `ReplayCacheFull`). Runs in the receiving turn, so that no batch of
/// deliveries writes a signed prekey back while it is deleted.
pub(crate) async fn maintain<R: Relay + ?Sized>(
    core: &Core,
    conn: &R,
    replay_cache_full: bool,
) -> Result<PrekeyRotations, ClientError> {
    let _turn = core.receiving.lock().await;
    Ok(PrekeyRotations {
        signed: maintain_kind(core, conn, PrekeyKind::Signed, replay_cache_full).await?,
        last_resort_kem: maintain_kind(core, conn, PrekeyKind::KemLastResort, false).await?,
    })
}

fn policy(kind: PrekeyKind) -> RotationPolicy {
    match kind {
        PrekeyKind::Signed => RotationPolicy::SIGNED_PREKEY,
        _ => RotationPolicy::LAST_RESORT_KEM_PREKEY,
    }
}

async fn maintain_kind<R: Relay + ?Sized>(
    core: &Core,
    conn: &R,
    kind: PrekeyKind,
    force: bool,
) -> Result<PrekeyRotation, ClientError> {
    let now = core.clock.now_secs();
    let policy = policy(kind);
    let (mut schedule, due) = core.store.transaction(|tx| check(tx, kind, now, force))?;
    let mut deleted = Vec::new();
    if due {
        let id = schedule.next_id();
        let mut upload = UploadPrekeys::default();
        core.store.transaction(|tx| {
            generate_rotating_prekey(tx, core.sessions.identity(), kind, id, &mut upload)
        })?;
        conn.request(request::Kind::UploadPrekeys(upload)).await?;
        deleted = schedule.rotate(id, now)?;
        tracing::info!(?kind, id, "rotated a prekey");
    }
    deleted.extend(schedule.expire(&policy, now));
    core.store.transaction(|tx| {
        tx.put_prekey_schedule(kind, &schedule.to_bytes())?;
        for id in &deleted {
            tx.remove_prekey(kind, *id)?;
        }
        Ok::<_, ClientError>(())
    })?;
    Ok(PrekeyRotation {
        current_id: schedule.current_id(),
        rotated: due,
        deleted,
    })
}

/// The schedule of `kind` and whether its current prekey is due at `now`
/// (`force`: a decrypt reported the signed prekey's replay cache full).
fn check(
    tx: &Tx<'_>,
    kind: PrekeyKind,
    now: u64,
    force: bool,
) -> Result<(RotationSchedule, bool), ClientError> {
    let schedule = load_schedule(tx, kind, now)?;
    let full = force || (kind == PrekeyKind::Signed && cache_full(tx, schedule.current_id())?);
    let due = schedule.is_due(&policy(kind), now, full);
    Ok((schedule, due))
}

/// The stored schedule of `kind`. A store from before schedules existed holds
/// exactly one prekey of the kind: it becomes current, its period starting now.
fn load_schedule(tx: &Tx<'_>, kind: PrekeyKind, now: u64) -> Result<RotationSchedule, ClientError> {
    let corrupt = |what: String| ClientError::StoreCorrupt(what);
    if let Some(bytes) = tx.prekey_schedule(kind)? {
        return RotationSchedule::from_bytes(&bytes)
            .map_err(|e| corrupt(format!("prekey schedule: {e}")));
    }
    let current = tx
        .prekey_ids(kind)?
        .into_iter()
        .max()
        .ok_or_else(|| corrupt(format!("no {kind:?} prekey")))?;
    Ok(RotationSchedule::new(current, now))
}

/// Whether the signed prekey `id`'s replay cache asks for rotation.
fn cache_full(tx: &Tx<'_>, id: u32) -> Result<bool, ClientError> {
    let Some(bytes) = tx.prekey(PrekeyKind::Signed, id)? else {
        return Ok(false);
    };
    let prekey = SignedPreKey::from_bytes(&bytes)
        .map_err(|e| ClientError::StoreCorrupt(format!("signed prekey: {e}")))?;
    Ok(prekey.replay_cache().wants_rotation())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::store::{KeySource, Store};
    use tern_crypto::consts::REPLAY_CACHE_ROTATION_MARK;
    use tern_crypto::identity::DeviceIdentity;

    const NOW: u64 = 1_000_000;

    /// A store holding signed prekey 5 that remembers `handshakes` handshakes.
    fn store_with_signed_prekey(handshakes: usize) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("db"), KeySource::raw([3; 32])).unwrap();
        let mut rng = crate::random::rng();
        let identity = DeviceIdentity::generate(&mut rng);
        let mut prekey = SignedPreKey::generate(5, &identity, &mut rng);
        for i in 0..handshakes {
            let mut base_key = [0u8; 32];
            base_key[..8].copy_from_slice(&(i as u64).to_be_bytes());
            prekey.remember_handshake(None, base_key).unwrap();
        }
        store
            .transaction(|tx| tx.put_prekey(PrekeyKind::Signed, 5, &prekey.to_bytes()))
            .unwrap();
        (dir, store)
    }

    fn check_signed(store: &Store, now: u64, force: bool) -> (RotationSchedule, bool) {
        store
            .transaction(|tx| check(tx, PrekeyKind::Signed, now, force))
            .unwrap()
    }

    #[test]
    fn a_store_without_a_schedule_starts_one_at_its_prekey() {
        let (_dir, store) = store_with_signed_prekey(0);
        let (schedule, due) = check_signed(&store, NOW, false);
        assert_eq!(schedule, RotationSchedule::new(5, NOW));
        assert!(!due);
        let kem = store.transaction(|tx| check(tx, PrekeyKind::KemLastResort, NOW, false));
        assert!(matches!(kem, Err(ClientError::StoreCorrupt(_))));
    }

    #[test]
    fn a_stored_schedule_decides_by_age() {
        let (_dir, store) = store_with_signed_prekey(0);
        let schedule = RotationSchedule::new(5, NOW);
        store
            .transaction(|tx| tx.put_prekey_schedule(PrekeyKind::Signed, &schedule.to_bytes()))
            .unwrap();
        let period = RotationPolicy::SIGNED_PREKEY.rotate_after_secs;
        assert!(!check_signed(&store, NOW + period - 1, false).1);
        let (loaded, due) = check_signed(&store, NOW + period, false);
        assert_eq!(loaded, schedule);
        assert!(due);
    }

    #[test]
    fn a_filling_replay_cache_or_a_full_one_makes_the_signed_prekey_due() {
        let (_dir, store) = store_with_signed_prekey(REPLAY_CACHE_ROTATION_MARK - 1);
        assert!(!check_signed(&store, NOW, false).1);
        assert!(
            check_signed(&store, NOW, true).1,
            "a decrypt reported it full"
        );
        let (_dir, store) = store_with_signed_prekey(REPLAY_CACHE_ROTATION_MARK);
        assert!(check_signed(&store, NOW, false).1);
    }
}
