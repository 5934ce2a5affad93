//! The local account: identities, the account record and prekeys.

use bytes::Bytes;
use prost::Message;
use tern_protocol::wire::{
    DeviceEntry, DeviceList, KemPrekey, OneTimePrekey, SignedDeviceList, SignedPrekey,
    UploadPrekeys,
};
use zeroize::{Zeroize, Zeroizing};

use rand_core::Rng;

use crate::model::{AccountInfo, ClientError, UserId};
use crate::net::DeviceSigner;
use crate::random::{random_bytes, rng};
use crate::store::{IdentitySlot, PrekeyKind, StoreError, Tx};
use tern_crypto::identity::{AccountIdentity, DeviceIdentity};
use tern_crypto::prekeys::{KemPreKey, KemPreKeyKind, OneTimePreKey, SignedPreKey};
use tern_crypto::rotation::RotationSchedule;

/// One-time prekeys (of each kind) generated per batch; the relay's per-upload limit.
pub(crate) const PREKEY_BATCH: u32 = 100;
/// Id of a new account's first signed X25519 prekey; rotation counts up from it
/// (see [`RotationSchedule::next_id`]).
const FIRST_SIGNED_PREKEY_ID: u32 = 1;
/// Id of the first last-resort KEM prekey. One-time KEM ids stay below it
/// (random 30-bit bases) and rotation counts up from it, so the two never meet.
const FIRST_LAST_RESORT_KEM_ID: u32 = 0x8000_0000;

/// The stored account record (identity slot `Account`), protobuf-encoded.
#[derive(Clone, PartialEq, Message)]
struct AccountRecord {
    #[prost(bytes = "vec", tag = "1")]
    user_id: Vec<u8>,
    #[prost(string, tag = "2")]
    user_name: String,
    #[prost(uint32, tag = "3")]
    device_id: u32,
    #[prost(bytes = "vec", tag = "4")]
    account_identity: Vec<u8>,
    #[prost(bool, tag = "5")]
    registered: bool,
}

impl Drop for AccountRecord {
    fn drop(&mut self) {
        self.account_identity.zeroize();
    }
}

/// The identities of this device, loaded from or written to the store.
pub(crate) struct LocalAccount {
    pub info: AccountInfo,
    pub account: AccountIdentity,
    pub device: DeviceIdentity,
    pub registered: bool,
}

impl LocalAccount {
    /// A fresh account with its first device (id 1).
    pub(crate) fn generate(user_name: String) -> Self {
        let mut rng = rng();
        Self {
            info: AccountInfo {
                user_id: random_bytes(),
                user_name,
                device_id: 1,
            },
            account: AccountIdentity::generate(&mut rng),
            device: DeviceIdentity::generate(&mut rng),
            registered: false,
        }
    }

    /// Reads the account from the store, if one was created.
    pub(crate) fn load(tx: &Tx<'_>) -> Result<Option<Self>, ClientError> {
        let Some(record) = tx.identity(IdentitySlot::Account)? else {
            return Ok(None);
        };
        let device = tx
            .identity(IdentitySlot::Device)?
            .ok_or(ClientError::StoreCorrupt("device identity missing".into()))?;
        let record = AccountRecord::decode(record.as_slice())
            .map_err(|_| ClientError::StoreCorrupt("account record".into()))?;
        let user_id = UserId::try_from(record.user_id.as_slice())
            .map_err(|_| ClientError::StoreCorrupt("account user id".into()))?;
        let corrupt = |e: tern_crypto::CryptoError| ClientError::StoreCorrupt(e.to_string());
        Ok(Some(Self {
            info: AccountInfo {
                user_id,
                user_name: record.user_name.clone(),
                device_id: record.device_id,
            },
            account: AccountIdentity::from_bytes(&record.account_identity).map_err(corrupt)?,
            device: DeviceIdentity::from_bytes(&device).map_err(corrupt)?,
            registered: record.registered,
        }))
    }

    /// Writes the account record and the device identity.
    pub(crate) fn save(&self, tx: &Tx<'_>) -> Result<(), StoreError> {
        let record = AccountRecord {
            user_id: self.info.user_id.to_vec(),
            user_name: self.info.user_name.clone(),
            device_id: self.info.device_id,
            account_identity: self.account.to_bytes().to_vec(),
            registered: self.registered,
        };
        let encoded = Zeroizing::new(record.encode_to_vec());
        tx.put_identity(IdentitySlot::Account, &encoded)?;
        tx.put_identity(IdentitySlot::Device, &self.device.to_bytes())
    }

    /// The account-signed device list naming this device only (version 1).
    pub(crate) fn initial_device_list(&self) -> SignedDeviceList {
        let own = (self.info.device_id, self.device.public_key().to_bytes());
        sign_device_list(&self.account, &self.info.user_id, 1, &[own])
    }
}

