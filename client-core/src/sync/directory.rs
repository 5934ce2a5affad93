//! Verified device lists of users (contacts and the own account) and prekey
//! bundles checked against them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use tern_protocol::wire::{PrekeyBundle, SignedDeviceList, UserInfo};
use tokio::sync::broadcast;

use crate::model::{ClientError, ClientEvent, UserId};
use crate::store::{DeviceAddress, Store, StoredDeviceList, Tx};
use tern_crypto::identity::{IDENTITY_KEY_LEN, IdentityKey, verify_account_signature};
use tern_crypto::kem::KemPublicKey;
use tern_crypto::prekeys::{
    KemPreKeyPublic, OneTimePreKeyPublic, PreKeyBundle, SignedPreKeyPublic, VerifiedPreKeyBundle,
};
use tern_crypto::session::DeviceAddress as CryptoAddress;

/// A user's device list whose signature by the account key was verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DeviceSet {
    pub user_id: UserId,
    pub user_name: String,
    pub account_key: [u8; IDENTITY_KEY_LEN],
    pub version: u64,
    /// (device id, Ed25519 identity key).
    pub devices: Vec<(u32, [u8; IDENTITY_KEY_LEN])>,
    /// The signed list exactly as verified (kept to persist it).
    pub signed: SignedDeviceList,
}

impl DeviceSet {
    /// Verifies a directory entry: the account-key signature over the exact
    /// list bytes, the list's user id, and the entry sizes.
    pub(crate) fn verify(info: &UserInfo) -> Result<Self, ClientError> {
        let user_id = UserId::try_from(info.user_id.as_ref())
            .map_err(|_| ClientError::Verification("user id length".into()))?;
        let signed = info
            .device_list
            .as_ref()
            .ok_or(ClientError::Verification("missing device list".into()))?;
        Self::verify_list(user_id, info.user_name.clone(), &info.account_key, signed)
    }

