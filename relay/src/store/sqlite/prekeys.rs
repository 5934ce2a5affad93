//! The prekey directory. Claims delete the one-time key they return inside
//! an IMMEDIATE transaction, so a key is handed out at most once however
//! many fetches run at the same time.

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use tern_protocol::UserId;

use super::accounts;
use crate::error::{RelayError, StoreError};
use crate::store::{
    ClaimedBundles, ClaimedKeys, DeviceAddr, PrekeyCounts, PrekeyUpload, StoredPrekey, bundle,
};

/// `kind` column: X25519 keys.
const EC: u8 = 0;
/// `kind` column: ML-KEM keys.
const KEM: u8 = 1;

pub(super) fn upload(
    conn: &mut Connection,
    d: DeviceAddr,
    up: &PrekeyUpload,
    max_stock: u32,
) -> Result<PrekeyCounts, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let uid = &d.user.0[..];
    let put_signed = |kind: u8, id: u32, key: &[u8], sig: &[u8]| {
        tx.execute(
            "INSERT OR REPLACE INTO signed_prekeys
                 (user_id, device_id, kind, id, public_key, signature)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![uid, d.device, kind, id, key, sig],
        )
    };
    if let Some(k) = &up.signed_prekey {
        put_signed(EC, k.id, &k.public_key, &k.signature)?;
    }
    if let Some(k) = &up.last_resort_kem {
        put_signed(KEM, k.id, &k.public_key, &k.signature)?;
    }
    for k in &up.one_time {
        put_one_time(&tx, d, EC, k.id, &k.public_key, &[])?;
    }
    for k in &up.one_time_kem {
        put_one_time(&tx, d, KEM, k.id, &k.public_key, &k.signature)?;
    }
    let counts = counts(&tx, d)?;
    if counts.one_time > max_stock || counts.one_time_kem > max_stock {
        return Err(RelayError::QuotaExceeded("too many one-time prekeys stored").into());
    }
    tx.commit()?;
    Ok(counts)
}

fn put_one_time(
    tx: &Transaction<'_>,
    d: DeviceAddr,
    kind: u8,
    id: u32,
    key: &[u8],
    sig: &[u8],
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO one_time_prekeys
             (user_id, device_id, kind, id, public_key, signature)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![&d.user.0[..], d.device, kind, id, key, sig])?;
    Ok(())
}

pub(super) fn counts(conn: &Connection, d: DeviceAddr) -> Result<PrekeyCounts, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT count(*) FROM one_time_prekeys WHERE user_id = ?1 AND device_id = ?2 AND kind = ?3",
    )?;
    let mut count = |kind: u8| -> Result<u32, StoreError> {
        let n: i64 = stmt.query_row(params![&d.user.0[..], d.device, kind], |r| r.get(0))?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    };
    Ok(PrekeyCounts {
        one_time: count(EC)?,
        one_time_kem: count(KEM)?,
    })
}

fn signed(
    tx: &Transaction<'_>,
    d: DeviceAddr,
    kind: u8,
) -> Result<Option<StoredPrekey>, StoreError> {
    Ok(tx
        .prepare_cached(
            "SELECT id, public_key, signature FROM signed_prekeys
             WHERE user_id = ?1 AND device_id = ?2 AND kind = ?3",
        )?
        .query_row(params![&d.user.0[..], d.device, kind], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?)
}

fn take_one_time(
    tx: &Transaction<'_>,
    d: DeviceAddr,
    kind: u8,
) -> Result<Option<StoredPrekey>, StoreError> {
    Ok(tx
        .prepare_cached(
            "DELETE FROM one_time_prekeys
             WHERE user_id = ?1 AND device_id = ?2 AND kind = ?3 AND id = (
                 SELECT id FROM one_time_prekeys
                 WHERE user_id = ?1 AND device_id = ?2 AND kind = ?3 ORDER BY id LIMIT 1)
             RETURNING id, public_key, signature",
        )?
        .query_row(params![&d.user.0[..], d.device, kind], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?)
}

pub(super) fn claim_bundles(
    conn: &mut Connection,
    user: &UserId,
    wanted: &[u32],
    one_time_allowed: &mut dyn FnMut(u32) -> bool,
) -> Result<ClaimedBundles, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let devices = accounts::devices(&tx, user)?;
    if devices.is_empty() {
        return Err(RelayError::NotFound("user").into());
    }
    let mut out = ClaimedBundles::default();
    for dev in devices
        .iter()
        .filter(|d| wanted.is_empty() || wanted.contains(&d.device_id))
    {
        let addr = DeviceAddr {
            user: *user,
            device: dev.device_id,
        };
        let (Some(spk), Some(last_resort)) = (signed(&tx, addr, EC)?, signed(&tx, addr, KEM)?)
        else {
            continue;
        };
        let (one_time, kem_one_time) = if one_time_allowed(dev.device_id) {
            (
                take_one_time(&tx, addr, EC)?,
                take_one_time(&tx, addr, KEM)?,
            )
        } else {
            (None, None)
        };
        out.bundles.push(bundle(
            dev,
            ClaimedKeys {
                signed: spk,
                last_resort_kem: last_resort,
                one_time,
                one_time_kem: kem_one_time,
            },
        ));
        out.remaining.push((dev.device_id, counts(&tx, addr)?));
    }
    tx.commit()?;
    Ok(out)
}
