//! Accounts and devices: registration, authentication, device lists and
//! the user directory. No passwords: every proof is a signature.

use sha2::{Digest, Sha256};
use tern_protocol::UserId;
use tern_protocol::wire::{
    Authenticate, DeviceListChanged, Empty, Event, LookupUser, PublishDeviceList, RegisterAccount,
    RegisterDevice, Registered, RemoveDevice, SetPushEndpoint, UserInfo, event, response,
};

use crate::auth::{AuthBinding, verify_device_list};
use crate::config::Registration;
use crate::error::RelayError;
use crate::service::Relay;
use crate::store::{DeviceAddr, DeviceListUpdate, NewAccount};

/// SHA-256 of an invite token, as stored.
pub fn invite_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn key32(bytes: &[u8], what: &'static str) -> Result<[u8; 32], RelayError> {
    <[u8; 32]>::try_from(bytes).map_err(|_| RelayError::BadRequest(what))
}

impl Relay {
    /// Creates an account; on success the connection is authenticated as
    /// the registering device.
    pub(crate) async fn register_account(
        &self,
        r: RegisterAccount,
        binding: &AuthBinding,
    ) -> Result<(DeviceAddr, response::Kind), RelayError> {
        let account_key = key32(&r.account_key, "account key length")?;
        let signed = r
            .device_list
            .ok_or(RelayError::BadRequest("missing device list"))?;
        let list = verify_device_list(&account_key, &signed)?;
        if list.version != 1 {
            return Err(RelayError::BadRequest(
                "an initial device list has version 1",
            ));
        }
        let (_, device_key) = list
            .devices
            .iter()
            .find(|(id, _)| *id == r.device_id)
            .ok_or(RelayError::BadRequest(
                "the registering device is not in the list",
            ))?;
        binding.verify(device_key, &r.device_signature)?;
        let invite_hash = match self.config.registration {
            Registration::Open => None,
            Registration::Invite if r.invite_token.is_empty() => {
                return Err(RelayError::InviteRequired);
            }
            Registration::Invite => Some(invite_hash(&r.invite_token)),
        };
        let device = DeviceAddr {
            user: list.user_id,
            device: r.device_id,
        };
        let account = NewAccount {
            user_name: r.user_name,
            account_key,
            list,
            device_id: r.device_id,
            invite_hash,
        };
        self.blocking(move |s| s.create_account(&account)).await?;
        tracing::info!(user = %device.user, device = device.device, "account registered");
        let registered = Registered {
            user_id: device.user.to_wire(),
        };
        Ok((device, response::Kind::Registered(registered)))
    }

    /// Registers a device named in the account's current list.
    pub(crate) async fn register_device(
        &self,
        r: RegisterDevice,
        binding: &AuthBinding,
    ) -> Result<(DeviceAddr, response::Kind), RelayError> {
        let device = DeviceAddr {
            user: UserId::from_slice("RegisterDevice.user_id", &r.user_id)?,
            device: r.device_id,
        };
        let devices = self.blocking(move |s| s.devices(&device.user)).await?;
        let listed = devices
            .iter()
            .find(|d| d.device_id == device.device)
            .ok_or(RelayError::NotFound(
                "device is not in the account's device list",
            ))?;
        binding.verify(&listed.identity_key, &r.device_signature)?;
        self.blocking(move |s| s.mark_device_registered(device))
            .await?;
        Ok((device, response::Kind::Ok(Empty {})))
    }

    /// Checks a connection's proof of possession of a registered device key.
    pub(crate) async fn authenticate(
        &self,
        a: Authenticate,
        binding: &AuthBinding,
    ) -> Result<DeviceAddr, RelayError> {
        let device = DeviceAddr {
            user: UserId::from_slice("Authenticate.user_id", &a.user_id)?,
            device: a.device_id,
        };
        let devices = self.blocking(move |s| s.devices(&device.user)).await?;
        let known = devices
            .iter()
            .find(|d| d.device_id == device.device && d.registered)
            .ok_or(RelayError::Unauthenticated("unknown device"))?;
        binding.verify(&known.identity_key, &a.signature)?;
        Ok(device)
    }