    /// Verifies a signed device list of `user_id` under `account_key`.
    pub(crate) fn verify_list(
        user_id: UserId,
        user_name: String,
        account_key: &[u8],
        signed: &SignedDeviceList,
    ) -> Result<Self, ClientError> {
        let bad = |what: &str| ClientError::Verification(format!("device list: {what}"));
        let account_key: [u8; IDENTITY_KEY_LEN] =
            account_key.try_into().map_err(|_| bad("account key"))?;
        let signature: [u8; 64] = signed
            .signature
            .as_ref()
            .try_into()
            .map_err(|_| bad("signature length"))?;
        verify_account_signature(&account_key, &signed.device_list, &signature)
            .map_err(|_| bad("bad signature"))?;
        let list = tern_protocol::decode_device_list(signed).map_err(|_| bad("malformed"))?;
        if list.user_id.as_ref() != user_id {
            return Err(bad("signed for another user"));
        }
        let devices = list
            .devices
            .iter()
            .map(|d| {
                <[u8; IDENTITY_KEY_LEN]>::try_from(d.identity_key.as_ref())
                    .map(|key| (d.device_id, key))
                    .map_err(|_| bad("identity key length"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            user_id,
            user_name,
            account_key,
            version: list.version,
            devices,
            signed: signed.clone(),
        })
    }

    /// Verifies a persisted list again (the disk is not trusted either).
    fn from_stored(stored: StoredDeviceList) -> Result<Self, ClientError> {
        let signed = SignedDeviceList {
            device_list: Bytes::from(stored.device_list),
            signature: Bytes::from(stored.signature),
        };
        Self::verify_list(
            stored.user_id,
            stored.user_name,
            &stored.account_key,
            &signed,
        )
        .map_err(|e| ClientError::StoreCorrupt(format!("stored device list: {e}")))
    }

    fn to_stored(&self) -> StoredDeviceList {
        StoredDeviceList {
            user_id: self.user_id,
            user_name: self.user_name.clone(),
            account_key: self.account_key.to_vec(),
            version: self.version,
            device_list: self.signed.device_list.to_vec(),
            signature: self.signed.signature.to_vec(),
        }
    }

    /// The identity key of `device_id`, if it is in the list.
    pub(crate) fn identity(&self, device_id: u32) -> Option<&[u8; IDENTITY_KEY_LEN]> {
        self.devices
            .iter()
            .find(|(id, _)| *id == device_id)
            .map(|(_, key)| key)
    }

    /// Converts a fetched bundle into the crypto layer's form after checking
    /// that its identity key is the one this list names for the device.
    pub(crate) fn bundle(
        &self,
        bundle: &PrekeyBundle,
    ) -> Result<VerifiedPreKeyBundle, ClientError> {
        let bad = |what: &str| ClientError::Verification(format!("prekey bundle: {what}"));
        let listed = self
            .identity(bundle.device_id)
            .ok_or_else(|| bad("device not in the signed list"))?;
        if bundle.identity_key.as_ref() != listed.as_slice() {
            return Err(bad("identity key differs from the signed list"));
        }
        let identity_key = IdentityKey::from_bytes(listed)?;
        let signed = bundle
            .signed_prekey
            .as_ref()
            .ok_or_else(|| bad("no signed prekey"))?;
        let signed_prekey = SignedPreKeyPublic {
            id: signed.id,
            key: array(&signed.public_key, "signed prekey")?,
            signature: array(&signed.signature, "signed prekey signature")?,
        };
        let one_time_prekey = match &bundle.one_time_prekey {
            Some(p) => Some(OneTimePreKeyPublic {
                id: p.id,
                key: array(&p.public_key, "one-time prekey")?,
            }),
            None => None,
        };
        let kem_prekey = match &bundle.kem_prekey {
            Some(p) => Some(KemPreKeyPublic {
                id: p.id,
                key: KemPublicKey::from_bytes(&p.public_key)?,
                signature: array(&p.signature, "KEM prekey signature")?,
            }),
            None => None,
        };
        let bundle = PreKeyBundle {
            identity_key,
            signed_prekey,
            one_time_prekey,
            kem_prekey,
        };
        Ok(bundle.into_verified()?)
    }
}

fn array<const N: usize>(bytes: &[u8], what: &str) -> Result<[u8; N], ClientError> {
    bytes
        .try_into()
        .map_err(|_| ClientError::Verification(format!("prekey bundle: {what} length")))
}

/// Verified device lists: the last accepted list per user is persisted and is
/// the floor for every list offered later, across restarts; the lists in use
/// are cached in memory.
pub(crate) struct Directory {
    store: Arc<Store>,
    events: broadcast::Sender<ClientEvent>,
    /// Each list with whether it is stale (a newer version was announced).
    lists: Mutex<HashMap<UserId, (DeviceSet, bool)>>,
    /// This device (whose sender keys a dropped device must lose).
    own: CryptoAddress,
}

impl Directory {
    /// A directory over `store`, announcing refused rollbacks on `events`.
    pub(crate) fn new(
        store: Arc<Store>,
        events: broadcast::Sender<ClientEvent>,
        own: CryptoAddress,
    ) -> Self {
        Self {
            store,
            events,
            own,
            lists: Mutex::default(),
        }
    }

    fn lists(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, (DeviceSet, bool)>> {
        self.lists.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached list of `user`, unless it is stale.
    pub(crate) fn get(&self, user: &UserId) -> Option<DeviceSet> {
        match self.lists().get(user) {
            Some((set, false)) => Some(set.clone()),
            _ => None,
        }
    }

    /// Accepts a verified list: persists it and caches it. Under the account
    /// key of the persisted list, a lower version is a rollback (refused with
    /// [`ClientError::DeviceListRollback`] and announced as
    /// [`ClientEvent::DeviceListRollback`]) and the same version must be the
    /// same list. Sessions with devices the new list drops (or lists under
    /// another identity key) are deleted, so nothing is encrypted to them,
    /// and the own sender key of every group shared with the user is
    /// replaced, so that a dropped device cannot read what follows. A
    /// refused list changes nothing stored.
    pub(crate) fn insert(&self, set: DeviceSet) -> Result<(), ClientError> {
        let mut lists = self.lists();
        let accepted = self.store.transaction(|tx| persist(tx, &set, &self.own));
        if let Err(ClientError::DeviceListRollback { known, offered, .. }) = &accepted {
            tracing::warn!(user = %crate::sync::hex(&set.user_id), known, offered, "device list rollback refused");
            let _ = self.events.send(ClientEvent::DeviceListRollback {
                user_id: set.user_id,
                known_version: *known,
                offered_version: *offered,
            });
        }
        accepted?;
        lists.insert(set.user_id, (set, false));
        Ok(())
    }

    /// Marks `user`'s list stale: the next use fetches it again, and the
    /// fetched list must not be older than the one known.
    pub(crate) fn invalidate(&self, user: &UserId) {
        if let Some(entry) = self.lists().get_mut(user) {
            entry.1 = true;
        }
    }
}

/// Checks `set` against the persisted list of its user and replaces it.
fn persist(tx: &Tx<'_>, set: &DeviceSet, own: &CryptoAddress) -> Result<(), ClientError> {
    let Some(stored) = tx.device_list(&set.user_id)? else {
        tx.put_device_list(&set.to_stored())?;
        return Ok(());
    };
    let known = DeviceSet::from_stored(stored)?;
    if known.account_key == set.account_key {
        if set.version < known.version {
            return Err(ClientError::DeviceListRollback {
                user: crate::sync::hex(&set.user_id),
                known: known.version,
                offered: set.version,
            });
        }
        if set.version == known.version {
            if set.devices != known.devices {
                return Err(ClientError::Verification(format!(
                    "two different device lists with version {}",
                    set.version
                )));
            }
            return Ok(());
        }
    }
    let mut dropped = false;
    for (device_id, key) in &known.devices {
        if set.identity(*device_id) != Some(key) {
            dropped = true;
            tx.delete_sessions(&DeviceAddress {
                user_id: set.user_id,
                device_id: *device_id,
            })?;
        }
    }
    if dropped {
        super::group::rotate_shared(tx, &set.user_id, own)?;
    }
    tx.put_device_list(&set.to_stored())?;
    Ok(())
}
