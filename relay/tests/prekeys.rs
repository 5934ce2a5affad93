//! The prekey directory over real QUIC.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;

use tern_protocol::wire::*;
use tern_testkit::raw::*;
use tern_testkit::{Account, TestRelay, guard, random};

fn fetch(user: [u8; 16]) -> request::Kind {
    request::Kind::FetchBundles(FetchBundles {
        user_id: user.to_vec().into(),
        device_ids: vec![],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_fetches_never_hand_out_a_one_time_key_twice() {
    // Without claim limits: every fetcher may take every key.
    let relay = TestRelay::start_with(|config| {
        config.limits.prekey_claims_per_pair_per_hour = 0;
        config.limits.prekey_claims_per_device_per_hour = 0;
    })
    .await;
    let at = &relay.address();
    let alice = Account::new("alice", 1);
    let mut a = RawClient::register(at, &alice).await.unwrap();
    let stock = a.ok(upload_prekeys(0..40, 0..10)).await;
    let response::Kind::PrekeyStock(stock) = stock else {
        panic!("expected stock")
    };
    assert_eq!(
        (stock.one_time_prekeys, stock.one_time_kem_prekeys),
        (40, 10)
    );

    let mut fetchers = Vec::new();
    for i in 0..6 {
        let c = RawClient::register(at, &Account::new(&format!("f{i}"), 1))
            .await
            .unwrap();
        fetchers.push(c);
    }
    let mut tasks = Vec::new();
    for c in fetchers {
        let user = alice.user_id;
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..10 {
                let response::Kind::Bundles(b) = c.ok(fetch(user)).await else {
                    panic!("expected bundles")
                };
                got.push(b.bundles.into_iter().next().unwrap());
            }
            got
        }));
    }
    let mut bundles = Vec::new();
    for t in tasks {
        bundles.extend(guard(t).await.unwrap());
    }
    assert_eq!(bundles.len(), 60);
    let one_time: Vec<u32> = bundles
        .iter()
        .filter_map(|b| b.one_time_prekey.as_ref().map(|k| k.id))
        .collect();
    let unique: HashSet<u32> = one_time.iter().copied().collect();
    assert_eq!(one_time.len(), 40, "every one-time key handed out");
    assert_eq!(unique.len(), 40, "and none twice");
    let kem_ids: Vec<u32> = bundles
        .iter()
        .filter(|b| !b.kem_prekey_is_last_resort)
        .map(|b| b.kem_prekey.as_ref().unwrap().id)
        .collect();
    assert_eq!(kem_ids.iter().copied().collect::<HashSet<_>>().len(), 10);
    assert_eq!(kem_ids.len(), 10);
    let last_resort = bundles.iter().filter(|b| b.kem_prekey_is_last_resort);
    assert!(
        last_resort
            .clone()
            .all(|b| b.kem_prekey.as_ref().unwrap().id == 9999)
    );
    assert_eq!(last_resort.count(), 50);

    // The owner was told its stock ran low.
    loop {
        if let event::Kind::PrekeysLow(s) = a.next_event().await {
            assert!(s.one_time_prekeys < 10 || s.one_time_kem_prekeys < 10);
            break;
        }
    }
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_without_prekeys_have_no_bundle_and_unknown_users_are_not_found() {
    let relay = TestRelay::start().await;
    let at = &relay.address();
    let alice = Account::new("alice", 1);
    let a = RawClient::register(at, &alice).await.unwrap();
    let response::Kind::Bundles(b) = a.ok(fetch(alice.user_id)).await else {
        panic!("expected bundles")
    };
    assert!(b.bundles.is_empty());
    let err = a.request(fetch(random())).await.unwrap_err();
    assert_eq!(code(&err), ErrorCode::NotFound);
    relay.stop().await;
}

/// The one-time keys among `bundles`.
fn one_time_ids(bundles: &[PrekeyBundle]) -> Vec<u32> {
    bundles
        .iter()
        .filter_map(|b| b.one_time_prekey.as_ref().map(|k| k.id))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_cannot_drain_one_time_prekeys_and_contacts_still_get_them() {
    let relay = TestRelay::start().await;
    let at = &relay.address();
    let alice = Account::new("alice", 1);
    let a = RawClient::register(at, &alice).await.unwrap();
    a.ok(upload_prekeys(0..99, 0..99)).await;
    let mallory = RawClient::register(at, &Account::new("mallory", 1))
        .await
        .unwrap();
    let bob = RawClient::register(at, &Account::new("bob", 1))
        .await
        .unwrap();

    // Mallory fetches Alice's bundle 99 times in a row: every answer is a
    // working bundle, but only the first few carry one-time prekeys.
    let mut taken = Vec::new();
    for _ in 0..99 {
        let response::Kind::Bundles(b) = mallory.ok(fetch(alice.user_id)).await else {
            panic!("expected bundles")
        };
        let bundle = b.bundles.first().expect("a bundle");
        assert!(bundle.signed_prekey.is_some() && bundle.kem_prekey.is_some());
        taken.extend(one_time_ids(&b.bundles));
    }
    let burst = tern_relay::LimitsConfig::default().prekey_claim_pair_burst as usize;
    assert_eq!(
        taken.len(),
        burst,
        "one-time prekeys a stranger got: {taken:?}"
    );

    // Bob, an honest contact, still gets a one-time prekey and a one-time
    // KEM prekey.
    let response::Kind::Bundles(b) = bob.ok(fetch(alice.user_id)).await else {
        panic!("expected bundles")
    };
    assert_eq!(one_time_ids(&b.bundles).len(), 1);
    assert!(!b.bundles[0].kem_prekey_is_last_resort);
    let response::Kind::PrekeyStock(stock) = a.ok(upload_prekeys(0..0, 0..0)).await else {
        panic!("expected stock")
    };
    assert_eq!(stock.one_time_prekeys, 99 - burst as u32 - 1);
    relay.stop().await;
}
