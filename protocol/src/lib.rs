//! The Tern relay ↔ client wire protocol.
//!
//! This crate is pure: no I/O, no cryptography, no async runtime. It holds
//!
//! - [`wire`]: the message types generated from `proto/tern.proto`
//!   (protobuf, forward compatible: unknown fields are ignored);
//! - [`frame`]: length-prefixed framing with a hard size limit and an
//!   incremental, sans-IO frame decoder;
//! - [`decode`]: entry points that decode a frame *and* validate every
//!   field against the limits in [`limits`], returning a [`ProtocolError`];
//! - [`ids`]: fixed-size identifiers (users, chats, messages, blobs).
//!
//! Both the relay and the client core depend on it; `docs/protocol.md`
//! specifies the same format in prose for other implementations.

pub mod decode;
mod envelope;
pub mod error;
pub mod frame;
pub mod ids;
pub mod limits;
mod validate;

pub use decode::{
    decode_client_frame, decode_client_request, decode_datagram, decode_device_list,
    decode_server_frame, expect_hello,
};
pub use error::ProtocolError;
pub use frame::{FrameDecoder, encode_frame};
pub use ids::{BlobId, ChatId, ClientMessageId, UserId};
pub use validate::Validate;

/// Message types generated from `proto/tern.proto` (package `tern.v1`).
///
/// Their documentation is the schema's comments. Decode them through
/// [`decode`] so that limits are enforced; encode them with [`encode_frame`].
#[allow(
    missing_docs,
    clippy::doc_lazy_continuation,
    clippy::large_enum_variant
)]
pub mod wire {
    include!(concat!(env!("OUT_DIR"), "/tern.v1.rs"));
}

/// Messages between the relay nodes of a cluster (`proto/cluster.proto`,
/// docs/cluster.md), never seen by clients. Decode them with a size limit
/// like every other input.
#[allow(missing_docs, clippy::doc_lazy_continuation)]
pub mod cluster {
    include!(concat!(env!("OUT_DIR"), "/tern.cluster.v1.rs"));
}

/// What a device's connection-authentication signature is about:
/// `challenge || exporter`, where `exporter` is the connection's TLS exporter
/// value (label [`limits::AUTH_EXPORTER_LABEL`], empty context,
/// [`limits::AUTH_EXPORTER_LEN`] bytes). Binding the exporter means a
/// signature cannot be replayed on another connection.
pub fn auth_payload(
    challenge: &[u8; limits::CHALLENGE_LEN],
    exporter: &[u8; limits::AUTH_EXPORTER_LEN],
) -> Vec<u8> {
    [challenge.as_slice(), exporter].concat()
}

/// The bytes a device signs to authenticate a connection:
/// `AUTH_SIGNATURE_CONTEXT || challenge || exporter` (see [`auth_payload`]).
pub fn auth_message(
    challenge: &[u8; limits::CHALLENGE_LEN],
    exporter: &[u8; limits::AUTH_EXPORTER_LEN],
) -> Vec<u8> {
    [
        limits::AUTH_SIGNATURE_CONTEXT,
        &auth_payload(challenge, exporter),
    ]
    .concat()
}

/// The bytes an account key signs for a device list:
/// `DEVICE_LIST_SIGNATURE_CONTEXT || encoded DeviceList`.
pub fn device_list_message(encoded_device_list: &[u8]) -> Vec<u8> {
    [limits::DEVICE_LIST_SIGNATURE_CONTEXT, encoded_device_list].concat()
}
