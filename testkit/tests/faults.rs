//! The fault layer of the test kit against an in-memory relay link (no
//! relay): what it changes and that everything else passes through. The
//! workspace tests use the same layer against a real relay.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tern_core::{
    BlobSink, BlobSource, ClientError, LinkFuture, NetError, RelayEvents, RelayLayer, RelayLink,
};
use tern_protocol::wire::{
    Empty, EphemeralEvent, ErrorCode, Send, SendAck, event, request, response,
};
use tern_testkit::Faults;
use tern_testkit::faults::LOST_ACK_RETRY;

/// A relay in memory: acknowledges sends, keeps one blob, has no events.
#[derive(Default)]
struct MemoryLink {
    requests: Mutex<Vec<request::Kind>>,
    blob: Mutex<Vec<u8>>,
    closed: AtomicBool,
}

struct NoEvents;

impl RelayEvents for NoEvents {
    fn next(&mut self) -> LinkFuture<'_, Option<event::Kind>> {
        Box::pin(async { Ok(None) })
    }
}

impl RelayLink for MemoryLink {
    fn request(&self, kind: request::Kind) -> LinkFuture<'_, response::Kind> {
        let answer = match &kind {
            request::Kind::Send(_) => response::Kind::SendAck(SendAck {
                seq: 1,
                server_time_ms: 0,
                duplicate: false,
            }),
            _ => response::Kind::Ok(Empty {}),
        };
        self.requests.lock().unwrap().push(kind);
        Box::pin(async { Ok(answer) })
    }

    fn events(&self) -> Box<dyn RelayEvents> {
        Box::new(NoEvents)
    }

    fn next_ephemeral(&self) -> LinkFuture<'_, EphemeralEvent> {
        Box::pin(async { Err(NetError::NoResponse) })
    }

    fn send_ephemeral(&self, _event: &EphemeralEvent) -> Result<(), NetError> {
        Ok(())
    }

    fn upload_blob<'a>(
        &'a self,
        _sha256: [u8; 32],
        size: u64,
        source: &'a mut BlobSource<'_>,
    ) -> LinkFuture<'a, ()> {
        Box::pin(async move {
            loop {
                let offset = self.blob.lock().unwrap().len() as u64;
                if offset >= size {
                    return Ok(());
                }
                let chunk = source(offset, 10)?;
                self.blob.lock().unwrap().extend(chunk);
            }
        })
    }

    fn download_blob<'a>(
        &'a self,
        _blob_id: [u8; 32],
        offset: u64,
        sink: &'a mut BlobSink<'_>,
    ) -> LinkFuture<'a, u64> {
        Box::pin(async move {
            let blob = self.blob.lock().unwrap().clone();
            let start = usize::try_from(offset).unwrap();
            sink(offset, &blob[start..])?;
            Ok(blob.len() as u64)
        })
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }
}

fn wrapped(faults: Faults) -> (Arc<MemoryLink>, Arc<dyn RelayLink>) {
    let memory = Arc::new(MemoryLink::default());
    let link = faults.wrap(memory.clone());
    (memory, link)
}

#[tokio::test]
async fn a_layer_can_lose_the_ack_of_a_stored_send() {
    let (memory, link) = wrapped(Faults {
        lose_send_acks: true,
        ..Faults::default()
    });
    let answer = link.request(request::Kind::Send(Send::default())).await;
    assert!(
        matches!(
            answer,
            Err(NetError::Relay {
                code: ErrorCode::Unavailable,
                retry_after: Some(after),
                ..
            }) if after == LOST_ACK_RETRY
        ),
        "a retryable refusal, so the engine keeps the entry and resends it: {answer:?}"
    );
    assert_eq!(memory.requests.lock().unwrap().len(), 1, "the relay got it");
    let other = link
        .request(request::Kind::AckDelivered(Default::default()))
        .await
        .unwrap();
    assert_eq!(other, response::Kind::Ok(Empty {}));
    assert!(link.events().next().await.unwrap().is_none());
    link.close();
    assert!(memory.closed.load(Ordering::Relaxed));
}

#[tokio::test]
async fn a_layer_can_cut_an_upload_and_the_next_one_resumes() {
    let data: Vec<u8> = (0..50).collect();
    let (memory, link) = wrapped(Faults {
        cut_uploads_after: Some(3),
        ..Faults::default()
    });
    let mut source = |offset: u64, max: usize| {
        let start = usize::try_from(offset).unwrap();
        Ok(data[start..(start + max).min(data.len())].to_vec())
    };
    let cut = link
        .upload_blob([0; 32], 50, &mut source)
        .await
        .unwrap_err();
    assert!(matches!(ClientError::from(cut), ClientError::Offline(_)));
    assert_eq!(*memory.blob.lock().unwrap(), data[..30]);

    let healthy = memory.clone() as Arc<dyn RelayLink>;
    healthy.upload_blob([0; 32], 50, &mut source).await.unwrap();
    let mut downloaded = Vec::new();
    let size = link
        .download_blob([0; 32], 0, &mut |_, bytes: &[u8]| {
            downloaded.extend_from_slice(bytes);
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!((size, downloaded), (50, data));
}
