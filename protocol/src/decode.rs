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

/// Decodes and validates a client frame like [`decode_client_frame`], and
/// returns with the result the `request_id` of a `Request` frame that
/// decoded, even when it then failed validation, so that the error answer
/// names the request (`0` when the bytes did not decode).
pub fn decode_client_request(body: Bytes) -> (u64, Result<ClientFrame, ProtocolError>) {
    if body.len() > MAX_FRAME_LEN {
        let too_large = ProtocolError::FrameTooLarge {
            len: body.len(),
            max: MAX_FRAME_LEN,
        };
        return (0, Err(too_large));
    }
    let frame = match ClientFrame::decode(body) {
        Ok(frame) => frame,
        Err(e) => return (0, Err(e.into())),
    };
    let request_id = match &frame.body {
        Some(client_frame::Body::Request(request)) => request.request_id,
        _ => 0,
    };
    (request_id, frame.validate().map(|()| frame))
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::wire::{GetChat, ListChats, request};

    fn encoded(kind: request::Kind, request_id: u64) -> Bytes {
        ClientFrame::request(kind, request_id)
            .encode_to_vec()
            .into()
    }

    #[test]
    fn a_request_that_fails_validation_keeps_its_id() {
        let bad = GetChat {
            chat_id: vec![1; 3].into(),
        };
        let (id, result) = decode_client_request(encoded(request::Kind::GetChat(bad), 42));
        assert_eq!(id, 42);
        assert!(result.is_err());
        let (id, result) =
            decode_client_request(encoded(request::Kind::ListChats(ListChats {}), 7));
        assert_eq!(id, 7);
        assert!(result.is_ok());
        let (id, result) = decode_client_request(Bytes::from_static(&[0xff, 0xff, 0xff]));
        assert_eq!(id, 0);
        assert!(result.is_err());
    }
}
