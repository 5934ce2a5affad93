//! Identity verification: safety numbers, the verified flag and
//! acknowledging identity changes.

use super::Client;
use super::error::ClientError;
use super::types::{UserId, Verification};
use crate::crypto::fingerprint::SafetyNumber;
use crate::crypto::identity::IdentityKey;

impl Client {
    /// The safety number shared with a contact (60 digits, same on both
    /// sides), computed from both account keys.
    pub fn safety_number(&self, user_id: UserId) -> Result<String, ClientError> {
        let contact = self
            .core
            .store
            .transaction(|tx| tx.contact(&user_id))?
            .ok_or(ClientError::UnknownUser(crate::sync::hex(&user_id)))?;
        let key: [u8; 32] = contact
            .identity_key
            .as_deref()
            .and_then(|k| k.try_into().ok())
            .ok_or(ClientError::Verification("no account key known".into()))?;
        let theirs = IdentityKey::from_bytes(&key)?;
        let number = SafetyNumber::new(
            &self.core.account.user_id,
            &self.account.public_key(),
            &user_id,
            &theirs,
        );
        Ok(number.digits().to_owned())
    }

    /// Marks a contact verified (after comparing safety numbers) or not.
    pub fn set_verified(&self, user_id: UserId, verified: bool) -> Result<(), ClientError> {
        let state = if verified {
            Verification::Verified
        } else {
            Verification::Default
        };
        Ok(self
            .core
            .store
            .transaction(|tx| tx.set_verification(&user_id, state))?)
    }

    /// Accepts a verified contact's new identity key: sending is allowed
    /// again and the contact is no longer marked verified.
    pub fn acknowledge_identity_change(&self, user_id: UserId) -> Result<(), ClientError> {
        self.set_verified(user_id, false)
    }
}
