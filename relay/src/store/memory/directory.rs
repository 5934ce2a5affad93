//! The in-memory directory: accounts, devices, invites, push endpoints and
//! prekeys.

use std::collections::BTreeMap;

use bytes::Bytes;
use tern_protocol::UserId;
use tern_protocol::wire::{KemPrekey, OneTimePrekey, PrekeyBundle, SignedPrekey};

use super::MemoryStore;
use crate::error::{RelayError, StoreError};
use crate::store::{
    AccountRecord, AccountStore, ChatId, ClaimedBundles, DeviceAddr, DeviceListUpdate,
    DeviceRecord, NewAccount, PrekeyCounts, PrekeyStore, PrekeyUpload,
};

/// A device of the directory.
#[derive(Debug, Clone)]
pub(super) struct Device {
    identity_key: [u8; 32],
    registered: bool,
    push_url: Option<String>,
}

/// A stored prekey: id, public key, signature.
type Key = (u32, Bytes, Bytes);

/// A device's prekeys.
#[derive(Debug, Clone, Default)]
pub(super) struct Prekeys {
    signed: Option<Key>,
    last_resort_kem: Option<Key>,
    one_time: BTreeMap<u32, Bytes>,
    one_time_kem: BTreeMap<u32, (Bytes, Bytes)>,
}

impl AccountStore for MemoryStore {
    fn create_account(&self, a: &NewAccount) -> Result<(), StoreError> {
        let mut s = self.lock();
        if let Some(hash) = &a.invite_hash
            && !s.invites.contains(hash)
        {
            return Err(RelayError::InviteRequired.into());
        }
        if s.accounts.values().any(|r| r.user_name == a.user_name) {
            return Err(RelayError::Conflict("user name taken").into());
        }
        if s.accounts.contains_key(&a.list.user_id) {
            return Err(RelayError::Conflict("account id taken").into());
        }
        if let Some(hash) = &a.invite_hash {
            s.invites.remove(hash);
        }
        s.accounts.insert(
            a.list.user_id,
            AccountRecord {
                user_id: a.list.user_id,
                user_name: a.user_name.clone(),
                account_key: a.account_key,
                device_list: a.list.signed.clone(),
                device_list_version: a.list.version,
            },
        );
        for (id, key) in &a.list.devices {
            let addr = DeviceAddr {
                user: a.list.user_id,
                device: *id,
            };
            let device = Device {
                identity_key: *key,
                registered: *id == a.device_id,
                push_url: None,
            };
            s.devices.insert(addr, device);
        }
        Ok(())
    }

    fn account(&self, user: &UserId) -> Result<Option<AccountRecord>, StoreError> {
        Ok(self.lock().accounts.get(user).cloned())
    }

    fn account_by_name(&self, name: &str) -> Result<Option<AccountRecord>, StoreError> {
        let s = self.lock();
        Ok(s.accounts.values().find(|r| r.user_name == name).cloned())
    }

    fn devices(&self, user: &UserId) -> Result<Vec<DeviceRecord>, StoreError> {
        let s = self.lock();
        let records = s
            .devices
            .iter()
            .filter(|(addr, _)| addr.user == *user)
            .map(|(addr, d)| DeviceRecord {
                device_id: addr.device,
                identity_key: d.identity_key,
                registered: d.registered,
            })
            .collect();
        Ok(records)
    }

    fn replace_device_list(&self, u: &DeviceListUpdate) -> Result<(), StoreError> {
        let mut s = self.lock();
        let account = s
            .accounts
            .get_mut(&u.user_id)
            .ok_or(RelayError::NotFound("account"))?;
        if u.version <= account.device_list_version {
            return Err(RelayError::Conflict("device list version must increase").into());
        }
        account.device_list = u.signed.clone();
        account.device_list_version = u.version;
        let dropped: Vec<DeviceAddr> = s
            .devices
            .iter()
            .filter(|(addr, d)| {
                addr.user == u.user_id && !u.devices.contains(&(addr.device, d.identity_key))
            })
            .map(|(addr, _)| *addr)
            .collect();
        for addr in &dropped {
            s.devices.remove(addr);
            s.prekeys.remove(addr);
            s.cursors.retain(|(d, _), _| d != addr);
        }
        for (id, key) in &u.devices {
            let addr = DeviceAddr {
                user: u.user_id,
                device: *id,
            };
            if s.devices.contains_key(&addr) {
                continue;
            }
            s.devices.insert(
                addr,
                Device {
                    identity_key: *key,
                    registered: false,
                    push_url: None,
                },
            );
            // The link point: a new device starts each chat at its end.
            let points: Vec<(ChatId, u64)> = s
                .chats
                .iter()
                .filter(|(_, c)| c.member(&u.user_id).is_some())
                .map(|(id, c)| (*id, c.last_seq()))
                .collect();
            for (chat, seq) in points {
                let cursor = s.cursors.entry((addr, chat)).or_default();
                *cursor = (*cursor).max(seq);
            }
        }
        Ok(())
    }

