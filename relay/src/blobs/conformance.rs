//! One suite of blob tests that every backend passes, run through the
//! shared protocol code ([`BlobStore`]) with in-memory streams. A
//! backend's tests implement [`Fixture`] and invoke
//! [`blob_conformance_suite!`]; what is a backend's own (its layout, its
//! behaviour across nodes) stays with it.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use tern_protocol::limits::MAX_BLOB_CHUNK_LEN;
use tern_protocol::wire::{
    BlobChunk, BlobDownload, BlobUploadStart, BlobUploadStatus, ServerFrame, response, server_frame,
};
use tern_protocol::{BlobId, UserId};

use super::{BlobStore, ChunkSource, FrameSink};
use crate::config::LimitsConfig;
use crate::error::RelayError;
use crate::store::DeviceAddr;

/// Blob storage under test.
pub(crate) trait Fixture: Sized + Send + Sync + 'static {
    /// Fresh, empty storage holding each account to `quota` bytes.
    fn fresh(quota: u64) -> impl Future<Output = Self> + Send;
    /// A node's blob store on this storage (a new one at each call).
    fn node(&self) -> BlobStore;
    /// Makes complete blob `id` look older than any retention cutoff.
    fn age(&self, id: BlobId) -> impl Future<Output = ()> + Send;
}

/// Runs every test of the suite against `$fixture`.
macro_rules! blob_conformance_suite {
    ($fixture:ty) => {
        mod conformance {
            use crate::blobs::conformance as suite;
            crate::blobs::conformance::blob_conformance_suite!(@tests $fixture;
                an_upload_resumes_after_a_dropped_stream_and_downloads_in_ranges,
                a_wrong_ciphertext_is_discarded_and_its_charge_released,
                two_devices_uploading_one_blob_do_not_disturb_each_other,
                each_blob_counts_once_against_the_quota_until_it_expires,
                a_partial_upload_counts_until_the_sweep_removes_it,
            );
        }
    };
    (@tests $fixture:ty; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                suite::$name::<$fixture>().await;
            }
        )*
    };
}
pub(crate) use blob_conformance_suite;

/// The frames a transfer sent.
#[derive(Default)]
pub(crate) struct Frames(pub(crate) Vec<ServerFrame>);

impl FrameSink for Frames {
    async fn send(&mut self, frame: &ServerFrame) -> Result<(), RelayError> {
        self.0.push(frame.clone());
        Ok(())
    }
}

/// The chunks of an upload stream, then how it ends.
pub(crate) struct Chunks(pub(crate) VecDeque<Result<BlobChunk, RelayError>>);

impl ChunkSource for Chunks {
    async fn next_chunk(&mut self) -> Result<Option<BlobChunk>, RelayError> {
        self.0.pop_front().transpose()
    }
}

/// Client chunks: not a divisor of what storage gathers them into.
const CHUNK: usize = 100_000;

/// A blob of `len` bytes (`seed` varies it) and its id.
pub(crate) fn blob(len: usize, seed: u8) -> (Vec<u8>, BlobId) {
    let data: Vec<u8> = (0..len)
        .map(|i| (i % 251) as u8 ^ seed.wrapping_mul(31))
        .collect();
    let id = BlobId(Sha256::digest(&data).into());
    (data, id)
}

/// Device 1 of account `n`.
pub(crate) fn device(n: u8) -> DeviceAddr {
    DeviceAddr {
        user: UserId([n; 16]),
        device: 1,
    }
}

/// Limits with `quota` bytes of blobs per account.
pub(crate) fn limits(quota: u64) -> LimitsConfig {
    LimitsConfig {
        blob_quota_bytes: quota,
        ..LimitsConfig::default()
    }
}

/// An upload of `data[from..to]` as blob `id` of `data.len()` bytes whose
/// stream breaks after the chunks when `broken`; returns the statuses and
/// the outcome.
pub(crate) async fn upload(
    store: &BlobStore,
    who: DeviceAddr,
    (data, id): (&[u8], BlobId),
    (from, to): (usize, usize),
    broken: bool,
) -> (Vec<BlobUploadStatus>, Result<(), RelayError>) {
    let mut chunks: VecDeque<_> = data[from..to]
        .chunks(CHUNK)
        .scan(from, |offset, piece| {
            let chunk = BlobChunk {
                offset: *offset as u64,
                data: piece.to_vec().into(),
            };
            *offset += piece.len();
            Some(Ok(chunk))
        })
        .collect();
    if broken {
        chunks.push_back(Err(RelayError::Unavailable("dropped")));
    }
    let start = BlobUploadStart {
        sha256: id.to_wire(),
        size: data.len() as u64,
    };
    let mut frames = Frames::default();
    let outcome = store
        .upload(who, start, 7, &mut frames, &mut Chunks(chunks))
        .await;
    let statuses = frames.0.into_iter().map(|f| match f.body {
        Some(server_frame::Body::Response(r)) => match r.kind {
            Some(response::Kind::BlobUploadStatus(s)) if r.request_id == 7 => s,
            other => panic!("expected a status, got {other:?}"),
        },
        other => panic!("expected a response, got {other:?}"),
    });
    (statuses.collect(), outcome)
}