    async fn store_device_list(
        &self,
        device: DeviceAddr,
        update: DeviceListUpdate,
    ) -> Result<response::Kind, RelayError> {
        if update.user_id != device.user {
            return Err(RelayError::Forbidden("device list of another account"));
        }
        let version = update.version;
        let user = device.user;
        let (contacts, revoked) = self
            .blocking(move |s| {
                let before = s.devices(&user)?;
                s.replace_device_list(&update)?;
                let revoked: Vec<u32> = before
                    .iter()
                    .filter(|d| !update.devices.contains(&(d.device_id, d.identity_key)))
                    .map(|d| d.device_id)
                    .collect();
                Ok((s.contacts_of(&user)?, revoked))
            })
            .await?;
        self.router.revoke(&user, &revoked);
        let event = Event {
            kind: Some(event::Kind::DeviceListChanged(DeviceListChanged {
                user_id: user.to_wire(),
                version,
            })),
        };
        for contact in &contacts {
            self.router.notify_user(contact, &event);
        }
        Ok(response::Kind::Ok(Empty {}))
    }

    async fn account_key(&self, user: UserId) -> Result<[u8; 32], RelayError> {
        self.blocking(move |s| s.account(&user))
            .await?
            .map(|a| a.account_key)
            .ok_or(RelayError::NotFound("account"))
    }

    /// Replaces the account's device list; it must keep the calling device.
    pub(crate) async fn publish_device_list(
        &self,
        device: DeviceAddr,
        r: PublishDeviceList,
    ) -> Result<response::Kind, RelayError> {
        let signed = r
            .device_list
            .ok_or(RelayError::BadRequest("missing device list"))?;
        let update = verify_device_list(&self.account_key(device.user).await?, &signed)?;
        if !update.devices.iter().any(|(id, _)| *id == device.device) {
            return Err(RelayError::BadRequest(
                "the list drops the publishing device; use RemoveDevice",
            ));
        }
        self.store_device_list(device, update).await
    }

    /// Removes a device with a new list that no longer names it.
    pub(crate) async fn remove_device(
        &self,
        device: DeviceAddr,
        r: RemoveDevice,
    ) -> Result<response::Kind, RelayError> {
        let signed = r
            .device_list
            .ok_or(RelayError::BadRequest("missing device list"))?;
        let update = verify_device_list(&self.account_key(device.user).await?, &signed)?;
        if update.devices.iter().any(|(id, _)| *id == r.device_id) {
            return Err(RelayError::BadRequest(
                "the new list still names the device",
            ));
        }
        self.store_device_list(device, update).await
    }

    /// Finds a user by name or id.
    pub(crate) async fn lookup_user(&self, r: LookupUser) -> Result<response::Kind, RelayError> {
        let account = if r.user_id.is_empty() {
            self.blocking(move |s| s.account_by_name(&r.user_name))
                .await?
        } else {
            let user = UserId::from_slice("LookupUser.user_id", &r.user_id)?;
            self.blocking(move |s| s.account(&user)).await?
        };
        let a = account.ok_or(RelayError::NotFound("user"))?;
        Ok(response::Kind::UserInfo(UserInfo {
            user_id: a.user_id.to_wire(),
            user_name: a.user_name,
            account_key: a.account_key.to_vec().into(),
            device_list: Some(a.device_list),
        }))
    }

    /// Sets or clears the device's push endpoint.
    pub(crate) async fn set_push_endpoint(
        &self,
        device: DeviceAddr,
        r: SetPushEndpoint,
    ) -> Result<response::Kind, RelayError> {
        self.blocking(move |s| {
            let url = (!r.url.is_empty()).then_some(r.url.as_str());
            s.set_push_endpoint(device, url)
        })
        .await?;
        Ok(response::Kind::Ok(Empty {}))
    }
}

/// A fresh random invite token (hex, 128 bits).
pub fn new_invite_token() -> Result<String, RelayError> {
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).map_err(|_| RelayError::Unavailable("no randomness"))?;
    Ok(hex::encode(raw))
}
