//! The prekey directory: uploads, bundle fetches (one-time keys handed out
//! at most once, last-resort KEM key when the stock is empty) and low-stock
//! notices to the owner.

use std::sync::Arc;
use std::time::Instant;

use tern_protocol::UserId;
use tern_protocol::wire::{
    Bundles, Event, FetchBundles, PrekeyStock, UploadPrekeys, event, response,
};

use crate::config::LimitsConfig;
use crate::error::RelayError;
use crate::ratelimit::RateLimiter;
use crate::service::Relay;
use crate::store::{DeviceAddr, PrekeyCounts, PrekeyUpload};

/// Most one-time prekeys of each kind stored per device.
pub(crate) const MAX_PREKEY_STOCK: u32 = 1000;

fn stock(c: PrekeyCounts) -> PrekeyStock {
    PrekeyStock {
        one_time_prekeys: c.one_time,
        one_time_kem_prekeys: c.one_time_kem,
    }
}

/// Who may claim one-time prekeys how often: per (requesting device, target
/// device) pair and per target device. Over a limit a bundle comes without
/// one-time prekeys, so a stranger cannot drain a device's stock while
/// honest contacts still start sessions.
pub(crate) struct PrekeyClaims {
    per_pair: RateLimiter<(DeviceAddr, DeviceAddr)>,
    per_target: RateLimiter<DeviceAddr>,
}

impl PrekeyClaims {
    /// The limits of `limits`.
    pub(crate) fn new(limits: &LimitsConfig) -> Arc<Self> {
        Arc::new(Self {
            per_pair: RateLimiter::per_hour(
                limits.prekey_claims_per_pair_per_hour,
                limits.prekey_claim_pair_burst,
            ),
            per_target: RateLimiter::per_hour(
                limits.prekey_claims_per_device_per_hour,
                limits.prekey_claim_device_burst,
            ),
        })
    }

    /// Whether `requester` may take a one-time prekey of `target` now (a
    /// refusal by the target's limit still spends the pair's token: an
    /// abuser gains nothing by retrying).
    fn allow(&self, requester: DeviceAddr, target: DeviceAddr, now: Instant) -> bool {
        self.per_pair.check((requester, target), now).is_ok()
            && self.per_target.check(target, now).is_ok()
    }
}

impl Relay {
    /// Whether a device's one-time stock is below the low-water mark.
    pub(crate) fn is_low(&self, c: PrekeyCounts) -> bool {
        let low = self.config.limits.prekey_low_water;
        c.one_time < low || c.one_time_kem < low
    }

    /// Current stock of a device.
    pub(crate) async fn prekey_counts(
        &self,
        device: DeviceAddr,
    ) -> Result<PrekeyCounts, RelayError> {
        self.blocking(move |s| s.prekey_counts(device)).await
    }

    /// Stores uploaded prekeys.
    pub(crate) async fn upload_prekeys(
        &self,
        device: DeviceAddr,
        r: UploadPrekeys,
    ) -> Result<response::Kind, RelayError> {
        let upload = PrekeyUpload {
            signed_prekey: r.signed_prekey,
            one_time: r.one_time_prekeys,
            last_resort_kem: r.last_resort_kem_prekey,
            one_time_kem: r.one_time_kem_prekeys,
        };
        let counts = self
            .blocking(move |s| s.upload_prekeys(device, &upload, MAX_PREKEY_STOCK))
            .await?;
        Ok(response::Kind::PrekeyStock(stock(counts)))
    }

    /// Claims one bundle per device of a user and warns owners whose stock
    /// ran low.
    pub(crate) async fn fetch_bundles(
        &self,
        requester: DeviceAddr,
        r: FetchBundles,
    ) -> Result<response::Kind, RelayError> {
        let user = UserId::from_slice("FetchBundles.user_id", &r.user_id)?;
        let claims = self.prekey_claims.clone();
        let now = Instant::now();
        let (account, claimed) = self
            .blocking(move |s| {
                let account = s.account(&user)?;
                let mut allowed =
                    |device| claims.allow(requester, DeviceAddr { user, device }, now);
                let claimed = s.claim_bundles(&user, &r.device_ids, &mut allowed)?;
                Ok((account, claimed))
            })
            .await?;
        let account = account.ok_or(RelayError::NotFound("user"))?;
        for (device, counts) in claimed.remaining {
            if self.is_low(counts) {
                let event = Event {
                    kind: Some(event::Kind::PrekeysLow(stock(counts))),
                };
                self.router
                    .notify_device(DeviceAddr { user, device }, &event);
            }
        }
        Ok(response::Kind::Bundles(Bundles {
            account_key: account.account_key.to_vec().into(),
            device_list: Some(account.device_list),
            bundles: claimed.bundles,
        }))
    }
}
