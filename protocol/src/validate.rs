//! Field-level validation of decoded messages against [`crate::limits`].
//!
//! Protobuf decoding alone accepts any lengths and counts that fit in the
//! frame; validation turns the schema's documented limits into typed errors
//! before any relay or client logic sees a message.

use crate::error::ProtocolError;
use crate::limits::*;
use crate::wire::*;

/// A message whose fields can be checked against the protocol limits.
pub trait Validate {
    /// Returns the first limit the message violates, if any.
    fn validate(&self) -> Result<(), ProtocolError>;
}

fn exact(field: &'static str, bytes: &[u8], expected: usize) -> Result<(), ProtocolError> {
    if bytes.len() == expected {
        Ok(())
    } else {
        Err(ProtocolError::BadLength {
            field,
            len: bytes.len(),
            expected,
        })
    }
}

fn exact_or_empty(field: &'static str, bytes: &[u8], expected: usize) -> Result<(), ProtocolError> {
    if bytes.is_empty() {
        Ok(())
    } else {
        exact(field, bytes, expected)
    }
}

fn at_most(field: &'static str, len: usize, max: usize) -> Result<(), ProtocolError> {
    if len <= max {
        Ok(())
    } else {
        Err(ProtocolError::TooLong { field, len, max })
    }
}

fn non_empty_at_most(field: &'static str, len: usize, max: usize) -> Result<(), ProtocolError> {
    if len == 0 {
        return Err(ProtocolError::Invalid {
            field,
            reason: "must not be empty",
        });
    }
    at_most(field, len, max)
}

fn count_at_most(field: &'static str, count: usize, max: usize) -> Result<(), ProtocolError> {
    if count <= max {
        Ok(())
    } else {
        Err(ProtocolError::TooMany { field, count, max })
    }
}

fn required<'a, T>(field: &'static str, value: &'a Option<T>) -> Result<&'a T, ProtocolError> {
    value.as_ref().ok_or(ProtocolError::MissingField(field))
}

fn each<T: Validate>(items: &[T]) -> Result<(), ProtocolError> {
    items.iter().try_for_each(Validate::validate)
}

fn ids(
    field: &'static str,
    items: &[bytes::Bytes],
    max: usize,
    len: usize,
) -> Result<(), ProtocolError> {
    count_at_most(field, items.len(), max)?;
    items.iter().try_for_each(|id| exact(field, id, len))
}

/// Checks a user name: 1 to [`MAX_USER_NAME_LEN`] bytes of `[a-z0-9._-]`.
pub(crate) fn user_name(field: &'static str, name: &str) -> Result<(), ProtocolError> {
    non_empty_at_most(field, name.len(), MAX_USER_NAME_LEN)?;
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b);
    if name.bytes().all(allowed) {
        Ok(())
    } else {
        Err(ProtocolError::Invalid {
            field,
            reason: "only a-z, 0-9, '.', '_' and '-' are allowed",
        })
    }
}

impl<T: Validate> Validate for Option<T> {
    fn validate(&self) -> Result<(), ProtocolError> {
        self.as_ref().map_or(Ok(()), Validate::validate)
    }
}

impl Validate for ClientFrame {
    fn validate(&self) -> Result<(), ProtocolError> {
        use client_frame::Body;
        match required("ClientFrame.body", &self.body)? {
            Body::Hello(m) => m.validate(),
            Body::Authenticate(m) => m.validate(),
            Body::Request(m) => m.validate(),
            Body::Ephemeral(m) => m.validate(),
            Body::BlobChunk(m) => m.validate(),
        }
    }
}

impl Validate for ServerFrame {
    fn validate(&self) -> Result<(), ProtocolError> {
        use server_frame::Body;
        match required("ServerFrame.body", &self.body)? {
            Body::Hello(m) => m.validate(),
            Body::AuthOk(_) => Ok(()),
            Body::Response(m) => m.validate(),
            Body::Event(m) => m.validate(),
            Body::Ephemeral(m) => m.validate(),
            Body::BlobChunk(m) => m.validate(),
        }
    }
}

impl Validate for ClientHello {
    fn validate(&self) -> Result<(), ProtocolError> {
        at_most(
            "ClientHello.client_agent",
            self.client_agent.len(),
            MAX_AGENT_LEN,
        )
    }
}

impl Validate for ServerHello {
    fn validate(&self) -> Result<(), ProtocolError> {
        exact("ServerHello.challenge", &self.challenge, CHALLENGE_LEN)
    }
}

