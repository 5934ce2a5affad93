//! The account's devices: adding a linked device to the signed device list,
//! listing and removing devices.

use tern_protocol::wire::{PublishDeviceList, RemoveDevice, SignedDeviceList, request};

use super::Client;
use crate::model::ClientError;
use crate::sync::RelayLink;
use crate::sync::account::sign_device_list;
use crate::sync::directory::DeviceSet;

/// Most devices per account (the protocol's limit).
const MAX_DEVICES: usize = tern_protocol::limits::MAX_DEVICES_PER_USER;

/// One device of the own account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Device id within the account.
    pub device_id: u32,
    /// Its Ed25519 identity public key.
    pub identity_key: [u8; 32],
    /// Whether it is this device.
    pub this_device: bool,
}

impl Client {
    /// Adds the device with `identity` to the account-signed device list
    /// (next free device id) and publishes the list. Returns the device id.
    pub(super) async fn add_own_device(&self, identity: [u8; 32]) -> Result<u32, ClientError> {
        let conn = self.core.connection()?;
        let set = self.own_devices(conn.as_ref()).await?;
        if set.devices.iter().any(|(_, key)| *key == identity) {
            return Err(ClientError::InvalidArgument("device already linked"));
        }
        if set.devices.len() >= MAX_DEVICES {
            return Err(ClientError::Refused(
                "the account has the maximum of devices".into(),
            ));
        }
        let device_id = set.devices.iter().map(|(id, _)| *id).max().unwrap_or(0) + 1;
        let mut devices = set.devices.clone();
        devices.push((device_id, identity));
        let signed = self.sign_device_list(set.version + 1, &devices);
        conn.request(request::Kind::PublishDeviceList(PublishDeviceList {
            device_list: Some(signed.clone()),
        }))
        .await?;
        self.remember_own_list(&set, &signed)?;
        Ok(device_id)
    }

    /// The account's devices, from the relay's current signed list.
    pub async fn devices(&self) -> Result<Vec<DeviceInfo>, ClientError> {
        let conn = self.core.connection()?;
        let set = self.own_devices(conn.as_ref()).await?;
        Ok(set
            .devices
            .iter()
            .map(|(device_id, identity_key)| DeviceInfo {
                device_id: *device_id,
                identity_key: *identity_key,
                this_device: *device_id == self.core.account.device_id,
            })
            .collect())
    }

    /// Removes another device of the account: publishes a list without it;
    /// the relay closes its connections. Needs the relay.
    pub async fn remove_device(&self, device_id: u32) -> Result<(), ClientError> {
        if device_id == self.core.account.device_id {
            return Err(ClientError::InvalidArgument("cannot remove this device"));
        }
        let conn = self.core.connection()?;
        let set = self.own_devices(conn.as_ref()).await?;
        if set.identity(device_id).is_none() {
            return Err(ClientError::InvalidArgument("no such device"));
        }
        let devices: Vec<_> = set
            .devices
            .iter()
            .copied()
            .filter(|(id, _)| *id != device_id)
            .collect();
        let signed = self.sign_device_list(set.version + 1, &devices);
        conn.request(request::Kind::RemoveDevice(RemoveDevice {
            device_id,
            device_list: Some(signed.clone()),
        }))
        .await?;
        self.remember_own_list(&set, &signed)
    }

    async fn own_devices(&self, conn: &dyn RelayLink) -> Result<DeviceSet, ClientError> {
        let me = self.core.account.user_id;
        self.core.directory.invalidate(&me);
        self.core.device_set(conn, &me).await
    }

    fn sign_device_list(&self, version: u64, devices: &[(u32, [u8; 32])]) -> SignedDeviceList {
        sign_device_list(&self.account, &self.core.account.user_id, version, devices)
    }

    fn remember_own_list(
        &self,
        previous: &DeviceSet,
        signed: &SignedDeviceList,
    ) -> Result<(), ClientError> {
        let set = DeviceSet::verify_list(
            previous.user_id,
            previous.user_name.clone(),
            &previous.account_key,
            signed,
        )?;
        self.core.directory.insert(set)
    }
}
