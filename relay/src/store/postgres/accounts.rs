//! Accounts, device lists, invites and push endpoints.

use deadpool_postgres::GenericClient;
use tern_protocol::UserId;
use tern_protocol::wire::SignedDeviceList;
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;

use super::{Conn, big, exec, get, get_u32, get_u64, key32, row, rows, user_id};
use crate::error::{RelayError, StoreError};
use crate::store::{AccountRecord, DeviceAddr, DeviceListUpdate, DeviceRecord, NewAccount};

pub(super) async fn create_account(c: &mut Conn, a: &NewAccount) -> Result<(), StoreError> {
    let tx = c.transaction().await?;
    if let Some(hash) = &a.invite_hash {
        let used = exec(
            &tx,
            "DELETE FROM invites WHERE token_hash = $1",
            &[&&hash[..]],
        )
        .await?;
        if used == 0 {
            return Err(RelayError::InviteRequired.into());
        }
    }
    let uid = &a.list.user_id.0[..];
    let inserted = tx
        .execute(
            "INSERT INTO accounts (user_id, user_name, account_key, device_list,
                                   device_list_sig, device_list_version)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &uid,
                &a.user_name,
                &&a.account_key[..],
                &&a.list.signed.device_list[..],
                &&a.list.signed.signature[..],
                &big(a.list.version),
            ],
        )
        .await;
    match inserted {
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            let name_taken = e
                .as_db_error()
                .and_then(|d| d.constraint())
                .is_some_and(|name| name.contains("user_name"));
            let what = if name_taken {
                "user name taken"
            } else {
                "account id taken"
            };
            return Err(RelayError::Conflict(what).into());
        }
        other => other?,
    };
    for (device_id, key) in &a.list.devices {
        exec(
            &tx,
            "INSERT INTO devices (user_id, device_id, identity_key, registered)
             VALUES ($1, $2, $3, $4)",
            &[
                &uid,
                &i64::from(*device_id),
                &&key[..],
                &(*device_id == a.device_id),
            ],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

const ACCOUNT_COLUMNS: &str = "SELECT user_id, user_name, account_key, device_list, \
                               device_list_sig, device_list_version FROM accounts";

fn account_record(r: &Row) -> Result<AccountRecord, StoreError> {
    Ok(AccountRecord {
        user_id: user_id(get(r, 0)?)?,
        user_name: get(r, 1)?,
        account_key: key32(get(r, 2)?)?,
        device_list: SignedDeviceList {
            device_list: get::<Vec<u8>>(r, 3)?.into(),
            signature: get::<Vec<u8>>(r, 4)?.into(),
        },
        device_list_version: get_u64(r, 5)?,
    })
}

pub(super) async fn account_by_id(
    c: &impl GenericClient,
    user: &UserId,
) -> Result<Option<AccountRecord>, StoreError> {
    let sql = format!("{ACCOUNT_COLUMNS} WHERE user_id = $1");
    row(c, &sql, &[&&user.0[..]])
        .await?
        .as_ref()
        .map(account_record)
        .transpose()
}

pub(super) async fn account_by_name(
    c: &impl GenericClient,
    name: &str,
) -> Result<Option<AccountRecord>, StoreError> {
    let sql = format!("{ACCOUNT_COLUMNS} WHERE user_name = $1");
    row(c, &sql, &[&name])
        .await?
        .as_ref()
        .map(account_record)
        .transpose()
}

pub(super) async fn devices(
    c: &impl GenericClient,
    user: &UserId,
) -> Result<Vec<DeviceRecord>, StoreError> {
    rows(
        c,
        "SELECT device_id, identity_key, registered FROM devices WHERE user_id = $1
         ORDER BY device_id",
        &[&&user.0[..]],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(DeviceRecord {
            device_id: get_u32(r, 0)?,
            identity_key: key32(get(r, 1)?)?,
            registered: get(r, 2)?,
        })
    })
    .collect()
}

/// Replaces an account's device list: in the directory (`directory`), and
/// the cursors of its devices in every chat database (`shards`; empty when
/// the directory holds the chats).
///
/// The account's chats are locked first, in every chat database (shards
/// in order, chats in id order, as appends lock them), then the list
/// commits in the directory, then the cursors follow in each shard: an
/// append running meanwhile either committed before the link point or,
/// waiting for the lock, is checked against the new list. Should a shard
/// fail after the directory committed, that shard keeps the removed
/// devices' cursors (ignored: they name no device) and has no link point
/// for added ones, which then read the chat from their account's join
/// point, without ciphertexts for the entries from before they were added
/// (docs/cluster.md §8).
pub(super) async fn replace_device_list(
    directory: &mut Conn,
    shards: &mut [Conn],
    u: &DeviceListUpdate,
) -> Result<(), StoreError> {
    let uid = &u.user_id.0[..];
    let mut shard_txs = Vec::with_capacity(shards.len());
    let mut locked = Vec::with_capacity(shards.len());
    for c in shards.iter_mut() {
        let tx = c.transaction().await?;
        locked.push(lock_member_chats(&tx, uid).await?);
        shard_txs.push(tx);
    }
    let tx = directory.transaction().await?;
    let own_chats = match shard_txs.is_empty() {
        true => Some(lock_member_chats(&tx, uid).await?),
        false => None,
    };
    let changes = apply_device_list(&tx, u).await?;
    if let Some(chats) = &own_chats {
        relink(&tx, uid, &changes, chats).await?;
    }
    tx.commit().await?;
    for (tx, chats) in shard_txs.iter().zip(&locked) {
        relink(tx, uid, &changes, chats).await?;
    }
    for tx in shard_txs {
        tx.commit().await?;
    }
    Ok(())
}

/// The devices a new list removed and added (a device whose key changed is
/// both).
struct DeviceChanges {
    removed: Vec<i64>,
    added: Vec<i64>,
}

/// Stores the new list and its devices in the directory (`tx`); removed
/// devices lose their prekeys. The version must increase.
async fn apply_device_list(
    tx: &impl GenericClient,
    u: &DeviceListUpdate,
) -> Result<DeviceChanges, StoreError> {
    let uid = &u.user_id.0[..];
    let current = row(
        tx,
        "SELECT device_list_version FROM accounts WHERE user_id = $1 FOR UPDATE",
        &[&uid],
    )
    .await?
    .ok_or(RelayError::NotFound("account"))?;
    if u.version <= get_u64(&current, 0)? {
        return Err(RelayError::Conflict("device list version must increase").into());
    }
    exec(
        tx,
        "UPDATE accounts SET device_list = $2, device_list_sig = $3, device_list_version = $4
         WHERE user_id = $1",
        &[
            &uid,
            &&u.signed.device_list[..],
            &&u.signed.signature[..],
            &big(u.version),
        ],
    )
    .await?;
    let mut changes = DeviceChanges {
        removed: Vec::new(),
        added: Vec::new(),
    };
    for old in devices(tx, &u.user_id).await? {
        let kept = u
            .devices
            .iter()
            .any(|(id, key)| *id == old.device_id && *key == old.identity_key);
        if !kept {
            for table in ["devices", "signed_prekeys", "one_time_prekeys"] {
                let sql = format!("DELETE FROM {table} WHERE user_id = $1 AND device_id = $2");
                exec(tx, &sql, &[&uid, &i64::from(old.device_id)]).await?;
            }
            changes.removed.push(i64::from(old.device_id));
        }
    }
    for (device_id, key) in &u.devices {
        let added = exec(
            tx,
            "INSERT INTO devices (user_id, device_id, identity_key, registered)
             VALUES ($1, $2, $3, false) ON CONFLICT DO NOTHING",
            &[&uid, &i64::from(*device_id), &&key[..]],
        )
        .await?;
        if added == 1 {
            changes.added.push(i64::from(*device_id));
        }
    }
    Ok(changes)
}

/// The chats of account `uid` in a chat database, locked in id order, with
/// their last seqs.
async fn lock_member_chats(
    tx: &impl GenericClient,
    uid: &[u8],
) -> Result<Vec<(Vec<u8>, i64)>, StoreError> {
    rows(
        tx,
        "SELECT c.chat_id, c.last_seq FROM chats c
         JOIN chat_members m ON m.chat_id = c.chat_id AND m.user_id = $1
         ORDER BY c.chat_id FOR UPDATE OF c",
        &[&uid],
    )
    .await?
    .iter()
    .map(|r| Ok((get(r, 0)?, get(r, 1)?)))
    .collect()
}

/// In a chat database: removed devices lose their cursors, and each added
/// device starts every chat of its account at the chat's last seq (the
/// link point), as in the SQLite backend.
async fn relink(
    tx: &impl GenericClient,
    uid: &[u8],
    changes: &DeviceChanges,
    chats: &[(Vec<u8>, i64)],
) -> Result<(), StoreError> {
    if !changes.removed.is_empty() {
        exec(
            tx,
            "DELETE FROM cursors WHERE user_id = $1 AND device_id = ANY($2)",
            &[&uid, &changes.removed],
        )
        .await?;
    }
    for device_id in &changes.added {
        for (chat, last_seq) in chats {
            exec(
                tx,
                "INSERT INTO cursors (user_id, device_id, chat_id, seq) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (user_id, device_id, chat_id)
                 DO UPDATE SET seq = greatest(cursors.seq, excluded.seq)",
                &[&uid, device_id, chat, last_seq],
            )
            .await?;
        }
    }
    Ok(())
}

pub(super) async fn mark_registered(
    c: &impl GenericClient,
    d: DeviceAddr,
) -> Result<(), StoreError> {
    let n = exec(
        c,
        "UPDATE devices SET registered = true WHERE user_id = $1 AND device_id = $2",
        &[&&d.user.0[..], &i64::from(d.device)],
    )
    .await?;
    if n == 0 {
        return Err(RelayError::NotFound("device").into());
    }
    Ok(())
}

pub(super) async fn create_invite(
    c: &impl GenericClient,
    hash: &[u8; 32],
    now: u64,
) -> Result<(), StoreError> {
    exec(
        c,
        "INSERT INTO invites (token_hash, created_ms) VALUES ($1, $2)",
        &[&&hash[..], &big(now)],
    )
    .await?;
    Ok(())
}

pub(super) async fn set_push_endpoint(
    c: &impl GenericClient,
    d: DeviceAddr,
    url: Option<&str>,
) -> Result<(), StoreError> {
    let n = exec(
        c,
        "UPDATE devices SET push_url = $3 WHERE user_id = $1 AND device_id = $2",
        &[&&d.user.0[..], &i64::from(d.device), &url],
    )
    .await?;
    if n == 0 {
        return Err(RelayError::NotFound("device").into());
    }
    Ok(())
}

pub(super) async fn push_targets(
    c: &impl GenericClient,
    user: &UserId,
) -> Result<Vec<(DeviceAddr, String)>, StoreError> {
    rows(
        c,
        "SELECT device_id, push_url FROM devices WHERE user_id = $1 AND push_url IS NOT NULL",
        &[&&user.0[..]],
    )
    .await?
    .iter()
    .map(|r| {
        Ok((
            DeviceAddr {
                user: *user,
                device: get_u32(r, 0)?,
            },
            get(r, 1)?,
        ))
    })
    .collect()
}