impl Validate for Authenticate {
    fn validate(&self) -> Result<(), ProtocolError> {
        exact("Authenticate.user_id", &self.user_id, USER_ID_LEN)?;
        exact("Authenticate.signature", &self.signature, SIGNATURE_LEN)
    }
}

impl Validate for Request {
    fn validate(&self) -> Result<(), ProtocolError> {
        use request::Kind;
        match required("Request.kind", &self.kind)? {
            Kind::RegisterAccount(m) => m.validate(),
            Kind::RegisterDevice(m) => m.validate(),
            Kind::PublishDeviceList(m) => {
                required("PublishDeviceList.device_list", &m.device_list)?.validate()
            }
            Kind::LookupUser(m) => m.validate(),
            Kind::UploadPrekeys(m) => m.validate(),
            Kind::FetchBundles(m) => m.validate(),
            Kind::CreateChat(m) => m.validate(),
            Kind::ChangeMembers(m) => m.validate(),
            Kind::GetChat(m) => exact("GetChat.chat_id", &m.chat_id, CHAT_ID_LEN),
            Kind::Send(m) => m.validate(),
            Kind::AckDelivered(m) => cursors("AckDelivered.cursors", &m.cursors),
            Kind::Sync(m) => cursors("Sync.after", &m.after),
            Kind::SubscribePresence(m) => ids(
                "SubscribePresence.user_ids",
                &m.user_ids,
                MAX_PRESENCE_SUBSCRIPTIONS,
                USER_ID_LEN,
            ),
            Kind::BlobUploadStart(m) => m.validate(),
            Kind::BlobDownload(m) => exact("BlobDownload.blob_id", &m.blob_id, BLOB_ID_LEN),
            Kind::SetPushEndpoint(m) => m.validate(),
            Kind::ProvisioningOpen(_) | Kind::ListChats(_) => Ok(()),
            Kind::ProvisioningSend(m) => m.validate(),
            Kind::RemoveDevice(m) => {
                required("RemoveDevice.device_list", &m.device_list)?.validate()
            }
        }
    }
}

impl Validate for SignedDeviceList {
    fn validate(&self) -> Result<(), ProtocolError> {
        non_empty_at_most(
            "SignedDeviceList.device_list",
            self.device_list.len(),
            MAX_DEVICE_LIST_LEN,
        )?;
        exact("SignedDeviceList.signature", &self.signature, SIGNATURE_LEN)
    }
}

impl Validate for DeviceList {
    fn validate(&self) -> Result<(), ProtocolError> {
        exact("DeviceList.user_id", &self.user_id, USER_ID_LEN)?;
        if self.version == 0 {
            return Err(ProtocolError::Invalid {
                field: "DeviceList.version",
                reason: "versions start at 1",
            });
        }
        non_empty_at_most(
            "DeviceList.devices",
            self.devices.len(),
            MAX_DEVICES_PER_USER,
        )?;
        for (i, device) in self.devices.iter().enumerate() {
            exact("DeviceEntry.identity_key", &device.identity_key, KEY_LEN)?;
            if self.devices[..i]
                .iter()
                .any(|d| d.device_id == device.device_id)
            {
                return Err(ProtocolError::Invalid {
                    field: "DeviceList.devices",
                    reason: "device ids must be unique",
                });
            }
        }
        Ok(())
    }
}

impl Validate for RegisterAccount {
    fn validate(&self) -> Result<(), ProtocolError> {
        user_name("RegisterAccount.user_name", &self.user_name)?;
        exact("RegisterAccount.account_key", &self.account_key, KEY_LEN)?;
        required("RegisterAccount.device_list", &self.device_list)?.validate()?;
        at_most(
            "RegisterAccount.invite_token",
            self.invite_token.len(),
            MAX_TOKEN_LEN,
        )?;
        exact(
            "RegisterAccount.device_signature",
            &self.device_signature,
            SIGNATURE_LEN,
        )
    }
}

impl Validate for RegisterDevice {
    fn validate(&self) -> Result<(), ProtocolError> {
        exact("RegisterDevice.user_id", &self.user_id, USER_ID_LEN)?;
        exact(
            "RegisterDevice.device_signature",
            &self.device_signature,
            SIGNATURE_LEN,
        )
    }
}

impl Validate for LookupUser {
    fn validate(&self) -> Result<(), ProtocolError> {
        match (self.user_name.is_empty(), self.user_id.is_empty()) {
            (false, true) => user_name("LookupUser.user_name", &self.user_name),
            (true, false) => exact("LookupUser.user_id", &self.user_id, USER_ID_LEN),
            _ => Err(ProtocolError::Invalid {
                field: "LookupUser",
                reason: "exactly one of user_name and user_id must be set",
            }),
        }
    }
}

