//! Device lists persist across restarts: rollbacks stay refused and dropped
//! devices lose their sessions. Runs offline (the relay address is unused).

use bytes::Bytes;
use prost::Message;
use tern_protocol::wire::{DeviceEntry, DeviceList, SignedDeviceList, UserInfo};
use tern_transport::{CertFingerprint, TrustPolicy};

use super::*;
use crate::random::rng;
use crate::store::DeviceAddress;
use crate::sync::account::LocalAccount;
use tern_crypto::identity::AccountIdentity;

const KEY: [u8; 32] = [9; 32];
const BOB: UserId = [0xb0; 16];

fn config(dir: &tempfile::TempDir) -> ClientConfig {
    let relay = RelayAddress::new(
        "127.0.0.1:9".parse().unwrap(),
        "tern-relay",
        TrustPolicy::Pinned(CertFingerprint([0; 32])),
    );
    ClientConfig::new(dir.path().join("alice.db"), relay)
}

/// A registered account in a fresh store, opened offline.
async fn offline_client(dir: &tempfile::TempDir) -> Client {
    let config = config(dir);
    let store = Store::open(&config.store_path, KeySource::raw(KEY)).unwrap();
    let mut account = LocalAccount::generate("alice".into());
    account.registered = true;
    store.transaction(|tx| account.save(tx)).unwrap();
    drop(store);
    Client::open(config, KeySource::raw(KEY)).await.unwrap()
}

/// Bob's directory entry: his device list `version` naming `devices`.
fn bob_info(account: &AccountIdentity, version: u64, devices: &[u32]) -> UserInfo {
    let list = DeviceList {
        user_id: Bytes::copy_from_slice(&BOB),
        version,
        devices: devices
            .iter()
            .map(|d| DeviceEntry {
                device_id: *d,
                identity_key: Bytes::copy_from_slice(&[*d as u8; 32]),
            })
            .collect(),
    }
    .encode_to_vec();
    let signature = account.sign(&list);
    UserInfo {
        user_id: Bytes::copy_from_slice(&BOB),
        user_name: "bob".into(),
        account_key: Bytes::copy_from_slice(&account.public_key().to_bytes()),
        device_list: Some(SignedDeviceList {
            device_list: list.into(),
            signature: Bytes::copy_from_slice(&signature),
        }),
    }
}

fn bob_device(device_id: u32) -> DeviceAddress {
    DeviceAddress {
        user_id: BOB,
        device_id,
    }
}

fn stored_version(client: &Client) -> Option<u64> {
    client
        .core
        .store
        .transaction(|tx| tx.device_list(&BOB))
        .unwrap()
        .map(|l| l.version)
}

#[tokio::test]
async fn a_dropped_device_loses_its_session() {
    let dir = tempfile::tempdir().unwrap();
    let client = offline_client(&dir).await;
    let bob = AccountIdentity::generate(&mut rng());
    client
        .core
        .accept_user_info(&bob_info(&bob, 5, &[1, 2]))
        .unwrap();
    client
        .core
        .store
        .transaction(|tx| tx.put_session(&bob_device(2), b"s", b"state", true))
        .unwrap();
    client
        .core
        .accept_user_info(&bob_info(&bob, 6, &[1]))
        .unwrap();
    let session = client
        .core
        .store
        .transaction(|tx| tx.active_session(&bob_device(2)))
        .unwrap();
    assert!(session.is_none(), "no session left with the removed device");
    assert_eq!(stored_version(&client), Some(6));
    client.shutdown().await;
}

#[tokio::test]
async fn a_rollback_is_refused_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let bob = AccountIdentity::generate(&mut rng());
    let client = offline_client(&dir).await;
    client
        .core
        .accept_user_info(&bob_info(&bob, 5, &[1]))
        .unwrap();
    client
        .core
        .accept_user_info(&bob_info(&bob, 7, &[1, 2]))
        .unwrap();
    let contact_before = client.contact(BOB).unwrap();
    client.shutdown().await;
    drop(client);

    let client = Client::open(config(&dir), KeySource::raw(KEY))
        .await
        .unwrap();
    let mut events = client.subscribe();
    let refused = client.core.accept_user_info(&bob_info(&bob, 5, &[1]));
    assert!(
        matches!(
            refused,
            Err(ClientError::DeviceListRollback {
                known: 7,
                offered: 5,
                ..
            })
        ),
        "{refused:?}"
    );
    assert_eq!(
        events.next().await,
        Some(ClientEvent::DeviceListRollback {
            user_id: BOB,
            known_version: 7,
            offered_version: 5,
        })
    );
    assert_eq!(stored_version(&client), Some(7));
    assert_eq!(client.contact(BOB).unwrap(), contact_before);
    let equivocation = client.core.accept_user_info(&bob_info(&bob, 7, &[1]));
    assert!(matches!(equivocation, Err(ClientError::Verification(_))));
    assert_eq!(stored_version(&client), Some(7));
    client
        .core
        .accept_user_info(&bob_info(&bob, 8, &[1]))
        .unwrap();
    assert_eq!(stored_version(&client), Some(8));
    client.shutdown().await;
}
