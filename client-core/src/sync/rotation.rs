//! Rotation of the signed prekey and the last-resort KEM prekey.
//!
//! Each kind has a [`RotationSchedule`] in the store (table `prekey_schedules`).
//! On every connection, then every [`ROTATION_CHECK`] and whenever a decrypt hit
//! a full replay cache, the engine runs [`maintain`]: a due prekey is replaced
//! (the new one stored, then uploaded, then made current), and replaced prekeys
//! whose grace period is over are deleted. Until then a replaced prekey still
//! answers initial messages from initiators that fetched the old bundle.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tern_protocol::wire::{UploadPrekeys, request};

use super::Core;
use crate::client::{ClientError, PrekeyRotation, PrekeyRotations, generate_rotating_prekey};
use crate::crypto::prekeys::SignedPreKey;
use crate::crypto::rotation::{RotationPolicy, RotationSchedule};
use crate::net::RelayConnection;
use crate::store::{PrekeyKind, Tx};

/// How often a connected client checks whether a prekey is due.
pub(crate) const ROTATION_CHECK: Duration = Duration::from_secs(60 * 60);

/// Seconds since the Unix epoch for rotation decisions: the system clock, or
/// a value the host controls (a test hook).
#[derive(Clone, Debug, Default)]
pub(crate) struct Clock(Option<Arc<AtomicU64>>);

impl Clock {
    /// The system clock, or `fixed` when given.
    pub fn new(fixed: Option<Arc<AtomicU64>>) -> Self {
        Self(fixed)
    }

    /// Now, in seconds since the Unix epoch.
    pub fn now_secs(&self) -> u64 {
        match &self.0 {
            Some(fixed) => fixed.load(Ordering::Relaxed),
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }
}

/// Rotates what is due and deletes what expired, for both rotating kinds.
/// `replay_cache_full` forces the signed prekey's rotation (a decrypt failed
/// with `ReplayCacheFull`). Runs in the receiving turn, so that no batch of
/// deliveries writes a signed prekey back while it is deleted.
pub(crate) async fn maintain(
    core: &Core,
    conn: &RelayConnection,
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

async fn maintain_kind(
    core: &Core,
    conn: &RelayConnection,
    kind: PrekeyKind,
    force: bool,
) -> Result<PrekeyRotation, ClientError> {
    let now = core.clock.now_secs();
    let policy = policy(kind);
    let (mut schedule, due) = core.store.transaction(|tx| {
        let schedule = load_schedule(tx, kind, now)?;
        let full = force || (kind == PrekeyKind::Signed && cache_full(tx, schedule.current_id())?);
        let due = schedule.is_due(&policy, now, full);
        Ok::<_, ClientError>((schedule, due))
    })?;
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
