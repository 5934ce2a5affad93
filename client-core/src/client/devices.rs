//! The account's devices: linking a new device (both sides), listing and
//! removing devices.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use tern_protocol::wire::{
    DeviceEntry, DeviceList, ProvisioningOpen, ProvisioningSend, PublishDeviceList, RegisterDevice,
    RemoveDevice, SignedDeviceList, event, request, response,
};

use super::account::{DeviceAuth, LocalAccount, generate_prekeys, random_bytes, rng};
use super::directory::DeviceSet;
use super::error::ClientError;
use super::linking::{LinkCode, LinkSecret, ProvisionPayload, seal};
use super::types::{AccountInfo, KeySource};
use super::{Client, ClientConfig, open_store};
use crate::crypto::identity::{AccountIdentity, DeviceIdentity};
use crate::net::{EventStream, Greeting, RelayConnection};
use crate::store::{Chat, ChatKind, Store};
use crate::sync::content::Payload;
use crate::sync::device_sync::{self, self_chat_id};
use crate::sync::{now_ms, queue_payload};

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

/// A new device waiting to be linked: show [`Self::link_code`] (or the QR
/// payload) to an existing device of the account, then call
/// [`Self::finish`].
pub struct PendingLink {
    config: ClientConfig,
    store: Arc<Store>,
    conn: RelayConnection,
    events: EventStream,
    secret: LinkSecret,
    device: DeviceIdentity,
}

impl PendingLink {
    /// Prepares this device (a new, empty store) for linking: opens a
    /// provisioning mailbox on the relay. Needs the relay.
    pub async fn start(config: ClientConfig, key: KeySource) -> Result<Self, ClientError> {
        let store = open_store(&config, key).await?;
        if store
            .transaction(LocalAccount::load)?
            .is_some_and(|a| a.registered)
        {
            return Err(ClientError::AccountState(
                "this store already holds an account",
            ));
        }
        let device = DeviceIdentity::generate(&mut rng());
        let conn = Greeting::connect(&config.relay).await?.unauthenticated();
        let answer = conn
            .request(request::Kind::ProvisioningOpen(ProvisioningOpen {}))
            .await?;
        let response::Kind::ProvisioningAddress(address) = answer else {
            return Err(ClientError::Refused(
                "unexpected answer to ProvisioningOpen".into(),
            ));
        };
        let address: [u8; 16] = address
            .address
            .as_ref()
            .try_into()
            .map_err(|_| ClientError::Refused("provisioning address length".into()))?;
        let events = conn.events();
        let secret = LinkSecret::new(address, device.public_key().to_bytes());
        Ok(Self {
            config,
            store,
            conn,
            events,
            secret,
            device,
        })
    }

    /// The link code to type into (or paste on) the existing device.
    pub fn link_code(&self) -> String {
        self.secret.code.to_text()
    }

    /// The same code as a QR payload (81 bytes).
    pub fn qr_payload(&self) -> Vec<u8> {
        self.secret.code.to_qr()
    }

    /// Waits (at most `timeout`) for the existing device's approval, then
    /// registers this device, uploads its prekeys and starts the client.
    pub async fn finish(mut self, timeout: Duration) -> Result<Client, ClientError> {
        let sealed = tokio::time::timeout(timeout, self.next_provisioning())
            .await
            .map_err(|_| ClientError::Offline("no approval from the existing device".into()))??;
        let payload = self.secret.open(&sealed)?;
        let mut account = LocalAccount {
            info: AccountInfo {
                user_id: payload.user()?,
                user_name: payload.user_name.clone(),
                device_id: payload.device_id,
            },
            account: AccountIdentity::from_bytes(&payload.account_identity)?,
            device: self.device.clone(),
            registered: false,
        };
        drop(payload);
        self.conn.close();
        let upload = self.store.transaction(|tx| {
            account.save(tx)?;
            generate_prekeys(tx, &account.device, true)
        })?;
        let greeting = Greeting::connect(&self.config.relay).await?;
        let register = RegisterDevice {
            user_id: Bytes::copy_from_slice(&account.info.user_id),
            device_id: account.info.device_id,
            device_signature: greeting.sign(&DeviceAuth(&account.device)),
        };
        let (_, conn) = greeting
            .register(request::Kind::RegisterDevice(register))
            .await?;
        conn.request(request::Kind::UploadPrekeys(upload)).await?;
        conn.close();
        account.registered = true;
        self.store.transaction(|tx| account.save(tx))?;
        Ok(Client::start(self.config, self.store, account))
    }

