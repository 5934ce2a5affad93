//! Attachments of several MiB through the relay's blob store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tern_core::client::{ClientError, TransferState};
use tern_tests::{TestClient, TestRelay, guard};

#[tokio::test]
async fn a_multi_mib_attachment_round_trips_and_a_corrupt_partial_download_is_caught() {
    let relay = TestRelay::start().await;
    let alice = TestClient::create(&relay, "alice").await;
    let mut bob = TestClient::create(&relay, "bob").await;
    let bob_id = guard(alice.client.add_contact("bob".into()))
        .await
        .unwrap()
        .user_id;
    let chat = alice.client.direct_chat(bob_id).unwrap();

    let data: Vec<u8> = (0..(3 * 1024 * 1024 + 12_345u32))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let source = alice.dir.path().join("holiday.bin");
    std::fs::write(&source, &data).unwrap();
    let sent = guard(alice.client.send_attachment(
        chat,
        source.clone(),
        "application/octet-stream".into(),
    ))
    .await
    .unwrap();
    assert_eq!(sent.text, "holiday.bin");

    let received = bob.next_message().await;
    assert_eq!(received.text, "holiday.bin");
    let info = bob.client.attachments(received.id).unwrap();
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].size, data.len() as u64);
    assert_eq!(info[0].state, TransferState::Downloading);

    // A damaged partial download is detected by the digest check ...
    let dest = bob.dir.path().join("holiday.bin");
    let mut part = dest.clone().into_os_string();
    part.push(".part");
    std::fs::write(&part, vec![0u8; 1000]).unwrap();
    let err = guard(bob.client.download_attachment(received.id, dest.clone()))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Verification(_)), "{err:?}");
    // ... and the next attempt downloads it cleanly.
    guard(bob.client.download_attachment(received.id, dest.clone()))
        .await
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    let info = bob.client.attachments(received.id).unwrap();
    assert_eq!(info[0].state, TransferState::Downloaded);
    relay.stop().await;
}