/// A whole, unbroken upload.
pub(crate) async fn upload_all(store: &BlobStore, who: DeviceAddr, data: &[u8], id: BlobId) {
    let (statuses, outcome) = upload(store, who, (data, id), (0, data.len()), false).await;
    outcome.unwrap();
    assert!(statuses.last().unwrap().complete);
}

/// Blob `id` downloaded from `offset`, checking the frames on the way.
pub(crate) async fn download(
    store: &BlobStore,
    id: BlobId,
    offset: u64,
) -> Result<Vec<u8>, RelayError> {
    let req = BlobDownload {
        blob_id: id.to_wire(),
        offset,
    };
    let mut frames = Frames::default();
    store.download_to(req, 3, &mut frames).await?;
    let mut frames = frames.0.into_iter();
    let size = match frames.next().and_then(|f| f.body) {
        Some(server_frame::Body::Response(r)) => match r.kind {
            Some(response::Kind::BlobInfo(info)) => info.size,
            other => panic!("expected BlobInfo, got {other:?}"),
        },
        other => panic!("expected a response, got {other:?}"),
    };
    let mut out = Vec::new();
    for frame in frames {
        let Some(server_frame::Body::BlobChunk(chunk)) = frame.body else {
            panic!("expected a chunk")
        };
        assert_eq!(chunk.offset, offset + out.len() as u64);
        assert!(chunk.data.len() <= MAX_BLOB_CHUNK_LEN);
        out.extend_from_slice(&chunk.data);
    }
    assert_eq!(size, offset + out.len() as u64);
    Ok(out)
}

/// Runs the blocking sweep as the relay does; returns what it deleted.
pub(crate) async fn sweep(store: BlobStore, cutoff: SystemTime) -> (BlobStore, u64) {
    let store = Arc::new(store);
    let sweeping = store.clone();
    let deleted = tokio::task::spawn_blocking(move || sweeping.sweep(cutoff))
        .await
        .unwrap()
        .unwrap();
    (Arc::into_inner(store).unwrap(), deleted)
}

fn an_hour() -> Duration {
    Duration::from_secs(3600)
}

pub(crate) async fn an_upload_resumes_after_a_dropped_stream_and_downloads_in_ranges<F: Fixture>() {
    let fixture = F::fresh(u64::MAX).await;
    let store = fixture.node();
    let (data, id) = blob(3 * MAX_BLOB_CHUNK_LEN + 1000, 1);
    let cut = MAX_BLOB_CHUNK_LEN + 50_000;
    let (statuses, outcome) = upload(&store, device(1), (&data, id), (0, cut), true).await;
    assert!(
        matches!(outcome, Err(RelayError::Unavailable(_))),
        "{outcome:?}"
    );
    assert_eq!((statuses[0].received, statuses[0].complete), (0, false));
    assert!(matches!(
        download(&store, id, 0).await,
        Err(RelayError::NotFound(_))
    ));

    let (statuses, outcome) =
        upload(&store, device(1), (&data, id), (cut, data.len()), false).await;
    outcome.unwrap();
    assert_eq!(
        statuses[0].received, cut as u64,
        "resumes where storage stopped"
    );
    assert!(statuses[1].complete);
    assert_eq!(statuses[1].blob_id, id.to_wire());

    assert_eq!(download(&store, id, 0).await.unwrap(), data);
    for offset in [
        1,
        1000,
        MAX_BLOB_CHUNK_LEN - 1,
        cut + 7,
        data.len() - 1,
        data.len(),
    ] {
        let got = download(&store, id, offset as u64).await.unwrap();
        assert!(got == data[offset..], "download from {offset}");
    }
    let beyond = download(&store, id, data.len() as u64 + 1).await;
    assert!(
        matches!(beyond, Err(RelayError::BadRequest(_))),
        "{beyond:?}"
    );
    let unknown = download(&store, blob(10, 9).1, 0).await;
    assert!(
        matches!(unknown, Err(RelayError::NotFound(_))),
        "{unknown:?}"
    );

    // Stored now: another account's upload completes at once.
    let (statuses, outcome) = upload(&store, device(2), (&data, id), (0, 0), false).await;
    outcome.unwrap();
    assert_eq!(statuses.len(), 1);
    assert!(statuses[0].complete);
}