/// Signs the relay's authentication payload with the device identity.
///
/// The relay verifies `Ed25519(AUTH_SIGNATURE_CONTEXT ‖ challenge ‖ exporter)`;
/// [`DeviceIdentity::sign`] prepends exactly that context to the payload.
pub(crate) struct DeviceAuth<'a>(pub &'a DeviceIdentity);

impl DeviceSigner for DeviceAuth<'_> {
    fn sign(&self, payload: &[u8]) -> [u8; 64] {
        self.0.sign(payload)
    }
}

/// Generates prekeys, stores their private halves and returns the upload.
/// With `initial = Some(now_secs)`, also the first signed prekey and last-resort
/// KEM prekey and their rotation schedules, started at `now_secs`.
pub(crate) fn generate_prekeys(
    tx: &Tx<'_>,
    device: &DeviceIdentity,
    initial: Option<u64>,
) -> Result<UploadPrekeys, StoreError> {
    let mut rng = rng();
    // Random 30-bit bases keep batches from reusing ids still held by the relay.
    let base = (rng.next_u32() & 0x3fff_ffff).max(1);
    let mut upload = UploadPrekeys::default();
    if let Some(now_secs) = initial {
        for (kind, id) in [
            (PrekeyKind::Signed, FIRST_SIGNED_PREKEY_ID),
            (PrekeyKind::KemLastResort, FIRST_LAST_RESORT_KEM_ID),
        ] {
            generate_rotating_prekey(tx, device, kind, id, &mut upload)?;
            tx.put_prekey_schedule(kind, &RotationSchedule::new(id, now_secs).to_bytes())?;
        }
    }
    for prekey in OneTimePreKey::generate_batch(base, PREKEY_BATCH, &mut rng) {
        tx.put_prekey(PrekeyKind::OneTime, prekey.id(), &prekey.to_bytes())?;
        let public = prekey.public();
        upload.one_time_prekeys.push(OneTimePrekey {
            id: public.id,
            public_key: Bytes::copy_from_slice(&public.key),
        });
    }
    for offset in 0..PREKEY_BATCH {
        let prekey = KemPreKey::generate(base + offset, KemPreKeyKind::OneTime, device, &mut rng);
        tx.put_prekey(PrekeyKind::KemOneTime, prekey.id(), &prekey.to_bytes())?;
        upload.one_time_kem_prekeys.push(kem_wire(&prekey));
    }
    Ok(upload)
}

fn kem_wire(prekey: &KemPreKey) -> KemPrekey {
    let public = prekey.public();
    KemPrekey {
        id: public.id,
        public_key: Bytes::copy_from_slice(public.key.as_bytes()),
        signature: Bytes::copy_from_slice(&public.signature),
    }
}

/// Generates the rotating prekey of `kind` ([`PrekeyKind::Signed`] or
/// [`PrekeyKind::KemLastResort`]) with `id`, stores its private half and adds
/// its public half to `upload`. Other kinds are not rotated and add nothing.
pub(crate) fn generate_rotating_prekey(
    tx: &Tx<'_>,
    device: &DeviceIdentity,
    kind: PrekeyKind,
    id: u32,
    upload: &mut UploadPrekeys,
) -> Result<(), StoreError> {
    let mut rng = rng();
    match kind {
        PrekeyKind::Signed => {
            let signed = SignedPreKey::generate(id, device, &mut rng);
            tx.put_prekey(kind, id, &signed.to_bytes())?;
            let public = signed.public();
            upload.signed_prekey = Some(SignedPrekey {
                id: public.id,
                public_key: Bytes::copy_from_slice(&public.key),
                signature: Bytes::copy_from_slice(&public.signature),
            });
        }
        PrekeyKind::KemLastResort => {
            let last_resort = KemPreKey::generate(id, KemPreKeyKind::LastResort, device, &mut rng);
            tx.put_prekey(kind, id, &last_resort.to_bytes())?;
            upload.last_resort_kem_prekey = Some(kem_wire(&last_resort));
        }
        PrekeyKind::OneTime | PrekeyKind::KemOneTime => {}
    }
    Ok(())
}

/// The account-signed device list of `user`: `devices` are (device id,
/// identity key) pairs, encoded as the wire `DeviceList` and signed with the
/// account identity (`docs/protocol.md`, device lists).
pub(crate) fn sign_device_list(
    account: &AccountIdentity,
    user: &UserId,
    version: u64,
    devices: &[(u32, [u8; 32])],
) -> SignedDeviceList {
    let list = DeviceList {
        user_id: Bytes::copy_from_slice(user),
        version,
        devices: devices
            .iter()
            .map(|(device_id, key)| DeviceEntry {
                device_id: *device_id,
                identity_key: Bytes::copy_from_slice(key),
            })
            .collect(),
    }
    .encode_to_vec();
    let signature = account.sign(&list);
    SignedDeviceList {
        device_list: list.into(),
        signature: Bytes::copy_from_slice(&signature),
    }
}
