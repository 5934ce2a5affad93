//! How a chat database reaches the accounts and devices of its chats'
//! members: in its own tables (one database holds everything, one SQL
//! join) or in the directory database when chats live in shards
//! ([`super::shards`]): members come from the shard, their devices from
//! the directory, in one more round trip.
//!
//! The directory is read, never locked, from inside a shard's
//! transaction, so a shard transaction never waits for the directory and
//! two databases cannot deadlock each other. A device-list change takes the
//! chats' row locks in every shard before it commits in the directory
//! ([`super::accounts`]): an append holding a chat's lock reads the device
//! list from before the change, one that takes the lock after it reads the
//! new list.

use std::collections::HashMap;

use deadpool_postgres::{GenericClient, Pool};
use tern_protocol::{ChatId, UserId};
use tokio_postgres::Row;

use super::members::ChatDevices;
use super::{chat_id, get, get_u32, row, rows, user_id};
use crate::error::StoreError;
use crate::store::DeviceAddr;

/// Where accounts and devices are, seen from a chat database.
#[derive(Clone, Copy)]
pub(super) enum Directory<'a> {
    /// In the chat database itself.
    Same,
    /// In the directory database of a sharded store.
    Apart(&'a Pool),
}

impl Directory<'_> {
    /// The members and member devices of `chats` (in the chat database
    /// `tx`): members without a device are left out, as sends are checked
    /// against devices.
    pub(super) async fn member_devices(
        self,
        tx: &impl GenericClient,
        chats: &[&[u8]],
    ) -> Result<HashMap<ChatId, ChatDevices>, StoreError> {
        let found = rows(tx, self.members_sql(), &[&chats]).await?;
        self.member_devices_from(&found).await
    }

    /// The query of the members of chats `$1`, in the chat database: with
    /// their devices when they are in the same database.
    pub(super) fn members_sql(self) -> &'static str {
        match self {
            Self::Same => {
                "SELECT m.chat_id, d.user_id, d.device_id
                 FROM chat_members m JOIN devices d ON d.user_id = m.user_id
                 WHERE m.chat_id = ANY($1)"
            }
            Self::Apart(_) => "SELECT chat_id, user_id FROM chat_members WHERE chat_id = ANY($1)",
        }
    }

    /// The member devices per chat from the rows of [`Self::members_sql`]
    /// (reading the devices from the directory when it is apart).
    pub(super) async fn member_devices_from(
        self,
        members: &[Row],
    ) -> Result<HashMap<ChatId, ChatDevices>, StoreError> {
        let found = match self {
            Self::Same => members
                .iter()
                .map(|r| Ok((chat_id(get(r, 0)?)?, device(r, 1)?)))
                .collect::<Result<Vec<_>, StoreError>>()?,
            Self::Apart(pool) => {
                let mut users: Vec<&[u8]> = members
                    .iter()
                    .map(|r| get(r, 1))
                    .collect::<Result<_, _>>()?;
                users.sort_unstable();
                users.dedup();
                let mut by_user: HashMap<UserId, Vec<DeviceAddr>> = HashMap::new();
                for d in devices_of(pool, &users).await? {
                    by_user.entry(d.user).or_default().push(d);
                }
                let mut found = Vec::new();
                for r in members {
                    let (chat, user) = (chat_id(get(r, 0)?)?, user_id(get(r, 1)?)?);
                    let theirs = by_user.get(&user).into_iter().flatten();
                    found.extend(theirs.map(|d| (chat, *d)));
                }
                found
            }
        };
        let mut out: HashMap<ChatId, ChatDevices> = HashMap::new();
        for (chat, device) in found {
            let chat = out.entry(chat).or_insert_with(ChatDevices::none);
            chat.devices.push(device);
            chat.members.push(device.user);
        }
        for chat in out.values_mut() {
            chat.members.sort_unstable();
            chat.members.dedup();
        }
        Ok(out)
    }

    /// Whether account `user` exists (`tx`: the chat database).
    pub(super) async fn has_account(
        self,
        tx: &impl GenericClient,
        user: &UserId,
    ) -> Result<bool, StoreError> {
        let sql = "SELECT 1 FROM accounts WHERE user_id = $1";
        let found = match self {
            Self::Same => row(tx, sql, &[&&user.0[..]]).await?,
            Self::Apart(pool) => row(&pool.get().await?, sql, &[&&user.0[..]]).await?,
        };
        Ok(found.is_some())
    }
}

/// The devices of `users`, read from the directory.
pub(super) async fn devices_of(
    directory: &Pool,
    users: &[&[u8]],
) -> Result<Vec<DeviceAddr>, StoreError> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let c = directory.get().await?;
    let sql = "SELECT user_id, device_id FROM devices WHERE user_id = ANY($1)";
    rows(&c, sql, &[&users])
        .await?
        .iter()
        .map(|r| device(r, 0))
        .collect()
}

/// The device in columns `at` (user) and `at + 1` (device id) of `r`.
fn device(r: &Row, at: usize) -> Result<DeviceAddr, StoreError> {
    Ok(DeviceAddr {
        user: user_id(get(r, at)?)?,
        device: get_u32(r, at + 1)?,
    })
}
