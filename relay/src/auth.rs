//! Proofs of key possession: connection authentication (a device signs the
//! relay's challenge bound to the TLS session) and account-signed device
//! lists. Pure functions, no I/O.

use ed25519_dalek::{Signature, VerifyingKey};
use tern_protocol::limits::{AUTH_EXPORTER_LEN, CHALLENGE_LEN};
use tern_protocol::wire::{DeviceList, SignedDeviceList};
use tern_protocol::{UserId, decode_device_list};

use crate::error::RelayError;
use crate::store::DeviceListUpdate;

/// What a device signature on this connection must cover.
#[derive(Clone)]
pub(crate) struct AuthBinding {
    /// The relay's fresh challenge.
    pub challenge: [u8; CHALLENGE_LEN],
    /// The TLS exporter value of this connection.
    pub exporter: [u8; AUTH_EXPORTER_LEN],
}

impl AuthBinding {
    /// `AUTH_SIGNATURE_CONTEXT || challenge || exporter`.
    pub(crate) fn message(&self) -> Vec<u8> {
        tern_protocol::auth_message(&self.challenge, &self.exporter)
    }

    /// Checks a device's signature over [`Self::message`].
    pub(crate) fn verify(
        &self,
        identity_key: &[u8; 32],
        signature: &[u8],
    ) -> Result<(), RelayError> {
        verify(identity_key, &self.message(), signature)
            .map_err(|_| RelayError::Unauthenticated("invalid device signature"))
    }
}

fn verify(key: &[u8; 32], message: &[u8], signature: &[u8]) -> Result<(), ()> {
    let key = VerifyingKey::from_bytes(key).map_err(|_| ())?;
    let sig = <[u8; 64]>::try_from(signature).map_err(|_| ())?;
    key.verify_strict(message, &Signature::from_bytes(&sig))
        .map_err(|_| ())
}

/// Decodes a signed device list and checks the account key's signature
/// over `DEVICE_LIST_SIGNATURE_CONTEXT || device_list`, that every device
/// key is a usable Ed25519 key (not of small order, `crypto.md` §2), and
/// that the version can still grow (`u64::MAX` would freeze the list).
pub(crate) fn verify_device_list(
    account_key: &[u8; 32],
    signed: &SignedDeviceList,
) -> Result<DeviceListUpdate, RelayError> {
    let list: DeviceList = decode_device_list(signed)?;
    let message = tern_protocol::device_list_message(&signed.device_list);
    verify(account_key, &message, &signed.signature)
        .map_err(|_| RelayError::Unauthenticated("invalid device list signature"))?;
    if list.version == u64::MAX {
        return Err(RelayError::BadRequest(
            "a device list version must leave room for a later one",
        ));
    }
    let devices = list
        .devices
        .iter()
        .map(|d| {
            let key = <[u8; 32]>::try_from(&d.identity_key[..])
                .map_err(|_| RelayError::BadRequest("identity key length"))?;
            if VerifyingKey::from_bytes(&key).map_or(true, |k| k.is_weak()) {
                return Err(RelayError::BadRequest(
                    "a device identity key is malformed or of small order",
                ));
            }
            Ok((d.device_id, key))
        })
        .collect::<Result<Vec<_>, RelayError>>()?;
    Ok(DeviceListUpdate {
        user_id: UserId::from_slice("DeviceList.user_id", &list.user_id)?,
        signed: signed.clone(),
        version: list.version,
        devices,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};
    use prost::Message;
    use tern_protocol::wire::DeviceEntry;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn binding_signature_verifies_and_rejects_other_bindings() {
        let device = key(1);
        let binding = AuthBinding {
            challenge: [2; 32],
            exporter: [3; 32],
        };
        let sig = device.sign(&binding.message()).to_bytes();
        let pk = device.verifying_key().to_bytes();
        binding.verify(&pk, &sig).unwrap();
        let other = AuthBinding {
            exporter: [4; 32],
            ..binding.clone()
        };
        assert!(other.verify(&pk, &sig).is_err());
        assert!(
            binding
                .verify(&key(5).verifying_key().to_bytes(), &sig)
                .is_err()
        );
    }

    #[test]
    fn device_list_signature_is_checked() {
        let account = key(7);
        let list = DeviceList {
            user_id: vec![1; 16].into(),
            version: 1,
            devices: vec![DeviceEntry {
                device_id: 1,
                identity_key: key(1).verifying_key().to_bytes().to_vec().into(),
            }],
        };
        let bytes = list.encode_to_vec();
        let sig = account.sign(&tern_protocol::device_list_message(&bytes));
        let mut signed = SignedDeviceList {
            device_list: bytes.into(),
            signature: sig.to_bytes().to_vec().into(),
        };
        let update = verify_device_list(&account.verifying_key().to_bytes(), &signed).unwrap();
        assert_eq!(update.devices.len(), 1);
        assert!(verify_device_list(&key(8).verifying_key().to_bytes(), &signed).is_err());
        let mut tampered = signed.device_list.to_vec();
        tampered[2] ^= 1;
        signed.device_list = tampered.into();
        assert!(verify_device_list(&account.verifying_key().to_bytes(), &signed).is_err());
    }

    /// `list` signed by `account`.
    fn signed_by(account: &SigningKey, list: &DeviceList) -> SignedDeviceList {
        let bytes = list.encode_to_vec();
        let sig = account.sign(&tern_protocol::device_list_message(&bytes));
        SignedDeviceList {
            device_list: bytes.into(),
            signature: sig.to_bytes().to_vec().into(),
        }
    }

    #[test]
    fn weak_device_keys_and_a_final_version_are_refused() {
        let account = key(7);
        let account_key = account.verifying_key().to_bytes();
        let with = |identity_key: [u8; 32], version: u64| DeviceList {
            user_id: vec![1; 16].into(),
            version,
            devices: vec![DeviceEntry {
                device_id: 1,
                identity_key: identity_key.to_vec().into(),
            }],
        };
        let good = key(1).verifying_key().to_bytes();
        assert!(verify_device_list(&account_key, &signed_by(&account, &with(good, 2))).is_ok());
        // The identity point and the point of order 2 (small order).
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut order_two = [0u8; 32];
        order_two[0] = 0xec;
        order_two[1..31].fill(0xff);
        order_two[31] = 0x7f;
        for weak in [identity, order_two] {
            let refused = verify_device_list(&account_key, &signed_by(&account, &with(weak, 2)));
            assert!(
                matches!(refused, Err(RelayError::BadRequest(_))),
                "{weak:?}"
            );
        }
        let frozen = verify_device_list(&account_key, &signed_by(&account, &with(good, u64::MAX)));
        assert!(matches!(frozen, Err(RelayError::BadRequest(_))));
    }
}
