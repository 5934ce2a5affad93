//! The PostgreSQL blob backend: the conformance suite, and what is its own
//! — several nodes on one database (uploads resumed and blobs served
//! through another node, the quota held across nodes), refused stale
//! appends, no leaked chunks, and hostile rows. Each test process starts
//! its own throw-away server (`tern_testkit::services`).

use std::sync::Arc;

use tern_protocol::limits::MAX_BLOB_CHUNK_LEN;
use tern_testkit::services::PostgresServer;

use super::*;
use crate::blobs::BlobStore;
use crate::blobs::conformance::{
    Fixture, blob, blob_conformance_suite, device, download, limits, upload, upload_all,
};
use crate::store::postgres::{PgSettings, PgStore};

/// A database of its own, migrated by the store as a relay does.
struct PgFixture {
    /// Keeps the shared server running while this test uses it.
    _server: Arc<PostgresServer>,
    url: String,
    quota: u64,
}

impl PgFixture {
    /// A node's backend.
    fn backend(&self) -> PgBlobs {
        PgBlobs::open(&self.url, self.quota).unwrap()
    }

    /// Runs a statement on the database.
    async fn sql(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> u64 {
        let blobs = self.backend();
        exec(&blobs.conn().await.unwrap(), sql, params)
            .await
            .unwrap()
    }

    /// Rows of `table`.
    async fn count(&self, table: &str) -> i64 {
        let blobs = self.backend();
        let c = blobs.conn().await.unwrap();
        let sql = format!("SELECT count(*) FROM {table}");
        row(&c, &sql, &[]).await.unwrap().unwrap().get(0)
    }
}

impl Fixture for PgFixture {
    async fn fresh(quota: u64) -> Self {
        tokio::task::spawn_blocking(move || {
            let server = PostgresServer::shared().unwrap();
            let url = server.fresh_database().unwrap();
            let settings = PgSettings {
                url: url.clone(),
                chat_shards: Vec::new(),
                pool_size: 2,
                queue_quota: u64::MAX,
            };
            drop(PgStore::open(&settings).unwrap());
            Self {
                _server: server,
                url,
                quota,
            }
        })
        .await
        .unwrap()
    }

    fn node(&self) -> BlobStore {
        BlobStore::with_backend(Box::new(self.backend()), &limits(self.quota))
    }

