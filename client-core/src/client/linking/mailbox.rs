//! Linking through the relay's provisioning mailboxes (the async shell over
//! the sans-IO exchange of the parent module).
//!
//! Existing device: [`Client::offer_link`] → show [`LinkOffer::link_code`] →
//! [`LinkOffer::wait_request`] → [`Client::approve_link`] (or
//! [`LinkApproval::reject`]). New device: [`Client::accept_link`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tern_protocol::wire::{
    ErrorCode, ProvisioningOpen, ProvisioningSend, RegisterDevice, UploadPrekeys, event, request,
    response,
};

use tern_crypto::link::{
    ADDRESS_LEN, LinkApplication, LinkCode, LinkInvitation, LinkRequest, rejection,
};

use super::{ProvisionPayload, open_payload, seal_payload};
use crate::client::{Client, ClientConfig, ClientError, open_store};
use crate::model::AccountInfo;
use crate::net::{Greeting, NetError, RelayAddress};
use crate::random::rng;
use crate::store::KeySource;
use crate::sync::account::{DeviceAuth, LocalAccount, generate_prekeys};
use crate::sync::device_sync::{self, self_chat_id};
use crate::sync::{RelayEvents, RelayLayer, RelayLink, layered};
use tern_crypto::identity::{AccountIdentity, DeviceIdentity};

/// An unauthenticated relay connection holding an open provisioning mailbox;
/// dropping it closes the connection, which closes the mailbox.
struct Mailbox {
    conn: Arc<dyn RelayLink>,
    events: Box<dyn RelayEvents>,
    address: [u8; ADDRESS_LEN],
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        self.conn.close();
    }
}

impl Mailbox {
    /// Connects without authenticating (through `layer`, if any) and opens a
    /// mailbox. The relay keeps it while the connection lives, at most 10
    /// minutes.
    async fn open(
        endpoint: &quinn::Endpoint,
        relay: &RelayAddress,
        layer: Option<&Arc<dyn RelayLayer>>,
    ) -> Result<Self, ClientError> {
        let greeting = Greeting::connect_via(endpoint, relay).await?;
        let conn = layered(layer, greeting.unauthenticated());
        let answer = conn
            .request(request::Kind::ProvisioningOpen(ProvisioningOpen {}))
            .await?;
        let response::Kind::ProvisioningAddress(address) = answer else {
            return Err(ClientError::Refused(
                "unexpected answer to ProvisioningOpen".into(),
            ));
        };
        let address = address
            .address
            .as_ref()
            .try_into()
            .map_err(|_| ClientError::Refused("provisioning address length".into()))?;
        let events = conn.events();
        Ok(Self {
            conn,
            events,
            address,
        })
    }

    /// The next message that arrives in the mailbox.
    async fn next(&mut self) -> Result<Vec<u8>, ClientError> {
        loop {
            match self.events.next().await? {
                Some(event::Kind::ProvisioningMessage(m)) if m.address.as_ref() == self.address => {
                    return Ok(m.ciphertext.to_vec());
                }
                Some(_) => continue,
                None => return Err(ClientError::Offline("provisioning mailbox closed".into())),
            }
        }
    }

    /// Sends `ciphertext` to the mailbox at `address`.
    async fn send(
        &self,
        address: [u8; ADDRESS_LEN],
        ciphertext: Vec<u8>,
    ) -> Result<(), ClientError> {
        let sent = self
            .conn
            .request(request::Kind::ProvisioningSend(ProvisioningSend {
                address: Bytes::copy_from_slice(&address),
                ciphertext: ciphertext.into(),
            }))
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(NetError::Relay {
                code: ErrorCode::NotFound,
                ..
            }) => Err(ClientError::Refused(
                "the link code expired or was already used".into(),
            )),
            Err(other) => Err(other.into()),
        }
    }
}

/// Runs `step` for at most `timeout`; then the link code has expired.
async fn within<T>(
    timeout: Duration,
    step: impl Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    tokio::time::timeout(timeout, step)
        .await
        .map_err(|_| ClientError::Refused("the link code expired unanswered".into()))?
}

/// An existing device's open link offer: show [`Self::link_code`] (or the QR
/// payload) to the new device, then call [`Self::wait_request`]. One offer
/// admits one request.
pub struct LinkOffer {
    mailbox: Mailbox,
    invitation: LinkInvitation,
}

impl LinkOffer {
    /// The one-time link code to enter on the new device.
    pub fn link_code(&self) -> String {
        self.invitation.code().to_text()
    }

    /// The same code as a QR payload (69 bytes).
    pub fn qr_payload(&self) -> Vec<u8> {
        self.invitation.code().to_qr()
    }

    /// Waits at most `timeout` for the new device's request and checks it.
    /// A request made with a wrong code is refused (the new device learns it)
    /// and consumes the offer, like every request.
    pub async fn wait_request(mut self, timeout: Duration) -> Result<LinkApproval, ClientError> {
        let sealed = within(timeout, self.mailbox.next()).await?;
        match self.invitation.open_request(&sealed) {
            Ok(request) => Ok(LinkApproval {
                mailbox: self.mailbox,
                request,
            }),
            Err(error) => {
                let error = ClientError::from(error);
                if let Some(reply_address) = LinkInvitation::reply_address(&sealed) {
                    let refused = self.mailbox.send(reply_address, rejection()).await;
                    if let Err(e) = refused {
                        tracing::debug!(error = %e, "cannot refuse a link request");
                    }
                }
                Err(error)
            }
        }
    }
}

