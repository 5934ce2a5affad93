//! Outbox entries and what to do with the relay's answer to a send (sans-IO).
//!
//! A message is written to the outbox (in the same transaction as the message
//! itself) before anything goes on the network. The engine encrypts an entry
//! once per recipient-device set and stores the encrypted `Send` back into the
//! entry together with the ratchet state it consumed; retries resend those
//! exact bytes with the same client message id, so the relay's deduplication
//! makes a retry after a lost ack harmless.

use std::time::Duration;

use prost::Message;
use tern_protocol::wire::{ErrorCode, Send, response};

use crate::net::NetError;
use crate::store::{ID_LEN, UserId};

/// Smallest retry delay ceiling.
pub(crate) const RETRY_BASE: Duration = Duration::from_millis(500);
/// Largest retry delay ceiling.
pub(crate) const RETRY_MAX: Duration = Duration::from_secs(60);

/// One outbox entry's payload (protobuf; stored inside the encrypted store).
#[derive(Clone, PartialEq, Message)]
pub(crate) struct OutboxItem {
    /// The encoded plaintext [`Content`](super::content::Content).
    #[prost(bytes = "vec", tag = "1")]
    pub content: Vec<u8>,
    /// Local id of the stored message, 0 for control messages (receipts, resets).
    #[prost(int64, tag = "2")]
    pub message_id: i64,
    /// The encrypted request, once prepared; resent unchanged on retries.
    #[prost(message, optional, tag = "3")]
    pub send: Option<Send>,
}

impl OutboxItem {
    /// Decodes a stored payload.
    pub(crate) fn decode_stored(bytes: &[u8]) -> Option<Self> {
        Self::decode(bytes).ok()
    }
}

/// Delay before retry number `attempts + 1`: full jitter under an exponential
/// ceiling (`RETRY_BASE · 2^attempts`, at most `RETRY_MAX`), never below
/// 100 ms. `random` is any `u64`.
pub(crate) fn retry_delay(attempts: u32, random: u64) -> Duration {
    let factor = 1u32.checked_shl(attempts.min(31)).unwrap_or(u32::MAX);
    let ceiling = RETRY_BASE.saturating_mul(factor).min(RETRY_MAX);
    let ceiling_ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis((random % (ceiling_ms + 1)).max(100))
}

/// What the engine does after a send attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SendOutcome {
    /// Durably stored by the relay at `seq` (also for a deduplicated resend).
    Acked {
        /// The entry's offset in the chat log.
        seq: u64,
    },
    /// The device set was wrong: refresh these users' device lists,
    /// re-encrypt and resend with the same client message id.
    Mismatched {
        /// Users with missing or extra devices.
        users: Vec<UserId>,
    },
    /// The relay does not know the chat: create it, then resend.
    ChatMissing,
    /// Try again later (rate limit, relay busy); at least `after` if given.
    Retry {
        /// The relay's requested wait.
        after: Option<Duration>,
    },
    /// The connection is gone: keep the entry, reconnect.
    Reconnect,
    /// Permanently refused: drop the entry and tell the host.
    Fail(String),
}

/// Classifies the relay's answer to a `Send`.
pub(crate) fn classify(result: Result<response::Kind, NetError>) -> SendOutcome {
    match result {
        Ok(response::Kind::SendAck(ack)) => SendOutcome::Acked { seq: ack.seq },
        Ok(other) => SendOutcome::Fail(format!("unexpected answer to Send: {other:?}")),
        Err(NetError::Relay {
            code,
            message,
            retry_after,
            mismatched_devices,
        }) => match code {
            ErrorCode::MismatchedDevices => {
                let mut users: Vec<UserId> = mismatched_devices
                    .iter()
                    .flat_map(|m| m.missing.iter().chain(&m.extra))
                    .filter_map(|d| <[u8; ID_LEN]>::try_from(d.user_id.as_ref()).ok())
                    .collect();
                users.sort_unstable();
                users.dedup();
                SendOutcome::Mismatched { users }
            }
            ErrorCode::NotFound => SendOutcome::ChatMissing,
            ErrorCode::RateLimited | ErrorCode::Unavailable | ErrorCode::Internal => {
                SendOutcome::Retry { after: retry_after }
            }
            _ => SendOutcome::Fail(format!("{code:?}: {message}")),
        },
        Err(e) if e.is_transient() => SendOutcome::Reconnect,
        Err(e) => SendOutcome::Fail(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tern_protocol::wire::{DeviceAddress, MismatchedDevices, SendAck};

    use super::*;

    fn relay_error(code: ErrorCode, mismatched: Option<MismatchedDevices>) -> NetError {
        NetError::Relay {
            code,
            message: "x".into(),
            retry_after: Some(Duration::from_millis(700)),
            mismatched_devices: mismatched,
        }
    }

    #[test]
    fn retry_delays_grow_are_jittered_and_bounded() {
        assert_eq!(retry_delay(0, 0), Duration::from_millis(100));
        assert_eq!(retry_delay(0, 500), Duration::from_millis(500));
        assert_eq!(retry_delay(0, 501), Duration::from_millis(100));
        assert_eq!(retry_delay(3, 3_999), Duration::from_millis(3_999));
        assert!(retry_delay(40, u64::MAX) <= RETRY_MAX);
        assert_eq!(retry_delay(40, 60_000), RETRY_MAX);
    }

    #[test]
    fn answers_are_classified() {
        let ack = Ok(response::Kind::SendAck(SendAck {
            seq: 9,
            server_time_ms: 1,
            duplicate: true,
        }));
        assert_eq!(classify(ack), SendOutcome::Acked { seq: 9 });
        let device = |user: u8| DeviceAddress {
            user_id: Bytes::from(vec![user; ID_LEN]),
            device_id: 2,
        };
        let mismatch = MismatchedDevices {
            missing: vec![device(2), device(1)],
            extra: vec![device(2)],
        };
        assert_eq!(
            classify(Err(relay_error(
                ErrorCode::MismatchedDevices,
                Some(mismatch)
            ))),
            SendOutcome::Mismatched {
                users: vec![[1; ID_LEN], [2; ID_LEN]]
            }
        );
        assert_eq!(
            classify(Err(relay_error(ErrorCode::NotFound, None))),
            SendOutcome::ChatMissing
        );
        assert_eq!(
            classify(Err(relay_error(ErrorCode::RateLimited, None))),
            SendOutcome::Retry {
                after: Some(Duration::from_millis(700))
            }
        );
        assert_eq!(classify(Err(NetError::NoResponse)), SendOutcome::Reconnect);
        assert!(matches!(
            classify(Err(relay_error(ErrorCode::Forbidden, None))),
            SendOutcome::Fail(_)
        ));
    }

    #[test]
    fn items_round_trip() {
        let item = OutboxItem {
            content: vec![1, 2, 3],
            message_id: 7,
            send: Some(Send::default()),
        };
        let bytes = item.encode_to_vec();
        assert_eq!(OutboxItem::decode_stored(&bytes), Some(item));
        assert_eq!(OutboxItem::decode_stored(&[0xff]), None);
    }
}
