//! Linking a new device to an account: the account payload the existing
//! device hands over, sealed in the channel of [`tern_crypto::link`]. The
//! relay side lives in [`mailbox`]; `docs/client.md` §4 specifies the
//! exchange byte by byte.

mod mailbox;

use prost::Message;
use tern_crypto::link::{LinkApplication, LinkError, LinkRequest};
use zeroize::Zeroize;

use crate::model::ClientError;
use crate::model::UserId;
use crate::random::rng;
use crate::sync::device_sync::DeviceSync;

pub use mailbox::{LinkApproval, LinkOffer};

/// What the existing device hands over to an approved new device.
#[derive(Clone, PartialEq, Message)]
pub(super) struct ProvisionPayload {
    /// Account id (16 bytes).
    #[prost(bytes = "vec", tag = "1")]
    pub user_id: Vec<u8>,
    /// Account user name.
    #[prost(string, tag = "2")]
    pub user_name: String,
    /// The device id assigned to the new device.
    #[prost(uint32, tag = "3")]
    pub device_id: u32,
    /// The account identity secret (`crypto.md` encoding).
    #[prost(bytes = "vec", tag = "4")]
    pub account_identity: Vec<u8>,
    /// Contacts, chats and recent history of the existing device.
    #[prost(message, optional, tag = "5")]
    pub device_sync: Option<DeviceSync>,
}

impl Drop for ProvisionPayload {
    fn drop(&mut self) {
        self.account_identity.zeroize();
    }
}

impl ProvisionPayload {
    /// The account id, checked.
    pub(super) fn user(&self) -> Result<UserId, ClientError> {
        UserId::try_from(self.user_id.as_slice())
            .map_err(|_| ClientError::Verification("provisioning user id".into()))
    }
}

impl From<LinkError> for ClientError {
    fn from(err: LinkError) -> Self {
        match err {
            LinkError::Code(what) => Self::InvalidArgument(what),
            LinkError::TooLarge => Self::InvalidArgument("link answer too large"),
            LinkError::Refused => Self::Refused(err.to_string()),
            LinkError::LowOrder
            | LinkError::Request
            | LinkError::Answer
            | LinkError::MalformedAnswer => Self::Verification(err.to_string()),
        }
    }
}

/// Seals `payload` as the approving answer to `request`.
fn seal_payload(
    request: &LinkRequest,
    payload: &ProvisionPayload,
) -> Result<Vec<Vec<u8>>, ClientError> {
    let plaintext = zeroize::Zeroizing::new(payload.encode_to_vec());
    Ok(request.seal_reply(&plaintext, &mut rng())?)
}

/// Takes the next answer part: `Ok(None)` while parts are missing, the
/// decoded payload once the last one arrived.
fn open_payload(
    application: &mut LinkApplication,
    part: &[u8],
) -> Result<Option<ProvisionPayload>, ClientError> {
    match application.open_reply(part)? {
        None => Ok(None),
        Some(plaintext) => ProvisionPayload::decode(plaintext.as_slice())
            .map(Some)
            .map_err(|_| LinkError::Answer.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_crypto::identity::DeviceIdentity;
    use tern_crypto::link::{LinkInvitation, PART_LEN};

    fn payload(name: String) -> ProvisionPayload {
        ProvisionPayload {
            user_id: vec![7; 16],
            user_name: name,
            device_id: 2,
            account_identity: vec![1, 2, 3],
            device_sync: None,
        }
    }

    #[test]
    fn payloads_travel_through_the_channel_in_parts() {
        let invitation = LinkInvitation::new([3; 16], &mut rng());
        let device = DeviceIdentity::generate(&mut rng());
        let (mut application, request) =
            LinkApplication::new(invitation.code(), [5; 16], &device, &mut rng()).unwrap();
        let opened = invitation.open_request(&request).unwrap();
        let big = payload("x".repeat(2 * PART_LEN));
        let parts = seal_payload(&opened, &big).unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(open_payload(&mut application, &parts[0]).unwrap(), None);
        assert_eq!(open_payload(&mut application, &parts[1]).unwrap(), None);
        assert_eq!(
            open_payload(&mut application, &parts[2]).unwrap(),
            Some(big)
        );
        assert!(matches!(
            open_payload(&mut application, &tern_crypto::link::rejection()),
            Err(ClientError::Refused(_))
        ));
    }

    #[test]
    fn link_errors_keep_their_client_error_kinds() {
        assert!(matches!(
            ClientError::from(LinkError::Code("link code digits")),
            ClientError::InvalidArgument("link code digits")
        ));
        assert!(matches!(
            ClientError::from(LinkError::Request),
            ClientError::Verification(_)
        ));
    }
}
