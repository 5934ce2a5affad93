//! Opening an entry's ciphertexts, and what the results mean.
//!
//! [`open`] only decrypts: the session manager records the ratchet changes in
//! the caller's open batch, and the caller commits them together with what
//! the entry carried (or drops them, so a failed decrypt changes nothing).
//! [`judge_pairwise`] decides what a failed pairwise decrypt means (a
//! duplicate, damaged bytes, or a session that is really gone); a group
//! message that does not decrypt asks its sender for a reset instead
//! ([`Opened::ask_reset`]).

use super::super::content::Payload;
use super::super::directory::DeviceSet;
use super::super::{Core, group};
use crate::model::{ChatId, ClientError};
use tern_crypto::CryptoError;
use tern_crypto::sender_key::SenderKeyRecord;
use tern_crypto::session::{Decrypted, DeviceAddress};
use tern_protocol::wire::Delivery;

/// What the ciphertexts of an entry yielded.
pub(crate) enum Opening {
    /// The pairwise ciphertext did not decrypt.
    Failed(Failure),
    /// What the entry carries (possibly with content that was refused).
    Opened(Opened),
}

/// What a failed pairwise decrypt means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    /// The message key was already used: the same ciphertext again (a
    /// relay that repeats an entry). Dropped; nothing changes.
    Duplicate,
    /// The bytes do not authenticate under a session that is otherwise
    /// fine (corruption, tampering): the sessions stay, the sender is asked
    /// to send the message again.
    Damaged,
    /// There is no usable session with the device (none, an unknown
    /// prekey, an identity its device list does not name): it is dropped
    /// and a new one starts with the reset and the retry request.
    SessionLost,
}

/// Why the pairwise ciphertext of an entry failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// What it means.
    pub kind: FailureKind,
    /// For the host and the logs.
    pub reason: String,
    /// The decrypt failed because the signed prekey's replay cache is full:
    /// rotate it now.
    pub replay_cache_full: bool,
}

impl Failure {
    fn of(error: &CryptoError) -> Self {
        let kind = match error {
            CryptoError::MessageKeyUnavailable { .. } | CryptoError::ReplayedPreKeyMessage => {
                FailureKind::Duplicate
            }
            CryptoError::NoSession
            | CryptoError::UnknownPreKey { .. }
            | CryptoError::ReplayCacheFull { .. } => FailureKind::SessionLost,
            _ => FailureKind::Damaged,
        };
        Self {
            kind,
            reason: error.to_string(),
            replay_cache_full: matches!(error, CryptoError::ReplayCacheFull { .. }),
        }
    }
}

/// The contents of an entry.
#[derive(Default)]
pub(crate) struct Opened {
    /// Decoded payloads with their send times, in order.
    pub payloads: Vec<(Payload, u64)>,
    /// The sender's receiving sender-key record, to store (it took a
    /// distribution or decrypted a group message).
    pub record: Option<SenderKeyRecord>,
    /// Why some content was refused, for the host.
    pub failure: Option<String>,
    /// A group message without a usable sender key: ask the sender (and the
    /// group) for a reset, which makes them distribute their chains again.
    pub ask_reset: bool,
}

/// Decides what a pairwise decrypt result means: the plaintext if it came
/// from the identity that the sender's signed device list names for the
/// device (`listed`), else what the failure means.
pub(crate) fn judge_pairwise(
    result: Result<Decrypted, CryptoError>,
    listed: Option<&[u8; 32]>,
) -> Result<Vec<u8>, Failure> {
    let decrypted = result.map_err(|e| Failure::of(&e))?;
    match listed {
        Some(key) if decrypted.sender_identity.to_bytes() == *key => Ok(decrypted.plaintext),
        _ => Err(Failure {
            kind: FailureKind::SessionLost,
            reason: "sender identity is not in its signed device list".into(),
            replay_cache_full: false,
        }),
    }
}

