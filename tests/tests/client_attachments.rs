//! Attachments of several MiB through the relay's blob store; interrupted
//! uploads resume.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use tern_core::ClientEvent;
use tern_core::{ClientError, TransferState};
use tern_crypto::attachment::{SEALED_CHUNK_LEN, sealed_len};
use tern_testkit::{Faults, TestClient, TestRelay, guard};

/// Deterministic test data of `len` bytes.
fn sample(len: u32) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

#[tokio::test]
async fn a_multi_mib_attachment_round_trips_and_a_corrupt_partial_download_is_caught() {
    let relay = TestRelay::start().await;
    let (alice, mut bob, chat) = TestClient::direct_pair(&relay, "alice", "bob").await;

    let data = sample(3 * 1024 * 1024 + 12_345);
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

#[tokio::test]
async fn an_interrupted_upload_resumes_after_a_restart_and_sends_only_the_rest() {
    const SENT_BEFORE: u32 = 3;
    let relay = TestRelay::start().await;
    let (alice, mut bob, chat) = TestClient::direct_pair(&relay, "alice", "bob").await;
    let data = sample(2 * 1024 * 1024 + 777);
    let source = alice.dir.path().join("climb.mp4");
    std::fs::write(&source, &data).unwrap();

    // The upload breaks off after three chunks ...
    let mut interrupted = alice.config.clone();
    interrupted.relay_layer = Some(Arc::new(Faults {
        cut_uploads_after: Some(SENT_BEFORE),
        ..Faults::default()
    }));
    let alice = alice.reopen_online(interrupted).await;
    let err = guard(
        alice
            .client
            .send_attachment(chat, source.clone(), "video/mp4".into()),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ClientError::Offline(_)), "{err:?}");

    // ... and after a restart the same call resumes where the relay stands.
    let mut healthy = alice.config.clone();
    healthy.relay_layer = None;
    let mut alice = alice.reopen_online(healthy).await;
    let sent = guard(
        alice
            .client
            .send_attachment(chat, source.clone(), "video/mp4".into()),
    )
    .await
    .unwrap();
    let (resumed_from, size) = alice
        .expect(|event| match event {
            ClientEvent::AttachmentUploaded {
                resumed_from, size, ..
            } => Some((resumed_from, size)),
            _ => None,
        })
        .await;
    assert_eq!(size, sealed_len(data.len() as u64));
    assert_eq!(
        resumed_from,
        u64::from(SENT_BEFORE) * SEALED_CHUNK_LEN as u64,
        "only the remainder was sent"
    );
    assert_eq!(sent.text, "climb.mp4");

    let received = bob.next_message().await;
    let dest = bob.dir.path().join("climb.mp4");
    guard(bob.client.download_attachment(received.id, dest.clone()))
        .await
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    relay.stop().await;
}
