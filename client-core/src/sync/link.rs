//! What the engine needs from the relay, as traits.
//!
//! - [`Relay`]: requests and their answers — all the send and receive paths
//!   use. Generic (`async fn`), so that tests drive those paths with an
//!   in-memory relay.
//! - [`RelayLink`]: the whole connection as a trait object — requests, the
//!   delivery-event stream ([`RelayEvents`]), ephemeral datagrams and blob
//!   transfers. [`RelayConnection`] is the real one; every [`RelayLink`] is a
//!   [`Relay`].
//! - [`RelayLayer`]: set on
//!   [`ClientConfig::relay_layer`](crate::client::ClientConfig::relay_layer),
//!   it receives every relay connection the client opens and returns the link
//!   the client uses instead: a wrapper may observe, delay, alter or fail any
//!   request, event or transfer (fault injection, tracing, metrics).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tern_protocol::wire::{EphemeralEvent, event, request, response};

use crate::net::{EventStream, NetError, RelayConnection};

/// What the send and receive paths need from the relay: one request, one
/// answer (`Response{error}` as [`NetError::Relay`]).
pub trait Relay: Sync {
    /// Sends one request and returns the relay's answer.
    fn request(
        &self,
        kind: request::Kind,
    ) -> impl Future<Output = Result<response::Kind, NetError>> + Send;
}

/// A boxed future of a [`RelayLink`] operation.
pub type LinkFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, NetError>> + Send + 'a>>;

/// Supplies an upload's bytes: `(offset, max)` returns up to `max` bytes of
/// the blob starting at `offset` (never empty before the end). An error stops
/// the upload; the relay keeps what it received.
pub type BlobSource<'a> = dyn FnMut(u64, usize) -> Result<Vec<u8>, NetError> + Send + 'a;

/// Receives a download's chunks in order: `(offset, data)`. An error stops
/// the download.
pub type BlobSink<'a> = dyn FnMut(u64, &[u8]) -> Result<(), NetError> + Send + 'a;

/// A relay connection as the client uses it. [`RelayConnection`] implements
/// it over QUIC; a [`RelayLayer`] may wrap it, delegating what it does not
/// change to the inner link.
pub trait RelayLink: Send + Sync {
    /// Sends one request and returns the relay's answer; `Response{error}`
    /// becomes [`NetError::Relay`].
    fn request(&self, kind: request::Kind) -> LinkFuture<'_, response::Kind>;

    /// The relay's delivery stream (deliveries and notices, in order). The
    /// engine takes it once per connection.
    fn events(&self) -> Box<dyn RelayEvents>;

    /// The next ephemeral event (typing, presence) from the relay.
    fn next_ephemeral(&self) -> LinkFuture<'_, EphemeralEvent>;

    /// Sends an ephemeral event (typing), best effort.
    fn send_ephemeral(&self, event: &EphemeralEvent) -> Result<(), NetError>;

    /// Uploads the blob with SHA-256 `sha256` and `size` bytes, resuming
    /// from what the relay already holds; `source` supplies the bytes.
    fn upload_blob<'a>(
        &'a self,
        sha256: [u8; 32],
        size: u64,
        source: &'a mut BlobSource<'_>,
    ) -> LinkFuture<'a, ()>;

    /// Downloads a blob from `offset` into `sink`; returns its total size.
    fn download_blob<'a>(
        &'a self,
        blob_id: [u8; 32],
        offset: u64,
        sink: &'a mut BlobSink<'_>,
    ) -> LinkFuture<'a, u64>;

    /// Closes the connection.
    fn close(&self);
}

/// The relay's delivery stream of one connection.
pub trait RelayEvents: Send + Sync {
    /// The next event; `Ok(None)` when the relay finished the stream.
    fn next(&mut self) -> LinkFuture<'_, Option<event::Kind>>;
}

/// Receives every relay connection the client opens — the engine's, and the
/// short-lived ones of account creation and device linking — once it is
/// ready for requests (after the hello and the authentication or
/// registration, if any), and returns the link the client uses in its place.
/// The engine wraps each new connection after a reconnect again.
pub trait RelayLayer: Send + Sync {
    /// Wraps (or returns unchanged) a new connection.
    fn wrap(&self, link: Arc<dyn RelayLink>) -> Arc<dyn RelayLink>;
}

/// `conn` as the client uses it: through `layer` when one is set.
pub(crate) fn layered(
    layer: Option<&Arc<dyn RelayLayer>>,
    conn: RelayConnection,
) -> Arc<dyn RelayLink> {
    let link: Arc<dyn RelayLink> = Arc::new(conn);
    match layer {
        Some(layer) => layer.wrap(link),
        None => link,
    }
}

impl<T: RelayLink + ?Sized> Relay for T {
    fn request(
        &self,
        kind: request::Kind,
    ) -> impl Future<Output = Result<response::Kind, NetError>> + Send {
        RelayLink::request(self, kind)
    }
}

impl RelayLink for RelayConnection {
    fn request(&self, kind: request::Kind) -> LinkFuture<'_, response::Kind> {
        Box::pin(RelayConnection::request(self, kind))
    }

    fn events(&self) -> Box<dyn RelayEvents> {
        Box::new(RelayConnection::events(self))
    }

    fn next_ephemeral(&self) -> LinkFuture<'_, EphemeralEvent> {
        Box::pin(RelayConnection::next_ephemeral(self))
    }

    fn send_ephemeral(&self, event: &EphemeralEvent) -> Result<(), NetError> {
        RelayConnection::send_ephemeral(self, event)
    }

    fn upload_blob<'a>(
        &'a self,
        sha256: [u8; 32],
        size: u64,
        source: &'a mut BlobSource<'_>,
    ) -> LinkFuture<'a, ()> {
        Box::pin(RelayConnection::upload_blob(self, sha256, size, source))
    }

    fn download_blob<'a>(
        &'a self,
        blob_id: [u8; 32],
        offset: u64,
        sink: &'a mut BlobSink<'_>,
    ) -> LinkFuture<'a, u64> {
        Box::pin(RelayConnection::download_blob(self, blob_id, offset, sink))
    }

    fn close(&self) {
        RelayConnection::close(self);
    }
}

impl RelayEvents for EventStream {
    fn next(&mut self) -> LinkFuture<'_, Option<event::Kind>> {
        Box::pin(EventStream::next(self))
    }
}