pub(crate) async fn a_wrong_ciphertext_is_discarded_and_its_charge_released<F: Fixture>() {
    let (data, id) = blob(300_000, 2);
    let fixture = F::fresh(data.len() as u64 + 10).await;
    let store = fixture.node();
    let mut wrong = data.clone();
    wrong[123_456] ^= 1;
    let (_, outcome) = upload(&store, device(1), (&wrong, id), (0, wrong.len()), false).await;
    assert!(
        matches!(outcome, Err(RelayError::BadRequest(_))),
        "{outcome:?}"
    );
    assert!(matches!(
        download(&store, id, 0).await,
        Err(RelayError::NotFound(_))
    ));

    // The charge went with the partial: another blob of the same size
    // fits, and the upload of the first starts from zero again.
    let (other, other_id) = blob(data.len(), 3);
    upload_all(&store, device(1), &other, other_id).await;
    assert_eq!(store.backend.open_partial(id, device(1)).await.unwrap(), 0);
    let (statuses, outcome) = upload(&store, device(2), (&data, id), (0, CHUNK), true).await;
    assert!(outcome.is_err());
    assert_eq!(statuses[0].received, 0);
    let rest = (CHUNK, data.len());
    let (statuses, outcome) = upload(&store, device(2), (&data, id), rest, false).await;
    outcome.unwrap();
    assert_eq!(statuses[0].received, CHUNK as u64);
    assert_eq!(download(&store, id, 0).await.unwrap(), data);
}

pub(crate) async fn two_devices_uploading_one_blob_do_not_disturb_each_other<F: Fixture>() {
    let fixture = F::fresh(u64::MAX).await;
    let store = fixture.node();
    let (data, id) = blob(2 * MAX_BLOB_CHUNK_LEN + 5, 4);
    let alice = device(1);
    let alice_phone = DeviceAddr { device: 2, ..alice };
    let (_, outcome) = upload(&store, alice, (&data, id), (0, 3 * CHUNK), true).await;
    assert!(outcome.is_err());

    // Alice's other device and Mallory see nothing of it; Mallory's wrong
    // ciphertext is refused and leaves it alone.
    let (statuses, _) = upload(&store, alice_phone, (&data, id), (0, CHUNK), true).await;
    assert_eq!(statuses[0].received, 0);
    let garbage = vec![7u8; data.len()];
    let (statuses, outcome) =
        upload(&store, device(9), (&garbage, id), (0, data.len()), false).await;
    assert_eq!(statuses[0].received, 0);
    assert!(
        matches!(outcome, Err(RelayError::BadRequest(_))),
        "{outcome:?}"
    );

    let (statuses, outcome) =
        upload(&store, alice, (&data, id), (3 * CHUNK, data.len()), false).await;
    outcome.unwrap();
    assert_eq!(statuses[0].received, 3 * CHUNK as u64);
    assert_eq!(download(&store, id, 0).await.unwrap(), data);

    // The phone finishes its own upload after all: the blob stays intact.
    let (statuses, outcome) =
        upload(&store, alice_phone, (&data, id), (0, data.len()), false).await;
    outcome.unwrap();
    assert!(statuses[0].complete, "already stored");
    assert_eq!(download(&store, id, 5).await.unwrap(), data[5..]);
}

pub(crate) async fn each_blob_counts_once_against_the_quota_until_it_expires<F: Fixture>() {
    let fixture = F::fresh(1000).await;
    let store = fixture.node();
    let (alice, bob) = (device(1), device(2));
    let (first, first_id) = blob(600, 5);
    let (second, second_id) = blob(500, 6);
    upload_all(&store, alice, &first, first_id).await;
    upload_all(&store, alice, &first, first_id).await;
    let (_, refused) = upload(&store, alice, (&second, second_id), (0, 500), false).await;
    assert!(
        matches!(refused, Err(RelayError::QuotaExceeded(_))),
        "{refused:?}"
    );
    upload_all(&store, bob, &second, second_id).await;

    // The sweep deletes alice's expired blob and frees her quota, and only
    // that: bob's blob is younger than the cutoff.
    fixture.age(first_id).await;
    let (store, deleted) = sweep(store, SystemTime::now() - an_hour()).await;
    assert_eq!(deleted, 1);
    assert!(matches!(
        download(&store, first_id, 0).await,
        Err(RelayError::NotFound(_))
    ));
    assert_eq!(download(&store, second_id, 0).await.unwrap(), second);
    let (third, third_id) = blob(900, 7);
    upload_all(&store, alice, &third, third_id).await;
    let (fourth, fourth_id) = blob(900, 10);
    let (_, refused) = upload(&store, bob, (&fourth, fourth_id), (0, 900), false).await;
    assert!(
        matches!(refused, Err(RelayError::QuotaExceeded(_))),
        "bob's 500 bytes still count"
    );
}

pub(crate) async fn a_partial_upload_counts_until_the_sweep_removes_it<F: Fixture>() {
    let fixture = F::fresh(1000).await;
    let store = fixture.node();
    let (first, first_id) = blob(600, 8);
    let (second, second_id) = blob(500, 9);
    let (_, outcome) = upload(&store, device(1), (&first, first_id), (0, 100), true).await;
    assert!(outcome.is_err());
    let (_, refused) = upload(&store, device(1), (&second, second_id), (0, 500), false).await;
    assert!(
        matches!(refused, Err(RelayError::QuotaExceeded(_))),
        "{refused:?}"
    );

    let (store, deleted) = sweep(store, SystemTime::now() + an_hour()).await;
    assert_eq!(deleted, 1, "the partial upload");
    assert_eq!(
        store
            .backend
            .open_partial(first_id, device(1))
            .await
            .unwrap(),
        0
    );
    upload_all(&store, device(1), &second, second_id).await;
}