/// Decrypts the entry from `address` in `chat_id` inside the caller's crypto
/// batch: the pairwise ciphertext (a payload or a sender-key distribution),
/// then the common group ciphertext with the sender's record.
pub(crate) fn open(
    core: &Core,
    set: &DeviceSet,
    chat_id: &ChatId,
    address: DeviceAddress,
    delivery: &Delivery,
) -> Result<Opening, ClientError> {
    let mut opened = Opened::default();
    let load_record = || {
        core.store
            .transaction(|tx| group::load_record(tx, chat_id, &address))
    };
    if !delivery.ciphertext.is_empty() {
        let result = core.sessions.decrypt(address, &delivery.ciphertext);
        let plaintext = match judge_pairwise(result, set.identity(address.device)) {
            Ok(plaintext) => plaintext,
            Err(failure) => return Ok(Opening::Failed(failure)),
        };
        match Payload::decode(&plaintext) {
            Ok((Payload::SenderKeyDistribution(message), _)) => {
                let mut record = load_record()?;
                match group::accept_distribution(&mut record, chat_id, &message.0) {
                    Ok(()) => opened.record = Some(record),
                    Err(e) => opened.failure = Some(e),
                }
            }
            Ok(payload) => opened.payloads.push(payload),
            Err(e) => opened.failure = Some(e.to_string()),
        }
    }
    if !delivery.common_ciphertext.is_empty() {
        let mut record = match opened.record.take() {
            Some(record) => record,
            None => load_record()?,
        };
        match group::decrypt(&mut record, chat_id, &delivery.common_ciphertext) {
            Ok(plaintext) => match Payload::decode(&plaintext) {
                Ok(payload) => opened.payloads.push(payload),
                Err(e) => opened.failure = Some(e.to_string()),
            },
            Err(e) => {
                opened.failure = Some(format!("group message: {e}"));
                opened.ask_reset = true;
            }
        }
        opened.record = Some(record);
    }
    Ok(Opening::Opened(opened))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_crypto::identity::DeviceIdentity;

    fn decrypted(identity: &DeviceIdentity) -> Decrypted {
        Decrypted {
            plaintext: b"hi".to_vec(),
            sender_identity: identity.public_key(),
            new_session: false,
            identity_changed: false,
        }
    }

    #[test]
    fn a_plaintext_counts_only_from_the_listed_identity() {
        let mut rng = crate::random::rng();
        let sender = DeviceIdentity::generate(&mut rng);
        let other = DeviceIdentity::generate(&mut rng);
        let listed = sender.public_key().to_bytes();
        assert_eq!(
            judge_pairwise(Ok(decrypted(&sender)), Some(&listed)),
            Ok(b"hi".to_vec())
        );
        for (identity, listed) in [(&other, Some(&listed)), (&sender, None)] {
            let failure = judge_pairwise(Ok(decrypted(identity)), listed).unwrap_err();
            assert_eq!(failure.kind, FailureKind::SessionLost);
            assert!(!failure.replay_cache_full);
            assert!(failure.reason.contains("signed device list"));
        }
    }

    #[test]
    fn duplicates_damage_and_lost_sessions_are_told_apart() {
        let listed = [0; 32];
        let kind = |error| judge_pairwise(Err(error), Some(&listed)).unwrap_err().kind;
        assert_eq!(
            kind(CryptoError::MessageKeyUnavailable { index: 4 }),
            FailureKind::Duplicate
        );
        assert_eq!(
            kind(CryptoError::ReplayedPreKeyMessage),
            FailureKind::Duplicate
        );
        assert_eq!(kind(CryptoError::DecryptFailed), FailureKind::Damaged);
        assert_eq!(kind(CryptoError::HandshakeMismatch), FailureKind::Damaged);
        assert_eq!(kind(CryptoError::NoSession), FailureKind::SessionLost);
        let full = CryptoError::ReplayCacheFull {
            signed_prekey_id: 3,
        };
        let failure = judge_pairwise(Err(full), Some(&listed)).unwrap_err();
        assert_eq!(failure.kind, FailureKind::SessionLost);
        assert!(failure.replay_cache_full);
    }
}
