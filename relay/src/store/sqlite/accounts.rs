//! Accounts, device lists, invites and push endpoints.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tern_protocol::UserId;
use tern_protocol::wire::SignedDeviceList;

use super::{key32, user_id};
use crate::error::{RelayError, StoreError};
use crate::store::{AccountRecord, DeviceAddr, DeviceListUpdate, DeviceRecord, NewAccount};

pub(super) fn create_account(conn: &mut Connection, a: &NewAccount) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if let Some(hash) = &a.invite_hash {
        let used = tx.execute("DELETE FROM invites WHERE token_hash = ?1", [&hash[..]])?;
        if used == 0 {
            return Err(RelayError::InviteRequired.into());
        }
    }
    let uid = &a.list.user_id.0[..];
    let taken: Option<String> = tx
        .query_row(
            "SELECT user_name FROM accounts WHERE user_id = ?1 OR user_name = ?2",
            params![uid, a.user_name],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(name) = taken {
        let what = if name == a.user_name {
            "user name taken"
        } else {
            "account id taken"
        };
        return Err(RelayError::Conflict(what).into());
    }
    tx.execute(
        "INSERT INTO accounts (user_id, user_name, account_key, device_list, device_list_sig,
                               device_list_version)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            uid,
            a.user_name,
            &a.account_key[..],
            &a.list.signed.device_list[..],
            &a.list.signed.signature[..],
            a.list.version as i64
        ],
    )?;
    for (device_id, key) in &a.list.devices {
        tx.execute(
            "INSERT INTO devices (user_id, device_id, identity_key, registered)
             VALUES (?1, ?2, ?3, ?4)",
            params![uid, device_id, &key[..], *device_id == a.device_id],
        )?;
    }
    tx.commit()?;
    Ok(())
}

pub(super) fn account_by(
    conn: &Connection,
    column: &str,
    value: impl rusqlite::ToSql,
) -> Result<Option<AccountRecord>, StoreError> {
    let sql = match column {
        "user_id" => {
            "SELECT user_id, user_name, account_key, device_list, device_list_sig,
                    device_list_version FROM accounts WHERE user_id = ?1"
        }
        _ => {
            "SELECT user_id, user_name, account_key, device_list, device_list_sig,
                    device_list_version FROM accounts WHERE user_name = ?1"
        }
    };
    let row = conn
        .prepare_cached(sql)?
        .query_row([value], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Vec<u8>>(2)?,
                r.get::<_, Vec<u8>>(3)?,
                r.get::<_, Vec<u8>>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })
        .optional()?;
    row.map(|(uid, name, key, list, sig, version)| {
        Ok(AccountRecord {
            user_id: user_id(&uid)?,
            user_name: name,
            account_key: key32(&key)?,
            device_list: SignedDeviceList {
                device_list: list.into(),
                signature: sig.into(),
            },
            device_list_version: version as u64,
        })
    })
    .transpose()
}

pub(super) fn devices(conn: &Connection, user: &UserId) -> Result<Vec<DeviceRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT device_id, identity_key, registered FROM devices WHERE user_id = ?1
         ORDER BY device_id",
    )?;
    let rows = stmt.query_map([&user.0[..]], |r| {
        Ok((
            r.get::<_, u32>(0)?,
            r.get::<_, Vec<u8>>(1)?,
            r.get::<_, bool>(2)?,
        ))
    })?;
    rows.map(|row| {
        let (device_id, key, registered) = row?;
        Ok(DeviceRecord {
            device_id,
            identity_key: key32(&key)?,
            registered,
        })
    })
    .collect()
}

