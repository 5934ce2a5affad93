//! The prekey directory. A claim deletes the one-time key it returns, chosen
//! `FOR UPDATE SKIP LOCKED`: claims running on several nodes at once each
//! get a different key (or none), never the same one.

use deadpool_postgres::GenericClient;
use tern_protocol::UserId;

use super::{Conn, accounts, exec, get, get_u32, row};
use crate::error::{RelayError, StoreError};
use crate::store::{
    ClaimedBundles, ClaimedKeys, DeviceAddr, PrekeyCounts, PrekeyUpload, StoredPrekey, bundle,
};

/// `kind` column: X25519 keys.
const EC: i16 = 0;
/// `kind` column: ML-KEM keys.
const KEM: i16 = 1;

pub(super) async fn upload(
    c: &mut Conn,
    d: DeviceAddr,
    up: &PrekeyUpload,
    max_stock: u32,
) -> Result<PrekeyCounts, StoreError> {
    let tx = c.transaction().await?;
    let signed = [
        up.signed_prekey
            .as_ref()
            .map(|k| (EC, k.id, &k.public_key, &k.signature)),
        up.last_resort_kem
            .as_ref()
            .map(|k| (KEM, k.id, &k.public_key, &k.signature)),
    ];
    for (kind, id, key, sig) in signed.into_iter().flatten() {
        put(&tx, "signed_prekeys", d, kind, id, key, sig).await?;
    }
    for k in &up.one_time {
        put(&tx, "one_time_prekeys", d, EC, k.id, &k.public_key, &[]).await?;
    }
    for k in &up.one_time_kem {
        put(
            &tx,
            "one_time_prekeys",
            d,
            KEM,
            k.id,
            &k.public_key,
            &k.signature,
        )
        .await?;
    }
    let counts = counts(&tx, d).await?;
    if counts.one_time > max_stock || counts.one_time_kem > max_stock {
        return Err(RelayError::QuotaExceeded("too many one-time prekeys stored").into());
    }
    tx.commit().await?;
    Ok(counts)
}

/// Inserts or replaces a prekey row of `table`.
async fn put(
    tx: &impl GenericClient,
    table: &str,
    d: DeviceAddr,
    kind: i16,
    id: u32,
    key: &[u8],
    sig: &[u8],
) -> Result<(), StoreError> {
    let conflict = if table == "signed_prekeys" {
        "(user_id, device_id, kind)"
    } else {
        "(user_id, device_id, kind, id)"
    };
    let sql = format!(
        "INSERT INTO {table} (user_id, device_id, kind, id, public_key, signature)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT {conflict} DO UPDATE
         SET id = excluded.id, public_key = excluded.public_key, signature = excluded.signature"
    );
    exec(
        tx,
        &sql,
        &[
            &&d.user.0[..],
            &i64::from(d.device),
            &kind,
            &i64::from(id),
            &key,
            &sig,
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn counts(
    c: &impl GenericClient,
    d: DeviceAddr,
) -> Result<PrekeyCounts, StoreError> {
    let counted = row(
        c,
        "SELECT count(*) FILTER (WHERE kind = 0), count(*) FILTER (WHERE kind = 1)
         FROM one_time_prekeys WHERE user_id = $1 AND device_id = $2",
        &[&&d.user.0[..], &i64::from(d.device)],
    )
    .await?
    .ok_or(StoreError::Corrupt("count returned no row"))?;
    let count = |i| -> Result<u32, StoreError> {
        Ok(u32::try_from(get::<i64>(&counted, i)?).unwrap_or(u32::MAX))
    };
    Ok(PrekeyCounts {
        one_time: count(0)?,
        one_time_kem: count(1)?,
    })
}

fn key_row(r: Option<tokio_postgres::Row>) -> Result<Option<StoredPrekey>, StoreError> {
    r.map(|r| Ok((get_u32(&r, 0)?, get(&r, 1)?, get(&r, 2)?)))
        .transpose()
}

async fn signed(
    tx: &impl GenericClient,
    d: DeviceAddr,
    kind: i16,
) -> Result<Option<StoredPrekey>, StoreError> {
    key_row(
        row(
            tx,
            "SELECT id, public_key, signature FROM signed_prekeys
             WHERE user_id = $1 AND device_id = $2 AND kind = $3",
            &[&&d.user.0[..], &i64::from(d.device), &kind],
        )
        .await?,
    )
}

async fn take_one_time(
    tx: &impl GenericClient,
    d: DeviceAddr,
    kind: i16,
) -> Result<Option<StoredPrekey>, StoreError> {
    key_row(
        row(
            tx,
            "DELETE FROM one_time_prekeys
             WHERE user_id = $1 AND device_id = $2 AND kind = $3 AND id = (
                 SELECT id FROM one_time_prekeys
                 WHERE user_id = $1 AND device_id = $2 AND kind = $3
                 ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
             RETURNING id, public_key, signature",
            &[&&d.user.0[..], &i64::from(d.device), &kind],
        )
        .await?,
    )
}

pub(super) async fn claim_bundles(
    c: &mut Conn,
    user: &UserId,
    wanted: &[u32],
    one_time_allowed: &mut dyn FnMut(u32) -> bool,
) -> Result<ClaimedBundles, StoreError> {
    let tx = c.transaction().await?;
    let devices = accounts::devices(&tx, user).await?;
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
        let (Some(spk), Some(last_resort)) =
            (signed(&tx, addr, EC).await?, signed(&tx, addr, KEM).await?)
        else {
            continue;
        };
        let (one_time, kem_one_time) = if one_time_allowed(dev.device_id) {
            (
                take_one_time(&tx, addr, EC).await?,
                take_one_time(&tx, addr, KEM).await?,
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
        out.remaining
            .push((dev.device_id, counts(&tx, addr).await?));
    }
    tx.commit().await?;
    Ok(out)
}