impl Validate for SignedPrekey {
    fn validate(&self) -> Result<(), ProtocolError> {
        exact("SignedPrekey.public_key", &self.public_key, KEY_LEN)?;
        exact("SignedPrekey.signature", &self.signature, SIGNATURE_LEN)
    }
}

impl Validate for OneTimePrekey {
    fn validate(&self) -> Result<(), ProtocolError> {
        exact("OneTimePrekey.public_key", &self.public_key, KEY_LEN)
    }
}

impl Validate for KemPrekey {
    fn validate(&self) -> Result<(), ProtocolError> {
        exact("KemPrekey.public_key", &self.public_key, KEM_PUBLIC_KEY_LEN)?;
        exact("KemPrekey.signature", &self.signature, SIGNATURE_LEN)
    }
}

impl Validate for UploadPrekeys {
    fn validate(&self) -> Result<(), ProtocolError> {
        self.signed_prekey.validate()?;
        count_at_most(
            "UploadPrekeys.one_time_prekeys",
            self.one_time_prekeys.len(),
            MAX_PREKEYS_PER_UPLOAD,
        )?;
        each(&self.one_time_prekeys)?;
        self.last_resort_kem_prekey.validate()?;
        count_at_most(
            "UploadPrekeys.one_time_kem_prekeys",
            self.one_time_kem_prekeys.len(),
            MAX_PREKEYS_PER_UPLOAD,
        )?;
        each(&self.one_time_kem_prekeys)
    }
}

impl Validate for FetchBundles {
    fn validate(&self) -> Result<(), ProtocolError> {
        exact("FetchBundles.user_id", &self.user_id, USER_ID_LEN)?;
        count_at_most(
            "FetchBundles.device_ids",
            self.device_ids.len(),
            MAX_DEVICES_PER_USER,
        )
    }
}

impl Validate for CreateChat {
    fn validate(&self) -> Result<(), ProtocolError> {
        exact("CreateChat.chat_id", &self.chat_id, CHAT_ID_LEN)?;
        ids(
            "CreateChat.members",
            &self.members,
            MAX_CHAT_MEMBERS,
            USER_ID_LEN,
        )?;
        match ChatKind::try_from(self.kind) {
            Ok(ChatKind::Direct) if self.members.len() == 1 => Ok(()),
            Ok(ChatKind::Direct) => Err(ProtocolError::Invalid {
                field: "CreateChat.members",
                reason: "a direct chat has exactly one other member",
            }),
            Ok(ChatKind::Group) => Ok(()),
            _ => Err(ProtocolError::Invalid {
                field: "CreateChat.kind",
                reason: "must be DIRECT or GROUP",
            }),
        }
    }
}

impl Validate for ChangeMembers {
    fn validate(&self) -> Result<(), ProtocolError> {
        exact("ChangeMembers.chat_id", &self.chat_id, CHAT_ID_LEN)?;
        ids(
            "ChangeMembers.add",
            &self.add,
            MAX_CHAT_MEMBERS,
            USER_ID_LEN,
        )?;
        ids(
            "ChangeMembers.remove",
            &self.remove,
            MAX_CHAT_MEMBERS,
            USER_ID_LEN,
        )?;
        ids(
            "ChangeMembers.promote",
            &self.promote,
            MAX_CHAT_MEMBERS,
            USER_ID_LEN,
        )?;
        if self.add.is_empty() && self.remove.is_empty() && self.promote.is_empty() {
            return Err(ProtocolError::Invalid {
                field: "ChangeMembers",
                reason: "nothing to add, remove or promote",
            });
        }
        Ok(())
    }
}

impl Validate for DeviceCiphertext {
    fn validate(&self) -> Result<(), ProtocolError> {
        exact("DeviceCiphertext.user_id", &self.user_id, USER_ID_LEN)?;
        non_empty_at_most(
            "DeviceCiphertext.ciphertext",
            self.ciphertext.len(),
            MAX_CIPHERTEXT_LEN,
        )
    }
}

