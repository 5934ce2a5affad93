//! The send path's decisions, without I/O: which devices a message goes to,
//! which of them need a prekey bundle, whether a group message carries its
//! sender key, what to do with an entry that cannot be encrypted, and when
//! to try again. What to do with the relay's answer is
//! [`classify`](super::super::outbox::classify).

use std::collections::HashSet;
use std::time::Duration;

use tern_protocol::limits::MAX_CIPHERTEXT_LEN;
use tern_protocol::wire::{PrekeyBundle, Send};

use super::super::directory::DeviceSet;
use super::super::outbox::retry_delay;
use crate::model::ClientError;
use tern_crypto::session::DeviceAddress;

/// Attempts after which an entry that cannot be encrypted (no prekeys for a
/// recipient, a bad bundle) is dropped and reported.
pub(crate) const MAX_PREPARE_ATTEMPTS: u32 = 12;

/// Every device of `set` except `own`: who a message to the set's user goes to.
pub(crate) fn targets(set: &DeviceSet, own: DeviceAddress) -> Vec<DeviceAddress> {
    set.devices
        .iter()
        .map(|(device, _)| DeviceAddress {
            user: set.user_id,
            device: *device,
        })
        .filter(|address| *address != own)
        .collect()
}

/// The devices of `set` to fetch a bundle for: the targets without an active
/// session (`with_session` lists the devices of the set that have one).
pub(crate) fn devices_needing_bundles(
    set: &DeviceSet,
    own: DeviceAddress,
    with_session: &[u32],
) -> Vec<u32> {
    targets(set, own)
        .into_iter()
        .map(|address| address.device)
        .filter(|device| !with_session.contains(device))
        .collect()
}

/// Whether a group message must carry the own sender key (pairwise) because
/// some target did not receive the current chain.
pub(crate) fn needs_distribution(targets: &[DeviceAddress], distributed: &[DeviceAddress]) -> bool {
    targets.iter().any(|t| !distributed.contains(t))
}

/// The bundles of the relay's answer that were asked for.
pub(crate) fn wanted_bundles<'a>(
    bundles: &'a [PrekeyBundle],
    devices: &[u32],
) -> impl Iterator<Item = &'a PrekeyBundle> {
    let wanted: HashSet<u32> = devices.iter().copied().collect();
    bundles
        .iter()
        .filter(move |b| wanted.contains(&b.device_id))
}

/// What to do with an entry that could not be encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PrepareFailure {
    /// The connection failed: keep the entry as it is and reconnect.
    Offline,
    /// Tried too often: drop it and tell the host.
    Drop,
    /// Try again later (a recipient has no prekeys yet, a list changed).
    Later,
}

/// Refuses a request the relay would refuse for its size (a ciphertext over
/// `MAX_CIPHERTEXT_LEN`): that never changes on a retry, so it is
/// [`ClientError::MessageTooLarge`], dropped at once, before any crypto state
/// of the attempt is committed.
pub(crate) fn fits_the_relay(send: &Send) -> Result<(), ClientError> {
    let largest = send
        .device_ciphertexts
        .iter()
        .map(|c| c.ciphertext.len())
        .chain([send.common_ciphertext.len()])
        .max()
        .unwrap_or(0);
    if largest > MAX_CIPHERTEXT_LEN {
        return Err(ClientError::MessageTooLarge {
            len: largest,
            max: MAX_CIPHERTEXT_LEN,
        });
    }
    Ok(())
}

/// Decides after `attempts` earlier attempts failed and this one with `error`.
pub(crate) fn after_prepare_error(error: &ClientError, attempts: u32) -> PrepareFailure {
    match error {
        ClientError::Offline(_) => PrepareFailure::Offline,
        ClientError::MessageTooLarge { .. } => PrepareFailure::Drop,
        _ if attempts >= MAX_PREPARE_ATTEMPTS => PrepareFailure::Drop,
        _ => PrepareFailure::Later,
    }
}