pub(super) fn replace_device_list(
    conn: &mut Connection,
    u: &DeviceListUpdate,
) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let uid = &u.user_id.0[..];
    let current: Option<i64> = tx
        .query_row(
            "SELECT device_list_version FROM accounts WHERE user_id = ?1",
            [uid],
            |r| r.get(0),
        )
        .optional()?;
    let current = current.ok_or(RelayError::NotFound("account"))?;
    if u.version <= current as u64 {
        return Err(RelayError::Conflict("device list version must increase").into());
    }
    tx.execute(
        "UPDATE accounts SET device_list = ?2, device_list_sig = ?3, device_list_version = ?4
         WHERE user_id = ?1",
        params![
            uid,
            &u.signed.device_list[..],
            &u.signed.signature[..],
            u.version as i64
        ],
    )?;
    let existing = devices(&tx, &u.user_id)?;
    for old in &existing {
        let kept = u
            .devices
            .iter()
            .any(|(id, key)| *id == old.device_id && *key == old.identity_key);
        if !kept {
            for table in ["devices", "signed_prekeys", "one_time_prekeys", "cursors"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE user_id = ?1 AND device_id = ?2"),
                    params![uid, old.device_id],
                )?;
            }
        }
    }
    for (device_id, key) in &u.devices {
        let added = tx.execute(
            "INSERT OR IGNORE INTO devices (user_id, device_id, identity_key, registered)
             VALUES (?1, ?2, ?3, 0)",
            params![uid, device_id, &key[..]],
        )?;
        if added == 1 {
            start_cursors_at_link_point(&tx, uid, *device_id)?;
        }
    }
    tx.commit()?;
    Ok(())
}

pub(super) fn mark_registered(conn: &Connection, d: DeviceAddr) -> Result<(), StoreError> {
    let n = conn.execute(
        "UPDATE devices SET registered = 1 WHERE user_id = ?1 AND device_id = ?2",
        params![&d.user.0[..], d.device],
    )?;
    if n == 0 {
        return Err(RelayError::NotFound("device").into());
    }
    Ok(())
}

pub(super) fn create_invite(
    conn: &Connection,
    hash: &[u8; 32],
    now: u64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO invites (token_hash, created_ms) VALUES (?1, ?2)",
        params![&hash[..], now as i64],
    )?;
    Ok(())
}

pub(super) fn set_push_endpoint(
    conn: &Connection,
    d: DeviceAddr,
    url: Option<&str>,
) -> Result<(), StoreError> {
    let n = conn.execute(
        "UPDATE devices SET push_url = ?3 WHERE user_id = ?1 AND device_id = ?2",
        params![&d.user.0[..], d.device, url],
    )?;
    if n == 0 {
        return Err(RelayError::NotFound("device").into());
    }
    Ok(())
}

pub(super) fn push_targets(
    conn: &Connection,
    user: &UserId,
) -> Result<Vec<(DeviceAddr, String)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT device_id, push_url FROM devices WHERE user_id = ?1 AND push_url IS NOT NULL",
    )?;
    let rows = stmt.query_map([&user.0[..]], |r| {
        Ok((r.get::<_, u32>(0)?, r.get::<_, String>(1)?))
    })?;
    rows.map(|row| {
        let (device, url) = row?;
        Ok((
            DeviceAddr {
                user: *user,
                device,
            },
            url,
        ))
    })
    .collect()
}

/// A device added to the list starts every chat of its account at the chat's
/// last seq (the link point): what came before reaches it through the link
/// transfer, and it was never encrypted for it, so fetching it would only
/// produce undecryptable entries (and session resets). Entries committed
/// after this transaction are delivered to it as to every device.
fn start_cursors_at_link_point(
    tx: &rusqlite::Transaction<'_>,
    uid: &[u8],
    device_id: u32,
) -> Result<(), StoreError> {
    tx.execute(
        concat!(
            "INSERT INTO cursors (user_id, device_id, chat_id, seq)
             SELECT ?1, ?2, c.chat_id, ",
            last_seq_of_c!(),
            " FROM chats c
             JOIN chat_members m ON m.chat_id = c.chat_id AND m.user_id = ?1
             ON CONFLICT (user_id, device_id, chat_id) DO UPDATE SET seq = max(seq, excluded.seq)"
        ),
        params![uid, device_id],
    )?;
    Ok(())
}
