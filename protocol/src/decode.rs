//! Validated decoding: protobuf decode plus [`Validate`].
//!
//! These are the only functions that should turn untrusted bytes into
//! protocol messages. Each one bounds its input before decoding, so the
//! allocations prost makes are bounded by the frame limit.

use bytes::Bytes;
use prost::Message;

use crate::error::ProtocolError;
use crate::limits::{MAX_DATAGRAM_LEN, MAX_DEVICE_LIST_LEN, MAX_FRAME_LEN, PROTOCOL_VERSION};
use crate::validate::Validate;
use crate::wire::{
    ClientFrame, ClientHello, DeviceList, EphemeralEvent, ServerFrame, SignedDeviceList,
    client_frame,
};

fn decode_bounded<M: Message + Default + Validate>(
    body: Bytes,
    max: usize,
) -> Result<M, ProtocolError> {
    if body.len() > max {
        return Err(ProtocolError::FrameTooLarge {
            len: body.len(),
            max,
        });
    }
    let msg = M::decode(body)?;
    msg.validate()?;
    Ok(msg)
}

/// Decodes and validates a frame body sent by a client.
pub fn decode_client_frame(body: Bytes) -> Result<ClientFrame, ProtocolError> {
    decode_bounded(body, MAX_FRAME_LEN)
}

/// Decodes and validates a frame body sent by the relay.
pub fn decode_server_frame(body: Bytes) -> Result<ServerFrame, ProtocolError> {
    decode_bounded(body, MAX_FRAME_LEN)
}

/// Decodes and validates an ephemeral event received as a QUIC datagram.
pub fn decode_datagram(datagram: Bytes) -> Result<EphemeralEvent, ProtocolError> {
    decode_bounded(datagram, MAX_DATAGRAM_LEN)
}

/// Decodes the first frame of a connection, which must be a [`ClientHello`]
/// announcing [`PROTOCOL_VERSION`].
pub fn expect_hello(body: Bytes) -> Result<ClientHello, ProtocolError> {
    match decode_client_frame(body)?.body {
        Some(client_frame::Body::Hello(hello)) if hello.protocol_version == PROTOCOL_VERSION => {
            Ok(hello)
        }
        Some(client_frame::Body::Hello(hello)) => Err(ProtocolError::UnsupportedVersion {
            got: hello.protocol_version,
            supported: PROTOCOL_VERSION,
        }),
        _ => Err(ProtocolError::Unexpected {
            expected: "ClientHello",
        }),
    }
}

/// Decodes and validates the [`DeviceList`] carried inside a
/// [`SignedDeviceList`]. Checking the signature over the same bytes is the
/// caller's job (this crate does no cryptography).
pub fn decode_device_list(signed: &SignedDeviceList) -> Result<DeviceList, ProtocolError> {
    decode_bounded(signed.device_list.clone(), MAX_DEVICE_LIST_LEN)
}
