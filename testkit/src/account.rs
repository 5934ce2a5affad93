//! Accounts for tests: an account key, device keys, the signed device list,
//! and registration through tern-core's real relay connection.

use bytes::Bytes;
use ed25519_dalek::{Signer, SigningKey};
use prost::Message;
use tern_core::net::{DeviceSigner, Greeting, RelayAddress, RelayConnection};
use tern_protocol::UserId;
use tern_protocol::wire::{
    DeviceAddress, DeviceEntry, DeviceList, RegisterAccount, RegisterDevice, SignedDeviceList,
    request,
};

use crate::{guard, random};

/// An Ed25519 device key acting as tern-core's device signer.
pub struct TestKey(pub SigningKey);

impl DeviceSigner for TestKey {
    fn sign(&self, payload: &[u8]) -> [u8; 64] {
        sign_auth(&self.0, payload)
    }
}

/// `key`'s signature over a connection's authentication payload, as a
/// device authenticates (`AUTH_SIGNATURE_CONTEXT || payload`).
pub(crate) fn sign_auth(key: &SigningKey, payload: &[u8]) -> [u8; 64] {
    let message = [tern_protocol::limits::AUTH_SIGNATURE_CONTEXT, payload].concat();
    key.sign(&message).to_bytes()
}

/// An account: its name, id, account key, devices and device list version.
#[derive(Clone)]
pub struct Account {
    /// The user name it registers.
    pub name: String,
    /// Its user id.
    pub user_id: [u8; 16],
    /// The key that signs its device lists.
    pub account_key: SigningKey,
    /// Its devices: id and identity key, in device list order. The first
    /// one registers the account.
    pub devices: Vec<(u32, SigningKey)>,
    /// The version of the device list [`Self::signed_list`] signs.
    pub version: u64,
}

impl Account {
    /// A new account `name` with fresh keys and devices 1 to
    /// `device_count`, at device list version 1.
    pub fn new(name: &str, device_count: u32) -> Self {
        Self {
            name: name.to_owned(),
            user_id: random(),
            account_key: SigningKey::from_bytes(&random()),
            devices: (1..=device_count)
                .map(|id| (id, SigningKey::from_bytes(&random())))
                .collect(),
            version: 1,
        }
    }

    /// The user id as tern-core and tern-protocol type it.
    pub fn id(&self) -> UserId {
        UserId(self.user_id)
    }

    /// The first device, which registers the account.
    ///
    /// # Panics
    /// When the account has no device.
    #[allow(clippy::expect_used)]
    pub fn first_device(&self) -> &(u32, SigningKey) {
        self.devices.first().expect("an account has a device")
    }

    /// The identity key of device `id`.
    ///
    /// # Panics
    /// When the account has no such device.
    #[allow(clippy::expect_used)]
    pub fn device_key(&self, id: u32) -> &SigningKey {
        &self
            .devices
            .iter()
            .find(|(d, _)| *d == id)
            .expect("no such device")
            .1
    }

    /// The account's public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.account_key.verifying_key().to_bytes()
    }

    /// The current device list, signed with the account key.
    pub fn signed_list(&self) -> SignedDeviceList {
        let list = DeviceList {
            user_id: self.user_id.to_vec().into(),
            version: self.version,
            devices: self
                .devices
                .iter()
                .map(|(id, k)| DeviceEntry {
                    device_id: *id,
                    identity_key: k.verifying_key().to_bytes().to_vec().into(),
                })
                .collect(),
        };
        let bytes = list.encode_to_vec();
        let sig = self
            .account_key
            .sign(&tern_protocol::device_list_message(&bytes));
        SignedDeviceList {
            device_list: bytes.into(),
            signature: sig.to_bytes().to_vec().into(),
        }
    }

    /// The wire address of device `device`.
    pub fn address(&self, device: u32) -> DeviceAddress {
        DeviceAddress {
            user_id: self.user_id.to_vec().into(),
            device_id: device,
        }
    }

    /// The request registering the account with its first device, which
    /// signed the connection's authentication payload as
    /// `device_signature`; `announced` is the account key it claims (the
    /// real one, [`Self::public_key`], unless a test forges it).
    pub fn register_request(
        &self,
        announced: [u8; 32],
        invite: &str,
        device_signature: Bytes,
    ) -> request::Kind {
        let (device_id, _) = self.first_device();
        request::Kind::RegisterAccount(RegisterAccount {
            user_name: self.name.clone(),
            account_key: announced.to_vec().into(),
            device_list: Some(self.signed_list()),
            device_id: *device_id,
            invite_token: invite.into(),
            device_signature,
        })
    }

    /// The request registering device `device_id` of the published device
    /// list, which signed the connection's authentication payload as
    /// `device_signature`.
    pub fn register_device_request(
        &self,
        device_id: u32,
        device_signature: Bytes,
    ) -> request::Kind {
        request::Kind::RegisterDevice(RegisterDevice {
            user_id: self.user_id.to_vec().into(),
            device_id,
            device_signature,
        })
    }

    /// Registers the account and its first device through tern-core's
    /// relay connection; returns the authenticated connection.
    ///
    /// # Panics
    /// When connecting or registering fails or takes longer than
    /// [`crate::GUARD`].
    #[allow(clippy::unwrap_used)]
    pub async fn register(&self, relay: &RelayAddress) -> RelayConnection {
        let greeting = guard(Greeting::connect(relay)).await.unwrap();
        let (_, key) = self.first_device();
        let signature = greeting.sign(&TestKey(key.clone()));
        let request = self.register_request(self.public_key(), "", signature);
        let (_, conn) = guard(greeting.register(request)).await.unwrap();
        conn
    }

    /// Authenticates device `device_id` on a new tern-core relay
    /// connection.
    ///
    /// # Panics
    /// When connecting or authenticating fails or takes longer than
    /// [`crate::GUARD`].
    #[allow(clippy::unwrap_used)]
    pub async fn login(&self, relay: &RelayAddress, device_id: u32) -> RelayConnection {
        let greeting = guard(Greeting::connect(relay)).await.unwrap();
        let key = TestKey(self.device_key(device_id).clone());
        guard(greeting.authenticate(self.id(), device_id, &key))
            .await
            .unwrap()
    }
}
