//! Identity verification: safety numbers, the verified flag and
//! acknowledging identity changes.

use super::Client;
use super::read_state::ensure_self_chat;
use crate::model::ClientError;
use crate::model::ClientEvent;
use crate::model::UserId;
use crate::random::random_bytes;
use crate::sync::content::Payload;
use crate::sync::device_sync::self_chat_id;
use crate::sync::queue_payload;
use tern_crypto::fingerprint::SafetyNumber;
use tern_crypto::identity::IdentityKey;

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

    /// Marks a contact verified (after comparing safety numbers) or not, and
    /// sends the decision, bound to the contact's account key, to the
    /// account's other devices (an encrypted `VerificationState` in the
    /// note-to-self chat). Emits [`ClientEvent::VerificationChanged`].
    pub fn set_verified(&self, user_id: UserId, verified: bool) -> Result<(), ClientError> {
        let state = crate::sync::verification::mark(verified);
        let me = self.core.account.user_id;
        let now = self.core.clock.now_ms();
        self.core.store.transaction(|tx| {
            tx.set_verification(&user_id, state)?;
            let key = tx.contact(&user_id)?.and_then(|c| c.identity_key);
            if let Some(identity_key) = key.and_then(|k| <[u8; 32]>::try_from(k).ok()) {
                ensure_self_chat(tx, &me, now)?;
                let sync = Payload::VerificationState {
                    user_id,
                    identity_key,
                    verified,
                };
                queue_payload(tx, &self_chat_id(&me), &random_bytes(), &sync, None, now)?;
            }
            Ok::<_, ClientError>(())
        })?;
        self.core.outbox_wake.notify_one();
        self.core
            .emit(ClientEvent::VerificationChanged { user_id, verified });
        Ok(())
    }

    /// Accepts a verified contact's new identity key: sending is allowed
    /// again and the contact is no longer marked verified.
    pub fn acknowledge_identity_change(&self, user_id: UserId) -> Result<(), ClientError> {
        self.set_verified(user_id, false)
    }
}