impl Validate for Send {
    fn validate(&self) -> Result<(), ProtocolError> {
        exact("Send.chat_id", &self.chat_id, CHAT_ID_LEN)?;
        exact(
            "Send.client_message_id",
            &self.client_message_id,
            CLIENT_MESSAGE_ID_LEN,
        )?;
        count_at_most(
            "Send.device_ciphertexts",
            self.device_ciphertexts.len(),
            MAX_RECIPIENT_DEVICES,
        )?;
        each(&self.device_ciphertexts)?;
        at_most(
            "Send.common_ciphertext",
            self.common_ciphertext.len(),
            MAX_CIPHERTEXT_LEN,
        )?;
        if self.device_ciphertexts.is_empty() && self.common_ciphertext.is_empty() {
            return Err(ProtocolError::Invalid {
                field: "Send",
                reason: "carries no ciphertext",
            });
        }
        Ok(())
    }
}

fn cursors(field: &'static str, cursors: &[Cursor]) -> Result<(), ProtocolError> {
    count_at_most(field, cursors.len(), MAX_CURSORS)?;
    cursors
        .iter()
        .try_for_each(|c| exact("Cursor.chat_id", &c.chat_id, CHAT_ID_LEN))
}

impl Validate for BlobUploadStart {
    fn validate(&self) -> Result<(), ProtocolError> {
        exact("BlobUploadStart.sha256", &self.sha256, BLOB_ID_LEN)?;
        if self.size == 0 {
            return Err(ProtocolError::Invalid {
                field: "BlobUploadStart.size",
                reason: "must not be zero",
            });
        }
        if self.size > MAX_BLOB_LEN {
            return Err(ProtocolError::TooLong {
                field: "BlobUploadStart.size",
                len: usize::try_from(self.size).unwrap_or(usize::MAX),
                max: MAX_BLOB_LEN as usize,
            });
        }
        Ok(())
    }
}

impl Validate for BlobChunk {
    fn validate(&self) -> Result<(), ProtocolError> {
        at_most("BlobChunk.data", self.data.len(), MAX_BLOB_CHUNK_LEN)
    }
}

impl Validate for SetPushEndpoint {
    fn validate(&self) -> Result<(), ProtocolError> {
        at_most("SetPushEndpoint.url", self.url.len(), MAX_PUSH_URL_LEN)?;
        let scheme_ok = self.url.starts_with("https://") || self.url.starts_with("http://");
        if self.url.is_empty() || scheme_ok {
            Ok(())
        } else {
            Err(ProtocolError::Invalid {
                field: "SetPushEndpoint.url",
                reason: "must be an http:// or https:// URL",
            })
        }
    }
}

impl Validate for ProvisioningSend {
    fn validate(&self) -> Result<(), ProtocolError> {
        exact(
            "ProvisioningSend.address",
            &self.address,
            PROVISIONING_ADDRESS_LEN,
        )?;
        non_empty_at_most(
            "ProvisioningSend.ciphertext",
            self.ciphertext.len(),
            MAX_PROVISIONING_LEN,
        )
    }
}

impl Validate for EphemeralEvent {
    fn validate(&self) -> Result<(), ProtocolError> {
        use ephemeral_event::Kind;
        match required("EphemeralEvent.kind", &self.kind)? {
            Kind::Typing(t) => {
                exact("Typing.chat_id", &t.chat_id, CHAT_ID_LEN)?;
                exact_or_empty("Typing.user_id", &t.user_id, USER_ID_LEN)
            }
            Kind::Presence(p) => exact("Presence.user_id", &p.user_id, USER_ID_LEN),
        }
    }
}

impl Validate for Response {
    fn validate(&self) -> Result<(), ProtocolError> {
        use response::Kind;
        match required("Response.kind", &self.kind)? {
            Kind::Error(m) => m.validate(),
            Kind::Ok(_) | Kind::PrekeyStock(_) | Kind::SendAck(_) => Ok(()),
            Kind::Registered(m) => exact("Registered.user_id", &m.user_id, USER_ID_LEN),
            Kind::UserInfo(m) => m.validate(),
            Kind::Bundles(m) => m.validate(),
            Kind::ChatInfo(m) => m.validate(),
            Kind::SyncBatch(m) => {
                count_at_most("SyncBatch.entries", m.entries.len(), MAX_SYNC_ENTRIES)?;
                each(&m.entries)
            }
            Kind::BlobUploadStatus(m) => exact("BlobUploadStatus.blob_id", &m.blob_id, BLOB_ID_LEN),
            Kind::BlobInfo(m) => exact("BlobInfo.blob_id", &m.blob_id, BLOB_ID_LEN),
            Kind::ProvisioningAddress(m) => exact(
                "ProvisioningAddress.address",
                &m.address,
                PROVISIONING_ADDRESS_LEN,
            ),
            Kind::ChatList(m) => {
                count_at_most("ChatList.chats", m.chats.len(), MAX_CHATS_PER_LIST)?;
                each(&m.chats)
            }
        }
    }
}