/// A checked request of a new device, to approve with
/// [`Client::approve_link`] or to [`Self::reject`].
pub struct LinkApproval {
    mailbox: Mailbox,
    request: LinkRequest,
}

impl LinkApproval {
    /// The new device's Ed25519 identity public key (show it to confirm).
    pub fn device_identity(&self) -> [u8; 32] {
        self.request.device_identity
    }

    /// Refuses the request; the new device learns it.
    pub async fn reject(self) -> Result<(), ClientError> {
        self.mailbox
            .send(self.request.reply_address, rejection())
            .await
    }
}

impl Client {
    /// Opens a provisioning mailbox and a one-time link code for a new
    /// device of this account. Needs the relay.
    pub async fn offer_link(&self) -> Result<LinkOffer, ClientError> {
        let mailbox = Mailbox::open(
            self.core.endpoint()?,
            &self.core.relay,
            self.core.layer.as_ref(),
        )
        .await?;
        let invitation = LinkInvitation::new(mailbox.address, &mut rng());
        Ok(LinkOffer {
            mailbox,
            invitation,
        })
    }

    /// Links the device of `approval`: adds its identity key to the
    /// account-signed device list, publishes the list, then hands the new
    /// device the account identity together with this device's contacts,
    /// chats and recent history over the encrypted channel. Returns the new
    /// device's id. Needs the relay.
    pub async fn approve_link(&self, approval: LinkApproval) -> Result<u32, ClientError> {
        let request = &approval.request;
        let device_id = self.add_own_device(request.device_identity).await?;
        let self_chat = self_chat_id(&self.core.account.user_id);
        let sync = self
            .core
            .store
            .transaction(|tx| device_sync::collect(tx, &self_chat))?;
        let payload = ProvisionPayload {
            user_id: self.core.account.user_id.to_vec(),
            user_name: self.core.account.user_name.clone(),
            device_id,
            account_identity: self.account.to_bytes().to_vec(),
            device_sync: Some(sync),
        };
        let parts = seal_payload(request, &payload)?;
        drop(payload);
        for part in parts {
            approval.mailbox.send(request.reply_address, part).await?;
        }
        Ok(device_id)
    }

    /// Links this device (a new, empty store) to an account with the link
    /// code an existing device shows: sends the encrypted request, waits at
    /// most `timeout` for the answer, then registers this device, uploads
    /// its prekeys and starts the client. The existing device's contacts,
    /// chats and recent history come with the answer and are stored first.
    /// Needs the relay.
    pub async fn accept_link(
        config: ClientConfig,
        key: KeySource,
        code: String,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let code = LinkCode::parse(&code)?;
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
        let payload = request_account(&config, &code, &device, timeout).await?;
        let mut account = LocalAccount {
            info: AccountInfo {
                user_id: payload.user()?,
                user_name: payload.user_name.clone(),
                device_id: payload.device_id,
            },
            account: AccountIdentity::from_bytes(&payload.account_identity)?,
            device,
            registered: false,
        };
        let upload = store.transaction(|tx| {
            account.save(tx)?;
            if let Some(sync) = &payload.device_sync {
                device_sync::apply(tx, sync, config.clock.now_ms())?;
            }
            let now = config.clock.now_secs();
            Ok::<_, ClientError>(generate_prekeys(tx, &account.device, Some(now))?)
        })?;
        drop(payload);
        register(&config, &account, upload).await?;
        account.registered = true;
        store.transaction(|tx| account.save(tx))?;
        Ok(Self::start(config, store, account))
    }
}

/// Sends the link request for `code` on behalf of `device` and waits at most
/// `timeout` for the whole answer.
async fn request_account(
    config: &ClientConfig,
    code: &LinkCode,
    device: &DeviceIdentity,
    timeout: Duration,
) -> Result<ProvisionPayload, ClientError> {
    let mut mailbox = Mailbox::open(
        &config.endpoint()?,
        &config.relay,
        config.relay_layer.as_ref(),
    )
    .await?;
    let (mut application, request) =
        LinkApplication::new(code, mailbox.address, device, &mut rng())?;
    mailbox.send(code.address, request).await?;
    within(timeout, async {
        loop {
            if let Some(payload) = open_payload(&mut application, &mailbox.next().await?)? {
                return Ok(payload);
            }
        }
    })
    .await
}

/// Registers the linked device (`RegisterDevice`) and uploads its prekeys.
async fn register(
    config: &ClientConfig,
    account: &LocalAccount,
    upload: UploadPrekeys,
) -> Result<(), ClientError> {
    let greeting = Greeting::connect_via(&config.endpoint()?, &config.relay).await?;
    let register = RegisterDevice {
        user_id: Bytes::copy_from_slice(&account.info.user_id),
        device_id: account.info.device_id,
        device_signature: greeting.sign(&DeviceAuth(&account.device)),
    };
    let (_, conn) = greeting
        .register(request::Kind::RegisterDevice(register))
        .await?;
    let conn = layered(config.relay_layer.as_ref(), conn);
    conn.request(request::Kind::UploadPrekeys(upload)).await?;
    conn.close();
    Ok(())
}
