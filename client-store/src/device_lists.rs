//! The last accepted account-signed device list per user: the floor below
//! which a list offered later (after a restart too) is a rollback.
//!
//! The row keeps the exact signed bytes, so the list (version, device ids,
//! identity keys) is verified again whenever it is read back.

use rusqlite::{OptionalExtension, params};

use super::sql::{check_len, get_u64, now_ms, to_i64};
use super::{StoreError, Tx, UserId};

/// Largest encoded device list accepted (the protocol's bound).
pub const MAX_DEVICE_LIST_LEN: usize = tern_protocol::limits::MAX_DEVICE_LIST_LEN;
/// Account keys and signatures are at most this long.
const MAX_KEY_FIELD_LEN: usize = 128;

/// An account-signed device list as accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredDeviceList {
    /// The account.
    pub user_id: UserId,
    /// The user name the directory gave with it.
    pub user_name: String,
    /// The account identity key that signed it.
    pub account_key: Vec<u8>,
    /// The list's version (strictly increasing per account key).
    pub version: u64,
    /// The encoded `DeviceList` exactly as signed.
    pub device_list: Vec<u8>,
    /// The account key's signature over it.
    pub signature: Vec<u8>,
}

impl Tx<'_> {
    /// The device list last accepted for `user_id`.
    pub fn device_list(&self, user_id: &UserId) -> Result<Option<StoredDeviceList>, StoreError> {
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT user_id, user_name, account_key, version, device_list, signature
                 FROM device_lists WHERE user_id = ?1",
            )?
            .query_row(params![user_id], device_list_row)
            .optional()?)
    }

    /// Records `list` as the accepted list of its user, replacing the
    /// previous one. The caller checks the version against the stored one.
    pub fn put_device_list(&self, list: &StoredDeviceList) -> Result<(), StoreError> {
        check_len("device list", list.device_list.len(), MAX_DEVICE_LIST_LEN)?;
        check_len("account key", list.account_key.len(), MAX_KEY_FIELD_LEN)?;
        check_len(
            "device list signature",
            list.signature.len(),
            MAX_KEY_FIELD_LEN,
        )?;
        check_len(
            "user name",
            list.user_name.len(),
            super::contacts::MAX_NAME_LEN,
        )?;
        self.conn()
            .prepare_cached(
                "INSERT INTO device_lists
                     (user_id, user_name, account_key, version, device_list, signature, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (user_id) DO UPDATE SET
                     user_name = excluded.user_name, account_key = excluded.account_key,
                     version = excluded.version, device_list = excluded.device_list,
                     signature = excluded.signature, updated_at_ms = excluded.updated_at_ms",
            )?
            .execute(params![
                list.user_id,
                list.user_name,
                list.account_key,
                to_i64(list.version, "device list version")?,
                list.device_list,
                list.signature,
                now_ms(),
            ])?;
        Ok(())
    }
}

fn device_list_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredDeviceList> {
    Ok(StoredDeviceList {
        user_id: row.get(0)?,
        user_name: row.get(1)?,
        account_key: row.get(2)?,
        version: get_u64(row, 3)?,
        device_list: row.get(4)?,
        signature: row.get(5)?,
    })
}
