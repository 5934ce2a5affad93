//! Opening an entry's ciphertexts, and what the results mean.
//!
//! [`open`] only decrypts: the session manager records the ratchet changes in
//! the caller's open batch, and the caller commits them together with what
//! the entry carried (or drops them). [`judge_pairwise`] decides when the
//! pairwise session needs repair; a group message that does not decrypt asks
//! its sender for a reset instead ([`Opened::ask_reset`]).

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
    /// The pairwise ciphertext failed: the session with the sender needs repair.
    Repair(Repair),
    /// What the entry carries (possibly with content that was refused).
    Opened(Opened),
}

/// Why the pairwise session with the sending device needs repair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Repair {
    /// For the host and the logs.
    pub reason: String,
    /// The decrypt failed because the signed prekey's replay cache is full:
    /// rotate it now.
    pub replay_cache_full: bool,
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
/// device (`listed`), else why the session needs repair.
pub(crate) fn judge_pairwise(
    result: Result<Decrypted, CryptoError>,
    listed: Option<&[u8; 32]>,
) -> Result<Vec<u8>, Repair> {
    let decrypted = result.map_err(|e| Repair {
        replay_cache_full: matches!(e, CryptoError::ReplayCacheFull { .. }),
        reason: e.to_string(),
    })?;
    match listed {
        Some(key) if decrypted.sender_identity.to_bytes() == *key => Ok(decrypted.plaintext),
        _ => Err(Repair {
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
            Err(repair) => return Ok(Opening::Repair(repair)),
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
            let repair = judge_pairwise(Ok(decrypted(identity)), listed).unwrap_err();
            assert!(!repair.replay_cache_full);
            assert!(repair.reason.contains("signed device list"));
        }
    }

    #[test]
    fn every_decrypt_failure_repairs_and_a_full_replay_cache_also_rotates() {
        let listed = [0; 32];
        let repair = judge_pairwise(Err(CryptoError::NoSession), Some(&listed)).unwrap_err();
        assert_eq!(
            repair,
            Repair {
                reason: CryptoError::NoSession.to_string(),
                replay_cache_full: false,
            }
        );
        let full = CryptoError::ReplayCacheFull {
            signed_prekey_id: 3,
        };
        assert!(
            judge_pairwise(Err(full), Some(&listed))
                .unwrap_err()
                .replay_cache_full
        );
    }
}