/// When an entry that failed `attempts` times is due again, in ms since the
/// epoch: `now_ms` plus the jittered backoff ([`retry_delay`] of `random`),
/// at least the relay's `after`.
pub(crate) fn next_attempt_at(
    now_ms: i64,
    attempts: u32,
    after: Option<Duration>,
    random: u64,
) -> i64 {
    let jitter = retry_delay(attempts, random);
    let delay = after.map_or(jitter, |after| after.max(jitter));
    now_ms.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(devices: &[u32]) -> DeviceSet {
        DeviceSet {
            user_id: [1; 16],
            user_name: "bob".into(),
            account_key: [0; 32],
            version: 1,
            devices: devices.iter().map(|d| (*d, [*d as u8; 32])).collect(),
            signed: Default::default(),
        }
    }

    fn address(user: u8, device: u32) -> DeviceAddress {
        DeviceAddress {
            user: [user; 16],
            device,
        }
    }

    #[test]
    fn targets_leave_out_this_device_only() {
        assert_eq!(
            targets(&set(&[1, 2]), address(1, 2)),
            [address(1, 1)],
            "another own device is a target"
        );
        assert_eq!(
            targets(&set(&[1, 2]), address(9, 1)),
            [address(1, 1), address(1, 2)]
        );
    }

    #[test]
    fn bundles_are_needed_for_targets_without_a_session() {
        let bob = set(&[1, 2, 3]);
        assert_eq!(devices_needing_bundles(&bob, address(9, 1), &[2]), [1, 3]);
        assert!(devices_needing_bundles(&bob, address(9, 1), &[1, 2, 3]).is_empty());
        assert_eq!(
            devices_needing_bundles(&bob, address(1, 3), &[]),
            [1, 2],
            "never a bundle for this device itself"
        );
    }

    #[test]
    fn a_distribution_goes_out_when_some_target_lacks_the_chain() {
        let targets = [address(1, 1), address(2, 1)];
        assert!(!needs_distribution(
            &targets,
            &[address(2, 1), address(1, 1)]
        ));
        assert!(needs_distribution(&targets, &[address(1, 1)]));
        assert!(!needs_distribution(&[], &[]));
    }

    #[test]
    fn only_asked_bundles_are_used() {
        let bundle = |device_id| PrekeyBundle {
            device_id,
            ..PrekeyBundle::default()
        };
        let answer = [bundle(1), bundle(2), bundle(3)];
        let used: Vec<u32> = wanted_bundles(&answer, &[3, 1])
            .map(|b| b.device_id)
            .collect();
        assert_eq!(used, [1, 3]);
    }

    #[test]
    fn prepare_errors_wait_reconnect_or_give_up() {
        let offline = ClientError::Offline("x".into());
        let refused = ClientError::Refused("no prekeys".into());
        assert_eq!(
            after_prepare_error(&offline, MAX_PREPARE_ATTEMPTS + 5),
            PrepareFailure::Offline
        );
        assert_eq!(after_prepare_error(&refused, 0), PrepareFailure::Later);
        assert_eq!(
            after_prepare_error(&refused, MAX_PREPARE_ATTEMPTS - 1),
            PrepareFailure::Later
        );
        assert_eq!(
            after_prepare_error(&refused, MAX_PREPARE_ATTEMPTS),
            PrepareFailure::Drop
        );
    }

    #[test]
    fn retries_are_due_after_the_backoff_and_at_least_the_relays_wait() {
        let now = 1_000_000;
        assert_eq!(next_attempt_at(now, 0, None, 300), now + 300);
        assert_eq!(next_attempt_at(now, 0, None, 0), now + 100);
        let after = Some(Duration::from_secs(5));
        assert_eq!(next_attempt_at(now, 0, after, 300), now + 5_000);
        assert_eq!(
            next_attempt_at(now, 10, Some(Duration::from_millis(1)), 7_777),
            now + 7_777
        );
        assert_eq!(next_attempt_at(i64::MAX - 1, 0, None, 0), i64::MAX);
    }

    #[test]
    fn a_ciphertext_over_the_relays_limit_is_dropped_at_once() {
        use tern_protocol::wire::DeviceCiphertext;
        let device = |len: usize| DeviceCiphertext {
            user_id: vec![1; 16].into(),
            device_id: 1,
            ciphertext: vec![0; len].into(),
        };
        let send = |device_len: usize, common_len: usize| Send {
            device_ciphertexts: vec![device(10), device(device_len)],
            common_ciphertext: vec![0; common_len].into(),
            ..Send::default()
        };
        assert!(fits_the_relay(&send(MAX_CIPHERTEXT_LEN, MAX_CIPHERTEXT_LEN)).is_ok());
        for too_big in [
            send(MAX_CIPHERTEXT_LEN + 1, 0),
            send(10, MAX_CIPHERTEXT_LEN + 1),
        ] {
            let error = fits_the_relay(&too_big).unwrap_err();
            assert!(matches!(
                error,
                ClientError::MessageTooLarge { len, max }
                    if len == MAX_CIPHERTEXT_LEN + 1 && max == MAX_CIPHERTEXT_LEN
            ));
            assert_eq!(after_prepare_error(&error, 0), PrepareFailure::Drop);
        }
    }
}