impl Validate for Error {
    fn validate(&self) -> Result<(), ProtocolError> {
        at_most("Error.message", self.message.len(), MAX_ERROR_MESSAGE_LEN)?;
        if let Some(m) = &self.mismatched_devices {
            for list in [&m.missing, &m.extra] {
                count_at_most("MismatchedDevices", list.len(), MAX_RECIPIENT_DEVICES)?;
                list.iter()
                    .try_for_each(|d| exact("DeviceAddress.user_id", &d.user_id, USER_ID_LEN))?;
            }
        }
        Ok(())
    }
}

impl Validate for UserInfo {
    fn validate(&self) -> Result<(), ProtocolError> {
        exact("UserInfo.user_id", &self.user_id, USER_ID_LEN)?;
        user_name("UserInfo.user_name", &self.user_name)?;
        exact("UserInfo.account_key", &self.account_key, KEY_LEN)?;
        required("UserInfo.device_list", &self.device_list)?.validate()
    }
}

impl Validate for Bundles {
    fn validate(&self) -> Result<(), ProtocolError> {
        exact("Bundles.account_key", &self.account_key, KEY_LEN)?;
        required("Bundles.device_list", &self.device_list)?.validate()?;
        count_at_most("Bundles.bundles", self.bundles.len(), MAX_DEVICES_PER_USER)?;
        each(&self.bundles)
    }
}

impl Validate for PrekeyBundle {
    fn validate(&self) -> Result<(), ProtocolError> {
        exact("PrekeyBundle.identity_key", &self.identity_key, KEY_LEN)?;
        required("PrekeyBundle.signed_prekey", &self.signed_prekey)?.validate()?;
        self.one_time_prekey.validate()?;
        required("PrekeyBundle.kem_prekey", &self.kem_prekey)?.validate()
    }
}

impl Validate for ChatInfo {
    fn validate(&self) -> Result<(), ProtocolError> {
        exact("ChatInfo.chat_id", &self.chat_id, CHAT_ID_LEN)?;
        ids(
            "ChatInfo.members",
            &self.members,
            MAX_CHAT_MEMBERS,
            USER_ID_LEN,
        )?;
        ids(
            "ChatInfo.admins",
            &self.admins,
            MAX_CHAT_MEMBERS,
            USER_ID_LEN,
        )
    }
}

impl Validate for Delivery {
    fn validate(&self) -> Result<(), ProtocolError> {
        exact("Delivery.chat_id", &self.chat_id, CHAT_ID_LEN)?;
        exact("Delivery.sender_user_id", &self.sender_user_id, USER_ID_LEN)?;
        exact_or_empty(
            "Delivery.client_message_id",
            &self.client_message_id,
            CLIENT_MESSAGE_ID_LEN,
        )?;
        at_most(
            "Delivery.ciphertext",
            self.ciphertext.len(),
            MAX_CIPHERTEXT_LEN,
        )?;
        at_most(
            "Delivery.common_ciphertext",
            self.common_ciphertext.len(),
            MAX_CIPHERTEXT_LEN,
        )?;
        ids("Delivery.added", &self.added, MAX_CHAT_MEMBERS, USER_ID_LEN)?;
        ids(
            "Delivery.removed",
            &self.removed,
            MAX_CHAT_MEMBERS,
            USER_ID_LEN,
        )?;
        ids(
            "Delivery.promoted",
            &self.promoted,
            MAX_CHAT_MEMBERS,
            USER_ID_LEN,
        )
    }
}

impl Validate for Event {
    fn validate(&self) -> Result<(), ProtocolError> {
        use event::Kind;
        match required("Event.kind", &self.kind)? {
            Kind::Delivery(m) => m.validate(),
            Kind::PrekeysLow(_) | Kind::SyncNeeded(_) => Ok(()),
            Kind::DeviceListChanged(m) => {
                exact("DeviceListChanged.user_id", &m.user_id, USER_ID_LEN)
            }
            Kind::ProvisioningMessage(m) => {
                exact(
                    "ProvisioningMessage.address",
                    &m.address,
                    PROVISIONING_ADDRESS_LEN,
                )?;
                at_most(
                    "ProvisioningMessage.ciphertext",
                    m.ciphertext.len(),
                    MAX_PROVISIONING_LEN,
                )
            }
        }
    }
}
