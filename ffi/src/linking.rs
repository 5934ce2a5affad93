//! Linking a new device through the bindings.
//!
//! On the existing device: [`TernClient::offer_link`] shows a code,
//! [`LinkOffer::wait_request`] waits for the new device, and the app asks
//! the user to confirm [`LinkRequest::device_identity`] before
//! [`LinkRequest::approve`]. On the new device: [`TernClient::link`] with
//! the code. Each step is also announced to the existing device's
//! listeners as [`TernEvent::LinkProgress`].

use std::sync::{Arc, Mutex, PoisonError};

use tern_core::{Client, LinkApproval};

use crate::client::{ClientOptions, StoreKey, TernClient, millis};
use crate::error::TernError;
use crate::events::{LinkStep, TernEvent};
use crate::runtime::spawn;

/// Takes a one-shot value out of its slot, or says it was used.
fn take<T>(slot: &Mutex<Option<T>>) -> Result<T, TernError> {
    slot.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
        .ok_or_else(|| TernError::invalid("this link step was already used"))
}

/// An open link offer on the existing device. One offer admits one request.
#[derive(uniffi::Object)]
pub struct LinkOffer {
    client: Arc<TernClient>,
    code: String,
    qr_payload: Vec<u8>,
    offer: Mutex<Option<tern_core::LinkOffer>>,
}

/// A new device's checked request, waiting for the user's decision.
#[derive(uniffi::Object)]
pub struct LinkRequest {
    client: Arc<TernClient>,
    device_identity: Vec<u8>,
    approval: Mutex<Option<LinkApproval>>,
}

#[uniffi::export]
impl TernClient {
    /// Opens a link offer for a new device of this account: show its code
    /// (or QR payload) to the new device.
    pub async fn offer_link(self: Arc<Self>) -> Result<Arc<LinkOffer>, TernError> {
        let client = self.inner()?;
        let offer = spawn(async move { Ok(client.offer_link().await?) }).await?;
        self.announce(TernEvent::LinkProgress {
            step: LinkStep::CodeShown,
        });
        Ok(Arc::new(LinkOffer {
            code: offer.link_code(),
            qr_payload: offer.qr_payload(),
            offer: Mutex::new(Some(offer)),
            client: self,
        }))
    }

    /// Links this device (a new, empty store at `options.store_path`) to an
    /// existing account with the code its device shows; waits at most
    /// `timeout_ms` for the existing device to approve. The account's
    /// contacts, chats and recent history arrive with the approval.
    #[uniffi::constructor]
    pub async fn link(
        options: ClientOptions,
        key: StoreKey,
        link_code: String,
        timeout_ms: u64,
    ) -> Result<Arc<Self>, TernError> {
        spawn(async move {
            let config = options.to_config()?;
            let client =
                Client::accept_link(config, key.into_source()?, link_code, millis(timeout_ms))
                    .await?;
            Ok(TernClient::wrap(client, &options))
        })
        .await
    }
}

#[uniffi::export]
impl LinkOffer {
    /// The one-time code to type on the new device.
    pub fn code(&self) -> String {
        self.code.clone()
    }

    /// The same code as a QR payload.
    pub fn qr_payload(&self) -> Vec<u8> {
        self.qr_payload.clone()
    }

    /// Waits at most `timeout_ms` for the new device's request and checks
    /// it (a request made with a wrong code is refused and ends the offer).
    pub async fn wait_request(&self, timeout_ms: u64) -> Result<Arc<LinkRequest>, TernError> {
        let offer = take(&self.offer)?;
        let approval =
            spawn(async move { Ok(offer.wait_request(millis(timeout_ms)).await?) }).await?;
        let device_identity = approval.device_identity().to_vec();
        self.client.announce(TernEvent::LinkProgress {
            step: LinkStep::RequestReceived {
                device_identity: device_identity.clone(),
            },
        });
        Ok(Arc::new(LinkRequest {
            client: self.client.clone(),
            device_identity,
            approval: Mutex::new(Some(approval)),
        }))
    }
}

#[uniffi::export]
impl LinkRequest {
    /// The new device's Ed25519 identity key: show a fingerprint of it on
    /// both devices for the user to compare.
    pub fn device_identity(&self) -> Vec<u8> {
        self.device_identity.clone()
    }

    /// Adds the new device to the account and hands it the account's
    /// identity, contacts, chats and recent history. Returns its device id.
    pub async fn approve(&self) -> Result<u32, TernError> {
        let approval = take(&self.approval)?;
        let client = self.client.inner()?;
        let device_id = spawn(async move { Ok(client.approve_link(approval).await?) }).await?;
        self.client.announce(TernEvent::LinkProgress {
            step: LinkStep::Approved { device_id },
        });
        Ok(device_id)
    }

    /// Refuses the request; the new device learns it.
    pub async fn reject(&self) -> Result<(), TernError> {
        let approval = take(&self.approval)?;
        spawn(async move { Ok(approval.reject().await?) }).await?;
        self.client.announce(TernEvent::LinkProgress {
            step: LinkStep::Rejected,
        });
        Ok(())
    }
}
