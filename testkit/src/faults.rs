//! Faults injected between a tern-core client and the relay, through the
//! client's [`RelayLayer`] hook: every connection the client opens passes
//! through [`Faults::wrap`], and everything not named here passes unchanged.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tern_core::{BlobSink, BlobSource, LinkFuture, NetError, RelayEvents, RelayLayer, RelayLink};
use tern_protocol::wire::{EphemeralEvent, ErrorCode, request, response};

/// The faults to inject; the default injects none.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Answer every acknowledged `Send` with `UNAVAILABLE` (retry after
    /// [`LOST_ACK_RETRY`]), as if the ack was lost after the relay stored the
    /// message: the client keeps the entry and sends it again.
    pub lose_send_acks: bool,
    /// Fail blob uploads after this many chunks (the relay keeps those), as
    /// if the connection dropped mid-upload.
    pub cut_uploads_after: Option<u32>,
    /// Damages or repeats the sends of chosen messages, so that the relay
    /// stores what a faulty or hostile relay would deliver.
    pub tamper: Option<Arc<Tamper>>,
}

/// Messages (by client message id) whose next `Send` is tampered with.
#[derive(Debug, Default)]
pub struct Tamper {
    corrupt: Mutex<HashSet<[u8; 16]>>,
    duplicate: Mutex<HashSet<[u8; 16]>>,
}

impl Tamper {
    /// The next send of message `id` has one bit flipped in every per-device
    /// ciphertext (the relay stores the damaged entry).
    pub fn corrupt(&self, id: [u8; 16]) {
        lock(&self.corrupt).insert(id);
    }

    /// The next send of message `id` is sent a second time, unchanged but
    /// under a new client message id: the relay stores the same ciphertexts
    /// in two entries.
    pub fn duplicate(&self, id: [u8; 16]) {
        lock(&self.duplicate).insert(id);
    }

    /// Applies the plan to a send: damages it in place; returns the copy to
    /// send after it, if any.
    fn apply(&self, send: &mut tern_protocol::wire::Send) -> Option<tern_protocol::wire::Send> {
        let id: [u8; 16] = send.client_message_id.as_ref().try_into().ok()?;
        if lock(&self.corrupt).remove(&id) {
            for device in &mut send.device_ciphertexts {
                let mut bytes = device.ciphertext.to_vec();
                if let Some(last) = bytes.last_mut() {
                    *last ^= 0x01;
                }
                device.ciphertext = bytes.into();
            }
        }
        if !lock(&self.duplicate).remove(&id) {
            return None;
        }
        let mut copy = send.clone();
        copy.client_message_id = crate::random::<16>().to_vec().into();
        Some(copy)
    }
}

fn lock<T>(set: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    set.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The wait the lost-ack answer asks for.
pub const LOST_ACK_RETRY: Duration = Duration::from_millis(200);

impl RelayLayer for Faults {
    fn wrap(&self, link: Arc<dyn RelayLink>) -> Arc<dyn RelayLink> {
        Arc::new(FaultyLink {
            inner: link,
            faults: self.clone(),
        })
    }
}

/// A relay link with [`Faults`] applied.
struct FaultyLink {
    inner: Arc<dyn RelayLink>,
    faults: Faults,
}

impl RelayLink for FaultyLink {
    fn request(&self, mut kind: request::Kind) -> LinkFuture<'_, response::Kind> {
        let lose_ack = self.faults.lose_send_acks && matches!(kind, request::Kind::Send(_));
        let copy = match (&mut kind, &self.faults.tamper) {
            (request::Kind::Send(send), Some(tamper)) => tamper.apply(send),
            _ => None,
        };
        let answer = self.inner.request(kind);
        Box::pin(async move {
            let answer = answer.await;
            if let Some(copy) = copy {
                let repeated = self.inner.request(request::Kind::Send(copy)).await;
                assert!(repeated.is_ok(), "the repeated send failed: {repeated:?}");
            }
            match answer {
                Ok(response::Kind::SendAck(_)) if lose_ack => Err(NetError::Relay {
                    code: ErrorCode::Unavailable,
                    message: "ack lost (injected)".into(),
                    retry_after: Some(LOST_ACK_RETRY),
                    mismatched_devices: None,
                }),
                other => other,
            }
        })
    }

    fn events(&self) -> Box<dyn RelayEvents> {
        self.inner.events()
    }

    fn next_ephemeral(&self) -> LinkFuture<'_, EphemeralEvent> {
        self.inner.next_ephemeral()
    }

    fn send_ephemeral(&self, event: &EphemeralEvent) -> Result<(), NetError> {
        self.inner.send_ephemeral(event)
    }

    fn upload_blob<'a>(
        &'a self,
        sha256: [u8; 32],
        size: u64,
        source: &'a mut BlobSource<'_>,
    ) -> LinkFuture<'a, ()> {
        let Some(limit) = self.faults.cut_uploads_after else {
            return self.inner.upload_blob(sha256, size, source);
        };
        Box::pin(async move {
            let mut sent = 0;
            let mut cut = |offset: u64, max: usize| {
                if sent >= limit {
                    return Err(NetError::Connect("upload cut off (injected)".into()));
                }
                sent += 1;
                source(offset, max)
            };
            self.inner.upload_blob(sha256, size, &mut cut).await
        })
    }

    fn download_blob<'a>(
        &'a self,
        blob_id: [u8; 32],
        offset: u64,
        sink: &'a mut BlobSink<'_>,
    ) -> LinkFuture<'a, u64> {
        self.inner.download_blob(blob_id, offset, sink)
    }

    fn close(&self) {
        self.inner.close();
    }
}