    async fn next_provisioning(&mut self) -> Result<Vec<u8>, ClientError> {
        loop {
            match self.events.next().await? {
                Some(event::Kind::ProvisioningMessage(m))
                    if m.address.as_ref() == self.secret.code.address =>
                {
                    return Ok(m.ciphertext.to_vec());
                }
                Some(_) => continue,
                None => return Err(ClientError::Offline("provisioning mailbox closed".into())),
            }
        }
    }
}

impl Client {
    /// Links the device that shows `link_code` to this account: adds its
    /// identity key to the account-signed device list, publishes the list and
    /// hands the account identity to the new device, encrypted to its
    /// ephemeral key. Returns the new device's id. Needs the relay.
    pub async fn link_device(&self, link_code: String) -> Result<u32, ClientError> {
        let code = LinkCode::parse(&link_code)?;
        let conn = self.core.connection()?;
        let set = self.own_devices(&conn).await?;
        if set.devices.iter().any(|(_, key)| *key == code.identity) {
            return Err(ClientError::InvalidArgument("device already linked"));
        }
        if set.devices.len() >= MAX_DEVICES {
            return Err(ClientError::Refused(
                "the account has the maximum of devices".into(),
            ));
        }
        let device_id = set.devices.iter().map(|(id, _)| *id).max().unwrap_or(0) + 1;
        let mut devices = set.devices.clone();
        devices.push((device_id, code.identity));
        let signed = self.sign_device_list(set.version + 1, &devices);
        conn.request(request::Kind::PublishDeviceList(PublishDeviceList {
            device_list: Some(signed.clone()),
        }))
        .await?;
        self.remember_own_list(&set, &signed)?;
        let payload = ProvisionPayload {
            user_id: self.core.account.user_id.to_vec(),
            user_name: self.core.account.user_name.clone(),
            device_id,
            account_identity: self.account.to_bytes().to_vec(),
        };
        let sealed = seal(&code, &payload)?;
        conn.request(request::Kind::ProvisioningSend(ProvisioningSend {
            address: Bytes::copy_from_slice(&code.address),
            ciphertext: sealed.into(),
        }))
        .await?;
        self.queue_device_sync()?;
        Ok(device_id)
    }

    /// The account's devices, from the relay's current signed list.
    pub async fn devices(&self) -> Result<Vec<DeviceInfo>, ClientError> {
        let conn = self.core.connection()?;
        let set = self.own_devices(&conn).await?;
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
        let set = self.own_devices(&conn).await?;
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

    /// Queues contacts, chats and recent history for the own devices, in the
    /// note-to-self chat (created locally if needed). The outbox retries until
    /// the new device has registered and published its prekeys.
    fn queue_device_sync(&self) -> Result<(), ClientError> {
        let me = self.core.account.user_id;
        let self_chat = self_chat_id(&me);
        self.core.store.transaction(|tx| {
            if tx.chat(&self_chat)?.is_none() {
                tx.upsert_chat(&Chat {
                    chat_id: self_chat,
                    kind: ChatKind::Group,
                    title: "Note to self".into(),
                    created_at_ms: now_ms(),
                })?;
                tx.set_chat_members(&self_chat, &[me])?;
            }
            let sync = device_sync::collect(tx, &self_chat)?;
            queue_payload(
                tx,
                &self_chat,
                &random_bytes(),
                &Payload::DeviceSync(sync),
                None,
            )
        })?;
        self.core.outbox_wake.notify_one();
        Ok(())
    }

    async fn own_devices(&self, conn: &RelayConnection) -> Result<DeviceSet, ClientError> {
        let me = self.core.account.user_id;
        self.core.directory.invalidate(&me);
        self.core.device_set(conn, &me).await
    }

    fn sign_device_list(&self, version: u64, devices: &[(u32, [u8; 32])]) -> SignedDeviceList {
        let list = DeviceList {
            user_id: Bytes::copy_from_slice(&self.core.account.user_id),
            version,
            devices: devices
                .iter()
                .map(|(device_id, key)| DeviceEntry {
                    device_id: *device_id,
                    identity_key: Bytes::copy_from_slice(key),
                })
                .collect(),
        }
        .encode_to_vec();
        let signature = self.account.sign(&list);
        SignedDeviceList {
            device_list: list.into(),
            signature: Bytes::copy_from_slice(&signature),
        }
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
