//! What a connection may make the relay read and hold in memory.
//!
//! Two layers bound it. QUIC flow control bounds bytes a peer sent that the
//! relay has not read yet (the connection's receive window). Frame readers
//! bound what the relay has read into its own buffers: every body byte is
//! charged to the connection's [`ByteBudget`], itself inside a relay-wide
//! one, and a frame must be finished within `limits.frame_timeout_secs` of
//! its first byte.
//!
//! Before authentication (and so on provisioning connections) all of it is
//! small: a few streams, a small window, small frames, and a relay-wide
//! pool of their own (`limits.request_bytes_unauthenticated`), so a flood
//! of anonymous connections never takes buffers from users. Authentication
//! opens the connection up to the configured limits and moves it to the
//! users' pool (`limits.request_bytes_total`), in which each connection's
//! first [`REQUEST_FLOOR`] bytes do not count: however full the pool, every
//! user can still make small requests.

use std::sync::Arc;
use std::time::Duration;

use quinn::{Connection, TransportConfig, VarInt};
use tern_protocol::limits::{MAX_FRAME_LEN, MAX_PRE_AUTH_FRAME_LEN};
use tern_transport::{ByteBudget, Exhausted, FrameIoError, FrameLimits};

use crate::config::LimitsConfig;
use crate::error::RelayError;

/// Streams an unauthenticated connection may have open: the control stream,
/// a request stream for a provisioning mailbox, and a spare.
pub(crate) const PRE_AUTH_STREAMS: u32 = 4;
/// Receive window of an unauthenticated connection.
pub(crate) const PRE_AUTH_WINDOW: u32 = 64 * 1024;
/// Request body bytes an unauthenticated connection may make the relay hold.
pub(crate) const PRE_AUTH_BUFFER: usize = PRE_AUTH_STREAMS as usize * MAX_PRE_AUTH_FRAME_LEN;
/// Stream receive window: one maximal frame plus headroom.
pub(crate) const STREAM_WINDOW: u32 = MAX_FRAME_LEN as u32 + 64 * 1024;
/// Receive window of an authenticated connection.
pub(crate) const CONNECTION_WINDOW: u32 = 8 * 1024 * 1024;
/// Request body bytes an authenticated connection may hold whatever the
/// users' pool holds: dozens of pipelined small requests.
pub(crate) const REQUEST_FLOOR: usize = 64 * 1024;

/// Suggested wait after a refusal because the connection's own request
/// buffers are full: long enough for requests in progress to finish.
const OWN_BUDGET_RETRY: Duration = Duration::from_millis(200);

/// Sets the transport parameters every connection starts with (the
/// unauthenticated ones).
pub(crate) fn configure(t: &mut TransportConfig) {
    t.max_concurrent_bidi_streams(VarInt::from_u32(PRE_AUTH_STREAMS));
    t.max_concurrent_uni_streams(VarInt::from_u32(0));
    t.stream_receive_window(VarInt::from_u32(STREAM_WINDOW));
    t.receive_window(VarInt::from_u32(PRE_AUTH_WINDOW));
}

/// The relay-wide pools request bodies are charged to.
pub(crate) struct Pools {
    /// Unauthenticated connections together.
    pub(crate) anonymous: Arc<ByteBudget>,
    /// Authenticated connections together, beyond their floors.
    pub(crate) users: Arc<ByteBudget>,
}

impl Pools {
    /// The pools `limits` configure.
    pub(crate) fn new(limits: &LimitsConfig) -> Self {
        Self {
            anonymous: ByteBudget::new(limits.request_bytes_unauthenticated),
            users: ByteBudget::new(limits.request_bytes_total),
        }
    }

    /// Bytes held in both pools.
    pub(crate) fn used(&self) -> usize {
        self.anonymous.used() + self.users.used()
    }
}

/// Frame limits of a new, unauthenticated connection.
pub(crate) fn pre_auth(pools: &Pools, limits: &LimitsConfig) -> Arc<FrameLimits> {
    Arc::new(FrameLimits::new(
        MAX_PRE_AUTH_FRAME_LEN,
        Some(Duration::from_secs(limits.frame_timeout_secs)),
        Some(pools.anonymous.child(PRE_AUTH_BUFFER, 0)),
    ))
}

/// Raises a connection's limits once it has authenticated.
pub(crate) fn authenticated(
    conn: &Connection,
    frames: &FrameLimits,
    pools: &Pools,
    limits: &LimitsConfig,
) {
    frames.set_max_frame_len(MAX_FRAME_LEN);
    frames.set_budget(
        pools
            .users
            .child(limits.request_bytes_per_connection, REQUEST_FLOOR),
    );
    conn.set_receive_window(VarInt::from_u32(CONNECTION_WINDOW));
    conn.set_max_concurrent_bi_streams(VarInt::from_u32(limits.max_streams_per_connection));
}

/// The answer to a frame that could not be read, or the error back when
/// the stream itself broke and nobody is left to answer.
pub(crate) fn refusal(e: FrameIoError) -> Result<RelayError, FrameIoError> {
    match e {
        FrameIoError::Protocol(e) => Ok(e.into()),
        FrameIoError::Budget(Exhausted::Own) => Ok(RelayError::RateLimited(OWN_BUDGET_RETRY)),
        FrameIoError::Budget(Exhausted::Shared) => {
            Ok(RelayError::Unavailable("request buffers are full"))
        }
        FrameIoError::Deadline(_) => Ok(RelayError::BadRequest(
            "frame not completed within limits.frame_timeout_secs",
        )),
        e @ (FrameIoError::Read(_) | FrameIoError::Write(_)) => Err(e),
    }
}