    fn mark_device_registered(&self, device: DeviceAddr) -> Result<(), StoreError> {
        let mut s = self.lock();
        let d = s
            .devices
            .get_mut(&device)
            .ok_or(RelayError::NotFound("device"))?;
        d.registered = true;
        Ok(())
    }

    fn create_invite(&self, token_hash: &[u8; 32], _now_ms: u64) -> Result<(), StoreError> {
        self.lock().invites.insert(*token_hash);
        Ok(())
    }

    fn set_push_endpoint(&self, device: DeviceAddr, url: Option<&str>) -> Result<(), StoreError> {
        let mut s = self.lock();
        let d = s
            .devices
            .get_mut(&device)
            .ok_or(RelayError::NotFound("device"))?;
        d.push_url = url.map(str::to_owned);
        Ok(())
    }

    fn push_targets(&self, user: &UserId) -> Result<Vec<(DeviceAddr, String)>, StoreError> {
        let s = self.lock();
        let targets = s
            .devices
            .iter()
            .filter(|(addr, _)| addr.user == *user)
            .filter_map(|(addr, d)| Some((*addr, d.push_url.clone()?)))
            .collect();
        Ok(targets)
    }
}

impl Prekeys {
    fn counts(&self) -> PrekeyCounts {
        PrekeyCounts {
            one_time: u32::try_from(self.one_time.len()).unwrap_or(u32::MAX),
            one_time_kem: u32::try_from(self.one_time_kem.len()).unwrap_or(u32::MAX),
        }
    }
}

impl PrekeyStore for MemoryStore {
    fn upload_prekeys(
        &self,
        device: DeviceAddr,
        up: &PrekeyUpload,
        max_stock: u32,
    ) -> Result<PrekeyCounts, StoreError> {
        let mut s = self.lock();
        let mut keys = s.prekeys.get(&device).cloned().unwrap_or_default();
        if let Some(k) = &up.signed_prekey {
            keys.signed = Some((k.id, k.public_key.clone(), k.signature.clone()));
        }
        if let Some(k) = &up.last_resort_kem {
            keys.last_resort_kem = Some((k.id, k.public_key.clone(), k.signature.clone()));
        }
        for k in &up.one_time {
            keys.one_time.insert(k.id, k.public_key.clone());
        }
        for k in &up.one_time_kem {
            keys.one_time_kem
                .insert(k.id, (k.public_key.clone(), k.signature.clone()));
        }
        let counts = keys.counts();
        if counts.one_time > max_stock || counts.one_time_kem > max_stock {
            return Err(RelayError::QuotaExceeded("too many one-time prekeys stored").into());
        }
        s.prekeys.insert(device, keys);
        Ok(counts)
    }

    fn prekey_counts(&self, device: DeviceAddr) -> Result<PrekeyCounts, StoreError> {
        let s = self.lock();
        Ok(s.prekeys
            .get(&device)
            .map(Prekeys::counts)
            .unwrap_or_default())
    }

    fn claim_bundles(
        &self,
        user: &UserId,
        wanted: &[u32],
        one_time_allowed: &mut dyn FnMut(u32) -> bool,
    ) -> Result<ClaimedBundles, StoreError> {
        let mut s = self.lock();
        let devices: Vec<(DeviceAddr, [u8; 32])> = s
            .devices
            .iter()
            .filter(|(addr, _)| addr.user == *user)
            .map(|(addr, d)| (*addr, d.identity_key))
            .collect();
        if devices.is_empty() {
            return Err(RelayError::NotFound("user").into());
        }
        let mut out = ClaimedBundles::default();
        for (addr, identity_key) in devices
            .into_iter()
            .filter(|(a, _)| wanted.is_empty() || wanted.contains(&a.device))
        {
            let Some(keys) = s.prekeys.get_mut(&addr) else {
                continue;
            };
            let (Some(spk), Some(last_resort)) =
                (keys.signed.clone(), keys.last_resort_kem.clone())
            else {
                continue;
            };
            let (one_time, kem) = if one_time_allowed(addr.device) {
                (keys.one_time.pop_first(), keys.one_time_kem.pop_first())
            } else {
                (None, None)
            };
            let is_last_resort = kem.is_none();
            let (kid, kkey, ksig) = kem.map_or(last_resort, |(id, (key, sig))| (id, key, sig));
            out.bundles.push(PrekeyBundle {
                device_id: addr.device,
                identity_key: identity_key.to_vec().into(),
                signed_prekey: Some(SignedPrekey {
                    id: spk.0,
                    public_key: spk.1,
                    signature: spk.2,
                }),
                one_time_prekey: one_time.map(|(id, public_key)| OneTimePrekey { id, public_key }),
                kem_prekey: Some(KemPrekey {
                    id: kid,
                    public_key: kkey,
                    signature: ksig,
                }),
                kem_prekey_is_last_resort: is_last_resort,
            });
            out.remaining.push((addr.device, keys.counts()));
        }
        Ok(out)
    }
}