    async fn age(&self, id: BlobId) {
        for table in ["blobs SET created_ms", "blob_charges SET charged_ms"] {
            let sql = format!("UPDATE {table} = 0 WHERE blob_id = $1");
            self.sql(&sql, &[&&id.0[..]]).await;
        }
    }
}

blob_conformance_suite!(super::PgFixture);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_resumes_and_downloads_through_another_node() {
    let fixture = PgFixture::fresh(u64::MAX).await;
    let (a, b) = (fixture.node(), fixture.node());
    let (data, id) = blob(2 * MAX_BLOB_CHUNK_LEN + 77, 1);
    let cut = MAX_BLOB_CHUNK_LEN + 3;
    let (_, outcome) = upload(&a, device(1), (&data, id), (0, cut), true).await;
    assert!(outcome.is_err());
    let (statuses, outcome) = upload(&b, device(1), (&data, id), (cut, data.len()), false).await;
    outcome.unwrap();
    assert_eq!(statuses[0].received, cut as u64);
    assert_eq!(download(&a, id, 0).await.unwrap(), data);
    assert_eq!(download(&b, id, 100).await.unwrap(), data[100..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quota_holds_across_nodes_charging_at_once() {
    let fixture = PgFixture::fresh(1000).await;
    let (a, b) = (fixture.backend(), fixture.backend());
    for n in 1..=8 {
        let owner = UserId([n; 16]);
        let (x, y) = (blob(1, n).1, blob(2, n).1);
        let (first, second) = tokio::join!(a.charge(owner, x, 600), b.charge(owner, y, 600));
        assert!(
            first.is_ok() != second.is_ok(),
            "exactly one fits: {first:?} {second:?}"
        );
        let refused = first.and(second).unwrap_err();
        assert!(matches!(refused, RelayError::QuotaExceeded(_)), "{refused}");
        // Charging a blob again replaces its charge.
        let charged = if a.charge(owner, x, 1000).await.is_ok() {
            x
        } else {
            y
        };
        b.charge(owner, charged, 1000).await.unwrap();
        b.release(owner, charged).await.unwrap();
        a.charge(owner, blob(3, n).1, 1000).await.unwrap();
    }
    // Through the protocol: one node's upload counts on the other.
    let (a, b) = (fixture.node(), fixture.node());
    let owner = device(20);
    let (first, first_id) = blob(600, 1);
    upload_all(&a, owner, &first, first_id).await;
    let (second, second_id) = blob(500, 2);
    let (_, refused) = upload(&b, owner, (&second, second_id), (0, 500), false).await;
    assert!(
        matches!(refused, Err(RelayError::QuotaExceeded(_))),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_append_is_refused_and_nothing_leaks() {
    let fixture = PgFixture::fresh(u64::MAX).await;
    let pg = fixture.backend();
    let (data, id) = blob(MAX_BLOB_CHUNK_LEN + 10, 2);
    let who = device(1);
    let piece = |from: usize, to: usize| Bytes::copy_from_slice(&data[from..to]);
    assert_eq!(pg.open_partial(id, who).await.unwrap(), 0);
    pg.append(id, who, 0, piece(0, 10)).await.unwrap();
    // Another node's stream of the same device, behind or ahead.
    for stale in [0, 11] {
        let refused = pg.append(id, who, stale, piece(10, 20)).await.unwrap_err();
        assert!(matches!(refused, RelayError::Conflict(_)), "{refused}");
    }
    pg.truncate(id, who).await.unwrap();
    assert_eq!(pg.open_partial(id, who).await.unwrap(), 0);
    pg.append(id, who, 0, piece(0, MAX_BLOB_CHUNK_LEN))
        .await
        .unwrap();
    pg.append(
        id,
        who,
        MAX_BLOB_CHUNK_LEN as u64,
        piece(MAX_BLOB_CHUNK_LEN, data.len()),
    )
    .await
    .unwrap();
    assert!(
        !pg.finish(id, who, data.len() as u64 + 1).await.unwrap(),
        "wrong size"
    );
    assert_eq!(
        fixture.count("blob_chunks").await,
        0,
        "discarded with its partial"
    );

    // Two devices finish the same blob: one copy of its chunks is kept.
    let store = fixture.node();
    upload_all(&store, device(1), &data, id).await;
    pg.open_partial(id, device(2)).await.unwrap();
    pg.append(id, device(2), 0, piece(0, data.len()))
        .await
        .unwrap();
    assert!(pg.finish(id, device(2), data.len() as u64).await.unwrap());
    assert_eq!(fixture.count("blob_chunks").await, 2);
    assert_eq!(download(&store, id, 0).await.unwrap(), data);

    // The sweep leaves nothing behind.
    pg.open_partial(blob(5, 5).1, device(3)).await.unwrap();
    let later = SystemTime::now() + std::time::Duration::from_secs(3600);
    assert_eq!(pg.sweep(later).await.unwrap(), 2);
    for table in ["blobs", "blob_partials", "blob_chunks", "blob_charges"] {
        assert_eq!(fixture.count(table).await, 0, "{table}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_rows_are_errors_not_panics() {
    let fixture = PgFixture::fresh(u64::MAX).await;
    let store = fixture.node();
    let (data, id) = blob(MAX_BLOB_CHUNK_LEN + 10, 3);
    upload_all(&store, device(1), &data, id).await;
    let key: &(dyn ToSql + Sync) = &&id.0[..];

    fixture.sql("UPDATE blobs SET size = size + 5", &[]).await;
    let short = download(&store, id, 0).await.unwrap_err();
    assert!(matches!(short, RelayError::Unavailable(_)), "{short}");

    fixture
        .sql("UPDATE blob_chunks SET pos = pos + 3 WHERE pos = 0", &[])
        .await;
    let gap = download(&store, id, 1).await.unwrap_err();
    assert!(matches!(gap, RelayError::Unavailable(_)), "{gap}");

    fixture
        .sql("UPDATE blobs SET size = -1 WHERE blob_id = $1", &[key])
        .await;
    let negative = download(&store, id, 0).await.unwrap_err();
    assert!(
        matches!(negative, RelayError::Store(StoreError::Corrupt(_))),
        "{negative}"
    );

    // A chunk past the offset read, and an upload that does not hash.
    let pg = fixture.backend();
    fixture.sql("UPDATE blobs SET size = 100", &[]).await;
    let far = pg.read(id, 0, 10).await.unwrap();
    assert!(far.is_empty(), "no chunk reaches offset 0");
    pg.open_partial(id, device(2)).await.unwrap();
    pg.append(id, device(2), 0, Bytes::from_static(b"x"))
        .await
        .unwrap();
    fixture
        .sql("UPDATE blob_partials SET len = 1000", &[])
        .await;
    assert!(!pg.finish(id, device(2), 1000).await.unwrap());
}
